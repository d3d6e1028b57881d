"""`qbflow status` (`qbflow.engine.status`): runs by status and connections to reconnect on SQLite and PostgreSQL;
on PostgreSQL with Procrastinate's tables, the workers and the queue depth; with the shared pacer, each company's
requests of the last minute and in flight; and the command itself, on a terminal and as JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text, update
from typer.testing import CliRunner

from qbflow.cli import app as cli
from qbflow.engine.status import system_status
from qbflow.engine.stored import store_workflow_text
from qbflow.engine.workers import enqueue_runs, ensure_schema
from qbflow.qbo.pacing import Limits
from qbflow.qbo.pacing.postgres import SharedRealmPacer
from qbflow.store import RunStore, SecretBox, Store, TokenResult, open_store
from qbflow.store.models import Run
from tests.support.postgres import postgres_database
from tests.support.stores import WELCOME_YAML, add_run


def add_connection(store: Store, name: str, realm: str) -> None:
    now = datetime.now(UTC)
    store.connections.add(name=name, realm_id=realm, client_id="app", client_secret="app-secret",
                          api_base="http://qbo.test", token_endpoint="http://qbo.test/oauth2/v1/tokens/bearer",
                          tokens=TokenResult(access_token="access", access_expires_at=now + timedelta(hours=1),
                                             refresh_token="refresh", refresh_expires_at=now + timedelta(days=100)))


@pytest.fixture
def pg_store() -> Iterator[Store]:
    with postgres_database() as url:
        opened = open_store(url=url, box=SecretBox([SecretBox.generate_key()]))
        yield opened
        opened.close()


def test_runs_by_status_and_connections_needing_reconnect(store: Store) -> None:
    runs = RunStore(store.engine)
    add_connection(store, "acme", "realm-1")
    add_connection(store, "globex", "realm-2")
    store.connections.mark_needs_reconnect("globex", "the refresh token was refused (invalid_grant)")
    store_workflow_text(runs, WELCOME_YAML, connections=["acme"])
    for number, status in enumerate(["running", "waiting_retry", "failed", "failed", "succeeded", "cancelled",
                                     "waiting", "queued", "queued"], 1):
        add_run(runs, "welcome", str(number), status=status)
    with store.engine.begin() as db:  # one failure is two days old: not "in the last 24 h"
        db.execute(update(Run).where(Run.id == 4).values(finished_at=datetime.now(UTC) - timedelta(days=2)))

    status = system_status(store.engine, shared_limits=False)
    assert status.mode == "embedded" and status.workers is None and status.queues is None
    assert status.backend == store.engine.dialect.name
    assert (status.runs.queued, status.runs.running, status.runs.waiting_retry, status.runs.failed_last_24h,
            status.runs.waiting) == (2, 1, 1, 1, 1)
    assert [(c.name, c.realm_id, c.detail) for c in status.reconnect] == [
        ("globex", "realm-2", "the refresh token was refused (invalid_grant)")]
    assert not status.rates_measured and status.rates_note.startswith("not measured") and status.realms == []
    assert (status.limit_per_minute, status.limit_in_flight) == (500, 10)
    assert json.loads(json.dumps(status.to_dict()))["runs"] == {"queued": 2, "running": 1, "waiting_retry": 1,
                                                                "failed_last_24h": 1, "waiting": 1}


def test_the_database_is_shown_without_its_password(pg_store: Store) -> None:
    status = system_status(pg_store.engine)
    password = pg_store.engine.url.password
    assert status.database == pg_store.engine.url.render_as_string(hide_password=True)
    assert not password or password not in json.dumps(status.to_dict())


def _register_worker(db: Engine, *, silent_for: float = 0.0) -> int:
    with db.begin() as connection:
        worker = connection.execute(text("SELECT worker_id FROM procrastinate_register_worker_v1()")).scalar_one()
        connection.execute(text("UPDATE procrastinate_workers SET last_heartbeat = now() - make_interval(secs => :s) "
                                "WHERE id = :id"), {"s": silent_for, "id": worker})
    return worker


def test_workers_and_queue_depth_once_procrastinate_tables_exist(pg_store: Store) -> None:
    db = pg_store.engine
    assert system_status(db).mode == "embedded"
    ensure_schema(db)
    empty = system_status(db)
    assert empty.mode == "workers" and empty.workers == []
    assert [(q.queue, q.todo, q.scheduled, q.doing, q.oldest_waiting_seconds) for q in empty.queues] == [
        ("schedule", 0, 0, 0, None), ("polls", 0, 0, 0, None), ("runs", 0, 0, 0, None)]

    alive, dead = _register_worker(db), _register_worker(db, silent_for=120)
    with db.begin() as connection:
        enqueue_runs(connection, [1, 2, 3])
        enqueue_runs(connection, [4], at=datetime.now(UTC) + timedelta(hours=1))  # a retry, later
        # The jobs waited 90 s already (their "deferred" events say since when).
        connection.execute(text("UPDATE procrastinate_events SET at = now() - interval '90 seconds'"))
    with db.begin() as connection:  # the live worker takes one
        taken = connection.execute(text("SELECT id FROM procrastinate_fetch_job_v2(ARRAY['runs'], :w)"),
                                   {"w": alive}).scalar_one()
    status = system_status(db, stalled_after=30)
    runs_queue = {q.queue: q for q in status.queues}["runs"]
    assert (runs_queue.todo, runs_queue.scheduled, runs_queue.doing) == (2, 1, 1)
    assert 89 <= runs_queue.oldest_waiting_seconds < 150
    by_id = {w.id: w for w in status.workers}
    assert by_id[alive].alive and by_id[alive].jobs_running == 1 and by_id[alive].seconds_since_heartbeat < 30
    assert len(by_id[alive].jobs) == 1 and by_id[alive].jobs[0].startswith("qbflow.run(")
    assert not by_id[dead].alive and by_id[dead].jobs_running == 0 and by_id[dead].seconds_since_heartbeat >= 119
    assert taken is not None


async def test_request_rates_per_company_from_the_shared_pacer(pg_store: Store) -> None:
    db = pg_store.engine
    add_connection(pg_store, "acme", "realm-a")
    add_connection(pg_store, "acme-copy", "realm-a")
    add_connection(pg_store, "globex", "realm-g")
    pacer = SharedRealmPacer("realm-a", Limits(), engine=db)
    for _ in range(3):
        async with pacer.slot():
            pass
    async with pacer.slot(), pacer.slot():  # two in flight now
        status = system_status(db, shared_limits=True)
    assert status.rates_measured and "pacer_requests" in status.rates_note
    by_realm = {realm.realm_id: realm for realm in status.realms}
    assert (by_realm["realm-a"].requests_last_minute, by_realm["realm-a"].in_flight) == (3, 2)
    assert by_realm["realm-a"].connections == ("acme", "acme-copy")
    assert (by_realm["realm-g"].requests_last_minute, by_realm["realm-g"].in_flight) == (0, 0)  # connected, idle

    await pacer.pause(30)  # a 429: every process waits
    after = {realm.realm_id: realm for realm in system_status(db, shared_limits=True).realms}["realm-a"]
    assert (after.requests_last_minute, after.in_flight, after.throttles) == (5, 0, 1)
    assert 0 < after.paused_for_seconds <= 30

    with db.begin() as connection:  # a minute later, the log is past the window
        connection.execute(text("UPDATE pacer_requests SET ended_at = ended_at - 61, expires_at = expires_at - 61"))
    assert {r.realm_id: r for r in system_status(db, shared_limits=True).realms}["realm-a"].requests_last_minute == 0

    off = system_status(db, shared_limits=False)
    assert not off.rates_measured and "QBFLOW_SHARED_LIMITS" in off.rates_note and off.realms == []


def test_the_status_command_on_a_terminal_and_as_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("QBFLOW_DATABASE_URL", "QBFLOW_SHARED_LIMITS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("QBFLOW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "200")
    store = open_store()
    try:
        add_connection(store, "globex", "realm-2")
        store.connections.mark_needs_reconnect("globex", "refused")
    finally:
        store.close()

    shown = CliRunner().invoke(cli, ["status"])
    assert shown.exit_code == 0, shown.output
    assert "Mode: embedded" in shown.output and "qbflow.sqlite3" in shown.output
    assert "Failed (last 24 h)" in shown.output
    assert "Requests per company: not measured" in shown.output
    assert "Connections needing reconnect" in shown.output and "globex" in shown.output and "refused" in shown.output

    as_json = CliRunner().invoke(cli, ["status", "--json"])
    assert as_json.exit_code == 0, as_json.output
    parsed = json.loads(as_json.output)
    assert parsed["mode"] == "embedded" and parsed["backend"] == "sqlite" and parsed["workers"] is None
    assert parsed["reconnect"] == [{"name": "globex", "realm_id": "realm-2", "detail": "refused"}]


def test_the_status_command_in_workers_mode(monkeypatch: pytest.MonkeyPatch, pg_store: Store) -> None:
    url = pg_store.engine.url.render_as_string(hide_password=False)
    monkeypatch.setenv("QBFLOW_DATABASE_URL", url)
    monkeypatch.setenv("COLUMNS", "200")
    ensure_schema(pg_store.engine)
    _register_worker(pg_store.engine)
    add_connection(pg_store, "acme", "realm-a")
    shown = CliRunner().invoke(cli, ["status"])
    assert shown.exit_code == 0, shown.output
    for expected in ("Mode: workers", "Workers", "Queues", "polls", "Requests per company", "realm-a", "0 / 500",
                     "0 / 10", "Connections needing reconnect: none."):
        assert expected in shown.output, (expected, shown.output)
    password = pg_store.engine.url.password
    assert not password or password not in shown.output
