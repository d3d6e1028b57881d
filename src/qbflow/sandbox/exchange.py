"""ExchangeRate: the rate QBO uses to turn a foreign currency into the home currency on a date.

    GET  /exchangerate?sourcecurrencycode=EUR&asofdate=2026-12-01   {"ExchangeRate": {...}}
    POST /exchangerate   {"SourceCurrencyCode": "EUR", "Rate": 1.1, "AsOfDate": "...", "SyncToken": "0"}
    SELECT * FROM exchangerate WHERE SourceCurrencyCode = 'EUR'

A rate has no Id (quickbooks-ruby's recorded exchange_rate_by_currency.xml and python-quickbooks'
ExchangeRate, whose MetaData has only LastUpdatedTime); "update" sets the rate of a currency for a date.
Until someone sets one, the sandbox answers a fixed market rate for the currency (QBO answers its daily
feed's); a set rate holds from its date until a later one.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

from qbflow.sandbox import faults
from qbflow.sandbox.clock import qbo_datetime
from qbflow.sandbox.us_entities import CURRENCY_NAMES, HOME_CURRENCY

if TYPE_CHECKING:
    from qbflow.sandbox.books import Books, Company

ENTITY = "ExchangeRate"

# Units of home currency (USD) per unit of the source currency: believable, fixed, not live.
MARKET_RATES: dict[str, float] = {
    "EUR": 1.08, "GBP": 1.27, "CAD": 0.74, "AUD": 0.66, "NZD": 0.61, "JPY": 0.0067, "CHF": 1.13, "CNY": 0.14,
    "HKD": 0.128, "INR": 0.012, "MXN": 0.058, "BRL": 0.2, "SEK": 0.095, "NOK": 0.093, "DKK": 0.145,
    "SGD": 0.74, "ZAR": 0.054, "PHP": 0.018, "KRW": 0.00075,
}


class ExchangeRates:
    def __init__(self, books: Books) -> None:
        self.books = books

    def read(self, realm: str, source: str | None, as_of: str | None) -> dict:
        company = self.books.company(realm)
        if not source:
            raise faults.required("sourcecurrencycode")
        code = _code(source, "sourcecurrencycode")
        day = _day(as_of, self.books.clock.company_now().date(), "asofdate")
        return _wire(self._rate(company, code, day))

    def update(self, realm: str, body: Any) -> dict:
        company = self.books.company(realm)
        if not isinstance(body, dict):
            raise faults.invalid("Request body must be a JSON object", code="2010")
        from qbflow.catalog.entities import ENTITIES
        from qbflow.sandbox.books import _refuse_unknown_fields, parse_amount

        _refuse_unknown_fields(ENTITIES[ENTITY], body)
        for need in ("SourceCurrencyCode", "Rate", "AsOfDate"):
            if body.get(need) in (None, ""):
                raise faults.required(need)
        code = _code(body["SourceCurrencyCode"], "SourceCurrencyCode")
        target = str(body.get("TargetCurrencyCode") or HOME_CURRENCY).upper()
        if target != HOME_CURRENCY:
            raise faults.business(f"TargetCurrencyCode must be the home currency ({HOME_CURRENCY}).",
                                  "TargetCurrencyCode")
        day = _day(body["AsOfDate"], self.books.clock.company_now().date(), "AsOfDate")
        rate = round(parse_amount(body["Rate"], "Rate"), 8)  # a rate keeps its precision
        if rate <= 0:
            raise faults.invalid("Rate must be greater than zero", "Rate")
        current = self._rate(company, code, day, exact=True)
        token = body.get("SyncToken")
        if token in (None, ""):
            raise faults.required("SyncToken")
        if str(token) != current["SyncToken"]:
            raise faults.stale()
        record = {**current, "Rate": rate, "SyncToken": str(int(current["SyncToken"]) + 1),
                  "MetaData": {"LastUpdatedTime": qbo_datetime(self.books.clock.now())}}
        self.books.save(company, ENTITY, record)
        return _wire(record)

    def candidates(self, realm: str) -> list[dict]:
        """What a query looks at: every rate set, and today's for each active currency of the company."""
        company = self.books.company(realm)
        today = self.books.clock.company_now().date()
        records = {(r["SourceCurrencyCode"], r["AsOfDate"]): r for r in company.table(ENTITY).values()}
        for currency in company.table("CompanyCurrency").values():
            if currency.get("Active", True):
                # The rate in force today: a stored one (already listed) or today's market rate.
                rate = self._rate(company, currency["Code"], today)
                records.setdefault((rate["SourceCurrencyCode"], rate["AsOfDate"]), rate)
        return [_wire(records[k]) for k in sorted(records)]

    def _rate(self, company: Company, code: str, day: date, *, exact: bool = False) -> dict:
        stored = [r for r in company.table(ENTITY).values()
                  if r["SourceCurrencyCode"] == code and r["AsOfDate"] <= day.isoformat()]
        if stored:
            latest = max(stored, key=lambda r: r["AsOfDate"])
            if not exact or latest["AsOfDate"] == day.isoformat():
                return latest
            base = latest["Rate"]
        else:
            base = MARKET_RATES.get(code, 1.0)
        return {"Id": f"{code}/{day.isoformat()}", "domain": "QBO", "sparse": False, "SyncToken": "0",
                "MetaData": {"LastUpdatedTime": qbo_datetime(self.books.clock.now())},
                "SourceCurrencyCode": code, "TargetCurrencyCode": HOME_CURRENCY, "Rate": base,
                "AsOfDate": day.isoformat()}


def _wire(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "Id"}


def _code(value: Any, element: str) -> str:
    code = str(value).upper()
    if code not in CURRENCY_NAMES or code == HOME_CURRENCY:
        raise faults.invalid(f"Invalid currency code: {value}", element)
    return code


def _day(value: Any, default: date, element: str) -> date:
    if value in (None, ""):
        return default
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        raise faults.invalid(f"Invalid date: {value}; expected yyyy-MM-dd", element) from None


__all__ = ["MARKET_RATES", "ExchangeRates"]
