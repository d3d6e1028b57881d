"""Queries narrowed through an index answer exactly what a full scan answers."""

from __future__ import annotations

import pytest

from qbflow.catalog import ENTITIES
from qbflow.sandbox.app import Sandbox
from qbflow.sandbox.query import parse_query, select


@pytest.mark.parametrize("text", [
    "select * from Invoice where CustomerRef = '3'",
    "select * from Invoice where CustomerRef = '3' and TotalAmt > '100'",
    "select count(*) from Invoice where CustomerRef = '2'",
    "select * from Invoice where CustomerRef IN ('2', '3')",
    "select * from Bill where VendorRef = '48' ORDERBY TotalAmt DESC",
    # Invoice 3 is the sample company's, 30 one made below, 13 the sample's credit memo (not an invoice).
    "select * from Invoice where Id IN ('3', '30', '13', '9999', '3')",
    "select * from Customer where Id = '3'",
    "select * from Invoice where CustomerRef = '3' STARTPOSITION 2 MAXRESULTS 2",
])
def test_indexed_answers_equal_a_full_scan(text: str):
    sandbox = Sandbox(rate_limit=False)
    realm = sandbox.realms[0]
    line = [{"Amount": 40, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {"ItemRef": {"value": "2"}}}]
    for n in range(12):
        sandbox.books.create(realm, "Invoice", {"CustomerRef": {"value": str(2 + n % 3)},
                                                "Line": [{**line[0], "Amount": 40 + 30 * n}]})
    expense = {"DetailType": "AccountBasedExpenseLineDetail",
               "AccountBasedExpenseLineDetail": {"AccountRef": {"value": "77"}}}
    for amount in (60, 250, 35):  # more bills from PG&E (48), so the order is seen
        sandbox.books.create(realm, "Bill", {"VendorRef": {"value": "48"}, "Line": [{**expense, "Amount": amount}]})
    query = parse_query(text, ENTITIES.keys())
    page, total = select(query, sandbox.books.records(realm, query.entity))
    expected = {"totalCount": total} if query.count else (
        {query.entity: page, "startPosition": query.start_position, "maxResults": len(page)} if page else {})
    assert sandbox.query(realm, text) == expected
    assert total > 0
