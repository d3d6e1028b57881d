"""`qbflow serve`: qbflow's HTTP server (JSON API, webhooks, dashboard) with the engine in the same process.

    await run_server(store, ServeOptions(port=8000), console=console)   # until Ctrl-C/SIGTERM

With `workers=True` no engine runs here: webhooks hand their polls to `qbflow worker`s (PostgreSQL). Serving
itself (uvicorn in this event loop, on a socket bound first) is `qbflow.server.serving`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.console import Console

from qbflow.app.signals import stop_on_signals
from qbflow.engine.live import STOP_HINT
from qbflow.engine.workers import enqueue_runs
from qbflow.server.serving import ServedApp, ServeError, bind, is_local_host, url_for

if TYPE_CHECKING:
    from qbflow.engine.poll_requests import WorkerPollRequests
    from qbflow.settings import Settings
    from qbflow.store import Store

__all__ = ["DEFAULT_PORT", "ServeOptions", "run_server", "token_lines"]

DEFAULT_PORT = 8000


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


def _worker_poll_requests(store: Store) -> WorkerPollRequests:
    """`--workers`: what webhooks hand their polls to (the database must be PostgreSQL; Procrastinate's tables are
    created if no worker has started yet, so the server may start first)."""
    from qbflow.engine.poll_requests import WorkerPollRequests
    from qbflow.engine.workers import ensure_schema, require_postgres

    require_postgres(store.engine.url)
    ensure_schema(store.engine)
    return WorkerPollRequests(store.engine.url)


async def run_server(store: Store, options: ServeOptions, *, console: Console, settings: Settings | None = None,
                     stop: asyncio.Event | None = None, transport: Any | None = None,
                     on_ready: Callable[[str], None] | None = None) -> None:
    """`qbflow serve`: the API, webhooks and dashboard with the engine, until `stop` (default: SIGINT or SIGTERM).

    Prints the URLs first (and the API token when it was generated just now), then one line per busy engine
    cycle. Stopping lets the run in flight finish. `on_ready(url)` is called once the server answers."""
    from qbflow.app.run import build_engine
    from qbflow.engine.live import CycleLines
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
                              on_runs=enqueue_runs if handoff is not None else None,
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
        serving = served.task
        assert serving is not None, "started"
        stopping: asyncio.Future[object] = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({stopping, serving}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        crashed = serving.done()
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
