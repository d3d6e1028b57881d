"""The Accounting API's entity endpoints, driven with plain HTTP as any QBO client would."""

from __future__ import annotations

import re

import pytest

from tests.sandbox.wire import fault_of

pytestmark = pytest.mark.asyncio

QBO_DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[-+]\d\d:\d\d$")




async def create(http, api, entity: str, body: dict) -> dict:
    response = await http.post(api(entity.lower()), json=body)
    assert response.status_code == 200, response.text
    return response.json()[entity]


async def test_create_invoice_fills_what_qbo_fills(http, api):
    response = await http.post(api("invoice"), params={"minorversion": "75"}, json={
        "Line": [{"Amount": 100.0, "DetailType": "SalesItemLineDetail",
                  "SalesItemLineDetail": {"ItemRef": {"value": "1"}}}],
        "CustomerRef": {"value": "1"},
    })
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["intuit_tid"]
    body = response.json()
    assert set(body) == {"Invoice", "time"}
    invoice = body["Invoice"]
    assert invoice["domain"] == "QBO" and invoice["sparse"] is False
    assert invoice["SyncToken"] == "0" and invoice["Id"].isdigit()
    assert QBO_DATETIME.match(invoice["MetaData"]["CreateTime"])
    assert invoice["MetaData"]["CreateTime"] == invoice["MetaData"]["LastUpdatedTime"]
    assert invoice["TotalAmt"] == 100.0 and invoice["Balance"] == 100.0
    assert invoice["CustomerRef"] == {"value": "1", "name": "Amy's Bird Sanctuary"}
    assert invoice["Line"][0]["Id"] == "1" and invoice["Line"][0]["LineNum"] == 1
    assert invoice["Line"][0]["SalesItemLineDetail"]["ItemRef"] == {"value": "1", "name": "Services"}
    assert invoice["Line"][-1] == {"Amount": 100.0, "DetailType": "SubTotalLineDetail", "SubTotalLineDetail": {}}
    assert invoice["DocNumber"].isdigit()
    assert invoice["EmailStatus"] == "NotSet" and invoice["PrintStatus"] == "NeedToPrint"
    assert invoice["BillAddr"]["City"] == "Bayshore"  # the customer's (4581 Finch St., Bayshore)
    # Due date is the transaction date plus the default 30 days.
    assert invoice["DueDate"] > invoice["TxnDate"]
    read = await http.get(api(f"invoice/{invoice['Id']}"))
    assert read.json()["Invoice"] == invoice


async def test_ids_and_doc_numbers_are_assigned_in_sequence(http, api):
    line = [{"Amount": 5, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {"ItemRef": {"value": "2"}}}]
    first = await create(http, api, "Invoice", {"CustomerRef": {"value": "2"}, "Line": line})
    second = await create(http, api, "Invoice", {"CustomerRef": {"value": "2"}, "Line": line})
    assert int(second["Id"]) == int(first["Id"]) + 1
    assert int(second["DocNumber"]) == int(first["DocNumber"]) + 1
    given = await create(http, api, "Invoice", {"CustomerRef": {"value": "2"}, "Line": line, "DocNumber": "A-7"})
    assert given["DocNumber"] == "A-7"


async def test_lines_are_summed_with_quantities_and_discounts(http, api):
    invoice = await create(http, api, "Invoice", {"CustomerRef": {"value": "3"}, "Line": [
        {"DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {"ItemRef": {"value": "2"}, "Qty": 3,
                                                                      "UnitPrice": 75}},
        {"Amount": 20.5, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {"ItemRef": {"value": "3"}}},
        {"Amount": 10, "DetailType": "DiscountLineDetail", "DiscountLineDetail": {"PercentBased": False}},
    ]})
    assert invoice["Line"][0]["Amount"] == 225.0
    assert invoice["TotalAmt"] == 235.5
    assert invoice["Balance"] == 235.5


async def test_required_fields_are_refused_naming_the_field(http, api):
    response = await http.post(api("invoice"), json={"CustomerRef": {"value": "1"}})
    assert response.status_code == 400
    error = fault_of(response)
    assert error["code"] == "2020" and error["type"] == "ValidationFault"
    assert "Line" in error["Detail"]
    response = await http.post(api("invoice"), json={"Line": [
        {"Amount": 1, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {"ItemRef": {"value": "1"}}}]})
    assert fault_of(response)["Detail"] == "Required parameter CustomerRef is missing in the request"
    response = await http.post(api("customer"), json={"Notes": "no name at all"})
    assert fault_of(response)["code"] == "2020"


async def test_references_must_exist(http, api):
    response = await http.post(api("invoice"), json={"CustomerRef": {"value": "9999"}, "Line": [
        {"Amount": 1, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {"ItemRef": {"value": "1"}}}]})
    assert response.status_code == 400
    error = fault_of(response)
    assert error["code"] == "2500"
    assert error["Detail"] == "Invalid Reference Id : Names element id 9999 not found"
    response = await http.post(api("invoice"), json={"CustomerRef": {"value": "1"}, "Line": [
        {"Amount": 1, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {"ItemRef": {"value": "777"}}}]})
    assert fault_of(response)["code"] == "2500"


async def test_sparse_and_full_update_with_sync_tokens(http, api):
    customer = await create(http, api, "Customer", {"DisplayName": "Quarry Lane Books", "Notes": "first"})
    sparse = await http.post(api("customer"), json={"Id": customer["Id"], "SyncToken": "0", "sparse": True,
                                                    "CompanyName": "Quarry Lane"})
    updated = sparse.json()["Customer"]
    assert updated["SyncToken"] == "1"
    assert updated["CompanyName"] == "Quarry Lane" and updated["Notes"] == "first"
    assert updated["MetaData"]["CreateTime"] == customer["MetaData"]["CreateTime"]
    # A full update replaces the record: fields left out are cleared.
    full = await http.post(api("customer"), json={"Id": customer["Id"], "SyncToken": "1",
                                                  "DisplayName": "Quarry Lane Books"})
    replaced = full.json()["Customer"]
    assert replaced["SyncToken"] == "2"
    assert "Notes" not in replaced and "CompanyName" not in replaced
    # The old token is now stale.
    stale = await http.post(api("customer"), json={"Id": customer["Id"], "SyncToken": "1", "sparse": True,
                                                   "Notes": "lost update"})
    assert stale.status_code == 400
    assert fault_of(stale)["code"] == "5010"
    current = (await http.get(api(f"customer/{customer['Id']}"))).json()["Customer"]
    assert "Notes" not in current


async def test_display_names_are_unique_across_customers_vendors_employees(http, api):
    vendor = await create(http, api, "Vendor", {"DisplayName": "Sierra Gravel"})
    response = await http.post(api("customer"), json={"DisplayName": "sierra gravel"})
    assert response.status_code == 400
    error = fault_of(response)
    assert error["code"] == "6240" and error["Message"] == "Duplicate Name Exists Error"
    assert error["Detail"] == f"The name supplied already exists. : Id={vendor['Id']}"


async def test_name_lists_deactivate_instead_of_delete(http, api):
    customer = await create(http, api, "Customer", {"DisplayName": "Temporary Client"})
    refused = await http.post(api("customer"), params={"operation": "delete"},
                              json={"Id": customer["Id"], "SyncToken": "0"})
    assert refused.status_code == 400
    assert fault_of(refused) == {"Message": "Unsupported Operation", "Detail": "Operation Delete is not supported.",
                                 "code": "500", "type": "ValidationFault"}
    response = await http.post(api("customer"), json={"Id": customer["Id"], "SyncToken": "0", "sparse": True,
                                                      "Active": False})
    inactive = response.json()["Customer"]
    assert inactive["Active"] is False
    assert inactive["DisplayName"] == "Temporary Client (deleted)"
    assert inactive["FullyQualifiedName"] == "Temporary Client (deleted)"
    # Queries of name lists return active records only, unless Active is filtered.
    active = (await http.get(api("query"), params={
        "query": "select * from Customer where DisplayName LIKE 'Temporary%'"})).json()
    assert active["QueryResponse"] == {}
    everything = (await http.get(api("query"), params={
        "query": "select * from Customer where Active = false"})).json()
    assert [c["Id"] for c in everything["QueryResponse"]["Customer"]] == [customer["Id"]]
    # An inactive customer cannot be used on a new transaction.
    response = await http.post(api("invoice"), json={"CustomerRef": {"value": customer["Id"]}, "Line": [
        {"Amount": 1, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {"ItemRef": {"value": "1"}}}]})
    assert response.status_code == 400


async def test_delete_transaction_then_read_gives_610(http, api):
    bill = await create(http, api, "Bill", {"VendorRef": {"value": "48"}, "Line": [  # PG&E, Utilities
        {"Amount": 42.5, "DetailType": "AccountBasedExpenseLineDetail",
         "AccountBasedExpenseLineDetail": {"AccountRef": {"value": "77"}}}]})
    assert bill["Balance"] == 42.5
    response = await http.post(api("bill"), params={"operation": "delete"},
                               json={"Id": bill["Id"], "SyncToken": bill["SyncToken"]})
    assert response.status_code == 200
    assert response.json()["Bill"] == {"domain": "QBO", "status": "Deleted", "Id": bill["Id"]}
    gone = await http.get(api(f"bill/{bill['Id']}"))
    assert gone.status_code == 400
    assert fault_of(gone)["code"] == "610"
    assert fault_of(gone)["Detail"] == "Object Not Found : Another user has deleted this transaction."
    again = await http.post(api("bill"), params={"operation": "delete"},
                            json={"Id": bill["Id"], "SyncToken": bill["SyncToken"]})
    assert fault_of(again)["code"] == "610"


async def test_void_invoice_and_payment(http, api):
    invoice = await create(http, api, "Invoice", {"CustomerRef": {"value": "5"}, "PrivateNote": "spring job",
                                                  "Line": [{"Amount": 300, "DetailType": "SalesItemLineDetail",
                                                            "SalesItemLineDetail": {"ItemRef": {"value": "5"}}}]})
    payment = await create(http, api, "Payment", {"CustomerRef": {"value": "5"}, "TotalAmt": 120, "Line": [
        {"Amount": 120, "LinkedTxn": [{"TxnId": invoice["Id"], "TxnType": "Invoice"}]}]})
    assert payment["UnappliedAmt"] == 0
    after_payment = (await http.get(api(f"invoice/{invoice['Id']}"))).json()["Invoice"]
    assert after_payment["Balance"] == 180.0
    assert after_payment["LinkedTxn"] == [{"TxnId": payment["Id"], "TxnType": "Payment"}]
    # Payment void: a sparse update with include=void; amounts zeroed, "Voided" noted, invoice reopened.
    response = await http.post(api("payment"), params={"operation": "update", "include": "void"},
                               json={"Id": payment["Id"], "SyncToken": payment["SyncToken"], "sparse": True})
    voided = response.json()["Payment"]
    assert voided["TotalAmt"] == 0 and voided["PrivateNote"] == "Voided" and voided["Line"] == []
    assert voided["SyncToken"] == "1"
    reopened = (await http.get(api(f"invoice/{invoice['Id']}"))).json()["Invoice"]
    assert reopened["Balance"] == 300.0
    # Invoice void: ?operation=void.
    response = await http.post(api("invoice"), params={"operation": "void"},
                               json={"Id": invoice["Id"], "SyncToken": reopened["SyncToken"]})
    voided_invoice = response.json()["Invoice"]
    assert voided_invoice["TotalAmt"] == 0 and voided_invoice["Balance"] == 0
    assert voided_invoice["PrivateNote"] == "Voided - spring job"
    assert all(line["Amount"] == 0 for line in voided_invoice["Line"])
    # Bills cannot be voided (17 is the sample company's bill from PG&E).
    refused = await http.post(api("bill"), params={"operation": "void"}, json={"Id": "17", "SyncToken": "0"})
    assert refused.status_code == 400


async def test_payment_lines_cannot_exceed_the_payment_and_the_rest_is_unapplied(http, api):
    invoice = await create(http, api, "Invoice", {"CustomerRef": {"value": "6"}, "Line": [
        {"Amount": 50, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {"ItemRef": {"value": "1"}}}]})
    response = await http.post(api("payment"), json={"CustomerRef": {"value": "6"}, "TotalAmt": 40, "Line": [
        {"Amount": 60, "LinkedTxn": [{"TxnId": invoice["Id"], "TxnType": "Invoice"}]}]})
    assert response.status_code == 400
    payment = await create(http, api, "Payment", {"CustomerRef": {"value": "6"}, "TotalAmt": 80, "Line": [
        {"Amount": 50, "LinkedTxn": [{"TxnId": invoice["Id"], "TxnType": "Invoice"}]}]})
    assert payment["UnappliedAmt"] == 30.0
    paid = (await http.get(api(f"invoice/{invoice['Id']}"))).json()["Invoice"]
    assert paid["Balance"] == 0
    # Applying a payment changes the invoice, so its SyncToken moves (as recorded CDC shows).
    assert paid["SyncToken"] == "1"
    customer = (await http.get(api("customer/6"))).json()["Customer"]
    assert customer["Balance"] == -30.0


async def test_journal_entry_must_balance(http, api):
    def line(posting: str, amount: float, account: str) -> dict:
        return {"Amount": amount, "DetailType": "JournalEntryLineDetail",
                "JournalEntryLineDetail": {"PostingType": posting, "AccountRef": {"value": account}}}

    response = await http.post(api("journalentry"), json={"Line": [line("Debit", 100, "1"),
                                                                   line("Credit", 90, "11")]})
    assert response.status_code == 400
    error = fault_of(response)
    assert error["code"] == "2300" and "100.00" in error["Detail"] and "90.00" in error["Detail"]
    entry = await create(http, api, "JournalEntry", {"Line": [line("Debit", 100, "1"), line("Credit", 100, "11")]})
    assert entry["TotalAmt"] == 100.0


async def test_reading_an_id_of_another_transaction_type(http, api):
    bill = await create(http, api, "Bill", {"VendorRef": {"value": "41"}, "Line": [  # Hicks Hardware, Supplies
        {"Amount": 9, "DetailType": "AccountBasedExpenseLineDetail",
         "AccountBasedExpenseLineDetail": {"AccountRef": {"value": "20"}}}]})
    response = await http.get(api(f"invoice/{bill['Id']}"))
    assert fault_of(response)["Detail"] == "Object Not Found : TxnType does not match read: Bill expected: Invoice"
    response = await http.get(api("customer/99999"))
    assert fault_of(response)["code"] == "610"


async def test_ids_that_are_not_numbers_and_unknown_paths(http, api, realm):
    response = await http.get(api("customer/1.5"))
    assert response.status_code == 400
    error = fault_of(response)
    assert error == {"Message": "Invalid ID", "Detail": "Id should be a valid number. Supplied value:1.5",
                     "code": "2030", "element": "Id", "type": "ValidationFault"}
    response = await http.get(api("customer/1/5"))
    error = fault_of(response)
    assert error["code"] == "500" and error["Message"] == "Unsupported Operation"
    assert f"/v3/company/{realm}/customer/1/5" in error["Detail"]
    response = await http.get(api("invoicex/1"))
    assert fault_of(response)["code"] == "500"


async def test_malformed_and_empty_bodies(http, api):
    response = await http.post(api("customer"), content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert fault_of(response)["code"] == "2010"
    response = await http.post(api("customer"), content=b"", headers={"Content-Type": "application/json"})
    assert fault_of(response) == {"Message": "Error parsing object", "Detail": "ObjectParserError: Request Body "
                                  "is Empty", "code": "2310", "element": "", "type": "ValidationFault"}


async def test_company_info_and_preferences(http, api, realm):
    info = (await http.get(api(f"companyinfo/{realm}"))).json()["CompanyInfo"]
    assert info["CompanyName"] == "Sandbox Company_US_1" and info["Country"] == "US"
    prefs = (await http.get(api("preferences"))).json()["Preferences"]
    assert prefs["CurrencyPrefs"]["HomeCurrency"] == {"value": "USD"}


async def test_requestid_replays_first_answer_and_changes_nothing(http, api):
    body = {"DisplayName": "Idempotent Imports"}
    first = await http.post(api("customer"), params={"requestid": "rq-1"}, json=body)
    second = await http.post(api("customer"), params={"requestid": "rq-1"}, json=body)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    count = (await http.get(api("query"), params={
        "query": "select count(*) from Customer where DisplayName = 'Idempotent Imports'"})).json()
    assert count["QueryResponse"]["totalCount"] == 1
    # A different body under the same requestid still returns the first answer, as QBO does.
    third = await http.post(api("customer"), params={"requestid": "rq-1"}, json={"DisplayName": "Other Name"})
    assert third.json()["Customer"]["DisplayName"] == "Idempotent Imports"


async def test_minorversion_below_75_is_served_as_75(http, api):
    response = await http.get(api("customer/1"), params={"minorversion": "4"})
    assert response.status_code == 200
    assert response.json()["Customer"]["Id"] == "1"


async def test_batch_items_do_not_see_each_others_results(http, api):
    response = await http.post(api("batch"), json={"BatchItemRequest": [
        {"bId": "c1", "operation": "create", "Customer": {"DisplayName": "Batch Newcomer"}},
        {"bId": "i1", "operation": "create", "Invoice": {"CustomerRef": {"value": "PLACEHOLDER"}, "Line": [
            {"Amount": 5, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {"ItemRef": {"value": "1"}}}]}},
    ]})
    # The invoice cannot use the customer: fill the placeholder with the id the customer will get.
    assert response.status_code == 200
    customer_id = response.json()["BatchItemResponse"][0]["Customer"]["Id"]
    response = await http.post(api("batch"), json={"BatchItemRequest": [
        {"bId": "c2", "operation": "create", "Customer": {"DisplayName": "Second Newcomer"}},
        {"bId": "i2", "operation": "create", "Invoice": {"CustomerRef": {"value": str(int(customer_id) + 1)}, "Line": [
            {"Amount": 5, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {"ItemRef": {"value": "1"}}}]}},
    ]})
    answers = {a["bId"]: a for a in response.json()["BatchItemResponse"]}
    assert answers["c2"]["Customer"]["Id"] == str(int(customer_id) + 1)
    assert answers["i2"]["Fault"]["Error"][0]["code"] == "2500"
    # Once the batch is over, the new customer is usable.
    invoice = await create(http, api, "Invoice", {"CustomerRef": {"value": answers["c2"]["Customer"]["Id"]}, "Line": [
        {"Amount": 5, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {"ItemRef": {"value": "1"}}}]})
    assert invoice["CustomerRef"]["name"] == "Second Newcomer"


async def test_a_parent_customer_owes_its_jobs_balances_with_jobs(http, api):
    """BalanceWithJobs is a customer's balance plus its sub-customers' (recorded all/customers.yml: Freeman Sporting
    Goods has Balance 0 and BalanceWithJobs 85.00, its job 55 Twin Lane's balance). The sample company's Freeman
    Sporting Goods (7) has two jobs, 0969 Ocean View Road (8) and 55 Twin Lane (9)."""
    async def customer(customer_id: str) -> dict:
        return (await http.get(api(f"customer/{customer_id}"))).json()["Customer"]

    parent, job = await customer("7"), await customer("9")
    assert parent["Balance"] == 0 and parent["BalanceWithJobs"] == round((await customer("8"))["Balance"]
                                                                          + job["Balance"], 2)
    await create(http, api, "Invoice", {"CustomerRef": {"value": "9"}, "Line": [
        {"Amount": 60, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {"ItemRef": {"value": "6"}}}]})
    assert (await customer("9"))["BalanceWithJobs"] == job["Balance"] + 60
    after = await customer("7")
    assert (after["Balance"], after["BalanceWithJobs"]) == (0, parent["BalanceWithJobs"] + 60)
    # A job of a job counts up the whole chain.
    grandchild = await create(http, api, "Customer", {"DisplayName": "Twin Lane Gazebo", "Job": True,
                                                      "ParentRef": {"value": "9"}})
    await create(http, api, "Invoice", {"CustomerRef": {"value": grandchild["Id"]}, "Line": [
        {"Amount": 15, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {"ItemRef": {"value": "6"}}}]})
    assert (await customer("7"))["BalanceWithJobs"] == parent["BalanceWithJobs"] + 75
    # Balances are the server's after create ("Write-on-create"): a full update that leaves them out, or sends
    # another, changes neither.
    current = await customer("7")
    full = {k: v for k, v in current.items() if k not in ("Balance", "BalanceWithJobs", "MetaData")}
    updated = (await http.post(api("customer"), json={**full, "Notes": "full update"})).json()["Customer"]
    assert (updated["Balance"], updated["BalanceWithJobs"]) == (0, current["BalanceWithJobs"])
    written = (await http.post(api("customer"), json={**full, "SyncToken": updated["SyncToken"], "Balance": 999,
                                                      "BalanceWithJobs": 999})).json()["Customer"]
    assert (written["Balance"], written["BalanceWithJobs"]) == (0, current["BalanceWithJobs"])
    # Moving a job to another parent moves its balance with it.
    moved = await customer("9")
    await http.post(api("customer"), json={"Id": "9", "SyncToken": moved["SyncToken"], "sparse": True,
                                           "ParentRef": {"value": "22"}})
    assert (await customer("7"))["BalanceWithJobs"] == round(current["BalanceWithJobs"] - moved["BalanceWithJobs"], 2)
    shara = await customer("22")
    assert shara["BalanceWithJobs"] == round(shara["Balance"] + (await customer("23"))["BalanceWithJobs"]
                                             + moved["BalanceWithJobs"], 2)
