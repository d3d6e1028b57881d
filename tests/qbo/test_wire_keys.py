"""The client reads answers under the key the catalog names: CreditCardPayment answers as CreditCardPaymentTxn."""

from __future__ import annotations

from datetime import timedelta

from qbflow.qbo import QBOClient
from qbflow.sandbox.app import Sandbox

CHECKING, MASTERCARD = "35", "41"  # the sample company's bank and credit card accounts


async def test_credit_card_payment_through_the_client(client: QBOClient, sandbox: Sandbox) -> None:
    # The sample company's own transfer was made with it: changes since a minute later leave it out.
    sandbox.clock.advance(120)
    since = sandbox.clock.now() - timedelta(minutes=1)
    created = await client.create("CreditCardPayment", {"BankAccountRef": {"value": CHECKING},
                                                        "CreditCardAccountRef": {"value": MASTERCARD}, "Amount": 75})
    assert created["Amount"] == 75.0
    assert (await client.get("CreditCardPayment", created["Id"]))["Id"] == created["Id"]
    assert created["Id"] in [r["Id"] for r in await client.query("select * from CreditCardPayment")]
    assert (await client.cdc(["Transfer"], since - timedelta(hours=1)))["Transfer"]  # the sample's transfer
    changed = await client.cdc(["CreditCardPayment", "Transfer"], since)
    assert [r["Id"] for r in changed["CreditCardPayment"]] == [created["Id"]] and changed["Transfer"] == []
