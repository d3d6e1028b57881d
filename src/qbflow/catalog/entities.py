"""What QuickBooks Online *is*: its entities, as plain data.

One table drives the sandbox (what it accepts and computes), the client (URLs, operations) and the
connector (triggers and actions). Facts come from Intuit's XSD schemas and API reference; the
sources are listed in the project's docs (docs/qbo.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Kind(StrEnum):
    NAME_LIST = "name_list"  # deactivated (Active=false), never deleted
    TRANSACTION = "transaction"  # deletable; carries lines and amounts
    SETTINGS = "settings"  # one per company (CompanyInfo, Preferences)
    ATTACHMENT = "attachment"  # Attachable: deletable, not a transaction
    TEMPLATE = "template"  # RecurringTransaction: a transaction kept as a schedule, wrapped in its type's name
    RATE = "rate"  # ExchangeRate: one per currency and date, no Id; read by currency, "updated" to set


class Op(StrEnum):
    CREATE = "create"
    READ = "read"
    UPDATE = "update"
    DELETE = "delete"
    VOID = "void"
    SEND = "send"
    PDF = "pdf"
    QUERY = "query"
    CDC = "cdc"


class Party(StrEnum):
    """Which side of the books a transaction's counterparty sits on."""

    CUSTOMER = "customer"
    VENDOR = "vendor"
    NONE = "none"


# Void is spelled two ways on the wire: Invoice has its own operation, the others are a sparse update.
VOID_OPERATION = "operation=void"
VOID_INCLUDE = "include=void"

NAME_LIST_OPS = frozenset({Op.CREATE, Op.READ, Op.UPDATE, Op.QUERY, Op.CDC})
TXN_OPS = frozenset({Op.CREATE, Op.READ, Op.UPDATE, Op.DELETE, Op.QUERY, Op.CDC})


@dataclass(frozen=True)
class EntityDef:
    """One QBO entity and what the API lets you do with it."""

    name: str  # wire name, e.g. "PurchaseOrder"
    title: str  # human name, e.g. "Purchase Order"
    kind: Kind
    operations: frozenset[Op]
    # Fields required on create; an inner tuple means "at least one of these".
    required: tuple[str | tuple[str, ...], ...] = ()
    # Top-level reference fields and the entity (or entities) they must point at.
    refs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Line DetailTypes this entity accepts (transactions only).
    line_types: tuple[str, ...] = ()
    void_style: str | None = None
    name_field: str | None = None  # DisplayName / Name for name lists
    doc_number: bool = False  # the server assigns DocNumber when the client gives none
    party: Party = Party.NONE
    # Extra filterable fields beyond Id, MetaData.* (XSD "Filterable" annotations).
    filterable: frozenset[str] = frozenset()
    # Has an open balance that payments reduce (Invoice, Bill, VendorCredit...).
    has_balance: bool = False
    # Number of days to due date when the client gives none (from the sales/bill term default).
    due_days: int | None = None
    # The JSON key of its answers when it differs from the name used in URLs and queries: Intuit's
    # CreditCardPayment endpoint answers {"CreditCardPaymentTxn": {...}} (API reference samples).
    wire_key: str | None = None
    # Served only when Preferences.CurrencyPrefs.MultiCurrencyEnabled is true.
    multicurrency: bool = False

    @property
    def key(self) -> str:
        """The JSON key of a record of this entity in answers (`CreditCardPaymentTxn` for CreditCardPayment)."""
        return self.wire_key or self.name

    @property
    def path(self) -> str:
        """URL segment: the lower-cased entity name (`/v3/company/{realm}/purchaseorder`)."""
        return self.name.lower()

    def supports(self, op: Op) -> bool:
        return op in self.operations


_TXN_FILTERS = frozenset({"DocNumber", "TxnDate", "PrivateNote"})
_SALES_FILTERS = _TXN_FILTERS | {"CustomerRef", "DueDate", "TotalAmt", "Balance", "EmailStatus"}
_NAME_FILTERS = frozenset(
    {"DisplayName", "GivenName", "MiddleName", "FamilyName", "Active", "CompanyName", "PrimaryEmailAddr",
     "PrintOnCheckName", "FullyQualifiedName", "Title", "Suffix"}
)
_SALES_LINES = ("SalesItemLineDetail", "GroupLineDetail", "DescriptionOnly", "DiscountLineDetail",
                "SubTotalLineDetail")
_EXPENSE_LINES = ("ItemBasedExpenseLineDetail", "AccountBasedExpenseLineDetail")
_SEND_PDF = frozenset({Op.SEND, Op.PDF})


def _sales(name: str, title: str, *, extra_ops: frozenset[Op] = frozenset(), **kw) -> EntityDef:
    return EntityDef(
        name=name, title=title, kind=Kind.TRANSACTION, operations=TXN_OPS | extra_ops,
        refs={"CustomerRef": ("Customer",), "DepositToAccountRef": ("Account",), "SalesTermRef": ("Term",),
              "ClassRef": ("Class",), "DepartmentRef": ("Department",),
              "PaymentMethodRef": ("PaymentMethod",)},
        line_types=_SALES_LINES, doc_number=True, party=Party.CUSTOMER, filterable=_SALES_FILTERS, **kw,
    )


ENTITIES: dict[str, EntityDef] = {
    e.name: e
    for e in [
        # --- name lists -------------------------------------------------------------------------
        EntityDef("Account", "Account", Kind.NAME_LIST, NAME_LIST_OPS,
                  required=("Name", ("AccountType", "AccountSubType")),
                  refs={"ParentRef": ("Account",)}, name_field="Name",
                  filterable=frozenset({"Name", "Active", "Classification", "AccountType", "AccountSubType",
                                        "FullyQualifiedName", "CurrentBalance", "SubAccount"})),
        EntityDef("Customer", "Customer", Kind.NAME_LIST, NAME_LIST_OPS,
                  required=(("DisplayName", "Title", "GivenName", "MiddleName", "FamilyName", "Suffix"),),
                  refs={"ParentRef": ("Customer",), "SalesTermRef": ("Term",),
                        "PaymentMethodRef": ("PaymentMethod",), "DefaultTaxCodeRef": ("TaxCode",)},
                  name_field="DisplayName", filterable=_NAME_FILTERS | {"Balance", "Job"}),
        EntityDef("Vendor", "Vendor", Kind.NAME_LIST, NAME_LIST_OPS,
                  required=(("DisplayName", "Title", "GivenName", "MiddleName", "FamilyName", "Suffix"),),
                  refs={"TermRef": ("Term",), "APAccountRef": ("Account",)},
                  name_field="DisplayName", filterable=_NAME_FILTERS | {"Balance", "Vendor1099"}),
        EntityDef("Employee", "Employee", Kind.NAME_LIST, NAME_LIST_OPS,
                  required=(("DisplayName", "Title", "GivenName", "MiddleName", "FamilyName", "Suffix"),),
                  name_field="DisplayName", filterable=_NAME_FILTERS),
        EntityDef("Item", "Product", Kind.NAME_LIST, NAME_LIST_OPS,
                  required=("Name",),
                  refs={"IncomeAccountRef": ("Account",), "ExpenseAccountRef": ("Account",),
                        "AssetAccountRef": ("Account",), "ParentRef": ("Item",)},
                  name_field="Name",
                  filterable=frozenset({"Name", "Sku", "Description", "Active", "UnitPrice", "Type",
                                        "FullyQualifiedName", "QtyOnHand"})),
        EntityDef("Term", "Term", Kind.NAME_LIST, NAME_LIST_OPS, required=("Name",), name_field="Name",
                  filterable=frozenset({"Name", "Active", "DueDays", "Type"})),
        EntityDef("TaxCode", "Tax Code", Kind.NAME_LIST, frozenset({Op.READ, Op.QUERY}), name_field="Name",
                  filterable=frozenset({"Name", "Active", "Taxable"})),
        EntityDef("TaxRate", "Tax Rate", Kind.NAME_LIST, frozenset({Op.READ, Op.QUERY}), name_field="Name",
                  filterable=frozenset({"Name", "Active", "RateValue"})),
        EntityDef("PaymentMethod", "Payment Method", Kind.NAME_LIST, NAME_LIST_OPS, required=("Name",),
                  name_field="Name", filterable=frozenset({"Name", "Active", "Type"})),
        EntityDef("Class", "Class", Kind.NAME_LIST, NAME_LIST_OPS, required=("Name",),
                  refs={"ParentRef": ("Class",)}, name_field="Name",
                  filterable=frozenset({"Name", "Active", "FullyQualifiedName"})),
        EntityDef("Department", "Department", Kind.NAME_LIST, NAME_LIST_OPS, required=("Name",),
                  refs={"ParentRef": ("Department",)}, name_field="Name",
                  filterable=frozenset({"Name", "Active", "FullyQualifiedName"})),
        EntityDef("Budget", "Budget", Kind.NAME_LIST, frozenset({Op.READ, Op.QUERY, Op.CDC}), name_field="Name",
                  filterable=frozenset({"Name", "Active", "StartDate", "EndDate", "BudgetType"})),
        EntityDef("TaxAgency", "Tax Agency", Kind.NAME_LIST, frozenset({Op.CREATE, Op.READ, Op.QUERY, Op.CDC}),
                  required=("DisplayName",), name_field="DisplayName",
                  filterable=frozenset({"DisplayName", "Active", "TaxTrackedOnSales", "TaxTrackedOnPurchases"})),
        EntityDef("CompanyCurrency", "Currency", Kind.NAME_LIST, NAME_LIST_OPS, required=("Code",), name_field="Code",
                  multicurrency=True, filterable=frozenset({"Code", "Name", "Active"})),
        # --- sales transactions ------------------------------------------------------------------
        _sales("Invoice", "Invoice", required=("CustomerRef", "Line"), has_balance=True, due_days=30,
               void_style=VOID_OPERATION, extra_ops=_SEND_PDF | {Op.VOID}),
        _sales("Estimate", "Estimate", required=("CustomerRef", "Line"), extra_ops=_SEND_PDF),
        _sales("SalesReceipt", "Sales Receipt", required=("Line",), void_style=VOID_INCLUDE,
               extra_ops=_SEND_PDF | {Op.VOID}),
        _sales("CreditMemo", "Credit Memo", required=("CustomerRef", "Line"), extra_ops=_SEND_PDF),
        _sales("RefundReceipt", "Refund Receipt", required=("Line", "DepositToAccountRef"),
               extra_ops=_SEND_PDF),
        EntityDef("Payment", "Payment", Kind.TRANSACTION, TXN_OPS | {Op.VOID},
                  required=("CustomerRef", "TotalAmt"),
                  refs={"CustomerRef": ("Customer",), "DepositToAccountRef": ("Account",),
                        "ARAccountRef": ("Account",), "PaymentMethodRef": ("PaymentMethod",)},
                  void_style=VOID_INCLUDE, party=Party.CUSTOMER,
                  filterable=_TXN_FILTERS | {"CustomerRef", "TotalAmt", "UnappliedAmt"}),
        EntityDef("Deposit", "Deposit", Kind.TRANSACTION, TXN_OPS,
                  required=("DepositToAccountRef", "Line"), refs={"DepositToAccountRef": ("Account",)},
                  line_types=("DepositLineDetail",), filterable=_TXN_FILTERS | {"TotalAmt"}),
        # --- purchases ---------------------------------------------------------------------------
        EntityDef("Bill", "Bill", Kind.TRANSACTION, TXN_OPS, required=("VendorRef", "Line"),
                  refs={"VendorRef": ("Vendor",), "APAccountRef": ("Account",), "SalesTermRef": ("Term",)},
                  line_types=_EXPENSE_LINES, party=Party.VENDOR, has_balance=True, due_days=30,
                  filterable=_TXN_FILTERS | {"VendorRef", "DueDate", "TotalAmt", "Balance"}),
        EntityDef("BillPayment", "Bill Payment", Kind.TRANSACTION, TXN_OPS | {Op.VOID},
                  required=("VendorRef", "PayType", "TotalAmt", "Line"), refs={"VendorRef": ("Vendor",)},
                  void_style=VOID_INCLUDE, party=Party.VENDOR,
                  filterable=_TXN_FILTERS | {"VendorRef", "TotalAmt", "PayType"}),
        EntityDef("Purchase", "Expense", Kind.TRANSACTION, TXN_OPS,
                  required=("PaymentType", "AccountRef", "Line"),
                  refs={"AccountRef": ("Account",), "EntityRef": ("Customer", "Vendor", "Employee"),
                        "PaymentMethodRef": ("PaymentMethod",)},
                  line_types=_EXPENSE_LINES,
                  filterable=_TXN_FILTERS | {"PaymentType", "Credit", "TotalAmt", "EntityRef", "AccountRef"}),
        EntityDef("PurchaseOrder", "Purchase Order", Kind.TRANSACTION, TXN_OPS | _SEND_PDF,
                  required=("VendorRef", "Line"),
                  refs={"VendorRef": ("Vendor",), "APAccountRef": ("Account",)},
                  line_types=_EXPENSE_LINES, doc_number=True, party=Party.VENDOR,
                  filterable=_TXN_FILTERS | {"VendorRef", "TotalAmt", "POStatus"}),
        EntityDef("VendorCredit", "Vendor Credit", Kind.TRANSACTION, TXN_OPS, required=("VendorRef", "Line"),
                  refs={"VendorRef": ("Vendor",), "APAccountRef": ("Account",)},
                  line_types=_EXPENSE_LINES, party=Party.VENDOR, has_balance=True,
                  filterable=_TXN_FILTERS | {"VendorRef", "TotalAmt", "Balance"}),
        EntityDef("JournalEntry", "Journal Entry", Kind.TRANSACTION, TXN_OPS, required=("Line",),
                  line_types=("JournalEntryLineDetail", "DescriptionOnly"),
                  filterable=_TXN_FILTERS | {"TotalAmt", "Adjustment"}),
        # --- time, money moved between accounts ---------------------------------------------------
        EntityDef("TimeActivity", "Time Activity", Kind.TRANSACTION, TXN_OPS, required=("NameOf",),
                  refs={"EmployeeRef": ("Employee",), "VendorRef": ("Vendor",), "CustomerRef": ("Customer",),
                        "ItemRef": ("Item",), "ClassRef": ("Class",), "DepartmentRef": ("Department",)},
                  filterable=frozenset({"TxnDate", "NameOf", "EmployeeRef", "VendorRef", "CustomerRef",
                                        "BillableStatus", "ItemRef"})),
        EntityDef("Transfer", "Transfer", Kind.TRANSACTION, TXN_OPS,
                  required=("FromAccountRef", "ToAccountRef", "Amount"),
                  refs={"FromAccountRef": ("Account",), "ToAccountRef": ("Account",), "ClassRef": ("Class",),
                        "DepartmentRef": ("Department",)},
                  filterable=_TXN_FILTERS | {"Amount", "FromAccountRef", "ToAccountRef"}),
        EntityDef("CreditCardPayment", "Credit Card Payment", Kind.TRANSACTION, TXN_OPS,
                  required=("CreditCardAccountRef", "Amount", "BankAccountRef"),
                  refs={"CreditCardAccountRef": ("Account",), "BankAccountRef": ("Account",), "VendorRef": ("Vendor",)},
                  wire_key="CreditCardPaymentTxn", filterable=_TXN_FILTERS | {"Amount", "VendorRef"}),
        EntityDef("RecurringTransaction", "Recurring Transaction", Kind.TEMPLATE,
                  frozenset({Op.CREATE, Op.READ, Op.UPDATE, Op.DELETE, Op.QUERY, Op.CDC}),
                  filterable=frozenset({"Type", "RecurDataRef"})),
        # --- the rest ----------------------------------------------------------------------------
        EntityDef("Attachable", "Attachment", Kind.ATTACHMENT,
                  frozenset({Op.CREATE, Op.READ, Op.UPDATE, Op.DELETE, Op.QUERY, Op.CDC}),
                  required=(("FileName", "Note"),),
                  filterable=frozenset({"FileName", "Note", "ContentType", "Category",
                                        "AttachableRef.EntityRef.Type", "AttachableRef.EntityRef.value",
                                        "AttachableRef.EntityRef"})),
        EntityDef("CompanyInfo", "Company Info", Kind.SETTINGS, frozenset({Op.READ, Op.UPDATE, Op.QUERY}),
                  filterable=frozenset({"CompanyName"})),
        EntityDef("Preferences", "Preferences", Kind.SETTINGS, frozenset({Op.READ, Op.UPDATE, Op.QUERY})),
        EntityDef("ExchangeRate", "Exchange Rate", Kind.RATE, frozenset({Op.READ, Op.UPDATE, Op.QUERY}),
                  multicurrency=True, filterable=frozenset({"SourceCurrencyCode", "AsOfDate"})),
    ]
}

BY_PATH: dict[str, EntityDef] = {e.path: e for e in ENTITIES.values()}

# The transaction types a RecurringTransaction can wrap (Intuit's RecurringTransaction reference).
RECURRING_TYPES = ("Bill", "Purchase", "CreditMemo", "Deposit", "Estimate", "Invoice", "JournalEntry",
                   "RefundReceipt", "SalesReceipt", "Transfer", "VendorCredit", "PurchaseOrder")

# What a line of a US company's transaction carries as TaxCodeRef: the pseudo-codes "TAX" and "NON", never
# a TaxCode Id (the code with its rates goes in TxnTaxDetail.TxnTaxCodeRef). A TaxCode query returns only
# the company's own codes, not these two.
US_LINE_TAX_CODES = ("TAX", "NON")

# Properties a query may name beyond an entity's XSD fields (RecurringTransaction's reference lists Type).
QUERY_EXTRA: dict[str, frozenset[str]] = {"RecurringTransaction": frozenset({"Type", "RecurDataRef", "RecurringInfo"})}

# Line detail types: which references each may carry, and whether the line counts toward TotalAmt.
LINE_REFS: dict[str, dict[str, tuple[str, ...]]] = {
    "SalesItemLineDetail": {"ItemRef": ("Item",), "ClassRef": ("Class",)},
    "ItemBasedExpenseLineDetail": {"ItemRef": ("Item",), "CustomerRef": ("Customer",), "ClassRef": ("Class",)},
    "AccountBasedExpenseLineDetail": {"AccountRef": ("Account",), "CustomerRef": ("Customer",),
                                      "ClassRef": ("Class",)},
    "JournalEntryLineDetail": {"AccountRef": ("Account",), "ClassRef": ("Class",),
                               "DepartmentRef": ("Department",)},
    "DepositLineDetail": {"AccountRef": ("Account",), "PaymentMethodRef": ("PaymentMethod",),
                          "Entity": ("Customer", "Vendor", "Employee")},
    "DiscountLineDetail": {"DiscountAccountRef": ("Account",)},
    "GroupLineDetail": {"GroupItemRef": ("Item",)},
    "DescriptionOnly": {},
    "SubTotalLineDetail": {},
}

# Names that must be unique across Customer, Vendor and Employee together (Fault 6240).
SHARED_NAME_ENTITIES = frozenset({"Customer", "Vendor", "Employee"})

# Account types and the classification QBO derives from each (AccountTypeEnum in Finance.xsd).
ACCOUNT_CLASSIFICATION: dict[str, str] = {
    "Bank": "Asset", "Other Current Asset": "Asset", "Fixed Asset": "Asset", "Other Asset": "Asset",
    "Accounts Receivable": "Asset",
    "Equity": "Equity",
    "Expense": "Expense", "Other Expense": "Expense", "Cost of Goods Sold": "Expense",
    "Accounts Payable": "Liability", "Credit Card": "Liability", "Long Term Liability": "Liability",
    "Other Current Liability": "Liability",
    "Income": "Revenue", "Other Income": "Revenue",
}

# The sub type QBO picks when a client gives only AccountType.
DEFAULT_ACCOUNT_SUBTYPE: dict[str, str] = {
    "Bank": "CashOnHand", "Other Current Asset": "OtherCurrentAssets", "Fixed Asset": "OtherFixedAssets",
    "Other Asset": "OtherLongTermAssets", "Accounts Receivable": "AccountsReceivable",
    "Equity": "OwnersEquity", "Expense": "OtherMiscellaneousServiceCost",
    "Other Expense": "OtherMiscellaneousExpense", "Cost of Goods Sold": "SuppliesMaterialsCogs",
    "Accounts Payable": "AccountsPayable", "Credit Card": "CreditCard",
    "Long Term Liability": "OtherLongTermLiabilities", "Other Current Liability": "OtherCurrentLiabilities",
    "Income": "ServiceFeeIncome", "Other Income": "OtherMiscellaneousIncome",
}

ITEM_TYPES = frozenset({"Inventory", "Service", "NonInventory", "Group", "Category"})
PAYMENT_TYPES = frozenset({"Cash", "Check", "CreditCard"})

# Entities Intuit's CDC endpoint does not serve.
NO_CDC = frozenset(e.name for e in ENTITIES.values() if not e.supports(Op.CDC))

_BY_LOWER: dict[str, EntityDef] = {e.name.lower(): e for e in ENTITIES.values()}


def entity(name: str) -> EntityDef:
    """The entity called `name` (wire spelling), or KeyError."""
    return ENTITIES[name]


def entity_named(name: str) -> EntityDef | None:
    """The entity called `name` whatever its case (`invoice`, `Invoice`, `INVOICE`), as Intuit matches names
    in URLs, in a query's FROM and in CDC's `entities`; None if there is none."""
    return _BY_LOWER.get(str(name).lower())
