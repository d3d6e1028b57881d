"""What the deployment is doing, on one screen: `qbflow status`, `GET /api/status` and the dashboard's System page.

    status = system_status(store.engine)             # read-only queries, a few milliseconds
    status.to_dict()                                  # JSON-ready (the API's model has the same fields)

It reads only the database (and Redis, when it holds the limits), so it answers the same from any machine:

* the database (its URL without the password) and the mode: `workers` once Procrastinate's tables exist (a
  `qbflow worker` has run here), `embedded` otherwise (`qbflow run` / `qbflow up`, one process);
* the workers (alive, last heartbeat, jobs running) and, per queue, the jobs waiting, scheduled for later and
  being done, with the age of the oldest waiting one: only in `workers` mode;
* the runs by status: queued, running, waiting_retry, waiting (a wait or an approval), and failed in the last
  24 hours;
* per company, the requests of the last minute and those in flight now, beside Intuit's limits (500 a minute,
  10 in flight), as the pacing backend counts them (`pacing_backend(...).rates()`, qbflow.qbo.pacing): in Redis
  when `QBFLOW_REDIS_URL` is set, else in PostgreSQL. Only a shared backend (Redis or PostgreSQL, and
  `QBFLOW_SHARED_LIMITS` on) counts every process; otherwise each process paces in memory and the rates are
  "not measured". The note (`rates_note`) says which backend holds the limits;
* the connections that need reconnecting.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Engine, func, select, text

from qbflow.qbo.pacing import DEFAULT_LIMITS, pacing_backend
from qbflow.store.models import (
    RUN_FAILED,
    RUN_QUEUED,
    RUN_RUNNING,
    RUN_WAITING,
    RUN_WAITING_RETRY,
    STATUS_NEEDS_RECONNECT,
    Connection,
    Run,
)

__all__ = ["ConnectionNeed", "QueueDepth", "RealmRate", "RunCounts", "SystemStatus", "WorkerState",
           "procrastinate_tables_exist", "system_status"]

Mode = Literal["embedded", "workers"]

RATE_WINDOW = 60.0  # seconds: Intuit counts requests a minute
FAILED_WINDOW = timedelta(hours=24)
DEFAULT_STALLED_AFTER = 30.0  # as `qbflow worker --stalled-after`


@dataclass(frozen=True)
class WorkerState:
    """One registered worker."""

    id: int
    alive: bool
    last_heartbeat: datetime
    seconds_since_heartbeat: float
    jobs_running: int
    jobs: tuple[str, ...]


@dataclass(frozen=True)
class QueueDepth:
    """One queue: jobs ready and waiting for a worker (`todo`), waiting for their time (`scheduled`, e.g. a run's
    retry), being done (`doing`), and how long the oldest ready one has waited (None: none waits)."""

    queue: str
    todo: int
    scheduled: int
    doing: int
    oldest_waiting_seconds: float | None


@dataclass(frozen=True)
class RunCounts:
    queued: int
    running: int
    waiting_retry: int
    failed_last_24h: int
    waiting: int = 0  # for a `wait` step's time or an approval's decision


@dataclass(frozen=True)
class RealmRate:
    """One company's requests: ended in the last minute, and in flight now (all processes together)."""

    realm_id: str
    connections: tuple[str, ...]
    requests_last_minute: int
    in_flight: int
    throttles: int  # 429s answered to this company since the pacer first saw it
    paused_for_seconds: float  # > 0: every worker waits this long more after a 429


@dataclass(frozen=True)
class ConnectionNeed:
    name: str
    realm_id: str
    detail: str | None


@dataclass(frozen=True)
class SystemStatus:
    checked_at: datetime
    database: str  # the URL, password hidden
    backend: str  # sqlite, postgresql
    mode: Mode
    workers: list[WorkerState] | None  # None: not in workers mode
    queues: list[QueueDepth] | None
    runs: RunCounts
    rates_measured: bool
    rates_note: str  # why not measured, or where from
    realms: list[RealmRate]
    limit_per_minute: int
    limit_in_flight: int
    reconnect: list[ConnectionNeed] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (times as ISO 8601 strings)."""
        def plain(value: Any) -> Any:
            if isinstance(value, datetime):
                return value.isoformat()
            if isinstance(value, dict):
                return {key: plain(item) for key, item in value.items()}
            if isinstance(value, list | tuple):
                return [plain(item) for item in value]
            return value

        return plain(asdict(self))


def procrastinate_tables_exist(engine: Engine) -> bool:
    """Whether Procrastinate's tables are in this database (a worker has started here); False on SQLite."""
    if engine.dialect.name != "postgresql":
        return False
    with engine.connect() as db:
        return db.execute(text("SELECT to_regclass('procrastinate_jobs')")).scalar() is not None


# Per queue: ready (no time or its time come), scheduled (later), doing; and since when the oldest ready one waits
# (its scheduled time, else its latest event: deferred, or retried).
_QUEUES = text("""
SELECT j.queue_name AS queue,
       count(*) FILTER (WHERE j.status = 'todo' AND (j.scheduled_at IS NULL OR j.scheduled_at <= now())) AS todo,
       count(*) FILTER (WHERE j.status = 'todo' AND j.scheduled_at > now()) AS scheduled,
       count(*) FILTER (WHERE j.status = 'doing') AS doing,
       EXTRACT(EPOCH FROM now() - min(coalesce(j.scheduled_at,
                                               (SELECT max(e.at) FROM procrastinate_events e WHERE e.job_id = j.id)))
                                  FILTER (WHERE j.status = 'todo'
                                            AND (j.scheduled_at IS NULL OR j.scheduled_at <= now()))) AS oldest
  FROM procrastinate_jobs j
 WHERE j.status IN ('todo', 'doing')
 GROUP BY j.queue_name""")

def system_status(engine: Engine, *, stalled_after: float = DEFAULT_STALLED_AFTER, shared_limits: bool | None = None,
                  now: datetime | None = None, redis_url: str | None = None) -> SystemStatus:
    """Everything `qbflow status` shows, read from `engine`'s database. `shared_limits`: whether processes pace
    together (default: the settings' `QBFLOW_SHARED_LIMITS`); `redis_url`: the Redis holding the limits ("" for
    none; default: the settings' `QBFLOW_REDIS_URL`), else the database holds them."""
    from qbflow.engine.workers import list_workers

    now = now or datetime.now(UTC)
    workers_mode = procrastinate_tables_exist(engine)
    workers: list[WorkerState] | None = None
    queues: list[QueueDepth] | None = None
    if workers_mode:
        listed = list_workers(engine)
        rows = listed[0] if listed is not None else []
        workers = [WorkerState(id=row.id, alive=row.silent_for < stalled_after, last_heartbeat=row.last_heartbeat,
                               seconds_since_heartbeat=round(row.silent_for, 3), jobs_running=len(row.jobs),
                               jobs=row.jobs) for row in rows]
        with engine.connect() as db:
            queues = [QueueDepth(queue=row.queue, todo=int(row.todo), scheduled=int(row.scheduled),
                                 doing=int(row.doing),
                                 oldest_waiting_seconds=None if row.oldest is None else round(float(row.oldest), 3))
                      for row in db.execute(_QUEUES)]
        from qbflow.engine.workers import QUEUES

        present = {queue.queue for queue in queues}
        queues += [QueueDepth(queue=name, todo=0, scheduled=0, doing=0, oldest_waiting_seconds=None)
                   for name in QUEUES if name not in present]
        order = {name: index for index, name in enumerate(QUEUES)}
        queues.sort(key=lambda queue: (order.get(queue.queue, len(order)), queue.queue))

    rates = pacing_backend(engine, shared_limits=shared_limits, redis_url=redis_url).rates(RATE_WINDOW)
    with engine.connect() as db:
        counts = dict(db.execute(select(Run.status, func.count()).where(
            Run.status.in_((RUN_QUEUED, RUN_RUNNING, RUN_WAITING_RETRY, RUN_WAITING))).group_by(Run.status)).all())
        failed = db.execute(select(func.count()).select_from(Run).where(
            Run.status == RUN_FAILED, Run.finished_at >= now - FAILED_WINDOW)).scalar_one()
        connections = db.execute(select(Connection.name, Connection.realm_id, Connection.status,
                                        Connection.status_detail).order_by(Connection.name)).all()
    by_realm: dict[str, list[str]] = {}
    for row in connections:
        by_realm.setdefault(row.realm_id, []).append(row.name)
    realms = [RealmRate(realm_id=rate.realm_id, connections=tuple(by_realm.get(rate.realm_id, ())),
                        requests_last_minute=rate.recent, in_flight=rate.in_flight, throttles=rate.throttles,
                        paused_for_seconds=round(rate.paused_for, 3)) for rate in rates.realms]
    seen = {realm.realm_id for realm in realms}
    if rates.measured:  # companies connected but not asked anything yet: zero, not absent
        realms += [RealmRate(realm_id=realm, connections=tuple(names), requests_last_minute=0, in_flight=0,
                             throttles=0, paused_for_seconds=0.0)
                   for realm, names in sorted(by_realm.items()) if realm not in seen]
    return SystemStatus(
        checked_at=now, database=engine.url.render_as_string(hide_password=True), backend=engine.dialect.name,
        mode="workers" if workers_mode else "embedded", workers=workers, queues=queues,
        runs=RunCounts(queued=int(counts.get(RUN_QUEUED, 0)), running=int(counts.get(RUN_RUNNING, 0)),
                       waiting_retry=int(counts.get(RUN_WAITING_RETRY, 0)), failed_last_24h=int(failed),
                       waiting=int(counts.get(RUN_WAITING, 0))),
        rates_measured=rates.measured, rates_note=rates.note, realms=realms,
        limit_per_minute=DEFAULT_LIMITS.per_window, limit_in_flight=DEFAULT_LIMITS.concurrent,
        reconnect=[ConnectionNeed(name=row.name, realm_id=row.realm_id, detail=row.status_detail)
                   for row in connections if row.status == STATUS_NEEDS_RECONNECT])
