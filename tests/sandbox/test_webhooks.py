"""Tests of the sandbox's Intuit-style webhook delivery (bodies, signature, batching, retries, order)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from qbflow.sandbox.webhooks import WebhookConfig, WebhookDispatcher

TOKEN = "verifier-token-7f3c-secret"
URL = "http://receiver.test/hooks"


class Receiver:
    """A Starlette webhook endpoint that records requests and answers from a script.

    Each scripted answer is an HTTP status, or "hang" to never answer (awaits an event nobody sets).
    """

    def __init__(self, script: list[int | str] | None = None) -> None:
        self.script = list(script or [])
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.app = Starlette(routes=[Route("/hooks", self.endpoint, methods=["POST"])])

    async def endpoint(self, request: Request) -> Response:
        body = await request.body()
        self.requests.append((dict(request.headers), body))
        answer = self.script.pop(0) if self.script else 200
        if answer == "hang":
            await asyncio.Event().wait()  # never set: the dispatcher's timeout must fire
        return Response(status_code=int(answer))

    def transport(self) -> httpx.ASGITransport:
        return httpx.ASGITransport(app=self.app)

    @property
    def bodies(self) -> list[bytes]:
        return [body for _, body in self.requests]


def verify(body: bytes, signature: str, token: str = TOKEN) -> bool:
    expected = base64.b64encode(hmac.new(token.encode(), body, hashlib.sha256).digest()).decode()
    return hmac.compare_digest(expected, signature)


def make(receiver: Receiver, **overrides: Any) -> WebhookDispatcher:
    config = WebhookConfig(url=URL, verifier_token=TOKEN, **overrides)
    return WebhookDispatcher(config, transport=receiver.transport(), delay_scale=0.001)


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


# bodies and signature ---------------------------------------------------------------------------
async def test_legacy_body_headers_and_signature() -> None:
    receiver = Receiver()
    dispatcher = make(receiver)
    dispatcher.notify("9130", "Invoice", "130", "Create", "2025-01-01T19:04:05-08:00")
    dispatcher.notify("9130", "Invoice", "130", "Update", "2025-01-02T03:04:06.250Z")
    await dispatcher.flush()
    await dispatcher.stop()

    assert len(receiver.requests) == 1
    headers, body = receiver.requests[0]
    assert json.loads(body) == {
        "eventNotifications": [
            {
                "realmId": "9130",
                "dataChangeEvent": {
                    "entities": [
                        {"name": "Invoice", "id": "130", "operation": "Create",
                         "lastUpdated": "2025-01-02T03:04:05.000Z"},
                        {"name": "Invoice", "id": "130", "operation": "Update",
                         "lastUpdated": "2025-01-02T03:04:06.250Z"},
                    ]
                },
            }
        ]
    }
    assert verify(body, headers["intuit-signature"])
    assert not verify(body + b" ", headers["intuit-signature"])
    assert headers["content-type"] == "application/json; charset=utf-8"
    assert headers["user-agent"] == "intuit_notification_server/0.1"
    assert uuid.UUID(headers["intuit-t-id"])


async def test_cloudevents_body_and_signature() -> None:
    receiver = Receiver()
    dispatcher = make(receiver, format="cloudevents")
    dispatcher.notify("9130", "Invoice", "130", "Void", "2025-09-10T14:31:25.179-07:00")
    dispatcher.notify("4620", "Customer", "58", "Merge", "2025-09-10T21:31:26Z", deleted_id="7")
    dispatcher.notify("9130", "Estimate", "41", "Emailed", "2025-09-10T21:31:27Z")
    await dispatcher.flush()
    await dispatcher.stop()

    assert len(receiver.requests) == 1  # CloudEvents batches may mix realms
    headers, body = receiver.requests[0]
    assert headers["content-type"] == "application/cloudevents+json"
    assert verify(body, headers["intuit-signature"])
    events = json.loads(body)
    assert isinstance(events, list) and len(events) == 3
    first = events[0]
    assert set(first) == {"specversion", "id", "source", "type", "datacontenttype", "time",
                          "intuitentityid", "intuitaccountid", "data"}
    assert first["specversion"] == "1.0"
    assert uuid.UUID(first["id"])
    assert first["source"].startswith("intuit.") and len(base64.b64decode(first["source"][7:])) == 32
    assert first["type"] == "qbo.invoice.void.v1"
    assert first["datacontenttype"] == "application/json"
    assert first["time"] == "2025-09-10T21:31:25.179Z"
    assert first["intuitentityid"] == "130"
    assert first["intuitaccountid"] == "9130"
    assert first["data"] == {}
    assert events[1]["type"] == "qbo.customer.merged.v1"
    assert events[1]["intuitaccountid"] == "4620"
    assert events[1]["data"] == {"deletedId": "7"}
    assert events[2]["type"] == "qbo.estimate.emailed.v1"
    assert len({e["id"] for e in events}) == 3
    assert len({e["source"] for e in events}) == 1


async def test_unknown_operation_is_dropped_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    receiver = Receiver()
    dispatcher = make(receiver)
    dispatcher.notify("1", "Invoice", "1", "Voided", "2025-01-01T00:00:00Z")
    await dispatcher.flush()
    await dispatcher.stop()
    assert receiver.requests == []
    assert "Voided" in caplog.text


@pytest.mark.parametrize("bad", [{"format": "xml"}, {"timeout": 0}, {"batch_window": -1},
                                 {"max_attempts": 0}, {"url": ""}])
def test_config_is_validated(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        WebhookConfig(**{"url": URL, "verifier_token": TOKEN, **bad})


# batching ---------------------------------------------------------------------------------------
async def test_notifications_within_the_window_make_one_delivery() -> None:
    receiver = Receiver()
    dispatcher = make(receiver, batch_window=0.2)
    await dispatcher.start()
    try:
        for n in range(3):
            dispatcher.notify("9130", "Invoice", str(130 + n), "Create", "2025-01-01T00:00:00Z")
            await asyncio.sleep(0.01)
        await wait_until(lambda: len(receiver.requests) == 1)
        await asyncio.sleep(0.3)  # nothing else may follow
    finally:
        await dispatcher.stop()
    assert len(receiver.requests) == 1
    entities = json.loads(receiver.bodies[0])["eventNotifications"][0]["dataChangeEvent"]["entities"]
    assert [e["id"] for e in entities] == ["130", "131", "132"]
    assert dispatcher.deliveries[0]["events"] == 3


async def test_legacy_groups_events_by_realm() -> None:
    receiver = Receiver()
    dispatcher = make(receiver)
    dispatcher.notify("111", "Invoice", "1", "Create", "2025-01-01T00:00:00Z")
    dispatcher.notify("222", "Customer", "2", "Update", "2025-01-01T00:00:01Z")
    dispatcher.notify("111", "Payment", "3", "Delete", "2025-01-01T00:00:02Z")
    await dispatcher.flush()
    await dispatcher.stop()
    assert len(receiver.requests) == 1
    notes = json.loads(receiver.bodies[0])["eventNotifications"]
    assert [n["realmId"] for n in notes] == ["111", "222"]
    assert [(e["name"], e["id"]) for e in notes[0]["dataChangeEvent"]["entities"]] == [
        ("Invoice", "1"), ("Payment", "3")]
    assert [(e["name"], e["id"]) for e in notes[1]["dataChangeEvent"]["entities"]] == [("Customer", "2")]


@pytest.mark.parametrize("fmt", ["legacy", "cloudevents"])
async def test_more_than_100_events_are_split_in_order(fmt: str) -> None:
    receiver = Receiver()
    dispatcher = make(receiver, format=fmt)
    for n in range(250):
        dispatcher.notify("9130", "Item", str(n), "Update", "2025-01-01T00:00:00Z")
    await dispatcher.flush()
    await dispatcher.stop()

    def ids(body: bytes) -> list[str]:
        payload = json.loads(body)
        if fmt == "cloudevents":
            return [e["intuitentityid"] for e in payload]
        return [e["id"] for n in payload["eventNotifications"] for e in n["dataChangeEvent"]["entities"]]

    batches = [ids(body) for body in receiver.bodies]
    assert [len(b) for b in batches] == [100, 100, 50]
    assert [i for b in batches for i in b] == [str(n) for n in range(250)]


async def test_entity_filter() -> None:
    receiver = Receiver()
    dispatcher = make(receiver, entities=frozenset({"Invoice"}))
    dispatcher.notify("9130", "Customer", "1", "Create", "2025-01-01T00:00:00Z")
    dispatcher.notify("9130", "Invoice", "2", "Create", "2025-01-01T00:00:00Z")
    await dispatcher.flush()
    dispatcher.notify("9130", "Vendor", "3", "Create", "2025-01-01T00:00:00Z")
    await dispatcher.flush()
    await dispatcher.stop()
    assert len(receiver.requests) == 1
    entities = json.loads(receiver.bodies[0])["eventNotifications"][0]["dataChangeEvent"]["entities"]
    assert [e["name"] for e in entities] == ["Invoice"]


async def test_unconfigured_dispatcher_sends_nothing() -> None:
    receiver = Receiver()
    dispatcher = make(receiver)
    dispatcher.configure(None)
    dispatcher.notify("9130", "Invoice", "1", "Create", "2025-01-01T00:00:00Z")
    await dispatcher.flush()
    await dispatcher.stop()
    assert receiver.requests == []


# retries and order ------------------------------------------------------------------------------
async def test_retry_after_500_until_success_with_identical_body() -> None:
    receiver = Receiver([500, 503, 200])
    dispatcher = make(receiver, format="cloudevents")
    dispatcher.notify("9130", "Invoice", "130", "Create", "2025-01-01T00:00:00Z")
    await dispatcher.flush()
    await dispatcher.stop()

    assert len(receiver.requests) == 3
    assert len(set(receiver.bodies)) == 1  # same bytes, hence the same event ids
    assert len({h["intuit-signature"] for h, _ in receiver.requests}) == 1
    assert [d["status"] for d in dispatcher.deliveries] == [500, 503, 200]
    assert [d["attempt"] for d in dispatcher.deliveries] == [1, 2, 3]
    assert len({d["id"] for d in dispatcher.deliveries}) == 1
    assert all(d["body"] == receiver.bodies[0].decode() for d in dispatcher.deliveries)


async def test_retry_after_timeout_until_success() -> None:
    receiver = Receiver(["hang", "hang", 200])
    dispatcher = make(receiver, timeout=0.2)
    dispatcher.notify("9130", "Invoice", "130", "Create", "2025-01-01T00:00:00Z")
    started = time.monotonic()
    await dispatcher.flush()
    elapsed = time.monotonic() - started
    await dispatcher.stop()

    assert len(receiver.requests) == 3
    assert len(set(receiver.bodies)) == 1
    statuses = [d["status"] for d in dispatcher.deliveries]
    assert statuses[:2] == ["timeout after 0.2s"] * 2 and statuses[2] == 200
    assert [d["ok"] for d in dispatcher.deliveries] == [False, False, True]
    assert 0.4 <= elapsed < 3


async def test_connection_error_is_retried() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200)

    dispatcher = WebhookDispatcher(WebhookConfig(url=URL, verifier_token=TOKEN),
                                   transport=httpx.MockTransport(handler), delay_scale=0.001)
    dispatcher.notify("9130", "Invoice", "1", "Create", "2025-01-01T00:00:00Z")
    await dispatcher.flush()
    await dispatcher.stop()
    assert calls == 2
    assert str(dispatcher.deliveries[0]["status"]).startswith("ConnectError")
    assert dispatcher.deliveries[1]["status"] == 200


async def test_later_events_wait_for_the_failing_delivery() -> None:
    receiver = Receiver([500, 500, 500, 200])
    config = WebhookConfig(url=URL, verifier_token=TOKEN, batch_window=0.02)
    # Retries 0 s, 0.1 s, 0.2 s apart: the second batch is formed while the first is still failing.
    dispatcher = WebhookDispatcher(config, transport=receiver.transport(), delay_scale=0.01)
    await dispatcher.start()
    try:
        dispatcher.notify("9130", "Invoice", "1", "Create", "2025-01-01T00:00:00Z")
        await wait_until(lambda: len(receiver.requests) >= 1)
        dispatcher.notify("9130", "Invoice", "2", "Update", "2025-01-01T00:00:01Z")
        await wait_until(lambda: len(receiver.requests) == 5)
    finally:
        await dispatcher.stop()
    first, second = receiver.bodies[0], receiver.bodies[4]
    assert receiver.bodies[:4] == [first] * 4
    assert b'"id":"2"' in second and b'"id":"2"' not in first
    assert [d["status"] for d in dispatcher.deliveries] == [500, 500, 500, 200, 200]


async def test_gives_up_after_max_attempts_and_moves_on() -> None:
    receiver = Receiver([500, 500, 500])
    dispatcher = make(receiver, max_attempts=3)
    dispatcher.notify("9130", "Invoice", "1", "Create", "2025-01-01T00:00:00Z")
    await dispatcher.flush()
    dispatcher.notify("9130", "Invoice", "2", "Create", "2025-01-01T00:00:00Z")
    await dispatcher.flush()
    await dispatcher.stop()
    assert len(receiver.requests) == 4
    assert [d["gave_up"] for d in dispatcher.deliveries] == [False, False, True, False]
    assert dispatcher.deliveries[-1]["status"] == 200


async def test_stop_delivers_what_is_still_queued() -> None:
    receiver = Receiver()
    dispatcher = make(receiver, batch_window=30)
    await dispatcher.start()
    dispatcher.notify("9130", "Invoice", "1", "Create", "2025-01-01T00:00:00Z")
    await dispatcher.stop()
    assert len(receiver.requests) == 1


async def test_verifier_token_never_in_delivery_log() -> None:
    receiver = Receiver([500, 200])
    dispatcher = make(receiver)
    dispatcher.notify("9130", "Invoice", "1", "Create", "2025-01-01T00:00:00Z")
    await dispatcher.flush()
    await dispatcher.stop()
    assert len(dispatcher.deliveries) == 2
    assert TOKEN not in json.dumps(dispatcher.deliveries)
    assert TOKEN not in repr(dispatcher.config)
    for entry in dispatcher.deliveries:
        assert {"id", "attempt", "status", "at", "events", "body"} <= set(entry)


# a real HTTP receiver ---------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def live_receiver() -> Iterator[tuple[Receiver, str]]:
    receiver = Receiver()
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(receiver.app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn receiver did not start")
        time.sleep(0.02)
    try:
        yield receiver, f"http://127.0.0.1:{port}/hooks"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


async def test_delivery_to_a_real_uvicorn_receiver(live_receiver: tuple[Receiver, str]) -> None:
    receiver, url = live_receiver
    receiver.script = [500, 200]
    dispatcher = WebhookDispatcher(WebhookConfig(url=url, verifier_token=TOKEN, batch_window=0.05),
                                   delay_scale=0.001)
    await dispatcher.start()
    try:
        dispatcher.notify("9130", "Invoice", "130", "Create", "2025-01-01T00:00:00Z")
        await wait_until(lambda: len(receiver.requests) == 2)
    finally:
        await dispatcher.stop()
    (headers1, body1), (headers2, body2) = receiver.requests
    assert body1 == body2
    assert verify(body2, headers2["intuit-signature"])
    assert json.loads(body2)["eventNotifications"][0]["realmId"] == "9130"
    assert [d["status"] for d in dispatcher.deliveries] == [500, 200]


async def test_large_batches_are_split_by_size(monkeypatch: pytest.MonkeyPatch) -> None:
    from qbflow.sandbox import webhooks

    monkeypatch.setattr(webhooks, "MAX_BATCH_BYTES", 2000)  # stands in for Intuit's ~1 MB
    receiver = Receiver()
    dispatcher = make(receiver, format="cloudevents")
    for n in range(20):
        dispatcher.notify("9130", "Invoice", str(n), "Update", "2025-01-01T00:00:00Z")
    await dispatcher.flush()
    await dispatcher.stop()
    assert len(receiver.requests) > 1
    assert all(len(body) <= 2000 for body in receiver.bodies)
    delivered = [e["intuitentityid"] for body in receiver.bodies for e in json.loads(body)]
    assert delivered == [str(n) for n in range(20)]
