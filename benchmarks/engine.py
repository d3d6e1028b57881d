"""What the workflow engine costs: QBO requests per poll cycle, CPU per run, memory across a backfill, and
throughput at latency against Intuit's limits.

Prints the numbers the engine issue sets goals for (the first three by default, the fourth when asked for):

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

4. **throughput at latency** (`--only throughput`, never part of the default run): what a user runs, as
   processes: `qbflow sandbox --latency 0.25` with Intuit's throttles on and `--companies` companies, one
   stored connection per company, one workflow per company (New Customer -> `get_customer` ->
   `update_customer` changing the notes, `since:` before the customers so every run is waiting at the start),
   `--runs-per-company` customers made in each company beforehand (throttles, latency and faults off while they
   are made, then the sandbox's counts and windows reset), then `qbflow run`. It waits until every run has
   finished (succeeded, failed or cancelled) and prints:
   - the time taken: from the engine's first request at the sandbox to the last run's `finished_at`;
   - the requests counted at the sandbox per company (polls included) and the 429s its throttles answered;
   - the time a perfect client needs for those requests under Intuit's limits: per company at most 10 in
     flight, each taking the latency, at most 500 starting in any 60 s; companies are independent, so the
     slowest company's; and the ratio perfect / actual (goal: at least 0.8, with 0 x 429);
   - the longest stretch without a finished run while runs were waiting (from the runs' `finished_at`; the goal
     with `--fault-rate 0.15` is at most 10 s);
   - the CPU the engine used (start-up included) and the sandbox's while the engine ran, and a timeline: when
     the first run was stored and started, and when a tenth, half and all of them had finished.
   `--timeout` stops early and projects the total at the same pace; `--engine-arg`/`--engine-env` pass
   arguments and environment (e.g. a concurrency setting) to `qbflow run`; `--json` prints one document.

Not a test: nothing is asserted about timings. The backfill of 100,000 takes several minutes on a small
machine; `--backfill 20000` gives a quicker look.

    .venv/bin/python benchmarks/engine.py [--runs 2000] [--backfill 100000] [--skip-backfill]
    .venv/bin/python benchmarks/engine.py --only throughput [--companies 10] [--runs-per-company 500] \
        [--fault-rate 0.15] [--timeout 300] [--engine-arg=--tick=0.5] [--engine-env QBFLOW_X=Y] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's tests/ package: shared helpers

from qbflow.connector.triggers import TRIGGERS
from qbflow.engine.clients import ClientPool
from qbflow.engine.runner import Runner
from qbflow.engine.scheduler import Engine
from qbflow.qbo.client import QBOClient
from qbflow.qbo.tokens import StaticTokens
from qbflow.store import RunStore, SecretBox, open_store
from qbflow.store.db import make_engine
from qbflow.store.models import RUN_CANCELLED, RUN_FAILED, RUN_SUCCEEDED, Run

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


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a running process has used so far (Linux's /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


# --- 4: throughput at latency ----------------------------------------------------------------------------
# Intuit's limits per company, which the perfect client keeps to and the sandbox enforces.
IN_FLIGHT, PER_MINUTE, WINDOW = 10, 500, 60.0
FINISHED = (RUN_SUCCEEDED, RUN_FAILED, RUN_CANCELLED)
PREFIX = "Bench Customer"


def perfect_seconds(requests: int, latency: float, *, in_flight: int = IN_FLIGHT, per_window: int = PER_MINUTE,
                    window: float = WINDOW) -> float:
    """The least time `requests` requests of one company take, each answered `latency` seconds after it starts,
    with at most `in_flight` at once and at most `per_window` starting in any `window` seconds: every request
    starts as early as both limits let it (request k waits for k-in_flight to end and for k-per_window to be a
    window old)."""
    starts: list[float] = []
    for k in range(requests):
        start = 0.0
        if k >= in_flight:
            start = max(start, starts[k - in_flight] + latency)
        if k >= per_window:
            start = max(start, starts[k - per_window] + window)
        starts.append(start)
    return starts[-1] + latency if starts else 0.0


def longest_gap(start: float, finishes: list[float], end: float | None = None) -> tuple[float, float]:
    """(seconds, when it began, in seconds after `start`): the longest stretch without a finished run while runs
    were waiting, from `start` over the sorted finish times, and on to `end` when runs were still waiting then."""
    marks = [start, *sorted(finishes)] + ([end] if end is not None else [])
    gaps = [(later - earlier, earlier - start) for earlier, later in zip(marks, marks[1:], strict=False)]
    return max(gaps, default=(0.0, 0.0))


def _epoch(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _throughput_workflow(name: str, since: str) -> str:
    """New customer -> get it -> update its notes; the trigger's SyncToken is passed when the action takes one
    (then the update needs no read of its own)."""
    from qbflow.connector.registry import action

    sync_token = ("\n      sync_token: \"{{ trigger.SyncToken }}\""
                  if "sync_token" in action("update_customer").input_model.model_fields else "")
    return f"""\
name: bench-{name}
trigger:
  key: new_customer
  connection: {name}
  since: "{since}"
  filter: "{{{{ trigger.DisplayName.startswith('{PREFIX} ') }}}}"
steps:
  - id: read
    action: get_customer
    input:
      id: "{{{{ trigger.Id }}}}"
  - id: touch
    action: update_customer
    input:
      id: "{{{{ trigger.Id }}}}"{sync_token}
      notes: "seen by the benchmark, sync token {{{{ steps.read.output.SyncToken }}}}"
"""


def _run_counts(db) -> tuple[Counter, list[float]]:
    """Runs by status, and the finish times (epoch seconds) of the finished ones."""
    with db.connect() as connection:
        rows = connection.execute(select(Run.status, Run.finished_at)).all()
    statuses = Counter(status for status, _finished in rows)
    finishes = [_epoch(finished) for status, finished in rows if status in FINISHED and finished is not None]
    return statuses, finishes


def throughput(args: argparse.Namespace) -> dict:
    """One case of "throughput at latency"; the measurements as a dict (printed by `report_throughput`)."""
    from tests.support.connect import CLIENT_ID as APP_ID
    from tests.support.connect import CLIENT_SECRET as APP_SECRET
    from tests.support.connect import qbflow_env
    from tests.support.procs import EngineProcess, qbflow
    from tests.support.sandbox import running_sandbox
    from tests.support.workers import Company, connect_companies, tokens, utc_iso

    names = [f"co{n:02d}" for n in range(args.companies)]
    expected = args.companies * args.runs_per_company
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        with running_sandbox("--client-id", APP_ID, "--client-secret", APP_SECRET, "--latency", str(args.latency),
                             "--fault-rate", str(args.fault_rate), "--companies", str(args.companies),
                             log=folder / "sandbox.log") as (base, sandbox):
            admin = httpx.Client(base_url=f"{base}/_sandbox", timeout=30)
            # Setting up costs none of the budget the measurement needs: no throttles, latency or faults.
            admin.put("/limits", json={"enabled": False}).raise_for_status()
            admin.put("/faults", json={"rate": 0, "latency": 0}).raise_for_status()
            env = {**qbflow_env(folder), **dict(item.split("=", 1) for item in args.engine_env)}
            realms = connect_companies(base, env, names)
            since = utc_iso(time.time() - 2)
            access = tokens(env, names)
            for name in names:
                company = Company(base, realms[name], access[name])
                company.batch([{"operation": "create", "Customer": {"DisplayName": f"{PREFIX} {name} {n:05d}"}}
                               for n in range(args.runs_per_company)])
                company.close()
            files = []
            for name in names:
                files.append(folder / f"{name}.yaml")
                files[-1].write_text(_throughput_workflow(name, since))
            added = qbflow(env, "workflow", "add", *map(str, files), timeout=300)
            if added.returncode:
                raise SystemExit(added.stdout + added.stderr)
            admin.put("/faults", json={"rate": args.fault_rate, "latency": args.latency}).raise_for_status()
            admin.put("/limits", json={"enabled": True, "reset": True}).raise_for_status()

            db = make_engine(env["QBFLOW_DATABASE_URL"])
            sandbox_cpu_before = cpu_seconds(sandbox.pid)
            launched = time.time()
            engine = EngineProcess(env, folder / "engine.log", *args.engine_arg)
            timed_out = False
            try:
                while True:
                    statuses, finishes = _run_counts(db)
                    if sum(statuses[s] for s in FINISHED) >= expected:
                        break
                    if not engine.alive():
                        raise SystemExit(f"`qbflow run` exited:\n{engine.output()[-4000:]}")
                    if time.time() - launched > args.timeout:
                        timed_out = True
                        break
                    time.sleep(0.25)
                stopped_at = time.time()
                engine_cpu = cpu_seconds(engine.pid)
                sandbox_cpu = cpu_seconds(sandbox.pid)
                limits = admin.get("/limits").json()  # at once: later polls are not the measurement's
                injected = admin.get("/faults").json()["injected"]
            finally:
                engine.stop()
                db.dispose()
                admin.close()
            problems = engine.output().count("Traceback")
            with db.connect() as connection:
                timeline = [(_epoch(c), _epoch(s) if s else None, _epoch(f) if f else None) for c, s, f in
                            connection.execute(select(Run.created_at, Run.started_at, Run.finished_at)).all()]
    traffic = {name: limits["realms"][realms[name]] for name in names}
    requests = {name: counted["requests"] for name, counted in traffic.items()}
    firsts = [counted["first_request_at"] for counted in traffic.values() if counted["first_request_at"]]
    start = min(firsts) if firsts else stopped_at
    done = len(finishes)
    end = max(finishes) if done and not timed_out else stopped_at
    actual = end - start
    perfect = max(perfect_seconds(count, args.latency) for count in requests.values())
    gap, gap_at = longest_gap(start, finishes, stopped_at if timed_out else None)
    result = {
        "companies": args.companies, "runs_per_company": args.runs_per_company, "latency": args.latency,
        "fault_rate": args.fault_rate, "engine_args": args.engine_arg, "engine_env": args.engine_env,
        "runs": expected, "finished": done, "statuses": dict(statuses), "timed_out": timed_out,
        "engine_start_seconds": round(start - launched, 3),
        "actual_seconds": round(actual, 3), "perfect_seconds": round(perfect, 3),
        "ratio": round(perfect / actual, 3) if actual > 0 and not timed_out else None,
        "requests": requests, "requests_per_run": round(sum(requests.values()) / done, 3) if done else None,
        "throttled_429": sum(counted["throttled"] for counted in traffic.values()),
        "injected_faults": injected, "longest_gap_seconds": round(gap, 3), "longest_gap_at": round(gap_at, 3),
        "runs_per_minute": round(done / actual * 60, 1) if actual > 0 else None,
        "engine_tracebacks": problems,
        # CPU the engine process used from its start to the last run's end (start-up and polls included).
        "engine_cpu_seconds": None if engine_cpu is None else round(engine_cpu, 2),
        "sandbox_cpu_seconds": (None if sandbox_cpu is None or sandbox_cpu_before is None
                                else round(sandbox_cpu - sandbox_cpu_before, 2)),
        # Where the time went, in seconds from the first request: the first run stored (the poll's answer
        # read), the first run started, and when a tenth, half and all of the runs had finished.
        "timeline": _timeline(start, timeline),
    }
    if timed_out and done:
        # Straight-line projection: the same pace to the last run, the same requests per run in every company.
        total = actual * expected / done
        per_company = sum(requests.values()) / done * args.runs_per_company
        projected_perfect = perfect_seconds(round(per_company), args.latency)
        result.update(projected_seconds=round(total, 1), projected_perfect_seconds=round(projected_perfect, 3),
                      projected_ratio=round(projected_perfect / total, 3))
    return result


def _timeline(start: float, runs: list[tuple[float, float | None, float | None]]) -> dict[str, float | None]:
    def at(moments: list[float], share: float) -> float | None:
        moments = sorted(moments)
        return round(moments[min(len(moments) - 1, int(share * len(moments)))] - start, 2) if moments else None

    created = [c for c, _s, _f in runs]
    started = [s for _c, s, _f in runs if s is not None]
    finished = [f for _c, _s, f in runs if f is not None]
    return {"first_stored": at(created, 0), "all_stored": at(created, 1), "first_started": at(started, 0),
            "tenth_finished": at(finished, 0.1), "half_finished": at(finished, 0.5), "all_finished": at(finished, 1)}


def report_throughput(result: dict) -> None:
    case = (f"{result['companies']} compan{'y' if result['companies'] == 1 else 'ies'} x "
            f"{result['runs_per_company']} runs (get_customer + update_customer), sandbox latency "
            f"{result['latency']} s, throttles on" + (f", fault rate {result['fault_rate']}" if result['fault_rate']
                                                      else ""))
    print(f"4. throughput at latency: {case}"
          + (f"; qbflow run {' '.join(result['engine_args'])}" if result["engine_args"] else "")
          + (f"; env {' '.join(result['engine_env'])}" if result["engine_env"] else ""))
    print(f"   finished {result['finished']} of {result['runs']} runs {result['statuses']}"
          + (" (stopped at --timeout)" if result["timed_out"] else ""))
    print(f"   time taken: {result['actual_seconds']:.1f} s, from the engine's first request at the sandbox "
          f"({result['engine_start_seconds']:.1f} s after `qbflow run` started) to the last run's finished_at"
          + (" (to the timeout)" if result["timed_out"] else "") + f"; {result['runs_per_minute']} runs/min")
    counts = sorted(set(result["requests"].values()))
    spread = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    print(f"   requests counted at the sandbox: {sum(result['requests'].values())} ({spread} per company, "
          f"{result['requests_per_run']} per finished run, polls included); 429s answered by the throttles: "
          f"{result['throttled_429']}" + (f"; faults injected: {result['injected_faults']}"
                                          if result["injected_faults"] else ""))
    print(f"   perfect client for those requests (per company: {IN_FLIGHT} in flight, {result['latency']} s each, "
          f"at most {PER_MINUTE} starting in any {WINDOW:.0f} s; the slowest company): "
          f"{result['perfect_seconds']:.2f} s")
    if result["ratio"] is not None:
        print(f"   ratio perfect / actual: {result['ratio']:.3f} (goal: at least 0.8, and 0 x 429)")
    if "projected_seconds" in result:
        print(f"   projected to all {result['runs']} runs at this pace: {result['projected_seconds']:.0f} s "
              f"({result['projected_seconds'] / 60:.1f} min); perfect {result['projected_perfect_seconds']:.1f} s; "
              f"ratio {result['projected_ratio']:.3f}")
    print(f"   longest stretch without a finished run while runs were waiting: {result['longest_gap_seconds']:.1f} s"
          f" (from {result['longest_gap_at']:.1f} s after the first request)"
          + ("; goal with --fault-rate: at most 10 s" if result["fault_rate"] else ""))
    if result.get("timeline"):
        print("   timeline (s from the first request): " + ", ".join(
            f"{key.replace('_', ' ')} {value}" for key, value in result["timeline"].items()))
    if result.get("engine_cpu_seconds") is not None:
        print(f"   CPU: the engine {result['engine_cpu_seconds']:.2f} s (start-up included), the sandbox "
              f"{result['sandbox_cpu_seconds']:.2f} s (while the engine ran)")
    if result["engine_tracebacks"]:
        print(f"   the engine's output holds {result['engine_tracebacks']} traceback(s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--backfill", type=int, default=100_000)
    parser.add_argument("--skip-backfill", action="store_true")
    parser.add_argument("--only", choices=["cycles", "cpu", "backfill", "throughput"], help="run one part only "
                        "(throughput runs only when asked for)")
    group = parser.add_argument_group("throughput at latency (--only throughput)")
    group.add_argument("--companies", type=int, default=1)
    group.add_argument("--runs-per-company", type=int, default=60)
    group.add_argument("--latency", type=float, default=0.25, help="seconds the sandbox adds to every answer")
    group.add_argument("--fault-rate", type=float, default=0.0, help="fraction of API requests failing on purpose")
    group.add_argument("--timeout", type=float, default=3600.0,
                       help="stop after this many seconds and project the total from the runs finished")
    group.add_argument("--engine-arg", action="append", default=[], metavar="ARG",
                       help="an extra argument for `qbflow run` (repeat it; e.g. --engine-arg=--tick=0.5)")
    group.add_argument("--engine-env", action="append", default=[], metavar="NAME=VALUE",
                       help="an extra environment variable for qbflow's processes (repeat it)")
    group.add_argument("--json", action="store_true", help="print the measurements as one JSON document")
    args = parser.parse_args()
    if args.only == "throughput":
        result = throughput(args)
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            report_throughput(result)
        return
    asyncio.run(other_parts(args))


async def other_parts(args: argparse.Namespace) -> None:
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
    main()
