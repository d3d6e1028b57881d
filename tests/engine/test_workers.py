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
from tests.support.connect import CLIENT_ID, CLIENT_SECRET, ConnectRun, qbflow_env, stored
from tests.support.engine import Clients
from tests.support.postgres import POSTGRES_URL, postgres_database
from tests.support.procs import WorkerProcess, qbflow
from tests.support.sandbox import running_sandbox

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


def start_workers(env: dict[str, str], folder: Path, db: Engine, procs: list[WorkerProcess]) -> list[int]:
    """Start the workers (appended to `procs`) one after the other, each once the one before has registered;
    returns their Procrastinate worker ids, in the same order."""
    def registered() -> set[int]:
        with db.connect() as connection:
            if connection.scalar(text("SELECT to_regclass('procrastinate_workers')")) is None:
                return set()
            return set(connection.scalars(text("SELECT id FROM procrastinate_workers")))

    ids: list[int] = []
    for n in range(WORKERS):
        known = registered() | set(ids)
        procs.append(WorkerProcess(env, folder / f"worker-{n}.log", concurrency=CONCURRENCY,
                                   stalled_after=STALLED_AFTER))

        def new() -> bool:
            return bool(registered() - known)  # noqa: B023 (called in this iteration only)
        wait_for(new, 60, f"worker {n} to register", procs)
        [worker_id] = registered() - known
        ids.append(worker_id)
    return ids


def kill_mid_run(victim: WorkerProcess, victim_id: int, db: Engine,
                 procs: list[WorkerProcess]) -> tuple[list[Any], int]:
    """SIGKILL `victim` at a moment it is mid-run: frozen (SIGSTOP) with no statement of its own in flight in the
    database, one of its jobs being done is a run that is "running" (claimed, not finished). Caught otherwise
    (between jobs, or only runs already finished), it continues at once and is caught again. Returns its jobs being
    done at the kill, with their runs' status then (None: not a run job), and how many freezes it took."""
    def mid_run() -> list[Any]:
        with db.connect() as connection:
            return list(connection.execute(text(
                "SELECT j.id, j.task_name, r.id AS run_id, r.status AS run_status FROM procrastinate_jobs j "
                "LEFT JOIN runs r ON j.task_name = :run AND r.id = (j.args->>'run_id')::bigint "
                "WHERE j.status = 'doing' AND j.worker_id = :worker ORDER BY j.id"),
                {"run": TASK_RUN, "worker": victim_id}))

    def quiet() -> bool:  # none of its database sessions is running a statement
        with db.connect() as connection:
            return connection.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                                          "AND client_port = ANY(:ports)"), {"ports": sorted(ports)}) == 0

    def running(jobs: list[Any]) -> bool:
        return any(job.run_status == "running" for job in jobs)

    ports: set[int] = set()
    for attempt in range(1, 101):
        wait_for(lambda: running(mid_run()), 60, "the worker to be mid-run", procs)
        os.kill(victim.pid, signal.SIGSTOP)
        ports = victim.tcp_ports()
        wait_for(quiet, 30, "the frozen worker's statements to end", procs)
        doing = mid_run()
        if running(doing):
            victim.kill()
            return doing, attempt
        os.kill(victim.pid, signal.SIGCONT)  # it finished that run between the look and the freeze
    raise AssertionError("never caught the worker mid-run")


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
        started = time.monotonic()
        procs: list[WorkerProcess] = []
        try:
            ids = start_workers(env, tmp_path, db, procs)

            def succeeded() -> int:
                with db.connect() as connection:
                    return connection.scalar(select(func.count()).select_from(Run).where(Run.status == RUN_SUCCEEDED))

            dead: list[Any] = []
            if kill:
                # A third of the way, SIGKILL worker 0 in the middle of a run.
                wait_for(lambda: succeeded() >= expected // 3, 90, "a third of the runs", procs)
                victim_id = ids[0]
                dead, freezes = kill_mid_run(procs[0], victim_id, db, procs)
                print(f"killed worker {victim_id} after {time.monotonic() - started:.1f} s (freeze {freezes}), "
                      f"{succeeded()} runs succeeded; its jobs then: {[tuple(job) for job in dead]}")
            wait_for(lambda: succeeded() == expected, 150, f"{expected} succeeded runs", procs)
            print(f"{expected} runs succeeded {time.monotonic() - started:.1f} s after the workers started")
            if kill:
                # Every job the dead worker was doing was taken back (once it had been silent for STALLED_AFTER
                # seconds: Procrastinate's stalled-job retrieval) and then done.
                def left() -> list[int]:
                    with db.connect() as connection:
                        return list(connection.scalars(text(
                            "SELECT id FROM procrastinate_jobs WHERE id = ANY(:ids) AND status IN ('todo', 'doing')"),
                            {"ids": [job.id for job in dead]}))
                wait_for(lambda: left() == [], 60, "the dead worker's jobs to be taken back and done", procs)
                listed = qbflow(env, "workers", "list", "--stalled-after", STALLED_AFTER)
                assert listed.returncode == 0, listed.stdout + listed.stderr
                # (silent since before its jobs were taken back, and for good)
                assert re.search(rf"^\W*{victim_id}\W+no \(stalled\)", listed.stdout, re.MULTILINE), listed.stdout
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
            # The others took back the dead worker's run jobs and resumed the runs it had left running.
            logs = "".join(p.output() for p in procs[1:])
            for job in dead:
                if job.run_id is not None:
                    assert f"retried stalled job {job.id} " in logs, logs[-3000:]
                if job.run_status == "running":
                    assert f"run {job.run_id} was left running by a worker that stopped: resuming it" in logs
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
