"""Workflow files: the format, the models, and validation naming file, line, field and a suggestion."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest

from qbflow.connector.registry import action
from qbflow.connector.triggers import TRIGGERS
from qbflow.engine.templates import make_context, render, render_condition
from qbflow.engine.workflow import (
    HttpRequestInput,
    LogInput,
    WorkflowInvalid,
    WorkflowProblem,
    load_workflow,
    parse_interval,
    validate_workflow,
)

# Example 1: a new invoice over 100 -> make sure its customer exists, send the invoice, tell another tool.
INVOICE_FOLLOW_UP = """\
name: Invoice follow-up
description: Make sure the customer exists, then send the invoice.
trigger:
  key: new_invoice
  connection: acme
  poll_interval: 5m
  filter: "{{ trigger.TotalAmt > 100 }}"
  since: 2024-05-01T00:00:00Z
steps:
  - id: customer
    action: find_or_create_customer
    input:
      display_name: "{{ trigger.CustomerRef.name }}"
      notes: Created by qbflow
  - id: send
    action: send_invoice
    when: "{{ steps.customer.output.Id is defined }}"
    input:
      id: "{{ trigger.Id }}"
  - id: notify
    action: http.request
    input:
      method: post
      url: https://hooks.example.com/qbo
      headers:
        X-Source: qbflow
      json:
        invoice: "{{ trigger.DocNumber }}"
        amount: "{{ trigger.TotalAmt }}"
        customer: "{{ steps.customer.output.Id }}"
  - id: note
    action: log
    input:
      message: "Sent invoice {{ trigger.DocNumber }} for {{ trigger.TotalAmt | money }}"
"""

# Example 2: a new customer -> a welcome estimate with literal lines, on another connection.
WELCOME_ESTIMATE = """\
name: Welcome estimate
trigger:
  key: new_customer
  connection: acme
steps:
  - id: estimate
    action: create_invoice
    connection: acme-books
    input:
      customer: "{{ trigger.Id }}"
      txn_date: 2024-06-01
      lines:
        - item: Design
          amount: 150
          description: First consultation
      private_note: "Welcome {{ trigger.DisplayName }}"
"""


def write(tmp_path: Path, text: str, name: str = "flow.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(tmp_path: Path, text: str, **kwargs) -> list[WorkflowProblem]:
    return validate_workflow(write(tmp_path, text), **kwargs)


def only(problems: list[WorkflowProblem]) -> WorkflowProblem:
    assert len(problems) == 1, "\n".join(map(str, problems))
    return problems[0]


# --- valid workflows -------------------------------------------------------------------------------------

def test_a_valid_workflow_loads_into_models(tmp_path: Path) -> None:
    path = write(tmp_path, INVOICE_FOLLOW_UP)
    assert validate_workflow(path, connections=["acme"]) == []
    workflow = load_workflow(path)
    assert workflow.name == "Invoice follow-up"
    assert workflow.source == str(path)
    assert workflow.trigger.key == "new_invoice"
    assert workflow.trigger.poll_interval == dt.timedelta(minutes=5)
    assert workflow.trigger.since == dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    assert [s.id for s in workflow.steps] == ["customer", "send", "notify", "note"]
    # connector steps inherit the trigger's connection; generic steps need none
    assert [s.connection for s in workflow.steps] == ["acme", "acme", None, None]
    assert workflow.step("notify").input["json"]["amount"] == "{{ trigger.TotalAmt }}"


def test_the_example_renders_against_the_trigger_sample(tmp_path: Path) -> None:
    workflow = load_workflow(write(tmp_path, INVOICE_FOLLOW_UP))
    sample = TRIGGERS[workflow.trigger.key].sample_record()
    ctx = make_context(trigger=sample, steps={"customer": {"Id": "58"}})
    assert render_condition(workflow.trigger.filter, ctx) is (sample["TotalAmt"] > 100)
    assert render_condition(workflow.step("send").when, ctx) is True
    customer_input = render(workflow.step("customer").input, ctx)
    action("find_or_create_customer").parse(customer_input)  # the rendered input fits the action
    body = render(workflow.step("notify").input, ctx)
    assert body["json"]["amount"] == sample["TotalAmt"]  # a number stays a number
    assert HttpRequestInput.model_validate(body).method == "POST"
    assert LogInput.model_validate(render(workflow.step("note").input, ctx)).message.startswith("Sent invoice")


def test_literal_inputs_are_validated_and_dates_stay_text(tmp_path: Path) -> None:
    path = write(tmp_path, WELCOME_ESTIMATE)
    assert validate_workflow(path, connections=["acme", "acme-books"]) == []
    workflow = load_workflow(path)
    assert workflow.trigger.poll_interval == dt.timedelta(minutes=5)  # the default
    step = workflow.steps[0]
    assert step.connection == "acme-books"
    assert step.input["txn_date"] == "2024-06-01"  # not a YAML timestamp object: inputs stay JSON data


def test_load_raises_with_every_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\ntrigger:\n  key: new_invoce\n  connection: acme\nsteps: []\n")
    with pytest.raises(WorkflowInvalid) as caught:
        load_workflow(path)
    fields = [p.field for p in caught.value.problems]
    assert fields == ["trigger.key", "steps"]
    assert str(path) in str(caught.value) and "did you mean 'new_invoice'?" in str(caught.value)


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("5m", 300), ("1h30m", 5400), ("1d", 86400), (90, 90)])
def test_intervals(text: str | int, seconds: int) -> None:
    assert parse_interval(text) == dt.timedelta(seconds=seconds)


# --- one test per problem kind ---------------------------------------------------------------------------

def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    problem = only(problems_of(tmp_path, "name: x\ntrigger:\n  key: new_invoice\n  connection: [acme\nsteps: []\n"))
    assert problem.file.endswith("flow.yaml")
    assert problem.line == 5
    assert problem.message.startswith("YAML syntax error")


def test_required_key_missing(tmp_path: Path) -> None:
    problem = only(problems_of(tmp_path, """\
        name: x
        trigger:
          key: new_invoice
        steps:
          - id: a
            action: log
            input: {message: hi}
        """))
    assert (problem.line, problem.field) == (2, "trigger.connection")
    assert "required key 'connection' is missing" in problem.message


def test_unknown_key_with_suggestion(tmp_path: Path) -> None:
    problem = only(problems_of(tmp_path, """\
        name: x
        trigger:
          key: new_invoice
          connection: acme
          pol_interval: 1m
        steps:
          - id: a
            action: log
            input: {message: hi}
        """))
    assert (problem.line, problem.field) == (5, "trigger.pol_interval")
    assert "did you mean 'poll_interval'?" in problem.message


def test_duplicate_step_ids(tmp_path: Path) -> None:
    problem = only(problems_of(tmp_path, """\
        name: x
        trigger: {key: new_invoice, connection: acme}
        steps:
          - id: note
            action: log
            input: {message: one}
          - id: note
            action: log
            input: {message: two}
        """))
    assert (problem.line, problem.field) == (7, "steps[1].id")
    assert "duplicate step id 'note'" in problem.message and "line 4" in problem.message


def test_unknown_trigger_key(tmp_path: Path) -> None:
    problem = only(problems_of(tmp_path, """\
        name: x
        trigger:
          key: new_invoce
          connection: acme
        steps:
          - {id: a, action: log, input: {message: hi}}
        """))
    assert problem.file.endswith("flow.yaml")
    assert (problem.line, problem.field) == (3, "trigger.key")
    assert "did you mean 'new_invoice'?" in problem.message


def test_unknown_action_key(tmp_path: Path) -> None:
    problem = only(problems_of(tmp_path, """\
        name: x
        trigger: {key: new_invoice, connection: acme}
        steps:
          - id: make
            action: create_invoce
        """))
    assert (problem.line, problem.field) == (5, "steps[0].action")
    assert "did you mean 'create_invoice'" in problem.message


def test_unknown_generic_step_key(tmp_path: Path) -> None:
    problem = only(problems_of(tmp_path, """\
        name: x
        trigger: {key: new_invoice, connection: acme}
        steps:
          - id: post
            action: http.requests
            input: {url: "https://example.com"}
        """))
    assert (problem.line, problem.field) == (5, "steps[0].action")
    assert "did you mean 'http.request'?" in problem.message


def test_unknown_input_field_with_suggestion(tmp_path: Path) -> None:
    problem = only(problems_of(tmp_path, """\
        name: x
        trigger: {key: new_invoice, connection: acme}
        steps:
          - id: make
            action: create_invoice
            input:
              custmer: "{{ trigger.CustomerRef.value }}"
              lines: "{{ trigger.Line }}"
        """))
    assert (problem.line, problem.field) == (7, "steps[0].input.custmer")
    assert "did you mean 'customer'?" in problem.message


def test_literal_input_that_does_not_fit_the_model(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, """\
        name: x
        trigger: {key: new_invoice, connection: acme}
        steps:
          - id: make
            action: create_invoice
            input:
              customer: Dukes Basketball Camp
              txn_date: not-a-date
              lines:
                - item: Design
                  amount: lots
        """)
    assert [(p.line, p.field) for p in problems] == [(8, "steps[0].input.txn_date"),
                                                      (11, "steps[0].input.lines[0].amount")]
    assert "not-a-date" in problems[0].message


def test_templated_fields_are_not_type_checked_but_literal_ones_are(tmp_path: Path) -> None:
    problem = only(problems_of(tmp_path, """\
        name: x
        trigger: {key: new_invoice, connection: acme}
        steps:
          - id: make
            action: create_invoice
            input:
              customer: "{{ trigger.CustomerRef.value }}"
              txn_date: "{{ trigger.TxnDate | add_days(1) }}"
              due_date: someday
              lines: "{{ trigger.Line }}"
        """))
    assert (problem.line, problem.field) == (9, "steps[0].input.due_date")


def test_missing_required_input_field(tmp_path: Path) -> None:
    problem = only(problems_of(tmp_path, """\
        name: x
        trigger: {key: new_invoice, connection: acme}
        steps:
          - id: send
            action: send_invoice
            input:
              to: someone@example.com
        """))
    assert (problem.line, problem.field) == (6, "steps[0].input.id")
    assert "required" in problem.message


def test_generic_step_input_is_checked(tmp_path: Path) -> None:
    problem = only(problems_of(tmp_path, """\
        name: x
        trigger: {key: new_invoice, connection: acme}
        steps:
          - id: post
            action: http.request
            input:
              url: ftp://example.com
              json: {a: 1}
        """))
    assert (problem.line, problem.field) == (7, "steps[0].input.url")


def test_template_syntax_error_names_the_line_inside_a_block(tmp_path: Path) -> None:
    problem = only(problems_of(tmp_path, """\
        name: x
        trigger: {key: new_invoice, connection: acme}
        steps:
          - id: note
            action: log
            input:
              message: |
                Invoice {{ trigger.DocNumber }}
                Total {{ trigger.TotalAmt | }}
        """))
    assert (problem.line, problem.field) == (9, "steps[0].input.message")
    assert "syntax error" in problem.message


def test_template_referencing_a_missing_step(tmp_path: Path) -> None:
    problem = only(problems_of(tmp_path, """\
        name: x
        trigger: {key: new_invoice, connection: acme}
        steps:
          - id: find
            action: find_or_create_customer
            input: {display_name: "{{ trigger.CustomerRef.name }}"}
          - id: send
            action: send_invoice
            input:
              id: "{{ trigger.Id }}"
              to: "{{ steps.fnd.output.PrimaryEmailAddr.Address }}"
        """))
    assert (problem.line, problem.field) == (11, "steps[1].input.to")
    assert "steps.fnd" in problem.message and "did you mean 'find'?" in problem.message


def test_template_referencing_a_later_step(tmp_path: Path) -> None:
    problem = only(problems_of(tmp_path, """\
        name: x
        trigger: {key: new_invoice, connection: acme}
        steps:
          - id: note
            action: log
            when: "{{ steps.find.output.Id }}"
            input: {message: hi}
          - id: find
            action: find_or_create_customer
            input: {display_name: "{{ trigger.CustomerRef.name }}"}
        """))
    assert (problem.line, problem.field) == (6, "steps[0].when")
    assert "steps[1]" in problem.message and "earlier" in problem.message


def test_filter_cannot_use_steps_and_unknown_names_are_reported(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, """\
        name: x
        trigger:
          key: new_invoice
          connection: acme
          filter: "{{ steps.a.output and trigger.TotalAmt > 1 }}"
        steps:
          - id: a
            action: log
            input: {message: "{{ triger.Id }}"}
        """)
    assert [(p.line, p.field) for p in problems] == [(5, "trigger.filter"), (9, "steps[0].input.message")]
    assert "before any step" in problems[0].message
    assert "did you mean 'trigger'?" in problems[1].message


def test_missing_connections(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, WELCOME_ESTIMATE, connections=["acme-book"])
    assert [(p.line, p.field) for p in problems] == [(4, "trigger.connection"), (8, "steps[0].connection")]
    assert "no connection named 'acme-books'; did you mean 'acme-book'?" in problems[1].message
    # without `connections` nothing is checked
    assert problems_of(tmp_path, WELCOME_ESTIMATE) == []


def test_poll_interval_below_the_minimum(tmp_path: Path) -> None:
    problem = only(problems_of(tmp_path, """\
        name: x
        trigger: {key: new_invoice, connection: acme, poll_interval: 10s}
        steps:
          - {id: a, action: log, input: {message: hi}}
        """))
    assert (problem.line, problem.field) == (2, "trigger.poll_interval")
    assert "at least 30s" in problem.message


def test_duplicate_yaml_keys(tmp_path: Path) -> None:
    problem = only(problems_of(tmp_path, """\
        name: x
        name: y
        trigger: {key: new_invoice, connection: acme}
        steps:
          - {id: a, action: log, input: {message: hi}}
        """))
    assert (problem.line, problem.field) == (2, "name")
    assert "first at line 1" in problem.message


def test_problem_text_names_file_line_and_field(tmp_path: Path) -> None:
    problem = WorkflowProblem("flows/a.yaml", 7, "steps[0].input.custmer", "unknown input field")
    assert str(problem) == "flows/a.yaml:7: steps[0].input.custmer: unknown input field"


# --- report steps ----------------------------------------------------------------------------------------------
WEEKLY_AGING = """\
name: Weekly aging
trigger: {kind: schedule, cron: "0 8 * * MON", timezone: America/New_York}
connection: acme
steps:
  - id: aging
    action: get_ar_aging
    input:
      report_date: "{{ trigger.scheduled_for[:10] }}"
      aging_period: 30
      num_periods: %s
  - id: note
    action: log
    input:
      message: "{{ steps.aging.output.rows[-1].Total | money }} owed"
"""


def test_a_report_step_validates_in_a_workflow_file_and_its_input_is_checked(tmp_path: Path) -> None:
    assert problems_of(tmp_path, WEEKLY_AGING % "4", connections=["acme"]) == []
    workflow = load_workflow(write(tmp_path, WEEKLY_AGING % "4"))
    assert workflow.steps[0].connection == "acme" and workflow.trigger.kind == "schedule"
    problem = only(problems_of(tmp_path, WEEKLY_AGING % "0", connections=["acme"]))
    assert problem.field == "steps[0].input.num_periods" and "greater than or equal to 1" in problem.message
    macro = WEEKLY_AGING.replace("get_ar_aging", "get_profit_and_loss").replace(
        'report_date: "{{ trigger.scheduled_for[:10] }}"', "date_macro: last mnth").replace(
        "aging_period: 30\n      num_periods: %s", "accounting_method: Cash")
    problem = only(problems_of(tmp_path, macro, connections=["acme"]))
    assert problem.field == "steps[0].input.date_macro" and "did you mean 'Last Month'" in problem.message
