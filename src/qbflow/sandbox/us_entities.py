"""QBO's rules for the entities of a US company beyond the everyday ones: TimeActivity, Transfer,
CreditCardPayment, TaxAgency, Budget, CompanyCurrency, and the Preferences a company starts with.

`Books` calls these while it applies its rules; each takes the record being written (already checked for
unknown properties and with its references resolved) and fills in or refuses what Intuit would. Sources
for every rule are in docs/sandbox.md; rules no wire sample shows are marked *inferred* there.
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import TYPE_CHECKING, Any

from qbflow.sandbox import faults
from qbflow.sandbox.faults import Fault

if TYPE_CHECKING:
    from qbflow.sandbox.books import Books, Company

HOME_CURRENCY = "USD"

# ISO 4217 codes a company may add, with the names QBO shows (the Currency Center's list is longer).
CURRENCY_NAMES: dict[str, str] = {
    "USD": "United States Dollar", "EUR": "Euro", "GBP": "British Pound Sterling", "CAD": "Canadian Dollar",
    "AUD": "Australian Dollar", "NZD": "New Zealand Dollar", "JPY": "Japanese Yen", "CHF": "Swiss Franc",
    "CNY": "Chinese Yuan Renminbi", "HKD": "Hong Kong Dollar", "INR": "Indian Rupee", "MXN": "Mexican Peso",
    "BRL": "Brazilian Real", "SEK": "Swedish Krona", "NOK": "Norwegian Krone", "DKK": "Danish Krone",
    "SGD": "Singapore Dollar", "ZAR": "South African Rand", "PHP": "Philippine Peso", "KRW": "South Korean Won",
}

NAME_OF = ("Employee", "Vendor")
BILLABLE_STATUSES = ("Billable", "NotBillable", "HasBeenBilled")
BALANCE_SHEET = ("Asset", "Liability", "Equity")


def multicurrency_enabled(company: Company) -> bool:
    prefs = company.table("Preferences").get("1") or {}
    return bool((prefs.get("CurrencyPrefs") or {}).get("MultiCurrencyEnabled"))


def multicurrency_off() -> Fault:
    """What CompanyCurrency and ExchangeRate answer while multicurrency is off (*inferred*: no wire sample of
    this answer was found; Intuit's reference says both apply only to companies that enable multicurrency)."""
    return faults.business("Multicurrency is not enabled for this company.")


def _amount(record: dict, element: str) -> float:
    from qbflow.sandbox.books import money, parse_amount

    value = money(parse_amount(record[element], element))
    if value <= 0:
        raise faults.business(f"{element} must be greater than zero.", element)
    record[element] = value
    return value


def _account(company: Company, ref: dict) -> dict:
    return company.table("Account")[ref["value"]]


# --- transactions without lines -------------------------------------------------------------------------
def time_activity_rules(record: dict, today: str) -> None:
    """NameOf says whose time it is (EmployeeRef or VendorRef); the time is Hours/Minutes or StartTime/EndTime
    (Intuit's TimeActivity reference); the rest defaults as QBO's sample answers show."""
    name_of = record.get("NameOf")
    if name_of not in NAME_OF:
        raise faults.invalid(f"Invalid NameOf: {name_of}; expected Employee or Vendor", "NameOf")
    who = f"{name_of}Ref"
    if who not in record:
        raise faults.required(who)
    other = "VendorRef" if name_of == "Employee" else "EmployeeRef"
    if other in record:
        raise faults.business(f"A time activity for a{'n' if name_of == 'Employee' else ''} {name_of.lower()} "
                              f"cannot carry {other}.", other)
    record.setdefault("TxnDate", today)
    if "StartTime" in record or "EndTime" in record:
        if "StartTime" not in record or "EndTime" not in record:
            raise faults.required("EndTime" if "StartTime" in record else "StartTime")
        try:
            start = datetime.fromisoformat(str(record["StartTime"]).replace("Z", "+00:00"))
            end = datetime.fromisoformat(str(record["EndTime"]).replace("Z", "+00:00"))
        except ValueError:
            raise faults.invalid("StartTime and EndTime must be date-times", "StartTime") from None
        worked = (end - start).total_seconds() / 60 - int(record.get("BreakHours", 0)) * 60 \
            - int(record.get("BreakMinutes", 0))
        if worked <= 0:
            raise faults.business("EndTime must be after StartTime (less any break).", "EndTime")
        record["Hours"], record["Minutes"] = divmod(int(worked), 60)
    elif "Hours" in record or "Minutes" in record:
        for unit in ("Hours", "Minutes"):
            try:
                record[unit] = int(record.get(unit, 0))
            except (TypeError, ValueError):
                raise faults.invalid(f"{unit} must be a whole number", unit) from None
            if record[unit] < 0:
                raise faults.invalid(f"{unit} cannot be negative", unit)
        if record["Hours"] == 0 and record["Minutes"] == 0:
            raise faults.business("A time activity needs some time: Hours or Minutes above zero.", "Hours")
    else:
        raise faults.required("Hours")
    status = record.setdefault("BillableStatus", "NotBillable")
    if status not in BILLABLE_STATUSES:
        raise faults.invalid(f"Invalid BillableStatus: {status}", "BillableStatus")
    if status == "Billable":
        if "CustomerRef" not in record:
            raise faults.business("A billable time activity needs a customer (CustomerRef).", "CustomerRef")
        record.setdefault("HourlyRate", 0)
    record.setdefault("Taxable", False)


def transfer_rules(company: Company, record: dict) -> None:
    """Money moved between two balance-sheet accounts (Intuit's Transfer reference: "funds are moved between
    two accounts"; the UI offers only balance-sheet accounts, *inferred* for the API)."""
    _amount(record, "Amount")
    source, target = record["FromAccountRef"]["value"], record["ToAccountRef"]["value"]
    if source == target:
        raise faults.business("You can't transfer money from an account to the same account.", "ToAccountRef")
    for ref_field, ref in (("FromAccountRef", source), ("ToAccountRef", target)):
        account = company.table("Account")[ref]
        if account.get("Classification") not in BALANCE_SHEET:
            raise faults.business(f"Transfers are only allowed between balance sheet accounts; "
                                  f"{account.get('Name')} is a {account.get('AccountType')} account.", ref_field)


def credit_card_payment_rules(company: Company, record: dict) -> None:
    """A bank account pays down a credit card: "BankAccountRef ... Must be a Bank account",
    "CreditCardAccountRef ... Must be a Credit Card account", home currency only (Intuit's reference)."""
    _amount(record, "Amount")
    bank = _account(company, record["BankAccountRef"])
    card = _account(company, record["CreditCardAccountRef"])
    if bank.get("AccountType") != "Bank":
        raise faults.business(f"BankAccountRef must be a Bank account; {bank.get('Name')} is "
                              f"{bank.get('AccountType')}.", "BankAccountRef")
    if card.get("AccountType") != "Credit Card":
        raise faults.business(f"CreditCardAccountRef must be a Credit Card account; {card.get('Name')} is "
                              f"{card.get('AccountType')}.", "CreditCardAccountRef")
    for account in (bank, card):
        if (account.get("CurrencyRef") or {}).get("value", HOME_CURRENCY) != HOME_CURRENCY:
            raise faults.business("Credit card payments are only supported between home currency accounts.")


# --- lists -------------------------------------------------------------------------------------------------
def tax_agency_rules(record: dict) -> None:
    """Intuit's TaxAgency reference answers DisplayName and the two flags, with no Active."""
    record.setdefault("TaxTrackedOnSales", True)
    record.setdefault("TaxTrackedOnPurchases", False)


def currency_rules(record: dict, current: dict | None) -> None:
    """A currency the company uses besides its home currency, named by its ISO 4217 code (Intuit's
    CompanyCurrency reference); the home currency is not one of them (python-quickbooks' test company lists
    a foreign currency as Id 1)."""
    code = str(record.get("Code", "")).upper()
    if current is not None and code != current.get("Code"):
        raise faults.business("The code of a currency cannot be changed.", "Code")
    if code not in CURRENCY_NAMES:
        raise faults.invalid(f"Invalid currency code: {record.get('Code')}", "Code")
    if code == HOME_CURRENCY:
        raise faults.business(f"{code} is the home currency.", "Code")
    record["Code"] = code
    record["Name"] = CURRENCY_NAMES[code]
    record.setdefault("Active", True)


# --- Preferences ---------------------------------------------------------------------------------------------
def preferences_update(current: dict, body: dict, *, sparse: bool) -> dict:
    """Preferences change section by section: sections (and fields) left out stay as they were, sparse or not
    (the API reference's update sample sends two sections and gets all of them back). Multicurrency, once on,
    stays on, and the home currency cannot change while it is on (QuickBooks' own rule in its settings)."""
    del sparse  # both kinds merge
    record = copy.deepcopy(current)
    for section, value in body.items():
        if isinstance(value, dict) and isinstance(record.get(section), dict):
            record[section] = {**record[section], **value}
        else:
            record[section] = value
    was = current.get("CurrencyPrefs") or {}
    now = record.get("CurrencyPrefs") or {}
    if was.get("MultiCurrencyEnabled") and not now.get("MultiCurrencyEnabled"):
        raise faults.business("Multicurrency cannot be turned off once it is on.", "CurrencyPrefs.MultiCurrencyEnabled")
    if was.get("MultiCurrencyEnabled") and (now.get("HomeCurrency") or {}).get("value") != \
            (was.get("HomeCurrency") or {}).get("value"):
        raise faults.business("The home currency cannot be changed once multicurrency is on.",
                              "CurrencyPrefs.HomeCurrency")
    for read_only in (("TaxPrefs", "PartnerTaxEnabled"), ("SalesFormsPrefs", "ETransactionEnabledStatus")):
        # System-defined: QBO keeps its own value whatever a client sends (*inferred*).
        section, name = read_only
        if name in (current.get(section) or {}):
            record.setdefault(section, {})[name] = current[section][name]
    return record


def default_preferences(company_name: str) -> dict:
    """Every section a US QuickBooks Online Plus company answers, shaped like a real answer
    (quickbooks-ruby's recorded preferences.xml; Intuit's Preferences reference)."""
    greeting = "Thank you for your business and have a great day!"

    def message(kind: str, text: str) -> dict:
        return {"Subject": f"{kind} from {company_name}", "Message": text}

    def custom(prefix: str, kind: str) -> list[dict]:
        return [{"CustomField": [{"Name": f"{prefix}{n}", "Type": "BooleanType", "BooleanValue": n == 1}
                                 for n in (1, 2, 3)]},
                {"CustomField": [{"Name": f"{kind}{n}", "Type": "StringType", "StringValue": "Crew #" if n == 1
                                  else ""} for n in (1,)]}]

    return {
        "AccountingInfoPrefs": {"UseAccountNumbers": False, "TrackDepartments": False,
                                "DepartmentTerminology": "Location", "ClassTrackingPerTxn": False,
                                "ClassTrackingPerTxnLine": False, "FirstMonthOfFiscalYear": "January",
                                "TaxYearMonth": "January", "TaxForm": "6", "CustomerTerminology": "Customers"},
        "ProductAndServicesPrefs": {"ForSales": True, "ForPurchase": True, "QuantityWithPriceAndRate": True,
                                    "QuantityOnHand": True},
        "SalesFormsPrefs": {"CustomField": custom("SalesFormsPrefs.UseSalesCustom", "SalesFormsPrefs.SalesCustomName"),
                            "CustomTxnNumbers": False, "EmailCopyToCompany": False, "AllowDeposit": False,
                            "AllowDiscount": True, "AllowEstimates": True, "ETransactionEnabledStatus": "NotApplicable",
                            "ETransactionAttachPDF": False, "ETransactionPaymentEnabled": False,
                            "IPNSupportEnabled": False, "AllowServiceDate": False, "AllowShipping": False,
                            "AutoApplyCredit": True, "AutoApplyPayments": True, "UsingPriceLevels": False,
                            "DefaultTerms": {"value": "3"}, "EstimateMessage": greeting,
                            "DefaultCustomerMessage": greeting},
        "EmailMessagesPrefs": {
            "InvoiceMessage": message("Invoice", "Your invoice is attached. We appreciate your prompt payment."),
            "EstimateMessage": message("Estimate", "Please review the estimate below. Feel free to contact us "
                                                   "if you have any questions."),
            "SalesReceiptMessage": message("Sales Receipt", "Your sales receipt is attached."),
            "StatementMessage": message("Statement", "Your statement is attached. Please remit payment at "
                                                     "your earliest convenience."),
        },
        "VendorAndPurchasesPrefs": {"TrackingByCustomer": True, "BillableExpenseTracking": True,
                                    "DefaultTerms": {"value": "3"}, "DefaultMarkup": 0,
                                    "POCustomField": custom("PurchasePrefs.UsePurchaseCustom",
                                                            "PurchasePrefs.PurchaseCustomName")},
        "TimeTrackingPrefs": {"UseServices": True, "BillCustomers": True, "ShowBillRateToAll": False,
                              "WorkWeekStartDate": "Monday", "MarkTimeEntriesBillable": True},
        "TaxPrefs": {"UsingSalesTax": True, "PartnerTaxEnabled": True, "TaxGroupCodeRef": {"value": "2"}},
        "CurrencyPrefs": {"MultiCurrencyEnabled": False, "HomeCurrency": {"value": HOME_CURRENCY}},
        "ReportPrefs": {"ReportBasis": "Accrual", "CalcAgingReportFromTxnDate": False},
        "OtherPrefs": {"NameValue": [
            {"Name": "SalesFormsPrefs.DefaultCustomerMessage", "Value": greeting},
            {"Name": "SalesFormsPrefs.DefaultItem", "Value": "1"},
            {"Name": "DTXCopyMemo", "Value": "false"},
            {"Name": "UncategorizedAssetAccountId", "Value": "0"},
            {"Name": "UncategorizedIncomeAccountId", "Value": "0"},
            {"Name": "UncategorizedExpenseAccountId", "Value": "0"},
            {"Name": "MasAccountId", "Value": "0"},
            {"Name": "SFCEnabled", "Value": "true"},
            {"Name": "DataPartner", "Value": "false"},
            {"Name": "Vendor1099Enabled", "Value": "true"},
            {"Name": "TimeTrackingFeatureEnabled", "Value": "true"},
            {"Name": "FDPEnabled", "Value": "false"},
            {"Name": "ProjectsEnabled", "Value": "false"},
            {"Name": "DateFormat", "Value": "Month Date Year separated by a slash"},
            {"Name": "DateFormatMnemonic", "Value": "MMDDYYYY_SEP_SLASH"},
            {"Name": "NumberFormat", "Value": "US Number Format"},
            {"Name": "NumberFormatMnemonic", "Value": "US_NB"},
            {"Name": "WarnDuplicateCheckNumber", "Value": "true"},
            {"Name": "WarnDuplicateBillNumber", "Value": "false"},
            {"Name": "WarnDuplicateJournalNumber", "Value": "false"},
            {"Name": "WarnDuplicateExpenseNumber", "Value": "false"},
        ]},
    }


# --- what a new company starts with beyond the seed's books -------------------------------------------------
def seed_us_extras(books: Books, company: Company, today: Any) -> None:
    """The tax agency the seed's California rate belongs to, and a budget for the year."""
    books.insert(company, "TaxAgency", {"DisplayName": "California Department of Tax and Fee Administration",
                                        "TaxTrackedOnSales": True, "TaxTrackedOnPurchases": False},
                 record_id="1")
    accounts = {a["Name"]: a["Id"] for a in company.table("Account").values()}
    year = today.year
    detail = [{"BudgetDate": f"{year}-{month:02d}-01", "Amount": amount,
               "AccountRef": {"value": accounts[name], "name": name}}
              for name, amount in (("Advertising", 250), ("Rent or Lease", 900), ("Utilities", 120))
              if name in accounts for month in range(1, 13)]
    books.insert(company, "Budget", {"Name": f"FY{year} Operating Budget", "StartDate": f"{year}-01-01",
                                     "EndDate": f"{year}-12-31", "BudgetType": "ProfitAndLoss",
                                     "BudgetEntryType": "Monthly", "Active": True, "BudgetDetail": detail},
                 record_id="1")
