"""Fixtures for the server's tests: a store on `db_url` (SQLite, then PostgreSQL when given; `store` and `runs`
are tests/support/stores.py's), the in-process
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
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from qbflow.sandbox.app import Sandbox
from qbflow.server import ServerConfig, create_app
from qbflow.server.auth import ApiToken
from qbflow.settings import Settings
from qbflow.store import ConnectionRecord, Store
from tests.support.stores import store_sandbox_connection

API_TOKEN = "test-api-token-3f9a1c7e5b2d4a6c8e0f1a3b5c7d9e1f"
SERVER_BASE = "http://qbflow.test"


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
def sandbox_transport(sandbox: Sandbox) -> httpx.ASGITransport:
    """How the app (and clients made for its connections) reach the in-process sandbox."""
    return httpx.ASGITransport(app=sandbox)


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


