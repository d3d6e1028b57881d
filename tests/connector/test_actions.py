"""Every action, run against the in-process sandbox; its effect is checked through a separate read of the books
(`books`, straight from the sandbox), not through the action's own answer."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from qbflow.catalog.entities import ENTITIES, Kind
from qbflow.connector.actions import ROWS
from qbflow.connector.base import ActionContext
from qbflow.connector.registry import ACTIONS, action
from qbflow.qbo import QBOClient
from tests.connector.conftest import Books

# Issue 4's seed list, titles exactly as written there.
SEED_TITLES = [
    "Create Customer", "Update Customer", "Get Customer",
    "Create Bill", "Update Bill", "Get Bill", "Delete Bill",
    "Create Journal Entry",
    "Create Invoice", "Update Invoice", "Get Invoice", "Delete Invoice", "Send Invoice",
    "Create Credit Memo", "Update Credit Memo", "Get Credit Memo", "Delete Credit Memo",
    "Get Account",
    "Create Estimate", "Update Estimate", "Get Estimate", "Delete Estimate",
    "Create Payment", "Get Payment", "Delete Payment",
    "Create Expense", "Get Expense", "Update Expense", "Delete Expense",
    "Create Purchase Order", "Get Purchase Order", "Update Purchase Order", "Delete Purchase Order",
    "Create Vendor", "Get Vendor", "Update Vendor",
    "Create Refund Receipt", "Get Refund Receipt", "Update Refund Receipt", "Delete Refund Receipt",
    "Create Sales Receipt", "Update Sales Receipt", "Get Sales Receipt",
    "Get Product",
    "Upload Attachment", "Get Attachment",
]
# Beyond the seed (issue 4): find-or-create, Find X, void, PDF, deactivate.
BEYOND_SEED_TITLES = [
    "Find or Create Customer", "Find or Create Vendor", "Void Invoice", "Void Payment", "Void Sales Receipt",
    "Get Invoice PDF", "Deactivate Customer", "Deactivate Vendor",
    "Find Customers", "Find Bills", "Find Invoices", "Find Credit Memos", "Find Accounts", "Find Estimates",
    "Find Payments", "Find Expenses", "Find Purchase Orders", "Find Vendors", "Find Refund Receipts",
    "Find Sales Receipts", "Find Products", "Find Journal Entries",
]


def test_every_seed_title_exists_with_that_exact_title() -> None:
    titles = {a.title for a in ACTIONS.values()}
    missing = [t for t in SEED_TITLES + BEYOND_SEED_TITLES if t not in titles]
    assert not missing


def test_seed_actions_have_the_expected_keys_and_entities() -> None:
    assert action("create_expense").entity == "Purchase" and action("create_expense").title == "Create Expense"
    assert action("get_product").entity == "Item" and action("get_product").title == "Get Product"
    assert action("create_invoice").title == "Create Invoice"
    assert action("upload_attachment").title == "Upload Attachment"
    for a in ACTIONS.values():
        assert a.key.isidentifier() and a.key == a.key.lower()
        assert a.description and a.output


def test_name_lists_have_no_delete_but_a_deactivate() -> None:
    for r in ROWS:
        if r.definition.kind is Kind.NAME_LIST:
            assert f"delete_{r.key}" not in ACTIONS
    for noun in ("customer", "vendor", "account", "product"):
        assert f"deactivate_{noun}" in ACTIONS


def _undocumented(schema: dict, defs: dict, where: str) -> list[str]:
    missing = []
    for name, prop in (schema.get("properties") or {}).items():
        if not prop.get("description"):
            missing.append(f"{where}.{name}")
    return missing


def test_every_input_field_is_documented() -> None:
    missing = []
    for a in ACTIONS.values():
        schema = a.input_schema()
        assert schema.get("description"), a.key
        missing += _undocumented(schema, schema.get("$defs", {}), a.key)
        for def_name, definition in (schema.get("$defs") or {}).items():
            missing += _undocumented(definition, {}, f"{a.key}:{def_name}")
    assert not missing


def test_every_create_covers_what_the_catalog_requires() -> None:
    for a in ACTIONS.values():
        if a.operation != "create" or a.entity is None:
            continue
        schema = a.input_schema()
        required = set(schema.get("required", []))
        for need in ENTITIES[a.entity].required:
            if isinstance(need, str) and need != "TotalAmt":  # a payment's total is derived from what it pays
                from qbflow.connector.actions import row
                from qbflow.connector.special import JOURNAL_ROW

                r = JOURNAL_ROW if a.entity == "JournalEntry" else row(a.entity)
                names = {f.name for f in r.fields if f.property == need}
                assert names & required, f"{a.key}: nothing required maps to {need}"


# --- one case per action ------------------------------------------------------------------------------------
@dataclass
class Case:
    """`prepare` makes what the action needs and returns (input, state); `check` reads the books."""

    prepare: Callable[[Books], tuple[dict, Any]]
    check: Callable[[Books, Any, dict, dict], None | Awaitable[None]]


CASES: dict[str, Case] = {}


def _id_only(entity: str, **overrides):
    def prepare(books: Books) -> tuple[dict, Any]:
        record = books.make(entity, **overrides)
        return {"id": record["Id"]}, record

    return prepare


def _check_get(entity: str):
    def check(books: Books, record: dict, _input: dict, result: dict) -> None:
        assert result == books.get(entity, record["Id"])

    return check


def _check_deleted(entity: str):
    def check(books: Books, record: dict, _input: dict, result: dict) -> None:
        assert result["status"] == "Deleted"
        assert not books.has(entity, record["Id"])

    return check


def _check_voided(entity: str):
    def check(books: Books, record: dict, _input: dict, result: dict) -> None:
        stored = books.get(entity, record["Id"])
        assert stored["TotalAmt"] == 0 and stored["PrivateNote"].startswith("Voided")

    return check


def _check_deactivated(entity: str):
    def check(books: Books, record: dict, _input: dict, result: dict) -> None:
        assert books.get(entity, record["Id"])["Active"] is False

    return check


def _send(entity: str):
    def prepare(books: Books) -> tuple[dict, Any]:
        record = books.make(entity)
        return {"id": record["Id"], "to": "books@recipient.example"}, record

    def check(books: Books, record: dict, _input: dict, result: dict) -> None:
        assert books.get(entity, record["Id"])["EmailStatus"] == "EmailSent"
        sent = books.outbox[-1]
        assert (sent["to"], sent["entity"], sent["id"]) == ("books@recipient.example", entity, record["Id"])

    return Case(prepare, check)


def _pdf(entity: str):
    async def check(books: Books, record: dict, _input: dict, result: dict) -> None:
        content = base64.b64decode(result["content_base64"])
        assert content.startswith(b"%PDF") and result["size"] == len(content)
        assert result["content_type"] == "application/pdf"
        assert books.has(entity, record["Id"])

    return Case(_id_only(entity), check)


def _update_note(entity: str):
    name_list = ENTITIES[entity].kind is Kind.NAME_LIST
    field, prop = ("notes", "Notes") if name_list else ("private_note", "PrivateNote")

    def prepare(books: Books) -> tuple[dict, Any]:
        record = books.make(entity)
        return {"id": record["Id"], field: "changed by the action"}, record

    def check(books: Books, record: dict, _input: dict, result: dict) -> None:
        stored = books.get(entity, record["Id"])
        assert stored[prop] == "changed by the action"
        assert int(stored["SyncToken"]) == int(record["SyncToken"]) + 1
        for kept in ("Line", "TotalAmt", "CustomerRef", "VendorRef", "DisplayName"):  # a sparse update
            assert stored.get(kept) == record.get(kept), kept

    return Case(prepare, check)


def _find(entity: str):
    definition = ENTITIES[entity]

    def prepare(books: Books) -> tuple[dict, Any]:
        if definition.kind is Kind.NAME_LIST:
            record = books.make(entity)
            return {"name": (record.get("DisplayName") or record["Name"]).upper()}, record
        record = books.make(entity, DocNumber="FIND-ME-1")
        books.make(entity, DocNumber="FIND-ME-2")
        return {"doc_number": "find-me-1"}, record

    def check(books: Books, record: dict, _input: dict, result: dict) -> None:
        assert [r["Id"] for r in result["records"]] == [record["Id"]]
        assert result["count"] == 1 and result["next_start_position"] is None

    return Case(prepare, check)


for _r in ROWS:
    _e = _r.entity
    if "get" in _r.offers:
        CASES[f"get_{_r.key}"] = Case(_id_only(_e), _check_get(_e))
    if "delete" in _r.offers:
        CASES[f"delete_{_r.key}"] = Case(_id_only(_e), _check_deleted(_e))
    if "void" in _r.offers:
        CASES[f"void_{_r.key}"] = Case(_id_only(_e), _check_voided(_e))
    if "deactivate" in _r.offers:
        CASES[f"deactivate_{_r.key}"] = Case(_id_only(_e), _check_deactivated(_e))
    if "send" in _r.offers:
        CASES[f"send_{_r.key}"] = _send(_e)
    if "pdf" in _r.offers:
        CASES[f"get_{_r.key}_pdf"] = _pdf(_e)
    if "update" in _r.offers:
        CASES[f"update_{_r.key}"] = _update_note(_e)
    if "find" in _r.offers:
        CASES[next(a.key for a in ACTIONS.values() if a.entity == _e and a.operation == "find")] = _find(_e)


def case(key: str):
    def register(function):
        prepare, check = function()
        CASES[key] = Case(prepare, check)
        return function

    return register


def _lines_total(record: dict) -> float:
    return sum(line["Amount"] for line in record["Line"] if line["DetailType"] != "SubTotalLineDetail")


def _sales_create(entity: str, *, customer: str | None = "pyescakes@intuit.com", extra: dict | None = None):
    def prepare(books: Books) -> tuple[dict, Any]:
        data = {
            "lines": [{"item": "Design", "qty": 2, "unit_price": 75, "description": "Garden design"},
                      {"item": "soil", "amount": 30},
                      {"description": "Thank you!"}],
            "txn_date": "2026-03-02", "private_note": "made by a test", "customer_memo": "See you in spring",
            **(extra or {}),
        }
        if customer:
            data["customer"] = customer
        return data, None

    def check(books: Books, _state: Any, data: dict, result: dict) -> None:
        stored = [r for r in books.all(entity) if r.get("PrivateNote") == "made by a test"]
        assert len(stored) == 1
        record = stored[0]
        if customer:
            assert record["CustomerRef"]["value"] == books.id_of("Customer", "Pye's Cakes")
        assert record["TotalAmt"] == 180.0 and record["TxnDate"] == "2026-03-02"
        items = [line["SalesItemLineDetail"]["ItemRef"]["value"] for line in record["Line"]
                 if line["DetailType"] == "SalesItemLineDetail"]
        assert items == [books.id_of("Item", "Design"), books.id_of("Item", "Soil")]
        assert any(line["DetailType"] == "DescriptionOnly" for line in record["Line"])
        assert record["CustomerMemo"] == {"value": "See you in spring"}
        for key, value in (extra or {}).items():
            if key == "deposit_to_account":
                assert record["DepositToAccountRef"]["value"] == books.id_of("Account", value)

    return Case(prepare, check)


CASES["create_invoice"] = _sales_create("Invoice", extra={"due_date": "2026-04-01", "terms": "Net 30",
                                                          "doc_number": "INV-77"})
CASES["create_estimate"] = _sales_create("Estimate", extra={"expiration_date": "2026-04-30"})
CASES["create_credit_memo"] = _sales_create("CreditMemo")
CASES["create_sales_receipt"] = _sales_create("SalesReceipt", customer=None,
                                              extra={"deposit_to_account": "Checking", "payment_method": "Visa"})
CASES["create_refund_receipt"] = _sales_create("RefundReceipt", customer="Pye's Cakes",
                                               extra={"deposit_to_account": "Checking"})


@case("create_customer")
def _create_customer():
    def prepare(books: Books):
        return {"display_name": "Juniper Labs", "given_name": "June", "family_name": "Park",
                "email": "ap@juniperlabs.example", "phone": "(415) 555-0100", "terms": "net 15",
                "billing_address": {"line1": "1 Pine St", "city": "Oakland", "state": "CA", "postal_code": "94601"},
                "extra": {"ResaleNum": "R-1"}}, None

    def check(books: Books, _state, data, result):
        record = books.get("Customer", books.id_of("Customer", "Juniper Labs"))
        assert record["PrimaryEmailAddr"]["Address"] == "ap@juniperlabs.example"
        assert record["BillAddr"]["City"] == "Oakland" and record["BillAddr"]["CountrySubDivisionCode"] == "CA"
        assert record["SalesTermRef"]["value"] == books.id_of("Term", "Net 15")
        assert record["ResaleNum"] == "R-1" and record["GivenName"] == "June"

    return prepare, check


@case("create_vendor")
def _create_vendor():
    def prepare(books: Books):
        return {"display_name": "Sierra Stoneworks", "email": "billing@sierrastone.example",
                "account_number": "ACCT-9", "track_1099": True, "terms": "Net 60"}, None

    def check(books: Books, _state, data, result):
        record = books.get("Vendor", books.id_of("Vendor", "Sierra Stoneworks"))
        assert record["AcctNum"] == "ACCT-9" and record["Vendor1099"] is True
        assert record["TermRef"]["value"] == books.id_of("Term", "Net 60")

    return prepare, check


@case("create_payment")
def _create_payment():
    def prepare(books: Books):
        invoice = books.make("Invoice")
        return {"customer": "Amy's Bird Sanctuary", "invoices": [{"invoice_id": invoice["Id"], "amount": 60}],
                "reference_number": "CHK-1001", "payment_method": "Check"}, invoice

    def check(books: Books, invoice, data, result):
        payments = [p for p in books.all("Payment") if p.get("PaymentRefNum") == "CHK-1001"]
        assert len(payments) == 1 and payments[0]["TotalAmt"] == 60.0
        assert books.get("Invoice", invoice["Id"])["Balance"] == 40.0

    return prepare, check


@case("create_bill")
def _create_bill():
    def prepare(books: Books):
        return {"vendor": "plantqueen@taniasnursery.com", "doc_number": "B-314", "due_date": "2026-05-01",
                "lines": [{"account": "Job Expenses", "amount": 120.5, "description": "Mulch"},
                          {"item": "Soil", "qty": 3, "unit_price": 8, "customer": "Cool Cars",
                           "billable": True}]}, None

    def check(books: Books, _state, data, result):
        bill = next(b for b in books.all("Bill") if b.get("DocNumber") == "B-314")
        assert bill["VendorRef"]["value"] == books.id_of("Vendor", "Tania's Nursery")
        assert bill["TotalAmt"] == 144.5 and bill["DueDate"] == "2026-05-01"
        account_line, item_line = bill["Line"]
        assert account_line["AccountBasedExpenseLineDetail"]["AccountRef"]["value"] == books.id_of(
            "Account", "Job Expenses")
        detail = item_line["ItemBasedExpenseLineDetail"]
        assert detail["CustomerRef"]["value"] == books.id_of("Customer", "Cool Cars")
        assert detail["BillableStatus"] == "Billable" and item_line["Amount"] == 24.0

    return prepare, check


@case("create_expense")
def _create_expense():
    def prepare(books: Books):
        return {"payment_account": "Mastercard", "payment_type": "CreditCard", "payee": "Chin's Gas and Oil",
                "doc_number": "EXP-1", "lines": [{"account": "Travel", "amount": 45.25}]}, None

    def check(books: Books, _state, data, result):
        expense = next(p for p in books.all("Purchase") if p.get("DocNumber") == "EXP-1")
        assert expense["AccountRef"]["value"] == books.id_of("Account", "Mastercard")
        assert expense["EntityRef"]["value"] == books.id_of("Vendor", "Chin's Gas and Oil")
        assert expense["EntityRef"]["type"] == "Vendor" and expense["TotalAmt"] == 45.25

    return prepare, check


@case("create_purchase_order")
def _create_purchase_order():
    def prepare(books: Books):
        return {"vendor": "Hicks Hardware", "email": "orders@hickshardware.example",
                "vendor_message": "Deliver by Friday",
                "lines": [{"item": "Sprinkler Heads", "qty": 50, "unit_price": 1.5}]}, None

    def check(books: Books, _state, data, result):
        order = next(p for p in books.all("PurchaseOrder") if p.get("Memo") == "Deliver by Friday")
        assert order["VendorRef"]["value"] == books.id_of("Vendor", "Hicks Hardware")
        assert order["POEmail"]["Address"] == "orders@hickshardware.example" and order["TotalAmt"] == 75.0

    return prepare, check


@case("create_journal_entry")
def _create_journal_entry():
    def prepare(books: Books):
        return {"doc_number": "JE-1", "lines": [
            {"account": "Accounts Receivable (A/R)", "debit": 300, "party": "Paulsen Medical Supplies"},
            {"account": "Design income", "credit": 200},
            {"account": "Services", "credit": 100, "description": "split"}]}, None

    def check(books: Books, _state, data, result):
        entry = next(j for j in books.all("JournalEntry") if j.get("DocNumber") == "JE-1")
        assert entry["TotalAmt"] == 300.0
        first = entry["Line"][0]["JournalEntryLineDetail"]
        assert first["PostingType"] == "Debit"
        assert first["Entity"] == {"Type": "Customer", "EntityRef": {
            "value": books.id_of("Customer", "Paulsen Medical Supplies"), "name": "Paulsen Medical Supplies"}}
        assert [line["JournalEntryLineDetail"]["PostingType"] for line in entry["Line"]] == ["Debit", "Credit",
                                                                                              "Credit"]

    return prepare, check


@case("get_customer")
def _get_customer():
    def prepare(books: Books):
        return {"email": "MEDICAL@intuit.com"}, None

    def check(books: Books, _state, data, result):
        assert result == books.get("Customer", books.id_of("Customer", "Paulsen Medical Supplies"))

    return prepare, check


@case("get_account")
def _get_account():
    def prepare(books: Books):
        return {"name": "accounts payable (a/p)"}, None

    def check(books: Books, _state, data, result):
        assert result == books.get("Account", books.id_of("Account", "Accounts Payable (A/P)"))

    return prepare, check


@case("get_product")
def _get_product():
    def prepare(books: Books):
        return {"id": books.id_of("Item", "Rock Fountain")}, None

    def check(books: Books, _state, data, result):
        assert result == books.get("Item", books.id_of("Item", "Rock Fountain"))

    return prepare, check


@case("find_or_create_customer")
def _find_or_create_customer():
    def prepare(books: Books):
        return {"email": "new@meadowlark.example", "display_name": "Meadowlark Farms", "phone": "555-0199"}, None

    def check(books: Books, _state, data, result):
        matches = [c for c in books.all("Customer") if c["DisplayName"] == "Meadowlark Farms"]
        assert len(matches) == 1 and result["created"] is True
        assert matches[0]["PrimaryEmailAddr"]["Address"] == "new@meadowlark.example"

    return prepare, check


@case("find_or_create_vendor")
def _find_or_create_vendor():
    def prepare(books: Books):
        return {"email": "MATERIALS@intuit.com", "display_name": "Some Other Name"}, None

    def check(books: Books, _state, data, result):
        assert result["created"] is False
        assert result["record"]["Id"] == books.id_of("Vendor", "Norton Lumber and Building Materials")
        assert not [v for v in books.all("Vendor") if v["DisplayName"] == "Some Other Name"]

    return prepare, check


PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


@case("upload_attachment")
def _upload_attachment():
    def prepare(books: Books):
        invoice = books.make("Invoice")
        return {"entity": "invoice", "record": invoice["Id"], "content_base64": base64.b64encode(PNG).decode(),
                "file_name": "receipt.png", "note": "scan"}, invoice

    async def check(books: Books, invoice, data, result):
        stored = [a for a in books.all("Attachable") if a.get("FileName") == "receipt.png"]
        assert len(stored) == 1
        assert stored[0]["AttachableRef"][0]["EntityRef"] == {"type": "Invoice", "value": invoice["Id"]}
        assert stored[0]["ContentType"] == "image/png" and stored[0]["Note"] == "scan"
        assert await books.client.download_attachment(stored[0]["Id"]) == PNG

    return prepare, check


@case("get_attachment")
def _get_attachment():
    def prepare(books: Books):
        return {}, None  # filled in by the test: an upload through a plain client

    def check(books: Books, uploaded, data, result):
        assert base64.b64decode(result["content_base64"]) == PNG
        assert result["file_name"] == "plan.png" and result["size"] == len(PNG)
        assert result["content_type"] == books.get("Attachable", uploaded["Id"])["ContentType"]
        assert result["linked_to"] == [{"entity": "Customer", "id": "1"}]

    return prepare, check


def _report_case(name: str, data: dict, group: str):
    """A report action: its flat summary row of `group` says what a plain read of the report says."""
    def prepare(books: Books):
        return data, None

    async def check(books: Books, state, given, result):
        plain = await books.client.report(name, **{k: str(v) for k, v in (given.get("params") or given).items()})
        assert result["report"]["Header"]["ReportName"] == name
        assert result["report"]["Rows"] == plain["Rows"]

        def summary(rows: list[dict]) -> str | None:
            for row in rows:
                if row.get("group") == group and "Summary" in row:
                    return row["Summary"]["ColData"][-1]["value"]
                found = summary((row.get("Rows") or {}).get("Row") or [])
                if found is not None:
                    return found
            return None

        flat = [r for r in result["rows"] if r["type"] == "Summary" and r["group"] == group]
        assert len(flat) == 1 and flat[0][result["columns"][-1]] == float(summary(plain["Rows"]["Row"]) or 0)

    return prepare, check


for _key, _name, _data, _group in (
        ("get_profit_and_loss", "ProfitAndLoss", {"date_macro": "All"}, "NetIncome"),
        ("get_balance_sheet", "BalanceSheet", {}, "TotalAssets"),
        ("get_ar_aging", "AgedReceivables", {}, "GrandTotal"),
        ("get_ap_aging", "AgedPayables", {"aging_period": 10}, "GrandTotal"),
        ("get_cash_flow", "CashFlow", {}, "EndingCash"),
        ("get_trial_balance", "TrialBalance", {}, "GrandTotal"),
        ("run_report", "CustomerBalance", {"report": "customerbalance", "params": {}}, "GrandTotal")):
    CASES[_key] = Case(*_report_case(_name, _data, _group))


def test_there_is_a_case_for_every_action() -> None:
    assert set(CASES) == set(ACTIONS)


@pytest.mark.parametrize("key", sorted(ACTIONS))
async def test_action(key: str, ctx: ActionContext, books: Books, qbo: QBOClient) -> None:
    c = CASES[key]
    books.client = qbo  # async checks read through a plain client call, never the action's answer
    data, state = c.prepare(books)
    if key == "get_attachment":  # uploaded through a plain client, not through the action under test
        state = await qbo.upload_attachment("plan.png", PNG, "image/png", link_to=("Customer", "1"))
        data = {"id": state["Id"]}
    result = await action(key).run(ctx, data)
    outcome = c.check(books, state, data, result)
    if outcome is not None:
        await outcome
