"""RunStore: events stored once with their cursor, runs claimed once, a step ledger with stable request ids.

Every test runs on SQLite and, when QBFLOW_TEST_POSTGRES_URL is set, on PostgreSQL (see conftest.py).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select

from qbflow.connector.polling import PollCursor, TriggerEvent
from qbflow.store import (
    Base,
    Event,
    Run,
    RunNotFound,
    RunStore,
    Store,
    WorkflowNotFound,
    make_engine,
    read_session,
    upgrade,
)
from qbflow.store.runs import request_id_for

REALM = "9130350000000001"
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
DEFINITION = {
    "name": "new-invoice",
    "trigger": {"key": "new_invoice", "connection": "acme", "every": 60},
    "steps": [{"id": "send", "action": "send_invoice", "input": {"Id": "{{ trigger.Id }}", "n": 1.5, "x": None}}],
}


@pytest.fixture
def runs(store: Store) -> RunStore:
    return RunStore(store.engine)


@pytest.fixture
def workflow_id(runs: RunStore) -> int:
    return runs.upsert_workflow("new-invoice", "flows/new_invoice.yaml", DEFINITION).id


def event(record_id: str, sync_token: str = "0", trigger: str = "new_invoice") -> TriggerEvent:
    record = {"Id": record_id, "SyncToken": sync_token, "TotalAmt": 12.5, "Line": [{"Amount": 12.5}], "Memo": None}
    return TriggerEvent(
        trigger_key=trigger,
        entity="Invoice",
        record_id=record_id,
        sync_token=sync_token,
        record=record,
        dedup_key=f"{trigger}:Invoice:{record_id}:{sync_token}",
        changed_at=NOW,
    )


def cursor_json(seconds: int = 0) -> str:
    return PollCursor.start(NOW + timedelta(seconds=seconds)).to_json()


def count(runs: RunStore, model: Any) -> int:
    with read_session(runs.engine) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


# -- workflows ------------------------------------------------------------------------------------


def test_workflows_round_trip_and_keep_their_state(runs: RunStore, workflow_id: int) -> None:
    stored = runs.get_workflow("new-invoice")
    assert stored.id == workflow_id
    assert stored.definition == DEFINITION
    assert stored.enabled is True
    runs.set_enabled("new-invoice", False)
    again = runs.upsert_workflow("new-invoice", "other.yaml", {**DEFINITION, "steps": []})
    assert again.id == workflow_id
    assert again.enabled is False  # re-adding keeps a disabled workflow disabled
    assert again.source_path == "other.yaml"
    assert [w.name for w in runs.list_workflows(enabled=False)] == ["new-invoice"]
    assert runs.list_workflows(enabled=True) == []
    with pytest.raises(WorkflowNotFound):
        runs.set_enabled("missing", True)


# -- record_poll ----------------------------------------------------------------------------------


def test_overlapping_polls_create_each_run_once(runs: RunStore, workflow_id: int) -> None:
    first = runs.record_poll(workflow_id, "new_invoice", "acme", REALM, [event("1"), event("2")], cursor_json(1))
    second = runs.record_poll(
        workflow_id,
        "new_invoice",
        "acme",
        REALM,
        [event("2"), event("3"), event("3"), event("2", "1")],  # overlap, a duplicate within, a new SyncToken
        cursor_json(2),
    )
    assert len(first) == 2
    assert len(second) == 2
    assert len(set(first) | set(second)) == 4
    assert count(runs, Event) == 4
    assert count(runs, Run) == 4
    assert runs.record_poll(workflow_id, "new_invoice", "acme", REALM, [event("1")], cursor_json(3)) == []
    # run ids come back in event order; every run is queued and carries its event's record
    runs_by_id = {run_id: runs.get_run(run_id) for run_id in first + second}
    assert [runs_by_id[i].event.record_id for i in second] == ["3", "2"]
    assert [runs_by_id[i].event.sync_token for i in second] == ["0", "1"]
    assert all(run.status == "queued" and run.workflow_name == "new-invoice" for run in runs_by_id.values())
    assert runs_by_id[first[0]].event.record == event("1").record
    assert runs_by_id[first[0]].event.changed_at == NOW


def test_the_same_record_on_another_company_is_another_event(runs: RunStore, workflow_id: int) -> None:
    runs.record_poll(workflow_id, "new_invoice", "acme", REALM, [event("1")], cursor_json())
    assert len(runs.record_poll(workflow_id, "new_invoice", "beta", "42", [event("1")], cursor_json())) == 1


def test_events_may_be_plain_mappings(runs: RunStore, workflow_id: int) -> None:
    mapping = {"entity": "Invoice", "record_id": 7, "sync_token": 0, "record": {"Id": "7"}, "dedup_key": "k7"}
    (run_id,) = runs.record_poll(workflow_id, "new_invoice", "acme", REALM, [mapping], cursor_json())
    stored = runs.get_run(run_id).event
    assert (stored.trigger_key, stored.record_id, stored.sync_token) == ("new_invoice", "7", "0")


def test_the_cursor_moves_with_its_events(runs: RunStore, workflow_id: int) -> None:
    assert runs.get_cursor(workflow_id, "new_invoice", REALM) is None
    runs.record_poll(workflow_id, "new_invoice", "acme", REALM, [], cursor_json(1), now=NOW, next_poll_at=NOW)
    stored = runs.get_cursor(workflow_id, "new_invoice", REALM)
    assert stored is not None
    assert PollCursor.from_json(stored.cursor) == PollCursor.from_json(cursor_json(1))
    assert stored.last_poll_at == NOW
    assert stored.connection == "acme"
    assert runs.record_poll_error(workflow_id, "new_invoice", REALM, "timeout", now=NOW)
    assert runs.get_cursor(workflow_id, "new_invoice", REALM).last_error == "timeout"
    assert runs.get_cursor(workflow_id, "new_invoice", REALM).cursor == stored.cursor
    runs.record_poll(workflow_id, "new_invoice", "acme", REALM, [event("1")], cursor_json(2))
    moved = runs.get_cursor(workflow_id, "new_invoice", REALM)
    assert moved.cursor == cursor_json(2)
    assert moved.last_error is None


def test_a_failure_inside_the_poll_transaction_keeps_nothing(
    runs: RunStore, workflow_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs.record_poll(workflow_id, "new_invoice", "acme", REALM, [event("1")], cursor_json(1))

    # Fail at the last moment: after the events and runs were inserted, while the cursor is written.
    from qbflow.store import runs as runs_module

    original = runs_module.TriggerCursor.cursor

    class Boom(RuntimeError):
        pass

    def crash(*_args: Any, **_kwargs: Any) -> None:
        raise Boom

    monkeypatch.setattr(runs_module.TriggerCursor, "cursor", property(lambda self: "", crash))
    with pytest.raises(Boom):
        runs.record_poll(workflow_id, "new_invoice", "acme", REALM, [event("2"), event("3")], cursor_json(2))
    monkeypatch.setattr(runs_module.TriggerCursor, "cursor", original)

    assert count(runs, Event) == 1
    assert count(runs, Run) == 1
    assert runs.get_cursor(workflow_id, "new_invoice", REALM).cursor == cursor_json(1)
    # the same poll again (the cursor did not move) delivers the events, once
    assert (
        len(runs.record_poll(workflow_id, "new_invoice", "acme", REALM, [event("2"), event("3")], cursor_json(2))) == 2
    )


def test_a_cursor_that_is_not_json_is_refused(runs: RunStore, workflow_id: int) -> None:
    with pytest.raises(ValueError):
        runs.record_poll(workflow_id, "new_invoice", "acme", REALM, [event("1")], "not json")
    assert count(runs, Event) == 0


# -- claiming -------------------------------------------------------------------------------------


def test_claim_takes_due_runs_oldest_first(runs: RunStore, workflow_id: int) -> None:
    ids = runs.record_poll(workflow_id, "new_invoice", "acme", REALM, [event("1"), event("2")], cursor_json())
    claimed = runs.claim_next_run()
    assert claimed is not None
    assert claimed.id == ids[0]
    assert (claimed.status, claimed.attempt) == ("running", 1)
    assert claimed.event.record_id == "1"
    later = datetime.now(UTC) + timedelta(minutes=5)
    runs.finish_run(claimed.id, "waiting_retry", error="timeout", next_attempt_at=later)
    assert runs.claim_next_run().id == ids[1]
    assert runs.claim_next_run() is None  # the retry is not due yet
    retried = runs.claim_next_run(now=later)
    assert (retried.id, retried.attempt, retried.error) == (ids[0], 2, "timeout")
    runs.finish_run(retried.id, "succeeded")
    done = runs.get_run(retried.id)
    assert done.status == "succeeded"
    assert done.finished_at is not None
    assert runs.claim_next_run(now=later + timedelta(days=1)) is None
    with pytest.raises(ValueError):
        runs.finish_run(retried.id, "waiting_retry")
    with pytest.raises(RunNotFound):
        runs.finish_run(10_000, "failed")


def test_runs_for_one_record_are_claimed_in_their_events_order(runs: RunStore, workflow_id: int) -> None:
    """An Updated run never overtakes an earlier one of its workflow for the same record, whichever way it is
    claimed (the embedded engine's `claim_runs`, `claim_next_run`, a worker's `claim_run`); other records go on."""
    (first,) = runs.record_poll(workflow_id, "updated_invoice", "acme", REALM, [event("7", "1", "updated_invoice")],
                                cursor_json())
    second, other = runs.record_poll(workflow_id, "updated_invoice", "acme", REALM,
                                     [event("7", "2", "updated_invoice"), event("8", "1", "updated_invoice")],
                                     cursor_json(1))
    assert [r.id for r in runs.claim_runs({"acme": 10})] == [first, other]  # the second edit of 7 waits
    assert runs.claim_run(second) is None and runs.claim_next_run() is None
    later = datetime.now(UTC) + timedelta(minutes=1)
    runs.finish_run(first, "waiting_retry", error="503", next_attempt_at=later)
    assert runs.claim_run(second) is None  # still behind the first, which waits to be tried again
    assert runs.claim_run(first, now=later).id == first
    runs.finish_run(first, "succeeded")
    assert runs.claim_run(second).id == second


def test_concurrent_claimers_never_share_a_run(runs: RunStore, store: Store, workflow_id: int) -> None:
    events = [event(str(i)) for i in range(40)]
    ids = runs.record_poll(workflow_id, "new_invoice", "acme", REALM, events, cursor_json())
    claimers = 4
    barrier = threading.Barrier(claimers)
    claimed: list[list[int]] = [[] for _ in range(claimers)]
    errors: list[BaseException] = []

    def claim(slot: int) -> None:
        # each thread has its own engine, so its own connections and sessions
        engine = make_engine(store.engine.url)
        mine = RunStore(engine)
        try:
            barrier.wait()
            while (run := mine.claim_next_run()) is not None:
                claimed[slot].append(run.id)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=claim, args=(slot,)) for slot in range(claimers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    every = [run_id for ids_of_one in claimed for run_id in ids_of_one]
    assert sorted(every) == sorted(ids)  # each run claimed exactly once
    assert {run.status for run in runs.list_runs(limit=100)} == {"running"}


# -- the step ledger ------------------------------------------------------------------------------


def test_step_request_ids_are_stable_and_distinct(runs: RunStore, workflow_id: int) -> None:
    a, b = runs.record_poll(workflow_id, "new_invoice", "acme", REALM, [event("1"), event("2")], cursor_json())
    ids = {runs.step_request_id(run, step) for run in (a, b) for step in ("find", "create", "send")}
    assert len(ids) == 6
    assert all(len(request_id) <= 36 for request_id in ids)
    assert runs.step_request_id(a, "create") == runs.step_request_id(a, "create")
    sent = runs.mark_step_sent(a, "create", {"CustomerRef": {"value": "1"}})
    assert sent.request_id == runs.step_request_id(a, "create")
    assert sent.request_id == request_id_for(runs.get_run(a).uid, "create")
    with pytest.raises(RunNotFound):
        runs.step_request_id(10_000, "create")


def test_the_step_ledger_records_sent_before_the_outcome(runs: RunStore, workflow_id: int) -> None:
    (run_id,) = runs.record_poll(workflow_id, "new_invoice", "acme", REALM, [event("1")], cursor_json())
    runs.claim_next_run()
    payload = {"Line": [{"Amount": 12.5, "DetailType": "SalesItemLineDetail"}], "Note": None, "ok": True}
    runs.finish_step(run_id, "check", status="skipped", input={"when": False})
    sent = runs.mark_step_sent(run_id, "create", payload)
    assert (sent.status, sent.attempts, sent.position, sent.input) == ("sent", 1, 1, payload)
    assert sent.output is None
    # a retry after an ambiguous failure: another attempt, the same request id
    again = runs.mark_step_sent(run_id, "create", payload)
    assert (again.attempts, again.request_id) == (2, sent.request_id)
    runs.finish_step(run_id, "create", output={"Invoice": {"Id": "130", "TotalAmt": 12.5}})
    runs.mark_step_sent(run_id, "email", {"Id": "130"})
    runs.finish_step(run_id, "email", error={"code": "6000", "message": "Business Validation Error"}, status="failed")
    runs.finish_run(run_id, "failed", error="email: Business Validation Error")

    run = runs.get_run(run_id)
    assert run.status == "failed"
    assert [(s.step_id, s.position, s.status) for s in run.steps] == [
        ("check", 0, "skipped"),
        ("create", 1, "succeeded"),
        ("email", 2, "failed"),
    ]
    create = run.step("create")
    assert create.input == payload
    assert create.output == {"Invoice": {"Id": "130", "TotalAmt": 12.5}}
    assert create.error is None
    assert create.finished_at >= create.started_at
    assert run.step("email").error == {"code": "6000", "message": "Business Validation Error"}
    assert [r.id for r in runs.list_runs(workflow="new-invoice", status="failed")] == [run_id]
    assert runs.list_runs(workflow="other") == []
    assert runs.list_runs(status="succeeded") == []


def test_unfinished_runs_are_found_after_a_crash(runs: RunStore, store: Store, workflow_id: int) -> None:
    ids = runs.record_poll(workflow_id, "new_invoice", "acme", REALM, [event("1"), event("2")], cursor_json())
    first = runs.claim_next_run()
    runs.mark_step_sent(first.id, "create", {"Amount": 1})
    second = runs.claim_next_run()
    runs.finish_run(second.id, "succeeded")
    # the process dies here: nothing else is told; a new engine opens the same database
    store.engine.dispose()
    restarted = RunStore(make_engine(store.engine.url))
    try:
        unfinished = restarted.unfinished_runs()
        assert [run.id for run in unfinished] == [ids[0]]
        (step,) = unfinished[0].steps
        assert (step.step_id, step.status) == ("create", "sent")  # resume: look it up before creating again
        assert step.request_id == runs.step_request_id(ids[0], "create")
        assert unfinished[0].event.record_id == "1"
        assert restarted.claim_next_run() is None
        restarted.finish_run(ids[0], "queued")  # what `qbflow runs retry` does too
        assert restarted.claim_next_run().id == ids[0]
    finally:
        restarted.engine.dispose()


# -- schema ---------------------------------------------------------------------------------------


def test_migration_0002_matches_the_models(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        upgrade(engine)
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert diff == []
    finally:
        engine.dispose()


def test_retry_gives_refused_steps_new_request_ids_but_keeps_ambiguous_ones(runs: RunStore, workflow_id: int) -> None:
    refused, ambiguous = runs.record_poll(workflow_id, "new_invoice", "acme", REALM, [event("1"), event("2")],
                                          cursor_json())
    for run_id in (refused, ambiguous):
        runs.claim_next_run()
        runs.mark_step_sent(run_id, "find", {})
        runs.finish_step(run_id, "find", output={"Id": "7"})
        runs.mark_step_sent(run_id, "create", {"CustomerRef": {"value": "7"}})
    # QBO refused the first run's create (a validation fault): nothing was written.
    runs.finish_step(refused, "create", error={"type": "Validation", "message": "bad"}, status="failed")
    runs.finish_run(refused, "failed", error="bad")
    # The second run's create failed in a way that may have reached QuickBooks.
    runs.finish_step(ambiguous, "create", error={"type": "Transient", "transient": True}, status="failed")
    runs.finish_run(ambiguous, "failed", error="gave up")
    before = {run_id: (runs.step_request_id(run_id, "create"), runs.step_request_id(run_id, "find"))
              for run_id in (refused, ambiguous)}

    again = runs.retry(refused)
    assert again.status == "queued" and again.error is None
    assert runs.step_request_id(refused, "create") != before[refused][0]  # a new id: not QBO's stored refusal
    assert runs.get_run(refused).step("create").request_id == runs.step_request_id(refused, "create")
    assert runs.get_run(refused).step("find").request_id == before[refused][1]  # done steps keep theirs

    runs.retry(ambiguous)
    assert runs.step_request_id(ambiguous, "create") == before[ambiguous][0]  # may have been written: replay
    with pytest.raises(ValueError):
        runs.retry(ambiguous)  # already queued
