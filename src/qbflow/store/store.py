"""Opening the store: one call at start that migrates the database and returns the ready-made parts."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.engine import URL

from qbflow.settings import Settings, get_settings
from qbflow.store.connections import ConnectionStore
from qbflow.store.crypto import SecretBox
from qbflow.store.db import make_engine, upgrade
from qbflow.store.hooks import HookStore


@dataclass
class Store:
    """The opened store: the engine, the key box, and one accessor per kind of stored thing."""

    engine: Engine
    box: SecretBox
    connections: ConnectionStore = field(init=False)
    hooks: HookStore = field(init=False)

    def __post_init__(self) -> None:
        self.connections = ConnectionStore(self.engine, self.box)
        self.hooks = HookStore(self.engine, self.box)

    def close(self) -> None:
        """Close the database connections."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_store(
    settings: Settings | None = None,
    *,
    url: str | URL | None = None,
    box: SecretBox | None = None,
    migrate: bool = True,
) -> Store:
    """Open the database named by `url` (default: the settings'), creating or upgrading its schema.

    A new user's database (an SQLite file in the data folder, unless `QBFLOW_DATABASE_URL` says otherwise)
    is created here on first use, and so is the key file when no `QBFLOW_SECRET_KEY` is set.
    """
    settings = settings or get_settings()
    engine = make_engine(url if url is not None else settings.database_url)
    try:
        if migrate:
            upgrade(engine)
        return Store(engine=engine, box=box or SecretBox.from_settings(settings))
    except BaseException:
        engine.dispose()
        raise
