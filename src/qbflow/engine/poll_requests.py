"""Webhooks handed to the workers: "poll this company now" as a Procrastinate job.

`qbflow serve --workers` runs no engine; its webhook receiver (and the connect flow) call `request_poll(name)` on
a `WorkerPollRequests` instead, which defers `qbflow.poll_company(connection, force=True)` for the workers:

    requests = WorkerPollRequests(database_url)      # the server's `engine` (ServerConfig(engine=..., run_engine=True))
    requests.request_poll("acme")                    # from the event loop: returns at once, defers in the background
    await requests.request("acme")                   # "deferred" or "merged"

The job is the one the workers' schedule defers, with the same queueing lock `poll:<connection>` (at most one poll
of a company waiting) and lock (at most one running). So:

* no poll of the company waiting: a new forced poll is deferred; a worker takes it at once (Procrastinate's NOTIFY
  wakes the workers when it commits), also while another poll of that company is running (it then waits for that
  one to finish: the lock);
* a poll already waiting (it has not started, so it reads after the change happened): nothing new is deferred,
  and that waiting poll is made a forced one (`force: true` added to its arguments), so it reads the company even
  if none of its workflows is due by then. Nothing is lost, and a burst of notifications for one company costs
  one poll.

Polling stays the safety net: a request that cannot be deferred (the database unreachable) is logged, and the
company's next scheduled poll sees the change.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Literal

from sqlalchemy.engine import URL

from qbflow.engine.workers import _PRIORITY, QUEUE_POLLS, TASK_POLL, _conninfo, require_postgres

__all__ = ["WorkerPollRequests"]

log = logging.getLogger("qbflow.workers")

_FORCE_WAITING = ("UPDATE procrastinate_jobs SET args = args || '{\"force\": true}'::jsonb "
                  "WHERE queueing_lock = %(lock)s AND status = 'todo' RETURNING id")
_ATTEMPTS = 5  # a waiting poll can be taken by a worker between our two statements: then defer again


class WorkerPollRequests:
    """What `qbflow serve --workers` gives its webhooks in place of an engine: `request_poll(connection)` defers
    the company's poll job for the workers. `run_forever` (the server's lifespan) closes it when the server stops."""

    def __init__(self, database: str | URL, *, pool_size: int = 4) -> None:
        import procrastinate

        require_postgres(database)
        connector = procrastinate.PsycopgConnector(conninfo=_conninfo(database), min_size=1, max_size=pool_size)
        self.app = procrastinate.App(connector=connector)
        self.paused: dict[str, str] = {}  # the dashboard's "paused connections": the workers know, not this server
        self.deferred = 0  # new polls deferred
        self.merged = 0  # requests folded into a poll already waiting
        self.failed = 0
        self._opened = False
        self._open_lock: asyncio.Lock | None = None
        self._pending: set[asyncio.Task[Any]] = set()

    # -- what the server calls --------------------------------------------------------------------------

    def request_poll(self, connection: str) -> None:
        """Poll `connection`'s company at once (a webhook said it changed): deferred in the background, so the
        webhook's answer never waits for the database. Call from the running event loop."""
        task = asyncio.get_running_loop().create_task(self._request_logged(connection))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def request(self, connection: str) -> Literal["deferred", "merged"]:
        """Defer a forced poll of `connection`, or force the one already waiting; which of the two happened."""
        from procrastinate.exceptions import AlreadyEnqueued

        await self._open()
        lock = f"poll:{connection}"
        deferrer = self.app.configure_task(TASK_POLL, queue=QUEUE_POLLS, priority=_PRIORITY[QUEUE_POLLS], lock=lock,
                                           queueing_lock=lock)
        for _ in range(_ATTEMPTS):
            try:
                await deferrer.defer_async(connection=connection, force=True)
            except AlreadyEnqueued:
                if await self.app.connector.execute_query_all_async(_FORCE_WAITING, lock=lock):
                    self.merged += 1
                    return "merged"
                continue  # the waiting one was taken by a worker just now (it may have read before the change)
            self.deferred += 1
            return "deferred"
        raise RuntimeError(f"could not defer a poll of {connection!r} after {_ATTEMPTS} attempts")

    async def drain(self) -> None:
        """Wait for the requests being deferred."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def aclose(self) -> None:
        await self.drain()
        if self._opened:
            self._opened = False
            await self.app.close_async()

    async def run_forever(self, *, tick: float = 1.0, stop: asyncio.Event, on_cycle: Any = None) -> None:
        """The server's lifespan runs this as it would run an engine: nothing to do but close at the end."""
        try:
            await stop.wait()
        finally:
            await self.aclose()

    # -- inside -------------------------------------------------------------------------------------------

    async def _open(self) -> None:
        if self._opened:
            return
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            if not self._opened:
                await self.app.open_async()
                self._opened = True

    async def _request_logged(self, connection: str) -> None:
        try:
            outcome = await self.request(connection)
        except Exception as error:  # the database: the next scheduled poll sees the change
            self.failed += 1
            log.warning("could not hand the poll of %s to the workers (%s); its next scheduled poll sees the change",
                        connection, error)
            return
        log.info("poll of %s %s", connection, "deferred to the workers" if outcome == "deferred"
                 else "already waiting: it will read the change")
