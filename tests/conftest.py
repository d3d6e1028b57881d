"""Fixtures shared by every test folder: the sandbox mounted in-process and a token for its first company."""

from __future__ import annotations

import pytest

from qbflow.sandbox.app import Sandbox


@pytest.fixture
def sandbox() -> Sandbox:
    """A fresh in-memory sandbox with one seeded company, throttles off (tests that need them build their own)."""
    return Sandbox(rate_limit=False)


@pytest.fixture
def realm(sandbox: Sandbox) -> str:
    return sandbox.realms[0]


@pytest.fixture
def token(sandbox: Sandbox, realm: str) -> str:
    """A real access token for `realm`, as if the user had connected."""
    return sandbox.oauth.issue_tokens_for_tests(sandbox.client_id, realm)["access_token"]
