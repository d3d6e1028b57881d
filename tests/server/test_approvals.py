"""Approvals over HTTP: an approver's link (opening it changes nothing; the form decides once), the API, and
refusals of forged links and late answers."""

from __future__ import annotations

import datetime as dt

import httpx

from qbflow.engine.stored import store_workflow
from qbflow.engine.workflow import load_workflow_text
from qbflow.server.approvals import approval_store
from qbflow.store import RunStore, Store
from qbflow.store.approvals import ApprovalRecord

WORKFLOW = "name: Bill approval\ntrigger: {kind: manual}\nsteps: [{id: note, action: log, input: {message: hi}}]\n"


def ask(store: Store, runs: RunStore, key: str, *, expires_in: dt.timedelta = dt.timedelta(days=3)
        ) -> ApprovalRecord:
    try:
        record = runs.get_workflow("Bill approval")
    except LookupError:
        record, _ = store_workflow(runs, load_workflow_text(WORKFLOW), None)
    run_id = runs.record_event(record.id, kind="manual", dedup_key=f"manual:{key}", payload={"inputs": {}})
    assert run_id is not None
    return approval_store(store).request(run_id, record.id, "ok", message=f"Pay bill {key}?",
                                         approvers=["ana", "ben"], expires_at=dt.datetime.now(dt.UTC) + expires_in)


def link(store: Store, record: ApprovalRecord, approver: str) -> str:
    return f"/approvals/respond/{approval_store(store).link_token(record, approver)}"


async def test_an_approver_decides_once_through_the_link(store: Store, runs: RunStore,
                                                         anonymous: httpx.AsyncClient) -> None:
    record = ask(store, runs, "1042")
    path = link(store, record, "ben")
    page = await anonymous.get(path)
    assert page.status_code == 200 and "Pay bill 1042?" in page.text and "Approval asked of ben" in page.text
    assert approval_store(store).get(record.id).status == "pending"  # opening the link decided nothing
    done = await anonymous.post(path, data={"decision": "rejected", "comment": "wrong amount"})
    assert done.status_code == 200 and "rejected" in done.text
    decided = approval_store(store).get(record.id)
    assert (decided.status, decided.decided_by, decided.comment) == ("rejected", "ben", "wrong amount")
    again = await anonymous.post(link(store, record, "ana"), data={"decision": "approved"})
    assert again.status_code == 409 and "already rejected by ben" in again.text
    assert (await anonymous.get(path)).status_code == 409
    assert approval_store(store).get(record.id).status == "rejected"


async def test_forged_links_and_bad_decisions_change_nothing(store: Store, runs: RunStore,
                                                             anonymous: httpx.AsyncClient) -> None:
    record = ask(store, runs, "7")
    path = link(store, record, "ana")
    for forged in (path[:-2] + "xx", f"/approvals/respond/{record.id}.0.abc", "/approvals/respond/nothing"):
        response = await anonymous.post(forged, data={"decision": "approved"})
        assert response.status_code == 404 and "not valid" in response.text
    assert (await anonymous.post(path, data={"decision": "maybe"})).status_code == 422
    assert approval_store(store).get(record.id).status == "pending"


async def test_an_expired_link_is_refused(store: Store, runs: RunStore, anonymous: httpx.AsyncClient) -> None:
    record = ask(store, runs, "8", expires_in=dt.timedelta(seconds=-1))
    response = await anonymous.post(link(store, record, "ana"), data={"decision": "approved"})
    assert response.status_code == 410 and "expired" in response.text
    assert approval_store(store).get(record.id).status == "pending"


async def test_the_api_lists_and_decides(store: Store, runs: RunStore, api: httpx.AsyncClient,
                                         anonymous: httpx.AsyncClient) -> None:
    first, second = ask(store, runs, "1"), ask(store, runs, "2")
    assert (await anonymous.get("/api/approvals")).status_code == 401
    listed = (await api.get("/api/approvals")).json()
    assert [(a["id"], a["status"], a["approvers"]) for a in listed] == [
        (second.id, "pending", ["ana", "ben"]), (first.id, "pending", ["ana", "ben"])]
    approved = await api.post(f"/api/approvals/{first.id}/approve", json={"comment": "ok", "by": "controller"})
    assert approved.status_code == 200
    assert {k: approved.json()[k] for k in ("status", "outcome", "decided_by", "comment")} == {
        "status": "approved", "outcome": "approved", "decided_by": "controller", "comment": "ok"}
    assert (await api.post(f"/api/approvals/{first.id}/reject")).status_code == 409
    assert (await api.post("/api/approvals/999999/reject")).status_code == 404
    assert [a["id"] for a in (await api.get("/api/approvals")).json()] == [second.id]
    assert [a["id"] for a in (await api.get("/api/approvals", params={"status": "all"})).json()] == [
        second.id, first.id]
    assert (await api.get("/api/approvals", params={"status": "maybe"})).status_code == 422

