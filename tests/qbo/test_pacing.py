"""Pacing: never more than the limit in any window, never more than 10 in flight, a realm-wide pause after
a 429, one pacer per realm per process, zero 429s from the sandbox's throttle, and a freed slot going to the
waiting request first."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import httpx
import pytest

from qbflow.qbo import Limits, Pacer, Query, RealmPacer, StaticTokens, pacer_for, pacing_backend
from qbflow.sandbox.app import Sandbox
from qbflow.sandbox.limits import LimitPolicy
from qbflow.settings import Settings
from tests.support.clients import answering_client, make_client


class FakeTime:
    """A clock that moves only when someone sleeps: no real waiting in tests."""

    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


def max_in_any_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


async def test_sliding_log_never_exceeds_the_limit_in_any_window() -> None:
    fake = FakeTime()
    pacer = RealmPacer("r", Limits(per_window=500, window=60.0, margin=0.5), clock=fake.clock, sleep=fake.sleep)
    sent: list[float] = []

    async def one() -> None:
        async with pacer.slot():
            sent.append(fake.clock())

    await asyncio.gather(*(one() for _ in range(1600)))
    assert len(sent) == 1600
    assert max_in_any_window(sent, 60.5) == 500  # not one more in any 60.5 s, so none in any 60 s
    assert sent[499] - sent[0] < 1 and sent[500] - sent[0] == pytest.approx(60.5)  # a burst, then paced
    assert fake.now - 1000.0 == pytest.approx(3 * 60.5, abs=1)


async def test_batch_requests_count_against_both_limits() -> None:
    fake = FakeTime()
    pacer = RealmPacer("r", Limits(per_window=500, window=60.0, margin=0.5, batch_per_window=40),
                       clock=fake.clock, sleep=fake.sleep)
    batches: list[float] = []
    for _ in range(100):
        async with pacer.slot(batch=True):
            batches.append(fake.clock())
    assert max_in_any_window(batches, 60.5) == 40
    assert pacer.stats()["requests_in_window"] == 20  # batches are requests too: the last 20 are in the window


async def test_at_most_ten_in_flight() -> None:
    pacer = RealmPacer("r")
    in_flight = peak = 0

    async def one() -> None:
        nonlocal in_flight, peak
        async with pacer.slot():
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.001)
            in_flight -= 1

    await asyncio.gather(*(one() for _ in range(100)))
    assert peak == 10


async def test_a_429_pauses_the_whole_realm() -> None:
    fake = FakeTime()
    pacer = RealmPacer("r", Limits(per_window=10), clock=fake.clock, sleep=fake.sleep)
    for _ in range(9):
        async with pacer.slot():
            pass
    assert pacer.throttled() == 60.0  # the window nearly full by our count, no Retry-After: Intuit's 60 s
    async with pacer.slot():
        assert fake.now == pytest.approx(1060.0)
    pacer.throttled(retry_after=5)
    async with pacer.slot(batch=True):
        assert fake.now == pytest.approx(1065.0)
    assert pacer.throttles == 2


async def test_a_429_well_under_the_limit_pauses_briefly_then_longer_if_they_go_on() -> None:
    fake = FakeTime()
    pacer = RealmPacer("r", clock=fake.clock, sleep=fake.sleep)
    async with pacer.slot():
        pass
    assert pacer.throttled() == 2.0  # 1 request in the window: not the per-minute throttle
    assert pacer.throttled() == 2.0  # another answer sent before the pause: no longer
    async with pacer.slot():
        assert fake.now == pytest.approx(1002.0)
    assert pacer.throttled() == 4.0  # again right after the pause: doubled
    async with pacer.slot():
        pass
    assert pacer.throttled() == 8.0
    for _ in range(5):  # answers get through again...
        async with pacer.slot():
            pass
    assert pacer.throttled() == 2.0  # ...so a stray 429 is a short pause again
    fake.now += 120  # a quiet while later: the short pause too
    assert pacer.throttled() == 2.0
    for _ in range(10):
        async with pacer.slot():
            pass
        pacer.throttled()
    assert pacer.limits.throttle_pause == 60.0 and pacer._last_pause == 60.0  # capped at Intuit's minute
    assert pacer.throttles == 16


def test_one_pacer_per_realm_in_the_process() -> None:
    assert pacer_for("111") is pacer_for("111")
    assert pacer_for("111") is not pacer_for("222")
    shared = pacer_for("111", Limits(per_window=50, window=2.0))
    assert shared is pacer_for("111") and shared.limits.per_window == 50


async def test_clients_of_one_realm_share_its_pacer(sandbox, realm, token) -> None:
    async with make_client(sandbox, realm, StaticTokens(token), pacer=None) as trigger, \
            make_client(sandbox, realm, StaticTokens(token), pacer=None) as action:
        assert trigger.pacer is action.pacer is pacer_for(realm)
        await trigger.get("Customer", "1")
        await action.get("Customer", "2")
        assert pacer_for(realm).admitted == 2


async def test_a_client_tells_how_many_requests_its_company_may_have_in_flight(sandbox, realm, token) -> None:
    async with make_client(sandbox, realm, StaticTokens(token), pacer=None) as qbo:
        assert isinstance(qbo.pacer, Pacer) and qbo.pacer.limits.max_concurrent == 10  # Intuit's
    async with make_client(sandbox, realm, StaticTokens(token), pacer=RealmPacer(realm, Limits(concurrent=3))) as qbo:
        pacer = qbo.pacer
        assert pacer is not None and pacer.limits.max_concurrent == 3
        in_flight = peak = 0

        async def one() -> None:
            nonlocal in_flight, peak
            async with pacer.slot():
                in_flight += 1
                peak = max(peak, in_flight)
                await asyncio.sleep(0.001)
                in_flight -= 1

        await asyncio.gather(*(one() for _ in range(20)))
        assert peak == 3  # the limit told is the one held


def test_without_redis_py_a_redis_url_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # as if redis-py were not installed
    monkeypatch.delitem(sys.modules, "qbflow.qbo.pacing.redis", raising=False)
    backend = pacing_backend(f"sqlite:///{tmp_path / 'one.sqlite3'}", settings=Settings(redis_url="redis://:pw@h:1/0"))
    rates = backend.rates()
    assert not rates.measured and "redis-py is not installed" in rates.note and "pw" not in rates.note
    with pytest.raises(ImportError):  # a worker must not quietly pace alone when told to share through Redis
        backend.pacer("r")


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError):
        Limits(per_window=0)
    with pytest.raises(ValueError):
        Limits(window=0)
    assert Limits().effective_window == 60.5


async def test_600_fast_requests_against_the_throttled_sandbox_cause_no_429() -> None:
    # Intuit's limits shrunk in time (100 a second instead of 500 a minute) so the test takes seconds.
    sandbox = Sandbox(rate_limit=True)
    sandbox.limiter.policy = LimitPolicy(per_minute=100, window=1.0, concurrent=10, batch_per_minute=10)
    realm = sandbox.realms[0]
    token = sandbox.oauth.issue_tokens_for_tests(sandbox.client_id, realm)["access_token"]
    pacer = RealmPacer(realm, Limits(per_window=100, window=1.0, margin=0.05, concurrent=10, batch_per_window=10))
    started = time.monotonic()
    async with make_client(sandbox, realm, StaticTokens(token), pacer=pacer) as qbo:
        async def one(n: int) -> None:
            if n % 20 == 0:
                results = await qbo.batch([{"Query": Query("Customer").where(Id="1")}])
                assert results[0].ok
            else:
                await qbo.get("Customer", "1")

        await asyncio.gather(*(one(n) for n in range(600)))
    elapsed = time.monotonic() - started
    assert sandbox.limiter.refused == 0 and pacer.throttles == 0
    assert pacer.admitted == 600
    assert elapsed < 12  # ~6 s at 100 a second: paced, not crawling


async def test_a_freed_slot_sends_the_waiting_request_before_its_caller_goes_on() -> None:
    # When answers arrive together, the requests waiting for the company's slots leave before the callers of
    # the answered ones do their own work (reading, the ledger's writes): the slots are busy again at once.
    order: list[str] = []
    answer = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        name = request.url.path.rsplit("/", 1)[-1]
        order.append(f"sent {name}")
        if name == "1":
            await answer.wait()
        return httpx.Response(200, json={"Customer": {"Id": name}})

    pacer = RealmPacer("9341453050000001", Limits(concurrent=1))
    client = answering_client(handler, pacer=pacer)

    async def get(record_id: str) -> None:
        await client.get("Customer", record_id)
        order.append(f"caller of {record_id} goes on")

    first = asyncio.create_task(get("1"))
    while order != ["sent 1"]:
        await asyncio.sleep(0)
    second = asyncio.create_task(get("2"))  # waits for the one slot
    for _ in range(5):
        await asyncio.sleep(0)
    answer.set()
    await asyncio.gather(first, second)
    await client.aclose()
    assert order == ["sent 1", "sent 2", "caller of 1 goes on", "caller of 2 goes on"]
