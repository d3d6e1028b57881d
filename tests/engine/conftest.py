"""Fixtures shared by the engine's tests: a data folder of the test's own, and the run store on SQLite and on
PostgreSQL (when `QBFLOW_TEST_POSTGRES_URL` names a server; `db_url` is parametrised in tests/conftest.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from qbflow.store import RunStore, SecretBox, Store, open_store


@pytest.fixture
def isolated_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No QBFLOW_ setting of the machine's reaches the test; the data folder is the test's own."""
    for name in list(os.environ):
        if name.startswith("QBFLOW_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("QBFLOW_DATA_DIR", str(tmp_path / "data"))


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """The engine's store on SQLite and on PostgreSQL (when a server is given)."""
    opened = open_store(url=db_url, box=SecretBox([SecretBox.generate_key()]))
    yield opened
    opened.close()


@pytest.fixture
def runs(store: Store) -> RunStore:
    return RunStore(store.engine)
