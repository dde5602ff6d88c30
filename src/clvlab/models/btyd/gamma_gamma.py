r"""Gamma-Gamma model of the spend per transaction.

Colombo and Jiang (1999), "A stochastic RFM model", Journal of Interactive Marketing 13 (3);
Fader, Hardie and Lee (2005), "RFM and CLV: Using Iso-Value Curves for Customer Base
Analysis", Journal of Marketing Research 42 (4), 415-430; Hardie's note 025, "The
Gamma-Gamma Model of Monetary Value".

Assumptions:

* a customer's transaction values :math:`z_1, \dots, z_x` are i.i.d.
  :math:`\mathrm{Gamma}(p, \nu)` (shape, rate), so their mean spend is
  :math:`\zeta = p / \nu`;
* :math:`\nu \sim \mathrm{Gamma}(q, \gamma)` across customers (the parameter :math:`\gamma`
  is called ``v`` here, as in lifetimes);
* spend is independent of the purchase process.

Only the average :math:`m_x = \bar z` of a customer's :math:`x` repeat transactions is used
(lifetimes' convention: ``monetary_value`` is the mean of the repeat purchases), and only
customers with :math:`x > 0`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Self

import numpy as np
import pandas as pd
from scipy.special import digamma, gammaln

from clvlab.errors import DataError
from clvlab.models.btyd.base import (
    WEIGHTS_NOT_PASSED,
    BTYDEstimator,
    FitProblem,
    check_frequency,
    compress_rows,
    raise_for_rows,
    renamed_sample_weight,
    validate_rfm,
    validate_sample_weight,
)

_COLUMNS = ("frequency", "monetary_value")


def negative_log_likelihood(
    log_params: np.ndarray,
    frequency: np.ndarray,
    monetary_value: np.ndarray,
    sample_weight: np.ndarray | None = None,
) -> tuple[float, np.ndarray]:
    r"""Total negative Gamma-Gamma log-likelihood and its gradient w.r.t. the log-parameters.

    The density of the average :math:`m` of :math:`x` transactions (Hardie note 025,
    eq. 1a; FHL 2005 appendix):

    .. math::
        f(m \mid p, q, \gamma; x) = \frac{\Gamma(p x + q)}{\Gamma(p x)\, \Gamma(q)}
        \frac{\gamma^q\, m^{p x - 1}\, x^{p x}}{(\gamma + m x)^{p x + q}}

    evaluated in log space as

    .. math::
        \ln f = \ln\Gamma(px + q) - \ln\Gamma(px) - \ln\Gamma(q)
        - q \ln\Big(1 + \frac{m x}{\gamma}\Big) - p x \ln\Big(1 + \frac{\gamma}{m x}\Big)
        - \ln m

    with partial derivatives

    .. math::
        \partial_p \ln f &= x\big[\psi(px + q) - \psi(px) - \ln(1 + \gamma / (m x))\big] \\
        \partial_q \ln f &= \psi(px + q) - \psi(q) - \ln(1 + m x / \gamma) \\
        \partial_\gamma \ln f &= \frac{x (q m - p \gamma)}{\gamma (\gamma + m x)}

    and :math:`\partial_{\ln\theta} = \theta\, \partial_\theta`.

    Parameters
    ----------
    log_params
        ``log([p, q, v])``.
    frequency, monetary_value
        :math:`x > 0` and :math:`m > 0` of each repeat buyer.
    sample_weight
        Weight (e.g. count) of each row; ones when None.

    Returns
    -------
    tuple of (float, numpy.ndarray)
        :math:`-\sum_i w_i \ln f_i` and its gradient w.r.t. ``log_params``.
    """
    p, q, v = np.exp(np.asarray(log_params, dtype=float))
    x = np.asarray(frequency, dtype=float)
    m = np.asarray(monetary_value, dtype=float)
    w = np.ones_like(x) if sample_weight is None else np.asarray(sample_weight, dtype=float)

    px = p * x
    total = m * x
    log_1p_total_v = np.log1p(total / v)
    log_1p_v_total = np.log1p(v / total)
    psi_sum = digamma(px + q)

    ll = (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        - q * log_1p_total_v
        - px * log_1p_v_total
        - np.log(m)
    )
    d_p = x * (psi_sum - digamma(px) - log_1p_v_total)
    d_q = psi_sum - digamma(q) - log_1p_total_v
    d_v = x * (q * m - p * v) / (v * (v + total))

    grad = np.array([p * w @ d_p, q * w @ d_q, v * w @ d_v])
    return -float(w @ ll), -grad


class GammaGamma(BTYDEstimator):
    """Gamma-Gamma model of the average spend per transaction.

    Parameters
    ----------
    penalizer_coef : float, default 0.0
        lifetimes' L2 penalty: ``penalizer_coef * sum(params ** 2)`` (``v`` in money units)
        is added to the mean negative log-likelihood.

    Attributes
    ----------
    params_ : pandas.Series
        ``p`` (shape of the transaction values), ``q, v`` (shape and rate of the gamma prior
        of the per-customer rate ``nu``; the mean spend per transaction across customers is
        ``p * v / (q - 1)``).
    log_likelihood_, stderr_, converged_, n_iter_
        The outcome of the fit, as in :class:`~clvlab.models.btyd.base.BTYDEstimator`; the
        log-likelihood is that of the repeat buyers' mean spends.
    """

    PARAM_NAMES = ("p", "q", "v")

    def fit(
        self,
        rfm: pd.DataFrame,
        sample_weight: np.ndarray | None = None,
        *,
        at: Mapping[str, float] | None = None,
        weights: object = WEIGHTS_NOT_PASSED,
    ) -> Self:
        """Fit the model by maximum likelihood on the repeat buyers (``frequency > 0``).

        Parameters
        ----------
        rfm : pandas.DataFrame
            One row per customer with ``frequency`` (repeat purchases) and
            ``monetary_value`` (mean value of the repeat purchases). Rows with frequency 0
            are ignored (their monetary_value may be anything, even NaN).
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
            Missing columns, invalid frequency, a repeat buyer with a missing or
            non-positive monetary_value, or no repeat buyer at all.
        """
        # Either name's value (array-like, validated just below).
        chosen_weight = renamed_sample_weight(sample_weight, weights, "GammaGamma")
        table = validate_rfm(rfm, _COLUMNS, "GammaGamma", allow_nan=("monetary_value",))
        check_frequency(table)
        w = validate_sample_weight(chosen_weight, len(table), "GammaGamma")
        repeat = table["frequency"].to_numpy() > 0
        m = table["monetary_value"].to_numpy()
        raise_for_rows(
            table,
            repeat & ~np.isfinite(m),
            list(_COLUMNS),
            "a missing (NaN) or infinite monetary_value with frequency > 0",
            "Fill or drop those customers before fitting.",
        )
        raise_for_rows(
            table,
            repeat & (m <= 0),
            list(_COLUMNS),
            "monetary_value <= 0 with frequency > 0",
            "The Gamma-Gamma model needs a positive mean spend per repeat purchase: drop "
            "those customers (e.g. rfm[rfm.monetary_value > 0]) or clean refunds and "
            "zero-value transactions before building the RFM table.",
        )
        if not (w[repeat] > 0).any():
            raise DataError(
                "GammaGamma.fit: no row has frequency > 0 (with a positive weight); the spend "
                "model is fitted on repeat buyers' mean spend, so it needs repeat buyers."
            )
        x, m, counts = compress_rows([table["frequency"].to_numpy()[repeat], m[repeat]], w[repeat])
        mean_spend = float(counts @ m / counts.sum())

        def nll(log_params: np.ndarray) -> tuple[float, np.ndarray]:
            return negative_log_likelihood(log_params, x, m, counts)

        problem = FitProblem(
            nll=nll,
            total_weight=float(counts.sum()),
            log_offset=np.array([0.0, 0.0, np.log(mean_spend)]),
            penalty_scale=np.ones(3),
            starts=_start_points(mean_spend),
        )
        self._fit_problem(problem, at)
        return self

    def expected_spend(self, frequency: object, monetary_value: object) -> np.ndarray:
        r"""Conditional expected average spend per transaction.

        Given :math:`x` and :math:`m_x`, :math:`\nu \sim \mathrm{Gamma}(px + q, \gamma + x
        m_x)`, so (FHL 2005 eq. 2)

        .. math::
            E[Z \mid p, q, \gamma, m_x, x] = \frac{p(\gamma + x m_x)}{p x + q - 1}
            = \frac{q - 1}{p x + q - 1} \frac{p \gamma}{q - 1}
            + \frac{p x}{p x + q - 1} m_x,

        a weighted mean of the population mean :math:`p \gamma / (q - 1)` and the observed
        mean. For :math:`x = 0` it is the population mean (``monetary_value`` is ignored and
        may be NaN); it is infinite where :math:`p x + q \le 1`.

        Parameters
        ----------
        frequency : float or array-like
            Repeat purchases :math:`x \ge 0`.
        monetary_value : float or array-like
            Mean value of the repeat purchases, finite and :math:`\ge 0` where
            :math:`x > 0`.

        Returns
        -------
        numpy.ndarray
            Expected spend per transaction, in the broadcast shape of the inputs.
        """
        p, q, v = self._fitted_params()
        x, m = _spend_inputs(frequency, monetary_value)
        total = np.where(x > 0, x * np.where(x > 0, m, 0.0), 0.0)
        denominator = p * x + q - 1.0
        with np.errstate(divide="ignore", invalid="ignore"):
            spend = p * (v + total) / denominator
        return np.where(denominator > 0, spend, np.inf)


def _spend_inputs(frequency: object, monetary_value: object) -> tuple[np.ndarray, np.ndarray]:
    """Broadcast float arrays of frequency and monetary value, validated."""
    try:
        x, m = (
            np.array(a)
            for a in np.broadcast_arrays(
                np.asarray(frequency, dtype=float), np.asarray(monetary_value, dtype=float)
            )
        )
    except (TypeError, ValueError) as err:
        raise DataError(
            f"frequency and monetary_value must be numeric and broadcastable: {err}"
        ) from err
    if not np.isfinite(x).all() or (x < 0).any():
        raise DataError(
            f"frequency has {int((~np.isfinite(x) | (x < 0)).sum())} NaN, infinite or negative "
            "value(s); it must be a count >= 0."
        )
    bad = (x > 0) & ~(np.isfinite(m) & (m >= 0))
    if bad.any():
        raise DataError(
            f"monetary_value is NaN, infinite or negative for {int(bad.sum())} customer(s) with "
            f"frequency > 0, e.g. {m[bad][:5].tolist()}; repeat buyers need their mean spend."
        )
    return x, m


def _start_points(mean_spend: float) -> list[np.ndarray]:
    r"""Start points in ``log(p), log(q), log(v / mean_spend)``.

    The first one, :math:`p = 2, q = 3, \gamma = \bar m`, puts the population mean
    :math:`p\gamma/(q-1)` at the observed mean spend :math:`\bar m`; the others try a few
    other shapes, including lifetimes' default start.
    """
    log_mean = np.log(mean_spend)
    return [
        np.log([2.0, 3.0, 1.0]),
        np.array([0.1, 0.1, 0.1 - log_mean]),
        np.log([6.0, 4.0, 1.5]),
        np.log([1.0, 10.0, 9.0]),
    ]
