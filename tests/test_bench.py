"""The bench harness: a noisy-oracle scorer recovers high VOC and AUC; every control runs; runs resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import topreward
from topreward.bench import BenchConfig, BenchDataset, run_bench
from topreward.bench.presets import preset
from topreward.bench.runner import choose_episodes, dataset_names, reversed_episode, static_episode
from topreward.cli import main
from topreward.episode import Episode
from topreward.result import ScoreResult
from topreward.rewards import frame_progress, minmax_progress
from topreward.sampling import prefix_lengths, sample_indices
from topreward.video import write_video

SCALE = 200.0  # red channel = SCALE * ground-truth progress


class NoisyOracle:
    """Test helper: reads the ground-truth progress painted into each frame's red channel, adds noise."""

    name = "noisy-oracle"

    def __init__(self, noise: float = 0.02, seed: int = 0) -> None:
        self.noise, self.rng, self.calls = noise, np.random.default_rng(seed), 0

    def score(self, ep) -> ScoreResult:
        self.calls += 1
        idx = sample_indices(ep.num_frames, ep.fps, 2.0, 16)
        ks = prefix_lengths(len(idx), None)
        p = ep.frames(idx)[..., 0].mean(axis=(1, 2)) / SCALE + self.rng.normal(0, self.noise, len(idx))
        lp = np.log(np.clip(p, 1e-3, 1.0))
        ends = idx[np.asarray(ks) - 1]
        prog = minmax_progress(lp)
        return ScoreResult(
            method="noisy-oracle",
            instruction=ep.instruction,
            num_frames=ep.num_frames,
            fps=ep.fps,
            sampled_frames=idx,
            prefix_lengths=np.asarray(ks),
            prefix_end_frames=ends,
            values=lp,
            progress=prog,
            frame_progress=frame_progress(ends, prog, ep.num_frames),
            success_score=float(lp[-3:].mean()),
            dense_rewards=np.zeros(ep.num_frames),
            config={},
            model={},
            version="test",
            signals={"log_p_true": lp},
        )

    def score_instructions(self, ep, instructions):
        return [self.score(Episode(**{**ep.__dict__, "instruction": text})) for text in instructions]


def painted_episode(path: Path, progress: np.ndarray, fps: float = 10) -> None:
    frames = np.zeros((len(progress), 32, 32, 3), np.uint8)
    frames[..., 0] = np.round(SCALE * progress)[:, None, None].astype(np.uint8)
    frames[..., 1] = 60
    write_video(path, frames, fps)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bench")
    rows = []
    for i in range(6):
        n = 40 + 5 * i
        success = i < 4
        gt = np.linspace(0, 1, n) if success else np.minimum(np.linspace(0, 1, n), 0.4)
        painted_episode(root / f"ep{i}.mp4", gt)
        row = {
            "video": f"ep{i}.mp4",
            "instruction": ["open the drawer", "push the button"][i % 2],
            "success": success,
            "episode_id": f"ep{i}",
        }
        if i == 1:  # stage-aware ground truth for one episode (two halves)
            row["subtasks"] = [
                {"name": "reach", "start": 0.0, "end": n / 20},
                {"name": "open", "start": n / 20, "end": n / 10},
            ]
        elif not success:
            row["progress"] = gt.tolist()
        rows.append(row)
    manifest = root / "tasks.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def test_noisy_oracle_recovers_high_voc_and_auc_and_controls_run(dataset, tmp_path):
    oracle = NoisyOracle()
    (s,) = run_bench(
        [BenchDataset("toy", str(dataset))], oracle, tmp_path, BenchConfig(episodes=6), progress_bar=False
    )
    assert s.n == 6
    assert s.values["voc"][0] > 0.8
    assert s.values["gt_spearman"][0] > 0.8
    assert s.success_auc == pytest.approx(1.0)
    assert s.values["reversed_voc"][0] < -0.5
    assert s.values["static_voc"][0] < s.values["voc"][0] - 0.3  # no signal in a static video
    assert s.values["debiased_voc"] is not None
    assert s.mismatch_diag == pytest.approx(
        0.5, abs=0.05
    )  # a blind scorer sits at chance with 2 instructions
    assert s.mismatch_top1 is not None
    report = (tmp_path / "report.md").read_text()
    assert "| toy | 6 |" in report and "curves_toy.png" in report
    assert (tmp_path / "curves_toy.png").exists() and (tmp_path / "voc_hist_toy.png").exists()
    assert "## Episodes" in report and "| toy | " in report.split("## Episodes")[1]
    # 6 episodes + 6 static + 6 reversed + 6 mismatched-instruction runs
    assert oracle.calls == 24


def test_bench_resumes_without_rescoring(dataset, tmp_path):
    run_bench(
        [BenchDataset("toy", str(dataset))],
        NoisyOracle(),
        tmp_path,
        BenchConfig(episodes=3, controls=()),
        progress_bar=False,
    )
    again = NoisyOracle()
    (s,) = run_bench(
        [BenchDataset("toy", str(dataset))],
        again,
        tmp_path,
        BenchConfig(episodes=3, controls=()),
        progress_bar=False,
    )
    assert again.calls == 0 and s.n == 3


def test_episode_draw_is_seeded():
    ids = [str(i) for i in range(50)]
    assert choose_episodes(ids, 5, 0) == choose_episodes(ids, 5, 0)
    assert choose_episodes(ids, 5, 0) != choose_episodes(ids, 5, 1)
    assert choose_episodes(ids[:3], 5, 0) == ids[:3]


def test_control_videos(dataset):
    from topreward.datasets import open_source

    ep = open_source(dataset).get("ep0")
    s, r = static_episode(ep), reversed_episode(ep)
    np.testing.assert_array_equal(s.frames([0, 10, 39]), ep.frames([0, 0, 0]))
    np.testing.assert_array_equal(r.frames([0, 39]), ep.frames([39, 0]))
    assert s.num_frames == ep.num_frames and s.instruction == ep.instruction


def test_bad_annotations_name_the_episode(tmp_path):
    painted_episode(tmp_path / "a.mp4", np.linspace(0, 1, 20))
    (tmp_path / "m.jsonl").write_text(
        json.dumps({"video": "a.mp4", "instruction": "x", "episode_id": "a", "progress": [0.5] * 3}) + "\n"
    )
    with pytest.raises(ValueError, match="episode bad/a: progress"):
        run_bench(
            [BenchDataset("bad", str(tmp_path / "m.jsonl"))],
            NoisyOracle(),
            tmp_path / "o",
            BenchConfig(controls=()),
            progress_bar=False,
        )


def test_oxe39_preset():
    p = preset("oxe39")
    assert len(p["datasets"]) == 39 and p["episodes"] == 20
    assert all(d.spec.startswith("lerobot/") for d in p["datasets"])
    assert np.mean([d.paper_voc for d in p["datasets"]]) == pytest.approx(0.857, abs=0.002)  # paper: 0.857
    with pytest.raises(ValueError, match="oxe39"):
        preset("oxe40")


def test_bench_command_with_tiny_model(dataset, tiny_model_dirs, tmp_path, capsys):
    code = main(
        [
            "bench",
            str(dataset),
            "--out",
            str(tmp_path),
            "--num-episodes",
            "2",
            "--model",
            str(tiny_model_dirs["qwen3_vl"]),
            "--max-frames",
            "4",
            "--num-prefixes",
            "3",
            "--quiet",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "tasks" in out and "static VOC" in out and (tmp_path / "report.md").exists()
    lines = (tmp_path / "episodes.jsonl").read_text().splitlines()
    assert len(lines) == 2 and all("static_voc" in json.loads(x) for x in lines)


def test_bench_on_the_shipped_sim_fixture_with_tiny_model(tiny_model_dirs, tmp_path, capsys):
    from topreward.sim import fixture_dir

    manifest = fixture_dir() / "manifest.jsonl"
    code = main(
        [
            "bench",
            str(manifest),
            "--out",
            str(tmp_path),
            "--num-episodes",
            "16",
            "--model",
            str(tiny_model_dirs["qwen3_vl"]),
            "--max-frames",
            "6",
            "--num-prefixes",
            "4",
            "--controls",
            "static,reversed",
            "--quiet",
        ]
    )
    assert code == 0
    records = [json.loads(x) for x in (tmp_path / "episodes.jsonl").read_text().splitlines()]
    assert len(records) == 16 and all(r["gt"] is not None for r in records)
    labels = {r["success"] for r in records}
    assert labels == {True, False}  # so the success AUC column is filled
    assert "success AUC" in capsys.readouterr().out


def test_sim_command_lists_tasks(capsys):
    assert main(["sim", "--list-tasks"]) == 0
    assert "push-v3" in capsys.readouterr().out


def _one_episode_manifest(folder: Path, progress: np.ndarray) -> Path:
    folder.mkdir(parents=True)
    painted_episode(folder / "ep0.mp4", progress)
    row = {"video": "ep0.mp4", "instruction": "open the drawer", "episode_id": "ep0", "success": True}
    (folder / "manifest.jsonl").write_text(json.dumps(row) + "\n")
    return folder / "manifest.jsonl"


def test_dataset_names_are_unique(tmp_path):
    for folder in ("x/a", "y/a", "y/b", "d"):
        (tmp_path / folder).mkdir(parents=True)
    for path in ("x/a/manifest.jsonl", "y/a/manifest.jsonl", "y/b/manifest.jsonl", "d/tasks.jsonl"):
        (tmp_path / path).write_text("")
    xa, ya, yb, tasks = (
        str(tmp_path / p)
        for p in ("x/a/manifest.jsonl", "y/a/manifest.jsonl", "y/b/manifest.jsonl", "d/tasks.jsonl")
    )
    assert dataset_names([xa, yb, tasks, str(tmp_path / "d")]) == ["a", "b", "tasks", "d"]
    assert dataset_names([xa, ya]) == ["x-a", "y-a"]  # the same name: parent folders added
    assert dataset_names(["lerobot/pusht", "me/pusht"]) == ["lerobot-pusht", "me-pusht"]
    assert dataset_names(["lerobot/aloha_static_candy"], taken=["aloha_static_candy"]) == [
        "lerobot-aloha_static_candy"
    ]
    assert dataset_names(["lerobot/pusht"], taken=["pusht", "lerobot-pusht"]) == ["lerobot-pusht-2"]
    with pytest.raises(ValueError, match="listed twice"):
        dataset_names([xa, str(tmp_path / "x" / "a" / ".." / "a" / "manifest.jsonl")])


def test_two_manifests_with_the_same_file_name_keep_their_own_results(tiny_model_dirs, tmp_path):
    first = _one_episode_manifest(tmp_path / "a", np.linspace(0, 1, 12))
    second = _one_episode_manifest(tmp_path / "b", np.linspace(1, 0, 12))
    small = ["--max-frames", "4", "--num-prefixes", "2", "--controls", "none", "--quiet"]
    command = ["bench", str(first), str(second), "--out", str(tmp_path / "o"), "--num-episodes", "1", *small]
    assert main([*command, "--model", str(tiny_model_dirs["qwen3_vl"])]) == 0
    records = [json.loads(x) for x in (tmp_path / "o" / "episodes.jsonl").read_text().splitlines()]
    assert [r["dataset"] for r in records] == ["a", "b"]  # before: both "manifest.jsonl", b reused a's
    assert [r["provenance"]["source"]["path"] for r in records] == [str(first), str(second)]
    assert records[0]["values"] != records[1]["values"]
    assert len({r["fingerprint"] for r in records}) == 2
    prov = json.loads((tmp_path / "o" / "provenance.json").read_text())
    assert set(prov) == {"a", "b"} and prov["a"]["model"]["id"] == str(tiny_model_dirs["qwen3_vl"].resolve())
    header = (tmp_path / "o" / "report.md").read_text().split("\n\n")[1]  # the provenance table
    assert (
        "| source a | `" in header
        and "| source b | `" in header
        and "| conventions | `topreward` |" in header
    )


def test_a_dataset_name_with_another_source_is_refused(tmp_path):
    first = _one_episode_manifest(tmp_path / "a", np.linspace(0, 1, 12))
    second = _one_episode_manifest(tmp_path / "b", np.linspace(1, 0, 12))
    config = BenchConfig(episodes=1, controls=())
    run_bench([BenchDataset("toy", str(first))], NoisyOracle(), tmp_path / "o", config, progress_bar=False)
    again = NoisyOracle()
    with pytest.raises(
        ValueError, match=r"source\.path: '.*/a/manifest.jsonl' before, '.*/b/manifest.jsonl' now"
    ):
        run_bench([BenchDataset("toy", str(second))], again, tmp_path / "o", config, progress_bar=False)
    assert again.calls == 0


def test_rerun_with_other_options_is_refused_until_overwrite(dataset, tiny_model_dirs, tmp_path, capsys):
    from .conftest import load_backend

    backend = load_backend(tiny_model_dirs, "qwen3_vl")
    model = str(tiny_model_dirs["qwen3_vl"])
    config = BenchConfig(episodes=2, controls=())
    toy = [BenchDataset("toy", str(dataset))]
    three = topreward.load_scorer("topreward", model=model, max_frames=4, num_prefixes=3, backend=backend)
    two = topreward.load_scorer("topreward", model=model, max_frames=4, num_prefixes=2, backend=backend)
    run_bench(toy, three, tmp_path, config, progress_bar=False)
    with pytest.raises(ValueError, match="num_prefixes: 3 before, 2 now.*--overwrite"):
        run_bench(toy, two, tmp_path, config, progress_bar=False)  # before: silently the 3-prefix results
    with pytest.raises(ValueError, match=r"controls: \[\] before, \['static'\] now"):
        run_bench(toy, three, tmp_path, BenchConfig(episodes=2, controls=("static",)), progress_bar=False)
    (s,) = run_bench(toy, two, tmp_path, config, progress_bar=False, overwrite=True)
    records = [json.loads(x) for x in (tmp_path / "episodes.jsonl").read_text().splitlines()]
    assert s.n == 2 and [len(r["values"]) for r in records] == [2, 2]
    # the command line says what differs and how to start again
    command = ["bench", str(dataset), "--out", str(tmp_path), "--num-episodes", "2", "--controls", "none"]
    assert main([*command, "--model", model, "--max-frames", "4", "--num-prefixes", "3", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "num_prefixes: 2 before, 3 now" in err and "pass --overwrite" in err
