"""The engine's cycle: one poll per company for all its workflows, backfills in slices, and a connection
that needs reconnecting pausing its workflows and resuming them, missing nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import yaml

from qbflow.connector.triggers import TRIGGERS
from qbflow.engine.runner import Runner
from qbflow.engine.scheduler import CycleReport, Engine
from qbflow.engine.workflow import load_workflow_text
from qbflow.qbo.errors import NeedsReconnect
from qbflow.sandbox.app import Sandbox
from qbflow.store import RunStore
from qbflow.store.models import RUN_SUCCEEDED, RUN_WAITING_RETRY
from tests.support.engine import FAST, Clients, add

NEW_AND_UPDATED = [key for key, t in TRIGGERS.items() if not key.startswith("deleted_")]


def logging_workflow(name: str, trigger_key: str, connection: str = "acme", **trigger: Any) -> dict:
    return {"name": name, "trigger": {"key": trigger_key, "connection": connection, **trigger},
            "steps": [{"id": "say", "action": "log", "input": {"message": "{{ trigger.Id }}"}}]}


def engine_for(runs: RunStore, clients: Clients, sandbox: Sandbox, **kwargs: Any) -> Engine:  # noqa: F811
    sandbox.clock.advance(2)  # past the second the seed company was made in (activation's second counts)
    return Engine(runs, clients, Runner(runs, clients, retry=FAST, now=sandbox.clock.now),
                  clock=sandbox.clock.now, **kwargs)


async def test_twenty_triggers_on_one_company_take_one_request_per_cycle(runs: RunStore, qbo_clients: Clients,  # noqa: F811
                                                                         sandbox: Sandbox, realm: str):
    assert len(NEW_AND_UPDATED) == 20
    for key in NEW_AND_UPDATED:
        add(runs, logging_workflow(f"wf {key}", key))
    engine = engine_for(runs, qbo_clients, sandbox)
    first = await engine.cycle(force=True)
    assert first.polls == 1 and first.requests == 1
    sandbox.clock.advance(2)
    customer = sandbox.books.create(realm, "Customer", {"DisplayName": "Shared Poll Ltd"})
    sandbox.books.update(realm, "Customer", {"Id": customer["Id"], "SyncToken": "0", "sparse": True,
                                             "CompanyName": "Shared Poll Limited"})
    sandbox.clock.advance(2)
    qbo_clients.transport.requests.clear()
    second = await engine.cycle(force=True)
    cdc = qbo_clients.transport.api_requests("cdc")
    assert second.polls == 1 and second.requests == 1 and len(cdc) == 1
    assert len(qbo_clients.transport.api_requests()) == 1  # the runs (log steps) make no request
    assert second.events == 2 and second.runs == 2
    fired = {run.workflow_name for run in runs.list_runs()}
    assert fired == {"wf new_customer", "wf updated_customer"}


async def test_a_workflow_not_due_rides_along_and_a_cycle_with_none_due_polls_nothing(
        runs: RunStore, qbo_clients: Clients, sandbox: Sandbox, realm: str):  # noqa: F811
    add(runs, logging_workflow("fast", "new_customer", poll_interval="1m"))
    add(runs, logging_workflow("slow", "new_invoice", poll_interval="1h"))
    engine = engine_for(runs, qbo_clients, sandbox)
    await engine.cycle()
    sandbox.clock.advance(30)
    made = qbo_clients.made
    assert (await engine.cycle()).polls == 0  # nobody is due: not even a client is made
    assert qbo_clients.made == made
    sandbox.clock.advance(31)
    sandbox.books.create(realm, "Invoice", {"CustomerRef": {"value": "1"}, "Line": [
        {"Amount": 10, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {"ItemRef": {"value": "1"}}}]})
    sandbox.clock.advance(1)
    report = await engine.cycle()
    assert report.polls == 1 and report.requests == 1
    assert [run.workflow_name for run in runs.list_runs()] == ["slow"]  # polled with "fast", at no extra cost


async def test_a_backfill_runs_in_slices_each_record_once(runs: RunStore, qbo_clients: Clients,  # noqa: F811
                                                          sandbox: Sandbox, realm: str):
    sandbox.clock.advance(2)  # past the seed company's second
    start = sandbox.clock.now()
    names = []
    for second in range(40):
        for n in range(5):
            names.append(sandbox.books.create(realm, "Customer", {"DisplayName": f"Backfill {second}-{n}"})["Id"])
        sandbox.clock.advance(1)
    sandbox.clock.advance(40 * 86400)  # past CDC's reach: queries, in slices
    qbo_clients.token = sandbox.oauth.issue_tokens_for_tests(sandbox.client_id, realm)["access_token"]
    add(runs, logging_workflow("backfill", "new_customer", since=start.isoformat()))
    engine = engine_for(runs, qbo_clients, sandbox, max_records=30)
    cycles = 0
    while True:
        report = await engine.cycle()
        cycles += 1
        if report.polls == 0:
            break
        assert cycles < 50
    assert cycles > 3
    done = runs.list_runs(limit=1000)
    assert sorted((r.event.record_id for r in map(lambda r: runs.get_run(r.id), done)), key=int) == sorted(
        names, key=int)
    assert all(r.status == RUN_SUCCEEDED for r in done)


async def test_a_connection_needing_reconnect_pauses_with_one_message_and_resumes_missing_nothing(
        runs: RunStore, qbo_clients: Clients, sandbox: Sandbox, realm: str):  # noqa: F811
    add(runs, logging_workflow("welcome", "new_customer", poll_interval="1m"))
    engine = engine_for(runs, qbo_clients, sandbox)
    await engine.cycle()
    waiting = runs.list_runs()
    qbo_clients.dead = True
    messages = []
    for _ in range(3):
        sandbox.clock.advance(61)
        report = await engine.cycle()
        assert report.paused == ["acme"] and report.polls == 0
        messages += report.errors
    assert len(messages) == 1
    assert "qbflow connect acme" in messages[0] and "welcome" in messages[0]
    made_while_paused = sandbox.books.create(realm, "Customer", {"DisplayName": "Paused Meanwhile"})
    cursor = runs.get_cursor(runs.get_workflow("welcome").id, "new_customer", realm)
    assert cursor.last_error is None  # a pause is not a failed poll every cycle

    qbo_clients.dead = False
    sandbox.clock.advance(61)
    report = await engine.cycle()
    assert report.paused == [] and report.polls == 1 and report.events == 1
    [run] = [runs.get_run(r.id) for r in runs.list_runs()]
    assert run.event.record_id == made_while_paused["Id"] and run.status == RUN_SUCCEEDED
    assert waiting == []


async def test_runs_waiting_for_a_reconnect_are_woken_when_the_connection_works_again(
        runs: RunStore, qbo_clients: Clients, sandbox: Sandbox, realm: str):  # noqa: F811
    definition = logging_workflow("welcome", "new_customer", poll_interval="1m")
    definition["steps"] = [{"id": "get", "action": "get_customer", "input": {"id": "{{ trigger.Id }}"}}]
    add(runs, definition)
    engine = engine_for(runs, qbo_clients, sandbox)
    await engine.cycle()
    sandbox.clock.advance(2)
    sandbox.books.create(realm, "Customer", {"DisplayName": "Wakes Up Ltd"})
    sandbox.clock.advance(61)
    original = engine.runner.clients

    async def dead_for_runs(name: str):
        raise NeedsReconnect(name, detail="Intuit refused the refresh token (invalid_grant)")

    engine.runner.clients = dead_for_runs  # the poll still works; the grant dies before the run's step
    await engine.cycle()
    [run] = runs.list_runs()
    assert run.status == RUN_WAITING_RETRY and "qbflow connect" in (run.error or "")
    qbo_clients.dead = True
    sandbox.clock.advance(61)
    await engine.cycle()
    engine.runner.clients = original
    qbo_clients.dead = False
    sandbox.clock.advance(1)  # far less than the reconnect wait
    await engine.cycle()
    assert runs.get_run(run.id).status == RUN_SUCCEEDED


def test_the_workflows_used_here_pass_validation():
    for key in NEW_AND_UPDATED:
        assert load_workflow_text(yaml.safe_dump(logging_workflow("x", key))).trigger.key == key


async def test_a_requested_poll_happens_at_once_however_long_the_tick(runs: RunStore, qbo_clients: Clients,  # noqa: F811
                                                                      sandbox: Sandbox, realm: str):
    add(runs, logging_workflow("welcome", "new_customer", poll_interval="1h"))
    engine = engine_for(runs, qbo_clients, sandbox)
    await engine.cycle()  # activation; the next poll is due in an hour
    sandbox.clock.advance(2)
    customer = sandbox.books.create(realm, "Customer", {"DisplayName": "Webhook Hint Ltd"})
    stop = asyncio.Event()
    cycles: list[CycleReport] = []
    engine_task = asyncio.create_task(engine.run_forever(tick=3600, on_cycle=cycles.append, stop=stop))
    try:
        await asyncio.sleep(0)  # let it start its first cycle (nothing is due) and wait for the tick
        engine.request_poll("acme")
        deadline = asyncio.get_running_loop().time() + 20
        while not any(r.status == RUN_SUCCEEDED for r in runs.list_runs()):
            assert asyncio.get_running_loop().time() < deadline, cycles
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(engine_task, 20)
    [run] = [runs.get_run(r.id) for r in runs.list_runs()]
    assert run.event.record_id == customer["Id"]


async def test_a_first_poll_that_fails_keeps_the_start_and_misses_nothing(runs: RunStore, qbo_clients: Clients,  # noqa: F811
                                                                          sandbox: Sandbox, realm: str):
    add(runs, logging_workflow("welcome", "new_customer", poll_interval="1m"))
    engine = engine_for(runs, qbo_clients, sandbox)
    qbo_clients.cdc_failures = 1
    report = await engine.cycle()
    assert report.polls == 0 and "unavailable" in report.errors[0]  # the very first poll failed
    sandbox.clock.advance(2)
    customer = sandbox.books.create(realm, "Customer", {"DisplayName": "Made Between Polls"})
    sandbox.clock.advance(61)
    report = await engine.cycle()
    assert report.events == 1
    [run] = [runs.get_run(r.id) for r in runs.list_runs()]
    assert run.event.record_id == customer["Id"]
