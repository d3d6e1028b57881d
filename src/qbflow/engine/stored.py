"""What the CLI, the HTTP API and the dashboard do with stored workflows and runs, written once.

    workflow, verb = store_workflow_text(runs, text, connections=names)   # `qbflow workflow add`, POST /api/workflows
    previous = retry_run(runs, run_id)                                     # `qbflow runs retry`, POST .../retry
    rows = workflow_overviews(runs)                                        # last run and next poll per workflow
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from qbflow.engine.workflow import (
    TriggerSpec,
    Workflow,
    WorkflowInvalid,
    WorkflowProblem,
    load_workflow_text,
    trigger_kind,
)
from qbflow.errors import QBFlowError
from qbflow.store.hooks import HookRecord, HookStore
from qbflow.store.models import RUN_CANCELLED, RUN_FAILED, RUN_QUEUED, RUN_SUCCEEDED, RUN_WAITING_RETRY
from qbflow.store.runs import CursorRecord, RunRecord, RunStore, WorkflowNotFound, WorkflowRecord

__all__ = [
    "RETRYABLE",
    "RetryRefused",
    "WorkflowOverview",
    "ensure_hook",
    "hook_url",
    "retry_run",
    "store_workflow",
    "store_workflow_text",
    "stored_definition",
    "workflow_overviews",
]

RETRYABLE = (RUN_FAILED, RUN_WAITING_RETRY, RUN_CANCELLED)


class RetryRefused(QBFlowError):
    """A run that cannot be retried (it succeeded, or is running); the message says why."""

    def __init__(self, run: RunRecord) -> None:
        why = "it succeeded" if run.status == RUN_SUCCEEDED else f"it is {run.status}"
        super().__init__(f"run {run.id} cannot be retried: {why} (only failed, waiting_retry or cancelled runs "
                         f"can be)")
        self.run = run


def stored_definition(workflow: Workflow) -> dict[str, Any]:
    """A workflow as the store keeps it: `Workflow.model_validate(definition)` gives the same workflow back."""
    definition = workflow.model_dump(mode="json")
    # JSON would write the interval as "PT30S", which the workflow format does not read back: seconds do.
    if isinstance(workflow.trigger, TriggerSpec):
        definition["trigger"]["poll_interval"] = workflow.trigger.poll_interval.total_seconds()
    return definition


def store_workflow(runs: RunStore, workflow: Workflow, source_path: str | None, *,
                   enabled: bool = True) -> tuple[WorkflowRecord, str]:
    """Store a valid workflow (replacing one of the same name): (record, "added" | "updated"). A name no
    database can hold (a NUL character, which PostgreSQL refuses) raises `WorkflowInvalid`."""
    if "\x00" in workflow.name:
        raise WorkflowInvalid(workflow.source or "<workflow>", [WorkflowProblem(
            workflow.source or "<workflow>", None, "name", "a workflow name cannot contain a NUL character (\\0)")])
    try:
        runs.get_workflow(workflow.name)
        verb = "updated"
    except WorkflowNotFound:
        verb = "added"
    return runs.upsert_workflow(workflow.name, source_path, stored_definition(workflow), enabled=enabled), verb


def ensure_hook(hooks: HookStore, record: WorkflowRecord) -> tuple[HookRecord, str | None] | None:
    """A webhook workflow's inbound URL: (hook, its secret when made just now, to show once; else None). The hook
    and secret stay when the workflow is updated. None for other trigger kinds."""
    definition = record.definition if isinstance(record.definition, dict) else {}
    if trigger_kind(definition.get("trigger") or {}) != "webhook":
        return None
    return hooks.ensure(record.id)


def hook_url(base: str, hook: HookRecord) -> str:
    """The URL senders post to, on the server at `base` (its public URL)."""
    return base.rstrip("/") + hook.path


def store_workflow_text(runs: RunStore, text: str, *, connections: Collection[str] | None,
                        source: str = "<workflow>", source_path: str | None = None,
                        enabled: bool = True) -> tuple[WorkflowRecord, str]:
    """Validate YAML text (`WorkflowInvalid` lists every problem) and store it like `store_workflow`."""
    workflow = load_workflow_text(text, source=source, connections=connections)
    return store_workflow(runs, workflow, source_path, enabled=enabled)


def retry_run(runs: RunStore, run_id: int) -> RunRecord:
    """Queue a failed, waiting or cancelled run again (`qbflow runs retry`); returns the run as it was before.

    A run already queued is left as it is (returned with status "queued"). Raises `RunNotFound`, and
    `RetryRefused` for a run that succeeded or is running."""
    run = runs.get_run(run_id)
    if run.status == RUN_QUEUED:
        return run
    if run.status not in RETRYABLE:
        raise RetryRefused(run)
    try:
        runs.retry(run.id)
    except ValueError:  # it changed meanwhile (the engine claimed or finished it)
        raise RetryRefused(runs.get_run(run_id)) from None
    return run


@dataclass(frozen=True)
class WorkflowOverview:
    """A stored workflow with its newest run and its trigger's cursors (one per company polled)."""

    record: WorkflowRecord
    last_run: RunRecord | None
    cursors: tuple[CursorRecord, ...]

    @property
    def trigger(self) -> dict[str, Any]:
        definition = self.record.definition if isinstance(self.record.definition, dict) else {}
        trigger = definition.get("trigger")
        return trigger if isinstance(trigger, dict) else {}

    @property
    def next_poll_at(self) -> datetime | None:
        """When the trigger is polled next: None when disabled; now when it never was or is due."""
        if not self.record.enabled:
            return None
        now = datetime.now(UTC)
        moments = [_utc(c.next_poll_at) or now for c in self.cursors]
        return min(moments) if moments else now

    @property
    def last_poll_at(self) -> datetime | None:
        moments = [moment for c in self.cursors if (moment := _utc(c.last_poll_at)) is not None]
        return max(moments) if moments else None

    @property
    def last_error(self) -> str | None:
        return next((c.last_error for c in self.cursors if c.last_error), None)


def workflow_overviews(runs: RunStore, names: Collection[str] | None = None) -> list[WorkflowOverview]:
    """Every stored workflow (or those named), by name, with its newest run and its cursors."""
    cursors: dict[int, list[CursorRecord]] = {}
    for cursor in runs.list_cursors():
        cursors.setdefault(cursor.workflow_id, []).append(cursor)
    return [WorkflowOverview(record, next(iter(runs.list_runs(workflow=record.name, limit=1)), None),
                             tuple(cursors.get(record.id, ())))
            for record in runs.list_workflows() if names is None or record.name in names]


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
