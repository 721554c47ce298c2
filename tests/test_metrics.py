"""Tests for topreward.metrics: hand-computed cases, reference implementations, conventions, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from topreward.metrics import (
    confusion_diagonal_share,
    direction_accuracy,
    kendall_tau_a,
    kendall_tau_trajectory,
    monotonicity,
    pairwise_accuracy,
    pearson,
    pearson_per_trajectory,
    roc_auc,
    voc,
)

SEEDS = range(20)


def _random_pair(seed: int, ties: bool) -> tuple[np.ndarray, np.ndarray]:
    """Correlated random (pred, target); with ``ties`` both take few distinct values."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 40))
    target = rng.normal(size=n)
    pred = target + rng.normal(scale=1.0, size=n)
    if ties:
        pred, target = np.round(pred), np.round(target)
    return pred, target


def _naive_tau_a(pred, target) -> float:
    n = len(pred)
    s = 0
    for i in range(n):
        for j in range(i + 1, n):
            prod = (pred[j] - pred[i]) * (target[j] - target[i])
            s += 1 if prod > 0 else (-1 if prod < 0 else 0)
    return s / (n * (n - 1) / 2)


def _naive_pairwise_accuracy(pred, target) -> float:
    valid = correct = 0
    for i in range(len(pred)):
        for j in range(i + 1, len(pred)):
            if target[j] == target[i]:
                continue
            valid += 1
            correct += (pred[j] > pred[i]) == (target[j] > target[i]) and pred[j] != pred[i]
    return correct / valid if valid else float("nan")


# ----------------------------------------------------------------------------- voc


def test_voc_hand_cases():
    assert voc([0.0, 0.1, 0.5, 0.9]) == pytest.approx(1.0)
    assert voc([3, 2, 1, 0]) == pytest.approx(-1.0)
    # ranks [1, 3, 2] vs [1, 2, 3]: rho = 1 - 6 * 2 / (3 * 8) = 0.5
    assert voc([0.0, 2.0, 1.0]) == pytest.approx(0.5)
    # ties get average ranks: [1.5, 1.5, 3] vs [1, 2, 3] -> 1.5 / sqrt(1.5 * 2) = sqrt(3) / 2
    assert voc([0.0, 0.0, 1.0]) == pytest.approx(math.sqrt(3) / 2)


def test_voc_uses_times_order_only():
    assert voc([1, 2, 3], times=[2, 1, 0]) == pytest.approx(-1.0)
    values = [0.3, 0.1, 0.7, 0.5]
    assert voc(values, times=[0, 10, 11, 500]) == pytest.approx(voc(values))
    assert voc(values, times=[0, 10, 11, 500]) == pytest.approx(0.6)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", SEEDS)
def test_voc_matches_scipy_spearman(seed, ties):
    values, times = _random_pair(seed, ties)
    if np.ptp(values) == 0 or np.ptp(times) == 0:
        pytest.skip("constant draw")
    assert voc(values, times) == pytest.approx(stats.spearmanr(values, times).statistic, abs=1e-12)
    assert voc(values) == pytest.approx(stats.spearmanr(values, np.arange(len(values))).statistic, abs=1e-12)


def test_voc_accepts_numpy_and_returns_float():
    out = voc(np.array([1, 2, 3], dtype=np.int32))
    assert type(out) is float
    assert out == pytest.approx(1.0)


def test_voc_constant_values_is_zero():
    out = voc([0.5, 0.5, 0.5, 0.5])
    assert out == 0.0 and not math.isnan(out)
    assert voc([0.1] * 7) == 0.0
    assert voc([1, 2, 3], times=[4, 4, 4]) == 0.0


def test_voc_nan_values_is_nan():
    assert math.isnan(voc([0.1, float("nan"), 0.3]))


def test_voc_errors():
    with pytest.raises(ValueError, match="at least 2 values, got 1"):
        voc([0.3])
    with pytest.raises(ValueError, match="at least 2 values, got 0"):
        voc([])
    with pytest.raises(ValueError, match="values has length 3 but times has length 4"):
        voc([1, 2, 3], times=[0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"must be 1-D, got shape \(2, 2\)"):
        voc([[1, 2], [3, 4]])
    with pytest.raises(ValueError, match=r"must be 1-D, got shape \(\)"):
        voc(3.0)
    with pytest.raises(ValueError, match="times contains NaN at index 1"):
        voc([1, 2, 3], times=[0, float("nan"), 2])
    with pytest.raises(TypeError, match="values must be numeric"):
        voc(["a", "b", "c"])
    with pytest.raises(TypeError, match="must be numeric"):
        voc([1.0, None, 2.0])
    with pytest.raises(ValueError, match="rectangular"):
        voc([[1, 2], [3]])


# ----------------------------------------------------------------------------- roc_auc


def test_roc_auc_hand_cases():
    # positives 0.35, 0.8 vs negatives 0.1, 0.4: 3 of 4 pairs ordered -> 0.75
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    # positive 0.5 ties negative 0.5 (1/2), positive 0.9 beats it (1) -> 1.5 / 2
    assert roc_auc([0.5, 0.5, 0.9], [0, 1, 1]) == pytest.approx(0.75)
    assert roc_auc([1.0, 1.0], [0, 1]) == pytest.approx(0.5)
    assert roc_auc([0.0, 1.0], [1, 0]) == pytest.approx(0.0)
    assert roc_auc([0.2, 0.1, 0.9, 0.8], [False, False, True, True]) == pytest.approx(1.0)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", SEEDS)
def test_roc_auc_matches_sklearn(seed, ties):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(4, 60))
    labels = rng.integers(0, 2, size=n)
    labels[0], labels[1] = 0, 1
    scores = labels + rng.normal(scale=1.5, size=n)
    if ties:
        scores = np.round(scores)
    assert roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert roc_auc(scores, labels.astype(bool)) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_roc_auc_nan_scores_is_nan():
    assert math.isnan(roc_auc([0.1, float("nan"), 0.3], [0, 1, 1]))


def test_roc_auc_errors():
    with pytest.raises(ValueError, match="got 3 positive and 0 negative"):
        roc_auc([0.1, 0.2, 0.3], [1, 1, 1])
    with pytest.raises(ValueError, match="got 0 positive and 2 negative"):
        roc_auc([0.1, 0.2], [False, False])
    with pytest.raises(ValueError, match=r"labels must be 0/1 or bool, got values \[2.0\]"):
        roc_auc([0.1, 0.2, 0.3], [0, 1, 2])
    with pytest.raises(ValueError, match="scores has length 2 but labels has length 3"):
        roc_auc([0.1, 0.2], [0, 1, 1])
    with pytest.raises(TypeError, match="labels must be numeric"):
        roc_auc([0.1, 0.2], ["no", "yes"])


# ----------------------------------------------------------------------------- kendall tau-a


def test_kendall_tau_a_hand_cases():
    # pairs (0,1) and (0,2) concordant, (1,2) discordant -> (2 - 1) / 3
    assert kendall_tau_a([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    # pred tie on (0,1) counts as neither but stays in the denominator -> 2 / 3 (tau-b would be 2/sqrt(6))
    assert kendall_tau_a([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / 3)
    tau_b = stats.kendalltau([1, 1, 2], [1, 2, 3]).statistic
    assert tau_b == pytest.approx(2 / math.sqrt(6))
    assert kendall_tau_a([1, 1, 2], [1, 2, 3]) != pytest.approx(tau_b)
    # target tie likewise
    assert kendall_tau_a([1, 2, 3], [0, 0, 1]) == pytest.approx(2 / 3)
    assert kendall_tau_a([4, 3, 2, 1], [1, 2, 3, 4]) == pytest.approx(-1.0)
    assert kendall_tau_a([5, 5, 5], [1, 2, 3]) == 0.0


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", SEEDS)
def test_kendall_tau_a_matches_naive_loop(seed, ties):
    pred, target = _random_pair(seed, ties)
    assert kendall_tau_a(pred, target) == pytest.approx(_naive_tau_a(pred, target), abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_kendall_tau_a_equals_scipy_without_ties(seed):
    pred, target = _random_pair(seed, ties=False)
    assert len(np.unique(pred)) == len(pred) and len(np.unique(target)) == len(target)
    assert kendall_tau_a(pred, target) == pytest.approx(stats.kendalltau(pred, target).statistic, abs=1e-12)


def test_kendall_tau_a_nan_and_errors():
    assert math.isnan(kendall_tau_a([1, float("nan"), 3], [1, 2, 3]))
    with pytest.raises(ValueError, match="pred needs at least 2 values, got 1"):
        kendall_tau_a([1], [1])
    with pytest.raises(ValueError, match="pred has length 2 but target has length 3"):
        kendall_tau_a([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="target contains NaN at index 0"):
        kendall_tau_a([1, 2], [float("nan"), 2])


def test_kendall_tau_trajectory_hand_case():
    # t=2: pair (0,1) concordant -> 1; t=3: tau_a = 1/3 -> avg 2/3, last 1/3
    avg, last = kendall_tau_trajectory([1, 2, 3], [1, 3, 2])
    assert avg == pytest.approx(2 / 3)
    assert last == pytest.approx(1 / 3)
    # t=2: pred tie -> 0; t=3: 2/3; t=4: pairs (0,3),(1,3) conc, (2,3) disc -> (2 + 2 - 1)/6 = 1/2
    avg, last = kendall_tau_trajectory([1, 1, 2, 1.5], [1, 2, 3, 4])
    assert avg == pytest.approx((0 + 2 / 3 + 1 / 2) / 3)
    assert last == pytest.approx(0.5)


def test_kendall_tau_trajectory_two_points():
    assert kendall_tau_trajectory([0.2, 0.1], [0, 1]) == (pytest.approx(-1.0), pytest.approx(-1.0))


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", SEEDS)
def test_kendall_tau_trajectory_matches_prefix_loop(seed, ties):
    pred, target = _random_pair(seed, ties)
    taus = [_naive_tau_a(pred[:t], target[:t]) for t in range(2, len(pred) + 1)]
    avg, last = kendall_tau_trajectory(pred, target)
    assert avg == pytest.approx(np.mean(taus), abs=1e-12)
    assert last == pytest.approx(taus[-1], abs=1e-12)
    assert last == pytest.approx(kendall_tau_a(pred, target), abs=1e-12)


def test_kendall_tau_trajectory_nan_and_errors():
    avg, last = kendall_tau_trajectory([1, 2, float("nan")], [1, 2, 3])
    assert math.isnan(avg) and math.isnan(last)
    with pytest.raises(ValueError, match="at least 2 values, got 1"):
        kendall_tau_trajectory([1], [1])
    with pytest.raises(ValueError, match="pred has length 3 but target has length 2"):
        kendall_tau_trajectory([1, 2, 3], [1, 2])


# ----------------------------------------------------------------------------- pearson


def test_pearson_hand_case():
    # dx = [-1, 0, 1], dy = [-4/3, -1/3, 5/3]: r = 3 / sqrt(2 * 42/9) = 9 / sqrt(84)
    assert pearson([1, 2, 3], [1, 2, 4]) == pytest.approx(9 / math.sqrt(84))
    assert pearson([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", SEEDS)
def test_pearson_matches_scipy(seed, ties):
    pred, target = _random_pair(seed, ties)
    if np.ptp(pred) == 0 or np.ptp(target) == 0:
        pytest.skip("constant draw")
    assert pearson(pred, target) == pytest.approx(stats.pearsonr(pred, target).statistic, abs=1e-12)


def test_pearson_conventions_and_errors():
    assert pearson([0.3, 0.3, 0.3], [1, 2, 3]) == 0.0
    assert pearson([1, 2, 3], [0.1, 0.1, 0.1]) == 0.0
    assert math.isnan(pearson([1, float("nan"), 3], [1, 2, 3]))
    with pytest.raises(ValueError, match="at least 2 values, got 1"):
        pearson([1], [1])
    with pytest.raises(ValueError, match="pred has length 3 but target has length 4"):
        pearson([1, 2, 3], [1, 2, 3, 4])


def test_pearson_per_trajectory_is_mean_not_pooled():
    preds = [[0, 1, 2], [10, 11, 12]]
    targets = [[0, 1, 2], [1, 0.5, 0]]
    assert pearson_per_trajectory(preds, targets) == pytest.approx(0.0)
    pooled = pearson(np.concatenate(preds), np.concatenate(targets))
    assert pooled != pytest.approx(0.0)
    preds = [[1, 2, 3], [1, 2, 3], [0, 0, 0]]
    targets = [[1, 2, 4], [1, 2, 3], [1, 2, 3]]
    assert pearson_per_trajectory(preds, targets) == pytest.approx((9 / math.sqrt(84) + 1 + 0) / 3)


def test_pearson_per_trajectory_errors():
    with pytest.raises(ValueError, match="preds has 2 trajectories but targets has 1"):
        pearson_per_trajectory([[1, 2], [1, 2]], [[1, 2]])
    with pytest.raises(ValueError, match="at least one trajectory, got 0"):
        pearson_per_trajectory([], [])
    with pytest.raises(ValueError, match="trajectory 1: pred has length 2 but target has length 3"):
        pearson_per_trajectory([[1, 2], [1, 2]], [[1, 2], [1, 2, 3]])


# ----------------------------------------------------------------------------- pairwise / direction


def test_pairwise_accuracy_hand_cases():
    # (0,1) right, (0,2) right, (1,2) wrong
    assert pairwise_accuracy([1, 3, 2], [1, 2, 3]) == pytest.approx(2 / 3)
    # target tie (0,1) is skipped although pred disagrees there
    assert pairwise_accuracy([5, 0, 6], [1, 1, 2]) == pytest.approx(1.0)
    # pred tie counts as wrong
    assert pairwise_accuracy([1, 1], [0, 1]) == 0.0
    assert pairwise_accuracy([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / 3)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", SEEDS)
def test_pairwise_accuracy_matches_naive_loop(seed, ties):
    pred, target = _random_pair(seed, ties)
    expected = _naive_pairwise_accuracy(pred, target)
    out = pairwise_accuracy(pred, target)
    if math.isnan(expected):
        assert math.isnan(out)
    else:
        assert out == pytest.approx(expected, abs=1e-12)
    if not ties:  # without ties every pair is valid and right/wrong: accuracy = (tau + 1) / 2
        assert out == pytest.approx((kendall_tau_a(pred, target) + 1) / 2, abs=1e-12)


def test_pairwise_accuracy_nan_cases_and_errors():
    assert math.isnan(pairwise_accuracy([1, 2, 3], [0.5, 0.5, 0.5]))
    assert math.isnan(pairwise_accuracy([1], [1]))
    assert math.isnan(pairwise_accuracy([1, float("nan"), 3], [1, 2, 3]))
    with pytest.raises(ValueError, match="pred has length 2 but target has length 3"):
        pairwise_accuracy([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="target contains NaN at index 2"):
        pairwise_accuracy([1, 2, 3], [1, 2, float("nan")])


def test_direction_accuracy_hand_cases():
    # steps: +/+ right, -/+ wrong, target flat -> skipped
    assert direction_accuracy([0, 1, 0.5, 0.5], [0, 1, 2, 2]) == pytest.approx(0.5)
    assert direction_accuracy([1, 0], [1, 0]) == 1.0
    assert direction_accuracy([0, 0], [0, 1]) == 0.0  # flat prediction is wrong
    # only consecutive steps count: pred ends below its start but both steps go up
    assert direction_accuracy([0, 1, 0.5, 0.9], [0, 1, 2, 3]) == pytest.approx(2 / 3)


def test_direction_accuracy_nan_cases_and_errors():
    assert math.isnan(direction_accuracy([1, 2, 3], [2, 2, 2]))
    assert math.isnan(direction_accuracy([1], [1]))
    assert math.isnan(direction_accuracy([1, float("nan")], [1, 2]))
    with pytest.raises(ValueError, match="pred has length 3 but target has length 2"):
        direction_accuracy([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match=r"target must be 1-D, got shape \(1, 2\)"):
        direction_accuracy([1, 2], [[1, 2]])


# ----------------------------------------------------------------------------- monotonicity


def test_monotonicity():
    # increments [1, 0, -0.5, 1.5]: 3 of 4 non-decreasing
    assert monotonicity([0, 1, 1, 0.5, 2]) == pytest.approx(0.75)
    assert monotonicity([3, 2, 1]) == 0.0
    assert monotonicity([0.4, 0.4, 0.4]) == 1.0
    assert math.isnan(monotonicity([0, float("nan"), 1]))
    with pytest.raises(ValueError, match="at least 2 values, got 1"):
        monotonicity([0.5])


# ----------------------------------------------------------------------------- confusion matrix


def test_confusion_diagonal_share_hand_case():
    # columns sum to 4: diag shares 2/4 and 3/4 (row normalisation would give (2/3 + 3/5) / 2)
    assert confusion_diagonal_share([[2, 1], [2, 3]]) == pytest.approx(0.625)
    assert confusion_diagonal_share(np.eye(3)) == pytest.approx(1.0)
    assert confusion_diagonal_share(np.ones((4, 4))) == pytest.approx(0.25)
    assert confusion_diagonal_share([[7.0]]) == pytest.approx(1.0)


def test_confusion_diagonal_share_invariant_to_column_scaling():
    rng = np.random.default_rng(0)
    m = rng.random((5, 5))
    scaled = m * np.array([1.0, 10.0, 0.01, 3.0, 100.0])
    assert confusion_diagonal_share(scaled) == pytest.approx(confusion_diagonal_share(m))
    assert confusion_diagonal_share(m) == pytest.approx(np.mean(np.diag(m) / m.sum(axis=0)))


def test_confusion_diagonal_share_nan_and_errors():
    assert math.isnan(confusion_diagonal_share([[1, float("nan")], [1, 1]]))
    with pytest.raises(ValueError, match=r"non-negative, got -0.5 at \(1, 0\).*exp\(\).*minimum"):
        confusion_diagonal_share([[1, 1], [-0.5, 1]])
    with pytest.raises(ValueError, match=r"square.*got shape \(2, 3\)"):
        confusion_diagonal_share([[1, 2, 3], [4, 5, 6]])
    with pytest.raises(ValueError, match=r"got shape \(0, 0\)"):
        confusion_diagonal_share(np.zeros((0, 0)))
    with pytest.raises(ValueError, match=r"matrix must be 2-D, got shape \(3,\)"):
        confusion_diagonal_share([1, 2, 3])
    with pytest.raises(ValueError, match="column 1 of matrix sums to 0"):
        confusion_diagonal_share([[1, 0], [1, 0]])
    with pytest.raises(ValueError, match=r"infinite entry.*before exp\(\)"):
        confusion_diagonal_share([[np.inf, 1], [1, 1]])
