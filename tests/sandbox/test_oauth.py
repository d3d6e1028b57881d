"""Tests for the sandbox's emulation of Intuit's OAuth 2.0 / OpenID Connect server.

Part 1 drives the ASGI app in-process with httpx for every endpoint and error case. Part 2 runs the app
under uvicorn on a free local port and takes Intuit's own Python client (intuit-oauth's `AuthClient`)
through the whole flow: discovery, consent, code exchange with id_token validation, refresh, userinfo,
revocation.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
import pytest
import uvicorn
from starlette.applications import Starlette

from qbflow.sandbox.clock import Clock
from qbflow.sandbox.oauth import (
    ACCESS_TOKEN_TTL,
    AUTH_CODE_TTL,
    AuthFailure,
    Company,
    OAuthApp,
    OAuthServer,
)
from qbflow.sandbox.storage import Storage

CLIENT_ID = "ABq8sandboxClientIdForTests0123456789"
SECRET = "secret-for-the-registered-app"
REDIRECT = "https://app.example.com/qbo/callback"
# The sandbox's default app: any http(s) redirect URI.
OPEN_ID = "ABdefaultSandboxApp9876543210"
OPEN_SECRET = "secret-for-the-default-app"
ACCOUNTING = "com.intuit.quickbooks.accounting"
REALM_A = "9130350000000001"
REALM_B = "9130350000000002"
BASE = "http://sandbox.test"
BAD_REFRESH = {"error": "invalid_grant", "error_description": "Incorrect or invalid refresh token"}
BAD_CODE = {"error": "invalid_grant", "error_description": "Token invalid"}


def basic(client_id: str = CLIENT_ID, secret: str = SECRET) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def location_query(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    query = parse_qs(urlsplit(response.headers["location"]).query, keep_blank_values=True)
    return {k: v[0] for k, v in query.items()}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def companies() -> list[Company]:
    return [Company(REALM_A, "Acme <Widgets> & Co"), Company(REALM_B, "Beta LLC")]


def make_server(clock: Clock, storage: Storage, companies: list[Company], auto: bool = False) -> OAuthServer:
    return OAuthServer(
        clock=clock,
        storage=storage,
        apps=[OAuthApp(CLIENT_ID, SECRET, [REDIRECT]), OAuthApp(OPEN_ID, OPEN_SECRET, None)],
        companies=lambda: companies,
        auto_approve=auto,
    )


@pytest.fixture
def server(clock: Clock, companies: list[Company]) -> OAuthServer:
    return make_server(clock, Storage(), companies)


@pytest.fixture
async def client(server: OAuthServer) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=Starlette(routes=server.routes()))
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
        yield c


def auth_params(**overrides: str | None) -> dict[str, str]:
    params: dict[str, str | None] = {
        "client_id": CLIENT_ID,
        "response_type": "code",
        "scope": f"{ACCOUNTING} openid email profile phone address",
        "redirect_uri": REDIRECT,
        "state": "st-123",
    }
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}


async def consent_page(client: httpx.AsyncClient, **overrides: str | None) -> tuple[httpx.Response, str]:
    response = await client.get("/connect/oauth2", params=auth_params(**overrides))
    assert response.status_code == 200, response.text
    match = re.search(r'name="consent_ticket" value="([^"]+)"', response.text)
    assert match
    return response, match.group(1)


async def authorize(
    client: httpx.AsyncClient, realm: str | None = REALM_A, **overrides: str | None
) -> dict[str, str]:
    """Go through the consent page, approve, and return the redirect's query."""
    _, ticket = await consent_page(client, **overrides)
    form = {"consent_ticket": ticket, "action": "approve"}
    if realm is not None:
        form["realm_id"] = realm
    return location_query(await client.post("/connect/oauth2", data=form))


async def exchange(
    client: httpx.AsyncClient,
    code: str,
    redirect_uri: str = REDIRECT,
    authorization: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await client.post(
        "/oauth2/v1/tokens/bearer",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri},
        headers={"Authorization": authorization or basic(), **(headers or {})},
    )


async def refresh(
    client: httpx.AsyncClient, token: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    return await client.post(
        "/oauth2/v1/tokens/bearer",
        data={"grant_type": "refresh_token", "refresh_token": token},
        headers={"Authorization": basic(), **(headers or {})},
    )


async def connect(client: httpx.AsyncClient, **overrides: str | None) -> dict:
    query = await authorize(client, **overrides)
    response = await exchange(client, query["code"])
    assert response.status_code == 200, response.text
    return response.json()


async def revoke(client: httpx.AsyncClient, token: str, authorization: str | None = None) -> httpx.Response:
    return await client.post(
        "/v2/oauth2/tokens/revoke",
        content=json.dumps({"token": token}),
        headers={"Authorization": authorization or basic(), "Content-Type": "application/json"},
    )


def assert_auth_fails(server: OAuthServer, token: str, realm: str, detail: str, status: int = 401) -> None:
    with pytest.raises(AuthFailure) as info:
        server.authenticate(f"Bearer {token}", realm)
    assert info.value.detail == detail
    assert info.value.status == status
    assert token not in str(info.value)


# discovery and keys -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        "/.well-known/openid_configuration",
        "/.well-known/openid_configuration/",
        "/.well-known/openid_sandbox_configuration",
        "/.well-known/openid_sandbox_configuration/",
    ],
)
async def test_discovery_document_points_back_at_the_sandbox(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.json() == {
        "issuer": f"{BASE}/op/v1",
        "authorization_endpoint": f"{BASE}/connect/oauth2",
        "token_endpoint": f"{BASE}/oauth2/v1/tokens/bearer",
        "userinfo_endpoint": f"{BASE}/v1/openid_connect/userinfo",
        "revocation_endpoint": f"{BASE}/v2/oauth2/tokens/revoke",
        "jwks_uri": f"{BASE}/op/v1/jwks",
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "email", "profile", "address", "phone"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "claims_supported": ["aud", "exp", "iat", "iss", "realmid", "sub"],
    }


async def test_discovery_follows_the_host_it_is_reached_on(server: OAuthServer) -> None:
    transport = httpx.ASGITransport(app=Starlette(routes=server.routes()))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:4567") as other:
        doc = (await other.get("/.well-known/openid_sandbox_configuration/")).json()
    assert doc["token_endpoint"] == "http://127.0.0.1:4567/oauth2/v1/tokens/bearer"
    assert doc["issuer"] == "http://127.0.0.1:4567/op/v1"


async def test_jwks_lists_one_rs256_signing_key(client: httpx.AsyncClient) -> None:
    keys = (await client.get("/op/v1/jwks")).json()["keys"]
    assert len(keys) == 1
    assert {k: keys[0][k] for k in ("kty", "e", "use", "alg")} == {
        "kty": "RSA",
        "e": "AQAB",
        "use": "sig",
        "alg": "RS256",
    }
    assert keys[0]["kid"]
    assert len(base64.urlsafe_b64decode(keys[0]["n"] + "==")) == 256  # 2048-bit modulus


# authorization endpoint -------------------------------------------------------------------------
async def test_unknown_client_gets_an_error_page_not_a_redirect(client: httpx.AsyncClient) -> None:
    response = await client.get("/connect/oauth2", params=auth_params(client_id="nope"))
    assert response.status_code == 400
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    assert "not known" in response.text


@pytest.mark.parametrize(
    ("client_id", "redirect_uri"),
    [
        (CLIENT_ID, "https://evil.example.com/qbo/callback"),
        (CLIENT_ID, REDIRECT + "/"),  # exact match only
        (CLIENT_ID, None),
        (OPEN_ID, "javascript:alert(1)"),
        (OPEN_ID, "ftp://files.example.com/cb"),
        (OPEN_ID, "https://app.example.com/cb#frag"),
    ],
)
async def test_unacceptable_redirect_uri_gets_an_error_page(
    client: httpx.AsyncClient, client_id: str, redirect_uri: str | None
) -> None:
    params = auth_params(client_id=client_id, redirect_uri=redirect_uri)
    response = await client.get("/connect/oauth2", params=params)
    assert response.status_code == 400
    assert "location" not in response.headers
    assert "redirect_uri" in response.text


async def test_default_app_accepts_any_http_redirect(client: httpx.AsyncClient) -> None:
    query = await authorize(client, client_id=OPEN_ID, redirect_uri="http://localhost:8000/cb?x=1")
    assert query["x"] == "1"  # the redirect URI's own query survives
    assert query["realmId"] == REALM_A
    assert query["state"] == "st-123"


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"scope": "com.intuit.quickbooks.nonsense"}, "invalid_scope"),
        ({"scope": None}, "invalid_scope"),
        ({"scope": "profile email"}, "invalid_scope"),  # OpenID claims without openid
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": None}, "invalid_request"),
    ],
)
async def test_bad_request_with_good_redirect_is_redirected_back(
    client: httpx.AsyncClient, overrides: dict[str, str | None], error: str
) -> None:
    response = await client.get("/connect/oauth2", params=auth_params(**overrides))
    assert response.headers["location"].startswith(REDIRECT + "?")
    assert location_query(response) == {"error": error, "state": "st-123"}


async def test_consent_page_lists_companies_escaped(client: httpx.AsyncClient) -> None:
    response, _ = await consent_page(client)
    assert response.headers["content-type"].startswith("text/html")
    assert "Acme &lt;Widgets&gt; &amp; Co" in response.text
    assert "Acme <Widgets>" not in response.text
    assert f'value="{REALM_B}"' in response.text
    assert "Connect" in response.text and "Cancel" in response.text


async def test_consent_page_escapes_what_the_client_sent(server: OAuthServer) -> None:
    evil = OAuthApp('<script>alert("x")</script>', "s", None)
    server.apps[evil.client_id] = evil
    transport = httpx.ASGITransport(app=Starlette(routes=server.routes()))
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
        response, _ = await consent_page(c, client_id=evil.client_id, redirect_uri="https://a.example/cb")
    assert "<script>" not in response.text
    assert "&lt;script&gt;" in response.text


async def test_approve_redirects_with_code_state_and_chosen_realm(client: httpx.AsyncClient) -> None:
    query = await authorize(client, realm=REALM_B)
    assert set(query) == {"code", "state", "realmId"}
    assert query["state"] == "st-123"
    assert query["realmId"] == REALM_B
    assert len(query["code"]) >= 40


async def test_openid_only_sign_in_has_no_realm(client: httpx.AsyncClient) -> None:
    query = await authorize(client, realm=None, scope="openid email")
    assert set(query) == {"code", "state"}
    tokens = (await exchange(client, query["code"])).json()
    claims = jwt.decode(tokens["id_token"], options={"verify_signature": False})
    assert "realmid" not in claims


async def test_cancel_redirects_access_denied(client: httpx.AsyncClient) -> None:
    _, ticket = await consent_page(client)
    response = await client.post("/connect/oauth2", data={"consent_ticket": ticket, "action": "deny"})
    assert response.headers["location"] == f"{REDIRECT}?error=access_denied&state=st-123"


async def test_consent_answer_cannot_be_replayed_or_forged(client: httpx.AsyncClient) -> None:
    _, ticket = await consent_page(client)
    forged = await client.post("/connect/oauth2", data={"consent_ticket": "made-up", "action": "approve"})
    assert forged.status_code == 400 and "location" not in forged.headers
    bad_realm = {"consent_ticket": ticket, "action": "approve", "realm_id": "123"}
    assert (await client.post("/connect/oauth2", data=bad_realm)).status_code == 400
    # The ticket was spent by that answer.
    good = {"consent_ticket": ticket, "action": "approve", "realm_id": REALM_A}
    assert (await client.post("/connect/oauth2", data=good)).status_code == 400


async def test_consent_page_expires(client: httpx.AsyncClient, clock: Clock) -> None:
    _, ticket = await consent_page(client)
    clock.advance(601)
    data = {"consent_ticket": ticket, "action": "approve", "realm_id": REALM_A}
    assert (await client.post("/connect/oauth2", data=data)).status_code == 400


async def test_auto_approve_redirects_at_once_with_first_company(
    clock: Clock, companies: list[Company]
) -> None:
    server = make_server(clock, Storage(), companies, auto=True)
    transport = httpx.ASGITransport(app=Starlette(routes=server.routes()))
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
        query = location_query(await c.get("/connect/oauth2", params=auth_params()))
        assert query["realmId"] == REALM_A
        assert query["state"] == "st-123"
        assert (await exchange(c, query["code"])).status_code == 200


async def test_no_company_to_connect_is_an_error_page(clock: Clock) -> None:
    server = make_server(clock, Storage(), [], auto=True)
    transport = httpx.ASGITransport(app=Starlette(routes=server.routes()))
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
        response = await c.get("/connect/oauth2", params=auth_params())
    assert response.status_code == 400 and "location" not in response.headers


# token endpoint: authorization_code -------------------------------------------------------------
async def test_code_exchange_returns_intuit_shaped_tokens(
    client: httpx.AsyncClient, server: OAuthServer, clock: Clock
) -> None:
    query = await authorize(client)
    issued_at = clock.time()
    response = await exchange(client, query["code"])
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert "no-store" in response.headers["cache-control"]
    assert re.fullmatch(r"1-[0-9a-f]{8}-[0-9a-f]{24}", response.headers["intuit_tid"])
    body = response.json()
    assert list(body) == [
        "token_type",
        "expires_in",
        "refresh_token",
        "x_refresh_token_expires_in",
        "access_token",
        "id_token",
    ]
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    assert body["x_refresh_token_expires_in"] == 8726400
    assert len(body["access_token"]) > 500
    assert body["access_token"] != body["refresh_token"]

    jwks = jwt.PyJWKSet.from_dict((await client.get("/op/v1/jwks")).json())
    header = jwt.get_unverified_header(body["id_token"])
    assert header == {"kid": jwks.keys[0].key_id, "alg": "RS256"}
    claims = jwt.decode(body["id_token"], jwks[header["kid"]].key, algorithms=["RS256"], audience=CLIENT_ID)
    assert claims["iss"] == f"{BASE}/op/v1"
    assert claims["aud"] == [CLIENT_ID]
    assert claims["realmid"] == REALM_A
    assert claims["sub"]
    assert abs(claims["iat"] - issued_at) < 5
    assert claims["exp"] == claims["iat"] + 3600
    assert claims["auth_time"] <= claims["iat"]

    server.authenticate(f"Bearer {body['access_token']}", REALM_A)


async def test_no_id_token_without_openid(client: httpx.AsyncClient) -> None:
    tokens = await connect(client, scope=ACCOUNTING)
    assert "id_token" not in tokens


async def test_hard_expiry_header_adds_the_five_year_cap(client: httpx.AsyncClient, clock: Clock) -> None:
    query = await authorize(client)
    opt_in = {"x-include-refresh-token-hard-expires-in": "true"}
    tokens = (await exchange(client, query["code"], headers=opt_in)).json()
    assert tokens["x_refresh_token_hard_expires_in"] == 5 * 365 * 86400
    clock.advance(1000)
    again = (await refresh(client, tokens["refresh_token"], headers=opt_in)).json()
    # Real time also passes between the calls, so allow a second or two.
    assert 5 * 365 * 86400 - 1002 <= again["x_refresh_token_hard_expires_in"] <= 5 * 365 * 86400 - 1000
    assert again["x_refresh_token_expires_in"] == 8726400  # the rolling life starts over
    plain = (await refresh(client, again["refresh_token"])).json()
    assert "x_refresh_token_hard_expires_in" not in plain


async def test_client_secret_post_is_accepted(client: httpx.AsyncClient) -> None:
    query = await authorize(client)
    response = await client.post(
        "/oauth2/v1/tokens/bearer",
        data={
            "grant_type": "authorization_code",
            "code": query["code"],
            "redirect_uri": REDIRECT,
            "client_id": CLIENT_ID,
            "client_secret": SECRET,
        },
    )
    assert response.status_code == 200
    assert response.json()["token_type"] == "bearer"


async def test_code_reuse_is_refused_and_revokes_what_it_issued(
    client: httpx.AsyncClient, server: OAuthServer
) -> None:
    query = await authorize(client)
    first = await exchange(client, query["code"])
    assert first.status_code == 200
    tokens = first.json()
    server.authenticate(f"Bearer {tokens['access_token']}", REALM_A)

    second = await exchange(client, query["code"])
    assert second.status_code == 400
    assert second.json() == BAD_CODE
    assert_auth_fails(server, tokens["access_token"], REALM_A, "Token revoked")
    assert (await refresh(client, tokens["refresh_token"])).json() == BAD_REFRESH


async def test_wrong_redirect_uri_at_exchange(client: httpx.AsyncClient) -> None:
    query = await authorize(client, client_id=OPEN_ID, redirect_uri="https://one.example/cb")
    auth = basic(OPEN_ID, OPEN_SECRET)
    response = await exchange(
        client, query["code"], redirect_uri="https://two.example/cb", authorization=auth
    )
    assert response.status_code == 400
    assert response.json() == BAD_CODE
    missing = await client.post(
        "/oauth2/v1/tokens/bearer",
        data={"grant_type": "authorization_code", "code": query["code"]},
        headers={"Authorization": auth},
    )
    assert missing.json() == BAD_CODE
    # A mismatch does not burn the code.
    ok = await exchange(client, query["code"], redirect_uri="https://one.example/cb", authorization=auth)
    assert ok.status_code == 200


async def test_expired_code(client: httpx.AsyncClient, clock: Clock) -> None:
    query = await authorize(client)
    clock.advance(AUTH_CODE_TTL + 1)
    response = await exchange(client, query["code"])
    assert response.status_code == 400
    assert response.json() == BAD_CODE


async def test_code_of_another_client_and_unknown_code(client: httpx.AsyncClient) -> None:
    query = await authorize(client)
    response = await exchange(client, query["code"], authorization=basic(OPEN_ID, OPEN_SECRET))
    assert (response.status_code, response.json()) == (400, BAD_CODE)
    response = await exchange(client, "not-a-code")
    assert (response.status_code, response.json()) == (400, BAD_CODE)
    # The rightful client can still use it.
    assert (await exchange(client, query["code"])).status_code == 200


@pytest.mark.parametrize(
    "authorization",
    [
        basic(CLIENT_ID, "wrong-secret"),
        basic("unknown-client", SECRET),
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Bearer something",
    ],
)
async def test_bad_client_authentication(client: httpx.AsyncClient, authorization: str) -> None:
    query = await authorize(client)
    response = await exchange(client, query["code"], authorization=authorization)
    assert response.status_code == 401
    assert response.json() == {"error": "invalid_client"}
    assert "intuit_tid" in response.headers


async def test_missing_client_authentication(client: httpx.AsyncClient) -> None:
    response = await client.post("/oauth2/v1/tokens/bearer", data={"grant_type": "refresh_token"})
    assert (response.status_code, response.json()) == (401, {"error": "invalid_client"})


async def test_unsupported_and_missing_grant_type(client: httpx.AsyncClient) -> None:
    headers = {"Authorization": basic()}
    response = await client.post(
        "/oauth2/v1/tokens/bearer", data={"grant_type": "client_credentials"}, headers=headers
    )
    assert (response.status_code, response.json()) == (400, {"error": "unsupported_grant_type"})
    response = await client.post("/oauth2/v1/tokens/bearer", data={}, headers=headers)
    assert (response.status_code, response.json()) == (400, {"error": "invalid_request"})


# access tokens and authenticate() --------------------------------------------------------------
async def test_access_token_expires_after_an_hour(
    client: httpx.AsyncClient, server: OAuthServer, clock: Clock
) -> None:
    tokens = await connect(client)
    clock.advance(ACCESS_TOKEN_TTL - 1)
    server.authenticate(f"Bearer {tokens['access_token']}", REALM_A)
    clock.advance(2)
    expected = f"Token expired: {tokens['access_token'][:12]}..."
    assert_auth_fails(server, tokens["access_token"], REALM_A, expected)
    assert (
        await client.get("/v1/openid_connect/userinfo", headers=bearer(tokens["access_token"]))
    ).status_code == 401


async def test_token_for_another_realm_is_refused(client: httpx.AsyncClient, server: OAuthServer) -> None:
    tokens = await connect(client)  # connected to REALM_A
    server.authenticate(f"Bearer {tokens['access_token']}", REALM_A)
    assert_auth_fails(server, tokens["access_token"], REALM_B, "Token not valid for this company", 403)


async def test_token_without_accounting_scope_is_refused(
    client: httpx.AsyncClient, server: OAuthServer
) -> None:
    query = await authorize(client, realm=None, scope="openid email")
    tokens = (await exchange(client, query["code"])).json()
    detail = "The access token does not have sufficient scope"
    assert_auth_fails(server, tokens["access_token"], REALM_A, detail, 403)


@pytest.mark.parametrize(
    ("authorization", "detail"),
    [
        (None, "Bearer token missing"),
        ("", "Bearer token missing"),
        ("Basic abc", "Token invalid"),
        ("Bearer", "Token invalid"),
        ("Bearer not-a-token", "Token invalid"),
    ],
)
def test_authenticate_rejects_missing_or_unknown_tokens(
    server: OAuthServer, authorization: str | None, detail: str
) -> None:
    with pytest.raises(AuthFailure) as info:
        server.authenticate(authorization, REALM_A)
    assert (info.value.detail, info.value.status) == (detail, 401)


# refresh ----------------------------------------------------------------------------------------
async def test_refresh_rotates_and_old_refresh_token_has_24_hours(
    client: httpx.AsyncClient, server: OAuthServer, clock: Clock
) -> None:
    first = await connect(client)
    second_response = await refresh(client, first["refresh_token"])
    assert second_response.status_code == 200
    assert "no-store" in second_response.headers["cache-control"]
    second = second_response.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert second["expires_in"] == 3600
    assert second["x_refresh_token_expires_in"] == 8726400
    # The previous access token is still good until its own hour is up.
    server.authenticate(f"Bearer {first['access_token']}", REALM_A)
    server.authenticate(f"Bearer {second['access_token']}", REALM_A)

    clock.advance(24 * 3600 - 60)
    within = await refresh(client, first["refresh_token"])
    assert within.status_code == 200, within.text
    clock.advance(61)  # now 24 h + 1 s after the first token was superseded
    late = await refresh(client, first["refresh_token"])
    assert late.status_code == 400
    assert late.json() == BAD_REFRESH
    assert "no-store" in late.headers["cache-control"]
    # The newest token still works.
    assert (await refresh(client, within.json()["refresh_token"])).status_code == 200


async def test_unused_refresh_token_expires(client: httpx.AsyncClient, clock: Clock) -> None:
    tokens = await connect(client)
    clock.advance(8726400 + 1)
    response = await refresh(client, tokens["refresh_token"])
    assert (response.status_code, response.json()) == (400, BAD_REFRESH)


async def test_refresh_token_of_another_client_or_garbage(client: httpx.AsyncClient) -> None:
    tokens = await connect(client)
    response = await client.post(
        "/oauth2/v1/tokens/bearer",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        headers={"Authorization": basic(OPEN_ID, OPEN_SECRET)},
    )
    assert (response.status_code, response.json()) == (400, BAD_REFRESH)
    response = await refresh(client, "garbage")
    assert (response.status_code, response.json()) == (400, BAD_REFRESH)
    response = await client.post(
        "/oauth2/v1/tokens/bearer", data={"grant_type": "refresh_token"}, headers={"Authorization": basic()}
    )
    assert (response.status_code, response.json()) == (400, {"error": "invalid_request"})


async def test_refresh_carries_a_fresh_id_token(client: httpx.AsyncClient, clock: Clock) -> None:
    tokens = await connect(client)
    clock.advance(100)
    again = (await refresh(client, tokens["refresh_token"])).json()
    first = jwt.decode(tokens["id_token"], options={"verify_signature": False})
    second = jwt.decode(again["id_token"], options={"verify_signature": False})
    assert second["iat"] == first["iat"] + 100
    assert second["auth_time"] == first["auth_time"]  # the user authenticated only once
    assert second["sub"] == first["sub"]


# revocation -------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["refresh_token", "access_token"])
async def test_revoke_ends_the_whole_grant_at_once(
    client: httpx.AsyncClient, server: OAuthServer, which: str
) -> None:
    first = await connect(client)
    second = (await refresh(client, first["refresh_token"])).json()
    other = await connect(client)  # a separate connection must survive

    response = await revoke(client, second[which])
    assert response.status_code == 200
    assert response.content == b""
    for tokens in (first, second):
        assert_auth_fails(server, tokens["access_token"], REALM_A, "Token revoked")
        assert (await refresh(client, tokens["refresh_token"])).json() == BAD_REFRESH
        userinfo = await client.get("/v1/openid_connect/userinfo", headers=bearer(tokens["access_token"]))
        assert userinfo.status_code == 401
    server.authenticate(f"Bearer {other['access_token']}", REALM_A)
    assert (await refresh(client, other["refresh_token"])).status_code == 200


async def test_revoke_errors(client: httpx.AsyncClient, server: OAuthServer) -> None:
    tokens = await connect(client)
    bad_client = await revoke(client, tokens["refresh_token"], authorization=basic(CLIENT_ID, "wrong"))
    assert (bad_client.status_code, bad_client.json()) == (401, {"error": "invalid_client"})
    # Another app cannot revoke this app's connection.
    foreign = await revoke(client, tokens["refresh_token"], authorization=basic(OPEN_ID, OPEN_SECRET))
    assert foreign.status_code == 400
    server.authenticate(f"Bearer {tokens['access_token']}", REALM_A)
    assert (await revoke(client, "unknown-token")).status_code == 400
    missing = await client.post(
        "/v2/oauth2/tokens/revoke",
        content="{}",
        headers={"Authorization": basic(), "Content-Type": "application/json"},
    )
    assert missing.status_code == 400

    assert (await revoke(client, tokens["refresh_token"])).status_code == 200
    again = await revoke(client, tokens["refresh_token"])
    assert again.status_code == 400 and again.content == b""


async def test_revoke_accepts_a_form_body(client: httpx.AsyncClient, server: OAuthServer) -> None:
    tokens = await connect(client)
    response = await client.post(
        "/v2/oauth2/tokens/revoke",
        data={"token": tokens["refresh_token"]},
        headers={"Authorization": basic()},
    )
    assert response.status_code == 200
    assert_auth_fails(server, tokens["access_token"], REALM_A, "Token revoked")


# userinfo ---------------------------------------------------------------------------------------
async def test_userinfo(client: httpx.AsyncClient) -> None:
    tokens = await connect(client)
    response = await client.get("/v1/openid_connect/userinfo", headers=bearer(tokens["access_token"]))
    assert response.status_code == 200
    info = response.json()
    assert list(info) == [
        "sub",
        "email",
        "emailVerified",
        "givenName",
        "familyName",
        "phoneNumber",
        "phoneNumberVerified",
        "address",
    ]
    assert info["sub"] == jwt.decode(tokens["id_token"], options={"verify_signature": False})["sub"]
    assert info["emailVerified"] is True
    assert set(info["address"]) == {"streetAddress", "locality", "region", "postalCode", "country"}


async def test_userinfo_releases_only_granted_claims(client: httpx.AsyncClient) -> None:
    tokens = await connect(client, scope=f"{ACCOUNTING} openid email")
    info = (await client.get("/v1/openid_connect/userinfo", headers=bearer(tokens["access_token"]))).json()
    assert set(info) == {"sub", "email", "emailVerified"}


async def test_userinfo_errors(client: httpx.AsyncClient) -> None:
    no_header = await client.get("/v1/openid_connect/userinfo")
    assert no_header.status_code == 401
    assert "invalid_token" in no_header.headers["www-authenticate"]
    assert (await client.get("/v1/openid_connect/userinfo", headers=bearer("nope"))).status_code == 401
    tokens = await connect(client, scope=ACCOUNTING)
    no_openid = await client.get("/v1/openid_connect/userinfo", headers=bearer(tokens["access_token"]))
    assert no_openid.status_code == 403


# helpers, persistence ---------------------------------------------------------------------------
async def test_issue_tokens_for_tests(server: OAuthServer, client: httpx.AsyncClient) -> None:
    tokens = server.issue_tokens_for_tests(CLIENT_ID, REALM_B)
    assert tokens["token_type"] == "bearer" and tokens["expires_in"] == 3600
    server.authenticate(f"Bearer {tokens['access_token']}", REALM_B)
    assert (await refresh(client, tokens["refresh_token"])).status_code == 200
    with pytest.raises(ValueError):
        server.issue_tokens_for_tests("unknown", REALM_A)


async def test_grants_survive_a_restart_and_only_hashes_are_stored(
    tmp_path, clock: Clock, companies: list[Company]
) -> None:
    path = tmp_path / "sandbox.db"
    storage = Storage(path)
    first = make_server(clock, storage, companies)
    transport = httpx.ASGITransport(app=Starlette(routes=first.routes()))
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
        query = await authorize(c)
        tokens = (await exchange(c, query["code"])).json()
    storage.close()

    raw = path.read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("sandbox.db-*"))
    for value in (tokens["access_token"], tokens["refresh_token"], query["code"]):
        assert value.encode() not in raw
        assert value[:16].encode() not in raw

    storage = Storage(path)
    second = make_server(clock, storage, companies)
    second.authenticate(f"Bearer {tokens['access_token']}", REALM_A)
    transport = httpx.ASGITransport(app=Starlette(routes=second.routes()))
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
        assert (await refresh(c, tokens["refresh_token"])).status_code == 200
        assert (await exchange(c, query["code"])).json() == BAD_CODE  # still single-use after restart
    assert_auth_fails(second, tokens["access_token"], REALM_A, "Token revoked")
    storage.close()


# the real intuit-oauth client against the app served by uvicorn --------------------------------
@pytest.fixture
def live_server(clock: Clock, companies: list[Company]) -> Iterator[tuple[OAuthServer, str]]:
    oauth = make_server(clock, Storage(), companies)
    # Bind first so the port is known and already listening before uvicorn starts serving.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        Starlette(routes=oauth.routes()), log_level="warning", lifespan="off", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped during start-up"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield oauth, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_intuit_oauth_client_full_flow(live_server: tuple[OAuthServer, str]) -> None:
    from intuitlib.client import AuthClient
    from intuitlib.enums import Scopes
    from intuitlib.exceptions import AuthClientError

    oauth, base = live_server
    auth_client = AuthClient(
        CLIENT_ID, SECRET, REDIRECT, environment=f"{base}/.well-known/openid_sandbox_configuration/"
    )
    assert auth_client.token_endpoint == f"{base}/oauth2/v1/tokens/bearer"
    url = auth_client.get_authorization_url(
        [Scopes.ACCOUNTING, Scopes.OPENID, Scopes.EMAIL, Scopes.PROFILE, Scopes.PHONE, Scopes.ADDRESS]
    )

    with httpx.Client(follow_redirects=False) as browser:
        page = browser.get(url)
        assert page.status_code == 200
        ticket = re.search(r'name="consent_ticket" value="([^"]+)"', page.text)
        assert ticket
        action = re.search(r'<form method="post" action="([^"]+)"', page.text)
        assert action
        answer = browser.post(
            base + action.group(1),
            content=urlencode({"consent_ticket": ticket.group(1), "action": "approve", "realm_id": REALM_B}),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert answer.headers["location"].startswith(REDIRECT + "?")
    query = location_query(answer)
    assert query["state"] == auth_client.state_token
    assert query["realmId"] == REALM_B

    auth_client.get_bearer_token(query["code"], realm_id=query["realmId"])
    # intuit-oauth sets id_token only after checking iss, aud, exp and the RS256 signature via jwks_uri.
    assert auth_client.id_token is not None
    assert auth_client.expires_in == 3600
    assert auth_client.x_refresh_token_expires_in == 8726400
    first_access, first_refresh = auth_client.access_token, auth_client.refresh_token
    oauth.authenticate(f"Bearer {first_access}", REALM_B)

    # intuit-oauth 1.2.7 added the hard-expiry header; python-quickbooks pins 1.2.6, which lacks it.
    hard_expiry = hasattr(AuthClient, "include_refresh_token_hard_expires_in")
    if hard_expiry:
        auth_client.include_refresh_token_hard_expires_in = True
    auth_client.refresh()
    assert auth_client.refresh_token != first_refresh
    assert auth_client.access_token != first_access
    if hard_expiry:
        assert 5 * 365 * 86400 - 5 <= auth_client.x_refresh_token_hard_expires_in <= 5 * 365 * 86400
    oauth.authenticate(f"Bearer {auth_client.access_token}", REALM_B)

    info = auth_client.get_user_info().json()
    assert info["email"] == "sandbox.developer@example.com"
    assert info["sub"] == jwt.decode(auth_client.id_token, options={"verify_signature": False})["sub"]

    latest_access, latest_refresh = auth_client.access_token, auth_client.refresh_token
    assert auth_client.revoke() is True
    for token in (first_access, latest_access):
        with pytest.raises(AuthFailure) as failure:
            oauth.authenticate(f"Bearer {token}", REALM_B)
        assert failure.value.detail == "Token revoked"
    with pytest.raises(AuthClientError) as refused:
        auth_client.refresh(refresh_token=latest_refresh)
    assert refused.value.status_code == 400
    assert json.loads(refused.value.content) == BAD_REFRESH
    assert refused.value.intuit_tid
    with pytest.raises(AuthClientError) as again:
        auth_client.revoke(token=latest_refresh)
    assert again.value.status_code == 400
