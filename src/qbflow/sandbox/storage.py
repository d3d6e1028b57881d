"""Where the sandbox keeps its books: in memory, or in one SQLite file so they survive a restart.

The live working set is always plain Python dicts (fast to query); with a file, every change is
written through to SQLite in the same call, and the file is read back at start.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS record (
    realm TEXT NOT NULL, entity TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (realm, entity, id)
);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blob (key TEXT PRIMARY KEY, content BLOB NOT NULL);
"""


class Storage:
    """Write-through persistence of records and small named state blobs (JSON)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = str(path) if path else None
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        if self.path:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        self._kv: dict[str, Any] = {}
        self._blobs: dict[str, bytes] = {}
        self._depth = 0

    @property
    def persistent(self) -> bool:
        return self._db is not None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One commit for every write of one API call (nested calls join the outer one).

        Memory is already changed when a write fails halfway, so the file is committed either way: it must
        keep saying what the books say.
        """
        if self._db is None:
            yield
            return
        if self._depth == 0:
            self._db.execute("BEGIN")
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                self._db.execute("COMMIT")

    # records -----------------------------------------------------------------------------------
    def load_records(self) -> Iterator[tuple[str, str, str, dict]]:
        """Every stored record as (realm, entity, id, body)."""
        if self._db is None:
            return iter(())
        # In Id order, so tables are in creation order again (queries without ORDERBY rely on it).
        rows = self._db.execute(
            "SELECT realm, entity, id, body FROM record ORDER BY realm, entity, length(id), id").fetchall()
        return ((r, e, i, json.loads(b)) for r, e, i, b in rows)

    def save_record(self, realm: str, entity: str, record_id: str, body: dict) -> None:
        if self._db is None:
            return
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO record (realm, entity, id, body) VALUES (?, ?, ?, ?)",
                (realm, entity, record_id, json.dumps(body, separators=(",", ":"))),
            )

    def delete_record(self, realm: str, entity: str, record_id: str) -> None:
        if self._db is None:
            return
        with self._lock:
            self._db.execute(
                "DELETE FROM record WHERE realm = ? AND entity = ? AND id = ?", (realm, entity, record_id)
            )

    # named state -------------------------------------------------------------------------------
    def kv_get(self, key: str, default: Any = None) -> Any:
        if key in self._kv:
            return self._kv[key]
        if self._db is not None:
            row = self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
            if row is not None:
                value = json.loads(row[0])
                self._kv[key] = value
                return value
        return default

    def kv_set(self, key: str, value: Any) -> None:
        self._kv[key] = value
        if self._db is None:
            return
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, json.dumps(value))
            )

    # file contents (attachments) ---------------------------------------------------------------
    def save_blob(self, key: str, content: bytes) -> None:
        if self._db is None:
            self._blobs[key] = content
            return
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO blob (key, content) VALUES (?, ?)", (key, content))

    def load_blob(self, key: str) -> bytes | None:
        if self._db is None:
            return self._blobs.get(key)
        row = self._db.execute("SELECT content FROM blob WHERE key = ?", (key,)).fetchone()
        return bytes(row[0]) if row else None

    def delete_blob(self, key: str) -> None:
        self._blobs.pop(key, None)
        if self._db is not None:
            with self._lock:
                self._db.execute("DELETE FROM blob WHERE key = ?", (key,))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
