"""`qbflow workflow add|list|enable|disable` and `qbflow runs list|show|retry` as a user runs them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from qbflow.engine.workflow import Workflow, load_workflow
from qbflow.store import RunStore, SecretBox, open_store
from tests.engine.test_workflow_files import INVOICE_FOLLOW_UP, WELCOME_ESTIMATE
from tests.support.cli import SECRETS, add_connection, invoke


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "QBFLOW_DATA_DIR": str(tmp_path / "data"),
        "QBFLOW_DATABASE_URL": f"sqlite:///{tmp_path / 'qbflow.sqlite3'}",
        "QBFLOW_SECRET_KEY": SecretBox.generate_key(),
        "COLUMNS": "250",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def stored_runs(name: str = "Invoice follow-up", count: int = 3) -> list[int]:
    """`count` queued runs of the stored workflow `name`, as a poll would record them."""
    with open_store() as store:
        runs = RunStore(store.engine)
        workflow = runs.get_workflow(name)
        events = [{"entity": "Invoice", "record_id": str(130 + n), "sync_token": "0",
                   "dedup_key": f"Invoice:{130 + n}:0", "record": {"Id": str(130 + n), "TotalAmt": 250.0}}
                  for n in range(count)]
        return runs.record_poll(workflow.id, "new_invoice", "acme", "9130000000000001", events, '{"at": 1}')


# --- workflow add ------------------------------------------------------------------------------------------

def test_add_stores_a_valid_file_and_readding_updates_it(env, tmp_path: Path) -> None:
    add_connection()
    path = write(tmp_path / "flows", "follow-up.yaml", INVOICE_FOLLOW_UP)
    first = invoke("workflow", "add", str(path))
    assert first.exit_code == 0, first.output
    assert "ok: 'Invoice follow-up', trigger new_invoice, 4 step(s): added (enabled)" in first.output
    again = invoke("workflow", "add", str(path), "--disabled")
    assert again.exit_code == 0, again.output
    assert "updated (disabled)" in again.output
    with open_store() as store:
        stored = RunStore(store.engine).list_workflows()
    assert [w.name for w in stored] == ["Invoice follow-up"]
    assert stored[0].enabled is False and stored[0].source_path == str(path.resolve())
    assert stored[0].definition["trigger"]["key"] == "new_invoice"
    assert [step["id"] for step in stored[0].definition["steps"]] == ["customer", "send", "notify", "note"]
    again_parsed = Workflow.model_validate(stored[0].definition)  # what the engine reads back
    assert again_parsed.model_dump() == load_workflow(path, connections=["acme"]).model_dump()


def test_add_a_folder_stores_the_good_files_and_none_with_problems(env, tmp_path: Path) -> None:
    add_connection()
    add_connection("acme-books")
    folder = tmp_path / "flows"
    write(folder, "a.yaml", INVOICE_FOLLOW_UP.replace("action: send_invoice", "action: send_invoce"))
    write(folder, "b.yaml", WELCOME_ESTIMATE)
    result = invoke("workflow", "add", str(folder))
    assert result.exit_code == 1
    assert "did you mean 'send_invoice'" in result.output and "Traceback" not in result.output
    assert "'Welcome estimate'" in result.output and "added" in result.output
    listed = invoke("workflow", "list")
    assert "Welcome estimate" in listed.output and "Invoice follow-up" not in listed.output


def test_add_checks_connections_against_the_store(env, tmp_path: Path) -> None:
    path = write(tmp_path, "follow-up.yaml", INVOICE_FOLLOW_UP)
    result = invoke("workflow", "add", str(path))
    assert result.exit_code == 1
    assert "no connection named 'acme'" in result.output
    assert "No workflows yet" in invoke("workflow", "list").output


def test_add_two_files_with_one_name_stores_only_the_first(env, tmp_path: Path) -> None:
    add_connection()
    folder = tmp_path / "flows"
    write(folder, "a.yaml", INVOICE_FOLLOW_UP)
    write(folder, "b.yaml", INVOICE_FOLLOW_UP)
    result = invoke("workflow", "add", str(folder))
    assert result.exit_code == 1
    assert "must be unique" in result.output and str(folder / "a.yaml") in result.output


def test_add_a_missing_file_is_a_usage_error(env, tmp_path: Path) -> None:
    result = invoke("workflow", "add", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2 and "no such file" in result.output


# --- workflow list, enable, disable -----------------------------------------------------------------------

def test_list_shows_trigger_connection_state_steps_and_last_run(env, tmp_path: Path) -> None:
    add_connection()
    assert invoke("workflow", "add", str(write(tmp_path, "f.yaml", INVOICE_FOLLOW_UP))).exit_code == 0
    listed = invoke("workflow", "list")
    assert listed.exit_code == 0, listed.output
    row = next(line for line in listed.output.splitlines() if "Invoice follow-up" in line)
    assert "new_invoice" in row and "acme" in row and " on " in row and " 4 " in row and "never" in row
    run_ids = stored_runs(count=2)
    with open_store() as store:
        RunStore(store.engine).finish_run(run_ids[-1], "failed", error="boom")
    row = next(line for line in invoke("workflow", "list").output.splitlines() if "Invoice follow-up" in line)
    assert f"#{run_ids[-1]} failed" in row


def test_enable_and_disable(env, tmp_path: Path) -> None:
    add_connection()
    invoke("workflow", "add", str(write(tmp_path, "f.yaml", INVOICE_FOLLOW_UP)))
    off = invoke("workflow", "disable", "Invoice follow-up")
    assert off.exit_code == 0 and "is now disabled" in off.output
    row = next(line for line in invoke("workflow", "list").output.splitlines() if "Invoice follow-up" in line)
    assert " off " in row
    on = invoke("workflow", "enable", "Invoice follow-up")
    assert on.exit_code == 0 and "is now enabled" in on.output


@pytest.mark.parametrize("verb", ["enable", "disable"])
def test_an_unknown_name_suggests_the_nearest(env, tmp_path: Path, verb: str) -> None:
    add_connection()
    invoke("workflow", "add", str(write(tmp_path, "f.yaml", INVOICE_FOLLOW_UP)))
    result = invoke("workflow", verb, "Invoice folow-up")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "No workflow named 'Invoice folow-up'" in result.output
    assert "Did you mean 'Invoice follow-up'?" in result.output


# --- runs --------------------------------------------------------------------------------------------------

@pytest.fixture
def three_runs(env, tmp_path: Path) -> list[int]:
    add_connection()
    assert invoke("workflow", "add", str(write(tmp_path, "f.yaml", INVOICE_FOLLOW_UP))).exit_code == 0
    return stored_runs(count=3)


def test_runs_list_filters_by_workflow_and_status(three_runs: list[int]) -> None:
    first, second, third = three_runs
    with open_store() as store:
        runs = RunStore(store.engine)
        runs.claim_next_run()
        runs.finish_run(first, "failed", error="Customer not found:\n  the customer was deleted")
    listed = invoke("runs", "list")
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    rows = [line for line in lines if "Invoice follow-up" in line]
    assert [row.strip("│ ").split()[0] for row in rows] == [str(third), str(second), str(first)]  # newest first
    failed_row = rows[-1]
    assert "Invoice follow-up" in failed_row and "failed" in failed_row and " 1 " in failed_row
    assert "Customer not found: the customer was deleted" in failed_row
    only_failed = invoke("runs", "list", "--status", "failed")
    assert "failed" in only_failed.output and "queued" not in only_failed.output
    assert len(invoke("runs", "list", "--limit", "1").output.split("Invoice follow-up")) == 2
    assert "No runs match" in invoke("runs", "list", "--status", "cancelled").output
    assert invoke("runs", "list", "--workflow", "Invoice follow-up").output.count("Invoice follow-up") == 3


def test_runs_list_refuses_unknown_status_and_workflow(three_runs: list[int]) -> None:
    status = invoke("runs", "list", "--status", "faild")
    assert status.exit_code == 2 and "unknown status 'faild'" in status.output and "'failed'" in status.output
    workflow = invoke("runs", "list", "--workflow", "invoice follow-up")
    assert workflow.exit_code == 1 and "No workflow named 'invoice follow-up'" in workflow.output
    assert "Traceback" not in workflow.output


def test_runs_list_when_empty(env) -> None:
    result = invoke("runs", "list")
    assert result.exit_code == 0 and "No runs yet" in result.output


def test_runs_show_prints_event_and_every_step_without_secrets(three_runs: list[int]) -> None:
    with open_store() as store:
        runs = RunStore(store.engine)
        run = runs.claim_next_run()
        assert run is not None
        sent = runs.mark_step_sent(run.id, "customer", {"display_name": "Amy's Bird Sanctuary"})
        runs.finish_step(run.id, "customer", output={"Id": "58", "DisplayName": "Amy's Bird Sanctuary"})
        runs.mark_step_sent(run.id, "notify", {"method": "POST", "url": "https://hooks.example.com/qbo",
                                               "headers": {"Authorization": "Bearer sk-live-very-secret"}})
        runs.finish_step(run.id, "notify", status="failed", error={"kind": "permanent", "message": "HTTP 404"})
        runs.finish_run(run.id, "failed", error="step notify: HTTP 404")
    result = invoke("runs", "show", str(run.id))
    assert result.exit_code == 0, result.output
    out = result.output
    for text in ("Run", "Invoice follow-up", "failed", "step notify: HTTP 404", "new_invoice", "Invoice",
                 "130", "Sync token", sent.request_id, "Step 1: customer (succeeded)", "Step 2: notify (failed)",
                 '"display_name": "Amy\'s Bird Sanctuary"', '"Id": "58"', '"message": "HTTP 404"'):
        assert text in out, text
    assert "sk-live-very-secret" not in out and '"Authorization": "***"' in out
    for secret in SECRETS:
        assert secret not in out


def test_runs_show_a_queued_run_and_an_unknown_id(three_runs: list[int]) -> None:
    queued = invoke("runs", "show", str(three_runs[0]))
    assert queued.exit_code == 0 and "queued" in queued.output and "No steps have run yet" in queued.output
    missing = invoke("runs", "show", "999")
    assert missing.exit_code == 1 and "No run with id 999" in missing.output and "Traceback" not in missing.output
    assert invoke("runs", "show", "abc").exit_code == 2


@pytest.mark.parametrize("status", ["failed", "waiting_retry", "cancelled"])
def test_retry_queues_a_finished_run_again(three_runs: list[int], status: str) -> None:
    with open_store() as store:
        runs = RunStore(store.engine)
        run = runs.claim_next_run()
        assert run is not None
        runs.finish_run(run.id, status, error="boom", next_attempt_at=datetime.now(UTC) + timedelta(hours=1))
    result = invoke("runs", "retry", str(run.id))
    assert result.exit_code == 0, result.output
    assert f"Run {run.id} (Invoice follow-up) was {status}; it is queued again." in result.output
    with open_store() as store:
        again = RunStore(store.engine).get_run(run.id)
    assert again.status == "queued" and again.finished_at is None and again.next_attempt_at is None


@pytest.mark.parametrize("status", ["succeeded", "running"])
def test_retry_refuses_a_succeeded_or_running_run(three_runs: list[int], status: str) -> None:
    with open_store() as store:
        runs = RunStore(store.engine)
        run = runs.claim_next_run()
        assert run is not None
        if status == "succeeded":
            runs.finish_run(run.id, "succeeded")
    result = invoke("runs", "retry", str(run.id))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"run {run.id} cannot be retried" in result.output
    with open_store() as store:
        assert RunStore(store.engine).get_run(run.id).status == status


def test_retry_an_unknown_or_queued_run(three_runs: list[int]) -> None:
    missing = invoke("runs", "retry", "999")
    assert missing.exit_code == 1 and "No run with id 999" in missing.output
    queued = invoke("runs", "retry", str(three_runs[0]))
    assert queued.exit_code == 0 and "already queued" in queued.output
