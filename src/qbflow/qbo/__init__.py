"""Talking to QuickBooks Online: one async client per company, and what it needs.

    from qbflow.qbo import QBOClient, Query, RefreshingTokens

* `client`: `QBOClient` (every operation, retries, requestid idempotency, paging, batch, attachments)
* `errors`: the QBOError hierarchy and the Fault-code table
* `pacing`: per-realm limits behind one `Pacer` protocol: in this process (`pacer_for`), or shared by every
  process in PostgreSQL or Redis (`pacing_backend(...)` picks one from the settings)
* `query`: the query builder that escapes every value
* `tokens`: where access tokens come from, and coalesced refresh
* `oauth`, `connect`, `connections`: Intuit's OAuth 2.0 (authlib), `qbflow connect`, and
  `client_for(name, store)`, a client whose tokens rotate through the database
* `webhooks`: `verify_signature` and `parse_notification` for Intuit's change notifications

Knows nothing of workflows.
"""

from qbflow.qbo.client import (
    DEFAULT_MINOR_VERSION,
    PRODUCTION_BASE_URL,
    SANDBOX_BASE_URL,
    BatchResult,
    QBOClient,
    RetryPolicy,
)
from qbflow.qbo.errors import (
    AuthError,
    DuplicateName,
    NeedsReconnect,
    NotFound,
    QBOError,
    RateLimited,
    StaleObject,
    Transient,
    UnsupportedOperation,
    Validation,
    error_from_response,
)
from qbflow.qbo.pacing import Limits, Pacer, RealmPacer, pacer_for, pacing_backend
from qbflow.qbo.query import Like, Query, like_contains, like_exact, like_prefix, like_suffix
from qbflow.qbo.tokens import RefreshingTokens, StaticTokens, TokenProvider, TokenSet
from qbflow.qbo.webhooks import ChangeEvent, parse_notification, verify_signature

__all__ = [
    "ChangeEvent",
    "parse_notification",
    "verify_signature",
    "DEFAULT_MINOR_VERSION",
    "PRODUCTION_BASE_URL",
    "SANDBOX_BASE_URL",
    "AuthError",
    "BatchResult",
    "DuplicateName",
    "Like",
    "Limits",
    "NeedsReconnect",
    "NotFound",
    "Pacer",
    "QBOClient",
    "QBOError",
    "Query",
    "RateLimited",
    "RealmPacer",
    "RefreshingTokens",
    "RetryPolicy",
    "StaleObject",
    "StaticTokens",
    "TokenProvider",
    "TokenSet",
    "Transient",
    "UnsupportedOperation",
    "Validation",
    "error_from_response",
    "like_contains",
    "like_exact",
    "like_prefix",
    "like_suffix",
    "pacer_for",
    "pacing_backend",
]
