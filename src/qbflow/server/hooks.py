"""POST /hooks/{hook_id}: deliveries to `kind: webhook` workflows, stored as events before they are answered.

A delivery is checked in this order, and a refusal answers with a short reason and stores nothing:

    404  no hook with this id (or its workflow is no longer a webhook workflow)
    415  the content type is neither application/json (or application/*+json) nor a form
    401  no bearer token or a wrong one (auth: bearer), checked before the body is read
    413  the body is over the trigger's `max_body` (read as it streams: never buffered past the limit)
    401  no signature, or one that does not match the raw body (auth: hmac, stripe)
    409  the workflow is disabled (only a sender that proved it holds the secret learns that)
    422  the body is not JSON (or not UTF-8), or a configured delivery id is missing

Otherwise the event and its queued run are stored in one transaction (`RunStore.record_event`), with the
delivery's row, and the answer is 202 `{"accepted": true, "run_id": N}`, or `{"accepted": true, "duplicate":
true}` when the delivery id was seen before (no second run). The run starts afterwards: an engine in this process
is woken (`request_runs`); with workers (`ServerConfig.on_runs`, `serve --workers`) the run's job is enqueued in
the same transaction. Store calls run in threads so the event loop keeps accepting.

Refusals are not stored (an unauthenticated caller writes nothing); the last few per hook are kept in memory for
the dashboard (`hook_refusals`), and logged without body, headers or secret.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import threading
from collections import deque
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from qbflow.engine.hooks import (
    Refused,
    check_bearer,
    check_signature,
    content_kind,
    dedup_key,
    event_payload,
    parse_body,
)
from qbflow.engine.stored import hook_url
from qbflow.engine.workflow import WebhookTrigger, trigger_kind
from qbflow.server.auth import require_api_token
from qbflow.server.webhooks import BodyTooLarge, read_body
from qbflow.store.hooks import DeliveryRecord, HookRecord, HookStore, HookTarget
from qbflow.store.runs import RunStore, WorkflowNotFound

__all__ = ["RunWaker", "api_router", "hook_refusals", "hook_store", "hooks_overview", "router"]

log = logging.getLogger("qbflow.server.hooks")

_RECENT_REFUSALS = 20  # per hook, in memory
_MAX_HOOKS_TRACKED = 1000
# SQLite has one writer: this server's threads take turns here rather than in SQLite's busy handler, whose sleeps
# (up to 100 ms each) cost a burst of deliveries far more than waiting for a lock.
_SQLITE_WRITES = threading.Lock()


@runtime_checkable
class RunWaker(Protocol):
    """An engine in this process that claims new runs at once when told (`Engine.request_runs`)."""

    def request_runs(self) -> None: ...


def hook_store(app: FastAPI) -> HookStore:
    """The app's hook store (made on first use)."""
    hooks = getattr(app.state, "hooks", None)
    if hooks is None:
        store = app.state.store
        hooks = app.state.hooks = getattr(store, "hooks", None) or HookStore(store.engine, store.box)
    return hooks


def hook_refusals(app: FastAPI) -> dict[str, deque[dict[str, Any]]]:
    """Refused deliveries since the server started, per hook id: newest last, {at, status, reason}."""
    refusals = getattr(app.state, "hook_refusals", None)
    if refusals is None:
        refusals = app.state.hook_refusals = {}
    return refusals


router = APIRouter(tags=["hooks"])


def _refuse(request: Request, hook_id: str | None, error: Refused) -> JSONResponse:
    if hook_id is not None:
        refusals = hook_refusals(request.app)
        if hook_id in refusals or len(refusals) < _MAX_HOOKS_TRACKED:
            refusals.setdefault(hook_id, deque(maxlen=_RECENT_REFUSALS)).append(
                {"at": datetime.now(UTC).isoformat(), "status": error.status, "reason": error.reason})
    client = request.client.host if request.client else "unknown"
    log.warning("hook delivery refused (%d) from %s: %s", error.status, client, error.reason)
    return JSONResponse({"accepted": False, "detail": error.reason}, status_code=error.status)


@router.post(
    "/hooks/{hook_id}",
    summary="Receive a delivery for a webhook workflow",
    description="The inbound URL of a `kind: webhook` workflow (`qbflow hooks list`). Signed with the hook's "
                "secret (HMAC-SHA256 of the raw body) or carrying it as a bearer token, as the workflow's trigger "
                "says. 202 once the event is stored; the run starts afterwards.",
    responses={
        202: {"description": "Stored: `run_id`, or `duplicate: true` for a delivery id seen before."},
        401: {"description": "No signature or token, or a wrong one."},
        404: {"description": "No such hook."},
        409: {"description": "The workflow is disabled."},
        413: {"description": "The body is over the trigger's max_body."},
        415: {"description": "Not application/json or application/x-www-form-urlencoded."},
        422: {"description": "Not JSON, or the configured delivery id is missing."},
    },
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"type": "object"}},  # any JSON value is accepted; senders send objects
        "application/x-www-form-urlencoded": {"schema": {"type": "object",
                                                         "additionalProperties": {"type": "string"}}},
    }}},
)
async def receive_delivery(request: Request, hook_id: str) -> JSONResponse:
    """Check, store (event, queued run, delivery row) and answer; then wake whatever runs the run."""
    hooks = hook_store(request.app)
    target = await run_in_threadpool(hooks.target, hook_id) if len(hook_id) <= 64 else None
    trigger = _trigger_of(target)
    if target is None or trigger is None:
        return _refuse(request, None, Refused(404, "no such hook"))
    received_at = datetime.now(UTC)
    headers = request.headers
    try:
        media = content_kind(headers.get("content-type"))
        check_bearer(trigger, target.secret, headers)
        try:
            body = await read_body(request, trigger.max_body)
        except BodyTooLarge:
            raise Refused(413, f"the body is over {trigger.max_body} bytes") from None
        check_signature(trigger, target.secret, headers, body, received_at)
        if not target.enabled:
            raise Refused(409, f"workflow {target.workflow!r} is disabled")
        payload = event_payload(trigger, parse_body(media, body), headers, request.query_params.multi_items(),
                                received_at)
        key, delivery_id = dedup_key(trigger, payload, headers)
    except Refused as error:
        return _refuse(request, hook_id, error)

    config = request.app.state.config
    lane = target.definition.get("connection") if isinstance(target.definition, dict) else None
    writer = hooks.delivery_writer(target.id, delivery_id)
    writer.then = config.on_runs

    def store() -> int | None:
        engine = request.app.state.store.engine
        with _SQLITE_WRITES if engine.dialect.name == "sqlite" else contextlib.nullcontext():
            run_id = RunStore(engine).record_event(
                target.workflow_id, kind="webhook", dedup_key=key, payload=payload, lane=lane, now=received_at,
                on_runs=writer)
            if run_id is None:
                writer.duplicate()
        return run_id

    run_id = await run_in_threadpool(store)
    if run_id is None:
        log.info("hook %s: delivery %s was accepted before; no second run", target.workflow, delivery_id)
        return JSONResponse({"accepted": True, "duplicate": True}, status_code=202)
    engine = request.app.state.engine
    if isinstance(engine, RunWaker):
        engine.request_runs()
    return JSONResponse({"accepted": True, "run_id": run_id}, status_code=202)


def _trigger_of(target: HookTarget | None) -> WebhookTrigger | None:
    if target is None or not isinstance(target.definition, dict):
        return None
    spec = target.definition.get("trigger")
    if trigger_kind(spec) != "webhook":
        return None
    try:
        return _parsed_trigger(json.dumps(spec, sort_keys=True))
    except ValidationError:  # stored definitions were validated; a newer qbflow may have changed the format
        log.warning("hook of workflow %r: its stored trigger is not valid any more", target.workflow)
        return None


@functools.lru_cache(maxsize=256)
def _parsed_trigger(spec: str) -> WebhookTrigger:
    # Validating parses the delivery_id template: once per trigger text, not once per delivery.
    return WebhookTrigger.model_validate_json(spec)


# --- GET /api/hooks, POST /api/hooks/{workflow}/rotate (API token) -----------------------------------------

api_router = APIRouter(prefix="/api", tags=["hooks"], dependencies=[Depends(require_api_token)],
                       responses={401: {"description": "No valid API token (`Authorization: Bearer TOKEN`)."}})


class DeliveryOut(BaseModel):
    received_at: datetime
    outcome: str = Field(description="accepted (a new run) or duplicate (a delivery id seen before: no run).")
    delivery_id: str | None
    run_id: int | None


class HookRefusalOut(BaseModel):
    at: str
    status: int
    reason: str


class HookOut(BaseModel):
    """A webhook workflow's inbound URL; never its secret."""

    workflow: str
    url: str
    enabled: bool
    created_at: datetime
    rotated_at: datetime | None = Field(description="When its secret was last replaced.")
    deliveries: int = Field(description="Accepted deliveries kept (the newest 100 or so).")
    recent_deliveries: list[DeliveryOut] = Field(description="The newest accepted deliveries, newest first.")
    recent_refusals: list[HookRefusalOut] = Field(description="Refused deliveries since the server started (not "
                                                              "stored), newest first.")


class RotatedOut(BaseModel):
    workflow: str
    url: str
    secret: str = Field(description="The new secret, shown this once; the old one no longer works.")


def _delivery_out(delivery: DeliveryRecord) -> DeliveryOut:
    return DeliveryOut(received_at=delivery.received_at, outcome=delivery.outcome, delivery_id=delivery.delivery_id,
                       run_id=delivery.run_id)


def hooks_overview(app: FastAPI, *, recent: int = 10) -> list[HookOut]:
    """Every hook with its URL, recent deliveries and refusals (the API's and the dashboard's view)."""
    hooks = hook_store(app)
    refusals = hook_refusals(app)
    base = app.state.config.public_url
    return [HookOut(workflow=h.workflow, url=hook_url(base, h), enabled=h.enabled, created_at=h.created_at,
                    rotated_at=h.rotated_at, deliveries=h.deliveries,
                    recent_deliveries=[_delivery_out(d) for d in hooks.recent_deliveries(h.id, recent)],
                    recent_refusals=[HookRefusalOut(**r) for r in reversed(refusals.get(h.hook_id, ()))][:recent])
            for h in hooks.list()]


@api_router.get("/hooks", response_model=list[HookOut])
def list_hooks(request: Request) -> list[HookOut]:
    """Every webhook workflow's URL with its recent deliveries (accepted, stored) and refusals (since the server
    started); never a secret."""
    return hooks_overview(request.app)


def rotate_hook(app: FastAPI, workflow: str) -> tuple[HookRecord, str]:
    """A new random secret for a webhook workflow's hook (made if it has none); HTTPException 404 otherwise."""
    runs = RunStore(app.state.store.engine)
    try:
        record = runs.get_workflow(workflow)
    except WorkflowNotFound:
        raise HTTPException(404, f"no workflow named {workflow!r}") from None
    definition = record.definition if isinstance(record.definition, dict) else {}
    if trigger_kind(definition.get("trigger") or {}) != "webhook":
        raise HTTPException(404, f"workflow {workflow!r} has no URL: its trigger is not `kind: webhook`")
    return hook_store(app).rotate(record.id)


@api_router.post("/hooks/{workflow}/rotate", response_model=RotatedOut, responses={404: {"description": "No such "
                                                                                       "webhook workflow."}})
def rotate(request: Request, workflow: str) -> RotatedOut:
    """Replace a webhook workflow's secret with a new random one, shown in this answer only."""
    hook, secret = rotate_hook(request.app, workflow)
    return RotatedOut(workflow=hook.workflow, url=hook_url(request.app.state.config.public_url, hook), secret=secret)
