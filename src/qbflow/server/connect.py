"""Connecting QuickBooks from the dashboard: "Connect QuickBooks" → Intuit's (or the sandbox's) consent page →
`GET /oauth/callback` → the connection stored, encrypted. And "Disconnect", which revokes at Intuit.

The flow is `qbflow connect`'s (`qbflow.qbo.connect`), with the dashboard's session in place of the one-shot
local callback server: the random `state` is kept in the session and checked on the way back (a forged or
stale redirect is refused and nothing is stored), the code is exchanged by `IntuitOAuth.exchange`, the
company's name read through `QBOClient`, and the connection stored with `ConnectionStore.add(replace=True)`.

The app's credentials come from the settings (`QBFLOW_CLIENT_ID`, `QBFLOW_CLIENT_SECRET`), as for `qbflow
connect`; the client secret never reaches the browser (the session cookie is signed, not encrypted, so only
the state, the connection's name and where it points are kept there). The redirect URI is
`QBFLOW_PUBLIC_URL` (or the address the browser used) + `/oauth/callback`: register it for your Intuit app.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hmac
import logging
import os
import secrets
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from qbflow.qbo.connect import (
    ENV_LOCAL,
    ENV_PRODUCTION,
    ENV_SANDBOX,
    Environment,
    finish_connection,
    valid_connection_name,
)
from qbflow.qbo.connections import revoke_connection
from qbflow.qbo.errors import QBOError
from qbflow.qbo.oauth import IntuitOAuth
from qbflow.server import auth
from qbflow.store import AsyncConnectionStore, ConnectionNotFound

__all__ = ["CALLBACK_PATH", "ENVIRONMENT_CHOICES", "credentials_configured", "redirect_uri", "router"]

log = logging.getLogger("qbflow.server.connect")

CALLBACK_PATH = "/oauth/callback"
ENVIRONMENT_CHOICES = (
    (ENV_SANDBOX, "Intuit developer sandbox"),
    (ENV_PRODUCTION, "Intuit production (a real company)"),
    (ENV_LOCAL, "Local qbflow sandbox (URL below)"),
)
PENDING_LIFETIME = 900  # seconds a consent page may take before its answer is refused
_PENDING = "oauth_connect"

router = APIRouter(include_in_schema=False)
LoggedIn = Depends(auth.require_login)


def _pages() -> Any:
    from qbflow.server import dashboard  # the dashboard includes this router, so it is imported at call time

    return dashboard


def _credentials(request: Request) -> tuple[str, str] | None:
    """The Intuit app's client id and secret: the settings', else QBFLOW_CLIENT_ID / QBFLOW_CLIENT_SECRET."""
    settings = request.app.state.settings
    client_id = getattr(settings, "client_id", None) or os.environ.get("QBFLOW_CLIENT_ID")
    secret = getattr(settings, "client_secret", None)
    secret = secret.get_secret_value() if hasattr(secret, "get_secret_value") else secret
    secret = secret or os.environ.get("QBFLOW_CLIENT_SECRET")
    if not client_id or not secret:
        return None
    return str(client_id).strip(), str(secret).strip()


def credentials_configured(request: Request) -> bool:
    """Whether the server knows an Intuit app to connect with (for the overview's connect form)."""
    return _credentials(request) is not None


def redirect_uri(request: Request) -> str:
    """Where Intuit sends the browser back: QBFLOW_PUBLIC_URL, else the server's configured public URL (`qbflow
    serve --public-url`), else the address the browser used (so the session cookie comes back with it), + the path."""
    public = (getattr(request.app.state.settings, "public_url", "") or "").strip()
    if not public:
        configured = getattr(getattr(request.app.state, "config", None), "public_url", "") or ""
        if configured and configured != _default_public_url():
            public = configured
    base = public or str(request.base_url)
    return base.rstrip("/") + CALLBACK_PATH


@functools.cache
def _default_public_url() -> str:
    """ServerConfig's default public URL: a placeholder, not something anyone configured."""
    from qbflow.server.app import ServerConfig  # app.py imports the dashboard, which imports this module

    return next(f.default for f in dataclasses.fields(ServerConfig) if f.name == "public_url")


def _transport(request: Request) -> Any:
    """The httpx transport to Intuit (`ServerConfig.transport`; tests mount the sandbox with it), or None."""
    return getattr(request.app.state, "transport", None)


def _environment(choice: str, sandbox_url: str) -> Environment:
    if choice == ENV_LOCAL:
        return Environment.local(sandbox_url.strip())
    if choice == ENV_PRODUCTION:
        return Environment.production()
    if choice == ENV_SANDBOX:
        return Environment.intuit_sandbox()
    raise ValueError(f"choose where the company is: {', '.join(key for key, _ in ENVIRONMENT_CHOICES)}")


def _not_connected(request: Request, text: str, status_code: int = 400) -> Response:
    return _pages().problem_page(request, status_code, "Not connected", text + " Nothing was stored.",
                                 back="/", back_label="Back to the dashboard (try again from there)")


@router.post("/connect", dependencies=[LoggedIn])
async def start_connect(request: Request, name: Annotated[str, Form()] = "",
                        environment: Annotated[str, Form()] = ENV_SANDBOX,
                        sandbox_url: Annotated[str, Form()] = "", csrf: Annotated[str, Form()] = "") -> Response:
    """Send the browser to the consent page, with a fresh random state kept in the session."""
    pages = _pages()
    if (refused := pages.csrf_refused(request, csrf)) is not None:
        return refused
    name = name.strip()

    def refuse(text: str) -> Response:
        pages.flash(request, text, "error")
        return pages._redirect("/")

    if not valid_connection_name(name):
        return refuse("A connection's name is letters, digits, '_', '.' and '-' (at most 100, not starting with "
                      "'-' or '.'), e.g. acme.")
    try:
        env = _environment(environment, sandbox_url)
    except ValueError as exc:
        return refuse(f"Not connected: {exc}.")
    credentials = _credentials(request)
    if credentials is None:
        return refuse("Not connected: the server has no Intuit app to connect with. Set QBFLOW_CLIENT_ID and "
                      "QBFLOW_CLIENT_SECRET (your app's keys; a local sandbox prints its own) and restart it.")
    oauth = IntuitOAuth(*credentials, discovery_url=env.discovery_url, transport=_transport(request))
    try:
        await oauth.load()
    except QBOError as exc:
        return refuse(f"Not connected: {exc}")
    state = secrets.token_urlsafe(32)
    callback = redirect_uri(request)
    request.session[_PENDING] = {"state": state, "name": name, "environment": env.name,
                                 "sandbox_url": env.api_base if env.name == ENV_LOCAL else "",
                                 "redirect_uri": callback, "started": time.time()}
    return pages._redirect(oauth.authorization_url(callback, state))


@router.get(CALLBACK_PATH, dependencies=[LoggedIn])
async def oauth_callback(request: Request) -> Response:
    """Intuit's redirect: check the state, then exchange the code and store the connection."""
    pages = _pages()
    params = request.query_params
    pending = request.session.pop(_PENDING, None)  # single use, whatever the outcome
    if not isinstance(pending, dict) or time.time() - float(pending.get("started", 0)) > PENDING_LIFETIME:
        return _not_connected(request, "No connection was being made from this browser, or it took longer than "
                                       f"{PENDING_LIFETIME // 60} minutes. Start again with Connect QuickBooks.")
    name = str(pending["name"])
    state = params.get("state", "")
    if not hmac.compare_digest(state.encode("utf-8"), str(pending["state"]).encode("utf-8")):
        log.warning("OAuth callback for %r refused: the state does not match", name)
        return _not_connected(request, f"Connection {name!r} was not made: the answer's state does not match the one "
                                       "this dashboard sent (a stale tab or a forged link).")
    if params.get("error"):
        error, description = params["error"], params.get("error_description")
        if error == "access_denied":
            return _not_connected(request, f"Connection {name!r} was not made: consent was denied on the "
                                           "QuickBooks page (Cancel was chosen).")
        detail = f" ({description})" if description else ""
        return _not_connected(request, f"Connection {name!r} was not made: Intuit answered {error!r}{detail}.")
    code, realm_id = params.get("code"), params.get("realmId")
    if not code:
        return _not_connected(request, f"Connection {name!r} was not made: the answer carried no authorization code.")
    if not realm_id:
        return _not_connected(request, f"Connection {name!r} was not made: the answer named no company (realmId).")
    credentials = _credentials(request)
    if credentials is None:
        return _not_connected(request, "The server no longer has QBFLOW_CLIENT_ID and QBFLOW_CLIENT_SECRET.")
    try:
        env = _environment(str(pending["environment"]), str(pending.get("sandbox_url") or ""))
        record = await _exchange_and_store(request, name, env, credentials, code, realm_id,
                                           str(pending["redirect_uri"]))
    except QBOError as exc:  # Intuit's answer; its messages never hold a code, token or secret
        return _not_connected(request, f"Connection {name!r} was not made: {exc}", status_code=502)
    except ValueError as exc:
        return _not_connected(request, f"Connection {name!r} was not made: {exc}.")
    pages.flash(request, f"Connected {record.company_name or record.realm_id} as {name!r}.")
    engine = request.app.state.engine
    if engine is not None and hasattr(engine, "request_poll"):
        engine.request_poll(name)  # workflows paused on this connection resume now, not at their next poll
    return pages._redirect("/")


async def _exchange_and_store(request: Request, name: str, env: Environment, credentials: tuple[str, str],
                              code: str, realm_id: str, callback: str) -> Any:
    """`qbflow.qbo.connect`'s last steps: exchange the code, read the company's name, store."""
    client_id, client_secret = credentials
    transport = _transport(request)
    oauth = IntuitOAuth(client_id, client_secret, discovery_url=env.discovery_url, transport=transport)
    endpoints = await oauth.load()
    async with AsyncConnectionStore(request.app.state.store.connections) as store:
        return await finish_connection(
            oauth, endpoints, name=name, code=code, redirect_uri=callback, realm_id=realm_id, environment=env,
            store=store, client_secret=client_secret, transport=transport,
            report=lambda text: log.warning("connection %r: %s", name, text))


@router.post("/connections/disconnect", dependencies=[LoggedIn])
async def disconnect(request: Request, name: Annotated[str, Form()] = "", force: Annotated[str, Form()] = "",
                     csrf: Annotated[str, Form()] = "") -> Response:
    """Revoke the connection's grant at Intuit, then delete it (with `force`, delete it even if Intuit refuses)."""
    pages = _pages()
    if (refused := pages.csrf_refused(request, csrf)) is not None:
        return refused
    connections = request.app.state.store.connections
    try:
        record = await asyncio.to_thread(connections.get, name)
    except ConnectionNotFound:
        pages.flash(request, f"There is no connection named {name!r}.", "error")
        return pages._redirect("/")
    try:
        await revoke_connection(record, transport=_transport(request))
        revoked = True
    except QBOError as exc:
        if not force:
            return pages.render(request, "message.html", {
                "title": "Not disconnected",
                "text": f"Intuit could not revoke connection {name!r}: {exc}. The connection was kept.",
                "back": "/", "back_label": "Back to the dashboard", "force_name": name}, status_code=502)
        revoked = False
    await asyncio.to_thread(connections.remove, name)
    pages.flash(request, f"Disconnected {name!r}" + (" (its access was revoked at Intuit)." if revoked else
                                                     "; Intuit could not revoke it: disconnect the app in QuickBooks."))
    return pages._redirect("/")
