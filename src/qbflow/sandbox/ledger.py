"""Double-entry postings derived from a company's stored transactions, as QuickBooks posts them.

One source of truth: every transaction's postings are computed from the record itself (`postings_of`),
kept per transaction in `Ledger`, and summed per account. Account `CurrentBalance`, the reports and the
A/R and A/P totals are all read from here, so they agree at any moment.

A posting's `amount` is a debit when positive and a credit when negative; each transaction's postings
sum to zero.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qbflow.sandbox.books import Company

# Transactions that post to accounts (estimates, purchase orders, time and templates post nothing).
POSTING_ENTITIES = ("Invoice", "SalesReceipt", "CreditMemo", "RefundReceipt", "Payment", "Bill",
                    "VendorCredit", "BillPayment", "Purchase", "Deposit", "Transfer", "JournalEntry",
                    "CreditCardPayment")
# Account types whose balance is a debit balance (shown positive when debits exceed credits).
DEBIT_TYPES = frozenset({"Bank", "Accounts Receivable", "Other Current Asset", "Fixed Asset", "Other Asset",
                         "Expense", "Other Expense", "Cost of Goods Sold"})
PROFIT_AND_LOSS_TYPES = frozenset({"Income", "Other Income", "Expense", "Other Expense", "Cost of Goods Sold"})


@dataclass(frozen=True)
class Posting:
    """One line of the general ledger."""

    txn_type: str
    txn_id: str
    txn_date: str
    doc_number: str
    account_id: str
    amount: float  # debit positive, credit negative
    name_type: str = ""  # Customer, Vendor or Employee the line is about
    name_id: str = ""
    memo: str = ""
    class_id: str = ""  # the line's ClassRef, else the transaction's
    department_id: str = ""  # the transaction's DepartmentRef (a journal line's own, if it has one)
    item_id: str = ""  # the product or service of a sales or item-based expense line


@dataclass
class Ledger:
    """Each transaction's postings and every account's debit-positive total, kept in step with writes."""

    entries: dict[tuple[str, str], list[Posting]] = field(default_factory=dict)
    totals: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def post(self, company: Company, entity: str, record_id: str, record: dict | None) -> set[str]:
        """Replace one transaction's postings (None: it was deleted); the accounts whose total changed."""
        touched: set[str] = set()
        for posting in self.entries.pop((entity, record_id), []):
            self.totals[posting.account_id] -= posting.amount
            touched.add(posting.account_id)
        if record is not None and entity in POSTING_ENTITIES:
            postings = postings_of(company, entity, record)
            if postings:
                self.entries[(entity, record_id)] = postings
            for posting in postings:
                self.totals[posting.account_id] += posting.amount
                touched.add(posting.account_id)
        return touched

    def rebuild(self, company: Company) -> None:
        self.entries.clear()
        self.totals.clear()
        for entity in POSTING_ENTITIES:
            for record in list(company.table(entity).values()):
                self.post(company, entity, record["Id"], record)

    def postings(self) -> Iterable[Posting]:
        for postings in self.entries.values():
            yield from postings

    def balance(self, account_id: str) -> float:
        return round(self.totals.get(account_id, 0.0) + 0.0, 2)


def natural_balance(account: dict, debit_total: float) -> float:
    """A debit-positive total as QBO shows it for the account: credit balances positive for liabilities,
    equity and income."""
    sign = 1 if account.get("AccountType") in DEBIT_TYPES else -1
    return round(sign * debit_total + 0.0, 2)


# --- finding the accounts QBO posts to by itself ------------------------------------------------------
def special_account(company: Company, kind: str) -> str:
    """The Id of A/R, A/P, Undeposited Funds or sales tax payable; created as QBO does if missing."""
    accounts = company.table("Account")
    wanted = {
        "AR": lambda a: a.get("AccountType") == "Accounts Receivable",
        "AP": lambda a: a.get("AccountType") == "Accounts Payable",
        "UF": lambda a: a.get("AccountSubType") == "UndepositedFunds",
        "TAX": lambda a: a.get("AccountSubType") in ("SalesTaxPayable", "GlobalTaxPayable"),
        "OBE": lambda a: a.get("AccountSubType") == "OpeningBalanceEquity",
        "RE": lambda a: a.get("AccountSubType") == "RetainedEarnings",
    }[kind]
    for account in sorted(accounts.values(), key=lambda a: int(a["Id"]) if a["Id"].isdigit() else 0):
        if wanted(account):
            return str(account["Id"])
    # A company without one: postings still balance against a well-known placeholder Id.
    return f"__{kind}__"


def _ref(value: object) -> str:
    return str(value.get("value")) if isinstance(value, dict) and value.get("value") is not None else ""


def _amount(line: dict) -> float:
    try:
        return float(line.get("Amount", 0) or 0)
    except (TypeError, ValueError):
        return 0.0


def _item_account(company: Company, item_ref: object, purpose: str) -> str:
    item = company.table("Item").get(_ref(item_ref), {})
    if purpose == "income":
        return _ref(item.get("IncomeAccountRef")) or special_account(company, "OBE")
    # What a purchase of the item debits: inventory asset for stock, otherwise its expense account.
    if item.get("Type") == "Inventory" and item.get("AssetAccountRef"):
        return _ref(item["AssetAccountRef"])
    return _ref(item.get("ExpenseAccountRef")) or _ref(item.get("IncomeAccountRef")) \
        or special_account(company, "OBE")


# One line of a transaction before it is posted: (account, debit-positive amount, memo, class, item).
Line = tuple[str, float, str, str, str]


def _sales_credits(company: Company, record: dict) -> list[Line]:
    """(account, credit-positive amount, memo, class, item) for each revenue line of a sales form; discounts
    negative. A line without its own ClassRef takes the transaction's."""
    header_class = _ref(record.get("ClassRef"))
    credits: list[Line] = []

    def class_of(detail: dict) -> str:
        return _ref(detail.get("ClassRef")) or header_class

    for line in record.get("Line", []):
        kind = line.get("DetailType")
        detail = line.get(kind) or {}
        if kind == "SalesItemLineDetail":
            credits.append((_item_account(company, detail.get("ItemRef"), "income"), _amount(line),
                            str(line.get("Description", "")), class_of(detail), _ref(detail.get("ItemRef"))))
        elif kind == "GroupLineDetail":
            inner = [sub for sub in detail.get("Line", []) if sub.get("DetailType") == "SalesItemLineDetail"]
            if inner:
                for sub in inner:
                    sub_detail = sub.get("SalesItemLineDetail") or {}
                    credits.append((_item_account(company, sub_detail.get("ItemRef"), "income"), _amount(sub),
                                    str(sub.get("Description", "")), class_of(sub_detail),
                                    _ref(sub_detail.get("ItemRef"))))
            else:
                credits.append((_item_account(company, detail.get("GroupItemRef"), "income"), _amount(line), "",
                                header_class, _ref(detail.get("GroupItemRef"))))
        elif kind == "DiscountLineDetail":
            account = _ref(detail.get("DiscountAccountRef"))
            if not account:
                account = credits[0][0] if credits else special_account(company, "OBE")
            credits.append((account, -_amount(line), "Discount", class_of(detail), ""))
    tax = float((record.get("TxnTaxDetail") or {}).get("TotalTax", 0) or 0)
    if tax:
        credits.append((special_account(company, "TAX"), tax, "Sales tax", header_class, ""))
    return credits


def _purchase_debits(company: Company, record: dict) -> list[Line]:
    header_class = _ref(record.get("ClassRef"))
    debits: list[Line] = []
    for line in record.get("Line", []):
        kind = line.get("DetailType")
        detail = line.get(kind) or {}
        line_class = _ref(detail.get("ClassRef")) or header_class
        if kind == "AccountBasedExpenseLineDetail":
            debits.append((_ref(detail.get("AccountRef")), _amount(line), str(line.get("Description", "")),
                           line_class, ""))
        elif kind == "ItemBasedExpenseLineDetail":
            debits.append((_item_account(company, detail.get("ItemRef"), "expense"), _amount(line),
                           str(line.get("Description", "")), line_class, _ref(detail.get("ItemRef"))))
    tax = float((record.get("TxnTaxDetail") or {}).get("TotalTax", 0) or 0)
    if tax:
        debits.append((special_account(company, "TAX"), tax, "Tax", header_class, ""))
    return debits


def postings_of(company: Company, entity: str, record: dict) -> list[Posting]:
    """The postings QuickBooks makes for one transaction.

    Each line keeps its class (the line's ClassRef, else the transaction's) and the transaction's department
    (a journal entry line's own DepartmentRef first); the balancing line (A/R, A/P, the bank...) is split per
    class, so the postings of each class sum to zero too."""
    txn_id = str(record["Id"])
    date = str(record.get("TxnDate", ""))[:10]
    doc = str(record.get("DocNumber", ""))
    department = _ref(record.get("DepartmentRef"))
    header_class = _ref(record.get("ClassRef"))
    name_type, name_id = "", ""
    if record.get("CustomerRef"):
        name_type, name_id = "Customer", _ref(record["CustomerRef"])
    elif record.get("VendorRef"):
        name_type, name_id = "Vendor", _ref(record["VendorRef"])
    elif isinstance(record.get("EntityRef"), dict):
        name_type, name_id = str(record["EntityRef"].get("type", "Vendor")), _ref(record["EntityRef"])
    lines: list[Line] = []  # (account, debit-positive amount, memo, class, item)
    departments: list[str] = []  # a journal entry's line departments, in step with `lines`

    def balancing(account: str, memo: str = "") -> None:
        """The line that makes the transaction balance (A/R, A/P, the bank...), one per class of the lines."""
        rest: dict[str, float] = {}
        for _a, amount, _m, class_id, _i in lines:
            rest[class_id] = rest.get(class_id, 0.0) + amount
        lines.extend((account, -amount, memo, class_id, "") for class_id, amount in rest.items())

    def scaled(source: list[Line], sign: int) -> list[Line]:
        return [(a, sign * v, m, c, i) for a, v, m, c, i in source]

    total = float(record.get("TotalAmt", 0) or 0)
    deposit_to = _ref(record.get("DepositToAccountRef")) or special_account(company, "UF")
    if entity == "Invoice":
        lines += scaled(_sales_credits(company, record), -1)
        balancing(special_account(company, "AR"))
    elif entity == "SalesReceipt":
        lines += scaled(_sales_credits(company, record), -1)
        balancing(deposit_to)
    elif entity == "CreditMemo":
        lines += scaled(_sales_credits(company, record), 1)
        balancing(special_account(company, "AR"))
    elif entity == "RefundReceipt":
        lines += scaled(_sales_credits(company, record), 1)
        balancing(deposit_to)
    elif entity == "Payment":
        lines += [(deposit_to, total, "", "", ""), (special_account(company, "AR"), -total, "", "", "")]
    elif entity == "Bill":
        lines += _purchase_debits(company, record)
        balancing(special_account(company, "AP"))
    elif entity == "VendorCredit":
        lines += scaled(_purchase_debits(company, record), -1)
        balancing(special_account(company, "AP"))
    elif entity == "BillPayment":
        paid_from = _ref((record.get("CheckPayment") or {}).get("BankAccountRef")) \
            or _ref((record.get("CreditCardPayment") or {}).get("CCAccountRef"))
        lines += [(special_account(company, "AP"), total, "", "", ""),
                  (paid_from or special_account(company, "OBE"), -total, "", "", "")]
    elif entity == "Purchase":
        sign = -1 if record.get("Credit") is True else 1  # a card credit (refund) reverses an expense
        lines += scaled(_purchase_debits(company, record), sign)
        balancing(_ref(record.get("AccountRef")) or special_account(company, "OBE"))
    elif entity == "Deposit":
        for line in record.get("Line", []):
            detail = line.get("DepositLineDetail") or {}
            if line.get("LinkedTxn"):
                account = special_account(company, "UF")  # deposited payments leave Undeposited Funds
            else:
                account = _ref(detail.get("AccountRef")) or special_account(company, "OBE")
            lines.append((account, -_amount(line), str(line.get("Description", "")),
                          _ref(detail.get("ClassRef")), ""))
        balancing(_ref(record.get("DepositToAccountRef")) or special_account(company, "OBE"))
    elif entity == "Transfer":
        amount = float(record.get("Amount", 0) or 0)
        lines += [(_ref(record.get("ToAccountRef")), amount, "", header_class, ""),
                  (_ref(record.get("FromAccountRef")), -amount, "", header_class, "")]
    elif entity == "CreditCardPayment":
        amount = float(record.get("Amount", 0) or 0)
        lines += [(_ref(record.get("CreditCardAccountRef")), amount, "", "", ""),
                  (_ref(record.get("BankAccountRef")), -amount, "", "", "")]
    elif entity == "JournalEntry":
        for line in record.get("Line", []):
            detail = line.get("JournalEntryLineDetail") or {}
            sign = 1 if detail.get("PostingType") == "Debit" else -1
            lines.append((_ref(detail.get("AccountRef")), sign * _amount(line), str(line.get("Description", "")),
                          _ref(detail.get("ClassRef")), ""))
            departments.append(_ref(detail.get("DepartmentRef")) or department)
    if not departments:
        departments = [department] * len(lines)
    return [Posting(entity, txn_id, date, doc, account, round(amount + 0.0, 2), name_type, name_id, memo,
                    class_id, line_department, item)
            for (account, amount, memo, class_id, item), line_department in zip(lines, departments, strict=True)
            if account and round(amount, 2) != 0]
