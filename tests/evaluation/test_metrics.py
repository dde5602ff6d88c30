import numpy as np
import pytest

from clvlab.evaluation import metrics


def test_error_metrics_by_hand():
    actual, predicted = np.array([0, 2, 4]), np.array([1, 2, 2])
    assert metrics.mae(actual, predicted) == pytest.approx(1.0)
    assert metrics.rmse(actual, predicted) == pytest.approx(np.sqrt(5 / 3))
    assert metrics.bias_pct(actual, predicted) == pytest.approx(100 * (5 - 6) / 6)


def test_roc_auc_and_single_class():
    assert metrics.roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert np.isnan(metrics.roc_auc([1, 1], [0.2, 0.3]))


def test_normalized_gini_perfect_reverse_and_ties():
    actual = np.array([1.0, 2.0, 3.0, 10.0])
    assert metrics.normalized_gini(actual, actual) == pytest.approx(1.0)
    assert metrics.normalized_gini(actual, actual * 3 + 1) == pytest.approx(1.0)
    assert metrics.normalized_gini(actual, -actual) == pytest.approx(-1.0)
    # All predictions tied: no ranking information at all.
    assert metrics.normalized_gini(actual, np.zeros(4)) == pytest.approx(0.0)
    # Gini by hand: Lorenz points 10/16, 13/16, 15/16, 1 -> mean 0.84375 - 5/8.
    assert metrics.gini(actual, actual) == pytest.approx(0.84375 - 0.625)


def test_rank_metrics_equal_scipy_and_scikit_learn_with_ties():
    """``spearman`` and ``roc_auc`` (average ranks, no SciPy or scikit-learn import) give
    what ``scipy.stats.spearmanr`` and ``sklearn.metrics.roc_auc_score`` give, ties
    included."""
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(4)
    for size in (2, 7, 50, 2_000):
        actual = rng.poisson(1.0, size).astype(float)
        predicted = np.round(rng.gamma(1.0, 1.0, size), 1)  # many ties
        event = np.arange(size) % 3 == 0
        if np.ptp(actual) and np.ptp(predicted):
            expected = spearmanr(actual, predicted).statistic
            assert metrics.spearman(actual, predicted) == pytest.approx(expected, abs=1e-14)
        assert metrics.roc_auc(event, predicted) == pytest.approx(
            roc_auc_score(event, predicted), abs=1e-14
        )
