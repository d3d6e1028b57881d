"""The deployment's status in the server (`GET /api/status`, the dashboard's System page), and webhooks handed to
the workers (`qbflow serve --workers`): a notification defers the company's forced poll as a Procrastinate job (or
forces the one already waiting), and a worker starts the change's run within seconds though no poll was due."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from qbflow.cli import app as cli
from qbflow.engine.poll_requests import WorkerPollRequests
from qbflow.engine.workers import TASK_POLL, WorkerOptions, Workers, ensure_schema
from qbflow.qbo.connections import client_for
from qbflow.sandbox.app import Sandbox
from qbflow.sandbox.webhooks import WebhookConfig
from qbflow.server import ServerConfig, create_app
from qbflow.server.webhooks import webhook_stats
from qbflow.settings import Settings
from qbflow.store import ConnectionRecord, RunStore, SecretBox, Store, open_store
from qbflow.store.models import RUN_SUCCEEDED
from tests.server.conftest import API_TOKEN, SERVER_BASE, api_token_checker
from tests.support.postgres import POSTGRES_URL, postgres_database
from tests.support.serve import serve_env, serving, stop, url_in
from tests.support.stores import WELCOME_YAML, add_run
from tests.support.stores import store_sandbox_connection as store_connection

needs_postgres = pytest.mark.skipif(not POSTGRES_URL, reason="QBFLOW_TEST_POSTGRES_URL is not set")
DEADLINE = 15.0  # seconds any wait may take before the test fails; the latency assertion is separate
VERIFIER = "verifier-token-from-intuits-portal"
WEBHOOK_PATH = "/webhooks/intuit"


async def wait_for(condition: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.02)
    return value


def poll_jobs(db: Engine) -> list[Any]:
    with db.connect() as connection:
        return connection.execute(text("SELECT id, status, args, lock, queueing_lock FROM procrastinate_jobs "
                                       "WHERE task_name = :task ORDER BY id"), {"task": TASK_POLL}).all()


# --- GET /api/status and the System page ----------------------------------------------------------------------

async def test_the_api_says_the_status(api: httpx.AsyncClient, anonymous: httpx.AsyncClient, store: Store,
                                       runs: RunStore, connection: ConnectionRecord) -> None:
    from qbflow.engine.stored import store_workflow_text

    store_workflow_text(runs, WELCOME_YAML, connections=[connection.name])
    add_run(runs, "welcome", "1", status="failed", error="boom")
    add_run(runs, "welcome", "2")
    store.connections.mark_needs_reconnect(connection.name, "the refresh token was refused")

    answer = await api.get("/api/status")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["mode"] == "embedded" and body["workers"] is None and body["queues"] is None
    assert body["backend"] == store.engine.dialect.name
    assert body["runs"] == {"queued": 1, "running": 0, "waiting_retry": 0, "failed_last_24h": 1, "waiting": 0}
    assert body["reconnect"] == [{"name": connection.name, "realm_id": connection.realm_id,
                                  "detail": "the refresh token was refused"}]
    assert (body["limit_per_minute"], body["limit_in_flight"]) == (500, 10)
    if store.engine.dialect.name == "sqlite":
        assert body["rates_measured"] is False and body["rates_note"].startswith("not measured")
    else:  # the shared pacer (QBFLOW_SHARED_LIMITS on by default): the connected company, idle
        assert body["rates_measured"] is True
        assert body["realms"] == [{"realm_id": connection.realm_id, "connections": [connection.name],
                                   "requests_last_minute": 0, "in_flight": 0, "throttles": 0,
                                   "paused_for_seconds": 0.0}]
    password = store.engine.url.password
    assert not password or password not in answer.text
    assert (await anonymous.get("/api/status")).status_code == 401


async def test_the_system_page_shows_the_same(app: FastAPI, store: Store, runs: RunStore,
                                              connection: ConnectionRecord) -> None:
    from qbflow.engine.stored import store_workflow_text

    store_workflow_text(runs, WELCOME_YAML, connections=[connection.name])
    add_run(runs, "welcome", "1", status="failed", error="boom")
    store.connections.mark_needs_reconnect(connection.name, "the refresh token was refused")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=SERVER_BASE) as browser:
        assert (await browser.get("/system")).status_code == 303  # to the login page
        login_page = await browser.get("/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', login_page.text).group(1)
        await browser.post("/login", data={"token": API_TOKEN, "csrf": csrf, "next": "/system"})
        page = await browser.get("/system")
    assert page.status_code == 200, page.text
    html = page.text
    assert '<a href="/system">System</a>' in html and "<script" not in html
    assert "embedded" in html and "no engine (<code>--no-engine</code>)" in html
    assert '<a href="/runs?status=failed">1</a>' in html
    assert f'<tr data-connection="{connection.name}">' in html and "the refresh token was refused" in html
    assert 'id="workers"' not in html and 'id="queues"' not in html
    if store.engine.dialect.name == "sqlite":
        assert "Request rates: not measured" in html
    else:
        assert f'<tr data-realm="{connection.realm_id}">' in html and "0 / 500" in html and "0 / 10" in html


# --- webhooks handed to the workers -------------------------------------------------------------------------------

@pytest.fixture
def pg_url() -> Iterator[str]:
    with postgres_database() as url:
        yield url


@needs_postgres
async def test_a_request_defers_a_forced_poll_or_forces_the_one_waiting(pg_url: str) -> None:
    store = open_store(url=pg_url, box=SecretBox([SecretBox.generate_key()]))
    try:
        ensure_schema(store.engine)
        requests = WorkerPollRequests(pg_url)
        try:
            assert await requests.request("acme") == "deferred"
            assert await requests.request("acme") == "merged"  # one poll waits: it will read the change
            [job] = poll_jobs(store.engine)
            assert (job.status, job.args, job.lock, job.queueing_lock) == (
                "todo", {"connection": "acme", "force": True}, "poll:acme", "poll:acme")

            # A poll the workers' schedule deferred (not forced: it polls only if a workflow is due by then) is
            # made a forced one, so a webhook's change is read even if the poll finds nothing due.
            workers = Workers(RunStore(store.engine), lambda name: None)
            async with workers.opened():
                assert await workers.defer_poll("globex") is True
            assert poll_jobs(store.engine)[1].args == {"connection": "globex", "force": False}
            requests.request_poll("globex")  # as the webhook receiver calls it: in the background
            await requests.drain()
            assert poll_jobs(store.engine)[1].args == {"connection": "globex", "force": True}
            assert (requests.deferred, requests.merged, requests.failed) == (1, 2, 0)

            # Being done, a poll does not stop the next: a new one waits (the lock runs them one after the other).
            with store.engine.begin() as connection:
                connection.execute(text("UPDATE procrastinate_jobs SET status = 'doing' WHERE id = :id"),
                                   {"id": job.id})
            assert await requests.request("acme") == "deferred"
            assert [(j.status, j.args["force"]) for j in poll_jobs(store.engine) if j.args["connection"] == "acme"
                    ] == [("doing", True), ("todo", True)]
        finally:
            await requests.aclose()
    finally:
        store.close()


@needs_postgres
async def test_a_webhook_makes_a_worker_start_the_run_within_seconds_without_a_due_poll(pg_url: str) -> None:
    store = open_store(url=pg_url, box=SecretBox([SecretBox.generate_key()]))
    runs = RunStore(store.engine)
    ensure_schema(store.engine)
    sandbox: Sandbox | None = None

    async def clients(name: str) -> Any:  # the production factory, over the in-process sandbox
        return await client_for(name, store, transport=httpx.ASGITransport(app=sandbox))

    requests = WorkerPollRequests(pg_url)
    settings = Settings(data_dir=Path("/nonexistent-qbflow-data"), webhook_verifier=SecretStr(VERIFIER))
    app = create_app(ServerConfig(store=store, settings=settings, api_token=api_token_checker(), engine=requests,
                                  run_engine=True, public_url=SERVER_BASE))
    sandbox = Sandbox(rate_limit=True, webhook=WebhookConfig(url=SERVER_BASE + WEBHOOK_PATH, verifier_token=VERIFIER),
                      webhook_transport=httpx.ASGITransport(app=app))
    sandbox.clock.advance(2)  # past the second the seed company was made in
    realm = sandbox.realms[0]
    store_connection(store, sandbox, realm)
    runs.upsert_workflow("welcome", None, {  # an hour between polls: only a webhook makes a worker look now
        "name": "welcome", "trigger": {"key": "new_customer", "connection": "acme", "poll_interval": "1h"},
        "steps": [{"id": "say", "action": "log", "input": {"message": "Welcome {{ trigger.DisplayName }}"}}]})
    workers = Workers(runs, clients, clock=sandbox.clock.now, options=WorkerOptions(tick=1))
    try:
        async with workers.opened(), sandbox.app.router.lifespan_context(sandbox.app), \
                app.router.lifespan_context(app):
            assert await workers.poll_company("acme") == "polls 1, requests 1, new events 0"  # activation
            [cursor] = runs.list_cursors()
            assert cursor.next_poll_at > sandbox.clock.now() + timedelta(minutes=50)
            worker = asyncio.create_task(workers.run_worker(concurrency=4, install_signal_handlers=False,
                                                            name="test-worker"))
            try:
                await wait_for(lambda: _registered_workers(store.engine), "the worker to register")
                await _wait_schedule_ran(store.engine)  # the periodic schedule runs, and defers no poll: none due
                assert poll_jobs(store.engine) == []

                changed = time.monotonic()
                issued = sandbox.oauth.issue_tokens_for_tests(sandbox.client_id, realm, base_url="http://sandbox.test")
                async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox),
                                             base_url="http://sandbox.test") as qbo:
                    made = await qbo.post(f"/v3/company/{realm}/customer", json={"DisplayName": "Webhook Gardens"},
                                          headers={"Authorization": f"Bearer {issued['access_token']}",
                                                   "Accept": "application/json"})
                assert made.status_code == 200, made.text
                customer = made.json()["Customer"]["Id"]

                def started() -> list[Any]:
                    return [run for run in (runs.get_run(r.id) for r in runs.list_runs(limit=100))
                            if run.event is not None and run.event.record_id == customer and run.started_at]

                await wait_for(started, "the change's run to start")
                latency = time.monotonic() - changed
                assert latency < 5.0, f"the run started {latency:.2f} s after the change"
                await wait_for(lambda: [r for r in started() if r.status == RUN_SUCCEEDED], "the run to succeed")
                stats = webhook_stats(app)
                assert stats.accepted >= 1 and stats.polls_requested >= 1
                assert requests.deferred + requests.merged >= 1 and requests.failed == 0
                assert len(runs.list_runs(limit=100)) == 1  # one change, one run
            finally:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
    finally:
        store.close()


def _registered_workers(db: Engine) -> int:
    with db.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM procrastinate_workers")).scalar_one()


async def _wait_schedule_ran(db: Engine) -> None:
    def ran() -> bool:
        with db.connect() as connection:
            return bool(connection.execute(text(
                "SELECT count(*) FROM procrastinate_periodic_defers WHERE task_name = 'qbflow.schedule'")).scalar_one()
                and not connection.execute(text(
                    "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'qbflow.schedule' "
                    "AND status IN ('todo', 'doing')")).scalar_one())
    await wait_for(ran, "the periodic schedule to run")


# --- qbflow serve --workers ----------------------------------------------------------------------------------------

def test_serve_with_workers_needs_postgresql(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in serve_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("QBFLOW_DATABASE_URL", raising=False)
    result = CliRunner().invoke(cli, ["serve", "--workers", "--port", "0"])
    assert result.exit_code == 1
    assert "workers need PostgreSQL" in result.output and "Traceback" not in result.output


@needs_postgres
def test_serve_with_workers_creates_the_job_tables_and_says_where_webhooks_go(tmp_path: Path, pg_url: str) -> None:
    env = serve_env(tmp_path, QBFLOW_DATABASE_URL=pg_url, QBFLOW_API_TOKEN="my-own-token-0123456789")
    with serving(env, "--workers") as (process, lines):
        url = url_in(lines)
        assert "no engine here; webhooks defer polls to the workers (--workers)" in lines[-1]
        answer = httpx.get(f"{url}/api/status", headers={"Authorization": "Bearer my-own-token-0123456789"})
        assert answer.status_code == 200 and answer.json()["mode"] == "workers"  # Procrastinate's tables exist
        assert answer.json()["workers"] == []
        stop(process)
    with serving(env, "--no-engine") as (process, lines):  # a workers database served without --workers: a hint
        assert any("serve with --workers" in line for line in lines), lines
        stop(process)
