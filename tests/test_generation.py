"""Generation through the backend contract (`Backend.chat`): greedy by default, stop strings, seeds,
video or several images in one prompt — checked against a greedy loop written out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from topreward.backends.base import Generation, ModelVideo, cut_at_stop

from .conftest import colour_frames


def _video(b, n: int = 4) -> ModelVideo:
    side = 2 * b.patch_factor  # frames are prepared at the model's patch grid
    return ModelVideo(colour_frames(n, side, side), np.arange(n) * 5, 10.0)


def _greedy_by_hand(b, parts, steps: int) -> str:
    """One full forward per new token, argmax each time."""
    video = next(p for p in parts if isinstance(p, ModelVideo))
    content = [{"type": "video"} if isinstance(p, ModelVideo) else {"type": "text", "text": p} for p in parts]
    text = b.processor.apply_chat_template(
        [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
    )
    inputs = b.processor(
        text=[text],
        videos=[video.frames],
        video_metadata=[b.prefix_metadata(video, video.num_frames)],
        return_tensors="pt",
        **b.processor_kwargs(),
    )
    ids = inputs["input_ids"]
    with torch.inference_mode():
        for _ in range(steps):
            step = {**inputs, "input_ids": ids, "attention_mask": torch.ones_like(ids)}
            if "mm_token_type_ids" in inputs:  # new text tokens are of type 0
                pad = torch.zeros(1, ids.shape[1] - inputs["input_ids"].shape[1], dtype=torch.long)
                step["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], pad], dim=1)
            nxt = b.model(**step).logits[0, -1].argmax()
            ids = torch.cat([ids, nxt.view(1, 1)], dim=1)
    return b.processor.tokenizer.decode(ids[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def test_chat_is_greedy_after_a_video(backend):
    parts = [_video(backend), "Describe the video."]
    assert backend.chat(parts, Generation(max_new_tokens=4)) == _greedy_by_hand(backend, parts, 4)


def test_stop_strings_cut_the_answer(qwen3_backend):
    parts = [_video(qwen3_backend), "Describe the video."]
    full = qwen3_backend.chat(parts, Generation(max_new_tokens=12))
    assert len(full) >= 6, full
    stop = full[3:6]
    expected = cut_at_stop(full, (stop,))
    assert qwen3_backend.chat(parts, Generation(max_new_tokens=12, stop=(stop,))) == expected
    assert stop not in expected


def test_sampling_is_seeded(qwen3_backend):
    parts = [_video(qwen3_backend), "Describe the video."]
    runs = {
        seed: qwen3_backend.chat(parts, Generation(max_new_tokens=8, temperature=1.0, seed=seed))
        for seed in range(4)
    }
    assert runs[1] == qwen3_backend.chat(parts, Generation(max_new_tokens=8, temperature=1.0, seed=1))
    assert len(set(runs.values())) > 1  # different seeds, different samples (random weights: near-uniform)


def test_several_images_in_one_prompt(qwen3_backend):
    a, b = colour_frames(2, 64, 64)
    text = qwen3_backend.chat(["First:", a, "Second:", b, "Which is redder?"], Generation(max_new_tokens=3))
    assert isinstance(text, str)


@pytest.mark.parametrize(
    "parts, error",
    [
        ([], ValueError),
        ([np.zeros((4, 4, 3), np.uint8)], ValueError),
        (["x", np.zeros((4, 4), np.uint8)], TypeError),
        (["x", np.zeros((4, 4, 3), np.float32)], TypeError),
    ],
)
def test_bad_parts_are_refused(qwen3_backend, parts, error):
    with pytest.raises(error):
        qwen3_backend.chat(parts)


@pytest.mark.parametrize(
    "kwargs", [{"max_new_tokens": 0}, {"temperature": -1.0}, {"temperature": float("nan")}, {"stop": "x"}]
)
def test_bad_generation_options(kwargs):
    with pytest.raises(ValueError):
        Generation(**kwargs)
