"""What goes wrong, said clearly: bad input, unknown and ambiguous references, a record changed meanwhile, races."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from qbflow.connector.actions import row
from qbflow.connector.base import ActionContext, ActionInputError
from qbflow.connector.refs import AmbiguousReference, MissingReference, ReferenceError
from qbflow.connector.registry import ACTIONS, UnknownAction, action
from qbflow.connector.special import JOURNAL_ROW, NameTaken
from qbflow.errors import QBFlowError
from qbflow.qbo import QBOClient, StaticTokens
from qbflow.sandbox.app import Sandbox
from tests.connector.conftest import Books
from tests.support.clients import CountingTransport, make_client

CREATES = sorted(k for k, a in ACTIONS.items() if a.operation == "create")


# --- input ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", CREATES)
async def test_a_create_without_its_required_fields_names_each_of_them(
    key: str, ctx: ActionContext, qbo_transport: CountingTransport
) -> None:
    a = action(key)
    r = JOURNAL_ROW if a.entity == "JournalEntry" else row(a.entity)
    required = sorted(a.input_schema().get("required", []))
    with pytest.raises(ActionInputError) as caught:
        await a.run(ctx, {})
    for name in required:
        assert f"{name}: required (nothing was given)" in str(caught.value)
    assert {f.name for f in r.fields} >= set(required)
    if not required:  # customer, vendor: QBO wants one of the name fields
        assert caught.value.fields == ["display_name"]
        assert "give at least one of display_name, title, given_name" in str(caught.value)
    else:
        assert set(caught.value.fields) == set(required)
    assert qbo_transport.requests == []  # refused before anything was sent


async def test_input_errors_name_the_field_the_value_and_what_was_expected(ctx: ActionContext) -> None:
    with pytest.raises(ActionInputError) as caught:
        await action("create_invoice").run(ctx, {
            "customer": "Amy's Bird Sanctuary", "lines": [{"item": "Design", "amount": "lots"}],
            "txn_date": "2026-02-30", "colour": "blue"})
    problems = {p.field: p for p in caught.value.problems}
    assert set(problems) == {"lines[0].amount", "txn_date", "colour"}
    assert problems["lines[0].amount"].value == "lots" and "number" in problems["lines[0].amount"].expected
    assert problems["txn_date"].value == "2026-02-30" and "date" in problems["txn_date"].expected
    assert "not a known field" in problems["colour"].expected
    assert "Traceback" not in str(caught.value)
    assert isinstance(caught.value, QBFlowError)


async def test_input_that_is_not_an_object_is_an_input_error(ctx: ActionContext) -> None:
    for bad in ([1, 2], "text", 3):
        with pytest.raises(ActionInputError) as caught:
            await action("get_invoice").run(ctx, bad)
        assert caught.value.fields == ["input"]


async def test_extra_properties_are_checked_against_the_catalog_before_qbo_is_called(
    ctx: ActionContext, qbo_transport: CountingTransport
) -> None:
    with pytest.raises(ActionInputError) as caught:
        await action("create_customer").run(ctx, {"display_name": "X", "extra": {"PrimaryEmail": "a@b.example"}})
    assert caught.value.fields == ["extra"]
    assert "PrimaryEmail is not a property of a QuickBooks Customer" in str(caught.value)
    assert "did you mean PrimaryEmailAddr" in str(caught.value)
    with pytest.raises(ActionInputError, match="SyncToken cannot be set here"):
        await action("update_invoice").run(ctx, {"id": "1", "extra": {"SyncToken": "0"}})
    assert qbo_transport.requests == []


async def test_an_update_needs_something_to_change(ctx: ActionContext) -> None:
    with pytest.raises(ActionInputError, match="give at least one field to change"):
        await action("update_bill").run(ctx, {"id": "5"})


async def test_an_unbalanced_journal_entry_is_refused_before_qbo_naming_both_sums(
    ctx: ActionContext, qbo_transport: CountingTransport
) -> None:
    with pytest.raises(ActionInputError) as caught:
        await action("create_journal_entry").run(ctx, {"lines": [
            {"account": "Supplies", "debit": 100.10}, {"account": "Checking", "credit": 100.01}]})
    assert caught.value.fields == ["lines"]
    assert "debits total 100.10, credits total 100.01" in str(caught.value)
    assert qbo_transport.requests == []


async def test_journal_sums_are_compared_in_cents_not_floats(ctx: ActionContext, books: Books) -> None:
    lines = [{"account": "Supplies", "debit": 0.1}, {"account": "Supplies", "debit": 0.2},
             {"account": "Checking", "credit": 0.3}]
    entry = await action("create_journal_entry").run(ctx, {"lines": lines})
    assert books.get("JournalEntry", entry["Id"])["TotalAmt"] == 0.3


# --- references -----------------------------------------------------------------------------------------------
async def test_an_unknown_reference_is_a_reference_error_and_nothing_is_written(
    ctx: ActionContext, books: Books
) -> None:
    before = len(books.all("Invoice"))
    with pytest.raises(MissingReference) as caught:
        await action("create_invoice").run(ctx, {"customer": "nobody@nowhere.example",
                                                 "lines": [{"item": "Design", "amount": 10}]})
    assert caught.value.field == "customer" and caught.value.value == "nobody@nowhere.example"
    assert "customer: no active customer has the email address 'nobody@nowhere.example'" in str(caught.value)
    with pytest.raises(MissingReference, match=r"lines\[1\]\.item: no active product has the name 'Gold Leaf'"):
        await action("create_invoice").run(ctx, {"customer": "Amy's Bird Sanctuary", "lines": [
            {"item": "Design", "amount": 10}, {"item": "Gold Leaf", "amount": 5}]})
    assert len(books.all("Invoice")) == before


async def test_a_name_matching_nothing_exactly_lists_close_candidates_and_picks_none(
    ctx: ActionContext, books: Books
) -> None:
    corp = books.make("Customer", DisplayName="Acme Corp", PrimaryEmailAddr={"Address": "corp@acme.example"})
    corporation = books.make("Customer", DisplayName="Acme Corporation")
    with pytest.raises(ReferenceError) as caught:
        await action("create_invoice").run(ctx, {"customer": "Acme", "lines": [{"item": "Design", "amount": 10}]})
    ids = {c["id"] for c in caught.value.candidates}
    assert ids == {corp["Id"], corporation["Id"]}
    message = str(caught.value)
    assert f'Customer Id {corp["Id"]} "Acme Corp" <corp@acme.example>' in message
    assert f'Customer Id {corporation["Id"]} "Acme Corporation"' in message
    # An exact name (any case) wins over names that merely contain it.
    invoice = await action("create_invoice").run(ctx, {"customer": "ACME CORP",
                                                       "lines": [{"item": "Design", "amount": 10}]})
    assert books.get("Invoice", invoice["Id"])["CustomerRef"]["value"] == corp["Id"]


async def test_two_records_with_one_email_are_ambiguous_and_listed(ctx: ActionContext, books: Books) -> None:
    first = books.make("Customer", DisplayName="Twin One", PrimaryEmailAddr={"Address": "twins@example.com"})
    second = books.make("Customer", DisplayName="Twin Two", PrimaryEmailAddr={"Address": "twins@example.com"})
    with pytest.raises(AmbiguousReference) as caught:
        await action("get_customer").run(ctx, {"email": "twins@example.com"})
    assert [(c["id"], c["name"], c["email"]) for c in caught.value.candidates] == [
        (first["Id"], "Twin One", "twins@example.com"), (second["Id"], "Twin Two", "twins@example.com")]
    assert "Give the Id instead" in str(caught.value)


async def test_inactive_records_are_not_matched(ctx: ActionContext, books: Books) -> None:
    gone = books.make("Customer", DisplayName="Gone Gardens")
    books.change("Customer", gone["Id"], Active=False)
    with pytest.raises(MissingReference):
        await action("create_invoice").run(ctx, {"customer": "Gone Gardens",
                                                 "lines": [{"item": "Design", "amount": 10}]})


# --- SyncToken ------------------------------------------------------------------------------------------------
class MeddlingTransport(httpx.AsyncBaseTransport):
    """Passes requests to the sandbox; just before the first write to `path_end`, someone else edits the record."""

    def __init__(self, sandbox: Sandbox, path_end: str, meddle: Callable[[], None]) -> None:
        self.inner = httpx.ASGITransport(app=sandbox)
        self.path_end = path_end
        self.meddle: Callable[[], None] | None = meddle
        self.writes = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path.endswith(self.path_end):
            self.writes += 1
            if self.meddle is not None:
                meddle, self.meddle = self.meddle, None
                meddle()
        return await self.inner.handle_async_request(request)


@pytest.mark.parametrize("entity, key, change", [
    ("Customer", "update_customer", {"email": "changed@customer.example"}),
    ("Invoice", "update_invoice", {"private_note": "ours"}),
])
async def test_a_stale_sync_token_is_recovered_by_reading_again(
    entity: str, key: str, change: dict, sandbox: Sandbox, realm: str, token: str, books: Books
) -> None:
    record = books.make(entity)
    meanwhile = {"Customer": {"Notes": "edited elsewhere"}, "Invoice": {"CustomerMemo": {"value": "elsewhere"}}}
    transport = MeddlingTransport(sandbox, f"/{entity.lower()}",
                                  lambda: books.change(entity, record["Id"], **meanwhile[entity]))
    async with make_client(sandbox, realm, StaticTokens(token), transport=transport, pacer=False) as client:
        await action(key).run(ActionContext(client, request_id="run-9:step-3"), {"id": record["Id"], **change})
    stored = books.get(entity, record["Id"])
    assert transport.writes == 2  # the stale write, then the retry
    assert stored["SyncToken"] == str(int(record["SyncToken"]) + 2)  # their change and ours
    for prop, value in meanwhile[entity].items():
        assert stored[prop] == value  # theirs kept: our update was sparse
    if entity == "Customer":
        assert stored["PrimaryEmailAddr"]["Address"] == "changed@customer.example"
    else:
        assert stored["PrivateNote"] == "ours"


# --- idempotency and races --------------------------------------------------------------------------------------
async def test_a_retried_step_sends_the_same_requestid_and_creates_once(ctx: ActionContext, books: Books) -> None:
    data = {"customer": "Amy's Bird Sanctuary", "lines": [{"item": "Design", "amount": 10}], "private_note": "once"}
    first = await action("create_invoice").run(ctx, data)
    again = await action("create_invoice").run(ctx, data)  # the engine retrying the same (run, step)
    assert first["Id"] == again["Id"]
    assert len([i for i in books.all("Invoice") if i.get("PrivateNote") == "once"]) == 1


class GatedQueries(httpx.AsyncBaseTransport):
    """Holds each query's answer until `count` queries are in flight: two runs both see "no such record"."""

    def __init__(self, sandbox: Sandbox, count: int) -> None:
        self.inner = httpx.ASGITransport(app=sandbox)
        self.count = count
        self.arrived = 0
        self.gate = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path.endswith("/query") and not self.gate.is_set():
            self.arrived += 1
            if self.arrived >= self.count:
                self.gate.set()
            await asyncio.wait_for(self.gate.wait(), 5)
        return response


async def test_find_or_create_racing_runs_make_one_customer(
    sandbox: Sandbox, realm: str, token: str, books: Books
) -> None:
    transport = GatedQueries(sandbox, count=2)
    data = {"display_name": "Racing Radishes", "email": "race@radish.example"}
    async with make_client(sandbox, realm, StaticTokens(token), transport=transport, pacer=False) as client:
        upsert = action("find_or_create_customer")
        results = await asyncio.gather(upsert.run(ActionContext(client, request_id="run-A:step-1"), data),
                                       upsert.run(ActionContext(client, request_id="run-B:step-1"), data))
    created = [c for c in books.all("Customer") if c["DisplayName"] == "Racing Radishes"]
    assert len(created) == 1
    assert sorted(r["created"] for r in results) == [False, True]
    assert {r["record"]["Id"] for r in results} == {created[0]["Id"]}


async def test_find_or_create_finds_by_email_first_then_by_name(ctx: ActionContext, books: Books) -> None:
    by_email = await action("find_or_create_customer").run(ctx, {"email": "Surf@Intuit.com"})
    assert by_email == {"record": books.get("Customer", books.id_of("Customer", "Bill's Windsurf Shop")),
                        "created": False}
    by_name = await action("find_or_create_customer").run(ctx, {"display_name": "wedding planning by whitney",
                                                                "email": "unknown@wedding.example"})
    assert by_name["created"] is False and by_name["record"]["DisplayName"] == "Wedding Planning by Whitney"


async def test_find_or_create_with_a_name_owned_by_a_vendor_says_so(ctx: ActionContext) -> None:
    with pytest.raises(NameTaken, match="'Hicks Hardware' is already used by another customer, vendor or employee"):
        await action("find_or_create_customer").run(ctx, {"display_name": "Hicks Hardware"})


# --- the registry ------------------------------------------------------------------------------------------------
def test_an_unknown_key_suggests_the_nearest() -> None:
    with pytest.raises(UnknownAction, match="did you mean 'create_invoice'") as caught:
        action("create_invoce")
    assert caught.value.suggestions[0] == "create_invoice"
    with pytest.raises(UnknownAction, match="that is the title of 'get_product'"):
        action("Get Product")


@pytest.mark.parametrize("noun", ["customer", "vendor", "account", "product"])
def test_deleting_a_name_list_record_says_deactivate_instead(noun: str) -> None:
    with pytest.raises(UnknownAction, match=f"deactivate instead, with the action 'deactivate_{noun}'"):
        action(f"delete_{noun}")


async def test_the_client_refuses_a_name_list_delete_too(qbo: QBOClient) -> None:
    from qbflow.qbo import UnsupportedOperation

    with pytest.raises(UnsupportedOperation, match="use deactivate"):
        await qbo.delete("Customer", "1")


# --- robustness -----------------------------------------------------------------------------------------------
_ODD_VALUES = [None, "", " ", "x", "0", "-1", "2026-02-30", "a@b", "O'Brien %", -1, 0, 1, 10**30, 1e308, -0.0,
               float("nan"), float("inf"), True, [], [{}], [{"amount": "x"}], {}, {"id": "1", "name": "x"},
               {"id": ""}, "\u0000", "é" * 600]


def _random_inputs(a, rng) -> list[object]:
    names = list(a.input_model.model_fields) + ["unknown_field"]
    inputs: list[object] = [[], "text", 5, None]
    for _ in range(25):
        data = {}
        for name in rng.sample(names, k=rng.randint(1, len(names))):
            data[name] = rng.choice(_ODD_VALUES)
        inputs.append(data)
    return inputs


@pytest.mark.parametrize("key", sorted(ACTIONS))
def test_odd_input_is_a_validation_error_naming_fields_never_a_crash(key: str) -> None:
    import random

    a = action(key)
    rng = random.Random(key)
    for data in _random_inputs(a, rng):
        try:
            a.parse(data)
        except ActionInputError as error:
            assert error.problems and all(p.field for p in error.problems)
            assert "Traceback" not in str(error)
