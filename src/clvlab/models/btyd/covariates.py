r"""BG/NBD and Pareto/NBD with static covariates: customers whose purchase rate and dropout
differ with what is known of them (channel, first-purchase value, country), as in CLVTools'
static covariates and PyMC-Marketing's covariate models. :class:`CovariateBetaGeo` is
described here, :class:`CovariateParetoNBD` in its docstring.

In :class:`CovariateBetaGeo`, customer :math:`i` with covariates :math:`z_i` (numeric
columns; one-hot encode categories, leaving a reference level out) has

.. math::
    \lambda_i \sim \mathrm{Gamma}(r, \alpha_i), \quad \alpha_i = \alpha\, e^{-z_i' \gamma_p};
    \qquad p_i \sim \mathrm{Beta}(a_i, b_i), \quad a_i = a\, e^{z_i' \gamma_d},
    \; b_i = b\, e^{z_i' \gamma_d}

(a positive :math:`\gamma_p` raises the purchase rate; :math:`\gamma_d` scales the dropout
distribution's two shapes alike). With no covariates it is :class:`BetaGeo`. The likelihood
of a customer is BG/NBD's (FHL 2005, eq. 6) at his own parameters; it is maximised over
:math:`(\ln r, \ln \alpha, \ln a, \ln b, \gamma_p, \gamma_d)` with its exact gradient, and the
standard errors come from the Hessian (central differences of the gradient). Predictions
evaluate :class:`BetaGeo`'s own formulas once per distinct covariate row.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Self

import numpy as np
import pandas as pd
from scipy.special import betaln, digamma, gammaln

from clvlab.errors import DataError
from clvlab.models.btyd.base import (
    convergence_warning,
    numerical_hessian,
    validate_purchase_history,
    validate_sample_weight,
)
from clvlab.models.btyd.beta_geo import BetaGeo
from clvlab.models.btyd.pareto_nbd import ParetoNBD
from clvlab.models.btyd.pareto_nbd import negative_log_likelihood as pareto_nll
from clvlab.models.btyd.purchase import PurchaseModel


class _CovariatePurchaseModel:
    """What the covariate purchase models share: predictions with the model without
    covariates at each customer's own parameters, evaluated once per distinct covariate
    row."""

    #: The purchase model without covariates.
    base: type[PurchaseModel]
    params_: pd.Series
    covariates_: list[str]

    def _row_params(self, row: np.ndarray) -> dict[str, float]:
        """The parameters of a customer with covariates ``row``."""
        k = len(self.covariates_)
        values = self.params_.to_numpy(dtype=float)
        return self._scaled(values[:4], row @ values[4 : 4 + k], row @ values[4 + k :])

    def _scaled(self, shapes: np.ndarray, purchase: float, dropout: float) -> dict[str, float]:
        r"""The parameters at covariates 0 (``shapes``) moved by a customer's linear
        predictors of purchase and dropout (:math:`z'\gamma_p`, :math:`z'\gamma_d`)."""
        raise NotImplementedError

    def _data(
        self, rfm: pd.DataFrame, covariates: pd.DataFrame, sample_weight: object
    ) -> tuple[pd.DataFrame, np.ndarray, list[np.ndarray], np.ndarray]:
        """The validated covariates, the weights, the histories (frequency, recency, T) and
        the start point: the model without covariates fitted, the coefficients 0."""
        name = type(self).__name__
        frame = validate_purchase_history(rfm, name)
        z = checked_covariates(covariates, len(frame), name)
        w = validate_sample_weight(sample_weight, len(frame), name)
        histories = [frame[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T")]
        with warnings.catch_warnings():  # the start point only
            warnings.simplefilter("ignore", convergence_warning())
            fitted = self.base().fit(frame, sample_weight=w)
        start = np.log(fitted.params_.to_numpy(dtype=float)[: len(self.base.PARAM_NAMES)])
        return z, w, histories, np.concatenate([start, np.zeros(2 * z.shape[1])])

    def _keep(self, u: np.ndarray, errors: np.ndarray, z: pd.DataFrame, nll: float) -> None:
        """Store the optimum ``u`` (log shapes, then the coefficients) and its standard
        errors as the fitted state."""
        shapes = len(self.base.PARAM_NAMES)
        names = [*self.base.PARAM_NAMES]
        names += [f"purchase:{c}" for c in z.columns] + [f"dropout:{c}" for c in z.columns]
        values = np.r_[np.exp(u[:shapes]), u[shapes:]]
        scaled = np.r_[np.exp(u[:shapes]) * errors[:shapes], errors[shapes:]]
        self.params_ = pd.Series(values, index=names, name="params", dtype=float)
        self.stderr_ = pd.Series(scaled, index=names, name="stderr", dtype=float)
        self.log_likelihood_ = -float(nll)
        self.covariates_ = list(z.columns)

    def customer_models(self, covariates: pd.DataFrame) -> tuple[list[PurchaseModel], np.ndarray]:
        """One model without covariates per distinct covariate row of ``covariates`` (at its
        own parameters), and each customer's index into them."""
        z = covariate_matrix(covariates[self.covariates_], len(covariates), type(self).__name__)
        rows, inverse = np.unique(z.to_numpy(), axis=0, return_inverse=True)
        name = self.base.__name__
        models = [
            self.base.from_dict({"model": name, "params": self._row_params(row)}) for row in rows
        ]
        return models, inverse.reshape(-1)

    def p_alive(self, rfm: pd.DataFrame, covariates: pd.DataFrame) -> np.ndarray:
        """``p_alive`` of each customer at his own parameters."""
        return self._each(rfm, covariates, lambda m, x, t_x, age: m.p_alive(x, t_x, age))

    def expected_purchases(
        self, t: float, rfm: pd.DataFrame, covariates: pd.DataFrame
    ) -> np.ndarray:
        """``expected_purchases`` within ``t`` of each customer at his own parameters."""
        return self._each(
            rfm, covariates, lambda m, x, t_x, age: m.expected_purchases(t, x, t_x, age)
        )

    def _each(
        self,
        rfm: pd.DataFrame,
        covariates: pd.DataFrame,
        predict: Callable[..., np.ndarray],
    ) -> np.ndarray:
        x, t_x, age = (rfm[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T"))
        models, which = self.customer_models(covariates)
        out = np.empty(len(x))
        for index, model in enumerate(models):
            rows = which == index
            out[rows] = predict(model, x[rows], t_x[rows], age[rows])
        return out


class CovariateBetaGeo(_CovariatePurchaseModel):
    r"""BG/NBD whose purchase rate and dropout are scaled by static covariates (see the
    module docstring).

    Attributes
    ----------
    params_ : pandas.Series
        ``r``, ``alpha``, ``a``, ``b`` (at covariates 0), then ``purchase:<covariate>``
        (:math:`\gamma_p`) and ``dropout:<covariate>`` (:math:`\gamma_d`).
    stderr_ : pandas.Series
        Their standard errors (of the four shapes by the delta method); NaN where the
        Hessian is singular.
    log_likelihood_ : float
        The total log-likelihood at ``params_``.
    covariates_ : list of str
        The covariate columns, in order.
    """

    base = BetaGeo

    def fit(
        self, rfm: pd.DataFrame, covariates: pd.DataFrame, sample_weight: object = None
    ) -> Self:
        """Fit on an RFM summary (``frequency``, ``recency``, ``T``, as :meth:`BetaGeo.fit`)
        and each customer's ``covariates`` (numeric columns, the rows of ``rfm`` in order).

        Raises
        ------
        clvlab.errors.DataError
            Covariates that are missing, not numeric, or not one row per customer.

        Warns
        -----
        clvlab.models.btyd.BTYDConvergenceWarning
            A covariate is constant (its coefficients are not identified: drop it), or the
            optimiser did not converge.
        """
        z, w, (x, t_x, age), start = self._data(rfm, covariates, sample_weight)
        zm = z.to_numpy()

        def total(v: np.ndarray) -> tuple[float, np.ndarray]:
            return negative_log_likelihood(v, x, t_x, age, w, zm)

        u, errors = maximize_with_covariates(total, start, float(w.sum()), type(self).__name__)
        self._keep(u, errors, z, total(u)[0])
        return self

    def _scaled(self, shapes: np.ndarray, purchase: float, dropout: float) -> dict[str, float]:
        r, alpha, a, b = shapes
        scale_d = float(np.exp(dropout))
        return {
            "r": float(r),
            "alpha": float(alpha * np.exp(-purchase)),
            "a": float(a * scale_d),
            "b": float(b * scale_d),
        }


class CovariateParetoNBD(_CovariatePurchaseModel):
    r"""Pareto/NBD whose purchase and dropout rates are scaled by static covariates, as
    CLVTools' static covariates: :math:`\lambda_i \sim \mathrm{Gamma}(r, \alpha_i)`,
    :math:`\alpha_i = \alpha e^{-z_i' \gamma_p}`; :math:`\mu_i \sim \mathrm{Gamma}(s,
    \beta_i)`, :math:`\beta_i = \beta e^{-z_i' \gamma_d}` (positive coefficients raise the
    rates: more purchases, earlier dropout).

    The customers are grouped by their distinct covariate rows; a group's likelihood and its
    exact gradient are Pareto/NBD's (:func:`clvlab.models.btyd.pareto_nbd.
    negative_log_likelihood`) at the group's parameters, and the chain rule gives the
    coefficients' gradient. Many distinct rows (a continuous covariate) make many groups:
    bin such a covariate first.

    Attributes
    ----------
    params_, stderr_, log_likelihood_, covariates_
        As :class:`CovariateBetaGeo`'s: ``r``, ``alpha``, ``s``, ``beta``, then
        ``purchase:<covariate>`` and ``dropout:<covariate>``.
    """

    base = ParetoNBD

    def fit(
        self, rfm: pd.DataFrame, covariates: pd.DataFrame, sample_weight: object = None
    ) -> Self:
        """Fit on an RFM summary and each customer's ``covariates`` (as
        :meth:`CovariateBetaGeo.fit`)."""
        z, w, (x, t_x, age), start = self._data(rfm, covariates, sample_weight)
        rows, which = np.unique(z.to_numpy(), axis=0, return_inverse=True)
        groups = [which.reshape(-1) == g for g in range(len(rows))]
        k = z.shape[1]

        def total(u: np.ndarray) -> tuple[float, np.ndarray]:
            value, grad = 0.0, np.zeros_like(u)
            for row, rows_g in zip(rows, groups, strict=True):
                log_params = np.array(
                    [u[0], u[1] - row @ u[4 : 4 + k], u[2], u[3] - row @ u[4 + k :]]
                )
                v, g = pareto_nll(log_params, x[rows_g], t_x[rows_g], age[rows_g], w[rows_g])
                value += v
                grad[:4] += g
                grad[4 : 4 + k] -= row * g[1]
                grad[4 + k :] -= row * g[3]
            return value, grad

        u, errors = maximize_with_covariates(total, start, float(w.sum()), type(self).__name__)
        self._keep(u, errors, z, total(u)[0])
        return self

    def _scaled(self, shapes: np.ndarray, purchase: float, dropout: float) -> dict[str, float]:
        r, alpha, s, beta = shapes
        return {
            "r": float(r),
            "alpha": float(alpha * np.exp(-purchase)),
            "s": float(s),
            "beta": float(beta * np.exp(-dropout)),
        }


def covariate_matrix(covariates: object, rows: int, model: str) -> pd.DataFrame:
    """Validated float copy of a covariate table with ``rows`` rows (``model`` names the
    estimator in the errors)."""
    if not isinstance(covariates, pd.DataFrame) or len(covariates) != rows:
        raise DataError(
            f"{model}: covariates must be a DataFrame with one row per customer ({rows} rows), "
            f"got {type(covariates).__name__} of {len(getattr(covariates, 'index', []))}"
        )
    bad = [str(col) for col in covariates if not pd.api.types.is_numeric_dtype(covariates[col])]
    if bad:
        raise DataError(
            f"{model}: covariate(s) {bad} are not numeric; one-hot encode categories "
            "(pandas.get_dummies(..., drop_first=True)), leaving a reference level out"
        )
    z = covariates.astype(float).reset_index(drop=True)
    missing = [str(col) for col in z if z[col].isna().any()]
    if missing:
        raise DataError(f"{model}: covariate(s) {missing} have missing values; fill or drop them")
    return z


def checked_covariates(covariates: object, rows: int, model: str) -> pd.DataFrame:
    """:func:`covariate_matrix` for a fit: a constant covariate warns (its coefficients
    are not identified)."""
    z = covariate_matrix(covariates, rows, model)
    constant = [str(col) for col in z if z[col].nunique() < 2]
    if constant:
        warnings.warn(
            f"clvlab {model}: covariate(s) {constant} are constant, so their coefficients "
            "are not identified (their standard errors are NaN); drop them",
            convergence_warning(),
            stacklevel=3,
        )
    return z


def maximize_with_covariates(
    total: Callable[[np.ndarray], tuple[float, np.ndarray]],
    start: np.ndarray,
    weight: float,
    model: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Minimise ``total`` (a total negative log-likelihood and its exact gradient, over
    ``weight`` subscribers or customers) by L-BFGS-B from ``start``; the optimum and its
    standard errors (from the Hessian by central differences of the gradient; NaN when it
    is singular). Warns when the optimiser does not converge."""
    from scipy.optimize import minimize  # here: a process that only scores needs none

    def mean(u: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = total(u)
        return value / weight, grad / weight

    result = minimize(mean, start, jac=True, method="L-BFGS-B", options={"maxiter": 5000})
    if not result.success:
        warnings.warn(
            f"clvlab {model}: the optimizer did not converge ({result.message}).",
            convergence_warning(),
            stacklevel=3,
        )
    hess = numerical_hessian(lambda v: total(v)[1], result.x)
    errors = np.full(len(result.x), np.nan)
    if np.isfinite(hess).all() and np.linalg.eigvalsh(hess).min() > 0:
        errors = np.sqrt(np.diag(np.linalg.inv(hess)))
    return result.x, errors


def negative_log_likelihood(
    u: np.ndarray,
    x: np.ndarray,
    t_x: np.ndarray,
    T: np.ndarray,
    w: np.ndarray,
    z: np.ndarray,
) -> tuple[float, np.ndarray]:
    r"""Total negative log-likelihood (weights ``w``) of BG/NBD histories with covariates
    ``z`` and its exact gradient in ``u = (ln r, ln alpha, ln a, ln b, gamma_p, gamma_d)``.

    With :math:`A_1 = \ln B(a, b + x) - \ln B(a, b) - (r + x) \ln(\alpha + T)` and, for
    :math:`x > 0`, :math:`A_2 = \ln B(a + 1, b + x - 1) - \ln B(a, b) - (r + x)
    \ln(\alpha + t_x)`: :math:`\ln L = \ln\Gamma(r + x) - \ln\Gamma(r) + r \ln\alpha +
    \ln(e^{A_1} + e^{A_2})`; the gradient weighs each term's derivative by its share
    :math:`p_j = e^{A_j - \ln L'}`.
    """
    k = z.shape[1]
    r = np.exp(u[0])
    alpha = np.exp(u[1] - z @ u[4 : 4 + k])
    scale_d = np.exp(z @ u[4 + k :])
    a, b = np.exp(u[2]) * scale_d, np.exp(u[3]) * scale_d
    repeat = x > 0
    base = betaln(a, b)
    first = betaln(a, b + x) - base - (r + x) * np.log(alpha + T)
    second = np.where(
        repeat,
        betaln(a + 1.0, np.maximum(b + x - 1.0, 1e-300)) - base - (r + x) * np.log(alpha + t_x),
        -np.inf,
    )
    mix = np.logaddexp(first, second)
    ll = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + mix
    p1, p2 = np.exp(first - mix), np.exp(second - mix)
    psi_abx, psi_ab = digamma(a + b + x), digamma(a + b)
    d_r = digamma(r + x) - digamma(r) + np.log(alpha) - p1 * np.log(alpha + T)
    d_r -= np.where(repeat, p2 * np.log(alpha + t_x), 0.0)
    d_alpha = r / alpha - (r + x) * (p1 / (alpha + T) + np.where(repeat, p2 / (alpha + t_x), 0.0))
    common = psi_ab - psi_abx  # in both terms' derivative w.r.t. a and b
    d_a = p1 * common + p2 * (digamma(a + 1.0) - digamma(a) + common)
    d_b = p1 * (digamma(b + x) - digamma(b) + common)
    b_second = digamma(np.maximum(b + x - 1.0, 1e-300)) - digamma(b) + common
    d_b += np.where(repeat, p2 * b_second, 0.0)
    # Chain rule to the unknowns: d/d ln alpha_i = alpha_i d/d alpha_i, and so on.
    g_alpha, g_a, g_b = alpha * d_alpha, a * d_a, b * d_b
    grad = np.concatenate(
        [
            [r * (w @ d_r), w @ g_alpha, w @ g_a, w @ g_b],
            -(z.T @ (w * g_alpha)),
            z.T @ (w * (g_a + g_b)),
        ]
    )
    return -float(w @ ll), -grad
