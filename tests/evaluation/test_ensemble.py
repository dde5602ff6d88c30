"""The ensemble candidate: convex blend weights, out-of-fold validation predictions."""

import numpy as np
import pandas as pd
import pytest

from clvlab.evaluation.ensemble import (
    FOLDS,
    Blend,
    convex_weights,
    fit_blend,
    fold_of,
    out_of_fold,
)

RULE = {"purchases": "purchases_mae", "churn": "churn_roc_auc", "revenue": "revenue_mae"}


def _frame(actual_purchases, predicted, p_churn, index) -> pd.DataFrame:
    actual_purchases = np.asarray(actual_purchases, float)
    return pd.DataFrame(
        {
            "frequency_cal": 0.0,
            "actual_purchases": actual_purchases,
            "predicted_purchases": predicted,
            "actual_churn": actual_purchases == 0,
            "p_churn": p_churn,
        },
        index=index,
    )


def test_log_loss_weights_recover_the_mixture_the_events_were_drawn_from():
    """Events drawn with probability 0.3 p1 + 0.7 p2: the log-loss blend finds (0.3, 0.7)."""
    rng = np.random.default_rng(0)
    p1, p2 = rng.uniform(0.05, 0.95, (2, 200_000))
    events = rng.uniform(size=p1.size) < 0.3 * p1 + 0.7 * p2
    weights = convex_weights(np.column_stack([p1, p2]), events, "log")
    np.testing.assert_allclose(weights, [0.3, 0.7], atol=0.01)
    assert weights.sum() == pytest.approx(1.0) and (weights >= 0).all()


def test_squared_and_absolute_weights_on_hand_cases():
    actual = np.array([0.0, 1.0, 2.0, 3.0])
    exact = actual.copy()
    # One member is the truth: all weight on it, whatever the loss.
    for loss in ("squared", "absolute"):
        weights = convex_weights(np.column_stack([exact + 5.0, exact]), actual, loss)
        np.testing.assert_allclose(weights, [0.0, 1.0], atol=1e-3)  # absolute: smoothed
    # Members above and below the truth by the same amount: half each for squared error.
    weights = convex_weights(np.column_stack([actual + 1.0, actual - 1.0]), actual, "squared")
    np.testing.assert_allclose(weights, [0.5, 0.5], atol=1e-6)
    # Absolute error: total 4 - 2 w with w the weight of the member right on three of four
    # rows (off by 2 on the fourth) against one off by 1 on every row: all on the first.
    three_right = np.array([0.0, 1.0, 2.0, 5.0])
    weights = convex_weights(np.column_stack([three_right, actual + 1.0]), actual, "absolute")
    np.testing.assert_allclose(weights, [1.0, 0.0], atol=1e-3)


def test_smoothed_absolute_weights_equal_the_linear_programs():
    """The least absolute error over the simplex, solved exactly as a linear program, on
    counts with ties (as purchases are): the smoothed solution is within 0.01 of it."""
    from scipy import sparse
    from scipy.optimize import linprog

    rng = np.random.default_rng(1)
    n = 3000
    actual = rng.poisson(0.7, n).astype(float)
    matrix = np.column_stack(
        [np.clip(actual * s + rng.gamma(1.0, 0.4, n), 0, None) for s in (0.6, 0.9, 1.3)]
    )
    fit = sparse.hstack([sparse.csr_matrix(matrix), sparse.identity(n), -sparse.identity(n)])
    total = sparse.csr_matrix(np.r_[np.ones(3), np.zeros(2 * n)][None, :])
    exact = linprog(
        np.r_[np.zeros(3), np.ones(2 * n)],
        A_eq=sparse.vstack([fit, total]),
        b_eq=np.r_[actual, 1.0],
        bounds=(0, None),
        method="highs",
    ).x[:3]
    smoothed = convex_weights(matrix, actual, "absolute")
    np.testing.assert_allclose(smoothed, exact, atol=0.01)
    mae = [np.mean(np.abs(matrix @ w - actual)) for w in (smoothed, exact)]
    assert mae[0] == pytest.approx(mae[1], rel=1e-4)


def test_a_blend_that_keeps_one_candidate_is_that_candidate():
    index = pd.Index([f"c{i}" for i in range(40)], name="customer_id")
    actual = np.arange(40) % 3
    good = _frame(actual, actual + 0.01, np.where(actual == 0, 0.9, 0.1), index)
    bad = _frame(actual, actual + 7.0, np.full(40, 0.5), index)
    blend = fit_blend({"good": good, "bad": bad}, RULE)
    assert blend.weights["purchases"] == {"good": 1.0}
    assert blend.weights["churn"] == {"good": 1.0}
    assert "revenue" not in blend.weights  # no revenue columns: nothing to blend
    pd.testing.assert_frame_equal(blend.predict({"good": good, "bad": bad}), good)


def test_blend_predicts_the_weighted_sum_in_the_first_frames_order():
    index = pd.Index(["a", "b", "c"], name="customer_id")
    one = _frame([0, 1, 2], [1.0, 2.0, 3.0], [0.2, 0.4, 0.6], index)
    two = _frame([0, 1, 2], [3.0, 0.0, 1.0], [0.6, 0.2, 0.2], index).iloc[::-1]
    blend = Blend({"purchases": {"one": 0.25, "two": 0.75}, "churn": {"two": 1.0}})
    blended = blend.predict({"one": one, "two": two})
    np.testing.assert_allclose(blended["predicted_purchases"], [2.5, 0.5, 1.5])
    np.testing.assert_allclose(blended["p_churn"], [0.6, 0.2, 0.2])
    assert list(blended.index) == ["a", "b", "c"]


def test_folds_are_a_stable_hash_of_the_id():
    ids = pd.Index([str(i) for i in range(1000)])
    folds = fold_of(ids)
    assert set(folds) == set(range(FOLDS))
    assert np.bincount(folds).min() > 150  # about 200 each
    np.testing.assert_array_equal(fold_of(ids[::-1]), folds[::-1])
    assert fold_of(pd.Index(["42"]))[0] == 3  # crc32(b"42") = 841265288, on any machine


def test_out_of_fold_predictions_use_weights_fitted_without_the_fold():
    """Each fold is predicted with the blend fitted on the other folds, exactly."""
    rng = np.random.default_rng(3)
    n = 500
    index = pd.Index([f"id{i}" for i in range(n)], name="customer_id")
    actual = rng.poisson(1.0, n)
    frames = {
        "low": _frame(actual, 0.6 * actual + rng.uniform(0, 1, n), rng.uniform(0, 1, n), index),
        "high": _frame(actual, 1.3 * actual + rng.uniform(0, 1, n), rng.uniform(0, 1, n), index),
    }
    oof = out_of_fold(frames, RULE)
    folds = fold_of(index)
    for fold in range(FOLDS):
        inside = folds == fold
        blend = fit_blend({k: f[~inside] for k, f in frames.items()}, RULE)
        expected = blend.predict({k: f[inside] for k, f in frames.items()})
        pd.testing.assert_frame_equal(oof[inside], expected)
    assert list(oof.index) == list(index)


def test_frames_are_matched_by_customer_not_by_position():
    rng = np.random.default_rng(4)
    index = pd.Index([f"c{i}" for i in range(300)], name="customer_id")
    actual = rng.poisson(1.0, 300)
    frames = {
        "good": _frame(actual, actual + 0.1, rng.uniform(0, 1, 300), index),
        "noisy": _frame(actual, rng.uniform(0, 4, 300), rng.uniform(0, 1, 300), index),
    }
    shuffled = {"good": frames["good"], "noisy": frames["noisy"].iloc[::-1]}
    assert fit_blend(shuffled, RULE) == fit_blend(frames, RULE)
    pd.testing.assert_frame_equal(out_of_fold(shuffled, RULE), out_of_fold(frames, RULE))


def test_a_target_the_blend_cannot_predict_has_no_prediction():
    index = pd.Index(["a", "b"], name="customer_id")
    one = _frame([0, 1], [0.5, 1.5], [0.5, 0.5], index)
    two = _frame([0, 1], [1.0, 1.0], [0.4, 0.6], index).drop(columns="p_churn")
    blended = Blend({"purchases": {"one": 0.5, "two": 0.5}, "churn": {"one": 0.5, "two": 0.5}})
    table = blended.predict({"one": one, "two": two})
    assert "p_churn" not in table and "actual_churn" in table  # no churn prediction: no metric
    np.testing.assert_allclose(table["predicted_purchases"], [0.75, 1.25])


def test_weights_stay_weights_when_every_actual_is_zero():
    matrix = np.column_stack([np.full(50, 0.2), np.full(50, 0.5)])
    for loss in ("absolute", "squared"):
        weights = convex_weights(matrix, np.zeros(50), loss)
        assert np.isfinite(weights).all() and weights.sum() == pytest.approx(1.0)
        assert weights[0] > 0.99  # the smaller predictions are nearer the zeros
