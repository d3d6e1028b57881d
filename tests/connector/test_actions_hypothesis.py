"""200 random action inputs, valid and not, against the in-process sandbox: each run either succeeds or raises a
qbflow error that names the field (or the QBO element, or the record) at fault. Anything else (a KeyError, a
TypeError, a pydantic ValidationError leaking through) is a failure.

Inputs are drawn from each action's own JSON Schema (the form a person fills in), with names and Ids that exist
in the sandbox's seed company mixed in so that many valid inputs really succeed, then often spoiled: a field of
the wrong type, a required field left out, an unknown field, a huge string, NaN or infinity, nested garbage, or
no object at all.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from datetime import UTC
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from qbflow.connector.base import ActionContext, ActionInputError
from qbflow.connector.refs import ReferenceError
from qbflow.connector.registry import ACTIONS
from qbflow.errors import QBFlowError
from qbflow.qbo import QBOClient, StaticTokens
from qbflow.qbo.errors import NotFound, QBOError
from qbflow.sandbox.app import Sandbox
from tests.support.clients import make_client

# Names, emails and Ids of the sandbox's company (Intuit's sample company, sandbox/data/sample_company.json), so
# references resolve and many valid inputs go through.
SEED_NAMES = ["Amy's Bird Sanctuary", "Birds@Intuit.com", "Hicks Hardware", "Design", "Installation", "Supplies",
              "Checking", "Mastercard", "Services", "Net 30", "Check", "Visa", "Accounts Payable (A/P)",
              "Undeposited Funds"]
SEED_IDS = ["1", "2", "3", "4", "5", "7", "11", "35", "41", "50"]
MAX_STRING = 40  # drawn strings stay short; the "huge" spoiler makes the long ones
JUNK_KEYS = ["bogus", "DisplayName", "customerRef", "lines ", "__proto__", "amount", "Id", ""]


# --- the sandbox, once for the module ------------------------------------------------------------------------
class World:
    """One event loop, one sandbox, one client, shared by every example (creating them per example is slower
    than the runs themselves)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.sandbox = Sandbox(rate_limit=False)
        realm = self.sandbox.realms[0]
        token = self.sandbox.oauth.issue_tokens_for_tests(self.sandbox.client_id, realm)["access_token"]
        self.qbo: QBOClient = make_client(self.sandbox, realm, StaticTokens(token), pacer=False)
        # Upload Attachment may fetch a URL: answer from here, never from the network.
        self.http = httpx.AsyncClient(transport=httpx.MockTransport(_fake_download))

    def run(self, key: str, data: Any) -> dict:
        ctx = ActionContext(self.qbo, http=self.http)
        return self.loop.run_until_complete(asyncio.wait_for(ACTIONS[key].run(ctx, data), 30))

    def close(self) -> None:
        self.loop.run_until_complete(self.qbo.aclose())
        self.loop.run_until_complete(self.http.aclose())
        self.loop.close()


def _fake_download(request: httpx.Request) -> httpx.Response:
    if "missing" in request.url.path:
        return httpx.Response(404)
    return httpx.Response(200, content=b"%PDF-1.4 receipt", headers={"Content-Type": "application/pdf"})


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    w = World()
    yield w
    w.close()


# --- strategies from JSON Schema -----------------------------------------------------------------------------
def _string(schema: dict) -> st.SearchStrategy:
    if "pattern" in schema:
        pattern = st.from_regex(schema["pattern"], fullmatch=True)
        if schema["pattern"] == r"^[0-9]{1,20}$":
            return st.one_of(st.sampled_from(SEED_IDS), pattern)
        return pattern.filter(lambda s: len(s) <= schema.get("maxLength", 10_000))
    if schema.get("format") == "date":
        return st.dates().map(lambda d: d.isoformat())
    if schema.get("format") == "date-time":
        return st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat())
    low = schema.get("minLength", 0)
    high = min(schema.get("maxLength", MAX_STRING), MAX_STRING)
    return st.one_of(st.sampled_from(SEED_NAMES + SEED_IDS), st.text(min_size=low, max_size=max(low, high)))


def from_schema(schema: dict, defs: dict[str, dict]) -> st.SearchStrategy:
    """Values the schema allows (as far as JSON Schema can say; model validators may still refuse them)."""
    if "$ref" in schema:
        return from_schema(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    branches = schema.get("anyOf") or schema.get("oneOf")
    if branches:
        return st.one_of([from_schema(b, defs) for b in branches])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "const" in schema:
        return st.just(schema["const"])
    kind = schema.get("type")
    if kind == "string":
        return _string(schema)
    if kind == "integer":
        low, high = schema.get("minimum", -10), schema.get("maximum", 10_000)
        return st.integers(low, min(high, low + 10_000))
    if kind == "number":
        low = schema.get("minimum", schema.get("exclusiveMinimum", -1e6))
        high = min(schema.get("maximum", 1e6), 1e6)
        exclusive = "exclusiveMinimum" in schema
        return st.one_of(st.integers(math.ceil(low) + exclusive, int(high)),
                         st.floats(low, high, allow_nan=False, exclude_min=exclusive).map(lambda x: round(x, 2)))
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        high = min(schema.get("maxItems", 3), 3)
        return st.lists(from_schema(schema.get("items") or {}, defs), min_size=schema.get("minItems", 0),
                        max_size=max(high, schema.get("minItems", 0)))
    if kind == "object" and "properties" in schema:
        required = set(schema.get("required") or ())
        props = schema["properties"]
        return st.fixed_dictionaries({k: from_schema(v, defs) for k, v in props.items() if k in required},
                                     optional={k: from_schema(v, defs) for k, v in props.items() if k not in required})
    if kind == "object":  # free-form (`extra`): raw QBO properties, some real, some not
        return st.dictionaries(st.sampled_from(["PrivateNote", "Memo", "DocNumber", "CustomField", "SyncToken",
                                                "Bogus"]), scalars, max_size=2)
    return scalars


scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=20))
garbage = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                       max_leaves=12)
junk = st.one_of(
    garbage,
    st.just(float("nan")), st.just(float("inf")), st.just(-float("inf")),
    st.integers(min_value=10**20, max_value=10**30),  # beyond any int64 Id
    st.text(min_size=1, max_size=3).map(lambda s: s * 40_000),  # huge strings
    st.just([]), st.just({}), st.just(""), st.just("   "),
)


def _containers(value: Any, path: tuple = ()) -> Iterator[tuple[tuple, dict]]:
    """Every dict inside a value (the input itself, addresses, lines, reference objects...)."""
    if isinstance(value, dict):
        yield path, value
        for key, inner in value.items():
            yield from _containers(inner, (*path, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from _containers(inner, (*path, index))


SPOILERS = ("valid", "valid", "valid", "wrong_type", "missing", "unknown", "huge", "nan", "garbage", "not_an_object")


@st.composite
def action_inputs(draw: st.DrawFn) -> tuple[str, str, Any]:
    """(action key, how it was spoiled, input)."""
    key = draw(st.sampled_from(sorted(ACTIONS)))
    schema = ACTIONS[key].input_schema()
    data = draw(from_schema(schema, schema.get("$defs", {})))
    how = draw(st.sampled_from(SPOILERS))
    if how == "not_an_object":
        return key, how, draw(st.one_of(st.lists(scalars, max_size=3), st.text(max_size=10), st.integers(),
                                        st.just(None)))
    if how == "valid":
        return key, how, data
    _path, target = draw(st.sampled_from(list(_containers(data))))
    fields = sorted(target)
    if how == "missing" and fields:
        del target[draw(st.sampled_from(fields))]
    elif how == "unknown" or not fields:
        target[draw(st.one_of(st.sampled_from(JUNK_KEYS), st.text(max_size=12)))] = draw(scalars)
    elif how == "huge":
        target[draw(st.sampled_from(fields))] = "x" * draw(st.integers(5_000, 200_000))
    elif how == "nan":
        target[draw(st.sampled_from(fields))] = draw(st.sampled_from([float("nan"), float("inf"), -float("inf")]))
    else:  # wrong_type, garbage
        target[draw(st.sampled_from(fields))] = draw(junk if how == "wrong_type" else garbage)
    return key, how, data


# --- the property --------------------------------------------------------------------------------------------
def _check_error(error: QBFlowError, data: Any) -> str:
    """The error names what is wrong; answers a label for the statistics."""
    message = str(error)
    assert message.strip(), f"{type(error).__name__} with no message"
    if isinstance(error, ActionInputError):
        assert error.problems, message
        for problem in error.problems:
            assert problem.field and problem.field in message, message
            assert problem.expected, message
        return "ActionInputError"
    if isinstance(error, ReferenceError):
        assert error.field and error.field in message, message
        return type(error).__name__
    if isinstance(error, NotFound):  # an Id that names no record: the message names the record asked for
        assert error.path or error.element or error.detail, message
        return "NotFound"
    if isinstance(error, QBOError):  # QBO refused it: Intuit's code, and the element or detail saying where
        assert error.code, message
        assert error.element or error.detail or error.message, message
        return f"{type(error).__name__} {error.code}"
    return type(error).__name__


@settings(max_examples=200, deadline=None, database=None, derandomize=False,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                                 HealthCheck.large_base_example])
@given(case=action_inputs())
def test_random_inputs_succeed_or_name_the_field(world: World, case: tuple[str, str, Any]) -> None:
    key, how, data = case
    try:
        result = world.run(key, data)
    except QBFlowError as error:
        event(f"{how}: {_check_error(error, data)}")
        return
    event(f"{how}: success")
    assert isinstance(result, dict)


# Found by probing beyond what the random strings reach: `Path.expanduser()` raises RuntimeError for "~user"
# when that user does not exist, and Upload Attachment does not catch it (qbflow.connector.special._read_source).
def test_a_path_under_an_unknown_home_directory_is_an_input_error(world: World) -> None:
    with pytest.raises(ActionInputError) as caught:
        world.run("upload_attachment", {"path": "~no-such-user-qbflow/receipt.pdf"})
    assert caught.value.fields == ["path"]


# Found by the random inputs above: a NaN among the raw `extra` properties reached the HTTP client, which cannot
# write it as JSON (ValueError), instead of being refused as input naming the field.
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_number_json_cannot_carry_in_extra_is_an_input_error(world: World, value: float) -> None:
    with pytest.raises(ActionInputError) as caught:
        world.run("create_vendor", {"display_name": "Amy's Bird Sanctuary", "extra": {"CompanyName": value}})
    assert caught.value.fields == ["extra"]
    assert "finite numbers" in str(caught.value)
