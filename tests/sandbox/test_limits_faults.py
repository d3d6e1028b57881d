"""Throttles, injected faults, authentication of API calls, the admin API and persistence."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from qbflow.sandbox.app import Sandbox
from qbflow.sandbox.limits import LimitPolicy

pytestmark = pytest.mark.asyncio


def client_for(sandbox: Sandbox, token: str | None) -> httpx.AsyncClient:
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox), base_url="http://sandbox.test",
                             headers=headers)


def token_for(sandbox: Sandbox, realm: str) -> str:
    return sandbox.oauth.issue_tokens_for_tests(sandbox.client_id, realm)["access_token"]


async def count_customers(http: httpx.AsyncClient, realm: str, name: str) -> int:
    response = await http.get(f"/v3/company/{realm}/query",
                              params={"query": f"select count(*) from Customer where DisplayName = '{name}'"})
    return response.json()["QueryResponse"]["totalCount"]


# --- authentication of API calls -------------------------------------------------------------------------
async def test_missing_token_is_intuits_lower_case_401():
    sandbox = Sandbox(rate_limit=False)
    realm = sandbox.realms[0]
    async with client_for(sandbox, None) as http:
        response = await http.get(f"/v3/company/{realm}/customer/1")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="Intuit", error="invalid_token"'
    body = response.json()
    error = body["fault"]["error"][0]
    assert error["code"] == "3200"
    assert error["message"] == "message=AuthenticationFailed; errorCode=003200; statusCode=401"
    assert body["fault"]["type"] == "AUTHENTICATION"
    assert body["batchItemResponse"] == [] and body["queryResponse"] is None


async def test_expired_and_foreign_tokens_are_refused():
    sandbox = Sandbox(rate_limit=False, companies=2)
    first, second = sandbox.realms
    token = token_for(sandbox, first)
    async with client_for(sandbox, token) as http:
        assert (await http.get(f"/v3/company/{first}/customer/1")).status_code == 200
        # A token of company A does not open company B.
        other = await http.get(f"/v3/company/{second}/customer/1")
        assert other.status_code == 401
        assert other.json()["fault"]["error"][0]["code"] == "3200"
        sandbox.clock.advance(3601)
        expired = await http.get(f"/v3/company/{first}/customer/1")
        assert expired.status_code == 401
        detail = expired.json()["fault"]["error"][0]["detail"]
        assert detail.startswith("Token expired")
        assert token not in detail


# --- throttles ---------------------------------------------------------------------------------------------
async def test_more_than_500_requests_a_minute_get_429():
    sandbox = Sandbox(rate_limit=True)
    realm = sandbox.realms[0]
    async with client_for(sandbox, token_for(sandbox, realm)) as http:
        for _ in range(500):
            response = await http.get(f"/v3/company/{realm}/customer/1")
            assert response.status_code == 200
        throttled = await http.get(f"/v3/company/{realm}/customer/1")
    assert throttled.status_code == 429
    body = throttled.json()
    assert body["Fault"]["type"] == "SERVICE"
    assert body["Fault"]["Error"][0] == {
        "Message": "message=ThrottleExceeded; errorCode=003001; statusCode=429",
        "Detail": "The request limit was reached.  Try again later", "code": "3001"}
    # The limit is per company: a second company is not affected.
    other = sandbox.books.create_company("Second Co")
    async with client_for(sandbox, token_for(sandbox, other.realm_id)) as http:
        assert (await http.get(f"/v3/company/{other.realm_id}/customer/1")).status_code == 200


async def test_an_eleventh_concurrent_request_gets_429():
    sandbox = Sandbox(rate_limit=True)
    realm = sandbox.realms[0]
    sandbox.faults.rate, sandbox.faults.kinds, sandbox.faults.slow_seconds = 1.0, ("slow",), 0.3
    async with client_for(sandbox, token_for(sandbox, realm)) as http:
        slow = [asyncio.create_task(http.get(f"/v3/company/{realm}/customer/1")) for _ in range(10)]
        while sandbox.limiter.stats(realm)["in_flight"] < 10:
            await asyncio.sleep(0)
        eleventh = await http.get(f"/v3/company/{realm}/customer/1")
        await asyncio.gather(*slow)
    assert eleventh.status_code == 429
    assert eleventh.json()["Fault"]["Error"][0]["code"] == "3001"


async def test_throttles_can_be_turned_off():
    sandbox = Sandbox(rate_limit=False)
    realm = sandbox.realms[0]
    async with client_for(sandbox, token_for(sandbox, realm)) as http:
        statuses = {(await http.get(f"/v3/company/{realm}/customer/1")).status_code for _ in range(520)}
    assert statuses == {200}


async def test_requests_are_counted_per_company_and_the_counts_and_windows_can_start_over():
    """What a benchmark reads at /_sandbox/limits: admitted and throttled requests per company, when the first
    was admitted and the last answered; `reset` empties the counts and the minute's window."""
    sandbox = Sandbox(rate_limit=True, companies=2)
    realm, other = sandbox.realms
    sandbox.limiter.policy = LimitPolicy(per_minute=5)
    async with client_for(sandbox, token_for(sandbox, realm)) as http:
        before = time.time()
        statuses = [(await http.get(f"/v3/company/{realm}/customer/1")).status_code for _ in range(7)]
        after = time.time()
        assert statuses == [200] * 5 + [429] * 2
        shown = (await http.get("/_sandbox/limits")).json()
        counted = shown["realms"][realm]
        assert (counted["requests"], counted["throttled"], counted["requests_last_minute"]) == (5, 2, 5)
        assert before <= counted["first_request_at"] <= counted["last_answer_at"] <= after
        assert shown["realms"][other] == {"requests_last_minute": 0, "batches_last_minute": 0, "in_flight": 0,
                                          "requests": 0, "throttled": 0, "first_request_at": None,
                                          "last_answer_at": None}
        assert shown["refused"] == 2

        reset = (await http.put("/_sandbox/limits", json={"reset": True})).json()
        assert reset["refused"] == 0
        assert reset["realms"][realm]["requests"] == 0 and reset["realms"][realm]["requests_last_minute"] == 0
        # The minute's window is empty again: the next request is admitted, and counted from scratch.
        assert (await http.get(f"/v3/company/{realm}/customer/1")).status_code == 200
        assert (await http.get("/_sandbox/limits")).json()["realms"][realm]["requests"] == 1


async def test_requests_are_counted_with_the_throttles_off():
    sandbox = Sandbox(rate_limit=False)
    realm = sandbox.realms[0]
    async with client_for(sandbox, token_for(sandbox, realm)) as http:
        for _ in range(3):
            await http.get(f"/v3/company/{realm}/customer/1")
        counted = (await http.get("/_sandbox/limits")).json()["realms"][realm]
    assert (counted["requests"], counted["throttled"], counted["requests_last_minute"]) == (3, 0, 0)


# --- injected faults ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("kind", "status"), [("500", 500), ("503", 503), ("429", 429)])
async def test_injected_faults_answer_like_qbo(kind: str, status: int):
    sandbox = Sandbox(rate_limit=False, fault_rate=1.0, fault_seed=7)
    sandbox.faults.kinds = (kind,)
    realm = sandbox.realms[0]
    async with client_for(sandbox, token_for(sandbox, realm)) as http:
        response = await http.get(f"/v3/company/{realm}/customer/1")
    assert response.status_code == status
    if kind == "500":
        assert response.json()["Fault"]["type"] == "SystemFault"
    assert sandbox.faults.injected == {kind: 1}


async def test_injected_reset_breaks_the_connection():
    sandbox = Sandbox(rate_limit=False, fault_rate=1.0)
    sandbox.faults.kinds = ("reset",)
    realm = sandbox.realms[0]
    async with client_for(sandbox, token_for(sandbox, realm)) as http:
        with pytest.raises(ConnectionResetError):
            await http.get(f"/v3/company/{realm}/customer/1")


async def test_a_fault_after_the_write_plus_requestid_retry_creates_once():
    """The case that matters: QBO created the record, the answer was lost, the client retries."""
    sandbox = Sandbox(rate_limit=False, fault_rate=0.5, fault_seed=3)
    sandbox.faults.kinds = ("500", "503")
    realm = sandbox.realms[0]
    created_names = []
    async with client_for(sandbox, token_for(sandbox, realm)) as http:
        for n in range(40):
            name = f"Retry Customer {n}"
            created_names.append(name)
            for _attempt in range(50):
                response = await http.post(f"/v3/company/{realm}/customer", params={"requestid": f"req-{n}"},
                                           json={"DisplayName": name})
                if response.status_code == 200:
                    break
            assert response.json()["Customer"]["DisplayName"] == name
        sandbox.faults.rate = 0
        counts = [await count_customers(http, realm, name) for name in created_names]
    assert counts == [1] * 40
    # Both kinds of failure happened: before the work and after it.
    assert sum(sandbox.faults.injected.values()) >= 10


# --- admin API ---------------------------------------------------------------------------------------------
async def test_admin_api_companies_clock_faults_limits_webhooks():
    sandbox = Sandbox(rate_limit=True)
    async with client_for(sandbox, None) as http:
        companies = (await http.get("/_sandbox/companies")).json()["companies"]
        assert companies == [{"realmId": sandbox.realms[0], "name": "Sandbox Company_US_1"}]
        created = await http.post("/_sandbox/companies", json={"name": "Harbor Books LLC"})
        assert created.status_code == 201
        realm = created.json()["realmId"]
        assert realm in sandbox.realms
        duplicate = await http.post("/_sandbox/companies", json={"realmId": realm})
        assert duplicate.status_code == 400 and realm in duplicate.json()["error"]
        before = sandbox.clock.now()
        moved = await http.post("/_sandbox/clock", json={"advance": 7200})
        assert moved.json()["offset_seconds"] == 7200
        assert (sandbox.clock.now() - before).total_seconds() >= 7200
        backwards = await http.post("/_sandbox/clock", json={"advance": -5})
        assert backwards.status_code == 400
        bad = await http.put("/_sandbox/faults", json={"rate": 2})
        assert bad.status_code == 400 and "rate" in bad.json()["error"]
        bad_kind = await http.put("/_sandbox/faults", json={"kinds": ["explode"]})
        assert bad_kind.status_code == 400 and "explode" in bad_kind.json()["error"]
        ok = await http.put("/_sandbox/faults", json={"rate": 0.25, "kinds": ["429"]})
        assert ok.json()["rate"] == 0.25 and sandbox.faults.kinds == ("429",)
        limits = await http.put("/_sandbox/limits", json={"enabled": False})
        assert limits.json()["enabled"] is False and sandbox.limiter.enabled is False
        hook = await http.put("/_sandbox/webhooks", json={"url": "http://127.0.0.1:9/hook",
                                                          "verifier_token": "verifier-secret-value"})
        assert hook.status_code == 200
        assert "verifier-secret-value" not in hook.text
        assert hook.json()["format"] == "legacy"
        missing = await http.put("/_sandbox/webhooks", json={"url": "http://127.0.0.1:9/hook"})
        assert missing.status_code == 400 and "verifier_token" in missing.json()["error"]
        outbox = await http.get(f"/_sandbox/companies/{realm}/outbox")
        assert outbox.json() == {"emails": []}
        unknown = await http.get("/_sandbox/companies/123/outbox")
        assert unknown.status_code == 404


# --- persistence -------------------------------------------------------------------------------------------
async def test_books_and_connections_survive_a_restart(tmp_path):
    data = str(tmp_path / "books.sqlite3")
    first = Sandbox(data=data, rate_limit=False, client_id="app-1", client_secret="secret-1")
    realm = first.realms[0]
    token = token_for(first, realm)
    async with client_for(first, token) as http:
        created = (await http.post(f"/v3/company/{realm}/customer", json={"DisplayName": "Kept Across Restarts"}))
        customer = created.json()["Customer"]
        invoice = (await http.post(f"/v3/company/{realm}/invoice", json={
            "CustomerRef": {"value": customer["Id"]},
            "Line": [{"Amount": 12, "DetailType": "SalesItemLineDetail",
                      "SalesItemLineDetail": {"ItemRef": {"value": "1"}}}]})).json()["Invoice"]
        await http.post(f"/v3/company/{realm}/invoice", params={"operation": "delete"},
                        json={"Id": invoice["Id"], "SyncToken": "0"})
    first.storage.close()

    second = Sandbox(data=data, rate_limit=False, client_id="app-1", client_secret="secret-1")
    assert second.realms == [realm]
    async with client_for(second, token) as http:
        again = await http.get(f"/v3/company/{realm}/customer/{customer['Id']}")
        assert again.status_code == 200
        assert again.json()["Customer"] == customer
        # Sequences continue where they were; deleted stays deleted.
        newer = (await http.post(f"/v3/company/{realm}/customer", json={"DisplayName": "After Restart"}))
        assert int(newer.json()["Customer"]["Id"]) == int(customer["Id"]) + 1
        gone = await http.get(f"/v3/company/{realm}/invoice/{invoice['Id']}")
        assert gone.json()["Fault"]["Error"][0]["code"] == "610"
    second.storage.close()
    # Nothing secret is kept in clear in the sandbox's file: only hashes of tokens.
    assert token.encode() not in (tmp_path / "books.sqlite3").read_bytes()


async def test_slow_answers_are_right_but_late_and_requestid_makes_the_retry_safe():
    sandbox = Sandbox(rate_limit=False, fault_rate=1.0, fault_seed=11)
    sandbox.faults.kinds, sandbox.faults.slow_seconds = ("slow",), 0.2
    realm = sandbox.realms[0]
    async with client_for(sandbox, token_for(sandbox, realm)) as http:
        slow = await http.get(f"/v3/company/{realm}/customer/1")
        assert slow.status_code == 200 and slow.json()["Customer"]["Id"] == "1"
        for n in range(6):
            name = f"Impatient Client {n}"
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(http.post(f"/v3/company/{realm}/customer", params={"requestid": f"slow-{n}"},
                                                 json={"DisplayName": name}), timeout=0.05)
        sandbox.faults.rate = 0
        for n in range(6):
            name = f"Impatient Client {n}"
            retry = await http.post(f"/v3/company/{realm}/customer", params={"requestid": f"slow-{n}"},
                                    json={"DisplayName": name})
            assert retry.status_code == 200
            assert await count_customers(http, realm, name) == 1


async def test_latency_is_added_to_every_answer():
    sandbox = Sandbox(rate_limit=False)
    realm = sandbox.realms[0]
    async with client_for(sandbox, None) as admin:
        assert (await admin.put("/_sandbox/faults", json={"latency": -1})).status_code == 400
        assert (await admin.put("/_sandbox/faults", json={"latency": 0.05})).json()["latency"] == 0.05
    async with client_for(sandbox, token_for(sandbox, realm)) as http:
        loop = asyncio.get_running_loop()
        started = loop.time()
        response = await http.get(f"/v3/company/{realm}/customer/1")
        assert response.status_code == 200
        assert loop.time() - started >= 0.05


async def test_a_retry_racing_the_first_request_gets_its_answer():
    """Two requests with one requestid in flight together: one write, the same answer twice."""
    sandbox = Sandbox(rate_limit=False)
    realm = sandbox.realms[0]
    async def slow_body():
        # The body arrives in two parts, so each request is suspended mid-read as on a real network.
        yield b'{"DisplayName": '
        await asyncio.sleep(0.01)
        yield b'"Raced Customer"}'

    async with client_for(sandbox, token_for(sandbox, realm)) as http:
        answers = await asyncio.gather(*(
            http.post(f"/v3/company/{realm}/customer", params={"requestid": "race-1"}, content=slow_body(),
                      headers={"Content-Type": "application/json"}) for _ in range(5)))
        assert {a.status_code for a in answers} == {200}
        assert len({a.json()["Customer"]["Id"] for a in answers}) == 1
        assert await count_customers(http, realm, "Raced Customer") == 1
