"""Every QBOClient operation against the sandbox, and what goes on the wire for it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from qbflow.qbo import NotFound, QBOClient, Query, UnsupportedOperation, like_prefix
from tests.support.clients import SALES_LINE, CountingTransport

PNG_LIKE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) + b"\r\n--boundary\r\n" + bytes(range(255, -1, -1))


async def invoice(client: QBOClient, **extra) -> dict:
    return await client.create("Invoice", {"CustomerRef": {"value": "1"}, "Line": SALES_LINE, **extra})


async def test_get_create_and_company_info(client: QBOClient) -> None:
    created = await invoice(client)
    assert created["Id"] and created["SyncToken"] == "0" and created["TotalAmt"] == 100.0
    assert (await client.get("Invoice", created["Id"]))["Id"] == created["Id"]
    info = await client.company_info()
    assert info["CompanyName"] == "Sandbox Company_US_1"
    preferences = await client.preferences()
    assert preferences["Id"] and preferences["SyncToken"]


async def test_every_call_has_minorversion_and_every_write_a_requestid(
    client: QBOClient, transport: CountingTransport
) -> None:
    created = await invoice(client)
    await client.get("Invoice", created["Id"])
    await client.query("SELECT * FROM Invoice")
    await client.update("Invoice", {"Id": created["Id"], "SyncToken": created["SyncToken"], "PrivateNote": "x"})
    requests = transport.api_requests()
    assert requests and all(r.url.params.get("minorversion") == "75" for r in requests)
    for request in requests:
        assert ("requestid" in request.url.params) == (request.method == "POST")
        assert request.headers["Accept"] == "application/json"


async def test_create_with_the_same_request_id_creates_once(client: QBOClient, sandbox, realm) -> None:
    before = len(list(sandbox.books.records(realm, "Invoice")))
    first = await client.create("Invoice", {"CustomerRef": {"value": "1"}, "Line": SALES_LINE},
                                request_id="run-42:step-create-invoice")
    again = await client.create("Invoice", {"CustomerRef": {"value": "1"}, "Line": SALES_LINE},
                                request_id="run-42:step-create-invoice")
    assert again["Id"] == first["Id"]
    assert len(list(sandbox.books.records(realm, "Invoice"))) == before + 1


async def test_long_request_ids_are_shortened_stably(client: QBOClient, transport: CountingTransport) -> None:
    long_id = "workflow-" + "x" * 80 + ":step-1"
    first = await client.create("Customer", {"DisplayName": "Long Id Co"}, request_id=long_id)
    again = await client.create("Customer", {"DisplayName": "Long Id Co"}, request_id=long_id)
    assert again["Id"] == first["Id"]
    ids = {r.url.params["requestid"] for r in transport.api_requests("customer")}
    assert len(ids) == 1 and len(ids.pop()) <= 50


async def test_sparse_full_and_fetched_updates(client: QBOClient) -> None:
    customer = await client.create("Customer", {"DisplayName": "Update Me", "CompanyName": "Old Co"})
    sparse = await client.update("Customer", {"Id": customer["Id"], "SyncToken": customer["SyncToken"],
                                              "CompanyName": "New Co"})
    assert sparse["CompanyName"] == "New Co" and sparse["DisplayName"] == "Update Me"
    assert sparse["SyncToken"] == "1"
    fetched = await client.update("Customer", {"Id": customer["Id"], "Notes": "fetched token"},
                                  fetch_sync_token=True)
    assert fetched["SyncToken"] == "2" and fetched["Notes"] == "fetched token"
    full = await client.update("Customer", {"Id": customer["Id"], "SyncToken": fetched["SyncToken"],
                                            "DisplayName": "Update Me"}, sparse=False)
    assert "CompanyName" not in full and "Notes" not in full  # a full update empties what it leaves out
    with pytest.raises(ValueError, match="SyncToken"):
        await client.update("Customer", {"Id": customer["Id"], "Notes": "no token"})


async def test_delete_by_id_and_by_record(client: QBOClient) -> None:
    first, second = await invoice(client), await invoice(client)
    assert (await client.delete("Invoice", first["Id"]))["status"] == "Deleted"
    assert (await client.delete("Invoice", second))["status"] == "Deleted"
    with pytest.raises(NotFound):
        await client.get("Invoice", first["Id"])


async def test_name_lists_are_deactivated_not_deleted(client: QBOClient, transport: CountingTransport) -> None:
    with pytest.raises(UnsupportedOperation, match="deactivate"):
        await client.delete("Customer", "1")
    assert transport.api_requests() == []  # refused before sending anything
    customer = await client.create("Customer", {"DisplayName": "Short Lived"})
    inactive = await client.deactivate("Customer", customer["Id"])
    assert inactive["Active"] is False


async def test_void_invoice_uses_operation_void(client: QBOClient, transport: CountingTransport) -> None:
    created = await invoice(client)
    voided = await client.void("Invoice", created)
    assert voided["TotalAmt"] == 0 and voided["PrivateNote"].startswith("Voided")
    assert voided["SyncToken"] == "1"
    assert transport.requests[-1].url.params["operation"] == "void"


async def test_void_sales_receipt_and_payment_use_include_void(client: QBOClient, transport: CountingTransport) -> None:
    receipt = await client.create("SalesReceipt", {"CustomerRef": {"value": "1"}, "Line": SALES_LINE})
    voided = await client.void("SalesReceipt", receipt["Id"])  # by Id: the client reads the SyncToken
    assert voided["TotalAmt"] == 0
    params = transport.requests[-1].url.params
    assert params["operation"] == "update" and params["include"] == "void"
    payment = await client.create("Payment", {"CustomerRef": {"value": "2"}, "TotalAmt": 10})
    assert (await client.void("Payment", payment))["TotalAmt"] == 0


async def test_void_and_send_are_refused_where_the_catalog_says_so(client: QBOClient) -> None:
    with pytest.raises(UnsupportedOperation, match="Estimate does not support void"):
        await client.void("Estimate", "1")
    with pytest.raises(UnsupportedOperation, match="Bill does not support send"):
        await client.send("Bill", "1")
    with pytest.raises(UnsupportedOperation, match="unknown entity"):
        await client.get("Invoise", "1")


async def test_send_uses_octet_stream_and_send_to(client: QBOClient, sandbox, realm,
                                                  transport: CountingTransport) -> None:
    created = await invoice(client)
    sent = await client.send("Invoice", created["Id"], to="billing@example.com")
    assert sent["EmailStatus"] == "EmailSent" and sent["BillEmail"]["Address"] == "billing@example.com"
    request = transport.requests[-1]
    assert request.headers["Content-Type"] == "application/octet-stream" and request.content == b""
    assert request.url.params["sendTo"] == "billing@example.com"
    assert sandbox.books.companies[realm].outbox[-1]["to"] == "billing@example.com"


async def test_pdf(client: QBOClient, transport: CountingTransport) -> None:
    created = await invoice(client)
    pdf = await client.pdf("Invoice", created["Id"])
    assert pdf.startswith(b"%PDF")
    assert transport.requests[-1].headers["Accept"] == "application/pdf"


async def test_query_and_count(client: QBOClient) -> None:
    for n in range(3):
        await client.create("Customer", {"DisplayName": f"Counted {n}"})
    query = Query("Customer").where_like("DisplayName", like_prefix("Counted ")).order_by("DisplayName")
    records = await client.query(query)
    assert [r["DisplayName"] for r in records] == ["Counted 0", "Counted 1", "Counted 2"]
    assert await client.count(query) == 3
    assert await client.count("Customer", DisplayName="Counted 1") == 1
    assert await client.query(Query("Customer").where(DisplayName="Nobody at all")) == []
    # A raw string works too, and a very long one goes as a POST body.
    assert len(await client.query("select * from Customer where DisplayName = 'Counted 2'")) == 1
    long_query = Query("Customer").where_in("DisplayName", ["Counted 0"] + [f"nobody {n:04d}" for n in range(100)])
    assert len(str(long_query)) > 1000
    assert [r["DisplayName"] for r in await client.query(long_query)] == ["Counted 0"]


async def test_query_all_over_2500_records_yields_each_once(client: QBOClient, sandbox, realm,
                                                            transport: CountingTransport) -> None:
    for n in range(2500):
        sandbox.books.create(realm, "Customer", {"DisplayName": f"Bulk {n:04d}"})
    query = Query("Customer").where_like("DisplayName", like_prefix("Bulk ")).order_by("Id")
    names = [record["DisplayName"] async for record in client.query_all(query)]
    assert len(names) == 2500 and len(set(names)) == 2500
    assert len(transport.api_requests("query")) == 3  # 1000 + 1000 + 500
    # Smaller pages, from a string query.
    texts = [r["Id"] async for r in client.query_all("SELECT * FROM Customer WHERE DisplayName LIKE 'Bulk 00%'",
                                                     page_size=30)]
    assert len(texts) == 100 and len(set(texts)) == 100
    with pytest.raises(ValueError, match="pages by itself"):
        async for _ in client.query_all(query.max(10)):
            pass


async def test_cdc(client: QBOClient) -> None:
    since = datetime.now(UTC) - timedelta(minutes=5)
    kept = await invoice(client)
    gone = await invoice(client)
    await client.delete("Invoice", gone)
    customer = await client.create("Customer", {"DisplayName": "CDC Co"})
    changes = await client.cdc(["Invoice", "Customer", "Bill"], since)
    assert set(changes) == {"Invoice", "Customer", "Bill"}
    invoices = {r["Id"]: r for r in changes["Invoice"]}
    assert kept["Id"] in invoices and invoices[gone["Id"]]["status"] == "Deleted"
    assert customer["Id"] in {r["Id"] for r in changes["Customer"]}
    assert isinstance(changes["Bill"], list)  # asked for, so present (the seed's bills, or empty)
    with pytest.raises(UnsupportedOperation):
        await client.cdc(["TaxCode"], since)
    with pytest.raises(ValueError, match="timezone"):
        await client.cdc(["Invoice"], datetime.now())


async def test_batch_of_70_goes_in_3_chunks(client: QBOClient, transport: CountingTransport, sandbox, realm) -> None:
    items = [{"operation": "create", "Customer": {"DisplayName": f"Batch {n:02d}"}} for n in range(68)]
    items.append({"Query": Query("Customer").where(DisplayName="Batch 00")})
    items.append({"operation": "delete", "Invoice": {"Id": "999999", "SyncToken": "0"}})
    results = await client.batch(items)
    assert len(transport.api_requests("batch")) == 3
    assert [r.index for r in results] == list(range(70))
    assert all(r.ok and r.record["DisplayName"] == f"Batch {r.index:02d}" for r in results[:68])
    assert results[68].query_response["Customer"][0]["DisplayName"] == "Batch 00"
    assert isinstance(results[69].error, NotFound) and results[69].error.code == "610"
    assert await client.count(Query("Customer").where_like("DisplayName", like_prefix("Batch "))) == 68


async def test_batch_with_a_request_id_is_not_done_twice(client: QBOClient) -> None:
    items = [{"operation": "create", "Vendor": {"DisplayName": f"Batch Vendor {n}"}} for n in range(35)]
    first = await client.batch(items, request_id="run-7:step-3")
    again = await client.batch(items, request_id="run-7:step-3")
    assert [r.record["Id"] for r in first] == [r.record["Id"] for r in again]
    assert await client.count(Query("Vendor").where_like("DisplayName", like_prefix("Batch Vendor "))) == 35


async def test_batch_items_are_checked_against_the_catalog(client: QBOClient) -> None:
    with pytest.raises(UnsupportedOperation):
        await client.batch([{"operation": "delete", "Customer": {"Id": "1", "SyncToken": "0"}}])
    with pytest.raises(ValueError):
        await client.batch([{"operation": "merge", "Invoice": {"Id": "1"}}])


async def test_upload_and_download_attachment(client: QBOClient, transport: CountingTransport) -> None:
    created = await invoice(client)
    attachable = await client.upload_attachment("scan.png", PNG_LIKE, "image/png", link_to=("Invoice", created["Id"]),
                                                note="the signed copy")
    assert attachable["FileName"] == "scan.png" and attachable["Size"] == len(PNG_LIKE)
    assert attachable["AttachableRef"][0]["EntityRef"] == {"type": "Invoice", "value": created["Id"]}
    assert attachable["Note"] == "the signed copy"
    assert await client.download_attachment(attachable["Id"]) == PNG_LIKE
    # The presigned link is fetched without our bearer token.
    file_fetch = transport.requests[-1]
    assert "/_sandbox/files/" in file_fetch.url.path and "Authorization" not in file_fetch.headers
    assert (await client.get("Attachable", attachable["Id"]))["FileName"] == "scan.png"
    text = await client.upload_attachment("notes.txt", b"plain text", "text/plain")
    assert await client.download_attachment(text["Id"]) == b"plain text"


async def test_upload_fault_for_the_file_raises(client: QBOClient) -> None:
    from qbflow.qbo import Validation

    with pytest.raises(Validation) as caught:
        await client.upload_attachment("virus.exe", b"MZ", "application/octet-stream")
    assert caught.value.code == "6000"


async def test_report_sends_intuits_parameters_as_a_read(client: QBOClient, transport: CountingTransport) -> None:
    from datetime import date

    report = await client.report("ProfitAndLoss", start_date=date(2026, 1, 1), end_date="2026-03-31",
                                 accounting_method="Cash", customer=None)
    assert report["Header"]["ReportName"] == "ProfitAndLoss"
    assert (report["Header"]["StartPeriod"], report["Header"]["EndPeriod"]) == ("2026-01-01", "2026-03-31")
    request = transport.api_requests()[-1]
    assert request.method == "GET" and request.url.path.endswith("/reports/ProfitAndLoss")
    assert dict(request.url.params) == {"start_date": "2026-01-01", "end_date": "2026-03-31",
                                        "accounting_method": "Cash", "minorversion": "75"}
    aging = await client.report("AgedReceivables", aging_period=15, num_periods=2)
    assert [c["ColTitle"] for c in aging["Columns"]["Column"]][1:] == ["Current", "1 - 15", "16 and over", "Total"]
    with pytest.raises(ValueError, match="invalid report name"):
        await client.report("../customer/1")
