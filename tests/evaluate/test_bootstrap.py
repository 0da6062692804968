"""Bootstrap over patients: intervals hold the estimate, narrow with patients, resample patients."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    roc_auc_score,
)

from clinlm.evaluate import stats
from clinlm.evaluate.bootstrap import bootstrap_ci, patient_draws, resample_weights


def _binary(n_patients: int, rows_per_patient: int, p_correct: float = 0.7, seed: int = 0):
    """Rows where each patient's answers are all right or all wrong (as happens with one recording)."""
    rng = np.random.default_rng(seed)
    right = rng.random(n_patients) < p_correct
    patients = np.repeat([f"p{i}" for i in range(n_patients)], rows_per_patient)
    correct = np.repeat(right, rows_per_patient).astype(float)
    return patients, correct


def test_ci_contains_point_estimate_for_every_metric():
    rng = np.random.default_rng(3)
    n = 120
    patients = rng.integers(0, 40, n)
    y_true = rng.choice(["yes", "no"], n)
    y_pred = np.where(rng.random(n) < 0.8, y_true, rng.choice(["yes", "no", "unparseable"], n))
    scores = np.clip((y_true == "yes") * 0.4 + rng.random(n) * 0.6, 0, 1)
    for metric, args in [
        (stats.accuracy, (y_true, y_pred)),
        (stats.balanced_accuracy, (y_true, y_pred)),
        (stats.binary_f1, (y_true, y_pred)),
        (stats.auroc, (y_true, y_pred, scores)),
    ]:
        ci = bootstrap_ci(metric, *args, patients=patients, n_boot=300)
        assert ci.low <= ci.value <= ci.high, metric.__name__
        assert ci.high - ci.low > 0, metric.__name__
        assert ci.n == n and ci.n_patients == len(set(patients))


def test_ci_narrows_with_more_patients():
    patients, correct = _binary(20, 1)
    few = bootstrap_ci(stats.mean_value, np.zeros(20), correct, patients=patients)
    patients, correct = _binary(500, 1)
    many = bootstrap_ci(stats.mean_value, np.zeros(500), correct, patients=patients)
    assert (many.high - many.low) < 0.5 * (few.high - few.low)


def test_resamples_patients_not_rows():
    # 30 patients with 10 identical rows each carry the information of 30 rows, not 300.
    patients, correct = _binary(30, 10)
    grouped = bootstrap_ci(stats.mean_value, np.zeros(300), correct, patients=patients, n_boot=500)
    one_row_each = bootstrap_ci(stats.mean_value, np.zeros(30), correct[::10], patients=patients[::10], n_boot=500)
    by_row = bootstrap_ci(stats.mean_value, np.zeros(300), correct, patients=np.arange(300), n_boot=500)
    assert grouped.n_patients == 30
    # same draws of the same 30 patients: the same interval as one row per patient
    assert grouped.low == pytest.approx(one_row_each.low) and grouped.high == pytest.approx(one_row_each.high)
    # resampling rows would pretend to know ~sqrt(10) times more
    assert (grouped.high - grouped.low) > 2.0 * (by_row.high - by_row.low)


def test_resample_weights_keep_patients_together_and_sum_to_rows():
    patients = ["a", "a", "b", "c", "c", "c"]
    w = resample_weights(patients, n_boot=50, seed=1)
    assert w.shape == (50, 6)
    assert (w[:, 0] == w[:, 1]).all() and (w[:, 3] == w[:, 4]).all() and (w[:, 4] == w[:, 5]).all()
    assert (patient_draws(3, 50, 1).sum(axis=1) == 3).all()  # P patients drawn per replicate


def test_vectorised_and_generic_paths_agree():
    """Any plain metric works (resampled rows); the weighted fast path gives the same replicates."""
    rng = np.random.default_rng(5)
    n = 60
    patients = rng.integers(0, 15, n)
    y_true = rng.choice(["yes", "no"], n)
    y_pred = rng.choice(["yes", "no"], n)
    scores = rng.random(n)
    pairs = [
        (stats.accuracy, lambda t, p: accuracy_score(t, p), (y_true, y_pred)),
        (stats.auroc, lambda t, p, s: roc_auc_score(t == "yes", s) if len(set(t)) == 2 else float("nan"), (y_true, y_pred, scores)),
    ]
    for fast, plain, args in pairs:
        a = bootstrap_ci(fast, *args, patients=patients, n_boot=200, seed=7)
        b = bootstrap_ci(plain, *args, patients=patients, n_boot=200, seed=7)
        assert (a.value, a.low, a.high) == pytest.approx((b.value, b.low, b.high))


def test_weighted_forms_equal_sklearn_sample_weight():
    rng = np.random.default_rng(11)
    n = 80
    y_true = rng.choice(["yes", "no"], n)
    y_pred = rng.choice(["yes", "no", "unparseable"], n)
    scores = np.round(rng.random(n), 1)  # ties on purpose
    weights = rng.integers(0, 4, (6, n)).astype(float)
    for b, w in enumerate(weights):
        assert stats.accuracy(y_true, y_pred, weights=weights)[b] == pytest.approx(accuracy_score(y_true, y_pred, sample_weight=w))
        with pytest.warns(UserWarning):  # sklearn: "y_pred contains classes not in y_true"
            expected = balanced_accuracy_score(y_true, y_pred, sample_weight=w)
        assert stats.balanced_accuracy(y_true, y_pred, weights=weights)[b] == pytest.approx(expected)
        assert stats.binary_f1(y_true, y_pred, weights=weights)[b] == pytest.approx(f1_score(y_true == "yes", y_pred == "yes", sample_weight=w))
        assert stats.auroc(y_true, y_pred, scores, weights=weights)[b] == pytest.approx(roc_auc_score(y_true == "yes", scores, sample_weight=w))


def test_fixed_seed_is_deterministic_and_seed_matters():
    patients, correct = _binary(40, 2)
    a = bootstrap_ci(stats.mean_value, np.zeros(80), correct, patients=patients, seed=0)
    b = bootstrap_ci(stats.mean_value, np.zeros(80), correct, patients=patients, seed=0)
    c = bootstrap_ci(stats.mean_value, np.zeros(80), correct, patients=patients, seed=1, n_boot=1000)
    assert a == b
    assert (a.low, a.high) != (c.low, c.high)


def test_undefined_replicates_are_left_out_and_counted():
    # one positive patient: many replicates have no positive, AUROC undefined there
    y_true = np.array(["yes", "no", "no", "no", "no", "no"])
    scores = np.array([0.9, 0.1, 0.2, 0.3, 0.4, 0.5])
    ci = bootstrap_ci(stats.auroc, y_true, y_true, scores, patients=list("abcdef"), n_boot=200)
    assert ci.value == 1.0
    assert 0 < ci.n_undefined < 200
    assert ci.low == ci.high == 1.0


def test_length_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="one y_pred, score and patient per row"):
        bootstrap_ci(stats.accuracy, ["yes"], ["yes", "no"], patients=["a"])
