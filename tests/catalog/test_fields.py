"""The XSD-transcribed field names: what QBO knows, and the fault it gives for what it does not."""

from __future__ import annotations

import re

import pytest

from qbflow.catalog.entities import ENTITIES
from qbflow.catalog.fields import (
    FIELDS,
    IGNORED,
    known_count,
    known_fields,
    unknown_field_fault_detail,
    unknown_fields,
)
from qbflow.sandbox.app import Sandbox


def test_every_catalog_entity_has_its_fields():
    assert set(FIELDS) == set(ENTITIES)
    for name, names in FIELDS.items():
        assert isinstance(names, frozenset)
        assert all(isinstance(n, str) and n for n in names)
        # IntuitEntity's own elements and attributes are inherited by every entity.
        assert {"Id", "SyncToken", "MetaData", "CustomField", "AttachableRef", "domain", "status", "sparse"} <= names
        assert known_count(name) == len(names) == len(known_fields(name))


@pytest.mark.parametrize("name", ["Invoice", "Estimate", "SalesReceipt", "CreditMemo", "RefundReceipt"])
def test_sales_transactions_inherit_transaction_and_sales_fields(name):
    names = FIELDS[name]
    assert {"DocNumber", "TxnDate", "PrivateNote", "LinkedTxn", "TxnTaxDetail", "CurrencyRef"} <= names  # Transaction
    assert {"Line", "CustomerRef", "BillAddr", "ShipAddr", "TotalAmt", "BillEmail", "PrintStatus"} <= names  # Sales


def test_invoice_fields():
    for known in ("CustomerRef", "Line", "DocNumber", "TxnDate", "BillEmail", "DeliveryInfo", "LinkedTxn",
                  "AllowOnlinePayment", "AllowIPNPayment", "DueDate", "Balance", "SalesTermRef", "EmailStatus"):
        assert known in FIELDS["Invoice"], known
    assert "BadJson" not in FIELDS["Invoice"]
    assert "DisplayName" not in FIELDS["Invoice"]


def test_name_list_fields():
    # Customer, Vendor and Employee extend NameBase.
    for name in ("Customer", "Vendor", "Employee"):
        assert {"DisplayName", "GivenName", "FamilyName", "PrimaryEmailAddr", "PrimaryPhone", "Active",
                "PrintOnCheckName"} <= FIELDS[name]
    assert {"Balance", "BalanceWithJobs", "Job", "ParentRef", "Taxable", "BillAddr"} <= FIELDS["Customer"]
    assert {"Vendor1099", "TermRef", "Balance"} <= FIELDS["Vendor"]
    assert {"BillableTime", "HiredDate", "BirthDate"} <= FIELDS["Employee"]
    assert {"Name", "AccountType", "AccountSubType", "Classification", "CurrentBalance"} <= FIELDS["Account"]
    assert {"Name", "Type", "IncomeAccountRef", "UnitPrice", "QtyOnHand"} <= FIELDS["Item"]
    assert {"FileName", "FileAccessUri", "TempDownloadUri", "Size", "ContentType", "Note"} <= FIELDS["Attachable"]


def test_unknown_fields_keeps_the_body_order_and_ignores_envelope_keys():
    body = {"BadJson": True, "CustomerRef": {"value": "1"}, "Id": "3", "SyncToken": "0", "sparse": True,
            "domain": "QBO", "status": "Deleted", "MetaData": {}, "Other": 1}
    assert unknown_fields("Invoice", body) == ["BadJson", "Other"]
    assert unknown_fields("Customer", {"DisplayName": "x", "PrimaryEmailAddr": {}, "Balance": 0}) == []
    assert unknown_fields("Customer", {"DisplayName": "x", "CustomerRef": {}}) == ["CustomerRef"]
    assert unknown_fields("Term", {}) == []
    assert IGNORED == {"sparse", "domain", "status", "Id", "SyncToken", "MetaData"}
    with pytest.raises(KeyError):
        unknown_fields("NoSuchEntity", {})


def test_fault_detail_has_qbos_shape():
    detail = unknown_field_fault_detail("Invoice", "BadJson")
    match = re.fullmatch(
        r'Property Name:Unrecognized field "BadJson" \(class com\.intuit\.schema\.finance\.v3\.Invoice\), '
        r'not marked as ignorable \((\d+) known properties: ((?:"\w+", )*"\w+") \[truncated\]\]\)'
        r"\n specified is unsupported or invalid",
        detail,
    )
    assert match, detail
    assert int(match[1]) == known_count("Invoice")
    listed = re.findall(r'"(\w+)"', match[2])
    assert 40 <= len(listed) < known_count("Invoice")
    assert set(listed) <= FIELDS["Invoice"]
    # QBO stops once the description passes a thousand characters.
    assert len(f" ({match[1]} known properties: {match[2]}") > 1000


def test_fault_detail_lists_everything_when_short():
    detail = unknown_field_fault_detail("PaymentMethod", "Nope")
    assert "[truncated]" not in detail
    listed = re.findall(r'"(\w+)"', detail.split("known properties: ")[1])
    assert set(listed) == FIELDS["PaymentMethod"]
    assert detail.startswith('Property Name:Unrecognized field "Nope" '
                             "(class com.intuit.schema.finance.v3.PaymentMethod)")
    assert detail.endswith('"])\n specified is unsupported or invalid')


def test_everything_the_sandbox_seeds_is_known():
    """Once books.py refuses unknown fields, whatever a client read back must still be writable."""
    sandbox = Sandbox(rate_limit=False)
    realm = sandbox.realms[0]
    for name in ENTITIES:
        for record in sandbox.books.records(realm, name):
            assert unknown_fields(name, record) == [], (name, record["Id"])
