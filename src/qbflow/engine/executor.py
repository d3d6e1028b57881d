"""The one step executor: runs a list of steps (and, through the step types, the steps nested in them) for a
run (`Runner`) or for a test (`test_workflow`: `ledger=False`, and with `live=False` a dry run).

    ex = Execution(workflow, record, runs=runs, run=run, clients=clients, state=state)
    await ex.run_steps(workflow.steps)         # raises StepFailed / WaitUntil

Per execution of a step (its ledger path, see `steps.base`): an entry the ledger has as "succeeded" is not run
again (its stored output is reused), "skipped" stays skipped; otherwise `when` is rendered (false: recorded
"skipped") and the step's type runs it. Outcomes of steps that need no "sent" mark are kept in `state.pending`
and stored with the run's next write (`StepOutcome`), so reads, `set`, `if` and the like cost no round trip.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from qbflow.connector.base import ReferenceCache
from qbflow.engine import templates
from qbflow.engine.steps.base import (
    MAX_PATH,
    At,
    StepFailed,
    StepReport,
    WaitUntil,
    classify,
    error_json,
    step_type,
)
from qbflow.engine.templates import TemplateError, make_context
from qbflow.engine.workflow import Step, Workflow
from qbflow.errors import QBFlowError
from qbflow.qbo.client import QBOClient
from qbflow.store.approvals import ApprovalStore
from qbflow.store.models import STEP_FAILED, STEP_SKIPPED, STEP_SUCCEEDED, utcnow
from qbflow.store.runs import RunRecord, RunStore, StepOutcome, StepRecord, request_id_for

__all__ = ["ClientFactory", "Execution", "RunState"]

log = logging.getLogger("qbflow.runner")

ClientFactory = Callable[[str], Awaitable[QBOClient]]


@dataclass
class RunState:
    clients: dict[str, QBOClient] = field(default_factory=dict)
    references: dict[str, ReferenceCache] = field(default_factory=dict)
    # Step outcomes stored with the run's next write (a "sent" mark or the run's end): see StepOutcome. By
    # path: a later outcome of the same execution (an `if` decided, then done) replaces the earlier one.
    pending: dict[str, StepOutcome] = field(default_factory=dict)
    final: RunRecord | None = None  # the run as its end was recorded (without its steps)
    client_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def done(self, step_id: str, position: int, status: str, *, started_at: dt.datetime | None = None,
             finished: bool = True, **fields: Any) -> None:
        self.pending[step_id] = StepOutcome(step_id, position, status, started_at=started_at,
                                           finished_at=utcnow() if finished else None, **fields)

    def take(self) -> list[StepOutcome]:
        taken, self.pending = list(self.pending.values()), {}
        return taken


# Where approvers' links point when the server's address is not configured (`QBFLOW_PUBLIC_URL`).
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"

class Execution:
    """One execution of a workflow's steps: for a run (with the ledger) or a test (`ledger=False`)."""

    def __init__(
        self,
        workflow: Workflow,
        record: dict[str, Any],
        *,
        clients: ClientFactory | None,
        state: RunState,
        runs: RunStore | None = None,
        run: RunRecord | None = None,
        live: bool = True,
        http_transport: httpx.AsyncBaseTransport | None = None,
        http_timeout: float = 30.0,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        approvals: ApprovalStore | None = None,
        public_url: str = DEFAULT_PUBLIC_URL,
    ) -> None:
        self.workflow = workflow
        self.approvals = approvals  # where `approval` steps store what they ask
        self.public_url = public_url  # the server's address, in approvers' links
        self.record = record
        self.clients = clients
        self.state = state
        self.runs = runs
        self.run = run
        self.ledger_on = runs is not None and run is not None
        self.live = live  # False: a dry run (nothing is sent anywhere)
        self.http_transport = http_transport
        self.http_timeout = http_timeout
        self.now = now
        self.ledger: dict[str, StepRecord] = {s.step_id: s for s in run.steps} if run is not None else {}
        self.started_at = run.created_at if run is not None else dt.datetime.now(dt.UTC)

    @property
    def dry_run(self) -> bool:
        return not self.live

    # -- services for step types -----------------------------------------------------------------------

    def context(self, at: At) -> dict[str, Any]:
        return make_context(trigger=self.record, steps=at.outputs, run_id=self.run.id if self.run else None,
                            started_at=self.started_at, names=at.names)

    def done(self, at: At, status: str, **fields: Any) -> None:
        """Record an outcome with the run's next write (nothing in a test)."""
        if self.ledger_on:
            self.state.done(at.path, at.position, status, **fields)

    def mark_sent(self, at: At, rendered: Any) -> StepRecord | None:
        """The "sent" mark before a write (storing the pending outcomes with it); None in a test."""
        if not self.ledger_on:
            return None
        assert self.runs is not None and self.run is not None
        return self.runs.mark_step_sent(self.run.id, at.path, rendered, position=at.position,
                                        before=self.state.take())

    def request_id(self, at: At) -> str:
        """The execution's request id: from the run and the path (a test: a fresh one each time)."""
        if self.run is None:
            return str(uuid.uuid4())
        return request_id_for(self.run.uid, at.path)

    async def client(self, name: str) -> QBOClient:
        """The run's client for a connection, opened once."""
        async with self.state.client_lock:
            if name not in self.state.clients:
                if self.clients is None:
                    raise ValueError("a live test needs `clients` to reach QuickBooks")
                self.state.clients[name] = await self.clients(name)
            return self.state.clients[name]

    def references(self, name: str) -> ReferenceCache:
        return self.state.references.setdefault(name, ReferenceCache())

    # -- running steps ---------------------------------------------------------------------------------

    async def run_steps(self, steps: Sequence[Step], *, prefix: str = "", position: int | None = None,
                        outputs: dict[str, Any] | None = None, names: dict[str, Any] | None = None,
                        reports: list[StepReport] | None = None) -> dict[str, Any]:
        """Run steps in order; each one's output goes into `outputs` (by id), which is returned. `prefix`: the
        ledger path they are under ("" at the top, "loop[3]." in an iteration); `position`: the ledger
        position of them all (None: each its index, for top-level steps)."""
        outputs = {} if outputs is None else outputs
        names = {} if names is None else names
        for index, step in enumerate(steps):
            await self.run_step(step, At(path=prefix + step.id, position=index if position is None else position,
                                         entry=None, outputs=outputs, names=names), reports)
        return outputs

    async def run_step(self, step: Step, at: At, reports: list[StepReport] | None) -> None:
        if len(at.path) > MAX_PATH:
            error = {"type": "PathTooLong", "message": f"the step's ledger path is longer than {MAX_PATH} characters"}
            raise _named(StepFailed("permanent", error), at, step)
        at.entry = entry = self.ledger.get(at.path)
        if entry is not None and entry.status == STEP_SUCCEEDED:
            at.outputs[step.id] = entry.output
            return
        if entry is not None and entry.status == STEP_SKIPPED:
            return
        report = None
        if reports is not None:
            report = StepReport(id=step.id, action=step.label, path=at.path)
            reports.append(report)
            at.report = report
        started = time.perf_counter()
        began = utcnow()
        kind = step_type(step)
        try:
            context = self.context(at)
            if step.when is not None and not templates.render_condition(step.when, context):
                self.done(at, STEP_SKIPPED, started_at=began)
                if report is not None:
                    report.skipped = True
                return
            output = await kind.run(self, step, at, context)
        except StepFailed as failure:
            if report is not None and report.error is None:  # a nested step's failure names it
                report.error = {**failure.error, "step": failure.path} if failure.path else failure.error
            raise _named(failure, at, step) from None
        except WaitUntil:
            raise
        except Exception as error:  # every failure is classified; none may escape a run
            recorded = self._failed(step, at, error, began)
            if report is not None:
                report.error = recorded.error
            raise _named(recorded, at, step) from None
        finally:
            if report is not None:
                report.ms = round((time.perf_counter() - started) * 1000, 3)
        at.outputs[step.id] = output

    def _failed(self, step: Step, at: At, error: Exception, began: dt.datetime) -> StepFailed:
        """Record a failure no step type handled itself (templates, inputs, anything unexpected)."""
        field_name = getattr(error, "field", None) if isinstance(error, TemplateError) else None
        data = error_json(error, field=field_name)
        kind = classify(error)
        if kind == "transient":
            data["transient"] = True
        elif not isinstance(error, QBFlowError | ValueError):
            log.exception("step %s failed unexpectedly", at.path)
        self.done(at, STEP_FAILED, error=data, started_at=began)
        return StepFailed(kind, data)


def _named(failure: StepFailed, at: At, step: Step) -> StepFailed:
    if not failure.path:
        failure.path = at.path
        failure.label = step.label
    return failure
