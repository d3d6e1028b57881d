"""Manual runs (`trigger: {kind: manual}` and declared `inputs:`): inputs checked against the declaration, the run
stored as an event and queued (on SQLite and PostgreSQL), refused clearly for workflows started by QuickBooks,
and `qbflow workflow run NAME --input JSON` as a user runs it."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qbflow.cli import app
from qbflow.engine.manual import ManualRunRefused, check_inputs, form_value, start_manual_run
from qbflow.engine.sources import source_for
from qbflow.engine.stored import store_workflow
from qbflow.engine.workflow import load_workflow_text, validate_workflow_text
from qbflow.store import RunStore, SecretBox

STATEMENT = textwrap.dedent("""\
    name: Send statement
    trigger: {kind: manual}
    inputs:
      customer: {type: string, required: true, description: The customer's display name}
      days: {type: integer, default: 30}
      amount: {type: number}
      urgent: {type: boolean, default: false}
      since: {type: date}
      tags: {type: array}
    steps:
      - id: note
        action: log
        input:
          message: "Statement for {{ trigger.inputs.customer }} over {{ trigger.inputs.days }} days"
    """)

GREETING = textwrap.dedent("""\
    name: Greet
    trigger: {key: new_customer, connection: acme}
    steps:
      - {id: say, action: log, input: {message: "hi"}}
    """)


def test_inputs_are_checked_against_the_declaration_and_defaults_filled_in() -> None:
    declared = load_workflow_text(STATEMENT).inputs
    values, problems = check_inputs(declared, {"customer": "Cool Cars", "amount": 12.5, "since": "2026-01-31"})
    assert problems == []
    assert values == {"customer": "Cool Cars", "days": 30, "amount": 12.5, "urgent": False, "since": "2026-01-31"}
    _, problems = check_inputs(declared, {"custmer": "x", "days": "30", "urgent": "yes", "since": "31/01/2026",
                                          "tags": {"a": 1}})
    assert problems == [
        "custmer: unknown input 'custmer'; did you mean 'customer'? (declared: customer, days, amount, urgent, since, "
        "tags)",
        "customer: required input 'customer' is missing: expected a string (The customer's display name)",
        "days: expected a whole number, got str '30'",
        "urgent: expected true or false, got str 'yes'",
        "since: expected a date as YYYY-MM-DD, got str '31/01/2026'",
        "tags: expected an array (a list), got dict {'a': 1}",
    ]


def test_declarations_are_validated_with_the_file() -> None:
    bad = STATEMENT.replace("days: {type: integer, default: 30}", "days: {type: integr, default: 30}")
    problems = validate_workflow_text(bad, source="s.yaml")
    assert [(p.line, p.field) for p in problems] == [(5, "inputs.days.type")]
    assert "expected 'string', 'number', 'integer', 'boolean', 'date', 'object' or 'array'" in problems[0].message
    problems = validate_workflow_text(STATEMENT.replace("default: 30", "default: thirty"), source="s.yaml")
    assert [(p.line, p.field, p.message) for p in problems] == [
        (5, "inputs.days", "default 'thirty' does not fit: expected a whole number, got str 'thirty'")]


def test_form_fields_read_as_their_type() -> None:
    assert [form_value("integer", "7"), form_value("number", "2.5"), form_value("number", "3"),
            form_value("boolean", "on"), form_value("array", "[1, 2]"), form_value("string", " "),
            form_value("integer", "seven")] == [7, 2.5, 3, True, [1, 2], None, "seven"]


def test_a_dry_run_sees_defaults_and_examples() -> None:
    assert source_for("manual").sample(load_workflow_text(STATEMENT)) == {
        "inputs": {"customer": "example", "days": 30, "urgent": False}, "started_by": "test"}


def test_a_manual_run_is_stored_and_queued(runs: RunStore) -> None:
    store_workflow(runs, load_workflow_text(STATEMENT), None)
    run_id = start_manual_run(runs, "Send statement", {"customer": "Cool Cars"}, started_by="cli")
    again = start_manual_run(runs, "Send statement", {"customer": "Cool Cars"}, started_by="cli")
    run = runs.get_run(run_id)
    assert run.status == "queued" and again != run_id  # each start is its own run
    assert run.event is not None and run.event.trigger_key == "manual" and run.event.dedup_key.startswith("manual:")
    assert run.event.record == {"inputs": {"customer": "Cool Cars", "days": 30, "urgent": False},
                                "started_by": "cli"}
    with pytest.raises(ManualRunRefused) as refused:
        start_manual_run(runs, "Send statement", {"days": 3}, started_by="api")
    assert refused.value.problems == [
        "customer: required input 'customer' is missing: expected a string (The customer's display name)"]
    assert len(runs.list_runs()) == 2


def test_workflows_started_by_quickbooks_or_turned_off_are_refused(runs: RunStore) -> None:
    store_workflow(runs, load_workflow_text(GREETING), None)
    with pytest.raises(ManualRunRefused, match="started by a QuickBooks change .* cannot be run by hand"):
        start_manual_run(runs, "Greet", {}, started_by="cli")
    store_workflow(runs, load_workflow_text(STATEMENT), None, enabled=False)
    with pytest.raises(ManualRunRefused, match="is off; turn it on first"):
        start_manual_run(runs, "Send statement", {"customer": "x"}, started_by="cli")
    assert runs.list_runs() == []


def test_a_schedule_can_be_run_now(runs: RunStore) -> None:
    text = "name: Tick\ntrigger: {kind: schedule, every: 1h}\nsteps: [{id: a, action: log, input: {message: x}}]\n"
    store_workflow(runs, load_workflow_text(text), None)
    run = runs.get_run(start_manual_run(runs, "Tick", {}, started_by="dashboard"))
    assert run.event is not None and set(run.event.record) == {"fire_time", "scheduled_for", "timezone", "started_by"}


# --- the CLI ------------------------------------------------------------------------------------------------

def cli(tmp_path: Path, key: str, *args: str):
    env = {"QBFLOW_DATA_DIR": str(tmp_path / "data"), "QBFLOW_SECRET_KEY": key, "COLUMNS": "200"}
    return CliRunner().invoke(app, list(args), env=env)


def test_workflow_run_on_the_command_line(tmp_path: Path) -> None:
    key = SecretBox.generate_key()
    path = tmp_path / "statement.yaml"
    path.write_text(STATEMENT)
    assert cli(tmp_path, key, "workflow", "add", str(path)).exit_code == 0

    queued = cli(tmp_path, key, "workflow", "run", "Send statement", "--input", '{"customer": "Cool Cars"}')
    assert queued.exit_code == 0, queued.output
    assert "Queued run 1 of 'Send statement'" in queued.output

    bad = cli(tmp_path, key, "workflow", "run", "Send statement", "--input", '{"custmer": "Cool", "days": "x"}')
    assert bad.exit_code == 1
    assert "unknown input 'custmer'; did you mean 'customer'?" in bad.output
    assert "days: expected a whole number, got str 'x'" in bad.output

    unknown = cli(tmp_path, key, "workflow", "run", "Send statment")
    assert unknown.exit_code == 1 and "Did you mean 'Send statement'?" in unknown.output

    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps({"customer": "Birch Bay", "days": 7}))
    here = cli(tmp_path, key, "workflow", "run", "Send statement", "--input", f"@{inputs}", "--now")
    assert here.exit_code == 0, here.output
    assert "Run 2 of 'Send statement': succeeded" in here.output
    shown = cli(tmp_path, key, "runs", "show", "2")
    assert "Statement for Birch Bay over 7 days" in shown.output
    listed = cli(tmp_path, key, "runs", "list")
    assert "queued" in listed.output and "succeeded" in listed.output


def test_workflow_test_and_list_show_manual_and_schedule_workflows(tmp_path: Path) -> None:
    key = SecretBox.generate_key()
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "statement.yaml").write_text(STATEMENT)
    (tmp_path / "flows" / "tick.yaml").write_text(
        "name: Tick\ntrigger: {kind: schedule, every: 1h}\n"
        "steps: [{id: a, action: log, input: {message: 'tick {{ trigger.fire_time }}'}}]\n")
    assert cli(tmp_path, key, "workflow", "add", str(tmp_path / "flows")).exit_code == 0
    tested = cli(tmp_path, key, "workflow", "test", "Send statement")
    assert tested.exit_code == 0, tested.output
    assert "Statement for example over 30 days" in tested.output
    tick = cli(tmp_path, key, "workflow", "test", "Tick")
    assert tick.exit_code == 0 and ":00:00Z" in json.loads(tick.output)["trigger"]["fire_time"]
    listed = cli(tmp_path, key, "workflow", "list").output
    assert "manual" in listed and "schedule" in listed


def test_workflow_test_takes_a_sample_trigger_for_any_kind(tmp_path: Path) -> None:
    key = SecretBox.generate_key()
    (tmp_path / "shop.yaml").write_text(
        "name: Shop\ntrigger: {kind: webhook, delivery_id: '{{ body.id }}'}\nsteps:\n"
        "  - {id: each, for_each: '{{ trigger.body.items }}', as: line, steps: [\n"
        "      {id: say, action: log, input: {message: '{{ line.sku }} x {{ line.qty }}'}}]}\n")
    assert cli(tmp_path, key, "workflow", "add", str(tmp_path / "shop.yaml")).exit_code == 0
    body = {"body": {"id": "order-1", "items": [{"sku": "A", "qty": 2}, {"sku": "B", "qty": 1}]}}
    tested = cli(tmp_path, key, "workflow", "test", "Shop", "--sample", json.dumps(body))
    assert tested.exit_code == 0, tested.output
    report = json.loads(tested.output)
    assert [s["output"]["message"] for s in report["steps"][0]["steps"]] == ["A x 2", "B x 1"]
    bad = cli(tmp_path, key, "workflow", "test", "Shop", "--sample", "[1]")
    assert bad.exit_code != 0 and "--sample must be a JSON object" in bad.output
    default = cli(tmp_path, key, "workflow", "test", "Shop")  # the webhook source's own sample
    assert "body" in json.loads(default.output)["trigger"]
