"""Workers at scale: completed runs per second with 1, 2 and 4 `qbflow worker` processes, poll requests per
company per cycle, and peak memory per worker.

The workload is the scale test's (tests/engine/test_workers_scale.py, built by tests/support/workers.py),
the same for every worker count: a sandbox in its own process with Intuit's throttles on, `--latency` seconds
added to every answer, `--companies` companies (default 50) with 20 workflows each (one per New/Updated trigger
of the ten trigger entities: reads, logs, and an invoice or a bill written for each new customer or vendor), 40
changes per company made before the workers start, a new PostgreSQL database. Then:

1. **runs per second**: the workers (`--concurrency` each, default 4) start; the clock runs from their start to
   the last of the `40 x companies` runs succeeding (worker start-up and the first polls included), and, from
   the database's `finished_at`, from the first run finished to the last (the steady rate).
2. **poll requests per company per cycle**: the sandbox counts, per company, the requests that read changes
   (`/cdc`, and queries on `MetaData.LastUpdatedTime`, which a poll makes when CDC cannot serve it). The first
   cycle is the workload's own poll of each company; then `--cycles` more polls of every company are forced
   (the queued poll jobs a webhook would make), one round after another. Goal: 1.
3. **peak memory per worker**: each worker's resident set size sampled every 0.2 s, and the kernel's high-water
   mark (`VmHWM`) read before it stops.

Not a test: nothing is asserted. Needs a PostgreSQL server where the user may create databases:

    QBFLOW_TEST_POSTGRES_URL=postgresql+psycopg://USER@127.0.0.1:5432/postgres \\
        .venv/bin/python benchmarks/scale.py [--workers 1,2,4] [--companies 50] [--cycles 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from sqlalchemy import func, select, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's tests/ package: the workload

from qbflow.engine.workers import TASK_POLL, Workers  # noqa: E402
from qbflow.store import RunStore  # noqa: E402
from qbflow.store.db import make_engine  # noqa: E402
from qbflow.store.models import RUN_SUCCEEDED, Run  # noqa: E402
from tests.support.connect import CLIENT_ID, CLIENT_SECRET, qbflow_env  # noqa: E402
from tests.support.postgres import POSTGRES_ENV, POSTGRES_URL, postgres_database  # noqa: E402
from tests.support.procs import WorkerProcess, qbflow  # noqa: E402
from tests.support.sandbox import free_port  # noqa: E402
from tests.support.workers import (  # noqa: E402
    CHANGES_PER_COMPANY,
    Company,
    connect_companies,
    succeeded_runs,
    tokens,
    utc_iso,
    wait_for,
    write_workflows,
)

# `qbflow sandbox`, wrapped to count the requests that read changes, per company (GET /_bench/polls).
SANDBOX = """
import json, sys, uvicorn
from collections import Counter
from qbflow.sandbox.app import Sandbox
port, companies, latency, client_id, client_secret = sys.argv[1:6]
box = Sandbox(client_id=client_id, client_secret=client_secret, companies=int(companies), rate_limit=True)
box.faults.latency = float(latency)
polls, requests = Counter(), Counter()

async def app(scope, receive, send):
    if scope["type"] == "http":
        if scope["path"] == "/_bench/polls":
            body = json.dumps({"polls": polls, "requests": requests}).encode()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
            return
        parts = scope["path"].split("/")
        if len(parts) >= 5 and parts[1:3] == ["v3", "company"]:
            requests[parts[3]] += 1
            if parts[4] == "cdc" or (parts[4] == "query" and b"LastUpdatedTime" in scope["query_string"]):
                polls[parts[3]] += 1
    await box(scope, receive, send)

uvicorn.run(app, host="127.0.0.1", port=int(port), log_level="warning")
"""


class CountingSandbox:
    def __init__(self, companies: int, latency: float) -> None:
        import subprocess

        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen([sys.executable, "-c", SANDBOX, str(port), str(companies), str(latency),
                                         CLIENT_ID, CLIENT_SECRET], stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{self.base}/_bench/polls", timeout=2).raise_for_status()
                return
            except httpx.TransportError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the sandbox did not start") from None
                time.sleep(0.2)

    def counts(self) -> dict[str, dict[str, int]]:
        return httpx.get(f"{self.base}/_bench/polls", timeout=10).json()

    def refused(self) -> int:
        return httpx.get(f"{self.base}/_sandbox/limits", timeout=10).json()["refused"]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def memory(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a process, in MB (empty once it has gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return {line.split(":")[0]: int(line.split()[1]) / 1024 for line in status
                    if line.startswith(("VmRSS:", "VmHWM:"))}
    except (FileNotFoundError, ProcessLookupError):
        return {}


class Sampler(threading.Thread):
    """The largest resident set size seen per process, sampled every 0.2 s."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids, self.peak = pids, dict.fromkeys(pids, 0.0)
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.2):
            for pid in self.pids:
                self.peak[pid] = max(self.peak[pid], memory(pid).get("VmRSS", 0.0))


async def force_polls(url: str, names: list[str]) -> None:
    """Queue a poll of every company, due or not (as a webhook would), then wait for all of them to be done."""
    workers = Workers(RunStore(make_engine(url)), clients=None)
    async with workers.opened():
        for name in names:
            await workers.request_poll(name)
    with workers.runs.engine.connect() as db:
        query = text("SELECT count(*) FROM procrastinate_jobs WHERE task_name = :task AND status IN ('todo', 'doing')")
        deadline = time.monotonic() + 300
        while db.execute(query, {"task": TASK_POLL}).scalar():
            if time.monotonic() > deadline:
                raise SystemExit("forced polls did not finish within 300 s")
            db.commit()
            await asyncio.sleep(0.1)
    workers.runs.engine.dispose()


def one(count: int, args: argparse.Namespace, folder: Path) -> dict:
    names = [f"co{n:02d}" for n in range(args.companies)]
    expected = args.companies * CHANGES_PER_COMPANY
    sandbox = CountingSandbox(args.companies, args.latency)
    try:
        with postgres_database() as url:
            env = {**qbflow_env(folder), "QBFLOW_DATABASE_URL": url}
            realms = connect_companies(sandbox.base, env, names)
            access = tokens(env, names)
            companies = [Company(sandbox.base, realms[name], access[name]) for name in names]
            for company in companies:
                company.look_up()
                company.prepare()
            since = int(time.time()) + 1
            files = write_workflows(folder / "flows", names, utc_iso(since))
            added = qbflow(env, "workflow", "add", *map(str, files), timeout=600)
            if added.returncode:
                raise SystemExit(added.stdout + added.stderr)
            wait_for(lambda: time.time() >= since + 0.1, 10, "`since`")
            for company in companies:
                company.change()
                company.close()
            before = sandbox.counts()

            db = make_engine(url)
            procs = [WorkerProcess(env, folder / f"worker-{count}-{n}.log", concurrency=args.concurrency,
                                   stalled_after="30") for n in range(count)]
            sampler = Sampler([p.pid for p in procs])
            sampler.start()
            started = time.monotonic()
            try:
                wait_for(lambda: succeeded_runs(db) >= expected, 1200, f"{expected} runs",
                         lambda: "\n".join(p.output()[-2000:] for p in procs))
                wall = time.monotonic() - started
                with db.connect() as connection:
                    first, last = connection.execute(select(func.min(Run.finished_at), func.max(Run.finished_at))
                                                     .where(Run.status == RUN_SUCCEEDED)).one()
                first_cycle = sandbox.counts()
                for _ in range(args.cycles):
                    asyncio.run(force_polls(url, names))
                after = sandbox.counts()
                hwm = [memory(p.pid).get("VmHWM", 0.0) for p in procs]
            finally:
                sampler.done.set()
                codes = [p.stop() for p in procs]
                db.dispose()
            if any(codes):
                raise SystemExit("a worker failed:\n" + "\n".join(p.output()[-3000:] for p in procs))
    finally:
        refused = sandbox.refused()
        sandbox.stop()

    def polls(counts: dict) -> int:
        return sum(counts["polls"].get(realms[name], 0) for name in names)

    return {"workers": count, "runs": expected, "wall": wall, "steady": (last - first).total_seconds(),
            "first_cycle": (polls(first_cycle) - polls(before)) / len(names),
            "later_cycles": (polls(after) - polls(first_cycle)) / (len(names) * args.cycles) if args.cycles else None,
            "requests": sum(first_cycle["requests"].values()) - sum(before["requests"].values()),
            "rss": [sampler.peak[p.pid] for p in procs], "hwm": hwm, "refused": refused}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2,4", help="worker counts to measure, comma-separated")
    parser.add_argument("--companies", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=4, help="jobs at once per worker")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds the sandbox adds to every answer")
    parser.add_argument("--cycles", type=int, default=3, help="forced poll rounds after the runs")
    args = parser.parse_args()
    if not POSTGRES_URL:
        raise SystemExit(f"set {POSTGRES_ENV} to a PostgreSQL server where this user may create databases")
    print(f"qbflow workers benchmark: Python {platform.python_version()}, {os.cpu_count()} CPUs; "
          f"{args.companies} companies x 20 workflows, {args.companies * CHANGES_PER_COMPANY} changes; "
          f"concurrency {args.concurrency} per worker; sandbox latency {args.latency * 1000:.0f} ms, throttles on")
    results = []
    for count in (int(n) for n in args.workers.split(",")):
        with tempfile.TemporaryDirectory() as folder:
            result = one(count, args, Path(folder))
        results.append(result)
        print(json.dumps(result, default=str))
    print()
    print("workers  runs  runs/s (start to last)  runs/s (first to last run)  poll req/company/cycle (1st, later)"
          "  peak RSS per worker MB (sampled / VmHWM)  429s")
    for r in results:
        later = "-" if r["later_cycles"] is None else f"{r['later_cycles']:.2f}"
        print(f"{r['workers']:>7}  {r['runs']:>4}  {r['runs'] / r['wall']:>22.1f}  "
              f"{(r['runs'] - 1) / r['steady']:>26.1f}  {r['first_cycle']:>19.2f}, {later:<15}  "
              f"{'/'.join(f'{m:.0f}' for m in r['rss'])} / {'/'.join(f'{m:.0f}' for m in r['hwm'])}"
              f"{'':>8}{r['refused']}")


if __name__ == "__main__":
    main()
