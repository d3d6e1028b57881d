"""Trigger kinds in workflow files (qbo, webhook, schedule, manual) and the store's one door for events of
sources other than QuickBooks polls (`RunStore.record_event`): stored once per de-duplication key."""

from __future__ import annotations

import textwrap

from qbflow.engine.stored import store_workflow
from qbflow.engine.workflow import TriggerSpec, load_workflow_text, validate_workflow_text
from qbflow.store import RunStore

WEBHOOK = textwrap.dedent("""\
    name: Shop order
    connection: acme
    trigger:
      kind: webhook
    steps:
      - id: customer
        action: get_customer
        input:
          id: "{{ trigger.body.customer_id }}"
    """)


def test_a_workflow_without_kind_is_a_quickbooks_trigger() -> None:
    workflow = load_workflow_text("name: x\ntrigger: {key: new_invoice, connection: acme}\n"
                                  "steps: [{id: a, action: get_invoice, input: {id: '1'}}]\n")
    assert isinstance(workflow.trigger, TriggerSpec) and workflow.trigger.kind == "qbo"
    assert workflow.steps[0].connection == "acme"


def test_other_kinds_take_their_connection_from_the_workflow() -> None:
    workflow = load_workflow_text(WEBHOOK)
    assert workflow.trigger.kind == "webhook" and workflow.trigger.polled_connection is None
    assert workflow.steps[0].connection == "acme"


def test_a_quickbooks_step_needs_a_connection_when_the_trigger_has_none() -> None:
    problems = validate_workflow_text(WEBHOOK.replace("connection: acme\n", ""), source="shop.yaml")
    assert [(p.line, p.field) for p in problems] == [(6, "steps[0].action")]
    assert "set `connection:` on the step or on the workflow" in problems[0].message


def test_an_unknown_kind_is_named_with_a_suggestion() -> None:
    problems = validate_workflow_text(WEBHOOK.replace("kind: webhook", "kind: webhok"), source="shop.yaml")
    assert [(p.line, p.field) for p in problems] == [(4, "trigger.kind")]
    assert "unknown trigger kind 'webhok'; did you mean 'webhook'?" in problems[0].message


def test_a_key_of_another_kind_is_unknown_with_the_kinds_own_keys() -> None:
    problems = validate_workflow_text(WEBHOOK.replace("kind: webhook", "kind: webhook\n  poll_interval: 5m"),
                                      source="shop.yaml")
    assert [(p.line, p.field) for p in problems] == [(5, "trigger.poll_interval")]
    assert "unknown key 'poll_interval'" in problems[0].message


def test_an_event_is_stored_once_per_dedup_key_with_one_run(runs: RunStore) -> None:
    record, _ = store_workflow(runs, load_workflow_text(WEBHOOK), None)
    first = runs.record_event(record.id, kind="webhook", dedup_key="delivery-1", payload={"body": {"n": 1}},
                              lane="acme")
    again = runs.record_event(record.id, kind="webhook", dedup_key="delivery-1", payload={"body": {"n": 2}},
                              lane="acme")
    long_key = "x" * 1000
    other = runs.record_event(record.id, kind="webhook", dedup_key=long_key, payload={}, lane="acme")
    assert first is not None and again is None and other is not None
    assert runs.record_event(record.id, kind="webhook", dedup_key=long_key, payload={}) is None
    run = runs.get_run(first)
    assert run.status == "queued" and run.event is not None and run.event.record == {"body": {"n": 1}}
    assert [r.id for r in runs.list_runs(workflow="Shop order")] == sorted([first, other], reverse=True)


def test_every_trigger_kind_has_a_source_that_gives_a_dry_runs_trigger() -> None:
    from qbflow.engine.sources import TriggerSource, source_for
    from qbflow.engine.workflow import TRIGGER_KINDS

    manual = load_workflow_text("name: m\ntrigger: {kind: manual}\ninputs: {n: {type: integer, default: 2}}\n"
                                "steps: [{id: a, action: log, input: {message: x}}]\n")
    schedule = load_workflow_text("name: s\ntrigger: {kind: schedule, every: 1h}\n"
                                  "steps: [{id: a, action: log, input: {message: x}}]\n")
    qbo = load_workflow_text("name: q\ntrigger: {key: new_invoice, connection: acme}\n"
                             "steps: [{id: a, action: log, input: {message: x}}]\n")
    samples = {kind: source_for(kind).sample(workflow) for kind, workflow in (
        ("qbo", qbo), ("webhook", load_workflow_text(WEBHOOK)), ("schedule", schedule), ("manual", manual))}
    assert set(samples) == set(TRIGGER_KINDS) and all(isinstance(source_for(k), TriggerSource) for k in samples)
    assert samples["qbo"]["Id"] and "body" in samples["webhook"] and samples["manual"]["inputs"] == {"n": 2}
    assert samples["schedule"]["fire_time"].endswith(":00:00Z")
