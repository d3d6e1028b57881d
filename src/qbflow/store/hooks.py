"""Inbound webhook URLs of `kind: webhook` workflows, their secrets (encrypted at rest) and recent deliveries.

    hooks = HookStore(store.engine, store.box)
    hook, secret = hooks.ensure(workflow_id)          # secret: the new one (shown once), None if it existed
    hook, secret = hooks.rotate(workflow_id)          # a new random secret (or the one given), shown once
    target = hooks.target("kU3...")                   # what POST /hooks/<id> needs: workflow and secret
    hooks.recent_deliveries(hook.id)                  # newest first

A hook's id is random (`secrets.token_urlsafe`), fixed for the hook's life and kept when its workflow is updated;
its secret is kept only encrypted with the store's `SecretBox` and never appears in a repr. Deliveries are
written by the receiver inside the transaction that stores their event (`delivery_writer`), and only the newest
`KEEP_DELIVERIES` per hook are kept.
"""

from __future__ import annotations

import builtins
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, select
from sqlalchemy.exc import IntegrityError

from qbflow.store.crypto import SecretBox
from qbflow.store.db import read_session, write_session
from qbflow.store.models import Hook, HookDelivery, Workflow, utcnow

__all__ = ["KEEP_DELIVERIES", "DeliveryRecord", "DeliveryWriter", "HookRecord", "HookStore", "HookTarget", "new_secret"]

KEEP_DELIVERIES = 100  # per hook; pruned every PRUNE_EVERY deliveries, so at most about 160 rows
_PRUNE_EVERY = 64


def new_secret() -> str:
    """A new random hook secret: 32 bytes, URL-safe text (pasted into the sender's settings)."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True, kw_only=True)
class DeliveryRecord:
    """One accepted delivery: 202 with a new run, or a duplicate of an earlier delivery id."""

    id: int
    received_at: datetime
    status: int
    outcome: str
    delivery_id: str | None
    run_id: int | None


@dataclass(frozen=True, kw_only=True)
class HookRecord:
    """A hook as lists show it: never its secret."""

    id: int
    hook_id: str
    workflow_id: int
    workflow: str
    enabled: bool
    created_at: datetime
    rotated_at: datetime | None
    deliveries: int = 0  # kept deliveries (the newest KEEP_DELIVERIES at most)
    last_delivery: DeliveryRecord | None = None

    @property
    def path(self) -> str:
        """The URL's path on qbflow's server."""
        return f"/hooks/{self.hook_id}"


@dataclass(frozen=True, kw_only=True, repr=False)
class HookTarget:
    """What the receiver needs for one delivery: the hook, its workflow (definition, on/off) and its secret."""

    id: int
    hook_id: str
    workflow_id: int
    workflow: str
    definition: Any
    enabled: bool
    secret: str

    def __repr__(self) -> str:
        return f"HookTarget(hook_id={self.hook_id!r}, workflow={self.workflow!r}, secret='***')"


class HookStore:
    """The only code that reads or writes the `hooks` and `hook_deliveries` tables."""

    def __init__(self, engine: Engine, box: SecretBox) -> None:
        self.engine = engine
        self.box = box

    def __repr__(self) -> str:
        return f"HookStore({self.engine.url.render_as_string(hide_password=True)!r})"

    # -- hooks ---------------------------------------------------------------------------------------

    def ensure(self, workflow_id: int) -> tuple[HookRecord, str | None]:
        """The workflow's hook, made now if it has none: (hook, its new secret) then, else (hook, None)."""
        existing = self._find(workflow_id)
        if existing is not None:
            return existing, None
        secret = new_secret()
        try:
            with write_session(self.engine) as session:
                session.add(Hook(hook_id=secrets.token_urlsafe(18), workflow_id=workflow_id,
                                 secret_enc=self.box.encrypt(secret), created_at=utcnow()))
        except IntegrityError:  # made by someone else meanwhile: theirs stands, its secret was shown to them
            found = self._find(workflow_id)
            assert found is not None
            return found, None
        made = self._find(workflow_id)
        assert made is not None
        return made, secret

    def rotate(self, workflow_id: int, secret: str | None = None) -> tuple[HookRecord, str]:
        """Give the workflow's hook a new secret (random, or `secret`: one the sender chose, as Shopify's and
        Stripe's are), making the hook if it has none; the old secret stops working at once. (hook, secret)."""
        secret = secret if secret is not None else new_secret()
        if not secret.strip():
            raise ValueError("a hook secret cannot be empty")
        hook, _made = self.ensure(workflow_id)
        with write_session(self.engine) as session:
            row = session.scalars(select(Hook).where(Hook.id == hook.id)).one()
            row.secret_enc = self.box.encrypt(secret)
            row.rotated_at = utcnow()
        found = self._find(workflow_id)
        assert found is not None
        return found, secret

    def target(self, hook_id: str) -> HookTarget | None:
        """The hook with this URL id, its workflow and its decrypted secret (None: no such hook)."""
        with read_session(self.engine) as session:
            row = session.execute(
                select(Hook.id, Hook.hook_id, Hook.workflow_id, Hook.secret_enc, Workflow.name, Workflow.definition,
                       Workflow.enabled)
                .join(Workflow, Workflow.id == Hook.workflow_id).where(Hook.hook_id == hook_id)).one_or_none()
        if row is None:
            return None
        return HookTarget(id=row.id, hook_id=row.hook_id, workflow_id=row.workflow_id, workflow=row.name,
                          definition=row.definition, enabled=row.enabled, secret=self.box.decrypt(row.secret_enc))

    def get(self, workflow_id: int) -> HookRecord | None:
        """The workflow's hook (None: it has none)."""
        return self._find(workflow_id)

    def list(self) -> builtins.list[HookRecord]:
        """Every hook with its workflow's name, kept delivery count and newest delivery, by workflow name."""
        with read_session(self.engine) as session:
            rows = session.execute(
                select(Hook, Workflow.name, Workflow.enabled).join(Workflow, Workflow.id == Hook.workflow_id)
                .order_by(Workflow.name)).all()
            counts = {hook: n for hook, n in session.execute(select(HookDelivery.hook_id, func.count())
                                                             .group_by(HookDelivery.hook_id))}
            newest_ids = session.scalars(select(func.max(HookDelivery.id)).group_by(HookDelivery.hook_id)).all()
            newest = {row.hook_id: _delivery(row) for row in
                      session.scalars(select(HookDelivery).where(HookDelivery.id.in_(newest_ids)))} if newest_ids \
                else {}
            return [_hook(hook, name, enabled, counts.get(hook.id, 0), newest.get(hook.id))
                    for hook, name, enabled in rows]

    def reencrypt_all(self) -> int:
        """Re-encrypt every hook secret with the box's first key (after a key rotation); the row count."""
        with write_session(self.engine) as session:
            rows = session.scalars(select(Hook).with_for_update()).all()
            for row in rows:
                row.secret_enc = self.box.rotate(row.secret_enc)
            return len(rows)

    # -- deliveries ----------------------------------------------------------------------------------

    def recent_deliveries(self, hook: int, limit: int = 20) -> builtins.list[DeliveryRecord]:
        """The hook's newest deliveries (by the table id of the hook), newest first."""
        with read_session(self.engine) as session:
            rows = session.scalars(select(HookDelivery).where(HookDelivery.hook_id == hook)
                                   .order_by(HookDelivery.id.desc()).limit(limit)).all()
            return [_delivery(row) for row in rows]

    def delivery_writer(self, hook: int, delivery_id: str | None) -> DeliveryWriter:
        """What stores one accepted delivery: pass it as `RunStore.record_event(on_runs=...)` (written in the
        event's transaction, with the new run), then call `duplicate()` if no run was made."""
        return DeliveryWriter(self, hook, delivery_id)

    def _write_delivery(self, db: Connection, hook: int, outcome: str, delivery_id: str | None,
                        run_id: int | None) -> None:
        row = HookDelivery
        new_id = db.execute(insert(row).values(
            hook_id=hook, received_at=utcnow(), status=202, outcome=outcome,
            delivery_id=delivery_id[:255] if delivery_id else None, run_id=run_id).returning(row.id)).scalar_one()
        if new_id % _PRUNE_EVERY == 0:
            cutoff = db.execute(select(row.id).where(row.hook_id == hook).order_by(row.id.desc())
                                .offset(KEEP_DELIVERIES).limit(1)).scalar_one_or_none()
            if cutoff is not None:
                db.execute(delete(row).where(row.hook_id == hook, row.id <= cutoff))

    def _find(self, workflow_id: int) -> HookRecord | None:
        with read_session(self.engine) as session:
            row = session.execute(select(Hook, Workflow.name, Workflow.enabled)
                                  .join(Workflow, Workflow.id == Hook.workflow_id)
                                  .where(Hook.workflow_id == workflow_id)).one_or_none()
            return None if row is None else _hook(row[0], row[1], row[2], 0, None)


class DeliveryWriter:
    """Records one accepted delivery (see `HookStore.delivery_writer`)."""

    def __init__(self, hooks: HookStore, hook: int, delivery_id: str | None) -> None:
        self._hooks = hooks
        self._hook = hook
        self._delivery_id = delivery_id
        self.then: Any = None  # another `on_runs` hook to call in the same transaction (workers: enqueue_runs)

    def __call__(self, db: Connection, run_ids: Sequence[int]) -> None:
        self._hooks._write_delivery(db, self._hook, "accepted", self._delivery_id, run_ids[0] if run_ids else None)
        if self.then is not None:
            self.then(db, run_ids)

    def duplicate(self) -> None:
        """The delivery id was seen before: note it (no event, no run)."""
        with write_session(self._hooks.engine) as session:
            self._hooks._write_delivery(session.connection(), self._hook, "duplicate", self._delivery_id, None)


def _hook(row: Hook, name: str, enabled: bool, count: int, last: DeliveryRecord | None) -> HookRecord:
    return HookRecord(id=row.id, hook_id=row.hook_id, workflow_id=row.workflow_id, workflow=name, enabled=enabled,
                      created_at=row.created_at, rotated_at=row.rotated_at, deliveries=count, last_delivery=last)


def _delivery(row: HookDelivery) -> DeliveryRecord:
    return DeliveryRecord(id=row.id, received_at=row.received_at, status=row.status, outcome=row.outcome,
                          delivery_id=row.delivery_id, run_id=row.run_id)
