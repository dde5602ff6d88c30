"""Reading, validating, cleaning and resolving transactions into the canonical table."""

from clvlab.data.clean import CleaningPolicy, DataReport, clean_transactions
from clvlab.data.io import AMOUNT, CUSTOMER_ID, DATE, read_transactions

__all__ = [
    "AMOUNT",
    "CUSTOMER_ID",
    "DATE",
    "CleaningPolicy",
    "DataReport",
    "clean_transactions",
    "read_transactions",
]
