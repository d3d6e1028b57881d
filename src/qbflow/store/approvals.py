"""Approvals: what a run waiting at an `approval` step asks, of whom, until when, and the one decision.

    approvals = ApprovalStore(store.engine, signing_key=store.box.derive("approval links"))
    record = approvals.request(run_id, workflow_id, "bill_ok", message="Pay bill 1042?", approvers=["ana"],
                               expires_at=now + timedelta(days=3), on_timeout="rejected")   # once per (run, step)
    token = approvals.link_token(record, "ana")          # goes into the approver's link
    record, approver = approvals.verify(token)           # ApprovalLinkInvalid when forged or garbled
    approvals.decide(record.id, "approved", by=approver, comment="ok")   # the first decision wins, once

A link's token is `<approval id>.<approver index>.<signature>`: HMAC-SHA256 (a key derived from the store's
secret key) over the id, the approver and the approval's random nonce. It cannot be made without the key,
names who decided, and stops working when the approval is decided or expires. A decision wakes the run
(its `next_attempt_at` becomes now), so the engine or a worker resumes it.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import hmac
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, CursorResult, Engine, select, update

from qbflow.store.db import read_session, write_session
from qbflow.store.errors import StoreError
from qbflow.store.models import (
    APPROVAL_APPROVED,
    APPROVAL_PENDING,
    APPROVAL_REJECTED,
    APPROVAL_TIMED_OUT,
    Approval,
    Run,
    Workflow,
    utcnow,
)

__all__ = [
    "DECISIONS",
    "ApprovalClosed",
    "ApprovalLinkInvalid",
    "ApprovalNotFound",
    "ApprovalRecord",
    "ApprovalStore",
]

DECISIONS = (APPROVAL_APPROVED, APPROVAL_REJECTED)

# What a decision calls, in its transaction, once the run it woke is due: (db, run_id, now).
WakeHook = Callable[[Connection, int, datetime], None]
_SIGNATURE_BYTES = 20


class ApprovalNotFound(StoreError, LookupError):
    """No approval with this id."""

    def __init__(self, approval_id: int) -> None:
        super().__init__(f"No approval with id {approval_id}. See `GET /api/approvals`.")
        self.approval_id = approval_id


class ApprovalLinkInvalid(StoreError):
    """A link's token that qbflow did not make (forged, cut short, or made with a key no longer in use)."""

    def __init__(self) -> None:
        super().__init__("This approval link is not valid: it may be incomplete (copy the whole link) or made "
                         "before the secret key was changed.")


class ApprovalClosed(StoreError):
    """The approval was decided already, or it expired: the message says which, by whom and when."""

    def __init__(self, record: ApprovalRecord) -> None:
        self.record = record
        if record.status == APPROVAL_TIMED_OUT:
            text = (f"This approval expired at {record.expires_at:%Y-%m-%d %H:%M} UTC without an answer; the run "
                    f"went on as {record.on_timeout}.")
        elif record.status == APPROVAL_PENDING:
            text = f"This approval expired at {record.expires_at:%Y-%m-%d %H:%M} UTC."
        else:
            by = f" by {record.decided_by}" if record.decided_by else ""
            at = f" at {record.decided_at:%Y-%m-%d %H:%M} UTC" if record.decided_at else ""
            text = f"This approval was already {record.status}{by}{at}."
        super().__init__(text)


@dataclass(frozen=True, kw_only=True)
class ApprovalRecord:
    """An approval as stored. `outcome` is the decision a run goes on with (the timeout's default once it
    timed out), None while pending."""

    id: int
    run_id: int
    workflow_id: int
    workflow_name: str
    step_path: str
    message: str
    approvers: tuple[str, ...]
    status: str
    on_timeout: str
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    comment: str | None

    @property
    def outcome(self) -> str | None:
        if self.status == APPROVAL_TIMED_OUT:
            return self.on_timeout
        return None if self.status == APPROVAL_PENDING else self.status

    def decision(self) -> dict[str, Any]:
        """What the `approval` step outputs: the outcome, who, when, the comment, and whether it timed out."""
        return {"outcome": self.outcome, "approved": self.outcome == APPROVAL_APPROVED,
                "timed_out": self.status == APPROVAL_TIMED_OUT, "by": self.decided_by,
                "at": None if self.decided_at is None else self.decided_at.isoformat(), "comment": self.comment,
                "approval_id": self.id}


class ApprovalStore:
    """The approvals table, with the key that signs approvers' links."""

    def __init__(self, engine: Engine, *, signing_key: bytes, on_wake: WakeHook | None = None) -> None:
        self.engine = engine
        self._key = signing_key
        self.on_wake = on_wake

    @classmethod
    def of(cls, store: Any, *, on_wake: WakeHook | None = None) -> ApprovalStore:
        """The approvals of an opened `Store`, signing links with a key derived from its secret key. `on_wake(db,
        run_id, now)` is called in a decision's transaction once the run is due (the server: its workers' job)."""
        return cls(store.engine, signing_key=store.box.derive("approval links"), on_wake=on_wake)

    def request(self, run_id: int, workflow_id: int, step_path: str, *, message: str, approvers: Sequence[str],
                expires_at: datetime, on_timeout: str = APPROVAL_REJECTED, now: datetime | None = None
                ) -> ApprovalRecord:
        """The approval of this run's step, made on first call: a resumed step gets the same one (and links)."""
        if on_timeout not in DECISIONS:
            raise ValueError(f"on_timeout must be one of {', '.join(DECISIONS)}, got {on_timeout!r}")
        with write_session(self.engine) as session:
            row = session.scalars(select(Approval).where(Approval.run_id == run_id,
                                                         Approval.step_path == step_path)).one_or_none()
            if row is None:
                row = Approval(run_id=run_id, workflow_id=workflow_id, step_path=step_path, message=message,
                               approvers=list(approvers), nonce=secrets.token_hex(16), status=APPROVAL_PENDING,
                               on_timeout=on_timeout, created_at=now or utcnow(), expires_at=expires_at)
                session.add(row)
                session.flush()
            return self._record(session, row)

    def get(self, approval_id: int) -> ApprovalRecord:
        with read_session(self.engine) as session:
            row = session.get(Approval, approval_id)
            if row is None:
                raise ApprovalNotFound(approval_id)
            return self._record(session, row)

    def for_step(self, run_id: int, step_path: str) -> ApprovalRecord | None:
        with read_session(self.engine) as session:
            row = session.scalars(select(Approval).where(Approval.run_id == run_id,
                                                         Approval.step_path == step_path)).one_or_none()
            return None if row is None else self._record(session, row)

    def list(self, *, status: str | None = APPROVAL_PENDING, limit: int = 200) -> builtins.list[ApprovalRecord]:
        """Approvals, newest first; pending ones by default."""
        with read_session(self.engine) as session:
            query = (select(Approval, Workflow.name).join(Workflow, Workflow.id == Approval.workflow_id)
                     .order_by(Approval.id.desc()).limit(limit))
            if status is not None:
                query = query.where(Approval.status == status)
            # the workflow's name comes with each row (one query for the list, not one more per approval)
            return [self._record(session, row, name) for row, name in session.execute(query)]

    # -- links -------------------------------------------------------------------------------------

    def link_token(self, record: ApprovalRecord, approver: str | None = None) -> str:
        """The token of `approver`'s link (the first approver's when None; "anyone" when nobody is named)."""
        index = 0 if approver is None or not record.approvers else record.approvers.index(approver)
        with read_session(self.engine) as session:
            nonce = session.scalars(select(Approval.nonce).where(Approval.id == record.id)).one()
        return f"{record.id}.{index}.{self._sign(record.id, index, nonce)}"

    def verify(self, token: str) -> tuple[ApprovalRecord, str]:
        """The approval a link's token is for and the approver it names; ApprovalLinkInvalid when not ours."""
        parts = token.split(".")
        if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
            raise ApprovalLinkInvalid()
        approval_id, index = int(parts[0]), int(parts[1])
        with read_session(self.engine) as session:
            row = session.get(Approval, approval_id)
            if row is None or not hmac.compare_digest(parts[2], self._sign(approval_id, index, row.nonce)):
                raise ApprovalLinkInvalid()
            record = self._record(session, row)
        approvers = record.approvers or ("anyone with the link",)
        if index >= len(approvers):
            raise ApprovalLinkInvalid()
        return record, approvers[index]

    def _sign(self, approval_id: int, index: int, nonce: str) -> str:
        digest = hmac.new(self._key, f"{approval_id}.{index}.{nonce}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:_SIGNATURE_BYTES]).decode().rstrip("=")

    # -- decisions ---------------------------------------------------------------------------------

    def decide(self, approval_id: int, decision: str, *, by: str, comment: str | None = None,
               now: datetime | None = None) -> ApprovalRecord:
        """Record the decision (approved or rejected) and wake the run. ApprovalClosed when it was decided
        already or has expired: only the first decision counts."""
        if decision not in DECISIONS:
            raise ValueError(f"a decision is one of {', '.join(DECISIONS)}, got {decision!r}")
        now = now or utcnow()
        with write_session(self.engine) as session:
            changed = cast(CursorResult[Any], session.execute(
                update(Approval)
                .where(Approval.id == approval_id, Approval.status == APPROVAL_PENDING, Approval.expires_at > now)
                .values(status=decision, decided_by=by[:255], decided_at=now, comment=comment or None)
            )).rowcount
            row = session.get(Approval, approval_id, populate_existing=True)
            if row is None:
                raise ApprovalNotFound(approval_id)
            record = self._record(session, row)
            if not changed:
                raise ApprovalClosed(record)
            self._wake(session, row.run_id, now)
            if self.on_wake is not None:
                self.on_wake(session.connection(), row.run_id, now)
            return record

    def expire(self, approval_id: int, now: datetime | None = None) -> ApprovalRecord:
        """Close a pending approval whose time is up (its outcome becomes `on_timeout`); the record as it is
        after (unchanged when decided already or not yet due)."""
        now = now or utcnow()
        with write_session(self.engine) as session:
            session.execute(
                update(Approval)
                .where(Approval.id == approval_id, Approval.status == APPROVAL_PENDING, Approval.expires_at <= now)
                .values(status=APPROVAL_TIMED_OUT, decided_at=now)
            )
            row = session.get(Approval, approval_id, populate_existing=True)
            if row is None:
                raise ApprovalNotFound(approval_id)
            return self._record(session, row)

    @staticmethod
    def _wake(session: Any, run_id: int, now: datetime) -> None:
        # The run waits with next_attempt_at = the approval's expiry: due now, so it resumes with the decision.
        session.execute(update(Run).where(Run.id == run_id, Run.next_attempt_at > now).values(next_attempt_at=now))

    @staticmethod
    def _record(session: Any, row: Approval, name: str | None = None) -> ApprovalRecord:
        if name is None:
            name = session.scalars(select(Workflow.name).where(Workflow.id == row.workflow_id)).one_or_none()
        return ApprovalRecord(
            id=row.id, run_id=row.run_id, workflow_id=row.workflow_id, workflow_name=name or "?",
            step_path=row.step_path, message=row.message, approvers=tuple(row.approvers or ()), status=row.status,
            on_timeout=row.on_timeout, created_at=row.created_at, expires_at=row.expires_at,
            decided_at=row.decided_at, decided_by=row.decided_by, comment=row.comment)
