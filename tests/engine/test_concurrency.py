"""Runs in parallel, in order where it matters: a workflow's runs for one record finish in the order of their
events even when later ones would be quicker, while runs for other records go on beside them; the global and
per-company caps hold."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from qbflow.engine.runner import Runner
from qbflow.engine.scheduler import CycleReport, Engine
from qbflow.sandbox.app import Sandbox
from qbflow.store import RunStore
from qbflow.store.models import RUN_SUCCEEDED
from tests.support.engine import FAST, Clients, add


class SlowReceiver:
    """Answers each POST after `delay(body)` seconds; records when each answer was given, and the most
    requests it had in hand at once."""

    def __init__(self, delay) -> None:
        self.delay = delay
        self.finished: list[dict[str, Any]] = []
        self.active = 0
        self.most = 0
        self.app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.active += 1
        self.most = max(self.most, self.active)
        try:
            await asyncio.sleep(self.delay(body))
        finally:
            self.active -= 1
        self.finished.append(body)
        return JSONResponse({"ok": True})


def updated_workflow(name: str = "Tell the shop") -> dict:
    return {"name": name,
            "trigger": {"key": "updated_customer", "connection": "acme", "poll_interval": "30s"},
            "steps": [{"id": "tell", "action": "http.request",
                       "input": {"url": "http://shop.test/hook",
                                 "json": {"id": "{{ trigger.Id }}", "token": "{{ trigger.SyncToken }}",
                                          "name": "{{ trigger.CompanyName }}"}}}]}


def engine_with(runs: RunStore, clients: Clients, sandbox: Sandbox, receiver: SlowReceiver, *,  # noqa: F811
                max_runs: int, runs_per_company: int) -> Engine:
    """The engine on the sandbox's clock, its `http.request` steps answered by `receiver`, Updated Customer stored."""
    add(runs, updated_workflow())
    runner = Runner(runs, clients, retry=FAST, now=sandbox.clock.now,
                    http_transport=httpx.ASGITransport(app=receiver.app))
    return Engine(runs, clients, runner, clock=sandbox.clock.now, max_runs=max_runs,
                  runs_per_company=runs_per_company)


async def poll_now(engine: Engine, runs: RunStore) -> CycleReport:  # noqa: F811
    report = CycleReport()
    records = [w for w in runs.list_workflows(enabled=True)]
    await engine.poll_connection("acme", records, report, force=True)
    return report


async def test_five_quick_edits_of_one_customer_run_in_order_beside_other_customers(
        runs: RunStore, qbo_clients: Clients, sandbox: Sandbox, realm: str) -> None:  # noqa: F811
    # The first edit's run is the slowest: without the order guard the later ones would finish first.
    receiver = SlowReceiver(lambda body: 0.5 - 0.1 * (int(body["name"].rsplit(" ", 1)[1]) % 5))
    engine = engine_with(runs, qbo_clients, sandbox, receiver, max_runs=50, runs_per_company=20)
    sandbox.clock.advance(2)
    customers = [sandbox.books.create(realm, "Customer", {"DisplayName": f"Order Co {n}"}) for n in range(4)]
    sandbox.clock.advance(2)
    await poll_now(engine, runs)  # activation: changes from now on

    # Five edits of customer 0, each polled before the next (as webhooks would make it), and one edit of each
    # of the three others in between: eight runs queued, none run yet.
    for edit in range(5):
        sandbox.clock.advance(1)
        sandbox.books.update(realm, "Customer", {"Id": customers[0]["Id"], "sparse": True,
                                                 "SyncToken": sandbox.books.get(realm, "Customer",
                                                                                customers[0]["Id"])["SyncToken"],
                                                 "CompanyName": f"Order Co edit {edit}"})
        if edit < 3:
            other = customers[edit + 1]
            sandbox.books.update(realm, "Customer", {"Id": other["Id"], "SyncToken": other["SyncToken"],
                                                     "sparse": True, "CompanyName": f"Other Co edit {edit + 1}"})
        sandbox.clock.advance(1)
        assert (await poll_now(engine, runs)).errors == []
    assert len(runs.list_runs(status="queued")) == 8

    report = await engine.cycle()

    assert report.runs == 8
    assert all(r.status == RUN_SUCCEEDED for r in runs.list_runs())
    mine = [body["name"] for body in receiver.finished if body["id"] == customers[0]["Id"]]
    assert mine == [f"Order Co edit {n}" for n in range(5)]  # in the order of the edits
    tokens = [int(body["token"]) for body in receiver.finished if body["id"] == customers[0]["Id"]]
    assert tokens == sorted(tokens)
    assert receiver.most >= 2  # other customers' runs went on beside customer 0's


async def test_the_caps_hold(runs: RunStore, qbo_clients: Clients, sandbox: Sandbox, realm: str) -> None:  # noqa: F811
    receiver = SlowReceiver(lambda body: 0.05)
    engine = engine_with(runs, qbo_clients, sandbox, receiver, max_runs=6, runs_per_company=4)
    sandbox.clock.advance(2)
    customers = [sandbox.books.create(realm, "Customer", {"DisplayName": f"Cap Co {n}"}) for n in range(12)]
    sandbox.clock.advance(2)
    await poll_now(engine, runs)
    sandbox.clock.advance(1)
    for n, customer in enumerate(customers):
        sandbox.books.update(realm, "Customer", {"Id": customer["Id"], "SyncToken": customer["SyncToken"],
                                                 "sparse": True, "CompanyName": f"Cap Co edit {n}"})
    sandbox.clock.advance(1)
    await poll_now(engine, runs)

    report = await engine.cycle()

    assert report.runs == 12 and len(receiver.finished) == 12
    assert receiver.most == 4  # one company: its share (4), under the global cap (6)


class StartOrder:
    """The runner, noting the workflow of each run as it starts."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.started: list[str] = []

    async def run_once(self, run_id: int, claimed: Any = None, *, detail: bool = True) -> Any:
        self.started.append(claimed.workflow_name)
        return await self.runner.run_once(run_id, claimed, detail=detail)


async def test_companies_start_their_runs_in_turn(runs: RunStore, qbo_clients: Clients, sandbox: Sandbox,  # noqa: F811
                                                  realm: str) -> None:
    # Two companies' runs claimed together start one of each in turn: the second company's first requests do not
    # wait behind all of the first company's runs.
    for connection in ("acme", "globex"):
        add(runs, {"name": f"Greet for {connection}",
                   "trigger": {"key": "new_customer", "connection": connection, "poll_interval": "30s"},
                   "steps": [{"id": "say", "action": "log", "input": {"message": "{{ trigger.Id }}"}}]})
    order = StartOrder(Runner(runs, qbo_clients, retry=FAST, now=sandbox.clock.now))
    engine = Engine(runs, qbo_clients, order, clock=sandbox.clock.now, max_runs=20, runs_per_company=3)
    sandbox.clock.advance(2)
    await engine.cycle(force=True)  # the triggers start from now
    sandbox.clock.advance(1)
    for n in range(3):
        sandbox.books.create(realm, "Customer", {"DisplayName": f"Turn Co {n}"})
    sandbox.clock.advance(1)

    report = await engine.cycle(force=True)

    assert report.runs == 6
    first = order.started[0]
    other = "Greet for globex" if first == "Greet for acme" else "Greet for acme"
    assert order.started == [first, other] * 3
