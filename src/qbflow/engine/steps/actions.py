"""The `action:` step types: a connector action (QuickBooks), `http.request` and `log`.

For a run: the input is rendered and checked against the action's model (a bad input never reaches anyone);
a write is marked "sent" with its rendered input BEFORE the request goes out, under the execution's request
id; its outcome is recorded with the run's next write. A create retried after an ambiguous failure (a
transient error, or a crash after "sent") first looks for the record an earlier try made
(`connector.lookup.find_created`). Reads get no "sent" mark.

For a dry run: the input is rendered and checked; QuickBooks actions and `http.request` are not sent (output
{"dry_run": true}; later steps see "<dry run: steps.x.output...>"); `log` runs.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel

from qbflow.connector.base import ActionContext, ActionInputError
from qbflow.connector.lookup import find_created
from qbflow.connector.registry import UnknownAction, action
from qbflow.engine.steps.base import (
    At,
    Placeholder,
    StepFailed,
    classify,
    error_json,
    is_placeholder,
    jsonable,
    register,
    render_input,
    unplaceholder,
)
from qbflow.engine.steps.generic import http_request, log_message, parse_generic
from qbflow.engine.templates import TemplateError
from qbflow.engine.workflow import GENERIC_STEPS, LogInput, Step, input_model_for
from qbflow.errors import QBFlowError
from qbflow.qbo.client import QBOClient, single_try
from qbflow.store.models import STEP_FAILED, STEP_SENT, STEP_SUCCEEDED, utcnow

if TYPE_CHECKING:
    from qbflow.engine.executor import Execution

__all__ = ["READ_OPERATIONS", "WRITE_OPERATIONS", "ActionType", "HttpRequestType", "LogType"]

log = logging.getLogger("qbflow.runner")

# Operations that change QuickBooks; anything not listed as a read is treated as a write (the safe side).
WRITE_OPERATIONS = frozenset({"create", "update", "delete", "void", "send", "upload", "find_or_create", "deactivate"})
READ_OPERATIONS = frozenset({"get", "find", "pdf", "report"})
# Writes whose answer is a version of a record qbflow made (find_or_create may only have found one; sending
# an invoice changes no SyncToken, so its answer is the version someone else made).
_OWN_WRITES = frozenset({"create", "update", "void", "deactivate", "upload"})


def _aware(moment: dt.datetime | None) -> dt.datetime | None:
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    return moment


class ActionType:
    """`action: <connector action key>`: a QuickBooks read or write on `connection` (default: the trigger's)."""

    name = "action"
    key = "action"
    options: tuple[str, ...] = ("connection", "input")

    def writes(self, step: Step) -> bool:
        try:
            return action(step.action or "").operation not in READ_OPERATIONS
        except UnknownAction:
            return True

    def input_model(self, step: Step) -> type[BaseModel] | None:
        try:
            return input_model_for(step.action or "")
        except UnknownAction:
            return None

    def check(self, checker: Any, step: dict[str, Any], path: tuple[str | int, ...], scope: Any) -> None:
        checker.check_action_step(step, path, scope)

    def _parse(self, step: Step, rendered: Any) -> tuple[Any, BaseModel]:
        the_action = action(step.action or "")
        return the_action, the_action.parse(rendered)

    async def run(self, ex: Execution, step: Step, at: At, context: dict[str, Any]) -> Any:
        if not ex.ledger_on:
            return await self._test(ex, step, at, context)
        rendered: Any = step.input
        began = utcnow()
        try:
            rendered = jsonable(render_input(step.input, context))
            the_action, model = self._parse(step, rendered)
        except (TemplateError, ActionInputError, UnknownAction) as error:
            data = error_json(error, field=getattr(error, "field", None) if isinstance(error, TemplateError) else None)
            ex.done(at, STEP_FAILED, error=data, input=jsonable(rendered), started_at=began)
            raise StepFailed("permanent", data) from None
        if step.action == "log":
            logged = log_message(cast(LogInput, model), workflow=ex.workflow.name,
                                 run_id=ex.run.id if ex.run else None, step_id=at.path)
            ex.done(at, STEP_SUCCEEDED, output=logged, input=rendered, started_at=began)
            return logged

        entry = at.entry
        # An earlier attempt may have written already: a crash after "sent", or a transient failure.
        ambiguous = entry is not None and (entry.status == STEP_SENT or (
            entry.status == STEP_FAILED and isinstance(entry.error, dict) and bool(entry.error.get("transient"))))
        started_at = _aware(entry.started_at) if entry is not None else None
        reading = the_action is not None and the_action.operation in READ_OPERATIONS
        tries = (entry.attempts if entry is not None else 0) + 1  # this one included
        first_try = started_at or _aware(began)
        try:
            client = None
            output: Any = None
            if the_action is not None:
                client = await ex.client(step.connection or "")
            if reading:
                # Nothing to undo or repeat safely: no "sent" mark before a read (one write less per step).
                output = jsonable(await self._call(ex, step, the_action, model, ex.request_id(at), client))
                ex.done(at, STEP_SUCCEEDED, output=output, input=rendered, attempts=1, started_at=began)
                return output
            sent = ex.mark_sent(at, rendered)
            assert sent is not None
            started_at = started_at or _aware(sent.started_at)
            if ambiguous and the_action is not None:
                output = await self._find_created(ex, step, the_action, model, sent.request_id, started_at, client)
            if output is None:
                output = jsonable(await self._call(ex, step, the_action, model, sent.request_id, client))
            _note_own_write(ex, the_action, client, output)
            # Recorded with the next write: a crash before that leaves it "sent", and the resumed run
            # repeats it under the same request id (QBO answers with the first result).
            ex.done(at, STEP_SUCCEEDED, output=output)
            return output
        except Exception as error:  # every failure is classified; none may escape a run
            kind = classify(error)
            data = error_json(error)
            run_id = ex.run.id if ex.run else None
            if kind == "transient":
                data["transient"] = True
                log.info("run %s step %s: transient failure (try %d): %s", run_id, at.path, tries, error)
            elif not isinstance(error, QBFlowError):
                log.exception("run %s step %s failed unexpectedly", run_id, at.path)
            # A read's tries are counted here; a write's by its "sent" mark.
            ex.done(at, STEP_FAILED, error=data, started_at=began,
                    **({"input": rendered, "attempts": 1} if reading else {}))
            raise StepFailed(kind, data, getattr(error, "retry_after", None), tries=tries,
                             first_try=first_try) from None

    async def _call(self, ex: Execution, step: Step, the_action: Any, model: BaseModel, request_id: str,
                    client: QBOClient | None) -> Any:
        if the_action is None:  # http.request
            return await http_request(model, request_id=request_id, transport=ex.http_transport,  # type: ignore[arg-type]
                                      timeout=ex.http_timeout)
        with single_try():  # the step's budget (RetrySettings) counts every request: no retries inside
            return await the_action.run(_context(ex, step, client, request_id), model)

    async def _find_created(self, ex: Execution, step: Step, the_action: Any, model: BaseModel, request_id: str,
                            since: dt.datetime | None, client: QBOClient | None) -> dict | None:
        """The record an earlier attempt of this create made (`connector.lookup.find_created`: by DocNumber, else
        by the fields it sent), or None; several candidates raise AmbiguousCreate, which fails the step."""
        if client is None or since is None:
            return None
        with single_try():  # its requests count against the step's budget too
            found = await find_created(_context(ex, step, client, request_id), the_action, model, since)
        if found is not None:
            log.info("found %s %s made by an earlier attempt; not creating it again", the_action.entity,
                     found.get("Id"))
        return found

    async def _test(self, ex: Execution, step: Step, at: At, context: dict[str, Any]) -> Any:
        """A test run: no ledger; without `live` nothing is sent (placeholders), with it a fresh request id."""
        item = at.report
        assert item is not None
        rendered = render_input(step.input, context)
        item.input = jsonable(unplaceholder(rendered))
        the_action = None if step.action in GENERIC_STEPS else action(step.action or "")
        model: BaseModel | None
        try:
            model = parse_generic(step.action or "", item.input) if the_action is None else the_action.parse(item.input)
        except ActionInputError as error:
            real = [p for p in error.problems if not is_placeholder(p.value)]
            if real or ex.live:
                raise ActionInputError(error.action_title, real or list(error.problems)) from None
            model = None  # only the placeholders of earlier dry-run steps do not fit: fine for a dry run
        if step.action == "log" and model is not None:
            item.output = log_message(cast(LogInput, model), workflow=ex.workflow.name, step_id=at.path)
            return item.output
        if ex.dry_run:
            item.dry_run = True
            item.output = {"dry_run": True}
            return Placeholder(f"steps.{step.id}.output")
        assert model is not None
        client = None if the_action is None else await ex.client(step.connection or "")
        output = await self._call(ex, step, the_action, model, ex.request_id(at), client)
        item.output = jsonable(output)
        return item.output


def _context(ex: Execution, step: Step, client: QBOClient | None, request_id: str) -> ActionContext:
    """What an action (or the create lookup) runs with: the client, the request id and the run's reference
    cache for the step's connection."""
    assert client is not None  # QuickBooks actions always have one
    return ActionContext(client, request_id=request_id, references=ex.references(step.connection or ""))


def _note_own_write(ex: Execution, the_action: Any, client: QBOClient | None, output: Any) -> None:
    """Remember the record version this step wrote (at once: the next poll may come any moment), so the change
    does not start this workflow again (the loop guard; `trigger.skip_changes_by`)."""
    if (ex.runs is None or ex.run is None or client is None or the_action is None
            or the_action.operation not in _OWN_WRITES or not isinstance(output, Mapping)):
        return
    entity, record_id, token = the_action.entity, output.get("Id"), output.get("SyncToken")
    if entity and record_id is not None and token is not None:
        ex.runs.record_own_write(client.realm_id, entity, str(record_id), str(token), ex.run.workflow_id, ex.run.id)


class _GenericAction(ActionType):
    def input_model(self, step: Step) -> type[BaseModel] | None:
        return GENERIC_STEPS[self.name]

    def _parse(self, step: Step, rendered: Any) -> tuple[Any, BaseModel]:
        return None, parse_generic(self.name, rendered)


class HttpRequestType(_GenericAction):
    """`action: http.request`: an HTTP request to any other tool (a write: "sent" mark, Idempotency-Key)."""

    name = "http.request"

    def writes(self, step: Step) -> bool:
        return True


class LogType(_GenericAction):
    """`action: log`: a message in qbflow's log (runs in dry runs too)."""

    name = "log"

    def writes(self, step: Step) -> bool:
        return False


register(ActionType())
register(HttpRequestType())
register(LogType())
