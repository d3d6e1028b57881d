"""`qbflow connect` and `qbflow connections ...`: arguments, messages and what they never print."""

from __future__ import annotations

from pathlib import Path

import pytest

from qbflow.store import SecretBox, open_store
from tests.support.cli import SECRETS, add_connection, invoke


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "QBFLOW_DATA_DIR": str(tmp_path),
        "QBFLOW_DATABASE_URL": f"sqlite:///{tmp_path / 'qbflow.sqlite3'}",
        "QBFLOW_SECRET_KEY": SecretBox.generate_key(),
        "COLUMNS": "200",
    }
    for name in ("QBFLOW_CLIENT_ID", "QBFLOW_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def test_list_with_no_connections(env) -> None:
    result = invoke("connections", "list")
    assert result.exit_code == 0 and "No connections yet" in result.output and "qbflow connect NAME" in result.output


@pytest.mark.parametrize("args", [("connections", "show", "nope"), ("connections", "remove", "nope"),
                                  ("connections", "remove", "nope", "--force")])
def test_unknown_names_are_named(env, args) -> None:
    result = invoke(*args)
    assert result.exit_code == 1
    assert "No connection named 'nope'" in result.output and "Traceback" not in result.output


def test_list_and_show_never_print_a_secret(env) -> None:
    add_connection()
    listed, shown = invoke("connections", "list"), invoke("connections", "show", "acme")
    assert listed.exit_code == 0 and shown.exit_code == 0
    assert "acme" in listed.output and "Acme [Books] Ltd" in listed.output  # markup in names is shown as is
    assert "9130000000000001" in listed.output and "ok" in listed.output and "in 60 min" in listed.output
    assert "ABclient" in shown.output and "Token version" in shown.output
    for secret in SECRETS:
        assert secret not in listed.output and secret not in shown.output


def test_needs_reconnect_shows_the_fix(env) -> None:
    add_connection()
    with open_store() as store:
        store.connections.mark_needs_reconnect("acme", "Intuit refused the refresh token (invalid_grant)")
    listed, shown = invoke("connections", "list"), invoke("connections", "show", "acme")
    assert "needs reconnect" in listed.output and "qbflow connect acme" in listed.output
    assert "invalid_grant" in shown.output and "qbflow connect acme" in shown.output


def test_remove_that_cannot_reach_intuit_keeps_the_connection(env) -> None:
    add_connection()
    kept = invoke("connections", "remove", "acme")
    assert kept.exit_code == 1 and "could not revoke connection 'acme'" in kept.output and "--force" in kept.output
    assert "acme" in invoke("connections", "list").output
    forced = invoke("connections", "remove", "acme", "--force")
    assert forced.exit_code == 0 and "Removed connection 'acme'" in forced.output
    for secret in SECRETS:
        assert secret not in kept.output and secret not in forced.output


def test_connect_needs_app_credentials_when_not_interactive(env) -> None:
    missing_id = invoke("connect", "acme")
    assert missing_id.exit_code == 2 and "QBFLOW_CLIENT_ID" in missing_id.output
    missing_secret = invoke("connect", "acme", "--client-id", "ABclient")
    assert missing_secret.exit_code == 2 and "QBFLOW_CLIENT_SECRET" in missing_secret.output


@pytest.mark.parametrize("args, message", [
    (("connect", "has space", "--client-id", "x", "--client-secret", "y"), "letters, digits"),
    (("connect", "acme", "--client-id", "x", "--client-secret", "y", "--sandbox", "http://127.0.0.1:9",
      "--production"), "exclude each other"),
    (("connect", "acme", "--client-id", "x", "--client-secret", "y", "--sandbox", "not-a-url"), "must look like"),
])
def test_connect_refuses_bad_arguments(env, args, message) -> None:
    result = invoke(*args)
    assert result.exit_code == 2 and message in result.output


def test_connect_to_an_unreachable_server_is_a_clear_error(env) -> None:
    result = invoke("connect", "acme", "--client-id", "ABclient", "--client-secret", SECRETS[0],
                    "--sandbox", "http://127.0.0.1:9", "--no-browser")
    assert result.exit_code == 1
    assert "Could not reach" in result.output and "discovery" in result.output and "Traceback" not in result.output
    assert SECRETS[0] not in result.output
    assert "No connections yet" in invoke("connections", "list").output


def test_help_documents_the_redirect_uri_and_keeps_sandbox(env) -> None:
    top = invoke("--help")
    assert all(command in top.output for command in ("sandbox", "connect", "connections"))
    connect_help = invoke("connect", "--help")
    assert "--port" in connect_help.output and "register" in connect_help.output
    assert "QBFLOW_CLIENT_SECRET" in connect_help.output
