"""Reference resolution: an Id, an email or a name wherever QBO wants a reference."""

from __future__ import annotations

import pytest

from qbflow.connector.base import ActionContext
from qbflow.connector.refs import AmbiguousReference, MissingReference, RefObject, resolve_record, resolve_ref
from qbflow.connector.registry import action
from tests.connector.conftest import Books
from tests.support.clients import CountingTransport


def queries(transport: CountingTransport) -> list[str]:
    return [r.url.params["query"] for r in transport.api_requests("query")]


async def test_an_id_is_passed_through_without_a_lookup(ctx: ActionContext, qbo_transport: CountingTransport) -> None:
    assert await resolve_ref(ctx, "customer", ("Customer",), "42") == {"value": "42"}
    assert await resolve_ref(ctx, "customer", ("Customer",), 42) == {"value": "42"}
    assert await resolve_ref(ctx, "customer", ("Customer",), RefObject(id="7")) == {"value": "7"}
    assert qbo_transport.requests == []


async def test_email_and_name_ignore_case(ctx: ActionContext, books: Books) -> None:
    medical = books.id_of("Customer", "Paulsen Medical Supplies")
    assert (await resolve_ref(ctx, "c", ("Customer",), "medical@INTUIT.com"))["value"] == medical  # Medical@intuit.com
    assert await resolve_ref(ctx, "c", ("Customer",), "paulsen medical supplies") == {
        "value": medical, "name": "Paulsen Medical Supplies"}
    assert (await resolve_ref(ctx, "c", ("Customer",), RefObject(name="PAULSEN MEDICAL SUPPLIES")))["value"] == medical


async def test_an_at_sign_in_a_product_name_is_a_name(ctx: ActionContext, books: Books) -> None:
    item = books.make("Item", Name="Tiles @ 2x2")
    assert (await resolve_ref(ctx, "item", ("Item",), "tiles @ 2x2"))["value"] == item["Id"]


async def test_names_with_quotes_and_percent_signs_are_escaped(ctx: ActionContext, books: Books) -> None:
    tricky = books.make("Customer", DisplayName="O'Brien's 100% Organic \\ Co")
    books.make("Customer", DisplayName="O'Brien's 1000 Organic \\ Co")
    ref = await resolve_ref(ctx, "customer", ("Customer",), "o'brien's 100% organic \\ co")
    assert ref["value"] == tricky["Id"]
    with pytest.raises(MissingReference) as caught:
        await resolve_ref(ctx, "customer", ("Customer",), "O'Brien's 100%")
    assert [c["id"] for c in caught.value.candidates] == [tricky["Id"]]  # % is literal, not a wildcard


async def test_lookups_are_cached_for_the_run(ctx: ActionContext, qbo_transport: CountingTransport) -> None:
    for _ in range(3):
        await resolve_ref(ctx, "customer", ("Customer",), "Amy's Bird Sanctuary")
    await resolve_ref(ctx, "lines[0].item", ("Item",), "Design")
    await resolve_ref(ctx, "lines[1].item", ("Item",), "design")
    assert len(queries(qbo_transport)) == 2
    next_step = ctx.for_step("run-1:step-2")
    await resolve_ref(next_step, "customer", ("Customer",), "AMY'S BIRD SANCTUARY")
    assert len(queries(qbo_transport)) == 2  # the next step of the same run shares the cache


async def test_one_name_in_several_lines_costs_one_query(
    ctx: ActionContext, qbo_transport: CountingTransport, books: Books
) -> None:
    lines = [{"item": "Gardening", "amount": 10}] * 5
    invoice = await action("create_invoice").run(ctx, {"customer": "Amy's Bird Sanctuary", "lines": lines})
    assert len(queries(qbo_transport)) == 2
    assert len(books.get("Invoice", invoice["Id"])["Line"]) == 6  # five lines and the subtotal


async def test_sub_records_by_full_name_and_same_names_under_two_parents(ctx: ActionContext, books: Books) -> None:
    income = {"value": books.id_of("Account", "Services")}
    hardware = books.make("Item", Name="Hardware", Type="Category")
    garden = books.make("Item", Name="Garden", Type="Category")
    bolts_h = books.make("Item", Name="Bolts", ParentRef={"value": hardware["Id"]}, SubItem=True,
                         IncomeAccountRef=income)
    bolts_g = books.make("Item", Name="Bolts", ParentRef={"value": garden["Id"]}, SubItem=True,
                         IncomeAccountRef=income)
    with pytest.raises(AmbiguousReference) as caught:
        await resolve_ref(ctx, "lines[0].item", ("Item",), "Bolts")
    assert {c["id"] for c in caught.value.candidates} == {bolts_h["Id"], bolts_g["Id"]}
    assert str(caught.value).startswith("lines[0].item: 2 active product records have the name 'Bolts'")
    assert (await resolve_ref(ctx, "item", ("Item",), "garden:bolts"))["value"] == bolts_g["Id"]


async def test_payees_carry_their_type(ctx: ActionContext, books: Books) -> None:
    vendor = books.id_of("Vendor", "PG&E")
    customer = books.id_of("Customer", "Dukes Basketball Camp")
    payee = ("Vendor", "Customer", "Employee")
    assert await resolve_ref(ctx, "payee", payee, "utilities@noemail.com") == {
        "value": vendor, "name": "PG&E", "type": "Vendor"}
    assert (await resolve_ref(ctx, "payee", payee, "Dukes Basketball Camp"))["type"] == "Customer"
    assert await resolve_ref(ctx, "payee", payee, "41") == {"value": "41", "type": "Vendor"}  # a bare Id: a vendor
    assert await resolve_ref(ctx, "payee", payee, RefObject(id=customer, type="customer")) == {
        "value": customer, "type": "Customer"}
    with pytest.raises(MissingReference, match="type 'Item' is not allowed here"):
        await resolve_ref(ctx, "payee", payee, RefObject(id="1", type="Item"))


async def test_an_expense_paid_to_a_customer(ctx: ActionContext, books: Books) -> None:
    expense = await action("create_expense").run(ctx, {
        "payment_account": "Checking", "payment_type": "Check", "payee": "Dukes_bball@intuit.com",
        "lines": [{"account": "Advertising", "amount": 12}]})
    stored = books.get("Purchase", expense["Id"])
    assert stored["EntityRef"]["type"] == "Customer"
    assert stored["EntityRef"]["value"] == books.id_of("Customer", "Dukes Basketball Camp")


async def test_resolving_returns_the_record_found(ctx: ActionContext, books: Books) -> None:
    entity, record, ref = await resolve_record(ctx, "vendor", ("Vendor",), "Hall Properties")
    assert entity == "Vendor" and record == books.get("Vendor", ref["value"])
