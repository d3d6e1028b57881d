"""The query builder: escaping that no value can break out of, checked as text and against the sandbox."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from qbflow.qbo import Query, like_contains, like_exact, like_prefix, like_suffix
from qbflow.qbo.query import quote


def test_a_full_query() -> None:
    query = (Query("Customer").where(DisplayName="O'Brien", Active=True).where_op("Balance", ">", 100)
             .where_in("Id", ["1", "2"]).where_like("DisplayName", "Acme%")
             .order_by("MetaData.LastUpdatedTime", desc=True)
             .start(1).max(1000))
    assert str(query) == (
        "SELECT * FROM Customer WHERE DisplayName = 'O\\'Brien' AND Active = true AND Balance > 100 "
        "AND Id IN ('1', '2') AND DisplayName LIKE 'Acme%' ORDERBY MetaData.LastUpdatedTime DESC "
        "STARTPOSITION 1 MAXRESULTS 1000")
    assert str(query.count()) == ("SELECT COUNT(*) FROM Customer WHERE DisplayName = 'O\\'Brien' AND Active = true "
                                  "AND Balance > 100 AND Id IN ('1', '2') AND DisplayName LIKE 'Acme%'")


def test_builders_do_not_change_the_query_they_start_from() -> None:
    base = Query("Invoice")
    narrowed = base.where(DocNumber="1001")
    assert str(base) == "SELECT * FROM Invoice" and "1001" in str(narrowed)


@pytest.mark.parametrize(("value", "literal"), [
    ("plain", "'plain'"),
    ("O'Brien", "'O\\'Brien'"),
    ("back\\slash", "'back\\\\slash'"),
    ("trailing\\", "'trailing\\\\'"),
    ("\\'", "'\\\\\\''"),  # backslash first, then the quote: neither can end the string early
    ("' OR 1=1 --", "'\\' OR 1=1 --'"),
    ("100%", "'100%'"),  # % means nothing to =
    (True, "true"), (False, "false"), (7, "7"), (12.5, "12.5"), (Decimal("99.90"), "99.90"),
    (date(2024, 6, 1), "'2024-06-01'"),
    (datetime(2024, 6, 1, 8, 30, tzinfo=UTC), "'2024-06-01T08:30:00+00:00'"),
])
def test_values(value, literal: str) -> None:
    assert quote(value) == literal


def test_values_that_have_no_literal() -> None:
    for bad in (None, float("nan"), float("inf"), Decimal("NaN")):
        with pytest.raises(ValueError):
            quote(bad)
    with pytest.raises(TypeError):
        quote(object())


def test_like_patterns_keep_user_percent_signs_literal() -> None:
    assert str(like_prefix("50% off")) == "'50\\% off%'"
    assert str(like_suffix("O'Neil")) == "'%O\\'Neil'"
    assert str(like_contains("a\\b")) == "'%a\\\\b%'"
    assert str(like_exact("100%")) == "'100\\%'"
    assert str(Query("Item").where_like("Name", "Widget%Blue%")) == "SELECT * FROM Item WHERE Name LIKE 'Widget%Blue%'"


@pytest.mark.parametrize("field", ["Display Name", "Name;", "a..b", "1abc", "Name = 'x' OR Active", "", "x.", "Name)",
                                   "Active OR", "and"])
def test_field_names_that_are_not_identifiers_are_refused(field: str) -> None:
    with pytest.raises(ValueError, match="invalid field name"):
        Query("Customer").where_op(field, "=", "x")
    with pytest.raises(ValueError, match="invalid field name"):
        Query("Customer").order_by(field)


def test_other_mistakes_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown entity"):
        Query("Customer; DROP")
    with pytest.raises(ValueError, match="operator"):
        Query("Customer").where_op("Balance", "<>", 1)
    with pytest.raises(ValueError):
        Query("Customer").where_in("Id", [])
    with pytest.raises(ValueError):
        Query("Customer").max(1001)
    with pytest.raises(ValueError):
        Query("Customer").start(0)


HOSTILE = [
    "O'Brien & Sons",
    "Back\\slash Traders",
    "Trailing Backslash\\",
    "Quote\\'s Corner",
    "' OR 1=1 --",
    "x' OR DisplayName LIKE '%",
    "100% Organic",
    "100 Organic",
    "1000 Organic",
    "%",
    "''",
]


async def test_hostile_values_find_exactly_the_right_record(client) -> None:
    created = {name: await client.create("Customer", {"DisplayName": name}) for name in HOSTILE}
    for name, record in created.items():
        found = await client.query(Query("Customer").where(DisplayName=name))
        assert [r["Id"] for r in found] == [record["Id"]], name
        assert await client.count("Customer", DisplayName=name) == 1
        exact = await client.query(Query("Customer").where_like("DisplayName", like_exact(name)))
        assert [r["Id"] for r in exact] == [record["Id"]], name
    by_prefix = await client.query(Query("Customer").where_like("DisplayName", like_prefix("100%")))
    assert [r["DisplayName"] for r in by_prefix] == ["100% Organic"]
    contains = await client.query(Query("Customer").where_like("DisplayName", like_contains("\\")))
    assert {r["DisplayName"] for r in contains} == {"Back\\slash Traders", "Trailing Backslash\\", "Quote\\'s Corner"}
    quoted = await client.query(Query("Customer").where_in("DisplayName", ["' OR 1=1 --", "''", "nobody"]))
    assert {r["DisplayName"] for r in quoted} == {"' OR 1=1 --", "''"}
