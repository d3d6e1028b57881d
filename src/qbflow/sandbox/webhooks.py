"""Intuit-style webhook delivery from the sandbox.

The sandbox calls `WebhookDispatcher.notify()` whenever a record changes; the dispatcher gathers the
events for a short window, builds one signed POST the way Intuit does (legacy `eventNotifications`
or CloudEvents), and delivers it to the configured endpoint with Intuit's retry schedule.

What this copies from Intuit (sources in ../shared/qbo/README.md section 7, plus):
  * Bodies: legacy `{"eventNotifications":[{"realmId", "dataChangeEvent":{"entities":[...]}}]}`,
    one entry per realm; CloudEvents: a JSON array of events that may mix realms
    (developer.intuit.com .../develop/webhooks, blogs.intuit.com 2025/11/12).
  * CloudEvents `type` is `qbo.<entity lower-case>.<verb>.v1` with the verbs Intuit's portal lists:
    created, updated, deleted, merged, void (not "voided"), emailed (as copied from the portal into
    ballerina-platform/module-ballerinax-quickbooks.trigger docs/spec/asyncapi.yaml). A merge's
    `data` holds `{"deletedId": ...}` (same repository, from a captured delivery); otherwise `{}`.
  * `source` is `intuit.` + 44 base64 characters (a 32-byte digest); Intuit calls it an opaque
    value that "can be ignored", so we derive a stable one from the endpoint URL.
  * `time` is RFC 3339 at UTC+0 (developer.intuit.com webhooks page).
  * Signature: header `intuit-signature` = base64(HMAC-SHA256(verifier token, raw body)).
  * The endpoint must answer within 3 s; failures are retried after 0 s, 10 s, 20 s, 30 s, 5 min,
    20 min, 2 h, 4 h, 6 h and then every 6 h, and later events wait until the failed one is
    acknowledged (blogs.a.intuit.com 2025/10/14 enhanced-webhooks-monitoring). A retry resends the
    same batch with the same event ids (IntuitDeveloper/SampleApp-Webhooks-Java-Cloudevents,
    AGENT_PROMPT_V3.2: "When our gateway retries a failed batch, the same event id will be sent").
  * At most 100 events / about 1 MB per delivery (same repository, webinar-qa/2025-02-05).

Intuit documents no point at which it gives up; we stop after `WebhookConfig.max_attempts`
(default 20 attempts, about three days) so a dead receiver cannot grow the queue forever.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import threading
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import httpx

from qbflow.sandbox.clock import COMPANY_TZ, Clock

__all__ = [
    "CLOUDEVENTS_VERBS",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_EVENTS",
    "WebhookConfig",
    "WebhookDispatcher",
    "sign",
]

log = logging.getLogger(__name__)

# Intuit's operation names (legacy `operation`) mapped to the verbs in CloudEvents `type`.
CLOUDEVENTS_VERBS: dict[str, str] = {
    "Create": "created",
    "Update": "updated",
    "Delete": "deleted",
    "Merge": "merged",
    "Void": "void",
    "Emailed": "emailed",
}

MAX_BATCH_EVENTS = 100
MAX_BATCH_BYTES = 1_000_000

# Headers of Intuit's documented sample notification (developer.intuit.com .../develop/webhooks).
_USER_AGENT = "intuit_notification_server/0.1"
_LEGACY_CONTENT_TYPE = "application/json; charset=utf-8"
# Intuit's own migration guide warns receivers that CloudEvents "may arrive with
# Content-Type: application/cloudevents+json"; sending it makes receivers prove they accept it.
_CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json"

# The delivery log is for tests and the admin API; bound it so a long run cannot exhaust memory.
_MAX_LOG = 1000


def sign(body: bytes, verifier_token: str) -> str:
    """The `intuit-signature` value for a body: base64 of HMAC-SHA256 keyed with the verifier token."""
    digest = hmac.new(verifier_token.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


@dataclass
class WebhookConfig:
    """One app's webhook subscription, as set on Intuit's developer portal."""

    url: str
    verifier_token: str
    format: Literal["legacy", "cloudevents"] = "legacy"
    batch_window: float = 0.5  # seconds to gather events before one delivery
    # Wait before each retry: Intuit's schedule; the last value repeats (every 6 h).
    retry_delays: tuple[float, ...] = (0, 10, 20, 30, 300, 1200, 7200, 14400, 21600)
    timeout: float = 3.0  # a receiver slower than this counts as failed
    entities: frozenset[str] | None = None  # None = all
    max_attempts: int = 20  # first try + retries; ~3 days with the default schedule
    source: str | None = None  # CloudEvents `source`; None = derived from the URL

    def __post_init__(self) -> None:
        if self.format not in ("legacy", "cloudevents"):
            raise ValueError(f"format must be legacy or cloudevents, got {self.format!r}")
        if not self.url:
            raise ValueError("url is required")
        if self.batch_window < 0 or self.timeout <= 0 or self.max_attempts < 1:
            raise ValueError("batch_window must be >= 0, timeout > 0 and max_attempts >= 1")
        if any(d < 0 for d in self.retry_delays):
            raise ValueError("retry_delays must not be negative")
        if self.entities is not None:
            self.entities = frozenset(self.entities)

    def __repr__(self) -> str:
        # Keep the verifier token out of logs and tracebacks.
        return (
            f"WebhookConfig(url={self.url!r}, verifier_token='***', format={self.format!r}, "
            f"batch_window={self.batch_window!r}, timeout={self.timeout!r}, entities={self.entities!r})"
        )

    def cloudevents_source(self) -> str:
        if self.source:
            return self.source
        digest = hashlib.sha256(self.url.encode("utf-8")).digest()
        return "intuit." + base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True)
class _Event:
    id: str  # CloudEvents id, fixed at notify() so every retry carries the same one
    realm_id: str
    entity: str
    entity_id: str
    operation: str
    time: str  # UTC, RFC 3339 with milliseconds
    deleted_id: str | None = None


@dataclass
class _Delivery:
    id: str
    url: str
    body: bytes
    headers: dict[str, str]
    events: int
    timeout: float
    retry_delays: tuple[float, ...]
    max_attempts: int
    attempts: int = 0


class WebhookDispatcher:
    """Queues change events and delivers them, batched and signed, in order, with retries."""

    def __init__(
        self,
        config: WebhookConfig | None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        delay_scale: float = 1.0,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self.delay_scale = delay_scale
        self.clock = clock or Clock()
        self.deliveries: list[dict[str, Any]] = []
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        # notify() may be called from a request handler or another thread: guard the queue.
        self._lock = threading.Lock()
        self._pending: list[_Event] = []
        self._outbox: deque[_Delivery] = deque()
        self._send_lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event_arrived: asyncio.Event | None = None
        self._outbox_ready: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # configuration ------------------------------------------------------------------------------
    def configure(self, config: WebhookConfig | None) -> None:
        """Replace the subscription. None turns webhooks off and drops everything not yet delivered."""
        self.config = config
        if config is None:
            with self._lock:
                self._pending.clear()
            self._outbox.clear()

    # producing ----------------------------------------------------------------------------------
    def notify(
        self,
        realm_id: str,
        entity: str,
        entity_id: str,
        operation: str,
        last_updated: str,
        *,
        deleted_id: str | None = None,
    ) -> None:
        """Queue one change; returns at once. `deleted_id` is the record a Merge absorbed.

        An operation Intuit never sends is logged and dropped rather than raised: notify() runs
        inside the sandbox's API calls, which must not fail because of a webhook.
        """
        if operation not in CLOUDEVENTS_VERBS:
            log.warning("webhooks: ignoring unknown operation %r for %s %s", operation, entity, entity_id)
            return
        config = self.config
        if config is None:
            return
        if config.entities is not None and entity not in config.entities:
            return
        event = _Event(
            id=str(uuid.uuid4()),
            realm_id=str(realm_id),
            entity=entity,
            entity_id=str(entity_id),
            operation=operation,
            time=self._utc_time(last_updated),
            deleted_id=deleted_id,
        )
        with self._lock:
            self._pending.append(event)
        self._wake(self._event_arrived)

    # lifecycle ----------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the background batcher and sender on the running loop."""
        if self._tasks:
            return
        self._bind_loop()
        assert self._event_arrived is not None and self._outbox_ready is not None
        self._tasks = [
            asyncio.create_task(self._batch_loop(), name="qbo-webhook-batcher"),
            asyncio.create_task(self._send_loop(), name="qbo-webhook-sender"),
        ]
        with self._lock:
            if self._pending:
                self._event_arrived.set()
        if self._outbox:
            self._outbox_ready.set()

    async def stop(self) -> None:
        """Stop the background tasks, cancel retries, then try each queued delivery once, in order."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._bind_loop()
        self._cut_batches()
        assert self._send_lock is not None
        async with self._send_lock:
            # Best effort without retries; stop at the first failure so order is never broken.
            while self._outbox:
                if not await self._attempt(self._outbox[0]):
                    log.warning("webhooks: %d deliveries left undelivered at stop", len(self._outbox))
                    break
                self._outbox.popleft()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def flush(self) -> None:
        """Batch everything queued now and deliver it all (with retries), in order."""
        self._bind_loop()
        self._cut_batches()
        await self._drain()

    # background loops ---------------------------------------------------------------------------
    async def _batch_loop(self) -> None:
        assert self._event_arrived is not None
        while True:
            await self._event_arrived.wait()
            # The window starts with the first event, so one burst of changes makes one POST.
            window = self.config.batch_window if self.config else 0.0
            await asyncio.sleep(window)
            self._event_arrived.clear()
            self._cut_batches()

    async def _send_loop(self) -> None:
        assert self._outbox_ready is not None
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            await self._drain()

    # batching -----------------------------------------------------------------------------------
    def _cut_batches(self) -> None:
        """Move every pending event into signed deliveries (<= 100 events, ~1 MB each)."""
        config = self.config
        with self._lock:
            events, self._pending = self._pending, []
        if not events or config is None:
            return
        for chunk in self._chunks(events, config):
            self._outbox.append(self._make_delivery(chunk, config))
        self._wake(self._outbox_ready)

    def _chunks(self, events: list[_Event], config: WebhookConfig) -> list[list[_Event]]:
        # Size is estimated per event (its own JSON plus a realm wrapper) instead of re-serialising
        # the growing body for every event; Intuit's 1 MB is approximate anyway.
        chunks: list[list[_Event]] = []
        current: list[_Event] = []
        size = 2
        realms: set[str] = set()
        for event in events:
            cloud = config.format == "cloudevents"
            item = self._cloudevent(event, config) if cloud else self._legacy([event])
            cost = len(json.dumps(item, separators=(",", ":"))) + 1
            if not cloud and event.realm_id in realms:
                cost -= 60 + len(event.realm_id)  # the realm wrapper is shared with earlier events
            if current and (len(current) >= MAX_BATCH_EVENTS or size + cost > MAX_BATCH_BYTES):
                chunks.append(current)
                current, size, realms = [], 2, set()
                cost = len(json.dumps(item, separators=(",", ":"))) + 1
            current.append(event)
            realms.add(event.realm_id)
            size += cost
        if current:
            chunks.append(current)
        return chunks

    def _body(self, events: list[_Event], config: WebhookConfig) -> bytes:
        if config.format == "cloudevents":
            payload: Any = [self._cloudevent(e, config) for e in events]
        else:
            payload = self._legacy(events)
        return json.dumps(payload, separators=(",", ":")).encode("utf-8")

    @staticmethod
    def _legacy(events: list[_Event]) -> dict[str, Any]:
        # One eventNotification per realm, realms in order of first appearance.
        by_realm: dict[str, list[dict[str, str]]] = {}
        for e in events:
            entity = {"name": e.entity, "id": e.entity_id, "operation": e.operation, "lastUpdated": e.time}
            if e.deleted_id is not None:
                entity["deletedId"] = e.deleted_id
            by_realm.setdefault(e.realm_id, []).append(entity)
        return {
            "eventNotifications": [
                {"realmId": realm, "dataChangeEvent": {"entities": entities}}
                for realm, entities in by_realm.items()
            ]
        }

    @staticmethod
    def _cloudevent(e: _Event, config: WebhookConfig) -> dict[str, Any]:
        data: dict[str, Any] = {"deletedId": e.deleted_id} if e.deleted_id is not None else {}
        return {
            "specversion": "1.0",
            "id": e.id,
            "source": config.cloudevents_source(),
            "type": f"qbo.{e.entity.lower()}.{CLOUDEVENTS_VERBS[e.operation]}.v1",
            "datacontenttype": "application/json",
            "time": e.time,
            "intuitentityid": e.entity_id,
            "intuitaccountid": e.realm_id,
            "data": data,
        }

    def _make_delivery(self, events: list[_Event], config: WebhookConfig) -> _Delivery:
        body = self._body(events, config)
        created = self.clock.now().astimezone(COMPANY_TZ).strftime("%Y-%m-%dT%H:%M:%S%z")
        cloud = config.format == "cloudevents"
        headers = {
            "content-type": _CLOUDEVENTS_CONTENT_TYPE if cloud else _LEGACY_CONTENT_TYPE,
            "accept": "application/json",
            "user-agent": _USER_AGENT,
            "intuit-signature": sign(body, config.verifier_token),
            "intuit-created-time": created,
        }
        if not cloud:
            headers["intuit-notification-schema-version"] = "0.1"
        return _Delivery(
            id=str(uuid.uuid4()),
            url=config.url,
            body=body,
            headers=headers,
            events=len(events),
            timeout=config.timeout,
            retry_delays=config.retry_delays or (0,),
            max_attempts=max(1, config.max_attempts),
        )

    # delivering ---------------------------------------------------------------------------------
    async def _drain(self) -> None:
        """Deliver the outbox head first; a failing head is retried and everything behind it waits."""
        assert self._send_lock is not None
        async with self._send_lock:
            while self._outbox:
                delivery = self._outbox[0]
                if await self._attempt(delivery):
                    self._outbox.popleft()
                    continue
                if delivery.attempts >= delivery.max_attempts:
                    log.warning("webhooks: giving up on delivery %s after %d attempts", delivery.id,
                                delivery.attempts)
                    self.deliveries[-1]["gave_up"] = True
                    self._outbox.popleft()
                    continue
                delays = delivery.retry_delays
                delay = delays[min(delivery.attempts - 1, len(delays) - 1)]
                await asyncio.sleep(delay * self.delay_scale)

    async def _attempt(self, delivery: _Delivery) -> bool:
        delivery.attempts += 1
        headers = dict(delivery.headers)
        headers["intuit-t-id"] = str(uuid.uuid4())  # one transaction id per HTTP request
        client = self._http()
        ok = False
        try:
            # wait_for bounds the whole exchange (httpx timeouts are per phase, and ASGI ignores them).
            response = await asyncio.wait_for(
                client.post(delivery.url, content=delivery.body, headers=headers), delivery.timeout
            )
            status: int | str = response.status_code
            ok = 200 <= response.status_code < 300
        except TimeoutError:
            status = f"timeout after {delivery.timeout:g}s"
        except httpx.HTTPError as exc:
            status = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        except Exception as exc:  # a receiver bug seen through ASGITransport must not kill the sender
            status = f"{type(exc).__name__}: {exc}"
        self._log(delivery, status, ok)
        return ok

    def _log(self, delivery: _Delivery, status: int | str, ok: bool) -> None:
        self.deliveries.append(
            {
                "id": delivery.id,
                "attempt": delivery.attempts,
                "status": status,
                "ok": ok,
                "gave_up": False,
                "at": self.clock.now().isoformat(timespec="milliseconds"),
                "events": delivery.events,
                "url": delivery.url,
                "body": delivery.body.decode("utf-8"),
            }
        )
        if len(self.deliveries) > _MAX_LOG:
            del self.deliveries[: len(self.deliveries) - _MAX_LOG]

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # Redirects are not followed: Intuit wants a 2xx from the registered URL itself.
            self._client = httpx.AsyncClient(transport=self._transport, timeout=None, follow_redirects=False)
        return self._client

    # helpers ------------------------------------------------------------------------------------
    def _bind_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # asyncio primitives belong to one loop; (re)create them for the loop we now run on.
            self._loop = loop
            self._send_lock = asyncio.Lock()
            self._event_arrived = asyncio.Event()
            self._outbox_ready = asyncio.Event()

    def _wake(self, flag: asyncio.Event | None) -> None:
        loop = self._loop
        if flag is None or loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            flag.set()
        else:
            loop.call_soon_threadsafe(flag.set)

    def _utc_time(self, last_updated: str) -> str:
        """`lastUpdated` / `time` as Intuit sends them: UTC, milliseconds, `Z`."""
        try:
            dt = datetime.fromisoformat(last_updated)
        except (TypeError, ValueError):
            dt = self.clock.now()
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=COMPANY_TZ)  # QBO times without an offset are company-local
        return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
