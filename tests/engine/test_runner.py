"""The runner against the in-process sandbox and a RunStore on SQLite: steps, skips, failures, retries,
crash recovery without duplicates, http.request, and `workflow test` (dry run and live)."""

from __future__ import annotations

import itertools
import logging
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from qbflow.connector.base import ActionContext
from qbflow.connector.polling import PollCursor, TriggerEvent
from qbflow.connector.registry import action
from qbflow.engine import runner as engine
from qbflow.engine.runner import RetrySettings, Runner
from qbflow.engine.workflow import Workflow, load_workflow_text
from qbflow.qbo import StaticTokens
from qbflow.sandbox.app import Sandbox
from qbflow.store import RunStore
from tests.support.clients import make_client
from tests.support.engine import FAST, NO_CLIENT_RETRY

CONNECTION = "acme"
_numbers = itertools.count(1)


pytestmark = pytest.mark.usefixtures("isolated_data_dir")


@pytest.fixture
def clients(sandbox: Sandbox, realm: str, token: str):
    """A fresh sandbox client per call, without the client's own retries (so the runner's are tested)."""
    made: list[str] = []

    async def factory(name: str):
        made.append(name)
        return make_client(sandbox, realm, StaticTokens(token), retry=NO_CLIENT_RETRY)

    factory.made = made
    return factory


def make_runner(runs: RunStore, clients, **kwargs: Any) -> Runner:
    kwargs.setdefault("retry", FAST)
    return Runner(runs, clients, **kwargs)


def doc_number() -> str:
    return f"RUN-{os.getpid() % 1000}-{next(_numbers)}"


def invoice_workflow(doc: str | None, *, when: str | None = None, extra_steps: str = "") -> str:
    when_line = f'    when: "{when}"\n' if when else ""
    doc_line = f'      doc_number: "{doc}"\n' if doc else ""
    return f"""
name: customer-invoice
trigger:
  key: new_customer
  connection: {CONNECTION}
steps:
  - id: customer
    action: find_or_create_customer
    input:
      display_name: "{{{{ trigger.DisplayName }}}}"
  - id: invoice
    action: create_invoice
{when_line}    input:
      customer: "{{{{ steps.customer.output.record.Id }}}}"
{doc_line}      private_note: "for {{{{ trigger.DisplayName }}}}"
      lines:
        - item: "1"
          amount: "{{{{ trigger.Amount }}}}"
{extra_steps}"""


def add_run(runs: RunStore, text: str, record: dict[str, Any], record_id: str | None = None) -> int:
    """Store the workflow and one event for it (as a poll would): returns the new run's id."""
    load_workflow_text(text)  # valid, as `workflow add` would insist
    workflow = runs.upsert_workflow("customer-invoice", None, yaml.safe_load(text))
    record_id = record_id or str(next(_numbers))
    event = TriggerEvent(trigger_key="new_customer", entity="Customer", record_id=record_id, sync_token="0",
                         record={"Id": record_id, **record}, dedup_key=f"new_customer:Customer:{record_id}:0",
                         changed_at=datetime.now(UTC))
    (run_id,) = runs.record_poll(workflow.id, "new_customer", CONNECTION, "realm", [event],
                                 PollCursor.start(datetime.now(UTC)).to_json())
    return run_id


async def invoices(sandbox: Sandbox, realm: str, token: str, where: str = "") -> list[dict]:
    async with make_client(sandbox, realm, StaticTokens(token)) as qbo:
        return [r async for r in qbo.query_all(f"select * from Invoice{where}")]


async def by_doc(sandbox: Sandbox, realm: str, token: str, doc: str) -> list[dict]:
    return await invoices(sandbox, realm, token, f" where DocNumber = '{doc}'")


# --- runs ------------------------------------------------------------------------------------------------

async def test_two_steps_run_to_success_and_the_invoice_is_in_qbo(runs, clients, sandbox, realm, token) -> None:
    doc = doc_number()
    run_id = add_run(runs, invoice_workflow(doc), {"DisplayName": "Runner Surf Co", "Amount": 250})
    claimed = runs.claim_next_run()
    assert claimed is not None and claimed.id == run_id

    done = await make_runner(runs, clients).run_once(run_id)

    assert done.status == "succeeded", done.error
    customer, invoice = done.step("customer"), done.step("invoice")
    assert customer.status == invoice.status == "succeeded"
    assert customer.output["created"] is True
    assert invoice.input["customer"] == customer.output["record"]["Id"]
    assert invoice.input["lines"][0]["amount"] == 250  # native types survive rendering
    assert invoice.request_id == runs.step_request_id(run_id, "invoice") != customer.request_id
    (stored,) = await by_doc(sandbox, realm, token, doc)
    assert stored["CustomerRef"]["value"] == customer.output["record"]["Id"]
    assert stored["TotalAmt"] == 250
    assert stored["Id"] == invoice.output["Id"]


async def test_run_next_claims_and_runs(runs, clients) -> None:
    add_run(runs, invoice_workflow(doc_number()), {"DisplayName": "Next Co", "Amount": 10})
    runner = make_runner(runs, clients)
    done = await runner.run_next()
    assert done is not None and done.status == "succeeded"
    assert await runner.run_next() is None


async def test_a_false_when_skips_the_step(runs, clients, sandbox, realm, token) -> None:
    doc = doc_number()
    run_id = add_run(runs, invoice_workflow(doc, when="{{ trigger.Amount > 1000 }}"),
                     {"DisplayName": "Small Co", "Amount": 5})
    runs.claim_next_run()
    done = await make_runner(runs, clients).run_once(run_id)
    assert done.status == "succeeded"
    assert done.step("customer").status == "succeeded"
    assert done.step("invoice").status == "skipped"
    assert await by_doc(sandbox, realm, token, doc) == []


async def test_a_bad_input_fails_the_run_naming_the_field(runs, clients) -> None:
    run_id = add_run(runs, invoice_workflow(doc_number()), {"DisplayName": "Bad Amount Co", "Amount": "lots"})
    runs.claim_next_run()
    done = await make_runner(runs, clients).run_once(run_id)
    assert done.status == "failed"
    assert "invoice" in done.error and "lines[0].amount" in done.error
    step = done.step("invoice")
    assert step.status == "failed"
    assert step.error["type"] == "ActionInputError"
    assert step.error["field"] == "lines[0].amount"
    assert step.input["lines"][0]["amount"] == "lots"  # what was rendered is kept for `runs show`


async def test_a_template_error_fails_the_run_naming_the_field(runs, clients) -> None:
    run_id = add_run(runs, invoice_workflow(doc_number()), {"DisplayName": "No Amount Co"})  # no Amount
    runs.claim_next_run()
    done = await make_runner(runs, clients).run_once(run_id)
    assert done.status == "failed"
    error = done.step("invoice").error
    assert error["type"] == "TemplateError" and error["field"] == "lines[0].amount"
    assert "Amount" in error["message"]


async def test_a_qbo_validation_fault_fails_at_once(runs, clients) -> None:
    text = invoice_workflow(doc_number()).replace('item: "1"', 'item: "99999"')
    run_id = add_run(runs, text, {"DisplayName": "Ghost Item Co", "Amount": 5})
    runs.claim_next_run()

    done = await make_runner(runs, clients).run_once(run_id)
    assert done.status == "failed", done.error  # permanent: no retry, not waiting
    assert done.step("invoice").status == "failed"
    assert done.step("invoice").attempts == 1


async def test_transient_faults_wait_then_recover_without_duplicates(runs, clients, sandbox, realm, token) -> None:
    doc = doc_number()
    run_id = add_run(runs, invoice_workflow(doc), {"DisplayName": "Flaky Co", "Amount": 40})
    runs.claim_next_run()
    sandbox.faults.rate, sandbox.faults.kinds = 1.0, ("503",)

    waiting = await make_runner(runs, clients).run_once(run_id)

    assert waiting.status == "waiting_retry", waiting.error
    assert waiting.next_attempt_at is not None
    assert "customer" in waiting.error
    step = waiting.step("customer")
    assert step.status == "failed" and step.error["transient"] is True and step.attempts == 1
    assert waiting.next_attempt_at >= waiting.started_at + timedelta(seconds=FAST.wait_initial)
    assert runs.claim_next_run() is None  # not due yet

    sandbox.faults.rate = 0.0
    later = waiting.next_attempt_at.replace(tzinfo=waiting.next_attempt_at.tzinfo or UTC) + timedelta(seconds=1)
    assert runs.claim_next_run(later).id == run_id
    done = await make_runner(runs, clients).run_once(run_id)

    assert done.status == "succeeded", done.error
    assert len(await by_doc(sandbox, realm, token, doc)) == 1
    async with make_client(sandbox, realm, StaticTokens(token)) as qbo:
        assert len(await qbo.query("select * from Customer where DisplayName = 'Flaky Co'")) == 1


async def test_a_step_has_one_budget_counting_every_request(runs, sandbox, realm, token) -> None:
    """Inside a run the client makes no retries of its own (it would make 6 here): each claim of the run is one
    try, one request, and the step fails once its tries are spent, the waits between them growing."""
    seen: list[str] = []

    async def retrying_clients(name: str):
        client = make_client(sandbox, realm, StaticTokens(token))  # the client's default retries: 6 attempts

        async def note(request) -> None:
            seen.append(request.url.path)

        client._http.event_hooks["request"].append(note)
        return client

    run_id = add_run(runs, invoice_workflow(doc_number()), {"DisplayName": "Down Co", "Amount": 1})
    sandbox.faults.rate, sandbox.faults.kinds = 1.0, ("503",)
    budget = RetrySettings(attempts=3, wait_initial=10.0)
    clock = [datetime.now(UTC)]
    runner = make_runner(runs, retrying_clients, retry=budget, now=lambda: clock[0])
    waits = []
    for tries in (1, 2, 3):
        run = runs.claim_next_run(clock[0])
        assert run is not None and run.id == run_id
        done = await runner.run_once(run_id)
        assert done.step("customer").attempts == tries and len(seen) == tries  # one request per try
        if tries < 3:
            assert done.status == "waiting_retry" and f"try {tries} of 3" in done.error
            waits.append((done.next_attempt_at - clock[0]).total_seconds())
            clock[0] = done.next_attempt_at + timedelta(seconds=1)
    assert done.status == "failed" and "gave up after 3 tries" in done.error
    assert waits == [10.0, 20.0]  # doubling


async def _crash_after_sending(runs: RunStore, clients, run_id: int, sandbox, realm, token) -> dict:
    """Run the first step, then send the invoice create as the runner would, and "crash" before recording."""
    runner = make_runner(runs, clients)
    run = runs.get_run(run_id)
    workflow = runner.workflows(run)
    customer = await action("find_or_create_customer").run(
        ActionContext(make_client(sandbox, realm, StaticTokens(token)),
                      request_id=runs.step_request_id(run_id, "customer")),
        {"display_name": run.event.record["DisplayName"]})
    runs.mark_step_sent(run_id, "customer", {"display_name": run.event.record["DisplayName"]}, position=0)
    runs.finish_step(run_id, "customer", output=customer, position=0)
    step = workflow.step("invoice")
    rendered = engine._render_input(step.input, engine.make_context(
        trigger=run.event.record, steps={"customer": customer}, run_id=run.id, started_at=run.created_at))
    sent = runs.mark_step_sent(run_id, "invoice", rendered, position=1)
    async with make_client(sandbox, realm, StaticTokens(token)) as qbo:
        return await action("create_invoice").run(ActionContext(qbo, request_id=sent.request_id), rendered)


@pytest.mark.parametrize("with_doc_number", [True, False], ids=["doc-number-lookup", "sent-fields-lookup"])
async def test_a_crash_after_sending_resumes_without_a_duplicate(runs, clients, sandbox, realm, token,
                                                                 with_doc_number, caplog) -> None:
    doc = doc_number() if with_doc_number else None
    run_id = add_run(runs, invoice_workflow(doc), {"DisplayName": f"Crash Co {with_doc_number}", "Amount": 33})
    runs.claim_next_run()
    before = len(await invoices(sandbox, realm, token))
    first = await _crash_after_sending(runs, clients, run_id, sandbox, realm, token)
    assert runs.get_run(run_id).step("invoice").status == "sent"
    assert len(await invoices(sandbox, realm, token)) == before + 1

    with caplog.at_level(logging.INFO, logger="qbflow.runner"):
        (done,) = await make_runner(runs, clients).resume_unfinished()

    assert done.id == run_id and done.status == "succeeded", done.error
    assert done.step("invoice").output["Id"] == first["Id"]
    assert done.step("invoice").request_id == runs.step_request_id(run_id, "invoice")
    assert "made by an earlier attempt" in caplog.text  # found, by DocNumber or by the fields it sent
    assert len(await invoices(sandbox, realm, token)) == before + 1
    if doc:
        assert len(await by_doc(sandbox, realm, token, doc)) == 1


async def test_a_succeeded_step_is_not_repeated_on_resume(runs, clients, sandbox, realm, token) -> None:
    run_id = add_run(runs, invoice_workflow(doc_number()), {"DisplayName": "Resume Co", "Amount": 12})
    runs.claim_next_run()
    fake = {"record": {"Id": "1", "DisplayName": "Stored Output"}, "created": False}
    runs.mark_step_sent(run_id, "customer", {"display_name": "Resume Co"}, position=0)
    runs.finish_step(run_id, "customer", output=fake, position=0)

    (done,) = await make_runner(runs, clients).resume_unfinished()

    assert done.status == "succeeded", done.error
    assert done.step("customer").attempts == 1 and done.step("customer").output == fake
    assert done.step("invoice").input["customer"] == "1"  # the stored output was used
    async with make_client(sandbox, realm, StaticTokens(token)) as qbo:
        assert await qbo.query("select * from Customer where DisplayName = 'Resume Co'") == []


async def test_run_once_refuses_an_unclaimed_run(runs, clients) -> None:
    run_id = add_run(runs, invoice_workflow(None), {"DisplayName": "Queued Co", "Amount": 1})
    with pytest.raises(engine.RunNotClaimed):
        await make_runner(runs, clients).run_once(run_id)


# --- http.request and log --------------------------------------------------------------------------------

class Receiver:
    """A tiny Starlette app that records what it receives; `fail` answers the first N requests with 503."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.received: list[dict] = []
        self.app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> JSONResponse:
        self.received.append({"json": await request.json(), "headers": dict(request.headers)})
        if self.fail:
            self.fail -= 1
            return JSONResponse({"error": "busy"}, status_code=503)
        return JSONResponse({"ok": True, "n": len(self.received)})


HTTP_STEPS = """  - id: notify
    action: http.request
    input:
      url: http://receiver.test/hook
      headers: {X-Source: qbflow}
      json:
        invoice: "{{ steps.invoice.output.Id }}"
        total: "{{ steps.invoice.output.TotalAmt }}"
  - id: note
    action: log
    input:
      message: "Invoice {{ steps.invoice.output.Id }} sent to the hook"
"""


async def test_http_request_and_log_steps(runs, clients, caplog) -> None:
    receiver = Receiver(fail=1)
    run_id = add_run(runs, invoice_workflow(doc_number(), extra_steps=HTTP_STEPS),
                     {"DisplayName": "Hook Co", "Amount": 99})
    runs.claim_next_run()
    runner = make_runner(runs, clients, http_transport=httpx.ASGITransport(app=receiver.app))
    with caplog.at_level(logging.INFO, logger="qbflow.workflow"):
        waiting = await runner.run_once(run_id)  # the hook answered 503: the run waits, then tries again
        assert waiting.status == "waiting_retry", waiting.error
        runs.claim_next_run(waiting.next_attempt_at + timedelta(seconds=1))
        done = await runner.run_once(run_id)

    assert done.status == "succeeded", done.error
    invoice_id = done.step("invoice").output["Id"]
    notify = done.step("notify")
    assert notify.output["status"] == 200 and notify.output["json"] == {"ok": True, "n": 2}
    assert notify.attempts == 2  # the 503 was retried
    assert receiver.received[-1]["json"] == {"invoice": invoice_id, "total": 99}
    assert receiver.received[-1]["headers"]["x-source"] == "qbflow"
    assert receiver.received[0]["headers"]["idempotency-key"] == receiver.received[1]["headers"]["idempotency-key"]
    assert done.step("note").output == {"message": f"Invoice {invoice_id} sent to the hook"}
    assert f"Invoice {invoice_id} sent to the hook" in caplog.text


async def test_an_http_4xx_fails_the_run(runs, clients) -> None:
    receiver = Receiver()
    text = invoice_workflow(doc_number(), extra_steps=HTTP_STEPS.replace("/hook", "/missing"))
    run_id = add_run(runs, text, {"DisplayName": "Hook 404 Co", "Amount": 1})
    runs.claim_next_run()
    runner = make_runner(runs, clients, http_transport=httpx.ASGITransport(app=receiver.app))
    done = await runner.run_once(run_id)
    assert done.status == "failed"
    assert done.step("notify").error["status"] == 404 and "404" in done.error


# --- workflow test -----------------------------------------------------------------------------------------

def _workflow(doc: str) -> Workflow:
    return load_workflow_text(invoice_workflow(doc, extra_steps=HTTP_STEPS))


async def test_workflow_test_without_live_writes_nothing(clients, sandbox, realm, token) -> None:
    receiver = Receiver()
    before = len(await invoices(sandbox, realm, token))
    report = await engine.test_workflow(_workflow(doc_number()), live=False, clients=clients,
                                        sample={"DisplayName": "Dry Co", "Amount": 20},
                                        http_transport=httpx.ASGITransport(app=receiver.app))

    assert report.ok, report.to_dict()
    assert [s.id for s in report.steps] == ["customer", "invoice", "notify", "note"]
    customer, invoice, notify, note = report.steps
    assert customer.input == {"display_name": "Dry Co"} and customer.output == {"dry_run": True}
    assert invoice.input["customer"] == "<dry run: steps.customer.output.record.Id>"
    assert invoice.input["lines"] == [{"item": "1", "amount": 20}]
    assert invoice.dry_run and notify.dry_run and not note.dry_run
    assert note.output["message"].startswith("Invoice <dry run:")
    assert len(await invoices(sandbox, realm, token)) == before
    assert receiver.received == [] and clients.made == []
    assert report.to_dict()["steps"][1]["input"]["lines"][0]["amount"] == 20


async def test_workflow_test_uses_the_trigger_sample_and_reports_bad_input(clients) -> None:
    text = invoice_workflow(doc_number()).replace('"{{ trigger.Amount }}"', '"{{ trigger.Balance }}x"')
    report = await engine.test_workflow(load_workflow_text(text), live=False, clients=clients)
    assert report.trigger["DisplayName"]  # the new_customer sample
    assert not report.ok
    assert report.steps[-1].id == "invoice" and report.steps[-1].error["field"] == "lines[0].amount"


async def test_workflow_test_live_writes(clients, sandbox, realm, token) -> None:
    receiver = Receiver()
    doc = doc_number()
    report = await engine.test_workflow(_workflow(doc), live=True, clients=clients,
                                        sample={"DisplayName": "Live Co", "Amount": 21},
                                        http_transport=httpx.ASGITransport(app=receiver.app))
    assert report.ok, report.to_dict()
    (stored,) = await by_doc(sandbox, realm, token, doc)
    assert report.steps[1].output["Id"] == stored["Id"]
    assert receiver.received[0]["json"]["invoice"] == stored["Id"]
    assert report.steps[0].ms >= 0


async def test_a_connection_that_needs_reconnecting_pauses_the_run(runs) -> None:
    from qbflow.qbo import NeedsReconnect

    async def dead(name: str):
        raise NeedsReconnect(name)

    run_id = add_run(runs, invoice_workflow(doc_number()), {"DisplayName": "Revoked Co", "Amount": 1})
    runs.claim_next_run()
    done = await make_runner(runs, dead).run_once(run_id)
    assert done.status == "waiting_retry" and done.next_attempt_at is not None
    assert "qbflow connect acme" in done.error
    assert done.step("customer").error["type"] == "NeedsReconnect"
    assert done.step("customer").error["connection"] == CONNECTION
