"""What every step type shares: the `StepType` protocol and registry, where an execution is (`At`), the
failures a step raises, and rendering helpers.

A step type says which YAML key marks it, which other keys it takes, how validation checks it, how it runs and
whether it writes:

    class SetType:
        name = key = "set"
        options = ()
        def writes(self, step): return False
        def input_model(self, step): return None
        def check(self, checker, step, path, scope): ...        # extra checks beyond the Step model's
        async def run(self, ex, step, at, context): return ex.render(step.set_, context, "set")

    register(SetType())

Ledger paths (`At.path`): a top-level step's path is its id (so request ids of plain workflows never change);
a step nested in `if`/`switch` is `<parent path>.<id>`; a step inside a `for_each` iteration is
`<loop path>[<index>].<id>`; `on_error` steps are `on_error.<id>`. Request ids are
`request_id_for(run.uid, path)`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import httpx
from pydantic import BaseModel

from qbflow.connector.base import ActionInputError
from qbflow.connector.refs import ReferenceError as RefError
from qbflow.engine import templates
from qbflow.engine.steps.generic import HttpStepError
from qbflow.engine.templates import TemplateError
from qbflow.engine.workflow import Step
from qbflow.qbo.errors import NeedsReconnect, QBOError, RateLimited, Transient
from qbflow.store.runs import StepRecord

if TYPE_CHECKING:
    from qbflow.engine.executor import Execution

__all__ = [
    "MAX_PATH",
    "At",
    "StepFailed",
    "StepReport",
    "StepType",
    "WaitUntil",
    "classify",
    "error_json",
    "jsonable",
    "register",
    "render_input",
    "step_type",
    "step_types",
]

Kind = Literal["transient", "reconnect", "permanent"]
MAX_PATH = 500  # step_results.step_id holds this many characters (migration 0005)


# --- what an execution is and reports --------------------------------------------------------------------

@dataclass
class StepReport:
    """One step execution of a test run (`qbflow workflow test`): its rendered input and output (or error),
    how long it took, and the executions nested in it (an `if`'s branch, each `for_each` iteration's steps)."""

    __test__ = False

    id: str
    action: str
    skipped: bool = False
    dry_run: bool = False
    input: Any = None
    output: Any = None
    error: dict[str, Any] | None = None
    ms: float = 0.0
    path: str = ""
    steps: list[StepReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and all(step.ok for step in self.steps)


@dataclass
class At:
    """Where one execution of a step is: its ledger path and position, its ledger entry from earlier attempts,
    the outputs in scope (id -> output, the steps that ran before it where it is), the names the template
    context gets besides trigger/steps/run, and (in a test run) its report."""

    path: str
    position: int
    entry: StepRecord | None
    outputs: dict[str, Any]
    names: dict[str, Any]
    report: StepReport | None = None


class StepType(Protocol):
    """A kind of step. `key` is the YAML key that marks it (`action` for connector actions, `http.request` and
    `log`, which `name` tells apart); `options` the other keys it takes besides id and when."""

    name: str
    key: str
    options: tuple[str, ...]

    def writes(self, step: Step) -> bool:
        """Whether running it may change something outside qbflow (it then gets a "sent" mark first and a
        request id; a dry run does not send it)."""
        ...

    def input_model(self, step: Step) -> type[BaseModel] | None:
        """The model its `input` is checked against, if it has one."""
        ...

    def check(self, checker: Any, step: dict[str, Any], path: tuple[str | int, ...], scope: Any) -> None:
        """Validation beyond the Step model's shape: templates, inputs (`checker` is workflow._Checker)."""
        ...

    async def run(self, ex: Execution, step: Step, at: At, context: dict[str, Any]) -> Any:
        """Execute it (`when` was true); the output. Raises StepFailed / WaitUntil, or any error, which the
        executor classifies."""
        ...


_REGISTRY: dict[str, StepType] = {}


def register(kind: StepType) -> StepType:
    _REGISTRY[kind.name] = kind
    return kind


def step_types() -> dict[str, StepType]:
    """Every registered step type by name."""
    from qbflow.engine.steps import actions, approval, flow  # noqa: F401  (registering happens on import)

    return dict(_REGISTRY)


def step_type(step: Step) -> StepType:
    """The registered type of a parsed step."""
    if not _REGISTRY:
        step_types()
    return _REGISTRY[step.type_name]


# --- failures ----------------------------------------------------------------------------------------------

class StepFailed(Exception):
    """A step failed (and its failure is recorded). `kind` decides what happens to the run."""

    def __init__(self, kind: Kind, error: dict[str, Any], retry_after: float | None = None, *, tries: int = 1,
                 first_try: dt.datetime | None = None) -> None:
        self.kind = kind
        self.error = error
        self.retry_after = retry_after
        self.tries = tries  # tries of the failed step so far, this one included
        self.first_try = first_try
        self.path = ""  # the failing execution's ledger path and what it does, set by the executor
        self.label = ""
        super().__init__(error.get("message", ""))


class WaitUntil(Exception):  # noqa: N818 - a control signal, not an error
    """A `wait` step's time has not come: the run is stored as waiting until `until` and gives its place up."""

    def __init__(self, until: dt.datetime, path: str, *, recheck: Callable[[], bool] | None = None) -> None:
        self.until = until
        self.path = path
        # Asked once the run is stored as waiting: True when what it waits for came meanwhile (it is due now).
        self.recheck = recheck
        super().__init__(f"step {path!r} waits until {until.isoformat()}")


def classify(error: BaseException) -> Kind:
    """transient (retry later), reconnect (the connection needs `qbflow connect`), or permanent."""
    if isinstance(error, NeedsReconnect):
        return "reconnect"
    if isinstance(error, Transient | RateLimited | httpx.TransportError):
        return "transient"
    if isinstance(error, HttpStepError):
        return "transient" if error.transient else "permanent"
    return "permanent"


def _field_of(error: BaseException) -> str | None:
    if isinstance(error, ActionInputError) and error.problems:
        return error.problems[0].field
    if isinstance(error, RefError):
        return error.field
    if isinstance(error, QBOError):
        return error.element
    return getattr(error, "field", None) if isinstance(getattr(error, "field", None), str) else None


def error_json(error: BaseException, *, field: str | None = None) -> dict[str, Any]:
    """The error as stored in the ledger: type, message, field (when known), and more where it helps."""
    data: dict[str, Any] = {"type": type(error).__name__, "message": str(error) or type(error).__name__}
    field = field or _field_of(error)
    if field:
        data["field"] = field
    if isinstance(error, ActionInputError):
        data["problems"] = [{"field": p.field, "expected": p.expected} for p in error.problems]
    if isinstance(error, QBOError):
        data.update({k: v for k, v in (("code", error.code), ("status", error.status_code),
                                       ("intuit_tid", error.intuit_tid)) if v is not None})
    if isinstance(error, HttpStepError):
        data["status"] = error.status
    if isinstance(error, NeedsReconnect):
        data["connection"] = error.connection
    return data


# --- rendering -----------------------------------------------------------------------------------------------

def render_input(value: Any, context: Mapping[str, Any], path: str = "") -> Any:
    """`templates.render` recursively, naming the field of a failing template (`error.field`)."""
    if isinstance(value, str):
        try:
            return templates.render(value, context)
        except TemplateError as error:
            error.field = path or "input"  # type: ignore[attr-defined]
            raise
    if isinstance(value, Mapping):
        return {key: render_input(item, context, f"{path}.{key}" if path else str(key))
                for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [render_input(item, context, f"{path}[{i}]") for i, item in enumerate(value)]
    return value


def jsonable(value: Any) -> Any:
    """Plain JSON data (what the ledger keeps): dates and other objects become text."""
    return json.loads(json.dumps(value, default=str))


# --- dry runs ----------------------------------------------------------------------------------------------

PLACEHOLDER_PREFIX = "<dry run: "


class Placeholder(dict):
    """A dry-run output: any path into it renders as "<dry run: steps.x.output.a.b>", and it counts as true."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def __missing__(self, key: Any) -> Placeholder:
        return Placeholder(f"{self.path}.{key}")

    def __bool__(self) -> bool:
        return True

    def __str__(self) -> str:
        return f"{PLACEHOLDER_PREFIX}{self.path}>"

    def __deepcopy__(self, memo: dict) -> Placeholder:
        return self


def unplaceholder(value: Any) -> Any:
    """The value with every placeholder as its text."""
    if isinstance(value, Placeholder):
        return str(value)
    if isinstance(value, Mapping):
        return {key: unplaceholder(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [unplaceholder(item) for item in value]
    return value


def is_placeholder(value: Any) -> bool:
    return isinstance(value, str) and PLACEHOLDER_PREFIX in value
