"""`qbflow up`: qbflow working on this machine within a minute, on the embedded defaults.

    await run_up(store, UpOptions(port=0, duration=45), authorize=authorize, console=console)

What it does, in order:

1. serves the built-in sandbox (`qbflow.sandbox.Sandbox`) under uvicorn in this process, on 127.0.0.1, with
   its books in `<data dir>/sandbox.sqlite3` so a restart finds the same company; with `connection=NAME`
   no sandbox is started and that stored connection is used instead;
2. makes the connection `sandbox` to it with `qbflow connect`'s authorization-code flow (the `authorize`
   callable), or reuses the stored one when it still answers;
3. stores and enables the example workflows shipped in `qbflow/examples/` (the repository's `examples/`
   folder is the same files), on that connection; the webhook example gets its URL on qbflow's server;
4. unless `activity=False`, and only on the built-in sandbox: a new customer, a new invoice, an edited
   expense and a new bill, made through the sandbox's API with the connection's token, then a paid shop order
   posted to the webhook example's URL (signed with its secret, which `up` makes anew and keeps in memory) and
   a bill over 5,000 whose approval `up` answers (approved), a few seconds apart, once the engine has activated
   the QuickBooks triggers (a trigger fires only for changes made after that);
5. serves qbflow's server (JSON API, webhooks, dashboard; `qbflow.server`) on 127.0.0.1:`server_port`, with
   the API token shown once when it is new;
6. runs the engine (`qbflow.app.run.run_engine`) until SIGINT, SIGTERM or `duration` seconds; runs in
   flight finish, then the servers stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from qbflow.engine.stored import stored_definition
from qbflow.engine.workflow import TriggerSpec, Workflow, load_workflow, trigger_kind
from qbflow.errors import QBFlowError

if TYPE_CHECKING:
    from qbflow.qbo.client import QBOClient
    from qbflow.sandbox.app import Sandbox
    from qbflow.server.serving import ServedApp
    from qbflow.store import ConnectionRecord, Store
    from qbflow.store.runs import RunStore, WorkflowRecord

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_SERVER_PORT",
    "SANDBOX_CONNECTION",
    "SANDBOX_DATA_FILE",
    "LocalSandbox",
    "UpError",
    "UpOptions",
    "example_files",
    "examples_dir",
    "install_examples",
    "load_examples",
    "run_up",
]

DEFAULT_PORT = 8765
DEFAULT_SERVER_PORT = 8000
SANDBOX_CONNECTION = "sandbox"  # the connection the examples name, and the one `up` makes to its sandbox
SANDBOX_DATA_FILE = "sandbox.sqlite3"  # in the data dir, next to qbflow's own database
ACTIVATION_TIMEOUT = 60.0  # seconds to wait for the engine's first poll before giving up on the activity
# Seconds after activation at which the scripted changes are made: spread out so each shows on its own,
# all well before the triggers' next poll (30 s after activation).
ACTIVITY_SCHEDULE = (3.0, 7.0, 11.0, 15.0, 18.0, 21.0)
APPROVAL_WAIT = 20.0  # seconds to wait for the big bill's run to ask for approval before giving up on answering
APPROVER = "controller@example.com"  # the approver named in big-bill-approval.yaml

# `qbflow connect`'s flow on a local sandbox: (name, sandbox URL, client id, client secret) -> the stored connection
Authorize = Callable[[str, str, str, str], Awaitable["ConnectionRecord"]]


class UpError(QBFlowError):
    """`qbflow up` cannot start as asked (port taken, a connection name already used elsewhere...)."""


@dataclass
class UpOptions:
    """What `qbflow up` was asked for."""

    port: int = DEFAULT_PORT  # of the built-in sandbox; 0 = a free one
    server_port: int = DEFAULT_SERVER_PORT  # of qbflow's server (API, webhooks, dashboard); 0 = a free one
    connection: str | None = None  # an existing connection instead of the built-in sandbox
    activity: bool = True  # the scripted changes in the built-in sandbox
    duration: float | None = None  # stop by itself after this many seconds
    tick: float = 1.0  # seconds between engine cycles
    live: bool | None = None  # the engine's live view (None: on a terminal)


# --- the examples ----------------------------------------------------------------------------------------

def examples_dir() -> Path:
    """The folder of example workflows installed with qbflow (the repository's `examples/` is the same)."""
    return Path(str(resources.files("qbflow") / "examples"))


def example_files() -> list[Path]:
    """The example workflow files, by name."""
    return sorted(path for path in examples_dir().iterdir() if path.suffix in (".yaml", ".yml"))


def load_examples(connection: str = SANDBOX_CONNECTION) -> list[Workflow]:
    """The example workflows, parsed and validated, with `connection` wherever they name `sandbox`."""
    workflows = []
    for path in example_files():
        workflow = load_workflow(path)
        if connection != SANDBOX_CONNECTION:
            if isinstance(workflow.trigger, TriggerSpec) and workflow.trigger.connection == SANDBOX_CONNECTION:
                workflow.trigger.connection = connection
            if workflow.connection == SANDBOX_CONNECTION:
                workflow.connection = connection
            for step in workflow.walk():  # nested steps too
                if step.connection == SANDBOX_CONNECTION:
                    step.connection = connection
        workflows.append(workflow)
    return workflows


def install_examples(runs: RunStore, connection: str = SANDBOX_CONNECTION) -> list[WorkflowRecord]:
    """Store the example workflows on `connection`, enabled (a stored workflow of the same name is replaced)."""
    return [runs.upsert_workflow(workflow.name, workflow.source, stored_definition(workflow), enabled=True)
            for workflow in load_examples(connection)]


def _kind(record: WorkflowRecord) -> str:
    definition = record.definition if isinstance(record.definition, dict) else {}
    return trigger_kind(definition.get("trigger") or {})


def _about(record: WorkflowRecord, hooks: dict[int, str]) -> str:
    """One workflow as the header lists it: its name and what starts it."""
    trigger = record.definition.get("trigger") or {}
    kind = _kind(record)
    if kind == "qbo":
        return f"{record.name} (polled every {trigger.get('poll_interval', 300):g} s)"
    if kind == "webhook":
        return f"{record.name} (POST {hooks[record.id]})" if record.id in hooks else f"{record.name} (webhook)"
    if kind == "schedule":
        when = trigger.get("cron") or f"every {trigger.get('every')}"
        return f"{record.name} (schedule {when} {trigger.get('timezone') or 'UTC'})"
    return f"{record.name} (by hand: qbflow workflow run {record.name!r})"


def _example_hooks(store: Store, workflows: list[WorkflowRecord], *, rotate: bool
                   ) -> dict[int, tuple[str, str | None]]:
    """The webhook examples' hooks: {workflow id: (URL path, secret or None)}. The secret is there when the hook was
    made now, or, with `rotate` (up's own activity signs its shop order), a new one kept in memory only."""
    from qbflow.engine.stored import ensure_hook

    hooks: dict[int, tuple[str, str | None]] = {}
    for record in workflows:
        made = ensure_hook(store.hooks, record)
        if made is None:
            continue
        hook, secret = made
        if secret is None and rotate:
            hook, secret = store.hooks.rotate(record.id)
        hooks[record.id] = (hook.path, secret)
    return hooks


# --- the built-in sandbox, served in this process ---------------------------------------------------------

class LocalSandbox:
    """The built-in sandbox served by uvicorn on 127.0.0.1 in the running event loop."""

    def __init__(self, data_file: Path, port: int = DEFAULT_PORT) -> None:
        from qbflow.sandbox.app import Sandbox

        self.data_file = data_file
        self.requested_port = port
        self.sandbox: Sandbox = Sandbox(data=str(data_file), auto_approve=True)
        self.built_at = datetime.now(UTC)  # a new company's seed records were created by now
        self.port: int | None = None
        self._served: ServedApp | None = None

    @property
    def url(self) -> str:
        assert self.port is not None, "start() first"
        return f"http://127.0.0.1:{self.port}"

    @property
    def company(self) -> tuple[str, str]:
        """(realm id, name) of its first company."""
        company = next(iter(self.sandbox.books.companies.values()))
        return company.realm_id, company.name

    async def start(self, timeout: float = 30.0) -> str:
        """Listen and serve; returns the base URL once the server answers."""
        from qbflow.server.serving import ServedApp, ServeError, bind

        try:
            sock = bind("127.0.0.1", self.requested_port)
        except ServeError as exc:
            raise UpError(f"the sandbox: {exc}; pass --port with another port, or --port 0 for any free one") \
                from None
        self.port = sock.getsockname()[1]
        self._served = ServedApp(self.sandbox, sock, name="sandbox server")
        try:
            await self._served.start(timeout)
        except ServeError as exc:
            raise UpError(str(exc)) from None
        return self.url

    async def seed_settled(self) -> None:
        """Wait until the second in which the sandbox was built (and a new company seeded) has passed.

        A trigger fires for records created from its activation second on (QBO times are whole seconds), so
        triggers activated in that same second would fire for the seed records too."""
        while datetime.now(UTC).replace(microsecond=0) <= self.built_at.replace(microsecond=0):
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """Stop serving (open requests get a few seconds) and close the books' file."""
        if self._served is not None:
            await self._served.stop()
        self._served = None
        close = getattr(self.sandbox.storage, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()


# --- the connection ---------------------------------------------------------------------------------------

async def _answers(store: Store, name: str) -> bool:
    """Whether the stored connection `name` reaches its company now (tokens refreshed if need be)."""
    from qbflow.qbo.connections import client_for

    try:
        async with await client_for(name, store) as qbo:
            await qbo.company_info()
    except QBFlowError:
        return False
    return True


async def sandbox_connection(store: Store, local: LocalSandbox, authorize: Authorize,
                             name: str = SANDBOX_CONNECTION) -> tuple[ConnectionRecord, str]:
    """The connection `name` to the built-in sandbox: reused when it points there and answers, else made
    (or remade) with `authorize`. Returns (record, "reused" | "connected" | "reconnected")."""
    from qbflow.qbo.connect import ENV_LOCAL
    from qbflow.store import ConnectionNotFound

    try:
        record: ConnectionRecord | None = store.connections.get(name)
    except ConnectionNotFound:
        record = None
    if record is not None:
        if record.environment != ENV_LOCAL:
            raise UpError(f"a connection named {name!r} already exists and is not a local sandbox "
                          f"({record.environment}, {record.company_name or record.realm_id}); qbflow up will not "
                          f"replace it. Run `qbflow up --connection {name}` to use it, or give it another name.")
        if (record.api_base.rstrip("/") == local.url and not record.needs_reconnect
                and record.realm_id in local.sandbox.realms and await _answers(store, name)):
            return record, "reused"
    fresh = await authorize(name, local.url, local.sandbox.client_id, local.sandbox.client_secret)
    return fresh, "connected" if record is None else "reconnected"


# --- the scripted activity --------------------------------------------------------------------------------

_NEWCOMERS = [("Juniper Lane Florist", "Ada", "Moreau", "juniperlane"),
              ("Kestrel Bike Works", "Sam", "Okonkwo", "kestrelbikes"),
              ("Larkspur Yoga Studio", "Mei", "Tanaka", "larkspuryoga"),
              ("Marigold Catering", "Luis", "Ferreira", "marigoldcatering")]


async def _first_id(qbo: QBOClient, entity: str, **where: Any) -> str | None:
    from qbflow.qbo.query import Query

    found = await qbo.query(Query(entity).where(**where).max(1))
    return str(found[0]["Id"]) if found else None


class _Activity:
    """The changes `up` makes in its sandbox so the examples have something to do."""

    def __init__(self, qbo: QBOClient, say: Callable[[str], None], *, store: Store | None = None,
                 hook: tuple[str, str] | None = None, stop: asyncio.Event | None = None) -> None:
        self.qbo = qbo
        self.say = say
        self.store = store
        self.hook = hook  # (URL, secret) of the shop-order webhook
        self.stop = stop or asyncio.Event()
        self.tag = secrets.token_hex(2)
        self.customer: dict | None = None

    async def new_customer(self) -> None:
        name, given, family, domain = secrets.choice(_NEWCOMERS)
        email = f"hello+{self.tag}@{domain}.example"
        self.customer = await self.qbo.create("Customer", {
            "DisplayName": f"{name} {self.tag}", "CompanyName": name, "GivenName": given, "FamilyName": family,
            "PrimaryEmailAddr": {"Address": email}})
        self.say(f"created customer {self.customer['DisplayName']!r} (Id {self.customer['Id']}, {email})")

    async def new_invoice(self) -> None:
        customer = self.customer or {}
        customer_id = customer.get("Id") or await _first_id(self.qbo, "Customer", Active=True)
        item_id = await _first_id(self.qbo, "Item", Name="Design") or await _first_id(self.qbo, "Item", Active=True)
        if customer_id is None or item_id is None:
            self.say("no customer or product to invoice; skipped the invoice")
            return
        invoice = await self.qbo.create("Invoice", {
            "CustomerRef": {"value": customer_id},
            "Line": [{"Amount": 150.0, "DetailType": "SalesItemLineDetail", "Description": "Garden design",
                      "SalesItemLineDetail": {"ItemRef": {"value": item_id}, "Qty": 2, "UnitPrice": 75}}]})
        self.say(f"created invoice {invoice.get('DocNumber') or invoice['Id']} for {invoice['TotalAmt']:.2f} "
                 f"(Id {invoice['Id']})")

    async def edit_expense(self) -> None:
        from qbflow.qbo.query import Query

        found = await self.qbo.query(Query("Purchase").order_by("MetaData.CreateTime", desc=True).max(1))
        if not found:
            self.say("no expense to edit; skipped the edit")
            return
        expense = await self.qbo.update("Purchase", {
            "Id": found[0]["Id"], "SyncToken": found[0]["SyncToken"],
            "PrivateNote": f"Receipt checked ({datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC)"})
        self.say(f"edited expense {expense['Id']} (its memo)")

    async def new_bill(self) -> None:
        vendor_id = (await _first_id(self.qbo, "Vendor", DisplayName="Hicks Hardware")
                     or await _first_id(self.qbo, "Vendor", Active=True))
        account_id = (await _first_id(self.qbo, "Account", Name="Supplies")
                      or await _first_id(self.qbo, "Account", AccountType="Expense"))
        if vendor_id is None or account_id is None:
            self.say("no vendor or expense account; skipped the bill")
            return
        bill = await self.qbo.create("Bill", {
            "VendorRef": {"value": vendor_id}, "DocNumber": f"HH-{self.tag}",
            "Line": [{"Amount": 86.4, "DetailType": "AccountBasedExpenseLineDetail", "Description": "Mulch and edging",
                      "AccountBasedExpenseLineDetail": {"AccountRef": {"value": account_id}}}]})
        self.say(f"created bill {bill.get('DocNumber') or bill['Id']} for {bill['TotalAmt']:.2f} (Id {bill['Id']})")

    async def shop_order(self) -> None:
        """A paid order of three items from the customer made above, posted to the shop-order webhook, signed."""
        import httpx

        from qbflow.engine.hooks import sign

        if self.hook is None:
            self.say("no webhook example installed; skipped the shop order")
            return
        url, secret = self.hook
        customer = self.customer or {}
        email = (customer.get("PrimaryEmailAddr") or {}).get("Address") or f"orders+{self.tag}@shop.example"
        number = f"{self.tag}01"
        order = {"id": f"up-{self.tag}-order-1", "order_number": number, "financial_status": "paid",
                 "customer": {"email": email, "first_name": customer.get("GivenName") or "Robin",
                              "last_name": customer.get("FamilyName") or "Shopper"},
                 "line_items": [{"sku": "Soil", "title": "Potting soil, 2 cu ft bag", "quantity": 4, "price": "10.00"},
                                {"sku": "Sprinkler Heads", "title": "Sprinkler head", "quantity": 12, "price": "2.00"},
                                {"sku": "Rock Fountain", "title": "Rock fountain", "quantity": 1, "price": "275.00"}]}
        body = json.dumps(order).encode()
        async with httpx.AsyncClient(timeout=30) as http:
            answer = await http.post(url, content=body, headers={"Content-Type": "application/json",
                                                                 **sign(secret, body)})
        if answer.status_code != 202:
            self.say(f"the shop order was refused: {answer.status_code} {answer.text[:200]}")
            return
        self.say(f"posted paid shop order {number} (3 items, for {email}), signed, to the webhook: "
                 f"run {answer.json().get('run_id')}")

    async def big_bill(self) -> None:
        """A bill over 5,000, then approving it once its run asks (as the approver would, by their link)."""
        from qbflow.store.approvals import ApprovalStore

        vendor_id = (await _first_id(self.qbo, "Vendor", DisplayName="Hicks Hardware")
                     or await _first_id(self.qbo, "Vendor", Active=True))
        account_id = (await _first_id(self.qbo, "Account", Name="Supplies")
                      or await _first_id(self.qbo, "Account", AccountType="Expense"))
        if vendor_id is None or account_id is None or self.store is None:
            self.say("no vendor or expense account; skipped the big bill")
            return
        doc = f"BB-{self.tag}"
        bill = await self.qbo.create("Bill", {
            "VendorRef": {"value": vendor_id}, "DocNumber": doc,
            "Line": [{"Amount": 7450.0, "DetailType": "AccountBasedExpenseLineDetail",
                      "Description": "Greenhouse frame and glazing",
                      "AccountBasedExpenseLineDetail": {"AccountRef": {"value": account_id}}}]})
        self.say(f"created bill {doc} for {bill['TotalAmt']:.2f} (Id {bill['Id']}): over 5,000, so it needs approval")
        approvals = ApprovalStore.of(self.store)
        deadline = asyncio.get_running_loop().time() + APPROVAL_WAIT
        while asyncio.get_running_loop().time() < deadline:
            asked = [a for a in await asyncio.to_thread(approvals.list) if a.message.startswith(f"Bill {doc} ")]
            if asked:
                await asyncio.to_thread(approvals.decide, asked[0].id, "approved", by=APPROVER,
                                        comment="Approved by qbflow up's scripted activity")
                self.say(f"approved bill {doc} as {APPROVER} (approval {asked[0].id}); its run goes on")
                return
            if await _wait_or_stop(self.stop, 0.5):
                return
        self.say(f"no approval was asked for bill {doc} within {APPROVAL_WAIT:g} s; left unanswered")


async def _wait_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Wait `seconds`; True if `stop` was set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=max(0.0, seconds))
    return stop.is_set()


async def _activated(runs: RunStore, workflows: list[WorkflowRecord], realm_id: str, stop: asyncio.Event,
                     timeout: float) -> bool:
    """Wait until the engine has polled each of these (QuickBooks-triggered) workflows once on `realm_id` (its
    cursor exists)."""
    wanted = {record.id for record in workflows}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not stop.is_set():
        polled = {c.workflow_id for c in await asyncio.to_thread(runs.list_cursors) if c.realm_id == realm_id}
        if wanted <= polled:
            return True
        if loop.time() > deadline or await _wait_or_stop(stop, 0.2):
            return False
    return False


async def scripted_activity(store: Store, runs: RunStore, workflows: list[WorkflowRecord], realm_id: str,
                            stop: asyncio.Event, say: Callable[[str], None],
                            hook: tuple[str, str] | None = None) -> None:
    """Once the triggers are active: a new customer, invoice, edited expense and bill, a paid shop order posted to
    `hook` (URL, secret), and a big bill whose approval is answered, a few seconds apart."""
    import httpx

    from qbflow.qbo.connections import client_for

    polled = [record for record in workflows if _kind(record) == "qbo"]  # only they have cursors to wait for
    if not await _activated(runs, polled, realm_id, stop, ACTIVATION_TIMEOUT):
        if not stop.is_set():
            say(f"the engine did not poll the examples within {ACTIVATION_TIMEOUT:g} s; no activity")
        return
    started = asyncio.get_running_loop().time()
    async with await client_for(SANDBOX_CONNECTION, store) as qbo:
        activity = _Activity(qbo, say, store=store, hook=hook, stop=stop)
        for at, change in zip(ACTIVITY_SCHEDULE, (activity.new_customer, activity.new_invoice,
                                                  activity.edit_expense, activity.new_bill, activity.shop_order,
                                                  activity.big_bill), strict=True):
            if await _wait_or_stop(stop, started + at - asyncio.get_running_loop().time()):
                return
            try:
                await change()
            except (QBFlowError, httpx.HTTPError) as error:
                say(f"{change.__name__.replace('_', ' ')} failed: {error}")
    say("done; the sandbox's webhooks start each change's runs within seconds (and the examples' polls, every "
        "30 s, would pick up anything a webhook missed)")


# --- up ---------------------------------------------------------------------------------------------------

def _header(rows: list[tuple[str, str]]) -> Table:
    table = Table(title="qbflow up", title_justify="left", show_header=False, box=None, padding=(0, 2, 0, 0))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, value)
    return table


def _data_rows() -> list[tuple[str, str]]:
    from sqlalchemy import make_url

    from qbflow.settings import get_settings

    settings = get_settings()
    database = make_url(settings.database_url).render_as_string(hide_password=True)
    return [("Data", f"{settings.data_dir}  (database {database})")]


async def _start_server(store: Store, engine: Any, port: int, local: LocalSandbox | None = None,
                        ) -> tuple[ServedApp, str, list[tuple[str, str]]]:
    """qbflow's server (API, webhooks, dashboard) on 127.0.0.1:`port`, handing webhooks to `engine` (which `up`
    runs itself); with the header rows saying where it is and which API token it takes. With the built-in
    sandbox (`local`), the sandbox sends its change notifications to this server, signed with a verifier made
    for this run, so the examples fire within a second instead of at their next poll."""
    from qbflow.server.app import ServerConfig, create_app
    from qbflow.server.auth import load_or_create_api_token
    from qbflow.server.serving import ServedApp, ServeError, bind
    from qbflow.settings import get_settings

    settings = get_settings()
    verifier = secrets.token_urlsafe(24) if local is not None else None
    if verifier is not None:
        settings.webhook_verifier = SecretStr(verifier)
    try:
        sock = bind("127.0.0.1", port)
    except ServeError as exc:
        raise UpError(f"qbflow's server: {exc}; pass --server-port with another port, or --server-port 0 for any "
                      f"free one") from None
    try:
        token, shown = load_or_create_api_token(settings)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = ServerConfig(store=store, settings=settings, api_token=token, engine=engine, run_engine=False,
                              public_url=settings.public_url.rstrip("/") or url)
        served = ServedApp(create_app(config), sock, name="qbflow server")
    except BaseException:
        sock.close()
        raise
    try:
        await served.start()
    except ServeError as exc:
        raise UpError(str(exc)) from None
    rows: list[tuple[str, str]] = []
    if local is not None and verifier is not None:
        from qbflow.sandbox.webhooks import WebhookConfig

        local.sandbox.webhooks.configure(WebhookConfig(url=f"{url}/webhooks/intuit", verifier_token=verifier))
        rows.append(("Webhooks", f"the sandbox notifies {url}/webhooks/intuit of every change (signed): runs start "
                                 f"within seconds; polling stays on as the safety net"))
    if shown is not None:
        about_token = (f"{shown}  (shown only this once: keep it; only its hash is stored, in {token.source}. Or set "
                       f"QBFLOW_API_TOKEN to a token of your own)")
    elif token.source == "QBFLOW_API_TOKEN":
        about_token = "the one in QBFLOW_API_TOKEN"
    else:
        about_token = f"the one shown when it was made (its hash is in {token.source}; or set QBFLOW_API_TOKEN)"
    return served, url, [("Server", f"{url}  (dashboard {url}/, JSON API {url}/api, documented at {url}/docs)"),
                    ("API token", about_token), *rows]


async def run_up(store: Store, options: UpOptions, *, authorize: Authorize, console: Console,
                 confirm: Callable[[str], bool] = lambda _question: False) -> None:
    """`qbflow up` (see the module doc). Returns when stopped; raises `QBFlowError` subclasses when it cannot
    start. `confirm(question)` is asked before the examples run on a production company."""
    from qbflow.app.run import EngineParts, build_engine, run_engine
    from qbflow.app.signals import stop_on_signals
    from qbflow.settings import get_settings
    from qbflow.store.runs import RunStore

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    runs = RunStore(store.engine)
    local: LocalSandbox | None = None
    served: ServedApp | None = None
    activity: asyncio.Task | None = None
    parts: EngineParts | None = None

    def say(text: str) -> None:
        console.print(f"[demo] {text}", markup=False, highlight=False)

    with stop_on_signals(stop, asyncio.current_task()):
        try:
            if options.connection is None:
                data_dir = get_settings().data_dir
                data_dir.mkdir(parents=True, exist_ok=True)
                local = LocalSandbox(data_dir / SANDBOX_DATA_FILE, options.port)
                await local.start()
                console.print(f"qbflow up: the built-in sandbox serves a local QuickBooks Online at {local.url}; "
                              f"connecting {SANDBOX_CONNECTION!r} to it", markup=False, highlight=False)
                record, how = await sandbox_connection(store, local, authorize)
                realm_id, company = local.company
                rows = [("Sandbox", f"{local.url}  ({company}, realm {realm_id}; a local QuickBooks Online, "
                                    f"books kept in {local.data_file})"),
                        ("Connection", f"{record.name} ({how})")]
            else:
                record = store.connections.get(options.connection)
                rows = [("Connection", f"{record.name}: {record.company_name or record.realm_id} "
                                       f"({record.environment}); no sandbox started")]
                if record.environment == "production" and not confirm(
                        f"The examples email every new invoice to its customer and attach a file to every new bill "
                        f"in {record.company_name or record.realm_id}, a real company. Go on?"):
                    raise UpError("stopped before anything was installed (not confirmed)")
            workflows = install_examples(runs, record.name)
            hooks = _example_hooks(store, workflows, rotate=local is not None and options.activity)
            parts = await build_engine(store)
            served, server_url, server_rows = await _start_server(store, parts.engine, options.server_port, local)
            public = (get_settings().public_url.rstrip("/") or server_url)
            rows.append(("Workflows", f"enabled (files in {examples_dir()}):"))
            rows += [("", _about(w, {i: public + path for i, (path, _s) in hooks.items()})) for w in workflows]
            rows += [("Hook secret", f"{w.name}: {secret}  (shown only this once: give it to the sender; "
                                     f"`qbflow hooks rotate` makes a new one)")
                     for w in workflows if w.id in hooks and (secret := hooks[w.id][1]) is not None
                     and not (local is not None and options.activity)]
            if local is not None and options.activity:
                rows.append(("Activity", "a new customer, invoice, edited expense and bill in the sandbox, a paid "
                                         "shop order posted to the webhook and a bill over 5,000 that up approves, "
                                         "over the next ~25 s; their runs follow within seconds"))
            elif local is None:
                rows.append(("Activity", "none on a real company: change something in QuickBooks to see a run"))
            rows += server_rows
            rows.append(("Runs", "qbflow runs list   ·   qbflow runs show ID   (in another terminal), or the "
                                 "dashboard"))
            rows += _data_rows()
            rows.append(("Stop", "Ctrl-C" + (f" (or it stops by itself after {options.duration:g} s)"
                                             if options.duration else "")))
            console.print(_header(rows))
            if stop.is_set():
                return
            if options.duration is not None:
                loop.call_later(options.duration, stop.set)
            if local is not None:
                await local.seed_settled()
            if local is not None and options.activity:
                shop = next(((server_url + path, secret) for path, secret in hooks.values() if secret is not None),
                            None)
                activity = asyncio.create_task(
                    scripted_activity(store, runs, workflows, local.company[0], stop, say, hook=shop))
            await run_engine(store, once=False, tick=options.tick, live=options.live, console=console, stop=stop,
                             parts=parts)
        finally:
            stop.set()
            if activity is not None:
                activity.cancel()
                with contextlib.suppress(BaseException):
                    await activity
            if served is not None:
                await served.stop()
            if parts is not None:
                await parts.aclose()
            if local is not None:
                await local.stop()
