"""Workers at scale, shared by tests/engine/test_workers_scale.py and benchmarks/scale.py: many companies
connected quickly, twenty workflows on each (one per New/Updated trigger of the ten trigger entities), a
known set of changes per company made in a few batch requests, and the checks afterwards.

Connections are made the way the server's /oauth/callback makes them (`finish_connection`: the code exchanged
for tokens at the sandbox, the company's name read, the connection stored encrypted), answering the sandbox's
consent page for each company in turn: a second or two for fifty, where fifty `qbflow connect` processes take
a minute.

The changes of one company (`CHANGES_PER_COMPANY` = 40): two creates and two updates of each of the ten
entities, the updates on records made before the workflows' `since` (`prepare`), so each change fires exactly
one trigger: 40 events per company. Two of the twenty workflows write to QuickBooks (new_customer creates an
invoice "C-<customer Id>", new_vendor a bill "V-<vendor Id>"), so a run done twice would leave a duplicate;
the others read the record (and some log it).
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx
from sqlalchemy import Engine, func, select, text

from qbflow.connector.triggers import TRIGGER_ENTITIES
from qbflow.qbo.connect import Environment, finish_connection
from qbflow.qbo.oauth import IntuitOAuth
from qbflow.store import ConnectionStore, SecretBox
from qbflow.store.aio import AsyncConnectionStore
from qbflow.store.db import make_engine, upgrade
from qbflow.store.models import RUN_SUCCEEDED, Event, Run

CHANGES_PER_COMPANY = 4 * len(TRIGGER_ENTITIES)  # 2 creates + 2 updates per entity
REDIRECT_URI = "http://127.0.0.1:9/callback"  # never contacted: the consent's redirect is read, not followed

# The snake_case action names of the trigger entities' "get" actions.
_GET = {"Invoice": "get_invoice", "Customer": "get_customer", "Account": "get_account", "Vendor": "get_vendor",
        "Bill": "get_bill", "Estimate": "get_estimate", "Payment": "get_payment",
        "PurchaseOrder": "get_purchase_order", "SalesReceipt": "get_sales_receipt", "Purchase": "get_expense"}
_SNAKE = {"Invoice": "invoice", "Customer": "customer", "Account": "account", "Vendor": "vendor", "Bill": "bill",
          "Estimate": "estimate", "Payment": "payment", "PurchaseOrder": "purchase_order",
          "SalesReceipt": "sales_receipt", "Purchase": "purchase"}


# --- connections ---------------------------------------------------------------------------------------------
async def _connect_all(base: str, env: dict[str, str], names: list[str], realms: list[str]) -> None:
    environment = Environment.local(base)
    oauth = IntuitOAuth(env["QBFLOW_CLIENT_ID"], env["QBFLOW_CLIENT_SECRET"], discovery_url=environment.discovery_url)
    endpoints = await oauth.load()
    engine = make_engine(env["QBFLOW_DATABASE_URL"])
    upgrade(engine)
    store = AsyncConnectionStore(ConnectionStore(engine, SecretBox([env["QBFLOW_SECRET_KEY"]])))
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as web:
            for name, realm in zip(names, realms, strict=True):
                state = secrets.token_urlsafe(16)
                page = await web.get(oauth.authorization_url(REDIRECT_URI, state))
                action = re.search(r'<form method="post" action="([^"]+)"', page.text).group(1)
                ticket = re.search(r'name="consent_ticket" value="([^"]+)"', page.text).group(1)
                answer = await web.post(action, data={"consent_ticket": ticket, "realm_id": realm,
                                                      "action": "approve"})
                assert answer.status_code in (302, 303), answer.text
                query = dict(parse_qsl(urlsplit(answer.headers["location"]).query))
                assert query["state"] == state and query["realmId"] == realm, query
                await finish_connection(oauth, endpoints, name=name, code=query["code"], redirect_uri=REDIRECT_URI,
                                        realm_id=realm, environment=environment, store=store,
                                        client_secret=env["QBFLOW_CLIENT_SECRET"])
    finally:
        store.close()
        engine.dispose()


def connect_companies(base: str, env: dict[str, str], names: list[str]) -> dict[str, str]:
    """Connect `names[i]` to the sandbox's i-th company (OAuth through its consent page); {name: realm}."""
    realms = [c["realmId"] for c in httpx.get(f"{base}/_sandbox/companies", timeout=10).json()["companies"]]
    assert len(realms) >= len(names), realms
    asyncio.run(_connect_all(base, env, names, realms[:len(names)]))
    return dict(zip(names, realms, strict=False))


def tokens(env: dict[str, str], names: list[str]) -> dict[str, str]:
    """The stored access token of each connection (for the test's own requests)."""
    engine = make_engine(env["QBFLOW_DATABASE_URL"])
    try:
        store = ConnectionStore(engine, SecretBox([env["QBFLOW_SECRET_KEY"]]))
        return {name: store.get(name).access_token for name in names}
    finally:
        engine.dispose()


# --- workflows -----------------------------------------------------------------------------------------------
def _steps(trigger: str, entity: str) -> str:
    get = f"""\
  - id: read
    action: {_GET[entity]}
    input: {{id: "{{{{ trigger.Id }}}}"}}
"""
    log = """\
  - id: say
    action: log
    input: {message: "read {{ steps.read.output.Id }} (sync token {{ steps.read.output.SyncToken }})"}
"""
    if trigger == "new_customer":
        return get + """\
  - id: invoice
    action: create_invoice
    input:
      customer: "{{ trigger.Id }}"
      doc_number: "C-{{ trigger.Id }}"
      lines: [{item: "Gardening", amount: 40}]
"""
    if trigger == "new_vendor":
        return """\
  - id: bill
    action: create_bill
    input:
      vendor: "{{ trigger.Id }}"
      doc_number: "V-{{ trigger.Id }}"
      lines: [{account: "Supplies", amount: 12.5}]
"""
    return get + (log if trigger.startswith("updated_") else "")


def write_workflows(folder: Path, names: list[str], since: str) -> list[Path]:
    """Twenty workflow files per connection, one per New/Updated trigger of the ten trigger entities."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for name in names:
        for entity in TRIGGER_ENTITIES:
            for kind in ("new", "updated"):
                trigger = f"{kind}_{_SNAKE[entity]}"
                path = folder / f"{name}-{trigger}.yaml"
                path.write_text(f'name: {name}-{trigger}\ntrigger: {{key: {trigger}, connection: {name}, '
                                f'since: "{since}"}}\nsteps:\n{_steps(trigger, entity)}')
                files.append(path)
    return files


def utc_iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# --- changes -------------------------------------------------------------------------------------------------
class Company:
    """One company's API, with the seed records the changes refer to (looked up once)."""

    def __init__(self, base: str, realm: str, token: str) -> None:
        self.realm = realm
        self.api = httpx.Client(base_url=f"{base}/v3/company/{realm}", timeout=60,
                                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
        self.refs: dict[str, str] = {}
        self.made: dict[str, list[dict]] = {}  # entity -> the records `prepare` made (to be updated later)

    def close(self) -> None:
        self.api.close()

    def query(self, statement: str) -> list[dict]:
        answer = self.api.get("/query", params={"query": statement})
        assert answer.status_code == 200, answer.text
        return next(iter(v for k, v in answer.json()["QueryResponse"].items() if isinstance(v, list)), [])

    def look_up(self) -> None:
        def first(entity: str, where: str = "") -> str:
            return self.query(f"select * from {entity} {where} maxresults 1")[0]["Id"]
        self.refs = {"customer": first("Customer"), "vendor": first("Vendor"),
                     "item": first("Item", "where Name = 'Gardening'"),
                     "expense": first("Account", "where Name = 'Supplies'"),
                     "bank": first("Account", "where Name = 'Checking'"),
                     "card": first("Account", "where Name = 'Mastercard'"),
                     "deposit": first("Account", "where Name = 'Undeposited Funds'")}

    def body(self, entity: str, tag: str) -> dict:
        """A valid new record of `entity`; `tag` makes names unique."""
        r = self.refs
        sale = [{"Amount": 40, "DetailType": "SalesItemLineDetail",
                 "SalesItemLineDetail": {"ItemRef": {"value": r["item"]}, "Qty": 1, "UnitPrice": 40}}]
        expense = [{"Amount": 12.5, "DetailType": "AccountBasedExpenseLineDetail",
                    "AccountBasedExpenseLineDetail": {"AccountRef": {"value": r["expense"]}}}]
        customer, vendor = {"value": r["customer"]}, {"value": r["vendor"]}
        return {
            "Customer": {"DisplayName": f"Scale Customer {tag}"},
            "Vendor": {"DisplayName": f"Scale Vendor {tag}"},
            "Account": {"Name": f"Scale Account {tag}", "AccountType": "Expense"},
            "Invoice": {"CustomerRef": customer, "Line": sale},
            "Estimate": {"CustomerRef": customer, "Line": sale},
            "SalesReceipt": {"CustomerRef": customer, "Line": sale, "DepositToAccountRef": {"value": r["deposit"]}},
            "Payment": {"CustomerRef": customer, "TotalAmt": 25},
            "Bill": {"VendorRef": vendor, "Line": expense},
            "PurchaseOrder": {"VendorRef": vendor, "Line": [
                {"Amount": 12.5, "DetailType": "ItemBasedExpenseLineDetail",
                 "ItemBasedExpenseLineDetail": {"ItemRef": {"value": r["item"]}, "Qty": 1, "UnitPrice": 12.5}}]},
            "Purchase": {"PaymentType": "CreditCard", "AccountRef": {"value": r["card"]}, "Line": expense},
        }[entity]

    def batch(self, items: list[dict]) -> list[dict]:
        answers: list[dict] = []
        for start in range(0, len(items), 30):  # Intuit's most per batch request
            chunk = [{"bId": str(n), **item} for n, item in enumerate(items[start:start + 30])]
            answer = self.api.post("/batch", json={"BatchItemRequest": chunk})
            assert answer.status_code == 200, answer.text
            for item in answer.json()["BatchItemResponse"]:
                assert "Fault" not in item, item
                answers.append(item)
        return answers

    def prepare(self) -> None:
        """Two records of each entity, to be updated by `change` (before the workflows' `since`)."""
        items = [{"operation": "create", entity: self.body(entity, f"{self.realm} p{n}")}
                 for entity in TRIGGER_ENTITIES for n in range(2)]
        for item, answer in zip(items, self.batch(items), strict=True):
            entity = next(k for k in item if k != "operation")
            self.made.setdefault(entity, []).append(answer[entity])

    def change(self) -> dict[str, list[str]]:
        """The 40 changes; {trigger key: the record Ids it must fire for}."""
        items, updates = [], []
        for entity in TRIGGER_ENTITIES:
            for n in range(2):
                items.append({"operation": "create", entity: self.body(entity, f"{self.realm} c{n}")})
            for record in self.made[entity]:
                note = {"Customer": "Notes", "Vendor": "Notes", "Account": "Description"}.get(entity, "PrivateNote")
                items.append({"operation": "update", entity: {"Id": record["Id"], "SyncToken": record["SyncToken"],
                                                              "sparse": True, note: "changed"}})
                updates.append((entity, record["Id"]))
        expected: dict[str, list[str]] = {}
        for item, answer in zip(items, self.batch(items), strict=True):
            entity = next(k for k in item if k != "operation")
            kind = "new" if item["operation"] == "create" else "updated"
            expected.setdefault(f"{kind}_{_SNAKE[entity]}", []).append(answer[entity]["Id"])
        return expected

    def doc_numbers(self, entity: str, prefix: str) -> list[str]:
        return [r.get("DocNumber") for r in self.query(f"select * from {entity} where DocNumber like '{prefix}%' "
                                                       "maxresults 1000")]


# --- checks --------------------------------------------------------------------------------------------------
def succeeded_runs(db: Engine) -> int:
    with db.connect() as connection:
        return connection.scalar(select(func.count()).select_from(Run).where(Run.status == RUN_SUCCEEDED))


def wait_for(condition: Callable[[], bool], seconds: float, what: str, explain: Callable[[], str] = str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{explain()}")
        time.sleep(0.2)


def check_one_run_per_event(db: Engine, expected: dict[str, dict[str, list[str]]], realms: dict[str, str]) -> None:
    """Every event has exactly one run, succeeded; the events are exactly the changes (no more, no fewer)."""
    with db.connect() as connection:
        per_event = Counter(connection.scalars(select(Run.event_id)))
        statuses = Counter(connection.scalars(select(Run.status)))
        events = connection.execute(select(Event.id, Event.realm_id, Event.trigger_key, Event.record_id)).all()
        left = connection.scalar(text("SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing') "
                                      "AND task_name = 'qbflow.run'"))
    assert set(per_event.values()) == {1} and set(per_event) == {e.id for e in events}, "an event without one run"
    assert statuses == {RUN_SUCCEEDED: len(events)}, statuses
    seen = Counter((e.realm_id, e.trigger_key, e.record_id) for e in events)
    wanted = Counter((realms[name], key, record) for name, by_key in expected.items()
                     for key, records in by_key.items() for record in records)
    assert seen == wanted, (f"{len(seen)} events, {len(wanted)} changes; missing {list(wanted - seen)[:5]}, "
                            f"extra {list(seen - wanted)[:5]}")
    assert left == 0, f"{left} run jobs still queued"


def check_no_duplicates(companies: dict[str, Company], expected: dict[str, dict[str, list[str]]]) -> None:
    """QuickBooks holds exactly one invoice per new customer and one bill per new vendor."""
    for name, company in companies.items():
        invoices = company.doc_numbers("Invoice", "C-")
        bills = company.doc_numbers("Bill", "V-")
        assert sorted(invoices) == sorted(f"C-{c}" for c in expected[name]["new_customer"]), (name, invoices)
        assert sorted(bills) == sorted(f"V-{v}" for v in expected[name]["new_vendor"]), (name, bills)
