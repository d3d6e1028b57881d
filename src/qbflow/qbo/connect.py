"""Connecting a QuickBooks company: the OAuth 2.0 authorization-code flow on the user's machine.

    record = await connect("acme", client_id=..., client_secret=..., environment=Environment.intuit_sandbox(),
                           store=async_store, open_url=webbrowser.open)

What `connect` does, in order:

1. reads the OAuth server's discovery document (`IntuitOAuth.load`);
2. listens on 127.0.0.1 (a free port unless one is given) for `GET /callback`: a one-shot server on
   asyncio streams, so nothing else (no web framework, no access log) ever sees the code;
3. builds the authorize URL with a random `state` (`secrets.token_urlsafe`) and hands it to `open_url`
   (the CLI opens the browser, or prints the URL);
4. waits (bounded by `timeout`) for the redirect; a wrong or missing `state` (`StateMismatch`), an
   `error=access_denied` (`AuthorizationDenied`) or no `code` end the flow, and nothing is stored;
5. exchanges the code for tokens, reads CompanyInfo for the company's name through `QBOClient`;
6. stores the connection (`ConnectionStore.add(replace=True)`: reconnecting a name replaces its tokens and
   sets it back to "ok").

Intuit redirects only to URIs registered for the app (developer portal, Keys & credentials, Redirect URIs),
so with Intuit pass a fixed `port` and register `http://127.0.0.1:PORT/callback`. Intuit's production keys
accept only https redirect URIs; a local callback works with development keys and with our sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import html
import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from qbflow.errors import QBFlowError
from qbflow.qbo.client import PRODUCTION_BASE_URL, SANDBOX_BASE_URL, QBOClient, RetryPolicy
from qbflow.qbo.connections import token_result
from qbflow.qbo.errors import QBOError
from qbflow.qbo.oauth import (
    ACCOUNTING_SCOPE,
    INTUIT_PRODUCTION_DISCOVERY,
    INTUIT_SANDBOX_DISCOVERY,
    IntuitOAuth,
    local_sandbox_discovery,
)
from qbflow.qbo.tokens import StaticTokens
from qbflow.store import AsyncConnectionStore, ConnectionRecord

__all__ = [
    "ENV_LOCAL",
    "ENV_PRODUCTION",
    "ENV_SANDBOX",
    "AuthorizationDenied",
    "CallbackServer",
    "CallbackTimeout",
    "ConnectError",
    "Environment",
    "StateMismatch",
    "connect",
    "valid_connection_name",
]

log = logging.getLogger("qbflow.qbo.connect")

ENV_PRODUCTION = "production"  # Intuit, real companies
ENV_SANDBOX = "sandbox"  # Intuit's developer sandbox companies
ENV_LOCAL = "local"  # a `qbflow sandbox` at some URL

CALLBACK_PATH = "/callback"
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
_MAX_REQUEST_LINE = 8192
_MAX_HEADERS = 100


class ConnectError(QBFlowError):
    """The authorization did not complete; nothing was stored."""


class AuthorizationDenied(ConnectError):
    """The user (or Intuit) refused the authorization: the redirect carried `error=...`."""

    def __init__(self, name: str, error: str, description: str | None = None) -> None:
        self.error = error
        reason = "access was denied on the consent page" if error == "access_denied" else f"Intuit answered {error!r}"
        if description:
            reason += f" ({description})"
        super().__init__(f"Connection {name!r} was not made: {reason}. Nothing was stored.")


class StateMismatch(ConnectError):
    """The redirect's `state` is not the one this flow sent: it may be forged, so it is refused."""

    def __init__(self, name: str) -> None:
        super().__init__(f"Connection {name!r} was not made: the redirect's state does not match the one qbflow "
                         "sent (a stale tab or a forged request). Nothing was stored; run the command again.")


class CallbackTimeout(ConnectError):
    """No redirect arrived in time."""


def valid_connection_name(name: str) -> bool:
    """Names are typed into commands (`qbflow connect NAME`): letters, digits, `_.-`, at most 100."""
    return 0 < len(name) <= 100 and set(name) <= _NAME_CHARS and name[0] not in "-."


@dataclass(frozen=True)
class Environment:
    """Where a connection's company lives: its OAuth discovery document and its API base URL."""

    name: str
    discovery_url: str
    api_base: str

    @classmethod
    def production(cls) -> Environment:
        return cls(ENV_PRODUCTION, INTUIT_PRODUCTION_DISCOVERY, PRODUCTION_BASE_URL)

    @classmethod
    def intuit_sandbox(cls) -> Environment:
        return cls(ENV_SANDBOX, INTUIT_SANDBOX_DISCOVERY, SANDBOX_BASE_URL)

    @classmethod
    def local(cls, url: str) -> Environment:
        """A `qbflow sandbox` at `url` (e.g. http://127.0.0.1:8700): OAuth and API on one server."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"the sandbox URL must look like http://127.0.0.1:8700, not {url!r}")
        base = url.rstrip("/")
        return cls(ENV_LOCAL, local_sandbox_discovery(base), base)

    @classmethod
    def choose(cls, sandbox_url: str | None = None, production: bool = False) -> Environment:
        """`--sandbox URL` → our sandbox, `--production` → Intuit production, else Intuit's sandbox."""
        if sandbox_url and production:
            raise ValueError("--sandbox and --production exclude each other")
        if sandbox_url:
            return cls.local(sandbox_url)
        return cls.production() if production else cls.intuit_sandbox()


# --- the redirect catcher ------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Outcome:
    error: ConnectError | None = None
    code: str | None = None
    realm_id: str | None = None

    def __repr__(self) -> str:
        return f"_Outcome(error={self.error!r}, code={'***' if self.code else None}, realm_id={self.realm_id!r})"


_PAGE = ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>qbflow</title>"
         "<style>body{{font-family:sans-serif;max-width:36em;margin:3em auto}}</style></head>"
         "<body><h1>{title}</h1><p>{text}</p></body></html>")


class CallbackServer:
    """A one-shot HTTP server on 127.0.0.1 that catches the OAuth redirect to `/callback`.

    The first request to `/callback` decides the outcome (checked against `expected_state`); the browser
    gets a short page saying what happened. Nothing it receives is logged.
    """

    def __init__(self, name: str, expected_state: str, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.name = name
        self._state = expected_state
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._outcome: asyncio.Future[_Outcome] | None = None

    @property
    def redirect_uri(self) -> str:
        return f"http://{self.host}:{self.port}{CALLBACK_PATH}"

    async def start(self) -> str:
        """Listen; returns the redirect URI (with the port actually bound)."""
        self._outcome = asyncio.get_running_loop().create_future()
        try:
            self._server = await asyncio.start_server(self._handle, self.host, self.port)
        except OSError as exc:
            raise ConnectError(f"Could not listen on {self.host}:{self.port} for the OAuth redirect ({exc.strerror}). "
                               "Choose another --port.") from None
        self.port = self._server.sockets[0].getsockname()[1]
        return self.redirect_uri

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def __aenter__(self) -> CallbackServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def outcome(self) -> asyncio.Future[_Outcome]:
        assert self._outcome is not None, "start() first"
        return self._outcome

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, title, text = await asyncio.wait_for(self._answer(reader), 10)
        except (TimeoutError, ValueError, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            status, title, text = 400, "Bad request", "qbflow could not read this request."
        body = _PAGE.format(title=html.escape(title), text=html.escape(text)).encode("utf-8")
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}.get(status, "Error")
        head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nReferrer-Policy: no-referrer\r\n"
                "Connection: close\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            writer.write(head.encode("ascii") + body)
            await writer.drain()
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[int, str, str]:
        line = await reader.readline()
        if len(line) > _MAX_REQUEST_LINE or not line:
            raise ValueError("request line")
        for _ in range(_MAX_HEADERS):
            header = await reader.readline()
            if header in (b"\r\n", b"\n", b""):
                break
        parts = line.decode("latin-1").split()
        if len(parts) != 3:
            raise ValueError("request line")
        method, target = parts[0], parts[1]
        url = urlsplit(target)
        if url.path != CALLBACK_PATH:
            return 404, "Not found", "This is qbflow's OAuth callback; nothing else is served here."
        if method != "GET":
            return 405, "Method not allowed", "The OAuth redirect is a GET."
        if self.outcome.done():
            return 400, "Already answered", "qbflow already received an answer for this connection; close this tab."
        params: dict[str, str] = {}
        for key, value in parse_qsl(url.query, keep_blank_values=True):
            params.setdefault(key, value)
        outcome = self._decide(params)
        self.outcome.set_result(outcome)
        if outcome.error is None:
            return 200, "Connected", ("qbflow received the authorization. You can close this tab and return to "
                                      "the terminal.")
        return 400, "Not connected", str(outcome.error)

    def _decide(self, params: dict[str, str]) -> _Outcome:
        state = params.get("state", "")
        if not hmac.compare_digest(state.encode("utf-8"), self._state.encode("utf-8")):
            return _Outcome(error=StateMismatch(self.name))
        if params.get("error"):
            return _Outcome(error=AuthorizationDenied(self.name, params["error"], params.get("error_description")))
        if not params.get("code"):
            return _Outcome(error=ConnectError(f"Connection {self.name!r} was not made: the redirect carried no "
                                               "authorization code. Nothing was stored."))
        return _Outcome(code=params["code"], realm_id=params.get("realmId") or None)


# --- the flow ------------------------------------------------------------------------------------------
async def connect(
    name: str,
    *,
    client_id: str,
    client_secret: str,
    environment: Environment,
    store: AsyncConnectionStore,
    open_url: Callable[[str], object],
    port: int = 0,
    timeout: float = 300.0,
    scopes: Iterable[str] = (ACCOUNTING_SCOPE,),
    transport: httpx.AsyncBaseTransport | None = None,
    report: Callable[[str], object] = lambda _text: None,
) -> ConnectionRecord:
    """Run the authorization-code flow for connection `name` and store the result (see the module doc).

    `open_url(url)` runs in a thread (a browser launcher may block); `report(text)` hears progress.
    `transport` serves the OAuth server and the API alike (tests). Raises `ConnectError` subclasses,
    `QBOError` subclasses (`OAuthFailure`, `Transient`) from Intuit, or `CallbackTimeout`.
    """
    if not valid_connection_name(name):
        raise ConnectError(f"{name!r} cannot name a connection: use letters, digits, '_', '.' and '-' "
                           "(at most 100, not starting with '-' or '.').")
    oauth = IntuitOAuth(client_id, client_secret, discovery_url=environment.discovery_url, transport=transport)
    endpoints = await oauth.load()
    state = secrets.token_urlsafe(32)
    async with CallbackServer(name, state, port=port) as server:
        url = oauth.authorization_url(server.redirect_uri, state, scopes)
        opener = asyncio.ensure_future(asyncio.to_thread(open_url, url))
        opener.add_done_callback(_consume)
        try:
            outcome = await _first_answer(server.outcome, opener, timeout, name)
        finally:
            if not opener.done():
                opener.cancel()  # the thread itself runs on; only our wait for it ends
    if outcome.error is not None:
        raise outcome.error
    assert outcome.code is not None
    if not outcome.realm_id:
        raise ConnectError(f"Connection {name!r} was not made: the redirect named no company (realmId). "
                           "Nothing was stored.")
    report("Authorization received; exchanging the code for tokens.")
    return await finish_connection(oauth, endpoints, name=name, code=outcome.code, redirect_uri=server.redirect_uri,
                                   realm_id=outcome.realm_id, environment=environment, store=store,
                                   client_secret=client_secret, transport=transport, report=report)


async def finish_connection(
    oauth: IntuitOAuth,
    endpoints: Any,
    *,
    name: str,
    code: str,
    redirect_uri: str,
    realm_id: str,
    environment: Environment,
    store: AsyncConnectionStore,
    client_secret: str,
    transport: httpx.AsyncBaseTransport | None = None,
    report: Callable[[str], object] = lambda _text: None,
) -> ConnectionRecord:
    """The flow's last steps, wherever the redirect arrived (`connect`'s local callback, the server's
    /oauth/callback): exchange the code, read the company's name, store the connection (replacing one of
    that name). `endpoints` are `oauth.load()`'s."""
    tokens = await oauth.exchange(code, redirect_uri, realm_id=realm_id)
    company_name: str | None = None
    try:
        async with QBOClient(realm_id, base_url=environment.api_base, tokens=StaticTokens(tokens.access_token),
                             transport=transport, retry=RetryPolicy(attempts=3, timeout=30.0)) as qbo:
            company_name = (await qbo.company_info()).get("CompanyName") or None
    except QBOError as exc:
        # The grant exists at Intuit now; keep it (a name is only a label) rather than strand it.
        report(f"Could not read the company's name ({exc}); storing the connection without it.")
    return await store.add(
        name=name, realm_id=realm_id, company_name=company_name, environment=environment.name,
        api_base=environment.api_base, token_endpoint=endpoints.token_endpoint,
        revocation_endpoint=endpoints.revocation_endpoint, discovery_url=environment.discovery_url,
        client_id=oauth.client_id, client_secret=client_secret, tokens=token_result(tokens), replace=True,
    )


def _consume(future: asyncio.Future[object]) -> None:
    # A failure after the answer arrived is of no interest; retrieving it keeps asyncio from logging it.
    if not future.cancelled():
        future.exception()


async def _first_answer(outcome: asyncio.Future[_Outcome], opener: asyncio.Future[object], timeout: float,
                        name: str) -> _Outcome:
    """The callback's outcome; an exception from `open_url` ends the wait early."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pending: set[asyncio.Future] = {outcome, opener}
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise CallbackTimeout(f"Connection {name!r} was not made: no answer from the browser within "
                                  f"{timeout:g} s. Nothing was stored; run the command again.")
        done, pending = await asyncio.wait(pending, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        if outcome in done:
            return outcome.result()
        if opener in done and not opener.cancelled() and opener.exception() is not None:
            raise opener.exception()  # type: ignore[misc]
