r"""sBG with static covariates: subscribers whose churn differs with what is known of them
(plan, channel, price), in the way covariates enter CLVTools' and PyMC-Marketing's models.

Each subscriber's churn probability per period is :math:`\theta_i \sim \mathrm{Beta}(\alpha_i,
\beta_i)` with

.. math::
    \alpha_i = \alpha\, e^{z_i' \gamma_\alpha}, \qquad \beta_i = \beta\, e^{z_i' \gamma_\beta},

:math:`z_i` the subscriber's covariates (numeric columns; one-hot encode categories, leaving a
reference level out). With no covariates it is :class:`ShiftedBetaGeometric`. The likelihood
of a subscriber is that of :class:`~clvlab.models.contractual.shifted_beta_geo.SubscriberRows`
at his own :math:`(\alpha_i, \beta_i)`; it is maximised over
:math:`(\ln \alpha, \ln \beta, \gamma_\alpha, \gamma_\beta)` with its exact gradient, and the
standard errors come from the Hessian (central differences of the gradient).
"""

from __future__ import annotations

from typing import Self

import numpy as np
import pandas as pd
from scipy.special import betaln, digamma

from clvlab.models.btyd.base import validate_sample_weight
from clvlab.models.btyd.covariates import (
    checked_covariates,
    covariate_matrix,
    maximize_with_covariates,
)
from clvlab.models.contractual.shifted_beta_geo import ShiftedBetaGeometric, validate_subscribers


class CovariateShiftedBetaGeometric:
    r"""sBG whose :math:`\alpha` and :math:`\beta` are scaled by static covariates (see the
    module docstring).

    Attributes
    ----------
    params_ : pandas.Series
        ``alpha``, ``beta`` (at covariates 0), then ``alpha:<covariate>`` and
        ``beta:<covariate>``, the coefficients :math:`\gamma`.
    stderr_ : pandas.Series
        Their standard errors (of ``alpha`` and ``beta`` by the delta method); NaN where the
        Hessian is singular.
    log_likelihood_ : float
        The total log-likelihood at ``params_``.
    covariates_ : list of str
        The covariate columns, in order.
    """

    def fit(
        self, table: pd.DataFrame, covariates: pd.DataFrame, sample_weight: object = None
    ) -> Self:
        """Fit on one row per subscriber (``periods``, ``churned``, as
        :meth:`ShiftedBetaGeometric.fit`) and his ``covariates`` (numeric columns, the rows
        of ``table`` in order).

        Raises
        ------
        clvlab.errors.DataError
            Covariates that are missing, not numeric, or not one row per subscriber.

        Warns
        -----
        clvlab.models.btyd.BTYDConvergenceWarning
            A covariate is constant (its coefficients are not identified: drop it), or the
            optimiser did not converge.
        """
        name = type(self).__name__
        frame = validate_subscribers(table, name)
        z = checked_covariates(covariates, len(frame), name)
        w = validate_sample_weight(sample_weight, len(frame), name)
        t = frame["periods"].to_numpy(dtype=float)
        c = frame["churned"].to_numpy(dtype=float)
        k = z.shape[1]
        start = ShiftedBetaGeometric().fit(frame, sample_weight=w).params_.to_numpy()

        u, se_u = maximize_with_covariates(
            lambda v: negative_log_likelihood(v, t, c, w, z),
            np.concatenate([np.log(start), np.zeros(2 * k)]),
            float(w.sum()),
            name,
        )
        names = ["alpha", "beta"]
        names += [f"alpha:{col}" for col in z.columns] + [f"beta:{col}" for col in z.columns]
        values = np.concatenate([np.exp(u[:2]), u[2:]])
        errors = np.concatenate([np.exp(u[:2]) * se_u[:2], se_u[2:]])
        self.params_ = pd.Series(values, index=names, name="params", dtype=float)
        self.stderr_ = pd.Series(errors, index=names, name="stderr", dtype=float)
        self.log_likelihood_ = -float(negative_log_likelihood(u, t, c, w, z)[0])
        self.covariates_ = list(z.columns)
        return self

    def shapes(self, covariates: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        r"""Each subscriber's :math:`(\alpha_i, \beta_i)` from his ``covariates``."""
        z = covariate_matrix(covariates[self.covariates_], len(covariates), type(self).__name__)
        k = len(self.covariates_)
        gamma = self.params_.to_numpy()[2:]
        alpha = self.params_["alpha"] * np.exp(z.to_numpy() @ gamma[:k])
        beta = self.params_["beta"] * np.exp(z.to_numpy() @ gamma[k:])
        return alpha, beta

    def survival(self, t: object, periods: object, covariates: pd.DataFrame) -> np.ndarray:
        r""":meth:`ShiftedBetaGeometric.survival` of each subscriber at his own shapes:
        :math:`S(n + t \mid T > n) = B(\alpha_i, \beta_i + n + t) / B(\alpha_i, \beta_i + n)`."""
        alpha, beta = self.shapes(covariates)
        n = np.asarray(periods, dtype=float)
        ahead = np.asarray(t, dtype=float)
        return np.exp(betaln(alpha, beta + n + ahead) - betaln(alpha, beta + n))


def negative_log_likelihood(
    u: np.ndarray, t: np.ndarray, c: np.ndarray, w: np.ndarray, z: pd.DataFrame
) -> tuple[float, np.ndarray]:
    """Total negative log-likelihood (weights ``w``) of subscribers with ``t`` periods and
    ``churned`` flags ``c`` and covariates ``z``, and its exact gradient in ``u = (ln alpha,
    ln beta, gamma_alpha, gamma_beta)``."""
    k = z.shape[1]
    zm = z.to_numpy()
    alpha = np.exp(u[0] + zm @ u[2 : 2 + k])
    beta = np.exp(u[1] + zm @ u[2 + k :])
    ll = betaln(alpha + c, beta + t - c) - betaln(alpha, beta)
    psi_all, psi_ab = digamma(alpha + beta + t), digamma(alpha + beta)
    d_alpha = alpha * (digamma(alpha + c) - psi_all - digamma(alpha) + psi_ab)  # d ln L / d ln a
    d_beta = beta * (digamma(beta + t - c) - psi_all - digamma(beta) + psi_ab)
    grad = np.concatenate([[w @ d_alpha, w @ d_beta], zm.T @ (w * d_alpha), zm.T @ (w * d_beta)])
    return -float(w @ ll), -grad
