"""Intuit's OAuth 2.0 authorization-code flow, through authlib (no hand-written token requests).

    oauth = IntuitOAuth(client_id, client_secret, discovery_url=INTUIT_SANDBOX_DISCOVERY)
    await oauth.load()                                        # reads the OpenID discovery document
    url = oauth.authorization_url(redirect_uri, state)        # send the user's browser here
    tokens = await oauth.exchange(code, redirect_uri, realm_id=realm)   # after the redirect back
    tokens = await oauth.refresh(tokens.refresh_token)        # Intuit rotates the refresh token
    await oauth.revoke(tokens.refresh_token)                  # ends the whole grant

Facts this follows (../shared/qbo/README.md section 6): the client authenticates with HTTP Basic
(`client_secret_basic`) at the token and revocation endpoints; token answers carry `expires_in` (3600 s)
and `x_refresh_token_expires_in` (about 100 days, rolling); a dead code or refresh token is answered
`400 {"error": "invalid_grant"}`; revocation takes a JSON body `{"token": ...}`.

Failures are `qbflow.qbo.errors` classes: `InvalidGrant` (only a new authorization helps; the connection
layer turns it into `NeedsReconnect`), `OAuthFailure` for any other refusal, `Transient` when the token
endpoint could not be reached or answered 5xx. No message, log line or repr here holds a token, a code or
the client secret.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from authlib.common.errors import AuthlibBaseError
from authlib.deprecate import AuthlibDeprecationWarning
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri

with warnings.catch_warnings():
    # Recent authlib prefers the `httpx2` package and warns when it falls back to `httpx`; qbflow speaks
    # httpx everywhere (the transports tests inject are httpx's), so the fallback is what we want.
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client

from qbflow.qbo.errors import AuthError, QBOError, Transient, redact
from qbflow.qbo.tls import tls_context
from qbflow.qbo.tokens import TokenSet

__all__ = [
    "ACCOUNTING_SCOPE",
    "INTUIT_PRODUCTION_DISCOVERY",
    "INTUIT_SANDBOX_DISCOVERY",
    "Endpoints",
    "IntuitOAuth",
    "InvalidGrant",
    "OAuthFailure",
    "OAuthTokens",
    "local_sandbox_discovery",
]

log = logging.getLogger("qbflow.qbo.oauth")

INTUIT_PRODUCTION_DISCOVERY = "https://developer.api.intuit.com/.well-known/openid_configuration"
INTUIT_SANDBOX_DISCOVERY = "https://developer.api.intuit.com/.well-known/openid_sandbox_configuration"
ACCOUNTING_SCOPE = "com.intuit.quickbooks.accounting"
# A refresh holds the connection's row lock (and SQLite's writer lock) while it runs: keep it short.
DEFAULT_TIMEOUT = httpx.Timeout(15.0, connect=5.0)


def local_sandbox_discovery(base_url: str) -> str:
    """The discovery URL of a `qbflow sandbox` served at `base_url`."""
    return f"{base_url.rstrip('/')}/.well-known/openid_sandbox_configuration"


class OAuthFailure(AuthError):
    """Intuit's OAuth server refused a request (`code` is the OAuth `error`, e.g. `invalid_client`)."""


class InvalidGrant(OAuthFailure):
    """The authorization code or refresh token is dead (expired, revoked, used): only reconnecting helps."""


@dataclass(frozen=True)
class Endpoints:
    """The URLs of Intuit's OAuth server, from its discovery document."""

    authorization_endpoint: str
    token_endpoint: str
    revocation_endpoint: str | None = None
    userinfo_endpoint: str | None = None
    issuer: str | None = None

    @classmethod
    def from_discovery(cls, document: Mapping[str, Any], source: str) -> Endpoints:
        missing = [key for key in ("authorization_endpoint", "token_endpoint") if not document.get(key)]
        if missing:
            raise OAuthFailure(f"The OpenID discovery document at {source} has no {' or '.join(missing)}.",
                               code="invalid_discovery")
        return cls(
            authorization_endpoint=str(document["authorization_endpoint"]),
            token_endpoint=str(document["token_endpoint"]),
            revocation_endpoint=_opt(document.get("revocation_endpoint")),
            userinfo_endpoint=_opt(document.get("userinfo_endpoint")),
            issuer=_opt(document.get("issuer")),
        )


def _opt(value: Any) -> str | None:
    return str(value) if value else None


@dataclass(frozen=True, repr=False)
class OAuthTokens(TokenSet):
    """A token answer: the access token and its expiry (a `TokenSet`), plus the refresh token, its expiry
    and, after an authorization, the company (realm) the user chose. Times are epoch seconds."""

    refresh_token: str | None = None
    refresh_expires_at: float | None = None
    realm_id: str | None = None
    scope: tuple[str, ...] = field(default=())

    def __repr__(self) -> str:
        return (f"OAuthTokens(access_token='***', expires_at={self.expires_at!r}, refresh_token="
                f"{'***' if self.refresh_token else None!r}, refresh_expires_at={self.refresh_expires_at!r}, "
                f"realm_id={self.realm_id!r})")


class IntuitOAuth:
    """Intuit's OAuth 2.0 server for one app (client id and secret), found through a discovery document.

    `discovery_url` is `INTUIT_PRODUCTION_DISCOVERY`, `INTUIT_SANDBOX_DISCOVERY` (Intuit's developer
    sandbox companies) or `local_sandbox_discovery(url)` (our `qbflow sandbox`). `endpoints` skips the
    discovery request when the URLs are already known (a stored connection). `transport` is handed to
    httpx (tests mount the sandbox in-process with it).
    """

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        *,
        discovery_url: str = INTUIT_PRODUCTION_DISCOVERY,
        endpoints: Endpoints | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        clock: Any = time.time,
    ) -> None:
        if not client_id:
            raise ValueError("client_id is required")
        if not client_secret:
            raise ValueError("client_secret is required")
        self.client_id = client_id
        self._client_secret = client_secret
        self.discovery_url = discovery_url
        self._endpoints = endpoints
        self._transport = transport
        self._timeout = timeout
        self._clock = clock

    def __repr__(self) -> str:
        return f"IntuitOAuth(client_id={self.client_id!r}, client_secret='***', discovery_url={self.discovery_url!r})"

    # --- discovery -----------------------------------------------------------------------------------
    @property
    def endpoints(self) -> Endpoints:
        """The server's endpoints (call `load()` first unless they were given)."""
        if self._endpoints is None:
            raise RuntimeError("IntuitOAuth.load() must be awaited before the endpoints are known")
        return self._endpoints

    async def load(self) -> Endpoints:
        """Read the discovery document (once) and return the endpoints it names."""
        if self._endpoints is not None:
            return self._endpoints
        async with httpx.AsyncClient(transport=self._transport, timeout=self._timeout, verify=tls_context()) as http:
            try:
                response = await http.get(self.discovery_url, headers={"Accept": "application/json"})
            except httpx.TransportError as exc:
                raise Transient(f"Could not reach Intuit's OAuth discovery document at {self.discovery_url} "
                                f"({type(exc).__name__}).") from None
        if response.status_code != 200:
            cls = Transient if response.status_code >= 500 else OAuthFailure
            raise cls(f"Intuit's OAuth discovery document at {self.discovery_url} answered HTTP "
                      f"{response.status_code}.", status_code=response.status_code)
        try:
            document = response.json()
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise OAuthFailure(f"{self.discovery_url} is not an OpenID discovery document (not a JSON object).",
                               code="invalid_discovery")
        self._endpoints = Endpoints.from_discovery(document, self.discovery_url)
        return self._endpoints

    # --- the flow ------------------------------------------------------------------------------------
    def authorization_url(self, redirect_uri: str, state: str, scopes: Iterable[str] = (ACCOUNTING_SCOPE,)) -> str:
        """The URL of Intuit's consent page; it redirects to `redirect_uri` with `code`, `state`, `realmId`."""
        if not state:
            raise ValueError("state is required (a random value checked on the redirect)")
        return prepare_grant_uri(self.endpoints.authorization_endpoint, client_id=self.client_id,
                                 response_type="code", redirect_uri=redirect_uri, scope=" ".join(scopes),
                                 state=state)

    async def exchange(self, code: str, redirect_uri: str, realm_id: str | None = None) -> OAuthTokens:
        """Trade the authorization code from the redirect for tokens; `realm_id` is the redirect's `realmId`."""
        started = self._clock()
        async with self._client() as client:
            answer = await self._token_call(
                "authorization code exchange",
                client.fetch_token(self.endpoints.token_endpoint, grant_type="authorization_code", code=code,
                                   redirect_uri=redirect_uri),
                secrets=(code,),
            )
        return self._tokens(answer, started, realm_id)

    async def refresh(self, refresh_token: str) -> OAuthTokens:
        """New tokens for a refresh token. Intuit usually rotates the refresh token: store the new one
        before anything else uses the old. Raises `InvalidGrant` when the refresh token is dead."""
        started = self._clock()
        async with self._client() as client:
            answer = await self._token_call(
                "token refresh",
                client.refresh_token(self.endpoints.token_endpoint, refresh_token=refresh_token),
                secrets=(refresh_token,),
            )
        tokens = self._tokens(answer, started, None)
        if tokens.refresh_token is None:  # the server kept the old one
            tokens = OAuthTokens(tokens.access_token, tokens.expires_at, refresh_token=refresh_token,
                                 refresh_expires_at=tokens.refresh_expires_at, scope=tokens.scope)
        return tokens

    async def revoke(self, token: str) -> None:
        """Revoke a refresh (or access) token, which ends the whole grant at Intuit.

        Raises `OAuthFailure` if Intuit refuses (it answers 400 for a token that is unknown or already
        revoked) and `Transient` if it cannot be reached.
        """
        endpoint = self.endpoints.revocation_endpoint
        if not endpoint:
            raise OAuthFailure("This OAuth server names no revocation endpoint.", code="unsupported")
        async with self._client() as client:
            try:
                # Intuit documents a JSON body here (not RFC 7009's form); authlib adds the Basic auth.
                response = await client.request("POST", endpoint, json={"token": token}, withhold_token=True,
                                                auth=client.client_auth("client_secret_basic"),
                                                headers={"Accept": "application/json"})
            except httpx.TransportError as exc:
                raise Transient(f"Could not reach Intuit's revocation endpoint ({type(exc).__name__}).",
                                path=httpx.URL(endpoint).path) from None
        if response.status_code == 200:
            log.debug("token revoked at %s", httpx.URL(endpoint).host)
            return
        error, description = _oauth_error_of(response)
        description = redact(description, (token, self._client_secret))
        cls = Transient if response.status_code >= 500 else OAuthFailure
        what = f"{error}: {description}" if description else (error or "no reason given")
        raise cls(f"Intuit refused to revoke the token (HTTP {response.status_code}, {what}).",
                  code=error, status_code=response.status_code, path=httpx.URL(endpoint).path)

    # --- internals -----------------------------------------------------------------------------------
    def _client(self) -> AsyncOAuth2Client:
        # One short-lived client per call: calls are rare, and a client must not outlive its event loop.
        return AsyncOAuth2Client(client_id=self.client_id, client_secret=self._client_secret,
                                 token_endpoint_auth_method="client_secret_basic",
                                 revocation_endpoint_auth_method="client_secret_basic",
                                 transport=self._transport, timeout=self._timeout, follow_redirects=False)

    async def _token_call(self, what: str, call: Any, secrets: tuple[str, ...]) -> Mapping[str, Any]:
        path = httpx.URL(self.endpoints.token_endpoint).path
        secrets = (*secrets, self._client_secret)
        try:
            answer = await call
        except AuthlibBaseError as exc:
            error = str(exc.error or "oauth_error")
            description = redact(exc.description or None, secrets)
            cls = InvalidGrant if error == "invalid_grant" else OAuthFailure
            message = f"Intuit refused the {what}: {error}" + (f" ({description})" if description else "")
            log.debug("%s refused: %s", what, error)
            raise cls(message, code=error, path=path) from None
        except httpx.HTTPStatusError as exc:  # authlib raises this for 5xx and for bodies that are not JSON
            status = exc.response.status_code
            failure: type[QBOError] = Transient if status >= 500 else OAuthFailure
            raise failure(f"Intuit's token endpoint failed the {what} (HTTP {status}).", status_code=status,
                      path=path) from None
        except httpx.TransportError as exc:
            raise Transient(f"Could not reach Intuit's token endpoint for the {what} ({type(exc).__name__}).",
                            path=path) from None
        except ValueError:
            raise OAuthFailure(f"Intuit's token endpoint answered the {what} with something that is not a token.",
                               path=path) from None
        log.debug("%s succeeded", what)
        return answer

    def _tokens(self, answer: Mapping[str, Any], started: float, realm_id: str | None) -> OAuthTokens:
        access = answer.get("access_token")
        if not access:
            raise OAuthFailure("Intuit's token answer has no access_token.")
        expires_in = _seconds(answer.get("expires_in"))
        refresh_in = _seconds(answer.get("x_refresh_token_expires_in"))
        scope = answer.get("scope")
        return OAuthTokens(
            str(access),
            # Counted from before the request: a token is never believed valid longer than it is.
            expires_at=None if expires_in is None else started + expires_in,
            refresh_token=str(answer["refresh_token"]) if answer.get("refresh_token") else None,
            refresh_expires_at=None if refresh_in is None else started + refresh_in,
            realm_id=realm_id,
            scope=tuple(str(scope).split()) if scope else (),
        )


def _seconds(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _oauth_error_of(response: httpx.Response) -> tuple[str | None, str | None]:
    try:
        body = response.json()
    except ValueError:
        return None, None
    if not isinstance(body, dict):
        return None, None
    error, description = body.get("error"), body.get("error_description")
    return (str(error) if error else None), (str(description) if description else None)
