"""The sandbox's own admin API under /_sandbox/: companies, the email outbox, injected faults, the clock,
throttles and webhooks. It exists for tests and demos; Intuit has nothing like it.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from qbflow.sandbox.clock import qbo_time
from qbflow.sandbox.webhooks import WebhookConfig

if TYPE_CHECKING:
    from qbflow.sandbox.app import Sandbox

INJECTABLE_FAULTS = ("500", "503", "429", "reset", "slow")


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _body(request: Request) -> dict:
    raw = await request.body()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"request body is not JSON: {error.msg}") from None
    if not isinstance(value, dict):
        raise ValueError("request body must be a JSON object")
    return value


def routes(sandbox: Sandbox) -> list[Route]:
    def company_json(realm: str) -> dict:
        company = sandbox.books.companies[realm]
        return {"realmId": realm, "name": company.name}

    async def companies(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse({"companies": [company_json(r) for r in sandbox.books.companies]})
        try:
            body = await _body(request)
            seed = body.get("seed", True)
            if not isinstance(seed, (bool, str)):
                raise ValueError(f"seed must be true, false, \"sample\" or \"empty\", got {seed!r}")
            company = sandbox.books.create_company(body.get("name"), body.get("realmId"), seed=seed)
        except ValueError as error:
            return _error(str(error))
        return JSONResponse(company_json(company.realm_id), status_code=201)

    async def outbox(request: Request) -> Response:
        realm = request.path_params["realm"]
        if realm not in sandbox.books.companies:
            return _error(f"no company with realm id {realm}", 404)
        return JSONResponse({"emails": sandbox.books.companies[realm].outbox})

    async def fault_plan(request: Request) -> Response:
        plan = sandbox.faults
        if request.method == "PUT":
            try:
                body = await _body(request)
                rate = float(body.get("rate", plan.rate))
                kinds = tuple(body.get("kinds", plan.kinds))
                slow = float(body.get("slow_seconds", plan.slow_seconds))
                latency = float(body.get("latency", plan.latency))
            except (ValueError, TypeError) as error:
                return _error(str(error))
            if not 0 <= latency <= 60:
                return _error(f"latency must be between 0 and 60 seconds, got {latency}")
            if not 0 <= rate <= 1:
                return _error(f"rate must be between 0 and 1, got {rate}")
            unknown = [k for k in kinds if k not in INJECTABLE_FAULTS]
            if unknown or not kinds:
                return _error(f"kinds must be a non-empty subset of {list(INJECTABLE_FAULTS)}, got {list(kinds)}")
            plan.rate, plan.kinds, plan.slow_seconds, plan.latency = rate, kinds, slow, latency
        return JSONResponse({"rate": plan.rate, "kinds": list(plan.kinds), "slow_seconds": plan.slow_seconds,
                             "latency": plan.latency, "injected": plan.injected})

    async def clock(request: Request) -> Response:
        if request.method == "POST":
            try:
                seconds = float((await _body(request)).get("advance", 0))
                sandbox.clock.advance(seconds)
            except (ValueError, TypeError) as error:
                return _error(str(error))
        return JSONResponse({"now": qbo_time(sandbox.clock.now()), "offset_seconds": sandbox.clock.offset})

    async def limits(request: Request) -> Response:
        if request.method == "PUT":
            try:
                body = await _body(request)
            except ValueError as error:
                return _error(str(error))
            if "enabled" in body:
                sandbox.limiter.enabled = bool(body["enabled"])
            if body.get("reset"):  # the windows and the per-company counts start over
                sandbox.limiter.reset()
        return JSONResponse({"enabled": sandbox.limiter.enabled, "refused": sandbox.limiter.refused,
                             "policy": asdict(sandbox.limiter.policy),
                             "realms": {r: sandbox.limiter.stats(r) for r in sandbox.books.companies}})

    async def webhooks(request: Request) -> Response:
        if request.method == "PUT":
            try:
                body = await _body(request)
                if body.get("url"):
                    config = WebhookConfig(
                        url=str(body["url"]), verifier_token=str(body["verifier_token"]),
                        format=body.get("format", "legacy"),
                        **{k: body[k] for k in ("batch_window", "timeout") if k in body},
                    )
                    if config.format not in ("legacy", "cloudevents"):
                        raise ValueError(f"format must be legacy or cloudevents, got {config.format!r}")
                else:
                    config = None
            except KeyError as error:
                return _error(f"missing field {error.args[0]}")
            except (ValueError, TypeError) as error:
                return _error(str(error))
            sandbox.webhooks.configure(config)
        config = sandbox.webhooks.config
        shown: dict[str, Any] = {"configured": config is not None}
        if config is not None:
            # The verifier token is write-only: it is a secret.
            shown.update({"url": config.url, "format": config.format, "batch_window": config.batch_window,
                          "timeout": config.timeout})
        return JSONResponse(shown)

    async def deliveries(request: Request) -> Response:
        return JSONResponse({"deliveries": sandbox.webhooks.deliveries})

    return [
        Route("/_sandbox/companies", companies, methods=["GET", "POST"]),
        Route("/_sandbox/companies/{realm}/outbox", outbox, methods=["GET"]),
        Route("/_sandbox/faults", fault_plan, methods=["GET", "PUT"]),
        Route("/_sandbox/clock", clock, methods=["GET", "POST"]),
        Route("/_sandbox/limits", limits, methods=["GET", "PUT"]),
        Route("/_sandbox/webhooks", webhooks, methods=["GET", "PUT"]),
        Route("/_sandbox/webhooks/deliveries", deliveries, methods=["GET"]),
        Route("/_sandbox/files/{realm}/{record_id}/{filename:path}", sandbox.attachments.serve, methods=["GET"]),
    ]
