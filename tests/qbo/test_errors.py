"""Faults become typed errors: the shapes QBO sends (unit), and every class from a real sandbox answer."""

from __future__ import annotations

import httpx
import pytest

from qbflow.errors import QBFlowError
from qbflow.qbo import (
    AuthError,
    DuplicateName,
    NeedsReconnect,
    NotFound,
    QBOError,
    RateLimited,
    RetryPolicy,
    StaleObject,
    StaticTokens,
    Transient,
    Validation,
    error_from_response,
)
from qbflow.qbo.errors import FAULT_CODES, class_for
from qbflow.sandbox.app import Sandbox
from qbflow.sandbox.limits import LimitPolicy
from tests.support.clients import SALES_LINE, SandboxTokens, make_client

PATH = "/v3/company/123/invoice"


def answer(status: int, body: bytes | str, content_type: str = "application/json", **headers: str) -> httpx.Response:
    request = httpx.Request("POST", f"https://quickbooks.api.intuit.com{PATH}?requestid=abc&minorversion=75",
                            headers={"Authorization": "Bearer SECRET-TOKEN-VALUE"})
    content = body.encode() if isinstance(body, str) else body
    return httpx.Response(status, content=content, headers={"Content-Type": content_type, "intuit_tid": "1-abc",
                                                            **headers}, request=request)


# --- the shapes on the wire ------------------------------------------------------------------------------
def test_fault_json_keeps_intuits_fields() -> None:
    error = error_from_response(answer(400, '{"Fault":{"Error":[{"Message":"Duplicate Name Exists Error",'
                                            '"Detail":"The name supplied already exists. : null","code":"6240",'
                                            '"element":"DisplayName"}],"type":"ValidationFault"},"time":"x"}'))
    assert isinstance(error, DuplicateName) and isinstance(error, QBOError) and isinstance(error, QBFlowError)
    assert (error.code, error.message, error.element) == ("6240", "Duplicate Name Exists Error", "DisplayName")
    assert error.detail == "The name supplied already exists. : null"
    assert error.intuit_tid == "1-abc" and error.status_code == 400 and error.fault_type == "ValidationFault"
    text = str(error)
    assert "6240" in text and "DisplayName" in text and PATH in text and "1-abc" in text
    assert "SECRET" not in text and "requestid" not in text


def test_lower_case_401_body_is_an_auth_error_without_the_token() -> None:
    body = ('{"warnings":null,"fault":{"error":[{"message":"message=AuthenticationFailed; errorCode=003200; '
            'statusCode=401","detail":"Token expired: AB0123456789...","code":"3200","element":null}],'
            '"type":"AUTHENTICATION"},"time":1601391072830}')
    error = error_from_response(answer(401, body), secrets=["AB0123456789abcdefghijklmnop"])
    assert type(error) is AuthError and error.code == "3200" and error.fault_type == "AUTHENTICATION"
    assert "AB0123" not in str(error) and "AB0123" not in repr(error) and "[redacted]" in error.detail


def test_throttling_is_rate_limited_even_with_an_old_403() -> None:
    body = '{"Fault":{"Error":[{"Message":"message=ThrottleExceeded","code":"3001"}],"type":"SERVICE"}}'
    assert isinstance(error_from_response(answer(403, body)), RateLimited)


def test_403_authorization_failed() -> None:
    body = ('{"fault":{"error":[{"message":"message=AuthorizationFailed; errorCode=003100; statusCode=403",'
            '"detail":"Token not valid for this company","code":"3100"}],"type":"SERVICE"}}')
    assert type(error_from_response(answer(403, body))) is AuthError


def test_xml_throttling_body_with_retry_after() -> None:
    body = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?><IntuitResponse '
            'xmlns="http://schema.intuit.com/finance/v3" time="2016-03-04T11:23:42.542-08:00">'
            '<Fault type="SERVICE"><Error code="3001"><Message>message=ThrottleExceeded; errorCode=003001; '
            'statusCode=429</Message><Detail>The request limit was reached.  Try again later</Detail></Error>'
            '</Fault></IntuitResponse>')
    error = error_from_response(answer(429, body, "application/xml", **{"Retry-After": "17"}))
    assert isinstance(error, RateLimited) and error.code == "3001" and error.retry_after == 17.0
    assert error.detail == "The request limit was reached.  Try again later"
    assert error.fault_type == "SERVICE"


def test_xml_with_the_wrong_content_type_and_a_date_retry_after() -> None:
    body = ('<IntuitResponse><Fault type="SERVICE"><Error code="3001"><Message>m</Message></Error></Fault>'
            '</IntuitResponse>')
    error = error_from_response(answer(429, body, "application/json",
                                       **{"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}))
    assert isinstance(error, RateLimited) and error.code == "3001" and error.retry_after == 0.0


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_non_json_gateway_answers_are_transient(status: int) -> None:
    error = error_from_response(answer(status, "<html><body>Service Unavailable</body></html>", "text/html"))
    assert isinstance(error, Transient) and error.status_code == status and error.code is None
    assert "Service Unavailable" in str(error)


def test_system_fault_is_transient_and_an_unknown_fault_keeps_the_status() -> None:
    body = ('{"Fault":{"Error":[{"Message":"An application error has occurred","Detail":"System Failure Error",'
            '"code":"10000"}],"type":"SystemFault"}}')
    assert isinstance(error_from_response(answer(400, body)), Transient)
    assert isinstance(error_from_response(answer(418, "")), Validation)
    assert isinstance(error_from_response(answer(400, "not json at all")), Validation)


@pytest.mark.parametrize(("code", "cls"), [
    ("100", AuthError), ("120", AuthError), ("3100", AuthError), ("3200", AuthError), ("610", NotFound),
    ("5010", StaleObject), ("6240", DuplicateName), ("3001", RateLimited), ("10000", Transient),
    ("500", Validation), ("2010", Validation), ("2020", Validation), ("2030", Validation), ("2300", Validation),
    ("2500", Validation), ("4000", Validation), ("4001", Validation), ("6000", Validation), ("6140", Validation),
    ("6210", Validation), ("6420", Validation),
])
def test_the_fault_code_table(code: str, cls: type) -> None:
    assert class_for(code, 400) is cls
    assert any(int(code) in codes for codes, _ in FAULT_CODES)


def test_needs_reconnect_names_the_connection_and_the_fix() -> None:
    error = NeedsReconnect("acme-books", detail="Incorrect or invalid refresh token")
    assert isinstance(error, AuthError)
    assert error.connection == "acme-books" and error.command == "qbflow connect acme-books"
    assert "qbflow connect acme-books" in str(error) and "'acme-books'" in str(error)


# --- from real sandbox answers ---------------------------------------------------------------------------
async def test_not_found_610(client) -> None:
    with pytest.raises(NotFound) as caught:
        await client.get("Invoice", "999999")
    assert caught.value.code == "610" and caught.value.status_code == 400 and caught.value.intuit_tid


async def test_stale_object_5010(client) -> None:
    customer = await client.create("Customer", {"DisplayName": "Stale Co"})
    await client.update("Customer", {"Id": customer["Id"], "SyncToken": "0", "Notes": "first"})
    with pytest.raises(StaleObject) as caught:
        await client.update("Customer", {"Id": customer["Id"], "SyncToken": "0", "Notes": "second"})
    assert caught.value.code == "5010"


async def test_duplicate_name_6240(client) -> None:
    await client.create("Customer", {"DisplayName": "Twin Peaks Ltd"})
    with pytest.raises(DuplicateName) as caught:
        await client.create("Vendor", {"DisplayName": "Twin Peaks Ltd"})
    assert caught.value.code == "6240"


async def test_validation_2020_2500_4001(client) -> None:
    with pytest.raises(Validation) as missing:
        await client.create("Invoice", {"Line": SALES_LINE})
    assert missing.value.code == "2020" and missing.value.element == "CustomerRef"
    with pytest.raises(Validation) as bad_ref:
        await client.create("Invoice", {"CustomerRef": {"value": "987654"}, "Line": SALES_LINE})
    assert bad_ref.value.code == "2500"
    with pytest.raises(Validation) as bad_query:
        await client.query("SELECT * FROM Customer MAXRESULTS 1500")
    assert bad_query.value.code == "4001" and "1500" in bad_query.value.detail


async def test_rate_limited_429_from_the_sandbox_throttle() -> None:
    sandbox = Sandbox(rate_limit=True)
    sandbox.limiter.policy = LimitPolicy(per_minute=3, window=60.0)
    tokens = StaticTokens(sandbox.oauth.issue_tokens_for_tests(sandbox.client_id, sandbox.realms[0])["access_token"])
    async with make_client(sandbox, sandbox.realms[0], tokens, pacer=False, retry=RetryPolicy(attempts=1)) as qbo:
        for _ in range(3):
            await qbo.company_info()
        with pytest.raises(RateLimited) as caught:
            await qbo.company_info()
    assert caught.value.code == "3001" and caught.value.status_code == 429


@pytest.mark.parametrize(("kind", "status", "code"), [("503", 503, None), ("500", 500, "10000"),
                                                      ("reset", None, None)])
async def test_transient_from_injected_faults(sandbox, realm, token, kind, status, code) -> None:
    sandbox.faults.rate, sandbox.faults.kinds = 1.0, (kind,)
    async with make_client(sandbox, realm, StaticTokens(token)) as qbo:
        with pytest.raises(Transient) as caught:
            await qbo.get("Customer", "1")
    assert caught.value.status_code == status and caught.value.code == code
    assert sum(sandbox.faults.injected.values()) == 8  # every attempt of the retry policy was made


async def test_auth_error_for_a_garbage_token(sandbox, realm, transport) -> None:
    async with make_client(sandbox, realm, StaticTokens("garbage-token-1234567890"), transport=transport) as qbo:
        with pytest.raises(AuthError) as caught:
            await qbo.company_info()
    assert caught.value.code == "3200" and caught.value.status_code == 401
    assert len(transport.requests) == 1  # a static token has nothing to refresh to: no second try


async def test_auth_error_403_for_a_token_without_the_accounting_scope(sandbox, realm) -> None:
    openid_only = sandbox.oauth.issue_tokens_for_tests(sandbox.client_id, realm, scopes=["openid"])["access_token"]
    async with make_client(sandbox, realm, StaticTokens(openid_only)) as qbo:
        with pytest.raises(AuthError) as caught:
            await qbo.company_info()
    assert caught.value.code == "3100" and caught.value.status_code == 403


async def test_revoked_connection_needs_reconnect(sandbox, realm) -> None:
    tokens = SandboxTokens(sandbox, realm, connection="acme-books")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox), base_url="http://sandbox.test") as http:
        response = await http.post("/v2/oauth2/tokens/revoke", json={"token": tokens.refresh_token},
                                   auth=(sandbox.client_id, sandbox.client_secret))
        assert response.status_code == 200
    async with make_client(sandbox, realm, tokens) as qbo:
        with pytest.raises(NeedsReconnect) as caught:
            await qbo.company_info()
    assert "qbflow connect acme-books" in str(caught.value)
    assert tokens.rotate_calls == 1
