"""Shared pacing (PostgreSQL): processes, each with its own event loop, hammer one company through
`SharedRealmPacer` at small limits; together they never exceed the window or the in-flight limit, a killed
process's leases expire and their places are reused, a 429's pause holds every process, and clients in three
processes against the throttled sandbox get no 429.

Each child process is this module run with `python -c` (see `child`); it says "ready" on stdout, waits for
"go" on stdin, and records what it did in the `probe` table of the test database.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from qbflow.qbo import Limits, QBOClient, Query, RealmPacer, RetryPolicy, StaticTokens
from qbflow.qbo.shared_pacing import (
    SharedRealmPacer,
    pacer_for_database,
    reset_shared_pacers,
    shared_pacer_for,
)
from qbflow.settings import Settings
from qbflow.store.db import make_engine, upgrade
from tests.conftest import postgres_database

ROOT = Path(__file__).resolve().parents[2]
REALM = "4620816365037572001"
SMALL = Limits(per_window=20, window=1.0, margin=0.05, concurrent=3, batch_per_window=4, throttle_pause=1.0)
DEADLINE = 30.0  # seconds any condition may take before the test fails


# --- the child process ---------------------------------------------------------------------------------
def child(raw: str) -> None:
    """Entry point of a child process: `spec` (JSON) says what to do."""
    asyncio.run(_child(json.loads(raw)))


def _say(*words: object) -> None:
    print(*words, flush=True)


async def _child(spec: dict[str, Any]) -> None:
    limits = Limits(**spec["limits"])
    mode = spec["mode"]
    if mode == "qbo":
        await _child_qbo(spec, limits)
        return
    engine = make_engine(spec["url"])
    pacer = shared_pacer_for(spec["realm"], spec["url"], limits, lease_ttl=spec.get("lease_ttl", 30.0))
    rows: list[dict[str, Any]] = []

    def record(new: list[dict[str, Any]]) -> None:
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO probe (worker, admitted_at, started, ended, batch) "
                                    "VALUES (:worker, :admitted_at, :started, :ended, :batch)"), new)

    async def one(n: int) -> None:
        batch = spec.get("batch_every", 0) > 0 and n % spec["batch_every"] == 0
        async with pacer.slot(batch=batch) as lease:
            started = time.time()
            await asyncio.sleep(random.uniform(0.0, 0.02))  # the request
            ended = time.time()
        row = {"worker": spec["worker"], "admitted_at": lease.admitted_at, "started": started, "ended": ended,
               "batch": batch}
        if mode == "until_stop":
            await asyncio.to_thread(record, [row])
        else:
            rows.append(row)

    if mode == "hold":  # take places and die holding them (the parent kills this process)
        held = 0

        async def hold() -> None:
            nonlocal held
            async with pacer.slot():
                held += 1
                if held == spec["count"]:
                    _say("held")
                await asyncio.Event().wait()

        await asyncio.gather(*(hold() for _ in range(spec["count"])))
        return

    _say("ready")
    await asyncio.to_thread(sys.stdin.readline)  # "go"
    if mode == "hammer":
        await asyncio.gather(*(one(n) for n in range(spec["count"])))
        record(rows)
    elif mode == "until_stop":
        stop = asyncio.create_task(asyncio.to_thread(sys.stdin.readline))
        n = 0

        async def loop() -> None:
            nonlocal n
            while not stop.done():
                n += 1
                await one(n)

        await asyncio.gather(*(loop() for _ in range(limits.concurrent)))
    _say("done", json.dumps(await pacer.astats()))
    engine.dispose()


async def _child_qbo(spec: dict[str, Any], limits: Limits) -> None:
    """Real QBOClient calls against the sandbox, paced by the pacer a worker would get."""
    pacer = pacer_for_database(spec["realm"], spec["url"], limits, settings=Settings(shared_limits=True))
    assert isinstance(pacer, SharedRealmPacer)
    retry = RetryPolicy(attempts=3, timeout=60.0, wait_initial=0.01, wait_max=0.05, wait_jitter=0.01)
    async with QBOClient(spec["realm"], base_url=spec["base"], tokens=StaticTokens(spec["token"]), pacer=pacer,
                         retry=retry) as qbo:
        _say("ready")
        await asyncio.to_thread(sys.stdin.readline)

        async def one(n: int) -> None:
            if n % 8 == 0:
                results = await qbo.batch([{"Query": Query("Customer").where(Id="1")}])
                assert results[0].ok
            else:
                await qbo.get("Customer", "1")

        await asyncio.gather(*(one(n) for n in range(spec["count"])))
    _say("done", json.dumps({"throttles": pacer.throttles, "admitted": pacer.admitted}))


# --- running children ----------------------------------------------------------------------------------
class Child:
    """One child process; its stdout is read line by line by a thread, so waits can have deadlines."""

    def __init__(self, spec: dict[str, Any]) -> None:
        code = "import sys; from tests.qbo.test_shared_pacing import child; child(sys.argv[1])"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen([sys.executable, "-c", code, json.dumps(spec)], cwd=ROOT, env=env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            self.lines.put(line.rstrip("\n"))
        self.lines.put("")  # end of output

    def expect(self, word: str, timeout: float = DEADLINE) -> str:
        """The next line that starts with `word` (the rest of it); fails if the child ends or takes too long."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {word!r} from the child in {timeout} s:\n{''.join(self.output)}") from None
            if line.startswith(word):
                return line[len(word):].strip()
            if line == "" and self.process.poll() is not None:
                raise AssertionError(f"the child ended before {word!r}:\n{''.join(self.output)}")

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=DEADLINE)


@contextmanager
def children(*specs: dict[str, Any]) -> Iterator[list[Child]]:
    with ExitStack() as stack:
        started = []
        for spec in specs:
            started.append(Child(spec))
            stack.callback(started[-1].stop)
        yield started


def spec(url: str, mode: str, worker: str, limits: Limits = SMALL, **more: Any) -> dict[str, Any]:
    return {"url": url, "realm": REALM, "mode": mode, "worker": worker, "limits": asdict(limits), **more}


# --- measures ------------------------------------------------------------------------------------------
def max_in_any_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """Most intervals holding one moment (an interval ending when another starts does not overlap it)."""
    points = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    best = current = 0
    for _, step in points:
        current += step
        best = max(best, current)
    return best


def probes(url: str) -> list[Any]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(text("SELECT * FROM probe ORDER BY admitted_at")))
    finally:
        engine.dispose()


def wait_until(condition: Any, what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


# --- fixtures ------------------------------------------------------------------------------------------
@pytest.fixture
def database() -> Iterator[str]:
    """A new PostgreSQL database at the head migration, with a `probe` table for the children's records."""
    with postgres_database() as url:
        upgrade(url)
        engine = make_engine(url)
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE probe (worker text, admitted_at float8, started float8, "
                                    "ended float8, batch boolean)"))
        engine.dispose()
        try:
            yield url
        finally:
            reset_shared_pacers()


# --- tests ---------------------------------------------------------------------------------------------
def test_three_processes_together_stay_within_the_window_and_the_in_flight_limit(database: str) -> None:
    per_child = 30
    with children(*(spec(database, "hammer", f"w{i}", count=per_child, batch_every=6) for i in range(3))) as kids:
        for kid in kids:
            kid.expect("ready")
        started = time.monotonic()
        for kid in kids:
            kid.send("go")
        for kid in kids:
            kid.expect("done")
        elapsed = time.monotonic() - started
    rows = probes(database)
    assert len(rows) == 3 * per_child
    ends = [row.ended for row in rows]
    batch_ends = [row.ended for row in rows if row.batch]
    window = SMALL.effective_window
    assert max_in_any_window(ends, window) == SMALL.per_window  # the limit is reached, never passed
    assert max_in_any_window(batch_ends, window) <= SMALL.batch_per_window
    assert max_overlap([(row.started, row.ended) for row in rows]) <= SMALL.concurrent
    assert {row.worker for row in rows} == {"w0", "w1", "w2"}
    # Paced, not crawling: 90 requests at 20 a window need 4 windows; 15 batches at 4 a window need 3.
    assert elapsed < 4 * window + 3


def test_a_killed_process_leaves_leases_that_expire_and_whose_places_are_reused(database: str) -> None:
    limits = Limits(per_window=100, window=60.0, margin=0.5, concurrent=3)
    ttl = 1.0
    with children(spec(database, "hold", "holder", limits, count=3, lease_ttl=ttl)) as (holder,):
        holder.expect("held")
        holder.stop()  # SIGKILL, holding all 3 places
        pid = holder.process.pid
    engine = make_engine(database)
    try:
        with engine.connect() as connection:
            expiries = sorted(connection.execute(
                text("SELECT expires_at FROM pacer_requests WHERE holder LIKE :pid AND ended_at IS NULL"),
                {"pid": f"%:{pid}"}).scalars())
        assert len(expiries) == 3
        pacer = SharedRealmPacer(REALM, limits, engine=engine, lease_ttl=ttl)
        assert pacer.stats()["in_flight"] == 3  # the dead process's leases, until they expire

        async def reuse() -> list[float]:
            admitted: list[float] = []
            all_in = asyncio.Event()

            async def one() -> None:
                async with pacer.slot() as lease:
                    admitted.append(lease.admitted_at)
                    if len(admitted) == 3:
                        all_in.set()
                    await asyncio.wait_for(all_in.wait(), DEADLINE)  # all three places held at once again

            await asyncio.gather(*(one() for _ in range(3)))
            return sorted(admitted)

        admitted = asyncio.run(reuse())
        for got, expiry in zip(admitted, expiries, strict=True):
            assert got >= expiry  # each place came back when a lease expired, not before
            assert got - expiry < 0.5  # and was taken promptly: the wait was computed from the expiry
        stats = pacer.stats()
        assert stats["in_flight"] == 0
        assert stats["requests_in_window"] == 6  # the dead process's requests count as ended at their expiry
    finally:
        engine.dispose()


def test_a_429_pauses_the_company_for_every_process(database: str) -> None:
    limits = Limits(per_window=1000, window=1.0, margin=0.05, concurrent=3)
    engine = make_engine(database)
    pacer = SharedRealmPacer(REALM, limits, engine=engine)

    def count(where: str, **params: Any) -> dict[str, int]:
        with engine.connect() as connection:
            rows = connection.execute(text(f"SELECT worker, count(*) FROM probe WHERE {where} GROUP BY worker"),
                                      params)
            return dict(rows.all())

    try:
        with children(*(spec(database, "until_stop", f"w{i}", limits) for i in range(3))) as kids:
            for kid in kids:
                kid.expect("ready")
            for kid in kids:
                kid.send("go")
            wait_until(lambda: len(count("true")) == 3 and min(count("true").values()) >= 3, "every child running")
            pause = asyncio.run(pacer.pause(1.0))  # as QBOClient does on a 429, through throttled()
            wait_until(lambda: len(after := count("admitted_at >= :until", until=pause.until)) == 3
                       and min(after.values()) >= 3, "every child running again after the pause")
            for kid in kids:
                kid.send("stop")
            child_stats = [json.loads(kid.expect("done")) for kid in kids]
        rows = probes(database)
        assert not [row for row in rows if pause.start <= row.admitted_at < pause.until]
        for worker in ("w0", "w1", "w2"):
            resumed = min(row.admitted_at for row in rows if row.worker == worker and row.admitted_at >= pause.until)
            assert resumed - pause.until < 0.5  # each was waiting for the pause's end, not crawling after it
        assert all(stats["realm_throttles"] == 1 for stats in child_stats)
    finally:
        engine.dispose()


class GatedExecutor(ThreadPoolExecutor):
    """Runs nothing until `gate` is set, and says when the first call is waiting at it."""

    def __init__(self) -> None:
        super().__init__(max_workers=2)
        self.gate = threading.Event()
        self.entered = threading.Event()

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        def gated() -> Any:
            self.entered.set()
            self.gate.wait(DEADLINE)
            return fn(*args, **kwargs)

        return super().submit(gated)


def test_a_request_cancelled_while_being_admitted_leaves_no_lease(database: str) -> None:
    engine = make_engine(database)
    executor = GatedExecutor()
    pacer = SharedRealmPacer(REALM, SMALL, engine=engine, executor=executor)

    async def scenario() -> None:
        async def request() -> None:
            async with pacer.slot():
                raise AssertionError("never admitted: cancelled first")

        waiter = asyncio.create_task(request())
        await asyncio.to_thread(executor.entered.wait, DEADLINE)  # inside the admission's database call
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter

    try:
        asyncio.run(scenario())
        executor.gate.set()  # the admission goes through after its caller left: its lease must be given back
        wait_until(lambda: _lease_drawn(engine) and _lease_rows(engine) == 0, "the unused lease to be deleted")
        assert pacer.stats()["requests_in_window"] == 0 and pacer.admitted == 0
    finally:
        executor.shutdown(wait=True)
        engine.dispose()


def _lease_drawn(engine: Any) -> bool:
    """Whether a lease was ever made (an id drawn from the sequence)."""
    with engine.connect() as connection:
        return connection.execute(text("SELECT is_called FROM pacer_requests_id_seq")).scalar_one()


def _lease_rows(engine: Any) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM pacer_requests")).scalar_one()


def test_pacer_for_database_shares_only_on_postgresql(database: str, tmp_path: Path) -> None:
    shared = pacer_for_database(REALM, database, settings=Settings(shared_limits=True))
    assert isinstance(shared, SharedRealmPacer)
    assert pacer_for_database(REALM, database, settings=Settings(shared_limits=True)) is shared
    assert isinstance(pacer_for_database(REALM, database, settings=Settings(shared_limits=False)), RealmPacer)
    sqlite = f"sqlite:///{tmp_path / 'one.sqlite3'}"
    assert isinstance(pacer_for_database(REALM, sqlite, settings=Settings(shared_limits=True)), RealmPacer)
    assert isinstance(pacer_for_database(REALM, settings=Settings(database_url=sqlite)), RealmPacer)


SANDBOX_SERVER = """
import json, sys
import uvicorn
from qbflow.sandbox.app import Sandbox
from qbflow.sandbox.limits import LimitPolicy
port, limits = int(sys.argv[1]), json.loads(sys.argv[2])
box = Sandbox(rate_limit=True)
box.limiter.policy = LimitPolicy(**limits)
box.faults.latency = 0.01
realm = box.realms[0]
token = box.oauth.issue_tokens_for_tests(box.client_id, realm)["access_token"]
print(json.dumps({"realm": realm, "token": token}), flush=True)
uvicorn.run(box, host="127.0.0.1", port=port, log_level="warning")
"""


def test_three_client_processes_against_the_throttled_sandbox_get_no_429(database: str) -> None:
    from tests.sandbox.test_server import free_port

    # Intuit's limits shrunk in time (30 a second instead of 500 a minute) so the test takes seconds.
    policy = {"per_minute": 30, "window": 1.0, "concurrent": 3, "batch_per_minute": 5}
    limits = Limits(per_window=30, window=1.0, margin=0.05, concurrent=3, batch_per_window=5)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-c", SANDBOX_SERVER, str(port), json.dumps(policy)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        company = json.loads(server.stdout.readline())

        def answers() -> bool:
            try:
                return httpx.get(f"{base}/_sandbox/limits", timeout=1).status_code == 200
            except httpx.TransportError:
                assert server.poll() is None, "the sandbox ended"
                return False

        wait_until(answers, "the sandbox to answer")
        per_child = 40
        specs = [spec(database, "qbo", f"w{i}", limits, base=base, count=per_child, **company) for i in range(3)]
        with children(*specs) as kids:
            for kid in kids:
                kid.expect("ready")
            started = time.monotonic()
            for kid in kids:
                kid.send("go")
            results = [json.loads(kid.expect("done")) for kid in kids]
            elapsed = time.monotonic() - started
        sandbox = httpx.get(f"{base}/_sandbox/limits", timeout=5).json()
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    assert sandbox["policy"]["per_minute"] == 30 and sandbox["enabled"]
    assert sandbox["refused"] == 0  # not one 429
    assert [r["throttles"] for r in results] == [0, 0, 0]
    assert sum(r["admitted"] for r in results) == 3 * per_child
    assert elapsed < 120 / 30 * limits.effective_window + 4  # paced at the limit, not crawling
