"""The client reads answers under the key the catalog names: CreditCardPayment answers as CreditCardPaymentTxn."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from qbflow.qbo import QBOClient


async def test_credit_card_payment_through_the_client(client: QBOClient) -> None:
    created = await client.create("CreditCardPayment", {"BankAccountRef": {"value": "1"},
                                                        "CreditCardAccountRef": {"value": "8"}, "Amount": 75})
    assert created["Amount"] == 75.0
    assert (await client.get("CreditCardPayment", created["Id"]))["Id"] == created["Id"]
    assert created["Id"] in [r["Id"] for r in await client.query("select * from CreditCardPayment")]
    changed = await client.cdc(["CreditCardPayment", "Transfer"], datetime.now(UTC) - timedelta(hours=1))
    assert [r["Id"] for r in changed["CreditCardPayment"]] == [created["Id"]] and changed["Transfer"] == []
