"""`qbflow connect` as a user runs it: the command in a subprocess, `qbflow sandbox` serving on 127.0.0.1,
and the printed authorization URL followed the way a browser would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from typer.testing import CliRunner

from qbflow.cli import app
from tests.support.connect import CLIENT_ID, CLIENT_SECRET, ConnectRun, qbflow_env, stored
from tests.support.sandbox import running_sandbox


@pytest.fixture(scope="module")
def consent_sandbox_url() -> Iterator[str]:
    """A sandbox that shows its consent page (Connect / Cancel)."""
    with running_sandbox("--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET,
                         "--no-rate-limit") as (base, _process):
        yield base


def with_state(location: str, state: str) -> str:
    parts = urlsplit(location)
    query = [(k, state if k == "state" else v) for k, v in parse_qsl(parts.query)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def cli(env: dict[str, str], *args: str):
    return CliRunner().invoke(app, list(args), env={**env, "COLUMNS": "200"})


def test_connect_through_the_cli_stores_the_connection_encrypted(tmp_path: Path, sandbox_url: str) -> None:
    env = qbflow_env(tmp_path)
    run = ConnectRun("acme", sandbox_url, env)
    url = run.authorize_url()
    assert "state=" in url and f"client_id={CLIENT_ID}" in url and "redirect_uri=http%3A%2F%2F127.0.0.1%3A" in url
    page = httpx.get(url, follow_redirects=True, timeout=30)  # consent (auto-approved) → 127.0.0.1 callback
    assert page.status_code == 200 and "received the authorization" in page.text
    code = dict(parse_qsl(urlsplit(page.history[0].headers["location"]).query))["code"]
    status, out, err = run.finish()
    assert status == 0, out + err
    assert "Connected Sandbox Company_US_1" in out and "acme" in out and "local sandbox" in out
    assert "Waiting for the authorization" in out

    record = stored(env, "acme")
    assert record.company_name == "Sandbox Company_US_1" and record.status == "ok" and record.environment == "local"
    assert record.realm_id in out
    secrets = [record.access_token, record.refresh_token, CLIENT_SECRET, code]
    for secret in secrets:
        assert secret not in out and secret not in err
    # Nothing secret is on disk in the clear: not in the database, its WAL, or anything beside it.
    files = [p for p in (tmp_path / "data").iterdir() if p.is_file()]
    assert any(p.name == "qbflow.sqlite3" for p in files)
    for path in files:
        data = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in data, f"a secret is readable in {path.name}"

    listed = cli(env, "connections", "list")
    assert listed.exit_code == 0, listed.output
    assert "acme" in listed.output and record.realm_id in listed.output and "Sandbox Company_US_1" in listed.output
    assert "ok" in listed.output
    shown = cli(env, "connections", "show", "acme")
    assert shown.exit_code == 0, shown.output
    assert CLIENT_ID in shown.output and "Refresh token expires" in shown.output
    for secret in secrets:
        assert secret not in listed.output and secret not in shown.output


def test_reconnecting_a_name_replaces_its_tokens(tmp_path: Path, sandbox_url: str) -> None:
    env = qbflow_env(tmp_path)
    for attempt in range(2):
        run = ConnectRun("acme", sandbox_url, env)
        httpx.get(run.authorize_url(), follow_redirects=True, timeout=30)
        status, out, err = run.finish()
        assert status == 0, out + err
        if attempt == 0:
            first = stored(env, "acme")
    assert "Reconnected" in out
    second = stored(env, "acme")
    assert second.token_version == first.token_version + 1 and second.refresh_token != first.refresh_token


def test_state_mismatch_is_refused_and_nothing_stored(tmp_path: Path, sandbox_url: str) -> None:
    env = qbflow_env(tmp_path)
    run = ConnectRun("acme", sandbox_url, env)
    redirect = httpx.get(run.authorize_url(), follow_redirects=False, timeout=30)
    assert redirect.status_code == 302
    page = httpx.get(with_state(redirect.headers["location"], "forged"), timeout=30)
    assert page.status_code == 400 and "state does not match" in page.text
    status, out, err = run.finish()
    assert status == 1
    assert "Error" in err and "'acme'" in err and "state does not match" in err and "Nothing was stored" in err
    assert "Traceback" not in err
    listed = cli(env, "connections", "list")
    assert "No connections yet" in listed.output


def test_cancel_on_the_consent_page_is_access_denied(tmp_path: Path, consent_sandbox_url: str) -> None:
    env = qbflow_env(tmp_path)
    run = ConnectRun("acme", consent_sandbox_url, env)
    with httpx.Client(timeout=30) as browser:
        consent = browser.get(run.authorize_url())
        assert consent.status_code == 200 and 'value="deny"' in consent.text
        ticket = consent.text.split('name="consent_ticket" value="', 1)[1].split('"', 1)[0]
        page = browser.post(f"{consent_sandbox_url}/connect/oauth2",
                            data={"consent_ticket": ticket, "action": "deny"}, follow_redirects=True)
    assert page.history and "error=access_denied" in page.history[0].headers["location"]
    assert page.status_code == 400 and "access was denied" in page.text
    status, out, err = run.finish()
    assert status == 1
    assert "'acme'" in err and "access was denied" in err and "Nothing was stored" in err
    assert "No connections yet" in cli(env, "connections", "list").output


def test_approving_on_the_consent_page_connects_the_chosen_company(tmp_path: Path, consent_sandbox_url: str) -> None:
    env = qbflow_env(tmp_path)
    run = ConnectRun("books", consent_sandbox_url, env)
    with httpx.Client(timeout=30) as browser:
        consent = browser.get(run.authorize_url())
        ticket = consent.text.split('name="consent_ticket" value="', 1)[1].split('"', 1)[0]
        realm = consent.text.split('name="realm_id" value="', 1)[1].split('"', 1)[0]
        page = browser.post(f"{consent_sandbox_url}/connect/oauth2",
                            data={"consent_ticket": ticket, "action": "approve", "realm_id": realm},
                            follow_redirects=True)
    assert page.status_code == 200
    status, out, err = run.finish()
    assert status == 0, out + err
    assert stored(env, "books").realm_id == realm


def test_remove_revokes_at_intuit(tmp_path: Path, sandbox_url: str) -> None:
    env = qbflow_env(tmp_path)
    run = ConnectRun("acme", sandbox_url, env)
    httpx.get(run.authorize_url(), follow_redirects=True, timeout=30)
    assert run.finish()[0] == 0
    record = stored(env, "acme")
    removed = cli(env, "connections", "remove", "acme")
    assert removed.exit_code == 0, removed.output
    assert "Removed connection 'acme'" in removed.output and "revoked" in removed.output
    # The old refresh token no longer works at the sandbox.
    refused = httpx.post(f"{sandbox_url}/oauth2/v1/tokens/bearer",
                         data={"grant_type": "refresh_token", "refresh_token": record.refresh_token},
                         auth=(CLIENT_ID, CLIENT_SECRET))
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    gone = cli(env, "connections", "show", "acme")
    assert gone.exit_code == 1 and "No connection named 'acme'" in gone.output


def test_remove_keeps_the_connection_when_revoking_fails_unless_forced(tmp_path: Path, sandbox_url: str) -> None:
    env = qbflow_env(tmp_path)
    run = ConnectRun("acme", sandbox_url, env)
    httpx.get(run.authorize_url(), follow_redirects=True, timeout=30)
    assert run.finish()[0] == 0
    record = stored(env, "acme")
    # Revoked behind qbflow's back: Intuit answers 400 to a second revocation.
    httpx.post(f"{sandbox_url}/v2/oauth2/tokens/revoke", json={"token": record.refresh_token},
               auth=(CLIENT_ID, CLIENT_SECRET)).raise_for_status()
    kept = cli(env, "connections", "remove", "acme")
    assert kept.exit_code == 1
    assert "could not revoke connection 'acme'" in kept.output and "--force" in kept.output
    assert "acme" in cli(env, "connections", "list").output
    forced = cli(env, "connections", "remove", "acme", "--force")
    assert forced.exit_code == 0, forced.output
    assert "Warning" in forced.output and "Removed connection 'acme'" in forced.output
    assert "No connections yet" in cli(env, "connections", "list").output
    for result in (kept, forced):
        assert record.refresh_token not in result.output and CLIENT_SECRET not in result.output


def test_connect_to_an_auto_approving_sandbox_needs_no_browser(tmp_path: Path, sandbox_url: str) -> None:
    """`qbflow connect NAME --sandbox URL` against `qbflow sandbox --auto-approve` finishes on its own, even
    on a machine where no browser can be opened."""
    env = qbflow_env(tmp_path)
    (tmp_path / "data").mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-m", "qbflow.cli", "connect", "demo", "--sandbox", sandbox_url, "--timeout", "60"],
        env={**os.environ, **env, "BROWSER": "false", "DISPLAY": "", "COLUMNS": "200"},
        capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "approved at once" in result.stdout and "Connected Sandbox Company_US_1" in result.stdout
    record = stored(env, "demo")
    assert record.status == "ok" and record.company_name == "Sandbox Company_US_1"
    assert record.access_token not in result.stdout + result.stderr
