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
import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
from pydantic import TypeAdapter

from qbflow.engine.executor import DEFAULT_PUBLIC_URL, ClientFactory, Execution, RunState
from qbflow.engine.sources import source_for
from qbflow.engine.steps.actions import READ_OPERATIONS, WRITE_OPERATIONS
from qbflow.engine.steps.base import StepFailed, StepReport, WaitUntil, classify, error_json, jsonable
from qbflow.engine.steps.base import render_input as _render_input
from qbflow.engine.templates import make_context
from qbflow.engine.workflow import Workflow
from qbflow.qbo.client import QBOClient
from qbflow.store.approvals import ApprovalStore
from qbflow.store.models import RUN_FAILED, RUN_RUNNING, RUN_SUCCEEDED, RUN_WAITING, RUN_WAITING_RETRY
from qbflow.store.runs import RunRecord, RunStore

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

_ = (READ_OPERATIONS, _render_input, make_context)  # re-exported

log = logging.getLogger("qbflow.runner")

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


def store_clients(store: Any, **options: Any) -> ClientFactory:
    """A client factory over stored connections (`qbflow.qbo.connections.client_for`)."""
    from qbflow.qbo.connections import client_for

    async def clients(name: str) -> QBOClient:
        return await client_for(name, store, **options)

    return clients


# --- the runner ------------------------------------------------------------------------------------------

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
        approvals: ApprovalStore | None = None,
        public_url: str = DEFAULT_PUBLIC_URL,
    ) -> None:
        self.approvals = approvals
        self.public_url = public_url
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
        state = RunState()
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

    async def _execute(self, run: RunRecord, workflow: Workflow, state: RunState) -> None:
        ex = Execution(workflow, run.event.record if run.event is not None else {}, clients=self.clients,
                       state=state, runs=self.runs, run=run, http_transport=self.http_transport,
                       http_timeout=self.http_timeout, now=self.now, approvals=self.approvals,
                       public_url=self.public_url)
        outputs: dict[str, Any] = {}
        try:
            await ex.run_steps(workflow.steps, outputs=outputs)
        except StepFailed as failure:
            await self._fail_run(run, workflow, ex, outputs, failure)
            return
        except WaitUntil as wait:
            state.final = self.runs.finish_run(run.id, RUN_WAITING, None, wait.until, steps=state.take())
            log.info("run %s: step %s waits until %s", run.id, wait.path, wait.until.isoformat())
            if wait.recheck is not None and wait.recheck():
                self.runs.wake_run(run.id, self.now())
                state.final = None  # due again at once: the engine reads it back
            return
        state.final = self.runs.finish_run(run.id, RUN_SUCCEEDED, steps=state.take())

    async def _fail_run(self, run: RunRecord, workflow: Workflow, ex: Execution, outputs: dict[str, Any],
                        failure: StepFailed) -> None:
        state = ex.state
        reason = f"step {failure.path!r} ({failure.label}): {failure.error.get('message')}"
        now = self.now()
        budget = self.retry
        if failure.kind == "reconnect":
            later = now + dt.timedelta(seconds=budget.reconnect_wait)
            state.final = self.runs.finish_run(run.id, RUN_WAITING_RETRY, reason, later, steps=state.take())
        elif failure.kind == "transient" and not self._spent(failure, now):
            wait = max(budget.wait(failure.tries), failure.retry_after or 0.0)
            state.final = self.runs.finish_run(run.id, RUN_WAITING_RETRY,
                                               f"try {failure.tries} of {budget.attempts}: {reason}",
                                               now + dt.timedelta(seconds=wait), steps=state.take())
        else:
            if failure.kind == "transient":
                spent = (now - failure.first_try).total_seconds() if failure.first_try is not None else 0.0
                reason = f"gave up after {failure.tries} tries in {spent:.0f} s: {reason}"
            await self._on_error(run, workflow, ex, outputs, failure)
            state.final = self.runs.finish_run(run.id, RUN_FAILED, reason, steps=state.take())
        log.info("run %s: %s", run.id, reason)

    def _spent(self, failure: StepFailed, now: dt.datetime) -> bool:
        """Whether a transient failure used the step's budget up (tries or time)."""
        spent = (now - failure.first_try).total_seconds() if failure.first_try is not None else 0.0
        return failure.tries >= self.retry.attempts or spent >= self.retry.total

    async def _on_error(self, run: RunRecord, workflow: Workflow, ex: Execution, outputs: dict[str, Any],
                        failure: StepFailed) -> None:
        """The workflow's `on_error` steps, for a run that fails for good: `error` in their templates, ledgered
        under `on_error.<id>`. Their own failure is logged; it does not run them again."""
        if not workflow.on_error:
            return
        error = {"step": failure.path, "action": failure.label, "kind": failure.kind, **failure.error}
        try:
            await ex.run_steps(workflow.on_error, prefix="on_error.", position=len(workflow.steps),
                               outputs=dict(outputs), names={"error": error})
        except (StepFailed, WaitUntil) as problem:
            log.warning("run %s: on_error step %s failed: %s", run.id, getattr(problem, "path", "?"), problem)
        except Exception:  # on_error must never hide the run's own failure
            log.exception("run %s: on_error failed unexpectedly", run.id)


# --- `qbflow workflow test` ------------------------------------------------------------------------------

def sample_trigger(workflow: Workflow) -> dict[str, Any]:
    """What a dry run's templates see as `trigger` when no sample is given: the trigger source's sample (a
    QuickBooks trigger's sample record, a webhook's body, a schedule's next fire time, manual inputs)."""
    try:
        source = source_for(workflow.trigger.kind)
    except KeyError:
        return {}
    return dict(source.sample(workflow))


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
        return all(step.ok for step in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return jsonable({"workflow": self.workflow, "live": self.live, "ok": self.ok, "trigger": self.trigger,
                          "steps": [asdict(step) for step in self.steps]})


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
    record = copy.deepcopy(dict(sample)) if sample is not None else sample_trigger(workflow)
    report = TestReport(workflow=workflow.name, live=live, trigger=jsonable(record))
    state = RunState()
    ex = Execution(workflow, record, clients=clients, state=state, live=live, http_transport=http_transport)
    try:
        await ex.run_steps(workflow.steps, reports=report.steps)
    except (StepFailed, WaitUntil):
        pass  # shown in the report: the first failing step ends the test
    finally:
        if close_clients:
            for client in state.clients.values():
                await client.aclose()
    return report


test_workflow.__test__ = False  # type: ignore[attr-defined]  # not a pytest test, whatever its name
