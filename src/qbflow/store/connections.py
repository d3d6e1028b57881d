"""Connections to QuickBooks Online companies, with their tokens encrypted at rest.

`ConnectionStore` is the only code that reads or writes the `connections` table. Records come back as
`ConnectionRecord`s holding the decrypted secrets; their repr masks them.

Token refresh goes through `ConnectionStore.rotate`, which guarantees exactly one refresh per token
generation across threads and processes sharing the database (see its docstring).
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from qbflow.store.crypto import SecretBox
from qbflow.store.db import WRITE_LOCK_OPTION, read_session, write_session
from qbflow.store.errors import ConnectionExists, ConnectionNotFound, NeedsReconnect, StoreError
from qbflow.store.models import STATUS_NEEDS_RECONNECT, STATUS_OK, Connection

# How long a rotation on PostgreSQL waits for another holder of the row lock (SQLite: the busy timeout).
_PG_LOCK_TIMEOUT = "30s"

# A thread of this process waits this long for another thread's refresh (which holds the lock over HTTP).
_LOCAL_LOCK_TIMEOUT_SECONDS = 60.0

_MASK = "'***'"


def _utc(when: datetime) -> datetime:
    return when.astimezone(UTC) if when.utcoffset() is not None else when.replace(tzinfo=UTC)


def _masked_repr(obj: Any, secret_fields: frozenset[str]) -> str:
    parts = []
    for field in fields(obj):
        value = getattr(obj, field.name)
        shown = _MASK if field.name in secret_fields and value is not None else repr(value)
        parts.append(f"{field.name}={shown}")
    return f"{type(obj).__name__}({', '.join(parts)})"


@dataclass(frozen=True, kw_only=True, repr=False)
class TokenResult:
    """What a token endpoint returned: a new access token and, usually, a new refresh token.

    `refresh_token=None` means the server kept the old one; `refresh_expires_at=None` keeps the stored
    expiry. Times are timezone-aware UTC.
    """

    access_token: str
    access_expires_at: datetime
    refresh_token: str | None = None
    refresh_expires_at: datetime | None = None

    @classmethod
    def from_expires_in(
        cls,
        access_token: str,
        expires_in: float,
        refresh_token: str | None = None,
        refresh_expires_in: float | None = None,
        *,
        now: datetime | None = None,
    ) -> TokenResult:
        """Build from OAuth's relative lifetimes (`expires_in`, Intuit's `x_refresh_token_expires_in`)."""
        now = now or datetime.now(UTC)
        return cls(
            access_token=access_token,
            access_expires_at=now + timedelta(seconds=expires_in),
            refresh_token=refresh_token,
            refresh_expires_at=None if refresh_expires_in is None else now + timedelta(seconds=refresh_expires_in),
        )

    def __post_init__(self) -> None:
        for when in (self.access_expires_at, self.refresh_expires_at):
            if when is not None and when.utcoffset() is None:
                raise ValueError("token expiry times must be timezone-aware (UTC)")

    def __repr__(self) -> str:
        return _masked_repr(self, frozenset({"access_token", "refresh_token"}))


@dataclass(frozen=True, kw_only=True, repr=False)
class ConnectionRecord:
    """One stored connection, secrets decrypted. Its repr (and str) shows `'***'` for every secret."""

    id: int
    name: str
    realm_id: str
    company_name: str | None
    environment: str
    api_base: str
    token_endpoint: str
    revocation_endpoint: str | None
    discovery_url: str | None
    client_id: str
    client_secret: str
    access_token: str
    refresh_token: str
    access_expires_at: datetime
    refresh_expires_at: datetime | None
    status: str
    status_detail: str | None
    token_version: int
    created_at: datetime
    updated_at: datetime

    SECRET_FIELDS = frozenset({"client_secret", "access_token", "refresh_token"})

    @property
    def needs_reconnect(self) -> bool:
        """True when the refresh token is dead and only `qbflow connect NAME` helps."""
        return self.status == STATUS_NEEDS_RECONNECT

    def access_token_expires_within(self, seconds: float, *, now: datetime | None = None) -> bool:
        """True if the access token is expired or will be within `seconds` (refresh it first)."""
        now = now or datetime.now(UTC)
        return self.access_expires_at <= now + timedelta(seconds=seconds)

    def __repr__(self) -> str:
        return _masked_repr(self, self.SECRET_FIELDS)


class Rotation:
    """A token rotation in progress, made by `ConnectionStore.begin_rotation`.

    While `needed` is true the connection's row is locked (and SQLite's writer lock held) until exactly one
    of `complete`, `reject` or `abort` is called. When `needed` is false another caller already rotated and
    `current` is the result; nothing is locked.
    """

    def __init__(
        self,
        store: ConnectionStore,
        current: ConnectionRecord,
        *,
        session: Session | None = None,
        row: Connection | None = None,
        local_lock: threading.Lock | None = None,
    ) -> None:
        self._store = store
        self.current = current
        self._session = session
        self._row = row
        self._local_lock = local_lock

    @property
    def needed(self) -> bool:
        """True when this caller must refresh `current.refresh_token` and then `complete` (or `reject`)."""
        return self._session is not None

    def complete(self, tokens: TokenResult) -> ConnectionRecord:
        """Store the new tokens with `token_version + 1`, commit, and return the new record."""
        session, row = self._take()
        try:
            box = self._store.box
            row.access_token_enc = box.encrypt(tokens.access_token)
            row.access_expires_at = tokens.access_expires_at
            if tokens.refresh_token is not None:
                row.refresh_token_enc = box.encrypt(tokens.refresh_token)
            if tokens.refresh_expires_at is not None:
                row.refresh_expires_at = tokens.refresh_expires_at
            row.token_version = row.token_version + 1
            row.status = STATUS_OK
            row.status_detail = None
            session.commit()
            return self._store._record(row)
        except BaseException:
            session.rollback()
            raise
        finally:
            self._release(session)

    def reject(self, detail: str | None) -> None:
        """The refresh token was refused for good: mark the connection "needs_reconnect" and commit."""
        session, row = self._take()
        try:
            row.status = STATUS_NEEDS_RECONNECT
            row.status_detail = detail
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            self._release(session)

    def abort(self) -> None:
        """Give up (the refresh failed for a passing reason): roll back and release the lock."""
        if self._session is None:
            return
        session, _ = self._take()
        try:
            session.rollback()
        finally:
            self._release(session)

    def _take(self) -> tuple[Session, Connection]:
        if self._session is None or self._row is None:
            raise RuntimeError("this rotation is already finished")
        session, row = self._session, self._row
        self._session = None
        self._row = None
        return session, row

    def _release(self, session: Session) -> None:
        try:
            session.close()
        finally:
            if self._local_lock is not None:
                self._local_lock.release()
                self._local_lock = None


class ConnectionStore:
    """Adds, reads, updates and removes connections; encrypts their secrets with a `SecretBox`.

    Safe to share between threads. Several processes may use the same database at once.
    """

    def __init__(self, engine: Engine, box: SecretBox) -> None:
        self.engine = engine
        self.box = box
        # Threads of this process queue here instead of polling the database's lock.
        self._local_locks: dict[str, threading.Lock] = {}
        self._local_locks_guard = threading.Lock()

    def __repr__(self) -> str:
        return f"ConnectionStore(url={self.engine.url!r}, box={self.box!r})"

    # -- writing -------------------------------------------------------------------------------------

    def add(
        self,
        *,
        name: str,
        realm_id: str,
        client_id: str,
        client_secret: str,
        tokens: TokenResult,
        api_base: str,
        token_endpoint: str,
        company_name: str | None = None,
        environment: str = "production",
        revocation_endpoint: str | None = None,
        discovery_url: str | None = None,
        replace: bool = False,
    ) -> ConnectionRecord:
        """Store a newly authorized connection and return it.

        With `replace=True` an existing connection of that name is overwritten in place (a reconnect): it
        keeps its id and creation time, its status goes back to "ok" and its `token_version` grows, so a
        rotation still holding the old version will not use the old refresh token. Without it, an existing
        name raises `ConnectionExists`.
        """
        if tokens.refresh_token is None:
            raise ValueError("a new connection needs a refresh token")
        values: dict[str, Any] = {
            "realm_id": realm_id,
            "company_name": company_name,
            "environment": environment,
            "api_base": api_base,
            "token_endpoint": token_endpoint,
            "revocation_endpoint": revocation_endpoint,
            "discovery_url": discovery_url,
            "client_id": client_id,
            "client_secret_enc": self.box.encrypt(client_secret),
            "access_token_enc": self.box.encrypt(tokens.access_token),
            "refresh_token_enc": self.box.encrypt(tokens.refresh_token),
            "access_expires_at": tokens.access_expires_at,
            "refresh_expires_at": tokens.refresh_expires_at,
            "status": STATUS_OK,
            "status_detail": None,
        }
        # A second attempt covers two replacing adds racing on PostgreSQL, where the loser's INSERT fails.
        for attempt in range(2):
            try:
                with write_session(self.engine) as session:
                    row = self._locked_row_or_none(session, name)
                    if row is None:
                        row = Connection(name=name, token_version=1, **values)
                        session.add(row)
                    elif not replace:
                        raise ConnectionExists(name)
                    else:
                        for key, value in values.items():
                            setattr(row, key, value)
                        row.token_version = row.token_version + 1
                    session.flush()
                    return self._record(row)
            except IntegrityError:
                if not replace or attempt == 1:
                    raise ConnectionExists(name) from None
        raise AssertionError("unreachable")

    def save_tokens(self, name: str, tokens: TokenResult) -> ConnectionRecord:
        """Store tokens obtained outside `rotate` (e.g. a fresh authorization); `token_version` grows.

        To refresh, use `rotate`: only it makes sure a refresh token is used once.
        """
        with write_session(self.engine) as session:
            row = self._locked_row(session, name)
            row.access_token_enc = self.box.encrypt(tokens.access_token)
            row.access_expires_at = tokens.access_expires_at
            if tokens.refresh_token is not None:
                row.refresh_token_enc = self.box.encrypt(tokens.refresh_token)
            if tokens.refresh_expires_at is not None:
                row.refresh_expires_at = tokens.refresh_expires_at
            row.token_version = row.token_version + 1
            row.status = STATUS_OK
            row.status_detail = None
            session.flush()
            return self._record(row)

    def mark_needs_reconnect(self, name: str, detail: str | None = None) -> ConnectionRecord:
        """Flag the connection as needing `qbflow connect NAME`; `detail` (no secrets!) says why."""
        with write_session(self.engine) as session:
            row = self._locked_row(session, name)
            row.status = STATUS_NEEDS_RECONNECT
            row.status_detail = detail
            session.flush()
            return self._record(row)

    def remove(self, name: str) -> None:
        """Delete the connection and its secrets (revoking the tokens at Intuit is the caller's job)."""
        with write_session(self.engine) as session:
            session.delete(self._locked_row(session, name))

    def reencrypt_all(self) -> int:
        """Re-encrypt every stored secret with the first key (after a key rotation); returns the row count."""
        with write_session(self.engine) as session:
            rows = session.scalars(select(Connection).with_for_update()).all()
            for row in rows:
                row.client_secret_enc = self.box.rotate(row.client_secret_enc)
                row.access_token_enc = self.box.rotate(row.access_token_enc)
                row.refresh_token_enc = self.box.rotate(row.refresh_token_enc)
            return len(rows)

    # -- reading -------------------------------------------------------------------------------------

    def get(self, name: str) -> ConnectionRecord:
        """The connection called `name`; raises `ConnectionNotFound`."""
        with read_session(self.engine) as session:
            row = session.scalars(select(Connection).where(Connection.name == name)).one_or_none()
            if row is None:
                raise ConnectionNotFound(name)
            return self._record(row)

    def list(self) -> builtins.list[ConnectionRecord]:
        """Every connection, by name."""
        with read_session(self.engine) as session:
            rows = session.scalars(select(Connection).order_by(Connection.name)).all()
            return [self._record(row) for row in rows]

    def find_by_realm(self, realm_id: str) -> builtins.list[ConnectionRecord]:
        """The connections to one company (webhook notifications name the realm, not the connection)."""
        with read_session(self.engine) as session:
            stmt = select(Connection).where(Connection.realm_id == realm_id).order_by(Connection.name)
            return [self._record(row) for row in session.scalars(stmt).all()]

    # -- refreshing ----------------------------------------------------------------------------------

    def rotate(self, name: str, expected_version: int, refresh: Callable[[str], TokenResult]) -> ConnectionRecord:
        """Refresh the connection's tokens exactly once per token generation, and return the result.

        `expected_version` is the `token_version` of the record whose access token the caller found
        expired (or refused with a 401). Inside one transaction this takes the row lock (PostgreSQL:
        `SELECT ... FOR UPDATE`; SQLite: `BEGIN IMMEDIATE`, the database's writer lock) and re-reads the row:

        - `token_version != expected_version`: another thread or process already rotated; the stored
          (new) tokens are returned and `refresh` is not called.
        - otherwise `refresh(current_refresh_token)` is called *while the lock is held*, and its tokens are
          stored with `token_version + 1` and committed before the lock is released, so the rotated refresh
          token is saved before anyone else can use the old one.

        If `refresh` raises `NeedsReconnect` (the token endpoint said `invalid_grant`), the connection is
        marked "needs_reconnect" in the same transaction and the error re-raised; later calls raise
        `NeedsReconnect` without calling `refresh`. Any other exception rolls back and is re-raised.

        Why hold the lock across an HTTP call: correctness over throughput. Intuit rotates refresh tokens,
        and two refreshes with one token can leave a connection holding a token Intuit no longer honours.
        Refreshes are rare (about once an hour per connection), so serializing them costs nothing that
        matters. On SQLite the lock blocks every writer of the database for the duration of the call, so
        `refresh` must time out well under the 30 s busy timeout (20 s is a good bound).
        """
        rotation = self.begin_rotation(name, expected_version)
        if not rotation.needed:
            return rotation.current
        try:
            tokens = refresh(rotation.current.refresh_token)
        except NeedsReconnect as exc:
            rotation.reject(exc.detail)
            raise
        except BaseException:
            rotation.abort()
            raise
        return rotation.complete(tokens)

    def begin_rotation(self, name: str, expected_version: int) -> Rotation:
        """The first half of `rotate`, for callers that refresh asynchronously (`qbflow.store.aio`).

        Returns a `Rotation`; when its `needed` is true the caller must finish it with exactly one of
        `complete`, `reject` or `abort`, from any thread, promptly.
        """
        local_lock = self._local_lock(name)
        if not local_lock.acquire(timeout=_LOCAL_LOCK_TIMEOUT_SECONDS):
            raise StoreError(f"Timed out waiting for another token refresh of connection {name!r} to finish.")
        session = Session(self.engine, expire_on_commit=False)
        try:
            session.connection(execution_options={WRITE_LOCK_OPTION: True})
            if self.engine.dialect.name == "postgresql":
                session.execute(text(f"SET LOCAL lock_timeout = '{_PG_LOCK_TIMEOUT}'"))
            row = self._locked_row(session, name)
            if row.status == STATUS_NEEDS_RECONNECT:
                raise NeedsReconnect(name, row.status_detail)
            record = self._record(row)
            if row.token_version != expected_version:
                session.rollback()
                session.close()
                local_lock.release()
                return Rotation(self, record)
            return Rotation(self, record, session=session, row=row, local_lock=local_lock)
        except BaseException:
            try:
                session.rollback()
                session.close()
            finally:
                local_lock.release()
            raise

    # -- internals -----------------------------------------------------------------------------------

    def _local_lock(self, name: str) -> threading.Lock:
        with self._local_locks_guard:
            return self._local_locks.setdefault(name, threading.Lock())

    @staticmethod
    def _locked_row_or_none(session: Session, name: str) -> Connection | None:
        stmt = select(Connection).where(Connection.name == name).with_for_update()
        return session.scalars(stmt).one_or_none()

    def _locked_row(self, session: Session, name: str) -> Connection:
        row = self._locked_row_or_none(session, name)
        if row is None:
            raise ConnectionNotFound(name)
        return row

    def _record(self, row: Connection) -> ConnectionRecord:
        return ConnectionRecord(
            id=row.id,
            name=row.name,
            realm_id=row.realm_id,
            company_name=row.company_name,
            environment=row.environment,
            api_base=row.api_base,
            token_endpoint=row.token_endpoint,
            revocation_endpoint=row.revocation_endpoint,
            discovery_url=row.discovery_url,
            client_id=row.client_id,
            client_secret=self.box.decrypt(row.client_secret_enc),
            access_token=self.box.decrypt(row.access_token_enc),
            refresh_token=self.box.decrypt(row.refresh_token_enc),
            access_expires_at=_utc(row.access_expires_at),
            refresh_expires_at=_utc(row.refresh_expires_at) if row.refresh_expires_at is not None else None,
            status=row.status,
            status_detail=row.status_detail,
            token_version=row.token_version,
            created_at=_utc(row.created_at),
            updated_at=_utc(row.updated_at),
        )
