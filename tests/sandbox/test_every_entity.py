"""Every entity the sandbox serves goes through create, read, sparse update, query and delete/deactivate.

References are to the sample company a new sandbox company is (docs/sandbox.md): Checking 35, Savings 36,
Mastercard 41, Bank Charges 8, Services 1, Interest Earned 89, Travel 22; item 2 Hours, 5 Rock Fountain; vendor
48 PG&E; employee 54 John Johnson.
"""

from __future__ import annotations

import pytest

from qbflow.catalog import ENTITIES, Kind

pytestmark = pytest.mark.asyncio

SALES_LINE = [{"Amount": 25, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {"ItemRef": {"value": "2"}}}]
EXPENSE_LINE = [{"Amount": 40, "DetailType": "AccountBasedExpenseLineDetail",
                 "AccountBasedExpenseLineDetail": {"AccountRef": {"value": "22"}}}]
JOURNAL_LINES = [
    {"Amount": 15, "DetailType": "JournalEntryLineDetail",
     "JournalEntryLineDetail": {"PostingType": "Debit", "AccountRef": {"value": "8"}}},
    {"Amount": 15, "DetailType": "JournalEntryLineDetail",
     "JournalEntryLineDetail": {"PostingType": "Credit", "AccountRef": {"value": "35"}}},
]

MINIMAL = {
    "Account": {"Name": "Equipment Rental", "AccountType": "Expense"},
    "Customer": {"DisplayName": "Every Entity Customer"},
    "Vendor": {"DisplayName": "Every Entity Vendor"},
    "Employee": {"GivenName": "Riley", "FamilyName": "Everett"},
    "Item": {"Name": "Consulting", "Type": "Service", "IncomeAccountRef": {"value": "1"}},
    "Term": {"Name": "Net 45", "DueDays": 45},
    "PaymentMethod": {"Name": "Wire transfer"},
    "Class": {"Name": "Hardscape"},
    "Department": {"Name": "North Yard"},
    "Invoice": {"CustomerRef": {"value": "1"}, "Line": SALES_LINE},
    "Estimate": {"CustomerRef": {"value": "1"}, "Line": SALES_LINE},
    "SalesReceipt": {"CustomerRef": {"value": "1"}, "Line": SALES_LINE},
    "CreditMemo": {"CustomerRef": {"value": "1"}, "Line": SALES_LINE},
    "RefundReceipt": {"CustomerRef": {"value": "1"}, "Line": SALES_LINE, "DepositToAccountRef": {"value": "35"}},
    "Payment": {"CustomerRef": {"value": "2"}, "TotalAmt": 10},
    "Deposit": {"DepositToAccountRef": {"value": "35"}, "Line": [
        {"Amount": 30, "DetailType": "DepositLineDetail", "DepositLineDetail": {"AccountRef": {"value": "89"}}}]},
    "Bill": {"VendorRef": {"value": "48"}, "Line": EXPENSE_LINE},
    "VendorCredit": {"VendorRef": {"value": "48"}, "Line": EXPENSE_LINE},
    "PurchaseOrder": {"VendorRef": {"value": "48"}, "Line": [
        {"Amount": 40, "DetailType": "ItemBasedExpenseLineDetail",
         "ItemBasedExpenseLineDetail": {"ItemRef": {"value": "5"}, "Qty": 2, "UnitPrice": 20}}]},
    "Purchase": {"PaymentType": "Cash", "AccountRef": {"value": "35"}, "Line": EXPENSE_LINE},
    "JournalEntry": {"Line": JOURNAL_LINES},
    "TimeActivity": {"NameOf": "Employee", "EmployeeRef": {"value": "54"}, "Hours": 3, "Minutes": 30},
    "Transfer": {"FromAccountRef": {"value": "35"}, "ToAccountRef": {"value": "36"}, "Amount": 125},
    "CreditCardPayment": {"BankAccountRef": {"value": "35"}, "CreditCardAccountRef": {"value": "41"}, "Amount": 60},
    "Attachable": {"Note": "Signed contract is in the filing cabinet",
                   "AttachableRef": [{"EntityRef": {"type": "Customer", "value": "1"}}]},
}
NOTE_FIELD = {"Customer": "Notes", "Vendor": "AcctNum", "Employee": "EmployeeNumber", "Item": "Description",
              "Account": "Description", "Attachable": "Note", "Term": "DiscountPercent",
              "PaymentMethod": "Type", "Class": "SubClass", "Department": "SubDepartment",
              "TimeActivity": "Description"}
NOTE_VALUE = {"DiscountPercent": 2, "Type": "NON_CREDIT_CARD", "SubClass": False, "SubDepartment": False}


async def test_every_writable_entity_is_covered():
    writable = {name for name, e in ENTITIES.items() if e.kind in (Kind.NAME_LIST, Kind.TRANSACTION, Kind.ATTACHMENT)
                and "create" in e.operations}
    # BillPayment has its own test here; TaxAgency (no update) and CompanyCurrency (multicurrency only) are in
    # test_entities_us.py.
    assert writable - {"BillPayment", "TaxAgency", "CompanyCurrency"} == set(MINIMAL)


@pytest.mark.parametrize("entity", sorted(MINIMAL))
async def test_entity_lifecycle(http, api, entity: str):
    path = entity.lower()
    key = ENTITIES[entity].key  # CreditCardPayment answers as CreditCardPaymentTxn
    created = await http.post(api(path), json=MINIMAL[entity])
    assert created.status_code == 200, created.text
    record = created.json()[key]
    assert record["SyncToken"] == "0" and record["Id"].isdigit()
    read = await http.get(api(f"{path}/{record['Id']}"))
    assert read.json()[key]["Id"] == record["Id"]

    field = NOTE_FIELD.get(entity, "PrivateNote")
    value = NOTE_VALUE.get(field, "changed by the lifecycle test")
    updated = await http.post(api(path), json={"Id": record["Id"], "SyncToken": "0", "sparse": True, field: value})
    assert updated.status_code == 200, updated.text
    assert updated.json()[key][field] == value
    assert updated.json()[key]["SyncToken"] == "1"

    found = await http.get(api("query"), params={"query": f"select * from {entity} where Id = '{record['Id']}'"})
    assert [r["Id"] for r in found.json()["QueryResponse"][key]] == [record["Id"]]

    kind = ENTITIES[entity].kind
    if kind is Kind.NAME_LIST:
        off = await http.post(api(path), json={"Id": record["Id"], "SyncToken": "1", "sparse": True, "Active": False})
        assert off.status_code == 200, off.text
        assert off.json()[entity]["Active"] is False
    else:
        deleted = await http.post(api(path), params={"operation": "delete"},
                                  json={"Id": record["Id"], "SyncToken": "1"})
        assert deleted.json()[key]["status"] == "Deleted"
        assert (await http.get(api(f"{path}/{record['Id']}"))).status_code == 400


async def test_bill_payment_pays_a_bill(http, api):
    bill = (await http.post(api("bill"), json=MINIMAL["Bill"])).json()["Bill"]
    response = await http.post(api("billpayment"), json={
        "VendorRef": {"value": "48"}, "PayType": "Check", "TotalAmt": 40,
        "CheckPayment": {"BankAccountRef": {"value": "35"}},
        "Line": [{"Amount": 40, "LinkedTxn": [{"TxnId": bill["Id"], "TxnType": "Bill"}]}]})
    assert response.status_code == 200, response.text
    payment = response.json()["BillPayment"]
    paid = (await http.get(api(f"bill/{bill['Id']}"))).json()["Bill"]
    assert paid["Balance"] == 0
    assert paid["LinkedTxn"] == [{"TxnId": payment["Id"], "TxnType": "BillPayment"}]
    voided = await http.post(api("billpayment"), params={"operation": "update", "include": "void"},
                             json={"Id": payment["Id"], "SyncToken": "0", "sparse": True})
    assert voided.json()["BillPayment"]["TotalAmt"] == 0
    assert (await http.get(api(f"bill/{bill['Id']}"))).json()["Bill"]["Balance"] == 40


async def test_read_only_and_settings_entities(http, api, realm):
    tax = await http.get(api("taxcode/2"))
    assert tax.json()["TaxCode"]["Name"] == "California"
    refused = await http.post(api("taxcode"), json={"Name": "New tax"})
    assert refused.status_code == 400
    info = (await http.get(api(f"companyinfo/{realm}"))).json()["CompanyInfo"]
    renamed = await http.post(api("companyinfo"), json={"Id": info["Id"], "SyncToken": info["SyncToken"],
                                                         "sparse": True, "CompanyName": "Renamed Gardens LLC"})
    assert renamed.json()["CompanyInfo"]["CompanyName"] == "Renamed Gardens LLC"
    counted = await http.get(api("query"), params={"query": "select count(*) from Account"})
    assert counted.json()["QueryResponse"]["totalCount"] >= 20


def _without_times(value):
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items() if k not in ("MetaData", "DeliveryTime")}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


async def test_a_new_company_has_believable_books_the_same_every_time():
    from qbflow.sandbox.app import Sandbox

    first, second = Sandbox(rate_limit=False), Sandbox(rate_limit=False)
    assert first.realms == second.realms
    realm = first.realms[0]
    books = {name: _without_times(list(first.books.records(realm, name))) for name in ENTITIES}
    assert books == {name: _without_times(list(second.books.records(realm, name))) for name in ENTITIES}
    # A chart of accounts, tax codes, terms, products, customers, vendors and some transactions.
    assert len(books["Account"]) >= 20 and len(books["Customer"]) >= 5 and len(books["Vendor"]) >= 5
    assert books["TaxCode"] and books["Term"] and len(books["Item"]) >= 5
    assert len(books["Invoice"]) >= 3 and books["Payment"] and books["Bill"]
    # Consistent: each invoice's balance is what its payments leave (one paid in full, one in part), and
    # customers' balances add up to their open invoices less open credit memos, with their jobs' too.
    applied: dict[str, float] = {}
    for payment in books["Payment"]:
        for line in payment["Line"]:
            for link in line.get("LinkedTxn", []):
                applied[link["TxnId"]] = applied.get(link["TxnId"], 0) + line["Amount"]
    for invoice in books["Invoice"]:
        assert invoice["Balance"] == round(invoice["TotalAmt"] - applied.get(invoice["Id"], 0), 2)
    paid = [i for i in books["Invoice"] if i["LinkedTxn"]]
    assert any(i["Balance"] == 0 for i in paid) and any(0 < i["Balance"] < i["TotalAmt"] for i in paid)
    for customer in books["Customer"]:
        def owed(entity: str, customer_id: str = customer["Id"]) -> float:
            return sum(t["Balance"] for t in books[entity] if t["CustomerRef"]["value"] == customer_id)
        assert customer["Balance"] == round(owed("Invoice") - owed("CreditMemo"), 2)
        jobs = [c for c in books["Customer"] if c.get("ParentRef", {}).get("value") == customer["Id"]]
        assert customer["BalanceWithJobs"] == round(customer["Balance"] + sum(j["BalanceWithJobs"] for j in jobs), 2)
    # A parent customer owes nothing itself but its job does (as recorded of Freeman Sporting Goods).
    assert any(c["Balance"] == 0 < c["BalanceWithJobs"] for c in books["Customer"])


async def test_entity_ref_type_picks_the_list(http, api):
    def purchase(value: str, kind: str) -> dict:
        return {"PaymentType": "Cash", "AccountRef": {"value": "35"}, "EntityRef": {"value": value, "type": kind},
                "Line": EXPENSE_LINE}

    expense = await http.post(api("purchase"), json=purchase("30", "Vendor"))
    assert expense.json()["Purchase"]["EntityRef"] == {"value": "30", "name": "Books by Bessie", "type": "Vendor"}
    customer = await http.post(api("purchase"), json=purchase("7", "Customer"))
    assert customer.json()["Purchase"]["EntityRef"] == {"value": "7", "name": "Freeman Sporting Goods",
                                                        "type": "Customer"}
    # A customer's Id is not looked up among vendors, nor a vendor's among customers.
    for value, kind in (("7", "Vendor"), ("30", "Customer")):
        refused = await http.post(api("purchase"), json=purchase(value, kind))
        assert refused.status_code == 400
        assert refused.json()["Fault"]["Error"][0]["code"] == "2500"
