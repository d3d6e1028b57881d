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
REPORT_ACTIONS = {"get_profit_and_loss", "get_balance_sheet", "get_ar_aging", "get_ap_aging", "get_cash_flow",
                  "get_trial_balance", "run_report"}


def test_new_catalog_entities_add_no_trigger_or_action() -> None:
    assert NEW_IN_ISSUE_14 <= set(ENTITIES)
    assert {a.entity for a in ACTIONS.values() if a.entity is not None} == ACTION_ENTITIES
    # Issue 14's report actions read reports, not records of an entity.
    assert {k for k, a in ACTIONS.items() if a.entity is None} == REPORT_ACTIONS
    assert len(ACTIONS) == 80 + len(REPORT_ACTIONS) and len(TRIGGERS) == 27
    assert not NEW_IN_ISSUE_14 & set(TRIGGER_ENTITIES)
