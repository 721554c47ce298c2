"""Evaluation metrics for reward / progress models (pure numpy).

The metrics used by the TOPReward, GVL, SCORE and LRM papers to score predicted per-frame
progress or reward against time or ground-truth progress:

- :func:`voc` -- Value-Order Correlation (GVL, TOPReward): Spearman rank correlation between
  the predicted values of one episode and time.
- :func:`roc_auc` -- binary ROC-AUC (success detection), via the Mann-Whitney U statistic.
- :func:`kendall_tau_a` -- Kendall tau-a between prediction and target.
- :func:`kendall_tau_trajectory` -- SCORE's "Kendall tau avg / last" over growing prefixes.
- :func:`pearson`, :func:`pearson_per_trajectory` -- Pearson correlation, per trajectory.
- :func:`pairwise_accuracy` -- fraction of target-ordered pairs that the prediction orders alike.
- :func:`direction_accuracy` -- fraction of consecutive target changes whose sign is predicted.
- :func:`monotonicity` -- fraction of non-decreasing consecutive steps.
- :func:`confusion_diagonal_share` -- video/instruction matching: mean diagonal of the
  column-normalised score matrix.

Conventions shared by all functions:

- Inputs may be lists or numpy arrays; 1-D inputs are required where a sequence is expected.
  All functions return a plain Python ``float`` (or a tuple of floats).
- Bad input (wrong shape, mismatched lengths, non-numeric data, too few points) raises
  ``ValueError`` / ``TypeError`` naming the offending value.
- NaN in a *model output* (``values``, ``pred``, ``scores``, ``matrix``) marks a failed
  prediction: the metric returns ``float('nan')`` so the failure stays visible in any mean.
  NaN in *ground truth* (``times``, ``target``, ``labels``) is a data error and raises ``ValueError``.
- Correlations (:func:`voc`, :func:`pearson`) return ``0.0`` when either input is constant:
  the coefficient is undefined there, and 0 is what a prediction carrying no order information
  deserves (NaN would make ``np.nanmean`` silently drop such episodes from averages).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "confusion_diagonal_share",
    "direction_accuracy",
    "kendall_tau_a",
    "kendall_tau_trajectory",
    "monotonicity",
    "pairwise_accuracy",
    "pearson",
    "pearson_per_trajectory",
    "roc_auc",
    "voc",
]


# ----------------------------------------------------------------------------- helpers


def _as_array(x: ArrayLike, name: str, ndim: int) -> np.ndarray:
    """Converts ``x`` to a float array of dimension ``ndim``, with readable errors."""
    try:
        arr = np.asarray(x)
    except ValueError as e:  # ragged nested lists
        raise ValueError(
            f"{name} could not be converted to an array ({e}); pass a rectangular sequence"
        ) from e
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be numeric (bool, int or float), got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    return arr.astype(np.float64, copy=False)


def _as_1d(x: ArrayLike, name: str) -> np.ndarray:
    return _as_array(x, name, 1)


def _check_same_length(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if len(a) != len(b):
        raise ValueError(
            f"{name_a} has length {len(a)} but {name_b} has length {len(b)}; "
            "pass aligned sequences of equal length"
        )


def _check_min_length(a: np.ndarray, name: str, n: int = 2) -> None:
    if len(a) < n:
        raise ValueError(f"{name} needs at least {n} values, got {len(a)}")


def _check_no_nan(a: np.ndarray, name: str) -> None:
    nan_at = np.flatnonzero(np.isnan(a))
    if nan_at.size:
        raise ValueError(f"{name} contains NaN at index {int(nan_at[0])}; ground truth must not be NaN")


def _prepare_pair(pred: ArrayLike, target: ArrayLike, min_length: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Validates a (pred, target) pair of 1-D sequences; NaN is allowed in ``pred`` only."""
    p = _as_1d(pred, "pred")
    t = _as_1d(target, "target")
    _check_same_length(p, t, "pred", "target")
    if min_length:
        _check_min_length(p, "pred", min_length)
    _check_no_nan(t, "target")
    return p, t


def _pair_metric(min_length: int = 2, failed: Any = float("nan")):
    """The start every (pred, target) metric shares: both validated into 1-D float arrays (`_prepare_pair`),
    and `failed` at once when `pred` holds NaN (a method that failed on the episode); the metric itself
    then runs on clean arrays."""

    def wrap(metric):
        @functools.wraps(metric)
        def checked(pred: ArrayLike, target: ArrayLike):
            p, t = _prepare_pair(pred, target, min_length)
            return failed if np.isnan(p).any() else metric(p, t)

        return checked

    return wrap


def _rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks starting at 1, ties given their average rank (as ``scipy.stats.rankdata``)."""
    n = len(x)
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    new_group = np.r_[True, xs[1:] != xs[:-1]]
    group = np.cumsum(new_group) - 1  # tie-group index of each sorted element
    bounds = np.r_[np.flatnonzero(new_group), n]  # group g spans sorted positions [bounds[g], bounds[g+1])
    avg_rank = (bounds[:-1] + bounds[1:] + 1) / 2.0
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = avg_rank[group]
    return ranks


def _pearson_unchecked(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson r of two validated, NaN-free arrays; 0.0 if either is constant."""
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0
    dx = x - x.mean()
    dy = y - y.mean()
    r = float(np.dot(dx, dy) / np.sqrt(np.dot(dx, dx) * np.dot(dy, dy)))
    return float(np.clip(r, -1.0, 1.0))


def _concordance_by_last(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``c[j] = sum_{i<j} sign(pred[j]-pred[i]) * sign(target[j]-target[i])``.

    ``cumsum(c)[t-1]`` is then (concordant - discordant) over the pairs of the first ``t`` points.
    """
    c = np.zeros(len(pred), dtype=np.float64)
    for j in range(1, len(pred)):
        c[j] = np.dot(np.sign(pred[j] - pred[:j]), np.sign(target[j] - target[:j]))
    return c


# ----------------------------------------------------------------------------- metrics


def voc(values: ArrayLike, times: ArrayLike | None = None) -> float:
    """Value-Order Correlation: Spearman rank correlation between predicted values and time.

    Args:
        values: Predicted progress / value of each frame of one episode, in frame order.
        times: Time of each frame; defaults to ``arange(len(values))``. Only its order matters.

    Returns:
        Spearman's rho in [-1, 1] (ties get average ranks). ``nan`` if ``values`` contains NaN
        (a failed output). ``0.0`` if ``values`` (or ``times``) is constant: Spearman is undefined
        there, and 0 is what a prediction carrying no order information deserves, whereas NaN
        would silently drop such episodes from means.

    Raises:
        ValueError: Fewer than 2 values, lengths differ, not 1-D, or NaN in ``times``.
        TypeError: Non-numeric input.
    """
    v = _as_1d(values, "values")
    _check_min_length(v, "values")
    if times is None:
        t = np.arange(len(v), dtype=np.float64)
    else:
        t = _as_1d(times, "times")
        _check_same_length(v, t, "values", "times")
        _check_no_nan(t, "times")
    if np.isnan(v).any():
        return float("nan")
    return _pearson_unchecked(_rankdata(v), _rankdata(t))


def roc_auc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Binary ROC-AUC via the Mann-Whitney U statistic.

    AUC = P(score of a random positive > score of a random negative), a tie counting 1/2.

    Args:
        scores: Predicted score of each example (higher = more likely positive).
        labels: 0/1 (or bool) ground truth of each example.

    Returns:
        The AUC in [0, 1]; ``nan`` if ``scores`` contains NaN.

    Raises:
        ValueError: Lengths differ, labels not 0/1, or no positive or no negative example.
        TypeError: Non-numeric input.
    """
    s = _as_1d(scores, "scores")
    y = _as_1d(labels, "labels")
    _check_same_length(s, y, "scores", "labels")
    bad = ~np.isin(y, (0.0, 1.0))
    if bad.any():
        raise ValueError(
            f"labels must be 0/1 or bool, got values {np.unique(y[bad]).tolist()}; binarise the labels first"
        )
    pos = y == 1.0
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            f"roc_auc needs at least one positive and one negative label, got {n_pos} positive and "
            f"{n_neg} negative; AUC is undefined for a single class"
        )
    if np.isnan(s).any():
        return float("nan")
    ranks = _rankdata(s)
    u = ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


@_pair_metric()
def kendall_tau_a(pred: ArrayLike, target: ArrayLike) -> float:
    """Kendall tau-a: (concordant - discordant) / (n(n-1)/2).

    A pair tied in ``pred`` or in ``target`` counts as neither concordant nor discordant but stays
    in the denominator (as Robometer computes it), so ties pull the value toward 0. Without ties
    this equals tau-b (``scipy.stats.kendalltau``).

    Args:
        pred: Predicted values.
        target: Ground-truth values, same length.

    Returns:
        tau-a in [-1, 1]; ``nan`` if ``pred`` contains NaN.

    Raises:
        ValueError: Fewer than 2 values, lengths differ, not 1-D, or NaN in ``target``.
        TypeError: Non-numeric input.
    """
    n = len(pred)
    return float(_concordance_by_last(pred, target).sum() / (n * (n - 1) / 2.0))


@_pair_metric(failed=(float("nan"), float("nan")))
def kendall_tau_trajectory(pred: ArrayLike, target: ArrayLike) -> tuple[float, float]:
    """SCORE's Kendall tau "avg" and "last" over the growing prefixes of one trajectory.

    For t = 2..n, tau_t = :func:`kendall_tau_a` of ``pred[:t]`` vs ``target[:t]``.

    Args:
        pred: Predicted progress of each frame, in frame order.
        target: Ground-truth progress of each frame, same length.

    Returns:
        ``(avg, last)``: avg is the mean of tau_t over t = 2..n, last is tau_n (the tau-a of the
        whole trajectory). Both ``nan`` if ``pred`` contains NaN.

    Raises:
        ValueError: Fewer than 2 values, lengths differ, not 1-D, or NaN in ``target``.
        TypeError: Non-numeric input.
    """
    lengths = np.arange(2, len(pred) + 1, dtype=np.float64)
    taus = np.cumsum(_concordance_by_last(pred, target))[1:] / (lengths * (lengths - 1) / 2.0)
    return float(taus.mean()), float(taus[-1])


@_pair_metric()
def pearson(pred: ArrayLike, target: ArrayLike) -> float:
    """Pearson correlation coefficient.

    Args:
        pred: Predicted values.
        target: Ground-truth values, same length.

    Returns:
        r in [-1, 1]; ``nan`` if ``pred`` contains NaN; ``0.0`` if either input is constant
        (r is undefined there; see the module conventions).

    Raises:
        ValueError: Fewer than 2 values, lengths differ, not 1-D, or NaN in ``target``.
        TypeError: Non-numeric input.
    """
    return _pearson_unchecked(pred, target)


def pearson_per_trajectory(preds: Sequence[ArrayLike], targets: Sequence[ArrayLike]) -> float:
    """Mean over trajectories of the per-trajectory :func:`pearson` (not a pooled Pearson).

    Args:
        preds: One 1-D prediction sequence per trajectory.
        targets: The matching ground-truth sequences.

    Returns:
        The mean of the per-trajectory coefficients; ``nan`` if any trajectory's is ``nan``.

    Raises:
        ValueError: Different numbers of trajectories, none at all, or a bad trajectory (the
            message names its index).
    """
    if len(preds) != len(targets):
        raise ValueError(
            f"preds has {len(preds)} trajectories but targets has {len(targets)}; "
            "pass one target per prediction"
        )
    if len(preds) == 0:
        raise ValueError("pearson_per_trajectory needs at least one trajectory, got 0")
    rs = []
    for k, (p, t) in enumerate(zip(preds, targets, strict=True)):
        try:
            rs.append(pearson(p, t))
        except (ValueError, TypeError) as e:
            raise type(e)(f"trajectory {k}: {e}") from e
    return float(np.mean(rs))


@_pair_metric(min_length=0)
def pairwise_accuracy(pred: ArrayLike, target: ArrayLike) -> float:
    """Fraction of target-ordered pairs that the prediction orders the same way.

    Over all pairs i < j with ``target[i] != target[j]``, counts those where
    ``sign(pred[j] - pred[i]) == sign(target[j] - target[i])``; a tie in ``pred`` counts as wrong.

    Args:
        pred: Predicted values.
        target: Ground-truth values, same length.

    Returns:
        The fraction in [0, 1]; ``nan`` if there is no valid pair (constant target, or fewer
        than 2 points) or ``pred`` contains NaN.

    Raises:
        ValueError: Lengths differ, not 1-D, or NaN in ``target``.
        TypeError: Non-numeric input.
    """
    n_valid = 0
    n_correct = 0
    for j in range(1, len(pred)):
        st = np.sign(target[j] - target[:j])
        valid = st != 0
        n_valid += int(valid.sum())
        n_correct += int((np.sign(pred[j] - pred[:j])[valid] == st[valid]).sum())
    return float(n_correct / n_valid) if n_valid else float("nan")


@_pair_metric(min_length=0)
def direction_accuracy(pred: ArrayLike, target: ArrayLike) -> float:
    """Fraction of consecutive target changes whose direction the prediction gets right.

    Over steps k with ``target[k+1] != target[k]``, counts those where
    ``sign(pred[k+1] - pred[k]) == sign(target[k+1] - target[k])``; a flat prediction counts as wrong.

    Args:
        pred: Predicted values, in frame order.
        target: Ground-truth values, same length.

    Returns:
        The fraction in [0, 1]; ``nan`` if the target never changes (or has fewer than 2 points)
        or ``pred`` contains NaN.

    Raises:
        ValueError: Lengths differ, not 1-D, or NaN in ``target``.
        TypeError: Non-numeric input.
    """
    st = np.sign(np.diff(target))
    valid = st != 0
    if not valid.any():
        return float("nan")
    return float(np.mean(np.sign(np.diff(pred))[valid] == st[valid]))


def monotonicity(values: ArrayLike) -> float:
    """Fraction of consecutive increments that are >= 0 (non-decreasing steps).

    Args:
        values: Predicted progress of each frame, in frame order.

    Returns:
        The fraction in [0, 1] (1.0 for a constant sequence); ``nan`` if ``values`` contains NaN.

    Raises:
        ValueError: Fewer than 2 values or not 1-D.
        TypeError: Non-numeric input.
    """
    v = _as_1d(values, "values")
    _check_min_length(v, "values")
    if np.isnan(v).any():
        return float("nan")
    return float(np.mean(np.diff(v) >= 0))


def confusion_diagonal_share(matrix: ArrayLike) -> float:
    """Mean diagonal of the column-normalised video x instruction score matrix.

    ``matrix[i, j]`` is the score of video i under instruction j (video i matches instruction i).
    Each column is divided by its sum, so entry (i, j) becomes the share of instruction j's
    score that goes to video i; the result is the mean share that goes to the matching video
    (1.0 = perfect, 1/n = chance for an n x n uniform matrix).

    Args:
        matrix: Square, non-negative scores (e.g. probabilities, not log-probabilities).

    Returns:
        The mean of the normalised diagonal; ``nan`` if the matrix contains NaN.

    Raises:
        ValueError: Not square, empty, negative or infinite entries, or a column summing to 0.
        TypeError: Non-numeric input.
    """
    m = _as_array(matrix, "matrix", 2)
    if m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise ValueError(f"matrix must be square and non-empty (videos x instructions), got shape {m.shape}")
    if np.isnan(m).any():
        return float("nan")
    if np.isinf(m).any():
        i, j = np.argwhere(np.isinf(m))[0]
        raise ValueError(
            f"matrix has an infinite entry {m[i, j]} at ({i}, {j}); if these are exp(log-probs), "
            "subtract each column's max log-prob before exp()"
        )
    if (m < 0).any():
        i, j = np.argwhere(m < 0)[0]
        raise ValueError(
            f"matrix entries must be non-negative, got {m[i, j]} at ({i}, {j}); pass probabilities "
            "(e.g. exp() of log-probs) or shift the scores by their minimum"
        )
    col_sums = m.sum(axis=0)
    if (col_sums == 0).any():
        j = int(np.flatnonzero(col_sums == 0)[0])
        raise ValueError(f"column {j} of matrix sums to 0 and cannot be normalised; give it a positive score")
    return float(np.mean(np.diag(m) / col_sums))


# ---- calibration: probabilities against outcomes ------------------------------------------------------
def scores_labels(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Scores as float64 and labels as bool, checked: 1-D, equal length, 0/1 labels, finite scores."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels)
    if s.ndim != 1 or y.ndim != 1 or len(s) != len(y):
        raise ValueError(
            f"scores and labels must be 1-D and of equal length, got shapes {s.shape} and {y.shape}"
        )
    if y.dtype != bool:
        if y.dtype.kind not in "biuf" or not np.isin(y, (0, 1)).all():
            raise ValueError(f"labels must be bool or 0/1, got values {np.unique(y)[:5].tolist()}")
        y = y.astype(bool)
    bad = np.flatnonzero(~np.isfinite(s))
    if len(bad):
        raise ValueError(
            f"scores hold {len(bad)} non-finite value(s), first at position {int(bad[0])} ({s[bad[0]]}); "
            "drop or re-score those episodes"
        )
    return s, y


def brier_score(probabilities: ArrayLike, labels: ArrayLike) -> float:
    """Mean squared difference between predicted probability and outcome (0 is perfect)."""
    p, y = scores_labels(probabilities, labels)
    return float(np.mean((p - y) ** 2))


def reliability_bins(
    probabilities: ArrayLike, labels: ArrayLike, bins: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width bin of [0, 1] (the last one closed): mean probability, success rate, count.

    Empty bins hold NaN for the two rates and 0 for the count.
    """
    p, y = scores_labels(probabilities, labels)
    which = np.clip(np.floor(p * bins).astype(np.int64), 0, bins - 1)
    count = np.bincount(which, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(which, weights=p, minlength=bins) / count
        rate = np.bincount(which, weights=y.astype(np.float64), minlength=bins) / count
    return mean_p, rate, count.astype(np.int64)


def expected_calibration_error(probabilities: ArrayLike, labels: ArrayLike, bins: int = 10) -> float:
    """ECE: over `bins` equal-width bins of predicted probability, |mean probability - success rate|
    weighted by the bin's share of episodes."""
    mean_p, rate, count = reliability_bins(probabilities, labels, bins)
    used = count > 0
    return float(np.sum(count[used] * np.abs(mean_p[used] - rate[used])) / count.sum())


def roc_auc_interval(
    scores: ArrayLike, labels: ArrayLike, *, resamples: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the ROC-AUC, resampling successes and failures separately
    (stratified, so every resample has both classes)."""
    s, y = scores_labels(scores, labels)
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError(f"ROC-AUC needs both classes, got {len(pos)} successes and {len(neg)} failures")
    rng = np.random.default_rng(seed)
    aucs = np.empty(resamples)
    lab = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    for i in range(resamples):
        aucs[i] = roc_auc(np.r_[rng.choice(pos, len(pos)), rng.choice(neg, len(neg))], lab)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(aucs, [tail, 100.0 - tail])
    return float(low), float(high)
