"""`topreward train`: every head's loss falls on a small fixed set; checkpoints, resume, adapters, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from topreward.train import TrainConfig, TrainingDiverged, load_adapter, train
from topreward.train.heads import loss
from topreward.train.loop import build_examples, load_episodes
from topreward.video import write_video

from .conftest import load_backend

SAMPLING = {"fps": 10.0, "max_frames": 6, "size": (32, 32)}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    """Four 6-frame episodes whose frames brighten as the task progresses; one failure."""
    root = tmp_path_factory.mktemp("train_data")
    rows = []
    for e in range(4):
        levels = np.linspace(0, 1, 6)
        frames = np.stack([np.full((32, 32, 3), int(40 + 180 * v), np.uint8) for v in levels])
        frames[:, :, :, e % 3] = 30  # a tint per episode
        write_video(root / f"ep{e}.mp4", frames, fps=10)
        row = {"video": f"ep{e}.mp4", "instruction": "open the drawer", "fps": 10.0, "episode_id": f"ep{e}"}
        row.update(
            {"success": True} if e != 3 else {"success": False, "progress": [0, 0.1, 0.2, 0.2, 0.2, 0.2]}
        )
        rows.append(row)
    (root / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return root / "manifest.jsonl"


def _config(model, manifest, out, head, **kw) -> TrainConfig:
    defaults = dict(steps=4, lr=3e-3, batch_size=4, lora="no", num_points=3, eval_every=4, checkpoint_every=2)
    return TrainConfig(head, [str(manifest)], str(model), str(out), sampling=SAMPLING, **{**defaults, **kw})


def _fixed_set_loss(config, backend) -> float:
    from topreward.sampling import FramePreparer, SamplingConfig

    episodes = load_episodes(config, FramePreparer(SamplingConfig(**SAMPLING), backend.patch_factor))
    examples = build_examples(config, backend, episodes, 0)
    with torch.inference_mode():
        return float(np.mean([float(loss(config.head, backend, ex)) for ex in examples]))


@pytest.mark.parametrize("head", ["topreward", "progress", "completion", "contrast"])
def test_every_head_lowers_its_loss_on_a_fixed_set(tiny_model_dirs, manifest, tmp_path, head):
    from topreward.backends.hf import HFBackend

    model = tiny_model_dirs["qwen3_vl"]
    backend = HFBackend(str(model), device="cpu", dtype="float32", path="reference")  # its own copy: trained
    config = _config(model, manifest, tmp_path / head, head, val_fraction=0.25)
    before = _fixed_set_loss(config, backend)
    result = train(config, progress_bar=False, backend=backend)
    after = _fixed_set_loss(config, backend)
    assert after < before, (head, before, after)
    assert len(result.losses) == 4 and result.evaluations and "val_loss" in result.evaluations[-1]
    assert (tmp_path / head / "final" / "trainer_state.json").exists()


def test_full_model_loads_back_and_resume_refuses_other_settings(tiny_model_dirs, manifest, tmp_path):
    from topreward.scorers.registry import load_scorer

    model = tiny_model_dirs["qwen3_vl"]
    out = tmp_path / "run"
    train(_config(model, manifest, out, "topreward"), progress_bar=False)
    scorer = load_scorer("topreward", model=str(out / "final"), num_prefixes=3, **SAMPLING)
    assert np.isfinite(scorer.score(str(manifest.parent / "ep0.mp4"), "open the drawer").values).all()
    with pytest.raises(FileExistsError, match="--resume"):
        train(_config(model, manifest, out, "topreward"), progress_bar=False)
    with pytest.raises(ValueError, match="lr: 0.003 before, 0.001 now"):
        train(_config(model, manifest, out, "topreward", lr=1e-3, resume=True), progress_bar=False)
    result = train(_config(model, manifest, out, "topreward", steps=6, resume=True), progress_bar=False)
    assert len(result.losses) == 2  # steps 5 and 6 only


def test_lora_adapter_loads_over_its_base_only(tiny_model_dirs, manifest, tmp_path):
    from transformers import AutoModelForImageTextToText

    model = tiny_model_dirs["qwen3_vl"]
    out = tmp_path / "lora"
    train(_config(model, manifest, out, "completion", lora="yes", lora_rank=4), progress_bar=False)
    assert (out / "final" / "adapter_config.json").exists()
    base = AutoModelForImageTextToText.from_pretrained(model)
    merged = load_adapter(base, out / "final", str(model))
    assert any(
        not torch.equal(a, b)
        for a, b in zip(
            merged.state_dict().values(),
            AutoModelForImageTextToText.from_pretrained(model).state_dict().values(),
        )
    )
    from topreward.backends.config import BackendConfig

    with pytest.raises(FileNotFoundError, match="not a LoRA adapter folder"):
        BackendConfig(model=str(model), adapter=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="was trained on"):
        load_adapter(
            AutoModelForImageTextToText.from_pretrained(model), out / "final", "Qwen/Qwen3-VL-8B-Instruct"
        )
    zero = tmp_path / "zero"
    shutil.copytree(out / "final", zero)
    from safetensors.torch import load_file, save_file

    weights = {
        k: (torch.zeros_like(v) if "lora_B" in k else v)
        for k, v in load_file(str(zero / "adapter_model.safetensors")).items()
    }
    save_file(weights, str(zero / "adapter_model.safetensors"))
    with pytest.raises(ValueError, match="every lora_B weight is zero"):
        load_adapter(AutoModelForImageTextToText.from_pretrained(model), zero, str(model))


def test_sources_without_ground_truth_and_divergence(tiny_model_dirs, manifest, tmp_path):
    bare = tmp_path / "bare.jsonl"
    bare.write_text(
        json.dumps({"video": str(manifest.parent / "ep0.mp4"), "instruction": "x", "fps": 10.0}) + "\n"
    )
    with pytest.raises(ValueError, match="'progress' list, 'subtasks'.*'success': true.*--demos-succeed"):
        train(_config(tiny_model_dirs["qwen3_vl"], bare, tmp_path / "o", "topreward"), progress_bar=False)
    from topreward.sampling import FramePreparer, SamplingConfig

    demos = _config(tiny_model_dirs["qwen3_vl"], bare, tmp_path / "o", "topreward", demos_succeed=True)
    (episode,) = load_episodes(demos, FramePreparer(SamplingConfig(**SAMPLING), 32))
    np.testing.assert_allclose(episode.truth, np.linspace(0, 1, 6))  # time-based
    with pytest.raises(TrainingDiverged, match="lower --lr"):
        train(
            _config(tiny_model_dirs["qwen3_vl"], manifest, tmp_path / "nan", "contrast", lr=1e30, steps=2),
            progress_bar=False,
        )
    with pytest.raises(ValueError, match="head='reward'"):
        TrainConfig("reward", [str(manifest)], "m", "o")
    for bad in (
        {"done_at": float("nan")},
        {"lr": -1.0},
        {"val_fraction": 1.0},
        {"steps": 0},
        {"lora": "maybe"},
    ):
        with pytest.raises(ValueError):
            TrainConfig("topreward", [str(manifest)], "m", str(tmp_path / "o"), **bad)
    with pytest.raises(ValueError, match="inside the source"):
        TrainConfig("topreward", [str(manifest.parent)], "m", str(manifest.parent / "runs"))
    with pytest.raises(ValueError, match="inside the source"):
        TrainConfig("topreward", [str(manifest)], "m", str(manifest))


def test_cli_train_then_score_with_the_adapter_and_its_recommended_options(
    tiny_model_dirs, manifest, tmp_path
):
    from topreward.cli import main

    model, out, result = tiny_model_dirs["qwen3_vl"], tmp_path / "cli", tmp_path / "r.json"
    args = [
        "train",
        str(manifest),
        "--model",
        str(model),
        "--out",
        str(out),
        "--head",
        "topreward",
        "--quiet",
    ]
    args += ["--steps", "2", "--lora", "yes", "--lora-rank", "4", "--num-points", "3", "--eval-every", "2"]
    assert (
        main([*args, "--checkpoint-every", "2", "--fps", "10", "--max-frames", "6", "--size", "32x32"]) == 0
    )
    saved = json.loads((out / "final" / "topreward_scoring.json").read_text())
    assert saved == {"fps": 10.0, "max_frames": 6, "max_pixels": 65536, "size": [32, 32], "num_prefixes": 3}
    score = [
        "score",
        str(manifest.parent / "ep0.mp4"),
        "open the drawer",
        "--model",
        str(model),
        "--out",
        str(result),
    ]
    assert main([*score, "--adapter", str(out / "final")]) == 0  # no sampling flags: the saved ones apply
    data = json.loads(result.read_text())
    assert data["model"]["adapter"] == str((out / "final").resolve())
    assert data["config"]["size"] == [32, 32] and len(data["prefix_lengths"]) == 3
    assert main([*score, "--adapter", str(out / "final"), "--num-prefixes", "2"]) == 0  # a flag given wins
    assert len(json.loads(result.read_text())["prefix_lengths"]) == 2


def test_control_views_break_the_length_shortcut():
    from topreward.backends.base import ModelVideo
    from topreward.train.loop import _Episode, views

    frames = np.stack([np.full((4, 4, 3), i, np.uint8) for i in range(5)])
    src = np.array([0, 2, 4, 6, 8])
    truth = np.linspace(0, 1, 9)
    ep = _Episode("e", "open the drawer", True, truth, ModelVideo(frames, src, 10.0))
    static, backwards = views(ep, ("static", "reversed"))
    assert (static.video.frames == frames[0]).all() and (static.truth[src] == 0).all()
    assert (backwards.video.frames[:, 0, 0, 0] == [4, 3, 2, 1, 0]).all()
    np.testing.assert_allclose(
        backwards.truth[src], truth[src][::-1]
    )  # prefix k ends at original frame N - k
    assert backwards.success is False and (backwards.video.source_indices == src).all()
    with pytest.raises(ValueError, match="unknown view"):
        TrainConfig("topreward", ["m.jsonl"], "m", "o", augment=("shuffled",))


def test_the_engine_leaves_autograd_to_its_caller(tiny_model_dirs):
    """No inference mode baked into the backends: the scorer applies it, training keeps gradients."""
    from topreward.backends.base import ModelVideo, Request
    from topreward.scorers.registry import load_scorer

    backend = load_backend(tiny_model_dirs, "qwen3_vl")
    seen = []
    forward = backend.model.forward

    def spy(*args, **kwargs):
        seen.append(torch.is_grad_enabled() and not torch.is_inference_mode_enabled())
        return forward(*args, **kwargs)

    backend.model.forward = spy
    try:
        frames = np.stack([np.full((32, 32, 3), 60 * i, np.uint8) for i in range(3)])
        video = ModelVideo(frames, np.arange(3), 10.0)
        for path in ("reference", "fast"):
            cache = backend.video_cache(video, "", path=path)
            cache.score([Request(2, " The answer is:", (backend.token_id(" True"),))])
        assert seen and all(seen)  # gradients available to a caller that wants them
        seen.clear()
        scorer = load_scorer("topreward", backend=backend, num_prefixes=2, path="reference")
        scorer.score(frames, "open the drawer", fps=10.0)
        assert seen and not any(seen)  # the scorer turns them off
    finally:
        backend.model.forward = forward


def test_lerobot_datasets_train_from_their_progress_column_or_as_demonstrations(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from topreward.sampling import FramePreparer, SamplingConfig

    from .helpers_lerobot import write_lerobot_v3

    root = write_lerobot_v3(tmp_path / "ds", lengths=(6, 8), episode_tasks=["open the drawer"] * 2)
    preparer = FramePreparer(SamplingConfig(**SAMPLING), 32)
    plain = TrainConfig("topreward", [str(root)], "m", str(tmp_path / "o"), sampling=SAMPLING)
    with pytest.raises(ValueError, match="--demos-succeed"):  # no labels at all
        load_episodes(plain, preparer)
    demos = load_episodes(TrainConfig(**{**plain.__dict__, "demos_succeed": True}), preparer)
    np.testing.assert_allclose(demos[0].truth, np.linspace(0, 1, 6))  # time-based
    for f in (root / "data").rglob("*.parquet"):  # a per-frame ground-truth column, as `sim --format lerobot`
        table = pq.read_table(f)
        progress = [0.5 * (i % 2) for i in table.column("frame_index").to_pylist()]
        pq.write_table(table.append_column("progress", pa.array(progress, pa.float32())), f)
    (first, second) = load_episodes(plain, preparer)
    np.testing.assert_allclose(first.truth, [0, 0.5] * 3)
    assert len(second.truth) == 8


@pytest.mark.parametrize("head", ["topreward", "progress", "completion", "contrast"])
def test_training_reads_exactly_what_its_method_scores(tiny_model_dirs, head):
    """A head's example is its method's own question, through the backend's own forward: the log-probs
    training learns equal the values the method scores on the same frames (fast path, 1e-4). A prompt
    style, cue or placeholder changed on one side only (e.g. hand-written prompts in the trainer) fails."""
    from topreward.backends.base import ModelVideo
    from topreward.scorers.registry import load_scorer
    from topreward.train import METHOD_OF
    from topreward.train.heads import answer_log_probs, examples_for, head_scorer
    from topreward.train.loop import _Episode

    from .conftest import colour_frames

    backend = load_backend(tiny_model_dirs, "qwen3_vl")
    video = ModelVideo(colour_frames(6, 32, 32), np.arange(0, 12, 2), 10.0)
    truth = np.linspace(0, 1, 11)  # per source frame; the sampled frames sit at 0, 2, .., 10
    config = TrainConfig(head, ["m.jsonl"], "m", "o", num_points=3, sampling={"size": (32, 32)})
    examples = build_examples(config, backend, [_Episode("ep", "open the drawer", True, truth, video)], 0)
    scorer = load_scorer(METHOD_OF[head], backend=backend, num_prefixes=3, size=(32, 32))  # path="fast"
    points = scorer.evaluation_points(video)
    with torch.inference_mode():
        read = [tuple(t.double().cpu().numpy() for t in answer_log_probs(backend, ex)) for ex in examples]
        out = scorer.compute(video, "open the drawer", points) if head != "contrast" else None
    at = truth[video.source_indices[np.asarray(points) - 1]]
    if head == "topreward":
        np.testing.assert_allclose([nxt[0] for nxt, _ in read], out.signals["log_p_true"], atol=1e-4)
        # the comparison sees a prompt that differs: the same examples in another prompt style do not match
        raw = examples_for(
            head,
            head_scorer(head, backend, prompt_style="raw"),
            video,
            truth,
            "open the drawer",
            points,
            "ep",
        )
        with torch.inference_mode():
            other = [float(answer_log_probs(backend, ex)[0][0]) for ex in raw]
        assert np.abs(np.asarray(other) - out.signals["log_p_true"]).max() > 1e-3
    elif head == "progress":
        levels = np.round(at * 10).astype(int)
        chosen = np.asarray(out.signals["candidate_log_probs"])[np.arange(len(points)), levels]
        np.testing.assert_allclose([span.sum() for _, span in read], chosen, atol=1e-4)
    elif head == "completion":
        expected = np.c_[out.signals["log_p_yes"], out.signals["log_p_no"]]
        np.testing.assert_allclose([nxt for nxt, _ in read], expected, atol=1e-4)
    else:  # contrast: each ordered pair's P(image 2 closer)
        for ex, (nxt, _) in zip(examples, read):
            k1, k2 = ([k for k in points if np.array_equal(img, video.frames[k - 1])][0] for img in ex.images)
            with torch.inference_mode():
                expected = scorer.p_second(video, "open the drawer", k1, k2)
            np.testing.assert_allclose(np.exp(nxt[1] - np.logaddexp(nxt[0], nxt[1])), expected, atol=1e-4)
    assert len(read) == (len(points) if head != "contrast" else 6)
