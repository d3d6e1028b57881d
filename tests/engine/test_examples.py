"""The example workflows (`qbflow/examples/`, which the repository's `examples/` is) as a user runs them:
`qbflow sandbox` serving on 127.0.0.1, the connection `sandbox` made by `qbflow connect`, the folder stored by
`qbflow workflow add`, changes made through the sandbox's API, `qbflow run --once` as a separate process, and
every effect checked through a separate read of QuickBooks (not the steps' answers)."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from qbflow.app.up import SANDBOX_CONNECTION, example_files, examples_dir, load_examples
from qbflow.engine.workflow import TriggerSpec, validate_workflow
from qbflow.store import RunRecord, RunStore, open_store
from tests.support.connect import CLIENT_ID, CLIENT_SECRET, qbflow_env, stored
from tests.support.sandbox import running_sandbox

REPO = Path(__file__).resolve().parents[2]
NAMES = {"new-customer-get-customer.yaml": "Look up new customers",
         "new-invoice-send-invoice.yaml": "Email new invoices",
         "updated-purchase-get-expense.yaml": "Read edited expenses",
         "new-bill-upload-attachment.yaml": "File new bills",
         # the scenarios (tests/engine/test_scenarios.py runs them end to end)
         "shop-order-invoice.yaml": "Invoice paid shop orders",
         "monday-overdue-reminders.yaml": "Remind overdue invoices",
         "big-bill-approval.yaml": "Approve big bills",
         "email-invoice-on-request.yaml": "Email an invoice on request"}
QBO_TRIGGERED = {"Look up new customers", "Email new invoices", "Read edited expenses", "File new bills",
                 "Approve big bills"}
# Examples run on a schedule only, not by a QuickBooks change (`qbflow up` makes no run of them).
SCHEDULED = {"weekly-ar-aging.yaml": "Weekly A/R aging"}
EVERY = {**NAMES, **SCHEDULED}


def qbflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qbflow.cli", *args], env={**os.environ, **env, "COLUMNS": "200"},
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    old = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(old)


def run_for(env: dict[str, str], workflow: str, record_id: str) -> RunRecord:
    """The one run of `workflow` whose event is the record `record_id`, with its steps."""
    with environment(env):
        store = open_store()
        try:
            runs = RunStore(store.engine)
            found = [full for run in runs.list_runs(workflow=workflow, limit=1000)
                     if (full := runs.get_run(run.id)).event is not None and full.event.record_id == record_id]
        finally:
            store.close()
    assert len(found) == 1, f"{workflow}: {len(found)} runs for record {record_id}"
    return found[0]


# --- the files ---------------------------------------------------------------------------------------------------
def test_the_repository_examples_folder_is_the_installed_one() -> None:
    ours = sorted(path.name for path in (REPO / "examples").iterdir() if path.suffix == ".yaml")
    assert ours == sorted(EVERY) == [path.name for path in example_files()]
    for name in ours:
        assert (REPO / "examples" / name).read_bytes() == (examples_dir() / name).read_bytes()


def test_every_example_is_valid_enabled_on_sandbox_and_logs() -> None:
    for path in example_files():
        assert validate_workflow(path, connections=[SANDBOX_CONNECTION]) == [], path
    workflows = load_examples()
    assert {w.name for w in workflows} == set(EVERY.values())
    for workflow in workflows:
        kind = workflow.trigger.kind
        assert (kind == "qbo") == (workflow.name in QBO_TRIGGERED), workflow.name
        # QuickBooks triggers name the company; the others say it at the top for their QuickBooks steps
        assert (workflow.trigger.connection if isinstance(workflow.trigger, TriggerSpec)
                else workflow.connection) == SANDBOX_CONNECTION
        assert workflow.steps[-1].action == "log"
    assert {w.trigger.kind for w in workflows} == {"qbo", "webhook", "schedule", "manual"}
    moved = load_examples("acme")
    assert all((w.trigger.connection if isinstance(w.trigger, TriggerSpec) else w.connection) == "acme"
               and all(s.connection in (None, "acme") for s in w.walk()) for w in moved)


# --- the examples at work -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    with running_sandbox("--auto-approve", "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET,
                         "--no-rate-limit", "--books", "sample") as (base, _process):
        yield base


@pytest.fixture(scope="module")
def env(sandbox_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A data directory holding the connection `sandbox` (made by `qbflow connect`) and the examples, activated."""
    env = qbflow_env(tmp_path_factory.mktemp("qbflow"))
    Path(env["QBFLOW_DATA_DIR"]).mkdir(parents=True, exist_ok=True)
    connected = subprocess.run(
        [sys.executable, "-m", "qbflow.cli", "connect", SANDBOX_CONNECTION, "--sandbox", sandbox_url,
         "--timeout", "60"],
        env={**os.environ, **env, "BROWSER": "false", "DISPLAY": "", "COLUMNS": "200"},
        capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL)
    assert connected.returncode == 0, connected.stdout + connected.stderr
    added = qbflow(env, "workflow", "add", str(REPO / "examples"))
    assert added.returncode == 0, added.stdout + added.stderr
    assert added.stdout.count("(enabled)") == len(EVERY), added.stdout
    first = qbflow(env, "run", "--once")  # activates the QuickBooks triggers and the schedules: from now on
    assert first.returncode == 0, first.stdout + first.stderr
    return env


class Api:
    """The sandbox's API with the stored connection's token: how the effects are read back."""

    def __init__(self, env: dict[str, str], base: str) -> None:
        record = stored(env, SANDBOX_CONNECTION)
        self.base = base
        self.realm = record.realm_id
        self.http = httpx.Client(base_url=f"{base}/v3/company/{record.realm_id}", timeout=30, headers={
            "Authorization": f"Bearer {record.access_token}", "Accept": "application/json"})

    def post(self, path: str, body: dict) -> dict:
        answer = self.http.post(path, json=body)
        assert answer.status_code == 200, answer.text
        return next(value for key, value in answer.json().items() if key != "time")

    def get(self, path: str) -> dict:
        answer = self.http.get(path)
        assert answer.status_code == 200, answer.text
        return next(value for key, value in answer.json().items() if key != "time")

    def query(self, text: str) -> list[dict]:
        answer = self.http.get("query", params={"query": text})
        assert answer.status_code == 200, answer.text
        response = answer.json()["QueryResponse"]
        return next((value for value in response.values() if isinstance(value, list)), [])


@pytest.fixture(scope="module")
def changes(env: dict[str, str], sandbox_url: str) -> dict:
    """A new customer, an invoice for it, an edited expense and a new bill; then one engine cycle."""
    api = Api(env, sandbox_url)
    customer = api.post("customer", {"DisplayName": "Example Test Nursery",
                                     "PrimaryEmailAddr": {"Address": "owner@exampletestnursery.example"}})
    item = api.query("select * from Item where Name = 'Design'")[0]
    invoice = api.post("invoice", {"CustomerRef": {"value": customer["Id"]}, "Line": [
        {"Amount": 150.0, "DetailType": "SalesItemLineDetail",
         "SalesItemLineDetail": {"ItemRef": {"value": item["Id"]}, "Qty": 2, "UnitPrice": 75}}]})
    purchase = api.query("select * from Purchase")[0]
    edited = api.post("purchase", {"Id": purchase["Id"], "SyncToken": purchase["SyncToken"], "sparse": True,
                                   "PrivateNote": "Fuel receipt checked"})
    vendor = api.query("select * from Vendor where DisplayName = 'Hicks Hardware'")[0]
    account = api.query("select * from Account where Name = 'Supplies'")[0]
    bill = api.post("bill", {"VendorRef": {"value": vendor["Id"]}, "DocNumber": "EX-77", "Line": [
        {"Amount": 86.4, "DetailType": "AccountBasedExpenseLineDetail",
         "AccountBasedExpenseLineDetail": {"AccountRef": {"value": account["Id"]}}}]})
    second = qbflow(env, "run", "--once")
    assert second.returncode == 0, second.stdout + second.stderr
    return {"api": api, "customer": customer, "invoice": invoice, "purchase": edited, "bill": bill}


def test_new_customer_is_read_back_and_logged(env: dict[str, str], changes: dict) -> None:
    customer = changes["customer"]
    run = run_for(env, "Look up new customers", customer["Id"])
    assert run.status == "succeeded", run.error
    output = run.step("customer").output
    assert output["Id"] == customer["Id"] and output["DisplayName"] == "Example Test Nursery"
    assert output["PrimaryEmailAddr"]["Address"] == "owner@exampletestnursery.example"
    assert output == changes["api"].get(f"customer/{customer['Id']}")  # the record as QuickBooks has it
    message = run.step("note").output["message"]
    assert message == (f"New customer Example Test Nursery (Id {customer['Id']}), "
                       "email owner@exampletestnursery.example")


def test_new_invoice_is_emailed(env: dict[str, str], changes: dict, sandbox_url: str) -> None:
    api, invoice = changes["api"], changes["invoice"]
    assert invoice.get("EmailStatus") != "EmailSent"
    run = run_for(env, "Email new invoices", invoice["Id"])
    assert run.status == "succeeded", run.error
    current = api.get(f"invoice/{invoice['Id']}")
    assert current["EmailStatus"] == "EmailSent"
    outbox = httpx.get(f"{sandbox_url}/_sandbox/companies/{api.realm}/outbox", timeout=30).json()["emails"]
    mails = [mail for mail in outbox if mail["entity"] == "Invoice" and mail["id"] == invoice["Id"]]
    assert len(mails) == 1 and mails[0]["to"] == "owner@exampletestnursery.example"
    assert "Emailed invoice " + str(current["DocNumber"]) in run.step("note").output["message"]
    assert "to owner@exampletestnursery.example (EmailSent)" in run.step("note").output["message"]


def test_edited_expense_is_read_back(env: dict[str, str], changes: dict) -> None:
    purchase = changes["purchase"]
    run = run_for(env, "Read edited expenses", purchase["Id"])
    assert run.status == "succeeded", run.error
    assert run.event.sync_token == purchase["SyncToken"]
    output = run.step("expense").output
    assert output["PrivateNote"] == "Fuel receipt checked" and output["SyncToken"] == purchase["SyncToken"]
    assert output == changes["api"].get(f"purchase/{purchase['Id']}")
    message = run.step("note").output["message"]
    assert message.startswith(f"Expense {purchase['Id']} changed (version {purchase['SyncToken']}): 63.15 paid to ")
    assert message.endswith("memo Fuel receipt checked")


def test_new_bill_gets_an_attachment(env: dict[str, str], changes: dict) -> None:
    api, bill = changes["api"], changes["bill"]
    run = run_for(env, "File new bills", bill["Id"])
    assert run.status == "succeeded", run.error
    linked = [a for a in api.query("select * from Attachable")
              if any(ref.get("EntityRef", {}).get("type") == "Bill" and ref["EntityRef"].get("value") == bill["Id"]
                     for ref in a.get("AttachableRef") or [])]
    assert len(linked) == 1
    attachable = linked[0]
    assert attachable["Id"] == run.step("attach").output["Id"]
    assert attachable["FileName"] == f"bill-{bill['Id']}-filed.txt" and attachable["ContentType"] == "text/plain"
    assert attachable["Note"] == "Filed by qbflow when the bill was entered."
    link = api.http.get(f"download/{attachable['Id']}", headers={"Accept": "text/plain"})
    assert link.status_code == 200, link.text
    url = link.text.strip()
    expected = f"Bill EX-77\nVendor: Hicks Hardware\nAmount: 86.40\nDue: {bill['DueDate']}\nFiled by qbflow.\n"
    assert base64.b64decode(run.step("attach").input["content_base64"]).decode() == expected
    assert httpx.get(api.base + url if url.startswith("/") else url, timeout=30).text == expected
    assert run.step("note").output["message"] == f"Attached bill-{bill['Id']}-filed.txt to bill {bill['Id']} " \
                                                 "(Hicks Hardware, 86.40)"


def test_an_invoice_is_emailed_on_request(env: dict[str, str], changes: dict, sandbox_url: str) -> None:
    api = changes["api"]
    invoice = next(i for i in api.query("select * from Invoice") if i["Id"] != changes["invoice"]["Id"])
    ran = qbflow(env, "workflow", "run", "Email an invoice on request", "--input",
                 f'{{"doc_number": "{invoice["DocNumber"]}"}}', "--now")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    outbox = httpx.get(f"{sandbox_url}/_sandbox/companies/{api.realm}/outbox", timeout=30).json()["emails"]
    assert [mail["doc_number"] for mail in outbox if mail["id"] == invoice["Id"]] == [invoice["DocNumber"]]
    assert api.get(f"invoice/{invoice['Id']}")["EmailStatus"] == "EmailSent"


def test_weekly_ar_aging_dry_run_and_live_test_log_the_total(env: dict[str, str], sandbox_url: str) -> None:
    import json

    dry = qbflow(env, "workflow", "test", "Weekly A/R aging")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    report = json.loads(dry.stdout)
    assert report["ok"] and report["steps"][0]["dry_run"] and report["steps"][0]["input"] == {
        "aging_period": 30, "num_periods": 4}
    live = qbflow(env, "workflow", "test", "Weekly A/R aging", "--live")
    assert live.returncode == 0, live.stdout + live.stderr
    steps = json.loads(live.stdout)["steps"]
    aging = Api(env, sandbox_url).http.get("/reports/AgedReceivables").json()  # a separate read
    total = aging["Rows"]["Row"][-1]["Summary"]["ColData"][-1]["value"]
    customers = len(aging["Rows"]["Row"]) - 1
    assert customers > 0
    message = steps[1]["output"]["message"]
    assert f": {float(total)} owed in total" in message and f"({customers} customers)" in message, message
