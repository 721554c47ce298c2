"""Every use with every released model: annotate into a LeRobot dataset, bench with its controls, calibrate on
bench's records, the server for the one whose protocol streams. Tiny instances, through the model table.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from topreward.annotate.progress_file import read_annotations
from topreward.cli import main
from topreward.tiny import make_tiny_model
from topreward.video import write_video

from .conftest import colour_frames
from .helpers_lerobot import write_lerobot_v3

#: model folder (made under a temp root) -> the options that keep each protocol small here
MODELS = {
    "robometer": ("robometer", "robometer", []),
    "roboreward": ("RoboReward-4B", "qwen3_vl", ["--readout", "expected", "--max-frames", "4"]),
    "lrm-released-completion": ("lrm", "lrm", ["--readout", "expected", "--max-frames", "4"]),
    "sole": ("SOLE-R1-8B", "qwen3_vl", ["--temperature", "0", "--max-new-tokens", "4", "--max-frames", "3"]),
}


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> dict[str, list[str]]:
    root = tmp_path_factory.mktemp("released")
    argv = {}
    for method, (folder, arch, options) in MODELS.items():
        path = make_tiny_model(root / folder, arch)
        model = path / "completion" if arch == "lrm" else path
        argv[method] = ["--model", str(model), "--device", "cpu", *options]
    return argv


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    """Ten labelled episodes, half of them successes: enough for bench's controls and a calibration."""
    root = tmp_path_factory.mktemp("labelled")
    rows = []
    for i in range(10):
        write_video(root / f"ep{i}.mp4", colour_frames(8 + i % 3, 48, 64), fps=4)
        rows.append(
            {
                "video": f"ep{i}.mp4",
                "instruction": ["open the drawer", "push the button"][i % 2],
                "success": i % 2 == 0,
                "episode_id": f"ep{i}",
            }
        )
    path = root / "tasks.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("method", list(MODELS))
def test_annotate_bench_and_calibrate(method, released, manifest, tmp_path):
    argv = released[method]
    dataset = write_lerobot_v3(tmp_path / "ds", lengths=(6, 7))
    assert main(["annotate", str(dataset), "--into-dataset", *argv]) == 0
    table = read_annotations(dataset / "sarm_progress.parquet")[0]
    progress = np.asarray(table.column("progress_sparse").to_pylist(), dtype=float)
    assert table.num_rows == 13 and np.all((progress >= 0) & (progress <= 1))
    out = tmp_path / "bench"
    assert main(["bench", str(manifest), "--out", str(out), "--num-episodes", "10", *argv]) == 0
    records = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert {r["method"] for r in records} == {method} and len(records) == 10
    assert all(r.get("static_voc") is not None or r.get("controls") for r in records)
    cal = tmp_path / "cal.json"
    code = main(
        ["calibrate", str(out), "--out", str(cal), "--min-episodes", "10", "--no-plot", "--bootstrap", "0"]
    )
    assert code == 0 and json.loads(cal.read_text())["scored_with"]["method"] == method


def test_two_cameras_side_by_side_for_sole_and_refused_by_one_camera_models(released, tmp_path):
    from topreward import load_scorer
    from topreward.datasets import open_source

    from .helpers_lerobot import CAMERAS

    root = write_lerobot_v3(tmp_path / "ds", lengths=(6,))
    both = "+".join(c.split(".")[-1] for c in CAMERAS[:2])
    (episode,) = open_source(root, camera=both)
    one = next(iter(open_source(root, camera=CAMERAS[0])))
    frames = episode.frames(np.arange(2))
    assert frames.shape[2] == 2 * one.frames(np.arange(2)).shape[2]
    np.testing.assert_array_equal(frames[:, :, : frames.shape[2] // 2], one.frames(np.arange(2)))
    assert episode.annotations["cameras"] == list(CAMERAS[:2])
    robometer = load_scorer(model=released["robometer"][1], device="cpu")
    with pytest.raises(ValueError, match="holds 2 cameras side by side .* takes 1; pass one camera"):
        robometer.score(episode)
    model = released["sole"][1]
    sole = load_scorer(model=model, device="cpu", temperature=0.0, max_new_tokens=2, max_frames=3)
    with pytest.raises(ValueError, match="views='external\\+wrist'"):
        sole.score(episode)
    two = load_scorer(
        model=model,
        views="external+wrist",
        backend=sole.backend,
        temperature=0.0,
        max_new_tokens=2,
        max_frames=3,
    )
    assert len(two.score(episode).values) == 3
