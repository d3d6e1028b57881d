"""The engine's tests' clients and retry policies: clients over the in-process sandbox that count their requests
and can be made to fail (`Clients`, the `qbo_clients` fixture), fast retries, and a workflow stored as is.

    engine = Engine(runs, qbo_clients, Runner(runs, qbo_clients, retry=FAST))
"""

from __future__ import annotations

from datetime import datetime

import pytest

from qbflow.engine.runner import RetrySettings
from qbflow.qbo import RetryPolicy, StaticTokens
from qbflow.qbo.errors import NeedsReconnect, Transient
from qbflow.sandbox.app import Sandbox
from qbflow.store import RunStore
from tests.support.clients import CountingTransport, make_client

__all__ = ["FAST", "NO_CLIENT_RETRY", "Clients", "add", "qbo_clients"]

NO_CLIENT_RETRY = RetryPolicy(attempts=1, timeout=10.0, wait_initial=0.001, wait_max=0.001, wait_jitter=0.0)
FAST = RetrySettings(attempts=3, wait_initial=30.0)


class Clock:
    """The engine's and runner's time: set forward by the test."""

    def __init__(self, start: datetime) -> None:
        self.moment = start

    def __call__(self) -> datetime:
        return self.moment

    def set(self, moment: datetime) -> None:
        assert moment >= self.moment
        self.moment = moment


class Clients:
    """Sandbox clients over one counting transport; `dead` makes the connection need reconnecting."""

    def __init__(self, sandbox: Sandbox, realm: str, token: str) -> None:
        self.sandbox, self.realm, self.token = sandbox, realm, token
        self.transport = CountingTransport(sandbox)
        self.dead = False
        self.made = 0
        self.cdc_failures = 0  # how many CDC requests to refuse (as a 503 would)

    async def __call__(self, name: str):
        self.made += 1
        if self.dead:
            raise NeedsReconnect(name, detail="Intuit refused the refresh token (invalid_grant)")
        client = make_client(self.sandbox, self.realm, StaticTokens(self.token), transport=self.transport,
                             retry=NO_CLIENT_RETRY, pacer=False)
        if self.cdc_failures:
            self.cdc_failures -= 1

            async def unavailable(*args, **kwargs):
                raise Transient("QBO is unavailable (503)")

            client.cdc = unavailable
        return client


@pytest.fixture
def qbo_clients(sandbox: Sandbox, realm: str, token: str) -> Clients:
    return Clients(sandbox, realm, token)


def add(runs: RunStore, definition: dict) -> int:
    """Store `definition` as the workflow of its name, as given (no validation); its id."""
    return runs.upsert_workflow(definition["name"], None, definition).id

