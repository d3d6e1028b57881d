"""Fixtures for the store tests: every database test runs on SQLite and, when
QBFLOW_TEST_POSTGRES_URL is set (a server where that user may CREATE DATABASE), on PostgreSQL too.

Example: QBFLOW_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from qbflow.store import ConnectionStore, SecretBox, Store, TokenResult, open_store
from tests.support.postgres import POSTGRES_ENV

CLIENT_SECRET = "client-secret-Zq8w1e"
ACCESS_TOKEN = "access-token-Xy7Pq2LmN4"
REFRESH_TOKEN = "refresh-token-Ab3Cd9EfG1"


@pytest.fixture(autouse=True)
def _no_real_user_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep every test away from the real data folder and any QBFLOW_* set in the environment."""
    for name in list(os.environ):
        if name.startswith("QBFLOW_") and name != POSTGRES_ENV:
            monkeypatch.delenv(name)
    monkeypatch.setenv("QBFLOW_DATA_DIR", str(tmp_path / "data"))


@pytest.fixture
def key() -> str:
    return SecretBox.generate_key()


@pytest.fixture
def box(key: str) -> SecretBox:
    return SecretBox([key])


@pytest.fixture
def store(db_url: str, box: SecretBox) -> Iterator[Store]:
    opened = open_store(url=db_url, box=box)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def connections(store: Store) -> ConnectionStore:
    return store.connections


def tokens(access: str = ACCESS_TOKEN, refresh: str | None = REFRESH_TOKEN, *, hours: float = 1) -> TokenResult:
    now = datetime.now(UTC)
    return TokenResult(
        access_token=access,
        access_expires_at=now + timedelta(hours=hours),
        refresh_token=refresh,
        refresh_expires_at=now + timedelta(days=100) if refresh is not None else None,
    )


def add_connection(connections: ConnectionStore, name: str = "acme", **overrides: Any):
    values: dict[str, Any] = {
        "name": name,
        "realm_id": "9130350000000001",
        "company_name": "Acme Ltd",
        "environment": "sandbox",
        "client_id": "client-id-1",
        "client_secret": CLIENT_SECRET,
        "tokens": tokens(),
        "api_base": "https://sandbox-quickbooks.api.intuit.com",
        "token_endpoint": "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer",
        "revocation_endpoint": "https://developer.api.intuit.com/v2/oauth2/tokens/revoke",
        "discovery_url": "https://developer.intuit.com/.well-known/openid_sandbox_configuration",
    }
    values.update(overrides)
    return connections.add(**values)
