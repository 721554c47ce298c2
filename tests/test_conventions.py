"""Peer conventions reproduce the peers' own numbers, recorded by running their code (`scripts/golden/`).

The golden files hold what each peer's code computed on the tiny Qwen3-VL test model (seed 0, the same
builder as the `tiny_model_dirs` fixture) and the bundled clip; the model's bytes and the decoded clip are
checked first, so a drift in either fails here with a clear message rather than as a wrong number.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from topreward.episode import Episode
from topreward.scorers.conventions import uniform_prefix_lengths, video_budget_size

GOLDEN = Path(__file__).parent / "golden"
CLIP = "sample_pick_place.mp4"


def _golden(name: str) -> dict:
    return json.loads((GOLDEN / name).read_text())


@pytest.fixture(scope="module")
def clip() -> Episode:
    with resources.as_file(resources.files("topreward") / "assets" / CLIP) as path:
        return Episode.from_video(path)


@pytest.fixture(scope="module")
def inputs_match(tiny_model_dirs, clip):
    """The golden values were computed on these exact model bytes and frames."""
    inputs = _golden("lerobot.json")["inputs"]
    weights = (Path(tiny_model_dirs["qwen3_vl"]) / "model.safetensors").read_bytes()
    assert hashlib.sha256(weights).hexdigest() == inputs["model_safetensors_sha256"], (
        "the tiny qwen3_vl model's weights changed (topreward.tiny); re-record tests/golden/ with scripts/golden/"
    )
    frames = clip.frames().transpose(0, 3, 1, 2)  # the recorders hash (T, C, H, W)
    assert hashlib.sha256(np.ascontiguousarray(frames).tobytes()).hexdigest() == inputs["clip_uint8_sha256"]


def test_lerobot_shared_pixel_budget_matches_every_call():
    calls = _golden("lerobot.json")["instructions"]["put the pen into the cup"]["rabc_dense"]["calls"]
    vp = _golden("lerobot.json")["config"]["video_processor"]
    for t, call in enumerate(calls, start=1):
        hw = video_budget_size(
            t,
            128,
            160,
            factor=vp["patch_size"] * vp["merge_size"],
            min_pixels=vp["min_pixels"],
            max_pixels=vp["max_pixels"],
        )
        assert list(hw) == call["resized_hw"], t


def test_uniform_prefix_lengths_round_half_to_even():
    assert uniform_prefix_lengths(60, 15) == [1, 5, 9, 14, 18, 22, 26, 30, 35, 39, 43, 47, 52, 56, 60]
    assert uniform_prefix_lengths(4, 15) == [1, 2, 3, 4]


@pytest.mark.parametrize("instruction", ["put the pen into the cup", "Pick up the red cube."])
def test_lerobot_num_samples_15_matches_lerobots_own_code(qwen3_backend, clip, inputs_match, instruction):
    from topreward.scorers.registry import load_scorer

    gold = _golden("lerobot.json")["instructions"][instruction]["rabc_num_samples_15"]
    scorer = load_scorer("topreward", backend=qwen3_backend, conventions="lerobot", num_prefixes=15)
    res = scorer.score(clip, instruction)
    assert res.prefix_end_frames.tolist() == gold["prefix_ends"]
    np.testing.assert_allclose(res.values, gold["values"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(res.progress, gold["normalized_at_anchors"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(res.frame_progress, gold["progress_per_frame"], atol=1e-4, rtol=0)


def test_lerobot_one_call_per_frame_matches_lerobots_default(qwen3_backend, clip, inputs_match):
    from topreward.scorers.registry import load_scorer

    gold = _golden("lerobot.json")["instructions"]["put the pen into the cup"]["rabc_dense"]
    scorer = load_scorer("topreward", backend=qwen3_backend, conventions="lerobot", num_prefixes=None)
    res = scorer.score(clip, "put the pen into the cup")
    assert res.prefix_end_frames.tolist() == gold["prefix_ends"]
    np.testing.assert_allclose(res.values, gold["values"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(res.frame_progress, gold["progress_per_frame"], atol=1e-4, rtol=0)


def test_a_peer_pipeline_refuses_options_it_decides_itself(qwen3_backend):
    from topreward.scorers.registry import load_scorer

    with pytest.raises(ValueError, match=r"decides fps, eps itself; drop --fps --eps"):
        load_scorer("topreward", backend=qwen3_backend, conventions="lerobot", fps=4.0, eps=0.1)
    with pytest.raises(ValueError, match="has no prompt_style 'chat'"):
        load_scorer("topreward", backend=qwen3_backend, conventions="lerobot", prompt_style="chat")
    with pytest.raises(ValueError, match="conventions"):
        load_scorer("topreward", backend=qwen3_backend, conventions="nope")


def _authors_cases():
    for version, conventions in [("authors_paper.json", "paper"), ("authors_head.json", "authors")]:
        for case in _golden(version)["episodes"]:
            style = "chat" if case["add_chat_template"] else "authors"
            yield pytest.param(
                conventions, style, case, id=f"{conventions}-{style}-{case['instruction'][:4]}"
            )


@pytest.mark.parametrize("conventions, style, case", list(_authors_cases()))
def test_paper_and_authors_match_the_authors_own_code(
    qwen3_backend, clip, inputs_match, conventions, style, case
):
    from topreward.scorers.registry import load_scorer

    scorer = load_scorer("topreward", backend=qwen3_backend, conventions=conventions, prompt_style=style)
    res = scorer.score(clip, case["instruction"])
    assert res.prefix_lengths.tolist() == case["prefix_lengths"]
    np.testing.assert_allclose(res.values, case["log_probs"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(res.progress, case["progress"], atol=1e-4, rtol=0)
    if "prefix_false_rewards" in case:  # the current code also reads " False" at the same position
        np.testing.assert_allclose(
            res.signals["log_p_false"], case["prefix_false_rewards"], atol=1e-4, rtol=0
        )


def test_cli_score_with_conventions_and_bad_name(tiny_model_dirs, sample_video, tmp_path, capsys):
    from topreward.cli import main

    model = str(tiny_model_dirs["qwen3_vl"])
    out = tmp_path / "r.json"
    args = ["score", str(sample_video), "open the drawer", "--model", model, "--out", str(out)]
    assert main([*args, "--conventions", "authors", "--num-prefixes", "3"]) == 0
    data = json.loads(out.read_text())
    assert data["config"]["conventions"] == "authors" and len(data["log_p_false"]) == len(data["values"])
    with pytest.raises(SystemExit):
        main([*args, "--conventions", "nope"])
    assert "invalid choice" in capsys.readouterr().err


def test_peer_conventions_need_qwen3_vl_and_refuse_streaming(backend, qwen3_backend):
    from topreward.scorers.registry import load_scorer

    if backend.family.name != "qwen3_vl":
        with pytest.raises(ValueError, match="Qwen3-VL models only"):
            load_scorer("topreward", backend=backend, conventions="paper")
    scorer = load_scorer("topreward", backend=qwen3_backend, conventions="paper")
    with pytest.raises(ValueError, match="streaming and the shared video cache need"):
        scorer.stream("open the drawer", source_fps=10.0).push(np.zeros((2, 32, 32, 3), np.uint8))


def test_ray_driver_prepares_every_raw_frame_for_a_peer(tiny_model_dirs):
    from topreward.annotate import ScorerSpec
    from topreward.sampling import FramePreparer
    from topreward.scorers.conventions import AllFrames

    model = str(tiny_model_dirs["qwen3_vl"])
    assert isinstance(
        ScorerSpec("topreward", {"model": model, "conventions": "lerobot"}).preparer(), AllFrames
    )
    assert isinstance(ScorerSpec("topreward", {"model": model}).preparer(), FramePreparer)


def test_oxe39_preset_runs_paper_conventions_unless_told():
    import argparse

    from topreward.bench.presets import preset
    from topreward.cli.flags import given as _given

    assert preset("oxe39")["conventions"] == "paper"
    assert _given(argparse.Namespace(argv=["bench", "--conventions=authors"]), "--conventions")
    assert not _given(argparse.Namespace(argv=["bench", "--preset", "oxe39"]), "--conventions")


def test_peer_conventions_need_the_in_process_backend():
    from topreward.scorers.registry import load_scorer

    class Served:
        name, model_id, capabilities = "openai", "served", frozenset({"log_probs"})

    with pytest.raises(ValueError, match="only the in-process backend can do; backend 'openai'"):
        load_scorer("topreward", backend=Served(), conventions="lerobot")
