"""Reports summarised by class, department, product, employee, day and week, and filtered by class and department.

Every test makes its own transactions in a period long before the sample company's (which are all within the
last 50 days), so the expected figures are known whatever the sample transactions carry.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from qbflow.sandbox.app import Sandbox

RESIDENTIAL, COMMERCIAL = "1", "2"  # the sample company's classes
GARDEN_CENTER, FIELD_CREW = "1", "2"  # and departments
DESIGN, GARDENING = "4", "6"  # items
CHECKING, RENT, UTILITIES = "35", "17", "77"  # accounts
JOHN_JOHNSON = "54"  # an employee


@pytest.fixture
def start(sandbox: Sandbox) -> date:
    """The first day of the tests' own period: a Monday well before any sample transaction."""
    day = sandbox.books.clock.company_now().date() - timedelta(days=400)
    return day - timedelta(days=day.weekday())


def period(start: date) -> dict[str, str]:
    return {"start_date": start.isoformat(), "end_date": (start + timedelta(days=9)).isoformat()}


async def post(http: httpx.AsyncClient, api, entity: str, body: dict) -> dict:
    answer = await http.post(api(entity.lower()), json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()[entity]


async def report(http: httpx.AsyncClient, api, name: str, **params: str) -> dict:
    answer = await http.get(api(f"reports/{name}"), params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def sale(amount: float, item: str, *, class_id: str = "") -> dict:
    detail: dict[str, Any] = {"ItemRef": {"value": item}}
    if class_id:
        detail["ClassRef"] = {"value": class_id}
    return {"Amount": amount, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": detail}


def expense(amount: float, account: str, *, class_id: str = "") -> dict:
    detail: dict[str, Any] = {"AccountRef": {"value": account}}
    if class_id:
        detail["ClassRef"] = {"value": class_id}
    return {"Amount": amount, "DetailType": "AccountBasedExpenseLineDetail",
            "AccountBasedExpenseLineDetail": detail}


async def make_activity(http: httpx.AsyncClient, api, start: date) -> None:
    """Sales and expenses with classes on the lines, on the transaction, and none; with departments or none."""
    day = [(start + timedelta(days=n)).isoformat() for n in range(10)]
    # Line classes: 300 Residential, 200 Commercial; the Garden Center.
    await post(http, api, "Invoice", {"CustomerRef": {"value": "1"}, "TxnDate": day[0],
                                      "DepartmentRef": {"value": GARDEN_CENTER},
                                      "Line": [sale(300, DESIGN, class_id=RESIDENTIAL),
                                               sale(200, GARDENING, class_id=COMMERCIAL)]})
    # The transaction's class for every line: 150 Commercial; the Field Crew.
    await post(http, api, "SalesReceipt", {"CustomerRef": {"value": "2"}, "TxnDate": day[3],
                                           "ClassRef": {"value": COMMERCIAL},
                                           "DepartmentRef": {"value": FIELD_CREW},
                                           "Line": [sale(150, GARDENING)]})
    # No class, no department: 80.
    await post(http, api, "SalesReceipt", {"CustomerRef": {"value": "3"}, "TxnDate": day[8],
                                           "Line": [sale(80, DESIGN)]})
    # A bill: rent 120 Residential, utilities 45 without a class; the Garden Center.
    await post(http, api, "Bill", {"VendorRef": {"value": "30"}, "TxnDate": day[4],
                                   "DepartmentRef": {"value": GARDEN_CENTER},
                                   "Line": [expense(120, RENT, class_id=RESIDENTIAL), expense(45, UTILITIES)]})
    # An employee's cash expense, 30 Commercial.
    await post(http, api, "Purchase", {"PaymentType": "Cash", "AccountRef": {"value": CHECKING},
                                       "EntityRef": {"value": JOHN_JOHNSON, "type": "Employee"}, "TxnDate": day[9],
                                       "Line": [expense(30, UTILITIES, class_id=COMMERCIAL)]})


# --- reading a report -----------------------------------------------------------------------------------------
def money_columns(answer: dict) -> list[tuple[str, str]]:
    """(ColTitle, ColKey) of each money column."""
    found = []
    for column in answer["Columns"]["Column"][1:]:
        key = next(m["Value"] for m in column["MetaData"] if m["Name"] == "ColKey")
        found.append((column["ColTitle"], key))
    return found


def lines(rows: list[dict], found: dict[str, list[float]] | None = None) -> dict[str, list[float]]:
    """Every row with amounts (accounts, section totals, Gross Profit, Net Income...) by its label."""
    found = {} if found is None else found
    for row in rows:
        for part in (row.get("ColData"), row.get("Summary", {}).get("ColData")):
            if part and any(cell.get("value") for cell in part[1:]):
                found[part[0]["value"]] = [float(cell["value"] or 0) for cell in part[1:]]
        lines(row.get("Rows", {}).get("Row", []), found)
    return found


def column(answer: dict, title: str) -> dict[str, float]:
    """One column of a report, by row label."""
    index = [t for t, _k in money_columns(answer)].index(title)
    return {label: values[index] for label, values in lines(answer["Rows"]["Row"]).items()}


def assert_columns_add_up_to_total(answer: dict) -> None:
    for label, values in lines(answer["Rows"]["Row"]).items():
        assert sum(values[:-1]) == pytest.approx(values[-1], abs=0.005), label


# --- Profit and Loss by class and department -------------------------------------------------------------------
async def test_profit_and_loss_by_class_has_a_column_per_class_then_not_specified_and_total(
        http: httpx.AsyncClient, api, start: date) -> None:
    await make_activity(http, api, start)
    answer = await report(http, api, "ProfitAndLoss", summarize_column_by="Classes", **period(start))

    assert answer["Header"]["SummarizeColumnsBy"] == "Classes"
    assert money_columns(answer) == [("Commercial", COMMERCIAL), ("Residential", RESIDENTIAL),
                                     ("Not Specified", "not_specified"), ("Total", "total")]
    assert_columns_add_up_to_total(answer)
    # Line classes, the transaction's class, and neither (Not Specified).
    assert column(answer, "Residential")["Total Income"] == 300
    assert column(answer, "Commercial")["Total Income"] == 350
    assert column(answer, "Not Specified")["Total Income"] == 80
    assert column(answer, "Residential")["Net Income"] == 180  # 300 less 120 rent
    assert column(answer, "Commercial")["Net Income"] == 320  # 350 less 30 utilities
    assert column(answer, "Not Specified")["Net Income"] == 35  # 80 less 45 utilities
    assert column(answer, "Total")["Net Income"] == 535


async def test_each_class_column_is_the_profit_and_loss_filtered_by_that_class(
        http: httpx.AsyncClient, api, start: date) -> None:
    await make_activity(http, api, start)
    by_class = await report(http, api, "ProfitAndLoss", summarize_column_by="Classes", **period(start))
    for title, class_id in (("Residential", RESIDENTIAL), ("Commercial", COMMERCIAL)):
        filtered = await report(http, api, "ProfitAndLoss", **{"class": class_id}, **period(start))
        assert filtered["Header"]["Class"] == class_id
        assert {k: v for k, v in column(by_class, title).items() if v} == column(filtered, "TOTAL")
    both = await report(http, api, "ProfitAndLoss", **{"class": f"{RESIDENTIAL},{COMMERCIAL}"}, **period(start))
    assert column(both, "TOTAL")["Net Income"] == 500


async def test_profit_and_loss_by_department_and_filtered_by_department(
        http: httpx.AsyncClient, api, start: date) -> None:
    await make_activity(http, api, start)
    answer = await report(http, api, "ProfitAndLoss", summarize_column_by="Departments", **period(start))

    assert money_columns(answer) == [("Field Crew", FIELD_CREW), ("Garden Center", GARDEN_CENTER),
                                     ("Not Specified", "not_specified"), ("Total", "total")]
    assert_columns_add_up_to_total(answer)
    assert column(answer, "Garden Center")["Net Income"] == 335  # 500 invoiced less the 165 bill
    assert column(answer, "Field Crew")["Net Income"] == 150
    assert column(answer, "Not Specified")["Net Income"] == 50  # 80 sold less 30 spent
    filtered = await report(http, api, "ProfitAndLoss", department=GARDEN_CENTER, **period(start))
    assert filtered["Header"]["Department"] == GARDEN_CENTER
    assert {k: v for k, v in column(answer, "Garden Center").items() if v} == column(filtered, "TOTAL")


async def test_a_journal_entry_line_keeps_its_own_class_and_department(http: httpx.AsyncClient, api,
                                                                       start: date) -> None:
    line = {"JournalEntryLineDetail": {"PostingType": "Debit", "AccountRef": {"value": RENT},
                                       "ClassRef": {"value": RESIDENTIAL}, "DepartmentRef": {"value": FIELD_CREW}}}
    await post(http, api, "JournalEntry", {"TxnDate": start.isoformat(), "Line": [
        {"Amount": 70, "DetailType": "JournalEntryLineDetail", **line},
        {"Amount": 70, "DetailType": "JournalEntryLineDetail",
         "JournalEntryLineDetail": {"PostingType": "Credit", "AccountRef": {"value": CHECKING}}}]})
    by_class = await report(http, api, "ProfitAndLoss", summarize_column_by="Classes", **period(start))
    by_department = await report(http, api, "ProfitAndLoss", summarize_column_by="Departments", **period(start))
    assert column(by_class, "Residential")["Net Income"] == -70
    assert column(by_department, "Field Crew")["Net Income"] == -70


async def test_on_the_cash_basis_a_payment_brings_in_the_classes_of_what_it_pays(http: httpx.AsyncClient, api,
                                                                                   start: date) -> None:
    invoice = await post(http, api, "Invoice", {"CustomerRef": {"value": "1"}, "TxnDate": start.isoformat(),
                                                "Line": [sale(300, DESIGN, class_id=RESIDENTIAL),
                                                         sale(100, GARDENING, class_id=COMMERCIAL)]})
    await post(http, api, "Payment", {"CustomerRef": {"value": "1"}, "TotalAmt": 200,
                                      "TxnDate": (start + timedelta(days=2)).isoformat(),
                                      "Line": [{"Amount": 200, "LinkedTxn": [{"TxnId": invoice["Id"],
                                                                                "TxnType": "Invoice"}]}]})
    cash = await report(http, api, "ProfitAndLoss", summarize_column_by="Classes", accounting_method="Cash",
                        **period(start))
    assert column(cash, "Residential")["Total Income"] == 150  # half of each line is paid
    assert column(cash, "Commercial")["Total Income"] == 50
    assert "Not Specified" not in [title for title, _k in money_columns(cash)]


# --- other ways to summarise -------------------------------------------------------------------------------------
@pytest.mark.parametrize("summarize", ["Days", "Week", "Month", "Quarter", "Year", "Customers", "Vendors",
                                       "Employees", "Classes", "Departments", "ProductsAndServices"])
async def test_every_way_of_summarising_adds_up_to_the_same_total(http: httpx.AsyncClient, api, start: date,
                                                                  summarize: str) -> None:
    await make_activity(http, api, start)
    plain = await report(http, api, "ProfitAndLoss", **period(start))
    answer = await report(http, api, "ProfitAndLoss", summarize_column_by=summarize.lower(), **period(start))
    assert answer["Header"]["SummarizeColumnsBy"] == summarize
    assert_columns_add_up_to_total(answer)
    assert column(answer, "Total") == column(plain, "TOTAL")


async def test_columns_per_product_employee_day_and_week(http: httpx.AsyncClient, api, start: date) -> None:
    await make_activity(http, api, start)
    products = await report(http, api, "ProfitAndLoss", summarize_column_by="ProductsAndServices", **period(start))
    assert [title for title, _k in money_columns(products)] == ["Design", "Gardening", "Not Specified", "Total"]
    assert column(products, "Design")["Total Income"] == 380
    assert column(products, "Gardening")["Total Income"] == 350
    employees = await report(http, api, "ProfitAndLoss", summarize_column_by="Employees", **period(start))
    assert [title for title, _k in money_columns(employees)] == ["John Johnson", "Not Specified", "Total"]
    assert column(employees, "John Johnson")["Net Income"] == -30
    days = await report(http, api, "ProfitAndLoss", summarize_column_by="Days", **period(start))
    assert len(money_columns(days)) == 11  # ten days and the total
    assert days["Columns"]["Column"][1]["MetaData"][:2] == [{"Name": "StartDate", "Value": start.isoformat()},
                                                            {"Name": "EndDate", "Value": start.isoformat()}]
    weeks = await report(http, api, "ProfitAndLoss", summarize_column_by="Week", **period(start))
    # Weeks start on Sunday: the Monday start falls in one, the next Sunday opens the second.
    assert len(money_columns(weeks)) == 3
    assert weeks["Columns"]["Column"][2]["MetaData"][0]["Value"] == (start + timedelta(days=6)).isoformat()


async def test_an_unknown_way_of_summarising_is_refused_naming_the_parameter(http: httpx.AsyncClient, api) -> None:
    for name in ("ProfitAndLoss", "BalanceSheet"):
        answer = await http.get(api(f"reports/{name}"), params={"summarize_column_by": "Colours"})
        assert answer.status_code == 400
        error = answer.json()["Fault"]["Error"][0]
        assert error["code"] == "2010"
        assert error["element"] == "summarize_column_by" and "Colours" in error["Detail"]


# --- Balance Sheet by class ------------------------------------------------------------------------------------
async def test_balance_sheet_by_class_balances_in_every_column(http: httpx.AsyncClient, api, start: date) -> None:
    await make_activity(http, api, start)
    as_of = {"start_date": start.isoformat(), "end_date": (start + timedelta(days=9)).isoformat()}
    answer = await report(http, api, "BalanceSheet", summarize_column_by="Classes", **as_of)
    assert [title for title, _k in money_columns(answer)] == ["Commercial", "Residential", "Not Specified", "Total"]
    assert_columns_add_up_to_total(answer)
    totals = lines(answer["Rows"]["Row"])
    assert totals["TOTAL ASSETS"] == totals["TOTAL LIABILITIES AND EQUITY"]
    plain = await report(http, api, "BalanceSheet", **as_of)
    assert column(answer, "Total") == column(plain, "Total")
    # The Residential class: 300 invoiced (in A/R), 120 of rent owed (in A/P), 180 of profit.
    residential = column(answer, "Residential")
    assert residential["Total Accounts Receivable"] == 300
    assert residential["Total Accounts Payable"] == 120
    assert residential["Net Income"] == 180
