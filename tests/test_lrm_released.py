"""LRM's released adapters: the release's folder layout, the merge by hand, their prompts and parsers, and
the expected readout on its fast and reference paths.

Tiny random adapters in the release's layout (`make-tiny-model --arch lrm`), named as the model the way a
download of `USC-PSI-Lab/LRM-models/<head>` is; golden values from the authors' server code are checked in
`test_lrm_equals_the_authors_server`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from topreward import load_scorer
from topreward.backends.adapters import merge_lora_by_hand
from topreward.scorers.lrm_released import (
    completion_parts,
    contrast_parts,
    parse_completion,
    parse_contrast,
    parse_progress,
    progress_parts,
)
from topreward.scorers.pretrained import known_model, release_options
from topreward.tiny import make_tiny_model

CLIP = Path(__file__).resolve().parents[1] / "src/topreward/assets/sample_pick_place.mp4"
TASK = "put the pen into the cup"


@pytest.fixture(scope="session")
def lrm_dir(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("lrm"), "lrm")


@pytest.fixture(scope="session")
def lrm_backend(lrm_dir):
    """One float32 CPU backend with the completion adapter merged (the slow part, done once)."""
    return load_scorer(model=str(lrm_dir / "completion"), device="cpu", max_frames=4).backend


def test_the_table_resolves_an_adapter_folder_to_its_base_and_method(lrm_dir):
    for head in ("progress", "completion", "contrastive"):
        assert known_model(str(lrm_dir / head)).method == f"lrm-released-{head}"
    options = release_options({"model": str(lrm_dir / "progress")})
    assert options["adapter"] == str(lrm_dir / "progress")
    assert Path(options["model"]).name == "Qwen3-VL-8B-Instruct-tiny"  # the base the adapter records
    hub = "/x/hub/models--USC-PSI-Lab--LRM-models/snapshots/0123abc/contrastive"
    assert known_model(hub).model == "USC-PSI-Lab/LRM-models/contrastive"


def test_merge_by_hand_equals_peft_merge(lrm_dir):
    """The naive reference: peft's own merge of the same adapter."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    base = lrm_dir.parent / "Qwen3-VL-8B-Instruct-tiny"
    ours = AutoModelForImageTextToText.from_pretrained(base, dtype=torch.float32)
    pairs = merge_lora_by_hand(ours, lrm_dir / "progress", str(base))
    reference = AutoModelForImageTextToText.from_pretrained(base, dtype=torch.float32)
    reference = PeftModel.from_pretrained(reference, str(lrm_dir / "progress")).merge_and_unload()
    theirs = reference.state_dict()
    assert pairs == 3 * 7  # 3 layers x q, k, v, o, gate, up, down
    worst = max(float((v - theirs[k]).abs().max()) for k, v in ours.state_dict().items())
    assert worst <= 1e-5
    untouched = AutoModelForImageTextToText.from_pretrained(base, dtype=torch.float32).state_dict()
    key = "model.visual.blocks.0.attn.qkv.weight"
    assert not torch.equal(
        ours.state_dict()[key], untouched[key]
    )  # the saved vision tower replaced the base's


def test_prompts_are_their_servers():
    image = np.zeros((4, 4, 3), np.uint8)
    parts = progress_parts("fold it", image, image)
    assert (
        parts[0]
        == "Task: Estimate the completion progress.\nThe task is: fold it\nYou are given:\n- Initial observation: "
    )
    assert parts[2] == "\n- Current observation: " and parts[4].endswith(
        '{ "completion_progress": selected_value }'
    )
    assert progress_parts("fold it", image)[0].endswith("You are given:\n- Current observation: ")
    parts = completion_parts("fold it", image)
    assert parts[0].endswith("- Current observation:") and parts[2].startswith("Has the task been completed?")
    assert parts[2].endswith('{ "task_completed": "yes" or "no" }')
    parts = contrast_parts("fold it", image, image)
    assert "The task is: fold it.\n\n" in parts[0] and parts[0].endswith("(Image A): ")
    assert parts[4].endswith('{ "more_complete_image": "selected_value" }')


def test_parsers_are_theirs():
    assert parse_progress('{ "completion_progress": 0.7 }') == 0.7
    assert parse_progress('"NA"') == 0.0 and parse_progress("1.5") == 1.0 and parse_progress("nothing") == 0.0
    assert parse_progress("The answer is 0.35 maybe") == 0.35 and parse_progress("Progress: 45") == 1.0
    assert parse_progress("step 3 of 10") == 1.0
    assert parse_completion('{ "task_completed": "yes" }') == 1.0
    assert parse_completion("I know it is done") == 0.0  # "no" in "know": their substring test
    assert parse_completion("yes") == 1.0
    assert parse_contrast('{"more_complete_image": "ImageB"}') == 1.0
    assert parse_contrast("ImageB is better than ImageA") == -1.0  # their last mention wins
    assert parse_contrast("imageb") == 0.0


def test_generate_and_expected_readouts(lrm_backend, lrm_dir, monkeypatch):
    common = {"model": str(lrm_dir / "completion"), "backend": lrm_backend, "max_frames": 4}
    asked = []
    real = lrm_backend.chat
    monkeypatch.setattr(lrm_backend, "chat", lambda parts, g: asked.append((parts, g)) or real(parts, g))
    result = load_scorer(max_new_tokens=6, **common).score(str(CLIP), TASK)
    assert len(asked) == 4 and {g.max_new_tokens for _, g in asked} == {6} and asked[0][1].temperature == 0
    assert asked[0][0][0].endswith("- Current observation:") and asked[0][0][1].shape == (
        128,
        160,
        3,
    )  # native size
    assert set(result.values) <= {0.0, 1.0} and len(result.signals["answers"]) == 4
    fast = load_scorer(readout="expected", **common).score(str(CLIP), TASK)
    slow = load_scorer(readout="expected", path="reference", **common).score(str(CLIP), TASK)
    np.testing.assert_allclose(fast.values, slow.values, atol=1e-4, rtol=0)
    assert np.all((fast.values > 0) & (fast.values < 1)) and fast.success_score == pytest.approx(
        fast.values[-1]
    )


def test_contrastive_rewards_and_its_curve(lrm_dir, monkeypatch):
    scorer = load_scorer(model=str(lrm_dir / "contrastive"), device="cpu", max_frames=4, max_new_tokens=4)
    scripted = iter(['{ "more_complete_image": "ImageB" }', "ImageA", "no idea"])
    monkeypatch.setattr(scorer.backend, "chat", lambda parts, g: next(scripted))
    result = scorer.score(str(CLIP), TASK)
    assert result.values.tolist() == [0.0, 1.0, -1.0, 0.0]  # no previous frame at the first point
    np.testing.assert_allclose(result.signals["cumulative"], [0, 1, 0, 0])
    assert result.progress.argmax() == 1
    with pytest.raises(ValueError, match="no 'expected' readout"):
        load_scorer(model=str(lrm_dir / "contrastive"), readout="expected", backend=scorer.backend)


def test_an_adapter_for_another_base_is_refused(lrm_dir, tmp_path, tiny_model_dirs):
    import torch
    from transformers import AutoModelForImageTextToText

    other = AutoModelForImageTextToText.from_pretrained(tiny_model_dirs["qwen2_5_vl"], dtype=torch.float32)
    with pytest.raises(ValueError, match="trained on"):
        merge_lora_by_hand(other, lrm_dir / "progress", str(tiny_model_dirs["qwen2_5_vl"]))
    with pytest.raises(ValueError, match="adapter for another base model"):  # same name, other shapes
        merge_lora_by_hand(other, lrm_dir / "progress", str(lrm_dir.parent / "Qwen3-VL-8B-Instruct-tiny"))
    renamed = tmp_path / "LRM-models" / "completion"
    shutil.copytree(lrm_dir / "completion", renamed)
    config = json.loads((renamed / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "Qwen/Qwen3-VL-4B-Instruct"
    (renamed / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="was trained on 'Qwen/Qwen3-VL-4B-Instruct'"):
        load_scorer(
            "lrm-released-completion",
            model=str(lrm_dir.parent / "Qwen3-VL-8B-Instruct-tiny"),
            adapter=str(renamed),
            device="cpu",
        )
    with pytest.raises(ValueError, match="pass it as adapter="):
        load_scorer(
            "lrm-released-progress", model=str(lrm_dir.parent / "Qwen3-VL-8B-Instruct-tiny"), device="cpu"
        )


GOLDEN = Path(__file__).resolve().parent / "golden" / "lrm.json"


def test_lrm_equals_the_authors_server(lrm_dir):
    """`scripts/golden/record_lrm.py` ran their server's `load_vlm_model` (the merge by hand) and
    `compute_vlm_reward` / `compute_vlm_completion` / `compute_vlm_comparison` on these tiny adapters and the
    clip's frames [0, 20, 39, 59]: the same prompts, ids and greedy text, their parsers' readings, and the
    candidates' log-probs after the teacher-forced JSON prefix."""
    import hashlib

    from topreward.episode import as_episode

    golden = json.loads(GOLDEN.read_text())
    for head, sha in golden["adapter_model_sha256"].items():
        assert hashlib.sha256((lrm_dir / head / "adapter_model.safetensors").read_bytes()).hexdigest() == sha
    for text_case in golden["parser_cases"]:
        text = text_case["text"]
        assert parse_progress(text) == text_case["extract_progress_score"], text
        assert parse_contrast(text) == text_case["comparison_score"], text
        assert parse_completion(text.strip()) == text_case["completion_score"], text
    episode = as_episode(str(CLIP), TASK)
    for head in ("progress", "completion", "contrastive"):
        scorer = load_scorer(model=str(lrm_dir / head), device="cpu", max_frames=4)
        backend, calls = scorer.backend, golden["heads"][head]["calls"]
        mv = scorer.prepare(episode)
        assert mv.source_indices.tolist() == golden["frame_indices"]
        frame = dict(zip(mv.source_indices.tolist(), mv.frames))
        for call in calls:
            prompt, images = backend.image_chat(prompt_parts(head, call, frame))
            assert prompt == call["prompt_text"]
            ids = backend.image_inputs(prompt, images, "", resize=True)["input_ids"][0].tolist()
            assert ids == call["input_ids"]
        # the authors' readout through the scorer: every call's greedy text, and their parser's values
        theirs = [c["response"].strip() for c in calls]
        generated = load_scorer(model=str(lrm_dir / head), backend=backend, max_frames=4).score(episode)
        answers = generated.signals["answers"][1:] if head == "contrastive" else generated.signals["answers"]
        assert [a.strip() for a in answers] == theirs
        expected_values = [c["score"] for c in calls]
        got = generated.values[1:] if head == "contrastive" else generated.values
        assert got.tolist() == expected_values
        if head == "contrastive":
            continue
        result = load_scorer(
            model=str(lrm_dir / head), readout="expected", backend=backend, max_frames=4
        ).score(episode)
        theirs = np.array([c["expected_readout"]["log_probs"] for c in calls])
        ours = (
            result.signals["level_log_probs"]
            if head == "progress"
            else np.stack([result.signals["log_p_yes"], result.signals["log_p_no"]], axis=1)
        )
        np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)
        np.testing.assert_allclose(
            result.signals["prefix_log_prob"],
            [c["expected_readout"]["prefix_log_prob"] for c in calls],
            atol=1e-4,
        )


def prompt_parts(head: str, call: dict, frame: dict) -> list:
    if head == "progress":
        return progress_parts(TASK, frame[call["index"]], frame[call["initial_index"]])
    if head == "completion":
        return completion_parts(TASK, frame[call["index"]])
    return contrast_parts(TASK, frame[call["index_a"]], frame[call["index_b"]])


def test_a_span_at_the_answers_first_token_is_read_at_the_prompts_last(lrm_backend):
    """The fast image path reads such a span's first token from the prompt's last position (it runs that
    token again on top of the cache); it was read from the wrong row before. Reference: one plain forward."""
    from topreward.backends.base import Request

    image = np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    prompt, images = lrm_backend.image_chat(completion_parts(TASK, image))
    text = '{ "task_completed": "yes'
    requests = [Request(1, text, span=(0, len(text))), Request(1, text, span=(21, len(text)))]
    fast = lrm_backend.image_log_probs(prompt, images, requests, path="fast", resize=True)
    slow = lrm_backend.image_log_probs(prompt, images, requests, path="reference", resize=True)
    for a, b in zip(fast, slow):
        np.testing.assert_allclose(a.span, b.span, atol=1e-4, rtol=0)
