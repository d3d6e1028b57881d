"""Intuit's webhooks end to end: the sandbox sends signed notifications (legacy and CloudEvents) to the server,
whose engine, otherwise idle for an hour, polls at once and starts the run within 2 s. Forged notifications
are refused and counted; replayed ones fire nothing twice; polling later fires nothing again."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from qbflow.sandbox.webhooks import sign
from qbflow.server.webhooks import MAX_BODY_BYTES, webhook_stats
from qbflow.settings import Settings
from qbflow.store import RunRecord, RunStore, open_store
from tests.support.connect import CLIENT_ID, CLIENT_SECRET, qbflow_env
from tests.support.sandbox import free_port, running_sandbox
from tests.support.webhooks import (
    CONNECTION,
    DEADLINE,
    TEST_API_TOKEN,
    VERIFIER,
    WEBHOOK_PATH,
    WORKFLOW,
    wait_for,
    webhook_stack,
)

FORMATS = ["legacy", "cloudevents"]


@pytest.fixture(autouse=True)
def _no_real_user_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("QBFLOW_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("QBFLOW_DATA_DIR", str(tmp_path / "data"))


def legacy_notification(realm: str, customer_id: str) -> bytes:
    return json.dumps({"eventNotifications": [{"realmId": realm, "dataChangeEvent": {"entities": [
        {"name": "Customer", "id": customer_id, "operation": "Create",
         "lastUpdated": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")}]}}]}).encode()


# --- a change in QuickBooks starts the run at once -----------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
async def test_a_change_starts_its_run_within_two_seconds_and_later_polls_fire_nothing_again(tmp_path: Path,
                                                                                              fmt: str):
    async with webhook_stack(tmp_path, fmt) as stack:
        changed = time.monotonic()
        customer_id = await stack.create_customer(f"Webhook Gardens ({fmt})")
        await wait_for(lambda: [r for r in stack.runs_for(customer_id) if r.started_at is not None],
                       "the run to start")
        latency = time.monotonic() - changed
        assert latency < 2.0, f"the run started {latency:.2f} s after the change"

        run = await stack.wait_for_finished_run(customer_id)
        assert run.workflow_name == WORKFLOW
        body = json.loads((await stack.delivered())["body"])
        assert isinstance(body, list) if fmt == "cloudevents" else "eventNotifications" in body
        stats = webhook_stats(stack.app)
        assert stats.accepted >= 1 and stats.polls_requested >= 1 and stats.refused == 0

        # The next scheduled poll (forced here, rather than waiting an hour) sees the same change: no new run.
        before = stack.cursor().last_poll_at
        stack.engine.request_poll(CONNECTION)
        await stack.wait_for_poll_after(before)
        assert len(stack.runs_for(customer_id)) == 1
        assert len(stack.runs.list_runs()) == 1


@pytest.mark.parametrize("fmt", FORMATS)
async def test_a_replayed_notification_fires_nothing_twice(tmp_path: Path, fmt: str):
    async with webhook_stack(tmp_path, fmt) as stack:
        customer_id = await stack.create_customer(f"Replay Orchards ({fmt})")
        await stack.wait_for_finished_run(customer_id)
        original = await stack.delivered()
        body = original["body"].encode("utf-8")
        content_type = "application/cloudevents+json" if fmt == "cloudevents" else "application/json"

        for _ in range(2):  # Intuit re-sends a delivery it thinks failed: same body, same signature
            before = stack.cursor().last_poll_at
            replay = await stack.post_notification(body, sign(body, VERIFIER), **{"content-type": content_type})
            assert replay.status_code == 200, replay.text
            await stack.wait_for_poll_after(before)  # the replay did make the engine look again
        assert len(stack.runs_for(customer_id)) == 1
        assert len(stack.runs.list_runs()) == 1
        assert webhook_stats(stack.app).accepted >= 3


# --- refused notifications ----------------------------------------------------------------------------------

async def test_a_forged_notification_is_refused_counted_and_fires_nothing(tmp_path: Path,
                                                                          caplog: pytest.LogCaptureFixture):
    async with webhook_stack(tmp_path) as stack:
        stack.sandbox.webhooks.configure(None)  # Intuit says nothing about this change...
        customer_id = await stack.create_customer("Forged Notice Farms")
        body = legacy_notification(stack.realm, customer_id)  # ...but someone claims to
        before = stack.cursor().last_poll_at

        with caplog.at_level(logging.WARNING, logger="qbflow.server"):
            forged = await stack.post_notification(body, sign(body, "a-guessed-verifier"))
            unsigned = await stack.post_notification(body, None)
            garbage = await stack.post_notification(body, "not base64 at all!")
        assert [forged.status_code, unsigned.status_code, garbage.status_code] == [401, 401, 401]
        assert "signature" in forged.json()["detail"] and "missing" in unsigned.json()["detail"]

        stats = webhook_stats(stack.app)
        assert stats.refused == 3 and stats.accepted == 0 and stats.polls_requested == 0
        refusals = stats.to_dict()["recent_refusals"]
        assert [r["status"] for r in refusals] == [401, 401, 401]
        assert "no intuit-signature" in refusals[1]["reason"] and "does not match" in refusals[0]["reason"]
        assert all(r["at"] for r in refusals)
        assert len([r for r in caplog.records if "webhook refused" in r.getMessage()]) == 3
        for secret in (VERIFIER, body.decode(), customer_id):  # neither the body nor any secret is logged
            assert all(secret not in r.getMessage() for r in caplog.records)
        assert stack.cursor().last_poll_at == before and stack.runs.list_runs() == []

        # The refusals are there for the user to see: in the API and on the dashboard.
        auth = {"Authorization": f"Bearer {TEST_API_TOKEN}"}
        seen = (await stack.server.get("/api/webhooks", headers=auth)).json()
        assert seen["configured"] is True and seen["refused"] == 3 and seen["accepted"] == 0
        assert seen["recent_refusals"][0]["reason"] == refusals[0]["reason"]
        assert (await stack.server.get("/api/webhooks")).status_code == 401
        form = (await stack.server.get("/login")).text
        csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
        login = await stack.server.post("/login", data={"token": TEST_API_TOKEN, "next": "/", "csrf": csrf})
        assert login.status_code == 303
        page = (await stack.server.get("/")).text
        assert "3 refused" in page and refusals[0]["reason"] in page and VERIFIER not in page

        # The very same notification signed with the app's verifier is Intuit's: it fires, once.
        genuine = await stack.post_notification(body, sign(body, VERIFIER))
        assert genuine.status_code == 200
        await stack.wait_for_finished_run(customer_id)
        assert len(stack.runs.list_runs()) == 1


async def test_without_a_verifier_configured_every_notification_is_refused(tmp_path: Path):
    async with webhook_stack(tmp_path, verifier=None) as stack:
        customer_id = await stack.create_customer("Unconfigured Ltd")
        await wait_for(lambda: stack.sandbox.webhooks.deliveries, "the sandbox to try a delivery")
        assert stack.sandbox.webhooks.deliveries[0]["status"] == 401  # Intuit would retry it later
        response = await stack.post_notification(legacy_notification(stack.realm, customer_id), sign(b"", ""))
        assert response.status_code == 401
        assert "QBFLOW_WEBHOOK_VERIFIER" in response.json()["detail"]
        stats = webhook_stats(stack.app)
        assert stats.refused >= 2 and stats.accepted == 0
        assert all("QBFLOW_WEBHOOK_VERIFIER" in r["reason"] for r in stats.to_dict()["recent_refusals"])
        assert stack.runs.list_runs() == []


@pytest.mark.parametrize("body, expected", [
    (b"{not json", "not JSON"),
    (b'{"hello": "world"}', "neither"),
    (b'"a string"', "neither"),
])
async def test_a_signed_body_that_is_not_a_notification_is_400_with_a_clear_detail(tmp_path: Path, body: bytes,
                                                                                   expected: str):
    async with webhook_stack(tmp_path) as stack:
        response = await stack.post_notification(body, sign(body, VERIFIER))
        assert response.status_code == 400
        detail = response.json()["detail"]
        assert expected in detail and "eventNotifications" in detail and "CloudEvents" in detail
        assert webhook_stats(stack.app).refused == 1


async def test_an_oversized_body_is_413_whether_its_length_is_declared_or_not(tmp_path: Path):
    async with webhook_stack(tmp_path) as stack:
        big = b'{"eventNotifications": [' + b" " * MAX_BODY_BYTES + b"]}"
        declared = await stack.post_notification(big, sign(big, VERIFIER))
        assert declared.status_code == 413

        async def chunks() -> AsyncIterator[bytes]:  # chunked transfer: no Content-Length to check first
            for start in range(0, len(big), 65536):
                yield big[start:start + 65536]

        streamed = await stack.server.post(WEBHOOK_PATH, content=chunks(),
                                           headers={"intuit-signature": sign(big, VERIFIER)})
        assert streamed.status_code == 413
        assert webhook_stats(stack.app).refused == 2
        assert stack.runs.list_runs() == []


async def test_a_notification_for_a_company_nobody_connected_is_acknowledged_and_logged_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture):
    async with webhook_stack(tmp_path) as stack:
        body = legacy_notification("9999999999999999", "42")
        with caplog.at_level(logging.WARNING, logger="qbflow.server"):
            for _ in range(3):
                response = await stack.post_notification(body, sign(body, VERIFIER))
                assert response.status_code == 200
        assert len([r for r in caplog.records if "9999999999999999" in r.getMessage()]) == 1
        stats = webhook_stats(stack.app)
        assert stats.accepted == 3 and stats.polls_requested == 0
        assert stats.to_dict()["unknown_realms"] == ["9999999999999999"]
        json.dumps(stats.to_dict())  # ready for the API


async def test_one_cloudevents_delivery_may_name_several_companies(tmp_path: Path):
    async with webhook_stack(tmp_path) as stack:
        stack.sandbox.webhooks.configure(None)
        customer_id = await stack.create_customer("Two Realms Delivery Co")
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        events = [{"specversion": "1.0", "id": f"event-{n}", "source": "intuit.test", "type": "qbo.customer.created.v1",
                   "time": now, "intuitentityid": customer_id, "intuitaccountid": realm, "data": {}}
                  for n, realm in enumerate(["9999999999999998", stack.realm])]
        body = json.dumps(events).encode()
        response = await stack.post_notification(body, sign(body, VERIFIER),
                                                  **{"content-type": "application/cloudevents+json"})
        assert response.status_code == 200
        assert response.json() == {"events": 2, "polls": 1}
        await stack.wait_for_finished_run(customer_id)


# --- with real processes ------------------------------------------------------------------------------------

WORKFLOW_YAML = f"""\
name: {WORKFLOW}
trigger:
  key: new_customer
  connection: {CONNECTION}
  poll_interval: 1h
steps:
  - id: say
    action: log
    input:
      message: "Welcome {{{{ trigger.DisplayName }}}}"
"""


@contextlib.contextmanager
def qbflow_serve(env: dict[str, str], port: int, log: Path) -> Iterator[subprocess.Popen]:
    """`qbflow serve --port PORT` (engine included, one-hour tick) until it answers; Ctrl-C (by pid) at the end."""
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "qbflow.cli", "serve", "--port", str(port), "--tick", "3600"],
                                   env={**os.environ, **env, "COLUMNS": "200"}, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, f"qbflow serve exited early:\n{log.read_text()}"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"qbflow serve did not answer within 30 s:\n{log.read_text()}"
            time.sleep(0.05)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@pytest.mark.parametrize("fmt", FORMATS)
def test_qbflow_sandbox_and_qbflow_serve_processes_start_the_run_within_two_seconds(tmp_path: Path, fmt: str):
    from tests.support.procs import qbflow

    port = free_port()
    verifier = f"process-verifier-{fmt}"
    env = {**qbflow_env(tmp_path), "QBFLOW_WEBHOOK_VERIFIER": verifier, "QBFLOW_API_TOKEN": "process-api-token"}
    Path(env["QBFLOW_DATA_DIR"]).mkdir(parents=True)
    (tmp_path / "welcome.yaml").write_text(WORKFLOW_YAML)
    with running_sandbox("--auto-approve", "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET,
                         "--no-rate-limit", "--webhook-url", f"http://127.0.0.1:{port}{WEBHOOK_PATH}",
                         "--webhook-verifier", verifier, "--webhook-format", fmt) as (sandbox_url, _sandbox):
        connected = qbflow(env, "connect", CONNECTION, "--sandbox", sandbox_url, "--timeout", "60")
        assert connected.returncode == 0, connected.stdout + connected.stderr
        added = qbflow(env, "workflow", "add", str(tmp_path / "welcome.yaml"))
        assert added.returncode == 0, added.stdout + added.stderr
        store = open_store(Settings(data_dir=env["QBFLOW_DATA_DIR"], database_url=env["QBFLOW_DATABASE_URL"],
                                    secret_key=env["QBFLOW_SECRET_KEY"]))
        try:
            runs = RunStore(store.engine)
            record = store.connections.get(CONNECTION)
            with qbflow_serve(env, port, tmp_path / "serve.log"):
                deadline = time.monotonic() + DEADLINE
                while not runs.list_cursors():  # the engine's first cycle activated the trigger
                    assert time.monotonic() < deadline, "the engine did not start polling"
                    time.sleep(0.02)
                changed_at = datetime.now(UTC)
                created = httpx.post(f"{sandbox_url}/v3/company/{record.realm_id}/customer",
                                     json={"DisplayName": f"Process Webhook Nursery ({fmt})"},
                                     headers={"Authorization": f"Bearer {record.access_token}",
                                              "Accept": "application/json"})
                assert created.status_code == 200, created.text
                customer_id = created.json()["Customer"]["Id"]

                def started() -> list[RunRecord]:
                    return [r for r in map(lambda r: runs.get_run(r.id), runs.list_runs(limit=1000))
                            if r.event is not None and r.event.record_id == customer_id and r.started_at]

                while not (mine := started()):
                    assert datetime.now(UTC) - changed_at < timedelta(seconds=DEADLINE), "no run started"
                    time.sleep(0.01)
                latency = (mine[0].started_at - changed_at).total_seconds()
                assert 0 < latency < 2.0, f"the run started {latency:.2f} s after the change"

                while not [d for d in httpx.get(f"{sandbox_url}/_sandbox/webhooks/deliveries").json()["deliveries"]
                           if d["ok"]]:  # logged by the sandbox once the server's 200 is back there
                    assert datetime.now(UTC) - changed_at < timedelta(seconds=DEADLINE), "no delivery logged"
                    time.sleep(0.02)
            assert len(started()) == 1
        finally:
            store.close()
