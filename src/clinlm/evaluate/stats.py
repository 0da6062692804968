"""The metric functions, each usable for a point estimate and for all bootstrap replicates at once.

Every function takes `(y_true, y_pred[, scores])` arrays of one value per row. With `weights=None`
it returns one float, computed with scikit-learn where it has the metric (accuracy, balanced
accuracy, AUROC) and with the textbook formula otherwise (F1 = 2TP / (2TP + FP + FN)). With `weights`
of shape (n_boot, n_rows) - row multiplicities of patient-level resamples, see
`clinlm.evaluate.bootstrap` - it returns the (n_boot,) values of the same metric with those
multiplicities as sample weights, computed with numpy in one pass (a test checks that they equal
scikit-learn's `sample_weight` results). An undefined value (no rows, a class missing for AUROC)
is NaN, never a made-up number.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score

from clinlm.evaluate.bootstrap import vectorised

POSITIVE = "yes"


def _w(weights: np.ndarray | None, n: int) -> np.ndarray:
    return np.ones((1, n)) if weights is None else np.asarray(weights, dtype=np.float64)


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


@vectorised
def accuracy(y_true, y_pred, weights=None):
    """Fraction of rows where the prediction equals the truth (an unparseable prediction never does)."""
    y_true, y_pred = np.asarray(y_true, dtype=object), np.asarray(y_pred, dtype=object)
    if weights is None:
        return float(accuracy_score(y_true.astype(str), y_pred.astype(str))) if len(y_true) else math.nan
    w = _w(weights, len(y_true))
    return _divide(w @ (y_true == y_pred).astype(np.float64), w.sum(axis=1))


@vectorised
def mean_value(y_true, y_pred, weights=None):
    """Mean of a per-row number in `y_pred` (a 0/1 flag, a ROUGE-L, a BERTScore); `y_true` is unused."""
    values = np.asarray(y_pred, dtype=np.float64)
    if weights is None:
        return float(values.mean()) if len(values) else math.nan
    w = _w(weights, len(values))
    return _divide(w @ values, w.sum(axis=1))


@vectorised
def ratio_of_sums(y_true, y_pred, weights=None):
    """sum(y_pred) / sum(y_true): e.g. correct fields / fields, pooled over rows (micro average)."""
    den, num = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    w = _w(weights, len(den))
    out = _divide(w @ num, w @ den)
    return float(out[0]) if weights is None else out


@vectorised
def balanced_accuracy(y_true, y_pred, weights=None):
    """Mean recall over the classes present in `y_true` (a prediction outside them counts as wrong)."""
    y_true, y_pred = np.asarray(y_true, dtype=object).astype(str), np.asarray(y_pred, dtype=object).astype(str)
    if weights is None:
        if not len(y_true):
            return math.nan
        with warnings.catch_warnings():  # "y_pred contains classes not in y_true": unparseable, wrong
            warnings.simplefilter("ignore")
            return float(balanced_accuracy_score(y_true, y_pred))
    w = _w(weights, len(y_true))
    recalls = []
    for c in np.unique(y_true):
        is_c = (y_true == c).astype(np.float64)
        recalls.append(_divide(w @ (is_c * (y_pred == c)), w @ is_c))  # NaN when class c was not drawn
    with warnings.catch_warnings():  # a replicate with no class drawn stays NaN ("Mean of empty slice")
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.vstack(recalls), axis=0)


@vectorised
def binary_f1(y_true, y_pred, weights=None):
    """F1 of the positive class ("yes"); NaN (undefined) when there is neither a positive label nor prediction."""
    t = np.asarray(y_true, dtype=object).astype(str) == POSITIVE
    p = np.asarray(y_pred, dtype=object).astype(str) == POSITIVE
    # F1 = 2TP / (2TP + FP + FN), which equals sklearn's f1_score wherever that is defined (tested);
    # sklearn's zero_division options would replace an undefined precision instead of the F1.
    w = _w(weights, len(t))
    tp, fp, fn = w @ (t & p), w @ (~t & p), w @ (t & ~p)
    out = _divide(2 * tp, 2 * tp + fp + fn)
    return float(out[0]) if weights is None else out


@vectorised
def auroc(y_true, y_pred, scores, weights=None):
    """Area under the ROC curve of `scores` (P(yes)) for `y_true == "yes"`; `y_pred` is unused.

    Weighted form: AUROC = sum over positive i, negative j of w_i w_j [s_i > s_j] (+ half for ties),
    divided by (sum w_pos)(sum w_neg). Scores are binned by unique value so this is one sparse
    product and a cumulative sum per replicate.
    """
    t = np.asarray(y_true, dtype=object).astype(str) == POSITIVE
    s = np.asarray(scores, dtype=np.float64)
    if weights is None:
        if t.all() or not t.any() or not np.isfinite(s).all():
            return math.nan
        return float(roc_auc_score(t, s))
    w = _w(weights, len(t))
    _, bins = np.unique(s, return_inverse=True)
    onehot = sp.csr_matrix((np.ones(len(s)), (np.arange(len(s)), bins.ravel())))  # (n_rows, n_unique)
    pos = np.asarray((onehot.T @ (w * t).T).T)  # (n_boot, n_unique): positive weight at each score
    neg = np.asarray((onehot.T @ (w * ~t).T).T)  # negative weight at each score
    neg_below = np.cumsum(neg, axis=1) - neg
    num = (pos * (neg_below + 0.5 * neg)).sum(axis=1)
    out = _divide(num, pos.sum(axis=1) * neg.sum(axis=1))
    return out if np.isfinite(s).all() else np.full(len(w), np.nan)


def set_counts(y_true, y_pred) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row true positives, false positives, false negatives between sets of labels."""
    tp = np.array([len(set(t) & set(p)) for t, p in zip(y_true, y_pred)], dtype=np.float64)
    fp = np.array([len(set(p) - set(t)) for t, p in zip(y_true, y_pred)], dtype=np.float64)
    fn = np.array([len(set(t) - set(p)) for t, p in zip(y_true, y_pred)], dtype=np.float64)
    return tp, fp, fn


@vectorised
def micro_f1(y_true, y_pred, weights=None):
    """Micro-averaged F1 between per-row label sets (e.g. event types), pooled over all rows.

    NaN (undefined) when no row has a label on either side.
    """
    tp, fp, fn = set_counts(y_true, y_pred)
    w = _w(weights, len(tp))
    tp, fp, fn = w @ tp, w @ fp, w @ fn
    out = _divide(2 * tp, 2 * tp + fp + fn)  # = sklearn's micro F1 over binarised labels where defined (tested)
    return float(out[0]) if weights is None else out
