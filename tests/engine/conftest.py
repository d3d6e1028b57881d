"""Fixtures shared by the engine's tests: a data folder of the test's own, and `qbo_clients` (clients over the
in-process sandbox). `store` and `runs`, on SQLite and on PostgreSQL, are tests/support/stores.py's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.engine import qbo_clients  # noqa: F401 (a fixture: clients over the in-process sandbox)


@pytest.fixture
def isolated_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No QBFLOW_ setting of the machine's reaches the test; the data folder is the test's own."""
    for name in list(os.environ):
        if name.startswith("QBFLOW_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("QBFLOW_DATA_DIR", str(tmp_path / "data"))


