"""The `schedule` trigger source: each fire time of a workflow's cron expression (in its time zone) or interval is
one event, keyed by (workflow, fire time), so it runs once however many engines or workers see it due.

    trigger: {kind: schedule, cron: "0 8 * * MON", timezone: America/New_York, catch_up: latest}
    trigger: {kind: schedule, every: 15m}

The engine (`Engine.cycle`, each tick of `run_forever`) and the workers (the periodic `qbflow.schedule` task) call
`collect_schedules`: for every enabled schedule workflow, the fire times due since the time it last fired up to
(its cursor: `trigger_cursors` row with realm "" and trigger key "schedule") are stored with their runs and the
moved cursor in one transaction (`RunStore.record_schedule`). A new schedule starts from now (nothing before it
fires). Fire times that went by unseen (qbflow stopped, the workflow off) follow `catch_up`:

    latest  the latest of them runs, once (the default);
    all     each of them runs, oldest first; at most the MAX_CATCH_UP latest (older ones are skipped);
    none    none of them runs; a fire time seen within ON_TIME of it is on time, not missed, and runs.

A run's `trigger` is {"fire_time": UTC ISO time, "scheduled_for": the same in the schedule's time zone,
"timezone": its name}.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from qbflow.engine.sources import register_source
from qbflow.engine.workflow import ScheduleTrigger, Workflow, trigger_kind
from qbflow.store.runs import RunsHook, RunStore, WorkflowRecord

__all__ = ["MAX_CATCH_UP", "ON_TIME", "SCHEDULES", "ScheduleSource", "collect_schedules", "due_fires",
           "fire_payload"]

log = logging.getLogger("qbflow.engine")

MAX_CATCH_UP = 100
ON_TIME = timedelta(minutes=2)  # a worker's tick, a busy event loop: late, but not missed


def fire_payload(spec: ScheduleTrigger, fire: datetime) -> dict[str, Any]:
    """What a run started by this fire time sees as `trigger`."""
    return {"fire_time": fire.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "scheduled_for": spec.timetable().local(fire).isoformat(), "timezone": spec.timezone}


def due_fires(spec: ScheduleTrigger, reached: datetime | None, now: datetime) -> list[datetime]:
    """The fire times to store at `now` for a schedule that has fired up to `reached` (None: never; it starts
    from now), `catch_up` applied."""
    if reached is None or now <= reached:
        return []
    table = spec.timetable()
    if spec.catch_up == "all":
        fires = table.between(reached, now, limit=MAX_CATCH_UP + 1)
        if len(fires) > MAX_CATCH_UP:
            log.warning("schedule caught up on its %d latest fire times only; older ones are skipped", MAX_CATCH_UP)
            fires = fires[1:]
        return fires
    last = table.last_at_or_before(now)
    if last is None or last <= reached:
        return []
    if spec.catch_up == "none" and now - last > ON_TIME:
        return []
    return [last]


def _reached(cursor_json: str) -> datetime:
    return datetime.fromisoformat(json.loads(cursor_json)["reached"])


class ScheduleSource:
    """Stores due fire times as events (a `DueSource`). Remembers each workflow's next fire time, so a tick reads
    no cursor before one is due."""

    kind = "schedule"

    def __init__(self) -> None:
        self._parsed: dict[tuple[str, int, datetime], Workflow] = {}
        self._next: dict[tuple[str, int, datetime], datetime] = {}

    def sample(self, workflow: Workflow) -> dict[str, Any]:
        """The trigger of the schedule's next fire time."""
        assert isinstance(workflow.trigger, ScheduleTrigger)
        now = datetime.now(UTC)
        return fire_payload(workflow.trigger, workflow.trigger.timetable().next_after(now))

    def workflows(self, runs: RunStore, records: Sequence[WorkflowRecord] | None = None
                  ) -> list[tuple[WorkflowRecord, Workflow]]:
        """The enabled schedule workflows (parsed once per stored version)."""
        found = []
        for record in records if records is not None else runs.list_workflows(enabled=True):
            if not record.enabled or trigger_kind(record.definition.get("trigger") or {}) != self.kind:
                continue
            key = self._key(runs, record)
            if key not in self._parsed:
                try:
                    self._parsed[key] = Workflow.model_validate(record.definition)
                except ValueError as error:  # stored by an older qbflow, say: one bad workflow stops no other
                    log.warning("schedule of workflow %r cannot be read, so it does not fire: %s", record.name, error)
                    continue
            found.append((record, self._parsed[key]))
        return found

    async def collect(self, runs: RunStore, workflows: Sequence[tuple[WorkflowRecord, Workflow]], now: datetime,
                      *, on_runs: RunsHook | None = None) -> list[int]:
        """Store every fire time due by `now` for these schedule workflows; the new runs' ids."""
        return self.collect_now(runs, workflows, now, on_runs=on_runs)

    def collect_now(self, runs: RunStore, workflows: Sequence[tuple[WorkflowRecord, Workflow]], now: datetime,
                    *, on_runs: RunsHook | None = None) -> list[int]:
        """`collect`, for callers without an event loop."""
        created: list[int] = []
        for record, workflow in workflows:
            key = self._key(runs, record)
            if key in self._next and now < self._next[key]:
                continue
            spec = workflow.trigger
            assert isinstance(spec, ScheduleTrigger)
            cursor = runs.get_cursor(record.id, "schedule", "")
            reached = _reached(cursor.cursor) if cursor is not None else None
            fires = due_fires(spec, reached, now)
            next_at = spec.timetable().next_after(now)
            if fires or cursor is None:
                created += runs.record_schedule(
                    record.id, events=[(f"fire:{f.isoformat()}", fire_payload(spec, f)) for f in fires],
                    reached=now, next_at=next_at, lane=workflow.connection, now=now, on_runs=on_runs)
                if fires:
                    log.info("schedule %r fired for %s", record.name, ", ".join(f.isoformat() for f in fires))
            self._next[key] = next_at
        if len(self._next) > 4 * len(workflows) + 64:  # forget old versions of workflows
            keep = {self._key(runs, r) for r, _ in workflows}
            self._next = {k: v for k, v in self._next.items() if k in keep}
            self._parsed = {k: v for k, v in self._parsed.items() if k in keep}
        return created

    def next_due(self, runs: RunStore, workflows: Sequence[tuple[WorkflowRecord, Workflow]],
                 now: datetime) -> datetime | None:
        """The earliest next fire time of these workflows (None: none)."""
        times = []
        for record, workflow in workflows:
            known = self._next.get(self._key(runs, record))
            if known is None and isinstance(workflow.trigger, ScheduleTrigger):
                known = workflow.trigger.timetable().next_after(now)
            if known is not None:
                times.append(known)
        return min(times, default=None)

    @staticmethod
    def _key(runs: RunStore, record: WorkflowRecord) -> tuple[str, int, datetime]:
        return str(runs.engine.url), record.id, record.updated_at


SCHEDULES = ScheduleSource()
register_source(SCHEDULES)


def collect_schedules(runs: RunStore, now: datetime, *, on_runs: RunsHook | None = None,
                      records: Sequence[WorkflowRecord] | None = None, source: ScheduleSource | None = None
                      ) -> list[int]:
    """Store the fire times due by `now` of every enabled schedule workflow (`records`: the enabled workflows,
    if the caller has them); the new runs' ids. The engine and the workers call it on each tick, each with a
    `source` of its own (default: this process's)."""
    source = source or SCHEDULES
    return source.collect_now(runs, source.workflows(runs, records), now, on_runs=on_runs)
