r"""MBG/CNBD-k: MBG/NBD with Erlang-k times between purchases, for customers who buy regularly.

Platzer and Reutterer (2016), "Ticking away the moments: timing regularity helps to better
predict customer activity", Marketing Science 35 (5), 779-799; BTYDplus' ``mbgcnbd.*``
functions. A customer's purchases are every ``k``-th event of a Poisson process with rate
:math:`\lambda \sim \mathrm{Gamma}(r, \alpha)`, so the times between purchases are Erlang-k
(``k = 1``: exponential, MBG/NBD); right after each purchase, the first included, the
customer drops out with probability :math:`p \sim \mathrm{Beta}(a, b)`. The larger ``k``, the
more regular the timing, and the more a long gap since the last purchase says "gone".

``k`` is chosen by likelihood (BTYDplus' grid search: ``k = 1, 2, ...`` until the likelihood
falls twice in a row), which needs ``litt``, the sum of the logarithms of each customer's
times between purchases (``clvlab.rfm(..., litt=True)``); it enters the likelihood only
through a term that does not depend on :math:`r, \alpha, a, b`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
from scipy.special import betainc, digamma, expit, gammaln, logsumexp, nbdtrik

from clvlab.errors import ConfigError, DataError
from clvlab.models.btyd.base import (
    WEIGHTS_NOT_PASSED,
    CompressedRows,
    FitProblem,
    coarse_to_fine,
    forward_difference_hessian,
    history_arrays,
    purchase_histories_to_fit,
    renamed_sample_weight,
)
from clvlab.models.btyd.purchase import PurchaseModel

#: Customers in the coarse subsample of large fits (see FitProblem.coarse).
_COARSE_CUSTOMERS = 20_000.0
#: Rows per block when predictions sum over future purchases, and the most cells (rows x
#: stage counts x k) a block may hold (bounds memory: 32 MB an array).
_BLOCK = 2048
_CELLS = 4_000_000
#: Future purchases are summed until the chance of reaching the next one is below this.
_TAIL = 1e-15


def _log_dropout_odds(
    params: tuple[float, ...],
    k: int,
    x: np.ndarray,
    t_x: np.ndarray,
    T: np.ndarray,
) -> np.ndarray:
    r"""Log odds :math:`\ln(S_1 / S_2)` of "dropped out after the purchase at :math:`t_x`" vs
    "alive at :math:`T`" (BTYDplus ``mbgcnbd.PAlive``; :meth:`_Histories.terms`)."""
    log_s1, terms, _, _ = _Histories.of(x, t_x, T).terms(params, k)
    return log_s1 - logsumexp(terms, axis=1)


def negative_log_likelihood(
    log_params: np.ndarray,
    k: int,
    x: np.ndarray,
    t_x: np.ndarray,
    T: np.ndarray,
    weight: np.ndarray,
) -> tuple[float, np.ndarray]:
    r"""Total negative log-likelihood (without the ``litt`` term) and its gradient w.r.t.
    :math:`\ln(r, \alpha, a, b)`.

    Per customer (BTYDplus ``xbgcnbd.LL`` with ``dropout_at_zero``), up to
    :math:`(k - 1)\,\mathrm{litt} - x \ln (k-1)!`:

    .. math::
        \ln \frac{B(a, b + x + 1)}{B(a, b)} + \ln\frac{\Gamma(r + kx)\,\alpha^r}{\Gamma(r)}
        - (r + kx) \ln(\alpha + T) + \ln(S_1 + S_2),\quad
        S_1 = \frac{a}{b + x}\Big(\frac{\alpha + T}{\alpha + t_x}\Big)^{r + kx}

    with :math:`S_2` the sum of the terms of :meth:`_Histories.terms`.
    """
    return _Histories.of(x, t_x, T, weight).nll(log_params, k)


@dataclass(frozen=True)
class _Histories:
    """Weighted ``(x, t_x, T)`` rows, with their frequencies coded: the special functions
    of the likelihood depend on ``x`` only, so they are taken once per distinct ``x``."""

    values: np.ndarray  # the distinct frequencies
    codes: np.ndarray  # each row's index into values
    t_x: np.ndarray
    T: np.ndarray
    weight: np.ndarray

    @classmethod
    def of(
        cls, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, weight: np.ndarray | None = None
    ) -> _Histories:
        values, codes = np.unique(x, return_inverse=True)
        return cls(values, codes.reshape(-1), t_x, T, np.ones(len(x)) if weight is None else weight)

    def terms(
        self, params: tuple[float, ...] | np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        r"""Per row: :math:`\ln S_1` and the log of the terms :math:`j = 0, \dots, k - 1` of
        :math:`S_2` (shape ``(n, k)``),

        .. math::
            \ln \frac{\Gamma(r + kx + j)}{\Gamma(r + kx)\, j!}
            \Big(\frac{T - t_x}{\alpha + T}\Big)^j,

        proportional to the probability that, alive at :math:`T`, the customer has completed
        :math:`j` of the ``k`` stages towards the next purchase (term 0 is 0); and
        :math:`\ln(\alpha + T)`, :math:`\ln(\alpha + t_x)`."""
        r, alpha, a, b = params
        x, code, t_x, T = self.values, self.codes, self.t_x, self.T
        j = np.arange(k, dtype=float)
        shape_x = r + k * x
        log_big, log_last = np.log(alpha + T), np.log(alpha + t_x)
        log_s1 = math.log(a) - np.log(b + x)[code] + shape_x[code] * (log_big - log_last)
        terms = (gammaln(shape_x[:, None] + j) - gammaln(shape_x)[:, None] - gammaln(j + 1.0))[code]
        if k > 1:
            with np.errstate(divide="ignore"):
                log_ratio = np.log(T - t_x) - log_big
            terms[:, 1:] += j[1:] * log_ratio[:, None]  # -inf where T = t_x: no stage done
        return log_s1, terms, log_big, log_last

    def nll(self, log_params: np.ndarray, k: int) -> tuple[float, np.ndarray]:
        """:func:`negative_log_likelihood` of the rows."""
        r, alpha, a, b = np.exp(log_params)
        x, code, T = self.values, self.codes, self.T
        j = np.arange(k, dtype=float)
        log_s1, terms, log_big, log_last = self.terms((r, alpha, a, b), k)
        # Per distinct frequency.
        shape_x = r + k * x
        value_x = (
            gammaln(b + x + 1) - gammaln(a + b + x + 1) - gammaln(b) + gammaln(a + b)
            + gammaln(shape_x) - gammaln(r) + r * math.log(alpha)
        )  # fmt: skip
        d_r_x = digamma(shape_x) - digamma(r) + math.log(alpha)
        d_a_x = digamma(a + b) - digamma(a + b + x + 1)
        d_b_x = digamma(b + x + 1) - digamma(a + b + x + 1) - digamma(b) + digamma(a + b)
        # Per row.
        shape = shape_x[code]
        if k == 1:
            log_s2 = np.zeros_like(log_s1)
            d_s2_r = d_s2_alpha = log_s2
        else:
            top = terms.max(axis=1)  # >= 0 (term 0 is 0)
            stages = np.exp(terms - top[:, None])
            total = stages.sum(axis=1)
            log_s2 = top + np.log(total)
            stages /= total[:, None]  # posterior of the completed stages
            stage_d_r = digamma(shape_x[:, None] + j) - digamma(shape_x)[:, None]
            d_s2_r = (stages * stage_d_r[code]).sum(axis=1)
            d_s2_alpha = -(stages @ j) / (alpha + T)
        mix = np.logaddexp(log_s1, log_s2)
        share_s1 = np.exp(log_s1 - mix)
        w = self.weight
        value = value_x[code] - shape * log_big + mix
        d_r = d_r_x[code] - log_big + share_s1 * (log_big - log_last) + (1 - share_s1) * d_s2_r
        d_alpha = (
            r / alpha - shape / (alpha + T)
            + share_s1 * shape * (1 / (alpha + T) - np.exp(-log_last))
            + (1 - share_s1) * d_s2_alpha
        )  # fmt: skip
        d_a = d_a_x[code] + share_s1 / a
        d_b = d_b_x[code] - share_s1 / (b + x)[code]
        grad = np.array([d_r @ w * r, d_alpha @ w * alpha, d_a @ w * a, d_b @ w * b])
        return -float(value @ w), -grad


def _log_survival(params: tuple[float, ...], x: np.ndarray, m: np.ndarray) -> np.ndarray:
    r""":math:`\ln c_m = \ln E[(1 - p)^m]` for :math:`p \sim \mathrm{Beta}(a, b + x + 1)`, the
    dropout probability of a customer alive at :math:`T`; ``m`` of shape ``(rows, M)``."""
    a, b_alive = params[2], (params[3] + x + 1.0)[:, None]
    return gammaln(b_alive + m) - gammaln(b_alive) + gammaln(a + b_alive) - gammaln(a + b_alive + m)


class _Window:
    """The purchase process of customers alive at ``T`` over the window (T, T + t]."""

    def __init__(
        self,
        params: tuple[float, ...],
        k: int,
        t: np.ndarray,
        x: np.ndarray,
        t_x: np.ndarray,
        T: np.ndarray,
    ) -> None:
        r, alpha = params[0], params[1]
        terms = _Histories.of(x, t_x, T).terms(params, k)[1]
        self.k = k
        self.stages = np.exp(terms - logsumexp(terms, axis=1)[:, None])  # (rows, k)
        self.shape = (r + k * x)[:, None] + np.arange(k)  # lambda's posterior shape given j
        self.later = t / (alpha + T + t)  # 1 - the success probability of the stage count

    def reach(self, count: np.ndarray) -> np.ndarray:
        r"""P(at least ``count`` purchases in the window, if the customer survives them):
        :math:`\sum_j w_j P(N_j \ge mk - j)` for each ``m`` in ``count`` (shape
        ``(rows, M)``), with :math:`P(N \ge n) = I_{t / (\alpha + T + t)}(n, r + kx + j)`."""
        needed = count[:, :, None] * self.k - np.arange(self.k)  # (rows, M, k)
        with np.errstate(invalid="ignore"):
            tail = betainc(
                np.maximum(needed, 1.0), self.shape[:, None, :], self.later[:, None, None]
            )
        tail = np.where(needed > 0, tail, 1.0)
        return np.einsum("imj,ij->im", tail, self.stages)


class MBGCNBD(PurchaseModel):
    r"""MBG/CNBD-k model: MBG/NBD with Erlang-k times between purchases.

    Platzer & Reutterer (2016); BTYDplus ``mbgcnbd.EstimateParameters`` and the functions
    after it. With ``k = 1`` it is :class:`~clvlab.models.btyd.ModifiedBetaGeo`.

    Parameters
    ----------
    k : int, optional
        The Erlang order. None (default): chosen by likelihood among ``1..max_k``, which needs
        a ``litt`` column in the RFM table (``clvlab.rfm(..., litt=True)``).
    max_k : int, default 12
        The largest ``k`` tried (BTYDplus' grid).
    penalizer_coef : float, default 0.0
        As in :class:`~clvlab.models.btyd.BetaGeo`.

    Attributes
    ----------
    k_ : int
        The fitted ``k``.
    log_likelihoods_ : pandas.Series
        The maximised log-likelihood of each ``k`` tried (with the ``litt`` term).
    params_, stderr_, log_likelihood_, converged_, n_iter_
        As in :class:`~clvlab.models.btyd.base.BTYDEstimator`, for ``k_``; the
        log-likelihood includes :math:`\sum (k - 1)\,\mathrm{litt} - x \ln (k - 1)!` when
        the table has ``litt``.

    Notes
    -----
    Alive at :math:`T`, the customer has completed :math:`j < k` stages since the purchase
    at :math:`t_x` with probability :math:`w_j \propto` the ``j``-th term of
    :meth:`_Histories.terms`, and then :math:`\lambda \sim \mathrm{Gamma}(r + kx + j,
    \alpha + T)` and, independently, :math:`p \sim \mathrm{Beta}(a, b + x + 1)`. The
    ``m``-th future purchase falls in :math:`(T, T + t]` when the stages there,
    :math:`N \sim \mathrm{NB}(r + kx + j, \frac{\alpha + T}{\alpha + T + t})`, number at
    least :math:`mk - j`, and counts if the customer survived the ``m - 1`` before it:

    .. math::
        E[X(T, T + t) \mid \text{alive}] = \sum_j w_j \sum_{m \ge 1} c_{m - 1}\,
        P(N_j \ge mk - j),\qquad c_m = \frac{B(a, b + x + 1 + m)}{B(a, b + x + 1)},

    and :math:`P(X = n \mid \text{alive}) = \sum_j w_j [c_{n-1} P(N_j \ge nk - j) - c_n
    P(N_j \ge (n+1)k - j)]` (``n >= 1``). These are exact (summed until the next term is
    below 1e-15), where BTYDplus' ``mbgcnbd.ConditionalExpectedTransactions`` approximates
    with the BG/NBD formula and a cohort-level bias correction.
    :math:`P(\text{alive}) = 1 / (1 + S_1 / S_2)` as in BTYDplus ``mbgcnbd.PAlive``.
    """

    PARAM_NAMES: ClassVar[tuple[str, ...]] = ("r", "alpha", "a", "b")
    _UNIDENTIFIED: ClassVar[str] = "the dropout parameters a and b"

    def __init__(self, k: int | None = None, max_k: int = 12, penalizer_coef: float = 0.0):
        super().__init__(penalizer_coef=penalizer_coef)
        self.k = k
        self.max_k = max_k

    # -- fitting -----------------------------------------------------------------------

    def fit(
        self,
        rfm: pd.DataFrame,
        sample_weight: np.ndarray | None = None,
        *,
        at: Mapping[str, float] | None = None,
        weights: object = WEIGHTS_NOT_PASSED,
        litt_total: float | None = None,
    ) -> Self:
        """Fit ``r, alpha, a, b`` for each ``k`` tried and keep the most likely ``k``.

        Parameters and warnings are those of :meth:`PurchaseModel.fit`; ``rfm`` also needs
        ``litt`` when ``k`` is None (``at`` then needs ``k`` set), unless ``litt_total``, the
        weighted sum of ``litt`` over the rows, is given (rows that count several customers,
        e.g. :class:`~clvlab.models.statistics.SufficientStatistics`, have no one ``litt``).

        Raises
        ------
        clvlab.errors.DataError
            ``k`` is None and ``rfm`` has no ``litt`` column, or ``litt`` is not finite.
        clvlab.errors.ConfigError
            ``k`` or ``max_k`` is not a whole number >= 1.
        """
        name = type(self).__name__
        candidates = self._ks()
        chosen_weight = renamed_sample_weight(sample_weight, weights, name)
        rows, time_scale = purchase_histories_to_fit(rfm, chosen_weight, name, self._UNIDENTIFIED)
        litt_total, repeat_total = self._litt_sums(
            rfm, chosen_weight, litt_total, needed=len(candidates) > 1
        )
        if at is not None and len(candidates) > 1:
            raise ConfigError(f"{name}: fitting at given parameters needs k set.")
        fits: dict[int, tuple[dict[str, Any], list[warnings.WarningMessage]]] = {}
        log_likelihoods: dict[int, float] = {}
        for k in candidates:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                self._fit_problem(self._problem_for_k(rows, time_scale, k), at)
            self.log_likelihood_ += (k - 1) * litt_total - repeat_total * math.lgamma(k)
            fits[k] = ({n: getattr(self, n) for n in _FITTED}, caught)
            log_likelihoods[k] = self.log_likelihood_
            tried = list(log_likelihoods.values())
            if len(tried) >= 3 and tried[-1] < tried[-2] < tried[-3]:
                break  # BTYDplus: stop when the likelihood falls twice in a row
        best = max(log_likelihoods, key=log_likelihoods.__getitem__)
        state, caught = fits[best]
        for attribute, value in state.items():
            setattr(self, attribute, value)
        for warning in caught:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
        self.k_ = best
        self.log_likelihoods_ = pd.Series(log_likelihoods, name="log_likelihood", dtype=float)
        self.log_likelihoods_.index.name = "k"
        return self

    def _ks(self) -> list[int]:
        name = type(self).__name__
        for setting in ("k", "max_k"):
            value = getattr(self, setting)
            if value is None and setting == "k":
                continue
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ConfigError(f"{name}: {setting} must be a whole number >= 1, got {value!r}.")
        return [int(self.k)] if self.k is not None else list(range(1, int(self.max_k) + 1))

    def _litt_sums(
        self, rfm: pd.DataFrame, sample_weight: object, litt_total: float | None, needed: bool
    ) -> tuple[float, float]:
        """Weighted sums of ``litt`` and of ``frequency`` (0, 0 without ``litt``)."""
        w = np.ones(len(rfm)) if sample_weight is None else np.asarray(sample_weight, float)
        if litt_total is not None:
            if not math.isfinite(litt_total):
                raise DataError(f"{type(self).__name__}: litt_total must be finite.")
            return float(litt_total), float(w @ rfm["frequency"].to_numpy(dtype=float))
        if "litt" not in rfm.columns:
            if needed:
                raise DataError(
                    f"{type(self).__name__}: choosing k needs the column 'litt' (the sum of the "
                    "logs of each customer's times between purchases); summarise with "
                    "clvlab.rfm(..., litt=True), or set k."
                )
            return 0.0, 0.0
        litt = pd.to_numeric(rfm["litt"], errors="coerce").to_numpy(dtype=float)
        if not np.isfinite(litt).all():
            raise DataError(
                f"{type(self).__name__}: 'litt' has {int((~np.isfinite(litt)).sum())} missing "
                "or infinite values; summarise with clvlab.rfm(..., litt=True)."
            )
        return float(w @ litt), float(w @ rfm["frequency"].to_numpy(dtype=float))

    def _problem_for_k(self, rows: CompressedRows, time_scale: float, k: int) -> FitProblem:
        """The fit of one ``k``; on large data a coarse problem on a subsample first, whose
        optimum Newton steps polish (from a Hessian by differences of the exact gradient)."""
        x, counts = rows.column(0), rows.counts
        exposure = float(counts @ (rows.column(2) / time_scale))
        rate = float(counts @ x) / exposure if exposure > 0 else 0.0
        alpha0 = 1.0 / (k * rate) if rate > 0 else 1.0  # r / alpha: k times the purchase rate
        starts = [
            np.log([1.0, alpha0, 1.0, 3.0]),
            np.log([0.25, 0.25 * alpha0, 0.8, 2.5]),
            np.log([3.0, 3.0 * alpha0, 2.0, 10.0]),
        ]

        def problem_for(histories: CompressedRows) -> FitProblem:
            x, t_x, T = (histories.column(j) for j in range(3))
            coded = _Histories.of(x, t_x, T, histories.counts)

            def nll(log_theta: np.ndarray) -> tuple[float, np.ndarray]:
                return coded.nll(log_theta, k)

            return FitProblem(
                nll=nll,
                total_weight=float(histories.counts.sum()),
                log_offset=np.array([0.0, math.log(time_scale), 0.0, 0.0]),
                penalty_scale=np.array([1.0, 1.0 / time_scale, 1.0, 1.0]),
                starts=starts,
                hessian=forward_difference_hessian(nll),
            )

        return coarse_to_fine(problem_for, rows, _COARSE_CUSTOMERS)

    # -- predictions -------------------------------------------------------------------

    def future_needs_recency(self) -> bool:
        """True for ``k > 1``: the Erlang stages completed since the last purchase, and so
        the wait for the next, depend on the time since it."""
        return self._fitted_k() > 1

    def _fitted_k(self) -> int:
        self._fitted_params()  # the not-fitted error
        return int(self.k_)

    def _log_dropout_odds(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        shape = np.broadcast(x, t_x, T).shape
        x, t_x, T = (np.broadcast_to(v, shape).reshape(-1) for v in (x, t_x, T))
        odds = _log_dropout_odds(self._fitted_params(), self._fitted_k(), x, t_x, T)
        return odds.reshape(shape)

    def _future(
        self,
        t: np.ndarray,
        x: np.ndarray,
        t_x: np.ndarray,
        T: np.ndarray,
        n: np.ndarray | None,
        *,
        survival: bool = False,
    ) -> np.ndarray:
        r"""Given alive at T: the expected purchases in (T, T + t] (``n`` None), P(exactly
        ``n``) (see the Notes of the class), or with ``survival`` P(alive at T + t), the
        chance of surviving the purchases the window brings, :math:`\sum_j w_j \sum_s
        P(N_j = s)\, c_{\lfloor (s + j) / k \rfloor}`; flat arrays of one length."""
        params, k = self._fitted_params(), self._fitted_k()
        if n is not None:  # two terms a row
            count = n[:, None] + np.array([0.0, 1.0])
            reach = _Window(params, k, t, x, t_x, T).reach(count)
            c = np.exp(_log_survival(params, x, np.maximum(count - 1.0, 0.0)))
            return np.where(
                n == 0, 1.0 - reach[:, 1], c[:, 0] * reach[:, 0] - c[:, 1] * reach[:, 1]
            )
        # E = sum_j w_j sum_n P(N_j = n) C(floor((n + j) / k)), C(M) = c_0 + ... + c_(M-1),
        # and the survival the same with c_M in place of C(M): every term positive (no
        # difference of tails). Stage counts are summed per row up
        # to where the rest has a chance below _TAIL, with rows taken in order of that
        # count, so that a heavy buyer does not widen the block of light ones.
        r, alpha = params[0], params[1]
        success = (alpha + T) / (alpha + T + t)
        with np.errstate(invalid="ignore"):
            stages = nbdtrik(1.0 - _TAIL, r + k * x + k - 1, success)
        most = np.ceil(np.nan_to_num(stages, nan=0.0)).astype(np.int64) + k
        order = np.argsort(most, kind="stable")
        out = np.empty(x.size)
        start = 0
        while start < x.size:
            # At most _BLOCK rows, and fewer where the stage counts are long (bounds memory).
            widest = int(most[order[min(start + _BLOCK, x.size) - 1]]) + 1
            size = max(1, min(_BLOCK, _CELLS // (widest * k)))
            rows = order[start : start + size]
            start += size
            n = np.arange(float(most[rows].max() + 1))[None, :, None]  # stage counts
            window = _Window(params, k, t[rows], x[rows], t_x[rows], T[rows])
            shape = window.shape[:, None, :]  # (rows, 1, k)
            with np.errstate(divide="ignore", invalid="ignore"):
                log_pmf = (
                    gammaln(n + shape) - gammaln(shape) - gammaln(n + 1.0)
                    + shape * np.log(success[rows])[:, None, None]
                    + n * np.log1p(-success[rows])[:, None, None]
                )  # fmt: skip
            log_pmf = np.where(n == 0, (shape * np.log(success[rows])[:, None, None]), log_pmf)
            purchases = (n + np.arange(k)) // k  # (1, stages, k): purchases the stages make
            m = np.arange(float(purchases.max()) + 1.0)[None, :]
            survive = np.exp(_log_survival(params, x[rows], m))  # (rows, M + 1): c_M
            if survival:
                by_count = survive
            else:  # (rows, M + 1): C(M)
                by_count = np.concatenate(
                    [np.zeros((rows.size, 1)), np.cumsum(survive[:, :-1], axis=1)], axis=1
                )
            gained = by_count[:, purchases.reshape(-1).astype(np.int64)].reshape(log_pmf.shape)
            out[rows] = np.einsum("isj,isj,ij->i", np.exp(log_pmf), gained, window.stages)
        return out

    def _expected(self, t: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        shape = np.broadcast(t, x, t_x, T).shape
        (t, x, t_x, T), inverse = _distinct(t, x, t_x, T)
        alive = expit(-self._log_dropout_odds(x, t_x, T))
        return (alive * self._future(t, x, t_x, T, None))[inverse].reshape(shape)

    def expected_purchases_by_horizon(
        self, horizons: Sequence[float], frequency: object, recency: object, T: object
    ) -> np.ndarray:
        """:meth:`expected_purchases` for each of several horizons, stacked: row ``i`` is
        ``expected_purchases(horizons[i], frequency, recency, T)``; each distinct history and
        its P(alive) are computed once."""
        x, t_x, age = history_arrays(frequency, recency, T)
        shape = x.shape
        (x, t_x, age), inverse = _distinct(x, t_x, age)
        alive = expit(-self._log_dropout_odds(x, t_x, age))
        rows = []
        for t in horizons:
            horizon = history_arrays(x, t_x, age, t=t)[0]
            rows.append((alive * self._future(horizon, x, t_x, age, None))[inverse].reshape(shape))
        return np.stack(rows)

    def _no_purchase(
        self, t: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
    ) -> np.ndarray:
        return self._pmf(np.zeros_like(t), t, x, t_x, T)

    def _survival_if_alive(
        self, t: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
    ) -> np.ndarray:
        shape = np.broadcast(t, x, t_x, T).shape
        (t, x, t_x, T), inverse = _distinct(t, x, t_x, T)
        return self._future(t, x, t_x, T, None, survival=True)[inverse].reshape(shape)

    def _pmf(
        self, n: np.ndarray, t: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
    ) -> np.ndarray:
        shape = np.broadcast(n, t, x, t_x, T).shape
        (n, t, x, t_x, T), inverse = _distinct(n, t, x, t_x, T)
        alive = expit(-self._log_dropout_odds(x, t_x, T))
        future = self._future(t, x, t_x, T, n)
        return (np.where(n == 0, 1.0 - alive, 0.0) + alive * future)[inverse].reshape(shape)

    # -- serialization -----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """:meth:`BTYDEstimator.to_dict` plus ``k``, ``max_k`` and, fitted, ``k_fitted`` and
        ``log_likelihoods`` (by k)."""
        out = super().to_dict()
        out["k"], out["max_k"] = self.k, int(self.max_k)
        if out["fitted"]:
            out["k_fitted"] = int(self.k_)
            out["log_likelihoods"] = {str(k): float(v) for k, v in self.log_likelihoods_.items()}
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        """Rebuild from :meth:`to_dict`'s output."""
        model = super().from_dict(d)
        model.k = None if d.get("k") is None else int(d["k"])
        model.max_k = int(d.get("max_k", 12))
        if hasattr(model, "params_"):
            if "k_fitted" not in d:
                raise ConfigError(f"{cls.__name__}.from_dict: a fitted model needs k_fitted.")
            model.k_ = int(d["k_fitted"])
            by_k = d.get("log_likelihoods") or {str(model.k_): model.log_likelihood_}
            model.log_likelihoods_ = pd.Series(
                {int(k): float(v) for k, v in by_k.items()}, name="log_likelihood", dtype=float
            )
            model.log_likelihoods_.index.name = "k"
        return model


def _distinct(*arrays: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """The distinct rows of broadcast ``arrays`` (as flat float columns) and, for each
    element, the index of its row: predictions are computed once per distinct history."""
    shape = np.broadcast(*arrays).shape
    columns = [np.broadcast_to(a, shape).reshape(-1).astype(float) for a in arrays]
    order = np.lexsort(columns[::-1])
    repeated = np.zeros(order.size, dtype=bool)  # the same row as the one before it
    repeated[1:] = True
    for column in columns:
        ordered = column[order]
        repeated[1:] &= ordered[1:] == ordered[:-1]
    first = ~repeated
    inverse = np.empty(order.size, dtype=np.int64)
    inverse[order] = np.cumsum(first) - 1
    return [column[order[first]] for column in columns], inverse


#: The fitted state of one ``k`` (kept while the others are tried).
_FITTED = ("params_", "stderr_", "covariance_", "log_likelihood_", "converged_", "n_iter_")
