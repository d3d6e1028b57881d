"""The workers at the issue's scale (PostgreSQL only): three `qbflow worker` processes on one database, a
`qbflow sandbox` process with Intuit's throttles on and 50 companies, 20 workflows on each (one per New/Updated
trigger of the ten trigger entities; `tests/support/workers.py`), 2,000 changes (40 per company).

Afterwards every event has exactly one run, succeeded, and the events are exactly the changes; QuickBooks holds
no duplicate of what the runs wrote (one invoice per new customer, one bill per new vendor, looked up in every
company); the sandbox refused no request (429). Then the same with one worker killed by SIGKILL twice while it
is doing jobs, and started again each time.

The changes are made before the workers start, after the workflows' `since`: each company's first poll (one
CDC request for its twenty workflows) finds its forty changes, and no second poll comes within the test (the
workflows' poll interval is the default five minutes), so what the runs write is not read back as new events.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, text

from qbflow.store.db import make_engine
from tests.support.connect import CLIENT_ID, CLIENT_SECRET, qbflow_env
from tests.support.postgres import POSTGRES_URL, postgres_database
from tests.support.procs import WorkerProcess, qbflow
from tests.support.sandbox import running_sandbox
from tests.support.workers import (
    CHANGES_PER_COMPANY,
    Company,
    check_no_duplicates,
    check_one_run_per_event,
    connect_companies,
    succeeded_runs,
    tokens,
    utc_iso,
    wait_for,
    write_workflows,
)

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="QBFLOW_TEST_POSTGRES_URL is not set")

COMPANIES = 50
WORKERS = 3
CONCURRENCY = 4  # 12 jobs at once across the workers: above Intuit's 10 in flight per company, so the shared
                 # pacer has to hold that limit when they land on one company
STALLED_AFTER = "8"  # a live worker on a busy 2-core machine must never look dead; a killed one is noticed soon
EXPECTED = COMPANIES * CHANGES_PER_COMPANY  # 2,000 changes, one event and one run each


def sandbox_time(base: str) -> float:
    now = httpx.get(f"{base}/_sandbox/clock", timeout=10).json()["now"]
    return datetime.fromisoformat(now.replace("Z", "+00:00")).astimezone(UTC).timestamp()


class Fleet:
    """The worker processes of one test; a killed one is kept (its log) and replaced."""

    def __init__(self, env: dict[str, str], folder: Path) -> None:
        self.env, self.folder = env, folder
        self.procs = [self.start(n) for n in range(WORKERS)]
        self.killed: list[WorkerProcess] = []

    def start(self, n: int) -> WorkerProcess:
        log = self.folder / f"worker-{n}-{len(getattr(self, 'killed', []))}.log"
        return WorkerProcess(self.env, log, concurrency=CONCURRENCY, stalled_after=STALLED_AFTER)

    def kill_and_restart(self, n: int) -> None:
        self.procs[n].kill()
        self.killed.append(self.procs[n])
        self.procs[n] = self.start(n)

    def logs(self) -> str:
        return "\n".join(f"--- {p.log.name}\n{p.output()[-2500:]}" for p in self.killed + self.procs)

    def stop(self) -> list[int | None]:
        return [p.stop() if p.alive() else p.process.returncode for p in self.procs]


def in_request(db: Engine, pid: int) -> bool:
    """Whether the worker process `pid` is waiting for QuickBooks now: it holds a lease of the shared pacer
    (`pacer_requests.holder` is host:pid), so it is in the middle of a job."""
    with db.connect() as connection:
        return bool(connection.scalar(text(
            "SELECT count(*) FROM pacer_requests WHERE holder LIKE :holder AND ended_at IS NULL "
            "AND expires_at > extract(epoch FROM clock_timestamp())"), {"holder": f"%:{pid}"}))


@pytest.fixture
def setting(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], dict[str, Company], dict]]:
    """50 connected companies with their 20 workflows each, and 40 changes made in each after `since`."""
    with postgres_database() as url, running_sandbox(
            "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET, "--companies", str(COMPANIES),
            "--latency", "0.02", "--books", "sample") as (base, _sandbox):
        started = time.monotonic()
        env = {**qbflow_env(tmp_path), "QBFLOW_DATABASE_URL": url}
        names = [f"co{n:02d}" for n in range(COMPANIES)]
        realms = connect_companies(base, env, names)
        access = tokens(env, names)
        companies = {name: Company(base, realms[name], access[name]) for name in names}
        try:
            for company in companies.values():
                company.look_up()
                company.prepare()
            # `since` is a whole second after the records to be updated were made (New fires from its second on).
            since = int(sandbox_time(base)) + 1
            files = write_workflows(tmp_path / "flows", names, utc_iso(since))
            added = qbflow(env, "workflow", "add", *map(str, files), timeout=300)
            assert added.returncode == 0, added.stdout + added.stderr
            wait_for(lambda: sandbox_time(base) >= since, 10, "the sandbox's clock to reach `since`")
            expected = {name: company.change() for name, company in companies.items()}
            assert sum(len(ids) for by_key in expected.values() for ids in by_key.values()) == EXPECTED
            print(f"set up {COMPANIES} companies, {len(files)} workflows, {EXPECTED} changes in "
                  f"{time.monotonic() - started:.1f} s")
            yield base, env, companies, {"expected": expected, "realms": realms}
        finally:
            for company in companies.values():
                company.close()


def scenario(setting: tuple, folder: Path, *, kills: int) -> None:
    base, env, companies, facts = setting
    db = make_engine(env["QBFLOW_DATABASE_URL"])
    fleet = Fleet(env, folder)
    started = time.monotonic()
    try:
        for n in range(kills):
            # Once a run-busy stretch is under way (a share of the runs done), kill worker 0 while it does jobs.
            mark = EXPECTED * (n + 1) // (kills + 2)
            pid = fleet.procs[0].pid
            wait_for(lambda: succeeded_runs(db) >= mark and in_request(db, pid), 120,  # noqa: B023
                     f"{mark} runs done and worker 0 in a request", fleet.logs)
            fleet.kill_and_restart(0)
            print(f"killed worker 0 (pid {pid}) {time.monotonic() - started:.1f} s in, {succeeded_runs(db)} runs done")
        wait_for(lambda: succeeded_runs(db) == EXPECTED, 400, f"{EXPECTED} succeeded runs", fleet.logs)
        elapsed = time.monotonic() - started
        print(f"{EXPECTED} runs succeeded {elapsed:.1f} s after the workers started ({EXPECTED / elapsed:.0f} runs/s)")
    finally:
        codes = fleet.stop()
    assert codes == [0] * WORKERS, fleet.logs()
    for proc in fleet.procs:
        assert "Traceback" not in proc.output() and "stopped." in proc.output(), proc.output()

    check_one_run_per_event(db, facts["expected"], facts["realms"])
    if kills:
        logs = "".join(p.output() for p in fleet.killed + fleet.procs)
        assert logs.count("retried stalled job") >= kills, logs[-3000:]  # each killed worker left a job in flight
        assert "left running by a worker that stopped: resuming it" in logs, logs[-3000:]  # same request ids
    db.dispose()
    check_no_duplicates(companies, facts["expected"])
    limits = httpx.get(f"{base}/_sandbox/limits", timeout=10).json()
    assert limits["enabled"] is True and limits["refused"] == 0, limits["refused"]


def test_three_workers_fifty_companies_2000_changes_one_run_each_no_duplicate_no_429(setting, tmp_path: Path):
    scenario(setting, tmp_path, kills=0)


def test_the_same_with_a_worker_killed_twice(setting, tmp_path: Path):
    scenario(setting, tmp_path, kills=2)
