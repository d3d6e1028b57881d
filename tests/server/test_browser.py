"""The dashboard in a real browser: Debian's headless Chromium, driven by Playwright, clicks through what a user
does. Log in, connect the local `qbflow sandbox` (clicking its consent page), upload two workflows and turn them
on, change something in QuickBooks, watch the runs appear, open them, retry the failed one after fixing its
cause, disconnect.

The server is `create_app` under uvicorn on 127.0.0.1 (a free port, in a thread) with its engine running; that
engine polls at every short tick (the 30 s minimum interval of the workflow format would make the test slow),
which changes only *when* it looks, not what it finds or runs. Skipped when Chromium is not installed (`.ci/run`
installs Debian's `chromium`; never a browser downloaded by Playwright).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from qbflow.engine.runner import Runner, store_clients
from qbflow.engine.scheduler import Engine
from qbflow.server import ServerConfig, create_app
from qbflow.server.auth import load_or_create_api_token
from qbflow.settings import Settings
from qbflow.store import RunStore, SecretBox, Store, open_store
from tests.support.connect import CLIENT_ID, CLIENT_SECRET
from tests.support.sandbox import free_port, running_sandbox

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason="Chromium is not installed (Debian: apt-get install chromium; .ci/run does)")
playwright_api = pytest.importorskip("playwright.async_api", reason="the playwright package is not installed")

API_TOKEN = "browser-test-api-token-0123456789"
DEADLINE = 30.0  # seconds any wait for the engine may take

GREET = """\
name: Greet new customers
trigger: {key: new_customer, connection: books, poll_interval: 30s}
steps:
  - id: say
    action: log
    input: {message: "Welcome {{ trigger.DisplayName }}"}
"""

# Fails until the item "Tour Widget" exists in QuickBooks: the invoice's line names it.
INVOICE = """\
name: Invoice new customers
trigger: {key: new_customer, connection: books, poll_interval: 30s}
steps:
  - id: invoice
    action: create_invoice
    input:
      customer: "{{ trigger.Id }}"
      lines: [{item: Tour Widget, qty: 2, unit_price: 15}]
"""


class EveryTickEngine(Engine):
    """The engine, polling at every tick instead of every poll_interval (the format's minimum is 30 s)."""

    async def cycle(self, *, force: bool = False) -> Any:
        return await super().cycle(force=True)


class ServerThread:
    """uvicorn serving the app on 127.0.0.1 in a thread with its own event loop; stops when asked."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, name="qbflow-server", daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        wait_until(lambda: self.server.started or not self.thread.is_alive(), "the server to start")
        assert self.server.started, "the server did not start"
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def wait_until(condition: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)
    return value


@pytest.fixture
def sandbox_url() -> Iterator[str]:
    """`qbflow sandbox` with its consent page (no --auto-approve), the test app's credentials."""
    with running_sandbox("--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET, "--no-rate-limit") as (base, _):
        yield base


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Store]]:
    for name in list(os.environ):
        if name.startswith("QBFLOW_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("QBFLOW_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("QBFLOW_CLIENT_SECRET", CLIENT_SECRET)
    settings = Settings(data_dir=tmp_path / "data", api_token=SecretStr(API_TOKEN))
    store = open_store(settings, url=f"sqlite:///{tmp_path / 'qbflow.sqlite3'}",
                       box=SecretBox([SecretBox.generate_key()]))
    runs = RunStore(store.engine)
    clients = store_clients(store)
    engine = EveryTickEngine(runs, clients, Runner(runs, clients))
    token, _ = load_or_create_api_token(settings)
    app = create_app(ServerConfig(store=store, settings=settings, api_token=token, engine=engine, run_engine=True,
                                  engine_tick=0.2))
    try:
        with ServerThread(app) as running:
            yield running.url, store
    finally:
        store.close()


async def sandbox_api(base: str, store: Store, method: str, path: str, **kwargs: Any) -> dict:
    """A call to the sandbox's Accounting API with the connection the dashboard stored."""
    record = await asyncio.to_thread(store.connections.get, "books")
    async with httpx.AsyncClient(base_url=f"{base}/v3/company/{record.realm_id}", timeout=30) as http:
        response = await http.request(method, path, headers={"Authorization": f"Bearer {record.access_token}",
                                                             "Accept": "application/json"}, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


async def reload_until(page: Any, pattern: str, what: str) -> None:
    """Reload the page until its text matches `pattern` (a regular expression), within the deadline."""
    deadline = time.monotonic() + DEADLINE
    while not re.search(pattern, await page.content(), re.S):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {DEADLINE:g} s waiting for {what}")
        await asyncio.sleep(0.2)
        await page.reload()


async def test_click_through_connect_workflows_runs_retry_disconnect(server: tuple[str, Store],
                                                                     sandbox_url: str) -> None:
    url, store = server
    async with playwright_api.async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = await browser.new_page()
            await click_through(page, url, store, sandbox_url)
        finally:
            await browser.close()


async def click_through(page: Any, url: str, store: Store, sandbox_url: str) -> None:
    expect = playwright_api.expect
    # Log in (a wrong token first).
    await page.goto(f"{url}/runs")
    await expect(page).to_have_url(re.compile(r"/login\?next=%2Fruns$"))
    await page.fill("#token", "wrong")
    await page.click("button:has-text('Log in')")
    await expect(page.locator(".message.error")).to_contain_text("That is not the API token")
    await page.fill("#token", API_TOKEN)
    await page.click("button:has-text('Log in')")
    await expect(page).to_have_url(f"{url}/runs")
    await expect(page.locator("main")).to_contain_text("No runs yet.")

    # Connect QuickBooks: the sandbox's consent page, then back on the dashboard.
    await page.click("text=Overview")
    await page.fill("#connect-name", "books")
    await page.select_option("#connect-environment", "local")
    await page.fill("#connect-sandbox-url", sandbox_url)
    await page.click("button:has-text('Connect QuickBooks')")
    await expect(page).to_have_url(re.compile(re.escape(f"{sandbox_url}/connect/oauth2?")))
    await expect(page.locator("h1")).to_have_text("Connect to the QuickBooks sandbox")
    await page.click("button:has-text('Connect')")
    await expect(page).to_have_url(f"{url}/")
    await expect(page.locator(".message.ok")).to_have_text("Connected Sandbox Company_US_1 as 'books'.")
    row = page.locator("tr[data-connection='books']")
    await expect(row).to_contain_text("Sandbox Company_US_1")
    await expect(row.locator(".badge")).to_have_text("ok")

    # Upload two workflows, stored off; a broken file is refused with its line and field.
    await page.click("nav >> text=Workflows")
    broken = GREET.replace("new_customer", "new_custmer").encode()
    await page.set_input_files("#workflow-file", files=[{"name": "broken.yaml", "mimeType": "text/yaml",
                                                         "buffer": broken}])
    await page.click("button:has-text('Validate and store')")
    problems = page.locator("table.problems")
    await expect(problems).to_contain_text("trigger.key")
    await expect(problems.locator("tbody tr").first.locator("td").first).to_have_text("2")
    for name, text in (("greet.yaml", GREET), ("invoice.yaml", INVOICE)):
        await page.set_input_files("#workflow-file", files=[{"name": name, "mimeType": "text/yaml",
                                                             "buffer": text.encode()}])
        await page.uncheck("input[name=enable]")
        await page.click("button:has-text('Validate and store')")
        await expect(page.locator(".message.ok")).to_contain_text(f"{name}: workflow")
    for name in ("Greet new customers", "Invoice new customers"):
        row = page.locator(f"tr[data-workflow='{name}']")
        await expect(row.locator(".badge")).to_have_text("off")
        await row.locator("button:has-text('Turn on')").click()
        await expect(page.locator(".message.ok")).to_have_text(f"Workflow '{name}' is now on.")
        await expect(page.locator(f"tr[data-workflow='{name}'] .badge")).to_have_text("on")

    # Once the engine has started watching (the first poll), a new customer in QuickBooks starts two runs.
    await reload_until(page, r"Greet new customers.*?next-poll\">(?!at the next cycle \(first poll\))"
                             r".*?Invoice new customers.*?next-poll\">(?!at the next cycle \(first poll\))",
                       "the engine's first poll of both workflows")
    customer = (await sandbox_api(sandbox_url, store, "POST", "/customer",
                                  json={"DisplayName": "Tour Gardens"}))["Customer"]
    await page.click("nav >> text=Runs")
    await reload_until(page, r"Greet new customers</a></td>\s*<td><span class=\"status succeeded\"",
                       "the greeting run to succeed")
    await reload_until(page, r"Invoice new customers</a></td>\s*<td><span class=\"status failed\"",
                       "the invoice run to fail")

    # Open the successful run: the event and the step's rendered input.
    await page.locator("tr", has_text="Greet new customers").locator("a").first.click()
    await expect(page.locator("#run-status")).to_have_text("succeeded")
    await expect(page.locator("main")).to_contain_text(f"Customer {customer['Id']}")
    await expect(page.locator("section[data-step='say']")).to_contain_text("Welcome Tour Gardens")
    # Its workflow's page: the trigger and the steps.
    await page.click("table.details >> text=Greet new customers")
    await expect(page.locator("#trigger")).to_contain_text("new_customer")
    await expect(page.locator("#steps li[data-step='say']")).to_contain_text("log")

    # The failed run says why; once the item exists in QuickBooks, a retry succeeds.
    await page.click("nav >> text=Runs")
    await page.select_option("#filter-status", "failed")
    await page.click("button:has-text('Filter')")
    await expect(page.locator("tr[data-run]")).to_have_count(1)
    await page.locator("tr[data-run] a").first.click()
    await expect(page.locator("#run-status")).to_have_text("failed")
    await expect(page.locator("main")).to_contain_text("Tour Widget")
    accounts = await sandbox_api(sandbox_url, store, "GET", "/query",
                                 params={"query": "select * from Account where AccountType = 'Income'"})
    income = accounts["QueryResponse"]["Account"][0]["Id"]
    await sandbox_api(sandbox_url, store, "POST", "/item", json={"Name": "Tour Widget", "Type": "Service",
                                                                 "IncomeAccountRef": {"value": income}})
    run_url = page.url
    await page.click("button:has-text('Retry this run')")
    await expect(page).to_have_url(run_url)
    await expect(page.locator(".message.ok")).to_contain_text("it is queued again")
    await reload_until(page, r'id="run-status">succeeded<', "the retried run to succeed")
    await expect(page.locator("table.details tr:has(th:text-is('Attempt')) td")).to_have_text("2")
    await expect(page.locator("section[data-step='invoice']")).to_contain_text("TotalAmt")

    # Disconnect: revoked at the sandbox, gone from the dashboard.
    await page.click("text=Overview")
    await page.click("button[aria-label='Disconnect books']")
    await expect(page.locator(".message.ok")).to_have_text("Disconnected 'books' (its access was revoked at Intuit).")
    await expect(page.locator("tr[data-connection='books']")).to_have_count(0)
    assert await asyncio.to_thread(store.connections.list) == []
    with contextlib.suppress(Exception):
        await page.close()
