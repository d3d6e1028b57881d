"""Guarantee 2 under a flaky QuickBooks: with 20 % of API requests failing on purpose (HTTP 500, 503, 429,
connections reset mid-answer, answers too slow to wait for; half of them after QBO has done the write),
1,000 new customers each get exactly one succeeded run, one invoice and one e-mail.

The engine, the runner and the sandbox run in one process (httpx.ASGITransport) for speed; everything else is
what `qbflow run` uses: the scheduler's polls with durable cursors, the runner's ledger and retries, the
client's own retries and requestids. The injected faults come from a seeded random generator.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import func, select

from qbflow.engine.runner import RetrySettings, Runner
from qbflow.engine.scheduler import Engine
from qbflow.engine.workflow import load_workflow_text
from qbflow.qbo import RealmPacer, RetryPolicy, StaticTokens
from qbflow.qbo.pacing import Limits
from qbflow.sandbox.app import Sandbox
from qbflow.store import RunStore, SecretBox, Store, open_store
from qbflow.store.models import RUN_FAILED, RUN_SUCCEEDED, Event, Run, StepResult
from tests.support.clients import make_client

EVENTS = 1000
BATCH = 100
FAULT_RATE = 0.2
FAULT_SEED = int(os.environ.get("FAULT_TEST_SEED", "20240611"))
CONNECTION = "flaky"
# A client that waits 0.1 s for an answer, and "slow" faults that take 0.3 s: the write may have happened.
CLIENT_DEADLINE = 0.1
SLOW_SECONDS = 0.3
# Each try is one request (the runner turns the client's retries off inside runs): a good share of steps fail,
# and runs wait and run again, so the runner's own handling of ambiguous failures is what is tested.
CLIENT_RETRY = RetryPolicy(attempts=1, timeout=30.0, wait_initial=0.001, wait_max=0.005, wait_jitter=0.0)
RUNNER_RETRY = RetrySettings(attempts=12, wait_initial=0.01, wait_max=0.05)
# Intuit's pacing, but without its minute window (which would make 1,000 runs take four minutes) and with a
# short pause after an (injected) 429.
PACING = Limits(per_window=1_000_000, throttle_pause=0.01)

WORKFLOW = f"""
name: flaky-invoices
trigger:
  key: new_customer
  connection: {CONNECTION}
  poll_interval: 30s
  filter: "{{{{ trigger.DisplayName.startswith('Flaky ') }}}}"
steps:
  - id: invoice
    action: create_invoice
    input:
      customer: "{{{{ trigger.Id }}}}"
      doc_number: "F-{{{{ trigger.Id }}}}"
      private_note: "for {{{{ trigger.DisplayName }}}}"
      lines:
        - item: "1"
          amount: 100
  - id: send
    action: send_invoice
    input:
      id: "{{{{ steps.invoice.output.Id }}}}"
      to: "billing{{{{ trigger.Id }}}}@example.com"
"""


class ImpatientTransport(httpx.AsyncBaseTransport):
    """The sandbox in-process, with a client-side deadline: an answer later than `deadline` becomes a
    ReadTimeout, as over a network (the sandbox may have done the write by then)."""

    def __init__(self, sandbox: Sandbox, deadline: float) -> None:
        self.inner = httpx.ASGITransport(app=sandbox)
        self.deadline = deadline

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            async with asyncio.timeout(self.deadline):
                return await self.inner.handle_async_request(request)
        except TimeoutError:
            raise httpx.ReadTimeout("no answer within the deadline", request=request) from None


@pytest.fixture(autouse=True)
def _no_real_user_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("QBFLOW_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("QBFLOW_DATA_DIR", str(tmp_path / "data"))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    opened = open_store(url=f"sqlite:///{tmp_path / 'runs.sqlite3'}", box=SecretBox([SecretBox.generate_key()]))
    yield opened
    opened.close()


def new_customers(sandbox: Sandbox, realm: str, first: int, count: int) -> list[str]:
    """Customers made in QuickBooks by someone else (straight into the books: no injected fault)."""
    return [sandbox.write(realm, "Customer", None, None, {"DisplayName": f"Flaky {n:04d}"})["Id"]
            for n in range(first, first + count)]


def settled(runs: RunStore) -> tuple[int, Counter]:
    """Events stored, and runs by status."""
    with runs.engine.connect() as db:
        events = db.scalar(select(func.count()).select_from(Event))
        statuses = Counter(dict(db.execute(select(Run.status, func.count()).group_by(Run.status)).all()))
    return events, statuses


async def test_a_thousand_events_under_twenty_percent_faults_each_run_once(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    sandbox = Sandbox(rate_limit=False, fault_seed=FAULT_SEED)
    sandbox.faults.slow_seconds = SLOW_SECONDS
    realm = sandbox.realms[0]
    token = sandbox.oauth.issue_tokens_for_tests(sandbox.client_id, realm)["access_token"]
    pacer = RealmPacer(realm, PACING)

    async def clients(name: str):
        assert name == CONNECTION
        return make_client(sandbox, realm, StaticTokens(token), transport=ImpatientTransport(sandbox, CLIENT_DEADLINE),
                           retry=CLIENT_RETRY, pacer=pacer)

    runs = RunStore(store.engine)
    load_workflow_text(WORKFLOW)  # valid, as `qbflow workflow add` would insist
    runs.upsert_workflow("flaky-invoices", None, yaml.safe_load(WORKFLOW))
    runner = Runner(runs, clients, retry=RUNNER_RETRY)
    engine = Engine(runs, clients, runner)
    started = time.monotonic()

    # The trigger's first poll stores its cursor (it starts from now) before the faults begin: a failed first
    # poll would move the start to the next poll's time (a scheduler issue, reported separately).
    await engine.cycle(force=True)
    sandbox.faults.rate = FAULT_RATE
    customers: list[str] = []
    for first in range(0, EVENTS, BATCH):
        customers += new_customers(sandbox, realm, first, BATCH)
        await engine.cycle(force=True)
    deadline = time.monotonic() + 300
    while True:
        events, statuses = settled(runs)
        if events == EVENTS and statuses[RUN_SUCCEEDED] == EVENTS:
            break
        assert not statuses[RUN_FAILED], [(r.id, r.error) for r in runs.list_runs(status=RUN_FAILED)]
        assert time.monotonic() < deadline, f"not settled in time: {events} events, runs {dict(statuses)}"
        await engine.cycle(force=True)
    sandbox.faults.rate = 0.0
    elapsed = time.monotonic() - started
    injected = dict(sandbox.faults.injected)
    print(f"\nseed {FAULT_SEED} (FAULT_TEST_SEED replays another): {EVENTS} events in {elapsed:.1f} s; "
          f"injected faults {injected}")
    assert sum(injected.values()) > EVENTS * 0.2, injected  # the faults did happen

    # Every event once, with one run, which succeeded, each step once.
    with runs.engine.connect() as db:
        per_event = Counter(db.scalars(select(Run.event_id)).all())
        records = db.scalars(select(Event.record_id)).all()
        steps = db.execute(select(StepResult.step_id, StepResult.status, StepResult.attempts)).all()
        retried = db.scalar(select(func.count()).select_from(Run).where(Run.attempt > 1))
    assert len(per_event) == EVENTS and set(per_event.values()) == {1}
    assert sorted(records, key=int) == customers
    assert Counter((step_id, status) for step_id, status, _attempts in steps) == {
        ("invoice", "succeeded"): EVENTS, ("send", "succeeded"): EVENTS}
    print(f"steps sent more than once: {sum(1 for *_s, attempts in steps if attempts > 1)}; "
          f"runs that waited and ran again: {retried}")
    unexpected = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not unexpected, unexpected

    # QuickBooks holds exactly one invoice per customer, with the DocNumber of its event, sent once.
    company = sandbox.books.company(realm)
    ours = [inv for inv in company.table("Invoice").values() if str(inv.get("DocNumber", "")).startswith("F-")]
    by_customer = Counter(inv["CustomerRef"]["value"] for inv in ours)
    assert len(ours) == EVENTS, f"{len(ours) - EVENTS} invoice(s) too many"
    assert sorted(by_customer, key=int) == customers and set(by_customer.values()) == {1}
    assert all(inv["DocNumber"] == f"F-{inv['CustomerRef']['value']}" for inv in ours)
    mails = Counter(mail["id"] for mail in company.outbox if str(mail.get("doc_number", "")).startswith("F-"))
    assert sorted(mails, key=int) == sorted((inv["Id"] for inv in ours), key=int) and set(mails.values()) == {1}

