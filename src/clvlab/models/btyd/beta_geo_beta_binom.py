r"""BG/BB: the beta-geometric / beta-binomial model of repeat buying at discrete opportunities.

Fader, Hardie and Shang (2010), "Customer-Base Analysis in a Discrete-Time Noncontractual
Setting", Marketing Science 29 (6), 1086-1108 (FHS below).

Purchases can only happen at discrete transaction opportunities (an annual fund-raising
appeal, a weekly event, a yearly renewal window). Assumptions, for a customer observed over
opportunities :math:`1, \dots, n` after the first purchase:

* while alive, the customer buys at each opportunity with probability :math:`p`;
* at the beginning of each opportunity a living customer drops out with probability
  :math:`\theta` (so he is alive at opportunity :math:`t` with probability
  :math:`(1 - \theta)^t`);
* :math:`p \sim \mathrm{Beta}(\alpha, \beta)` and :math:`\theta \sim \mathrm{Beta}(\gamma,
  \delta)` across customers, independently.

A customer's data are the number of opportunities with a purchase :math:`x` (``frequency``),
the last of them :math:`t_x` (``recency``, 0 when :math:`x = 0`) and the number of
opportunities :math:`n` (``n_periods``), all whole numbers with :math:`0 \le x \le t_x \le n`.

The model's input is not the ``frequency, recency, T`` history of the continuous-time
purchase models (:class:`~clvlab.models.btyd.PurchaseModel`), so it is not one of
:data:`~clvlab.models.btyd.PURCHASE_MODELS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Self

import numpy as np
import pandas as pd
from scipy.special import betaln, digamma, gammaln

from clvlab.errors import DataError
from clvlab.models.btyd.base import (
    BTYDEstimator,
    FitProblem,
    as_float_arrays,
    check_frequency,
    check_nonnegative,
    compress,
    raise_for_rows,
    validate_rfm,
    validate_sample_weight,
)

#: Columns of a customer's history at discrete opportunities.
OPPORTUNITY_HISTORY_COLUMNS = ("frequency", "recency", "n_periods")
#: Closer than this to gamma = 1, :func:`_log_gamma_slope` integrates instead of dividing.
_QUADRATURE_RADIUS = 0.5
#: Gauss-Legendre nodes and weights of 12 points, moved from [-1, 1] to [0, 1].
_LEGENDRE = np.polynomial.legendre.leggauss(12)
_QUADRATURE_NODES, _QUADRATURE_WEIGHTS = (_LEGENDRE[0] + 1.0) / 2.0, _LEGENDRE[1] / 2.0


def _check_opportunity_history(table: pd.DataFrame) -> None:
    """Raise DataError unless every row of ``table`` (float ``frequency, recency, n_periods``)
    is a possible history: whole numbers with ``0 <= frequency <= recency <= n_periods`` and
    recency 0 exactly when frequency is 0."""
    check_frequency(table)
    for column, meaning in (
        ("recency", "the opportunity of the last purchase"),
        ("n_periods", "the number of purchase opportunities"),
    ):
        values = table[column].to_numpy()
        raise_for_rows(
            table,
            values < 0,
            [column],
            f"a negative {column}",
            f"{column} is {meaning}, a whole number >= 0; fix or drop those rows.",
        )
        raise_for_rows(
            table,
            values != np.round(values),
            [column],
            f"a non-integer {column}",
            f"{column} is {meaning}, a count of opportunities; rebuild the table with "
            "whole periods.",
        )
    x, t_x, n = (table[c].to_numpy() for c in OPPORTUNITY_HISTORY_COLUMNS)
    raise_for_rows(
        table,
        t_x > n,
        ["recency", "n_periods"],
        "recency larger than n_periods",
        "the last purchase cannot come after the last opportunity; recompute both with one "
        "period length and one end of observation.",
    )
    raise_for_rows(
        table,
        x > t_x,
        ["frequency", "recency"],
        "frequency larger than recency",
        "x purchases at distinct opportunities end at opportunity x or later; recompute "
        "frequency as the number of opportunities with a purchase.",
    )
    raise_for_rows(
        table,
        (x == 0) & (t_x != 0),
        ["frequency", "recency"],
        "recency > 0 with frequency 0",
        "recency is the opportunity of the last repeat purchase, so it is 0 without repeat "
        "purchases (lifetimes' convention); recompute the table.",
    )


def _history_arrays(
    frequency: object, recency: object, n_periods: object, **leading: object
) -> list[np.ndarray]:
    """Validated float arrays of ``leading`` (e.g. ``n_future``) and a history at discrete
    opportunities, for predictions: finite, broadcast, whole numbers >= 0, and possible
    histories (see :func:`_check_opportunity_history`)."""
    names = {**leading, "frequency": frequency, "recency": recency, "n_periods": n_periods}
    arrays = as_float_arrays(**names)
    _check_counts(**dict(zip(names, arrays, strict=True)))
    x, t_x, n = arrays[-3:]
    history = pd.DataFrame({"frequency": x.ravel(), "recency": t_x.ravel(), "n_periods": n.ravel()})
    _check_opportunity_history(history)
    return arrays


def _check_counts(**arrays: np.ndarray) -> None:
    """Raise DataError unless the named (finite) arrays hold whole numbers >= 0."""
    check_nonnegative(**arrays)
    for name, arr in arrays.items():
        fractional = arr != np.round(arr)
        if fractional.any():
            raise DataError(
                f"{name} has {int(fractional.sum())} non-integer value(s), e.g. "
                f"{arr[fractional][:5].tolist()}; it counts opportunities (or purchases at "
                "them) and must hold whole numbers >= 0."
            )


@dataclass
class OpportunityHistories:
    r"""Histories :math:`(x, t_x, n)` (whole numbers) arranged for the BG/BB likelihood.

    FHS eq. (5) sums over the ways the data can have arisen: alive through all :math:`n`
    opportunities, or alive through the first :math:`m` and dropped out at the beginning of
    opportunity :math:`m + 1`, for each :math:`m = t_x, \dots, n - 1`. A dropout term depends
    on the history only through :math:`(x, m)`, and many histories share those "cells", so the
    special functions are evaluated once per distinct history (the alive term) and once per
    cell; per dropout term (laid out once, row after row) a look-up, an exponential and a sum
    remain.
    """

    x: np.ndarray
    t_x: np.ndarray
    n: np.ndarray
    #: the distinct (x, m) of the dropout terms
    cell_x: np.ndarray
    cell_m: np.ndarray
    #: row and cell of each dropout term, grouped by row
    term_row: np.ndarray
    term_cell: np.ndarray
    #: cell of each row's first (largest) dropout term, m = t_x; 0 for rows without any
    first_cell: np.ndarray

    @classmethod
    def build(cls, x: object, t_x: object, n: object) -> OpportunityHistories:
        """Lay out the dropout terms of the (validated) histories ``x, t_x, n``."""
        x, t_x, n = (np.asarray(a, dtype=np.int64).ravel() for a in (x, t_x, n))
        n_terms = n - t_x
        term_row = np.repeat(np.arange(len(x)), n_terms)
        first = np.cumsum(n_terms) - n_terms
        term_m = t_x[term_row] + np.arange(len(term_row)) - first[term_row]
        # Cells numbered densely by x * width + m, then renumbered over those present (a
        # count, not a sort: linear in the number of terms).
        width = int(n.max(initial=0)) + 1
        dense = x[term_row] * width + term_m
        present = np.bincount(dense, minlength=(int(x.max(initial=0)) + 1) * width) > 0
        cells = np.flatnonzero(present)
        term_cell = (np.cumsum(present) - 1)[dense]
        first_cell = np.zeros(len(x), dtype=np.int64)
        has_terms = n_terms > 0
        first_cell[has_terms] = term_cell[first[has_terms]]
        return cls(x, t_x, n, cells // width, cells % width, term_row, term_cell, first_cell)

    def _log_terms(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r"""Log of the "alive through n" term and of the likelihood per row, and log of the
        dropout term per cell:

        .. math::
            \ell_A &= \ln B(\alpha + x, \beta + n - x) + \ln B(\gamma, \delta + n)
                - \ln B(\alpha, \beta) - \ln B(\gamma, \delta) \\
            \ell_m &= \ln B(\alpha + x, \beta + m - x) + \ln B(\gamma + 1, \delta + m)
                - \ln B(\alpha, \beta) - \ln B(\gamma, \delta) \\
            \ln L &= \ln\Big(e^{\ell_A} + \sum_{m = t_x}^{n - 1} e^{\ell_m}\Big)

        The sum is taken relative to the row's largest term, which is :math:`\ell_A` or the
        first dropout term :math:`\ell_{t_x}` (:math:`\ell_m` decreases in :math:`m`: both
        beta functions decrease in their second argument), so nothing under- or overflows.
        """
        alpha, beta, gamma, delta = theta
        norm = betaln(alpha, beta) + betaln(gamma, delta)
        x, n, cx, cm = self.x, self.n, self.cell_x, self.cell_m
        log_alive = betaln(alpha + x, beta + n - x) + betaln(gamma, delta + n) - norm
        log_cell = betaln(alpha + cx, beta + cm - cx) + betaln(gamma + 1.0, delta + cm) - norm
        largest = log_alive
        if len(log_cell):
            largest = np.where(
                self.t_x < n, np.maximum(log_alive, log_cell[self.first_cell]), log_alive
            )
        dropped = np.exp(log_cell[self.term_cell] - largest[self.term_row])
        total = np.exp(log_alive - largest) + np.bincount(
            self.term_row, weights=dropped, minlength=len(x)
        )
        return log_alive, log_cell, largest + np.log(total)

    def log_likelihood(self, theta: np.ndarray) -> np.ndarray:
        r""":math:`\ln L` of each history at the natural parameters ``theta``."""
        return self._log_terms(theta)[2]

    def nll(self, log_params: np.ndarray, counts: np.ndarray) -> tuple[float, np.ndarray]:
        r"""Total negative log-likelihood, weighted by ``counts``, and its exact gradient
        w.r.t. ``log([alpha, beta, gamma, delta])``.

        With :math:`\pi_A = e^{\ell_A - \ln L}` and :math:`\pi_m = e^{\ell_m - \ln L}` the
        posterior probabilities of the ways the data arose (:meth:`_log_terms`; they sum to
        1), :math:`m_A = n` and :math:`\psi` the digamma function:

        .. math::
            \partial_\alpha \ln L &= \psi(\alpha + x) - \textstyle\sum_j \pi_j
                \psi(\alpha + \beta + m_j) - \psi(\alpha) + \psi(\alpha + \beta) \\
            \partial_\beta \ln L &= \textstyle\sum_j \pi_j \big[\psi(\beta + m_j - x)
                - \psi(\alpha + \beta + m_j)\big] - \psi(\beta) + \psi(\alpha + \beta) \\
            \partial_\gamma \ln L &= \pi_A \big[\psi(\gamma) - \psi(\gamma + \delta + n)\big]
                + \textstyle\sum_m \pi_m \big[\psi(\gamma + 1) - \psi(\gamma + \delta + m + 1)
                \big] - \psi(\gamma) + \psi(\gamma + \delta) \\
            \partial_\delta \ln L &= \pi_A \big[\psi(\delta + n) - \psi(\gamma + \delta + n)\big]
                + \textstyle\sum_m \pi_m \big[\psi(\delta + m) - \psi(\gamma + \delta + m + 1)
                \big] - \psi(\delta) + \psi(\gamma + \delta)

        (:math:`j` runs over the alive term and the dropout terms), and
        :math:`\partial_{\ln\theta} = \theta\, \partial_\theta`. The sums over dropout
        terms are taken per cell: :math:`\sum_{\text{rows}} w \pi_m` summed into the cell's
        weight, times the cell's digamma values.
        """
        theta = np.exp(np.asarray(log_params, dtype=float))
        alpha, beta, gamma, delta = theta
        log_alive, log_cell, ll = self._log_terms(theta)
        x, n, cx, cm = self.x, self.n, self.cell_x, self.cell_m
        # Posterior weights of the ways the data arose, times the counts: per row for the
        # alive term, summed per cell for the dropout terms.
        w_alive = counts * np.exp(log_alive - ll)
        log_scale = np.log(counts) - ll
        w_cell = np.bincount(
            self.term_cell,
            weights=np.exp(log_cell[self.term_cell] + log_scale[self.term_row]),
            minlength=len(cx),
        )

        total = float(counts.sum())
        psi_ab, psi_gd = digamma(alpha + beta), digamma(gamma + delta)
        psi_ab_n, psi_ab_m = digamma(alpha + beta + n), digamma(alpha + beta + cm)
        psi_gd_n, psi_gd_m = digamma(gamma + delta + n), digamma(gamma + delta + cm + 1.0)
        d_alpha = (
            counts @ digamma(alpha + x)
            - w_alive @ psi_ab_n
            - w_cell @ psi_ab_m
            + total * (psi_ab - digamma(alpha))
        )
        d_beta = (
            w_alive @ (digamma(beta + n - x) - psi_ab_n)
            + w_cell @ (digamma(beta + cm - cx) - psi_ab_m)
            + total * (psi_ab - digamma(beta))
        )
        d_gamma = (
            w_alive @ (digamma(gamma) - psi_gd_n)
            + w_cell @ (digamma(gamma + 1.0) - psi_gd_m)
            + total * (psi_gd - digamma(gamma))
        )
        d_delta = (
            w_alive @ (digamma(delta + n) - psi_gd_n)
            + w_cell @ (digamma(delta + cm) - psi_gd_m)
            + total * (psi_gd - digamma(delta))
        )
        grad = theta * np.array([d_alpha, d_beta, d_gamma, d_delta])
        return -float(counts @ ll), -grad


def negative_log_likelihood(
    log_params: np.ndarray,
    frequency: np.ndarray,
    recency: np.ndarray,
    n_periods: np.ndarray,
    sample_weight: np.ndarray | None = None,
) -> tuple[float, np.ndarray]:
    r"""Total negative BG/BB log-likelihood and its gradient w.r.t. the log-parameters.

    FHS eq. (5):

    .. math::
        L(\alpha, \beta, \gamma, \delta \mid x, t_x, n)
        = \frac{B(\alpha + x, \beta + n - x)}{B(\alpha, \beta)}
          \frac{B(\gamma, \delta + n)}{B(\gamma, \delta)}
        + \sum_{i=0}^{n - t_x - 1} \frac{B(\alpha + x, \beta + t_x - x + i)}{B(\alpha, \beta)}
          \frac{B(\gamma + 1, \delta + t_x + i)}{B(\gamma, \delta)}

    evaluated in log space and differentiated as :class:`OpportunityHistories` documents.

    Parameters
    ----------
    log_params
        ``log([alpha, beta, gamma, delta])``.
    frequency, recency, n_periods
        Customer data :math:`x, t_x, n` (1-D arrays of equal length of valid histories:
        whole numbers with :math:`0 \le x \le t_x \le n`).
    sample_weight
        Weight (e.g. count) of each row; ones when None.

    Returns
    -------
    tuple of (float, numpy.ndarray)
        :math:`-\sum_i w_i \ln L_i` and its gradient w.r.t. ``log_params``.
    """
    histories = OpportunityHistories.build(frequency, recency, n_periods)
    w = np.ones(len(histories.x)) if sample_weight is None else np.asarray(sample_weight, float)
    return histories.nll(log_params, w)


def _log_gamma_slope(s: np.ndarray, gamma: float) -> np.ndarray:
    r""":math:`h(s) = [\ln\Gamma(s + \gamma) - \ln\Gamma(s + 1)] / (\gamma - 1)
    = \int_0^1 \psi(s + 1 + (\gamma - 1) u)\, du`, the mean of :math:`\psi` between
    :math:`s + 1` and :math:`s + \gamma` (:math:`\psi(s + 1)` at :math:`\gamma = 1`).

    Within :data:`_QUADRATURE_RADIUS` of :math:`\gamma = 1`, where the difference quotient
    cancels, the integral by Gauss-Legendre quadrature (the integrand is analytic well beyond
    the interval there, so the nodes give it to rounding error); elsewhere the quotient.
    """
    eps = gamma - 1.0
    if abs(eps) > _QUADRATURE_RADIUS:
        return (gammaln(s + gamma) - gammaln(s + 1.0)) / eps
    return digamma(np.asarray(s)[..., None] + 1.0 + eps * _QUADRATURE_NODES) @ _QUADRATURE_WEIGHTS


def _expected_alive_opportunities(
    gamma: float, delta: float, n: np.ndarray, n_future: np.ndarray
) -> np.ndarray:
    r"""Expected number of the opportunities :math:`n + 1, \dots, n + n^*` at which a
    customer with :math:`\theta \sim \mathrm{Beta}(\gamma, \delta)` is alive, unconditionally:

    .. math::
        \sum_{k=1}^{n^*} \frac{B(\gamma, \delta + n + k)}{B(\gamma, \delta)}
        = \frac{\delta}{\gamma - 1} \frac{\Gamma(\gamma + \delta)}{\Gamma(1 + \delta)}
        \Big[\frac{\Gamma(1 + \delta + n)}{\Gamma(\gamma + \delta + n)}
        - \frac{\Gamma(1 + \delta + n + n^*)}{\Gamma(\gamma + \delta + n + n^*)}\Big]

    (the sum telescopes; FHS eq. 13). The form has a removable singularity at
    :math:`\gamma = 1`; with :math:`h` from :func:`_log_gamma_slope`,
    :math:`\varepsilon = \gamma - 1` and :math:`h_0, h_1, h_2` at :math:`\delta, \delta + n,
    \delta + n + n^*`, it is evaluated as

    .. math::
        \delta\, e^{\varepsilon (h_0 - h_1)} \frac{1 - e^{-\varepsilon (h_2 - h_1)}}{\varepsilon},

    which stays accurate through :math:`\gamma = 1` (there it is
    :math:`\delta [\psi(1 + \delta + n + n^*) - \psi(1 + \delta + n)]`).
    """
    eps = gamma - 1.0
    h0 = _log_gamma_slope(np.asarray(delta), gamma)
    h1 = _log_gamma_slope(delta + n, gamma)
    spread = _log_gamma_slope(delta + n + n_future, gamma) - h1
    u = eps * spread
    with np.errstate(divide="ignore", invalid="ignore"):
        # (1 - e^{-u}) / eps = spread * (1 - e^{-u}) / u, and (1 - e^{-u}) / u -> 1 at u = 0.
        ratio = np.where(u != 0.0, -np.expm1(-u) / u, 1.0)
    return delta * np.exp(eps * (h0 - h1)) * spread * ratio


class BetaGeoBetaBinom(BTYDEstimator):
    r"""BG/BB model of repeat buying at discrete opportunities (Fader, Hardie & Shang 2010).

    Parameters
    ----------
    penalizer_coef : float, default 0.0
        lifetimes' L2 penalty: ``penalizer_coef * sum(params ** 2)`` is added to the mean
        negative log-likelihood.

    Attributes
    ----------
    params_ : pandas.Series
        ``alpha, beta`` (beta prior of the purchase probability :math:`p` per opportunity)
        and ``gamma, delta`` (beta prior of the dropout probability :math:`\theta` per
        opportunity).
    log_likelihood_, stderr_, converged_, n_iter_
        The outcome of the fit, as in :class:`~clvlab.models.btyd.base.BTYDEstimator`. The
        log-likelihood is the total (lifetimes' ``_negative_log_likelihood_`` is its mean,
        negated); the standard errors come from central differences of the exact gradient.

    Notes
    -----
    The predictions (FHS), with :math:`L` the likelihood of the history
    (:func:`negative_log_likelihood`):

    .. math::
        P(\text{alive at } n + 1 \mid x, t_x, n) &= \frac{B(\alpha + x, \beta + n - x)}
            {B(\alpha, \beta)} \frac{B(\gamma, \delta + n + 1)}{B(\gamma, \delta)}
            \Big/ L \\
        E[X(n, n + n^*) \mid x, t_x, n] &= \frac{1}{L}
            \frac{B(\alpha + x + 1, \beta + n - x)}{B(\alpha, \beta)}
            \sum_{k=1}^{n^*} \frac{B(\gamma, \delta + n + k)}{B(\gamma, \delta)} \\
        E[X(n)] &= \frac{\alpha}{\alpha + \beta}
            \sum_{k=1}^{n} \frac{B(\gamma, \delta + k)}{B(\gamma, \delta)}

    (FHS eqs. 11 and 13, and the mean of :math:`X(n)`): a purchase at opportunity
    :math:`n + k` needs the customer alive then, :math:`(1 - \theta)^{n + k}`, and a
    purchase, :math:`p`, averaged over the posterior of :math:`(p, \theta)`. The sums
    telescope into ratios of gamma functions (:func:`_expected_alive_opportunities`).

    There is no ``p_churn``: the probability of no purchase in the next :math:`n^*`
    opportunities has no closed form (it is a finite sum over the opportunity of dropout,
    like the likelihood).

    Examples
    --------
    >>> model = BetaGeoBetaBinom().fit(rf, sample_weight=rf["weights"])  # doctest: +SKIP
    >>> model.expected_purchases(5, frequency=3, recency=4, n_periods=6)  # doctest: +SKIP
    array(1.0345...)
    """

    PARAM_NAMES = ("alpha", "beta", "gamma", "delta")

    def fit(
        self,
        rfm: pd.DataFrame,
        sample_weight: np.ndarray | None = None,
        *,
        at: Mapping[str, float] | None = None,
    ) -> Self:
        """Fit the model by maximum likelihood.

        Parameters
        ----------
        rfm : pandas.DataFrame
            One row per customer (or per group of customers with one history, see
            ``sample_weight``) with ``frequency`` (opportunities with a repeat purchase),
            ``recency`` (the last of them, 0 when frequency is 0) and ``n_periods`` (the
            number of opportunities observed), whole numbers with
            ``0 <= frequency <= recency <= n_periods``. Other columns are ignored.
        sample_weight : array-like, optional
            Weight (e.g. the number of customers with that history) of each row; all ones
            when None.
        at : mapping, optional
            Parameters by name at which to take the fitted state instead of optimising
            (used to carry another engine's optimum, e.g. lifetimes').

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
            Missing columns, NaN/infinite or non-integer values, or impossible histories
            (negative values, recency > n_periods, frequency > recency, recency > 0 with
            frequency 0).
        """
        name = type(self).__name__
        table = validate_rfm(rfm, OPPORTUNITY_HISTORY_COLUMNS, name)
        _check_opportunity_history(table)
        w = validate_sample_weight(sample_weight, len(table), name)
        rows = compress([table[c].to_numpy() for c in OPPORTUNITY_HISTORY_COLUMNS], w)
        histories = OpportunityHistories.build(*(rows.column(j) for j in range(3)))
        counts = rows.counts

        def nll(log_params: np.ndarray) -> tuple[float, np.ndarray]:
            return histories.nll(log_params, counts)

        problem = FitProblem(
            nll=nll,
            total_weight=float(counts.sum()),
            # The parameters are shapes of beta distributions: no unit to scale out.
            log_offset=np.zeros(4),
            penalty_scale=np.ones(4),
            starts=_start_points(histories, counts),
        )
        self._fit_problem(problem, at)
        return self

    # -- predictions -------------------------------------------------------------------

    def _log_likelihood(self, x: np.ndarray, t_x: np.ndarray, n: np.ndarray) -> np.ndarray:
        r""":math:`\ln L` of validated histories at the fitted parameters, in their shape."""
        theta = np.array(self._fitted_params())
        histories = OpportunityHistories.build(x, t_x, n)
        return histories.log_likelihood(theta).reshape(np.shape(x))

    def p_alive(self, frequency: object, recency: object, n_periods: object) -> np.ndarray:
        r"""Probability that a customer with history :math:`(x, t_x, n)` is alive at the next
        opportunity, :math:`n + 1` (FHS eq. 11; the formula is in the class Notes).

        Dropout happens at the beginning of an opportunity, so this is the chance that the
        customer can still buy at the first opportunity after the observation (lifetimes'
        ``conditional_probability_alive(1, ...)``).

        Parameters
        ----------
        frequency, recency, n_periods : int or array-like
            Customer histories (broadcast against each other).

        Returns
        -------
        numpy.ndarray
            Probabilities, in the broadcast shape of the inputs.

        Raises
        ------
        clvlab.errors.DataError
            Not whole numbers, or impossible histories.
        """
        x, t_x, n = _history_arrays(frequency, recency, n_periods)
        alpha, beta, gamma, delta = self._fitted_params()
        log_alive_next = (
            betaln(alpha + x, beta + n - x)
            - betaln(alpha, beta)
            + betaln(gamma, delta + n + 1.0)
            - betaln(gamma, delta)
        )
        return np.exp(log_alive_next - self._log_likelihood(x, t_x, n))

    def expected_purchases(
        self, n_future: object, frequency: object, recency: object, n_periods: object
    ) -> np.ndarray:
        r"""Expected number of purchases at the next :math:`n^*` opportunities,
        :math:`n + 1, \dots, n + n^*`, given the history :math:`(x, t_x, n)` (FHS eq. 13;
        the formula is in the class Notes).

        Parameters
        ----------
        n_future : int or array-like
            Number of future opportunities :math:`n^*`, whole numbers >= 0.
        frequency, recency, n_periods : int or array-like
            Customer histories (all inputs broadcast against each other).

        Returns
        -------
        numpy.ndarray
            Expected purchases, in the broadcast shape of the inputs.

        Raises
        ------
        clvlab.errors.DataError
            Not whole numbers, or impossible histories.
        """
        horizon, x, t_x, n = _history_arrays(frequency, recency, n_periods, n_future=n_future)
        alpha, beta, gamma, delta = self._fitted_params()
        log_buyer = (
            betaln(alpha + x + 1.0, beta + n - x)
            - betaln(alpha, beta)
            - self._log_likelihood(x, t_x, n)
        )
        return np.exp(log_buyer) * _expected_alive_opportunities(gamma, delta, n, horizon)

    def expected_transactions(self, n: object) -> np.ndarray:
        r"""Expected purchases of a randomly chosen customer over the first ``n``
        opportunities, :math:`E[X(n)]` (the formula is in the class Notes).

        Parameters
        ----------
        n : int or array-like
            Number of opportunities, whole numbers >= 0.

        Returns
        -------
        numpy.ndarray
            Expected purchases, in the shape of ``n``.
        """
        (periods,) = as_float_arrays(n=n)
        _check_counts(n=periods)
        alpha, beta, gamma, delta = self._fitted_params()
        mean_p = alpha / (alpha + beta)
        return mean_p * _expected_alive_opportunities(gamma, delta, np.zeros_like(periods), periods)


def _start_points(histories: OpportunityHistories, counts: np.ndarray) -> list[np.ndarray]:
    r"""Start points in log-parameters.

    The first one sets the mean purchase probability :math:`\alpha / (\alpha + \beta)`, with
    :math:`\alpha + \beta = 2`, to the share of opportunities with a purchase up to the last
    purchase (the customer was alive then), and takes :math:`\gamma = 1, \delta = 3` (a 25 %
    mean dropout probability per opportunity); the others are lifetimes' default start and
    a few other shapes.
    """
    exposure = float(counts @ histories.t_x)
    share = float(counts @ histories.x) / exposure if exposure > 0 else 0.5
    share = min(max(share, 0.05), 0.95)
    return [
        np.log([2.0 * share, 2.0 * (1.0 - share), 1.0, 3.0]),
        np.full(4, 0.1),
        np.log([1.0, 1.0, 0.5, 3.0]),
        np.log([0.5, 3.0, 2.0, 0.5]),
    ]
