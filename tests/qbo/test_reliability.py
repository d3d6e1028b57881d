"""Injected 500s, 503s, 429s and connection resets: 500 creates give exactly 500 records, none twice."""

from __future__ import annotations

import asyncio

from qbflow.qbo import Limits, Query, RealmPacer, StaticTokens, like_prefix
from qbflow.sandbox.app import Sandbox
from qbflow.sandbox.limits import LimitPolicy
from tests.support.clients import SALES_LINE, make_client


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
