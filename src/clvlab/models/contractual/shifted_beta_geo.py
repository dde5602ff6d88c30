r"""sBG: the shifted-beta-geometric model of contractual churn.

Fader and Hardie (2007), "How to project customer retention", Journal of Interactive
Marketing 21 (1), 76-90 (FH07 below); Fader and Hardie (2010), "Customer-base valuation in a
contractual setting: the perils of ignoring heterogeneity", Marketing Science 29 (1), 85-93
(FH10). PyMC-Marketing's ``ShiftedBetaGeoModel`` is the same model, fitted by Bayesian
inference.

A subscriber pays for one period at a time and, at the end of each, renews or leaves:

* at the end of every period a subscriber still there leaves with probability
  :math:`\theta` (the same every period), so his lifetime :math:`T` (the periods paid for)
  is geometric: :math:`P(T = t \mid \theta) = \theta (1 - \theta)^{t - 1}`, :math:`t \ge 1`;
* :math:`\theta \sim \mathrm{Beta}(\alpha, \beta)` across subscribers. The riskiest ones
  leave first, so the retention rate of a cohort rises with its age although nobody's own
  churn probability changes.

A subscriber's data are ``periods``, the renewal decisions he has faced (the periods he has
completed), and ``churned``: True when the last of them was a cancellation, so that he was
lost at the end of period ``periods`` (:math:`T = t`); False when he is still active, having
renewed every time (:math:`T > t`, right-censored).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Self

import numpy as np
import pandas as pd
from scipy.special import betaln, digamma, polygamma

from clvlab.errors import DataError
from clvlab.models.btyd.base import (
    BTYDEstimator,
    FitProblem,
    as_float_arrays,
    check_nonnegative,
    compress,
    convergence_warning,
    raise_for_rows,
    validate_rfm,
    validate_sample_weight,
)

#: Columns of the subscriber table the model is fitted on.
SUBSCRIBER_COLUMNS = ("periods", "churned")
#: Gauss-Legendre nodes and weights of :func:`_discounted_lifetime`'s quadrature, on [0, 1].
_LEGENDRE = np.polynomial.legendre.leggauss(64)
_QUADRATURE_NODES, _QUADRATURE_WEIGHTS = (_LEGENDRE[0] + 1.0) / 2.0, _LEGENDRE[1] / 2.0
#: :func:`_discounted_lifetime` integrates ``e^{-v}`` up to ``v = _TAIL``: it drops < e^-45.
_TAIL = 45.0


# --------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------


def validate_subscribers(table: object, model: str) -> pd.DataFrame:
    """Validated float copy of the ``periods, churned`` columns of ``table``.

    ``periods`` must be a whole number >= 0 (>= 1 where ``churned``: a subscriber is lost at
    the end of a period); ``churned`` must be boolean or 0/1. ``model`` names the estimator
    in the error messages.

    Raises
    ------
    clvlab.errors.DataError
        Not a DataFrame, no rows, a column missing, or a value that is missing, of the
        wrong type or out of range (the message names the column, the rows and the fix).
    """
    if not isinstance(table, pd.DataFrame):
        raise DataError(
            f"{model}.fit expects a pandas DataFrame with one row per subscriber and columns "
            f"{list(SUBSCRIBER_COLUMNS)}, got {type(table).__name__}."
        )
    missing = [c for c in SUBSCRIBER_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(
            f"{model}.fit: the subscriber table lacks column(s) {missing} (it has "
            f"{list(map(str, table.columns))}); 'periods' is the number of periods a "
            "subscriber has completed and 'churned' whether he cancelled at the end of the "
            "last one (False: still active)."
        )
    if len(table) == 0:
        raise DataError(f"{model}.fit: the subscriber table has no rows; there is nothing to fit.")
    # periods: numeric and finite (validate_rfm's checks), then whole and in range.
    out = validate_rfm(table, ["periods"], model)
    periods = out["periods"].to_numpy()
    raise_for_rows(
        table,
        periods < 0,
        ["periods"],
        "a negative periods",
        "periods counts the periods a subscriber has completed, a whole number >= 0; fix or "
        "drop those rows.",
    )
    raise_for_rows(
        table,
        periods != np.round(periods),
        ["periods"],
        "a non-integer periods",
        "periods counts whole periods (renewal decisions faced); rebuild the table with one "
        "period length, e.g. months, rounding partial periods down.",
    )
    out["churned"] = _churned_flags(table, model)
    raise_for_rows(
        table,
        (out["churned"].to_numpy() == 1.0) & (periods == 0),
        ["periods", "churned"],
        "churned with periods 0",
        "a subscriber is lost at the end of a period he paid for, so a churned subscriber "
        "has periods >= 1 (lost at the end of his first period: periods = 1).",
    )
    return out


def _churned_flags(table: pd.DataFrame, model: str) -> np.ndarray:
    """``table["churned"]`` as floats 0/1; DataError unless every value is a bool or 0/1."""
    series = table["churned"]
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        flags = series.to_numpy(dtype=float, na_value=np.nan)
    elif series.dtype == object:
        flags = np.array([_flag(value) for value in series], dtype=float)
    else:
        raise DataError(
            f"{model}.fit: column 'churned' has dtype {series.dtype}, not bool or 0/1; "
            "convert it, e.g. table['churned'] = table['end'].notna()."
        )
    raise_for_rows(
        table,
        ~np.isin(flags, (0.0, 1.0)),
        ["churned"],
        "a churned that is missing or not True/False (1/0)",
        "churned says whether the subscriber cancelled (True) or is still active (False); "
        "fill or fix those values.",
    )
    return flags


def _flag(value: object) -> float:
    """A churned value of an object column as 1.0 / 0.0, NaN when it is not a bool or 0/1."""
    if isinstance(value, bool | np.bool_ | int | np.integer | float | np.floating):
        return float(value)
    return np.nan


def _check_whole(minimum: int, **arrays: np.ndarray) -> None:
    """Raise DataError unless the named (finite) arrays hold whole numbers >= ``minimum``."""
    for name, arr in arrays.items():
        bad = (arr < minimum) | (arr != np.round(arr))
        if bad.any():
            raise DataError(
                f"{name} has {int(bad.sum())} value(s) that are not whole numbers >= "
                f"{minimum}, e.g. {arr[bad][:5].tolist()}; it counts periods."
            )


# --------------------------------------------------------------------------------------
# Likelihood
# --------------------------------------------------------------------------------------


@dataclass
class SubscriberRows:
    r"""Distinct subscriber rows ``(periods, churned)`` with their counts, arranged for the
    sBG likelihood (FH07 eqs. 3 and 4).

    With :math:`c` the churned flag (0 or 1) and :math:`t` the periods, a row's likelihood is

    .. math::
        L = \frac{B(\alpha + c, \beta + t - c)}{B(\alpha, \beta)}
          = \begin{cases}
              P(T = t) = B(\alpha + 1, \beta + t - 1) / B(\alpha, \beta) & c = 1 \\
              S(t) = P(T > t) = B(\alpha, \beta + t) / B(\alpha, \beta) & c = 0
            \end{cases}

    The two arguments of the beta function add up to :math:`\alpha + \beta + t` either way.
    """

    periods: np.ndarray
    churned: np.ndarray
    counts: np.ndarray

    def log_likelihood(self, theta: np.ndarray) -> np.ndarray:
        r""":math:`\ln L` of each row at the natural parameters ``theta = [alpha, beta]``."""
        alpha, beta = theta
        c, t = self.churned, self.periods
        return betaln(alpha + c, beta + t - c) - betaln(alpha, beta)

    def nll(self, log_params: np.ndarray) -> tuple[float, np.ndarray]:
        r"""Total negative log-likelihood, weighted by the counts, and its exact gradient
        w.r.t. ``log([alpha, beta])``.

        With :math:`\psi` the digamma function and
        :math:`\partial_x \ln B(x, y) = \psi(x) - \psi(x + y)`:

        .. math::
            \partial_\alpha \ln L &= \psi(\alpha + c) - \psi(\alpha + \beta + t)
                - \psi(\alpha) + \psi(\alpha + \beta) \\
            \partial_\beta \ln L &= \psi(\beta + t - c) - \psi(\alpha + \beta + t)
                - \psi(\beta) + \psi(\alpha + \beta)

        and :math:`\partial_{\ln\theta} = \theta\, \partial_\theta`.
        """
        theta = np.exp(np.asarray(log_params, dtype=float))
        alpha, beta = theta
        c, t, w = self.churned, self.periods, self.counts
        total = float(w.sum())
        psi_all = digamma(alpha + beta + t)
        psi_ab = digamma(alpha + beta)
        d_alpha = w @ (digamma(alpha + c) - psi_all) + total * (psi_ab - digamma(alpha))
        d_beta = w @ (digamma(beta + t - c) - psi_all) + total * (psi_ab - digamma(beta))
        grad = theta * np.array([d_alpha, d_beta])
        return -float(w @ self.log_likelihood(theta)), -grad

    def hessian(self, log_params: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        r"""The total negative log-likelihood, its gradient and its exact Hessian w.r.t.
        ``log([alpha, beta])``.

        With :math:`\psi_1` the trigamma function, the second derivatives of :math:`\ln L`
        are

        .. math::
            \partial_\alpha^2 &= \psi_1(\alpha + c) - \psi_1(\alpha + \beta + t)
                - \psi_1(\alpha) + \psi_1(\alpha + \beta) \\
            \partial_\alpha \partial_\beta &= \psi_1(\alpha + \beta)
                - \psi_1(\alpha + \beta + t) \\
            \partial_\beta^2 &= \psi_1(\beta + t - c) - \psi_1(\alpha + \beta + t)
                - \psi_1(\beta) + \psi_1(\alpha + \beta)

        and in log-parameters :math:`H_{ij} = \theta_i \theta_j \partial_i \partial_j \ln L +
        \delta_{ij} \theta_i \partial_i \ln L`.
        """
        value, grad = self.nll(log_params)
        theta = np.exp(np.asarray(log_params, dtype=float))
        alpha, beta = theta
        c, t, w = self.churned, self.periods, self.counts
        total = float(w.sum())
        tri_all = polygamma(1, alpha + beta + t)
        tri_ab = float(polygamma(1, alpha + beta))
        h_aa = w @ (polygamma(1, alpha + c) - tri_all) + total * (tri_ab - polygamma(1, alpha))
        h_ab = total * tri_ab - w @ tri_all
        h_bb = w @ (polygamma(1, beta + t - c) - tri_all) + total * (tri_ab - polygamma(1, beta))
        natural = -np.array([[h_aa, h_ab], [h_ab, h_bb]])
        # grad is already the derivative w.r.t. log theta: theta * d/dtheta of the NLL.
        return value, grad, np.outer(theta, theta) * natural + np.diag(grad)


def negative_log_likelihood(
    log_params: np.ndarray,
    periods: np.ndarray,
    churned: np.ndarray,
    sample_weight: np.ndarray | None = None,
) -> tuple[float, np.ndarray]:
    r"""Total negative sBG log-likelihood and its gradient w.r.t. the log-parameters.

    Parameters
    ----------
    log_params
        ``log([alpha, beta])``.
    periods, churned
        Subscriber data (1-D arrays of equal length): whole numbers :math:`t \ge 0` and
        flags 0/1 (1 only where :math:`t \ge 1`); see :class:`SubscriberRows`.
    sample_weight
        Weight (e.g. count) of each row; ones when None.

    Returns
    -------
    tuple of (float, numpy.ndarray)
        :math:`-\sum_i w_i \ln L_i` and its gradient w.r.t. ``log_params``.
    """
    t = np.asarray(periods, dtype=float)
    w = np.ones(len(t)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
    return SubscriberRows(t, np.asarray(churned, dtype=float), w).nll(log_params)


# --------------------------------------------------------------------------------------
# Discounted expected residual lifetime
# --------------------------------------------------------------------------------------


def _discounted_lifetime(alpha: float, b: np.ndarray, d: np.ndarray) -> np.ndarray:
    r"""FH10's DERL of a subscriber whose :math:`\theta` has the distribution
    :math:`\mathrm{Beta}(\alpha, b)`, at discount rate :math:`d > 0`:

    .. math::
        \mathrm{DERL} = \sum_{k \ge 1} \frac{B(\alpha, b + k)}{B(\alpha, b)} (1 + d)^{-(k - 1)}
        = \frac{b}{\alpha + b}\, {}_2F_1\Big(1, b + 1; \alpha + b + 1; \frac{1}{1 + d}\Big).

    scipy's ``hyp2f1`` returns NaN here for :math:`b` in the thousands (and a wrong value
    at :math:`\alpha = 1`, where :math:`c - a - b` is 0), so the function is integrated
    instead. Pfaff's transformation and Euler's integral give, with :math:`m = \alpha + b`,

    .. math::
        {}_2F_1\Big(1, b + 1; m + 1; \frac{1}{1 + d}\Big)
        = \frac{1 + d}{d}\, {}_2F_1\Big(\alpha, 1; m + 1; -\frac{1}{d}\Big)
        = \frac{1 + d}{d} \int_0^\infty e^{-v}
          \Big(1 + \frac{1 - e^{-v / m}}{d}\Big)^{-\alpha} dv

    (substituting :math:`(1 - u)^m = e^{-v}` in Euler's integral over :math:`u`). The
    integrand falls from 1 on the scale :math:`v \sim \delta = m d`, so
    :math:`v = \delta (e^w - 1)` makes it smooth in :math:`w`, and 64 Gauss-Legendre nodes
    on :math:`0 \le v \le 45` give it to about 1e-14 for :math:`\alpha` from 0.05 to 50,
    :math:`b` up to 1e6 and :math:`d` from 1e-4 to 10 (against summed series).
    """
    b, d = np.broadcast_arrays(np.asarray(b, dtype=float), np.asarray(d, dtype=float))
    m = alpha + b
    delta = m * d
    upper = np.log1p(_TAIL / delta)
    w = upper[..., None] * _QUADRATURE_NODES
    v = delta[..., None] * np.expm1(w)
    shortfall = -np.expm1(-v / m[..., None]) / d[..., None]  # (1 - e^{-v/m}) / d
    integrand = delta[..., None] * np.exp(w - v - alpha * np.log1p(shortfall))
    integral = upper * (integrand @ _QUADRATURE_WEIGHTS)
    return b / m * (1.0 + d) / d * integral


# --------------------------------------------------------------------------------------
# Estimator
# --------------------------------------------------------------------------------------


class ShiftedBetaGeometric(BTYDEstimator):
    r"""sBG model of contractual churn (Fader & Hardie 2007).

    Parameters
    ----------
    penalizer_coef : float, default 0.0
        lifetimes' L2 penalty: ``penalizer_coef * (alpha ** 2 + beta ** 2)`` is added to the
        mean negative log-likelihood.

    Attributes
    ----------
    params_ : pandas.Series
        ``alpha, beta``: the beta distribution of the churn probability :math:`\theta` per
        period across subscribers (mean :math:`\alpha / (\alpha + \beta)`).
    log_likelihood_, stderr_, converged_, n_iter_
        The outcome of the fit, as in :class:`~clvlab.models.btyd.base.BTYDEstimator`; the
        standard errors come from the exact Hessian.

    Notes
    -----
    The predictions (FH07 eqs. 1, 2 and 8; FH10 eq. 6), for a subscriber who has completed
    :math:`n` periods and is still active (:math:`n = 0`: a new one), whose :math:`\theta`
    then follows :math:`\mathrm{Beta}(\alpha, \beta + n)`:

    .. math::
        P(T = n + t \mid T > n) &= \frac{B(\alpha + 1, \beta + n + t - 1)}{B(\alpha, \beta + n)}
            \quad (t \ge 1) \\
        S(n + t \mid T > n) &= \frac{B(\alpha, \beta + n + t)}{B(\alpha, \beta + n)} \\
        r(t) &= \frac{S(t)}{S(t - 1)} = \frac{\beta + t - 1}{\alpha + \beta + t - 1} \\
        \mathrm{DERL}(d \mid n) &= \sum_{k \ge 1} S(n + k \mid T > n)\, (1 + d)^{-(k - 1)}

    DERL counts the renewals still to come, the next one (at the end of the current period)
    undiscounted: it is FH10's :math:`\mathrm{DERL}(d \mid \alpha, \beta, n + 1)`, whose
    :math:`n` counts the current period (:math:`n - 1` renewals made). Multiplied by the
    price per period it is the subscriber's residual value. Undiscounted (:math:`d = 0`) it
    is :math:`(\beta + n) / (\alpha - 1)`, infinite when :math:`\alpha \le 1`.

    Examples
    --------
    >>> counts = [369, 163, 86, 56, 37, 27, 21, 241]
    >>> table = pd.DataFrame({"periods": [1, 2, 3, 4, 5, 6, 7, 7],
    ...                       "churned": [True] * 7 + [False]})
    >>> model = ShiftedBetaGeometric().fit(table, sample_weight=counts)
    >>> model.params_.round(3).to_dict()
    {'alpha': 0.704, 'beta': 1.182}
    """

    PARAM_NAMES = ("alpha", "beta")

    def fit(
        self,
        table: pd.DataFrame,
        sample_weight: np.ndarray | None = None,
        *,
        at: Mapping[str, float] | None = None,
    ) -> Self:
        """Fit the model by maximum likelihood.

        Parameters
        ----------
        table : pandas.DataFrame
            One row per subscriber (or per group of subscribers with one history, see
            ``sample_weight``) with ``periods``, the periods completed (renewal decisions
            faced), a whole number, and ``churned``, bool or 0/1: True when the subscriber
            cancelled at the end of period ``periods`` (then ``periods >= 1``), False when
            still active. Other columns are ignored.
        sample_weight : array-like, optional
            Weight (e.g. the number of subscribers with that history) of each row; all ones
            when None.
        at : mapping, optional
            Parameters by name at which to take the fitted state instead of optimising.

        Returns
        -------
        self
            The model, fitted.

        Warns
        -----
        clvlab.models.btyd.BTYDConvergenceWarning
            No subscriber churned, the optimizer did not converge, a parameter ended on its
            search bound or the Hessian is singular (parameters not identified by the data).

        Raises
        ------
        clvlab.errors.DataError
            Missing columns, or values missing, of the wrong type or out of range.
        """
        name = type(self).__name__
        frame = validate_subscribers(table, name)
        w = validate_sample_weight(sample_weight, len(frame), name)
        rows = compress([frame[c].to_numpy() for c in SUBSCRIBER_COLUMNS], w)
        data = SubscriberRows(rows.column(0), rows.column(1), rows.counts)
        if not (data.churned == 1.0).any():
            warnings.warn(
                f"clvlab {name}: no subscriber churned, so the churn probabilities are not "
                "identified and are pushed towards 0; predictions will say 'nobody leaves'. "
                "Fit on a longer period or more subscribers.",
                convergence_warning(),
                stacklevel=2,
            )
        problem = FitProblem(
            nll=data.nll,
            total_weight=float(data.counts.sum()),
            # The parameters are shapes of a beta distribution: no unit to scale out.
            log_offset=np.zeros(2),
            penalty_scale=np.ones(2),
            starts=_start_points(data),
            hessian=data.hessian,
        )
        self._fit_problem(problem, at)
        return self

    # -- predictions -------------------------------------------------------------------

    def churn_probability(self, t: object, periods: object = 0) -> np.ndarray:
        r"""Probability of being lost at the end of period ``periods + t``, for a subscriber
        active after ``periods`` periods: :math:`P(T = n + t \mid T > n)` (FH07 eq. 1 when
        ``periods`` is 0; the formula is in the class Notes).

        Parameters
        ----------
        t : int or array-like
            Periods ahead, whole numbers >= 1.
        periods : int or array-like, default 0
            Periods the subscriber has completed, as in ``fit`` (0: a new subscriber).

        Returns
        -------
        numpy.ndarray
            Probabilities, in the broadcast shape of the inputs.
        """
        ahead, n = self._horizon(t, periods, minimum=1)
        alpha, beta = self._fitted_params()
        return np.exp(betaln(alpha + 1.0, beta + n + ahead - 1.0) - betaln(alpha, beta + n))

    def survival(self, t: object, periods: object = 0) -> np.ndarray:
        r"""Probability of still being a subscriber after period ``periods + t``, for one
        active after ``periods`` periods: :math:`S(n + t \mid T > n)` (FH07 eq. 2 when
        ``periods`` is 0).

        Parameters
        ----------
        t : int or array-like
            Periods ahead, whole numbers >= 0.
        periods : int or array-like, default 0
            Periods the subscriber has completed, as in ``fit`` (0: a new subscriber).

        Returns
        -------
        numpy.ndarray
            Probabilities, in the broadcast shape of the inputs; times a cohort's size, the
            subscribers it keeps.
        """
        ahead, n = self._horizon(t, periods, minimum=0)
        alpha, beta = self._fitted_params()
        return np.exp(betaln(alpha, beta + n + ahead) - betaln(alpha, beta + n))

    def retention_rate(self, t: object) -> np.ndarray:
        r"""Share of a cohort's subscribers active in period ``t - 1`` who renew for period
        ``t``: :math:`r(t) = (\beta + t - 1) / (\alpha + \beta + t - 1)` (FH07 eq. 8).

        Parameters
        ----------
        t : int or array-like
            Periods, whole numbers >= 1.

        Returns
        -------
        numpy.ndarray
            Retention rates, in the shape of ``t``; they rise with ``t``.
        """
        (period,) = as_float_arrays(t=t)
        _check_whole(1, t=period)
        alpha, beta = self._fitted_params()
        return (beta + period - 1.0) / (alpha + beta + period - 1.0)

    def expected_residual_lifetime(self, discount_rate: object, periods: object = 0) -> np.ndarray:
        r"""Discounted expected residual lifetime (DERL, FH10 eq. 6) of a subscriber active
        after ``periods`` periods: the renewals still to come, each discounted by
        :math:`(1 + d)` per period after the next one (the class Notes give the formula).

        Parameters
        ----------
        discount_rate : float or array-like
            Discount rate :math:`d` per period, >= 0 (e.g. 0.1 for years, about 0.008 for
            months at 10 % a year).
        periods : int or array-like, default 0
            Periods the subscriber has completed, as in ``fit`` (0: a new subscriber, before
            his first renewal decision).

        Returns
        -------
        numpy.ndarray
            DERL, in the broadcast shape of the inputs; times the price per period, the
            subscriber's expected residual value. Infinite for ``discount_rate`` 0 when
            ``alpha <= 1``.
        """
        d, n = as_float_arrays(discount_rate=discount_rate, periods=periods)
        check_nonnegative(discount_rate=d)
        _check_whole(0, periods=n)
        alpha, beta = self._fitted_params()
        b = beta + n
        out = np.empty(d.shape)
        positive = d > 0
        out[positive] = _discounted_lifetime(alpha, b[positive], d[positive])
        undiscounted = np.inf if alpha <= 1.0 else b[~positive] / (alpha - 1.0)
        out[~positive] = undiscounted
        return out

    def _horizon(self, t: object, periods: object, minimum: int) -> tuple[np.ndarray, np.ndarray]:
        """``t`` (whole numbers >= ``minimum``) and ``periods`` (>= 0), validated and
        broadcast."""
        ahead, n = as_float_arrays(t=t, periods=periods)
        _check_whole(minimum, t=ahead)
        _check_whole(0, periods=n)
        return ahead, n


def _start_points(data: SubscriberRows) -> list[np.ndarray]:
    r"""Start points in log-parameters.

    The first one sets the mean churn probability :math:`\alpha / (\alpha + \beta)`, with
    :math:`\alpha + \beta = 2`, to the share of subscribers who left at their first renewal
    decision (FH07's regular cohort: 0.37, start 0.74, 1.26; optimum 0.70, 1.18); the others
    are a flat prior and two skewed shapes.
    """
    exposed = float(data.counts @ (data.periods >= 1))
    lost = float(data.counts @ ((data.periods == 1) & (data.churned == 1.0)))
    share = lost / exposed if exposed > 0 else 0.5
    share = min(max(share, 0.05), 0.95)
    return [
        np.log([2.0 * share, 2.0 * (1.0 - share)]),
        np.zeros(2),
        np.log([0.5, 3.0]),
        np.log([3.0, 0.5]),
    ]
