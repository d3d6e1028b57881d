"""Finding what an earlier attempt of a create made (DESIGN guarantee 2 when the requestid does not help): by
DocNumber, else by the fields it sent, among records created since the first try; one match is used, none means
create, several fail clearly."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from qbflow.connector.base import ActionContext, ReferenceCache
from qbflow.connector.lookup import AmbiguousCreate, find_created, holds
from qbflow.connector.registry import ACTIONS, action
from qbflow.errors import QBFlowError
from qbflow.qbo import QBOClient
from tests.connector.conftest import Books
from tests.connector.test_actions import CASES
from tests.support.clients import CountingTransport

LOOKED_UP = sorted(k for k, a in ACTIONS.items() if a.created_lookup is not None)


def another_attempt(qbo: QBOClient) -> ActionContext:
    """A retry as a fresh process would make it: another requestid, nothing cached."""
    return ActionContext(qbo, request_id="run-1:step-1:again", references=ReferenceCache())


def test_every_create_and_upload_can_be_looked_up() -> None:
    writes = {k for k, a in ACTIONS.items() if a.operation in ("create", "upload")}
    assert set(LOOKED_UP) == writes and writes


@pytest.mark.parametrize("key", LOOKED_UP)
async def test_a_record_the_first_attempt_made_is_found_by_what_it_sends(
    key: str, ctx: ActionContext, books: Books, qbo: QBOClient, qbo_transport: CountingTransport
) -> None:
    a = action(key)
    data, _ = CASES[key].prepare(books)
    since = datetime.now(UTC)
    made = await a.run(ctx, data)
    before = {entity: len(books.all(entity)) for entity in (a.entity,)}
    qbo_transport.requests.clear()

    found = await find_created(another_attempt(qbo), a, a.parse(data), since)

    assert found is not None and found["Id"] == made["Id"]
    assert not [r for r in qbo_transport.api_requests() if r.method == "POST"]  # found, nothing written
    assert len(books.all(a.entity)) == before[a.entity]
    # Records made before the first try (less the skew) are not candidates.
    assert await find_created(another_attempt(qbo), a, a.parse(data), since + timedelta(hours=1),
                              skew=timedelta(0)) is None


async def test_a_create_that_never_reached_quickbooks_finds_nothing(books: Books, qbo: QBOClient) -> None:
    a = action("create_invoice")
    data = {"customer": "Amy's Bird Sanctuary", "lines": [{"item": "Design", "amount": 120}], "private_note": "mine"}
    # Same customer, same day, another amount: someone else's invoice, not ours.
    books.make("Invoice", PrivateNote="mine", Line=[{"Amount": 99.0, "DetailType": "SalesItemLineDetail",
                                                     "SalesItemLineDetail": {"ItemRef": {"value": books.id_of(
                                                         "Item", "Design")}}}])
    since = datetime.now(UTC) - timedelta(minutes=1)
    assert await find_created(another_attempt(qbo), a, a.parse(data), since) is None


async def test_a_payment_found_after_it_paid_the_invoice(ctx: ActionContext, books: Books, qbo: QBOClient) -> None:
    """Without an amount the payment pays the invoice's balance, which the first attempt brought to zero."""
    a = action("create_payment")
    invoice = books.make("Invoice")
    data = {"customer": invoice["CustomerRef"]["value"], "invoices": [{"invoice_id": invoice["Id"]}]}
    since = datetime.now(UTC)
    made = await a.run(ctx, data)
    assert books.get("Invoice", invoice["Id"])["Balance"] == 0

    found = await find_created(another_attempt(qbo), a, a.parse(data), since)

    assert found is not None and found["Id"] == made["Id"] and found["TotalAmt"] == 100.0


async def test_several_matching_payments_fail_clearly_and_nothing_is_created(
    books: Books, qbo: QBOClient, qbo_transport: CountingTransport
) -> None:
    since = datetime.now(UTC) - timedelta(minutes=1)
    customer = books.id_of("Customer", "Amy's Bird Sanctuary")
    twins = [books.make("Payment", CustomerRef={"value": customer}, TotalAmt=42.0, PaymentRefNum="CHK-7")
             for _ in range(2)]
    a = action("create_payment")
    data = {"customer": customer, "total_amount": 42, "reference_number": "CHK-7"}

    with pytest.raises(AmbiguousCreate) as caught:
        await find_created(another_attempt(qbo), a, a.parse(data), since)

    assert isinstance(caught.value, QBFlowError)
    assert caught.value.ids == [p["Id"] for p in twins]
    message = str(caught.value)
    assert all(p["Id"] in message for p in twins) and "nothing was created" in message
    assert "Create Payment" in message
    assert not [r for r in qbo_transport.api_requests() if r.method == "POST"]
    assert len([p for p in books.all("Payment") if p.get("PaymentRefNum") == "CHK-7"]) == 2


async def test_an_attachment_found_is_finished_as_the_action_would(
    ctx: ActionContext, books: Books, qbo: QBOClient, sandbox, realm, token
) -> None:
    """The first attempt uploaded the file but did not get to mark it "include on send": the lookup does."""
    invoice = books.make("Invoice")
    content = base64.b64encode(b"receipt 1").decode()
    data = {"entity": "Invoice", "record": invoice["Id"], "content_base64": content, "file_name": "r-1.txt",
            "include_on_send": True}
    since = datetime.now(UTC)
    uploaded = await qbo.upload_attachment("r-1.txt", b"receipt 1", "text/plain", link_to=("Invoice", invoice["Id"]))
    a = action("upload_attachment")

    found = await find_created(another_attempt(qbo), a, a.parse(data), since)

    assert found is not None and found["Id"] == uploaded["Id"]
    stored = books.get("Attachable", uploaded["Id"])
    assert [ref["IncludeOnSend"] for ref in stored["AttachableRef"]] == [True]
    assert len([x for x in books.all("Attachable") if x.get("FileName") == "r-1.txt"]) == 1


async def test_actions_that_create_nothing_look_nothing_up(books: Books, qbo: QBOClient,
                                                           qbo_transport: CountingTransport) -> None:
    record = books.make("Invoice")
    a = action("update_invoice")
    found = await find_created(another_attempt(qbo), a, a.parse({"id": record["Id"], "private_note": "x"}),
                               datetime.now(UTC))
    assert found is None and qbo_transport.requests == []


def test_holds_what_was_sent() -> None:
    stored = {"Id": "9", "CustomerRef": {"value": "3", "name": "Renamed Since"}, "TotalAmt": 100,
              "TxnDate": "2026-03-02", "BillAddr": {"Id": "40", "City": "Oakland"},
              "Line": [{"Id": "1", "Amount": 60.0, "DetailType": "SalesItemLineDetail",
                        "SalesItemLineDetail": {"ItemRef": {"value": "1", "name": "Design"}, "Qty": 2}},
                       {"Id": "2", "Amount": 40.0, "DetailType": "DescriptionOnly", "Description": "Soil"},
                       {"Amount": 100.0, "DetailType": "SubTotalLineDetail", "SubTotalLineDetail": {}}]}
    sent = {"CustomerRef": {"value": "3", "name": "Old Name"}, "TotalAmt": 100.001, "TxnDate": "2026-03-02",
            "BillAddr": {"City": "Oakland"},
            "Line": [{"Amount": 60, "DetailType": "SalesItemLineDetail",
                      "SalesItemLineDetail": {"ItemRef": {"value": "1"}}},
                     {"Amount": "40", "DetailType": "DescriptionOnly", "Description": "Soil",
                      "DescriptionLineDetail": {}}]}
    assert holds(stored, sent)
    assert not holds(stored, {**sent, "CustomerRef": {"value": "4"}})
    assert not holds(stored, {**sent, "TotalAmt": 100.01})
    assert not holds(stored, {**sent, "PrivateNote": "not on it"})
    assert not holds(stored, {**sent, "Line": list(reversed(sent["Line"]))})  # lines keep their order
    assert not holds(stored, {**sent, "Line": [*sent["Line"], sent["Line"][0]]})  # one stored line each
    assert not holds({"Active": 1}, {"Active": True})
    assert holds({"EntityRef": {"value": "5", "type": "Vendor"}}, {"EntityRef": {"value": "5", "type": "Vendor"}})
    assert not holds({"EntityRef": {"value": "5", "type": "Customer"}}, {"EntityRef": {"value": "5",
                                                                                       "type": "Vendor"}})
