"""TOPReward scorer end to end on tiny models: result contents, JSON schema, bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

import topreward
from topreward.scorers.registry import split_options
from topreward.scorers.topreward import TOPRewardConfig, format_prompt

from .conftest import colour_frames, load_backend

REQUIRED_KEYS = {
    "prefix_end_frames",
    "log_p_true",
    "log_p_false",
    "progress",
    "frame_progress",
    "success_score",
    "dense_rewards",
    "config",
    "model",
    "version",
    "timings",
}


@pytest.fixture(scope="module")
def scorer(tiny_model_dirs):
    return topreward.load_scorer(
        "topreward", model=str(tiny_model_dirs["qwen3_vl"]), backend=load_backend(tiny_model_dirs, "qwen3_vl")
    )


def test_score_video_file(scorer, sample_video, tmp_path):
    r = scorer.score(sample_video, "put the pen into the cup")
    # 40 frames at 10 fps span 3.9 s -> 2 fps gives 8 frames, first and last included
    assert r.sampled_frames.tolist() == np.round(np.linspace(0, 39, 8)).astype(int).tolist()
    assert r.prefix_lengths.tolist() == list(range(1, 9))  # 15 prefixes asked, only 8 frames
    assert r.prefix_end_frames.tolist() == r.sampled_frames.tolist()
    assert r.progress.min() == 0 and r.progress.max() == pytest.approx(1, abs=1e-4)
    assert np.argmin(r.progress) == np.argmin(r.log_p_true) and np.argmax(r.progress) == np.argmax(
        r.log_p_true
    )
    assert len(r.frame_progress) == 40 and len(r.dense_rewards) == 40
    np.testing.assert_allclose(r.frame_progress[r.prefix_end_frames], r.progress)
    assert r.success_score == pytest.approx(r.log_p_true[-3:].mean())
    assert np.all(r.log_p_true < 0) and np.all(r.log_p_false < 0)
    saved = json.loads(r.save(tmp_path / "r.json").read_text())
    assert set(saved) >= REQUIRED_KEYS
    assert saved["model"]["family"] == "qwen3_vl" and saved["version"] == topreward.__version__
    assert saved["config"]["prompt_style"] == "authors" and saved["config"]["num_prefixes"] == 15
    back = topreward.ScoreResult.load(tmp_path / "r.json")
    np.testing.assert_allclose(back.log_p_true, r.log_p_true)


def test_uniform_prefixes_and_reference_path(tiny_model_dirs):
    backend = load_backend(tiny_model_dirs, "qwen2_5_vl")
    frames = colour_frames(60, 56, 84)
    fast = topreward.load_scorer("topreward", model="x", backend=backend, num_prefixes=5, max_frames=12)
    ref = topreward.load_scorer(
        "topreward", model="x", backend=backend, num_prefixes=5, max_frames=12, path="reference"
    )
    a, b = fast.score(frames, "open the drawer", fps=5), ref.score(frames, "open the drawer", fps=5)
    assert a.prefix_lengths.tolist() == [1, 4, 6, 9, 12]
    np.testing.assert_allclose(a.log_p_true, b.log_p_true, atol=1e-4, rtol=0)
    np.testing.assert_allclose(a.log_p_false, b.log_p_false, atol=1e-4, rtol=0)


def test_resolution_is_fixed_per_episode(scorer):
    r = topreward.load_scorer("topreward", model="x", backend=scorer.backend, size=(64, 96)).score(
        colour_frames(10, 100, 150), "stack the blocks", fps=4
    )
    assert r.model["frame_size"] == [64, 96]
    r = topreward.load_scorer("topreward", model="x", backend=scorer.backend, max_pixels=64 * 64).score(
        colour_frames(10, 100, 150), "stack the blocks", fps=4
    )
    h, w = r.model["frame_size"]
    assert h % 32 == 0 and w % 32 == 0 and h * w <= 64 * 64


def test_instruction_trailing_period_is_not_doubled():
    assert format_prompt("open the drawer.").count("drawer.") == 1
    assert "task: open the drawer. Decide" in format_prompt("  open   the drawer ")


@pytest.mark.parametrize("instruction", ["", "   ", None])
def test_empty_instruction(scorer, sample_video, instruction):
    with pytest.raises(ValueError, match="instruction"):
        scorer.score(sample_video, instruction)


def test_single_frame(scorer):
    with pytest.raises(ValueError, match="at least 2 frames"):
        scorer.score(colour_frames(1), "open the drawer", fps=10)


def test_zero_frames(scorer):
    with pytest.raises(ValueError, match="zero frames"):
        scorer.score(np.zeros((0, 64, 64, 3), np.uint8), "open the drawer", fps=10)


@pytest.mark.parametrize(
    ("frames", "match"),
    [
        (np.zeros((5, 64, 64), np.uint8), "grey"),
        (np.zeros((5, 64, 64, 4), np.uint8), "RGBA"),
        (np.zeros((5, 64, 64, 3), np.float32), "uint8"),
        (np.zeros((5, 3, 64, 64), np.uint8), "channels first"),
        ([[1, 2, 3]], "numpy array"),
    ],
)
def test_bad_arrays(scorer, frames, match):
    with pytest.raises((ValueError, TypeError), match=match):
        scorer.score(frames, "open the drawer", fps=10)


def test_array_needs_fps(scorer):
    with pytest.raises(ValueError, match="fps="):
        scorer.score(colour_frames(4), "open the drawer")


def test_missing_file(scorer, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        scorer.score(tmp_path / "nope.mp4", "open the drawer")


def test_corrupt_video(scorer, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)
    with pytest.raises(ValueError, match="bad.mp4"):
        scorer.score(bad, "open the drawer")


def test_truncated_video(scorer, sample_video, tmp_path):
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(sample_video.read_bytes()[:600])
    with pytest.raises(ValueError, match="cut.mp4"):
        scorer.score(cut, "open the drawer")


def test_sequence_longer_than_context_names_the_knobs(tiny_model_dirs, monkeypatch):
    backend = load_backend(tiny_model_dirs, "qwen3_vl")
    monkeypatch.setattr(backend, "max_context", 40)
    s = topreward.load_scorer("topreward", model="x", backend=backend)
    with pytest.raises(ValueError, match="max_frames.*fps.*max_pixels"):
        s.score(colour_frames(20), "open the drawer", fps=10)


def test_answer_word_must_be_one_token(tiny_model_dirs):
    backend = load_backend(tiny_model_dirs, "qwen3_vl")
    with pytest.raises(ValueError, match=r"answer word ' Truthfulness' is \d+ tokens"):
        topreward.load_scorer("topreward", model="x", backend=backend, answer=" Truthfulness")


def test_unsupported_model_type(tmp_path):
    from transformers import LlamaConfig

    LlamaConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=1).save_pretrained(
        tmp_path
    )
    with pytest.raises(ValueError, match="model_type 'llama'.*qwen3_vl"):
        topreward.load_scorer("topreward", model=str(tmp_path))


def test_unreachable_model_id():
    with pytest.raises(ValueError, match="cannot load model"):
        topreward.load_scorer("topreward", model="/definitely/not/a/model")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("prompt_style", "fancy"),
        ("num_prefixes", 1),
        ("fps", 0),
        ("max_frames", 1),
        ("path", "turbo"),
        ("batch_size", 0),
        ("size", (0, 10)),
    ],
)
def test_config_validation(field, value):
    with pytest.raises(ValueError, match=field):
        split_options("topreward", TOPRewardConfig, {field: value})


def test_unknown_option_and_method():
    with pytest.raises(TypeError, match="unknown option"):
        topreward.load_scorer("topreward", modle="x")
    with pytest.raises(ValueError, match="unknown scoring method 'gvl2'"):
        topreward.load_scorer("gvl2")
    assert "topreward" in topreward.list_scorers()


@pytest.mark.gpu
@pytest.mark.slow
def test_real_qwen3_vl_8b_prefers_the_finished_video():
    try:
        scorer = topreward.load_scorer("topreward")
    except ValueError as e:
        pytest.skip(f"Qwen/Qwen3-VL-8B-Instruct not available: {e}")
    from importlib import resources

    with resources.as_file(resources.files("topreward") / "assets" / "sample_pick_place.mp4") as video:
        r = scorer.score(video, "put the red block into the blue cup")
    assert r.log_p_true[-1] > r.log_p_true[0]
