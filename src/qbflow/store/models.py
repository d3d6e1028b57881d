"""The tables qbflow keeps, as SQLAlchemy 2 typed models.

The schema itself is created and changed only by the Alembic migrations in `qbflow/store/migrations`; a
test checks that they and these models agree. Secret values are stored only encrypted (columns ending in
`_enc`, written by `SecretBox`); no `__repr__` here shows them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

STATUS_OK = "ok"
STATUS_NEEDS_RECONNECT = "needs_reconnect"
STATUSES = (STATUS_OK, STATUS_NEEDS_RECONNECT)

RUN_QUEUED = "queued"
RUN_RUNNING = "running"
RUN_SUCCEEDED = "succeeded"
RUN_FAILED = "failed"
RUN_WAITING_RETRY = "waiting_retry"
RUN_CANCELLED = "cancelled"
RUN_WAITING = "waiting"  # a `wait` step: due again at next_attempt_at, like waiting_retry
RUN_STATUSES = (RUN_QUEUED, RUN_RUNNING, RUN_SUCCEEDED, RUN_FAILED, RUN_WAITING_RETRY, RUN_CANCELLED, RUN_WAITING)
# Statuses of runs that become due again at their next_attempt_at (every claim path treats them alike).
RUN_DELAYED = (RUN_WAITING_RETRY, RUN_WAITING)

STEP_PENDING = "pending"
STEP_SENT = "sent"
STEP_SUCCEEDED = "succeeded"
STEP_FAILED = "failed"
STEP_SKIPPED = "skipped"
STEP_STATUSES = (STEP_PENDING, STEP_SENT, STEP_SUCCEEDED, STEP_FAILED, STEP_SKIPPED)

# SQL NULL for Python None (not the JSON literal null), so "no output yet" is NULL.
JSONValue = JSON(none_as_null=True)

# Named constraints, so later migrations (and SQLite's batch mode) can refer to them by name.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every database (SQLite keeps no zone, so it stores naive UTC).

    Naive datetimes are refused when written: their meaning is a guess.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime given where a timezone-aware one is required (use UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Base of every qbflow table."""

    __table__: ClassVar[Table]  # every model here is mapped to one Table (DeclarativeBase says any FromClause)
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


class Connection(Base):
    """One authorized link to one QuickBooks Online company (a realm), under a unique name.

    `token_version` grows by one at every token change; it is what makes a refresh happen once across
    threads and processes (see `ConnectionStore.rotate`).
    """

    __tablename__ = "connections"
    __table_args__ = (CheckConstraint(f"status IN {STATUSES!r}", name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    realm_id: Mapped[str] = mapped_column(String(64), index=True)
    company_name: Mapped[str | None] = mapped_column(String(255))
    environment: Mapped[str] = mapped_column(String(20), default="production")
    api_base: Mapped[str] = mapped_column(String(500))
    token_endpoint: Mapped[str] = mapped_column(String(500))
    revocation_endpoint: Mapped[str | None] = mapped_column(String(500))
    discovery_url: Mapped[str | None] = mapped_column(String(500))
    client_id: Mapped[str] = mapped_column(String(255))
    client_secret_enc: Mapped[str] = mapped_column(Text)
    access_token_enc: Mapped[str] = mapped_column(Text)
    refresh_token_enc: Mapped[str] = mapped_column(Text)
    access_expires_at: Mapped[datetime]
    refresh_expires_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(20), default=STATUS_OK)
    status_detail: Mapped[str | None] = mapped_column(Text)
    token_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:
        return (
            f"Connection(id={self.id!r}, name={self.name!r}, realm_id={self.realm_id!r}, "
            f"status={self.status!r}, token_version={self.token_version!r})"
        )


class Workflow(Base):
    """One workflow file as added by `qbflow workflow add`: its parsed definition and whether it runs."""

    __tablename__ = "workflows"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    source_path: Mapped[str | None] = mapped_column(String(1000))
    definition: Mapped[Any] = mapped_column(JSONValue)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # Why qbflow turned it off by itself (the loop breaker); cleared when it is enabled again.
    paused_reason: Mapped[str | None] = mapped_column(Text)

    def __repr__(self) -> str:
        return f"Workflow(id={self.id!r}, name={self.name!r}, enabled={self.enabled!r})"


class TriggerCursor(Base):
    """Where one workflow's trigger stands on one company: a `PollCursor` as JSON text.

    Written only together with the events it covers (`RunStore.record_poll`).
    """

    __tablename__ = "trigger_cursors"
    __table_args__ = (UniqueConstraint("workflow_id", "realm_id", "trigger_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workflow_id: Mapped[int] = mapped_column(ForeignKey("workflows.id", ondelete="CASCADE"))
    connection: Mapped[str] = mapped_column(String(100))
    realm_id: Mapped[str] = mapped_column(String(64), index=True)
    trigger_key: Mapped[str] = mapped_column(String(100))
    cursor: Mapped[str] = mapped_column(Text)
    last_poll_at: Mapped[datetime | None]
    next_poll_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Event(Base):
    """One firing of one trigger, stored once per (workflow, company, dedup key)."""

    __tablename__ = "events"
    __table_args__ = (UniqueConstraint("workflow_id", "realm_id", "dedup_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workflow_id: Mapped[int] = mapped_column(ForeignKey("workflows.id", ondelete="CASCADE"))
    realm_id: Mapped[str] = mapped_column(String(64))
    trigger_key: Mapped[str] = mapped_column(String(100))
    entity: Mapped[str] = mapped_column(String(100))
    record_id: Mapped[str] = mapped_column(String(64))
    sync_token: Mapped[str | None] = mapped_column(String(64))
    dedup_key: Mapped[str] = mapped_column(String(255))
    record: Mapped[Any] = mapped_column(JSONValue)
    changed_at: Mapped[datetime | None]
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class Run(Base):
    """One execution of a workflow for one event (at most one run per event).

    `uid` is random and fixed at creation; step request ids derive from it, so they are stable across
    retries and crashes of this run yet never collide with another database's run of the same id.
    """

    __tablename__ = "runs"
    __table_args__ = (
        CheckConstraint(f"status IN {RUN_STATUSES!r}", name="status"),
        Index("ix_runs_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_runs_status_lane_id", "status", "lane", "id"),
        Index("ix_runs_order_key_workflow_id_id", "order_key", "workflow_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uid: Mapped[str] = mapped_column(String(36), unique=True)
    workflow_id: Mapped[int] = mapped_column(ForeignKey("workflows.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), unique=True)
    status: Mapped[str] = mapped_column(String(20), default=RUN_QUEUED)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None]
    # "realm|entity|Id" of the event's record: a workflow's runs with one key run in the order of their events.
    order_key: Mapped[str | None] = mapped_column(String(255))
    lane: Mapped[str | None] = mapped_column(String(100))  # the trigger's connection: whose limits the run uses

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, workflow_id={self.workflow_id!r}, status={self.status!r})"


class OwnWrite(Base):
    """A record version qbflow itself wrote (entity, Id and the SyncToken its step got back), and by which
    workflow: the change it shows up as in the next poll does not start that workflow again."""

    __tablename__ = "own_writes"
    __table_args__ = (
        UniqueConstraint("realm_id", "entity", "record_id", "sync_token"),
        Index("ix_own_writes_written_at", "written_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    realm_id: Mapped[str] = mapped_column(String(64))
    entity: Mapped[str] = mapped_column(String(100))
    record_id: Mapped[str] = mapped_column(String(64))
    sync_token: Mapped[str] = mapped_column(String(64))
    workflow_id: Mapped[int] = mapped_column(ForeignKey("workflows.id", ondelete="CASCADE"))
    run_id: Mapped[int | None] = mapped_column(Integer)
    written_at: Mapped[datetime] = mapped_column(default=utcnow)


class StepResult(Base):
    """The ledger of one step of one run: recorded "sent" before its request, then its outcome."""

    __tablename__ = "step_results"
    __table_args__ = (
        CheckConstraint(f"status IN {STEP_STATUSES!r}", name="status"),
        UniqueConstraint("run_id", "step_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step_id: Mapped[str] = mapped_column(String(500))  # the step's ledger path (engine.steps.base)
    position: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default=STEP_PENDING)
    request_id: Mapped[str] = mapped_column(String(36))
    input: Mapped[Any] = mapped_column(JSONValue, nullable=True)
    output: Mapped[Any] = mapped_column(JSONValue, nullable=True)
    error: Mapped[Any] = mapped_column(JSONValue, nullable=True)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)


# Ids of the pacer's request log outgrow 32 bits (500 a minute per company, for years).
_BigId = BigInteger().with_variant(Integer, "sqlite")


class PacerRealm(Base):
    """One company's shared pacing state (`qbflow.qbo.pacing.postgres`): the row whose lock serialises admissions.

    Times are seconds since the epoch on the database's clock, the one clock every worker shares.
    """

    __tablename__ = "pacer_realms"

    realm_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    paused_until: Mapped[float] = mapped_column(Double, default=0.0)
    throttles: Mapped[int] = mapped_column(Integer, default=0)


class PacerRequest(Base):
    """One request to a company, admitted by the shared pacer: a lease while in flight, then an entry of the log.

    In flight while `ended_at` is NULL and `expires_at` (renewed while the request lasts) is ahead; a lease that
    expired without an end (its worker died) counts as having ended at `expires_at`.
    """

    __tablename__ = "pacer_requests"
    __table_args__ = (Index("ix_pacer_requests_realm_id_ended_at", "realm_id", "ended_at"),)

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    realm_id: Mapped[str] = mapped_column(String(64))
    batch: Mapped[bool] = mapped_column(Boolean, default=False)
    holder: Mapped[str] = mapped_column(String(200))
    admitted_at: Mapped[float] = mapped_column(Double)
    expires_at: Mapped[float] = mapped_column(Double)
    ended_at: Mapped[float | None] = mapped_column(Double)


APPROVAL_PENDING = "pending"
APPROVAL_APPROVED = "approved"
APPROVAL_REJECTED = "rejected"
APPROVAL_TIMED_OUT = "timed_out"
APPROVAL_STATUSES = (APPROVAL_PENDING, APPROVAL_APPROVED, APPROVAL_REJECTED, APPROVAL_TIMED_OUT)


class Approval(Base):
    """A run's question to people (an `approval` step): who is asked, until when, and the one decision.

    The links sent to approvers are signed (`nonce` is part of what is signed, so a link cannot be made from the
    database alone) and work once: the first decision closes the approval."""

    __tablename__ = "approvals"
    __table_args__ = (
        CheckConstraint(f"status IN {APPROVAL_STATUSES!r}", name="status"),
        UniqueConstraint("run_id", "step_path"),
        Index("ix_approvals_status_expires_at", "status", "expires_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    workflow_id: Mapped[int] = mapped_column(ForeignKey("workflows.id", ondelete="CASCADE"))
    step_path: Mapped[str] = mapped_column(String(255))
    message: Mapped[str] = mapped_column(Text, default="")
    approvers: Mapped[Any] = mapped_column(JSONValue)  # the names asked, in order
    nonce: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), default=APPROVAL_PENDING)
    on_timeout: Mapped[str] = mapped_column(String(20), default=APPROVAL_REJECTED)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    decided_at: Mapped[datetime | None] = mapped_column()
    decided_by: Mapped[str | None] = mapped_column(String(255))
    comment: Mapped[str | None] = mapped_column(Text)


class Hook(Base):
    """A webhook workflow's inbound URL (`POST /hooks/<hook_id>`): a random id that tells nothing about the
    workflow, and the secret its deliveries are signed with (or sent as a bearer token), encrypted."""

    __tablename__ = "hooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    hook_id: Mapped[str] = mapped_column(String(64), unique=True)
    workflow_id: Mapped[int] = mapped_column(ForeignKey("workflows.id", ondelete="CASCADE"), unique=True)
    secret_enc: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    rotated_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"Hook(id={self.id!r}, workflow_id={self.workflow_id!r})"


class HookDelivery(Base):
    """One delivery a hook accepted (202): a new event and run, or a duplicate of an earlier delivery id. The
    newest few per hook are kept (`HookStore` prunes the rest); refused deliveries store nothing."""

    __tablename__ = "hook_deliveries"
    __table_args__ = (Index("ix_hook_deliveries_hook_id_id", "hook_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    hook_id: Mapped[int] = mapped_column(ForeignKey("hooks.id", ondelete="CASCADE"))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(20))  # accepted | duplicate
    delivery_id: Mapped[str | None] = mapped_column(String(255))
    run_id: Mapped[int | None] = mapped_column(Integer)
