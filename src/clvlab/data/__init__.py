"""Reading, validating, cleaning and resolving transactions into the canonical table; reading
subscriptions (contractual churn)."""

from clvlab.data.clean import CleaningPolicy, DataReport, clean_transactions
from clvlab.data.identity import IdentityReport, read_links, resolve_identities
from clvlab.data.io import AMOUNT, CUSTOMER_ID, DATE, read_transactions
from clvlab.data.subscriptions import (
    SubscriptionReport,
    read_subscriptions,
    subscriber_periods,
)

__all__ = [
    "AMOUNT",
    "CUSTOMER_ID",
    "DATE",
    "CleaningPolicy",
    "DataReport",
    "IdentityReport",
    "SubscriptionReport",
    "clean_transactions",
    "read_links",
    "read_subscriptions",
    "read_transactions",
    "resolve_identities",
    "subscriber_periods",
]
