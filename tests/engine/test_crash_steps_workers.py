"""The flow-step crash scenarios with two `qbflow worker`s on PostgreSQL: a `for_each` of 50 creates whose worker
is SIGKILLed mid-loop (a create in flight; the other worker takes the job back and resumes the run), a `wait` (its
job scheduled for the wake time), and an approval decided through `qbflow serve --workers` while the workers run
(the run's job, scheduled for the approval's expiry, becomes due at once). Each run succeeds once, QuickBooks
holds each customer once. (A schedule firing once across workers: tests/engine/test_schedule_workers.py.)"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select, text

from qbflow.store.db import make_engine
from qbflow.store.models import RUN_SUCCEEDED, RUN_WAITING, STEP_SENT, STEP_SUCCEEDED, Run
from tests.engine.test_crash import Books
from tests.engine.test_crash_steps import LOOP, ServerProcess, customers_named, start_run, steps
from tests.support.connect import CLIENT_ID, CLIENT_SECRET, qbflow_env
from tests.support.postgres import POSTGRES_URL, postgres_database
from tests.support.procs import WorkerProcess, qbflow
from tests.support.sandbox import running_sandbox

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="QBFLOW_TEST_POSTGRES_URL is not set")

ITEMS = 50
WAIT = """\
name: wait-customer
connection: demo
trigger: {kind: manual}
steps:
  - id: later
    wait: 3s
  - id: create
    action: create_customer
    input: {display_name: "Waited Customer"}
"""
APPROVAL = """\
name: approve-customer
connection: demo
trigger: {kind: manual}
steps:
  - id: ok
    approval: {message: "Create it?", approvers: [ana], timeout: 1d}
    notify:
      - id: ask
        action: log
        input: {message: "{{ approval.url }}"}
  - id: create
    action: create_customer
    input: {display_name: "Approved Customer {{ steps.ok.output.outcome }} by {{ steps.ok.output.by }}"}
"""


def wait_for(condition: Callable[[], bool], seconds: float, what: str, procs: list[WorkerProcess], *,
             every: float = 0.05) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            logs = "\n".join(p.output()[-3000:] for p in procs)
            raise AssertionError(f"timed out waiting for {what}; worker output:\n{logs}")
        time.sleep(every)


def run_job(db: Engine, run_id: int) -> Any:
    """The run's job not yet done (status, worker_id, scheduled_at), or None."""
    with db.connect() as connection:
        return connection.execute(text(
            "SELECT status, worker_id, scheduled_at FROM procrastinate_jobs WHERE task_name = 'qbflow.run' "
            "AND (args->>'run_id')::bigint = :id AND status IN ('todo', 'doing')"), {"id": run_id}).one_or_none()


def run_row(db: Engine, run_id: int) -> Any:
    with db.connect() as connection:
        return connection.execute(select(Run.status, Run.next_attempt_at, Run.error).where(Run.id == run_id)).one()


def registered(db: Engine) -> set[int]:
    with db.connect() as connection:
        if connection.scalar(text("SELECT to_regclass('procrastinate_workers')")) is None:
            return set()
        return set(connection.scalars(text("SELECT id FROM procrastinate_workers")))


def test_two_workers_loop_wait_and_approval_each_run_once_no_duplicate(tmp_path: Path) -> None:
    with postgres_database() as url, running_sandbox(
            "--auto-approve", "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET, "--no-rate-limit",
            "--latency", "0.1", log=tmp_path / "sandbox.log") as (base, _sandbox):
        env = {**qbflow_env(tmp_path), "QBFLOW_DATABASE_URL": url}
        Path(env["QBFLOW_DATA_DIR"]).mkdir(parents=True, exist_ok=True)
        connected = qbflow(env, "connect", "demo", "--sandbox", base, "--timeout", "60")
        assert connected.returncode == 0, connected.stdout + connected.stderr
        books = Books(base, env)
        for n, flow in enumerate((LOOP.format(concurrency=2), WAIT, APPROVAL)):
            (tmp_path / f"flow-{n}.yaml").write_text(flow)
        added = qbflow(env, "workflow", "add", *(str(tmp_path / f"flow-{n}.yaml") for n in range(3)))
        assert added.returncode == 0, added.stdout + added.stderr
        db = make_engine(url)

        procs: list[WorkerProcess] = []
        ids: list[int] = []
        server: ServerProcess | None = None
        try:
            for n in range(2):  # one after the other: worker n is the n-th registered
                known = registered(db)
                procs.append(WorkerProcess(env, tmp_path / f"worker-{n}.log", concurrency=3, stalled_after="4"))
                wait_for(lambda: bool(registered(db) - known), 60, f"worker {n} to register", procs)  # noqa: B023
                ids.append(min(registered(db) - known))
            server = ServerProcess(env, tmp_path / "serve.log", "--workers")

            names = [f"Loop 2 {n:02d}" for n in range(ITEMS)]
            waited = start_run(env, "wait-customer", {})
            approved = start_run(env, "approve-customer", {})
            loop = start_run(env, "loop-customers", {"names": names})  # last: a start takes a second or two

            # The loop: SIGKILL its worker once 15 creates are recorded and one is in flight.
            def creates() -> Counter[str]:
                return Counter(status for step_id, status, _a, _o in steps(db, loop)
                               if re.fullmatch(r"loop\[\d+\]\.create", step_id))

            wait_for(lambda: creates()[STEP_SUCCEEDED] >= 15, 120, "15 creates", procs, every=0.01)
            wait_for(lambda: creates()[STEP_SENT] > 0 and run_job(db, loop) is not None
                     and run_job(db, loop).status == "doing", 60, "a create in flight", procs, every=0.005)
            victim = ids.index(run_job(db, loop).worker_id)
            procs[victim].kill()
            print(f"killed worker {ids[victim]} with {creates()} creates")

            # The wait: its job is scheduled for the wake time, not before.
            wait_for(lambda: run_row(db, waited).status in (RUN_WAITING, RUN_SUCCEEDED), 60, "the wait", procs)
            status, wake, _error = run_row(db, waited)
            if status == RUN_WAITING:  # (3 s: it may be over by now on a slow machine)
                job = run_job(db, waited)
                assert job is None or job.scheduled_at == wake  # None: the job is being done already

            # The approval: decided through the server while its job waits for the expiry (a day ahead).
            wait_for(lambda: run_row(db, approved).status == RUN_WAITING, 60, "the approval to wait", procs)
            expiry = run_row(db, approved).next_attempt_at
            assert run_job(db, approved).scheduled_at == expiry
            [link] = [o["message"] for step_id, _s, _a, o in steps(db, approved) if step_id == "ok.ask"]
            token = link.rsplit("/", 1)[1]
            decided = httpx.post(f"{server.url}/approvals/respond/{token}", data={"decision": "approved"}, timeout=30)
            assert decided.status_code == 200, decided.text
            job = run_job(db, approved)  # due now (or taken by a worker already), not at the expiry
            assert job is None or job.scheduled_at is None or job.scheduled_at < expiry
            again = httpx.post(f"{server.url}/approvals/respond/{token}", data={"decision": "rejected"}, timeout=30)
            assert again.status_code == 409

            def ended() -> bool:
                return all(run_row(db, run_id).status in (RUN_SUCCEEDED, "failed")
                           for run_id in (loop, waited, approved))

            wait_for(ended, 120, "the three runs to end", procs)
        finally:
            codes = [proc.stop() if proc.alive() else None for proc in procs]
            if server is not None:
                server.stop()
        for run_id in (loop, waited, approved):
            assert run_row(db, run_id).status == RUN_SUCCEEDED, (run_id, run_row(db, run_id))
        assert [code for code in codes if code is not None] == [0]
        survivor = procs[1 - victim].output()
        assert "Traceback" not in survivor, survivor
        assert f"run {loop} was left running by a worker that stopped: resuming it" in survivor, survivor
        with db.connect() as connection:
            assert connection.scalar(select(text("count(*)")).select_from(Run)) == 3  # one run each
        ledger = {step_id: status for step_id, status, _a, _o in steps(db, loop)}
        db.dispose()
        assert all(ledger[f"loop[{n}].create"] == STEP_SUCCEEDED for n in range(ITEMS))
        assert customers_named(books, "Loop 2 ") == Counter(names)
        assert customers_named(books, "Waited Customer") == Counter({"Waited Customer": 1})
        assert customers_named(books, "Approved Customer") == Counter({"Approved Customer approved by ana": 1})
