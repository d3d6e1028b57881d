"""The sandbox's books add up: postings per transaction, and the Reports API against real answers and invariants.

Shapes are compared with real answers recorded from Intuit's sandbox (minimul/qbo_api's cassettes, read from
beside the project by tests/support/recordings.py); the invariants run on random activity created through the
sandbox's HTTP API.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qbflow.sandbox.app import Sandbox
from qbflow.sandbox.books import Books
from tests.support.recordings import answer


def recorded(name: str) -> dict:
    """A recorded Reports API answer of Intuit's sandbox (minimul/qbo_api's `reports/NAME.yml`)."""
    return answer(f"reports/{name}.yml")


def shape(value: Any) -> Any:
    """The keys at every depth and the JSON kind of every leaf; list items merged into one shape."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        merged: dict = {}
        kinds = set()
        for item in value:
            if isinstance(item, dict):
                for k, v in shape(item).items():
                    merged.setdefault(k, v)
            else:
                kinds.add(type(item).__name__)
        return [merged] if merged else sorted(kinds)
    return type(value).__name__


def groups(rows: list[dict]) -> list[str]:
    found = []
    for row in rows:
        if "group" in row:
            found.append(row["group"])
        found += groups(row.get("Rows", {}).get("Row", []))
    return found


def find_group(rows: list[dict], group: str) -> dict:
    for row in rows:
        if row.get("group") == group:
            return row
        inner = row.get("Rows", {}).get("Row", [])
        hit = find_group(inner, group) if inner else None
        if hit:
            return hit
    return {}


def money(cell: dict) -> float:
    return float(cell["value"] or 0)


def summary_total(report: dict, group: str) -> float:
    return money(find_group(report["Rows"]["Row"], group)["Summary"]["ColData"][-1])


def equity_row(report: dict, label: str) -> float:
    equity = find_group(report["Rows"]["Row"], "Equity")
    for row in equity.get("Rows", {}).get("Row", []):
        if row["ColData"][0]["value"] == label:
            return money(row["ColData"][-1])
    return 0.0


async def report(http: httpx.AsyncClient, api, name: str, **params: str) -> dict:
    answer = await http.get(api(f"reports/{name}"), params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


# --- postings ---------------------------------------------------------------------------------------------------
def account_id(books: Books, realm: str, name: str) -> str:
    return next(a["Id"] for a in books.records(realm, "Account") if a["Name"] == name)


def company_postings(sandbox: Sandbox, realm: str, account_name: str) -> list:
    """Every posting to the account called `account_name`."""
    account = account_id(sandbox.books, realm, account_name)
    return [p for p in sandbox.books.company(realm).ledger.postings() if p.account_id == account]


def postings(books: Books, realm: str, entity: str, record_id: str) -> dict[str, float]:
    names = {a["Id"]: a["Name"] for a in books.records(realm, "Account")}
    company = books.company(realm)
    found: dict[str, float] = {}
    for posting in company.ledger.entries.get((entity, record_id), []):
        found[names[posting.account_id]] = round(found.get(names[posting.account_id], 0) + posting.amount, 2)
    return found


def test_each_transaction_posts_as_quickbooks_does(sandbox: Sandbox, realm: str) -> None:
    books = sandbox.books
    acct = {n: account_id(books, realm, n) for n in ("Checking", "Undeposited Funds", "Travel", "Mastercard",
                                                       "Savings", "Utilities", "Retained Earnings")}
    checking_before = books.get(realm, "Account", acct["Checking"])["CurrentBalance"]
    savings_before = books.get(realm, "Account", acct["Savings"])["CurrentBalance"]
    customer = next(iter(books.records(realm, "Customer")))["Id"]
    vendor = next(iter(books.records(realm, "Vendor")))["Id"]
    design = next(i["Id"] for i in books.records(realm, "Item") if i["Name"] == "Design")
    line = {"Amount": 150, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {"ItemRef": {"value": design}}}
    invoice = books.create(realm, "Invoice", {"CustomerRef": {"value": customer}, "Line": [line]})
    assert postings(books, realm, "Invoice", invoice["Id"]) == {"Accounts Receivable (A/R)": 150,
                                                               "Design income": -150}
    payment = books.create(realm, "Payment", {"CustomerRef": {"value": customer}, "TotalAmt": 150, "Line": [
        {"Amount": 150, "LinkedTxn": [{"TxnId": invoice["Id"], "TxnType": "Invoice"}]}]})
    assert postings(books, realm, "Payment", payment["Id"]) == {"Undeposited Funds": 150,
                                                               "Accounts Receivable (A/R)": -150}
    deposit = books.create(realm, "Deposit", {"DepositToAccountRef": {"value": acct["Checking"]}, "Line": [
        {"Amount": 150, "DetailType": "DepositLineDetail", "DepositLineDetail": {},
         "LinkedTxn": [{"TxnId": payment["Id"], "TxnType": "Payment", "TxnLineId": "0"}]}]})
    assert postings(books, realm, "Deposit", deposit["Id"]) == {"Checking": 150, "Undeposited Funds": -150}
    memo = books.create(realm, "CreditMemo", {"CustomerRef": {"value": customer}, "Line": [line]})
    assert postings(books, realm, "CreditMemo", memo["Id"]) == {"Accounts Receivable (A/R)": -150,
                                                               "Design income": 150}
    expense_line = {"Amount": 40, "DetailType": "AccountBasedExpenseLineDetail",
                    "AccountBasedExpenseLineDetail": {"AccountRef": {"value": acct["Utilities"]}}}
    bill = books.create(realm, "Bill", {"VendorRef": {"value": vendor}, "Line": [expense_line]})
    assert postings(books, realm, "Bill", bill["Id"]) == {"Utilities": 40, "Accounts Payable (A/P)": -40}
    bill_payment = books.create(realm, "BillPayment", {
        "VendorRef": {"value": vendor}, "PayType": "Check", "TotalAmt": 40,
        "CheckPayment": {"BankAccountRef": {"value": acct["Checking"]}},
        "Line": [{"Amount": 40, "LinkedTxn": [{"TxnId": bill["Id"], "TxnType": "Bill"}]}]})
    assert postings(books, realm, "BillPayment", bill_payment["Id"]) == {"Accounts Payable (A/P)": 40,
                                                                        "Checking": -40}
    credit = books.create(realm, "VendorCredit", {"VendorRef": {"value": vendor}, "Line": [expense_line]})
    assert postings(books, realm, "VendorCredit", credit["Id"]) == {"Utilities": -40, "Accounts Payable (A/P)": 40}
    card = books.create(realm, "Purchase", {"PaymentType": "CreditCard", "AccountRef": {"value": acct["Mastercard"]},
                                            "Line": [expense_line]})
    assert postings(books, realm, "Purchase", card["Id"]) == {"Utilities": 40, "Mastercard": -40}
    transfer = books.create(realm, "Transfer", {"FromAccountRef": {"value": acct["Checking"]},
                                                "ToAccountRef": {"value": acct["Savings"]}, "Amount": 25})
    assert postings(books, realm, "Transfer", transfer["Id"]) == {"Savings": 25, "Checking": -25}
    journal = books.create(realm, "JournalEntry", {"Line": [
        {"Amount": 10, "DetailType": "JournalEntryLineDetail",
         "JournalEntryLineDetail": {"PostingType": "Debit", "AccountRef": {"value": acct["Travel"]}}},
        {"Amount": 10, "DetailType": "JournalEntryLineDetail",
         "JournalEntryLineDetail": {"PostingType": "Credit", "AccountRef": {"value": acct["Checking"]}}}]})
    assert postings(books, realm, "JournalEntry", journal["Id"]) == {"Travel": 10, "Checking": -10}
    estimate = books.create(realm, "Estimate", {"CustomerRef": {"value": customer}, "Line": [line]})
    assert postings(books, realm, "Estimate", estimate["Id"]) == {}
    # Balances read from the same postings: 150 deposited, 40 paid out, 25 moved to savings, 10 by journal.
    checking = books.get(realm, "Account", acct["Checking"])
    assert checking["CurrentBalance"] == round(checking_before + 75, 2)
    assert books.get(realm, "Account", acct["Savings"])["CurrentBalance"] == round(savings_before + 25, 2)


def test_deleting_or_voiding_a_transaction_takes_its_postings_back(sandbox: Sandbox, realm: str) -> None:
    books = sandbox.books
    ar = account_id(books, realm, "Accounts Receivable (A/R)")
    before = books.get(realm, "Account", ar)["CurrentBalance"]
    customer = next(iter(books.records(realm, "Customer")))["Id"]
    item = next(iter(books.records(realm, "Item")))["Id"]
    body = {"CustomerRef": {"value": customer}, "Line": [
        {"Amount": 99.5, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {"ItemRef": {"value": item}}}]}
    one, two = books.create(realm, "Invoice", body), books.create(realm, "Invoice", body)
    assert books.get(realm, "Account", ar)["CurrentBalance"] == round(before + 199, 2)
    books.delete(realm, "Invoice", {"Id": one["Id"], "SyncToken": one["SyncToken"]})
    books.void(realm, "Invoice", {"Id": two["Id"], "SyncToken": two["SyncToken"]})
    assert books.get(realm, "Account", ar)["CurrentBalance"] == before


# --- shapes against recorded answers ------------------------------------------------------------------------
async def test_profit_and_loss_has_the_recorded_shape(http: httpx.AsyncClient, api) -> None:
    fixture = recorded("profit_and_loss")
    real = fixture["response"]
    # The recorded request as it was sent: one customer, a period with no activity, summarised by Customers.
    query = dict(parse_qsl(urlsplit(fixture["request"]).query))
    ours = await report(http, api, "ProfitAndLoss", **query)
    assert shape(ours["Header"]) == shape(real["Header"])
    assert {k: v for k, v in ours["Header"].items() if k != "Time"} == \
        {k: v for k, v in real["Header"].items() if k != "Time"}
    assert ours["Columns"] == real["Columns"]
    assert ours["Rows"] == real["Rows"]
    assert groups(ours["Rows"]["Row"]) == groups(real["Rows"]["Row"])
    assert shape(ours["Rows"]) == shape(real["Rows"])
    assert (ours["Header"]["StartPeriod"], ours["Header"]["EndPeriod"], ours["Header"]["Customer"]) == \
        ("2015-01-01", "2015-07-31", "1")


async def test_profit_and_loss_with_activity_lists_accounts_by_month(http: httpx.AsyncClient, api) -> None:
    real = recorded("profit_and_loss")["response"]
    ours = await report(http, api, "ProfitAndLoss", date_macro="This Fiscal Year", summarize_column_by="Month")
    assert ours["Header"]["SummarizeColumnsBy"] == "Month" and ours["Header"]["DateMacro"] == "this fiscal year"
    months = ours["Columns"]["Column"][1:-1]
    assert len(months) == 12 and all(c["ColType"] == "Money" for c in months)
    income = find_group(ours["Rows"]["Row"], "Income")
    data = income["Rows"]["Row"]
    assert data and all(row["type"] == "Data" and "id" in row["ColData"][0] for row in data)
    # every row's month columns add up to its total
    for row in data:
        values = [money(c) for c in row["ColData"][1:]]
        assert round(sum(values[:-1]), 2) == values[-1]
    assert set(groups(real["Rows"]["Row"])) <= set(groups(ours["Rows"]["Row"]))


async def test_general_ledger_has_the_recorded_shape(http: httpx.AsyncClient, api) -> None:
    real = recorded("gl")["response"]
    ours = await report(http, api, "GeneralLedger", date_macro="This Fiscal Year-to-date")
    assert ours["Header"].keys() == real["Header"].keys()
    assert ours["Columns"] == real["Columns"]
    assert shape(ours["Rows"]["Row"][0]) == shape(real["Rows"]["Row"][2])  # a section with transactions
    assert [c.keys() for c in ours["Rows"]["Row"][0]["Header"]["ColData"]] == \
        [c.keys() for c in real["Rows"]["Row"][2]["Header"]["ColData"]]


async def test_balance_sheet_groups_are_intuits(sandbox: Sandbox, realm: str, http: httpx.AsyncClient,
                                                 api) -> None:
    checking = account_id(sandbox.books, realm, "Checking")
    balances = {name: sandbox.books.get(realm, "Account", account_id(sandbox.books, realm, name))["CurrentBalance"]
                for name in ("Checking", "Savings")}
    assert all(balances.values())  # the sample company's bank accounts have postings
    spent = await http.post(api("purchase"), json={
        "PaymentType": "Cash", "AccountRef": {"value": checking},
        "Line": [{"Amount": 20, "DetailType": "AccountBasedExpenseLineDetail",
                  "AccountBasedExpenseLineDetail": {"AccountRef": {"value": account_id(sandbox.books, realm,
                                                                                       "Travel")}}}]})
    assert spent.status_code == 200
    ours = await report(http, api, "BalanceSheet")
    found = groups(ours["Rows"]["Row"])
    for group in ("TotalAssets", "CurrentAssets", "BankAccounts", "AR", "OtherCurrentAssets",
                  "TotalLiabilitiesAndEquity", "Liabilities", "CurrentLiabilities", "AP", "CreditCards",
                  "Equity", "NetIncome"):
        assert group in found
    assert ours["Columns"]["Column"][0]["ColType"] == "Account"
    bank = find_group(ours["Rows"]["Row"], "BankAccounts")["Rows"]["Row"]
    assert [(r["ColData"][0]["value"], r["ColData"][1]["value"]) for r in bank] == [
        ("Checking", f"{balances['Checking'] - 20:.2f}"), ("Savings", f"{balances['Savings']:.2f}")]
    # Accounts without postings are left out (Intuit's "Run reports" page): the sample company's truck has none.
    assert not company_postings(sandbox, realm, "Truck")
    assert "Truck" not in json.dumps(ours)


async def test_an_unknown_report_or_parameter_is_refused(http: httpx.AsyncClient, api) -> None:
    answer = await http.get(api("reports/NoSuchReport"))
    assert answer.status_code == 400
    answer = await http.get(api("reports/ProfitAndLoss"), params={"date_macro": "Someday"})
    assert answer.status_code == 400 and "date_macro" in answer.text


# --- invariants on random activity ------------------------------------------------------------------------------
ACTION = st.one_of(
    st.tuples(st.just("invoice"), st.integers(0, 7), st.integers(100, 500_000), st.integers(0, 120)),
    st.tuples(st.just("payment"), st.integers(0, 50), st.sampled_from([0.25, 0.5, 1.0]), st.integers(0, 30)),
    st.tuples(st.just("bill"), st.integers(0, 5), st.integers(100, 300_000), st.integers(0, 120)),
    st.tuples(st.just("billpayment"), st.integers(0, 50), st.sampled_from([0.5, 1.0]), st.integers(0, 30)),
    st.tuples(st.just("salesreceipt"), st.integers(0, 7), st.integers(100, 100_000), st.integers(0, 90)),
    st.tuples(st.just("expense"), st.integers(0, 5), st.integers(100, 100_000), st.integers(0, 90)),
)


async def play(actions: list[tuple]) -> dict[str, Any]:
    sandbox = Sandbox(rate_limit=False)
    realm = sandbox.realms[0]
    token = sandbox.oauth.issue_tokens_for_tests(sandbox.client_id, realm)["access_token"]

    def api(rest: str) -> str:
        return f"/v3/company/{realm}/{rest}"

    books = sandbox.books
    today = books.clock.company_now().date()
    customers = sorted(c["Id"] for c in books.records(realm, "Customer"))
    vendors = sorted(v["Id"] for v in books.records(realm, "Vendor"))
    items = sorted(i["Id"] for i in books.records(realm, "Item"))
    checking = account_id(books, realm, "Checking")
    travel = account_id(books, realm, "Travel")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox), base_url="http://sandbox.test",
                                 headers={"Authorization": f"Bearer {token}"}) as http:
        async def post(entity: str, body: dict) -> dict:
            answer = await http.post(api(entity.lower()), json=body)
            assert answer.status_code == 200, answer.text
            return answer.json()[entity]

        def day(n: int) -> str:
            return (today - timedelta(days=n)).isoformat()

        for kind, who, amount, days in actions:
            if kind in ("invoice", "salesreceipt"):
                line = {"Amount": amount / 100, "DetailType": "SalesItemLineDetail",
                        "SalesItemLineDetail": {"ItemRef": {"value": items[who % len(items)]}}}
                body = {"CustomerRef": {"value": customers[who]}, "TxnDate": day(days), "Line": [line]}
                if who % 2:  # every other one charges the sample's 8% California sales tax
                    untaxed = {**line, "Amount": round(amount / 300, 2) or 0.01}
                    line["SalesItemLineDetail"]["TaxCodeRef"] = {"value": "TAX"}
                    body["Line"].append(untaxed)
                    body["TxnTaxDetail"] = {"TxnTaxCodeRef": {"value": "2"}}
                await post("Invoice" if kind == "invoice" else "SalesReceipt", body)
            elif kind in ("bill", "expense"):
                line = {"Amount": amount / 100, "DetailType": "AccountBasedExpenseLineDetail",
                        "AccountBasedExpenseLineDetail": {"AccountRef": {"value": travel}}}
                if kind == "bill":
                    await post("Bill", {"VendorRef": {"value": vendors[who]}, "TxnDate": day(days), "Line": [line]})
                else:
                    await post("Purchase", {"PaymentType": "Cash", "AccountRef": {"value": checking},
                                            "TxnDate": day(days), "Line": [line]})
            else:
                form = "Invoice" if kind == "payment" else "Bill"
                open_forms = [r for r in books.records(realm, form) if r.get("Balance", 0) > 0]
                if not open_forms:
                    continue
                target = open_forms[who % len(open_forms)]
                paid = round(target["Balance"] * amount, 2) or target["Balance"]
                link = [{"Amount": paid, "LinkedTxn": [{"TxnId": target["Id"], "TxnType": form}]}]
                when = max(target["TxnDate"], day(days))
                if kind == "payment":
                    await post("Payment", {"CustomerRef": target["CustomerRef"], "TotalAmt": paid,
                                           "TxnDate": when, "Line": link})
                else:
                    await post("BillPayment", {"VendorRef": target["VendorRef"], "PayType": "Check",
                                               "TotalAmt": paid, "TxnDate": when, "Line": link,
                                               "CheckPayment": {"BankAccountRef": {"value": checking}}})
        start = today - timedelta(days=60)
        end_text, before_text = today.isoformat(), (start - timedelta(days=1)).isoformat()
        return {
            "books": books, "realm": realm,
            "bs": await report(http, api, "BalanceSheet", end_date=end_text),
            "bs_before": await report(http, api, "BalanceSheet", start_date=before_text, end_date=before_text),
            "pl_period": await report(http, api, "ProfitAndLoss", start_date=start.isoformat(), end_date=end_text),
            "pl_accrual": await report(http, api, "ProfitAndLoss", date_macro="All"),
            "pl_cash": await report(http, api, "ProfitAndLoss", date_macro="All", accounting_method="Cash"),
            "ar_aging": await report(http, api, "AgedReceivables"),
            "ap_aging": await report(http, api, "AgedPayables"),
            "ar_account": (await http.get(api("account/" + account_id(books, realm, "Accounts Receivable (A/R)"))))
            .json()["Account"]["CurrentBalance"],
            "tax_account": (await http.get(api("account/" + account_id(books, realm,
                                                                        "Board of Equalization Payable"))))
            .json()["Account"]["CurrentBalance"],
            "trial": await report(http, api, "TrialBalance", date_macro="All"),
            "cash_flow": await report(http, api, "CashFlow", start_date=start.isoformat(), end_date=end_text),
            "pl_detail": await report(http, api, "ProfitAndLossDetail", start_date=start.isoformat(),
                                      end_date=end_text),
        }


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ACTION, max_size=12))
def test_the_books_add_up_after_any_activity(actions: list[tuple]) -> None:
    seen = asyncio.run(play(actions))
    books, realm = seen["books"], seen["realm"]
    bs = seen["bs"]
    # The balance sheet balances.
    assert summary_total(bs, "TotalAssets") == pytest.approx(summary_total(bs, "TotalLiabilitiesAndEquity"), abs=0.005)
    # Net income over a period is the change in retained earnings plus this year's net income.
    def earnings(sheet: dict) -> float:
        return equity_row(sheet, "Retained Earnings") + equity_row(sheet, "Net Income")
    change = earnings(bs) - earnings(seen["bs_before"])
    assert summary_total(seen["pl_period"], "NetIncome") == pytest.approx(change, abs=0.005)
    # A/R aging total = open invoice balances less open credits (credit memos, unapplied payments) = customers'
    # balances = the A/R account.
    def total(entity: str, field: str = "Balance") -> float:
        return round(sum(r.get(field, 0) for r in books.records(realm, entity)), 2)

    open_invoices = total("Invoice")
    receivable = round(open_invoices - total("CreditMemo") - total("Payment", "UnappliedAmt"), 2)
    customers = total("Customer")
    aging = money(seen["ar_aging"]["Rows"]["Row"][-1]["Summary"]["ColData"][-1])
    assert aging == pytest.approx(receivable, abs=0.005)
    assert customers == pytest.approx(receivable, abs=0.005)
    assert seen["ar_account"] == pytest.approx(receivable, abs=0.005)
    # A/P likewise: open bills less open vendor credits and bill payments' unapplied amounts.
    open_bills = total("Bill")
    unapplied_bill_payments = sum(p["TotalAmt"] - sum(line["Amount"] for line in p.get("Line", []))
                                  for p in books.records(realm, "BillPayment"))
    payable = round(open_bills - total("VendorCredit") - unapplied_bill_payments, 2)
    assert money(seen["ap_aging"]["Rows"]["Row"][-1]["Summary"]["ColData"][-1]) == pytest.approx(payable, abs=0.005)
    assert total("Vendor") == pytest.approx(payable, abs=0.005)
    # Cash and accrual differ by exactly what is unpaid (credit memos and vendor credits count alike on both
    # bases: docs/sandbox.md).
    # The sales tax in an open balance is owed to the agency either way, so only the rest differs.
    accrual = summary_total(seen["pl_accrual"], "NetIncome")
    cash = summary_total(seen["pl_cash"], "NetIncome")
    invoices = {i["Id"]: i for i in books.records(realm, "Invoice")}
    open_sales = sum(i["Balance"] * (1 - i["TxnTaxDetail"]["TotalTax"] / i["TotalAmt"]) for i in invoices.values())
    # Exact but for rounding: a payment of part of a taxed invoice splits into its income and its tax, each share
    # rounded to the cent (half a cent at most per income line of the invoice, per payment of it).
    splits = sum(len(invoices[link["TxnId"]]["Line"]) for payment in books.records(realm, "Payment")
                 for line in payment.get("Line", []) for link in line.get("LinkedTxn", [])
                 if link.get("TxnType") == "Invoice" and invoices.get(link["TxnId"], {}).get("TxnTaxDetail", {})
                 .get("TotalTax"))
    assert accrual - cash == pytest.approx(open_sales - open_bills, abs=0.01 + 0.005 * splits)
    # The payable account holds the sales tax charged since the start: the sample's and the new forms'.
    charged = sum(r["TxnTaxDetail"]["TotalTax"] for kind in ("Invoice", "SalesReceipt")
                  for r in books.records(realm, kind)) - sum(
        r["TxnTaxDetail"]["TotalTax"] for kind in ("CreditMemo", "RefundReceipt") for r in books.records(realm, kind))
    assert seen["tax_account"] == pytest.approx(charged, abs=0.005)
    # The cash flow ends with the bank balance, and explains its change by net income and the rest.
    flow = seen["cash_flow"]
    bank = summary_total(bs, "BankAccounts") if find_group(bs["Rows"]["Row"], "BankAccounts") else 0.0
    assert summary_total(flow, "EndingCash") == pytest.approx(bank, abs=0.005)
    assert money(find_group(flow["Rows"]["Row"], "NetIncome")["ColData"][-1]) == \
        pytest.approx(summary_total(seen["pl_period"], "NetIncome"), abs=0.005)
    # The detail report comes to the same net income as the summary.
    assert money(find_group(seen["pl_detail"]["Rows"]["Row"], "NetIncome")["Summary"]["ColData"][-2]) == \
        pytest.approx(summary_total(seen["pl_period"], "NetIncome"), abs=0.005)
    # Debits equal credits.
    total = seen["trial"]["Rows"]["Row"][-1]["Summary"]["ColData"]
    assert money(total[1]) == pytest.approx(money(total[2]), abs=0.005)


def test_the_ledger_is_rebuilt_from_the_stored_books_after_a_restart(tmp_path: Path) -> None:
    data = str(tmp_path / "sandbox.sqlite3")
    first = Sandbox(rate_limit=False, data=data)
    realm = first.realms[0]
    checking = account_id(first.books, realm, "Checking")
    travel = account_id(first.books, realm, "Travel")
    balance = first.books.get(realm, "Account", checking)["CurrentBalance"]
    first.books.create(realm, "Purchase", {"PaymentType": "Cash", "AccountRef": {"value": checking}, "Line": [
        {"Amount": 12.5, "DetailType": "AccountBasedExpenseLineDetail",
         "AccountBasedExpenseLineDetail": {"AccountRef": {"value": travel}}}]})
    before = dict(first.books.company(realm).ledger.totals)
    again = Sandbox(rate_limit=False, data=data)
    after = again.books.company(realm).ledger.totals
    assert {k: round(v, 2) for k, v in after.items() if round(v, 2)} == \
        {k: round(v, 2) for k, v in before.items() if round(v, 2)}
    assert again.books.get(realm, "Account", checking)["CurrentBalance"] == round(balance - 12.5, 2)


async def test_transaction_list_shows_every_transaction_and_whether_it_posts(sandbox: Sandbox, realm: str,
                                                                            http: httpx.AsyncClient, api) -> None:
    listed = await report(http, api, "TransactionList", date_macro="All")
    assert [c["ColType"] for c in listed["Columns"]["Column"]] == [
        "tx_date", "txn_type", "doc_num", "is_no_post", "name", "memo", "account_name", "other_account",
        "subt_nat_amount"]
    kinds = {(row["ColData"][1]["value"], row["ColData"][3]["value"]) for row in listed["Rows"]["Row"]}
    assert ("Invoice", "Yes") in kinds and ("Estimate", "No") in kinds
    seeded = sum(len(list(sandbox.books.records(realm, e))) for e in ("Invoice", "Payment", "Estimate",
                                                                     "SalesReceipt", "Bill", "Purchase"))
    assert len(listed["Rows"]["Row"]) >= seeded


async def test_aging_puts_each_open_invoice_in_its_bucket(sandbox: Sandbox, realm: str, http: httpx.AsyncClient,
                                                          api) -> None:
    books = sandbox.books
    today = books.clock.company_now().date()
    customer = sorted(c["Id"] for c in books.records(realm, "Customer"))[-1]  # seeded with no invoices
    item = next(iter(books.records(realm, "Item")))["Id"]
    for amount, due_days_ago in ((10, -5), (20, 10), (40, 45), (80, 200)):
        answer = await http.post(api("invoice"), json={
            "CustomerRef": {"value": customer}, "TxnDate": (today - timedelta(days=due_days_ago + 30)).isoformat(),
            "DueDate": (today - timedelta(days=due_days_ago)).isoformat(),
            "Line": [{"Amount": amount, "DetailType": "SalesItemLineDetail",
                      "SalesItemLineDetail": {"ItemRef": {"value": item}}}]})
        assert answer.status_code == 200, answer.text
    aged = await report(http, api, "AgedReceivables", customer=customer)
    assert [c["ColTitle"] for c in aged["Columns"]["Column"]] == ["", "Current", "1 - 30", "31 - 60", "61 - 90",
                                                                  "91 and over", "Total"]
    row = aged["Rows"]["Row"][0]["ColData"]
    assert [c["value"] for c in row[1:]] == ["10.00", "20.00", "40.00", "0.00", "80.00", "150.00"]
    narrow = await report(http, api, "AgedReceivables", customer=customer, aging_period="15", num_periods="2")
    assert [c["ColTitle"] for c in narrow["Columns"]["Column"]][1:-1] == ["Current", "1 - 15", "16 and over"]
    assert [c["value"] for c in narrow["Rows"]["Row"][0]["ColData"][1:]] == ["10.00", "20.00", "120.00", "150.00"]
    detail = await report(http, api, "AgedReceivableDetail", customer=customer)
    sections = [row["Header"]["ColData"][0]["value"] for row in detail["Rows"]["Row"] if "Header" in row]
    assert sections == ["91 and over days past due", "31 - 60 days past due", "1 - 30 days past due", "Current"]
    assert books.get(realm, "Customer", customer)["Balance"] == 150
