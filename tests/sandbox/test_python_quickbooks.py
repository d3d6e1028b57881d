"""The real, unmodified python-quickbooks library (ej2/python-quickbooks) against `qbflow sandbox` on 127.0.0.1.

Nobody here wrote python-quickbooks: it was written for Intuit's QuickBooks Online, and its own integration
tests (tests/integration in ej2/python-quickbooks) run against Intuit's sandbox, so what it sends is what QBO
accepts and what it expects back is what QBO answers. It is pointed at the sandbox only the way any user
could: an intuit-oauth AuthClient whose `environment` is the sandbox's discovery URL, then `QuickBooks(...)`
with its API base URL attribute set on the instance. The library talks through requests-oauthlib, which
refuses plain http unless OAUTHLIB_INSECURE_TRANSPORT is set (oauthlib's documented switch for local servers).

Tests marked xfail(strict=True) are sandbox bugs: they are written as they pass against QBO.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from intuitlib.client import AuthClient
from quickbooks import QuickBooks
from quickbooks.batch import batch_create, batch_delete
from quickbooks.cdc import change_data_capture
from quickbooks.exceptions import (
    ObjectNotFoundException,
    QuickbooksException,
    ValidationException,
)
from quickbooks.objects.account import Account
from quickbooks.objects.attachable import Attachable
from quickbooks.objects.base import Address, AttachableRef, CustomerMemo, EmailAddress, Ref
from quickbooks.objects.bill import Bill
from quickbooks.objects.company_info import CompanyInfo
from quickbooks.objects.customer import Customer
from quickbooks.objects.detailline import (
    AccountBasedExpenseLine,
    AccountBasedExpenseLineDetail,
    SalesItemLine,
    SalesItemLineDetail,
)
from quickbooks.objects.invoice import Invoice
from quickbooks.objects.item import Item
from quickbooks.objects.journalentry import JournalEntry, JournalEntryLine, JournalEntryLineDetail
from quickbooks.objects.payment import Payment, PaymentLine
from quickbooks.objects.preferences import Preferences
from quickbooks.objects.purchase import Purchase
from quickbooks.objects.salesreceipt import SalesReceipt
from quickbooks.objects.vendor import Vendor

from tests.sandbox.test_server import CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, connect
from tests.support.sandbox import running_sandbox

# Intuit's sandbox companies, and the sandbox's, keep their books in Pacific time.
PACIFIC = ZoneInfo("America/Los_Angeles")


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, str, AuthClient]]:
    """One sandbox for the module, and a finished OAuth flow: (base URL, realm, intuit-oauth client). Its company
    is Intuit's sample company, as a new sandbox company of Intuit's is (Craig's Design and Landscaping Services)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
        with running_sandbox("--auto-approve", "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET,
                             "--no-rate-limit", "--books", "sample") as (base, _process):
            auth, realm = connect(base)
            yield base, realm, auth


def point_at(client: QuickBooks, base: str) -> QuickBooks:
    # The environment is a discovery URL, not "sandbox", so the library picks `api_url_v3`; both are set to be
    # plain about it. Every URL the library builds for the Accounting API starts from `api_url`.
    client.api_url_v3 = client.sandbox_api_url_v3 = f"{base}/v3"
    assert client.api_url == f"{base}/v3"
    return client


@pytest.fixture
def qb(served) -> QuickBooks:
    base, realm, auth = served
    # QuickBooks() makes a new instance per call: its private `__use_global` singleton switch is off in 0.9.12.
    client = QuickBooks(auth_client=auth, refresh_token=auth.refresh_token, company_id=realm, minorversion=75)
    return point_at(client, base)


def today() -> date:
    return datetime.now(PACIFIC).date()


def unique(prefix: str) -> str:
    return f"{prefix} {datetime.now().strftime('%H%M%S%f')}"


def sales_line(item: Item, qty: float, price: float, description: str | None = None) -> SalesItemLine:
    line = SalesItemLine()
    line.Amount = round(qty * price, 2)
    line.Description = description
    line.SalesItemLineDetail = SalesItemLineDetail()
    line.SalesItemLineDetail.ItemRef = item.to_ref()
    line.SalesItemLineDetail.Qty = qty
    line.SalesItemLineDetail.UnitPrice = price
    return line


def expense_line(account: Account, amount: float) -> AccountBasedExpenseLine:
    line = AccountBasedExpenseLine()
    line.Amount = amount
    line.AccountBasedExpenseLineDetail = AccountBasedExpenseLineDetail()
    line.AccountBasedExpenseLineDetail.AccountRef = account.to_ref()
    return line


def journal_line(posting: str, account: Account, amount: float) -> JournalEntryLine:
    line = JournalEntryLine()
    line.Amount = amount
    line.Description = f"{posting} {account.Name}"
    line.JournalEntryLineDetail = JournalEntryLineDetail()
    line.JournalEntryLineDetail.PostingType = posting
    line.JournalEntryLineDetail.AccountRef = account.to_ref()
    return line


def item_named(qb: QuickBooks, name: str) -> Item:
    (item,) = Item.filter(Name=name, qb=qb)
    return item


def account_named(qb: QuickBooks, name: str) -> Account:
    (account,) = Account.filter(Name=name, qb=qb)
    return account


def customer_named(qb: QuickBooks, name: str) -> Customer:
    (customer,) = Customer.filter(DisplayName=name, qb=qb)
    return customer


def new_invoice(qb: QuickBooks, customer: Customer, *lines: SalesItemLine) -> Invoice:
    invoice = Invoice()
    invoice.CustomerRef = customer.to_ref()
    invoice.Line.extend(lines)
    return invoice.save(qb=qb)


# --- connecting, reads ------------------------------------------------------------------------------------


def test_readme_connection_a_fresh_auth_client_and_a_stored_refresh_token(served):
    """The README's way: an AuthClient without an access token; QuickBooks() refreshes it through the sandbox."""
    base, realm, auth = served
    fresh = AuthClient(CLIENT_ID, CLIENT_SECRET, REDIRECT_URI,
                       environment=f"{base}/.well-known/openid_sandbox_configuration")
    assert fresh.access_token is None
    client = point_at(QuickBooks(auth_client=fresh, refresh_token=auth.refresh_token, company_id=realm,
                                 minorversion=75), base)
    assert fresh.access_token and client.refresh_token == fresh.refresh_token
    assert CompanyInfo.get(realm, qb=client).CompanyName == "Sandbox Company_US_1"


def test_company_info_preferences_items_and_accounts(qb: QuickBooks, served):
    _base, realm, _auth = served
    info = CompanyInfo.get(realm, qb=qb)
    assert info.CompanyName == "Sandbox Company_US_1"
    assert info.Country == "US"
    assert info.CompanyAddr.City == "San Pablo"
    prefs = Preferences.get(qb=qb)
    assert prefs.CurrencyPrefs.HomeCurrency.value == "USD"

    design = item_named(qb, "Design")
    again = Item.get(design.Id, qb=qb)
    assert again.Name == "Design" and again.Type == "Service" and again.UnitPrice == 75
    assert again.IncomeAccountRef.name == "Design income"

    banks = Account.filter(AccountType="Bank", qb=qb)
    assert sorted(a.Name for a in banks) == ["Checking", "Savings"]
    income = Account.where("AccountType = 'Income'", order_by="Name", qb=qb)
    # By Name, a sub-account's own ("Landscaping Services:Job Materials:Fountains and Garden Lighting").
    assert [a.Name for a in income][:2] == ["Design income", "Fountains and Garden Lighting"]
    assert Account.count("AccountType = 'Bank'", qb=qb) == 2


def test_item_all_selects_the_sku_column(qb: QuickBooks):
    # Item.all sends `SELECT *, Sku FROM Item MAXRESULTS 50` (python-quickbooks 0.9.12), which QBO accepts:
    # the library's own integration test test_sku_in_all runs it against Intuit's sandbox.
    items = Item.all(max_results=50, qb=qb)
    assert "Rock Fountain" in {i.Name for i in items}


# --- customers --------------------------------------------------------------------------------------------


def test_customer_create_read_query_update_and_deactivate(qb: QuickBooks):
    name = unique("Zephyr Orchards")
    customer = Customer()
    customer.DisplayName = name
    customer.CompanyName = name
    customer.GivenName = "Ada"
    customer.FamilyName = "Quill"
    customer.BillAddr = Address()
    customer.BillAddr.Line1 = "12 Orchard Ln"
    customer.BillAddr.City = "Sebastopol"
    customer.BillAddr.CountrySubDivisionCode = "CA"
    customer.BillAddr.PostalCode = "95472"
    customer.PrimaryEmailAddr = EmailAddress()
    customer.PrimaryEmailAddr.Address = "ada@zephyr.example"
    created = customer.save(qb=qb)
    assert created.Id and customer.Id == created.Id
    assert created.SyncToken == "0"
    assert created.DisplayName == name and created.Active is True
    assert created.Balance == 0

    fetched = Customer.get(created.Id, qb=qb)
    assert fetched.BillAddr.City == "Sebastopol"
    assert fetched.PrimaryEmailAddr.Address == "ada@zephyr.example"

    assert [c.Id for c in Customer.filter(DisplayName=name, qb=qb)] == [created.Id]
    assert [c.Id for c in Customer.filter(Active=True, FamilyName="Quill", qb=qb)] == [created.Id]
    assert [c.Id for c in Customer.where(f"DisplayName LIKE '{name[:12]}%'", qb=qb)] == [created.Id]
    chosen = Customer.choose([name, "Mark Cho"], field="DisplayName", qb=qb)
    assert sorted(c.DisplayName for c in chosen) == sorted([name, "Mark Cho"])
    assert len(Customer.all(max_results=3, qb=qb)) == 3
    by_family = [(c.FamilyName, c.GivenName) for c in Customer.all(order_by="FamilyName, GivenName", qb=qb)]
    # Code point order, as QBO's (recorded: "PG&E" before "Pam Seitz"): the sample company's recorded family
    # name "and Vegi" (Rondonuwu Fruit and Vegi) comes after the capitalised ones.
    assert by_family == sorted(by_family)
    assert [f for f, _ in by_family].index("and Vegi") > [f for f, _ in by_family].index("Whelan")
    active = Customer.count("Active = true", qb=qb)
    assert Customer.count(qb=qb) == active and active >= 30  # the sample company's 29 customers and this one

    fetched.GivenName = "Adaline"
    updated = fetched.save(qb=qb)
    assert updated.SyncToken == "1" and updated.GivenName == "Adaline"
    assert Customer.get(created.Id, qb=qb).GivenName == "Adaline"

    # Deactivating is an update with Active = false; the customer leaves the default lists.
    updated.Active = False
    inactive = updated.save(qb=qb)
    assert inactive.Active is False and inactive.SyncToken == "2"
    assert Customer.filter(DisplayName=name, qb=qb) == []
    assert Customer.count(qb=qb) == active - 1
    assert created.Id in {c.Id for c in Customer.filter(Active=False, qb=qb)}


def test_stale_sync_token_raises_5010(qb: QuickBooks):
    customer = Customer()
    customer.DisplayName = unique("Stale Token Farms")
    first = customer.save(qb=qb)
    copy_a, copy_b = Customer.get(first.Id, qb=qb), Customer.get(first.Id, qb=qb)
    copy_a.Notes = "first writer wins"
    copy_a.save(qb=qb)
    copy_b.Notes = "second writer is stale"
    with pytest.raises(QuickbooksException) as error:
        copy_b.save(qb=qb)
    assert error.value.error_code == 5010
    assert "Stale Object Error" in error.value.message + error.value.detail
    assert Customer.get(first.Id, qb=qb).Notes == "first writer wins"


def test_duplicate_display_name_raises_6240(qb: QuickBooks):
    name = unique("Twin Peaks Nursery")
    first = Customer()
    first.DisplayName = name
    kept = first.save(qb=qb)
    second = Customer()
    second.DisplayName = name
    with pytest.raises(QuickbooksException) as error:
        second.save(qb=qb)
    assert error.value.error_code == 6240
    assert "already exists" in error.value.message + error.value.detail
    assert f"Id={kept.Id}" in error.value.detail


def test_query_on_a_misspelt_entity_raises_4001(qb: QuickBooks):
    with pytest.raises(ValidationException) as error:
        Customer.query("SELECT * FROM Custmer", qb=qb)
    assert error.value.error_code == 4001
    assert "Invalid query" in error.value.message


# --- transactions as the library builds them by default ---------------------------------------------------


def _default_invoice(qb: QuickBooks) -> Invoice:
    invoice = Invoice()
    invoice.CustomerRef = customer_named(qb, "Amy's Bird Sanctuary").to_ref()
    invoice.Line.append(sales_line(item_named(qb, "Design"), 2, 75))
    return invoice


def _default_bill(qb: QuickBooks) -> Bill:
    bill = Bill()
    bill.VendorRef = Vendor.filter(DisplayName="Hicks Hardware", qb=qb)[0].to_ref()
    bill.Line.append(expense_line(account_named(qb, "Supplies"), 150))
    return bill


def _default_journal_entry(qb: QuickBooks) -> JournalEntry:
    entry = JournalEntry()
    entry.Line.extend([journal_line("Debit", account_named(qb, "Savings"), 150),
                       journal_line("Credit", account_named(qb, "Checking"), 150)])
    return entry


def _default_sales_receipt(qb: QuickBooks) -> SalesReceipt:
    receipt = SalesReceipt()  # as the library's tests/integration/test_salesreceipt.py builds it
    receipt.TotalAmt = 150
    receipt.CustomerRef = customer_named(qb, "Pye's Cakes").to_ref()
    receipt.Line = [sales_line(item_named(qb, "Design"), 2, 75)]
    return receipt


def _default_purchase(qb: QuickBooks) -> Purchase:
    purchase = Purchase()  # as the library's tests/integration/test_purchase.py builds it
    purchase.PaymentType = "CreditCard"
    purchase.AccountRef = account_named(qb, "Mastercard").to_ref()
    purchase.TotalAmt = 150
    purchase.Line.append(expense_line(account_named(qb, "Travel"), 150))
    return purchase


@pytest.mark.parametrize("build", [_default_invoice, _default_bill, _default_journal_entry, _default_sales_receipt,
                                   _default_purchase], ids=lambda f: f.__name__.removeprefix("_default_"))
def test_transactions_with_the_library_default_dates(qb: QuickBooks, build: Callable[[QuickBooks], object]):
    # Invoice(), Bill(), JournalEntry(), SalesReceipt(), Purchase() start with TxnDate = "" (Invoice also
    # DueDate and ShipDate) and the library sends them as they are; its integration tests create these against
    # Intuit's sandbox without any date, and QBO takes "" as absent: the transaction is dated today.
    created = build(qb).save(qb=qb)
    assert created.Id
    assert created.TxnDate == today().isoformat()
    assert created.TotalAmt == 150
    if isinstance(created, Invoice):
        assert created.Balance == 150
        # Amy's Bird Sanctuary has no term of its own: the company's default, Net 30, applies.
        assert created.DueDate == (today() + timedelta(days=30)).isoformat()


# --- invoices, payments -----------------------------------------------------------------------------------


def test_invoice_create_get_update_send_pdf(qb: QuickBooks, served):
    base, realm, _auth = served
    customer = customer_named(qb, "Amy's Bird Sanctuary")  # the library escapes the quote in its query
    design, soil = item_named(qb, "Design"), item_named(qb, "Soil")
    invoice = Invoice()
    invoice.CustomerRef = customer.to_ref()
    invoice.Line.append(sales_line(design, 4, 75, "Patio layout"))
    invoice.Line.append(sales_line(soil, 12, 10))
    invoice.CustomerMemo = CustomerMemo()
    invoice.CustomerMemo.value = "Thanks for the coffee"
    created = invoice.save(qb=qb, request_id=unique("create-invoice"))
    assert created.TotalAmt == 420 and created.Balance == 420
    assert created.DocNumber and created.SyncToken == "0"
    assert created.CustomerRef.name == "Amy's Bird Sanctuary"
    assert [line.Amount for line in created.Line] == [300, 120, 420]
    assert created.Line[-1].DetailType == "SubTotalLineDetail"
    assert created.BillAddr.City == "Bayshore"  # the customer's billing address

    fetched = Invoice.get(created.Id, qb=qb)
    assert fetched.TxnDate == today().isoformat()
    assert fetched.DueDate == (today() + timedelta(days=30)).isoformat()  # the company's default Net 30
    assert fetched.Line[0].Description == "Patio layout"
    assert fetched.Line[0].SalesItemLineDetail.ItemRef.name == "Design"
    assert fetched.CustomerMemo.value == "Thanks for the coffee"
    assert [i.Id for i in Invoice.filter(DocNumber=created.DocNumber, qb=qb)] == [created.Id]
    assert created.Id in {i.Id for i in Invoice.where(f"CustomerRef = '{customer.Id}'", qb=qb)}
    newest = Invoice.filter(CustomerRef=customer.Id, order_by="TxnDate DESC", qb=qb)
    assert newest[0].TxnDate == today().isoformat()

    # A full update as the library sends it: the object read back, changed, saved.
    fetched.Line.insert(2, sales_line(item_named(qb, "Trimming"), 2, 35))
    fetched.PrivateNote = "Added trimming"
    updated = fetched.save(qb=qb)
    assert updated.SyncToken == "1"
    assert updated.TotalAmt == 490 and updated.Balance == 490
    assert updated.PrivateNote == "Added trimming"
    assert [line.Amount for line in updated.Line] == [300, 120, 70, 490]

    sent = updated.send(qb=qb, send_to="owner@birds.example")
    assert sent["Invoice"]["EmailStatus"] == "EmailSent"
    assert sent["Invoice"]["BillEmail"]["Address"] == "owner@birds.example"
    assert sent["Invoice"]["DeliveryInfo"]["DeliveryType"] == "Email"
    assert Invoice.get(created.Id, qb=qb).email_sent is True
    outbox = httpx.get(f"{base}/_sandbox/companies/{realm}/outbox").json()["emails"]
    assert any(mail["to"] == "owner@birds.example" and mail["id"] == created.Id for mail in outbox)

    pdf = updated.download_pdf(qb=qb)
    assert isinstance(pdf, bytes) and pdf.startswith(b"%PDF")


def test_sharable_invoice_link(qb: QuickBooks):
    # The library's README recipe and its integration test, as they run against Intuit's sandbox.
    invoice = Invoice()
    invoice.CustomerRef = customer_named(qb, "Bill's Windsurf Shop").to_ref()
    invoice.AllowOnlineCreditCardPayment = True
    invoice.AllowOnlineACHPayment = True
    invoice.BillEmail = EmailAddress()
    invoice.BillEmail.Address = "Surf@Intuit.com"
    invoice.Line.append(sales_line(item_named(qb, "Design"), 1, 75))
    invoice.save(qb=qb)
    fetched = Invoice.get(invoice.Id, qb=qb, params={"include": "invoiceLink"})
    assert fetched.InvoiceLink.startswith("https://")


def test_request_id_makes_a_create_idempotent(qb: QuickBooks):
    # The library's tests/integration/test_invoice.py::test_create_idempotence, with the sandbox.
    customer = customer_named(qb, "Kate Whelan")
    request_id = unique("invoice-once")
    lines = [sales_line(item_named(qb, "Pest Control"), 2, 35)]
    first, second = Invoice(), Invoice()
    for invoice in (first, second):
        invoice.CustomerRef = customer.to_ref()
        invoice.Line = list(lines)
    one = first.save(qb=qb, request_id=request_id)
    two = second.save(qb=qb, request_id=request_id)
    assert one.Id == two.Id and one.TotalAmt == two.TotalAmt == 70
    assert len(Invoice.filter(DocNumber=one.DocNumber, qb=qb)) == 1


def test_payment_applied_to_an_invoice_lowers_its_balance(qb: QuickBooks):
    customer = customer_named(qb, "Mark Cho")
    invoice = new_invoice(qb, customer, sales_line(item_named(qb, "Gardening"), 5, 40))
    assert invoice.Balance == 200

    payment = Payment()
    payment.CustomerRef = customer.to_ref()
    payment.TotalAmt = 150
    line = PaymentLine()
    line.Amount = 120
    line.LinkedTxn.append(invoice.to_linked_txn())
    payment.Line.append(line)
    paid = payment.save(qb=qb)
    assert paid.TotalAmt == 150 and paid.UnappliedAmt == 30
    assert paid.Line[0].LinkedTxn[0].TxnId == invoice.Id

    after = Invoice.get(invoice.Id, qb=qb)
    assert after.Balance == 80 and after.TotalAmt == 200
    assert after.SyncToken == "1"
    assert [(t.TxnId, t.TxnType) for t in after.LinkedTxn] == [(paid.Id, "Payment")]

    # Voiding the payment gives the invoice its whole balance back.
    paid.void(qb=qb)
    voided = Payment.get(paid.Id, qb=qb)
    assert voided.TotalAmt == 0 and "Voided" in voided.PrivateNote
    assert Invoice.get(invoice.Id, qb=qb).Balance == 200


def test_invoice_void_and_delete(qb: QuickBooks):
    customer = customer_named(qb, "John Melton")
    gardening = item_named(qb, "Gardening")
    to_void = new_invoice(qb, customer, sales_line(gardening, 3, 40))
    # The README's way: an Invoice() holding only the Id (its SyncToken is the default 0).
    by_id = Invoice()
    by_id.Id = to_void.Id
    by_id.void(qb=qb)
    voided = Invoice.get(to_void.Id, qb=qb)
    assert voided.TotalAmt == 0 and voided.Balance == 0
    assert "Voided" in voided.PrivateNote
    assert voided.SyncToken == "1"

    to_delete = new_invoice(qb, customer, sales_line(gardening, 1, 40))
    answer = to_delete.delete(qb=qb)
    assert answer["Invoice"]["status"] == "Deleted" and answer["Invoice"]["Id"] == to_delete.Id
    assert Invoice.filter(Id=to_delete.Id, qb=qb) == []
    with pytest.raises(ObjectNotFoundException) as error:
        Invoice.get(to_delete.Id, qb=qb)
    assert error.value.error_code == 610
    assert "Object Not Found" in error.value.message


# --- purchases, journal entries, vendors ------------------------------------------------------------------


def test_vendor_and_bill_create_read_delete(qb: QuickBooks):
    name = unique("Granite Quarry Supply")
    vendor = Vendor()
    vendor.DisplayName = name
    vendor.CompanyName = name
    vendor.PrimaryEmailAddr = EmailAddress()
    vendor.PrimaryEmailAddr.Address = "ap@granitequarry.example"
    created_vendor = vendor.save(qb=qb)
    assert Vendor.get(created_vendor.Id, qb=qb).PrimaryEmailAddr.Address == "ap@granitequarry.example"
    assert [v.Id for v in Vendor.filter(DisplayName=name, qb=qb)] == [created_vendor.Id]

    bill = Bill()
    bill.TxnDate = (today() - timedelta(days=3)).isoformat()  # a bill dated as the paper one is
    bill.VendorRef = created_vendor.to_ref()
    bill.Line.append(expense_line(account_named(qb, "Supplies"), 312.5))
    bill.VendorAddr = Address()
    bill.VendorAddr.Line1 = "1 Quarry Rd"
    bill.VendorAddr.City = "Rocklin"
    created = bill.save(qb=qb)
    assert created.TotalAmt == 312.5 and created.Balance == 312.5

    fetched = Bill.get(created.Id, qb=qb)
    assert fetched.VendorRef.value == created_vendor.Id
    assert fetched.Line[0].AccountBasedExpenseLineDetail.AccountRef.name == "Supplies"
    assert fetched.VendorAddr.City == "Rocklin"
    assert fetched.TxnDate == bill.TxnDate

    fetched.delete(qb=qb)
    assert Bill.filter(Id=created.Id, qb=qb) == []
    with pytest.raises(ObjectNotFoundException):
        Bill.get(created.Id, qb=qb)


def test_balanced_journal_entry(qb: QuickBooks):
    entry = JournalEntry()
    entry.Line.extend([journal_line("Debit", account_named(qb, "Savings"), 500),
                       journal_line("Credit", account_named(qb, "Checking"), 500)])
    entry.PrivateNote = "Move to savings"
    created = entry.save(qb=qb)
    assert created.TotalAmt == 500
    fetched = JournalEntry.get(created.Id, qb=qb)
    assert [(line.JournalEntryLineDetail.PostingType, line.Amount) for line in fetched.Line] == [
        ("Debit", 500), ("Credit", 500)]
    assert fetched.Line[0].JournalEntryLineDetail.AccountRef.name == "Savings"
    assert fetched.PrivateNote == "Move to savings"


# --- attachments ------------------------------------------------------------------------------------------


def _invoice_ref(invoice: Invoice) -> AttachableRef:
    ref = AttachableRef()
    ref.EntityRef = Ref()
    ref.EntityRef.type = "Invoice"
    ref.EntityRef.value = invoice.Id
    ref.IncludeOnSend = True
    return ref


def test_attachable_upload_linked_to_an_invoice_read_and_download(qb: QuickBooks, tmp_path: Path):
    invoice = new_invoice(qb, customer_named(qb, "Pye's Cakes"), sales_line(item_named(qb, "Soil"), 3, 10))
    path = tmp_path / "signed-quote.txt"
    content = b"Signed quote: 3 bags of soil\n"
    path.write_bytes(content)

    attachable = Attachable()
    attachable.AttachableRef.append(_invoice_ref(invoice))
    attachable.FileName = path.name
    attachable.ContentType = "text/plain"
    attachable.Note = "Customer signature"
    attachable._FilePath = str(path)
    uploaded = attachable.save(qb=qb)
    assert uploaded.Id and len(uploaded.Id) == 19
    assert uploaded.FileName == "signed-quote.txt" and uploaded.Size == len(content)

    fetched = Attachable.get(uploaded.Id, qb=qb)
    assert fetched.Note == "Customer signature" and fetched.ContentType == "text/plain"
    assert fetched.AttachableRef[0].EntityRef.value == invoice.Id
    assert fetched.AttachableRef[0].EntityRef.type == "Invoice"
    assert fetched.TempDownloadUri
    assert httpx.get(fetched.TempDownloadUri, follow_redirects=True).content == content

    from_bytes = Attachable()
    from_bytes.FileName = "photo-note.txt"
    from_bytes.ContentType = "text/plain"
    from_bytes._FileBytes = b"bytes straight from memory"
    from_bytes.AttachableRef.append(_invoice_ref(invoice))
    second = from_bytes.save(qb=qb)
    assert second.Size == len(b"bytes straight from memory")
    assert httpx.get(Attachable.get(second.Id, qb=qb).TempDownloadUri).content == b"bytes straight from memory"

    note = Attachable()
    note.Note = "Call before delivery"
    note.AttachableRef.append(_invoice_ref(invoice))
    saved_note = note.save(qb=qb)
    assert Attachable.get(saved_note.Id, qb=qb).Note == "Call before delivery"
    assert second.Id in {a.Id for a in Attachable.filter(FileName="photo-note.txt", qb=qb)}


def test_attachables_of_an_invoice_by_query(qb: QuickBooks):
    invoice = new_invoice(qb, customer_named(qb, "Dukes Basketball Camp"), sales_line(item_named(qb, "Soil"), 1, 10))
    note = Attachable()
    note.Note = "Gate code 4411"
    note.AttachableRef.append(_invoice_ref(invoice))
    saved = note.save(qb=qb)
    linked = Attachable.where(f"AttachableRef.EntityRef.Type = 'invoice' AND AttachableRef.EntityRef.value = "
                              f"'{invoice.Id}'", qb=qb)
    assert [a.Id for a in linked] == [saved.Id]


# --- change data capture, batch ---------------------------------------------------------------------------


def test_change_data_capture(qb: QuickBooks):
    # The library formats a datetime without an offset; QBO reads it in the company's time zone.
    since = datetime.now(PACIFIC).replace(tzinfo=None) - timedelta(seconds=2)
    customer = Customer()
    customer.DisplayName = unique("CDC Landscapes")
    created_customer = customer.save(qb=qb)
    invoice = new_invoice(qb, created_customer, sales_line(item_named(qb, "Hours"), 2, 55))

    answer = change_data_capture([Invoice, Customer], since, qb=qb)
    assert invoice.Id in {i.Id for i in answer.Invoice}
    assert created_customer.Id in {c.Id for c in answer.Customer}
    changed = next(i for i in answer.Invoice if i.Id == invoice.Id)
    assert isinstance(changed, Invoice) and changed.TotalAmt == 110
    assert Invoice.get(invoice.Id, qb=qb).MetaData.CreateTime == changed.MetaData.CreateTime


def test_batch_create_and_delete(qb: QuickBooks):
    names = [unique("Batch Bloom"), unique("Batch Briar")]
    customers = []
    for name in names:
        customer = Customer()
        customer.DisplayName = name
        customers.append(customer)
    result = batch_create(customers, qb=qb)
    assert result.faults == []
    assert sorted(c.DisplayName for c in result.successes) == sorted(names)
    assert all(c.Id and c.SyncToken == "0" for c in result.successes)

    dup = Customer()
    dup.DisplayName = names[0]
    clash = batch_create([dup], qb=qb)
    assert clash.successes == []
    (fault,) = clash.faults
    assert fault.Error[0].code == "6240"
    assert fault.original_object is dup

    gardening = item_named(qb, "Gardening")
    invoices = [new_invoice(qb, result.successes[0], sales_line(gardening, n, 40)) for n in (1, 2)]
    deleted = batch_delete(invoices, qb=qb)
    assert deleted.faults == [] and len(deleted.successes) == 2
    for invoice in invoices:
        with pytest.raises(ObjectNotFoundException) as error:
            Invoice.get(invoice.Id, qb=qb)
        assert error.value.error_code == 610


# --- webhooks ---------------------------------------------------------------------------------------------


def test_webhook_signature_checks_with_the_library(tmp_path: Path):
    """A change made through the library reaches a receiver signed so that QuickBooks.validate_webhook_signature
    (the library's own check, written for Intuit's `intuit-signature`) accepts it."""
    received: list[tuple[str, str]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((body.decode("utf-8"), self.headers["intuit-signature"]))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    verifier = "verifier-for-python-quickbooks"
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    hook_url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
            with running_sandbox("--auto-approve", "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET,
                                 "--no-rate-limit", "--books", "sample", "--webhook-url", hook_url,
                                 "--webhook-verifier", verifier) as (
                    base, _process):
                auth, realm = connect(base)
                client = point_at(QuickBooks(auth_client=auth, refresh_token=auth.refresh_token, company_id=realm,
                                             minorversion=75, verifier_token=verifier), base)
                customer = Customer()
                customer.DisplayName = unique("Webhook Willows")
                created = customer.save(qb=client)
                deadline = time.monotonic() + 15
                while not received and time.monotonic() < deadline:
                    time.sleep(0.1)
    finally:
        server.shutdown()
        server.server_close()
    assert received, "no webhook delivered within 15 s"
    body, signature = received[0]
    assert client.validate_webhook_signature(body, signature) is True
    assert client.validate_webhook_signature(body + " ", signature) is False
    (notification,) = json.loads(body)["eventNotifications"]
    assert notification["realmId"] == realm
    entities = notification["dataChangeEvent"]["entities"]
    assert ("Customer", created.Id, "Create") in {(e["name"], e["id"], e["operation"]) for e in entities}


def test_reports_through_the_library(qb: QuickBooks):
    """python-quickbooks' get_report reads the sandbox's reports as it reads Intuit's."""
    pnl = qb.get_report("ProfitAndLoss", {"date_macro": "This Fiscal Year-to-date", "summarize_column_by": "Month"})
    assert pnl["Header"]["ReportName"] == "ProfitAndLoss" and pnl["Header"]["SummarizeColumnsBy"] == "Month"
    assert [row.get("group") for row in pnl["Rows"]["Row"]][-1] == "NetIncome"
    sheet = qb.get_report("BalanceSheet")
    totals = {row["group"]: row["Summary"]["ColData"][-1]["value"] for row in sheet["Rows"]["Row"]}
    assert totals["TotalAssets"] == totals["TotalLiabilitiesAndEquity"]
