"""Real QBO sandbox exchanges, replayed against our sandbox and compared field by field.

The exchanges are VCR cassettes recorded against Intuit's sandbox by minimul/qbo_api (MIT). They are not part
of this repository: they are read at run time from ``../shared/qbo/recordings`` beside the repository root, or
from the folder named by $QBFLOW_QBO_RECORDINGS; without them this module is skipped.

Each test sends the recorded request, adapted: our realm instead of ``-COMPANY_ID-``, ``/v3/company/{realm}/...``
instead of the URIs VCR cleaned up (``/v3/customer?requestid=``), and our Ids instead of the recorded company's,
after making sure our company has what the request needs. The recorded company is Intuit's sample company, which
a new sandbox company is too: `Mirror` uses our own copy of a recorded record the sample company starts with
(same Id, same name), and recreates the others (made later by qbo_api's tests) through the API from what a client
would have sent, so the sandbox computes the rest itself. It then compares our answer with QBO's: the HTTP
status and content type, the same keys at every level, the same JSON kind for every value (digit-string Ids and
SyncTokens, numbers, booleans, datetimes with offsets) and the same values wherever the request determines them.
Values that come from the recorded company's data are not compared. Where the sandbox still answers otherwise,
the test is a strict xfail that names the difference (see "Known differences").
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from qbflow.catalog.fields import FIELDS, known_count

RECORDINGS_ENV = "QBFLOW_QBO_RECORDINGS"
REPO_ROOT = Path(__file__).resolve().parents[2]
RECORDINGS = Path(os.environ.get(RECORDINGS_ENV) or REPO_ROOT.parent / "shared" / "qbo" / "recordings")

if not RECORDINGS.is_dir():
    pytest.skip(f"the recorded QBO exchanges are not at {RECORDINGS} (they are not part of the repository; "
                f"set {RECORDINGS_ENV} to the folder holding minimul/qbo_api's cassettes)", allow_module_level=True)

yaml = pytest.importorskip("yaml", reason="reading the VCR cassettes needs PyYAML (the `test` extra)")

RECORDED_REALM = "-COMPANY_ID-"


# --- known differences ---------------------------------------------------------------------------------------------
def deviates(*reasons: str):
    """The sandbox still answers this recording otherwise; once it is fixed the xpass fails, drop the mark."""
    return pytest.mark.xfail(strict=True, reason="; ".join(reasons))


ADDRESSES = "addresses lack the Id, Lat and Long that QBO puts in every address"
TAX_CODE = "a new taxable Customer gets no DefaultTaxCodeRef (QBO: {\"value\": \"2\"})"
BILL_EMAIL = "an Invoice copies its customer's PrimaryEmailAddr into BillEmail, which QBO's does not"
REF_NAMES = "Customer.ParentRef and Vendor.TermRef carry a name, QBO's only a value"
NO_OP = "a write that changes nothing (deactivating an inactive record) moves SyncToken and LastUpdatedTime"
EMPLOYEE = "an Employee lacks BillableTime (false) and PrintOnCheckName (its name without ' (deleted)')"
VENDOR = "a Vendor lacks Vendor1099 (false) and has a FullyQualifiedName, which QBO's vendors do not"
UNKNOWN_FIELD = "an unknown property is not refused with Fault 2010 (catalog.fields not wired into books.py)"
ELEMENT = "the 6240 Fault's Error has \"element\": \"\" where QBO's has no element key"
NO_TIME = "the 2030 Invalid ID fault has a time, QBO's has none"
DISCOUNT = ("with a discount line, the subtotal line comes last and the discount line gets Id and LineNum; QBO "
            "puts the subtotal line before the discount line and numbers only the item lines")


# --- the cassettes ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Exchange:
    """One recorded request and the answer QBO gave."""

    method: str
    path: str  # below /v3/company/{realm}/, e.g. "customer/5"
    params: dict[str, str]
    headers: dict[str, str]  # the request headers that matter to the server
    body: bytes
    status: int
    content_type: str
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


def cassette(name: str) -> list[Exchange]:
    """The exchanges of ``recordings/<name>.yml``, in recorded order."""
    return list(_load(name))


@functools.cache
def _load(name: str) -> tuple[Exchange, ...]:
    document = yaml.safe_load((RECORDINGS / f"{name}.yml").read_text(encoding="utf-8"))
    exchanges = []
    for interaction in document["http_interactions"]:
        request, response = interaction["request"], interaction["response"]
        uri = urlsplit(request["uri"])
        # VCR cleaned some URIs down to /v3/<entity>...; the real path is always /v3/company/<realm>/<entity>...
        path = uri.path.removeprefix("/v3/")
        if path.startswith("company/"):
            path = path.split("/", 2)[2]
        exchanges.append(Exchange(
            method=request["method"].upper(), path=path,
            params=dict(parse_qsl(uri.query)),  # leaves out VCR's empty `requestid=`
            headers={k: v[0] for k, v in request["headers"].items() if k in ("Accept", "Content-Type")},
            body=(request["body"].get("string") or "").encode("utf-8"),
            status=response["status"]["code"],
            content_type=response["headers"].get("Content-Type", [""])[0],
            text=response["body"].get("string") or "",
        ))
    return tuple(exchanges)


async def replay(http, realm: str, exchange: Exchange, *, path: str | None = None,
                 params: dict[str, str] | None = None, body: bytes | dict | None = None):
    """Sends the recorded request to our sandbox, with our realm and whatever the caller adapted."""
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    return await http.request(
        exchange.method, f"/v3/company/{realm}/{exchange.path if path is None else path}",
        params=exchange.params if params is None else params, headers=exchange.headers,
        content=exchange.body if body is None else body,
    )


# --- the comparison --------------------------------------------------------------------------------------------------
_DATETIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[-+]\d\d:\d\d")
_DATETIME_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[-+]\d\d:\d\d")
_DATE = re.compile(r"\d{4}-\d\d-\d\d")
_ID_KEYS = frozenset({"Id", "SyncToken", "TxnId", "DefinitionId"})
_MISSING = object()


def json_kind(value: Any, key: str = "") -> str:
    """What a JSON value is, as far as a client cares: Ids are digit strings, times carry an offset."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        if key in _ID_KEYS:
            return "digit string" if value.isdigit() else "string"
        if _DATETIME_MS.fullmatch(value):
            return "datetime with ms and offset"
        if _DATETIME.fullmatch(value):
            return "datetime with offset"
        return "date" if _DATE.fullmatch(value) else "string"
    return "array" if isinstance(value, list) else "object" if isinstance(value, dict) else type(value).__name__


def shape_diff(recorded: Any, actual: Any, path: str = "", *, ignore: frozenset[str] = frozenset()) -> list[str]:
    """Where `actual` is built otherwise than `recorded`: keys it lacks or adds at any depth, values of another
    kind, lists of another length (items are compared in order). Values themselves are not compared; keys named
    in `ignore` are skipped at any depth."""
    key = re.sub(r"\[\d+\]$", "", path).rsplit(".", 1)[-1]
    recorded_kind, actual_kind = json_kind(recorded, key), json_kind(actual, key)
    if recorded_kind != actual_kind:
        return [f"{path or '$'}: {recorded_kind} in the recording, {actual_kind} in the sandbox"]
    problems: list[str] = []
    if isinstance(recorded, dict):
        lacks = [k for k in recorded if k not in actual and k not in ignore]
        adds = [k for k in actual if k not in recorded and k not in ignore]
        if lacks:
            problems.append(f"{path or '$'}: the sandbox lacks {', '.join(lacks)}")
        if adds:
            problems.append(f"{path or '$'}: the sandbox adds {', '.join(adds)}")
        for k, value in recorded.items():
            if k in actual and k not in ignore:
                problems += shape_diff(value, actual[k], f"{path}.{k}" if path else k, ignore=ignore)
    elif isinstance(recorded, list):
        if len(recorded) != len(actual):
            problems.append(f"{path}: {len(recorded)} items in the recording, {len(actual)} in the sandbox")
        for index, (r, a) in enumerate(zip(recorded, actual, strict=False)):
            problems += shape_diff(r, a, f"{path}[{index}]", ignore=ignore)
    return problems


def pick(document: Any, path: str) -> Any:
    """The value at a dotted path such as ``Invoice.Line[0].Amount``, or _MISSING."""
    value = document
    for step in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        if step.startswith("["):
            index = int(step[1:-1])
            if not isinstance(value, list) or index >= len(value):
                return _MISSING
            value = value[index]
        elif isinstance(value, dict) and step in value:
            value = value[step]
        else:
            return _MISSING
    return value


def value_diff(recorded: Any, actual: Any, paths: tuple[str, ...], realm: str, *,
               optional: bool = False) -> list[str]:
    """The values at `paths` (the ones the request determines) that differ; the recorded realm reads as ours.

    A path the sandbox lacks is left to shape_diff. With `optional`, a path the recording lacks is skipped
    (fields only some records of a list have); otherwise it is a mistake in the test."""
    problems = []
    for path in paths:
        expected, got = pick(recorded, path), pick(actual, path)
        if expected is _MISSING and optional:
            continue
        assert expected is not _MISSING, f"{path} is not in the recording"
        if isinstance(expected, str):
            expected = expected.replace(RECORDED_REALM, realm)
        if got is not _MISSING and expected != got:
            problems.append(f"{path}: {expected!r} in the recording, {got!r} in the sandbox")
    return problems


def compare(exchange: Exchange, response, realm: str, *, values: tuple[str, ...] = (),
            ignore: frozenset[str] = frozenset(), step: str = "") -> list[str]:
    """Every way our `response` differs from the recorded answer: HTTP status, content type, intuit_tid, the
    JSON's shape (shape_diff) and the `values` the request determines. `step` names the exchange in a flow."""
    problems = []
    if response.status_code != exchange.status:
        problems.append(f"HTTP status: {exchange.status} in the recording, {response.status_code} in the sandbox"
                        + (f" ({response.text})" if response.status_code >= 400 else ""))
    recorded_type = exchange.content_type.split(";")[0].strip()
    actual_type = response.headers.get("content-type", "").split(";")[0].strip()
    if recorded_type != actual_type:
        problems.append(f"Content-Type: {recorded_type} in the recording, {actual_type} in the sandbox")
    if not response.headers.get("intuit_tid"):
        problems.append("the sandbox sends no intuit_tid header")
    if recorded_type == actual_type == "application/json":
        problems += shape_diff(exchange.json(), response.json(), ignore=ignore)
        problems += value_diff(exchange.json(), response.json(), values, realm)
    return [f"{step}: {p}" for p in problems] if step else problems


def assert_same(problems: list[str]) -> None:
    """Fails listing every difference, one a line."""
    assert not problems, "the sandbox differs from the recording:\n  " + "\n  ".join(problems)


def meta_problems(record: dict) -> list[str]:
    """A record this request created: created and last updated at the same second."""
    meta = record.get("MetaData", {})
    if meta.get("CreateTime") != meta.get("LastUpdatedTime"):
        return [f"MetaData: created {meta.get('CreateTime')} but last updated {meta.get('LastUpdatedTime')}"]
    return []


def test_shape_diff_names_every_difference():
    recorded = {"Id": "1", "Amount": 1.5, "When": "2020-09-29T05:58:07-07:00", "Flag": True, "Line": [{"a": 1}],
                "Gone": {}, "time": "2020-09-29T05:58:07.300-07:00"}
    actual = {"Id": 1, "Amount": 2, "When": "2020-09-29", "Flag": "true", "Line": [{"a": 1, "b": 2}, {}],
              "New": None, "time": "2020-09-29T05:58:07-07:00"}
    assert shape_diff(recorded, actual) == [
        "$: the sandbox lacks Gone", "$: the sandbox adds New",
        "Id: digit string in the recording, number in the sandbox",
        "When: datetime with offset in the recording, date in the sandbox",
        "Flag: boolean in the recording, string in the sandbox",
        "Line: 1 items in the recording, 2 in the sandbox", "Line[0]: the sandbox adds b",
        "time: datetime with ms and offset in the recording, datetime with offset in the sandbox",
    ]
    assert shape_diff(recorded, actual, ignore=frozenset({"Gone", "New", "b"}))[0].startswith("Id:")
    assert shape_diff(recorded, json.loads(json.dumps(recorded))) == []
    assert value_diff({"A": {"B": [f"x{RECORDED_REALM}"]}}, {"A": {"B": ["x9"]}}, ("A.B[0]",), "9") == []
    assert value_diff({"A": 1}, {"A": 2}, ("A",), "9") == ["A: 1 in the recording, 2 in the sandbox"]


# --- recreating the recorded company's records in ours ----------------------------------------------------------------
# Keys QBO fills in itself: a mirrored record is created without them, so that the sandbox has to produce them.
SERVER_KEYS = frozenset({
    "Id", "SyncToken", "MetaData", "domain", "sparse", "status", "Active", "FullyQualifiedName", "Balance",
    "BalanceWithJobs", "Job", "Level", "CurrencyRef", "DefaultTaxCodeRef", "CustomField", "TxnTaxDetail",
    "TotalAmt", "LinkedTxn",
})
# Keys QBO fills with a default: sent only when the recording holds another value.
DEFAULTS = {"Taxable": True, "BillWithParent": False, "PreferredDeliveryMethod": "Print", "Vendor1099": False,
            "BillableTime": False, "PrintStatus": "NeedToPrint", "EmailStatus": "NotSet",
            "ApplyTaxAfterDiscount": False}
ADDRESS_KEYS = frozenset({"BillAddr", "ShipAddr", "PrimaryAddr"})
ADDRESS_SERVER_KEYS = frozenset({"Id", "Lat", "Long"})  # QBO numbers and geocodes every address itself
# What depends on the recorded company's settings or history rather than on the request: its "Crew #" custom
# field on sales forms, and DefaultTaxCodeRef, which only customers created after the company took up automated
# sales tax carry (2 of the 41 recorded). Not compared for mirrored records.
COMPANY_SETTINGS = frozenset({"CustomField"})
HISTORY_KEYS = COMPANY_SETTINGS | {"DefaultTaxCodeRef"}
DELETED = " (deleted)"
NAME_KEY = {"Customer": "DisplayName", "Vendor": "DisplayName", "Employee": "DisplayName"}
REF_TARGETS = {"CustomerRef": "Customer", "ItemRef": "Item", "DepositToAccountRef": "Account",
               "DiscountAccountRef": "Account", "PaymentMethodRef": "PaymentMethod"}


class Mirror:
    """Gives our company the records of the recorded company a replay needs.

    A record the sample company starts with (same Id and name) is ours already; another is created from what a
    client would have sent (the recorded record less what QBO computes, with references turned into ours by name),
    so the sandbox's own rules produce the rest. `ids` maps (entity, recorded Id) to our Id."""

    def __init__(self, http, api, sandbox, realm: str) -> None:
        self.http, self.api, self.sandbox, self.realm = http, api, sandbox, realm
        self.ids: dict[tuple[str, str], str] = {}

    def existing(self, entity: str, recorded: dict) -> dict | None:
        """Our record that is this recorded one: the sample company's, with the recorded Id and name (its
        transactions are invented, so never one of those)."""
        key = NAME_KEY.get(entity)
        if key is None:
            return None
        name = recorded[key].removesuffix(DELETED)
        for record in self.sandbox.books.records(self.realm, entity):
            if record["Id"] == recorded["Id"] and record.get(key) in (name, name + DELETED):
                return record
        return None

    async def post(self, entity: str, body: dict) -> dict:
        response = await self.http.post(self.api(entity.lower()), json=body)
        assert response.status_code == 200, (entity, body, response.text)
        return response.json()[entity]

    async def deactivate(self, entity: str, record: dict) -> dict:
        body = {"Id": record["Id"], "SyncToken": record["SyncToken"], "sparse": True, "Active": False}
        if entity in ("Account", "Class"):
            body["Name"] = record["Name"]
        return await self.post(entity, body)

    async def named(self, entity: str, name: str) -> str:
        """Our Id of the `entity` called `name`, created when we have none."""
        key = NAME_KEY.get(entity, "Name")
        for record in self.sandbox.books.records(self.realm, entity):
            if record.get(key) in (name, name + DELETED):
                return record["Id"]
        body: dict[str, Any] = {key: name}
        if entity == "Item":
            body |= {"Type": "Service", "IncomeAccountRef": {"value": await self.named("Account", "Services")}}
        if entity == "Account":
            body["AccountType"] = "Income"
        return (await self.post(entity, body))["Id"]

    async def ref(self, key: str, ref: dict, entity: str) -> dict:
        if key == "ParentRef":
            return {"value": self.ids[(entity, ref["value"])]}
        if key in REF_TARGETS:
            return {"value": await self.named(REF_TARGETS[key], ref["name"])}
        return dict(ref)  # TermRef, TaxCodeRef: the sample company has the recorded Ids

    async def body(self, entity: str, recorded: dict) -> dict:
        name_key = NAME_KEY.get(entity)
        name = recorded[name_key].removesuffix(DELETED) if name_key else None
        body: dict[str, Any] = {}
        for key, value in recorded.items():
            if key in SERVER_KEYS or DEFAULTS.get(key, _MISSING) == value:
                continue
            if key == "PrintOnCheckName" and value == name:
                continue
            if key == name_key:
                value = name
            elif key in ADDRESS_KEYS:
                value = {k: v for k, v in value.items() if k not in ADDRESS_SERVER_KEYS}
            elif key == "Line":
                value = [await self.line(line, entity) for line in value
                         if line["DetailType"] != "SubTotalLineDetail"]
            elif key.endswith("Ref") and isinstance(value, dict):
                value = await self.ref(key, value, entity)
            body[key] = value
        return body

    async def line(self, line: dict, entity: str) -> dict:
        line = {k: v for k, v in line.items() if k not in ("Id", "LineNum")}
        detail_type = line["DetailType"]
        if isinstance(line.get(detail_type), dict):
            detail = dict(line[detail_type])
            for key, value in detail.items():
                if key.endswith("Ref") and isinstance(value, dict):
                    detail[key] = await self.ref(key, value, entity)
            line[detail_type] = detail
        return line

    async def record(self, entity: str, recorded: dict) -> dict:
        """Our record for `recorded` (the sample company's or a new copy), made inactive if it is."""
        record = self.existing(entity, recorded) or await self.post(entity, await self.body(entity, recorded))
        if recorded.get("Active") is False and record.get("Active") is not False:
            record = await self.deactivate(entity, record)
        self.ids[(entity, recorded["Id"])] = record["Id"]
        return record

    async def records(self, entity: str, recorded: list[dict]) -> None:
        """Our copies of `recorded`, parents before their sub-records."""
        for one in sorted(recorded, key=lambda r: r.get("Level", 0)):
            await self.record(entity, one)


@pytest.fixture
def mirror(http, api, sandbox, realm) -> Mirror:
    return Mirror(http, api, sandbox, realm)


def list_problems(recorded: list[dict], result: list[dict], mirror: Mirror, entity: str, *, ordered: bool = True,
                  values: tuple[str, ...] = (), ignore: frozenset[str] = frozenset()) -> list[str]:
    """Each record of `result` that mirrors one of `recorded` compared with it (shape and `values`), and their
    order compared with the recorded order when QBO's order is known."""
    recorded_by_ours = {mirror.ids[(entity, r["Id"])]: r for r in recorded}
    returned = [r for r in result if r["Id"] in recorded_by_ours]
    if sorted(r["Id"] for r in returned) != sorted(recorded_by_ours):
        return [f"{entity}: {len(recorded_by_ours) - len(returned)} records mirrored but not returned"]
    problems = []
    if ordered and [r["Id"] for r in returned] != [mirror.ids[(entity, r["Id"])] for r in recorded]:
        problems.append(f"{entity}: the sandbox returns the records in another order")
    for record in returned:
        original = recorded_by_ours[record["Id"]]
        label = f"[{original.get(NAME_KEY.get(entity, 'DocNumber'))}] "
        mine, theirs = {entity: record}, {entity: original}
        problems += [label + p for p in shape_diff(theirs, mine, ignore=HISTORY_KEYS | ignore)]
        problems += [label + p for p in value_diff(theirs, mine, values, mirror.realm, optional=True)]
    return distinct(problems)


def distinct(problems: list[str]) -> list[str]:
    """One line per difference seen in several records, led by the first record it was seen in."""
    seen: dict[str, str] = {}
    for problem in problems:
        seen.setdefault(re.sub(r"^\[[^\]]*\] ", "", problem), problem)
    return list(seen.values())


async def count_of(http, api, text: str) -> int:
    response = await http.get(api("query"), params={"query": text})
    return response.json()["QueryResponse"]["totalCount"]


# --- the recordings against the catalog ------------------------------------------------------------------------------
def _entities_in(document: Any):
    if isinstance(document, dict):
        for key, value in document.items():
            if key in FIELDS and isinstance(value, dict):
                yield key, value
            elif key in FIELDS and isinstance(value, list):
                yield from ((key, v) for v in value if isinstance(v, dict))
            else:
                yield from _entities_in(value)
    elif isinstance(document, list):
        for value in document:
            yield from _entities_in(value)


def test_recorded_entities_use_only_names_the_catalog_knows():
    """catalog.fields, transcribed from the XSD, knows every top-level name real QBO sent."""
    seen = 0
    for path in sorted(RECORDINGS.glob("*/*.yml")):
        if path.parent.name == "reports":
            continue
        for exchange in cassette(f"{path.parent.name}/{path.stem}"):
            if exchange.content_type.startswith("application/json"):
                for entity, record in _entities_in(exchange.json()):
                    assert set(record) <= FIELDS[entity], (path.stem, entity, set(record) - FIELDS[entity])
                    seen += 1
    assert seen > 100


def test_recorded_unknown_property_fault_lists_names_the_catalog_knows():
    [exchange] = cassette("error/400_json")
    detail = exchange.json()["Fault"]["Error"][0]["Detail"]
    listed = re.findall(r'"(\w+)"', detail.split("known properties:")[1])
    assert len(listed) > 50 and set(listed) <= FIELDS["Invoice"]
    # The 2020 server knew 83 Invoice properties; today's XSD names more.
    assert int(re.search(r"\((\d+) known properties", detail)[1]) <= known_count("Invoice")


# --- create, read, update, delete ------------------------------------------------------------------------------------
CUSTOMER_DEFAULTS = tuple(f"Customer.{k}" for k in (
    "Taxable", "Job", "BillWithParent", "Balance", "BalanceWithJobs", "CurrencyRef", "PreferredDeliveryMethod",
    "domain", "sparse", "Active"))
CUSTOMER_NAMES = ("Customer.DisplayName", "Customer.FullyQualifiedName", "Customer.PrintOnCheckName")
SALES_LINE = {"Amount": 100.0, "DetailType": "SalesItemLineDetail",
              "SalesItemLineDetail": {"ItemRef": {"value": "1", "name": "Services"}}}


async def create_invoice(http, api) -> str:
    """The invoice create/invoice.yml makes (item 1 is "Services" in both companies), made in ours; its Id."""
    response = await http.post(api("invoice"), json={"Line": [SALES_LINE], "CustomerRef": {"value": "1"}})
    assert response.status_code == 200, response.text
    return response.json()["Invoice"]["Id"]


async def test_create_customer(http, realm):
    [exchange] = cassette("create/customer")  # {"DisplayName":"Doe5, Jane"}
    response = await replay(http, realm, exchange)
    problems = compare(exchange, response, realm, values=CUSTOMER_DEFAULTS + CUSTOMER_NAMES + ("Customer.SyncToken",))
    assert_same(problems + meta_problems(response.json()["Customer"]))


async def test_create_invoice(http, realm, sandbox):
    [exchange] = cassette("create/invoice")
    assert sandbox.books.get(realm, "Item", "1")["Name"] == "Services"
    # Customer 1 of both companies has a billing and a shipping address and a PrimaryEmailAddr
    # (the recorded one in get/display_name.yml).
    assert {"BillAddr", "ShipAddr", "PrimaryEmailAddr"} <= set(sandbox.books.get(realm, "Customer", "1"))
    response = await replay(http, realm, exchange)
    invoice = response.json()["Invoice"]
    problems = compare(exchange, response, realm, ignore=COMPANY_SETTINGS, values=tuple(f"Invoice.{k}" for k in (
        "AllowIPNPayment", "AllowOnlinePayment", "AllowOnlineCreditCardPayment", "AllowOnlineACHPayment", "domain",
        "sparse", "SyncToken", "CurrencyRef", "LinkedTxn", "Line", "TxnTaxDetail", "CustomerRef.value", "TotalAmt",
        "ApplyTaxAfterDiscount", "PrintStatus", "EmailStatus", "Balance")))
    for name, record in (("recording", exchange.json()["Invoice"]), ("sandbox", invoice)):
        if record["TxnDate"] != record["MetaData"]["CreateTime"][:10]:  # and DueDate 30 days on, in both
            problems.append(f"TxnDate: not the day of creation in the {name}")
    assert_same(problems + meta_problems(invoice))


async def test_get_customer_by_id(http, realm, mirror):
    [exchange] = cassette("get/id")  # GET customer/5
    ours = await mirror.record("Customer", exchange.json()["Customer"])
    response = await replay(http, realm, exchange, path=f"customer/{ours['Id']}")
    assert_same(compare(exchange, response, realm, ignore=HISTORY_KEYS, values=CUSTOMER_DEFAULTS + CUSTOMER_NAMES + (
        "Customer.GivenName", "Customer.FamilyName", "Customer.CompanyName", "Customer.PrimaryPhone",
        "Customer.PrimaryEmailAddr", "Customer.BillAddr.Line1", "Customer.ShipAddr.City")))


async def test_query_customer_by_display_name(http, realm, mirror):
    [exchange] = cassette("get/display_name")  # WHERE DisplayName = 'Amy\'s Bird Sanctuary'
    [recorded] = exchange.json()["QueryResponse"]["Customer"]
    await mirror.record("Customer", recorded)
    response = await replay(http, realm, exchange)
    assert_same(compare(exchange, response, realm, ignore=HISTORY_KEYS, values=(
        "QueryResponse.startPosition", "QueryResponse.maxResults", "QueryResponse.Customer[0].DisplayName",
        "QueryResponse.Customer[0].PrimaryEmailAddr")))


async def test_full_update_customer(http, realm, mirror):
    read, update = cassette("update/customer")  # GET customer/68, then a full update to "Jack Moe"
    ours = await mirror.record("Customer", read.json()["Customer"])
    problems = compare(read, await replay(http, realm, read, path=f"customer/{ours['Id']}"), realm, step="GET",
                       values=CUSTOMER_DEFAULTS + CUSTOMER_NAMES + ("Customer.SyncToken",))
    mirror.sandbox.clock.advance(2)
    body = json.loads(update.body) | {"Id": ours["Id"], "SyncToken": ours["SyncToken"]}
    response = await replay(http, realm, update, body=body)
    problems += compare(update, response, realm, step="full update", values=CUSTOMER_DEFAULTS + CUSTOMER_NAMES + (
        "Customer.SyncToken", "Customer.PrimaryPhone"))
    meta = response.json()["Customer"]["MetaData"]
    if meta["CreateTime"] != ours["MetaData"]["CreateTime"] or meta["LastUpdatedTime"] <= meta["CreateTime"]:
        problems.append(f"full update: MetaData {meta} for a record created {ours['MetaData']['CreateTime']}")
    assert_same(problems)


async def test_delete_invoice(http, realm, api):
    read, delete = cassette("delete/invoice")  # GET invoice/266, then POST invoice?operation=delete
    invoice_id = await create_invoice(http, api)
    problems = compare(read, await replay(http, realm, read, path=f"invoice/{invoice_id}"), realm, step="GET",
                       ignore=COMPANY_SETTINGS, values=("Invoice.SyncToken", "Invoice.Line", "Invoice.TotalAmt"))
    response = await replay(http, realm, delete, body={"Id": invoice_id, "SyncToken": "0"})
    problems += compare(delete, response, realm, step="delete", values=("Invoice.domain", "Invoice.status"))
    assert response.json()["Invoice"]["Id"] == invoice_id
    gone = await http.get(api(f"invoice/{invoice_id}"))
    assert gone.status_code == 400 and gone.json()["Fault"]["Error"][0]["code"] == "610"
    assert_same(problems)


async def _deactivate_again(http, realm, mirror, name: str, entity: str, made: dict) -> list[str]:
    """Both deactivation recordings deactivate a record that is inactive already: deactivate ours once, then
    replay the GET and the recorded sparse update."""
    read, deactivate = cassette(name)
    ours = await mirror.deactivate(entity, made)
    assert ours["SyncToken"] == read.json()[entity]["SyncToken"] == "1"
    values = tuple(f"{entity}.{k}" for k in read.json()[entity] if k not in ("Id", "MetaData"))
    problems = compare(read, await replay(http, realm, read, path=f"{entity.lower()}/{ours['Id']}"), realm,
                       step="GET", values=values)
    mirror.sandbox.clock.advance(2)
    response = await replay(http, realm, deactivate, body=json.loads(deactivate.body) | {"Id": ours["Id"]})
    problems += compare(deactivate, response, realm, step="deactivate again", values=values)
    # QBO changes nothing then: the same SyncToken and the same LastUpdatedTime.
    assert deactivate.json()[entity]["MetaData"] == read.json()[entity]["MetaData"]
    if response.status_code == 200 and response.json()[entity]["MetaData"] != ours["MetaData"]:
        problems.append(f"deactivate again: {entity}.MetaData.LastUpdatedTime moves on a write that changes nothing")
    return problems


async def test_deactivate_account(http, realm, mirror):
    made = await mirror.post("Account", {"Name": "Fees Billed", "AccountType": "Income",
                                         "AccountSubType": "ServiceFeeIncome"})
    assert_same(await _deactivate_again(http, realm, mirror, "deactivate/account", "Account", made))


async def test_deactivate_employee(http, realm, mirror):
    read, _ = cassette("deactivate/employee")
    made = mirror.existing("Employee", read.json()["Employee"])  # the sample company's Emily Platt, still active
    assert made is not None and made["Active"] is True
    assert_same(await _deactivate_again(http, realm, mirror, "deactivate/employee", "Employee", made))


async def test_invoice_pdf(http, realm, api):
    [exchange] = cassette("get_pdf/invoice")  # GET invoice/130/pdf, Accept: application/pdf
    response = await replay(http, realm, exchange, path=f"invoice/{await create_invoice(http, api)}/pdf")
    assert response.status_code == exchange.status
    assert response.headers["content-type"].split(";")[0] == exchange.content_type
    assert exchange.text.startswith("%PDF-") and response.content.startswith(b"%PDF-")


# --- attachments -----------------------------------------------------------------------------------------------------
RECORDED_METADATA = ('{"AttachableRef":[{"EntityRef":{"type":"Invoice","value":"75"}}],'
                     '"FileName":"no_detail.xml","ContentType":"text/xml"}')
ATTACHABLE_VALUES = ("FileName", "Size", "ContentType", "domain", "sparse", "SyncToken",
                     "AttachableRef[0].EntityRef.type", "AttachableRef[0].IncludeOnSend")


async def upload(http, realm, api) -> tuple[Exchange, Any, str]:
    """The recorded multipart upload, byte for byte, but linked to an invoice of ours instead of invoice 75."""
    [exchange] = cassette("attachment/create_for_invoice")
    invoice_id = await create_invoice(http, api)
    metadata = RECORDED_METADATA.replace('"75"', f'"{invoice_id}"')
    body = exchange.body.decode()
    length = f"Content-Length: {len(RECORDED_METADATA)}\r\n"
    assert RECORDED_METADATA in body and length in body
    body = body.replace(length, f"Content-Length: {len(metadata)}\r\n", 1).replace(RECORDED_METADATA, metadata)
    return exchange, await replay(http, realm, exchange, body=body.encode()), invoice_id


def attachable_problems(attachable: dict, realm: str, invoice_id: str) -> list[str]:
    problems = []
    if attachable.get("FileAccessUri") != f"/v3/company/{realm}/download/{attachable.get('Id')}":
        problems.append(f"FileAccessUri: {attachable.get('FileAccessUri')}")
    if "X-Amz-Expires=900" not in attachable.get("TempDownloadUri", ""):
        problems.append("TempDownloadUri: not valid for 900 s")
    if len(attachable.get("Id", "")) != 19:
        problems.append(f"Id: {attachable.get('Id')} has not 19 digits as QBO's attachment Ids")
    if attachable.get("AttachableRef", [{}])[0].get("EntityRef", {}).get("value") != invoice_id:
        problems.append("AttachableRef: not linked to our invoice")
    return problems


async def test_upload_attachment_for_invoice(http, realm, api):
    exchange, response, invoice_id = await upload(http, realm, api)
    problems = compare(exchange, response, realm,
                       values=tuple(f"AttachableResponse[0].Attachable.{k}" for k in ATTACHABLE_VALUES))
    attachable = response.json()["AttachableResponse"][0]["Attachable"]
    assert_same(problems + attachable_problems(attachable, realm, invoice_id) + meta_problems(attachable))


async def test_read_attachment(http, realm, api):
    _, uploaded, invoice_id = await upload(http, realm, api)
    attachable_id = uploaded.json()["AttachableResponse"][0]["Attachable"]["Id"]
    [exchange] = cassette("attachment/read_attachment")  # GET attachable/5000000000000503624
    response = await replay(http, realm, exchange, path=f"attachable/{attachable_id}")
    problems = compare(exchange, response, realm, values=tuple(f"Attachable.{k}" for k in ATTACHABLE_VALUES))
    assert_same(problems + attachable_problems(response.json().get("Attachable", {}), realm, invoice_id))


async def test_delete_attachment(http, realm, api):
    _, uploaded, _ = await upload(http, realm, api)
    attachable_id = uploaded.json()["AttachableResponse"][0]["Attachable"]["Id"]
    [exchange] = cassette("attachment/delete_attachment")
    assert json.loads(exchange.body) == {"Id": "5000000000000503624"}  # QBO needs no SyncToken here
    response = await replay(http, realm, exchange, body={"Id": attachable_id})
    problems = compare(exchange, response, realm, values=("Attachable.domain", "Attachable.status"))
    if response.status_code == 200 and response.json()["Attachable"]["Id"] != attachable_id:
        problems.append("Attachable.Id: not the deleted attachment's")
    assert_same(problems)


# --- faults ----------------------------------------------------------------------------------------------------------
FAULT_VALUES = ("Fault.type", "Fault.Error[0].Message", "Fault.Error[0].code")


def detail_problems(exchange: Exchange, response, realm: str) -> list[str]:
    """The Fault's Detail, where the request determines all of it (the host QBO names is left out)."""

    def text(document: dict) -> str:
        detail = document.get("Fault", {}).get("Error", [{}])[0].get("Detail", "")
        return re.sub(r"full path: \S+?/v3/", "full path: <host>/v3/", detail.replace(RECORDED_REALM, realm))

    recorded, actual = text(exchange.json()), text(response.json())
    return [] if recorded == actual else [f"Fault.Error[0].Detail: {recorded!r} recorded, {actual!r} in the sandbox"]


async def test_query_of_unknown_entity(http, realm):
    exchange = cassette("error/400")[1]  # SELECT * FROM Custmoer
    response = await replay(http, realm, exchange)
    assert_same(compare(exchange, response, realm, values=FAULT_VALUES) + detail_problems(exchange, response, realm))


UNRECOGNIZED = (r'Property Name:Unrecognized field "BadJson" \(class com\.intuit\.schema\.finance\.v3\.Invoice\), '
                r'not marked as ignorable \(\d+ known properties: (?:"\w+", )*"\w+" \[truncated\]\]\)\n'
                r" specified is unsupported or invalid")


async def test_unknown_property(http, realm):
    [exchange] = cassette("error/400_json")  # {"BadJson":true} posted as an Invoice
    assert re.fullmatch(UNRECOGNIZED, exchange.json()["Fault"]["Error"][0]["Detail"])
    response = await replay(http, realm, exchange)
    problems = compare(exchange, response, realm, values=FAULT_VALUES)
    detail = response.json()["Fault"]["Error"][0].get("Detail", "")
    if not re.fullmatch(UNRECOGNIZED, detail):
        problems.append(f"Fault.Error[0].Detail: {detail!r} is not QBO's unrecognized-field text")
    assert_same(problems)


async def test_no_resource_at_path(http, realm):
    exchange = cassette("error/500")[0]  # GET customer/1/5
    response = await replay(http, realm, exchange)
    assert_same(compare(exchange, response, realm, values=FAULT_VALUES) + detail_problems(exchange, response, realm))


async def test_id_that_is_not_a_number(http, realm):
    exchange = cassette("error/500")[1]  # GET customer/1.5
    response = await replay(http, realm, exchange)
    problems = compare(exchange, response, realm, values=FAULT_VALUES + ("Fault.Error[0].element",))
    assert_same(problems + detail_problems(exchange, response, realm))


async def test_duplicate_display_name(http, realm, mirror):
    [exchange] = cassette("error/validation")  # a second customer called "Weiskopf Consulting"
    assert await mirror.named("Customer", json.loads(exchange.body)["DisplayName"]) == "29"  # the sample's
    response = await replay(http, realm, exchange)
    problems = compare(exchange, response, realm, values=FAULT_VALUES)
    # 2020 QBO said ": null" where the record holding the name now gets named (faults.duplicate_name): both pass.
    detail = response.json()["Fault"]["Error"][0].get("Detail", "")
    if not re.fullmatch(r"The name supplied already exists\. : (null|Id=\d+)", detail):
        problems.append(f"Fault.Error[0].Detail: {detail!r}")
    assert_same(problems)


# --- queries ---------------------------------------------------------------------------------------------------------
NAME_VALUES = ("DisplayName", "FullyQualifiedName", "PrintOnCheckName", "Active", "GivenName", "FamilyName",
               "CompanyName", "PrimaryPhone", "PrimaryEmailAddr", "Taxable", "Job", "BillWithParent")


async def test_count_and_pages_of_customers_by_id(http, realm, mirror):
    exchanges = cassette("all/alt_select")  # COUNT(*) WHERE Id IN ('5', ..., '10'), then pages of 2 to the end
    recorded = [c for page in exchanges[1:] for c in page.json()["QueryResponse"].get("Customer", [])]
    await mirror.records("Customer", recorded)

    def ours(text: str) -> str:
        return re.sub(r"'(\d+)'", lambda m: f"'{mirror.ids[('Customer', m[1])]}'", text)

    problems = []
    for number, exchange in enumerate(exchanges):
        response = await replay(http, realm, exchange, params={"query": ours(exchange.params["query"])})
        page = exchange.json()["QueryResponse"].get("Customer")
        if page is None:  # the count, and the empty page past the end
            problems += compare(exchange, response, realm, values=("QueryResponse",), step=f"query {number}")
            continue
        problems += compare(exchange, response, realm, ignore=frozenset({"Customer"}), step=f"query {number}",
                            values=("QueryResponse.startPosition", "QueryResponse.maxResults"))
        problems += list_problems(page, response.json()["QueryResponse"].get("Customer", []), mirror, "Customer",
                                  values=tuple(f"Customer.{k}" for k in NAME_VALUES + ("Level",)))
    assert_same(distinct(problems))


async def list_everything(http, realm, api, mirror, exchanges: list[Exchange], entity: str, *,
                          ordered: bool = True, values: tuple[str, ...] = (),
                          ignore: frozenset[str] = frozenset()) -> list[str]:
    """Replays a listing of every `entity` (after its COUNT, when recorded) once our company has the listed records
    (the sample company's own, and copies of those made later). Our others are listed too: the count must be the
    recorded plus our others, the mirrored records must come in the recorded order (when `ordered`) and each must
    be built as the record it mirrors."""
    listing = exchanges[-1]
    recorded = listing.json()["QueryResponse"][entity]
    where = " WHERE Active IN (true, false)" if "Active" in listing.params["query"] else ""
    await mirror.records(entity, recorded)
    mirrored = {mirror.ids[(entity, r["Id"])] for r in recorded}
    before = len([r for r in mirror.sandbox.books.records(realm, entity)
                  if r["Id"] not in mirrored and (where or r.get("Active", True))])
    problems = []
    for exchange in exchanges[:-1]:  # SELECT COUNT(*)
        response = await replay(http, realm, exchange)
        problems += compare(exchange, response, realm, step="count")
        total = exchange.json()["QueryResponse"]["totalCount"]
        if response.json().get("QueryResponse", {}).get("totalCount") != total + before:
            problems.append(f"count: {response.json()} where {total} recorded + {before} of ours were expected")
    response = await replay(http, realm, listing)
    problems += compare(listing, response, realm, step="list", ignore=frozenset({entity}))
    answer = response.json()["QueryResponse"]
    if answer.get("startPosition") != 1 or answer.get("maxResults") != len(answer.get(entity, [])):
        problems.append(f"list: startPosition {answer.get('startPosition')}, maxResults {answer.get('maxResults')} "
                        f"for {len(answer.get(entity, []))} records")
    return problems + list_problems(recorded, answer.get(entity, []), mirror, entity, ordered=ordered,
                                    values=values, ignore=ignore)


@pytest.mark.parametrize("name", ["all/customers", "error/400"])
async def test_all_customers(http, realm, api, mirror, name):
    """all/customers counts then lists every customer; error/400 lists them before its failing query."""
    exchanges = cassette(name)
    if name == "error/400":
        del exchanges[1:]
    values = tuple(f"Customer.{k}" for k in NAME_VALUES + ("Level",))
    assert_same(await list_everything(http, realm, api, mirror, exchanges, "Customer", values=values))


async def test_all_employees_active_or_not(http, realm, api, mirror):
    values = tuple(f"Employee.{k}" for k in NAME_VALUES + ("BirthDate", "HiredDate"))
    assert_same(await list_everything(http, realm, api, mirror, cassette("all/employees_including_active"),
                                      "Employee", values=values))


async def test_vendors_active_or_not(http, realm, api, mirror):
    values = tuple(f"Vendor.{k}" for k in NAME_VALUES + ("AcctNum", "Vendor1099", "TaxIdentifier", "TermRef.value"))
    assert_same(await list_everything(http, realm, api, mirror, cassette("get/inactive_vendors"), "Vendor",
                                      values=values))


async def test_query_with_an_ampersand(http, realm, mirror):
    [exchange] = cassette("misc/ampersand")  # WHERE DisplayName = 'Robertson & Associates', sent as %26
    [recorded] = exchange.json()["QueryResponse"]["Vendor"]
    await mirror.record("Vendor", recorded)
    response = await replay(http, realm, exchange)
    assert_same(compare(exchange, response, realm, ignore=HISTORY_KEYS, values=(
        "QueryResponse.startPosition", "QueryResponse.maxResults", "QueryResponse.Vendor[0].DisplayName",
        "QueryResponse.Vendor[0].CompanyName", "QueryResponse.Vendor[0].AcctNum")))


async def test_all_sales_receipts(http, realm, api, mirror):
    values = tuple(f"SalesReceipt.{k}" for k in (
        "DocNumber", "TxnDate", "PrivateNote", "CustomerMemo", "TotalAmt", "Balance", "PrintStatus", "EmailStatus",
        "PaymentRefNum", "BillEmail", "ApplyTaxAfterDiscount", "TxnTaxDetail", "CurrencyRef", "Line[0].Amount",
        "Line[0].Description", "Line[0].SalesItemLineDetail.Qty", "Line[0].SalesItemLineDetail.UnitPrice",
        "Line[0].SalesItemLineDetail.ItemRef.name", "Line[0].SalesItemLineDetail.TaxCodeRef", "Line[1].Amount"))
    # QBO lists transactions in an order nobody could explain (sandbox/query.py), so order is not compared; two
    # recorded receipts were deposited (LinkedTxn to Deposit 62), and deposits are not mirrored.
    assert_same(await list_everything(http, realm, api, mirror, cassette("all/sales_receipts"), "SalesReceipt",
                                      ordered=False, values=values, ignore=frozenset({"LinkedTxn"})))
