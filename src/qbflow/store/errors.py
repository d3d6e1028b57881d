"""Errors of the store room, under `qbflow.errors.QBFlowError`.

    QBFlowError
    └── StoreError
        ├── ConnectionNotFound   no connection by that name
        ├── ConnectionExists     the name is taken
        └── NeedsReconnect       the refresh token is dead; the user must run `qbflow connect NAME`

A key that does not fit the database is a `qbflow.errors.ConfigError`. No message here holds a secret.
"""

from __future__ import annotations

from qbflow.errors import QBFlowError


class StoreError(QBFlowError):
    """Something about stored data went wrong."""


class ConnectionNotFound(StoreError, LookupError):
    """No connection has this name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"No connection named {name!r}. See `qbflow connections list`.")
        self.name = name


class ConnectionExists(StoreError):
    """A connection with this name already exists."""

    def __init__(self, name: str) -> None:
        super().__init__(f"A connection named {name!r} already exists. Remove it first or choose another name.")
        self.name = name


class NeedsReconnect(StoreError):
    """The connection's refresh token no longer works; only a new authorization can fix it.

    A refresh callable given to `ConnectionStore.rotate` raises it when the token endpoint answers
    `invalid_grant`; `rotate` then marks the connection "needs_reconnect" in the same transaction, so no
    other caller tries the dead token again, and every later `rotate` raises it at once. `detail` must
    not contain a secret.
    """

    def __init__(self, name: str, detail: str | None = None) -> None:
        reason = f" ({detail})" if detail else ""
        super().__init__(f"Connection {name!r} must be reconnected{reason}. Run: qbflow connect {name}")
        self.name = name
        self.detail = detail
