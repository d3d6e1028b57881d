"""Fixtures for the actions: a client on the in-process sandbox, an ActionContext over it, and direct access to
the sandbox's books, so tests check what QBO holds through a separate read, not through the action's answer."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from qbflow.connector.base import ActionContext
from qbflow.qbo import QBOClient, StaticTokens
from qbflow.sandbox.app import Sandbox
from tests.support.clients import CountingTransport, make_client
from tests.support.connect import env, sandbox_url  # noqa: F401 (fixtures: `qbflow sandbox`, connected as "demo")


@pytest.fixture
def qbo_transport(sandbox: Sandbox) -> CountingTransport:
    return CountingTransport(sandbox)


@pytest.fixture
async def qbo(sandbox: Sandbox, realm: str, token: str, qbo_transport: CountingTransport) -> AsyncIterator[QBOClient]:
    async with make_client(sandbox, realm, StaticTokens(token), transport=qbo_transport, pacer=False) as client:
        yield client


@pytest.fixture
def ctx(qbo: QBOClient) -> ActionContext:
    return ActionContext(qbo, request_id="run-1:step-1")


_unique = itertools.count(1)


@dataclass
class Books:
    """The sandbox company's books, read and written directly (not through the client under test)."""

    sandbox: Sandbox
    realm: str
    client: QBOClient | None = None  # a plain client, for reads the books cannot answer (file contents)

    def all(self, entity: str) -> list[dict]:
        return list(self.sandbox.books.records(self.realm, entity))

    def get(self, entity: str, record_id: str) -> dict:
        return self.sandbox.books.get(self.realm, entity, str(record_id))

    def has(self, entity: str, record_id: str) -> bool:
        return str(record_id) in self.sandbox.books.company(self.realm).table(entity)

    def id_of(self, entity: str, name: str) -> str:
        """The Id of the active record named `name` (DisplayName or Name)."""
        found = [r["Id"] for r in self.all(entity) if (r.get("DisplayName") or r.get("Name")) == name
                 and r.get("Active", True)]
        assert len(found) == 1, f"{entity} {name!r}: {found}"
        return found[0]

    def create(self, entity: str, body: dict) -> dict:
        return self.sandbox.books.create(self.realm, entity, body)

    def change(self, entity: str, record_id: str, **fields) -> dict:
        """A sparse update made by "someone else" (the SyncToken moves on)."""
        current = self.get(entity, record_id)
        return self.sandbox.books.update(self.realm, entity, {"Id": current["Id"], "SyncToken": current["SyncToken"],
                                                              "sparse": True, **fields})

    @property
    def outbox(self) -> list[dict]:
        return self.sandbox.books.company(self.realm).outbox

    def make(self, entity: str, **overrides) -> dict:
        """A minimal valid record of `entity`, created straight in the books."""
        n = next(_unique)
        item = {"value": self.id_of("Item", "Design")}
        sales_line = [{"Amount": 100.0, "DetailType": "SalesItemLineDetail",
                       "SalesItemLineDetail": {"ItemRef": item, "Qty": 1, "UnitPrice": 100}}]
        expense_line = [{"Amount": 40.0, "DetailType": "AccountBasedExpenseLineDetail",
                         "AccountBasedExpenseLineDetail": {"AccountRef": {"value": self.id_of("Account", "Supplies")}}}]
        customer = {"value": self.id_of("Customer", "Amy's Bird Sanctuary")}
        vendor = {"value": self.id_of("Vendor", "Hicks Hardware")}
        bodies = {
            "Customer": {"DisplayName": f"Test Customer {n}", "PrimaryEmailAddr": {"Address": f"c{n}@test.example"}},
            "Vendor": {"DisplayName": f"Test Vendor {n}", "PrimaryEmailAddr": {"Address": f"v{n}@test.example"}},
            "Account": {"Name": f"Test Account {n}", "AccountType": "Expense"},
            "Item": {"Name": f"Test Item {n}", "Type": "Service",
                     "IncomeAccountRef": {"value": self.id_of("Account", "Services")}},
            "Invoice": {"CustomerRef": customer, "Line": sales_line},
            "Estimate": {"CustomerRef": customer, "Line": sales_line},
            "CreditMemo": {"CustomerRef": customer, "Line": sales_line},
            "SalesReceipt": {"CustomerRef": customer, "Line": sales_line},
            "RefundReceipt": {"CustomerRef": customer, "Line": sales_line,
                              "DepositToAccountRef": {"value": self.id_of("Account", "Checking")}},
            "Payment": {"CustomerRef": customer, "TotalAmt": 25.0},
            "Bill": {"VendorRef": vendor, "Line": expense_line},
            "Purchase": {"PaymentType": "Cash", "AccountRef": {"value": self.id_of("Account", "Checking")},
                         "Line": expense_line},
            "PurchaseOrder": {"VendorRef": vendor, "Line": expense_line},
            "JournalEntry": {"Line": [
                {"Amount": 10.0, "DetailType": "JournalEntryLineDetail", "JournalEntryLineDetail": {
                    "PostingType": "Debit", "AccountRef": {"value": self.id_of("Account", "Supplies")}}},
                {"Amount": 10.0, "DetailType": "JournalEntryLineDetail", "JournalEntryLineDetail": {
                    "PostingType": "Credit", "AccountRef": {"value": self.id_of("Account", "Checking")}}}]},
        }
        return self.create(entity, {**bodies[entity], **overrides})


@pytest.fixture
def books(sandbox: Sandbox, realm: str) -> Books:
    return Books(sandbox, realm)
