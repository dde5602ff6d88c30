"""The run config: YAML in, a validated :class:`RunConfig` out.

A run config names the data, the calibration/holdout split, the unit of time and the scoring
settings, so that any dataset can be run without code. Every key is checked on load; a wrong
key or value raises :class:`clvlab.ConfigError` naming it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from clvlab.data.clean import CleaningPolicy
from clvlab.errors import ConfigError
from clvlab.evaluation.metrics import METRICS, SELECTION_METRICS
from clvlab.segments import CHURN_THRESHOLDS, VALUE_QUANTILES

#: Length of one time unit in days. "M" is the average Gregorian month, as in lifetimes; "H"
#: an hour.
UNIT_DAYS: dict[str, float] = {"D": 1.0, "W": 7.0, "M": 30.436875, "H": 1 / 24}
#: The longest scoring horizon, in days (100 years): a longer one is surely a mistake, and
#: its discounting sums would take minutes. Every scoring entry point checks it.
MAX_HORIZON_DAYS = 36_525


def resolution(time_unit: str) -> tuple[Literal["D", "H"], float]:
    """The resolution at which a model of ``time_unit`` sees transactions: the ``freq`` and
    ``freq_multiplier`` of :func:`clvlab.rfm` that summarize them in that unit.

    Days, weeks and months are summarized at daily resolution, scaled (``("D", 7.0)`` for
    weeks: purchases merged per calendar day, recency and T in days divided by 7, the data of
    Fader, Hardie and Lee); hours at hourly resolution (``("H", 1.0)``: purchases merged per
    clock hour, recency and T in hours).

    Raises
    ------
    ConfigError
        If ``time_unit`` is not one of ``D``, ``W``, ``M``, ``H``.
    """
    if time_unit == "H":
        return "H", 1.0
    if time_unit not in UNIT_DAYS:
        raise ConfigError(
            f"time_unit must be one of {', '.join(UNIT_DAYS)} (days, weeks, months, hours), "
            f"not {time_unit!r}"
        )
    return "D", UNIT_DAYS[time_unit]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Strict):
    """Where the transactions come from and which columns hold what."""

    source: str = Field(
        description="'lifetimes:CDNOW_master', 'lifetimes:CDNOW_sample' or a CSV/Parquet path."
    )
    customer_id: str = "customer_id"
    date: str = "date"
    amount: str | None = Field(default=None, description="None for count-only data.")
    quantity: str | None = Field(default=None, description="With price: amount = quantity*price.")
    price: str | None = None
    invoice: str | None = Field(default=None, description="Invoice id: lines -> one purchase.")
    date_format: str | None = Field(default=None, description="strftime format; inferred if None.")
    timezone: str | None = Field(default=None, description="Zone of the dates; UTC if None.")
    identity_links: str | None = Field(
        default=None, description="CSV/Parquet of id pairs (id_a, id_b) known to be one person."
    )

    @model_validator(mode="after")
    def _one_amount(self) -> DataConfig:
        if self.amount is not None and (self.quantity or self.price):
            raise ValueError("give either amount or quantity and price, not both")
        if (self.quantity is None) != (self.price is None):
            raise ValueError("quantity and price go together")
        return self

    def columns(self) -> dict[str, Any]:
        """The column mapping and parsing settings, as ``read_transactions`` takes them."""
        return {
            "customer_id": self.customer_id,
            "date": self.date,
            "amount": self.amount,
            "quantity": self.quantity,
            "price": self.price,
            "date_format": self.date_format,
            "timezone": self.timezone,
        }


class SplitConfig(_Strict):
    """Calibration period (fit) and holdout period (evaluate) for the backtest."""

    calibration_end: dt.date
    holdout_end: dt.date

    @model_validator(mode="after")
    def _ordered(self) -> SplitConfig:
        if self.holdout_end <= self.calibration_end:
            raise ValueError(
                f"holdout_end ({self.holdout_end}) must be after calibration_end "
                f"({self.calibration_end})"
            )
        return self


PurchaseModelName = Literal["bgnbd", "mbgnbd", "pareto_nbd", "mbgcnbd", "ggompertz_nbd"]


class GBMConfig(_Strict):
    """The LightGBM candidates of the backtest (see :class:`clvlab.models.gbm.GBMPredictor`)."""

    enabled: bool = True
    windows_days: tuple[int, ...] = Field(default=(30, 90, 180, 365), min_length=0)
    origin_step_days: int = Field(default=28, ge=1)
    max_origins: int = Field(default=12, ge=2)
    min_history_days: int = Field(default=28, ge=1)
    hybrid: PurchaseModelName | None = Field(
        default="bgnbd", description="BTYD model whose predictions are features; null for none."
    )
    static_columns: tuple[str, ...] = Field(
        default=(), description="Extra transaction columns used as static covariates."
    )
    learning_rate: float = Field(default=0.05, gt=0, le=1)
    num_leaves: int = Field(default=15, ge=2)
    min_child_samples: int = Field(default=200, ge=1)
    n_estimators: int = Field(default=2000, ge=1)
    early_stopping_rounds: int = Field(default=100, ge=1)
    seed: int = 0


class ModelsConfig(_Strict):
    """Settings of the fitted models."""

    purchases: Literal["champion"] | PurchaseModelName = Field(
        default="champion",
        description="champion: each target's champion in the backtest; or a BTYD purchase "
        "model (bgnbd, mbgnbd, pareto_nbd, mbgcnbd, ggompertz_nbd) for every target.",
    )
    candidates: tuple[PurchaseModelName, ...] = Field(
        default=("bgnbd", "mbgnbd", "pareto_nbd"),
        min_length=1,
        description="BTYD purchase models compared in the backtest.",
    )
    gbm: GBMConfig = GBMConfig()
    ensemble: bool = Field(
        default=True,
        description="Also judge, per target, a convex blend of the other candidates' "
        "predictions with weights fitted on the validation window (champion only if it wins "
        "there, out of fold).",
    )
    engine: Literal["clvlab", "lifetimes"] = Field(
        default="clvlab", description="Who fits: clvlab's engine, or lifetimes' (for parity)."
    )
    penalizer_coef: float = Field(default=0.0, ge=0.0)


class ScoringConfig(_Strict):
    """Defaults for scoring: horizon, discounting and intervals."""

    horizon_days: float = Field(default=365.0, gt=0, le=MAX_HORIZON_DAYS)
    annual_discount_rate: float = Field(default=0.10, ge=0.0, lt=1.0)
    discounting: Literal["continuous", "monthly"] = Field(
        default="continuous",
        description="continuous (CLVTools DERT) or monthly (lifetimes customer_lifetime_value)",
    )
    intervals: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="level of the score intervals (e.g. 0.9; see clvlab.intervals); none: off",
    )


def _selection_metric(value: Any) -> Any:
    """A metric name the registry offers for selection (``SELECTION_METRICS``)."""
    if value not in SELECTION_METRICS:
        names = [repr(name) for name in SELECTION_METRICS]
        expected = f"{', '.join(names[:-1])} or {names[-1]}"
        raise PydanticCustomError(
            "metric_name", "Input should be {expected}", {"expected": expected}
        )
    return value


#: A metric that may choose champions and decide promotions: a name of the metric registry
#: (:data:`clvlab.evaluation.metrics.METRICS`) whose ``selects`` is true.
SelectionMetric = Annotated[str, BeforeValidator(_selection_metric)]


class SelectionConfig(_Strict):
    """The metric that picks each target's champion on the validation window."""

    purchases: SelectionMetric = "purchases_mae"
    churn: SelectionMetric = "churn_roc_auc"
    revenue: SelectionMetric = "revenue_mae"

    @model_validator(mode="after")
    def _each_judges_its_target(self) -> SelectionConfig:
        for target, metric in self.as_dict().items():
            if METRICS[metric].target != target:
                raise ValueError(
                    f"{target}: {metric!r} judges another target; choose a {target}_* metric"
                )
        return self

    def as_dict(self) -> dict[str, str]:
        """Target -> metric."""
        return self.model_dump()


class SegmentsConfig(_Strict):
    """The segment columns of the score table (see :mod:`clvlab.segments`): RFM quintile
    scores and segments, value tiers and churn-risk tiers, with cut points fixed at training."""

    enabled: bool = Field(default=True, description="Fit segment rules and score segments.")
    value_tiers: tuple[float, float, float] = Field(
        default=VALUE_QUANTILES,
        description="Quantiles of the training customers' clv (expected purchases when "
        "count-only) that separate the tiers low, medium, high and top.",
    )
    churn_tiers: tuple[float, float] = Field(
        default=CHURN_THRESHOLDS,
        description="p_churn thresholds that separate the churn-risk tiers low, medium, high.",
    )

    @model_validator(mode="after")
    def _increasing(self) -> SegmentsConfig:
        for key in ("value_tiers", "churn_tiers"):
            cuts = getattr(self, key)
            if not all(a < b for a, b in itertools.pairwise((0, *cuts, 1))):
                raise ValueError(f"{key} must increase strictly between 0 and 1, got {cuts}")
        return self


class RegistryConfig(_Strict):
    """When ``clvlab train --register`` moves the ``champion`` alias to the new version."""

    metrics: tuple[SelectionMetric, ...] = Field(
        default=("purchases_mae", "churn_roc_auc"),
        min_length=1,
        description="Holdout metrics of the scoring model compared with the champion's.",
    )
    rule: Literal["all", "any"] = Field(
        default="all",
        description="all: no metric worse and one better; any: one metric better.",
    )


class TrackingConfig(_Strict):
    """Where runs and local model exports go."""

    uri: str | None = Field(
        default=None,
        description="MLflow tracking store; MLFLOW_TRACKING_URI wins over it, and without "
        "either runs go to ~/.clvlab/mlruns/mlflow.db (see clvlab.tracking.store).",
    )
    experiment: str | None = Field(default=None, description="Defaults to the run's name.")
    export_dir: str | None = Field(
        default=None,
        description="Also export the model to <export_dir>/<name>/; null: no local export "
        "(clvlab export NAME DIR copies a registered version).",
    )
    figures: bool = Field(
        default=True,
        description="Draw the backtest figure and the segment map and log them with the run "
        "(about a second per run); false: neither, e.g. in a sweep of many runs.",
    )


class SparkConfig(_Strict):
    """How ``engine: spark`` trains (see :mod:`clvlab.spark.training`)."""

    master: str | None = Field(
        default=None,
        description="local[N], spark://HOST:PORT, yarn...; null: Spark's own (spark-submit's "
        "--master, spark-defaults.conf, else local[*]).",
    )
    conf: dict[str, str] = Field(
        default_factory=dict, description="Spark settings for the session (spark.* keys)."
    )
    partitions: int | None = Field(
        default=None,
        ge=1,
        description="Customer partitions of the cleaning (each one pandas table in one "
        "Python worker); null: spark.sql.shuffle.partitions.",
    )
    sample_customers: int = Field(
        default=250_000,
        ge=1,
        description="Customers whose transactions come to the driver for the backtest's "
        "metrics, the LightGBM predictors and the segment cut points (a fixed hash sample; "
        "all customers when there are fewer). The BTYD and Gamma-Gamma models are fitted on "
        "the counted statistics of every customer.",
    )


class SubscriptionsConfig(_Strict):
    """``setting: contractual``: how the subscription table (``data.source``, one row per
    subscription, with ``data.customer_id``) is read and its churn modelled by sBG (see
    :class:`clvlab.models.contractual.ContractualModel`)."""

    start: str = Field(default="start", description="Column of the day a subscription started.")
    end: str = Field(default="end", description="Column of the day it ended; empty: active.")
    price: str | None = Field(default="price", description="Price per period; null: none.")
    period: Literal["M", "W", "D", "Y"] = Field(
        default="M", description="What a subscription pays for at a time (calendar months...)."
    )
    cohorts: Literal["champion", "by_cohort", "pooled"] = Field(
        default="champion",
        description="One sBG per cohort (the start's period), one for all (pooled), or the "
        "one of the two that predicts churn better on the validation window (champion).",
    )
    horizon_periods: int = Field(
        default=12, ge=1, description="Periods ahead of p_churn and expected_renewals."
    )


class RunConfig(_Strict):
    """A validated run config."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    data: DataConfig
    split: SplitConfig
    time_unit: Literal["D", "W", "M", "H"] = Field(
        default="W",
        description="Unit of recency, T and the model's rates: D, W, M (at daily resolution) "
        "or H (hours, at hourly resolution).",
    )
    cleaning: CleaningPolicy = CleaningPolicy()
    models: ModelsConfig = ModelsConfig()
    selection: SelectionConfig = SelectionConfig()
    scoring: ScoringConfig = ScoringConfig()
    tracking: TrackingConfig = TrackingConfig()
    registry: RegistryConfig = RegistryConfig()
    segments: SegmentsConfig = SegmentsConfig()
    engine: Literal["local", "spark"] = Field(
        default="local",
        description="local: this machine; spark: read, clean and count on Spark (pip install "
        "'clvlab[spark]'), fit on the driver.",
    )
    spark: SparkConfig = SparkConfig()
    setting: Literal["non_contractual", "contractual"] = Field(
        default="non_contractual",
        description="non_contractual: transactions (BTYD, GBM); contractual: subscriptions "
        "whose cancellations are seen (sBG; the subscriptions section).",
    )
    subscriptions: SubscriptionsConfig = SubscriptionsConfig()

    @model_validator(mode="after")
    def _contractual_on_one_machine(self) -> RunConfig:
        if self.setting != "contractual":
            return self
        if self.engine == "spark":
            raise ValueError("setting: contractual trains on one machine: remove engine: spark")
        others = [m for m in self.registry.metrics if METRICS[m].target != "churn"]
        if others and "metrics" in self.registry.model_fields_set:
            raise ValueError(
                f"setting: contractual predicts churn only: registry.metrics {others} judge "
                "other targets; use churn_roc_auc or churn_brier"
            )
        return self

    @model_validator(mode="after")
    def _spark_fits_with_clvlab(self) -> RunConfig:
        if self.engine == "spark" and self.models.engine != "clvlab":
            raise ValueError(
                "engine: spark fits the counted statistics of all customers, which only "
                "models.engine: clvlab does; remove models.engine: lifetimes"
            )
        return self

    @model_validator(mode="after")
    def _spark_counts_days(self) -> RunConfig:
        if self.engine == "spark" and self.time_unit == "H":
            raise ValueError(
                "engine: spark counts purchases per day, so it cannot train time_unit: H "
                "(hours); train hourly models with engine: local, or use time_unit D, W or M "
                "on Spark"
            )
        return self

    @property
    def promotion_metrics(self) -> tuple[str, ...]:
        """The holdout metrics ``clvlab train --register`` compares with the champion's:
        ``registry.metrics``, or with ``setting: contractual`` and none given, churn's
        (``churn_roc_auc``, ``churn_brier``)."""
        if self.setting == "contractual" and "metrics" not in self.registry.model_fields_set:
            return ("churn_roc_auc", "churn_brier")
        return self.registry.metrics

    @property
    def unit_days(self) -> float:
        """Length of one :attr:`time_unit` in days."""
        return UNIT_DAYS[self.time_unit]

    @property
    def experiment_name(self) -> str:
        """The MLflow experiment the run is logged to."""
        return self.tracking.experiment or self.name

    def fingerprint(self) -> str:
        """SHA-256 of the resolved config (every key, defaults included), as canonical JSON:
        two configs that run the same job have the same fingerprint."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def to_flat_dict(self) -> dict[str, str]:
        """The resolved config as ``{"split.calibration_end": "1997-09-30", ...}``."""
        return dict(_flatten(self.model_dump(mode="json")))


def _flatten(tree: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", "" if value is None else str(value)


def load_config(config: str | Path | dict[str, Any] | RunConfig) -> RunConfig:
    """Load and validate a run config.

    Parameters
    ----------
    config
        A path to a YAML file, a dict of the same shape, or an already validated config.

    Returns
    -------
    RunConfig

    Raises
    ------
    ConfigError
        If the file is missing or not YAML, or a key or value is wrong; the message names each.
    """
    if isinstance(config, RunConfig):
        return config
    where = "config"
    if isinstance(config, str | Path):
        path = Path(config)
        where = str(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}. Pass an existing YAML file.")
        try:
            config = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{where}: expected a mapping of keys to values, got {type(config)}")
    try:
        return RunConfig.model_validate(config)
    except ValidationError as exc:
        raise ConfigError(_describe(where, exc)) from None


def _describe(where: str, exc: ValidationError) -> str:
    lines = [f"{where}: {exc.error_count()} problem(s) in the run config"]
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        if error["type"] in {"extra_forbidden", "unexpected_keyword_argument"}:
            lines.append(f"  - {key}: unknown key; check its spelling (see configs/cdnow.yaml)")
        elif error["type"] == "missing":
            lines.append(f"  - {key}: required key is missing")
        else:
            lines.append(f"  - {key}: {error['msg']} (got {error.get('input')!r})")
    return "\n".join(lines)
