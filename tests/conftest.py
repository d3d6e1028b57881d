"""Fixtures shared by every test folder: the sandbox mounted in-process, a token for its first company, and
a new empty database on SQLite and, when QBFLOW_TEST_POSTGRES_URL is set, on PostgreSQL (`db_url`)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

from qbflow.sandbox.app import Sandbox

# A PostgreSQL server where this user may CREATE DATABASE, e.g.
# postgresql+psycopg://postgres@127.0.0.1:5432/postgres (`.ci/run` starts one and sets it).
POSTGRES_ENV = "QBFLOW_TEST_POSTGRES_URL"
POSTGRES_URL = os.environ.get(POSTGRES_ENV)  # read at import: tests clear QBFLOW_* from the environment


@contextmanager
def postgres_database() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped afterwards (skips without a server)."""
    if not POSTGRES_URL:
        pytest.skip(f"{POSTGRES_ENV} is not set")
    name = f"qbflow_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


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
