"""Per-company (realm) pacing: stay under Intuit's limits instead of finding them with 429s.

Intuit throttles each company to 500 requests a minute, 10 requests in flight and 40 batch requests a minute, and
answers 429 beyond them (which pauses the company). A `Pacer` admits a request only when all three allow it; a
`QBOClient` sends every request through its pacer (`client.pacer`):

    async with pacer.slot(batch=False):
        response = await http.send(request)
    pacer.throttled(retry_after)          # after a 429: the whole company pauses
    pacer.limits.max_concurrent           # the company's in-flight limit (10)

Where the counts live is the backend's (a `PacingBackend`), one module each:

* `inprocess`: `RealmPacer`, in this process's memory (`pacer_for(realm_id)`: one per company per process);
* `postgres`: `SharedRealmPacer`, in PostgreSQL, shared by every process and machine on the database;
* `redis`: `RedisRealmPacer`, in Redis, shared the same way (needs redis-py);
* `leased`: the process-local half the two shared pacers have in common;
* `base`: `Limits`, the `Pacer` and `PacingBackend` protocols, and `Rates` (what `qbflow status` shows).

`pacing_backend(database)` is the one place that picks a backend from the settings; its `pacer(realm_id)` is the
pacer to give a client, and its `rates()` each company's requests of the last minute, in flight now and paused for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qbflow.qbo.pacing.base import DEFAULT_LIMITS, Limits, Pacer, PacingBackend, Rates, RealmRate
from qbflow.qbo.pacing.inprocess import InProcessBackend, RealmPacer, pacer_for, reset_pacers

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.engine import URL

    from qbflow.settings import Settings

__all__ = [
    "DEFAULT_LIMITS",
    "InProcessBackend",
    "Limits",
    "Pacer",
    "PacingBackend",
    "RealmPacer",
    "RealmRate",
    "Rates",
    "pacer_for",
    "pacing_backend",
    "reset_pacers",
]


def pacing_backend(database: str | URL | Engine | None = None, *, settings: Settings | None = None,
                   shared_limits: bool | None = None, redis_url: str | None = None) -> PacingBackend:
    """Where a deployment on `database` (default: the settings') keeps its companies' limits.

    With shared limits on (`shared_limits`, default the settings' `QBFLOW_SHARED_LIMITS`, itself on by default),
    every worker on every machine stays under each company's limits together: in Redis when there is a Redis URL
    (`redis_url`, default the settings' `QBFLOW_REDIS_URL`; "" for none), whatever the database; else in
    PostgreSQL when the database is PostgreSQL. Anything else (SQLite without Redis, or shared limits off): each
    process on its own, in memory (`InProcessBackend`).

    Without redis-py, a Redis URL gives a backend whose `rates()` say so and whose `pacer()` raises the
    ImportError.
    """
    if shared_limits is None or redis_url is None or database is None:
        from qbflow.settings import get_settings

        settings = settings or get_settings()
        if shared_limits is None:
            shared_limits = settings.shared_limits
        if redis_url is None:
            redis_url = settings.redis_url.get_secret_value() if settings.redis_url is not None else ""
        if database is None:
            database = settings.database_url
    if not shared_limits:
        return InProcessBackend("QBFLOW_SHARED_LIMITS is off, so each process paces its requests in memory")
    if redis_url:
        try:
            from qbflow.qbo.pacing.redis import RedisBackend  # redis-py: only when Redis is asked for
        except ImportError as error:
            return _NoRedis(error)
        return RedisBackend(redis_url)
    from sqlalchemy import Engine, make_url

    backend = database.dialect.name if isinstance(database, Engine) else make_url(database).get_backend_name()
    if backend == "postgresql":
        from qbflow.qbo.pacing.postgres import PostgresBackend

        return PostgresBackend(database)
    return InProcessBackend(f"on {backend} each process paces its requests in memory "
                            "(the shared request log needs PostgreSQL or Redis)")


class _NoRedis:
    """Limits meant for Redis, but redis-py is not installed."""

    name = "Redis"
    shared = True

    def __init__(self, error: ImportError) -> None:
        self.error = error

    def pacer(self, realm_id: str, limits: Limits | None = None) -> Pacer:
        raise self.error

    def rates(self, window: float = 60.0) -> Rates:
        return Rates(measured=False,
                     note="not measured (Redis): the limits are held in Redis, but redis-py is not installed")
