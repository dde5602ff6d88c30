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

from clvlab.models.btyd.beta_geo import BetaGeo, _negative_log_likelihood


def negative_log_likelihood(
    log_params: np.ndarray,
    frequency: np.ndarray,
    recency: np.ndarray,
    T: np.ndarray,
    weights: np.ndarray | None = None,
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

    evaluated in log space as

    .. math::
        \ln L = \ln\frac{\Gamma(r + x)}{\Gamma(r)} + \ln\frac{B(a, b + x + 1)}{B(a, b)}
        - r \ln\Big(1 + \frac{T}{\alpha}\Big) - x \ln(\alpha + T) + \ln(1 + e^{D}),\quad
        D = \ln\frac{a}{b + x} + (r + x) \ln\frac{\alpha + T}{\alpha + t_x}.

    With :math:`d = e^D / (1 + e^D)` (the posterior probability of having dropped out),
    :math:`b_1 = b + x + 1` and :math:`\psi` the digamma function:

    .. math::
        \partial_r \ln L &= \psi(r+x) - \psi(r) - \ln(1 + T/\alpha)
            + d \ln\frac{\alpha + T}{\alpha + t_x} \\
        \partial_\alpha \ln L &= \frac{r T / \alpha - x}{\alpha + T}
            - d \frac{(r + x)(T - t_x)}{(\alpha + T)(\alpha + t_x)} \\
        \partial_a \ln L &= \psi(a+b) - \psi(a+b_1) + d / a \\
        \partial_b \ln L &= \psi(b_1) - \psi(b) + \psi(a+b) - \psi(a+b_1) - d / (b + x)

    and :math:`\partial_{\ln\theta} = \theta\, \partial_\theta`.

    Parameters
    ----------
    log_params
        ``log([r, alpha, a, b])``.
    frequency, recency, T
        Customer data :math:`x, t_x, T` (1-D arrays of equal length).
    weights
        Count (or weight) of each row; ones when None.

    Returns
    -------
    tuple of (float, numpy.ndarray)
        :math:`-\sum_i w_i \ln L_i` and its gradient w.r.t. ``log_params``.
    """
    return _negative_log_likelihood(log_params, frequency, recency, T, weights, True)


class ModifiedBetaGeo(BetaGeo):
    """MBG/NBD model: BG/NBD plus a dropout chance right after the first purchase.

    Same interface as :class:`~clvlab.models.btyd.beta_geo.BetaGeo` (``fit``,
    ``expected_purchases``, ``p_alive``, ``p_churn``, ``p_purchases``, the new-customer
    predictions, ``to_dict``/``from_dict``), fitted and predicting with the MBG/NBD
    likelihood and posterior (Batislam, Denizel & Filiztekin 2007; lifetimes'
    ``ModifiedBetaGeoFitter``).

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
        and ``a, b`` (beta prior of the dropout probability at the first and after each
        repeat purchase).
    log_likelihood_ : float
        Total log-likelihood (weights applied, without penalty).
    stderr_ : pandas.Series
        Standard errors from the inverse Hessian of the negative log-likelihood (delta
        method from the log-parameters); NaN where the Hessian is singular.
    converged_ : bool
        Whether the optimizer converged.
    n_iter_ : int
        Iterations of the retained optimizer run.

    Examples
    --------
    >>> model = ModifiedBetaGeo().fit(rfm)  # doctest: +SKIP
    >>> model.p_alive(0, 0.0, 38.86)  # below 1, unlike BG/NBD  # doctest: +SKIP
    """

    _INITIAL_DROPOUT = True

    def p_alive(self, frequency: object, recency: object, T: object) -> np.ndarray:
        r"""Probability that a customer with history :math:`(x, t_x, T)` is alive at T.

        Batislam et al. (2007), appendix, eq. (5):

        .. math::
            P(\text{alive} \mid x, t_x, T) = \Big[1 + \frac{a}{b + x}
            \Big(\frac{\alpha + T}{\alpha + t_x}\Big)^{r + x}\Big]^{-1}

        (below 1 also for :math:`x = 0`).

        Parameters
        ----------
        frequency, recency, T : float or array-like
            Customer histories (broadcast against each other).

        Returns
        -------
        numpy.ndarray
            Probabilities, in the broadcast shape of the inputs.
        """
        return super().p_alive(frequency, recency, T)

    def expected_purchases(
        self, t: object, frequency: object, recency: object, T: object
    ) -> np.ndarray:
        r"""Expected number of purchases in :math:`(T, T + t]` given :math:`(x, t_x, T)`.

        Wagner & Hoppe (2008):

        .. math::
            E[X(T, T+t) \mid x, t_x, T] = P(\text{alive} \mid x, t_x, T)\,
            \frac{a + b + x}{a - 1}\Big[1 - \Big(\frac{\alpha + T}{\alpha + T + t}
            \Big)^{r + x} {}_2F_1\Big(r + x, b + x + 1; a + b + x;
            \frac{t}{\alpha + T + t}\Big)\Big]

        with :math:`P(\text{alive})` from :meth:`p_alive`: BG/NBD's eq. (10) with the
        posterior :math:`p \sim \mathrm{Beta}(a, b + x + 1)` given alive, evaluated with
        BG/NBD's numerically stable representation.

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
        return super().expected_purchases(t, frequency, recency, T)

    def expected_purchases_new_customer(self, t: object) -> np.ndarray:
        r"""Expected repeat purchases in :math:`(0, t]` of a new customer.

        .. math::
            E[X(t)] = \frac{b}{a - 1}\Big[1 - \Big(\frac{\alpha}{\alpha + t}\Big)^r
            {}_2F_1\Big(r, b + 1; a + b; \frac{t}{\alpha + t}\Big)\Big]

        (:meth:`expected_purchases` with :math:`x = t_x = T = 0`).

        Parameters
        ----------
        t : float or array-like
            Time since the first purchase.

        Returns
        -------
        numpy.ndarray
            Expected purchases, in the shape of ``t``.
        """
        return super().expected_purchases_new_customer(t)

    def p_no_purchase_new_customer(self, t: object) -> np.ndarray:
        r"""Probability that a new customer makes no repeat purchase in :math:`(0, t]`.

        .. math::
            P(X(t) = 0) = \frac{a}{a + b} + \frac{b}{a + b}
            \Big(\frac{\alpha}{\alpha + t}\Big)^r

        (dropped out at the first purchase, or alive and no purchase yet).

        Parameters
        ----------
        t : float or array-like
            Time since the first purchase.

        Returns
        -------
        numpy.ndarray
            Probabilities, in the shape of ``t``.
        """
        return super().p_no_purchase_new_customer(t)
