"""`qbflow up`: qbflow working on this machine within a minute, on the embedded defaults.

    await run_up(store, UpOptions(port=0, duration=45), authorize=authorize, console=console)

What it does, in order:

1. serves the built-in sandbox (`qbflow.sandbox.Sandbox`) under uvicorn in this process, on 127.0.0.1, with
   its books in `<data dir>/sandbox.sqlite3` so a restart finds the same company; with `connection=NAME`
   no sandbox is started and that stored connection is used instead;
2. makes the connection `sandbox` to it with `qbflow connect`'s authorization-code flow (the `authorize`
   callable), or reuses the stored one when it still answers;
3. stores and enables the four example workflows shipped in `qbflow/examples/` (the repository's
   `examples/` folder is the same files), on that connection;
4. unless `activity=False`, and only on the built-in sandbox: a new customer, a new invoice, an edited
   expense and a new bill, made through the sandbox's API with the connection's token, a few seconds apart,
   once the engine has activated the triggers (a trigger fires only for changes made after that);
5. runs the engine (`qbflow.engine.live.run_engine`) until SIGINT, SIGTERM or `duration` seconds; runs in
   flight finish, then the sandbox server stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from qbflow.engine.workflow import Workflow, load_workflow
from qbflow.errors import QBFlowError

if TYPE_CHECKING:
    import uvicorn

    from qbflow.qbo.client import QBOClient
    from qbflow.sandbox.app import Sandbox
    from qbflow.store import ConnectionRecord, Store
    from qbflow.store.runs import RunStore, WorkflowRecord

__all__ = [
    "DEFAULT_PORT",
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
    "stored_definition",
]

DEFAULT_PORT = 8765
SANDBOX_CONNECTION = "sandbox"  # the connection the examples name, and the one `up` makes to its sandbox
SANDBOX_DATA_FILE = "sandbox.sqlite3"  # in the data dir, next to qbflow's own database
ACTIVATION_TIMEOUT = 60.0  # seconds to wait for the engine's first poll before giving up on the activity
# Seconds after activation at which the scripted changes are made: spread out so each shows on its own,
# all well before the triggers' next poll (30 s after activation).
ACTIVITY_SCHEDULE = (3.0, 7.0, 11.0, 15.0)

# `qbflow connect`'s flow on a local sandbox: (name, sandbox URL, client id, client secret) -> the stored connection
Authorize = Callable[[str, str, str, str], Awaitable["ConnectionRecord"]]


class UpError(QBFlowError):
    """`qbflow up` cannot start as asked (port taken, a connection name already used elsewhere...)."""


@dataclass
class UpOptions:
    """What `qbflow up` was asked for."""

    port: int = DEFAULT_PORT  # of the built-in sandbox; 0 = a free one
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
            if workflow.trigger.connection == SANDBOX_CONNECTION:
                workflow.trigger.connection = connection
            for step in workflow.steps:
                if step.connection == SANDBOX_CONNECTION:
                    step.connection = connection
        workflows.append(workflow)
    return workflows


def stored_definition(workflow: Workflow) -> dict[str, Any]:
    """A workflow as the store keeps it (what `qbflow workflow add` stores)."""
    definition = workflow.model_dump(mode="json")
    # JSON would write the interval as "PT30S", which the workflow format does not read back: seconds do.
    definition["trigger"]["poll_interval"] = workflow.trigger.poll_interval.total_seconds()
    return definition


def install_examples(runs: RunStore, connection: str = SANDBOX_CONNECTION) -> list[WorkflowRecord]:
    """Store the example workflows on `connection`, enabled (a stored workflow of the same name is replaced)."""
    return [runs.upsert_workflow(workflow.name, workflow.source, stored_definition(workflow), enabled=True)
            for workflow in load_examples(connection)]


# --- the built-in sandbox, served in this process ---------------------------------------------------------

def _server_class() -> type[uvicorn.Server]:
    import uvicorn

    class EmbeddedServer(uvicorn.Server):
        """uvicorn without its own signal handling: `up` catches SIGINT/SIGTERM and stops it in order."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return EmbeddedServer


class LocalSandbox:
    """The built-in sandbox served by uvicorn on 127.0.0.1 in the running event loop."""

    def __init__(self, data_file: Path, port: int = DEFAULT_PORT) -> None:
        from qbflow.sandbox.app import Sandbox

        self.data_file = data_file
        self.requested_port = port
        self.sandbox: Sandbox = Sandbox(data=str(data_file), auto_approve=True)
        self.built_at = datetime.now(UTC)  # a new company's seed records were created by now
        self.port: int | None = None
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task | None = None

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
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", self.requested_port))
        except OSError as exc:
            sock.close()
            raise UpError(f"cannot serve the sandbox on 127.0.0.1:{self.requested_port} ({exc.strerror}); "
                          "pass --port with another port, or --port 0 for any free one") from None
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.sandbox, log_config=None, log_level="warning", access_log=False,
                                lifespan="on", timeout_graceful_shutdown=5)
        self._server = _server_class()(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._server.started:
            if self._task.done():
                error = None if self._task.cancelled() else self._task.exception()
                raise UpError(f"the sandbox server did not start: {error or 'it stopped'}")
            if loop.time() > deadline:
                await self.stop()
                raise UpError(f"the sandbox server did not start within {timeout:g} s")
            await asyncio.sleep(0.05)
        return self.url

    async def seed_settled(self) -> None:
        """Wait until the second in which the sandbox was built (and a new company seeded) has passed.

        A trigger fires for records created from its activation second on (QBO times are whole seconds), so
        triggers activated in that same second would fire for the seed records too."""
        while datetime.now(UTC).replace(microsecond=0) <= self.built_at.replace(microsecond=0):
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """Stop serving (open requests get a few seconds) and close the books' file."""
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._task), 10)
            if not self._task.done():
                self._task.cancel()
                with contextlib.suppress(BaseException):
                    await self._task
        self._server = self._task = None
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

    def __init__(self, qbo: QBOClient, say: Callable[[str], None]) -> None:
        self.qbo = qbo
        self.say = say
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
        vendor_id = (await _first_id(self.qbo, "Vendor", DisplayName="Meadow Hardware")
                     or await _first_id(self.qbo, "Vendor", Active=True))
        account_id = (await _first_id(self.qbo, "Account", Name="Supplies")
                      or await _first_id(self.qbo, "Account", AccountType="Expense"))
        if vendor_id is None or account_id is None:
            self.say("no vendor or expense account; skipped the bill")
            return
        bill = await self.qbo.create("Bill", {
            "VendorRef": {"value": vendor_id}, "DocNumber": f"MH-{self.tag}",
            "Line": [{"Amount": 86.4, "DetailType": "AccountBasedExpenseLineDetail", "Description": "Mulch and edging",
                      "AccountBasedExpenseLineDetail": {"AccountRef": {"value": account_id}}}]})
        self.say(f"created bill {bill.get('DocNumber') or bill['Id']} for {bill['TotalAmt']:.2f} (Id {bill['Id']})")


async def _wait_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Wait `seconds`; True if `stop` was set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=max(0.0, seconds))
    return stop.is_set()


async def _activated(runs: RunStore, workflows: list[WorkflowRecord], realm_id: str, stop: asyncio.Event,
                     timeout: float) -> bool:
    """Wait until the engine has polled every example's trigger once on `realm_id` (its cursor exists)."""
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
                            stop: asyncio.Event, say: Callable[[str], None]) -> None:
    """Once the triggers are active: a new customer, invoice, edited expense and bill, a few seconds apart."""
    from qbflow.qbo.connections import client_for

    if not await _activated(runs, workflows, realm_id, stop, ACTIVATION_TIMEOUT):
        if not stop.is_set():
            say(f"the engine did not poll the examples within {ACTIVATION_TIMEOUT:g} s; no activity")
        return
    started = asyncio.get_running_loop().time()
    async with await client_for(SANDBOX_CONNECTION, store) as qbo:
        activity = _Activity(qbo, say)
        for at, change in zip(ACTIVITY_SCHEDULE, (activity.new_customer, activity.new_invoice,
                                                  activity.edit_expense, activity.new_bill), strict=True):
            if await _wait_or_stop(stop, started + at - asyncio.get_running_loop().time()):
                return
            try:
                await change()
            except QBFlowError as error:
                say(f"{change.__name__.replace('_', ' ')} failed: {error}")
    say("done; the engine picks these changes up at its next poll (the examples poll every 30 s)")


# --- up ---------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _signals_set(stop: asyncio.Event, task: asyncio.Task | None) -> Iterator[None]:
    """SIGINT and SIGTERM set `stop`; a second one cancels `task` (runs in flight are then abandoned, and
    resumed by the next engine start)."""
    loop = asyncio.get_running_loop()
    installed = []

    def handle() -> None:
        if stop.is_set() and task is not None:
            task.cancel()
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, handle)
            except (NotImplementedError, RuntimeError, ValueError):
                continue
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


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


async def run_up(store: Store, options: UpOptions, *, authorize: Authorize, console: Console,
                 confirm: Callable[[str], bool] = lambda _question: False) -> None:
    """`qbflow up` (see the module doc). Returns when stopped; raises `QBFlowError` subclasses when it cannot
    start. `confirm(question)` is asked before the examples run on a production company."""
    from qbflow.engine.live import run_engine
    from qbflow.settings import get_settings
    from qbflow.store.runs import RunStore

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    runs = RunStore(store.engine)
    local: LocalSandbox | None = None
    activity: asyncio.Task | None = None

    def say(text: str) -> None:
        console.print(f"[demo] {text}", markup=False, highlight=False)

    with _signals_set(stop, asyncio.current_task()):
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
            every = " or ".join(sorted({f"{w.definition['trigger']['poll_interval']:g} s" for w in workflows}))
            rows.append(("Workflows", f"{', '.join(w.name for w in workflows)}: enabled, polled every {every} "
                                      f"(files in {examples_dir()})"))
            if local is not None and options.activity:
                rows.append(("Activity", "a new customer, invoice, edited expense and bill in the sandbox over the "
                                         "next ~20 s; their runs follow within a minute"))
            elif local is None:
                rows.append(("Activity", "none on a real company: change something in QuickBooks to see a run"))
            rows.append(("Runs", "qbflow runs list   ·   qbflow runs show ID   (in another terminal)"))
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
                activity = asyncio.create_task(
                    scripted_activity(store, runs, workflows, local.company[0], stop, say))
            await run_engine(store, once=False, tick=options.tick, live=options.live, console=console, stop=stop)
        finally:
            stop.set()
            if activity is not None:
                activity.cancel()
                with contextlib.suppress(BaseException):
                    await activity
            if local is not None:
                await local.stop()
