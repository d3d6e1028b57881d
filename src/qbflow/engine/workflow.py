"""Workflow files (YAML): the format, the parsed models, and validation that names file, line and field.

    name: Invoice follow-up
    description: Make sure every new invoice's customer exists, then send the invoice.
    trigger:
      key: new_invoice
      connection: acme
      poll_interval: 5m              # "30s", "5m", "1h"; default 5m, at least 30s
      filter: "{{ trigger.TotalAmt > 100 }}"
      since: 2024-05-01T00:00:00Z    # optional; a new trigger otherwise starts from now
    steps:
      - id: customer
        action: find_or_create_customer
        input:
          display_name: "{{ trigger.CustomerRef.name }}"
      - id: send
        action: send_invoice
        when: "{{ steps.customer.output.PrimaryEmailAddr is defined }}"
        input:
          id: "{{ trigger.Id }}"
      - id: note
        action: log
        input:
          message: "Sent invoice {{ trigger.DocNumber }} for {{ trigger.TotalAmt | money }}"

`validate_workflow(path)` lists every problem (never raises for a bad file); `load_workflow(path)` returns
the `Workflow` or raises `WorkflowInvalid` carrying the same problems.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_serializer,
    field_validator,
    model_serializer,
    model_validator,
)

from qbflow.connector.base import MISSING, ActionInput, problems_of
from qbflow.connector.registry import UnknownAction, action
from qbflow.connector.triggers import UnknownTrigger, trigger
from qbflow.engine import templates
from qbflow.engine.cron import MIN_EVERY, Timetable, check_cron, check_timezone
from qbflow.errors import QBFlowError

__all__ = [
    "DEFAULT_MAX_ITEMS",
    "GENERIC_STEPS",
    "STEP_KINDS",
    "MIN_POLL_INTERVAL",
    "HttpRequestInput",
    "INPUT_TYPES",
    "InputSpec",
    "LogInput",
    "Step",
    "TRIGGER_KINDS",
    "AnyTrigger",
    "ManualTrigger",
    "ScheduleTrigger",
    "TriggerSpec",
    "WebhookTrigger",
    "Workflow",
    "WorkflowInvalid",
    "WorkflowProblem",
    "input_model_for",
    "input_value_problem",
    "load_workflow",
    "load_workflow_text",
    "parse_interval",
    "trigger_kind",
    "validate_workflow",
    "validate_workflow_text",
]

DEFAULT_POLL_INTERVAL = dt.timedelta(minutes=5)
MIN_POLL_INTERVAL = dt.timedelta(seconds=30)


# --- built-in generic steps ------------------------------------------------------------------------------

class HttpRequestInput(ActionInput):
    """Input of the `http.request` step: send QBO data to any other tool."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: str = Field(pattern=r"^https?://\S+$", description="Absolute http(s) URL.")
    headers: dict[str, str] = Field(default_factory=dict)
    body: Any = Field(default=None, alias="json", description="JSON body.")

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class LogInput(ActionInput):
    """Input of the `log` step: a message written to the run's log."""

    message: str = Field(min_length=1)
    level: Literal["info", "warning", "error"] = "info"


GENERIC_STEPS: dict[str, type[ActionInput]] = {"http.request": HttpRequestInput, "log": LogInput}


def input_model_for(key: str) -> type[BaseModel]:
    """The input model of a step's action: a connector action's or a generic step's."""
    if key in GENERIC_STEPS:
        return GENERIC_STEPS[key]
    return action(key).input_model


# --- the models ------------------------------------------------------------------------------------------

_INTERVAL = re.compile(r"(\d+)\s*([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_STEP_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_interval(value: Any) -> dt.timedelta:
    """"30s", "5m", "1h30m", "1d" or a number of seconds as a timedelta."""
    if isinstance(value, dt.timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return dt.timedelta(seconds=value)
    text = str(value).strip().lower().replace(" ", "")
    if text and _INTERVAL.sub("", text) == "":
        return dt.timedelta(seconds=sum(int(n) * _UNIT_SECONDS[u] for n, u in _INTERVAL.findall(text)))
    raise ValueError(f"expected an interval such as '30s', '5m' or '1h', got {value!r}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class TriggerSpec(_Strict):
    """A QuickBooks trigger (`kind: qbo`, the default): a trigger key on one connection, polled every
    `poll_interval`."""

    kind: Literal["qbo"] = "qbo"
    key: str
    connection: str = Field(min_length=1)
    poll_interval: dt.timedelta = DEFAULT_POLL_INTERVAL
    filter: str | None = None
    since: dt.datetime | None = None
    # Changes qbflow itself wrote that do not start this workflow: its own (default; a workflow never feeds
    # itself), any qbflow workflow's on that company, or none (it sees its own changes too).
    skip_changes_by: Literal["this_workflow", "any_workflow", "none"] = "this_workflow"

    @field_validator("poll_interval", mode="before")
    @classmethod
    def _interval(cls, value: Any) -> dt.timedelta:
        interval = parse_interval(value)
        if interval < MIN_POLL_INTERVAL:
            raise ValueError(f"must be at least 30s (QuickBooks rate limits), got {value!r}")
        return interval

    @field_validator("since")
    @classmethod
    def _aware(cls, value: dt.datetime | None) -> dt.datetime | None:
        # a naive time is taken as UTC so cursors compare with QBO's timestamps
        return value.replace(tzinfo=dt.UTC) if value is not None and value.tzinfo is None else value

    @property
    def label(self) -> str:
        """How lists show the trigger."""
        return self.key

    @property
    def polled_connection(self) -> str | None:
        """The connection whose QuickBooks changes start the workflow (None for other kinds)."""
        return self.connection


class _OtherTrigger(_Strict):
    """A trigger that is not a QuickBooks poll: its runs use the workflow's `connection` for QuickBooks steps."""

    kind: str

    @property
    def label(self) -> str:
        """How lists show the trigger."""
        return self.kind

    @property
    def polled_connection(self) -> str | None:
        """None: nothing is polled in QuickBooks for it."""
        return None


_SIZE = re.compile(r"^(\d+)\s*(b|kb|k|mb|m)?$")
_SIZE_UNITS = {None: 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024 * 1024, "mb": 1024 * 1024}
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP token (RFC 9110)
MAX_WEBHOOK_BODY = 10 * 1024 * 1024


class WebhookTrigger(_OtherTrigger):
    """An inbound webhook (`kind: webhook`): `POST /hooks/<id>` on qbflow's server starts a run.

    `auth`: `hmac` (an HMAC-SHA256 of the raw body, keyed with the hook's secret, in `signature_header`, hex or
    base64, after an optional `signature_prefix` such as GitHub's "sha256="), `bearer` (`Authorization: Bearer
    <secret>`) or `stripe` (Stripe's `Stripe-Signature: t=...,v1=...` over "t.body", at most `tolerance` old).
    `delivery_id`: "header:NAME" or a template over the delivery (`{{ body.id }}`); deliveries with the same one
    start one run. Without it every accepted delivery is its own event."""

    kind: Literal["webhook"]
    auth: Literal["hmac", "bearer", "stripe"] = "hmac"
    signature_header: str | None = None  # default: X-Qbflow-Signature (hmac), Stripe-Signature (stripe)
    signature_encoding: Literal["hex", "base64"] = "hex"
    signature_prefix: str = ""
    delivery_id: str | None = None
    max_body: int = Field(default=1024 * 1024, gt=0, le=MAX_WEBHOOK_BODY)
    tolerance: int = Field(default=300, ge=1)  # seconds ("5m" in files): how old a Stripe signature may be

    @field_validator("signature_header")
    @classmethod
    def _header(cls, value: str | None) -> str | None:
        if value is not None and not _HEADER_NAME.match(value):
            raise ValueError(f"expected an HTTP header name such as 'X-Hub-Signature-256', got {value!r}")
        return value

    @field_validator("delivery_id")
    @classmethod
    def _delivery_id(cls, value: str | None) -> str | None:
        from qbflow.engine.templates import check_template, is_template

        if value is None:
            return None
        if value.lower().startswith("header:"):
            name = value.split(":", 1)[1].strip()
            if not _HEADER_NAME.match(name):
                raise ValueError(f"expected 'header:NAME' with an HTTP header name, got {value!r}")
            return f"header:{name}"
        if not is_template(value):
            raise ValueError(f"expected 'header:NAME' or a template such as '{{{{ body.id }}}}', got {value!r}")
        check_template(value)
        return value

    @field_validator("max_body", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        if isinstance(value, str):
            match = _SIZE.match(value.strip().lower())
            if not match:
                raise ValueError(f"expected a size such as '256KB' or '1MB', got {value!r}")
            return int(match.group(1)) * _SIZE_UNITS[match.group(2)]
        return value

    @field_validator("tolerance", mode="before")
    @classmethod
    def _tolerance(cls, value: Any) -> Any:
        return int(parse_interval(value).total_seconds()) if isinstance(value, str) else value

    @property
    def header(self) -> str:
        """The header that carries the signature (hmac, stripe) or the token (bearer: Authorization)."""
        if self.auth == "bearer":
            return "Authorization"
        return self.signature_header or ("Stripe-Signature" if self.auth == "stripe" else "X-Qbflow-Signature")



class ScheduleTrigger(_OtherTrigger):
    """A schedule (`kind: schedule`): a cron expression in a time zone, or an interval (`every`); each fire time
    is one event. Fire times missed while qbflow was stopped (or the workflow off) follow `catch_up`: the latest
    of them runs once (default), all of them run (at most `MAX_CATCH_UP`, the latest), or none."""

    kind: Literal["schedule"]
    cron: str | None = None
    timezone: str = "UTC"
    every: dt.timedelta | None = None
    catch_up: Literal["latest", "all", "none"] = "latest"

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return None if value is None else check_cron(value)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        check_timezone(value)
        return value

    @field_validator("every", mode="before")
    @classmethod
    def _every(cls, value: Any) -> dt.timedelta | None:
        if value is None:
            return None
        interval = parse_interval(value)
        if interval < MIN_EVERY or interval.total_seconds() % 60:
            raise ValueError(f"must be whole minutes, at least 1m, got {value!r}")
        return interval

    @field_serializer("every")
    def _every_seconds(self, value: dt.timedelta | None) -> float | None:
        return None if value is None else value.total_seconds()  # read back by parse_interval, unlike "PT15M"

    @model_validator(mode="after")
    def _one_timetable(self) -> ScheduleTrigger:
        if (self.cron is None) == (self.every is None):
            raise ValueError("a schedule needs exactly one of `cron` (e.g. '0 8 * * MON') or `every` (e.g. '15m')"
                             + (", not both" if self.cron is not None else ""))
        return self

    @property
    def label(self) -> str:
        """How lists show the trigger: "schedule 0 8 * * MON America/New_York" or "schedule every 15m"."""
        if self.cron is not None:
            return f"schedule {self.cron}" + (f" {self.timezone}" if self.timezone != "UTC" else "")
        seconds = int(self.every.total_seconds()) if self.every else 0
        return "schedule every " + _interval_text(seconds)

    def timetable(self) -> Timetable:
        """When it fires."""
        return Timetable(cron=self.cron, every=self.every, zone=check_timezone(self.timezone))


def _interval_text(seconds: int) -> str:
    parts = [(seconds // 86400, "d"), (seconds % 86400 // 3600, "h"), (seconds % 3600 // 60, "m"), (seconds % 60, "s")]
    return "".join(f"{n}{unit}" for n, unit in parts if n) or "0s"


class ManualTrigger(_OtherTrigger):
    """Started by a person (`kind: manual`): `qbflow workflow run`, the API or the dashboard's "Run now", with the
    values of the workflow's declared `inputs:` (templates see them as `trigger.inputs.<name>`)."""

    kind: Literal["manual"]


INPUT_TYPES = ("string", "number", "integer", "boolean", "date", "object", "array")


class InputSpec(_Strict):
    """One declared input of a manually started workflow (`inputs: {name: {type, required, default, ...}}`)."""

    type: Literal["string", "number", "integer", "boolean", "date", "object", "array"] = "string"
    required: bool = False
    default: Any = None
    description: str | None = None

    @model_validator(mode="after")
    def _default_fits(self) -> InputSpec:
        if self.default is not None:
            problem = input_value_problem(self.type, self.default)
            if problem:
                raise ValueError(f"default {self.default!r} does not fit: {problem}")
        return self


def input_value_problem(kind: str, value: Any) -> str | None:
    """Why `value` is not a valid value of an input of type `kind` (None: it is)."""
    fits = {
        "string": isinstance(value, str),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "boolean": isinstance(value, bool),
        "object": isinstance(value, dict),
        "array": isinstance(value, list),
        "date": isinstance(value, dt.date) or (isinstance(value, str) and _is_date(value)),
    }[kind]
    if fits:
        return None
    expected = {"date": "a date as YYYY-MM-DD", "integer": "a whole number", "object": "an object (a mapping)",
                "array": "an array (a list)", "boolean": "true or false"}.get(kind, f"a {kind}")
    return f"expected {expected}, got {type(value).__name__} {value!r}"


def _is_date(text: str) -> bool:
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == 10



TRIGGER_KINDS: dict[str, type[BaseModel]] = {
    "qbo": TriggerSpec, "webhook": WebhookTrigger, "schedule": ScheduleTrigger, "manual": ManualTrigger}


def trigger_kind(value: Any) -> str:
    """The kind of a trigger given as data or model: its `kind`, "qbo" when it names none (older files)."""
    if isinstance(value, Mapping):
        return str(value.get("kind") or "qbo")
    return str(getattr(value, "kind", "qbo"))


AnyTrigger = Annotated[
    Annotated[TriggerSpec, Tag("qbo")] | Annotated[WebhookTrigger, Tag("webhook")]
    | Annotated[ScheduleTrigger, Tag("schedule")] | Annotated[ManualTrigger, Tag("manual")],
    Discriminator(trigger_kind),
]


# The YAML key that says what kind of step a mapping is, and the other keys each kind takes (besides `id` and
# `when`). `engine/steps` registers how each kind validates and runs; a step has exactly one kind key.
STEP_KINDS: dict[str, tuple[str, ...]] = {
    "action": ("connection", "input"),
    "set": (),
    "if": ("then", "else"),
    "switch": ("cases", "default"),
    "for_each": ("steps", "as", "concurrency", "max_items"),
    "wait": (),
    "until": (),
    "approval": ("notify",),
}
DEFAULT_MAX_ITEMS = 1000
MAX_CONCURRENCY = 50
_COMMON_KEYS = ("id", "when")


class ApprovalSpec(_Strict):
    """What an `approval` step asks: `message` and `approvers` (templates), how long they have, and the outcome
    when nobody answers in time."""

    message: str = ""
    approvers: list[str] | str = Field(default_factory=list)
    timeout: dt.timedelta = dt.timedelta(days=3)
    on_timeout: Literal["approved", "rejected"] = "rejected"

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: Any) -> dt.timedelta:
        interval = parse_interval(value)
        if interval <= dt.timedelta(0):
            raise ValueError(f"must be a positive duration such as '3d' or '4h', got {value!r}")
        return interval

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        data["timeout"] = self.timeout.total_seconds()  # read back by parse_interval
        return data


class Step(_Strict):
    """One step of a workflow. What it is comes from its one kind key:

    - `action: KEY` (a connector action, "http.request" or "log") with `input` and `connection`;
    - `set: {name: template}`;
    - `if: COND` with `then: [steps]` and optional `else: [steps]`;
    - `switch: VALUE` with `cases: {value: [steps]}` and optional `default: [steps]`;
    - `for_each: LIST` with `steps: [steps]`, `as` (default "item"), `concurrency` (default 1), `max_items`;
    - `wait: DURATION` ("30s", "3d") or `until: TIME` (a template giving an ISO date-time);
    - `approval: {message, approvers, timeout, on_timeout}` with optional `notify: [steps]` (run once the
      approval exists, with `approval.url` & co. in their templates); the run then waits for the decision.

    Every step may have `when: COND` (false: the step is skipped).
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, populate_by_name=True,
                              serialize_by_alias=True)

    id: str
    when: str | None = None
    action: str | None = None
    connection: str | None = None
    input: dict[str, Any] = Field(default_factory=dict)
    set_: dict[str, Any] | None = Field(default=None, alias="set")
    if_: str | None = Field(default=None, alias="if")
    then: list[Step] | None = None
    else_: list[Step] | None = Field(default=None, alias="else")
    switch: str | None = None
    cases: dict[str, list[Step]] | None = None
    default: list[Step] | None = None
    for_each: str | list[Any] | None = None
    steps: list[Step] | None = None
    as_: str = Field(default="item", alias="as")
    concurrency: int = Field(default=1, ge=1, le=MAX_CONCURRENCY)
    max_items: int = Field(default=DEFAULT_MAX_ITEMS, ge=1)
    wait: str | int | float | None = None
    until: str | None = None
    approval: ApprovalSpec | None = None
    notify: list[Step] | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _STEP_ID.match(value):
            raise ValueError(f"a step id is letters, digits and underscores, not starting with a digit "
                             f"(templates use it as steps.<id>), got {value!r}")
        if len(value) > MAX_STEP_ID:
            raise ValueError(f"a step id is at most {MAX_STEP_ID} characters, got {len(value)}")
        return value

    @field_validator("as_")
    @classmethod
    def _as(cls, value: str) -> str:
        if not _STEP_ID.match(value) or value in ("trigger", "steps", "run", "loop", "error"):
            raise ValueError(f"`as` names the item in templates: letters, digits and underscores, and not one of "
                             f"trigger, steps, run, loop, error; got {value!r}")
        return value

    @field_validator("wait")
    @classmethod
    def _wait(cls, value: Any) -> Any:
        if value is not None:
            parse_interval(value)
        return value

    @field_validator("cases", mode="before")
    @classmethod
    def _case_keys(cls, value: Any) -> Any:
        # YAML reads `1:` or `true:` as a number or a bool; a case matches the switch value's text
        if isinstance(value, dict):
            return {_case_text(key): item for key, item in value.items()}
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Step:
        kinds = self.kinds_given()
        if not kinds:
            raise ValueError("a step needs one of the keys " + ", ".join(STEP_KINDS)
                             + " (what the step does)")
        if len(kinds) > 1:
            raise ValueError(f"a step has exactly one of {', '.join(STEP_KINDS)}; this one has "
                             + " and ".join(kinds))
        kind = kinds[0]
        allowed = set(STEP_KINDS[kind]) | set(_COMMON_KEYS) | {kind}
        for name in self.model_fields_set:
            key = _alias(name)
            if key not in allowed:
                raise ValueError(f"{key!r} does not belong to a {kind!r} step (it takes "
                                 + ", ".join(sorted(allowed - {"id"})) + ")")
        if kind == "if" and self.then is None:
            raise ValueError("an `if` step needs `then: [steps]`")
        if kind == "switch" and self.cases is None:
            raise ValueError("a `switch` step needs `cases: {value: [steps]}`")
        if kind == "for_each" and self.steps is None:
            raise ValueError("a `for_each` step needs `steps: [steps]` (what to do for each item)")
        return self

    def kinds_given(self) -> list[str]:
        return [kind for kind in STEP_KINDS if getattr(self, _FIELD.get(kind, kind)) is not None]

    @property
    def kind(self) -> str:
        """The step's kind key: "action", "set", "if", "switch", "for_each", or "wait" (for wait and until)."""
        kind = self.kinds_given()[0]
        return "wait" if kind == "until" else kind

    @property
    def type_name(self) -> str:
        """The registered step type: a generic action's key ("http.request", "log"), "action" for connector
        actions, else the kind."""
        if self.kind == "action":
            return self.action if self.action is not None and self.action in GENERIC_STEPS else "action"
        return self.kind

    @property
    def label(self) -> str:
        """How messages name what the step does: its action key, or its kind."""
        return self.action if self.action is not None else self.kind

    @property
    def is_generic(self) -> bool:
        return self.action in GENERIC_STEPS

    def branches(self) -> list[tuple[str, list[Step]]]:
        """The nested step lists: ("then", [...]), ("else", [...]), ("cases.X", [...]), ("default", [...]),
        ("steps", [...])."""
        found: list[tuple[str, list[Step]]] = []
        if self.then is not None:
            found.append(("then", self.then))
        if self.else_ is not None:
            found.append(("else", self.else_))
        for value, steps in (self.cases or {}).items():
            found.append((f"cases.{value}", steps))
        if self.default is not None:
            found.append(("default", self.default))
        if self.steps is not None:
            found.append(("steps", self.steps))
        if self.notify is not None:
            found.append(("notify", self.notify))
        return found

    def walk(self) -> Iterable[Step]:
        """This step and every step nested in it, depth first."""
        yield self
        for _, steps in self.branches():
            for step in steps:
                yield from step.walk()

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        # Only the keys of the step's kind: a stored definition reads like the file it came from.
        data = handler(self)
        kinds = self.kinds_given()
        keep = set(_COMMON_KEYS) | {k for kind in kinds for k in (kind, *STEP_KINDS[kind])}
        return {key: value for key, value in data.items()
                if key in keep and (value is not None or key in ("when", "connection"))}


_FIELD = {"set": "set_", "if": "if_"}
_ALIAS = {"set_": "set", "if_": "if", "else_": "else", "as_": "as"}
MAX_STEP_ID = 64


def _alias(name: str) -> str:
    return _ALIAS.get(name, name)


def _case_text(value: Any) -> str:
    """A switch value or case key as text: true/false lower case, 1.0 as "1", None as ""."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class Workflow(_Strict):
    """A parsed, valid workflow file. Connector steps without a connection use the trigger's."""

    name: str = Field(min_length=1)
    description: str | None = None
    trigger: AnyTrigger
    # The connection of QuickBooks steps that name none: the trigger's for a `qbo` trigger, else this one.
    connection: str | None = Field(default=None, min_length=1)
    # What a manual run is given (`trigger.inputs.<name>`): only with `kind: manual`.
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    steps: list[Step] = Field(min_length=1)
    on_error: list[Step] = Field(default_factory=list)  # run when a run fails for good, `error` in templates
    source: str | None = Field(default=None, exclude=True)  # the file it came from

    @field_validator("inputs")
    @classmethod
    def _input_names(cls, value: dict[str, InputSpec]) -> dict[str, InputSpec]:
        for name in value:
            if not _STEP_ID.match(name):
                raise ValueError(f"an input's name is letters, digits and underscores, not starting with a digit "
                                 f"(templates use it as trigger.inputs.<name>), got {name!r}")
        return value

    @model_validator(mode="after")
    def _default_connections(self) -> Workflow:
        default = self.trigger.polled_connection or self.connection
        for step in self.walk():
            if step.kind == "action" and step.connection is None and not step.is_generic:
                step.connection = default
        return self

    def walk(self) -> Iterable[Step]:
        """Every step, nested ones and `on_error` ones included, depth first."""
        for step in [*self.steps, *self.on_error]:
            yield from step.walk()

    def step(self, step_id: str) -> Step:
        """The step with this id, at any depth (KeyError if none)."""
        for step in self.walk():
            if step.id == step_id:
                return step
        raise KeyError(step_id)


# --- problems --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WorkflowProblem:
    """One thing wrong with a workflow file: where (file, line, field path) and what."""

    file: str
    line: int | None
    field: str  # e.g. "steps[1].input.customer"; "" for the whole file
    message: str
    severity: Literal["error", "warning"] = "error"  # a warning is shown but does not make the file invalid

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        message = f"warning: {self.message}" if self.severity == "warning" else self.message
        return f"{where}: {self.field}: {message}" if self.field else f"{where}: {message}"


class WorkflowInvalid(QBFlowError):
    """A workflow file has problems; `.problems` lists each with file, line and field (errors only)."""

    def __init__(self, source: str, problems: list[WorkflowProblem]) -> None:
        self.source = source
        self.problems = tuple(p for p in problems if p.is_error) or tuple(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{source}: the workflow is not valid ({len(self.problems)} problems):\n{lines}")


Path_ = tuple[str | int, ...]


def _path_text(path: Iterable[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else ("." if text else "") + str(part)
    return text


_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _path_parts(text: str) -> Path_:
    """"lines[1].amount" -> ("lines", 1, "amount")."""
    if text in ("", "input"):
        return ()
    return tuple(int(m.group(2)) if m.group(2) is not None else m.group(1) for m in _PATH_PART.finditer(text))


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


# --- YAML with line numbers ------------------------------------------------------------------------------

class _Loader(yaml.SafeLoader):
    """Safe YAML without implicit timestamps: dates stay text, as in JSON (pydantic parses them)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class _Lines:
    """Where each key and value of a composed YAML document is, by path ("steps", 1, "input", "x")."""

    def __init__(self, root: yaml.Node) -> None:
        self.key: dict[Path_, int] = {}
        self.value: dict[Path_, int] = {}
        self.nodes: dict[Path_, yaml.Node] = {}
        self.duplicates: list[tuple[Path_, int, int]] = []  # path, line, first line
        self._walk(root, ())

    def _walk(self, node: yaml.Node, path: Path_) -> None:
        self.nodes[path] = node
        self.value.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.start_mark)
                child = (*path, key)
                line = key_node.start_mark.line + 1
                if child in self.key:
                    self.duplicates.append((child, line, self.key[child]))
                    continue
                self.key[child] = line
                self._walk(value_node, child)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.key[(*path, index)] = item.start_mark.line + 1
                self._walk(item, (*path, index))

    def of_key(self, path: Path_) -> int | None:
        """The line of the key at `path`, or of the nearest enclosing thing that exists."""
        while path:
            if path in self.key:
                return self.key[path]
            path = path[:-1]
        return self.value.get(())

    def of_value(self, path: Path_) -> int | None:
        """The line where the value at `path` starts, or of the nearest enclosing thing that exists."""
        while path:
            if path in self.value:
                return self.value[path]
            path = path[:-1]
        return self.value.get(())

    def template_line(self, path: Path_, line_in_template: int | None) -> int | None:
        """The file line of a line inside a template string (block scalars start on the next line)."""
        start = self.of_value(path)
        if start is None or not line_in_template:
            return start
        node = self.nodes.get(path)
        offset = 0 if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">") else -1
        return start + line_in_template + offset


# --- validation ------------------------------------------------------------------------------------------

class _Checker:
    def __init__(self, source: str, text: str, connections: Collection[str] | None) -> None:
        self.source = source
        self.text = text
        self.connections = None if connections is None else set(connections)
        self.problems: list[WorkflowProblem] = []
        self.lines: _Lines | None = None
        self.data: Any = None

    def add(self, path: Path_, message: str, *, line: int | None = None, at: str = "value",
            severity: Literal["error", "warning"] = "error") -> None:
        if line is None and self.lines is not None:
            line = self.lines.of_key(path) if at == "key" else self.lines.of_value(path)
        self.problems.append(WorkflowProblem(self.source, line, _path_text(path), message, severity))

    def run(self) -> Workflow | None:
        data = self._parse_yaml()
        if data is None:
            return None
        workflow = self._check_structure(data)
        self._check_meaning(data)
        self.problems.sort(key=lambda p: (p.line or 0, p.field))
        return workflow if not any(p.is_error for p in self.problems) else None

    def _parse_yaml(self) -> dict | None:
        loader = None
        try:
            loader = _Loader(self.text)  # refuses control characters (ReaderError) already
            root = loader.get_single_node()
            data = loader.construct_document(root) if root is not None else None
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
            problem = getattr(error, "problem", None) or str(error)
            context = getattr(error, "context", None)
            message = f"YAML syntax error: {problem}" + (f" ({context})" if context else "")
            position = getattr(error, "position", None)  # a ReaderError's character offset
            line = mark.line + 1 if mark else self.text.count("\n", 0, position) + 1 if position is not None else None
            self.add((), message, line=line)
            return None
        finally:
            if loader is not None:
                loader.dispose()
        if root is None:
            self.add((), "the file is empty; a workflow needs name, trigger and steps", line=1)
            return None
        self.lines = _Lines(root)
        for path, line, first in self.lines.duplicates:
            self.add(path, f"duplicate key {path[-1]!r} (first at line {first}); YAML would keep only the last",
                     line=line)
        if not isinstance(data, dict):
            self.add((), "a workflow file is a mapping with name, trigger and steps", line=1)
            return None
        return data

    def _check_structure(self, data: dict) -> Workflow | None:
        """Required keys, unknown keys and value types, from the models."""
        self.data = data
        try:
            return Workflow.model_validate({**data, "source": self.source})
        except ValidationError as error:
            for item in error.errors(include_url=False):
                path = tuple(item["loc"])
                if path and path[0] == "source":
                    continue
                if len(path) >= 2 and path[0] == "trigger" and path[1] in TRIGGER_KINDS:
                    path = (path[0], *path[2:])  # the union's tag is not a key of the file
                if item["type"] == "union_tag_invalid":
                    kind = item["input"].get("kind") if isinstance(item["input"], Mapping) else None
                    self.add((*path, "kind"), f"unknown trigger kind {kind!r}{_suggest(str(kind), TRIGGER_KINDS)} "
                             f"(known: {', '.join(TRIGGER_KINDS)})")
                    continue
                if _in_input(path):
                    continue  # inputs are checked against the action's model below, with templates in mind
                kind = item["type"]
                if kind == "missing":
                    self.add(path, f"required key {path[-1]!r} is missing", line=self._parent_line(path))
                elif kind == "extra_forbidden":
                    self.add(path, f"unknown key {path[-1]!r}{_suggest(str(path[-1]), self._known_keys(path))}",
                             at="key")
                else:
                    message = re.sub(r"^(Value error, )", "", item["msg"]).replace("Input should be", "expected")
                    message = re.sub(r"a valid dictionary( or instance of \w+)?", "a mapping", message)
                    self.add(path, message)
        return None

    def _parent_line(self, path: Path_) -> int | None:
        assert self.lines is not None
        parent = path[:-1]
        return self.lines.of_key(parent) if parent else 1

    def _known_keys(self, path: Path_) -> list[str]:
        model: type[BaseModel] = Workflow
        if path[0] == "trigger":
            spec = self.data.get("trigger") if isinstance(self.data, dict) else None
            model = TRIGGER_KINDS.get(trigger_kind(spec if isinstance(spec, Mapping) else {}), TriggerSpec)
        elif len(path) > 2 and path[-2] == "approval":
            return list(ApprovalSpec.model_fields)
        elif path[0] == "inputs":
            return list(InputSpec.model_fields)
        elif len(path) > 1:
            return [_alias(name) for name in Step.model_fields]
        return [name for name in model.model_fields if name != "source"]

    def _check_meaning(self, data: dict) -> None:
        """Keys that exist, connections, inputs and templates."""
        spec = data.get("trigger")
        trigger_connection = data.get("connection")
        if isinstance(trigger_connection, str):
            self._check_connection(("connection",), trigger_connection)
        if data.get("inputs") and isinstance(spec, dict) and trigger_kind(spec) != "manual":
            self.add(("inputs",), f"only a manual trigger (`kind: manual`) takes inputs; this one is "
                     f"{trigger_kind(spec)!r}", at="key")
        if isinstance(spec, dict) and trigger_kind(spec) == "qbo":
            key = spec.get("key")
            if isinstance(key, str):
                try:
                    trigger(key)
                except UnknownTrigger as error:
                    self.add(("trigger", "key"), str(error))
            trigger_connection = spec.get("connection")
            self._check_connection(("trigger", "connection"), trigger_connection)
            if isinstance(spec.get("filter"), str):
                self._check_template(("trigger", "filter"), spec["filter"], earlier=[], condition=True,
                                     where="the trigger's filter runs before any step")
        self._check_all_steps(data, trigger_connection)

    # -- steps: a walk over the tree, with what has run at each place ----------------------------------

    def _check_all_steps(self, data: dict, trigger_connection: Any) -> None:
        self.trigger_connection = trigger_connection
        self.all_ids: dict[str, Path_] = {}
        for key in ("steps", "on_error"):
            if isinstance(data.get(key), list):
                self._collect_ids(data[key], (key,))
        scope = _Scope()
        if isinstance(data.get("steps"), list):
            self._check_steps(data["steps"], ("steps",), scope)
        if isinstance(data.get("on_error"), list):
            after = _Scope(names={"error"})
            for step_id in scope.sure | set(scope.maybe):
                after.maybe[step_id] = "may not have run before the error"
            self._check_steps(data["on_error"], ("on_error",), after)

    def _collect_ids(self, steps: list, base: Path_) -> None:
        for index, step in enumerate(steps):
            if not isinstance(step, dict):
                continue
            path = (*base, index)
            step_id = step.get("id")
            if isinstance(step_id, str):
                first = self.all_ids.get(step_id)
                if first is None:
                    self.all_ids[step_id] = path
                else:
                    line = self.lines.of_value((*first, "id")) if self.lines else None
                    self.add((*path, "id"), f"duplicate step id {step_id!r}: {_path_text(first)} (line {line}) "
                             "already uses it (step ids are unique in the whole workflow)")
            for child, steps_in in _nested(step, path):
                self._collect_ids(steps_in, child)

    def _qbo_trigger(self) -> bool:
        spec = self.data.get("trigger") if isinstance(self.data, dict) else None
        return not isinstance(spec, Mapping) or trigger_kind(spec) == "qbo"

    def _check_steps(self, steps: list, base: Path_, scope: _Scope) -> None:
        """Check steps in order; `scope` learns which ids have run after each."""
        for index, step in enumerate(steps):
            if isinstance(step, dict):
                self._check_one(step, (*base, index), scope)

    def _check_one(self, step: dict, path: Path_, scope: _Scope) -> None:
        from qbflow.engine.steps import step_types  # the registry imports this module

        if isinstance(step.get("when"), str):
            self._check_template((*path, "when"), step["when"], scope=scope, condition=True)
        kinds = [kind for kind in STEP_KINDS if step.get(kind) is not None]
        step_id = step.get("id") if isinstance(step.get("id"), str) else None
        if len(kinds) == 1:
            kind = "wait" if kinds[0] == "until" else kinds[0]
            name = kind
            if kind == "action" and step.get("action") in GENERIC_STEPS:
                name = step["action"]
            step_types()[name].check(self, step, path, scope)
            self._check_nested(kind, step, path, scope, step_id)
        if step_id is not None:
            if step.get("when") is not None:
                scope.maybe[step_id] = "has a `when`"
            else:
                scope.sure.add(step_id)

    def _check_nested(self, kind: str, step: dict, path: Path_, scope: _Scope, step_id: str | None) -> None:
        label = f"{kind} {step_id!r}" if step_id else kind
        if kind in ("if", "switch"):
            for child, steps in _nested(step, path):
                inner = scope.copy()
                self._check_steps(steps, child, inner)
                where = _path_text(child[len(path):])
                for new in inner.new_since(scope):
                    scope.maybe[new] = f"runs only in {where} of {label}"
        elif kind == "for_each":
            name = step.get("as", "item")
            inner = scope.copy()
            inner.names |= {name if isinstance(name, str) else "item", "loop"}
            for child, steps in _nested(step, path):
                self._check_steps(steps, child, inner)
            for new in inner.new_since(scope):
                scope.hidden[new] = step_id or "?"
        elif kind == "approval":
            inner = scope.copy()
            inner.names |= {"approval"}
            for child, steps in _nested(step, path):
                self._check_steps(steps, child, inner)
            scope.sure |= inner.sure  # notify steps run before the run waits, on every path through the step
            scope.maybe.update({k: v for k, v in inner.maybe.items() if k not in scope.maybe})

    # -- what step types call ------------------------------------------------------------------------

    def check_expression(self, path: Path_, value: Any, scope: _Scope, *, condition: bool = False) -> None:
        """The templates in a step's option (a text, or a mapping / list of them)."""
        for inner, text in _strings(value, ()):
            if templates.is_template(text) or (condition and not inner):
                self._check_template((*path, *inner), text, scope=scope, condition=condition)

    def check_action_step(self, step: dict, base: Path_, scope: _Scope) -> None:
        key = step.get("action")
        model: type[BaseModel] | None = None
        if isinstance(key, str):
            try:
                model = input_model_for(key)
            except UnknownAction as error:
                generic = difflib.get_close_matches(key, list(GENERIC_STEPS), n=1, cutoff=0.6)
                message = f"unknown action {key!r}; did you mean {generic[0]!r}?" if generic else str(error)
                self.add((*base, "action"), message)
        if model is not None and key not in GENERIC_STEPS:
            if "connection" in step:
                self._check_connection((*base, "connection"), step["connection"])
            elif self.trigger_connection is None and not self._qbo_trigger():
                self.add((*base, "action"), f"{key!r} works on a QuickBooks company, and this workflow's trigger "
                         "has no connection: set `connection:` on the step or on the workflow")
            else:
                self._check_connection((*base, "connection"), self.trigger_connection, inherited=True)
        raw_input = step.get("input", {})
        if raw_input is None:
            raw_input = {}
        if not isinstance(raw_input, dict):
            return  # reported by the structure check
        templated: list[Path_] = []
        for path, text in _strings(raw_input, ()):
            if templates.is_template(text):
                templated.append(path)
                self._check_template((*base, "input", *path), text, scope=scope)
        if model is not None:
            self._check_input(base, model, raw_input, templated)

    def _check_connection(self, path: Path_, name: Any, *, inherited: bool = False) -> None:
        if self.connections is None or not isinstance(name, str) or name in self.connections:
            return
        if inherited:
            return  # the trigger's missing connection is reported once, at the trigger
        known = ", ".join(sorted(self.connections)) or "none yet"
        self.add(path, f"no connection named {name!r}{_suggest(name, self.connections)} "
                       f"(known: {known}; `qbflow connect` adds one)")

    def _check_input(self, base: Path_, model: type[BaseModel], raw_input: dict, templated: list[Path_]) -> None:
        known = {name for name in model.model_fields} | {
            f.alias for f in model.model_fields.values() if f.alias}
        unknown = {name for name in raw_input if name not in known}
        meant: set[str] = set()  # a misspelt field is not reported missing as well
        for name in sorted(unknown):
            close = difflib.get_close_matches(str(name), sorted(known), n=1, cutoff=0.6)
            meant.update(close)
            hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(sorted(known))})"
            self.add((*base, "input", name), f"unknown input field {name!r}{hint}", at="key")
        try:
            model.model_validate(raw_input)
            return
        except ValidationError as error:
            problems = problems_of(error)
        for problem in problems:
            path = _path_parts(problem.field)
            if path and (path[0] in unknown or (path[0] in meant and problem.value is MISSING)):
                continue
            if templated and (not path or any(_related(path, t) for t in templated)):
                continue  # a template's value is known only when the step runs
            self.add((*base, "input", *path), problem.describe().removeprefix(f"{problem.field}: "),
                     at="key" if problem.value is MISSING else "value")

    def _check_template(self, path: Path_, text: str, *, earlier: list[str] | None = None,
                        scope: _Scope | None = None, condition: bool = False, where: str = "") -> None:
        if scope is None:
            scope = _Scope(sure=set(earlier or ()))
        try:
            steps_used = templates.referenced_steps(text, condition=condition)
            names = templates.unknown_names(text, condition=condition, known=scope.names)
        except templates.TemplateError as error:
            line = self.lines.template_line(path, error.line) if self.lines else None
            self.add(path, f"template {error.problem}", line=line)
            return
        for name in sorted(names):
            seen = sorted(templates.CONTEXT_NAMES | scope.names)
            self.add(path, f"unknown name {name!r} in template{_suggest(name, seen)} "
                           f"(templates see {', '.join(seen)})")
        all_ids = getattr(self, "all_ids", {})
        for step_id in sorted(steps_used):
            if step_id in scope.sure:
                continue
            if where:
                self.add(path, f"template uses steps.{step_id}, but {where}")
            elif step_id in scope.maybe:
                self.add(path, f"template uses steps.{step_id}, which may not have run here (it "
                               f"{scope.maybe[step_id]}); test `'{step_id}' in steps` first, or give this "
                               "step a `when`",
                         severity="warning")
            elif step_id in scope.hidden:
                loop = scope.hidden[step_id]
                self.add(path, f"template uses steps.{step_id}, which is inside for_each {loop!r}: after the loop "
                               f"read steps.{loop}.output (one entry per item, e.g. "
                               f"steps.{loop}.output[0].{step_id})")
            elif step_id in all_ids:
                self.add(path, f"template uses steps.{step_id}, which runs at or after this step "
                               f"({_path_text(all_ids[step_id])}); only earlier steps' outputs are available")
            else:
                self.add(path, f"template uses steps.{step_id}, but there is no such earlier step"
                               f"{_suggest(step_id, scope.sure | set(scope.maybe))}")


@dataclass
class _Scope:
    """What a template at some place of the tree may read: ids that ran on every path to it (`sure`), ids that
    may not have (`maybe`, with why), ids inside loops it is outside of (`hidden`, id -> loop), and names
    besides trigger/steps/run (a loop's item and `loop`, `error`)."""

    sure: set[str] = field(default_factory=set)
    maybe: dict[str, str] = field(default_factory=dict)
    hidden: dict[str, str] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)

    def copy(self) -> _Scope:
        return _Scope(set(self.sure), dict(self.maybe), dict(self.hidden), set(self.names))

    def new_since(self, before: _Scope) -> set[str]:
        known = before.sure | set(before.maybe) | set(before.hidden)
        return (self.sure | set(self.maybe) | set(self.hidden)) - known


def _nested(step: dict, path: Path_) -> Iterable[tuple[Path_, list]]:
    """The nested step lists of a step's mapping, with their paths."""
    for key in ("then", "else", "default", "steps", "notify"):
        if isinstance(step.get(key), list):
            yield (*path, key), step[key]
    cases = step.get("cases")
    if isinstance(cases, dict):
        for value, steps in cases.items():
            if isinstance(steps, list):
                yield (*path, "cases", value), steps


def _in_input(path: Path_) -> bool:
    """Whether a path lies inside a step's `input` (below the input mapping itself)."""
    return any(part == "input" and i > 0 and isinstance(path[i - 1], int) and i + 1 < len(path)
               for i, part in enumerate(path))


def _related(path: Path_, templated: Path_) -> bool:
    """Whether one path is the other or lies inside it (either way)."""
    n = min(len(path), len(templated))
    return path[:n] == templated[:n]


def _strings(value: Any, path: Path_) -> Iterable[tuple[Path_, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*path, index))


# --- the API ---------------------------------------------------------------------------------------------

def validate_workflow_text(text: str, *, source: str = "<workflow>",
                           connections: Collection[str] | None = None) -> list[WorkflowProblem]:
    """Every problem of a workflow given as YAML text, in line order; [] when it is valid."""
    checker = _Checker(source, text, connections)
    checker.run()
    return checker.problems


def validate_workflow(path: str | Path, *, connections: Collection[str] | None = None) -> list[WorkflowProblem]:
    """Every problem of a workflow file, each naming the file, line and field; [] when it is valid.

    With `connections` (the names of the connections that exist) a step or trigger using another is a problem.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        return [WorkflowProblem(str(path), None, "", f"cannot read the file: {error}")]
    return validate_workflow_text(text, source=str(path), connections=connections)


def load_workflow_text(text: str, *, source: str = "<workflow>",
                       connections: Collection[str] | None = None) -> Workflow:
    """The workflow in YAML text, or WorkflowInvalid listing every problem."""
    checker = _Checker(source, text, connections)
    workflow = checker.run()
    if workflow is None:
        raise WorkflowInvalid(source, checker.problems)
    return workflow


def load_workflow(path: str | Path, *, connections: Collection[str] | None = None) -> Workflow:
    """The workflow in a file, or WorkflowInvalid listing every problem (file, line, field, message)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise WorkflowInvalid(str(path), [WorkflowProblem(str(path), None, "", f"cannot read the file: {error}")]) \
            from None
    return load_workflow_text(text, source=str(path), connections=connections)

