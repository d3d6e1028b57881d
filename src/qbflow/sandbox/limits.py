"""Intuit's throttles, per company: 500 requests a minute, 10 at once, 40 batch requests a minute.

Over any of them the request is refused with a 429 and Fault 3001, as Intuit does. Refused
requests do not count against the window.

Every API request is also counted per company (admitted, refused, when the first was admitted and the last
answered, wall-clock), throttles on or off, for benchmarks that compare a client with a perfect one; `reset`
starts the counts and the windows over.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from dataclasses import asdict, dataclass


@dataclass
class Traffic:
    """What one company's API requests did since the last `reset`: admitted (answered, whatever the answer),
    refused with a 429 by the throttles, and the wall-clock times (`time.time()`) of the first admission and
    the last answer."""

    requests: int = 0
    throttled: int = 0
    first_request_at: float | None = None
    last_answer_at: float | None = None


@dataclass(frozen=True)
class LimitPolicy:
    per_minute: int = 500
    concurrent: int = 10
    batch_per_minute: int = 40
    window: float = 60.0


class RateLimiter:
    """Sliding-window request counts and an in-flight count per realm."""

    def __init__(self, policy: LimitPolicy | None = None, enabled: bool = True) -> None:
        self.policy = policy or LimitPolicy()
        self.enabled = enabled
        self._requests: dict[str, deque[float]] = defaultdict(deque)
        self._batches: dict[str, deque[float]] = defaultdict(deque)
        self._in_flight: dict[str, int] = defaultdict(int)
        self.refused = 0
        self.traffic: dict[str, Traffic] = defaultdict(Traffic)

    def _trim(self, window: deque[float], now: float) -> None:
        edge = now - self.policy.window
        while window and window[0] <= edge:
            window.popleft()

    def acquire(self, realm: str, *, batch: bool = False) -> bool:
        """Admit one request (call `release` when it ends) or refuse it."""
        if not self.enabled:
            self._admitted(realm)
            return True
        now = time.monotonic()
        requests = self._requests[realm]
        self._trim(requests, now)
        over = len(requests) >= self.policy.per_minute or self._in_flight[realm] >= self.policy.concurrent
        if batch and not over:
            batches = self._batches[realm]
            self._trim(batches, now)
            over = len(batches) >= self.policy.batch_per_minute
            if not over:
                batches.append(now)
        if over:
            self.refused += 1
            self.traffic[realm].throttled += 1
            return False
        requests.append(now)
        self._admitted(realm)
        return True

    def _admitted(self, realm: str) -> None:
        self._in_flight[realm] += 1
        traffic = self.traffic[realm]
        traffic.requests += 1
        if traffic.first_request_at is None:
            traffic.first_request_at = time.time()

    def release(self, realm: str) -> None:
        self._in_flight[realm] -= 1
        self.traffic[realm].last_answer_at = time.time()

    def reset(self) -> None:
        """Start over: empty windows, no refusals, no traffic counted (requests in flight stay in flight)."""
        self._requests.clear()
        self._batches.clear()
        self.traffic.clear()
        self.refused = 0

    def stats(self, realm: str) -> dict:
        now = time.monotonic()
        self._trim(self._requests[realm], now)
        self._trim(self._batches[realm], now)
        return {"requests_last_minute": len(self._requests[realm]),
                "batches_last_minute": len(self._batches[realm]), "in_flight": self._in_flight[realm],
                **asdict(self.traffic.get(realm) or Traffic())}
