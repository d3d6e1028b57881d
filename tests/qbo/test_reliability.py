"""Injected 500s, 503s, 429s and connection resets: 500 creates give exactly 500 records, none twice; a call makes
the attempts its retry policy allows, within its time budget, and no more."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from qbflow.qbo import Limits, Query, RealmPacer, StaticTokens, like_prefix
from qbflow.qbo.client import QBOClient, RetryPolicy
from qbflow.qbo.errors import Transient
from qbflow.sandbox.app import Sandbox
from qbflow.sandbox.limits import LimitPolicy
from tests.support.clients import SALES_LINE, answering_client, make_client


async def test_500_creates_under_injected_faults_give_exactly_500_records() -> None:
    sandbox = Sandbox(fault_rate=0.2, rate_limit=True, fault_seed=20240601)
    sandbox.faults.kinds = ("500", "503", "429", "reset")
    # The throttle is on, with Intuit's minute shrunk to a second so the test is quick; the pacer knows
    # the same limits, and pauses only briefly after the sandbox's injected 429s.
    sandbox.limiter.policy = LimitPolicy(per_minute=300, window=1.0, concurrent=10)
    realm = sandbox.realms[0]
    token = sandbox.oauth.issue_tokens_for_tests(sandbox.client_id, realm)["access_token"]
    pacer = RealmPacer(realm, Limits(per_window=300, window=1.0, margin=0.05, throttle_pause=0.02))
    async with make_client(sandbox, realm, StaticTokens(token), pacer=pacer) as qbo:
        created = await asyncio.gather(*(
            qbo.create("Invoice", {"CustomerRef": {"value": "1"}, "Line": SALES_LINE,
                                   "PrivateNote": f"fault-run {n:03d}"})
            for n in range(500)
        ))  # any error surfacing here (a 429, a 5xx, a reset) fails the test
        injected = dict(sandbox.faults.injected)
        sandbox.faults.rate = 0.0
        notes = [r["PrivateNote"] async for r in qbo.query_all(
            Query("Invoice").where_like("PrivateNote", like_prefix("fault-run ")).order_by("Id"))]
    assert len(created) == 500 and len({r["Id"] for r in created}) == 500
    assert len(notes) == 500 and len(set(notes)) == 500
    assert all(injected.get(kind, 0) > 0 for kind in ("500", "503", "429", "reset")), injected
    assert sandbox.limiter.refused == 0  # the only 429s were the injected ones
    assert pacer.throttles == injected["429"]


def _failing_client(answers: list[float], policy: RetryPolicy) -> tuple[QBOClient, list[str]]:
    """A client to a server that answers every request with a 503, each after the next delay in `answers`
    (the last one repeats); the paths requested are listed as they come."""
    seen: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        await asyncio.sleep(answers[min(len(seen), len(answers)) - 1])
        return httpx.Response(503, text="Service Unavailable")

    return answering_client(handler, retry=policy), seen


async def test_a_call_makes_its_attempts_and_no_more(caplog: pytest.LogCaptureFixture) -> None:
    # The first attempt is made outside stamina and handed to it when it fails: the count is the policy's,
    # and every retry (the first one too) is logged by stamina as before.
    policy = RetryPolicy(attempts=3, timeout=30.0, wait_initial=0.001, wait_max=0.002, wait_jitter=0.0)
    client, seen = _failing_client([0.0], policy)
    with caplog.at_level(logging.DEBUG, logger="stamina"), pytest.raises(Transient):
        await client.get("Customer", "1")
    await client.aclose()
    assert len(seen) == 3
    assert sum(1 for record in caplog.records if record.name == "stamina") == 2


async def test_a_first_attempt_slower_than_the_budget_is_not_retried() -> None:
    # The time budget counts from the first attempt: one that used it all up ends the call.
    policy = RetryPolicy(attempts=5, timeout=0.2, wait_initial=0.001, wait_max=0.002, wait_jitter=0.0)
    client, seen = _failing_client([0.3, 0.0], policy)
    with pytest.raises(Transient):
        await client.get("Customer", "1")
    await client.aclose()
    assert len(seen) == 1
