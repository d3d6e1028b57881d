"""The engine on Procrastinate (`qbflow.engine.workers`), PostgreSQL only.

In-process: a poll job records its events and enqueues their runs' jobs in one transaction (or neither), the
queueing lock allows one waiting poll per company, run jobs claim and finish their runs (resuming one a dead worker
left running, re-delivering one that lost its job). With processes: three `qbflow worker`s, one `qbflow sandbox`
(throttles on) with three companies and three workflows on each; every event gets exactly one succeeded run, QBO
holds no duplicate and answered no 429; then the same with one worker killed by SIGKILL mid-way.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select, text

from qbflow.engine.workers import TASK_RUN, Workers, enqueue_runs, ensure_schema
from qbflow.sandbox.app import Sandbox
from qbflow.store import RunStore
from qbflow.store.db import make_engine, upgrade
from qbflow.store.models import RUN_SUCCEEDED, Event, Run
from tests.conftest import POSTGRES_URL, postgres_database
from tests.engine._procs import WorkerProcess, qbflow
from tests.engine.test_scheduler import Clients
from tests.qbo.test_connect_cli import CLIENT_ID, CLIENT_SECRET, ConnectRun, qbflow_env, stored
from tests.sandbox.test_server import running_sandbox

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="QBFLOW_TEST_POSTGRES_URL is not set")


def greeting(name: str, connection: str = "acme") -> dict:
    return {"name": name, "trigger": {"key": "new_customer", "connection": connection},
            "steps": [{"id": "say", "action": "log", "input": {"message": "hello {{ trigger.DisplayName }}"}}]}


def jobs(db: Engine, task: str | None = None) -> list[Any]:
    query = "SELECT id, task_name, args, status, lock, queueing_lock FROM procrastinate_jobs"
    with db.connect() as connection:
        rows = connection.execute(text(query + " ORDER BY id")).all()
    return [row for row in rows if task is None or row.task_name == task]


def count(db: Engine, model: Any) -> int:
    with db.connect() as connection:
        return connection.scalar(select(func.count()).select_from(model))


@pytest.fixture
def pg() -> Iterator[Engine]:
    with postgres_database() as url:
        engine = make_engine(url)
        upgrade(engine)
        assert ensure_schema(engine) is True and ensure_schema(engine) is False  # idempotent
        yield engine
        engine.dispose()


@pytest.fixture
async def workers(pg: Engine, sandbox: Sandbox, realm: str, token: str) -> Any:
    sandbox.clock.advance(2)  # past the second the seed company was made in
    made = Workers(RunStore(pg), Clients(sandbox, realm, token), clock=sandbox.clock.now)
    async with made.opened():
        yield made


async def test_a_poll_records_events_and_enqueues_their_runs_in_one_transaction(workers: Workers, pg: Engine,
                                                                              sandbox: Sandbox, realm: str):
    runs = workers.runs
    for name in ("greet", "welcome"):
        runs.upsert_workflow(name, None, greeting(name))
    assert await workers.poll_company("acme") == "polls 1, requests 1, new events 0"  # activation: from now
    sandbox.clock.advance(2)
    for n in range(3):
        sandbox.books.create(realm, "Customer", {"DisplayName": f"Queued {n}"})
    sandbox.clock.advance(2)

    # The hook enqueues the jobs, then the transaction fails: no event, no run, no job, the cursor unmoved.
    def enqueue_then_fail(db: Any, run_ids: Any) -> None:
        enqueue_runs(db, run_ids)
        assert len(jobs(pg, TASK_RUN)) == 0  # not visible outside the transaction
        raise RuntimeError("the database went away")

    cursors = {c.workflow_id: c.cursor for c in runs.list_cursors()}
    workers.scheduler.on_runs = enqueue_then_fail
    await workers.poll_company("acme", force=True)
    assert count(pg, Event) == 0 and count(pg, Run) == 0 and jobs(pg) == []
    assert {c.workflow_id: c.cursor for c in runs.list_cursors()} == cursors

    workers.scheduler.on_runs = enqueue_runs
    assert await workers.poll_company("acme", force=True) == "polls 1, requests 1, new events 6"
    with pg.connect() as connection:
        run_ids = sorted(connection.scalars(select(Run.id)))
    queued = jobs(pg, TASK_RUN)
    assert sorted(job.args["run_id"] for job in queued) == run_ids and len(run_ids) == 6
    assert {(job.status, job.lock, job.queueing_lock) for job in queued} == {
        ("todo", f"run:{job.args['run_id']}", f"run:{job.args['run_id']}") for job in queued}


async def test_the_queueing_lock_allows_one_waiting_poll_per_company(workers: Workers, pg: Engine):
    workers.runs.upsert_workflow("greet", None, greeting("greet"))
    workers.runs.upsert_workflow("other", None, greeting("other", connection="globex"))
    assert await workers.defer_poll("acme") is True
    assert await workers.defer_poll("acme") is False
    assert await workers.request_poll("acme") is False
    # The schedule finds both companies due (never polled): only globex gets a new poll.
    assert await workers.schedule() == "polls queued 1, runs re-delivered 0"
    polls = jobs(pg, "qbflow.poll_company")
    assert sorted((job.args["connection"], job.lock, job.queueing_lock) for job in polls) == [
        ("acme", "poll:acme", "poll:acme"), ("globex", "poll:globex", "poll:globex")]
    assert await workers.schedule() == "polls queued 0, runs re-delivered 0"


async def test_run_jobs_claim_execute_and_finish_runs(workers: Workers, pg: Engine, sandbox: Sandbox, realm: str):
    runs = workers.runs
    workflow = runs.upsert_workflow("greet", None, greeting("greet"))
    await workers.poll_company("acme")
    sandbox.clock.advance(2)
    for n in range(5):
        sandbox.books.create(realm, "Customer", {"DisplayName": f"Run {n}"})
    sandbox.clock.advance(2)
    await workers.poll_company("acme", force=True)
    ids = [run.id for run in runs.list_runs()]
    assert len(ids) == 5 and len(jobs(pg, TASK_RUN)) == 5

    # A worker that died mid-run left one "running"; another lost its job (e.g. `runs retry` makes none); a third
    # was left running and its job is gone too (a job that failed for good, or one a retrieval dropped).
    left_running = runs.claim_run(ids[0])
    assert left_running is not None and runs.claim_run(ids[0]) is None  # claimed once
    assert runs.claim_run(ids[2]) is not None
    with pg.begin() as connection:
        connection.execute(text("DELETE FROM procrastinate_jobs WHERE lock IN (:one, :two)"),
                           {"one": f"run:{ids[1]}", "two": f"run:{ids[2]}"})
    assert await workers.schedule() == "polls queued 0, runs re-delivered 2"
    assert await workers.schedule() == "polls queued 0, runs re-delivered 0"  # their jobs are waiting now

    await workers.run_worker(concurrency=3, wait=False, install_signal_handlers=False, queues=["runs"])
    finished = runs.list_runs(workflow="greet")
    assert {run.status for run in finished} == {RUN_SUCCEEDED} and len(finished) == 5
    assert all(run.attempt == 1 for run in finished)
    assert jobs(pg, TASK_RUN) == []  # done and deleted: the database keeps the runs, not the deliveries
    assert await workers.run(ids[3]) == "nothing to do: run is succeeded"
    assert workflow.id == finished[0].workflow_id


async def test_a_dead_workers_job_taken_back_by_two_retrievals_at_once_is_still_done(
        workers: Workers, pg: Engine, sandbox: Sandbox, realm: str, monkeypatch: pytest.MonkeyPatch):
    runs = workers.runs
    runs.upsert_workflow("greet", None, greeting("greet"))
    await workers.poll_company("acme")
    sandbox.clock.advance(2)
    sandbox.books.create(realm, "Customer", {"DisplayName": "Left Behind"})
    sandbox.clock.advance(2)
    await workers.poll_company("acme", force=True)
    [run] = runs.list_runs()
    # A worker takes the run's job, claims the run and dies mid-run: its heartbeat stops.
    manager = workers.app.job_manager
    dead = await manager.register_worker()
    taken = await manager.fetch_job(queues=["runs"], worker_id=dead)
    assert taken is not None and taken.task_kwargs == {"run_id": run.id}
    assert runs.claim_run(run.id) is not None
    with pg.begin() as connection:
        connection.execute(text("UPDATE procrastinate_workers SET last_heartbeat = now() - interval '1 hour' "
                                "WHERE id = :id"), {"id": dead})

    # Two retrievals overlap (the periodic task ran late on one worker): both list the job before either takes it
    # back. The second finds it waiting already, and must leave it so, not mark it failed (the run would stay
    # "running" with no job to resume it).
    listed = list(await manager.get_stalled_jobs(seconds_since_heartbeat=workers.options.stalled_after))
    assert [job.id for job in listed] == [taken.id]

    async def as_listed_before(**_: Any) -> list[Any]:
        return listed

    monkeypatch.setattr(manager, "get_stalled_jobs", as_listed_before)
    assert await workers.retry_stalled_jobs() == "stalled jobs retried 1 of 1"
    assert await workers.retry_stalled_jobs() == "stalled jobs retried 0 of 1"
    assert [job.status for job in jobs(pg, TASK_RUN)] == ["todo"]

    await workers.run_worker(concurrency=1, wait=False, install_signal_handlers=False, queues=["runs"])
    assert runs.get_run(run.id).status == RUN_SUCCEEDED and jobs(pg, TASK_RUN) == []


# --- processes --------------------------------------------------------------------------------------------

COMPANIES = 3
CUSTOMERS = 50  # per company: 150 changes, 450 runs (three workflows per company)
WORKERS = 3
CONCURRENCY = 3  # 3 workers x 3 jobs, one request each at most: under Intuit's 10 in flight per company
STALLED_AFTER = "4"

FLOWS = {
    "invoice": """\
name: {c}-invoice
trigger: {{key: new_customer, connection: {c}, since: "{since}"}}
steps:
  - id: invoice
    action: create_invoice
    input:
      customer: "{{{{ trigger.Id }}}}"
      doc_number: "W-{{{{ trigger.Id }}}}"
      lines: [{{item: "1", amount: 50}}]
""",
    "lookup": """\
name: {c}-lookup
trigger: {{key: new_customer, connection: {c}, since: "{since}"}}
steps:
  - id: customer
    action: get_customer
    input: {{id: "{{{{ trigger.Id }}}}"}}
  - id: say
    action: log
    input: {{message: "customer {{{{ steps.customer.output.DisplayName }}}}"}}
""",
    "greet": """\
name: {c}-greet
trigger: {{key: new_customer, connection: {c}, since: "{since}"}}
steps:
  - id: say
    action: log
    input: {{message: "hello {{{{ trigger.DisplayName }}}}"}}
""",
}


def wait_for(condition: Callable[[], bool], seconds: float, what: str, procs: list[WorkerProcess]) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            logs = "\n".join(p.output()[-3000:] for p in procs)
            raise AssertionError(f"timed out waiting for {what}; worker output:\n{logs}")
        time.sleep(0.1)


def freeze_while_busy(victim: WorkerProcess, db: Engine, procs: list[WorkerProcess]) -> int:
    """SIGSTOP `victim` at a moment it has jobs in flight, so the SIGKILL that follows lands mid-job (between a
    check that every worker is busy and the kill, a worker can finish its jobs). Returns its worker id, found as
    the one worker whose heartbeat stops while the others' go on."""
    def heartbeats() -> dict[int, Any]:
        with db.connect() as connection:
            return dict(connection.execute(text("SELECT id, last_heartbeat FROM procrastinate_workers")).all())

    def doing(worker_id: int) -> int:
        with db.connect() as connection:
            return connection.scalar(text("SELECT count(*) FROM procrastinate_jobs "
                                          "WHERE status = 'doing' AND worker_id = :w"), {"w": worker_id})

    for _attempt in range(10):
        os.kill(victim.pid, signal.SIGSTOP)
        before = heartbeats()
        wait_for(lambda before=before: sum(heartbeats().get(w) != at for w, at in before.items()) == len(before) - 1,
                 30,
                 "the other workers' next heartbeats", procs)
        after = heartbeats()
        [frozen] = [w for w, at in before.items() if after.get(w) == at]
        if doing(frozen):
            return frozen
        os.kill(victim.pid, signal.SIGCONT)  # caught between jobs: let it take some and try again
        wait_for(lambda frozen=frozen: doing(frozen) > 0, 30, "the worker to take jobs again", procs)
    raise AssertionError("never caught the worker with jobs in flight")


def connect_company(base: str, env: dict[str, str], name: str, realm: str) -> None:
    """`qbflow connect NAME --sandbox URL`, choosing `realm` on the sandbox's consent page."""
    run = ConnectRun(name, base, env)
    page = httpx.get(run.authorize_url(), timeout=30)
    action = re.search(r'<form method="post" action="([^"]+)"', page.text).group(1)
    ticket = re.search(r'name="consent_ticket" value="([^"]+)"', page.text).group(1)
    answer = httpx.post(f"{base}{action}", data={"consent_ticket": ticket, "realm_id": realm, "action": "approve"},
                        follow_redirects=True, timeout=30)
    assert answer.status_code == 200, answer.text
    status, out, err = run.finish()
    assert status == 0, out + err


def scenario(tmp_path: Path, *, kill: bool) -> None:
    with postgres_database() as url, running_sandbox(
            "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET, "--companies", str(COMPANIES),
            "--latency", "0.02") as (base, _sandbox):
        env = {**qbflow_env(tmp_path), "QBFLOW_DATABASE_URL": url}
        Path(env["QBFLOW_DATA_DIR"]).mkdir(parents=True, exist_ok=True)
        realms = [c["realmId"] for c in httpx.get(f"{base}/_sandbox/companies", timeout=10).json()["companies"]]
        names = [f"co{n}" for n in range(COMPANIES)]
        for name, realm in zip(names, realms, strict=True):
            connect_company(base, env, name, realm)
        since = (datetime.now(UTC) - timedelta(seconds=2)).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        files = []
        for name in names:
            for kind, flow in FLOWS.items():
                files.append(tmp_path / f"{name}-{kind}.yaml")
                files[-1].write_text(flow.format(c=name, since=since))
        added = qbflow(env, "workflow", "add", *map(str, files))
        assert added.returncode == 0, added.stdout + added.stderr

        customers: dict[str, list[str]] = {}
        for name in names:
            record = stored(env, name)
            with httpx.Client(base_url=f"{base}/v3/company/{record.realm_id}", timeout=30,
                              headers={"Authorization": f"Bearer {record.access_token}",
                                       "Accept": "application/json"}) as api:
                customers[name] = [api.post("/customer", json={"DisplayName": f"Worker Test {name} {n:03d}"})
                                   .json()["Customer"]["Id"] for n in range(CUSTOMERS)]
        expected = COMPANIES * CUSTOMERS * len(FLOWS)

        db = make_engine(url)
        procs = [WorkerProcess(env, tmp_path / f"worker-{n}.log", concurrency=CONCURRENCY, stalled_after=STALLED_AFTER)
                 for n in range(WORKERS)]
        started = time.monotonic()
        try:
            def succeeded() -> int:
                with db.connect() as connection:
                    return connection.scalar(select(func.count()).select_from(Run).where(Run.status == RUN_SUCCEEDED))

            in_flight: list[Any] = []
            if kill:
                # Once every worker is doing jobs, a third of the way: SIGKILL one of them.
                def all_busy() -> bool:
                    if succeeded() < expected // 3:  # (runs exist once a worker has made the queue's tables)
                        return False
                    with db.connect() as connection:
                        return connection.scalar(text("SELECT count(DISTINCT worker_id) FROM procrastinate_jobs "
                                                      "WHERE status = 'doing'")) == WORKERS
                wait_for(all_busy, 90, "every worker busy", procs)
                freeze_while_busy(procs[0], db, procs)
                procs[0].kill()
                with db.connect() as connection:
                    in_flight = connection.execute(text(
                        "SELECT id, worker_id, args FROM procrastinate_jobs WHERE status = 'doing'")).all()
                print(f"killed a worker after {time.monotonic() - started:.1f} s, {succeeded()} runs succeeded; "
                      f"jobs doing then: {len(in_flight)}")
            wait_for(lambda: succeeded() == expected, 150, f"{expected} succeeded runs", procs)
            print(f"{expected} runs succeeded {time.monotonic() - started:.1f} s after the workers started")
            with db.connect() as connection:  # (before the others stop and unregister)
                silent = set(connection.scalars(text(
                    "SELECT id FROM procrastinate_workers WHERE last_heartbeat < now() - make_interval(secs => :s)"),
                    {"s": float(STALLED_AFTER)}))
                present = set(connection.scalars(text("SELECT id FROM procrastinate_workers")))
            listed = qbflow(env, "workers", "list", "--stalled-after", STALLED_AFTER)
            assert listed.returncode == 0 and "Workers" in listed.stdout, listed.stdout + listed.stderr
        finally:
            codes = [p.stop() if p.alive() else None for p in procs]
        assert all(code == 0 for code in codes[1 if kill else 0:]), [p.output() for p in procs]
        for proc in procs[1 if kill else 0:]:
            assert "Traceback" not in proc.output() and "stopped." in proc.output(), proc.output()

        # Every event: exactly one run, succeeded.
        with db.connect() as connection:
            events = connection.scalar(select(func.count()).select_from(Event))
            per_event = Counter(connection.scalars(select(Run.event_id)))
            statuses = set(connection.scalars(select(Run.status)))
        assert events == expected and len(per_event) == expected and set(per_event.values()) == {1}
        assert statuses == {RUN_SUCCEEDED}
        if kill:
            # The dead worker's jobs were taken back (stalled-job retrieval) and their runs finished.
            with db.connect() as connection:
                left = connection.scalar(text("SELECT count(*) FROM procrastinate_jobs WHERE status = 'doing'"))
            # The killed worker: one of those busy at the kill, silent since or already pruned by Procrastinate.
            gone = {job.worker_id for job in in_flight if job.worker_id in silent or job.worker_id not in present}
            assert len(gone) == 1, (gone, silent, present)
            dead = [job for job in in_flight if job.worker_id in gone]
            assert dead, f"the killed worker had no job in flight: {in_flight}"
            assert left == 0
            retried = "".join(p.output() for p in procs[1:])
            assert all(f"retried stalled job {job.id} " in retried for job in dead), retried[-3000:]
        db.dispose()

        # QuickBooks: one invoice per customer, no duplicate; and no request was refused (429).
        for name in names:
            record = stored(env, name)
            answer = httpx.get(f"{base}/v3/company/{record.realm_id}/query", timeout=30,
                               params={"query": "select * from Invoice where DocNumber like 'W-%' maxresults 1000"},
                               headers={"Authorization": f"Bearer {record.access_token}",
                                        "Accept": "application/json"})
            invoices = answer.json()["QueryResponse"].get("Invoice", [])
            assert sorted(inv["DocNumber"] for inv in invoices) == sorted(f"W-{c}" for c in customers[name])
        limits = httpx.get(f"{base}/_sandbox/limits", timeout=10).json()
        assert limits["enabled"] is True and limits["refused"] == 0, limits


def test_three_workers_share_three_companies_one_run_per_event_no_duplicate_no_429(tmp_path: Path):
    scenario(tmp_path, kill=False)


def test_a_worker_killed_mid_way_leaves_its_jobs_to_the_others(tmp_path: Path):
    scenario(tmp_path, kill=True)
