"""`qbflow catalog`, `qbflow action run` and `qbflow trigger sample` as a user runs them: `qbflow sandbox
--auto-approve` serving on 127.0.0.1, a connection made through `qbflow connect demo --sandbox URL`, and every
effect checked through a separate read of the sandbox's API with the stored token (not the action's answer)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from qbflow.cli import app
from qbflow.connector.registry import ACTIONS
from qbflow.connector.triggers import TRIGGERS
from qbflow.qbo.pacing import reset_pacers
from tests.connector.test_actions import BEYOND_SEED_TITLES, SEED_TITLES
from tests.support.connect import stored


def cli(env: dict[str, str], *args: str):
    """The command in-process; stdout and stderr apart."""
    reset_pacers()  # each command runs its own event loop, as a fresh process would
    return CliRunner().invoke(app, list(args), env={**env, "COLUMNS": "200"})


def qbflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """The command as a separate process: real exit status, real stderr."""
    return subprocess.run([sys.executable, "-m", "qbflow.cli", *args], env={**os.environ, **env, "COLUMNS": "200"},
                          capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL)


def run_ok(env: dict[str, str], *args: str) -> dict:
    result = cli(env, *args)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout)


def read(env: dict[str, str], entity_path: str, record_id: str) -> dict:
    """The record straight from the sandbox's API, with the connection's stored access token."""
    record = stored(env, "demo")
    answer = httpx.get(f"{record.api_base.rstrip('/')}/v3/company/{record.realm_id}/{entity_path}/{record_id}",
                       headers={"Authorization": f"Bearer {record.access_token}", "Accept": "application/json"},
                       timeout=30)
    answer.raise_for_status()
    body = answer.json()
    return next(value for key, value in body.items() if key != "time")


def one_line_error(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("Error: ")
    return lines[0]


# --- catalog -------------------------------------------------------------------------------------------------
def test_catalog_json_lists_every_trigger_and_action() -> None:
    result = CliRunner().invoke(app, ["catalog", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert set(document) == {"triggers", "actions"}
    triggers, actions = document["triggers"], document["actions"]
    assert len(triggers) == 27 and [t["key"] for t in triggers] == list(TRIGGERS)
    for t in triggers:
        assert t["title"] and t["description"] and t["output"] and t["entity"]
        assert t["sample"] == TRIGGERS[t["key"]].sample
    assert {t["title"] for t in triggers} >= {"New Invoice", "Updated Invoice", "New Purchase", "Updated Purchase",
                                              "Deleted Bill"}
    assert len(actions) == len(ACTIONS)
    titles = {a["title"] for a in actions}
    assert not [t for t in SEED_TITLES + BEYOND_SEED_TITLES if t not in titles]
    for a in actions:
        assert a["key"] and a["title"] and a["description"] and a["output"]
        schema = a["input_schema"]
        assert schema["type"] == "object" and "properties" in schema
    create_customer = next(a for a in actions if a["key"] == "create_customer")
    assert "display_name" in create_customer["input_schema"]["properties"]


def test_catalog_table_shows_every_key() -> None:
    result = subprocess.run([sys.executable, "-m", "qbflow.cli", "catalog"], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "COLUMNS": "120"})
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "27 triggers" in out and f"{len(ACTIONS)} actions" in out
    for key in [*TRIGGERS, *ACTIONS]:
        assert f" {key} " in out, key
    assert "New Invoice" in out and "Create Journal Entry" in out and "trigger" in out and "action" in out


# --- action run ----------------------------------------------------------------------------------------------
def test_action_run_creates_a_customer_that_a_separate_read_finds(env: dict[str, str]) -> None:
    given = {"display_name": "Harbor Lights Yoga", "email": "studio@harborlights.example",
             "phone": "(415) 555-0142", "billing_address": {"line1": "12 Pier Way", "city": "Sausalito",
                                                            "state": "CA", "postal_code": "94965"}}
    result = qbflow(env, "action", "run", "create_customer", "--connection", "demo", "--input", json.dumps(given))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    created = json.loads(result.stdout)
    record = read(env, "customer", created["Id"])
    assert record["DisplayName"] == "Harbor Lights Yoga"
    assert record["PrimaryEmailAddr"]["Address"] == "studio@harborlights.example"
    assert record["PrimaryPhone"]["FreeFormNumber"] == "(415) 555-0142"
    assert record["BillAddr"]["City"] == "Sausalito"
    # And the Get Customer action finds it by email (the lookup a person would use).
    found = run_ok(env, "action", "run", "get_customer", "--connection", "demo",
                   "--input", '{"email": "studio@harborlights.example"}')
    assert found["Id"] == created["Id"]


def test_action_run_reads_the_input_from_a_file(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "vendor.json"
    path.write_text(json.dumps({"display_name": "Tidewater Stone Supply", "email": "ap@tidewater.example",
                                "account_number": "TW-4410"}), encoding="utf-8")
    created = run_ok(env, "action", "run", "create_vendor", "--connection", "demo", "--input", f"@{path}")
    record = read(env, "vendor", created["Id"])
    assert record["DisplayName"] == "Tidewater Stone Supply" and record["AcctNum"] == "TW-4410"
    reset_pacers()
    piped = CliRunner().invoke(app, ["action", "run", "get_vendor", "--connection", "demo", "--input", "@-"],
                               input=json.dumps({"id": created["Id"]}), env={**env, "COLUMNS": "200"})
    assert piped.exit_code == 0, piped.stderr
    assert json.loads(piped.stdout)["DisplayName"] == "Tidewater Stone Supply"


def test_a_validation_error_exits_1_naming_the_field_value_and_expectation(env: dict[str, str]) -> None:
    result = qbflow(env, "action", "run", "create_customer", "--connection", "demo",
                    "--input", '{"display_name": "Bad Email Co", "email": "not-an-email", "colour": "red"}')
    assert result.returncode == 1 and result.stdout == ""
    line = one_line_error(result.stderr)
    assert "Create Customer" in line
    assert "email: expected an email address" in line and "'not-an-email'" in line
    assert "colour: not a known field" in line
    missing = cli(env, "action", "run", "create_invoice", "--connection", "demo",
                  "--input", '{"lines": [{"amount": 10, "description": "Consulting"}]}')
    assert missing.exit_code == 1
    assert "customer: required (nothing was given)" in one_line_error(missing.stderr)


def test_an_unknown_key_exits_2_suggesting_the_nearest(env: dict[str, str]) -> None:
    result = qbflow(env, "action", "run", "create_custmer", "--connection", "demo", "--input", "{}")
    assert result.returncode == 2 and result.stdout == ""
    line = one_line_error(result.stderr)
    assert "unknown action 'create_custmer'" in line and "did you mean 'create_customer'" in line
    name_list = cli(env, "action", "run", "delete_customer", "--connection", "demo", "--input", '{"id": "1"}')
    assert name_list.exit_code == 2 and "deactivate_customer" in one_line_error(name_list.stderr)


@pytest.mark.parametrize(("given", "expected"), [
    ('{"display_name": ', "--input is not valid JSON: Expecting value at line 1 column 18"),
    ('["Ann"]', "--input must be a JSON object"),
    ("@/no/such/file.json", "cannot read --input file '/no/such/file.json'"),
])
def test_bad_input_is_a_usage_error(env: dict[str, str], given: str, expected: str) -> None:
    result = cli(env, "action", "run", "create_customer", "--connection", "demo", "--input", given)
    assert result.exit_code == 2
    assert expected in one_line_error(result.stderr)


def test_reference_qbo_and_connection_errors_exit_1(env: dict[str, str]) -> None:
    unknown = cli(env, "action", "run", "create_invoice", "--connection", "demo",
                  "--input", '{"customer": "Nobody By This Name", "lines": [{"amount": 5, "description": "x"}]}')
    assert unknown.exit_code == 1
    assert "customer: no active customer has the name 'Nobody By This Name'" in one_line_error(unknown.stderr)
    missing = cli(env, "action", "run", "get_invoice", "--connection", "demo", "--input", '{"id": "987654"}')
    assert missing.exit_code == 1
    line = one_line_error(missing.stderr)
    assert "Get Invoice" in line and "[610]" in line and "/invoice/987654" in line
    nowhere = cli(env, "action", "run", "get_invoice", "--connection", "nope", "--input", '{"id": "1"}')
    assert nowhere.exit_code == 1 and "'nope'" in one_line_error(nowhere.stderr)


# --- trigger sample ------------------------------------------------------------------------------------------
def _first_customer(env: dict[str, str]) -> str:
    """The name of the company's customer Id 1 ("Amy's Bird Sanctuary" in Intuit's sample company), read from the
    sandbox: whichever company `qbflow sandbox` starts with, the invoice names a customer it has."""
    return read(env, "customer", "1")["DisplayName"]


def _invoice(env: dict[str, str], note: str) -> dict:
    return run_ok(env, "action", "run", "create_invoice", "--connection", "demo", "--input", json.dumps(
        {"customer": _first_customer(env), "private_note": note,
         "lines": [{"item": "Design", "qty": 3, "unit_price": 80}]}))


def test_trigger_sample_new_invoice_prints_the_newest_invoice(env: dict[str, str]) -> None:
    created = _invoice(env, "newest for the sample")
    result = qbflow(env, "trigger", "sample", "new_invoice", "--connection", "demo")
    assert result.returncode == 0, result.stderr
    sample = json.loads(result.stdout)
    assert sample["Id"] == created["Id"] and sample["PrivateNote"] == "newest for the sample"
    assert sample["CustomerRef"]["name"] == _first_customer(env) and sample["TotalAmt"] == 240
    assert sample == read(env, "invoice", created["Id"])


def test_trigger_sample_updated_and_deleted_invoice(env: dict[str, str]) -> None:
    created = _invoice(env, "to be changed")
    run_ok(env, "action", "run", "update_invoice", "--connection", "demo",
           "--input", json.dumps({"id": created["Id"], "private_note": "changed"}))
    updated = run_ok(env, "trigger", "sample", "updated_invoice", "--connection", "demo")
    assert updated["Id"] == created["Id"] and updated["PrivateNote"] == "changed"
    assert int(updated["SyncToken"]) > 0
    run_ok(env, "action", "run", "delete_invoice", "--connection", "demo", "--input", json.dumps({"id": created["Id"]}))
    deleted = run_ok(env, "trigger", "sample", "deleted_invoice", "--connection", "demo")
    assert deleted["Id"] == created["Id"] and deleted["status"] == "Deleted"


def test_trigger_sample_without_a_match_prints_the_built_in_sample_with_a_note(env: dict[str, str]) -> None:
    result = cli(env, "trigger", "sample", "deleted_purchase_order", "--connection", "demo")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == TRIGGERS["deleted_purchase_order"].sample
    assert "Note:" in result.stderr and "no purchase order was deleted in the last 30 days" in result.stderr


def test_trigger_sample_offline_needs_no_connection() -> None:
    result = CliRunner().invoke(app, ["trigger", "sample", "new_invoice", "--offline"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == TRIGGERS["new_invoice"].sample


def test_trigger_sample_usage_errors_exit_2() -> None:
    unknown = CliRunner().invoke(app, ["trigger", "sample", "new_invoce", "--offline"])
    assert unknown.exit_code == 2 and "did you mean 'new_invoice'" in one_line_error(unknown.stderr)
    nothing = CliRunner().invoke(app, ["trigger", "sample", "new_invoice"])
    assert nothing.exit_code == 2 and "--offline" in one_line_error(nothing.stderr)
