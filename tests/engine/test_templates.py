"""Field mapping templates: native types, text, nesting, filters, clear errors, and the sandbox."""

from __future__ import annotations

import datetime as dt

import pytest

from qbflow.connector.triggers import TRIGGERS
from qbflow.engine import templates
from qbflow.engine.templates import (
    TemplateError,
    make_context,
    referenced_steps,
    render,
    render_condition,
    unknown_names,
)


@pytest.fixture
def ctx() -> dict:
    record = TRIGGERS["new_invoice"].sample_record()
    record.update({"TotalAmt": 1350.5, "Balance": None, "TxnDate": "2024-05-14", "Id": "130",
                   "CustomerRef": {"value": "5", "name": "Dukes Basketball Camp"}})
    return make_context(trigger=record, steps={"customer": {"Id": "29", "DisplayName": "Weiskopf Consulting"}},
                        run_id=17, started_at=dt.datetime(2024, 5, 14, 9, 30, tzinfo=dt.UTC))


def test_a_single_expression_keeps_its_native_type(ctx: dict) -> None:
    assert render("{{ trigger.TotalAmt }}", ctx) == 1350.5
    assert render("  {{ trigger.TotalAmt }}  ", ctx) == 1350.5
    assert render("{{ trigger.CustomerRef }}", ctx) == {"value": "5", "name": "Dukes Basketball Camp"}
    assert render("{{ trigger.Balance }}", ctx) is None
    assert render("{{ trigger.Line | length }}", ctx) == len(ctx["trigger"]["Line"])
    assert render("{{ run.id }}", ctx) == 17


def test_a_native_dict_is_a_copy(ctx: dict) -> None:
    ref = render("{{ trigger.CustomerRef }}", ctx)
    ref["value"] = "changed"
    assert ctx["trigger"]["CustomerRef"]["value"] == "5"


def test_mixed_text_gives_a_string(ctx: dict) -> None:
    assert render("Invoice {{ trigger.DocNumber }} for {{ trigger.TotalAmt }}", ctx) == "Invoice 1037 for 1350.5"
    assert render("{{ trigger.DocNumber }}-{{ trigger.Id }}", ctx) == "1037-130"
    assert render("no template here", ctx) == "no template here"
    assert render("{% if trigger.TotalAmt > 1000 %}big{% else %}small{% endif %}", ctx) == "big"


def test_nested_structures_are_rendered_recursively(ctx: dict) -> None:
    value = {
        "customer": "{{ steps.customer.output.Id }}",
        "lines": [{"amount": "{{ trigger.TotalAmt }}", "description": "For {{ trigger.CustomerRef.name }}"}],
        "count": 3,
        "flag": True,
    }
    assert render(value, ctx) == {
        "customer": "29",
        "lines": [{"amount": 1350.5, "description": "For Dukes Basketball Camp"}],
        "count": 3,
        "flag": True,
    }


def test_filters(ctx: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    assert render("{{ trigger.TotalAmt | money }}", ctx) == "1350.50"
    assert render("{{ 2.005 | money }}", ctx) == "2.01"
    assert render("{{ \"Café\" | b64encode }}", ctx) == "Q2Fmw6k="
    assert render("{{ trigger.TxnDate | date('%d/%m/%Y') }}", ctx) == "14/05/2024"
    assert render("{{ '2024-05-14T10:20:30-07:00' | date }}", ctx) == "2024-05-14"
    assert render("{{ '2024-05-14T10:20:30Z' | datetime }}", ctx) == "2024-05-14T10:20:30+00:00"
    assert render("{{ run.started_at | datetime('%H:%M') }}", ctx) == "09:30"
    assert render("{{ trigger.TxnDate | add_days(30) }}", ctx) == "2024-06-13"
    assert render("{{ '2024-05-14T10:00:00' | add_days(-1) }}", ctx) == "2024-05-13T10:00:00"
    assert render("{{ trigger.Balance | default(0) }}", ctx) == 0
    assert render("{{ trigger.Missing | default('n/a') }}", ctx) == "n/a"
    assert render("{{ trigger.CustomerRef | json }}", ctx) == '{"value": "5", "name": "Dukes Basketball Camp"}'
    monkeypatch.setattr(templates, "_today", lambda: dt.date(2024, 5, 14))
    assert render("{{ 30 | days_ago }}", ctx) == "2024-04-14"


def test_conditions(ctx: dict) -> None:
    assert render_condition("{{ trigger.TotalAmt > 100 }}", ctx) is True
    assert render_condition("trigger.TotalAmt > 5000", ctx) is False
    assert render_condition("{{ trigger.Balance }}", ctx) is False
    assert render_condition("{% if trigger.TotalAmt %}false{% endif %}", ctx) is False
    assert render_condition("{{ steps.customer.output.Id }}", ctx) is True


def test_undefined_variables_are_clear_errors(ctx: dict) -> None:
    with pytest.raises(TemplateError) as caught:
        render("{{ trigger.TotalAmount }}", ctx)
    assert "TotalAmount" in str(caught.value) and "{{ trigger.TotalAmount }}" in str(caught.value)
    with pytest.raises(TemplateError, match="'invoice' is undefined"):
        render("Total: {{ invoice.TotalAmt }}", ctx)
    with pytest.raises(TemplateError, match="nope"):
        render({"a": ["{{ steps.nope.output.Id }}"]}, ctx)


def test_syntax_errors_name_the_line(ctx: dict) -> None:
    with pytest.raises(TemplateError) as caught:
        render("first\nsecond {{ trigger.TotalAmt | }}", ctx)
    assert caught.value.line == 2
    assert "syntax error" in caught.value.problem


def test_filter_errors_are_template_errors(ctx: dict) -> None:
    with pytest.raises(TemplateError, match="not an amount"):
        render("{{ trigger.Balance | money }}", ctx)
    with pytest.raises(TemplateError, match="not an ISO date"):
        render("{{ 'soon' | date }}", ctx)


@pytest.mark.parametrize("text", [
    "{{ ''.__class__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "x {{ trigger.__class__ }}",
    "{{ today.__globals__ }}",
])
def test_the_sandbox_refuses_private_attributes(ctx: dict, text: str) -> None:
    with pytest.raises(TemplateError) as caught:
        render(text, ctx)
    assert "unsafe" in str(caught.value) or "not allowed" in str(caught.value)


def test_referenced_steps_and_unknown_names() -> None:
    assert referenced_steps("{{ steps.find.output.Id }} {{ steps['other'].output }} {{ trigger.Id }}") == {
        "find", "other"}
    assert referenced_steps("steps.a.output.Id == 1", condition=True) == {"a"}
    assert referenced_steps("plain") == set()
    assert unknown_names("{{ trigger.Id }} {{ step.find }} {{ today() }}") == {"step"}
    with pytest.raises(TemplateError):
        referenced_steps("{{ steps.find.output.Id ")


def test_a_key_named_like_a_dict_method_is_the_keys_value() -> None:
    order = {"items": [{"sku": "A"}], "keys": "k", "values": 3, "name": "#1001"}
    context = make_context(trigger={"body": order}, steps={}, run_id=1, started_at=None)
    assert render("{{ trigger.body.items | length }}", context) == 1
    assert render("{{ trigger.body.keys }}-{{ trigger.body.values }}", context) == "k-3"
    assert render("{{ trigger.body.get('name') }}", context) == "#1001"  # methods of a mapping without the key
