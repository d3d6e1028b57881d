"""The standard actions, generated from the catalog: one row per entity, not one module per action.

A row (`EntityActions`) names an entity of `qbflow.catalog`, the operations offered on it, and the input
fields a person fills in, each with the QBO property it becomes. From a row come:

    create_X      the fields (required where the catalog says the property is) -> POST; its `created_lookup`
                  recognises what an earlier attempt made by the body it sends (`lookup.find_created`)
    update_X      the same fields, all optional, plus `id` and `sync_token`: a sparse update of what was
                  given. With the SyncToken the trigger gave (`{{ trigger.SyncToken }}`) it is one request;
                  without, the action reads it first. Either way, if the record changed meanwhile
                  (StaleObject, 5010) it reads the record again and sends the same changes once more
    get_X         by Id
    delete_X      transactions only (name lists are deactivated: deactivate_X)
    find_X        friendly filters (name, email, doc number, date range, customer/vendor), paged
    void_X / send_X / get_X_pdf   where the catalog says the entity supports it

Every create/update input also takes `extra`, raw QBO properties merged into the body (the escape hatch);
its keys are checked against the catalog's FIELDS so a typo is refused before QBO is called.
"""

from __future__ import annotations

import base64
import difflib
import json
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, Field, StringConstraints, create_model, field_validator, model_validator

from qbflow.catalog.entities import ENTITIES, Kind, Op
from qbflow.catalog.fields import IGNORED, known_fields, unknown_fields
from qbflow.connector.base import PATTERN_TEXT, Action, ActionContext, ActionInput, CreatedLookup, FieldError
from qbflow.connector.refs import ID_PATTERN, RefValue, ref_description, resolve_ref
from qbflow.qbo.errors import StaleObject
from qbflow.qbo.query import MAX_PAGE, Query, like_contains

__all__ = [
    "ROWS",
    "Address",
    "EntityActions",
    "ExpenseLine",
    "InputField",
    "PaymentApplication",
    "SalesLine",
    "build_body",
    "created_lookup",
    "entity_key",
    "generate",
    "row",
]

# --- value types --------------------------------------------------------------------------------------------
Text = Annotated[str, StringConstraints(min_length=1, max_length=4000)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=500)]
DocNumber = Annotated[str, StringConstraints(min_length=1, max_length=21)]
_EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
PATTERN_TEXT[_EMAIL_PATTERN] = "an email address, e.g. name@example.com"
RecordId = Annotated[str, StringConstraints(pattern=ID_PATTERN),
                     Field(description="The record's QuickBooks Id (digits), e.g. \"145\".")]
_SYNC_TOKEN_PATTERN = r"^[0-9]{1,10}$"
PATTERN_TEXT[_SYNC_TOKEN_PATTERN] = "a SyncToken: digits only, e.g. \"3\""
SyncToken = Annotated[str, StringConstraints(pattern=_SYNC_TOKEN_PATTERN)]
Email = Annotated[str, StringConstraints(pattern=_EMAIL_PATTERN, max_length=100)]
# Money and quantities: finite, and within what QBO stores (15 digits before the point).
Amount = Annotated[float, Field(allow_inf_nan=False, ge=-1e12, le=1e12)]
PositiveAmount = Annotated[float, Field(allow_inf_nan=False, ge=0, le=1e12)]
T = TypeVar("T")
Lines = Annotated[list[T], Field(min_length=1, max_length=1000)]


def _a(noun: str) -> str:
    """The noun with its indefinite article: "an invoice", "a bill"."""
    return f"an {noun}" if noun[:1].lower() in "aeiou" else f"a {noun}"


class Address(ActionInput):
    """A postal address."""

    line1: ShortText | None = Field(None, description="Street address, first line.")
    line2: ShortText | None = Field(None, description="Street address, second line.")
    city: ShortText | None = Field(None, description="City.")
    state: ShortText | None = Field(None, description="State, province or region (code or name), e.g. \"CA\".")
    postal_code: ShortText | None = Field(None, description="Postal or ZIP code.")
    country: ShortText | None = Field(None, description="Country.")

    def to_qbo(self) -> dict:
        names = {"line1": "Line1", "line2": "Line2", "city": "City", "state": "CountrySubDivisionCode",
                 "postal_code": "PostalCode", "country": "Country"}
        return {qbo: getattr(self, name) for name, qbo in names.items() if getattr(self, name) is not None}


class SalesLine(ActionInput):
    """A line of a sales form: a product or service with an amount, or a description alone."""

    item: RefValue | None = Field(None, description=ref_description(("Item",), "The product or service sold."))
    description: Text | None = Field(None, description="What the customer sees on the line.")
    qty: Amount | None = Field(None, description="Quantity.")
    unit_price: Amount | None = Field(None, description="Price of one unit.")
    amount: Amount | None = Field(None, description="Line total; computed as qty x unit_price when left out.")
    service_date: date | None = Field(None, description="When the service was performed (YYYY-MM-DD).")

    @model_validator(mode="after")
    def _amount_or_description(self) -> SalesLine:
        priced = self.amount is not None or (self.qty is not None and self.unit_price is not None)
        if not priced and (self.item is not None or self.qty is not None or self.unit_price is not None):
            raise FieldError("amount", "required: give amount, or qty and unit_price")
        if not priced and self.description is None:
            raise FieldError("amount", "give amount (or qty and unit_price) and an item, or a description for "
                                       "a text-only line")
        return self


class ExpenseLine(ActionInput):
    """A line of a purchase: an expense category (account) or a product bought (item), with an amount."""

    account: RefValue | None = Field(None, description=ref_description(
        ("Account",), "The expense category (account); give this or item."))
    item: RefValue | None = Field(None, description=ref_description(
        ("Item",), "The product or service bought; give this or account."))
    description: Text | None = Field(None, description="Line description.")
    qty: Amount | None = Field(None, description="Quantity (item lines).")
    unit_price: Amount | None = Field(None, description="Cost of one unit (item lines).")
    amount: Amount | None = Field(None, description="Line total; computed as qty x unit_price for item lines "
                                                    "when left out.")
    customer: RefValue | None = Field(None, description=ref_description(
        ("Customer",), "The customer this cost is for (billable expenses)."))
    billable: bool | None = Field(None, description="Bill this cost on to the customer.")

    @model_validator(mode="after")
    def _account_or_item(self) -> ExpenseLine:
        if (self.account is None) == (self.item is None):
            raise FieldError("account", "give exactly one of account (an expense category) or item")
        if self.amount is None and not (self.item is not None and self.qty is not None
                                        and self.unit_price is not None):
            raise FieldError("amount", "required (or, for an item line, qty and unit_price)")
        if self.account is not None and (self.qty is not None or self.unit_price is not None):
            raise FieldError("qty", "qty and unit_price are for item lines; an account line takes amount")
        return self


class PaymentApplication(ActionInput):
    """An invoice the payment pays, and how much of it."""

    invoice_id: RecordId = Field(description="The Id of the invoice paid.")
    amount: PositiveAmount | None = Field(None, description="How much of the payment goes to this invoice; "
                                                            "the invoice's open balance when left out.")


# --- fields and rows ----------------------------------------------------------------------------------------
Builder = Callable[[ActionContext, str, Any], Awaitable[Any]]


@dataclass(frozen=True)
class InputField:
    """One input field of an entity's create/update form and the QBO property it fills.

    `qbo` is a dotted path into the body ("PrimaryEmailAddr.Address"). `targets` makes it a reference
    resolved by `refs.resolve_ref`; `build` converts values that need more (lines); `match` converts them
    for finding a record made earlier (`build_body(..., for_lookup=True)`) when `build` reads something
    the create itself changes. `required` None means "as the catalog says" (required on create when the
    top-level property is in the entity's `required`). `also` are constant properties set with it (a
    parent customer makes a sub-customer: Job = true).
    """

    name: str
    qbo: str
    type: Any
    description: str
    targets: tuple[str, ...] = ()
    required: bool | None = None
    build: Builder | None = None
    also: dict[str, Any] = field(default_factory=dict)
    match: Builder | None = None

    @property
    def property(self) -> str:
        return self.qbo.split(".", 1)[0]


@dataclass(frozen=True)
class EntityActions:
    """One catalog entity and the actions generated for it."""

    entity: str  # wire name ("Purchase")
    offers: frozenset[str]  # create / update / get / delete / find / deactivate / void / send / pdf
    fields: tuple[InputField, ...] = ()
    # Groups of input fields of which a create needs at least one (beyond the catalog's own groups).
    one_of: tuple[tuple[str, ...], ...] = ()
    # Fills in what can be derived from the rest of the body (a payment's total from its lines).
    finish: Callable[[dict], None] | None = None

    @property
    def definition(self):
        return ENTITIES[self.entity]

    @property
    def title(self) -> str:
        return self.definition.title

    @property
    def key(self) -> str:
        return entity_key(self.entity)

    def field(self, name: str) -> InputField:
        return next(f for f in self.fields if f.name == name)


def entity_key(entity: str) -> str:
    """The snake_case noun of an entity in action keys, from its catalog title ("Purchase" -> "expense")."""
    return re.sub(r"[^a-z0-9]+", "_", ENTITIES[entity].title.lower()).strip("_")


def _plural(title: str) -> str:
    if title.endswith("y") and title[-2:-1] not in "aeiou":
        return title[:-1] + "ies"
    return title + "s"


# --- converters ---------------------------------------------------------------------------------------------
def _set(body: dict, path: str, value: Any) -> None:
    parts = path.split(".")
    for part in parts[:-1]:
        body = body.setdefault(part, {})
    body[parts[-1]] = value


def _plain(value: Any) -> Any:
    if isinstance(value, Address):
        return value.to_qbo()
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, BaseModel):
        return value.model_dump(exclude_none=True)
    return value


def _line_amount(amount: float | None, qty: float | None, unit_price: float | None) -> float:
    """A line's total: the amount given, else qty x unit_price (the line's validator made sure of one)."""
    if amount is not None:
        return amount
    assert qty is not None and unit_price is not None, "checked by the line's validator"
    return round(qty * unit_price, 2)


async def _sales_lines(ctx: ActionContext, name: str, lines: list[SalesLine]) -> list[dict]:
    out: list[dict] = []
    for index, line in enumerate(lines):
        priced = line.amount is not None or (line.qty is not None and line.unit_price is not None)
        if not priced:
            out.append({"DetailType": "DescriptionOnly", "Description": line.description,
                        "DescriptionLineDetail": {}})
            continue
        detail: dict[str, Any] = {}
        if line.item is not None:
            detail["ItemRef"] = await resolve_ref(ctx, f"{name}[{index}].item", ("Item",), line.item)
        if line.qty is not None:
            detail["Qty"] = line.qty
        if line.unit_price is not None:
            detail["UnitPrice"] = line.unit_price
        if line.service_date is not None:
            detail["ServiceDate"] = line.service_date.isoformat()
        amount = _line_amount(line.amount, line.qty, line.unit_price)
        wire: dict[str, Any] = {"Amount": amount, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": detail}
        if line.description is not None:
            wire["Description"] = line.description
        out.append(wire)
    return out


async def _expense_lines(ctx: ActionContext, name: str, lines: list[ExpenseLine]) -> list[dict]:
    out = []
    for index, line in enumerate(lines):
        detail: dict[str, Any] = {}
        if line.account is not None:
            detail_type = "AccountBasedExpenseLineDetail"
            detail["AccountRef"] = await resolve_ref(ctx, f"{name}[{index}].account", ("Account",), line.account)
        else:
            detail_type = "ItemBasedExpenseLineDetail"
            assert line.item is not None, "account or item (the line's validator)"
            detail["ItemRef"] = await resolve_ref(ctx, f"{name}[{index}].item", ("Item",), line.item)
            if line.qty is not None:
                detail["Qty"] = line.qty
            if line.unit_price is not None:
                detail["UnitPrice"] = line.unit_price
        if line.customer is not None:
            detail["CustomerRef"] = await resolve_ref(ctx, f"{name}[{index}].customer", ("Customer",),
                                                      line.customer)
        if line.billable is not None:
            detail["BillableStatus"] = "Billable" if line.billable else "NotBillable"
        amount = _line_amount(line.amount, line.qty, line.unit_price)
        wire: dict[str, Any] = {"Amount": amount, "DetailType": detail_type, detail_type: detail}
        if line.description is not None:
            wire["Description"] = line.description
        out.append(wire)
    return out


async def _payment_lines(ctx: ActionContext, name: str, applications: list[PaymentApplication]) -> list[dict]:
    out = []
    for application in applications:
        amount = application.amount
        if amount is None:
            invoice = await ctx.qbo.get("Invoice", application.invoice_id)
            amount = float(invoice.get("Balance", 0))
        out.append({"Amount": amount,
                    "LinkedTxn": [{"TxnId": application.invoice_id, "TxnType": "Invoice"}]})
    return out


async def _payment_lines_known(ctx: ActionContext, name: str, applications: list[PaymentApplication]) -> list[dict]:
    """The payment's lines for finding it once made: an amount left out was the invoice's balance *then*,
    which paying it changed, so it is left out here too."""
    return [{**({"Amount": a.amount} if a.amount is not None else {}),
             "LinkedTxn": [{"TxnId": a.invoice_id, "TxnType": "Invoice"}]} for a in applications]


def _payment_total(body: dict) -> None:
    lines = body.get("Line")
    if "TotalAmt" not in body and lines and all("Amount" in line for line in lines):
        body["TotalAmt"] = round(sum(float(line["Amount"]) for line in lines), 2)


# --- field sets ---------------------------------------------------------------------------------------------
def _f(name: str, qbo: str, type_: Any, description: str, **kw: Any) -> InputField:
    return InputField(name, qbo, type_, description, **kw)


def _ref(name: str, qbo: str, targets: tuple[str, ...], what: str, **kw: Any) -> InputField:
    return InputField(name, qbo, RefValue, ref_description(targets, what), targets=targets, **kw)


def _person_fields(entity: str) -> tuple[InputField, ...]:
    noun = ENTITIES[entity].title.lower()
    return (
        _f("display_name", "DisplayName", ShortText,
           f"The {noun}'s name as shown in lists; unique among customers, vendors and employees. Built from the "
           f"name parts when left out (give display_name or given_name/family_name)."),
        _f("title", "Title", ShortText, "Title, e.g. \"Mrs.\""),
        _f("given_name", "GivenName", ShortText, "First name."),
        _f("middle_name", "MiddleName", ShortText, "Middle name."),
        _f("family_name", "FamilyName", ShortText, "Last name."),
        _f("suffix", "Suffix", ShortText, "Suffix, e.g. \"Jr.\""),
        _f("company_name", "CompanyName", ShortText, "Company name."),
        _f("email", "PrimaryEmailAddr.Address", Email, "Primary email address."),
        _f("phone", "PrimaryPhone.FreeFormNumber", ShortText, "Primary phone number."),
        _f("mobile", "Mobile.FreeFormNumber", ShortText, "Mobile phone number."),
        _f("website", "WebAddr.URI", ShortText, "Website address."),
        _f("billing_address", "BillAddr", Address, "Billing address."),
        _f("notes", "Notes", Text, "Free-form notes."),
    )


_CUSTOMER_FIELDS = (
    *_person_fields("Customer"),
    _f("shipping_address", "ShipAddr", Address, "Shipping address."),
    _ref("parent", "ParentRef", ("Customer",), "Makes this a sub-customer (job) of another customer.",
         also={"Job": True}),
    _ref("terms", "SalesTermRef", ("Term",), "Default payment terms, e.g. \"Net 30\"."),
    _ref("payment_method", "PaymentMethodRef", ("PaymentMethod",), "Preferred payment method, e.g. \"Check\"."),
    _f("taxable", "Taxable", bool, "Whether sales to this customer are taxable."),
)

_VENDOR_FIELDS = (
    *_person_fields("Vendor"),
    _f("account_number", "AcctNum", ShortText, "Your account number with this vendor."),
    _f("tax_id", "TaxIdentifier", ShortText, "The vendor's tax identification number (for 1099s)."),
    _ref("terms", "TermRef", ("Term",), "Default payment terms, e.g. \"Net 30\"."),
    _f("track_1099", "Vendor1099", bool, "Track payments to this vendor for 1099 reporting."),
)

_TXN_COMMON = (
    _f("txn_date", "TxnDate", date, "Transaction date (YYYY-MM-DD); today when left out."),
    _f("doc_number", "DocNumber", DocNumber, "Reference number shown on the form; QuickBooks numbers sales "
                                             "forms itself when left out."),
    _f("private_note", "PrivateNote", Text, "Memo for your own records; not shown to the customer or vendor."),
)


def _sales_fields(entity: str, *, customer_what: str = "The customer.") -> tuple[InputField, ...]:
    definition = ENTITIES[entity]
    fields = [
        _ref("customer", "CustomerRef", ("Customer",), customer_what),
        _f("lines", "Line", Lines[SalesLine], "The products and services, at least one line.", build=_sales_lines),
        *_TXN_COMMON,
        _f("email", "BillEmail.Address", Email, "Where the form is emailed (Send); the customer's email when "
                                                "left out."),
        _f("customer_memo", "CustomerMemo.value", Text, "Message shown to the customer on the form."),
        _f("billing_address", "BillAddr", Address, "Billing address; the customer's when left out."),
        _f("shipping_address", "ShipAddr", Address, "Shipping address; the customer's when left out."),
    ]
    if definition.has_balance:  # Invoice: due date and terms
        fields += [
            _f("due_date", "DueDate", date, "Due date (YYYY-MM-DD); from the terms when left out."),
            _ref("terms", "SalesTermRef", ("Term",), "Payment terms, e.g. \"Net 30\"."),
        ]
    if entity in ("SalesReceipt", "RefundReceipt"):
        what = ("The account the refund is paid from." if entity == "RefundReceipt"
                else "The account the money goes to (Undeposited Funds when left out).")
        fields += [
            _ref("deposit_to_account", "DepositToAccountRef", ("Account",), what),
            _ref("payment_method", "PaymentMethodRef", ("PaymentMethod",), "Payment method, e.g. \"Visa\"."),
        ]
    if entity == "Estimate":
        fields.append(_f("expiration_date", "ExpirationDate", date, "When the estimate expires (YYYY-MM-DD)."))
    return tuple(fields)


def _vendor_txn_fields(entity: str) -> tuple[InputField, ...]:
    fields = [
        _ref("vendor", "VendorRef", ("Vendor",), "The vendor."),
        _f("lines", "Line", Lines[ExpenseLine], "What was bought: expense categories or products, at least one "
                                               "line.", build=_expense_lines),
        *_TXN_COMMON,
        _f("due_date", "DueDate", date, "Due date (YYYY-MM-DD); from the terms when left out."),
        _ref("ap_account", "APAccountRef", ("Account",), "The Accounts Payable account (the default one when "
                                                         "left out)."),
    ]
    if entity == "Bill":
        fields.append(_ref("terms", "SalesTermRef", ("Term",), "Payment terms, e.g. \"Net 30\"."))
    if entity == "PurchaseOrder":
        fields += [
            _f("email", "POEmail.Address", Email, "Where the purchase order is emailed (Send)."),
            _f("vendor_message", "Memo", Text, "Message to the vendor shown on the purchase order."),
        ]
    return tuple(fields)


_EXPENSE_FIELDS = (
    _ref("payment_account", "AccountRef", ("Account",), "The bank or credit card account the money came from."),
    _f("payment_type", "PaymentType", Literal["Cash", "Check", "CreditCard"],
       "How it was paid: Cash (bank), Check or CreditCard."),
    _ref("payee", "EntityRef", ("Vendor", "Customer", "Employee"),
         "Who was paid. A bare Id means a vendor; use {\"id\": ..., \"type\": \"Customer\"} for others."),
    _f("lines", "Line", Lines[ExpenseLine], "What was bought: expense categories or products, at least one line.",
       build=_expense_lines),
    *_TXN_COMMON,
    _ref("payment_method", "PaymentMethodRef", ("PaymentMethod",), "Payment method, e.g. \"Visa\"."),
)

_PAYMENT_FIELDS = (
    _ref("customer", "CustomerRef", ("Customer",), "The customer who paid."),
    _f("total_amount", "TotalAmt", PositiveAmount, "Amount received; the sum of the applied amounts when left "
                                                   "out.", required=False),
    _f("invoices", "Line", list[PaymentApplication], "Invoices this payment pays (left out: the payment stays "
                                                     "unapplied, a credit for the customer).",
       build=_payment_lines, match=_payment_lines_known),
    _f("txn_date", "TxnDate", date, "Date received (YYYY-MM-DD); today when left out."),
    _f("reference_number", "PaymentRefNum", ShortText, "Check number or other reference."),
    _ref("payment_method", "PaymentMethodRef", ("PaymentMethod",), "Payment method, e.g. \"Check\"."),
    _ref("deposit_to_account", "DepositToAccountRef", ("Account",), "The account the money goes to "
                                                                    "(Undeposited Funds when left out)."),
    _f("private_note", "PrivateNote", Text, "Memo for your own records."),
)

_NAME_LIST_ONLY = frozenset({"find", "deactivate"})
_TXN_STANDARD = frozenset({"create", "update", "get", "delete", "find"})

# The entities issue 4 lists and what each offers. Get Customer, Get Account, Get Product and Create Journal
# Entry are special (special.py): they take more than an Id, or check more than a model can say alone.
ROWS: tuple[EntityActions, ...] = (
    EntityActions("Customer", frozenset({"create", "update", "find", "deactivate"}), _CUSTOMER_FIELDS),
    EntityActions("Vendor", frozenset({"create", "update", "get", "find", "deactivate"}), _VENDOR_FIELDS),
    EntityActions("Account", _NAME_LIST_ONLY),
    EntityActions("Item", _NAME_LIST_ONLY),
    EntityActions("Invoice", _TXN_STANDARD | {"void", "send", "pdf"}, _sales_fields("Invoice")),
    EntityActions("Estimate", _TXN_STANDARD | {"send", "pdf"}, _sales_fields("Estimate")),
    EntityActions("SalesReceipt", frozenset({"create", "update", "get", "find", "void", "send", "pdf"}),
                  _sales_fields("SalesReceipt", customer_what="The customer (optional for a sales receipt).")),
    EntityActions("CreditMemo", _TXN_STANDARD | {"send", "pdf"}, _sales_fields("CreditMemo")),
    EntityActions("RefundReceipt", _TXN_STANDARD | {"send", "pdf"},
                  _sales_fields("RefundReceipt", customer_what="The customer refunded (optional).")),
    EntityActions("Payment", frozenset({"create", "get", "delete", "find", "void"}), _PAYMENT_FIELDS,
                  one_of=(("total_amount", "invoices"),), finish=_payment_total),
    EntityActions("Bill", _TXN_STANDARD, _vendor_txn_fields("Bill")),
    EntityActions("Purchase", _TXN_STANDARD, _EXPENSE_FIELDS),
    EntityActions("PurchaseOrder", _TXN_STANDARD | {"send", "pdf"}, _vendor_txn_fields("PurchaseOrder")),
    EntityActions("JournalEntry", frozenset({"find"})),
)

_OPS = {"create": Op.CREATE, "update": Op.UPDATE, "get": Op.READ, "delete": Op.DELETE, "find": Op.QUERY,
        "deactivate": Op.UPDATE, "void": Op.VOID, "send": Op.SEND, "pdf": Op.PDF}


def row(entity: str) -> EntityActions:
    """The row of `entity` (wire name)."""
    return next(r for r in ROWS if r.entity == entity)


def _check_rows() -> None:
    """The rows agree with the catalog: offered operations exist, properties are QBO's, line types allowed."""
    for r in ROWS:
        definition = r.definition
        for op in r.offers:
            if not definition.supports(_OPS[op]):
                raise AssertionError(f"{r.entity}: the catalog says it does not support {op}")
        if "delete" in r.offers and definition.kind is Kind.NAME_LIST:
            raise AssertionError(f"{r.entity} is a name list: offer deactivate, not delete")
        if "deactivate" in r.offers and definition.kind is not Kind.NAME_LIST:
            raise AssertionError(f"{r.entity} is not a name list")
        for f in r.fields:
            if f.property not in known_fields(r.entity):
                raise AssertionError(f"{r.entity}.{f.name}: {f.property} is not a QBO property of {r.entity}")
            for target in f.targets:
                if target not in ENTITIES:
                    raise AssertionError(f"{r.entity}.{f.name}: unknown entity {target}")


_check_rows()


# --- models -------------------------------------------------------------------------------------------------
def _catalog_required(entity: str) -> tuple[set[str], list[tuple[str, ...]]]:
    """(properties required alone, groups of which one is required) from the catalog."""
    alone: set[str] = set()
    groups: list[tuple[str, ...]] = []
    for need in ENTITIES[entity].required:
        if isinstance(need, tuple):
            groups.append(need)
        else:
            alone.add(need)
    return alone, groups


def is_required(r: EntityActions, f: InputField) -> bool:
    """Whether a create needs this field: its own say, else the catalog's."""
    if f.required is not None:
        return f.required
    alone, _ = _catalog_required(r.entity)
    return f.property in alone


def _extra_validator(entity: str):
    def check(cls, value: dict | None) -> dict | None:
        if value is None:
            return value
        unknown = unknown_fields(entity, value)
        if unknown:
            verb = "is not a property" if len(unknown) == 1 else "are not properties"
            close = difflib.get_close_matches(unknown[0], sorted(known_fields(entity)), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ValueError(f"{', '.join(unknown)} {verb} of a QuickBooks {entity}{hint}; see Intuit's API "
                             f"reference for {entity}")
        owned = sorted(set(value) & IGNORED)
        if owned:
            raise ValueError(f"{', '.join(owned)} cannot be set here (the action and QuickBooks manage them)")
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"the properties must be JSON (text, finite numbers, true/false, null, lists, "
                             f"objects): {exc}") from None
        return value

    return field_validator("extra")(check)


def _one_of_validator(groups: Iterable[tuple[str, ...]], properties: dict[str, str]):
    groups = tuple(groups)

    def check(self: BaseModel) -> BaseModel:
        extra = getattr(self, "extra", None) or {}
        for group in groups:
            if all(getattr(self, name, None) is None and properties.get(name) not in extra for name in group):
                raise FieldError(group[0], f"required: give at least one of {', '.join(group)}")
        return self

    return model_validator(mode="after")(check)


_EXTRA_DESCRIPTION = ("Raw QuickBooks properties merged into the request body (the escape hatch for what the "
                      "fields above do not cover, e.g. {\"CustomField\": [...]}). Keys must be properties QBO "
                      "knows for this entity; the fields above win over the same key here.")


_SYNC_TOKEN_DESCRIPTION = (
    "The record's SyncToken as you last saw it, e.g. \"{{ trigger.SyncToken }}\": the update is then one request "
    "(left out, it is read first). If the record changed since, it is read again and the same changes are sent "
    "once more.")


def _model_name(r: EntityActions, op: str) -> str:
    return "".join(part.capitalize() for part in f"{op}_{r.key}".split("_")) + "Input"


def create_input_model(r: EntityActions, *, name: str | None = None, doc: str | None = None,
                       required: bool = True, validators: dict[str, Any] | None = None) -> type[BaseModel]:
    """The create form of a row: its fields (required per catalog), the catalog's one-of groups, `extra`."""
    definitions: dict[str, Any] = {}
    for f in r.fields:
        if required and is_required(r, f):
            definitions[f.name] = (f.type, Field(description=f.description))
        else:
            definitions[f.name] = (f.type | None, Field(None, description=f.description))
    definitions["extra"] = (dict[str, Any] | None, Field(None, description=_EXTRA_DESCRIPTION))
    properties = {f.name: f.property for f in r.fields}
    _, catalog_groups = _catalog_required(r.entity)
    groups = list(r.one_of)
    for group in catalog_groups:  # "at least one of these properties", spelled as input fields
        names = tuple(f.name for f in r.fields if f.property in group)
        if names:
            groups.append(names)
    validators = {"_extra_known": _extra_validator(r.entity), **(validators or {})}
    doc = doc or f"The fields of a new {r.title.lower()}."
    if required and groups:
        validators["_one_of"] = _one_of_validator(groups, properties)
        doc += "".join(f" Give at least one of {', '.join(g)}." for g in groups)
    return create_model(name or _model_name(r, "create"), __base__=ActionInput, __doc__=doc,
                        __validators__=validators, **definitions)


class UpdateBase(ActionInput):
    """`id` and `sync_token`, common to every Update action (the fields that change are added per entity)."""

    id: RecordId
    sync_token: SyncToken | None = None


def update_input_model(r: EntityActions) -> type[UpdateBase]:
    """The update form: `id` plus every create field, all optional (only those given change)."""
    definitions: dict[str, Any] = {
        "id": (RecordId, Field(description=f"The Id of the {r.title.lower()} to change.")),
        "sync_token": (SyncToken | None, Field(None, description=_SYNC_TOKEN_DESCRIPTION)),
    }
    for f in r.fields:
        text = f.description
        if f.name == "lines":
            text += " Given, it replaces all the lines."
        definitions[f.name] = (f.type | None, Field(None, description=text))
    definitions["extra"] = (dict[str, Any] | None, Field(None, description=_EXTRA_DESCRIPTION))

    def something(self: BaseModel) -> BaseModel:
        if not (self.model_fields_set - {"id", "sync_token"}):
            raise FieldError("id", "give at least one field to change besides id and sync_token")
        return self

    validators = {"_extra_known": _extra_validator(r.entity),
                  "_something": model_validator(mode="after")(something)}
    return create_model(_model_name(r, "update"), __base__=UpdateBase,
                        __doc__=f"What changes on {_a(r.title)}: only the fields given.", __validators__=validators,
                        **definitions)


class IdInput(ActionInput):
    """A record by Id."""

    id: RecordId


class SendInput(IdInput):
    """A form to email, and where."""

    to: Email | None = Field(None, description="Email address to send to; the address on the form (or the "
                                               "customer's) when left out.")


def _id_model(r: EntityActions, op: str, what: str) -> type[IdInput]:
    return create_model(_model_name(r, op), __base__=IdInput, __doc__=what,
                        id=(RecordId, Field(description=f"The Id of the {r.title.lower()}.")))


# --- building the request body --------------------------------------------------------------------------------
async def build_body(ctx: ActionContext, r: EntityActions, model: BaseModel, *, only_set: bool = False,
                     for_lookup: bool = False) -> dict:
    """The QBO body for a create/update model: fields mapped, references resolved, `extra` merged under.
    `for_lookup`: the body to recognise the record by once it exists (fields' `match` builders)."""
    body: dict[str, Any] = {}
    given = model.model_fields_set if only_set else None
    for f in r.fields:
        if given is not None and f.name not in given:
            continue
        value = getattr(model, f.name, None)
        if value is None:
            continue
        if f.targets:
            value = await resolve_ref(ctx, f.name, f.targets, value)
        elif f.build is not None:
            build = f.match if for_lookup and f.match is not None else f.build
            value = await build(ctx, f.name, value)
        else:
            value = _plain(value)
        _set(body, f.qbo, value)
        for key, constant in f.also.items():
            body.setdefault(key, constant)
    extra = getattr(model, "extra", None) or {}
    merged = {**extra, **body}
    if r.finish is not None:
        r.finish(merged)
    return merged


# --- handlers -------------------------------------------------------------------------------------------------
def _create_handler(r: EntityActions):
    async def handle(ctx: ActionContext, model: BaseModel) -> dict:
        body = await build_body(ctx, r, model)
        return await ctx.qbo.create(r.entity, body, request_id=ctx.write_id())

    return handle


def created_lookup(r: EntityActions) -> CreatedLookup:
    """How an earlier attempt of the row's create is recognised: by the body it sends."""
    async def body(ctx: ActionContext, model: BaseModel) -> dict:
        return await build_body(ctx, r, model, for_lookup=True)

    return CreatedLookup(body)


async def sparse_update(ctx: ActionContext, entity: str, body: dict, sync_token: str | None = None) -> dict:
    """A sparse update of `body` (which has the Id). With `sync_token` it is one request; without, the SyncToken
    is read first. A StaleObject (the record changed since that SyncToken) is retried once with a fresh one."""
    try:
        if sync_token is not None:
            record = await ctx.qbo.update(entity, {**body, "SyncToken": sync_token}, sparse=True,
                                          request_id=ctx.write_id())
        else:
            record = await ctx.qbo.update(entity, body, sparse=True, fetch_sync_token=True,
                                          request_id=ctx.write_id())
    except StaleObject:
        # A new requestid: QBO (and the sandbox) would replay the stale answer for the first one.
        record = await ctx.qbo.update(entity, body, sparse=True, fetch_sync_token=True,
                                      request_id=ctx.write_id("stale-retry"))
    ctx.references.forget(entity, body["Id"])
    return record


def _update_handler(r: EntityActions):
    async def handle(ctx: ActionContext, model: UpdateBase) -> dict:
        body = await build_body(ctx, r, model, only_set=True)
        body["Id"] = model.id
        return await sparse_update(ctx, r.entity, body, model.sync_token)

    return handle


def _get_handler(r: EntityActions):
    async def handle(ctx: ActionContext, model: IdInput) -> dict:
        return await ctx.qbo.get(r.entity, model.id)

    return handle


def _delete_handler(r: EntityActions):
    async def handle(ctx: ActionContext, model: IdInput) -> dict:
        return await ctx.qbo.delete(r.entity, model.id, request_id=ctx.write_id())

    return handle


def _deactivate_handler(r: EntityActions):
    async def handle(ctx: ActionContext, model: IdInput) -> dict:
        record = await ctx.qbo.deactivate(r.entity, model.id, request_id=ctx.write_id())
        ctx.references.forget(r.entity, model.id)
        return record

    return handle


def _void_handler(r: EntityActions):
    async def handle(ctx: ActionContext, model: IdInput) -> dict:
        return await ctx.qbo.void(r.entity, model.id, request_id=ctx.write_id())

    return handle


def _send_handler(r: EntityActions):
    async def handle(ctx: ActionContext, model: SendInput) -> dict:
        return await ctx.qbo.send(r.entity, model.id, to=model.to, request_id=ctx.write_id())

    return handle


def _pdf_handler(r: EntityActions):
    async def handle(ctx: ActionContext, model: IdInput) -> dict:
        content = await ctx.qbo.pdf(r.entity, model.id)
        return {"file_name": f"{r.key}-{model.id}.pdf", "content_type": "application/pdf", "size": len(content),
                "content_base64": base64.b64encode(content).decode("ascii")}

    return handle


# --- find -------------------------------------------------------------------------------------------------------
class FindBase(ActionInput):
    """Paging and order, common to every Find action."""

    updated_since: datetime | None = Field(None, description="Only records changed at or after this time "
                                                             "(ISO 8601 with a time zone).")
    max_results: int = Field(100, ge=1, le=MAX_PAGE, description=f"Page size, 1 to {MAX_PAGE}.")
    start_position: int = Field(1, ge=1, description="1-based position of the first record of the page "
                                                     "(next_start_position of the previous page).")
    newest_first: bool = Field(True, description="Newest records (by creation time) first.")

    @field_validator("updated_since")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.utcoffset() is None:
            raise ValueError("give a time zone, e.g. 2024-05-01T00:00:00Z")
        return value


def _find_fields(r: EntityActions) -> dict[str, Any]:
    definition = r.definition
    filterable = definition.filterable
    noun = r.title.lower()
    fields: dict[str, Any] = {}
    if definition.kind is Kind.NAME_LIST:
        name_field = definition.name_field or "Name"
        fields["name"] = (ShortText | None, Field(None, description=f"The {noun}'s {name_field}, exactly "
                                                                    f"(ignoring case)."))
        fields["name_contains"] = (ShortText | None, Field(None, description=f"Text the {name_field} contains."))
        if "PrimaryEmailAddr" in filterable:
            fields["email"] = (ShortText | None, Field(None, description="Primary email address, exactly."))
        fields["active"] = (bool, Field(True, description="Active records (true) or inactive ones (false)."))
    else:
        if "DocNumber" in filterable:
            fields["doc_number"] = (DocNumber | None, Field(None, description="Reference number (DocNumber)."))
        if "TxnDate" in filterable:
            fields["date_from"] = (date | None, Field(None, description="Transaction date on or after."))
            fields["date_to"] = (date | None, Field(None, description="Transaction date on or before."))
        if definition.has_balance and {"DueDate", "Balance"} <= filterable:
            fields["overdue_on"] = (date | None, Field(None, description=(
                "Only unpaid ones (Balance above 0) due before this date: those overdue on that day, e.g. "
                "today() in a template.")))
        if "CustomerRef" in filterable:
            fields["customer"] = (RefValue | None, Field(None, description=ref_description(("Customer",))))
        if "VendorRef" in filterable:
            fields["vendor"] = (RefValue | None, Field(None, description=ref_description(("Vendor",))))
        if "EntityRef" in filterable and "EntityRef" in definition.refs:
            targets = ("Vendor", "Customer", "Employee")
            fields["payee"] = (RefValue | None, Field(None, description=ref_description(targets)))
    return fields


def find_input_model(r: EntityActions) -> type[FindBase]:
    return create_model(_model_name(r, "find"), __base__=FindBase,
                        __doc__=f"Filters for {_plural(r.title).lower()}; all given filters must match.",
                        **_find_fields(r))


def _find_handler(r: EntityActions):
    definition = r.definition

    async def handle(ctx: ActionContext, model: FindBase) -> dict:
        query = Query(r.entity)
        values = model.model_dump()  # the filters are made per entity (`_find_fields`): read by name
        if definition.kind is Kind.NAME_LIST:
            name_field = definition.name_field or "Name"
            if values.get("name") is not None:
                query = query.where(**{name_field: values["name"]})
            if values.get("name_contains") is not None:
                query = query.where_like(name_field, like_contains(values["name_contains"]))
            if values.get("email") is not None:
                query = query.where(PrimaryEmailAddr=values["email"])
            query = query.where(Active=values["active"])
        else:
            if values.get("doc_number") is not None:
                query = query.where(DocNumber=values["doc_number"])
            if values.get("date_from") is not None:
                query = query.where_op("TxnDate", ">=", values["date_from"])
            if values.get("date_to") is not None:
                query = query.where_op("TxnDate", "<=", values["date_to"])
            if values.get("overdue_on") is not None:
                query = query.where_op("Balance", ">", 0).where_op("DueDate", "<", values["overdue_on"])
            for name, prop, targets in (("customer", "CustomerRef", ("Customer",)),
                                        ("vendor", "VendorRef", ("Vendor",)),
                                        ("payee", "EntityRef", ("Vendor", "Customer", "Employee"))):
                value = getattr(model, name, None)  # the reference as given (model_dump made it a dict)
                if value is not None:
                    ref = await resolve_ref(ctx, name, targets, value)
                    query = query.where(**{prop: ref["value"]})
        if model.updated_since is not None:
            query = query.where_op("MetaData.LastUpdatedTime", ">=", model.updated_since)
        query = (query.order_by("MetaData.CreateTime", desc=model.newest_first)
                 .start(model.start_position).max(model.max_results))
        records = await ctx.qbo.query(query)
        full = len(records) == model.max_results
        return {"records": records, "count": len(records), "start_position": model.start_position,
                "next_start_position": model.start_position + len(records) if full else None}

    return handle


# --- generation -------------------------------------------------------------------------------------------------
def _describe_create(r: EntityActions) -> str:
    text = f"Creates {_a(r.title.lower())} in QuickBooks."
    refs = [f.name for f in r.fields if f.targets]
    if refs:
        text += f" References ({', '.join(refs)}) take an Id, or a name or email that is looked up."
    return text


def _output(r: EntityActions) -> str:
    return f"The {r.title} as QuickBooks returns it ({r.entity} object: Id, SyncToken, MetaData and its fields)."


def generate(rows: Iterable[EntityActions] = ROWS) -> dict[str, Action]:
    """Every standard action of the rows, by key."""
    actions: dict[str, Action] = {}

    def add(a: Action) -> None:
        if a.key in actions:
            raise AssertionError(f"duplicate action key {a.key}")
        actions[a.key] = a

    for r in rows:
        noun, title, plural = r.key, r.title, _plural(r.title)
        lower = title.lower()
        if "create" in r.offers:
            add(Action(f"create_{noun}", f"Create {title}", _describe_create(r), create_input_model(r), _output(r),
                       _create_handler(r), r.entity, "create", created_lookup(r)))
        if "update" in r.offers:
            add(Action(f"update_{noun}", f"Update {title}",
                       f"Changes the fields given on {_a(lower)} and leaves the rest as it is (a sparse update). "
                       f"Give sync_token (e.g. {{{{ trigger.SyncToken }}}}) and it is one request; otherwise "
                       f"the SyncToken is read for you.", update_input_model(r), _output(r), _update_handler(r),
                       r.entity, "update"))
        if "get" in r.offers:
            add(Action(f"get_{noun}", f"Get {title}", f"Reads {_a(lower)} by Id.",
                       _id_model(r, "get", f"The {lower} to read."), _output(r), _get_handler(r), r.entity, "get"))
        if "delete" in r.offers:
            add(Action(f"delete_{noun}", f"Delete {title}", f"Deletes {_a(lower)} for good.",
                       _id_model(r, "delete", f"The {lower} to delete."),
                       "QuickBooks' confirmation: {\"Id\": ..., \"status\": \"Deleted\"}.", _delete_handler(r),
                       r.entity, "delete"))
        if "deactivate" in r.offers:
            add(Action(f"deactivate_{noun}", f"Deactivate {title}",
                       f"Makes {_a(lower)} inactive: QuickBooks never deletes {plural.lower()}, it hides inactive "
                       f"ones and keeps their history.", _id_model(r, "deactivate", f"The {lower} to deactivate."),
                       f"The {title} as QuickBooks returns it, with Active false.", _deactivate_handler(r),
                       r.entity, "deactivate"))
        if "find" in r.offers:
            add(Action(f"find_{_plural(noun)}", f"Find {plural}",
                       f"Searches {plural.lower()} by the filters given, a page at a time.", find_input_model(r),
                       f"{{\"records\": [{title} objects as QuickBooks returns them], \"count\": number on this page, "
                       f"\"start_position\": ..., \"next_start_position\": where the next page starts, or null}}.",
                       _find_handler(r), r.entity, "find"))
        if "void" in r.offers:
            add(Action(f"void_{noun}", f"Void {title}",
                       f"Voids {_a(lower)}: its amounts become zero and it stays on record, marked Voided.",
                       _id_model(r, "void", f"The {lower} to void."), _output(r), _void_handler(r), r.entity,
                       "void"))
        if "send" in r.offers:
            add(Action(f"send_{noun}", f"Send {title}", f"Emails {_a(lower)} (with its PDF) from QuickBooks.",
                       create_model(_model_name(r, "send"), __base__=SendInput, __doc__=f"The {lower} to send."),
                       f"The {title} as QuickBooks returns it, with EmailStatus \"EmailSent\" and DeliveryInfo.",
                       _send_handler(r), r.entity, "send"))
        if "pdf" in r.offers:
            add(Action(f"get_{noun}_pdf", f"Get {title} PDF", f"The {lower} as QuickBooks prints it (PDF).",
                       _id_model(r, "pdf", f"The {lower} to print."),
                       "{\"file_name\", \"content_type\": \"application/pdf\", \"size\": bytes, "
                       "\"content_base64\": the PDF, base64-encoded}.", _pdf_handler(r), r.entity, "pdf"))
    return actions

