"""One TLS context for every HTTP client qbflow makes.

httpx builds a new `ssl.SSLContext` (loading certifi's CA bundle) for each client unless it is given one: about
30 ms of CPU each time. The engine makes a client per company (and again when the pool renews it), the OAuth
helpers one per token call and `http.request` steps one per request, so a shared context saves that every time.
The context is read-only once made, which is what makes sharing it across clients safe.
"""

from __future__ import annotations

import functools
import ssl

import httpx

__all__ = ["tls_context"]


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The process's TLS context: certificate checks on, certifi's CAs (what httpx uses by default)."""
    return httpx.create_ssl_context()
