"""The store for asyncio code (the QBO client, the engine).

Decision: the store stays synchronous (one SQLAlchemy code path for SQLite and PostgreSQL, no async
drivers), and coroutines run its short calls on a small thread pool of the store's own. Its own pool, not
the loop's default executor, because a call waiting for the database's lock must never take the thread
that `getaddrinfo` (run by asyncio in the default executor) needs to finish the refresh holding that lock.

`AsyncConnectionStore.rotate` awaits the refresh on the event loop, not in a thread, and commits on the
loop thread (one short write), so a rotation that holds the lock never waits for a free pool thread.
"""

from __future__ import annotations

import asyncio
import builtins
import contextvars
import functools
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, TypeVar

from qbflow.store.connections import ConnectionRecord, ConnectionStore, Rotation, TokenResult
from qbflow.store.errors import NeedsReconnect

T = TypeVar("T")


class AsyncConnectionStore:
    """`ConnectionStore` for coroutines: the same methods, awaited.

    Use one instance per event loop. Call `close()` (or `async with`) to stop its threads.
    """

    def __init__(self, store: ConnectionStore, *, executor: Executor | None = None, max_workers: int = 4) -> None:
        self.store = store
        self._executor = executor or ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="qbflow-store")
        self._owns_executor = executor is None
        # Callers of this loop rotating the same connection queue here, without holding a thread.
        self._rotation_locks: dict[str, asyncio.Lock] = {}

    def __repr__(self) -> str:
        return f"AsyncConnectionStore({self.store!r})"

    async def __aenter__(self) -> AsyncConnectionStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the store's threads (if it made them); waits for calls in progress."""
        if self._owns_executor:
            self._executor.shutdown(wait=True)

    async def _call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        call = functools.partial(contextvars.copy_context().run, function, *args, **kwargs)
        return await loop.run_in_executor(self._executor, call)

    async def add(self, **kwargs: Any) -> ConnectionRecord:
        """See `ConnectionStore.add`."""
        return await self._call(self.store.add, **kwargs)

    async def save_tokens(self, name: str, tokens: TokenResult) -> ConnectionRecord:
        """See `ConnectionStore.save_tokens`."""
        return await self._call(self.store.save_tokens, name, tokens)

    async def mark_needs_reconnect(self, name: str, detail: str | None = None) -> ConnectionRecord:
        """See `ConnectionStore.mark_needs_reconnect`."""
        return await self._call(self.store.mark_needs_reconnect, name, detail)

    async def remove(self, name: str) -> None:
        """See `ConnectionStore.remove`."""
        await self._call(self.store.remove, name)

    async def get(self, name: str) -> ConnectionRecord:
        """See `ConnectionStore.get`."""
        return await self._call(self.store.get, name)

    async def list(self) -> builtins.list[ConnectionRecord]:
        """See `ConnectionStore.list`."""
        return await self._call(self.store.list)

    async def find_by_realm(self, realm_id: str) -> builtins.list[ConnectionRecord]:
        """See `ConnectionStore.find_by_realm`."""
        return await self._call(self.store.find_by_realm, realm_id)

    async def rotate(
        self,
        name: str,
        expected_version: int,
        refresh: Callable[[str], Awaitable[TokenResult]],
    ) -> ConnectionRecord:
        """`ConnectionStore.rotate` with an async `refresh`: exactly one refresh per token generation.

        If the calling task is cancelled while `refresh` runs, the refresh is still awaited and its tokens
        saved (the token endpoint may already have rotated the refresh token), then `CancelledError` is
        raised: bound `refresh` with its own timeout.
        """
        lock = self._rotation_locks.setdefault(name, asyncio.Lock())
        async with lock:
            rotation = await self._begin(name, expected_version)
            if not rotation.needed:
                return rotation.current
            refreshing = asyncio.ensure_future(refresh(rotation.current.refresh_token))
            try:
                tokens, cancelled = await _outlast_cancellation(refreshing)
            except NeedsReconnect as exc:
                rotation.reject(exc.detail)
                raise
            except BaseException:
                rotation.abort()
                raise
            record = rotation.complete(tokens)
            if cancelled:
                raise asyncio.CancelledError()
            return record

    async def _begin(self, name: str, expected_version: int) -> Rotation:
        future = asyncio.ensure_future(self._call(self.store.begin_rotation, name, expected_version))
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # The thread may still take the lock: let it finish, then release what it took.
            future.add_done_callback(_abort_quietly)
            raise


def _abort_quietly(future: asyncio.Future[Rotation]) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().abort()


async def _outlast_cancellation(future: asyncio.Future[T]) -> tuple[T, bool]:
    """Await `future` to its end even if the awaiting task is cancelled meanwhile; say whether it was."""
    cancelled = False
    while True:
        try:
            return await asyncio.shield(future), cancelled
        except asyncio.CancelledError:
            if future.done():
                if future.cancelled():
                    raise
                return future.result(), True
            cancelled = True
