"""Step types that shape a workflow: `set`, `if`, `switch`, `for_each` and `wait`.

    - id: totals
      set: {amount: "{{ trigger.TotalAmt | money }}", big: "{{ trigger.TotalAmt > 1000 }}"}
    - id: big
      if: "{{ steps.totals.output.big }}"
      then: [...]
      else: [...]
    - id: by_term
      switch: "{{ trigger.SalesTermRef.name }}"
      cases: {"Net 30": [...], "Due on receipt": [...]}
      default: [...]
    - id: each_line
      for_each: "{{ trigger.Line }}"
      as: line                # templates see `line` and `loop.index` (0-based)
      concurrency: 3          # items in parallel (default 1)
      max_items: 200          # more items fail the step (default 1000)
      steps: [...]
    - id: later
      wait: 3d                # or  until: "{{ trigger.DueDate }}"

Nested steps are ledgered under their parent's path: `big.note`, `each_line[3].create_customer` (see
`steps.base`), so each iteration's writes have their own entry and request id.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from qbflow.engine import templates
from qbflow.engine.steps.base import (
    At,
    Placeholder,
    StepReport,
    WaitUntil,
    jsonable,
    register,
    render_input,
    unplaceholder,
)
from qbflow.engine.workflow import Step, _case_text, parse_interval
from qbflow.store.models import STEP_PENDING, STEP_SUCCEEDED, utcnow

if TYPE_CHECKING:
    from qbflow.engine.executor import Execution

__all__ = ["ForEachType", "IfType", "SetType", "SwitchType", "WaitType"]


class _Flow:
    """What the flow types share: they write nothing themselves and have no input model."""

    name = ""
    key = ""
    options: tuple[str, ...] = ()

    def writes(self, step: Step) -> bool:
        return False

    def input_model(self, step: Step) -> type[BaseModel] | None:
        return None

    condition = False  # whether the key's template is a condition (bare expressions allowed)

    def check(self, checker: Any, step: dict[str, Any], path: tuple[str | int, ...], scope: Any) -> None:
        """The templates of the step's own key (nested steps are checked by the checker's walk)."""
        key = "until" if self.key == "wait" and "until" in step else self.key
        checker.check_expression((*path, key), step.get(key), scope, condition=self.condition)

    @staticmethod
    def finish(ex: Execution, at: At, output: Any) -> Any:
        ex.done(at, STEP_SUCCEEDED, output=jsonable(unplaceholder(output)))
        if at.report is not None:
            at.report.output = jsonable(unplaceholder(output))
        return output

    @staticmethod
    def decided(at: At) -> dict[str, Any] | None:
        """The branch an earlier attempt took (recorded "pending" with the decision), if it got that far."""
        entry = at.entry
        if entry is not None and entry.status == STEP_PENDING and isinstance(entry.output, dict) \
                and "branch" in entry.output:
            return entry.output
        return None

    @staticmethod
    def decide(ex: Execution, at: At, decision: dict[str, Any]) -> dict[str, Any]:
        """Record the branch taken ("pending", stored with the run's next write, i.e. before any write inside
        the branch), so a resumed run takes the same branch even if its condition would now say otherwise."""
        decision = jsonable(unplaceholder(decision)) if not ex.dry_run else decision
        ex.done(at, STEP_PENDING, output=decision, started_at=utcnow(), finished=False)
        return decision

    @staticmethod
    async def branch(ex: Execution, at: At, steps: list[Step]) -> None:
        """Run a branch's steps: under `<path>.`, their outputs visible after the step too."""
        await ex.run_steps(steps, prefix=at.path + ".", position=at.position, outputs=at.outputs, names=at.names,
                           reports=at.report.steps if at.report is not None else None)


class SetType(_Flow):
    """`set: {name: template}`: the output is the mapping rendered (`steps.<id>.output.<name>`)."""

    name = key = "set"

    async def run(self, ex: Execution, step: Step, at: At, context: dict[str, Any]) -> Any:
        output = render_input(step.set_ or {}, context, "set")
        return self.finish(ex, at, output if ex.dry_run else jsonable(output))


class IfType(_Flow):
    """`if: COND` with `then` and optional `else`: output {"branch": "then" | "else" | null, "condition": bool}."""

    name = key = "if"
    options: tuple[str, ...] = ("then", "else")
    condition = True

    async def run(self, ex: Execution, step: Step, at: At, context: dict[str, Any]) -> Any:
        decided = self.decided(at)
        if decided is None:
            condition = templates.render_condition(step.if_ or "", context)
            decided = self.decide(ex, at, {"branch": "then" if condition else (
                "else" if step.else_ is not None else None), "condition": condition})
        await self.branch(ex, at, (step.then or []) if decided["condition"] else (step.else_ or []))
        return self.finish(ex, at, decided)


class SwitchType(_Flow):
    """`switch: VALUE` with `cases: {value: [steps]}` and `default`: the case whose key is the value's text
    runs; output {"case": the key or null, "branch": "cases" | "default" | null, "value": the value}."""

    name = key = "switch"
    options: tuple[str, ...] = ("cases", "default")

    async def run(self, ex: Execution, step: Step, at: At, context: dict[str, Any]) -> Any:
        decided = self.decided(at)
        if decided is None:
            value = templates.render(step.switch or "", context)
            text = _case_text(value)
            cases = step.cases or {}
            if text in cases:
                decided = {"case": text, "branch": "cases", "value": value}
            else:
                decided = {"case": None, "branch": "default" if step.default is not None else None, "value": value}
            decided = self.decide(ex, at, decided)
        if decided["branch"] == "cases":
            await self.branch(ex, at, (step.cases or {}).get(decided["case"], []))
        elif decided["branch"] == "default":
            await self.branch(ex, at, step.default or [])
        return self.finish(ex, at, decided)


class ForEachType(_Flow):
    """`for_each: LIST` with `steps`: the steps once per item, `as` (default `item`) and `loop` ({index,
    number, length, first, last}) in their templates; inside an iteration `steps.<inner id>` is that
    iteration's. Output: one entry per item, {inner id: output}. `concurrency` items at a time (default 1);
    more than `max_items` items fail the step."""

    name = key = "for_each"
    options: tuple[str, ...] = ("steps", "as", "concurrency", "max_items")

    async def run(self, ex: Execution, step: Step, at: At, context: dict[str, Any]) -> Any:
        items = self._items(ex, step, at, context)
        results: list[dict[str, Any]] = [{} for _ in items]
        reports: list[list[StepReport]] = [[] for _ in items]

        async def iteration(index: int) -> None:
            outputs = dict(at.outputs)
            names = {**at.names, step.as_: items[index],
                     "loop": {"index": index, "number": index + 1, "length": len(items), "first": index == 0,
                              "last": index == len(items) - 1}}
            await ex.run_steps(step.steps or [], prefix=f"{at.path}[{index}].", position=at.position,
                               outputs=outputs, names=names, reports=reports[index] if at.report else None)
            results[index] = {key: value for key, value in outputs.items() if key not in at.outputs}

        try:
            if step.concurrency <= 1 or ex.ledger_on is False:
                for index in range(len(items)):
                    await iteration(index)
            else:
                await _bounded([iteration(index) for index in range(len(items))], step.concurrency)
        finally:
            if at.report is not None:
                at.report.input = {"items": len(items)}
                for found in reports:
                    at.report.steps.extend(found)
        return self.finish(ex, at, results)

    @staticmethod
    def _items(ex: Execution, step: Step, at: At, context: dict[str, Any]) -> list[Any]:
        value = render_input(step.for_each, context, "for_each")
        if isinstance(value, Placeholder):  # a dry run: the list comes from a step that was not run
            return [Placeholder(f"{value.path}[0]")]
        if isinstance(value, dict) or not isinstance(value, list | tuple):
            raise ValueError(f"for_each needs a list, got {type(value).__name__}: {str(value)[:80]!r}")
        if len(value) > step.max_items:
            raise ValueError(f"for_each got {len(value)} items, more than max_items ({step.max_items}); "
                             "raise max_items or narrow the list")
        return list(value)


async def _bounded(jobs: list[Coroutine[Any, Any, None]], limit: int) -> None:
    """Run the jobs at most `limit` at a time; the first failure cancels the rest and is raised (a failed
    step before a wait: the run fails rather than waits)."""
    gate = asyncio.Semaphore(limit)

    async def gated(job: Coroutine[Any, Any, None]) -> None:
        async with gate:
            await job

    tasks = [asyncio.ensure_future(gated(job)) for job in jobs]
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    errors = [task.exception() for task in tasks if task.done() and not task.cancelled()
              and task.exception() is not None]
    if errors:
        first = next((e for e in errors if not isinstance(e, WaitUntil)), errors[0])
        raise first  # type: ignore[misc]


def _moment(value: Any) -> dt.datetime:
    """An ISO date or date-time (or a datetime) as an aware datetime (naive: UTC; a date: its midnight UTC)."""
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime(value.year, value.month, value.day)
    else:
        text = str(value).strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"until needs an ISO date or date-time, got {value!r}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


class WaitType(_Flow):
    """`wait: DURATION` ("30s", "3d") or `until: TIME`: the run is stored as "waiting" until then and gives its
    place up (nothing holds it meanwhile); claimed again after, the step succeeds with {"waited_until": ...}."""

    name = key = "wait"

    async def run(self, ex: Execution, step: Step, at: At, context: dict[str, Any]) -> Any:
        entry = at.entry
        stored = entry.input.get("until") if entry is not None and isinstance(entry.input, dict) else None
        now = ex.now()
        if stored is not None:
            until = _moment(stored)  # decided on the first attempt: a resumed wait does not start again
        elif step.wait is not None:
            until = now + parse_interval(step.wait)
        else:
            rendered = templates.render(step.until or "", context)
            if isinstance(rendered, Placeholder):
                until = now
            else:
                until = _moment(rendered)
        when = until.isoformat()
        if not ex.ledger_on:  # a test run does not wait
            return self.finish(ex, at, {"waited_until": when, "dry_run": True})
        if until <= now:
            ex.done(at, STEP_SUCCEEDED, output={"waited_until": when}, input={"until": when})
            if at.report is not None:
                at.report.output = {"waited_until": when}
            return {"waited_until": when}
        ex.done(at, STEP_PENDING, input={"until": when}, started_at=utcnow(), finished=False)
        raise WaitUntil(until, at.path)


register(SetType())
register(IfType())
register(SwitchType())
register(ForEachType())
register(WaitType())
