"""The fitting pieces of a calibration, numpy only: Platt scaling, isotonic regression (pool-adjacent-
violators), Youden's threshold and the stratified split by episode (`topreward.calibration`'s steps 1-3)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from topreward.metrics import scores_labels

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- Platt scaling


def sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z))


def fit_platt(
    scores: ArrayLike, labels: ArrayLike, *, smooth_targets: bool = True, max_iter: int = 200
) -> tuple[float, float]:
    """Slope and intercept of `P(success) = sigmoid(slope * score + intercept)`, by Newton's method.

    Args:
        scores: the fitting episodes' success scores.
        labels: their success labels (both classes present).
        smooth_targets: Platt's targets `(n+ + 1) / (n+ + 2)` and `1 / (n- + 2)` instead of 1 and 0.

    Raises:
        ValueError: a single class; or, without smoothed targets, scores that separate the classes (the
            maximum-likelihood slope is infinite).
    """
    s, y = scores_labels(scores, labels)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"Platt scaling needs both classes, got {n_pos} successes and {n_neg} failures")
    separated = s[~y].max() <= s[y].min() or s[y].max() <= s[~y].min()
    if not smooth_targets and separated:
        raise ValueError(
            "the scores separate successes from failures completely on the fitting split, so plain maximum "
            "likelihood has no finite slope; keep smooth_targets=True (default) or use mapping='isotonic'"
        )
    if smooth_targets:
        t = np.where(y, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
    else:
        t = y.astype(np.float64)
    # standardised scores keep the Newton steps well scaled whatever the score's units
    mu, sd = float(s.mean()), float(s.std())
    sd = sd if sd > 0 else 1.0
    x = np.stack([(s - mu) / sd, np.ones_like(s)], axis=1)

    def loss(w: np.ndarray) -> float:
        z = x @ w
        return float(np.sum(np.logaddexp(0.0, z) - t * z))

    w = np.array([0.0, math.log((t.mean()) / (1.0 - t.mean()))])
    current = loss(w)
    for _ in range(max_iter):
        p = sigmoid(x @ w)
        grad = x.T @ (p - t)
        hess = (x * (p * (1.0 - p))[:, None]).T @ x + 1e-12 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        scale = 1.0
        while scale > 1e-10:  # backtracking: Newton's full step can overshoot on flat sigmoid tails
            trial = w - scale * step
            new = loss(trial)
            if new <= current:
                break
            scale *= 0.5
        else:
            break
        w, done = trial, current - new <= 1e-15 * max(1.0, abs(current))
        current = new
        if done or np.max(np.abs(grad)) < 1e-12 * len(s):
            break
    slope = w[0] / sd
    return float(slope), float(w[1] - slope * mu)


# ----------------------------------------------------------------------------- isotonic regression


def _pav(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Pool adjacent violators: the non-decreasing sequence closest to `y` in weighted least squares."""
    means: list[float] = []
    weights: list[float] = []
    sizes: list[int] = []
    for value, weight in zip(y.tolist(), w.tolist()):
        means.append(value)
        weights.append(weight)
        sizes.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            m2, w2, n2 = means.pop(), weights.pop(), sizes.pop()
            total = weights[-1] + w2
            means[-1] = (means[-1] * weights[-1] + m2 * w2) / total
            weights[-1] = total
            sizes[-1] += n2
    return np.repeat(means, sizes)


def fit_isotonic(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Step points `(x, y)` of the non-decreasing fit of the labels on the scores.

    Episodes with equal scores are pooled first (their mean label, weighted by count); points inside a
    constant run are dropped (the ends of each run are kept), so `np.interp(score, x, y)` gives the fit
    everywhere, constant beyond the ends.
    """
    s, y = scores_labels(scores, labels)
    if len(s) == 0:
        raise ValueError("isotonic regression needs at least one episode")
    xs, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    means = np.bincount(inverse, weights=y.astype(np.float64)) / counts
    fitted = _pav(means, counts.astype(np.float64))
    if len(xs) <= 2:
        return xs, fitted
    keep = np.concatenate([[True], (fitted[:-2] != fitted[1:-1]) | (fitted[1:-1] != fitted[2:]), [True]])
    return xs[keep], fitted[keep]


def youden_threshold(scores: ArrayLike, labels: ArrayLike) -> tuple[float, float]:
    """(threshold, J): the cut `score >= threshold` maximising TPR - FPR, halfway to the next lower score."""
    s, y = scores_labels(scores, labels)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"Youden's J needs both classes, got {n_pos} successes and {n_neg} failures")
    cuts = np.unique(s)[::-1]  # descending: predicted success = score >= cut
    tpr = np.array([np.sum(s[y] >= c) for c in cuts]) / n_pos
    fpr = np.array([np.sum(s[~y] >= c) for c in cuts]) / n_neg
    j = tpr - fpr
    best = int(np.argmax(j))  # first maximum = the highest cut among ties
    cut = cuts[best]
    threshold = (cut + cuts[best + 1]) / 2.0 if best + 1 < len(cuts) else cut
    return float(threshold), float(j[best])


def stratified_split(
    labels: ArrayLike, test_fraction: float, seed: int, groups: Sequence[Any] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (fit, test): whole groups (episodes) per side, `test_fraction` of each class's groups held
    out (rounded, at least one and at most all but one)."""
    y = np.asarray(labels, dtype=bool)
    keys = list(range(len(y))) if groups is None else list(groups)
    label_of: dict[Any, bool] = {}
    for key, label in zip(keys, y.tolist()):
        if label_of.setdefault(key, label) != label:
            raise ValueError(f"episode {key!r} appears with both labels; fix its success label")
    rng = np.random.default_rng(seed)
    test_keys: set[Any] = set()
    for cls in (True, False):
        members = [k for k, v in label_of.items() if v is cls]
        k = min(max(1, round(test_fraction * len(members))), len(members) - 1)
        picked = rng.permutation(len(members))[:k]
        test_keys.update(members[i] for i in picked)
    test = np.array([key in test_keys for key in keys])
    return np.flatnonzero(~test), np.flatnonzero(test)


