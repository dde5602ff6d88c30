r"""What the purchase-and-dropout models (BG/NBD, MBG/NBD, Pareto/NBD) share: ``fit`` and the
predictions, validated and documented once.

Every prediction rests on one fact of these models: a customer's future depends on the past
only through being alive at :math:`T` and the posterior of his rates given that, so each one is
:math:`P(\text{alive} \mid x, t_x, T)` times the same prediction for a customer known to be
alive (plus, for "no purchase", the customers who dropped out). A model supplies its
likelihood and its formulas through a few small methods, and states the formulas in the Notes
of its class docstring:

* ``_problem_for``: the optimisation problem of a compressed data set;
* ``_log_dropout_odds``: the log odds :math:`D` of having dropped out by :math:`T`, so that
  :math:`P(\text{alive}) = 1 / (1 + e^D)`;
* ``_expected_if_alive``, ``_no_purchase`` and ``_pmf``: the other predictions, on
  validated arrays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar, Self

import numpy as np
import pandas as pd
from scipy.special import expit

from clvlab.errors import DataError
from clvlab.models.btyd.base import (
    WEIGHTS_NOT_PASSED,
    BTYDEstimator,
    CompressedRows,
    FitProblem,
    as_float_arrays,
    history_arrays,
    purchase_histories_to_fit,
    renamed_sample_weight,
    times_since_first_purchase,
)


class PurchaseModel(BTYDEstimator):
    """Base of the purchase-and-dropout models: fitting on an RFM table and the predictions.

    Parameters and attributes are those of
    :class:`~clvlab.models.btyd.base.BTYDEstimator`; each model documents its parameters
    (``params_``) and formulas in its own class docstring.
    """

    #: What the data leave unidentified when no customer made a repeat purchase (for the
    #: warning of :meth:`fit`).
    _UNIDENTIFIED: ClassVar[str] = "the parameters"

    def fit(
        self,
        rfm: pd.DataFrame,
        sample_weight: np.ndarray | None = None,
        *,
        at: Mapping[str, float] | None = None,
        weights: object = WEIGHTS_NOT_PASSED,
    ) -> Self:
        """Fit the model by maximum likelihood.

        Parameters
        ----------
        rfm : pandas.DataFrame
            One row per customer with ``frequency`` (repeat purchases, whole numbers >= 0),
            ``recency`` (time of the last repeat purchase since the first purchase, 0 when
            frequency is 0) and ``T`` (time from the first purchase to the end of
            observation), in any one time unit. Other columns are ignored.
        sample_weight : array-like, optional
            Weight (e.g. count) of each row; all ones when None.
        at : mapping, optional
            Parameters by name at which to take the fitted state instead of optimising
            (used to carry another engine's optimum, e.g. lifetimes').
        weights : array-like, optional
            Deprecated name of ``sample_weight``: still accepted, with a FutureWarning,
            until the next release.

        Returns
        -------
        self
            The model, fitted.

        Warns
        -----
        clvlab.models.btyd.BTYDConvergenceWarning
            The optimizer did not converge, a parameter ended on its search bound or the
            Hessian is singular (parameters not identified by the data).

        Raises
        ------
        clvlab.errors.DataError
            Missing columns, NaN/infinite values, negative or non-integer frequency,
            negative recency, recency > T, or recency > 0 with frequency 0.
        """
        name = type(self).__name__
        # Either name's value (array-like, validated when the rows are compressed).
        chosen_weight = renamed_sample_weight(sample_weight, weights, name)
        rows, time_scale = purchase_histories_to_fit(rfm, chosen_weight, name, self._UNIDENTIFIED)
        self._fit_problem(self._problem_for(rows, time_scale), at)
        return self

    def future_needs_recency(self) -> bool:
        """Whether a customer's future, given alive at ``T``, depends on recency as well as
        on frequency and ``T``. In BG/NBD, MBG/NBD, Pareto/NBD and GGompertz/NBD it does not
        (recency only tells whether the customer is alive), which lets scoring evaluate one
        history per distinct ``(frequency, T)`` (:func:`clvlab.models.clv.per_alive_history`)."""
        return False

    def time_scales(self) -> list[float]:
        """Times within which the predictions may curve sharply (the scales of the purchase
        and dropout rates): ``alpha`` and, where it is one, ``beta``."""
        params = self._fitted_params()
        return [value for name, value in zip(self.PARAM_NAMES, params, strict=True)
                if name in ("alpha", "beta")]  # fmt: skip

    # -- what each model supplies ------------------------------------------------------

    def _problem_for(self, rows: CompressedRows, time_scale: float) -> FitProblem:
        """The fit of the compressed ``frequency, recency, T`` rows, with times in units of
        ``time_scale`` for the start points and the penalty."""
        raise NotImplementedError

    def _log_dropout_odds(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """Log odds of "dropped out by T" vs "alive at T" on validated arrays."""
        raise NotImplementedError

    def _expected_if_alive(self, t: np.ndarray, x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """Expected purchases in (T, T + t] of a customer alive at T, on validated arrays."""
        raise NotImplementedError

    def _no_purchase(
        self, t: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
    ) -> np.ndarray:
        """:meth:`p_churn` on validated arrays."""
        raise NotImplementedError

    def _survival_if_alive(
        self, t: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
    ) -> np.ndarray:
        """P(alive at T + t | alive at T and the history): :meth:`p_alive` at a future time
        on validated arrays."""
        raise NotImplementedError

    def _no_purchase_new_customer(self, t: np.ndarray) -> np.ndarray:
        """:meth:`p_no_purchase_new_customer` on validated arrays."""
        zero = np.zeros_like(t)
        return self._no_purchase(t, zero, zero, zero)

    def _pmf(
        self, n: np.ndarray, t: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
    ) -> np.ndarray:
        """:meth:`p_purchases` on validated arrays."""
        raise NotImplementedError

    def _expected(self, t: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """:meth:`expected_purchases` on validated arrays."""
        alive = expit(-self._log_dropout_odds(x, t_x, T))
        return alive * self._expected_if_alive(t, x, T)

    # -- predictions -------------------------------------------------------------------

    def p_alive(self, frequency: object, recency: object, T: object, t: object = 0.0) -> np.ndarray:
        r"""Probability that a customer with history :math:`(x, t_x, T)` is alive at
        :math:`T + t` (by default at :math:`T`, the end of the history).

        :math:`P(\text{alive at } T \mid x, t_x, T) = 1 / (1 + e^D)`, with :math:`D` the log
        odds of having dropped out by :math:`T` given the history; the model's formula is in
        the Notes of its class docstring. At a future time (PyMC-Marketing's
        ``expected_probability_alive(future_t=t)``) it is that times the probability of
        surviving :math:`t` more given alive at :math:`T`: in Pareto/NBD
        :math:`((\beta + T) / (\beta + T + t))^s`; in BG/NBD and MBG/NBD, where a customer
        can only drop out at a purchase, :math:`E[e^{-\lambda p t}]` over the posterior
        given alive, :math:`{}_2F_1(r + x, a; a + b'; -t / (\alpha + T))` (:math:`b' = b + x`,
        :math:`b + x + 1` in MBG/NBD); in GGompertz/NBD :math:`S(T + t) / S(T)`; in
        MBG/CNBD-k :math:`E[(1 - p)^M]`, :math:`M` the purchases of the window (see its Notes).

        Parameters
        ----------
        frequency, recency, T : float or array-like
            Customer histories (broadcast against each other).
        t : float or array-like, optional
            Time after :math:`T`, in the time unit of the data (0: now).

        Returns
        -------
        numpy.ndarray
            Probabilities, in the broadcast shape of the inputs.
        """
        horizon, x, t_x, age = history_arrays(frequency, recency, T, t=t)
        alive = expit(-self._log_dropout_odds(x, t_x, age))
        if not np.any(horizon > 0):
            return alive
        return alive * np.where(horizon > 0, self._survival_if_alive(horizon, x, t_x, age), 1.0)

    def expected_purchases(
        self, t: object, frequency: object, recency: object, T: object
    ) -> np.ndarray:
        r"""Expected number of purchases in :math:`(T, T + t]` given :math:`(x, t_x, T)`.

        .. math::
            E[X(T, T+t) \mid x, t_x, T] = P(\text{alive} \mid x, t_x, T)\,
            E[X(T, T+t) \mid x, T, \text{alive at } T]

        (a customer who dropped out buys nothing); the model's formula is in the Notes of its
        class docstring.

        Parameters
        ----------
        t : float or array-like
            Length of the prediction window, in the time unit of the data.
        frequency, recency, T : float or array-like
            Customer histories.

        Returns
        -------
        numpy.ndarray
            Expected purchases, in the broadcast shape of the inputs.
        """
        horizon, x, t_x, age = history_arrays(frequency, recency, T, t=t)
        return self._expected(horizon, x, t_x, age)

    def expected_purchases_by_horizon(
        self, horizons: Sequence[float], frequency: object, recency: object, T: object
    ) -> np.ndarray:
        """:meth:`expected_purchases` for each of several horizons, stacked: row ``i`` is
        ``expected_purchases(horizons[i], frequency, recency, T)``, exactly. The probability
        of being alive, which does not depend on the horizon (and is most of the cost for
        Pareto/NBD), is computed once.
        """
        x, t_x, age = history_arrays(frequency, recency, T)
        alive = expit(-self._log_dropout_odds(x, t_x, age))
        rows = []
        for t in horizons:
            horizon, x, _, age = history_arrays(frequency, recency, T, t=t)
            rows.append(alive * self._expected_if_alive(horizon, x, age))
        return np.stack(rows)

    def p_churn(self, t: object, frequency: object, recency: object, T: object) -> np.ndarray:
        r"""Probability of no purchase in :math:`(T, T + t]` given :math:`(x, t_x, T)`.

        .. math::
            P(X(T, T+t) = 0 \mid x, t_x, T) = 1 - P(\text{alive})
            + P(\text{alive})\, P(X(T, T+t) = 0 \mid x, T, \text{alive at } T)

        with :math:`P(\text{alive})` from :meth:`p_alive`; the model's formula is in the
        Notes of its class docstring.

        Parameters
        ----------
        t : float or array-like
            Length of the window.
        frequency, recency, T : float or array-like
            Customer histories.

        Returns
        -------
        numpy.ndarray
            Probabilities, in the broadcast shape of the inputs.
        """
        horizon, x, t_x, age = history_arrays(frequency, recency, T, t=t)
        return self._no_purchase(horizon, x, t_x, age)

    def p_purchases(
        self, n: object, t: object, frequency: object, recency: object, T: object
    ) -> np.ndarray:
        r"""Probability of exactly ``n`` purchases in :math:`(T, T + t]` given the history.

        .. math::
            P(X(T, T+t) = n \mid x, t_x, T) = \delta_{n0}\,(1 - P(\text{alive}))
            + P(\text{alive})\, P(X(T, T+t) = n \mid x, T, \text{alive at } T)

        with :math:`P(\text{alive})` from :meth:`p_alive`; ``n = 0`` gives :meth:`p_churn`.
        The model's formula is in the Notes of its class docstring; it is evaluated so that
        the result stays accurate for large ``n`` and ``frequency``.

        Parameters
        ----------
        n : int or array-like of int
            Number of purchases, whole numbers >= 0.
        t : float or array-like
            Length of the window.
        frequency, recency, T : float or array-like
            Customer histories (all inputs broadcast against each other).

        Returns
        -------
        numpy.ndarray
            Probabilities, in the broadcast shape of the inputs.

        Raises
        ------
        clvlab.errors.DataError
            ``n`` negative or not a whole number, or invalid histories.
        """
        count, horizon, x, t_x, age = history_arrays(frequency, recency, T, n=n, t=t)
        check_counts(count)
        return self._pmf(count, horizon, x, t_x, age)

    def p_purchases_by_count(
        self, counts: object, t: object, frequency: object, recency: object, T: object
    ) -> np.ndarray:
        """:meth:`p_purchases` for several counts at once: row ``i`` is
        ``p_purchases(counts[i], t, frequency, recency, T)`` (``counts`` 1-D, whole numbers
        >= 0; ``t`` and the histories 1-D or scalars). What a predictive distribution needs;
        a model may share the work between the counts (Pareto/NBD does)."""
        (count,) = as_float_arrays(counts=counts)
        return self.p_purchases(count.reshape(-1, 1), t, frequency, recency, T)

    def expected_purchases_new_customer(self, t: object) -> np.ndarray:
        r"""Expected repeat purchases in :math:`(0, t]` of a new customer.

        :meth:`expected_purchases` for a customer with :math:`x = t_x = T = 0` (the model's
        formula is in the Notes of its class docstring).

        Parameters
        ----------
        t : float or array-like
            Time since the first purchase.

        Returns
        -------
        numpy.ndarray
            Expected purchases, in the shape of ``t``.
        """
        horizon = times_since_first_purchase(t)
        zero = np.zeros_like(horizon)
        return self._expected(horizon, zero, zero, zero)

    def p_no_purchase_new_customer(self, t: object) -> np.ndarray:
        r"""Probability that a new customer makes no repeat purchase in :math:`(0, t]`.

        :meth:`p_churn` for a customer with :math:`x = t_x = T = 0` (the model's formula is
        in the Notes of its class docstring).

        Parameters
        ----------
        t : float or array-like
            Time since the first purchase.

        Returns
        -------
        numpy.ndarray
            Probabilities, in the shape of ``t``.
        """
        return self._no_purchase_new_customer(times_since_first_purchase(t))


def check_counts(n: np.ndarray) -> None:
    """Raise DataError unless the (already non-negative) purchase counts are whole numbers."""
    fractional = n != np.round(n)
    if fractional.any():
        raise DataError(
            f"n has {int(fractional.sum())} non-integer value(s), e.g. "
            f"{n[fractional][:5].tolist()}; n counts purchases and must hold whole numbers >= 0."
        )
