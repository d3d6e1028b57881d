"""Serving in this process: uvicorn inside the running event loop, and `qbflow serve`.

    sock = bind("127.0.0.1", 0)                     # bound first, so the URL printed has the real port
    served = ServedApp(app, sock)
    await served.start()                            # returns once it answers
    await served.stop()                             # open requests get a few seconds, then the lifespan ends

    await run_server(store, ServeOptions(port=8000), console=console)   # `qbflow serve`, until Ctrl-C/SIGTERM

uvicorn's own signal handling is off here: the caller decides when to stop (SIGINT and SIGTERM set a `stop`
event, a second one cancels), so the engine's run in flight can finish before the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.console import Console

from qbflow.errors import QBFlowError

if TYPE_CHECKING:
    import uvicorn

    from qbflow.settings import Settings
    from qbflow.store import Store
    from qbflow.store.runs import RunsHook

__all__ = ["DEFAULT_PORT", "ServeError", "ServeOptions", "ServedApp", "bind", "is_local_host", "run_server",
           "stop_on_signals", "token_lines", "url_for"]

DEFAULT_PORT = 8000
STOP_HINT = "Ctrl-C stops it (runs in flight get 20 s to finish; the rest resume at the next start)."
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


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event, task: asyncio.Task | None) -> Iterator[None]:
    """SIGINT and SIGTERM set `stop`; a second one cancels `task` (runs in flight are then abandoned, and
    resumed by the next engine start). Main thread only; the handlers are removed afterwards."""
    loop = asyncio.get_running_loop()
    installed = []

    def handle() -> None:
        if stop.is_set() and task is not None:
            task.cancel()
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, handle)
            except (NotImplementedError, RuntimeError, ValueError):
                continue
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def token_lines(source: str, shown: str | None) -> list[str]:
    """What to say about the API token: the token itself when it was generated just now (shown this once)."""
    if shown is not None:
        return [f"API token: {shown}",
                f"  Shown only this once: keep it (only its hash is stored, in {source}). To choose your own "
                f"instead, set QBFLOW_API_TOKEN=<token> in the server's environment and restart it."]
    if source == "QBFLOW_API_TOKEN":
        return ["API token: the one in QBFLOW_API_TOKEN"]
    return [f"API token: the one shown when it was made (its hash is in {source}; delete that file for a new "
            f"one, or set QBFLOW_API_TOKEN)"]


@dataclass
class ServeOptions:
    """What `qbflow serve` was asked for."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT  # 0 = a free one
    public_url: str | None = None  # as browsers reach it (https behind a proxy); default: settings, then host:port
    engine: bool = True  # run the engine in this process
    tick: float = 1.0  # seconds between engine cycles
    workers: bool = False  # no engine: `qbflow worker`s poll and run; webhooks defer their polls (PostgreSQL)


def _worker_poll_requests(store: Store) -> Any:
    """`--workers`: what webhooks hand their polls to (the database must be PostgreSQL; Procrastinate's tables are
    created if no worker has started yet, so the server may start first)."""
    from qbflow.engine.poll_requests import WorkerPollRequests
    from qbflow.engine.workers import ensure_schema, require_postgres

    require_postgres(store.engine.url)
    ensure_schema(store.engine)
    return WorkerPollRequests(store.engine.url)


def _enqueue_runs() -> RunsHook:
    """`--workers`: what stores a webhook delivery's run also enqueues its job, in the same transaction."""
    from qbflow.engine.workers import enqueue_runs

    return enqueue_runs


async def run_server(store: Store, options: ServeOptions, *, console: Console, settings: Settings | None = None,
                     stop: asyncio.Event | None = None, transport: Any | None = None,
                     on_ready: Callable[[str], None] | None = None) -> None:
    """`qbflow serve`: the API, webhooks and dashboard with the engine, until `stop` (default: SIGINT or SIGTERM).

    Prints the URLs first (and the API token when it was generated just now), then one line per busy engine
    cycle. Stopping lets the run in flight finish. `on_ready(url)` is called once the server answers."""
    from qbflow.engine.live import CycleLines, build_engine
    from qbflow.server.app import ServerConfig, create_app
    from qbflow.server.auth import load_or_create_api_token
    from qbflow.settings import get_settings

    settings = settings or get_settings()

    def say(text: str, style: str | None = None) -> None:
        console.print(text, markup=False, highlight=False, soft_wrap=True, style=style)

    sock = bind(options.host, options.port)
    try:
        port = sock.getsockname()[1]
        url = url_for(options.host, port)
        public_url = (options.public_url or settings.public_url or url).rstrip("/")
        token, shown = load_or_create_api_token(settings)
        say(f"qbflow server at {url}  (JSON API {url}/api, documented at {url}/docs)")
        say(f"Dashboard: {public_url}/  (log in with the API token)")
        for line in token_lines(token.source, shown):
            say(line)
        if not is_local_host(options.host):
            say(f"Warning: listening on {options.host}, reachable from other machines. Put it behind HTTPS (a "
                f"reverse proxy) and pass --public-url https://...; the API token and session cookie must never "
                f"travel over plain HTTP.", style="yellow")
        handoff = _worker_poll_requests(store) if options.workers else None
        parts = await build_engine(store) if options.engine and handoff is None else None
        if parts is not None and parts.resumed:
            say(f"resuming {parts.resumed} run(s) left unfinished")
        if handoff is None:
            from qbflow.engine.status import procrastinate_tables_exist

            if procrastinate_tables_exist(store.engine):
                say("Warning: `qbflow worker`s use this database: " + (
                    "the engine here claims runs without their jobs; serve with --workers instead." if parts else
                    "webhooks are not handed to them (only their next scheduled poll sees a change); serve with "
                    "--workers to poll the company at once."), style="yellow")
        engine = parts.engine if parts else handoff
        config = ServerConfig(store=store, settings=settings, api_token=token,
                              engine=engine, run_engine=engine is not None,
                              engine_tick=options.tick, secure_cookies=public_url.startswith("https://"),
                              public_url=public_url, transport=transport,
                              on_runs=_enqueue_runs() if handoff is not None else None,
                              on_cycle=CycleLines(console, parts.stats) if parts else None)
        served = ServedApp(create_app(config), sock)
    except BaseException:
        sock.close()
        raise
    own_stop = stop is None
    stop = stop if stop is not None else asyncio.Event()
    with stop_on_signals(stop, asyncio.current_task()) if own_stop else contextlib.nullcontext():
        await served.start()
        say(("engine running; " if parts else "no engine here; webhooks defer polls to the workers (--workers); "
             if handoff else "no engine here (--no-engine); ") + STOP_HINT)
        if on_ready is not None:
            on_ready(url)
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({stopping, served.task}, return_when=asyncio.FIRST_COMPLETED)  # type: ignore[arg-type]
        finally:
            stopping.cancel()
        crashed = served.task is not None and served.task.done()
        if not crashed:
            say("stopping: waiting for the run in flight to finish…" if parts else "stopping…")
        await served.stop(timeout=None)
        if parts is not None:
            await parts.aclose()
    if isinstance(config.on_cycle, CycleLines):
        config.on_cycle.finish()
    if crashed:
        raise ServeError("the server stopped unexpectedly")
    say("stopped.")
