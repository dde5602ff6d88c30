"""The diagnostics of lifetimes and PyMC-Marketing: the same numbers as lifetimes' (or, where
lifetimes simulates or no longer runs, as the model's own predictions)."""

import io
import warnings

import numpy as np
import pandas as pd
import pytest
from lifetimes import BetaGeoFitter
from lifetimes.utils import expected_cumulative_transactions as lifetimes_tracking

import simulators
from clvlab import BetaGeo, DataError, calibration_holdout, rfm
from clvlab.evaluation import diagnostic_plots as plots
from clvlab.evaluation import diagnostics


@pytest.fixture(scope="module")
def fitted(cdnow_sample):
    """BG/NBD on the CDNOW sample's 39 calibration weeks (daily resolution), fitted by
    lifetimes, and clvlab's at lifetimes' parameters."""
    summary = rfm(cdnow_sample, "1997-09-30", freq="D", freq_multiplier=7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = BetaGeoFitter().fit(summary["frequency"], summary["recency"], summary["T"])
    ours = BetaGeo().fit(summary, at=dict(theirs.params_))
    return ours, theirs, summary


def test_cumulative_transactions_equal_lifetimes(fitted, cdnow_sample):
    ours, theirs, _ = fitted
    days = 78 * 7
    table = diagnostics.expected_cumulative_transactions(
        ours, cdnow_sample, days, freq="D", freq_multiplier=7
    )
    reference = lifetimes_tracking(
        theirs, cdnow_sample, "date", "customer_id", days, freq="D", freq_multiplier=7
    )
    assert len(table) == 78
    np.testing.assert_array_equal(table["actual"], reference["actual"])
    np.testing.assert_allclose(table["predicted"], reference["predicted"], rtol=1e-10)
    # Points at the end of each week from the first day of the data (1997-01-01).
    assert table.index[0] == pd.Period("1997-01-07", "D")
    # Fader, Hardie and Lee's figure: within a few percent of the actual at the holdout's end.
    assert table["predicted"].iloc[-1] == pytest.approx(table["actual"].iloc[-1], rel=0.05)


def test_alive_path_is_p_alive_of_the_history_as_it_stood(fitted, cdnow_sample):
    model = fitted[0]
    counts = cdnow_sample.groupby("customer_id").size()
    customer = cdnow_sample[cdnow_sample["customer_id"] == counts.idxmax()]
    path = diagnostics.alive_path(model, customer, 200, freq="D", freq_multiplier=7)
    first = customer["date"].min()
    assert len(path) == 201 and path.index[0] == pd.Period(first, "D")
    for day in (0, 1, 30, 77, 150, 200):
        summary = rfm(customer, first + pd.Timedelta(days=day), freq="D", freq_multiplier=7)
        assert path.iloc[day] == pytest.approx(float(model.p_alive(*summary.iloc[0, :3])))
    with pytest.raises(DataError, match="one customer"):
        diagnostics.alive_path(model, cdnow_sample, 10)


def test_matrices_equal_lifetimes_where_a_history_can_be(fitted):
    ours, theirs, _ = fitted
    expected = diagnostics.expected_purchases_matrix(ours, 10.0, 12, 30)
    alive = diagnostics.p_alive_matrix(ours, 12, 30)
    assert expected.shape == alive.shape == (31, 13)
    assert expected.index.name == "recency" and expected.columns.name == "frequency"
    for recency, frequency in [(0, 0), (1, 1), (5, 3), (30, 12), (17, 4)]:
        assert expected.loc[recency, frequency] == pytest.approx(
            theirs.conditional_expected_number_of_purchases_up_to_time(10.0, frequency, recency, 30)
        )
        assert alive.loc[recency, frequency] == pytest.approx(
            theirs.conditional_probability_alive(frequency, recency, 30)
        )
    # No repeat purchase means recency 0, and repeat purchases recency at least one period.
    assert np.isnan(expected.loc[0, 3]) and np.isnan(alive.loc[4, 0])
    assert expected.notna().sum().sum() == 1 + 30 * 12


def test_period_transactions_are_the_models_exact_expectation(fitted):
    """What lifetimes estimates by simulating customers of the same ages, exactly: checked
    against 100 simulated copies of the 2,357 customers (lifetimes' own
    ``probability_of_n_purchases_up_to_time`` is not finite at every age here)."""
    ours, _, summary = fitted
    table = diagnostics.period_transactions(ours, summary, max_frequency=7)
    assert list(table.index) == list(range(8))
    assert table["actual"].sum() == len(summary) == 2357
    assert table["model"].sum() == pytest.approx(2357)
    assert table.loc[0, "actual"] == (summary["frequency"] == 0).sum()
    copies = 100
    ages = np.tile(summary["T"].to_numpy(), copies)
    simulated = simulators.simulate_bgnbd(
        np.random.default_rng(7), len(ages), dict(ours.params_), ages
    )
    counts = np.bincount(np.minimum(simulated["frequency"], 7), minlength=8) / copies
    share = table["model"].to_numpy() / 2357
    # Within 4 standard errors of a share estimated from 235,700 simulated customers.
    tolerance = 4 * np.sqrt(share * (1 - share) / len(ages)) * 2357
    np.testing.assert_array_less(np.abs(counts - table["model"].to_numpy()), tolerance)


def test_calibration_vs_holdout_purchases(fitted, cdnow_sample):
    ours, theirs, _ = fitted
    split = calibration_holdout(cdnow_sample, "1997-09-30", "1998-06-30", freq_multiplier=7)
    table = diagnostics.calibration_vs_holdout_purchases(ours, split, max_frequency=7)
    assert list(table.index) == list(range(8)) and table["customers"].sum() == 2357
    capped = split["frequency_cal"].clip(upper=7)
    predicted = theirs.conditional_expected_number_of_purchases_up_to_time(
        split["duration_holdout"], split["frequency_cal"], split["recency_cal"], split["T_cal"]
    )
    np.testing.assert_allclose(table["predicted"], predicted.groupby(capped).mean(), rtol=1e-9)
    np.testing.assert_allclose(table["actual"], split["frequency_holdout"].groupby(capped).mean())


def test_each_table_has_its_figure(fitted, cdnow_sample):
    model, _, summary = fitted
    customer = cdnow_sample[cdnow_sample["customer_id"] == "1"]
    split = calibration_holdout(cdnow_sample, "1997-09-30", "1998-06-30", freq_multiplier=7)
    figures = [
        plots.plot_cumulative_transactions(
            diagnostics.expected_cumulative_transactions(
                model, cdnow_sample, 546, freq_multiplier=7
            ),
            calibration_end="1997-09-30",
        ),
        plots.plot_alive_path(
            diagnostics.alive_path(model, customer, 100, freq_multiplier=7), customer["date"]
        ),
        plots.plot_matrix(
            diagnostics.p_alive_matrix(model, 10, 39), title="P(alive)", colorbar="P(alive)"
        ),
        plots.plot_period_transactions(diagnostics.period_transactions(model, summary)),
        plots.plot_calibration_vs_holdout(
            diagnostics.calibration_vs_holdout_purchases(model, split)
        ),
    ]
    for figure in figures:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        assert buffer.getvalue().startswith(b"\x89PNG")
        assert figure.axes[0].get_ylabel()
