"""No token, client secret or authorization code reaches a log record (any logger, at DEBUG), the CLI's
output or an exception's text, over connect → calls → expiry and refresh → revocation → remove."""

from __future__ import annotations

import asyncio
import logging
import os
import urllib.request
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from typer.testing import CliRunner

from qbflow.cli import app
from qbflow.qbo import NeedsReconnect, QBOError
from qbflow.qbo.connect import Environment, connect
from qbflow.qbo.connections import client_for
from qbflow.store import AsyncConnectionStore, open_store
from tests.support.connect import CLIENT_ID, CLIENT_SECRET, qbflow_env


class Browser(urllib.request.HTTPRedirectHandler):
    """Follows the consent page's redirect to the callback, keeping each Location (with its code).
    urllib, not httpx, so the test's own browsing adds no log records."""

    def __init__(self) -> None:
        self.locations: list[str] = []

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        self.locations.append(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)

    def open(self, url: str) -> bool:
        with urllib.request.build_opener(self).open(url, timeout=30) as page:
            page.read()
        return True

    def codes(self) -> list[str]:
        return [dict(parse_qsl(urlsplit(u).query)).get("code", "") for u in self.locations]


def fragments(secret: str) -> list[str]:
    """The secret and the pieces of it servers and tracebacks like to quote."""
    return [secret, secret[:8], secret[-8:]]


def test_no_secret_in_logs_output_or_errors(tmp_path: Path, sandbox_url: str,
                                            caplog: pytest.LogCaptureFixture, monkeypatch) -> None:
    caplog.set_level(logging.DEBUG)
    env = qbflow_env(tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    browser = Browser()
    monkeypatch.setattr("webbrowser.open", lambda url, *a, **k: browser.open(url))
    # Go through the browser even though this sandbox approves at once, so every code passes `browser`.
    monkeypatch.setattr("qbflow.cli._sandbox_approves_at_once", lambda url: False)
    runner = CliRunner()
    outputs: list[str] = []
    errors: list[BaseException] = []
    seen: list[str] = [CLIENT_SECRET]

    def run(*args: str) -> None:
        result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
        outputs.append(result.output)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            errors.append(result.exception)

    def remember() -> None:
        with open_store() as store:
            record = store.connections.get("acme")
        seen.extend([record.access_token, record.refresh_token, record.client_secret])

    run("connect", "acme", "--sandbox", sandbox_url, "--timeout", "30")  # browser "opened", not --no-browser
    assert "Connected" in outputs[-1], outputs[-1]
    remember()
    run("connect", "acme", "--sandbox", sandbox_url, "--timeout", "30")  # reconnect: new tokens
    assert "Reconnected" in outputs[-1], outputs[-1]
    remember()
    run("connections", "list")
    run("connections", "show", "acme")

    async def calls() -> None:
        with open_store() as store:
            async with AsyncConnectionStore(store.connections) as astore:
                async with await client_for("acme", astore) as qbo:
                    await qbo.company_info()
                    httpx.post(f"{sandbox_url}/_sandbox/clock", json={"advance": 3601}).raise_for_status()
                    await asyncio.gather(*(qbo.get("Customer", "1") for _ in range(10)))  # 401s, one refresh
                    assert qbo._tokens.refreshes == 1  # noqa: SLF001
                    record = await astore.get("acme")
                    seen.extend([record.access_token, record.refresh_token])
                    httpx.post(f"{sandbox_url}/v2/oauth2/tokens/revoke", json={"token": record.refresh_token},
                               auth=(CLIENT_ID, CLIENT_SECRET)).raise_for_status()
                    for _ in range(2):
                        try:
                            await qbo.get("Customer", "1")
                        except NeedsReconnect as exc:
                            errors.append(exc)
                try:
                    await client_for("acme", astore)
                except NeedsReconnect as exc:
                    errors.append(exc)
                wrong = "wrong-client-secret-0123456789"
                seen.append(wrong)
                try:  # a wrong secret: Intuit says invalid_client; the secret must not be repeated
                    await connect("other", client_id=CLIENT_ID, client_secret=wrong,
                                  environment=Environment.local(sandbox_url), store=astore, open_url=browser.open,
                                  timeout=30)
                except QBOError as exc:
                    errors.append(exc)

    asyncio.run(calls())
    run("connections", "list")
    run("connections", "remove", "acme")  # revoke fails (already revoked): kept
    run("connections", "remove", "acme", "--force")
    assert "Removed connection 'acme'" in outputs[-1]

    codes = browser.codes()
    assert len(codes) == 3 and all(codes)
    seen.extend(codes)
    assert len(errors) == 4 and "qbflow connect acme" in str(errors[0])
    assert any(getattr(e, "code", None) == "invalid_client" for e in errors)

    texts = {"logs": caplog.text, "outputs": "\n".join(outputs)}
    texts["log messages"] = "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records)
    texts["exceptions"] = "\n".join(f"{e}\n{e!r}\n{getattr(e, 'detail', '')}" for e in errors)
    assert len(caplog.records) > 20  # the run did log (httpx, httpcore, qbflow ...)
    for secret in seen:
        assert len(secret) >= 16
        for piece in fragments(secret):
            for where, text in texts.items():
                assert piece not in text, f"a secret ({len(secret)} chars) appears in the {where}"
    assert os.environ["QBFLOW_CLIENT_SECRET"] == CLIENT_SECRET
