"""The query endpoint (GET and POST /query) and change data capture (GET /cdc), over plain HTTP.

Envelopes and fault texts follow the real recordings in ../shared/qbo/recordings (all/alt_select.yml,
get/display_name.yml, misc/ampersand.yml, error/400.yml) and the README's §2-§3.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from qbflow.sandbox.clock import qbo_datetime
from tests.sandbox.wire import fault_of

pytestmark = pytest.mark.asyncio

ENVELOPE_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[-+]\d\d:\d\d$")
# A new company is Intuit's sample company (docs/sandbox.md): customers Ids 1-29, three of them sub-customers.
SEEDED_CUSTOMERS = 29
SEEDED_INVOICES = 6  # the sample company's invented invoices


async def query(http, api, text: str) -> dict:
    """QueryResponse of a successful GET /query."""
    response = await http.get(api("query"), params={"query": text})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"QueryResponse", "time"}
    assert ENVELOPE_TIME.match(body["time"])
    return body["QueryResponse"]


async def names(http, api, text: str, entity: str = "Customer") -> list[str]:
    return [r.get("DisplayName", r.get("Name")) for r in (await query(http, api, text)).get(entity, [])]


async def create(http, api, entity: str, body: dict) -> dict:
    response = await http.post(api(entity.lower()), json=body)
    assert response.status_code == 200, response.text
    return response.json()[entity]


def advance(sandbox, http, realm: str, seconds: float) -> None:
    """Move the sandbox clock, and give the client a fresh token (access tokens live one hour)."""
    sandbox.clock.advance(seconds)
    token = sandbox.oauth.issue_tokens_for_tests(sandbox.client_id, realm)["access_token"]
    http.headers["Authorization"] = f"Bearer {token}"


def line(amount: float) -> list[dict]:
    return [{"Amount": amount, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {"ItemRef": {"value": "1"}}}]


# --- query: envelope and paging --------------------------------------------------------------------------


async def test_get_query_envelope(http, api):
    response = await http.get(api("query"), params={"query": "SELECT * FROM Customer", "minorversion": "75"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"QueryResponse", "time"}
    result = body["QueryResponse"]
    assert set(result) == {"Customer", "startPosition", "maxResults"}
    assert result["startPosition"] == 1
    assert result["maxResults"] == len(result["Customer"]) == SEEDED_CUSTOMERS
    listed = [c["FullyQualifiedName"] for c in result["Customer"]]
    assert listed == sorted(listed)  # by FullyQualifiedName, code point order
    # A sub-customer follows its parent ("Freeman Sporting Goods:0969 Ocean View Road"), not its DisplayName.
    assert [c["DisplayName"] for c in result["Customer"]][6:9] == ["Freeman Sporting Goods", "0969 Ocean View Road",
                                                                   "55 Twin Lane"]
    first = result["Customer"][0]
    assert first["DisplayName"] == "Amy's Bird Sanctuary"
    assert (first["domain"], first["sparse"], first["Active"]) == ("QBO", False, True)


async def test_post_query_with_application_text_body(http, api):
    """Long queries are POSTed as the raw statement (the Java SDK switches at 200 characters)."""
    text = ("SELECT * FROM Customer WHERE DisplayName IN ('Cool Cars', 'Diego Rodriguez', "
            "'Dukes Basketball Camp', 'Geeta Kalapatapu', 'No Such Customer Anywhere') AND Active = true "
            "ORDERBY DisplayName DESC MAXRESULTS 3")
    assert len(text) > 200
    response = await http.post(api("query"), content=text.encode(), headers={"Content-Type": "application/text"})
    assert response.status_code == 200, response.text
    result = response.json()["QueryResponse"]
    assert [c["DisplayName"] for c in result["Customer"]] == ["Geeta Kalapatapu", "Dukes Basketball Camp",
                                                              "Diego Rodriguez"]
    assert (result["startPosition"], result["maxResults"]) == (1, 3)
    assert (await query(http, api, text)) == result
    # text/plain (what the CDC docs say) works too.
    plain = await http.post(api("query"), content=b"select count(*) from Customer",
                            headers={"Content-Type": "text/plain"})
    assert plain.json()["QueryResponse"] == {"totalCount": SEEDED_CUSTOMERS}


async def test_max_results_is_the_number_returned_and_past_the_end_is_empty(http, api):
    result = await query(http, api, "SELECT * FROM Customer STARTPOSITION 28 MAXRESULTS 3")
    assert (result["startPosition"], result["maxResults"]) == (28, 2)
    assert [c["DisplayName"] for c in result["Customer"]] == ["Wedding Planning by Whitney", "Weiskopf Consulting"]
    # MAXRESULTS may come first (qbo_api does that).
    result = await query(http, api, "SELECT * FROM Customer MAXRESULTS 3 STARTPOSITION 4")
    assert (result["startPosition"], result["maxResults"]) == (4, 3)
    assert [c["DisplayName"] for c in result["Customer"]] == ["Diego Rodriguez", "Dukes Basketball Camp",
                                                              "Dylan Sollfrank"]
    assert await query(http, api, "SELECT * FROM Customer STARTPOSITION 30 MAXRESULTS 3") == {}
    assert await query(http, api, "SELECT * FROM Customer WHERE DisplayName = 'Nobody'") == {}


async def test_count(http, api):
    assert await query(http, api, "SELECT COUNT(*) FROM Customer") == {"totalCount": SEEDED_CUSTOMERS}
    assert await query(http, api, "select count(*) from Customer where Id IN ('1', '2', '99')") == {"totalCount": 2}
    assert await query(http, api, "SELECT COUNT(*) FROM Invoice WHERE TotalAmt > '100000'") == {"totalCount": 0}
    # COUNT ignores paging: it counts every match.
    assert await query(http, api, "SELECT COUNT(*) FROM Customer MAXRESULTS 2") == {"totalCount": SEEDED_CUSTOMERS}


async def test_paging_through_more_than_1000_records(sandbox, realm, http, api):
    for n in range(1100):
        sandbox.books.create(realm, "Customer", {"DisplayName": f"Bulk Customer {n:04d}"})
    total = SEEDED_CUSTOMERS + 1100
    assert await query(http, api, "SELECT COUNT(*) FROM Customer") == {"totalCount": total}
    default_page = await query(http, api, "SELECT * FROM Customer")
    assert default_page["maxResults"] == len(default_page["Customer"]) == 100  # QBO's default page size
    seen: list[str] = []
    pages = []
    start = 1
    while True:
        page = await query(http, api, f"SELECT * FROM Customer STARTPOSITION {start} MAXRESULTS 1000")
        if not page:
            break
        assert page["startPosition"] == start
        assert page["maxResults"] == len(page["Customer"])
        pages.append(page["maxResults"])
        seen += [c["Id"] for c in page["Customer"]]
        start += 1000
    assert pages == [1000, total - 1000]
    assert len(seen) == len(set(seen)) == total  # no duplicates, no gaps
    assert set(seen) == {c["Id"] for c in sandbox.books.records(realm, "Customer")}
    # Pages follow one order across page boundaries.
    by_id = await query(http, api, "SELECT * FROM Customer ORDERBY Id STARTPOSITION 1001 MAXRESULTS 1000")
    every_id = sorted(int(c["Id"]) for c in sandbox.books.records(realm, "Customer"))
    assert [int(c["Id"]) for c in by_id["Customer"]] == every_id[1000:]


async def test_paging_limits_are_4001(http, api):
    cases = {
        "SELECT * FROM Customer MAXRESULTS 1001": "value 1001 is too large. Max allowed value is 1000",
        "SELECT * FROM Customer STARTPOSITION 0": "value 0 is too small. Min allowed value is 1",
        "SELECT * FROM Customer STARTPOSITION 1 MAXRESULTS 0": "value 0 is too small. Min allowed value is 1",
    }
    for text, detail in cases.items():
        response = await http.get(api("query"), params={"query": text})
        assert fault_of(response) == {"Message": "Invalid query", "Detail": f"QueryValidationError: {detail}",
                                      "code": "4001", "type": "ValidationFault"}, text
    page = await query(http, api, "SELECT * FROM Customer MAXRESULTS 1000")
    assert page["maxResults"] == SEEDED_CUSTOMERS


# --- query: faults ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "detail"), [
    ("SELECT * FROM Customer WHERE", 'QueryParserError: Encountered "<EOF>" at line 1, column 28.'),
    ("SELEC * FROM Customer", 'QueryParserError: Encountered " <IDENTIFIER> "SELEC "" at line 1, column 1.'),
    ("SELECT * FROM Customer WHERE DisplayName = 'O'Brien'",
     'QueryParserError: Encountered " <IDENTIFIER> "Brien "" at line 1, column 47.'),
    ("SELECT * FROM Customer WHERE DisplayName = 'open",
     "QueryParserError: Invalid content. Lexical error at line 1, column 48.  "
     "Encountered: <EOF> after : \"\\'open\""),
    ("SELECT * FROM Customer ORDER DisplayName",
     'QueryParserError: Encountered " <IDENTIFIER> "DisplayName "" at line 1, column 30.'),
    ("SELECT * FROM Customer GROUP BY Id",
     'QueryParserError: Encountered " <IDENTIFIER> "GROUP "" at line 1, column 24.'),
    ("  ", "QueryParserError: The query provided was empty"),
])
async def test_syntax_errors_are_4000(http, api, text, detail):
    response = await http.get(api("query"), params={"query": text})
    assert fault_of(response) == {"Message": "Error parsing query", "Detail": detail, "code": "4000",
                                  "type": "ValidationFault"}
    posted = await http.post(api("query"), content=text.encode(), headers={"Content-Type": "application/text"})
    assert fault_of(posted)["Detail"] == detail


async def test_or_is_refused(http, api):
    response = await http.get(api("query"), params={
        "query": "SELECT * FROM Customer WHERE DisplayName = 'Cool Cars' OR DisplayName = 'Mark Cho'"})
    error = fault_of(response)
    assert (error["code"], error["Message"]) == ("4001", "Invalid query")
    assert error["Detail"] == "QueryValidationError: OR operator is not supported"


async def test_unknown_entity_is_an_invalid_context_declaration(http, api):
    response = await http.get(api("query"), params={"query": "SELECT * FROM Custmoer"})
    error = fault_of(response)
    assert {k: error[k] for k in ("Message", "Detail", "code", "type")} == {
        "Message": "Invalid query", "Detail": "QueryValidationError: invalid context declaration: Custmoer",
        "code": "4001", "type": "ValidationFault"}


async def test_query_fault_is_exactly_the_recorded_body(http, api):
    """recordings/error/400.yml: a query fault carries no `element` key at all."""
    response = await http.get(api("query"), params={"query": "SELECT * FROM Custmoer"})
    assert response.status_code == 400
    assert response.json()["Fault"] == {"Error": [{
        "Message": "Invalid query", "Detail": "QueryValidationError: invalid context declaration: Custmoer",
        "code": "4001"}], "type": "ValidationFault"}


async def test_unknown_property_is_refused(http, api):
    response = await http.get(api("query"), params={"query": "SELECT * FROM Customer WHERE DisplyName = 'x'"})
    assert fault_of(response)["Detail"] == "QueryValidationError: Property DisplyName not found for Entity Customer"


async def test_missing_query_text_is_2020(http, api):
    for response in (await http.get(api("query")), await http.get(api("query"), params={"query": ""}),
                     await http.post(api("query"), content=b"", headers={"Content-Type": "application/text"})):
        assert fault_of(response) == {
            "Message": "Required param missing, need to supply the required value for the API",
            "Detail": "Required parameter query is missing in the request", "code": "2020", "element": "query",
            "type": "ValidationFault"}


# --- query: values ---------------------------------------------------------------------------------------


@pytest.fixture
async def hostile(http, api) -> dict[str, str]:
    """Customers whose names need escaping or contain LIKE's wildcard; name -> Id."""
    created = {}
    for name in ["Back\\slash Books", "100% Organic Farm", "100 Percent Organic",
                 "Under_score Supply", "UnderXscore Supply", 'The "Quoted" Deli', "Café Zoë"]:
        created[name] = (await create(http, api, "Customer", {"DisplayName": name}))["Id"]
    return created


async def test_escaped_quotes_and_backslashes(http, api, hostile):
    # recordings/get/display_name.yml: DisplayName = 'Amy\'s Bird Sanctuary' (the sample company's customer 1)
    assert await names(http, api, r"SELECT * FROM Customer WHERE DisplayName = 'Amy\'s Bird Sanctuary'") == \
        ["Amy's Bird Sanctuary"]
    assert await names(http, api, r"SELECT * FROM Customer WHERE DisplayName = 'Back\\slash Books'") == \
        ["Back\\slash Books"]
    assert await names(http, api, """SELECT * FROM Customer WHERE DisplayName = 'The "Quoted" Deli'""") == \
        ['The "Quoted" Deli']
    assert await names(http, api, "SELECT * FROM Customer WHERE DisplayName = 'Café Zoë'") == ["Café Zoë"]
    # An injection attempt is just a string that matches nothing.
    assert await query(http, api, r"SELECT * FROM Customer WHERE DisplayName = 'x\' OR \'1\'=\'1'") == {}
    assert await query(http, api, r"SELECT * FROM Customer WHERE DisplayName = 'Amy\'s Bird Sanctuary\\'") == {}


async def test_ampersand_survives_url_encoding(http, api):
    # recordings/misc/ampersand.yml: the & travels as %26 in the query string (the sample company's vendor).
    text = "SELECT * FROM Vendor WHERE DisplayName = 'Robertson & Associates'"
    assert await names(http, api, text, "Vendor") == ["Robertson & Associates"]
    response = await http.post(api("query"), content=text.encode(), headers={"Content-Type": "application/text"})
    assert [c["DisplayName"] for c in response.json()["QueryResponse"]["Vendor"]] == ["Robertson & Associates"]
    assert await names(http, api, "SELECT * FROM Vendor WHERE DisplayName = 'PG&E'", "Vendor") == ["PG&E"]


async def test_percent_is_literal_with_equals_and_a_wildcard_with_like(http, api, hostile):
    assert await names(http, api, "SELECT * FROM Customer WHERE DisplayName = '100% Organic Farm'") == \
        ["100% Organic Farm"]
    assert await query(http, api, "SELECT * FROM Customer WHERE DisplayName = '100% Farm'") == {}
    assert await names(http, api, "SELECT * FROM Customer WHERE DisplayName LIKE '100%'") == \
        ["100 Percent Organic", "100% Organic Farm"]
    assert await names(http, api, r"SELECT * FROM Customer WHERE DisplayName LIKE '100\% %'") == ["100% Organic Farm"]
    assert await names(http, api, "SELECT * FROM Customer WHERE DisplayName LIKE '%organic%'") == \
        ["100 Percent Organic", "100% Organic Farm"]
    assert await names(http, api, "SELECT * FROM Customer WHERE DisplayName LIKE '%Sanctuary'") == \
        ["Amy's Bird Sanctuary"]
    # Only % is a wildcard: _ is a plain character.
    assert await names(http, api, "SELECT * FROM Customer WHERE DisplayName LIKE 'Under_score%'") == \
        ["Under_score Supply"]
    # String comparison ignores case.
    assert await names(http, api, "SELECT * FROM Customer WHERE DisplayName = 'AMY\\'S BIRD SANCTUARY'") == \
        ["Amy's Bird Sanctuary"]


async def test_metadata_time_filters(http, api, sandbox):
    sandbox.clock.advance(120)
    first = await create(http, api, "Customer", {"DisplayName": "Meta First"})
    sandbox.clock.advance(120)
    second = await create(http, api, "Customer", {"DisplayName": "Meta Second"})
    t1, t2 = first["MetaData"]["LastUpdatedTime"], second["MetaData"]["LastUpdatedTime"]
    assert t1 < t2
    assert await names(http, api, f"SELECT * FROM Customer WHERE MetaData.LastUpdatedTime >= '{t1}'") == \
        ["Meta First", "Meta Second"]
    assert await names(http, api, f"SELECT * FROM Customer WHERE MetaData.LastUpdatedTime > '{t1}'") == \
        ["Meta Second"]
    # The docs' spelling Metadata. works too, and so does the same instant written in UTC.
    as_utc = datetime.fromisoformat(t1).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert await names(http, api, f"SELECT * FROM Customer WHERE Metadata.LastUpdatedTime > '{as_utc}'") == \
        ["Meta Second"]
    assert await names(http, api, f"SELECT * FROM Customer WHERE MetaData.CreateTime >= '{t1}' "
                                  f"AND MetaData.CreateTime < '{t2}'") == ["Meta First"]
    # An update moves LastUpdatedTime but not CreateTime.
    sandbox.clock.advance(120)
    await create(http, api, "Customer", {"Id": first["Id"], "SyncToken": "0", "sparse": True, "Notes": "touched"})
    assert await names(http, api, f"SELECT * FROM Customer WHERE MetaData.LastUpdatedTime > '{t2}'") == \
        ["Meta First"]
    assert await names(http, api, f"SELECT * FROM Customer WHERE MetaData.CreateTime > '{t1}'") == ["Meta Second"]
    assert await names(http, api, f"SELECT * FROM Customer WHERE MetaData.LastUpdatedTime >= '{t1}' "
                                  "ORDERBY MetaData.LastUpdatedTime DESC") == ["Meta First", "Meta Second"]


async def test_order_by_both_spellings(http, api):
    expected = sorted((c["DisplayName"] for c in (await query(http, api, "SELECT * FROM Customer"))["Customer"]),
                      reverse=True)
    assert await names(http, api, "SELECT * FROM Customer ORDER BY DisplayName DESC") == expected
    assert await names(http, api, "SELECT * FROM Customer ORDERBY DisplayName DESC") == expected
    assert await names(http, api, "select * from Customer order by DisplayName desc") == expected
    assert await names(http, api, "SELECT * FROM Customer ORDERBY DisplayName ASC") == expected[::-1]
    # Ids sort as numbers ("10" after "9"), and ORDERBY combines with paging.
    made = [(await create(http, api, "Customer", {"DisplayName": f"Numbered {n}"}))["Id"] for n in range(3)]
    assert int(made[0]) > SEEDED_CUSTOMERS
    async def ids(text: str) -> list[str]:
        return [c["Id"] for c in (await query(http, api, text))["Customer"]]

    assert await ids("SELECT * FROM Customer ORDER BY Id DESC MAXRESULTS 4") == [*made[::-1], str(SEEDED_CUSTOMERS)]
    assert await ids("SELECT * FROM Customer ORDERBY Id STARTPOSITION 8 MAXRESULTS 4") == ["8", "9", "10", "11"]
    assert await ids(f"SELECT * FROM Customer ORDERBY Id STARTPOSITION {SEEDED_CUSTOMERS}") == \
        [str(SEEDED_CUSTOMERS), *made]


async def test_entity_name_is_matched_ignoring_case(http, api):
    result = await query(http, api, "select * from customer maxresults 1")
    assert set(result) == {"Customer", "startPosition", "maxResults"}


async def test_name_lists_hide_inactive_records_unless_asked(http, api):
    customer = await create(http, api, "Customer", {"DisplayName": "Gone Fishing"})
    await create(http, api, "Customer", {"Id": customer["Id"], "SyncToken": "0", "sparse": True, "Active": False})
    everyone = "SELECT * FROM Customer WHERE Active IN (true, false)"
    assert "Gone Fishing (deleted)" not in await names(http, api, "SELECT * FROM Customer")
    assert await query(http, api, "SELECT COUNT(*) FROM Customer") == {"totalCount": SEEDED_CUSTOMERS}
    assert await query(http, api, f"SELECT * FROM Customer WHERE Id = '{customer['Id']}'") == {}
    assert await names(http, api, "SELECT * FROM Customer WHERE Active = false") == ["Gone Fishing (deleted)"]
    assert "Gone Fishing (deleted)" in await names(http, api, everyone)
    assert await query(http, api, everyone.replace("*", "COUNT(*)")) == {"totalCount": SEEDED_CUSTOMERS + 1}
    assert await names(http, api, f"SELECT * FROM Customer WHERE Id = '{customer['Id']}' AND Active IN (true,false)") \
        == ["Gone Fishing (deleted)"]
    # Transactions have no Active flag and are not filtered.
    invoice = await create(http, api, "Invoice", {"CustomerRef": {"value": "2"}, "Line": line(10)})
    assert (await query(http, api, f"SELECT * FROM Invoice WHERE Id = '{invoice['Id']}'"))["maxResults"] == 1


# --- change data capture ---------------------------------------------------------------------------------


async def cdc(http, api, entities: str, since: str) -> list[dict]:
    """The QueryResponse list of a successful CDC call."""
    response = await http.get(api("cdc"), params={"entities": entities, "changedSince": since})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"CDCResponse", "time"}
    assert ENVELOPE_TIME.match(body["time"])
    assert len(body["CDCResponse"]) == 1 and set(body["CDCResponse"][0]) == {"QueryResponse"}
    return body["CDCResponse"][0]["QueryResponse"]


async def test_cdc_reports_creates_updates_and_deletes_per_entity(http, api, sandbox):
    doomed = await create(http, api, "Invoice", {"CustomerRef": {"value": "2"}, "Line": line(40)})
    sandbox.clock.advance(60)
    since = qbo_datetime(sandbox.clock.now())
    sandbox.clock.advance(5)
    made = await create(http, api, "Invoice", {"CustomerRef": {"value": "3"}, "Line": line(25)})
    deleted = await http.post(api("invoice"), params={"operation": "delete"},
                              json={"Id": doomed["Id"], "SyncToken": "0"})
    assert deleted.status_code == 200
    customer = (await http.get(api("customer/4"))).json()["Customer"]
    touched = await create(http, api, "Customer", {"Id": "4", "SyncToken": customer["SyncToken"], "sparse": True,
                                                   "Notes": "changed once"})
    touched = await create(http, api, "Customer", {"Id": "4", "SyncToken": touched["SyncToken"], "sparse": True,
                                                   "Notes": "changed twice"})

    answer = await cdc(http, api, "Invoice,Customer", since)
    assert [set(entry) for entry in answer] == [{"Invoice", "startPosition", "maxResults", "totalCount"},
                                                {"Customer", "startPosition", "maxResults", "totalCount"}]
    invoices, customers = answer
    assert (invoices["startPosition"], invoices["maxResults"], invoices["totalCount"]) == (1, 2, 2)
    by_id = {r["Id"]: r for r in invoices["Invoice"]}
    assert set(by_id) == {made["Id"], doomed["Id"]}
    assert by_id[made["Id"]] == made
    stub = by_id[doomed["Id"]]
    assert stub == {"domain": "QBO", "status": "Deleted", "Id": doomed["Id"],
                    "MetaData": {"LastUpdatedTime": stub["MetaData"]["LastUpdatedTime"]}}
    assert stub["MetaData"]["LastUpdatedTime"] >= since
    # A record changed twice appears once, as it is now.
    assert customers["maxResults"] == 1
    assert customers["Customer"] == [touched]
    assert customers["Customer"][0]["Notes"] == "changed twice"


async def test_cdc_leaves_out_records_older_than_changed_since(http, api, sandbox, realm):
    before = qbo_datetime(sandbox.clock.now() - timedelta(minutes=1))
    seeded = await cdc(http, api, "Invoice", before)
    assert seeded[0]["totalCount"] == SEEDED_INVOICES
    advance(sandbox, http, realm, 10 * 86400)
    since = qbo_datetime(sandbox.clock.now())
    sandbox.clock.advance(1)
    newer = await create(http, api, "Invoice", {"CustomerRef": {"value": "5"}, "Line": line(12)})
    answer = await cdc(http, api, "Invoice", since)
    assert [r["Id"] for r in answer[0]["Invoice"]] == [newer["Id"]]
    # The same moment written in UTC gives the same answer.
    utc = datetime.fromisoformat(since).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert [r["Id"] for r in (await cdc(http, api, "Invoice", utc))[0]["Invoice"]] == [newer["Id"]]
    # Ten days back is still inside the 30-day window and sees the seed too.
    assert (await cdc(http, api, "Invoice", before))[0]["totalCount"] == SEEDED_INVOICES + 1


async def test_cdc_with_nothing_changed(http, api, sandbox):
    sandbox.clock.advance(60)
    since = qbo_datetime(sandbox.clock.now())
    response = await http.get(api("cdc"), params={"entities": "Invoice,Customer", "changedSince": since})
    assert response.status_code == 200
    body = response.json()
    assert body["CDCResponse"] == [{"QueryResponse": [{}]}]
    # An entity without changes is left out when another one has some.
    sandbox.clock.advance(1)
    await create(http, api, "Customer", {"DisplayName": "Only Change"})
    answer = await cdc(http, api, "Invoice,Customer,Vendor", since)
    assert len(answer) == 1 and [c["DisplayName"] for c in answer[0]["Customer"]] == ["Only Change"]


async def test_cdc_refuses_a_look_back_over_30_days(http, api, sandbox, realm):
    since = qbo_datetime(sandbox.clock.now() - timedelta(minutes=1))
    assert (await cdc(http, api, "Customer", since))[0]["totalCount"] == SEEDED_CUSTOMERS
    advance(sandbox, http, realm, 31 * 86400)
    response = await http.get(api("cdc"), params={"entities": "Customer", "changedSince": since})
    assert fault_of(response) == {
        "Message": "Unsupported Operation",
        "Detail": f"Operation cdc with changedSince date {since} which is older than fixed days is not supported.",
        "code": "500", "type": "ValidationFault"}
    # 29 days back is fine, and the month-old seed is no longer reported.
    recent = qbo_datetime(sandbox.clock.now() - timedelta(days=29))
    assert await cdc(http, api, "Customer", recent) == [{}]


@pytest.mark.parametrize("entities", ["TaxCode", "Invoice,TaxCode", "TaxRate", "Custmoer"])
async def test_cdc_refuses_entities_it_does_not_serve(http, api, sandbox, entities):
    since = qbo_datetime(sandbox.clock.now())
    response = await http.get(api("cdc"), params={"entities": entities, "changedSince": since})
    bad = entities.split(",")[-1]
    assert fault_of(response) == {"Message": "Unsupported Operation",
                                  "Detail": f"Operation cdc for entity {bad} is not supported.",
                                  "code": "500", "type": "ValidationFault"}


async def test_cdc_parameters_are_required(http, api, sandbox):
    since = qbo_datetime(sandbox.clock.now())
    missing = {
        "changedSince": {"entities": "Invoice"},
        "entities": {"changedSince": since},
    }
    for name, params in missing.items():
        response = await http.get(api("cdc"), params=params)
        assert fault_of(response) == {
            "Message": "Required param missing, need to supply the required value for the API",
            "Detail": f"Required parameter {name} is missing in the request", "code": "2020", "element": name,
            "type": "ValidationFault"}
    response = await http.get(api("cdc"), params={"entities": " , ", "changedSince": since})
    assert fault_of(response)["Detail"] == "Required parameter entities is missing in the request"
    response = await http.get(api("cdc"), params={"entities": "Invoice", "changedSince": "last tuesday"})
    error = fault_of(response)
    assert (error["code"], error["element"]) == ("2010", "changedSince")
