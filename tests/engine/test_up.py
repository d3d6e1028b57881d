"""`qbflow up` as a newcomer runs it: one process with a fresh data directory that serves the built-in sandbox,
connects to it, installs the examples, makes some activity and runs the engine; checked from outside through
`qbflow runs list`/the store, the sandbox's port and the exit status."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from qbflow.store import RunStore, open_store
from tests.engine.test_examples import EVERY, NAMES, environment
from tests.support.connect import CLIENT_ID, CLIENT_SECRET, qbflow_env
from tests.support.sandbox import running_sandbox
from tests.support.serve import lines_until, serves

UP_SECONDS = 45  # activity ends ~25 s after activation and the examples poll again 30 s after it
# The runs `up`'s scripted activity starts: one per change, two for "File new bills" (the small bill and the big one);
# the schedule (Mondays 08:00) and the manual workflow make none.
EXPECTED_RUNS = {"Look up new customers": 1, "Email new invoices": 1, "Read edited expenses": 1, "File new bills": 2,
                 "Invoice paid shop orders": 1, "Approve big bills": 1}


def fresh_env(tmp_path: Path) -> dict[str, str]:
    """Only a data directory: no key, database URL or app credentials given (the defaults)."""
    return {"QBFLOW_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}


def quiet_environ() -> dict[str, str]:
    """os.environ without qbflow settings that would point the command elsewhere."""
    return {key: value for key, value in os.environ.items() if not key.startswith("QBFLOW_")}


def sandbox_url_in(output: str) -> str:
    match = re.search(r"serves a local QuickBooks Online at (http://127\.0\.0\.1:\d+)", output)
    assert match, output
    return match.group(1)


def server_url_in(output: str) -> str:
    match = re.search(r"^Server +(http://127\.0\.0\.1:\d+) ", output, re.MULTILINE)
    assert match, output
    return match.group(1)


def runs_by_workflow(env: dict[str, str]) -> dict[str, list[str]]:
    with environment(env):
        store = open_store()
        try:
            found: dict[str, list[str]] = {}
            for run in RunStore(store.engine).list_runs(limit=1000):
                found.setdefault(run.workflow_name, []).append(run.status)
            return found
        finally:
            store.close()


def test_up_runs_every_example_within_a_minute_and_stops_by_itself(tmp_path: Path) -> None:
    env = fresh_env(tmp_path)
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "qbflow.cli", "up", "--port", "0", "--server-port", "0",
                             "--duration", str(UP_SECONDS)],
                            env={**quiet_environ(), **env}, capture_output=True, text=True, timeout=UP_SECONDS + 40,
                            stdin=subprocess.DEVNULL)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    out = result.stdout
    assert elapsed < UP_SECONDS + 15, elapsed
    # the first lines say where things are and what to type
    url = sandbox_url_in(out.splitlines()[0])
    assert "qbflow runs list" in out and "qbflow runs show ID" in out
    assert env["QBFLOW_DATA_DIR"] in out and "sandbox (connected)" in out
    assert all(name in out for name in NAMES.values())
    assert out.count("[demo] created ") == 4 and "[demo] edited expense " in out
    assert "[demo] posted paid shop order " in out and "(3 items, for hello+" in out  # from the customer it made
    assert re.search(r"^\[demo\] approved bill BB-\w+ as controller@example.com \(approval \d+\)", out, re.MULTILINE)
    assert re.search(r"^ +Invoice paid shop orders \(POST http://127\.0\.0\.1:\d+/hooks/\S+\)", out, re.MULTILINE)
    assert "Hook secret" not in out  # up signs its own order; the secret stays in memory
    assert out.rstrip().endswith("stopped.")
    assert not serves(url)  # the sandbox stopped with it
    assert not serves(server_url_in(out))  # and so did qbflow's server
    assert re.search(r"^API token +\S{40,}  \(shown only this once", out, re.MULTILINE), out
    assert f"{server_url_in(out)}/webhooks/intuit" in out  # the sandbox's webhooks go to qbflow's server
    assert (Path(env["QBFLOW_DATA_DIR"]) / "sandbox.sqlite3").exists()

    listed = subprocess.run([sys.executable, "-m", "qbflow.cli", "runs", "list"], env={**quiet_environ(), **env},
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert listed.returncode == 0, listed.stderr
    runs = runs_by_workflow(env)
    # The Monday reminder fires only if the test happens to span Monday 08:00 Pacific: whatever it did then is
    # its own business (tests/engine/test_scenarios.py checks it), not a scripted change's.
    reminders = runs.pop("Remind overdue invoices", [])
    assert len(reminders) <= 1, reminders
    # one run per scripted change, each succeeded; nothing for the company's seed records
    assert runs == {name: ["succeeded"] * n for name, n in EXPECTED_RUNS.items()}, (runs, out)
    for name in EXPECTED_RUNS:
        assert name in listed.stdout
    assert listed.stdout.count("succeeded") == sum(EXPECTED_RUNS.values()) + reminders.count("succeeded")
    with environment(env):
        store = open_store()
        try:
            store_runs = RunStore(store.engine)
            found = {run.workflow_name: store_runs.get_run(run.id) for run in store_runs.list_runs(limit=1000)}
        finally:
            store.close()
    shop = found["Invoice paid shop orders"]
    assert "(3 line(s), 339.00) emailed to hello+" in shop.step("note").output["message"]
    assert "(existing customer " in shop.step("note").output["message"]
    approved = found["Approve big bills"]
    assert approved.step("approval").output["by"] == "controller@example.com"
    assert approved.step("decision.attach_approval").status == "succeeded"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_up_stops_cleanly_on_a_signal(tmp_path: Path, sig: signal.Signals) -> None:
    env = fresh_env(tmp_path)
    process = subprocess.Popen([sys.executable, "-m", "qbflow.cli", "up", "--port", "0", "--server-port", "0",
                                "--no-activity"],
                               env={**quiet_environ(), **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, stdin=subprocess.DEVNULL)
    try:
        lines = lines_until(process, lambda line: line.startswith("qbflow engine running"))
        url = sandbox_url_in(lines[0])
        assert serves(url)
        server = server_url_in("".join(lines))
        health = httpx.get(f"{server}/healthz", timeout=10)  # qbflow's server answers while `up` runs
        assert health.status_code == 200 and health.json() == {"ok": True, "engine": True}
        token = re.search(r"^API token +(\S+)  \(shown only this once", "".join(lines), re.MULTILINE).group(1)
        assert httpx.get(f"{server}/api/workflows", headers={"Authorization": f"Bearer {token}"},
                         timeout=10).json()[0]["enabled"] is True
        process.send_signal(sig)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, "".join(lines) + out + err
    assert "Traceback" not in err, err
    assert out.rstrip().endswith("stopped.")
    assert "[demo]" not in "".join(lines) + out  # --no-activity
    assert not serves(url)
    assert not serves(server)


def test_up_on_an_existing_connection_starts_no_sandbox(tmp_path: Path) -> None:
    env = qbflow_env(tmp_path)
    Path(env["QBFLOW_DATA_DIR"]).mkdir(parents=True)
    with running_sandbox("--auto-approve", "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET,
                         "--no-rate-limit") as (base, _process):
        connected = subprocess.run(
            [sys.executable, "-m", "qbflow.cli", "connect", "books", "--sandbox", base, "--timeout", "60"],
            env={**os.environ, **env, "BROWSER": "false", "DISPLAY": ""}, capture_output=True, text=True,
            timeout=90, stdin=subprocess.DEVNULL)
        assert connected.returncode == 0, connected.stdout + connected.stderr
        result = subprocess.run([sys.executable, "-m", "qbflow.cli", "up", "--connection", "books", "--duration", "3",
                                 "--server-port", "0"],
                                env={**os.environ, **env, "COLUMNS": "200"}, capture_output=True, text=True,
                                timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no sandbox started" in result.stdout and "serves a local QuickBooks" not in result.stdout
    assert "[demo]" not in result.stdout
    assert not (Path(env["QBFLOW_DATA_DIR"]) / "sandbox.sqlite3").exists()
    with environment(env):
        store = open_store()
        try:
            workflows = RunStore(store.engine).list_workflows()
            names = [record.name for record in store.connections.list()]
        finally:
            store.close()
    assert names == ["books"]  # no `sandbox` connection was made
    assert sorted(w.name for w in workflows) == sorted(EVERY.values())
    for workflow in workflows:
        trigger = workflow.definition["trigger"]
        assert workflow.enabled and (trigger.get("connection") or workflow.definition["connection"]) == "books"
        assert all(step.get("connection") in (None, "books") for step in workflow.definition["steps"])
    assert re.search(r"^Hook secret +Invoice paid shop orders: \S{40,}  \(shown only this once", result.stdout,
                     re.MULTILINE), result.stdout  # no activity signs orders here: the secret is for the shop


def test_up_on_an_unknown_connection_says_so(tmp_path: Path) -> None:
    env = fresh_env(tmp_path)
    result = subprocess.run([sys.executable, "-m", "qbflow.cli", "up", "--connection", "nowhere"],
                            env={**quiet_environ(), **env}, capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "nowhere" in result.stderr and result.stderr.startswith("Error:"), result.stderr
