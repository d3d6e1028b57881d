"""RecurringTransaction: a transaction kept as a schedule, not posted to the books.

On the wire a recurring transaction is its transaction wrapped in the type's name (Intuit's
RecurringTransaction reference and python-quickbooks' RecurringTransaction object):

    POST /recurringtransaction            {"Invoice": {..., "RecurringInfo": {...}}}
    answer                                {"RecurringTransaction": {"Invoice": {..., "Id", "RecurDataRef"}}}
    GET  /recurringtransaction/{id}       the same answer
    POST /recurringtransaction?operation=delete   {"Invoice": {"Id", "SyncToken"}}
    answer                                {"RecurringTransaction": {"status": "Deleted", "domain": "QBO",
                                                                    "Invoice": {"Id": ...}}}
    SELECT * FROM RecurringTransaction WHERE Type = 'Bill'   -> QueryResponse.RecurringTransaction: [{"Bill": ...}]

The template goes through its type's rules (lines, totals, references) but changes no balance and gets no
DocNumber; its Id comes from the transactions' sequence (the reference's template Ids, e.g. 1483, sit among
transaction Ids) and RecurDataRef from a sequence of its own.

Stored, a template is `{"Id", "SyncToken", "MetaData", "Type", <Type>: <transaction>}`; `view()` gives the
wire shape.
"""

from __future__ import annotations

import copy
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from qbflow.catalog.entities import ENTITIES, RECURRING_TYPES
from qbflow.catalog.fields import unknown_field_fault_detail, unknown_fields
from qbflow.sandbox import faults
from qbflow.sandbox.clock import qbo_datetime
from qbflow.sandbox.faults import Fault

if TYPE_CHECKING:
    from qbflow.sandbox.books import Books, Company

ENTITY = "RecurringTransaction"
# RecurringInfo.RecurType: the XSD names Automated, Reminded, UnScheduled and Manual; the reference's prose
# says "Reminder" and "Unscheduled". Both spellings are taken.
RECUR_TYPES = {"automated": "Automated", "reminded": "Reminded", "reminder": "Reminded",
               "unscheduled": "UnScheduled", "manual": "Manual"}
INTERVALS = ("Daily", "Weekly", "Monthly", "Yearly")
_INTERNAL = ("Id", "SyncToken", "MetaData", "Type")


def view(stored: dict) -> dict:
    """The wire shape of a stored template (or of a deleted one's stub)."""
    if stored.get("status") == "Deleted":
        return {k: v for k, v in stored.items() if k != "Type"}
    kind = stored["Type"]
    return {kind: stored[kind]}


def flat(stored: dict) -> dict:
    """What a query's conditions see: the transaction's own properties plus its Type."""
    kind = stored["Type"]
    return {**stored[kind], "Type": kind}


def unwrap(body: Any) -> tuple[str, dict]:
    """(type, transaction) of a request body, which holds exactly one supported transaction type."""
    if not isinstance(body, dict):
        raise faults.invalid("Request body must be a JSON object", code="2010")
    names = [k for k in body if k in RECURRING_TYPES]
    others = [k for k in body if k not in RECURRING_TYPES]
    if others:
        raise Fault("2010", "Request has invalid or unsupported property",
                    unknown_field_fault_detail(ENTITY, others[0]), element=None)
    if len(names) != 1 or not isinstance(body[names[0]], dict):
        raise faults.required("RecurringTransaction entity",
                              f"; give one of {', '.join(RECURRING_TYPES)}")
    return names[0], body[names[0]]


class Recurring:
    """Create, read, update, delete and list the recurring templates of the companies in `books`."""

    def __init__(self, books: Books) -> None:
        self.books = books

    def get(self, realm: str, record_id: str) -> dict:
        company = self.books.company(realm)
        stored = company.table(ENTITY).get(record_id)
        if stored is None:
            raise faults.not_found()
        return view(stored)

    def create(self, realm: str, body: Any) -> dict:
        kind, txn = unwrap(body)
        company = self.books.company(realm)
        txn = self._clean(kind, txn)
        for key in ("Id", "SyncToken", "MetaData", "domain", "sparse", "RecurDataRef"):
            txn.pop(key, None)
        self.books._check_required(ENTITIES[kind], txn)
        now = qbo_datetime(self.books.clock.now())
        record = {**txn, "domain": "QBO", "sparse": False, "Id": self.books._next_id(company, ENTITIES[ENTITY]),
                  "SyncToken": "0", "MetaData": {"CreateTime": now, "LastUpdatedTime": now},
                  "RecurDataRef": {"value": self._next_recur_ref(company)}}
        self._rules(company, kind, record, None)
        return view(self._store(company, kind, record, "Create"))

    def update(self, realm: str, body: Any) -> dict:
        kind, txn = unwrap(body)
        company = self.books.company(realm)
        current = self._current(company, kind, txn)
        sparse = txn.get("sparse", False) is True
        cleared = [k for k, v in txn.items() if v is None or v == ""]
        txn = self._clean(kind, txn)
        for key in ("domain", "MetaData", "status", "sparse", "RecurDataRef"):
            txn.pop(key, None)
        old = current[kind]
        if sparse:
            record = {k: v for k, v in copy.deepcopy(old).items() if k not in cleared}
            record.update(txn)
        else:
            self.books._check_required(ENTITIES[kind], txn)
            record = {**txn, **{k: old[k] for k in ("Id", "domain", "MetaData", "RecurDataRef") if k in old}}
        record["SyncToken"] = str(int(old["SyncToken"]) + 1)
        record["sparse"] = False
        record["MetaData"] = {**old["MetaData"], "LastUpdatedTime": qbo_datetime(self.books.clock.now())}
        self._rules(company, kind, record, old)
        return view(self._store(company, kind, record, "Update"))

    def delete(self, realm: str, body: Any) -> dict:
        kind, txn = unwrap(body)
        company = self.books.company(realm)
        current = self._current(company, kind, txn)
        record_id = current["Id"]
        company.remove(ENTITY, record_id)
        self.books.storage.delete_record(realm, ENTITY, record_id)
        now = qbo_datetime(self.books.clock.now())
        stub = {"status": "Deleted", "domain": "QBO", kind: {"Id": record_id}, "Id": record_id,
                "MetaData": {"LastUpdatedTime": now}, "Type": kind}
        company.deleted.setdefault(ENTITY, {})[record_id] = stub
        self.books.storage.save_record(realm, "-" + ENTITY, record_id, stub)
        self.books._notify(realm, ENTITY, record_id, "Delete", now)
        return {"status": "Deleted", "domain": "QBO", kind: {"Id": record_id}}

    # --- internals -------------------------------------------------------------------------------------
    @staticmethod
    def _clean(kind: str, txn: dict) -> dict:
        from qbflow.sandbox.books import _without_empty

        unknown = unknown_fields(kind, txn)
        if unknown:
            raise Fault("2010", "Request has invalid or unsupported property",
                        unknown_field_fault_detail(kind, unknown[0]), element=None)
        return _without_empty(txn)

    def _current(self, company: Company, kind: str, txn: dict) -> dict:
        record_id = str(txn.get("Id") or "")
        if not record_id:
            raise faults.required("Id")
        stored = company.table(ENTITY).get(record_id)
        if stored is None or stored["Type"] != kind:
            raise faults.not_found()
        token = txn.get("SyncToken")
        if token in (None, ""):
            raise faults.required("SyncToken")
        if str(token) != stored["SyncToken"]:
            raise faults.stale()
        return stored

    def _next_recur_ref(self, company: Company) -> str:
        value = company.sequences.get("recurdata", 0) + 1
        company.sequences["recurdata"] = value
        self.books._save_company(company)
        return str(value)

    def _rules(self, company: Company, kind: str, record: dict, current: dict | None) -> None:
        info = record.get("RecurringInfo")
        if not isinstance(info, dict) or not info:
            raise faults.required("RecurringInfo")
        recur_type = RECUR_TYPES.get(str(info.get("RecurType", "")).lower())
        if recur_type is None:
            raise faults.invalid(f"Invalid RecurType: {info.get('RecurType')}; expected Automated, Reminded or "
                                 f"UnScheduled", "RecurringInfo.RecurType")
        info["RecurType"] = recur_type
        name = str(info.get("Name", "")).strip()
        if not name:
            raise faults.required("RecurringInfo.Name")
        for other in company.table(ENTITY).values():
            if other["Id"] != record["Id"] and \
                    str(other[other["Type"]].get("RecurringInfo", {}).get("Name", "")).strip().lower() == name.lower():
                raise faults.duplicate_name(other["Id"])
        info.setdefault("Active", True)
        if recur_type != "UnScheduled":
            self._schedule(info)
        self.books._apply_rules(company, ENTITIES[kind], record, current, template=True)

    def _schedule(self, info: dict) -> None:
        schedule = info.get("ScheduleInfo")
        if not isinstance(schedule, dict) or not schedule:
            raise faults.required("RecurringInfo.ScheduleInfo")
        interval = str(schedule.get("IntervalType", ""))
        if interval not in INTERVALS:
            raise faults.invalid(f"Invalid IntervalType: {interval or None}; expected one of "
                                 f"{', '.join(INTERVALS)}", "ScheduleInfo.IntervalType")
        for number in ("NumInterval", "DayOfMonth", "MaxOccurrences", "DaysBefore", "RemindDays", "WeekOfMonth"):
            if number in schedule:
                try:
                    # Some clients send these as strings; QBO answers numbers (the reference's samples).
                    schedule[number] = int(schedule[number])
                except (TypeError, ValueError):
                    raise faults.invalid(f"{number} must be a whole number", f"ScheduleInfo.{number}") from None
        schedule.setdefault("NumInterval", 1)
        if interval == "Monthly" and not 1 <= schedule.get("DayOfMonth", 1) <= 31:
            raise faults.invalid("DayOfMonth must be from 1 to 31", "ScheduleInfo.DayOfMonth")
        today = self.books.clock.company_now().date()
        start = _date(schedule.get("StartDate"), today)
        schedule["StartDate"] = start.isoformat()
        if "EndDate" in schedule and _date(schedule["EndDate"], today) < start:
            raise faults.business("The end date of a recurring schedule must come after its start date.",
                                  "ScheduleInfo.EndDate")
        schedule["NextDate"] = _next_date(start, today, interval, schedule["NumInterval"]).isoformat()

    def _store(self, company: Company, kind: str, record: dict, operation: str) -> dict:
        stored = {"Id": record["Id"], "SyncToken": record["SyncToken"], "MetaData": record["MetaData"],
                  "Type": kind, kind: record}
        company.put(ENTITY, stored)
        self.books.storage.save_record(company.realm_id, ENTITY, record["Id"], stored)
        self.books._notify(company.realm_id, ENTITY, record["Id"], operation, record["MetaData"]["LastUpdatedTime"])
        return stored


def _date(value: Any, default: date) -> date:
    if value in (None, ""):
        return default
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        raise faults.invalid(f"Invalid date: {value}; expected yyyy-MM-dd", "ScheduleInfo.StartDate") from None


def _next_date(start: date, today: date, interval: str, every: int) -> date:
    """The first occurrence on or after today (*inferred*: the reference's samples show NextDate = StartDate
    for a schedule starting in the future)."""
    current = start
    every = max(1, every)
    for _ in range(10000):
        if current >= today:
            return current
        if interval == "Daily":
            current += timedelta(days=every)
        elif interval == "Weekly":
            current += timedelta(weeks=every)
        else:
            months = every * (12 if interval == "Yearly" else 1)
            month = current.month - 1 + months
            year = current.year + month // 12
            month = month % 12 + 1
            day = min(start.day, 28 if month == 2 else 30 if month in (4, 6, 9, 11) else 31)
            current = date(year, month, day)
    return current


__all__ = ["INTERVALS", "RECUR_TYPES", "Recurring", "flat", "unwrap", "view"]
