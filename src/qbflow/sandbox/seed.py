"""The books a new sandbox company starts with: the same believable small business every time.

A landscaping and design firm in California: a chart of accounts, terms, tax codes, payment methods,
products and services, customers, vendors, employees and a few months of transactions. Everything
but the settings and tax codes goes through the same rules as API calls, so it is consistent.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING

from qbflow.sandbox.us_entities import default_preferences, seed_us_extras

if TYPE_CHECKING:
    from qbflow.sandbox.books import Books, Company

ACCOUNTS = [  # (Name, AccountType, AccountSubType)
    ("Checking", "Bank", "Checking"),
    ("Savings", "Bank", "Savings"),
    ("Accounts Receivable (A/R)", "Accounts Receivable", "AccountsReceivable"),
    ("Undeposited Funds", "Other Current Asset", "UndepositedFunds"),
    ("Inventory Asset", "Other Current Asset", "Inventory"),
    ("Truck", "Fixed Asset", "Vehicles"),
    ("Accounts Payable (A/P)", "Accounts Payable", "AccountsPayable"),
    ("Visa", "Credit Card", "CreditCard"),
    ("Opening Balance Equity", "Equity", "OpeningBalanceEquity"),
    ("Retained Earnings", "Equity", "RetainedEarnings"),
    ("Services", "Income", "ServiceFeeIncome"),
    ("Sales of Product Income", "Income", "SalesOfProductIncome"),
    ("Design income", "Income", "ServiceFeeIncome"),
    ("Landscaping Services", "Income", "ServiceFeeIncome"),
    ("Interest Earned", "Other Income", "InterestEarned"),
    ("Cost of Goods Sold", "Cost of Goods Sold", "SuppliesMaterialsCogs"),
    ("Advertising", "Expense", "AdvertisingPromotional"),
    ("Bank Charges", "Expense", "BankCharges"),
    ("Office Expenses", "Expense", "OfficeGeneralAdministrativeExpenses"),
    ("Rent or Lease", "Expense", "RentOrLeaseOfBuildings"),
    ("Utilities", "Expense", "Utilities"),
    ("Supplies", "Expense", "SuppliesMaterials"),
    ("Travel", "Expense", "Travel"),
    ("Job Materials", "Expense", "SuppliesMaterials"),
]

TERMS = [("Due on receipt", 0), ("Net 15", 15), ("Net 30", 30), ("Net 60", 60)]
PAYMENT_METHODS = [("Cash", "NON_CREDIT_CARD"), ("Check", "NON_CREDIT_CARD"), ("Visa", "CREDIT_CARD"),
                   ("MasterCard", "CREDIT_CARD")]

# (Name, Type, UnitPrice, income account name, Description)
ITEMS = [
    ("Services", "Service", 0, "Services", ""),
    ("Design", "Service", 75, "Design income", "Custom design"),
    ("Gardening", "Service", 40, "Landscaping Services", "Weekly gardening service"),
    ("Hours", "Service", 0, "Services", ""),
    ("Installation", "Service", 50, "Landscaping Services", "Installation of landscape design"),
    ("Maintenance & Repair", "Service", 60, "Landscaping Services", "Maintenance and repair"),
    ("Pest Control", "Service", 35, "Landscaping Services", "Pest control services"),
    ("Trimming", "Service", 35, "Landscaping Services", "Tree and shrub trimming"),
    ("Rock Fountain", "NonInventory", 275, "Sales of Product Income", "Rock fountain"),
    ("Sprinkler Heads", "NonInventory", 2, "Sales of Product Income", "Sprinkler heads"),
    ("Soil", "NonInventory", 10, "Sales of Product Income", "2 cubic ft. bag"),
]

# (DisplayName, GivenName, FamilyName, email, phone, street, city, state, zip)
CUSTOMERS = [
    ("Alder Creek Veterinary", "Nora", "Whitfield", "frontdesk@aldercreekvet.example", "(650) 555-0134",
     "4581 Finch St.", "Bayshore", "CA", "94326"),
    ("Bayview Surf Co.", "Theo", "Marquez", "theo@bayviewsurf.example", "(415) 555-0178",
     "12 Ocean Dr.", "Half Moon Bay", "CA", "94213"),
    ("Cedar & Pine Cafe", "Lena", "Okafor", "hello@cedarpine.example", "(650) 555-0112",
     "321 Channing Ave.", "Palo Alto", "CA", "94303"),
    ("Dunmore Realty", "Victor", "Haldane", "victor@dunmorerealty.example", "(408) 555-0190",
     "88 Market St.", "San Jose", "CA", "95113"),
    ("Elm Street Dental", "Priya", "Raman", "office@elmstreetdental.example", "(650) 555-0165",
     "730 Elm St.", "Menlo Park", "CA", "94025"),
    ("Foxglove Bakery", "Marta", "Lindqvist", "orders@foxglovebakery.example", "(415) 555-0143",
     "19 Valencia St.", "San Francisco", "CA", "94103"),
    ("Granite Peak Fitness", "Owen", "Castellanos", "owen@granitepeak.example", "(510) 555-0121",
     "2200 Broadway", "Oakland", "CA", "94612"),
    ("Harbor Light Books", "Ines", "Duarte", "ines@harborlightbooks.example", "(831) 555-0187",
     "5 Wharf Rd.", "Santa Cruz", "CA", "95060"),
]

VENDORS = [
    ("Brightline Utilities", "billing@brightline.example", "Utilities"),
    ("Coastal Nursery Supply", "accounts@coastalnursery.example", "Job Materials"),
    ("Evergreen Office Co.", "ar@evergreenoffice.example", "Office Expenses"),
    ("Meadow Hardware", "sales@meadowhardware.example", "Supplies"),
    ("Norcal Fleet Fuel", "invoices@norcalfleet.example", "Travel"),
    ("Redwood Property Mgmt", "rent@redwoodpm.example", "Rent or Lease"),
]

EMPLOYEES = [("Dana", "Whitaker"), ("Jordan", "Ellery")]


SEEDS = ("small", "sample", "empty")
DEFAULT_SEED = "sample"


def seed_company(books: Books, company: Company, kind: str = DEFAULT_SEED) -> None:
    """Fill a new company; change events are not reported for the seed.

    `kind`: "small" (this module's small landscaping firm), "sample" (Intuit's sample company, Craig's Design
    and Landscaping Services) or "empty" (what Intuit's new empty company has).
    """
    from qbflow.sandbox.sample_company import seed_empty_company, seed_sample_company

    seeds = {"small": _seed, "sample": seed_sample_company, "empty": seed_empty_company}
    if kind not in seeds:
        raise ValueError(f"seed must be one of {list(SEEDS)}, got {kind!r}")
    listener, books.on_change = books.on_change, None
    try:
        seeds[kind](books, company)
    finally:
        books.on_change = listener


def _seed(books: Books, company: Company) -> None:
    realm = company.realm_id
    today = books.clock.company_now().date()
    seed_settings(books, company, today)
    books.insert(company, "TaxCode", {"Name": "California", "Description": "California sales tax",
                                      "Active": True, "Taxable": True, "TaxGroup": True,
                                      "SalesTaxRateList": {"TaxRateDetail": [
                                          {"TaxRateRef": {"value": "1", "name": "California"},
                                           "TaxTypeApplicable": "TaxOnAmount", "TaxOrder": 0}]},
                                      "PurchaseTaxRateList": {"TaxRateDetail": []}}, record_id="2")
    books.insert(company, "TaxRate", {"Name": "California", "Description": "California state sales tax",
                                      "Active": True, "RateValue": 8, "AgencyRef": {"value": "1"},
                                      "SpecialTaxType": "NONE", "DisplayType": "ReadOnly"}, record_id="1")

    accounts = {}
    for name, account_type, subtype in ACCOUNTS:
        accounts[name] = books.create(realm, "Account", {"Name": name, "AccountType": account_type,
                                                         "AccountSubType": subtype})["Id"]
    terms = {}
    for name, days in TERMS:
        terms[name] = books.create(realm, "Term", {"Name": name, "DueDays": days, "Type": "STANDARD"})["Id"]
    for name, kind in PAYMENT_METHODS:
        books.create(realm, "PaymentMethod", {"Name": name, "Type": kind})
    items = {}
    for name, item_type, price, income, description in ITEMS:
        body = {"Name": name, "Type": item_type, "UnitPrice": price,
                "IncomeAccountRef": {"value": accounts[income]}}
        if description:
            body["Description"] = description
        items[name] = books.create(realm, "Item", body)["Id"]
    customers = []
    for display, given, family, email, phone, street, city, state, zip_code in CUSTOMERS:
        addr = {"Line1": street, "City": city, "CountrySubDivisionCode": state, "PostalCode": zip_code}
        customers.append(books.create(realm, "Customer", {
            "DisplayName": display, "CompanyName": display, "GivenName": given, "FamilyName": family,
            "PrimaryEmailAddr": {"Address": email}, "PrimaryPhone": {"FreeFormNumber": phone},
            "BillAddr": addr, "ShipAddr": dict(addr), "SalesTermRef": {"value": terms["Net 30"]},
        })["Id"])
    vendors = []
    for display, email, _expense in VENDORS:
        vendors.append(books.create(realm, "Vendor", {
            "DisplayName": display, "CompanyName": display, "PrimaryEmailAddr": {"Address": email},
            "TermRef": {"value": terms["Net 30"]},
        })["Id"])
    for given, family in EMPLOYEES:
        books.create(realm, "Employee", {"GivenName": given, "FamilyName": family})

    def sales_line(item: str, qty: float) -> dict:
        price = next(p for n, _t, p, _i, _d in ITEMS if n == item)
        return {"Amount": qty * price, "DetailType": "SalesItemLineDetail",
                "SalesItemLineDetail": {"ItemRef": {"value": items[item]}, "Qty": qty, "UnitPrice": price}}

    def day(n: int) -> str:
        return (today - timedelta(days=n)).isoformat()

    invoices = [
        books.create(realm, "Invoice", {"CustomerRef": {"value": customers[0]}, "TxnDate": day(40),
                                        "Line": [sales_line("Gardening", 4), sales_line("Pest Control", 2)]}),
        books.create(realm, "Invoice", {"CustomerRef": {"value": customers[1]}, "TxnDate": day(25),
                                        "Line": [sales_line("Design", 6)]}),
        books.create(realm, "Invoice", {"CustomerRef": {"value": customers[2]}, "TxnDate": day(12),
                                        "Line": [sales_line("Installation", 8), sales_line("Soil", 15)]}),
        books.create(realm, "Invoice", {"CustomerRef": {"value": customers[3]}, "TxnDate": day(3),
                                        "Line": [sales_line("Rock Fountain", 1), sales_line("Trimming", 3)]}),
    ]
    books.create(realm, "Payment", {
        "CustomerRef": {"value": customers[0]}, "TotalAmt": invoices[0]["TotalAmt"], "TxnDate": day(20),
        "DepositToAccountRef": {"value": accounts["Undeposited Funds"]},
        "Line": [{"Amount": invoices[0]["TotalAmt"],
                  "LinkedTxn": [{"TxnId": invoices[0]["Id"], "TxnType": "Invoice"}]}],
    })
    books.create(realm, "Estimate", {"CustomerRef": {"value": customers[4]}, "TxnDate": day(5),
                                     "Line": [sales_line("Design", 10), sales_line("Installation", 12)]})
    books.create(realm, "SalesReceipt", {"CustomerRef": {"value": customers[5]}, "TxnDate": day(8),
                                         "DepositToAccountRef": {"value": accounts["Undeposited Funds"]},
                                         "Line": [sales_line("Sprinkler Heads", 20)]})
    for index, (amount, days_ago) in enumerate([(114.09, 30), (1250.0, 18), (86.44, 6)]):
        books.create(realm, "Bill", {
            "VendorRef": {"value": vendors[index]}, "TxnDate": day(days_ago),
            "Line": [{"Amount": amount, "DetailType": "AccountBasedExpenseLineDetail",
                      "AccountBasedExpenseLineDetail": {"AccountRef": {"value": accounts[VENDORS[index][2]]}}}],
        })
    books.create(realm, "Purchase", {
        "PaymentType": "CreditCard", "AccountRef": {"value": accounts["Visa"]},
        "EntityRef": {"value": vendors[4], "type": "Vendor"}, "TxnDate": day(9),
        "Line": [{"Amount": 63.15, "DetailType": "AccountBasedExpenseLineDetail",
                  "AccountBasedExpenseLineDetail": {"AccountRef": {"value": accounts["Travel"]}}}],
    })
    seed_us_extras(books, company, today)


def seed_settings(books: Books, company: Company, today: date) -> None:
    """A new company's CompanyInfo and Preferences (every seed has them, the empty company too)."""
    address = {"Id": "1", "Line1": "123 Sierra Way", "City": "San Pablo", "CountrySubDivisionCode": "CA",
               "PostalCode": "87999"}
    books.insert(company, "CompanyInfo", {
        "CompanyName": company.name, "LegalName": company.name, "CompanyAddr": dict(address),
        "CustomerCommunicationAddr": dict(address), "LegalAddr": dict(address),
        "PrimaryPhone": {}, "CompanyStartDate": today.replace(day=1).isoformat(),
        "FiscalYearStartMonth": "January", "Country": "US", "Email": {"Address": "noreply@quickbooks.example"},
        "WebAddr": {}, "SupportedLanguages": "en", "NameValue": [
            {"Name": "NeoEnabled", "Value": "true"}, {"Name": "IndustryType", "Value": "Landscaping Services"},
            {"Name": "CompanyType", "Value": "Other"}, {"Name": "OfferingSku", "Value": "QuickBooks Online Plus"},
        ],
    }, record_id="1")
    books.insert(company, "Preferences", default_preferences(company.name), record_id="1")
