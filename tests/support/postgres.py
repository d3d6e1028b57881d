"""A new, empty PostgreSQL database per test, when QBFLOW_TEST_POSTGRES_URL names a server (skipped otherwise)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, make_url, text

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

