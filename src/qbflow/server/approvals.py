"""Approvals over HTTP: the approvers' links, the dashboard's list, and the API.

    GET  /approvals/respond/{token}      the page an approver's link opens: the question and a form
    POST /approvals/respond/{token}      decision=approved|rejected, comment: the decision, once
    GET  /approvals                      (dashboard, logged in) pending approvals with approve/reject
    POST /approvals/{id}/decide          (dashboard, logged in, CSRF)
    GET  /api/approvals?status=pending   (API token) approvals as JSON
    POST /api/approvals/{id}/approve     (API token) {"comment": "..."}; /reject likewise

Opening a link changes nothing (mail scanners open links): only the form's POST decides. A link's token is
signed (`qbflow.store.approvals`), names its approver, and stops working once the approval is decided or expires.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import anyio
from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request, status
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from qbflow.engine.workers import wake_run_job
from qbflow.server import auth
from qbflow.server.api import MAX_ID
from qbflow.server.auth import require_api_token
from qbflow.server.dashboard import csrf_refused, flash, problem_page, render
from qbflow.store.approvals import (
    ApprovalClosed,
    ApprovalLinkInvalid,
    ApprovalNotFound,
    ApprovalRecord,
    ApprovalStore,
)
from qbflow.store.models import utcnow

__all__ = ["api_router", "approval_store", "router"]

router = APIRouter(include_in_schema=False)
api_router = APIRouter(prefix="/api", tags=["approvals"], dependencies=[Depends(require_api_token)],
                       responses={401: {"description": "No valid API token (`Authorization: Bearer TOKEN`)."}})

Decision = Literal["approved", "rejected"]
ApprovalId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="The approval's id.")]
StatusFilter = Literal["pending", "approved", "rejected", "timed_out", "all"]
_COMMENT_MAX = 2000


def approval_store(store: object) -> ApprovalStore:
    """The approvals of an opened store, with its link-signing key. A decision also moves the run's job forward
    when workers use the database (its job waits for the approval's expiry): the run goes on at once."""
    return ApprovalStore.of(store, on_wake=wake_run_job)


def _approvals(request: Request) -> ApprovalStore:
    return approval_store(request.app.state.store)


# --- the approvers' links ----------------------------------------------------------------------------------

def _link_problem(request: Request, error: Exception) -> HTMLResponse:
    if isinstance(error, ApprovalClosed):
        return problem_page(request, 409 if error.record.status != "pending" else 410, "Approval closed", str(error),
                            back="/", back_label="qbflow")
    return problem_page(request, 404, "Link not valid", str(error), back="/", back_label="qbflow")


@router.get("/approvals/respond/{token}")
async def respond_page(request: Request, token: str, decision: str | None = None) -> HTMLResponse:
    approvals = _approvals(request)
    try:
        record, approver = await anyio.to_thread.run_sync(approvals.verify, token)
    except ApprovalLinkInvalid as error:
        return _link_problem(request, error)
    if record.status != "pending" or record.expires_at <= utcnow():
        return _link_problem(request, ApprovalClosed(record))
    return render(request, "approval_respond.html", {
        "approval": record, "approver": approver, "token": token,
        "chosen": decision if decision in ("approved", "rejected") else None})


@router.post("/approvals/respond/{token}")
async def respond(request: Request, token: str, decision: Annotated[str, Form()] = "",
                  comment: Annotated[str, Form()] = "") -> HTMLResponse:
    approvals = _approvals(request)
    if decision not in ("approved", "rejected"):
        return problem_page(request, 422, "No decision", f"decision must be approved or rejected, got {decision!r}.",
                            back=f"/approvals/respond/{token}", back_label="Back to the question")
    try:
        record, approver = await anyio.to_thread.run_sync(approvals.verify, token)
        decided = await anyio.to_thread.run_sync(
            lambda: approvals.decide(record.id, decision, by=approver, comment=comment[:_COMMENT_MAX]))
    except (ApprovalLinkInvalid, ApprovalClosed) as error:
        return _link_problem(request, error)
    text = f"Thank you: {decided.workflow_name} (run {decided.run_id}) was {decided.status}; it goes on now."
    return render(request, "message.html", {"title": decided.status.capitalize(), "text": text, "back": "/",
                                            "back_label": "qbflow", "ok": True})


# --- the dashboard -------------------------------------------------------------------------------------------

@router.get("/approvals", dependencies=[Depends(auth.require_login)])
async def approvals_page(request: Request) -> HTMLResponse:
    approvals = _approvals(request)
    pending = await anyio.to_thread.run_sync(lambda: approvals.list(status="pending"))
    recent = await anyio.to_thread.run_sync(lambda: [a for a in approvals.list(status=None, limit=50)
                                                     if a.status != "pending"])
    return render(request, "approvals.html", {"pending": pending, "recent": recent})


@router.post("/approvals/{approval_id}/decide", dependencies=[Depends(auth.require_login)])
async def decide_on_dashboard(request: Request, approval_id: int, decision: Annotated[str, Form()] = "",
                              comment: Annotated[str, Form()] = "", csrf: Annotated[str, Form()] = "") -> Response:
    if (refused := csrf_refused(request, csrf)) is not None:
        return refused
    if decision not in ("approved", "rejected"):
        flash(request, f"decision must be approved or rejected, got {decision!r}.", "error")
        return RedirectResponse("/approvals", status_code=303)
    approvals = _approvals(request)
    try:
        record = await anyio.to_thread.run_sync(
            lambda: approvals.decide(approval_id, decision, by="dashboard", comment=comment[:_COMMENT_MAX]))
    except (ApprovalNotFound, ApprovalClosed) as error:
        flash(request, str(error), "error")
    else:
        flash(request, f"Approval {record.id} ({record.workflow_name}, run {record.run_id}) {record.status}.")
    return RedirectResponse("/approvals", status_code=303)



# --- the API -------------------------------------------------------------------------------------------------

class ApprovalOut(BaseModel):
    """An approval: what a waiting run asks, of whom, until when, and the decision once made."""

    id: int
    run_id: int
    workflow: str
    step: str = Field(description="The approval step's path in the workflow.")
    message: str
    approvers: list[str]
    status: str = Field(description="pending, approved, rejected or timed_out.")
    outcome: str | None = Field(description="The decision the run goes on with (on_timeout once timed out).")
    on_timeout: str
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    comment: str | None


class DecisionIn(BaseModel):
    comment: str | None = Field(default=None, max_length=_COMMENT_MAX)
    by: str | None = Field(default=None, max_length=255, description='Who decides (default "api").')


def _out(record: ApprovalRecord) -> ApprovalOut:
    return ApprovalOut(id=record.id, run_id=record.run_id, workflow=record.workflow_name, step=record.step_path,
                       message=record.message, approvers=list(record.approvers), status=record.status,
                       outcome=record.outcome, on_timeout=record.on_timeout, created_at=record.created_at,
                       expires_at=record.expires_at, decided_at=record.decided_at, decided_by=record.decided_by,
                       comment=record.comment)


@api_router.get("/approvals", response_model=list[ApprovalOut])
async def list_approvals(request: Request, status_: Annotated[StatusFilter, Query(alias="status")] = "pending"
                         ) -> list[ApprovalOut]:
    """Approvals, newest first: pending ones by default; `status=all` for every one."""
    approvals = _approvals(request)
    records = await anyio.to_thread.run_sync(lambda: approvals.list(status=None if status_ == "all" else status_))
    return [_out(record) for record in records]


async def _decide(request: Request, approval_id: int, decision: Decision, body: DecisionIn | None) -> ApprovalOut:
    approvals = _approvals(request)
    body = body or DecisionIn()
    try:
        record = await anyio.to_thread.run_sync(
            lambda: approvals.decide(approval_id, decision, by=body.by or "api", comment=body.comment))
    except ApprovalNotFound as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
    except ApprovalClosed as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    return _out(record)


@api_router.post("/approvals/{approval_id}/approve", response_model=ApprovalOut,
                 responses={404: {"description": "No such approval."}, 409: {"description": "Decided or expired."}})
async def approve(request: Request, approval_id: ApprovalId, body: DecisionIn | None = None) -> ApprovalOut:
    """Approve: the waiting run goes on with outcome "approved"."""
    return await _decide(request, approval_id, "approved", body)


@api_router.post("/approvals/{approval_id}/reject", response_model=ApprovalOut,
                 responses={404: {"description": "No such approval."}, 409: {"description": "Decided or expired."}})
async def reject(request: Request, approval_id: ApprovalId, body: DecisionIn | None = None) -> ApprovalOut:
    """Reject: the waiting run goes on with outcome "rejected"."""
    return await _decide(request, approval_id, "rejected", body)
