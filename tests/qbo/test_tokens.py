"""Token refresh: once on a 401, once for many concurrent callers, before expiry, and never twice."""

from __future__ import annotations

import asyncio

import pytest

from qbflow.qbo import AuthError, RefreshingTokens, StaticTokens, TokenSet
from tests.support.clients import SandboxTokens, make_client


async def test_expiry_mid_run_refreshes_once_and_the_call_succeeds(sandbox, realm, transport) -> None:
    tokens = SandboxTokens(sandbox, realm)
    async with make_client(sandbox, realm, tokens, transport=transport) as qbo:
        await qbo.get("Customer", "1")
        sandbox.clock.advance(3601)  # the access token is an hour old now
        customer = await qbo.get("Customer", "2")
        assert customer["Id"] == "2"
        assert tokens.rotate_calls == 1
        statuses = [r.headers["Authorization"] != transport.requests[0].headers["Authorization"]
                    for r in transport.api_requests()]
        assert statuses == [False, False, True]  # first call, refused call, the same call with the new token
        # A write after expiry keeps its requestid across the refresh: one record, not two.
        sandbox.clock.advance(3601)
        created = await qbo.create("Customer", {"DisplayName": "After Expiry"})
        writes = transport.api_requests("customer")[-2:]
        assert writes[0].url.params["requestid"] == writes[1].url.params["requestid"]
        assert await qbo.count("Customer", DisplayName="After Expiry") == 1 and created["SyncToken"] == "0"
        assert tokens.rotate_calls == 2


async def test_ten_concurrent_calls_after_expiry_cause_exactly_one_refresh(sandbox, realm) -> None:
    tokens = SandboxTokens(sandbox, realm)
    async with make_client(sandbox, realm, tokens) as qbo:
        await qbo.company_info()
        sandbox.clock.advance(3601)
        results = await asyncio.gather(*(qbo.get("Customer", str(n % 3 + 1)) for n in range(10)))
    assert len(results) == 10 and all(r["Id"] for r in results)
    assert tokens.rotate_calls == 1 and tokens.refreshes == 1


async def test_a_second_401_after_refreshing_raises_auth_error(sandbox, realm, transport) -> None:
    class UselessRefresh(RefreshingTokens):
        async def rotate(self, stale: str) -> TokenSet:
            return TokenSet("another-bad-token-" + str(self.refreshes))

    tokens = UselessRefresh(initial=TokenSet("bad-token"))
    async with make_client(sandbox, realm, tokens, transport=transport) as qbo:
        with pytest.raises(AuthError):
            await qbo.get("Customer", "1")
    assert tokens.refreshes == 1 and len(transport.requests) == 2


async def test_refreshing_tokens_refresh_before_expiry() -> None:
    now = [1000.0]
    calls: list[str] = []

    async def rotate(stale: str) -> TokenSet:
        calls.append(stale)
        await asyncio.sleep(0.01)
        return TokenSet(f"token-{len(calls)}", expires_at=now[0] + 3600)

    tokens = RefreshingTokens(rotate, initial=TokenSet("token-0", expires_at=1000.0 + 3600), clock=lambda: now[0])
    assert await tokens.access_token() == "token-0"
    now[0] += 3600 - 60  # within the 120 s margin
    got = await asyncio.gather(*(tokens.access_token() for _ in range(10)))
    assert set(got) == {"token-1"} and calls == ["token-0"]
    # A refusal of a token that was already replaced does not refresh again.
    assert await tokens.refresh("token-0") == "token-1" and len(calls) == 1
    assert await tokens.refresh("token-1") == "token-2" and len(calls) == 2


async def test_refreshing_tokens_without_an_initial_token_fetch_one() -> None:
    async def rotate(stale: str) -> TokenSet:
        assert stale == ""
        return TokenSet("first")

    tokens = RefreshingTokens(rotate)
    assert await asyncio.gather(tokens.access_token(), tokens.access_token()) == ["first", "first"]
    assert tokens.refreshes == 1


async def test_reprs_show_no_tokens() -> None:
    assert "abc123" not in repr(StaticTokens("abc123"))
    assert "abc123" not in repr(TokenSet("abc123", 5.0))
    assert "abc123" not in repr(RefreshingTokens(initial=TokenSet("abc123")))
