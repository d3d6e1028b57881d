"""`connect()` and `client_for()` with the sandbox mounted in-process: the real callback server on 127.0.0.1,
the real store on an SQLite file, one refresh for many callers, and a revoked connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from qbflow.qbo import NeedsReconnect, RealmPacer
from qbflow.qbo.connect import (
    AuthorizationDenied,
    CallbackTimeout,
    ConnectError,
    Environment,
    StateMismatch,
    connect,
)
from qbflow.qbo.connections import client_for
from qbflow.sandbox.app import Sandbox
from qbflow.store import AsyncConnectionStore, ConnectionNotFound, SecretBox, Store, open_store
from tests.support.clients import FAST_RETRY

BASE = "http://sandbox.test"
TOKEN_PATH = "/oauth2/v1/tokens/bearer"


class Recording(httpx.AsyncBaseTransport):
    """The sandbox in-process; counts what reaches it."""

    def __init__(self, app: Sandbox) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.requests: list[httpx.Request] = []
        self.bodies: list[bytes] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.bodies.append(await request.aread())
        return await self.inner.handle_async_request(request)

    def refreshes(self) -> int:
        return sum(1 for r, b in zip(self.requests, self.bodies, strict=True)
                   if r.url.path == TOKEN_PATH and b"grant_type=refresh_token" in b)


@pytest.fixture
def sandbox() -> Sandbox:
    return Sandbox(rate_limit=False, auto_approve=True)


@pytest.fixture
def transport(sandbox: Sandbox) -> Recording:
    return Recording(sandbox)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    opened = open_store(url=f"sqlite:///{tmp_path / 'qbflow.sqlite3'}", box=SecretBox([SecretBox.generate_key()]))
    yield opened
    opened.close()


@pytest.fixture
async def astore(store: Store) -> AsyncIterator[AsyncConnectionStore]:
    async with AsyncConnectionStore(store.connections) as opened:
        yield opened


def browser(sandbox: Sandbox, *, tamper: Callable[[str], str] | None = None, deny: bool = False,
            seen: list[str] | None = None) -> Callable[[str], None]:
    """An `open_url` that acts like the user's browser: it asks the (in-process) sandbox for the consent
    page and follows its redirect to qbflow's callback on 127.0.0.1. Runs on the test's event loop."""
    loop = asyncio.get_running_loop()

    async def browse(url: str) -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox)) as intuit:
            if deny:
                sandbox.oauth.auto_approve = False
                page = await intuit.get(url)
                ticket = page.text.split('name="consent_ticket" value="', 1)[1].split('"', 1)[0]
                answer = await intuit.post(f"{BASE}/connect/oauth2", data={"consent_ticket": ticket, "action": "deny"})
            else:
                answer = await intuit.get(url)
        location = answer.headers["location"]
        if seen is not None:
            seen.append(location)
        if tamper is not None:
            location = tamper(location)
        async with httpx.AsyncClient() as local:
            await local.get(location)

    def open_url(url: str) -> None:
        asyncio.run_coroutine_threadsafe(browse(url), loop).result(timeout=30)

    return open_url


async def connect_acme(sandbox: Sandbox, astore: AsyncConnectionStore, transport: Recording, name: str = "acme",
                       **kwargs):
    kwargs.setdefault("open_url", browser(sandbox))
    return await connect(name, client_id=sandbox.client_id, client_secret=sandbox.client_secret,
                         environment=Environment.local(BASE), store=astore, transport=transport, timeout=20,
                         **kwargs)


async def test_connect_stores_the_connection(sandbox, astore, transport) -> None:
    record = await connect_acme(sandbox, astore, transport)
    assert record.name == "acme" and record.realm_id == sandbox.realms[0]
    assert record.company_name == "Sandbox Company_US_1"
    assert record.environment == "local" and record.api_base == BASE
    assert record.token_endpoint == f"{BASE}{TOKEN_PATH}"
    assert record.revocation_endpoint == f"{BASE}/v2/oauth2/tokens/revoke"
    assert record.discovery_url == f"{BASE}/.well-known/openid_sandbox_configuration"
    assert record.client_id == sandbox.client_id and record.client_secret == sandbox.client_secret
    assert record.status == "ok" and record.token_version == 1
    assert record.refresh_expires_at is not None
    assert 3500 < (record.access_expires_at - record.created_at).total_seconds() <= 3600
    # The stored access token works as is.
    async with await client_for("acme", astore, transport=transport, retry=FAST_RETRY) as qbo:
        assert (await qbo.company_info())["CompanyName"] == "Sandbox Company_US_1"


async def test_reconnecting_replaces_tokens_and_clears_needs_reconnect(sandbox, astore, transport) -> None:
    first = await connect_acme(sandbox, astore, transport)
    await astore.mark_needs_reconnect("acme", "refresh token refused")
    second = await connect_acme(sandbox, astore, transport)
    assert second.id == first.id and second.status == "ok" and second.status_detail is None
    assert second.token_version == first.token_version + 1
    assert second.access_token != first.access_token and second.refresh_token != first.refresh_token


async def test_state_mismatch_stores_nothing(sandbox, astore, transport) -> None:
    def forge(location: str) -> str:
        parts = urlsplit(location)
        query = [(k, "forged-state" if k == "state" else v) for k, v in parse_qsl(parts.query)]
        return urlunsplit(parts._replace(query=urlencode(query)))

    with pytest.raises(StateMismatch, match="'acme'.*state does not match.*Nothing was stored"):
        await connect_acme(sandbox, astore, transport, open_url=browser(sandbox, tamper=forge))
    with pytest.raises(ConnectionNotFound):
        await astore.get("acme")
    assert not [r for r in transport.requests if r.url.path == TOKEN_PATH]  # the code was never exchanged


async def test_access_denied_stores_nothing(sandbox, astore, transport) -> None:
    with pytest.raises(AuthorizationDenied, match="'acme'.*access was denied.*Nothing was stored") as denied:
        await connect_acme(sandbox, astore, transport, open_url=browser(sandbox, deny=True))
    assert denied.value.error == "access_denied"
    assert await astore.list() == []


async def test_no_answer_times_out(sandbox, astore, transport) -> None:
    with pytest.raises(CallbackTimeout, match="'acme'.*within 0.3 s"):
        await connect(name="acme", client_id=sandbox.client_id, client_secret=sandbox.client_secret,
                      environment=Environment.local(BASE), store=astore, transport=transport, timeout=0.3,
                      open_url=lambda url: None)
    assert await astore.list() == []


async def test_a_bad_name_is_refused_before_anything(sandbox, astore, transport) -> None:
    with pytest.raises(ConnectError, match="cannot name a connection"):
        await connect_acme(sandbox, astore, transport, name="no spaces; please")
    assert transport.requests == []


async def test_ten_concurrent_calls_after_expiry_refresh_once(sandbox, astore, transport) -> None:
    before = await connect_acme(sandbox, astore, transport)
    async with await client_for("acme", astore, transport=transport, retry=FAST_RETRY,
                                pacer=RealmPacer(before.realm_id)) as qbo:
        await qbo.company_info()
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as admin:
            (await admin.post("/_sandbox/clock", json={"advance": 3601})).raise_for_status()
        results = await asyncio.gather(*(qbo.get("Customer", "1") for _ in range(10)))
        assert all(r["Id"] == "1" for r in results)
        assert transport.refreshes() == 1
        assert qbo._tokens.refreshes == 1  # noqa: SLF001
    after = await astore.get("acme")
    assert after.token_version == before.token_version + 1
    assert after.refresh_token != before.refresh_token  # the rotated refresh token was saved


async def test_two_clients_in_one_process_share_one_refresh(sandbox, astore, transport) -> None:
    before = await connect_acme(sandbox, astore, transport)
    sandbox.clock.advance(3601)
    one = await client_for("acme", astore, transport=transport, retry=FAST_RETRY)
    two = await client_for("acme", astore, transport=transport, retry=FAST_RETRY)
    async with one, two:
        await asyncio.gather(*(c.get("Customer", "1") for c in (one, two) for _ in range(5)))
    assert transport.refreshes() == 1
    assert (await astore.get("acme")).token_version == before.token_version + 1


async def test_revoked_connection_needs_reconnect(sandbox, astore, transport) -> None:
    record = await connect_acme(sandbox, astore, transport)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as intuit:
        revoked = await intuit.post("/v2/oauth2/tokens/revoke", json={"token": record.refresh_token},
                                    auth=(sandbox.client_id, sandbox.client_secret))
        assert revoked.status_code == 200
    async with await client_for("acme", astore, transport=transport, retry=FAST_RETRY) as qbo:
        with pytest.raises(NeedsReconnect) as caught:
            await qbo.get("Customer", "1")
        message = str(caught.value)
        assert "'acme'" in message and "`qbflow connect acme`" in message
        assert caught.value.connection == "acme" and caught.value.command == "qbflow connect acme"
        assert record.refresh_token not in message and record.access_token[:8] not in message
        stored = await astore.get("acme")
        assert stored.status == "needs_reconnect" and stored.needs_reconnect
        refreshes = transport.refreshes()
        with pytest.raises(NeedsReconnect):  # told again, without asking Intuit again
            await qbo.get("Customer", "1")
        assert transport.refreshes() == refreshes
    with pytest.raises(NeedsReconnect, match="qbflow connect acme"):
        await client_for("acme", astore, transport=transport)


async def test_client_for_an_unknown_name_says_which(astore) -> None:
    with pytest.raises(ConnectionNotFound, match="'nope'"):
        await client_for("nope", astore)


async def test_client_for_accepts_a_plain_store(sandbox, store, astore, transport) -> None:
    await connect_acme(sandbox, astore, transport)
    async with await client_for("acme", store, transport=transport, retry=FAST_RETRY) as qbo:
        assert qbo.connection == "acme"
        assert (await qbo.company_info())["CompanyName"]
    assert "acme" in repr(qbo) and "***" not in repr(qbo)


def test_environments() -> None:
    from qbflow.qbo import PRODUCTION_BASE_URL, SANDBOX_BASE_URL
    from qbflow.qbo.oauth import INTUIT_PRODUCTION_DISCOVERY, INTUIT_SANDBOX_DISCOVERY

    assert Environment.choose() == Environment("sandbox", INTUIT_SANDBOX_DISCOVERY, SANDBOX_BASE_URL)
    assert Environment.choose(production=True) == Environment("production", INTUIT_PRODUCTION_DISCOVERY,
                                                              PRODUCTION_BASE_URL)
    local = Environment.choose("http://127.0.0.1:8700/")
    assert local == Environment("local", "http://127.0.0.1:8700/.well-known/openid_sandbox_configuration",
                                "http://127.0.0.1:8700")
    with pytest.raises(ValueError):
        Environment.choose("http://127.0.0.1:8700", production=True)


async def test_callback_server_answers_only_its_path_and_only_once() -> None:
    from qbflow.qbo.connect import CallbackServer

    async with CallbackServer("acme", "the-state") as server, httpx.AsyncClient() as browser:
        assert server.redirect_uri == f"http://127.0.0.1:{server.port}/callback" and server.port > 0
        assert (await browser.get(f"http://127.0.0.1:{server.port}/favicon.ico")).status_code == 404
        assert (await browser.post(server.redirect_uri)).status_code == 405
        assert not server.outcome.done()
        first = await browser.get(server.redirect_uri, params={"state": "the-state", "code": "c0de", "realmId": "1"})
        assert first.status_code == 200 and first.headers["cache-control"] == "no-store"
        again = await browser.get(server.redirect_uri, params={"state": "the-state", "code": "other"})
        assert again.status_code == 400 and "already received" in again.text
        outcome = server.outcome.result()
        assert (outcome.code, outcome.realm_id, outcome.error) == ("c0de", "1", None)
        assert "c0de" not in repr(outcome)
