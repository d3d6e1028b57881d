"""Fixtures shared by every test folder: the sandbox mounted in-process, a token for its first company, and
a new empty database on SQLite and, when QBFLOW_TEST_POSTGRES_URL is set, on PostgreSQL (`db_url`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from qbflow.sandbox.app import Sandbox
from tests.support.postgres import postgres_database

# Fixtures for every folder: `store` and `runs` on `db_url` (a folder's conftest.py or a test file may define its own).
pytest_plugins = ["tests.support.stores"]


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of a new, empty database: SQLite, then PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.sqlite3'}"
        return
    with postgres_database() as url:
        yield url


@pytest.fixture
def sandbox() -> Sandbox:
    """A fresh in-memory sandbox with one seeded company, throttles off (tests that need them build their own)."""
    return Sandbox(rate_limit=False)


@pytest.fixture
def realm(sandbox: Sandbox) -> str:
    return sandbox.realms[0]


@pytest.fixture
def token(sandbox: Sandbox, realm: str) -> str:
    """A real access token for `realm`, as if the user had connected."""
    return sandbox.oauth.issue_tokens_for_tests(sandbox.client_id, realm)["access_token"]
