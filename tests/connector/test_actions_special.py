"""The special actions beyond their main case: attachments from files and URLs, lookups, and Find's paging."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest

from qbflow.connector.base import ActionContext, ActionInputError
from qbflow.connector.refs import MissingReference
from qbflow.connector.registry import action
from qbflow.qbo import QBOClient
from tests.connector.conftest import Books

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 4 + b"\n%%EOF\n"


def _attachables(books: Books, file_name: str) -> list[dict]:
    return [a for a in books.all("Attachable") if a.get("FileName") == file_name]


async def test_upload_a_local_file_linked_to_a_vendor_by_name(
    ctx: ActionContext, books: Books, qbo: QBOClient, tmp_path: Path
) -> None:
    path = tmp_path / "w9 form.pdf"
    path.write_bytes(PDF)
    await action("upload_attachment").run(ctx, {"entity": "Vendor", "record": "Hicks Hardware", "path": str(path)})
    stored, = _attachables(books, "w9 form.pdf")
    assert stored["ContentType"] == "application/pdf"
    assert stored["AttachableRef"][0]["EntityRef"] == {"type": "Vendor",
                                                       "value": books.id_of("Vendor", "Hicks Hardware")}
    assert await qbo.download_attachment(stored["Id"]) == PDF


async def test_upload_from_a_url(ctx: ActionContext, books: Books, qbo: QBOClient) -> None:
    def serve(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/files/receipt%2001.pdf" or request.url.path == "/files/receipt 01.pdf":
            return httpx.Response(200, content=PDF, headers={"Content-Type": "application/pdf"})
        return httpx.Response(404)

    bill = books.make("Bill")
    async with httpx.AsyncClient(transport=httpx.MockTransport(serve)) as http:
        ctx.http = http
        await action("upload_attachment").run(ctx, {"entity": "bill", "record": bill["Id"],
                                                    "url": "https://files.example/files/receipt%2001.pdf",
                                                    "include_on_send": True})
        with pytest.raises(ActionInputError) as caught:
            await action("upload_attachment").run(ctx, {"url": "https://files.example/missing.pdf"})
    stored, = _attachables(books, "receipt 01.pdf")
    assert stored["AttachableRef"][0]["EntityRef"]["value"] == bill["Id"]
    assert stored["AttachableRef"][0]["IncludeOnSend"] is True
    assert await qbo.download_attachment(stored["Id"]) == PDF
    assert caught.value.fields == ["url"] and "HTTP 404" in str(caught.value)


async def test_upload_input_errors(ctx: ActionContext, tmp_path: Path) -> None:
    cases = [
        ({"content_base64": "aGk=", "path": "/x"}, "content_base64", "exactly one of content_base64, path or url"),
        ({"content_base64": "aGk="}, "file_name", "required with content_base64"),
        ({"content_base64": "not base64!", "file_name": "a.txt"}, "content_base64", "expected base64"),
        ({"url": "ftp://files.example/a.pdf"}, "url", "expected an http:// or https:// URL"),
        ({"entity": "Invoice", "content_base64": "aGk=", "file_name": "a.txt"}, "record", "give entity and record"),
        ({"entity": "Spaceship", "record": "1", "content_base64": "aGk=", "file_name": "a.txt"}, "entity",
         "expected a transaction or list"),
        ({"path": str(tmp_path / "nope.pdf")}, "path", "an existing file"),
    ]
    for data, field, words in cases:
        with pytest.raises(ActionInputError) as caught:
            await action("upload_attachment").run(ctx, data)
        assert caught.value.fields == [field], data
        assert words in str(caught.value), data


async def test_upload_to_an_unknown_customer_name_is_a_reference_error(ctx: ActionContext) -> None:
    with pytest.raises(MissingReference, match="record: no active customer has the name 'Nobody'"):
        await action("upload_attachment").run(ctx, {"entity": "Customer", "record": "Nobody",
                                                    "content_base64": base64.b64encode(b"hi").decode(),
                                                    "file_name": "note.txt"})


async def test_get_customer_by_id_and_by_name(ctx: ActionContext, books: Books) -> None:
    amy = books.get("Customer", books.id_of("Customer", "Amy's Bird Sanctuary"))
    assert await action("get_customer").run(ctx, {"id": amy["Id"]}) == amy
    assert await action("get_customer").run(ctx, {"name": "amy's bird sanctuary"}) == amy
    with pytest.raises(MissingReference, match="email: no active customer has the email address"):
        await action("get_customer").run(ctx, {"email": "who@nowhere.example"})


async def test_get_customer_by_email_is_fresh_after_an_update_in_the_same_run(ctx: ActionContext) -> None:
    found = await action("get_customer").run(ctx, {"email": "Birds@Intuit.com"})
    await action("update_customer").run(ctx, {"id": found["Id"], "notes": "new note"})
    again = await action("get_customer").run(ctx, {"email": "Birds@Intuit.com"})
    assert again["Notes"] == "new note"


async def test_get_product_and_account_by_name(ctx: ActionContext, books: Books) -> None:
    assert (await action("get_product").run(ctx, {"name": "rock fountain"}))["Id"] == books.id_of("Item",
                                                                                                 "Rock Fountain")
    with pytest.raises(ActionInputError, match="give exactly one of id or name"):
        await action("get_product").run(ctx, {"id": "1", "name": "Soil"})
    with pytest.raises(ActionInputError, match="email: not a known field"):
        await action("get_account").run(ctx, {"email": "x@y.example"})


async def test_find_pages_through_results(ctx: ActionContext, books: Books) -> None:
    customer = books.id_of("Customer", "Dukes Basketball Camp")
    made = [books.make("Invoice", CustomerRef={"value": customer}, TxnDate=f"2026-01-{day:02d}")
            for day in range(10, 15)]
    find = action("find_invoices")
    first = await find.run(ctx, {"customer": "Dukes Basketball Camp", "max_results": 3, "newest_first": False})
    second = await find.run(ctx, {"customer": "Dukes_bball@intuit.com", "max_results": 3, "newest_first": False,
                                  "start_position": first["next_start_position"]})
    ids = [r["Id"] for r in first["records"] + second["records"]]
    assert ids == [i["Id"] for i in books.all("Invoice") if i["CustomerRef"]["value"] == customer]
    assert first["count"] == 3 and first["next_start_position"] == 4 and second["next_start_position"] is None
    window = await find.run(ctx, {"customer": customer, "date_from": "2026-01-11", "date_to": "2026-01-13"})
    assert sorted(r["Id"] for r in window["records"]) == sorted(i["Id"] for i in made[1:4])


async def test_find_by_email_and_inactive_records(ctx: ActionContext, books: Books) -> None:
    found = await action("find_vendors").run(ctx, {"email": "Rental@intuit.com"})
    assert [v["Id"] for v in found["records"]] == [books.id_of("Vendor", "Ellis Equipment Rental")]
    gone = books.make("Customer", DisplayName="Closed Nursery")
    books.change("Customer", gone["Id"], Active=False)
    inactive = await action("find_customers").run(ctx, {"active": False, "name_contains": "Closed Nursery"})
    assert [c["Id"] for c in inactive["records"]] == [gone["Id"]]
    active = await action("find_customers").run(ctx, {"name_contains": "Closed Nursery"})
    assert active["records"] == [] and active["count"] == 0


async def test_find_expenses_by_payee(ctx: ActionContext, books: Books) -> None:
    fuel = books.id_of("Vendor", "Chin's Gas and Oil")
    found = await action("find_expenses").run(ctx, {"payee": "Chin's Gas and Oil"})
    assert [p["Id"] for p in found["records"]] == [p["Id"] for p in books.all("Purchase")
                                                    if p.get("EntityRef", {}).get("value") == fuel]
    assert found["count"] == 1


async def test_a_payment_without_amounts_pays_the_open_balance(ctx: ActionContext, books: Books) -> None:
    invoice = books.make("Invoice")
    payment = await action("create_payment").run(ctx, {"customer": "Amy's Bird Sanctuary",
                                                       "invoices": [{"invoice_id": invoice["Id"]}]})
    assert books.get("Payment", payment["Id"])["TotalAmt"] == 100.0
    assert books.get("Invoice", invoice["Id"])["Balance"] == 0
