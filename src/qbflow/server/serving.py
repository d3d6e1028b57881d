"""Serving an ASGI app in this process: uvicorn inside the running event loop, on a socket bound first.

    sock = bind("127.0.0.1", 0)                     # bound first, so the URL printed has the real port
    served = ServedApp(app, sock)
    await served.start()                            # returns once it answers
    await served.stop()                             # open requests get a few seconds, then the lifespan ends

uvicorn's own signal handling is off here: the caller decides when to stop (`qbflow.app.signals`), so the
engine's run in flight can finish before the process exits. `qbflow serve` itself is `qbflow.app.serve`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from qbflow.errors import QBFlowError

if TYPE_CHECKING:
    import uvicorn

__all__ = ["ServeError", "ServedApp", "bind", "is_local_host", "url_for"]

_LOCAL_ADDRESSES = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))


class ServeError(QBFlowError):
    """The server cannot start (the port is taken, the address is not this machine's...)."""


def is_local_host(host: str) -> bool:
    """Whether `host` is the address a server meant for this machine only listens on (127.0.0.1, ::1,
    localhost); anything else earns the HTTPS warning."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")) in _LOCAL_ADDRESSES
    except ValueError:
        return False


def url_for(host: str, port: int) -> str:
    """The URL a browser on this machine uses for a server bound to host:port."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on host:port (0 = any free port); `ServeError` saying why when it cannot."""
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                                 flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as error:
        raise ServeError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as error:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port} ({error.strerror})") from None
    return sock


def _server_class() -> type[uvicorn.Server]:
    import uvicorn

    class EmbeddedServer(uvicorn.Server):
        """uvicorn without its own signal handling: the caller stops it in order."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return EmbeddedServer


class ServedApp:
    """An ASGI app served by uvicorn on a bound socket, in the running event loop."""

    def __init__(self, app: Any, sock: socket.socket, *, name: str = "server") -> None:
        self.app = app
        self.sock = sock
        self.name = name
        self.host, self.port = sock.getsockname()[:2]
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task | None = None

    @property
    def url(self) -> str:
        return url_for(self.host, self.port)

    @property
    def task(self) -> asyncio.Task | None:
        """The serving task (done when the server stopped)."""
        return self._task

    async def start(self, timeout: float = 30.0) -> str:
        """Serve; returns the URL once the server accepts requests (its lifespan has started)."""
        import uvicorn

        config = uvicorn.Config(self.app, log_config=None, log_level="warning", access_log=False, lifespan="on",
                                timeout_graceful_shutdown=5)
        self._server = _server_class()(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[self.sock]))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._server.started:
            if self._task.done():
                error = None if self._task.cancelled() else self._task.exception()
                raise ServeError(f"the {self.name} did not start: {error or 'it stopped'}")
            if loop.time() > deadline:
                await self.stop(timeout=5)
                raise ServeError(f"the {self.name} did not start within {timeout:g} s")
            await asyncio.sleep(0.02)
        return self.url

    async def stop(self, timeout: float | None = 10.0) -> None:
        """Stop serving: open requests get a few seconds, then the app's lifespan ends (an engine it runs
        finishes its run in flight). After `timeout` seconds (None: no limit) it is cancelled."""
        server, task = self._server, self._task
        if server is not None and task is not None:
            server.should_exit = True
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(task), timeout)
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        self._server = self._task = None
        with contextlib.suppress(OSError):
            self.sock.close()
