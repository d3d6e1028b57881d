"""The engine as a user runs it: `qbflow sandbox`, `qbflow connect`, `qbflow workflow add`, `qbflow run`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.connect import env, qbflow_env, sandbox_url, stored  # noqa: F401  (module fixtures)
from tests.support.postgres import postgres_database

WORKFLOW = """\
name: Invoice new customers
trigger:
  key: new_customer
  connection: demo
  poll_interval: 1m
steps:
  - id: invoice
    action: create_invoice
    input:
      customer: "{{ trigger.Id }}"
      lines:
        - item: Design
          qty: 2
          unit_price: 75
      private_note: "Welcome invoice for {{ trigger.DisplayName }}"
  - id: note
    action: log
    input:
      message: "Invoiced {{ trigger.DisplayName }}: {{ steps.invoice.output.TotalAmt | money }}"
"""


def qbflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:  # noqa: F811
    return subprocess.run([sys.executable, "-m", "qbflow.cli", *args], env={**os.environ, **env, "COLUMNS": "200"},
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_a_new_customer_in_quickbooks_runs_the_workflow_once(tmp_path: Path, env: dict, sandbox_url: str):  # noqa: F811
    check_welcome_invoice(tmp_path, env, sandbox_url, "Engine Test Gardens")


def test_the_same_with_the_store_on_postgresql(tmp_path: Path, sandbox_url: str):  # noqa: F811
    with postgres_database() as url:
        env = {**qbflow_env(tmp_path), "QBFLOW_DATABASE_URL": url}  # noqa: F811
        connected = qbflow({**env, "BROWSER": "false", "DISPLAY": ""}, "connect", "demo", "--sandbox", sandbox_url,
                           "--timeout", "60")
        assert connected.returncode == 0, connected.stdout + connected.stderr
        check_welcome_invoice(tmp_path, env, sandbox_url, "Engine Test Gardens on PostgreSQL")


def check_welcome_invoice(tmp_path: Path, env: dict, sandbox_url: str, name: str) -> None:  # noqa: F811
    path = tmp_path / "welcome.yaml"
    path.write_text(WORKFLOW)
    added = qbflow(env, "workflow", "add", str(path))
    assert added.returncode == 0, added.stdout + added.stderr
    first = qbflow(env, "run", "--once")  # activates the trigger: from now on
    assert first.returncode == 0, first.stdout + first.stderr

    connection = stored(env, "demo")
    api = f"{sandbox_url}/v3/company/{connection.realm_id}"
    headers = {"Authorization": f"Bearer {connection.access_token}", "Accept": "application/json"}
    customer = httpx.post(f"{api}/customer", json={"DisplayName": name}, headers=headers)
    assert customer.status_code == 200, customer.text
    customer_id = customer.json()["Customer"]["Id"]

    second = qbflow(env, "run", "--once")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "runs 1" in second.stdout, second.stdout
    third = qbflow(env, "run", "--once")  # the same change is not run again
    assert "runs 1" not in third.stdout, third.stdout

    invoices = httpx.get(f"{api}/query", headers=headers, params={
        "query": f"select * from Invoice where CustomerRef = '{customer_id}'"}).json()["QueryResponse"]
    assert len(invoices["Invoice"]) == 1
    invoice = invoices["Invoice"][0]
    assert invoice["TotalAmt"] == 150.0
    assert invoice["PrivateNote"] == f"Welcome invoice for {name}"

    runs = qbflow(env, "runs", "list")
    assert "Invoice new customers" in runs.stdout and "succeeded" in runs.stdout
