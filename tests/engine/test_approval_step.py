"""The `approval` step in runs: the question is stored once with links for each approver, `notify` steps run
once (a resumed run does not ask again), the run waits holding nothing, and goes on with the decision: approved,
rejected, or the timeout's default."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from qbflow.engine.runner import Runner, test_workflow
from qbflow.engine.workflow import load_workflow_text
from qbflow.store import RunStore, Store
from qbflow.store.approvals import ApprovalStore
from tests.engine.test_flow_steps import add_run

pytestmark = pytest.mark.usefixtures("isolated_data_dir")

START = datetime(2030, 3, 4, 9, 0, tzinfo=UTC)
STEPS = """
  - id: ok
    approval:
      message: "Pay bill {{ trigger.DocNumber }}?"
      approvers: [ana, "{{ trigger.Approver }}"]
      timeout: 3d
      on_timeout: rejected
    notify:
      - id: tell
        action: http.request
        input:
          url: https://chat.example.com/hooks/finance
          json:
            text: "{{ approval.message }}"
            links: "{{ approval.links }}"
  - id: route
    if: "{{ steps.ok.output.approved }}"
    then:
      - id: paid
        set: {by: "{{ steps.ok.output.by }}", comment: "{{ steps.ok.output.comment }}"}
    else:
      - id: noted
        set: {timed_out: "{{ steps.ok.output.timed_out }}", outcome: "{{ steps.ok.output.outcome }}"}
"""
TEXT = f"""
name: flow
trigger:
  key: new_customer
  connection: acme
steps:
{STEPS}"""


class Chat:
    """A chat service that records what it is sent."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def transport(self) -> httpx.MockTransport:
        def answer(request: httpx.Request) -> httpx.Response:
            self.sent.append(json.loads(request.content))
            return httpx.Response(200, json={"ok": True})

        return httpx.MockTransport(answer)


@pytest.fixture
def approvals(store: Store) -> ApprovalStore:
    return ApprovalStore(store.engine, signing_key=store.box.derive("approval links"))


async def run_at(runs: RunStore, approvals: ApprovalStore, chat: Chat, run_id: int, moment: datetime):
    claimed = runs.claim_next_run(moment)
    assert claimed is not None and claimed.id == run_id
    runner = Runner(runs, clients=None, http_transport=chat.transport(), now=lambda: moment,  # type: ignore[arg-type]
                    approvals=approvals, public_url="https://qbflow.example.com")
    return await runner.run_once(run_id)


async def test_approved_once_by_link_the_run_goes_on(runs: RunStore, approvals: ApprovalStore) -> None:
    chat = Chat()
    run_id = add_run(runs, TEXT, {"DocNumber": "1042", "Approver": "ben"})
    waiting = await run_at(runs, approvals, chat, run_id, START)
    assert waiting.status == "waiting"
    assert waiting.next_attempt_at.replace(tzinfo=UTC) == START + timedelta(days=3)
    record = approvals.for_step(run_id, "ok")
    assert record is not None and record.message == "Pay bill 1042?" and record.approvers == ("ana", "ben")
    (sent,) = chat.sent
    assert sent["text"] == "Pay bill 1042?"
    links = {link["approver"]: link["url"] for link in sent["links"]}
    assert set(links) == {"ana", "ben"}
    token = links["ben"].removeprefix("https://qbflow.example.com/approvals/respond/")
    assert approvals.verify(token)[1] == "ben"
    assert runs.claim_next_run(START + timedelta(hours=1)) is None  # nothing runs while it waits

    approvals.decide(record.id, "approved", by="ben", comment="ok", now=START + timedelta(hours=2))
    done = await run_at(runs, approvals, chat, run_id, START + timedelta(hours=2))
    assert done.status == "succeeded"
    assert done.step("ok").output["outcome"] == "approved" and done.step("ok.tell").status == "succeeded"
    assert done.step("route.paid").output == {"by": "ben", "comment": "ok"}
    assert len(chat.sent) == 1  # the approvers were told once


async def test_rejected_and_timed_out_take_the_else_branch(runs: RunStore, approvals: ApprovalStore) -> None:
    chat = Chat()
    rejected = add_run(runs, TEXT, {"DocNumber": "7", "Approver": "ben"})
    await run_at(runs, approvals, chat, rejected, START)
    record = approvals.for_step(rejected, "ok")
    assert record is not None
    approvals.decide(record.id, "rejected", by="ana", now=START + timedelta(minutes=5))
    done = await run_at(runs, approvals, chat, rejected, START + timedelta(minutes=5))
    assert done.step("route.noted").output == {"timed_out": False, "outcome": "rejected"}

    silent = add_run(runs, TEXT, {"DocNumber": "8", "Approver": "ben"})
    await run_at(runs, approvals, chat, silent, START)
    late = START + timedelta(days=3, seconds=1)
    done = await run_at(runs, approvals, chat, silent, late)
    assert done.status == "succeeded" and done.step("route.noted").output == {"timed_out": True,
                                                                              "outcome": "rejected"}
    assert approvals.for_step(silent, "ok").status == "timed_out"  # type: ignore[union-attr]


async def test_a_decision_while_the_run_is_being_stored_as_waiting_is_not_lost(
        runs: RunStore, approvals: ApprovalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    chat = Chat()
    run_id = add_run(runs, TEXT, {"DocNumber": "9", "Approver": "ben"})
    original = approvals.get
    reads = {"n": 0}

    def decided_between(approval_id: int):  # the approver answers right after the step last looked
        record = original(approval_id)
        reads["n"] += 1
        if reads["n"] == 1:
            approvals.decide(approval_id, "approved", by="ana", now=START)
        return record

    monkeypatch.setattr(approvals, "get", decided_between)
    waiting = await run_at(runs, approvals, chat, run_id, START)
    assert waiting.status == "waiting" and waiting.next_attempt_at.replace(tzinfo=UTC) == START  # due at once
    monkeypatch.setattr(approvals, "get", original)
    done = await run_at(runs, approvals, chat, run_id, START)
    assert done.step("ok").output["by"] == "ana" and done.status == "succeeded"


async def test_a_dry_run_asks_nobody_and_shows_the_notify_steps() -> None:
    report = await test_workflow(load_workflow_text(TEXT), live=False, sample={"DocNumber": "1", "Approver": "b"})
    assert report.ok
    ok = report.steps[0]
    assert ok.output["dry_run"] is True and [s.id for s in ok.steps] == ["tell"] and ok.steps[0].dry_run


def test_validation_names_approval_problems_with_lines() -> None:
    from qbflow.engine.workflow import validate_workflow_text

    bad = TEXT.replace("on_timeout: rejected", "on_timeout: maybe\n      timout: 2d").replace(
        'set: {by: "{{ steps.ok.output.by }}"', 'set: {by: "{{ approval.url }}"')
    problems = {(p.line, p.field): p.message for p in validate_workflow_text(bad, source="bill.yaml")}
    assert "did you mean 'timeout'?" in problems[(14, "steps[0].approval.timout")]
    assert "'approved' or 'rejected'" in problems[(13, "steps[0].approval.on_timeout")]
    assert any("unknown name 'approval'" in message for (line, field), message in problems.items()
               if field.startswith("steps[1].then[0]"))
    assert validate_workflow_text(TEXT) == []


def test_a_process_that_only_runs_workflows_knows_the_approval_step() -> None:
    # `qbflow run`, `serve` and `worker` import the runner and never validate a workflow (which loads every type):
    # the approval step must be registered with the other step types, or each of its runs fails with KeyError.
    code = ("import qbflow.engine.runner\nfrom qbflow.engine.steps.base import _REGISTRY\n"
            "print(' '.join(sorted(_REGISTRY)))")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert "approval" in found.stdout.split(), found.stdout
