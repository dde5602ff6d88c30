r"""GGompertz/NBD: purchases at a Poisson rate until a Gamma-Gompertz lifetime ends.

Bemmaor and Glady (2012), "Modeling purchasing behavior with sudden 'death': a flexible
customer lifetime model", Management Science 58 (5), 1012-1021; CLVTools' ``ggomnbd`` and the
former BTYDplus ``ggnbd``. As in Pareto/NBD a customer buys at rate
:math:`\lambda \sim \mathrm{Gamma}(r, \alpha)` while alive, but the lifetime :math:`\tau` is
Gompertz with scale :math:`b` and a Gamma(:math:`s, \beta`) frailty, so that

.. math::
    S(\tau) = P(\text{lifetime} > \tau) = \Big(\frac{\beta}{\beta - 1 + e^{b\tau}}\Big)^s,

dropout hazards that can rise with age (:math:`b \to 0` with :math:`\beta / b` fixed is
Pareto/NBD's exponential-gamma lifetime).
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
from scipy.special import digamma, expit, gammaln

from clvlab.models.btyd.base import (
    CompressedRows,
    FitProblem,
    coarse_to_fine,
    forward_difference_hessian,
    likelihood_threads,
)
from clvlab.models.btyd.purchase import PurchaseModel

#: Gauss-Legendre rule of the integrals, on [0, 1].
_LEGENDRE = np.polynomial.legendre.leggauss(24)
_NODES, _WEIGHTS = 0.5 * (_LEGENDRE[0] + 1.0), 0.5 * _LEGENDRE[1]
_LOG_WEIGHTS = np.log(_WEIGHTS)
#: Rows integrated at a time (their node arrays, 24 x 4,096 doubles, stay in the cache).
_ROWS = 4096
#: The steep integrals stop where the power has fallen by e^-_DEPTH.
_DEPTH = 45.0
#: Customers in the coarse subsample of large fits (see FitProblem.coarse).
_COARSE_CUSTOMERS = 20_000.0


def _log_gompertz_base(b: float, beta: float, y: np.ndarray) -> np.ndarray:
    r""":math:`\ln(\beta - 1 + e^{by})`, accurate for small :math:`by`."""
    with np.errstate(over="ignore"):
        grown = np.expm1(b * y)
    big = b * y > 30.0  # e^{by} dominates: ln(e^{by} (1 + (beta - 1) e^{-by}))
    return np.where(big, b * y + np.log1p((beta - 1.0) * np.exp(-np.minimum(b * y, 700.0))),
                    np.log(beta + np.where(big, 0.0, grown)))  # fmt: skip


def _dropout_integral(
    params: tuple[float, ...], x: np.ndarray, t_x: np.ndarray, T: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    r""":math:`\ln I` and its gradient w.r.t. :math:`(r, \alpha, b, s, \beta)` (shape
    ``(5, n)``), where

    .. math::
        I = \int_{t_x}^{T} (\alpha + y)^{-(r + x)}\, e^{by} (\beta - 1 + e^{by})^{-(s+1)} dy

    (``-inf`` and zeros where :math:`t_x = T`). With :math:`p = r + x`, the substitution
    :math:`z = ((\alpha + y) / (\alpha + t_x))^{1 - p}` (for :math:`p > 1.5`, in
    :math:`\ln z`) absorbs the power, however steep, into the variable; otherwise
    :math:`v = \ln(\alpha + y)`. Either way a 24-point Gauss-Legendre rule integrates what
    is left, and the partial derivatives are the integrals of the integrand's, on the same
    nodes.
    """
    if x.size > _ROWS:  # in blocks of rows (the node arrays stay in the cache), on threads
        parts = list(
            likelihood_threads().map(
                lambda i: _dropout_integral(
                    params, x[i : i + _ROWS], t_x[i : i + _ROWS], T[i : i + _ROWS]
                ),
                range(0, x.size, _ROWS),
            )
        )
        return (
            np.concatenate([part[0] for part in parts]),
            np.concatenate([part[1] for part in parts], axis=1),
        )
    r, alpha, b, s, beta = params
    p = (r + x)[:, None]
    log_low, log_high = np.log(alpha + t_x)[:, None], np.log(alpha + T)[:, None]
    steep = (p > 1.5)[:, 0]
    # Per node: ln(alpha + y) and the log-weight of the rule, which includes (alpha + y)^-p.
    log_big_y = np.empty((x.size, _NODES.size))
    log_w = np.empty_like(log_big_y)
    with np.errstate(divide="ignore", invalid="ignore"):
        # z-substitution, z = ((alpha + y) / (alpha + t_x))^(1 - p), taken in c = ln z:
        # (alpha + y)^-p dy = e^c dc (alpha + t_x)^(1 - p) / (p - 1), c from ln z_T to 0, and
        # below c = -_DEPTH the integrand is under e^-_DEPTH of its value at t_x: left out.
        ps, lows = p[steep], log_low[steep]
        c_end = np.maximum((1.0 - ps) * (log_high[steep] - lows), -_DEPTH)
        c = c_end * (1.0 - _NODES)
        log_big_y[steep] = lows + c / (1.0 - ps)
        log_w[steep] = _LOG_WEIGHTS + np.log(-c_end) + c + (1.0 - ps) * lows - np.log(ps - 1.0)
        # v-substitution: v = ln(alpha + y), dy = e^v dv.
        flat = ~steep
        pf, lowf = p[flat], log_low[flat]
        width = log_high[flat] - lowf
        v = lowf + width * _NODES
        log_big_y[flat] = v
        log_w[flat] = _LOG_WEIGHTS + np.log(width) + (1.0 - pf) * v
    y = np.clip(np.exp(log_big_y) - alpha, t_x[:, None], T[:, None])
    grown_m1 = np.expm1(b * y) if b * float(np.max(T, initial=0.0)) <= 700.0 else None
    if grown_m1 is not None:
        denominator = beta + grown_m1  # beta - 1 + e^{by}
        base = np.log(denominator)
        inverse = 1.0 / denominator
        grown = (grown_m1 + 1.0) * inverse  # e^{by} / (beta - 1 + e^{by})
    else:  # e^{by} would overflow somewhere: the log-domain form
        base = _log_gompertz_base(b, beta, y)
        inverse = np.exp(-base)
        grown = np.exp(b * y - base)
    log_f = log_w + b * y - (s + 1.0) * base
    empty = ~(t_x < T)
    log_f[empty] = -np.inf
    top = np.max(log_f, axis=1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    share = np.exp(log_f - top)
    total = share.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_i = (top + np.log(total))[:, 0]
        share = np.where(total > 0, share / total, 0.0)
    d_r = -(share * log_big_y).sum(axis=1)
    d_alpha = -p[:, 0] * (share * np.exp(-log_big_y)).sum(axis=1)
    d_b = (share * (y * (1.0 - (s + 1.0) * grown))).sum(axis=1)
    d_s = -(share * base).sum(axis=1)
    d_beta = -(s + 1.0) * (share * inverse).sum(axis=1)
    log_i = np.where(empty, -np.inf, log_i)
    return log_i, np.array([d_r, d_alpha, d_b, d_s, d_beta])


def _log_likelihood_parts(
    params: tuple[float, ...], x: np.ndarray, t_x: np.ndarray, T: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    r"""The two terms of each customer's likelihood, :math:`\ln L_1` (alive at :math:`T`) and
    :math:`\ln L_2` (died in :math:`(t_x, T]`), with their gradients (shape ``(5, n)``):

    .. math::
        L_1 = \frac{\Gamma(r + x)\,\alpha^r}{\Gamma(r)\,(\alpha + T)^{r + x}}\, S(T),\qquad
        L_2 = \frac{\Gamma(r + x)\,\alpha^r}{\Gamma(r)}\, b s \beta^s I

    with :math:`I` of :func:`_dropout_integral` (BTYDplus ``ggnbd.LL``).
    """
    r, alpha, b, s, beta = params
    common = gammaln(r + x) - gammaln(r) + r * math.log(alpha)
    d_common_r = digamma(r + x) - digamma(r) + math.log(alpha)
    base_T = _log_gompertz_base(b, beta, T)
    log_l1 = common - (r + x) * np.log(alpha + T) + s * (math.log(beta) - base_T)
    zero = np.zeros_like(log_l1)
    d_l1 = np.array(
        [
            d_common_r - np.log(alpha + T),
            r / alpha - (r + x) / (alpha + T),
            -s * T * np.exp(b * T - base_T),
            math.log(beta) - base_T,
            s / beta - s * np.exp(-base_T),
        ]
    )
    log_i, d_i = _dropout_integral(params, x, t_x, T)
    log_l2 = common + math.log(b * s) + s * math.log(beta) + log_i
    d_l2 = d_i + np.array(
        [d_common_r, zero + r / alpha, zero + 1.0 / b, zero + 1.0 / s + math.log(beta),
         zero + s / beta]
    )  # fmt: skip
    return log_l1, d_l1, log_l2, d_l2


def negative_log_likelihood(
    log_params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, weight: np.ndarray
) -> tuple[float, np.ndarray]:
    """Total negative GGompertz/NBD log-likelihood and its gradient w.r.t. the
    log-parameters ``ln(r, alpha, b, s, beta)``."""
    params = tuple(float(v) for v in np.exp(log_params))
    log_l1, d_l1, log_l2, d_l2 = _log_likelihood_parts(params, x, t_x, T)
    total = np.logaddexp(log_l1, log_l2)
    share = np.exp(log_l1 - total)
    grad = (share * d_l1 + (1.0 - share) * np.nan_to_num(d_l2)) @ weight
    return -float(total @ weight), -grad * np.exp(log_params)


class GGompertzNBD(PurchaseModel):
    r"""GGompertz/NBD model (Bemmaor & Glady 2012; CLVTools ``ggomnbd``).

    Parameters and attributes are those of :class:`~clvlab.models.btyd.ParetoNBD`, with
    ``params_`` ``r, alpha`` (purchase rates, Gamma) and ``b, s, beta`` (the Gamma-Gompertz
    lifetime: :math:`S(\tau) = (\beta / (\beta - 1 + e^{b\tau}))^s`).

    Notes
    -----
    :math:`P(\text{alive}) = L_1 / (L_1 + L_2)` (see :func:`_log_likelihood_parts`). Alive at
    :math:`T`, :math:`\lambda \sim \mathrm{Gamma}(r + x, \alpha + T)` and, independently, the
    rest of the lifetime survives :math:`u` with :math:`R(u) = S(T + u) / S(T)`; so

    .. math::
        E[X(T, T + t) \mid \text{alive}] = \frac{r + x}{\alpha + T} \int_0^t R(u)\, du,\qquad
        P(X = 0 \mid \text{alive}) = 1 - \int_0^t \frac{r + x}{\alpha + T + u}
        \Big(\frac{\alpha + T}{\alpha + T + u}\Big)^{r + x} R(u)\, du,

    by Gauss-Legendre quadrature; :math:`P(X = n \mid \text{alive})` is the negative binomial
    averaged over the rest of the lifetime (:meth:`_count_if_alive`), of which the second
    formula is the case :math:`n = 0`.
    """

    PARAM_NAMES: ClassVar[tuple[str, ...]] = ("r", "alpha", "b", "s", "beta")
    _UNIDENTIFIED: ClassVar[str] = "the lifetime parameters b, s and beta"

    def _problem_for(self, rows: CompressedRows, time_scale: float) -> FitProblem:
        """The fit; on large data a coarse problem on a subsample first, polished by Newton
        steps from a Hessian of forward differences of the exact gradient."""
        x, counts = rows.column(0), rows.counts
        exposure = float(counts @ (rows.column(2) / time_scale))
        rate = float(counts @ x) / exposure if exposure > 0 else 0.0
        alpha0 = 1.0 / rate if rate > 0 else 1.0
        # b in units of 1 / time_scale; beta is a number (S depends on beta - 1 + e^{b tau}).
        starts = [
            np.log([1.0, alpha0, 0.5, 1.0, 1.0]),
            np.log([0.5, 0.5 * alpha0, 0.05, 0.5, 0.05]),
            np.log([2.0, 2.0 * alpha0, 2.0, 2.0, 10.0]),
        ]

        def problem_for(histories: CompressedRows) -> FitProblem:
            hx, t_x, T = (histories.column(j) for j in range(3))
            weight = histories.counts

            def nll(log_theta: np.ndarray) -> tuple[float, np.ndarray]:
                return negative_log_likelihood(log_theta, hx, t_x, T, weight)

            return FitProblem(
                nll=nll,
                total_weight=float(weight.sum()),
                log_offset=np.array([0.0, math.log(time_scale), -math.log(time_scale), 0.0, 0.0]),
                penalty_scale=np.array([1.0, 1.0 / time_scale, time_scale, 1.0, 1.0]),
                starts=starts,
                hessian=forward_difference_hessian(nll),
            )

        return coarse_to_fine(problem_for, rows, _COARSE_CUSTOMERS)

    # -- predictions -------------------------------------------------------------------

    def time_scales(self) -> list[float]:
        """``alpha`` and the lifetime's scale :math:`\beta / b` (Pareto/NBD's ``beta`` in the
        limit :math:`b \to 0`); ``beta`` itself is no time."""
        _, alpha, b, _, beta = self._fitted_params()
        return [alpha, beta / b]

    def _log_dropout_odds(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        shape = np.broadcast(x, t_x, T).shape
        x, t_x, T = (np.broadcast_to(v, shape).reshape(-1).astype(float) for v in (x, t_x, T))
        log_l1, _, log_l2, _ = _log_likelihood_parts(self._fitted_params(), x, t_x, T)
        return (log_l2 - log_l1).reshape(shape)

    def _survival_if_alive(
        self, t: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
    ) -> np.ndarray:
        """:math:`S(T + t) / S(T)`."""
        return self._remaining(T, t)

    def _remaining(self, T: np.ndarray, u: np.ndarray) -> np.ndarray:
        """:math:`R(u) = S(T + u) / S(T)` (``T`` of shape ``(n, 1)``)."""
        _, _, b, s, beta = self._fitted_params()
        return np.exp(-s * (_log_gompertz_base(b, beta, T + u) - _log_gompertz_base(b, beta, T)))

    def _window(self, t: np.ndarray, x: np.ndarray, T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nodes ``u`` and weights ``du`` (shape ``(n, nodes)``, from column arrays) of the
        integrals over the window (0, t] of customers alive at ``T``. The window is cut
        where the rest of the lifetime survives with a chance below e^-_DEPTH (a Gompertz
        lifetime can end abruptly), and the rule is taken in ``w = ln(1 + u / c)``, with
        ``c`` the shortest of the scales on which the integrands change (the lifetime's
        hazard at T, the purchase rate's posterior, the window), so that nodes crowd where
        they change most."""
        r, alpha, b, s, beta = self._fitted_params()
        base_T = _log_gompertz_base(b, beta, T)
        level = base_T + _DEPTH / s  # ln(beta - 1 + e^{b (T + u)}) at the cut
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            cut = (level + np.log1p(-(beta - 1.0) * np.exp(-level))) / b - T
        end = np.where(np.isfinite(cut) & (cut > 0), np.minimum(t, cut), t)
        hazard = s * b * np.exp(b * T - base_T)
        scale = np.minimum.reduce(
            [1.0 / hazard, (alpha + T) / (r + x + 1.0), np.maximum(end, 1e-300)]
        )
        width = np.log1p(end / scale)
        w = width * _NODES
        return scale * np.expm1(w), scale * np.exp(w) * width * _WEIGHTS

    def _expected_if_alive(self, t: np.ndarray, x: np.ndarray, T: np.ndarray) -> np.ndarray:
        r, alpha = self._fitted_params()[:2]
        shape = np.broadcast(t, x, T).shape
        t, x, T = (np.broadcast_to(v, shape).reshape(-1, 1).astype(float) for v in (t, x, T))
        u, du = self._window(t, x, T)
        alive_time = (du * self._remaining(T, u)).sum(axis=1, keepdims=True)
        return ((r + x) / (alpha + T) * alive_time).reshape(shape)

    def _no_purchase(
        self, t: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
    ) -> np.ndarray:
        shape = np.broadcast(t, x, t_x, T).shape
        t, x, t_x, T = (np.broadcast_to(v, shape).reshape(-1).astype(float) for v in (t, x, t_x, T))
        alive = expit(-self._log_dropout_odds(x, t_x, T))
        none = self._count_if_alive(np.zeros_like(t), t, x, T)
        return (1.0 - alive + alive * none).reshape(shape)

    def _count_if_alive(
        self, n: np.ndarray, t: np.ndarray, x: np.ndarray, T: np.ndarray
    ) -> np.ndarray:
        r"""P(exactly ``n`` purchases in (T, T + t] | alive at T), flat arrays: with
        :math:`m = \min(\text{rest of the lifetime}, t)` and :math:`q(m) = (\alpha + T) /
        (\alpha + T + m)`, the negative binomial :math:`\mathrm{NB}(n; r + x, q(m))` averaged
        over :math:`m`: :math:`R(t)\,\mathrm{NB}(q(t)) + \int_0^t \mathrm{NB}(q(u))\,
        h(u) R(u)\,du`, with :math:`h` the hazard of the lifetime at :math:`T + u`, on the
        nodes of :meth:`_window`."""
        r, alpha, b, s, beta = self._fitted_params()
        a, big = (r + x)[:, None], (alpha + T)[:, None]
        count = n[:, None]  # 0 ** 0 = 1: n = 0 is P(no purchase)
        log_coefficient = gammaln(a + count) - gammaln(a) - gammaln(count + 1.0)

        def log_nb(u: np.ndarray) -> np.ndarray:
            w = np.log1p(u / big)  # -ln q(u)
            with np.errstate(divide="ignore"):
                tail = np.where(count > 0, count * np.log(-np.expm1(-w)), 0.0)
            return log_coefficient - a * w + tail

        u, du = self._window(t[:, None], x[:, None], T[:, None])
        age = T[:, None] + u
        log_hazard = math.log(s * b) + b * age - _log_gompertz_base(b, beta, age)
        inner = np.exp(log_nb(u) + log_hazard) * self._remaining(T[:, None], u) * du
        at_end = np.exp(log_nb(t[:, None]))[:, 0] * self._remaining(T[:, None], t[:, None])[:, 0]
        return at_end + inner.sum(axis=1)

    def _pmf(
        self, n: np.ndarray, t: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
    ) -> np.ndarray:
        shape = np.broadcast(n, t, x, t_x, T).shape
        n, t, x, t_x, T = (
            np.broadcast_to(v, shape).reshape(-1).astype(float) for v in (n, t, x, t_x, T)
        )
        alive = expit(-self._log_dropout_odds(x, t_x, T))
        return (
            np.where(n == 0, 1.0 - alive, 0.0) + alive * self._count_if_alive(n, t, x, T)
        ).reshape(shape)
