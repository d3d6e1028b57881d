"""The dashboard: server-rendered pages for connections, workflows and runs, behind a login.

Pages (Jinja2 templates in `templates/`, one stylesheet in `static/`, no JavaScript, nothing loaded from
elsewhere): `/login`, `/` (overview), `/workflows` (switches and upload), `/workflows/{name}` (trigger and
tree of steps, `views.workflow_tree`), `/hooks` (webhook workflows' URLs, deliveries, secret rotation), `/runs`
(filterable, paged), `/runs/{id}` (one run, steps nested by their ledger paths, secrets masked), `/system`
(`qbflow status`: workers, queues, request rates) and the
browser connect flow (`qbflow.server.connect`, included here).

Every form POST carries the session's CSRF token (`auth.check_csrf`); a form without it gets a 403 page.
Messages for the next page ("flashes") live in the signed session cookie, which is readable by the browser:
nothing secret ever goes there.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from qbflow.engine.status import system_status
from qbflow.engine.stored import ensure_hook, stored_definition
from qbflow.engine.workflow import WorkflowInvalid, load_workflow_text, trigger_kind, validate_workflow_text
from qbflow.redaction import redacted
from qbflow.server import auth, views
from qbflow.server import connect as connect_flow
from qbflow.server.hooks import hook_store, hooks_overview, rotate_hook
from qbflow.server.webhooks import webhook_stats
from qbflow.store.approvals import ApprovalStore
from qbflow.store.models import RUN_STATUSES
from qbflow.store.runs import RunNotFound, RunStore, WorkflowNotFound, WorkflowRecord

__all__ = ["flash", "render", "router", "safe_next"]

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
STATIC_FILES = {"dashboard.css": "text/css"}

RETRYABLE = ("failed", "waiting_retry", "cancelled")  # as `qbflow runs retry`
RUNS_PER_PAGE = 25
RECENT_RUNS = 8
MAX_UPLOAD_BYTES = 256 * 1024
_FLASH = "flash"

router = APIRouter(include_in_schema=False)
router.include_router(connect_flow.router)
LoggedIn = Depends(auth.require_login)


# --- helpers shared with the connect flow ----------------------------------------------------------------

def _at(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def _json(value: Any) -> str:
    return json.dumps(redacted(value), indent=2, ensure_ascii=False, default=str)


def _seconds(started: datetime | None, finished: datetime | None) -> str:
    if started is None or finished is None:
        return ""
    return f"{(finished - started).total_seconds():.3f} s"


templates.env.filters["at"] = _at
templates.env.filters["masked_json"] = _json
templates.env.globals["seconds"] = _seconds


def flash(request: Request, text: str, kind: str = "ok") -> None:
    """A message for the next page shown (kind "ok" or "error"). Never put a secret here: the session cookie
    is signed, not encrypted."""
    request.session.setdefault(_FLASH, [])
    request.session[_FLASH] = [*request.session[_FLASH], [kind, text]][-5:]


def render(request: Request, name: str, context: dict[str, Any] | None = None, status_code: int = 200) -> HTMLResponse:
    """A page: the template with the session's CSRF token and pending messages."""
    messages = request.session.pop(_FLASH, []) if auth.logged_in(request) or name == "login.html" else []
    page = {"request": request, "csrf": auth.csrf_token(request), "messages": messages,
            "logged_in": auth.logged_in(request), **(context or {})}
    response = templates.TemplateResponse(request, name, page, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"
    return response


def problem_page(request: Request, status_code: int, title: str, text: str, back: str = "/",
                 back_label: str = "Back to the dashboard") -> HTMLResponse:
    """An error page saying what went wrong, with a way back."""
    return render(request, "message.html", {"title": title, "text": text, "back": back, "back_label": back_label},
                  status_code=status_code)


def csrf_refused(request: Request, submitted: str | None) -> HTMLResponse | None:
    """None when `submitted` is the session's CSRF token; otherwise the 403 page to answer with."""
    try:
        auth.check_csrf(request, submitted)
    except HTTPException as exc:
        return problem_page(request, 403, "Form refused", str(exc.detail), back="/")
    return None


def safe_next(target: str | None, default: str = "/") -> str:
    """`target` if it is a path on this server ("/runs?x=1"), else `default`: never another site."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    if any(ord(char) < 32 or ord(char) == 127 for char in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target


def _store(request: Request) -> Any:
    return request.app.state.store


def _runs(request: Request) -> RunStore:
    return RunStore(_store(request).engine)


def _redirect(target: str) -> RedirectResponse:
    return RedirectResponse(target, status_code=303)


# --- static files ------------------------------------------------------------------------------------------

@router.get("/static/{name}")
def static_file(name: str) -> Response:
    if name not in STATIC_FILES:
        raise HTTPException(404, "no such file")
    return FileResponse(HERE / "static" / name, media_type=STATIC_FILES[name],
                        headers={"Cache-Control": "public, max-age=300"})


# --- login ---------------------------------------------------------------------------------------------------

@router.get("/login")
def login_page(request: Request, next: str = "/") -> Response:  # noqa: A002 - the query parameter's name
    if auth.logged_in(request):
        return _redirect(safe_next(next))
    return render(request, "login.html", {"next": safe_next(next)})


@router.post("/login")
def login(request: Request, token: Annotated[str, Form()] = "", csrf: Annotated[str, Form()] = "",
          next: Annotated[str, Form()] = "/") -> Response:  # noqa: A002
    if (refused := csrf_refused(request, csrf)) is not None:
        return refused
    target = safe_next(next)
    if not auth.log_in(request, token.strip()):
        return render(request, "login.html", {"next": target, "error": (
            "That is not the API token. Use the value of QBFLOW_API_TOKEN, or the token the server printed on "
            "its first start.")}, status_code=401)
    return _redirect(target)


@router.post("/logout")
def logout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
    if (refused := csrf_refused(request, csrf)) is not None:
        return refused
    auth.log_out(request)
    return _redirect("/login")


# --- overview ------------------------------------------------------------------------------------------------

def _next_polls(runs: RunStore) -> dict[int, datetime | None]:
    """Each workflow's earliest next poll among its cursors (None: at the next cycle)."""
    polls: dict[int, datetime | None] = {}
    for cursor in runs.list_cursors():
        known = polls.get(cursor.workflow_id, cursor.next_poll_at)
        if cursor.next_poll_at is None or known is None:
            polls[cursor.workflow_id] = None
        else:
            polls[cursor.workflow_id] = min(known, cursor.next_poll_at)
    return polls


def _workflow_rows(runs: RunStore, records: list[WorkflowRecord] | None = None) -> list[dict[str, Any]]:
    polls = _next_polls(runs)
    rows = []
    for record in runs.list_workflows() if records is None else records:
        definition = record.definition if isinstance(record.definition, dict) else {}
        trigger = definition.get("trigger") or {}
        last = next(iter(runs.list_runs(workflow=record.name, limit=1)), None)
        if not record.enabled:
            next_poll = f"off (paused by qbflow: {record.paused_reason})" if record.paused_reason else "off"
        elif record.id not in polls:
            next_poll = "at the next cycle (first poll)"
        elif polls[record.id] is None:
            next_poll = "at the next cycle"
        else:
            next_poll = _at(polls[record.id])
        if trigger_kind(trigger) == "manual" and record.enabled:
            next_poll = "when started by hand"
        rows.append({"record": record, "trigger": trigger.get("key", trigger_kind(trigger)),
                     "runnable": record.enabled and trigger_kind(trigger) in ("manual", "schedule"),
                     "connection": trigger.get("connection", definition.get("connection") or "-"),
                     "steps": len(definition.get("steps") or []), "last": last, "next_poll": next_poll,
                     "polled": record.id in polls})
    return rows


def _environment_label(record: Any) -> str:
    if record.environment == "local":
        return f"local sandbox ({record.api_base})"
    return {"production": "Intuit production", "sandbox": "Intuit sandbox"}.get(record.environment,
                                                                               record.environment)


def _connection_rows(request: Request) -> list[dict[str, Any]]:
    engine = request.app.state.engine
    paused = getattr(engine, "paused", {}) if engine is not None else {}
    rows = []
    for record in _store(request).connections.list():
        # Only what a page may show: never the record itself (it holds the decrypted tokens).
        ok = not record.needs_reconnect and record.name not in paused
        rows.append({"name": record.name, "company": record.company_name or "", "realm_id": record.realm_id,
                     "environment": record.environment, "environment_label": _environment_label(record),
                     "sandbox_url": record.api_base if record.environment == "local" else "",
                     "ok": ok, "detail": record.status_detail or ""})
    return rows


@router.get("/", dependencies=[LoggedIn])
def overview(request: Request) -> HTMLResponse:
    runs = _runs(request)
    return render(request, "overview.html", {
        "connections": _connection_rows(request), "workflows": _workflow_rows(runs),
        "recent": runs.list_runs(limit=RECENT_RUNS), "engine": request.app.state.engine is not None,
        "environments": connect_flow.ENVIRONMENT_CHOICES, "credentials": connect_flow.credentials_configured(request),
        "webhooks": webhook_stats(request.app), "webhooks_configured": bool(
            request.app.state.settings.webhook_verifier
            and request.app.state.settings.webhook_verifier.get_secret_value().strip()),
    })


# --- system ---------------------------------------------------------------------------------------------------

def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


templates.env.filters["age"] = _age


@router.get("/system", dependencies=[LoggedIn])
def system_page(request: Request) -> HTMLResponse:
    """What `qbflow status` shows: database and mode, workers, queues, runs, request rates, reconnects."""
    from qbflow.engine.poll_requests import WorkerPollRequests

    engine = request.app.state.engine
    handoff = isinstance(engine, WorkerPollRequests)  # `serve --workers`: webhooks defer polls to the workers
    current = system_status(_store(request).engine, shared_limits=request.app.state.settings.shared_limits)
    return render(request, "system.html", {"status": current, "engine": engine is not None and not handoff,
                                           "handoff": handoff})



@router.get("/workflows", dependencies=[LoggedIn])
def workflows_page(request: Request) -> HTMLResponse:
    return render(request, "workflows.html", {"workflows": _workflow_rows(_runs(request))})


@router.post("/workflows/state", dependencies=[LoggedIn])
def set_workflow_state(request: Request, name: Annotated[str, Form()] = "", enabled: Annotated[str, Form()] = "",
                       csrf: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "/workflows") -> Response:  # noqa: A002
    if (refused := csrf_refused(request, csrf)) is not None:
        return refused
    if enabled not in ("on", "off"):
        return problem_page(request, 400, "Not changed", "The form must say whether to turn the workflow on or off.",
                            back="/workflows", back_label="Back to the workflows")
    try:
        _runs(request).set_enabled(name, enabled == "on")
    except WorkflowNotFound as exc:
        flash(request, str(exc), "error")
    else:
        flash(request, f"Workflow {name!r} is now {'on' if enabled == 'on' else 'off'}.")
    return _redirect(safe_next(next, "/workflows"))


def _run_form(request: Request, name: str, values: dict[str, str] | None = None, problems: list[str] | None = None,
              status_code: int = 200) -> HTMLResponse:
    """The "Run now" page of a workflow: one field per declared input (`inputs:`)."""
    from qbflow.engine.workflow import Workflow

    try:
        record = _runs(request).get_workflow(name)
    except WorkflowNotFound as exc:
        return problem_page(request, 404, "No such workflow", str(exc), back="/workflows",
                            back_label="Back to the workflows")
    workflow = Workflow.model_validate(record.definition)
    fields = [{"name": key, "spec": spec, "value": (values or {}).get(key, "" if spec.default is None else
                                                                      _default_text(spec.default))}
              for key, spec in workflow.inputs.items()]
    return render(request, "workflow_run.html", {"workflow": record, "kind": workflow.trigger.kind, "fields": fields,
                                                  "problems": problems or []}, status_code=status_code)


def _default_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value) if isinstance(value, dict | list) else str(value)


@router.get("/workflows/run", dependencies=[LoggedIn])
def run_now_page(request: Request, name: str = "") -> HTMLResponse:
    return _run_form(request, name)


@router.post("/workflows/run", dependencies=[LoggedIn])
async def run_now(request: Request) -> Response:
    """Start a manual run with the form's inputs; its page shows how it goes."""
    from qbflow.engine.manual import ManualRunRefused, form_value, start_manual_run
    from qbflow.engine.workflow import Workflow

    form = await request.form()
    if (refused := csrf_refused(request, str(form.get("csrf") or ""))) is not None:
        return refused
    name = str(form.get("name") or "")
    runs = _runs(request)
    try:
        workflow = Workflow.model_validate(runs.get_workflow(name).definition)
        texts = {key: str(form.get(f"input.{key}") or "") for key in workflow.inputs}
        # An empty field is no value (its default applies); an unticked box is false.
        given = {key: value for key, spec in workflow.inputs.items()
                 if (value := form_value(spec.type, texts[key])) is not None}
        run_id = start_manual_run(runs, name, given, started_by="dashboard")
    except WorkflowNotFound as exc:
        return problem_page(request, 404, "No such workflow", str(exc), back="/workflows",
                            back_label="Back to the workflows")
    except ManualRunRefused as exc:
        if exc.problems:
            return _run_form(request, name, texts, exc.problems, status_code=422)
        return problem_page(request, 409, "Not started", str(exc), back="/workflows",
                            back_label="Back to the workflows")
    flash(request, f"Run {run_id} of {name!r} is queued; the engine runs it.")
    return _redirect(f"/runs/{run_id}")


@router.post("/workflows/upload", dependencies=[LoggedIn])
async def upload_workflow(request: Request, file: Annotated[UploadFile | None, File()] = None,
                          enable: Annotated[str, Form()] = "", csrf: Annotated[str, Form()] = "") -> Response:
    if (refused := csrf_refused(request, csrf)) is not None:
        return refused
    runs = _runs(request)

    def again(status: int, **context: Any) -> HTMLResponse:
        return render(request, "workflows.html", {"workflows": _workflow_rows(runs), **context}, status_code=status)

    if file is None or not file.filename:
        return again(400, upload_error="Choose a workflow file (YAML) to upload.")
    filename = Path(file.filename).name
    data = await file.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        return again(400, upload_error=f"{filename} is larger than {MAX_UPLOAD_BYTES // 1024} KiB; a workflow file "
                                       "is a few lines of YAML.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return again(400, upload_error=f"{filename} is not UTF-8 text; upload the workflow's YAML file.")
    connections = [record.name for record in await asyncio.to_thread(_store(request).connections.list)]
    problems = [p for p in validate_workflow_text(text, source=filename, connections=connections) if p.is_error]
    if not problems:
        try:
            workflow = load_workflow_text(text, source=filename, connections=connections)
        except WorkflowInvalid as exc:
            problems = list(exc.problems)
    if problems:
        return again(400, upload_file=filename, problems=problems)
    try:
        runs.get_workflow(workflow.name)
        verb = "updated"
    except WorkflowNotFound:
        verb = "added"
    record = runs.upsert_workflow(workflow.name, f"upload:{filename}", stored_definition(workflow),
                                  enabled=bool(enable))
    flash(request, f"{filename}: workflow {record.name!r} {verb} ({'on' if record.enabled else 'off'}), trigger "
                   f"{workflow.trigger.label}, {len(workflow.steps)} step(s).")
    made = ensure_hook(hook_store(request.app), record)
    if made is not None and made[1] is not None:  # a new webhook URL: its secret goes on a page, never in a flash
        return _hooks_page(request, revealed=(made[0].workflow, made[1]))
    return _redirect("/workflows")


# --- hooks ----------------------------------------------------------------------------------------------------

def _hooks_page(request: Request, revealed: tuple[str, str] | None = None) -> HTMLResponse:
    hooks = hooks_overview(request.app)
    shown = None
    if revealed is not None:
        url = next((h.url for h in hooks if h.workflow == revealed[0]), "")
        shown = {"workflow": revealed[0], "secret": revealed[1], "url": url}
    return render(request, "hooks.html", {"hooks": hooks, "revealed": shown})


@router.get("/hooks", dependencies=[LoggedIn])
def hooks_page(request: Request) -> HTMLResponse:
    """Webhook workflows' URLs, recent deliveries and refusals; a new secret is shown here once."""
    return _hooks_page(request)


@router.post("/hooks", dependencies=[LoggedIn])
def rotate_hook_secret(request: Request, workflow: Annotated[str, Form()] = "",
                       csrf: Annotated[str, Form()] = "") -> Response:
    if (refused := csrf_refused(request, csrf)) is not None:
        return refused
    try:
        hook, secret = rotate_hook(request.app, workflow)
    except HTTPException as exc:
        return problem_page(request, 404, "Not rotated", str(exc.detail), back="/hooks", back_label="Back to the hooks")
    return _hooks_page(request, revealed=(hook.workflow, secret))


@router.get("/workflows/{name:path}", dependencies=[LoggedIn])
def workflow_page(request: Request, name: str) -> HTMLResponse:
    """One workflow: its trigger, its steps as a tree (branches, loops, approvals, on_error), its recent runs."""
    runs = _runs(request)
    try:
        record = runs.get_workflow(name)
    except WorkflowNotFound as exc:
        return problem_page(request, 404, "No such workflow", str(exc), back="/workflows",
                            back_label="Back to the workflows")
    [row] = _workflow_rows(runs, [record])
    workflow = views.stored_workflow(record.definition)
    steps, on_error = views.workflow_tree(workflow) if workflow is not None else ([], [])
    trigger = views.trigger_rows(workflow, next_poll=row["next_poll"]) if workflow is not None else []
    if workflow is not None and workflow.trigger.kind == "webhook":
        hook = next((h for h in hooks_overview(request.app, recent=1) if h.workflow == record.name), None)
        trigger.append(("URL", hook.url if hook is not None else "none yet (store the workflow again to make one)"))
    return render(request, "workflow.html", {
        "workflow": record, "definition": workflow, "row": row, "trigger": trigger, "steps": steps,
        "on_error": on_error, "recent": runs.list_runs(workflow=record.name, limit=RECENT_RUNS)})


# --- runs ---------------------------------------------------------------------------------------------------

@router.get("/runs", dependencies=[LoggedIn])
def runs_page(request: Request, workflow: str = "", status: str = "",
              before: Annotated[int | None, Query(ge=1)] = None) -> HTMLResponse:
    runs = _runs(request)
    workflows = [record.name for record in runs.list_workflows()]
    context: dict[str, Any] = {"workflows": workflows, "statuses": RUN_STATUSES, "workflow": workflow,
                               "status": status, "before": before, "runs": [], "older": None}
    if status and status not in RUN_STATUSES:
        context["error"] = f"Unknown status {status!r}: choose one of {', '.join(RUN_STATUSES)}."
        return render(request, "runs.html", context, status_code=400)
    if workflow and workflow not in workflows:
        context["error"] = f"No workflow is named {workflow!r}."
        return render(request, "runs.html", context, status_code=404)
    page = runs.list_runs_before(workflow or None, status or None, before_id=before, limit=RUNS_PER_PAGE + 1)
    context["runs"] = page[:RUNS_PER_PAGE]
    filters = {key: value for key, value in (("workflow", workflow), ("status", status)) if value}
    if len(page) > RUNS_PER_PAGE:
        context["older"] = "/runs?" + urlencode({**filters, "before": page[RUNS_PER_PAGE - 1].id})
    if before is not None:
        context["newest"] = "/runs" + (f"?{urlencode(filters)}" if filters else "")
    return render(request, "runs.html", context)


@router.get("/runs/{run_id}", dependencies=[LoggedIn])
def run_page(request: Request, run_id: int) -> HTMLResponse:
    try:
        run = _runs(request).get_run(run_id)
    except RunNotFound:
        return problem_page(request, 404, "No such run", f"There is no run with id {run_id}.", back="/runs",
                            back_label="Back to the runs")
    try:
        workflow = views.stored_workflow(_runs(request).get_workflow(run.workflow_name).definition)
    except WorkflowNotFound:
        workflow = None
    steps, on_error = views.run_tree(run, workflow)
    return render(request, "run.html", {"run": run, "retryable": run.status in RETRYABLE, "steps": steps,
                                        "on_error": on_error,
                                        "waiting": views.waiting_for(run, ApprovalStore.of(_store(request)))})


@router.post("/runs/{run_id}/retry", dependencies=[LoggedIn])
def retry_run(request: Request, run_id: int, csrf: Annotated[str, Form()] = "") -> Response:
    if (refused := csrf_refused(request, csrf)) is not None:
        return refused
    runs = _runs(request)
    try:
        run = runs.get_run(run_id)
    except RunNotFound:
        return problem_page(request, 404, "No such run", f"There is no run with id {run_id}.", back="/runs",
                            back_label="Back to the runs")
    if run.status == "queued":
        flash(request, f"Run {run.id} is already queued.")
    elif run.status not in RETRYABLE:
        why = "it succeeded" if run.status == "succeeded" else f"it is {run.status}"
        flash(request, f"Run {run.id} cannot be retried: {why} (only failed, waiting_retry or cancelled runs can be).",
              "error")
    else:
        try:
            runs.retry(run.id)
        except ValueError as exc:  # it changed state meanwhile
            flash(request, f"Run {run.id} cannot be retried: {exc}.", "error")
        else:
            flash(request, f"Run {run.id} was {run.status}; it is queued again.")
    return _redirect(f"/runs/{run.id}")
