"""Webhook signatures and notification bodies, as the sandbox's WebhookDispatcher sends them (both formats)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import httpx
import pytest

from qbflow.qbo.webhooks import ChangeEvent, InvalidNotification, parse_notification, verify_signature
from qbflow.sandbox.webhooks import WebhookConfig, WebhookDispatcher, sign

VERIFIER = "verifier-token-0123456789"


class Receiver:
    """An ASGI endpoint that keeps what it receives and answers 200."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, dict[str, str]]] = []

    async def __call__(self, scope, receive, send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        self.received.append((body, headers))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def delivered(format: str) -> tuple[bytes, dict[str, str]]:
    receiver = Receiver()
    config = WebhookConfig(url="http://receiver.test/hook", verifier_token=VERIFIER, format=format, batch_window=0)
    dispatcher = WebhookDispatcher(config, transport=httpx.ASGITransport(app=receiver))
    dispatcher.notify("9130000001", "Invoice", "130", "Create", "2025-09-08T13:52:31-07:00")
    dispatcher.notify("9130000001", "Customer", "58", "Update", "2025-09-08T13:52:32.250-07:00")
    dispatcher.notify("9130000002", "JournalEntry", "7", "Delete", "2025-09-08T20:52:33Z")
    dispatcher.notify("9130000002", "Customer", "12", "Merge", "2025-09-08T20:52:34Z", deleted_id="13")
    dispatcher.notify("9130000001", "Invoice", "131", "Void", "2025-09-08T20:52:35Z")
    dispatcher.notify("9130000001", "Invoice", "130", "Emailed", "2025-09-08T20:52:36Z")
    await dispatcher.flush()
    await dispatcher.stop()
    [(body, headers)] = receiver.received
    return body, headers


@pytest.mark.parametrize("format", ["legacy", "cloudevents"])
async def test_sandbox_deliveries_verify_and_parse(format: str) -> None:
    body, headers = await delivered(format)
    assert verify_signature(body, headers["intuit-signature"], VERIFIER)
    events = parse_notification(body)
    sent = [
        ("9130000001", "Invoice", "130", "Create"),
        ("9130000001", "Customer", "58", "Update"),
        ("9130000002", "JournalEntry", "7", "Delete"),
        ("9130000002", "Customer", "12", "Merge"),
        ("9130000001", "Invoice", "131", "Void"),
        ("9130000001", "Invoice", "130", "Emailed"),
    ]
    if format == "legacy":  # one eventNotification per realm, realms in order of first appearance
        sent = sorted(sent, key=lambda event: event[0])
    assert [(e.realm_id, e.entity, e.entity_id, e.operation) for e in events] == sent
    assert events[0].last_updated == datetime(2025, 9, 8, 20, 52, 31, tzinfo=UTC)
    merge = next(e for e in events if e.operation == "Merge")
    assert merge.deleted_id == "13"
    if format == "cloudevents":
        ids = [e.event_id for e in events]
        assert all(ids) and len(set(ids)) == len(ids)
        assert parse_notification(body.decode()) == events  # str bodies too
    else:
        assert all(e.event_id is None for e in events)


async def test_a_changed_body_or_another_token_fails() -> None:
    body, headers = await delivered("legacy")
    signature = headers["intuit-signature"]
    assert not verify_signature(body.replace(b"130", b"131", 1), signature, VERIFIER)
    assert not verify_signature(body + b" ", signature, VERIFIER)
    assert not verify_signature(body, signature, "another-verifier-token")
    assert not verify_signature(body, signature, "")


@pytest.mark.parametrize("signature", [None, "", "   ", "not base64 at all!!", "AAAA", "%%%", "=" * 8,
                                       base64.b64encode(b"\x00" * 32).decode()])
def test_missing_or_garbage_signature_is_false(signature) -> None:
    assert verify_signature(b'{"eventNotifications":[]}', signature, VERIFIER) is False


def test_signature_matches_the_sandboxs_sign() -> None:
    body = json.dumps({"eventNotifications": []}).encode()
    assert verify_signature(body, sign(body, VERIFIER), VERIFIER)
    assert verify_signature(body, " " + sign(body, VERIFIER) + " ", VERIFIER)  # header whitespace


def test_cloudevents_time_with_nanoseconds_and_entity_spelling() -> None:
    body = [{"specversion": "1.0", "id": "88cd52aa-1", "source": "intuit.x", "type": "qbo.salesreceipt.updated.v1",
             "time": "2025-09-10T21:31:25.179851517Z", "intuitentityid": "1234", "intuitaccountid": "310687",
             "data": {}}]
    [event] = parse_notification(json.dumps(body).encode())
    assert event == ChangeEvent(realm_id="310687", entity="SalesReceipt", entity_id="1234", operation="Update",
                                last_updated=datetime(2025, 9, 10, 21, 31, 25, 179851, tzinfo=UTC),
                                event_id="88cd52aa-1")


def test_single_cloudevent_and_foreign_events() -> None:
    one = {"specversion": "1.0", "id": "e1", "type": "qbo.account.created.v1", "time": "2025-09-10T21:31:25Z",
           "intuitentityid": "1", "intuitaccountid": "310687"}
    other = {"specversion": "1.0", "id": "e2", "type": "com.example.other", "intuitaccountid": "310687"}
    assert [e.entity for e in parse_notification(one)] == ["Account"]
    assert parse_notification([one, other, "junk"]) == parse_notification(one)


@pytest.mark.parametrize("body", [b"", b"not json", b'{"something": 1}', b"42", "\xff".encode("latin-1")])
def test_bodies_that_are_no_notification_raise(body: bytes) -> None:
    with pytest.raises(InvalidNotification):
        parse_notification(body)


def test_legacy_entries_without_ids_are_skipped() -> None:
    body = {"eventNotifications": [
        {"realmId": "1", "dataChangeEvent": {"entities": [{"name": "Invoice", "operation": "Create"},
                                                          {"name": "Invoice", "id": "5", "operation": "Create",
                                                           "lastUpdated": "garbage"}]}},
        {"dataChangeEvent": {"entities": [{"name": "Invoice", "id": "6", "operation": "Create"}]}},
    ]}
    [event] = parse_notification(body)
    assert (event.entity_id, event.last_updated) == ("5", None)
