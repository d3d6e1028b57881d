"""Who may use the server: an API token for the JSON API (Bearer), a login with that token and a signed
session cookie for the dashboard, and CSRF tokens for the dashboard's forms.

The API token comes from `QBFLOW_API_TOKEN`, or is generated on the first start, shown once, and kept only
as its SHA-256 in `<data dir>/api-token.sha256` (mode 0600). Comparisons are constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from qbflow.settings import Settings

TOKEN_FILE_NAME = "api-token.sha256"
SESSION_COOKIE = "qbflow_session"
_LOGGED_IN = "logged_in"
_CSRF = "csrf"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ApiToken:
    """Checks presented tokens against the configured one (kept as a digest only)."""

    digest: str
    source: str  # "QBFLOW_API_TOKEN" or the hash file's path, for messages

    def check(self, presented: str | None) -> bool:
        if not presented:
            return False
        return hmac.compare_digest(_digest(presented), self.digest)


def load_or_create_api_token(settings: Settings) -> tuple[ApiToken, str | None]:
    """The server's API token checker, and the token itself when it was generated just now (to show once)."""
    if settings.api_token is not None and settings.api_token.get_secret_value().strip():
        return ApiToken(_digest(settings.api_token.get_secret_value().strip()), "QBFLOW_API_TOKEN"), None
    path = Path(settings.data_dir) / TOKEN_FILE_NAME
    if path.exists():
        return ApiToken(path.read_text().strip(), str(path)), None
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(_digest(token) + "\n")
    return ApiToken(_digest(token), str(path)), token


_bearer = HTTPBearer(auto_error=False, description="The API token (QBFLOW_API_TOKEN, or the one shown at first start).")


def require_api_token(request: Request,
                      credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    """Dependency of every JSON API route: a valid `Authorization: Bearer TOKEN`, or 401."""
    token: ApiToken = request.app.state.api_token
    if credentials is None or credentials.scheme.lower() != "bearer" or not token.check(credentials.credentials):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "a valid API token is required (Authorization: Bearer ...)",
                            headers={"WWW-Authenticate": "Bearer"})


# --- dashboard sessions ------------------------------------------------------------------------------------

class LoginRequired(Exception):
    """Raised by `require_login`; the app answers it with a redirect to the login page."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


def log_in(request: Request, presented: str) -> bool:
    """Start a dashboard session if `presented` is the API token; a new session (and CSRF token) either way."""
    if not request.app.state.api_token.check(presented):
        return False
    request.session.clear()
    request.session[_LOGGED_IN] = True
    request.session[_CSRF] = secrets.token_urlsafe(32)
    return True


def log_out(request: Request) -> None:
    request.session.clear()


def logged_in(request: Request) -> bool:
    return bool(request.session.get(_LOGGED_IN))


def require_login(request: Request) -> None:
    """Dependency of every dashboard page: a logged-in session, or a redirect to /login."""
    if not logged_in(request):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target)


def csrf_token(request: Request) -> str:
    """The session's CSRF token, for a hidden `csrf` field in every form (made when missing)."""
    token = request.session.get(_CSRF)
    if not token:
        token = request.session[_CSRF] = secrets.token_urlsafe(32)
    return token


def check_csrf(request: Request, submitted: str | None) -> None:
    """403 unless `submitted` is the session's CSRF token."""
    expected = request.session.get(_CSRF)
    if not expected or not submitted or not hmac.compare_digest(expected, submitted):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the form has expired or was not sent by this dashboard; "
                                                       "reload the page and try again")
