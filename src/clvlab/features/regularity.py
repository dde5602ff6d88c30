"""How regular the customers' purchase timing is: Wheat and Morrison's estimate.

Wheat and Morrison ("Estimating purchase regularity with two interpurchase times", Journal of
Marketing Research 27, 1990): if the times between a customer's purchases are Erlang-k (k
independent exponential stages; k = 1 is the Poisson timing the NBD models assume), the share
``M = t1 / (t1 + t2)`` of two consecutive intervals is Beta(k, k) whatever the customer's rate,
so ``Var(M) = 1 / (4 (2k + 1))`` and ``k = (1 - 4 Var(M)) / (8 Var(M))``. BTYDplus
(``estimateRegularity(method = "wheat")``) takes each customer's last two intervals and one of
the two shares at random; here both shares of each customer count (``M`` and ``1 - M``, which
have the same distribution), so the estimate is the same in expectation and does not depend
on a random draw.

An estimate near 1 says purchase timing is as irregular as the NBD models assume; well above
1 (groceries, refills) says purchases come at regular intervals, which MBG/CNBD-k models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from clvlab.data.io import CUSTOMER_ID, DATE


@dataclass(frozen=True)
class Regularity:
    """Wheat and Morrison's estimate of the Erlang order ``k`` of interpurchase times.

    Attributes
    ----------
    k
        The estimate (NaN without customers with three purchase days, or when every share
        is the same).
    customers
        Customers with at least three purchase days, whose last two intervals it is from.
    """

    k: float
    customers: int

    def to_dict(self) -> dict[str, float | int | None]:
        """The estimate as data-report entries (None for no estimate: strict JSON)."""
        k = None if np.isnan(self.k) else self.k
        return {"regularity.wheat_morrison_k": k, "regularity.customers": self.customers}


def wheat_morrison(transactions: pd.DataFrame) -> Regularity:
    """Estimate the regularity of purchase timing from each customer's last two intervals
    between purchase days (see the module docstring).

    Parameters
    ----------
    transactions
        Canonical transactions: ``customer_id`` and ``date``; purchases of one day are one
        purchase, as the models count them.

    Returns
    -------
    Regularity
    """
    days = pd.DataFrame(
        {
            CUSTOMER_ID: transactions[CUSTOMER_ID].to_numpy(),
            "day": transactions[DATE].to_numpy().astype("datetime64[D]").astype(np.int64),
        }
    ).drop_duplicates()
    days = days.sort_values([CUSTOMER_ID, "day"], kind="stable")
    by_customer = days.groupby(CUSTOMER_ID, sort=False)
    from_the_end = by_customer.cumcount(ascending=False).to_numpy()
    purchase_days = by_customer["day"].transform("size").to_numpy()
    keep = (from_the_end < 3) & (purchase_days >= 3)
    triples = days["day"].to_numpy()[keep].reshape(-1, 3)
    first, second = np.diff(triples, axis=1).T.astype(float)
    share = first / (first + second)
    customers = len(share)
    if customers == 0:
        return Regularity(float("nan"), 0)
    pooled = np.concatenate([share, 1.0 - share])
    variance = float(np.var(pooled, ddof=1))
    k = (1.0 - 4.0 * variance) / (8.0 * variance) if variance > 0 else float("nan")
    return Regularity(k, customers)
