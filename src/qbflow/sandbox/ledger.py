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


def _sales_credits(company: Company, record: dict) -> list[tuple[str, float, str]]:
    """(account, credit-positive amount, memo) for each revenue line of a sales form; discounts negative."""
    credits: list[tuple[str, float, str]] = []
    for line in record.get("Line", []):
        kind = line.get("DetailType")
        detail = line.get(kind) or {}
        if kind == "SalesItemLineDetail":
            credits.append((_item_account(company, detail.get("ItemRef"), "income"), _amount(line),
                            str(line.get("Description", ""))))
        elif kind == "GroupLineDetail":
            inner = [sub for sub in detail.get("Line", []) if sub.get("DetailType") == "SalesItemLineDetail"]
            if inner:
                for sub in inner:
                    credits.append((_item_account(company, (sub.get("SalesItemLineDetail") or {}).get("ItemRef"),
                                                  "income"), _amount(sub), str(sub.get("Description", ""))))
            else:
                credits.append((_item_account(company, detail.get("GroupItemRef"), "income"), _amount(line), ""))
        elif kind == "DiscountLineDetail":
            account = _ref(detail.get("DiscountAccountRef"))
            if not account:
                account = credits[0][0] if credits else special_account(company, "OBE")
            credits.append((account, -_amount(line), "Discount"))
    tax = float((record.get("TxnTaxDetail") or {}).get("TotalTax", 0) or 0)
    if tax:
        credits.append((special_account(company, "TAX"), tax, "Sales tax"))
    return credits


def _purchase_debits(company: Company, record: dict) -> list[tuple[str, float, str]]:
    debits: list[tuple[str, float, str]] = []
    for line in record.get("Line", []):
        kind = line.get("DetailType")
        detail = line.get(kind) or {}
        if kind == "AccountBasedExpenseLineDetail":
            debits.append((_ref(detail.get("AccountRef")), _amount(line), str(line.get("Description", ""))))
        elif kind == "ItemBasedExpenseLineDetail":
            debits.append((_item_account(company, detail.get("ItemRef"), "expense"), _amount(line),
                           str(line.get("Description", ""))))
    tax = float((record.get("TxnTaxDetail") or {}).get("TotalTax", 0) or 0)
    if tax:
        debits.append((special_account(company, "TAX"), tax, "Tax"))
    return debits


def postings_of(company: Company, entity: str, record: dict) -> list[Posting]:
    """The postings QuickBooks makes for one transaction."""
    txn_id = str(record["Id"])
    date = str(record.get("TxnDate", ""))[:10]
    doc = str(record.get("DocNumber", ""))
    name_type, name_id = "", ""
    if record.get("CustomerRef"):
        name_type, name_id = "Customer", _ref(record["CustomerRef"])
    elif record.get("VendorRef"):
        name_type, name_id = "Vendor", _ref(record["VendorRef"])
    elif isinstance(record.get("EntityRef"), dict):
        name_type, name_id = str(record["EntityRef"].get("type", "Vendor")), _ref(record["EntityRef"])
    lines: list[tuple[str, float, str]] = []  # (account, debit-positive amount, memo)

    def balancing(account: str, memo: str = "") -> None:
        """The one line that makes the transaction balance (A/R, A/P, the bank...)."""
        rest = sum(amount for _a, amount, _m in lines)
        lines.append((account, -rest, memo))

    total = float(record.get("TotalAmt", 0) or 0)
    deposit_to = _ref(record.get("DepositToAccountRef")) or special_account(company, "UF")
    if entity == "Invoice":
        lines += [(a, -v, m) for a, v, m in _sales_credits(company, record)]
        balancing(special_account(company, "AR"))
    elif entity == "SalesReceipt":
        lines += [(a, -v, m) for a, v, m in _sales_credits(company, record)]
        balancing(deposit_to)
    elif entity == "CreditMemo":
        lines += [(a, v, m) for a, v, m in _sales_credits(company, record)]
        balancing(special_account(company, "AR"))
    elif entity == "RefundReceipt":
        lines += [(a, v, m) for a, v, m in _sales_credits(company, record)]
        balancing(deposit_to)
    elif entity == "Payment":
        lines += [(deposit_to, total, ""), (special_account(company, "AR"), -total, "")]
    elif entity == "Bill":
        lines += _purchase_debits(company, record)
        balancing(special_account(company, "AP"))
    elif entity == "VendorCredit":
        lines += [(a, -v, m) for a, v, m in _purchase_debits(company, record)]
        balancing(special_account(company, "AP"))
    elif entity == "BillPayment":
        paid_from = _ref((record.get("CheckPayment") or {}).get("BankAccountRef")) \
            or _ref((record.get("CreditCardPayment") or {}).get("CCAccountRef"))
        lines += [(special_account(company, "AP"), total, ""), (paid_from or special_account(company, "OBE"),
                                                                 -total, "")]
    elif entity == "Purchase":
        sign = -1 if record.get("Credit") is True else 1  # a card credit (refund) reverses an expense
        lines += [(a, sign * v, m) for a, v, m in _purchase_debits(company, record)]
        balancing(_ref(record.get("AccountRef")) or special_account(company, "OBE"))
    elif entity == "Deposit":
        for line in record.get("Line", []):
            detail = line.get("DepositLineDetail") or {}
            if line.get("LinkedTxn"):
                account = special_account(company, "UF")  # deposited payments leave Undeposited Funds
            else:
                account = _ref(detail.get("AccountRef")) or special_account(company, "OBE")
            lines.append((account, -_amount(line), str(line.get("Description", ""))))
        balancing(_ref(record.get("DepositToAccountRef")) or special_account(company, "OBE"))
    elif entity == "Transfer":
        amount = float(record.get("Amount", 0) or 0)
        lines += [(_ref(record.get("ToAccountRef")), amount, ""), (_ref(record.get("FromAccountRef")), -amount, "")]
    elif entity == "CreditCardPayment":
        amount = float(record.get("Amount", 0) or 0)
        lines += [(_ref(record.get("CreditCardAccountRef")), amount, ""),
                  (_ref(record.get("BankAccountRef")), -amount, "")]
    elif entity == "JournalEntry":
        for line in record.get("Line", []):
            detail = line.get("JournalEntryLineDetail") or {}
            sign = 1 if detail.get("PostingType") == "Debit" else -1
            lines.append((_ref(detail.get("AccountRef")), sign * _amount(line), str(line.get("Description", ""))))
    return [Posting(entity, txn_id, date, doc, account, round(amount + 0.0, 2), name_type, name_id, memo)
            for account, amount, memo in lines if account and round(amount, 2) != 0]
