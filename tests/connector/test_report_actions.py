"""Report actions against the in-process sandbox: Intuit's answer plus flat rows whose totals agree with it."""

from __future__ import annotations

import pytest

from qbflow.connector.base import ActionContext, ActionInputError
from qbflow.connector.registry import action
from qbflow.engine.steps.actions import READ_OPERATIONS
from tests.support.clients import CountingTransport


def _summary(report: dict, group: str) -> list[dict]:
    """The Summary ColData of the section of `group`, found anywhere in the nested report."""
    def walk(rows: list[dict]) -> list[dict] | None:
        for row in rows:
            if row.get("group") == group and "Summary" in row:
                return row["Summary"]["ColData"]
            found = walk((row.get("Rows") or {}).get("Row") or [])
            if found is not None:
                return found
        return None

    found = walk(report["Rows"]["Row"])
    assert found is not None, group
    return found


def _flat(rows: list[dict], group: str) -> dict:
    found = [r for r in rows if r["type"] == "Summary" and r["group"] == group]
    assert len(found) == 1, (group, found)
    return found[0]


async def test_profit_and_loss_flat_rows_agree_with_the_report(ctx: ActionContext) -> None:
    out = await action("get_profit_and_loss").run(ctx, {"date_macro": "all"})
    report = out["report"]
    assert report["Header"]["ReportName"] == "ProfitAndLoss" and out["header"] == report["Header"]
    assert out["columns"] == ["name", "TOTAL"]
    net = _flat(out["rows"], "NetIncome")
    assert net["name"] == "Net Income"
    assert net["TOTAL"] == float(_summary(report, "NetIncome")[1]["value"])
    income = [r for r in out["rows"] if r["type"] == "Data" and r["section"] == "Income"]
    assert income and all(r["group"] == "Income" and r["id"] and isinstance(r["TOTAL"], float) for r in income)
    assert round(sum(r["TOTAL"] for r in income), 2) == _flat(out["rows"], "Income")["TOTAL"] \
        == float(_summary(report, "Income")[1]["value"])
    expenses = sum(r["TOTAL"] for r in out["rows"] if r["type"] == "Data" and r["group"] == "Expenses")
    cogs = sum(r["TOTAL"] for r in out["rows"] if r["type"] == "Data" and r["group"] == "COGS")
    other = sum(r["TOTAL"] for r in out["rows"] if r["type"] == "Data" and r["group"] == "OtherIncome") - sum(
        r["TOTAL"] for r in out["rows"] if r["type"] == "Data" and r["group"] == "OtherExpenses")
    assert round(sum(r["TOTAL"] for r in income) - cogs - expenses + other, 2) == net["TOTAL"]


async def test_the_action_sends_intuits_parameters_and_no_requestid(ctx: ActionContext,
                                                                    qbo_transport: CountingTransport) -> None:
    out = await action("get_profit_and_loss").run(ctx, {"start_date": "2026-01-01", "end_date": "2026-03-31",
                                                         "accounting_method": "Cash",
                                                         "summarize_column_by": "Month"})
    header = out["header"]
    assert (header["StartPeriod"], header["EndPeriod"], header["ReportBasis"]) == ("2026-01-01", "2026-03-31",
                                                                                   "Cash")
    assert out["columns"] == ["name", "Jan 2026", "Feb 2026", "Mar 2026", "Total"]
    request = qbo_transport.requests[-1]
    assert request.url.path.endswith("/reports/ProfitAndLoss") and "requestid" not in request.url.params
    assert action("get_profit_and_loss").operation in READ_OPERATIONS


async def test_balance_sheet_assets_equal_liabilities_and_equity(ctx: ActionContext) -> None:
    out = await action("get_balance_sheet").run(ctx, {"date_macro": "Today"})
    assets = _flat(out["rows"], "TotalAssets")
    both = _flat(out["rows"], "TotalLiabilitiesAndEquity")
    assert out["columns"] == ["name", "Total"]
    assert assets["Total"] == both["Total"] == float(_summary(out["report"], "TotalAssets")[1]["value"])
    receivable = [r for r in out["rows"] if r["type"] == "Data" and r["group"] == "AR"]
    assert receivable and receivable[0]["path"] == ["ASSETS", "Current Assets", "Accounts Receivable"]
    assert receivable[0]["section"] == "ASSETS"
    assert assets["Total"] == round(sum(r["Total"] for r in out["rows"] if r["type"] == "Data"
                                        and r["section"] == "ASSETS"), 2)


async def test_trial_balance_debits_equal_credits(ctx: ActionContext) -> None:
    out = await action("get_trial_balance").run(ctx, {})
    data = [r for r in out["rows"] if r["type"] == "Data"]
    total = _flat(out["rows"], "GrandTotal")
    debit, credit = out["columns"][1], out["columns"][2]
    assert round(sum(r[debit] or 0 for r in data), 2) == total[debit] == total[credit]


async def test_ar_aging_rows_add_up_per_customer_and_in_total(ctx: ActionContext, books) -> None:
    out = await action("get_ar_aging").run(ctx, {"aging_period": 15, "num_periods": 2})
    assert out["report"]["Header"]["ReportName"] == "AgedReceivables"
    assert out["columns"] == ["name", "Current", "1 - 15", "16 and over", "Total"]
    customers = [r for r in out["rows"] if r["type"] == "Data"]
    assert customers
    for r in customers:
        assert round(r["Current"] + r["1 - 15"] + r["16 and over"], 2) == r["Total"]
        assert r["Total"] == pytest.approx(float(books.get("Customer", r["id"])["Balance"]))
    total = out["rows"][-1]
    assert (total["type"], total["group"], total["name"]) == ("Summary", "GrandTotal", "TOTAL")
    assert total["Total"] == round(sum(r["Total"] for r in customers), 2)


async def test_ap_aging_filters_by_vendor(ctx: ActionContext) -> None:
    everyone = await action("get_ap_aging").run(ctx, {})
    vendors = [r for r in everyone["rows"] if r["type"] == "Data"]
    assert vendors
    one = await action("get_ap_aging").run(ctx, {"vendor": vendors[0]["id"]})
    assert [r["id"] for r in one["rows"] if r["type"] == "Data"] == [vendors[0]["id"]]
    assert one["rows"][-1]["Total"] == vendors[0]["Total"]


async def test_cash_flow_ending_cash(ctx: ActionContext) -> None:
    out = await action("get_cash_flow").run(ctx, {"date_macro": "This Fiscal Year-to-date"})
    ending = _flat(out["rows"], "EndingCash")
    assert ending["TOTAL" if "TOTAL" in ending else "Total"] == float(_summary(out["report"], "EndingCash")[1]["value"])


async def test_run_report_takes_any_case_and_intuits_parameters(ctx: ActionContext) -> None:
    out = await action("run_report").run(ctx, {"report": "agedreceivables", "params": {"aging_period": 15,
                                                                                      "num_periods": 2}})
    assert out["header"]["ReportName"] == "AgedReceivables"
    same = await action("get_ar_aging").run(ctx, {"aging_period": 15, "num_periods": 2})
    assert out["rows"] == same["rows"]


@pytest.mark.parametrize(("key", "given", "field", "words"), [
    ("get_profit_and_loss", {"start_date": "2026-05-01", "end_date": "2026-04-01"}, "start_date", "on or before"),
    ("get_profit_and_loss", {"start_date": "2026-02-30"}, "start_date", "date"),
    ("get_profit_and_loss", {"date_macro": "last mnth"}, "date_macro", "did you mean 'Last Month'"),
    ("get_balance_sheet", {"date_macro": "Today", "end_date": "2026-01-01"}, "date_macro", "not both"),
    ("get_trial_balance", {"accounting_method": "Modified"}, "accounting_method", "'Accrual' or 'Cash'"),
    ("get_ar_aging", {"aging_period": 0}, "aging_period", "greater than or equal to 1"),
    ("get_ar_aging", {"customer": "Amy's Bird Sanctuary"}, "customer", "Ids separated by commas"),
    ("get_ap_aging", {"customer": "1"}, "customer", "not a known field"),
    ("run_report", {"report": "ProfitAndLos"}, "report", "did you mean 'ProfitAndLoss'"),
    ("run_report", {"params": {"Start Date": "2026-01-01"}, "report": "BalanceSheet"}, "params", "lower case"),
])
async def test_bad_input_names_the_field_the_value_and_what_was_expected(ctx: ActionContext, key: str, given: dict,
                                                                          field: str, words: str) -> None:
    with pytest.raises(ActionInputError) as caught:
        await action(key).run(ctx, given)
    problem = next(p for p in caught.value.problems if p.field == field)
    assert words in problem.expected, problem.describe()
    shown = next(iter(given.values()))
    assert repr(shown if not isinstance(shown, dict) else next(iter(shown))) in problem.describe()


async def test_a_report_quickbooks_does_not_serve_is_its_fault(ctx: ActionContext) -> None:
    from qbflow.qbo.errors import QBOError

    with pytest.raises(QBOError, match="Unsupported report"):
        await action("run_report").run(ctx, {"report": "vendorexpenses"})
