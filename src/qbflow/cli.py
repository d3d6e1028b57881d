"""The `qbflow` command line: thin; it parses, calls a room, prints with rich."""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import webbrowser
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from qbflow.redaction import redacted

if TYPE_CHECKING:
    from qbflow.connector.triggers import Trigger
    from qbflow.engine.status import SystemStatus
    from qbflow.qbo.client import QBOClient
    from qbflow.qbo.connect import Environment
    from qbflow.store import ConnectionRecord, Store, WorkflowRecord

app = typer.Typer(help="qbflow: automate QuickBooks Online.", no_args_is_help=True, add_completion=False)
connections_app = typer.Typer(help="List, show and remove connections to QuickBooks companies.",
                              no_args_is_help=True)
app.add_typer(connections_app, name="connections")
console = Console()
err_console = Console(stderr=True)


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
    latency: Annotated[float, typer.Option(help="Seconds added to every API answer (simulated network).",
                                           min=0.0, max=60.0)] = 0.0,
    companies: Annotated[int, typer.Option(help="Companies (realms) to create when the books are new.",
                                           min=1)] = 1,
    webhook_url: Annotated[str | None, typer.Option(help="Where to POST change notifications.")] = None,
    webhook_verifier: Annotated[str | None, typer.Option(help="Verifier token that signs webhooks.",
                                                         envvar="QBFLOW_SANDBOX_WEBHOOK_VERIFIER")] = None,
    webhook_format: Annotated[str, typer.Option(help="legacy or cloudevents.")] = "legacy",
    books: Annotated[str, typer.Option(help="What a new company starts with: sample (Intuit's sample company, "
                                             "Craig's Design and Landscaping Services) or empty (a new, empty "
                                             "company).")] = "sample",
) -> None:
    """Serve a local, wire-faithful QuickBooks Online API (OAuth 2.0 + Accounting API v3)."""
    import uvicorn

    from qbflow.sandbox.app import Sandbox
    from qbflow.sandbox.seed import SEEDS
    from qbflow.sandbox.webhooks import WebhookConfig

    if books not in SEEDS:
        raise typer.BadParameter(f"--books must be one of {', '.join(SEEDS)}, not {books!r}")
    webhook = None
    if webhook_url:
        if not webhook_verifier:
            raise typer.BadParameter("--webhook-url needs --webhook-verifier (or QBFLOW_SANDBOX_WEBHOOK_VERIFIER)")
        if webhook_format not in ("legacy", "cloudevents"):
            raise typer.BadParameter(f"--webhook-format must be legacy or cloudevents, not {webhook_format!r}")
        webhook = WebhookConfig(url=webhook_url, verifier_token=webhook_verifier, format=webhook_format)
    box = Sandbox(data=str(data) if data else None, client_id=client_id, client_secret=client_secret,
                  auto_approve=auto_approve, rate_limit=not no_rate_limit, fault_rate=fault_rate,
                  companies=companies, webhook=webhook, seed=books)
    box.faults.latency = latency
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



# --- connections ---------------------------------------------------------------------------------------
@contextmanager
def _clear_errors() -> Iterator[None]:
    """qbflow's own errors end the command with their message (never a traceback), exit status 1."""
    from qbflow.errors import QBFlowError

    try:
        yield
    except QBFlowError as exc:
        err_console.print(f"[red]Error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None


@contextmanager
def _open_store() -> Iterator[Store]:
    from qbflow.store import open_store

    store = open_store()
    try:
        yield store
    finally:
        store.close()


def _settle_heap() -> None:
    """Before a long-running command's work (the engine, a worker, the server): what start-up made (modules,
    settings, the catalog) is collected once and then left out of Python's garbage collections. A full
    collection no longer walks those (about 175,000 objects for `qbflow run`, 83-89 ms a collection), which had
    paused the event loop that long each time."""
    gc.collect()
    gc.freeze()


def _when(moment: datetime | None) -> str:
    """A UTC time and how far away it is ("2026-01-02 10:00 UTC (in 59 min)")."""
    if moment is None:
        return "unknown"
    seconds = (moment - datetime.now(UTC)).total_seconds()
    span = abs(seconds)
    if span < 90:
        ago = f"{span:.0f} s"
    elif span < 5400:
        ago = f"{span / 60:.0f} min"
    elif span < 2 * 86400:
        ago = f"{span / 3600:.0f} h"
    else:
        ago = f"{span / 86400:.0f} days"
    relative = f"in {ago}" if seconds >= 0 else f"expired {ago} ago"
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC ({relative})"


def _environment_label(record: ConnectionRecord) -> str:
    if record.environment == "local":
        return f"local sandbox ({record.api_base})"
    return {"production": "Intuit production", "sandbox": "Intuit sandbox"}.get(record.environment,
                                                                                record.environment)


def _status(record: ConnectionRecord) -> str:
    if record.needs_reconnect:
        return f"[red]needs reconnect[/red] (run: qbflow connect {escape(record.name)})"
    return "[green]ok[/green]"


def _details(record: ConnectionRecord, title: str) -> Table:
    """One connection as a two-column table; never a secret (the client id is not one)."""
    table = Table(title=title, show_header=False)
    rows = [
        ("Connection", escape(record.name)),
        ("Company", escape(record.company_name or "(unknown)")),
        ("Realm ID", escape(record.realm_id)),
        ("Environment", escape(_environment_label(record))),
        ("Status", _status(record)),
    ]
    if record.status_detail:
        rows.append(("Status detail", escape(record.status_detail)))
    rows += [
        ("API base URL", escape(record.api_base)),
        ("Client ID", escape(record.client_id)),
        ("Access token expires", _when(record.access_expires_at)),
        ("Refresh token expires", _when(record.refresh_expires_at)),
        ("Token version", str(record.token_version)),
        ("Connected", f"{record.created_at:%Y-%m-%d %H:%M} UTC"),
        ("Updated", f"{record.updated_at:%Y-%m-%d %H:%M} UTC"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    return table


def _sandbox_approves_at_once(url: str) -> bool:
    """Follow the authorize URL of a local sandbox when it redirects straight to our 127.0.0.1 callback."""
    import httpx

    try:
        answer = httpx.get(url, follow_redirects=False, timeout=10)
        location = answer.headers.get("location", "")
        if not (answer.is_redirect and location.startswith("http://127.0.0.1:") and "/callback?" in location):
            return False
        httpx.get(location, timeout=30)
    except httpx.HTTPError:
        return False
    return True


def _authorization_opener(name: str, environment: Environment, *, port: int, no_browser: bool,
                          timeout: float) -> Callable[[str], None]:
    """How `qbflow connect` shows Intuit's authorization URL: a browser, the printed URL, or (a local sandbox
    started with --auto-approve) nothing at all."""

    def open_url(url: str) -> None:
        if environment.name != "local" and port == 0:
            typer.echo("Note: Intuit redirects only to registered URIs. If it refuses this one, register "
                       "http://127.0.0.1:PORT/callback for your app and run again with --port PORT.")
        if no_browser:
            typer.echo(f"Open this URL in a browser to connect {name!r}:")
        elif environment.name == "local" and _sandbox_approves_at_once(url):
            # `qbflow sandbox --auto-approve` answers the authorize URL with the redirect itself: nothing for
            # a person to click, so this works on a machine without a browser too.
            typer.echo("The local sandbox approved at once (--auto-approve).")
            return
        elif webbrowser.open(url):
            typer.echo("Opened your browser to authorize qbflow. If nothing happened, open this URL:")
        else:
            typer.echo("Could not open a browser. Open this URL to authorize qbflow:")
        typer.echo(url)  # plain echo: one unwrapped line, flushed, so scripts can read it
        typer.echo(f"Waiting for the authorization (up to {timeout:g} s)...")

    return open_url


async def _authorize(name: str, *, client_id: str, client_secret: str, environment: Environment, store: Store,
                     port: int = 0, no_browser: bool = False, timeout: float = 300.0) -> ConnectionRecord:
    """`qbflow connect`'s flow (also `qbflow up`'s, on its own sandbox): authorize, store the connection."""
    from qbflow.qbo.connect import connect as run_connect
    from qbflow.store import AsyncConnectionStore

    open_url = _authorization_opener(name, environment, port=port, no_browser=no_browser, timeout=timeout)
    async with AsyncConnectionStore(store.connections) as astore:
        return await run_connect(name, client_id=client_id, client_secret=client_secret, environment=environment,
                                 store=astore, open_url=open_url, port=port, timeout=timeout,
                                 report=lambda text: typer.echo(text))


@app.command()
def connect(
    name: Annotated[str, typer.Argument(help="A name for the connection, e.g. acme. Reconnecting a name replaces "
                                             "its tokens.")],
    client_id: Annotated[str | None, typer.Option(help="Your Intuit app's client id.",
                                                  envvar="QBFLOW_CLIENT_ID")] = None,
    client_secret: Annotated[str | None, typer.Option(help="Your Intuit app's client secret (asked for, hidden, "
                                                      "when missing).", envvar="QBFLOW_CLIENT_SECRET",
                                                      show_default=False)] = None,
    sandbox: Annotated[str | None, typer.Option("--sandbox", metavar="URL",
                                                help="Connect to a local `qbflow sandbox` at URL "
                                                     "(e.g. http://127.0.0.1:8700).")] = None,
    production: Annotated[bool, typer.Option("--production",
                                             help="Connect a real company (default: Intuit's developer "
                                                  "sandbox companies).")] = False,
    port: Annotated[int, typer.Option(min=0, max=65535,
                                      help="Port of the local callback on 127.0.0.1 (0 = any free port). Intuit "
                                           "redirects only to registered URIs: register "
                                           "http://127.0.0.1:PORT/callback for your app and pass that PORT.")] = 0,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Print the authorization URL instead of "
                                                                   "opening a browser.")] = False,
    timeout: Annotated[float, typer.Option(min=1.0, help="Seconds to wait for the browser's answer.")] = 300.0,
) -> None:
    """Connect a QuickBooks Online company: authorize in the browser, store the tokens encrypted."""
    from qbflow.qbo.connect import Environment, valid_connection_name
    from qbflow.store import ConnectionNotFound

    if not valid_connection_name(name):
        raise typer.BadParameter("use letters, digits, '_', '.' and '-' (at most 100 characters)", param_hint="NAME")
    try:
        environment = Environment.choose(sandbox, production)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    interactive = sys.stdin.isatty()
    if not client_id:
        if not interactive:
            raise typer.BadParameter("give --client-id or set QBFLOW_CLIENT_ID", param_hint="--client-id")
        client_id = typer.prompt("Client ID")
    if not client_secret:
        if not interactive:
            raise typer.BadParameter("give --client-secret or set QBFLOW_CLIENT_SECRET",
                                     param_hint="--client-secret")
        client_secret = typer.prompt("Client secret", hide_input=True)

    with _clear_errors(), _open_store() as store:
        try:
            previous = store.connections.get(name)
        except ConnectionNotFound:
            previous = None
        try:
            record = asyncio.run(_authorize(name, client_id=client_id, client_secret=client_secret,
                                            environment=environment, store=store, port=port,
                                            no_browser=no_browser, timeout=timeout))
        except KeyboardInterrupt:
            err_console.print("Cancelled; nothing was stored.")
            raise typer.Exit(130) from None
    verb = "Reconnected" if previous is not None else "Connected"
    console.print(_details(record, f"{verb} {escape(record.company_name or record.realm_id)}"))
    if previous is not None and previous.realm_id != record.realm_id:
        console.print(f"[yellow]Note:[/yellow] {escape(name)!r} pointed at realm {escape(previous.realm_id)} "
                      f"before; it now points at realm {escape(record.realm_id)}.")


@connections_app.command("list")
def connections_list() -> None:
    """Every connection: name, company, environment, status and token expiry (never a secret)."""
    with _clear_errors(), _open_store() as store:
        records = store.connections.list()
    if not records:
        console.print("No connections yet. Add one with: qbflow connect NAME")
        return
    table = Table(title="Connections")
    for column in ("Name", "Realm ID", "Company", "Environment", "Status", "Access token expires"):
        table.add_column(column)
    for record in records:
        table.add_row(escape(record.name), escape(record.realm_id), escape(record.company_name or ""),
                      escape(_environment_label(record)), _status(record), _when(record.access_expires_at))
    console.print(table)


@connections_app.command("show")
def connections_show(name: Annotated[str, typer.Argument(help="The connection's name.")]) -> None:
    """One connection in detail (never a secret)."""
    with _clear_errors(), _open_store() as store:
        record = store.connections.get(name)
    console.print(_details(record, f"Connection {escape(name)}"))


@connections_app.command("remove")
def connections_remove(
    name: Annotated[str, typer.Argument(help="The connection's name.")],
    force: Annotated[bool, typer.Option("--force", help="Remove it even if Intuit cannot revoke its "
                                                        "tokens.")] = False,
) -> None:
    """Revoke a connection's tokens at Intuit, then delete it."""
    from qbflow.qbo.connections import revoke_connection
    from qbflow.qbo.errors import QBOError

    with _clear_errors(), _open_store() as store:
        record = store.connections.get(name)
        try:
            asyncio.run(revoke_connection(record))
            revoked = True
        except QBOError as exc:
            if not force:
                err_console.print(
                    f"[red]Error:[/red] could not revoke connection {escape(name)!r} at Intuit: {escape(str(exc))}\n"
                    f"The connection was kept. To delete it anyway, run: qbflow connections remove "
                    f"{escape(name)} --force (then disconnect the app in QuickBooks).")
                raise typer.Exit(1) from None
            err_console.print(f"[yellow]Warning:[/yellow] could not revoke connection {escape(name)!r} at Intuit "
                              f"({escape(str(exc))}); removing it anyway. Disconnect the app in QuickBooks.")
            revoked = False
        store.connections.remove(name)
    console.print(f"Removed connection {escape(name)!r}" + (" (its tokens were revoked at Intuit)." if revoked
                                                              else "."))


# --- the connector: catalog, actions, trigger samples -------------------------------------------------------
action_app = typer.Typer(help="Run one connector action against a connected company.", no_args_is_help=True)
trigger_app = typer.Typer(help="See what a trigger's events carry.", no_args_is_help=True)
app.add_typer(action_app, name="action")
app.add_typer(trigger_app, name="trigger")

USAGE_ERROR = 2  # exit status of a command line that cannot be run as given (unknown key, bad JSON)


def _fail(message: str, code: int = 1) -> NoReturn:
    """End the command with one line on stderr (never a traceback)."""
    err_console.print(f"[red]Error:[/red] {escape(message)}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)


def _one_line(exc: BaseException) -> str:
    """An error's message on one line: an ActionInputError's problems joined by "; "."""
    from qbflow.connector.base import ActionInputError

    if isinstance(exc, ActionInputError):
        return f"{exc.action_title}: the input is not valid: " + "; ".join(p.describe() for p in exc.problems)
    return " ".join(str(exc).split()) or type(exc).__name__


def _print_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


@contextmanager
def _connector_errors(what: str) -> Iterator[None]:
    """qbflow's errors end the command with exit status 1 and one line naming the problem; anything else
    is a bug, reported on one line too."""
    from qbflow.connector.base import ActionInputError
    from qbflow.errors import QBFlowError

    try:
        yield
    except (typer.Exit, typer.Abort):  # click's own exits are RuntimeErrors: not ours to reword
        raise
    except ActionInputError as exc:  # already names the action
        _fail(_one_line(exc))
    except QBFlowError as exc:
        _fail(f"{what}: {_one_line(exc)}")
    except KeyboardInterrupt:
        err_console.print("Cancelled.")
        raise typer.Exit(130) from None
    except Exception as exc:  # the promise is one line, not a traceback
        _fail(f"{what}: unexpected {type(exc).__name__}: {_one_line(exc)} (a bug in qbflow; please report it)")


def _read_input(text: str | None, *, option: str = "--input") -> dict:
    """--input (or `option`) as a dict: inline JSON, @file.json, or @- for standard input (nothing given: {})."""
    if text is None:
        return {}
    source = option
    if text.startswith("@"):
        name = text[1:]
        source = f"{option} file {name!r}" if name != "-" else f"{option} from standard input"
        try:
            text = sys.stdin.read() if name == "-" else Path(name).expanduser().read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            _fail(f"cannot read {option} file {name!r}: {reason}", USAGE_ERROR)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        _fail(f"{source} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", USAGE_ERROR)
    if not isinstance(data, dict):
        kind = {list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(type(data), "a number")
        _fail(f"{source} must be a JSON object ({{\"field\": value, ...}}), not {kind}", USAGE_ERROR)
    return data


@app.command("catalog")
def catalog_command(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document: every trigger (with its sample) "
                                                         "and action (with its input JSON Schema).")] = False,
) -> None:
    """Every trigger and action a workflow can use: key, title and description (--json: everything)."""
    from qbflow.connector.docs import catalog_document

    document = catalog_document()
    if as_json:
        _print_json(document)
        return
    table = Table(title=f"qbflow catalog: {len(document['triggers'])} triggers, {len(document['actions'])} actions")
    table.add_column("Kind", no_wrap=True)
    table.add_column("Key", no_wrap=True, min_width=24)
    table.add_column("Title", min_width=12)
    table.add_column("Description", overflow="fold")
    for kind in ("triggers", "actions"):
        for item in document[kind]:
            table.add_row(kind[:-1], escape(item["key"]), escape(item["title"]), escape(item["description"]))
    console.print(table)
    console.print("Details: qbflow catalog --json, or docs/catalog.md.")


@action_app.command("run")
def action_run(
    key: Annotated[str, typer.Argument(help="The action's key, e.g. create_invoice (`qbflow catalog` lists them).")],
    connection: Annotated[str, typer.Option("--connection", "-c", help="The stored connection to run it on "
                                                                       "(`qbflow connections list`).")],
    input_text: Annotated[str | None, typer.Option("--input", "-i", metavar="JSON|@FILE",
                                                   help="The action's input: a JSON object, @file.json, or @- "
                                                        "for standard input (default {}).")] = None,
) -> None:
    """Run one action against a connected company and print its output as JSON."""
    from qbflow.connector.base import ActionContext
    from qbflow.connector.registry import UnknownAction, action
    from qbflow.qbo.connections import client_for

    try:
        chosen = action(key)
    except UnknownAction as exc:
        _fail(str(exc), USAGE_ERROR)
    data = _read_input(input_text)
    with _connector_errors(chosen.title):
        parsed = chosen.parse(data)  # a bad input is refused before any connection is opened

    async def run(store: Store) -> dict:
        async with await client_for(connection, store) as qbo:
            return await chosen.run(ActionContext(qbo), parsed)

    with _connector_errors(chosen.title), _open_store() as store:
        result = asyncio.run(run(store))
    _print_json(result)


async def _newest_record(qbo: QBOClient, chosen: Trigger) -> dict | None:
    """The newest record a trigger would fire for: the newest created (New), the latest changed with
    SyncToken above 0 (Updated), or the newest deletion stub CDC still reports (Deleted)."""
    from qbflow.connector.polling import CDC_MAX_AGE, CDC_SAFETY
    from qbflow.connector.triggers import TriggerKind
    from qbflow.qbo.query import Query

    entity = chosen.entity
    if chosen.kind is TriggerKind.NEW:
        found = await qbo.query(Query(entity).order_by("MetaData.CreateTime", desc=True).max(1))
        return found[0] if found else None
    if chosen.kind is TriggerKind.UPDATED:
        page = 100
        for start in range(1, 10 * page, page):  # the latest 1000 changes are plenty to find one edit
            records = await qbo.query(Query(entity).order_by("MetaData.LastUpdatedTime", desc=True)
                                      .start(start).max(page))
            for record in records:
                if str(record.get("SyncToken", "0")) not in ("", "0"):
                    return record
            if len(records) < page:
                return None
        return None
    since = datetime.now(UTC) - CDC_MAX_AGE + CDC_SAFETY
    changes = await qbo.cdc([entity], since)
    deleted = [r for r in changes.get(entity, []) if r.get("status") == "Deleted"]
    return max(deleted, key=lambda r: (r.get("MetaData") or {}).get("LastUpdatedTime") or "", default=None)


@trigger_app.command("sample")
def trigger_sample(
    key: Annotated[str, typer.Argument(help="The trigger's key, e.g. new_invoice (`qbflow catalog` lists them).")],
    connection: Annotated[str | None, typer.Option("--connection", "-c", help="The stored connection to read "
                                                                              "the newest matching record "
                                                                              "from.")] = None,
    offline: Annotated[bool, typer.Option("--offline", help="Print the trigger's built-in sample; no "
                                                            "connection needed.")] = False,
) -> None:
    """Print the newest record a trigger would fire for, as JSON (the built-in sample with --offline)."""
    from qbflow.connector.triggers import UnknownTrigger, trigger
    from qbflow.qbo.connections import client_for

    try:
        chosen = trigger(key)
    except UnknownTrigger as exc:
        _fail(str(exc), USAGE_ERROR)
    if offline:
        _print_json(chosen.sample_record())
        return
    if connection is None:
        _fail("give --connection NAME to read the newest matching record, or --offline for the built-in sample",
              USAGE_ERROR)

    async def run(store: Store) -> dict | None:
        async with await client_for(connection, store) as qbo:
            return await _newest_record(qbo, chosen)

    with _connector_errors(chosen.title), _open_store() as store:
        record = asyncio.run(run(store))
    if record is None:
        noun = chosen.title.split(" ", 1)[1].lower()
        why = {"new": f"the company has no {noun} yet",
               "updated": f"no recently changed {noun} was edited after its creation (SyncToken above 0)",
               "deleted": f"no {noun} was deleted in the last 30 days (as far back as QuickBooks reports "
                          f"deletions)"}[chosen.kind.value]
        err_console.print(f"[yellow]Note:[/yellow] {escape(why)}; printing the trigger's built-in sample "
                          f"instead.", soft_wrap=True, highlight=False)
        record = chosen.sample_record()
    _print_json(record)


workflow_app = typer.Typer(help="Workflows as files: check them before they run.", no_args_is_help=True)
app.add_typer(workflow_app, name="workflow")


@workflow_app.command("validate")
def workflow_validate(
    files: Annotated[list[Path], typer.Argument(help="Workflow files (YAML), or folders of them.")],
    check_connections: Annotated[bool, typer.Option(
        "--check-connections/--no-check-connections",
        help="Also check that every connection a workflow names is stored (`qbflow connections list`).")] = True,
) -> None:
    """Check workflow files: each problem is printed as FILE:LINE: FIELD: what is wrong (exit 1 if any)."""
    from qbflow.engine.workflow import load_workflow, validate_workflow

    paths: list[Path] = []
    for item in files:
        if item.is_dir():
            paths.extend(sorted(p for p in item.iterdir() if p.suffix in (".yaml", ".yml")))
        elif item.exists():
            paths.append(item)
        else:
            raise typer.BadParameter(f"no such file or folder: {item}", param_hint="FILES")
    if not paths:
        raise typer.BadParameter("no .yaml or .yml files found", param_hint="FILES")
    connections = None
    if check_connections:
        with _clear_errors(), _open_store() as store:
            connections = [record.name for record in store.connections.list()]
    failed = False
    for path in paths:
        problems = validate_workflow(path, connections=connections)
        for problem in problems:  # warnings too; only errors fail
            err_console.print(str(problem), markup=False, highlight=False)
        if any(problem.is_error for problem in problems):
            failed = True
            continue
        workflow = load_workflow(path, connections=connections)
        console.print(f"{path}: ok: {workflow.name!r}, trigger {workflow.trigger.label}, "
                      f"{len(workflow.steps)} step(s)", markup=False, highlight=False)
    if failed:
        raise typer.Exit(1)



# --- stored workflows and their runs --------------------------------------------------------------------
runs_app = typer.Typer(help="Runs: what happened to each trigger event, step by step.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")

_STATUS_STYLE = {"succeeded": "green", "failed": "red", "running": "cyan", "queued": "blue",
                 "waiting_retry": "yellow", "waiting": "yellow", "cancelled": "dim", "sent": "cyan", "skipped": "dim",
                 "pending": "blue"}


def _at(moment: datetime | None) -> str:
    """A stored time as "2026-01-02 10:00:05" (UTC), or "-" when there is none."""
    if moment is None:
        return "-"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S}"


def _styled(status: str) -> str:
    style = _STATUS_STYLE.get(status)
    return f"[{style}]{escape(status)}[/{style}]" if style else escape(status)


def _summary(error: object, width: int = 80) -> str:
    """An error on one short line."""
    if error is None or error == "":
        return ""
    text = error if isinstance(error, str) else json.dumps(error, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


_redacted = redacted  # the name the dashboard imports; `qbflow.redaction.redacted` is the one to use


def _nearest(word: str, choices: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.5)
    if close:
        return " Did you mean " + " or ".join(repr(name) for name in close) + "?"
    return ""


def _workflow_files(files: list[Path]) -> list[Path]:
    paths: list[Path] = []
    for item in files:
        if item.is_dir():
            paths.extend(sorted(p for p in item.iterdir() if p.suffix in (".yaml", ".yml")))
        elif item.exists():
            paths.append(item)
        else:
            raise typer.BadParameter(f"no such file or folder: {item}", param_hint="FILES")
    if not paths:
        raise typer.BadParameter("no .yaml or .yml files found", param_hint="FILES")
    return paths


@workflow_app.command("add")
def workflow_add(
    files: Annotated[list[Path], typer.Argument(help="Workflow files (YAML), or folders of them.")],
    disabled: Annotated[bool, typer.Option("--disabled", help="Store them disabled (enable later with "
                                                              "`qbflow workflow enable NAME`).")] = False,
) -> None:
    """Validate workflow files and store them (a file with a stored workflow's name updates it)."""
    from qbflow.engine.stored import store_workflow
    from qbflow.engine.workflow import WorkflowInvalid, load_workflow, validate_workflow
    from qbflow.store import RunStore

    paths = _workflow_files(files)
    failed = False
    with _clear_errors(), _open_store() as store:
        connections = [record.name for record in store.connections.list()]
        runs = RunStore(store.engine)
        added: dict[str, Path] = {}
        for path in paths:
            problems = validate_workflow(path, connections=connections)
            for problem in problems:  # warnings too; only errors fail
                err_console.print(str(problem), markup=False, highlight=False)
            if any(problem.is_error for problem in problems):
                failed = True
                continue
            try:
                workflow = load_workflow(path, connections=connections)
            except WorkflowInvalid as exc:  # validate said ok; kept for safety, never a traceback
                failed = True
                err_console.print(str(exc), markup=False, highlight=False)
                continue
            if workflow.name in added:
                failed = True
                err_console.print(f"{path}: name: {workflow.name!r} is already the name of {added[workflow.name]}; "
                                  f"workflow names must be unique (not stored)", markup=False, highlight=False)
                continue
            record, verb = store_workflow(runs, workflow, str(path.resolve()), enabled=not disabled)
            added[workflow.name] = path
            console.print(f"{path}: ok: {workflow.name!r}, trigger {workflow.trigger.label}, "
                          f"{len(workflow.steps)} step(s): {verb} ({'enabled' if record.enabled else 'disabled'})",
                          markup=False, highlight=False)
            _print_new_hook(store, record)
    if failed:
        raise typer.Exit(1)


@workflow_app.command("list")
def workflow_list() -> None:
    """Every stored workflow: trigger, connection, on/off, steps and its last run."""
    from qbflow.store import RunStore

    with _clear_errors(), _open_store() as store:
        runs = RunStore(store.engine)
        rows = [(record, next(iter(runs.list_runs(workflow=record.name, limit=1)), None))
                for record in runs.list_workflows()]
    if not rows:
        console.print("No workflows yet. Add one with: qbflow workflow add FILE")
        return
    table = Table(title="Workflows")
    for column in ("Name", "Trigger", "Connection", "Enabled", "Steps", "Last run", "Last run at"):
        table.add_column(column)
    for record, last in rows:
        definition = record.definition if isinstance(record.definition, dict) else {}
        trigger = definition.get("trigger") or {}
        table.add_row(escape(record.name), escape(str(trigger.get("key") or trigger.get("kind") or "?")),
                      escape(str(trigger.get("connection") or definition.get("connection") or "-")),
                      "[green]on[/green]" if record.enabled else "[dim]off[/dim]",
                      str(len(definition.get("steps") or [])),
                      f"#{last.id} {_styled(last.status)}" if last else "never",
                      _at(last.finished_at or last.started_at or last.created_at) if last else "-")
    console.print(table)
    for record, _last in rows:
        if record.paused_reason and not record.enabled:
            console.print(f"[yellow]{escape(record.name)} was paused by qbflow:[/yellow] "
                          f"{escape(record.paused_reason)}")


def _set_enabled(name: str, enabled: bool) -> None:
    from qbflow.store import RunStore, WorkflowNotFound

    with _clear_errors(), _open_store() as store:
        runs = RunStore(store.engine)
        try:
            runs.set_enabled(name, enabled)
        except WorkflowNotFound as exc:
            _fail(str(exc) + _nearest(name, [record.name for record in runs.list_workflows()]))
    console.print(f"Workflow {escape(name)!r} is now {'enabled' if enabled else 'disabled'}.")


@workflow_app.command("enable")
def workflow_enable(
    name: Annotated[str, typer.Argument(help="The workflow's name (`qbflow workflow list`).")],
) -> None:
    """Turn a stored workflow on: the engine polls its trigger."""
    _set_enabled(name, True)


@workflow_app.command("disable")
def workflow_disable(
    name: Annotated[str, typer.Argument(help="The workflow's name (`qbflow workflow list`).")],
) -> None:
    """Turn a stored workflow off: its trigger is no longer polled."""
    _set_enabled(name, False)


@runs_app.command("list")
def runs_list(
    workflow: Annotated[str | None, typer.Option("--workflow", "-w", help="Only this workflow's runs.")] = None,
    status: Annotated[str | None, typer.Option("--status", "-s", help="Only runs with this status: queued, running, "
                                                                      "succeeded, failed, waiting_retry, "
                                                                      "cancelled.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many runs.")] = 50,
) -> None:
    """The newest runs first: id, workflow, status, attempt, times and error."""
    from qbflow.store import RunStore, WorkflowNotFound
    from qbflow.store.models import RUN_STATUSES

    if status is not None and status not in RUN_STATUSES:
        _fail(f"unknown status {status!r}; use one of {', '.join(RUN_STATUSES)}.{_nearest(status, list(RUN_STATUSES))}",
              USAGE_ERROR)
    with _clear_errors(), _open_store() as store:
        runs = RunStore(store.engine)
        if workflow is not None:
            try:
                runs.get_workflow(workflow)
            except WorkflowNotFound as exc:
                _fail(str(exc) + _nearest(workflow, [record.name for record in runs.list_workflows()]))
        records = runs.list_runs(workflow=workflow, status=status, limit=limit)
    if not records:
        console.print("No runs" + (" match" if workflow or status else " yet") + ".")
        return
    table = Table(title="Runs (newest first)")
    for column in ("ID", "Workflow", "Status", "Attempt", "Created", "Started", "Finished", "Error"):
        table.add_column(column, overflow="fold" if column == "Error" else "ellipsis")
    for run in records:
        table.add_row(str(run.id), escape(run.workflow_name), _styled(run.status), str(run.attempt),
                      _at(run.created_at), _at(run.started_at), _at(run.finished_at), escape(_summary(run.error)))
    console.print(table)


def _json_text(value: object) -> str:
    return json.dumps(redacted(value), indent=2, ensure_ascii=False, default=str)


@runs_app.command("show")
def runs_show(run_id: Annotated[int, typer.Argument(metavar="ID", help="The run's id (`qbflow runs list`).")]) -> None:
    """One run in detail: its event and every step's input, output, error and timing (secrets masked)."""
    from rich.panel import Panel
    from rich.text import Text

    from qbflow.store import RunStore

    with _clear_errors(), _open_store() as store:
        run = RunStore(store.engine).get_run(run_id)
    table = Table(title=f"Run {run.id}", show_header=False)
    rows = [("Workflow", escape(run.workflow_name)), ("Status", _styled(run.status)),
            ("Attempt", str(run.attempt)), ("Created", _at(run.created_at)), ("Started", _at(run.started_at)),
            ("Finished", _at(run.finished_at))]
    if run.next_attempt_at is not None:
        rows.append(("Next attempt", _at(run.next_attempt_at)))
    if run.error:
        rows.append(("Error", f"[red]{escape(run.error)}[/red]"))
    event = run.event
    if event is not None:
        rows += [("Trigger", escape(event.trigger_key)), ("Entity", escape(event.entity)),
                 ("Record ID", escape(event.record_id)), ("Sync token", escape(event.sync_token or "-")),
                 ("Realm ID", escape(event.realm_id)), ("Changed", _at(event.changed_at)),
                 ("Seen", _at(event.seen_at))]
    else:
        rows.append(("Event", "(none)"))
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    if not run.steps:
        console.print("No steps have run yet.")
        return
    for step in run.steps:
        seconds = ""
        if step.started_at is not None and step.finished_at is not None:
            seconds = f", {(step.finished_at - step.started_at).total_seconds():.3f} s"
        body = Text()
        body.append(f"Status: {step.status}   Attempts: {step.attempts}   Request ID: {step.request_id}\n")
        body.append(f"Started: {_at(step.started_at)}   Finished: {_at(step.finished_at)}{seconds}\n")
        for label, value in (("Input", step.input), ("Output", step.output), ("Error", step.error)):
            if value is None:
                continue
            body.append(f"{label}:\n", style="bold red" if label == "Error" else "bold")
            body.append(_json_text(value) + "\n")
        body.rstrip()
        console.print(Panel(body, title=f"Step {step.position + 1}: {escape(step.step_id)} ({_styled(step.status)})",
                            title_align="left"))


@runs_app.command("retry")
def runs_retry(run_id: Annotated[int, typer.Argument(metavar="ID", help="The run's id (`qbflow runs list`).")]) -> None:
    """Queue a failed, waiting or cancelled run again; the engine picks it up (finished steps are not redone
    twice in QuickBooks: each write keeps its request id)."""
    from qbflow.engine.stored import retry_run
    from qbflow.store import RunStore

    with _clear_errors(), _open_store() as store:
        run = retry_run(RunStore(store.engine), run_id)  # RetryRefused (a QBFlowError) says why it cannot be
        if run.status == "queued":
            console.print(f"Run {run.id} ({escape(run.workflow_name)}) is already queued.")
            return
    console.print(f"Run {run.id} ({escape(run.workflow_name)}) was {run.status}; it is queued again.")


@workflow_app.command("test")
def workflow_test(
    name: Annotated[str, typer.Argument(help="A stored workflow's name (`qbflow workflow list`).")],
    live: Annotated[bool, typer.Option("--live", help="Really call QuickBooks and send HTTP requests.")] = False,
    sample: Annotated[str | None, typer.Option(
        "--sample", help="What the steps see as `trigger`, as a JSON object, @file.json or @- (a QuickBooks record; "
                         "a webhook's {\"body\": ..., \"headers\": ..., \"query\": ...}; a manual run's "
                         "{\"inputs\": ...}). Default: the trigger's own sample.")] = None,
) -> None:
    """Run a workflow once on a sample trigger (its trigger's sample, or --sample) and show each step's input and
    output, nested steps included, for every trigger kind.

    Without --live nothing is written: QuickBooks actions and HTTP requests are checked, not sent."""
    from qbflow.engine.runner import store_clients, test_workflow, workflow_from_definition
    from qbflow.store import RunStore

    given = _read_input(sample, option="--sample") if sample is not None else None
    with _clear_errors(), _open_store() as store:
        record = RunStore(store.engine).get_workflow(name)
        workflow = workflow_from_definition(record.definition)
        report = asyncio.run(test_workflow(workflow, live=live, clients=store_clients(store), sample=given))
    result = report.to_dict()
    typer.echo(json.dumps(result, indent=2, default=str))
    if not report.ok:
        raise typer.Exit(1)


@workflow_app.command("run")
def workflow_run(
    name: Annotated[str, typer.Argument(help="A stored manual (or schedule) workflow's name.")],
    input_text: Annotated[str | None, typer.Option("--input", "-i", help="The inputs as a JSON object, @file.json, "
                                                                         "or @- for standard input.")] = None,
    now: Annotated[bool, typer.Option("--now", help="Run it here and now and show how it ended, instead of leaving it "
                                                    "to a running engine or worker.")] = False,
) -> None:
    """Start a run of a workflow by hand (`trigger: {kind: manual}`, or a schedule's "run it now"), with its inputs
    checked against the workflow's `inputs:`. It is queued for the engine (`qbflow run`, `up`, workers), or with
    --now run here."""
    from qbflow.engine.manual import start_manual_run
    from qbflow.store import RunStore, WorkflowNotFound

    given = _read_input(input_text)
    with _clear_errors(), _open_store() as store, _connector_errors("workflow run"):
        runs = RunStore(store.engine)
        try:
            run_id = start_manual_run(runs, name, given, started_by="cli")
        except WorkflowNotFound as exc:
            _fail(str(exc) + _nearest(name, [record.name for record in runs.list_workflows()]))
        if not now:
            console.print(f"Queued run {run_id} of {escape(name)!r}: a running engine (`qbflow run`, `qbflow up`) or "
                          f"worker runs it; `qbflow runs show {run_id}` shows it.", soft_wrap=True)
            return
        claimed = runs.claim_run(run_id)
        if claimed is None:
            console.print(f"Run {run_id} was taken by a running engine; `qbflow runs show {run_id}` shows it.")
            return
        status = asyncio.run(_run_here(store, runs, run_id, claimed))
    console.print(f"Run {run_id} of {escape(name)!r}: {_styled(status)}. `qbflow runs show {run_id}` shows each step.")
    if status != "succeeded":
        raise typer.Exit(1)


async def _run_here(store: Store, runs: Any, run_id: int, claimed: Any) -> str:
    from qbflow.engine.clients import ClientPool
    from qbflow.engine.runner import Runner, store_clients

    pool = ClientPool(store_clients(store))
    try:
        return (await Runner(runs, pool).run_once(run_id, claimed)).status
    finally:
        await pool.aclose()


@app.command("run")
def run_engine(
    once: Annotated[bool, typer.Option("--once", help="One cycle: poll every enabled workflow now, run what "
                                                      "comes of it, then exit (for cron or tests).")] = False,
    tick: Annotated[float, typer.Option(min=0.1, help="Seconds between cycles.")] = 1.0,
    live: Annotated[bool | None, typer.Option(
        "--live/--plain", help="Live view (triggers, recent runs, problems) or one plain line per busy cycle. "
                               "Default: live on a terminal, plain otherwise.", show_default=False)] = None,
    max_runs: Annotated[int | None, typer.Option(min=1, help="Runs in flight at once, over all companies "
                                                             "[default: QBFLOW_MAX_RUNS or 200].",
                                                 show_default=False)] = None,
    runs_per_company: Annotated[int | None, typer.Option(min=1, help="Runs in flight at once per company "
                                                                     "[default: QBFLOW_RUNS_PER_COMPANY or 20].",
                                                         show_default=False)] = None,
) -> None:
    """The engine in the foreground: poll triggers when due, run the runs (concurrently, within Intuit's limits
    per company), until Ctrl-C or SIGTERM (runs in flight get 20 s to finish; the rest resume at the next start)."""
    from qbflow.app.run import run_engine as run

    if not once:
        _settle_heap()
    with _clear_errors(), _open_store() as store:
        asyncio.run(run(store, once=once, tick=tick, live=live, console=console, max_runs=max_runs,
                        runs_per_company=runs_per_company))


@app.command("up")
def up(
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port of the built-in sandbox on 127.0.0.1 "
                                                            "(0 = any free port).")] = 8765,
    server_port: Annotated[int, typer.Option(min=0, max=65535, help="Port of qbflow's server (API, webhooks, "
                                                                    "dashboard) on 127.0.0.1 (0 = any free "
                                                                    "port).")] = 8000,
    connection: Annotated[str | None, typer.Option(
        "--connection", "-c", help="Run the examples on this stored connection (e.g. a real company) instead of "
                                   "the built-in sandbox; no sandbox is started, no activity is made.")] = None,
    no_activity: Annotated[bool, typer.Option("--no-activity", help="Make no changes in the sandbox; only what you "
                                                                    "do there runs the examples.")] = False,
    duration: Annotated[float | None, typer.Option(min=0.1, help="Stop by itself after this many seconds "
                                                                 "(scripts, tests).")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask before running the examples on a production "
                                                    "company.")] = False,
) -> None:
    """qbflow working at once: the built-in sandbox, four example workflows, some activity, the engine and the
    server (dashboard and API)."""
    from qbflow.app.up import UpOptions, run_up
    from qbflow.qbo.connect import Environment

    def confirm(question: str) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            err_console.print(f"{escape(question)} Pass --yes to go on without being asked.", soft_wrap=True)
            return False
        return typer.confirm(question, default=False)

    async def main(store: Store) -> None:
        async def authorize(name: str, url: str, client_id: str, client_secret: str) -> ConnectionRecord:
            return await _authorize(name, client_id=client_id, client_secret=client_secret,
                                    environment=Environment.local(url), store=store, timeout=60.0)

        options = UpOptions(port=port, server_port=server_port, connection=connection, activity=not no_activity,
                            duration=duration)
        await run_up(store, options, authorize=authorize, console=console, confirm=confirm)

    _settle_heap()
    with _clear_errors(), _open_store() as store:
        try:
            asyncio.run(main(store))
        except (KeyboardInterrupt, asyncio.CancelledError):  # a second Ctrl-C: stopped without waiting
            err_console.print("Stopped without waiting for runs in flight (the next start resumes them).")
            raise typer.Exit(130) from None


workers_app = typer.Typer(help="Workers sharing one PostgreSQL database (`qbflow worker`).", no_args_is_help=True)
app.add_typer(workers_app, name="workers")


def _worker_database() -> str:
    """The database URL, refused (naming the setting) unless the workers can share it."""
    from qbflow.engine.workers import require_postgres
    from qbflow.settings import get_settings

    url = get_settings().database_url
    with _clear_errors():
        require_postgres(url)
    return url


@app.command("worker")
def worker(
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="Jobs (polls and runs) this worker does at "
                                                                   "once.")] = 4,
    queues: Annotated[str | None, typer.Option(help="Comma-separated queues to take jobs from: schedule, polls, "
                                                    "runs (default: all).", show_default=False)] = None,
    tick: Annotated[int, typer.Option(min=1, max=59, help="Seconds between schedules (which companies are due); "
                                                          "the same on every worker.")] = 5,
    stalled_after: Annotated[float, typer.Option(min=1.0, help="Seconds without a heartbeat after which a worker "
                                                               "counts as dead and its jobs are done again.")] = 30.0,
) -> None:
    """A worker on the PostgreSQL database of QBFLOW_DATABASE_URL: any number of them, on any number of machines,
    share the polls and runs. SIGTERM or Ctrl-C stops it once its jobs in flight have finished."""
    import logging
    import os

    from qbflow.app.worker import run_worker
    from qbflow.engine.workers import QUEUES, WorkerOptions

    _worker_database()
    chosen = [name.strip() for name in queues.split(",") if name.strip()] if queues else None
    unknown = [name for name in chosen or [] if name not in QUEUES]
    if chosen is not None and (unknown or not chosen):
        raise typer.BadParameter(f"unknown queue(s) {', '.join(unknown) or '(none given)'}; the queues are "
                                 f"{', '.join(QUEUES)}", param_hint="--queues")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("procrastinate", "httpx"):  # a line per job, a line per request otherwise
        logging.getLogger(chatty).setLevel(logging.WARNING)

    def ready() -> None:
        console.print(f"qbflow worker running (pid {os.getpid()}, concurrency {concurrency}, queues "
                      f"{', '.join(chosen or QUEUES)}); SIGTERM or Ctrl-C stops it after the jobs in flight.",
                      markup=False, highlight=False)

    _settle_heap()
    with _clear_errors(), _open_store() as store:
        asyncio.run(run_worker(store, concurrency=concurrency, queues=chosen,
                               options=WorkerOptions(tick=tick, stalled_after=stalled_after), on_ready=ready))
    console.print("stopped.", markup=False)


@workers_app.command("list")
def workers_list(
    stalled_after: Annotated[float, typer.Option(min=1.0, help="Seconds without a heartbeat after which a worker "
                                                               "counts as dead.")] = 30.0,
) -> None:
    """The workers registered in the database: alive or not, last heartbeat, the jobs each is doing; and the
    jobs waiting per queue."""
    from qbflow.engine.workers import list_workers

    _worker_database()
    with _clear_errors(), _open_store() as store:
        listed = list_workers(store.engine)
    if listed is None:
        console.print("No worker has run on this database yet: start one with `qbflow worker`.")
        return
    rows, waiting = listed
    table = Table(title="Workers")
    for column in ("ID", "Alive", "Last heartbeat", "Jobs running"):
        table.add_column(column)
    for row in rows:
        alive = "[green]yes[/green]" if row.silent_for < stalled_after else "[red]no[/red] (stalled)"
        table.add_row(str(row.id), alive, f"{row.last_heartbeat.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC "
                                          f"({row.silent_for:.0f} s ago)",
                      escape(f"{len(row.jobs)}: " + ", ".join(row.jobs)) if row.jobs else "0")
    if not rows:
        table.add_row("-", "no worker running", "", "")
    console.print(table)
    console.print("Jobs waiting: " + (", ".join(f"{queue} {count}" for queue, count in sorted(waiting.items()))
                                      or "none"), markup=False, highlight=False)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def print_status(current: SystemStatus, out: Console) -> None:
    """`qbflow status` on a terminal: rich tables, one screen."""
    mode = ("workers (`qbflow worker`s share the database; Procrastinate's tables are here)"
            if current.mode == "workers" else "embedded (one process: `qbflow run`, `qbflow up` or `qbflow serve`)")
    out.print(f"Database: {escape(current.database)}\nMode: {escape(mode)}", highlight=False)
    if current.workers is not None:
        table = Table(title="Workers", title_justify="left")
        for column in ("ID", "Alive", "Last heartbeat", "Jobs running"):
            table.add_column(column)
        for worker in current.workers:
            table.add_row(str(worker.id), "[green]yes[/green]" if worker.alive else "[red]no[/red] (stalled)",
                          f"{worker.last_heartbeat.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC "
                          f"({_age(worker.seconds_since_heartbeat)} ago)", str(worker.jobs_running))
        if not current.workers:
            table.add_row("-", "[red]no worker registered[/red]", "", "")
        out.print(table)
    if current.queues is not None:
        table = Table(title="Queues", title_justify="left")
        for column in ("Queue", "Waiting", "Scheduled later", "Being done", "Oldest waiting"):
            table.add_column(column, justify="left" if column == "Queue" else "right")
        for queue in current.queues:
            table.add_row(queue.queue, str(queue.todo), str(queue.scheduled), str(queue.doing),
                          _age(queue.oldest_waiting_seconds))
        out.print(table)
    runs = current.runs
    table = Table(title="Runs", title_justify="left")
    for column in ("Queued", "Running", "Waiting to retry", "Waiting (wait, approval)", "Failed (last 24 h)"):
        table.add_column(column, justify="right")
    table.add_row(str(runs.queued), str(runs.running), str(runs.waiting_retry), str(runs.waiting),
                  f"[red]{runs.failed_last_24h}[/red]" if runs.failed_last_24h else "0")
    out.print(table)
    if not current.rates_measured:
        out.print(f"Requests per company: {escape(current.rates_note)}.", highlight=False)
    else:
        table = Table(title="Requests per company (all processes)", title_justify="left",
                      caption=escape(current.rates_note), caption_justify="left")
        for column in ("Company (realm)", "Connections", "Last minute", "In flight", "429s", "Paused"):
            table.add_column(column, justify="left" if column in ("Company (realm)", "Connections") else "right")
        for realm in current.realms:
            table.add_row(escape(realm.realm_id), escape(", ".join(realm.connections) or "-"),
                          f"{realm.requests_last_minute} / {current.limit_per_minute}",
                          f"{realm.in_flight} / {current.limit_in_flight}", str(realm.throttles),
                          _age(realm.paused_for_seconds) if realm.paused_for_seconds > 0 else "-")
        if not current.realms:
            table.add_row("-", "no company asked yet", "", "", "", "")
        out.print(table)
    if current.reconnect:
        table = Table(title="Connections needing reconnect (`qbflow connect NAME`)", title_justify="left")
        for column in ("Name", "Company (realm)", "Why"):
            table.add_column(column)
        for need in current.reconnect:
            table.add_row(escape(need.name), escape(need.realm_id), escape(need.detail or ""))
        out.print(table)
    else:
        out.print("Connections needing reconnect: none.")


@app.command("status")
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print it as JSON (the same fields as GET /api/status).")]
    = False,
    stalled_after: Annotated[float, typer.Option(min=1.0, help="Seconds without a heartbeat after which a worker "
                                                               "counts as dead.")] = 30.0,
) -> None:
    """One screen: the database and mode, the workers and their queues, runs by status, each company's requests
    (last minute, in flight) beside Intuit's limits, and the connections needing reconnect."""
    from qbflow.engine.status import system_status

    with _clear_errors(), _open_store() as store:
        current = system_status(store.engine, stalled_after=stalled_after)
    if as_json:
        typer.echo(json.dumps(current.to_dict(), indent=2))
        return
    print_status(current, console)


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on. Anything but 127.0.0.1/localhost is reachable "
                                           "from other machines: put it behind HTTPS.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0 = any free port).")] = 8000,
    public_url: Annotated[str | None, typer.Option(
        help="The server's address as browsers reach it, e.g. https://qbflow.example.com behind a proxy (OAuth "
             "redirects; https makes the session cookie secure).", envvar="QBFLOW_PUBLIC_URL",
        show_default=False)] = None,
    no_engine: Annotated[bool, typer.Option("--no-engine", help="Serve only: no polling or runs in this process "
                                                                "(another `qbflow run` does them).")] = False,
    tick: Annotated[float, typer.Option(min=0.1, help="Seconds between engine cycles.")] = 1.0,
    workers: Annotated[bool, typer.Option("--workers", help="Serve for `qbflow worker`s sharing this PostgreSQL "
                                                            "database: no engine here (implies --no-engine); a "
                                                            "webhook defers the company's poll to the workers at "
                                                            "once.")] = False,
) -> None:
    """The HTTP server: JSON API (/api, documented at /docs), Intuit webhooks and the dashboard, with the engine,
    until Ctrl-C."""
    from qbflow.app.serve import ServeOptions, run_server

    if public_url is not None and not public_url.startswith(("http://", "https://")):
        raise typer.BadParameter(f"expected a URL starting with http:// or https://, not {public_url!r}",
                                 param_hint="--public-url")
    options = ServeOptions(host=host, port=port, public_url=public_url, engine=not (no_engine or workers), tick=tick,
                           workers=workers)
    _settle_heap()
    with _clear_errors(), _open_store() as store:
        try:
            asyncio.run(run_server(store, options, console=console))
        except (KeyboardInterrupt, asyncio.CancelledError):  # a second Ctrl-C: stopped without waiting
            err_console.print("Stopped without waiting for the run in flight (the next start resumes it).")
            raise typer.Exit(130) from None


hooks_app = typer.Typer(help="Inbound URLs of webhook workflows (`trigger: {kind: webhook}`).", no_args_is_help=True)
app.add_typer(hooks_app, name="hooks")


def _hooks_base() -> str:
    from qbflow.app.serve import DEFAULT_PORT
    from qbflow.server.serving import url_for
    from qbflow.settings import get_settings

    return get_settings().public_url or url_for("127.0.0.1", DEFAULT_PORT)


def _print_new_hook(store: Store, record: WorkflowRecord, secret: str | None = None) -> None:
    """After `workflow add` or `hooks rotate`: a webhook workflow's URL, and its secret when it is new."""
    from qbflow.engine.stored import ensure_hook, hook_url

    made = ensure_hook(store.hooks, record)
    if made is None:
        return
    hook, new = made
    secret = secret or new
    console.print(f"  URL: {hook_url(_hooks_base(), hook)}", markup=False, highlight=False)
    if secret is not None:
        console.print(f"  secret: {secret}", markup=False, highlight=False)
        console.print("  Shown only this once (it is stored encrypted): give it to the sender. "
                      "`qbflow hooks rotate NAME` makes a new one.", markup=False, highlight=False)


@hooks_app.command("list")
def hooks_list() -> None:
    """Each webhook workflow's URL, when its secret was made, and its recent deliveries (never the secret)."""
    from qbflow.engine.stored import hook_url

    with _clear_errors(), _open_store() as store:
        hooks = store.hooks.list()
    if not hooks:
        console.print("No webhook workflows yet: add one with `trigger: {kind: webhook}` (docs/workflows.md).")
        return
    base = _hooks_base()
    table = Table(title="Hooks")
    for column in ("Workflow", "URL", "Enabled", "Secret made", "Deliveries", "Last delivery"):
        table.add_column(column)
    for hook in hooks:
        last = hook.last_delivery
        table.add_row(escape(hook.workflow), escape(hook_url(base, hook)),
                      "[green]on[/green]" if hook.enabled else "[dim]off[/dim]",
                      _at(hook.rotated_at or hook.created_at) + (" (rotated)" if hook.rotated_at else ""),
                      str(hook.deliveries),
                      "-" if last is None else f"{_at(last.received_at)} {last.outcome}"
                      + (f" run #{last.run_id}" if last.run_id else ""))
    console.print(table)
    console.print("[dim]Accepted deliveries only: refused ones store nothing (the dashboard shows the server's "
                  "recent refusals).[/dim]")


@hooks_app.command("rotate")
def hooks_rotate(
    name: Annotated[str, typer.Argument(help="The webhook workflow's name (`qbflow hooks list`).")],
    secret_stdin: Annotated[bool, typer.Option("--secret-stdin", help="Read the secret from standard input (one the "
                                               "sender chose, e.g. Shopify's or Stripe's) instead of making a "
                                               "random one.")] = False,
) -> None:
    """Give a webhook workflow's URL a new secret, shown once; the old one stops working at once."""
    from qbflow.engine.workflow import trigger_kind
    from qbflow.store import RunStore, WorkflowNotFound

    given = sys.stdin.readline().strip() if secret_stdin else None
    if secret_stdin and not given:
        _fail("no secret on standard input")
    with _clear_errors(), _open_store() as store:
        runs = RunStore(store.engine)
        try:
            record = runs.get_workflow(name)
        except WorkflowNotFound as exc:
            _fail(str(exc) + _nearest(name, [r.name for r in runs.list_workflows()]))
        definition = record.definition if isinstance(record.definition, dict) else {}
        if trigger_kind(definition.get("trigger") or {}) != "webhook":
            _fail(f"workflow {name!r} has no URL: its trigger is not `kind: webhook`")
        _hook, secret = store.hooks.rotate(record.id, given)
        console.print(f"New secret for {name!r}; the old one no longer works.", markup=False, highlight=False)
        _print_new_hook(store, record, None if secret_stdin else secret)


if __name__ == "__main__":
    app()
