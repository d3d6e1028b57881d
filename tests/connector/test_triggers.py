"""Triggers: the table, the samples, and the poll that fires them, against the in-process sandbox.

Records are made, edited and deleted through the sandbox's books (fast, and the same rules as its API);
every poll goes through the real QBOClient. Time moves with `sandbox.clock`; each poll's cursor goes
through JSON, as the engine will store it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest

from qbflow.catalog.entities import ENTITIES, Kind
from qbflow.connector.polling import OVERLAP, PollCursor, PollResult, TriggerEvent, poll_company, poll_shared
from qbflow.connector.triggers import TRIGGERS, Trigger, TriggerKind, UnknownTrigger, trigger, triggers_for
from qbflow.qbo import QBOClient
from qbflow.qbo.errors import Transient
from qbflow.sandbox.app import Sandbox
from tests.support.clients import SALES_LINE, CountingTransport, SandboxTokens, make_client

ENTITY_NAMES = ["Invoice", "Customer", "Account", "Vendor", "Bill", "Estimate", "Payment", "PurchaseOrder",
                "SalesReceipt", "Purchase"]
DELETABLE = ["Invoice", "Bill", "Estimate", "Payment", "PurchaseOrder", "SalesReceipt", "Purchase"]
TITLES = {"Invoice": "Invoice", "Customer": "Customer", "Account": "Account", "Vendor": "Vendor", "Bill": "Bill",
          "Estimate": "Estimate", "Payment": "Payment", "PurchaseOrder": "Purchase Order",
          "SalesReceipt": "Sales Receipt", "Purchase": "Purchase"}
# Ids of Intuit's sample company, the sandbox's new company (sandbox/data/sample_company.json): customers 1-4,
# account 20 "Supplies" and 35 "Checking", vendors 41 "Hicks Hardware" and 50 "Tania's Nursery", item 15 "Soil".
EXPENSE_LINE = [{"Amount": 42.5, "DetailType": "AccountBasedExpenseLineDetail",
                 "AccountBasedExpenseLineDetail": {"AccountRef": {"value": "20"}}}]


def create_body(entity: str, n: int) -> dict:
    return {
        "Invoice": {"CustomerRef": {"value": "1"}, "Line": SALES_LINE},
        "Customer": {"DisplayName": f"Trigger Customer {n}"},
        "Account": {"Name": f"Trigger Account {n}", "AccountType": "Expense"},
        "Vendor": {"DisplayName": f"Trigger Vendor {n}"},
        "Bill": {"VendorRef": {"value": "41"}, "Line": EXPENSE_LINE},
        "Estimate": {"CustomerRef": {"value": "2"}, "Line": SALES_LINE},
        "Payment": {"CustomerRef": {"value": "3"}, "TotalAmt": 25.0},
        "PurchaseOrder": {"VendorRef": {"value": "50"}, "Line": [
            {"Amount": 20.0, "DetailType": "ItemBasedExpenseLineDetail",
             "ItemBasedExpenseLineDetail": {"ItemRef": {"value": "15"}, "Qty": 2, "UnitPrice": 10}}]},
        "SalesReceipt": {"CustomerRef": {"value": "4"}, "Line": SALES_LINE},
        "Purchase": {"PaymentType": "Cash", "AccountRef": {"value": "35"}, "Line": EXPENSE_LINE},
    }[entity]


def edit_body(entity: str, n: int) -> dict:
    if entity in ("Customer", "Vendor"):
        return {"CompanyName": f"Edited {n}"}
    if entity == "Account":
        return {"Description": f"Edited {n}"}
    return {"PrivateNote": f"Edited {n}"}


class Books:
    """Changes to the sandbox company, and time."""

    def __init__(self, sandbox: Sandbox, realm: str) -> None:
        self.sandbox = sandbox
        self.realm = realm
        self.n = 0

    def tick(self, seconds: float = 1) -> None:
        self.sandbox.clock.advance(seconds)

    def now(self) -> datetime:
        return self.sandbox.clock.now()

    def create(self, entity: str) -> dict:
        self.n += 1
        return self.sandbox.books.create(self.realm, entity, create_body(entity, self.n))

    def edit(self, entity: str, record: dict) -> dict:
        self.n += 1
        current = self.sandbox.books.get(self.realm, entity, record["Id"])
        return self.sandbox.books.update(self.realm, entity, {"Id": current["Id"], "SyncToken": current["SyncToken"],
                                                              "sparse": True, **edit_body(entity, self.n)})

    def delete(self, entity: str, record: dict) -> None:
        current = self.sandbox.books.get(self.realm, entity, record["Id"])
        self.sandbox.books.delete(self.realm, entity, {"Id": current["Id"], "SyncToken": current["SyncToken"]})


class Poller:
    """What the engine will do: poll, keep every event, store the cursor as JSON, never deliver twice."""

    def __init__(self, qbo, books: Books, triggers: list[Trigger], since: datetime | None = None) -> None:
        self.qbo = qbo
        self.books = books
        self.triggers = triggers
        self.cursor = PollCursor.start(books.now(), since=since)
        self.delivered: list[TriggerEvent] = []

    async def poll(self, **kwargs) -> PollResult:
        result = await poll_company(self.qbo, self.triggers, self.cursor, self.books.now(), **kwargs)
        self.cursor = PollCursor.from_json(result.cursor.to_json())
        self.delivered += result.events
        keys = [e.dedup_key for e in self.delivered]
        assert len(keys) == len(set(keys)), "an event was delivered twice"
        return result


def fired(result: PollResult) -> list[tuple[str, str, str | None]]:
    return [(e.trigger_key, e.record_id, e.sync_token) for e in result.events]


@pytest.fixture
def transport(sandbox: Sandbox) -> CountingTransport:
    return CountingTransport(sandbox)


@pytest.fixture
def tokens(sandbox: Sandbox, realm: str) -> SandboxTokens:
    # Refreshing tokens: the tests move the sandbox clock by days, past an access token's hour.
    return SandboxTokens(sandbox, realm)


@pytest.fixture
async def qbo(sandbox: Sandbox, realm: str, tokens: SandboxTokens,
              transport: CountingTransport) -> AsyncIterator[QBOClient]:
    async with make_client(sandbox, realm, tokens, transport=transport, pacer=False) as client:
        yield client


@pytest.fixture
def books(sandbox: Sandbox, realm: str) -> Books:
    sandbox.clock.advance(60)  # the seed's records are older than any trigger activated in a test
    return Books(sandbox, realm)


# --- the table -----------------------------------------------------------------------------------------
def test_twenty_new_and_updated_triggers_plus_deleted_for_transactions():
    assert len(TRIGGERS) == 27
    for entity in ENTITY_NAMES:
        kinds = [t.kind for t in triggers_for(entity)]
        expected = [TriggerKind.NEW, TriggerKind.UPDATED] + ([TriggerKind.DELETED] if entity in DELETABLE else [])
        assert kinds == expected, entity
        for t in triggers_for(entity):
            assert t.title == f"{t.kind.value.capitalize()} {TITLES[entity]}"
            assert t.description and t.output
            assert trigger(t.key) is t
    assert trigger("new_purchase_order").title == "New Purchase Order"
    assert trigger("updated_sales_receipt").title == "Updated Sales Receipt"
    assert trigger("updated_purchase").title == "Updated Purchase"
    assert trigger("deleted_bill").entity == "Bill"
    assert not any(t.kind is TriggerKind.DELETED and ENTITIES[t.entity].kind is Kind.NAME_LIST
                   for t in TRIGGERS.values())


def test_unknown_trigger_suggests_the_nearest_key():
    with pytest.raises(UnknownTrigger, match="did you mean 'new_invoice'") as caught:
        trigger("new_invoce")
    assert caught.value.suggestion == "new_invoice"
    assert isinstance(caught.value, KeyError)
    with pytest.raises(UnknownTrigger, match="did you mean 'updated_purchase_order'"):
        trigger("Updated Purchase Ordr")  # a title, misspelt, still finds the key


@pytest.mark.parametrize("key", list(TRIGGERS))
def test_sample_is_a_believable_record(key: str, sandbox: Sandbox, realm: str):
    t = TRIGGERS[key]
    sample = json.loads(json.dumps(t.sample))
    assert sample == t.sample  # plain JSON: no dates, decimals or tuples
    assert t.sample_record() == sample and t.sample_record() is not t.sample
    assert isinstance(sample["Id"], str) and sample["Id"].isdigit()
    assert datetime.fromisoformat(sample["MetaData"]["LastUpdatedTime"]).utcoffset() is not None
    if t.kind is TriggerKind.DELETED:
        assert sample["status"] == "Deleted" and set(sample) == {"domain", "status", "Id", "MetaData"}
        return
    created = datetime.fromisoformat(sample["MetaData"]["CreateTime"])
    updated = datetime.fromisoformat(sample["MetaData"]["LastUpdatedTime"])
    assert isinstance(sample["SyncToken"], str) and sample["SyncToken"].isdigit()
    if t.kind is TriggerKind.NEW:
        assert sample["SyncToken"] == "0" and created == updated
    else:
        assert sample["SyncToken"] != "0" and updated > created
    # Every field the entity must have on create is there, and each field has the JSON type the sandbox
    # (QBO's stand-in) gives it in a real record of the same entity.
    for required in ENTITIES[t.entity].required:
        options = required if isinstance(required, tuple) else (required,)
        assert any(name in sample for name in options), (key, required)
    books = Books(sandbox, realm)
    real = books.create(t.entity)
    real = sandbox.books.get(realm, t.entity, real["Id"])
    for name, value in real.items():
        if name in sample:
            assert type(sample[name]) is type(value) or {type(sample[name]), type(value)} <= {int, float}, \
                (key, name, sample[name], value)


# --- New -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("entity", ENTITY_NAMES)
async def test_new_fires_once_per_created_record_and_never_on_an_edit(entity: str, qbo, books: Books):
    old = books.create(entity)  # created before the trigger was activated
    books.tick(2)
    poller = Poller(qbo, books, [trigger(f"new_{_snake(entity)}")])
    books.tick(2)
    a = books.create(entity)
    books.tick(1)
    b = books.create(entity)
    b = books.edit(entity, b)  # edited again before the poll: still one New, with the record as seen
    books.edit(entity, old)
    books.tick(1)

    first = await poller.poll()
    key = f"new_{_snake(entity)}"
    assert fired(first) == [(key, a["Id"], "0"), (key, b["Id"], "1")]
    assert first.events[1].record["SyncToken"] == "1" and first.events[1].record == b
    assert first.requests == 1 and first.mode == "cdc"

    books.tick(3)
    books.edit(entity, a)  # an edit inside the overlap: the window sees a again, New stays quiet
    assert fired(await poller.poll()) == []
    books.tick(3)
    c = books.create(entity)
    assert fired(await poller.poll()) == [(key, c["Id"], "0")]  # a third overlapping poll
    books.tick(30)
    assert fired(await poller.poll()) == []
    books.edit(entity, c)  # long after c's creation: c is outside the window, its edit is no New
    books.tick(2)
    assert fired(await poller.poll()) == []
    assert [e.record_id for e in poller.delivered] == [a["Id"], b["Id"], c["Id"]]


# --- Updated -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("entity", ENTITY_NAMES)
async def test_updated_fires_once_per_change_and_never_on_creation(entity: str, qbo, books: Books):
    old = books.create(entity)
    books.tick(2)
    key = f"updated_{_snake(entity)}"
    poller = Poller(qbo, books, [trigger(key)])
    books.tick(2)
    a = books.create(entity)
    books.tick(1)
    assert fired(await poller.poll()) == []  # a creation is not an update

    books.tick(2)
    a1 = books.edit(entity, a)
    old1 = books.edit(entity, old)
    books.tick(1)
    second = await poller.poll()
    assert sorted(fired(second)) == sorted([(key, a["Id"], a1["SyncToken"]), (key, old["Id"], old1["SyncToken"])])
    assert {e.dedup_key for e in second.events} == {f"{key}:{entity}:{a['Id']}:{a1['SyncToken']}",
                                                   f"{key}:{entity}:{old['Id']}:{old1['SyncToken']}"}
    books.tick(3)
    assert fired(await poller.poll()) == []  # both changes are inside this window again
    books.tick(3)
    books.edit(entity, a)
    a3 = books.edit(entity, a)  # two edits between polls: one event, the latest version
    fourth = await poller.poll()
    assert fired(fourth) == [(key, a["Id"], a3["SyncToken"])] and fourth.events[0].record == a3
    books.tick(3)
    assert fired(await poller.poll()) == []
    books.tick(30)
    assert fired(await poller.poll()) == []


async def test_created_and_edited_within_one_window_fires_new_once_and_updated_once(qbo, books: Books):
    poller = Poller(qbo, books, [trigger("new_invoice"), trigger("updated_invoice")])
    books.tick(2)
    a = books.create("Invoice")
    books.edit("Invoice", a)
    a2 = books.edit("Invoice", a)
    books.tick(1)
    first = await poller.poll()
    assert fired(first) == [("new_invoice", a["Id"], "2"), ("updated_invoice", a["Id"], "2")]
    for _ in range(3):
        books.tick(4)
        assert fired(await poller.poll()) == []
    assert first.events[0].record == a2 and first.events[0].dedup_key == f"new_invoice:Invoice:{a['Id']}"


async def test_deactivating_a_name_list_record_is_an_update(qbo, books: Books, sandbox: Sandbox, realm: str):
    customer = books.create("Customer")
    books.tick(2)
    poller = Poller(qbo, books, [trigger("updated_customer"), trigger("new_customer")])
    books.tick(2)
    inactive = sandbox.books.update(realm, "Customer", {"Id": customer["Id"], "SyncToken": customer["SyncToken"],
                                                        "sparse": True, "Active": False})
    books.tick(1)
    result = await poller.poll()
    assert fired(result) == [("updated_customer", customer["Id"], "1")]
    assert result.events[0].record["Active"] is False and result.events[0].record == inactive


# --- Deleted -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("entity", DELETABLE)
async def test_deleted_fires_once_per_deleted_record(entity: str, qbo, books: Books):
    old = books.create(entity)
    books.tick(2)
    key = f"deleted_{_snake(entity)}"
    poller = Poller(qbo, books, [trigger(key)])
    books.tick(2)
    a = books.create(entity)
    books.edit(entity, old)
    books.tick(1)
    assert fired(await poller.poll()) == []  # created and edited: no deletion yet

    books.tick(2)
    books.delete(entity, a)
    books.delete(entity, old)
    books.tick(1)
    second = await poller.poll()
    assert sorted(fired(second)) == sorted([(key, a["Id"], None), (key, old["Id"], None)])
    for event in second.events:
        assert event.record["status"] == "Deleted" and event.record["Id"] == event.record_id
        assert event.dedup_key == f"{key}:{entity}:{event.record_id}:deleted"
    books.tick(3)
    assert fired(await poller.poll()) == []
    books.tick(3)
    assert fired(await poller.poll()) == []
    books.tick(30)
    assert fired(await poller.poll()) == []


async def test_name_lists_have_no_deleted_trigger():
    for entity in ("Customer", "Account", "Vendor"):
        with pytest.raises(UnknownTrigger):
            trigger(f"deleted_{entity.lower()}")


# --- one poll for a company ----------------------------------------------------------------------------
async def test_one_cdc_request_serves_every_trigger_of_a_company(qbo, books: Books, transport: CountingTransport):
    olds = {entity: (books.create(entity), books.create(entity)) for entity in ENTITY_NAMES}
    books.tick(2)
    poller = Poller(qbo, books, list(TRIGGERS.values()))
    books.tick(2)
    for entity in ENTITY_NAMES:
        books.create(entity)
        books.edit(entity, olds[entity][0])
        if entity in DELETABLE:
            books.delete(entity, olds[entity][1])
    books.tick(1)
    transport.requests.clear()

    result = await poller.poll()
    assert result.requests == 1 and result.mode == "cdc" and result.warnings == []
    sent = transport.api_requests()
    assert len(sent) == 1 and sent[0].url.path.endswith("/cdc")
    assert set(sent[0].url.params["entities"].split(",")) == set(ENTITY_NAMES)
    assert {e.trigger_key for e in result.events} == set(TRIGGERS)  # each of the 27 fired in this one request
    assert len(result.events) == 27


async def test_no_triggers_no_request(qbo, books: Books, transport: CountingTransport):
    cursor = PollCursor.start(books.now())
    result = await poll_company(qbo, [], cursor, books.now())
    assert result.requests == 0 and result.events == [] and result.cursor == cursor and transport.api_requests() == []


async def test_a_change_made_while_stopped_is_delivered_at_the_next_poll(qbo, books: Books):
    olds = {entity: books.create(entity) for entity in ENTITY_NAMES}
    books.tick(2)
    poller = Poller(qbo, books, list(TRIGGERS.values()))
    books.tick(1)
    assert fired(await poller.poll()) == []
    books.tick(12 * 86400)  # the engine is stopped for twelve days...
    created = {entity: books.create(entity) for entity in ENTITY_NAMES}
    for entity in ENTITY_NAMES:
        books.edit(entity, olds[entity])
    books.delete("Invoice", olds["Invoice"])
    books.tick(15 * 86400)  # ...and comes back fifteen days later
    result = await poller.poll()
    assert result.mode == "cdc" and result.requests == 1
    expected = {(f"new_{_snake(e)}", created[e]["Id"]) for e in ENTITY_NAMES}
    expected |= {(f"updated_{_snake(e)}", olds[e]["Id"]) for e in ENTITY_NAMES if e != "Invoice"}
    expected |= {("deleted_invoice", olds["Invoice"]["Id"])}
    assert {(e.trigger_key, e.record_id) for e in result.events} == expected
    books.tick(5)
    assert fired(await poller.poll()) == []


# --- the query fallback --------------------------------------------------------------------------------
async def test_query_fallback_after_31_days_delivers_paged_exactly_once(qbo, books: Books, tokens: SandboxTokens,
                                                                        transport: CountingTransport):
    olds = {entity: books.create(entity) for entity in ENTITY_NAMES}
    books.tick(2)
    poller = Poller(qbo, books, list(TRIGGERS.values()))
    books.tick(2)
    early = {entity: [books.create(entity) for _ in range(3)] for entity in ENTITY_NAMES}  # just after activation
    books.delete("Bill", early["Bill"][2])  # a deletion more than 30 days ago: past what QBO can still show
    books.tick(31 * 86400)
    late = {entity: books.create(entity) for entity in ENTITY_NAMES}
    for entity in ENTITY_NAMES:
        books.edit(entity, olds[entity])
    books.delete("Invoice", early["Invoice"][0])
    books.tick(1)
    await tokens.refresh(await tokens.access_token())  # the hour-old token expired: renew it before counting
    transport.requests.clear()

    result = await poller.poll(page_size=2)
    assert result.mode == "query"
    queries = [r for r in transport.api_requests() if r.url.path.endswith("/query")]
    assert result.requests == len(transport.api_requests())
    assert len(queries) > len(ENTITY_NAMES)  # paged: several entities have more changes than one page holds
    assert all("MetaData.LastUpdatedTime" in r.url.params["query"] for r in queries)
    assert any("past CDC's 30-day reach" in w for w in result.warnings)
    gone = {("Bill", early["Bill"][2]["Id"]), ("Invoice", early["Invoice"][0]["Id"])}
    expected = set()
    for entity in ENTITY_NAMES:
        key = _snake(entity)
        alive = [r for r in early[entity] if (entity, r["Id"]) not in gone]
        expected |= {(f"new_{key}", r["Id"]) for r in [*alive, late[entity]]}
        expected |= {(f"updated_{key}", olds[entity]["Id"])}
    expected |= {("deleted_invoice", early["Invoice"][0]["Id"])}
    assert {(e.trigger_key, e.record_id) for e in result.events} == expected
    assert len(result.events) == len(expected)

    books.tick(2)
    again = await poller.poll()  # now within CDC's reach again, and overlapping the query window
    assert again.mode == "cdc" and again.requests == 1 and fired(again) == []
    books.tick(3)
    assert fired(await poller.poll()) == []


async def test_query_fallback_when_cdc_would_return_1000_objects(qbo, books: Books, sandbox: Sandbox, realm: str):
    poller = Poller(qbo, books, [trigger("new_customer"), trigger("updated_customer"), trigger("new_invoice")])
    books.tick(2)
    # 1000 customers in one second: more than CDC answers, and a full query page within one timestamp.
    ids = [sandbox.books.create(realm, "Customer", {"DisplayName": f"Bulk {i}"})["Id"] for i in range(1000)]
    invoice = books.create("Invoice")
    books.tick(1)
    result = await poller.poll(page_size=300)
    assert result.mode == "query" and any("1000" in w or "1001" in w for w in result.warnings)
    assert sorted(e.record_id for e in result.events if e.trigger_key == "new_customer") == sorted(ids)
    assert [e.record_id for e in result.events if e.trigger_key == "new_invoice"] == [invoice["Id"]]
    assert len(result.events) == 1001
    books.tick(3)
    assert fired(await poller.poll()) == []  # still over 1000 in the overlap: queries again, nothing twice
    books.tick(30)
    assert fired(await poller.poll()) == []  # the window still reaches back to the bulk second
    books.tick(5)
    last = await poller.poll()
    assert last.mode == "cdc" and fired(last) == []


class EditsWhilePaging:
    """A client that edits the first record of the first query page right after reading it."""

    def __init__(self, qbo: QBOClient, books: Books, entity: str) -> None:
        self.qbo, self.books, self.entity, self.done = qbo, books, entity, False

    async def cdc(self, entities, changed_since):
        return await self.qbo.cdc(entities, changed_since)

    async def query(self, query):
        page = await self.qbo.query(query)
        if not self.done and page:
            self.done = True
            self.books.edit(self.entity, page[0])  # it moves to the end of the LastUpdatedTime order
        return page


async def test_query_pages_survive_an_edit_between_pages(qbo, books: Books):
    poller = Poller(EditsWhilePaging(qbo, books, "Invoice"), books, [trigger("new_invoice")])
    created = []
    for _ in range(5):
        books.tick(1)
        created.append(books.create("Invoice")["Id"])
    books.tick(31 * 86400)
    result = await poller.poll(page_size=2)
    # With STARTPOSITION pages the third invoice would shift into the page already read and be lost.
    assert result.mode == "query" and [e.record_id for e in result.events] == created


# --- cursors -------------------------------------------------------------------------------------------
async def test_a_trigger_starts_from_now_unless_given_since(qbo, books: Books):
    before = books.create("Invoice")
    books.tick(5)
    from_now = Poller(qbo, books, [trigger("new_invoice")])
    since = Poller(qbo, books, [trigger("new_invoice")], since=books.now() - timedelta(seconds=30))
    books.tick(1)
    assert fired(await from_now.poll()) == []
    assert fired(await since.poll()) == [("new_invoice", before["Id"], "0")]


async def test_a_trigger_added_to_a_running_cursor_starts_when_added(qbo, books: Books):
    poller = Poller(qbo, books, [trigger("new_invoice")])
    books.tick(2)
    early_customer = books.create("Customer")
    books.tick(2)
    await poller.poll()
    books.tick(2)
    poller.cursor = poller.cursor.with_trigger("new_customer", books.now())
    poller.triggers = [trigger("new_invoice"), trigger("new_customer")]
    books.tick(1)
    customer = books.create("Customer")
    books.tick(1)
    result = await poller.poll()
    assert fired(result) == [("new_customer", customer["Id"], "0")]
    assert early_customer["Id"] not in {e.record_id for e in poller.delivered}


def test_cursor_round_trips_through_json_and_keeps_only_the_overlap():
    now = datetime.fromisoformat("2024-05-14T16:32:07.250000+00:00")
    cursor = PollCursor(high_water=now, seen=frozenset({"new_invoice:Invoice:7"}), activated_at=now,
                        trigger_starts={"new_bill": now + timedelta(seconds=3)})
    assert PollCursor.from_json(cursor.to_json()) == cursor
    assert json.loads(cursor.to_json())["seen"] == ["new_invoice:Invoice:7"]
    assert cursor.window_start == (now - OVERLAP).replace(microsecond=0)
    assert cursor.activation("new_bill") > cursor.activation("new_invoice") == now
    with pytest.raises(ValueError, match="timezone-aware"):
        PollCursor(high_water=datetime(2024, 5, 14))
    with pytest.raises(ValueError, match="version"):
        PollCursor.from_json('{"version": 99}')


async def test_seen_keys_are_only_those_in_the_next_overlap(qbo, books: Books):
    poller = Poller(qbo, books, [trigger("new_invoice")])
    books.tick(2)
    a = books.create("Invoice")
    books.tick(1)
    await poller.poll()
    assert poller.cursor.seen == {f"new_invoice:Invoice:{a['Id']}"}
    books.tick(30)
    await poller.poll()
    assert poller.cursor.seen == frozenset()


async def test_a_failed_poll_raises_and_the_old_cursor_still_stands(books: Books):
    class Down:
        async def cdc(self, entities, changed_since):
            raise Transient("QBO is down")

        async def query(self, query):
            raise AssertionError("no fallback for a transient failure")

    cursor = PollCursor.start(books.now())
    with pytest.raises(Transient):
        await poll_company(Down(), [trigger("new_invoice")], cursor, books.now())


def _snake(entity: str) -> str:
    return {"PurchaseOrder": "purchase_order", "SalesReceipt": "sales_receipt"}.get(entity, entity.lower())


# --- one read for several cursors; backfills in slices ---------------------------------------------------

async def test_one_read_serves_several_cursors_each_with_its_own_window(qbo, books: Books,
                                                                          transport: CountingTransport):
    early = Poller(qbo, books, [trigger("new_customer"), trigger("new_invoice")])
    books.tick(5)
    first = books.create("Customer")
    books.tick(30)
    late = Poller(qbo, books, [trigger("new_customer"), trigger("updated_customer")])  # activated after `first`
    books.tick(2)
    second = books.create("Customer")
    books.edit("Customer", first)
    invoice = books.create("Invoice")
    books.tick(1)
    transport.requests.clear()
    shared = await poll_shared(qbo, {"early": (early.triggers, early.cursor), "late": (late.triggers, late.cursor)},
                               books.now())
    assert shared.requests == 1 and len(transport.api_requests()) == 1 and shared.mode == "cdc"
    assert sorted(fired(shared.results["early"])) == sorted(
        [("new_customer", first["Id"], "1"), ("new_customer", second["Id"], "0"),  # New: the version seen
         ("new_invoice", invoice["Id"], "0")])
    assert sorted(fired(shared.results["late"])) == sorted(
        [("new_customer", second["Id"], "0"), ("updated_customer", first["Id"], "1")])
    # Each cursor polled alone afterwards fires nothing again.
    early.cursor, late.cursor = shared.results["early"].cursor, shared.results["late"].cursor
    books.tick(2)
    assert fired(await early.poll()) == [] and fired(await late.poll()) == []


async def test_a_backfill_is_read_in_slices_each_record_once(qbo, books: Books, sandbox: Sandbox, realm: str):
    poller = Poller(qbo, books, [trigger("new_customer"), trigger("new_invoice")], since=books.now())
    made: list[str] = []
    for _second in range(60):  # 60 seconds with 5 customers each, then an invoice
        made += [books.create("Customer")["Id"] for _ in range(5)]
        books.tick(1)
    invoice = books.create("Invoice")
    books.tick(31 * 86400)  # past CDC's reach: queries
    slices = []
    while True:
        result = await poller.poll(page_size=20, max_records=40)
        slices.append(result)
        if result.complete:
            break
        assert result.mode == "query" and len(result.events) <= 5 * 22 + 40  # the budget, or 2 x OVERLAP
    assert len(slices) > 3  # read in slices, not at once
    customers = [e.record_id for e in poller.delivered if e.trigger_key == "new_customer"]
    assert sorted(customers, key=int) == sorted(made, key=int)  # every one, once (Poller checks "once")
    assert [e.record_id for e in poller.delivered if e.trigger_key == "new_invoice"] == [invoice["Id"]]
    books.tick(2)
    assert fired(await poller.poll()) == []


async def test_a_slice_moves_on_even_when_one_second_holds_more_than_the_budget(qbo, books: Books,
                                                                                sandbox: Sandbox, realm: str):
    poller = Poller(qbo, books, [trigger("new_customer")], since=books.now())
    bulk = [books.create("Customer")["Id"] for _ in range(50)]  # one second, over the budget of 10
    books.tick(1)
    rest = []
    for _ in range(40):
        rest.append(books.create("Customer")["Id"])
        books.tick(1)
    books.tick(31 * 86400)
    for _ in range(20):
        result = await poller.poll(page_size=10, max_records=10)
        if result.complete:
            break
    assert result.complete
    assert sorted((e.record_id for e in poller.delivered), key=int) == sorted(bulk + rest, key=int)


async def test_a_backfill_tries_cdc_once_then_reads_on_with_queries(qbo, books: Books, transport: CountingTransport):
    poller = Poller(qbo, books, [trigger("new_customer")], since=books.now())
    made = []
    for _second in range(60):  # 1,020 customers in a minute: more than one CDC answer holds
        made += [books.create("Customer")["Id"] for _ in range(17)]
        books.tick(1)
    transport.requests.clear()
    slices = 0
    while True:
        result = await poller.poll(max_records=300)
        slices += 1
        if result.complete:
            break
    cdc = transport.api_requests("cdc")
    assert slices > 2 and len(cdc) == 1  # only the first slice tried CDC (refused: too many); then queries
    assert sorted((e.record_id for e in poller.delivered), key=int) == sorted(made, key=int)
    assert not poller.cursor.backfilling
