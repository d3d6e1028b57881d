"""The generic steps a workflow can use besides QuickBooks actions: `http.request` and `log`.

    output = await http_request(HttpRequestInput(url="https://hooks.example.com/x", json={...}),
                                request_id="...", transport=None)
    # {"status": 200, "headers": {...}, "json": {...}}   (or "text" when the answer is not JSON)
    output = log_message(LogInput(message="Sent invoice 1042"), workflow="follow-up", run_id=7, step_id="note")
    # {"message": "Sent invoice 1042"}

A non-2xx answer is an `HttpStepError`; 5xx, 408 and 429 are `transient` (worth a retry), other statuses are not.
Connection errors and timeouts stay httpx's own `TransportError`s (the runner treats them as transient).
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
from pydantic import BaseModel, ValidationError

from qbflow.connector.base import ActionInputError, problems_of
from qbflow.engine.workflow import GENERIC_STEPS, HttpRequestInput, LogInput
from qbflow.errors import QBFlowError
from qbflow.qbo.tls import tls_context

__all__ = ["HttpStepError", "http_request", "log_message", "parse_generic"]

log = logging.getLogger("qbflow.workflow")

_TITLES = {"http.request": "HTTP Request", "log": "Log"}
_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_BODY_EXCERPT = 300
_TRANSIENT_STATUSES = frozenset({408, 425, 429})


class HttpStepError(QBFlowError):
    """An `http.request` step got a non-2xx answer. `transient` is true for 5xx, 408, 425 and 429."""

    def __init__(self, method: str, url: str, status: int, excerpt: str) -> None:
        self.method = method
        self.url = url
        self.status = status
        self.excerpt = excerpt
        self.transient = status >= 500 or status in _TRANSIENT_STATUSES
        text = f"{method} {url} answered HTTP {status}"
        super().__init__(f"{text}: {excerpt}" if excerpt else text)


def parse_generic(key: str, data: Any) -> BaseModel:
    """The input of a generic step as its model, or ActionInputError naming every problem."""
    model = GENERIC_STEPS[key]
    try:
        return model.model_validate({} if data is None else data)
    except ValidationError as error:
        raise ActionInputError(_TITLES.get(key, key), problems_of(error)) from None


def _answer(response: httpx.Response) -> dict[str, Any]:
    output: dict[str, Any] = {"status": response.status_code, "headers": dict(response.headers)}
    if "json" in response.headers.get("content-type", "").lower() and response.content.strip():
        try:
            output["json"] = response.json()
            return output
        except ValueError:
            pass
    output["text"] = response.text
    return output


async def http_request(
    model: HttpRequestInput,
    *,
    request_id: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Send the request; the answer as {status, headers, json | text}. Non-2xx raises HttpStepError.

    `request_id` goes out as an `Idempotency-Key` header (unless the input sets one), so a receiver that
    honours it sees a retried step as the same request.
    """
    headers = dict(model.headers)
    if request_id and not any(name.lower() == "idempotency-key" for name in headers):
        headers["Idempotency-Key"] = request_id
    kwargs: dict[str, Any] = {"headers": headers}
    if model.body is not None:
        kwargs["json"] = model.body
    async with httpx.AsyncClient(transport=transport, timeout=timeout, follow_redirects=True,
                                 verify=tls_context()) as http:
        response = await http.request(model.method, model.url, **kwargs)
    if not 200 <= response.status_code < 300:
        excerpt = " ".join(response.text[:_BODY_EXCERPT].split())
        raise HttpStepError(model.method, model.url, response.status_code, excerpt)
    return _answer(response)


def log_message(model: LogInput, *, workflow: str = "", run_id: Any = None, step_id: str = "") -> dict[str, Any]:
    """Write the message to the `qbflow.workflow` logger; the output is {"message": ...}."""
    log.log(_LEVELS[model.level], "%s", model.message,
            extra={"workflow": workflow, "run_id": run_id, "step_id": step_id})
    return {"message": model.message}
