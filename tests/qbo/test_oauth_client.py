"""IntuitOAuth (authlib underneath) against the sandbox's OAuth server, mounted in-process."""

from __future__ import annotations

import base64
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from qbflow.qbo import AuthError, TokenSet
from qbflow.qbo.oauth import (
    ACCOUNTING_SCOPE,
    INTUIT_PRODUCTION_DISCOVERY,
    IntuitOAuth,
    InvalidGrant,
    OAuthFailure,
    OAuthTokens,
    local_sandbox_discovery,
)
from qbflow.sandbox.app import Sandbox

BASE = "http://sandbox.test"
REDIRECT = "http://127.0.0.1:9/callback"


class Recording(httpx.AsyncBaseTransport):
    """The sandbox in-process; keeps every request it passes on."""

    def __init__(self, app: Sandbox) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.requests: list[tuple[httpx.Request, bytes]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        self.requests.append((request, body))
        return await self.inner.handle_async_request(request)

    def to(self, path: str) -> list[tuple[httpx.Request, bytes]]:
        return [(r, b) for r, b in self.requests if r.url.path == path]


@pytest.fixture
def sandbox() -> Sandbox:
    return Sandbox(rate_limit=False, auto_approve=True)


@pytest.fixture
def transport(sandbox: Sandbox) -> Recording:
    return Recording(sandbox)


@pytest.fixture
async def oauth(sandbox: Sandbox, transport: Recording) -> IntuitOAuth:
    client = IntuitOAuth(sandbox.client_id, sandbox.client_secret, discovery_url=local_sandbox_discovery(BASE),
                         transport=transport)
    await client.load()
    return client


async def authorize(sandbox: Sandbox, oauth: IntuitOAuth, state: str = "st-123") -> tuple[str, str]:
    """What the browser does: the consent page (auto-approved) redirects with code, state and realmId."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox)) as browser:
        answer = await browser.get(oauth.authorization_url(REDIRECT, state))
    assert answer.status_code == 302
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    assert query["state"] == [state]
    return query["code"][0], query["realmId"][0]


async def test_discovery_names_the_endpoints(oauth: IntuitOAuth) -> None:
    endpoints = oauth.endpoints
    assert endpoints.authorization_endpoint == f"{BASE}/connect/oauth2"
    assert endpoints.token_endpoint == f"{BASE}/oauth2/v1/tokens/bearer"
    assert endpoints.revocation_endpoint == f"{BASE}/v2/oauth2/tokens/revoke"
    assert endpoints.userinfo_endpoint == f"{BASE}/v1/openid_connect/userinfo"


def test_endpoints_are_needed_before_an_authorization_url() -> None:
    oauth = IntuitOAuth("id", "secret", discovery_url=INTUIT_PRODUCTION_DISCOVERY)
    with pytest.raises(RuntimeError, match="load"):
        oauth.authorization_url(REDIRECT, "state")


async def test_authorization_url_has_intuits_parameters(oauth: IntuitOAuth, sandbox: Sandbox) -> None:
    url = oauth.authorization_url(REDIRECT, "the-state")
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{BASE}/connect/oauth2"
    assert query == {"response_type": ["code"], "client_id": [sandbox.client_id], "redirect_uri": [REDIRECT],
                     "scope": [ACCOUNTING_SCOPE], "state": ["the-state"]}
    assert "openid email" in parse_qs(urlsplit(oauth.authorization_url(REDIRECT, "s", ("openid", "email"))).query)[
        "scope"][0]


async def test_exchange_uses_basic_auth_and_reads_lifetimes(oauth, sandbox, transport) -> None:
    code, realm = await authorize(sandbox, oauth)
    before = time.time()
    tokens = await oauth.exchange(code, REDIRECT, realm_id=realm)
    assert isinstance(tokens, OAuthTokens) and isinstance(tokens, TokenSet)
    assert tokens.realm_id == realm and tokens.access_token and tokens.refresh_token
    assert before + 3600 - 5 <= tokens.expires_at <= time.time() + 3600
    assert before + 8_726_400 - 5 <= tokens.refresh_expires_at <= time.time() + 8_726_400
    [(request, body)] = transport.to("/oauth2/v1/tokens/bearer")
    expected = base64.b64encode(f"{sandbox.client_id}:{sandbox.client_secret}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {expected}"
    form = parse_qs(body.decode())
    assert form["grant_type"] == ["authorization_code"] and form["redirect_uri"] == [REDIRECT]
    assert "client_secret" not in form  # client_secret_basic, not _post
    text = repr(tokens)
    assert tokens.access_token not in text and tokens.refresh_token not in text and "***" in text


async def test_refresh_rotates_the_refresh_token(oauth, sandbox) -> None:
    code, realm = await authorize(sandbox, oauth)
    first = await oauth.exchange(code, REDIRECT, realm_id=realm)
    second = await oauth.refresh(first.refresh_token)
    assert second.access_token != first.access_token
    assert second.refresh_token and second.refresh_token != first.refresh_token
    assert second.expires_at and second.refresh_expires_at


async def test_dead_refresh_token_is_invalid_grant_without_the_token_in_the_message(oauth) -> None:
    dead = "dead-refresh-token-0123456789abcdef"
    with pytest.raises(InvalidGrant) as caught:
        await oauth.refresh(dead)
    assert isinstance(caught.value, AuthError)
    assert caught.value.code == "invalid_grant"
    assert dead not in str(caught.value) and dead[:8] not in str(caught.value)


async def test_replayed_code_is_invalid_grant(oauth, sandbox) -> None:
    code, realm = await authorize(sandbox, oauth)
    await oauth.exchange(code, REDIRECT, realm_id=realm)
    with pytest.raises(InvalidGrant) as caught:
        await oauth.exchange(code, REDIRECT, realm_id=realm)
    assert code not in str(caught.value)


async def test_wrong_client_secret_is_invalid_client(sandbox, transport) -> None:
    wrong = IntuitOAuth(sandbox.client_id, "not-the-secret-0123456789", discovery_url=local_sandbox_discovery(BASE),
                        transport=transport)
    await wrong.load()
    with pytest.raises(OAuthFailure) as caught:
        await wrong.refresh("whatever-refresh-token")
    assert not isinstance(caught.value, InvalidGrant)
    assert caught.value.code == "invalid_client"
    assert "not-the-secret" not in str(caught.value) and "not-the-secret" not in repr(wrong)


async def test_revoke_ends_the_grant(oauth, sandbox, transport) -> None:
    code, realm = await authorize(sandbox, oauth)
    tokens = await oauth.exchange(code, REDIRECT, realm_id=realm)
    await oauth.revoke(tokens.refresh_token)
    [(request, body)] = transport.to("/v2/oauth2/tokens/revoke")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["authorization"].startswith("Basic ")
    with pytest.raises(InvalidGrant):
        await oauth.refresh(tokens.refresh_token)
    with pytest.raises(OAuthFailure) as again:  # Intuit answers 400 for a token already revoked
        await oauth.revoke(tokens.refresh_token)
    assert again.value.status_code == 400
    assert tokens.refresh_token not in str(again.value)


async def test_unreachable_discovery_is_a_clear_transient_error() -> None:
    from qbflow.qbo import Transient

    oauth = IntuitOAuth("id", "secret", discovery_url="http://127.0.0.1:9/.well-known/openid_configuration")
    with pytest.raises(Transient, match="discovery"):
        await oauth.load()
