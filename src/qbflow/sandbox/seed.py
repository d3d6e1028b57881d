"""What a new sandbox company starts with: Intuit's sample company (the default) or an empty company.

The companies themselves are in `sample_company`; this module picks one and gives every company its settings
(CompanyInfo and Preferences).
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from qbflow.sandbox.us_entities import default_preferences

if TYPE_CHECKING:
    from qbflow.sandbox.books import Books, Company

SEEDS = ("sample", "empty")
DEFAULT_SEED = "sample"


def seed_company(books: Books, company: Company, kind: str = DEFAULT_SEED) -> None:
    """Fill a new company; change events are not reported for the seed.

    `kind`: "sample" (Intuit's sample company, Craig's Design and Landscaping Services: `sample_company`) or
    "empty" (what Intuit's new empty company has).
    """
    from qbflow.sandbox.sample_company import seed_empty_company, seed_sample_company

    seeds = {"sample": seed_sample_company, "empty": seed_empty_company}
    if kind not in seeds:
        raise ValueError(f"seed must be one of {list(SEEDS)}, got {kind!r}")
    listener, books.on_change = books.on_change, None
    try:
        seeds[kind](books, company)
    finally:
        books.on_change = listener


def seed_settings(books: Books, company: Company, today: date) -> None:
    """A new company's CompanyInfo and Preferences (every seed has them, the empty company too)."""
    address = {"Id": "1", "Line1": "123 Sierra Way", "City": "San Pablo", "CountrySubDivisionCode": "CA",
               "PostalCode": "87999"}
    books.insert(company, "CompanyInfo", {
        "CompanyName": company.name, "LegalName": company.name, "CompanyAddr": dict(address),
        "CustomerCommunicationAddr": dict(address), "LegalAddr": dict(address),
        "PrimaryPhone": {}, "CompanyStartDate": today.replace(day=1).isoformat(),
        "FiscalYearStartMonth": "January", "Country": "US", "Email": {"Address": "noreply@quickbooks.example"},
        "WebAddr": {}, "SupportedLanguages": "en", "NameValue": [
            {"Name": "NeoEnabled", "Value": "true"}, {"Name": "IndustryType", "Value": "Landscaping Services"},
            {"Name": "CompanyType", "Value": "Other"}, {"Name": "OfferingSku", "Value": "QuickBooks Online Plus"},
        ],
    }, record_id="1")
    books.insert(company, "Preferences", default_preferences(company.name), record_id="1")
