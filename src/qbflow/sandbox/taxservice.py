"""TaxService: how an app creates a sales tax code, with new or existing tax rates.

    POST /taxservice/taxcode
    {"TaxCode": "Mountain View", "TaxRateDetails": [
        {"TaxRateName": "Mountain View City", "RateValue": 1.5, "TaxAgencyId": "1", "TaxApplicableOn": "Sales"},
        {"TaxRateId": "1"}]}

The answer is the same object, bare (no envelope), with TaxCodeId and each TaxRateId filled in: quickbooks-ruby
and python-quickbooks both read `TaxCode`/`TaxCodeId`/`TaxRateDetails` at the top of the answer. The new code
and rates are then ordinary TaxCode and TaxRate records (query them); tax agencies are referenced by Id only
(python-quickbooks' TaxService docstring, from Intuit's reference). A rate name already in use is Fault 6240
with the Detail quickbooks-ruby recorded (spec/fixtures/json/tax_service_error_dup.json).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qbflow.sandbox import faults
from qbflow.sandbox.faults import Fault

if TYPE_CHECKING:
    from qbflow.sandbox.books import Books

APPLICABLE_ON = ("Sales", "Purchase")
_DETAIL_KEYS = frozenset({"TaxRateName", "TaxRateId", "RateValue", "TaxAgencyId", "TaxApplicableOn"})


def duplicate_rate_name() -> Fault:
    return Fault("6240", "Duplicate Name Exists Error",
                 "The name supplied already exists. : Another tax rate is already using this \nname. "
                 "Please use a different name.", element="")


def duplicate_code_name() -> Fault:
    # *Inferred* from the recorded rate fault: the same code and wording, about a tax code.
    return Fault("6240", "Duplicate Name Exists Error",
                 "The name supplied already exists. : Another tax code is already using this \nname. "
                 "Please use a different name.", element="")


def create_tax_code(books: Books, realm: str, body: Any) -> dict:
    company = books.company(realm)
    if not isinstance(body, dict):
        raise faults.invalid("Request body must be a JSON object", code="2010")
    unknown = [k for k in body if k not in ("TaxCode", "TaxRateDetails", "TaxCodeId", "Id")]
    if unknown:
        raise faults.invalid(f"Property Name:Unrecognized field \"{unknown[0]}\" specified is unsupported or "
                             f"invalid", unknown[0])
    name = str(body.get("TaxCode") or "").strip()
    if not name:
        raise faults.required("TaxCode")
    if len(name) > 100:
        raise faults.invalid("TaxCode is longer than 100 characters", "TaxCode", code="2050",
                             message="String length is either shorter or longer than supported by specification")
    details = body.get("TaxRateDetails")
    if not isinstance(details, list) or not details:
        raise faults.required("TaxRateDetails")
    codes = company.table("TaxCode")
    if any(str(c.get("Name", "")).strip().lower() == name.lower() for c in codes.values()):
        raise duplicate_code_name()
    rates = company.table("TaxRate")
    plan: list[tuple[dict[str, Any], dict[str, Any] | None]] = []  # (answer detail, new rate to store or None)
    new_names: set[str] = set()
    for index, detail in enumerate(details):
        if not isinstance(detail, dict):
            raise faults.invalid(f"TaxRateDetails {index + 1} is not an object", "TaxRateDetails")
        extra = sorted(set(detail) - _DETAIL_KEYS)
        if extra:
            raise faults.invalid(f"Property Name:Unrecognized field \"{extra[0]}\" specified is unsupported or "
                                 f"invalid", f"TaxRateDetails.{extra[0]}")
        applicable = detail.get("TaxApplicableOn") or "Sales"
        if applicable not in APPLICABLE_ON:
            raise faults.invalid(f"Invalid TaxApplicableOn: {applicable}; expected Sales or Purchase",
                                 "TaxRateDetails.TaxApplicableOn")
        if detail.get("TaxRateId") not in (None, ""):
            rate = rates.get(str(detail["TaxRateId"]))
            if rate is None:
                raise faults.invalid_reference("TaxRate", str(detail["TaxRateId"]))
            answer: dict[str, Any] = {
                "TaxRateName": rate["Name"], "TaxRateId": rate["Id"], "RateValue": rate.get("RateValue"),
                "TaxAgencyId": (rate.get("AgencyRef") or {}).get("value"), "TaxApplicableOn": applicable}
            plan.append((answer, None))
            continue
        rate_name = str(detail.get("TaxRateName") or "").strip()
        if not rate_name:
            raise faults.required("TaxRateDetails.TaxRateName")
        if rate_name.lower() in new_names or \
                any(str(r.get("Name", "")).strip().lower() == rate_name.lower() for r in rates.values()):
            raise duplicate_rate_name()
        new_names.add(rate_name.lower())
        if detail.get("RateValue") in (None, ""):
            raise faults.required("TaxRateDetails.RateValue")
        from qbflow.sandbox.books import parse_amount

        value = parse_amount(detail["RateValue"], "TaxRateDetails.RateValue")
        if not 0 <= value <= 100:
            raise faults.invalid(f"RateValue must be from 0 to 100, not {detail['RateValue']}",
                                 "TaxRateDetails.RateValue")
        agency_id = str(detail.get("TaxAgencyId") or "")
        if not agency_id:
            raise faults.required("TaxRateDetails.TaxAgencyId")
        if agency_id not in company.table("TaxAgency"):
            raise faults.invalid_reference("TaxAgency", agency_id)
        answer = {"TaxRateName": rate_name, "RateValue": value, "TaxAgencyId": agency_id,
                  "TaxApplicableOn": applicable}
        new_rate: dict[str, Any] = {"Name": rate_name, "Description": rate_name, "Active": True, "RateValue": value,
                                    "AgencyRef": {"value": agency_id}, "SpecialTaxType": "NONE",
                                    "DisplayType": "ReadOnly"}
        plan.append((answer, new_rate))
    with books.storage.transaction():
        answers = []
        sales: list[dict] = []
        purchase: list[dict] = []
        for order, (given, to_store) in enumerate(plan):
            if to_store is not None:
                given = {**given, "TaxRateId": books.insert(company, "TaxRate", to_store)["Id"]}
            answer = {"TaxRateName": given["TaxRateName"], "TaxRateId": given["TaxRateId"],
                      "RateValue": given["RateValue"], "TaxAgencyId": given["TaxAgencyId"],
                      "TaxApplicableOn": given["TaxApplicableOn"]}
            target = sales if answer["TaxApplicableOn"] == "Sales" else purchase
            target.append({"TaxRateRef": {"value": answer["TaxRateId"], "name": answer["TaxRateName"]},
                           "TaxTypeApplicable": "TaxOnAmount", "TaxOrder": order})
            answers.append(answer)
        code = books.insert(company, "TaxCode", {
            "Name": name, "Description": name, "Active": True, "Hidden": False, "Taxable": True,
            "TaxGroup": True, "SalesTaxRateList": {"TaxRateDetail": sales},
            "PurchaseTaxRateList": {"TaxRateDetail": purchase}})
    return {"TaxCode": name, "TaxCodeId": code["Id"], "TaxRateDetails": answers}


__all__ = ["create_tax_code", "duplicate_rate_name"]
