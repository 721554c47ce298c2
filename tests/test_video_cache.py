"""The video cache: many requests (different texts, next tokens, spans) and `extend`, against the reference."""

from __future__ import annotations

import numpy as np
import pytest

from topreward.backends.base import Answer, ModelVideo, Request, require
from topreward.backends.hf import ReferenceVideoCache
from topreward.backends.video_cache import VideoCache

from .conftest import colour_frames

TEXTS = [
    " The above video shows a robot that completes the task: open the drawer. Decide whether the above "
    "statement is True or not. The answer is:",
    " In the video above, the robot has finished the task 'stack the blocks'. True or False? The answer is:",
    " The above video shows a robot manipulation trajectory that completes the following task: fold the towel.",
]


def video(backend, n: int) -> ModelVideo:
    f = backend.patch_factor
    return ModelVideo(colour_frames(n, 2 * f, 2 * f), np.arange(n) * 3, 6.0)


def mixed_requests(backend, ks: list[int]) -> list[Request]:
    ids = (backend.token_id(" True"), backend.token_id(" False"))
    task = " fold the towel"
    start = TEXTS[2].index(task)
    out = []
    for k in ks:
        out += [Request(k, TEXTS[0], ids), Request(k, TEXTS[1], ids[:1])]
        out.append(Request(k, TEXTS[2], ids, span=(start, start + len(task))))  # span and next token
    return out


def assert_same(fast: list[Answer], ref: list[Answer]) -> None:
    assert len(fast) == len(ref)
    for a, b in zip(fast, ref):
        np.testing.assert_allclose(a.next, b.next, atol=1e-4, rtol=0)
        assert a.span_tokens == b.span_tokens
        np.testing.assert_allclose(a.span, b.span, atol=1e-4, rtol=0)


@pytest.mark.parametrize("n", [5, 6])
def test_requests_with_different_texts_equal_separate_reference_runs(backend, n):
    v = video(backend, n)
    requests = mixed_requests(backend, list(range(1, n + 1)))
    before = "<|im_start|>user\n"
    fast = VideoCache(backend, v, before, batch_size=4).score(requests)
    ref = ReferenceVideoCache(backend, v, before).score(requests)
    assert_same(fast, ref)
    spans = [a for a, r in zip(fast, requests) if r.span is not None]
    assert all(len(a.span) >= 3 and np.all(a.span < 0) for a in spans)  # " fold", " the", " towel", ...
    # the test can fail: answers differ across texts and prefixes
    assert np.ptp([a.next[0] for a in fast]) > 0.05


def test_extend_equals_a_cache_of_the_whole_video(backend):
    whole = video(backend, 9)
    requests = mixed_requests(backend, [1, 4, 5, 7, 9])
    cache = VideoCache(backend, ModelVideo(whole.frames[:3], whole.source_indices[:3], 6.0), "")
    built = cache.lm_tokens
    cache.extend(whole.frames[3:6], whole.source_indices[3:6])  # completes the odd group (2, 3)
    cache.extend(whole.frames[6:], whole.source_indices[6:])
    assert cache.video.num_frames == 9
    grown = cache.lm_tokens - built
    fresh = VideoCache(backend, whole, "")
    assert grown < fresh.lm_tokens  # only what changed was run again
    assert_same(cache.score(requests), fresh.score(requests))
    assert_same(cache.score(requests), ReferenceVideoCache(backend, whole, "").score(requests))


def test_extend_encodes_only_new_frame_pairs(qwen3_backend):
    whole = video(qwen3_backend, 8)
    cache = VideoCache(qwen3_backend, ModelVideo(whole.frames[:4], whole.source_indices[:4], 6.0), "")
    assert set(cache.bank.start) == {(0, 1), (2, 3)}
    seen: list[int] = []
    handle = qwen3_backend.model.model.visual.register_forward_pre_hook(
        lambda m, a: seen.append(a[0].shape[0])
    )
    try:
        cache.extend(whole.frames[4:], whole.source_indices[4:])
    finally:
        handle.remove()
    merge = qwen3_backend.processor.video_processor.merge_size
    assert seen == [2 * (2 * 2) * merge**2]  # pairs (4, 5) and (6, 7) only
    assert set(cache.bank.start) == {(0, 1), (2, 3), (4, 5), (6, 7)}


def test_bad_requests_and_frames(qwen3_backend):
    v = video(qwen3_backend, 4)
    cache = VideoCache(qwen3_backend, v, "")
    with pytest.raises(ValueError, match="outside the video's 1..4 frames"):
        cache.score([Request(5, TEXTS[0], (1,))])
    with pytest.raises(ValueError, match="token boundaries"):
        cache.score([Request(2, TEXTS[2], span=(TEXTS[2].index("towel") + 1, len(TEXTS[2]) - 1))])
    with pytest.raises(ValueError, match="tokens=.*span="):
        Request(2, "x")
    with pytest.raises(ValueError, match="at least one frame"):
        Request(0, "x", (1,))
    for c in (cache, ReferenceVideoCache(qwen3_backend, v, "")):
        with pytest.raises(ValueError, match="must be"):
            c.extend(v.frames[:1, :8], [100])
        with pytest.raises(ValueError, match="must be"):
            c.extend(v.frames[:1].astype(np.float32), [100])
        with pytest.raises(ValueError, match="increasing"):
            c.extend(v.frames[:1], [0])
        assert c.video.num_frames == 4  # nothing half-appended


def test_batch_size_does_not_change_answers(qwen3_backend):
    v = video(qwen3_backend, 6)
    requests = mixed_requests(qwen3_backend, [2, 3, 6])
    assert_same(
        VideoCache(qwen3_backend, v, "", batch_size=1).score(requests),
        VideoCache(qwen3_backend, v, "", batch_size=9).score(requests),
    )


def test_missing_capability_names_it_and_a_backend_that_has_it():
    class TextOnly:
        name = "text-only"
        capabilities = frozenset({"log_probs"})

    with pytest.raises(ValueError, match="'multi_image'.*'text-only' lacks.*backend='transformers'"):
        require(TextOnly(), {"log_probs", "multi_image"}, "lrm-progress")
    require(TextOnly(), {"log_probs"}, "topreward")


def test_the_engine_uses_the_current_cache_argument(backend):
    """transformers 5.24 renamed the language model's `past_key_values=` to `cache=` (the old name warns
    and goes in 5.40): every path passes the name the installed release takes, so nothing warns."""
    import warnings

    v = video(backend, 4)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*past_key_values.*")
        warnings.filterwarnings("error", category=FutureWarning, module="transformers")
        cache = backend.video_cache(v, "", path="fast")
        cache.score(mixed_requests(backend, [2, 4]))
        cache.extend(colour_frames(2, *v.frames.shape[1:3]), [12, 15])
