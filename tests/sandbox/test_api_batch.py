"""POST /batch over plain HTTP: mixed operations, per-item faults keyed by bId, the 30-item limit and the
batch throttle. Shapes follow the real recording summarised in the README (qbo_api batch/basic.yml).
"""

from __future__ import annotations

import re

import httpx
import pytest

from qbflow.sandbox.app import Sandbox
from tests.sandbox.wire import fault_of

pytestmark = pytest.mark.asyncio

ENVELOPE_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[-+]\d\d:\d\d$")
NOT_FOUND_DETAIL = ("Object Not Found : Something you're trying to use has been made inactive. "
                    "Check the fields with accounts, customers, items, vendors or employees.")
STALE_DETAIL = ("Stale Object Error : You and Sandbox User were working on this at the same time. "
                "Sandbox User finished before you did, so your work was not saved.")


def line(amount: float) -> list[dict]:
    return [{"Amount": amount, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {"ItemRef": {"value": "1"}}}]


async def create(http, api, entity: str, body: dict) -> dict:
    response = await http.post(api(entity.lower()), json=body)
    assert response.status_code == 200, response.text
    return response.json()[entity]


async def batch(http, api, items: list[dict]) -> list[dict]:
    response = await http.post(api("batch"), json={"BatchItemRequest": items})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"BatchItemResponse", "time"}
    assert ENVELOPE_TIME.match(body["time"])
    return body["BatchItemResponse"]




async def count(http, api, entity: str) -> int:
    response = await http.get(api("query"), params={"query": f"SELECT COUNT(*) FROM {entity}"})
    return response.json()["QueryResponse"]["totalCount"]


async def test_mixed_batch_answers_each_item_by_bid(http, api):
    doomed = await create(http, api, "Invoice", {"CustomerRef": {"value": "2"}, "Line": line(30)})
    voidable = await create(http, api, "Invoice", {"CustomerRef": {"value": "3"}, "Line": line(45)})
    customer = await create(http, api, "Customer", {"DisplayName": "Batch Target", "Notes": "before"})
    answers = await batch(http, api, [
        {"bId": "bid1", "operation": "create", "Vendor": {"DisplayName": "Batch Vendor Ltd"}},
        {"bId": "bid2", "operation": "delete", "Invoice": {"Id": doomed["Id"], "SyncToken": "0"}},
        {"bId": "bid3", "operation": "update", "Customer": {"Id": customer["Id"], "SyncToken": "0", "sparse": True,
                                                            "Notes": "from the batch"}},
        {"bId": "bid4", "Query": "select * from Vendor where DisplayName = 'Hicks Hardware'"},
        {"bId": "bid5", "operation": "update", "Customer": {"Id": "1", "SyncToken": "9", "sparse": True,
                                                            "Notes": "stale"}},
        {"bId": "bid6", "operation": "delete", "Invoice": {"Id": "999999", "SyncToken": "0"}},
        {"bId": "bid7", "Query": "select * from Custmoer"},
        {"bId": "bid8", "operation": "create", "Invoice": {"CustomerRef": {"value": "1"}}},
        {"bId": "bid9", "operation": "void", "Invoice": {"Id": voidable["Id"], "SyncToken": "0"}},
        {"bId": "bid10", "Query": "select count(*) from Customer"},
    ])
    assert [a["bId"] for a in answers] == [f"bid{n}" for n in range(1, 11)]
    keys = [set(a) - {"bId"} for a in answers]
    assert keys == [{"Vendor"}, {"Invoice"}, {"Customer"}, {"QueryResponse"}, {"Fault"}, {"Fault"}, {"Fault"},
                    {"Fault"}, {"Invoice"}, {"QueryResponse"}]
    created, deleted, updated, queried, stale, missing, bad_query, incomplete, voided, counted = answers

    vendor = created["Vendor"]
    assert vendor["DisplayName"] == "Batch Vendor Ltd" and vendor["SyncToken"] == "0" and vendor["Id"].isdigit()
    assert deleted["Invoice"] == {"domain": "QBO", "status": "Deleted", "Id": doomed["Id"]}
    assert updated["Customer"]["Notes"] == "from the batch" and updated["Customer"]["SyncToken"] == "1"
    assert queried["QueryResponse"]["startPosition"] == 1 and queried["QueryResponse"]["maxResults"] == 1
    assert [v["DisplayName"] for v in queried["QueryResponse"]["Vendor"]] == ["Hicks Hardware"]
    assert stale["Fault"] == {"Error": [{"Message": "Stale Object Error", "Detail": STALE_DETAIL, "code": "5010",
                                         "element": ""}], "type": "ValidationFault"}
    assert missing["Fault"] == {"Error": [{"Message": "Object Not Found", "Detail": NOT_FOUND_DETAIL, "code": "610",
                                           "element": ""}], "type": "ValidationFault"}
    assert bad_query["Fault"]["Error"][0]["code"] == "4001"
    assert bad_query["Fault"]["Error"][0]["Detail"] == "QueryValidationError: invalid context declaration: Custmoer"
    assert incomplete["Fault"]["Error"][0]["code"] == "2020"
    assert incomplete["Fault"]["Error"][0]["Detail"] == "Required parameter Line is missing in the request"
    assert voided["Invoice"]["TotalAmt"] == 0 and voided["Invoice"]["PrivateNote"] == "Voided"
    assert counted["QueryResponse"] == {"totalCount": 30}  # the sample company's 29 customers and Batch Target

    # The writes really happened; the failed items changed nothing.
    assert (await http.get(api(f"vendor/{vendor['Id']}"))).json()["Vendor"] == vendor
    gone = await http.get(api(f"invoice/{doomed['Id']}"))
    assert fault_of(gone)["code"] == "610"
    assert (await http.get(api("customer/1"))).json()["Customer"]["SyncToken"] == "0"


async def test_batch_of_30_items_is_accepted(http, api):
    before = await count(http, api, "Customer")
    answers = await batch(http, api, [{"bId": f"c{n}", "operation": "create",
                                       "Customer": {"DisplayName": f"Thirty {n:02d}"}} for n in range(30)])
    assert len(answers) == 30
    assert [a["bId"] for a in answers] == [f"c{n}" for n in range(30)]
    assert [a["Customer"]["DisplayName"] for a in answers] == [f"Thirty {n:02d}" for n in range(30)]
    assert await count(http, api, "Customer") == before + 30


async def test_batch_of_31_items_is_refused_whole(http, api):
    before = await count(http, api, "Customer")
    response = await http.post(api("batch"), json={"BatchItemRequest": [
        {"bId": f"c{n}", "operation": "create", "Customer": {"DisplayName": f"Too Many {n:02d}"}}
        for n in range(31)]})
    assert fault_of(response) == {
        "Message": "Request has invalid or unsupported property",
        "Detail": "Number of items in BatchItemRequest (31) exceeds the maximum of 30",
        "code": "2010", "element": "BatchItemRequest", "type": "ValidationFault"}
    assert await count(http, api, "Customer") == before


@pytest.mark.parametrize("body", [{"BatchItemRequest": []}, {}, {"BatchItemRequest": "nope"}, []])
async def test_empty_or_shapeless_batch_is_refused(http, api, body):
    response = await http.post(api("batch"), json=body)
    assert fault_of(response) == {
        "Message": "Required param missing, need to supply the required value for the API",
        "Detail": "Required parameter BatchItemRequest is missing in the request", "code": "2020",
        "element": "BatchItemRequest", "type": "ValidationFault"}


async def test_unreadable_batch_bodies(http, api):
    empty = await http.post(api("batch"), content=b"", headers={"Content-Type": "application/json"})
    assert fault_of(empty)["code"] == "2310"
    broken = await http.post(api("batch"), content=b'{"BatchItemRequest": [', headers={
        "Content-Type": "application/json"})
    assert fault_of(broken)["code"] == "2010"


async def test_bad_items_fault_alone(http, api):
    answers = await batch(http, api, [
        {"bId": "m1", "operation": "merge", "Customer": {"Id": "1", "SyncToken": "0"}},
        {"bId": "m2", "operation": "create"},
        {"bId": "m3", "operation": "create", "Customer": {"DisplayName": "Amy's Bird Sanctuary"}},
        {"bId": "m4", "operation": "delete", "Customer": {"Id": "2", "SyncToken": "0"}},
        {"bId": "m5", "operation": "create", "Customer": {"DisplayName": "Still Fine"}},
    ])
    assert [a["bId"] for a in answers] == ["m1", "m2", "m3", "m4", "m5"]
    errors = [a["Fault"]["Error"][0] for a in answers[:4]]
    assert errors[0]["code"] == "2010" and errors[0]["Detail"] == "Unsupported batch operation: merge"
    assert errors[1]["code"] == "2020"
    assert errors[2]["code"] == "6240" and errors[2]["Message"] == "Duplicate Name Exists Error"
    assert errors[3]["code"] == "500"  # name lists cannot be deleted
    assert answers[4]["Customer"]["DisplayName"] == "Still Fine"


async def test_requestid_replays_a_batch(http, api):
    items = [{"bId": "r1", "operation": "create", "Customer": {"DisplayName": "Once Only"}}]
    first = await http.post(api("batch"), params={"requestid": "batch-req-1"}, json={"BatchItemRequest": items})
    again = await http.post(api("batch"), params={"requestid": "batch-req-1"}, json={"BatchItemRequest": items})
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert "Fault" not in again.json()["BatchItemResponse"][0]
    result = await http.get(api("query"), params={"query": "SELECT COUNT(*) FROM Customer WHERE DisplayName = "
                                                           "'Once Only'"})
    assert result.json()["QueryResponse"] == {"totalCount": 1}


async def test_the_41st_batch_in_a_minute_is_throttled():
    sandbox = Sandbox(rate_limit=True)
    realm = sandbox.realms[0]
    token = sandbox.oauth.issue_tokens_for_tests(sandbox.client_id, realm)["access_token"]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox), base_url="http://sandbox.test",
                                 headers={"Authorization": f"Bearer {token}", "Accept": "application/json"}) as http:
        url = f"/v3/company/{realm}/batch"
        for n in range(40):
            response = await http.post(url, json={"BatchItemRequest": [
                {"bId": "b1", "operation": "create", "Customer": {"DisplayName": f"Throttle {n:02d}"}}]})
            assert response.status_code == 200, (n, response.text)
        response = await http.post(url, json={"BatchItemRequest": [
            {"bId": "b1", "operation": "create", "Customer": {"DisplayName": "Throttle 40"}}]})
        assert response.status_code == 429
        assert response.headers["intuit_tid"]
        body = response.json()
        assert set(body) == {"Fault", "time"}
        assert body["Fault"] == {"Error": [{
            "Message": "message=ThrottleExceeded; errorCode=003001; statusCode=429",
            "Detail": "The request limit was reached.  Try again later", "code": "3001"}], "type": "SERVICE"}
        # The refused batch did nothing, and ordinary requests still pass: they have their own limit.
        counted = await http.get(f"/v3/company/{realm}/query",
                                 params={"query": "SELECT COUNT(*) FROM Customer WHERE DisplayName LIKE 'Throttle%'"})
        assert counted.status_code == 200
        assert counted.json()["QueryResponse"] == {"totalCount": 40}
        assert (await http.post(url, json={"BatchItemRequest": [{"bId": "q", "Query": "select * from Term"}]})
                ).status_code == 429
        stats = sandbox.limiter.stats(realm)
        assert stats["batches_last_minute"] == 40
