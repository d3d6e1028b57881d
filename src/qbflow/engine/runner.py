"""The runner: one claimed run, step by step, with a ledger that makes crashes and retries safe.

    runner = Runner(runs, clients=store_clients(store))
    await runner.resume_unfinished()          # at start: runs a crash left "running"
    while (done := await runner.run_next()) is not None:
        ...
    report = await test_workflow(workflow, live=False, clients=store_clients(store))   # `qbflow workflow test`

For each step, in order: `when` is rendered (false: the step is recorded "skipped"), then `input` with the
context (`trigger` = the event's record, `steps.<id>.output` = earlier outputs, `run` = id and creation time),
then the input is checked against the action's model (a bad input never reaches QuickBooks). The ledger
records "sent" with the rendered input BEFORE the request goes out, and the outcome after.

Idempotency (DESIGN.md guarantee 2): a connector action runs with `request_id = runs.step_request_id(run,
step)`, the same on every retry and resume of that step, so QBO replays its first answer instead of writing
twice. On top of that, a create retried after an ambiguous failure (a transient error, or a crash after "sent")
first looks for the record an earlier try made (`connector.lookup.find_created`: by DocNumber, else by the fields
it sent, among records created since the step started) and uses it instead of creating again.

Resuming: a step the ledger has as "succeeded" is not run again (its stored output is reused); "skipped"
stays skipped; anything else (sent, failed, pending) runs again with the same request id.

Errors: after a transient one (QBO Transient/RateLimited, connection errors and timeouts, 5xx of
`http.request`) the run goes to `waiting_retry` with an exponential `next_attempt_at` and gives its place up;
the step's one budget (`RetrySettings`: tries and total time, every request counted, the client making no
retries of its own inside a run) decides when it fails instead. Permanent ones (bad input, template
errors, unresolved references, QBO validation, not found, ...) fail the run at once with the reason. A
connection that needs reconnecting puts the run in `waiting_retry` (`reconnect_wait`) with its message, so
the run carries on, missing nothing, once `qbflow connect NAME` has been run.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from pydantic import BaseModel, TypeAdapter

from qbflow.connector.base import ActionContext, ActionInputError, ReferenceCache
from qbflow.connector.lookup import find_created
from qbflow.connector.refs import ReferenceError as RefError
from qbflow.connector.registry import UnknownAction, action
from qbflow.connector.triggers import trigger as trigger_def
from qbflow.engine import templates
from qbflow.engine.steps import HttpStepError, http_request, log_message, parse_generic
from qbflow.engine.templates import TemplateError, make_context
from qbflow.engine.workflow import GENERIC_STEPS, Step, Workflow
from qbflow.errors import QBFlowError
from qbflow.qbo.client import QBOClient, single_try
from qbflow.qbo.errors import NeedsReconnect, QBOError, RateLimited, Transient
from qbflow.store.models import (
    RUN_FAILED,
    RUN_RUNNING,
    RUN_SUCCEEDED,
    RUN_WAITING_RETRY,
    STEP_FAILED,
    STEP_SENT,
    STEP_SKIPPED,
    STEP_SUCCEEDED,
    utcnow,
)
from qbflow.store.runs import RunRecord, RunStore, StepOutcome, StepRecord, request_id_for

__all__ = [
    "WRITE_OPERATIONS",
    "ClientFactory",
    "RetrySettings",
    "RunNotClaimed",
    "Runner",
    "StepReport",
    "TestReport",
    "classify",
    "error_json",
    "store_clients",
    "test_workflow",
    "workflow_from_definition",
]

log = logging.getLogger("qbflow.runner")

ClientFactory = Callable[[str], Awaitable[QBOClient]]

# Operations that change QuickBooks; anything not listed as a read is treated as a write (the safe side).
WRITE_OPERATIONS = frozenset({"create", "update", "delete", "void", "send", "upload", "find_or_create", "deactivate"})
READ_OPERATIONS = frozenset({"get", "find", "pdf"})
# Writes whose answer is a version of a record qbflow made (find_or_create may only have found one; sending
# an invoice changes no SyncToken, so its answer is the version someone else made).
_OWN_WRITES = frozenset({"create", "update", "void", "deactivate", "upload"})

Kind = Literal["transient", "reconnect", "permanent"]


@dataclass(frozen=True)
class RetrySettings:
    """The one retry budget of a step: how many tries, how long in all, and the waits between them.

    Every try is one request: inside a run the QBO client makes no retries of its own (`single_try`), so nothing
    multiplies this budget. After a transient failure (QBO 5xx or 429, a reset, a timeout, a 5xx of
    `http.request`) the run waits, holding no place in the engine, `wait_initial * 2**(tries-1)` seconds (at
    most `wait_max`; a 429's Retry-After when longer) and is then claimed again, the step resuming with the same
    request id. The step fails the run once it has made `attempts` tries or `total` seconds have passed since
    its first try. A connection that needs reconnecting is not a failure: the run waits `reconnect_wait`
    (or until `qbflow connect` wakes it) without using up tries.
    """

    attempts: int = 10
    wait_initial: float = 1.0
    wait_max: float = 900.0
    total: float = 3600.0
    reconnect_wait: float = 300.0

    def wait(self, tries: int) -> float:
        """Seconds to wait after the `tries`-th failed try."""
        return min(self.wait_initial * 2 ** max(tries - 1, 0), self.wait_max)


class RunNotClaimed(ValueError):
    """`run_once` was given a run that is not "running" (claim it first with `claim_next_run`)."""


# --- errors ----------------------------------------------------------------------------------------------

def classify(error: BaseException) -> Kind:
    """transient (retry later), reconnect (the connection needs `qbflow connect`), or permanent."""
    if isinstance(error, NeedsReconnect):
        return "reconnect"
    if isinstance(error, Transient | RateLimited | httpx.TransportError):
        return "transient"
    if isinstance(error, HttpStepError):
        return "transient" if error.transient else "permanent"
    return "permanent"


def _field_of(error: BaseException) -> str | None:
    if isinstance(error, ActionInputError) and error.problems:
        return error.problems[0].field
    if isinstance(error, RefError):
        return error.field
    if isinstance(error, QBOError):
        return error.element
    return getattr(error, "field", None) if isinstance(getattr(error, "field", None), str) else None


def error_json(error: BaseException, *, field: str | None = None) -> dict[str, Any]:
    """The error as stored in the ledger: type, message, field (when known), and more where it helps."""
    data: dict[str, Any] = {"type": type(error).__name__, "message": str(error) or type(error).__name__}
    field = field or _field_of(error)
    if field:
        data["field"] = field
    if isinstance(error, ActionInputError):
        data["problems"] = [{"field": p.field, "expected": p.expected} for p in error.problems]
    if isinstance(error, QBOError):
        data.update({k: v for k, v in (("code", error.code), ("status", error.status_code),
                                       ("intuit_tid", error.intuit_tid)) if v is not None})
    if isinstance(error, HttpStepError):
        data["status"] = error.status
    if isinstance(error, NeedsReconnect):
        data["connection"] = error.connection
    return data


class _StepFailed(Exception):
    def __init__(self, kind: Kind, error: dict[str, Any], retry_after: float | None = None, *, tries: int = 1,
                 first_try: dt.datetime | None = None) -> None:
        self.kind = kind
        self.error = error
        self.retry_after = retry_after
        self.tries = tries  # tries of the failed step so far, this one included
        self.first_try = first_try
        super().__init__(error.get("message", ""))


# --- rendering -------------------------------------------------------------------------------------------

def _render_input(value: Any, context: Mapping[str, Any], path: str = "") -> Any:
    """`templates.render` recursively, naming the input field of a failing template."""
    if isinstance(value, str):
        try:
            return templates.render(value, context)
        except TemplateError as error:
            error.field = path or "input"  # type: ignore[attr-defined]
            raise
    if isinstance(value, Mapping):
        return {key: _render_input(item, context, f"{path}.{key}" if path else str(key))
                for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_render_input(item, context, f"{path}[{i}]") for i, item in enumerate(value)]
    return value


def _jsonable(value: Any) -> Any:
    """Plain JSON data (what the ledger keeps): dates and other objects become text."""
    return json.loads(json.dumps(value, default=str))


def workflow_from_definition(definition: Any) -> Workflow:
    """The `Workflow` of a stored definition: the file's data as parsed YAML, or `model_dump(mode="json")`."""
    if isinstance(definition, Workflow):
        return definition
    data = dict(definition)
    trig = dict(data.get("trigger") or {})
    interval = trig.get("poll_interval")
    if isinstance(interval, str) and interval.upper().startswith("P"):  # ISO 8601 duration from model_dump
        trig["poll_interval"] = TypeAdapter(dt.timedelta).validate_python(interval)
        data["trigger"] = trig
    return Workflow.model_validate(data)


def _aware(moment: dt.datetime | None) -> dt.datetime | None:
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    return moment


def store_clients(store: Any, **options: Any) -> ClientFactory:
    """A client factory over stored connections (`qbflow.qbo.connections.client_for`)."""
    from qbflow.qbo.connections import client_for

    async def clients(name: str) -> QBOClient:
        return await client_for(name, store, **options)

    return clients


# --- the runner ------------------------------------------------------------------------------------------

@dataclass
class _RunState:
    clients: dict[str, QBOClient] = field(default_factory=dict)
    references: dict[str, ReferenceCache] = field(default_factory=dict)
    # Step outcomes stored with the run's next write (a "sent" mark or the run's end): see StepOutcome.
    pending: list[StepOutcome] = field(default_factory=list)
    final: RunRecord | None = None  # the run as its end was recorded (without its steps)

    def done(self, step_id: str, position: int, status: str, *, started_at: dt.datetime | None = None,
             **fields: Any) -> None:
        self.pending.append(StepOutcome(step_id, position, status, started_at=started_at, finished_at=utcnow(),
                                        **fields))

    def take(self) -> list[StepOutcome]:
        taken, self.pending = self.pending, []
        return taken


class Runner:
    """Executes claimed runs against the store's ledger.

    `clients(connection_name)` gives a `QBOClient` (production: `store_clients(store)`; tests: the in-process
    sandbox). Clients are fetched once per connection per run and closed after the run when `close_clients`.
    `http_transport` is used by `http.request` steps; `workflows(run)` gives a run's `Workflow` (default: the
    stored definition).
    """

    def __init__(
        self,
        runs: RunStore,
        clients: ClientFactory,
        *,
        retry: RetrySettings | None = None,
        http_transport: httpx.AsyncBaseTransport | None = None,
        http_timeout: float = 30.0,
        workflows: Callable[[RunRecord], Workflow] | None = None,
        close_clients: bool = True,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.runs = runs
        self.clients = clients
        self.retry = retry or RetrySettings()
        self.http_transport = http_transport
        self.http_timeout = http_timeout
        self.workflows = workflows or self._stored_workflow
        self._parsed: dict[int, tuple[dt.datetime, Workflow]] = {}
        self.close_clients = close_clients
        self.now = now

    def _stored_workflow(self, run: RunRecord) -> Workflow:
        # Parsed once per stored version: the run's record says which version it is.
        cached = self._parsed.get(run.workflow_id)
        if cached is not None and run.workflow_updated_at is not None and cached[0] == run.workflow_updated_at:
            return cached[1]
        record = self.runs.get_workflow(run.workflow_name)
        workflow = workflow_from_definition(record.definition)
        self._parsed[record.id] = (record.updated_at, workflow)
        return workflow

    # -- entry points ------------------------------------------------------------------------------

    async def run_next(self, now: dt.datetime | None = None) -> RunRecord | None:
        """Claim the next due run and execute it; its final record, or None when nothing is due."""
        claimed = self.runs.claim_next_run(now)
        return None if claimed is None else await self.run_once(claimed.id, claimed)

    async def resume_unfinished(self) -> list[RunRecord]:
        """Execute every run a crash left "running" (call at start, before claiming new ones)."""
        return [await self.run_once(run.id) for run in self.runs.unfinished_runs()]

    async def run_once(self, run_id: int, claimed: RunRecord | None = None, *, detail: bool = True) -> RunRecord:
        """Execute one claimed (status "running") run to its outcome; returns the run as stored after (without
        its event and steps unless `detail`: the engine needs only the outcome, and reading them back costs a
        query per run). `claimed`: the record `claim_next_run` gave (with its event and steps), saving a read."""
        run = claimed if claimed is not None and claimed.id == run_id else self.runs.get_run(run_id)
        if run.status != RUN_RUNNING:
            raise RunNotClaimed(f"run {run_id} is {run.status!r}, not running: claim it first")
        state = _RunState()
        try:
            try:
                workflow = self.workflows(run)
            except Exception as error:  # a stored definition that no longer loads: nothing can run
                log.exception("run %s: cannot load workflow %r", run.id, run.workflow_name)
                self.runs.finish_run(run.id, RUN_FAILED, f"cannot load workflow {run.workflow_name!r}: {error}")
                return self.runs.get_run(run.id)
            await self._execute(run, workflow, state)
        finally:
            if self.close_clients:
                for client in state.clients.values():
                    try:
                        await client.aclose()
                    except Exception:  # closing must not hide the run's outcome
                        log.warning("closing a client failed", exc_info=True)
        if not detail and state.final is not None:
            return state.final
        return self.runs.get_run(run.id)

    # -- a run -------------------------------------------------------------------------------------

    async def _execute(self, run: RunRecord, workflow: Workflow, state: _RunState) -> None:
        record = run.event.record if run.event is not None else {}
        outputs: dict[str, Any] = {}
        for position, step in enumerate(workflow.steps):
            entry = run.step(step.id)
            if entry is not None and entry.status == STEP_SUCCEEDED:
                outputs[step.id] = entry.output
                continue
            if entry is not None and entry.status == STEP_SKIPPED:
                continue
            context = make_context(trigger=record, steps=outputs, run_id=run.id, started_at=run.created_at)
            try:
                ran, output = await self._step(run, workflow, position, step, entry, context, state)
            except _StepFailed as failure:
                self._fail_run(run, step, failure, state)
                return
            if ran:
                outputs[step.id] = output
        state.final = self.runs.finish_run(run.id, RUN_SUCCEEDED, steps=state.take())

    def _fail_run(self, run: RunRecord, step: Step, failure: _StepFailed, state: _RunState) -> None:
        reason = f"step {step.id!r} ({step.action}): {failure.error.get('message')}"
        now = self.now()
        steps = state.take()
        budget = self.retry
        if failure.kind == "reconnect":
            later = now + dt.timedelta(seconds=budget.reconnect_wait)
            state.final = self.runs.finish_run(run.id, RUN_WAITING_RETRY, reason, later, steps=steps)
        elif failure.kind == "transient":
            spent = (now - failure.first_try).total_seconds() if failure.first_try is not None else 0.0
            if failure.tries >= budget.attempts or spent >= budget.total:
                state.final = self.runs.finish_run(
                    run.id, RUN_FAILED, f"gave up after {failure.tries} tries in {spent:.0f} s: {reason}", steps=steps)
            else:
                wait = max(budget.wait(failure.tries), failure.retry_after or 0.0)
                state.final = self.runs.finish_run(run.id, RUN_WAITING_RETRY,
                                                   f"try {failure.tries} of {budget.attempts}: {reason}",
                                                   now + dt.timedelta(seconds=wait), steps=steps)
        else:
            state.final = self.runs.finish_run(run.id, RUN_FAILED, reason, steps=steps)
        log.info("run %s: %s", run.id, reason)

    # -- a step ------------------------------------------------------------------------------------

    async def _step(self, run: RunRecord, workflow: Workflow, position: int, step: Step,
                    entry: StepRecord | None, context: dict, state: _RunState) -> tuple[bool, Any]:
        """(True, output) when the step ran, (False, None) when skipped; _StepFailed otherwise."""
        rendered: Any = step.input
        began = utcnow()
        try:
            if step.when is not None and not templates.render_condition(step.when, context):
                state.done(step.id, position, STEP_SKIPPED, started_at=began)
                return False, None
            rendered = _jsonable(_render_input(step.input, context))
            if step.action in GENERIC_STEPS:
                the_action, model = None, parse_generic(step.action, rendered)
            else:
                the_action = action(step.action)
                model = the_action.parse(rendered)
        except (TemplateError, ActionInputError, UnknownAction) as error:
            data = error_json(error, field=getattr(error, "field", None) if isinstance(error, TemplateError) else None)
            state.done(step.id, position, STEP_FAILED, error=data, input=_jsonable(rendered), started_at=began)
            raise _StepFailed("permanent", data) from None

        if step.action == "log":
            output = log_message(model, workflow=workflow.name, run_id=run.id, step_id=step.id)
            state.done(step.id, position, STEP_SUCCEEDED, output=output, input=rendered, started_at=began)
            return True, output

        # An earlier attempt may have written already: a crash after "sent", or a transient failure.
        ambiguous = entry is not None and (entry.status == STEP_SENT or (
            entry.status == STEP_FAILED and isinstance(entry.error, dict) and bool(entry.error.get("transient"))))
        started_at = _aware(entry.started_at) if entry is not None else None
        reading = the_action is not None and the_action.operation in READ_OPERATIONS
        request_id = request_id_for(run.uid, step.id)
        tries = (entry.attempts if entry is not None else 0) + 1  # this one included
        first_try = started_at or _aware(began)
        try:
            client = None
            if the_action is not None:
                client = await self._client(step, state)
            if reading:
                # Nothing to undo or repeat safely: no "sent" mark before a read (one write less per step).
                output = _jsonable(await self._call(step, the_action, model, request_id, client, state))
                state.done(step.id, position, STEP_SUCCEEDED, output=output, input=rendered, attempts=1,
                           started_at=began)
                return True, output
            sent = self.runs.mark_step_sent(run.id, step.id, rendered, position=position, before=state.take())
            started_at = started_at or _aware(sent.started_at)
            output = None
            if ambiguous and the_action is not None:
                output = await self._find_created(step, the_action, model, sent.request_id, started_at,
                                                  client, state)
            if output is None:
                output = _jsonable(await self._call(step, the_action, model, sent.request_id, client, state))
            self._note_own_write(run, the_action, client, output)
            # Recorded with the next write: a crash before that leaves it "sent", and the resumed run
            # repeats it under the same request id (QBO answers with the first result).
            state.done(step.id, position, STEP_SUCCEEDED, output=output)
            return True, output
        except Exception as error:  # every failure is classified; none may escape a run
            kind = classify(error)
            data = error_json(error)
            if kind == "transient":
                data["transient"] = True
                log.info("run %s step %s: transient failure (try %d): %s", run.id, step.id, tries, error)
            elif not isinstance(error, QBFlowError):
                log.exception("run %s step %s failed unexpectedly", run.id, step.id)
            # A read's tries are counted here; a write's by its "sent" mark.
            state.done(step.id, position, STEP_FAILED, error=data, started_at=began,
                       **({"input": rendered, "attempts": 1} if reading else {}))
            raise _StepFailed(kind, data, getattr(error, "retry_after", None), tries=tries,
                              first_try=first_try) from None

    def _note_own_write(self, run: RunRecord, the_action: Any, client: QBOClient | None, output: Any) -> None:
        """Remember the record version this step wrote (at once: the next poll may come any moment), so the change
        does not start this workflow again (the loop guard; `trigger.skip_changes_by`)."""
        if (client is None or the_action is None or the_action.operation not in _OWN_WRITES
                or not isinstance(output, Mapping)):
            return
        entity, record_id, token = the_action.entity, output.get("Id"), output.get("SyncToken")
        if entity and record_id is not None and token is not None:
            self.runs.record_own_write(client.realm_id, entity, str(record_id), str(token), run.workflow_id, run.id)

    async def _client(self, step: Step, state: _RunState) -> QBOClient:
        name = step.connection or ""
        if name not in state.clients:
            state.clients[name] = await self.clients(name)
        return state.clients[name]

    async def _call(self, step: Step, the_action: Any, model: BaseModel, request_id: str,
                    client: QBOClient | None, state: _RunState) -> Any:
        if the_action is None:  # http.request
            return await http_request(model, request_id=request_id, transport=self.http_transport,
                                      timeout=self.http_timeout)
        with single_try():  # the step's budget (RetrySettings) counts every request: no retries inside
            return await the_action.run(self._context(step, client, request_id, state), model)

    @staticmethod
    def _context(step: Step, client: QBOClient | None, request_id: str, state: _RunState) -> ActionContext:
        """What an action (or the create lookup) runs with: the client, the request id and the run's reference
        cache for the step's connection."""
        references = state.references.setdefault(step.connection or "", ReferenceCache())
        return ActionContext(client, request_id=request_id, references=references)

    async def _find_created(self, step: Step, the_action: Any, model: BaseModel, request_id: str,
                            since: dt.datetime | None, client: QBOClient | None, state: _RunState) -> dict | None:
        """The record an earlier attempt of this create made (`connector.lookup.find_created`: by DocNumber, else
        by the fields it sent), or None; several candidates raise AmbiguousCreate, which fails the step."""
        if client is None or since is None:
            return None
        with single_try():  # its requests count against the step's budget too
            found = await find_created(self._context(step, client, request_id, state), the_action, model, since)
        if found is not None:
            log.info("found %s %s made by an earlier attempt; not creating it again", the_action.entity,
                     found.get("Id"))
        return found


# --- `qbflow workflow test` ------------------------------------------------------------------------------

_PLACEHOLDER_PREFIX = "<dry run: "


class _Placeholder(dict):
    """A dry-run output: any path into it renders as "<dry run: steps.x.output.a.b>", and it counts as true."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def __missing__(self, key: Any) -> _Placeholder:
        return _Placeholder(f"{self.path}.{key}")

    def __bool__(self) -> bool:
        return True

    def __str__(self) -> str:
        return f"{_PLACEHOLDER_PREFIX}{self.path}>"

    def __deepcopy__(self, memo: dict) -> _Placeholder:
        return self


def _unplaceholder(value: Any) -> Any:
    if isinstance(value, _Placeholder):
        return str(value)
    if isinstance(value, Mapping):
        return {key: _unplaceholder(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_unplaceholder(item) for item in value]
    return value


def _is_placeholder(value: Any) -> bool:
    return isinstance(value, str) and _PLACEHOLDER_PREFIX in value


@dataclass
class StepReport:
    """One step of a test run: its rendered input and output (or error), and how long it took."""

    __test__ = False

    id: str
    action: str
    skipped: bool = False
    dry_run: bool = False
    input: Any = None
    output: Any = None
    error: dict[str, Any] | None = None
    ms: float = 0.0


@dataclass
class TestReport:
    """What `qbflow workflow test NAME` shows: the trigger record used and every step's report."""

    __test__ = False

    workflow: str
    live: bool
    trigger: dict[str, Any]
    steps: list[StepReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(step.error is None for step in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return _jsonable({"workflow": self.workflow, "live": self.live, "ok": self.ok, "trigger": self.trigger,
                          "steps": [vars(step) for step in self.steps]})


async def test_workflow(
    workflow: Workflow,
    *,
    live: bool,
    clients: ClientFactory | None = None,
    sample: Mapping[str, Any] | None = None,
    http_transport: httpx.AsyncBaseTransport | None = None,
    close_clients: bool = True,
) -> TestReport:
    """Run the workflow once with the trigger's sample record (or `sample`), showing each step's input and output.

    Without `live` nothing is sent anywhere: QuickBooks actions (reads too) and `http.request` are only
    validated, with the placeholder output {"dry_run": true}; later steps see the outputs of such steps as
    "<dry run: steps.x.output...>" text. `log` steps run (they write only to the log). With `live` every step
    runs for real (each write with a fresh requestid). The first failing step ends the test.
    """
    record = copy.deepcopy(dict(sample)) if sample is not None else trigger_def(workflow.trigger.key).sample_record()
    report = TestReport(workflow=workflow.name, live=live, trigger=_jsonable(record))
    outputs: dict[str, Any] = {}
    opened: dict[str, QBOClient] = {}
    references: dict[str, ReferenceCache] = {}
    try:
        for step in workflow.steps:
            item = StepReport(id=step.id, action=step.action)
            report.steps.append(item)
            started = time.perf_counter()
            try:
                output = await _test_step(step, item, workflow, record, outputs, live=live, clients=clients,
                                          opened=opened, references=references, http_transport=http_transport)
            except Exception as error:  # shown in the report, never raised
                field_name = getattr(error, "field", None) if isinstance(error, TemplateError) else None
                item.error = error_json(error, field=field_name)
            finally:
                item.ms = round((time.perf_counter() - started) * 1000, 3)
            if item.error is not None:
                break
            if not item.skipped:
                outputs[step.id] = output
    finally:
        if close_clients:
            for client in opened.values():
                await client.aclose()
    return report


test_workflow.__test__ = False  # type: ignore[attr-defined]  # not a pytest test, whatever its name


async def _test_step(step: Step, item: StepReport, workflow: Workflow, record: dict, outputs: dict[str, Any], *,
                     live: bool, clients: ClientFactory | None, opened: dict[str, QBOClient],
                     references: dict[str, ReferenceCache], http_transport: httpx.AsyncBaseTransport | None) -> Any:
    context = make_context(trigger=record, steps=outputs, run_id=None,
                           started_at=dt.datetime.now(dt.UTC))
    if step.when is not None and not templates.render_condition(step.when, context):
        item.skipped = True
        return None
    rendered = _render_input(step.input, context)
    item.input = _jsonable(_unplaceholder(rendered))
    the_action = None if step.action in GENERIC_STEPS else action(step.action)
    try:
        model = parse_generic(step.action, item.input) if the_action is None else the_action.parse(item.input)
    except ActionInputError as error:
        real = [p for p in error.problems if not _is_placeholder(p.value)]
        if real or live:
            raise ActionInputError(error.action_title, real or list(error.problems)) from None
        model = None  # only the placeholders of earlier dry-run steps do not fit: fine for a dry run
    if step.action == "log" and model is not None:
        item.output = log_message(model, workflow=workflow.name, step_id=step.id)
        return item.output
    if not live:
        item.dry_run = True
        item.output = {"dry_run": True}
        return _Placeholder(f"steps.{step.id}.output")
    request_id = str(uuid.uuid4())
    if the_action is None:
        output = await http_request(model, request_id=request_id, transport=http_transport)
    else:
        if clients is None:
            raise ValueError("a live test needs `clients` to reach QuickBooks")
        name = step.connection or ""
        if name not in opened:
            opened[name] = await clients(name)
        ctx = ActionContext(opened[name], request_id=request_id,
                            references=references.setdefault(name, ReferenceCache()))
        output = await the_action.run(ctx, model)
    item.output = _jsonable(output)
    return item.output

