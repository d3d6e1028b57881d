"""The FastAPI app: `create_app(ServerConfig(...))`, with the engine running in the same process.

    config = ServerConfig(store=store, settings=settings, api_token=token, engine=engine, run_engine=True)
    app = create_app(config)           # uvicorn.run(app, host="127.0.0.1", port=8000)

Routers: `api` (JSON under /api, Bearer token), `webhooks` (POST /webhooks/intuit, signed by Intuit), `hooks`
(POST /hooks/{id}, webhook workflows' deliveries, signed with each hook's secret),
`dashboard` (pages behind a login). `app.state` holds the config's parts for the routes: `store`,
`settings`, `engine` (None when no engine runs here), `api_token`, `transport`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.middleware.sessions import SessionMiddleware

from qbflow.server import api, approvals, dashboard, hooks, webhooks
from qbflow.server.auth import SESSION_COOKIE, ApiToken, LoginRequired
from qbflow.settings import Settings
from qbflow.store.runs import RunsHook

log = logging.getLogger("qbflow.server")

SESSION_LIFETIME = timedelta(hours=12)


@dataclass
class ServerConfig:
    """What the server runs with. `engine` is the scheduler (`qbflow.engine.scheduler.Engine`) webhooks hand
    changes to; with `run_engine` the app runs it (`run_forever`) for its lifetime. `secure_cookies`: send
    the session cookie over HTTPS only (set it whenever the server is reached through https)."""

    store: Any
    settings: Settings
    api_token: ApiToken
    engine: Any | None = None
    run_engine: bool = False
    engine_tick: float = 1.0
    secure_cookies: bool = False
    public_url: str = "http://127.0.0.1:8000"
    on_cycle: Callable[[Any], None] | None = None  # called with each engine cycle's report (run_engine only)
    transport: Any | None = None  # httpx transport to Intuit/QBO (tests: the in-process sandbox); None: network
    # Called in the transaction that stores a run made here (a webhook delivery): workers' `enqueue_runs`.
    on_runs: RunsHook | None = None


def create_app(config: ServerConfig) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = None
        if config.run_engine and config.engine is not None:
            task = asyncio.create_task(config.engine.run_forever(tick=config.engine_tick, stop=stop,
                                                                 on_cycle=config.on_cycle))
        try:
            yield
        finally:
            stop.set()
            if task is not None:
                await task  # the run in flight finishes first

    app = FastAPI(title="qbflow", version="1", lifespan=lifespan,
                  description="qbflow's HTTP API: QuickBooks Online connections, workflows and their runs.")
    app.state.store = config.store
    app.state.settings = config.settings
    app.state.engine = config.engine
    app.state.api_token = config.api_token
    app.state.transport = config.transport
    app.state.config = config

    app.add_middleware(SessionMiddleware, secret_key=config.store.box.derive("dashboard session").hex(),
                       session_cookie=SESSION_COOKIE, max_age=int(SESSION_LIFETIME.total_seconds()),
                       same_site="lax", https_only=config.secure_cookies)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):  # noqa: ANN202
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, error: LoginRequired) -> RedirectResponse:
        return RedirectResponse(f"/login?next={quote(error.next_url, safe='')}", status_code=303)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        # "engine": an engine runs in this process (webhooks start polls here); "workers": they go to the workers.
        engine = config.engine is not None and hasattr(config.engine, "cycle")
        body: dict[str, Any] = {"ok": True, "engine": engine}
        if config.engine is not None and not engine:
            body["workers"] = True
        return JSONResponse(body)

    app.include_router(api.router)
    app.include_router(approvals.api_router)
    app.include_router(approvals.router)
    app.include_router(webhooks.router)
    app.include_router(hooks.router)  # POST /hooks/{id}: webhook workflows' deliveries (their own auth)
    app.include_router(hooks.api_router)
    app.include_router(dashboard.router)
    return app
