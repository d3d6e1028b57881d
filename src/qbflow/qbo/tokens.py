"""Where the client gets its access token, and how a refused one is replaced.

The client asks a `TokenProvider` for a token before each request and, when QBO answers 401, calls
`refresh(rejected)` once with the token QBO refused. Providers coalesce: ten calls that all saw the same
token refused cause one refresh, and the other nine get the new token.

    StaticTokens("...")                  a fixed token (tests, scripts); cannot refresh
    RefreshingTokens(rotate=...)         refreshes through `rotate(stale_access_token) -> TokenSet`,
                                         before expiry and after a 401, exactly once per token in this
                                         process. The database-backed rotation (one refresh across
                                         processes sharing a store) plugs in as `rotate`.

No provider's repr shows a token.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from qbflow.qbo._aio import PerLoop

__all__ = ["RefreshingTokens", "StaticTokens", "TokenProvider", "TokenSet"]


@runtime_checkable
class TokenProvider(Protocol):
    """Gives the client access tokens for one connection."""

    async def access_token(self) -> str:
        """A token believed to be valid now."""
        ...

    async def refresh(self, rejected: str) -> str:
        """A token to use instead of `rejected`, which QBO just refused.

        If the current token is no longer `rejected` (another caller refreshed meanwhile), return the
        current one without refreshing again. Raise `AuthError` (or `NeedsReconnect`) when no new token
        can be had; returning `rejected` itself means "nothing better", and the client gives up.
        """
        ...


@dataclass(frozen=True, repr=False)
class TokenSet:
    """An access token and when it expires (epoch seconds, `time.time()` scale; None = unknown)."""

    access_token: str
    expires_at: float | None = None

    def __repr__(self) -> str:
        return f"TokenSet(access_token='***', expires_at={self.expires_at!r})"


class StaticTokens:
    """One fixed access token. `refresh` has nothing better to give, so a 401 ends the call."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def access_token(self) -> str:
        return self._token

    async def refresh(self, rejected: str) -> str:
        return self._token

    def __repr__(self) -> str:
        return "StaticTokens('***')"


Rotate = Callable[[str], Awaitable[TokenSet]]


class RefreshingTokens:
    """A provider that refreshes through `rotate`, once per stale token however many callers ask.

    `rotate(stale)` gets the access token being replaced ("" when there is none yet) and returns the new
    TokenSet; it may raise `NeedsReconnect` when the refresh token is dead. Subclasses may override
    `rotate` instead of passing one. A token is refreshed proactively when it expires within
    `refresh_margin` seconds, and after QBO refuses it.
    """

    def __init__(
        self,
        rotate: Rotate | None = None,
        *,
        initial: TokenSet | None = None,
        refresh_margin: float = 120.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._rotate = rotate
        self._current = initial
        self.refresh_margin = refresh_margin
        self._clock = clock
        self._lock = PerLoop(asyncio.Lock)
        self.refreshes = 0  # how many times rotate was called (for tests and metrics)

    async def rotate(self, stale: str) -> TokenSet:
        """Obtain a new token set; `stale` is the access token it replaces."""
        if self._rotate is None:
            raise NotImplementedError("pass rotate= or override RefreshingTokens.rotate")
        return await self._rotate(stale)

    def _fresh(self, tokens: TokenSet | None) -> bool:
        if tokens is None:
            return False
        return tokens.expires_at is None or tokens.expires_at - self.refresh_margin > self._clock()

    async def access_token(self) -> str:
        current = self._current
        if self._fresh(current):
            assert current is not None
            return current.access_token
        return await self._replace(current.access_token if current else "", proactive=True)

    async def refresh(self, rejected: str) -> str:
        return await self._replace(rejected, proactive=False)

    async def _replace(self, stale: str, *, proactive: bool) -> str:
        async with self._lock.get():
            current = self._current
            if current is not None and current.access_token != stale and self._fresh(current):
                return current.access_token  # someone refreshed while we waited for the lock
            if proactive and self._fresh(current):
                assert current is not None
                return current.access_token
            new = await self.rotate(stale)
            self.refreshes += 1
            self._current = new
            return new.access_token

    def __repr__(self) -> str:
        return f"{type(self).__name__}(current={self._current!r}, refreshes={self.refreshes})"
