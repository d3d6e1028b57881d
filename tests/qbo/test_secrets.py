"""No token reaches a log record, an exception message or a repr, over a run that refreshes, fails auth,
retries and throttles. Logs are captured at DEBUG for every logger (ours, httpx, stamina, the sandbox)."""

from __future__ import annotations

import logging

import httpx
import pytest

from qbflow.qbo import AuthError, NeedsReconnect, QBOError, Query, StaticTokens
from tests.support.clients import SALES_LINE, SandboxTokens, make_client


def fragments(secret: str) -> list[str]:
    """The token and the prefixes of it that servers like to quote ("Token expired: AB0123...")."""
    return [secret, secret[:8], secret[-8:]]


async def test_no_token_in_logs_errors_or_reprs(sandbox, realm, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = SandboxTokens(sandbox, realm, connection="acme-books")
    raised: list[BaseException] = []
    garbage = "garbage-token-0123456789abcdef"
    async with make_client(sandbox, realm, tokens) as qbo:
        invoice = await qbo.create("Invoice", {"CustomerRef": {"value": "1"}, "Line": SALES_LINE})
        await qbo.query(Query("Invoice").where(Id=invoice["Id"]))
        sandbox.clock.advance(3601)  # expiry mid-run: a 401, a refresh, the call again
        await qbo.get("Invoice", invoice["Id"])
        # Seeded, and low enough that no create runs out of attempts (at 0.5, one in ~64 would).
        sandbox.faults.random.seed(7)
        sandbox.faults.rate, sandbox.faults.kinds = 0.3, ("500", "503", "reset")
        for n in range(10):  # retries, logged by stamina with the exception's repr
            await qbo.create("Customer", {"DisplayName": f"Secretive {n}"})
        sandbox.faults.rate = 0.0
        try:
            await qbo.get("Invoice", "999999")
        except QBOError as error:
            raised.append(error)
        client_repr = repr(qbo)
    async with make_client(sandbox, realm, StaticTokens(garbage)) as bad:
        with pytest.raises(AuthError) as refused:
            await bad.company_info()
        raised.append(refused.value)
    # An expired token Intuit's detail quotes the start of ("Token expired: AB0..."): redacted.
    expired = sandbox.oauth.issue_tokens_for_tests(sandbox.client_id, realm)["access_token"]
    sandbox.clock.advance(3601)
    async with make_client(sandbox, realm, StaticTokens(expired)) as stale:
        with pytest.raises(AuthError) as timed_out:
            await stale.company_info()
        assert timed_out.value.detail.startswith("Token expired: [redacted]")
        raised.append(timed_out.value)
    # Revoke the grant; the refresh grant then fails: NeedsReconnect.
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox), base_url="http://sandbox.test") as http:
        await http.post("/v2/oauth2/tokens/revoke", json={"token": tokens.refresh_token},
                        auth=(sandbox.client_id, sandbox.client_secret))
    async with make_client(sandbox, realm, tokens) as qbo:
        with pytest.raises(NeedsReconnect) as reconnect:
            await qbo.company_info()
        raised.append(reconnect.value)

    assert tokens.rotate_calls == 2 and len(tokens.seen) == 4
    secrets = [*tokens.seen, garbage, expired, sandbox.client_secret]
    texts = [record.getMessage() for record in caplog.records]
    texts += [repr(record.__dict__) for record in caplog.records]
    texts += [str(e) for e in raised] + [repr(e) for e in raised] + [client_repr, repr(tokens)]
    texts += [str(getattr(e, "detail", "")) for e in raised]
    for secret in secrets:
        for fragment in fragments(secret):
            leaks = [text for text in texts if fragment in text]
            assert not leaks, f"a token fragment leaked into: {leaks[0][:300]}"
    # And the DEBUG lines are there, with what one needs to follow a run.
    ours = [r.getMessage() for r in caplog.records if r.name == "qbflow.qbo"]
    assert any(m.startswith("POST /v3/company/") and "-> 200 intuit_tid=1-" in m and "attempt=1" in m for m in ours)
    assert any("-> 401" in m for m in ours) and any("refreshed" in m for m in ours)
    assert any("attempt=2" in m for m in ours)
