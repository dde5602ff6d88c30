"""Simulators of the BTYD models, shared by the model tests (not a test module itself).

Each draws customers from a model with known parameters, so tests can check that a fit
recovers them (:func:`assert_recovers`) and that predictions match simulated outcomes.
Importable from any test as ``import simulators`` (``pythonpath = ["tests"]`` in
pyproject.toml's pytest section).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def _histories(
    x: np.ndarray, t_x: np.ndarray, T: np.ndarray, alive: np.ndarray, future: np.ndarray
) -> pd.DataFrame:
    return pd.DataFrame({"frequency": x, "recency": t_x, "T": T, "alive": alive, "future": future})


def _bg_family(
    rng: np.random.Generator,
    n: int,
    params: dict[str, float],
    T: float | np.ndarray,
    horizon: float,
    extra_chance: int,
) -> pd.DataFrame:
    """BG/NBD (``extra_chance`` 0) or MBG/NBD (1): see the public simulators."""
    T = np.broadcast_to(np.asarray(T, dtype=float), (n,))
    lam = rng.gamma(params["r"], 1.0 / params["alpha"], n)
    p = rng.beta(params["a"], params["b"], n)
    k = rng.geometric(p) - extra_chance
    n_arrivals = rng.poisson(lam * T)
    x = np.minimum(n_arrivals, k)
    t_x = np.where(x > 0, T * rng.beta(np.maximum(x, 1), n_arrivals - x + 1), 0.0)
    alive = n_arrivals < k
    future = np.where(alive, np.minimum(rng.poisson(lam * horizon), k - x), 0)
    return _histories(x, t_x, T, alive, future)


def simulate_bgnbd(
    rng: np.random.Generator,
    n: int,
    params: dict[str, float],
    T: float | np.ndarray,
    horizon: float = 0.0,
) -> pd.DataFrame:
    """Simulate BG/NBD histories on (0, T] and the purchases in (T, T + horizon].

    A customer dies right after the K-th repeat purchase, K ~ Geometric(p) on {1, 2, ...};
    N(T) ~ Poisson(lambda T) purchases would happen while alive, so x = min(N, K) and t_x is
    the x-th of N uniform arrival times: T * Beta(x, N - x + 1). Alive at T iff N < K; by
    memorylessness, future purchases are min(Poisson(lambda t), K - x).

    Parameters
    ----------
    rng
        Source of randomness.
    n
        Number of customers.
    params
        ``r``, ``alpha`` (lambda ~ Gamma(r, rate alpha)), ``a``, ``b`` (p ~ Beta(a, b)).
    T
        Each customer's age at the end of observation: a scalar or one per customer.
    horizon
        Length of the window after T whose purchases are counted in ``future``.

    Returns
    -------
    pandas.DataFrame
        ``frequency``, ``recency``, ``T``, ``alive`` (at T) and ``future`` (purchases in
        (T, T + horizon]), one row per customer.
    """
    return _bg_family(rng, n, params, T, horizon, extra_chance=0)


def simulate_mbgnbd(
    rng: np.random.Generator,
    n: int,
    params: dict[str, float],
    T: float | np.ndarray,
    horizon: float = 0.0,
) -> pd.DataFrame:
    """Simulate MBG/NBD histories on (0, T] and the purchases in (T, T + horizon].

    Dropout chances come at time 0 and after each repeat purchase; the first fatal one is
    the G-th, G ~ Geometric(p) on {1, 2, ...}, so at most K = G - 1 repeat purchases happen.
    With N(T) ~ Poisson(lambda T) arrivals while alive, x = min(N, K) and t_x is the x-th of
    N uniform arrival times, T * Beta(x, N - x + 1). Alive at T iff N < K (the chance after
    the x-th purchase was survived); by memorylessness the future purchases are
    min(Poisson(lambda t), K - x).

    Parameters and return value as :func:`simulate_bgnbd`.
    """
    return _bg_family(rng, n, params, T, horizon, extra_chance=1)


def simulate_pareto_nbd(
    rng: np.random.Generator,
    n: int,
    params: dict[str, float],
    T: float | np.ndarray,
    horizon: float = 0.0,
) -> pd.DataFrame:
    """Simulate Pareto/NBD histories on (0, T] and the purchases in (T, T + horizon].

    lambda ~ Gamma(r, alpha), mu ~ Gamma(s, beta), lifetime tau ~ Exp(mu); while alive,
    purchases are Poisson(lambda): x ~ Poisson(lambda min(tau, T)) and t_x is the largest of
    x uniform times on (0, min(tau, T)], i.e. min(tau, T) * Beta(x, 1). The window sees
    Poisson(lambda * (min(tau, T + horizon) - T)) purchases if tau > T.

    Parameters as :func:`simulate_bgnbd`, with ``params`` ``r``, ``alpha``, ``s``, ``beta``
    (both gammas with a rate parameter); return value as there.
    """
    T = np.broadcast_to(np.asarray(T, dtype=float), (n,))
    lam = rng.gamma(params["r"], 1.0 / params["alpha"], n)
    mu = rng.gamma(params["s"], 1.0 / params["beta"], n)
    tau = rng.exponential(1.0 / mu)
    seen = np.minimum(tau, T)
    x = rng.poisson(lam * seen)
    t_x = np.where(x > 0, seen * rng.beta(np.maximum(x, 1), 1.0), 0.0)
    alive = tau > T
    active = np.clip(np.minimum(tau, T + horizon) - T, 0.0, None)
    future = rng.poisson(lam * active)
    return _histories(x, t_x, T, alive, future)


def simulate_gamma_gamma(
    rng: np.random.Generator,
    n: int,
    params: dict[str, float],
    mean_frequency: float = 3.0,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Simulate the mean spend of repeat buyers under the Gamma-Gamma model.

    x ~ 1 + Poisson(mean_frequency); nu ~ Gamma(q, rate v); the x spends are
    Gamma(p, rate nu) each, so their total x * m ~ Gamma(p x, rate nu).

    Parameters
    ----------
    rng
        Source of randomness.
    n
        Number of customers (all repeat buyers).
    params
        ``p``, ``q``, ``v``.
    mean_frequency
        Mean of x - 1.

    Returns
    -------
    tuple of pandas.DataFrame and numpy.ndarray
        ``frequency`` and ``monetary_value`` (mean spend) per customer, and each customer's
        true mean spend per transaction zeta = p / nu.
    """
    nu = rng.gamma(params["q"], 1.0 / params["v"], n)
    x = 1 + rng.poisson(mean_frequency, n)
    m = rng.gamma(params["p"] * x, 1.0 / nu) / x
    return pd.DataFrame({"frequency": x, "monetary_value": m}), params["p"] / nu


def cohort_ages(
    rng: np.random.Generator, n: int, first: int = 13, last: int = 52, unit: float = 1.0
) -> np.ndarray:
    """Ages T of ``n`` customers who joined in cohorts: a whole number in [first, last],
    each equally likely, times ``unit`` (e.g. whole weeks with unit 1, or whole days in
    weeks with first and last in days and unit 1 / 7)."""
    return rng.integers(first, last + 1, n) * unit


def on_grid(histories: pd.DataFrame, step: float) -> pd.DataFrame:
    """The histories with recency rounded to the nearest multiple of ``step`` (kept <= T).

    Models recording purchase times at a finite resolution (``step = 1 / 7`` for whole days
    in weeks) and makes many customers share the same (frequency, recency, T), which the
    fitters compress. T must already be a multiple of ``step``; a rounded recency may be 0
    for a repeat buyer (all purchases on the first day), which every model allows.
    """
    grid = histories.copy()
    rounded = np.round(grid["recency"].to_numpy() / step) * step
    grid["recency"] = np.minimum(rounded, grid["T"].to_numpy())
    return grid


def simulate_mbgcnbd(
    rng: np.random.Generator,
    k: int,
    params: dict[str, float],
    T: np.ndarray,
    horizon: float,
) -> pd.DataFrame:
    """Simulate MBG/CNBD-k histories on (0, T] (BTYDplus ``mbgcnbd.GenerateData``) and the
    purchases in (T, T + horizon], one customer per element of ``T``.

    lambda ~ Gamma(r, alpha), p ~ Beta(a, b); the times between purchases are Erlang-k
    (Gamma(k, rate lambda)); right after each purchase, the first included, the customer
    drops out with probability p. Returns ``frequency``, ``recency``, ``T``, ``litt`` (the
    sum of the logs of the times between purchases in (0, T]) and ``x_star``.
    """
    n = len(T)
    rate = rng.gamma(params["r"], 1.0 / params["alpha"], n)
    p = rng.beta(params["a"], params["b"], n)
    x, t_x, litt, x_star, now = (np.zeros(n) for _ in range(5))
    active = rng.random(n) >= p
    while active.any():
        gap = rng.gamma(k, 1.0, n) / rate
        bought = active & (now + gap <= T + horizon)
        before = bought & (now + gap <= T)
        now = np.where(bought, now + gap, now)
        x[before] += 1
        t_x[before] = now[before]
        litt[before] += np.log(gap[before])
        x_star[bought & ~before] += 1
        active = bought & (rng.random(n) >= p)
    return pd.DataFrame(
        {"frequency": x, "recency": t_x, "T": np.asarray(T, float), "litt": litt, "x_star": x_star}
    )


def simulate_ggompertz_nbd(
    rng: np.random.Generator, n: int, params: dict[str, float], T: float, horizon: float
) -> pd.DataFrame:
    """Simulate GGompertz/NBD histories on (0, T] (the former BTYDplus ``ggnbd.GenerateData``)
    and the purchases in (T, T + horizon]: lambda ~ Gamma(r, alpha); the lifetime from
    S(tau) = (beta / (beta - 1 + e^(b tau)))^s by inversion; Poisson purchases while alive.
    Returns ``frequency``, ``recency``, ``T``, ``x_star`` and ``alive`` (at T)."""
    r, alpha, b, s, beta = (params[k] for k in ("r", "alpha", "b", "s", "beta"))
    rate = rng.gamma(r, 1.0 / alpha, n)
    lifetime = np.log(1.0 - beta + beta / (1.0 - rng.random(n)) ** (1.0 / s)) / b
    x, t_x, x_star, now = (np.zeros(n) for _ in range(4))
    active = np.ones(n, dtype=bool)
    while active.any():
        now = now + rng.exponential(1.0, n) / rate
        bought = active & (now < np.minimum(lifetime, T + horizon))
        before = bought & (now <= T)
        x[before] += 1
        t_x[before] = now[before]
        x_star[bought & ~before] += 1
        active = bought
    return pd.DataFrame(
        {"frequency": x, "recency": t_x, "T": T, "x_star": x_star, "alive": lifetime > T}
    )


def assert_recovers(model: Any, truth: dict[str, float], z: float = 4.0) -> None:
    """Assert that a fitted BTYD model converged, that each standard error is finite and
    positive, and that each parameter is within ``z`` standard errors of ``truth``."""
    assert model.converged_
    assert list(model.params_.index) == list(truth)
    for name, value in truth.items():
        se = model.stderr_[name]
        assert np.isfinite(se) and se > 0, (name, se)
        assert abs(model.params_[name] - value) < z * se, (name, model.params_[name], se)


def simulate_transactions(
    rng: np.random.Generator,
    n: int,
    *,
    days: int = 540,
    start: str = "2023-01-02",
    segment_effect: float = 3.0,
) -> pd.DataFrame:
    """Transactions of ``n`` customers who never drop out: each joins on a uniform day in the
    first 90 days and buys at a constant rate (purchases per day ~ Gamma(2, 1/40)), times
    ``segment_effect`` in segment ``"B"`` (half the customers); spend per purchase ~ Gamma(4,
    scale 10 / 4 * spend level). Rows ``customer_id, date, amount, segment`` (a static
    covariate: the same on every row of a customer) and the true daily ``rate`` per customer
    in ``.attrs["rate"]``."""
    segment = np.where(rng.random(n) < 0.5, "A", "B")
    rate = rng.gamma(2.0, 1 / 40, n) * np.where(segment == "B", segment_effect, 1.0)
    joined = rng.integers(0, 90, n)
    level = rng.gamma(5.0, 1 / 5, n)
    counts = rng.poisson(rate * (days - joined)) + 1  # the first purchase, then the process
    owner = np.repeat(np.arange(n), counts)
    first = np.r_[0, np.cumsum(counts)[:-1]]
    offsets = joined[owner] + rng.random(owner.size) * (days - joined[owner])
    offsets[first] = joined  # the first purchase is the day the customer joins
    amount = rng.gamma(4.0, 10 / 4 * level[owner])
    ids = np.char.add("c", np.arange(n).astype(str))
    frame = pd.DataFrame(
        {
            "customer_id": ids[owner],
            "date": pd.Timestamp(start) + pd.to_timedelta(np.floor(offsets), unit="D"),
            "amount": amount,
            "segment": segment[owner],
        }
    )
    frame.attrs["rate"] = pd.Series(rate, index=ids)
    return frame
