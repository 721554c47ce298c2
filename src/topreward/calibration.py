"""Success calibration: from a method's success score to a success probability and a yes/no decision.

A success score (TOPReward: mean log P(True) over the last 3 prefixes) orders episodes, but its scale
depends on the model, the prompt, the video length and the task, so a raw number means nothing across
setups. Calibration learns, on episodes with `success` labels, what a score is worth:

1. **Split** the labelled episodes by episode (records of one episode stay together), stratified by
   label and seeded: `test_fraction` of each class is held out (at least one episode of each class on
   both sides).
2. **Fit a mapping** score -> P(success) on the fitting split, one of
   - `platt`: Platt scaling, `p = 1 / (1 + exp(-(slope * score + intercept)))`, a 1-D logistic
     regression fitted by Newton's method. By default on Platt's smoothed targets
     (successes `(n+ + 1) / (n+ + 2)`, failures `1 / (n- + 2)`; Platt 1999, also scikit-learn's
     `CalibratedClassifierCV(method="sigmoid")`), which keeps the fit finite when the scores separate the
     classes — common with a few dozen episodes; `smooth_targets=False` is the plain maximum-likelihood
     fit (no penalty);
   - `isotonic`: the non-decreasing least-squares fit of the labels (pool-adjacent-violators), stored as
     its step points and read by linear interpolation between them, constant beyond the ends (as
     scikit-learn's `IsotonicRegression(out_of_bounds="clip")`).
3. **Choose the threshold** on the score (`success = success_score >= threshold`), on the fitting split:
   - `youden` (**default**): the cut maximising Youden's J = true-positive rate - false-positive rate,
     placed halfway between the cut score and the next lower score; ties go to the higher cut. It
     maximises balanced accuracy and does not depend on the class mix of the fitting data (the
     probability does), so `success` and `success_probability >= 0.5` can disagree near the cut;
   - `probability`: the score where the chosen mapping reaches 0.5, so `success` is exactly
     `success_probability >= 0.5` (the fewest errors at the fitting data's success rate). An error when
     the mapping never crosses 0.5.
4. **Evaluate on the held-out split**: ROC-AUC of the raw score with a seeded, stratified percentile
   bootstrap confidence interval (95 %); Brier score and expected calibration error (ECE: `bins`
   equal-width bins of predicted probability over [0, 1], each bin's |mean probability - success rate|
   weighted by its share of episodes) of the probabilities; accuracy and true-positive/negative rates at
   the threshold. The other mapping's Brier score and ECE are reported beside, for comparison. The saved
   mapping is the one fitted on the fitting split, so the metrics describe exactly what is saved.

The result is a JSON file (`Calibration.save`) recording the mapping, its parameters, the threshold and
its rule, the metrics, the number of episodes of each class on each side, what the scores were
(`scored_with`: method, value name such as "log P(True)", model, success window), the sources, the
package version and the date. `Calibration.apply(result)` adds `success_probability` and `success` to a
`ScoreResult`; applying a calibration to scores of another method or value is an error.

All numerics are numpy only; tests hold them to scikit-learn's on seeded data.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from topreward.config import check_choices, option
from topreward.worklog import read_jsonl

logger = logging.getLogger(__name__)

FORMAT = "topreward-calibration/1"
MAPPINGS = ("platt", "isotonic")
THRESHOLD_RULES = ("youden", "probability")
MIN_EPISODES_FLOOR = 4  # one episode of each class on each side of the split


# ----------------------------------------------------------------------------- config


@dataclass
class CalibrationConfig:
    """How `fit_calibration` splits, fits, thresholds and evaluates (also the `topreward calibrate` flags)."""

    mapping: Literal["platt", "isotonic"] = option("platt", "score -> probability mapping", choices=MAPPINGS)
    threshold_rule: Literal["youden", "probability"] = option(
        "youden",
        "youden: max TPR - FPR on the fitting split; probability: where the mapping reaches 0.5",
        choices=THRESHOLD_RULES,
    )
    test_fraction: float = option(0.3, "share of each class held out for the metrics, in (0, 1)")
    seed: int = option(0, "seed of the split and the bootstrap")
    min_episodes: int = option(10, f"fewest labelled episodes accepted (at least {MIN_EPISODES_FLOOR})")
    bootstrap: int = option(1000, "bootstrap resamples for the ROC-AUC interval (0: no interval)")
    bins: int = option(10, "equal-width probability bins of the ECE and the reliability diagram")
    smooth_targets: bool = option(True, "platt: Platt's smoothed targets (finite fit on separable scores)")

    def __post_init__(self) -> None:
        check_choices(self)
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(
                f"test_fraction={self.test_fraction}; it must be in (0, 1), e.g. 0.3 holds out 30 % of "
                "each class"
            )
        if self.min_episodes < MIN_EPISODES_FLOOR:
            raise ValueError(
                f"min_episodes={self.min_episodes} is below the floor of {MIN_EPISODES_FLOOR} (one episode of "
                "each class on each side of the split); raise it"
            )
        if self.bootstrap < 0:
            raise ValueError(f"bootstrap={self.bootstrap}; use 0 (no interval) or a count such as 1000")
        if self.bins < 2:
            raise ValueError(f"bins={self.bins}; use at least 2 (10 is usual)")


# ----------------------------------------------------------------------------- input checks


def _scores_labels(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
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


# ----------------------------------------------------------------------------- Platt scaling


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z))


def fit_platt(
    scores: ArrayLike, labels: ArrayLike, *, smooth_targets: bool = True, max_iter: int = 200
) -> tuple[float, float]:
    """Slope and intercept of `P(success) = sigmoid(slope * score + intercept)`, by Newton's method.

    Args:
        scores, labels: the fitting episodes (both classes present).
        smooth_targets: Platt's targets `(n+ + 1) / (n+ + 2)` and `1 / (n- + 2)` instead of 1 and 0.

    Raises:
        ValueError: a single class; or, without smoothed targets, scores that separate the classes (the
            maximum-likelihood slope is infinite).
    """
    s, y = _scores_labels(scores, labels)
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
        p = _sigmoid(x @ w)
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
    s, y = _scores_labels(scores, labels)
    if len(s) == 0:
        raise ValueError("isotonic regression needs at least one episode")
    xs, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    means = np.bincount(inverse, weights=y.astype(np.float64)) / counts
    fitted = _pav(means, counts.astype(np.float64))
    if len(xs) <= 2:
        return xs, fitted
    keep = np.concatenate([[True], (fitted[:-2] != fitted[1:-1]) | (fitted[1:-1] != fitted[2:]), [True]])
    return xs[keep], fitted[keep]


# ----------------------------------------------------------------------------- metrics


def brier_score(probabilities: ArrayLike, labels: ArrayLike) -> float:
    """Mean squared difference between predicted probability and outcome (0 is perfect)."""
    p, y = _scores_labels(probabilities, labels)
    return float(np.mean((p - y) ** 2))


def reliability_bins(
    probabilities: ArrayLike, labels: ArrayLike, bins: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width bin of [0, 1] (the last one closed): mean probability, success rate, count.

    Empty bins hold NaN for the two rates and 0 for the count.
    """
    p, y = _scores_labels(probabilities, labels)
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
    from topreward.metrics import roc_auc

    s, y = _scores_labels(scores, labels)
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


def youden_threshold(scores: ArrayLike, labels: ArrayLike) -> tuple[float, float]:
    """(threshold, J): the cut `score >= threshold` maximising TPR - FPR, halfway to the next lower score."""
    s, y = _scores_labels(scores, labels)
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


# ----------------------------------------------------------------------------- the calibration


@dataclass
class Calibration:
    """A fitted success calibration: `probability(score)`, `predict(score)`, `apply(result)`, `save(path)`.

    Attributes:
        mapping: "platt" or "isotonic".
        parameters: platt: `slope`, `intercept`, `smooth_targets`; isotonic: step points `x`, `y`.
        threshold: success = success_score >= threshold; threshold_rule: how it was chosen.
        metrics: held-out ROC-AUC (+ bootstrap interval), Brier score, ECE, accuracy, TPR, TNR.
        counts: episodes of each class on each side of the split.
        scored_with: what the scores were — `method`, `value_name`, `model`, `success_window` (None: unknown).
        compared: the other mapping's held-out Brier score and ECE.
        config: the `CalibrationConfig` used; sources: where the labelled scores came from.
    """

    mapping: str
    parameters: dict[str, Any]
    threshold: float
    threshold_rule: str
    metrics: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    scored_with: dict[str, Any] = field(default_factory=dict)
    compared: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    version: str = ""
    date: str = ""
    path: str | None = None  # where it was loaded from (not saved)

    def __post_init__(self) -> None:
        if self.mapping not in MAPPINGS:
            raise ValueError(f"mapping={self.mapping!r}; choose one of {MAPPINGS}")

    def probability(self, scores: ArrayLike) -> np.ndarray:
        """P(success) of each score (an array, or a float for a scalar)."""
        s = np.asarray(scores, dtype=np.float64)
        if self.mapping == "platt":
            p = _sigmoid(self.parameters["slope"] * s + self.parameters["intercept"])
        else:
            p = np.interp(s, self.parameters["x"], self.parameters["y"])
        return p if p.ndim else float(p)

    def predict(self, scores: ArrayLike) -> np.ndarray:
        """success = score >= threshold."""
        s = np.asarray(scores, dtype=np.float64)
        out = s >= self.threshold
        return out if out.ndim else bool(out)

    def describe(self) -> dict[str, Any]:
        """A short account for the metadata of calibrated outputs."""
        return {
            "path": self.path,
            "mapping": self.mapping,
            "threshold": self.threshold,
            "threshold_rule": self.threshold_rule,
            "scored_with": self.scored_with,
        }

    def check_scores(
        self,
        method: str | None = None,
        value_name: str | None = None,
        *,
        model: str | None = None,
        success_window: int | None = None,
        where: str = "these scores",
    ) -> None:
        """Raise if the scores to calibrate are not what the calibration was fitted on.

        A mismatch of method, value name or success window is an error; of model, a warning (the same model
        may be named by a Hub id or a local path). Unknown on either side: not checked.
        """
        mine = self.scored_with
        name = self.path or "the calibration"
        for key, theirs in (
            ("method", method),
            ("value_name", value_name),
            ("success_window", success_window),
        ):
            ours = mine.get(key)
            if ours is not None and theirs is not None and ours != theirs:
                raise ValueError(
                    f"{name} was fitted on success scores with {key}={ours!r}, but {where} have "
                    f"{key}={theirs!r}; fit a calibration on scores of this {key} (`topreward calibrate` on "
                    "a bench run of it) or pass the calibration that matches"
                )
        if mine.get("model") and model and mine["model"] != model:
            logger.warning(
                "%s was fitted on scores of model %r, %s come from %r: a calibration holds for one model only",
                name,
                mine["model"],
                where,
                model,
            )

    def apply(self, result):
        """A copy of a `ScoreResult` with `success_probability`, `success` and `calibration` filled in."""
        fields = self.apply_dict(result.to_dict(), where=f"the scores of {result.source or 'this result'}")
        return dataclasses.replace(result, **fields, calibration=self.describe())

    def apply_dict(self, result: dict[str, Any] | None, where: str = "these scores") -> dict[str, Any]:
        """`success_probability` and `success` for a result in its JSON form (None: a skipped episode).

        Raises:
            ValueError: the result is of another method, value or success window; its score is not finite.
        """
        if result is None:
            return {"success_probability": float("nan"), "success": None}
        self.check_scores(
            result.get("method"),
            result.get("value_name"),
            model=(result.get("model") or {}).get("id"),
            success_window=(result.get("config") or {}).get("success_window"),
            where=where,
        )
        score = result["success_score"]
        if score is None or not math.isfinite(score):
            raise ValueError(f"the success_score of {where} is {score}; re-score it before calibrating")
        return {"success_probability": float(self.probability(score)), "success": bool(self.predict(score))}

    def to_dict(self) -> dict[str, Any]:
        out = {"format": FORMAT, **dataclasses.asdict(self)}
        out.pop("path")
        out["decision"] = "success = success_score >= threshold"
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: str | None = None) -> Calibration:
        if data.get("format") != FORMAT:
            raise ValueError(
                f"{path or 'data'} is not a topreward calibration (format {data.get('format')!r}, expected "
                f"{FORMAT!r}); write one with `topreward calibrate`"
            )
        known = {f.name for f in dataclasses.fields(cls)} - {"path"}
        return cls(**{k: v for k, v in data.items() if k in known}, path=path)

    def save(self, path: str | Path) -> Path:
        """Write the calibration JSON (atomically)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        tmp.replace(path)
        self.path = str(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"calibration file {path} not found; write one with `topreward calibrate`"
            )
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(
                f"{path} is not valid JSON ({e}); write it again with `topreward calibrate`"
            ) from e
        return cls.from_dict(data, str(path))


def _mapping_fn(mapping: str, scores: np.ndarray, labels: np.ndarray, smooth_targets: bool):
    """Fit one mapping; returns its parameters and the probability function."""
    if mapping == "platt":
        slope, intercept = fit_platt(scores, labels, smooth_targets=smooth_targets)
        params = {"slope": slope, "intercept": intercept, "smooth_targets": smooth_targets}
    else:
        x, y = fit_isotonic(scores, labels)
        params = {"x": x.tolist(), "y": y.tolist()}
    probe = Calibration(mapping, params, 0.0, "")
    return params, probe.probability


def _probability_threshold(mapping: str, params: dict[str, Any]) -> float:
    """The score at which the mapping reaches 0.5."""
    if mapping == "platt":
        if params["slope"] <= 0:
            raise ValueError(
                f"the Platt slope is {params['slope']:.3g} (higher scores are not more likely successes on the "
                "fitting split), so no score threshold matches probability 0.5; use threshold_rule='youden' "
                "and check the scores"
            )
        return -params["intercept"] / params["slope"]
    x, y = np.asarray(params["x"]), np.asarray(params["y"])
    above = np.flatnonzero(y >= 0.5)
    if len(above) == 0 or above[0] == 0:
        what = "never reaches" if len(above) == 0 else "starts at or above"
        raise ValueError(
            f"the isotonic fit {what} probability 0.5 on the fitting split, so the 'probability' rule gives no "
            "usable threshold; use threshold_rule='youden' or mapping='platt'"
        )
    j = int(above[0])
    frac = (0.5 - y[j - 1]) / (y[j] - y[j - 1])
    return float(x[j - 1] + frac * (x[j] - x[j - 1]))


def fit_calibration(
    scores: ArrayLike,
    labels: ArrayLike,
    config: CalibrationConfig | None = None,
    *,
    groups: Sequence[Any] | None = None,
    ids: Sequence[str] | None = None,
    scored_with: dict[str, Any] | None = None,
    sources: Sequence[str] = (),
) -> Calibration:
    """Split, fit the mapping, choose the threshold and evaluate on the held-out split (module docstring).

    Args:
        scores: success score per labelled record; labels: its success label (bool or 0/1).
        config: mapping, threshold rule, split and metric options (`CalibrationConfig`).
        groups: the episode of each record (records of one episode stay on one side); default: one each.
        ids: names of the records, for error messages.
        scored_with: what the scores are (`method`, `value_name`, `model`, `success_window`).
        sources: where the records came from (recorded in the file).

    Raises:
        ValueError: NaN scores (naming the record), a single class, fewer than `min_episodes` episodes,
            or (rule "probability") a mapping that never crosses 0.5.
    """
    from topreward._version import __version__
    from topreward.metrics import roc_auc

    config = config or CalibrationConfig()
    s = np.asarray(scores, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(s)) if s.ndim == 1 else []
    if len(bad):
        name = ids[bad[0]] if ids is not None else f"record {int(bad[0])}"
        raise ValueError(
            f"{len(bad)} success score(s) are not finite, first {name} ({s[bad[0]]}); re-score or drop them"
        )
    s, y = _scores_labels(s, labels)
    n_episodes = len(set(groups)) if groups is not None else len(s)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        only = "successes" if n_neg == 0 else "failures"
        raise ValueError(
            f"all {len(s)} labelled episodes are {only}: a calibration needs both successes and failures; "
            "add episodes of the missing class (e.g. failed rollouts) to the input"
        )
    if n_episodes < config.min_episodes:
        raise ValueError(
            f"{n_episodes} labelled episodes ({n_pos} successes, {n_neg} failures) is fewer than min_episodes="
            f"{config.min_episodes}; label or score more episodes, or lower min_episodes (floor "
            f"{MIN_EPISODES_FLOOR}) knowing the fit and its metrics will be noisy"
        )
    fit_idx, test_idx = stratified_split(y, config.test_fraction, config.seed, groups)
    sf, yf, st, yt = s[fit_idx], y[fit_idx], s[test_idx], y[test_idx]
    if yf.all() or not yf.any() or yt.all() or not yt.any():
        raise ValueError(
            "each class needs at least 2 episodes (one to fit, one to test); add episodes of the rarer class"
        )

    params, prob = _mapping_fn(config.mapping, sf, yf, config.smooth_targets)
    if config.threshold_rule == "youden":
        threshold, _ = youden_threshold(sf, yf)
    else:
        threshold = _probability_threshold(config.mapping, params)
    if config.mapping == "platt" and params["slope"] <= 0:
        logger.warning(
            "Platt slope %.3g <= 0: on the fitting split higher scores are not more successful",
            params["slope"],
        )

    p_test = np.asarray(prob(st), dtype=np.float64)
    decided = st >= threshold
    auc = roc_auc(st, yt)
    ci = (
        list(roc_auc_interval(st, yt, resamples=config.bootstrap, seed=config.seed))
        if config.bootstrap
        else None
    )
    metrics = {
        "split": "held-out",
        "n": len(st),
        "roc_auc": auc,
        "roc_auc_ci": ci,
        "roc_auc_ci_level": 0.95,
        "roc_auc_ci_method": f"percentile bootstrap, {config.bootstrap} stratified resamples, seed {config.seed}",
        "brier": brier_score(p_test, yt),
        "ece": expected_calibration_error(p_test, yt, config.bins),
        "ece_binning": f"{config.bins} equal-width bins of predicted probability over [0, 1], weighted by count",
        "accuracy": float(np.mean(decided == yt)),
        "true_positive_rate": float(np.mean(decided[yt])),
        "true_negative_rate": float(np.mean(~decided[~yt])),
    }
    other = next(m for m in MAPPINGS if m != config.mapping)
    try:
        _, other_prob = _mapping_fn(other, sf, yf, config.smooth_targets)
        p_other = np.asarray(other_prob(st), dtype=np.float64)
        compared = {
            other: {
                "brier": brier_score(p_other, yt),
                "ece": expected_calibration_error(p_other, yt, config.bins),
            }
        }
    except ValueError as e:  # e.g. separable scores for an unsmoothed Platt fit
        compared = {other: {"error": str(e)}}
    return Calibration(
        mapping=config.mapping,
        parameters=params,
        threshold=float(threshold),
        threshold_rule=config.threshold_rule,
        metrics=metrics,
        counts={
            "fit": {"success": int(yf.sum()), "failure": int((~yf).sum())},
            "test": {"success": int(yt.sum()), "failure": int((~yt).sum())},
        },
        scored_with={"method": None, "value_name": None, "model": None, "success_window": None}
        | dict(scored_with or {}),
        compared=compared,
        config=dataclasses.asdict(config),
        sources=[str(x) for x in sources],
        version=__version__,
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


# ----------------------------------------------------------------------------- labelled inputs


@dataclass
class LabelledScores:
    """Success scores with labels, read from bench output or a JSONL/CSV of records."""

    scores: np.ndarray
    labels: np.ndarray
    ids: list[str]
    groups: list[str]
    scored_with: dict[str, Any]
    sources: list[str]
    unlabelled: int = 0
    skipped: int = 0


def _label(value: Any, where: str) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    raise ValueError(f"{where}: success={value!r} is not a label; use true/false or 1/0 (empty = unlabelled)")


def _read_records(path: Path) -> list[dict[str, Any]]:
    if path.is_dir():
        episodes = path / "episodes.jsonl"
        if not episodes.is_file():
            raise FileNotFoundError(
                f"{path} has no episodes.jsonl; pass a `topreward bench --out` folder or a JSONL/CSV of records"
            )
        path = episodes
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; pass a bench output folder or a JSONL/CSV of records")
    if path.suffix.lower() == ".csv":
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    return read_jsonl(path)


def _model_id(rec: dict[str, Any]) -> str | None:
    model = rec.get("model", rec.get("model_id"))
    return model.get("id") if isinstance(model, dict) else model


def load_labelled(paths: str | Path | Sequence[str | Path]) -> LabelledScores:
    """Labelled success scores from bench output folders (`<out>/episodes.jsonl`) or JSONL/CSV files.

    A record needs `success_score` and `success` (true/false, 1/0; missing or empty = unlabelled, left
    out). Records bench marked `skipped` are left out. `method`, `value_name`, `model` (or `model_id`)
    and `success_window` are read where records carry them (all records must agree).

    Raises:
        ValueError: a record without `success_score` (a dataset manifest: score it with `topreward bench`
            first), a non-finite score (naming the record), a bad label, records of several methods.
    """
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    scores, labels, ids, groups = [], [], [], []
    unlabelled = skipped = 0
    seen: dict[str, set] = {k: set() for k in ("method", "value_name", "model", "success_window")}
    for path in map(Path, paths):
        for n, rec in enumerate(_read_records(path), 1):
            episode = "/".join(str(rec[k]) for k in ("dataset", "episode_id") if rec.get(k) not in (None, ""))
            where = f"{path} record {n}" + (f" ({episode})" if episode else "")
            if rec.get("skipped"):
                skipped += 1
                continue
            if "success_score" not in rec:
                raise ValueError(
                    f"{where} has no success_score: if {path} is a dataset (manifest), score it first, e.g. "
                    f"`topreward bench {path} --controls none --out bench_out`, then "
                    "`topreward calibrate bench_out`"
                )
            label = _label(rec.get("success"), where)
            if label is None:
                unlabelled += 1
                continue
            raw = rec["success_score"]
            try:
                score = float("nan") if raw in (None, "") else float(raw)
            except ValueError as e:
                raise ValueError(f"{where}: success_score={raw!r} is not a number") from e
            if not math.isfinite(score):
                raise ValueError(
                    f"{where} has success_score {raw!r} (not a finite number); re-score that episode or drop "
                    "the record"
                )
            scores.append(score)
            labels.append(label)
            ids.append(where)
            groups.append(f"{path}:{episode}" if episode else f"{path}:{n}")
            seen["method"].add(rec.get("method") or None)
            seen["value_name"].add(rec.get("value_name") or None)
            seen["model"].add(_model_id(rec) or None)
            window = rec.get("success_window") or (rec.get("config") or {}).get("success_window")
            seen["success_window"].add(int(window) if window not in (None, "") else None)
    scored_with: dict[str, Any] = {}
    for key, values in seen.items():
        known = values - {None}
        if len(known) > 1:
            raise ValueError(
                f"the records mix {key}s {sorted(map(str, known))}; calibrate one at a time (one input per "
                f"{key})"
            )
        scored_with[key] = known.pop() if known else None
    return LabelledScores(
        np.asarray(scores, dtype=np.float64),
        np.asarray(labels, dtype=bool),
        ids,
        groups,
        scored_with,
        [str(p) for p in paths],
        unlabelled,
        skipped,
    )


# ----------------------------------------------------------------------------- reliability diagram


def plot_reliability(
    probabilities: ArrayLike | dict[str, ArrayLike],
    labels: ArrayLike,
    path: str | Path | None = None,
    *,
    bins: int = 10,
    ax=None,
    title: str | None = None,
):
    """Reliability diagram: success rate vs mean predicted probability per equal-width bin.

    Args:
        probabilities: predicted P(success) per episode, or a dict `{name: probabilities}` for several
            curves (e.g. platt and isotonic) on the same episodes.
        labels: success label per episode.
        path: PNG to write (a new figure with a histogram of the probabilities below); or
        ax: a matplotlib Axes to draw the curves into instead (e.g. one panel of a bench report).
        bins: equal-width bins over [0, 1], as the ECE.

    Returns:
        The PNG path, or `ax` when drawing into one.
    """
    from topreward.plot import _pyplot

    if path is None and ax is None:
        raise ValueError("pass path= (write a PNG) or ax= (draw into an existing matplotlib Axes)")
    plt = _pyplot()
    curves = probabilities if isinstance(probabilities, dict) else {"calibrated": probabilities}
    fig = hist_ax = None
    if ax is None:
        fig, (ax, hist_ax) = plt.subplots(
            2, 1, figsize=(4.5, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
        )
    ax.plot([0, 1], [0, 1], ":", color="gray", label="perfect")
    for name, p in curves.items():
        mean_p, rate, count = reliability_bins(p, labels, bins)
        used = count > 0
        ece = expected_calibration_error(p, labels, bins)
        ax.plot(mean_p[used], rate[used], "o-", label=f"{name} (ECE {ece:.3f})")
        if hist_ax is not None:
            hist_ax.hist(np.asarray(p, float), bins=bins, range=(0, 1), histtype="step", label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("observed success rate")
    ax.set_title(title or f"reliability ({bins} equal-width bins)", fontsize=9)
    ax.legend(fontsize=7)
    if fig is None:
        return ax
    hist_ax.set_xlabel("predicted success probability")
    hist_ax.set_ylabel("episodes")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def held_out_probabilities(
    data: LabelledScores, config: CalibrationConfig
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Both mappings' probabilities on the held-out split of `data` (as `fit_calibration` splits it)."""
    fit_idx, test_idx = stratified_split(data.labels, config.test_fraction, config.seed, data.groups)
    curves = {}
    for mapping in MAPPINGS:
        try:
            _, prob = _mapping_fn(mapping, data.scores[fit_idx], data.labels[fit_idx], config.smooth_targets)
        except ValueError:
            continue
        curves[mapping] = np.asarray(prob(data.scores[test_idx]), dtype=np.float64)
    return curves, data.labels[test_idx]
