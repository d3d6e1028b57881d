"""Webhook workflows (`trigger: {kind: webhook}`): `POST /hooks/<id>` stores the delivery as an event and a queued
run before it answers 202; unsigned, forged, oversized, wrongly typed and malformed deliveries are refused with
their status and store nothing; the same delivery id twice makes one run; the secret is encrypted at rest, shown
once, rotatable and never logged. On SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import re
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, text

from qbflow.engine.hooks import sign
from qbflow.engine.stored import ensure_hook, store_workflow
from qbflow.engine.workflow import WebhookTrigger, load_workflow_text
from qbflow.server import ServerConfig, create_app
from qbflow.settings import Settings
from qbflow.store import Event, Run, RunStore, SecretBox, Store, open_store
from qbflow.store.hooks import KEEP_DELIVERIES, HookRecord, HookStore
from qbflow.store.models import HookDelivery
from tests.server.conftest import API_TOKEN, SERVER_BASE, api_token_checker
from tests.server.test_dashboard import Dashboard, dashboard  # noqa: F401 - the fixture
from tests.server.test_serve import serve_env, serving, stop, url_in

SHOP = textwrap.dedent("""\
    name: Shop order
    trigger:
      kind: webhook
      delivery_id: "{{ body.id }}"
      max_body: 2KB
    steps:
      - id: note
        action: log
        input:
          message: "order {{ trigger.body.id }}"
    """)


def add_hook(store: Store, yaml_text: str = SHOP) -> tuple[HookRecord, str]:
    """Store a webhook workflow as `qbflow workflow add` does: (its hook, the secret shown once)."""
    record, _ = store_workflow(RunStore(store.engine), load_workflow_text(yaml_text), None)
    made = ensure_hook(store.hooks, record)
    assert made is not None and made[1] is not None
    return made[0], made[1]


def counts(store: Store) -> tuple[int, int, int]:
    """(events, runs, deliveries) stored."""
    with store.engine.connect() as db:
        return tuple(db.execute(select(func.count()).select_from(table)).scalar_one()  # type: ignore[return-value]
                     for table in (Event, Run, HookDelivery))


async def deliver(client: httpx.AsyncClient, hook: HookRecord, body: bytes, headers: dict[str, str],
                  content_type: str = "application/json", path: str | None = None) -> httpx.Response:
    return await client.post(path or hook.path, content=body, headers={"Content-Type": content_type, **headers})


@pytest.fixture
async def client(app: FastAPI) -> Any:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=SERVER_BASE) as client:
        yield client


ORDER = json.dumps({"id": "order-1", "total": 42.5}).encode()


@pytest.mark.parametrize(("case", "status", "reason"), [
    ("unsigned", 401, "no X-Qbflow-Signature header"),
    ("forged", 401, "X-Qbflow-Signature does not match the body"),
    ("signed with another secret", 401, "X-Qbflow-Signature does not match the body"),
    ("not hex", 401, "X-Qbflow-Signature is not hex"),
    ("oversized", 413, "the body is over 2048 bytes"),
    ("oversized, chunked", 413, "the body is over 2048 bytes"),
    ("wrong content type", 415, "content type 'text/plain' is not application/json or "
                                "application/x-www-form-urlencoded"),
    ("malformed JSON", 422, "the body is not JSON (Expecting ',' delimiter at line 1 column 18)"),
    ("no delivery id", 422, "no delivery id: {{ body.id }} gives nothing (undefined: 'dict object' has no "
                           "attribute 'id')"),
    ("unknown hook", 404, "no such hook"),
])
async def test_bad_deliveries_are_refused_with_their_status_and_store_nothing(
        store: Store, app: FastAPI, client: httpx.AsyncClient, case: str, status: int, reason: str) -> None:
    hook, secret = add_hook(store)
    body, headers, content_type, path = ORDER, sign(secret, ORDER), "application/json", None
    if case == "unsigned":
        headers = {}
    elif case == "forged":
        body = json.dumps({"id": "order-1", "total": 4250}).encode()  # the signature is of the other body
    elif case == "signed with another secret":
        headers = sign("not-the-secret", body)
    elif case == "not hex":
        headers = {"X-Qbflow-Signature": "zz" * 32}
    elif case == "oversized":
        body = json.dumps({"id": "big", "pad": "x" * 3000}).encode()
        headers = sign(secret, body)
    elif case == "wrong content type":
        content_type = "text/plain"
    elif case == "malformed JSON":
        body = b'{"id": "order-1" "total": 1}'
        headers = sign(secret, body)
    elif case == "no delivery id":
        body = b'{"total": 1}'
        headers = sign(secret, body)
    elif case == "unknown hook":
        path = "/hooks/" + "A" * 24

    if case == "oversized, chunked":  # no Content-Length: the limit holds as the body streams in
        big = json.dumps({"id": "big", "pad": "x" * 3000}).encode()

        async def chunks() -> Any:
            for start in range(0, len(big), 500):
                yield big[start:start + 500]

        answer = await client.post(hook.path, content=chunks(),
                                   headers={"Content-Type": "application/json", **sign(secret, big)})
    else:
        answer = await deliver(client, hook, body, headers, content_type, path)
    assert (answer.status_code, answer.json()) == (status, {"accepted": False, "detail": reason})
    assert counts(store) == (0, 0, 0)


async def test_a_signed_delivery_is_stored_then_answered_and_its_id_twice_makes_one_run(
        store: Store, runs: RunStore, client: httpx.AsyncClient) -> None:
    hook, secret = add_hook(store)
    first = await deliver(client, hook, ORDER, {**sign(secret, ORDER), "X-Shop": "demo"},
                          path=hook.path + "?source=shop&tag=a&tag=b")
    assert first.status_code == 202
    run_id = first.json()["run_id"]
    assert first.json() == {"accepted": True, "run_id": run_id}
    again = await deliver(client, hook, ORDER, sign(secret, ORDER))  # the sender retried
    assert (again.status_code, again.json()) == (202, {"accepted": True, "duplicate": True})
    assert counts(store) == (1, 1, 2)

    run = runs.get_run(run_id)
    assert run.status == "queued" and run.event is not None
    trigger = run.event.record
    assert trigger["body"] == {"id": "order-1", "total": 42.5}
    assert trigger["query"] == {"source": "shop", "tag": ["a", "b"]}
    assert trigger["headers"]["x-shop"] == "demo" and "x-qbflow-signature" not in trigger["headers"]
    assert datetime.fromisoformat(trigger["received_at"]).tzinfo is not None
    deliveries = store.hooks.recent_deliveries(hook.id)
    assert [(d.outcome, d.delivery_id, d.run_id) for d in deliveries] == [
        ("duplicate", "order-1", None), ("accepted", "order-1", run_id)]
    listed = store.hooks.list()
    assert [(h.workflow, h.deliveries, h.last_delivery.outcome if h.last_delivery else None) for h in listed] == [
        ("Shop order", 2, "duplicate")]


async def test_without_a_delivery_id_every_delivery_is_its_own_run(store: Store, client: httpx.AsyncClient) -> None:
    hook, secret = add_hook(store, SHOP.replace('  delivery_id: "{{ body.id }}"\n', ""))
    answers = [await deliver(client, hook, ORDER, sign(secret, ORDER)) for _ in range(2)]
    assert [a.status_code for a in answers] == [202, 202]
    assert answers[0].json()["run_id"] != answers[1].json()["run_id"]
    assert counts(store) == (2, 2, 2)


async def test_form_bodies_and_a_header_delivery_id(store: Store, runs: RunStore, client: httpx.AsyncClient) -> None:
    hook, secret = add_hook(store, SHOP.replace('"{{ body.id }}"', '"header:X-Delivery-Id"'))
    body = b"name=Tour+Gardens&item=a&item=b&empty="
    headers = {**sign(secret, body), "X-Delivery-Id": "d-1"}
    answer = await deliver(client, hook, body, headers, "application/x-www-form-urlencoded; charset=utf-8")
    assert answer.status_code == 202
    event = runs.get_run(answer.json()["run_id"]).event
    assert event is not None and event.record["body"] == {"name": "Tour Gardens", "item": ["a", "b"], "empty": ""}
    assert (await deliver(client, hook, body, headers, "application/x-www-form-urlencoded")).json()["duplicate"]
    missing = await deliver(client, hook, body, sign(secret, body), "application/x-www-form-urlencoded")
    assert (missing.status_code, missing.json()["detail"]) == (422, "no delivery id: the X-Delivery-Id header is "
                                                                    "missing")


async def test_github_and_shopify_signatures(store: Store, client: httpx.AsyncClient) -> None:
    github, github_secret = add_hook(store, SHOP.replace("kind: webhook", "kind: webhook\n  signature_header: "
                                                         "X-Hub-Signature-256\n  signature_prefix: sha256="))
    digest = hmac.new(github_secret.encode(), ORDER, hashlib.sha256).hexdigest()
    assert (await deliver(client, github, ORDER, {"X-Hub-Signature-256": f"sha256={digest}"})).status_code == 202
    unprefixed = await deliver(client, github, ORDER, {"X-Hub-Signature-256": digest})
    assert (unprefixed.status_code, unprefixed.json()["detail"]) == (401, "X-Hub-Signature-256 does not start with "
                                                                          "'sha256='")

    shopify, shopify_secret = add_hook(store, SHOP.replace("name: Shop order", "name: Shopify order").replace(
        "kind: webhook", "kind: webhook\n  signature_header: X-Shopify-Hmac-Sha256\n  signature_encoding: base64"))
    signature = base64.b64encode(hmac.new(shopify_secret.encode(), ORDER, hashlib.sha256).digest()).decode()
    assert (await deliver(client, shopify, ORDER, {"X-Shopify-Hmac-Sha256": signature})).status_code == 202


async def test_stripe_signatures_and_their_age(store: Store, client: httpx.AsyncClient) -> None:
    hook, secret = add_hook(store, SHOP.replace("kind: webhook", "kind: webhook\n  auth: stripe"))
    trigger = WebhookTrigger(kind="webhook", auth="stripe")
    assert (await deliver(client, hook, ORDER, sign(secret, ORDER, trigger))).status_code == 202
    old = sign(secret, ORDER, trigger, now=datetime.fromtimestamp(time.time() - 600, UTC))
    answer = await deliver(client, hook, ORDER, old)
    assert (answer.status_code, answer.json()["detail"]) == (401, "Stripe-Signature is older than 300 s (or from "
                                                                  "the future)")


async def test_bearer_tokens(store: Store, client: httpx.AsyncClient) -> None:
    hook, secret = add_hook(store, SHOP.replace("kind: webhook", "kind: webhook\n  auth: bearer"))
    assert (await deliver(client, hook, ORDER, {"Authorization": f"Bearer {secret}"})).status_code == 202
    for headers, reason in (({}, "no Authorization header"), ({"Authorization": "Bearer nope"}, "wrong bearer token"),
                            ({"Authorization": f"Basic {secret}"}, "wrong bearer token")):
        answer = await deliver(client, hook, ORDER, headers)
        assert (answer.status_code, answer.json()["detail"]) == (401, reason)
    assert counts(store) == (1, 1, 1)


async def test_rotating_the_secret_refuses_the_old_one_and_updates_keep_the_url(
        store: Store, client: httpx.AsyncClient) -> None:
    hook, old = add_hook(store)
    record, verb = store_workflow(RunStore(store.engine), load_workflow_text(SHOP.replace("order {{", "Order {{")),
                                  None)
    assert verb == "updated" and ensure_hook(store.hooks, record) == (hook, None)  # same URL, secret not shown again
    rotated, new = store.hooks.rotate(hook.workflow_id)
    assert rotated.hook_id == hook.hook_id and new != old and rotated.rotated_at is not None
    assert (await deliver(client, hook, ORDER, sign(old, ORDER))).status_code == 401
    assert (await deliver(client, hook, ORDER, sign(new, ORDER))).status_code == 202
    _, chosen = store.hooks.rotate(hook.workflow_id, "shopify-app-secret")  # one the sender made
    assert (await deliver(client, hook, b'{"id": 2}', sign(chosen, b'{"id": 2}'))).status_code == 202


async def test_a_disabled_workflow_refuses_with_409_after_the_signature(
        store: Store, runs: RunStore, client: httpx.AsyncClient) -> None:
    hook, secret = add_hook(store)
    runs.set_enabled("Shop order", False)
    assert (await deliver(client, hook, ORDER, {})).status_code == 401
    answer = await deliver(client, hook, ORDER, sign(secret, ORDER))
    assert (answer.status_code, answer.json()["detail"]) == (409, "workflow 'Shop order' is disabled")
    assert counts(store) == (0, 0, 0)


async def test_the_secret_is_encrypted_at_rest_and_never_logged(
        store: Store, app: FastAPI, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        hook, secret = add_hook(store)
        await deliver(client, hook, ORDER, sign(secret, ORDER))
        await deliver(client, hook, ORDER, {"X-Qbflow-Signature": secret})  # a sender that sent the secret itself
        await deliver(client, hook, ORDER, {"X-Qbflow-Signature": "00"})
    assert caplog.records and all(secret not in record.getMessage() for record in caplog.records)
    with store.engine.connect() as db:
        rows = db.execute(text("SELECT * FROM hooks")).all()
        stored = " ".join(str(value) for row in rows for value in row)
        events = " ".join(str(row) for row in db.execute(text("SELECT record FROM events")).all())
    assert len(rows) == 1 and secret not in stored and store.box.decrypt(rows[0].secret_enc) == secret
    assert secret not in events and secret not in repr(store.hooks.target(hook.hook_id))


def test_secrets_are_reencrypted_after_a_key_rotation(db_url: str) -> None:
    old_key, new_key = SecretBox.generate_key(), SecretBox.generate_key()
    with open_store(url=db_url, box=SecretBox([old_key])) as store:
        hook, secret = add_hook(store)
        assert HookStore(store.engine, SecretBox([new_key, old_key])).reencrypt_all() == 1
        assert HookStore(store.engine, SecretBox([new_key])).target(hook.hook_id).secret == secret  # type: ignore[union-attr]


async def test_api_lists_hooks_without_secrets(store: Store, api: httpx.AsyncClient,
                                               client: httpx.AsyncClient) -> None:
    hook, secret = add_hook(store)
    await deliver(client, hook, ORDER, sign(secret, ORDER))
    await deliver(client, hook, ORDER, {})
    answer = await api.get("/api/hooks")
    assert answer.status_code == 200 and secret not in answer.text
    (listed,) = answer.json()
    assert listed["workflow"] == "Shop order" and listed["url"] == f"{SERVER_BASE}/hooks/{hook.hook_id}"
    assert [d["outcome"] for d in listed["recent_deliveries"]] == ["accepted"]
    assert [r["status"] for r in listed["recent_refusals"]] == [401]


async def test_api_add_shows_the_new_secret_once(api: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    first = await api.post("/api/workflows", content=SHOP, headers={"Content-Type": "text/yaml"})
    assert first.status_code == 201
    hook = first.json()["hook"]
    assert hook["url"].startswith(f"{SERVER_BASE}/hooks/") and hook["secret"]
    again = await api.post("/api/workflows", content=SHOP, headers={"Content-Type": "text/yaml"})
    assert again.status_code == 200 and again.json()["hook"] == {"url": hook["url"], "secret": None}
    body = b'{"id": "o-9"}'
    path = hook["url"].removeprefix(SERVER_BASE)
    answer = await client.post(path, content=body, headers={"Content-Type": "application/json",
                                                            **sign(hook["secret"], body)})
    assert answer.status_code == 202


class _Waker:
    def __init__(self) -> None:
        self.woken = 0

    def request_runs(self) -> None:
        self.woken += 1


async def test_an_engine_in_the_server_is_woken_for_each_new_run(store: Store, settings: Settings) -> None:
    waker = _Waker()
    app = create_app(ServerConfig(store=store, settings=settings, api_token=api_token_checker(), engine=waker))
    hook, secret = add_hook(store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=SERVER_BASE) as client:
        assert (await deliver(client, hook, ORDER, sign(secret, ORDER))).status_code == 202
        assert (await deliver(client, hook, ORDER, sign(secret, ORDER))).json()["duplicate"]
    assert waker.woken == 1  # a duplicate makes no run to claim


BURST = 1000


def test_a_burst_to_a_server_without_engine_is_stored_then_run(db_url: str, tmp_path: Path) -> None:
    """1,000 signed deliveries at once to `qbflow serve --no-engine`: 1,000 events and queued runs; then
    `qbflow run --once` runs all 1,000."""
    key = SecretBox.generate_key()
    env = serve_env(tmp_path, QBFLOW_DATABASE_URL=db_url, QBFLOW_SECRET_KEY=key, QBFLOW_API_TOKEN=API_TOKEN)
    with open_store(url=db_url, box=SecretBox([key])) as store:
        hook, secret = add_hook(store, SHOP.replace("  max_body: 2KB\n", ""))

    with serving(env, "--no-engine") as (process, lines):
        url = url_in(lines)

        async def burst() -> list[int]:
            limits = httpx.Limits(max_connections=50)
            async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
                async def one(n: int) -> int:
                    body = json.dumps({"id": f"order-{n}", "n": n}).encode()
                    try:
                        answer = await deliver(client, hook, body, sign(secret, body))
                    except (httpx.ReadError, httpx.RemoteProtocolError):
                        # A kept-alive connection the server closed as the request went out (HTTP/1.1's race,
                        # likelier on a busy machine): senders retry, and the delivery id keeps it one run.
                        answer = await deliver(client, hook, body, sign(secret, body))
                    return answer.status_code
                return await asyncio.gather(*(one(n) for n in range(BURST)))

        statuses = asyncio.run(burst())
        stop(process)
    assert statuses == [202] * BURST
    with open_store(url=db_url, box=SecretBox([key])) as store:
        events, runs, deliveries = counts(store)
        assert (events, runs) == (BURST, BURST) and KEEP_DELIVERIES <= deliveries < KEEP_DELIVERIES + 64  # pruned
        assert runs_by_status(store) == {"queued": BURST}

    done = subprocess.run([sys.executable, "-m", "qbflow.cli", "run", "--once", "--plain"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    with open_store(url=db_url, box=SecretBox([key])) as store:
        assert runs_by_status(store) == {"succeeded": BURST}


def runs_by_status(store: Store) -> dict[str, int]:
    with store.engine.connect() as db:
        return {status: n for status, n in db.execute(select(Run.status, func.count()).group_by(Run.status))}


async def test_the_dashboard_shows_a_new_secret_once_then_urls_and_deliveries(
        dashboard: Dashboard) -> None:  # noqa: F811 - the fixture imported above
    await dashboard.login()
    csrf = await dashboard.csrf("/workflows")
    uploaded = await dashboard.client.post("/workflows/upload", data={"csrf": csrf, "enable": "1"},
                                           files={"file": ("shop.yaml", SHOP.encode())})
    assert uploaded.status_code == 200 and uploaded.headers["cache-control"] == "no-store"
    secret = re.search(r"<p><code>([\w-]{40,})</code></p>", uploaded.text).group(1)  # type: ignore[union-attr]
    (hook,) = dashboard.store.hooks.list()
    async with httpx.AsyncClient(transport=dashboard.client._transport, base_url=SERVER_BASE) as sender:
        assert (await deliver(sender, hook, ORDER, sign(secret, ORDER))).status_code == 202
        assert (await deliver(sender, hook, ORDER, sign("guess", ORDER))).status_code == 401

    page = await dashboard.page("/hooks")
    assert secret not in page and f"/hooks/{hook.hook_id}</code>" in page
    workflow_page = await dashboard.page("/workflows/Shop%20order")
    assert f"/hooks/{hook.hook_id}" in workflow_page and secret not in workflow_page
    assert "<td>accepted</td><td>order-1</td>" in page and "X-Qbflow-Signature does not match the body" in page
    rotated = await dashboard.client.post("/hooks", data={"csrf": await dashboard.csrf("/hooks"),
                                                          "workflow": "Shop order"})
    new = re.search(r"<p><code>([\w-]{40,})</code></p>", rotated.text).group(1)  # type: ignore[union-attr]
    assert rotated.status_code == 200 and new != secret
    assert dashboard.store.hooks.target(hook.hook_id).secret == new  # type: ignore[union-attr]
    assert secret not in await dashboard.page("/hooks") and new not in await dashboard.page("/hooks")


async def test_an_engine_in_the_server_runs_the_delivery_at_once(store: Store, settings: Settings) -> None:
    from qbflow.app.run import build_engine

    parts = await build_engine(store, clients=_no_quickbooks)
    # An hour between ticks: only the receiver's wake-up can make the engine claim the run.
    app = create_app(ServerConfig(store=store, settings=settings, api_token=api_token_checker(), engine=parts.engine,
                                  run_engine=True, engine_tick=3600))
    hook, secret = add_hook(store)
    runs = RunStore(store.engine)
    async with app.router.lifespan_context(app), \
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=SERVER_BASE) as client:
        run_id = (await deliver(client, hook, ORDER, sign(secret, ORDER))).json()["run_id"]
        for _ in range(500):
            if runs.get_run(run_id).status == "succeeded":
                break
            await asyncio.sleep(0.02)
    assert runs.get_run(run_id).status == "succeeded"


async def _no_quickbooks(name: str) -> Any:
    raise AssertionError(f"a log step needs no QuickBooks client (asked for {name!r})")


def test_with_workers_the_runs_job_is_enqueued_with_the_event(db_url: str, settings: Settings) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("workers need PostgreSQL")
    from qbflow.engine.workers import enqueue_runs, ensure_schema

    with open_store(url=db_url, box=SecretBox([SecretBox.generate_key()])) as store:
        ensure_schema(store.engine)
        app = create_app(ServerConfig(store=store, settings=settings, api_token=api_token_checker(),
                                      on_runs=enqueue_runs))
        hook, secret = add_hook(store)

        async def post() -> httpx.Response:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=SERVER_BASE) as client:
                await deliver(client, hook, ORDER, sign(secret, ORDER))  # again below: no second job
                return await deliver(client, hook, ORDER, sign(secret, ORDER))

        assert asyncio.run(post()).json()["duplicate"]
        with store.engine.connect() as db:
            jobs = db.execute(text("SELECT task_name, args FROM procrastinate_jobs")).all()
            (run_id,) = db.execute(select(Run.id)).scalars().all()
    assert [(task, args) for task, args in jobs] == [("qbflow.run", {"run_id": run_id})]


def test_cli_add_shows_the_secret_once_list_never_and_rotate_makes_a_new_one(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from qbflow.cli import app as cli

    env = {"QBFLOW_DATA_DIR": str(tmp_path / "data"), "QBFLOW_SECRET_KEY": SecretBox.generate_key(),
           "QBFLOW_PUBLIC_URL": "https://qbflow.example.com", "COLUMNS": "250"}
    path = tmp_path / "shop.yaml"
    path.write_text(SHOP)

    def qbflow(*args: str, stdin: str | None = None) -> str:
        result = CliRunner().invoke(cli, list(args), env=env, input=stdin)
        assert result.exit_code == 0, result.output
        return result.output

    added = qbflow("workflow", "add", str(path))
    url = re.search(r"URL: (https://qbflow\.example\.com/hooks/[\w-]{24})\n", added).group(1)  # type: ignore[union-attr]
    secret = re.search(r"secret: ([\w-]{43})\n", added).group(1)  # type: ignore[union-attr]
    again = qbflow("workflow", "add", str(path))  # an update keeps the URL and does not show the secret
    assert f"URL: {url}" in again and "secret:" not in again
    listed = qbflow("hooks", "list")
    assert url in listed and secret not in listed
    rotated = qbflow("hooks", "rotate", "Shop order")
    new = re.search(r"secret: ([\w-]{43})\n", rotated).group(1)  # type: ignore[union-attr]
    assert new != secret and "the old one no longer works" in rotated
    chosen = qbflow("hooks", "rotate", "Shop order", "--secret-stdin", stdin="shpss_from_shopify\n")
    assert "shpss_from_shopify" not in chosen and "secret:" not in chosen
    with open_store(Settings(data_dir=tmp_path / "data", secret_key=env["QBFLOW_SECRET_KEY"])) as store:
        (hook,) = store.hooks.list()
        assert store.hooks.target(hook.hook_id).secret == "shpss_from_shopify"  # type: ignore[union-attr]
    refused = CliRunner().invoke(cli, ["hooks", "rotate", "Nope"], env=env)
    assert refused.exit_code == 1 and "No workflow named 'Nope'" in refused.output
