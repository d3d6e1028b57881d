"""The sample company (`seed="sample"`) against recorded answers of Intuit's sample company, and the empty option."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from qbflow.sandbox.app import Sandbox
from qbflow.sandbox.ledger import special_account
from tests.support.recordings import answer

FIXTURES = Path(__file__).parent.parent / "fixtures" / "sample_company"


# Where minimul/qbo_api recorded the sample company's lists (tests/support/recordings.py reads them).
CASSETTES = {"customers.yml": "all/customers.yml", "inactive_vendors.yml": "get/inactive_vendors.yml",
             "employees_including_active.yml": "all/employees_including_active.yml", "gl.yml": "reports/gl.yml"}


def recorded(name: str, index: int, entity: str) -> list[dict]:
    return answer(CASSETTES[name], index)["response"]["QueryResponse"][entity]


def created_with_company(records: list[dict]) -> list[dict]:
    """The records the sample company starts with: made in Oct 2015 with it, not by a later test."""
    return [r for r in records if r["MetaData"]["CreateTime"].startswith("2015-10")]


@pytest.fixture(scope="module")
def sample() -> Sandbox:
    return Sandbox(rate_limit=False, seed="sample")


@pytest.fixture(scope="module")
def token_sample(sample: Sandbox) -> str:
    return sample.oauth.issue_tokens_for_tests(sample.client_id, sample.realms[0])["access_token"]


async def query(sample: Sandbox, token: str, text: str) -> dict[str, Any]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sample), base_url="http://sandbox.test",
                                 headers={"Authorization": f"Bearer {token}", "Accept": "application/json"}) as c:
        response = await c.get(f"/v3/company/{sample.realms[0]}/query", params={"query": text})
        assert response.status_code == 200, response.text
        return response.json()["QueryResponse"]


def main_fields(record: dict, fields: tuple[str, ...]) -> dict:
    out: dict[str, Any] = {}
    for field in fields:
        value = record.get(field)
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if k not in ("Lat", "Long", "name")}
        out[field] = value
    return out


CUSTOMER_FIELDS = ("Id", "DisplayName", "FullyQualifiedName", "GivenName", "FamilyName", "CompanyName", "Job",
                   "ParentRef", "BillWithParent", "Taxable", "PrimaryEmailAddr", "PrimaryPhone", "Mobile", "Fax",
                   "BillAddr", "ShipAddr", "Notes", "PreferredDeliveryMethod")


async def test_customers_are_the_recorded_ones_with_their_ids_and_sub_customers(sample: Sandbox,
                                                                                token_sample: str) -> None:
    want = created_with_company(recorded("customers.yml", 1, "Customer"))
    got = (await query(sample, token_sample, "SELECT * FROM Customer MAXRESULTS 1000"))["Customer"]
    assert len(want) == len(got) == 29
    by_id = {c["Id"]: c for c in got}
    for record in want:
        assert main_fields(by_id[record["Id"]], CUSTOMER_FIELDS) == main_fields(record, CUSTOMER_FIELDS)
    assert by_id["8"]["FullyQualifiedName"] == "Freeman Sporting Goods:0969 Ocean View Road"
    assert by_id["8"]["Level"] == 1


async def test_vendors_and_employees_are_the_recorded_ones(sample: Sandbox, token_sample: str) -> None:
    fields = ("Id", "DisplayName", "GivenName", "FamilyName", "CompanyName", "Active", "PrimaryEmailAddr",
              "PrimaryPhone", "BillAddr", "TermRef", "AcctNum", "Vendor1099")
    want = created_with_company(recorded("inactive_vendors.yml", 0, "Vendor"))
    got = (await query(sample, token_sample,
                       "SELECT * FROM Vendor WHERE Active IN (true, false) MAXRESULTS 1000"))["Vendor"]
    assert sorted(v["Id"] for v in got) == sorted(v["Id"] for v in want)
    by_id = {v["Id"]: v for v in got}
    for record in want:
        assert main_fields(by_id[record["Id"]], fields) == main_fields(record, fields)
    employees = recorded("employees_including_active.yml", 1, "Employee")
    got_employees = {e["Id"]: e for e in (await query(sample, token_sample, "SELECT * FROM Employee"))["Employee"]}
    assert sorted(got_employees) == sorted(e["Id"] for e in employees) == ["54", "55"]
    for record in employees:  # Emily Platt was active until the recording's own deactivate test
        assert got_employees[record["Id"]]["GivenName"] == record["GivenName"]
        assert got_employees[record["Id"]]["FamilyName"] == record["FamilyName"]
        assert got_employees[record["Id"]]["Active"] is True


async def test_chart_of_accounts_items_terms_and_tax_have_the_recorded_ids(sample: Sandbox,
                                                                           token_sample: str) -> None:
    gl = answer(CASSETTES["gl.yml"])["response"]
    recorded_accounts = {}

    def walk(rows: dict) -> None:
        for row in rows.get("Row", []):
            head = row.get("Header", {}).get("ColData", [{}])[0]
            if head.get("id"):
                recorded_accounts[head["id"]] = head["value"]
            walk(row.get("Rows", {}))

    walk(gl["Rows"])
    assert len(recorded_accounts) == 17
    accounts = {a["Id"]: a for a in (await query(sample, token_sample,
                                                 "SELECT * FROM Account MAXRESULTS 1000"))["Account"]}
    for account_id, name in recorded_accounts.items():
        assert accounts[account_id]["Name"] == name
    lines = json.loads((FIXTURES / "recorded_lines.json").read_text())
    for account in lines["accounts"]:
        assert accounts[account["Id"]]["FullyQualifiedName"] == account["FullyQualifiedName"]
    items = {i["Id"]: i for i in (await query(sample, token_sample, "SELECT * FROM Item MAXRESULTS 1000"))["Item"]}
    for item in lines["items"]:
        assert {k: items[item["Id"]][k] for k in item} == item
    assert items["5"]["IncomeAccountRef"]["value"] in accounts
    terms = {t["Id"]: t for t in (await query(sample, token_sample, "SELECT * FROM Term"))["Term"]}
    assert terms["3"]["DueDays"] == 30 and terms["3"]["Name"] == "Net 30"
    company = sample.books.companies[sample.realms[0]]
    assert company.table("TaxCode")[lines["tax"]["TaxCode"]]["Name"] == "California"
    assert company.table("TaxRate")[lines["tax"]["TaxRate"]]["RateValue"] == lines["tax"]["TaxPercent"]


async def test_transactions_of_every_kind_are_dated_relative_to_today_and_post_consistently(
        sample: Sandbox, token_sample: str) -> None:
    company = sample.books.companies[sample.realms[0]]
    kinds = ("Invoice", "Payment", "SalesReceipt", "Estimate", "CreditMemo", "RefundReceipt", "Bill",
             "BillPayment", "Purchase", "PurchaseOrder", "VendorCredit", "Deposit", "Transfer", "JournalEntry",
             "TimeActivity")
    today = sample.clock.company_now().date()
    for kind in kinds:
        records = list(company.table(kind).values())
        assert records, kind
        for record in records:
            assert today - timedelta(days=60) <= date.fromisoformat(record["TxnDate"]) <= today, kind
    invoices = list(company.table("Invoice").values())
    paid = [i for i in invoices if i["Balance"] == 0]
    overdue = [i for i in invoices if i["Balance"] > 0 and date.fromisoformat(i["DueDate"]) < today]
    open_ = [i for i in invoices if i["Balance"] > 0 and date.fromisoformat(i["DueDate"]) >= today]
    assert paid and overdue and open_
    # Receivables: the A/R account's balance is what the customers owe (open invoices less credits).
    customers = (await query(sample, token_sample, "SELECT * FROM Customer MAXRESULTS 1000"))["Customer"]
    accounts = {a["Id"]: a for a in (await query(sample, token_sample,
                                                 "SELECT * FROM Account MAXRESULTS 1000"))["Account"]}
    owed = round(sum(c["Balance"] for c in customers), 2)
    assert owed > 0
    assert accounts[special_account(company, "AR")]["CurrentBalance"] == owed
    assert round(sum(p.amount for p in company.ledger.postings()), 2) == 0  # every transaction balances


async def test_new_records_come_after_the_sample_ids(sample: Sandbox, token_sample: str) -> None:
    realm = sample.realms[0]
    names_before = {r["Id"] for entity in ("Customer", "Vendor", "Employee")
                    for r in sample.books.records(realm, entity)}
    created = sample.books.create(realm, "Customer", {"DisplayName": "New after sample"})
    assert int(created["Id"]) > 29
    vendor = sample.books.create(realm, "Vendor", {"DisplayName": "New vendor after sample"})
    assert int(vendor["Id"]) > 57
    employee = sample.books.create(realm, "Employee", {"GivenName": "Nova", "FamilyName": "Hire"})
    # As in QBO, customers, vendors and employees number from one sequence: a new one never takes an Id another
    # of them has (a new customer was once 30, vendor Books by Bessie's Id).
    new_ids = [created["Id"], vendor["Id"], employee["Id"]]
    assert len(set(new_ids)) == 3 and not set(new_ids) & names_before
    assert [int(i) for i in new_ids] == sorted(int(i) for i in new_ids)


async def test_admin_api_makes_an_empty_company_on_request(http: httpx.AsyncClient, sandbox: Sandbox) -> None:
    created = await http.post("/_sandbox/companies", json={"name": "Empty Books", "seed": "empty"})
    assert created.status_code == 201
    company = sandbox.books.companies[created.json()["realmId"]]
    for entity in ("Customer", "Vendor", "Employee", "Item", "Invoice", "Bill"):
        assert not company.table(entity), entity
    names = {a["Name"] for a in company.table("Account").values()}
    assert {"Accounts Receivable (A/R)", "Accounts Payable (A/P)", "Undeposited Funds"} <= names
    assert company.table("CompanyInfo")["1"]["CompanyName"] == "Empty Books"
    sample = await http.post("/_sandbox/companies", json={"name": "Sample", "seed": "sample"})
    assert len(sandbox.books.companies[sample.json()["realmId"]].table("Customer")) == 29
    refused = await http.post("/_sandbox/companies", json={"seed": "bogus"})
    assert refused.status_code == 400 and "seed" in refused.json()["error"]
