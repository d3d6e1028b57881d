"""Schedules on Procrastinate workers (PostgreSQL only): two workers' schedule tasks see the same fire time due,
and it is stored once, with one run and one job; the run is done once; the next tick sends nothing twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import Engine

from qbflow.engine.manual import start_manual_run
from qbflow.engine.stored import store_workflow
from qbflow.engine.workers import QUEUE_RUNS, TASK_RUN, Workers
from qbflow.engine.workflow import load_workflow_text
from qbflow.sandbox.app import Sandbox
from qbflow.store import RunStore
from qbflow.store.models import RUN_SUCCEEDED
from tests.engine.test_schedule import MONDAY_REMINDER, ny
from tests.engine.test_scheduler import Clients
from tests.engine.test_workers import jobs, pg  # noqa: F401 - the fixture
from tests.support.engine import Clock
from tests.support.postgres import POSTGRES_URL

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="QBFLOW_TEST_POSTGRES_URL is not set")


@pytest.fixture
async def two_workers(pg: Engine, sandbox: Sandbox, realm: str, token: str  # noqa: F811
                      ) -> AsyncIterator[tuple[Clock, list[Workers]]]:
    clock = Clock(ny(2026, 3, 1, 12, 0))
    made = [Workers(RunStore(pg), Clients(sandbox, realm, token), clock=clock) for _ in range(2)]
    async with made[0].opened(), made[1].opened():
        yield clock, made


async def test_a_schedule_fires_once_across_two_workers(two_workers: tuple[Clock, list[Workers]],
                                                        pg: Engine) -> None:  # noqa: F811
    clock, workers = two_workers
    runs = workers[0].runs
    store_workflow(runs, load_workflow_text(MONDAY_REMINDER.replace("CATCH_UP", "latest")), None)

    async def tick() -> list[str]:
        return list(await asyncio.gather(*(w.schedule() for w in workers)))

    assert await tick() == ["polls queued 0, runs re-delivered 0"] * 2  # the schedule starts from now
    clock.set(ny(2026, 3, 2, 8, 0, 3))
    answers = await tick()
    assert sorted(answers) == ["polls queued 0, runs re-delivered 0", "polls queued 0, runs re-delivered 0, "
                                                                      "schedule runs 1"]
    [run] = runs.list_runs()
    assert [job.args for job in jobs(pg, TASK_RUN)] == [{"run_id": run.id}]

    done: list[Any] = await asyncio.gather(*(w.run_worker(concurrency=1, queues=[QUEUE_RUNS], wait=False,
                                                          install_signal_handlers=False) for w in workers))
    assert done == [None, None]
    finished = runs.get_run(run.id)
    assert finished.status == RUN_SUCCEEDED and finished.attempt == 1

    clock.set(ny(2026, 3, 2, 9, 0))
    assert "schedule runs" not in " ".join(await tick())
    clock.set(ny(2026, 3, 9, 8, 0, 1))
    assert sum("schedule runs 1" in answer for answer in await tick()) == 1
    assert len(runs.list_runs()) == 2

    # "Run now" (CLI, API, dashboard) stores a run without a job: the next schedule tick delivers it, once.
    by_hand = start_manual_run(runs, "Monday reminder", {}, started_by="api")
    assert sum("runs re-delivered 1" in answer for answer in await tick()) == 1
    assert [job.args for job in jobs(pg, TASK_RUN) if job.status == "todo"][-1] == {"run_id": by_hand}

    # No tick for three Mondays (every worker stopped): the latest of them runs once (catch_up: latest).
    clock.set(ny(2026, 3, 31, 10, 0))
    assert sum("schedule runs 1" in answer for answer in await tick()) == 1
    newest = runs.get_run(runs.list_runs()[0].id)
    assert newest.event is not None and newest.event.record["scheduled_for"] == "2026-03-30T08:00:00-04:00"
    assert len(runs.list_runs()) == 4
