"""The HTTP client of the QBO client: httpx's API, aiohttp's connections.

At Intuit's pace the engine makes hundreds of requests a second, and httpx's own connection pool (httpcore) costs
about 1 ms of CPU a request: it checks every pooled connection's socket at each request's start and end. aiohttp's
pool does the same work for about a quarter of that (benchmarks/README.md, "Throughput at latency"). The client
keeps httpx's API (requests, responses, timeouts, errors); only the transport underneath changes, through
httpx-aiohttp's client, which makes an aiohttp transport wherever httpx would make its own: for direct requests
and for each proxy httpx reads from the environment (HTTP(S)_PROXY, NO_PROXY, once, when the client is made).

Ours to keep as httpx had it:
- the one TLS context of the process (`tls.tls_context`, which reads SSL_CERT_FILE) rather than one made per
  client (30 ms each);
- a failure names what happened: httpx-aiohttp maps every aiohttp connection error (a reset, a closed keep-alive
  connection) to `httpx.ConnectTimeout`, which would read as "QBO did not answer in time". `failure_of` gives the
  kind and the name of the underlying error instead. Either way the client retries with the same request id, so
  the mapping never decides whether a create is sent twice (Intuit de-duplicates by request id).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import HttpxAiohttpClient

from qbflow.qbo.tls import tls_context

__all__ = ["api_client", "failure_of"]


def api_client(*, transport: httpx.AsyncBaseTransport | None = None, **options: Any) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` over aiohttp (`transport`, when given, is used instead: tests' in-process apps).
    `options` are httpx's (timeout, headers, follow_redirects...). Each aiohttp session is made on first use,
    inside the event loop that uses it, and closed with the client."""
    return HttpxAiohttpClient(transport=transport, verify=tls_context(), **options)


def failure_of(exc: BaseException) -> tuple[bool, str]:
    """(is it a timeout, the name of what failed) for an error raised while sending a request, whichever transport
    raised it."""
    cause = exc.__cause__ if isinstance(exc, httpx.TransportError) and exc.__cause__ is not None else exc
    if isinstance(cause, aiohttp.ClientError | asyncio.TimeoutError):
        timed_out = isinstance(cause, asyncio.TimeoutError | aiohttp.ServerTimeoutError)
        return timed_out, type(cause).__name__
    return isinstance(exc, httpx.TimeoutException | TimeoutError), type(exc).__name__
