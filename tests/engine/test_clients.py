"""ClientPool: one client per connection, reused, replaced after max_age, closed by the pool only."""

from __future__ import annotations

import asyncio

import pytest

from qbflow.engine.clients import ClientPool
from qbflow.qbo.errors import NeedsReconnect


class FakeClient:
    def __init__(self, name: str, n: int) -> None:
        self.name, self.n, self.closed = name, n, False
        self.realm_id = f"realm-{name}"

    async def aclose(self) -> None:
        self.closed = True


class Factory:
    def __init__(self) -> None:
        self.made: list[FakeClient] = []
        self.refuse: set[str] = set()

    async def __call__(self, name: str) -> FakeClient:
        await asyncio.sleep(0)  # let concurrent callers interleave
        if name in self.refuse:
            raise NeedsReconnect(name, detail="invalid_grant")
        client = FakeClient(name, len(self.made))
        self.made.append(client)
        return client


async def test_one_client_per_connection_reused_and_closed_only_by_the_pool():
    factory, now = Factory(), [0.0]
    pool = ClientPool(factory, max_age=60, clock=lambda: now[0])
    first = await pool("acme")
    await first.aclose()  # what a caller does with a fresh client: the pool keeps it open
    second = await pool("acme")
    other = await pool("globex")
    assert len(factory.made) == 2 and second.n == first.n and other.realm_id == "realm-globex"
    assert not factory.made[0].closed
    now[0] = 61  # too old: the next call makes a new one (a reconnect is seen)
    third = await pool("acme")
    assert third.n == 2 and not factory.made[0].closed  # a run may still hold the old one
    await pool.aclose()
    assert all(client.closed for client in factory.made)


async def test_concurrent_first_calls_make_one_client():
    factory = Factory()
    pool = ClientPool(factory)
    leases = await asyncio.gather(*(pool("acme") for _ in range(10)))
    assert len(factory.made) == 1 and {lease.n for lease in leases} == {0}


async def test_a_refused_connection_is_not_kept():
    factory = Factory()
    pool = ClientPool(factory)
    factory.refuse.add("acme")
    with pytest.raises(NeedsReconnect):
        await pool("acme")
    factory.refuse.clear()  # reconnected
    assert (await pool("acme")).n == 0
    pool.forget("acme")
    assert (await pool("acme")).n == 1
    await pool.aclose()
    assert all(client.closed for client in factory.made)


async def test_replaced_clients_are_closed_once_no_run_can_hold_them_not_kept_for_the_pools_life():
    factory, now = Factory(), [0.0]
    pool = ClientPool(factory, max_age=60, clock=lambda: now[0])
    assert pool.retire_after == 600
    for minute in range(1, 30):  # a worker running for half an hour: a new client each minute
        now[0] = minute * 61
        await pool("acme")
    assert len(factory.made) == 29
    open_ones = [client for client in factory.made if not client.closed]
    # Retired within the last 600 s (a run may still use them), and the current one: no more.
    assert 1 < len(open_ones) <= 11 and factory.made[-1] in open_ones and factory.made[0].closed
    await pool.aclose()
    assert all(client.closed for client in factory.made)
