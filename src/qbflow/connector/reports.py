"""Report actions: QuickBooks reports (Intuit's Reports API) read into a step's output.

    get_profit_and_loss, get_balance_sheet, get_ar_aging (AgedReceivables), get_ap_aging (AgedPayables),
    get_cash_flow, get_trial_balance, and run_report (any report by Intuit's name, with its parameters)

Every one answers {"report": Intuit's answer as is, "header": its Header, "columns": [column names],
"rows": [flat rows]}. A flat row is one line of the report (a data row, or a section's summary line) with
named columns, so a template can read `row.Total` instead of walking nested ColData (see `flatten`).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints, create_model, field_validator, model_validator

from qbflow.connector.base import PATTERN_TEXT, Action, ActionContext, ActionInput, FieldError

__all__ = ["DATE_MACROS", "REPORT_NAMES", "flatten", "generate_reports", "report_name"]

# Intuit's date_macro values (the Reports API reference), in Intuit's spelling; matched whatever the case.
DATE_MACROS = (
    "Today", "Yesterday", "This Week", "This Week-to-date", "Last Week", "Last Week-to-date", "Next Week",
    "Next 4 Weeks", "This Month", "This Month-to-date", "Last Month", "Last Month-to-date", "Next Month",
    "This Fiscal Quarter", "This Fiscal Quarter-to-date", "Last Fiscal Quarter", "Last Fiscal Quarter-to-date",
    "Next Fiscal Quarter", "This Fiscal Year", "This Fiscal Year-to-date", "Last Fiscal Year",
    "Last Fiscal Year-to-date", "Next Fiscal Year", "This Calendar Quarter", "This Calendar Quarter-to-date",
    "Last Calendar Quarter", "This Calendar Year", "This Calendar Year-to-date", "Last Calendar Year",
    "This Year", "This Year-to-date", "Last Year", "Last Year-to-date", "Next Year", "This Quarter",
    "This Quarter-to-date", "Last Quarter", "Next Quarter", "All",
)

# The report names of Intuit's Reports API (the path segment of GET /reports/{name}).
REPORT_NAMES = (
    "AccountList", "AgedPayableDetail", "AgedPayables", "AgedReceivableDetail", "AgedReceivables", "BalanceSheet",
    "CashFlow", "ClassSales", "CustomerBalance", "CustomerBalanceDetail", "CustomerIncome", "CustomerSales",
    "DepartmentSales", "GeneralLedger", "InventoryValuationDetail", "InventoryValuationSummary", "ItemSales",
    "JournalReport", "ProfitAndLoss", "ProfitAndLossDetail", "TaxSummary", "TransactionList",
    "TransactionListByCustomer", "TransactionListByVendor", "TransactionListWithSplits", "TrialBalance",
    "VendorBalance", "VendorBalanceDetail", "VendorExpenses",
)

SummarizeBy = Literal["Total", "Month", "Quarter", "Year", "Week", "Days", "FiscalYear", "FiscalQuarter",
                      "Customers", "Vendors", "Employees", "Classes", "Departments", "ProductsAndServices"]

_IDS_PATTERN = r"^\d{1,20}(\s*,\s*\d{1,20})*$"
PATTERN_TEXT[_IDS_PATTERN] = "an Id, or Ids separated by commas (e.g. \"58\" or \"58,61\")"
Ids = Annotated[str, StringConstraints(pattern=_IDS_PATTERN, max_length=4000)]
_PARAM_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
PATTERN_TEXT[_PARAM_PATTERN] = "a parameter name as Intuit spells it (lower case, e.g. start_date)"
ParamName = Annotated[str, StringConstraints(pattern=_PARAM_PATTERN)]
ParamValue = Annotated[str, StringConstraints(max_length=4000)] | int | float | bool | date


def _choose(value: str, known: Iterable[str], what: str) -> str:
    """`value` in Intuit's spelling (matched whatever its case and spaces), or a ValueError suggesting the nearest."""
    by_key = {k.lower().replace(" ", ""): k for k in known}
    found = by_key.get(value.lower().replace(" ", ""))
    if found is not None:
        return found
    near = difflib.get_close_matches(value.lower().replace(" ", ""), list(by_key), n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(repr(by_key[n]) for n in near)}? " if near else ""
    raise ValueError(f"{hint}expected {what}")


def report_name(value: str) -> str:
    """A report name in Intuit's spelling ("profitandloss" -> "ProfitAndLoss"), or ValueError with a suggestion."""
    return _choose(value, REPORT_NAMES, "one of Intuit's report names (" + ", ".join(REPORT_NAMES) + ")")


# --- inputs ---------------------------------------------------------------------------------------------------
class _Dated(ActionInput):
    """A period: start_date and end_date, or a date_macro (not both)."""

    start_date: date | None = Field(None, description="First day of the report's period (YYYY-MM-DD).")
    end_date: date | None = Field(None, description="Last day of the report's period (YYYY-MM-DD).")
    date_macro: str | None = Field(None, description="A named period instead of dates, as Intuit names them: "
                                                     "Today, This Month, Last Month, This Month-to-date, This "
                                                     "Fiscal Year-to-date, Last Fiscal Year, ... (any case). "
                                                     "Neither dates nor macro: QuickBooks' default, This Fiscal "
                                                     "Year-to-date.")

    @field_validator("date_macro")
    @classmethod
    def _macro(cls, value: str | None) -> str | None:
        return None if value is None else _choose(value, DATE_MACROS, "one of Intuit's date macros ("
                                                  + ", ".join(DATE_MACROS) + ")")

    @model_validator(mode="after")
    def _period(self) -> _Dated:
        if self.date_macro is not None and (self.start_date is not None or self.end_date is not None):
            raise FieldError("date_macro", "give start_date/end_date or date_macro, not both", self.date_macro)
        if self.start_date is not None and self.end_date is not None and self.start_date > self.end_date:
            raise FieldError("start_date", f"a start_date on or before end_date ({self.end_date.isoformat()})",
                             self.start_date.isoformat())
        return self


_METHOD = Field(None, description="Accrual (the company's default) or Cash.")
_SUMMARIZE = Field(None, description="Columns to split the amounts into (Total, the default; Month, Quarter, "
                                     "Year, Customers, Vendors...).")
_CUSTOMER = Field(None, description="Only these customers (their Ids).")
_VENDOR = Field(None, description="Only these vendors (their Ids).")


class _Statement(_Dated):
    """The parameters the Profit and Loss and the Balance Sheet share (Intuit's reference lists the same for both)."""

    accounting_method: Literal["Accrual", "Cash"] | None = _METHOD
    summarize_column_by: SummarizeBy | None = _SUMMARIZE
    customer: Ids | None = _CUSTOMER
    vendor: Ids | None = _VENDOR


class ProfitAndLossInput(_Statement):
    """The Profit and Loss (income statement) for a period."""


class BalanceSheetInput(_Statement):
    """The Balance Sheet at the end of a period."""


class CashFlowInput(_Dated):
    """The Statement of Cash Flows for a period."""

    summarize_column_by: SummarizeBy | None = _SUMMARIZE
    customer: Ids | None = _CUSTOMER
    vendor: Ids | None = _VENDOR


class TrialBalanceInput(_Dated):
    """The Trial Balance at the end of a period."""

    accounting_method: Literal["Accrual", "Cash"] | None = _METHOD
    summarize_column_by: SummarizeBy | None = _SUMMARIZE


def _aging_model(party: str) -> type[ActionInput]:
    noun = party.lower()

    class AgingInput(ActionInput):
        report_date: date | None = Field(None, description="The day the amounts are aged at (YYYY-MM-DD); default "
                                                           "today.")
        aging_period: Annotated[int, Field(ge=1, le=365)] | None = Field(
            None, description="Days in each aging bucket (default 30).")
        num_periods: Annotated[int, Field(ge=1, le=50)] | None = Field(
            None, description="How many aging buckets after Current (default 4: 1 - 30 ... 91 and over).")
        aging_method: Literal["Report_Date", "Current"] | None = Field(
            None, description="Age from the report date (Report_Date, the default) or from today (Current).")

    fields: dict[str, Any] = {noun: (Ids | None, Field(None, description=f"Only these {noun}s (their Ids)."))}
    return create_model(f"Aged{party}Input", __base__=AgingInput,
                        __doc__=f"What each {noun} owes{' us' if party == 'Customer' else ''}, by days past due.",
                        **fields)


class RunReportInput(ActionInput):
    """Any report of Intuit's Reports API, by name, with its parameters as Intuit names them."""

    report: Annotated[str, StringConstraints(min_length=1, max_length=100)] = Field(
        description="The report's name as Intuit spells it, any case: ProfitAndLoss, BalanceSheet, CashFlow, "
                    "TrialBalance, AgedReceivables, AgedPayables, AgedReceivableDetail, CustomerBalance, "
                    "GeneralLedger, ProfitAndLossDetail, TransactionList, VendorBalance, ...")
    params: dict[ParamName, ParamValue] = Field(
        default_factory=dict, description="The report's parameters by Intuit's names, e.g. {\"start_date\": "
                                          "\"2026-01-01\", \"end_date\": \"2026-03-31\", \"accounting_method\": "
                                          "\"Cash\"} (dates as YYYY-MM-DD; true/false for flags).")

    @field_validator("report")
    @classmethod
    def _known(cls, value: str) -> str:
        return report_name(value)


# --- output -----------------------------------------------------------------------------------------------
def _column_names(report: Mapping[str, Any]) -> tuple[list[str], list[bool]]:
    """The name of each column in flat rows (the first is always "name") and which hold money."""
    names: list[str] = []
    money: list[bool] = []
    for index, column in enumerate((report.get("Columns") or {}).get("Column") or []):
        meta = {m.get("Name"): m.get("Value") for m in column.get("MetaData") or [] if isinstance(m, Mapping)}
        name = "name" if index == 0 else (column.get("ColTitle") or meta.get("ColKey") or f"column_{index}")
        if index and (name in names or name in _ROW_KEYS):
            name = f"{name} ({meta.get('ColKey') or index})"
        names.append(name)
        money.append(column.get("ColType") == "Money")
    return names, money


_ROW_KEYS = frozenset({"section", "path", "group", "type", "name", "id"})


def _number(text: Any) -> float | None | Any:
    if not isinstance(text, str):
        return text
    if not text.strip():
        return None
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return text


def flatten(report: Mapping[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """(column names, flat rows) of a report answer.

    One row per data line and per section summary, in the report's order: {"type": "Data" or "Summary",
    "section": the outermost enclosing section's title, "path": the titles of the enclosing sections, outermost
    first, "group": Intuit's group of the innermost section (a summary: of its own section), "name": the
    first column's text, "id": the first column's id when Intuit gives one, then one key per other column
    (its title, else its ColKey) with money as numbers (an empty amount is null)}.
    """
    names, money = _column_names(report)
    rows: list[dict[str, Any]] = []

    def line(kind: str, cells: list[Any], path: list[str], group: str | None) -> None:
        out: dict[str, Any] = {"type": kind, "section": path[0] if path else None, "path": list(path),
                               "group": group}
        for index, cell in enumerate(cells):
            cell = cell if isinstance(cell, Mapping) else {"value": cell}
            key = names[index] if index < len(names) else f"column_{index}"
            value = cell.get("value")
            out[key] = _number(value) if index < len(money) and money[index] else value
            if index == 0 and cell.get("id") not in (None, ""):
                out["id"] = cell["id"]
        out.setdefault("name", None)
        rows.append(out)

    def walk(items: Iterable[Any], path: list[str], group: str | None) -> None:
        for item in items:
            if not isinstance(item, Mapping):
                continue
            if "ColData" in item and not ("Rows" in item or "Summary" in item or "Header" in item):
                line("Data", item.get("ColData") or [], path, group)
                continue
            header = (item.get("Header") or {}).get("ColData") or []
            title = header[0].get("value") if header and isinstance(header[0], Mapping) else None
            inner = [*path, title] if title else path
            own = item.get("group") or group
            walk((item.get("Rows") or {}).get("Row") or [], inner, own)
            summary = (item.get("Summary") or {}).get("ColData")
            if summary:
                line("Summary", summary, inner, own)

    walk((report.get("Rows") or {}).get("Row") or [], [], None)
    return names, rows


OUTPUT = ("{\"report\": the report as QuickBooks returns it (Header, Columns, Rows), \"header\": its Header, "
          "\"columns\": the flat rows' column names (the first is \"name\"), \"rows\": one flat row per line: "
          "{\"type\": \"Data\" or \"Summary\" (a section's total line), \"section\": the outermost section's "
          "title (e.g. \"Income\"), \"path\": the enclosing sections' titles, outermost first, \"group\": "
          "Intuit's group of the section (e.g. \"Income\", \"NetIncome\", \"GrandTotal\"), \"name\": the first "
          "column (account, customer or vendor), \"id\": its Id when there is one, and one key per other "
          "column, by its title (e.g. \"Total\", \"Current\", \"1 - 30\", \"Debit\"), amounts as numbers "
          "(null when empty)}. A summary of a section without a title (Net Income) has the section of the "
          "sections around it, or null. E.g. a Profit and Loss row: {\"type\": \"Data\", \"section\": "
          "\"Income\", \"path\": [\"Income\"], \"group\": \"Income\", \"name\": \"Services\", \"id\": "
          "\"1\", \"TOTAL\": 1200.0}; its net income: {\"type\": \"Summary\", \"section\": null, \"path\": "
          "[], \"group\": \"NetIncome\", \"name\": \"Net Income\", \"TOTAL\": 136.32}; the A/R aging's "
          "total is its last row (group GrandTotal, name TOTAL).")


async def _answer(ctx: ActionContext, name: str, params: Mapping[str, Any]) -> dict:
    report = await ctx.qbo.report(name, **params)
    columns, rows = flatten(report)
    return {"report": report, "header": report.get("Header") or {}, "columns": columns, "rows": rows}


def _wire(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _fixed(name: str):
    async def handle(ctx: ActionContext, model: BaseModel) -> dict:
        return await _answer(ctx, name, {k: _wire(v) for k, v in model.model_dump(exclude_none=True).items()})

    return handle


async def _run_report(ctx: ActionContext, model: RunReportInput) -> dict:
    return await _answer(ctx, model.report, {k: _wire(v) for k, v in model.params.items()})


def generate_reports() -> dict[str, Action]:
    """The report actions, by key."""
    specs = (
        ("get_profit_and_loss", "Get Profit and Loss", "ProfitAndLoss", ProfitAndLossInput,
         "Runs the Profit and Loss report (income, cost of goods sold, expenses, net income) for a period."),
        ("get_balance_sheet", "Get Balance Sheet", "BalanceSheet", BalanceSheetInput,
         "Runs the Balance Sheet report (assets, liabilities and equity) at the end of a period."),
        ("get_ar_aging", "Get A/R Aging", "AgedReceivables", _aging_model("Customer"),
         "Runs the A/R Aging Summary (AgedReceivables): what each customer owes, by days past due."),
        ("get_ap_aging", "Get A/P Aging", "AgedPayables", _aging_model("Vendor"),
         "Runs the A/P Aging Summary (AgedPayables): what the company owes each vendor, by days past due."),
        ("get_cash_flow", "Get Cash Flow", "CashFlow", CashFlowInput,
         "Runs the Statement of Cash Flows (operating, investing and financing activities) for a period."),
        ("get_trial_balance", "Get Trial Balance", "TrialBalance", TrialBalanceInput,
         "Runs the Trial Balance (debit and credit balance of every account) at the end of a period."),
    )
    checked = (" Dates are checked (start on or before end) and date macros matched to Intuit's list before "
               "QuickBooks is called.")
    actions = [Action(key, title, text + (checked if issubclass(model, _Dated) else ""), model, OUTPUT,
                      _fixed(name), None, "report")
               for key, title, name, model, text in specs]
    actions.append(Action(
        "run_report", "Run Report", "Runs any report of QuickBooks' Reports API by its name (any case; an unknown "
        "name is refused, suggesting the nearest), with its parameters as Intuit names them.", RunReportInput,
        OUTPUT, _run_report, None, "report"))
    return {a.key: a for a in actions}
