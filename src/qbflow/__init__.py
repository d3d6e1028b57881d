"""qbflow: automate QuickBooks Online."""

__version__ = "0.1.0"
