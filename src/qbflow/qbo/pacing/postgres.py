"""Per-company pacing shared by every process and machine: Intuit's limits kept in PostgreSQL.

`RealmPacer` (inprocess.py) keeps one company's limits in one process. Workers on several machines talking
to the same company need one pacer between them; `SharedRealmPacer` is that pacer, with the same
interface (`async with pacer.slot(batch=...)`, `throttled(retry_after)`, `stats()`), and the same
guarantees, now across processes:

* no interval of `window + margin` seconds holds more than `per_window` requests (`batch_per_window`
  batch requests) of one company, each counted at its *end* (see inprocess.py for why the end);
* at most `concurrent` requests of one company are in flight at once;
* after a 429, every process pauses that company.

Two tables (migration 0003) hold it:

    pacer_realms    (realm_id PK, paused_until, throttles)           one row per company: the lock
    pacer_requests  (id, realm_id, batch, holder, admitted_at, expires_at, ended_at)

A row of `pacer_requests` is first a **lease** (in flight: `ended_at` NULL and `expires_at` ahead), then an
**entry of the sliding log** (`ended_at` set). Every time is seconds since the epoch on the *database's*
clock (`clock_timestamp()`), the one clock all workers share, so the clocks of the workers' machines play
no part.

Admission, one short transaction (READ COMMITTED):

1. `SELECT ... FROM pacer_realms WHERE realm_id = :realm FOR UPDATE`: admissions to one company are
   serialised across all processes (and a 429's pause takes the same lock).
2. One census statement (a new snapshot, taken after the lock, so it sees every lease committed by
   earlier admissions): `now` = `clock_timestamp()`, the pause, the leases alive at `now` (in flight, and
   those of batches), the entries that ended in `(now - window - margin, now]`, and the earliest expiry of
   a live lease. A lease that expired without an end (its worker died, or could not renew it) counts as
   having ended at its `expires_at`: the request ended no later than that, so this is an upper bound of
   its end, as the log needs.
3. The wait is computed as in inprocess.py: the pause; `concurrent` leases alive -> until a lease ends; for
   the window, with `excess = alive + ended - limit + 1`, nothing if `excess <= 0`, else the `excess`-th
   oldest end (one `ORDER BY ... OFFSET` query) + window + margin - now, or "until a lease ends"
   when only requests in flight fill it. The same for batches against `batch_per_window`.
4. No wait: INSERT the lease (`expires_at = now + lease_ttl`) and commit. Else commit (releasing the lock)
   and wait the computed time, off the database: exactly as long as the log says when the window is
   full; when it waits for a lease to end, until the earliest lease expiry, at most `recheck` seconds,
   or until a request of this process ends (a local event), whichever is first.

While a request lasts, a task renews its lease every `lease_ttl / 3` seconds (`UPDATE ... WHERE ended_at IS
NULL AND expires_at > now`: an expired lease is never revived, since others may already have counted it
as ended). When the request ends (answer read, or failure), `ended_at = clock_timestamp()` is stamped in
its own transaction: later than the true end, so an upper bound again. A worker killed mid-request leaves
its lease, which stops counting as in flight after `lease_ttl` (30 s by default) and counts as ended at
its expiry. Rows older than twice the window plus `lease_ttl` are deleted by later admissions.

Why the guarantees hold across processes: take the last-admitted request r among those ending in some
interval [a, a + window + margin). Every other one was admitted before r, under the same row lock, so r's
census saw its lease: either alive (counted as in flight) or ended at a stamp >= a and <= r's `now`, which
lies in r's window (r's `now` precedes its end, < a + window + margin). So at most `limit - 1` others, and
r. The same argument with leases alive gives at most `concurrent` in flight. The argument needs a worker
to renew its leases: one that stalls for longer than `lease_ttl` (a process frozen for 30 s) is treated as
dead, and is the one case where the limits could be exceeded.

A 429 (`throttled`) pauses this process at once and, under the realm's row lock, moves
`pacer_realms.paused_until` to `now + pause` for every process; each admission's census reads it.

Within one process, requests for one company first pass a local semaphore of `concurrent` places and a
local lock, so only one coroutine per process and company talks to the database at a time, and local
waiters are admitted in order. Database calls run on a small thread pool of this module's own (the store
is synchronous; see `qbflow.store.aio`). Admissions from different processes are not queued in order: when
the budget is short, a process that happens to look first gets the place.

`PostgresBackend` is this pacing as a `PacingBackend`: its pacers (`shared_pacer_for`) and each company's rates
read from the two tables (`qbflow status`). `pacing_backend(...)` (qbflow.qbo.pacing) picks it for a deployment on
PostgreSQL without `QBFLOW_REDIS_URL`, unless `QBFLOW_SHARED_LIMITS=0`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from qbflow.qbo.pacing.base import DEFAULT_LIMITS, Limits, Rates, RealmRate
from qbflow.qbo.pacing.leased import DEFAULT_LEASE_TTL, DEFAULT_RECHECK, LeasedPacer, Pause
from qbflow.store.db import make_engine

__all__ = [
    "DEFAULT_LEASE_TTL",
    "Lease",
    "Pause",
    "PostgresBackend",
    "SharedRealmPacer",
    "reset_shared_pacers",
    "shared_pacer_for",
]

log = logging.getLogger("qbflow.qbo")

T = TypeVar("T")

_GC_EVERY = 5.0  # seconds between deletions of old rows, per process and company
_LOCK_NOT_AVAILABLE = "55P03"

# A stalled transaction must not hold a company's lock for long: give up waiting after 5 s (and try again), and
# let the server end a session that sits idle inside a transaction (a frozen process) after 10 s.
_TIMEOUTS = text("SELECT set_config('lock_timeout', '5s', true), "
                 "set_config('idle_in_transaction_session_timeout', '10s', true)")
_NOW = "extract(epoch FROM clock_timestamp())::float8"
_ENSURE_REALM = text("INSERT INTO pacer_realms (realm_id, paused_until, throttles) VALUES (:realm, 0, 0) "
                     "ON CONFLICT (realm_id) DO NOTHING")
_LOCK_REALM = text("SELECT realm_id FROM pacer_realms WHERE realm_id = :realm FOR UPDATE")
# Rows of the window: each either alive (in flight) or ended (an expired lease ends at its expiry).
_CENSUS = text(f"""
SELECT c.now, r.paused_until, r.throttles,
       count(q.id) FILTER (WHERE q.ended_at IS NULL AND q.expires_at > c.now) AS alive,
       count(q.id) FILTER (WHERE q.ended_at IS NULL AND q.expires_at > c.now AND q.batch) AS alive_batches,
       count(q.id) FILTER (WHERE NOT (q.ended_at IS NULL AND q.expires_at > c.now)) AS ended,
       count(q.id) FILTER (WHERE NOT (q.ended_at IS NULL AND q.expires_at > c.now) AND q.batch) AS ended_batches,
       min(q.expires_at) FILTER (WHERE q.ended_at IS NULL AND q.expires_at > c.now) AS next_expiry
FROM (SELECT {_NOW} AS now) AS c
JOIN pacer_realms AS r ON r.realm_id = :realm
LEFT JOIN pacer_requests AS q
       ON q.realm_id = :realm AND coalesce(q.ended_at, q.expires_at) > c.now - :window
GROUP BY c.now, r.paused_until, r.throttles
""")
_NTH_END = text("""
SELECT coalesce(ended_at, expires_at) AS ended FROM pacer_requests
WHERE realm_id = :realm AND (batch OR NOT :batches_only)
  AND NOT (ended_at IS NULL AND expires_at > :now)
  AND coalesce(ended_at, expires_at) > :now - :window
ORDER BY ended OFFSET :skip LIMIT 1
""")
_INSERT_LEASE = text("INSERT INTO pacer_requests (realm_id, batch, holder, admitted_at, expires_at) "
                     "VALUES (:realm, :batch, :holder, :now, :now + :ttl) RETURNING id")
_DELETE_OLD = text("DELETE FROM pacer_requests WHERE realm_id = :realm "
                   "AND coalesce(ended_at, expires_at) <= :now - :keep")
_RENEW = text(f"UPDATE pacer_requests SET expires_at = {_NOW} + :ttl "
              f"WHERE id = :id AND ended_at IS NULL AND expires_at > {_NOW}")
_END = text(f"UPDATE pacer_requests SET ended_at = {_NOW} WHERE id = :id")
# The lease is gone (it expired long ago and was deleted): the request still ended now, and must be counted.
_END_LOST = text(f"INSERT INTO pacer_requests (realm_id, batch, holder, admitted_at, expires_at, ended_at) "
                 f"SELECT :realm, :batch, :holder, {_NOW}, {_NOW}, {_NOW}")
_FORGET = text("DELETE FROM pacer_requests WHERE id = :id")
_PAUSE = text(f"WITH c AS (SELECT {_NOW} AS now) "
              f"UPDATE pacer_realms SET paused_until = greatest(paused_until, c.now + :pause), "
              f"throttles = throttles + 1 FROM c WHERE realm_id = :realm RETURNING c.now, paused_until")


@dataclass(frozen=True)
class Lease:
    """One admitted request: its row in `pacer_requests` and when it was admitted (database clock)."""

    id: int
    admitted_at: float
    batch: bool


@dataclass(frozen=True)
class _Decision:
    lease: Lease | None
    wait: float  # seconds before looking again (when no lease)
    until_end: bool  # the wait is for a request in flight to end, so a local end wakes it early


_executor_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def _default_executor() -> Executor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="qbflow-pacer")
        return _executor


def _holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:200]


class SharedRealmPacer(LeasedPacer):
    """Admits requests to one realm at a pace its throttles allow, counted across every process that shares
    the database. Share one per realm per process (`shared_pacer_for`). What happens in this process is
    `LeasedPacer`'s; here: admission, lease writes and the census, each one short transaction."""

    _store_errors = (DBAPIError,)
    _store_name = "the database"

    def __init__(
        self,
        realm_id: str,
        limits: Limits = DEFAULT_LIMITS,
        *,
        engine: Engine,
        lease_ttl: float = DEFAULT_LEASE_TTL,
        recheck: float = DEFAULT_RECHECK,
        holder: str | None = None,
        executor: Executor | None = None,
    ) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError(f"shared pacing needs PostgreSQL, not {engine.dialect.name}")
        super().__init__(realm_id, limits, lease_ttl=lease_ttl, recheck=recheck)
        self.holder = holder or _holder()
        self._engine = engine
        self._executor = executor or _default_executor()
        self._realm_ready = False
        self._last_gc = float("-inf")

    def __repr__(self) -> str:
        return f"SharedRealmPacer(realm_id={self.realm_id!r}, limits={self.limits!r}, holder={self.holder!r})"

    async def astats(self) -> dict[str, float | int]:
        """`stats` off the event loop."""
        return await self._call(self.stats)

    # --- in the event loop ---------------------------------------------------------------------------
    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        """Run a database call on the pacer's threads; a cancelled caller does not cancel the call."""
        future = asyncio.get_running_loop().run_in_executor(self._executor, function, *args)
        return await asyncio.shield(future)

    async def _admit(self, batch: bool) -> Lease:
        async with self._admission.get():
            ended = self._ended.get()
            failures = 0
            while True:
                if await self._wait_local_pause():
                    continue
                ended.clear()  # an end during the census below wakes the wait after it
                call = self._executor.submit(self._decide, batch)
                try:
                    decision = await asyncio.shield(asyncio.wrap_future(call))
                except asyncio.CancelledError:
                    # Runs when the call ends, even if this event loop is gone by then.
                    call.add_done_callback(self._forget_unused)
                    raise
                except DBAPIError as error:
                    if getattr(error.orig, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
                        raise
                    failures += 1  # another process held the company's lock for seconds: try again
                    log.warning("pacing realm %s: its lock is busy; trying again", self.realm_id)
                    await asyncio.sleep(min(1.0, self.recheck * 2**failures))
                    continue
                if decision.lease is not None:
                    self.admitted += 1
                    return decision.lease
                await self._wait(decision.wait, decision.until_end, ended)

    def _forget_unused(self, call: Future[_Decision]) -> None:
        # The caller was cancelled while being admitted: nothing was sent, so the lease goes without a trace.
        if call.cancelled() or call.exception() is not None:
            return
        lease = call.result().lease
        if lease is not None:
            try:
                self._executor.submit(self._forget, lease)
            except RuntimeError:  # the executor is shutting down: do it here, in the thread that ran the call
                self._forget(lease)

    async def _renew_lease(self, lease: Lease) -> bool:
        return await self._call(self._renew, lease)

    async def _end_lease(self, lease: Lease) -> None:
        await self._call(self._end, lease)

    async def _pause_everyone_async(self, pause: float) -> Pause:
        return await self._call(self._pause_everyone_now, pause)

    # --- in the pacer's threads: one short transaction each -----------------------------------------
    def _ensure_realm(self, connection: Connection) -> None:
        if not self._realm_ready:
            connection.execute(_ENSURE_REALM, {"realm": self.realm_id})
            self._realm_ready = True

    def _lock_realm(self, connection: Connection) -> None:
        connection.execute(_TIMEOUTS)
        if connection.execute(_LOCK_REALM, {"realm": self.realm_id}).first() is None:
            connection.execute(_ENSURE_REALM, {"realm": self.realm_id})
            connection.execute(_LOCK_REALM, {"realm": self.realm_id})

    def _census(self, connection: Connection) -> Any:
        return connection.execute(_CENSUS, {"realm": self.realm_id,
                                            "window": self.limits.effective_window}).one()

    def _census_now(self) -> Any:
        with self._engine.begin() as connection:
            self._ensure_realm(connection)
        with self._engine.connect() as connection:
            return self._census(connection)

    def _decide(self, batch: bool) -> _Decision:
        """Admit one request now (a lease), or say how long to wait before asking again."""
        limits = self.limits
        with self._engine.begin() as connection:
            self._lock_realm(connection)
            census = self._census(connection)
            now = census.now
            waits = [census.paused_until - now]
            until_end = census.alive >= limits.concurrent
            for wait in (self._room(connection, now, census.ended, census.alive, limits.per_window, False),
                         self._room(connection, now, census.ended_batches, census.alive_batches,
                                    limits.batch_per_window, True) if batch else 0.0):
                if wait is None:
                    until_end = True
                else:
                    waits.append(wait)
            wait = max(waits)
            if until_end:
                wait = max(wait, min(self.recheck, census.next_expiry - now))
            if wait <= 0:
                lease_id = connection.execute(_INSERT_LEASE, {"realm": self.realm_id, "batch": batch,
                                                              "holder": self.holder, "now": now,
                                                              "ttl": self.lease_ttl}).scalar_one()
                self._collect_garbage(connection, now)
                return _Decision(Lease(lease_id, now, batch), 0.0, False)
        # A tiny positive wait can round to "not yet" forever on a coarse clock; never wait less than 1 ms.
        return _Decision(None, max(wait, 0.001), until_end)

    def _room(self, connection: Connection, now: float, ended: int, alive: int, limit: int,
              batches_only: bool) -> float | None:
        """Seconds until the window leaves room for one more; None when only requests in flight fill it."""
        excess = alive + ended - limit + 1  # how many entries must leave the window first
        if excess <= 0:
            return 0.0
        if excess > ended:
            return None
        window = self.limits.effective_window
        nth_end = connection.execute(_NTH_END, {"realm": self.realm_id, "batches_only": batches_only, "now": now,
                                                "window": window, "skip": excess - 1}).scalar_one()
        return nth_end + window - now

    def _collect_garbage(self, connection: Connection, now: float) -> None:
        if time.monotonic() - self._last_gc < _GC_EVERY:
            return
        self._last_gc = time.monotonic()
        # Twice the window: a process pacing to a longer window than ours must still find its entries.
        connection.execute(_DELETE_OLD, {"realm": self.realm_id, "now": now,
                                         "keep": 2 * self.limits.effective_window + self.lease_ttl})

    def _renew(self, lease: Lease) -> bool:
        with self._engine.begin() as connection:
            return connection.execute(_RENEW, {"id": lease.id, "ttl": self.lease_ttl}).rowcount == 1

    def _end(self, lease: Lease) -> None:
        with self._engine.begin() as connection:
            if connection.execute(_END, {"id": lease.id}).rowcount == 0:
                connection.execute(_END_LOST, {"realm": self.realm_id, "batch": lease.batch, "holder": self.holder})

    def _forget(self, lease: Lease) -> None:
        try:
            with self._engine.begin() as connection:
                connection.execute(_FORGET, {"id": lease.id})
        except DBAPIError as error:
            log.warning("pacing realm %s: could not give back an unused lease (%s); it expires in %.0f s",
                        self.realm_id, type(error).__name__, self.lease_ttl)

    def _pause_everyone_now(self, pause: float) -> Pause:
        with self._engine.begin() as connection:
            self._lock_realm(connection)  # first the lock, then the clock: later than every earlier admission
            row = connection.execute(_PAUSE, {"realm": self.realm_id, "pause": pause}).one()
        return Pause(row.now, row.paused_until)


# --- one pacer per realm per process ---------------------------------------------------------------------
_SHARED: dict[tuple[str, str], SharedRealmPacer] = {}
_OWN_ENGINES: dict[str, Engine] = {}
_shared_lock = threading.Lock()


def _engine_key(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _own_engine(database: str | URL) -> Engine:
    """The engine this module made for `database` (made now on first use). Call under `_shared_lock`."""
    key = make_url(database).render_as_string(hide_password=False)
    engine = _OWN_ENGINES.get(key)
    if engine is None:
        engine = _OWN_ENGINES[key] = make_engine(database, pool_size=8, max_overflow=8, pool_pre_ping=True)
    return engine


def shared_pacer_for(realm_id: str, database: str | URL | Engine, limits: Limits | None = None, *,
                     lease_ttl: float = DEFAULT_LEASE_TTL) -> SharedRealmPacer:
    """The process-wide shared pacer of `realm_id` on `database` (a PostgreSQL URL, or an engine to use).

    Made on first use (with `limits`, default Intuit's); later calls return the same pacer, and passing
    different `limits` then replaces its limits. A URL gets an engine of this module's own, kept for the
    life of the process.
    """
    with _shared_lock:
        engine = database if isinstance(database, Engine) else _own_engine(database)
        slot = (_engine_key(engine), realm_id)
        pacer = _SHARED.get(slot)
        if pacer is None:
            pacer = _SHARED[slot] = SharedRealmPacer(realm_id, limits or DEFAULT_LIMITS, engine=engine,
                                                     lease_ttl=lease_ttl)
        elif limits is not None and limits != pacer.limits:
            pacer.set_limits(limits)
        return pacer


def reset_shared_pacers() -> None:
    """Forget every shared pacer and close the engines made for them (tests)."""
    with _shared_lock:
        _SHARED.clear()
        engines = list(_OWN_ENGINES.values())
        _OWN_ENGINES.clear()
    for engine in engines:
        engine.dispose()


# --- the backend: pacers and rates -----------------------------------------------------------------------
# Per company, on the database's clock (the pacer's): requests ended in the last `window` seconds (a lease that
# expired without an end counts as ended at its expiry, as the pacer counts it), and leases alive now.
_RATES = text("""
WITH c AS (SELECT extract(epoch FROM clock_timestamp())::float8 AS now)
SELECT r.realm_id,
       coalesce(q.recent, 0) AS recent, coalesce(q.alive, 0) AS alive,
       coalesce(p.throttles, 0) AS throttles, greatest(coalesce(p.paused_until, 0) - c.now, 0) AS paused_for
  FROM c
  CROSS JOIN (SELECT realm_id FROM pacer_realms UNION SELECT DISTINCT realm_id FROM pacer_requests) AS r
  LEFT JOIN pacer_realms p ON p.realm_id = r.realm_id
  LEFT JOIN LATERAL (
       SELECT count(*) FILTER (WHERE NOT (x.ended_at IS NULL AND x.expires_at > c.now)
                                 AND coalesce(x.ended_at, x.expires_at) > c.now - :window) AS recent,
              count(*) FILTER (WHERE x.ended_at IS NULL AND x.expires_at > c.now) AS alive
         FROM pacer_requests x
        WHERE x.realm_id = r.realm_id AND coalesce(x.ended_at, x.expires_at) > c.now - :window) AS q ON true
 ORDER BY r.realm_id""")


class PostgresBackend:
    """Limits kept in PostgreSQL (`pacer_realms`, `pacer_requests`), shared by every process on `database` (a
    PostgreSQL URL, or an engine to use)."""

    name = "PostgreSQL"
    shared = True

    def __init__(self, database: str | URL | Engine) -> None:
        self.database = database

    def __repr__(self) -> str:
        where = self.database.url if isinstance(self.database, Engine) else make_url(self.database)
        return f"PostgresBackend({where.render_as_string(hide_password=True)!r})"

    def pacer(self, realm_id: str, limits: Limits | None = None) -> SharedRealmPacer:
        """The process-wide `SharedRealmPacer` of `realm_id` on this database (`shared_pacer_for`)."""
        return shared_pacer_for(realm_id, self.database, limits)

    def rates(self, window: float = 60.0) -> Rates:
        """Each company in the request log (and every company ever paused), read in one statement."""
        if isinstance(self.database, Engine):
            engine = self.database
        else:
            with _shared_lock:
                engine = _own_engine(self.database)
        with engine.connect() as connection:
            rows = connection.execute(_RATES, {"window": window}).all()
        return Rates(measured=True, note=f"limits held in PostgreSQL: from the shared pacer's request log "
                                         f"(pacer_requests), the last {window:.0f} s",
                     realms=[RealmRate(realm_id=row.realm_id, recent=int(row.recent), in_flight=int(row.alive),
                                       throttles=int(row.throttles), paused_for=float(row.paused_for))
                             for row in rows])
