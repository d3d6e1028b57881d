"""The four scenario examples of `examples/` on TWO Procrastinate workers sharing one PostgreSQL (in-process, each
with its own Runner, one injected clock), instead of the embedded engine; the same effects read back from the
sandbox (tests/engine/test_scenarios.py's helpers), and each run done once:

- the shop order posted to the server's webhook (`ServerConfig.on_runs=enqueue_runs`: the run's job is enqueued
  with the delivery), done by a worker; the shop's retried delivery starts nothing;
- the Monday reminder: both workers' schedule ticks at the same moment fire it once, one email per overdue invoice;
- the big bill: polled by a worker, waiting at its approval; approved through the signed link on the server (its
  approval store moves the run's job to now), rejected elsewhere (the schedule finds it), or not answered (its job
  comes due at the expiry); each finished by a worker;
- the error path: manual runs delivered by the schedule's sweep; the failure posted to the team's chat once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from qbflow.engine.hooks import sign
from qbflow.engine.manual import start_manual_run
from qbflow.engine.runner import Runner
from qbflow.engine.stored import ensure_hook, store_workflow
from qbflow.engine.workers import QUEUE_POLLS, QUEUE_RUNS, TASK_RUN, Workers, enqueue_runs, ensure_schema
from qbflow.sandbox.app import Sandbox
from qbflow.store import RunStore, SecretBox, Store, open_store
from qbflow.store.approvals import ApprovalStore
from qbflow.store.models import RUN_FAILED, RUN_SUCCEEDED, RUN_WAITING
from tests.engine.test_scenarios import (
    PACIFIC,
    PUBLIC_URL,
    THREE_ITEMS,
    Books,
    Chat,
    all_runs,
    attachments_of,
    example,
    new_bill,
    next_monday_8am,
    overdue_on,
    reminder_invoices,
    server_app,
    shop_order,
)
from tests.engine.test_workers import jobs
from tests.support.engine import FAST, Clients, Clock
from tests.support.postgres import POSTGRES_URL, postgres_database

pytestmark = [pytest.mark.skipif(not POSTGRES_URL, reason="QBFLOW_TEST_POSTGRES_URL is not set"),
              pytest.mark.usefixtures("isolated_data_dir")]


@pytest.fixture
def store() -> Iterator[Store]:
    """The store on a new PostgreSQL database, with Procrastinate's tables (as a worker's start makes them)."""
    with postgres_database() as url:
        opened = open_store(url=url, box=SecretBox([SecretBox.generate_key()]))
        ensure_schema(opened.engine)
        yield opened
        opened.close()


@pytest.fixture
def books(sandbox: Sandbox, realm: str, token: str) -> Books:
    return Books(sandbox, realm, token)


@dataclass
class Team:
    """Two workers on one database, their clock, and the team's chat both runners post to."""

    clock: Clock
    workers: list[Workers]
    chat: Chat

    @property
    def runs(self) -> RunStore:
        return self.workers[0].runs

    async def tick(self) -> list[str]:
        """Both workers' schedule task at the same moment (as two overlapping periodic deferrals would run)."""
        return list(await asyncio.gather(*(w.schedule() for w in self.workers)))

    async def work(self, queues: Iterable[str] = (QUEUE_RUNS,)) -> None:
        """Both workers, side by side, until no job of `queues` is due."""
        done = await asyncio.gather(*(w.run_worker(concurrency=2, queues=list(queues), wait=False,
                                                   install_signal_handlers=False, name=f"worker-{n}")
                                      for n, w in enumerate(self.workers)))
        assert done == [None, None]


@pytest.fixture
async def team(store: Store, sandbox: Sandbox, realm: str, token: str) -> AsyncIterator[Team]:
    clock, chat = Clock(datetime.now(UTC)), Chat()
    made = []
    for _ in range(2):
        runs, clients = RunStore(store.engine), Clients(sandbox, realm, token)
        runner = Runner(runs, clients, retry=FAST, now=clock, http_transport=chat.transport(),
                        approvals=ApprovalStore.of(store), public_url=PUBLIC_URL)
        made.append(Workers(runs, clients, runner=runner, clock=clock))
    async with made[0].opened(), made[1].opened():
        yield Team(clock, made, chat)


def left_jobs(store: Store) -> list[Any]:
    return [job for job in jobs(store.engine, TASK_RUN) if job.status in ("todo", "doing")]


def done_once(run: Any, claims: int = 1) -> bool:
    """The run was claimed `claims` times (a run that waited for an approval: once to ask, once to go on) and no
    step was sent twice (a step sending no request counts no attempt)."""
    return run.attempt == claims and max(step.attempts for step in run.steps) == 1


# --- the shop order -----------------------------------------------------------------------------------------------

async def test_a_shop_order_posted_to_the_server_is_invoiced_once_by_two_workers(
        store: Store, team: Team, books: Books) -> None:
    record, _ = store_workflow(team.runs, example("shop-order-invoice.yaml"), None)
    made = ensure_hook(store.hooks, record)
    assert made is not None and made[1] is not None
    hook, secret = made
    customers_before = len(await books.query("select * from Customer"))
    windsurf = (await books.query("select * from Customer where DisplayName = 'Bill\\'s Windsurf Shop'"))[0]

    app = server_app(store, books.sandbox, on_runs=enqueue_runs)  # as `qbflow serve --workers` makes it
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC_URL) as web:
        async def post(order: dict) -> httpx.Response:
            body = json.dumps(order).encode()
            return await web.post(hook.path, content=body, headers={"Content-Type": "application/json",
                                                                    **sign(secret, body)})

        new = shop_order("1001", "ivy@newleafstudio.example", "Ivy", "Nguyen", THREE_ITEMS)
        first = await post(new)
        assert first.status_code == 202, first.text
        existing = shop_order("1002", "Surf@Intuit.com", "Bill", "Lucchini", THREE_ITEMS[:2])
        second = await post(existing)
        assert second.status_code == 202, second.text
        # Each accepted delivery's run has its job already (enqueued in the delivery's transaction).
        run_ids = [first.json()["run_id"], second.json()["run_id"]]
        assert sorted(job.args["run_id"] for job in left_jobs(store)) == sorted(run_ids)
        await team.work()
        # The shop retries the first delivery: no second run, no job.
        again = await post(new)
        assert again.status_code == 202 and again.json().get("duplicate") is True
        assert left_jobs(store) == []
        await team.work()

    done = all_runs(team.runs)
    assert sorted(run.id for run in done) == sorted(run_ids)
    assert [(run.status, run.error) for run in done] == [(RUN_SUCCEEDED, None)] * 2
    assert all(done_once(run) for run in done), [(run.attempt, [(s.step_id, s.attempts) for s in run.steps])
                                                 for run in done]
    (ivy,) = await books.query("select * from Customer where PrimaryEmailAddr = 'ivy@newleafstudio.example'")
    assert ivy["DisplayName"] == "Ivy Nguyen"
    assert len(await books.query("select * from Customer")) == customers_before + 1
    (invoice,) = await books.query("select * from Invoice where DocNumber = 'SHOP-1001'")
    assert invoice["CustomerRef"]["value"] == ivy["Id"] and invoice["TotalAmt"] == 339.0
    assert len([line for line in invoice["Line"] if line["DetailType"] == "SalesItemLineDetail"]) == 3
    assert [mail["to"] for mail in books.emails_for(invoice["Id"])] == ["ivy@newleafstudio.example"]
    (theirs,) = await books.query("select * from Invoice where DocNumber = 'SHOP-1002'")
    assert theirs["CustomerRef"]["value"] == windsurf["Id"]
    assert [mail["to"] for mail in books.emails_for(theirs["Id"])] == ["Surf@Intuit.com"]
    assert len(books.emails()) == 2 and team.chat.messages == []
    assert left_jobs(store) == []


# --- the Monday reminder ----------------------------------------------------------------------------------------

async def test_the_monday_reminder_fires_once_across_two_workers(store: Store, team: Team, books: Books) -> None:
    monday = next_monday_8am(datetime.now(UTC))
    day = monday.astimezone(PACIFIC).date()
    invoice = await reminder_invoices(books, day)

    late, just_late, due_today = (await invoice(-10, "R-LATE"), await invoice(-1, "R-JUST"),
                                  await invoice(0, "R-TODAY"))
    expected = await overdue_on(books, day)  # these and the sample company's own overdue invoices
    assert {late["Id"], just_late["Id"]} <= expected and due_today["Id"] not in expected

    store_workflow(team.runs, example("monday-overdue-reminders.yaml"), None)
    team.clock.set(monday - timedelta(days=1))  # the Sunday before: the schedule starts from now
    assert "schedule runs" not in " ".join(await team.tick())
    team.clock.set(monday - timedelta(seconds=1))
    assert "schedule runs" not in " ".join(await team.tick())
    team.clock.set(monday + timedelta(seconds=1))
    answers = await team.tick()
    assert sum("schedule runs 1" in answer for answer in answers) == 1, answers  # fired once, by one of them
    (run,) = all_runs(team.runs)
    assert [job.args for job in left_jobs(store)] == [{"run_id": run.id}]
    await team.work()

    (run,) = all_runs(team.runs)
    assert run.status == RUN_SUCCEEDED, run.error
    assert done_once(run), [(s.step_id, s.attempts) for s in run.steps]
    sent = books.emails()
    assert sorted(mail["id"] for mail in sent) == sorted(expected)  # exactly one email per overdue invoice
    assert run.step("note").output["message"].startswith(f"{day.isoformat()}: reminded {len(expected)} overdue ")

    # Later ticks of both workers at the same Monday fire nothing again.
    for moment in (monday + timedelta(seconds=30), monday + timedelta(hours=9)):
        team.clock.set(moment)
        assert "schedule runs" not in " ".join(await team.tick())
        await team.work()
    assert len(books.emails()) == len(expected) and len(all_runs(team.runs)) == 1
    assert left_jobs(store) == [] and team.chat.messages == []


# --- the bill approval ------------------------------------------------------------------------------------------

async def test_a_big_bill_waits_for_its_approval_and_a_worker_files_the_answer(
        store: Store, team: Team, books: Books) -> None:
    runs, clock = team.runs, team.clock
    store_workflow(runs, example("big-bill-approval.yaml"), None)
    # Activation: the first poll (asked for by both workers: one poll job) sets the trigger's start to now.
    assert [await w.request_poll("acme") for w in team.workers] == [True, False]
    await team.work([QUEUE_POLLS, QUEUE_RUNS])
    small = await new_bill(books, 86.40, "SMALL-1")
    approved = await new_bill(books, 7500.00, "BIG-OK")
    rejected = await new_bill(books, 5000.01, "BIG-NO")
    silent = await new_bill(books, 12000.00, "BIG-SILENT")
    clock.set(datetime.now(UTC))
    assert [await w.request_poll("acme") for w in team.workers] == [True, False]
    await team.work([QUEUE_POLLS, QUEUE_RUNS])

    started = {run.event.record_id: run for run in all_runs(runs)}
    assert set(started) == {approved["Id"], rejected["Id"], silent["Id"]}  # not the bill of 86.40
    assert {run.status for run in started.values()} == {RUN_WAITING}
    # Each waiting run's job waits for the approval's expiry.
    assert sorted(job.args["run_id"] for job in left_jobs(store)) == sorted(run.id for run in started.values())
    approvals = ApprovalStore.of(store)  # no wake hook: e.g. the CLI's
    asked = {bill_id: approvals.for_step(run.id, "approval") for bill_id, run in started.items()}
    assert all(a is not None and a.approvers == ("controller@example.com",) for a in asked.values())

    # Approved through the signed link on the server (its approval store moves the run's job to now).
    link = approvals.link_token(asked[approved["Id"]], "controller@example.com")  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=server_app(store, books.sandbox,
                                                                              on_runs=enqueue_runs)),
                                 base_url=PUBLIC_URL) as web:
        answer = await web.post(f"/approvals/respond/{link}", data={"decision": "approved", "comment": "budgeted"})
    assert answer.status_code == 200, answer.text
    clock.set(datetime.now(UTC) + timedelta(minutes=1))
    await team.work()  # no schedule tick needed
    done = runs.get_run(started[approved["Id"]].id)
    assert done.status == RUN_SUCCEEDED, done.error
    today = datetime.now(UTC).date().isoformat()
    assert (await books.get("Bill", approved["Id"]))["PrivateNote"] == f"Approved by controller@example.com on {today}"
    (attached,) = await attachments_of(books, approved["Id"])
    assert attached["FileName"] == f"bill-{approved['Id']}-approval.txt"
    assert runs.get_run(started[rejected["Id"]].id).status == RUN_WAITING

    # Rejected where no hook moves the job: the workers' schedule finds the run due, once across both.
    approvals.decide(asked[rejected["Id"]].id, "rejected", by="controller@example.com",  # type: ignore[union-attr]
                     comment="wrong vendor")
    clock.set(datetime.now(UTC) + timedelta(minutes=1))
    answers = await team.tick()
    assert sum("runs re-delivered 1" in answer for answer in answers) == 1, answers
    await team.work()
    done = runs.get_run(started[rejected["Id"]].id)
    assert done.status == RUN_SUCCEEDED, done.error
    assert (await books.get("Bill", rejected["Id"]))["PrivateNote"] == \
        f"Not approved: rejected by controller@example.com on {today}"
    assert await attachments_of(books, rejected["Id"]) == []
    (told,) = team.chat.messages
    assert told["bill_id"] == rejected["Id"] and told["outcome"] == "rejected"

    # No answer within 3 days: the clock, and the database's own time for the job (scheduled at the expiry), move
    # on; a worker takes the job and the run times out.
    silent_run = runs.get_run(started[silent["Id"]].id)
    assert silent_run.status == RUN_WAITING and silent_run.next_attempt_at is not None
    clock.set(clock() + timedelta(days=3))
    with store.engine.begin() as db:
        moved = db.execute(text("UPDATE procrastinate_jobs SET scheduled_at = now() WHERE status = 'todo' "
                                "AND queueing_lock = :lock AND scheduled_at = :at"),
                           {"lock": f"run:{silent_run.id}", "at": silent_run.next_attempt_at}).rowcount
    assert moved == 1
    await team.work()
    done = runs.get_run(silent_run.id)
    assert done.status == RUN_SUCCEEDED, done.error
    assert done.step("approval").output["timed_out"] is True
    assert (await books.get("Bill", silent["Id"]))["PrivateNote"] == "Not approved: no answer within 3 days"
    assert [m["outcome"] for m in team.chat.messages] == ["rejected", "timed_out"]
    assert await attachments_of(books, silent["Id"]) == []
    assert (await books.get("Bill", small["Id"])).get("PrivateNote") in (None, "")

    # Each run: claimed twice (asked, then went on), every step done once, and nothing left queued.
    finished = [runs.get_run(run.id) for run in started.values()]
    assert all(run.status == RUN_SUCCEEDED for run in finished)
    assert all(done_once(run, claims=2) for run in finished), [
        (run.attempt, [(s.step_id, s.attempts) for s in run.steps]) for run in finished]
    assert left_jobs(store) == []


# --- the error path ---------------------------------------------------------------------------------------------

async def test_a_failure_on_a_worker_is_posted_to_the_team_chat_once(store: Store, team: Team,
                                                                    books: Books) -> None:
    runs = team.runs
    store_workflow(runs, example("email-invoice-on-request.yaml"), None)
    invoice = (await books.query("select * from Invoice"))[-1]
    good = start_manual_run(runs, "Email an invoice on request", {"doc_number": invoice["DocNumber"]},
                            started_by="cli")
    bad = start_manual_run(runs, "Email an invoice on request", {"doc_number": "NO-SUCH-1"}, started_by="cli")
    # Manual runs are stored without a job: the schedule's sweep delivers each once across both workers.
    answers = await team.tick()
    assert sum(int(answer.split("runs re-delivered ")[1].split(",")[0]) for answer in answers) == 2, answers
    assert sorted(job.args["run_id"] for job in left_jobs(store)) == sorted([good, bad])
    await team.work()

    done = runs.get_run(good)
    assert done.status == RUN_SUCCEEDED, done.error
    assert len(books.emails_for(invoice["Id"])) == 1
    failed = runs.get_run(bad)
    assert failed.status == RUN_FAILED and failed.step("send").status == "failed"
    assert failed.step("on_error.tell_team").status == "succeeded"
    assert all(done_once(run) for run in (done, failed))
    (posted,) = team.chat.messages  # only the failure was posted, once
    assert team.chat.urls == ["https://chat.example.com/hooks/qbflow"]
    assert posted["step"] == "send" and posted["kind"] == "permanent"
    assert posted["text"] == f"Emailing invoice NO-SUCH-1 failed at send: {posted['message']}"
    assert len(books.emails()) == 1

    # Later ticks deliver nothing again: the finished runs have no job and need none.
    assert all("runs re-delivered 0" in answer for answer in await team.tick())
    await team.work()
    assert len(team.chat.messages) == 1 and left_jobs(store) == []
