"""The triggers a workflow can start from, generated from one table rather than written one by one.

For each of ten entities there is a "New X" and an "Updated X" trigger, and for the transactions QBO
hard-deletes (it reports them through CDC as `status: Deleted` stubs) a "Deleted X" trigger. Name lists
(Customer, Account, Vendor) are deactivated, never deleted: their deactivation is an "Updated X".

    trigger("new_invoice").title        # "New Invoice"
    TRIGGERS["deleted_bill"].output     # what the event's record is
    trigger("new_invoce")               # UnknownTrigger: ... did you mean 'new_invoice'?

What fires when is decided by `qbflow.connector.polling`; this module only describes the triggers.
Samples are fixed, believable records of Intuit's sample company ("Craig's Design and Landscaping
Services", the sandbox's new company): its names and Ids (customer Amy's Bird Sanctuary, vendor Tania's
Nursery, account Mastercard...), for test runs of a workflow without touching QBO.
"""

from __future__ import annotations

import copy
import difflib
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from qbflow.catalog.entities import ENTITIES, EntityDef, Kind, Op
from qbflow.errors import QBFlowError

__all__ = [
    "TRIGGER_ENTITIES",
    "TRIGGERS",
    "Trigger",
    "TriggerKind",
    "UnknownTrigger",
    "trigger",
    "triggers_for",
]


class TriggerKind(StrEnum):
    NEW = "new"
    UPDATED = "updated"
    DELETED = "deleted"


# The table: the entities that get triggers, in the order users see them.
TRIGGER_ENTITIES: tuple[str, ...] = (
    "Invoice", "Customer", "Account", "Vendor", "Bill", "Estimate", "Payment", "PurchaseOrder",
    "SalesReceipt", "Purchase",
)
# Trigger titles use QBO's entity name where the catalog's human title differs (the Purchase actions
# are called "Expense", the triggers keep "Purchase").
_TITLE_OVERRIDES = {"Purchase": "Purchase"}


class UnknownTrigger(QBFlowError, KeyError):
    """No trigger has this key; the message suggests the nearest one."""

    def __init__(self, key: str, suggestion: str | None) -> None:
        self.key = key
        self.suggestion = suggestion
        hint = f"; did you mean {suggestion!r}?" if suggestion else f"; expected one of {', '.join(TRIGGERS)}"
        super().__init__(f"unknown trigger {key!r}{hint}")

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return self.args[0]


@dataclass(frozen=True)
class Trigger:
    """One trigger: a stable key, the title users see, what fires it and what its event carries."""

    key: str  # e.g. "updated_purchase_order"
    title: str  # e.g. "Updated Purchase Order"
    entity: str  # QBO wire name, e.g. "PurchaseOrder"
    kind: TriggerKind
    description: str
    output: str  # what the event's record is
    sample: dict[str, Any] = field(repr=False, compare=False)

    def sample_record(self) -> dict[str, Any]:
        """A fresh copy of the sample, safe to change."""
        return copy.deepcopy(self.sample)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _title(entity: EntityDef) -> str:
    return _TITLE_OVERRIDES.get(entity.name, entity.title)


def deletable(entity: EntityDef) -> bool:
    """QBO reports deletions of this entity through CDC: hard-deletable transactions. Name lists are
    only ever deactivated, which CDC reports as an ordinary change."""
    return entity.kind is Kind.TRANSACTION and entity.supports(Op.DELETE) and entity.supports(Op.CDC)


# --- samples -------------------------------------------------------------------------------------------
# The entity-specific part of each sample, in the shapes the sandbox (and QBO) return: refs carry a
# name, amounts are numbers, Ids and SyncTokens are strings, dates are ISO strings.
_USD = {"value": "USD", "name": "United States Dollar"}
# Names, Ids and fields as in the sample company (qbflow/sandbox/data/sample_company.json).
_ADDR = {"Id": "2", "Line1": "4581 Finch St.", "City": "Bayshore", "CountrySubDivisionCode": "CA",
         "PostalCode": "94326"}
_CUSTOMER_REF = {"value": "1", "name": "Amy's Bird Sanctuary"}
_CUSTOMER_EMAIL = "Birds@Intuit.com"
_VENDOR_REF = {"value": "50", "name": "Tania's Nursery"}
_VENDOR_EMAIL = "plantqueen@taniasnursery.com"
_AP_ACCOUNT = {"value": "33", "name": "Accounts Payable (A/P)"}
_JOB_EXPENSES = ("55", "Job Expenses")


def _sales_line(line_id: str, item: tuple[str, str], qty: float, price: float) -> dict:
    return {"Id": line_id, "LineNum": int(line_id), "Amount": round(qty * price, 2),
            "DetailType": "SalesItemLineDetail",
            "SalesItemLineDetail": {"ItemRef": {"value": item[0], "name": item[1]}, "Qty": qty, "UnitPrice": price,
                                    "TaxCodeRef": {"value": "NON"}}}


def _expense_line(amount: float, account: tuple[str, str]) -> dict:
    return {"Id": "1", "LineNum": 1, "Amount": amount, "DetailType": "AccountBasedExpenseLineDetail",
            "AccountBasedExpenseLineDetail": {"AccountRef": {"value": account[0], "name": account[1]},
                                              "BillableStatus": "NotBillable"}}


_DESIGN_LINES = [_sales_line("1", ("4", "Design"), 10, 75.0), _sales_line("2", ("7", "Installation"), 12, 50.0),
                 {"Amount": 1350.0, "DetailType": "SubTotalLineDetail", "SubTotalLineDetail": {}}]
_SALES_DOC = {"CustomerRef": _CUSTOMER_REF, "CurrencyRef": _USD, "TxnDate": "2024-05-14", "DocNumber": "1037",
              "Line": _DESIGN_LINES, "TxnTaxDetail": {"TotalTax": 0}, "TotalAmt": 1350.0,
              "BillAddr": _ADDR, "ShipAddr": _ADDR, "PrintStatus": "NeedToPrint",
              "EmailStatus": "NotSet", "BillEmail": {"Address": _CUSTOMER_EMAIL},
              "ApplyTaxAfterDiscount": False}

_SAMPLE_BODIES: dict[str, dict[str, Any]] = {
    "Invoice": {**_SALES_DOC, "DueDate": "2024-06-13", "Balance": 1350.0, "SalesTermRef": {"value": "3"},
                "LinkedTxn": [], "AllowOnlinePayment": False, "AllowOnlineCreditCardPayment": False,
                "AllowOnlineACHPayment": False},
    "Estimate": {**_SALES_DOC, "DocNumber": "1012", "TxnStatus": "Pending", "ExpirationDate": "2024-06-13"},
    "SalesReceipt": {**_SALES_DOC, "DocNumber": "1021", "Balance": 0,
                     "DepositToAccountRef": {"value": "4", "name": "Undeposited Funds"},
                     "PaymentMethodRef": {"value": "2", "name": "Check"}},
    "Customer": {"DisplayName": "Amy's Bird Sanctuary", "CompanyName": "Amy's Bird Sanctuary", "GivenName": "Amy",
                 "FamilyName": "Lauterbach", "FullyQualifiedName": "Amy's Bird Sanctuary",
                 "PrintOnCheckName": "Amy's Bird Sanctuary",
                 "PrimaryEmailAddr": {"Address": _CUSTOMER_EMAIL},
                 "PrimaryPhone": {"FreeFormNumber": "(650) 555-3311"}, "BillAddr": _ADDR, "ShipAddr": _ADDR,
                 "CurrencyRef": _USD, "Active": True, "Job": False,
                 "BillWithParent": False, "Taxable": True, "DefaultTaxCodeRef": {"value": "2"}, "Balance": 1350.0,
                 "BalanceWithJobs": 1350.0, "PreferredDeliveryMethod": "Print"},
    "Vendor": {"DisplayName": "Tania's Nursery", "CompanyName": "Tania's Nursery", "GivenName": "Tania",
               "FamilyName": "Kronberg", "PrintOnCheckName": "Tania's Nursery",
               "PrimaryEmailAddr": {"Address": _VENDOR_EMAIL},
               "PrimaryPhone": {"FreeFormNumber": "(886) 554-2265"},
               "BillAddr": {"Id": "44", "Line1": "1111 Elm St.", "City": "Middlefield", "Country": "USA",
                            "CountrySubDivisionCode": "CA", "PostalCode": "94482"},
               "AcctNum": "2154", "CurrencyRef": _USD, "Active": True, "Balance": 1250.0, "Vendor1099": False},
    "Account": {"Name": "Job Expenses", "FullyQualifiedName": "Job Expenses", "AccountType": "Expense",
                "AccountSubType": "SuppliesMaterials", "Classification": "Expense", "SubAccount": False,
                "Active": True, "CurrentBalance": 0, "CurrentBalanceWithSubAccounts": 0, "CurrencyRef": _USD},
    "Bill": {"VendorRef": _VENDOR_REF, "CurrencyRef": _USD, "TxnDate": "2024-05-14", "DueDate": "2024-06-13",
             "SalesTermRef": {"value": "3"}, "APAccountRef": _AP_ACCOUNT,
             "Line": [_expense_line(1250.0, _JOB_EXPENSES)], "TotalAmt": 1250.0, "Balance": 1250.0,
             "PrivateNote": "Spring planting stock"},
    "Payment": {"CustomerRef": _CUSTOMER_REF, "CurrencyRef": _USD, "TxnDate": "2024-05-28", "TotalAmt": 1350.0,
                "UnappliedAmt": 0.0, "ProcessPayment": False,
                "DepositToAccountRef": {"value": "4", "name": "Undeposited Funds"},
                "PaymentMethodRef": {"value": "2", "name": "Check"}, "PaymentRefNum": "4417",
                "Line": [{"Amount": 1350.0, "LinkedTxn": [{"TxnId": "130", "TxnType": "Invoice"}]}]},
    "PurchaseOrder": {"VendorRef": _VENDOR_REF, "CurrencyRef": _USD, "TxnDate": "2024-05-14", "DocNumber": "1004",
                      "POStatus": "Open", "POEmail": {"Address": _VENDOR_EMAIL}, "APAccountRef": _AP_ACCOUNT,
                      "Line": [{"Id": "1", "LineNum": 1, "Amount": 120.0, "DetailType": "ItemBasedExpenseLineDetail",
                                "ItemBasedExpenseLineDetail": {"ItemRef": {"value": "15", "name": "Soil"}, "Qty": 12,
                                                               "UnitPrice": 10.0, "BillableStatus": "NotBillable"}}],
                      "TotalAmt": 120.0},
    "Purchase": {"PaymentType": "CreditCard", "AccountRef": {"value": "41", "name": "Mastercard"},
                 "EntityRef": {"value": "33", "name": "Chin's Gas and Oil", "type": "Vendor"}, "CurrencyRef": _USD,
                 "TxnDate": "2024-05-14", "Line": [_expense_line(63.15, ("22", "Travel"))], "TotalAmt": 63.15,
                 "Credit": False},
}
_SAMPLE_IDS = {"Invoice": "130", "Customer": "1", "Account": "55", "Vendor": "50", "Bill": "131", "Estimate": "132",
               "Payment": "133", "PurchaseOrder": "134", "SalesReceipt": "135", "Purchase": "136"}
_CREATED = "2024-05-14T09:32:07-07:00"
_EDITED = "2024-05-15T16:05:41-07:00"


def _sample(entity: EntityDef, kind: TriggerKind) -> dict[str, Any]:
    record_id = _SAMPLE_IDS[entity.name]
    if kind is TriggerKind.DELETED:
        return {"domain": "QBO", "status": "Deleted", "Id": record_id, "MetaData": {"LastUpdatedTime": _EDITED}}
    body = copy.deepcopy(_SAMPLE_BODIES[entity.name])
    if kind is TriggerKind.NEW:
        meta = {"CreateTime": _CREATED, "LastUpdatedTime": _CREATED}
        token = "0"
    else:
        meta = {"CreateTime": _CREATED, "LastUpdatedTime": _EDITED}
        token = "2"
        if entity.has_balance and "Balance" in body:
            body["Balance"] = round(body["Balance"] / 2, 2)  # a believable change: half paid
    return {**body, "domain": "QBO", "sparse": False, "Id": record_id, "SyncToken": token, "MetaData": meta}


# --- the triggers --------------------------------------------------------------------------------------
def _describe(entity: EntityDef, kind: TriggerKind) -> tuple[str, str]:
    name = _title(entity)
    article = "an" if name[0] in "AEIOU" else "a"
    if kind is TriggerKind.NEW:
        description = (f"Fires once for each {name.lower()} created in QuickBooks after the trigger was activated, "
                       f"even if it was edited again before the poll saw it.")
        output = (f"The {entity.name} record as QuickBooks returns it when the poll sees it (its latest version, "
                  f"so SyncToken may be above 0).")
    elif kind is TriggerKind.UPDATED:
        what = "including deactivation, " if entity.kind is Kind.NAME_LIST else "including a void, "
        description = (f"Fires once for each change to an existing {name.lower()} ({what}one event per SyncToken "
                       f"seen); not for its creation. Changes made between two polls arrive as one event with "
                       f"the latest version.")
        output = f"The changed {entity.name} record as QuickBooks returns it when the poll sees it."
    else:
        description = (f"Fires once when {article} {name.lower()} is deleted in QuickBooks (seen through change "
                       f"data capture; deletions older than 30 days cannot be seen).")
        output = ('A stub of the deleted record: {"Id", "status": "Deleted", "MetaData": {"LastUpdatedTime"}}; '
                  "QuickBooks keeps nothing else of it.")
    return description, output


def _build() -> dict[str, Trigger]:
    table: dict[str, Trigger] = {}
    for name in TRIGGER_ENTITIES:
        entity = ENTITIES[name]
        kinds = [TriggerKind.NEW, TriggerKind.UPDATED] + ([TriggerKind.DELETED] if deletable(entity) else [])
        for kind in kinds:
            key = f"{kind.value}_{_snake(entity.name)}"
            description, output = _describe(entity, kind)
            table[key] = Trigger(key=key, title=f"{kind.value.capitalize()} {_title(entity)}", entity=entity.name,
                                 kind=kind, description=description, output=output, sample=_sample(entity, kind))
    return table


TRIGGERS: dict[str, Trigger] = _build()


def trigger(key: str) -> Trigger:
    """The trigger called `key`, or UnknownTrigger naming the nearest key."""
    try:
        return TRIGGERS[key]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(key).strip().lower().replace(" ", "_"), TRIGGERS, n=1, cutoff=0.5)
        raise UnknownTrigger(str(key), close[0] if close else None) from None


def triggers_for(entity: str) -> list[Trigger]:
    """Every trigger on one entity (wire name), New first."""
    return [t for t in TRIGGERS.values() if t.entity == entity]
