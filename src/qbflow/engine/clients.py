"""Clients kept for the engine's lifetime: one `QBOClient` per connection, reused by every poll and run.

`ClientFactory` is the seam between the engine and `qbflow.qbo`: whatever gives a connection's client by name
(`store_clients(store)`, a `ClientPool`, a test's in-process clients).

Making a client per run costs more CPU than the run's own work (a new HTTP connection pool, a new token
provider) and opens a new TLS connection to Intuit every time. `ClientPool` wraps a client factory (such as
`store_clients(store)`): the first call for a connection makes its client; later calls get the same one
until it is `max_age` old, so a `qbflow connect` that replaced the connection (new tokens, perhaps another
company) is seen within that time. Callers may `aclose()` what they got, as they would a fresh client;
the pool's clients are closed only by `ClientPool.aclose()` (or when they are replaced).

    clients = ClientPool(store_clients(store))
    engine = Engine(runs, clients, Runner(runs, clients))
    ...
    await clients.aclose()
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:
    from qbflow.qbo.client import QBOClient

__all__ = ["ClientFactory", "ClientPool"]


class ClientFactory(Protocol):
    """Connection name -> its `QBOClient` (errors such as `NeedsReconnect` or an unknown connection are raised).
    The caller may `aclose()` what it gets."""

    def __call__(self, connection: str, /) -> Awaitable[QBOClient]: ...


class _Lease:
    """The pooled client as its callers see it: everything but `aclose`, which is the pool's to do."""

    __slots__ = ("_client",)

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def aclose(self) -> None:
        """Nothing: the pool keeps the client for the next caller."""

    def __repr__(self) -> str:
        return f"pooled {self._client!r}"


def _lease(client: QBOClient) -> QBOClient:
    # A `_Lease` is the client for everything its callers do (attributes pass through), but `aclose`.
    return cast("QBOClient", _Lease(client))


class ClientPool:
    """One client per connection name, made by `factory` on first use and kept `max_age` seconds."""

    def __init__(self, factory: ClientFactory, *, max_age: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.factory = factory
        self.max_age = max_age
        self.clock = clock
        self._clients: dict[str, tuple[float, QBOClient]] = {}
        # Replaced clients, with when: closed once `retire_after` has passed (no run holds one that long), not
        # kept until the pool closes (a worker replaces every company's client each `max_age`: they piled up).
        self._retired: list[tuple[float, QBOClient]] = []
        self.retire_after = max(10 * max_age, 600.0)
        self._lock = asyncio.Lock()

    async def __call__(self, name: str) -> QBOClient:
        now = self.clock()
        held = self._clients.get(name)
        if held is not None and now - held[0] < self.max_age:
            return _lease(held[1])
        async with self._lock:  # one factory call per connection at a time
            held = self._clients.get(name)
            if held is not None and now - held[0] < self.max_age:
                return _lease(held[1])
            if held is not None:
                # A run may still be using it: close it later, not now.
                self._retired.append((now, held[1]))
                del self._clients[name]
            await self._close_retired(now)
            client = await self.factory(name)  # errors (NeedsReconnect, unknown connection) reach the caller
            self._clients[name] = (now, client)
            return _lease(client)

    def forget(self, name: str) -> None:
        """Make the next call for `name` build a new client (after the connection changed)."""
        held = self._clients.pop(name, None)
        if held is not None:
            self._retired.append((self.clock(), held[1]))

    async def aclose(self) -> None:
        """Close every client the pool made."""
        clients = [client for _made, client in self._clients.values()] + [client for _at, client in self._retired]
        self._clients.clear()
        self._retired.clear()
        for client in clients:
            await _close(client)

    async def _close_retired(self, now: float) -> None:
        old = [client for at, client in self._retired if now - at >= self.retire_after]
        if old:
            self._retired = [(at, client) for at, client in self._retired if now - at < self.retire_after]
            for client in old:
                await _close(client)


async def _close(client: QBOClient) -> None:
    close = getattr(client, "aclose", None)
    if close is not None:
        await close()
