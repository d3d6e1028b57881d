"""Persistence: SQLAlchemy 2 (SQLite by default, PostgreSQL by URL), Alembic migrations, secrets encrypted.

    store = open_store()                      # migrates the database, loads or creates the key
    record = store.connections.get("acme")    # secrets decrypted, masked in repr
    record = store.connections.rotate("acme", record.token_version, refresh)   # one refresh, ever

Coroutines use `AsyncConnectionStore(store.connections)` (see `qbflow.store.aio` for why threads).
"""

from qbflow.store.aio import AsyncConnectionStore
from qbflow.store.connections import ConnectionRecord, ConnectionStore, Rotation, TokenResult
from qbflow.store.crypto import SecretBox
from qbflow.store.db import make_engine, read_session, upgrade, write_session
from qbflow.store.errors import ConnectionExists, ConnectionNotFound, NeedsReconnect, StoreError
from qbflow.store.models import (
    STATUS_NEEDS_RECONNECT,
    STATUS_OK,
    Base,
    Connection,
    Event,
    Run,
    StepResult,
    TriggerCursor,
    Workflow,
)
from qbflow.store.runs import (
    CursorRecord,
    EventRecord,
    PollOutcome,
    RunNotFound,
    RunRecord,
    RunStore,
    StepOutcome,
    StepRecord,
    WorkflowNotFound,
    WorkflowRecord,
    request_id_for,
)
from qbflow.store.store import Store, open_store

__all__ = [
    "STATUS_NEEDS_RECONNECT",
    "STATUS_OK",
    "AsyncConnectionStore",
    "Base",
    "Connection",
    "ConnectionExists",
    "ConnectionNotFound",
    "ConnectionRecord",
    "ConnectionStore",
    "CursorRecord",
    "Event",
    "EventRecord",
    "PollOutcome",
    "NeedsReconnect",
    "Rotation",
    "Run",
    "RunNotFound",
    "RunRecord",
    "RunStore",
    "SecretBox",
    "StepOutcome",
    "StepRecord",
    "StepResult",
    "Store",
    "StoreError",
    "TokenResult",
    "TriggerCursor",
    "Workflow",
    "WorkflowNotFound",
    "WorkflowRecord",
    "make_engine",
    "open_store",
    "read_session",
    "request_id_for",
    "upgrade",
    "write_session",
]
