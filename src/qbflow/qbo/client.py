"""The async QuickBooks Online client: one per company, over one httpx.AsyncClient.

    async with QBOClient(realm_id, base_url=PRODUCTION_BASE_URL, tokens=provider) as qbo:
        invoice = await qbo.create("Invoice", {...})
        async for customer in qbo.query_all(Query("Customer").where(Active=True)):
            ...

What every call gets, in one place (`_request`):

* `minorversion` on the URL, `Accept: application/json`, the bearer token from the TokenProvider.
* Pacing through the realm's `Pacer` (`qbflow.qbo.pacing`: 500/min, 10 in flight, 40 batches/min), shared by
  every client of the realm in this process, or by every process (PostgreSQL or Redis).
* A 401 makes the provider refresh once (coalesced across concurrent callers); the call is sent again
  with the new token; a second 401 raises AuthError.
* Retries with stamina on RateLimited (the pacer pauses the realm for the wait) and Transient (429-free
  5xx, SystemFault, connection errors, timeouts, truncated bodies), bounded by `RetryPolicy`.
* Writes carry a `requestid` (the caller's, or one uuid per logical call) reused across retries, so QBO
  answers a repeat with its first answer instead of writing twice.
* Failures become typed errors (`qbflow.qbo.errors`); logs never show tokens, headers or bodies.

Entity knowledge (URL segment, supported operations, void style) comes from `qbflow.catalog`;
operations an entity does not support are refused before any request with `UnsupportedOperation`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
import stamina

from qbflow.catalog.entities import BY_PATH, ENTITIES, NO_CDC, VOID_INCLUDE, VOID_OPERATION, EntityDef, Kind, Op
from qbflow.qbo.errors import (
    QBOError,
    RateLimited,
    Transient,
    UnsupportedOperation,
    error_from_fault,
    error_from_response,
)
from qbflow.qbo.pacing import Pacer, pacer_for
from qbflow.qbo.query import MAX_PAGE, Query
from qbflow.qbo.tokens import TokenProvider
from qbflow.qbo.transport import api_client, failure_of

__all__ = [
    "DEFAULT_MINOR_VERSION",
    "PRODUCTION_BASE_URL",
    "SANDBOX_BASE_URL",
    "BatchResult",
    "QBOClient",
    "RetryPolicy",
    "single_try",
]

log = logging.getLogger("qbflow.qbo")

PRODUCTION_BASE_URL = "https://quickbooks.api.intuit.com"
SANDBOX_BASE_URL = "https://sandbox-quickbooks.api.intuit.com"
# Since 2025-08-01 Intuit serves every request as minor version 75 (README §1); newer ones may follow.
DEFAULT_MINOR_VERSION = 75
BATCH_SIZE = 30  # Intuit's maximum number of items in one BatchItemRequest
REQUEST_ID_MAX = 50  # "requestid" length limit
BATCH_REQUEST_ID_MAX = 36  # ... and for /batch
# Queries longer than this go as a POST body (Content-Type application/text) rather than in the URL.
LONG_QUERY = 1000
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
_REALM = re.compile(r"[A-Za-z0-9_-]+")
_REPORT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]+")
_PAGING = re.compile(r"\b(STARTPOSITION|MAXRESULTS)\b", re.IGNORECASE)
_FROM = re.compile(r"\bFROM\s+([A-Za-z]+)", re.IGNORECASE)
_USER_AGENT = "qbflow (+https://github.com/qbflow)"


# Set by a caller that keeps its own retry budget (the workflow runner): calls in its context try once, so every
# request counts against that one budget instead of being multiplied by the client's own retries.
_SINGLE_TRY: ContextVar[bool] = ContextVar("qbflow_qbo_single_try", default=False)


@contextlib.contextmanager
def single_try() -> Iterator[None]:
    """Within this block (this task and what it awaits), client calls make one attempt: no transport retries.
    A 401 still refreshes the token and sends once more (that is not a retry of a failure)."""
    token = _SINGLE_TRY.set(True)
    try:
        yield
    finally:
        _SINGLE_TRY.reset(token)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one logical call tries: attempts and total seconds are both bounded; waits between
    attempts grow exponentially from `wait_initial` to `wait_max` plus up to `wait_jitter` random seconds.

    After a 429 the wait is the pacer's pause (Retry-After, else 60 s), which `timeout` must allow for.
    """

    attempts: int = 6
    timeout: float = 180.0
    wait_initial: float = 0.5
    wait_max: float = 10.0
    wait_jitter: float = 1.0


@dataclass(frozen=True)
class BatchResult:
    """One item's answer in a batch: `record` (or `query_response`) on success, else `error`."""

    index: int  # position in the list given to batch()
    operation: str  # create / update / delete / void / query
    entity: str | None
    record: dict | None = None
    query_response: dict | None = None
    error: QBOError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class _CallState:
    """What one logical call remembers across its attempts."""

    refreshed: bool = False


def _fit_request_id(request_id: str, limit: int) -> str:
    """A requestid QBO accepts: the caller's as is when short and plain, else a stable digest of it."""
    if len(request_id) <= limit and _SAFE_REQUEST_ID.fullmatch(request_id):
        return request_id
    return hashlib.sha256(request_id.encode("utf-8")).hexdigest()[:limit]


class QBOClient:
    """An async client for one QBO company (realm). Use as `async with`, or call `aclose()`."""

    def __init__(
        self,
        realm_id: str,
        *,
        base_url: str,
        tokens: TokenProvider,
        transport: httpx.AsyncBaseTransport | None = None,
        minor_version: int = DEFAULT_MINOR_VERSION,
        pacer: Pacer | Literal[False] | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        retry: RetryPolicy = RetryPolicy(),
    ) -> None:
        """`base_url`: PRODUCTION_BASE_URL, SANDBOX_BASE_URL, or any QBO-compatible server (our sandbox).
        `pacer`: None shares the process-wide in-process pacer of this realm (`pacer_for`); a `Pacer` of a
        backend (`pacing_backend(...).pacer(realm_id)`) shares it with other processes; False sends without
        pacing (tests, or when something else paces)."""
        realm_id = str(realm_id)
        if not _REALM.fullmatch(realm_id):
            raise ValueError(f"invalid realm id {realm_id!r}")
        self.realm_id = realm_id
        self.base_url = base_url.rstrip("/")
        self.minor_version = minor_version
        self.retry = retry
        self._tokens = tokens
        self._pacer: Pacer | None = None if pacer is False else (pacer or pacer_for(realm_id))
        self._api = f"{self.base_url}/v3/company/{realm_id}"
        self._http = api_client(transport=transport, timeout=timeout, follow_redirects=False,
                                headers={"User-Agent": _USER_AGENT})

    @property
    def pacer(self) -> Pacer | None:
        """The pacer every request goes through (None: not paced). `client.pacer.limits.max_concurrent` is how many
        requests to this company may be in flight at once, across every client sharing the pacer."""
        return self._pacer

    async def __aenter__(self) -> QBOClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def __repr__(self) -> str:
        return f"QBOClient(realm_id={self.realm_id!r}, base_url={self.base_url!r}, minor_version={self.minor_version})"

    # --- entities ------------------------------------------------------------------------------------
    @staticmethod
    def _entity(name: str, op: Op) -> EntityDef:
        entity = ENTITIES.get(name) or BY_PATH.get(str(name).lower())
        if entity is None:
            raise UnsupportedOperation(f"unknown entity {name!r}; expected one of {', '.join(sorted(ENTITIES))}")
        if not entity.supports(op):
            hint = ""
            if op is Op.DELETE and entity.kind is Kind.NAME_LIST:
                hint = f"; {entity.name} is a name list, which QBO never deletes: use deactivate()"
            raise UnsupportedOperation(f"{entity.name} does not support {op.value}{hint}")
        return entity

    async def _id_and_token(self, entity: EntityDef, id_or_record: str | int | Mapping[str, Any]) -> dict:
        """{"Id", "SyncToken"} of a record given as a record (used as is) or an Id (read first)."""
        if isinstance(id_or_record, Mapping):
            if id_or_record.get("Id") in (None, ""):
                raise ValueError(f"{entity.name} record has no Id")
            if id_or_record.get("SyncToken") not in (None, ""):
                return {"Id": str(id_or_record["Id"]), "SyncToken": str(id_or_record["SyncToken"])}
            id_or_record = id_or_record["Id"]
        current = await self.get(entity.name, str(id_or_record))
        return {"Id": current["Id"], "SyncToken": current["SyncToken"]}

    # --- reading -------------------------------------------------------------------------------------
    async def get(self, entity: str, record_id: str | int) -> dict:
        """The record `entity` `record_id` (NotFound if there is none)."""
        definition = self._entity(entity, Op.READ)
        body = await self._request("GET", f"{definition.path}/{_segment(record_id)}")
        return body[definition.key]

    async def company_info(self) -> dict:
        """The company's CompanyInfo record."""
        body = await self._request("GET", f"companyinfo/{self.realm_id}")
        return body["CompanyInfo"]

    async def preferences(self) -> dict:
        """The company's Preferences record."""
        body = await self._request("GET", "preferences")
        return body["Preferences"]

    async def report(self, name: str, **params: str | int | date | None) -> dict:
        """The report `name` (ProfitAndLoss, BalanceSheet, AgedReceivables...) as QBO answers it (Header,
        Columns, Rows), with `params` as Intuit names them (start_date, end_date, date_macro,
        accounting_method, summarize_column_by, customer, vendor, report_date, aging_period, num_periods...);
        None values are left out, dates sent as ISO text. A read: no requestid."""
        if not _REPORT_NAME.fullmatch(str(name)):
            raise ValueError(f"invalid report name {name!r}")
        query = {key: value.isoformat() if isinstance(value, date) else str(value)
                 for key, value in params.items() if value is not None}
        return await self._request("GET", f"reports/{name}", params=query)

    async def query(self, query: str | Query) -> list[dict]:
        """One page of records (QBO's default page is 100; set .max() for up to 1000)."""
        response = await self._query_response(query)
        return _records_of(response, _entity_of(query))

    async def count(self, entity: str | Query, **where: Any) -> int:
        """How many records match: `count("Invoice", CustomerRef="1")` or `count(Query(...))`."""
        if isinstance(entity, Query) and where:
            raise ValueError("count(Query) takes no further conditions; add them to the Query")
        query = entity if isinstance(entity, Query) else Query(entity).where(**where)
        response = await self._query_response(query.count())
        return int(response.get("totalCount", 0))

    async def query_all(self, query: str | Query, page_size: int = MAX_PAGE) -> AsyncIterator[dict]:
        """Every matching record, page by page (STARTPOSITION). Order by a stable key (e.g. Id) when
        records may be created meanwhile, or a page boundary can shift."""
        if not 1 <= page_size <= MAX_PAGE:
            raise ValueError(f"page_size must be from 1 to {MAX_PAGE}")
        if isinstance(query, Query):
            if query.counting or query.start_position is not None or query.max_results is not None:
                raise ValueError("query_all pages by itself: pass a query without count(), start() or max()")
        elif _PAGING.search(query):
            raise ValueError("query_all pages by itself: pass a query without STARTPOSITION or MAXRESULTS")
        entity = _entity_of(query)
        position = 1
        while True:
            if isinstance(query, Query):
                page_query: str | Query = query.start(position).max(page_size)
            else:
                page_query = f"{query.rstrip()} STARTPOSITION {position} MAXRESULTS {page_size}"
            records = _records_of(await self._query_response(page_query), entity)
            for record in records:
                yield record
            if len(records) < page_size:
                return
            position += page_size

    async def _query_response(self, query: str | Query) -> dict:
        text = str(query)
        if len(text) > LONG_QUERY:
            body = await self._request("POST", "query", content=text.encode("utf-8"),
                                       headers={"Content-Type": "application/text"})
        else:
            body = await self._request("GET", "query", params={"query": text})
        return body.get("QueryResponse") or {}

    async def cdc(self, entities: Iterable[str], changed_since: datetime | str) -> dict[str, list[dict]]:
        """Records of `entities` changed since `changed_since` (deleted ones as `status: Deleted` stubs),
        by entity name; every requested entity has a list, maybe empty."""
        names = []
        for name in entities:
            definition = self._entity(name, Op.CDC)
            if definition.name in NO_CDC:
                raise UnsupportedOperation(f"{definition.name} does not support cdc")
            names.append(definition.name)
        if not names:
            raise ValueError("cdc needs at least one entity")
        if isinstance(changed_since, datetime):
            if changed_since.utcoffset() is None:
                raise ValueError("changed_since must be timezone-aware")
            since = changed_since.isoformat(timespec="seconds")
        else:
            since = changed_since
        body = await self._request("GET", "cdc", params={"entities": ",".join(names), "changedSince": since})
        result: dict[str, list[dict]] = {name: [] for name in names}
        by_key = {ENTITIES[name].key: name for name in names}  # CreditCardPayment answers as CreditCardPaymentTxn
        for block in body.get("CDCResponse") or []:
            for response in block.get("QueryResponse") or []:
                for key, value in response.items():
                    if isinstance(value, list):
                        result.setdefault(by_key.get(key, key), []).extend(value)
        return result

    async def pdf(self, entity: str, record_id: str | int) -> bytes:
        """The record as QBO's PDF."""
        definition = self._entity(entity, Op.PDF)
        return await self._request("GET", f"{definition.path}/{_segment(record_id)}/pdf", accept="application/pdf",
                                   expect="bytes")

    # --- writing -------------------------------------------------------------------------------------
    async def create(self, entity: str, body: Mapping[str, Any], request_id: str | None = None) -> dict:
        """Create a record; the answer is the record as QBO stored it."""
        definition = self._entity(entity, Op.CREATE)
        answer = await self._request("POST", definition.path, json=dict(body), request_id=request_id, write=True)
        return answer[definition.key]

    async def update(
        self,
        entity: str,
        body: Mapping[str, Any],
        *,
        sparse: bool = True,
        fetch_sync_token: bool = False,
        request_id: str | None = None,
    ) -> dict:
        """Update a record. Sparse (default) changes only the fields given; full replaces every writable
        field (those left out become empty). The body needs Id, and SyncToken unless `fetch_sync_token`
        reads the current one first (a concurrent change in between still gives StaleObject)."""
        definition = self._entity(entity, Op.UPDATE)
        payload = dict(body)
        if payload.get("Id") in (None, ""):
            raise ValueError(f"update({definition.name}) needs the record's Id")
        if fetch_sync_token:
            current = await self.get(definition.name, payload["Id"])
            payload["SyncToken"] = current["SyncToken"]
        elif payload.get("SyncToken") in (None, ""):
            raise ValueError(f"update({definition.name}) needs a SyncToken, or fetch_sync_token=True")
        payload["sparse"] = bool(sparse)
        answer = await self._request("POST", definition.path, json=payload, request_id=request_id, write=True)
        return answer[definition.key]

    async def delete(
        self, entity: str, id_or_record: str | int | Mapping[str, Any], request_id: str | None = None
    ) -> dict:
        """Delete a transaction or attachment; answers QBO's `{"status": "Deleted", "Id": ...}`."""
        definition = self._entity(entity, Op.DELETE)
        payload = await self._id_and_token(definition, id_or_record)
        answer = await self._request("POST", definition.path, params={"operation": "delete"}, json=payload,
                                     request_id=request_id, write=True)
        return answer[definition.key]

    async def deactivate(
        self, entity: str, id_or_record: str | int | Mapping[str, Any], request_id: str | None = None
    ) -> dict:
        """Make a name-list record inactive (QBO's delete for Customer, Vendor, Item, Account, ...)."""
        definition = self._entity(entity, Op.UPDATE)
        if definition.kind is not Kind.NAME_LIST:
            raise UnsupportedOperation(f"{definition.name} is not a name list; use delete() or void()")
        if isinstance(id_or_record, Mapping) and id_or_record.get("SyncToken") not in (None, ""):
            record = dict(id_or_record)
        else:
            record_id = id_or_record["Id"] if isinstance(id_or_record, Mapping) else id_or_record
            record = await self.get(definition.name, str(record_id))
        payload = {"Id": record["Id"], "SyncToken": record["SyncToken"], "Active": False}
        if definition.name in ("Account", "Class") and record.get("Name"):
            payload["Name"] = record["Name"]  # QBO wants the name along (python-quickbooks, qbo_api)
        return await self.update(definition.name, payload, sparse=True, request_id=request_id)

    async def void(
        self, entity: str, id_or_record: str | int | Mapping[str, Any], request_id: str | None = None
    ) -> dict:
        """Void a transaction: amounts become zero, the record stays. Invoice uses `operation=void`;
        Payment, SalesReceipt and BillPayment a sparse update with `include=void` (per the catalog)."""
        definition = self._entity(entity, Op.VOID)
        payload = await self._id_and_token(definition, id_or_record)
        if definition.void_style == VOID_OPERATION:
            params = {"operation": "void"}
        elif definition.void_style == VOID_INCLUDE:
            params = {"operation": "update", "include": "void"}
            payload["sparse"] = True
        else:
            raise UnsupportedOperation(f"{definition.name} does not support void")
        answer = await self._request("POST", definition.path, params=params, json=payload,
                                     request_id=request_id, write=True)
        return answer[definition.key]

    async def send(
        self, entity: str, record_id: str | int, to: str | None = None, request_id: str | None = None
    ) -> dict:
        """E-mail the record (to `to`, else the address on it); answers the record with its EmailStatus."""
        definition = self._entity(entity, Op.SEND)
        params = {"sendTo": to} if to else {}
        # QBO wants octet-stream and no body here; JSON gets "Required parameter DeliveryAddress.Address".
        answer = await self._request("POST", f"{definition.path}/{_segment(record_id)}/send", params=params,
                                     content=b"", headers={"Content-Type": "application/octet-stream"},
                                     request_id=request_id, write=True)
        return answer[definition.key]

    async def batch(self, items: Iterable[Mapping[str, Any]], request_id: str | None = None) -> list[BatchResult]:
        """Run batch items in chunks of 30 (one /batch request each, in order); one result per item.

        An item is QBO's BatchItemRequest entry without bId: `{"operation": "create", "Invoice": {...}}`,
        `{"operation": "delete", "Invoice": {"Id", "SyncToken"}}`, `{"Query": "SELECT ..."}` (a Query
        works too). Items do not see each other's results within a chunk (QBO's rule). Item faults come
        back as `BatchResult.error`; a failure of a whole request raises.
        """
        prepared = [_batch_item(item) for item in items]
        results: list[BatchResult] = []
        for chunk_no, start in enumerate(range(0, len(prepared), BATCH_SIZE)):
            chunk = prepared[start:start + BATCH_SIZE]
            wire = [{**body, "bId": str(start + offset)} for offset, (_, _, body) in enumerate(chunk)]
            chunk_id = (_fit_request_id(f"{request_id}:{chunk_no}", BATCH_REQUEST_ID_MAX) if request_id
                        else uuid.uuid4().hex)
            answer = await self._request("POST", "batch", json={"BatchItemRequest": wire}, request_id=chunk_id,
                                         write=True, batch=True)
            by_bid = {str(entry.get("bId")): entry for entry in answer.get("BatchItemResponse") or []}
            for offset, (operation, entity, _) in enumerate(chunk):
                index = start + offset
                entry = by_bid.get(str(index))
                results.append(self._batch_result(index, operation, entity, entry))
        return results

    @staticmethod
    def _batch_result(index: int, operation: str, entity: str | None, entry: dict | None) -> BatchResult:
        if entry is None:
            error = QBOError("QBO's batch answer has no entry for this item")
            return BatchResult(index, operation, entity, error=error)
        if "Fault" in entry:
            return BatchResult(index, operation, entity, error=error_from_fault(entry["Fault"], status_code=200,
                                                                                 path="batch"))
        if "QueryResponse" in entry:
            return BatchResult(index, operation, entity, query_response=entry["QueryResponse"])
        record = entry.get(entity) if entity else None
        return BatchResult(index, operation, entity, record=record)

    # --- attachments ---------------------------------------------------------------------------------
    async def upload_attachment(
        self,
        filename: str,
        content: bytes,
        content_type: str,
        link_to: tuple[str, str | int] | None = None,
        note: str | None = None,
        request_id: str | None = None,
    ) -> dict:
        """Upload a file (multipart, as QBO's /upload expects), optionally linked to a record; answers the
        Attachable."""
        metadata: dict[str, Any] = {"FileName": filename, "ContentType": content_type}
        if link_to is not None:
            entity, record_id = link_to
            definition = self._entity(entity, Op.READ)
            metadata["AttachableRef"] = [{"EntityRef": {"type": definition.name, "value": str(record_id)}}]
        if note:
            metadata["Note"] = note
        files = {
            "file_metadata_01": ("attachment.json", json.dumps(metadata).encode("utf-8"), "application/json"),
            "file_content_01": (filename, content, content_type),
        }
        answer = await self._request("POST", "upload", files=files, request_id=request_id, write=True)
        entries = answer.get("AttachableResponse") or []
        if not entries:
            raise QBOError("QBO's upload answer is empty", path="upload", status_code=200)
        entry = entries[0]
        if "Fault" in entry:
            raise error_from_fault(entry["Fault"], status_code=200, method="POST", path="upload")
        return entry["Attachable"]

    async def download_attachment(self, attachable_id: str | int) -> bytes:
        """The file of an Attachable: QBO answers /download/{id} with a short-lived URL, fetched here
        without our Authorization header (it is presigned, and usually another host)."""
        url = (await self._request("GET", f"download/{_segment(attachable_id)}", accept="text/plain",
                                   expect="text")).strip()
        if url.startswith("/"):
            url = self.base_url + url
        return await self._fetch_plain(url)

    async def _fetch_plain(self, url: str) -> bytes:
        async for attempt in stamina.retry_context(on=Transient, **self._retry_kwargs()):
            with attempt:
                started = time.perf_counter()
                try:
                    response = await self._http.get(url)
                except (httpx.TransportError, ConnectionError, TimeoutError) as exc:
                    raise Transient(f"{failure_of(exc)[1]} fetching a download link") from exc
                log.debug("GET %s -> %d attempt=%d %.0f ms", httpx.URL(url).path, response.status_code,
                          attempt.num, (time.perf_counter() - started) * 1000)
                if response.status_code >= 400:
                    raise error_from_response(response)
                return response.content
        raise AssertionError("unreachable")  # pragma: no cover

    # --- the one place requests are made -------------------------------------------------------------
    def _retry_kwargs(self) -> dict[str, Any]:
        policy = self.retry
        return {"attempts": 1 if _SINGLE_TRY.get() else policy.attempts, "timeout": policy.timeout,
                "wait_initial": policy.wait_initial,
                "wait_max": policy.wait_max, "wait_jitter": policy.wait_jitter}

    def _retry_on(self, exc: Exception) -> bool | float:
        """stamina's hook: retry Transient with backoff; RateLimited right away when the pacer holds the
        realm paused (it waits out the pause), else after QBO's Retry-After or 60 s."""
        if isinstance(exc, RateLimited):
            if self._pacer is not None:
                return 0.0
            return exc.retry_after if exc.retry_after is not None else 60.0
        return isinstance(exc, Transient)

    async def _request(
        self,
        method: str,
        rest: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        content: bytes | None = None,
        files: dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        accept: str = "application/json",
        expect: Literal["json", "bytes", "text"] = "json",
        request_id: str | None = None,
        write: bool = False,
        batch: bool = False,
    ) -> Any:
        url = f"{self._api}/{rest}"
        query = dict(params or {})
        if write:
            limit = BATCH_REQUEST_ID_MAX if batch else REQUEST_ID_MAX
            query["requestid"] = _fit_request_id(request_id, limit) if request_id else uuid.uuid4().hex
        query["minorversion"] = str(self.minor_version)
        send_headers = {"Accept": accept, **(headers or {})}
        state = _CallState()
        retry = self._retry_kwargs()
        # The first attempt is made outside stamina: most calls succeed at once, and a retry context per call
        # (a tenacity controller, its thread-local state and futures, in reference cycles) cost more CPU than
        # the call and kept the garbage collector busy. A first failure that may be retried is handed to stamina
        # as its own first attempt, within what is left of the time budget: it counts, logs and waits exactly
        # as if stamina had made it.
        started = time.monotonic()
        try:
            return await self._attempt(method, url, query, send_headers, json, content, files, expect, batch, 1,
                                       state)
        except Exception as error:
            left = retry["timeout"] - (time.monotonic() - started)
            if retry["attempts"] <= 1 or left <= 0 or self._retry_on(error) is False:  # a float is a wait: retried
                raise
            first: Exception | None = error
        retry["timeout"] = left
        async for attempt in stamina.retry_context(on=self._retry_on, **retry):
            with attempt:
                if first is not None:
                    failed, first = first, None
                    raise failed
                return await self._attempt(method, url, query, send_headers, json, content, files, expect,
                                           batch, attempt.num, state)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(
        self, method: str, url: str, query: dict[str, str], headers: dict[str, str], json_body: Any,
        content: bytes | None, files: dict[str, Any] | None, expect: str, batch: bool, attempt: int,
        state: _CallState,
    ) -> Any:
        token = await self._tokens.access_token()
        used = [token]
        response = await self._send(method, url, query, headers, json_body, content, files, token, batch, attempt)
        if response.status_code == 401 and not state.refreshed:
            state.refreshed = True
            fresh = await self._tokens.refresh(token)
            if fresh != token:
                log.debug("%s %s: access token refused; sending again with a refreshed one", method,
                          httpx.URL(url).path)
                token = fresh
                used.append(token)
                response = await self._send(method, url, query, headers, json_body, content, files, token, batch,
                                            attempt)
        if response.status_code >= 400:
            error = error_from_response(response, secrets=used)
            if isinstance(error, RateLimited) and self._pacer is not None:
                self._pacer.throttled(error.retry_after)
            raise error
        if expect == "bytes":
            return response.content
        if expect == "text":
            return response.text
        try:
            body = response.json()
        except ValueError:
            # A 2xx whose body does not parse was cut short (a reset mid-answer): the outcome is unknown,
            # which is what requestid makes safe to retry.
            raise Transient("QBO's answer could not be read (truncated or not JSON)", status_code=response.status_code,
                            method=method, path=response.request.url.path,
                            intuit_tid=response.headers.get("intuit_tid")) from None
        if isinstance(body, dict) and isinstance(body.get("Fault"), dict):
            raise error_from_fault(body["Fault"], status_code=response.status_code, method=method,
                                   path=response.request.url.path, intuit_tid=response.headers.get("intuit_tid"),
                                   secrets=used)
        return body

    async def _send(
        self, method: str, url: str, query: dict[str, str], headers: dict[str, str], json_body: Any,
        content: bytes | None, files: dict[str, Any] | None, token: str, batch: bool, attempt: int,
    ) -> httpx.Response:
        # The URL is parsed once, by httpx, with its query (httpx's own encoding): handing it `params` instead
        # parses it a second time to merge them, a twentieth of the engine's time at Intuit's pace.
        path = urlsplit(url).path
        full = f"{url}?{httpx.QueryParams(query)}" if query else url
        all_headers = {**headers, "Authorization": f"Bearer {token}"}
        slot = self._pacer.slot(batch=batch) if self._pacer is not None else contextlib.nullcontext()
        async with slot:
            started = time.perf_counter()
            try:
                response = await self._http.request(method, full, headers=all_headers, json=json_body,
                                                    content=content, files=files)
            except (httpx.TransportError, ConnectionError, TimeoutError) as exc:
                timed_out, name = failure_of(exc)
                log.debug("%s %s -> %s attempt=%d", method, path, name, attempt)
                what = "QBO did not answer in time" if timed_out else "connection to QBO failed"
                raise Transient(f"{what} ({name})", method=method, path=path) from exc
        if self._pacer is not None:
            # The slot is given back: the request waiting for it is sent before this call's caller goes on with
            # its own work (reading the answer, the ledger's writes). When many answers arrive at once, the
            # company's slots are busy again after one turn of the event loop rather than after all that work.
            await asyncio.sleep(0)
        log.debug("%s %s -> %d intuit_tid=%s attempt=%d %.0f ms", method, path, response.status_code,
                  response.headers.get("intuit_tid"), attempt, (time.perf_counter() - started) * 1000)
        return response


# --- helpers ---------------------------------------------------------------------------------------------
def _segment(value: str | int) -> str:
    """An Id as one URL path segment (Ids are digits; anything else must not change the path)."""
    text = str(value)
    if not text or not re.fullmatch(r"[A-Za-z0-9_-]+", text):
        raise ValueError(f"invalid record id {value!r}")
    return text


def _entity_of(query: str | Query) -> str | None:
    if isinstance(query, Query):
        return query.entity
    match = _FROM.search(query)
    if match is None:
        return None
    name = match.group(1)
    definition = ENTITIES.get(name) or BY_PATH.get(name.lower())
    return definition.key if definition else name


def _records_of(response: dict, entity: str | None) -> list[dict]:
    if entity and isinstance(response.get(entity), list):
        return response[entity]
    for key, value in response.items():
        if isinstance(value, list) and (entity is None or key.lower() == entity.lower()):
            return value
    return []


def _batch_item(item: Mapping[str, Any] | Any) -> tuple[str, str | None, dict]:
    """(operation, entity, wire body) of one batch item, checked against the catalog."""
    if not isinstance(item, Mapping):
        raise TypeError(f"a batch item is a mapping, got {type(item).__name__}")
    if "Query" in item:
        query = item["Query"]
        return "query", _entity_of(query), {"Query": str(query)}
    operation = item.get("operation")
    names = [key for key in item if key in ENTITIES]
    if len(names) != 1:
        raise ValueError(f"a batch item names exactly one entity, got {names or 'none'}")
    ops = {"create": Op.CREATE, "update": Op.UPDATE, "delete": Op.DELETE, "void": Op.VOID}
    if operation not in ops:
        raise ValueError(f"batch operation must be one of {sorted(ops)}, got {operation!r}")
    entity = QBOClient._entity(names[0], ops[operation])
    body = {key: value for key, value in item.items() if key != "bId"}
    return operation, entity.name, body
