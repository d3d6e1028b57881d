"""What every pacing backend shares: Intuit's `Limits`, the `Pacer` protocol a client paces through, and the
`PacingBackend` protocol that makes pacers and reports each company's rates (`qbflow status`)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = ["DEFAULT_LIMITS", "Limits", "Pacer", "PacingBackend", "RealmRate", "Rates"]


@dataclass(frozen=True)
class Limits:
    """Intuit's per-realm throttles as we pace to them. Defaults: production QBO."""

    per_window: int = 500
    window: float = 60.0
    margin: float = 0.5  # added to `window`; see qbflow.qbo.pacing.inprocess
    concurrent: int = 10
    batch_per_window: int = 40
    throttle_pause: float = 60.0  # pause after a 429 without Retry-After (Intuit: "wait 60 seconds")
    # A 429 while our own count is well under the window's limit is not the per-minute throttle we pace to (a
    # passing one, or another app on the company): pause this long, doubling while 429s keep coming right after
    # each pause, up to `throttle_pause`, instead of stopping the company for a minute on every one.
    unexpected_throttle_pause: float = 2.0

    def __post_init__(self) -> None:
        if self.per_window < 1 or self.concurrent < 1 or self.batch_per_window < 1:
            raise ValueError("limits must allow at least one request")
        if self.window <= 0 or self.margin < 0 or self.throttle_pause < 0 or self.unexpected_throttle_pause < 0:
            raise ValueError("window must be positive; margin and throttle_pause not negative")

    @property
    def effective_window(self) -> float:
        return self.window + self.margin

    @property
    def max_concurrent(self) -> int:
        """How many requests to the company may be in flight at once (`concurrent`): more callers than this only
        wait for a place, so whoever schedules work for one company (the engine) need not start more."""
        return self.concurrent


DEFAULT_LIMITS = Limits()


@runtime_checkable
class Pacer(Protocol):
    """Admits requests to one company (realm) at a pace its throttles allow; what `QBOClient` paces through.

        async with pacer.slot(batch=False):       # waits for a place, holds it while the block runs
            response = await http.send(request)
        pacer.throttled(retry_after)              # a 429: pause the whole company

    Implementations: `RealmPacer` (this process), `SharedRealmPacer` (PostgreSQL) and `RedisRealmPacer` (Redis),
    the last two counting every process together. Get one from a backend (`pacing_backend(...).pacer(realm)`).
    """

    @property
    def realm_id(self) -> str: ...

    @property
    def limits(self) -> Limits:
        """The limits paced to now; `limits.max_concurrent` is the company's in-flight limit."""
        ...

    def slot(self, *, batch: bool = False) -> AbstractAsyncContextManager[object]:
        """Hold a place for one request (a batch request when `batch`) while the block runs."""
        ...

    def throttled(self, retry_after: float | None = None) -> float:
        """Record a 429: pause the whole company (Retry-After, else `limits.throttle_pause`). Returns how long the
        pause lasts from now."""
        ...

    def stats(self) -> dict[str, float | int]:
        """Counts in the current window (requests_in_window, batches_in_window, in_flight, admitted, throttles,
        paused_for; shared pacers add a few), for logs, benchmarks and tests. May read the shared store."""
        ...

    async def astats(self) -> dict[str, float | int]:
        """`stats` without blocking the event loop."""
        ...

    def set_limits(self, limits: Limits) -> None:
        """Pace to new limits from now on (requests already in flight keep their places)."""
        ...


@dataclass(frozen=True)
class RealmRate:
    """One company's requests as the pacing backend counts them (every process together)."""

    realm_id: str
    recent: int  # ended in the last `window` seconds
    in_flight: int  # in flight now
    throttles: int  # 429s answered to this company since the backend first saw it
    paused_for: float  # seconds every process still waits after a 429 (0: not paused)


@dataclass(frozen=True)
class Rates:
    """A backend's answer to "how fast is each company being asked?" (`qbflow status`)."""

    measured: bool  # False: this backend cannot know (in-process pacing), or its store did not answer
    note: str  # where the numbers come from, or why there are none (never a password)
    realms: list[RealmRate] = field(default_factory=list)


class PacingBackend(Protocol):
    """Where a deployment keeps its companies' limits: makes each company's pacer and reports its rates.

    `pacing_backend(...)` (qbflow.qbo.pacing) picks one from the settings: `InProcessBackend`,
    `PostgresBackend` or `RedisBackend`.
    """

    @property
    def name(self) -> str:
        """"in-process", "PostgreSQL" or "Redis"."""
        ...

    @property
    def shared(self) -> bool:
        """Whether every process and machine paces together (False: each process on its own)."""
        ...

    def pacer(self, realm_id: str, limits: Limits | None = None) -> Pacer:
        """The process-wide pacer of `realm_id` (made on first use with `limits`, default Intuit's; later calls
        return the same pacer, and passing different `limits` replaces its limits). Pass it as
        `QBOClient(pacer=...)`."""
        ...

    def rates(self, window: float = 60.0) -> Rates:
        """Each company's requests ended in the last `window` seconds and in flight now, as this backend holds them
        (a short read; never raises for a store that does not answer: `Rates.measured` is then False)."""
        ...
