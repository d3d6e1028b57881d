"""The embedded engine's loop: poll what is due, record events and cursors together, run what was claimed.

"What is due, claim it, run it, record it" goes through `RunStore` (the database is the truth), so a
second implementation on a task queue can replace `Engine.cycle` without touching polling or running.

Each enabled workflow's trigger keeps its own cursor per company. A poll's events and the moved cursor
are stored in one transaction (`RunStore.record_poll`): a crash before it repeats the window, a crash
after it loses nothing. Events the trigger's `filter` rejects are not stored; the cursor still moves past
them, so they are not looked at again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from qbflow.connector.polling import PollCursor, poll_company
from qbflow.connector.triggers import trigger as trigger_for
from qbflow.engine.templates import make_context, render_condition
from qbflow.engine.workflow import Workflow
from qbflow.errors import QBFlowError
from qbflow.store.runs import RunStore, WorkflowRecord

log = logging.getLogger("qbflow.engine")

ClientFactory = Callable[[str], Awaitable[Any]]  # connection name -> QBOClient


class RunExecutor(Protocol):
    async def run_once(self, run_id: int) -> Any: ...


@dataclass
class CycleReport:
    """What one cycle did: polls made, events recorded, runs executed, problems met."""

    polls: int = 0
    events: int = 0
    runs: int = 0
    errors: list[str] = field(default_factory=list)


class Engine:
    """Polls the enabled workflows' triggers when they are due and runs the runs they create."""

    def __init__(self, runs: RunStore, clients: ClientFactory, runner: RunExecutor, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.runs = runs
        self.clients = clients
        self.runner = runner
        self.clock = clock

    async def poll_workflow(self, record: WorkflowRecord, report: CycleReport, *, force: bool = False) -> None:
        """Poll one workflow's trigger if it is due (or `force`), and record its events with the cursor."""
        workflow = Workflow.model_validate(record.definition)
        spec = workflow.trigger
        trig = trigger_for(spec.key)
        now = self.clock()
        try:
            client = await self.clients(spec.connection)
        except QBFlowError as error:
            report.errors.append(f"{record.name}: {error}")
            return
        try:
            await self._poll(record, workflow, trig, client, report, force=force, now=now)
        finally:
            close = getattr(client, "aclose", None)
            if close is not None:
                await close()

    async def _poll(self, record: WorkflowRecord, workflow: Workflow, trig: Any, client: Any, report: CycleReport,
                    *, force: bool, now: datetime) -> None:
        spec = workflow.trigger
        realm = client.realm_id
        stored = self.runs.get_cursor(record.id, trig.key, realm)
        if stored is not None and not force and stored.next_poll_at and stored.next_poll_at > now:
            return
        cursor = PollCursor.from_json(stored.cursor) if stored else PollCursor.start(now, since=spec.since)
        interval = spec.poll_interval
        try:
            result = await poll_company(client, [trig], cursor, now)
        except QBFlowError as error:
            # The cursor stays where it was: the next poll covers the same window again.
            self.runs.record_poll_error(record.id, trig.key, realm, str(error), now=now, next_poll_at=now + interval)
            report.errors.append(f"{record.name}: {error}")
            log.warning("poll of %s failed: %s", record.name, error)
            return
        events = [e for e in result.events if not spec.filter
                  or render_condition(spec.filter, make_context(trigger=e.record))]
        created = self.runs.record_poll(record.id, trig.key, spec.connection, realm, events,
                                        result.cursor.to_json(), now=now, next_poll_at=now + interval)
        report.polls += 1
        report.events += len(created)
        log.info("polled %s (%s on %s): %d new event(s)", record.name, trig.key, spec.connection, len(created))

    async def cycle(self, *, force: bool = False) -> CycleReport:
        """One pass: poll every enabled workflow that is due, then run every run that can be claimed."""
        report = CycleReport()
        for record in self.runs.list_workflows(enabled=True):
            await self.poll_workflow(record, report, force=force)
        while (run := self.runs.claim_next_run(self.clock())) is not None:
            await self.runner.run_once(run.id)
            report.runs += 1
        return report

    async def run_forever(self, *, tick: float = 1.0, on_cycle: Callable[[CycleReport], None] | None = None,
                          stop: asyncio.Event | None = None) -> None:
        """Cycle until `stop` is set (Ctrl-C in the CLI); runs in flight finish before it returns."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            report = await self.cycle()
            if on_cycle is not None:
                on_cycle(report)
            try:
                await asyncio.wait_for(stop.wait(), timeout=tick)
            except TimeoutError:
                pass
