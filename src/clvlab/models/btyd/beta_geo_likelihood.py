r"""The BG/NBD and MBG/NBD likelihood on grouped data, with exact gradient and Hessian.

:func:`clvlab.models.btyd.beta_geo.family_negative_log_likelihood` evaluates and documents the
likelihood row by row. Fitting a million customers needs it faster than that: of its terms

.. math::
    \ln L = \underbrace{\ln\frac{\Gamma(r + x)}{\Gamma(r)}
        + \ln\frac{B(a, b + x + s)}{B(a, b)}}_{\text{depends on } x}
        \underbrace{- r \ln\Big(1 + \frac{T}{\alpha}\Big) - x \ln(\alpha + T)}_{
        \text{on } T \text{ (and a sum of } x)}
        + \ln(1 + e^{D}),\quad
    D = \ln a - \ln b_\ell + (r + x)\big(\ln(\alpha + T) - \ln(\alpha + t_x)\big)

(:math:`s = 0` for BG/NBD, 1 for MBG/NBD; :math:`b_\ell = b + \max(x + s, 1) - 1`; the
last term only where :math:`x + s > 0`), the special functions are evaluated once per
distinct :math:`x` and the logarithms once per distinct :math:`T` and :math:`t_x`, and only
:math:`\ln(1 + e^D)` is computed per distinct history. Sums over rows with the same
:math:`x` are segment sums (the rows are sorted by :math:`x` once).

With :math:`d = e^D / (1 + e^D)` and :math:`g = \nabla D`, the per-history term contributes
:math:`d\, g` to the gradient and :math:`d\, \nabla^2 D + d (1 - d)\, g g^\top` to the
Hessian, where

.. math::
    g = \Big(\ell,\ (r + x) m,\ \frac{1}{a},\ -\frac{1}{b_\ell}\Big),\quad
    \ell = \ln\frac{\alpha + T}{\alpha + t_x},\quad
    m = \frac{1}{\alpha + T} - \frac{1}{\alpha + t_x},

and :math:`\nabla^2 D` has :math:`\partial_{r\alpha} = m`,
:math:`\partial_{\alpha\alpha} = (r + x)\big((\alpha + t_x)^{-2} - (\alpha + T)^{-2}\big)`,
:math:`\partial_{aa} = -a^{-2}`, :math:`\partial_{bb} = b_\ell^{-2}`.
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass
from typing import Literal, cast, overload

import numpy as np
from scipy.special import betaln, digamma, gammaln, polygamma

from clvlab.models.btyd.base import MAX_LIKELIHOOD_THREADS, CompressedRows, likelihood_threads

#: Histories per chunk below which the per-history sums are not split across threads.
_CHUNK_ROWS = 100_000


@dataclass
class GroupedHistories:
    """Compressed histories ``(x, t_x, T, count)`` arranged for :meth:`nll`."""

    shift: float
    #: distinct x, their total weight, and the start of their segment among the rows
    x_values: np.ndarray
    x_weight: np.ndarray
    x_starts: np.ndarray
    #: distinct T, their total weight and weighted sum of x
    T_values: np.ndarray
    T_weight: np.ndarray
    T_purchases: np.ndarray
    #: distinct recencies
    t_values: np.ndarray
    #: rows with a dropout chance (x + shift > 0), sorted by x
    x: np.ndarray
    w: np.ndarray
    T_code: np.ndarray
    t_code: np.ndarray
    #: segment of each row, for the per-x sums
    x_code: np.ndarray

    @classmethod
    def build(cls, rows: CompressedRows, initial_dropout: bool) -> GroupedHistories:
        """Group compressed ``frequency, recency, T`` histories (in that column order)."""
        shift = 1.0 if initial_dropout else 0.0
        (x_codes, t_codes, T_codes), counts = rows.codes, rows.counts
        x_values, t_values, T_values = rows.values
        x = x_values[x_codes]
        chance = np.flatnonzero(x + shift > 0)
        # A stable sort of small integers is a radix sort: linear time.
        narrow = np.int16 if len(x_values) < 2**15 else np.int64
        chance = chance[np.argsort(x_codes[chance].astype(narrow), kind="stable")]
        x_code = x_codes[chance]
        return cls(
            shift=shift,
            x_values=x_values,
            x_weight=np.bincount(x_codes, weights=counts, minlength=len(x_values)),
            x_starts=np.searchsorted(x_code, np.arange(len(x_values))),
            T_values=T_values,
            T_weight=np.bincount(T_codes, weights=counts, minlength=len(T_values)),
            T_purchases=np.bincount(T_codes, weights=counts * x, minlength=len(T_values)),
            t_values=t_values,
            x=x[chance],
            w=counts[chance],
            T_code=T_codes[chance],
            t_code=t_codes[chance],
            x_code=x_code,
        )

    def _chunks(self) -> list[tuple[int, int]]:
        """Row ranges for the per-history sums: one per core on large data, each a whole
        number of x segments."""
        n_rows = len(self.x)
        n_chunks = max(1, min(os.cpu_count() or 1, MAX_LIKELIHOOD_THREADS, n_rows // _CHUNK_ROWS))
        cuts = np.searchsorted(self.x_starts, np.arange(1, n_chunks) * n_rows / n_chunks)
        bounds = [0, *np.unique(self.x_starts[np.minimum(cuts, len(self.x_starts) - 1)]), n_rows]
        return [(int(lo), int(hi)) for lo, hi in itertools.pairwise(bounds) if hi > lo] or [(0, 0)]

    def _segment_sums(self, values: np.ndarray, lo: int) -> np.ndarray:
        """Sums of ``values`` (rows ``lo:lo + len(values)``) over the rows of each x."""
        out = np.zeros(len(self.x_values))
        starts = np.append(self.x_starts, len(self.x))
        present = np.flatnonzero(
            (starts[:-1] >= lo) & (starts[:-1] < lo + len(values)) & (np.diff(starts) > 0)
        )
        if len(present):
            out[present] = np.add.reduceat(values, self.x_starts[present] - lo)
        return out

    def _history_sums(
        self,
        r: float,
        alpha: float,
        a: float,
        log_b_last: np.ndarray,
        lo: int,
        hi: int,
        hessian: bool,
    ) -> dict[str, float | np.ndarray]:
        """The sums over histories ``lo:hi`` that the dropout term adds to the likelihood,
        gradient and Hessian (see the module docstring)."""
        T_code, t_code, x_code = self.T_code[lo:hi], self.t_code[lo:hi], self.x_code[lo:hi]
        w = self.w[lo:hi]
        ell = np.log(alpha + self.T_values)[T_code] - np.log(alpha + self.t_values)[t_code]
        rx = r + self.x[lo:hi]
        D = math.log(a) - log_b_last[x_code] + rx * ell
        e = np.exp(-np.abs(D))
        dropped = np.where(D > 0, 1.0, e) / (1.0 + e)
        p = w * dropped
        inv_T, inv_t = 1.0 / (alpha + self.T_values), 1.0 / (alpha + self.t_values)
        m = inv_T[T_code] - inv_t[t_code]
        rxm = rx * m
        sums: dict[str, float | np.ndarray] = {
            "softplus": float(w @ (np.maximum(D, 0.0) + np.log1p(e))),
            "p_ell": float(p @ ell),
            "p_rxm": float(p @ rxm),
            "p_by_x": self._segment_sums(p, lo),
        }
        if hessian:
            q = p * (1.0 - dropped)
            q_ell, q_rxm = q * ell, q * rxm
            sums |= {
                "q_ell_ell": float(q_ell @ ell),
                "q_ell_rxm": float(q_ell @ rxm),
                "q_rxm_rxm": float(q_rxm @ rxm),
                "p_m": float(p @ m),
                "p_rx_m2": float(p @ (rx * ((inv_t**2)[t_code] - (inv_T**2)[T_code]))),
                "q_ell": float(q_ell.sum()),
                "q_rxm": float(q_rxm.sum()),
                "q_by_x": self._segment_sums(q, lo),
                "q_ell_by_x": self._segment_sums(q_ell, lo),
                "q_rxm_by_x": self._segment_sums(q_rxm, lo),
            }
        return sums

    @overload
    def nll(
        self, log_params: np.ndarray, hessian: Literal[False] = False
    ) -> tuple[float, np.ndarray]: ...

    @overload
    def nll(
        self, log_params: np.ndarray, hessian: Literal[True]
    ) -> tuple[float, np.ndarray, np.ndarray]: ...

    @overload
    def nll(
        self, log_params: np.ndarray, hessian: bool = False
    ) -> tuple[float, np.ndarray] | tuple[float, np.ndarray, np.ndarray]: ...

    def nll(
        self, log_params: np.ndarray, hessian: bool = False
    ) -> tuple[float, np.ndarray] | tuple[float, np.ndarray, np.ndarray]:
        """Total negative log-likelihood, its gradient and (``hessian``) its Hessian, all
        w.r.t. ``log([r, alpha, a, b])``."""
        theta = np.exp(np.asarray(log_params, dtype=float))
        r, alpha, a, b = theta
        xs, wx = self.x_values, self.x_weight
        b_post = b + xs + self.shift
        b_last = b + np.maximum(xs + self.shift, 1.0) - 1.0

        # Terms by distinct x.
        ll = wx @ (gammaln(r + xs) - gammaln(r) + betaln(a, b_post) - betaln(a, b))
        ab_term = digamma(a + b) - digamma(a + b_post)
        grad = np.array(
            [
                wx @ (digamma(r + xs) - digamma(r)),
                0.0,
                wx @ ab_term,
                wx @ (digamma(b_post) - digamma(b) + ab_term),
            ]
        )
        # Terms by distinct T.
        Ts, wT, xT = self.T_values, self.T_weight, self.T_purchases
        inv_aT = 1.0 / (alpha + Ts)
        log_1p = np.log1p(Ts / alpha)
        ll -= r * (wT @ log_1p) + xT @ np.log(alpha + Ts)
        grad[0] -= wT @ log_1p
        grad[1] += (r / alpha) * (wT @ (Ts * inv_aT)) - xT @ inv_aT

        # The dropout term, per distinct history (in parallel chunks on large data).
        log_b_last = np.log(b_last)
        chunks = [(r, alpha, a, log_b_last, lo, hi, hessian) for lo, hi in self._chunks()]
        if len(chunks) == 1:
            parts = [self._history_sums(*chunks[0])]
        else:
            parts = list(likelihood_threads().map(lambda args: self._history_sums(*args), chunks))
        sums = {key: sum(part[key] for part in parts) for key in parts[0]}
        ll += sums["softplus"]
        # The "*_by_x" sums are arrays (one entry per distinct x; see _segment_sums).
        p_by_x = cast(np.ndarray, sums["p_by_x"])
        grad[0] += sums["p_ell"]
        grad[1] += sums["p_rxm"]
        grad[2] += p_by_x.sum() / a
        grad[3] -= p_by_x @ (1.0 / b_last)

        value = -float(ll)
        grad_log = -theta * grad
        if not hessian:
            return value, grad_log

        h = np.zeros((4, 4))
        # By distinct x.
        tri_ab = polygamma(1, a + b) - polygamma(1, a + b_post)
        h[0, 0] = wx @ (polygamma(1, r + xs) - polygamma(1, r))
        h[2, 2] = wx @ tri_ab
        h[2, 3] = wx @ tri_ab
        h[3, 3] = wx @ (polygamma(1, b_post) - polygamma(1, b) + tri_ab)
        # By distinct T.
        h[0, 1] = wT @ (Ts * inv_aT) / alpha
        h[1, 1] = r * (wT @ (inv_aT**2 - 1.0 / alpha**2)) + xT @ inv_aT**2
        # Per history: d * Hess(D) + d (1 - d) g g'.
        h[0, 0] += sums["q_ell_ell"]
        h[0, 1] += sums["q_ell_rxm"] + sums["p_m"]
        h[1, 1] += sums["q_rxm_rxm"] + sums["p_rx_m2"]
        q_by_x = cast(np.ndarray, sums["q_by_x"])
        h[0, 2] += sums["q_ell"] / a
        h[1, 2] += sums["q_rxm"] / a
        h[2, 2] += (q_by_x.sum() - p_by_x.sum()) / a**2
        inv_bl = 1.0 / b_last
        h[0, 3] -= sums["q_ell_by_x"] @ inv_bl
        h[1, 3] -= sums["q_rxm_by_x"] @ inv_bl
        h[2, 3] -= (q_by_x @ inv_bl) / a
        h[3, 3] += (q_by_x + p_by_x) @ inv_bl**2
        h = h + np.triu(h, 1).T
        # To log-parameters: theta_j theta_k H_jk + delta_jk theta_j dL/dtheta_j.
        hess_log = -(np.outer(theta, theta) * h + np.diag(theta * grad))
        return value, grad_log, hess_log

    def nll_with_hessian(self, log_params: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """:meth:`nll` with ``hessian=True``: the Hessian callable of a
        :class:`~clvlab.models.btyd.base.FitProblem`."""
        return self.nll(log_params, hessian=True)
