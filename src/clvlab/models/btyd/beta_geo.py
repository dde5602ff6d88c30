r"""BG/NBD: the beta-geometric / negative binomial distribution model of repeat buying.

Fader, Hardie and Lee (2005), "Counting Your Customers the Easy Way: An Alternative to the
Pareto/NBD Model", Marketing Science 24 (2), 275-284.

Assumptions, for a customer observed from the first purchase (time 0) to time ``T``:

* while alive, repeat purchases follow a Poisson process with rate :math:`\lambda`;
* after each repeat purchase the customer drops out with probability :math:`p`;
* :math:`\lambda \sim \mathrm{Gamma}(r, \alpha)` (shape, rate) and
  :math:`p \sim \mathrm{Beta}(a, b)` across customers, independently.

A customer's data are the number of repeat purchases :math:`x` (``frequency``), the time of
the last one :math:`t_x` (``recency``, 0 when :math:`x = 0`) and the age :math:`T`.

The MBG/NBD model (:mod:`clvlab.models.btyd.modified_beta_geo`) adds one more dropout chance,
right after the first purchase. The functions here take ``initial_dropout`` (or, for the
posterior-predictive helpers, the Beta parameter ``b`` already shifted by it) so that both
models share one implementation: a customer who made :math:`x` repeat purchases and is alive
at :math:`T` survived :math:`x + s` dropout chances (:math:`s = 1` with the initial one,
else 0), so his posterior is :math:`\lambda \sim \mathrm{Gamma}(r + x, \alpha + T)`,
:math:`p \sim \mathrm{Beta}(a, b + s + x)`, and from :math:`T` on he behaves like a new
BG/NBD customer with those parameters.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
from scipy.special import betainc, betaln, digamma, expit, gammaln, hyp2f1, xlogy

from clvlab.models.btyd.base import (
    CompressedRows,
    FitProblem,
    as_float_arrays,
    check_nonnegative,
    coarse_to_fine,
)
from clvlab.models.btyd.beta_geo_likelihood import GroupedHistories
from clvlab.models.btyd.purchase import PurchaseModel, check_counts

#: Size (total weight) of the subsample fitted first when the data are much larger.
_COARSE_CUSTOMERS = 20_000.0
#: Relative step in ``a`` of the interpolation used near the removable singularities of the
#: hypergeometric representation (see :func:`_expected_purchases_if_alive`).
_SINGULAR_STEP = 1e-4
#: Lagrange weights at 0 of the nodes -2, -1, 1, 2 (cubic interpolation).
_NODES = np.array([-2.0, -1.0, 1.0, 2.0])
_NODE_WEIGHTS = np.array([-1.0, 4.0, 4.0, -1.0]) / 6.0


def _log_dropout_odds(
    r: float,
    alpha: float,
    a: float,
    b: float,
    x: np.ndarray,
    t_x: np.ndarray,
    T: np.ndarray,
    initial_dropout: bool = False,
) -> np.ndarray:
    r"""Log odds :math:`D` of "dropped out at the last purchase" vs "alive at T".

    With :math:`s = 1` for MBG/NBD (``initial_dropout=True``) and 0 for BG/NBD, a customer
    with :math:`x` repeat purchases has had :math:`x + s` dropout chances, and

    .. math::
        D = \ln\frac{P(\text{dropped out} \mid x, t_x, T)}{P(\text{alive} \mid x, t_x, T)}
        = \ln a - \ln(b + x + s - 1) + (r + x) \ln\frac{\alpha + T}{\alpha + t_x}

    where :math:`x + s > 0`, and :math:`D = -\infty` where :math:`x + s = 0` (a BG/NBD
    customer without repeat purchases has had no chance to drop out); so
    :math:`P(\text{alive}) = 1 / (1 + e^D)`. The first two terms are the log of
    :math:`E[p (1-p)^{x+s-1}] / E[(1-p)^{x+s}] = a / (b + x + s - 1)` (dropped out at the last
    chance vs survived them all), the last one that of the purchase densities
    :math:`\lambda^x e^{-\lambda t_x}` and :math:`\lambda^x e^{-\lambda T}` averaged over
    :math:`\lambda \sim \mathrm{Gamma}(r, \alpha)`.
    """
    shift = 1.0 if initial_dropout else 0.0
    chances = x + shift
    b_last = b + np.maximum(chances, 1.0) - 1.0
    log_ratio = np.log1p((T - t_x) / (alpha + t_x))
    with np.errstate(divide="ignore"):
        odds = np.log(a) - np.log(b_last) + (r + x) * log_ratio
    return np.where(chances > 0, odds, -np.inf)


def family_negative_log_likelihood(
    log_params: np.ndarray,
    frequency: np.ndarray,
    recency: np.ndarray,
    T: np.ndarray,
    sample_weight: np.ndarray | None,
    initial_dropout: bool,
) -> tuple[float, np.ndarray]:
    r"""Total negative log-likelihood of BG/NBD (``initial_dropout=False``) or MBG/NBD
    (``True``) and its gradient w.r.t. the log-parameters.

    With :math:`s = 1` for MBG/NBD and 0 for BG/NBD, :math:`b_s = b + x + s`, both models'
    likelihoods (:func:`negative_log_likelihood` and
    :func:`clvlab.models.btyd.modified_beta_geo.negative_log_likelihood`) are, in log space,

    .. math::
        \ln L = \ln\frac{\Gamma(r + x)}{\Gamma(r)} + \ln\frac{B(a, b_s)}{B(a, b)}
        - r \ln\Big(1 + \frac{T}{\alpha}\Big) - x \ln(\alpha + T) + \ln(1 + e^{D})

    with :math:`D` from :func:`_log_dropout_odds` (the second term of the paper's likelihood
    is the first times :math:`e^D`). With :math:`d = e^D / (1 + e^D)` (the posterior
    probability of having dropped out) and :math:`\psi` the digamma function:

    .. math::
        \partial_r \ln L &= \psi(r+x) - \psi(r) - \ln(1 + T/\alpha)
            + d \ln\frac{\alpha + T}{\alpha + t_x} \\
        \partial_\alpha \ln L &= \frac{r T / \alpha - x}{\alpha + T}
            - d \frac{(r + x)(T - t_x)}{(\alpha + T)(\alpha + t_x)} \\
        \partial_a \ln L &= \psi(a+b) - \psi(a+b_s) + d / a \\
        \partial_b \ln L &= \psi(b_s) - \psi(b) + \psi(a+b) - \psi(a+b_s) - d / (b_s - 1)

    (:math:`d = 0` where :math:`D = -\infty`), and :math:`\partial_{\ln\theta} = \theta\,
    \partial_\theta`.

    Parameters
    ----------
    log_params
        ``log([r, alpha, a, b])``.
    frequency, recency, T
        Customer data :math:`x, t_x, T` (1-D arrays of equal length).
    sample_weight
        Weight (e.g. count) of each row; ones when None.
    initial_dropout
        Whether customers can also drop out right after the first purchase (MBG/NBD).

    Returns
    -------
    tuple of (float, numpy.ndarray)
        :math:`-\sum_i w_i \ln L_i` and its gradient w.r.t. ``log_params``.
    """
    r, alpha, a, b = np.exp(np.asarray(log_params, dtype=float))
    x = np.asarray(frequency, dtype=float)
    t_x = np.asarray(recency, dtype=float)
    T = np.asarray(T, dtype=float)
    w = np.ones_like(x) if sample_weight is None else np.asarray(sample_weight, dtype=float)
    shift = 1.0 if initial_dropout else 0.0

    odds = _log_dropout_odds(r, alpha, a, b, x, t_x, T, initial_dropout)
    dropped = expit(odds)
    log_ratio = np.log1p((T - t_x) / (alpha + t_x))
    b_post = b + x + shift
    b_last = b + np.maximum(x + shift, 1.0) - 1.0
    log_1p_t_alpha = np.log1p(T / alpha)

    ll = (
        gammaln(r + x)
        - gammaln(r)
        + betaln(a, b_post)
        - betaln(a, b)
        - r * log_1p_t_alpha
        - x * np.log(alpha + T)
        + np.logaddexp(0.0, odds)
    )
    d_r = digamma(r + x) - digamma(r) - log_1p_t_alpha + dropped * log_ratio
    d_alpha = (r * T / alpha - x) / (alpha + T) - dropped * (r + x) * (T - t_x) / (
        (alpha + T) * (alpha + t_x)
    )
    d_ab = digamma(a + b) - digamma(a + b_post)
    d_a = d_ab + dropped / a
    d_b = digamma(b_post) - digamma(b) + d_ab - dropped / b_last

    grad = np.array([r * w @ d_r, alpha * w @ d_alpha, a * w @ d_a, b * w @ d_b])
    return -float(w @ ll), -grad


def negative_log_likelihood(
    log_params: np.ndarray,
    frequency: np.ndarray,
    recency: np.ndarray,
    T: np.ndarray,
    sample_weight: np.ndarray | None = None,
) -> tuple[float, np.ndarray]:
    r"""Total negative BG/NBD log-likelihood and its gradient w.r.t. the log-parameters.

    FHL (2005), eq. (6):

    .. math::
        L(r, \alpha, a, b \mid x, t_x, T)
        = \frac{B(a, b + x)}{B(a, b)} \frac{\Gamma(r + x)\, \alpha^r}{\Gamma(r)\,
          (\alpha + T)^{r + x}}
        + \delta_{x > 0} \frac{B(a + 1, b + x - 1)}{B(a, b)}
          \frac{\Gamma(r + x)\, \alpha^r}{\Gamma(r)\, (\alpha + t_x)^{r + x}}

    This is :func:`family_negative_log_likelihood` with ``initial_dropout=False``, which documents
    the arguments, the result and how it is evaluated.
    """
    return family_negative_log_likelihood(log_params, frequency, recency, T, sample_weight, False)


def _expected_purchases_if_alive(
    r: float, alpha: float, a: float, b: float, t: np.ndarray, x: np.ndarray, T: np.ndarray
) -> np.ndarray:
    r"""Expected purchases in :math:`(T, T + t]` given :math:`x` and alive at :math:`T`.

    Given alive, :math:`\lambda \sim \mathrm{Gamma}(r + x, \alpha + T)` and
    :math:`p \sim \mathrm{Beta}(a, b + x)`, and :math:`E[X(t) \mid \lambda, p] =
    (1 - e^{-\lambda p t}) / p`, which integrates to (FHL eq. 10 without the P(alive)
    factor)

    .. math::
        \frac{a + b + x - 1}{a - 1}\Big[1 - \Big(\frac{\alpha + T}{\alpha + T + t}\Big)^{r+x}
        {}_2F_1\big(r + x, b + x; a + b + x - 1; z\big)\Big],\quad
        z = \frac{t}{\alpha + T + t}.

    Euler's transformation :math:`{}_2F_1(A, B; C; z) = (1 - z)^{C - A - B}
    {}_2F_1(C - A, C - B; C; z)` turns the bracket into
    :math:`1 - (1 - z)^{a - 1} {}_2F_1(a - 1, a + b - 1 - r; a + b + x - 1; z)`, whose
    series stays tame for any :math:`x` (the original one overflows for large :math:`x`).

    The representation has two removable singularities: :math:`a = 1` (the prefactor) and
    integer :math:`r - a`, where :math:`C - A - B = x + r + 1 - a` is an integer and scipy's
    ``hyp2f1`` returns NaN or loses accuracy for :math:`z` near 1. Within half a step of
    either, the value is interpolated (cubic, exact at the nodes' centre) from
    :math:`a \pm h, a \pm 2h`, :math:`h = 10^{-4} \min(a, 1)`.
    """
    step = _SINGULAR_STEP * min(a, 1.0)
    if _distance_to_singular(r, a) >= step / 2:
        return _expected_if_alive_hyp2f1(r, alpha, a, b, t, x, T)
    values = [_expected_if_alive_hyp2f1(r, alpha, a + k * step, b, t, x, T) for k in _NODES]
    return sum(w * v for w, v in zip(_NODE_WEIGHTS, values, strict=True))


#: Closer than this to c = a + b + x - 1 = 0, expected purchases take their limit at c = 0.
_POLE_DISTANCE = 1e-9


def _distance_to_singular(r: float, a: float) -> float:
    """Distance of ``a`` from 1 and of ``r - a`` from the integers, whichever is smaller."""
    return min(abs(a - 1.0), abs(r - a - round(r - a)))


def _expected_if_alive_hyp2f1(
    r: float, alpha: float, a: float, b: float, t: np.ndarray, x: np.ndarray, T: np.ndarray
) -> np.ndarray:
    """:func:`_expected_purchases_if_alive` away from its removable singularities."""
    c = a + b + x - 1.0
    log_1mz = -np.log1p(t / (alpha + T))
    z = -np.expm1(log_1mz)
    with np.errstate(all="ignore"):
        hyp = hyp2f1(a - 1.0, a + b - 1.0 - r, c, z)
        log_term = (a - 1.0) * log_1mz + np.log(hyp)
        bracket = np.where(hyp > 0, -np.expm1(log_term), 1.0 - np.exp((a - 1.0) * log_1mz) * hyp)
        # Fall back on the untransformed series where the transformed one fails.
        bad = ~np.isfinite(bracket)
        if bad.any():
            direct = hyp2f1(r + x, b + x, c, z) * np.exp((r + x) * log_1mz)
            bracket = np.where(bad, 1.0 - direct, bracket)
        expected = c / (a - 1.0) * bracket
        # At c = 0 (x = 0 and a + b = 1) the form is 0 x inf; its limit, from
        # c 2F1(A, B; c; z) -> A B z 2F1(A + 1, B + 1; 2; z) as c -> 0, is
        # (r + x) z (1 - z)^(a - 1) 2F1(a, 1 - r - x; 2; z).
        pole = np.abs(c) < _POLE_DISTANCE
        if np.any(pole):
            limit = (r + x) * z * np.exp((a - 1.0) * log_1mz) * hyp2f1(a, 1.0 - r - x, 2.0, z)
            expected = np.where(pole, limit, expected)
    return np.where(t > 0, expected, 0.0)


def _log_purchase_pmf_if_alive(
    r: float,
    alpha: float,
    a: float,
    b: float,
    n: np.ndarray,
    t: np.ndarray,
    x: np.ndarray,
    T: np.ndarray,
) -> np.ndarray:
    r"""Log-probability of exactly :math:`n` purchases in :math:`(T, T + t]` given alive at T.

    Alive at :math:`T`, a customer behaves like a new BG/NBD customer with the posterior
    :math:`\lambda \sim \mathrm{Gamma}(r', \alpha')`, :math:`p \sim \mathrm{Beta}(a, b')`,
    :math:`r' = r + x`, :math:`\alpha' = \alpha + T`, :math:`b' = b + x` (memorylessness of
    the Poisson process; Fader & Hardie, "Deriving the conditional PMF of the BG/NBD
    model"), so FHL (2005) eq. (8) with these parameters gives

    .. math::
        P(n) = \frac{B(a, b' + n)}{B(a, b')}\, \mathrm{NB}(n)
        + \delta_{n > 0} \frac{B(a + 1, b' + n - 1)}{B(a, b')}
          \Big[1 - \sum_{j=0}^{n-1} \mathrm{NB}(j)\Big],\qquad
        \mathrm{NB}(j) = \frac{\Gamma(r' + j)}{\Gamma(r')\, j!}\, q^{r'} (1 - q)^j,

    with :math:`q = \alpha' / (\alpha' + t)`. The bracket is the upper tail
    :math:`P(N \ge n)` of that negative binomial, i.e. the regularized incomplete beta
    function :math:`I_{1-q}(n, r')`, evaluated directly (``betainc``) instead of as one minus
    a finite sum, which would cancel catastrophically when the tail is small. The first term
    is evaluated in log space, so nothing overflows for large :math:`n` or :math:`x`.

    Pass ``b + 1`` for MBG/NBD (see the module docstring); ``n`` must be whole numbers >= 0.
    """
    r_post = r + x
    b_post = b + x
    log_q = -np.log1p(t / (alpha + T))
    z = t / (alpha + T + t)
    log_nb = gammaln(r_post + n) - gammaln(r_post) - gammaln(n + 1.0) + r_post * log_q
    first = betaln(a, b_post + n) - betaln(a, b_post) + log_nb + xlogy(n, z)
    m = np.maximum(n, 1.0)
    with np.errstate(divide="ignore"):
        second = (
            betaln(a + 1.0, b_post + m - 1.0) - betaln(a, b_post) + np.log(betainc(m, r_post, z))
        )
    return np.logaddexp(first, np.where(n > 0, second, -np.inf))


class BetaGeo(PurchaseModel):
    r"""BG/NBD model of repeat purchasing and dropout (Fader, Hardie & Lee 2005).

    Parameters
    ----------
    penalizer_coef : float, default 0.0
        lifetimes' L2 penalty: ``penalizer_coef * sum(params ** 2)`` is added to the mean
        negative log-likelihood, with alpha measured (as lifetimes does) in units of the
        longest customer age ``max(T)``.

    Attributes
    ----------
    params_ : pandas.Series
        ``r, alpha`` (gamma prior of the purchase rate; alpha in the time unit of the data)
        and ``a, b`` (beta prior of the dropout probability).
    log_likelihood_, stderr_, converged_, n_iter_
        The outcome of the fit, as in :class:`~clvlab.models.btyd.base.BTYDEstimator`.

    Notes
    -----
    The predictions (FHL 2005; Fader & Hardie 2006, "Deriving the conditional PMF of the
    BG/NBD model"), with :math:`z = t / (\alpha + T + t)`:

    .. math::
        P(\text{alive} \mid x, t_x, T) &= \Big[1 + \delta_{x>0} \frac{a}{b + x - 1}
            \Big(\frac{\alpha + T}{\alpha + t_x}\Big)^{r + x}\Big]^{-1} \\
        E[X(T, T+t) \mid x, t_x, T] &= P(\text{alive})\, \frac{a + b + x - 1}{a - 1}
            \Big[1 - \Big(\frac{\alpha + T}{\alpha + T + t}\Big)^{r + x}
            {}_2F_1(r + x, b + x; a + b + x - 1; z)\Big] \\
        P(X(T, T+t) = 0 \mid x, t_x, T) &= 1 - P(\text{alive}) + P(\text{alive})
            \Big(\frac{\alpha + T}{\alpha + T + t}\Big)^{r + x} \\
        P(X(T, T+t) = n \mid x, t_x, T) &= \delta_{n0}\,(1 - P(\text{alive}))
            + P(\text{alive})\, P_{\text{new}}(n \mid r + x, \alpha + T, a, b + x)

    (the expectation is FHL eq. 10). Dropout happens only at purchases, so a customer alive
    at :math:`T` makes no purchase in the window with probability :math:`E[e^{-\lambda t}]`
    under the posterior :math:`\lambda \sim \mathrm{Gamma}(r + x, \alpha + T)`; and alive at
    :math:`T` he behaves like a new customer with the posterior parameters, whence
    :math:`P_{\text{new}}(n \mid r, \alpha, a, b)`, FHL eq. (8): the probability that a new
    customer makes :math:`n` repeat purchases in :math:`(0, t]`. For a new customer
    (:math:`x = t_x = T = 0`) the expectation is FHL eq. (9) and
    :math:`P(X(t) = 0) = (\alpha / (\alpha + t))^r`.

    The expectation is evaluated by a transformation of the hypergeometric function that
    stays accurate for any :math:`x` (:func:`_expected_purchases_if_alive`), and eq. (8)'s
    finite sum as a regularized incomplete beta function in log space
    (:func:`_log_purchase_pmf_if_alive`).

    Examples
    --------
    >>> model = BetaGeo().fit(rfm)  # doctest: +SKIP
    >>> model.expected_purchases(39, 2, 30.43, 38.86)  # doctest: +SKIP
    array(1.2259...)
    """

    PARAM_NAMES = ("r", "alpha", "a", "b")
    #: Whether customers can also drop out right after their first purchase (MBG/NBD).
    _INITIAL_DROPOUT: ClassVar[bool] = False
    _UNIDENTIFIED = "the dropout parameters a, b"

    def _problem_for(self, rows: CompressedRows, time_scale: float) -> FitProblem:
        """The fit on the grouped likelihood with its exact Hessian; on large data a coarse
        problem on a subsample first (see :class:`~clvlab.models.btyd.base.FitProblem`)."""
        x, counts = rows.column(0), rows.counts
        starts = _start_points(x, rows.column(2) / time_scale, counts)

        def problem_for(histories: CompressedRows) -> FitProblem:
            grouped = GroupedHistories.build(histories, self._INITIAL_DROPOUT)
            return FitProblem(
                nll=grouped.nll,
                total_weight=float(histories.counts.sum()),
                log_offset=np.array([0.0, math.log(time_scale), 0.0, 0.0]),
                penalty_scale=np.array([1.0, 1.0 / time_scale, 1.0, 1.0]),
                starts=starts,
                hessian=grouped.nll_with_hessian,
            )

        return coarse_to_fine(problem_for, rows, _COARSE_CUSTOMERS)

    # -- model pieces on validated arrays -------------------------------------------------

    def _log_dropout_odds(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """:func:`_log_dropout_odds` at the fitted parameters."""
        r, alpha, a, b = self._fitted_params()
        return _log_dropout_odds(r, alpha, a, b, x, t_x, T, self._INITIAL_DROPOUT)

    def _b_if_alive(self) -> float:
        """``b`` of the posterior of p given alive, before adding x (b, or b + 1 in MBG)."""
        return self._fitted_params()[3] + (1.0 if self._INITIAL_DROPOUT else 0.0)

    def _expected_if_alive(self, t: np.ndarray, x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """:func:`_expected_purchases_if_alive` at the fitted parameters."""
        r, alpha, a, _ = self._fitted_params()
        return _expected_purchases_if_alive(r, alpha, a, self._b_if_alive(), t, x, T)

    def _survival_if_alive(
        self, t: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
    ) -> np.ndarray:
        r"""P(no dropout in (T, T + t] | alive at T): dropouts come at rate :math:`\lambda p`,
        so :math:`E[e^{-\lambda p t}] = E_p[(1 + p z)^{-(r + x)}]`, :math:`z = t / (\alpha +
        T)`, the hypergeometric function of the docstring of ``p_alive``, taken by Pfaff's
        transformation at :math:`z / (1 + z) \in [0, 1)`."""
        r, alpha, a, _ = self._fitted_params()
        b_post = self._b_if_alive() + x
        z = t / (alpha + T)
        return (1.0 + z) ** -a * hyp2f1(a, a + b_post - r - x, a + b_post, z / (1.0 + z))

    def _no_purchase(
        self, t: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
    ) -> np.ndarray:
        r, alpha, _, _ = self._fitted_params()
        odds = self._log_dropout_odds(x, t_x, T)
        alive, dropped = expit(-odds), expit(odds)
        # A sum of two non-negative terms: accurate even when the result is tiny.
        quiet_if_alive = np.exp(-(r + x) * np.log1p(t / (alpha + T)))
        return np.where(t > 0, dropped + alive * quiet_if_alive, 1.0)

    def _pmf(
        self, n: np.ndarray, t: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
    ) -> np.ndarray:
        r, alpha, a, _ = self._fitted_params()
        log_alive = -np.logaddexp(0.0, self._log_dropout_odds(x, t_x, T))
        log_if_alive = _log_purchase_pmf_if_alive(r, alpha, a, self._b_if_alive(), n, t, x, T)
        return np.where(n > 0, np.exp(log_alive + log_if_alive), self._no_purchase(t, x, t_x, T))

    # -- predictions -------------------------------------------------------------------

    def p_purchases_new_customer(self, n: object, t: object) -> np.ndarray:
        r"""Probability that a new customer makes exactly ``n`` repeat purchases in (0, t].

        :meth:`p_purchases` for a customer with :math:`x = t_x = T = 0`: FHL (2005) eq. (8)
        (for MBG/NBD: lifetimes' ``ModifiedBetaGeoFitter``'s version).

        Parameters
        ----------
        n : int or array-like of int
            Number of repeat purchases, whole numbers >= 0.
        t : float or array-like
            Time since the first purchase (broadcast against ``n``).

        Returns
        -------
        numpy.ndarray
            Probabilities, in the broadcast shape of ``n`` and ``t``.

        Raises
        ------
        clvlab.errors.DataError
            ``n`` negative or not a whole number, ``t`` negative or not finite.
        """
        count, horizon = as_float_arrays(n=n, t=t)
        check_nonnegative(n=count, t=horizon)
        check_counts(count)
        zero = np.zeros_like(horizon)
        return self._pmf(count, horizon, zero, zero, zero)


def _start_points(x: np.ndarray, T_scaled: np.ndarray, counts: np.ndarray) -> list[np.ndarray]:
    r"""Start points in log-parameters, with alpha in units of the longest age.

    The first start matches the mean purchase rate :math:`r / \alpha` to the observed rate
    :math:`\sum x / \sum T` with :math:`r = 1`, and takes :math:`a = 1, b = 3` (a 25 % mean
    dropout probability per purchase); the others cover slow and fast buyers and lifetimes'
    default start.
    """
    exposure = float(counts @ T_scaled)
    rate = float(counts @ x) / exposure if exposure > 0 else 0.0
    alpha0 = 1.0 / rate if rate > 0 else 1.0
    return [
        np.log([1.0, alpha0, 1.0, 3.0]),
        np.full(4, 0.1),
        np.log([0.25, 0.25 * alpha0, 0.8, 2.5]),
        np.log([3.0, 3.0 * alpha0, 2.0, 10.0]),
    ]
