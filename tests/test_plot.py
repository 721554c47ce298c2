"""The score plot: one progress curve, raw values as a second scale when they are the same curve."""

from __future__ import annotations

import json

import numpy as np
import pytest

from topreward.cli import main
from topreward.plot import _value_axis


class _Result:
    def __init__(self, values, progress):
        self.values, self.progress = np.asarray(values, float), np.asarray(progress, float)


def test_min_max_progress_becomes_a_second_scale_not_a_second_line():
    values = np.array([-3.0, -2.5, -2.9, -1.0])
    progress = (values - values.min()) / (np.ptp(values) + 1e-8)
    to_value, to_progress = _value_axis(_Result(values, progress))
    np.testing.assert_allclose(to_value(progress), values, atol=1e-6)
    np.testing.assert_allclose(to_progress(values), progress, atol=1e-6)


@pytest.mark.parametrize(
    "values, progress",
    [
        ([0.1, 0.5, 0.2, 0.9], [0.0, 0.2, 0.7, 1.0]),  # progress not a function of the values
        ([1.0, 1.0, 1.0], [1.0, 1.0, 1.0]),  # a constant curve
        ([3.0, 2.0, 1.0], [0.0, 0.5, 1.0]),  # a falling map (e.g. a distance): two lines, not a flipped axis
    ],
)
def test_other_values_are_drawn_as_their_own_line(values, progress):
    assert _value_axis(_Result(values, progress)) is None


def test_score_plot_with_ground_truth_names_the_model(tiny_model_dirs, sample_video, tmp_path, capsys):
    png = tmp_path / "c.png"
    model = str(tiny_model_dirs["qwen3_vl"])
    args = [
        "score",
        str(sample_video),
        "open the drawer",
        "--model",
        model,
        "--out",
        str(tmp_path / "r.json"),
    ]
    args += ["--plot", str(png), "--num-prefixes", "4", "--size", "56x84"]
    assert main([*args, "--ground-truth", '{"success": true}']) == 0
    assert png.stat().st_size > 0
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"success": False}))
    capsys.readouterr()
    assert main([*args, "--ground-truth", str(gt)]) == 2
    assert "gives no progress" in capsys.readouterr().err
    assert main([*args, "--ground-truth", "{not json"]) == 2
    assert "neither a readable JSON file nor inline JSON" in capsys.readouterr().err
