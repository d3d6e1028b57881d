"""What can go wrong talking to QuickBooks Online, as one small hierarchy.

    QBFlowError
    └── QBOError            any failure answered by (or on the way to) QBO; keeps Intuit's fields
        ├── AuthError       401/403, Fault codes 1-499, 3100 AuthorizationFailed, 3200 AuthenticationFailed
        │   └── NeedsReconnect   the refresh token is dead (invalid_grant): `qbflow connect NAME` fixes it
        ├── NotFound        610 Object Not Found (also: a reference to an inactive record)
        ├── StaleObject     5010 Stale Object Error: the SyncToken sent is not the current one
        ├── DuplicateName   6240 Duplicate Name Exists Error
        ├── Validation      the request is wrong: 500-4999 and 6000+ business faults (2010, 2020, 2030,
        │   │               2300, 2500, 4000, 4001, 6000, 6140, ...); retrying cannot help
        │   └── UnsupportedOperation   refused before sending: the catalog says the entity cannot do
        │                              that (delete a Customer, void an Estimate, send a Bill)
        ├── RateLimited     429 / 3001 ThrottleExceeded; `.retry_after` in seconds when QBO said
        └── Transient       500/502/503/504, 10000 SystemFault, connection errors, timeouts; worth a retry

Every QBOError carries `.code`, `.message`, `.detail`, `.element` (Intuit's Fault.Error fields, first
error), `.intuit_tid` (the correlation id Intuit support asks for), `.status_code` and `.fault_type`.
`str(error)` is built only from those fields, the HTTP method and the URL path: never from headers,
so an Authorization header or a token cannot end up in a message. Intuit's own 401 detail quotes the
start of the rejected token ("Token expired: AB0..."); that part is redacted too.

`error_from_response()` turns any failed answer into the right class; it understands the usual
`{"Fault": ...}` body, the lower-case `{"fault": {"error": ...}}` body of 401/403, the XML bodies QBO
sometimes sends for throttling, and bodies that are not JSON at all (a gateway's 503 page).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from qbflow.errors import QBFlowError

__all__ = [
    "FAULT_CODES",
    "AuthError",
    "DuplicateName",
    "FaultError",
    "NeedsReconnect",
    "NotFound",
    "QBOError",
    "RateLimited",
    "StaleObject",
    "Transient",
    "UnsupportedOperation",
    "Validation",
    "class_for",
    "error_from_fault",
    "error_from_response",
]


@dataclass(frozen=True)
class FaultError:
    """One entry of a Fault's Error list, as Intuit sent it."""

    code: str | None
    message: str | None
    detail: str | None
    element: str | None


class QBOError(QBFlowError):
    """A request to QuickBooks Online failed. Intuit's fields are kept as they came."""

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        detail: str | None = None,
        element: str | None = None,
        intuit_tid: str | None = None,
        status_code: int | None = None,
        fault_type: str | None = None,
        method: str | None = None,
        path: str | None = None,
        errors: tuple[FaultError, ...] = (),
    ) -> None:
        self.code = code
        self.message = message
        self.detail = detail
        self.element = element or None
        self.intuit_tid = intuit_tid
        self.status_code = status_code
        self.fault_type = fault_type
        self.method = method
        self.path = path
        self.errors = errors or (FaultError(code, message, detail, self.element),)
        super().__init__(self._describe())

    def _describe(self) -> str:
        head = " ".join(part for part in (self.code and f"[{self.code}]", self.message) if part)
        text = head or type(self).__name__
        if self.detail and self.detail != self.message:
            text += f": {self.detail}"
        context = []
        if self.element:
            context.append(f"element {self.element}")
        if self.status_code is not None:
            context.append(f"HTTP {self.status_code}")
        if self.path:
            context.append(f"{self.method} {self.path}" if self.method else self.path)
        if self.intuit_tid:
            context.append(f"intuit_tid {self.intuit_tid}")
        return f"{text} ({'; '.join(context)})" if context else text

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r}, status_code={self.status_code!r})"


class AuthError(QBOError):
    """The access token was refused (expired, revoked, wrong company) or may not do this."""


class NeedsReconnect(AuthError):
    """The connection's refresh token no longer works (`invalid_grant`); only reconnecting helps."""

    def __init__(self, connection: str, detail: str | None = None, **fields: Any) -> None:
        self.connection = connection
        self.command = f"qbflow connect {connection}"
        message = (f"Connection {connection!r} needs to be reconnected: QuickBooks no longer accepts its "
                   f"refresh token. Run `{self.command}` to reconnect it.")
        fields.setdefault("code", "invalid_grant")
        super().__init__(message, detail=detail, **fields)


class NotFound(QBOError):
    """The record does not exist, was deleted, or a reference points at an inactive record (610)."""


class StaleObject(QBOError):
    """The SyncToken sent is not the record's current one: someone changed it meanwhile (5010)."""


class DuplicateName(QBOError):
    """The name is taken (6240); Customer, Vendor and Employee names share one namespace."""


class Validation(QBOError):
    """QBO refused the request as invalid; the fields say what and where. Retrying will not help."""


class UnsupportedOperation(Validation):
    """Refused before any request: QBO does not offer this operation on this entity (per the catalog)."""


class RateLimited(QBOError):
    """QBO throttled the company (429, Fault 3001). `retry_after` is in seconds, when QBO gave one."""

    def __init__(self, message: str | None = None, *, retry_after: float | None = None, **fields: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **fields)


class Transient(QBOError):
    """A failure that may pass: QBO's 5xx and SystemFault, a dropped connection, a timeout."""


# --- the one table -------------------------------------------------------------------------------------
# Fault code ranges and the class each maps to, most specific first. Sources: Intuit's error-code table,
# recorded faults (../shared/qbo/README.md §2) and python-quickbooks' range split (1-499 auth,
# 500-599 unsupported operation, 600-1999 general, 2000-4999 validation, >= 10000 system).
FAULT_CODES: tuple[tuple[range, type[QBOError]], ...] = (
    (range(610, 611), NotFound),  # Object Not Found
    (range(3001, 3002), RateLimited),  # ThrottleExceeded
    (range(3100, 3101), AuthError),  # AuthorizationFailed
    (range(3200, 3201), AuthError),  # AuthenticationFailed
    (range(5010, 5011), StaleObject),  # Stale Object Error
    (range(6240, 6241), DuplicateName),  # Duplicate Name Exists Error
    (range(1, 500), AuthError),  # 100 General Authentication Error, 120 Authorization Failure, ...
    (range(500, 10000), Validation),  # 500 unsupported op, 2xxx-4xxx validation, 6xxx business rules
    (range(10000, 100000), Transient),  # 10000 SystemFault: "wait a few minutes and try again"
)

_BY_STATUS: dict[int, type[QBOError]] = {
    401: AuthError, 403: AuthError, 404: NotFound, 429: RateLimited,
    500: Transient, 502: Transient, 503: Transient, 504: Transient,
}


def class_for(code: str | None, status_code: int | None) -> type[QBOError]:
    """The error class for a Fault code and HTTP status (the status wins for 401/403/429, except that a
    throttling fault is RateLimited whatever the status)."""
    number = _code_number(code)
    if status_code == 429 or number == 3001:  # 3001 came with HTTP 403 before 2016
        return RateLimited
    if status_code in (401, 403):
        return AuthError
    if number is not None:
        for codes, cls in FAULT_CODES:
            if number in codes:
                return cls
    if status_code is None:
        return QBOError
    if status_code in _BY_STATUS:
        return _BY_STATUS[status_code]
    if status_code >= 500:
        return Transient
    if status_code >= 400:
        return Validation
    return QBOError


def _code_number(code: str | None) -> int | None:
    if code is None:
        return None
    digits = str(code).strip()
    return int(digits) if digits.isdigit() else None


# --- reading answers -----------------------------------------------------------------------------------
# Intuit's 401 detail quotes the start of the rejected token ("Token expired: AB0..."); never repeat it.
_TOKEN_ECHO = re.compile(r"(?i)\b(token[\w ]*?:\s*)\S+")


def redact(text: str | None, secrets: Iterable[str] = ()) -> str | None:
    """`text` without echoed tokens: any run starting with the first 8 characters of a secret, and
    whatever follows "Token ...:" (Intuit's wording when it quotes a rejected token)."""
    if not text:
        return text
    for secret in secrets:
        if secret and len(secret) >= 8:
            text = re.sub(re.escape(secret[:8]) + r"\S*", "[redacted]", text)
    return _TOKEN_ECHO.sub(r"\1[redacted]", text)


def _first_error(errors: Any) -> list[FaultError]:
    out: list[FaultError] = []
    if isinstance(errors, dict):
        errors = [errors]
    if not isinstance(errors, list):
        return out
    for err in errors:
        if not isinstance(err, dict):
            continue
        lower = {str(k).lower(): v for k, v in err.items()}
        out.append(FaultError(
            code=_str(lower.get("code")), message=_str(lower.get("message")),
            detail=_str(lower.get("detail")), element=_str(lower.get("element")) or None,
        ))
    return out


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def error_from_fault(
    fault: dict,
    *,
    status_code: int | None = None,
    intuit_tid: str | None = None,
    method: str | None = None,
    path: str | None = None,
    retry_after: float | None = None,
    secrets: Iterable[str] = (),
) -> QBOError:
    """The error for one `Fault` object (top-level, or inside a batch item or an upload answer)."""
    lower = {str(k).lower(): v for k, v in fault.items()} if isinstance(fault, dict) else {}
    errors = _first_error(lower.get("error"))
    return _build(errors, _str(lower.get("type")), status_code, intuit_tid, method, path, retry_after,
                  tuple(secrets))


def _build(
    errors: list[FaultError],
    fault_type: str | None,
    status_code: int | None,
    intuit_tid: str | None,
    method: str | None,
    path: str | None,
    retry_after: float | None,
    secrets: tuple[str, ...],
    fallback_message: str | None = None,
) -> QBOError:
    errors = [FaultError(e.code, redact(e.message, secrets), redact(e.detail, secrets), e.element) for e in errors]
    first = errors[0] if errors else FaultError(None, fallback_message, None, None)
    cls = class_for(first.code, status_code)
    fields: dict[str, Any] = dict(
        code=first.code, detail=first.detail, element=first.element, intuit_tid=intuit_tid,
        status_code=status_code, fault_type=fault_type, method=method, path=path, errors=tuple(errors),
    )
    if cls is RateLimited:
        return RateLimited(first.message, retry_after=retry_after, **fields)
    return cls(first.message, **fields)


def error_from_response(response: httpx.Response, *, secrets: Iterable[str] = ()) -> QBOError:
    """The typed error for a failed (or Fault-carrying) QBO answer.

    `secrets` are strings (the access token) to keep out of the message even if the body quotes them.
    """
    status = response.status_code
    tid = response.headers.get("intuit_tid")
    try:
        request: httpx.Request | None = response.request
    except RuntimeError:  # a Response built by hand has no request
        request = None
    method = request.method if request is not None else None
    path = request.url.path if request is not None else None
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    secrets = tuple(secrets)
    errors: list[FaultError] = []
    fault_type: str | None = None
    body = response.content
    content_type = response.headers.get("content-type", "").lower()
    parsed: Any = None
    if body.strip():
        if "xml" in content_type or body.lstrip().startswith(b"<"):
            errors, fault_type = _xml_fault(body)
        else:
            try:
                parsed = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                parsed = None
    if isinstance(parsed, dict):
        lower = {str(k).lower(): v for k, v in parsed.items()}
        fault = lower.get("fault")
        if isinstance(fault, dict):
            fault_lower = {str(k).lower(): v for k, v in fault.items()}
            errors = _first_error(fault_lower.get("error"))
            fault_type = _str(fault_lower.get("type"))
        elif "error" in lower:  # OAuth-style {"error": "invalid_grant", "error_description": ...}
            errors = [FaultError(_str(lower.get("error")), _str(lower.get("error_description")), None, None)]
    fallback = response.reason_phrase or f"HTTP {status}"
    if not errors and body.strip() and parsed is None and fault_type is None:
        # Not a body we understand (a gateway's HTML or plain text): a short, safe excerpt helps.
        excerpt = " ".join(body[:200].decode("utf-8", "replace").split())
        fallback = f"{fallback}: {excerpt}" if excerpt and excerpt != fallback else fallback
    return _build(errors, fault_type, status, tid, method, path, retry_after, secrets, fallback)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _xml_fault(body: bytes) -> tuple[list[FaultError], str | None]:
    """Errors of an XML `<IntuitResponse><Fault type=..><Error code=..>` body (QBO's throttling answer)."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return [], None
    fault = root if _local(root.tag) == "Fault" else next((e for e in root.iter() if _local(e.tag) == "Fault"), None)
    if fault is None:
        return [], None
    errors = []
    for err in fault:
        if _local(err.tag) != "Error":
            continue
        texts = {_local(child.tag).lower(): (child.text or "").strip() for child in err}
        errors.append(FaultError(
            code=err.get("code"), message=texts.get("message") or None, detail=texts.get("detail") or None,
            element=err.get("element") or texts.get("element") or None,
        ))
    return errors, fault.get("type")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
