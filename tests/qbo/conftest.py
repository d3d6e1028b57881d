"""Fixtures: the real client against the real sandbox, mounted in-process (httpx.ASGITransport)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from qbflow.qbo import QBOClient, StaticTokens
from qbflow.qbo.pacing import reset_pacers
from qbflow.sandbox.app import Sandbox
from tests.support.clients import CountingTransport, make_client
from tests.support.connect import sandbox_url  # noqa: F401 (a fixture: `qbflow sandbox` approving at once)


@pytest.fixture(autouse=True)
def _fresh_pacers():
    reset_pacers()
    yield
    reset_pacers()


@pytest.fixture
def transport(sandbox: Sandbox) -> CountingTransport:
    return CountingTransport(sandbox)


@pytest.fixture
async def client(sandbox: Sandbox, realm: str, token: str, transport: CountingTransport) -> AsyncIterator[QBOClient]:
    async with make_client(sandbox, realm, StaticTokens(token), transport=transport) as qbo:
        yield qbo
