"""US sales tax on sales forms, as QBO charges it in the sample company (manual sales tax: TaxCode 2 "California",
TaxRate 3 at 8%, liability account 90 "Board of Equalization Payable").

Checked against Intuit's answers: the recorded invoice of minimul/qbo_api's `create/invoice.yml` (no tax code:
`{"TotalTax": 0}`), and the facts kept in tests/fixtures/sample_company/recorded_lines.json of two taxed
sample-company invoices answered by Intuit (lines, TxnTaxDetail, totals).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from qbflow.sandbox.app import Sandbox
from qbflow.sandbox.ledger import special_account
from tests.support.recordings import answer

FIXTURES = Path(__file__).parent.parent / "fixtures" / "sample_company"
PAYABLE = "90"  # Board of Equalization Payable


def line(item: str, amount: float, code: str | None = None, qty: float | None = None,
         price: float | None = None) -> dict:
    detail: dict[str, Any] = {"ItemRef": {"value": item}}
    if code:
        detail["TaxCodeRef"] = {"value": code}
    if qty is not None:
        detail["Qty"] = qty
    if price is not None:
        detail["UnitPrice"] = price
    return {"Amount": amount, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": detail}


TAX_CODE = {"TxnTaxCodeRef": {"value": "2"}}
# Rock Fountain 275 and two pumps at 15 are taxable; 75 of design is not.
LINES = [line("5", 275, "TAX"), line("11", 30, "TAX", qty=2, price=15), line("4", 75, "NON")]


def balance(sandbox: Sandbox, realm: str, account: str) -> float:
    return float(sandbox.books.get(realm, "Account", account)["CurrentBalance"])


def receivable(sandbox: Sandbox, realm: str) -> str:
    return special_account(sandbox.books.companies[realm], "AR")


async def create(http: httpx.AsyncClient, api, entity: str, body: dict) -> dict:
    reply = await http.post(api(entity.lower()), json=body)
    assert reply.status_code == 200, reply.text
    return reply.json()[entity]


async def test_an_invoice_charges_the_codes_rate_on_its_taxable_lines(sandbox: Sandbox, realm: str,
                                                                     http: httpx.AsyncClient, api) -> None:
    ar, payable = balance(sandbox, realm, receivable(sandbox, realm)), balance(sandbox, realm, PAYABLE)
    invoice = await create(http, api, "Invoice", {"CustomerRef": {"value": "24"}, "TxnTaxDetail": TAX_CODE,
                                                  "Line": LINES})
    assert invoice["TxnTaxDetail"] == {
        "TxnTaxCodeRef": {"value": "2"}, "TotalTax": 24.4,
        "TaxLine": [{"Amount": 24.4, "DetailType": "TaxLineDetail",
                     "TaxLineDetail": {"TaxRateRef": {"value": "3"}, "PercentBased": True, "TaxPercent": 8,
                                       "NetAmountTaxable": 305.0}}]}
    subtotal = [x for x in invoice["Line"] if x["DetailType"] == "SubTotalLineDetail"]
    assert subtotal[0]["Amount"] == 380.0  # the subtotal is before tax
    assert invoice["TotalAmt"] == 404.4 and invoice["Balance"] == 404.4
    assert balance(sandbox, realm, receivable(sandbox, realm)) == round(ar + 404.4, 2)
    assert balance(sandbox, realm, PAYABLE) == round(payable + 24.4, 2)
    # The customer owes the total, tax included.
    customer = (await http.get(api("customer/24"))).json()["Customer"]
    assert customer["Balance"] == 404.4
    # A payment of the whole total closes the invoice; the tax stays owed to the agency.
    await create(http, api, "Payment", {"CustomerRef": {"value": "24"}, "TotalAmt": 404.4, "Line": [
        {"Amount": 404.4, "LinkedTxn": [{"TxnId": invoice["Id"], "TxnType": "Invoice"}]}]})
    paid = (await http.get(api(f"invoice/{invoice['Id']}"))).json()["Invoice"]
    assert paid["Balance"] == 0
    assert balance(sandbox, realm, receivable(sandbox, realm)) == ar
    assert balance(sandbox, realm, PAYABLE) == round(payable + 24.4, 2)


async def test_changing_a_line_recomputes_the_tax(sandbox: Sandbox, realm: str, http: httpx.AsyncClient,
                                                  api) -> None:
    payable = balance(sandbox, realm, PAYABLE)
    invoice = await create(http, api, "Invoice", {"CustomerRef": {"value": "24"}, "TxnTaxDetail": TAX_CODE,
                                                  "Line": LINES})
    # A full update with the fountain at 300 and the pumps made non-taxable: 8% of 300.
    body = {**invoice, "Line": [line("5", 300, "TAX"), line("11", 30, "NON"), line("4", 75, "NON")]}
    updated = (await http.post(api("invoice"), json=body)).json()["Invoice"]
    assert updated["TxnTaxDetail"]["TotalTax"] == 24.0
    assert updated["TxnTaxDetail"]["TaxLine"][0]["TaxLineDetail"]["NetAmountTaxable"] == 300.0
    assert updated["TotalAmt"] == 429.0 and updated["Balance"] == 429.0
    assert balance(sandbox, realm, PAYABLE) == round(payable + 24.0, 2)
    # A sparse update of the lines keeps the transaction's tax code.
    sparse = (await http.post(api("invoice"), json={
        "Id": invoice["Id"], "SyncToken": updated["SyncToken"], "sparse": True,
        "Line": [line("5", 100, "TAX"), line("15", 50, "TAX")]})).json()["Invoice"]
    assert sparse["TxnTaxDetail"]["TxnTaxCodeRef"] == {"value": "2"}
    assert sparse["TxnTaxDetail"]["TotalTax"] == 12.0 and sparse["TotalAmt"] == 162.0
    assert balance(sandbox, realm, PAYABLE) == round(payable + 12.0, 2)
    # Voiding takes the tax back.
    voided = await http.post(api("invoice"), params={"operation": "void"},
                             json={"Id": invoice["Id"], "SyncToken": sparse["SyncToken"]})
    assert voided.status_code == 200, voided.text
    assert voided.json()["Invoice"]["TxnTaxDetail"] == {"TotalTax": 0}
    assert balance(sandbox, realm, PAYABLE) == payable


async def test_without_a_tax_code_no_tax_is_charged_as_recorded(sandbox: Sandbox, realm: str,
                                                                 http: httpx.AsyncClient, api) -> None:
    recorded = answer("create/invoice.yml")["response"]["Invoice"]
    payable = balance(sandbox, realm, PAYABLE)
    invoice = await create(http, api, "Invoice", {"CustomerRef": {"value": "1"}, "Line": [line("5", 100, "TAX")]})
    assert invoice["TxnTaxDetail"] == recorded["TxnTaxDetail"] == {"TotalTax": 0}
    assert invoice["TotalAmt"] == 100.0
    assert balance(sandbox, realm, PAYABLE) == payable


@pytest.mark.parametrize("index", [0, 1])
async def test_recorded_taxed_invoices_come_out_the_same(http: httpx.AsyncClient, api, index: int) -> None:
    recorded = json.loads((FIXTURES / "recorded_lines.json").read_text())["taxed_invoices"]["invoices"][index]
    lines = [line(x["ItemRef"], x["Amount"], x["TaxCodeRef"], qty=x["Qty"], price=x["UnitPrice"])
             for x in recorded["Line"]]
    ours = await create(http, api, "Invoice", {
        "CustomerRef": {"value": recorded["CustomerRef"]}, "ApplyTaxAfterDiscount": recorded["ApplyTaxAfterDiscount"],
        "TxnTaxDetail": {"TxnTaxCodeRef": recorded["TxnTaxDetail"]["TxnTaxCodeRef"]}, "Line": lines})
    expected, got = recorded["TxnTaxDetail"], ours["TxnTaxDetail"]
    assert list(got) == list(expected)  # same keys in the same order, at every depth
    for key in expected:
        if key == "TaxLine":
            assert len(got[key]) == len(expected[key])
            for ours_line, real_line in zip(got[key], expected[key], strict=True):
                assert list(ours_line) == list(real_line)
                assert list(ours_line["TaxLineDetail"]) == list(real_line["TaxLineDetail"])
                assert ours_line == real_line
        else:
            assert got[key] == expected[key], key
    assert ours["TotalAmt"] == recorded["TotalAmt"]
    assert ours["Balance"] == recorded.get("Balance", recorded["TotalAmt"])


async def test_every_sales_form_carries_the_tax(sandbox: Sandbox, realm: str, http: httpx.AsyncClient,
                                                api) -> None:
    payable = balance(sandbox, realm, PAYABLE)
    lines = [line("15", 50, "TAX"), line("4", 75)]  # 50 of soil taxable, design not (NON by default)
    customer = {"value": "24"}
    receipt = await create(http, api, "SalesReceipt", {"CustomerRef": customer, "TxnTaxDetail": TAX_CODE,
                                                       "Line": lines})
    estimate = await create(http, api, "Estimate", {"CustomerRef": customer, "TxnTaxDetail": TAX_CODE,
                                                    "Line": lines})
    credit = await create(http, api, "CreditMemo", {"CustomerRef": customer, "TxnTaxDetail": TAX_CODE,
                                                    "Line": [line("15", 25, "TAX")]})
    refund = await create(http, api, "RefundReceipt", {"CustomerRef": customer, "TxnTaxDetail": TAX_CODE,
                                                       "DepositToAccountRef": {"value": "35"},
                                                       "Line": [line("15", 10, "TAX")]})
    for form in (receipt, estimate):
        assert form["TxnTaxDetail"]["TotalTax"] == 4.0 and form["TotalAmt"] == 129.0
    assert receipt["Balance"] == 0
    assert credit["TotalAmt"] == 27.0 and credit["RemainingCredit"] == 27.0 and credit["Balance"] == 27.0
    assert refund["TxnTaxDetail"]["TotalTax"] == 0.8 and refund["TotalAmt"] == 10.8
    # The estimate posts nothing; the credit memo and the refund give their tax back.
    assert balance(sandbox, realm, PAYABLE) == round(payable + 4.0 - 2.0 - 0.8, 2)
    # The sales receipt's deposit includes the tax.
    undeposited = special_account(sandbox.books.companies[realm], "UF")
    entries = sandbox.books.companies[realm].ledger.entries[("SalesReceipt", receipt["Id"])]
    assert sum(p.amount for p in entries if p.account_id == undeposited) == 129.0


@pytest.mark.parametrize(("after_discount", "tax"), [(False, 8.0), (True, 7.2)])
async def test_a_discount_comes_off_before_the_tax_only_when_asked(http: httpx.AsyncClient, api,
                                                                  after_discount: bool, tax: float) -> None:
    discount = {"DetailType": "DiscountLineDetail",
                "DiscountLineDetail": {"PercentBased": True, "DiscountPercent": 10}}
    invoice = await create(http, api, "Invoice", {
        "CustomerRef": {"value": "24"}, "TxnTaxDetail": TAX_CODE, "ApplyTaxAfterDiscount": after_discount,
        "Line": [line("15", 100, "TAX"), line("4", 100, "NON"), discount]})
    assert invoice["ApplyTaxAfterDiscount"] is after_discount
    assert invoice["TxnTaxDetail"]["TotalTax"] == tax
    assert invoice["TxnTaxDetail"]["TaxLine"][0]["TaxLineDetail"]["NetAmountTaxable"] == (90.0 if after_discount
                                                                                          else 100.0)
    assert invoice["TotalAmt"] == round(200 - 20 + tax, 2)


async def test_an_unknown_tax_code_is_refused(http: httpx.AsyncClient, api) -> None:
    reply = await http.post(api("invoice"), json={"CustomerRef": {"value": "24"},
                                                  "TxnTaxDetail": {"TxnTaxCodeRef": {"value": "999"}},
                                                  "Line": [line("15", 10, "TAX")]})
    assert reply.status_code == 400
    error = reply.json()["Fault"]["Error"][0]
    assert error["code"] == "2500" and "999" in error["Detail"]


async def test_the_sample_books_owe_sales_tax_and_the_reports_show_it(sandbox: Sandbox, realm: str,
                                                                      http: httpx.AsyncClient, api) -> None:
    company = sandbox.books.companies[realm]
    charged = sum(r["TxnTaxDetail"]["TotalTax"] for kind in ("Invoice", "SalesReceipt")
                  for r in company.table(kind).values())
    returned = sum(r["TxnTaxDetail"]["TotalTax"] for kind in ("CreditMemo", "RefundReceipt")
                   for r in company.table(kind).values())
    owed = round(charged - returned, 2)
    assert owed > 0
    assert balance(sandbox, realm, PAYABLE) == owed
    sheet = (await http.get(api("reports/BalanceSheet"), params={"date_macro": "All"})).json()
    assert ["Board of Equalization Payable", f"{owed:.2f}"] in rows_of(sheet["Rows"]["Row"])
    # Income on the Profit and Loss is the sales without the tax.
    income_accounts = {a["Id"] for a in company.table("Account").values() if a["AccountType"] == "Income"}
    income = round(-sum(p.amount for p in company.ledger.postings() if p.account_id in income_accounts), 2)
    pl = (await http.get(api("reports/ProfitAndLoss"), params={"date_macro": "All"})).json()
    total_income = next(r for r in pl["Rows"]["Row"] if r.get("group") == "Income")["Summary"]["ColData"][1]
    assert float(total_income["value"]) == income
    assert "Board of Equalization" not in json.dumps(pl)


def rows_of(rows: list[dict]) -> list[list[str]]:
    """Every data row of a report as [label, amount]."""
    found = []
    for row in rows:
        if row.get("type") == "Data":
            found.append([row["ColData"][0]["value"], row["ColData"][1]["value"]])
        found += rows_of(row.get("Rows", {}).get("Row", []))
    return found
