"""The server with its engine and a sandbox sending it webhooks, all in process: Intuit's webhooks end to end
without a port (tests/server/test_webhooks.py, tests/engine/test_loops.py).

    async with webhook_stack(tmp_path, "cloudevents") as stack:     # the workflow on new customers is active
        customer_id = await stack.create_customer("Webhook Gardens")
        run = await stack.wait_for_finished_run(customer_id)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from pydantic import SecretStr

from qbflow.engine.runner import Runner
from qbflow.engine.scheduler import Engine
from qbflow.qbo.connections import client_for
from qbflow.sandbox.app import Sandbox
from qbflow.sandbox.webhooks import WebhookConfig
from qbflow.server import ServerConfig, create_app
from qbflow.server.auth import ApiToken
from qbflow.settings import Settings
from qbflow.store import CursorRecord, RunRecord, RunStore, SecretBox, Store, TokenResult, open_store
from qbflow.store.models import RUN_SUCCEEDED

VERIFIER = "verifier-token-from-intuits-portal"
CONNECTION = "acme"
WORKFLOW = "Welcome new customers"
SANDBOX_BASE = "http://sandbox.test"
SERVER_BASE = "http://qbflow.test"
WEBHOOK_PATH = "/webhooks/intuit"
DEADLINE = 10.0  # seconds any wait may take before the test fails; the latency assertion is separate
TEST_API_TOKEN = "api token of the webhook tests"


def welcome_workflow(connection: str = CONNECTION) -> dict[str, Any]:
    # An hour between polls: in these tests only a webhook can make the engine look at QuickBooks.
    return {"name": WORKFLOW,
            "trigger": {"key": "new_customer", "connection": connection, "poll_interval": "1h"},
            "steps": [{"id": "say", "action": "log", "input": {"message": "Welcome {{ trigger.DisplayName }}"}}]}


def api_token_for_tests() -> ApiToken:
    return ApiToken(hashlib.sha256(TEST_API_TOKEN.encode()).hexdigest(), "tests")


async def wait_for(condition: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    """Poll `condition` until it returns something truthy (and return it), failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.01)


@dataclass
class Stack:
    """The server (with its engine running on a one-hour tick) and the sandbox whose webhooks reach it."""

    sandbox: Sandbox
    app: FastAPI
    store: Store
    runs: RunStore
    engine: Engine
    realm: str
    access_token: str
    server: httpx.AsyncClient  # to the server app, as Intuit would call it

    async def create_customer(self, name: str) -> str:
        """A new customer made through the sandbox's API, as a QuickBooks user would; its Id."""
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.sandbox), base_url=SANDBOX_BASE) as api:
            response = await api.post(f"/v3/company/{self.realm}/customer", json={"DisplayName": name},
                                      headers={"Authorization": f"Bearer {self.access_token}",
                                               "Accept": "application/json"})
        assert response.status_code == 200, response.text
        return response.json()["Customer"]["Id"]

    def cursor(self) -> CursorRecord | None:
        cursors = self.runs.list_cursors()
        return cursors[0] if cursors else None

    def runs_for(self, record_id: str) -> list[RunRecord]:
        return [run for run in map(lambda r: self.runs.get_run(r.id), self.runs.list_runs(limit=1000))
                if run.event is not None and run.event.record_id == record_id]

    async def wait_for_finished_run(self, record_id: str) -> RunRecord:
        runs = await wait_for(lambda: [r for r in self.runs_for(record_id) if r.status == RUN_SUCCEEDED],
                              f"the run for customer {record_id} to succeed")
        return runs[0]

    async def wait_for_poll_after(self, before: datetime | None) -> None:
        """Until the engine has polled again (the cursor's last poll moved), and so recorded what it found."""
        await wait_for(lambda: (c := self.cursor()) is not None and c.last_poll_at is not None
                       and (before is None or c.last_poll_at > before), "the engine to poll")

    async def delivered(self) -> dict[str, Any]:
        """The sandbox's last successful delivery (logged once the server's answer is back in the sandbox)."""
        ok = await wait_for(lambda: [d for d in self.sandbox.webhooks.deliveries if d["ok"]],
                            "the sandbox to log a delivery")
        return ok[-1]

    async def post_notification(self, body: bytes, signature: str | None, **headers: str) -> httpx.Response:
        if signature is not None:
            headers["intuit-signature"] = signature
        headers.setdefault("content-type", "application/json")
        return await self.server.post(WEBHOOK_PATH, content=body, headers=headers)


@contextlib.asynccontextmanager
async def webhook_stack(tmp_path: Path, fmt: str = "legacy", *,
                        verifier: str | None = VERIFIER) -> AsyncIterator[Stack]:
    """Store, server app and engine, and a sandbox delivering `fmt` webhooks to the app in process; the workflow
    on new customers is stored and its trigger activated (the engine's first cycle) before this yields."""
    store = open_store(url=f"sqlite:///{tmp_path / 'qbflow.sqlite3'}", box=SecretBox([SecretBox.generate_key()]))
    runs = RunStore(store.engine)
    sandbox: Sandbox | None = None

    async def clients(name: str):  # the production factory, over the in-process sandbox
        return await client_for(name, store, transport=httpx.ASGITransport(app=sandbox))

    settings = Settings(data_dir=tmp_path / "data", webhook_verifier=SecretStr(verifier) if verifier else None)
    # The engine's first cycle (activation) must wait for the sandbox clock's nudge below.
    engine = Engine(runs, clients, Runner(runs, clients, now=lambda: sandbox.clock.now()),
                    clock=lambda: sandbox.clock.now())
    app = create_app(ServerConfig(store=store, settings=settings, api_token=api_token_for_tests(), engine=engine,
                                  run_engine=True, engine_tick=3600.0))
    sandbox = Sandbox(rate_limit=False, webhook=WebhookConfig(url=SERVER_BASE + WEBHOOK_PATH,
                                                              verifier_token=VERIFIER, format=fmt),
                      webhook_transport=httpx.ASGITransport(app=app))
    sandbox.clock.advance(2)  # past the second the seed company was made in: activation's second counts
    realm = sandbox.realms[0]
    issued = sandbox.oauth.issue_tokens_for_tests(sandbox.client_id, realm, base_url=SANDBOX_BASE)
    store.connections.add(
        name=CONNECTION, realm_id=realm, client_id=sandbox.client_id, client_secret=sandbox.client_secret,
        api_base=SANDBOX_BASE, token_endpoint=f"{SANDBOX_BASE}/oauth2/v1/tokens/bearer", environment="local",
        tokens=TokenResult.from_expires_in(issued["access_token"], issued["expires_in"], issued["refresh_token"],
                                           issued["x_refresh_token_expires_in"]))
    runs.upsert_workflow(WORKFLOW, None, welcome_workflow())
    try:
        async with (sandbox.app.router.lifespan_context(sandbox.app), app.router.lifespan_context(app),
                    httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=SERVER_BASE) as server):
            stack = Stack(sandbox, app, store, runs, engine, realm, issued["access_token"], server)
            await stack.wait_for_poll_after(None)  # the trigger is active: changes from now on fire it
            yield stack
    finally:
        store.close()

