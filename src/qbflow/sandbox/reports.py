"""The Reports API (`GET /reports/{name}`): Intuit's report answers computed from the ledger.

Every amount comes from `ledger.Ledger` (the postings of the stored transactions) or from the open balances
of invoices and bills, the same figures as accounts' CurrentBalance and customers' and vendors' Balance.
Shapes (Header, Columns.Column, nested Rows.Row with Header/Rows/Summary/ColData, `type`, `group`) follow
recorded answers; see docs/sandbox.md for the sources.
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from datetime import date, timedelta
from typing import Any

from qbflow.sandbox import faults
from qbflow.sandbox.books import Books, Company
from qbflow.sandbox.clock import qbo_time
from qbflow.sandbox.ledger import DEBIT_TYPES, PROFIT_AND_LOSS_TYPES, Posting, natural_balance

Params = Mapping[str, str]

_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")


# --- periods ------------------------------------------------------------------------------------------------
def _fiscal_start(company: Company, today: date) -> date:
    info = company.table("CompanyInfo").get("1", {})
    month = _MONTHS.index(info.get("FiscalYearStartMonth", "January")) + 1 \
        if info.get("FiscalYearStartMonth") in _MONTHS else 1
    year = today.year if today.month >= month else today.year - 1
    return date(year, month, 1)


def _quarter_start(day: date) -> date:
    return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)


def _month_end(day: date) -> date:
    return date(day.year, day.month, calendar.monthrange(day.year, day.month)[1])


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def date_macro(company: Company, macro: str, today: date) -> tuple[date, date]:
    """The period a date_macro names (Intuit's list, matched whatever the case)."""
    key = macro.strip().lower()
    fiscal = _fiscal_start(company, today)
    month = today.replace(day=1)
    quarter = _quarter_start(today)
    week = today - timedelta(days=(today.weekday() + 1) % 7)  # weeks start on Sunday in QBO
    macros: dict[str, tuple[date, date]] = {
        "all": (date(1900, 1, 1), today),
        "today": (today, today),
        "yesterday": (today - timedelta(days=1), today - timedelta(days=1)),
        "this week": (week, week + timedelta(days=6)),
        "this week-to-date": (week, today),
        "last week": (week - timedelta(days=7), week - timedelta(days=1)),
        "last week-to-date": (week - timedelta(days=7), today - timedelta(days=7)),
        "next week": (week + timedelta(days=7), week + timedelta(days=13)),
        "this month": (month, _month_end(today)),
        "this month-to-date": (month, today),
        "last month": (_add_months(month, -1), month - timedelta(days=1)),
        "last month-to-date": (_add_months(month, -1), min(today - timedelta(days=0), month - timedelta(days=1))),
        "next month": (_add_months(month, 1), _month_end(_add_months(month, 1))),
        "this quarter": (quarter, _add_months(quarter, 3) - timedelta(days=1)),
        "this quarter-to-date": (quarter, today),
        "last quarter": (_add_months(quarter, -3), quarter - timedelta(days=1)),
        "next quarter": (_add_months(quarter, 3), _add_months(quarter, 6) - timedelta(days=1)),
        "this year": (date(today.year, 1, 1), date(today.year, 12, 31)),
        "this year-to-date": (date(today.year, 1, 1), today),
        "this calendar year": (date(today.year, 1, 1), date(today.year, 12, 31)),
        "this calendar year-to-date": (date(today.year, 1, 1), today),
        "last year": (date(today.year - 1, 1, 1), date(today.year - 1, 12, 31)),
        "last calendar year": (date(today.year - 1, 1, 1), date(today.year - 1, 12, 31)),
        "last year-to-date": (date(today.year - 1, 1, 1), _same_day_year_before(today)),
        "next year": (date(today.year + 1, 1, 1), date(today.year + 1, 12, 31)),
        "this fiscal year": (fiscal, _add_months(fiscal, 12) - timedelta(days=1)),
        "this fiscal year-to-date": (fiscal, today),
        "last fiscal year": (_add_months(fiscal, -12), fiscal - timedelta(days=1)),
        "last fiscal year-to-date": (_add_months(fiscal, -12), _same_day_year_before(today)),
        "next fiscal year": (_add_months(fiscal, 12), _add_months(fiscal, 24) - timedelta(days=1)),
        "this fiscal quarter": (quarter, _add_months(quarter, 3) - timedelta(days=1)),
        "this fiscal quarter-to-date": (quarter, today),
        "last fiscal quarter": (_add_months(quarter, -3), quarter - timedelta(days=1)),
        "last fiscal quarter-to-date": (_add_months(quarter, -3), _add_months(quarter, -3) + (today - quarter)),
        "next fiscal quarter": (_add_months(quarter, 3), _add_months(quarter, 6) - timedelta(days=1)),
        "this calendar quarter": (quarter, _add_months(quarter, 3) - timedelta(days=1)),
        "this calendar quarter-to-date": (quarter, today),
        "last calendar quarter": (_add_months(quarter, -3), quarter - timedelta(days=1)),
        "next 4 weeks": (week + timedelta(days=7), week + timedelta(days=34)),
    }
    if key not in macros:
        raise faults.invalid(f"Invalid date_macro: {macro}", "date_macro", code="2010")
    return macros[key]


def _same_day_year_before(day: date) -> date:
    return day.replace(year=day.year - 1, day=min(day.day, 28)) if day.month == 2 else day.replace(year=day.year - 1)


def _parse_date(text: str, name: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise faults.invalid(f"Invalid date for {name}: {text}", name, code="2010") from None


class Period:
    """The dates a report covers and how its Header names them."""

    def __init__(self, company: Company, params: Params, today: date, default_macro: str) -> None:
        start, end = params.get("start_date"), params.get("end_date")
        self.macro: str | None = None
        if params.get("date_macro"):
            self.macro = params["date_macro"]
            self.start, self.end = date_macro(company, self.macro, today)
        elif start or end:
            default_start, default_end = date_macro(company, default_macro, today)
            self.start = _parse_date(start, "start_date") if start else default_start
            self.end = _parse_date(end, "end_date") if end else default_end
        else:
            self.macro = default_macro
            self.start, self.end = date_macro(company, default_macro, today)
        if self.start > self.end:
            raise faults.invalid("start_date is after end_date", "start_date", code="2010")


# --- shared building blocks ----------------------------------------------------------------------------------
def amount_text(value: float) -> str:
    return f"{round(value + 0.0, 2):.2f}"


def _header(company: Company, books: Books, name: str, *, period: Period | None, basis: str | None,
            summarize: str | None, no_data: bool, extra: dict | None = None) -> dict:
    header: dict[str, Any] = {"Time": qbo_time(books.clock.now()), "ReportName": name}
    if period is not None and period.macro:
        header["DateMacro"] = period.macro.lower()
    if basis:
        header["ReportBasis"] = basis
    if period is not None:
        header["StartPeriod"] = period.start.isoformat()
        header["EndPeriod"] = period.end.isoformat()
    if summarize:
        header["SummarizeColumnsBy"] = summarize
    header["Currency"] = "USD"
    header.update(extra or {})
    options = [{"Name": "AccountingStandard", "Value": "GAAP"}] if basis else []
    header["Option"] = [*options, {"Name": "NoReportData", "Value": "true" if no_data else "false"}]
    return header


def _col(title: str, col_type: str, key: str | None = None, **meta: str) -> dict:
    column: dict[str, Any] = {"ColTitle": title, "ColType": col_type}
    data = [{"Name": k, "Value": v} for k, v in meta.items()]
    if key is not None:
        data.append({"Name": "ColKey", "Value": key})
    if data:
        column["MetaData"] = data
    return column


def _cells(label: str | dict, values: Iterable[str]) -> list[dict]:
    first = label if isinstance(label, dict) else {"value": label}
    return [first, *({"value": v} for v in values)]


def _section(title: str | dict | None, rows: list[dict], summary: list[dict] | None, group: str | None,
             width: int) -> dict:
    section: dict[str, Any] = {}
    if title is not None:
        section["Header"] = {"ColData": _cells(title, [""] * (width - 1))}
    if rows:
        section["Rows"] = {"Row": rows}
    if summary is not None:
        section["Summary"] = {"ColData": summary}
    section["type"] = "Section"
    if group:
        section["group"] = group
    return section


def _data(cells: list[dict]) -> dict:
    return {"ColData": cells, "type": "Data"}


def _account_label(account: dict) -> dict:
    return {"value": account.get("FullyQualifiedName") or account.get("Name", ""), "id": account["Id"]}


def _filter_ids(params: Params, name: str) -> set[str] | None:
    value = params.get(name)
    return {v.strip() for v in value.split(",") if v.strip()} if value else None


def _basis(params: Params, default: str = "Accrual") -> str:
    basis = params.get("accounting_method") or default
    if basis.lower() not in ("accrual", "cash"):
        raise faults.invalid(f"Invalid accounting_method: {basis}", "accounting_method", code="2010")
    return "Cash" if basis.lower() == "cash" else "Accrual"


# --- postings on either basis ---------------------------------------------------------------------------------
def basis_postings(company: Company, basis: str) -> list[Posting]:
    """The ledger's postings; on the cash basis, sales and purchases on credit count when they are paid:
    invoices and bills post nothing, and each payment credits (debits) the income (expense) of what it pays,
    in proportion, on its own date."""
    postings = list(company.ledger.postings())
    if basis == "Accrual":
        return postings
    credit_forms = {"Invoice": "Payment", "Bill": "BillPayment"}
    kept = [p for p in postings if p.txn_type not in credit_forms and p.txn_type not in credit_forms.values()]
    for form, payment_type in credit_forms.items():
        open_account = company.ledger.entries
        for payment in company.table(payment_type).values():
            entries = open_account.get((payment_type, payment["Id"]), [])
            control = [p for p in entries if p.account_id == _control_account(company, form)]
            cash = [p for p in entries if p not in control]
            kept += cash
            unapplied = sum(p.amount for p in control)
            for line in payment.get("Line", []):
                for link in line.get("LinkedTxn", []):
                    source = open_account.get((form, str(link.get("TxnId"))), [])
                    total = float(company.table(form).get(str(link.get("TxnId")), {}).get("TotalAmt", 0) or 0)
                    if not source or not total:
                        continue
                    share = float(line.get("Amount", 0) or 0) / total
                    lines = [p for p in source if p.account_id != _control_account(company, form)]
                    scaled = [round(p.amount * share, 2) for p in lines]
                    applied = -round(sum(p.amount for p in source if p.account_id
                                         == _control_account(company, form)) * share, 2)
                    if scaled:  # rounding of the shares goes to the last line, so the payment balances
                        scaled[-1] = round(scaled[-1] - (sum(scaled) - applied), 2)
                    for p, value in zip(lines, scaled, strict=True):
                        kept.append(Posting(payment_type, payment["Id"], payment.get("TxnDate", ""),
                                            str(payment.get("DocNumber", "")), p.account_id, value, p.name_type,
                                            p.name_id, p.memo, p.class_id, p.department_id, p.item_id))
                    unapplied -= applied
            if round(unapplied, 2):
                kept.append(Posting(payment_type, payment["Id"], payment.get("TxnDate", ""), "",
                                    _control_account(company, form), round(unapplied, 2)))
    return kept


def _control_account(company: Company, form: str) -> str:
    from qbflow.sandbox.ledger import special_account

    return special_account(company, "AR" if form == "Invoice" else "AP")


_SUMMARIZE_BY = ("Total", "Days", "Week", "Month", "Quarter", "Year", "Customers", "Vendors", "Employees",
                 "Classes", "Departments", "ProductsAndServices")


# --- Profit and Loss -------------------------------------------------------------------------------------------
_PL_SECTIONS = (  # (account type, group, title)
    ("Income", "Income", "Income"),
    ("Cost of Goods Sold", "COGS", "Cost of Goods Sold"),
    ("Expense", "Expenses", "Expenses"),
    ("Other Income", "OtherIncome", "Other Income"),
    ("Other Expense", "OtherExpenses", "Other Expenses"),
)


# summarize_column_by values that make a column per name, class, department or product (Intuit's
# SummarizeColumnsByEnum): the table the column titles come from, and what of a posting it groups by.
_SEGMENTS: dict[str, tuple[str, Callable[[Posting], str]]] = {
    "Customers": ("Customer", lambda p: p.name_id if p.name_type == "Customer" else ""),
    "Vendors": ("Vendor", lambda p: p.name_id if p.name_type == "Vendor" else ""),
    "Employees": ("Employee", lambda p: p.name_id if p.name_type == "Employee" else ""),
    "Classes": ("Class", lambda p: p.class_id),
    "Departments": ("Department", lambda p: p.department_id),
    "ProductsAndServices": ("Item", lambda p: p.item_id),
}
_PERIODS = ("Days", "Week", "Month", "Quarter", "Year")


def _columns_by(params: Params, period: Period, allowed: tuple[str, ...]) -> tuple[str, list[tuple[str, date, date]]]:
    """The money columns: (title, start, end) per day/week/month/quarter/year of the period, or none (one
    Total, or a column per segment: see `_segment_columns`)."""
    summarize = params.get("summarize_column_by") or "Total"
    match = next((a for a in allowed if a.lower() == summarize.lower()), None)
    if match is None:
        raise faults.invalid(f"Invalid summarize_column_by: {summarize}", "summarize_column_by", code="2010")
    if match not in _PERIODS:
        return match, []
    columns = []
    if match in ("Days", "Week"):
        cursor = period.start
        if match == "Week":  # QBO's weeks start on Sunday
            cursor = period.start - timedelta(days=(period.start.weekday() + 1) % 7)
        step = timedelta(days=1 if match == "Days" else 7)
        while cursor <= period.end:
            start, end = max(cursor, period.start), min(cursor + step - timedelta(days=1), period.end)
            title = start.strftime("%b %d, %Y") if match == "Days" \
                else f"{start.strftime('%b %d')} - {end.strftime('%b %d, %Y')}"
            columns.append((title, start, end))
            cursor += step
        return match, columns
    months = {"Month": 1, "Quarter": 3, "Year": 12}[match]
    cursor = period.start.replace(day=1)
    if match == "Quarter":
        cursor = _quarter_start(period.start)
    if match == "Year":
        cursor = date(period.start.year, 1, 1)
    while cursor <= period.end:
        nxt = _add_months(cursor, months)
        start, end = max(cursor, period.start), min(nxt - timedelta(days=1), period.end)
        if match == "Month":
            title = cursor.strftime("%b %Y")
        elif match == "Quarter":
            title = f"{start.strftime('%b %d')} - {end.strftime('%b %d, %Y')}"
        else:
            title = str(cursor.year)
        columns.append((title, start, end))
        cursor = nxt
    return match, columns


# A money column: (title, ColKey, MetaData, which postings it sums).
ColumnSpec = tuple[str, str, dict[str, str], Callable[[Posting], bool]]


def _segment_columns(company: Company, summarize: str, postings: list[Posting]) -> list[ColumnSpec]:
    """A column per customer (vendor, employee, class, department, product) with postings, by name, then
    Not Specified for the postings without one; the Total column is added by the caller."""
    if summarize not in _SEGMENTS or not postings:
        return []
    table, key_of = _SEGMENTS[summarize]
    names = company.table(table)

    def title(key: str) -> str:
        record = names.get(key, {})
        return str(record.get("DisplayName") or record.get("FullyQualifiedName") or record.get("Name") or key)

    def belongs(key: str) -> Callable[[Posting], bool]:
        return lambda posting: key_of(posting) == key

    keys = sorted({key_of(p) for p in postings} - {""}, key=lambda k: title(k).lower())
    columns: list[ColumnSpec] = [(title(k), k, {}, belongs(k)) for k in keys]
    if any(not key_of(p) for p in postings):
        # Customers/Vendors keep the key they always had; "not_specified" is the key of the unclassed column
        # in a live by-class answer (see docs/sandbox.md).
        not_specified = "Not Specified" if summarize in ("Customers", "Vendors") else "not_specified"
        columns.append(("Not Specified", not_specified, {}, belongs("")))
    return columns


def _in(posting: Posting, start: date, end: date) -> bool:
    return start.isoformat() <= posting.txn_date <= end.isoformat()


def _party_filter(params: Params) -> Callable[[Posting], bool]:
    """The postings a report's filters keep: `customer`, `vendor`, `employee`, `item`, `class`, `department`
    and `account`, each one or more comma-separated Ids."""
    customers, vendors = _filter_ids(params, "customer"), _filter_ids(params, "vendor")
    employees, items = _filter_ids(params, "employee"), _filter_ids(params, "item")
    classes, departments = _filter_ids(params, "class"), _filter_ids(params, "department")
    accounts = _filter_ids(params, "account")

    def keep(posting: Posting) -> bool:
        if customers is not None and not (posting.name_type == "Customer" and posting.name_id in customers):
            return False
        if vendors is not None and not (posting.name_type == "Vendor" and posting.name_id in vendors):
            return False
        if employees is not None and not (posting.name_type == "Employee" and posting.name_id in employees):
            return False
        if items is not None and posting.item_id not in items:
            return False
        if classes is not None and posting.class_id not in classes:
            return False
        if departments is not None and posting.department_id not in departments:
            return False
        return accounts is None or posting.account_id in accounts

    return keep


def _dated(start: date, end: date) -> Callable[[Posting], bool]:
    return lambda posting: _in(posting, start, end)


def profit_and_loss(books: Books, company: Company, params: Params, today: date) -> dict:
    period = Period(company, params, today, "This Fiscal Year-to-date")
    basis = _basis(params)
    summarize, spans = _columns_by(params, period, _SUMMARIZE_BY)
    accounts = company.table("Account")
    keep = _party_filter(params)
    postings = [p for p in basis_postings(company, basis) if keep(p) and _in(p, period.start, period.end)
                and accounts.get(p.account_id, {}).get("AccountType") in PROFIT_AND_LOSS_TYPES]
    # The money columns: (title, ColKey, MetaData, which postings it sums); the last is the total.
    columns_spec: list[ColumnSpec] = []
    for title, start, end in spans:
        columns_spec.append((title, title, {"StartDate": start.isoformat(), "EndDate": end.isoformat()},
                             _dated(start, end)))
    columns_spec += _segment_columns(company, summarize, postings)
    columns_spec.append(("Total" if columns_spec else "TOTAL", "total", {}, lambda p: True))
    spans_all = columns_spec
    # amounts[account][column index], in the account's natural sign
    amounts: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(spans_all))
    for posting in postings:
        account = accounts[posting.account_id]
        value = natural_balance(account, posting.amount)
        for index, (_t, _k, _m, belongs) in enumerate(spans_all):
            if belongs(posting):
                amounts[posting.account_id][index] += value
    no_data = not postings
    width = len(spans_all) + 1

    def text(values: Iterable[float]) -> list[str]:
        return ["" if no_data else amount_text(v) for v in values]

    totals: dict[str, list[float]] = {}
    sections: dict[str, dict] = {}
    for account_type, group, title in _PL_SECTIONS:
        ids = sorted((i for i in amounts if accounts[i].get("AccountType") == account_type),
                     key=lambda i: accounts[i].get("Name", ""))
        rows = [_data(_cells(_account_label(accounts[i]), text(amounts[i]))) for i in ids]
        total = [sum(amounts[i][c] for i in ids) for c in range(len(spans_all))]
        totals[group] = total
        sections[group] = _section(title, rows, _cells(f"Total {title}", text(total)), group, width)

    def combine(sign_pairs: list[tuple[str, int]]) -> list[float]:
        return [sum(sign * totals[g][c] for g, sign in sign_pairs) for c in range(len(spans_all))]

    gross = combine([("Income", 1), ("COGS", -1)])
    operating = [gross[c] - totals["Expenses"][c] for c in range(len(spans_all))]
    other = combine([("OtherIncome", 1), ("OtherExpenses", -1)])
    net = [operating[c] + other[c] for c in range(len(spans_all))]
    rows = [sections["Income"]]
    if totals["COGS"] != [0.0] * len(spans_all) or "Rows" in sections["COGS"]:
        rows.append(sections["COGS"])
    rows.append(_section(None, [], _cells("Gross Profit", text(gross)), "GrossProfit", width))
    rows.append(sections["Expenses"])
    rows.append(_section(None, [], _cells("Net Operating Income", text(operating)), "NetOperatingIncome", width))
    if "Rows" in sections["OtherIncome"] or "Rows" in sections["OtherExpenses"]:
        if "Rows" in sections["OtherIncome"]:
            rows.append(sections["OtherIncome"])
        if "Rows" in sections["OtherExpenses"]:
            rows.append(sections["OtherExpenses"])
        rows.append(_section(None, [], _cells("Net Other Income", text(other)), "NetOtherIncome", width))
    rows.append(_section(None, [], _cells("Net Income", text(net)), "NetIncome", width))
    columns = [_col("", "Account", "account")]
    columns += [_col(title, "Money", key, **meta) for title, key, meta, _b in spans_all]
    return {"Header": _header(company, books, "ProfitAndLoss", period=period, basis=basis, summarize=summarize,
                              no_data=no_data, extra=_filters_echoed(params)),
            "Columns": {"Column": columns}, "Rows": {"Row": rows}}


def _filters_echoed(params: Params) -> dict[str, str]:
    """The filters a report ran with, as its Header names them (ReportHeader in Intuit's Report.xsd)."""
    return {k.capitalize(): params[k] for k in ("customer", "vendor", "employee", "item", "class", "department")
            if params.get(k)}


def net_income(company: Company, start: date, end: date, basis: str = "Accrual") -> float:
    """Income less expenses of the postings dated in [start, end]."""
    accounts = company.table("Account")
    total = 0.0
    for posting in basis_postings(company, basis):
        account_type = accounts.get(posting.account_id, {}).get("AccountType")
        if account_type in PROFIT_AND_LOSS_TYPES and _in(posting, start, end):
            total -= posting.amount
    return round(total, 2)


# --- Balance Sheet ---------------------------------------------------------------------------------------------
_BS_LAYOUT: list[tuple[str, str, list[tuple[str, str, str]]]] = [
    # (group, title, [(account type, group, title)]) within TotalAssets / Liabilities
    ("CurrentAssets", "Current Assets", [("Bank", "BankAccounts", "Bank Accounts"),
                                         ("Accounts Receivable", "AR", "Accounts Receivable"),
                                         ("Other Current Asset", "OtherCurrentAssets", "Other Current Assets")]),
    ("CurrentLiabilities", "Current Liabilities", [
        ("Accounts Payable", "AP", "Accounts Payable"), ("Credit Card", "CreditCards", "Credit Cards"),
        ("Other Current Liability", "OtherCurrentLiabilities", "Other Current Liabilities")]),
]


def balances_as_of(company: Company, end: date, basis: str = "Accrual",
                   keep: Callable[[Posting], bool] | None = None) -> tuple[dict[str, float], float, float]:
    """Balance-sheet accounts' natural balances at `end`, the net income of the fiscal year to `end`, and
    the profit of earlier years (shown in Retained Earnings); of the postings `keep` keeps, if given."""
    accounts = company.table("Account")
    fiscal = _fiscal_start(company, end)
    debit: dict[str, float] = defaultdict(float)
    this_year = earlier = 0.0
    for posting in basis_postings(company, basis):
        if posting.txn_date > end.isoformat() or (keep is not None and not keep(posting)):
            continue
        account_type = accounts.get(posting.account_id, {}).get("AccountType")
        if account_type in PROFIT_AND_LOSS_TYPES:
            if posting.txn_date >= fiscal.isoformat():
                this_year -= posting.amount
            else:
                earlier -= posting.amount
        else:
            debit[posting.account_id] += posting.amount
    balances = {i: natural_balance(accounts.get(i, {"AccountType": "Bank"}), v) for i, v in debit.items()}
    return balances, round(this_year, 2), round(earlier, 2)


def balance_sheet(books: Books, company: Company, params: Params, today: date) -> dict:
    period = Period(company, params, today, "This Fiscal Year-to-date")
    basis = _basis(params)
    summarize, spans = _columns_by(params, period, _SUMMARIZE_BY)
    keep = _party_filter(params)
    accounts = company.table("Account")
    upto_end = [p for p in basis_postings(company, basis) if p.txn_date <= period.end.isoformat() and keep(p)]
    # The money columns: (title, ColKey, MetaData, balances at, which postings count); the last is the total.
    spans_all: list[tuple[str, str, dict[str, str], date, Callable[[Posting], bool]]] = [
        (title, title, {"StartDate": start.isoformat(), "EndDate": end.isoformat()}, end, keep)
        for title, start, end in spans]
    for title, key, meta, belongs in _segment_columns(company, summarize, upto_end):
        spans_all.append((title, key, meta, period.end, lambda p, b=belongs: keep(p) and b(p)))
    spans_all.append(("Total", "total", {}, period.end, keep))
    snapshots = [balances_as_of(company, end, basis, counts) for _t, _k, _m, end, counts in spans_all]
    retained = _retained_earnings_id(company)
    # "Accounts with no data are excluded from the report" (Intuit's "Run reports" page).
    used = {i for balances, _n, _e in snapshots for i in balances}
    no_data = not upto_end
    width = len(spans_all) + 1

    def value(account_id: str, index: int) -> float:
        balances, _net, earlier = snapshots[index]
        amount = balances.get(account_id, 0.0)
        if account_id == retained:
            amount += earlier
        return amount

    def text(values: Iterable[float]) -> list[str]:
        return ["" if no_data else amount_text(v) for v in values]

    def type_section(account_type: str, group: str, title: str) -> tuple[dict | None, list[float]]:
        ids = sorted((i for i in accounts if accounts[i].get("AccountType") == account_type
                      and (i in used or (i == retained and any(s[2] for s in snapshots)))),
                     key=lambda i: accounts[i].get("Name", ""))
        total = [sum(value(i, c) for i in ids) for c in range(len(spans_all))]
        if not ids:
            return None, total
        rows = [_data(_cells(_account_label(accounts[i]), text([value(i, c) for c in range(len(spans_all))])))
                for i in ids]
        return _section(title, rows, _cells(f"Total {title}", text(total)), group, width), total

    def group_of(group: str, title: str, parts: list[tuple[str, str, str]]) -> tuple[dict, list[float]]:
        rows, total = [], [0.0] * len(spans_all)
        for account_type, sub_group, sub_title in parts:
            section, sub_total = type_section(account_type, sub_group, sub_title)
            if section is not None:
                rows.append(section)
            total = [a + b for a, b in zip(total, sub_total, strict=True)]
        return _section(title, rows, _cells(f"Total {title}", text(total)), group, width), total

    current_assets, ca_total = group_of(*_BS_LAYOUT[0])
    fixed, fixed_total = type_section("Fixed Asset", "FixedAssets", "Fixed Assets")
    other_assets, oa_total = type_section("Other Asset", "OtherAssets", "Other Assets")
    asset_rows = [current_assets, *(s for s in (fixed, other_assets) if s is not None)]
    assets = [a + b + c for a, b, c in zip(ca_total, fixed_total, oa_total, strict=True)]
    current_liabilities, cl_total = group_of(*_BS_LAYOUT[1])
    long_term, lt_total = type_section("Long Term Liability", "LongTermLiabilities", "Long-Term Liabilities")
    liabilities = [a + b for a, b in zip(cl_total, lt_total, strict=True)]
    liability_section = _section("Liabilities", [current_liabilities, *([long_term] if long_term else [])],
                                 _cells("Total Liabilities", text(liabilities)), "Liabilities", width)
    equity_ids = sorted((i for i in accounts if accounts[i].get("AccountType") == "Equity"
                         and (i in used or (i == retained and any(s[2] for s in snapshots)))),
                        key=lambda i: accounts[i].get("Name", ""))
    equity_rows = [_data(_cells(_account_label(accounts[i]), text([value(i, c) for c in range(len(spans_all))])))
                   for i in equity_ids]
    net_values = [s[1] for s in snapshots]
    equity_rows.append({**_data(_cells("Net Income", text(net_values))), "group": "NetIncome"})
    equity = [sum(value(i, c) for i in equity_ids) + net_values[c] for c in range(len(spans_all))]
    equity_section = _section("Equity", equity_rows, _cells("Total Equity", text(equity)), "Equity", width)
    both = [a + b for a, b in zip(liabilities, equity, strict=True)]
    rows = [
        _section("ASSETS", asset_rows, _cells("TOTAL ASSETS", text(assets)), "TotalAssets", width),
        _section("LIABILITIES AND EQUITY", [liability_section, equity_section],
                 _cells("TOTAL LIABILITIES AND EQUITY", text(both)), "TotalLiabilitiesAndEquity", width),
    ]
    columns = [_col("", "Account", "account")]
    columns += [_col(title, "Money", key, **meta) for title, key, meta, _e, _c in spans_all]
    return {"Header": _header(company, books, "BalanceSheet", period=period, basis=basis, summarize=summarize,
                              no_data=no_data, extra=_filters_echoed(params)),
            "Columns": {"Column": columns}, "Rows": {"Row": rows}}


def _retained_earnings_id(company: Company) -> str:
    from qbflow.sandbox.ledger import special_account

    return special_account(company, "RE")


# --- Trial Balance ---------------------------------------------------------------------------------------------
def trial_balance(books: Books, company: Company, params: Params, today: date) -> dict:
    period = Period(company, params, today, "This Fiscal Year-to-date")
    basis = _basis(params)
    accounts = company.table("Account")
    fiscal = _fiscal_start(company, period.end)
    retained = _retained_earnings_id(company)
    debit: dict[str, float] = defaultdict(float)
    for posting in basis_postings(company, basis):
        if posting.txn_date > period.end.isoformat():
            continue
        account_id = posting.account_id
        if accounts.get(account_id, {}).get("AccountType") in PROFIT_AND_LOSS_TYPES:
            if posting.txn_date < fiscal.isoformat():
                account_id = retained  # earlier years' profit is closed into Retained Earnings
        debit[account_id] += posting.amount
    ids = sorted((i for i, v in debit.items() if round(v, 2)),
                 key=lambda i: (_TYPE_ORDER.get(accounts.get(i, {}).get("AccountType", ""), 99),
                                accounts.get(i, {}).get("Name", "")))
    rows = []
    total_debit = total_credit = 0.0
    for account_id in ids:
        amount = round(debit[account_id], 2)
        label = _account_label(accounts[account_id]) if account_id in accounts else {"value": account_id}
        if amount > 0:
            total_debit += amount
            rows.append(_data(_cells(label, [amount_text(amount), ""])))
        else:
            total_credit -= amount
            rows.append(_data(_cells(label, ["", amount_text(-amount)])))
    rows.append({"Summary": {"ColData": _cells("TOTAL", [amount_text(total_debit), amount_text(total_credit)])},
                 "type": "Section", "group": "GrandTotal"})
    columns = [_col("", "Account", "account"), _col("Debit", "Money", "Debit"), _col("Credit", "Money", "Credit")]
    return {"Header": _header(company, books, "TrialBalance", period=period, basis=basis, summarize="Total",
                              no_data=not ids),
            "Columns": {"Column": columns}, "Rows": {"Row": rows}}


_TYPE_ORDER = {t: n for n, t in enumerate((
    "Bank", "Accounts Receivable", "Other Current Asset", "Fixed Asset", "Other Asset", "Accounts Payable",
    "Credit Card", "Other Current Liability", "Long Term Liability", "Equity", "Income", "Cost of Goods Sold",
    "Expense", "Other Income", "Other Expense"))}


# --- open items: aging and balances -------------------------------------------------------------------------
def open_items(company: Company, side: str, as_of: date) -> list[dict]:
    """Invoices (bills) open on `as_of`, with credits (credit memos, vendor credits, unapplied payments) as
    negative items: what each customer (vendor) owed that day. Keys: type, id, doc, date, due, party,
    amount, open."""
    form, payment_type, credit_type = (("Invoice", "Payment", "CreditMemo") if side == "AR"
                                       else ("Bill", "BillPayment", "VendorCredit"))
    party_field = "CustomerRef" if side == "AR" else "VendorRef"
    cutoff = as_of.isoformat()
    paid: dict[str, float] = defaultdict(float)
    items: list[dict] = []
    for payment in company.table(payment_type).values():
        if payment.get("TxnDate", "") > cutoff:
            continue
        applied = 0.0
        for line in payment.get("Line", []):
            for link in line.get("LinkedTxn", []):
                if link.get("TxnType") == form:
                    paid[str(link.get("TxnId"))] += float(line.get("Amount", 0) or 0)
            applied += float(line.get("Amount", 0) or 0)
        unapplied = round(float(payment.get("TotalAmt", 0) or 0) - applied, 2)
        if unapplied:
            items.append(_item(payment_type, payment, party_field, -unapplied, -unapplied))
    for record in company.table(form).values():
        if record.get("TxnDate", "") > cutoff:
            continue
        total = float(record.get("TotalAmt", 0) or 0)
        remaining = round(total - paid.get(record["Id"], 0.0), 2)
        if remaining:
            items.append(_item(form, record, party_field, total, remaining))
    for record in company.table(credit_type).values():
        if record.get("TxnDate", "") <= cutoff and round(float(record.get("Balance", 0) or 0), 2):
            balance = float(record.get("Balance", 0))
            items.append(_item(credit_type, record, party_field, -float(record.get("TotalAmt", 0)), -balance))
    return items


def _item(txn_type: str, record: dict, party_field: str, amount: float, remaining: float) -> dict:
    return {"type": txn_type, "id": record["Id"], "doc": str(record.get("DocNumber", "")),
            "date": record.get("TxnDate", ""), "due": record.get("DueDate") or record.get("TxnDate", ""),
            "party": str((record.get(party_field) or {}).get("value", "")), "amount": round(amount, 2),
            "open": round(remaining, 2)}


def _aging_buckets(params: Params) -> tuple[int, int]:
    try:
        period = int(params.get("aging_period") or 30)
        count = int(params.get("num_periods") or 4)
    except ValueError:
        raise faults.invalid("aging_period and num_periods must be whole numbers", "aging_period",
                             code="2010") from None
    if period < 1 or count < 1:
        raise faults.invalid("aging_period and num_periods must be positive", "aging_period", code="2010")
    return period, count


def _bucket_titles(period: int, count: int) -> list[str]:
    titles = ["Current"]
    for n in range(count):
        if n == count - 1:
            titles.append(f"{n * period + 1} and over")
        else:
            titles.append(f"{n * period + 1} - {(n + 1) * period}")
    return titles


def _bucket(due: str, as_of: date, period: int, count: int) -> int:
    late = (as_of - date.fromisoformat(due[:10])).days
    if late <= 0:
        return 0
    return min((late - 1) // period, count - 1) + 1


def _report_date(params: Params, today: date) -> date:
    text = params.get("report_date") or params.get("end_date")
    return _parse_date(text, "report_date") if text else today


def aged(books: Books, company: Company, params: Params, today: date, side: str) -> dict:
    name = "AgedReceivables" if side == "AR" else "AgedPayables"
    party = "Customer" if side == "AR" else "Vendor"
    as_of = _report_date(params, today)
    period, count = _aging_buckets(params)
    titles = _bucket_titles(period, count)
    wanted = _filter_ids(params, party.lower())
    names = company.table(party)
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0] * (count + 1))
    for item in open_items(company, side, as_of):
        if wanted is not None and item["party"] not in wanted:
            continue
        sums[item["party"]][_bucket(item["due"], as_of, period, count)] += item["open"]
    ids = sorted((i for i, v in sums.items() if any(round(x, 2) for x in v)),
                 key=lambda i: names.get(i, {}).get("DisplayName", i))
    rows = []
    for party_id in ids:
        label = {"value": names.get(party_id, {}).get("DisplayName", party_id), "id": party_id}
        rows.append(_data(_cells(label, [amount_text(v) for v in sums[party_id]]
                                 + [amount_text(sum(sums[party_id]))])))
    totals = [sum(sums[i][b] for i in ids) for b in range(count + 1)]
    rows.append({"Summary": {"ColData": _cells("TOTAL", [amount_text(v) for v in totals]
                                               + [amount_text(sum(totals))])},
                 "type": "Section", "group": "GrandTotal"})
    keys = ["current", *(str(n) for n in range(count))]
    columns = [_col("", party, party.lower())]
    columns += [_col(t, "Money", k) for t, k in zip(titles, keys, strict=True)]
    columns.append(_col("Total", "Money", "total"))
    header = _header(company, books, name, period=None, basis=None, summarize=None, no_data=not ids,
                     extra={"StartPeriod": as_of.isoformat(), "EndPeriod": as_of.isoformat()})
    header["Option"] = [{"Name": "report_date", "Value": as_of.isoformat()},
                        {"Name": "NoReportData", "Value": "true" if not ids else "false"}]
    return {"Header": header, "Columns": {"Column": columns}, "Rows": {"Row": rows}}


def aged_detail(books: Books, company: Company, params: Params, today: date, side: str) -> dict:
    name = "AgedReceivableDetail" if side == "AR" else "AgedPayableDetail"
    party = "Customer" if side == "AR" else "Vendor"
    as_of = _report_date(params, today)
    period, count = _aging_buckets(params)
    titles = _bucket_titles(period, count)
    names = company.table(party)
    wanted = _filter_ids(params, party.lower())
    buckets: dict[int, list[dict]] = defaultdict(list)
    for item in open_items(company, side, as_of):
        if wanted is None or item["party"] in wanted:
            buckets[_bucket(item["due"], as_of, period, count)].append(item)
    rows = []
    grand_amount = grand_open = 0.0
    width = 8
    order = [*range(count, 0, -1), 0]  # Intuit lists the oldest first
    for index in order:
        items = sorted(buckets.get(index, []), key=lambda i: (i["due"], i["id"]))
        if not items:
            continue
        data = []
        for item in items:
            data.append(_data([
                {"value": item["date"]}, {"value": item["type"], "id": item["id"]}, {"value": item["doc"]},
                {"value": names.get(item["party"], {}).get("DisplayName", item["party"]), "id": item["party"]},
                {"value": item["due"]}, {"value": str(max((as_of - date.fromisoformat(item['due'][:10])).days, 0))},
                {"value": amount_text(item["amount"])}, {"value": amount_text(item["open"])}]))
        amount, open_amount = sum(i["amount"] for i in items), sum(i["open"] for i in items)
        grand_amount += amount
        grand_open += open_amount
        title = titles[index] if index == 0 else f"{titles[index]} days past due"
        rows.append(_section(title, data, _cells(f"Total for {title}", ["", "", "", "", "",
                                                                         amount_text(amount),
                                                                         amount_text(open_amount)]),
                             None, width))
    rows.append({"Summary": {"ColData": _cells("TOTAL", ["", "", "", "", "", amount_text(grand_amount),
                                                         amount_text(grand_open)])},
                 "type": "Section", "group": "GrandTotal"})
    columns = [_col("Date", "tx_date"), _col("Transaction Type", "txn_type"), _col("Num", "doc_num"),
               _col(party, "cust_name" if side == "AR" else "vend_name"), _col("Due Date", "due_date"),
               _col("Past Due", "past_due"), _col("Amount", "subt_amount" if side == "AR" else "subt_neg_amount"),
               _col("Open Balance", "subt_open_bal")]
    header = _header(company, books, name, period=None, basis=None, summarize=None, no_data=len(rows) == 1,
                     extra={"StartPeriod": as_of.isoformat(), "EndPeriod": as_of.isoformat()})
    return {"Header": header, "Columns": {"Column": columns}, "Rows": {"Row": rows}}


def party_balance(books: Books, company: Company, params: Params, today: date, side: str) -> dict:
    name = "CustomerBalance" if side == "AR" else "VendorBalance"
    party = "Customer" if side == "AR" else "Vendor"
    period = Period(company, params, today, "All")
    names = company.table(party)
    wanted = _filter_ids(params, party.lower())
    sums: dict[str, float] = defaultdict(float)
    for item in open_items(company, side, period.end):
        if wanted is None or item["party"] in wanted:
            sums[item["party"]] += item["open"]
    ids = sorted((i for i, v in sums.items() if round(v, 2)), key=lambda i: names.get(i, {}).get("DisplayName", i))
    rows = [_data(_cells({"value": names.get(i, {}).get("DisplayName", i), "id": i}, [amount_text(sums[i])]))
            for i in ids]
    rows.append({"Summary": {"ColData": _cells("TOTAL", [amount_text(sum(sums[i] for i in ids))])},
                 "type": "Section", "group": "GrandTotal"})
    columns = [_col("", party, party.lower()), _col("Total", "Money", "total")]
    return {"Header": _header(company, books, name, period=period, basis="Accrual", summarize="Total",
                              no_data=not ids),
            "Columns": {"Column": columns}, "Rows": {"Row": rows}}


# --- General Ledger and transaction lists -------------------------------------------------------------------
def _names_of(company: Company, posting: Posting) -> dict:
    if not posting.name_id:
        return {"value": ""}
    record = company.table(posting.name_type or "Customer").get(posting.name_id, {})
    return {"value": record.get("DisplayName", ""), "id": posting.name_id}


def _split(company: Company, posting: Posting) -> dict:
    """The other account of a two-line transaction, or "-Split-" (QBO's text) for several."""
    others = {p.account_id for p in company.ledger.entries.get((posting.txn_type, posting.txn_id), [])
              if p.account_id != posting.account_id}
    if len(others) == 1:
        other = others.pop()
        return {"value": company.table("Account").get(other, {}).get("Name", ""), "id": other}
    return {"value": "-Split-"} if others else {"value": ""}


def general_ledger(books: Books, company: Company, params: Params, today: date) -> dict:
    period = Period(company, params, today, "This Month-to-date")
    basis = _basis(params)
    accounts = company.table("Account")
    keep = _party_filter(params)
    postings = [p for p in basis_postings(company, basis) if keep(p)]
    fiscal = _fiscal_start(company, period.start)
    width = 8
    rows = []
    by_account: dict[str, list[Posting]] = defaultdict(list)
    opening: dict[str, float] = defaultdict(float)
    for posting in postings:
        if posting.txn_date > period.end.isoformat():
            continue
        if posting.txn_date < period.start.isoformat():
            is_pl = accounts.get(posting.account_id, {}).get("AccountType") in PROFIT_AND_LOSS_TYPES
            if not is_pl or posting.txn_date >= fiscal.isoformat():
                opening[posting.account_id] += posting.amount
        else:
            by_account[posting.account_id].append(posting)
    ids = sorted(set(by_account) | {i for i, v in opening.items() if round(v, 2)},
                 key=lambda i: (_TYPE_ORDER.get(accounts.get(i, {}).get("AccountType", ""), 99),
                                accounts.get(i, {}).get("Name", "")))
    for account_id in ids:
        account = accounts.get(account_id, {"Id": account_id, "Name": account_id})
        sign = 1 if account.get("AccountType") in DEBIT_TYPES else -1
        running = sign * opening.get(account_id, 0.0)
        data = [_data(_cells("Beginning Balance", ["", "", "", "", "", "", amount_text(running)]))]
        moved = 0.0
        for posting in sorted(by_account.get(account_id, []), key=lambda p: (p.txn_date, int(p.txn_id)
                                                                             if p.txn_id.isdigit() else 0)):
            value = sign * posting.amount
            running += value
            moved += value
            data.append(_data([{"value": posting.txn_date}, {"value": _txn_label(posting.txn_type),
                                                             "id": posting.txn_id},
                               {"value": posting.doc_number}, _names_of(company, posting), {"value": posting.memo},
                               _split(company, posting), {"value": amount_text(value)},
                               {"value": amount_text(running)}]))
        label = {"value": account.get("Name", ""), "id": account_id}
        rows.append(_section(label, data, _cells(f"Total for {account.get('Name', '')}",
                                                 ["", "", "", "", "", amount_text(moved) if len(data) > 1 else "",
                                                  ""]), None, width))
    columns = [_col("Date", "tx_date"), _col("Transaction Type", "txn_type"), _col("Num", "doc_num"),
               _col("Name", "name"), _col("Memo/Description", "memo"), _col("Split", "split_acc"),
               _col("Amount", "subt_nat_amount"), _col("Balance", "rbal_nat_amount")]
    header = _header(company, books, "GeneralLedger", period=period, basis=basis, summarize=None,
                     no_data=not rows)
    header["Option"] = header["Option"][1:]  # the recorded GL answer carries no AccountingStandard
    return {"Header": header, "Columns": {"Column": columns}, "Rows": {"Row": rows}}


_TXN_LABELS = {"Purchase": "Expense", "BillPayment": "Bill Payment (Check)", "JournalEntry": "Journal Entry",
               "SalesReceipt": "Sales Receipt", "CreditMemo": "Credit Memo", "RefundReceipt": "Refund",
               "VendorCredit": "Vendor Credit", "CreditCardPayment": "Credit Card Payment"}


def _txn_label(txn_type: str) -> str:
    return _TXN_LABELS.get(txn_type, txn_type)


# --- detail reports, cash flow and the transaction list ------------------------------------------------------
_DETAIL_COLUMNS = (("Date", "tx_date"), ("Transaction Type", "txn_type"), ("Num", "doc_num"), ("Name", "name"),
                   ("Memo/Description", "memo"), ("Split", "split_acc"), ("Amount", "subt_nat_amount"),
                   ("Balance", "rbal_nat_amount"))


def _detail_rows(company: Company, account: dict, postings: list[Posting]) -> tuple[list[dict], float]:
    """One Data row per posting with a running balance, in the account's natural sign; and the total."""
    sign = 1 if account.get("AccountType") in DEBIT_TYPES else -1
    running = 0.0
    rows = []
    for posting in sorted(postings, key=lambda p: (p.txn_date, int(p.txn_id) if p.txn_id.isdigit() else 0)):
        value = sign * posting.amount
        running += value
        rows.append(_data([{"value": posting.txn_date}, {"value": _txn_label(posting.txn_type), "id": posting.txn_id},
                           {"value": posting.doc_number}, _names_of(company, posting), {"value": posting.memo},
                           _split(company, posting), {"value": amount_text(value)},
                           {"value": amount_text(running)}]))
    return rows, running


def profit_and_loss_detail(books: Books, company: Company, params: Params, today: date) -> dict:
    period = Period(company, params, today, "This Fiscal Year-to-date")
    basis = _basis(params)
    accounts = company.table("Account")
    keep = _party_filter(params)
    postings = [p for p in basis_postings(company, basis) if keep(p) and _in(p, period.start, period.end)
                and accounts.get(p.account_id, {}).get("AccountType") in PROFIT_AND_LOSS_TYPES]
    width = len(_DETAIL_COLUMNS)
    blank = [""] * (width - 2)
    totals: dict[str, float] = {}
    sections: dict[str, dict] = {}
    for account_type, group, title in _PL_SECTIONS:
        ids = sorted({p.account_id for p in postings if accounts[p.account_id].get("AccountType") == account_type},
                     key=lambda i: accounts[i].get("Name", ""))
        account_rows, total = [], 0.0
        for account_id in ids:
            account = accounts[account_id]
            rows, moved = _detail_rows(company, account, [p for p in postings if p.account_id == account_id])
            total += moved
            account_rows.append(_section(_account_label(account), rows,
                                         _cells(f"Total for {account.get('Name', '')}",
                                                [*blank[:-1], amount_text(moved), ""]), None, width))
        totals[group] = total
        sections[group] = _section(title, account_rows, _cells(f"Total {title}", [*blank[:-1],
                                                                                 amount_text(total), ""]),
                                   group, width)

    def summary(label: str, value: float, group: str) -> dict:
        return _section(None, [], _cells(label, [*blank[:-1], amount_text(value), ""]), group, width)

    gross = totals["Income"] - totals["COGS"]
    operating = gross - totals["Expenses"]
    other = totals["OtherIncome"] - totals["OtherExpenses"]
    rows = [sections["Income"], *([sections["COGS"]] if "Rows" in sections["COGS"] else []),
            summary("Gross Profit", gross, "GrossProfit"), sections["Expenses"],
            summary("Net Operating Income", operating, "NetOperatingIncome")]
    if "Rows" in sections["OtherIncome"] or "Rows" in sections["OtherExpenses"]:
        rows += [s for g in ("OtherIncome", "OtherExpenses") if "Rows" in (s := sections[g])]
        rows.append(summary("Net Other Income", other, "NetOtherIncome"))
    rows.append(summary("Net Income", operating + other, "NetIncome"))
    columns = [_col(title, col_type) for title, col_type in _DETAIL_COLUMNS]
    return {"Header": _header(company, books, "ProfitAndLossDetail", period=period, basis=basis, summarize=None,
                              no_data=not postings),
            "Columns": {"Column": columns}, "Rows": {"Row": rows}}


_INVESTING = frozenset({"Fixed Asset", "Other Asset"})
_FINANCING = frozenset({"Long Term Liability", "Equity"})


def cash_flow(books: Books, company: Company, params: Params, today: date) -> dict:
    """Net income, adjusted by the change of every other balance-sheet account, is the change in cash (Bank
    accounts): operating (current assets and liabilities), investing (fixed and other assets), financing
    (long-term liabilities and equity)."""
    period = Period(company, params, today, "This Fiscal Year-to-date")
    accounts = company.table("Account")
    change: dict[str, float] = defaultdict(float)
    beginning = 0.0
    net = 0.0
    for posting in company.ledger.postings():
        account_type = accounts.get(posting.account_id, {}).get("AccountType")
        if posting.txn_date < period.start.isoformat():
            if account_type == "Bank":
                beginning += posting.amount
            continue
        if posting.txn_date > period.end.isoformat():
            continue
        if account_type in PROFIT_AND_LOSS_TYPES:
            net -= posting.amount
        elif account_type != "Bank":
            change[posting.account_id] -= posting.amount  # a fall in an asset (rise in a liability) is cash in
    width = 2

    def lines(kinds: Callable[[str], bool]) -> tuple[list[dict], float]:
        ids = sorted((i for i, v in change.items() if round(v, 2) and kinds(accounts.get(i, {}).get("AccountType",
                                                                                                 ""))),
                     key=lambda i: accounts.get(i, {}).get("Name", ""))
        return ([_data(_cells(_account_label(accounts[i]), [amount_text(change[i])])) for i in ids],
                sum(change[i] for i in ids))

    adjustments, adjusted = lines(lambda t: t not in _INVESTING and t not in _FINANCING)
    operating_rows = [{**_data(_cells("Net Income", [amount_text(net)])), "group": "NetIncome"}]
    if adjustments:
        operating_rows.append(_section("Adjustments to reconcile Net Income to Net Cash provided by operations:",
                                       adjustments, _cells("Total Adjustments to reconcile Net Income to Net Cash "
                                                           "provided by operations:", [amount_text(adjusted)]),
                                       "OperatingAdjustments", width))
    operating = net + adjusted
    investing_rows, investing = lines(lambda t: t in _INVESTING)
    financing_rows, financing = lines(lambda t: t in _FINANCING)
    increase = operating + investing + financing
    rows = [_section("OPERATING ACTIVITIES", operating_rows,
                     _cells("Net cash provided by operating activities", [amount_text(operating)]),
                     "OperatingActivities", width)]
    if investing_rows:
        rows.append(_section("INVESTING ACTIVITIES", investing_rows,
                             _cells("Net cash provided by investing activities", [amount_text(investing)]),
                             "InvestingActivities", width))
    if financing_rows:
        rows.append(_section("FINANCING ACTIVITIES", financing_rows,
                             _cells("Net cash provided by financing activities", [amount_text(financing)]),
                             "FinancingActivities", width))
    rows.append(_section(None, [], _cells("NET CASH INCREASE FOR PERIOD", [amount_text(increase)]),
                         "CashIncrease", width))
    if round(beginning, 2):
        rows.append(_section(None, [], _cells("Cash at beginning of period", [amount_text(beginning)]),
                             "BeginningCash", width))
    rows.append(_section(None, [], _cells("CASH AT END OF PERIOD", [amount_text(beginning + increase)]),
                         "EndingCash", width))
    columns = [_col("", "Account", "account"), _col("Total", "Money", "total")]
    no_data = not change and not round(net, 2)
    return {"Header": _header(company, books, "CashFlow", period=period, basis=None, summarize="Total",
                              no_data=no_data),
            "Columns": {"Column": columns}, "Rows": {"Row": rows}}


_LISTED = ("Invoice", "SalesReceipt", "CreditMemo", "RefundReceipt", "Payment", "Estimate", "Bill", "VendorCredit",
           "BillPayment", "Purchase", "PurchaseOrder", "Deposit", "Transfer", "JournalEntry", "CreditCardPayment")


def transaction_list(books: Books, company: Company, params: Params, today: date) -> dict:
    """Every transaction of the period, one row each, posting or not (estimates, purchase orders: "No")."""
    period = Period(company, params, today, "This Month-to-date")
    customers, vendors = _filter_ids(params, "customer"), _filter_ids(params, "vendor")
    accounts = company.table("Account")
    found = []
    for entity in _LISTED:
        for record in company.table(entity).values():
            when = str(record.get("TxnDate", ""))[:10]
            if not period.start.isoformat() <= when <= period.end.isoformat():
                continue
            customer = str((record.get("CustomerRef") or {}).get("value", ""))
            vendor = str((record.get("VendorRef") or (record.get("EntityRef") or {})).get("value", ""))
            if customers is not None and customer not in customers:
                continue
            if vendors is not None and vendor not in vendors:
                continue
            found.append((when, entity, record))
    found.sort(key=lambda f: (f[0], int(f[2]["Id"]) if f[2]["Id"].isdigit() else 0))
    rows = []
    for when, entity, record in found:
        entries = company.ledger.entries.get((entity, record["Id"]), [])
        main = entries[-1] if entries else None  # the balancing line: A/R, A/P, the bank or card
        if main is not None:
            name = _names_of(company, main)
            account = accounts.get(main.account_id, {})
            account_cell = {"value": account.get("Name", ""), "id": main.account_id}
            split = _split(company, main)
            amount = amount_text(abs(float(record.get("TotalAmt", record.get("Amount", 0)) or 0)))
        else:
            party = record.get("CustomerRef") or record.get("VendorRef") or {}
            name = {"value": party.get("name", ""), "id": party.get("value", "")} if party else {"value": ""}
            account_cell, split = {"value": ""}, {"value": ""}
            amount = amount_text(float(record.get("TotalAmt", 0) or 0))
        rows.append(_data([{"value": when}, {"value": _txn_label(entity), "id": record["Id"]},
                           {"value": str(record.get("DocNumber", ""))}, {"value": "Yes" if entries else "No"},
                           name, {"value": str(record.get("PrivateNote", ""))}, account_cell, split,
                           {"value": amount}]))
    columns = [_col("Date", "tx_date"), _col("Transaction Type", "txn_type"), _col("Num", "doc_num"),
               _col("Posting", "is_no_post"), _col("Name", "name"), _col("Memo/Description", "memo"),
               _col("Account", "account_name"), _col("Split", "other_account"), _col("Amount", "subt_nat_amount")]
    return {"Header": _header(company, books, "TransactionList", period=period, basis=None, summarize=None,
                              no_data=not rows),
            "Columns": {"Column": columns}, "Rows": {"Row": rows}}


REPORTS: dict[str, Callable[[Books, Company, Params, date], dict]] = {
    "ProfitAndLoss": profit_and_loss,
    "BalanceSheet": balance_sheet,
    "TrialBalance": trial_balance,
    "AgedReceivables": lambda b, c, p, t: aged(b, c, p, t, "AR"),
    "AgedPayables": lambda b, c, p, t: aged(b, c, p, t, "AP"),
    "AgedReceivableDetail": lambda b, c, p, t: aged_detail(b, c, p, t, "AR"),
    "AgedPayableDetail": lambda b, c, p, t: aged_detail(b, c, p, t, "AP"),
    "CustomerBalance": lambda b, c, p, t: party_balance(b, c, p, t, "AR"),
    "VendorBalance": lambda b, c, p, t: party_balance(b, c, p, t, "AP"),
    "GeneralLedger": general_ledger,
    "ProfitAndLossDetail": profit_and_loss_detail,
    "CashFlow": cash_flow,
    "TransactionList": transaction_list,
}


def run_report(books: Books, realm: str, name: str, params: Params) -> dict:
    """A report's answer, or the fault QBO gives for a report it does not know."""
    company = books.company(realm)
    report = next((f for n, f in REPORTS.items() if n.lower() == name.lower()), None)
    if report is None:
        raise faults.invalid(f"Unsupported report: {name}", "ReportName", code="2010")
    return report(books, company, params, books.clock.company_now().date())
