"""Per-company pacing in this process: stay under Intuit's limits instead of finding them with 429s.

Intuit throttles each realm to 500 requests a minute, 10 requests in flight and 40 batch requests a
minute (README §5). A `RealmPacer` admits a request only when all three allow it:

    async with pacer.slot(batch=False):
        response = await http.send(request)

* In flight: an asyncio.Semaphore, held until the answer has been read.
* Per minute: a *sliding log*. A fixed-window counter lets 2x the limit through around a window
  boundary (500 at 0:59, 500 at 1:01); a log guarantees that no interval of `window` seconds ever holds
  more than `per_window` requests, whatever window the server uses.
* What the log records is the moment each request *ended* (answer read, or failure), and a request in
  flight counts until then. The server stamps a request somewhere between our send and our receipt of
  its answer; stamping at the send would let a request delayed on the way (latency, a busy event
  loop, a descheduled process) sit in the server's window longer than in ours, and a later request
  could then be one too many. Stamping at the end is an upper bound of the server's stamp, whatever
  the latency; it costs one round trip per window (well under 1 %).
* The window also carries a safety margin (60.5 s by default) for what we cannot see: clocks that tick
  at slightly different rates, or a gateway that counts a request again when it retries it upstream.
  Half a second costs under 1 % of throughput.
* A batch request counts against both the general log and the batch log (40/min), as Intuit counts it.
* After a 429 the whole realm pauses (Retry-After if given, else Intuit's advice, 60 s, when our own count
  had (nearly) filled the window): everything else talking to that company would be refused too, and
  hammering prolongs the throttle. A 429 while our count is well under the limit is not the throttle we pace
  to (a passing refusal, or another app using the company): the pause is 2 s, doubling while they keep coming
  right after each pause, up to 60 s, so one stray 429 does not stop a company's work for a minute.

Every client in this process that talks to a realm shares one pacer through `pacer_for(realm_id)`, so
triggers and actions together stay under the limit. The clock and sleep are injectable for tests.

`InProcessBackend` is this pacing as a `PacingBackend` (qbflow.qbo.pacing): what a deployment gets when its
processes do not pace together (SQLite without Redis, or `QBFLOW_SHARED_LIMITS=0`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable

from qbflow.qbo._aio import PerLoop
from qbflow.qbo.pacing.base import DEFAULT_LIMITS, Limits, Rates

__all__ = ["InProcessBackend", "RealmPacer", "pacer_for", "reset_pacers"]

log = logging.getLogger("qbflow.qbo")


class RealmPacer:
    """Admits requests to one realm at a pace its throttles allow. Share one per realm per process."""

    def __init__(
        self,
        realm_id: str = "",
        limits: Limits = DEFAULT_LIMITS,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.realm_id = realm_id
        self.limits = limits
        self._clock = clock
        self._sleep = sleep
        # End times of finished requests (appended in time order) and counts of those still in flight.
        self._requests: deque[float] = deque()
        self._batches: deque[float] = deque()
        self._pending = 0
        self._pending_batches = 0
        self._paused_until = 0.0
        self._last_pause = 0.0
        self._streak = 0  # pauses in a row for unexpected 429s while the throttle went on
        self._ended_since_pause = 0  # requests ended since the last pause ended
        self._in_flight = PerLoop(lambda: asyncio.Semaphore(self.limits.concurrent))
        # Admission is serialised: the first waiter is admitted first, and two waiters cannot both
        # take the last place in the window.
        self._admission = PerLoop(asyncio.Lock)
        self.admitted = 0
        self.throttles = 0

    @contextlib.asynccontextmanager
    async def slot(self, *, batch: bool = False) -> AsyncIterator[None]:
        """Hold a place for one request (a batch request when `batch`) while the block runs."""
        async with self._in_flight.get():
            await self._admit(batch)
            try:
                yield
            finally:
                self._finish(batch)

    async def _admit(self, batch: bool) -> None:
        async with self._admission.get():
            while True:
                now = self._clock()
                wait = self._wait_needed(now, batch)
                if wait <= 0:
                    self._pending += 1
                    if batch:
                        self._pending_batches += 1
                    self.admitted += 1
                    return
                await self._sleep(wait)

    def _finish(self, batch: bool) -> None:
        now = self._clock()
        if now >= self._paused_until:
            self._ended_since_pause += 1
        self._pending -= 1
        self._requests.append(now)
        if batch:
            self._pending_batches -= 1
            self._batches.append(now)

    def _wait_needed(self, now: float, batch: bool) -> float:
        """Seconds until a request (a batch request) may go, 0 if now."""
        window = self.limits.effective_window
        edge = now - window
        for entries in (self._requests, self._batches):
            while entries and entries[0] <= edge:
                entries.popleft()
        wait = max(self._paused_until - now,
                   self._wait_for_room(now, self._requests, self._pending, self.limits.per_window))
        if batch:
            wait = max(wait, self._wait_for_room(now, self._batches, self._pending_batches,
                                                 self.limits.batch_per_window))
        # A tiny positive wait can round to "not yet" forever on a coarse clock; never wait less than 1 ms.
        return max(wait, 0.001) if wait > 0 else 0.0

    def _wait_for_room(self, now: float, ended: deque[float], pending: int, limit: int) -> float:
        """Seconds until `ended` (end times in the window) plus `pending` leave room for one more."""
        excess = pending + len(ended) - limit + 1  # how many entries must leave the window first
        if excess <= 0:
            return 0.0
        if excess > len(ended):
            # Only requests still in flight fill the window: look again shortly after they end.
            return self.limits.effective_window / 100
        return ended[excess - 1] + self.limits.effective_window - now

    def set_limits(self, limits: Limits) -> None:
        """Pace to new limits from now on (requests already in flight keep their places)."""
        self.limits = limits
        self._in_flight = PerLoop(lambda: asyncio.Semaphore(limits.concurrent))

    def throttled(self, retry_after: float | None = None) -> float:
        """Record a 429: pause the whole realm. Returns how long the pause lasts from now.

        Retry-After when QBO gives one. Otherwise Intuit's 60 s when the window was (nearly) full by our own
        count; when it was not, the 429 is not the throttle we pace to, and the pause is
        `limits.unexpected_throttle_pause`, doubling while the first answer after each pause is a 429 too."""
        now = self._clock()
        self.throttles += 1
        if retry_after is None and now < self._paused_until:
            return self._paused_until - now  # sent before the pause began: it is already paused for
        if retry_after is not None:
            pause = retry_after
        elif self._window_nearly_full(now):
            pause = self.limits.throttle_pause
        else:
            # Longer only while the throttle goes on (this is the first answer since the last pause ended); a stray
            # 429 among answers that get through starts again from the short pause.
            going_on = now - self._paused_until < self.limits.window and self._ended_since_pause <= 1
            self._streak = self._streak + 1 if going_on and self._last_pause else 0
            pause = min(self.limits.unexpected_throttle_pause * 2 ** self._streak, self.limits.throttle_pause)
        self._last_pause = pause
        self._paused_until = max(self._paused_until, now + pause)
        self._ended_since_pause = 0
        log.warning("QBO throttled realm %s (429); pausing its requests for %.1f s", self.realm_id or "?", pause)
        return self._paused_until - now

    def _window_nearly_full(self, now: float) -> bool:
        edge = now - self.limits.effective_window
        in_window = sum(1 for ended in self._requests if ended > edge) + self._pending
        return in_window >= 0.9 * self.limits.per_window

    def stats(self) -> dict[str, float | int]:
        """Counts in the current window (for logs, benchmarks and tests)."""
        now = self._clock()
        self._wait_needed(now, False)
        return {"requests_in_window": len(self._requests) + self._pending,
                "batches_in_window": len(self._batches) + self._pending_batches, "in_flight": self._pending,
                "admitted": self.admitted, "throttles": self.throttles,
                "paused_for": max(0.0, self._paused_until - now)}

    async def astats(self) -> dict[str, float | int]:
        """`stats` (it never blocks: everything is in this process)."""
        return self.stats()

    def __repr__(self) -> str:
        return f"RealmPacer(realm_id={self.realm_id!r}, limits={self.limits!r})"


_PACERS: dict[str, RealmPacer] = {}


def pacer_for(realm_id: str, limits: Limits | None = None) -> RealmPacer:
    """The process-wide pacer of `realm_id`, made on first use (with `limits`, default Intuit's).

    Later calls return the same pacer; passing different `limits` then replaces its limits.
    """
    pacer = _PACERS.get(realm_id)
    if pacer is None:
        pacer = _PACERS[realm_id] = RealmPacer(realm_id, limits or DEFAULT_LIMITS)
    elif limits is not None and limits != pacer.limits:
        pacer.set_limits(limits)
    return pacer


def reset_pacers() -> None:
    """Forget every realm's pacer (tests)."""
    _PACERS.clear()


class InProcessBackend:
    """Pacing in this process only (`pacer_for`): each process keeps its own count, so nothing can report the
    rates of all processes together. `reason` says why the deployment paces this way (for `qbflow status`)."""

    name = "in-process"
    shared = False

    def __init__(self, reason: str = "each process paces its requests in memory") -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return "InProcessBackend()"

    def pacer(self, realm_id: str, limits: Limits | None = None) -> RealmPacer:
        """The process-wide `RealmPacer` of `realm_id` (`pacer_for`)."""
        return pacer_for(realm_id, limits)

    def rates(self, window: float = 60.0) -> Rates:
        """Not measured: this process's counts are not the company's."""
        return Rates(measured=False, note=f"not measured: {self.reason}")
