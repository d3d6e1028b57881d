"""POST /webhooks/intuit: Intuit's change notifications, verified, turned into immediate polls.

A notification says only "these records of this company changed". The receiver checks the `intuit-signature`
(base64 HMAC-SHA256 of the raw body keyed with the verifier token, `QBFLOW_WEBHOOK_VERIFIER`), answers at once,
and asks the engine to poll every connection to that company now (`Engine.request_poll`): the engine reads the
changes with one CDC request and fires the matching triggers. Nothing here calls QuickBooks, so Intuit's 3 s
deadline is never at risk. Polling stays the safety net for a lost or refused notification, and because events
are keyed by (trigger, entity, Id, SyncToken), a change seen by a webhook-driven poll is not fired again by the
next scheduled poll, nor by Intuit re-sending the same notification.

Refused deliveries (401 for a missing or wrong signature or no verifier configured, 400 for a signed body that
is not a notification, 413 for an oversized one) are logged without their body and counted; `webhook_stats(app)`
gives the counts and the last few refusals to the dashboard and the API.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from qbflow.qbo.webhooks import InvalidNotification, parse_notification, verify_signature

__all__ = ["MAX_BODY_BYTES", "BodyTooLarge", "Refusal", "WebhookStats", "router", "read_body", "webhook_stats"]

log = logging.getLogger("qbflow.server.webhooks")

# Intuit sends at most 100 events and "about 1 MB" per delivery; twice that keeps every real delivery in
# while bounding what an unauthenticated caller can make us read before the signature is checked.
MAX_BODY_BYTES = 2 * 1024 * 1024
SIGNATURE_HEADER = "intuit-signature"
_RECENT_REFUSALS = 20
_MAX_UNKNOWN_REALMS = 1000  # realms already logged as unknown (bounded: a set must not grow forever)


@dataclass(frozen=True)
class Refusal:
    """One refused delivery: when, the HTTP status answered, why, and who sent it (address only)."""

    at: datetime
    status: int
    reason: str
    client: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "status": self.status, "reason": self.reason, "client": self.client}


@dataclass
class WebhookStats:
    """What the webhook receiver has seen since the server started."""

    accepted: int = 0  # deliveries answered 200
    events: int = 0  # changes those deliveries announced
    polls_requested: int = 0  # request_poll calls made for them
    refused: int = 0  # deliveries answered 4xx
    last_accepted_at: datetime | None = None
    recent_refusals: deque[Refusal] = field(default_factory=lambda: deque(maxlen=_RECENT_REFUSALS))
    unknown_realms: set[str] = field(default_factory=set)

    def refuse(self, status: int, reason: str, client: str | None) -> None:
        self.refused += 1
        self.recent_refusals.append(Refusal(datetime.now(UTC), status, reason, client))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: counts, the last accepted time, and the recent refusals newest first."""
        return {
            "accepted": self.accepted,
            "events": self.events,
            "polls_requested": self.polls_requested,
            "refused": self.refused,
            "last_accepted_at": self.last_accepted_at.isoformat() if self.last_accepted_at else None,
            "recent_refusals": [r.to_dict() for r in reversed(self.recent_refusals)],
            "unknown_realms": sorted(self.unknown_realms),
        }


def webhook_stats(app: FastAPI) -> WebhookStats:
    """The app's webhook counters (made on first use), for the dashboard and the API to show."""
    stats = getattr(app.state, "webhook_stats", None)
    if stats is None:
        stats = app.state.webhook_stats = WebhookStats()
    return stats


router = APIRouter(tags=["webhooks"])


class BodyTooLarge(Exception):
    """The request's body is over the limit (declared, or counted as it streamed in)."""


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The raw body (a signature covers these exact bytes); BodyTooLarge past `limit` bytes, without reading on."""
    declared = request.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():  # a chunked body has no Content-Length: count as it comes
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _refuse(request: Request, status: int, reason: str, detail: str) -> JSONResponse:
    client = request.client.host if request.client else None
    webhook_stats(request.app).refuse(status, reason, client)
    log.warning("webhook refused (%d) from %s: %s", status, client or "unknown", reason)
    return JSONResponse({"detail": detail}, status_code=status)


@router.post(
    "/webhooks/intuit",
    summary="Receive Intuit's change notifications",
    description=("Intuit's webhook endpoint (register it in Intuit's developer portal). The body is a legacy "
                 "`eventNotifications` object or a CloudEvents array, signed by the `intuit-signature` header. "
                 "Answers 200 at once; the companies named are polled right away."),
    responses={
        200: {"description": "Accepted; the companies it names are polled now."},
        400: {"description": "Signed, but not a notification (not JSON, or neither shape)."},
        401: {"description": "Missing or wrong signature, or no verifier token configured."},
        413: {"description": f"Body over {MAX_BODY_BYTES} bytes."},
    },
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"type": "object"}},
        "application/cloudevents+json": {"schema": {"type": "array", "items": {"type": "object"}}},
    }}},
)
async def receive_intuit_webhook(request: Request) -> JSONResponse:
    """Verify, acknowledge and hand the changed companies to the engine (no QuickBooks call in here)."""
    settings = request.app.state.settings
    secret = settings.webhook_verifier
    verifier = secret.get_secret_value().strip() if secret is not None else ""
    if not verifier:
        return _refuse(request, 401, "no verifier token configured (QBFLOW_WEBHOOK_VERIFIER)",
                       "webhooks are not enabled on this server: set QBFLOW_WEBHOOK_VERIFIER to the verifier "
                       "token Intuit's developer portal shows for your app")
    try:
        body = await read_body(request)
    except BodyTooLarge:
        return _refuse(request, 413, f"body over {MAX_BODY_BYTES} bytes", f"the body is over {MAX_BODY_BYTES} bytes")
    signature = request.headers.get(SIGNATURE_HEADER)
    if not signature:
        return _refuse(request, 401, "no intuit-signature header", "the intuit-signature header is missing")
    if not verify_signature(body, signature, verifier):
        return _refuse(request, 401, "intuit-signature does not match the body",
                       "the intuit-signature does not match the body and this server's verifier token")
    try:
        changes = parse_notification(body)
    except InvalidNotification as error:
        return _refuse(request, 400, f"signed body is not a notification: {error}",
                       f"{error} Expected Intuit's legacy {{\"eventNotifications\": [...]}} object or a "
                       "CloudEvents array.")

    stats = webhook_stats(request.app)
    stats.accepted += 1
    stats.events += len(changes)
    stats.last_accepted_at = datetime.now(UTC)
    realms = list(dict.fromkeys(change.realm_id for change in changes))  # once each, in order
    polled = await _request_polls(request, realms, stats) if realms else []
    return JSONResponse({"events": len(changes), "polls": len(polled)})


async def _request_polls(request: Request, realms: list[str], stats: WebhookStats) -> list[str]:
    """Ask the engine to poll each connection to these companies now; note the companies nobody connected."""
    store = request.app.state.store
    engine = request.app.state.engine
    by_realm = await run_in_threadpool(lambda: {realm: store.connections.find_by_realm(realm) for realm in realms})
    polled: list[str] = []
    for realm, connections in by_realm.items():
        if not connections:
            if realm not in stats.unknown_realms and len(stats.unknown_realms) < _MAX_UNKNOWN_REALMS:
                stats.unknown_realms.add(realm)
                log.warning("webhook for company %s acknowledged, but no connection uses it; "
                            "later notifications for it are acknowledged silently", realm)
            continue
        for connection in connections:
            if engine is None:
                log.info("webhook for connection %r: no engine runs in this server; its next poll will see the "
                         "change", connection.name)
                continue
            engine.request_poll(connection.name)
            polled.append(connection.name)
    stats.polls_requested += len(polled)
    if polled:
        log.info("webhook: polling %s now", ", ".join(polled))
    return polled
