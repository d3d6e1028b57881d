"""What the workflow engine costs: QBO requests per poll cycle, CPU per run, and memory across a backfill.

Prints three numbers the engine issue sets goals for:

1. **requests per poll cycle** with 20 triggers (New and Updated for the ten entities of the seed list) in
   20 workflows on one company, with changes between cycles: the goal is 1 (one CDC request serves them
   all). Sandbox in process, counted at the transport.
2. **engine CPU time per run**, sandbox in process: a workflow "New Customer -> Get Customer -> log" runs
   `--runs` times (poll, claim, render, validate, call, record); the sandbox's own CPU time (measured around
   every call into it) is subtracted from the process's. Goal: under 2 ms. The store is SQLite in a
   temporary folder, as on a user's machine.
3. **peak memory across a backfill**: `--backfill` customers (default 100,000) are made in a sandbox data
   file by a separate process, then `qbflow sandbox --data` serves it on 127.0.0.1 (so the sandbox's own
   memory is not counted) and this process runs the engine with `since:` before them: every customer is
   read (queries in slices), recorded and run once. The engine process's resident memory is sampled as it
   goes; the goal is flat, under 150 MB.

Not a test: nothing is asserted about timings. The backfill of 100,000 takes several minutes on a small
machine; `--backfill 20000` gives a quicker look.

    .venv/bin/python benchmarks/engine.py [--runs 2000] [--backfill 100000] [--skip-backfill]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx

from qbflow.connector.triggers import TRIGGERS
from qbflow.engine.clients import ClientPool
from qbflow.engine.runner import Runner
from qbflow.engine.scheduler import Engine
from qbflow.qbo.client import QBOClient
from qbflow.qbo.tokens import StaticTokens
from qbflow.store import RunStore, SecretBox, open_store

CLIENT_ID = "ABbenchmarkEngine"
CLIENT_SECRET = "benchmark-secret-not-a-real-one"
REDIRECT_URI = "http://127.0.0.1:9/callback"
BASE = "http://sandbox.local"


class TimedApp:
    """The sandbox ASGI app, with the CPU time spent inside it added up (runs are sequential here)."""

    def __init__(self, app) -> None:
        self.app = app
        self.cpu = 0.0
        self.requests: list[str] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            self.requests.append(scope["path"])
        started = time.thread_time()
        try:
            await self.app(scope, receive, send)
        finally:
            self.cpu += time.thread_time() - started


def workflow(name: str, trigger_key: str, steps: list[dict], **trigger: object) -> dict:
    return {"name": name, "trigger": {"key": trigger_key, "connection": "bench", **trigger}, "steps": steps}


LOG = {"id": "say", "action": "log", "input": {"message": "{{ trigger.Id }}"}}


def in_process(app: TimedApp, realm: str, token: str) -> ClientPool:
    """Clients as the engine keeps them (one per connection, reused), to the in-process sandbox."""
    async def clients(name: str) -> QBOClient:
        return QBOClient(realm, base_url=BASE, tokens=StaticTokens(token), pacer=False,
                         transport=httpx.ASGITransport(app=app))
    return ClientPool(clients)


def open_runs(folder: str) -> tuple[object, RunStore]:
    store = open_store(url=f"sqlite:///{folder}/qbflow.sqlite3", box=SecretBox([SecretBox.generate_key()]))
    return store, RunStore(store.engine)


# --- 1: requests per poll cycle --------------------------------------------------------------------------
async def requests_per_cycle(cycles: int) -> None:
    from qbflow.sandbox.app import Sandbox

    sandbox = Sandbox(rate_limit=False)
    realm = sandbox.realms[0]
    token = sandbox.oauth.issue_tokens_for_tests(sandbox.client_id, realm)["access_token"]
    app = TimedApp(sandbox)
    keys = [key for key in TRIGGERS if not key.startswith("deleted_")]
    with tempfile.TemporaryDirectory() as folder:
        store, runs = open_runs(folder)
        for key in keys:
            runs.upsert_workflow(f"bench {key}", None, workflow(f"bench {key}", key, [LOG]))
        clients = in_process(app, realm, token)
        engine = Engine(runs, clients, Runner(runs, clients), clock=sandbox.clock.now)
        sandbox.clock.advance(2)
        await engine.cycle(force=True)  # activation
        counts, events = [], 0
        for n in range(cycles):
            sandbox.clock.advance(2)
            customer = sandbox.books.create(realm, "Customer", {"DisplayName": f"Cycle Customer {n}"})
            sandbox.books.update(realm, "Customer", {"Id": customer["Id"], "SyncToken": "0", "sparse": True,
                                                     "CompanyName": f"Cycle Co {n}"})
            sandbox.books.create(realm, "Vendor", {"DisplayName": f"Cycle Vendor {n}"})
            sandbox.clock.advance(2)
            app.requests.clear()
            report = await engine.cycle(force=True)
            counts.append(sum(1 for path in app.requests if "/v3/company/" in path))
            events += report.events
        await clients.aclose()
        store.close()
    print(f"1. requests per poll cycle, {len(keys)} triggers in {len(keys)} workflows on one company, "
          f"{cycles} cycles with changes: mean {sum(counts) / len(counts):.2f}, max {max(counts)} "
          f"(goal: 1); {events} events fired")


# --- 2: engine CPU per run --------------------------------------------------------------------------------
async def cpu_per_run(count: int) -> None:
    from qbflow.sandbox.app import Sandbox

    sandbox = Sandbox(rate_limit=False)
    realm = sandbox.realms[0]
    token = sandbox.oauth.issue_tokens_for_tests(sandbox.client_id, realm)["access_token"]
    app = TimedApp(sandbox)
    steps = [{"id": "customer", "action": "get_customer", "input": {"id": "{{ trigger.Id }}"}},
             {"id": "say", "action": "log",
              "input": {"message": "{{ steps.customer.output.DisplayName }} ({{ trigger.Id }})"}}]
    with tempfile.TemporaryDirectory() as folder:
        store, runs = open_runs(folder)
        runs.upsert_workflow("get new customers", None, workflow("get new customers", "new_customer", steps))
        clients = in_process(app, realm, token)
        engine = Engine(runs, clients, Runner(runs, clients), clock=sandbox.clock.now)
        sandbox.clock.advance(2)
        await engine.cycle(force=True)
        sandbox.clock.advance(2)
        for n in range(count):
            sandbox.books.create(realm, "Customer", {"DisplayName": f"CPU Customer {n}"})
        sandbox.clock.advance(2)
        app.cpu = 0.0
        cpu, wall = time.process_time(), time.perf_counter()
        done = 0
        while True:
            report = await engine.cycle(force=True)
            done += report.runs
            if not report.polls or (report.runs == 0 and report.events == 0):
                break
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        await clients.aclose()
        store.close()
    engine_cpu = cpu - app.cpu
    print(f"2. engine CPU per run (New Customer -> Get Customer -> log, SQLite store, sandbox in process): "
          f"{engine_cpu / done * 1000:.2f} ms (goal: under 2 ms); {done} runs; process CPU {cpu:.2f} s, "
          f"of which sandbox {app.cpu:.2f} s; wall {wall:.2f} s, {done / wall:.0f} runs/s")


# --- 3: memory across a backfill --------------------------------------------------------------------------
# Made as fast as Intuit lets a company be written to in bulk (40 batch requests of 30 a minute: 20 records a
# second), so their times spread as real ones would; the sandbox clock starts that long ago.
PREPARE = """
import sys
from qbflow.sandbox.app import Sandbox
from qbflow.sandbox.clock import Clock
total, per_second = int(sys.argv[2]), 20
clock = Clock()
clock.advance(0)
clock.offset = -(total / per_second + 120)
sandbox = Sandbox(data=sys.argv[1], rate_limit=False, client_id=sys.argv[3], client_secret=sys.argv[4], clock=clock)
realm = sandbox.realms[0]
clock.advance(5)
print(clock.time())
for start in range(0, total, 1000):
    with sandbox.storage.transaction():
        for n in range(start, min(start + 1000, total)):
            if n % per_second == 0:
                clock.advance(1)
            sandbox.books.create(realm, "Customer", {"DisplayName": f"Backfill Customer {n}",
                                 "PrimaryEmailAddr": {"Address": f"c{n}@example.com"},
                                 "BillAddr": {"Line1": f"{n} Main St", "City": "Springfield",
                                              "CountrySubDivisionCode": "CA", "PostalCode": "94000"}})
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def connect(base: str) -> tuple[str, str]:
    authorize = httpx.get(f"{base}/connect/oauth2", params={
        "client_id": CLIENT_ID, "response_type": "code", "scope": "com.intuit.quickbooks.accounting",
        "redirect_uri": REDIRECT_URI, "state": "benchmark"})
    query = parse_qs(urlparse(authorize.headers["location"]).query)
    tokens = httpx.post(f"{base}/oauth2/v1/tokens/bearer", auth=(CLIENT_ID, CLIENT_SECRET), data={
        "grant_type": "authorization_code", "code": query["code"][0], "redirect_uri": REDIRECT_URI})
    tokens.raise_for_status()
    return query["realmId"][0], tokens.json()["access_token"]


async def backfill(count: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        data = str(Path(folder) / "books.sqlite3")
        started = time.perf_counter()
        made = subprocess.run([sys.executable, "-c", PREPARE, data, str(count), CLIENT_ID, CLIENT_SECRET],
                              capture_output=True, text=True)
        if made.returncode:
            raise SystemExit(f"making the customers failed:\n{made.stderr}")
        since = float(made.stdout.split()[0])  # before the first of them, after the seed company
        prepared = time.perf_counter() - started
        port = free_port()
        process = subprocess.Popen([sys.executable, "-m", "qbflow.cli", "sandbox", "--port", str(port), "--data",
                                    data, "--auto-approve", "--no-rate-limit", "--client-id", CLIENT_ID,
                                    "--client-secret", CLIENT_SECRET],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while True:
                try:
                    httpx.get(f"{base}/_sandbox/companies", timeout=2).raise_for_status()
                    break
                except httpx.TransportError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit("the sandbox did not start") from None
                    await asyncio.sleep(0.2)
            realm, token = connect(base)
            await _backfill(folder, base, realm, token, since, count, prepared)
        finally:
            process.terminate()
            process.wait(timeout=30)


async def _backfill(folder: str, base: str, realm: str, token: str, since: float, count: int,
                    prepared: float) -> None:
    from datetime import UTC, datetime

    store, runs = open_runs(folder)
    start_at = datetime.fromtimestamp(since, UTC).isoformat(timespec="seconds")
    runs.upsert_workflow("backfill", None, workflow("backfill", "new_customer", [LOG], since=start_at,
                                                    poll_interval="1h"))

    async def connect_to(name: str) -> QBOClient:
        return QBOClient(realm, base_url=base, tokens=StaticTokens(token), pacer=False)

    clients = ClientPool(connect_to)
    engine = Engine(runs, clients, Runner(runs, clients))
    baseline = rss_mb()
    samples: list[tuple[int, float]] = []
    done, cycles, requests = 0, 0, 0
    wall = time.perf_counter()
    while True:
        report = await engine.cycle()
        cycles += 1
        done += report.runs
        requests += report.requests
        samples.append((done, rss_mb()))
        if report.errors:
            print("   problems:", "; ".join(report.errors[:3]))
        if report.polls == 0 and report.runs == 0:
            break
    wall = time.perf_counter() - wall
    await clients.aclose()
    store.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    marks = [samples[max(0, round(len(samples) * f) - 1)] for f in (0.1, 0.25, 0.5, 0.75, 1.0)]
    print(f"3. backfill of {count:,} customers (made in {prepared:.0f} s, sandbox in its own process): "
          f"{done:,} runs in {wall:.0f} s ({done / wall:.0f} runs/s), {cycles} cycles, {requests} QBO requests "
          f"for the polls")
    print(f"   engine process memory: {baseline:.0f} MB before, then "
          + ", ".join(f"{mb:.0f} MB after {runs_done:,} runs" for runs_done, mb in marks)
          + f"; peak RSS {peak:.0f} MB (goal: flat, under 150 MB)")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--backfill", type=int, default=100_000)
    parser.add_argument("--skip-backfill", action="store_true")
    parser.add_argument("--only", choices=["cycles", "cpu", "backfill"], help="run one part only")
    args = parser.parse_args()
    if args.only == "backfill":
        await backfill(args.backfill)
        return
    print(f"qbflow engine benchmark: Python {platform.python_version()}, {os.cpu_count()} CPUs")
    if args.only in (None, "cycles"):
        await requests_per_cycle(args.cycles)
    if args.only in (None, "cpu"):
        await cpu_per_run(args.runs)
    if args.only is None and not args.skip_backfill:
        # In a process of its own, so its peak memory is the backfill's, not the other parts'.
        subprocess.run([sys.executable, __file__, "--only", "backfill", "--backfill", str(args.backfill)],
                       check=True)


if __name__ == "__main__":
    asyncio.run(main())
