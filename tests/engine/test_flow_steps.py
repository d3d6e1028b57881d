"""Workflows beyond a straight line, against the in-process sandbox: set, if, switch, for_each (ledger paths,
crash and resume inside a loop, concurrency, max_items), wait (a stored state, claimed again later), on_error,
and `workflow test` (the same executor without the ledger) of nested steps."""

from __future__ import annotations

import itertools
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import yaml

from qbflow.connector.polling import PollCursor, TriggerEvent
from qbflow.engine.runner import RetrySettings, Runner, test_workflow
from qbflow.engine.workflow import load_workflow_text
from qbflow.qbo import RetryPolicy, StaticTokens
from qbflow.sandbox.app import Sandbox
from qbflow.store import RunStore
from qbflow.store.runs import request_id_for
from tests.qbo.conftest import make_client

CONNECTION = "acme"
NO_CLIENT_RETRY = RetryPolicy(attempts=1, timeout=10.0, wait_initial=0.001, wait_max=0.001, wait_jitter=0.0)
_numbers = itertools.count(1)

pytestmark = pytest.mark.usefixtures("isolated_data_dir")


class Crash(BaseException):
    """The process dying: nothing in the runner catches it."""


@pytest.fixture
def clients(sandbox: Sandbox, realm: str, token: str):
    async def factory(name: str):
        return make_client(sandbox, realm, StaticTokens(token), retry=NO_CLIENT_RETRY)

    return factory


def workflow_text(steps: str, *, on_error: str = "") -> str:
    text = f"""
name: flow
trigger:
  key: new_customer
  connection: {CONNECTION}
steps:
{steps}"""
    return text + (f"on_error:\n{on_error}" if on_error else "")


def add_run(runs: RunStore, text: str, record: dict[str, Any]) -> int:
    """Store the workflow (valid, as `workflow add` insists) and one event for it: the new run's id."""
    load_workflow_text(text)
    workflow = runs.upsert_workflow("flow", None, yaml.safe_load(text))
    record_id = str(next(_numbers))
    event = TriggerEvent(trigger_key="new_customer", entity="Customer", record_id=record_id, sync_token="0",
                         record={"Id": record_id, **record}, dedup_key=f"new_customer:Customer:{record_id}:0",
                         changed_at=datetime.now(UTC))
    (run_id,) = runs.record_poll(workflow.id, "new_customer", CONNECTION, "realm", [event],
                                 PollCursor.start(datetime.now(UTC)).to_json())
    return run_id


async def run_it(runs: RunStore, clients, run_id: int, **kwargs: Any):
    claimed = runs.claim_next_run(kwargs.pop("claim_at", None))
    assert claimed is not None and claimed.id == run_id
    kwargs.setdefault("retry", RetrySettings(attempts=3, wait_initial=30.0))
    return await Runner(runs, clients, **kwargs).run_once(run_id)


async def customers(sandbox: Sandbox, realm: str, token: str, prefix: str) -> list[str]:
    async with make_client(sandbox, realm, StaticTokens(token)) as qbo:
        found = [r["DisplayName"] async for r in qbo.query_all("select * from Customer")]
    return sorted(name for name in found if name.startswith(prefix))


# --- set, if, switch ---------------------------------------------------------------------------------------

BRANCHES = """
  - id: totals
    set:
      amount: "{{ trigger.Amount }}"
      big: "{{ trigger.Amount > 100 }}"
      label: "Order of {{ trigger.Amount | money }}"
  - id: size
    if: "{{ steps.totals.output.big }}"
    then:
      - id: big_note
        action: log
        input: {message: "big {{ steps.totals.output.label }}"}
    else:
      - id: small_note
        action: log
        input: {message: "small"}
  - id: tier
    switch: "{{ trigger.Tier }}"
    cases:
      gold:
        - id: gold
          set: {discount: 10}
      1:
        - id: first
          set: {discount: 1}
    default:
      - id: other
        set: {discount: 0}
  - id: summary
    set:
      branch: "{{ steps.size.output.branch }}"
      discount: "{{ steps.gold.output.discount if 'gold' in steps else (steps.other.output.discount
                    if 'other' in steps else 1) }}"
"""


async def test_set_if_and_switch_outputs_and_paths(runs, clients) -> None:
    run_id = add_run(runs, workflow_text(BRANCHES), {"Amount": 250, "Tier": "gold"})
    done = await run_it(runs, clients, run_id)
    assert done.status == "succeeded", done.error
    assert done.step("totals").output == {"amount": 250, "big": True, "label": "Order of 250.00"}
    assert done.step("size").output == {"branch": "then", "condition": True}
    assert done.step("size.big_note").output == {"message": "big Order of 250.00"}
    assert done.step("size.small_note") is None  # the other branch never ran
    assert done.step("tier").output == {"case": "gold", "branch": "cases", "value": "gold"}
    assert done.step("tier.gold").output == {"discount": 10}
    assert done.step("summary").output == {"branch": "then", "discount": 10}


async def test_else_and_a_numeric_case_and_default(runs, clients) -> None:
    first = add_run(runs, workflow_text(BRANCHES), {"Amount": 5, "Tier": 1})
    done = await run_it(runs, clients, first)
    assert done.status == "succeeded", done.error
    assert done.step("size").output["branch"] == "else" and done.step("size.small_note").status == "succeeded"
    assert done.step("tier").output["case"] == "1" and done.step("tier.first").output == {"discount": 1}
    assert done.step("summary").output == {"branch": "else", "discount": 1}

    other = add_run(runs, workflow_text(BRANCHES), {"Amount": 5, "Tier": "tin"})
    done = await run_it(runs, clients, other)
    assert done.step("tier").output == {"case": None, "branch": "default", "value": "tin"}
    assert done.step("summary").output["discount"] == 0


# --- for_each ------------------------------------------------------------------------------------------------

def loop_steps(*, concurrency: int = 1, max_items: int = 1000) -> str:
    return f"""
  - id: each_name
    for_each: "{{{{ trigger.Names }}}}"
    as: name
    concurrency: {concurrency}
    max_items: {max_items}
    steps:
      - id: create
        action: create_customer
        input:
          display_name: "{{{{ name }}}}"
      - id: note
        set:
          id: "{{{{ steps.create.output.Id }}}}"
          index: "{{{{ loop.index }}}}"
  - id: after
    set:
      count: "{{{{ steps.each_name.output | length }}}}"
      second: "{{{{ steps.each_name.output[1].note.index }}}}"
"""


async def test_for_each_creates_one_record_per_item_each_with_its_own_request_id(
        runs, clients, sandbox, realm, token) -> None:
    names = ["Loop A", "Loop B", "Loop C"]
    run_id = add_run(runs, workflow_text(loop_steps()), {"Names": names})
    done = await run_it(runs, clients, run_id)
    assert done.status == "succeeded", done.error
    assert await customers(sandbox, realm, token, "Loop ") == names
    creates = [done.step(f"each_name[{i}].create") for i in range(3)]
    assert [c.output["DisplayName"] for c in creates] == names
    assert [c.request_id for c in creates] == [request_id_for(done.uid, f"each_name[{i}].create") for i in range(3)]
    assert len({c.request_id for c in creates}) == 3
    output = done.step("each_name").output
    assert [item["note"] for item in output] == [{"id": c.output["Id"], "index": i} for i, c in enumerate(creates)]
    assert done.step("after").output == {"count": 3, "second": 1}


class CrashAfter(httpx.AsyncBaseTransport):
    """The sandbox, but the process "dies" once the create of `name` has landed (before the answer is read)."""

    def __init__(self, sandbox: Sandbox, name: str) -> None:
        self.inner = httpx.ASGITransport(app=sandbox)
        self.name = name
        self.crashed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if (not self.crashed and request.method == "POST" and request.url.path.endswith("/customer")
                and self.name.encode() in request.content):
            self.crashed = True
            raise Crash
        return response


async def test_a_crash_inside_a_loop_resumes_at_the_right_item_and_writes_nothing_twice(
        runs, sandbox, realm, token) -> None:
    names = ["Crash A", "Crash B", "Crash C", "Crash D"]
    crash = CrashAfter(sandbox, "Crash B")

    async def crashing(name: str):
        return make_client(sandbox, realm, StaticTokens(token), retry=NO_CLIENT_RETRY, transport=crash)

    run_id = add_run(runs, workflow_text(loop_steps()), {"Names": names})
    with pytest.raises(Crash):
        await run_it(runs, crashing, run_id)
    left = runs.get_run(run_id)
    assert left.status == "running"
    assert left.step("each_name[0].create").status == "succeeded"
    assert left.step("each_name[1].create").status == "sent"  # it landed; the ledger cannot know
    assert left.step("each_name[2].create") is None
    assert await customers(sandbox, realm, token, "Crash ") == ["Crash A", "Crash B"]

    async def healthy(name: str):
        return make_client(sandbox, realm, StaticTokens(token), retry=NO_CLIENT_RETRY)

    (done,) = await Runner(runs, healthy).resume_unfinished()
    assert done.status == "succeeded", done.error
    assert await customers(sandbox, realm, token, "Crash ") == names  # each exactly once
    second = done.step("each_name[1].create")
    assert second.request_id == left.step("each_name[1].create").request_id
    assert second.attempts == 2 and second.output["DisplayName"] == "Crash B"
    assert [item["create"]["DisplayName"] for item in done.step("each_name").output] == names


async def test_concurrency_runs_items_in_parallel_one_record_each(runs, clients, sandbox, realm, token) -> None:
    names = [f"Parallel {i}" for i in range(7)]
    run_id = add_run(runs, workflow_text(loop_steps(concurrency=3)), {"Names": names})
    done = await run_it(runs, clients, run_id)
    assert done.status == "succeeded", done.error
    assert await customers(sandbox, realm, token, "Parallel ") == sorted(names)
    output = done.step("each_name").output
    assert [item["create"]["DisplayName"] for item in output] == names  # in the items' order
    assert [item["note"]["index"] for item in output] == list(range(7))


async def test_more_items_than_max_items_fail_the_step_saying_how_many(runs, clients, sandbox, realm, token) -> None:
    names = [f"Max {n}" for n in range(1, 6)]
    run_id = add_run(runs, workflow_text(loop_steps(max_items=3)), {"Names": names})
    done = await run_it(runs, clients, run_id)
    assert done.status == "failed"
    assert "5 items, more than max_items (3)" in done.error
    assert done.step("each_name").status == "failed"
    assert await customers(sandbox, realm, token, "Max ") == []


async def test_for_each_over_something_not_a_list_fails_clearly(runs, clients) -> None:
    run_id = add_run(runs, workflow_text(loop_steps()), {"Names": "just one"})
    done = await run_it(runs, clients, run_id)
    assert done.status == "failed" and "for_each needs a list, got str" in done.error


# --- wait ------------------------------------------------------------------------------------------------------

WAITING = """
  - id: first
    set: {at: "{{ run.started_at }}"}
  - id: later
    wait: 3d
  - id: note
    action: log
    input: {message: "three days on"}
"""


async def test_a_wait_is_stored_and_a_later_claim_continues_the_run(runs, clients) -> None:
    start = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
    run_id = add_run(runs, workflow_text(WAITING), {})
    waiting = await run_it(runs, clients, run_id, now=lambda: start)
    assert waiting.status == "waiting"
    wake = start + timedelta(days=3)
    assert waiting.next_attempt_at.replace(tzinfo=UTC) == wake
    assert waiting.step("first").status == "succeeded" and waiting.step("later").status == "pending"
    assert waiting.step("note") is None
    assert [run.status for run in runs.list_runs()] == ["waiting"]  # what `runs list` and the API show

    assert runs.claim_next_run(now=wake - timedelta(seconds=1)) is None  # not before its time
    assert runs.claim_run(run_id, now=wake - timedelta(hours=1)) is None
    done = await run_it(runs, clients, run_id, claim_at=wake + timedelta(seconds=5),
                        now=lambda: wake + timedelta(seconds=5))
    assert done.status == "succeeded", done.error
    assert done.step("later").output == {"waited_until": wake.isoformat()}
    assert done.step("note").output == {"message": "three days on"}
    assert done.step("first").output == waiting.step("first").output  # not run again


async def test_wait_until_a_templated_time(runs, clients) -> None:
    start = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
    steps = """
  - id: due
    until: "{{ trigger.DueDate }}"
  - id: done
    set: {ok: true}
"""
    run_id = add_run(runs, workflow_text(steps), {"DueDate": "2030-02-01"})
    waiting = await run_it(runs, clients, run_id, now=lambda: start)
    assert waiting.status == "waiting"
    assert waiting.next_attempt_at.replace(tzinfo=UTC) == datetime(2030, 2, 1, tzinfo=UTC)

    past = add_run(runs, workflow_text(steps), {"DueDate": "2029-12-01T00:00:00Z"})
    done = await run_it(runs, clients, past, now=lambda: start)
    assert done.status == "succeeded" and done.step("done").output == {"ok": True}


# --- on_error --------------------------------------------------------------------------------------------------

FAILING = """
  - id: ok
    set: {n: 1}
  - id: each
    for_each: "{{ [1, 2] }}"
    steps:
      - id: broken
        set: {x: "{{ trigger.Missing.Field }}"}
"""
ON_ERROR = """
  - id: tell
    set:
      where: "{{ error.step }}"
      message: "{{ error.message }}"
      kind: "{{ error.kind }}"
"""


async def test_on_error_runs_once_a_run_fails_for_good_and_sees_the_error(runs, clients, caplog) -> None:
    text = workflow_text(FAILING, on_error=ON_ERROR + """      n: "{{ steps.ok.output.n }}"
  - id: fails_too
    set: {y: "{{ error.nope.x }}"}
""")
    run_id = add_run(runs, text, {})
    with caplog.at_level(logging.WARNING, logger="qbflow.runner"):
        done = await run_it(runs, clients, run_id)
    assert done.status == "failed"
    assert done.error.startswith("step 'each[0].broken' (set): template")
    tell = done.step("on_error.tell")
    assert tell.status == "succeeded"
    assert tell.output["where"] == "each[0].broken" and tell.output["kind"] == "permanent"
    assert "Missing" in tell.output["message"] and tell.output["n"] == 1
    assert done.step("on_error.fails_too").status == "failed"  # logged, not run again, the run stays failed
    assert "on_error step on_error.fails_too failed" in caplog.text


async def test_on_error_does_not_run_while_a_step_waits_for_a_retry(runs, clients) -> None:
    steps = """
  - id: hook
    action: http.request
    input: {url: "https://hooks.example.com/x", json: {a: 1}}
"""
    run_id = add_run(runs, workflow_text(steps, on_error=ON_ERROR), {})
    down = httpx.MockTransport(lambda request: httpx.Response(503, text="down"))
    done = await run_it(runs, clients, run_id, http_transport=down)
    assert done.status == "waiting_retry"
    assert done.step("on_error.tell") is None


# --- workflow test (dry run) -------------------------------------------------------------------------------------

async def test_a_dry_run_shows_nested_steps_and_sends_nothing(clients, sandbox, realm, token) -> None:
    text = workflow_text(BRANCHES + loop_steps() + """
  - id: pause
    wait: 1d
""")
    workflow = load_workflow_text(text)
    report = await test_workflow(workflow, live=False, clients=clients,
                                 sample={"Amount": 500, "Tier": "gold", "Names": ["Dry A", "Dry B"]})
    assert report.ok, report.to_dict()
    by_id = {step.id: step for step in report.steps}
    assert [s.path for s in by_id["size"].steps] == ["size.big_note"]
    assert by_id["size"].output == {"branch": "then", "condition": True}
    loop = by_id["each_name"]
    assert [s.path for s in loop.steps] == ["each_name[0].create", "each_name[0].note",
                                             "each_name[1].create", "each_name[1].note"]
    assert loop.steps[0].dry_run and loop.steps[0].input == {"display_name": "Dry A"}
    assert loop.steps[1].output["id"] == "<dry run: steps.create.output.Id>"
    assert by_id["pause"].output["dry_run"] is True
    assert await customers(sandbox, realm, token, "Dry ") == []
    shown = report.to_dict()
    assert shown["steps"][1]["steps"][0]["path"] == "size.big_note"


async def test_a_failing_nested_step_fails_the_test_report(clients) -> None:
    workflow = load_workflow_text(workflow_text(FAILING))
    report = await test_workflow(workflow, live=False, clients=clients, sample={})
    assert not report.ok
    loop = report.steps[1]
    assert loop.error is not None and loop.error["step"] == "each[0].broken"
    assert loop.steps[0].error is not None and "Missing" in loop.steps[0].error["message"]


async def test_a_resumed_if_keeps_the_branch_it_took(runs, sandbox, realm, token) -> None:
    steps = """
  - id: check
    if: "{{ trigger.Flag }}"
    then:
      - id: first
        action: create_customer
        input: {display_name: "Branch One"}
      - id: second
        action: create_customer
        input: {display_name: "Branch Two"}
    else:
      - id: other
        set: {never: true}
"""
    crash = CrashAfter(sandbox, "Branch One")

    async def crashing(name: str):
        return make_client(sandbox, realm, StaticTokens(token), retry=NO_CLIENT_RETRY, transport=crash)

    run_id = add_run(runs, workflow_text(steps), {"Flag": True})
    with pytest.raises(Crash):
        await run_it(runs, crashing, run_id)
    left = runs.get_run(run_id)
    assert left.step("check").status == "pending" and left.step("check").output["branch"] == "then"
    # The condition would now choose the other branch (the workflow was edited meanwhile).
    runs.upsert_workflow("flow", None, yaml.safe_load(workflow_text(steps.replace("trigger.Flag", "not trigger.Flag"))))

    async def healthy(name: str):
        return make_client(sandbox, realm, StaticTokens(token), retry=NO_CLIENT_RETRY)

    (done,) = await Runner(runs, healthy).resume_unfinished()
    assert done.status == "succeeded", done.error
    assert done.step("check").status == "succeeded" and done.step("check").output["branch"] == "then"
    assert done.step("check.other") is None
    assert await customers(sandbox, realm, token, "Branch ") == ["Branch One", "Branch Two"]


async def test_flow_steps_never_finish_before_they_start(runs, clients) -> None:
    run_id = add_run(runs, workflow_text(BRANCHES), {"Amount": 250, "Tier": "gold"})
    done = await run_it(runs, clients, run_id)
    timed = [(s.step_id, s.started_at, s.finished_at) for s in done.steps if s.finished_at is not None]
    assert {"totals", "size", "tier"} <= {step_id for step_id, _, _ in timed}
    assert all(started <= finished for _, started, finished in timed), timed
