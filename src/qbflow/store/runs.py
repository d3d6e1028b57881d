"""Workflows, poll cursors, events, runs and the step ledger: what the engine keeps.

    runs = RunStore(store.engine)
    wf = runs.upsert_workflow("new-invoice", "flows/new_invoice.yaml", definition)
    run_ids = runs.record_poll(wf.id, "new_invoice", "acme", realm, result.events, result.cursor.to_json())
    run = runs.claim_next_run()                      # the seam: what is due, claim it
    request_id = runs.mark_step_sent(run.id, "create", payload).request_id   # before the request
    runs.finish_step(run.id, "create", status="succeeded", output=answer)
    runs.finish_run(run.id, "succeeded")

The guarantees live here:

* `record_poll` stores new events, one queued run per new event, and the moved cursor in ONE
  transaction; an event already stored (same workflow, company and dedup key) is ignored, so overlapping
  polls and a crash between poll and commit neither lose nor double anything.
* `claim_next_run` hands a due run to exactly one claimer (PostgreSQL: `FOR UPDATE SKIP LOCKED`; SQLite:
  `BEGIN IMMEDIATE`). The workers on Procrastinate (`qbflow.engine.workers`) claim the run their job names
  instead (`claim_run`), and enqueue each poll's run jobs inside `record_polls`' transaction (`on_runs`).
* Step request ids derive from the run's random `uid` and the step id: the same for every retry and
  resume of that step, different for every other step and for every other database's runs.
"""

from __future__ import annotations

import builtins
import functools
import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, CursorResult, Engine, Row, bindparam, case, func, or_, select, true, update
from sqlalchemy.orm import Session

from qbflow.store.db import read_session, write_connection, write_session
from qbflow.store.errors import StoreError
from qbflow.store.models import (
    RUN_CANCELLED,
    RUN_DELAYED,
    RUN_FAILED,
    RUN_QUEUED,
    RUN_RUNNING,
    RUN_STATUSES,
    RUN_SUCCEEDED,
    RUN_WAITING_RETRY,
    STEP_FAILED,
    STEP_SENT,
    STEP_STATUSES,
    STEP_SUCCEEDED,
    Event,
    OwnWrite,
    Run,
    StepResult,
    TriggerCursor,
    Workflow,
    utcnow,
)

__all__ = [
    "CursorRecord",
    "EventRecord",
    "PollOutcome",
    "RunNotFound",
    "RunRecord",
    "RunStore",
    "RunsHook",
    "StepOutcome",
    "StepRecord",
    "WorkflowNotFound",
    "WorkflowRecord",
    "request_id_for",
]

# Fixed forever: changing it would change every request id of runs in progress.
_REQUEST_ID_NAMESPACE = uuid.UUID("6f1c2a57-1d0e-4b7a-9a55-5171626f6c77")

_FINISHED_RUN = (RUN_SUCCEEDED, RUN_FAILED, RUN_CANCELLED)
_FINISHED_STEP = ("succeeded", "failed", "skipped")

T = TypeVar("T")

# Values per IN list (record ids, order keys): well under SQLite's 32,766 bound parameters.
_CHUNK = 500


class WorkflowNotFound(StoreError, LookupError):
    """No workflow has this name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"No workflow named {name!r}. See `qbflow workflow list`.")
        self.name = name


class RunNotFound(StoreError, LookupError):
    """No run has this id."""

    def __init__(self, run_id: int) -> None:
        super().__init__(f"No run with id {run_id}. See `qbflow runs list`.")
        self.run_id = run_id


def order_key_for(realm_id: str, entity: str | None, record_id: str | None) -> str:
    """The key that orders a workflow's runs: runs of one workflow for the same record run one at a time, in
    the order of their events."""
    return f"{realm_id}|{entity or ''}|{record_id or ''}"


def request_id_for(run_uid: str, step_id: str) -> str:
    """The QBO `requestid` of one step of one run: stable, 36 characters, distinct per (run, step)."""
    return str(uuid.uuid5(_REQUEST_ID_NAMESPACE, f"{run_uid}:{step_id}"))


@dataclass(frozen=True, kw_only=True)
class WorkflowRecord:
    """A stored workflow; `definition` is the parsed file as JSON-compatible data."""

    id: int
    name: str
    source_path: str | None
    definition: Any
    enabled: bool
    created_at: datetime
    updated_at: datetime
    paused_reason: str | None = None  # why qbflow turned it off by itself (the loop breaker)


@dataclass(frozen=True, kw_only=True)
class CursorRecord:
    """Where one workflow's trigger stands on one company; `cursor` is `PollCursor.to_json()` text."""

    workflow_id: int
    connection: str
    realm_id: str
    trigger_key: str
    cursor: str
    last_poll_at: datetime | None
    next_poll_at: datetime | None
    last_error: str | None


@dataclass(frozen=True, kw_only=True)
class EventRecord:
    """A stored trigger event: the record the run starts from."""

    id: int
    workflow_id: int
    realm_id: str
    trigger_key: str
    entity: str
    record_id: str
    sync_token: str | None
    dedup_key: str
    record: Any
    changed_at: datetime | None
    seen_at: datetime


@dataclass(frozen=True, kw_only=True)
class StepRecord:
    """One step's ledger entry. Status "sent" with no outcome means the request may or may not have landed."""

    run_id: int
    step_id: str
    position: int
    status: str
    request_id: str
    input: Any
    output: Any
    error: Any
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    """A run. `event` and `steps` are filled by `get_run`, `claim_next_run` and `unfinished_runs`;
    `list_runs` leaves them empty (None and ())."""

    id: int
    uid: str
    workflow_id: int
    workflow_name: str
    event_id: int | None
    status: str
    attempt: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    next_attempt_at: datetime | None
    event: EventRecord | None = None
    steps: tuple[StepRecord, ...] = ()
    workflow_updated_at: datetime | None = None  # which stored version of the workflow (filled with `event`)

    def step(self, step_id: str) -> StepRecord | None:
        """This run's ledger entry for `step_id`, if the step has started."""
        return next((s for s in self.steps if s.step_id == step_id), None)


def _field(event: Any, name: str, default: Any = None) -> Any:
    if isinstance(event, Mapping):
        return event.get(name, default)
    return getattr(event, name, default)


def _insert_for(session: Session) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT DO NOTHING (both SQLite and PostgreSQL have it)."""
    return _insert_for_dialect(session.get_bind().dialect.name)


def _insert_for_dialect(name: str) -> Any:
    if name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert
    if name == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite.insert
    raise StoreError(f"unsupported database {name!r}: use SQLite or PostgreSQL")  # make_engine supports only these


def _chunks(rows: Sequence[T]) -> Iterable[Sequence[T]]:
    for start in range(0, len(rows), _CHUNK):
        yield rows[start : start + _CHUNK]


@dataclass(frozen=True)
class StepOutcome:
    """A step's outcome recorded later, with the next write of its run (`mark_step_sent(before=)`,
    `finish_run(steps=)`): for steps that need no "sent" mark (reads, log, skips) and for results of writes,
    which a crash before they are recorded only makes run again under the same request id."""

    step_id: str
    position: int | None
    status: str
    output: Any = None
    error: Any = None
    input: Any = None
    attempts: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True)
class PollOutcome:
    """One workflow's share of a company's poll, for `RunStore.record_polls`."""

    workflow_id: int
    trigger_key: str
    events: Sequence[Any]
    cursor_json: str
    next_poll_at: datetime | None = None


# Called inside `record_polls`' transaction with its connection and the new runs' ids.
RunsHook = Callable[[Connection, Sequence[int]], None]


class RunStore:
    """The only code that reads or writes workflows, trigger cursors, events, runs and step results."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._uids: dict[int, str] = {}

    def __repr__(self) -> str:
        return f"RunStore({self.engine.url.render_as_string(hide_password=True)!r})"

    # -- workflows ---------------------------------------------------------------------------------

    def upsert_workflow(
        self, name: str, path: str | None, definition: Any, enabled: bool | None = None
    ) -> WorkflowRecord:
        """Add the workflow `name` or replace its path and definition. `enabled=None` keeps an existing
        workflow's state (a new one starts enabled)."""
        json.dumps(definition)  # refuse what would not round-trip, before touching the database
        with write_session(self.engine) as session:
            row = session.scalars(select(Workflow).where(Workflow.name == name).with_for_update()).one_or_none()
            if row is None:
                row = Workflow(name=name, enabled=True if enabled is None else enabled)
                session.add(row)
            elif enabled is not None:
                row.enabled = enabled
            row.source_path = path
            row.definition = definition
            row.updated_at = utcnow()
            session.flush()
            return _workflow(row)

    def set_enabled(self, name: str, enabled: bool) -> WorkflowRecord:
        """Enable or disable a workflow; raises `WorkflowNotFound`."""
        with write_session(self.engine) as session:
            row = session.scalars(select(Workflow).where(Workflow.name == name).with_for_update()).one_or_none()
            if row is None:
                raise WorkflowNotFound(name)
            row.enabled = enabled
            if enabled:
                row.paused_reason = None
            row.updated_at = utcnow()
            session.flush()
            return _workflow(row)

    def pause_workflow(self, workflow_id: int, reason: str, *, order_key: str | None = None) -> bool:
        """Turn a workflow off by qbflow's own decision, saying why (shown by `workflow list`, the dashboard and
        the API); its queued runs for `order_key` (the record looping) are cancelled with that reason. False
        when it was off already."""
        with write_session(self.engine) as session:
            row = session.get(Workflow, workflow_id, with_for_update=True)
            if row is None or not row.enabled:
                return False
            row.enabled = False
            row.paused_reason = reason
            row.updated_at = utcnow()
            if order_key is not None:
                session.execute(update(Run).where(Run.workflow_id == workflow_id, Run.order_key == order_key,
                                                  Run.status.in_([RUN_QUEUED, *RUN_DELAYED]))
                                .values(status=RUN_CANCELLED, error=reason, finished_at=utcnow(),
                                        next_attempt_at=None))
            return True

    # -- qbflow's own writes (the loop guard) ----------------------------------------------------------

    def record_own_write(self, realm_id: str, entity: str, record_id: str, sync_token: str, workflow_id: int,
                         run_id: int | None = None, *, now: datetime | None = None) -> None:
        """Remember that a step of `workflow_id` wrote this version of a record (committed on return, before
        the next poll can see the change)."""
        row = {"realm_id": realm_id, "entity": entity, "record_id": str(record_id), "sync_token": str(sync_token),
               "workflow_id": workflow_id, "run_id": run_id, "written_at": now or utcnow()}
        with write_connection(self.engine) as connection:
            connection.execute(_own_write_insert(connection.dialect.name), row)

    def own_writers(self, realm_id: str, versions: Iterable[tuple[str, str, str]]
                    ) -> dict[tuple[str, str, str], int]:
        """Of these record versions (entity, Id, SyncToken) of one company, those qbflow wrote, with the workflow
        that wrote each."""
        wanted = {(entity, str(record_id), str(token)) for entity, record_id, token in versions}
        if not wanted:
            return {}
        found: dict[tuple[str, str, str], int] = {}
        table = OwnWrite.__table__
        ids = sorted({record_id for _entity, record_id, _token in wanted})
        with self.engine.connect() as connection:
            for chunk in _chunks(ids):
                rows = connection.execute(select(table.c.entity, table.c.record_id, table.c.sync_token,
                                                 table.c.workflow_id)
                                          .where(table.c.realm_id == realm_id, table.c.record_id.in_(chunk)))
                for entity, record_id, token, workflow_id in rows:
                    if (entity, record_id, token) in wanted:
                        found[(entity, record_id, token)] = workflow_id
        return found

    def writers_of(self, realm_id: str, entity: str, record_id: str, since: datetime) -> builtins.list[str]:
        """Names of the workflows that wrote this record since `since`, in the order they first did."""
        table, workflows = OwnWrite.__table__, _WORKFLOWS
        stmt = (select(workflows.c.name, func.min(table.c.written_at).label("first"))
                .join(workflows, workflows.c.id == table.c.workflow_id)
                .where(table.c.realm_id == realm_id, table.c.entity == entity, table.c.record_id == str(record_id),
                       table.c.written_at >= since)
                .group_by(workflows.c.name).order_by("first"))
        with self.engine.connect() as connection:
            return [name for name, _first in connection.execute(stmt)]

    def prune_own_writes(self, before: datetime) -> int:
        """Forget own writes older than `before` (their changes were polled long ago)."""
        table = OwnWrite.__table__
        with write_connection(self.engine) as connection:
            return connection.execute(table.delete().where(table.c.written_at < before)).rowcount or 0

    def runs_per_record(self, workflow_id: int, order_keys: Iterable[str], since: datetime) -> dict[str, int]:
        """How many runs of the workflow each of these records (order keys) started since `since`."""
        keys = sorted(set(order_keys))
        counts: dict[str, int] = {}
        with self.engine.connect() as connection:
            for chunk in _chunks(keys):
                rows = connection.execute(select(_RUNS.c.order_key, func.count())
                                          .where(_RUNS.c.workflow_id == workflow_id, _RUNS.c.order_key.in_(chunk),
                                                 _RUNS.c.created_at >= since)
                                          .group_by(_RUNS.c.order_key))
                counts.update({key: count for key, count in rows})
        return counts

    def get_workflow(self, name: str) -> WorkflowRecord:
        """The workflow `name`; raises `WorkflowNotFound`."""
        with read_session(self.engine) as session:
            row = session.scalars(select(Workflow).where(Workflow.name == name)).one_or_none()
            if row is None:
                raise WorkflowNotFound(name)
            return _workflow(row)

    def list_workflows(self, enabled: bool | None = None) -> builtins.list[WorkflowRecord]:
        """All workflows by name, or only the enabled (or disabled) ones."""
        stmt = select(Workflow).order_by(Workflow.name)
        if enabled is not None:
            stmt = stmt.where(Workflow.enabled == enabled)
        with read_session(self.engine) as session:
            return [_workflow(row) for row in session.scalars(stmt)]

    # -- polling -----------------------------------------------------------------------------------

    def get_cursor(self, workflow_id: int, trigger_key: str, realm_id: str) -> CursorRecord | None:
        """The stored cursor of this trigger on this company, or None before its first recorded poll."""
        with read_session(self.engine) as session:
            row = session.scalars(_cursor_query(workflow_id, trigger_key, realm_id)).one_or_none()
            return None if row is None else _cursor(row)

    def record_poll(
        self,
        workflow_id: int,
        trigger_key: str,
        connection: str,
        realm_id: str,
        events: Sequence[Any],
        new_cursor_json: str,
        *,
        now: datetime | None = None,
        next_poll_at: datetime | None = None,
    ) -> builtins.list[int]:
        """Store a poll's outcome in ONE transaction: the events not stored before, one queued run for each,
        and the new cursor. Returns the new runs' ids, in the order of `events`.

        `events` are `TriggerEvent`s or mappings with the same fields (`trigger_key` defaults to this
        trigger's). An event whose (workflow, realm, dedup_key) is already stored is skipped, so an
        overlapping poll fires nothing twice. If anything fails, nothing of the poll is kept and the old
        cursor stands: the next poll covers the same ground again.
        """
        outcome = PollOutcome(workflow_id, trigger_key, events, new_cursor_json, next_poll_at)
        return self.record_polls(connection, realm_id, [outcome], now=now)[workflow_id]

    def record_polls(
        self, connection: str, realm_id: str, outcomes: Sequence[PollOutcome], *, now: datetime | None = None,
        on_runs: RunsHook | None = None,
    ) -> dict[int, builtins.list[int]]:
        """Store one shared poll of a company for several workflows in ONE transaction (see `record_poll`):
        every workflow's new events and runs and its moved cursor, or nothing at all. Returns each workflow's
        new run ids.

        `on_runs(db, run_ids)`, when given and the poll made new runs, is called inside that transaction with
        its SQLAlchemy connection (a task queue enqueues the runs' jobs there); if it raises, nothing is kept."""
        now = now or utcnow()
        prepared = [(outcome, self._event_rows(outcome, realm_id, now)) for outcome in outcomes]
        result: dict[int, builtins.list[int]] = {}
        with write_session(self.engine) as session:
            for outcome, rows in prepared:
                result[outcome.workflow_id] = self._record_one(session, outcome, rows, connection, realm_id, now)
            new_runs = [run_id for run_ids in result.values() for run_id in run_ids]
            if on_runs is not None and new_runs:
                on_runs(session.connection(), new_runs)
        return result

    @staticmethod
    def _event_rows(outcome: PollOutcome, realm_id: str, now: datetime) -> dict[str, dict[str, Any]]:
        json.loads(outcome.cursor_json)  # a cursor that cannot be read back must never be stored
        rows: dict[str, dict[str, Any]] = {}
        for event in outcome.events:
            dedup_key = _field(event, "dedup_key")
            if not dedup_key:
                raise ValueError(f"event without a dedup_key: {event!r}")
            if dedup_key in rows:
                continue
            sync_token = _field(event, "sync_token")
            rows[dedup_key] = {
                "workflow_id": outcome.workflow_id,
                "realm_id": realm_id,
                "trigger_key": _field(event, "trigger_key") or outcome.trigger_key,
                "entity": _field(event, "entity"),
                "record_id": str(_field(event, "record_id")),
                "sync_token": None if sync_token is None else str(sync_token),
                "dedup_key": dedup_key,
                "record": _field(event, "record", {}),
                "changed_at": _field(event, "changed_at"),
                "seen_at": now,
            }
        return rows

    @staticmethod
    def _record_one(session: Session, outcome: PollOutcome, rows: dict[str, dict[str, Any]], connection: str,
                    realm_id: str, now: datetime) -> builtins.list[int]:
        workflow_id, trigger_key = outcome.workflow_id, outcome.trigger_key
        cursor = session.scalars(_cursor_query(workflow_id, trigger_key, realm_id).with_for_update()).one_or_none()
        inserted: dict[str, int] = {}
        if rows:
            insert = _insert_for(session)
            table = Event.__table__
            # One statement for any number of rows (SQLAlchemy sends them in batches): compiled once and cached,
            # where a multi-row VALUES was compiled anew for every poll, half of the poll's time in the database.
            stmt = (
                insert(table)
                .on_conflict_do_nothing(index_elements=["workflow_id", "realm_id", "dedup_key"])
                .returning(table.c.id, table.c.dedup_key)
            )
            inserted.update({key: event_id for event_id, key in session.execute(stmt, list(rows.values()))})
        new_runs = [
            {
                "uid": str(uuid.uuid4()),
                "workflow_id": workflow_id,
                "event_id": inserted[key],
                "status": RUN_QUEUED,
                "attempt": 0,
                "created_at": now,
                "order_key": order_key_for(realm_id, row["entity"], row["record_id"]),
                "lane": connection,
            }
            for key, row in rows.items()
            if key in inserted
        ]
        run_ids: builtins.list[int] = []
        if new_runs:
            table = Run.__table__
            # The new ids in any order (sorted below): asking for the rows' order made SQLAlchemy insert the runs
            # one statement each on SQLite.
            run_ids = sorted(session.scalars(table.insert().returning(table.c.id), new_runs))
        if cursor is None:
            cursor = TriggerCursor(
                workflow_id=workflow_id, realm_id=realm_id, trigger_key=trigger_key, connection=connection
            )
            session.add(cursor)
        cursor.connection = connection
        cursor.cursor = outcome.cursor_json
        cursor.last_poll_at = now
        cursor.next_poll_at = outcome.next_poll_at
        cursor.last_error = None
        cursor.updated_at = now
        return run_ids

    def record_event(
        self,
        workflow_id: int,
        *,
        kind: str,
        dedup_key: str,
        payload: Any,
        lane: str | None = None,
        order_key: str | None = None,
        now: datetime | None = None,
        on_runs: RunsHook | None = None,
    ) -> int | None:
        """Store one event of a trigger source other than a QuickBooks poll (a webhook delivery, a schedule's fire
        time, a manual run) and its queued run, in ONE transaction: "accepted" means stored. Returns the new run's
        id, or None when this workflow already has an event with `dedup_key` (a retried delivery, a fire time
        another worker fired): nothing is stored twice.

        `payload` is what the run's templates see as `trigger`. `lane`: the connection whose limits the run uses
        (the workflow's). `order_key`: runs with the same one run one at a time, in order (None: freely).
        `on_runs(db, [run_id])` is called inside the transaction when a run was made (see `record_polls`)."""
        if not dedup_key:
            raise ValueError("an event needs a dedup_key")
        if len(dedup_key) > 255:  # the column's size; a long delivery id is kept as its digest
            dedup_key = "sha256:" + hashlib.sha256(dedup_key.encode()).hexdigest()
        now = now or utcnow()
        row = {"workflow_id": workflow_id, "realm_id": "", "trigger_key": kind, "entity": "", "record_id": "",
               "sync_token": None, "dedup_key": dedup_key, "record": payload, "changed_at": now, "seen_at": now}
        with write_session(self.engine) as session:
            table = Event.__table__
            stmt = (_insert_for(session)(table).values(row)
                    .on_conflict_do_nothing(index_elements=["workflow_id", "realm_id", "dedup_key"])
                    .returning(table.c.id))
            event_id = session.scalars(stmt).one_or_none()
            if event_id is None:
                return None
            runs = Run.__table__
            run_id = session.scalars(runs.insert().returning(runs.c.id), [{
                "uid": str(uuid.uuid4()), "workflow_id": workflow_id, "event_id": event_id, "status": RUN_QUEUED,
                "attempt": 0, "created_at": now, "order_key": order_key, "lane": lane}]).one()
            if on_runs is not None:
                on_runs(session.connection(), [run_id])
        return run_id

    def record_schedule(
        self, workflow_id: int, *, events: Sequence[tuple[str, Any]], reached: datetime, next_at: datetime | None,
        lane: str | None = None, now: datetime | None = None, on_runs: RunsHook | None = None,
    ) -> builtins.list[int]:
        """Store a schedule's due fire times in ONE transaction: each `(dedup_key, payload)` event not stored
        before with its queued run, and the schedule's cursor (trigger_cursors, realm "" and trigger key
        "schedule": the time it has fired up to, `reached`, never moved back, and its next fire time). Several
        workers firing the same time store it once. Runs of one schedule run one at a time, oldest first."""
        now = now or utcnow()
        cursor_json = json.dumps({"reached": reached.astimezone(UTC).isoformat()})
        with write_session(self.engine) as session:
            insert = _insert_for(session)
            session.execute(insert(TriggerCursor.__table__).values(
                workflow_id=workflow_id, realm_id="", trigger_key="schedule", connection=lane or "",
                cursor=cursor_json, last_poll_at=now, next_poll_at=next_at, updated_at=now,
            ).on_conflict_do_nothing(index_elements=["workflow_id", "realm_id", "trigger_key"]))
            cursor = session.scalars(_cursor_query(workflow_id, "schedule", "").with_for_update()).one()
            if datetime.fromisoformat(json.loads(cursor.cursor)["reached"]) < reached:
                cursor.cursor, cursor.next_poll_at = cursor_json, next_at
            cursor.connection, cursor.last_poll_at, cursor.updated_at = lane or "", now, now
            run_ids: builtins.list[int] = []
            for dedup_key, payload in events:
                stmt = (insert(Event.__table__).values(
                    workflow_id=workflow_id, realm_id="", trigger_key="schedule", entity="", record_id="",
                    sync_token=None, dedup_key=dedup_key, record=payload, changed_at=now, seen_at=now)
                    .on_conflict_do_nothing(index_elements=["workflow_id", "realm_id", "dedup_key"])
                    .returning(Event.__table__.c.id))
                event_id = session.scalars(stmt).one_or_none()
                if event_id is not None:
                    run_ids.append(session.scalars(insert(_RUNS).returning(_RUNS.c.id), [{
                        "uid": str(uuid.uuid4()), "workflow_id": workflow_id, "event_id": event_id,
                        "status": RUN_QUEUED, "attempt": 0, "created_at": now, "order_key": f"schedule:{workflow_id}",
                        "lane": lane}]).one())
            if on_runs is not None and run_ids:
                on_runs(session.connection(), run_ids)
        return run_ids

    def record_poll_error(
        self,
        workflow_id: int,
        trigger_key: str,
        realm_id: str,
        error: str,
        *,
        now: datetime | None = None,
        next_poll_at: datetime | None = None,
    ) -> bool:
        """Note a failed poll on the trigger's cursor (which does not move). False if it has no cursor yet."""
        now = now or utcnow()
        with write_session(self.engine) as session:
            row = session.scalars(_cursor_query(workflow_id, trigger_key, realm_id).with_for_update()).one_or_none()
            if row is None:
                return False
            row.last_error = error
            row.last_poll_at = now
            row.next_poll_at = next_poll_at
            row.updated_at = now
            return True

    # -- runs: the seam ----------------------------------------------------------------------------

    def claim_next_run(self, now: datetime | None = None) -> RunRecord | None:
        """Take the oldest due run (queued, or waiting_retry or waiting whose `next_attempt_at` has come, and not
        behind an unfinished earlier run of its workflow for the same record) and mark it running, attempt + 1.
        Concurrent claimers never get the same run. None when nothing is due. (`claim_runs` takes several.)"""
        claimed = self.claim_runs({}, others=1, now=now)
        return claimed[0] if claimed else None

    def claim_runs(self, rooms: Mapping[str | None, int], *, others: int = 0, now: datetime | None = None
                   ) -> builtins.list[RunRecord]:
        """Claim due runs for several lanes at once (the embedded engine runs them concurrently): at most
        `rooms[lane]` of each lane (a lane is the trigger's connection, i.e. the company whose limits the run
        uses; None: runs without one), and at most `others` of lanes not named. Oldest first within a lane.

        A run is due when queued, or waiting_retry or waiting (a `wait` step) with `next_attempt_at` come, and
        no earlier run of its workflow for the same record (`order_key`) is unfinished: runs for one record keep
        their events' order. Each claimed run is marked running, attempt + 1, in one transaction; concurrent
        claimers never get the same run."""
        now = now or utcnow()
        with write_connection(self.engine) as connection:
            chosen: builtins.list[int] = []
            for lane, room in rooms.items():
                if room > 0:
                    chosen += self._due_ids(connection, now, room, lane_is=lane)
            if others > 0:
                chosen += self._due_ids(connection, now, others, lane_not_in=[k for k in rooms if k is not None])
            if not chosen:
                return []
            claimed = connection.execute(_CLAIM_MANY, {"run_ids": chosen, "now": now}).scalars().all()
            runs = _load_runs(connection, sorted(claimed))
        for run in runs:
            self._remember_uid(run.id, run.uid)
        return runs

    @staticmethod
    def _due_ids(connection: Connection, now: datetime, limit: int, *, lane_is: str | None = None,
                 lane_not_in: Sequence[str] | None = None) -> builtins.list[int]:
        runs = _RUNS
        if lane_not_in is not None:
            lane = or_(runs.c.lane.is_(None), runs.c.lane.not_in(lane_not_in)) if lane_not_in else true()
        else:
            lane = runs.c.lane.is_(None) if lane_is is None else runs.c.lane == lane_is
        ids: builtins.list[int] = []
        for due in (runs.c.status == RUN_QUEUED,
                    runs.c.status.in_(RUN_DELAYED) & (runs.c.next_attempt_at <= now)):
            stmt = (select(runs.c.id).where(due, lane, _NOT_BEHIND_EARLIER)
                    .order_by(runs.c.id).limit(limit))
            if connection.dialect.name == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True, of=runs)
            ids += connection.execute(stmt).scalars().all()
        return sorted(ids)[:limit]

    def requeue_running(self) -> int:
        """Put runs left "running" back in the queue (their attempt not counted): at the start of the one
        embedded engine on a database, those are runs a crash or a stop interrupted. They resume with the
        same request ids. Returns how many."""
        with write_connection(self.engine) as connection:
            result = connection.execute(
                update(_RUNS).where(_RUNS.c.status == RUN_RUNNING)
                .values(status=RUN_QUEUED, attempt=_UNCOUNT_ATTEMPT,
                        next_attempt_at=None))
            return result.rowcount or 0

    def release_run(self, run_id: int) -> None:
        """Give a claimed run back to the queue unstarted or interrupted (a stop): queued again, this attempt not
        counted; finished steps stay recorded, the rest resumes with the same request ids."""
        with write_connection(self.engine) as connection:
            connection.execute(update(_RUNS).where(_RUNS.c.id == run_id, _RUNS.c.status == RUN_RUNNING)
                               .values(status=RUN_QUEUED, attempt=_UNCOUNT_ATTEMPT, next_attempt_at=None))

    def claim_run(self, run_id: int, now: datetime | None = None) -> RunRecord | None:
        """`claim_next_run` for one given run (a task queue delivered its id): mark it running, attempt + 1, if it
        is queued, or waiting_retry or waiting with `next_attempt_at` come, and no earlier run of its workflow for
        the same record is unfinished. None if it is not claimable (already claimed, finished, not due yet, or behind an
        earlier run); one UPDATE decides, so concurrent claimers never both get it."""
        now = now or utcnow()
        with write_connection(self.engine) as connection:
            claimed = connection.execute(_CLAIM_ONE, {"run_id": run_id, "now": now}).scalar()
            if claimed is None:
                return None
            run = _load_run(connection, run_id, detail=True)
        self._remember_uid(run.id, run.uid)
        return run

    def finish_run(
        self,
        run_id: int,
        status: str,
        error: str | None = None,
        next_attempt_at: datetime | None = None,
        *,
        now: datetime | None = None,
        steps: Sequence[StepOutcome] = (),
    ) -> RunRecord:
        """Record a run's outcome: succeeded, failed, cancelled; waiting_retry or waiting (need `next_attempt_at`);
        or queued again (`qbflow runs retry`). `steps`: outcomes not recorded yet, stored in the same
        transaction."""
        if status not in RUN_STATUSES or status == RUN_RUNNING:
            raise ValueError(f"a run cannot be finished as {status!r}")
        if status in RUN_DELAYED and next_attempt_at is None:
            raise ValueError(f"{status} needs next_attempt_at")
        now = now or utcnow()
        json.dumps([outcome.output for outcome in steps])
        with write_connection(self.engine) as connection:
            if steps:
                self._write_outcomes(connection, self._uid(connection, run_id), run_id, steps, now)
            changed = connection.execute(_FINISH_RUN, {
                "run_id": run_id, "status": status, "error": error,
                "next_attempt_at": next_attempt_at if status in RUN_DELAYED else None,
                "finished_at": now if status in _FINISHED_RUN else None})
            if changed.rowcount == 0:
                raise RunNotFound(run_id)
            return _load_run(connection, run_id, detail=False)

    def retry(self, run_id: int) -> RunRecord:
        """Queue a failed, waiting or cancelled run again (`qbflow runs retry`).

        QBO answers a repeated requestid with its first answer, so re-sending a refused step under its old
        request id would only repeat the refusal. The run gets a new `uid` (new request ids for the steps
        still to do) unless one of them may already have reached QuickBooks (left "sent", or failed with
        a transient error): then the old ids stay, so QBO replays instead of creating twice.
        """
        with write_session(self.engine) as session:
            row = self._locked_run(session, run_id)
            if row.status not in (RUN_FAILED, RUN_WAITING_RETRY, RUN_CANCELLED):
                raise ValueError(f"run {run_id} is {row.status}; only failed, waiting_retry or cancelled runs "
                                 "can be retried")
            steps = session.scalars(select(StepResult).where(StepResult.run_id == run_id)).all()
            ambiguous = any(step.status == STEP_SENT
                            or (step.status == STEP_FAILED and isinstance(step.error, dict)
                                and step.error.get("transient"))
                            for step in steps)
            if not ambiguous:
                row.uid = str(uuid.uuid4())
                for step in steps:
                    if step.status != STEP_SUCCEEDED:
                        step.request_id = request_id_for(row.uid, step.step_id)
            row.status = RUN_QUEUED
            row.error = None
            row.next_attempt_at = None
            row.finished_at = None
            session.flush()
            return _load_run(session.connection(), row.id, detail=False)

    def wake_run(self, run_id: int, now: datetime | None = None) -> bool:
        """Make one waiting run due now (what it waited for came early, e.g. an approval's decision)."""
        now = now or utcnow()
        with write_session(self.engine) as session:
            result = session.execute(update(Run).where(Run.id == run_id, Run.status.in_(RUN_DELAYED),
                                                       Run.next_attempt_at > now).values(next_attempt_at=now))
            return bool(getattr(result, "rowcount", 0))

    def wake_waiting(self, workflow_ids: Sequence[int], now: datetime | None = None) -> int:
        """Make the waiting runs (waiting_retry) of these workflows due at once, e.g. when their connection
        works again after `qbflow connect`. Returns how many were woken."""
        now = now or utcnow()
        if not workflow_ids:
            return 0
        with write_session(self.engine) as session:
            result = cast("CursorResult[Any]", session.execute(  # an UPDATE's result
                update(Run)
                .where(Run.workflow_id.in_(list(workflow_ids)), Run.status == RUN_WAITING_RETRY,
                       Run.next_attempt_at > now)
                .values(next_attempt_at=now)
            ))
            return result.rowcount or 0

    def unfinished_runs(self) -> builtins.list[RunRecord]:
        """Runs still marked running: at start of a single engine, those a crash left behind, to resume."""
        with self.engine.connect() as connection:
            ids = connection.execute(select(_RUNS.c.id).where(_RUNS.c.status == RUN_RUNNING)
                                     .order_by(_RUNS.c.id)).scalars().all()
            return _load_runs(connection, ids)

    def list_runs(
        self, workflow: str | None = None, status: str | None = None, limit: int = 50
    ) -> builtins.list[RunRecord]:
        """The newest runs first, optionally of one workflow (by name) and/or one status."""
        return self.list_runs_before(workflow, status, limit=limit)

    def get_run(self, run_id: int) -> RunRecord:
        """One run with its event and every step; raises `RunNotFound`."""
        with self.engine.connect() as connection:
            return _load_run(connection, run_id, detail=True)

    # -- the step ledger ---------------------------------------------------------------------------

    def step_request_id(self, run_id: int, step_id: str) -> str:
        """The `requestid` for this step of this run (the same on every retry and after a crash)."""
        with read_session(self.engine) as session:
            uid = session.scalar(select(Run.uid).where(Run.id == run_id))
            if uid is None:
                raise RunNotFound(run_id)
            return request_id_for(uid, step_id)

    def mark_step_sent(
        self, run_id: int, step_id: str, input: Any, *, position: int | None = None, now: datetime | None = None,
        before: Sequence[StepOutcome] = (),
    ) -> StepRecord:
        """Record, BEFORE the request goes out, that the step is being sent with `input`; committed on return.

        Returns the ledger entry, whose `request_id` the request must carry. Calling it again for a retry
        counts another attempt. `position` defaults to the number of steps the run has recorded so far.
        `before`: outcomes of earlier steps not recorded yet, stored in the same transaction.
        """
        json.dumps([input, [outcome.output for outcome in before]])
        now = now or utcnow()
        with write_connection(self.engine) as connection:
            uid = self._uid(connection, run_id)
            self._write_outcomes(connection, uid, run_id, before, now)
            return _write_step(connection, uid, run_id, step_id, position, now,
                               status=STEP_SENT, output=None, error=None, input=input, keep_input=False,
                               add_attempts=1, finished_at=None)

    def finish_step(
        self,
        run_id: int,
        step_id: str,
        output: Any = None,
        error: Any = None,
        status: str = "succeeded",
        *,
        input: Any = None,
        position: int | None = None,
        attempts: int = 0,
        now: datetime | None = None,
    ) -> StepRecord:
        """Record a step's outcome: succeeded (with `output`), failed (with `error`, any JSON) or skipped.

        A step that was never sent (a `log` step, a read, a skipped one) gets its entry here; `input` then
        fills it, and `attempts` adds the tries it took.
        """
        if status not in STEP_STATUSES:
            raise ValueError(f"unknown step status {status!r}")
        json.dumps([output, error, input])
        now = now or utcnow()
        with write_connection(self.engine) as connection:
            return _write_step(connection, self._uid(connection, run_id), run_id, step_id, position, now,
                               status=status, output=output, error=error, input=input, keep_input=input is None,
                               add_attempts=attempts, finished_at=now if status in _FINISHED_STEP else None)

    @staticmethod
    def _write_outcomes(connection: Connection, uid: str, run_id: int, outcomes: Sequence[StepOutcome],
                        now: datetime) -> None:
        # One executemany per statement variant (most runs: one), no rows read back: this is on every run's path.
        batches: dict[bool, builtins.list[dict[str, Any]]] = {}  # keep_input -> rows
        for outcome in outcomes:
            if outcome.status not in STEP_STATUSES:
                raise ValueError(f"unknown step status {outcome.status!r}")
            finished = outcome.finished_at or (now if outcome.status in _FINISHED_STEP else None)
            started = outcome.started_at or finished or now  # flow steps record no start: at most their finish
            if outcome.position is None:  # needs the count of the run's steps: the one-row path
                _write_step(connection, uid, run_id, outcome.step_id, None, started,
                            status=outcome.status, output=outcome.output, error=outcome.error, input=outcome.input,
                            keep_input=outcome.input is None, add_attempts=outcome.attempts, finished_at=finished)
                continue
            batches.setdefault(outcome.input is None, []).append({
                "run_id": run_id, "step_id": outcome.step_id, "position": outcome.position, "status": outcome.status,
                "request_id": request_id_for(uid, outcome.step_id), "input": outcome.input, "output": outcome.output,
                "error": outcome.error, "started_at": started, "attempts": outcome.attempts,
                "finished_at": finished})
        for keep_input, rows in batches.items():
            connection.execute(_step_upsert(connection.dialect.name, keep_input, False, returning=False), rows)

    def _uid(self, connection: Connection, run_id: int) -> str:
        """A run's uid (fixed at creation), remembered: every step write needs it for its request id."""
        uid = self._uids.get(run_id)
        if uid is None:
            uid = connection.execute(select(_RUNS.c.uid).where(_RUNS.c.id == run_id)).scalar()
            if uid is None:
                raise RunNotFound(run_id)
            self._remember_uid(run_id, uid)
        return uid

    def _remember_uid(self, run_id: int, uid: str) -> None:
        if len(self._uids) > 10_000:
            self._uids.clear()
        self._uids[run_id] = uid

    # -- helpers -----------------------------------------------------------------------------------

    @staticmethod
    def _locked_run(session: Session, run_id: int) -> Run:
        row = session.scalars(select(Run).where(Run.id == run_id).with_for_update()).one_or_none()
        if row is None:
            raise RunNotFound(run_id)
        return row

    # -- read-only views -----------------------------------------------------------------------------

    def list_cursors(self) -> builtins.list[CursorRecord]:
        """Every stored trigger cursor (one per workflow, trigger and company), for status displays."""
        stmt = select(TriggerCursor).order_by(TriggerCursor.workflow_id, TriggerCursor.trigger_key,
                                              TriggerCursor.realm_id)
        with read_session(self.engine) as session:
            return [_cursor(row) for row in session.scalars(stmt)]

    def list_runs_before(
        self, workflow: str | None = None, status: str | None = None, *, before_id: int | None = None,
        limit: int = 50,
    ) -> builtins.list[RunRecord]:
        """One page of `list_runs` (newest first): the runs older than `before_id` (all when None), for the
        dashboard's pages. Paging by id stays right while new runs arrive."""
        stmt = _run_select(False, one=False).order_by(_RUNS.c.id.desc()).limit(limit)
        if workflow is not None:
            stmt = stmt.where(_WORKFLOWS.c.name == workflow)
        if status is not None:
            stmt = stmt.where(_RUNS.c.status == status)
        if before_id is not None:
            stmt = stmt.where(_RUNS.c.id < before_id)
        with self.engine.connect() as connection:
            return [_run_record(connection, row, detail=False) for row in connection.execute(stmt)]


_RUNS = Run.__table__
_STEPS = StepResult.__table__
_EVENTS = Event.__table__
_WORKFLOWS = Workflow.__table__


def _run_select(detail: bool, *, one: bool = True) -> Any:
    """Runs with their workflow's name (and with `detail` their event) in one statement; `one`: by id."""
    joined = _RUNS.outerjoin(_WORKFLOWS, _WORKFLOWS.c.id == _RUNS.c.workflow_id)
    columns = [*_RUNS.c, _WORKFLOWS.c.name.label("workflow_name"), _WORKFLOWS.c.updated_at.label("workflow_updated_at")]
    if detail:  # the event in the same statement
        joined = joined.outerjoin(_EVENTS, _EVENTS.c.id == _RUNS.c.event_id)
        columns += [column.label(f"ev_{column.name}") for column in _EVENTS.c]
    stmt = select(*columns).select_from(joined)
    return stmt.where(_RUNS.c.id == bindparam("run_id")) if one else stmt


# Statements on every run's path, built once (building one costs more than running it on SQLite).
_RUN_BRIEF = _run_select(False)
_RUN_DETAIL = _run_select(True)
_RUN_STEPS = (select(_STEPS).where(_STEPS.c.run_id == bindparam("run_id"))
              .order_by(_STEPS.c.position, _STEPS.c.id))
_RUNS_DETAIL = _run_select(True, one=False).where(_RUNS.c.id.in_(bindparam("run_ids", expanding=True)))
_RUNS_STEPS = (select(_STEPS).where(_STEPS.c.run_id.in_(bindparam("run_ids", expanding=True)))
               .order_by(_STEPS.c.run_id, _STEPS.c.position, _STEPS.c.id))
_UNCOUNT_ATTEMPT = case((_RUNS.c.attempt > 0, _RUNS.c.attempt - 1), else_=0)
_UNFINISHED_RUN = (RUN_QUEUED, RUN_RUNNING, *RUN_DELAYED)
_EARLIER = _RUNS.alias("earlier")
# A run is not behind an unfinished earlier run of its workflow for the same record: runs of one record keep
# their events' order, whoever claims them (`claim_runs`, `claim_next_run`, a worker's `claim_run`).
_NOT_BEHIND_EARLIER = or_(
    _RUNS.c.order_key.is_(None),
    ~select(_EARLIER.c.id).where(_EARLIER.c.order_key == _RUNS.c.order_key,
                                 _EARLIER.c.workflow_id == _RUNS.c.workflow_id, _EARLIER.c.id < _RUNS.c.id,
                                 _EARLIER.c.status.in_(_UNFINISHED_RUN)).exists())
_CLAIM_MANY = (
    update(_RUNS)
    .where(_RUNS.c.id.in_(bindparam("run_ids", expanding=True)),
           or_(_RUNS.c.status == RUN_QUEUED,
               _RUNS.c.status.in_(RUN_DELAYED) & (_RUNS.c.next_attempt_at <= bindparam("now"))))
    .values(status=RUN_RUNNING, attempt=_RUNS.c.attempt + 1, started_at=bindparam("now"), finished_at=None,
            next_attempt_at=None)
    .returning(_RUNS.c.id)
)
_CLAIM_ONE = (
    update(_RUNS)
    .where(_RUNS.c.id == bindparam("run_id"),
           or_(_RUNS.c.status == RUN_QUEUED,
               _RUNS.c.status.in_(RUN_DELAYED) & (_RUNS.c.next_attempt_at <= bindparam("now"))),
           _NOT_BEHIND_EARLIER)
    .values(status=RUN_RUNNING, attempt=_RUNS.c.attempt + 1, started_at=bindparam("now"), finished_at=None,
            next_attempt_at=None)
    .returning(_RUNS.c.id)
)
_FINISH_RUN = update(_RUNS).where(_RUNS.c.id == bindparam("run_id")).values(
    status=bindparam("status"), error=bindparam("error"), next_attempt_at=bindparam("next_attempt_at"),
    finished_at=bindparam("finished_at"))


def _load_run(connection: Connection, run_id: int, *, detail: bool) -> RunRecord:
    """A run read with plain SQL statements (no ORM objects: this is on every run's path)."""
    row = connection.execute(_RUN_DETAIL if detail else _RUN_BRIEF, {"run_id": run_id}).first()
    if row is None:
        raise RunNotFound(run_id)
    return _run_record(connection, row, detail=detail)


def _load_runs(connection: Connection, run_ids: Sequence[int]) -> builtins.list[RunRecord]:
    """Several runs with their events and steps, in the order of `run_ids`, in two statements (a claim's)."""
    rows = {row.id: row for row in connection.execute(_RUNS_DETAIL, {"run_ids": list(run_ids)})}
    steps: dict[int, builtins.list[StepRecord]] = {}
    for step in connection.execute(_RUNS_STEPS, {"run_ids": list(run_ids)}):
        steps.setdefault(step.run_id, []).append(_step(step))
    missing = [run_id for run_id in run_ids if run_id not in rows]
    if missing:
        raise RunNotFound(missing[0])
    return [_run_record(connection, rows[run_id], detail=True, steps=tuple(steps.get(run_id, ())))
            for run_id in run_ids]


def _run_record(connection: Connection, row: Any, *, detail: bool,
                steps: tuple[StepRecord, ...] | None = None) -> RunRecord:
    """A row of `_run_select` as a RunRecord; with `detail`, its event and its steps (`steps` when they were read
    already, else one more statement)."""
    event: EventRecord | None = None
    if detail:
        if row._mapping["ev_id"] is not None:
            event = _event(SimpleNamespace(**{column.name: row._mapping[f"ev_{column.name}"] for column in _EVENTS.c}))
        if steps is None:
            steps = tuple(_step(step) for step in connection.execute(_RUN_STEPS, {"run_id": row.id}))
    return RunRecord(
        id=row.id, uid=row.uid, workflow_id=row.workflow_id, workflow_name=row.workflow_name or "",
        event_id=row.event_id, status=row.status, attempt=row.attempt, created_at=row.created_at,
        started_at=row.started_at, finished_at=row.finished_at, error=row.error,
        next_attempt_at=row.next_attempt_at, event=event, steps=steps or (),
        workflow_updated_at=row.workflow_updated_at,
    )


_STEP_VALUES = ("run_id", "step_id", "position", "status", "request_id", "input", "output", "error", "started_at",
                "finished_at", "attempts")


@functools.lru_cache(maxsize=16)
def _own_write_insert(dialect: str) -> Any:
    table = OwnWrite.__table__
    return _insert_for_dialect(dialect)(table).on_conflict_do_nothing(
        index_elements=["realm_id", "entity", "record_id", "sync_token"])


@functools.lru_cache(maxsize=16)
def _step_upsert(dialect: str, keep_input: bool, keep_position: bool, *, returning: bool = True) -> Any:
    """INSERT ... ON CONFLICT (run_id, step_id) DO UPDATE ... (RETURNING * when `returning`), built once per
    variant."""
    stmt = _insert_for_dialect(dialect)(_STEPS).values({name: bindparam(name) for name in _STEP_VALUES})
    new = stmt.excluded
    stmt = stmt.on_conflict_do_update(index_elements=["run_id", "step_id"], set_={
        "status": new.status,
        "output": new.output,
        "error": new.error,
        "input": _STEPS.c.input if keep_input else new.input,
        "attempts": _STEPS.c.attempts + new.attempts,
        "started_at": func.coalesce(_STEPS.c.started_at, new.started_at),
        "finished_at": new.finished_at,
        "position": _STEPS.c.position if keep_position else new.position,
    })
    return stmt.returning(*_STEPS.c) if returning else stmt


def _write_step(connection: Connection, uid: str, run_id: int, step_id: str, position: int | None,
                now: datetime, *, status: str, output: Any, error: Any, input: Any, keep_input: bool,
                add_attempts: int, finished_at: datetime | None) -> StepRecord:
    """Create or change one step's ledger entry in ONE statement (an upsert returning the row): this runs
    for every step of every run."""
    keep_position = position is None
    if position is None:
        position = connection.execute(
            select(func.count()).select_from(_STEPS).where(_STEPS.c.run_id == run_id)).scalar() or 0
    stmt = _step_upsert(connection.dialect.name, keep_input, keep_position)
    row = connection.execute(stmt, {
        "run_id": run_id, "step_id": step_id, "position": position, "status": status,
        "request_id": request_id_for(uid, step_id), "input": input, "output": output, "error": error,
        "started_at": now, "finished_at": finished_at, "attempts": add_attempts}).one()
    return _step(row)


def _cursor_query(workflow_id: int, trigger_key: str, realm_id: str) -> Any:
    return select(TriggerCursor).where(
        TriggerCursor.workflow_id == workflow_id,
        TriggerCursor.trigger_key == trigger_key,
        TriggerCursor.realm_id == realm_id,
    )


def _workflow(row: Workflow) -> WorkflowRecord:
    return WorkflowRecord(
        id=row.id,
        name=row.name,
        source_path=row.source_path,
        definition=row.definition,
        enabled=row.enabled,
        created_at=row.created_at,
        updated_at=row.updated_at,
        paused_reason=row.paused_reason,
    )


def _cursor(row: TriggerCursor) -> CursorRecord:
    return CursorRecord(
        workflow_id=row.workflow_id,
        connection=row.connection,
        realm_id=row.realm_id,
        trigger_key=row.trigger_key,
        cursor=row.cursor,
        last_poll_at=row.last_poll_at,
        next_poll_at=row.next_poll_at,
        last_error=row.last_error,
    )


def _event(row: Event | SimpleNamespace) -> EventRecord:
    return EventRecord(
        id=row.id,
        workflow_id=row.workflow_id,
        realm_id=row.realm_id,
        trigger_key=row.trigger_key,
        entity=row.entity,
        record_id=row.record_id,
        sync_token=row.sync_token,
        dedup_key=row.dedup_key,
        record=row.record,
        changed_at=row.changed_at,
        seen_at=row.seen_at,
    )


def _step(row: StepResult | Row[Any]) -> StepRecord:
    return StepRecord(
        run_id=row.run_id,
        step_id=row.step_id,
        position=row.position,
        status=row.status,
        request_id=row.request_id,
        input=row.input,
        output=row.output,
        error=row.error,
        started_at=row.started_at,
        finished_at=row.finished_at,
        attempts=row.attempts,
    )
