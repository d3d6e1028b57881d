"""Intuit's webhook notifications: checking the `intuit-signature` and reading the changes they announce.

    if not verify_signature(body, request.headers.get("intuit-signature"), verifier_token):
        return 401
    for change in parse_notification(body):
        ...  # fetch change.entity change.entity_id of change.realm_id, or note its deletion

The signature is base64(HMAC-SHA256(key = the app's verifier token, message = the raw body)), compared in
constant time (../shared/qbo/README.md section 7). Two body shapes are understood:

* legacy: `{"eventNotifications": [{"realmId", "dataChangeEvent": {"entities": [{"name", "id",
  "operation", "lastUpdated", "deletedId"?}]}}]}`
* CloudEvents (Intuit's mandatory migration): a JSON array of `{"specversion", "id", "type":
  "qbo.<entity>.<verb>.v1", "time", "intuitentityid", "intuitaccountid", "data"}`; one delivery may mix
  realms. `event_id` (the CloudEvents `id`) is the de-duplication key Intuit recommends; legacy events
  have none.

Notifications carry only ids: the receiver reads the records itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from qbflow.catalog.entities import BY_PATH, ENTITIES
from qbflow.errors import QBFlowError

__all__ = ["ChangeEvent", "InvalidNotification", "parse_notification", "verify_signature"]

# CloudEvents verbs (the third part of `type`) and the legacy operation each stands for.
_OPERATIONS = {
    "created": "Create",
    "updated": "Update",
    "deleted": "Delete",
    "merged": "Merge",
    "void": "Void",
    "voided": "Void",
    "emailed": "Emailed",
}


class InvalidNotification(QBFlowError, ValueError):
    """The body is not a webhook notification qbflow understands."""


@dataclass(frozen=True)
class ChangeEvent:
    """One changed record, as a notification announced it.

    `operation` uses Intuit's legacy names: Create, Update, Delete, Merge, Void, Emailed. `last_updated` is
    timezone-aware (None if the notification's time could not be read). `deleted_id` is the record a Merge
    absorbed, when Intuit says.
    """

    realm_id: str
    entity: str
    entity_id: str
    operation: str
    last_updated: datetime | None
    event_id: str | None = None
    deleted_id: str | None = None


def verify_signature(body: bytes, signature: str | None, verifier_token: str) -> bool:
    """True when `signature` (the `intuit-signature` header) signs exactly `body` with `verifier_token`.

    False for a missing, empty or malformed signature, or an empty verifier token; never raises.
    """
    if not signature or not verifier_token:
        return False
    if isinstance(body, str):
        body = body.encode("utf-8")
    try:
        given = base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    expected = hmac.new(verifier_token.encode("utf-8"), body, hashlib.sha256).digest()
    return hmac.compare_digest(given, expected)


def parse_notification(body: bytes | str | dict | list) -> list[ChangeEvent]:
    """Every change a notification announces, in the order given (legacy or CloudEvents body).

    Raises `InvalidNotification` when the body is neither shape; events lacking a realm, an entity or an
    id are skipped rather than guessed at.
    """
    payload: Any = body
    if isinstance(body, bytes | str):
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise InvalidNotification("The webhook body is not JSON.") from None
    if isinstance(payload, dict) and "eventNotifications" in payload:
        return _legacy(payload["eventNotifications"])
    if isinstance(payload, dict) and "specversion" in payload:
        payload = [payload]  # a single CloudEvent in structured mode
    if isinstance(payload, list):
        return [event for item in payload if (event := _cloud_event(item)) is not None]
    raise InvalidNotification("The webhook body is neither an eventNotifications object nor a CloudEvents array.")


def _legacy(notifications: Any) -> list[ChangeEvent]:
    if not isinstance(notifications, list):
        raise InvalidNotification("eventNotifications is not a list.")
    events = []
    for notification in notifications:
        if not isinstance(notification, dict):
            continue
        realm = _text(notification.get("realmId"))
        change = notification.get("dataChangeEvent")
        entities = change.get("entities") if isinstance(change, dict) else None
        if not realm or not isinstance(entities, list):
            continue
        for entity in entities:
            if not isinstance(entity, dict):
                continue
            name, entity_id = _text(entity.get("name")), _text(entity.get("id"))
            if not name or not entity_id:
                continue
            events.append(ChangeEvent(
                realm_id=realm, entity=_entity_name(name), entity_id=entity_id,
                operation=_text(entity.get("operation")) or "Update",
                last_updated=_time(entity.get("lastUpdated")), deleted_id=_text(entity.get("deletedId")),
            ))
    return events


def _cloud_event(item: Any) -> ChangeEvent | None:
    if not isinstance(item, dict):
        return None
    kind = _text(item.get("type")) or ""
    parts = kind.split(".")
    realm, entity_id = _text(item.get("intuitaccountid")), _text(item.get("intuitentityid"))
    if len(parts) < 3 or parts[0] != "qbo" or not realm or not entity_id:
        return None
    verb = parts[2].lower()
    raw_data = item.get("data")
    data = raw_data if isinstance(raw_data, dict) else {}
    return ChangeEvent(
        realm_id=realm, entity=_entity_name(parts[1]), entity_id=entity_id,
        operation=_OPERATIONS.get(verb, verb.capitalize()), last_updated=_time(item.get("time")),
        event_id=_text(item.get("id")), deleted_id=_text(data.get("deletedId")),
    )


def _entity_name(name: str) -> str:
    """The catalog's spelling ("journalentry" and "JournalEntry" are both JournalEntry)."""
    if name in ENTITIES:
        return name
    entity = BY_PATH.get(name.lower())
    return entity.name if entity is not None else name


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value).strip()
    return text or None


def _time(value: Any) -> datetime | None:
    text = _text(value)
    if not text:
        return None
    moment: datetime | None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        # More than six fractional digits (CloudEvents times carry nanoseconds): keep microseconds.
        head, dot, rest = text.partition(".")
        digits = len(rest) - len(rest.lstrip("0123456789"))
        try:
            moment = datetime.fromisoformat(f"{head}{dot}{rest[:min(digits, 6)]}{rest[digits:]}") if dot else None
        except ValueError:
            moment = None
        if moment is None:
            return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
