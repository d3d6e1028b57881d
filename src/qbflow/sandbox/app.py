"""The sandbox as one ASGI app: OAuth 2.0, the Accounting API under /v3/company/{realm}/, and a small
admin API under /_sandbox/ for tests.

    sandbox = Sandbox()                                   # in memory, one seeded company
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox), base_url="http://sandbox")

or `qbflow sandbox` to serve it on 127.0.0.1:8700.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import json
import random
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from qbflow.catalog.entities import (
    ENTITIES,
    QUERY_EXTRA,
    VOID_INCLUDE,
    VOID_OPERATION,
    EntityDef,
    Kind,
    Op,
    entity_named,
)
from qbflow.catalog.fields import known_fields
from qbflow.sandbox import faults, us_entities
from qbflow.sandbox.admin import INJECTABLE_FAULTS
from qbflow.sandbox.admin import routes as admin_routes
from qbflow.sandbox.attachments import Attachments
from qbflow.sandbox.books import Books
from qbflow.sandbox.clock import Clock, qbo_time
from qbflow.sandbox.exchange import ExchangeRates
from qbflow.sandbox.faults import Fault
from qbflow.sandbox.limits import RateLimiter
from qbflow.sandbox.oauth import AuthFailure, OAuthApp, OAuthServer
from qbflow.sandbox.oauth import Company as OAuthCompany
from qbflow.sandbox.pdf import render_pdf
from qbflow.sandbox.query import QueryError, parse_query, select
from qbflow.sandbox.recurring import Recurring, flat
from qbflow.sandbox.reports import run_report
from qbflow.sandbox.storage import Storage
from qbflow.sandbox.taxservice import create_tax_code
from qbflow.sandbox.webhooks import WebhookConfig, WebhookDispatcher

# Successful answers carry a charset; Intuit's 4xx fault answers are plain application/json.
JSON_OK = "application/json;charset=utf-8"
BATCH_MAX_ITEMS = 30
DEFAULT_PAGE = 100


@dataclass
class FaultPlan:
    """Failures the sandbox injects on purpose, for reliability tests."""

    rate: float = 0.0
    kinds: tuple[str, ...] = INJECTABLE_FAULTS
    slow_seconds: float = 5.0
    latency: float = 0.0  # added to every API answer, like a network between client and Intuit
    seed: int | None = None
    injected: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.random = random.Random(self.seed)

    def pick(self) -> tuple[str, bool] | None:
        """(kind, after_work) or None. After-work failures happen once QBO has already done the write."""
        if self.rate <= 0 or self.random.random() >= self.rate:
            return None
        kind = self.random.choice(self.kinds)
        self.injected[kind] = self.injected.get(kind, 0) + 1
        return kind, kind != "429" and self.random.random() < 0.5


class _Reply(Exception):
    """Internal: a finished HTTP answer (status, body, content type)."""

    def __init__(self, status: int, body: bytes, media_type: str, headers: dict | None = None) -> None:
        self.status, self.body, self.media_type, self.headers = status, body, media_type, headers or {}


class _BrokenResponse(Response):
    """Starts an answer and drops the connection midway: a server sees an aborted response, a client a
    connection closed without a complete message (what a reset or a crashed gateway looks like)."""

    def __init__(self) -> None:
        super().__init__(b"", status_code=200, media_type="application/json")

    async def __call__(self, scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")]})
        await send({"type": "http.response.body", "body": b'{"Invoice":', "more_body": True})
        raise ConnectionResetError("sandbox: injected connection reset")


class Sandbox:
    """A local QuickBooks Online: `Sandbox(...)` is an ASGI app."""

    def __init__(
        self,
        *,
        data: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        redirect_uris: list[str] | None = None,
        auto_approve: bool = False,
        rate_limit: bool = True,
        fault_rate: float = 0.0,
        fault_seed: int | None = None,
        companies: int = 1,
        company_names: list[str] | None = None,
        webhook: WebhookConfig | None = None,
        webhook_transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
        seed: bool | str = True,
    ) -> None:
        self.clock = clock or Clock()
        self.storage = Storage(data)
        self.webhooks = WebhookDispatcher(webhook, clock=self.clock, transport=webhook_transport)
        self.books = Books(self.storage, self.clock, on_change=self.webhooks.notify)
        self.limiter = RateLimiter(enabled=rate_limit)
        self.faults = FaultPlan(rate=fault_rate, seed=fault_seed)
        self.attachments = Attachments(self.books, self.storage, self.clock, self._file_secret())
        self.recurring = Recurring(self.books)
        self.exchange_rates = ExchangeRates(self.books)
        self._in_flight: dict[tuple[str, str], asyncio.Event] = {}
        names = company_names or [f"Sandbox Company_US_{n + 1}" for n in range(companies)]
        for name in names[len(self.books.companies):]:
            self.books.create_company(name, seed=seed)
        self.client_id = client_id or self.storage.kv_get("client_id") or "AB" + secrets.token_hex(24)
        self.storage.kv_set("client_id", self.client_id)
        # The emulated app registry keeps its secret so a restarted sandbox accepts the same app (like
        # Intuit's developer portal, which shows it again); this is the sandbox's file, not qbflow's store.
        self.client_secret = client_secret or self.storage.kv_get("client_secret") or secrets.token_urlsafe(30)
        self.storage.kv_set("client_secret", self.client_secret)
        self.oauth = OAuthServer(
            clock=self.clock, storage=self.storage,
            apps=[OAuthApp(self.client_id, self.client_secret, redirect_uris)],
            companies=lambda: [OAuthCompany(c.realm_id, c.name) for c in self.books.companies.values()],
            auto_approve=auto_approve,
        )
        self.app = Starlette(
            routes=[
                *self.oauth.routes(),
                Route("/v3/company/{realm}/{rest:path}", self.api, methods=["GET", "POST"]),
                *admin_routes(self),
            ],
            lifespan=self._lifespan,
        )

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        await self.webhooks.start()
        try:
            yield
        finally:
            await self.webhooks.stop()

    async def __call__(self, scope, receive, send) -> None:
        await self.app(scope, receive, send)

    def _file_secret(self) -> str:
        secret = self.storage.kv_get("file_secret")
        if secret is None:
            secret = secrets.token_hex(32)
            self.storage.kv_set("file_secret", secret)
        return secret

    @property
    def realms(self) -> list[str]:
        return list(self.books.companies)

    # --- the Accounting API -------------------------------------------------------------------------
    async def api(self, request: Request) -> Response:
        realm = request.path_params["realm"]
        tid = f"1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]}"
        headers = {"intuit_tid": tid, "QBO-Version": "1990.170"}
        try:
            self.oauth.authenticate(request.headers.get("authorization"), realm)
        except AuthFailure as failure:
            # Only a token without the accounting scope is 403; a missing, expired, revoked or
            # other-company token is Intuit's 401 AuthenticationFailed (3200).
            if failure.status == 403 and "scope" in failure.detail:
                return JSONResponse(faults.authorization_body(failure.detail), status_code=403, headers=headers)
            return JSONResponse(faults.authentication_body(failure.detail), status_code=401,
                                headers={**headers, "WWW-Authenticate": faults.WWW_AUTHENTICATE})
        # `minorversion` needs no handling: Intuit serves every value as 75 since 2025-08-01, and so do we.
        rest = request.path_params["rest"].strip("/")
        is_batch = rest == "batch"
        if not self.limiter.acquire(realm, batch=is_batch):
            return self._fault_response(faults.throttled(), headers)
        try:
            if self.faults.latency > 0:
                await asyncio.sleep(self.faults.latency)
            injected = self.faults.pick()
            if injected == ("slow", False):
                await asyncio.sleep(self.faults.slow_seconds)
                injected = None
            if injected and not injected[1]:
                return await self._inject(injected[0], headers)
            request_id = request.query_params.get("requestid")
            key = (realm, request_id)
            if request_id:
                # A retry that arrives while the first request is still being served waits for its answer.
                while key in self._in_flight:
                    await self._in_flight[key].wait()
            cached = self._replay(realm, request_id) if request_id else None
            if cached is not None:
                status, body, media_type = cached
                return Response(body, status_code=status, media_type=media_type, headers=headers)
            if request_id:
                self._in_flight[key] = asyncio.Event()
            try:
                try:
                    status, payload, media_type = await self._dispatch(request, realm, rest)
                except Fault as fault:
                    status, payload, media_type = fault.status, fault.body(self._time()), "application/json"
                body = payload if isinstance(payload, bytes) else _dumps(payload)
                if request_id and status < 500 and status != 429:
                    self._remember(realm, request_id, (status, body, media_type))
            finally:
                if request_id:
                    self._in_flight.pop(key).set()
            if injected == ("slow", True):
                # Still the right answer, late: a client that gives up first cannot tell whether the write
                # happened, which is the case requestid exists for.
                await asyncio.sleep(self.faults.slow_seconds)
            elif injected:
                return await self._inject(injected[0], headers)
            return Response(body, status_code=status, media_type=media_type, headers=headers)
        finally:
            self.limiter.release(realm)

    def _replay(self, realm: str, request_id: str) -> tuple[int, bytes, str] | None:
        """The first answer given to this requestid in this company, if any (kept across restarts)."""
        saved = self.storage.kv_get(f"requestid:{realm}:{request_id}")
        if saved is None:
            return None
        status, body, media_type = saved
        return status, base64.b64decode(body), media_type

    def _remember(self, realm: str, request_id: str, answer: tuple[int, bytes, str]) -> None:
        status, body, media_type = answer
        self.storage.kv_set(f"requestid:{realm}:{request_id}", [status, base64.b64encode(body).decode(), media_type])

    def _time(self) -> str:
        return qbo_time(self.clock.now())

    def _fault_response(self, fault: Fault, headers: dict) -> Response:
        return JSONResponse(fault.body(self._time()), status_code=fault.status, headers=headers)

    async def _inject(self, kind: str, headers: dict) -> Response:
        if kind == "429":
            return self._fault_response(faults.throttled(), headers)
        if kind == "500":
            return self._fault_response(faults.system_error(), headers)
        if kind == "503":
            return PlainTextResponse("Service Unavailable", status_code=503, headers=headers)
        return _BrokenResponse()

    async def _dispatch(self, request: Request, realm: str, rest: str) -> tuple[int, Any, str]:
        parts = rest.split("/")
        method = request.method
        params = request.query_params
        # Resource names match whatever their case (/Invoice/5 is /invoice/5), as entity names do in a
        # query's FROM and in CDC's `entities` (*inferred* for URLs: Intuit's SDKs send them lower-cased).
        head = parts[0].lower()
        if head == "query":
            text = params.get("query") if method == "GET" else (await request.body()).decode("utf-8", "replace")
            if not text:
                raise faults.required("query")
            answer = self.query(realm, text, str(request.base_url))
            return 200, {"QueryResponse": answer, "time": self._time()}, JSON_OK
        if head == "cdc" and method == "GET" and len(parts) == 1:
            entities = [e.strip() for e in params.get("entities", "").split(",") if e.strip()]
            since = params.get("changedSince")
            if not since:
                raise faults.required("changedSince")
            return 200, {**self.books.cdc(realm, entities, since), "time": self._time()}, JSON_OK
        if head == "batch" and method == "POST" and len(parts) == 1:
            return 200, {"BatchItemResponse": self.batch(realm, await _json(request)),
                         "time": self._time()}, JSON_OK
        if head == "upload" and method == "POST" and len(parts) == 1:
            answers = await self.attachments.upload(realm, request)
            return 200, {"AttachableResponse": answers, "time": self._time()}, JSON_OK
        if head == "download" and method == "GET" and len(parts) == 2:
            url = self.attachments.temp_url(realm, parts[1], str(request.base_url))
            return 200, url.encode(), "text/plain"
        if head == "companyinfo" and method == "GET" and len(parts) == 2:
            if parts[1] != realm:
                raise faults.not_found()
            return 200, {"CompanyInfo": self.books.get(realm, "CompanyInfo", "1"), "time": self._time()}, \
                JSON_OK
        if head == "preferences" and method == "GET" and len(parts) == 1:
            return 200, {"Preferences": self.books.get(realm, "Preferences", "1"), "time": self._time()}, \
                JSON_OK
        if head == "reports" and method == "GET" and len(parts) == 2:
            # Reports come bare, without an envelope or `time` (recorded ProfitAndLoss and GeneralLedger).
            return 200, run_report(self.books, realm, parts[1], params), JSON_OK
        if head == "taxservice" and method == "POST" and len(parts) == 2 and parts[1].lower() == "taxcode":
            # Intuit answers the TaxService object bare, without an envelope or `time`.
            return 200, create_tax_code(self.books, realm, await _json(request)), JSON_OK
        entity = entity_named(head)
        if entity is None or len(parts) > 3:
            raise self._no_resource(request)
        self._check_multicurrency(realm, entity)
        if entity.kind is Kind.RATE:
            if method == "GET" and len(parts) == 1:
                rate = self.exchange_rates.read(realm, _param(params, "sourcecurrencycode"),
                                                _param(params, "asofdate"))
                return 200, {entity.key: rate, "time": self._time()}, JSON_OK
            if method == "POST" and len(parts) == 1:
                rate = self.exchange_rates.update(realm, await _json(request))
                return 200, {entity.key: rate, "time": self._time()}, JSON_OK
            raise self._no_resource(request)
        if entity.kind is Kind.TEMPLATE:
            if method == "GET" and len(parts) == 2:
                from qbflow.sandbox.books import _check_id

                _check_id(parts[1])
                return 200, {entity.key: self.recurring.get(realm, parts[1]), "time": self._time()}, JSON_OK
            if method == "POST" and len(parts) == 1:
                record = self.write(realm, entity.name, params.get("operation"), params.get("include"),
                                    await _json(request))
                return 200, {entity.key: record, "time": self._time()}, JSON_OK
            raise self._no_resource(request)
        if method == "GET" and len(parts) == 2:
            record = self.books.get(realm, entity.name, parts[1])
            if entity.kind is Kind.ATTACHMENT:
                record = self.attachments.with_temp_url(realm, record, str(request.base_url))
            if entity.name == "Invoice" and "invoicelink" in params.get("include", "").lower():
                record = _with_invoice_link(realm, record)
            return 200, {entity.key: record, "time": self._time()}, JSON_OK
        if method == "GET" and len(parts) == 3 and parts[2].lower() == "pdf":
            if not entity.supports(Op.PDF):
                raise self._no_resource(request)
            record = self.books.get(realm, entity.name, parts[1])
            return 200, render_pdf(entity.name, record, self.books.company(realm).name), "application/pdf"
        if method == "POST" and len(parts) == 3 and parts[2].lower() == "send":
            if not entity.supports(Op.SEND):
                raise self._no_resource(request)
            content_type = request.headers.get("content-type", "")
            if content_type.startswith("application/json"):
                # What QBO answers when a client sends JSON to /send (python-quickbooks PR #257).
                raise faults.required("DeliveryAddress.Address")
            record = self.books.send(realm, entity.name, parts[1], params.get("sendTo"))
            return 200, {entity.key: record, "time": self._time()}, JSON_OK
        if method == "POST" and len(parts) == 1:
            record = self.write(realm, entity.name, params.get("operation"), params.get("include"),
                                await _json(request))
            if entity.kind is Kind.ATTACHMENT and record.get("status") != "Deleted":
                record = self.attachments.with_temp_url(realm, record, str(request.base_url))
            return 200, {entity.key: record, "time": self._time()}, JSON_OK
        raise self._no_resource(request)

    def _check_multicurrency(self, realm: str, entity: EntityDef) -> None:
        if entity.multicurrency and not us_entities.multicurrency_enabled(self.books.company(realm)):
            raise us_entities.multicurrency_off()

    @staticmethod
    def _no_resource(request: Request) -> Fault:
        return faults.unsupported(request.url.path, str(request.url.replace(query="")))

    def write(self, realm: str, entity_name: str, operation: str | None, include: str | None, body: Any) -> dict:
        """Create, update, delete or void, as the `operation` and `include` query parameters say."""
        if not isinstance(body, dict):
            raise faults.invalid("Request body must be a JSON object", code="2010")
        entity = ENTITIES[entity_name]
        self._check_multicurrency(realm, entity)
        with self.storage.transaction():
            return self._write(realm, entity_name, operation, include, body)

    def _write(self, realm: str, entity_name: str, operation: str | None, include: str | None, body: dict) -> dict:
        entity = ENTITIES[entity_name]
        if entity.kind is Kind.TEMPLATE:
            if operation == "delete":
                return self.recurring.delete(realm, body)
            if operation not in (None, "create", "update") or include:
                raise faults.unsupported_operation(str(operation or include))
            _kind, txn = _template_body(body)
            if txn.get("Id") not in (None, ""):
                return self.recurring.update(realm, body)
            return self.recurring.create(realm, body)
        if entity.kind is Kind.RATE:
            return self.exchange_rates.update(realm, body)
        if operation == "delete":
            return self.books.delete(realm, entity_name, body)
        if operation == "void":
            if entity.void_style != VOID_OPERATION:
                raise faults.unsupported_operation("void")
            return self.books.void(realm, entity_name, body)
        if include == "void" and operation in ("update", None):
            if entity.void_style != VOID_INCLUDE:
                raise faults.unsupported_operation("void")
            return self.books.void(realm, entity_name, body)
        if operation not in (None, "create", "update"):
            raise faults.unsupported_operation(str(operation))
        if body.get("Id") not in (None, ""):
            return self.books.update(realm, entity_name, body)
        return self.books.create(realm, entity_name, body)

    def query(self, realm: str, text: str, base_url: str | None = None) -> dict:
        """Run one query; answers the QueryResponse object."""
        try:
            query = parse_query(text, known_entities=ENTITIES.keys(), known_property=_known_property)
        except QueryError as error:
            raise Fault(error.code, error.message, error.detail, element=None) from None
        entity = ENTITIES[query.entity]
        self._check_multicurrency(realm, entity)
        if entity.kind is Kind.TEMPLATE:
            # Conditions see the wrapped transaction and its Type; the answer keeps the wrapper.
            views: dict[int, dict] = {}
            records = []
            for stored in self._candidates(realm, query):
                flat_view = flat(stored)
                views[id(flat_view)] = stored
                records.append(flat_view)
        elif entity.kind is Kind.RATE:
            records = self.exchange_rates.candidates(realm)
        else:
            records = self._candidates(realm, query)
        if entity.kind is Kind.NAME_LIST and not query.filters_on("Active"):
            records = [r for r in records if r.get("Active", True)]
        page, total = select(query, records)
        if query.count:
            return {"totalCount": total}
        if not page:
            return {}
        if entity.kind is Kind.ATTACHMENT and base_url:
            page = [self.attachments.with_temp_url(realm, r, base_url) for r in page]
        if entity.kind is Kind.TEMPLATE:
            page = [{views[id(r)]["Type"]: views[id(r)][views[id(r)]["Type"]]} for r in page]
        return {entity.key: page, "startPosition": query.start_position, "maxResults": len(page)}

    def _candidates(self, realm: str, query: Any) -> Any:
        """The records a query can match: an equality on Id or on the customer/vendor narrows the scan to
        an index lookup (select() still checks every condition)."""
        company = self.books.company(realm)
        for condition in query.conditions:
            if condition.negated or len(condition.path) != 1 or condition.op not in ("=", "IN"):
                continue
            name = condition.path[0].lower()
            keys = [str(v) for v in condition.values]
            if name == "id":
                table = company.table(query.entity)
                return [table[k] for k in dict.fromkeys(keys) if k in table]
            if name in ("customerref", "vendorref") and len(keys) == 1:
                return sorted(company.parties(query.entity, keys[0]), key=lambda r: (len(r["Id"]), r["Id"]))
        return company.table(query.entity).values()

    def batch(self, realm: str, body: Any) -> list[dict]:
        items = body.get("BatchItemRequest") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            raise faults.required("BatchItemRequest")
        if len(items) > BATCH_MAX_ITEMS:
            raise faults.invalid(f"Number of items in BatchItemRequest ({len(items)}) exceeds the maximum of "
                                 f"{BATCH_MAX_ITEMS}", "BatchItemRequest", code="2010")
        answers = []
        with self.storage.transaction():
            self._run_batch(realm, items, answers)
        return answers

    def _run_batch(self, realm: str, items: list, answers: list[dict]) -> None:
        try:
            for item in items:
                bid = str(item.get("bId", "")) if isinstance(item, dict) else ""
                try:
                    if not isinstance(item, dict):
                        raise faults.invalid("BatchItemRequest entries must be objects", "BatchItemRequest")
                    answer = self._batch_item(realm, item)
                    answers.append({**answer, "bId": bid})
                    if item.get("operation") == "create":
                        (name, record), = answer.items()
                        self.books.unseen.add((name, record["Id"]))
                except Fault as fault:
                    answers.append({"Fault": {"Error": [fault.error()], "type": fault.type}, "bId": bid})
        finally:
            self.books.unseen.clear()

    def _batch_item(self, realm: str, item: dict) -> dict:
        if "Query" in item:
            return {"QueryResponse": self.query(realm, str(item["Query"]))}
        operation = item.get("operation")
        by_key = {e.key: e.name for e in ENTITIES.values() if e.kind in (Kind.NAME_LIST, Kind.TRANSACTION,
                                                                         Kind.ATTACHMENT, Kind.SETTINGS)}
        names = [by_key.get(k) or k for k in item if k in ENTITIES or k in by_key]
        if not names:
            raise faults.required("BatchItemRequest entity")
        name = names[0]
        body_key = ENTITIES[name].key if ENTITIES[name].key in item else name
        if operation not in ("create", "update", "delete", "void"):
            raise faults.invalid(f"Unsupported batch operation: {operation}", "operation", code="2010")
        body = item[body_key]
        if operation == "create" and isinstance(body, dict):
            body = {k: v for k, v in body.items() if k != "Id"}
        entity = ENTITIES[name]
        if operation == "void":
            op, include = ("void", None) if entity.void_style == VOID_OPERATION else ("update", "void")
        else:
            op, include = (None if operation in ("create", "update") else operation), None
        return {ENTITIES[name].key: self.write(realm, name, op, include, body)}


def _with_invoice_link(realm: str, invoice: dict) -> dict:
    """`include=invoiceLink`: QBO adds a pay-online link when the invoice can be paid online and has an
    e-mail address. The link has Intuit's form but leads nowhere: the sandbox takes no payments."""
    online = invoice.get("AllowOnlineCreditCardPayment") or invoice.get("AllowOnlineACHPayment")
    if not online or not (invoice.get("BillEmail") or {}).get("Address"):
        return invoice
    token = hashlib.sha256(f"{realm}/{invoice['Id']}".encode()).hexdigest()[:40]
    return {**invoice, "InvoiceLink": f"https://connect.intuit.com/portal/app/CommerceNetwork/view/scs-v1-{token}"}


@functools.cache
def _lowercase_fields(entity: str) -> frozenset[str]:
    return frozenset(name.lower() for name in known_fields(entity))


def _known_property(entity: str, name: str) -> bool:
    """Property names in queries match whatever their case (Intuit's own docs write `Metadata`)."""
    extra = QUERY_EXTRA.get(entity, frozenset())
    return name.lower() in _lowercase_fields(entity) or name.lower() in {e.lower() for e in extra}


def _template_body(body: Any) -> tuple[str, dict]:
    from qbflow.sandbox.recurring import unwrap

    return unwrap(body)


def _param(params: Any, name: str) -> str | None:
    """A query parameter whatever the case of its name (`sourcecurrencycode`, `sourceCurrencyCode`)."""
    for key, value in params.items():
        if key.lower() == name:
            return value
    return None


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


async def _json(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        raise faults.empty_body()
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise faults.unparsable_body() from None


__all__ = ["Sandbox", "FaultPlan", "WebhookConfig"]
