"""The unmodified python-quickbooks library with the rest of a US company's entities, against `qbflow sandbox`.

The flows follow what the library's own integration tests do against Intuit's sandbox (tests/integration in
ej2/python-quickbooks): what it sends is what QBO accepts and the keys it reads back are QBO's, e.g. a
CreditCardPayment answer under `CreditCardPaymentTxn` and a TaxService answer without an envelope.
"""

from __future__ import annotations

from datetime import datetime

from quickbooks import QuickBooks
from quickbooks.objects.account import Account
from quickbooks.objects.budget import Budget
from quickbooks.objects.companycurrency import CompanyCurrency
from quickbooks.objects.creditcardpayment_entity import CreditCardPayment
from quickbooks.objects.customer import Customer
from quickbooks.objects.detailline import SalesItemLine, SalesItemLineDetail
from quickbooks.objects.employee import Employee
from quickbooks.objects.exchangerate import ExchangeRate
from quickbooks.objects.item import Item
from quickbooks.objects.preferences import Preferences
from quickbooks.objects.recurringtransaction import (
    RecurringInfo,
    RecurringInvoice,
    RecurringTransaction,
    ScheduleInfo,
)
from quickbooks.objects.taxagency import TaxAgency
from quickbooks.objects.taxcode import TaxCode
from quickbooks.objects.taxservice import TaxRateDetails, TaxService
from quickbooks.objects.timeactivity import TimeActivity
from quickbooks.objects.transfer import Transfer

from tests.sandbox.test_python_quickbooks import qb, served, unique  # noqa: F401  (fixtures)


def account_named(client: QuickBooks, name: str) -> Account:
    (account,) = Account.filter(Name=name, qb=client)
    return account


def test_transfer_and_credit_card_payment(qb: QuickBooks):  # noqa: F811
    checking, savings, card = (account_named(qb, n) for n in ("Checking", "Savings", "Mastercard"))
    transfer = Transfer()
    transfer.Amount = 100
    transfer.FromAccountRef = checking.to_ref()
    transfer.ToAccountRef = savings.to_ref()
    transfer.save(qb=qb)
    read = Transfer.get(transfer.Id, qb=qb)
    assert (read.Amount, read.FromAccountRef.value, read.ToAccountRef.value) == (100, checking.Id, savings.Id)
    read.Amount += 1
    read.save(qb=qb)
    assert Transfer.get(transfer.Id, qb=qb).Amount == 101

    payment = CreditCardPayment()
    payment.Amount = 100
    payment.BankAccountRef = checking.to_ref()
    payment.CreditCardAccountRef = card.to_ref()
    payment.save(qb=qb)
    fetched = CreditCardPayment.get(payment.Id, qb=qb)
    assert (fetched.Amount, fetched.CreditCardAccountRef.value) == (100, card.Id)
    latest = CreditCardPayment.all(max_results=1, qb=qb)[0]
    latest.Amount += 1
    latest.save(qb=qb)
    assert CreditCardPayment.get(latest.Id, qb=qb).Amount == latest.Amount
    CreditCardPayment.get(payment.Id, qb=qb).delete(qb=qb)


def test_time_activity_create_and_update(qb: QuickBooks):  # noqa: F811
    employee = Employee.all(max_results=1, qb=qb)[0]
    activity = TimeActivity()
    activity.NameOf = "Employee"
    activity.EmployeeRef = employee.to_ref()
    activity.Description = "Spring cleanup"
    activity.StartTime = "2026-07-22T10:00:00-07:00"
    activity.EndTime = "2026-07-22T11:30:00-07:00"
    activity.CostRate = 50.0
    activity.save(qb=qb)
    read = TimeActivity.get(activity.Id, qb=qb)
    assert (read.NameOf, read.EmployeeRef.value, read.CostRate, read.Hours, read.Minutes) == \
        ("Employee", employee.Id, 50.0, 1, 30)
    read.Description = "Spring cleanup, second pass"
    read.CostRate = 75.0
    read.save(qb=qb)
    assert TimeActivity.get(activity.Id, qb=qb).CostRate == 75.0


def test_tax_service_tax_agency_and_budget(qb: QuickBooks):  # noqa: F811
    agency = TaxAgency()
    agency.DisplayName = unique("County tax office")
    agency.save(qb=qb)
    assert TaxAgency.get(agency.Id, qb=qb).TaxTrackedOnSales is True

    service = TaxService()
    service.TaxCode = unique("County")
    detail = TaxRateDetails()
    detail.TaxRateName = unique("County rate")
    detail.RateValue = 10
    detail.TaxAgencyId = agency.Id
    detail.TaxApplicableOn = "Sales"
    service.TaxRateDetails.append(detail)
    created = service.save(qb=qb)
    assert created.TaxCode == service.TaxCode
    assert (created.TaxRateDetails[0].RateValue, created.TaxRateDetails[0].TaxAgencyId) == (10, agency.Id)
    assert [c.Name for c in TaxCode.filter(Name=service.TaxCode, qb=qb)] == [service.TaxCode]

    budgets = Budget.all(qb=qb)
    assert budgets and budgets[0].BudgetType == "ProfitAndLoss" and budgets[0].BudgetDetail[0].Amount > 0


def test_recurring_invoice(qb: QuickBooks):  # noqa: F811
    line = SalesItemLine()
    line.Amount = 100
    line.Description = "Monthly maintenance"
    line.SalesItemLineDetail = SalesItemLineDetail()
    line.SalesItemLineDetail.ItemRef = Item.all(max_results=1, qb=qb)[0].to_ref()
    invoice = RecurringInvoice()
    invoice.Line.append(line)
    invoice.CustomerRef = Customer.all(max_results=1, qb=qb)[0].to_ref()
    info = RecurringInfo()
    info.Active = True
    info.RecurType = "Automated"
    info.Name = unique("Maintenance plan")
    info.ScheduleInfo = ScheduleInfo()
    info.ScheduleInfo.StartDate = datetime.now().strftime("%Y-%m-%d")
    info.ScheduleInfo.MaxOccurrences = 6
    info.ScheduleInfo.IntervalType = "Monthly"
    info.ScheduleInfo.DayOfMonth = 1
    info.ScheduleInfo.NumInterval = 1
    invoice.RecurringInfo = info
    recurring = RecurringTransaction()
    recurring.Invoice = invoice
    saved = recurring.save(qb=qb)
    assert saved.Invoice.Line[0].Amount == 100.0 and saved.Invoice.RecurringInfo.ScheduleInfo.MaxOccurrences == 6

    template = RecurringTransaction.get(saved.Invoice.Id, qb=qb)
    template.Invoice.RecurringInfo.ScheduleInfo.DayOfMonth = 15
    template.Invoice.Line[0].Amount = 250
    template.save(qb=qb)
    again = RecurringTransaction.get(saved.Invoice.Id, qb=qb)
    assert (again.Invoice.RecurringInfo.ScheduleInfo.DayOfMonth, again.Invoice.Line[0].Amount) == (15, 250)
    assert all(hasattr(r, "Invoice") for r in RecurringTransaction.where("Type = 'Invoice'", qb=qb))
    again.delete(qb=qb)


def test_preferences_currency_and_exchange_rate(qb: QuickBooks):  # noqa: F811
    preferences = Preferences.get(qb=qb)
    assert preferences.AccountingInfoPrefs.TaxYearMonth == "January"
    assert preferences.OtherPrefs.NameValue[0].Name == "SalesFormsPrefs.DefaultCustomerMessage"
    subject = unique("Estimate")
    preferences.EmailMessagesPrefs.EstimateMessage.Subject = subject
    preferences.CurrencyPrefs.MultiCurrencyEnabled = True
    preferences.save(qb=qb)
    assert Preferences.get(qb=qb).EmailMessagesPrefs.EstimateMessage.Subject == subject

    if not CompanyCurrency.filter(Code="EUR", qb=qb):
        currency = CompanyCurrency()
        currency.Code = "EUR"
        currency.save(qb=qb)
    assert [c.Name for c in CompanyCurrency.all(qb=qb)] == ["Euro"]
    rate = ExchangeRate.where("SourceCurrencyCode = 'EUR'", qb=qb)[0]
    assert (rate.SourceCurrencyCode, rate.TargetCurrencyCode) == ("EUR", "USD")
    rate.Rate = rate.Rate + 1
    rate.save(qb=qb)
    assert ExchangeRate.where("SourceCurrencyCode = 'EUR'", qb=qb)[0].Rate == rate.Rate
