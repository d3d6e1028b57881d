"""Crashes in the middle of flow steps, approvals and schedules: `qbflow run` killed with SIGKILL at a moment read
from the database (never a fixed sleep), started again, and QuickBooks checked with reads of its own.

* a `for_each` over 50 names, each iteration creating a customer (one at a time, and four at a time): killed once
  20 iterations are recorded and while a create is in flight; afterwards exactly the 50 customers, none twice;
* a run waiting at an approval: `qbflow run` and `qbflow serve` both killed; after the restart the approver's link
  (the one the notify step was given) decides once, a second use is refused (409), and the run goes on with it;
* a schedule whose fire times went by while qbflow was stopped (`catch_up: latest`): its cursor says it last
  looked three days ago, as a three-day stop leaves it; the restart runs the latest of the three missed fire times
  once (killed again while that run's create is in flight), and none of the others.

Real processes: `qbflow sandbox` (a little latency, so kills land mid-request), `qbflow connect`, `qbflow workflow
add`, `qbflow workflow run`, `qbflow run`, `qbflow serve --no-engine`; SQLite.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select, update

from qbflow.engine.cron import Timetable, check_timezone
from qbflow.store.db import make_engine
from qbflow.store.models import RUN_SUCCEEDED, RUN_WAITING, STEP_SENT, STEP_SUCCEEDED, Run, StepResult, TriggerCursor
from tests.engine.test_crash import Books, wait_for
from tests.support.connect import CLIENT_ID, CLIENT_SECRET
from tests.support.procs import EngineProcess, _environ, connected_env, qbflow
from tests.support.sandbox import free_port, running_sandbox

LATENCY = "0.05"  # seconds the sandbox adds to every API answer
ITEMS = 50


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    with running_sandbox("--auto-approve", "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET,
                         "--no-rate-limit", "--latency", LATENCY) as (base, _process):
        yield base


def add_workflow(env: dict[str, str], folder: Path, text: str) -> None:
    path = folder / "flow.yaml"
    path.write_text(text)
    added = qbflow(env, "workflow", "add", str(path))
    assert added.returncode == 0, added.stdout + added.stderr


def start_run(env: dict[str, str], name: str, inputs: dict[str, Any]) -> int:
    started = qbflow(env, "workflow", "run", name, "--input", json.dumps(inputs))
    assert started.returncode == 0, started.stdout + started.stderr
    return int(re.search(r"Queued run (\d+)", started.stdout).group(1))


def steps(db: Engine, run_id: int) -> list[Any]:
    with db.connect() as connection:
        return list(connection.execute(select(StepResult.step_id, StepResult.status, StepResult.attempts,
                                              StepResult.output).where(StepResult.run_id == run_id)))


def run_status(db: Engine, run_id: int) -> str:
    with db.connect() as connection:
        return connection.scalar(select(Run.status).where(Run.id == run_id))


def customers_named(books: Books, prefix: str) -> Counter[str]:
    found = books.query(f"select * from Customer where DisplayName like '{prefix}%' maxresults 1000")
    return Counter(customer["DisplayName"] for customer in found)


def finish(engine: EngineProcess, db: Engine, run_id: int, tmp_path: Path) -> None:
    """Wait for the run to succeed, stop the engine (Ctrl-C), and find no traceback in any engine's log."""
    try:
        wait_for(lambda: run_status(db, run_id) in (RUN_SUCCEEDED, "failed"), 120, f"run {run_id} to end", engine)
        with db.connect() as connection:
            status, error = connection.execute(select(Run.status, Run.error).where(Run.id == run_id)).one()
        assert status == RUN_SUCCEEDED, f"run {run_id} {status}: {error}; steps {steps(db, run_id)}"
    finally:
        stopped = engine.stop()
    assert stopped == 0, engine.output()
    for log in sorted(tmp_path.glob("*.log")):
        assert "Traceback" not in log.read_text(), f"{log.name}:\n{log.read_text()}"


def kill_in_flight(engine: EngineProcess, db: Engine, run_id: int, step: re.Pattern[str], done: int) -> None:
    """SIGKILL the engine once `done` steps matching `step` have succeeded and one of them is in flight ("sent")."""
    def counts() -> Counter[str]:
        return Counter(status for step_id, status, _a, _o in steps(db, run_id) if step.fullmatch(step_id))

    try:
        wait_for(lambda: counts()[STEP_SUCCEEDED] >= done, 120, f"{done} succeeded steps", engine)
        wait_for(lambda: counts()[STEP_SENT] > 0, 60, "a request in flight", engine, every=0.005)
    except BaseException:
        engine.kill()
        raise
    engine.kill()


# --- for_each -----------------------------------------------------------------------------------------------

LOOP = """\
name: loop-customers
connection: demo
trigger: {{kind: manual}}
inputs:
  names: {{type: array, required: true}}
steps:
  - id: loop
    for_each: "{{{{ trigger.inputs.names }}}}"
    as: name
    concurrency: {concurrency}
    steps:
      - id: create
        action: create_customer
        input: {{display_name: "{{{{ name }}}}"}}
  - id: note
    action: log
    input: {{message: "made {{{{ steps.loop.output | length }}}} customers"}}
"""


@pytest.mark.parametrize("concurrency", [1, 4])
def test_sigkill_during_a_for_each_of_50_creates_leaves_50_customers_none_twice(sandbox_url: str, tmp_path: Path,
                                                                               concurrency: int) -> None:
    env = connected_env(sandbox_url, tmp_path)
    books = Books(sandbox_url, env)
    add_workflow(env, tmp_path, LOOP.format(concurrency=concurrency))
    prefix = f"Loop {concurrency} "
    names = [f"{prefix}{n:02d}" for n in range(ITEMS)]
    run_id = start_run(env, "loop-customers", {"names": names})
    db = make_engine(env["QBFLOW_DATABASE_URL"])

    engine = EngineProcess(env, tmp_path / "engine-1.log", "--tick", "0.2", "--plain")
    kill_in_flight(engine, db, run_id, re.compile(r"loop\[\d+\]\.create"), done=20)
    in_flight = sorted(step_id for step_id, status, _a, _o in steps(db, run_id) if status == STEP_SENT)
    print(f"killed with {in_flight} in flight")
    assert run_status(db, run_id) == "running"

    finish(EngineProcess(env, tmp_path / "engine-2.log", "--tick", "0.2", "--plain"), db, run_id, tmp_path)
    ledger = {step_id: (status, attempts) for step_id, status, attempts, _o in steps(db, run_id)}
    db.dispose()
    assert {f"loop[{n}].create" for n in range(ITEMS)} <= set(ledger)
    assert {status for status, _attempts in ledger.values()} == {STEP_SUCCEEDED}
    assert all(ledger[step_id][1] == 2 for step_id in in_flight)  # sent again after the kill, same request id
    assert customers_named(books, prefix) == Counter(names)  # each of the 50, once


# --- approval -----------------------------------------------------------------------------------------------

APPROVAL = """\
name: approve-customer
connection: demo
trigger: {kind: manual}
inputs:
  who: {type: string, required: true}
steps:
  - id: ok
    approval:
      message: "Create {{ trigger.inputs.who }}?"
      approvers: [ana, ben]
      timeout: 1d
    notify:
      - id: ask
        action: log
        input: {message: "{{ approval.links[1].url }}"}
  - id: made
    if: "{{ steps.ok.output.approved }}"
    then:
      - id: create
        action: create_customer
        input: {display_name: "{{ trigger.inputs.who }} approved by {{ steps.ok.output.by }}"}
"""


class ServerProcess:
    """`qbflow serve ARGS` (default --no-engine) on a free port of 127.0.0.1, its output in a log file; `kill()` is
    SIGKILL."""

    def __init__(self, env: dict[str, str], log: Path, *args: str) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = log
        with log.open("w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "qbflow.cli", "serve", *(args or ("--no-engine",)), "--port",
                 self.url.rsplit(":", 1)[1]],
                env=_environ(env), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_for(self.answers, 60, "qbflow serve to answer")

    def answers(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"qbflow serve exited:\n{self.log.read_text()}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code < 500
        except httpx.TransportError:
            return False

    def kill(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> int:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
        return self.process.wait(timeout=30)


def test_sigkill_while_a_run_waits_for_approval_the_link_still_works_once(sandbox_url: str, tmp_path: Path) -> None:
    env = connected_env(sandbox_url, tmp_path)
    books = Books(sandbox_url, env)
    add_workflow(env, tmp_path, APPROVAL)
    run_id = start_run(env, "approve-customer", {"who": "Waiting Customer"})
    db = make_engine(env["QBFLOW_DATABASE_URL"])

    server = ServerProcess(env, tmp_path / "serve-1.log")
    engine = EngineProcess(env, tmp_path / "engine-1.log", "--tick", "0.2", "--plain")
    try:
        wait_for(lambda: run_status(db, run_id) == RUN_WAITING, 60, "the run to wait for the approval", engine)
    finally:
        engine.kill()
        server.kill()
    # The link ben was given (by the notify step, before the run waited).
    [(_id, _status, _attempts, told)] = [s for s in steps(db, run_id) if s[0] == "ok.ask"]
    link = told["message"]
    token = re.fullmatch(r"http://127\.0\.0\.1:8000/approvals/respond/([\w.-]+)", link).group(1)

    engine = EngineProcess(env, tmp_path / "engine-2.log", "--tick", "0.2", "--plain")
    server = ServerProcess(env, tmp_path / "serve-2.log")
    try:
        page = httpx.get(f"{server.url}/approvals/respond/{token}", timeout=30)
        assert page.status_code == 200 and "Create Waiting Customer?" in page.text
        decided = httpx.post(f"{server.url}/approvals/respond/{token}", data={"decision": "approved"}, timeout=30)
        assert decided.status_code == 200, decided.text
        again = httpx.post(f"{server.url}/approvals/respond/{token}", data={"decision": "rejected"}, timeout=30)
        assert again.status_code == 409 and "already approved by ben" in again.text
    finally:
        assert server.stop() == 0
    finish(engine, db, run_id, tmp_path)
    ledger = {step_id: status for step_id, status, _a, _o in steps(db, run_id)}
    db.dispose()
    assert ledger["ok.ask"] == STEP_SUCCEEDED and ledger["made.create"] == STEP_SUCCEEDED  # asked once
    assert customers_named(books, "Waiting Customer") == Counter({"Waiting Customer approved by ben": 1})


# --- schedule -----------------------------------------------------------------------------------------------

SCHEDULE = """\
name: daily-customer
connection: demo
trigger: {{kind: schedule, cron: "{cron}", catch_up: latest}}
steps:
  - id: create
    action: create_customer
    input: {{display_name: "Daily {{{{ trigger.fire_time | replace(':', '.') }}}}"}}  # names take no colon
"""


def test_fire_times_missed_while_stopped_run_once_the_latest(sandbox_url: str, tmp_path: Path) -> None:
    env = connected_env(sandbox_url, tmp_path)
    books = Books(sandbox_url, env)
    # Daily, two hours ago: no fire time comes while the test runs (cron minutes: now's hour - 2).
    now = datetime.now(UTC)
    cron = f"{now.minute} {(now.hour - 2) % 24} * * *"
    add_workflow(env, tmp_path, SCHEDULE.format(cron=cron))
    db = make_engine(env["QBFLOW_DATABASE_URL"])

    def cursor() -> str | None:
        with db.connect() as connection:
            return connection.scalar(select(TriggerCursor.cursor).where(TriggerCursor.trigger_key == "schedule"))

    def runs() -> list[Any]:
        with db.connect() as connection:
            return list(connection.execute(select(Run.id, Run.status)))

    engine = EngineProcess(env, tmp_path / "engine-1.log", "--tick", "0.2", "--plain")
    try:
        wait_for(lambda: cursor() is not None, 60, "the schedule to start", engine)  # from now: nothing fired
    finally:
        engine.kill()
    # Stopped for three days: the cursor says the schedule last looked three days ago.
    stored = json.loads(cursor() or "{}")
    reached = datetime.fromisoformat(stored["reached"])
    stored["reached"] = (reached - timedelta(days=3)).isoformat()
    with db.begin() as connection:
        connection.execute(update(TriggerCursor).where(TriggerCursor.trigger_key == "schedule")
                           .values(cursor=json.dumps(stored)))
    table = Timetable(cron=cron, every=None, zone=check_timezone("UTC"))
    missed = table.between(reached - timedelta(days=3), datetime.now(UTC), limit=10)
    assert len(missed) == 3 and runs() == []

    engine = EngineProcess(env, tmp_path / "engine-2.log", "--tick", "0.2", "--plain")
    try:
        wait_for(lambda: len(runs()) == 1, 60, "the missed fire time's run", engine)
    except BaseException:
        engine.kill()
        raise
    [(run_id, _status)] = runs()
    kill_in_flight(engine, db, run_id, re.compile("create"), done=0)
    finish(EngineProcess(env, tmp_path / "engine-3.log", "--tick", "0.2", "--plain"), db, run_id, tmp_path)
    assert [run.id for run in runs()] == [run_id]  # the latest missed fire time only, once
    db.dispose()
    latest = missed[-1].isoformat().replace("+00:00", "Z").replace(":", ".")
    assert customers_named(books, "Daily ") == Counter({f"Daily {latest}": 1})
