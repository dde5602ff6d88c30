r"""Pareto/NBD: the Pareto / negative binomial distribution model of repeat buying.

Schmittlein, Morrison and Colombo (1987), "Counting Your Customers: Who Are They and What
Will They Do Next?", Management Science 33 (1), 1-24; Fader, Hardie and Lee (2005), "A Note
on Implementing the Pareto/NBD Model in MATLAB"; Fader and Hardie (2005), "A Note on
Deriving the Pareto/NBD Model and Related Expressions" (note 009); Fader and Hardie (2006,
2014), "Deriving the Conditional PMF of the Pareto/NBD Model" (note 028).

Assumptions, for a customer observed from the first purchase (time 0) to time ``T``:

* while alive, repeat purchases follow a Poisson process with rate :math:`\lambda`;
* the customer's lifetime is exponential with rate :math:`\mu` (unobserved dropout);
* :math:`\lambda \sim \mathrm{Gamma}(r, \alpha)` and :math:`\mu \sim \mathrm{Gamma}(s, \beta)`
  (shape, rate) across customers, independently.

A customer's data are the number of repeat purchases :math:`x` (``frequency``), the time of
the last one :math:`t_x` (``recency``, 0 when :math:`x = 0`) and the age :math:`T`.

Numerics
--------
Everything is built on one integral,

.. math::
    I(u, v) = \int_u^v (\alpha + y)^{-(r + x)} (\beta + y)^{-(s + 1)}\, dy ,

which is FHL's :math:`A_0 / (r + s + x)` for :math:`(u, v) = (t_x, T)` and also gives
:func:`ParetoNBD.p_churn` (:math:`(u, v) = (T, T + t)`). With :math:`P = \max(\alpha, \beta)`,
:math:`Q = \min(\alpha, \beta)` and :math:`p, q` the exponents of :math:`P + y` and
:math:`Q + y` (:math:`p = r + x, q = s + 1` when :math:`\alpha \ge \beta`, swapped otherwise,
which is FHL's "w.l.o.g." choice between their two representations),
:math:`I(u, v) = J(u) - J(v)` with

.. math::
    J(t) = \int_t^\infty \frac{dy}{(P + y)^p (Q + y)^q}
    = \frac{{}_2F_1(q, c; c + 1; z_t)}{c\, (P + t)^{c}}
    = \frac{{}_2F_1(p, 1; p + q; z_t)}{c\, (P + t)^{p} (Q + t)^{q - 1}},\quad
    c = r + s + x,\ z_t = \frac{P - Q}{P + t} \in [0, 1),

the second form by Euler's transformation. :math:`H = {}_2F_1(p, 1; p + q; z)` has positive
terms with ratios below :math:`z` (so :math:`1 \le H \le 1 / (1 - z)`) for every
:math:`x`, and its series (:func:`_log_hyp2f1_unit`) is summed in floating point together
with its exact derivatives in :math:`p, q, z` while :math:`z \le 0.6`, i.e. for all but
extreme parameter ratios. Where :math:`z_u > 0.6` (:math:`P` far larger than :math:`Q + u`,
where every series, transformed or not, converges slowly or suffers from the logarithmic
case of the :math:`z \to 1 - z` connection formula), the part of the integral with
:math:`z_y > 0.6` is integrated numerically instead: its log-integrand in
:math:`w = \ln(Q + y)` is concave, so composite Gauss-Legendre quadrature on panels bounded
both in width and in the drop of the log-integrand is accurate to about 1e-14 relative
(:func:`_log_concave_nodes`); the rest uses the series at :math:`z = 0.6`.

Gradients are exact: analytic for all closed-form parts and the series (term-by-term
derivatives), and, on the quadrature part, the same quadrature applied to the analytic
derivative of the integrand (the parameter dependence of the split point cancels exactly).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import digamma, expit, exprel, gammaln

from clvlab.models.btyd.base import CompressedRows, FitProblem, as_float_arrays, history_arrays
from clvlab.models.btyd.purchase import PurchaseModel, check_counts

#: Largest argument of the hypergeometric series; beyond it the integral is done by
#: quadrature (see the module docstring).
_Z_SERIES = 0.6
#: Relative truncation error of the series (value and derivatives).
_SERIES_TOL = 1e-17
#: Drops of the log-integrand (from its maximum) that bound quadrature panels; the
#: integrand is cut off beyond the last one (a relative loss below e^-48).
_LEVELS = np.array(
    [0.5, 1.0, 2.0, 3.0, 4.5, 6.0, 8.0, 10.5, 13.5, 17.0, 21.0, 26.0, 32.0, 40.0, 48.0]
)
#: log(G(upper) / G(lower)) above which an integral is computed directly, not as a difference.
_CLOSE_GAP = math.log(0.999)
#: Largest panel width in the log variable.
_PANEL_WIDTH = 1.0
#: Gauss-Legendre rule used on every panel.
_GAUSS_NODES, _GAUSS_WEIGHTS = np.polynomial.legendre.leggauss(10)
#: Rows per block when predictions integrate numerically (bounds memory).
_BLOCK = 2048
#: The Gauss-Legendre rule of the dropout integral shared by every count
#: (:func:`_pmf_if_alive_by_count`); 32 nodes fall short for ten-year horizons.
_COUNT_NODES_AT, _COUNT_WEIGHTS = np.polynomial.legendre.leggauss(64)


# --------------------------------------------------------------------------------------
# The hypergeometric series
# --------------------------------------------------------------------------------------


def _series_terms(z: np.ndarray) -> np.ndarray:
    r"""Terms needed for :func:`_log_hyp2f1_unit` at ``z``.

    The terms are below :math:`z^k` and those of the derivative series below
    :math:`k z^{k-1}` times their first term, so the relative tail after :math:`K` terms is
    below :math:`K z^K / (1 - z)^2`.
    """
    z = np.clip(z, 1e-300, _Z_SERIES)
    log_z = np.log(z)
    need = np.log(_SERIES_TOL) + 2.0 * np.log1p(-z)
    k = np.ceil((need - np.log(100.0)) / log_z)
    k = np.ceil((need - np.log(np.maximum(k, 2.0))) / log_z)
    return np.clip(k, 0, None).astype(np.int64) + 2


def _log_hyp2f1_unit(
    p: np.ndarray, q: np.ndarray, z: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    r""":math:`\ln {}_2F_1(p, 1; p + q; z)` and its partial derivatives in :math:`p, q, z`.

    Sums the series :math:`H = \sum_k t_k`,
    :math:`t_k = \frac{(p)_k}{(p + q)_k} z^k` (all terms positive, ratios
    :math:`\frac{p + k}{p + q + k} z < z`) with the term-wise derivatives

    .. math::
        \partial_p t_k = t_k \sum_{j<k} \Big(\frac{1}{p + j} - \frac{1}{p + q + j}\Big),\quad
        \partial_q t_k = -t_k \sum_{j<k} \frac{1}{p + q + j},\quad
        \partial_z t_k = k\, t_k / z,

    to a relative accuracy of 1e-17 (:func:`_series_terms`). Rows are processed in order of
    decreasing :math:`z`, so that the rows still summing always form a prefix.

    Parameters
    ----------
    p, q
        Positive parameters (1-D arrays, or scalars broadcast against ``z``).
    z
        Arguments in :math:`[0, 0.6]`.

    Returns
    -------
    tuple of numpy.ndarray
        :math:`\ln H`, :math:`\partial_p \ln H`, :math:`\partial_q \ln H`,
        :math:`\partial_z \ln H`.
    """
    p, q, z = (np.array(a, dtype=float).reshape(-1) for a in np.broadcast_arrays(p, q, z))
    order = np.argsort(-z, kind="stable")
    p, q, z = p[order], q[order], z[order]
    terms = _series_terms(z)
    total = np.ones_like(z)
    d_p, d_q, d_z = np.zeros_like(z), np.zeros_like(z), np.zeros_like(z)
    term = np.ones_like(z)
    sum_p, sum_q = np.zeros_like(z), np.zeros_like(z)
    n_max = int(terms[0]) if z.size else 0
    # active[k] = number of rows that still need term k (a prefix: terms is nonincreasing).
    active = np.searchsorted(-terms, -np.arange(n_max + 1), side="right")
    for k in range(1, n_max + 1):
        n = int(active[k])
        if n == 0:
            break
        pk = p[:n] + (k - 1.0)
        ck = pk + q[:n]
        inv_p, inv_c = 1.0 / pk, 1.0 / ck
        shifted = term[:n] * (pk * inv_c)  # t_k / z
        term = shifted * z[:n]
        sum_p = sum_p[:n] + (inv_p - inv_c)
        sum_q = sum_q[:n] + inv_c
        total[:n] += term
        d_p[:n] += term * sum_p
        d_q[:n] -= term * sum_q
        d_z[:n] += k * shifted
    out = (np.log(total), d_p / total, d_q / total, d_z / total)
    inverse = np.empty_like(order)
    inverse[order] = np.arange(order.size)
    return tuple(a[inverse] for a in out)  # type: ignore[return-value]


def log_hyp2f1(a: object, b: object, z: object) -> np.ndarray:
    r""":math:`\ln {}_2F_1(a, b; a + 1; z)` for :math:`a > 0`, :math:`0 < b < a + 1`,
    :math:`0 \le z < 1`.

    This is the Gauss hypergeometric function of the Pareto/NBD likelihood (FHL's
    :math:`A_0` term, with :math:`a = r + s + x` and :math:`b = s + 1` or :math:`r + x`).
    It is evaluated as the integral

    .. math::
        {}_2F_1(a, b; a + 1; z) = a \int_0^\infty (1 + y)^{-(a + 1 - b)}
        (1 - z + y)^{-b}\, dy

    (:math:`J(0)` with :math:`P = 1, Q = 1 - z`) by the machinery of this module: the series
    of :func:`_log_hyp2f1_unit` for :math:`z \le 0.6`, quadrature plus series beyond. It
    exists to test those numerics against high-precision references.

    Parameters
    ----------
    a, b, z : float or array-like
        Broadcast against each other.

    Returns
    -------
    numpy.ndarray
        :math:`\ln {}_2F_1(a, b; a + 1; z)`.
    """
    a, b, z = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (a, b, z)))
    shape = a.shape
    a, b, z = (np.array(v).reshape(-1) for v in (a, b, z))
    if not ((a > 0).all() and (b > 0).all() and (b < a + 1).all()):
        raise ValueError("log_hyp2f1 needs a > 0 and 0 < b < a + 1")
    if not ((z >= 0).all() and (z < 1).all()):
        raise ValueError("log_hyp2f1 needs 0 <= z < 1")
    out = np.empty(a.size)
    # P = 1 and Q = 1 - z are scalars in the integral machinery: one call per distinct z.
    for value in np.unique(z):
        rows = np.flatnonzero(z == value)
        p, q = a[rows] + 1.0 - b[rows], b[rows]

        def exponents(index: np.ndarray, p: np.ndarray = p, q: np.ndarray = q) -> tuple:
            i = index.astype(np.int64)
            return p[i], q[i]

        key = np.arange(rows.size, dtype=float)
        tail = _log_integral_pq(
            exponents, key, 1.0, 1.0 - value, np.zeros(rows.size), np.full(rows.size, np.inf)
        )
        out[rows] = np.log(a[rows]) + tail.value
    return out.reshape(shape)


# --------------------------------------------------------------------------------------
# Quadrature of log-concave integrands
# --------------------------------------------------------------------------------------


LogDensity = Callable[[np.ndarray], np.ndarray]


def _bisect(
    increasing: Callable[[np.ndarray], np.ndarray],
    target: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    steps: int,
) -> np.ndarray:
    """Where the increasing function crosses ``target`` in [lo, hi] (the ends if it does not)."""
    lo, hi = np.broadcast_arrays(lo, hi)
    lo, hi = lo.astype(float), hi.astype(float)
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        above = increasing(mid) >= target
        hi = np.where(above, mid, hi)
        lo = np.where(above, lo, mid)
    return 0.5 * (lo + hi)


def _log_concave_nodes(
    phi: LogDensity, w_a: np.ndarray, w_b: np.ndarray, peak: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    r"""Gauss-Legendre nodes and log-weights for :math:`\int_{w_a}^{w_b} e^{\phi(w)} dw`.

    :math:`\phi` must be concave. The interval is cut into panels at the points where
    :math:`\phi` has dropped by each of :data:`_LEVELS` below its maximum (on both sides
    of the peak), and every :data:`_PANEL_WIDTH` in between; beyond the last level the
    integrand (below :math:`e^{-48}` of its peak, and decaying at least exponentially by
    concavity) is dropped. On each panel :math:`\phi` then changes by a bounded amount and is
    smooth on the panel's scale, so a 10-point rule is accurate to about 1e-14.

    Parameters
    ----------
    phi
        :math:`\phi`, evaluated on arrays of shape ``(n, k)`` (row ``i`` belongs to
        integral ``i``).
    w_a, w_b
        Integration bounds, shape ``(n, 1)``, finite, ``w_a <= w_b``.
    peak
        Location of the maximum of :math:`\phi` on ``[w_a, w_b]``, shape ``(n, 1)``.

    Returns
    -------
    tuple of numpy.ndarray
        Nodes and log-weights, both of shape ``(n, m)`` (zero weights, i.e. log-weight
        ``-inf``, pad the rows to a common ``m``).
    """
    top = phi(peak)
    targets = top - _LEVELS[None, :]

    def rising(w: np.ndarray) -> np.ndarray:
        return phi(w)

    def falling(w: np.ndarray) -> np.ndarray:
        return -phi(w)

    # Level points on each side of the peak (a side that is empty for every row is skipped).
    sides = []
    for lo, hi, fn, sign, end in ((w_a, peak, rising, 1.0, w_a), (peak, w_b, falling, -1.0, w_b)):
        if np.all(hi <= lo):
            sides.append(np.broadcast_to(end, (end.shape[0], 1)))
            continue
        # Panel bounds need not be exact: 16 halvings place a level to 1/65,536 of its side.
        level = _bisect(fn, sign * targets, lo, hi, 16)
        sides.append(np.where(phi(end) >= targets, end, level))
    left, right = sides
    w_lo, w_hi = left[:, -1:], right[:, -1:]
    span = float(np.max(w_hi - w_lo)) if w_lo.size else 0.0
    n_grid = min(math.ceil(span / _PANEL_WIDTH), 4000)
    grid = np.minimum(w_lo + _PANEL_WIDTH * np.arange(1, n_grid + 1)[None, :], w_hi)
    bounds = np.sort(np.concatenate([w_lo, peak, w_hi, left, right, grid], axis=1), axis=1)
    bounds = np.clip(bounds, w_lo, w_hi)
    lower, upper = bounds[:, :-1], bounds[:, 1:]
    # Levels beyond an end, and the grid of rows narrower than the widest, repeat a bound:
    # move the empty panels to the end of each row and drop the columns that only hold those.
    empty = upper <= lower
    order = np.argsort(empty, axis=1, kind="stable")
    width = int(np.max(np.sum(~empty, axis=1), initial=1))
    lower = np.take_along_axis(lower, order[:, :width], axis=1)
    upper = np.take_along_axis(upper, order[:, :width], axis=1)
    half = 0.5 * (upper - lower)
    centre = 0.5 * (upper + lower)
    nodes = centre[:, :, None] + half[:, :, None] * _GAUSS_NODES
    with np.errstate(divide="ignore"):
        log_w = np.log(half[:, :, None] * _GAUSS_WEIGHTS)
    n = bounds.shape[0]
    return nodes.reshape(n, -1), log_w.reshape(n, -1)


# --------------------------------------------------------------------------------------
# The integral I(u, v)
# --------------------------------------------------------------------------------------


@dataclass
class _LogValue:
    """A log-value with its partial derivatives (arrays of one shape)."""

    value: np.ndarray
    d_p: np.ndarray
    d_q: np.ndarray
    d_P: np.ndarray
    d_Q: np.ndarray

    def take(self, index: np.ndarray) -> _LogValue:
        return _LogValue(*(a[index] for a in self.parts()))

    def parts(self) -> tuple[np.ndarray, ...]:
        return (self.value, self.d_p, self.d_q, self.d_P, self.d_Q)


def _log_tail_integral(
    p: np.ndarray, q: np.ndarray, P: object, Q: object, t: np.ndarray
) -> _LogValue:
    r""":math:`\ln J(t)` and its partials in :math:`p, q, P, Q` by the series (:math:`z_t \le 0.6`).

    .. math::
        \ln J(t) = -p \ln(P + t) - (q - 1) \ln(Q + t) - \ln(p + q - 1) + \ln H(z_t),\quad
        H = {}_2F_1(p, 1; p + q; z),\ z_t = \frac{P - Q}{P + t}

    with :math:`\partial z_t / \partial P = (Q + t) / (P + t)^2` and
    :math:`\partial z_t / \partial Q = -1 / (P + t)`.
    """
    p, q, P, Q, t = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (p, q, P, Q, t)))
    p, q, P, Q, t = (np.array(a).reshape(-1) for a in (p, q, P, Q, t))
    c = p + q - 1.0
    big, small = P + t, Q + t
    z = (P - Q) / big
    log_h, h_p, h_q, h_z = _log_hyp2f1_unit(p, q, z)
    with np.errstate(invalid="ignore"):
        out = _LogValue(
            value=-p * np.log(big) - (q - 1.0) * np.log(small) - np.log(c) + log_h,
            d_p=-np.log(big) - 1.0 / c + h_p,
            d_q=-np.log(small) - 1.0 / c + h_q,
            d_P=-p / big + h_z * small / big**2,
            d_Q=-(q - 1.0) / small - h_z / big,
        )
    infinite = np.isinf(t)  # J(inf) = 0
    if infinite.any():
        for part in out.parts():
            part[infinite] = 0.0
        out.value[infinite] = -np.inf
    return out


def _log_quadrature_integral(
    p: np.ndarray, q: np.ndarray, P: float, Q: float, lo: np.ndarray, hi: np.ndarray
) -> _LogValue:
    r""":math:`\ln \int_{lo}^{hi} (P + y)^{-p} (Q + y)^{-q} dy` and its partials, by quadrature.

    In :math:`u = \ln\frac{Q + y}{Q + lo}` the integrand (with the Jacobian) is
    :math:`e^{\phi_0 + \phi(u)}` with :math:`\phi_0 = -p \ln(P + lo) + (1 - q) \ln(Q + lo)`
    and

    .. math::
        \phi(u) = -p \ln(1 + \rho (e^u - 1)) + (1 - q) u,\qquad
        \rho = \frac{Q + lo}{P + lo},

    concave, with its maximum at :math:`u = 0` when :math:`q \ge 1`, else where
    :math:`\rho e^u / (1 - \rho + \rho e^u) = (1 - q) / p`. Written relative to the lower
    end, :math:`\phi` keeps full relative accuracy for large :math:`p` (the absolute form
    loses :math:`p` times the rounding of :math:`\ln(P + y)`). The derivatives are the
    quadratures of the integrand's derivatives at fixed :math:`y`:
    :math:`\partial_p \ln f = -\ln(P + y)`, :math:`\partial_q \ln f = -\ln(Q + y)`,
    :math:`\partial_P \ln f = -p / (P + y)`, :math:`\partial_Q \ln f = -q / (Q + y)`.
    Needs :math:`P > Q`.
    """
    p, q, lo, hi = (
        np.array(a, dtype=float).reshape(-1, 1) for a in np.broadcast_arrays(p, q, lo, hi)
    )
    log_big0, log_small0 = np.log(P + lo), np.log(Q + lo)
    rho = (Q + lo) / (P + lo)
    u_b = np.log1p((hi - lo) / (Q + lo))  # hi - lo is exact for close bounds

    def rel_big(u: np.ndarray) -> np.ndarray:  # ln((P + y) / (P + lo))
        return np.log1p(rho * np.expm1(u))

    def phi(u: np.ndarray) -> np.ndarray:
        return -p * rel_big(u) + (1.0 - q) * u

    share = (1.0 - q) / p
    with np.errstate(divide="ignore", invalid="ignore"):
        # rho e^u / (1 - rho + rho e^u) = share  <=>  e^u = share (1 - rho) / (rho (1 - share))
        inner = np.log(share) - np.log1p(-share) + np.log1p(-rho) - np.log(rho)
    peak = np.where(share <= 0, 0.0, np.where(share >= 1, u_b, inner))
    peak = np.clip(np.nan_to_num(peak, nan=0.0), 0.0, u_b)
    nodes, log_w = _log_concave_nodes(phi, np.zeros_like(u_b), u_b, peak)
    rel = rel_big(nodes)
    total, terms, sums = _log_row_sums(-p * rel + (1.0 - q) * nodes + log_w)
    with np.errstate(invalid="ignore"):
        weight = terms / sums[:, None]  # each node's share of the integral
    inv_big = np.exp(-rel) / (P + lo)
    inv_small = np.exp(-nodes) / (Q + lo)
    phi0 = (-p * log_big0 + (1.0 - q) * log_small0)[:, 0]
    return _LogValue(
        value=phi0 + total,
        d_p=-log_big0[:, 0] - (weight * rel).sum(axis=1),
        d_q=-log_small0[:, 0] - (weight * nodes).sum(axis=1),
        d_P=-p[:, 0] * (weight * inv_big).sum(axis=1),
        d_Q=-q[:, 0] * (weight * inv_small).sum(axis=1),
    )


def _log_row_sums(log_f: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The log of each row's sum of ``exp(log_f)`` (a row may hold ``-inf``, not ``+inf`` or
    NaN), with the scaled terms and their row sums it comes from (``terms / sums`` are the
    terms' shares of their rows): one ``exp`` of the terms for both."""
    top = np.max(log_f, axis=1, keepdims=True)
    top[~np.isfinite(top)] = 0.0  # a row of -inf: every term 0, the log -inf
    terms = np.exp(log_f - top)
    sums = terms.sum(axis=1)
    with np.errstate(divide="ignore"):
        return top[:, 0] + np.log(sums), terms, sums


@dataclass
class _Pairs:
    """Distinct (frequency, time) points at which the tail integral J is needed.

    ``lower[i]`` and ``upper[i]`` index the points of row ``i``'s bounds.
    """

    x: np.ndarray
    t: np.ndarray
    lower: np.ndarray
    upper: np.ndarray

    @classmethod
    def build(cls, x: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> _Pairs:
        n = x.size
        keys, times = np.concatenate([x, x]), np.concatenate([lower, upper])
        order = np.lexsort((times, keys))
        keys, times = keys[order], times[order]
        first = np.ones(keys.size, dtype=bool)
        first[1:] = (keys[1:] != keys[:-1]) | (times[1:] != times[:-1])
        inverse = np.empty(keys.size, dtype=np.int64)
        inverse[order] = np.cumsum(first) - 1
        return cls(keys[first], times[first], inverse[:n], inverse[n:])


Exponents = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def _log_tail(
    exponents: Exponents, key: np.ndarray, big: float, small: float, t: np.ndarray
) -> _LogValue:
    r""":math:`\ln G(t)`, :math:`G(t) = \int_t^\infty (P + y)^{-p} (Q + y)^{-q} dy`, and partials.

    Where :math:`z_t \le 0.6` this is the series :math:`J(t)` (:func:`_log_tail_integral`);
    below the split point :math:`y^*` (:math:`z_{y^*} = 0.6`) it is
    :math:`K(t) + J(y^*)` with :math:`K(t) = \int_t^{y^*}` by quadrature
    (:func:`_log_quadrature_integral`). The dependence of :math:`y^*` on :math:`P, Q`
    cancels between the two parts, so their partials at fixed :math:`y^*` add up to the
    exact partials.

    Parameters
    ----------
    exponents
        Maps ``key`` values to the exponents ``(p, q)`` (positive).
    key, t
        1-D arrays of equal length: each point's key (the frequency) and time (``>= 0``,
        may be ``inf``).
    big, small
        :math:`P \ge Q > 0`.
    """
    diff = big - small
    split = diff / _Z_SERIES - big
    hard = t < split
    if not hard.any():
        p, q = exponents(key)
        return _log_tail_integral(p, q, big, small, t)
    out = _LogValue(*(np.empty(t.size) for _ in range(5)))
    easy = np.flatnonzero(~hard)
    if easy.size:
        p, q = exponents(key[easy])
        for whole, part in zip(
            out.parts(), _log_tail_integral(p, q, big, small, t[easy]).parts(), strict=True
        ):
            whole[easy] = part
    rows = np.flatnonzero(hard)
    keys, which = np.unique(key[rows], return_inverse=True)
    p_k, q_k = exponents(keys)
    at_split = _log_tail_integral(p_k, q_k, big, small, np.full(keys.size, split)).take(
        which.reshape(-1)
    )
    p, q = p_k[which.reshape(-1)], q_k[which.reshape(-1)]
    quad = _log_quadrature_integral(p, q, big, small, t[rows], np.full(rows.size, split))
    value = np.logaddexp(quad.value, at_split.value)
    w_quad, w_split = np.exp(quad.value - value), np.exp(at_split.value - value)
    out.value[rows] = value
    for k in range(1, 5):
        out.parts()[k][rows] = w_quad * quad.parts()[k] + w_split * at_split.parts()[k]
    return out


def _log_integral_pq(
    exponents: Exponents,
    key: np.ndarray,
    big: float,
    small: float,
    lower: np.ndarray,
    upper: np.ndarray,
    pairs: _Pairs | None = None,
) -> _LogValue:
    r""":math:`\ln \int_{lower}^{upper} (P + y)^{-p} (Q + y)^{-q} dy` and its partials.

    The integral is :math:`G(lower) - G(upper)` with :math:`G` from :func:`_log_tail`,
    evaluated once per distinct ``(key, time)`` point, except where
    :math:`G(upper) / G(lower) > 0.999` (``upper`` close to ``lower``): there the difference
    would lose more than three digits and the interval is integrated directly by
    :func:`_log_quadrature_integral`.

    Parameters
    ----------
    exponents
        Maps ``key`` values to the exponents ``(p, q)`` (positive).
    key
        1-D array identifying each row's exponents (the frequency).
    big, small
        :math:`P \ge Q > 0`.
    lower, upper
        1-D arrays, ``0 <= lower <= upper`` (``upper`` may be ``inf``).
    pairs
        Precomputed :class:`_Pairs` of ``(key, lower)`` and ``(key, upper)``.

    Returns
    -------
    _LogValue
        ``-inf`` with zero derivatives where ``lower == upper``.
    """
    if pairs is None:
        pairs = _Pairs.build(key, lower, upper)
    tails = np.stack(_log_tail(exponents, pairs.x, big, small, pairs.t).parts())
    low, up = tails[:, pairs.lower], tails[:, pairs.upper]
    # I = G(lower) (1 - e^gap), gap = ln G(upper) - ln G(lower) <= 0; the gradient weights
    # are G(lower) / I = -1 / expm1(gap) and G(upper) / I = e^gap G(lower) / I.
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = np.minimum(up[0] - low[0], 0.0)
        shrink = np.expm1(gap)
        empty = ~(lower < upper) | (shrink == 0.0)
        shrink = np.where(empty, -1.0, shrink)
        value = np.where(empty, -np.inf, low[0] + np.log(-shrink))
        w_lower = np.where(empty, 0.0, -1.0 / shrink)
    grads = w_lower * low[1:] - (w_lower * (1.0 + shrink)) * up[1:]
    out = _LogValue(value, *grads)
    # Where G(upper) / G(lower) > 0.999 the difference would lose over 3 digits (or all of
    # them, when rounding makes the two equal): integrate the short interval directly.
    close = np.flatnonzero((lower < upper) & (gap > _CLOSE_GAP))
    if close.size:
        p, q = exponents(key[close])
        direct = _log_quadrature_integral(p, q, big, small, lower[close], upper[close])
        for whole, part in zip(out.parts(), direct.parts(), strict=True):
            whole[close] = part
    return out


def _log_integral(
    params: tuple[float, float, float, float],
    x: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    pairs: _Pairs | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    r""":math:`\ln I(u, v)` and its gradient w.r.t. :math:`(r, \alpha, s, \beta)`.

    .. math::
        I(u, v) = \int_u^v (\alpha + y)^{-(r + x)} (\beta + y)^{-(s + 1)} dy

    computed by :func:`_log_integral_pq` with :math:`P = \max(\alpha, \beta)`.

    Parameters
    ----------
    params
        ``(r, alpha, s, beta)``.
    x, lower, upper
        1-D arrays of equal length, ``0 <= lower <= upper``.
    pairs
        Precomputed :class:`_Pairs` of ``(x, lower)`` and ``(x, upper)`` (saves repeated work
        when fitting).

    Returns
    -------
    tuple of numpy.ndarray
        :math:`\ln I` (``-inf`` where ``lower == upper``) and its gradient, shape ``(4, n)``
        (zeros where ``lower == upper``).
    """
    r, alpha, s, beta = params
    swap = alpha < beta

    def exponents(xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = r + xs
        b = np.full_like(a, s + 1.0)
        return (b, a) if swap else (a, b)

    big, small = (beta, alpha) if swap else (alpha, beta)
    out = _log_integral_pq(exponents, x, big, small, lower, upper, pairs)
    if swap:  # p = s + 1, q = r + x, P = beta, Q = alpha
        grad = np.array([out.d_q, out.d_Q, out.d_p, out.d_P])
    else:  # p = r + x, q = s + 1, P = alpha, Q = beta
        grad = np.array([out.d_p, out.d_P, out.d_q, out.d_Q])
    return out.value, grad


def _log_dropout_odds(
    params: tuple[float, float, float, float],
    x: np.ndarray,
    t_x: np.ndarray,
    T: np.ndarray,
    pairs: _Pairs | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Log odds :math:`\ln R` of "dropped out after :math:`t_x`" vs "alive at :math:`T`".

    .. math::
        R = s\, (\alpha + T)^{r + x} (\beta + T)^s\, I(t_x, T),\qquad
        P(\text{alive} \mid x, t_x, T) = \frac{1}{1 + R}

    (FHL 2005, eq. 11 / note 009 eq. 36 with :math:`A_0 = (r + s + x) I`). Returns
    :math:`\ln R` (``-inf`` when :math:`t_x = T`) and its gradient w.r.t.
    :math:`(r, \alpha, s, \beta)`, shape ``(4, n)``.
    """
    r, alpha, s, beta = params
    log_i, grad_i = _log_integral(params, x, t_x, T, pairs)
    log_a, log_b = np.log(alpha + T), np.log(beta + T)
    odds = math.log(s) + (r + x) * log_a + s * log_b + log_i
    finite = np.isfinite(odds)
    grad = np.array(
        [
            log_a + grad_i[0],
            (r + x) / (alpha + T) + grad_i[1],
            1.0 / s + log_b + grad_i[2],
            s / (beta + T) + grad_i[3],
        ]
    )
    return odds, np.where(finite, grad, 0.0)


@dataclass
class _Histories:
    """Compressed customer histories with the tail-integral points precomputed.

    ``x_values[x_index] == x`` and ``T_values[T_index] == T``: functions of the frequency or
    the age alone are evaluated once per distinct value.
    """

    x: np.ndarray
    t_x: np.ndarray
    T: np.ndarray
    sample_weight: np.ndarray
    pairs: _Pairs
    x_values: np.ndarray
    x_index: np.ndarray
    T_values: np.ndarray
    T_index: np.ndarray

    @classmethod
    def build(
        cls, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, sample_weight: np.ndarray | None
    ) -> _Histories:
        x, t_x, T = (np.asarray(a, dtype=float).reshape(-1) for a in (x, t_x, T))
        w = (
            np.ones_like(x)
            if sample_weight is None
            else np.asarray(sample_weight, dtype=float).reshape(-1)
        )
        x_values, x_index = np.unique(x, return_inverse=True)
        T_values, T_index = np.unique(T, return_inverse=True)
        return cls(x, t_x, T, w, _Pairs.build(x, t_x, T), x_values, x_index, T_values, T_index)

    def terms(self, params: tuple[float, float, float, float]) -> tuple[np.ndarray, np.ndarray]:
        r"""Per-row log-likelihood and its gradient w.r.t. ``(r, alpha, s, beta)``, ``(4, n)``.

        See :func:`negative_log_likelihood` for the formulas.
        """
        r, alpha, s, beta = params
        x, T = self.x, self.T
        log_i, grad_i = _log_integral(params, x, self.t_x, T, self.pairs)
        ages, at_age = self.T_values, self.T_index
        log_a, log_b = np.log(alpha + ages)[at_age], np.log(beta + ages)[at_age]
        log_1p_a, log_1p_b = np.log1p(ages / alpha)[at_age], np.log1p(ages / beta)[at_age]
        counts, at_count = self.x_values, self.x_index
        lgamma = (gammaln(r + counts) - gammaln(r))[at_count]
        dgamma = (digamma(r + counts) - digamma(r))[at_count]
        odds = math.log(s) + (r + x) * log_a + s * log_b + log_i
        with np.errstate(invalid="ignore"):
            dead = np.where(np.isfinite(odds), expit(odds), 0.0)
        inv_a, inv_b = 1.0 / (alpha + T), 1.0 / (beta + T)
        ll = lgamma - r * log_1p_a - x * log_a - s * log_1p_b + np.logaddexp(0.0, odds)
        grad = np.empty((4, x.size))
        grad[0] = dgamma - log_1p_a + dead * (log_a + grad_i[0])
        grad[1] = (r * T / alpha - x) * inv_a + dead * ((r + x) * inv_a + grad_i[1])
        grad[2] = -log_1p_b + dead * (1.0 / s + log_b + grad_i[2])
        grad[3] = s * T / beta * inv_b + dead * (s * inv_b + grad_i[3])
        return ll, grad

    def nll(self, log_params: np.ndarray) -> tuple[float, np.ndarray]:
        r, alpha, s, beta = (float(v) for v in np.exp(np.asarray(log_params, dtype=float)))
        ll, grad = self.terms((r, alpha, s, beta))
        total_grad = grad @ self.sample_weight * np.array([r, alpha, s, beta])
        return -float(self.sample_weight @ ll), -total_grad


def negative_log_likelihood(
    log_params: np.ndarray,
    frequency: np.ndarray,
    recency: np.ndarray,
    T: np.ndarray,
    sample_weight: np.ndarray | None = None,
) -> tuple[float, np.ndarray]:
    r"""Total negative Pareto/NBD log-likelihood and its gradient w.r.t. the log-parameters.

    FHL (2005) / note 009 eq. (18):

    .. math::
        L(r, \alpha, s, \beta \mid x, t_x, T) = \frac{\Gamma(r + x)\, \alpha^r \beta^s}
        {\Gamma(r)} \Big[\frac{1}{(\alpha + T)^{r + x} (\beta + T)^s}
        + \frac{s}{r + s + x} A_0\Big],\qquad \frac{A_0}{r + s + x} = I(t_x, T),

    evaluated in log space as

    .. math::
        \ln L = \ln\frac{\Gamma(r + x)}{\Gamma(r)} - r \ln\Big(1 + \frac{T}{\alpha}\Big)
        - x \ln(\alpha + T) - s \ln\Big(1 + \frac{T}{\beta}\Big) + \ln(1 + R)

    with :math:`R` from :func:`_log_dropout_odds` (see the module docstring for :math:`I`).
    With :math:`\pi = R / (1 + R)` (the posterior probability of having dropped out) the
    partial derivatives are

    .. math::
        \partial_r \ln L &= \psi(r + x) - \psi(r) - \ln(1 + T / \alpha)
            + \pi\,[\ln(\alpha + T) + \partial_r \ln I] \\
        \partial_\alpha \ln L &= \frac{r T / \alpha - x}{\alpha + T}
            + \pi\,\Big[\frac{r + x}{\alpha + T} + \partial_\alpha \ln I\Big] \\
        \partial_s \ln L &= -\ln(1 + T / \beta)
            + \pi\,[1 / s + \ln(\beta + T) + \partial_s \ln I] \\
        \partial_\beta \ln L &= \frac{s T}{\beta (\beta + T)}
            + \pi\,\Big[\frac{s}{\beta + T} + \partial_\beta \ln I\Big]

    where :math:`\partial \ln I` are exact (see the module docstring), and
    :math:`\partial_{\ln\theta} = \theta\, \partial_\theta`.

    Parameters
    ----------
    log_params
        ``log([r, alpha, s, beta])``.
    frequency, recency, T
        Customer data :math:`x, t_x, T` (1-D arrays of equal length).
    sample_weight
        Weight (e.g. count) of each row; ones when None.

    Returns
    -------
    tuple of (float, numpy.ndarray)
        :math:`-\sum_i w_i \ln L_i` and its gradient w.r.t. ``log_params``.
    """
    return _Histories.build(frequency, recency, T, sample_weight).nll(log_params)


# --------------------------------------------------------------------------------------
# Conditional PMF
# --------------------------------------------------------------------------------------


def _log_pmf_integral(
    n: np.ndarray, m: np.ndarray, a0: np.ndarray, s: float, b0: np.ndarray, t: np.ndarray
) -> np.ndarray:
    r""":math:`\ln \int_0^t \tau^n (a_0 + \tau)^{-(m + n)} (b_0 + \tau)^{-(s + 1)} d\tau`.

    In :math:`w = \ln \tau` the log-integrand
    :math:`\phi(w) = (n + 1) w - (m + n) \ln(a_0 + e^w) - (s + 1) \ln(b_0 + e^w)` is concave;
    its maximum :math:`w_p` is found by bisection on :math:`\phi'` and the integral by
    :func:`_log_concave_nodes` in the offset :math:`u = w - w_p`, with
    :math:`\phi(w_p + u) - \phi(w_p)` written with ``log1p``/``expm1`` so that large
    :math:`m + n` cost no accuracy. Below
    :math:`w_k = \ln\frac{(n + 1) / 2}{(m + n) / a_0 + (s + 1) / b_0}` the slope exceeds
    :math:`(n + 1) / 2`, so the integral starts :math:`110 / (n + 1)` below
    :math:`\min(w_k, \ln t)` (a neglected part below :math:`e^{-55}`). All inputs 1-D of one
    length, ``t > 0``.
    """
    n, m, a0, b0, t = (np.asarray(v, dtype=float).reshape(-1, 1) for v in (n, m, a0, b0, t))
    log_a0, log_b0 = np.log(a0), np.log(b0)

    def dphi(w: np.ndarray) -> np.ndarray:
        return (n + 1.0) - (m + n) * expit(w - log_a0) - (s + 1.0) * expit(w - log_b0)

    w_b = np.log(t)
    knee = np.log((n + 1.0) / 2.0) - np.log((m + n) / a0 + (s + 1.0) / b0)
    w_a = np.minimum(w_b, knee) - 110.0 / (n + 1.0)
    w_p = _bisect(lambda w: -dphi(w), np.zeros_like(w_a), w_a, w_b, 40)
    tau_p = np.exp(w_p)
    rho_a, rho_b = tau_p / (a0 + tau_p), tau_p / (b0 + tau_p)

    def phi(u: np.ndarray) -> np.ndarray:  # phi(w_p + u) - phi(w_p)
        grow = np.expm1(u)
        return (n + 1.0) * u - (m + n) * np.log1p(rho_a * grow) - (s + 1.0) * np.log1p(rho_b * grow)

    phi_p = (n + 1.0) * w_p - (m + n) * np.log(a0 + tau_p) - (s + 1.0) * np.log(b0 + tau_p)
    nodes, log_w = _log_concave_nodes(phi, w_a - w_p, w_b - w_p, np.zeros_like(w_p))
    return phi_p[:, 0] + _log_row_sums(phi(nodes) + log_w)[0]


# --------------------------------------------------------------------------------------
# Estimator
# --------------------------------------------------------------------------------------


class ParetoNBD(PurchaseModel):
    r"""Pareto/NBD model of repeat purchasing and dropout (Schmittlein, Morrison & Colombo 1987).

    Parameters
    ----------
    penalizer_coef : float, default 0.0
        lifetimes' L2 penalty for this model: ``penalizer_coef * sum(params ** 2)`` is added
        to the *total* negative log-likelihood (lifetimes' ParetoNBDFitter divides the
        weighted sum by the mean weight, i.e. sums over customers; its BG/NBD fitter uses the
        mean instead), with alpha and beta measured in units of the longest customer age
        ``max(T)`` as lifetimes does. With sample weights, the total is the weighted sum, so
        a weighted fit equals the fit of the expanded rows.

    Attributes
    ----------
    params_ : pandas.Series
        ``r, alpha`` (gamma prior of the purchase rate) and ``s, beta`` (gamma prior of the
        dropout rate); alpha and beta in the time unit of the data.
    log_likelihood_, stderr_, converged_, n_iter_
        The outcome of the fit, as in :class:`~clvlab.models.btyd.base.BTYDEstimator`.

    Notes
    -----
    With :math:`I` the integral of the module docstring, the probability of being alive is
    (FHL 2005 eq. 11, :math:`A_0 = (r + s + x)\, I(t_x, T)`)

    .. math::
        P(\text{alive} \mid x, t_x, T) = \Big[1 + s\, (\alpha + T)^{r + x} (\beta + T)^s\,
        I(t_x, T)\Big]^{-1},

    and given alive at :math:`T`, :math:`\lambda \sim \mathrm{Gamma}(r + x, \alpha + T)` and
    :math:`\mu \sim \mathrm{Gamma}(s, \beta + T)`. The expected purchases (FHL eq. 12, note 009
    eq. 41; :math:`E[X \mid \lambda, \mu] = \frac{\lambda}{\mu}(1 - e^{-\mu t})`) are

    .. math::
        E[X(T, T+t) \mid x, t_x, T] = P(\text{alive})\, \frac{(r + x)(\beta + T)}
        {(\alpha + T)(s - 1)} \Big[1 - \Big(\frac{\beta + T}{\beta + T + t}\Big)^{s - 1}\Big],

    evaluated as :math:`\frac{r + x}{\alpha + T} (\beta + T)\, \ell\,
    \frac{1 - e^{-(s-1)\ell}}{(s - 1)\ell}`, :math:`\ell = \ln(1 + t / (\beta + T))`, which is
    continuous at :math:`s = 1`. A customer alive at :math:`T` buys nothing in the window if
    his remaining lifetime :math:`\tau \sim \mathrm{Exp}(\mu)` passes without a purchase,
    :math:`E_\tau[e^{-\lambda \min(\tau, t)}] = e^{-(\lambda + \mu) t} + \int_0^t \mu
    e^{-(\lambda + \mu)\tau} d\tau`, so

    .. math::
        P(X(T, T+t) = 0 \mid \text{alive}) = \Big(\frac{\alpha + T}{\alpha + T + t}\Big)^{r + x}
        \Big(\frac{\beta + T}{\beta + T + t}\Big)^{s}
        + s\, (\alpha + T)^{r + x} (\beta + T)^s\, I(T, T + t)

    (the second term, dropout inside the window before any purchase, is missing from the
    naive formula). For :math:`n` purchases (Fader & Hardie note 028), either the customer
    survives the window (Poisson(:math:`\lambda t`) purchases) or dies at :math:`\tau < t`
    after Poisson(:math:`\lambda \tau`) purchases; with :math:`m = r + x`,
    :math:`a_0 = \alpha + T`, :math:`b_0 = \beta + T`:

    .. math::
        P(X = n \mid \text{alive}) = \frac{\Gamma(m + n)}{\Gamma(m)\, n!}\Big[
        \frac{t^n a_0^m}{(a_0 + t)^{m + n}} \Big(\frac{b_0}{b_0 + t}\Big)^s
        + s\, a_0^m b_0^s \int_0^t \frac{\tau^n\, d\tau}
        {(a_0 + \tau)^{m + n} (b_0 + \tau)^{s + 1}}\Big],

    whose integral (positive integrand, log-concave in :math:`\ln \tau`) is evaluated by
    quadrature in log space, which, unlike the note's alternating finite sum of
    hypergeometric terms, is stable for any ``n``. A new customer (:math:`x = t_x = T = 0`) is
    alive: his expected purchases are note 009 eq. (27),
    :math:`\frac{r \beta}{\alpha (s - 1)}[1 - (\frac{\beta}{\beta + t})^{s - 1}]`, and his
    probability of no purchase the likelihood of :math:`x = 0` on :math:`(0, t]`.

    Examples
    --------
    >>> model = ParetoNBD().fit(rfm)  # doctest: +SKIP
    >>> model.p_alive(2, 30.43, 38.86)  # doctest: +SKIP
    """

    PARAM_NAMES = ("r", "alpha", "s", "beta")
    _UNIDENTIFIED = "the purchase and dropout rates"

    def _problem_for(self, rows: CompressedRows, time_scale: float) -> FitProblem:
        """The fit on the compressed histories, penalized as lifetimes does (see
        ``penalizer_coef``)."""
        x, t_x, T = (rows.column(j) for j in range(3))
        counts = rows.counts
        histories = _Histories.build(x, t_x, T, counts)
        total_weight = float(counts.sum())
        log_scale = math.log(time_scale)
        return FitProblem(
            nll=histories.nll,
            total_weight=total_weight,
            log_offset=np.array([0.0, log_scale, 0.0, log_scale]),
            # lifetimes adds the penalty to the total (not the mean) NLL: c / W per customer.
            penalty_scale=np.array([1.0, 1.0 / time_scale, 1.0, 1.0 / time_scale])
            / math.sqrt(total_weight),
            starts=_start_points(x, T / time_scale, counts),
        )

    # -- model pieces on validated arrays -------------------------------------------------

    def _param_tuple(self) -> tuple[float, float, float, float]:
        """The fitted ``(r, alpha, s, beta)``."""
        r, alpha, s, beta = self._fitted_params()
        return r, alpha, s, beta

    def _log_dropout_odds(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """:func:`_log_dropout_odds` at the fitted parameters, in the shape of ``x``."""
        params = self._param_tuple()
        shape = x.shape
        odds, _ = _log_dropout_odds(params, x.reshape(-1), t_x.reshape(-1), T.reshape(-1))
        return odds.reshape(shape)

    def _expected_if_alive(self, t: np.ndarray, x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """:func:`_expected_purchases_if_alive` at the fitted parameters."""
        r, alpha, s, beta = self._fitted_params()
        return _expected_purchases_if_alive(r, alpha, s, beta, t, x, T)

    def _survival_if_alive(
        self, t: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
    ) -> np.ndarray:
        """Given alive at T the dropout rate is Gamma(s, beta + T): survival
        ``((beta + T) / (beta + T + t)) ** s``."""
        _, _, s, beta = self._fitted_params()
        return np.exp(-s * np.log1p(t / (beta + T)))

    def _no_purchase(
        self, t: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
    ) -> np.ndarray:
        params = self._param_tuple()
        alive = expit(-self._log_dropout_odds(x, t_x, T))
        return 1.0 - alive * -np.expm1(_log_no_purchase_if_alive(params, t, x, T))

    def _no_purchase_new_customer(self, t: np.ndarray) -> np.ndarray:
        # Alive for sure: the probability itself, not one minus its complement.
        zero = np.zeros_like(t)
        return np.exp(_log_no_purchase_if_alive(self._param_tuple(), t, zero, zero))

    def p_purchases_by_count(
        self, counts: object, t: object, frequency: object, recency: object, T: object
    ) -> np.ndarray:
        """:meth:`PurchaseModel.p_purchases_by_count` with one dropout quadrature for every
        count (see :func:`_pmf_if_alive_by_count`): a predictive distribution of many counts
        costs about what one count does with :meth:`p_purchases`."""
        (count,) = as_float_arrays(counts=counts)
        count = count.reshape(-1)
        check_counts(count)
        horizon, x, t_x, age = (a.reshape(-1) for a in history_arrays(frequency, recency, T, t=t))
        alive = expit(-self._log_dropout_odds(x, t_x, age))
        if_alive = _pmf_if_alive_by_count(self._param_tuple(), count, horizon, x, age)
        out = alive * if_alive + np.where(count[:, np.newaxis] == 0, 1.0 - alive, 0.0)
        return np.clip(out, 0.0, 1.0)

    def _pmf(
        self, n: np.ndarray, t: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
    ) -> np.ndarray:
        r, alpha, s, beta = self._fitted_params()
        shape = n.shape
        count, horizon, x, t_x, age = (a.reshape(-1) for a in (n, t, x, t_x, T))
        alive = expit(-self._log_dropout_odds(x, t_x, age))
        m, a0, b0 = r + x, alpha + age, beta + age
        log_front = gammaln(m + count) - gammaln(m) - gammaln(count + 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_survive = (
                count * np.log(horizon)
                + m * np.log(a0)
                - (m + count) * np.log(a0 + horizon)
                - s * np.log1p(horizon / b0)
            )
        log_survive = np.where((count == 0) & (horizon == 0), 0.0, log_survive)
        log_die = np.full(count.size, -np.inf)
        rows = np.flatnonzero(horizon > 0)
        for start in range(0, rows.size, _BLOCK):
            idx = rows[start : start + _BLOCK]
            log_die[idx] = (
                math.log(s)
                + m[idx] * np.log(a0[idx])
                + s * np.log(b0[idx])
                + _log_pmf_integral(count[idx], m[idx], a0[idx], s, b0[idx], horizon[idx])
            )
        if_alive = np.exp(log_front + np.logaddexp(log_survive, log_die))
        out = alive * if_alive + np.where(count == 0, 1.0 - alive, 0.0)
        return np.clip(out, 0.0, 1.0).reshape(shape)


def _pmf_if_alive_by_count(
    params: tuple[float, float, float, float],
    counts: np.ndarray,
    t: np.ndarray,
    x: np.ndarray,
    T: np.ndarray,
) -> np.ndarray:
    r"""P(X(T, T + t] = k | x, T, alive at T) for each ``k`` of ``counts`` (rows) and each
    history (columns), with the dropout integral shared by all counts.

    The integrand of :func:`_log_pmf_integral`, :math:`s b_0^s (b_0 + u)^{-(s + 1)}` times
    the negative binomial :math:`\mathrm{NB}(k \mid u)` of the purchases before a dropout at
    :math:`u`, is integrated by one Gauss-Legendre rule of 64 nodes in
    :math:`v = \ln(1 + u / c)`, :math:`c = \min(a_0, b_0)`, on which :math:`\ln
    \mathrm{NB}(k \mid u)` is linear in :math:`k`: one evaluation of the rule serves every
    count. Against :meth:`ParetoNBD.p_purchases` the probabilities agree to about 1e-12
    (relative) for horizons up to ten times the customers' ages and counts up to 400.
    """
    r, alpha, s, beta = params
    m, a0, b0 = r + x, alpha + T, beta + T
    scale = np.minimum(a0, b0)
    top = np.log1p(t / scale)
    v = (_COUNT_NODES_AT[:, np.newaxis] + 1.0) / 2.0 * top
    u = scale * np.expm1(v)
    log_du = np.log((scale + u) * _COUNT_WEIGHTS[:, np.newaxis] * top / 2.0)
    log_kernel = (
        math.log(s) + s * np.log(b0) - (s + 1.0) * np.log(b0 + u)
        + m * (np.log(a0) - np.log(a0 + u)) + log_du
    )  # fmt: skip
    log_ratio = np.log(u) - np.log(a0 + u)  # ln(u / (a0 + u)), per node
    k = counts.reshape(-1, 1)
    out = np.empty((len(counts), len(x)))
    for row, count in enumerate(counts):  # nodes x histories at a time: bounded memory
        terms = log_kernel + count * log_ratio
        peak = terms.max(axis=0)
        out[row] = peak + np.log(np.exp(terms - peak).sum(axis=0))
    log_front = gammaln(m + k) - gammaln(m) - gammaln(k + 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_survive = (
            k * np.log(t) + m * np.log(a0) - (m + k) * np.log(a0 + t) - s * np.log1p(t / b0)
        )
    log_survive = np.where((k == 0) & (t == 0), 0.0, log_survive)
    return np.exp(log_front + np.logaddexp(log_survive, np.where(t > 0, out, -np.inf)))


def _expected_purchases_if_alive(
    r: float, alpha: float, s: float, beta: float, t: np.ndarray, x: np.ndarray, T: np.ndarray
) -> np.ndarray:
    """Expected purchases in (T, T + t] given x and alive at T (no P(alive) factor)."""
    ell = np.log1p(t / (beta + T))
    return (r + x) / (alpha + T) * (beta + T) * ell * exprel(-(s - 1.0) * ell)


def _log_no_purchase_if_alive(
    params: tuple[float, float, float, float], t: np.ndarray, x: np.ndarray, T: np.ndarray
) -> np.ndarray:
    """Log-probability of no purchase in (T, T + t] given x and alive at T (see p_churn)."""
    r, alpha, s, beta = params
    t, x, T = np.broadcast_arrays(t, x, T)
    shape = t.shape
    t, x, T = (np.asarray(a, dtype=float).reshape(-1) for a in (t, x, T))
    # Same structure as the likelihood with (t_x, T) -> (T, T + t).
    odds, _ = _log_dropout_odds(params, x, T, T + t)
    out = -(r + x) * np.log1p(t / (alpha + T)) - s * np.log1p(t / (beta + T))
    out = out + np.logaddexp(0.0, odds)
    return np.minimum(out, 0.0).reshape(shape)


def _start_points(x: np.ndarray, T_scaled: np.ndarray, counts: np.ndarray) -> list[np.ndarray]:
    r"""Start points in log-parameters, with alpha and beta in units of the longest age.

    The first start matches the mean purchase rate :math:`r / \alpha` to the observed rate
    :math:`\sum x / \sum T` with :math:`r = 1`, and takes :math:`s = 1, \beta = 1` (a mean
    lifetime of the order of the longest age); the others cover slow and fast buyers and
    lifetimes' default start (all ones in scaled units).
    """
    exposure = float(counts @ T_scaled)
    rate = float(counts @ x) / exposure if exposure > 0 else 0.0
    alpha0 = 1.0 / rate if rate > 0 else 1.0
    return [
        np.log([1.0, alpha0, 1.0, 1.0]),
        np.zeros(4),
        np.log([0.25, 0.25 * alpha0, 0.5, 0.5]),
        np.log([3.0, 3.0 * alpha0, 3.0, 3.0]),
    ]
