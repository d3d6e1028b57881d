"""The HTTP transport of the QBO client: httpx's API, aiohttp's connections.

At Intuit's pace the engine makes hundreds of requests a second, and httpx's own connection pool (httpcore) costs
about 1 ms of CPU a request: it checks every pooled connection's socket at each request's start and end. aiohttp's
pool does the same work for about a quarter of that (benchmarks/README.md, "Throughput at latency"). The client
keeps httpx's API (requests, responses, timeouts, errors) and only the transport underneath changes, through
httpx-aiohttp's `AiohttpTransport`.

Two things differ from that library's defaults, and both are ours to keep as httpx had them:
- proxies and CA bundles from the environment (HTTPS_PROXY, SSL_CERT_FILE...) are honoured (`trust_env`), and the
  one TLS context of the process is used (`tls.tls_context`) rather than one made per client;
- a failure names what happened: httpx-aiohttp maps every aiohttp connection error (a reset, a closed keep-alive
  connection) to `httpx.ConnectTimeout`, which would read as "QBO did not answer in time". `failure_of` gives the
  kind and the name of the underlying error instead. Either way the client retries with the same request id, so
  the mapping never decides whether a create is sent twice (Intuit de-duplicates by request id).
"""

from __future__ import annotations

import asyncio

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from qbflow.qbo.tls import tls_context

__all__ = ["api_transport", "failure_of"]

# As many connections as a company's requests can have in flight with room for the OAuth and upload calls; idle
# ones are closed after 5 s (httpx's default), before a server's usual keep-alive timeout closes them under us.
_MAX_CONNECTIONS = 100
_KEEPALIVE_SECONDS = 5.0


def _session() -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(ssl=tls_context(), limit=_MAX_CONNECTIONS, keepalive_timeout=_KEEPALIVE_SECONDS)
    return aiohttp.ClientSession(connector=connector, trust_env=True, auto_decompress=False)


def api_transport() -> httpx.AsyncBaseTransport:
    """A new transport for one `httpx.AsyncClient` (closed with it). Its aiohttp session is made on first use,
    inside the event loop that uses it."""
    return AiohttpTransport(verify=tls_context(), client=_session)


def failure_of(exc: BaseException) -> tuple[bool, str]:
    """(is it a timeout, the name of what failed) for an error raised while sending a request, whichever transport
    raised it."""
    cause = exc.__cause__ if isinstance(exc, httpx.TransportError) and exc.__cause__ is not None else exc
    if isinstance(cause, aiohttp.ClientError | asyncio.TimeoutError):
        timed_out = isinstance(cause, asyncio.TimeoutError | aiohttp.ServerTimeoutError)
        return timed_out, type(cause).__name__
    return isinstance(exc, httpx.TimeoutException | TimeoutError), type(exc).__name__
