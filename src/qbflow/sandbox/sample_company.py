"""Intuit's sample company, "Craig's Design and Landscaping Services", as a new US sandbox company has it.

The lists (customers with sub-customers, vendors, employees, items, chart of accounts, terms, payment methods,
classes, departments, tax code, rate and agency) come from `data/sample_company.json`, with the Ids, names and
main fields of recorded answers of Intuit's sandbox; a record marked `"Recorded": false` there is invented
(see docs/sandbox.md). The transactions are invented: one or more of every kind, dated relative to today, made
through the same rules as API calls so the ledger, balances and reports follow from them.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qbflow.catalog.entities import ENTITIES
from qbflow.sandbox.books import id_sequence
from qbflow.sandbox.seed import seed_settings
from qbflow.sandbox.us_entities import seed_us_extras

if TYPE_CHECKING:
    from qbflow.sandbox.books import Books, Company

DATA = Path(__file__).parent / "data" / "sample_company.json"
COMPANY_NAME = "Craig's Design and Landscaping Services"
LIST_ORDER = ("Term", "PaymentMethod", "Class", "Department", "Account", "Item", "Customer", "Vendor", "Employee")
_COMPUTED = ("Recorded", "FullyQualifiedName", "Level")


@cache
def sample_data() -> dict[str, Any]:
    """The sample company's lists as recorded (plus `sources`: where each list's facts come from)."""
    return json.loads(DATA.read_text(encoding="utf-8"))


def seed_sample_company(books: Books, company: Company) -> None:
    """Fill `company` with the sample company's lists and transactions."""
    today = books.clock.company_now().date()
    data = sample_data()
    seed_settings(books, company, today)
    _tax(books, company, data)
    for entity in LIST_ORDER:
        records = data[entity]
        if entity == "Account":  # a parent before its sub-accounts
            records = sorted(records, key=lambda r: r["FullyQualifiedName"].count(":"))
        for record in records:
            _create_with_id(books, company, entity, record)
        company.sequences[entity] = max(int(r["Id"]) for r in records)  # the next new record comes after
    _transactions(books, company.realm_id, today)
    seed_us_extras(books, company, today)  # the tax agency (Id 1) and a budget for the year


def seed_empty_company(books: Books, company: Company) -> None:
    """What Intuit's new, empty company has: company info, preferences and the accounts QBO makes itself."""
    today = books.clock.company_now().date()
    seed_settings(books, company, today)
    for name, account_type, subtype in (("Accounts Receivable (A/R)", "Accounts Receivable", "AccountsReceivable"),
                                        ("Accounts Payable (A/P)", "Accounts Payable", "AccountsPayable"),
                                        ("Undeposited Funds", "Other Current Asset", "UndepositedFunds"),
                                        ("Opening Balance Equity", "Equity", "OpeningBalanceEquity"),
                                        ("Retained Earnings", "Equity", "RetainedEarnings"),
                                        ("Services", "Income", "ServiceFeeIncome")):
        books.create(company.realm_id, "Account", {"Name": name, "AccountType": account_type,
                                                   "AccountSubType": subtype})


def _create_with_id(books: Books, company: Company, entity: str, record: dict) -> dict:
    """Create through the API's rules, under the recorded Id (lists are created in Id order)."""
    body = {k: v for k, v in record.items() if k not in _COMPUTED and k != "Id"}
    active = body.pop("Active", True)
    key = id_sequence(ENTITIES[entity])[0]
    last = company.sequences.get(key, 0)
    company.sequences[key] = int(record["Id"]) - 1
    created = books.create(company.realm_id, entity, body)
    company.sequences[key] = max(last, int(created["Id"]))  # employees 54-55 are created after vendor 57
    if not active:  # QBO marks an inactive name "(deleted)"; the recording already shows that name
        created = books.update(company.realm_id, entity, {"Id": created["Id"], "SyncToken": created["SyncToken"],
                                                          "sparse": True, "Active": False})
    return created


def _tax(books: Books, company: Company, data: dict) -> None:
    rate = data["TaxRate"][0]
    code = data["TaxCode"][0]
    books.insert(company, "TaxRate", {"Name": rate["Name"], "Description": "California state sales tax",
                                      "Active": True, "RateValue": rate["RateValue"], "AgencyRef": rate["AgencyRef"],
                                      "SpecialTaxType": "NONE", "DisplayType": "ReadOnly"}, record_id=rate["Id"])
    books.insert(company, "TaxCode", {"Name": code["Name"], "Description": "California sales tax", "Active": True,
                                      "Taxable": True, "TaxGroup": True,
                                      "SalesTaxRateList": {"TaxRateDetail": [
                                          {"TaxRateRef": {"value": rate["Id"], "name": rate["Name"]},
                                           "TaxTypeApplicable": "TaxOnAmount", "TaxOrder": 0}]},
                                      "PurchaseTaxRateList": {"TaxRateDetail": []}}, record_id=code["Id"])


def _price(item_id: str) -> float:
    return next(float(i["UnitPrice"]) for i in sample_data()["Item"] if i["Id"] == item_id)


def _taxable(item_id: str) -> bool:
    return any(i["Id"] == item_id and i.get("Taxable") is True for i in sample_data()["Item"])


def _line(item_id: str, qty: float, price: float | None = None) -> dict:
    """A sales line; a taxable item's line is marked TAX, as the sample's recorded invoices have them."""
    unit = _price(item_id) if price is None else price
    return {"Amount": round(qty * unit, 2), "DetailType": "SalesItemLineDetail",
            "SalesItemLineDetail": {"ItemRef": {"value": item_id}, "Qty": qty, "UnitPrice": unit,
                                    "TaxCodeRef": {"value": "TAX" if _taxable(item_id) else "NON"}}}


def _taxed(body: dict) -> dict:
    """A sales form charging the sample's California tax code (TaxCode 2: 8%) when a line is taxable; the
    recorded sample invoices carry TxnTaxDetail.TxnTaxCodeRef 2 whatever the customer's Taxable flag."""
    if any(line["SalesItemLineDetail"]["TaxCodeRef"]["value"] == "TAX" for line in body["Line"]):
        body["TxnTaxDetail"] = {"TxnTaxCodeRef": {"value": sample_data()["TaxCode"][0]["Id"]}}
    return body


def _expense(account_id: str, amount: float, description: str = "") -> dict:
    line: dict[str, Any] = {"Amount": amount, "DetailType": "AccountBasedExpenseLineDetail",
                            "AccountBasedExpenseLineDetail": {"AccountRef": {"value": account_id}}}
    if description:
        line["Description"] = description
    return line


def _ref(value: str) -> dict:
    return {"value": value}


def _transactions(books: Books, realm: str, today: date) -> None:
    """Invented transactions of every kind with the recorded lists (Ids from data/sample_company.json)."""
    def day(n: int) -> str:
        return (today - timedelta(days=n)).isoformat()

    def create(entity: str, body: dict) -> dict:
        if entity in ("Invoice", "SalesReceipt", "Estimate", "CreditMemo", "RefundReceipt"):
            body = _taxed(body)
        return books.create(realm, entity, body)

    checking, undeposited, mastercard, savings, obe = "35", "4", "41", "36", "34"
    net30 = _ref("3")
    # Invoices: paid, open (not yet due), overdue.
    paid = create("Invoice", {"CustomerRef": _ref("1"), "TxnDate": day(50), "SalesTermRef": net30,
                              "Line": [_line("6", 4), _line("15", 15)]})
    partly = create("Invoice", {"CustomerRef": _ref("2"), "TxnDate": day(45), "SalesTermRef": net30,
                                "Line": [_line("4", 6)]})
    create("Invoice", {"CustomerRef": _ref("8"), "TxnDate": day(40), "SalesTermRef": net30,
                       "Line": [_line("5", 1), _line("11", 2), _line("3", 1, 47.5)]})
    create("Invoice", {"CustomerRef": _ref("10"), "TxnDate": day(10), "SalesTermRef": net30,
                       "Line": [_line("4", 3.5), _line("7", 8)]})
    create("Invoice", {"CustomerRef": _ref("23"), "TxnDate": day(4), "SalesTermRef": net30,
                       "Line": [_line("18", 3), _line("10", 2)]})
    create("Invoice", {"CustomerRef": _ref("25"), "TxnDate": day(2), "SalesTermRef": _ref("1"),
                       "Line": [_line("6", 4)]})
    create("Payment", {"CustomerRef": _ref("1"), "TotalAmt": paid["TotalAmt"], "TxnDate": day(20),
                       "DepositToAccountRef": _ref(undeposited), "PaymentMethodRef": _ref("2"),
                       "Line": [{"Amount": paid["TotalAmt"],
                                 "LinkedTxn": [{"TxnId": paid["Id"], "TxnType": "Invoice"}]}]})
    create("Payment", {"CustomerRef": _ref("2"), "TotalAmt": 200.0, "TxnDate": day(15),
                       "DepositToAccountRef": _ref(checking),
                       "Line": [{"Amount": 200.0, "LinkedTxn": [{"TxnId": partly["Id"], "TxnType": "Invoice"}]}]})
    receipt = create("SalesReceipt", {"CustomerRef": _ref("6"), "TxnDate": day(12), "PaymentMethodRef": _ref("1"),
                                      "DepositToAccountRef": _ref(undeposited),
                                      "Line": [_line("16", 20), _line("17", 10)]})
    create("SalesReceipt", {"CustomerRef": _ref("12"), "TxnDate": day(6), "PaymentMethodRef": _ref("3"),
                            "DepositToAccountRef": _ref(checking), "Line": [_line("9", 1, 140.0)]})
    create("Estimate", {"CustomerRef": _ref("9"), "TxnDate": day(8), "Line": [_line("5", 1), _line("7", 10)]})
    create("Estimate", {"CustomerRef": _ref("20"), "TxnDate": day(3), "Line": [_line("4", 5), _line("14", 20, 7.5)]})
    create("CreditMemo", {"CustomerRef": _ref("2"), "TxnDate": day(14), "Line": [_line("4", 1)]})
    create("RefundReceipt", {"CustomerRef": _ref("6"), "TxnDate": day(9), "DepositToAccountRef": _ref(checking),
                             "PaymentMethodRef": _ref("1"), "Line": [_line("16", 5)]})
    create("Deposit", {"TxnDate": day(11), "DepositToAccountRef": _ref(checking),
                       "Line": [{"Amount": receipt["TotalAmt"], "DetailType": "DepositLineDetail",
                                 "DepositLineDetail": {"AccountRef": _ref(undeposited)},
                                 "LinkedTxn": [{"TxnId": receipt["Id"], "TxnType": "SalesReceipt"}]}]})
    # Vendors: bills (one paid), a bill payment, purchases, a purchase order, a vendor credit.
    lumber = create("Bill", {"VendorRef": _ref("46"), "TxnDate": day(35), "SalesTermRef": net30,
                             "Line": [_expense("64", 103.55, "Decking")]})
    create("Bill", {"VendorRef": _ref("48"), "TxnDate": day(20), "SalesTermRef": net30,
                    "Line": [_expense("77", 114.09, "Gas and electric")]})
    create("Bill", {"VendorRef": _ref("40"), "TxnDate": day(5), "SalesTermRef": net30,
                    "Line": [_expense("17", 900.0, "Office rent")]})
    create("BillPayment", {"VendorRef": _ref("46"), "PayType": "Check", "TotalAmt": lumber["TotalAmt"],
                           "TxnDate": day(7), "CheckPayment": {"BankAccountRef": _ref(checking)},
                           "Line": [{"Amount": lumber["TotalAmt"],
                                     "LinkedTxn": [{"TxnId": lumber["Id"], "TxnType": "Bill"}]}]})
    create("Purchase", {"PaymentType": "CreditCard", "AccountRef": _ref(mastercard), "TxnDate": day(13),
                        "EntityRef": {"value": "33", "type": "Vendor"}, "Line": [_expense("22", 63.15, "Fuel")]})
    create("Purchase", {"PaymentType": "Check", "AccountRef": _ref(checking), "TxnDate": day(16),
                        "EntityRef": {"value": "41", "type": "Vendor"}, "Line": [_expense("20", 88.09, "Tools")]})
    create("Purchase", {"PaymentType": "Cash", "AccountRef": _ref(checking), "TxnDate": day(1),
                        "EntityRef": {"value": "56", "type": "Vendor"}, "Line": [_expense("14", 18.97, "Lunch")]})
    create("PurchaseOrder", {"VendorRef": _ref("50"), "TxnDate": day(3), "APAccountRef": _ref("33"),
                             "Line": [{"Amount": 250.0, "DetailType": "ItemBasedExpenseLineDetail",
                                       "ItemBasedExpenseLineDetail": {"ItemRef": _ref("14"), "Qty": 50,
                                                                      "UnitPrice": 5}}]})
    create("VendorCredit", {"VendorRef": _ref("46"), "TxnDate": day(4), "Line": [_expense("64", 25.0, "Returned")]})
    create("Transfer", {"TxnDate": day(25), "FromAccountRef": _ref(checking), "ToAccountRef": _ref(savings),
                        "Amount": 500.0})
    create("JournalEntry", {"TxnDate": day(30), "Line": [
        {"Amount": 1500.0, "DetailType": "JournalEntryLineDetail", "Description": "Opening balance",
         "JournalEntryLineDetail": {"PostingType": "Debit", "AccountRef": _ref(checking)}},
        {"Amount": 1500.0, "DetailType": "JournalEntryLineDetail", "Description": "Opening balance",
         "JournalEntryLineDetail": {"PostingType": "Credit", "AccountRef": _ref(obe)}}]})
    for employee, customer, hours, n in (("54", "7", 3, 2), ("55", "20", 5, 1)):
        create("TimeActivity", {"NameOf": "Employee", "EmployeeRef": _ref(employee), "CustomerRef": _ref(customer),
                                "ItemRef": _ref("6"), "TxnDate": day(n), "Hours": hours, "Minutes": 0,
                                "BillableStatus": "Billable", "HourlyRate": 25, "Description": "Gardening"})
