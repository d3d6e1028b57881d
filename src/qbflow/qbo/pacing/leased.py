"""What the pacers that share a company's limits across processes have in common: the half in this process.

`SharedRealmPacer` (postgres.py) and `RedisRealmPacer` (redis.py) keep the same cross-process state, each in its
own store: a sliding log of request ends, in-flight leases that expire, a realm-wide pause. Around that, this
process does the same in both: at most `concurrent` of its own requests waiting or in flight (a local
semaphore), one admission at a time (a local lock), a lease kept renewed while its request lasts, the end
recorded when it finishes (waking a local admission that waits for an end), a 429 paused at once here before
the store says so, and the counts `stats` reports. `LeasedPacer` is that half; a backend supplies admission
and the few writes (renew, end, pause) and reads (census).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, ClassVar

from qbflow.qbo._aio import PerLoop
from qbflow.qbo.pacing.base import Limits

__all__ = ["DEFAULT_LEASE_TTL", "DEFAULT_RECHECK", "LeasedPacer", "Pause"]

log = logging.getLogger("qbflow.qbo")

DEFAULT_LEASE_TTL = 30.0  # a dead worker's slots come back after this long
DEFAULT_RECHECK = 0.05  # longest wait before looking again when waiting for another process's request to end


@dataclass(frozen=True)
class Pause:
    """A realm-wide pause as written: from `start` to `until` (the store's clock, seconds since the epoch)."""

    start: float
    until: float


class LeasedPacer:
    """The process-local half of a shared pacer (see the module doc). Subclasses implement `_admit`,
    `_renew_lease`, `_end_lease`, `_pause_everyone_async`, `_pause_everyone_now` and `_census_now`, and name
    the exceptions their store raises in `_store_errors`."""

    _store_errors: ClassVar[tuple[type[BaseException], ...]] = ()
    _store_name: ClassVar[str] = "the store"

    def __init__(self, realm_id: str, limits: Limits, *, lease_ttl: float, recheck: float) -> None:
        if lease_ttl <= 0 or recheck <= 0:
            raise ValueError("lease_ttl and recheck must be positive")
        self.realm_id = realm_id
        self.limits = limits
        self.lease_ttl = lease_ttl
        self.recheck = recheck
        self._local_paused_until = 0.0  # monotonic: this process pauses at once on a 429, before the store says so
        self._in_flight = PerLoop(lambda: asyncio.Semaphore(self.limits.concurrent))
        self._admission = PerLoop(asyncio.Lock)
        self._ended = PerLoop(asyncio.Event)  # set when a request of this process ends
        self._background: set[asyncio.Task[Any]] = set()
        self.admitted = 0
        self.throttles = 0
        self.lost_leases = 0

    # --- the Pacer protocol -------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def slot(self, *, batch: bool = False) -> AsyncIterator[Any]:
        """Hold a place for one request (a batch request when `batch`) while the block runs."""
        async with self._in_flight.get():
            lease = await self._admit(batch)
            renewal = asyncio.create_task(self._keep_renewed(lease))
            try:
                yield lease
            finally:
                renewal.cancel()
                await self._finish(lease)

    def throttled(self, retry_after: float | None = None) -> float:
        """Record a 429: pause the whole realm, in this process at once and for every process through the
        store (in the background when called from a coroutine). Returns how long the pause lasts."""
        pause = self._pause_here(retry_after)
        log.warning("QBO throttled realm %s (429); pausing its requests in every worker for %.1f s",
                    self.realm_id or "?", pause)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._pause_everyone_now(pause)
            return pause
        self._in_background(loop.create_task(self._pause_everyone_async(pause)))
        return pause

    def stats(self) -> dict[str, float | int]:
        """Counts in the current window, across all processes (one short read; for logs, benchmarks, tests)."""
        return self._stats(self._census_now())

    def set_limits(self, limits: Limits) -> None:
        """Pace to new limits from now on (requests already in flight keep their places)."""
        self.limits = limits
        self._in_flight = PerLoop(lambda: asyncio.Semaphore(limits.concurrent))

    # --- more ----------------------------------------------------------------------------------------
    async def pause(self, retry_after: float | None = None) -> Pause:
        """`throttled`, awaited: returns the pause as the store recorded it."""
        return await self._pause_everyone_async(self._pause_here(retry_after))

    async def drain(self) -> None:
        """Wait for background writes (a pause being recorded, an unused lease given back) to finish."""
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    # --- shared internals ----------------------------------------------------------------------------
    def _pause_here(self, retry_after: float | None) -> float:
        pause = self.limits.throttle_pause if retry_after is None else retry_after
        self._local_paused_until = max(self._local_paused_until, time.monotonic() + pause)
        self.throttles += 1
        return pause

    def _stats(self, census: Any) -> dict[str, float | int]:
        return {"requests_in_window": census.alive + census.ended,
                "batches_in_window": census.alive_batches + census.ended_batches,
                "in_flight": census.alive, "admitted": self.admitted, "throttles": self.throttles,
                "realm_throttles": census.throttles, "lost_leases": self.lost_leases,
                "paused_for": max(0.0, census.paused_until - census.now,
                                  self._local_paused_until - time.monotonic())}

    async def _wait_local_pause(self) -> bool:
        """Sleep out this process's own pause, if any; True when it slept (look again)."""
        local_pause = self._local_paused_until - time.monotonic()
        if local_pause > 0:
            await asyncio.sleep(local_pause)
            return True
        return False

    async def _wait(self, seconds: float, until_end: bool, ended: asyncio.Event) -> None:
        """Wait before admitting again: `seconds`, or less when waiting for a request to end and one of this
        process's ends first."""
        if until_end:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ended.wait(), seconds)
        else:
            await asyncio.sleep(seconds)

    async def _keep_renewed(self, lease: Any) -> None:
        period = self.lease_ttl / 3
        while True:
            await asyncio.sleep(period)
            try:
                renewed = await self._renew_lease(lease)
            except self._store_errors as error:
                log.warning("pacing realm %s: could not renew a lease (%s)", self.realm_id, type(error).__name__)
                continue
            if not renewed:
                self.lost_leases += 1
                log.warning("pacing realm %s: a lease expired while its request lasted (a stall over %.0f s); "
                            "other workers may have reused its place", self.realm_id, self.lease_ttl)
                return

    async def _finish(self, lease: Any) -> None:
        try:
            await self._end_lease(lease)  # a cancelled caller does not cancel the record of the end
        except self._store_errors as error:
            # The lease then expires by itself, and counts as ended at its expiry: later than now, so safe.
            log.warning("pacing realm %s: could not record a request's end (%s)", self.realm_id,
                        type(error).__name__)
        finally:
            self._ended.get().set()

    def _in_background(self, task: asyncio.Task[Any]) -> None:
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("pacing realm %s: a background write to %s failed: %s", self.realm_id, self._store_name,
                        type(task.exception()).__name__)

    # --- what a backend supplies ---------------------------------------------------------------------
    async def _admit(self, batch: bool) -> Any:
        raise NotImplementedError

    async def _renew_lease(self, lease: Any) -> bool:
        raise NotImplementedError

    async def _end_lease(self, lease: Any) -> None:
        raise NotImplementedError

    async def _pause_everyone_async(self, pause: float) -> Pause:
        raise NotImplementedError

    def _pause_everyone_now(self, pause: float) -> Pause:
        raise NotImplementedError

    def _census_now(self) -> Any:
        raise NotImplementedError
