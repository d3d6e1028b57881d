"""Engines, transactions and migrations.

SQLite (the default) and PostgreSQL are both supported; `make_engine` is the one place that knows their
differences:

- SQLite runs in WAL mode (readers never block the writer), with foreign keys on and a 30 s busy timeout.
  pysqlite's own implicit transactions are switched off and qbflow emits `BEGIN` itself, so a write
  transaction can start with `BEGIN IMMEDIATE` and hold SQLite's writer lock from its first statement.
- PostgreSQL write transactions lock the rows they change with `SELECT ... FOR UPDATE`.

`write_session` opens a transaction of the second kind, `read_session` a plain one. The engine is
synchronous; `qbflow.store.aio` runs these short calls off the event loop.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000

# Execution option that makes a SQLite transaction start with BEGIN IMMEDIATE (takes the writer lock).
WRITE_LOCK_OPTION = "qbflow_write_lock"

# Any constant: taken with pg_advisory_xact_lock so that concurrent upgrades run one after the other.
_PG_MIGRATION_LOCK_ID = 0x716266_6C6F77  # "qbflow"


def sqlite_file(url: str | URL) -> Path | None:
    """The database file of an SQLite URL, or None (another database, or SQLite in memory)."""
    url = make_url(url)
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:") or url.query.get("mode") == "memory":
        return None
    return Path(database).expanduser()


def make_engine(url: str | URL, **engine_options: Any) -> Engine:
    """A synchronous engine for `url`, set up for qbflow (see the module docstring).

    For an SQLite file, its folder is created (mode 0700) and the file itself with mode 0600 when missing.
    Bound parameters are hidden from SQLAlchemy's exception messages and logs, so an encrypted value
    never shows up in a traceback either.
    """
    url = make_url(url)
    engine_options.setdefault("hide_parameters", True)
    if url.get_backend_name() != "sqlite":
        return create_engine(url, **engine_options)

    path = sqlite_file(url)
    if path is not None:
        _create_private_file(path)
    connect_args = dict(engine_options.pop("connect_args", {}))
    connect_args.setdefault("check_same_thread", False)
    connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT_MS / 1000)
    engine = create_engine(url, connect_args=connect_args, **engine_options)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below decide how transactions start, not pysqlite.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            _use_wal(cursor)
            # In WAL mode, NORMAL syncs at checkpoints rather than at every commit: a crash of qbflow (or of
            # the machine's software) loses nothing and never corrupts; only a power cut can take back the
            # last commits, and every one of them is safe to redo (cursors move with their events, and a
            # step's QuickBooks write replays under the same request id).
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get(WRITE_LOCK_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _use_wal(cursor: Any) -> None:
    # WAL is a property of the file, set once. Switching a new file to it needs an exclusive lock, and
    # SQLite answers "database is locked" at once (no busy wait) while another connection touches the file:
    # processes opening a brand-new database together must retry.
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() in ("wal", "memory"):
                return
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def _create_private_file(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


@contextmanager
def write_session(engine: Engine) -> Iterator[Session]:
    """A session in a transaction that writes: committed at the end, rolled back on any exception.

    On SQLite it starts with BEGIN IMMEDIATE (the writer lock is held from the first statement, so no
    read-then-write upgrade can fail); on PostgreSQL, lock the rows you will change with
    `.with_for_update()`.
    """
    with Session(engine, expire_on_commit=False) as session:
        session.connection(execution_options={WRITE_LOCK_OPTION: True})
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


@contextmanager
def write_connection(engine: Engine) -> Iterator[Connection]:
    """`write_session` without the ORM: a Core connection in a writing transaction (BEGIN IMMEDIATE on
    SQLite), committed at the end, rolled back on any exception. For statements on every run's path."""
    with engine.connect().execution_options(**{WRITE_LOCK_OPTION: True}) as connection, connection.begin():
        yield connection


@contextmanager
def read_session(engine: Engine) -> Iterator[Session]:
    """A session for reading; its transaction is rolled back at the end."""
    with Session(engine, expire_on_commit=False) as session:
        yield session


def upgrade(target: str | URL | Engine, revision: str = "head") -> None:
    """Run the packaged Alembic migrations up to `revision` (`alembic upgrade head`).

    Safe to call at every start and from several processes at once: the migrations run inside one
    transaction holding the database's writer lock (SQLite) or an advisory lock (PostgreSQL), so the
    second process waits and then finds nothing to do.
    """
    engine = target if isinstance(target, Engine) else make_engine(target)
    try:
        with engine.connect() as connection:
            connection.execution_options(**{WRITE_LOCK_OPTION: True})
            with connection.begin():
                if connection.dialect.name == "postgresql":
                    connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_MIGRATION_LOCK_ID})
                config = alembic_config()
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
    finally:
        if engine is not target:
            engine.dispose()


def alembic_config(url: str | URL | None = None) -> Config:
    """An Alembic config for the packaged migrations (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # configparser treats % as interpolation, and a password may contain one.
        config.set_main_option("sqlalchemy.url", make_url(url).render_as_string(False).replace("%", "%%"))
    return config


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None before the first migration."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
