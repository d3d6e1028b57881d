"""How soon a change in QuickBooks starts its run: Intuit webhooks vs polling.

The sandbox and qbflow's server (with its engine, tick 1 s as `qbflow serve` runs it) are served by uvicorn on
127.0.0.1 in this process; the QBO API, the OAuth token endpoint and the webhook deliveries all go over real
HTTP. A workflow on `new_customer` is stored; `--changes` customers are created one after another through the
sandbox's API, and for each the time from the change to its run's start (the run's `started_at`) is taken.

* **webhook**: the sandbox sends its signed notification (after its 0.5 s batching window, as Intuit gathers
  events too); the server hands it to the engine, which polls at once. Real time throughout.
* **polling every P s** (60 s, a realistic interval, and 30 s, the minimum): no webhooks. A change lands at a
  random moment of the polling period, so it waits for the next due poll; that wait is *simulated* by moving
  the sandbox's clock (the engine's clock too) forward instead of sleeping, unless `--real-time` is given (then
  the whole run takes about changes x P / 2 seconds per interval). Everything after the due time (the engine's
  tick, the CDC request, recording, claiming) is measured in real time.

Not a test: nothing is asserted. Real Intuit adds its own delivery delay (not modelled beyond the batch window).

    .venv/bin/python benchmarks/webhooks.py [--changes 20] [--intervals 60,30] [--real-time] [--seed 1]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from qbflow.engine.runner import Runner, store_clients
from qbflow.engine.scheduler import Engine
from qbflow.sandbox.app import Sandbox
from qbflow.sandbox.webhooks import WebhookConfig
from qbflow.server import ServerConfig, create_app
from qbflow.server.auth import ApiToken
from qbflow.settings import Settings
from qbflow.store import RunStore, SecretBox, TokenResult, open_store

VERIFIER = "benchmark-verifier-token"
CONNECTION = "acme"
WORKFLOW = "Welcome new customers"
ENGINE_TICK = 1.0  # `qbflow serve`'s default
WAIT_LIMIT = 30.0  # seconds of real time any one run may take to start before the benchmark gives up


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def served(app: Any, port: int, name: str) -> Iterator[str]:
    """`app` under uvicorn on 127.0.0.1:port in a thread (lifespan on); stopped at the end."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on",
                                           access_log=False))
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise SystemExit(f"the {name} did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)


class Setup:
    """Sandbox and server (with engine) on 127.0.0.1, a connection and the workflow, in `folder`."""

    def __init__(self, folder: Path, *, webhooks: bool, poll_interval: int) -> None:
        self.sandbox_port, self.server_port = free_port(), free_port()
        webhook = (WebhookConfig(url=f"http://127.0.0.1:{self.server_port}/webhooks/intuit", verifier_token=VERIFIER)
                   if webhooks else None)
        self.sandbox = Sandbox(rate_limit=False, webhook=webhook)
        self.sandbox.clock.advance(2)  # past the seed company's second: activation's second counts
        self.realm = self.sandbox.realms[0]
        self.sandbox_url = f"http://127.0.0.1:{self.sandbox_port}"
        self.store = open_store(url=f"sqlite:///{folder / 'qbflow.sqlite3'}",
                                box=SecretBox([SecretBox.generate_key()]))
        issued = self.sandbox.oauth.issue_tokens_for_tests(self.sandbox.client_id, self.realm,
                                                           base_url=self.sandbox_url)
        self.access_token = issued["access_token"]
        self.store.connections.add(
            name=CONNECTION, realm_id=self.realm, client_id=self.sandbox.client_id,
            client_secret=self.sandbox.client_secret, api_base=self.sandbox_url, environment="local",
            token_endpoint=f"{self.sandbox_url}/oauth2/v1/tokens/bearer",
            tokens=TokenResult.from_expires_in(issued["access_token"], issued["expires_in"], issued["refresh_token"],
                                               issued["x_refresh_token_expires_in"]))
        self.runs = RunStore(self.store.engine)
        self.runs.upsert_workflow(WORKFLOW, None, {
            "name": WORKFLOW,
            "trigger": {"key": "new_customer", "connection": CONNECTION, "poll_interval": f"{poll_interval}s"},
            "steps": [{"id": "say", "action": "log", "input": {"message": "Welcome {{ trigger.DisplayName }}"}}]})
        clients = store_clients(self.store)
        self.engine = Engine(self.runs, clients, Runner(self.runs, clients, now=self.sandbox.clock.now),
                             clock=self.sandbox.clock.now)
        settings = Settings(data_dir=folder / "data", webhook_verifier=VERIFIER)
        self.app = create_app(ServerConfig(
            store=self.store, settings=settings, engine=self.engine, run_engine=True, engine_tick=ENGINE_TICK,
            api_token=ApiToken(hashlib.sha256(b"benchmark").hexdigest(), "benchmark")))

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        try:
            with served(self.sandbox, self.sandbox_port, "sandbox"), served(self.app, self.server_port, "server"):
                self.wait(lambda: self.runs.list_cursors(), "the trigger's activation")
                yield
        finally:
            self.store.close()

    @staticmethod
    def wait(condition: Any, what: str) -> Any:
        deadline = time.monotonic() + WAIT_LIMIT
        while not (value := condition()):
            if time.monotonic() > deadline:
                raise SystemExit(f"gave up waiting for {what}")
            time.sleep(0.002)
        return value

    def next_poll_at(self) -> datetime:
        return self.runs.list_cursors()[0].next_poll_at

    def create_customer(self, name: str) -> str:
        response = httpx.post(f"{self.sandbox_url}/v3/company/{self.realm}/customer", json={"DisplayName": name},
                              headers={"Authorization": f"Bearer {self.access_token}", "Accept": "application/json"})
        response.raise_for_status()
        return response.json()["Customer"]["Id"]

    def started_run(self, customer_id: str) -> Any:
        for listed in self.runs.list_runs(limit=5):
            run = self.runs.get_run(listed.id)
            if run.event is not None and run.event.record_id == customer_id and run.started_at is not None:
                return run
        return None

    def finished(self, run_id: int) -> bool:
        return self.runs.get_run(run_id).finished_at is not None


def measure(setup: Setup, changes: int, *, label: str, poll_interval: int | None, real_time: bool,
            rng: random.Random) -> list[float]:
    """Seconds from each change to its run's start."""
    latencies = []
    for n in range(changes):
        if poll_interval is not None:
            # The change lands `wait` seconds before the next due poll, uniformly over the period.
            wait = rng.uniform(0, poll_interval)
            ahead = (setup.next_poll_at() - setup.sandbox.clock.now()).total_seconds() - wait
            if ahead > 0:
                if real_time:
                    time.sleep(ahead)
                else:
                    setup.sandbox.clock.advance(ahead)
        changed_at = setup.sandbox.clock.now()
        customer_id = setup.create_customer(f"{label} customer {n + 1}")
        if poll_interval is not None and not real_time:
            due = setup.next_poll_at()
            gap = (due - setup.sandbox.clock.now()).total_seconds()
            if gap > 0:
                setup.sandbox.clock.advance(gap)  # time passes until the poll is due; the engine sees it at its tick
        run = setup.wait(lambda cid=customer_id: setup.started_run(cid), f"the run of customer {customer_id}")
        latencies.append((run.started_at - changed_at) / timedelta(seconds=1))
        setup.wait(lambda rid=run.id: setup.finished(rid), "the run to finish")
    return latencies


def summary(label: str, latencies: list[float]) -> str:
    return (f"{label:<28} n={len(latencies):<3} mean {statistics.fmean(latencies):7.2f} s   "
            f"median {statistics.median(latencies):7.2f} s   max {max(latencies):7.2f} s   "
            f"min {min(latencies):7.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=20, help="changes measured per mode (default 20)")
    parser.add_argument("--intervals", default="60,30", help="poll intervals in seconds, comma-separated")
    parser.add_argument("--real-time", action="store_true", help="sleep through polling waits instead of moving "
                                                                 "the sandbox clock (slow: ~changes x P/2 s each)")
    parser.add_argument("--seed", type=int, default=1, help="random seed for where changes land in the period")
    args = parser.parse_args()
    intervals = [int(part) for part in args.intervals.split(",") if part.strip()]
    rng = random.Random(args.seed)
    print(f"python {sys.version.split()[0]}; sandbox and server on 127.0.0.1 (uvicorn); engine tick {ENGINE_TICK:g} s;"
          f" {args.changes} changes per mode; polling waits {'real' if args.real_time else 'simulated (clock moved)'}")
    with tempfile.TemporaryDirectory(prefix="qbflow-bench-webhooks-") as tmp:
        # Webhook mode keeps a realistic poll interval as the safety net; the webhook gets there first.
        (Path(tmp) / "webhook").mkdir()
        setup = Setup(Path(tmp) / "webhook", webhooks=True, poll_interval=max(intervals, default=60))
        with setup.running():
            print(summary("webhook", measure(setup, args.changes, label="webhook", poll_interval=None,
                                             real_time=True, rng=rng)), flush=True)
        for interval in intervals:
            folder = Path(tmp) / f"poll-{interval}"
            folder.mkdir()
            setup = Setup(folder, webhooks=False, poll_interval=interval)
            with setup.running():
                print(summary(f"polling every {interval} s", measure(
                    setup, args.changes, label=f"poll {interval}", poll_interval=interval, real_time=args.real_time,
                    rng=rng)), flush=True)


if __name__ == "__main__":
    main()
