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

All numerics are numpy only; tests hold them to scikit-learn's on seeded data. The package: `fit` (the
mappings, threshold and split), `labelled` (reading labelled scores), `model` (`Calibration` and
`fit_calibration`). It imports only the basics (metrics, plot, worklog, atomic writes), so every layer
above may apply a calibration.
"""

from topreward.calibration.fit import fit_isotonic, fit_platt, stratified_split, youden_threshold
from topreward.calibration.labelled import LabelledScores, load_labelled
from topreward.calibration.model import (
    FORMAT,
    MAPPINGS,
    THRESHOLD_RULES,
    Calibration,
    CalibrationConfig,
    fit_calibration,
    held_out_probabilities,
)
from topreward.metrics import brier_score, expected_calibration_error, reliability_bins, roc_auc_interval
from topreward.plot import plot_reliability

__all__ = [
    "FORMAT",
    "MAPPINGS",
    "THRESHOLD_RULES",
    "Calibration",
    "CalibrationConfig",
    "LabelledScores",
    "brier_score",
    "expected_calibration_error",
    "fit_calibration",
    "fit_isotonic",
    "fit_platt",
    "held_out_probabilities",
    "load_labelled",
    "plot_reliability",
    "reliability_bins",
    "roc_auc_interval",
    "stratified_split",
    "youden_threshold",
]
