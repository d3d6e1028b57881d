"""The `qbflow` command in process (typer's CliRunner) on a data folder of the test's own, with a stored
connection whose secrets the tests look for in what the commands print."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from typer.testing import CliRunner

from qbflow.cli import app
from qbflow.store import TokenResult, open_store

__all__ = ["SECRETS", "add_connection", "invoke"]

SECRETS = ("client-secret-value-0123456789", "access-token-value-0123456789", "refresh-token-value-0123456789")


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def add_connection(name: str = "acme") -> None:
    client_secret, access, refresh = SECRETS
    now = datetime.now(UTC)
    with open_store() as store:
        store.connections.add(
            name=name, realm_id="9130000000000001", company_name="Acme [Books] Ltd", client_id="ABclient",
            client_secret=client_secret, api_base="http://127.0.0.1:9",
            token_endpoint="http://127.0.0.1:9/oauth2/v1/tokens/bearer",
            revocation_endpoint="http://127.0.0.1:9/v2/oauth2/tokens/revoke", environment="local",
            tokens=TokenResult(access_token=access, access_expires_at=now + timedelta(hours=1),
                               refresh_token=refresh, refresh_expires_at=now + timedelta(days=100)),
        )

