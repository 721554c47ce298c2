"""The calibration itself (`topreward.calibration`): its options, the fitted `Calibration` (save, load, apply),
and `fit_calibration`."""

from __future__ import annotations

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

from topreward.atomic import write_text
from topreward.calibration.fit import fit_isotonic, fit_platt, sigmoid, stratified_split, youden_threshold
from topreward.calibration.labelled import LabelledScores
from topreward.config import check_choices, option
from topreward.metrics import (
    brier_score,
    expected_calibration_error,
    roc_auc,
    roc_auc_interval,
    scores_labels,
)

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
            p = sigmoid(self.parameters["slope"] * s + self.parameters["intercept"])
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
        write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")
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
    config = config or CalibrationConfig()
    s = np.asarray(scores, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(s)) if s.ndim == 1 else []
    if len(bad):
        name = ids[bad[0]] if ids is not None else f"record {int(bad[0])}"
        raise ValueError(
            f"{len(bad)} success score(s) are not finite, first {name} ({s[bad[0]]}); re-score or drop them"
        )
    s, y = scores_labels(s, labels)
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
