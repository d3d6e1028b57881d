"""What the dashboard's workflow and run pages show, as plain data for their templates.

    workflow = stored_workflow(record.definition)      # None if it no longer reads
    steps, on_error = workflow_tree(workflow)          # each step with its nested lists, labelled
    rows = trigger_rows(workflow, now=now)             # the trigger's kind and details
    steps, on_error = run_tree(run, workflow)          # a run's ledger nested by its paths
    waits = waiting_for(run, approvals)                # what a waiting run waits for

A ledger path (`docs/workflows.md`, "Ledger paths") is `<id>`, `<parent path>.<id>` in a branch (`size.tell_boss`),
`<loop path>[<index>].<id>` in an iteration (`each_line[3].make_item`), and `on_error.<id>`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from qbflow.engine.workflow import (
    DEFAULT_MAX_ITEMS,
    GENERIC_STEPS,
    ManualTrigger,
    ScheduleTrigger,
    Step,
    TriggerSpec,
    WebhookTrigger,
    Workflow,
)
from qbflow.store.approvals import ApprovalNotFound, ApprovalRecord, ApprovalStore
from qbflow.store.models import RUN_WAITING, STEP_PENDING
from qbflow.store.runs import RunRecord, StepRecord

__all__ = ["BranchView", "RunBranch", "RunStep", "StepView", "Waiting", "duration_text", "run_tree", "stored_workflow",
           "trigger_rows", "waiting_for", "workflow_tree"]

ON_ERROR = "on_error"


def duration_text(interval: timedelta) -> str:
    """An interval as the workflow format writes it: "30s", "5m", "1h30m", "3d"."""
    seconds = int(interval.total_seconds())
    parts = [(seconds // 86400, "d"), (seconds % 86400 // 3600, "h"), (seconds % 3600 // 60, "m"), (seconds % 60, "s")]
    return "".join(f"{n}{unit}" for n, unit in parts if n) or "0s"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def stored_workflow(definition: Any) -> Workflow | None:
    """A stored definition as a Workflow; None if it no longer reads (stored by an older qbflow)."""
    try:
        return Workflow.model_validate(definition)
    except (ValidationError, ValueError, TypeError):
        return None


# --- a workflow's tree of steps ----------------------------------------------------------------------------

@dataclass(frozen=True)
class BranchView:
    """One nested list of steps, labelled as the file says: then, else, case "x", default, for each..., notify."""

    label: str
    steps: list[StepView]


@dataclass(frozen=True)
class StepView:
    """One step of a workflow: what it is, its options (templates as written) and its nested lists."""

    id: str
    kind: str  # action, set, if, switch, for_each, wait, approval
    label: str  # the action's key, or the kind
    when: str | None
    details: list[tuple[str, str]]
    input: dict[str, Any] | None  # an action's input or a set's mapping (the page masks secret-looking keys)
    branches: list[BranchView]


def branch_label(step: Step, key: str) -> str:
    """How the page names one of `step.branches()`: "then", "else", 'case "Net 30"', "default", "notify", or
    "for each item as line (concurrency 3)"."""
    if key.startswith("cases."):
        return f"case {json.dumps(key.removeprefix('cases.'), ensure_ascii=False)}"
    if key == "steps":
        return f"for each item as {step.as_}" + (f" (concurrency {step.concurrency})" if step.concurrency > 1 else "")
    return key


def _details(step: Step) -> list[tuple[str, str]]:
    kind = step.kind
    if kind == "action":  # the action's key is the step's label already
        return [("connection", step.connection)] if step.action not in GENERIC_STEPS and step.connection else []
    if kind == "set":
        return [("set", ", ".join(step.set_ or {}))]
    if kind == "if":
        return [("if", step.if_ or "")]
    if kind == "switch":
        return [("switch", step.switch or "")]
    if kind == "for_each":
        found = [("for_each", _text(step.for_each))]
        if step.max_items != DEFAULT_MAX_ITEMS:
            found.append(("max_items", str(step.max_items)))
        return found
    if kind == "wait":
        return [("wait", _text(step.wait))] if step.wait is not None else [("until", step.until or "")]
    if kind == "approval" and step.approval is not None:
        spec = step.approval
        approvers = spec.approvers if isinstance(spec.approvers, str) else ", ".join(spec.approvers)
        return [("message", spec.message), ("approvers", approvers or "anyone with the link"),
                ("timeout", duration_text(spec.timeout)), ("on_timeout", spec.on_timeout)]
    return []


def step_view(step: Step) -> StepView:
    """A step and everything nested in it."""
    data: dict[str, Any] | None = None
    if step.kind == "action" and step.input:
        data = step.input
    elif step.kind == "set":
        data = step.set_
    return StepView(id=step.id, kind=step.kind, label=step.label, when=step.when, details=_details(step), input=data,
                    branches=[BranchView(branch_label(step, key), [step_view(s) for s in steps])
                              for key, steps in step.branches()])


def workflow_tree(workflow: Workflow) -> tuple[list[StepView], list[StepView]]:
    """The workflow's steps and its `on_error` steps, each with its nested lists."""
    return [step_view(s) for s in workflow.steps], [step_view(s) for s in workflow.on_error]


def trigger_rows(workflow: Workflow, *, now: datetime | None = None, next_poll: str = "") -> list[tuple[str, str]]:
    """The trigger's kind and details, as (label, value) rows. A schedule's next fire time is computed from now."""
    trigger = workflow.trigger
    rows: list[tuple[str, str]] = []
    if isinstance(trigger, TriggerSpec):
        rows += [("Kind", "QuickBooks changes (qbo)"), ("Trigger", trigger.key), ("Connection", trigger.connection),
                 ("Poll interval", duration_text(trigger.poll_interval))]
        if trigger.filter:
            rows.append(("Filter", trigger.filter))
        if trigger.since is not None:
            rows.append(("Since", f"{trigger.since.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"))
        if trigger.skip_changes_by != "this_workflow":
            rows.append(("Skips changes by", trigger.skip_changes_by))
        if next_poll:
            rows.append(("Next poll", next_poll))
    elif isinstance(trigger, ScheduleTrigger):
        rows.append(("Kind", "schedule"))
        if trigger.cron is not None:
            rows.append(("Cron", trigger.cron))
        elif trigger.every is not None:
            rows.append(("Every", duration_text(trigger.every)))
        rows += [("Time zone", trigger.timezone), ("Catch up", trigger.catch_up)]
        timetable = trigger.timetable()
        fire = timetable.next_after(now or datetime.now(UTC))
        local = "" if trigger.timezone == "UTC" else f" ({timetable.local(fire):%Y-%m-%d %H:%M %Z})"
        rows.append(("Next fire time", f"{fire.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC{local}"))
    elif isinstance(trigger, WebhookTrigger):
        rows.append(("Kind", "inbound webhook"))
    elif isinstance(trigger, ManualTrigger):
        rows.append(("Kind", "manual (started by hand)"))
    if trigger.polled_connection is None:
        rows.append(("Connection of QuickBooks steps", workflow.connection or "-"))
    return rows


# --- a run's ledger, nested by paths -----------------------------------------------------------------------

_PART = re.compile(r"^(?P<id>[^.\[\]]+)(?:\[(?P<index>\d+)\])?$")


@dataclass
class RunBranch:
    """The executions under one step: a branch (label "then", 'case "x"', "notify"...) or an iteration."""

    label: str
    index: int | None = None  # an iteration's index
    steps: list[RunStep] = field(default_factory=list)


@dataclass
class RunStep:
    """One execution of a step: its ledger entry (None when only its nested steps are recorded) and what ran
    inside it."""

    path: str
    id: str
    kind: str = ""  # the action's key or the step's kind, from the workflow's current definition ("" if gone)
    entry: StepRecord | None = None
    branches: list[RunBranch] = field(default_factory=list)
    _by_key: dict[Any, RunBranch] = field(default_factory=dict, repr=False)

    def branch(self, key: Any, label: str, index: int | None = None) -> RunBranch:
        found = self._by_key.get(key)
        if found is None:
            found = self._by_key[key] = RunBranch(label, index)
            self.branches.append(found)
        return found

    def sort_iterations(self) -> None:
        """Iterations by index (run concurrently, they may be recorded out of order), at every depth."""
        if any(b.index is not None for b in self.branches):
            self.branches.sort(key=lambda b: (b.index is None, b.index or 0))
        for branch in self.branches:
            for step in branch.steps:
                step.sort_iterations()


class _Lookup:
    """What the workflow's definition says about a step id: its kind and the label of the list it sits in."""

    def __init__(self, workflow: Workflow | None) -> None:
        self.steps: dict[str, Step] = {}
        self.parent_label: dict[str, str] = {}
        self.on_error: set[str] = set()
        if workflow is None:
            return
        for step in workflow.walk():
            self.steps[step.id] = step
            for key, children in step.branches():
                for child in children:
                    self.parent_label[child.id] = branch_label(step, key)
        self.on_error = {s.id for s in workflow.on_error}

    def kind(self, step_id: str) -> str:
        step = self.steps.get(step_id)
        return "" if step is None else step.label


def run_tree(run: RunRecord, workflow: Workflow | None) -> tuple[list[RunStep], list[RunStep]]:
    """The run's ledger entries nested by their paths (a loop's iterations under the loop, a branch's steps under
    their step), in the order they ran; and the `on_error` ones apart. `workflow` (the stored definition, if it
    still reads) names each step's kind and each branch."""
    lookup = _Lookup(workflow)
    top: dict[str, RunStep] = {}
    on_error: dict[str, RunStep] = {}
    for entry in run.steps:
        parts = entry.step_id.split(".")
        siblings, prefix = top, ""
        if len(parts) > 1 and parts[0] == ON_ERROR and ON_ERROR not in lookup.steps:
            siblings, prefix, parts = on_error, f"{ON_ERROR}.", parts[1:]
        node: RunStep | None = None
        pending_index: str | None = None
        for number, part in enumerate(parts):
            match = _PART.match(part)
            step_id, index = (match["id"], match["index"]) if match else (part, None)
            if node is not None:
                if pending_index is not None:
                    container = node.branch(("item", pending_index), f"iteration {pending_index}",
                                            int(pending_index))
                else:
                    label = lookup.parent_label.get(step_id, "")
                    container = node.branch(("branch", label), label)
                siblings = {s.id: s for s in container.steps}
                path = f"{prefix}{'.'.join(parts[:number])}{'.' if number else ''}{step_id}"
                found = siblings.get(step_id)
                if found is None:
                    found = RunStep(path=path, id=step_id, kind=lookup.kind(step_id))
                    container.steps.append(found)
            else:
                found = siblings.get(step_id)
                if found is None:
                    found = siblings[step_id] = RunStep(path=prefix + step_id, id=step_id, kind=lookup.kind(step_id))
            node, pending_index = found, index
        if node is not None:
            node.entry = entry
    for step in (*top.values(), *on_error.values()):
        step.sort_iterations()
    return list(top.values()), list(on_error.values())


# --- what a waiting run waits for ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Waiting:
    """A step a waiting run waits on: a `wait` until a time, or an `approval` (its record, if still stored)."""

    path: str
    kind: str  # "wait" or "approval"
    until: datetime | None = None
    approval: ApprovalRecord | None = None


def waiting_for(run: RunRecord, approvals: ApprovalStore | None) -> list[Waiting]:
    """What a run in status "waiting" waits for (empty for any other run)."""
    if run.status != RUN_WAITING:
        return []
    found: list[Waiting] = []
    for entry in run.steps:
        if entry.status != STEP_PENDING or not isinstance(entry.input, dict):
            continue
        if "approval_id" in entry.input:
            record = None
            if approvals is not None:
                try:
                    record = approvals.get(int(entry.input["approval_id"]))
                except (ApprovalNotFound, TypeError, ValueError):
                    record = approvals.for_step(run.id, entry.step_id)
            found.append(Waiting(entry.step_id, "approval", run.next_attempt_at, record))
        elif "until" in entry.input:
            until: datetime | None
            try:
                until = datetime.fromisoformat(str(entry.input["until"]))
            except ValueError:
                until = run.next_attempt_at
            found.append(Waiting(entry.step_id, "wait", until))
    return found
