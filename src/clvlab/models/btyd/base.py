"""Fitting machinery shared by clvlab's BTYD models.

Every model here is fitted the same way:

1. validate the RFM table (:func:`validate_rfm`) and compress it to its distinct rows with
   counts (:func:`compress`); ``sample_weight`` multiplies the counts;
2. minimise the mean negative log-likelihood plus lifetimes' L2 penalty over the
   log-parameters with L-BFGS-B and the model's exact analytic gradient, from a data-driven
   start and, if that run fails or ends on a bound, from a few other starts
   (:func:`minimize_with_restarts`); on large data a model with an exact Hessian (BG/NBD,
   MBG/NBD) is first fitted on a subsample and then polished by Newton steps on all of it
   (:class:`FitProblem`, :func:`polish`);
3. take standard errors from the inverse Hessian of the total objective (the exact one where
   the model has it, else central differences of the gradient; :func:`standard_errors`),
   mapped to natural parameters with the delta method.

The optimizer works on ``u = log(theta) - offset``: the offset is a model-chosen scale (the
longest customer age for the time scales of the purchase models, the mean spend for
Gamma-Gamma) that makes the search box ``u in [-15, 15]`` and the start points independent of
the data's time or money unit.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np
import pandas as pd

from clvlab.errors import ConfigError, DataError

# scikit-learn and scipy.optimize are imported where they are needed (fitting, errors), not
# here: importing scikit-learn takes about half a second (it imports scipy.stats), which every
# process that only scores (`clvlab score`, each `clvlab serve` worker) would pay.
if TYPE_CHECKING:
    # To mypy the base stays what it was, scikit-learn's BaseEstimator (untyped: Any), so that
    # code typed against BTYDEstimator keeps reaching its subclasses' methods.
    from sklearn.base import BaseEstimator as _EstimatorBase
    from sklearn.exceptions import ConvergenceWarning

    class BTYDConvergenceWarning(ConvergenceWarning):
        """A clvlab BTYD fit did not converge or ended with a parameter on its search bound."""

else:
    _EstimatorBase = object

#: Box on the shifted log-parameters ``u = log(theta) - offset`` searched by the optimizer.
LOG_BOUND = 15.0
#: A shifted log-parameter this close to :data:`LOG_BOUND` counts as sitting on the bound.
_ON_BOUND_TOL = 1e-6
#: Largest projected-gradient entry (of the mean objective) accepted as converged when
#: L-BFGS-B stops for a reason other than its own convergence tests (e.g. a line search
#: that cannot make progress in floating point any more).
_ACCEPT_PGTOL = 1e-5
#: A coarse optimum's shifted log-parameter this close to :data:`LOG_BOUND` is polished on the
#: bound (a likelihood that rises towards a limiting case, e.g. GGompertz/NBD's Pareto/NBD
#: limit, leaves a coarse optimum short of it).
_NEAR_BOUND = 1.0
#: Halvings of a Newton step of the polish before it gives up.
_POLISH_HALVINGS = 6
#: Step (in log-parameter units) of the central differences giving the Hessian.
_HESSIAN_STEP = 1e-5
#: Version of :meth:`BTYDEstimator.to_dict`'s layout.
_FORMAT_VERSION = 1

#: Objective of the optimizer: log-parameters -> (value, gradient).
Objective = Callable[[np.ndarray], tuple[float, np.ndarray]]


@functools.cache
def convergence_warning() -> type[BTYDConvergenceWarning]:
    """:class:`BTYDConvergenceWarning`, a subclass of scikit-learn's ``ConvergenceWarning``:
    made on first use, so that importing the models does not import scikit-learn."""
    from sklearn.exceptions import ConvergenceWarning

    class BTYDConvergenceWarning(ConvergenceWarning):
        """A clvlab BTYD fit did not converge or ended with a parameter on its search bound."""

    BTYDConvergenceWarning.__module__ = "clvlab.models.btyd"  # where users import it from
    BTYDConvergenceWarning.__qualname__ = "BTYDConvergenceWarning"
    return BTYDConvergenceWarning


def __getattr__(name: str) -> Any:
    if name == "BTYDConvergenceWarning":
        return convergence_warning()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------


#: Columns of a customer's purchase history that the purchase models fit on.
PURCHASE_HISTORY_COLUMNS = ("frequency", "recency", "T")


def _plain(value: object) -> object:
    """A numpy scalar as the Python scalar (so messages show ``12.0``, not ``np.float64``)."""
    return value.item() if isinstance(value, np.generic) else value


def _examples(frame: pd.DataFrame, mask: np.ndarray, columns: Sequence[str], k: int = 5) -> str:
    """Up to ``k`` offending rows as ``index=..: col=value, ...``."""
    rows = frame.loc[mask, list(columns)].head(k)
    parts = []
    for label, row in rows.iterrows():
        values = ", ".join(f"{col}={_plain(row[col])!r}" for col in columns)
        parts.append(f"index {_plain(label)!r}: {values}")
    return "; ".join(parts)


def raise_for_rows(
    frame: pd.DataFrame, mask: np.ndarray, columns: Sequence[str], problem: str, fix: str
) -> None:
    """Raise :class:`~clvlab.errors.DataError` naming how many and which rows match ``mask``.

    Parameters
    ----------
    frame
        The table being validated.
    mask
        Boolean array, True on offending rows. Nothing happens when no row is True.
    columns
        Columns to show in the examples.
    problem
        What is wrong, e.g. ``"negative frequency"``.
    fix
        How to fix it.
    """
    mask = np.asarray(mask, dtype=bool)
    count = int(mask.sum())
    if count == 0:
        return
    raise DataError(
        f"{count} of {len(frame)} rows have {problem} (column "
        f"{', '.join(repr(c) for c in columns)}); e.g. {_examples(frame, mask, columns)}. {fix}"
    )


def validate_rfm(
    rfm: object, columns: Sequence[str], model: str, allow_nan: Sequence[str] = ()
) -> pd.DataFrame:
    """Check that ``rfm`` is a non-empty DataFrame with finite numeric ``columns``.

    Parameters
    ----------
    rfm
        The table passed to ``fit``.
    columns
        Required columns.
    model
        Model name for messages.
    allow_nan
        Columns whose NaN / infinite values the caller checks itself (on the rows it uses).

    Returns
    -------
    pandas.DataFrame
        ``rfm[columns]`` as float64, same index.

    Raises
    ------
    clvlab.errors.DataError
        Not a DataFrame, empty, a column missing or non-numeric, NaN or infinite values.
    """
    if not isinstance(rfm, pd.DataFrame):
        raise DataError(
            f"{model}.fit expects a pandas DataFrame with columns {list(columns)}, got "
            f"{type(rfm).__name__}; build one, e.g. with lifetimes' "
            "summary_data_from_transaction_data."
        )
    missing = [c for c in columns if c not in rfm.columns]
    if missing:
        raise DataError(
            f"{model}.fit: the RFM table lacks column(s) {missing} (it has "
            f"{list(map(str, rfm.columns))}); rename or compute them before fitting."
        )
    if len(rfm) == 0:
        raise DataError(f"{model}.fit: the RFM table has no rows; there is nothing to fit.")
    out = {}
    for col in columns:
        series = rfm[col]
        if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
            raise DataError(
                f"{model}.fit: column {col!r} has dtype {series.dtype}, not a number type; "
                "convert it with pandas.to_numeric (and fix the values that fail)."
            )
        out[col] = series.to_numpy(dtype=float, na_value=np.nan)
    table = pd.DataFrame(out, index=rfm.index)
    for col in (c for c in columns if c not in allow_nan):
        raise_for_rows(
            rfm,
            ~np.isfinite(table[col].to_numpy()),
            [col],
            "a missing (NaN) or infinite value",
            "Drop those customers or fill the values before fitting.",
        )
    return table


def validate_sample_weight(sample_weight: object, n_rows: int, model: str) -> np.ndarray:
    """Return ``sample_weight`` as a float array of length ``n_rows`` (ones when None).

    Raises
    ------
    clvlab.errors.DataError
        Wrong length, negative, NaN or infinite weights, or all weights zero.
    """
    if sample_weight is None:
        return np.ones(n_rows)
    w = np.asarray(sample_weight, dtype=float).reshape(-1)
    if w.shape[0] != n_rows:
        raise DataError(
            f"{model}.fit: sample_weight has {w.shape[0]} weights but the RFM table has "
            f"{n_rows} rows; pass one weight per row."
        )
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        where = np.flatnonzero(bad)[:5].tolist()
        raise DataError(
            f"{model}.fit: {int(bad.sum())} sample weights are negative, NaN or infinite "
            f"(positions {where}); sample_weight must be finite and >= 0."
        )
    if w.sum() <= 0:
        raise DataError(f"{model}.fit: all sample weights are zero; at least one row must count.")
    return w


#: Default of ``fit``'s deprecated ``weights`` argument, telling "not passed" from None.
WEIGHTS_NOT_PASSED = "deprecated"


def renamed_sample_weight(sample_weight: object, weights: object, model: str) -> object:
    """``sample_weight``, or the value of its deprecated name ``weights`` if that was passed.

    ``fit``'s ``weights`` was renamed ``sample_weight`` (scikit-learn's name); the old name
    works, with a FutureWarning, for one more release.

    Raises
    ------
    clvlab.errors.ConfigError
        Both names were passed.
    """
    if isinstance(weights, str) and weights == WEIGHTS_NOT_PASSED:
        return sample_weight
    if sample_weight is not None:
        raise ConfigError(
            f"{model}.fit: pass the weights as sample_weight only; weights is its deprecated name."
        )
    warnings.warn(
        f"{model}.fit: the weights argument is deprecated and will be removed in the next "
        "release; use sample_weight instead.",
        FutureWarning,
        stacklevel=3,
    )
    return weights


def check_frequency(frame: pd.DataFrame, column: str = "frequency") -> None:
    """Raise DataError unless ``frame[column]`` holds non-negative whole numbers."""
    x = frame[column].to_numpy()
    raise_for_rows(
        frame,
        x < 0,
        [column],
        "a negative frequency",
        "frequency counts repeat purchases and must be >= 0; fix or drop those rows.",
    )
    raise_for_rows(
        frame,
        x != np.round(x),
        [column],
        "a non-integer frequency",
        "frequency counts repeat purchases; round it or rebuild the RFM table.",
    )


def validate_purchase_history(rfm: object, model: str) -> pd.DataFrame:
    """Validated float copy of the ``frequency, recency, T`` columns of ``rfm``.

    The checks every purchase-and-dropout model needs: the columns exist and are finite,
    frequency is a whole number >= 0, 0 <= recency <= T, and recency is 0 without repeat
    purchases; ``model`` names the estimator in the error messages.
    """
    table = validate_rfm(rfm, PURCHASE_HISTORY_COLUMNS, model)
    check_frequency(table)
    x, t_x, age = (table[c].to_numpy() for c in PURCHASE_HISTORY_COLUMNS)
    raise_for_rows(
        table,
        t_x < 0,
        ["recency"],
        "a negative recency",
        "recency is the time from the first to the last purchase; fix or drop those rows.",
    )
    raise_for_rows(
        table,
        t_x > age,
        ["recency", "T"],
        "recency larger than T",
        "the last purchase cannot be after the end of observation; recompute recency and T "
        "with one observation end and one time unit.",
    )
    raise_for_rows(
        table,
        (x == 0) & (t_x != 0),
        ["frequency", "recency"],
        "recency > 0 with frequency 0",
        "recency is the time of the last repeat purchase, so it is 0 without repeat purchases; "
        "recompute the RFM table (lifetimes' convention).",
    )
    return table


def as_float_arrays(**arrays: object) -> list[np.ndarray]:
    """Broadcast the named scalars/arrays to float arrays of one shape.

    Raises
    ------
    clvlab.errors.DataError
        An input cannot be converted or broadcast, or holds NaN / infinite values.
    """
    converted = []
    for name, value in arrays.items():
        try:
            arr = np.asarray(value, dtype=float)
        except (TypeError, ValueError) as err:
            raise DataError(f"{name} must be numeric: {err}") from err
        converted.append(arr)
    out = converted
    if any(a.shape != converted[0].shape for a in converted):  # else nothing to broadcast
        try:
            out = [np.array(a) for a in np.broadcast_arrays(*converted)]
        except ValueError as err:
            shapes = {name: np.shape(a) for name, a in zip(arrays, converted, strict=True)}
            raise DataError(f"inputs of shapes {shapes} cannot be broadcast together") from err
    for name, arr in zip(arrays, out, strict=True):
        if not np.isfinite(arr).all():
            raise DataError(
                f"{name} has {int((~np.isfinite(arr)).sum())} NaN or infinite value(s); "
                "drop or fill them before predicting."
            )
    return out


def check_nonnegative(**arrays: np.ndarray) -> None:
    """Raise DataError if any of the named arrays has a negative entry."""
    for name, arr in arrays.items():
        if (arr < 0).any():
            raise DataError(
                f"{name} has {int((arr < 0).sum())} negative value(s), e.g. "
                f"{arr[arr < 0][:5].tolist()}; it must be >= 0."
            )


# --------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------


@dataclass
class CompressedRows:
    """Distinct rows of some columns, with the summed weight of each.

    Attributes
    ----------
    codes
        Per column, the code of each distinct row's value: ``values[j][codes[j]]`` is
        column ``j`` of the distinct rows.
    values
        Per column, the values the codes refer to.
    counts
        Summed weight of each distinct row (all > 0).
    """

    codes: list[np.ndarray]
    values: list[np.ndarray]
    counts: np.ndarray

    def column(self, j: int) -> np.ndarray:
        """Column ``j`` of the distinct rows."""
        return self.values[j][self.codes[j]]

    def subset(self, keep: np.ndarray, counts: np.ndarray) -> CompressedRows:
        """The rows selected by ``keep``, with new ``counts`` (one per selected row)."""
        return CompressedRows([c[keep] for c in self.codes], self.values, counts)


def history_arrays(
    frequency: object, recency: object, T: object, **leading: object
) -> list[np.ndarray]:
    """Validated float arrays of ``leading`` (e.g. ``n``, ``t``) and a customer history, for
    predictions: finite, broadcast, >= 0, and recency <= T."""
    names = {**leading, "frequency": frequency, "recency": recency, "T": T}
    arrays = as_float_arrays(**names)
    check_nonnegative(**dict(zip(names, arrays, strict=True)))
    t_x, age = arrays[-2:]
    if (t_x > age).any():
        raise DataError(
            f"recency exceeds T for {int((t_x > age).sum())} customer(s); recency is the "
            "time of the last purchase and cannot be after the end of observation."
        )
    return arrays


def times_since_first_purchase(t: object) -> np.ndarray:
    """``t`` as a validated float array (finite, >= 0), for new-customer predictions."""
    (horizon,) = as_float_arrays(t=t)
    check_nonnegative(t=horizon)
    return horizon


def purchase_histories_to_fit(
    rfm: object, sample_weight: object, model: str, unidentified: str
) -> tuple[CompressedRows, float]:
    """The validated, compressed ``frequency, recency, T`` rows of ``rfm`` and the time
    scale of the fit (the longest age ``max(T)``, 1 when it is 0).

    Warns (BTYDConvergenceWarning) when no customer made a repeat purchase: then
    ``unidentified`` (the parameters named in the warning) are not identified.
    """
    table = validate_purchase_history(rfm, model)
    w = validate_sample_weight(sample_weight, len(table), model)
    rows = compress([table[c].to_numpy() for c in PURCHASE_HISTORY_COLUMNS], w)
    if not (rows.column(0) > 0).any():
        warnings.warn(
            f"clvlab {model}: no customer made a repeat purchase (frequency is 0 "
            f"everywhere), so {unidentified} are not identified and the purchase rate is "
            "pushed towards 0; predictions will say 'no more purchases'. Fit on a longer "
            "period or more customers.",
            convergence_warning(),
            stacklevel=3,
        )
    max_age = float(table["T"].max())
    return rows, max_age if max_age > 0 else 1.0


def compress(columns: Sequence[np.ndarray], sample_weight: np.ndarray) -> CompressedRows:
    """Collapse identical rows into one row each with the summed weight as its count.

    Small whole numbers (e.g. days) are their own codes; other values are hash-factorized;
    then the combined codes are factorized: nothing is sorted. Rows come in order of first
    appearance; rows with a zero total weight are dropped.
    """
    weights = np.asarray(sample_weight, dtype=float)
    key = np.zeros(len(weights), dtype=np.int64)
    size = 1
    all_codes: list[np.ndarray] = []
    all_values: list[np.ndarray] = []
    for column in columns:
        values = np.asarray(column, dtype=float)
        if len(values) and values.min() >= 0 and values.max() < 2**16 and _whole(values):
            codes = values.astype(np.int64)
            found = np.arange(float(codes.max()) + 1.0)
        else:
            codes, found = pd.factorize(values)
            found = np.asarray(found, dtype=float)
        if size * len(found) >= 2**62:  # keep the combined code in int64
            key, first = pd.factorize(key)
            size = len(first)
        key = key * len(found) + codes
        size *= len(found)
        all_codes.append(codes)
        all_values.append(found)
    inverse, distinct = pd.factorize(key)
    counts = np.bincount(inverse, weights=weights, minlength=len(distinct))
    representative = np.empty(len(distinct), dtype=np.int64)
    representative[inverse] = np.arange(len(inverse))  # any row of a group has its codes
    representative = representative[counts > 0]
    return CompressedRows([c[representative] for c in all_codes], all_values, counts[counts > 0])


def compress_rows(
    columns: Sequence[np.ndarray], sample_weight: np.ndarray
) -> tuple[np.ndarray, ...]:
    """Collapse identical rows into one row each with the summed weight as its count.

    Parameters
    ----------
    columns
        Equal-length 1-D arrays (e.g. frequency, recency, T).
    sample_weight
        Weight of every row.

    Returns
    -------
    tuple of numpy.ndarray
        The distinct values of each column followed by the counts, rows with a zero count
        dropped, in order of first appearance.
    """
    rows = compress(columns, sample_weight)
    return (*(rows.column(j) for j in range(len(rows.codes))), rows.counts)


def _whole(values: np.ndarray) -> bool:
    """Whether every value is a whole number."""
    return bool(np.array_equal(values, np.floor(values)))


@dataclass
class FitProblem:
    """What the shared optimizer needs to fit one model to one data set.

    Attributes
    ----------
    nll
        Total (weighted) negative log-likelihood and its gradient, both as functions of the
        natural log-parameters ``log(theta)``.
    total_weight
        Sum of the weights (the number of customers when unweighted); the optimizer
        minimises ``nll / total_weight`` so that its tolerances do not depend on data size.
    log_offset
        ``log(theta) = u + log_offset``; the optimizer searches ``u`` in the box
        ``[-LOG_BOUND, LOG_BOUND]``.
    penalty_scale
        lifetimes' penalty is ``penalizer_coef * sum((theta * penalty_scale) ** 2)``; the scale
        is 1 except where lifetimes penalises a parameter in rescaled units (BG/NBD's alpha).
    starts
        Start points in ``u``; the first is tried first, the others only when needed.
    hessian
        Optional: the total NLL, its gradient and its Hessian w.r.t. ``log(theta)``. With it
        the standard errors use this Hessian, and a ``coarse`` version with one can be used.
    coarse
        Optional: the same model on a random subsample of the data (:func:`thin_counts`).
        For large data the fit first solves this cheap problem and then polishes its
        optimum on the full data with Newton steps from its Hessian (:func:`polish`); when
        that fails, the full problem is solved from scratch.
    """

    nll: Objective
    total_weight: float
    log_offset: np.ndarray
    penalty_scale: np.ndarray
    starts: list[np.ndarray] = field(default_factory=list)
    hessian: Callable[[np.ndarray], tuple[float, np.ndarray, np.ndarray]] | None = None
    coarse: FitProblem | None = None


@dataclass
class FitResult:
    """Outcome of :func:`minimize_with_restarts`."""

    log_params: np.ndarray
    objective: float
    converged: bool
    n_iter: int
    on_bound: np.ndarray
    message: str


def penalized_objective(problem: FitProblem, penalizer_coef: float) -> Objective:
    """The optimizer's objective in ``u``: mean NLL + lifetimes' L2 penalty.

    ``f(u) = NLL(theta) / W + c * sum((theta_k s_k)^2)`` with ``theta = exp(u + offset)``,
    ``W`` the total weight, ``c`` the penalizer coefficient and ``s`` the penalty scale;
    its gradient is ``grad_NLL / W + 2 c (theta s)^2`` (derivatives w.r.t. ``log theta``).
    """

    def objective(u: np.ndarray) -> tuple[float, np.ndarray]:
        log_theta = np.asarray(u, dtype=float) + problem.log_offset
        value, grad = problem.nll(log_theta)
        scaled = np.exp(log_theta) * problem.penalty_scale
        value = value / problem.total_weight + penalizer_coef * float(np.sum(scaled**2))
        grad = grad / problem.total_weight + 2.0 * penalizer_coef * scaled**2
        if not np.isfinite(value):
            # Let the line search back off instead of crashing on an overflow.
            return math.inf, np.zeros_like(grad)
        return value, grad

    return objective


def _projected_gradient(u: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """Gradient with the components that push out of the box at an active bound zeroed."""
    pg = grad.copy()
    at_lower = u <= -LOG_BOUND + _ON_BOUND_TOL
    at_upper = u >= LOG_BOUND - _ON_BOUND_TOL
    pg[at_lower & (grad > 0)] = 0.0
    pg[at_upper & (grad < 0)] = 0.0
    return pg


def _run_lbfgsb(
    objective: Objective, start: np.ndarray, held: np.ndarray | None = None
) -> FitResult:
    """One L-BFGS-B run from ``start``; parameters ``held`` stay where they start."""
    from scipy.optimize import minimize

    x0 = np.clip(np.asarray(start, dtype=float), -LOG_BOUND, LOG_BOUND)
    fixed = np.zeros(len(x0), dtype=bool) if held is None else held
    bounds = [(v, v) if f else (-LOG_BOUND, LOG_BOUND) for v, f in zip(x0, fixed, strict=True)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = minimize(
            objective,
            x0,
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": 2000, "ftol": 1e-13, "gtol": 1e-9, "maxcor": 20},
        )
    u = np.asarray(res.x, dtype=float)
    value, grad = objective(u)
    pg = _projected_gradient(u, grad)
    converged = bool(np.isfinite(value)) and (
        bool(res.success) or float(np.max(np.abs(pg))) < _ACCEPT_PGTOL
    )
    on_bound = np.abs(u) >= LOG_BOUND - _ON_BOUND_TOL
    return FitResult(u, float(value), converged, int(res.nit), on_bound, str(res.message))


def evaluate_at(objective: Objective, u: np.ndarray) -> FitResult:
    """A :class:`FitResult` at given shifted log-parameters, without optimising: converged
    when the projected gradient there is as small as :func:`minimize_with_restarts` accepts."""
    value, grad = objective(u)
    pg = _projected_gradient(u, grad)
    converged = bool(np.isfinite(value)) and float(np.max(np.abs(pg))) < _ACCEPT_PGTOL
    on_bound = np.abs(u) >= LOG_BOUND - _ON_BOUND_TOL
    return FitResult(u, float(value), converged, 0, on_bound, "parameters given, not optimised")


def minimize_with_restarts(objective: Objective, starts: Sequence[np.ndarray]) -> FitResult:
    """Minimise ``objective`` from ``starts[0]``; retry from the other starts if needed.

    A run is good when it converged with no parameter on a bound. The first good run is
    returned; otherwise the run with the lowest objective (preferring converged runs).
    """
    results: list[FitResult] = []
    for start in starts:
        result = _run_lbfgsb(objective, start)
        results.append(result)
        if result.converged and not result.on_bound.any():
            return result
    return min(results, key=lambda r: (not np.isfinite(r.objective), r.objective, not r.converged))


def thin_counts(counts: np.ndarray, target: float, seed: int = 0) -> np.ndarray | None:
    """Poisson-thinned counts with a total of about ``target``, or None when the data are
    not much larger than that (a coarse problem would not save time).

    The seed is fixed, so that a fit is reproducible.
    """
    total = float(counts.sum())
    if total <= 4.0 * target:
        return None
    return np.random.default_rng(seed).poisson(counts * (target / total)).astype(float)


#: Most threads of :func:`likelihood_threads`.
MAX_LIKELIHOOD_THREADS = 4


@functools.cache
def likelihood_threads() -> ThreadPoolExecutor:
    """Threads (one per core, at most :data:`MAX_LIKELIHOOD_THREADS`) for the per-history
    sums of large likelihoods, in chunks of rows: NumPy releases the GIL in its loops."""
    return ThreadPoolExecutor(max_workers=min(os.cpu_count() or 1, MAX_LIKELIHOOD_THREADS))


def coarse_to_fine(
    problem_for: Callable[[CompressedRows], FitProblem], rows: CompressedRows, customers: float
) -> FitProblem:
    """``problem_for(rows)``, with the same problem on a Poisson-thinned subsample of about
    ``customers`` as its ``coarse`` version when the data are much larger (see
    :class:`FitProblem`)."""
    problem = problem_for(rows)
    thinned = thin_counts(rows.counts, customers)
    if thinned is not None:
        problem.coarse = problem_for(rows.subset(thinned > 0, thinned[thinned > 0]))
    return problem


def forward_difference_hessian(
    nll: Objective, step: float = 1e-6
) -> Callable[[np.ndarray], tuple[float, np.ndarray, np.ndarray]]:
    """A :attr:`FitProblem.hessian` from an exact gradient: the value, the gradient and the
    symmetrised forward differences of the gradient (one more gradient per parameter; the
    standard errors come out to about 6 digits)."""

    def hessian(log_theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        value, grad = nll(log_theta)
        rows = np.array([(nll(log_theta + d)[1] - grad) / step for d in np.eye(len(grad)) * step])
        return value, grad, 0.5 * (rows + rows.T)

    return hessian


def polish(
    problem: FitProblem,
    penalizer_coef: float,
    start: np.ndarray,
    held: np.ndarray | None = None,
) -> FitResult | None:
    """Newton steps on ``problem`` from ``start``, a point close to its optimum (the optimum
    of ``problem.coarse``, in the coarse problem's ``u``).

    The first Newton step uses the coarse problem's Hessian at ``start`` (per unit of weight,
    that of the whole data up to sampling error, at a fraction of the cost), which BFGS then
    updates from the steps taken: each step costs one gradient, and convergence is
    superlinear. A step that leaves the search box or does not decrease the objective is
    halved. Parameters ``held`` (those the coarse optimum has at or near a search bound: a
    model's limiting case, which a flat likelihood approaches only slowly) are put on that
    bound and stay there; the result is converged only if the gradient then pushes each of
    them out of the box (the bound is active). Returns None (so that the caller optimises
    from scratch) if the coarse problem has no Hessian, every parameter is held, the Hessian is
    not positive definite, no halving of a step decreases the objective or 50 steps do not
    converge.
    """
    coarse = problem.coarse
    if coarse is None or coarse.hessian is None:
        return None
    objective = penalized_objective(problem, penalizer_coef)
    u = np.asarray(start, dtype=float) + coarse.log_offset - problem.log_offset
    held = np.zeros(len(u), dtype=bool) if held is None else np.asarray(held, dtype=bool)
    u[held] = np.sign(u[held]) * LOG_BOUND
    free = np.flatnonzero(~held)
    if free.size == 0:
        return None
    log_theta = u + problem.log_offset
    value, grad = objective(u)
    scaled = np.exp(log_theta) * problem.penalty_scale
    coarse_hess = coarse.hessian(log_theta)[2] / coarse.total_weight
    hess = (coarse_hess + 4.0 * penalizer_coef * np.diag(scaled**2))[np.ix_(free, free)]
    if not np.all(np.linalg.eigvalsh(hess) > 0):
        return None
    for iteration in range(1, 51):
        step = np.linalg.solve(hess, grad[free])
        # The full step, else halved until it stays inside the bounds and decreases the
        # objective (a flat ridge towards a limiting case can make the first steps too long).
        for _ in range(_POLISH_HALVINGS):
            trial = u.copy()
            trial[free] -= step
            if np.all(np.abs(trial[free]) < LOG_BOUND - _ON_BOUND_TOL):
                trial_value, trial_grad = objective(trial)
                if trial_value <= value + 1e-12 * abs(value):
                    break
            step = 0.5 * step
        else:
            return None
        # BFGS update of the Hessian with the step taken: superlinear convergence.
        s, y = -step, trial_grad[free] - grad[free]
        hess_s = hess @ s
        if y @ s > 0:
            hess = hess + np.outer(y, y) / (y @ s) - np.outer(hess_s, hess_s) / (s @ hess_s)
        u, value, grad = trial, trial_value, trial_grad
        if float(np.max(np.abs(step))) < 1e-8:
            pg = float(np.max(np.abs(_projected_gradient(u, grad))))
            return FitResult(u, value, pg < _ACCEPT_PGTOL, iteration, held, "Newton polish")
    return None


def minimize_problem(problem: FitProblem, penalizer_coef: float) -> FitResult:
    """Minimise the penalized objective of ``problem``: coarse-to-fine when it has a coarse
    version (see :class:`FitProblem`), else L-BFGS-B with restarts."""
    objective = penalized_objective(problem, penalizer_coef)
    if problem.coarse is None:
        return minimize_with_restarts(objective, problem.starts)
    rough = minimize_problem(problem.coarse, penalizer_coef)
    if rough.converged:
        near_bound = np.abs(rough.log_params) >= LOG_BOUND - _NEAR_BOUND
        start = rough.log_params
        if near_bound.any():  # the coarse optimum with those on the bound (cheap) is polished
            on_bound = np.where(near_bound, np.sign(start) * LOG_BOUND, start)
            coarse_objective = penalized_objective(problem.coarse, penalizer_coef)
            start = _run_lbfgsb(coarse_objective, on_bound, held=near_bound).log_params
        polished = polish(problem, penalizer_coef, start, held=near_bound)
        if polished is not None and polished.converged:
            return polished
    start = rough.log_params + problem.coarse.log_offset - problem.log_offset
    return minimize_with_restarts(objective, [start, *problem.starts])


def numerical_hessian(grad: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
    """Symmetrised central-difference Jacobian of the analytic gradient ``grad`` at ``x``."""
    k = len(x)
    hess = np.empty((k, k))
    for i in range(k):
        step = np.zeros(k)
        step[i] = _HESSIAN_STEP
        hess[i] = (grad(x + step) - grad(x - step)) / (2.0 * _HESSIAN_STEP)
    return 0.5 * (hess + hess.T)


def covariance(hess_log: np.ndarray, params: np.ndarray, free: np.ndarray) -> np.ndarray:
    """Covariance matrix of the natural parameters from the Hessian in log-parameters.

    ``Cov(log theta) = H^-1`` over the free parameters; the delta method gives
    ``Cov(theta_j, theta_k) = theta_j theta_k Cov(log theta_j, log theta_k)``. The rows and
    columns of parameters on a bound, and all of them when the free block of ``H`` is
    singular or not positive definite, are NaN.
    """
    cov = np.full((len(params), len(params)), np.nan)
    idx = np.flatnonzero(free)
    if idx.size == 0:
        return cov
    block = hess_log[np.ix_(idx, idx)]
    if not np.isfinite(block).all():
        return cov
    eigvals = np.linalg.eigvalsh(block)
    if eigvals.min() <= 1e-10 * max(eigvals.max(), 1e-300):
        return cov
    scale = params[idx]
    cov[np.ix_(idx, idx)] = np.linalg.inv(block) * np.outer(scale, scale)
    return cov


def standard_errors(cov: np.ndarray) -> np.ndarray:
    """Standard errors (the square roots of :func:`covariance`'s diagonal; NaN where it is
    NaN or not positive)."""
    var = np.diag(cov)
    return np.where(var > 0, np.sqrt(np.abs(var)), np.nan)


# --------------------------------------------------------------------------------------
# Estimator base class
# --------------------------------------------------------------------------------------


def _nan_to_none(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)


class BTYDEstimator(_EstimatorBase):
    """Base of clvlab's BTYD estimators: fitting, fitted-state checks and serialization.

    They keep scikit-learn's estimator contract (settings in the constructor,
    ``get_params``/``set_params``, ``sklearn.base.clone``, the learned state in attributes
    ending in ``_``) without deriving from ``sklearn.base.BaseEstimator``, whose import costs
    every scoring process half a second.

    Parameters
    ----------
    penalizer_coef : float, default 0.0
        Coefficient of lifetimes' L2 penalty ``penalizer_coef * sum(params ** 2)`` added to
        the mean negative log-likelihood.

    Attributes
    ----------
    params_ : pandas.Series
        Fitted parameters.
    log_likelihood_ : float
        Total log-likelihood of the data at ``params_`` (sample weights applied, no
        penalty).
    stderr_ : pandas.Series
        Standard errors of ``params_``: square roots of the diagonal of the inverse Hessian
        of the total negative log-likelihood (plus the penalty times the total weight, when
        penalized) w.r.t. the log-parameters, times the parameters (delta method). NaN
        where the Hessian is singular or a parameter is on its search bound.
    covariance_ : pandas.DataFrame
        The covariance matrix of ``params_`` whose diagonal ``stderr_`` is the root of (the
        inverse Hessian in log-parameters, scaled by the parameters); NaN in the rows and
        columns of parameters without a standard error. Score intervals draw parameters from
        it (:mod:`clvlab.intervals`). None for a model saved without it (by an earlier clvlab).
    converged_ : bool
        Whether the optimizer converged.
    n_iter_ : int
        Optimizer iterations of the retained run.
    """

    #: Names of the parameters, in the order used internally.
    PARAM_NAMES: ClassVar[tuple[str, ...]] = ()
    covariance_: pd.DataFrame | None

    def __init__(self, penalizer_coef: float = 0.0) -> None:
        self.penalizer_coef = penalizer_coef

    # -- scikit-learn's estimator contract ---------------------------------------------

    @classmethod
    def _init_parameters(cls) -> list[inspect.Parameter]:
        """The constructor's parameters, sorted by name (as scikit-learn lists them)."""
        parameters = inspect.signature(cls.__init__).parameters.values()
        return sorted(
            (p for p in parameters if p.name != "self" and p.kind != p.VAR_KEYWORD),
            key=lambda p: p.name,
        )

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The settings the estimator was constructed with, by name (scikit-learn's
        ``get_params``; these estimators hold no nested estimators, so ``deep`` changes
        nothing)."""
        return {p.name: getattr(self, p.name) for p in self._init_parameters()}

    def set_params(self, **params: Any) -> Self:
        """Change settings by name (scikit-learn's ``set_params``); returns ``self``."""
        valid = [p.name for p in self._init_parameters()]
        for name, value in params.items():
            if name not in valid:
                raise ValueError(
                    f"Invalid parameter {name!r} for estimator {self}. Valid parameters are: "
                    f"{valid!r}."
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        """The class and the settings that differ from their defaults, as scikit-learn
        shows an estimator: ``BetaGeo(penalizer_coef=0.1)``."""
        changed = [
            f"{p.name}={getattr(self, p.name)!r}"
            for p in self._init_parameters()
            if p.default is p.empty or repr(getattr(self, p.name)) != repr(p.default)
        ]
        return f"{type(self).__name__}({', '.join(changed)})"

    # -- fitting ---------------------------------------------------------------------

    def _check_penalizer(self) -> float:
        coef = self.penalizer_coef
        if isinstance(coef, bool) or not isinstance(coef, numbers.Real) or not coef >= 0:
            raise ConfigError(
                f"{type(self).__name__}: penalizer_coef must be a number >= 0, got {coef!r}."
            )
        if not math.isfinite(coef):
            raise ConfigError(f"{type(self).__name__}: penalizer_coef must be finite.")
        return float(coef)

    def _fit_problem(self, problem: FitProblem, at: Mapping[str, float] | None = None) -> None:
        """Optimise ``problem`` and store the fitted state on ``self``.

        With ``at`` (parameters by name, e.g. another engine's optimum) nothing is optimised:
        the fitted state (log-likelihood, standard errors, bound checks) is that at ``at``.
        """
        coef = self._check_penalizer()
        objective = penalized_objective(problem, coef)
        if at is None:
            # L-BFGS-B and the likelihoods make many small BLAS calls (dot products of
            # per-history vectors); with a multi-threaded BLAS their thread hand-offs cost
            # more than the arithmetic.
            from threadpoolctl import threadpool_limits

            with threadpool_limits(limits=1, user_api="blas"):
                result = minimize_problem(problem, coef)
        else:
            result = evaluate_at(objective, self._log_params(at) - problem.log_offset)
        log_theta = result.log_params + problem.log_offset
        params = np.exp(log_theta)
        if problem.hessian is not None:
            nll, _, hess = problem.hessian(log_theta)
            scaled = params * problem.penalty_scale
            hess = hess + 4.0 * coef * problem.total_weight * np.diag(scaled**2)
        else:
            nll, _ = problem.nll(log_theta)

            def total_grad(u: np.ndarray) -> np.ndarray:
                return objective(u)[1] * problem.total_weight

            hess = numerical_hessian(total_grad, result.log_params)
        cov = covariance(hess, params, ~result.on_bound)
        se = standard_errors(cov)

        names = list(self.PARAM_NAMES)
        self.params_ = pd.Series(params, index=names, name="params", dtype=float)
        self.stderr_ = pd.Series(se, index=names, name="stderr", dtype=float)
        self.covariance_ = pd.DataFrame(cov, index=names, columns=names, dtype=float)
        self.log_likelihood_ = float(-nll)
        self.converged_ = bool(result.converged)
        self.n_iter_ = int(result.n_iter)
        self._warn_if_bad(result, np.isnan(se) & ~result.on_bound)

    def _warn_if_bad(self, result: FitResult, singular: np.ndarray) -> None:
        name = type(self).__name__
        if not result.converged:
            warnings.warn(
                f"clvlab {name}: the optimizer did not converge ({result.message}); the "
                f"parameters {self._params_text()} may not maximise the likelihood. Try a "
                "small penalizer_coef (e.g. 0.001) or check the RFM table.",
                convergence_warning(),
                stacklevel=4,
            )
        if result.on_bound.any():
            stuck = [n for n, b in zip(self.PARAM_NAMES, result.on_bound, strict=True) if b]
            warnings.warn(
                f"clvlab {name}: parameter(s) {stuck} ended on the edge of the search range "
                f"({self._params_text()}): the data hardly identify them (e.g. too few repeat "
                "buyers), so predictions may be unreliable and their standard errors are NaN. "
                "Use more data or a penalizer_coef > 0.",
                convergence_warning(),
                stacklevel=4,
            )
        if singular.any():
            unclear = [n for n, u in zip(self.PARAM_NAMES, singular, strict=True) if u]
            warnings.warn(
                f"clvlab {name}: the Hessian of the log-likelihood is singular at the optimum "
                f"({self._params_text()}), so the data do not identify {unclear} and their "
                "standard errors are NaN (e.g. no or very few repeat buyers). Use more data or "
                "a penalizer_coef > 0.",
                convergence_warning(),
                stacklevel=4,
            )

    def _params_text(self) -> str:
        return ", ".join(f"{k}={v:.4g}" for k, v in self.params_.items())

    def _log_params(self, params: Mapping[str, float]) -> np.ndarray:
        missing = [name for name in self.PARAM_NAMES if name not in params]
        values = [float(params[name]) for name in self.PARAM_NAMES if name in params]
        if missing or not all(math.isfinite(v) and v > 0 for v in values):
            raise ConfigError(
                f"{type(self).__name__}: parameters {dict(params)} must give positive, finite "
                f"values for all of {list(self.PARAM_NAMES)}."
            )
        return np.log(values)

    # -- fitted state ------------------------------------------------------------------

    def _fitted_params(self) -> tuple[float, ...]:
        """The fitted parameters as floats, in :attr:`PARAM_NAMES` order."""
        params = getattr(self, "params_", None)
        if params is None:  # check_is_fitted's error, without its cost (many calls a score)
            from sklearn.exceptions import NotFittedError

            raise NotFittedError(
                f"This {type(self).__name__} is not fitted yet; call fit(rfm) or "
                "from_dict(...) before predicting."
            )
        # Read once per fitted params_ (a score asks dozens of times; a lookup in a Series
        # costs microseconds), again whenever params_ is another object.
        cached = self.__dict__.get("_fitted_params_cache")
        if cached is None or cached[0] is not params:
            values = tuple(float(params[name]) for name in self.PARAM_NAMES)
            cached = self.__dict__["_fitted_params_cache"] = (params, values)
        return cached[1]

    def to_dict(self) -> dict[str, Any]:
        """Settings and learned state as a JSON-serializable dict.

        Returns
        -------
        dict
            ``model``, ``format_version``, ``penalizer_coef`` and, once fitted, ``params``,
            ``stderr`` (NaN as None), ``log_likelihood``, ``converged`` and ``n_iter``.
        """
        out: dict[str, Any] = {
            "model": type(self).__name__,
            "format_version": _FORMAT_VERSION,
            "penalizer_coef": float(self.penalizer_coef),
            "fitted": hasattr(self, "params_"),
        }
        if out["fitted"]:
            out["params"] = {k: float(v) for k, v in self.params_.items()}
            out["stderr"] = {k: _nan_to_none(v) for k, v in self.stderr_.items()}
            cov = getattr(self, "covariance_", None)
            if cov is not None:
                out["covariance"] = [[_nan_to_none(v) for v in row] for row in cov.to_numpy()]
            out["log_likelihood"] = float(self.log_likelihood_)
            out["converged"] = bool(self.converged_)
            out["n_iter"] = int(self.n_iter_)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        """Rebuild an estimator from :meth:`to_dict`'s output.

        Parameters
        ----------
        d
            A dict produced by ``to_dict`` (possibly after a JSON round trip).

        Returns
        -------
        BTYDEstimator
            An instance of ``cls``, fitted if ``d`` holds parameters.

        Raises
        ------
        clvlab.errors.ConfigError
            ``d`` describes another model, a newer format or lacks parameters.
        """
        if not isinstance(d, dict) or d.get("model") != cls.__name__:
            found = d.get("model") if isinstance(d, dict) else type(d).__name__
            raise ConfigError(
                f"{cls.__name__}.from_dict: expected a {cls.__name__} dict, got {found!r}."
            )
        if int(d.get("format_version", 0)) > _FORMAT_VERSION:
            raise ConfigError(
                f"{cls.__name__}.from_dict: format_version {d['format_version']} is newer than "
                f"this clvlab understands ({_FORMAT_VERSION}); upgrade clvlab."
            )
        model = cls(penalizer_coef=float(d.get("penalizer_coef", 0.0)))
        if not d.get("fitted", "params" in d):
            return model
        params = d.get("params") or {}
        missing = [n for n in cls.PARAM_NAMES if n not in params]
        if missing:
            raise ConfigError(f"{cls.__name__}.from_dict: params lack {missing}.")
        names = list(cls.PARAM_NAMES)
        values = {n: float(params[n]) for n in names}
        bad = [n for n, v in values.items() if not (math.isfinite(v) and v > 0)]
        if bad:
            raise ConfigError(
                f"{cls.__name__}.from_dict: params {bad} must be finite and > 0, got "
                f"{ {n: values[n] for n in bad} }."
            )
        stderr = d.get("stderr") or {}
        model.params_ = pd.Series(
            [values[n] for n in names], index=names, name="params", dtype=float
        )
        model.stderr_ = pd.Series(
            [np.nan if stderr.get(n) is None else float(stderr[n]) for n in names],
            index=names,
            name="stderr",
            dtype=float,
        )
        model.covariance_ = None
        if d.get("covariance") is not None:
            rows = [[np.nan if v is None else float(v) for v in row] for row in d["covariance"]]
            if np.shape(rows) != (len(names), len(names)):
                raise ConfigError(
                    f"{cls.__name__}.from_dict: covariance must be a {len(names)} x "
                    f"{len(names)} matrix (parameters {names}), got shape {np.shape(rows)}."
                )
            model.covariance_ = pd.DataFrame(rows, index=names, columns=names, dtype=float)
        model.log_likelihood_ = float(d.get("log_likelihood", np.nan))
        model.converged_ = bool(d.get("converged", True))
        model.n_iter_ = int(d.get("n_iter", 0))
        return model
