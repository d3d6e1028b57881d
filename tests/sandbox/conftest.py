"""Fixtures: the sandbox mounted in-process, and an HTTP client holding a real access token for it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from qbflow.sandbox.app import Sandbox


@pytest.fixture
async def http(sandbox: Sandbox, token: str) -> AsyncIterator[httpx.AsyncClient]:
    """An authorised client for the first company; URLs are relative to /v3/company/{realm}/."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sandbox), base_url="http://sandbox.test",
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
    ) as client:
        yield client


@pytest.fixture
def api(realm: str):
    """Builds the path of an Accounting API call for the first company."""

    def path(rest: str) -> str:
        return f"/v3/company/{realm}/{rest.lstrip('/')}"

    return path
