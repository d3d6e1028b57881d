"""Helpers of the multi-process pacing tests (test_shared_pacing.py on PostgreSQL, test_redis_pacing.py on Redis).

Each child process is this module run with `python -c` (see `child`); it says "ready" on stdout, waits for
"go" on stdin, and records what it did: in the `probe` table of the test database (PostgreSQL), or in the list
`<prefix>:probe` (Redis, one JSON object per request).
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
from contextlib import ExitStack, contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from qbflow.qbo import Limits, QBOClient, Query, RetryPolicy, StaticTokens

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


class _Backend:
    """Where a child's pacer keeps its limits, and where the child records what it did."""

    def __init__(self, spec: dict[str, Any], limits: Limits) -> None:
        self.spec = spec
        self.redis = spec.get("backend", "postgresql") == "redis"
        lease_ttl = spec.get("lease_ttl", 30.0)
        if self.redis:
            import redis

            from qbflow.qbo.pacing.redis import redis_pacer_for

            self.client = redis.Redis.from_url(spec["url"])
            self.pacer: Any = redis_pacer_for(spec["realm"], spec["url"], limits, lease_ttl=lease_ttl,
                                              prefix=spec["prefix"])
        else:
            from qbflow.qbo.pacing.postgres import shared_pacer_for
            from qbflow.store.db import make_engine

            self.engine = make_engine(spec["url"])
            self.pacer = shared_pacer_for(spec["realm"], spec["url"], limits, lease_ttl=lease_ttl)

    def record(self, new: list[dict[str, Any]]) -> None:
        if not new:
            return
        if self.redis:
            self.client.rpush(f"{self.spec['prefix']}:probe", *(json.dumps(row) for row in new))
            return
        from sqlalchemy import text

        with self.engine.begin() as connection:
            connection.execute(text("INSERT INTO probe (worker, admitted_at, started, ended, batch) "
                                    "VALUES (:worker, :admitted_at, :started, :ended, :batch)"), new)

    def close(self) -> None:
        if self.redis:
            self.client.close()
        else:
            self.engine.dispose()


async def _child(spec: dict[str, Any]) -> None:
    limits = Limits(**spec["limits"])
    mode = spec["mode"]
    if mode == "qbo":
        await _child_qbo(spec, limits)
        return
    backend = _Backend(spec, limits)
    pacer = backend.pacer
    rows: list[dict[str, Any]] = []

    async def one(n: int) -> None:
        batch = spec.get("batch_every", 0) > 0 and n % spec["batch_every"] == 0
        async with pacer.slot(batch=batch) as lease:
            started = time.time()
            await asyncio.sleep(random.uniform(0.0, 0.02))  # the request
            ended = time.time()
        row = {"worker": spec["worker"], "admitted_at": lease.admitted_at, "started": started, "ended": ended,
               "batch": batch}
        if mode == "until_stop":
            await asyncio.to_thread(backend.record, [row])
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
        backend.record(rows)
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
    backend.close()


async def _child_qbo(spec: dict[str, Any], limits: Limits) -> None:
    """Real QBOClient calls against the sandbox, paced by the pacer a worker would get."""
    if spec.get("backend") == "redis":
        from qbflow.qbo.pacing.redis import redis_pacer_for

        pacer: Any = redis_pacer_for(spec["realm"], spec["url"], limits, prefix=spec["prefix"])
    else:
        from qbflow.qbo.pacing import pacing_backend
        from qbflow.qbo.pacing.postgres import SharedRealmPacer
        from qbflow.settings import Settings

        pacer = pacing_backend(spec["url"], settings=Settings(shared_limits=True)).pacer(spec["realm"], limits)
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
        code = "import sys; from tests.qbo.pacing_children import child; child(sys.argv[1])"
        # This checkout's code (src) before any installed copy, and its tests package.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
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


def wait_until(condition: Any, what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


# --- the throttled sandbox in its own process ----------------------------------------------------------
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


@contextmanager
def throttled_sandbox(policy: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The sandbox with rate limits on (`policy`), in a process of its own: its address, and its company
    (`realm`, `token`)."""
    import httpx

    from tests.support.sandbox import free_port

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
        yield base, company
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
