"""Runs that wait, on Procrastinate (PostgreSQL): a run waiting at an approval has its job scheduled for the
approval's expiry; a decision gets it going at once, not at the expiry. Through the server (its `ApprovalStore`
moves the job in the decision's transaction) or anywhere else (the workers' schedule finds the run due and its job
waiting for a later time). In-process."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from qbflow.engine.manual import start_manual_run
from qbflow.engine.runner import Runner
from qbflow.engine.stored import store_workflow
from qbflow.engine.workers import TASK_RUN, Workers, ensure_schema, wake_run_job
from qbflow.engine.workflow import load_workflow_text
from qbflow.store import RunStore
from qbflow.store.approvals import ApprovalStore
from qbflow.store.db import make_engine, upgrade
from qbflow.store.models import RUN_SUCCEEDED, RUN_WAITING
from tests.support.postgres import POSTGRES_URL, postgres_database

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="QBFLOW_TEST_POSTGRES_URL is not set")

KEY = b"approval links key for the tests"
ASK = textwrap.dedent("""\
    name: ask
    trigger: {kind: manual}
    steps:
      - id: ok
        approval: {message: "Go on?", approvers: [ana], timeout: 3d}
      - id: say
        action: log
        input: {message: "{{ steps.ok.output.outcome }} by {{ steps.ok.output.by }}"}
    """)


async def no_clients(name: str) -> Any:
    raise AssertionError("no QuickBooks step here")


@pytest.fixture
def pg() -> Iterator[Engine]:
    with postgres_database() as url:
        engine = make_engine(url)
        upgrade(engine)
        ensure_schema(engine)
        yield engine
        engine.dispose()


@pytest.fixture
async def workers(pg: Engine) -> AsyncIterator[Workers]:
    runs = RunStore(pg)
    runner = Runner(runs, no_clients, approvals=ApprovalStore(pg, signing_key=KEY))
    made = Workers(runs, no_clients, runner=runner)
    async with made.opened():
        yield made


def run_job(db: Engine, run_id: int) -> tuple[str, datetime | None] | None:
    """The run's job waiting to be done: (status, scheduled_at: None when due now), None without one."""
    with db.connect() as connection:
        row = connection.execute(text("SELECT status, scheduled_at FROM procrastinate_jobs WHERE task_name = :task "
                                      "AND (args->>'run_id')::bigint = :id AND status IN ('todo', 'doing')"),
                                 {"task": TASK_RUN, "id": run_id}).one_or_none()
    return None if row is None else (row.status, row.scheduled_at)


async def work(workers: Workers) -> None:
    """One worker, until no run job is due."""
    await workers.run_worker(concurrency=2, wait=False, install_signal_handlers=False, queues=["runs"])


async def waiting_run(workers: Workers, db: Engine) -> int:
    """A run of `ask` waiting at its approval, its job scheduled for the expiry."""
    run_id = start_manual_run(workers.runs, "ask", {}, started_by="api")
    assert await workers.schedule() == "polls queued 0, runs re-delivered 1"  # a manual run: delivered by the sweep
    await work(workers)
    run = workers.runs.get_run(run_id)
    assert run.status == RUN_WAITING and run.next_attempt_at is not None
    job = run_job(db, run_id)
    assert job is not None and job[0] == "todo" and job[1] == run.next_attempt_at  # the expiry, three days ahead
    assert job[1] is not None and job[1] > datetime.now(UTC) + timedelta(days=2)
    return run_id


def said(workers: Workers, run_id: int) -> Any:
    run = workers.runs.get_run(run_id)
    return run.status, ({step.step_id: step.output for step in run.steps}.get("say") or {}).get("message")


async def test_a_decision_through_the_server_gets_the_waiting_runs_job_going_at_once(workers: Workers,
                                                                                     pg: Engine) -> None:
    store_workflow(workers.runs, load_workflow_text(ASK), None)
    run_id = await waiting_run(workers, pg)
    # The server's approvals (`server.approvals.approval_store`) move the job in the decision's transaction.
    approvals = ApprovalStore(pg, signing_key=KEY, on_wake=wake_run_job)
    record = approvals.for_step(run_id, "ok")
    assert record is not None
    approvals.decide(record.id, "approved", by="ana")
    job = run_job(pg, run_id)
    assert job == ("todo", None)  # due now
    await work(workers)  # no schedule tick in between
    assert said(workers, run_id) == (RUN_SUCCEEDED, "approved by ana")
    assert run_job(pg, run_id) is None


async def test_a_decision_made_elsewhere_is_found_by_the_schedule(workers: Workers, pg: Engine) -> None:
    store_workflow(workers.runs, load_workflow_text(ASK), None)
    run_id = await waiting_run(workers, pg)
    approvals = ApprovalStore(pg, signing_key=KEY)  # no hook: e.g. a server not told about the workers
    record = approvals.for_step(run_id, "ok")
    assert record is not None
    approvals.decide(record.id, "rejected", by="ana")
    await work(workers)
    assert workers.runs.get_run(run_id).status == RUN_WAITING  # its job still waits for the expiry
    assert await workers.schedule() == "polls queued 0, runs re-delivered 1"
    assert await workers.schedule() == "polls queued 0, runs re-delivered 0"
    await work(workers)
    assert said(workers, run_id) == (RUN_SUCCEEDED, "rejected by ana")


async def test_the_hook_leaves_runs_without_workers_alone(pg: Engine) -> None:
    # SQLite, or PostgreSQL before any worker made Procrastinate's tables: the decision just wakes the run.
    runs = RunStore(pg)
    store_workflow(runs, load_workflow_text(ASK), None)
    with pg.begin() as connection:
        connection.execute(text("DROP TABLE procrastinate_jobs CASCADE"))
    runner = Runner(runs, no_clients, approvals=ApprovalStore(pg, signing_key=KEY))
    run_id = start_manual_run(runs, "ask", {}, started_by="api")
    claimed = runs.claim_run(run_id)
    assert claimed is not None
    assert (await runner.run_once(run_id, claimed)).status == RUN_WAITING
    approvals = ApprovalStore(pg, signing_key=KEY, on_wake=wake_run_job)
    record = approvals.for_step(run_id, "ok")
    assert record is not None
    approvals.decide(record.id, "approved", by="ana")
    assert runs.claim_run(run_id) is not None  # due now
