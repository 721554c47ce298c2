"""The fast (prefix-shared) path against the reference (one forward per prefix), on tiny real models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from topreward.backends.hf import ModelVideo
from topreward.backends.video_cache import (
    build_layouts,
    encode_frame_pairs,
    group_pairs,
    shared_length,
    suffix_mask,
)
from topreward.prompts import TOPREWARD_TEMPLATE
from topreward.sampling import prefix_lengths

from .conftest import colour_frames

PROMPT = TOPREWARD_TEMPLATE.format(instruction="put the pen into the cup")


def model_video(backend, n: int, grid: tuple[int, int]) -> ModelVideo:
    f = backend.patch_factor
    frames = colour_frames(n, grid[0] * f, grid[1] * f)
    return ModelVideo(frames, np.arange(n) * 5, 10.0)


def ids(backend) -> list[int]:
    return [backend.token_id(" True"), backend.token_id(" False")]


@pytest.mark.parametrize("n", [7, 8])
@pytest.mark.parametrize("grid", [(2, 2), (2, 3)])
@pytest.mark.parametrize("num_prefixes", [None, 4])
def test_fast_equals_reference(backend, n, grid, num_prefixes):
    video = model_video(backend, n, grid)
    ks = prefix_lengths(n, num_prefixes)
    prompt = backend.prompt_text("raw", PROMPT)
    ref = backend.reference_log_probs(video, ks, prompt, ids(backend))
    fast = backend.fast_log_probs(video, ks, prompt, ids(backend), batch_size=3)
    assert ref.shape == fast.shape == (len(ks), 2)
    # the test can fail: random weights at a large init give log-probs that vary a lot across prefixes
    assert np.ptp(ref[:, 0]) > 0.05
    np.testing.assert_allclose(fast, ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("style", ["authors", "chat"])
def test_fast_equals_reference_prompt_styles(backend, style):
    video = model_video(backend, 5, (2, 2))
    ks = [1, 2, 3, 4, 5]
    prompt = backend.prompt_text(style, PROMPT)
    ref = backend.reference_log_probs(video, ks, prompt, ids(backend))
    np.testing.assert_allclose(
        backend.fast_log_probs(video, ks, prompt, ids(backend)), ref, atol=1e-4, rtol=0
    )


def test_prompt_styles_change_the_input(qwen3_backend):
    video = model_video(qwen3_backend, 4, (2, 2))
    out = {
        s: qwen3_backend.fast_log_probs(
            video, [2, 4], qwen3_backend.prompt_text(s, PROMPT), ids(qwen3_backend)
        )
        for s in ("raw", "authors", "chat")
    }
    assert not np.allclose(out["raw"], out["authors"])
    assert not np.allclose(out["authors"], out["chat"])
    assert qwen3_backend.prompt_text("authors", PROMPT).before == "<|im_start|>user\n"
    chat = qwen3_backend.prompt_text("chat", PROMPT)
    assert chat.after.endswith("<|im_start|>assistant\n") and "<|im_end|>" in chat.after


def test_batch_size_does_not_change_results(qwen3_backend):
    video = model_video(qwen3_backend, 9, (2, 2))
    ks = list(range(1, 10))
    prompt = qwen3_backend.prompt_text("raw", PROMPT)
    a = qwen3_backend.fast_log_probs(video, ks, prompt, ids(qwen3_backend), batch_size=1)
    b = qwen3_backend.fast_log_probs(video, ks, prompt, ids(qwen3_backend), batch_size=9)
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


def test_group_pairs_pad_the_last_frame():
    assert group_pairs(5, 2) == [(0, 1), (2, 3), (4, 4)]
    assert group_pairs(4, 2) == [(0, 1), (2, 3)]


def test_shared_length_even_prefix_shares_its_video_and_odd_prefix_recomputes_last_group(backend):
    video = model_video(backend, 8, (2, 2))
    lay = build_layouts(backend, video, [3, 4, 8], backend.prompt_text("raw", PROMPT).before)
    full = lay[8]
    tpg = full.tokens_per_group
    # even prefix: everything up to its last video token is shared with the full episode
    assert shared_length(lay[4], full) >= int(lay[4].video_positions[-1]) + 1 - 0
    assert shared_length(lay[4], full) == int(lay[4].video_positions[-1]) + 1
    # odd prefix: its last group is (2, 2), not (2, 3): sharing stops before that group's first vision token
    s3 = shared_length(lay[3], full)
    assert s3 <= int(lay[3].video_positions[tpg])
    assert s3 >= int(lay[3].video_positions[tpg - 1]) + 1


def test_encoder_attends_within_temporal_groups(backend):
    """One encoder pass over all frames equals per-pair passes: the fact prefix sharing relies on."""
    video = model_video(backend, 6, (2, 3))
    together = encode_frame_pairs(backend, video, {(0, 1), (2, 3), (4, 5)})
    for pair in [(0, 1), (2, 3), (4, 5)]:
        alone = encode_frame_pairs(backend, video, {pair})
        a, b = together.start[pair], alone.start[pair]
        n = alone.embeds.shape[0]
        torch.testing.assert_close(together.embeds[a : a + n], alone.embeds[b : b + n], atol=1e-5, rtol=0)
        for d_all, d_one in zip(together.deepstack, alone.deepstack):
            torch.testing.assert_close(d_all[a : a + n], d_one[b : b + n], atol=1e-5, rtol=0)


def test_fast_path_does_each_frames_work_once(qwen3_backend, monkeypatch):
    """The language model sees each video token once; the encoder sees each distinct frame pair once."""
    backend = qwen3_backend
    video = model_video(backend, 8, (2, 2))
    ks = list(range(1, 9))
    prompt = backend.prompt_text("raw", PROMPT)
    lm = backend.model.model.language_model
    seen_tokens: list[int] = []
    handle = lm.register_forward_pre_hook(
        lambda m, a, kw: seen_tokens.append(kw["inputs_embeds"].shape[1]), with_kwargs=True
    )
    visual = backend.model.model.visual
    seen_patches: list[int] = []
    handle2 = visual.register_forward_pre_hook(lambda m, a: seen_patches.append(a[0].shape[0]))
    try:
        backend.fast_log_probs(video, ks, prompt, ids(backend), batch_size=8)
    finally:
        handle.remove()
        handle2.remove()
    layouts = build_layouts(backend, video, ks, prompt.before)
    full = layouts[8]
    shared = {k: shared_length(layouts[k], full) for k in ks}
    n_text = len(backend.tokenize(prompt.after))
    # one pass over the longest shared part (the whole video), then per prefix only what it does not share
    assert seen_tokens == [max(shared.values()), sum(len(layouts[k]) + n_text - shared[k] for k in ks)]
    assert max(shared.values()) == int(full.video_positions[-1]) + 1
    assert sum(seen_tokens) < sum(len(layouts[k]) + n_text for k in ks)  # what the reference processes
    # the encoder sees 4 full pairs when the cache is built, then the 4 padded pairs the requests need
    # (prefixes 1, 3, 5, 7): each distinct pair once, 2x2 merged tokens each
    merge = backend.processor.video_processor.merge_size
    assert seen_patches == [4 * (2 * 2) * merge**2, 4 * (2 * 2) * merge**2]


def test_suffix_mask_pattern():
    m = suffix_mask(shared=[2, 3], lengths=[2, 1], cache_len=3, dtype=torch.float32, device="cpu")[0, 0]
    allowed = (m == 0).int().tolist()
    assert allowed == [
        [1, 1, 0, 1, 0, 0],  # suffix 0, token 0: cache[:2], itself
        [1, 1, 0, 1, 1, 0],  # suffix 0, token 1: cache[:2], suffix 0 causally
        [1, 1, 1, 0, 0, 1],  # suffix 1: cache[:3], itself only
    ]
