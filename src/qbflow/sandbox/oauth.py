"""Intuit's OAuth 2.0 / OpenID Connect server, emulated for the sandbox.

One Starlette route list serves what Intuit spreads over several hosts: the discovery documents
(`/.well-known/openid_configuration`, `/.well-known/openid_sandbox_configuration`), the consent page
(`/connect/oauth2`, appcenter.intuit.com), the token endpoint (`/oauth2/v1/tokens/bearer`), revocation
(`/v2/oauth2/tokens/revoke`), userinfo (`/v1/openid_connect/userinfo`) and the signing keys (`/op/v1/jwks`).
Every URL in the discovery document is built from the request's base URL, so a client pointed at the
sandbox's discovery URL (intuit-oauth's `environment=`) talks only to the sandbox.

Behaviour follows what Intuit is observed or documented to do (see ../shared/qbo/README.md section 6):
access tokens live 3600 s; refresh tokens have a rolling 8726400 s life under a five-year hard cap; each
refresh hands out a new refresh token and the previous one keeps working for 24 hours; an authorization
code is single-use, and replaying it revokes what it produced; revocation ends the whole grant at once.

Grant and token state lives in `Storage` (one JSON blob), so connections survive a sandbox restart when
it runs with a data file. Only SHA-256 digests of codes and tokens are stored, never the values, and no
token value is ever logged or put into an exception message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import json
import logging
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from qbflow.sandbox.clock import Clock
from qbflow.sandbox.storage import Storage

log = logging.getLogger(__name__)

# Lifetimes, in seconds.
ACCESS_TOKEN_TTL = 3600  # Intuit auth FAQ: access tokens are valid for 3600 s
REFRESH_TOKEN_TTL = 8_726_400  # x_refresh_token_expires_in Intuit returns at issue (~101 days, rolling)
REFRESH_TOKEN_HARD_TTL = 5 * 365 * 86400  # 2025 policy: refresh tokens expire at most five years after grant
ROTATED_REFRESH_GRACE = 24 * 3600  # a superseded refresh token keeps working this long
# Intuit does not publish the code lifetime; RFC 6749 section 4.1.2 recommends at most ten minutes.
AUTH_CODE_TTL = 300
ID_TOKEN_TTL = 3600  # exp - iat in Intuit's sample id_tokens
CONSENT_TTL = 600  # how long a rendered consent page can still be submitted
# Keep expired access tokens a while so `authenticate` can say "expired" rather than "invalid".
EXPIRED_ACCESS_RETENTION = 7 * 86400
# Keep spent codes past their expiry so a late replay is still recognised and its grant revoked.
USED_CODE_RETENTION = 3600

ACCOUNTING_SCOPE = "com.intuit.quickbooks.accounting"
PAYMENT_SCOPE = "com.intuit.quickbooks.payment"
OPENID_SCOPE = "openid"
# Scope values intuit-oauth knows (intuitlib.enums.Scopes); anything else is `invalid_scope`.
KNOWN_SCOPES = frozenset(
    {
        "openid",
        "profile",
        "email",
        "phone",
        "address",
        "intuit_name",
        ACCOUNTING_SCOPE,
        PAYMENT_SCOPE,
        "com.intuit.quickbooks.payroll",
        "com.intuit.quickbooks.payroll.timetracking",
        "com.intuit.quickbooks.payroll.benefits",
        "com.intuit.quickbooks.payroll.payslip.read",
        "project-management.project",
        "app-foundations.custom-field-definitions.read",
        "app-foundations.custom-field-definitions",
        "payroll.compensation.read",
        "indirect-tax.tax-calculation.quickbooks",
        "tax-compliance.workpapers.read",
    }
)

_QUALIFIER_SCOPES = frozenset({"profile", "email", "phone", "address", "intuit_name"})

_STATE_KEY = "sandbox.oauth"
_JSON_TYPE = "application/json;charset=UTF-8"
# Intuit's body for a bad authorization code (oauth-jsclient README / error-handling demo) and for a bad
# refresh token (routablehq/python-quickbooks#272, #397; QuickBooks-V3-PHP-SDK#308).
_BAD_CODE = {"error": "invalid_grant", "error_description": "Token invalid"}
_BAD_REFRESH = {"error": "invalid_grant", "error_description": "Incorrect or invalid refresh token"}

# The identity behind every sandbox connection: the developer signed in to the sandbox.
_SANDBOX_USER = {
    "email": "sandbox.developer@example.com",
    "emailVerified": True,
    "givenName": "Sandbox",
    "familyName": "Developer",
    "phoneNumber": "+1 6505550100",
    "phoneNumberVerified": False,
    "address": {
        "streetAddress": "2700 Coast Avenue",
        "locality": "Mountain View",
        "region": "CA",
        "postalCode": "94043",
        "country": "US",
    },
}


@dataclass
class OAuthApp:
    """A registered app (its development keys)."""

    client_id: str
    client_secret: str
    # None = accept any http(s) redirect URI (the sandbox's default app); otherwise exact match only.
    redirect_uris: list[str] | None = None


@dataclass
class Company:
    """A company the sandbox user can connect an app to."""

    realm_id: str
    name: str


class AuthFailure(Exception):
    """A bearer token that does not authorise the request.

    `detail` is safe to show (never more than a short prefix of the token); `status` is 401 for a
    missing/invalid/expired/revoked token and 403 for a good token used where it has no authority
    (another company, no accounting scope), as QBO answers AuthenticationFailed vs AuthorizationFailed.
    """

    def __init__(self, detail: str, status: int = 401) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _redact(token: str) -> str:
    return token[:12] + "..."


class OAuthServer:
    """The sandbox's authorization server; `routes()` is mounted into the sandbox app."""

    def __init__(
        self,
        *,
        clock: Clock,
        storage: Storage,
        apps: list[OAuthApp],
        companies: Callable[[], list[Company]],
        auto_approve: bool = False,
    ) -> None:
        self.clock = clock
        self.storage = storage
        self.apps = {app.client_id: app for app in apps}
        self.companies = companies
        self.auto_approve = auto_approve
        # The signing key is made fresh at each start: id_tokens are checked once, when issued.
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._kid = secrets.token_urlsafe(15)
        # Rendered-but-unsubmitted consent pages; short-lived, so not worth persisting.
        self._consents: dict[str, dict[str, Any]] = {}
        state = storage.kv_get(_STATE_KEY)
        if not isinstance(state, dict):
            state = {}
        state.setdefault("user_sub", str(uuid.uuid4()))
        for table in ("grants", "codes", "access", "refresh"):
            state.setdefault(table, {})
        self._state: dict[str, Any] = state
        self._save()

    # wiring ------------------------------------------------------------------------------------
    def routes(self) -> list[BaseRoute]:
        routes: list[BaseRoute] = []
        for name in ("openid_configuration", "openid_sandbox_configuration"):
            for suffix in ("", "/"):
                routes.append(Route(f"/.well-known/{name}{suffix}", self._discovery, methods=["GET"]))
        routes += [
            Route("/connect/oauth2", self._authorize, methods=["GET", "POST"]),
            Route("/oauth2/v1/tokens/bearer", self._token, methods=["POST"]),
            Route("/v2/oauth2/tokens/revoke", self._revoke, methods=["POST"]),
            Route("/v1/openid_connect/userinfo", self._userinfo, methods=["GET"]),
            Route("/op/v1/jwks", self._jwks, methods=["GET"]),
        ]
        return routes

    # API for the rest of the sandbox -----------------------------------------------------------
    def authenticate(self, authorization: str | None, realm_id: str) -> None:
        """Accept only a live bearer access token granted for `realm_id` with the accounting scope."""
        token = _bearer(authorization)
        if token is None:
            raise AuthFailure("Bearer token missing" if not authorization else "Token invalid")
        record = self._state["access"].get(_digest(token))
        if record is None:
            raise AuthFailure("Token invalid")
        grant = self._state["grants"].get(record["grant_id"])
        if grant is None or grant["revoked_at"] is not None:
            raise AuthFailure("Token revoked")
        if self.clock.time() >= record["expires"]:
            raise AuthFailure(f"Token expired: {_redact(token)}")
        if ACCOUNTING_SCOPE not in grant["scopes"]:
            raise AuthFailure("The access token does not have sufficient scope", status=403)
        if grant["realm_id"] != realm_id:
            raise AuthFailure("Token not valid for this company", status=403)

    def issue_tokens_for_tests(
        self,
        client_id: str,
        realm_id: str,
        *,
        scopes: list[str] | None = None,
        base_url: str = "http://testserver",
    ) -> dict:
        """Create a grant as if the user had connected, and return the token JSON."""
        if client_id not in self.apps:
            raise ValueError(f"unknown client_id {client_id!r}")
        now = self.clock.time()
        grant_id = self._new_grant(client_id, realm_id, scopes or [ACCOUNTING_SCOPE], now, auth_time=now)
        body = self._issue(grant_id, base_url, now, hard_expires_header=False)
        self._save()
        return body

    # discovery and keys ------------------------------------------------------------------------
    async def _discovery(self, request: Request) -> Response:
        base = _base_url(request)
        # Same keys and values as Intuit's document; only the hosts point back at this sandbox.
        doc = {
            "issuer": f"{base}/op/v1",
            "authorization_endpoint": f"{base}/connect/oauth2",
            "token_endpoint": f"{base}/oauth2/v1/tokens/bearer",
            "userinfo_endpoint": f"{base}/v1/openid_connect/userinfo",
            "revocation_endpoint": f"{base}/v2/oauth2/tokens/revoke",
            "jwks_uri": f"{base}/op/v1/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile", "address", "phone"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "claims_supported": ["aud", "exp", "iat", "iss", "realmid", "sub"],
        }
        return self._json(200, doc, no_store=False)

    async def _jwks(self, request: Request) -> Response:
        numbers = self._key.public_key().public_numbers()
        key = {
            "kty": "RSA",
            "e": _b64url_uint(numbers.e),
            "use": "sig",
            "kid": self._kid,
            "alg": "RS256",
            "n": _b64url_uint(numbers.n),
        }
        return self._json(200, {"keys": [key]}, no_store=False)

    # authorization endpoint --------------------------------------------------------------------
    async def _authorize(self, request: Request) -> Response:
        if request.method == "POST":
            return await self._consent_answer(request)
        params = request.query_params
        client_id = params.get("client_id", "")
        redirect_uri = params.get("redirect_uri", "")
        state = params.get("state")
        app = self.apps.get(client_id)
        # Without a trusted client and redirect URI there is nowhere safe to send an error (RFC 6749
        # 4.1.2.1): Intuit shows its own error page then.
        if app is None:
            return _error_page("The app (client_id) is not known to this sandbox.")
        if not self._redirect_allowed(app, redirect_uri):
            return _error_page("The redirect_uri is not registered for this app.")

        response_type = params.get("response_type")
        if not response_type:
            return _redirect_error(redirect_uri, "invalid_request", state)
        if response_type != "code":
            return _redirect_error(redirect_uri, "unsupported_response_type", state)
        scopes = params.get("scope", "").split()
        if not _scopes_acceptable(scopes):
            return _redirect_error(redirect_uri, "invalid_scope", state)

        needs_realm = _needs_realm(scopes)
        companies = self.companies() if needs_realm else []
        if needs_realm and not companies:
            return _error_page("There is no sandbox company to connect to.")
        request_info = {
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scopes": scopes,
            "state": state,
        }
        if self.auto_approve:
            realm = companies[0].realm_id if needs_realm else None
            return self._approve(request_info, realm)

        self._expire_consents()
        ticket = secrets.token_urlsafe(24)
        self._consents[ticket] = {**request_info, "expires": self.clock.time() + CONSENT_TTL}
        page = _consent_html(request.url.path, ticket, client_id, scopes, companies)
        # The page carries a live consent ticket: keep it out of caches and out of other sites' frames.
        return HTMLResponse(page, headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"})

    async def _consent_answer(self, request: Request) -> Response:
        form = _parse_form(await request.body())
        self._expire_consents()
        # Single use: the ticket binds the answer to the request that was validated when the page was
        # shown, so the form cannot be replayed or pointed at another client or redirect URI.
        pending = self._consents.pop(form.get("consent_ticket", ""), None)
        if pending is None:
            return _error_page("This authorization request has expired or was already answered.")
        if form.get("action") != "approve":
            return _redirect_error(pending["redirect_uri"], "access_denied", pending["state"])
        realm: str | None = None
        if _needs_realm(pending["scopes"]):
            realm = form.get("realm_id", "")
            if realm not in {c.realm_id for c in self.companies()}:
                return _error_page("Choose one of the listed companies.")
        return self._approve(pending, realm)

    def _approve(self, request_info: dict[str, Any], realm: str | None) -> Response:
        code = secrets.token_urlsafe(48)
        now = self.clock.time()
        self._state["codes"][_digest(code)] = {
            "client_id": request_info["client_id"],
            "redirect_uri": request_info["redirect_uri"],
            "realm_id": realm,
            "scopes": request_info["scopes"],
            "auth_time": now,
            "expires": now + AUTH_CODE_TTL,
            "used": False,
            "grant_id": None,
        }
        self._save()
        params: list[tuple[str, str]] = [("code", code)]
        if request_info["state"] is not None:
            params.append(("state", request_info["state"]))
        if realm is not None:
            # Intuit adds realmId only for the accounting/payment scopes (oauth-pythonclient#28).
            params.append(("realmId", realm))
        return RedirectResponse(_with_query(request_info["redirect_uri"], params), status_code=302)

    def _redirect_allowed(self, app: OAuthApp, redirect_uri: str) -> bool:
        if not redirect_uri:
            return False
        if app.redirect_uris is not None:
            return redirect_uri in app.redirect_uris
        parts = urlsplit(redirect_uri)
        return parts.scheme in ("http", "https") and bool(parts.netloc) and not parts.fragment

    def _expire_consents(self) -> None:
        now = self.clock.time()
        for ticket in [t for t, p in self._consents.items() if p["expires"] <= now]:
            del self._consents[ticket]

    # token endpoint ----------------------------------------------------------------------------
    async def _token(self, request: Request) -> Response:
        form = _parse_form(await request.body())
        app = self._client(request, form)
        if app is None:
            return self._json(401, {"error": "invalid_client"})
        grant_type = form.get("grant_type")
        hard = request.headers.get("x-include-refresh-token-hard-expires-in", "").lower() == "true"
        if not grant_type:
            return self._json(400, {"error": "invalid_request"})
        if grant_type == "authorization_code":
            return self._exchange_code(request, app, form, hard)
        if grant_type == "refresh_token":
            return self._refresh(request, app, form, hard)
        return self._json(400, {"error": "unsupported_grant_type"})

    def _exchange_code(self, request: Request, app: OAuthApp, form: dict[str, str], hard: bool) -> Response:
        code = form.get("code")
        if not code:
            return self._json(400, {"error": "invalid_request"})
        now = self.clock.time()
        key = _digest(code)
        record = self._state["codes"].get(key)
        if record is None or record["client_id"] != app.client_id:
            return self._json(400, _BAD_CODE)
        if record["used"]:
            # RFC 6749 10.5: a replayed code may be stolen, so end what it produced. Intuit does the
            # same (oauth-jsclient#173: a second call with the same code invalidates its tokens).
            if record["grant_id"]:
                self._revoke_grant(record["grant_id"])
                log.warning("authorization code replayed; its grant was revoked (client %s)", app.client_id)
            self._save()
            return self._json(400, _BAD_CODE)
        if now >= record["expires"]:
            return self._json(400, _BAD_CODE)
        if form.get("redirect_uri") != record["redirect_uri"]:
            # The code stays usable: a mistyped redirect_uri is no sign of theft.
            return self._json(400, _BAD_CODE)
        grant_id = self._new_grant(
            app.client_id, record["realm_id"], record["scopes"], now, auth_time=record["auth_time"]
        )
        record["used"] = True
        record["grant_id"] = grant_id
        body = self._issue(grant_id, _base_url(request), now, hard)
        self._save()
        return self._json(200, body)

    def _refresh(self, request: Request, app: OAuthApp, form: dict[str, str], hard: bool) -> Response:
        token = form.get("refresh_token")
        if not token:
            return self._json(400, {"error": "invalid_request"})
        now = self.clock.time()
        record = self._state["refresh"].get(_digest(token))
        grant = self._state["grants"].get(record["grant_id"]) if record else None
        if record is None or grant is None or grant["client_id"] != app.client_id:
            return self._json(400, _BAD_REFRESH)
        if not self._refresh_usable(record, grant, now):
            return self._json(400, _BAD_REFRESH)
        body = self._issue(record["grant_id"], _base_url(request), now, hard)
        self._save()
        return self._json(200, body)

    def _refresh_usable(self, record: dict[str, Any], grant: dict[str, Any], now: float) -> bool:
        if grant["revoked_at"] is not None or now >= record["expires"] or now >= grant["hard_expires"]:
            return False
        superseded = record["superseded_at"]
        return superseded is None or now < superseded + ROTATED_REFRESH_GRACE

    def _new_grant(
        self, client_id: str, realm_id: str | None, scopes: list[str], now: float, *, auth_time: float
    ) -> str:
        grant_id = uuid.uuid4().hex
        self._state["grants"][grant_id] = {
            "client_id": client_id,
            "realm_id": realm_id,
            "scopes": list(scopes),
            "auth_time": auth_time,
            # The five-year cap runs from when the connection was made and does not roll.
            "hard_expires": now + REFRESH_TOKEN_HARD_TTL,
            "revoked_at": None,
            "latest_refresh": None,
        }
        return grant_id

    def _issue(self, grant_id: str, base_url: str, now: float, hard_expires_header: bool) -> dict:
        """Mint a new access and refresh token for the grant; the previous refresh token starts its grace."""
        grant = self._state["grants"][grant_id]
        access = secrets.token_urlsafe(512)  # opaque and long, as Intuit's (~900-char) access tokens
        refresh = secrets.token_urlsafe(48)
        self._state["access"][_digest(access)] = {"grant_id": grant_id, "expires": now + ACCESS_TOKEN_TTL}
        previous = self._state["refresh"].get(grant["latest_refresh"] or "")
        if previous is not None and previous["superseded_at"] is None:
            previous["superseded_at"] = now
        refresh_expires = min(now + REFRESH_TOKEN_TTL, grant["hard_expires"])
        refresh_key = _digest(refresh)
        self._state["refresh"][refresh_key] = {
            "grant_id": grant_id,
            "expires": refresh_expires,
            "superseded_at": None,
        }
        grant["latest_refresh"] = refresh_key
        # Field order as in Intuit's responses.
        body: dict[str, Any] = {
            "token_type": "bearer",
            "expires_in": ACCESS_TOKEN_TTL,
            "refresh_token": refresh,
            "x_refresh_token_expires_in": int(refresh_expires - now),
            "access_token": access,
        }
        if hard_expires_header:
            body["x_refresh_token_hard_expires_in"] = int(grant["hard_expires"] - now)
        if OPENID_SCOPE in grant["scopes"]:
            body["id_token"] = self._id_token(grant, base_url, now)
        return body

    def _id_token(self, grant: dict[str, Any], base_url: str, now: float) -> str:
        # Claims and header as in Intuit's sample id_tokens (oauth-jsclient test/mocks).
        claims: dict[str, Any] = {
            "sub": self._state["user_sub"],
            "aud": [grant["client_id"]],
        }
        if grant["realm_id"] is not None:
            claims["realmid"] = grant["realm_id"]
        claims.update(
            {
                "auth_time": int(grant["auth_time"]),
                "iss": f"{base_url}/op/v1",
                "exp": int(now) + ID_TOKEN_TTL,
                "iat": int(now),
            }
        )
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self._kid, "typ": None})

    # revocation --------------------------------------------------------------------------------
    async def _revoke(self, request: Request) -> Response:
        raw = await request.body()
        app = self._client(request, {})
        if app is None:
            return self._json(401, {"error": "invalid_client"})
        token = _revoke_token_param(request.headers.get("content-type", ""), raw)
        grant_id = self._live_grant_for(token, app.client_id) if token else None
        if grant_id is None:
            # Intuit answers 400 with an empty body for a token it cannot revoke, including one that
            # is already revoked (oauth-jsclient#18, #71), although RFC 7009 would say 200.
            return self._plain(400)
        self._revoke_grant(grant_id)
        self._save()
        # Success is 200 with nothing in the body (QuickBooks-V3-Java-SDK#35: revoke "doesn't return
        # anything"); intuit-oauth only looks at the status.
        return self._plain(200)

    def _live_grant_for(self, token: str, client_id: str) -> str | None:
        """The grant a still-usable access or refresh token of this client belongs to."""
        now = self.clock.time()
        key = _digest(token)
        access = self._state["access"].get(key)
        refresh = self._state["refresh"].get(key)
        record = access or refresh
        if record is None:
            return None
        grant = self._state["grants"].get(record["grant_id"])
        if grant is None or grant["client_id"] != client_id or grant["revoked_at"] is not None:
            return None
        if access is not None and now >= access["expires"]:
            return None
        if refresh is not None and not self._refresh_usable(refresh, grant, now):
            return None
        return record["grant_id"]

    def _revoke_grant(self, grant_id: str) -> None:
        grant = self._state["grants"].get(grant_id)
        if grant is not None and grant["revoked_at"] is None:
            grant["revoked_at"] = self.clock.time()

    # userinfo ----------------------------------------------------------------------------------
    async def _userinfo(self, request: Request) -> Response:
        token = _bearer(request.headers.get("authorization"))
        record = self._state["access"].get(_digest(token)) if token else None
        grant = self._state["grants"].get(record["grant_id"]) if record else None
        if (
            record is None
            or grant is None
            or grant["revoked_at"] is not None
            or self.clock.time() >= record["expires"]
        ):
            return self._json(
                401, {"error": "invalid_token"}, www_authenticate='Bearer error="invalid_token"'
            )
        scopes = grant["scopes"]
        if OPENID_SCOPE not in scopes:
            return self._json(
                403, {"error": "insufficient_scope"}, www_authenticate='Bearer error="insufficient_scope"'
            )
        # Claims are released per OpenID scope, in the order of Intuit's sample response.
        info: dict[str, Any] = {"sub": self._state["user_sub"]}
        if "email" in scopes:
            info["email"] = _SANDBOX_USER["email"]
            info["emailVerified"] = _SANDBOX_USER["emailVerified"]
        if "profile" in scopes:
            info["givenName"] = _SANDBOX_USER["givenName"]
            info["familyName"] = _SANDBOX_USER["familyName"]
        if "phone" in scopes:
            info["phoneNumber"] = _SANDBOX_USER["phoneNumber"]
            info["phoneNumberVerified"] = _SANDBOX_USER["phoneNumberVerified"]
        if "address" in scopes:
            info["address"] = dict(_SANDBOX_USER["address"])
        return self._json(200, info)

    # helpers -----------------------------------------------------------------------------------
    def _client(self, request: Request, form: dict[str, str]) -> OAuthApp | None:
        """The app authenticated by HTTP Basic, or else by client_id/client_secret in the form."""
        header = request.headers.get("authorization")
        if header:
            scheme, _, encoded = header.partition(" ")
            if scheme.lower() != "basic":
                return None
            try:
                decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return None
            client_id, sep, secret = decoded.partition(":")
            if not sep:
                return None
            if form.get("client_id") not in (None, client_id):
                return None
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        app = self.apps.get(client_id)
        if app is None or not hmac.compare_digest(app.client_secret.encode(), secret.encode()):
            return None
        return app

    def _json(
        self, status: int, body: dict, *, no_store: bool = True, www_authenticate: str | None = None
    ) -> Response:
        headers = self._headers(no_store=no_store)
        if www_authenticate:
            headers["WWW-Authenticate"] = www_authenticate
        return Response(json.dumps(body), status_code=status, media_type=_JSON_TYPE, headers=headers)

    def _plain(self, status: int) -> Response:
        return Response(b"", status_code=status, headers=self._headers(no_store=True))

    def _headers(self, *, no_store: bool) -> dict[str, str]:
        # intuit_tid as Intuit formats it today, e.g. 1-628f0be4-19ed5ea63980105102b16b1e
        headers = {"intuit_tid": f"1-{int(self.clock.time()):08x}-{secrets.token_hex(12)}"}
        if no_store:
            # Token responses must not be cached (RFC 6749 5.1); these are Intuit's header values.
            headers["Cache-Control"] = "no-cache, no-store"
            headers["Pragma"] = "no-cache"
        return headers

    def _save(self) -> None:
        self._prune()
        self.storage.kv_set(_STATE_KEY, self._state)

    def _prune(self) -> None:
        """Drop records that can no longer matter, so the state does not grow without bound."""
        now = self.clock.time()
        grants = self._state["grants"]
        codes = self._state["codes"]
        for key in [k for k, c in codes.items() if now >= c["expires"] + USED_CODE_RETENTION]:
            del codes[key]
        access = self._state["access"]
        for key in [k for k, a in access.items() if now >= a["expires"] + EXPIRED_ACCESS_RETENTION]:
            del access[key]
        refresh = self._state["refresh"]
        for key in [
            k
            for k, r in refresh.items()
            if r["grant_id"] not in grants or not self._refresh_usable(r, grants[r["grant_id"]], now)
        ]:
            del refresh[key]
        referenced = {r["grant_id"] for r in access.values()} | {r["grant_id"] for r in refresh.values()}
        referenced |= {c["grant_id"] for c in codes.values() if c["grant_id"]}
        for grant_id in [g for g in grants if g not in referenced]:
            del grants[grant_id]


# module helpers ---------------------------------------------------------------------------------
def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _parse_form(body: bytes) -> dict[str, str]:
    """application/x-www-form-urlencoded body; the first value wins for repeated names."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return {}
    form: dict[str, str] = {}
    for name, value in parse_qsl(text, keep_blank_values=True):
        form.setdefault(name, value)
    return form


def _revoke_token_param(content_type: str, body: bytes) -> str | None:
    # Intuit's clients send JSON {"token": ...}; RFC 7009 clients send a form. Accept either.
    if "json" in content_type.lower():
        try:
            data = json.loads(body or b"null")
        except ValueError:
            return None
        token = data.get("token") if isinstance(data, dict) else None
        return token if isinstance(token, str) and token else None
    return _parse_form(body).get("token") or None


def _scopes_acceptable(scopes: list[str]) -> bool:
    if not scopes or any(s not in KNOWN_SCOPES for s in scopes):
        return False
    # profile/email/phone/address (and intuit_name) alone grant nothing: they only qualify `openid`.
    return any(s not in _QUALIFIER_SCOPES for s in scopes)


def _needs_realm(scopes: list[str]) -> bool:
    return ACCOUNTING_SCOPE in scopes or PAYMENT_SCOPE in scopes


def _with_query(url: str, params: list[tuple[str, str]]) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + params
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def _redirect_error(redirect_uri: str, error: str, state: str | None) -> Response:
    params = [("error", error)]
    if state is not None:
        params.append(("state", state))
    return RedirectResponse(_with_query(redirect_uri, params), status_code=302)


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:36em;margin:3em auto;color:#393a3d}}
button{{padding:.5em 1.5em;margin-right:1em}}label{{display:block;margin:.4em 0}}</style>
</head><body>{body}</body></html>"""


def _error_page(reason: str) -> HTMLResponse:
    body = (
        "<h1>We're sorry!</h1><p>We're experiencing some problems. Please try again later.</p>"
        f"<p><small>Sandbox: {html.escape(reason)}</small></p>"
    )
    return HTMLResponse(_PAGE.format(title="Error", body=body), status_code=400)


def _consent_html(
    action: str, ticket: str, client_id: str, scopes: list[str], companies: list[Company]
) -> str:
    esc = html.escape
    choices = "".join(
        f'<label><input type="radio" name="realm_id" value="{esc(c.realm_id)}"{" checked" if i == 0 else ""}>'
        f" {esc(c.name)} <small>({esc(c.realm_id)})</small></label>"
        for i, c in enumerate(companies)
    )
    scope_items = "".join(f"<li>{esc(s)}</li>" for s in scopes)
    body = (
        "<h1>Connect to the QuickBooks sandbox</h1>"
        f"<p>The app <strong>{esc(client_id)}</strong> asks for access to:</p><ul>{scope_items}</ul>"
        f'<form method="post" action="{esc(action)}">'
        f'<input type="hidden" name="consent_ticket" value="{esc(ticket)}">'
        + (f"<fieldset><legend>Company</legend>{choices}</fieldset>" if companies else "")
        + '<p><button type="submit" name="action" value="approve">Connect</button>'
        '<button type="submit" name="action" value="deny">Cancel</button></p></form>'
    )
    return _PAGE.format(title="Connect an app", body=body)
