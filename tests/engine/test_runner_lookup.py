"""Guarantee 2 when the requestid does not help: a create whose first attempt reached QuickBooks but whose answer
was lost (the sandbox's fault "after the write") is tried again under another requestid (as if QuickBooks had not
recognised it: intuit/QuickBooks-V3-DotNET-SDK#352), and the runner finds the record by what it sent instead of
making a second one. Customers, payments and attachments: creates without a DocNumber."""

from __future__ import annotations

import base64
import itertools
import logging
import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import yaml

from qbflow.connector.polling import PollCursor, TriggerEvent
from qbflow.engine.runner import RetrySettings, Runner
from qbflow.engine.workflow import load_workflow_text
from qbflow.qbo import RetryPolicy, StaticTokens
from qbflow.sandbox.app import FaultPlan, Sandbox
from qbflow.store import RunStore
from tests.support.clients import make_client

pytestmark = pytest.mark.usefixtures("isolated_data_dir")

CONNECTION = "acme"
NO_CLIENT_RETRY = RetryPolicy(attempts=1, timeout=10.0, wait_initial=0.001, wait_max=0.001, wait_jitter=0.0)
FAST = RetrySettings(attempts=3, wait_initial=30.0)
_numbers = itertools.count(1)


def _after_write_seed() -> int:
    """A seed whose first injected fault is a 500 sent after QuickBooks did the write."""
    return next(seed for seed in range(1000) if FaultPlan(rate=1.0, kinds=("500",), seed=seed).pick() == ("500", True))


class LostAnswerTransport(httpx.AsyncBaseTransport):
    """The sandbox in-process. The first write to `path` gets the sandbox's 500 after the write; every later write
    goes out under a new requestid, so QuickBooks cannot replay its first answer."""

    def __init__(self, sandbox: Sandbox, path: str, meanwhile: Callable[[], object] | None = None) -> None:
        self.sandbox = sandbox
        self.inner = httpx.ASGITransport(app=sandbox)
        self.path = path
        self.meanwhile = meanwhile  # what someone else does in QuickBooks just after the lost answer
        self.armed = True
        self.writes: list[str] = []  # requestids of the writes to `path`

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path.endswith(f"/{self.path}"):
            if self.armed:
                self.armed = False
                self.sandbox.faults = FaultPlan(rate=1.0, kinds=("500",), seed=_after_write_seed())
                try:
                    self.writes.append(request.url.params["requestid"])
                    return await self.inner.handle_async_request(request)
                finally:
                    self.sandbox.faults.rate = 0.0
                    if self.meanwhile is not None:
                        self.meanwhile()
            request.url = request.url.copy_set_param("requestid", uuid.uuid4().hex)
            self.writes.append(request.url.params["requestid"])
        return await self.inner.handle_async_request(request)




def run_of(runs: RunStore, steps: str, record: dict[str, Any]) -> int:
    """A workflow with these steps on New Customer, and one claimed run of it for `record`."""
    text = f"name: lookup\ntrigger:\n  key: new_customer\n  connection: {CONNECTION}\nsteps:\n{steps}"
    load_workflow_text(text)
    workflow = runs.upsert_workflow("lookup", None, yaml.safe_load(text))
    event = TriggerEvent(trigger_key="new_customer", entity="Customer", record_id=record["Id"], sync_token="0",
                         record=record, dedup_key=f"new_customer:Customer:{record['Id']}:0",
                         changed_at=datetime.now(UTC))
    (run_id,) = runs.record_poll(workflow.id, "new_customer", CONNECTION, "realm", [event],
                                 PollCursor.start(datetime.now(UTC)).to_json())
    assert runs.claim_next_run().id == run_id
    return run_id


async def run_with_a_lost_answer(runs: RunStore, sandbox: Sandbox, realm: str, token: str, path: str,
                                 steps: str, record: dict[str, Any], meanwhile: Callable[[], object] | None = None):
    transport = LostAnswerTransport(sandbox, path, meanwhile)

    async def clients(name: str):
        return make_client(sandbox, realm, StaticTokens(token), transport=transport, retry=NO_CLIENT_RETRY,
                           pacer=False)

    runner = Runner(runs, clients, retry=FAST)
    done = await runner.run_once(run_of(runs, steps, record))
    if done.status == "waiting_retry":  # the lost answer was a transient failure: the next try looks first
        assert runs.claim_next_run(done.next_attempt_at + timedelta(seconds=1)).id == done.id
        done = await runner.run_once(done.id)
    assert sandbox.faults.injected == {"500": 1}  # the first attempt's answer was lost after the write
    return done, transport


def _customer(sandbox: Sandbox, realm: str) -> dict:
    n = next(_numbers)
    return sandbox.books.create(realm, "Customer", {"DisplayName": f"Lookup Co {os.getpid()}-{n}"})


async def test_a_customer_whose_answer_was_lost_is_made_once(runs, sandbox, realm, token, caplog) -> None:
    customer = _customer(sandbox, realm)
    name = f"{customer['DisplayName']} (billing)"
    steps = """  - id: make
    action: create_customer
    input:
      display_name: "{{ trigger.DisplayName }} (billing)"
      email: billing@lookup.example
"""
    with caplog.at_level(logging.INFO, logger="qbflow.runner"):
        done, transport = await run_with_a_lost_answer(runs, sandbox, realm, token, "customer", steps, customer)

    assert done.status == "succeeded", done.error
    (made,) = [c for c in sandbox.books.records(realm, "Customer") if c["DisplayName"] == name]
    assert done.step("make").output["Id"] == made["Id"] and done.step("make").attempts == 2
    assert transport.writes == [done.step("make").request_id]  # found: the second attempt wrote nothing
    assert "made by an earlier attempt" in caplog.text


async def test_a_payment_whose_answer_was_lost_is_made_once(runs, sandbox, realm, token) -> None:
    customer = _customer(sandbox, realm)
    invoice = sandbox.books.create(realm, "Invoice", {"CustomerRef": {"value": customer["Id"]}, "Line": [
        {"Amount": 80.0, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {"ItemRef": {"value": "1"}}}]})
    steps = """  - id: make
    action: create_payment
    input:
      customer: "{{ trigger.Id }}"
      invoices:
        - invoice_id: "{{ trigger.InvoiceId }}"
"""
    done, transport = await run_with_a_lost_answer(runs, sandbox, realm, token, "payment", steps,
                                                   {**customer, "InvoiceId": invoice["Id"]})

    assert done.status == "succeeded", done.error
    payments = [p for p in sandbox.books.records(realm, "Payment") if p["CustomerRef"]["value"] == customer["Id"]]
    assert [p["Id"] for p in payments] == [done.step("make").output["Id"]]
    assert payments[0]["TotalAmt"] == 80.0
    assert sandbox.books.get(realm, "Invoice", invoice["Id"])["Balance"] == 0
    assert len(transport.writes) == 1


async def test_a_twin_payment_made_meanwhile_fails_the_step_and_nothing_more_is_created(runs, sandbox, realm,
                                                                                       token) -> None:
    """The earlier attempt's payment, and an identical one someone entered in those seconds: which is ours?"""
    customer = _customer(sandbox, realm)
    steps = """  - id: make
    action: create_payment
    input:
      customer: "{{ trigger.Id }}"
      total_amount: 25
      reference_number: CHK-88
"""
    twin = {"CustomerRef": {"value": customer["Id"]}, "TotalAmt": 25.0, "PaymentRefNum": "CHK-88"}
    done, transport = await run_with_a_lost_answer(runs, sandbox, realm, token, "payment", steps, customer,
                                                   lambda: sandbox.books.create(realm, "Payment", twin))

    payments = [p for p in sandbox.books.records(realm, "Payment") if p["CustomerRef"]["value"] == customer["Id"]]
    assert len(payments) == 2 and len(transport.writes) == 1  # ours and the twin; no third
    assert done.status == "failed"
    step = done.step("make")
    assert step.status == "failed" and step.error["type"] == "AmbiguousCreate"
    assert all(p["Id"] in done.error for p in payments) and "nothing was created" in done.error


async def test_an_attachment_whose_answer_was_lost_is_uploaded_once_and_finished(runs, sandbox, realm,
                                                                                 token) -> None:
    customer = _customer(sandbox, realm)
    invoice = sandbox.books.create(realm, "Invoice", {"CustomerRef": {"value": customer["Id"]}, "Line": [
        {"Amount": 15.0, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {"ItemRef": {"value": "1"}}}]})
    content = base64.b64encode(b"summary of the invoice").decode()
    steps = f"""  - id: make
    action: upload_attachment
    input:
      entity: Invoice
      record: "{{{{ trigger.InvoiceId }}}}"
      content_base64: "{content}"
      file_name: "summary-{{{{ trigger.Id }}}}.txt"
      include_on_send: true
"""
    done, transport = await run_with_a_lost_answer(runs, sandbox, realm, token, "upload", steps,
                                                   {**customer, "InvoiceId": invoice["Id"]})

    assert done.status == "succeeded", done.error
    files = [a for a in sandbox.books.records(realm, "Attachable")
             if a.get("FileName") == f"summary-{customer['Id']}.txt"]
    assert [a["Id"] for a in files] == [done.step("make").output["Id"]]
    assert [ref["IncludeOnSend"] for ref in files[0]["AttachableRef"]] == [True]  # what the first attempt missed
    assert len(transport.writes) == 1
