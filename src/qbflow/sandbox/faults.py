"""QBO's Fault bodies, as the real service sends them.

Two shapes exist on the wire: the usual `{"Fault": {"Error": [...], "type": ...}, "time": ...}` and,
for authentication failures only, a lower-case `{"fault": {"error": [...]}}` envelope with many null
siblings (recorded in minimul/qbo_api error/401.yml).
"""

from __future__ import annotations

import time as _time
from dataclasses import dataclass


@dataclass
class Fault(Exception):
    """A QBO fault: raise it anywhere in the sandbox and the API layer answers with Intuit's body."""

    code: str
    message: str
    detail: str = ""
    element: str | None = ""
    type: str = "ValidationFault"
    status: int = 400
    timeless: bool = False  # a few recorded faults carry no `time`

    def error(self) -> dict:
        err: dict = {"Message": self.message, "Detail": self.detail, "code": self.code}
        if self.element is not None:
            err["element"] = self.element
        return err

    def body(self, time: str) -> dict:
        fault = {"Fault": {"Error": [self.error()], "type": self.type}}
        return fault if self.timeless else {**fault, "time": time}


INACTIVE = ("Something you're trying to use has been made inactive. "
            "Check the fields with accounts, customers, items, vendors or employees.")


def not_found(detail: str = INACTIVE) -> Fault:
    return Fault("610", "Object Not Found", f"Object Not Found : {detail}")


def required(name: str, what: str = "") -> Fault:
    return Fault("2020", "Required param missing, need to supply the required value for the API",
                 f"Required parameter {name} is missing in the request{what}", element=name)


# How QBO names the list a missing reference was looked up in ("Names element id 583 not found").
_REF_LISTS = {"Customer": "Names", "Vendor": "Names", "Employee": "Names", "Account": "Accounts",
              "Item": "Items", "Class": "Klasses", "Department": "Departments", "Term": "Terms",
              "PaymentMethod": "PaymentMethods", "TaxCode": "TaxCodes"}


def invalid_reference(target: str, value: str) -> Fault:
    """A reference to an Id that does not exist."""
    return Fault("2500", "Invalid Reference Id",
                 f"Invalid Reference Id : {_REF_LISTS.get(target, target + 's')} element id {value} not found",
                 element="Reference Id")


def inactive_reference() -> Fault:
    """A reference to a record that exists but was made inactive."""
    return Fault("2500", "Invalid Reference Id", f"Invalid Reference Id : {INACTIVE}")


def stale() -> Fault:
    return Fault("5010", "Stale Object Error",
                 "Stale Object Error : You and Sandbox User were working on this at the same time. "
                 "Sandbox User finished before you did, so your work was not saved.")


def duplicate_name(existing_id: str) -> Fault:
    # Current QBO names the Id of the record holding the name (2020 recordings said ": null").
    return Fault("6240", "Duplicate Name Exists Error", f"The name supplied already exists. : Id={existing_id}",
                 element=None)


def invalid(detail: str, element: str = "", code: str = "2010",
            message: str = "Request has invalid or unsupported property") -> Fault:
    return Fault(code, message, detail, element=element)


def business(detail: str, element: str = "") -> Fault:
    return Fault("6000", "A business validation error has occurred while processing your request",
                 f"Business Validation Error: {detail}", element=element)


def unsupported_operation(what: str) -> Fault:
    """QBO's "Operation <what> is not supported." (code 500, HTTP 400)."""
    return Fault("500", "Unsupported Operation", f"Operation {what} is not supported.", element=None)


def unsupported(path: str, full_url: str = "") -> Fault:
    """An URL QBO has no resource for (recorded: minimul/qbo_api error/500.yml)."""
    return unsupported_operation(f"Could not find resource for relative : {path} of full path: "
                                 f"{full_url or path}")


def unparsable_body() -> Fault:
    return Fault("2010", "Request has invalid or unsupported property",
                 "Property Name:failed to parse json object; a property specified is unsupported or invalid")


def empty_body() -> Fault:
    return Fault("2310", "Error parsing object", "ObjectParserError: Request Body is Empty")


def throttled() -> Fault:
    return Fault("3001", "message=ThrottleExceeded; errorCode=003001; statusCode=429",
                 "The request limit was reached.  Try again later", element=None, type="SERVICE",
                 status=429)


def system_error() -> Fault:
    return Fault("10000", "An application error has occurred while processing your request",
                 "System Failure Error: An unexpected error occurred while accessing or saving your data. "
                 "Please wait a few minutes and try again. If the problem persists, contact customer support.",
                 element=None, type="SystemFault", status=500)


def authentication_body(detail: str) -> dict:
    """The lower-case 401 envelope Intuit sends for a missing, expired or revoked token."""
    return {
        "warnings": None, "intuitObject": None,
        "fault": {"error": [{"message": "message=AuthenticationFailed; errorCode=003200; statusCode=401",
                             "detail": detail, "code": "3200", "element": None}],
                  "type": "AUTHENTICATION"},
        "report": None, "queryResponse": None, "batchItemResponse": [], "attachableResponse": [],
        "syncErrorResponse": None, "requestId": None, "time": int(_time.time() * 1000), "status": None,
        "cdcresponse": [],
    }


def authorization_body(detail: str) -> dict:
    """403: a valid token that may not do this (Intuit's 3100, same lower-case envelope)."""
    body = authentication_body(detail)
    body["fault"] = {"error": [{"message": "message=AuthorizationFailed; errorCode=003100; statusCode=403",
                                "detail": detail, "code": "3100", "element": None}], "type": "SERVICE"}
    return body


WWW_AUTHENTICATE = 'Bearer realm="Intuit", error="invalid_token"'
