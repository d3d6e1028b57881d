"""Update actions: one request with the SyncToken a trigger gave, a read first without it, and a stale one (5010)
recovered by reading the record again and sending the same changes; requests counted at the transport."""

from __future__ import annotations

import pytest

from qbflow.catalog.entities import ENTITIES, Kind
from qbflow.connector.base import ActionContext, ActionInputError
from qbflow.connector.registry import ACTIONS, action
from tests.connector.conftest import Books
from tests.support.clients import CountingTransport

UPDATES = sorted(k for k, a in ACTIONS.items() if a.operation == "update")


def _change(entity: str) -> tuple[str, str]:
    """(input field, QBO property) of a text every update action can change."""
    return ("notes", "Notes") if ENTITIES[entity].kind is Kind.NAME_LIST else ("private_note", "PrivateNote")


def _meanwhile(entity: str) -> dict:
    """What "someone else" changes on the record before our update lands."""
    return {"CompanyName": "Changed Elsewhere Ltd"} if ENTITIES[entity].kind is Kind.NAME_LIST else {
        "DocNumber": "ELSEWHERE-1"}


def _sent(transport: CountingTransport) -> list[tuple[str, str]]:
    """(method, path after the company) of every API request, in order."""
    return [(r.method, r.url.path.split("/", 4)[-1]) for r in transport.api_requests()]


def test_every_update_action_documents_sync_token() -> None:
    for key in UPDATES:
        schema = action(key).input_schema()
        assert "sync_token" in schema["properties"] and "sync_token" not in schema.get("required", []), key
        assert "trigger.SyncToken" in schema["properties"]["sync_token"]["description"], key


@pytest.mark.parametrize("key", UPDATES)
async def test_an_update_with_a_fresh_sync_token_is_one_request(
    key: str, ctx: ActionContext, books: Books, qbo_transport: CountingTransport
) -> None:
    entity = action(key).entity
    field, prop = _change(entity)
    record = books.make(entity)

    result = await action(key).run(ctx, {"id": record["Id"], "sync_token": record["SyncToken"], field: "one trip"})

    assert _sent(qbo_transport) == [("POST", entity.lower())]
    stored = books.get(entity, record["Id"])  # read straight from the books, not the action's answer
    assert stored[prop] == "one trip" and result["Id"] == record["Id"]
    assert int(stored["SyncToken"]) == int(record["SyncToken"]) + 1


@pytest.mark.parametrize("key", UPDATES)
async def test_a_stale_sync_token_is_read_again_and_the_same_changes_sent(
    key: str, ctx: ActionContext, books: Books, qbo_transport: CountingTransport
) -> None:
    entity = action(key).entity
    field, prop = _change(entity)
    record = books.make(entity)
    books.change(entity, record["Id"], **_meanwhile(entity))  # the trigger's SyncToken is now one behind

    await action(key).run(ctx, {"id": record["Id"], "sync_token": record["SyncToken"], field: "ours"})

    path = entity.lower()
    assert _sent(qbo_transport) == [("POST", path), ("GET", f"{path}/{record['Id']}"), ("POST", path)]
    stored = books.get(entity, record["Id"])
    assert stored[prop] == "ours"
    for name, value in _meanwhile(entity).items():
        assert stored[name] == value  # theirs kept: the retry was sparse too
    assert int(stored["SyncToken"]) == int(record["SyncToken"]) + 2
    writes = [r for r in qbo_transport.api_requests() if r.method == "POST"]
    assert writes[0].url.params["requestid"] != writes[1].url.params["requestid"]  # or QBO replays the 5010


async def test_without_a_sync_token_the_update_reads_it_first(
    ctx: ActionContext, books: Books, qbo_transport: CountingTransport
) -> None:
    record = books.make("Invoice")
    await action("update_invoice").run(ctx, {"id": record["Id"], "private_note": "read first"})
    assert _sent(qbo_transport) == [("GET", f"invoice/{record['Id']}"), ("POST", "invoice")]
    assert books.get("Invoice", record["Id"])["PrivateNote"] == "read first"


async def test_a_sync_token_alone_is_not_a_change(ctx: ActionContext, books: Books,
                                                  qbo_transport: CountingTransport) -> None:
    record = books.make("Customer")
    with pytest.raises(ActionInputError) as caught:
        await action("update_customer").run(ctx, {"id": record["Id"], "sync_token": record["SyncToken"]})
    assert caught.value.fields == ["id"] and "besides id and sync_token" in str(caught.value)
    with pytest.raises(ActionInputError) as caught:
        await action("update_customer").run(ctx, {"id": record["Id"], "sync_token": "v2", "notes": "x"})
    assert caught.value.fields == ["sync_token"] and "digits only" in str(caught.value)
    assert qbo_transport.requests == []


async def test_a_rendered_trigger_sync_token_works(ctx: ActionContext, books: Books,
                                                   qbo_transport: CountingTransport) -> None:
    """Templates render numbers as numbers: a SyncToken of 0 arrives as the int 0."""
    record = books.make("Vendor")
    await action("update_vendor").run(ctx, {"id": record["Id"], "sync_token": int(record["SyncToken"]),
                                            "notes": "from a template"})
    assert _sent(qbo_transport) == [("POST", "vendor")]
    assert books.get("Vendor", record["Id"])["Notes"] == "from a template"
