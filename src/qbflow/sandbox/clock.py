"""The sandbox's clock: real time plus an offset tests can advance (to expire tokens, age CDC windows)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

# Intuit's sandbox companies live in Pacific time; MetaData times carry that offset.
COMPANY_TZ = ZoneInfo("America/Los_Angeles")


class Clock:
    """Wall-clock time that can be moved forward, never backward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        """Seconds since the epoch, as the sandbox sees them."""
        return time.time() + self.offset

    def now(self) -> datetime:
        """Aware UTC datetime."""
        return datetime.fromtimestamp(self.time(), UTC)

    def company_now(self) -> datetime:
        """Aware datetime in the company's time zone."""
        return self.now().astimezone(COMPANY_TZ)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the sandbox clock only moves forward")
        self.offset += seconds


def qbo_datetime(dt: datetime) -> str:
    """MetaData style: second resolution with the company's offset, e.g. 2020-09-29T05:58:07-07:00."""
    return dt.astimezone(COMPANY_TZ).replace(microsecond=0).isoformat()


def qbo_time(dt: datetime) -> str:
    """Envelope `time` style: milliseconds with the company's offset."""
    return dt.astimezone(COMPANY_TZ).isoformat(timespec="milliseconds")
