"""Stored connections as ready-to-use clients: the glue between `qbflow.store` and `QBOClient`.

    async with AsyncConnectionStore(open_store().connections) as store:
        async with await client_for("acme", store) as qbo:
            info = await qbo.company_info()

`client_for` reads the connection (realm, base URL, encrypted tokens), and gives the client a
`ConnectionTokens` provider whose refresh goes through `AsyncConnectionStore.rotate`: the refresh happens
while the connection's row is locked and the rotated refresh token is committed before the lock is
released, so ten tasks and any number of processes sharing the database cause exactly one refresh per
token generation, and nobody uses a refresh token Intuit has already replaced.

When Intuit answers `invalid_grant` the connection is marked "needs_reconnect" (in the same transaction)
and `qbflow.qbo.errors.NeedsReconnect` is raised, naming the connection and `qbflow connect NAME`; every
later `client_for` or refresh raises it at once without asking Intuit again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from qbflow.qbo.client import QBOClient
from qbflow.qbo.errors import NeedsReconnect, Transient
from qbflow.qbo.oauth import Endpoints, IntuitOAuth, InvalidGrant, OAuthTokens
from qbflow.qbo.pacing import Pacer
from qbflow.qbo.tokens import RefreshingTokens, TokenSet
from qbflow.store import AsyncConnectionStore, ConnectionRecord, ConnectionStore, Store, TokenResult
from qbflow.store.errors import NeedsReconnect as StoreNeedsReconnect

__all__ = ["ConnectionClient", "ConnectionTokens", "client_for", "oauth_for", "revoke_connection", "token_result"]

log = logging.getLogger("qbflow.qbo.connections")

AnyStore = AsyncConnectionStore | ConnectionStore | Store
REFRESH_TIMEOUT = 20.0  # seconds; the store asks for a refresh bound well under its 30 s lock wait


def token_result(tokens: OAuthTokens) -> TokenResult:
    """The store's form of a token answer (aware UTC datetimes)."""
    if tokens.expires_at is None:
        raise ValueError("the token answer gave no expires_in")

    def when(epoch: float | None) -> datetime | None:
        return None if epoch is None else datetime.fromtimestamp(epoch, UTC)

    return TokenResult(access_token=tokens.access_token,
                       access_expires_at=datetime.fromtimestamp(tokens.expires_at, UTC),
                       refresh_token=tokens.refresh_token, refresh_expires_at=when(tokens.refresh_expires_at))


def oauth_for(record: ConnectionRecord, *, transport: httpx.AsyncBaseTransport | None = None) -> IntuitOAuth:
    """An `IntuitOAuth` for the app and OAuth server a connection was made with (no discovery request)."""
    endpoints = Endpoints(authorization_endpoint="", token_endpoint=record.token_endpoint,
                          revocation_endpoint=record.revocation_endpoint)
    return IntuitOAuth(record.client_id, record.client_secret, discovery_url=record.discovery_url or "",
                       endpoints=endpoints, transport=transport)


class ConnectionTokens(RefreshingTokens):
    """Access tokens of one stored connection; refreshes rotate through the store (one refresh per
    token generation across tasks and processes). Raises `NeedsReconnect` when the grant is dead."""

    def __init__(
        self,
        record: ConnectionRecord,
        store: AsyncConnectionStore,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        refresh_margin: float = 120.0,
    ) -> None:
        super().__init__(initial=_token_set(record), refresh_margin=refresh_margin)
        self.connection = record.name
        self._store = store
        self._transport = transport
        self._version = record.token_version
        self._oauth = oauth_for(record, transport=transport)
        self._app = (record.client_id, record.token_endpoint)

    @property
    def token_version(self) -> int:
        """The store's token generation this provider holds."""
        return self._version

    async def rotate(self, stale: str) -> TokenSet:
        oauth = self._oauth

        async def refresh(refresh_token: str) -> TokenResult:
            try:
                # Bounded well under SQLite's 30 s busy timeout: the refresh holds the database's writer lock.
                tokens = await asyncio.wait_for(oauth.refresh(refresh_token), REFRESH_TIMEOUT)
            except InvalidGrant as exc:
                # The store marks the connection in the same transaction that held the lock.
                raise StoreNeedsReconnect(self.connection, f"Intuit refused the refresh token ({exc.code})") from None
            except TimeoutError:
                raise Transient(f"Refreshing the tokens of connection {self.connection!r} took longer than "
                                f"{REFRESH_TIMEOUT:g} s.") from None
            return token_result(tokens)

        try:
            record = await self._store.rotate(self.connection, self._version, refresh)
        except StoreNeedsReconnect as exc:
            log.warning("connection %r needs to be reconnected: run `qbflow connect %s`", self.connection,
                        self.connection)
            raise NeedsReconnect(self.connection, detail=exc.detail) from None
        log.debug("connection %r: token generation %d -> %d", self.connection, self._version, record.token_version)
        self._adopt(record)
        return _token_set(record)

    def _adopt(self, record: ConnectionRecord) -> None:
        self._version = record.token_version
        if (record.client_id, record.token_endpoint) != self._app:  # reconnected with another app meanwhile
            self._oauth = oauth_for(record, transport=self._transport)
            self._app = (record.client_id, record.token_endpoint)

    def __repr__(self) -> str:
        return (f"ConnectionTokens(connection={self.connection!r}, token_version={self._version}, "
                f"refreshes={self.refreshes})")


class ConnectionClient(QBOClient):
    """A `QBOClient` made by `client_for`: knows its connection's name and closes what it opened."""

    def __init__(self, realm_id: str, *, connection: str, owned_store: AsyncConnectionStore | None = None,
                 **kwargs: Any) -> None:
        super().__init__(realm_id, **kwargs)
        self.connection = connection
        self._owned_store = owned_store

    async def aclose(self) -> None:
        try:
            await super().aclose()
        finally:
            store, self._owned_store = self._owned_store, None
            if store is not None:
                await asyncio.to_thread(store.close)

    def __repr__(self) -> str:
        return (f"ConnectionClient(connection={self.connection!r}, realm_id={self.realm_id!r}, "
                f"base_url={self.base_url!r})")


async def client_for(
    name: str,
    store: AnyStore,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    pacer_for: Callable[[str], Pacer] | None = None,
    **options: Any,
) -> ConnectionClient:
    """A client for the stored connection `name`, refreshing its tokens through the store.

    `store` is an `AsyncConnectionStore` (shared by the callers of one event loop), or a `Store` /
    `ConnectionStore`, which the client wraps and releases when closed. `transport` is used for the API
    and the token endpoint alike; `pacer_for(realm_id)` gives the pacer when the limits are shared beyond
    this process (workers: `qbflow.qbo.pacing.pacing_backend(engine).pacer`); `options` go to `QBOClient`
    (retry, pacer, timeout, minor_version). Raises `ConnectionNotFound`, or `NeedsReconnect` when the
    connection is known to need reconnecting.
    """
    owned: AsyncConnectionStore | None = None
    if isinstance(store, AsyncConnectionStore):
        astore = store
    else:
        owned = astore = AsyncConnectionStore(store.connections if isinstance(store, Store) else store)
    try:
        record = await astore.get(name)
        if record.needs_reconnect:
            raise NeedsReconnect(name, detail=record.status_detail)
        tokens = ConnectionTokens(record, astore, transport=transport)
        if pacer_for is not None and "pacer" not in options:
            options["pacer"] = pacer_for(record.realm_id)
        return ConnectionClient(record.realm_id, connection=name, owned_store=owned, base_url=record.api_base,
                                tokens=tokens, transport=transport, **options)
    except BaseException:
        if owned is not None:
            owned.close()
        raise


async def revoke_connection(record: ConnectionRecord, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
    """Revoke the connection's grant at Intuit (its refresh token; that ends the access token too).

    Raises `OAuthFailure` when Intuit refuses and `Transient` when it cannot be reached.
    """
    await oauth_for(record, transport=transport).revoke(record.refresh_token)


def _token_set(record: ConnectionRecord) -> TokenSet:
    return TokenSet(record.access_token, expires_at=record.access_expires_at.timestamp())
