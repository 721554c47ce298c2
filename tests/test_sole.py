"""SOLE-R1: the composite image, the prompts with the previous answer fed back, the parser and its hold,
seeded sampling; through the model table as a download of `Philip-MIT/SOLE-R1-8B` would be found.

Golden values from roboreason's own `sole()` are checked in `test_sole_equals_roboreasons_code`; the served
path (OpenAI-compatible) in `tests/test_openai_backend.py`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from topreward import load_scorer
from topreward.scorers.sole import QUESTIONS, SYSTEM_PROMPT, composite, letterbox, model_image, parse_answer
from topreward.tiny import make_tiny_model

CLIP = Path(__file__).resolve().parents[1] / "src/topreward/assets/sample_pick_place.mp4"
TASK = "put the pen into the cup"


@pytest.fixture(scope="session")
def sole(tmp_path_factory):
    folder = make_tiny_model(tmp_path_factory.mktemp("sole") / "SOLE-R1-8B", "qwen3_vl")
    return load_scorer(model=str(folder), device="cpu", max_frames=4, max_new_tokens=12)


def test_the_table_picks_sole_and_its_settings(sole):
    assert sole.name == "sole" and sole.sampling.max_frames == 4 and sole.sampling.num_prefixes is None
    g = sole.generation(2)
    assert (g.temperature, g.top_p, g.top_k, g.seed, g.system) == (1.0, 0.9, 50, 2, SYSTEM_PROMPT)


def test_composite_is_their_layout():
    frame = np.full((128, 160, 3), 200, np.uint8)
    box = letterbox(frame)
    assert box.shape == (384, 384, 3)
    assert box[:, :, 0].sum(axis=1).nonzero()[0][[0, -1]].tolist() == [38, 344]  # 307 rows, centred on black
    one = composite(frame, frame, frame)
    assert one.shape == (384, 1162, 3) and not one[:, 384:389].any() and not one[:, 773:778].any()
    two = composite(*(np.concatenate([frame, frame // 2], axis=1),) * 3, views="external+wrist")
    assert two.shape == (773, 1162, 3) and not two[384:389].any()
    assert two[:384].max() == 200 and two[389:].max() == 100  # external row on top, wrist row below
    assert model_image(one).shape == (392, 1176, 3)  # multiples of 28, as their vLLM request


def test_parser_is_theirs():
    cases = {
        "<answer>40%</answer>": "40",
        "<answer> 250 </answer>": "100",
        "<answer>-300</answer>": "-100",
        "<answer>12.5</answer>": "12.5",
        "<answer>7</answer": "7",
        "no tag": "",
    }
    assert {text: parse_answer(text) for text in cases} == cases


def test_previous_answers_are_fed_back_and_unreadable_ones_hold(sole, monkeypatch):
    asked, replies = [], iter(["<answer>40%</answer>", "<answer>about 10</answer>", "<answer>250</answer>"])
    monkeypatch.setattr(sole.backend, "chat", lambda parts, g: asked.append((parts, g)) or next(replies))
    result = sole.score(str(CLIP), TASK)
    questions = [parts[1] for parts, _ in asked]
    assert questions[0] == QUESTIONS["external"].format(task=TASK, previous="0")
    assert "previous timestep is 40%." in questions[1] and "previous timestep is about 10%." in questions[2]
    assert [g.seed for _, g in asked] == [0, 1, 2] and asked[0][0][0].shape == (392, 1176, 3)
    assert result.values.tolist() == [0.0, 40.0, 40.0, 100.0]  # "about 10" keeps 40; 250 is clamped
    np.testing.assert_allclose(result.progress, [0, 0.4, 0.4, 1.0])
    assert result.signals["read"] == ["0", "40", "about 10", "100"]


def test_seeded_sampling_repeats_and_greedy_differs(sole):
    a = sole.score(str(CLIP), TASK).signals["answers"]
    b = sole.score(str(CLIP), TASK).signals["answers"]
    greedy = load_scorer(
        model=sole.backend_config.model,
        temperature=0.0,
        backend=sole.backend,
        max_frames=4,
        max_new_tokens=12,
    )
    assert a == b and a != greedy.score(str(CLIP), TASK).signals["answers"]


def test_views_are_checked(sole):
    with pytest.raises(ValueError, match="views"):
        load_scorer(model=sole.backend_config.model, views="top", backend=sole.backend)
    odd = np.zeros((4, 32, 33, 3), np.uint8)
    two = load_scorer(model=sole.backend_config.model, views="external+wrist", backend=sole.backend)
    with pytest.raises(ValueError, match="side by side"):
        two.score(odd, TASK, fps=1.0)


GOLDEN = Path(__file__).resolve().parent / "golden" / "sole.json"


def _sha(array: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def test_sole_equals_roboreasons_code(sole, monkeypatch):
    """`scripts/golden/record_sole.py` ran roboreason 0.1.5.2's `sole()` on this tiny model with a test double
    of vLLM: (A) scripted completions: the same composites, prompts with the previous answer fed back, and
    values; (B) the model itself, greedy (their vLLM sampling cannot be reproduced): the same text."""
    import hashlib

    from topreward.episode import as_episode

    golden = json.loads(GOLDEN.read_text())
    folder = Path(sole.backend_config.model)
    assert hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest() == golden["model_sha256"]
    assert {c["text"]: c["answer"] for c in golden["parser"]} == {
        c["text"]: parse_answer(c["text"]) for c in golden["parser"]
    }
    mv = sole.prepare(as_episode(str(CLIP), TASK))
    assert mv.source_indices.tolist() == golden["frame_indices"]
    f = mv.frames
    assert _sha(letterbox(f[0])) == golden["composites"]["resize_with_padding_frame0"]["sha256"]
    one = composite(f[0], f[0], f[1])
    assert _sha(one) == golden["composites"]["external"]["composite"]["sha256"]
    assert _sha(model_image(one)) == golden["composites"]["external"]["model_image"]["sha256"]
    both = [np.concatenate((x, x[:, ::-1]), axis=1) for x in (f[0], f[0], f[1])]
    two = composite(*both, views="external+wrist")
    assert _sha(two) == golden["composites"]["external and wrist"]["composite"]["sha256"]
    assert _sha(model_image(two)) == golden["composites"]["external and wrist"]["model_image"]["sha256"]

    def run(replies, **options):
        scorer = load_scorer(model=str(folder), backend=sole.backend, max_frames=4, **options)
        seen, real = [], sole.backend.chat

        def chat(parts, g):
            seen.append((parts, g))
            return next(replies) if replies is not None else real(parts, g)

        monkeypatch.setattr(sole.backend, "chat", chat)
        result = scorer.score(str(CLIP), TASK)
        monkeypatch.setattr(sole.backend, "chat", real)
        return result, seen

    for name, replies, options in (
        ("scripted", iter(s["scripted_completion"] for s in golden["scripted"]["steps"]), {}),
        ("greedy", None, {"temperature": 0.0, "max_new_tokens": 200}),
    ):
        case = golden[name]
        result, seen = run(replies, **options)
        for (parts, g), step in zip(seen, case["steps"], strict=True):
            chat_text, _ = sole.backend.image_chat([parts[0], parts[1]])
            system = f"<|im_start|>system\n{g.system}<|im_end|>\n"
            assert system + chat_text == step["prompt"]
            assert _sha(parts[0]) == step["image"]["sha256"]
            if name == "scripted":
                assert (g.temperature, g.top_p, g.top_k, g.max_new_tokens) == (1.0, 0.9, 50, 200)
        if name == "greedy":
            assert result.signals["answers"][1:] == [s["text"] for s in case["steps"]]
        assert result.values.tolist() == [float(v) for v in case["valid_answer_list_list"][0]]
