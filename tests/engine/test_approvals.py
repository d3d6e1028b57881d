"""Approvals in the store: one per (run, step), signed links naming the approver, one decision, expiry."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import text

from qbflow.engine.stored import store_workflow
from qbflow.engine.workflow import load_workflow_text
from qbflow.store import RunStore, Store
from qbflow.store.approvals import ApprovalClosed, ApprovalLinkInvalid, ApprovalStore

NOW = dt.datetime(2026, 12, 4, 9, 0, tzinfo=dt.UTC)
WORKFLOW = "name: Bill approval\ntrigger: {kind: manual}\nsteps: [{id: note, action: log, input: {message: hi}}]\n"


@pytest.fixture
def approvals(store: Store) -> ApprovalStore:
    return ApprovalStore(store.engine, signing_key=store.box.derive("approval links"))


@pytest.fixture
def run_id(runs: RunStore) -> int:
    record, _ = store_workflow(runs, load_workflow_text(WORKFLOW), None)
    made = runs.record_event(record.id, kind="manual", dedup_key="manual:1", payload={"inputs": {}})
    assert made is not None
    return made


def ask(approvals: ApprovalStore, runs: RunStore, run_id: int, days: int = 3):
    return approvals.request(run_id, runs.get_run(run_id).workflow_id, "ok", message="Pay bill 1042?",
                             approvers=["ana", "ben"], expires_at=NOW + dt.timedelta(days=days), now=NOW)


def test_a_resumed_step_gets_the_same_approval_and_links(approvals: ApprovalStore, runs: RunStore,
                                                         run_id: int) -> None:
    first = ask(approvals, runs, run_id)
    again = ask(approvals, runs, run_id)
    assert again.id == first.id and again.workflow_name == "Bill approval" and again.approvers == ("ana", "ben")
    assert approvals.link_token(first, "ben") == approvals.link_token(again, "ben")
    assert approvals.link_token(first, "ana") != approvals.link_token(first, "ben")


def test_a_link_names_its_approver_and_a_forged_one_is_refused(approvals: ApprovalStore, runs: RunStore,
                                                               run_id: int, store: Store) -> None:
    record = ask(approvals, runs, run_id)
    token = approvals.link_token(record, "ben")
    assert approvals.verify(token) == (record, "ben")
    approval_id, index, signature = token.split(".")
    for forged in (f"{approval_id}.0.{signature}", f"{approval_id}.{index}.{signature[:-1]}x", "1.0", "x.y.z",
                   f"{int(approval_id) + 1}.{index}.{signature}"):
        with pytest.raises(ApprovalLinkInvalid):
            approvals.verify(forged)
    other_key = ApprovalStore(store.engine, signing_key=b"k" * 32)
    with pytest.raises(ApprovalLinkInvalid):
        other_key.verify(token)


def test_only_the_first_decision_counts_and_it_wakes_the_run(approvals: ApprovalStore, runs: RunStore,
                                                             run_id: int, store: Store) -> None:
    record = ask(approvals, runs, run_id)
    with store.engine.begin() as db:  # the run waits for the answer until the approval expires
        db.execute(text("UPDATE runs SET next_attempt_at = :at WHERE id = :id"),
                   {"at": (record.expires_at if store.engine.dialect.name != "sqlite"
                           else record.expires_at.replace(tzinfo=None)), "id": run_id})
    later = NOW + dt.timedelta(hours=2)
    decided = approvals.decide(record.id, "approved", by="ben", comment="fine", now=later)
    assert decided.decision() == {"outcome": "approved", "approved": True, "timed_out": False, "by": "ben",
                                  "at": later.isoformat(), "comment": "fine", "approval_id": record.id}
    assert runs.get_run(run_id).next_attempt_at == later
    with pytest.raises(ApprovalClosed, match="already approved by ben"):
        approvals.decide(record.id, "rejected", by="ana", now=later + dt.timedelta(minutes=1))
    assert approvals.get(record.id).status == "approved" and approvals.list() == []


def test_an_expired_approval_takes_its_default_and_refuses_late_answers(approvals: ApprovalStore,
                                                                        runs: RunStore, run_id: int) -> None:
    record = ask(approvals, runs, run_id, days=1)
    assert approvals.expire(record.id, now=NOW + dt.timedelta(hours=23)).status == "pending"
    late = NOW + dt.timedelta(days=1, seconds=1)
    with pytest.raises(ApprovalClosed, match="expired"):
        approvals.decide(record.id, "approved", by="ana", now=late)
    timed_out = approvals.expire(record.id, now=late)
    assert timed_out.status == "timed_out" and timed_out.outcome == "rejected"
    assert timed_out.decision()["timed_out"] is True
    assert [a.id for a in approvals.list(status="timed_out")] == [record.id]
