"""US sales tax on sales forms, as QBO computes it for a company with manual sales tax (Intuit's sample company).

A line is taxable or not by its pseudo-code (`TaxCodeRef` "TAX" or "NON"); the transaction names the tax code to
charge in `TxnTaxDetail.TxnTaxCodeRef`. Each sales rate of that code is applied to the taxable lines' total and
answered as one `TaxLine`, in the key order of Intuit's recorded answers (sample company invoices 99 and 130 of
public recordings: TaxCode 2, TaxRate 3 at 8%):

    "TxnTaxDetail": {"TxnTaxCodeRef": {"value": "2"}, "TotalTax": 30.72,
                     "TaxLine": [{"Amount": 30.72, "DetailType": "TaxLineDetail",
                                  "TaxLineDetail": {"TaxRateRef": {"value": "3"}, "PercentBased": true,
                                                    "TaxPercent": 8, "NetAmountTaxable": 384}}]}

`ApplyTaxAfterDiscount` (Intuit's XSD): false or absent, tax is computed first and the discount applies after it
(the taxable amount is the taxable lines' total); true, the discount comes off first. How QBO splits a discount
between taxable and non-taxable lines is *inferred*: in proportion to their amounts.

Without a `TxnTaxCodeRef` no tax is charged (`{"TotalTax": 0}`, as every recorded answer without one has).
*Inferred*: that QBO does not fall back on the customer's default tax code when an API request leaves the code
out; no recording shows a request with taxable lines and no code.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from qbflow.sandbox import faults

if TYPE_CHECKING:
    from qbflow.sandbox.books import Company

CENT = Decimal("0.01")
# The sales forms whose totals include sales tax (Intuit's XSD: SalesTransaction's TxnTaxDetail).
TAXED_FORMS = frozenset({"Invoice", "SalesReceipt", "Estimate", "CreditMemo", "RefundReceipt"})


def _cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def _percent(value: Decimal) -> float | int:
    """A rate as the TaxRate has it: 8, or 8.25."""
    return int(value) if value == value.to_integral_value() else float(value)


def _decimal(value: Any) -> Decimal:
    try:
        return Decimal(str(value if value is not None else 0))
    except ArithmeticError:
        return Decimal(0)


def _taxable_lines(lines: list[dict]) -> list[dict]:
    """The sales lines marked TAX, a group's own lines included."""
    found: list[dict] = []
    for line in lines:
        kind = line.get("DetailType")
        if kind == "SalesItemLineDetail":
            found.append(line)
        elif kind == "GroupLineDetail":
            found += [sub for sub in (line.get("GroupLineDetail") or {}).get("Line", [])
                      if sub.get("DetailType") == "SalesItemLineDetail"]
    return [line for line in found
            if ((line.get("SalesItemLineDetail") or {}).get("TaxCodeRef") or {}).get("value") == "TAX"]


def tax_detail(company: Company, record: dict, subtotal: float, discount: float) -> dict:
    """The TxnTaxDetail QBO answers for a sales form whose lines are already checked and priced."""
    given = record.get("TxnTaxDetail")
    code_ref = given.get("TxnTaxCodeRef") if isinstance(given, dict) else None
    if not code_ref:
        return {"TotalTax": 0}
    if not isinstance(code_ref, dict) or code_ref.get("value") in (None, ""):
        raise faults.required("TxnTaxDetail.TxnTaxCodeRef.value")
    code_id = str(code_ref["value"])
    code = company.table("TaxCode").get(code_id)
    if code is None:
        raise faults.invalid_reference("TaxCode", code_id)
    if code.get("Active") is False:
        raise faults.inactive_reference()
    taxable = sum((_decimal(line.get("Amount")) for line in _taxable_lines(record.get("Line", []))), Decimal(0))
    if record.get("ApplyTaxAfterDiscount") is True and discount and subtotal:
        # *Inferred*: the discount is shared by taxable and non-taxable lines in proportion to their amounts.
        taxable = _cents(taxable - _decimal(discount) * taxable / _decimal(subtotal))
    rates = company.table("TaxRate")
    tax_lines: list[dict] = []
    total = Decimal(0)
    for detail in (code.get("SalesTaxRateList") or {}).get("TaxRateDetail", []):
        rate_id = str((detail.get("TaxRateRef") or {}).get("value", ""))
        rate = rates.get(rate_id)
        if rate is None:
            continue
        percent = _decimal(rate.get("RateValue"))
        amount = _cents(taxable * percent / 100)
        total += amount
        tax_lines.append({"Amount": float(amount), "DetailType": "TaxLineDetail",
                          "TaxLineDetail": {"TaxRateRef": {"value": rate_id}, "PercentBased": True,
                                            "TaxPercent": _percent(percent),
                                            "NetAmountTaxable": float(taxable)}})
    answer: dict[str, Any] = {"TxnTaxCodeRef": {"value": code_id}, "TotalTax": float(total)}
    if tax_lines:
        answer["TaxLine"] = tax_lines
    return answer


__all__ = ["TAXED_FORMS", "tax_detail"]
