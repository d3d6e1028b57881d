"""One poll serves every trigger of one company: what changed since the cursor, turned into events.

    cursor = PollCursor.start(now)                       # a trigger starts "from now" (or `since=`)
    result = await poll_company(client, [TRIGGERS["new_invoice"], TRIGGERS["updated_customer"]], cursor, now)
    # store result.events and result.cursor.to_json() in ONE transaction, then poll again later

How a poll reads QBO (the "few API calls" guarantee):

* One CDC request for all the triggers' entities, when the window starts within the last 30 days and the
  answer holds fewer than 1000 objects (QBO's limits; at 1000 an answer may be cut short).
* Otherwise paged queries per entity (`SELECT * FROM X WHERE MetaData.LastUpdatedTime >= '...' ORDERBY
  MetaData.LastUpdatedTime`), plus CDC for deletions, which queries cannot see, as far back as CDC reaches.
  Pages are keyset pages (each starts at the last page's last LastUpdatedTime) rather than STARTPOSITION
  pages: a record edited while we page moves to the end of the order, which would shift every later
  record back by one and let one slip between two STARTPOSITION pages, unseen for good.

How it stays exact (the "nothing missed, nothing done twice" guarantees):

* Each window starts OVERLAP before the last poll's high-water mark, because QBO timestamps have one-second
  resolution, a change may become visible a moment after its timestamp, and clocks drift.
* Every event has a dedup key; the cursor keeps the keys whose time lies in the next window's overlap,
  so a record seen twice fires once. Keys older than that can never come back (every event needs a time
  inside the window), which keeps the set small: only what changed in the last OVERLAP seconds.
* The engine stores the events and the new cursor in one transaction; a failed poll raises and leaves
  the old cursor, so the next poll covers the same ground again.

Event semantics:

* New X: once per record whose CreateTime is inside the window and not before the trigger's activation
  (to the second: a record created in the activation second counts, so nothing is missed). Keyed by Id
  only, so a later edit never fires New again. The record is the version the poll sees.
* Updated X: once per SyncToken seen of a record, except its creation (SyncToken "0" with CreateTime equal
  to LastUpdatedTime). Several edits between two polls arrive as one event with the latest version.
  A record created and edited within one window fires New once and Updated once (for the latest
  SyncToken): the edit did happen, and a workflow on "Updated" must not miss edits of new records.
  Changes QBO makes without a new SyncToken (sending an invoice by email) fire Updated once per SyncToken.
* Deleted X: once per deleted Id (the CDC stub), for transactions; keyed by Id and "deleted".
  A record created and deleted between two polls fires only Deleted: QBO keeps nothing else of it.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from qbflow.catalog.entities import ENTITIES, Kind
from qbflow.connector.triggers import Trigger, TriggerKind
from qbflow.qbo.errors import Validation
from qbflow.qbo.query import MAX_PAGE, Query

__all__ = [
    "CDC_MAX_AGE",
    "CDC_MAX_OBJECTS",
    "OVERLAP",
    "PollCursor",
    "PollResult",
    "SharedPoll",
    "TriggerEvent",
    "poll_company",
    "poll_shared",
]

# How far each window reaches back before the last high-water mark. Fixed rather than a parameter:
# the cursor's `seen` keys cover exactly this overlap, so changing it between polls could fire twice.
OVERLAP = timedelta(seconds=10)
CDC_MAX_AGE = timedelta(days=30)  # QBO's CDC look-back limit
CDC_MAX_OBJECTS = 1000  # QBO's CDC answer limit
# Margin inside the 30 days for the difference between our clock and QBO's.
CDC_SAFETY = timedelta(minutes=10)
_LAST_UPDATED = "MetaData.LastUpdatedTime"
_CURSOR_VERSION = 1


class ChangeSource(Protocol):
    """What a poll needs of QBOClient (so tests and other transports can stand in)."""

    async def cdc(self, entities: Iterable[str], changed_since: datetime | str) -> dict[str, list[dict]]: ...

    async def query(self, query: str | Query) -> list[dict]: ...


def _aware(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value


def _second(value: datetime) -> datetime:
    """Down to the whole second (QBO's resolution), so comparisons never drop a same-second change."""
    return value.replace(microsecond=0)


def _parse(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.utcoffset() is not None else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class PollCursor:
    """Where one company's poll stands. JSON-serialisable; the engine stores it with the events it covers.

    `high_water`: the time of the last poll (the next window starts OVERLAP before it).
    `seen`: dedup keys of the events whose time lies in that overlap.
    `activated_at`: when the company's triggers were activated (or their `since:`); no event is older.
    `trigger_starts`: activation of triggers added later to an existing cursor (`with_trigger`).
    """

    high_water: datetime
    seen: frozenset[str] = frozenset()
    activated_at: datetime | None = None
    trigger_starts: Mapping[str, datetime] = field(default_factory=dict)
    backfilling: bool = False  # the last poll read a slice of a backfill: read on with queries, skip CDC

    def __post_init__(self) -> None:
        _aware(self.high_water, "high_water")
        object.__setattr__(self, "activated_at",
                           _aware(self.high_water if self.activated_at is None else self.activated_at, "activated_at"))
        for key, value in self.trigger_starts.items():
            _aware(value, f"trigger_starts[{key!r}]")
        object.__setattr__(self, "seen", frozenset(self.seen))
        object.__setattr__(self, "trigger_starts", dict(self.trigger_starts))

    @classmethod
    def start(cls, now: datetime | None = None, since: datetime | None = None) -> PollCursor:
        """A new cursor: triggers fire for changes from `since`, or from `now` when not given."""
        begin = _aware(since, "since") if since is not None else _aware(now or datetime.now(UTC), "now")
        return cls(high_water=begin, seen=frozenset(), activated_at=begin)

    @property
    def _activated(self) -> datetime:
        assert self.activated_at is not None, "set by __post_init__"
        return self.activated_at

    @property
    def window_start(self) -> datetime:
        """Where the next poll's window begins: OVERLAP before the high-water mark, to the second."""
        return _second(self.high_water - OVERLAP)

    def activation(self, trigger_key: str) -> datetime:
        """When `trigger_key` was activated on this cursor."""
        return self.trigger_starts.get(trigger_key, self._activated)

    def with_trigger(self, trigger_key: str, since: datetime) -> PollCursor:
        """This cursor with one more trigger activated at `since` (usually now). A `since` before
        `window_start` cannot be honoured by this cursor: backfill with a cursor of its own."""
        _aware(since, "since")
        return replace(self, trigger_starts={**self.trigger_starts, trigger_key: since})

    def to_json(self) -> str:
        return json.dumps({
            "version": _CURSOR_VERSION,
            "high_water": self.high_water.isoformat(),
            "activated_at": self._activated.isoformat(),
            "trigger_starts": {k: v.isoformat() for k, v in sorted(self.trigger_starts.items())},
            "seen": sorted(self.seen),
            **({"backfilling": True} if self.backfilling else {}),
        }, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> PollCursor:
        data = json.loads(text)
        if data.get("version") != _CURSOR_VERSION:
            raise ValueError(f"unsupported poll cursor version {data.get('version')!r}")
        return cls(high_water=datetime.fromisoformat(data["high_water"]), seen=frozenset(data["seen"]),
                   activated_at=datetime.fromisoformat(data["activated_at"]),
                   trigger_starts={k: datetime.fromisoformat(v) for k, v in data["trigger_starts"].items()},
                   backfilling=bool(data.get("backfilling", False)))


@dataclass(frozen=True)
class TriggerEvent:
    """One firing of one trigger. `dedup_key` is unique per (trigger, entity, Id, SyncToken) (New: per Id;
    Deleted: per Id and "deleted"); store it with a unique constraint."""

    trigger_key: str
    entity: str
    record_id: str
    sync_token: str | None  # None for a deletion stub
    record: dict[str, Any]
    dedup_key: str
    changed_at: datetime | None = None  # CreateTime for New, LastUpdatedTime otherwise


@dataclass(frozen=True)
class PollResult:
    """What one poll found. `requests` counts the QBO requests it made; `mode` says how it read;
    `warnings` name changes QBO can no longer show (deletions past CDC's reach)."""

    events: list[TriggerEvent]
    cursor: PollCursor
    requests: int
    mode: Literal["cdc", "query", "idle"] = "cdc"
    warnings: list[str] = field(default_factory=list)
    complete: bool = True  # False: a sliced backfill; poll again at once to read on


class _Counter:
    def __init__(self) -> None:
        self.requests = 0


async def poll_company(
    client: ChangeSource,
    triggers: Sequence[Trigger],
    cursor: PollCursor | None,
    now: datetime | None = None,
    *,
    page_size: int = MAX_PAGE,
    max_records: int | None = None,
) -> PollResult:
    """Poll one company once for all of `triggers` and return their new events and the next cursor.

    `cursor` None starts from `now`. `now` (timezone-aware, default the current time) becomes the new
    high-water mark: take it just before the call. `page_size` is the query fallback's page size;
    `max_records` bounds how many records of one entity a query-mode poll reads (see `poll_shared`).
    QBO errors propagate; the old cursor then still stands, so nothing is lost.
    """
    shared = await poll_shared(client, {0: (triggers, cursor)}, now, page_size=page_size, max_records=max_records)
    return shared.results[0]


@dataclass(frozen=True)
class SharedPoll:
    """One read of a company serving several cursors: a `PollResult` per key, and the read's totals."""

    results: dict[Hashable, PollResult]
    requests: int
    mode: Literal["cdc", "query", "idle"]
    complete: bool = True
    warnings: list[str] = field(default_factory=list)


async def poll_shared(
    client: ChangeSource,
    watches: Mapping[Hashable, tuple[Sequence[Trigger], PollCursor | None]],
    now: datetime | None = None,
    *,
    page_size: int = MAX_PAGE,
    max_records: int | None = None,
) -> SharedPoll:
    """One read of one company for several cursors (one per workflow), each with its own triggers.

    The company is read once, from the earliest of the cursors' windows, for the union of their
    entities (one CDC request when CDC can serve it); each cursor then gets the events of its own window
    and triggers, exactly as if it had been polled alone. Store each result's events with its cursor.

    `max_records` (query mode only) bounds how many records of one entity one poll reads, so a backfill of
    100,000 records is read, stored and run in slices instead of held in memory at once: a slice stops at
    the end of a second past the budget, the new high-water mark is that second, `complete` is False, and
    the next poll carries on from there. A slice always ends more than 2 x OVERLAP after its window's
    start, so every poll moves on even when one second holds more records than the budget.
    """
    now = _aware(now, "now") if now is not None else datetime.now(UTC)
    if not 1 <= page_size <= MAX_PAGE:
        raise ValueError(f"page_size must be from 1 to {MAX_PAGE}")
    if max_records is not None and max_records < 1:
        raise ValueError("max_records must be at least 1")
    page_size = min(page_size, max_records or page_size)
    cursors = {key: cursor or PollCursor.start(now) for key, (_triggers, cursor) in watches.items()}
    wanted = {key: list({t.key: t for t in triggers}.values()) for key, (triggers, _cursor) in watches.items()}
    union = list({t.key: t for triggers in wanted.values() for t in triggers}.values())
    if not union:
        return SharedPoll({key: PollResult([], cursors[key], 0, "idle") for key in watches}, 0, "idle")

    start = min(cursors[key].window_start for key in watches if wanted[key])
    count = _Counter()
    warnings: list[str] = []
    entities = list(dict.fromkeys(t.entity for t in union))
    changes: dict[str, list[dict]] | None = None
    until: datetime | None = None  # where a truncated read stops; None: complete up to `now`
    mode: Literal["cdc", "query"] = "cdc"
    backfilling = any(cursors[key].backfilling for key in watches if wanted[key])
    if start >= now - CDC_MAX_AGE + CDC_SAFETY and not backfilling:  # a backfill's next slice: queries at once
        changes, why = await _cdc(client, entities, start, count)
        if changes is None:
            warnings.append(f"CDC could not serve this window ({why}); read it with queries instead")
    if changes is None:
        mode = "query"
        changes = {}
        for entity in dict.fromkeys(t.entity for t in union if t.kind is not TriggerKind.DELETED):
            records, stopped = await _changed_by_query(client, entity, start, page_size, count, max_records)
            changes[entity] = records
            if stopped is not None:
                until = stopped if until is None else min(until, stopped)
        deleting = list(dict.fromkeys(t.entity for t in union if t.kind is TriggerKind.DELETED))
        if deleting:
            for entity, stubs in (await _deletions(client, deleting, start, now, count, warnings)).items():
                changes.setdefault(entity, []).extend(stubs)

    results: dict[Hashable, PollResult] = {}
    for key in watches:
        cursor = cursors[key]
        if not wanted[key]:
            results[key] = PollResult([], cursor, 0, "idle")
            continue
        new_high_water = max(cursor.high_water, now if until is None else until)
        next_start = _second(new_high_water - OVERLAP)
        events, seen = _events(wanted[key], changes, cursor, cursor.window_start, next_start, now)
        if until is not None:
            # Part of this window was not read: keep the keys already seen, so what lies past the slice
            # fires once when it is read (only for the length of a backfill; a complete poll resets them).
            seen |= cursor.seen
        next_cursor = replace(cursor, high_water=new_high_water, seen=frozenset(seen), backfilling=until is not None)
        results[key] = PollResult(events, next_cursor, count.requests, mode, list(warnings), complete=until is None)
    return SharedPoll(results, count.requests, mode, until is None, warnings)


# --- reading QBO ---------------------------------------------------------------------------------------
async def _cdc(client: ChangeSource, entities: list[str], since: datetime,
               count: _Counter) -> tuple[dict[str, list[dict]] | None, str]:
    """One CDC request; None (and why) when QBO refuses it or the answer may be cut short."""
    count.requests += 1
    try:
        changes = await client.cdc(entities, since)
    except Validation as exc:  # past the look-back on QBO's clock, or too many objects
        return None, f"QBO refused it: {exc.detail or exc.message or exc}"
    total = sum(len(records) for records in changes.values())
    if total >= CDC_MAX_OBJECTS:
        return None, f"{total} objects, QBO's limit is {CDC_MAX_OBJECTS}"
    return changes, ""


async def _changed_by_query(client: ChangeSource, entity: str, since: datetime, page_size: int,
                            count: _Counter, max_records: int | None = None) -> tuple[list[dict], datetime | None]:
    """Every `entity` record changed at or after `since`, by keyset pages over LastUpdatedTime, and None;
    or, past `max_records`, the records up to the end of a second and that second (where to carry on)."""
    base = Query(entity)
    if ENTITIES[entity].kind is Kind.NAME_LIST:
        base = base.where_in("Active", [True, False])  # queries leave out inactive records otherwise
    found: dict[str, dict] = {}
    bound, op = since.isoformat(timespec="seconds"), ">="
    progress = _second(since) + 2 * OVERLAP + timedelta(seconds=1)
    while True:
        count.requests += 1
        page = await client.query(base.where_op(_LAST_UPDATED, op, bound).order_by(_LAST_UPDATED).max(page_size))
        _keep_latest(found, page)
        if len(page) < page_size:
            return list(found.values()), None
        first, last = _updated(page[0]), _updated(page[-1])
        bound = page[-1]["MetaData"]["LastUpdatedTime"]
        if first == last:
            # A full page within one second: keyset cannot move on, so page that second by position.
            await _one_second(client, base, bound, page_size, found, count)
            op = ">"
            if max_records is not None and len(found) >= max_records and last >= progress:
                return list(found.values()), last + timedelta(seconds=1)  # that second was read whole
        else:
            op = ">="  # the last second again: records of it may lie beyond this page
            if max_records is not None and len(found) >= max_records and last >= progress:
                # Records of the last second may lie beyond this page: stop before it, keep what is earlier.
                kept = [r for r in found.values() if _updated(r) < last]
                return kept, last


async def _one_second(client: ChangeSource, base: Query, moment: str, page_size: int, found: dict[str, dict],
                      count: _Counter) -> None:
    position = 1
    while True:
        count.requests += 1
        page = await client.query(base.where_op(_LAST_UPDATED, "=", moment).start(position).max(page_size))
        _keep_latest(found, page)
        if len(page) < page_size:
            return
        position += page_size


async def _deletions(client: ChangeSource, entities: list[str], start: datetime, now: datetime, count: _Counter,
                     warnings: list[str]) -> dict[str, list[dict]]:
    """Deletion stubs of `entities` since `start`, from CDC (queries never show deleted records), as far
    back as CDC reaches; fewer entities per request when one answer would be too big."""
    reach = _second(now - CDC_MAX_AGE + CDC_SAFETY)
    since = max(start, reach)
    if since > start:
        warnings.append(f"deletions of {', '.join(entities)} between {start.isoformat()} and {since.isoformat()} "
                        f"are past CDC's 30-day reach and cannot be seen")
    groups = [entities]
    result: dict[str, list[dict]] = {}
    while groups:
        group = groups.pop(0)
        changes, why = await _cdc(client, group, since, count)
        if changes is None:
            if len(group) > 1:
                groups.extend([entity] for entity in group)
            else:
                warnings.append(f"deletions of {group[0]} since {since.isoformat()} cannot be seen: {why}")
            continue
        for entity, records in changes.items():
            result[entity] = [r for r in records if r.get("status") == "Deleted"]
    return result


def _updated(record: Mapping[str, Any]) -> datetime:
    return _parse(record["MetaData"]["LastUpdatedTime"])


def _keep_latest(found: dict[str, dict], records: Iterable[dict]) -> None:
    for record in records:
        current = found.get(record["Id"])
        if current is None or _version(record) >= _version(current):
            found[record["Id"]] = record


def _version(record: Mapping[str, Any]) -> tuple[datetime, int]:
    token = str(record.get("SyncToken", "0"))
    return _updated(record), int(token) if token.isdigit() else 0


# --- deciding what fires -------------------------------------------------------------------------------
_KIND_ORDER = {TriggerKind.NEW: 0, TriggerKind.UPDATED: 1, TriggerKind.DELETED: 2}


def _events(triggers: list[Trigger], changes: Mapping[str, list[dict]], cursor: PollCursor, start: datetime,
            next_start: datetime, now: datetime) -> tuple[list[TriggerEvent], set[str]]:
    """The events of this window not already in `cursor.seen`, and the keys the next cursor keeps."""
    by_entity: dict[str, list[Trigger]] = {}
    for t in triggers:
        by_entity.setdefault(t.entity, []).append(t)
    activation = {t.key: _second(cursor.activation(t.key)) for t in triggers}
    events: list[tuple[tuple, TriggerEvent]] = []
    emitted: set[str] = set()
    keep: set[str] = set()
    for entity, records in changes.items():
        watching = by_entity.get(entity)
        if not watching:
            continue
        latest: dict[tuple[str, bool], dict] = {}
        for record in records:
            deleted = record.get("status") == "Deleted"
            key = (str(record["Id"]), deleted)
            if key not in latest or _version(record) >= _version(latest[key]):
                latest[key] = record
        for (record_id, deleted), record in latest.items():
            meta = record.get("MetaData") or {}
            updated = _parse(meta["LastUpdatedTime"]) if meta.get("LastUpdatedTime") else now
            created = _parse(meta["CreateTime"]) if meta.get("CreateTime") else updated
            token = None if deleted else str(record.get("SyncToken", "0"))
            for t in watching:
                since = max(start, activation[t.key])
                if deleted:
                    if t.kind is not TriggerKind.DELETED or updated < since:
                        continue
                    dedup, when = f"{t.key}:{entity}:{record_id}:deleted", updated
                elif t.kind is TriggerKind.NEW:
                    if created < since:
                        continue
                    dedup, when = f"{t.key}:{entity}:{record_id}", created
                elif t.kind is TriggerKind.UPDATED:
                    if updated < since or (token == "0" and created == updated):
                        continue
                    dedup, when = f"{t.key}:{entity}:{record_id}:{token}", updated
                else:
                    continue
                if when >= next_start:
                    keep.add(dedup)
                if dedup in cursor.seen or dedup in emitted:
                    continue
                emitted.add(dedup)
                event = TriggerEvent(trigger_key=t.key, entity=entity, record_id=record_id, sync_token=token,
                                     record=record, dedup_key=dedup, changed_at=when)
                order = (when, _KIND_ORDER[t.kind], entity, record_id.zfill(20), t.key)
                events.append((order, event))
    events.sort(key=lambda pair: pair[0])
    return [event for _order, event in events], keep
