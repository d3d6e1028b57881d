"""Many workers on one PostgreSQL: the engine's "what is due, claim it, run it, record it" on Procrastinate.

    workers = Workers(RunStore(engine), clients)            # the app, its tasks and the engine parts they use
    async with workers.opened():
        await workers.run_worker(concurrency=4)              # `qbflow worker`: until SIGTERM / Ctrl-C

The database stays the truth and the queue is delivery only:

* `qbflow.schedule` is a periodic task (every `tick` seconds, deferred once across all workers by Procrastinate's
  periodic deferrer): it defers `qbflow.poll_company` for every connection with enabled workflows one of which
  is due (`scheduler.connection_due`, read from the stored cursors), and re-delivers runs that are due but have
  no job (`qbflow runs retry`, a crash between a run's outcome and its retry's job), and runs left "running"
  whose job is gone (a run is "running" only while its job is being done: one without a job would otherwise
  never finish; its new job resumes it). A waiting run made due before the time its job waits for (an approval
  decided where no `wake_run_job` moved the job) gets a job due now (`hurry_runs`).
  It also stores the schedules' due fire times (`engine.schedule`), each run's job enqueued in that transaction.
* `qbflow.poll_company(connection)` polls one company exactly as the embedded engine does
  (`Engine.poll_connection`: one shared read for all its workflows). Its queueing lock `poll:<connection>` makes
  a second waiting poll of a company impossible, its lock of the same name keeps two workers from polling the
  same company at once. The events, their runs, the moved cursors AND one `qbflow.run` job per new run are
  written in ONE transaction (`RunStore.record_polls(on_runs=enqueue_runs)`, Procrastinate's
  `procrastinate_defer_jobs_v1` on that same connection): a crash keeps all or nothing.
* `qbflow.run(run_id)` claims that run in the database (`RunStore.claim_run`: queued or due waiting_retry ->
  running) and executes it (`Runner.run_once`). Its lock `run:<id>` means one job per run runs at a time, so a
  run found "running" at a job's start was left so by a worker that died: it is resumed, its steps' request
  ids unchanged (QBO replays a create instead of doing it twice). A run that ends waiting_retry gets a new job
  scheduled at its `next_attempt_at`.
* `qbflow.retry_stalled_jobs` (periodic) gives back to the queue the jobs of workers that stopped sending
  heartbeats (SIGKILL, a lost machine): Procrastinate's stalled-job retrieval. Two retrievals may overlap and
  list the same job; the second finds it no longer being done and leaves it be. Only a job whose queueing lock
  is already waiting (the same poll queued again) is dropped.

Procrastinate's own tables live in the same database. Its schema is applied by `ensure_schema` when a worker
starts (idempotent, under an advisory lock), not by qbflow's Alembic migrations: it belongs to the installed
Procrastinate version, and qbflow without the `workers` extra (SQLite, one machine) must not need it.

Do not run `qbflow run` (the embedded engine) and `qbflow worker` on the same database: the embedded engine
claims runs without their jobs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, make_url, text
from sqlalchemy.engine import URL

from qbflow.engine.scheduler import (
    ClientFactory,
    CycleReport,
    connection_due,
    cursors_by_trigger,
    enabled_by_connection,
)
from qbflow.engine.scheduler import Engine as Scheduler
from qbflow.errors import QBFlowError
from qbflow.store.models import RUN_DELAYED, RUN_QUEUED, RUN_RUNNING
from qbflow.store.runs import RunNotFound, RunStore

if TYPE_CHECKING:
    from procrastinate.app import WorkerOptions as ProcrastinateWorkerOptions

__all__ = ["QUEUES", "WorkerOptions", "Workers", "WorkersUnavailable", "enqueue_runs", "ensure_schema",
           "hurry_runs", "list_workers", "require_postgres", "wake_run_job"]

log = logging.getLogger("qbflow.workers")

QUEUE_SCHEDULE = "schedule"  # the periodic tasks
QUEUE_POLLS = "polls"
QUEUE_RUNS = "runs"
QUEUES = (QUEUE_SCHEDULE, QUEUE_POLLS, QUEUE_RUNS)

TASK_SCHEDULE = "qbflow.schedule"
TASK_STALLED = "qbflow.retry_stalled_jobs"
TASK_POLL = "qbflow.poll_company"
TASK_RUN = "qbflow.run"

# Fetch order (higher first): the schedule is never starved by a backlog of runs, a poll waits for no run.
_PRIORITY = {QUEUE_SCHEDULE: 20, QUEUE_POLLS: 10, QUEUE_RUNS: 0}

# Runs re-delivered per schedule tick at most (the sweep for due runs without a job).
_SWEEP_LIMIT = 500

# Procrastinate's unique index of waiting jobs' queueing locks (a job retried while its lock waits violates it).
_QUEUEING_LOCK_INDEX = "procrastinate_jobs_queueing_lock_idx_v1"

# Any constant: taken with pg_advisory_xact_lock so that workers starting together apply the schema once.
_SCHEMA_LOCK_ID = 0x716266_77726B  # "qbf" "wrk"


class WorkersUnavailable(QBFlowError):
    """The worker cannot run here: the database is not PostgreSQL, or Procrastinate is not installed."""


def require_postgres(url: str | URL) -> None:
    """Refuse, naming the setting, a database the workers cannot share (anything but PostgreSQL)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        shown = parsed.render_as_string(hide_password=True)
        raise WorkersUnavailable(
            f"workers need PostgreSQL, and QBFLOW_DATABASE_URL is {shown!r} ({parsed.get_backend_name()}). Set "
            "QBFLOW_DATABASE_URL to the PostgreSQL database every worker shares, e.g. "
            "postgresql+psycopg://USER:PASSWORD@HOST:5432/qbflow; on one machine, `qbflow run` needs no worker.")
    try:
        import procrastinate  # noqa: F401
    except ImportError:
        raise WorkersUnavailable("workers need Procrastinate: pip install 'qbflow[workers]'") from None


def _conninfo(url: str | URL) -> str:
    """The libpq URL psycopg's pool takes, from a SQLAlchemy URL (postgresql+psycopg://... -> postgresql://...)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def ensure_schema(engine: Engine) -> bool:
    """Create Procrastinate's tables and functions in `engine`'s database unless they exist; True if it did.

    Safe from several processes at once (an advisory lock serialises them; the second finds the tables)."""
    from procrastinate.schema import SchemaManager

    with engine.connect() as connection, connection.begin():
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _SCHEMA_LOCK_ID})
        if connection.execute(text("SELECT to_regclass('procrastinate_jobs')")).scalar() is not None:
            return False
        # Several statements and DO blocks: psycopg runs them as one script when no parameters are given.
        psycopg_connection = connection.connection.driver_connection
        assert psycopg_connection is not None, "the connection is open"
        psycopg_connection.execute(SchemaManager.get_schema())
    log.info("created Procrastinate's tables in %s", engine.url.render_as_string(hide_password=True))
    return True


_DEFER_RUNS = text(
    "SELECT procrastinate_defer_jobs_v1(ARRAY("
    " SELECT ROW(:queue, :task, :priority, 'run:' || id, 'run:' || id, jsonb_build_object('run_id', id),"
    "            CAST(:at AS timestamptz))::procrastinate_job_to_defer_v1"
    " FROM unnest(CAST(:ids AS bigint[])) AS id))")


def enqueue_runs(db: Connection, run_ids: Sequence[int], *, at: datetime | None = None) -> None:
    """Defer one `qbflow.run` job per run on `db`, inside the caller's transaction (`RunStore.record_polls`'
    `on_runs`): the jobs exist exactly when the runs do. Workers are woken by Procrastinate's NOTIFY on commit."""
    if run_ids:
        db.execute(_DEFER_RUNS, {"queue": QUEUE_RUNS, "task": TASK_RUN, "priority": _PRIORITY[QUEUE_RUNS],
                                 "at": at, "ids": list(run_ids)})


# Runs that no job will deliver: none waiting ("todo", its queueing lock) and none being done ("doing", its lock).
# Due ones (queued, or waiting with their time come), and "running" ones: a run is running only while the job that
# claimed it is being done, so one without a job lost it (a dead worker's job that was dropped or failed for good).
# How soon a run waiting behind an earlier run of the same record is delivered again.
ORDER_RECHECK = timedelta(seconds=1)

_UNDELIVERED_RUNS = text("""
SELECT runs.id FROM runs
 WHERE (runs.status IN ('queued', 'running')
        OR (runs.status IN ('waiting_retry', 'waiting') AND runs.next_attempt_at <= :now))
   AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs job
                    WHERE (job.queueing_lock = 'run:' || runs.id AND job.status = 'todo')
                       OR (job.lock = 'run:' || runs.id AND job.status = 'doing'))
 ORDER BY runs.id LIMIT :limit""")


# Runs made due before the time their waiting job is scheduled for: an approval decided, a wait woken (the job was
# deferred at the approval's expiry or the retry's time). Their job is replaced by one due now.
_LATE_JOBS = """
SELECT job.id, runs.id AS run_id FROM runs
  JOIN procrastinate_jobs job ON job.queueing_lock = 'run:' || runs.id AND job.status = 'todo'
 WHERE runs.status IN ('waiting_retry', 'waiting') AND runs.next_attempt_at <= :now
   AND job.scheduled_at > runs.next_attempt_at{only}
 ORDER BY runs.id LIMIT :limit FOR UPDATE OF job SKIP LOCKED"""


def hurry_runs(db: Connection, now: datetime, run_ids: Sequence[int] | None = None) -> list[int]:
    """Give the runs (all, or `run_ids`) that became due before the time their job waits for a job due now,
    inside the caller's transaction; the runs hurried. A job a worker has taken meanwhile is left alone."""
    only = " AND runs.id = ANY(:ids)" if run_ids is not None else ""
    rows = db.execute(text(_LATE_JOBS.format(only=only)),
                      {"now": now, "limit": _SWEEP_LIMIT, "ids": list(run_ids or ())}).all()
    hurried = [row.run_id for row in rows
               if db.execute(text("SELECT procrastinate_cancel_job_v1(:id, false, true)"), {"id": row.id}).scalar()
               is not None]
    enqueue_runs(db, hurried)  # NOTIFY on commit: a worker takes it at once
    return hurried


def wake_run_job(db: Connection, run_id: int, now: datetime) -> None:
    """`ApprovalStore`'s `on_wake` when workers may use the database: the woken run's job, if one waits for a later
    time, is replaced by one due now (in the decision's transaction). Nothing without Procrastinate's tables."""
    if db.dialect.name != "postgresql":
        return
    if db.execute(text("SELECT to_regclass('procrastinate_jobs')")).scalar() is None:
        return
    hurry_runs(db, now, [run_id])


@dataclass(frozen=True)
class WorkerOptions:
    """How often the schedule runs (seconds, 1-59: a cron seconds step), and after how many seconds without a
    heartbeat a worker counts as dead and its jobs go back to the queue (heartbeats every third of that)."""

    tick: int = 5
    stalled_after: float = 30.0

    def __post_init__(self) -> None:
        if not 1 <= self.tick <= 59:
            raise ValueError(f"tick must be 1 to 59 seconds, not {self.tick}")
        if self.stalled_after < 1:
            raise ValueError(f"stalled_after must be at least 1 second, not {self.stalled_after}")

    @property
    def heartbeat(self) -> float:
        return self.stalled_after / 3


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


class Workers:
    """The Procrastinate app of one process, its tasks, and the engine parts they use (runs, clients, runner)."""

    def __init__(self, runs: RunStore, clients: ClientFactory, *, runner: Any = None,
                 options: WorkerOptions | None = None, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 pool_size: int = 8) -> None:
        import procrastinate

        from qbflow.engine.runner import Runner

        require_postgres(runs.engine.url)
        self.runs = runs
        self.options = options or WorkerOptions()
        self.clock = clock
        self.runner = runner or Runner(runs, clients, now=clock)
        # The embedded engine's polling, with every new run's job enqueued in the poll's transaction.
        self.scheduler = Scheduler(runs, clients, self.runner, clock=clock, on_runs=enqueue_runs)
        connector = procrastinate.PsycopgConnector(conninfo=_conninfo(runs.engine.url), min_size=1,
                                                   max_size=pool_size)
        self.app = procrastinate.App(connector=connector)
        self._register(procrastinate)

    def _register(self, procrastinate: Any) -> None:
        app, tick = self.app, self.options.tick
        every = f"* * * * * */{tick}"  # croniter's sixth field: seconds

        @app.periodic(cron=every, periodic_id="schedule")
        @app.task(name=TASK_SCHEDULE, queue=QUEUE_SCHEDULE, priority=_PRIORITY[QUEUE_SCHEDULE],
                  queueing_lock=TASK_SCHEDULE)
        async def schedule(timestamp: int) -> str:
            return await self.schedule()

        @app.periodic(cron=every, periodic_id="stalled")
        @app.task(name=TASK_STALLED, queue=QUEUE_SCHEDULE, priority=_PRIORITY[QUEUE_SCHEDULE],
                  queueing_lock=TASK_STALLED)
        async def retry_stalled_jobs(timestamp: int) -> str:
            return await self.retry_stalled_jobs()

        @app.task(name=TASK_POLL, queue=QUEUE_POLLS, priority=_PRIORITY[QUEUE_POLLS])
        async def poll_company(connection: str, force: bool = False) -> str:
            return await self.poll_company(connection, force=force)

        # A database error mid-run leaves the run "running": the job's retry resumes it.
        @app.task(name=TASK_RUN, queue=QUEUE_RUNS, priority=_PRIORITY[QUEUE_RUNS],
                  retry=procrastinate.RetryStrategy(max_attempts=5, exponential_wait=2))
        async def run(run_id: int) -> str:
            return await self.run(run_id)

    @contextlib.asynccontextmanager
    async def opened(self) -> AsyncIterator[Workers]:
        """The app's connection pool, open (deferring and working need it)."""
        async with self.app.open_async():
            yield self

    # -- deferring -----------------------------------------------------------------------------------

    async def defer_poll(self, connection: str, *, force: bool = False) -> bool:
        """Queue a poll of `connection`'s company; False if one is already waiting (its queueing lock)."""
        from procrastinate.exceptions import AlreadyEnqueued

        lock = f"poll:{connection}"
        try:
            await self.app.configure_task(TASK_POLL, lock=lock, queueing_lock=lock).defer_async(
                connection=connection, force=force)
        except AlreadyEnqueued:
            return False
        return True

    async def request_poll(self, connection: str) -> bool:
        """Poll `connection` soon, due or not (a webhook said something changed there)."""
        return await self.defer_poll(connection, force=True)

    async def defer_run(self, run_id: int, *, at: datetime | None = None) -> bool:
        """Queue the job of one run (at `at`); False if one is already waiting."""
        from procrastinate.exceptions import AlreadyEnqueued

        lock = f"run:{run_id}"
        try:
            await self.app.configure_task(TASK_RUN, lock=lock, queueing_lock=lock,
                                          schedule_at=None if at is None else _aware(at)).defer_async(run_id=run_id)
        except AlreadyEnqueued:
            return False
        return True

    # -- the tasks -----------------------------------------------------------------------------------

    async def schedule(self) -> str:
        """Queue a poll of every company with a workflow due, and a job for every due or running run that has none."""
        now = self.clock()
        by_connection = enabled_by_connection(self.runs)
        cursors = cursors_by_trigger(self.runs) if by_connection else {}
        polls = 0
        for connection, records in by_connection.items():
            if connection_due(records, cursors, now) and await self.defer_poll(connection):
                polls += 1
        with self.runs.engine.connect() as db:
            undelivered = list(db.execute(_UNDELIVERED_RUNS, {"now": now, "limit": _SWEEP_LIMIT}).scalars())
        swept = 0
        for run_id in undelivered:
            swept += await self.defer_run(run_id)
        # Runs woken early whose job waits for the old time (a decision made where no hook moved it, or in the
        # moment between a run's outcome and its job's defer): due now.
        with self.runs.engine.begin() as db:
            swept += len(hurry_runs(db, now))
        if swept:
            log.warning("re-delivered %d due or running run(s) that had no job", swept)
        # Schedules' due fire times, their runs' jobs enqueued in the same transaction (fired once: this task is
        # deferred once per tick across workers, and each fire time is stored once anyway).
        fired = len(self.scheduler.collect_due())
        return f"polls queued {polls}, runs re-delivered {swept}" + (f", schedule runs {fired}" if fired else "")

    async def poll_company(self, connection: str, *, force: bool = False) -> str:
        """Poll one company for all its enabled workflows (if one is due, or `force`), as the embedded engine does."""
        records = enabled_by_connection(self.runs).get(connection)
        if not records:
            return "no enabled workflow"
        report = CycleReport()
        await self.scheduler.poll_connection(connection, records, report, force=force)
        for error in report.errors:
            log.warning("poll of %s: %s", connection, error)
        return f"polls {report.polls}, requests {report.requests}, new events {report.events}"

    async def run(self, run_id: int) -> str:
        """Claim the run and execute it; resume it if a dead worker left it running."""
        claimed = self.runs.claim_run(run_id, self.clock())
        if claimed is None:
            try:
                current = self.runs.get_run(run_id)
            except RunNotFound:
                return "no such run"
            if current.status == RUN_RUNNING:
                # This job holds the run's lock, so whoever left it running is gone (a worker killed mid-run, or a
                # job lost since and re-delivered by `schedule`).
                log.warning("run %s was left running by a worker that stopped: resuming it", run_id)
                claimed = current
            elif (current.status in RUN_DELAYED and current.next_attempt_at is not None
                  and current.next_attempt_at > self.clock()):
                await self.defer_run(run_id, at=current.next_attempt_at)  # delivered early (clocks): wait
                return "not due yet"
            elif current.status in (RUN_QUEUED, *RUN_DELAYED):
                # Due, but an earlier run of its workflow for the same record is unfinished: runs of one record
                # keep their events' order, so this one comes back shortly.
                await self.defer_run(run_id, at=self.clock() + ORDER_RECHECK)
                return "waits for an earlier run of the same record"
            else:
                return f"nothing to do: run is {current.status}"
        record = await self.runner.run_once(run_id, claimed)
        if record.status in RUN_DELAYED and record.next_attempt_at is not None:
            # After the outcome's commit: a crash in between leaves a due run without a job, which `schedule`
            # re-delivers.
            await self.defer_run(run_id, at=record.next_attempt_at)
        return record.status

    async def retry_stalled_jobs(self) -> str:
        """Put back in the queue the jobs of workers whose heartbeat stopped.

        Another retrieval may have listed the same jobs (this periodic task ran late on a busy worker, or a dead
        worker's own retrieval was taken back and runs beside the next one): a job it has already put back is
        no longer "doing", its retry fails here, and it is left as it is: marked failed, its run would stay
        "running" with no job to resume it."""
        from procrastinate import jobs
        from procrastinate.exceptions import ConnectorException, UniqueViolation

        manager = self.app.job_manager
        stalled = list(await manager.get_stalled_jobs(seconds_since_heartbeat=self.options.stalled_after))
        retried = 0
        for job in stalled:
            try:
                await manager.retry_job(job)
            except ConnectorException as error:
                if isinstance(error, UniqueViolation) and error.constraint_name == _QUEUEING_LOCK_INDEX:
                    # The same queueing lock is already waiting (a newer poll of that company): that one does the
                    # work. (Another retrieval may have dropped it first: nothing left to do then.)
                    with contextlib.suppress(ConnectorException):
                        await manager.finish_job(job=job, status=jobs.Status.FAILED, delete_job=False)
                    log.warning("dropped stalled job %s %s%s: the same job is already queued", job.id,
                                job.task_name, job.task_kwargs)
                else:
                    # No longer "doing": another retrieval put it back first (or the database failed: the next
                    # tick tries again).
                    log.info("stalled job %s %s%s not retried here: %s", job.id, job.task_name, job.task_kwargs,
                             error.__cause__ or error)
                continue
            retried += 1
            log.warning("retried stalled job %s %s%s (its worker %s stopped)", job.id, job.task_name,
                        job.task_kwargs, job.worker_id)
        return f"stalled jobs retried {retried} of {len(stalled)}"

    # -- working -------------------------------------------------------------------------------------

    async def run_worker(self, *, concurrency: int = 4, queues: Iterable[str] | None = None, wait: bool = True,
                         install_signal_handlers: bool = True, name: str | None = None) -> None:
        """Work until stopped (SIGTERM/SIGINT: the jobs in flight finish first), or, with `wait=False`, until the
        queues are empty. The app must be `opened()`."""
        worker: ProcrastinateWorkerOptions = {
            "concurrency": concurrency, "wait": wait, "install_signal_handlers": install_signal_handlers,
            "name": name or f"{socket.gethostname()}:{os.getpid()}", "delete_jobs": "successful",
            "update_heartbeat_interval": self.options.heartbeat, "stalled_worker_timeout": self.options.stalled_after,
            "fetch_job_polling_interval": min(5.0, float(self.options.tick))}
        if queues:  # else every queue
            worker["queues"] = list(queues)
        await self.app.run_worker_async(**worker)


@dataclass(frozen=True)
class WorkerRow:
    """One registered worker: id, last heartbeat, seconds since, and the jobs it is doing."""

    id: int
    last_heartbeat: datetime
    silent_for: float
    jobs: tuple[str, ...]


def list_workers(engine: Engine) -> tuple[list[WorkerRow], dict[str, int]] | None:
    """The registered workers and the jobs waiting per queue; None before any worker has run on this database."""
    with engine.connect() as db:
        if db.execute(text("SELECT to_regclass('procrastinate_jobs')")).scalar() is None:
            return None
        rows = db.execute(text("""
            SELECT w.id, w.last_heartbeat, EXTRACT(EPOCH FROM now() - w.last_heartbeat) AS silent,
                   array_remove(array_agg(j.task_name || '(' || j.args::text || ')' ORDER BY j.id), NULL) AS jobs
              FROM procrastinate_workers w
              LEFT JOIN procrastinate_jobs j ON j.worker_id = w.id AND j.status = 'doing'
             GROUP BY w.id ORDER BY w.id""")).all()
        waiting: dict[str, int] = dict(db.execute(text(
            "SELECT queue_name, count(*) FROM procrastinate_jobs WHERE status = 'todo' GROUP BY queue_name")).all())
    workers = [WorkerRow(id=row.id, last_heartbeat=_aware(row.last_heartbeat), silent_for=float(row.silent),
                         jobs=tuple(row.jobs or ())) for row in rows]
    return workers, {queue: int(count) for queue, count in waiting.items()}
