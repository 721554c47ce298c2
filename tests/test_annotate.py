"""`topreward annotate` / `weights` / `rank`: RA-BC schema, resume after a kill, skipped episodes, Ray engine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import topreward
from topreward.annotate import ScorerSpec, annotate, lerobot_progress_path, read_annotations, work_path
from topreward.cli import main
from topreward.datasets import open_source
from topreward.video import write_video
from topreward.weights import awr_weights, rank_episodes

from .conftest import colour_frames, load_backend
from .helpers_lerobot import tree_snapshot, write_lerobot_v3
from .lerobot_venv import check_with_lerobot, needs_lerobot

SMALL = ["--max-frames", "6", "--num-prefixes", "3", "--quiet"]


@pytest.fixture(scope="module")
def scorer(tiny_model_dirs):
    return topreward.load_scorer(
        "topreward",
        model=str(tiny_model_dirs["qwen3_vl"]),
        max_frames=6,
        num_prefixes=3,
        backend=load_backend(tiny_model_dirs, "qwen3_vl"),
    )


def make_manifest(root: Path, n: int, corrupt: tuple[int, ...] = ()) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        path = root / f"ep{i:02d}.mp4"
        if i in corrupt:
            path.write_bytes(b"not a video")
        else:
            write_video(path, colour_frames(8 + i % 3, 64, 64), fps=4)
        rows.append({"video": path.name, "instruction": "open the drawer", "episode_id": f"ep{i:02d}"})
    manifest = root / "tasks.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def undated(meta: dict) -> dict:
    """A file's metadata without the one field two runs never share: the provenance's date."""
    return {**meta, "provenance": {k: v for k, v in meta["provenance"].items() if k != "date"}}


def test_lerobot_dataset_to_rabc_parquet(scorer, tmp_path):
    root = write_lerobot_v3(tmp_path / "ds", lengths=(10, 12, 8), episodes_per_video_file=3)
    before = tree_snapshot(root)
    out = tmp_path / "progress.parquet"
    summary = annotate(open_source(root), scorer, out, progress_bar=False)
    assert (summary.scored, summary.skipped) == (3, 0)
    assert tree_snapshot(root) == before  # the dataset is only read
    assert not work_path(out).exists()
    table, meta = read_annotations(out)
    assert table.column_names[:5] == [
        "index",
        "episode_index",
        "frame_index",
        "progress_sparse",
        "progress_dense",
    ]
    assert str(table.schema.field("progress_sparse").type) == "float"
    idx = table["index"].to_numpy()
    assert idx.tolist() == list(range(30))  # global frame index = dataset_from_index + frame_index
    assert table["episode_index"].to_numpy().tolist() == [0] * 10 + [1] * 12 + [2] * 8
    assert table["frame_index"].to_numpy().tolist() == [*range(10), *range(12), *range(8)]
    p = table["progress_sparse"].to_numpy()
    assert np.all((p >= 0) & (p <= 1)) and np.array_equal(p, table["progress_dense"].to_numpy())
    lp = table["log_p_true"].to_numpy()
    assert (
        np.isfinite(lp[table["prefix_end"].to_numpy()]).all()
        and np.isnan(lp[~table["prefix_end"].to_numpy()]).all()
    )
    # the same numbers as scoring the episode on its own
    ep1 = open_source(root).get("1")
    r = scorer.score(ep1)
    np.testing.assert_allclose(p[10:22], r.frame_progress, atol=1e-6)
    assert meta["method"] == "topreward" and meta["model_id"] == scorer.backend.model_id
    assert meta["topreward_version"] == topreward.__version__ and meta["config"]["max_frames"] == 6
    assert pq.read_schema(out).metadata[b"reward_model_path"].decode() == scorer.backend.model_id


def test_corrupt_video_is_skipped_and_recorded(scorer, tmp_path):
    manifest = make_manifest(tmp_path / "m", 3, corrupt=(1,))
    out = tmp_path / "p.parquet"
    summary = annotate(open_source(manifest), scorer, out, progress_bar=False)
    assert summary.scored == 2 and "ep01" in summary.skipped_reasons
    table, meta = read_annotations(out)
    assert [s["episode_id"] for s in meta["skipped"]] == ["ep01"]
    assert "ep01.mp4" in meta["skipped"][0]["reason"]
    assert sorted(set(table["episode_index"].to_numpy().tolist())) == [0, 2]


def test_existing_output_is_refused(scorer, tmp_path):
    manifest = make_manifest(tmp_path / "m", 1)
    out = tmp_path / "p.parquet"
    out.write_text("keep me")
    with pytest.raises(FileExistsError, match="--resume.*--overwrite"):
        annotate(open_source(manifest), scorer, out, progress_bar=False)
    assert out.read_text() == "keep me"
    annotate(open_source(manifest), scorer, out, overwrite=True, progress_bar=False)
    assert read_annotations(out)[0].num_rows == 8


def test_resume_with_other_settings_is_refused(scorer, tmp_path, monkeypatch):
    import topreward.annotate.job as annotate_module

    manifest = make_manifest(tmp_path / "m", 2)
    out = tmp_path / "p.parquet"

    def crash(*args, **kwargs):
        raise RuntimeError("killed before the parquet was written")

    with monkeypatch.context() as m:  # an interrupted run: both episodes in the work file, no parquet
        m.setattr(annotate_module, "write_parquet", crash)
        with pytest.raises(RuntimeError, match="killed"):
            annotate(open_source(manifest), scorer, out, progress_bar=False)
    lines = [json.loads(x) for x in work_path(out).read_text().splitlines()]
    assert len({r["fingerprint"] for r in lines}) == 2 and lines[0]["settings"]["num_prefixes"] == 3
    options = {k: scorer.options()[k] for k in ("model", "max_frames")}
    two = topreward.load_scorer("topreward", backend=scorer.backend, num_prefixes=2, **options)
    with pytest.raises(ValueError, match="num_prefixes: 3 before, 2 now; pass --overwrite"):
        annotate(open_source(manifest), two, out, resume=True, progress_bar=False)
    other = make_manifest(tmp_path / "other", 2)  # the same episode ids in another folder
    with pytest.raises(
        ValueError, match=r"source\.path: '.*/m/tasks.jsonl' before, '.*/other/tasks.jsonl' now"
    ):
        annotate(open_source(other), scorer, out, resume=True, progress_bar=False)
    summary = annotate(open_source(manifest), scorer, out, resume=True, progress_bar=False)
    assert (summary.reused, summary.scored) == (2, 0)
    # a finished file is not "resumed" into another run's results either
    with pytest.raises(ValueError, match="num_prefixes: 3 before, 2 now"):
        annotate(open_source(manifest), two, out, resume=True, progress_bar=False)
    annotate(open_source(manifest), two, out, overwrite=True, progress_bar=False)
    table, meta = read_annotations(out)
    assert meta["config"]["num_prefixes"] == 2 and int(table["prefix_end"].to_numpy().sum()) == 4


def _cli(manifest: Path, out: Path, model: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "topreward.cli",
        "annotate",
        str(manifest),
        "--out",
        str(out),
        "--model",
        str(model),
        *SMALL,
        *extra,
    ]


def test_kill_and_resume_loses_and_repeats_nothing(tiny_model_dirs, tmp_path):
    manifest = make_manifest(tmp_path / "m", 30)
    model = tiny_model_dirs["qwen3_vl"]
    full = tmp_path / "full.parquet"
    subprocess.run(_cli(manifest, full, model), check=True, capture_output=True)

    out = tmp_path / "resumed.parquet"
    work = work_path(out)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        _cli(manifest, out, model), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if work.exists() and work.read_bytes().count(b"\n") >= 2:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not out.exists()
    done_before = work.read_bytes().count(b"\n")
    assert 2 <= done_before < 30

    again = subprocess.run(_cli(manifest, out, model), capture_output=True, text=True)
    assert (
        again.returncode == 2 and "--resume" in again.stderr
    )  # an interrupted run is not silently restarted

    resumed = subprocess.run(
        _cli(manifest, out, model, "--resume"), check=True, capture_output=True, text=True
    )
    assert f"{30 - done_before} episodes scored, {done_before} reused" in resumed.stdout
    a, meta_a = read_annotations(full)
    b, meta_b = read_annotations(out)
    assert undated(meta_a) == undated(meta_b) and a.column_names == b.column_names
    for name in a.column_names:
        np.testing.assert_array_equal(a[name].to_numpy(), b[name].to_numpy())
    assert not work.exists()


def test_torn_last_line_is_dropped(scorer, tmp_path):
    manifest = make_manifest(tmp_path / "m", 2)
    out = tmp_path / "p.parquet"
    full = annotate(open_source(manifest), scorer, tmp_path / "full.parquet", progress_bar=False).out
    work_path(out).write_text('{"episode_id": "ep00", "trunc')  # a kill in the middle of a write
    annotate(open_source(manifest), scorer, out, resume=True, progress_bar=False)
    np.testing.assert_array_equal(
        read_annotations(out)[0]["progress_sparse"].to_numpy(),
        read_annotations(full)[0]["progress_sparse"].to_numpy(),
    )


def test_ray_engine_matches_local(scorer, tmp_path):
    import functools

    ray = pytest.importorskip("ray")
    manifest = make_manifest(tmp_path / "m", 3, corrupt=(2,))
    # two methods: the Ray engine knows only the method name and its options
    same = {k: scorer.options()[k] for k in ("model", "max_frames", "num_prefixes")}
    second = topreward.load_scorer("instruction", backend=scorer.backend, **same)
    # RoboReward's frames carry their own 1 fps timeline (`ModelVideo.clock`) from the CPU tasks to the actor
    third = topreward.load_scorer("roboreward", backend=scorer.backend, readout="expected", **same)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        for s in (scorer, second, third):
            local = annotate(open_source(manifest), s, tmp_path / f"{s.name}.parquet", progress_bar=False).out
            summary = annotate(
                open_source(manifest),
                ScorerSpec(s.name, s.options()),
                tmp_path / f"{s.name}-ray.parquet",
                engine="ray",
                workers=1,
                source_factory=functools.partial(open_source, str(manifest)),
                progress_bar=False,
            )
            assert summary.scored == 2 and summary.skipped == 1
            a, meta_a = read_annotations(local)
            b, meta_b = read_annotations(summary.out)
            assert undated(meta_a) == undated(meta_b) and meta_b["method"] == s.name
            for name in a.column_names:  # identical up to float rounding (the actor runs on other threads)
                np.testing.assert_allclose(a[name].to_numpy(), b[name].to_numpy(), atol=1e-5, rtol=0)
    finally:
        ray.shutdown()


def test_awr_weights_hand_values():
    w, adv, beta = awr_weights(np.array([0.0, 0.2, 0.4, np.nan]), beta=0.2, max_weight=2.0)
    np.testing.assert_allclose(adv[:3], [-0.2, 0.0, 0.2], atol=1e-12)
    np.testing.assert_allclose(w[:3], [np.exp(-1), 1.0, 2.0])  # exp(1) = 2.718 capped at 2
    assert np.isnan(w[3]) and beta == 0.2
    _, adv, beta = awr_weights(np.array([1.0, 3.0]))
    assert beta == pytest.approx(1.0)  # auto: std of the advantages
    with pytest.raises(ValueError, match="beta"):
        awr_weights(np.array([1.0, 2.0]), beta=-1)
    with pytest.raises(ValueError, match="skipped"):
        awr_weights(np.array([np.nan]))


def test_weights_and_rank_commands(scorer, tmp_path, capsys):
    from topreward.weights import rabc_weights

    manifest = make_manifest(tmp_path / "m", 4, corrupt=(3,))
    ann = annotate(open_source(manifest), scorer, tmp_path / "p.parquet", progress_bar=False).out
    assert main(["weights", str(ann), "--out", str(tmp_path / "w.parquet"), "--max-weight", "1.5"]) == 0
    w = pq.read_table(tmp_path / "w.parquet")
    weights = w["weight"].to_numpy()
    ok = ~np.isnan(weights)
    assert ok.sum() == 8 + 9 + 10 and np.all(weights[ok] <= 1.5) and np.all(weights[ok] > 0)
    assert {"index", "episode_index", "frame_index", "progress_sparse", "advantage"} <= set(w.column_names)
    # LeRobot's RA-BC weights of the same file
    assert (
        main(
            [
                "weights",
                str(ann),
                "--out",
                str(tmp_path / "r.parquet"),
                "--scheme",
                "rabc",
                "--chunk-size",
                "3",
            ]
        )
        == 0
    )
    r = pq.read_table(tmp_path / "r.parquet")
    want, delta, _ = rabc_weights(
        *(r[k].to_numpy() for k in ("index", "episode_index", "progress_sparse")), chunk_size=3
    )
    np.testing.assert_allclose(r["weight"].to_numpy(), want, atol=1e-7)
    np.testing.assert_allclose(r["delta"].to_numpy(), delta, atol=1e-6)
    assert json.loads(r.schema.metadata[b"topreward"])["weights"]["scheme"] == "rabc"

    ranked = rank_episodes(ann)
    scores = [r["success_score"] for r in ranked]
    assert scores[-1] is None and scores[:3] == sorted(scores[:3], reverse=True)
    command = ["rank", str(ann), "--top", "2", "--out", str(tmp_path / "ranked.json")]
    assert main([*command, "--episodes-out", str(tmp_path / "keep.json")]) == 0
    keep = sorted(r["episode_index"] for r in ranked[:2])
    # LeRobot's --dataset.episodes takes a list of episode indices: one shell word, no spaces
    assert (tmp_path / "keep.json").read_text() == json.dumps(keep, separators=(",", ":")) + "\n"
    assert "skipped" in capsys.readouterr().out
    record = json.loads((tmp_path / "ranked.json").read_text())  # the ranking with its provenance
    assert record["episodes"] == keep and record["selection"]["top"] == 2
    assert record["annotations"] == str(ann.resolve()) and record["scored_with"]["method"] == "topreward"
    assert record["scored_with"]["source"]["path"] == str(manifest.resolve())
    assert [r["kept"] for r in record["ranking"]] == [True, True, False, False]
    assert record["ranking"][-1]["success_score"] is None
    # printed for a shell substitution: only the list on stdout, the source kind noted on stderr
    assert main(["rank", str(ann), "--top", "2", "--print-episodes"]) == 0
    printed = capsys.readouterr()
    assert printed.out == json.dumps(keep, separators=(",", ":")) + "\n"
    assert "not LeRobot episode indices" in printed.err


def test_annotate_command_end_to_end(tiny_model_dirs, tmp_path, capsys):
    root = write_lerobot_v3(tmp_path / "ds", lengths=(6, 7))
    out = tmp_path / "p.parquet"
    command = [
        "annotate",
        str(root),
        "--out",
        str(out),
        "--model",
        str(tiny_model_dirs["qwen2_5_vl"]),
        *SMALL,
    ]
    assert main([*command, "--camera", "observation.images.wrist", "--episodes", "1:2"]) == 0
    table, _ = read_annotations(out)
    assert table["episode_index"].to_numpy().tolist() == [1] * 7 and table["index"].to_numpy()[0] == 6
    assert "1 episodes scored" in capsys.readouterr().out
    assert main([*command, "--camera", "nope"]) == 2  # the output in the way is named first
    assert "p.parquet exists; pass --resume" in capsys.readouterr().err
    assert main([*command, "--camera", "nope", "--overwrite"]) == 2
    assert "observation.images.top" in capsys.readouterr().err
    assert out.exists()  # a run refused before it starts leaves the earlier output alone


def test_metadata_holds_absolute_model_path_and_provenance(tiny_model_dirs, tmp_path, monkeypatch, capsys):
    model = tiny_model_dirs["qwen3_vl"]
    root = write_lerobot_v3(tmp_path / "ds", lengths=(6, 7))
    monkeypatch.chdir(model.parent)  # the model given as a relative path, as users do
    out = tmp_path / "p.parquet"
    assert (
        main(["annotate", str(root), "--out", str(out), "--model", model.name, "--episodes", "0:1", *SMALL])
        == 0
    )
    _, meta = read_annotations(out)
    absolute = str(model.resolve())
    assert pq.read_schema(out).metadata[b"reward_model_path"].decode() == absolute  # LeRobot reads this key
    assert meta["model_id"] == absolute and Path(meta["model_id"]).is_absolute()
    prov = meta["provenance"]
    assert prov["model"] == {"id": absolute, "revision": None, "commit": None}
    assert prov["source"] == {
        "type": "LeRobotSource",
        "path": str(root.resolve()),
        "camera": "observation.images.top",
        "episodes": "0:1",
    }
    assert (prov["method"], prov["device"], prov["dtype"]) == ("topreward", "cpu", "float32")
    assert prov["config"]["num_prefixes"] == 3 and prov["topreward_version"] == topreward.__version__
    assert prov["date"].startswith("20") and prov["date"].endswith("+00:00")


@needs_lerobot
def test_lerobot_rabc_reader_accepts_our_file(scorer, tmp_path):
    """The real lerobot (its own venv) loads the dataset and reads our file with `RABCWeights`, both heads."""
    root = write_lerobot_v3(tmp_path / "ds", lengths=(6, 7))
    out = annotate(open_source(root), scorer, lerobot_progress_path(root), progress_bar=False).out
    assert out == root.resolve() / "sarm_progress.parquet"  # where lerobot-train --use_rabc looks
    log = check_with_lerobot(root, out)
    for head in ("sparse", "dense"):
        assert f"RABCWeights head_mode={head}: 13 frames" in log  # every frame has a progress value


def test_annotate_into_dataset(tiny_model_dirs, tmp_path, capsys):
    root = write_lerobot_v3(tmp_path / "ds", lengths=(6, 7))
    model = ["--model", str(tiny_model_dirs["qwen3_vl"]), *SMALL]
    before = tree_snapshot(root)
    assert main(["annotate", str(root), "--into-dataset", *model]) == 0
    added = sorted(set(tree_snapshot(root)) - set(before))
    assert [name for name, *_ in added] == ["sarm_progress.parquet"]  # nothing else written, nothing left
    assert read_annotations(root / "sarm_progress.parquet")[0].num_rows == 13
    assert main(["annotate", str(root), "--into-dataset", *model]) == 2  # exists: --resume or --overwrite
    assert "--overwrite" in capsys.readouterr().err
    videos = tmp_path / "videos"
    write_video(videos / "a.mp4", colour_frames(6, 64, 64), fps=4)
    assert main(["annotate", str(videos), "--instruction", "x", "--into-dataset", *model]) == 2
    err = capsys.readouterr().err
    assert (
        "meta/info.json" in err
        and "--rabc_progress_path" in err
        and not (videos / "sarm_progress.parquet").exists()
    )
    with pytest.raises(SystemExit):  # --out and --into-dataset: one or the other
        main(["annotate", str(root), "--into-dataset", "--out", str(tmp_path / "p.parquet"), *model])


def test_rank_of_an_annotation_without_scores_ranks_nothing(scorer, tmp_path, capsys):
    """Skipped and failed episodes get no rank: listed unranked after the scored ones, and a file in which
    none has a score is an error that says why, not a ranking."""
    mixed = annotate(
        open_source(make_manifest(tmp_path / "m", 3, corrupt=(1,))),
        scorer,
        tmp_path / "a.parquet",
        progress_bar=False,
    ).out
    assert main(["rank", str(mixed)]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert [line[1:].split()[0] for line in lines] == ["1", "2", "-"] and "skipped" in lines[-1]
    broken = make_manifest(tmp_path / "b", 2, corrupt=(0, 1))
    out = annotate(open_source(broken), scorer, tmp_path / "b.parquet", progress_bar=False).out
    assert main(["rank", str(out), "--out", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert (
        "none of its 2 episodes has a success score (2 skipped, 0 failed" in err and "nothing to rank" in err
    )
    assert not (tmp_path / "r.json").exists()


def test_annotate_prints_the_rabc_command_of_each_lerobot_generation(tiny_model_dirs, tmp_path, capsys):
    from topreward.annotate.progress_file import rabc_advice, rabc_commands

    root = write_lerobot_v3(tmp_path / "ds", lengths=(6,))
    model = ["--model", str(tiny_model_dirs["qwen3_vl"]), *[a for a in SMALL if a != "--quiet"]]
    assert main(["annotate", str(root), "--into-dataset", *model]) == 0
    out = capsys.readouterr().out
    # lerobot is not installed in this venv: both generations' commands, without a path (the default place)
    assert "lerobot 0.4-0.5: lerobot-train" in out and "--use_rabc=true" in out
    assert "lerobot >= 0.6:  lerobot-train" in out and "--sample_weighting.type=rabc" in out
    assert "progress_path" not in out and f"--dataset.root={root.resolve()}" in out
    elsewhere = rabc_commands(tmp_path / "p.parquet")
    assert f"--rabc_progress_path={(tmp_path / 'p.parquet').resolve()}" in elsewhere["0.4"]
    assert f"--sample_weighting.progress_path={(tmp_path / 'p.parquet').resolve()}" in elsewhere["0.6"]
    assert "--sample_weighting.type=rabc" in rabc_advice(tmp_path / "p.parquet", installed="0.6.1")
    assert "--use_rabc=true" in rabc_advice(tmp_path / "p.parquet", installed="0.4.4")
