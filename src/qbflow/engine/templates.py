"""Field mapping: step inputs rendered from the trigger's record and earlier steps' outputs.

Templates are Jinja2, rendered in the sandboxed environment with strict undefined values, and keep
native types: a value that is exactly one expression yields the expression's value, anything else a string.

    ctx = make_context(trigger={"TotalAmt": 150.0}, steps={"find": {"Id": "7"}})
    render("{{ trigger.TotalAmt }}", ctx)               # 150.0 (a number, not "150.0")
    render("Invoice for {{ trigger.TotalAmt | money }}", ctx)   # "Invoice for 150.00"
    render({"customer": "{{ steps.find.output.Id }}"}, ctx)     # {"customer": "7"}
    render_condition("{{ trigger.TotalAmt > 100 }}", ctx)      # True
    referenced_steps("{{ steps.find.output.Id }}")            # {"find"}

Filters: money, date, datetime, default, days_ago, add_days, json. Dates come out as ISO strings so that
rendered inputs stay plain JSON data (they are stored with the run).
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import functools
import json as jsonlib
import re
from collections.abc import Collection, Mapping
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Undefined
from jinja2.sandbox import SandboxedEnvironment

from qbflow.errors import QBFlowError

__all__ = [
    "CONTEXT_NAMES",
    "TemplateError",
    "check_template",
    "is_template",
    "make_context",
    "referenced_steps",
    "render",
    "render_condition",
    "unknown_names",
]

# The names a template sees; anything else is a mistake (validation says so before a run).
CONTEXT_NAMES = frozenset({"trigger", "steps", "run"})

_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.DOTALL)
_FALSE_WORDS = frozenset({"", "false", "no", "0", "none", "null", "off"})


class TemplateError(QBFlowError):
    """A template could not be parsed or rendered; names the template text and the problem.

    `line` is the line inside the template for syntax errors (1-based), else None.
    """

    def __init__(self, template: str, problem: str, line: int | None = None) -> None:
        self.template = template
        self.problem = problem
        self.line = line
        super().__init__(f"template {_short(template)}: {problem}")


def _short(text: str, limit: int = 120) -> str:
    text = repr(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- filters ---------------------------------------------------------------------------------------------

def _to_datetime(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("Z"):  # fromisoformat accepts "Z" only from 3.11 on some forms; be explicit
            text = text[:-1] + "+00:00"
        try:
            return dt.datetime.fromisoformat(text)
        except ValueError:
            pass
    raise ValueError(f"not an ISO date or date-time: {value!r}")


def _filter_date(value: Any, fmt: str | None = None) -> str:
    """An ISO date or date-time as a date: "YYYY-MM-DD", or formatted with `fmt` (strftime)."""
    moment = _to_datetime(value)
    return moment.strftime(fmt) if fmt else moment.date().isoformat()


def _filter_datetime(value: Any, fmt: str | None = None) -> str:
    """An ISO date or date-time as an ISO date-time, or formatted with `fmt` (strftime)."""
    moment = _to_datetime(value)
    return moment.strftime(fmt) if fmt else moment.isoformat()


def _filter_money(value: Any) -> str:
    """A number with two decimals, rounded half up: 1234.5 -> "1234.50"."""
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ValueError(f"not an amount: {value!r}") from None
    return str(amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def _filter_default(value: Any, fallback: Any = "", boolean: bool = False) -> Any:
    """`fallback` when the value is undefined or None (QBO leaves many fields null), or falsy if `boolean`."""
    if isinstance(value, Undefined) or value is None or (boolean and not value):
        return fallback
    return value


def _today() -> dt.date:
    return dt.date.today()


def _filter_days_ago(days: Any) -> str:
    """The date `days` days before today, ISO: `{{ 30 | days_ago }}`."""
    return (_today() - dt.timedelta(days=int(days))).isoformat()


def _filter_add_days(value: Any, days: Any) -> str:
    """The date (or date-time) plus `days` days, ISO, same kind as given: `{{ trigger.TxnDate | add_days(30) }}`."""
    moment = _to_datetime(value) + dt.timedelta(days=int(days))
    is_date_only = isinstance(value, dt.date) and not isinstance(value, dt.datetime) or (
        isinstance(value, str) and "T" not in value and " " not in value.strip())
    return moment.date().isoformat() if is_date_only else moment.isoformat()


def _filter_json(value: Any, indent: int | None = None) -> str:
    """The value as JSON text."""
    return jsonlib.dumps(value, default=str, indent=indent)


def _filter_b64encode(value: Any) -> str:
    """Text (as UTF-8) or bytes as base64, e.g. for an attachment's content: `{{ summary | b64encode }}`."""
    data = value if isinstance(value, bytes) else str(value).encode("utf-8")
    return base64.b64encode(data).decode("ascii")


class _DataEnvironment(SandboxedEnvironment):
    """Templates read JSON data: `x.items`, `x.keys` or `x.values` of a mapping that has such a key is that key's
    value (a shop order's `items`), not the dict method Jinja would otherwise find first."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


def _build_environment() -> SandboxedEnvironment:
    env = _DataEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
    env.filters.update({
        "money": _filter_money,
        "date": _filter_date,
        "datetime": _filter_datetime,
        "default": _filter_default,
        "d": _filter_default,
        "days_ago": _filter_days_ago,
        "add_days": _filter_add_days,
        "json": _filter_json,
        "b64encode": _filter_b64encode,
    })
    env.globals["today"] = lambda: _today().isoformat()
    return env


_ENV = _build_environment()


# --- context ---------------------------------------------------------------------------------------------

def make_context(trigger: Mapping[str, Any] | None = None, steps: Mapping[str, Any] | None = None,
                 run_id: Any = None, started_at: dt.datetime | str | None = None,
                 names: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The context templates see: `trigger` (the event's record), `steps` (id -> {"output": ...}), `run`,
    and `names` where a step adds some (a `for_each` loop's item and `loop`, `error` in `on_error`).

    `steps` maps each finished step's id to its output.
    """
    if isinstance(started_at, dt.datetime):
        started_at = started_at.isoformat()
    return {
        "trigger": dict(trigger or {}),
        "steps": {key: {"output": output} for key, output in (steps or {}).items()},
        "run": {"id": run_id, "started_at": started_at},
        **(names or {}),
    }


# --- parsing ---------------------------------------------------------------------------------------------

def is_template(value: Any) -> bool:
    """Whether a value is a string holding template syntax (`{{ }}` or `{% %}`)."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _condition_text(expr: str) -> str:
    """A `when:`/`filter:` condition as a template: bare expressions are accepted too."""
    return expr if is_template(expr) else "{{ " + expr + " }}"


def _parse(text: str) -> nodes.Template:
    try:
        return _ENV.parse(text)
    except TemplateSyntaxError as error:
        raise TemplateError(text, f"syntax error: {error.message}", error.lineno) from None


def check_template(text: str, *, condition: bool = False) -> None:
    """Raise TemplateError (with the line inside the template) when `text` does not parse."""
    _parse(_condition_text(text) if condition else text)


def referenced_steps(text: str, *, condition: bool = False) -> set[str]:
    """The step ids a template reads (`steps.find...` or `steps['find']...`), from its syntax tree."""
    tree = _parse(_condition_text(text) if condition else text)
    found: set[str] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name) and node.node.name == "steps":
            found.add(node.attr)
        elif (isinstance(node, nodes.Getitem) and isinstance(node.node, nodes.Name) and node.node.name == "steps"
              and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str)):
            found.add(node.arg.value)
    return found


def unknown_names(text: str, *, condition: bool = False, known: Collection[str] = ()) -> set[str]:
    """The top-level names a template uses that are neither context names, globals nor `known` (names a step
    adds where the template is: a loop's item and `loop`, `error` in `on_error`)."""
    tree = _parse(_condition_text(text) if condition else text)
    return meta.find_undeclared_variables(tree) - CONTEXT_NAMES - set(_ENV.globals) - set(known)


# --- rendering -------------------------------------------------------------------------------------------

def _single_expression(text: str) -> str | None:
    match = _SINGLE_EXPRESSION.match(text)
    if not match:
        return None
    expr = match.group("expr")
    if "{{" in expr or "}}" in expr or "{%" in expr or "{#" in expr:
        return None
    return expr


def _fail(text: str, error: Exception) -> TemplateError:
    if isinstance(error, SecurityError):
        return TemplateError(text, f"not allowed in a template: {error}")
    if isinstance(error, UndefinedError):
        return TemplateError(text, f"undefined: {error.message}")
    if isinstance(error, TemplateSyntaxError):
        return TemplateError(text, f"syntax error: {error.message}", error.lineno)
    if isinstance(error, TemplateError):
        return error
    return TemplateError(text, f"{type(error).__name__}: {error}")


@functools.lru_cache(maxsize=2048)
def _compiled_expression(expr: str) -> Any:
    return _ENV.compile_expression(expr, undefined_to_none=False)


@functools.lru_cache(maxsize=2048)
def _compiled_template(text: str) -> Any:
    return _ENV.from_string(text)


def _render_text(text: str, context: Mapping[str, Any]) -> Any:
    # Compiled once per template text (compiling costs about a millisecond; a run renders several).
    expr = _single_expression(text)
    try:
        if expr is not None:
            value = _compiled_expression(expr)(**context)
            if isinstance(value, Undefined):
                value._fail_with_undefined_error()  # StrictUndefined raises UndefinedError naming the name
            # the context's records must not be changed through a rendered input
            return copy.deepcopy(value) if isinstance(value, dict | list) else value
        return _compiled_template(text).render(**context)
    except Exception as error:  # Jinja raises many kinds; each becomes one TemplateError naming the template
        raise _fail(text, error) from None


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """Render templates in `value` (a string, or dicts and lists of them, recursively); other values unchanged.

    A string that is exactly one `{{ expression }}` yields the expression's native value; mixed text, a string.
    """
    if isinstance(value, str):
        return _render_text(value, context) if is_template(value) else value
    if isinstance(value, Mapping):
        return {key: render(item, context) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [render(item, context) for item in value]
    return value


def render_condition(expr: str, context: Mapping[str, Any]) -> bool:
    """Evaluate a condition (`"{{ trigger.TotalAmt > 100 }}"` or bare `"trigger.TotalAmt > 100"`) as a bool.

    Text results count as false when they read as false ("", "false", "no", "0", "none", "null", "off").
    """
    value = _render_text(_condition_text(expr), context)
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE_WORDS
    return bool(value)
