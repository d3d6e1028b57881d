"""The embedded engine's loop: poll what is due, record events and cursors together, run what was claimed.

"What is due, claim it, run it, record it" goes through `RunStore` (the database is the truth), so a
second implementation on a task queue can replace `Engine.cycle` without touching polling or running: the
workers on Procrastinate (`qbflow.engine.workers`) decide what is due with `enabled_by_connection`,
`cursors_by_trigger` and `connection_due`, poll with `Engine.poll_connection`, and enqueue each new run's job
in the poll's transaction through `Engine(on_runs=...)`.

One poll per company per cycle: the enabled workflows whose triggers use the same connection are polled
together, with one read of QuickBooks (`poll_shared`: one CDC request for all their entities), whenever
one of them is due; each keeps its own cursor and gets the events of its own window. Polling them together
costs no more requests than polling the most frequent one, so a workflow is polled at least every
`poll_interval`, sometimes more often. All the workflows' events and moved cursors are stored in one
transaction (`RunStore.record_polls`): a crash before it repeats the window, a crash after it loses
nothing. Events a trigger's `filter` rejects are not stored; the cursor still moves past them.

A backfill (a `since:` long ago, or an engine stopped for weeks) is read in slices of `max_records` per
entity; the next slice is read in the next cycle (its runs wait in the database, not in memory).

Runs run concurrently (`run_forever`): claimed whenever there is room, at most `max_runs` in all and
`runs_per_company` per lane (the trigger's connection: the company whose limits the run uses), lanes taking
turns; polls run in background tasks, companies in parallel. A workflow's runs for one record are claimed one at
a time in their events' order (`RunStore.claim_runs`). A stop takes no new work and gives runs in flight `grace`
seconds before putting them back in the queue.

Loops: a change qbflow itself wrote (recorded by the runner in `own_writes`) does not start the workflow that
wrote it (`trigger.skip_changes_by`); a record that starts a workflow more than `loop_limit` times within
`loop_window` while qbflow workflows write it pauses that workflow with one message (`_break_loops`).

A connection that needs reconnecting pauses its workflows: one message when it happens, no polling (the
cursors stay where they were) until `qbflow connect NAME` makes it usable again; then polling carries on
from the old cursors, missing nothing, and the workflows' runs waiting for a retry are woken at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from qbflow.connector.polling import PollCursor, poll_shared
from qbflow.connector.triggers import trigger as trigger_for
from qbflow.engine.clients import ClientFactory
from qbflow.engine.schedule import ScheduleSource, collect_schedules
from qbflow.engine.templates import make_context, render_condition
from qbflow.engine.workflow import TriggerSpec, Workflow, trigger_kind
from qbflow.errors import QBFlowError
from qbflow.qbo.errors import NeedsReconnect
from qbflow.store.models import RUN_DELAYED
from qbflow.store.runs import PollOutcome, RunRecord, RunsHook, RunStore, WorkflowRecord, order_key_for

log = logging.getLogger("qbflow.engine")

# Records of one entity one poll reads at most in query mode (a backfill): memory stays flat.
BACKFILL_SLICE = 2000

# Runs in flight at once in one engine, over all companies (each holds its event's record and a coroutine, some
# kilobytes: 200 is a few MB, and lets ten companies each keep Intuit's 10 requests in flight with runs to
# spare), and per company: twice Intuit's 10 requests in flight, so a company's limit stays busy while its runs
# do their own work between requests (the pacer holds the excess).
DEFAULT_MAX_RUNS = 200
DEFAULT_RUNS_PER_COMPANY = 20
# Seconds runs in flight get to finish after a stop before they are interrupted (and resumed at the next start).
DEFAULT_GRACE = 20.0
# The loop breaker: a record that starts one workflow more than LOOP_LIMIT times within LOOP_WINDOW, while qbflow
# workflows write that record, pauses the workflow (people editing a record that often are left alone).
LOOP_LIMIT = 8
LOOP_WINDOW = timedelta(minutes=10)
OWN_WRITES_KEPT = timedelta(days=7)  # longer than any poll could lag (an engine stopped for days still skips them)
_OTHERS = None  # the lane of runs whose company is not among the enabled workflows' (or not recorded)


class RunExecutor(Protocol):
    """Executes one claimed run to its outcome (`qbflow.engine.runner.Runner`)."""

    async def run_once(self, run_id: int, claimed: RunRecord | None = None, *, detail: bool = True) -> RunRecord:
        ...


@dataclass
class CycleReport:
    """What one cycle did: polls made (one per company read), QBO requests they took, events recorded,
    runs executed, problems met, and the connections paused because they need reconnecting."""

    polls: int = 0
    events: int = 0
    runs: int = 0
    errors: list[str] = field(default_factory=list)
    requests: int = 0
    paused: list[str] = field(default_factory=list)

    def merge(self, other: CycleReport) -> None:
        """Add what `other` counted to this report."""
        self.polls += other.polls
        self.events += other.events
        self.runs += other.runs
        self.requests += other.requests
        self.errors += other.errors
        self.paused += [name for name in other.paused if name not in self.paused]


@dataclass
class _Watch:
    record: WorkflowRecord
    spec: TriggerSpec  # the workflow's QuickBooks trigger
    trigger: Any
    cursor: PollCursor
    due: bool
    new: bool = False  # no cursor stored yet


def _own_change(event: Any, workflow_id: int, skip: str, writers: dict[tuple[str, str, str], int]) -> bool:
    """Whether the event is a change qbflow wrote that must not start this workflow (`trigger.skip_changes_by`)."""
    if skip == "none" or event.sync_token is None:
        return False
    writer = writers.get((event.entity, str(event.record_id), str(event.sync_token)))
    return writer is not None and (skip == "any_workflow" or writer == workflow_id)


def enabled_by_connection(runs: RunStore) -> dict[str, list[WorkflowRecord]]:
    """The enabled workflows grouped by the connection their trigger polls: one poll per company covers a group."""
    by_connection: dict[str, list[WorkflowRecord]] = {}
    for record in runs.list_workflows(enabled=True):
        # Stored definitions were validated when added; reading the one field (as `connection_due` reads the
        # trigger key) spares a full validation of every workflow on every tick. Other trigger kinds poll nothing.
        trig = record.definition["trigger"]
        if trigger_kind(trig) == "qbo":
            by_connection.setdefault(trig["connection"], []).append(record)
    return by_connection


def cursors_by_trigger(runs: RunStore) -> dict[tuple[int, str], list[Any]]:
    """Every stored cursor by (workflow id, trigger key): one per company the trigger has polled."""
    cursors: dict[tuple[int, str], list[Any]] = {}
    for cursor in runs.list_cursors():
        cursors.setdefault((cursor.workflow_id, cursor.trigger_key), []).append(cursor)
    return cursors


def connection_due(records: list[WorkflowRecord], cursors: dict[tuple[int, str], list[Any]], now: datetime) -> bool:
    """Whether one of these workflows' triggers has no cursor yet or is due at `now` (from the stored cursors)."""
    for record in records:
        mine = cursors.get((record.id, record.definition["trigger"]["key"]))
        if not mine or any(c.next_poll_at is None or c.next_poll_at <= now for c in mine):
            return True
    return False


class Engine:
    """Polls the enabled workflows' triggers when they are due and runs the runs they create."""

    def __init__(self, runs: RunStore, clients: ClientFactory, runner: RunExecutor, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 max_records: int | None = BACKFILL_SLICE, on_runs: RunsHook | None = None,
                 max_runs: int = DEFAULT_MAX_RUNS, runs_per_company: int = DEFAULT_RUNS_PER_COMPANY,
                 grace: float = DEFAULT_GRACE, loop_limit: int = LOOP_LIMIT,
                 loop_window: timedelta = LOOP_WINDOW) -> None:
        if max_runs < 1 or runs_per_company < 1:
            raise ValueError("max_runs and runs_per_company must be at least 1")
        self.runs = runs
        self.max_runs = max_runs
        self.runs_per_company = runs_per_company
        self._top_up = max(1, runs_per_company // 4)
        self.grace = grace
        self.loop_limit = loop_limit
        self.loop_window = loop_window
        self._run_tasks: set[asyncio.Task[None]] = set()
        self._poll_tasks: set[asyncio.Task[None]] = set()
        self._polling: set[str] = set()  # companies being polled now
        self._poll_again: set[str] = set()  # companies asked for while being polled
        self._in_flight: dict[str | None, int] = {}  # runs in flight per lane (company)
        self._lanes_with_work: set[str | None] = {_OTHERS}  # lanes that may have due runs
        self._known_lanes: set[str] | None = None
        self._turn = 0
        self._next_due: datetime | None = None  # the earliest retry this engine scheduled
        self._pruned_at = float("-inf")
        self._report = CycleReport()  # what happened since the last tick (polls and runs add to it as they end)
        self.on_runs = on_runs  # called in the transaction that records a poll's new runs (a task queue's enqueue)
        self.clients = clients
        self.runner = runner
        self.clock = clock
        self.max_records = max_records
        self.paused: dict[str, str] = {}  # connection -> why (needs reconnecting)
        self._hints: set[str] = set()  # connections to poll at once (request_poll)
        self._schedules = ScheduleSource()  # this engine's memory of the schedules' next fire times
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()  # run_forever's stop, seen between runs

    async def poll_connection(self, connection: str, records: list[WorkflowRecord], report: CycleReport, *,
                              force: bool = False, cursors: dict[tuple[int, str], list[Any]] | None = None) -> None:
        """Poll one company for every enabled workflow on `connection`, if one of them is due (or `force`)."""
        if not force and connection not in self.paused and not self._any_due(records, cursors):
            return  # no client, no request: nothing to do until one of them is due
        try:
            client = await self.clients(connection)
        except NeedsReconnect as error:
            self._pause(connection, records, error, report)
            return
        except QBFlowError as error:
            report.errors.append(f"{connection}: {error}")
            return
        try:
            self._resume(connection, records)
            await self._poll(connection, records, client, report, force=force)
        except NeedsReconnect as error:  # the grant died during the poll
            self._pause(connection, records, error, report)
        except Exception as error:  # a bug or the database: report it, keep the engine (and the cursors) alive
            log.exception("poll of %s failed unexpectedly", connection)
            report.errors.append(f"{connection}: unexpected error while polling: {error!r}")
        finally:
            close = getattr(client, "aclose", None)
            if close is not None:
                await close()

    def _any_due(self, records: list[WorkflowRecord], cursors: dict[tuple[int, str], list[Any]] | None) -> bool:
        return connection_due(records, cursors if cursors is not None else cursors_by_trigger(self.runs),
                              self.clock())

    def _pause(self, connection: str, records: list[WorkflowRecord], error: NeedsReconnect,
               report: CycleReport) -> None:
        report.paused.append(connection)
        if connection in self.paused:
            return
        names = ", ".join(r.name for r in records)
        message = (f"connection {connection!r} needs reconnecting, so its workflows are paused ({names}): "
                   f"{error}. Run `qbflow connect {connection}`; they resume from where they stopped.")
        self.paused[connection] = message
        report.errors.append(message)
        log.warning("%s", message)

    def _resume(self, connection: str, records: list[WorkflowRecord]) -> None:
        if self.paused.pop(connection, None) is None:
            return
        woken = self.runs.wake_waiting([r.id for r in records], self.clock())
        log.warning("connection %r works again: its workflows resume (%d waiting run(s) woken)", connection, woken)

    async def _poll(self, connection: str, records: list[WorkflowRecord], client: Any, report: CycleReport, *,
                    force: bool) -> None:
        now = self.clock()
        realm = client.realm_id
        watches: list[_Watch] = []
        for record in records:
            spec = Workflow.model_validate(record.definition).trigger
            if not isinstance(spec, TriggerSpec):  # only QuickBooks triggers are polled (enabled_by_connection)
                continue
            trig = trigger_for(spec.key)
            stored = self.runs.get_cursor(record.id, trig.key, realm)
            due = stored is None or force or stored.next_poll_at is None or stored.next_poll_at <= now
            cursor = (PollCursor.from_json(stored.cursor) if stored
                      else PollCursor.start(now, since=spec.since))
            watches.append(_Watch(record, spec, trig, cursor, due, new=stored is None))
        if not any(w.due for w in watches):
            return
        fresh = [PollOutcome(w.record.id, w.trigger.key, [], w.cursor.to_json(), now) for w in watches if w.new]
        if fresh:
            # A new trigger's start ("from now", or `since:`) is stored before its first poll, so a poll that
            # fails (or a crash) does not move the start to a later "now" and miss what changed meanwhile.
            self.runs.record_polls(connection, realm, fresh, now=now)
        try:
            shared = await poll_shared(client, {w.record.id: ([w.trigger], w.cursor) for w in watches}, now,
                                       max_records=self.max_records)
        except NeedsReconnect:
            raise
        except QBFlowError as error:
            # The cursors stay where they were: the next poll covers the same windows again.
            for w in watches:
                self.runs.record_poll_error(w.record.id, w.trigger.key, realm, str(error), now=now,
                                            next_poll_at=now + w.spec.poll_interval)
            report.errors.append(f"{connection}: {error}")
            log.warning("poll of %s failed: %s", connection, error)
            return
        versions = {(e.entity, str(e.record_id), str(e.sync_token)) for result in shared.results.values()
                    for e in result.events if e.sync_token is not None}
        writers = self.runs.own_writers(realm, versions) if versions else {}
        outcomes = []
        kept: dict[int, list[Any]] = {}
        for w in watches:
            result = shared.results[w.record.id]
            spec = w.spec
            events = [e for e in result.events if not _own_change(e, w.record.id, spec.skip_changes_by, writers)
                      and (not spec.filter or render_condition(spec.filter, make_context(trigger=e.record)))]
            kept[w.record.id] = events
            next_poll = now if not result.complete else now + spec.poll_interval
            outcomes.append(PollOutcome(w.record.id, w.trigger.key, events, result.cursor.to_json(), next_poll))
        created = self.runs.record_polls(connection, realm, outcomes, now=now, on_runs=self.on_runs)
        for w in watches:
            if created.get(w.record.id):
                self._break_loops(connection, realm, w.record, kept[w.record.id], now, report)
        new = sum(len(ids) for ids in created.values())
        report.polls += 1
        report.requests += shared.requests
        report.events += new
        for warning in shared.warnings:
            log.warning("poll of %s: %s", connection, warning)
        log.info("polled %s (%d workflow(s), %d request(s), %s): %d new event(s)%s", connection, len(watches),
                 shared.requests, shared.mode, new, "" if shared.complete else ", backfill continues")

    def _break_loops(self, connection: str, realm: str, record: WorkflowRecord, events: list[Any], now: datetime,
                     report: CycleReport) -> None:
        """Pause the workflow if one record (that qbflow also wrote) has started it more than `loop_limit` times
        within `loop_window`: a loop that got past the own-change guard, e.g. two workflows feeding each other."""
        since = now - self.loop_window
        keys = {order_key_for(realm, e.entity, str(e.record_id)): e for e in events}
        counts = self.runs.runs_per_record(record.id, keys, since)
        for key, count in counts.items():
            if count <= self.loop_limit:
                continue
            event = keys[key]
            writers = self.runs.writers_of(realm, event.entity, str(event.record_id), since)
            if not writers:
                continue  # people edited it that often: not a loop of ours
            minutes = round(self.loop_window.total_seconds() / 60)
            message = (f"workflow {record.name!r} paused: {event.entity} {event.record_id} on connection "
                       f"{connection!r} started it {count} times in {minutes} minutes, and qbflow workflows changed "
                       f"that record meanwhile ({', '.join(repr(n) for n in writers)}): they feed each other. Change "
                       f"them (a `when:` that skips records already done, or `skip_changes_by: any_workflow`), then "
                       f"`qbflow workflow enable {record.name!r}`.")
            if self.runs.pause_workflow(record.id, message, order_key=key):
                report.errors.append(message)
                log.warning("%s", message)
            return

    def collect_due(self) -> list[int]:
        """Store the fire times that are due of schedule workflows, with their runs (`engine.schedule`)."""
        try:
            created = collect_schedules(self.runs, self.clock(), on_runs=self.on_runs, source=self._schedules)
        except Exception as error:  # a bug or the database: report it, keep the engine alive (the next tick retries)
            log.exception("collecting due schedules failed")
            self._report.errors.append(f"schedules: unexpected error: {error!r}")
            return []
        self._report.events += len(created)
        return created

    def request_poll(self, connection: str) -> None:
        """Poll `connection`'s company at once, due or not (a webhook said something changed there). Several
        requests before the next cycle make one poll; events it finds are de-duplicated with every other poll."""
        self._hints.add(connection)
        self._wake.set()

    def request_runs(self) -> None:
        """Runs were stored outside a poll (a webhook delivery): claim them now rather than at the next tick."""
        self._refresh_lanes()
        self._wake.set()

    # -- polls ---------------------------------------------------------------------------------------

    def _start_polls(self, hinted: set[str], by_connection: dict[str, list[WorkflowRecord]], *,
                     force: bool = False) -> None:
        """Poll, each in a background task, every company that is due, hinted (`request_poll`) or, with `force`,
        all: companies in parallel, and a slow poll of one holds neither the others nor the runs."""
        cursors = cursors_by_trigger(self.runs) if by_connection else {}
        for connection, records in by_connection.items():
            if connection in self._polling:
                if connection in hinted:
                    self._poll_again.add(connection)  # asked during a poll: poll again once it is done
                continue
            forced = force or connection in hinted
            if not forced and connection not in self.paused and not connection_due(records, cursors, self.clock()):
                continue  # no task, no client, no request until one of its workflows is due
            self._polling.add(connection)
            task = asyncio.create_task(self._poll_in_background(connection, records, forced, cursors))
            self._poll_tasks.add(task)
            task.add_done_callback(self._poll_tasks.discard)

    async def _poll_in_background(self, connection: str, records: list[WorkflowRecord], force: bool,
                                  cursors: dict[tuple[int, str], list[Any]]) -> None:
        report = CycleReport()
        try:
            await self.poll_connection(connection, records, report, force=force, cursors=cursors)
        finally:
            self._report.merge(report)  # into the report of the tick in which it finished
            self._polling.discard(connection)
            self._lanes_with_work.add(connection)
            if connection in self._poll_again:
                self._poll_again.discard(connection)
                self._hints.add(connection)
            self._wake.set()

    # -- runs ----------------------------------------------------------------------------------------

    def _lane_room(self, lane: str | None) -> int:
        return self.runs_per_company - self._in_flight.get(lane, 0)

    def _fill(self) -> int:
        """Claim due runs while there is room (the global cap, each company's share) and start them."""
        if self._stop.is_set():
            return 0
        free = self.max_runs - len(self._run_tasks)
        if free <= 0:
            return 0
        # Companies in turn, so one with a long queue does not keep the others waiting for the free places.
        # A company with runs in flight is topped up a few places at a time (a quarter of its share): one claim
        # per finished run would cost a transaction each, and its runs in flight keep its limit busy meanwhile.
        lanes = [lane for lane in self._lanes_with_work
                 if self._lane_room(lane) >= (self._top_up if self._in_flight.get(lane) else 1)]
        if not lanes:
            return 0
        self._turn = (self._turn + 1) % len(lanes)
        lanes = lanes[self._turn:] + lanes[:self._turn]
        batches: list[tuple[str | None, list[RunRecord]]] = []
        for lane in lanes:
            if free <= 0:
                break
            room = min(self._lane_room(lane), free)
            if lane is _OTHERS:  # runs of companies no enabled workflow polls (or of none recorded)
                claimed = self.runs.claim_runs(dict.fromkeys(self._known_lanes or (), 0), others=room,
                                               now=self.clock())
            else:
                claimed = self.runs.claim_runs({lane: room}, now=self.clock())
            if len(claimed) < room:
                self._lanes_with_work.discard(lane)  # asked again after a poll, a finished run or the tick
            batches.append((lane, claimed))
            free -= len(claimed)
        # Started (and so first scheduled) one of each company in turn: every company's first requests leave
        # early, rather than the last company's waiting for all the others' runs to reach their pacers.
        started = 0
        for turn in range(max((len(claimed) for _lane, claimed in batches), default=0)):
            for lane, claimed in batches:
                if turn < len(claimed):
                    self._start_run(claimed[turn], lane)
                    started += 1
        return started

    def _start_run(self, run: RunRecord, lane: str | None) -> None:
        self._in_flight[lane] = self._in_flight.get(lane, 0) + 1
        task = asyncio.create_task(self._execute(run, lane), name=f"run {run.id}")
        self._run_tasks.add(task)

    async def _execute(self, run: RunRecord, lane: str | None) -> None:
        try:
            done = await self.runner.run_once(run.id, run, detail=False)
            self._report.runs += 1
            self._note_waiting(done)
        except asyncio.CancelledError:
            # Stopping: the run goes back to the queue and resumes at the next start with the same request ids.
            self.runs.release_run(run.id)
            raise
        except Exception as error:  # a bug or the database: the run stays "running" until the next start
            log.exception("run %s failed unexpectedly", run.id)
            self._report.errors.append(f"run {run.id}: unexpected error: {error!r}")
        finally:
            self._in_flight[lane] -= 1
            self._lanes_with_work.add(lane)
            this = asyncio.current_task()
            if this is not None:
                self._run_tasks.discard(this)
            self._wake.set()

    def _note_waiting(self, done: Any) -> None:
        """A run that now waits (a retry, or a `wait` step): wake the dispatcher when it is due (nothing holds it
        meanwhile)."""
        moment = getattr(done, "next_attempt_at", None)
        if getattr(done, "status", None) not in RUN_DELAYED or moment is None:
            return
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        if self._next_due is None or moment < self._next_due:
            self._next_due = moment

    def _refresh_lanes(self, by_connection: dict[str, list[WorkflowRecord]] | None = None) -> None:
        """Every company (and the runs of no known company) may have due runs: ask each again. `by_connection`:
        the companies of the enabled workflows now (default: those known already)."""
        if by_connection is not None:
            self._known_lanes = set(by_connection)
        self._lanes_with_work |= (self._known_lanes or set()) | {_OTHERS}

    # -- the loops -------------------------------------------------------------------------------------

    async def cycle(self, *, force: bool = False) -> CycleReport:
        """One pass: poll every company with a workflow due (once each, in parallel) or asked for
        (`request_poll`), then run every run that can be claimed, concurrently within the limits, until none
        is left (or the engine is stopping). Runs that wait for a retry are left for a later cycle."""
        self._report = report = CycleReport()
        hinted, self._hints = self._hints, set()
        self._wake.clear()
        by_connection = enabled_by_connection(self.runs)
        self._start_polls(hinted, by_connection, force=force)
        self.collect_due()
        if self._poll_tasks:
            await asyncio.wait(set(self._poll_tasks))
        self._refresh_lanes(by_connection)
        while not self._stop.is_set():
            self._fill()
            if not self._run_tasks:
                break
            await asyncio.wait(set(self._run_tasks), return_when=asyncio.FIRST_COMPLETED)
        return report

    async def run_forever(self, *, tick: float = 1.0, on_cycle: Callable[[CycleReport], None] | None = None,
                          stop: asyncio.Event | None = None) -> None:
        """Poll and run until `stop` is set (Ctrl-C or SIGTERM in the CLI).

        Every `tick` seconds (at once when a poll is asked for) the companies that are due are polled in the
        background; runs are claimed whenever there is room (a run finished, a poll stored new runs, a waiting
        run came due) and run concurrently: at most `max_runs` in all and `runs_per_company` per company.
        `on_cycle` gets what happened since the last tick. On `stop` no new work is taken; runs in flight get
        `grace` seconds to finish, then are interrupted and put back in the queue (they resume with the same
        request ids), so it returns within about `grace` seconds."""
        self._stop = stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        self._report = CycleReport()
        next_tick = loop.time()
        try:
            while not stop.is_set():
                now = loop.time()
                if now >= next_tick or self._hints:
                    hinted, self._hints = self._hints, set()
                    by_connection = enabled_by_connection(self.runs)
                    self._refresh_lanes(by_connection)
                    self._start_polls(hinted, by_connection)
                    if now >= next_tick:
                        self.collect_due()
                if self._next_due is not None and self._next_due <= self.clock():
                    self._next_due = None
                    self._refresh_lanes()
                self._wake.clear()
                self._fill()
                if now >= next_tick:
                    next_tick = now + tick
                    self._prune(loop.time())
                    if on_cycle is not None:
                        on_cycle(self._report)
                    self._report = CycleReport()
                timeout = max(next_tick - loop.time(), 0.0)
                if self._next_due is not None:
                    timeout = min(timeout, max((self._next_due - self.clock()).total_seconds(), 0.0))
                if self._hints:
                    continue
                stopping = asyncio.ensure_future(stop.wait())
                woken = asyncio.ensure_future(self._wake.wait())
                try:
                    await asyncio.wait({stopping, woken}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stopping.cancel()
                    woken.cancel()
        finally:
            await self._wind_down()
            last = self._report
            if on_cycle is not None and (last.runs or last.polls or last.errors or last.paused):
                on_cycle(last)
            self._stop = asyncio.Event()

    def _prune(self, now: float) -> None:
        """Now and then, forget own writes old enough that their changes were polled long ago."""
        if now - self._pruned_at < 3600:
            return
        self._pruned_at = now
        try:
            self.runs.prune_own_writes(self.clock() - OWN_WRITES_KEPT)
        except Exception:  # housekeeping must never stop the engine
            log.warning("could not prune old own writes", exc_info=True)

    async def _wind_down(self) -> None:
        """Stop: polls are cancelled (they store nothing half-way); runs get `grace` seconds, then are put back."""
        for task in list(self._poll_tasks):
            task.cancel()
        running = set(self._run_tasks)
        if running:
            log.info("stopping: waiting up to %.0f s for %d run(s) in flight", self.grace, len(running))
            _done, late = await asyncio.wait(running, timeout=self.grace)
            for task in late:
                task.cancel()
            if late:
                log.warning("stopping: %d run(s) did not finish in time; they resume at the next start", len(late))
                await asyncio.wait(late)
        if self._poll_tasks:
            await asyncio.wait(set(self._poll_tasks))
