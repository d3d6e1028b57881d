"""The `qbflow` command line: thin; it parses, calls a room, prints with rich."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="qbflow: automate QuickBooks Online.", no_args_is_help=True, add_completion=False)
console = Console()


@app.callback()
def main() -> None:
    """qbflow: automate QuickBooks Online."""


@app.command()
def sandbox(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8700,
    data: Annotated[Path | None, typer.Option(help="SQLite file that keeps the books across restarts.")] = None,
    client_id: Annotated[str | None, typer.Option(help="OAuth client id of the sandbox's app.")] = None,
    client_secret: Annotated[str | None, typer.Option(help="OAuth client secret (default: random).",
                                                      envvar="QBFLOW_SANDBOX_CLIENT_SECRET")] = None,
    auto_approve: Annotated[bool, typer.Option(help="Skip the consent page: approve the first company.")] = False,
    no_rate_limit: Annotated[bool, typer.Option("--no-rate-limit", help="Turn Intuit's throttles off.")] = False,
    fault_rate: Annotated[float, typer.Option(help="Fraction of API requests that fail on purpose (0..1).",
                                              min=0.0, max=1.0)] = 0.0,
    companies: Annotated[int, typer.Option(help="Companies (realms) to create when the books are new.",
                                           min=1)] = 1,
    webhook_url: Annotated[str | None, typer.Option(help="Where to POST change notifications.")] = None,
    webhook_verifier: Annotated[str | None, typer.Option(help="Verifier token that signs webhooks.",
                                                         envvar="QBFLOW_SANDBOX_WEBHOOK_VERIFIER")] = None,
    webhook_format: Annotated[str, typer.Option(help="legacy or cloudevents.")] = "legacy",
) -> None:
    """Serve a local, wire-faithful QuickBooks Online API (OAuth 2.0 + Accounting API v3)."""
    import uvicorn

    from qbflow.sandbox.app import Sandbox
    from qbflow.sandbox.webhooks import WebhookConfig

    webhook = None
    if webhook_url:
        if not webhook_verifier:
            raise typer.BadParameter("--webhook-url needs --webhook-verifier (or QBFLOW_SANDBOX_WEBHOOK_VERIFIER)")
        if webhook_format not in ("legacy", "cloudevents"):
            raise typer.BadParameter(f"--webhook-format must be legacy or cloudevents, not {webhook_format!r}")
        webhook = WebhookConfig(url=webhook_url, verifier_token=webhook_verifier, format=webhook_format)
    box = Sandbox(data=str(data) if data else None, client_id=client_id, client_secret=client_secret,
                  auto_approve=auto_approve, rate_limit=not no_rate_limit, fault_rate=fault_rate,
                  companies=companies, webhook=webhook)
    base = f"http://{host}:{port}"
    table = Table(title="qbflow sandbox: a local QuickBooks Online", show_header=False)
    table.add_row("API base URL", f"{base}/v3/company/<realmId>/")
    table.add_row("OpenID discovery", f"{base}/.well-known/openid_sandbox_configuration")
    table.add_row("OAuth client id", box.client_id)
    table.add_row("OAuth client secret", box.client_secret)
    for company in box.books.companies.values():
        table.add_row("Company", f"{company.realm_id}  {company.name}")
    table.add_row("Books", str(data) if data else "in memory (gone when stopped)")
    table.add_row("Throttles", "off" if no_rate_limit else "on (500/min, 10 concurrent, 40 batch/min)")
    if fault_rate:
        table.add_row("Injected faults", f"{fault_rate:.0%} of API requests")
    console.print(table)
    uvicorn.run(box, host=host, port=port, log_level="warning")


if __name__ == "__main__":
    app()
