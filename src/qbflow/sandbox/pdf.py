"""PDF copies of sales and purchase forms, as QBO serves them from `GET /{entity}/{id}/pdf`.

The real service renders the company's custom form style; the sandbox only needs a genuine,
readable PDF with the same facts: company, form title, number, dates, the other party, the lines,
the total and what is still owed. Only fpdf2's core fonts are used (no font files to ship), and
those cover Latin-1 only, so every other character is transliterated or replaced with "?".
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from datetime import date
from typing import Any

from fpdf import FPDF
from fpdf.fonts import FontFace

__all__ = ["FORM_TITLES", "render_pdf"]

FORM_TITLES: dict[str, str] = {
    "Invoice": "Invoice",
    "Estimate": "Estimate",
    "SalesReceipt": "Sales Receipt",
    "CreditMemo": "Credit Memo",
    "PurchaseOrder": "Purchase Order",
    "RefundReceipt": "Refund Receipt",
}

# Typographic characters that are common in QBO text but absent from Latin-1.
_ASCII_FOR: dict[str, str] = {
    "\u2018": "'", "\u2019": "'", "\u201a": ",", "\u201c": '"', "\u201d": '"', "\u201e": '"',
    "\u2013": "-", "\u2014": "-", "\u2212": "-", "\u2026": "...", "\u2022": "*", "\u00a0": " ",
    "\u2009": " ", "\u200b": "", "\u20ac": "EUR", "\u2122": "(TM)", "\u2010": "-", "\u2011": "-",
    # Letters without a Unicode decomposition to a Latin-1 base.
    "\u0141": "L", "\u0142": "l", "\u0110": "D", "\u0111": "d", "\u0131": "i", "\u0152": "OE",
    "\u0153": "oe",
}

_ADDRESS_KEYS = ("Line1", "Line2", "Line3", "Line4", "Line5")

_COLUMNS = ("Product/Service", "Description", "Qty", "Rate", "Amount")
_COL_WIDTHS = (42, 78, 16, 24, 26)  # relative; the table spans the page width
_COL_ALIGN = ("LEFT", "LEFT", "RIGHT", "RIGHT", "RIGHT")


def latin1(text: Any) -> str:
    """`text` as a string the core fonts can draw: Latin-1 kept, others transliterated or '?'."""
    out: list[str] = []
    for ch in "" if text is None else str(text):
        if ch in _ASCII_FOR:
            out.append(_ASCII_FOR[ch])
        elif ord(ch) < 256:
            out.append(ch)
        else:
            # e.g. "ő" -> "o" + combining mark; keep the base letter if it is Latin-1.
            base = "".join(c for c in unicodedata.normalize("NFKD", ch) if ord(c) < 256)
            out.append(base if base.strip() else "?")
    return "".join(out)


class _Form(FPDF):
    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("Helvetica", size=8)
        self.set_text_color(120)
        self.cell(0, 5, f"Page {self.page_no()} of {{nb}}", align="C")


def render_pdf(entity: str, record: dict, company_name: str, *, compress: bool = True) -> bytes:
    """A PDF of one QBO transaction record (Invoice, Estimate, SalesReceipt, CreditMemo, ...).

    `compress=False` leaves the page content streams readable, which lets tests look for text
    without a PDF library.
    """
    title = FORM_TITLES.get(entity) or " ".join(re.findall(r"[A-Z][a-z]*|[a-z]+|\d+", entity)) or "Document"
    doc_number = _text(record.get("DocNumber"))
    currency = _text((record.get("CurrencyRef") or {}).get("value")) or "USD"

    pdf = _Form(format="Letter")
    pdf.set_compression(compress)
    pdf.set_margins(18, 16, 18)
    pdf.set_auto_page_break(True, margin=18)
    pdf.set_title(latin1(f"{title} {doc_number}".strip()))
    pdf.set_author(latin1(company_name))
    pdf.set_creator("qbflow sandbox")
    pdf.add_page()

    _header(pdf, company_name, title)
    _facts(pdf, entity, record, doc_number, title)
    _parties(pdf, entity, record)
    _lines_table(pdf, record.get("Line") or [])
    _totals(pdf, entity, record, currency)
    _notes(pdf, entity, record)
    return bytes(pdf.output())


# sections -------------------------------------------------------------------------------------------
def _header(pdf: FPDF, company_name: str, title: str) -> None:
    top = pdf.get_y()
    pdf.set_font("Helvetica", "B", 15)
    pdf.multi_cell(pdf.epw * 0.6, 7, latin1(company_name) or " ", new_x="LMARGIN", new_y="NEXT")
    bottom = pdf.get_y()  # a long company name wraps; the next section starts below it
    pdf.set_y(top)
    pdf.set_font("Helvetica", "B", 20)
    pdf.set_text_color(40, 90, 150)
    pdf.cell(0, 9, latin1(title.upper()), align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(0)
    pdf.set_y(max(bottom, pdf.get_y()) + 8)


def _facts(pdf: FPDF, entity: str, record: dict, doc_number: str, title: str) -> None:
    facts: list[tuple[str, str]] = []
    number_label = "P.O. No." if entity == "PurchaseOrder" else f"{title} no."
    if doc_number:
        facts.append((number_label, doc_number))
    facts.append(("Date", _date(record.get("TxnDate"))))
    if record.get("DueDate"):
        facts.append(("Due date", _date(record["DueDate"])))
    if record.get("ExpirationDate"):
        facts.append(("Expiration date", _date(record["ExpirationDate"])))
    terms = _ref_name(record.get("SalesTermRef"))
    if terms:
        facts.append(("Terms", terms))
    method = _ref_name(record.get("PaymentMethodRef"))
    if method:
        facts.append(("Payment method", method))
    for label, value in facts:
        if not value:
            continue
        pdf.set_font("Helvetica", "B", 9)
        pdf.cell(32, 5, latin1(label))
        pdf.set_font("Helvetica", size=9)
        pdf.cell(0, 5, latin1(value), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(5)


def _parties(pdf: FPDF, entity: str, record: dict) -> None:
    blocks: list[tuple[str, list[str]]] = []
    if entity == "PurchaseOrder" or ("VendorRef" in record and "CustomerRef" not in record):
        blocks.append(("Vendor", [_ref_name(record.get("VendorRef")), *_address(record.get("VendorAddr"))]))
    else:
        blocks.append(("Bill to", [_ref_name(record.get("CustomerRef")), *_address(record.get("BillAddr"))]))
    ship = _address(record.get("ShipAddr"))
    if ship:
        blocks.append(("Ship to", ship))
    blocks = [(label, _dedupe(lines)) for label, lines in blocks if any(lines)]
    if not blocks:
        return
    top = pdf.get_y()
    width = pdf.epw / 2
    bottom = top
    for n, (label, lines) in enumerate(blocks):
        x = pdf.l_margin + n * width
        pdf.set_xy(x, top)
        pdf.set_font("Helvetica", "B", 9)
        pdf.set_text_color(110)
        pdf.cell(width, 5, latin1(label.upper()), new_x="LEFT", new_y="NEXT")
        pdf.set_text_color(0)
        pdf.set_font("Helvetica", size=10)
        pdf.multi_cell(width - 4, 5, latin1("\n".join(lines)), new_x="LEFT", new_y="NEXT")
        bottom = max(bottom, pdf.get_y())
    pdf.set_xy(pdf.l_margin, bottom)
    pdf.ln(6)


def _lines_table(pdf: FPDF, lines: list[dict]) -> None:
    pdf.set_font("Helvetica", size=9)
    pdf.set_draw_color(190)
    headings = FontFace(emphasis="BOLD", fill_color=(230, 236, 244))
    with pdf.table(
        col_widths=_COL_WIDTHS,
        text_align=_COL_ALIGN,
        borders_layout="HORIZONTAL_LINES",
        headings_style=headings,
        line_height=5,
        padding=1.5,
    ) as table:
        heading = table.row()
        for name in _COLUMNS:
            heading.cell(name)
        for cells in _rows(lines):
            row = table.row()
            for value in cells:
                row.cell(latin1(value))
    pdf.ln(4)


def _totals(pdf: FPDF, entity: str, record: dict, currency: str) -> None:
    lines = record.get("Line") or []
    subtotal = next((_num(li.get("Amount")) for li in lines if li.get("DetailType") == "SubTotalLineDetail"),
                    None)
    if subtotal is None:
        subtotal = sum(_num(li.get("Amount")) or 0.0 for li in _item_lines(lines))
    total = _num(record.get("TotalAmt"))
    tax = _num((record.get("TxnTaxDetail") or {}).get("TotalTax"))
    rows: list[tuple[str, float | None, bool]] = [("Subtotal", subtotal, False)]
    if tax:
        rows.append(("Tax", tax, False))
    rows.append(("Total", total if total is not None else subtotal + (tax or 0.0), True))
    if entity == "Invoice":
        balance = _num(record.get("Balance"))
        rows.append(("Balance due", balance if balance is not None else total, True))
    elif entity == "CreditMemo":
        remaining = record.get("RemainingCredit", record.get("Balance"))
        if remaining is not None:
            rows.append(("Remaining credit", _num(remaining), True))
    elif "Balance" in record and entity not in ("Estimate", "PurchaseOrder"):
        rows.append(("Balance due", _num(record.get("Balance")), True))

    label_x = pdf.l_margin + pdf.epw - 80
    for label, value, strong in rows:
        pdf.set_x(label_x)
        pdf.set_font("Helvetica", "B" if strong else "", 11 if strong else 10)
        pdf.cell(45, 7, latin1(label))
        pdf.cell(35, 7, latin1(_money(value, currency)), align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(6)


def _notes(pdf: FPDF, entity: str, record: dict) -> None:
    # Sales forms print the customer-facing memo; a purchase order prints its vendor memo.
    if entity == "PurchaseOrder":
        label, message = "Memo", record.get("Memo")
    else:
        label, message = "Message", (record.get("CustomerMemo") or {}).get("value")
    if not message:
        return
    pdf.set_font("Helvetica", "B", 9)
    pdf.cell(0, 5, label, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=9)
    pdf.multi_cell(0, 5, latin1(message), new_x="LMARGIN", new_y="NEXT")


# lines ----------------------------------------------------------------------------------------------
def _item_lines(lines: Iterable[dict]) -> Iterator[dict]:
    """Lines that make up the subtotal (not subtotal or discount lines)."""
    for line in lines:
        if line.get("DetailType") not in ("SubTotalLineDetail", "DiscountLineDetail"):
            yield line


def _rows(lines: list[dict], indent: str = "") -> Iterator[tuple[str, str, str, str, str]]:
    for line in lines:
        kind = line.get("DetailType") or ""
        detail = line.get(kind) or {}
        description = _text(line.get("Description"))
        amount = _amount(_num(line.get("Amount")))
        if kind == "SubTotalLineDetail":
            continue  # shown in the totals
        if kind == "DiscountLineDetail":
            label = "Discount"
            if detail.get("PercentBased") and detail.get("DiscountPercent") is not None:
                label = f"Discount {_qty(_num(detail['DiscountPercent']))}%"
            value = _num(line.get("Amount"))
            yield indent + label, description, "", "", _amount(-abs(value) if value else value)
        elif kind == "GroupLineDetail":
            name = _ref_name(detail.get("GroupItemRef"))
            yield indent + name, description, _qty(_num(detail.get("Quantity"))), "", amount
            yield from _rows(detail.get("Line") or [], indent + "   ")
        elif kind == "DescriptionOnly":
            yield "", description, "", "", amount if _num(line.get("Amount")) else ""
        else:
            # SalesItemLineDetail, ItemBasedExpenseLineDetail, AccountBasedExpenseLineDetail, ...
            product = _ref_name(detail.get("ItemRef")) or _ref_name(detail.get("AccountRef"))
            yield (indent + product, description, _qty(_num(detail.get("Qty"))),
                   _rate(_num(detail.get("UnitPrice"))), amount)


# small helpers ----------------------------------------------------------------------------------
def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _ref_name(ref: Any) -> str:
    if isinstance(ref, dict):
        return _text(ref.get("name") or ref.get("value"))
    return _text(ref)


def _address(addr: Any) -> list[str]:
    if not isinstance(addr, dict):
        return []
    lines = [_text(addr.get(k)) for k in _ADDRESS_KEYS if addr.get(k)]
    city = _text(addr.get("City"))
    state, postal = _text(addr.get("CountrySubDivisionCode")), _text(addr.get("PostalCode"))
    region = " ".join(p for p in (state, postal) if p)
    locality = ", ".join(p for p in (city, region) if p)
    if locality:
        lines.append(locality)
    if addr.get("Country"):
        lines.append(_text(addr["Country"]))
    return lines


def _dedupe(lines: list[str]) -> list[str]:
    # QBO often repeats the customer's name as the first address line.
    out: list[str] = []
    for line in lines:
        if line and (not out or line != out[-1]):
            out.append(line)
    return out


def _num(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _qty(value: float | None) -> str:
    """A quantity or percentage: 2 -> "2", 2.5 -> "2.5"."""
    if value is None:
        return ""
    return str(int(value)) if value == int(value) else f"{value:.5f}".rstrip("0")


def _amount(value: float | None) -> str:
    """Money without a currency sign, as in the lines table."""
    return "" if value is None else f"{value:,.2f}"


def _rate(value: float | None) -> str:
    """Unit prices keep extra precision when they have it (QBO allows up to 5 decimals)."""
    if value is None:
        return ""
    return f"{value:,.2f}" if round(value, 2) == value else f"{value:,.5f}".rstrip("0")


def _money(value: float | None, currency: str) -> str:
    if value is None:
        return ""
    amount = f"{abs(value):,.2f}"
    sign = "-" if value < 0 else ""
    return f"{sign}${amount}" if currency == "USD" else f"{sign}{currency} {amount}"


def _date(value: Any) -> str:
    """QBO dates (YYYY-MM-DD) in the US form QBO prints; anything else as given."""
    text = _text(value)
    try:
        return date.fromisoformat(text[:10]).strftime("%m/%d/%Y")
    except ValueError:
        return text
