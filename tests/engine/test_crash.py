"""Guarantees 1 and 2 across crashes: `qbflow run` killed with SIGKILL at random moments, ten times, while 200 new
customers arrive in QuickBooks; when it is done every customer has exactly one succeeded run, one invoice and one
e-mail. Everything is a real process: `qbflow sandbox` on 127.0.0.1 (with a little latency, so kills land
mid-request), `qbflow connect`, `qbflow workflow add` and `qbflow run --tick 0.2`.

The kill moments come from a seeded random generator (the seed is printed; set CRASH_TEST_SEED to
replay another). Where each kill landed differs from run to run, the assertions do not.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, func, select

from qbflow.store.db import make_engine
from qbflow.store.models import RUN_SUCCEEDED, STEP_SENT, Event, Run, StepResult
from tests.support.connect import CLIENT_ID, CLIENT_SECRET, stored
from tests.support.procs import EngineProcess, connected_env, qbflow
from tests.support.sandbox import running_sandbox

SEED = int(os.environ.get("CRASH_TEST_SEED", "20240611"))
CUSTOMERS = 200
BATCHES = 5
KILLS = 10
LATENCY = "0.05"  # seconds the sandbox adds to every API answer
PREFIX = "Crash Test"

WORKFLOW = """\
name: crash-invoices
trigger:
  key: new_customer
  connection: demo
  poll_interval: 30s
  since: {since}
  filter: "{{{{ trigger.DisplayName.startswith('{prefix} ') }}}}"
steps:
  - id: invoice
    action: create_invoice
    input:
      customer: "{{{{ trigger.Id }}}}"
      doc_number: "CR-{{{{ trigger.Id }}}}"
      private_note: "welcome, {{{{ trigger.DisplayName }}}}"
      lines:
        - item: "1"
          amount: 120
  - id: send
    action: send_invoice
    input:
      id: "{{{{ steps.invoice.output.Id }}}}"
      to: "billing{{{{ trigger.Id }}}}@example.com"
  - id: note
    action: log
    input:
      message: "invoiced and sent {{{{ steps.invoice.output.DocNumber }}}}"
"""


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    with running_sandbox("--auto-approve", "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET,
                         "--no-rate-limit", "--latency", LATENCY) as (base, _process):
        yield base


class Books:
    """The test's own view of the sandbox company, through its API (the connection's token, read once)."""

    def __init__(self, base: str, env: dict[str, str]) -> None:
        record = stored(env, "demo")
        self.base = base
        self.realm = record.realm_id
        self.http = httpx.Client(base_url=f"{base}/v3/company/{record.realm_id}", timeout=30,
                                 headers={"Authorization": f"Bearer {record.access_token}",
                                          "Accept": "application/json"})

    def new_customer(self, name: str) -> str:
        answer = self.http.post("/customer", json={"DisplayName": name})
        assert answer.status_code == 200, answer.text
        return answer.json()["Customer"]["Id"]

    def query(self, text: str) -> list[dict]:
        answer = self.http.get("/query", params={"query": text})
        assert answer.status_code == 200, answer.text
        return next(iter((v for k, v in answer.json()["QueryResponse"].items() if isinstance(v, list))), [])

    def outbox(self) -> list[dict]:
        answer = httpx.get(f"{self.base}/_sandbox/companies/{self.realm}/outbox", timeout=30)
        answer.raise_for_status()
        return answer.json()["emails"]


def tally(db: Engine) -> tuple[int, Counter, int]:
    """Events stored, runs by status, and steps left "sent" (a request that may or may not have landed)."""
    with db.connect() as connection:
        events = connection.scalar(select(func.count()).select_from(Event))
        runs = Counter(dict(connection.execute(select(Run.status, func.count()).group_by(Run.status)).all()))
        sent = connection.scalar(select(func.count()).select_from(StepResult).where(StepResult.status == STEP_SENT))
    return events, runs, sent


def wait_for(condition: Callable[[], bool], seconds: float, what: str, engine: EngineProcess | None = None, *,
             every: float = 0.05) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if engine is not None and not engine.alive():
            raise AssertionError(f"the engine exited while waiting for {what}:\n{engine.output()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}"
                                 + (f"; engine output:\n{engine.output()[-4000:]}" if engine else ""))
        time.sleep(every)


def test_sigkill_ten_times_during_200_events_leaves_one_run_and_one_invoice_each(sandbox_url: str,
                                                                               tmp_path: Path) -> None:
    rng = random.Random(SEED)
    print(f"\ncrash test seed {SEED} (CRASH_TEST_SEED replays another)")
    env = connected_env(sandbox_url, tmp_path)
    books = Books(sandbox_url, env)
    since = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=2)).replace(microsecond=0)
    flow = tmp_path / "crash.yaml"
    flow.write_text(WORKFLOW.format(since=since.isoformat().replace("+00:00", "Z"), prefix=PREFIX))
    added = qbflow(env, "workflow", "add", str(flow))
    assert added.returncode == 0, added.stdout + added.stderr
    db = make_engine(env["QBFLOW_DATABASE_URL"])

    customers: list[str] = []
    per_batch = CUSTOMERS // BATCHES

    problems: list[BaseException] = []

    def make_customers() -> None:
        try:
            for batch in range(BATCHES):
                if batch:
                    time.sleep(pauses[batch])  # customers arrive in bursts while the engine runs (and dies)
                first = len(customers)
                customers.extend(books.new_customer(f"{PREFIX} {n:03d}") for n in range(first, first + per_batch))
        except BaseException as error:  # shown by the main thread
            problems.append(error)
            raise

    def succeeded(count: int) -> Callable[[], bool]:
        return lambda: tally(db)[1][RUN_SUCCEEDED] >= count

    # Kills land at random points of the work: once a random number of runs has succeeded, then either a random
    # fraction of a run's time later (any phase: claim, render, ledger, outcome, resume at start) or, for about
    # half of them, while a request is in flight (a step "sent": QBO may do the write, the engine never hears).
    targets = sorted(rng.sample(range(1, CUSTOMERS - 10), KILLS))
    in_flight = [rng.random() < 0.5 for _ in range(KILLS)]
    delays = [rng.uniform(0.0, float(LATENCY)) if aimed else rng.uniform(0.0, 0.3) for aimed in in_flight]
    pauses = [rng.uniform(0.5, 2.0) for _ in range(BATCHES)]
    print(f"kills after {targets} succeeded runs, aimed at a request in flight: {in_flight}")
    started = time.monotonic()
    maker = threading.Thread(target=make_customers, name="customers")
    maker.start()
    try:
        for kill, (target, aimed, delay) in enumerate(zip(targets, in_flight, delays, strict=True)):
            engine = EngineProcess(env, tmp_path / f"engine-{kill}.log", "--tick", "0.2")
            try:
                wait_for(succeeded(target), 120, f"{target} succeeded runs", engine)
                if aimed:
                    wait_for(lambda: tally(db)[2] > 0, 60, "a request in flight", engine, every=0.005)
            except BaseException:
                engine.kill()  # a failing test leaves no engine behind
                raise
            time.sleep(delay)  # the random moment (the wait is the point, not a race fix)
            engine.kill()
            events, runs, sent = tally(db)
            print(f"kill {kill + 1} at {time.monotonic() - started:5.1f} s: {events} events, runs {dict(runs)}, "
                  f"{sent} step(s) left sent")
    finally:
        maker.join()
    assert not problems and len(customers) == CUSTOMERS, problems

    engine = EngineProcess(env, tmp_path / "engine-last.log", "--tick", "0.2")
    try:
        def all_done() -> bool:
            events, runs, _sent = tally(db)
            return events == CUSTOMERS and runs[RUN_SUCCEEDED] == CUSTOMERS
        wait_for(all_done, 180, f"{CUSTOMERS} succeeded runs", engine)
    finally:
        stopped = engine.stop()
    assert stopped == 0, engine.output()
    for log in sorted(tmp_path.glob("engine-*.log")):
        assert "Traceback" not in log.read_text(), f"{log.name}:\n{log.read_text()}"
    print(f"all {CUSTOMERS} runs succeeded {time.monotonic() - started:.1f} s after the first customer")

    # Every customer is one event with one run, which succeeded, each step once.
    with db.connect() as connection:
        events = dict(connection.execute(select(Event.id, Event.record_id)).all())
        runs = connection.execute(select(Run.id, Run.event_id, Run.status)).all()
        steps = connection.execute(select(StepResult.run_id, StepResult.step_id, StepResult.status,
                                          StepResult.attempts)).all()
    db.dispose()
    assert sorted(events.values(), key=int) == customers
    assert Counter(event_id for _id, event_id, _status in runs) == Counter(list(events))
    assert {status for _id, _event, status in runs} == {RUN_SUCCEEDED}
    assert Counter((run_id, step_id) for run_id, step_id, _status, _attempts in steps) == Counter(
        {(run_id, step_id): 1 for run_id, _event, _status in runs for step_id in ("invoice", "send", "note")})
    assert {status for _run, _step, status, _attempts in steps} == {"succeeded"}
    resent = sum(1 for _run, step_id, _status, attempts in steps if attempts > 1)
    print(f"steps sent again after a kill: {resent}")

    # QuickBooks: one invoice per customer with its DocNumber, untouched since (SyncToken 0), e-mailed once.
    invoices = books.query(f"select * from Invoice where DocNumber like 'CR-%' maxresults {CUSTOMERS * 2}")
    assert len(invoices) == CUSTOMERS, f"{len(invoices) - CUSTOMERS} invoice(s) too many"
    assert sorted((inv["CustomerRef"]["value"] for inv in invoices), key=int) == customers
    assert all(inv["DocNumber"] == f"CR-{inv['CustomerRef']['value']}" for inv in invoices)
    assert all(inv["SyncToken"] == "0" and inv["EmailStatus"] == "EmailSent" for inv in invoices)
    mails = Counter(mail["id"] for mail in books.outbox() if str(mail.get("doc_number") or "").startswith("CR-"))
    assert sorted(mails, key=int) == sorted((inv["Id"] for inv in invoices), key=int)
    assert set(mails.values()) == {1}, {k: v for k, v in mails.items() if v > 1}
