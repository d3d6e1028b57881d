from __future__ import annotations

import stat
import threading
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from qbflow.store import Base, make_engine, open_store, upgrade
from qbflow.store.db import MIGRATIONS_DIR, alembic_config, current_revision


def head() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_upgrade_creates_the_schema_on_a_new_database(db_url: str) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        assert {"connections", "workflows", "events", "runs", "step_results", "trigger_cursors", "own_writes", "hooks",
                "alembic_version"} <= set(inspect(engine).get_table_names())
        assert current_revision(engine) == head() == "0007"
        upgrade(engine)  # again: nothing to do
        assert current_revision(engine) == head()
    finally:
        engine.dispose()


def test_migrations_match_the_models(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        upgrade(engine)
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert diff == []
    finally:
        engine.dispose()


def test_downgrade_to_base_and_back(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        upgrade(engine)
        with engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.downgrade(config, "base")
        assert "connections" not in inspect(engine).get_table_names()
        upgrade(engine)
        assert "connections" in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_concurrent_first_upgrades_do_not_collide(db_url: str) -> None:
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            upgrade(db_url)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_open_store_creates_a_new_users_database(tmp_path: Path) -> None:
    data = tmp_path / "data"  # QBFLOW_DATA_DIR, set by the autouse fixture
    with open_store() as store:
        assert store.connections.list() == []
    database = data / "qbflow.sqlite3"
    assert database.exists()
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
    assert stat.S_IMODE((data / "secret.key").stat().st_mode) == 0o600


def test_migrations_are_shipped_inside_the_package() -> None:
    assert MIGRATIONS_DIR.is_dir()
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert (MIGRATIONS_DIR / "versions" / "0001_connections.py").is_file()
    assert "qbflow" in MIGRATIONS_DIR.parts
