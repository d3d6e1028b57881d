"""Tests of the sandbox's transaction PDFs, checked on the raw bytes rather than through fpdf2."""

from __future__ import annotations

import re

import pytest

from qbflow.sandbox.pdf import FORM_TITLES, latin1, render_pdf

INVOICE = {
    "Id": "130",
    "DocNumber": "1038",
    "TxnDate": "2025-01-15",
    "DueDate": "2025-02-14",
    "CustomerRef": {"value": "1", "name": "Amy's Bird Sanctuary (West)"},
    "BillAddr": {"Id": "2", "Line1": "4581 Finch St.", "City": "Bayshore",
                 "CountrySubDivisionCode": "CA", "PostalCode": "94326"},
    "SalesTermRef": {"value": "3", "name": "Net 30"},
    "Line": [
        {"Id": "1", "LineNum": 1, "Description": "Weekly gardening service", "Amount": 100.0,
         "DetailType": "SalesItemLineDetail",
         "SalesItemLineDetail": {"ItemRef": {"value": "6", "name": "Gardening"}, "Qty": 4, "UnitPrice": 25}},
        {"Id": "2", "LineNum": 2, "Description": "Rock fountain", "Amount": 23.45,
         "DetailType": "SalesItemLineDetail",
         "SalesItemLineDetail": {"ItemRef": {"value": "5", "name": "Rock Fountain"}, "Qty": 1,
                                 "UnitPrice": 23.45}},
        {"Amount": 123.45, "DetailType": "SubTotalLineDetail", "SubTotalLineDetail": {}},
    ],
    "TxnTaxDetail": {"TotalTax": 0},
    "TotalAmt": 123.45,
    "Balance": 100.0,
    "CustomerMemo": {"value": "Thank you for your business"},
}

_SHOWN = re.compile(rb"\(((?:[^()\\]|\\.)*)\) Tj")


def shown_text(pdf: bytes) -> list[str]:
    """Strings drawn with Tj in uncompressed content streams, unescaped, as Latin-1."""
    return [re.sub(rb"\\(.)", rb"\1", m).decode("latin-1") for m in _SHOWN.findall(pdf)]


def page_count(pdf: bytes) -> int:
    return len(re.findall(rb"/Type /Page\b", pdf))


def test_invoice_pdf_shows_the_facts() -> None:
    pdf = render_pdf("Invoice", INVOICE, "Sandbox Company_US_1", compress=False)
    assert pdf.startswith(b"%PDF-")
    assert pdf.rstrip().endswith(b"%%EOF")
    assert page_count(pdf) == 1
    text = shown_text(pdf)
    for expected in ("Sandbox Company_US_1", "INVOICE", "1038", "01/15/2025", "02/14/2025", "Net 30",
                     "Amy's Bird Sanctuary (West)", "4581 Finch St.", "Bayshore, CA 94326",
                     "Gardening", "Weekly gardening service", "4", "25.00", "100.00", "Rock Fountain",
                     "23.45", "$123.45", "Balance due", "$100.00", "Thank you for your business"):
        assert expected in text, expected
    assert "Subtotal" in text and text[text.index("Subtotal") + 1] == "$123.45"
    assert text[text.index("Total") + 1] == "$123.45"


def test_compressed_by_default() -> None:
    pdf = render_pdf("Invoice", INVOICE, "Sandbox Company_US_1")
    assert pdf.startswith(b"%PDF-")
    assert b"/FlateDecode" in pdf
    assert b"(1038) Tj" not in pdf


@pytest.mark.parametrize("entity", sorted(FORM_TITLES))
def test_every_form_renders_with_its_title(entity: str) -> None:
    record = dict(INVOICE)
    if entity == "PurchaseOrder":
        record = {
            "DocNumber": "PO-7", "TxnDate": "2025-03-01", "TotalAmt": 60,
            "VendorRef": {"value": "41", "name": "Hicks Hardware"},
            "VendorAddr": {"Line1": "42 Main St"}, "ShipAddr": {"Line1": "1 Warehouse Rd"},
            "Memo": "Deliver by Friday",
            "Line": [
                {"Amount": 50, "DetailType": "ItemBasedExpenseLineDetail",
                 "ItemBasedExpenseLineDetail": {"ItemRef": {"name": "Pump"}, "Qty": 2, "UnitPrice": 25}},
                {"Amount": 10, "DetailType": "AccountBasedExpenseLineDetail",
                 "AccountBasedExpenseLineDetail": {"AccountRef": {"name": "Freight"}}},
            ],
        }
    pdf = render_pdf(entity, record, "Craig's Design", compress=False)
    assert pdf.startswith(b"%PDF-")
    text = shown_text(pdf)
    assert FORM_TITLES[entity].upper() in text
    assert record["DocNumber"] in text
    if entity == "PurchaseOrder":
        assert {"VENDOR", "Hicks Hardware", "SHIP TO", "1 Warehouse Rd", "Pump", "Freight", "$60.00",
                "Deliver by Friday"} <= set(text)
        assert "Balance due" not in text
    if entity == "Estimate":
        assert "Balance due" not in text
    if entity == "CreditMemo":
        assert "Remaining credit" in text


@pytest.mark.parametrize("record", [
    {},
    {"DocNumber": "17"},
    {"TotalAmt": "12.5", "Line": [{"DetailType": "DescriptionOnly", "Description": "Note only"}]},
    {"CustomerRef": {"value": "3"}, "BillAddr": {}, "Line": [{"Amount": None, "DetailType": "Unknown"}],
     "TxnDate": "not a date"},
])
def test_records_with_missing_fields_still_render(record: dict) -> None:
    pdf = render_pdf("Invoice", record, "Sandbox Company_US_1", compress=False)
    assert pdf.startswith(b"%PDF-")
    assert page_count(pdf) == 1
    assert "INVOICE" in shown_text(pdf)


def test_characters_outside_latin1_do_not_crash() -> None:
    record = dict(INVOICE, CustomerRef={"value": "1", "name": "Café “Őrség” 日本 €"},
                  CustomerMemo={"value": "Merci — à bientôt…"})
    pdf = render_pdf("Invoice", record, "Sandbox Company 株式会社", compress=False)
    text = shown_text(pdf)
    assert 'Café "Orség" ?? EUR' in text
    assert "Merci - à bientôt..." in text
    assert "Sandbox Company ????" in text


def test_many_lines_flow_onto_more_pages() -> None:
    line = INVOICE["Line"][0]
    record = dict(INVOICE, Line=[dict(line, Id=str(n), Description=f"Visit {n}") for n in range(80)])
    pdf = render_pdf("Invoice", record, "Sandbox Company_US_1", compress=False)
    assert page_count(pdf) >= 2
    text = shown_text(pdf)
    assert "Visit 0" in text and "Visit 79" in text
    assert "Product/Service" in text


def test_discount_and_group_lines() -> None:
    record = dict(INVOICE, Line=[
        INVOICE["Line"][0],
        {"Amount": 10, "DetailType": "DiscountLineDetail",
         "DiscountLineDetail": {"PercentBased": True, "DiscountPercent": 10}},
        {"Amount": 30, "DetailType": "GroupLineDetail",
         "GroupLineDetail": {"GroupItemRef": {"name": "Starter kit"}, "Quantity": 1, "Line": [
             {"Amount": 30, "DetailType": "SalesItemLineDetail",
              "SalesItemLineDetail": {"ItemRef": {"name": "Seeds"}, "Qty": 3, "UnitPrice": 10}}]}},
    ])
    text = shown_text(render_pdf("Invoice", record, "Co", compress=False))
    assert "Discount 10%" in text and "-10.00" in text
    assert "Starter kit" in text and "   Seeds" in text


def test_latin1_helper() -> None:
    assert latin1("naïve café") == "naïve café"
    assert latin1("“quoted” – ok…") == '"quoted" - ok...'
    assert latin1("Łódź Œuvre") == "Lódz OEuvre"
    assert latin1("Ω 日本") == "? ??"
    assert latin1(None) == ""
    assert latin1(12.5) == "12.5"
