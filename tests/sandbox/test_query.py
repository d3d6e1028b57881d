"""Tests of the sandbox's QBO query language: parsing, QBO's faults, filtering, ordering and paging."""

from __future__ import annotations

from typing import Any

import pytest

from qbflow.sandbox.query import (
    Condition,
    Query,
    QueryError,
    matches,
    parse_query,
    select,
)

ENTITIES = frozenset({"Customer", "Vendor", "Invoice", "Purchase", "SalesReceipt"})

# Shaped like the sandbox company in the recordings. Times are chosen so that string order and instant
# order disagree: Id 2's "...06:30:00Z" is 23:30 Pacific on May 31, before Id 1's midnight, and Id 9's
# "+01:00" time is the very same instant as Id 1's.
CUSTOMERS: list[dict[str, Any]] = [
    {"Id": "1", "DisplayName": "Amy's Bird Sanctuary", "FullyQualifiedName": "Amy's Bird Sanctuary",
     "Active": True, "Balance": 239.0, "PrimaryEmailAddr": {"Address": "Birds@Intuit.com"},
     "MetaData": {"CreateTime": "2015-10-01T16:48:43-07:00", "LastUpdatedTime": "2024-06-01T00:00:00-07:00"}},
    {"Id": "2", "DisplayName": "Bill's Windsurf Shop", "FullyQualifiedName": "Bill's Windsurf Shop",
     "Active": True, "Balance": 85.0, "PrimaryEmailAddr": {"Address": "Surf@Intuit.com"},
     "MetaData": {"LastUpdatedTime": "2024-06-01T06:30:00Z"}},
    {"Id": "7", "DisplayName": "Freeman Sporting Goods", "FullyQualifiedName": "Freeman Sporting Goods",
     "Active": True, "Balance": 0, "MetaData": {"LastUpdatedTime": "2023-01-01T10:00:00-08:00"}},
    {"Id": "9", "DisplayName": "55 Twin Lane", "FullyQualifiedName": "Freeman Sporting Goods:55 Twin Lane",
     "ParentRef": {"value": "7"}, "Active": True, "Balance": 85.0,
     "MetaData": {"LastUpdatedTime": "2024-06-01T08:00:00+01:00"}},
    {"Id": "10", "DisplayName": "Geeta Kalapatapu", "FullyQualifiedName": "Geeta Kalapatapu",
     "Active": True, "MetaData": {"LastUpdatedTime": "2024-06-02T00:00:00-07:00"}},
    {"Id": "53", "DisplayName": "pam's place", "FullyQualifiedName": "pam's place", "Active": False,
     "Balance": 12.5, "MetaData": {"LastUpdatedTime": "2022-03-01T00:00:00-08:00"}},
    {"Id": "48", "DisplayName": "PG&E", "FullyQualifiedName": "PG&E", "Active": True, "Balance": 300.0,
     "MetaData": {"LastUpdatedTime": "2021-01-01T00:00:00-08:00"}},
]

INVOICES: list[dict[str, Any]] = [
    {"Id": "130", "CustomerRef": {"value": "1", "name": "Amy's Bird Sanctuary"}, "TxnDate": "2024-01-31",
     "TotalAmt": 300.0, "DocNumber": "1001"},
    {"Id": "9", "CustomerRef": {"value": "10", "name": "Geeta Kalapatapu"}, "TxnDate": "2024-02-01",
     "TotalAmt": 300.01, "DocNumber": "1002"},
    {"Id": "27", "CustomerRef": {"value": "1"}, "TxnDate": "2023-12-31", "TotalAmt": 45.5,
     "DocNumber": "10%off"},
]


def ids(text: str, records: list[dict[str, Any]]) -> list[str]:
    page, _total = select(parse_query(text, ENTITIES), records)
    return [r["Id"] for r in page]


def fault(text: str, **kwargs: Any) -> QueryError:
    with pytest.raises(QueryError) as caught:
        parse_query(text, ENTITIES, **kwargs)
    return caught.value


# --------------------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------------------


def test_plain_select_has_qbo_defaults() -> None:
    q = parse_query("SELECT * FROM Customer", ENTITIES)
    assert (q.entity, q.count, q.conditions, q.order_by) == ("Customer", False, (), ())
    assert (q.start_position, q.max_results) == (1, 100)


def test_keywords_are_case_insensitive_and_entity_is_canonicalized() -> None:
    q = parse_query(
        "select * from customer where active = TRUE orderby DisplayName desc maxresults 5 startposition 2",
        ENTITIES,
    )
    assert q.entity == "Customer"
    assert q.conditions == (Condition("active", ("active",), "=", (True,)),)
    assert q.order_by == ((("DisplayName",), True),)
    assert (q.start_position, q.max_results) == (2, 5)


def test_everything_at_once_across_lines() -> None:
    q = parse_query(
        "SELECT\n  COUNT(*)\nFROM Invoice\nWHERE Id IN ('5', '6') AND Metadata.LastUpdatedTime > '2024-01-01'\n"
        "ORDER BY TxnDate ASC, Id DESC\nSTARTPOSITION 3 MAXRESULTS 2",
        ENTITIES,
    )
    assert q.count is True
    assert q.conditions == (
        Condition("Id", ("Id",), "IN", ("5", "6")),
        Condition("Metadata.LastUpdatedTime", ("MetaData", "LastUpdatedTime"), ">", ("2024-01-01",)),
    )
    assert q.order_by == ((("TxnDate",), False), (("Id",), True))
    assert (q.start_position, q.max_results) == (3, 2)


def test_select_without_star_is_accepted_like_the_docs_sample_url() -> None:
    assert parse_query("SELECT FROM Customer WHERE Id = '1'", ENTITIES).count is False


def test_value_kinds_are_typed() -> None:
    q = parse_query("SELECT * FROM Invoice WHERE TotalAmt = 300.50 AND Id = 7 AND DocNumber = '7'", ENTITIES)
    assert [c.values for c in q.conditions] == [(300.5,), (7,), ("7",)]


def test_parse_is_cached() -> None:
    text = "SELECT * FROM Customer WHERE DisplayName LIKE 'A%'"
    assert parse_query(text, ENTITIES) is parse_query(text, set(ENTITIES))


def test_filters_on_top_level_property_any_case() -> None:
    q = parse_query("SELECT * FROM Customer WHERE active IN (true, false) AND MetaData.CreateTime > '2020-01-01'",
                    ENTITIES)
    assert q.filters_on("Active") and q.filters_on("MetaData")
    assert not q.filters_on("CreateTime")
    assert not parse_query("SELECT * FROM Customer", ENTITIES).filters_on("Active")


# --------------------------------------------------------------------------------------------------------
# String values, escapes, LIKE
# --------------------------------------------------------------------------------------------------------


def test_escaped_apostrophe_as_in_the_recording() -> None:
    # recordings/get/display_name.yml sends exactly this and gets Amy's Bird Sanctuary back.
    q = parse_query("SELECT * FROM Customer WHERE DisplayName = 'Amy\\'s Bird Sanctuary'", ENTITIES)
    assert q.conditions[0].values == ("Amy's Bird Sanctuary",)
    assert [r["Id"] for r in select(q, CUSTOMERS)[0]] == ["1"]


def test_escaped_backslash() -> None:
    q = parse_query("SELECT * FROM Customer WHERE DisplayName = 'C:\\\\temp\\\\new'", ENTITIES)
    assert q.conditions[0].values == ("C:\\temp\\new",)
    records = [{"Id": "1", "DisplayName": "C:\\temp\\new"}, {"Id": "2", "DisplayName": "C:tempnew"}]
    assert [r["Id"] for r in select(q, records)[0]] == ["1"]


def test_string_equality_ignores_case() -> None:
    assert ids("SELECT * FROM Customer WHERE DisplayName = 'amy\\'s bird sanctuary'", CUSTOMERS) == ["1"]
    assert ids("SELECT * FROM Customer WHERE DisplayName = 'AMY\\'S BIRD SANCTUARY'", CUSTOMERS) == ["1"]
    assert ids("SELECT * FROM Customer WHERE DisplayName = 'Amy'", CUSTOMERS) == []


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("Amy%", ["1"]),  # prefix
        ("%shop", ["2"]),  # suffix, other case
        ("%BIRD%", ["1"]),  # both sides
        ("B%p", ["2"]),  # middle
        ("pg&e", ["48"]),  # no wildcard: whole value, any case
        ("Freeman%", ["7"]),
        ("55_Twin%", []),  # only % is a wildcard
        ("%", ["1", "2", "7", "9", "10", "48", "53"]),
    ],
)
def test_like_forms(pattern: str, expected: list[str]) -> None:
    assert ids(f"SELECT * FROM Customer WHERE DisplayName LIKE '{pattern}'", CUSTOMERS) == expected


def test_like_on_fully_qualified_name_finds_sub_customers() -> None:
    assert ids("SELECT * FROM Customer WHERE FullyQualifiedName LIKE 'Freeman%'", CUSTOMERS) == ["7", "9"]


def test_percent_in_values() -> None:
    assert ids("SELECT * FROM Invoice WHERE DocNumber = '10%off'", INVOICES) == ["27"]  # literal for =
    assert ids("SELECT * FROM Invoice WHERE DocNumber LIKE '10%'", INVOICES) == ["9", "27", "130"]
    assert ids("SELECT * FROM Invoice WHERE DocNumber LIKE '10\\%%'", INVOICES) == ["27"]  # escaped %


# --------------------------------------------------------------------------------------------------------
# Operators, numbers, Ids, booleans, refs, missing properties
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("TotalAmt = '300.00'", ["130"]),  # quoted number compares as a number
        ("TotalAmt = 300", ["130"]),
        ("TotalAmt > '300.00'", ["9"]),
        ("TotalAmt >= 300", ["9", "130"]),
        ("TotalAmt < 300", ["27"]),
        ("TotalAmt <= '45.50'", ["27"]),
        ("TotalAmt != 300", ["9", "27"]),
        ("TotalAmt IN (45.5, '300.01')", ["9", "27"]),
        ("NOT TotalAmt > 100", ["27"]),
    ],
)
def test_number_operators(where: str, expected: list[str]) -> None:
    assert ids(f"SELECT * FROM Invoice WHERE {where}", INVOICES) == expected


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("Id > '9'", ["10", "48", "53"]),  # as strings, '10' < '9'
        ("Id < 10", ["1", "2", "7", "9"]),
        ("Id >= '10' AND Id <= '48'", ["10", "48"]),
        ("Id IN ('9', '10', '999')", ["9", "10"]),
        ("Id = '010'", ["10"]),
        ("Id != '1'", ["2", "7", "9", "10", "48", "53"]),
    ],
)
def test_ids_compare_numerically(where: str, expected: list[str]) -> None:
    assert ids(f"SELECT * FROM Customer WHERE {where}", CUSTOMERS) == expected


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("Active = true", ["1", "2", "7", "9", "10", "48"]),
        ("Active = false", ["53"]),
        ("Active = 'false'", ["53"]),
        ("Active IN (true, false)", ["1", "2", "7", "9", "10", "48", "53"]),
        ("Active IN ( false )", ["53"]),
        ("NOT Active = true", ["53"]),
    ],
)
def test_booleans(where: str, expected: list[str]) -> None:
    assert ids(f"SELECT * FROM Customer WHERE {where}", CUSTOMERS) == expected


def test_refs_compare_with_their_value() -> None:
    assert ids("SELECT * FROM Invoice WHERE CustomerRef = '1'", INVOICES) == ["27", "130"]
    assert ids("SELECT * FROM Invoice WHERE CustomerRef IN ('10', '99')", INVOICES) == ["9"]
    assert ids("SELECT * FROM Invoice WHERE CustomerRef != '1'", INVOICES) == ["9"]
    assert ids("SELECT * FROM Invoice WHERE CustomerRef.name LIKE 'Geeta%'", INVOICES) == ["9"]


def test_email_compares_with_its_address() -> None:
    assert ids("SELECT * FROM Customer WHERE PrimaryEmailAddr = 'birds@intuit.com'", CUSTOMERS) == ["1"]


def test_missing_property_never_matches() -> None:
    assert ids("SELECT * FROM Customer WHERE ParentRef = '7'", CUSTOMERS) == ["9"]
    assert ids("SELECT * FROM Customer WHERE Balance != 85", CUSTOMERS) == ["1", "7", "48", "53"]  # not 10
    assert ids("SELECT * FROM Customer WHERE NOT Balance = 85", CUSTOMERS) == ["1", "7", "48", "53"]
    assert ids("SELECT * FROM Customer WHERE NoSuchThing = 'x'", CUSTOMERS) == []


def test_a_lone_space_stands_for_null() -> None:
    # Docs: "Null is represented as the string ' '".
    assert ids("SELECT * FROM Customer WHERE ParentRef = ' '", CUSTOMERS) == ["1", "2", "7", "10", "48", "53"]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("Balance = '85.00'", ["2", "9"]),
        ("Balance > 100", ["1", "48"]),
        ("Balance < '85'", ["7", "53"]),
        ("Balance <= 85", ["2", "7", "9", "53"]),
        ("Balance >= 239 AND Active = true", ["1", "48"]),
    ],
)
def test_conditions_and_together(where: str, expected: list[str]) -> None:
    assert ids(f"SELECT * FROM Customer WHERE {where}", CUSTOMERS) == expected


def test_property_names_ignore_case() -> None:
    assert ids("SELECT * FROM Customer WHERE displayname = 'PG&E'", CUSTOMERS) == ["48"]
    assert ids("SELECT * FROM Customer WHERE metadata.lastupdatedtime < '2022-01-01'", CUSTOMERS) == ["48"]


# --------------------------------------------------------------------------------------------------------
# Dates and datetimes
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("TxnDate >= '2024-01-01'", ["9", "130"]),
        ("TxnDate = '2024-01-31'", ["130"]),
        ("TxnDate < '2024-02-01T00:00:00'", ["27", "130"]),  # no offset: company time, midnight Feb 1
        ("TxnDate > '2024-01-31T12:00:00-08:00'", ["9"]),
        ("TxnDate <= '2024-01-31T08:00:00Z'", ["27", "130"]),  # = midnight Pacific on Jan 31
        ("TxnDate > '2023-12-31' AND TxnDate < '2024-02-01'", ["130"]),
    ],
)
def test_dates(where: str, expected: list[str]) -> None:
    assert ids(f"SELECT * FROM Invoice WHERE {where}", INVOICES) == expected


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("MetaData.LastUpdatedTime = '2024-06-01T07:00:00Z'", ["1", "9"]),  # same instant, three offsets
        ("Metadata.LastUpdatedTime >= '2024-06-01T00:00:00'", ["1", "9", "10"]),  # read as Pacific
        ("MetaData.LastUpdatedTime < '2024-06-01'", ["2", "7", "48", "53"]),
        ("Metadata.LastUpdatedTime > '2011-08-10T10:20:30-0700'", ["1", "2", "7", "9", "10", "48", "53"]),
        ("MetaData.LastUpdatedTime <= '2024-06-01T00:00:00-07:00'", ["1", "2", "7", "9", "48", "53"]),
        ("MetaData.CreateTime < '2016-01-01'", ["1"]),
    ],
)
def test_datetimes_compare_as_instants(where: str, expected: list[str]) -> None:
    assert ids(f"SELECT * FROM Customer WHERE {where}", CUSTOMERS) == expected


# --------------------------------------------------------------------------------------------------------
# Ordering
# --------------------------------------------------------------------------------------------------------


def test_default_order_of_customers_is_fully_qualified_name_by_code_point() -> None:
    # As in recordings/all/customers.yml: a sub-customer right after its parent, whatever its
    # DisplayName; as in inactive_vendors.yml: upper case before lower case.
    assert ids("SELECT * FROM Customer", CUSTOMERS) == ["1", "2", "7", "9", "10", "48", "53"]


def test_default_order_of_vendors_is_display_name() -> None:
    vendors = [
        {"Id": "48", "DisplayName": "PG&E"},
        {"Id": "47", "DisplayName": "Pam Seitz"},
        {"Id": "46", "DisplayName": "Norton Lumber and Building Materials"},
        {"Id": "49", "DisplayName": "Robertson & Associates"},
    ]
    assert ids("SELECT * FROM Vendor", vendors) == ["46", "48", "47", "49"]  # recordings/all/vendors_by_5.yml


def test_default_order_of_transactions_is_id_numeric() -> None:
    assert ids("SELECT * FROM Invoice", INVOICES) == ["9", "27", "130"]


@pytest.mark.parametrize("keyword", ["ORDERBY", "ORDER BY", "order   by", "orderby"])
def test_orderby_spellings(keyword: str) -> None:
    assert ids(f"SELECT * FROM Customer {keyword} DisplayName", CUSTOMERS) == ["9", "1", "2", "7", "10", "48", "53"]
    assert ids(f"SELECT * FROM Customer {keyword} DisplayName ASC", CUSTOMERS) == [
        "9", "1", "2", "7", "10", "48", "53"]
    assert ids(f"SELECT * FROM Customer {keyword} DisplayName DESC", CUSTOMERS) == [
        "53", "48", "10", "7", "2", "1", "9"]


def test_missing_values_sort_first_ascending_and_last_descending() -> None:
    # Ties (Ids 2 and 9 have the same balance) stay in Id order either way.
    assert ids("SELECT * FROM Customer ORDERBY Balance", CUSTOMERS) == ["10", "7", "53", "2", "9", "1", "48"]
    assert ids("SELECT * FROM Customer ORDERBY Balance DESC", CUSTOMERS) == ["48", "1", "2", "9", "53", "7", "10"]


def test_several_order_keys_in_different_directions() -> None:
    q = "SELECT * FROM Customer ORDERBY Balance DESC, DisplayName ASC"
    assert ids(q, CUSTOMERS) == ["48", "1", "9", "2", "53", "7", "10"]


def test_order_by_id_and_by_datetime_instants() -> None:
    assert ids("SELECT * FROM Customer ORDERBY Id DESC", CUSTOMERS) == ["53", "48", "10", "9", "7", "2", "1"]
    assert ids("SELECT * FROM Customer ORDERBY MetaData.LastUpdatedTime", CUSTOMERS) == [
        "48", "53", "7", "2", "1", "9", "10"]
    assert ids("SELECT * FROM Invoice ORDERBY TxnDate DESC", INVOICES) == ["9", "130", "27"]


# --------------------------------------------------------------------------------------------------------
# Paging and COUNT
# --------------------------------------------------------------------------------------------------------

MANY = [{"Id": str(i), "TotalAmt": float(i)} for i in range(250, 0, -1)]


def test_default_page_is_the_first_hundred() -> None:
    page, total = select(parse_query("SELECT * FROM Invoice", ENTITIES), MANY)
    assert total == 250
    assert [r["Id"] for r in page] == [str(i) for i in range(1, 101)]


@pytest.mark.parametrize(
    ("paging", "first", "last", "size"),
    [
        ("STARTPOSITION 101 MAXRESULTS 100", 101, 200, 100),
        ("MAXRESULTS 100 STARTPOSITION 201", 201, 250, 50),  # the last page is short
        ("STARTPOSITION 250", 250, 250, 1),
        ("MAXRESULTS 1000", 1, 250, 250),
        ("MAXRESULTS 1", 1, 1, 1),
    ],
)
def test_paging_is_one_based(paging: str, first: int, last: int, size: int) -> None:
    page, total = select(parse_query(f"SELECT * FROM Invoice {paging}", ENTITIES), MANY)
    assert total == 250
    assert len(page) == size
    assert (page[0]["Id"], page[-1]["Id"]) == (str(first), str(last))


def test_start_past_the_end_is_an_empty_page() -> None:
    assert select(parse_query("SELECT * FROM Invoice STARTPOSITION 251", ENTITIES), MANY) == ([], 250)


def test_paging_through_the_recorded_alt_select() -> None:
    # recordings/all/alt_select.yml: two at a time, in FullyQualifiedName order, then an empty page.
    names = {5: "Dukes Basketball Camp", 6: "Dylan Sollfrank", 7: "Freeman Sporting Goods",
             8: "Freeman Sporting Goods:0969 Ocean View Road", 9: "Freeman Sporting Goods:55 Twin Lane",
             10: "Geeta Kalapatapu", 11: "Gevelber Photography"}
    records = [{"Id": str(i), "FullyQualifiedName": n, "Active": True} for i, n in reversed(names.items())]
    base = ("SELECT * FROM Customer WHERE Id IN ('5', '6', '7', '8', '9', '10') AND Active IN ( true, false ) "
            "MAXRESULTS 2 STARTPOSITION ")
    assert [ids(base + str(start), records) for start in (1, 3, 5, 7)] == [
        ["5", "6"], ["7", "8"], ["9", "10"], []]
    assert select(parse_query(base.replace("*", "count(*)") + "1", ENTITIES), records) == ([], 6)


def test_count() -> None:
    assert select(parse_query("SELECT COUNT(*) FROM Customer", ENTITIES), CUSTOMERS) == ([], 7)
    assert select(parse_query("select count(*) from Customer where Active = true", ENTITIES), CUSTOMERS) == ([], 6)


def test_matches_single_record() -> None:
    q = parse_query("SELECT * FROM Invoice WHERE CustomerRef = '1' AND TotalAmt > 100", ENTITIES)
    assert [matches(q, r) for r in INVOICES] == [True, False, False]
    assert matches(parse_query("SELECT * FROM Invoice", ENTITIES), INVOICES[0])


def test_hand_built_query_is_compiled_too() -> None:
    q = Query("Invoice", False, (Condition("DocNumber", ("DocNumber",), "LIKE", ("100%",)),), ())
    assert [r["Id"] for r in select(q, INVOICES)[0]] == ["9", "130"]


# --------------------------------------------------------------------------------------------------------
# Faults, worded as QBO words them
# --------------------------------------------------------------------------------------------------------


def test_unknown_entity() -> None:
    err = fault("SELECT * FROM Custmoer")  # recordings/error/400.yml
    assert (err.code, err.message, err.detail) == (
        "4001", "Invalid query", "QueryValidationError: invalid context declaration: Custmoer")


def test_or_is_refused() -> None:
    err = fault("SELECT * FROM Customer WHERE Id = '1' OR Id = '2'")
    assert (err.code, err.message, err.detail) == (
        "4001", "Invalid query", "QueryValidationError: OR operator is not supported")


def test_maxresults_over_1000() -> None:
    err = fault("SELECT * FROM Customer MAXRESULTS 1001")
    assert (err.code, err.message, err.detail) == (
        "4001", "Invalid query", "QueryValidationError: value 1001 is too large. Max allowed value is 1000")


@pytest.mark.parametrize(("paging", "value"), [("STARTPOSITION 0", 0), ("STARTPOSITION -3", -3), ("MAXRESULTS 0", 0)])
def test_values_below_one(paging: str, value: int) -> None:
    err = fault(f"SELECT * FROM Customer {paging}")
    assert (err.code, err.message, err.detail) == (
        "4001", "Invalid query", f"QueryValidationError: value {value} is too small. Min allowed value is 1")


def test_unescaped_quote_is_the_recorded_parser_fault() -> None:
    # The query node-quickbooks sent in mcohen01/node-quickbooks#56, and the position QBO reported.
    err = fault("select * from vendor where DisplayName = 'Cutlery 'R Us' startposition 1 maxresults 1000")
    assert (err.code, err.message, err.detail) == (
        "4000", "Error parsing query", 'QueryParserError: Encountered " <IDENTIFIER> "R "" at line 1, column 52.')


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("SELECT * FROM Customer WHERE", 'Encountered "<EOF>" at line 1, column 28.'),
        ("SELECT * FROM Customer WHERE Id = ", 'Encountered "<EOF>" at line 1, column 34.'),
        ("SELECT * FROM Customer GROUP BY Active", 'Encountered " <IDENTIFIER> "GROUP "" at line 1, column 24.'),
        ("SELECT * FROM Customer WHERE Id <> '1'", 'Encountered " ">" "> "" at line 1, column 34.'),
        ("SELECT * FROM Customer WHERE Id IN ()", 'Encountered " ")" ") "" at line 1, column 37.'),
        ("SELECT * FROM Customer\nORDERBY", 'Encountered "<EOF>" at line 2, column 7.'),
        ("SELECT * FROM Customer MAXRESULTS 10 MAXRESULTS 20",
         'Encountered " "maxresults" "MAXRESULTS "" at line 1, column 38.'),
        ("SELECT * FROM Customer STARTPOSITION 1.5", 'Encountered " <DECIMAL> "1.5 "" at line 1, column 38.'),
        # SQL-style doubled quotes are not an escape; a public bug report shows this same fault at column 48.
        ("SELECT * FROM Vendor WHERE DisplayName = 'Peet''s'",
         "Encountered \" <STRING> \"\\'s\\' \"\" at line 1, column 48."),
        ("SELECT * FROM Customer WHERE DisplayName LIKE %Amy%",
         'Invalid content. Lexical error at line 1, column 47.  Encountered: "%" (37), after : ""'),
        ('SELECT * FROM Customer WHERE Id = "1"',
         'Invalid content. Lexical error at line 1, column 35.  Encountered: "\\"" (34), after : ""'),
        ("SELECT * FROM Customer WHERE DisplayName = 'Amy",
         "Invalid content. Lexical error at line 1, column 47.  Encountered: <EOF> after : \"\\'Amy\""),
        ("   ", "The query provided was empty"),
    ],
)
def test_syntax_faults(text: str, detail: str) -> None:
    err = fault(text)
    assert (err.code, err.message, err.detail) == ("4000", "Error parsing query", f"QueryParserError: {detail}")


def _not_filterable(entity: str, prop: str) -> bool:
    return prop not in ("PrimaryEmailAddr", "CustomerTypeRef")


def _exists(entity: str, prop: str) -> bool:
    return prop != "NoSuchField"


def test_property_not_queryable() -> None:
    err = fault("SELECT * FROM Vendor WHERE PrimaryEmailAddr = 'a@b.com'", queryable=_not_filterable)
    assert (err.code, err.message, err.detail) == (
        "4001", "Invalid query", "QueryValidationError: property 'PrimaryEmailAddr' is not queryable")
    err = fault("SELECT * FROM Customer WHERE CustomerTypeRef.value = '1'", queryable=_not_filterable)
    assert err.detail == "QueryValidationError: property 'CustomerTypeRef' is not queryable"
    # Ordering is not filtering, and other properties pass.
    q = parse_query("SELECT * FROM Vendor WHERE Id = '1' ORDERBY PrimaryEmailAddr", ENTITIES, _not_filterable)
    assert q.entity == "Vendor"


def test_property_not_found() -> None:
    err = fault("SELECT * FROM Purchase WHERE NoSuchField = '1'", known_property=_exists)
    assert (err.code, err.message, err.detail) == (
        "4001", "Invalid query", "QueryValidationError: Property NoSuchField not found for Entity Purchase")
    assert fault("SELECT * FROM Purchase ORDERBY NoSuchField", known_property=_exists).code == "4001"


def test_query_error_carries_its_fields() -> None:
    err = QueryError("4000", "Error parsing query", "QueryParserError: x")
    assert (err.code, err.message, err.detail) == ("4000", "Error parsing query", "QueryParserError: x")
    assert str(err) == "4000 Error parsing query: QueryParserError: x"


def test_named_columns_are_accepted_and_checked():
    # python-quickbooks sends `SELECT *, Sku FROM Item`, which Intuit answers; columns must exist.
    entities = {"Item", "Invoice"}
    assert parse_query("SELECT *, Sku FROM Item MAXRESULTS 50", entities).entity == "Item"
    assert parse_query("select Id, SyncToken from Invoice", entities).entity == "Invoice"
    with pytest.raises(QueryError) as error:
        parse_query("SELECT Id, Nonsense FROM Invoice", entities, known_property=lambda e, p: p in {"Id"})
    assert error.value.detail == "QueryValidationError: Property Nonsense not found for Entity Invoice"


def test_conditions_reach_through_lists():
    query = parse_query("select * from Attachable where AttachableRef.EntityRef.Type = 'invoice' "
                        "and AttachableRef.EntityRef.value = '42'", {"Attachable"})
    linked = {"Id": "1", "AttachableRef": [{"EntityRef": {"type": "Customer", "value": "7"}},
                                           {"EntityRef": {"type": "Invoice", "value": "42"}}]}
    other = {"Id": "2", "AttachableRef": [{"EntityRef": {"type": "Invoice", "value": "43"}}]}
    bare = {"Id": "3"}
    assert [r["Id"] for r in select(query, [linked, other, bare])[0]] == ["1"]
