"""Fixtures for the server's tests: a store on `db_url` (SQLite, then PostgreSQL when given), the in-process
sandbox with a connection stored for it, the app from `create_app` with a known API token, and httpx clients
over `httpx.ASGITransport(app)`.

    async def test_something(api: httpx.AsyncClient, connection: ConnectionRecord, runs: RunStore) -> None:
        answer = await api.get("/api/connections")          # sends the API token

`app` serves no engine (webhooks have nothing to hand changes to); build your own `ServerConfig` for that.
Everything the app says to Intuit goes through `sandbox_transport` (`ServerConfig.transport`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from qbflow.connector.polling import PollCursor, TriggerEvent
from qbflow.sandbox.app import Sandbox
from qbflow.server import ServerConfig, create_app
from qbflow.server.auth import ApiToken
from qbflow.settings import Settings
from qbflow.store import ConnectionRecord, RunStore, SecretBox, Store, TokenResult, open_store

API_TOKEN = "test-api-token-3f9a1c7e5b2d4a6c8e0f1a3b5c7d9e1f"
SERVER_BASE = "http://qbflow.test"
SANDBOX_BASE = "http://sandbox.test"  # the in-process sandbox, reached through `sandbox_transport`
CONNECTION = "acme"

WELCOME_YAML = f"""\
name: welcome
description: Say hello to every new customer.
trigger:
  key: new_customer
  connection: {CONNECTION}
  poll_interval: 1m
steps:
  - id: note
    action: log
    input:
      message: "New customer {{{{ trigger.DisplayName }}}}"
"""


def api_token_checker(token: str = API_TOKEN) -> ApiToken:
    """The server's checker for `token` (as if it came from QBFLOW_API_TOKEN)."""
    return ApiToken(hashlib.sha256(token.encode()).hexdigest(), "QBFLOW_API_TOKEN")


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No QBFLOW_* settings from the outside; a data dir of the test's own. Returns the data dir."""
    for name in list(os.environ):
        if name.startswith("QBFLOW_"):
            monkeypatch.delenv(name)
    data = tmp_path / "data"
    monkeypatch.setenv("QBFLOW_DATA_DIR", str(data))
    return data


@pytest.fixture
def settings(clean_env: Path) -> Settings:
    return Settings(data_dir=clean_env)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """The store on SQLite and on PostgreSQL (when QBFLOW_TEST_POSTGRES_URL is set)."""
    opened = open_store(url=db_url, box=SecretBox([SecretBox.generate_key()]))
    yield opened
    opened.close()


@pytest.fixture
def runs(store: Store) -> RunStore:
    return RunStore(store.engine)


@pytest.fixture
def sandbox_transport(sandbox: Sandbox) -> httpx.ASGITransport:
    """How the app (and clients made for its connections) reach the in-process sandbox."""
    return httpx.ASGITransport(app=sandbox)


def store_sandbox_connection(store: Store, sandbox: Sandbox, realm: str, name: str = CONNECTION) -> ConnectionRecord:
    """A connection to the in-process sandbox's company `realm`, with real tokens, as `qbflow connect` stores it."""
    issued = sandbox.oauth.issue_tokens_for_tests(sandbox.client_id, realm, base_url=SANDBOX_BASE)
    return store.connections.add(
        name=name, realm_id=realm, client_id=sandbox.client_id, client_secret=sandbox.client_secret,
        company_name=sandbox.books.companies[realm].name if realm in sandbox.books.companies else None,
        api_base=SANDBOX_BASE, token_endpoint=f"{SANDBOX_BASE}/oauth2/v1/tokens/bearer",
        revocation_endpoint=f"{SANDBOX_BASE}/v2/oauth2/tokens/revoke", environment="local",
        tokens=TokenResult.from_expires_in(issued["access_token"], issued["expires_in"], issued["refresh_token"],
                                           issued["x_refresh_token_expires_in"]))


@pytest.fixture
def connection(store: Store, sandbox: Sandbox, realm: str) -> ConnectionRecord:
    """The connection `acme` to the sandbox's first company (tokens and client secret in the record)."""
    return store_sandbox_connection(store, sandbox, realm)


@pytest.fixture
def app(store: Store, settings: Settings, sandbox_transport: httpx.ASGITransport) -> FastAPI:
    """The server with API token `API_TOKEN`, no engine, talking to the in-process sandbox."""
    return create_app(ServerConfig(store=store, settings=settings, api_token=api_token_checker(),
                                   public_url=SERVER_BASE, transport=sandbox_transport))


@pytest.fixture
async def api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app sending `Authorization: Bearer API_TOKEN`."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=SERVER_BASE,
                                 headers={"Authorization": f"Bearer {API_TOKEN}"}) as client:
        yield client


@pytest.fixture
async def anonymous(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app without any credentials."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=SERVER_BASE) as client:
        yield client


def add_run(runs: RunStore, workflow: str, record_id: str, *, status: str = "queued", error: str | None = None,
            steps: list[dict[str, Any]] | None = None, record: dict[str, Any] | None = None) -> int:
    """One run of the stored workflow `workflow` for a new_customer event of `record_id`, as a poll makes it,
    then brought to `status` (claimed and finished as the runner would); `steps` are ledger entries
    ({"step_id", "input", "output", "error", "status"}). Returns the run's id."""
    stored = runs.get_workflow(workflow)
    event = TriggerEvent(trigger_key="new_customer", entity="Customer", record_id=record_id, sync_token="0",
                         record=record or {"Id": record_id, "DisplayName": f"Customer {record_id}"},
                         dedup_key=f"new_customer:Customer:{record_id}:0", changed_at=datetime.now(UTC))
    (run_id,) = runs.record_poll(stored.id, "new_customer", CONNECTION, "realm-1", [event],
                                 PollCursor.start(datetime.now(UTC)).to_json())
    if status == "queued" and not steps:
        return run_id
    claimed = runs.claim_next_run()
    assert claimed is not None and claimed.id == run_id, "another run was due first"
    for step in steps or []:
        runs.mark_step_sent(run_id, step["step_id"], step.get("input"))
        if step.get("status", "succeeded") != "sent":
            runs.finish_step(run_id, step["step_id"], output=step.get("output"), error=step.get("error"),
                             status=step.get("status", "succeeded"))
    if status in ("waiting_retry", "waiting"):
        runs.finish_run(run_id, status, error=error, next_attempt_at=datetime.now(UTC) + timedelta(hours=1))
    elif status != "running":
        runs.finish_run(run_id, status, error=error)
    return run_id
