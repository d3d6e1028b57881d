"""What every action is made of: the context it runs in, its description, and how its input is checked.

    ctx = ActionContext(qbo, request_id="run-17:step-2")
    record = await action("create_invoice").run(ctx, {"customer": "Bill's Windsurf Shop", "lines": [...]})

An `Action` is a description object (key, title, description, input model, output) plus a handler; the
same object gives the form (`input_schema()`), the docs and the run. Input is validated by the model
before anything is sent: a bad input is an `ActionInputError` naming each field, the value given and
what was expected, never a traceback.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails

from qbflow.errors import QBFlowError
from qbflow.qbo.client import QBOClient

__all__ = [
    "MISSING",
    "PATTERN_TEXT",
    "UNSHOWN",
    "Action",
    "ActionContext",
    "ActionInput",
    "ActionInputError",
    "CreatedLookup",
    "FieldError",
    "InputProblem",
    "ReferenceCache",
]

_VALUE_REPR_MAX = 80


class ActionInput(BaseModel):
    """Base of every action input model: unknown keys are refused (a typo is an error, not ignored)."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True, str_strip_whitespace=True,
                              populate_by_name=True)


@dataclass(frozen=True)
class InputProblem:
    """One thing wrong with an action's input."""

    field: str  # dotted path with list indexes: "lines[1].amount"; "input" for the whole input
    value: Any  # what was given; `MISSING` when nothing was
    expected: str  # what would have been accepted

    def describe(self) -> str:
        if self.value is UNSHOWN:
            return f"{self.field}: {self.expected}"
        if self.value is MISSING:
            return f"{self.field}: {self.expected} (nothing was given)"
        return f"{self.field}: {self.expected} (got {_short_repr(self.value)})"


class _Sentinel:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


MISSING: Any = _Sentinel("MISSING")  # nothing was given for the field
UNSHOWN: Any = _Sentinel("UNSHOWN")  # the problem is about several values together; none is quoted


class ActionInputError(QBFlowError):
    """An action's input is not valid; `.problems` lists each field, the value given and what was expected."""

    def __init__(self, action_title: str, problems: list[InputProblem]) -> None:
        self.action_title = action_title
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p.describe()}" for p in self.problems)
        super().__init__(f"{action_title}: the input is not valid:\n{lines}")

    @property
    def fields(self) -> list[str]:
        return [p.field for p in self.problems]


class FieldError(ValueError):
    """Raised inside a model validator to blame one field (pydantic would blame the whole input)."""

    def __init__(self, field: str, message: str, value: Any = UNSHOWN) -> None:
        self.field = field
        self.value = value
        super().__init__(message)


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _VALUE_REPR_MAX else text[: _VALUE_REPR_MAX - 3] + "..."


def field_path(loc: tuple[int | str, ...]) -> str:
    """("lines", 1, "amount") -> "lines[1].amount"."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text or "input"


# Pydantic's messages say what was expected ("Input should be a valid date..."); ours start lower-case and
# drop the "Input should be" / "Value error," boilerplate.
_BOILERPLATE = re.compile(r"^(Value error, |Assertion failed, )")


# Friendly words for the regex patterns of input types (registered where the types are defined).
PATTERN_TEXT: dict[str, str] = {}


def _expected(error: ErrorDetails) -> str:
    if error["type"] == "missing":
        return "required"
    if error["type"] == "string_pattern_mismatch":
        pattern = (error.get("ctx") or {}).get("pattern")
        if pattern in PATTERN_TEXT:
            return f"expected {PATTERN_TEXT[pattern]}"
    if error["type"] == "extra_forbidden":
        return "not a known field here (check the spelling)"
    message = _BOILERPLATE.sub("", error["msg"])
    return message.replace("Input should be", "expected")


def problems_of(error: ValidationError) -> list[InputProblem]:
    """Pydantic's errors as InputProblems: union branches are collapsed to one problem per field."""
    problems: list[InputProblem] = []
    seen: set[str] = set()
    for item in error.errors(include_url=False):
        loc = tuple(item["loc"])
        # A union's failed branches add the branch name ("str", "RefObject", "function-after[...]") to loc;
        # they say the same thing about the same field, so keep the first and name the field plainly.
        loc = tuple(part for part in loc if not _is_branch_name(part))
        path = field_path(loc)
        value = MISSING if item["type"] == "missing" else item.get("input", MISSING)
        cause = (item.get("ctx") or {}).get("error")
        if isinstance(cause, FieldError):
            path = ".".join(p for p in (field_path(loc) if loc else "", cause.field) if p)
            value = cause.value
        if path in seen:
            continue
        seen.add(path)
        problems.append(InputProblem(path, value, _expected(item)))
    return problems


_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "dict", "list", "none"})


def _is_branch_name(part: int | str) -> bool:
    """Whether a loc part names a union branch or a validator (pydantic adds those), not a field: input
    fields are snake_case identifiers, branch names are model names, type names or tags like "ref-text"."""
    if not isinstance(part, str):
        return False
    return not part.isidentifier() or part[:1].isupper() or part in _TYPE_TAGS


class ReferenceCache:
    """References resolved during one workflow run, shared by its steps (see `refs.resolve_ref`).

    Keys are (entity targets, how, normalised value); values are QBO references. Full records read while
    resolving are kept too, so "Get Customer by email" costs one query, not a query and a read.
    """

    def __init__(self) -> None:
        self.refs: dict[tuple, dict] = {}
        self.records: dict[tuple[str, str], dict] = {}

    def __len__(self) -> int:
        return len(self.refs)

    def forget(self, entity: str, record_id: str) -> None:
        """Drop what is known about one record (after the action changed it)."""
        self.records.pop((entity, str(record_id)), None)
        for key in [k for k, v in self.refs.items() if v.get("value") == str(record_id) and entity in k[0]]:
            del self.refs[key]


@dataclass
class ActionContext:
    """What an action runs with: one company's client, the run's reference cache, and an idempotency key.

    `request_id` is derived by the engine from (run, step) so a retried step sends the same `requestid` to
    QBO and gets its first answer back instead of writing twice; an action that writes more than once
    derives one key per write with `write_id()`. `http` fetches URLs given as input (Upload Attachment);
    None means a fresh client per fetch. `for_step()` gives the next step a context sharing the cache.
    """

    qbo: QBOClient
    request_id: str | None = None
    references: ReferenceCache = field(default_factory=ReferenceCache)
    http: httpx.AsyncClient | None = None

    def write_id(self, purpose: str = "") -> str | None:
        """The requestid for one write of this step (None lets the client pick a fresh one per call)."""
        if self.request_id is None:
            return None
        return f"{self.request_id}:{purpose}" if purpose else self.request_id

    def for_step(self, request_id: str | None) -> ActionContext:
        """A context for another step of the same run: same client and cache, its own request id."""
        return dataclasses.replace(self, request_id=request_id)


Handler = Callable[[ActionContext, Any], Awaitable[dict]]


@dataclass(frozen=True)
class CreatedLookup:
    """How a create's earlier attempt is recognised (`qbflow.connector.lookup.find_created`).

    `body(ctx, model)` is what the create sends, built without writing anything and from what does not change
    once the record exists (a payment applied to an invoice without an amount leaves the amount out: the
    invoice's balance is no longer what it was). `finish(ctx, model, record)`, when given, does the writes the
    action makes after its create (Upload Attachment's include_on_send), on a record found instead.
    """

    body: Callable[[ActionContext, Any], Awaitable[dict]]
    finish: Callable[[ActionContext, Any, dict], Awaitable[dict]] | None = None


@dataclass(frozen=True)
class Action:
    """One operation a workflow step can perform.

    `key` is stable snake_case (`create_invoice`); `title` is what people see ("Create Invoice");
    `input_model` is a pydantic model whose JSON Schema is the form and the docs; `output` says what the
    answer is. `run()` validates the input with the model, then calls the handler with the parsed model.
    """

    key: str
    title: str
    description: str
    input_model: type[BaseModel]
    output: str
    handler: Handler = field(repr=False, compare=False)
    entity: str | None = None  # the QBO entity (wire name) it works on, when there is one
    operation: str = ""  # create / update / get / delete / find / void / send / pdf / ...
    # How to find what an earlier attempt of this create made; None for actions that do not create.
    created_lookup: CreatedLookup | None = field(default=None, repr=False, compare=False)

    def parse(self, input: Mapping[str, Any] | BaseModel | None) -> BaseModel:
        """The input as the model, or ActionInputError naming every problem."""
        if isinstance(input, self.input_model):
            return input
        if isinstance(input, BaseModel):
            input = input.model_dump(exclude_unset=True)
        try:
            return self.input_model.model_validate({} if input is None else input)
        except ValidationError as error:
            raise ActionInputError(self.title, problems_of(error)) from None

    async def run(self, ctx: ActionContext, input: Mapping[str, Any] | BaseModel | None) -> dict:
        """Validate `input`, then perform the action; answers what `output` describes."""
        parsed = self.parse(input)
        return await self.handler(ctx, parsed)

    def input_schema(self) -> dict:
        """The input's JSON Schema (the form, and the reference docs)."""
        return self.input_model.model_json_schema()

    def describe(self) -> dict:
        """Key, title, description, input JSON Schema and output, as plain data (`qbflow catalog --json`)."""
        return {"key": self.key, "title": self.title, "description": self.description,
                "entity": self.entity, "input_schema": self.input_schema(), "output": self.output}
