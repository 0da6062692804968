"""95% confidence intervals by a bootstrap over PATIENTS.

Rows of one patient are not independent (several recordings, several questions per recording),
so resampling rows would give intervals that are too narrow. Each bootstrap replicate draws the
patients with replacement (as many as there are) and keeps all rows of every drawn patient; the
interval is the percentile interval of the metric over the replicates (seed fixed, so the same
inputs always give the same interval).

A replicate is represented by row *multiplicities*: a matrix `w` of shape (n_boot, n_rows) where
`w[b, i]` is how many times row i's patient was drawn in replicate b. For the metrics in
`clinlm.evaluate.metrics` (accuracy, F1, balanced accuracy, AUROC, ratios of sums), a metric
evaluated on the resampled rows equals the same metric with these multiplicities as sample
weights, so all replicates are computed at once with numpy. Those metrics are marked with
`@vectorised` and accept `weights=` of shape (n_boot, n_rows). Any other metric function of
`(y_true, y_pred[, scores])` works too: it is called once per replicate on index-resampled arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

DEFAULT_N_BOOT = 1000
DEFAULT_SEED = 0
DEFAULT_LEVEL = 0.95
# Largest (n_boot x n_rows) weight block held in memory at once (float64: 8 bytes each -> 64 MB).
_MAX_BLOCK = 8_000_000


@dataclass(frozen=True)
class CI:
    """A point estimate with its bootstrap-over-patients percentile interval."""

    value: float
    low: float
    high: float
    n: int  # rows
    n_patients: int
    n_boot: int
    n_undefined: int = 0  # replicates where the metric was undefined (e.g. AUROC with one class)


def vectorised(fn: Callable) -> Callable:
    """Mark a metric that accepts `weights` of shape (n_boot, n_rows) and returns (n_boot,) values."""
    fn.vectorised = True
    return fn


def patient_index(patients: Sequence[Any]) -> tuple[np.ndarray, int]:
    """Map each row's patient id to 0..P-1; returns (row -> patient index (n_rows,), P)."""
    _, inverse = np.unique(np.asarray([str(p) for p in patients], dtype=object), return_inverse=True)
    inverse = inverse.astype(np.int64).ravel()
    return inverse, int(inverse.max()) + 1 if len(inverse) else 0


def patient_draws(n_patients: int, n_boot: int = DEFAULT_N_BOOT, seed: int = DEFAULT_SEED) -> np.ndarray:
    """How often each patient is drawn in each replicate: (n_boot, n_patients) integer counts.

    Drawing P patients uniformly with replacement is a multinomial(P, 1/P) draw, so all replicates
    come from one vectorised call.
    """
    if n_patients <= 0:
        return np.zeros((n_boot, 0), dtype=np.int64)
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_patients, np.full(n_patients, 1.0 / n_patients), size=n_boot)


def resample_weights(patients: Sequence[Any], n_boot: int = DEFAULT_N_BOOT, seed: int = DEFAULT_SEED) -> np.ndarray:
    """Row multiplicities of every replicate: (n_boot, n_rows); all rows of a patient share a column value."""
    index, n_patients = patient_index(patients)
    return patient_draws(n_patients, n_boot, seed)[:, index].astype(np.float64)


def percentile_interval(values: np.ndarray, level: float = DEFAULT_LEVEL) -> tuple[float, float, int]:
    """(low, high, number of undefined replicates) of the percentile interval, NaN replicates left out."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    undefined = int(values.size - finite.size)
    if finite.size == 0:
        return math.nan, math.nan, undefined
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return float(low), float(high), undefined


def bootstrap_ci(
    metric: Callable,
    y_true: Sequence | np.ndarray,
    y_pred: Sequence | np.ndarray,
    scores: Sequence | np.ndarray | None = None,
    *,
    patients: Sequence[Any],
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
    level: float = DEFAULT_LEVEL,
) -> CI:
    """Point estimate and percentile CI of `metric(y_true, y_pred[, scores])`, resampling patients.

    `patients[i]` is the patient of row i. A metric marked `@vectorised` gets all replicates as one
    weight matrix; any other callable is evaluated once per replicate on resampled rows.
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    scores = None if scores is None else np.asarray(scores, dtype=np.float64)
    n = len(y_true)
    if len(y_pred) != n or len(patients) != n or (scores is not None and len(scores) != n):
        raise ValueError(
            f"bootstrap_ci needs one y_pred, score and patient per row: got {n} y_true, {len(y_pred)} y_pred, "
            f"{len(patients)} patients{'' if scores is None else f', {len(scores)} scores'}"
        )
    args = (y_true, y_pred) if scores is None else (y_true, y_pred, scores)
    index, n_patients = patient_index(patients)
    if n == 0:
        return CI(math.nan, math.nan, math.nan, 0, 0, n_boot)
    value = _as_float(metric(*args))
    draws = patient_draws(n_patients, n_boot, seed)  # (n_boot, P)
    if getattr(metric, "vectorised", False):
        # Blocks of replicates keep the (block, n_rows) weight matrix under _MAX_BLOCK numbers.
        block = max(1, _MAX_BLOCK // max(n, 1))
        parts = [
            np.asarray(metric(*args, weights=draws[start : start + block][:, index].astype(np.float64)), dtype=np.float64)
            for start in range(0, n_boot, block)
        ]
        replicates = np.concatenate(parts) if parts else np.empty(0)
    else:
        replicates = np.array([_as_float(metric(*(a[idx] for a in args))) for idx in _resampled_rows(index, draws)])
    low, high, undefined = percentile_interval(replicates, level)
    return CI(value, low, high, n, n_patients, n_boot, undefined)


def _resampled_rows(index: np.ndarray, draws: np.ndarray):
    """Row indices of each replicate (all rows of every drawn patient, repeated as often as drawn)."""
    order = np.argsort(index, kind="stable")  # rows grouped by patient
    sizes = np.bincount(index, minlength=draws.shape[1])  # rows per patient
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    for counts in draws:
        drawn = np.repeat(np.arange(len(counts)), counts)  # patient ids, with repeats
        lengths = sizes[drawn]
        # position of each output row inside its patient's block: 0..size-1 per drawn patient
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        yield order[np.repeat(starts[drawn], lengths) + offsets]


def _as_float(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan
