from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from qbflow.store import (
    STATUS_NEEDS_RECONNECT,
    AsyncConnectionStore,
    ConnectionStore,
    NeedsReconnect,
    SecretBox,
    Store,
    TokenResult,
    make_engine,
)

from ._workers import rotate_in_process
from .conftest import REFRESH_TOKEN, add_connection, tokens


class CountingRefresh:
    """A token endpoint stand-in: counts calls (thread-safe) and hands out numbered tokens."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, refresh_token: str) -> TokenResult:
        with self._lock:
            self.calls.append(refresh_token)
            n = len(self.calls)
        time.sleep(self.delay)
        return tokens(f"access-{n}", f"refresh-{n}")


def test_rotate_stores_new_tokens_and_bumps_the_version(connections: ConnectionStore) -> None:
    before = add_connection(connections)
    refresh = CountingRefresh()
    after = connections.rotate("acme", before.token_version, refresh)
    assert refresh.calls == [REFRESH_TOKEN]
    assert (after.access_token, after.refresh_token) == ("access-1", "refresh-1")
    assert after.token_version == before.token_version + 1
    assert connections.get("acme") == after


def test_rotate_keeps_the_refresh_token_when_none_comes_back(connections: ConnectionStore) -> None:
    before = add_connection(connections)
    after = connections.rotate("acme", before.token_version, lambda _: tokens("only-access", None))
    assert after.access_token == "only-access"
    assert after.refresh_token == REFRESH_TOKEN
    assert after.refresh_expires_at == before.refresh_expires_at


def test_stale_version_returns_the_stored_tokens_without_refreshing(connections: ConnectionStore) -> None:
    before = add_connection(connections)
    first = connections.rotate("acme", before.token_version, CountingRefresh())
    late = CountingRefresh()
    again = connections.rotate("acme", before.token_version, late)
    assert late.calls == []
    assert again == first


def test_failed_refresh_rolls_back_and_releases_the_lock(connections: ConnectionStore) -> None:
    before = add_connection(connections)

    def failing(_: str) -> TokenResult:
        raise TimeoutError("token endpoint timed out")

    with pytest.raises(TimeoutError):
        connections.rotate("acme", before.token_version, failing)
    assert connections.get("acme") == before
    # The lock is free again: another rotation (and any write) goes through at once.
    after = connections.rotate("acme", before.token_version, CountingRefresh())
    assert after.token_version == before.token_version + 1


def test_invalid_grant_marks_the_connection_once(connections: ConnectionStore) -> None:
    before = add_connection(connections)
    calls = []

    def rejected(refresh_token: str) -> TokenResult:
        calls.append(refresh_token)
        raise NeedsReconnect("acme", "invalid_grant: token revoked")

    with pytest.raises(NeedsReconnect, match="qbflow connect acme"):
        connections.rotate("acme", before.token_version, rejected)
    record = connections.get("acme")
    assert record.status == STATUS_NEEDS_RECONNECT
    assert record.status_detail == "invalid_grant: token revoked"
    assert record.token_version == before.token_version
    # Later callers are told at once; the dead token is not sent again.
    with pytest.raises(NeedsReconnect, match="invalid_grant"):
        connections.rotate("acme", before.token_version, rejected)
    assert len(calls) == 1
    # A reconnect brings it back.
    fresh = add_connection(connections, tokens=tokens("a", "r"), replace=True)
    assert connections.rotate("acme", fresh.token_version, CountingRefresh()).status == "ok"


def _run_threads(count: int, target) -> list:
    barrier = threading.Barrier(count)
    results: list = []
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            results.append(target())
        except BaseException as exc:  # noqa: BLE001 - checked below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    return results


def test_ten_threads_one_refresh(connections: ConnectionStore) -> None:
    before = add_connection(connections)
    refresh = CountingRefresh(delay=0.2)
    results = _run_threads(10, lambda: connections.rotate("acme", before.token_version, refresh))
    assert len(refresh.calls) == 1
    assert len(results) == 10
    assert {(r.access_token, r.refresh_token, r.token_version) for r in results} == {
        ("access-1", "refresh-1", before.token_version + 1)
    }


def test_ten_threads_with_separate_engines_one_refresh(db_url: str, key: str, store: Store) -> None:
    # Separate ConnectionStores share no in-process lock: only the database lock stands between them.
    before = add_connection(store.connections)
    refresh = CountingRefresh(delay=0.2)
    engines = [make_engine(db_url) for _ in range(10)]
    stores = iter([ConnectionStore(engine, SecretBox([key])) for engine in engines])
    lock = threading.Lock()

    def rotate():
        with lock:
            mine = next(stores)
        return mine.rotate("acme", before.token_version, refresh)

    try:
        results = _run_threads(10, rotate)
    finally:
        for engine in engines:
            engine.dispose()
    assert len(refresh.calls) == 1
    assert {(r.access_token, r.token_version) for r in results} == {("access-1", before.token_version + 1)}


def test_two_processes_one_refresh(db_url: str, key: str, store: Store, tmp_path: Path) -> None:
    before = add_connection(store.connections)
    calls_file = tmp_path / "refresh-calls.txt"
    calls_file.touch()
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    results = context.Queue()
    processes = [
        context.Process(
            target=rotate_in_process,
            args=(db_url, key, "acme", before.token_version, barrier, str(calls_file), results),
        )
        for _ in range(2)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    calls = calls_file.read_text().splitlines()
    assert len(calls) == 1, calls
    assert calls[0].endswith(REFRESH_TOKEN)
    assert outcomes[0] == outcomes[1], outcomes
    access, refresh_token, version = outcomes[0]
    assert version == before.token_version + 1
    stored = store.connections.get("acme")
    assert (stored.access_token, stored.refresh_token) == (access, refresh_token)


# -- asyncio --------------------------------------------------------------------------------------


class AsyncCountingRefresh:
    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls: list[str] = []

    async def __call__(self, refresh_token: str) -> TokenResult:
        self.calls.append(refresh_token)
        n = len(self.calls)
        await asyncio.sleep(self.delay)
        return tokens(f"async-access-{n}", f"async-refresh-{n}")


async def test_async_ten_callers_one_refresh(connections: ConnectionStore) -> None:
    before = add_connection(connections)
    refresh = AsyncCountingRefresh(delay=0.1)
    async with AsyncConnectionStore(connections) as aconnections:
        results = await asyncio.gather(*(aconnections.rotate("acme", before.token_version, refresh) for _ in range(10)))
        assert len(refresh.calls) == 1
        assert {(r.access_token, r.token_version) for r in results} == {("async-access-1", before.token_version + 1)}
        assert (await aconnections.get("acme")).access_token == "async-access-1"


async def test_async_store_mirrors_the_sync_one(connections: ConnectionStore) -> None:
    async with AsyncConnectionStore(connections) as aconnections:
        await aconnections.add(
            name="a",
            realm_id="1",
            client_id="c",
            client_secret="s",
            tokens=tokens(),
            api_base="http://b",
            token_endpoint="http://t",
        )
        assert [r.name for r in await aconnections.list()] == ["a"]
        assert [r.name for r in await aconnections.find_by_realm("1")] == ["a"]
        assert (await aconnections.save_tokens("a", tokens("x"))).access_token == "x"
        assert (await aconnections.mark_needs_reconnect("a", "why")).needs_reconnect
        await aconnections.remove("a")
        assert await aconnections.list() == []


async def test_async_invalid_grant(connections: ConnectionStore) -> None:
    before = add_connection(connections)

    async def rejected(_: str) -> TokenResult:
        raise NeedsReconnect("acme", "invalid_grant")

    async with AsyncConnectionStore(connections) as aconnections:
        with pytest.raises(NeedsReconnect):
            await aconnections.rotate("acme", before.token_version, rejected)
        assert (await aconnections.get("acme")).needs_reconnect


async def test_async_cancelled_during_refresh_still_saves_the_tokens(connections: ConnectionStore) -> None:
    before = add_connection(connections)
    started = asyncio.Event()

    async def slow(_: str) -> TokenResult:
        started.set()
        await asyncio.sleep(0.3)
        return tokens("saved-anyway", "rotated-refresh")

    async with AsyncConnectionStore(connections) as aconnections:
        task = asyncio.ensure_future(aconnections.rotate("acme", before.token_version, slow))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        stored = await aconnections.get("acme")
    assert (stored.access_token, stored.refresh_token) == ("saved-anyway", "rotated-refresh")
    assert stored.token_version == before.token_version + 1


async def test_async_many_connections_few_threads_no_deadlock(connections: ConnectionStore) -> None:
    # More rotations at once than the pool has threads: on SQLite each holds the database's writer lock,
    # so this deadlocks unless the lock holder never needs a pool thread to finish.
    names = [f"c{i}" for i in range(6)]
    versions = {name: add_connection(connections, name).token_version for name in names}
    refresh = AsyncCountingRefresh(delay=0.05)
    async with AsyncConnectionStore(connections, max_workers=2) as aconnections:
        results = await asyncio.wait_for(
            asyncio.gather(*(aconnections.rotate(name, versions[name], refresh) for name in names for _ in range(3))),
            timeout=25,
        )
    assert len(refresh.calls) == len(names)
    by_name = Counter((r.name, r.token_version) for r in results)
    assert by_name == Counter({(name, versions[name] + 1): 3 for name in names})
