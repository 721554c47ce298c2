"""Success calibration: numerics against scikit-learn on seeded data, bad inputs, files, the CLI, and
applying a calibration in score results, bench records and annotate's parquet."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score, roc_curve

from topreward.calibration import (
    Calibration,
    CalibrationConfig,
    brier_score,
    expected_calibration_error,
    fit_calibration,
    fit_isotonic,
    fit_platt,
    load_labelled,
    plot_reliability,
    reliability_bins,
    roc_auc_interval,
    stratified_split,
    youden_threshold,
)
from topreward.cli import main
from topreward.episode import Episode
from topreward.result import ScoreResult

BIG_C = 1e10  # LogisticRegression without an effective penalty (C=inf / penalty=None vary across versions)


def synthetic(n: int = 200, seed: int = 0, shift: float = 1.2, rate: float = 0.4):
    """Seeded success scores on a log-prob-like scale: successes higher by `shift` on average."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < rate
    return rng.normal(-3.0, 1.0, n) + shift * y, y


# ----------------------------------------------------------------------------- numerics vs scikit-learn


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_platt_plain_equals_unpenalised_logistic_regression(seed):
    s, y = synthetic(seed=seed)
    slope, intercept = fit_platt(s, y, smooth_targets=False)
    lr = LogisticRegression(C=BIG_C, tol=1e-12, max_iter=10_000).fit(s[:, None], y)
    assert slope == pytest.approx(lr.coef_[0, 0], rel=1e-6)
    assert intercept == pytest.approx(lr.intercept_[0], rel=1e-6)


@pytest.mark.parametrize("seed", [0, 3])
def test_platt_smoothed_equals_weighted_logistic_regression_and_ignores_units(seed):
    s, y = synthetic(n=80, seed=seed)
    slope, intercept = fit_platt(s, y)
    n_pos, n_neg = y.sum(), (~y).sum()
    t = np.where(y, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    # a soft target t is the same likelihood as label 1 with weight t plus label 0 with weight 1 - t
    lr = LogisticRegression(C=BIG_C, tol=1e-12, max_iter=10_000).fit(
        np.r_[s, s][:, None], np.r_[np.ones_like(s), np.zeros_like(s)], sample_weight=np.r_[t, 1 - t]
    )
    assert slope == pytest.approx(lr.coef_[0, 0], rel=1e-6)
    assert intercept == pytest.approx(lr.intercept_[0], rel=1e-6)
    slope2, intercept2 = fit_platt(100.0 * s - 7.0, y)  # other units, same probabilities
    assert slope2 * 100.0 == pytest.approx(slope, rel=1e-7)
    assert intercept2 - 7.0 * slope2 == pytest.approx(intercept, rel=1e-7)


def test_platt_smoothed_stays_finite_on_separable_scores_plain_refuses():
    s = np.r_[np.linspace(-5, -4, 6), np.linspace(-2, -1, 6)]
    y = np.r_[np.zeros(6, bool), np.ones(6, bool)]
    slope, _ = fit_platt(s, y)
    assert 0 < slope < 50
    with pytest.raises(ValueError, match="separate successes from failures.*isotonic"):
        fit_platt(s, y, smooth_targets=False)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_isotonic_equals_sklearn_with_ties_and_out_of_range(seed):
    s, y = synthetic(n=150, seed=seed)
    s = np.round(s, 1)  # many ties
    x_steps, y_steps = fit_isotonic(s, y)
    ref = IsotonicRegression(out_of_bounds="clip").fit(s, y)
    grid = np.r_[np.linspace(s.min() - 2, s.max() + 2, 2001), s]
    np.testing.assert_allclose(np.interp(grid, x_steps, y_steps), ref.predict(grid), atol=1e-12)
    assert np.all(np.diff(y_steps) >= 0) and len(x_steps) <= len(np.unique(s))


def test_isotonic_hand_case():
    x, y = fit_isotonic([1, 2, 3, 4], [1, 0, 1, 1])
    np.testing.assert_allclose(np.interp([1, 2, 3, 4], x, y), [0.5, 0.5, 1, 1])


def test_brier_ece_and_bins_match_sklearn_and_a_naive_loop():
    rng = np.random.default_rng(4)
    p = rng.random(500)
    y = rng.random(500) < p**1.5
    assert brier_score(p, y) == pytest.approx(brier_score_loss(y, p), abs=1e-15)
    mean_p, rate, count = reliability_bins(p, y, 10)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy="uniform")
    np.testing.assert_allclose(rate[count > 0], prob_true, atol=1e-12)
    np.testing.assert_allclose(mean_p[count > 0], prob_pred, atol=1e-12)
    naive = 0.0
    for b in range(10):
        inside = (p >= b / 10) & ((p < (b + 1) / 10) if b < 9 else (p <= 1))
        if inside.any():
            naive += inside.sum() / len(p) * abs(p[inside].mean() - y[inside].mean())
    assert expected_calibration_error(p, y, 10) == pytest.approx(naive, abs=1e-12)
    assert expected_calibration_error([0.0, 1.0], [False, True]) == 0.0


def test_auc_bootstrap_interval_is_seeded_and_matches_a_reference_loop():
    s, y = synthetic(n=60, seed=5)
    low, high = roc_auc_interval(s, y, resamples=300, seed=7)
    assert roc_auc_interval(s, y, resamples=300, seed=7) == (low, high)
    rng = np.random.default_rng(7)
    pos, neg = s[y], s[~y]
    ref = [
        roc_auc_score(
            np.r_[np.ones(len(pos)), np.zeros(len(neg))],
            np.r_[rng.choice(pos, len(pos)), rng.choice(neg, len(neg))],
        )
        for _ in range(300)
    ]
    assert (low, high) == pytest.approx(tuple(np.percentile(ref, [2.5, 97.5])), abs=1e-12)
    assert low < roc_auc_score(y, s) < high


@pytest.mark.parametrize("seed", [0, 1])
def test_youden_threshold_reaches_sklearn_max_j(seed):
    s, y = synthetic(n=120, seed=seed)
    s = np.round(s, 1)
    threshold, j = youden_threshold(s, y)
    fpr, tpr, _ = roc_curve(y, s)
    assert j == pytest.approx(np.max(tpr - fpr), abs=1e-12)
    pred = s >= threshold
    assert pred[y].mean() - pred[~y].mean() == pytest.approx(j, abs=1e-12)
    assert threshold not in set(s.tolist())  # halfway between two observed scores


def test_split_is_stratified_seeded_and_keeps_episodes_together():
    y = np.r_[np.ones(20, bool), np.zeros(10, bool)]
    fit, test = stratified_split(y, 0.3, seed=1)
    assert set(fit).isdisjoint(test) and len(fit) + len(test) == 30
    assert y[test].sum() == 6 and (~y[test]).sum() == 3
    assert np.array_equal(stratified_split(y, 0.3, seed=1)[1], test)
    assert not np.array_equal(stratified_split(y, 0.3, seed=2)[1], test)
    groups = [i // 2 for i in range(30)]  # two records per episode
    fit, test = stratified_split(y, 0.3, seed=0, groups=groups)
    assert {groups[i] for i in fit}.isdisjoint({groups[i] for i in test})


# ----------------------------------------------------------------------------- fit, threshold, file


@pytest.mark.parametrize("mapping", ["platt", "isotonic"])
def test_fit_calibration_reports_held_out_metrics_and_round_trips(mapping, tmp_path):
    s, y = synthetic(n=200, seed=0, shift=2.0)
    cal = fit_calibration(
        s, y, CalibrationConfig(mapping=mapping, bootstrap=200), scored_with={"method": "topreward"}
    )
    m = cal.metrics
    assert cal.counts["test"] == {"success": round(0.3 * y.sum()), "failure": round(0.3 * (~y).sum())}
    assert sum(sum(c.values()) for c in cal.counts.values()) == 200
    assert 0.8 < m["roc_auc"] < 1 and m["roc_auc_ci"][0] < m["roc_auc"] < m["roc_auc_ci"][1]
    assert 0 < m["brier"] < 0.25 and 0 <= m["ece"] < 0.2 and "equal-width" in m["ece_binning"]
    assert list(cal.compared) == [{"platt": "isotonic", "isotonic": "platt"}[mapping]]
    path = cal.save(tmp_path / "cal.json")
    data = json.loads(path.read_text())
    for key in ("mapping", "parameters", "threshold", "threshold_rule", "metrics", "counts", "scored_with"):
        assert key in data
    assert data["scored_with"] == {
        "method": "topreward",
        "value_name": None,
        "model": None,
        "success_window": None,
    }
    assert data["version"] and data["date"].startswith("20")
    back = Calibration.load(path)
    grid = np.linspace(-8, 3, 50)
    np.testing.assert_array_equal(back.probability(grid), cal.probability(grid))
    np.testing.assert_array_equal(back.predict(grid), grid >= cal.threshold)
    assert isinstance(back.probability(-2.0), float) and isinstance(back.predict(-2.0), bool)


@pytest.mark.parametrize("mapping", ["platt", "isotonic"])
def test_probability_rule_makes_success_the_same_as_p_at_least_half(mapping):
    s, y = synthetic(n=200, seed=1, shift=2.0)
    cal = fit_calibration(s, y, CalibrationConfig(mapping=mapping, threshold_rule="probability", bootstrap=0))
    assert cal.probability(cal.threshold) == pytest.approx(0.5, abs=1e-9)
    grid = np.linspace(-8, 3, 2001)
    grid = grid[np.abs(grid - cal.threshold) > 1e-9]
    np.testing.assert_array_equal(cal.predict(grid), cal.probability(grid) >= 0.5)
    assert cal.metrics["roc_auc_ci"] is None


def test_results_are_seeded():
    s, y = synthetic(n=100, seed=2)
    a = fit_calibration(s, y, CalibrationConfig(seed=3, bootstrap=100))
    b = fit_calibration(s, y, CalibrationConfig(seed=3, bootstrap=100))
    assert a.parameters == b.parameters and a.metrics == b.metrics and a.threshold == b.threshold


# ----------------------------------------------------------------------------- bad inputs


def test_one_class_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="all 20 labelled episodes are successes.*failed rollouts"):
        fit_calibration(np.linspace(-3, -1, 20), np.ones(20, bool))


def test_too_few_episodes_is_refused_and_the_floor_holds():
    s, y = synthetic(n=8, seed=0, rate=0.5)
    with pytest.raises(
        ValueError, match="8 labelled episodes .* fewer than min_episodes=10.*lower min_episodes"
    ):
        fit_calibration(s, y)
    fit_calibration(s, y, CalibrationConfig(min_episodes=8, bootstrap=0))
    with pytest.raises(ValueError, match="below the floor of 4"):
        CalibrationConfig(min_episodes=3)
    with pytest.raises(ValueError, match="test_fraction"):
        CalibrationConfig(test_fraction=1.0)
    with pytest.raises(ValueError, match="mapping='logistic'"):
        CalibrationConfig(mapping="logistic")


def test_a_rare_class_of_one_episode_is_refused():
    s = np.linspace(-3, 0, 12)
    y = np.r_[np.zeros(11, bool), True]
    with pytest.raises(ValueError, match="at least 2 episodes"):
        fit_calibration(s, y)


def test_nan_score_names_the_record():
    s, y = synthetic(n=20, seed=0)
    s[7] = np.nan
    with pytest.raises(ValueError, match="ep-7"):
        fit_calibration(s, y, ids=[f"ep-{i}" for i in range(20)])


def test_isotonic_probability_rule_without_a_crossing_is_refused():
    s = np.linspace(-3, 0, 20)
    y = np.r_[np.zeros(5, bool), np.ones(15, bool)][np.random.default_rng(0).permutation(20)]
    with pytest.raises(ValueError, match="isotonic fit starts at or above probability 0.5.*youden"):
        fit_calibration(
            s, y, CalibrationConfig(mapping="isotonic", threshold_rule="probability", bootstrap=0)
        )


def test_not_a_calibration_file(tmp_path):
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ValueError, match="not a topreward calibration"):
        Calibration.load(tmp_path / "x.json")
    with pytest.raises(FileNotFoundError, match="topreward calibrate"):
        Calibration.load(tmp_path / "missing.json")


# ----------------------------------------------------------------------------- inputs


def write_records(path, n=40, seed=0, **extra):
    s, y = synthetic(n=n, seed=seed, shift=2.0, rate=0.5)
    rows = [
        {
            "dataset": "toy",
            "episode_id": f"ep{i}",
            "success": bool(y[i]),
            "success_score": float(s[i]),
            **extra,
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def test_load_labelled_reads_bench_folders_jsonl_and_csv(tmp_path):
    bench = tmp_path / "bench_out"
    bench.mkdir()
    rows = write_records(bench / "episodes.jsonl", method="topreward", value_name="log P(True)", model="m")
    with open(bench / "episodes.jsonl", "a") as f:
        f.write(json.dumps({"dataset": "toy", "episode_id": "broken", "skipped": "corrupt video"}) + "\n")
        f.write(
            json.dumps({"dataset": "toy", "episode_id": "nolabel", "success": None, "success_score": -1.0})
            + "\n"
        )
    data = load_labelled(bench)
    assert len(data.scores) == 40 and data.skipped == 1 and data.unlabelled == 1
    assert data.scored_with == {
        "method": "topreward",
        "value_name": "log P(True)",
        "model": "m",
        "success_window": None,
    }
    with open(tmp_path / "r.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["success_score", "success"])
        w.writeheader()
        w.writerows({"success_score": r["success_score"], "success": str(r["success"]).lower()} for r in rows)
    from_csv = load_labelled(tmp_path / "r.csv")
    np.testing.assert_array_equal(from_csv.scores, data.scores)
    np.testing.assert_array_equal(from_csv.labels, data.labels)


def test_load_labelled_bad_inputs_name_the_record_and_the_fix(tmp_path):
    (tmp_path / "manifest.jsonl").write_text(
        json.dumps({"video": "a.mp4", "instruction": "x", "success": True}) + "\n"
    )
    with pytest.raises(ValueError, match="no success_score.*topreward bench"):
        load_labelled(tmp_path / "manifest.jsonl")
    rows = write_records(tmp_path / "nan.jsonl")
    rows[3]["success_score"] = float("nan")
    (tmp_path / "nan.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match=r"record 4 \(toy/ep3\).*not a finite number"):
        load_labelled(tmp_path / "nan.jsonl")
    write_records(tmp_path / "a.jsonl", method="topreward")
    write_records(tmp_path / "b.jsonl", method="ensemble")
    with pytest.raises(ValueError, match="mix methods"):
        load_labelled([tmp_path / "a.jsonl", tmp_path / "b.jsonl"])
    with pytest.raises(FileNotFoundError, match="episodes.jsonl"):
        load_labelled(tmp_path)


# ----------------------------------------------------------------------------- the CLI


def test_cli_calibrate_writes_json_and_reliability_diagram(tmp_path, capsys):
    write_records(tmp_path / "records.jsonl", n=60)
    out = tmp_path / "cal.json"
    code = main(
        [
            "calibrate",
            str(tmp_path / "records.jsonl"),
            "--out",
            str(out),
            "--mapping",
            "isotonic",
            "--scores-method",
            "topreward",
            "--value-name",
            "log P(True)",
            "--bootstrap",
            "200",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "ROC-AUC" in text and "platt on the same split" in text
    data = json.loads(out.read_text())
    assert data["mapping"] == "isotonic" and data["scored_with"]["value_name"] == "log P(True)"
    assert (tmp_path / "cal_reliability.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["calibrate", str(tmp_path / "records.jsonl"), "--min-episodes", "100", "--no-plot"]) == 2
    assert "fewer than min_episodes=100" in capsys.readouterr().err


def test_plot_reliability_into_an_axes(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    p = rng.random(100)
    fig, ax = plt.subplots()
    assert plot_reliability({"a": p, "b": p**2}, rng.random(100) < p, ax=ax) is ax
    assert len(ax.lines) == 3  # diagonal + two curves
    plt.close(fig)
    with pytest.raises(ValueError, match="path= .* or ax="):
        plot_reliability(p, p > 0.5)


# ----------------------------------------------------------------------------- applying it


def fake_result(score: float, method: str = "fake", value_name: str = "log P(True)") -> ScoreResult:
    k = 3
    return ScoreResult(
        method=method,
        instruction="do it",
        num_frames=6,
        fps=2.0,
        sampled_frames=np.arange(6),
        prefix_lengths=np.array([2, 4, 6]),
        prefix_end_frames=np.array([1, 3, 5]),
        values=np.full(k, score),
        progress=np.array([0.0, 0.5, 1.0]),
        frame_progress=np.linspace(0, 1, 6),
        success_score=float(score),
        dense_rewards=np.zeros(6),
        config={"success_window": 3},
        model={"id": "tiny"},
        version="test",
        value_name=value_name,
    )


def small_calibration(method: str = "fake", value_name: str = "log P(True)") -> Calibration:
    s, y = synthetic(n=60, seed=0, shift=2.0)
    return fit_calibration(
        s,
        y,
        CalibrationConfig(bootstrap=0),
        scored_with={"method": method, "value_name": value_name, "success_window": 3},
    )


def test_apply_to_a_score_result_and_json_round_trip(tmp_path):
    cal = small_calibration()
    high, low = cal.apply(fake_result(0.5)), cal.apply(fake_result(-6.0))
    assert high.success is True and low.success is False
    assert high.success_probability > 0.9 > 0.1 > low.success_probability
    assert high.calibration["mapping"] == "platt" and high.calibration["threshold"] == cal.threshold
    back = ScoreResult.load(high.save(tmp_path / "r.json"))
    assert back.success is True and back.success_probability == high.success_probability
    assert json.loads((tmp_path / "r.json").read_text())["success"] is True
    plain = json.loads(fake_result(0.0).save(tmp_path / "p.json").read_text())
    assert plain["success_probability"] is None and plain["success"] is None


def test_apply_refuses_scores_of_another_method_or_value():
    with pytest.raises(ValueError, match="method='ensemble'.*method='fake'.*topreward calibrate"):
        small_calibration(method="ensemble").apply(fake_result(0.0))
    with pytest.raises(ValueError, match="value_name='log P\\(True\\) - log P\\(False\\)'"):
        small_calibration(value_name="log P(True) - log P(False)").apply(fake_result(0.0))
    with pytest.raises(ValueError, match="not finite|nan"):
        small_calibration().apply(fake_result(float("nan")))


class FakeScorer:
    """Returns each episode's `annotations["score"]` as its success score (values flat at it)."""

    name = "fake"
    value_name = "log P(True)"

    class backend:  # noqa: N801 - stands in for a backend object
        @staticmethod
        def describe():
            return {"id": "tiny"}

    def options(self):
        return {"success_window": 3, "model": "tiny"}

    def score(self, ep):
        return fake_result(ep.annotations["score"])

    def score_instructions(self, ep, instructions):
        return [self.score(ep) for _ in instructions]


class ListSource:
    def __init__(self, scores):
        self.eps = {
            f"ep{i}": Episode(
                6,
                2.0,
                lambda idx: np.zeros((len(idx), 8, 8, 3), np.uint8),
                "do it",
                f"mem{i}",
                {"score": s, "success": s > -3},
                f"ep{i}",
            )
            for i, s in enumerate(scores)
        }

    def episode_ids(self):
        return list(self.eps)

    def get(self, eid):
        return self.eps[eid]


def test_bench_records_get_probability_and_predicted_success(tmp_path):
    from topreward.bench import BenchConfig, BenchDataset, run_bench

    cal = small_calibration()
    scores = [-5.0, -4.0, -2.0, 0.0]
    run_bench(
        [BenchDataset("toy", "mem")],
        FakeScorer(),
        tmp_path,
        BenchConfig(episodes=4, controls=()),
        open_source=lambda spec: ListSource(scores),
        progress_bar=False,
        calibration=cal,
    )
    recs = [json.loads(line) for line in (tmp_path / "episodes.jsonl").read_text().splitlines()]
    assert [r["predicted_success"] for r in recs] == [s >= cal.threshold for s in scores]
    np.testing.assert_allclose([r["success_probability"] for r in recs], cal.probability(scores))
    assert [r["success"] for r in recs] == [s > -3 for s in scores]  # the label is kept
    assert recs[0]["method"] == "fake" and recs[0]["value_name"] == "log P(True)"
    # the bench output is itself a calibrate input, with what the scores are
    assert load_labelled(tmp_path).scored_with["method"] == "fake"
    with pytest.raises(ValueError, match="method='other'"):
        run_bench(
            [BenchDataset("toy", "mem")],
            FakeScorer(),
            tmp_path / "again",
            BenchConfig(episodes=4, controls=()),
            open_source=lambda spec: ListSource(scores),
            progress_bar=False,
            calibration=small_calibration(method="other"),
        )


def test_annotate_parquet_gets_per_episode_probability_and_success(tmp_path):
    from topreward.annotate import annotate, read_annotations

    cal = small_calibration()
    scores = [-5.0, 0.0]
    annotate(ListSource(scores), FakeScorer(), tmp_path / "p.parquet", progress_bar=False, calibration=cal)
    table, meta = read_annotations(tmp_path / "p.parquet")
    cols = table.to_pydict()
    by_episode = {
        e: (p, s) for e, p, s in zip(cols["episode_index"], cols["success_probability"], cols["success"])
    }
    assert by_episode[0][1] is False and by_episode[1][1] is True
    assert math.isclose(by_episode[1][0], cal.probability(0.0), rel_tol=1e-6)
    assert meta["calibration"]["mapping"] == "platt"
    with pytest.raises(ValueError, match="method='other'"):
        annotate(
            ListSource(scores),
            FakeScorer(),
            tmp_path / "q.parquet",
            progress_bar=False,
            calibration=small_calibration(method="other"),
        )


def test_cli_score_with_calibration(tiny_model_dirs, sample_video, tmp_path, capsys):
    base = ["score", str(sample_video), "open the drawer", "--model", str(tiny_model_dirs["qwen3_vl"])]
    base += ["--size", "56x84", "--num-prefixes", "4", "--out", str(tmp_path / "r.json")]
    small_calibration(method="topreward").save(tmp_path / "cal.json")
    assert main([*base, "--calibration", str(tmp_path / "cal.json")]) == 0
    data = json.loads((tmp_path / "r.json").read_text())
    assert 0.0 <= data["success_probability"] <= 1.0 and isinstance(data["success"], bool)
    assert data["calibration"]["path"] == str(tmp_path / "cal.json")
    assert "success probability" in capsys.readouterr().out
    small_calibration(method="ensemble").save(tmp_path / "other.json")
    assert main([*base, "--calibration", str(tmp_path / "other.json")]) == 2
    assert "method='ensemble'" in capsys.readouterr().err
