"""Gradient-boosted predictors of purchases, revenue and churn over a fixed horizon.

:class:`GBMPredictor` trains three LightGBM models on rolling origins (see
:mod:`clvlab.features.windows`): the features at each as-of date, labelled with what happened
in the ``horizon_days`` after it. It is trained for exactly one horizon and predicts for that
horizon only.

- purchases: expected purchase days in the horizon, Poisson objective;
- revenue: expected revenue in the horizon, Tweedie objective (not for count-only data);
- churn: probability of no purchase in the horizon, binary objective, Platt-calibrated.

The latest origin is held out for early stopping (and the churn calibration); the models are
then refit on all origins with the number of trees found, so the most recent behaviour is
learnt too. ``fit(..., targets=...)`` trains only some of the three (a scoring model whose
GBM is the champion of churn alone needs no purchases or revenue booster); the others are
then NaN in :meth:`GBMPredictor.predict`. Seeds are fixed and LightGBM runs in
deterministic mode: the same data give the same model.

Each booster starts from a baseline and learns a correction to it (LightGBM's init score):
trees cannot extrapolate, and at scoring time customers are older and have more purchases than
at any training origin, so a tree model alone would flatten out where the baseline does not.
The baseline of purchases is a BTYD purchase model's expected purchases (the hybrid, below)
or, without it, the customer's past rate times the horizon; churn starts from the matching
probability of no purchase, revenue from expected purchases times the mean spend.

As a hybrid, a BTYD purchase model fitted at each origin (on the history up to it) adds its
own predictions as features: ``btyd_expected_purchases``, ``btyd_p_churn`` (for the horizon)
and ``btyd_p_alive``. For scoring, the BTYD model fitted at the end of the training data is
kept.
"""

from __future__ import annotations

import inspect
import os
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from clvlab.config import GBMConfig
from clvlab.data.io import CUSTOMER_ID
from clvlab.errors import ClvlabError, DataError
from clvlab.features.windows import (
    ORIGIN,
    PurchaseDays,
    rolling_origins,
    stacked_examples,
    window_features,
)
from clvlab.models.btyd import PURCHASE_MODELS, BTYDEstimator, estimator_from_dict

if TYPE_CHECKING:
    import lightgbm as lgb

#: The targets and their LightGBM objectives.
TARGETS = {"purchases": "poisson", "revenue": "tweedie", "churn": "binary"}
#: The run config's GBM settings hold the defaults (one source for both).
_DEFAULTS = GBMConfig()
_HYBRID = ("btyd_expected_purchases", "btyd_p_alive", "btyd_p_churn")
#: Floors of the baselines' logs: a customer never gets a zero baseline rate or spend.
_MIN_PURCHASES, _MIN_SPEND = 1e-3, 1e-2
#: Training rows per LightGBM thread: smaller data train on fewer threads (see ``_train``).
_ROWS_PER_THREAD = 100_000


class InsufficientHistoryError(ClvlabError):
    """The data are too short to train a GBM for the requested horizon."""


class GBMPredictor:
    """LightGBM predictors of purchases, revenue and churn within one horizon.

    Parameters
    ----------
    horizon_days
        The horizon the models are trained for (and the only one they predict).
    unit_days
        Time unit of the hybrid BTYD model, in days (7 for weeks).
    windows
        Feature windows in days.
    origin_step_days
        Days between rolling origins.
    max_origins
        At most this many origins (the latest ones).
    min_history_days
        An origin needs at least this many days of data before it.
    hybrid
        BTYD purchase model (``"bgnbd"``, ``"mbgnbd"``, ``"pareto_nbd"``) whose predictions
        are features, or None.
    learning_rate, num_leaves, min_child_samples, n_estimators, early_stopping_rounds
        LightGBM settings (``n_estimators`` is the most trees early stopping may reach).
    random_state
        Seed of LightGBM's sampling.
    """

    def __init__(
        self,
        horizon_days: float,
        *,
        unit_days: float = 7.0,
        windows: Sequence[int] = _DEFAULTS.windows_days,
        origin_step_days: int = _DEFAULTS.origin_step_days,
        max_origins: int = _DEFAULTS.max_origins,
        min_history_days: int = _DEFAULTS.min_history_days,
        hybrid: str | None = _DEFAULTS.hybrid,
        learning_rate: float = _DEFAULTS.learning_rate,
        num_leaves: int = _DEFAULTS.num_leaves,
        min_child_samples: int = _DEFAULTS.min_child_samples,
        n_estimators: int = _DEFAULTS.n_estimators,
        early_stopping_rounds: int = _DEFAULTS.early_stopping_rounds,
        random_state: int = _DEFAULTS.seed,
    ) -> None:
        self.horizon_days = horizon_days
        self.unit_days = unit_days
        self.windows = windows
        self.origin_step_days = origin_step_days
        self.max_origins = max_origins
        self.min_history_days = min_history_days
        self.hybrid = hybrid
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.n_estimators = n_estimators
        self.early_stopping_rounds = early_stopping_rounds
        self.random_state = random_state

    def get_params(self) -> dict[str, Any]:
        """The settings the predictor was constructed with, by name (as scikit-learn's
        ``get_params``)."""
        names = inspect.signature(type(self)).parameters
        return {name: getattr(self, name) for name in names}

    def clone(self, **settings: Any) -> GBMPredictor:
        """A new, unfitted predictor with the same settings but ``settings`` (as
        scikit-learn's ``clone(model).set_params(**settings)``), e.g. for another horizon."""
        return type(self)(**{**self.get_params(), **settings})

    # ---------------------------------------------------------------------------------------
    # Training

    def training_origins(self, purchases: PurchaseDays, train_end: pd.Timestamp) -> list:
        """The rolling origins for data ending at ``train_end``: each has a full horizon of
        labels on or before ``train_end`` and ``min_history_days`` of data before it."""
        last = pd.Timestamp(train_end).normalize() - pd.Timedelta(days=float(self.horizon_days))
        earliest = purchases.start + pd.Timedelta(days=self.min_history_days)
        return rolling_origins(
            last, earliest, step_days=self.origin_step_days, max_origins=self.max_origins
        )

    def check_history(self, purchases: PurchaseDays, train_end: pd.Timestamp) -> list:
        """The training origins; raise :class:`InsufficientHistoryError` with the reason if
        the data from their start to ``train_end`` cannot train this GBM (two origins are
        needed: one to train on, the latest to stop early on)."""
        origins = self.training_origins(purchases, train_end)
        if len(origins) < 2:
            needed = self.horizon_days + self.min_history_days + self.origin_step_days
            have = (pd.Timestamp(train_end).normalize() - purchases.start).days
            raise InsufficientHistoryError(
                f"a GBM for a {self.horizon_days:g}-day horizon needs at least {needed:g} days "
                f"of data before {pd.Timestamp(train_end).date()} (two rolling origins "
                f"{self.origin_step_days} days apart, each with {self.min_history_days} days "
                f"of history and a full horizon after it); the data have {have} days"
            )
        return origins

    def fit(
        self,
        purchases: PurchaseDays,
        train_end: pd.Timestamp | str,
        customers: pd.DataFrame | None = None,
        *,
        targets: Sequence[str] | None = None,
    ) -> GBMPredictor:
        """Train on the rolling origins of the data up to ``train_end``.

        Parameters
        ----------
        purchases
            :class:`PurchaseDays` of the transactions (later ones are not used).
        train_end
            The last day whose data may be used (labels included).
        customers
            Optional static covariates indexed by ``customer_id``.
        targets
            The targets to train (``"purchases"``, ``"revenue"``, ``"churn"``); by default
            all three (revenue only when the data have amounts).
        """
        unknown = sorted(set(targets or ()) - set(TARGETS))
        if unknown:
            raise ClvlabError(f"unknown GBM target(s) {unknown}; known: {sorted(TARGETS)}")
        train_end = pd.Timestamp(train_end).normalize()
        origins = self.check_history(purchases, train_end)
        features, labels = stacked_examples(
            purchases,
            origins,
            horizon_days=self.horizon_days,
            windows=self.windows,
            customers=customers,
        )
        if self.hybrid is not None:
            features = self._with_hybrid_stacked(features, origins)
            self.btyd_ = self._fit_btyd(self._features(purchases, train_end))
        self.categories_ = {
            column: list(features[column].cat.categories)
            for column in features.columns
            if isinstance(features[column].dtype, pd.CategoricalDtype)
        }
        self.feature_names_ = [c for c in features.columns if c not in (CUSTOMER_ID, ORIGIN)]
        self.origins_ = [str(origin.date()) for origin in origins]
        self.train_end_ = str(train_end.date())
        self.n_examples_ = len(features)
        self.has_revenue_ = purchases.has_amount
        matrix = features[self.feature_names_]
        holdout = (features[ORIGIN] == origins[-1]).to_numpy()
        self.boosters_: dict[str, lgb.Booster] = {}
        self.best_iterations_: dict[str, int] = {}
        self.calibration_: tuple[float, float] | None = None
        for target, objective in TARGETS.items():
            if target == "revenue" and not self.has_revenue_:
                continue
            if targets is not None and target not in targets:
                continue
            y = labels[target].to_numpy(dtype=float)
            base = self._baseline(target, features)
            early = self._train(
                objective,
                (matrix[~holdout], y[~holdout], base[~holdout]),
                (matrix[holdout], y[holdout], base[holdout]),
            )
            best = max(early.best_iteration or early.current_iteration(), 1)
            self.best_iterations_[target] = best
            if target == "churn":
                raw = _sigmoid(early.predict(matrix[holdout], raw_score=True) + base[holdout])
                self.calibration_ = _platt(raw, y[holdout])
            self.boosters_[target] = self._train(objective, (matrix, y, base), n_trees=best)
        return self

    def _baseline(self, target: str, features: pd.DataFrame) -> np.ndarray:
        """The init score each booster corrects (see the module docstring), on its link
        scale: log for purchases and revenue, logit for churn."""
        if self.hybrid is not None:
            purchases = features[_HYBRID[0]].to_numpy(dtype=float)
            p_churn = features[_HYBRID[2]].to_numpy(dtype=float)
        else:
            rate = features["rate_per_day"].to_numpy(dtype=float)
            purchases = rate * self.horizon_days
            p_churn = np.exp(-purchases)
        log_purchases = np.log(np.maximum(purchases, _MIN_PURCHASES))
        if target == "purchases":
            return log_purchases
        if target == "churn":
            return _logit(p_churn)
        spend = features["spend_mean"].to_numpy(dtype=float)
        return log_purchases + np.log(np.maximum(np.nan_to_num(spend), _MIN_SPEND))

    def _params(self, objective: str) -> dict[str, Any]:
        params = {
            "objective": objective,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "subsample": 0.8,
            "subsample_freq": 1,
            "colsample_bytree": 0.8,
            "reg_lambda": 1.0,
            "seed": self.random_state,
            "deterministic": True,
            "force_col_wise": True,
            "verbosity": -1,
        }
        if objective == "tweedie":
            params["tweedie_variance_power"] = 1.5
        return params

    def _train(
        self,
        objective: str,
        train: tuple[pd.DataFrame, np.ndarray, np.ndarray],
        valid: tuple[pd.DataFrame, np.ndarray, np.ndarray] | None = None,
        n_trees: int | None = None,
    ) -> lgb.Booster:
        """Boost from the init scores; early stopping on ``valid`` when given.
        Each of ``train`` and ``valid`` is (features, labels, init scores)."""
        # Imported here: a training whose GBM is skipped (too little history) or disabled,
        # and every scoring process, need no LightGBM (a second to import).
        import lightgbm as lgb

        x, y, base = train
        data = lgb.Dataset(x, y, init_score=base, free_raw_data=True)
        callbacks: list[Callable[..., Any]] = []
        valid_sets: list[lgb.Dataset] = []
        if valid is not None:
            x_valid, y_valid, base_valid = valid
            valid_sets = [lgb.Dataset(x_valid, y_valid, init_score=base_valid, reference=data)]
            callbacks = [lgb.early_stopping(self.early_stopping_rounds, verbose=False)]
        # LightGBM's OpenMP threads busy-wait between the small steps of a small data set:
        # on a busy machine that made a 12,000-row fit 7-10x slower with 2 threads than
        # with 1. Thread count does not change the result (deterministic mode).
        threads = min(os.cpu_count() or 1, max(1, len(x) // _ROWS_PER_THREAD))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*categorical.*", category=UserWarning)
            return lgb.train(
                {**self._params(objective), "num_threads": threads},
                data,
                num_boost_round=n_trees or self.n_estimators,
                valid_sets=valid_sets,
                callbacks=callbacks,
            )

    def _features(
        self,
        purchases: PurchaseDays,
        as_of: pd.Timestamp | str,
        customers: pd.DataFrame | None = None,
    ) -> pd.DataFrame:
        """:func:`window_features` with this model's windows and horizon."""
        return window_features(
            purchases,
            as_of,
            horizon_days=self.horizon_days,
            windows=self.windows,
            customers=customers,
        )

    # ---------------------------------------------------------------------------------------
    # Hybrid: BTYD predictions as features

    def _fit_btyd(self, features: pd.DataFrame) -> BTYDEstimator:
        if self.hybrid is None:
            raise ClvlabError("this GBM has no hybrid BTYD model (hybrid=None)")
        model = PURCHASE_MODELS[self.hybrid]()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a poor fit at an early origin is still a feature
            return model.fit(_rfm_of(features, self.unit_days))

    def _hybrid_features(self, model: BTYDEstimator, features: pd.DataFrame) -> pd.DataFrame:
        rfm = _rfm_of(features, self.unit_days)
        x, t_x, age = (rfm[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T"))
        horizon = self.horizon_days / self.unit_days
        return pd.DataFrame(
            {
                _HYBRID[0]: model.expected_purchases(horizon, x, t_x, age),
                _HYBRID[1]: model.p_alive(x, t_x, age),
                _HYBRID[2]: model.p_churn(horizon, x, t_x, age),
            },
            index=features.index,
        )

    def _with_hybrid_stacked(self, features: pd.DataFrame, origins: list) -> pd.DataFrame:
        parts = []
        for origin in origins:
            at_origin = features[features[ORIGIN] == origin]
            parts.append(self._hybrid_features(self._fit_btyd(at_origin), at_origin))
        return features.join(pd.concat(parts))

    # ---------------------------------------------------------------------------------------
    # Prediction

    def predict(
        self,
        purchases: PurchaseDays,
        as_of: pd.Timestamp | str,
        customers: pd.DataFrame | None = None,
    ) -> pd.DataFrame:
        """Predict the horizon after ``as_of`` for every customer with history by then.

        Returns
        -------
        pandas.DataFrame
            Indexed by ``customer_id``: ``expected_purchases``, ``p_churn`` and
            ``expected_revenue``; NaN for a target the predictor was not trained for (revenue
            of count-only data, or one left out by ``fit(..., targets=...)``).
        """
        features, matrix = self.feature_matrix(purchases, as_of, customers)

        def margin(target: str) -> np.ndarray:
            raw = self.boosters_[target].predict(matrix, raw_score=True)
            return raw + self._baseline(target, features)

        result = pd.DataFrame(index=features.index)
        result["expected_purchases"] = (
            np.exp(margin("purchases")) if "purchases" in self.boosters_ else np.nan
        )
        result["p_churn"] = (
            _apply_platt(self.calibration_, _sigmoid(margin("churn")))
            if self.calibration_ is not None
            else np.nan
        )
        result["expected_revenue"] = (
            np.exp(margin("revenue")) if "revenue" in self.boosters_ else np.nan
        )
        return result

    def feature_matrix(
        self,
        purchases: PurchaseDays,
        as_of: pd.Timestamp | str,
        customers: pd.DataFrame | None = None,
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The features of every customer with history by ``as_of`` (with the hybrid BTYD
        ones) and the matrix of them the boosters read (:attr:`feature_names_`, in order)."""
        self._check_fitted()
        features = self._features(purchases, as_of, customers)
        if self.hybrid is not None:
            features = features.join(self._hybrid_features(self.btyd_, features))
        return features, self._matrix(features)

    def feature_importance(self) -> dict[str, dict[str, float]]:
        """Each booster's features by their total gain (LightGBM's ``importance_type="gain"``),
        largest first: target -> feature -> gain."""
        self._check_fitted()
        importance = {}
        for target, booster in self.boosters_.items():
            gains = booster.feature_importance(importance_type="gain")
            ranked = sorted(zip(booster.feature_name(), gains, strict=True), key=lambda f: -f[1])
            importance[target] = {name: float(gain) for name, gain in ranked}
        return importance

    def _matrix(self, features: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in self.feature_names_ if c not in features]
        if missing:
            raise DataError(
                f"the GBM was trained with the feature(s) {missing}, which these data lack "
                "(static covariates must come with the same columns as in training)"
            )
        matrix = features[self.feature_names_].copy()
        for column, categories in self.categories_.items():
            matrix[column] = pd.Categorical(matrix[column].astype("string"), categories=categories)
        return matrix

    def _check_fitted(self) -> None:
        if not hasattr(self, "boosters_"):
            raise ClvlabError("this GBMPredictor is not fitted yet; call fit() first")

    # ---------------------------------------------------------------------------------------
    # Persistence (JSON-friendly; LightGBM's own text format for the trees)

    def to_dict(self) -> dict[str, Any]:
        """The settings and fitted state as plain JSON-friendly data."""
        self._check_fitted()
        return {
            "model": "GBMPredictor",
            "settings": {**self.get_params(), "windows": list(self.windows)},
            "feature_names": self.feature_names_,
            "categories": self.categories_,
            "origins": self.origins_,
            "train_end": self.train_end_,
            "n_examples": self.n_examples_,
            "has_revenue": self.has_revenue_,
            "best_iterations": self.best_iterations_,
            "calibration": None if self.calibration_ is None else list(self.calibration_),
            "boosters": {k: b.model_to_string() for k, b in self.boosters_.items()},
            "btyd": self.btyd_.to_dict() if self.hybrid is not None else None,
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> GBMPredictor:
        """Rebuild a fitted predictor from :meth:`to_dict`'s output."""
        model = cls(**state["settings"])
        model.feature_names_ = list(state["feature_names"])
        model.categories_ = {k: list(v) for k, v in state["categories"].items()}
        model.origins_ = list(state["origins"])
        model.train_end_ = state["train_end"]
        model.n_examples_ = int(state["n_examples"])
        model.has_revenue_ = bool(state["has_revenue"])
        model.best_iterations_ = dict(state["best_iterations"])
        calibration = state["calibration"]
        model.calibration_ = None if calibration is None else (calibration[0], calibration[1])
        import lightgbm as lgb

        model.boosters_ = {k: lgb.Booster(model_str=text) for k, text in state["boosters"].items()}
        if state["btyd"] is not None:
            model.btyd_ = estimator_from_dict(state["btyd"])
        return model


def _rfm_of(features: pd.DataFrame, unit_days: float) -> pd.DataFrame:
    """The RFM summary at daily resolution in ``unit_days`` units, from window features."""
    return pd.DataFrame(
        {
            "frequency": features["frequency"],
            "recency": features["recency_days"] / unit_days,
            "T": features["age_days"] / unit_days,
        }
    )


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


def _platt(raw: np.ndarray, event: np.ndarray) -> tuple[float, float]:
    """Platt scaling ``p = sigmoid(a * logit(raw) + b)`` fitted on held-out predictions; the
    identity when the held-out labels have one class only. Monotone, so the ranking (and the
    ROC-AUC) is kept."""
    if np.unique(event).size < 2:
        return (1.0, 0.0)
    from sklearn.linear_model import LogisticRegression

    fitted = LogisticRegression(C=1e6).fit(_logit(raw)[:, None], event)
    return (float(fitted.coef_[0, 0]), float(fitted.intercept_[0]))


def _apply_platt(calibration: Sequence[float], raw: np.ndarray) -> np.ndarray:
    slope, intercept = calibration
    return _sigmoid(slope * _logit(raw) + intercept)
