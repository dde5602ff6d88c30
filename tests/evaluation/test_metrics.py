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
