"""The rest of a US company's Accounting API, over raw HTTP as any client sees it: TimeActivity, Transfer,
CreditCardPayment, TaxAgency, Budget, TaxService, RecurringTransaction, CompanyCurrency and ExchangeRate (with
multicurrency on), Preferences in full, US line tax codes, and entity names in any case."""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx
import pytest

pytestmark = pytest.mark.asyncio

SALES_LINE = [{"Amount": 25, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {"ItemRef": {"value": "2"}}}]
# The sample company's accounts (docs/sandbox.md), employee John Johnson and tax rate California (8%).
CHECKING, SAVINGS, MASTERCARD, SERVICES_INCOME = "35", "36", "41", "1"
EMPLOYEE, CALIFORNIA_RATE = "54", "3"


def fault(response: httpx.Response, code: str, status: int = 400) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["Fault"]["Error"][0]
    assert error["code"] == code, error
    return error


async def since_yesterday(http: httpx.AsyncClient, api, entities: str) -> dict[str, list[dict]]:
    changed = (datetime.now().astimezone() - timedelta(days=1)).isoformat(timespec="seconds")
    response = await http.get(api("cdc"), params={"entities": entities, "changedSince": changed})
    assert response.status_code == 200, response.text
    found: dict[str, list[dict]] = {}
    for block in response.json()["CDCResponse"][0]["QueryResponse"]:
        for key, value in block.items():
            if isinstance(value, list):
                found[key] = value
    return found


async def query(http: httpx.AsyncClient, api, text: str) -> dict:
    response = await http.get(api("query"), params={"query": text})
    assert response.status_code == 200, response.text
    return response.json()["QueryResponse"]


# --- names in any case ----------------------------------------------------------------------------------
async def test_entity_names_in_any_case_in_paths_from_and_cdc(http, api):
    invoice = (await http.post(api("Invoice"), json={"CustomerRef": {"value": "1"}, "Line": SALES_LINE})).json()
    invoice_id = invoice["Invoice"]["Id"]
    for path in (f"invoice/{invoice_id}", f"Invoice/{invoice_id}", f"INVOICE/{invoice_id}"):
        read = await http.get(api(path))
        assert read.status_code == 200, (path, read.text)
        assert read.json()["Invoice"]["Id"] == invoice_id
    assert (await http.get(api(f"Invoice/{invoice_id}/PDF"))).headers["content-type"] == "application/pdf"
    for text in (f"select * from invoice where Id = '{invoice_id}'",
                 f"SELECT * FROM INVOICE WHERE Id = '{invoice_id}'"):
        assert [r["Id"] for r in (await query(http, api, text))["Invoice"]] == [invoice_id]
    changed = await since_yesterday(http, api, "invoice,Customer,timeactivity")
    assert invoice_id in {r["Id"] for r in changed["Invoice"]}  # answered under Intuit's spelling
    assert "invoice" not in changed and "Customer" in changed
    fault(await http.get(api("cdc"), params={"entities": "NoSuchThing", "changedSince": "2026-01-01"}), "500")


# --- TimeActivity ---------------------------------------------------------------------------------------
async def test_time_activity_by_duration_and_by_start_and_end(http, api):
    by_duration = await http.post(api("timeactivity"), json={
        "NameOf": "Employee", "EmployeeRef": {"value": EMPLOYEE}, "CustomerRef": {"value": "3"},
        "ItemRef": {"value": "18"},
        "Hours": 2, "Minutes": 15, "BillableStatus": "Billable", "HourlyRate": 40, "Description": "Hedge trimming"})
    assert by_duration.status_code == 200, by_duration.text
    record = by_duration.json()["TimeActivity"]
    assert (record["Hours"], record["Minutes"], record["BillableStatus"]) == (2, 15, "Billable")
    assert record["EmployeeRef"]["name"] and record["TxnDate"]
    assert "CurrencyRef" not in record and "DocNumber" not in record

    timed = (await http.post(api("timeactivity"), json={
        "NameOf": "Vendor", "VendorRef": {"value": "51"}, "StartTime": "2026-11-02T08:00:00-08:00",
        "EndTime": "2026-11-02T16:30:00-08:00", "BreakHours": 0, "BreakMinutes": 30})).json()["TimeActivity"]
    assert (timed["Hours"], timed["Minutes"], timed["BillableStatus"]) == (8, 0, "NotBillable")

    found = await query(http, api, "select * from TimeActivity where NameOf = 'Vendor'")
    assert timed["Id"] in [r["Id"] for r in found["TimeActivity"]]
    changed = await since_yesterday(http, api, "TimeActivity")
    assert {record["Id"], timed["Id"]} <= {r["Id"] for r in changed["TimeActivity"]}
    deleted = await http.post(api("timeactivity"), params={"operation": "delete"},
                              json={"Id": timed["Id"], "SyncToken": timed["SyncToken"]})
    assert deleted.json()["TimeActivity"]["status"] == "Deleted"


async def test_time_activity_refusals(http, api):
    assert fault(await http.post(api("timeactivity"), json={"Hours": 1}), "2020")["element"] == "NameOf"
    missing_vendor = await http.post(api("timeactivity"), json={"NameOf": "Vendor", "Hours": 1})
    assert fault(missing_vendor, "2020")["element"] == "VendorRef"
    no_time = await http.post(api("timeactivity"), json={"NameOf": "Employee", "EmployeeRef": {"value": EMPLOYEE}})
    assert fault(no_time, "2020")["element"] == "Hours"
    billable_alone = await http.post(api("timeactivity"), json={
        "NameOf": "Employee", "EmployeeRef": {"value": EMPLOYEE}, "Hours": 1, "BillableStatus": "Billable"})
    fault(billable_alone, "6000")
    fault(await http.post(api("timeactivity"), json={"NameOf": "Employee", "EmployeeRef": {"value": EMPLOYEE},
                                                     "Hours": 1, "PrivateNote": "no such field"}), "2010")


# --- Transfer and CreditCardPayment ---------------------------------------------------------------------
async def test_transfer_between_balance_sheet_accounts(http, api):
    created = await http.post(api("transfer"), json={
        "FromAccountRef": {"value": CHECKING}, "ToAccountRef": {"value": SAVINGS}, "Amount": "250.5",
        "PrivateNote": "To savings"})
    assert created.status_code == 200, created.text
    transfer = created.json()["Transfer"]
    assert transfer["Amount"] == 250.5 and transfer["CurrencyRef"]["value"] == "USD"
    assert transfer["FromAccountRef"] == {"value": CHECKING, "name": "Checking"}
    same = await http.post(api("transfer"), json={
        "FromAccountRef": {"value": CHECKING}, "ToAccountRef": {"value": CHECKING}, "Amount": 5})
    fault(same, "6000")
    to_income = await http.post(api("transfer"), json={
        "FromAccountRef": {"value": CHECKING}, "ToAccountRef": {"value": SERVICES_INCOME}, "Amount": 5})
    assert "balance sheet" in fault(to_income, "6000")["Detail"]
    fault(await http.post(api("transfer"), json={"FromAccountRef": {"value": CHECKING}, "Amount": 5}), "2020")

    full = {k: v for k, v in transfer.items() if k not in ("MetaData",)}
    updated = await http.post(api("transfer"), json={**full, "Amount": 300})
    assert updated.json()["Transfer"]["Amount"] == 300 and updated.json()["Transfer"]["SyncToken"] == "1"
    found = await query(http, api, "select * from Transfer where Amount = '300'")
    assert [r["Id"] for r in found["Transfer"]] == [transfer["Id"]]
    assert transfer["Id"] in {r["Id"] for r in (await since_yesterday(http, api, "Transfer"))["Transfer"]}


async def test_credit_card_payment_answers_as_credit_card_payment_txn(http, api):
    created = await http.post(api("creditcardpayment"), json={
        "BankAccountRef": {"value": CHECKING}, "CreditCardAccountRef": {"value": MASTERCARD}, "Amount": "100",
        "TxnDate": "2026-11-20", "PrivateNote": "Pay down the Mastercard"})
    assert created.status_code == 200, created.text
    assert list(created.json()) == ["CreditCardPaymentTxn", "time"]
    payment = created.json()["CreditCardPaymentTxn"]
    assert payment["Amount"] == 100.0 and payment["CreditCardAccountRef"]["name"] == "Mastercard"
    read = (await http.get(api(f"creditcardpayment/{payment['Id']}"))).json()
    assert read["CreditCardPaymentTxn"]["Id"] == payment["Id"]
    found = await query(http, api, "select * from creditcardpayment")
    assert payment["Id"] in [r["Id"] for r in found["CreditCardPaymentTxn"]]
    wrong = await http.post(api("creditcardpayment"), json={
        "BankAccountRef": {"value": SAVINGS}, "CreditCardAccountRef": {"value": CHECKING}, "Amount": 1})
    assert fault(wrong, "6000")["element"] == "CreditCardAccountRef"
    unknown = await http.post(api("creditcardpayment"), json={
        "BankAccountRef": {"value": CHECKING}, "CreditCardAccountRef": {"value": MASTERCARD}, "Amount": 1, "Nope": 1})
    assert "CreditCardPaymentTxn" in fault(unknown, "2010")["Detail"]
    changed = await since_yesterday(http, api, "CreditCardPayment")
    assert payment["Id"] in {r["Id"] for r in changed["CreditCardPaymentTxn"]}
    deleted = await http.post(api("creditcardpayment"), params={"operation": "delete"},
                              json={"Id": payment["Id"], "SyncToken": "0"})
    assert deleted.json()["CreditCardPaymentTxn"] == {"domain": "QBO", "status": "Deleted", "Id": payment["Id"]}


# --- TaxAgency, Budget, TaxService, line tax codes -----------------------------------------------------
async def test_tax_agency_create_read_query_but_no_update(http, api):
    seeded = (await http.get(api("taxagency/1"))).json()["TaxAgency"]
    assert seeded["DisplayName"].startswith("California")
    created = await http.post(api("taxagency"), json={"DisplayName": "City of Mountain View"})
    assert created.status_code == 200, created.text
    agency = created.json()["TaxAgency"]
    assert (agency["Id"], agency["TaxTrackedOnSales"], agency["TaxTrackedOnPurchases"]) == ("2", True, False)
    found = await query(http, api, "select * from TaxAgency where DisplayName = 'City of Mountain View'")
    assert [a["Id"] for a in found["TaxAgency"]] == ["2"]
    refused = await http.post(api("taxagency"), json={"Id": "2", "SyncToken": "0", "sparse": True,
                                                      "DisplayName": "Renamed"})
    assert fault(refused, "500")["Detail"] == "Operation Update is not supported."
    fault(await http.post(api("taxagency"), json={"DisplayName": "City of Mountain View"}), "6240")
    fault(await http.post(api("taxagency"), json={"TaxTrackedOnSales": True}), "2020")
    assert "2" in {a["Id"] for a in (await since_yesterday(http, api, "TaxAgency"))["TaxAgency"]}


async def test_budget_is_read_and_queried_never_written(http, api):
    budget = (await http.get(api("budget/1"))).json()["Budget"]
    assert budget["BudgetType"] == "ProfitAndLoss" and len(budget["BudgetDetail"]) == 36
    found = await query(http, api, "select * from Budget where BudgetType = 'ProfitAndLoss'")
    assert [b["Id"] for b in found["Budget"]] == ["1"]
    assert (await since_yesterday(http, api, "Budget"))["Budget"][0]["Id"] == "1"
    refused = await http.post(api("budget"), json={"Name": "Another", "StartDate": "2026-01-01"})
    assert fault(refused, "500")["Detail"] == "Operation Create is not supported."


async def test_tax_service_creates_a_tax_code_a_tax_code_query_returns(http, api):
    created = await http.post(api("taxservice/taxcode"), json={
        "TaxCode": "Mountain View", "TaxRateDetails": [
            {"TaxRateName": "Mountain View City", "RateValue": "1.25", "TaxAgencyId": "1", "TaxApplicableOn": "Sales"},
            {"TaxRateId": CALIFORNIA_RATE}]})
    assert created.status_code == 200, created.text
    answer = created.json()
    assert set(answer) == {"TaxCode", "TaxCodeId", "TaxRateDetails"}
    assert answer["TaxCode"] == "Mountain View" and answer["TaxCodeId"] == "3"
    new_rate, existing = answer["TaxRateDetails"]
    # The new rate's Id follows the sample company's rate 3.
    assert new_rate == {"TaxRateName": "Mountain View City", "TaxRateId": "4", "RateValue": 1.25, "TaxAgencyId": "1",
                        "TaxApplicableOn": "Sales"}
    assert existing["TaxRateId"] == CALIFORNIA_RATE and existing["TaxRateName"] == "California"

    codes = await query(http, api, "select * from TaxCode")
    assert sorted(c["Name"] for c in codes["TaxCode"]) == ["California", "Mountain View"]
    code = next(c for c in codes["TaxCode"] if c["Id"] == "3")
    assert [d["TaxRateRef"]["value"] for d in code["SalesTaxRateList"]["TaxRateDetail"]] == ["4", CALIFORNIA_RATE]
    rate = (await http.get(api("taxrate/4"))).json()["TaxRate"]
    assert rate["RateValue"] == 1.25 and rate["AgencyRef"]["value"] == "1"

    duplicate = await http.post(api("TaxService/Taxcode"), json={
        "TaxCode": "Another", "TaxRateDetails": [{"TaxRateName": "Mountain View City", "RateValue": 1,
                                                  "TaxAgencyId": "1"}]})
    assert fault(duplicate, "6240")["Detail"].startswith("The name supplied already exists. : Another tax rate")
    fault(await http.post(api("taxservice/taxcode"), json={"TaxRateDetails": [{"TaxRateId": CALIFORNIA_RATE}]}), "2020")
    no_agency = await http.post(api("taxservice/taxcode"), json={
        "TaxCode": "Nowhere", "TaxRateDetails": [{"TaxRateName": "Nowhere", "RateValue": 1, "TaxAgencyId": "99"}]})
    fault(no_agency, "2500")


async def test_us_lines_carry_tax_and_non_which_a_tax_code_query_does_not_list(http, api):
    lines = [{**SALES_LINE[0], "SalesItemLineDetail": {"ItemRef": {"value": "2"}, "TaxCodeRef": {"value": "TAX"}}},
             SALES_LINE[0]]
    invoice = await http.post(api("invoice"), json={"CustomerRef": {"value": "1"}, "Line": lines})
    assert invoice.status_code == 200, invoice.text
    codes = [line["SalesItemLineDetail"]["TaxCodeRef"]["value"] for line in invoice.json()["Invoice"]["Line"]
             if line["DetailType"] == "SalesItemLineDetail"]
    assert codes == ["TAX", "NON"]
    numeric = [{**SALES_LINE[0], "SalesItemLineDetail": {"ItemRef": {"value": "2"}, "TaxCodeRef": {"value": "2"}}}]
    fault(await http.post(api("invoice"), json={"CustomerRef": {"value": "1"}, "Line": numeric}), "2500")
    listed = {c["Name"] for c in (await query(http, api, "select * from TaxCode"))["TaxCode"]}
    assert not listed & {"TAX", "NON"}


# --- RecurringTransaction -------------------------------------------------------------------------------
RECURRING_INFO = {"Name": "Monthly gardening", "RecurType": "Automated", "Active": True,
                  "ScheduleInfo": {"IntervalType": "Monthly", "NumInterval": "1", "DayOfMonth": "1",
                                   "StartDate": "2099-01-01", "MaxOccurrences": 12}}


async def test_recurring_invoice_template_lifecycle(http, api):
    balance = (await http.get(api("customer/1"))).json()["Customer"]["Balance"]
    created = await http.post(api("recurringtransaction"), json={"Invoice": {
        "CustomerRef": {"value": "1"}, "Line": SALES_LINE, "RecurringInfo": RECURRING_INFO}})
    assert created.status_code == 200, created.text
    assert list(created.json()["RecurringTransaction"]) == ["Invoice"]
    template = created.json()["RecurringTransaction"]["Invoice"]
    assert template["TotalAmt"] == 25 and "DocNumber" not in template and template["RecurDataRef"]["value"] == "1"
    schedule = template["RecurringInfo"]["ScheduleInfo"]
    assert (schedule["NumInterval"], schedule["DayOfMonth"], schedule["NextDate"]) == (1, 1, "2099-01-01")
    # A template posts nothing: no invoice, no change to what the customer owes.
    assert (await http.get(api("customer/1"))).json()["Customer"]["Balance"] == balance
    assert template["Id"] not in {i["Id"] for i in (await query(http, api, "select * from Invoice"))["Invoice"]}

    read = (await http.get(api(f"recurringtransaction/{template['Id']}"))).json()
    assert read["RecurringTransaction"]["Invoice"]["Id"] == template["Id"]
    bill = await http.post(api("recurringtransaction"), json={"Bill": {
        "VendorRef": {"value": "40"}, "Line": [{"Amount": 900, "DetailType": "AccountBasedExpenseLineDetail",
                                                "AccountBasedExpenseLineDetail": {"AccountRef": {"value": "17"}}}],
        "RecurringInfo": {**RECURRING_INFO, "Name": "Rent"}}})
    assert bill.status_code == 200, bill.text
    only_invoices = await query(http, api, "select * from RecurringTransaction where Type = 'Invoice'")
    assert only_invoices["RecurringTransaction"] == [{"Invoice": template}]
    everything = await query(http, api, "SELECT * FROM recurringtransaction")
    assert [list(r) for r in everything["RecurringTransaction"]] == [["Invoice"], ["Bill"]]

    updated = await http.post(api("recurringtransaction"), json={"Invoice": {
        "Id": template["Id"], "SyncToken": "0", "sparse": True,
        "RecurringInfo": {**RECURRING_INFO, "ScheduleInfo": {**RECURRING_INFO["ScheduleInfo"], "DayOfMonth": 15}}}})
    assert updated.status_code == 200, updated.text
    changed = updated.json()["RecurringTransaction"]["Invoice"]
    assert changed["SyncToken"] == "1" and changed["RecurringInfo"]["ScheduleInfo"]["DayOfMonth"] == 15
    stale = await http.post(api("recurringtransaction"), json={"Invoice": {"Id": template["Id"], "SyncToken": "0",
                                                                           "sparse": True, "PrivateNote": "x"}})
    fault(stale, "5010")
    cdc = await since_yesterday(http, api, "RecurringTransaction")
    assert {"Invoice", "Bill"} == {next(iter(r)) for r in cdc["RecurringTransaction"]}

    deleted = await http.post(api("recurringtransaction"), params={"operation": "delete"},
                              json={"Invoice": {"Id": template["Id"], "SyncToken": "1"}})
    assert deleted.json()["RecurringTransaction"] == {"status": "Deleted", "domain": "QBO",
                                                      "Invoice": {"Id": template["Id"]}}
    fault(await http.get(api(f"recurringtransaction/{template['Id']}")), "610")


async def test_recurring_refusals(http, api):
    no_info = await http.post(api("recurringtransaction"), json={"Invoice": {"CustomerRef": {"value": "1"},
                                                                             "Line": SALES_LINE}})
    assert fault(no_info, "2020")["element"] == "RecurringInfo"
    wrapped = await http.post(api("recurringtransaction"), json={"RecurringTransaction": {"Invoice": {}}})
    fault(wrapped, "2010")
    not_recurring = await http.post(api("recurringtransaction"), json={"Payment": {"TotalAmt": 1}})
    fault(not_recurring, "2010")
    bad_interval = await http.post(api("recurringtransaction"), json={"Invoice": {
        "CustomerRef": {"value": "1"}, "Line": SALES_LINE,
        "RecurringInfo": {**RECURRING_INFO, "ScheduleInfo": {"IntervalType": "Fortnightly"}}}})
    fault(bad_interval, "2010")
    missing_customer = await http.post(api("recurringtransaction"), json={"Invoice": {
        "Line": SALES_LINE, "RecurringInfo": RECURRING_INFO}})
    assert fault(missing_customer, "2020")["element"] == "CustomerRef"


# --- multicurrency ----------------------------------------------------------------------------------------
async def turn_on_multicurrency(http, api) -> dict:
    prefs = (await http.get(api("preferences"))).json()["Preferences"]
    response = await http.post(api("preferences"), json={
        "Id": prefs["Id"], "SyncToken": prefs["SyncToken"], "sparse": True,
        "CurrencyPrefs": {"MultiCurrencyEnabled": True}})
    assert response.status_code == 200, response.text
    return response.json()["Preferences"]


async def test_currencies_and_rates_need_multicurrency(http, api):
    fault(await http.post(api("companycurrency"), json={"Code": "EUR"}), "6000")
    fault(await http.get(api("query"), params={"query": "select * from CompanyCurrency"}), "6000")
    fault(await http.get(api("exchangerate"), params={"sourcecurrencycode": "EUR"}), "6000")
    fault(await http.get(api("cdc"), params={"entities": "CompanyCurrency", "changedSince": "2026-12-01"}), "6000")


async def test_company_currency_with_multicurrency_on(http, api):
    prefs = await turn_on_multicurrency(http, api)
    assert prefs["CurrencyPrefs"] == {"MultiCurrencyEnabled": True, "HomeCurrency": {"value": "USD"}}
    created = await http.post(api("companycurrency"), json={"Code": "eur"})
    assert created.status_code == 200, created.text
    euro = created.json()["CompanyCurrency"]
    assert (euro["Id"], euro["Code"], euro["Name"], euro["Active"]) == ("1", "EUR", "Euro", True)
    assert (await http.get(api("companycurrency/1"))).json()["CompanyCurrency"]["Code"] == "EUR"
    fault(await http.post(api("companycurrency"), json={"Code": "EUR"}), "6240")
    fault(await http.post(api("companycurrency"), json={"Code": "USD"}), "6000")
    fault(await http.post(api("companycurrency"), json={"Name": "Euro"}), "2020")
    off = await http.post(api("companycurrency"), json={"Id": "1", "SyncToken": "0", "sparse": True, "Active": False})
    assert off.json()["CompanyCurrency"]["Active"] is False
    assert await query(http, api, "select * from CompanyCurrency") == {}
    both = await query(http, api, "select * from CompanyCurrency where Active in (true, false)")
    assert [c["Code"] for c in both["CompanyCurrency"]] == ["EUR"]
    assert {c["Id"] for c in (await since_yesterday(http, api, "CompanyCurrency"))["CompanyCurrency"]} == {"1"}


async def test_exchange_rates_with_multicurrency_on(http, api):
    await turn_on_multicurrency(http, api)
    await http.post(api("companycurrency"), json={"Code": "GBP"})
    market = await http.get(api("exchangerate"), params={"sourcecurrencycode": "GBP", "asofdate": "2026-11-01"})
    assert market.status_code == 200, market.text
    rate = market.json()["ExchangeRate"]
    assert (rate["SourceCurrencyCode"], rate["TargetCurrencyCode"], rate["AsOfDate"]) == ("GBP", "USD", "2026-11-01")
    assert rate["SyncToken"] == "0" and "Id" not in rate and rate["Rate"] > 0

    updated = await http.post(api("exchangerate"), json={
        "SourceCurrencyCode": "GBP", "Rate": 1.3333, "AsOfDate": "2026-11-01", "SyncToken": "0"})
    assert updated.status_code == 200, updated.text
    assert (updated.json()["ExchangeRate"]["Rate"], updated.json()["ExchangeRate"]["SyncToken"]) == (1.3333, "1")
    later = (await http.get(api("exchangerate"), params={"sourceCurrencyCode": "GBP",
                                                         "asofdate": "2026-11-15"})).json()["ExchangeRate"]
    assert later["Rate"] == 1.3333  # a set rate holds until a later one
    stale = await http.post(api("exchangerate"), json={
        "SourceCurrencyCode": "GBP", "Rate": 1.4, "AsOfDate": "2026-11-01", "SyncToken": "0"})
    fault(stale, "5010")
    fault(await http.post(api("exchangerate"), json={"SourceCurrencyCode": "GBP", "Rate": 1.4}), "2020")
    found = await query(http, api, "select * from exchangerate where SourceCurrencyCode = 'GBP'")
    assert {r["AsOfDate"] for r in found["ExchangeRate"]} >= {"2026-11-01"}
    fault(await http.get(api("exchangerate")), "2020")


# --- Preferences ------------------------------------------------------------------------------------------
async def test_preferences_every_section_and_updates_as_intuit_allows(http, api):
    prefs = (await http.get(api("preferences"))).json()["Preferences"]
    assert {"AccountingInfoPrefs", "ProductAndServicesPrefs", "SalesFormsPrefs", "EmailMessagesPrefs",
            "VendorAndPurchasesPrefs", "TimeTrackingPrefs", "TaxPrefs", "CurrencyPrefs", "ReportPrefs",
            "OtherPrefs"} <= set(prefs)
    assert {"InvoiceMessage", "EstimateMessage", "SalesReceiptMessage", "StatementMessage"} <= \
        set(prefs["EmailMessagesPrefs"])

    # An update names only the sections it changes; the others stay (not sparse, as Intuit's sample sends it).
    changed = await http.post(api("preferences"), json={
        "Id": "1", "SyncToken": prefs["SyncToken"],
        "EmailMessagesPrefs": {"InvoiceMessage": {"Subject": "Your invoice", "Message": "Thanks!"}},
        "SalesFormsPrefs": {"AllowShipping": True}})
    assert changed.status_code == 200, changed.text
    now = changed.json()["Preferences"]
    assert now["EmailMessagesPrefs"]["InvoiceMessage"]["Subject"] == "Your invoice"
    assert now["SalesFormsPrefs"]["AllowShipping"] is True
    assert now["SalesFormsPrefs"]["AllowEstimates"] is True and now["TaxPrefs"] == prefs["TaxPrefs"]
    assert int(now["SyncToken"]) == int(prefs["SyncToken"]) + 1
    fault(await http.post(api("preferences"), json={"Id": "1", "SyncToken": prefs["SyncToken"],
                                                    "ReportPrefs": {"ReportBasis": "Cash"}}), "5010")
    fault(await http.post(api("preferences"), json={"Id": "1", "SyncToken": now["SyncToken"],
                                                    "NoSuchPrefs": {}}), "2010")

    on = await turn_on_multicurrency(http, api)
    turned_off = await http.post(api("preferences"), json={
        "Id": "1", "SyncToken": on["SyncToken"], "sparse": True, "CurrencyPrefs": {"MultiCurrencyEnabled": False}})
    fault(turned_off, "6000")
    assert (await http.get(api("preferences"))).json()["Preferences"]["CurrencyPrefs"]["MultiCurrencyEnabled"]


async def test_an_exchange_rate_query_lists_each_rate_once(http, api):
    await turn_on_multicurrency(http, api)
    await http.post(api("companycurrency"), json={"Code": "CAD"})
    set_rate = await http.post(api("exchangerate"), json={
        "SourceCurrencyCode": "CAD", "Rate": 0.71, "AsOfDate": "2026-01-02", "SyncToken": "0"})
    assert set_rate.status_code == 200, set_rate.text
    found = await query(http, api, "select * from ExchangeRate where SourceCurrencyCode = 'CAD'")
    assert [(r["AsOfDate"], r["Rate"]) for r in found["ExchangeRate"]] == [("2026-01-02", 0.71)]
