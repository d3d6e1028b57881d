"""The `webhook` trigger source: what one inbound delivery must be to become an event, written once.

The server (`qbflow.server.hooks`, `POST /hooks/<id>`) reads the request and calls these in order; each refusal
is a `Refused` with the HTTP status and a short reason, and nothing is stored for it:

    media = content_kind(headers.get("content-type"))          # 415 unless JSON or a form
    check_bearer(trigger, secret, headers)                     # 401 (auth: bearer), before the body is read
    check_signature(trigger, secret, headers, body, now)       # 401 (auth: hmac or stripe)
    parsed = parse_body(media, body)                           # 422: not JSON (or not UTF-8)
    payload = event_payload(trigger, parsed, headers, query, now)   # what runs see as `trigger`
    key = dedup_key(trigger, payload, headers)                 # 422 when a configured delivery id is missing

`sign(secret, body, trigger)` gives the headers a sender adds (tests, the benchmark, and the docs' example).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from qbflow.engine.sources import register_source
from qbflow.engine.templates import TemplateError, render
from qbflow.engine.workflow import WebhookTrigger, Workflow
from qbflow.errors import QBFlowError

__all__ = ["JSON", "FORM", "Refused", "WebhookSource", "check_bearer", "check_signature", "content_kind",
           "dedup_key", "event_payload", "parse_body", "sign"]

JSON = "json"
FORM = "form"
# Headers that carry credentials: never part of the stored event.
_SECRET_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


class Refused(QBFlowError):
    """A delivery that is not accepted: `status` is the HTTP answer, `reason` a short why (no secret in it)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def content_kind(content_type: str | None) -> str:
    """JSON (`application/json`, `application/*+json`) or FORM (`application/x-www-form-urlencoded`); else 415."""
    media = (content_type or "").split(";", 1)[0].strip().lower()[:100]  # it is echoed and logged: bounded
    if media == "application/json" or (media.startswith("application/") and media.endswith("+json")):
        return JSON
    if media == "application/x-www-form-urlencoded":
        return FORM
    raise Refused(415, f"content type {media or '(none)'!r} is not application/json or "
                       "application/x-www-form-urlencoded")


def check_bearer(trigger: WebhookTrigger, secret: str, headers: Mapping[str, str]) -> None:
    """`auth: bearer`: `Authorization: Bearer <secret>`, compared in constant time; else 401."""
    if trigger.auth != "bearer":
        return
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if not value:
        raise Refused(401, "no Authorization header")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), secret.encode()):
        raise Refused(401, "wrong bearer token")


def check_signature(trigger: WebhookTrigger, secret: str, headers: Mapping[str, str], body: bytes,
                    now: datetime) -> None:
    """`auth: hmac` or `stripe`: the signature header must be the HMAC-SHA256 of these exact bytes; else 401."""
    if trigger.auth == "bearer":
        return
    name = trigger.header
    value = headers.get(name.lower(), "").strip()
    if not value:
        raise Refused(401, f"no {name} header")
    if trigger.auth == "stripe":
        _check_stripe(trigger, secret, name, value, body, now)
        return
    if trigger.signature_prefix:
        if not value.startswith(trigger.signature_prefix):
            raise Refused(401, f"{name} does not start with {trigger.signature_prefix!r}")
        value = value[len(trigger.signature_prefix):]
    try:
        given = (bytes.fromhex(value) if trigger.signature_encoding == "hex"
                 else base64.b64decode(value, validate=True))
    except (ValueError, binascii.Error):
        raise Refused(401, f"{name} is not {trigger.signature_encoding}") from None
    if not hmac.compare_digest(hmac.new(secret.encode(), body, hashlib.sha256).digest(), given):
        raise Refused(401, f"{name} does not match the body")


def _check_stripe(trigger: WebhookTrigger, secret: str, name: str, value: str, body: bytes, now: datetime) -> None:
    parts = [item.split("=", 1) for item in value.split(",") if "=" in item]
    stamp = next((v.strip() for k, v in parts if k.strip() == "t"), "")
    given = [v.strip() for k, v in parts if k.strip() == "v1"]
    if not stamp.isdigit() or not given:
        raise Refused(401, f"{name} has no t= and v1= parts")
    if abs(now.timestamp() - int(stamp)) > trigger.tolerance:
        raise Refused(401, f"{name} is older than {trigger.tolerance} s (or from the future)")
    expected = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest().encode()
    if not any(hmac.compare_digest(expected, item.encode()) for item in given):
        raise Refused(401, f"{name} does not match the body")


def parse_body(kind: str, body: bytes) -> Any:
    """The body as data: JSON, or a form as {name: value} (a repeated name: a list of its values); else 422."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(422, "the body is not UTF-8") from None
    if kind == JSON:
        try:
            return json.loads(text)
        except ValueError as error:
            raise Refused(422, f"the body is not JSON ({error.msg} at line {error.lineno} column {error.colno})"
                          if isinstance(error, json.JSONDecodeError) else "the body is not JSON") from None
    return _pairs(parse_qsl(text, keep_blank_values=True))


def _pairs(items: list[tuple[str, str]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in items:
        if key in result:
            result[key] = [*result[key], value] if isinstance(result[key], list) else [result[key], value]
        else:
            result[key] = value
    return result


def event_payload(trigger: WebhookTrigger, body: Any, headers: Mapping[str, str], query: list[tuple[str, str]],
                  received_at: datetime) -> dict[str, Any]:
    """What the run sees as `trigger`: body, headers (lower-case names, without credentials or the signature),
    query and when it came."""
    hidden = _SECRET_HEADERS | {trigger.header.lower()}
    return {"body": body, "headers": {k: v for k, v in headers.items() if k.lower() not in hidden},
            "query": _pairs(query), "received_at": received_at.isoformat()}


def dedup_key(trigger: WebhookTrigger, payload: Mapping[str, Any],
              headers: Mapping[str, str]) -> tuple[str, str | None]:
    """(the event's de-duplication key, the delivery id). With `delivery_id` configured, deliveries with the same
    id are one event ("delivery:<id>"); a delivery without it is refused (422) rather than run twice on a retry.
    Without `delivery_id`, every delivery is its own event (a random key): nothing a sender sends is dropped."""
    spec = trigger.delivery_id
    if spec is None:
        return f"random:{uuid.uuid4()}", None
    if spec.startswith("header:"):
        name = spec.split(":", 1)[1]
        found = headers.get(name.lower(), "").strip()
        if not found:
            raise Refused(422, f"no delivery id: the {name} header is missing")
        return f"delivery:{found}", found
    try:
        value = render(spec, {**payload, "trigger": dict(payload)})
    except TemplateError as error:
        raise Refused(422, f"no delivery id: {spec} gives nothing ({error.problem})") from None
    text = "" if value is None else str(value).strip()
    if not text:
        raise Refused(422, f"no delivery id: {spec} is empty for this body")
    return f"delivery:{text}", text


def sign(secret: str, body: bytes, trigger: WebhookTrigger | None = None, *, now: datetime | None = None
         ) -> dict[str, str]:
    """The header a sender adds to `body` for a hook with this trigger (default: hmac, hex, X-Qbflow-Signature)."""
    trigger = trigger or WebhookTrigger(kind="webhook")
    if trigger.auth == "bearer":
        return {"Authorization": f"Bearer {secret}"}
    if trigger.auth == "stripe":
        stamp = str(int((now or datetime.now().astimezone()).timestamp()))
        digest = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        return {trigger.header: f"t={stamp},v1={digest}"}
    raw = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    encoded = raw.hex() if trigger.signature_encoding == "hex" else base64.b64encode(raw).decode()
    return {trigger.header: trigger.signature_prefix + encoded}


class WebhookSource:
    """The `webhook` kind in the sources' registry: its events are stored by the server's receiver."""

    kind = "webhook"

    def sample(self, workflow: Workflow) -> dict[str, Any]:
        """A dry run's `trigger`: an empty JSON delivery."""
        return {"body": {}, "headers": {"content-type": "application/json"}, "query": {},
                "received_at": datetime.now().astimezone().isoformat()}


register_source(WebhookSource())
