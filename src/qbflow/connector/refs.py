"""References a person can fill in: an Id, an email address or a name wherever QBO wants a `...Ref`.

    ref = await resolve_ref(ctx, "customer", ("Customer",), "surf@intuit.com")
    # {"value": "2", "name": "Bill's Windsurf Shop"}

How a value is read (`RefObject` says it explicitly: {"id": ...}, {"email": ...} or {"name": ...}):

* a number, or a string of digits, is an Id and is passed to QBO as is (QBO checks it: an unknown or
  inactive Id comes back as QBO's own fault naming the element); a name made of digits only is given
  as {"name": "1001"};
* a string with an "@" is an email address, for entities that have one (Customer, Vendor, Employee):
  matched against PrimaryEmailAddr;
* anything else is a name: DisplayName (Customer, Vendor, Employee) or Name (Account, Item, Term...),
  matched exactly but ignoring case, as QBO's `=` compares; "Parent:Child" is matched against
  FullyQualifiedName.

Only active records are matched. No match, or more than one, is a `ReferenceError` naming the input field
and the value, and listing the candidates (Id, name, email): for a name that matches nothing exactly, the
records whose name contains it (or its longest word) are offered, and never picked silently, because
billing the wrong customer is worse than asking. Every lookup goes through the escaping query builder and
is cached in the run's `ReferenceCache`, so a name used by ten steps costs one query.
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any

from pydantic import Discriminator, Field, StringConstraints, Tag, model_validator

from qbflow.catalog.entities import ENTITIES
from qbflow.connector.base import PATTERN_TEXT, ActionContext, ActionInput
from qbflow.errors import QBFlowError
from qbflow.qbo.query import Query, like_contains

__all__ = [
    "AmbiguousReference",
    "MissingReference",
    "RefObject",
    "RefValue",
    "ReferenceError",
    "ref_description",
    "resolve_ref",
    "resolve_record",
]

_EMAIL_ENTITIES = frozenset({"Customer", "Vendor", "Employee"})
_CANDIDATES_MAX = 10
_DIGITS = re.compile(r"[0-9]+")

NonEmpty = Annotated[str, StringConstraints(min_length=1, max_length=500, strip_whitespace=True)]
ID_PATTERN = r"^[0-9]{1,20}$"
PATTERN_TEXT[ID_PATTERN] = "a QuickBooks Id: digits only, e.g. \"145\""
IdText = Annotated[str, StringConstraints(pattern=ID_PATTERN, strip_whitespace=True)]


class ReferenceError(QBFlowError):  # noqa: A001 - qbflow's own, on purpose: the name says what it is
    """A reference given by email or name could not be resolved to exactly one active record."""

    def __init__(self, message: str, *, field: str, value: Any, candidates: list[dict] | None = None) -> None:
        self.field = field
        self.value = value
        self.candidates = candidates or []
        super().__init__(message)


class MissingReference(ReferenceError):
    """Nothing active matches the email or name given."""


class AmbiguousReference(ReferenceError):
    """More than one active record matches; `.candidates` lists them (Id, name, email)."""


class RefObject(ActionInput):
    """A reference spelled out: exactly one of id, email or name (and, for payees, the record type)."""

    id: IdText | None = Field(None, description="The record's QuickBooks Id (digits).")
    email: NonEmpty | None = Field(None, description="The primary email address (customers, vendors, employees).")
    name: NonEmpty | None = Field(None, description="The display name or name, matched exactly ignoring case "
                                                    "(\"Parent:Child\" for a sub-record).")
    type: NonEmpty | None = Field(None, description="Customer, Vendor or Employee, where several kinds are "
                                                    "allowed (an expense's payee).")

    @model_validator(mode="after")
    def _exactly_one(self) -> RefObject:
        given = [k for k in ("id", "email", "name") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of id, email or name")
        return self


def _branch(value: Any) -> str:
    if isinstance(value, dict | RefObject):
        return "ref-object"
    if isinstance(value, int) and not isinstance(value, bool):
        return "ref-id"
    return "ref-text"


# Validated by the kind of value given (an object, a number, text), so an error speaks of that kind only.
RefValue = Annotated[
    Annotated[NonEmpty, Tag("ref-text")] | Annotated[int, Field(ge=0), Tag("ref-id")]
    | Annotated[RefObject, Tag("ref-object")],
    Discriminator(_branch),
]


def ref_description(targets: tuple[str, ...], what: str = "") -> str:
    """The form text of a reference field: what it points at and the ways to give it."""
    kinds = " or ".join(ENTITIES[t].title.lower() for t in targets)
    ways = "an Id, an email address or a name" if set(targets) & _EMAIL_ENTITIES else "an Id or a name"
    how = (f"{ways} (matched exactly, ignoring case, among active records), or an object "
           f"{{\"id\"|\"email\"|\"name\": ...}}.")
    return f"{what} Give {how}" if what else f"The {kinds}: {how}"


def _how(targets: tuple[str, ...], value: RefValue) -> tuple[str, str, str | None]:
    """(how, text, type) for a reference value: how is "id", "email" or "name"."""
    if isinstance(value, RefObject):
        for how in ("id", "email", "name"):
            text = getattr(value, how)
            if text is not None:
                return how, text, value.type
    if isinstance(value, int) and not isinstance(value, bool):
        return "id", str(value), None
    text = str(value).strip()
    if _DIGITS.fullmatch(text):
        return "id", text, None
    if "@" in text and set(targets) & _EMAIL_ENTITIES:
        return "email", text, None
    return "name", text, None


def _name_field(entity: str) -> str:
    return ENTITIES[entity].name_field or "Name"


def _label(entity: str, record: dict) -> str:
    name = record.get(_name_field(entity)) or record.get("FullyQualifiedName") or ""
    return str(name)


def candidate(entity: str, record: dict) -> dict:
    """How a record is shown in an error: type, Id, name and email."""
    item = {"type": entity, "id": str(record.get("Id")), "name": _label(entity, record)}
    email = (record.get("PrimaryEmailAddr") or {}).get("Address")
    if email:
        item["email"] = email
    return item


def _list(candidates: list[dict]) -> str:
    shown = []
    for c in candidates[:_CANDIDATES_MAX]:
        text = f"{c['type']} Id {c['id']} \"{c['name']}\""
        if c.get("email"):
            text += f" <{c['email']}>"
        shown.append(text)
    more = len(candidates) - _CANDIDATES_MAX
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


async def _active(ctx: ActionContext, query: Query) -> list[dict]:
    return await ctx.qbo.query(query.where(Active=True).max(_CANDIDATES_MAX + 1))


async def _match(ctx: ActionContext, entity: str, how: str, text: str) -> list[dict]:
    if how == "email":
        return await _active(ctx, Query(entity).where(PrimaryEmailAddr=text))
    name_field = _name_field(entity)
    if ":" in text and "FullyQualifiedName" in ENTITIES[entity].filterable:
        return await _active(ctx, Query(entity).where(FullyQualifiedName=text))
    return await _active(ctx, Query(entity).where(**{name_field: text}))


async def _close(ctx: ActionContext, entity: str, text: str) -> list[dict]:
    """Active records whose name contains the text, or else its longest word; closest first."""
    name_field = _name_field(entity)
    found = await _active(ctx, Query(entity).where_like(name_field, like_contains(text)))
    words = sorted(re.findall(r"\w{3,}", text), key=len, reverse=True)
    if not found and words and words[0].lower() != text.lower():
        found = await _active(ctx, Query(entity).where_like(name_field, like_contains(words[0])))

    def closeness(record: dict) -> float:
        return -difflib.SequenceMatcher(None, text.lower(), _label(entity, record).lower()).ratio()

    return sorted(found, key=closeness)


async def resolve_record(
    ctx: ActionContext, field: str, targets: tuple[str, ...], value: RefValue, *, use_cache: bool = True
) -> tuple[str, dict | None, dict]:
    """(entity, full record or None when given by Id, QBO reference) for a reference value.

    `targets` are the entities allowed, the default first (an Id with no type is taken as that one).
    `use_cache=False` looks the value up again (a Get action answers what QBO holds now).
    The reference carries "type" when several entities are allowed (EntityRef). Raises MissingReference
    or AmbiguousReference naming `field`, the input field ("lines[0].item").
    """
    how, text, wanted_type = _how(targets, value)
    if wanted_type is not None:
        match = [t for t in targets if t.lower() == wanted_type.lower()]
        if not match:
            raise MissingReference(f"{field}: type {wanted_type!r} is not allowed here; expected "
                                   f"{' or '.join(targets)}", field=field, value=wanted_type)
        searched = match[:1]
    else:
        searched = [t for t in targets if how != "email" or t in _EMAIL_ENTITIES]
    typed = len(targets) > 1

    def answer(entity: str, record_id: str, name: str | None) -> tuple[str, dict | None, dict]:
        ref = {"value": record_id}
        if name:
            ref["name"] = name
        if typed:
            ref["type"] = entity
        return entity, ctx.references.records.get((entity, record_id)), ref

    if how == "id":
        return answer(searched[0], text, None)
    key = (tuple(searched), how, text.lower())
    cached = ctx.references.refs.get(key) if use_cache else None
    if cached is not None:
        return answer(cached["type"], cached["value"], cached.get("name"))
    found: list[tuple[str, dict]] = []
    for entity in searched:
        found += [(entity, record) for record in await _match(ctx, entity, how, text)]
    what = " or ".join(ENTITIES[t].title.lower() for t in searched)
    by = "email address" if how == "email" else "name"
    if len(found) > 1:
        candidates = [candidate(e, r) for e, r in found]
        raise AmbiguousReference(
            f"{field}: {len(found)} active {what} records have the {by} {text!r}: {_list(candidates)}. "
            f"Give the Id instead (e.g. {{\"id\": \"{candidates[0]['id']}\"}}).",
            field=field, value=text, candidates=candidates)
    if not found:
        close: list[tuple[str, dict]] = []
        if how == "name":
            for entity in searched:
                close += [(entity, record) for record in await _close(ctx, entity, text)]
        candidates = [candidate(e, r) for e, r in close]
        hint = f" Close matches: {_list(candidates)}." if candidates else ""
        raise MissingReference(f"{field}: no active {what} has the {by} {text!r}.{hint}",
                               field=field, value=text, candidates=candidates)
    entity, record = found[0]
    record_id, name = str(record["Id"]), _label(entity, record) or None
    ctx.references.refs[key] = {"type": entity, "value": record_id, "name": name}
    ctx.references.records[(entity, record_id)] = record
    return answer(entity, record_id, name)


async def resolve_ref(ctx: ActionContext, field: str, targets: tuple[str, ...], value: RefValue) -> dict:
    """The QBO reference ({"value": Id, "name"?, "type"?}) for an Id, email or name; see the module doc."""
    _, _, ref = await resolve_record(ctx, field, targets, value)
    return ref
