"""The four scenario examples of `examples/` end to end, through the real engine pieces (the store, the engine's
cycle with an injected clock, the runner, the server for webhooks and approval links) against the in-process
sandbox, every effect read back from QuickBooks with separate reads (a fresh client, or the sandbox's own outbox):

- `shop-order-invoice.yaml`: a signed shop order posted to the webhook → find or create the customer → an invoice
  with one line per item → emailed, once (a retried delivery starts no second run);
- `monday-overdue-reminders.yaml`: Monday 08:00 Pacific → one reminder per overdue invoice; the same fire time
  sends nothing twice; the next Monday reminds what is still overdue (again: it still is) and not what was paid;
- `big-bill-approval.yaml`: a bill over 5,000 waits for the approver: approved (by the signed link) → approval
  attached and noted; rejected, or no answer within 3 days → noted on the bill and the bookkeeper told;
- `email-invoice-on-request.yaml` (and the shop order's on_error): a failure is posted to the team's chat.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from qbflow.app.up import examples_dir
from qbflow.engine.manual import start_manual_run
from qbflow.engine.runner import Runner
from qbflow.engine.scheduler import Engine
from qbflow.engine.stored import store_workflow
from qbflow.engine.workflow import Workflow, load_workflow
from qbflow.qbo import StaticTokens
from qbflow.sandbox.app import Sandbox
from qbflow.store import RunStore, Store
from qbflow.store.approvals import ApprovalStore
from qbflow.store.models import RUN_FAILED, RUN_SUCCEEDED
from tests.support.clients import make_client
from tests.support.engine import FAST, Clients, Clock

pytestmark = pytest.mark.usefixtures("isolated_data_dir")

CONNECTION = "acme"
PUBLIC_URL = "http://qbflow.test"
PACIFIC = ZoneInfo("America/Los_Angeles")


def example(file: str) -> Workflow:
    """The example file as shipped, on the test's connection instead of `sandbox`."""
    workflow = load_workflow(examples_dir() / file)
    if workflow.connection is not None:
        workflow.connection = CONNECTION
    if getattr(workflow.trigger, "connection", None) is not None:
        workflow.trigger.connection = CONNECTION  # type: ignore[union-attr]
    return workflow


class Chat:
    """The team's chat: records every message posted to it (the runner's http.request transport)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.urls: list[str] = []

    def transport(self) -> httpx.MockTransport:
        def answer(request: httpx.Request) -> httpx.Response:
            self.urls.append(str(request.url))
            self.messages.append(json.loads(request.content))
            return httpx.Response(200, json={"ok": True})

        return httpx.MockTransport(answer)


class Books:
    """Separate reads of the sandbox company: a fresh client per read, and the sandbox's own outbox."""

    def __init__(self, sandbox: Sandbox, realm: str, token: str) -> None:
        self.sandbox, self.realm, self.token = sandbox, realm, token

    async def query(self, text: str) -> list[dict]:
        async with make_client(self.sandbox, self.realm, StaticTokens(self.token)) as qbo:
            return [record async for record in qbo.query_all(text)]

    async def get(self, entity: str, record_id: str) -> dict:
        async with make_client(self.sandbox, self.realm, StaticTokens(self.token)) as qbo:
            return await qbo.get(entity, record_id)

    async def create(self, entity: str, body: dict) -> dict:
        async with make_client(self.sandbox, self.realm, StaticTokens(self.token)) as qbo:
            return await qbo.create(entity, body)

    async def item(self, name: str) -> dict:
        return (await self.query(f"select * from Item where Name = '{name}'"))[0]

    def emails(self, entity: str = "Invoice") -> list[dict]:
        return [mail for mail in self.sandbox.books.companies[self.realm].outbox if mail["entity"] == entity]

    def emails_for(self, invoice_id: str) -> list[dict]:
        return [mail for mail in self.emails() if mail["id"] == invoice_id]


@pytest.fixture
def books(sandbox: Sandbox, realm: str, token: str) -> Books:
    return Books(sandbox, realm, token)


@pytest.fixture
def approvals(store: Store) -> ApprovalStore:
    return ApprovalStore.of(store)


@pytest.fixture
def chat() -> Chat:
    return Chat()


def make_engine(runs: RunStore, sandbox: Sandbox, realm: str, token: str, clock: Callable[[], datetime],
                chat: Chat, approvals: ApprovalStore | None = None) -> Engine:
    clients = Clients(sandbox, realm, token)
    runner = Runner(runs, clients, retry=FAST, now=clock, http_transport=chat.transport(), approvals=approvals,
                    public_url=PUBLIC_URL)
    return Engine(runs, clients, runner, clock=clock)


def all_runs(runs: RunStore) -> list[Any]:
    return [runs.get_run(run.id) for run in runs.list_runs(limit=1000)]


# --- the shop order -----------------------------------------------------------------------------------------------

THREE_ITEMS = [{"sku": "Soil", "title": "Potting soil, 2 cu ft bag", "quantity": 4, "price": "10.00"},
               {"sku": "Sprinkler Heads", "title": "Sprinkler head", "quantity": 12, "price": "2.00"},
               {"sku": "Rock Fountain", "title": "Rock fountain", "quantity": 1, "price": "275.00"}]


def shop_order(number: str, email: str, first: str, last: str, items: list[dict]) -> dict:
    """A paid order as the shop posts it."""
    return {"id": f"gid://shop/Order/{number}", "order_number": number, "financial_status": "paid",
            "customer": {"email": email, "first_name": first, "last_name": last}, "line_items": items}


def server_app(store: Store, sandbox: Sandbox, on_runs: Any = None) -> Any:
    """The server on `store`; `on_runs` as `serve --workers` sets it (each new run's job enqueued with it)."""
    from qbflow.server import ServerConfig, create_app
    from qbflow.settings import get_settings
    from tests.server.conftest import api_token_checker

    return create_app(ServerConfig(store=store, settings=get_settings(), api_token=api_token_checker(),
                                   public_url=PUBLIC_URL, transport=httpx.ASGITransport(app=sandbox),
                                   on_runs=on_runs))


async def test_a_paid_shop_order_becomes_one_emailed_invoice_with_a_line_per_item(
        store: Store, runs: RunStore, sandbox: Sandbox, realm: str, token: str, books: Books, chat: Chat) -> None:
    from qbflow.engine.hooks import sign
    from qbflow.engine.stored import ensure_hook

    record, _ = store_workflow(runs, example("shop-order-invoice.yaml"), None)
    made = ensure_hook(store.hooks, record)  # as `qbflow workflow add` does: the URL, and the secret shown once
    assert made is not None and made[1] is not None
    hook, secret = made
    qbflow = make_engine(runs, sandbox, realm, token, lambda: datetime.now(UTC), chat)
    customers_before = len(await books.query("select * from Customer"))
    windsurf = (await books.query("select * from Customer where DisplayName = 'Bill\\'s Windsurf Shop'"))[0]

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=server_app(store, sandbox)),
                                 base_url=PUBLIC_URL) as web:
        async def post(order: dict) -> httpx.Response:
            body = json.dumps(order).encode()
            return await web.post(hook.path, content=body, headers={"Content-Type": "application/json",
                                                                    **sign(secret, body)})

        new = shop_order("1001", "ivy@newleafstudio.example", "Ivy", "Nguyen", THREE_ITEMS)
        first = await post(new)
        assert first.status_code == 202, first.text
        existing = shop_order("1002", "Surf@Intuit.com", "Bill", "Lucchini", THREE_ITEMS[:2])
        assert (await post(existing)).status_code == 202
        assert (await qbflow.cycle()).runs == 2
        # The shop retries the first delivery (it missed the answer): no second run, invoice or email.
        again = await post(new)
        assert again.status_code == 202 and again.json().get("duplicate") is True
        assert (await qbflow.cycle()).runs == 0
        unforged = await web.post(hook.path, content=json.dumps(shop_order("1009", "x@y.example", "X", "Y",
                                                                           THREE_ITEMS)).encode(),
                                  headers={"Content-Type": "application/json", **sign("not-the-secret", b"{}")})
        assert unforged.status_code == 401  # a forged order starts nothing

    assert [(run.status, run.error) for run in all_runs(runs)] == [(RUN_SUCCEEDED, None)] * 2
    # A new customer: created once, with the order's name and email.
    (ivy,) = await books.query("select * from Customer where PrimaryEmailAddr = 'ivy@newleafstudio.example'")
    assert ivy["DisplayName"] == "Ivy Nguyen" and (ivy["GivenName"], ivy["FamilyName"]) == ("Ivy", "Nguyen")
    assert len(await books.query("select * from Customer")) == customers_before + 1  # the existing one was found

    # The 3-item order: a 3-line invoice for the new customer, emailed once.
    (invoice,) = await books.query("select * from Invoice where DocNumber = 'SHOP-1001'")
    assert invoice["CustomerRef"]["value"] == ivy["Id"]
    lines = [line for line in invoice["Line"] if line["DetailType"] == "SalesItemLineDetail"]
    assert [(line["SalesItemLineDetail"]["ItemRef"]["name"], line["Description"], line["SalesItemLineDetail"]["Qty"],
             line["SalesItemLineDetail"]["UnitPrice"], line["Amount"]) for line in lines] == [
        ("Soil", "Potting soil, 2 cu ft bag", 4, 10.0, 40.0), ("Sprinkler Heads", "Sprinkler head", 12, 2.0, 24.0),
        ("Rock Fountain", "Rock fountain", 1, 275.0, 275.0)]
    assert invoice["TotalAmt"] == 339.0 and invoice["EmailStatus"] == "EmailSent"
    (mail,) = books.emails_for(invoice["Id"])
    assert mail["to"] == "ivy@newleafstudio.example"

    # The existing customer's order: their invoice, 2 lines, emailed once.
    (theirs,) = await books.query("select * from Invoice where DocNumber = 'SHOP-1002'")
    assert theirs["CustomerRef"]["value"] == windsurf["Id"]
    assert len([line for line in theirs["Line"] if line["DetailType"] == "SalesItemLineDetail"]) == 2
    assert [m["to"] for m in books.emails_for(theirs["Id"])] == ["Surf@Intuit.com"]
    assert len(books.emails()) == 2 and chat.messages == []
    run = runs.get_run(first.json()["run_id"])
    assert run.step("note").output["message"] == (
        "Shop order 1001: invoice SHOP-1001 (3 line(s), 339.00) emailed to ivy@newleafstudio.example (new customer "
        "Ivy Nguyen)")


async def test_a_shop_order_that_cannot_be_invoiced_is_posted_to_the_team_chat(
        store: Store, runs: RunStore, sandbox: Sandbox, realm: str, token: str, books: Books, chat: Chat) -> None:
    from qbflow.engine.hooks import sign
    from qbflow.engine.stored import ensure_hook

    record, _ = store_workflow(runs, example("shop-order-invoice.yaml"), None)
    made = ensure_hook(store.hooks, record)
    assert made is not None and made[1] is not None
    hook, secret = made
    order = shop_order("1003", "Surf@Intuit.com", "Bill", "Lucchini",
                       [*THREE_ITEMS[:1], {"sku": "Unicorn Saddle", "title": "Saddle", "quantity": 1, "price": "9.00"}])
    body = json.dumps(order).encode()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=server_app(store, sandbox)),
                                 base_url=PUBLIC_URL) as web:
        answer = await web.post(hook.path, content=body, headers={"Content-Type": "application/json",
                                                                  **sign(secret, body)})
    assert answer.status_code == 202, answer.text
    assert (await make_engine(runs, sandbox, realm, token, lambda: datetime.now(UTC), chat).cycle()).runs == 1
    run = runs.get_run(answer.json()["run_id"])
    assert run.status == RUN_FAILED and run.step("invoice").status == "failed"
    (posted,) = chat.messages
    assert chat.urls == ["https://chat.example.com/hooks/qbflow"]
    assert posted["text"].startswith("Shop order 1003 was not invoiced: invoice failed: ")
    assert "Unicorn Saddle" in posted["text"]
    assert await books.query("select * from Invoice where DocNumber = 'SHOP-1003'") == []
    assert books.emails() == []


# --- the Monday reminder ----------------------------------------------------------------------------------------

def next_monday_8am(after: datetime) -> datetime:
    """The first Monday 08:00 Pacific time after `after`, in UTC."""
    local = after.astimezone(PACIFIC)
    day = local.date() + timedelta(days=1)
    while day.weekday() != 0:
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, 8, tzinfo=PACIFIC).astimezone(UTC)


async def overdue_on(books: Books, day: date) -> set[str]:
    """The invoices unpaid and due before `day`, by reading every invoice (not through the action's filter)."""
    return {invoice["Id"] for invoice in await books.query("select * from Invoice")
            if invoice.get("Balance", 0) > 0 and invoice.get("DueDate") and invoice["DueDate"] < day.isoformat()}


async def reminder_invoices(books: Books, day: date) -> Callable[[int, str], Awaitable[dict]]:
    """What makes the Monday reminder's test invoices: `invoice(due_in, doc)` is one of 75.00 to Bill's Windsurf Shop,
    issued 40 days before `day` and due `due_in` days after it."""
    customer = (await books.query("select * from Customer where DisplayName = 'Bill\\'s Windsurf Shop'"))[0]
    design = await books.item("Design")

    async def invoice(due_in: int, doc: str) -> dict:
        return await books.create("Invoice", {
            "CustomerRef": {"value": customer["Id"]}, "DocNumber": doc,
            "TxnDate": (day - timedelta(days=40)).isoformat(), "DueDate": (day + timedelta(days=due_in)).isoformat(),
            "Line": [{"Amount": 75.0, "DetailType": "SalesItemLineDetail",
                      "SalesItemLineDetail": {"ItemRef": {"value": design["Id"]}, "Qty": 1, "UnitPrice": 75}}]})

    return invoice


async def test_the_monday_reminder_emails_each_overdue_invoice_once_per_fire_time(
        runs: RunStore, sandbox: Sandbox, realm: str, token: str, books: Books, chat: Chat) -> None:
    monday = next_monday_8am(datetime.now(UTC))
    day = monday.astimezone(PACIFIC).date()
    invoice = await reminder_invoices(books, day)

    late, just_late, due_today, not_yet, paid = (await invoice(-10, "R-LATE"), await invoice(-1, "R-JUST"),
                                                 await invoice(0, "R-TODAY"), await invoice(5, "R-LATER"),
                                                 await invoice(-20, "R-PAID"))
    await books.create("Payment", {"CustomerRef": paid["CustomerRef"], "TotalAmt": 75.0, "Line": [
        {"Amount": 75.0, "LinkedTxn": [{"TxnId": paid["Id"], "TxnType": "Invoice"}]}]})
    expected = await overdue_on(books, day)  # these and the sample company's own overdue invoices
    assert {late["Id"], just_late["Id"]} <= expected
    assert not {due_today["Id"], not_yet["Id"], paid["Id"]} & expected

    store_workflow(runs, example("monday-overdue-reminders.yaml"), None)
    clock = Clock(monday - timedelta(days=1))  # the Sunday before: the schedule starts from now
    qbflow = make_engine(runs, sandbox, realm, token, clock, chat)
    assert (await qbflow.cycle()).runs == 0
    clock.set(monday - timedelta(seconds=1))
    assert (await qbflow.cycle()).runs == 0 and books.emails() == []
    clock.set(monday + timedelta(seconds=1))
    report = await qbflow.cycle()
    assert report.runs == 1 and report.errors == []
    (run,) = all_runs(runs)
    assert run.status == RUN_SUCCEEDED, run.error
    sent = books.emails()
    assert sorted(mail["id"] for mail in sent) == sorted(expected)  # exactly one email per overdue invoice
    assert all(mail["to"] == "Surf@Intuit.com" for mail in sent if mail["id"] in (late["Id"],
                                                                                             just_late["Id"]))
    for invoice_id in (late["Id"], just_late["Id"]):
        assert (await books.get("Invoice", invoice_id))["EmailStatus"] == "EmailSent"
    assert run.step("note").output["message"].startswith(f"{day.isoformat()}: reminded {len(expected)} overdue ")

    # The same fire time sends nothing twice: later cycles of this engine, and another engine's collector.
    for moment in (monday + timedelta(seconds=30), monday + timedelta(hours=9)):
        clock.set(moment)
        assert (await qbflow.cycle()).runs == 0
    assert (await make_engine(runs, sandbox, realm, token, clock, chat).cycle()).runs == 0
    assert len(books.emails()) == len(expected) and len(all_runs(runs)) == 1

    # One of them is paid during the week; next Monday the others are reminded again (they are still overdue:
    # a reminder a week is the point), the paid one is not.
    await books.create("Payment", {"CustomerRef": just_late["CustomerRef"], "TotalAmt": 75.0, "Line": [
        {"Amount": 75.0, "LinkedTxn": [{"TxnId": just_late["Id"], "TxnType": "Invoice"}]}]})
    next_monday = next_monday_8am(monday)
    expected_next = await overdue_on(books, next_monday.astimezone(PACIFIC).date())
    assert late["Id"] in expected_next and just_late["Id"] not in expected_next
    clock.set(next_monday + timedelta(seconds=2))
    assert (await qbflow.cycle()).runs == 1
    second = sorted(mail["id"] for mail in books.emails()[len(expected):])
    assert second == sorted(expected_next)
    assert len(books.emails_for(late["Id"])) == 2 and len(books.emails_for(just_late["Id"])) == 1
    assert {run.status for run in all_runs(runs)} == {RUN_SUCCEEDED} and chat.messages == []


# --- the bill approval ------------------------------------------------------------------------------------------

async def new_bill(books: Books, amount: float, doc: str) -> dict:
    vendor = (await books.query("select * from Vendor where DisplayName = 'Hicks Hardware'"))[0]
    account = (await books.query("select * from Account where Name = 'Supplies'"))[0]
    return await books.create("Bill", {"VendorRef": {"value": vendor["Id"]}, "DocNumber": doc, "Line": [
        {"Amount": amount, "DetailType": "AccountBasedExpenseLineDetail",
         "AccountBasedExpenseLineDetail": {"AccountRef": {"value": account["Id"]}}}]})


async def attachments_of(books: Books, bill_id: str) -> list[dict]:
    return [a for a in await books.query("select * from Attachable")
            if any(ref.get("EntityRef", {}).get("type") == "Bill" and ref["EntityRef"].get("value") == bill_id
                   for ref in a.get("AttachableRef") or [])]


async def test_a_big_bill_is_approved_rejected_or_timed_out_and_the_answer_is_filed(
        store: Store, runs: RunStore, sandbox: Sandbox, realm: str, token: str, books: Books, chat: Chat,
        approvals: ApprovalStore) -> None:
    from qbflow.server import ServerConfig, create_app
    from qbflow.settings import get_settings
    from tests.server.conftest import api_token_checker

    record, _ = store_workflow(runs, example("big-bill-approval.yaml"), None)
    clock = Clock(datetime.now(UTC))
    qbflow = make_engine(runs, sandbox, realm, token, clock, chat, approvals)
    await qbflow.cycle(force=True)  # activates the trigger: bills from now on
    small = await new_bill(books, 86.40, "SMALL-1")
    approved = await new_bill(books, 7500.00, "BIG-OK")
    rejected = await new_bill(books, 5000.01, "BIG-NO")
    silent = await new_bill(books, 12000.00, "BIG-SILENT")
    clock.set(datetime.now(UTC))
    report = await qbflow.cycle(force=True)
    assert report.errors == []
    started = {run.event.record_id: run for run in all_runs(runs)}
    assert set(started) == {approved["Id"], rejected["Id"], silent["Id"]}  # not the bill of 86.40
    assert {run.status for run in started.values()} == {"waiting"}
    asked = {bill_id: approvals.for_step(run.id, "approval") for bill_id, run in started.items()}
    assert all(a is not None and a.approvers == ("controller@example.com",) for a in asked.values())
    assert asked[approved["Id"]].message == (  # type: ignore[union-attr]
        f"Bill BIG-OK from Hicks Hardware for 7500.00 (due {approved['DueDate']}): approve it for payment?")

    # Approved through the approver's signed link (the page's Approve button); rejected on the API's behalf.
    app = create_app(ServerConfig(store=store, settings=get_settings(), api_token=api_token_checker(),
                                  public_url=PUBLIC_URL, transport=httpx.ASGITransport(app=sandbox)))
    link = approvals.link_token(asked[approved["Id"]], "controller@example.com")  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC_URL) as web:
        answer = await web.post(f"/approvals/respond/{link}", data={"decision": "approved", "comment": "budgeted"})
    assert answer.status_code == 200, answer.text
    approvals.decide(asked[rejected["Id"]].id, "rejected", by="controller@example.com",  # type: ignore[union-attr]
                     comment="wrong vendor")
    clock.set(datetime.now(UTC) + timedelta(minutes=1))
    assert (await qbflow.cycle()).runs == 2
    assert runs.get_run(started[silent["Id"]].id).status == "waiting"  # no answer yet

    # Approved: the approval attached to the bill and noted in its memo; nobody else told.
    done = runs.get_run(started[approved["Id"]].id)
    assert done.status == RUN_SUCCEEDED, done.error
    bill = await books.get("Bill", approved["Id"])
    today = datetime.now(UTC).date().isoformat()
    assert bill["PrivateNote"] == f"Approved by controller@example.com on {today}"
    (attached,) = await attachments_of(books, approved["Id"])
    assert attached["FileName"] == f"bill-{approved['Id']}-approval.txt"
    content = base64.b64decode(done.step("decision.attach_approval").input["content_base64"]).decode()
    assert content.startswith("Bill BIG-OK for 7500.00\nApproved by controller@example.com at ")
    assert "\nComment: budgeted\n" in content
    downloaded = await books.get("Attachable", attached["Id"])
    assert downloaded["Note"] == "Approval for payment, filed by qbflow."

    # Rejected: noted, the bookkeeper told, nothing attached.
    done = runs.get_run(started[rejected["Id"]].id)
    assert done.status == RUN_SUCCEEDED, done.error
    assert (await books.get("Bill", rejected["Id"]))["PrivateNote"] == \
        f"Not approved: rejected by controller@example.com on {today}"
    assert await attachments_of(books, rejected["Id"]) == []
    (told,) = chat.messages
    assert chat.urls == ["https://chat.example.com/hooks/bookkeeping"]
    assert told["bill_id"] == rejected["Id"] and told["outcome"] == "rejected"
    assert told["text"] == "Bill BIG-NO (5000.01) was not approved (rejected by controller@example.com): do not pay it."

    # No answer within 3 days: the timeout's outcome; noted, the bookkeeper told.
    clock.set(clock() + timedelta(days=3))
    assert (await qbflow.cycle()).runs == 1
    done = runs.get_run(started[silent["Id"]].id)
    assert done.status == RUN_SUCCEEDED, done.error
    assert done.step("approval").output["timed_out"] is True
    assert (await books.get("Bill", silent["Id"]))["PrivateNote"] == "Not approved: no answer within 3 days"
    assert chat.messages[-1]["outcome"] == "timed_out" and len(chat.messages) == 2
    assert await attachments_of(books, silent["Id"]) == []
    assert (await books.get("Bill", small["Id"])).get("PrivateNote") in (None, "")  # never asked about


# --- the error path ---------------------------------------------------------------------------------------------

async def test_a_failure_is_posted_to_the_team_chat(runs: RunStore, sandbox: Sandbox, realm: str, token: str,
                                                   books: Books, chat: Chat) -> None:
    store_workflow(runs, example("email-invoice-on-request.yaml"), None)
    qbflow = make_engine(runs, sandbox, realm, token, lambda: datetime.now(UTC), chat)
    invoice = (await books.query("select * from Invoice"))[-1]

    good = start_manual_run(runs, "Email an invoice on request", {"doc_number": invoice["DocNumber"]},
                            started_by="cli")
    bad = start_manual_run(runs, "Email an invoice on request", {"doc_number": "NO-SUCH-1"}, started_by="cli")
    assert (await qbflow.cycle()).runs == 2

    done = runs.get_run(good)
    assert done.status == RUN_SUCCEEDED, done.error
    assert len(books.emails_for(invoice["Id"])) == 1
    failed = runs.get_run(bad)
    assert failed.status == RUN_FAILED and failed.step("send").status == "failed"
    assert failed.step("on_error.tell_team").status == "succeeded"
    (posted,) = chat.messages  # only the failure was posted, once
    assert chat.urls == ["https://chat.example.com/hooks/qbflow"]
    assert posted["step"] == "send" and posted["kind"] == "permanent"
    assert posted["message"] == "template '{{ steps.found.output.records[0].Id }}': undefined: list object has no " \
                                "element 0"  # no invoice has that number
    assert failed.error == f"step 'send' (send_invoice): {posted['message']}"
    assert posted["text"] == f"Emailing invoice NO-SUCH-1 failed at send: {posted['message']}"
    assert len(books.emails()) == 1  # nothing else was emailed
