"""POST /{entity}/{id}/send and GET /{entity}/{id}/pdf over plain HTTP.

Send: no body, Content-Type application/octet-stream, optional sendTo (README §1, python-quickbooks SendMixin).
PDF: binary application/pdf (recordings/get_pdf/invoice.yml).
"""

from __future__ import annotations

import re
import zlib

import pytest

from tests.sandbox.wire import fault_of

pytestmark = pytest.mark.asyncio

QBO_DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[-+]\d\d:\d\d$")
OCTET = {"Content-Type": "application/octet-stream"}
COMPANY = "Sandbox Company_US_1"




def sales_line(amount: float) -> list[dict]:
    return [{"Amount": amount, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {"ItemRef": {"value": "1"}}}]


async def create(http, api, entity: str, body: dict) -> dict:
    response = await http.post(api(entity.lower()), json=body)
    assert response.status_code == 200, response.text
    return response.json()[entity]


async def outbox(http, realm: str) -> list[dict]:
    response = await http.get(f"/_sandbox/companies/{realm}/outbox")
    assert response.status_code == 200
    return response.json()["emails"]


async def expense_account(http, api) -> str:
    response = await http.get(api("query"), params={"query": "select * from Account where AccountType = 'Expense' "
                                                             "maxresults 1"})
    return response.json()["QueryResponse"]["Account"][0]["Id"]


async def purchase_order(http, api, **extra) -> dict:
    return await create(http, api, "PurchaseOrder", {"VendorRef": {"value": "50"}, **extra, "Line": [
        {"Amount": 80.0, "DetailType": "AccountBasedExpenseLineDetail",
         "AccountBasedExpenseLineDetail": {"AccountRef": {"value": await expense_account(http, api)}}}]})


@pytest.fixture
async def invoice(http, api) -> dict:
    """An invoice for Amy's Bird Sanctuary (the sample company's customer 1, e-mail Birds@Intuit.com); like
    QBO's, it does not copy the customer's e-mail."""
    return await create(http, api, "Invoice", {"CustomerRef": {"value": "1"}, "Line": sales_line(150)})


# --- send -----------------------------------------------------------------------------------------------


async def test_send_invoice_to_an_address(http, api, realm, invoice):
    assert invoice["EmailStatus"] == "NotSet"
    assert "BillEmail" not in invoice
    response = await http.post(api(f"invoice/{invoice['Id']}/send"), params={"sendTo": "a@b.example"},
                               headers=OCTET)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"Invoice", "time"}
    sent = body["Invoice"]
    assert sent["Id"] == invoice["Id"]
    assert sent["EmailStatus"] == "EmailSent"
    assert set(sent["DeliveryInfo"]) == {"DeliveryType", "DeliveryTime"}
    assert sent["DeliveryInfo"]["DeliveryType"] == "Email"
    assert QBO_DATETIME.match(sent["DeliveryInfo"]["DeliveryTime"])
    assert sent["BillEmail"] == {"Address": "a@b.example"}
    assert sent["SyncToken"] == invoice["SyncToken"]  # quickbooks-ruby's recorded send keeps the token
    assert sent["TotalAmt"] == invoice["TotalAmt"] and sent["DocNumber"] == invoice["DocNumber"]
    assert (await http.get(api(f"invoice/{invoice['Id']}"))).json()["Invoice"] == sent
    [email] = await outbox(http, realm)
    assert email == {"to": "a@b.example", "entity": "Invoice", "id": invoice["Id"],
                     "doc_number": invoice["DocNumber"],
                     "subject": f"Invoice {invoice['DocNumber']} from {COMPANY}",
                     "sent_at": sent["DeliveryInfo"]["DeliveryTime"]}


async def test_send_without_send_to_uses_the_bill_email(http, api, realm, invoice):
    response = await http.post(api(f"invoice/{invoice['Id']}/send"), headers=OCTET)
    assert response.status_code == 200, response.text
    sent = response.json()["Invoice"]
    assert sent["EmailStatus"] == "EmailSent"
    assert sent["BillEmail"] == {"Address": "Birds@Intuit.com"}
    assert [e["to"] for e in await outbox(http, realm)] == ["Birds@Intuit.com"]
    # Sending again is allowed and is a second e-mail.
    again = await http.post(api(f"invoice/{invoice['Id']}/send"), params={"sendTo": "second@b.example"},
                            headers=OCTET)
    assert again.status_code == 200
    assert [e["to"] for e in await outbox(http, realm)] == ["Birds@Intuit.com", "second@b.example"]


async def test_send_with_a_json_content_type_is_2020_delivery_address(http, api, realm, invoice):
    response = await http.post(api(f"invoice/{invoice['Id']}/send"), params={"sendTo": "a@b.example"},
                               headers={"Content-Type": "application/json"})
    assert fault_of(response) == {
        "Message": "Required param missing, need to supply the required value for the API",
        "Detail": "Required parameter DeliveryAddress.Address is missing in the request", "code": "2020",
        "element": "DeliveryAddress.Address", "type": "ValidationFault"}
    assert await outbox(http, realm) == []
    assert (await http.get(api(f"invoice/{invoice['Id']}"))).json()["Invoice"]["EmailStatus"] == "NotSet"


async def test_no_address_anywhere_is_6420(http, api, realm):
    customer = await create(http, api, "Customer", {"DisplayName": "No Mail Ranch"})
    invoice = await create(http, api, "Invoice", {"CustomerRef": {"value": customer["Id"]}, "Line": sales_line(9)})
    assert "BillEmail" not in invoice
    response = await http.post(api(f"invoice/{invoice['Id']}/send"), headers=OCTET)
    assert fault_of(response) == {
        "Message": "Email address is required",
        "Detail": "An email address is required for this customer since the delivery type is 'email.'",
        "code": "6420", "element": "BillEmail.Address", "type": "ValidationFault"}
    assert await outbox(http, realm) == []
    # With sendTo it goes out, and the address is kept on the invoice.
    response = await http.post(api(f"invoice/{invoice['Id']}/send"), params={"sendTo": "ranch@mail.example"},
                               headers=OCTET)
    assert response.status_code == 200
    assert response.json()["Invoice"]["BillEmail"] == {"Address": "ranch@mail.example"}


async def test_send_to_a_malformed_address(http, api, realm, invoice):
    response = await http.post(api(f"invoice/{invoice['Id']}/send"), params={"sendTo": "not an email"},
                               headers=OCTET)
    error = fault_of(response)
    assert (error["code"], error["element"]) == ("2010", "sendTo")
    assert await outbox(http, realm) == []


async def test_send_a_missing_invoice_is_610(http, api):
    response = await http.post(api("invoice/999999/send"), params={"sendTo": "a@b.example"}, headers=OCTET)
    assert fault_of(response)["code"] == "610"


@pytest.mark.parametrize("entity", ["Estimate", "SalesReceipt", "CreditMemo"])
async def test_other_sales_forms_send(http, api, realm, entity):
    record = await create(http, api, entity, {"CustomerRef": {"value": "2"}, "Line": sales_line(60)})
    assert record["EmailStatus"] == "NotSet"
    response = await http.post(api(f"{entity.lower()}/{record['Id']}/send"), params={"sendTo": "c@d.example"},
                               headers=OCTET)
    assert response.status_code == 200, response.text
    sent = response.json()[entity]
    assert sent["EmailStatus"] == "EmailSent"
    assert sent["DeliveryInfo"]["DeliveryType"] == "Email"
    assert sent["BillEmail"] == {"Address": "c@d.example"}
    [email] = await outbox(http, realm)
    assert email["entity"] == entity and email["to"] == "c@d.example"
    assert email["subject"].startswith({"Estimate": "Estimate", "SalesReceipt": "Sales Receipt",
                                        "CreditMemo": "Credit Memo"}[entity] + f" {record['DocNumber']} from ")


async def test_purchase_order_sends(http, api, realm):
    order = await purchase_order(http, api)
    response = await http.post(api(f"purchaseorder/{order['Id']}/send"), params={"sendTo": "vendor@e.example"},
                               headers=OCTET)
    assert response.status_code == 200, response.text
    sent = response.json()["PurchaseOrder"]
    assert sent["EmailStatus"] == "EmailSent"
    assert sent["DeliveryInfo"]["DeliveryType"] == "Email"
    [email] = await outbox(http, realm)
    assert (email["entity"], email["to"]) == ("PurchaseOrder", "vendor@e.example")
    assert email["subject"] == f"Purchase Order {order['DocNumber']} from {COMPANY}"


async def test_purchase_order_send_records_po_email(http, api):
    order = await purchase_order(http, api)
    response = await http.post(api(f"purchaseorder/{order['Id']}/send"), params={"sendTo": "vendor@e.example"},
                               headers=OCTET)
    sent = response.json()["PurchaseOrder"]
    assert sent["POEmail"] == {"Address": "vendor@e.example"}
    assert "BillEmail" not in sent


async def test_purchase_order_send_uses_its_po_email(http, api, realm):
    order = await purchase_order(http, api, POEmail={"Address": "orders@vendor.example"})
    response = await http.post(api(f"purchaseorder/{order['Id']}/send"), headers=OCTET)
    assert response.status_code == 200, response.text
    assert [e["to"] for e in await outbox(http, realm)] == ["orders@vendor.example"]


async def test_bill_cannot_be_sent(http, api, realm):
    bills = await http.get(api("query"), params={"query": "select * from Bill maxresults 1"})
    bill_id = bills.json()["QueryResponse"]["Bill"][0]["Id"]
    path = f"/v3/company/{realm}/bill/{bill_id}/send"
    response = await http.post(path, params={"sendTo": "a@b.example"}, headers=OCTET)
    error = fault_of(response)
    assert error == {"Message": "Unsupported Operation",
                     "Detail": f"Operation Could not find resource for relative : {path} of full path: "
                               f"http://sandbox.test{path} is not supported.",
                     "code": "500", "type": "ValidationFault"}
    assert await outbox(http, realm) == []


# --- pdf ------------------------------------------------------------------------------------------------


def pdf_text(pdf: bytes) -> bytes:
    """Every content stream of the PDF, inflated where it is compressed."""
    out = b""
    for stream in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.DOTALL):
        try:
            out += zlib.decompress(stream)
        except zlib.error:
            out += stream
    return out


async def test_invoice_pdf(http, api, invoice):
    response = await http.get(api(f"invoice/{invoice['Id']}/pdf"), headers={"Accept": "application/pdf"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pdf"
    assert response.content.startswith(b"%PDF-")
    assert response.content.rstrip().endswith(b"%%EOF")
    text = pdf_text(response.content)
    assert f"({invoice['DocNumber']})".encode() in text
    assert COMPANY.encode() in text
    assert b"Amy's Bird Sanctuary" in text


@pytest.mark.parametrize("entity", ["Estimate", "SalesReceipt", "CreditMemo"])
async def test_other_forms_have_pdfs(http, api, entity):
    record = await create(http, api, entity, {"CustomerRef": {"value": "3"}, "Line": sales_line(33)})
    response = await http.get(api(f"{entity.lower()}/{record['Id']}/pdf"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pdf"
    assert response.content.startswith(b"%PDF-")
    assert f"({record['DocNumber']})".encode() in pdf_text(response.content)


async def test_purchase_order_pdf(http, api):
    order = await purchase_order(http, api)
    response = await http.get(api(f"purchaseorder/{order['Id']}/pdf"))
    assert response.status_code == 200 and response.content.startswith(b"%PDF-")


async def test_pdf_refusals(http, api, realm):
    bills = await http.get(api("query"), params={"query": "select * from Bill maxresults 1"})
    bill_id = bills.json()["QueryResponse"]["Bill"][0]["Id"]
    response = await http.get(api(f"bill/{bill_id}/pdf"))
    error = fault_of(response)
    assert (error["code"], error["Message"]) == ("500", "Unsupported Operation")
    assert f"/v3/company/{realm}/bill/{bill_id}/pdf" in error["Detail"]
    assert fault_of(await http.get(api("invoice/999999/pdf")))["code"] == "610"
    assert fault_of(await http.get(api("invoice/abc/pdf")))["code"] == "2030"
