r"""MBG/NBD: the modified beta-geometric / negative binomial distribution model.

Batislam, Denizel and Filiztekin (2007), "Empirical validation and comparison of models for
customer base analysis", International Journal of Research in Marketing 24 (3), 201-209;
Wagner and Hoppe (2008), "Erratum on the MBG/NBD model", IJRM 25 (3), 225-226. The same
model as lifetimes' ``ModifiedBetaGeoFitter``.

The assumptions are those of BG/NBD (:mod:`clvlab.models.btyd.beta_geo`) except that a
customer can also drop out right after the first purchase (at time 0), with the same
probability :math:`p` as after each repeat purchase. So customers without repeat purchases
may have dropped out too, and :math:`P(\text{alive}) < 1` for every history.

Everything is computed by :class:`~clvlab.models.btyd.beta_geo.BetaGeo`'s code: a customer
with :math:`x` repeat purchases has had :math:`x + 1` dropout chances instead of :math:`x`,
which changes the likelihood and the odds of having dropped out, and makes the posterior of
:math:`p` given alive :math:`\mathrm{Beta}(a, b + x + 1)`; from :math:`T` on, a customer who
is alive behaves as in BG/NBD.
"""

from __future__ import annotations

import numpy as np

from clvlab.models.btyd.beta_geo import BetaGeo, family_negative_log_likelihood


def negative_log_likelihood(
    log_params: np.ndarray,
    frequency: np.ndarray,
    recency: np.ndarray,
    T: np.ndarray,
    sample_weight: np.ndarray | None = None,
) -> tuple[float, np.ndarray]:
    r"""Total negative MBG/NBD log-likelihood and its gradient w.r.t. the log-parameters.

    Given :math:`\lambda, p`, a customer either survived all :math:`x + 1` dropout chances
    (probability :math:`(1-p)^{x+1}`, density :math:`\lambda^x e^{-\lambda T}`) or dropped
    out at the last one, right after the purchase at :math:`t_x` (:math:`p (1-p)^x`,
    :math:`\lambda^x e^{-\lambda t_x}`; :math:`t_x = 0` when :math:`x = 0`). Integrating over
    the priors:

    .. math::
        L = \frac{\Gamma(r + x)\, \alpha^r}{\Gamma(r)} \Big[
            \frac{B(a, b + x + 1)}{B(a, b)} \frac{1}{(\alpha + T)^{r + x}}
            + \frac{B(a + 1, b + x)}{B(a, b)} \frac{1}{(\alpha + t_x)^{r + x}} \Big]

    This is :func:`clvlab.models.btyd.beta_geo.family_negative_log_likelihood` with
    ``initial_dropout=True``, which documents the arguments, the result and how it is
    evaluated.
    """
    return family_negative_log_likelihood(log_params, frequency, recency, T, sample_weight, True)


class ModifiedBetaGeo(BetaGeo):
    r"""MBG/NBD model: BG/NBD plus a dropout chance right after the first purchase.

    Batislam, Denizel & Filiztekin (2007); lifetimes' ``ModifiedBetaGeoFitter``. Parameters,
    attributes and methods are those of :class:`~clvlab.models.btyd.beta_geo.BetaGeo`, fitted
    and predicting with the MBG/NBD likelihood and posterior; ``a, b`` is the beta prior of
    the dropout probability at the first and after each repeat purchase.

    Notes
    -----
    A customer with :math:`x` repeat purchases has had :math:`x + 1` dropout chances, so
    (Batislam et al. 2007, appendix, eq. 5)

    .. math::
        P(\text{alive} \mid x, t_x, T) = \Big[1 + \frac{a}{b + x}
        \Big(\frac{\alpha + T}{\alpha + t_x}\Big)^{r + x}\Big]^{-1},

    below 1 also for :math:`x = 0`, and given alive :math:`p \sim \mathrm{Beta}(a, b + x + 1)`.
    The other predictions are those in the Notes of ``BetaGeo`` with :math:`b + x + 1` in place
    of :math:`b + x` and this :math:`P(\text{alive})`; e.g. (Wagner & Hoppe 2008)

    .. math::
        E[X(T, T+t) \mid x, t_x, T] = P(\text{alive})\, \frac{a + b + x}{a - 1}
        \Big[1 - \Big(\frac{\alpha + T}{\alpha + T + t}\Big)^{r + x}
        {}_2F_1\Big(r + x, b + x + 1; a + b + x; \frac{t}{\alpha + T + t}\Big)\Big].

    A new customer (:math:`x = t_x = T = 0`) is alive with probability :math:`b / (a + b)`:

    .. math::
        E[X(t)] = \frac{b}{a - 1}\Big[1 - \Big(\frac{\alpha}{\alpha + t}\Big)^r
        {}_2F_1\Big(r, b + 1; a + b; \frac{t}{\alpha + t}\Big)\Big],\qquad
        P(X(t) = 0) = \frac{a}{a + b} + \frac{b}{a + b} \Big(\frac{\alpha}{\alpha + t}\Big)^r.

    Examples
    --------
    >>> model = ModifiedBetaGeo().fit(rfm)  # doctest: +SKIP
    >>> model.p_alive(0, 0.0, 38.86)  # below 1, unlike BG/NBD  # doctest: +SKIP
    """

    _INITIAL_DROPOUT = True
