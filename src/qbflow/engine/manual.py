"""The `manual` trigger source: a person starts a run (`qbflow workflow run NAME --input JSON`,
`POST /api/workflows/{name}/runs`, the dashboard's "Run now"), with values for the workflow's declared `inputs:`.

    trigger: {kind: manual}
    inputs:
      customer: {type: string, required: true, description: Whose invoices}
      days: {type: integer, default: 30}

The inputs are checked against the declaration (each problem names the input, the value and what was expected;
an undeclared one is refused with "did you mean"), defaults filled in, and the run stored as an event like any
other (`RunStore.record_event`, dedup key "manual:<uuid>"): a running engine or a worker runs it. Its `trigger`
is {"inputs": {...}, "started_by": "cli" | "api" | "dashboard"}.

A schedule workflow can be started by hand too ("run it now"): its run sees the trigger of a fire time now, plus
`started_by`. Workflows started by QuickBooks changes or webhooks cannot: their runs need a record or a delivery.
"""

from __future__ import annotations

import difflib
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from qbflow.engine.sources import register_source
from qbflow.engine.workflow import InputSpec, ManualTrigger, ScheduleTrigger, Workflow, input_value_problem
from qbflow.errors import QBFlowError
from qbflow.store.runs import RunsHook, RunStore

__all__ = ["MANUAL", "ManualRunRefused", "ManualSource", "check_inputs", "form_value", "start_manual_run"]

STARTED_BY = ("cli", "api", "dashboard")
_EXAMPLES: dict[str, Any] = {"string": "example", "number": 1, "integer": 1, "boolean": False, "object": {},
                             "array": []}


class ManualRunRefused(QBFlowError):
    """A manual run cannot start: the workflow's kind does not allow it, it is off, or inputs are wrong.
    `problems` lists each input problem (empty for the other reasons)."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = list(problems or [])
        super().__init__(message + ("".join(f"\n  {p}" for p in self.problems)))


def check_inputs(declared: Mapping[str, InputSpec], given: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The run's input values (given ones checked, defaults filled in) and every problem, each naming the input."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for name in given:
        if name not in declared:
            close = difflib.get_close_matches(str(name), list(declared), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            known = ", ".join(declared) or "none"
            problems.append(f"{name}: unknown input {name!r}{hint} (declared: {known})")
    for name, spec in declared.items():
        if name in given and given[name] is not None:
            value = given[name]
            problem = input_value_problem(spec.type, value)
            if problem:
                problems.append(f"{name}: {problem}")
            values[name] = value.isoformat() if isinstance(value, date) else value
        elif spec.default is not None:
            values[name] = spec.default.isoformat() if isinstance(spec.default, date) else spec.default
        elif spec.required:
            about = f" ({spec.description})" if spec.description else ""
            problems.append(f"{name}: required input {name!r} is missing: expected a {spec.type}{about}")
    return values, problems


def form_value(kind: str, text: str) -> Any:
    """A form field's text as a value of an input of type `kind` (left as text when it does not read as one, so
    the check names it); None for an empty field."""
    text = text.strip()
    if kind == "boolean":
        return text.lower() in ("on", "true", "yes", "1")
    if text == "":
        return None
    try:
        if kind == "integer":
            return int(text)
        if kind == "number":
            number = float(text)
            return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number
        if kind in ("object", "array"):
            return json.loads(text)
    except ValueError:
        return text
    return text


def manual_payload(workflow: Workflow, inputs: dict[str, Any], started_by: str, now: datetime) -> dict[str, Any]:
    """What a manual run sees as `trigger`."""
    if isinstance(workflow.trigger, ScheduleTrigger):
        from qbflow.engine.schedule import fire_payload

        return {**fire_payload(workflow.trigger, now), "started_by": started_by}
    return {"inputs": inputs, "started_by": started_by}


def start_manual_run(runs: RunStore, name: str, given: Mapping[str, Any], *, started_by: str,
                     now: datetime | None = None, on_runs: RunsHook | None = None) -> int:
    """Store a manual run of the stored workflow `name` (queued for the engine or the workers); its id.
    WorkflowNotFound if there is no such workflow; ManualRunRefused naming why it cannot start."""
    record = runs.get_workflow(name)
    workflow = Workflow.model_validate(record.definition)
    kind = workflow.trigger.kind
    if kind not in ("manual", "schedule"):
        what = "a QuickBooks change" if kind == "qbo" else "a webhook delivery"
        raise ManualRunRefused(
            f"workflow {name!r} is started by {what} (trigger kind {kind!r}), so it cannot be run by hand: its steps "
            "need that record. `qbflow workflow test` tries it on a sample; `qbflow runs retry ID` runs one again.")
    if not record.enabled:
        raise ManualRunRefused(f"workflow {name!r} is off; turn it on first (`qbflow workflow enable {name!r}`)")
    if kind == "schedule" and given:
        raise ManualRunRefused(f"workflow {name!r} is a schedule: it takes no inputs (given: {', '.join(given)})")
    values, problems = check_inputs(workflow.inputs, given)
    if problems:
        raise ManualRunRefused(f"workflow {name!r}: the inputs are not valid", problems)
    now = now or datetime.now(UTC)
    run_id = runs.record_event(record.id, kind="manual", dedup_key=f"manual:{uuid.uuid4()}",
                               payload=manual_payload(workflow, values, started_by, now), lane=workflow.connection,
                               now=now, on_runs=on_runs)
    assert run_id is not None  # a fresh uuid is never a duplicate
    return run_id


class ManualSource:
    """Manual runs: what a dry run sees (the inputs' defaults, an example value for required ones without)."""

    kind = "manual"

    def sample(self, workflow: Workflow) -> dict[str, Any]:
        """The trigger of a manual run with every input at its default (or an example of its type)."""
        assert isinstance(workflow.trigger, ManualTrigger)
        values, _ = check_inputs(workflow.inputs, {})
        for name, spec in workflow.inputs.items():
            if name not in values and spec.required:
                values[name] = date.today().isoformat() if spec.type == "date" else _EXAMPLES[spec.type]
        return {"inputs": values, "started_by": "test"}


MANUAL = ManualSource()
register_source(MANUAL)
