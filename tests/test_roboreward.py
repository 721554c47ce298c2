"""RoboReward: its rubric prompt, its frames (JPEG, qwen-vl-utils' resizes, 1 fps), the authors' generate
readout and our expected readout on the shared video cache.

The model is a tiny random-weight Qwen3-VL in a folder named like the release, found through the model table
as a download of `teetone/RoboReward-4B` would be.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from topreward import load_scorer
from topreward.episode import as_episode
from topreward.scorers.roboreward import ROBOREWARD_PROMPT, parse_score, roboreward_pixels
from topreward.tiny import make_tiny_model

CLIP = Path(__file__).resolve().parents[1] / "src/topreward/assets/sample_pick_place.mp4"


@pytest.fixture(scope="session")
def roboreward(tmp_path_factory):
    folder = make_tiny_model(tmp_path_factory.mktemp("roboreward") / "RoboReward-4B", "qwen3_vl")
    return load_scorer(model=str(folder), device="cpu", max_new_tokens=8)


def test_the_table_picks_roboreward_and_its_sampling(roboreward):
    assert roboreward.name == "roboreward"
    assert (roboreward.sampling.max_frames, roboreward.sampling.num_prefixes) == (10, None)
    from topreward.scorers.pretrained import method_for

    assert method_for("teetone/RoboReward-8B") == method_for("teetone/RoboReward-4B") == "roboreward"


def test_parser_is_theirs():
    assert parse_score("reasoning... ANSWER: 4") == (4.0, "answer")
    assert parse_score("answer : 2 then 5") == (2.0, "answer")  # case-insensitive, first ANSWER wins
    assert parse_score("I would say 3, maybe 5.") == (5.0, "last digit")
    assert parse_score("no idea") == (1.0, "default")
    assert parse_score("ANSWER: 7, 12") == (1.0, "default")  # 7 and 12 are not standalone 1-5


def test_frames_are_their_pipelines(roboreward):
    mv = roboreward.prepare(as_episode(str(CLIP), "t"))
    assert mv.source_indices.tolist() == np.linspace(0, 59, 10).astype(int).tolist()
    assert (
        mv.clock == 1.0 and mv.frames.shape[1] % 32 == 0 and mv.frames.shape[1] * mv.frames.shape[2] >= 131072
    )
    # a JPEG round trip really happened: the frames are not a plain resize of the decoded ones
    raw = as_episode(str(CLIP), "t").frames(mv.source_indices[:1])
    from topreward.sampling import resize_frames

    assert not np.array_equal(resize_frames(raw, mv.frames.shape[1:3]), mv.frames[:1])
    # swap_red_blue reproduces roboreason's input (its cv2 BGR2RGB on frames that are already RGB)
    swapped = load_scorer(
        model=roboreward.backend_config.model, swap_red_blue=True, backend=roboreward.backend
    )
    np.testing.assert_array_equal(
        swapped.prepare(as_episode(str(CLIP), "t")).frames[:1], roboreward_pixels(raw[..., ::-1])
    )


def test_odd_prefixes_are_padded_and_timed_as_qwen_vl_utils_does(roboreward):
    backend = roboreward.backend
    mv = roboreward.prepare(as_episode(str(CLIP), "t"))
    before, after = backend.chat_split([{"type": "video"}, {"type": "text", "text": "x"}])
    text = backend.processor.tokenizer.decode(backend.video_inputs(mv, 3, before, after)["input_ids"][0])
    # three frames are padded to four, counted as frames 0..3 at 1 fps: groups at 0.5 s and 2.5 s
    assert "<0.5 seconds>" in text and "<2.5 seconds>" in text and "<4.5 seconds>" not in text
    one = backend.processor.tokenizer.decode(backend.video_inputs(mv, 1, before, after)["input_ids"][0])
    assert "<0.5 seconds>" in one and one.count("<|vision_start|>") == 1  # one frame, shown twice


def test_expected_readout_on_the_cache_equals_one_forward_per_prefix(roboreward):
    task = "put the pen into the cup"
    fast = load_scorer(model=roboreward.backend_config.model, readout="expected", backend=roboreward.backend)
    slow = load_scorer(
        model=roboreward.backend_config.model,
        readout="expected",
        path="reference",
        backend=roboreward.backend,
    )
    a, b = fast.score(str(CLIP), task), slow.score(str(CLIP), task)
    assert a.prefix_lengths.tolist() == list(range(1, 11))
    np.testing.assert_allclose(a.values, b.values, atol=1e-4, rtol=0)
    assert np.all((a.values >= 1) & (a.values <= 5)) and np.ptp(a.values) > 1e-3
    np.testing.assert_allclose(a.progress, (a.values - 1) / 4)
    assert a.success_score == pytest.approx(a.progress[-1])
    np.testing.assert_allclose(a.signals["digit_probs"].sum(axis=1), 1.0)


def test_generate_readout_asks_their_prompt_once_per_prefix(roboreward, monkeypatch):
    calls = []
    real = roboreward.backend.chat

    def chat(parts, generation):
        calls.append((parts[0].num_frames, parts[1], generation.max_new_tokens, generation.temperature))
        return real(parts, generation)

    monkeypatch.setattr(roboreward.backend, "chat", chat)
    result = roboreward.score(str(CLIP), "put the pen into the cup")
    assert [c[0] for c in calls] == list(range(1, 11))
    assert {c[1] for c in calls} == {ROBOREWARD_PROMPT.format(instruction="put the pen into the cup")}
    assert {(c[2], c[3]) for c in calls} == {(8, 0.0)}  # greedy
    assert len(result.signals["answers"]) == 10
    assert [parse_score(a)[0] for a in result.signals["answers"]] == result.values.tolist()


GOLDEN = Path(__file__).resolve().parent / "golden" / "roboreward.json"


def test_roboreward_equals_roboreasons_code(roboreward):
    """`scripts/golden/record_roboreward.py` ran roboreason 0.1.5.2's `RoboRewardModel.score_frames` on every
    prefix of the clip's 10 frames (with its red-blue swap) on this tiny model: the same pixels, ids and greedy
    text; and our `expected` readout on the shared cache equals one forward of their inputs + "ANSWER: "."""
    import hashlib

    golden = json.loads(GOLDEN.read_text())
    folder = Path(roboreward.backend_config.model)
    assert hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest() == golden["model_sha256"]
    assert hashlib.sha256(CLIP.read_bytes()).hexdigest() == golden["clip_sha256"]
    theirs = load_scorer(
        model=str(folder),
        swap_red_blue=True,
        readout="expected",
        max_new_tokens=128,
        backend=roboreward.backend,
    )
    episode = as_episode(str(CLIP), golden["task"])
    mv = theirs.prepare(episode)
    assert mv.source_indices.tolist() == golden["frame_indices"]
    backend = theirs.backend
    before, after = theirs._turn(golden["task"])
    for case in golden["prefixes"]:
        k = case["prefix_len"]
        video = mv.frames[:k] if k % 2 == 0 else np.concatenate([mv.frames[:k], mv.frames[k - 1 : k]])
        assert (
            hashlib.sha256(np.ascontiguousarray(video).tobytes()).hexdigest()
            == case["video_uint8_thwc_sha256"]
        )
        assert before + "<|vision_start|><|video_pad|><|vision_end|>" + after == case["prompt_text"]
        inputs = backend.video_inputs(mv, k, before, after)
        assert inputs["input_ids"][0].tolist() == case["input_ids"]
        assert inputs["video_grid_thw"][0].tolist() == case["video_grid_thw"]
    # the authors' readout through the scorer: every prefix's greedy text and their parser's score
    generated = load_scorer(model=str(folder), swap_red_blue=True, backend=roboreward.backend).score(
        episode, golden["task"]
    )
    assert generated.signals["answers"] == [case["text"] for case in golden["prefixes"]]
    assert generated.values.tolist() == golden["scores"]
    # ours: the digits' log-probs after "ANSWER: ", every prefix from one shared video cache
    result = theirs.score(episode, golden["task"])
    np.testing.assert_allclose(
        result.signals["digit_log_probs"], golden["digit_log_probs"], atol=1e-4, rtol=0
    )
