"""Reading, validating, cleaning and resolving transactions into the canonical table."""

from clvlab.data.clean import CleaningPolicy, DataReport, clean_transactions
from clvlab.data.identity import IdentityReport, read_links, resolve_identities
from clvlab.data.io import AMOUNT, CUSTOMER_ID, DATE, read_transactions

__all__ = [
    "AMOUNT",
    "CUSTOMER_ID",
    "DATE",
    "CleaningPolicy",
    "DataReport",
    "IdentityReport",
    "clean_transactions",
    "read_links",
    "read_transactions",
    "resolve_identities",
]
