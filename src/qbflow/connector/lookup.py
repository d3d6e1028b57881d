"""Finding the record an earlier attempt of a create made, so that a retry does not make a second one.

    record = await find_created(ctx, action("create_payment"), model, since=first_try)
    if record is None:
        record = await action("create_payment").run(ctx, model)

DESIGN.md guarantee 2: every write carries a requestid, and QBO answers a repeat with its first answer. That is
not the only line: users report duplicates despite it (intuit/QuickBooks-V3-DotNET-SDK#352), and a retry with
another requestid (a restored database, a step re-run by hand) is a new request to QBO. So after an ambiguous
failure (a timeout, a reset, a 5xx, a crash after the ledger's "sent" mark) the engine calls `find_created`
before creating again. It rebuilds the body the create sends (`CreatedLookup.body`: no write) and asks QBO for
the records created since the first try (less `LOOKUP_SKEW`, for clocks) that share its most telling
properties, those the entity can be filtered on (`QUERY_KEYS`: the DocNumber when there is one, else the
name, the customer or vendor, the date, the file name); then keeps those whose fields hold everything the
create sent (`holds`). What the answer means:

* exactly one record: the earlier attempt made it; it is the step's output and nothing is created;
* none: the earlier attempt did not reach QuickBooks; the caller creates;
* several: `AmbiguousCreate`. One of them may be the earlier attempt's, or none (two identical payments
  entered elsewhere in those minutes): creating could double the books, picking one could leave a payment
  out. For money a person decides, so the step fails naming the records, and nothing is created.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from qbflow.catalog.entities import ENTITIES
from qbflow.connector.base import Action, ActionContext
from qbflow.errors import QBFlowError
from qbflow.qbo.query import Query

__all__ = ["LOOKUP_SKEW", "QUERY_KEYS", "AmbiguousCreate", "find_created", "holds"]

# How far before the first try a record may have been created (its CreateTime is QBO's clock, ours is ours).
LOOKUP_SKEW = dt.timedelta(minutes=10)
# Properties the query filters on, when the create sends them and the entity is filterable by them (catalog).
# DisplayName is unique among customers, vendors and employees; DocNumber is the form's own number.
QUERY_KEYS = ("DocNumber", "DisplayName", "Name", "CustomerRef", "VendorRef", "EntityRef", "TxnDate", "FileName")
_CENT = 0.005  # amounts equal to the cent are equal
_ABSENT: Any = object()


class AmbiguousCreate(QBFlowError):
    """Several records created since the first try hold what this create sends: it may or may not have been
    made already, and qbflow will not guess which (see the module doc). `.ids` are the records' Ids."""

    def __init__(self, message: str, *, entity: str, ids: list[str]) -> None:
        self.entity = entity
        self.ids = ids
        super().__init__(message)


async def find_created(ctx: ActionContext, action: Action, model: BaseModel, since: dt.datetime,
                       *, skew: dt.timedelta = LOOKUP_SKEW) -> dict | None:
    """The record an earlier attempt of `action` (a create) with this input made since `since`, else None.

    None also for actions that create nothing (`action.created_lookup` is None). Several matching records
    raise AmbiguousCreate. A record found is finished as the action would (`CreatedLookup.finish`).
    """
    lookup = action.created_lookup
    if lookup is None or action.entity is None:
        return None
    if since.utcoffset() is None:
        raise ValueError("since must be timezone-aware")
    sent = await lookup.body(ctx, model)
    entity = ENTITIES[action.entity]
    query = Query(entity.name)
    for key in QUERY_KEYS:
        value = sent.get(key)
        if key in entity.filterable and value is not None and value != "":
            query = query.where(**{key: value["value"] if isinstance(value, Mapping) else value})
    query = query.where_op("MetaData.CreateTime", ">=", since - skew).order_by("MetaData.CreateTime")
    matches = [record async for record in ctx.qbo.query_all(query) if holds(record, sent)]
    if not matches:
        return None
    if len(matches) > 1:
        ids = [str(record.get("Id")) for record in matches]
        noun = entity.title.lower()
        raise AmbiguousCreate(
            f"{action.title}: an earlier attempt may have created this {noun} already, and {len(matches)} "
            f"{noun}s created since {since.isoformat(timespec='seconds')} match what it sends (Ids "
            f"{', '.join(ids)}); nothing was created. Check them in QuickBooks: if one is this run's, its work is "
            f"done; if none is, run it again.", entity=entity.name, ids=ids)
    record = matches[0]
    if lookup.finish is not None:
        record = await lookup.finish(ctx, model, record)
    return record


def holds(stored: Any, sent: Any) -> bool:
    """Whether a stored record (or part of one) holds everything that was sent.

    Objects: every property sent is held (QBO adds its own: Id, MetaData, names on references). References
    (`...Ref`) compare their value and type only: a name can change. Lists: the items sent, in order, each
    held by a later stored item (QBO adds lines: the sub-total). Numbers are equal to the cent; an empty
    object or list sent is held when QBO left it out.
    """
    if isinstance(sent, Mapping):
        if not sent:
            return stored is _ABSENT or isinstance(stored, Mapping)
        if not isinstance(stored, Mapping):
            return False
        for key, value in sent.items():
            held = stored.get(key, _ABSENT)
            if key.endswith("Ref") and isinstance(value, Mapping) and isinstance(held, Mapping):
                if any(str(value[k]) != str(held.get(k)) for k in ("value", "type") if k in value):
                    return False
            elif not holds(held, value):
                return False
        return True
    if isinstance(sent, list):
        if not sent:
            return stored is _ABSENT or isinstance(stored, list)
        if not isinstance(stored, list):
            return False
        remaining = iter(stored)
        return all(any(holds(item, wanted) for item in remaining) for wanted in sent)
    if stored is _ABSENT or stored is None:
        return False
    if isinstance(sent, bool) or isinstance(stored, bool):
        return sent is stored
    if isinstance(sent, int | float):
        number = _number(stored)
        return number is not None and abs(number - sent) < _CENT
    if isinstance(sent, str):
        if isinstance(stored, int | float):
            number = _number(sent)
            return number is not None and abs(number - stored) < _CENT
        return isinstance(stored, str) and stored.strip() == sent.strip()
    return bool(stored == sent)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
