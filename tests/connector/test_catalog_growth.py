"""Entities added to the catalog (issue 14's TimeActivity, Transfer, Budget, ...) give the sandbox and the client
more to serve, but change no trigger or action a workflow already names: actions come from the connector's own
table, triggers from its own list."""

from __future__ import annotations

from qbflow.catalog.entities import ENTITIES
from qbflow.connector.registry import ACTIONS
from qbflow.connector.triggers import TRIGGER_ENTITIES, TRIGGERS

ACTION_ENTITIES = {"Account", "Attachable", "Bill", "CreditMemo", "Customer", "Estimate", "Invoice", "Item",
                   "JournalEntry", "Payment", "Purchase", "PurchaseOrder", "RefundReceipt", "SalesReceipt", "Vendor"}
NEW_IN_ISSUE_14 = {"Budget", "TaxAgency", "CompanyCurrency", "TimeActivity", "Transfer", "CreditCardPayment",
                   "RecurringTransaction", "ExchangeRate"}


def test_new_catalog_entities_add_no_trigger_or_action() -> None:
    assert NEW_IN_ISSUE_14 <= set(ENTITIES)
    assert {a.entity for a in ACTIONS.values()} == ACTION_ENTITIES
    assert len(ACTIONS) == 80 and len(TRIGGERS) == 27
    assert not NEW_IN_ISSUE_14 & set(TRIGGER_ENTITIES)
