"""When a schedule fires: cron expressions in a time zone (croniter), or a fixed interval.

Fire times are instants (UTC). A cron expression is read in wall-clock time of its time zone, so `0 8 * * MON`
in America/New_York fires at 08:00 New York time in summer and in winter. Daylight saving time:

* a local time that does not exist (the clocks jump from 02:00 to 03:00) fires when the gap ends, at 03:00
  (as cron does): `30 2 * * *` runs at 03:00 that day, once;
* a local time that happens twice (the clocks go back from 02:00 to 01:00) fires once, at its first
  occurrence: `30 1 * * *` runs once that night, and `*/15 * * * *` does not fire again in the repeated hour
  (use `every:` for a strict interval).

An interval (`every: 15m`) fires at whole multiples of it since 1970-01-01T00:00Z: every 15 minutes on the
quarter hour, `every: 1d` at midnight UTC; time zones do not move it.
"""

from __future__ import annotations

import difflib
import functools
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["MIN_EVERY", "Timetable", "check_cron", "check_timezone"]

MIN_EVERY = timedelta(minutes=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NICKNAMES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


def check_cron(expression: str) -> str:
    """The expression, stripped, if it is a valid 5-field cron expression (or @daily etc.); ValueError naming
    it and what is expected otherwise."""
    from croniter import croniter

    text = " ".join(str(expression).split())
    example = "expected 5 fields (minute hour day-of-month month day-of-week), e.g. '0 8 * * MON'"
    if text.startswith("@"):
        if text.lower() not in _NICKNAMES:
            raise ValueError(f"unknown cron nickname {text!r}{_close(text.lower(), _NICKNAMES)} "
                             f"(known: {', '.join(_NICKNAMES)})")
        return text.lower()
    if len(text.split()) != 5:
        raise ValueError(f"invalid cron expression {text!r}: it has {len(text.split())} field(s); {example}")
    try:
        croniter(text, datetime(2000, 1, 1)).get_next(datetime)
    except Exception as error:  # croniter's errors: bad field, out of range, a date that never comes
        reason = " ".join(str(error).split()) or type(error).__name__
        if "failed to find" in reason:
            reason = "no date ever matches it"
        raise ValueError(f"invalid cron expression {text!r}: {reason}; {example}") from None
    return text


@functools.cache
def _zone_names() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones()))


def check_timezone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA time zone of that name ("America/New_York", "UTC"); ValueError with a suggestion otherwise."""
    try:
        return zoneinfo.ZoneInfo(str(name))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        names = _zone_names()
        by_lower = {zone.lower(): zone for zone in names}
        close = by_lower.get(str(name).lower().replace(" ", "_")) or next(
            iter(difflib.get_close_matches(str(name), names, n=1, cutoff=0.6)), None)
        hint = f"; did you mean {close!r}?" if close else " (an IANA name such as 'America/New_York' or 'UTC')"
        raise ValueError(f"unknown time zone {name!r}{hint}") from None


def _close(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


@dataclass(frozen=True)
class Timetable:
    """The fire times of one schedule: `cron` in `zone`, or every `every`."""

    cron: str | None = None
    every: timedelta | None = None
    zone: zoneinfo.ZoneInfo = zoneinfo.ZoneInfo("UTC")

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.every is None):
            raise ValueError("a timetable has exactly one of cron or every")

    def next_after(self, moment: datetime) -> datetime:
        """The first fire time strictly after `moment` (UTC)."""
        return next(self._forward(moment))

    def last_at_or_before(self, moment: datetime) -> datetime | None:
        """The latest fire time at or before `moment` (None: none, which only a far past could give)."""
        return next(self._backward(moment), None)

    def between(self, after: datetime, until: datetime, *, limit: int) -> list[datetime]:
        """The fire times in (after, until], oldest first; at most the `limit` latest of them."""
        found: list[datetime] = []
        for fire in self._backward(until):
            if fire <= after or len(found) >= limit:
                break
            found.append(fire)
        return found[::-1]

    def local(self, moment: datetime) -> datetime:
        """A fire time in the schedule's time zone (what `scheduled_for` shows)."""
        return moment.astimezone(self.zone)

    # -- iteration -------------------------------------------------------------------------------------

    def _forward(self, moment: datetime) -> Iterator[datetime]:
        moment = moment.astimezone(UTC)
        if self.every is not None:
            step = self.every
            fire = _EPOCH + ((moment - _EPOCH) // step) * step
            while True:
                fire += step
                yield fire
        from croniter import croniter

        wall = croniter(self.cron, self._wall(moment))
        while True:
            fire = self._instant(wall.get_next(datetime))
            if fire > moment:  # wall times repeated by DST map to their first occurrence, which may lie behind
                yield fire

    def _backward(self, moment: datetime) -> Iterator[datetime]:
        moment = moment.astimezone(UTC)
        if self.every is not None:
            step = self.every
            fire = _EPOCH + ((moment - _EPOCH) // step) * step
            while fire >= _EPOCH:
                yield fire
                fire -= step
            return
        from croniter import croniter

        # Fire times fall on whole minutes: a second past `moment` makes a fire time at `moment` itself count.
        wall = croniter(self.cron, self._wall(moment) + timedelta(seconds=1))
        previous: datetime | None = None
        while True:
            try:
                naive = wall.get_prev(datetime)
            except Exception:  # before any year croniter knows
                return
            if naive.year < 1971:
                return
            fire = self._instant(naive)
            if fire <= moment and fire != previous:  # two wall times in a DST gap fire once, at its end
                previous = fire
                yield fire

    def _wall(self, moment: datetime) -> datetime:
        return moment.astimezone(self.zone).replace(tzinfo=None)

    def _instant(self, wall: datetime) -> datetime:
        """The instant of a wall-clock time: its first occurrence if it happens twice, the end of the gap if the
        clocks skipped it."""
        first = wall.replace(tzinfo=self.zone, fold=0).astimezone(UTC)
        if self._wall(first) == wall:
            return first
        # In a gap: fold=0 read it with the offset before the jump, fold=1 with the one after; the jump lies
        # between the two readings. Find it to the second.
        low, high = wall.replace(tzinfo=self.zone, fold=1).astimezone(UTC), first
        if low > high:
            low, high = high, low
        offset = low.astimezone(self.zone).utcoffset()
        while high - low > timedelta(seconds=1):
            middle = low + (high - low) / 2
            if middle.astimezone(self.zone).utcoffset() == offset:
                low = middle
            else:
                high = middle
        return high.replace(microsecond=0)
