"""Trigger sources: where a workflow's events come from, one kind each (the trigger's `kind:`).

    qbo       QuickBooks changes, polled per company (engine/scheduler.py polls them, CDC/queries).
    webhook   an inbound POST to qbflow's server (`/hooks/<id>`), signed or with a bearer token.
    schedule  cron expressions with a time zone, or an interval; each fire time is one event.
    manual    `qbflow workflow run`, `POST /api/workflows/{name}/runs`, the dashboard's "Run now".

Every source stores its events first, each with its own de-duplication key (record + SyncToken, delivery id,
fire time, a manual run's id), and a run starts only from a stored event ("accepted" means stored):
`RunStore.record_polls` for QuickBooks polls, `RunStore.record_event` for the others. A source registers
itself in `SOURCES` under its kind.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from qbflow.connector.triggers import trigger as trigger_def
from qbflow.engine.workflow import TriggerSpec, Workflow
from qbflow.store.runs import RunsHook, RunStore, WorkflowRecord

__all__ = ["SOURCES", "DueSource", "TriggerSource", "register_source", "source_for"]


@runtime_checkable
class TriggerSource(Protocol):
    """One kind of trigger: what its runs see as `trigger`, and what a dry run uses instead."""

    kind: str

    def sample(self, workflow: Workflow) -> dict[str, Any]:
        """The `trigger` a dry run (`qbflow workflow test`) sees when no sample payload is given."""
        ...


@runtime_checkable
class DueSource(TriggerSource, Protocol):
    """A source the engine asks on its ticks (schedules): it stores the events that are due by `now`."""

    async def collect(self, runs: RunStore, workflows: Sequence[tuple[WorkflowRecord, Workflow]],
                      now: datetime, *, on_runs: RunsHook | None = None) -> list[int]:
        """Store every event due by `now` for these enabled workflows of this kind; the new runs' ids. `on_runs`:
        called in the transaction that stores new runs (the workers enqueue their jobs there)."""
        ...

    def next_due(self, runs: RunStore, workflows: Sequence[tuple[WorkflowRecord, Workflow]],
                 now: datetime) -> datetime | None:
        """When `collect` next has something to store (None: nothing planned), so the engine can sleep till then."""
        ...


SOURCES: dict[str, TriggerSource] = {}


def register_source(source: TriggerSource) -> TriggerSource:
    """Make a source known under its kind (each source module calls this once)."""
    SOURCES[source.kind] = source
    return source


def source_for(kind: str) -> TriggerSource:
    """The source of a trigger kind (KeyError when none is registered)."""
    if kind not in SOURCES and kind in _BUILT_IN:
        importlib.import_module(_BUILT_IN[kind])  # registers itself
    return SOURCES[kind]


_BUILT_IN = {"schedule": "qbflow.engine.schedule", "manual": "qbflow.engine.manual", "webhook": "qbflow.engine.hooks"}


class QuickBooksSource:
    """`kind: qbo`: QuickBooks changes. The engine's polls collect them (`scheduler.Engine`: one shared poll per
    company, cursors moved in the transaction that stores the events, `RunStore.record_polls`)."""

    kind = "qbo"

    def sample(self, workflow: Workflow) -> dict[str, Any]:
        """The trigger's sample record (`qbflow trigger sample KEY`)."""
        assert isinstance(workflow.trigger, TriggerSpec)
        return trigger_def(workflow.trigger.key).sample_record()


register_source(QuickBooksSource())
