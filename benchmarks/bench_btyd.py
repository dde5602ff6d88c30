"""Time clvlab's BTYD engine against lifetimes: fitting and scoring, in one run.

The goals (each measured against lifetimes in the same run):

- ``fit``: BG/NBD fit on 1M synthetic customers at daily resolution at least 30x faster than
  ``lifetimes.BetaGeoFitter().fit(frequency, recency, T)``;
- ``pareto``: Pareto/NBD fit on the 23,570 CDNOW customers (39-week calibration, weeks at daily
  resolution) at least 30x faster than lifetimes' ``ParetoNBDFitter``;
- ``mbgcnbd``, ``ggompertz``: MBG/CNBD-k (k chosen among 1, 2, ...) and GGompertz/NBD fits
  on the same 1M synthetic customers in under 5 s each; their peers (BTYDplus, CLVTools) are
  R and do not run here, so there is no ratio;
- ``score``: scoring 1M customers with ``clvlab.CLVModel.predict`` (p_alive, p_churn, expected
  purchases, expected spend, expected revenue, discounted CLV) at least 3x faster than lifetimes
  computing the subset it can (expected purchases, P(alive), Gamma-Gamma expected spend and
  ``GammaGammaFitter.customer_lifetime_value``), both with the same parameters.

Every comparison also checks that the results agree: fitted parameters (relative difference,
and lifetimes' own log-likelihood at both parameter sets) for the fits; expected purchases,
P(alive) and expected spend (rtol 1e-6) for scoring.

The synthetic transactions are the Parquet file written by ``bench_rfm.py``
(``/tmp/clvlab-bench/tx_<customers>_seed<seed>.parquet``), generated with ``synthetic.py`` if
missing; they are summarized with ``clvlab.rfm(df, as_of, freq="D")`` (not timed).

Usage::

    python benchmarks/bench_btyd.py                                 # all three, 1M customers
    python benchmarks/bench_btyd.py --repeat 3 --lifetimes-repeat 3
    python benchmarks/bench_btyd.py --only pareto --repeat 5
    python benchmarks/bench_btyd.py --only mbgcnbd --only ggompertz --repeat 1
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from synthetic import DEFAULT, ensure_data

WORKDIR = Path("/tmp/clvlab-bench")
FIT_GOAL = 30.0  # lifetimes seconds / clvlab seconds, at least
PARETO_GOAL = 30.0
SCORE_GOAL = 3.0
#: Largest relative difference of fitted parameters accepted as "the same fit". lifetimes fits
#: BG/NBD with BFGS (tol 1e-7) and Pareto/NBD with Nelder-Mead (tol 1e-4), hence the two values.
FIT_PARAM_RTOL = 1e-4
PARETO_PARAM_RTOL = 1e-3
#: Tolerance of the scoring outputs computed by both at equal parameters.
SCORE_RTOL = 1e-6
#: CDNOW calibration: 39 weeks to 1997-09-30, holdout to 1998-06-30, weeks at daily resolution.
CDNOW = "lifetimes:CDNOW_master"
CDNOW_CUTOFF = "1997-09-30"
CDNOW_END = "1998-06-30"
#: Scoring set-up: a year ahead, 10 % a year; lifetimes' CLV works in 30-day months.
HORIZON_DAYS = 365
ANNUAL_DISCOUNT_RATE = 0.10
LIFETIMES_CLV_MONTHS = 12
NEW_MODEL_GOAL_SECONDS = 5.0
BENCHMARKS = ("fit", "pareto", "mbgcnbd", "ggompertz", "score")


# --------------------------------------------------------------------------------------------
# Timing, checks and printing


@dataclass
class Timing:
    """Seconds of each run of a timed call, its last result and the warnings it raised."""

    seconds: list[float]
    result: Any
    warnings: list[str] = field(default_factory=list)

    @property
    def best(self) -> float:
        """The fastest run."""
        return min(self.seconds)

    def describe(self) -> str:
        """``best of N (a, b, c)``, with a note when there is a single run."""
        runs = ", ".join(f"{s:.2f}" for s in self.seconds)
        if len(self.seconds) == 1:
            return "1 run"
        return f"best of {len(self.seconds)}: {runs}"


def timed(
    call: Callable[[], Any], repeat: int, keep_warnings: type[Warning] | None = None
) -> Timing:
    """Run ``call`` ``repeat`` times; the result of the last run and the wall-clock seconds.

    Warnings are silenced (lifetimes raises deprecation warnings under pandas 3), except those of
    class ``keep_warnings``, which are recorded (once per message).
    """
    seconds: list[float] = []
    messages: list[str] = []
    result = None
    for _ in range(max(1, repeat)):
        result = None  # free the previous result before the next run
        gc.collect()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("ignore")
            if keep_warnings is not None:
                warnings.simplefilter("always", keep_warnings)
            began = time.perf_counter()
            result = call()
            seconds.append(time.perf_counter() - began)
        for warning in caught:
            text = f"{warning.category.__name__}: {warning.message}"
            if text not in messages:
                messages.append(text)
    return Timing(seconds, result, messages)


@dataclass(frozen=True)
class Outcome:
    """One check against a goal; ``passed`` None means skipped."""

    name: str
    passed: bool | None

    def __str__(self) -> str:
        return {True: "PASS", False: "FAIL", None: "SKIPPED"}[self.passed]


def header(title: str) -> None:
    """A section title."""
    print(f"\n== {title} ==", flush=True)


def print_times(label_lifetimes: str, lifetimes: Timing, label_clvlab: str, clvlab: Timing) -> None:
    """The two timings, one line each."""
    width = max(len(label_lifetimes), len(label_clvlab))
    print(
        f"  lifetimes {label_lifetimes:<{width}}  {lifetimes.best:8.3f} s  ({lifetimes.describe()})"
    )
    print(f"  clvlab    {label_clvlab:<{width}}  {clvlab.best:8.3f} s  ({clvlab.describe()})")
    if len(lifetimes.seconds) == 1:
        print("  (lifetimes timed once: it is slow; --lifetimes-repeat N for the best of N)")
    for message in clvlab.warnings:
        print(f"  clvlab warned: {message}")


def print_ratio(name: str, lifetimes: Timing, clvlab: Timing, goal: float) -> Outcome:
    """The speed-up lifetimes / clvlab against ``goal``."""
    ratio = lifetimes.best / clvlab.best
    outcome = Outcome(f"{name} speed", ratio >= goal)
    print(f"  lifetimes / clvlab: {ratio:.2f}x  (goal >= {goal:g}x)  {outcome}")
    return outcome


def compare_params(
    ours: pd.Series, theirs: pd.Series, rtol: float, name: str
) -> tuple[Outcome, float]:
    """Print both parameter sets and their relative differences; check the largest one."""
    theirs = theirs.astype(float)
    if list(ours.index) != list(theirs.index):  # different names: compare in order
        print(f"  (parameter names differ: {list(ours.index)} vs {list(theirs.index)}; by order)")
        ours = pd.Series(ours.to_numpy(dtype=float), index=theirs.index)
    rel = (ours.astype(float) - theirs).abs() / theirs.abs()
    table = pd.DataFrame({"lifetimes": theirs, "clvlab": ours.astype(float), "rel diff": rel})
    print("  " + table.to_string(float_format=lambda v: f"{v:.8g}").replace("\n", "\n  "))
    largest = float(rel.max())
    outcome = Outcome(f"{name} parameters", bool(largest <= rtol))
    print(f"  largest relative difference {largest:.2e} (tol {rtol:g})  {outcome}")
    return outcome, largest


def relative_difference(ours: np.ndarray, theirs: np.ndarray) -> tuple[float, int]:
    """Largest ``|ours - theirs| / |theirs|`` and the number of rows where either is not finite
    or they differ in finiteness."""
    ours, theirs = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
    finite = np.isfinite(ours) & np.isfinite(theirs)
    mismatched = int((~finite & (ours != theirs)).sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.abs(ours[finite] - theirs[finite]) / np.abs(theirs[finite])
    rel = np.where(np.abs(theirs[finite]) > 0, rel, np.abs(ours[finite]))
    return (float(rel.max()) if rel.size else 0.0), mismatched


# --------------------------------------------------------------------------------------------
# Data


def synthetic_summary(args: argparse.Namespace) -> pd.DataFrame:
    """The daily RFM summary (with monetary value) of the synthetic customers, as of the end."""
    import clvlab

    data = args.workdir / f"tx_{args.customers}_seed{args.seed}.parquet"
    ensure_data(data, args.customers, args.seed)
    began = time.perf_counter()
    frame = pd.read_parquet(data)
    summary = clvlab.rfm(frame, args.as_of, freq="D", litt=True)
    print(
        f"summary: {len(summary):,} customers, {len(frame):,} rows, as of {args.as_of}, freq D "
        f"({time.perf_counter() - began:.1f} s to read and summarize, not timed)"
    )
    return summary


# --------------------------------------------------------------------------------------------
# The three benchmarks


@dataclass
class State:
    """What one benchmark hands to the next (the clvlab BG/NBD fit)."""

    summary: pd.DataFrame | None = None
    beta_geo: Any = None


def lifetimes_loglik_bgnbd(params: pd.Series, frame: pd.DataFrame) -> float:
    """Total BG/NBD log-likelihood by lifetimes' own formula, natural units."""
    from lifetimes import BetaGeoFitter

    x = frame["frequency"].to_numpy(dtype=float)
    log_params = np.log(params[["r", "alpha", "a", "b"]].to_numpy(dtype=float))
    weights = np.ones_like(x)
    mean_nll = BetaGeoFitter._negative_log_likelihood(
        log_params, x, frame["recency"].to_numpy(), frame["T"].to_numpy(), weights, 0.0
    )
    return -float(mean_nll) * len(x)


def lifetimes_loglik_pareto(params: Sequence[float], frame: pd.DataFrame) -> float:
    """Total Pareto/NBD log-likelihood by lifetimes' own formula, natural units."""
    from lifetimes import ParetoNBDFitter

    x = frame["frequency"].to_numpy(dtype=float)
    values = ParetoNBDFitter._conditional_log_likelihood(
        [float(p) for p in params], x, frame["recency"].to_numpy(), frame["T"].to_numpy()
    )
    return float(np.sum(values))


def print_loglik(ours: float, theirs: float) -> None:
    """Both log-likelihoods and which parameter set is the better optimum."""
    better = "clvlab's" if ours > theirs else "lifetimes'" if theirs > ours else "neither"
    print(
        f"  log-likelihood by lifetimes' formula: at lifetimes' params {theirs:.6f}, at clvlab's "
        f"{ours:.6f} (clvlab - lifetimes = {ours - theirs:+.2e}; {better} is higher)"
    )


def bench_fit(args: argparse.Namespace, state: State) -> list[Outcome]:
    """BG/NBD fit on the synthetic customers: lifetimes' BetaGeoFitter against clvlab.BetaGeo."""
    from lifetimes import BetaGeoFitter

    from clvlab.models.btyd import BetaGeo, BTYDConvergenceWarning

    summary = state.summary
    assert summary is not None
    header(f"BG/NBD fit: {len(summary):,} synthetic customers, daily (goal >= {FIT_GOAL:g}x)")
    rfm = summary[["frequency", "recency", "T"]]

    def lifetimes_fit() -> BetaGeoFitter:
        return BetaGeoFitter().fit(rfm["frequency"], rfm["recency"], rfm["T"])

    def clvlab_fit() -> BetaGeo:
        return BetaGeo().fit(rfm)

    print("  running lifetimes ...", flush=True)
    theirs = timed(lifetimes_fit, args.lifetimes_repeat)
    print("  running clvlab ...", flush=True)
    ours = timed(clvlab_fit, args.repeat, BTYDConvergenceWarning)
    print_times("BetaGeoFitter().fit(f, r, T)", theirs, "BetaGeo().fit(rfm)", ours)
    outcomes = [print_ratio("fit", theirs, ours, FIT_GOAL)]
    outcome, _ = compare_params(ours.result.params_, theirs.result.params_, FIT_PARAM_RTOL, "fit")
    outcomes.append(outcome)
    print_loglik(
        lifetimes_loglik_bgnbd(ours.result.params_, rfm),
        lifetimes_loglik_bgnbd(theirs.result.params_, rfm),
    )
    state.beta_geo = ours.result
    return outcomes


def bench_pareto(args: argparse.Namespace, state: State) -> list[Outcome]:
    """Pareto/NBD fit on CDNOW's calibration period: lifetimes' ParetoNBDFitter against clvlab."""
    from lifetimes import ParetoNBDFitter

    import clvlab
    from clvlab.models.btyd import BTYDConvergenceWarning, ParetoNBD

    tx = clvlab.read_transactions(CDNOW)
    cal = clvlab.calibration_holdout(tx, CDNOW_CUTOFF, CDNOW_END, freq="D", freq_multiplier=7)
    rfm = cal.rename(columns={"frequency_cal": "frequency", "recency_cal": "recency", "T_cal": "T"})
    rfm = rfm[["frequency", "recency", "T"]]
    header(
        f"Pareto/NBD fit: {len(rfm):,} CDNOW customers, calibration to {CDNOW_CUTOFF} in weeks "
        f"(goal >= {PARETO_GOAL:g}x)"
    )

    def lifetimes_fit() -> ParetoNBDFitter:
        # lifetimes draws its start point from numpy's global generator
        np.random.seed(args.seed)  # noqa: NPY002
        return ParetoNBDFitter().fit(rfm["frequency"], rfm["recency"], rfm["T"])

    def clvlab_fit() -> ParetoNBD:
        return ParetoNBD().fit(rfm)

    print("  running lifetimes ...", flush=True)
    theirs = timed(lifetimes_fit, args.lifetimes_repeat)

    print("  running clvlab ...", flush=True)
    ours = timed(clvlab_fit, args.repeat, BTYDConvergenceWarning)
    print_times("ParetoNBDFitter().fit(f, r, T)", theirs, "ParetoNBD().fit(rfm)", ours)
    outcomes = [print_ratio("pareto", theirs, ours, PARETO_GOAL)]
    outcome, _ = compare_params(
        ours.result.params_, theirs.result.params_, PARETO_PARAM_RTOL, "pareto"
    )
    outcomes.append(outcome)
    print_loglik(
        lifetimes_loglik_pareto(ours.result.params_.to_numpy(dtype=float), rfm),
        lifetimes_loglik_pareto(theirs.result.params_.to_numpy(dtype=float), rfm),
    )
    return outcomes


def bench_new_model(
    args: argparse.Namespace, state: State, name: str, title: str, columns: list[str]
) -> list[Outcome]:
    """Fit a model added in issue 17 on the synthetic customers against its goal in seconds
    (its peers, BTYDplus and CLVTools, are R: no comparison runs here)."""
    from clvlab.models.btyd import PURCHASE_MODELS, BTYDConvergenceWarning

    summary = state.summary
    assert summary is not None
    header(
        f"{title} fit: {len(summary):,} synthetic customers, daily "
        f"(goal < {NEW_MODEL_GOAL_SECONDS:g} s)"
    )
    rfm = summary[columns]
    model = PURCHASE_MODELS[name]
    ours = timed(lambda: model().fit(rfm), args.repeat, BTYDConvergenceWarning)
    fitted = ours.result
    print(f"  {model.__name__}().fit(rfm): {ours.best:.2f} s ({ours.describe()})")
    params = ", ".join(f"{key}={value:.4g}" for key, value in fitted.params_.items())
    if hasattr(fitted, "log_likelihoods_"):
        tried = ", ".join(f"k={k}: {v:.1f}" for k, v in fitted.log_likelihoods_.items())
        params = f"k = {fitted.k_} (log-likelihoods {tried}); {params}"
    print(f"  {params}")
    for text in ours.warnings:
        print(f"  warning: {text}")
    passed = ours.best < NEW_MODEL_GOAL_SECONDS
    verdict = "PASS" if passed else "FAIL"
    print(f"  {verdict}: {ours.best:.2f} s (goal < {NEW_MODEL_GOAL_SECONDS:g} s)")
    print("  its peer is R and does not run here: no peer ratio (SKIPPED)")
    return [Outcome(name, passed), Outcome(f"{name} peer ratio", None)]


def bench_mbgcnbd(args: argparse.Namespace, state: State) -> list[Outcome]:
    """MBG/CNBD-k, k chosen by likelihood (BTYDplus has it)."""
    columns = ["frequency", "recency", "T", "litt"]
    return bench_new_model(args, state, "mbgcnbd", "MBG/CNBD-k, k by likelihood,", columns)


def bench_ggompertz(args: argparse.Namespace, state: State) -> list[Outcome]:
    """GGompertz/NBD (CLVTools has it)."""
    columns = ["frequency", "recency", "T"]
    return bench_new_model(args, state, "ggompertz_nbd", "GGompertz/NBD", columns)


def lifetimes_scorer(
    beta_geo_params: pd.Series,
    gamma_gamma_params: pd.Series,
    summary: pd.DataFrame,
    with_clv: bool = True,
) -> Callable[[], pd.DataFrame]:
    """lifetimes' scoring of ``summary`` with the given parameters, as a timed callable.

    Expected purchases over the horizon, P(alive), the Gamma-Gamma expected spend and, with
    ``with_clv``, ``customer_lifetime_value`` (12 months of 30 days, discounted monthly at the
    monthly rate equivalent to the annual one); lifetimes has no P(churn) for BG/NBD.
    """
    from lifetimes import BetaGeoFitter, GammaGammaFitter

    bgf = BetaGeoFitter()
    bgf.params_ = beta_geo_params[["r", "alpha", "a", "b"]].astype(float).copy()
    bgf.predict = bgf.conditional_expected_number_of_purchases_up_to_time  # set by fit
    ggf = GammaGammaFitter()
    ggf.params_ = gamma_gamma_params[["p", "q", "v"]].astype(float).copy()
    monthly_rate = (1.0 + ANNUAL_DISCOUNT_RATE) ** (1.0 / 12.0) - 1.0
    frequency, recency, age = summary["frequency"], summary["recency"], summary["T"]
    monetary = summary["monetary_value"]

    def score() -> pd.DataFrame:
        out = pd.DataFrame(
            {
                "p_alive": bgf.conditional_probability_alive(frequency, recency, age),
                "expected_purchases": bgf.conditional_expected_number_of_purchases_up_to_time(
                    HORIZON_DAYS, frequency, recency, age
                ),
                "expected_spend": ggf.conditional_expected_average_profit(frequency, monetary),
            },
            index=summary.index,
        )
        if with_clv:
            out["clv"] = ggf.customer_lifetime_value(
                bgf,
                frequency,
                recency,
                age,
                monetary,
                time=LIFETIMES_CLV_MONTHS,
                discount_rate=monthly_rate,
                freq="D",
            )
        return out

    return score


def clvlab_scorer_without_clv(model: Any, summary: pd.DataFrame) -> Callable[[], pd.DataFrame]:
    """``CLVModel.predict`` without its ``clv`` column, from the models' public methods."""
    x, t_x, age = (summary[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T"))
    monetary = summary["monetary_value"].to_numpy(dtype=float)
    purchases, spend, horizon = model.purchases, model.spend, float(HORIZON_DAYS)

    def score() -> pd.DataFrame:
        out = pd.DataFrame(
            {
                "p_alive": purchases.p_alive(x, t_x, age),
                "p_churn": purchases.p_churn(horizon, x, t_x, age),
                "expected_purchases": purchases.expected_purchases(horizon, x, t_x, age),
                "expected_spend": spend.expected_spend(x, monetary),
            },
            index=summary.index,
        )
        out["expected_revenue"] = out["expected_purchases"] * out["expected_spend"]
        return out

    return score


def bench_score(args: argparse.Namespace, state: State) -> list[Outcome]:
    """Scoring the synthetic customers: lifetimes' predictions against CLVModel.predict."""
    import clvlab
    from clvlab.models.btyd import BetaGeo, GammaGamma

    summary = state.summary
    assert summary is not None
    header(
        f"scoring {len(summary):,} customers, {HORIZON_DAYS}-day horizon (goal >= {SCORE_GOAL:g}x)"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        beta_geo = state.beta_geo or BetaGeo().fit(summary)
        gamma_gamma = GammaGamma().fit(summary)
    params = ", ".join(f"{k}={v:.6g}" for k, v in beta_geo.params_.items())
    spend = ", ".join(f"{k}={v:.6g}" for k, v in gamma_gamma.params_.items())
    print(
        f"  parameters (clvlab fits, copied into lifetimes' fitters): BG/NBD {params}; "
        f"Gamma-Gamma {spend}"
    )
    model = clvlab.CLVModel(
        purchases=beta_geo,
        spend=gamma_gamma,
        time_unit="D",
        horizon_days=HORIZON_DAYS,
        annual_discount_rate=ANNUAL_DISCOUNT_RATE,
    )
    print("  running lifetimes ...", flush=True)
    theirs = timed(
        lifetimes_scorer(beta_geo.params_, gamma_gamma.params_, summary), args.lifetimes_repeat
    )
    print("  running clvlab ...", flush=True)
    ours = timed(lambda: model.predict(summary), args.repeat)
    print_times(
        "P(alive), E[purchases], E[spend], CLV", theirs, "CLVModel.predict (6 columns)", ours
    )
    outcomes = [print_ratio("score", theirs, ours, SCORE_GOAL)]
    worst = 0.0
    for column in ("expected_purchases", "p_alive", "expected_spend"):
        rel, mismatched = relative_difference(
            ours.result[column].to_numpy(), theirs.result[column].to_numpy()
        )
        worst = max(worst, rel if mismatched == 0 else math.inf)
        print(
            f"  {column:<18} largest relative difference {rel:.2e}"
            + (f", {mismatched} rows non-finite in one only" if mismatched else "")
        )
    outcome = Outcome("score agreement", worst <= SCORE_RTOL)
    print(f"  common outputs agree (rtol {SCORE_RTOL:g}): {outcome}")
    outcomes.append(outcome)
    ours_clv, theirs_clv = float(ours.result["clv"].sum()), float(theirs.result["clv"].sum())
    print(
        f"  total CLV (not compared: clvlab discounts daily over {HORIZON_DAYS} days, lifetimes "
        f"monthly over {LIFETIMES_CLV_MONTHS}x30 days): clvlab {ours_clv:,.0f}, lifetimes "
        f"{theirs_clv:,.0f} ({ours_clv / theirs_clv - 1:+.2%})"
    )
    theirs_part = timed(
        lifetimes_scorer(beta_geo.params_, gamma_gamma.params_, summary, with_clv=False),
        args.lifetimes_repeat,
    )
    ours_part = timed(clvlab_scorer_without_clv(model, summary), args.repeat)
    print(
        f"  without the clv column (not a goal): lifetimes P(alive), E[purchases], E[spend] "
        f"{theirs_part.best:.3f} s; clvlab P(alive), P(churn), E[purchases], E[spend], revenue "
        f"{ours_part.best:.3f} s; lifetimes / clvlab {theirs_part.best / ours_part.best:.2f}x"
    )
    return outcomes


# --------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000, help="synthetic customers")
    parser.add_argument("--repeat", type=int, default=3, help="best of N timings of clvlab")
    parser.add_argument(
        "--lifetimes-repeat", type=int, default=1, help="best of N timings of lifetimes (slow)"
    )
    parser.add_argument(
        "--only", choices=BENCHMARKS, action="append", help="run only this one (repeatable)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--as-of", default=str(DEFAULT.end.date()))
    parser.add_argument("--workdir", type=Path, default=WORKDIR, help="synthetic data")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; exit status 1 if a check fails (a skipped one does not)."""
    args = parse_args(argv)
    chosen = [name for name in BENCHMARKS if not args.only or name in args.only]
    import lifetimes

    import clvlab

    print(
        f"bench_btyd: {', '.join(chosen)}; clvlab {clvlab.__version__}, lifetimes "
        f"{lifetimes.__version__}, pandas {pd.__version__}, numpy {np.__version__}, "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} cores; clvlab best of {args.repeat}, "
        f"lifetimes best of {args.lifetimes_repeat}",
        flush=True,
    )
    state = State()
    if {"fit", "mbgcnbd", "ggompertz", "score"} & set(chosen):
        args.workdir.mkdir(parents=True, exist_ok=True)
        state.summary = synthetic_summary(args)
    runners = {
        "fit": bench_fit,
        "pareto": bench_pareto,
        "mbgcnbd": bench_mbgcnbd,
        "ggompertz": bench_ggompertz,
        "score": bench_score,
    }
    outcomes: list[Outcome] = []
    for name in chosen:
        outcomes += runners[name](args, state)
    failed = [o.name for o in outcomes if o.passed is False]
    skipped = [o.name for o in outcomes if o.passed is None]
    print()
    if skipped:
        print(f"skipped: {', '.join(skipped)}")
    print("all checks PASS" if not failed else "FAIL: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
