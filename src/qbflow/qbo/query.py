"""Build QBO queries that no value can change.

    q = (Query("Customer").where(DisplayName="O'Brien").where_op("Balance", ">", 100)
         .where_like("DisplayName", like_prefix(user_text)).order_by("MetaData.LastUpdatedTime").max(1000))
    str(q)   # SELECT * FROM Customer WHERE DisplayName = 'O\\'Brien' AND Balance > 100 AND ...

Rules (QBO's query language, README §3):

* Entity names come from the catalog; field names must be identifiers or dotted identifiers
  (`MetaData.LastUpdatedTime`) and not keywords. Anything else is a ValueError naming the field, so
  no caller-supplied field name can smuggle in syntax.
* Strings are single-quoted; a backslash escapes the next character, so a value is escaped backslash
  first, then `'` as `\\'`. Booleans and numbers are unquoted; dates and datetimes are quoted ISO 8601.
* `%` is a wildcard only in LIKE, and only where the pattern says so: `where_like(field, "Acme%")` treats
  each `%` of a *developer-written* pattern as a wildcard; `like_prefix/like_suffix/like_contains/
  like_exact(user_value)` escape every `%` of the value (`\\%`, a literal percent sign, as our sandbox
  reads it; UNVERIFIED against Intuit, whose docs only say a backslash escapes special characters).
* Builders are immutable: every method returns a new Query, so one base query can be reused.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from qbflow.catalog.entities import ENTITIES, Op

__all__ = ["MAX_PAGE", "Like", "Query", "like_contains", "like_exact", "like_prefix", "like_suffix", "quote"]

MAX_PAGE = 1000  # QBO refuses MAXRESULTS over 1000 (4001)
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_KEYWORDS = frozenset({
    "select", "from", "where", "and", "or", "not", "in", "like", "orderby", "order", "by", "asc", "desc",
    "startposition", "maxresults", "count", "true", "false",
})
_COMPARISONS = frozenset({"=", "!=", "<", ">", "<=", ">="})


def _check_field(name: Any) -> str:
    if not isinstance(name, str) or not _FIELD.fullmatch(name):
        raise ValueError(f"invalid field name {name!r}: expected an identifier such as DisplayName or "
                         f"MetaData.LastUpdatedTime")
    if any(part.lower() in _KEYWORDS for part in name.split(".")):
        raise ValueError(f"invalid field name {name!r}: it is a query keyword")
    return name


def _escape(text: str, *, percent: bool = False) -> str:
    text = text.replace("\\", "\\\\").replace("'", "\\'")
    return text.replace("%", "\\%") if percent else text


def quote(value: Any) -> str:
    """One value as a QBO query literal."""
    if isinstance(value, bool):  # before numbers: bool is an int
        return "true" if value else "false"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        if isinstance(value, Decimal) and not value.is_finite():
            raise ValueError(f"cannot query for {value}")
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot query for {value}")
        return repr(value)
    if isinstance(value, datetime | date):  # datetime is a date: both ISO 8601
        return f"'{value.isoformat()}'"
    if isinstance(value, str):
        return f"'{_escape(value)}'"
    if value is None:
        raise ValueError("cannot query for None; QBO has no NULL literal")
    raise TypeError(f"cannot use a {type(value).__name__} as a query value")


@dataclass(frozen=True)
class Like:
    """A LIKE pattern: literal text and `%` wildcards, kept apart until rendered."""

    parts: tuple[str | None, ...]  # a str is literal text, None is a % wildcard

    @classmethod
    def pattern(cls, text: str) -> Like:
        """A developer-written pattern: every `%` in `text` is a wildcard."""
        pieces: list[str | None] = []
        for i, chunk in enumerate(text.split("%")):
            if i:
                pieces.append(None)
            if chunk:
                pieces.append(chunk)
        return cls(tuple(pieces))

    def render(self) -> str:
        return "'" + "".join("%" if p is None else _escape(p, percent=True) for p in self.parts) + "'"

    def __str__(self) -> str:
        return self.render()


def like_prefix(value: str) -> Like:
    """Matches text starting with `value` (every character of `value` literal)."""
    return Like((value, None))


def like_suffix(value: str) -> Like:
    """Matches text ending with `value`."""
    return Like((None, value))


def like_contains(value: str) -> Like:
    """Matches text containing `value`."""
    return Like((None, value, None))


def like_exact(value: str) -> Like:
    """Matches `value` exactly, as LIKE compares (QBO ignores case)."""
    return Like((value,))


@dataclass(frozen=True)
class Query:
    """A SELECT for one entity. Immutable: each method returns a new Query."""

    entity: str
    conditions: tuple[str, ...] = ()
    ordering: tuple[str, ...] = ()
    start_position: int | None = None
    max_results: int | None = None
    counting: bool = False

    def __post_init__(self) -> None:
        definition = ENTITIES.get(self.entity)
        if definition is None:
            raise ValueError(f"unknown entity {self.entity!r}; expected one of {', '.join(sorted(ENTITIES))}")
        if not definition.supports(Op.QUERY):
            raise ValueError(f"{self.entity} cannot be queried")

    def where(self, **equals: Any) -> Query:
        """`field = value` for each keyword (use where_op for dotted names)."""
        query = self
        for name, value in equals.items():
            query = query.where_op(name, "=", value)
        return query

    def where_op(self, field: str, op: str, value: Any) -> Query:
        """`field op value`, op one of = != < > <= >=."""
        if op not in _COMPARISONS:
            raise ValueError(f"invalid operator {op!r} for {field!r}; expected one of {sorted(_COMPARISONS)}")
        if isinstance(value, Like):
            raise TypeError(f"a LIKE pattern needs where_like (field {field!r})")
        return replace(self, conditions=(*self.conditions, f"{_check_field(field)} {op} {quote(value)}"))

    def where_in(self, field: str, values: Iterable[Any]) -> Query:
        """`field IN (v1, v2, ...)`; at least one value."""
        rendered = [quote(v) for v in values]
        if not rendered:
            raise ValueError(f"where_in({field!r}) needs at least one value")
        return replace(self, conditions=(*self.conditions, f"{_check_field(field)} IN ({', '.join(rendered)})"))

    def where_like(self, field: str, pattern: str | Like) -> Query:
        """`field LIKE pattern`. A str pattern is developer-written (`%` = wildcard); for user input use
        like_prefix / like_suffix / like_contains / like_exact, which keep its `%` literal."""
        like = pattern if isinstance(pattern, Like) else Like.pattern(pattern)
        return replace(self, conditions=(*self.conditions, f"{_check_field(field)} LIKE {like.render()}"))

    def order_by(self, field: str, *, desc: bool = False) -> Query:
        """Sort by `field` (call again for secondary keys)."""
        item = f"{_check_field(field)} {'DESC' if desc else 'ASC'}"
        return replace(self, ordering=(*self.ordering, item))

    def start(self, position: int) -> Query:
        """STARTPOSITION (1-based)."""
        if not isinstance(position, int) or isinstance(position, bool) or position < 1:
            raise ValueError(f"start position must be an integer >= 1, got {position!r}")
        return replace(self, start_position=position)

    def max(self, count: int) -> Query:
        """MAXRESULTS (1..1000)."""
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_PAGE:
            raise ValueError(f"max results must be an integer from 1 to {MAX_PAGE}, got {count!r}")
        return replace(self, max_results=count)

    def count(self) -> Query:
        """SELECT COUNT(*) instead of the records (paging and ordering are dropped)."""
        return replace(self, counting=True, ordering=(), start_position=None, max_results=None)

    def __str__(self) -> str:
        text = f"SELECT {'COUNT(*)' if self.counting else '*'} FROM {self.entity}"
        if self.conditions:
            text += " WHERE " + " AND ".join(self.conditions)
        if self.ordering:
            text += " ORDERBY " + ", ".join(self.ordering)
        if self.start_position is not None:
            text += f" STARTPOSITION {self.start_position}"
        if self.max_results is not None:
            text += f" MAXRESULTS {self.max_results}"
        return text
