"""The top-level JSON property names QuickBooks Online accepts for each entity, as plain data.

Transcribed from Intuit's published XSD schemas (Finance.xsd, IntuitNamesTypes.xsd, IntuitBaseTypes.xsd, as
shipped with Intuit's QuickBooks V3 SDKs): for each entity in `qbflow.catalog.entities.ENTITIES`, the element
and attribute *names* of its complexType and of every base type it extends (IntuitEntity gives Id, SyncToken,
MetaData, CustomField, AttachableRef, domain, status, sparse; Transaction, SalesTransaction, PurchaseByVendor
and NameBase give the shared transaction and name-list fields). Element names only: no types, no docs.
JSON names equal the XSD names, so these are the keys QBO's JSON binder knows; anything else in a request body
is refused with Fault 2010 ("Request has invalid or unsupported property", recorded in minimul/qbo_api
error/400_json.yml).
"""

from __future__ import annotations

# Keys every entity carries that say nothing about the entity's own fields.
IGNORED = frozenset({"sparse", "domain", "status", "Id", "SyncToken", "MetaData"})

# QBO's JSON binder stops listing known properties once its description passes this many characters.
_DESCRIPTION_LIMIT = 1000

FIELDS: dict[str, frozenset[str]] = {
    # Account < IntuitEntity (Finance.xsd)
    "Account": frozenset({
        "AccountAlias", "AccountEx", "AccountPurposes", "AccountSubType", "AccountType", "AcctNum", "AcctNumExtn",
        "Active", "AttachableRef", "BankNum", "Classification", "CurrencyRef", "CurrentBalance",
        "CurrentBalanceWithSubAccounts", "CustomField", "Description", "FIName", "FullyQualifiedName", "Id",
        "JournalCodeRef", "MetaData", "Name", "OnlineBankingEnabled", "OpeningBalance", "OpeningBalanceDate",
        "ParentRef", "SubAccount", "SyncToken", "TaxAccount", "TaxCodeRef", "TxnLocationType", "domain", "sparse",
        "status",
    }),
    # Customer < NameBase < IntuitEntity (IntuitNamesTypes.xsd)
    "Customer": frozenset({
        "ARAccountRef", "AcctNum", "Active", "AltContactName", "AlternatePhone", "AttachableRef", "Balance",
        "BalanceWithJobs", "BillAddr", "BillWithParent", "BusinessNumber", "CCDetail", "ClientCompanyId",
        "ClientEntityId", "CompanyName", "ContactName", "CreditLimit", "CurrencyRef", "CustomField", "CustomerEx",
        "CustomerTypeRef", "DefaultTaxCodeRef", "DisplayName", "FamilyName", "Fax", "FullyQualifiedName", "GSTIN",
        "GSTRegistrationType", "GivenName", "Id", "IntuitId", "IsCISContractor", "IsProject", "Job", "JobInfo",
        "Level", "MetaData", "MiddleName", "Mobile", "Notes", "OpenBalanceDate", "Organization", "OtherAddr",
        "OtherContactInfo", "OverDueBalance", "ParentRef", "PaymentMethodRef", "PreferredDeliveryMethod",
        "PriceLevelRef", "PrimaryEmailAddr", "PrimaryPhone", "PrimaryTaxIdentifier", "PrintOnCheckName", "ResaleNum",
        "RootCustomerRef", "SalesRepRef", "SalesTermRef", "SecondaryTaxIdentifier", "ShipAddr", "Source", "Suffix",
        "SyncToken", "TDSEnabled", "TaxExemptionReasonId", "TaxGroupCodeRef", "TaxRateRef", "TaxRegime", "Taxable",
        "Title", "TotalExpense", "TotalRevenue", "UserId", "V4IDPseudonym", "WebAddr", "domain", "sparse", "status",
    }),
    # Vendor < NameBase < IntuitEntity (IntuitNamesTypes.xsd)
    "Vendor": frozenset({
        "APAccountRef", "AcctNum", "Active", "AltContactName", "AlternatePhone", "AttachableRef", "Balance",
        "BillAddr", "BillRate", "BusinessNumber", "CISRate", "CompanyName", "ContactName", "CostRate", "CreditLimit",
        "CurrencyRef", "CustomField", "DefaultTaxCodeRef", "DisplayName", "FamilyName", "Fax", "FullyQualifiedName",
        "GSTIN", "GSTRegistrationType", "GivenName", "HasTPAR", "Id", "IntuitId", "IsSubContractor", "MetaData",
        "MiddleName", "Mobile", "Notes", "OpenBalanceDate", "Organization", "OtherAddr", "OtherContactInfo",
        "ParentRef", "PrefillAccountRef", "PrimaryEmailAddr", "PrimaryPhone", "PrintOnCheckName", "ShipAddr",
        "Source", "SubcontractorType", "Suffix", "SyncToken", "T4AEligible", "T5018Eligible", "TDSEnabled",
        "TDSEntityTypeId", "TDSOverrideThreshold", "TDSSectionTypeId", "TaxCountry", "TaxIdEffectiveDate",
        "TaxIdentifier", "TaxReportingBasis", "TermRef", "Title", "UserId", "V4IDPseudonym", "Vendor1099", "VendorEx",
        "VendorPaymentBankDetail", "VendorTypeRef", "WebAddr", "domain", "sparse", "status",
    }),
    # Employee < NameBase < IntuitEntity (IntuitNamesTypes.xsd)
    "Employee": frozenset({
        "Active", "AlternatePhone", "AttachableRef", "BillRate", "BillableTime", "BirthDate", "CompanyName",
        "CostRate", "CustomField", "DefaultTaxCodeRef", "DisplayName", "EmployeeEx", "EmployeeNumber", "EmployeeType",
        "FamilyName", "Fax", "FullyQualifiedName", "Gender", "GivenName", "HiredDate", "Id", "IntuitId", "MetaData",
        "MiddleName", "Mobile", "Notes", "Organization", "OtherAddr", "OtherContactInfo", "PrimaryAddr",
        "PrimaryEmailAddr", "PrimaryPhone", "PrintOnCheckName", "ReleasedDate", "SSN", "Suffix", "SyncToken", "Title",
        "UseTimeEntry", "UserId", "V4IDPseudonym", "WebAddr", "domain", "sparse", "status",
    }),
    # Item < IntuitEntity (Finance.xsd)
    "Item": frozenset({
        "AbatementRate", "Active", "AssetAccountRef", "AttachableRef", "AvgCost", "BuildPoint", "COGSAccountRef",
        "ClassRef", "CustomField", "DeferredRevenue", "DepositToAccountRef", "Description", "ExpenseAccountRef",
        "FullyQualifiedName", "Id", "IncomeAccountRef", "InvStartDate", "ItemAssemblyDetail", "ItemCategoryType",
        "ItemEx", "ItemGroupDetail", "Level", "ManPartNum", "MetaData", "Name", "ParentRef", "PaymentMethodRef",
        "PercentBased", "PrefVendorRef", "PrintGroupedItems", "PurchaseCost", "PurchaseDesc", "PurchaseTaxCodeRef",
        "PurchaseTaxIncluded", "QtyOnHand", "QtyOnPurchaseOrder", "QtyOnSalesOrder", "RatePercent", "ReorderPoint",
        "ReverseChargeRate", "SalesTaxCodeRef", "SalesTaxIncluded", "ServiceType", "Sku", "Source", "SpecialItem",
        "SpecialItemType", "SubItem", "SyncToken", "TaxClassificationRef", "Taxable", "TrackQtyOnHand", "Type",
        "UOMSetRef", "UQCDisplayText", "UQCId", "UnitPrice", "domain", "sparse", "status",
    }),
    # Term < IntuitEntity (Finance.xsd)
    "Term": frozenset({
        "Active", "AttachableRef", "CustomField", "DayOfMonthDue", "DiscountDayOfMonth", "DiscountDays",
        "DiscountPercent", "DueDays", "DueNextMonthDays", "Id", "MetaData", "Name", "SalesTermEx", "SyncToken",
        "Type", "domain", "sparse", "status",
    }),
    # TaxCode < IntuitEntity (Finance.xsd)
    "TaxCode": frozenset({
        "Active", "AdjustmentTaxRateList", "AttachableRef", "CustomField", "Description", "Hidden", "Id", "MetaData",
        "Name", "PurchaseTaxRateList", "SalesTaxRateList", "SyncToken", "TaxCodeConfigType", "TaxCodeEx", "TaxGroup",
        "Taxable", "domain", "sparse", "status",
    }),
    # TaxRate < IntuitEntity (Finance.xsd)
    "TaxRate": frozenset({
        "Active", "AgencyRef", "AttachableRef", "CustomField", "Description", "DisplayType", "EffectiveTaxRate", "Id",
        "MetaData", "Name", "OriginalTaxRate", "RateValue", "SpecialTaxType", "SyncToken", "TaxRateEx",
        "TaxReturnLineRef", "domain", "sparse", "status",
    }),
    # PaymentMethod < IntuitEntity (Finance.xsd)
    "PaymentMethod": frozenset({
        "Active", "AttachableRef", "CustomField", "Id", "MetaData", "Name", "PaymentMethodEx", "SyncToken", "Type",
        "domain", "sparse", "status",
    }),
    # Class < IntuitEntity (Finance.xsd)
    "Class": frozenset({
        "Active", "AttachableRef", "ClassEx", "CustomField", "FullyQualifiedName", "Id", "MetaData", "Name",
        "ParentRef", "SubClass", "SyncToken", "domain", "sparse", "status",
    }),
    # Department < IntuitEntity (Finance.xsd)
    "Department": frozenset({
        "Active", "Address", "AttachableRef", "CustomField", "DepartmentEx", "FullyQualifiedName", "Id", "MetaData",
        "Name", "ParentRef", "SubDepartment", "SyncToken", "domain", "sparse", "status",
    }),
    # Invoice < SalesTransaction < Transaction < IntuitEntity (Finance.xsd)
    "Invoice": frozenset({
        "ARAccountRef", "AllowIPNPayment", "AllowOnlineACHPayment", "AllowOnlineCreditCardPayment",
        "AllowOnlinePayPalPayment", "AllowOnlinePayment", "ApplyTaxAfterDiscount", "AttachableRef", "AutoDocNumber",
        "AutoPayEligible", "Balance", "BillAddr", "BillEmail", "BillEmailBcc", "BillEmailCc", "CfdiUse",
        "CheckPayment", "ClassRef", "ConvenienceFeeDetail", "CreditCardPayment", "CurrencyRef", "CustomField",
        "CustomerMemo", "CustomerRef", "DeliveryInfo", "DepartmentRef", "Deposit", "DepositToAccountRef",
        "DiscountAmt", "DiscountRate", "DocNumber", "DueDate", "ECloudStatusTimeStamp", "EInvoiceStatus",
        "EmailStatus", "ExchangeRate", "Exportation", "FOB", "FinanceCharge", "FinancingProductType",
        "FreeFormAddress", "GlobalInfo", "GlobalTaxCalculation", "GovtTxnRefIdentifier", "GratuityEnabled",
        "HomeBalance", "HomeTotalAmt", "HomeTotalCostAmount", "Id", "InvoiceEx", "InvoiceLink",
        "InvoiceLinkExpiryDate", "InvoiceLinkSecurityCode", "LessCIS", "Line", "LinkedTxn", "MetaData", "PONumber",
        "PaymentDetailsMessage", "PaymentMethodRef", "PaymentRefNum", "PaymentType", "PrintStatus", "PrivateNote",
        "ProjectRef", "RecurDataRef", "RecurringInfo", "RemitToRef", "SalesRepRef", "SalesTermRef",
        "SchedulePayEligible", "ScheduledPaymentId", "ShipAddr", "ShipDate", "ShipFromAddr", "ShipMethodRef",
        "ShippingTaxIncludedInTotalTax", "SubscriptionPaymentsSetting", "SyncToken", "Tag", "TaxExemptionRef",
        "TaxFormNum", "TaxFormType", "TemplateRef", "TotalAmt", "TotalCostAmount", "TrackingNum",
        "TransactionLocationType", "TxnApprovalInfo", "TxnDate", "TxnSource", "TxnStatus", "TxnTaxDetail",
        "callToAction", "domain", "invoiceStatus", "invoiceStatusLog", "sparse", "status",
    }),
    # Estimate < SalesTransaction < Transaction < IntuitEntity (Finance.xsd)
    "Estimate": frozenset({
        "ARAccountRef", "AcceptedBy", "AcceptedDate", "ApplyTaxAfterDiscount", "AttachableRef", "AutoDocNumber",
        "Balance", "BillAddr", "BillEmail", "BillEmailBcc", "BillEmailCc", "CheckPayment", "ClassRef",
        "CreditCardPayment", "CurrencyRef", "CustomField", "CustomerMemo", "CustomerRef", "DeliveryInfo",
        "DepartmentRef", "DepositToAccountRef", "DiscountAmt", "DiscountRate", "DocNumber", "DueDate", "EmailStatus",
        "EstimateEx", "ExchangeRate", "ExpirationDate", "FOB", "FinanceCharge", "FreeFormAddress",
        "GlobalTaxCalculation", "GovtTxnRefIdentifier", "HomeBalance", "HomeTotalAmt", "HomeTotalCostAmount", "Id",
        "Line", "LinkedTxn", "MetaData", "PONumber", "PaymentMethodRef", "PaymentRefNum", "PaymentType",
        "PrintStatus", "PrivateNote", "ProjectRef", "RecurDataRef", "RecurringInfo", "RemitToRef", "SalesRepRef",
        "SalesTermRef", "ShipAddr", "ShipDate", "ShipFromAddr", "ShipMethodRef", "ShippingTaxIncludedInTotalTax",
        "SyncToken", "Tag", "TaxExemptionRef", "TaxFormNum", "TaxFormType", "TemplateRef", "TotalAmt",
        "TotalCostAmount", "TrackingNum", "TransactionLocationType", "TxnApprovalInfo", "TxnDate", "TxnSource",
        "TxnStatus", "TxnTaxDetail", "domain", "sparse", "status",
    }),
    # SalesReceipt < SalesTransaction < Transaction < IntuitEntity (Finance.xsd)
    "SalesReceipt": frozenset({
        "ARAccountRef", "ApplyTaxAfterDiscount", "AttachableRef", "AutoDocNumber", "Balance", "BillAddr", "BillEmail",
        "BillEmailBcc", "BillEmailCc", "CheckPayment", "ClassRef", "CreditCardPayment", "CurrencyRef", "CustomField",
        "CustomerMemo", "CustomerRef", "DeliveryInfo", "DepartmentRef", "DepositToAccountRef", "DiscountAmt",
        "DiscountRate", "DocNumber", "DueDate", "EmailStatus", "ExchangeRate", "FOB", "FinanceCharge",
        "FreeFormAddress", "GlobalTaxCalculation", "GovtTxnRefIdentifier", "HomeBalance", "HomeTotalAmt",
        "HomeTotalCostAmount", "Id", "LessCIS", "Line", "LinkedTxn", "MetaData", "PONumber", "PaymentMethodRef",
        "PaymentRefNum", "PaymentType", "PrintStatus", "PrivateNote", "ProjectRef", "RecurDataRef", "RecurringInfo",
        "RemitToRef", "SalesReceiptEx", "SalesRepRef", "SalesTermRef", "ShipAddr", "ShipDate", "ShipFromAddr",
        "ShipMethodRef", "ShippingTaxIncludedInTotalTax", "SyncToken", "Tag", "TaxExemptionRef", "TaxFormNum",
        "TaxFormType", "TemplateRef", "TotalAmt", "TotalCostAmount", "TrackingNum", "TransactionLocationType",
        "TxnApprovalInfo", "TxnDate", "TxnSource", "TxnStatus", "TxnTaxDetail", "domain", "sparse", "status",
    }),
    # CreditMemo < SalesTransaction < Transaction < IntuitEntity (Finance.xsd)
    "CreditMemo": frozenset({
        "ARAccountRef", "ApplyTaxAfterDiscount", "AttachableRef", "AutoDocNumber", "Balance", "BillAddr", "BillEmail",
        "BillEmailBcc", "BillEmailCc", "CheckPayment", "ClassRef", "CreditCardPayment", "CreditMemoEx", "CurrencyRef",
        "CustomField", "CustomerMemo", "CustomerRef", "DeliveryInfo", "DepartmentRef", "DepositToAccountRef",
        "DiscountAmt", "DiscountRate", "DocNumber", "DueDate", "EmailStatus", "ExchangeRate", "FOB", "FinanceCharge",
        "FreeFormAddress", "GlobalTaxCalculation", "GovtTxnRefIdentifier", "HomeBalance", "HomeTotalAmt",
        "HomeTotalCostAmount", "Id", "InvoiceRef", "Line", "LinkedTxn", "MetaData", "PONumber", "PaymentMethodRef",
        "PaymentRefNum", "PaymentType", "PrintStatus", "PrivateNote", "ProjectRef", "RecurDataRef", "RecurringInfo",
        "RemainingCredit", "RemitToRef", "SalesRepRef", "SalesTermRef", "ShipAddr", "ShipDate", "ShipFromAddr",
        "ShipMethodRef", "ShippingTaxIncludedInTotalTax", "SyncToken", "Tag", "TaxExemptionRef", "TaxFormNum",
        "TaxFormType", "TemplateRef", "TotalAmt", "TotalCostAmount", "TrackingNum", "TransactionLocationType",
        "TxnApprovalInfo", "TxnDate", "TxnSource", "TxnStatus", "TxnTaxDetail", "domain", "sparse", "status",
    }),
    # RefundReceipt < SalesTransaction < Transaction < IntuitEntity (Finance.xsd)
    "RefundReceipt": frozenset({
        "ARAccountRef", "ApplyTaxAfterDiscount", "AttachableRef", "AutoDocNumber", "Balance", "BillAddr", "BillEmail",
        "BillEmailBcc", "BillEmailCc", "CheckPayment", "ClassRef", "CreditCardPayment", "CurrencyRef", "CustomField",
        "CustomerMemo", "CustomerRef", "DeliveryInfo", "DepartmentRef", "DepositToAccountRef", "DiscountAmt",
        "DiscountRate", "DocNumber", "DueDate", "EmailStatus", "ExchangeRate", "FOB", "FinanceCharge",
        "FreeFormAddress", "GlobalTaxCalculation", "GovtTxnRefIdentifier", "HomeBalance", "HomeTotalAmt",
        "HomeTotalCostAmount", "Id", "Line", "LinkedTxn", "MetaData", "PONumber", "PaymentMethodRef", "PaymentRefNum",
        "PaymentType", "PrintStatus", "PrivateNote", "ProjectRef", "RecurDataRef", "RecurringInfo", "RefundReceiptEx",
        "RemainingCredit", "RemitToRef", "SalesRepRef", "SalesTermRef", "ShipAddr", "ShipDate", "ShipFromAddr",
        "ShipMethodRef", "ShippingTaxIncludedInTotalTax", "SyncToken", "Tag", "TaxExemptionRef", "TaxFormNum",
        "TaxFormType", "TemplateRef", "TotalAmt", "TotalCostAmount", "TrackingNum", "TransactionLocationType",
        "TxnApprovalInfo", "TxnDate", "TxnSource", "TxnStatus", "TxnTaxDetail", "domain", "sparse", "status",
    }),
    # Payment < Transaction < IntuitEntity (Finance.xsd)
    "Payment": frozenset({
        "ARAccountRef", "AttachableRef", "CheckPayment", "CreditCardPayment", "CurrencyRef", "CustomField",
        "CustomerRef", "DepartmentRef", "DepositToAccountRef", "DocNumber", "ExchangeRate", "HomeTotalCostAmount",
        "Id", "Line", "LinkedTxn", "MetaData", "PaymentEx", "PaymentMethodRef", "PaymentRefNum", "PaymentType",
        "PrivateNote", "ProcessPayment", "ProjectRef", "RecurDataRef", "RecurringInfo", "RemitToRef", "SyncToken",
        "Tag", "TaxFormNum", "TaxFormType", "TotalAmt", "TotalCostAmount", "TransactionLocationType",
        "TxnApprovalInfo", "TxnDate", "TxnSource", "TxnStatus", "TxnTaxDetail", "UnappliedAmt", "domain", "sparse",
        "status",
    }),
    # Deposit < Transaction < IntuitEntity (Finance.xsd)
    "Deposit": frozenset({
        "AttachableRef", "CashBack", "CurrencyRef", "CustomField", "DepartmentRef", "DepositEx",
        "DepositToAccountRef", "DocNumber", "ExchangeRate", "GlobalTaxCalculation", "HomeTotalAmt",
        "HomeTotalCostAmount", "Id", "Line", "LinkedTxn", "MetaData", "PrivateNote", "ProjectRef", "RecurDataRef",
        "RecurringInfo", "SyncToken", "Tag", "TaxFormNum", "TaxFormType", "TotalAmt", "TotalCostAmount",
        "TransactionLocationType", "TxnApprovalInfo", "TxnDate", "TxnSource", "TxnStatus", "TxnTaxDetail", "domain",
        "sparse", "status",
    }),
    # Bill < PurchaseByVendor < Transaction < IntuitEntity (Finance.xsd)
    "Bill": frozenset({
        "APAccountRef", "AttachableRef", "Balance", "BillEmail", "BillEx", "CurrencyRef", "CustomField",
        "DepartmentRef", "DocNumber", "DueDate", "ExchangeRate", "GlobalTaxCalculation", "HomeBalance",
        "HomeTotalCostAmount", "Id", "IncludeInAnnualTPAR", "LessCIS", "Line", "LinkedTxn", "Memo", "MetaData",
        "PayerRef", "PrivateNote", "ProjectRef", "RecurDataRef", "RecurringInfo", "RemitToAddr", "ReplyEmail",
        "SalesTermRef", "ShipAddr", "SyncToken", "Tag", "TaxFormNum", "TaxFormType", "TotalAmt", "TotalCostAmount",
        "TransactionLocationType", "TxnApprovalInfo", "TxnDate", "TxnSource", "TxnStatus", "TxnTaxDetail",
        "VendorAddr", "VendorRef", "domain", "sparse", "status",
    }),
    # BillPayment < Transaction < IntuitEntity (Finance.xsd)
    "BillPayment": frozenset({
        "APAccountRef", "AttachableRef", "BillPaymentEx", "CheckPayment", "CreditCardPayment", "CurrencyRef",
        "CustomField", "DepartmentRef", "DocNumber", "ExchangeRate", "HomeTotalCostAmount", "Id", "Line", "LinkedTxn",
        "MetaData", "PayType", "PrivateNote", "ProjectRef", "RecurDataRef", "RecurringInfo", "SyncToken", "Tag",
        "TaxFormNum", "TaxFormType", "TotalAmt", "TotalCostAmount", "TransactionLocationType", "TxnApprovalInfo",
        "TxnDate", "TxnSource", "TxnStatus", "TxnTaxDetail", "VendorAddr", "VendorRef", "domain", "sparse", "status",
    }),
    # Purchase < Transaction < IntuitEntity (Finance.xsd)
    "Purchase": frozenset({
        "AccountRef", "AttachableRef", "CheckPayment", "Credit", "CreditCardPayment", "CurrencyRef", "CustomField",
        "DepartmentRef", "DocNumber", "EntityRef", "ExchangeRate", "GlobalTaxCalculation", "HomeTotalCostAmount",
        "Id", "IncludeInAnnualTPAR", "LessCIS", "Line", "LinkedTxn", "Memo", "MetaData", "PaymentMethodRef",
        "PaymentRefNum", "PaymentType", "PrintStatus", "PrivateNote", "ProjectRef", "PurchaseEx", "RecurDataRef",
        "RecurringInfo", "RemitToAddr", "SyncToken", "Tag", "TaxFormNum", "TaxFormType", "TotalAmt",
        "TotalCostAmount", "TransactionLocationType", "TxnApprovalInfo", "TxnDate", "TxnId", "TxnNum", "TxnSource",
        "TxnStatus", "TxnTaxDetail", "domain", "sparse", "status",
    }),
    # PurchaseOrder < PurchaseByVendor < Transaction < IntuitEntity (Finance.xsd)
    "PurchaseOrder": frozenset({
        "APAccountRef", "AttachableRef", "BillEmail", "ClassRef", "CurrencyRef", "CustomField", "DepartmentRef",
        "DocNumber", "DropShipToEntity", "DueDate", "EmailStatus", "ExchangeRate", "ExpectedDate", "FOB",
        "GlobalTaxCalculation", "HomeTotalCostAmount", "Id", "InventorySiteRef", "Line", "LinkedTxn",
        "ManuallyClosed", "Memo", "MetaData", "POEmail", "POStatus", "PrintStatus", "PrivateNote", "ProjectRef",
        "PurchaseOrderEx", "RecurDataRef", "RecurringInfo", "ReimbursableInfoRef", "ReplyEmail", "SalesTermRef",
        "ShipAddr", "ShipMethodRef", "ShipTo", "SyncToken", "Tag", "TaxCodeRef", "TaxFormNum", "TaxFormType",
        "TemplateRef", "TotalAmt", "TotalCostAmount", "TransactionLocationType", "TxnApprovalInfo", "TxnDate",
        "TxnSource", "TxnStatus", "TxnTaxDetail", "VendorAddr", "VendorRef", "domain", "sparse", "status",
    }),
    # VendorCredit < PurchaseByVendor < Transaction < IntuitEntity (Finance.xsd)
    "VendorCredit": frozenset({
        "APAccountRef", "AttachableRef", "Balance", "BillEmail", "CurrencyRef", "CustomField", "DepartmentRef",
        "DocNumber", "ExchangeRate", "GlobalTaxCalculation", "HomeTotalCostAmount", "Id", "IncludeInAnnualTPAR",
        "Line", "LinkedTxn", "Memo", "MetaData", "PrivateNote", "ProjectRef", "RecurDataRef", "RecurringInfo",
        "ReplyEmail", "SyncToken", "Tag", "TaxFormNum", "TaxFormType", "TotalAmt", "TotalCostAmount",
        "TransactionLocationType", "TxnApprovalInfo", "TxnDate", "TxnSource", "TxnStatus", "TxnTaxDetail",
        "VendorAddr", "VendorCreditEx", "VendorRef", "domain", "sparse", "status",
    }),
    # JournalEntry < Transaction < IntuitEntity (Finance.xsd)
    "JournalEntry": frozenset({
        "Adjustment", "AttachableRef", "CurrencyRef", "CustomField", "DepartmentRef", "DocNumber",
        "EnteredInHomeCurrency", "ExchangeRate", "GlobalTaxCalculation", "HomeCurrencyAdjustment", "HomeTotalAmt",
        "HomeTotalCostAmount", "Id", "JournalEntryEx", "Line", "LinkedTxn", "MetaData", "PrivateNote", "ProjectRef",
        "RecurDataRef", "RecurringInfo", "SyncToken", "Tag", "TaxFormNum", "TaxFormType", "TotalAmt",
        "TotalCostAmount", "TransactionLocationType", "TxnApprovalInfo", "TxnDate", "TxnSource", "TxnStatus",
        "TxnTaxDetail", "domain", "sparse", "status",
    }),
    # Attachable < IntuitEntity (Finance.xsd)
    "Attachable": frozenset({
        "AttachableEx", "AttachableRef", "Category", "ContentType", "CustomField", "FileAccessUri", "FileName", "Id",
        "Lat", "Long", "MetaData", "Note", "PlaceName", "Size", "SyncToken", "Tag", "TempDownloadUri",
        "ThumbnailFileAccessUri", "ThumbnailTempDownloadUri", "domain", "sparse", "status",
    }),
    # CompanyInfo < IntuitEntity (Finance.xsd)
    "CompanyInfo": frozenset({
        "AttachableRef", "CompanyAddr", "CompanyEmailAddr", "CompanyFileName", "CompanyInfoEx", "CompanyName",
        "CompanyStartDate", "CompanyURL", "CompanyUserAdminEmail", "CompanyUserId", "Country", "CustomField",
        "CustomerCommunicationAddr", "CustomerCommunicationEmailAddr", "DefaultTimeZone", "Email", "EmployerId",
        "Fax", "FifoCalculationStatus", "FiscalYearStartMonth", "FlavorStratum", "Id", "LastImportedTime",
        "LastSyncTime", "LegalAddr", "LegalName", "MetaData", "Mobile", "MultiByteCharsSupported", "NameValue",
        "OtherAddr", "OtherContactInfo", "PrimaryPhone", "QBVersion", "SampleFile", "ShipAddr", "SupportedLanguages",
        "SyncToken", "TaxYearStartMonth", "WebAddr", "domain", "sparse", "status",
    }),
    # Preferences < IntuitEntity (Finance.xsd)
    "Preferences": frozenset({
        "AccountingInfoPrefs", "AdvancedInventoryPrefs", "AttachableRef", "CurrencyPrefs", "CustomField",
        "EmailMessagesPrefs", "FinanceChargesPrefs", "Id", "MetaData", "OtherPrefs", "PrintDocumentPrefs",
        "ProductAndServicesPrefs", "ReportPrefs", "SalesFormsPrefs", "SyncToken", "TaxPrefs", "TimeTrackingPrefs",
        "VendorAndPurchasesPrefs", "domain", "sparse", "status",
    }),
    # Budget < IntuitEntity (Finance.xsd)
    "Budget": frozenset({
        "Active", "AttachableRef", "BudgetDetail", "BudgetEntryType", "BudgetType", "CustomField", "EndDate", "Id",
        "MetaData", "Name", "StartDate", "SyncToken", "domain", "sparse", "status",
    }),
    # TaxAgency < Vendor < NameBase < IntuitEntity (IntuitNamesTypes.xsd)
    "TaxAgency": frozenset({
        "APAccountRef", "AcctNum", "Active", "AltContactName", "AlternatePhone", "AttachableRef", "Balance", "BillAddr",
        "BillRate", "BusinessNumber", "CISRate", "CompanyName", "ContactName", "CostRate", "CreditLimit", "CurrencyRef",
        "CustomField", "DefaultTaxCodeRef", "DisplayName", "FamilyName", "Fax", "FullyQualifiedName", "GSTIN",
        "GSTRegistrationType", "GivenName", "HasTPAR", "Id", "IntuitId", "IsSubContractor", "LastFileDate", "MetaData",
        "MiddleName", "Mobile", "Notes", "OpenBalanceDate", "Organization", "OtherAddr", "OtherContactInfo",
        "ParentRef", "PrefillAccountRef", "PrimaryEmailAddr", "PrimaryPhone", "PrintOnCheckName", "ReportingPeriod",
        "SalesTaxCodeRef", "SalesTaxCountry", "SalesTaxReturnRef", "ShipAddr", "Source", "SubcontractorType", "Suffix",
        "SyncToken", "T4AEligible", "T5018Eligible", "TDSEnabled", "TDSEntityTypeId", "TDSOverrideThreshold",
        "TDSSectionTypeId", "TaxAgencyConfig", "TaxAgencyExt", "TaxCountry", "TaxIdEffectiveDate", "TaxIdentifier",
        "TaxOnPurchasesAccountRef", "TaxOnTax", "TaxRegistrationNumber", "TaxReportingBasis", "TaxTrackedOnPurchases",
        "TaxTrackedOnSales", "TaxTrackedOnSalesAccountRef", "TermRef", "Title", "UserId", "V4IDPseudonym", "Vendor1099",
        "VendorEx", "VendorPaymentBankDetail", "VendorTypeRef", "WebAddr", "domain", "sparse", "status",
    }),
    # CompanyCurrency < IntuitEntity (Finance.xsd)
    "CompanyCurrency": frozenset({
        "Active", "AttachableRef", "Code", "CompanyCurrencyEx", "CustomField", "Id", "MetaData", "Name", "SyncToken",
        "domain", "sparse", "status",
    }),
    # TimeActivity < IntuitEntity (Finance.xsd)
    "TimeActivity": frozenset({
        "AttachableRef", "BillableStatus", "BreakHours", "BreakMinutes", "BreakSeconds", "ClassRef", "CostRate",
        "CustomField", "CustomerRef", "DepartmentRef", "Description", "EmployeeRef", "EndTime", "HourlyRate", "Hours",
        "HoursInEmployeeTimeZone", "Id", "ItemRef", "MetaData", "Minutes", "NameOf", "OtherNameRef", "PayrollItemRef",
        "ProjectRef", "Seconds", "StartTime", "SyncToken", "Taxable", "TimeActivityEx", "TimeChargeId", "TimeZone",
        "TxnDate", "VendorRef", "domain", "sparse", "status",
    }),
    # Transfer < Transaction < IntuitEntity (Finance.xsd)
    "Transfer": frozenset({
        "Amount", "AttachableRef", "ClassRef", "CurrencyRef", "CustomField", "DepartmentRef", "DocNumber",
        "ExchangeRate", "FromAccountRef", "HomeTotalCostAmount", "Id", "Line", "LinkedTxn", "MetaData", "PrivateNote",
        "ProjectRef", "RecurDataRef", "RecurringInfo", "SyncToken", "Tag", "TaxFormNum", "TaxFormType", "ToAccountRef",
        "TotalCostAmount", "TransactionLocationType", "TransferEx", "TxnApprovalInfo", "TxnDate", "TxnSource",
        "TxnStatus", "TxnTaxDetail", "domain", "sparse", "status",
    }),
    # CreditCardPaymentTxn < Transaction < IntuitEntity (Finance.xsd); the endpoint is creditcardpayment
    "CreditCardPayment": frozenset({
        "Amount", "AttachableRef", "BankAccountRef", "CheckNum", "CreditCardAccountRef", "CreditCardPaymentEx",
        "CurrencyRef", "CustomField", "DepartmentRef", "DocNumber", "ExchangeRate", "HomeTotalCostAmount", "Id", "Line",
        "LinkedTxn", "Memo", "MetaData", "PrintStatus", "PrivateNote", "ProjectRef", "RecurDataRef", "RecurringInfo",
        "SyncToken", "Tag", "TaxFormNum", "TaxFormType", "TotalCostAmount", "TransactionLocationType",
        "TxnApprovalInfo", "TxnDate", "TxnSource", "TxnStatus", "TxnTaxDetail", "VendorRef", "domain", "sparse",
        "status",
    }),
    # RecurringTransaction < IntuitEntity (IntuitRestServiceDef.xsd): one wrapped transaction
    "RecurringTransaction": frozenset({
        "AttachableRef", "CustomField", "Id", "IntuitObject", "MetaData", "SyncToken", "domain", "sparse", "status",
    }),
    # ExchangeRate < IntuitEntity (Finance.xsd)
    "ExchangeRate": frozenset({
        "AsOfDate", "AttachableRef", "CustomField", "ExchangeRateEx", "Id", "MetaData", "Rate", "SourceCurrencyCode",
        "SyncToken", "TargetCurrencyCode", "domain", "sparse", "status",
    }),
}


# The Java class QBO names in its 2010 fault when it differs from the entity's name.
_CLASS_NAMES = {"CreditCardPayment": "CreditCardPaymentTxn"}


def known_fields(entity: str) -> frozenset[str]:
    """The top-level property names QBO knows for `entity` (wire spelling); KeyError if not an entity."""
    return FIELDS[entity]


def known_count(entity: str) -> int:
    """How many top-level property names QBO knows for `entity`."""
    return len(FIELDS[entity])


def unknown_fields(entity: str, body: dict) -> list[str]:
    """The top-level keys of `body` that `entity` does not know, in the body's order.

    The envelope keys every entity shares (sparse, domain, status, Id, SyncToken, MetaData) never count.
    """
    known = FIELDS[entity]
    return [key for key in body if key not in known and key not in IGNORED]


def unknown_field_fault_detail(entity: str, field: str) -> str:
    """The Detail text of QBO's Fault 2010 for an unrecognised property `field` sent for `entity`.

    The same shape as the real answer: the class QBO tried to bind, the number of known properties and
    their names, cut off (with ``[truncated]``) once the list passes about a thousand characters.
    """
    names = sorted(FIELDS[entity])
    listing = f" ({len(names)} known properties: "
    for index, name in enumerate(names):
        listing += f'"{name}"'
        if len(listing) > _DESCRIPTION_LIMIT:
            listing += " [truncated]"
            break
        if index < len(names) - 1:
            listing += ", "
    listing += "])"
    java_class = _CLASS_NAMES.get(entity, entity)
    return (f'Property Name:Unrecognized field "{field}" (class com.intuit.schema.finance.v3.{java_class}), '
            f"not marked as ignorable{listing}\n specified is unsupported or invalid")
