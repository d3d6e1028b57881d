"""The real QBO client against the real sandbox mounted in process (httpx.ASGITransport), for every folder's tests.

    async with make_client(sandbox, realm, StaticTokens(token), transport=CountingTransport(sandbox)) as qbo:
        ...
"""

from __future__ import annotations

import httpx

from qbflow.qbo import (
    NeedsReconnect,
    QBOClient,
    RealmPacer,
    RefreshingTokens,
    RetryPolicy,
    StaticTokens,
    TokenSet,
)
from qbflow.sandbox.app import Sandbox

__all__ = ["BASE_URL", "FAST_RETRY", "SALES_LINE", "CountingTransport", "SandboxTokens", "make_client"]

BASE_URL = "http://sandbox.test"
# Real retries, tiny waits: tests must not sleep for seconds.
FAST_RETRY = RetryPolicy(attempts=8, timeout=60.0, wait_initial=0.005, wait_max=0.05, wait_jitter=0.005)
SALES_LINE = [{"Amount": 100.0, "DetailType": "SalesItemLineDetail",
               "SalesItemLineDetail": {"ItemRef": {"value": "1"}}}]


class CountingTransport(httpx.AsyncBaseTransport):
    """Passes requests to the sandbox and keeps them, so tests can count and inspect what was sent."""

    def __init__(self, app: Sandbox) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await self.inner.handle_async_request(request)

    def api_requests(self, rest: str = "") -> list[httpx.Request]:
        return [r for r in self.requests if "/v3/company/" in r.url.path and r.url.path.split("/", 4)[-1]
                .startswith(rest)]


class SandboxTokens(RefreshingTokens):
    """Tokens from the sandbox's OAuth server; refresh is a real refresh_token grant at its token endpoint.

    Remembers every token it ever held, so tests can look for them in logs and messages.
    """

    def __init__(self, sandbox: Sandbox, realm: str, connection: str = "test-company") -> None:
        issued = sandbox.oauth.issue_tokens_for_tests(sandbox.client_id, realm)
        super().__init__(initial=TokenSet(issued["access_token"]))  # no expiry known: refresh on 401 only
        self.sandbox = sandbox
        self.connection = connection
        self.refresh_token = issued["refresh_token"]
        self.seen = [issued["access_token"], issued["refresh_token"]]
        self.rotate_calls = 0

    async def rotate(self, stale: str) -> TokenSet:
        self.rotate_calls += 1
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.sandbox), base_url=BASE_URL) as http:
            response = await http.post(
                "/oauth2/v1/tokens/bearer", data={"grant_type": "refresh_token", "refresh_token": self.refresh_token},
                auth=(self.sandbox.client_id, self.sandbox.client_secret), headers={"Accept": "application/json"})
        body = response.json()
        if response.status_code == 400 and body.get("error") == "invalid_grant":
            raise NeedsReconnect(self.connection, detail=body.get("error_description"))
        response.raise_for_status()
        self.refresh_token = body["refresh_token"]
        self.seen += [body["access_token"], body["refresh_token"]]
        return TokenSet(body["access_token"])


def answering_client(handler, **kwargs) -> QBOClient:
    """A client whose requests `handler` (an httpx.MockTransport handler, sync or async) answers, with a fixed token
    and no pacer unless given."""
    kwargs.setdefault("pacer", False)
    return QBOClient("9341453050000001", base_url=BASE_URL, tokens=StaticTokens("token"),
                     transport=httpx.MockTransport(handler), **kwargs)


def make_client(sandbox: Sandbox, realm: str, tokens, *, transport: httpx.AsyncBaseTransport | None = None,
                **kwargs) -> QBOClient:
    kwargs.setdefault("retry", FAST_RETRY)
    kwargs.setdefault("pacer", RealmPacer(realm))
    return QBOClient(realm, base_url=BASE_URL, tokens=tokens,
                     transport=transport or httpx.ASGITransport(app=sandbox), **kwargs)

