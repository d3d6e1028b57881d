"""How many webhook deliveries per second qbflow's server accepts (stores as event + queued run, answers 202), and
how long each waits for its answer.

Starts `qbflow serve --no-engine` as a child process on 127.0.0.1 (a free port) on a new database (SQLite in a
temporary folder, or `--database URL`, e.g. an empty PostgreSQL database), stores one webhook workflow
(`trigger: {kind: webhook, delivery_id: "{{ body.id }}"}`), then posts `--deliveries` signed JSON deliveries
(each a distinct order id, HMAC-SHA256 hex in X-Qbflow-Signature) keeping `--concurrency` in flight, with
httpx. Prints accepted deliveries per second over the whole burst and p50/p90/p99/max latency of one
delivery (send to answer). Every answer must be 202; the stored events and runs are counted afterwards.

Not a test: nothing is asserted about timings. The client (httpx, HMAC) shares the machine with the server.

    .venv/bin/python benchmarks/hooks.py [--deliveries 2000] [--concurrency 20] [--database URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import func, select

from qbflow.engine.hooks import sign
from qbflow.engine.stored import ensure_hook, store_workflow
from qbflow.engine.workflow import load_workflow_text
from qbflow.store import Event, Run, RunStore, SecretBox, open_store

WORKFLOW = """\
name: Shop order
trigger:
  kind: webhook
  delivery_id: "{{ body.id }}"
steps:
  - id: note
    action: log
    input:
      message: "order {{ trigger.body.id }}"
"""
API_TOKEN = "benchmark-api-token-0123456789abcdef"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def start_server(env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen([sys.executable, "-m", "qbflow.cli", "serve", "--port", "0", "--no-engine"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               stdin=subprocess.DEVNULL)
    assert process.stdout is not None
    url = None
    for line in process.stdout:
        match = re.match(r"qbflow server at (http://127\.0\.0\.1:\d+) ", line)
        url = url or (match.group(1) if match else None)
        if "Ctrl-C stops it" in line:
            break
    if url is None:
        process.kill()
        raise SystemExit("the server did not start")
    return process, url


async def burst(url: str, path: str, secret: str, deliveries: int, concurrency: int) -> tuple[float, list[float],
                                                                                             dict[int, int]]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    bodies = [json.dumps({"id": f"order-{n}", "total": n * 1.5, "lines": [{"sku": "A", "qty": 1}]}).encode()
              for n in range(deliveries)]
    signed = [{"Content-Type": "application/json", **sign(secret, body)} for body in bodies]
    queue = iter(range(deliveries))
    async with httpx.AsyncClient(base_url=url, timeout=60,
                                 limits=httpx.Limits(max_connections=concurrency)) as client:
        for n in range(3):  # open connections before the clock starts (these are stored too)
            warm = json.dumps({"id": f"warm-{n}"}).encode()
            await client.post(path, content=warm, headers={"Content-Type": "application/json", **sign(secret, warm)})

        async def worker() -> None:
            for n in queue:
                started = time.perf_counter()
                answer = await client.post(path, content=bodies[n], headers=signed[n])
                latencies.append(time.perf_counter() - started)
                statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - began, latencies, statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--database", help="a new, empty database URL (default: SQLite in a temporary folder)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        database = args.database or f"sqlite:///{Path(folder) / 'qbflow.sqlite3'}"
        key = SecretBox.generate_key()
        env = {k: v for k, v in os.environ.items() if not k.startswith("QBFLOW_")}
        env.update(QBFLOW_DATA_DIR=str(Path(folder) / "data"), QBFLOW_DATABASE_URL=database, QBFLOW_SECRET_KEY=key,
                   QBFLOW_API_TOKEN=API_TOKEN, PYTHONUNBUFFERED="1")
        with open_store(url=database, box=SecretBox([key])) as store:
            record, _ = store_workflow(RunStore(store.engine), load_workflow_text(WORKFLOW), None)
            made = ensure_hook(store.hooks, record)
            assert made is not None and made[1] is not None
            hook, secret = made
        process, url = start_server(env)
        try:
            elapsed, latencies, statuses = asyncio.run(
                burst(url, hook.path, secret, args.deliveries, args.concurrency))
        finally:
            process.terminate()
            process.wait(timeout=60)
        with open_store(url=database, box=SecretBox([key])) as store, store.engine.connect() as db:
            events = db.execute(select(func.count()).select_from(Event)).scalar_one()
            runs = db.execute(select(func.count()).select_from(Run)).scalar_one()

    backend = database.split(":", 1)[0]
    print(f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPU(s), {backend}, "
          f"`qbflow serve --no-engine`")
    print(f"{args.deliveries} deliveries, {args.concurrency} in flight: {args.deliveries / elapsed:.0f} accepted/s "
          f"({elapsed:.1f} s)")
    ms = [value * 1000 for value in latencies]
    print(f"latency ms: p50 {statistics.median(ms):.1f}  p90 {percentile(ms, 90):.1f}  p99 {percentile(ms, 99):.1f}  "
          f"max {max(ms):.1f}")
    print(f"answers: {dict(sorted(statuses.items()))}; stored: {events} events, {runs} runs "
          f"(with 3 warm-up deliveries)")
    if statuses != {202: args.deliveries}:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
