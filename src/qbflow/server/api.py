"""The JSON API under /api (OpenAPI at /docs): connections, workflows, runs. Every route needs the API token.

    curl -H "Authorization: Bearer $QBFLOW_API_TOKEN" http://127.0.0.1:8000/api/runs?status=failed

It does what the CLI does, through the same functions (`qbflow.engine.stored`, `qbflow.redaction`), and
never answers with a token or secret: connections show their state only, and step inputs, outputs, errors,
events and workflow definitions are masked like `qbflow runs show` masks them. Errors are
`{"detail": "..."}` naming the field, the value and what was expected; a workflow that is not valid is 422
with `problems`, each naming the line, the field and what is wrong.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from qbflow.engine.status import system_status
from qbflow.engine.stored import (
    RetryRefused,
    WorkflowOverview,
    ensure_hook,
    hook_url,
    retry_run,
    store_workflow,
    workflow_overviews,
)
from qbflow.engine.workflow import (
    WorkflowInvalid,
    WorkflowProblem,
    load_workflow_text,
    trigger_kind,
    validate_workflow_text,
)
from qbflow.redaction import redacted
from qbflow.server.auth import require_api_token
from qbflow.server.hooks import hook_store
from qbflow.server.webhooks import webhook_stats
from qbflow.store.errors import ConnectionNotFound
from qbflow.store.models import RUN_QUEUED
from qbflow.store.runs import EventRecord, RunNotFound, RunRecord, RunStore, StepRecord, WorkflowNotFound

router = APIRouter(prefix="/api", dependencies=[Depends(require_api_token)],
                   responses={401: {"description": "No valid API token (`Authorization: Bearer TOKEN`)."}})

MAX_ID = 2**31 - 1  # ids are 32-bit integers in the database
MAX_WORKFLOW_BYTES = 1_000_000
YAML_TYPES = ("text/yaml", "application/yaml", "application/x-yaml", "text/x-yaml", "text/plain")

RunStatus = Literal["queued", "running", "succeeded", "failed", "waiting_retry", "cancelled", "waiting"]


# --- response models --------------------------------------------------------------------------------------

class ErrorOut(BaseModel):
    detail: str = Field(description="What is wrong: the field, the value and what was expected.")


class ConnectionOut(BaseModel):
    """A connection to one QuickBooks company; never its tokens or client secret."""

    name: str
    realm_id: str
    company_name: str | None
    environment: str = Field(description="production, sandbox (Intuit's developer sandbox) or local.")
    status: Literal["ok", "needs_reconnect"]
    status_detail: str | None = Field(description="Why it needs reconnecting (when it does).")
    created_at: datetime
    updated_at: datetime


class ConnectionRemovedOut(BaseModel):
    name: str
    revoked: bool = Field(description="Whether Intuit revoked its tokens (false only with force=true).")
    detail: str


class TriggerOut(BaseModel):
    kind: str = Field(default="qbo", description="qbo, webhook, schedule or manual.")
    key: str = Field(description="The QuickBooks trigger's key; the kind for other kinds.")
    connection: str = Field(description="The connection a qbo trigger polls (or the workflow's, for other kinds).")
    poll_interval_seconds: float | None
    filter: str | None = None


class LastRunOut(BaseModel):
    id: int
    status: RunStatus
    at: datetime | None = Field(description="When it finished, started or was created (the latest known).")


class WorkflowOut(BaseModel):
    name: str
    description: str | None
    enabled: bool
    paused_reason: str | None = Field(default=None, description="Why qbflow turned it off by itself (the loop "
                                                                "breaker); null otherwise.")
    trigger: TriggerOut
    steps: int = Field(description="How many steps it has.")
    last_run: LastRunOut | None
    last_poll_at: datetime | None
    next_poll_at: datetime | None = Field(description="When its trigger is polled next (null when disabled).")
    last_poll_error: str | None
    source_path: str | None = Field(description="The file it was added from (null when sent to the API).")
    updated_at: datetime


class HookSecretOut(BaseModel):
    url: str = Field(description="Where senders POST (`kind: webhook` workflows).")
    secret: str | None = Field(description="The hook's secret, only in the answer that made it (shown once).")


class WorkflowDetailOut(WorkflowOut):
    definition: dict[str, Any] = Field(description="The stored workflow (secret-looking values masked).")
    hook: HookSecretOut | None = Field(default=None, description="A webhook workflow's URL (POST /api/workflows).")


class WorkflowText(BaseModel):
    model_config = ConfigDict(extra="forbid")

    yaml: str = Field(description="The workflow file's text (YAML).", max_length=MAX_WORKFLOW_BYTES)


class ProblemOut(BaseModel):
    line: int | None = Field(description="Line in the YAML text (1-based), when known.")
    field: str = Field(description='The field, e.g. "steps[1].input.customer"; "" for the whole text.')
    message: str
    severity: Literal["error", "warning"] = Field(default="error", description="A warning does not make the "
                                                                                "workflow invalid.")


class WorkflowInvalidOut(BaseModel):
    detail: str
    problems: list[ProblemOut] = Field(default_factory=list, description="Each problem of the workflow file "
                                                                         "(none when the body was not one).")


class ParameterProblemOut(BaseModel):
    loc: list[str | int] = Field(description='Where: e.g. ["query", "enabled"].')
    msg: str
    type: str
    input: Any = None


class ParametersInvalidOut(BaseModel):
    """FastAPI's answer to a parameter that is not what the operation takes."""

    detail: list[ParameterProblemOut]


class ValidationOut(BaseModel):
    valid: bool
    name: str | None = None
    trigger: str | None = None
    steps: int | None = None
    problems: list[ProblemOut]


class RunOut(BaseModel):
    id: int
    workflow: str
    status: RunStatus
    attempt: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    next_attempt_at: datetime | None
    error: str | None


class RunPageOut(BaseModel):
    runs: list[RunOut] = Field(description="Newest first.")
    next_before_id: int | None = Field(description="Pass as before_id for the next (older) page; null at the end.")


class EventOut(BaseModel):
    trigger_key: str
    entity: str
    record_id: str
    sync_token: str | None
    realm_id: str
    changed_at: datetime | None
    seen_at: datetime
    record: Any = Field(description="The QuickBooks record the trigger fired for.")


class StepOut(BaseModel):
    step_id: str
    position: int
    status: Literal["pending", "sent", "succeeded", "failed", "skipped"]
    attempts: int
    request_id: str
    input: Any
    output: Any
    error: Any
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None


class RunDetailOut(RunOut):
    event: EventOut | None
    steps: list[StepOut]


class RefusalOut(BaseModel):
    at: str
    status: int
    reason: str
    client: str | None


class WebhooksOut(BaseModel):
    """What POST /webhooks/intuit has seen since the server started."""

    configured: bool = Field(description="Whether a verifier token is set (without it every delivery is refused).")
    accepted: int
    events: int
    polls_requested: int
    refused: int
    last_accepted_at: str | None
    recent_refusals: list[RefusalOut]
    unknown_realms: list[str]


class WorkerStateOut(BaseModel):
    id: int
    alive: bool = Field(description="Whether its last heartbeat is recent (within 30 s).")
    last_heartbeat: datetime
    seconds_since_heartbeat: float
    jobs_running: int
    jobs: list[str] = Field(description="The jobs it is doing: task(arguments).")


class QueueDepthOut(BaseModel):
    queue: str
    todo: int = Field(description="Jobs ready, waiting for a worker.")
    scheduled: int = Field(description="Jobs waiting for their time (a run's next attempt).")
    doing: int = Field(description="Jobs being done.")
    oldest_waiting_seconds: float | None = Field(description="How long the oldest ready job has waited.")


class RunCountsOut(BaseModel):
    queued: int
    running: int
    waiting_retry: int
    failed_last_24h: int
    waiting: int = Field(default=0, description="Runs waiting for a `wait` step's time or an approval's decision.")


class RealmRateOut(BaseModel):
    realm_id: str
    connections: list[str] = Field(description="The connections to this company.")
    requests_last_minute: int = Field(description="Requests that ended in the last 60 s, all processes together.")
    in_flight: int
    throttles: int = Field(description="429 answers since the pacer first saw this company.")
    paused_for_seconds: float = Field(description="Above 0: every process waits this long after a 429.")


class ConnectionNeedOut(BaseModel):
    name: str
    realm_id: str
    detail: str | None


class StatusOut(BaseModel):
    """The deployment at a glance, as `qbflow status --json` prints it."""

    checked_at: datetime
    database: str = Field(description="The database URL, password hidden.")
    backend: str = Field(description="sqlite or postgresql.")
    mode: Literal["embedded", "workers"] = Field(description="workers once a `qbflow worker` has run on this "
                                                             "database (Procrastinate's tables exist).")
    workers: list[WorkerStateOut] | None = Field(description="Null in embedded mode.")
    queues: list[QueueDepthOut] | None = Field(description="Null in embedded mode.")
    runs: RunCountsOut
    rates_measured: bool = Field(description="Whether request rates are known (a shared pacer: PostgreSQL or Redis).")
    rates_note: str
    realms: list[RealmRateOut] = Field(description="Per company (empty when not measured).")
    limit_per_minute: int = Field(description="Intuit's requests a minute per company.")
    limit_in_flight: int = Field(description="Intuit's requests in flight per company.")
    reconnect: list[ConnectionNeedOut] = Field(description="Connections needing `qbflow connect NAME`.")


class RetryOut(BaseModel):
    run: RunOut
    previous_status: RunStatus
    detail: str


# --- helpers ----------------------------------------------------------------------------------------------

def _runs(request: Request) -> RunStore:
    return RunStore(request.app.state.store.engine)


def _not_found(message: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, message)


def _workflow_missing(name: str) -> HTTPException:
    return _not_found(f"no workflow named {name!r}; GET /api/workflows lists them")


def _run_missing(run_id: int) -> HTTPException:
    return _not_found(f"no run with id {run_id}; GET /api/runs lists them")


def _storable(name: str) -> bool:
    # A name no database can hold (PostgreSQL refuses NUL) names nothing stored.
    return "\x00" not in name


def _run_out(run: RunRecord) -> RunOut:
    return RunOut(id=run.id, workflow=run.workflow_name, status=run.status, attempt=run.attempt,  # type: ignore[arg-type]
                  created_at=run.created_at, started_at=run.started_at, finished_at=run.finished_at,
                  next_attempt_at=run.next_attempt_at, error=run.error)


def _event_out(event: EventRecord) -> EventOut:
    return EventOut(trigger_key=event.trigger_key, entity=event.entity, record_id=event.record_id,
                    sync_token=event.sync_token, realm_id=event.realm_id, changed_at=event.changed_at,
                    seen_at=event.seen_at, record=redacted(event.record))


def _step_out(step: StepRecord) -> StepOut:
    duration = None
    if step.started_at is not None and step.finished_at is not None:
        duration = (step.finished_at - step.started_at).total_seconds()
    return StepOut(step_id=step.step_id, position=step.position, status=step.status,  # type: ignore[arg-type]
                   attempts=step.attempts, request_id=step.request_id, input=redacted(step.input),
                   output=redacted(step.output), error=redacted(step.error), started_at=step.started_at,
                   finished_at=step.finished_at, duration_seconds=duration)


def _workflow_fields(overview: WorkflowOverview) -> dict[str, Any]:
    record = overview.record
    definition = record.definition if isinstance(record.definition, dict) else {}
    trigger = overview.trigger
    interval = trigger.get("poll_interval")
    last = overview.last_run
    return {
        "name": record.name,
        "description": definition.get("description"),
        "enabled": record.enabled,
        "paused_reason": record.paused_reason,
        "trigger": TriggerOut(kind=trigger_kind(trigger), key=str(trigger.get("key", trigger_kind(trigger))),
                              connection=str(trigger.get("connection", definition.get("connection") or "")),
                              poll_interval_seconds=float(interval) if isinstance(interval, int | float) else None,
                              filter=trigger.get("filter")),
        "steps": len(definition.get("steps") or []),
        "last_run": None if last is None else LastRunOut(
            id=last.id, status=last.status, at=last.finished_at or last.started_at or last.created_at),  # type: ignore[arg-type]
        "last_poll_at": overview.last_poll_at,
        "next_poll_at": overview.next_poll_at,
        "last_poll_error": overview.last_error,
        "source_path": record.source_path,
        "updated_at": record.updated_at,
    }


def _overview(runs: RunStore, name: str) -> WorkflowOverview:
    found = workflow_overviews(runs, names=[name]) if _storable(name) else []
    if not found:
        raise _workflow_missing(name)
    return found[0]


def _detail(overview: WorkflowOverview) -> WorkflowDetailOut:
    definition = overview.record.definition if isinstance(overview.record.definition, dict) else {}
    return WorkflowDetailOut(**_workflow_fields(overview), definition=redacted(definition))  # type: ignore[arg-type]


def _problems(problems: list[WorkflowProblem] | tuple[WorkflowProblem, ...]) -> list[ProblemOut]:
    return [ProblemOut(line=p.line, field=p.field, message=p.message, severity=p.severity) for p in problems]


def _invalid(problems: list[WorkflowProblem] | tuple[WorkflowProblem, ...]) -> JSONResponse:
    body = WorkflowInvalidOut(detail=f"the workflow is not valid ({len(problems)} problem(s)); nothing was stored",
                              problems=_problems(problems))
    return JSONResponse(body.model_dump(mode="json"), status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


_WORKFLOW_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": 'The workflow file: JSON `{"yaml": "..."}`, or the YAML itself as text/yaml.',
        "content": {
            "application/json": {"schema": WorkflowText.model_json_schema()},
            "text/yaml": {"schema": {"type": "string", "maxLength": MAX_WORKFLOW_BYTES}},
        },
    }
}


async def _workflow_text(request: Request) -> str:
    """The YAML text of a POSTed workflow, from JSON {"yaml": ...} or a text/yaml body."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if len(body) > MAX_WORKFLOW_BYTES:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                            f"the workflow is {len(body)} bytes; at most {MAX_WORKFLOW_BYTES} are accepted")
    if content_type in ("application/json", ""):
        try:
            return WorkflowText.model_validate_json(body or b"null").yaml
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
                                 for e in error.errors(include_url=False))
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                f'expected a JSON object {{"yaml": "<the workflow file>"}}: {problems}') from None
    if content_type in YAML_TYPES:
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError as error:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                f"the YAML text is not UTF-8 (byte {error.start})") from None
    raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                        f"Content-Type {content_type!r} is not accepted; send application/json "
                        f'{{"yaml": "..."}} or text/yaml')


def _connection_names(request: Request) -> list[str]:
    return [record.name for record in request.app.state.store.connections.list()]


# --- connections ------------------------------------------------------------------------------------------

@router.get("/connections", response_model=list[ConnectionOut], tags=["connections"])
def list_connections(request: Request) -> list[ConnectionOut]:
    """Every stored connection with its state (ok, or needs_reconnect and why). Never a token or secret."""
    return [ConnectionOut(name=r.name, realm_id=r.realm_id, company_name=r.company_name, environment=r.environment,
                          status=r.status, status_detail=r.status_detail,  # type: ignore[arg-type]
                          created_at=r.created_at, updated_at=r.updated_at)
            for r in request.app.state.store.connections.list()]


@router.delete("/connections/{name}", response_model=ConnectionRemovedOut, tags=["connections"],
               responses={404: {"model": ErrorOut}, 502: {"model": ErrorOut}})
async def remove_connection(
    request: Request,
    name: Annotated[str, Path(description="The connection's name.")],
    force: Annotated[bool, Query(description="Remove it even if Intuit cannot revoke its tokens.")] = False,
) -> ConnectionRemovedOut:
    """Revoke the connection's tokens at Intuit, then delete it (like `qbflow connections remove`)."""
    from qbflow.qbo.connections import revoke_connection
    from qbflow.qbo.errors import QBOError

    store = request.app.state.store
    if not _storable(name):
        raise _not_found(f"no connection named {name!r}; GET /api/connections lists them")
    try:
        record = await asyncio.to_thread(store.connections.get, name)
    except ConnectionNotFound:
        raise _not_found(f"no connection named {name!r}; GET /api/connections lists them") from None
    revoked = True
    try:
        await revoke_connection(record, transport=request.app.state.transport)
    except QBOError as error:
        if not force:
            raise HTTPException(status.HTTP_502_BAD_GATEWAY,
                                f"could not revoke connection {name!r} at Intuit ({error}); it was kept. "
                                f"Send force=true to remove it anyway (then disconnect the app in QuickBooks)"
                                ) from None
        revoked = False
    try:
        await asyncio.to_thread(store.connections.remove, name)
    except ConnectionNotFound:  # removed meanwhile by someone else: the outcome asked for
        pass
    detail = (f"removed connection {name!r}; its tokens were revoked at Intuit" if revoked else
              f"removed connection {name!r}; Intuit could not revoke its tokens: disconnect the app in QuickBooks")
    return ConnectionRemovedOut(name=name, revoked=revoked, detail=detail)


# --- workflows --------------------------------------------------------------------------------------------

@router.get("/workflows", response_model=list[WorkflowOut], tags=["workflows"])
def list_workflows(request: Request) -> list[WorkflowOut]:
    """Every stored workflow by name: on/off, trigger, last run, last and next poll."""
    return [WorkflowOut(**_workflow_fields(overview)) for overview in workflow_overviews(_runs(request))]


@router.post("/workflows/validate", response_model=ValidationOut, tags=["workflows"], openapi_extra=_WORKFLOW_BODY,
             responses={413: {"model": ErrorOut}, 415: {"model": ErrorOut},
                        422: {"model": ErrorOut, "description": "The body is not a workflow file."}})
async def validate_workflow(request: Request) -> ValidationOut:
    """Check a workflow file like POST /api/workflows does, storing nothing: `valid`, and every problem with its
    line, field and message."""
    text = await _workflow_text(request)
    connections = await asyncio.to_thread(_connection_names, request)
    problems = await asyncio.to_thread(validate_workflow_text, text, source="<workflow>", connections=connections)
    if any(problem.is_error for problem in problems):
        return ValidationOut(valid=False, problems=_problems(problems))
    workflow = load_workflow_text(text, connections=connections)
    return ValidationOut(valid=True, name=workflow.name, trigger=workflow.trigger.label, steps=len(workflow.steps),
                         problems=_problems(problems))


@router.post("/workflows", response_model=WorkflowDetailOut, status_code=status.HTTP_201_CREATED, tags=["workflows"],
             openapi_extra=_WORKFLOW_BODY,
             responses={200: {"model": WorkflowDetailOut, "description": "A workflow of that name was replaced."},
                        413: {"model": ErrorOut}, 415: {"model": ErrorOut},
                        422: {"model": WorkflowInvalidOut | ParametersInvalidOut,
                              "description": "The workflow is not valid (`problems`), or a query parameter."}})
async def add_workflow(
    request: Request,
    response: Response,
    enabled: Annotated[bool, Query(description="Store it enabled (polled) or disabled.")] = True,
) -> WorkflowDetailOut | JSONResponse:
    """Validate a workflow file and store it, like `qbflow workflow add` (a workflow of the same name is
    replaced: 200; a new one: 201). 422 lists every problem with its line, field and message."""
    text = await _workflow_text(request)

    def store() -> tuple[WorkflowOverview | None, str, tuple[WorkflowProblem, ...], Any]:
        runs = _runs(request)
        try:
            workflow = load_workflow_text(text, connections=_connection_names(request))
            record, verb = store_workflow(runs, workflow, None, enabled=enabled)
        except WorkflowInvalid as error:
            return None, "", error.problems, None
        return _overview(runs, record.name), verb, (), ensure_hook(hook_store(request.app), record)

    overview, verb, problems, hook = await asyncio.to_thread(store)
    if overview is None:
        return _invalid(problems)
    if verb == "updated":
        response.status_code = status.HTTP_200_OK
    detail = _detail(overview)
    if hook is not None:
        detail.hook = HookSecretOut(url=hook_url(request.app.state.config.public_url, hook[0]), secret=hook[1])
    return detail


@router.get("/workflows/{name}", response_model=WorkflowDetailOut, tags=["workflows"],
            responses={404: {"model": ErrorOut}})
def get_workflow(request: Request, name: str) -> WorkflowDetailOut:
    """One workflow with its stored definition (secret-looking values masked)."""
    return _detail(_overview(_runs(request), name))


def _set_enabled(request: Request, name: str, enabled: bool) -> WorkflowOut:
    runs = _runs(request)
    if not _storable(name):
        raise _workflow_missing(name)
    try:
        runs.set_enabled(name, enabled)
    except WorkflowNotFound:
        raise _workflow_missing(name) from None
    return WorkflowOut(**_workflow_fields(_overview(runs, name)))


@router.post("/workflows/{name}/enable", response_model=WorkflowOut, tags=["workflows"],
             responses={404: {"model": ErrorOut}})
def enable_workflow(request: Request, name: str) -> WorkflowOut:
    """Turn a workflow on: the engine polls its trigger."""
    return _set_enabled(request, name, True)


@router.post("/workflows/{name}/disable", response_model=WorkflowOut, tags=["workflows"],
             responses={404: {"model": ErrorOut}})
def disable_workflow(request: Request, name: str) -> WorkflowOut:
    """Turn a workflow off: its trigger is no longer polled."""
    return _set_enabled(request, name, False)


class ManualRunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: dict[str, Any] = Field(default_factory=dict, description="Values of the workflow's declared `inputs:`.")


class ManualRunOut(BaseModel):
    run_id: int
    run: RunOut
    detail: str


class InputsInvalidOut(BaseModel):
    detail: str
    problems: list[str] = Field(description='Each input problem, "name: what is wrong".')


@router.post("/workflows/{name}/runs", response_model=ManualRunOut, status_code=status.HTTP_201_CREATED,
             tags=["workflows"], responses={
                 404: {"model": ErrorOut},
                 409: {"model": ErrorOut, "description": "It cannot be started by hand (its trigger, or it is off)."},
                 422: {"model": InputsInvalidOut | ParametersInvalidOut,
                       "description": "The inputs do not fit the workflow's `inputs:` (or the body is not JSON)."}})
def start_run(request: Request, name: str, body: ManualRunIn | None = None) -> ManualRunOut | JSONResponse:
    """Start a run of a manual (or schedule) workflow now, with its inputs (`qbflow workflow run`): queued for the
    engine or the workers, which run it as soon as they can."""
    from qbflow.engine.manual import ManualRunRefused, start_manual_run

    runs = _runs(request)
    if not _storable(name):
        raise _workflow_missing(name)
    try:
        run_id = start_manual_run(runs, name, (body or ManualRunIn()).inputs, started_by="api")
    except WorkflowNotFound:
        raise _workflow_missing(name) from None
    except ManualRunRefused as error:
        if not error.problems:
            raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
        out = InputsInvalidOut(detail=str(error).splitlines()[0], problems=error.problems)
        return JSONResponse(out.model_dump(mode="json"), status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
    return ManualRunOut(run_id=run_id, run=_run_out(runs.get_run(run_id)),
                        detail=f"run {run_id} is queued; GET /api/runs/{run_id} follows it")


# --- runs -------------------------------------------------------------------------------------------------

RunId = Annotated[int, Path(ge=1, le=MAX_ID, description="The run's id.")]


@router.get("/runs", response_model=RunPageOut, tags=["runs"], responses={404: {"model": ErrorOut}})
def list_runs(
    request: Request,
    workflow: Annotated[str | None, Query(description="Only this workflow's runs (its name).")] = None,
    status_: Annotated[RunStatus | None, Query(alias="status", description="Only runs with this status.")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="At most this many runs.")] = 50,
    before_id: Annotated[int | None, Query(ge=1, le=MAX_ID, description="Only runs older than this id (the "
                                                                        "previous page's next_before_id).")] = None,
) -> RunPageOut:
    """Runs, newest first, optionally of one workflow and/or one status, a page at a time."""
    runs = _runs(request)
    if workflow is not None:
        if not _storable(workflow):
            raise _workflow_missing(workflow)
        try:
            runs.get_workflow(workflow)
        except WorkflowNotFound:
            raise _workflow_missing(workflow) from None
    page = runs.list_runs_before(workflow=workflow, status=status_, before_id=before_id, limit=limit + 1)
    more = len(page) > limit
    page = page[:limit]
    return RunPageOut(runs=[_run_out(run) for run in page], next_before_id=page[-1].id if more else None)


@router.get("/runs/{run_id}", response_model=RunDetailOut, tags=["runs"], responses={404: {"model": ErrorOut}})
def get_run(request: Request, run_id: RunId) -> RunDetailOut:
    """One run: its event and every step's input, output, error and timing (secret-looking values masked)."""
    try:
        run = _runs(request).get_run(run_id)
    except RunNotFound:
        raise _run_missing(run_id) from None
    return RunDetailOut(**_run_out(run).model_dump(), event=None if run.event is None else _event_out(run.event),
                        steps=[_step_out(step) for step in run.steps])


@router.get("/webhooks", response_model=WebhooksOut, tags=["webhooks"])
def webhooks_seen(request: Request) -> WebhooksOut:
    """Intuit's webhook deliveries since the server started: accepted, refused (with why), unknown companies."""
    verifier = request.app.state.settings.webhook_verifier
    return WebhooksOut(configured=bool(verifier and verifier.get_secret_value().strip()),
                       **webhook_stats(request.app).to_dict())


@router.get("/status", response_model=StatusOut, tags=["status"])
def system_status_out(request: Request) -> StatusOut:
    """The database and mode, workers and queue depth (workers mode), runs by status, each company's requests in the
    last minute and in flight beside Intuit's limits, and the connections needing reconnect."""
    current = system_status(request.app.state.store.engine, shared_limits=request.app.state.settings.shared_limits)
    return StatusOut.model_validate(current, from_attributes=True)


@router.post("/runs/{run_id}/retry", response_model=RetryOut, tags=["runs"],
             responses={404: {"model": ErrorOut},
                        409: {"model": ErrorOut, "description": "It cannot be retried (it succeeded or is running)."}})
def retry(request: Request, run_id: RunId) -> RetryOut:
    """Queue a failed, waiting or cancelled run again, like `qbflow runs retry` (steps that reached QuickBooks are
    not done twice). A run already queued stays queued."""
    runs = _runs(request)
    try:
        before = retry_run(runs, run_id)
    except RunNotFound:
        raise _run_missing(run_id) from None
    except RetryRefused as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    after = runs.get_run(run_id)
    detail = (f"run {run_id} is already queued" if before.status == RUN_QUEUED
              else f"run {run_id} was {before.status}; it is queued again")
    return RetryOut(run=_run_out(after), previous_status=before.status, detail=detail)  # type: ignore[arg-type]


__all__ = ["router"]
