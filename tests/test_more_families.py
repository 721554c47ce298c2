"""Qwen3.5 (hybrid recurrent + attention) and Molmo2 through the transformers backend, on tiny models.

These architectures are not in the suite-wide `ARCHS` matrix; their behaviour is held here: Qwen3.5's
recurrent fast path equals the reference, Molmo2 answers "fast" on the reference path (and why), both
score end to end through the CLI and `load_scorer`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from topreward.backends.base import PREFIX_SHARING, ModelVideo, Request
from topreward.backends.families import family_for
from topreward.backends.hf import ReferenceVideoCache
from topreward.backends.recurrent_cache import RecurrentVideoCache
from topreward.backends.video_cache import VideoCache
from topreward.cli import main
from topreward.tiny import EXTRA_ARCHS

from .conftest import colour_frames, load_backend

TEXT = " The above video shows a robot manipulation trajectory. The answer is:"


@pytest.fixture(scope="session")
def extra_model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-extra")
    for arch in EXTRA_ARCHS:  # through the CLI, so `make-tiny-model --arch` is covered too
        assert main(["make-tiny-model", str(root / arch), "--arch", arch]) == 0
    return {arch: root / arch for arch in EXTRA_ARCHS}


@pytest.fixture(scope="session")
def qwen35(extra_model_dirs):
    return load_backend(extra_model_dirs, "qwen3_5")


@pytest.fixture(scope="session")
def molmo2(extra_model_dirs):
    return load_backend(extra_model_dirs, "molmo2")


def _video(n: int, h: int = 96, w: int = 128) -> ModelVideo:
    return ModelVideo(colour_frames(n, h, w), np.arange(n) * 5, 10.0)


def _requests(backend, n: int) -> list[Request]:
    ids = (backend.token_id(" True"), backend.token_id(" False"))
    reqs = [Request(k, TEXT, ids) for k in range(1, n + 1)]
    reqs += [Request(k, " Done? The answer is:", ids, span=(0, 5)) for k in (2, n)]
    return reqs


def _assert_close(ref, fast, tol=1e-4):
    for a, b in zip(ref, fast):
        np.testing.assert_allclose(b.next, a.next, atol=tol)
        np.testing.assert_allclose(b.span, a.span, atol=tol)
        assert b.span_tokens == a.span_tokens


def test_answer_words_are_single_tokens(qwen35, molmo2):
    for backend in (qwen35, molmo2):
        assert backend.token_id(" True") != backend.token_id(" False")


def test_qwen35_recurrent_fast_path_equals_reference(qwen35):
    n = 9  # odd: the last temporal group is padded, so odd prefixes re-encode it; ~200 tokens > one 64-token chunk
    video = _video(n)
    before = qwen35.prompt_text("authors", TEXT).before
    reqs = _requests(qwen35, n)
    ref = qwen35.video_cache(video, before, path="reference").score(reqs)
    cache = qwen35.video_cache(video, before, path="fast")
    assert isinstance(cache, RecurrentVideoCache) and PREFIX_SHARING in qwen35.capabilities
    fast = cache.score(reqs)
    _assert_close(ref, fast)
    # the video ran through the language model once (plus each request's own tokens)
    full = cache.layout(n)
    assert cache.lm_tokens == int(full.video_positions[-1]) + 1 + sum(
        len(cache.layout(r.prefix)) - cache.shared(r.prefix) + len(cache.text_tokens(r.text).ids)
        for r in reqs
    )


def test_qwen35_needs_the_state_at_each_boundary(qwen35):
    """The 4-D-mask trick alone (every prefix reading the whole video's recurrent state) is measurably wrong."""
    n = 6
    video = _video(n)
    reqs = _requests(qwen35, n)[: n - 1]
    ref = qwen35.video_cache(video, "", path="reference").score(reqs)
    cache = qwen35.video_cache(video, "", path="fast")
    last = cache._snapshots[max(cache._snapshots)]
    cache._snapshots = {b: last for b in cache._snapshots}
    wrong = cache.score(reqs)
    assert max(np.abs(a.next - b.next).max() for a, b in zip(ref, wrong)) > 1e-2


def test_qwen35_extend_equals_reference(qwen35):
    video = _video(7)
    cache = qwen35.video_cache(ModelVideo(video.frames[:4], video.source_indices[:4], 10.0), "", path="fast")
    cache.extend(video.frames[4:], video.source_indices[4:])
    reqs = _requests(qwen35, 7)
    _assert_close(qwen35.video_cache(video, "", path="reference").score(reqs), cache.score(reqs))


def test_qwen35_packed_cache_is_refused(qwen35):
    with pytest.raises(ValueError, match="no packed video cache"):
        VideoCache(qwen35, _video(2), "")


def test_molmo2_fast_falls_back_to_reference(molmo2):
    assert PREFIX_SHARING not in molmo2.capabilities
    video = _video(4)
    cache = molmo2.video_cache(video, "", path="fast")
    assert isinstance(cache, ReferenceVideoCache)
    with pytest.raises(ValueError, match="bidirectional"):
        VideoCache(molmo2, video, "")
    reqs = _requests(molmo2, 4)
    answers = cache.score(reqs)
    assert all(np.isfinite(a.next).all() for a in answers)
    # prefixes differ: later frames move the answer
    assert np.abs(answers[0].next - answers[3].next).max() > 1e-3


def test_molmo2_frame_tokens_see_later_frames(molmo2):
    """Why Molmo2 has no exact prefix sharing: frame 1's hidden states change when frame 2 follows it."""
    video = _video(2, 64, 64)
    end = molmo2.processor.tokenizer.convert_tokens_to_ids("<frame_end>")

    def hidden(k):
        inputs = molmo2.processor(
            text=[molmo2.full_text(molmo2.prompt_text("authors", TEXT))],
            videos=[video.frames[:k]],
            video_metadata=[molmo2.prefix_metadata(video, k)],
            return_tensors="pt",
            **molmo2.processor_kwargs(),
        )
        with torch.inference_mode():
            out = molmo2.model(**inputs, output_hidden_states=True)
        ids = inputs["input_ids"][0]
        return ids, out.hidden_states[-1][0]

    ids1, h1 = hidden(1)
    ids2, h2 = hidden(2)
    m = int((ids1 == end).nonzero()[0, 0]) + 1  # through frame 1's <frame_end>: the same tokens in both
    assert torch.equal(ids1[:m], ids2[:m])
    assert (h1[:m] - h2[:m]).abs().max() > 1e-2


@pytest.mark.parametrize("arch", EXTRA_ARCHS)
def test_score_through_cli_and_load_scorer(arch, extra_model_dirs, sample_video, tmp_path):
    import topreward

    model = str(extra_model_dirs[arch])
    out = tmp_path / "r.json"
    args = ["score", str(sample_video), "open the drawer", "--model", model, "--out", str(out)]
    assert main([*args, "--num-prefixes", "4"]) == 0
    result = json.loads(out.read_text())
    assert result["model"]["family"] == arch and len(result["values"]) == 4
    scorer = topreward.load_scorer("topreward", model=model, num_prefixes=4, prompt_style="chat")
    chat = scorer.score(str(sample_video), "open the drawer")
    assert np.isfinite(chat.values).all()


def test_unsupported_model_type_lists_every_family():
    with pytest.raises(ValueError, match="qwen3_vl, qwen2_5_vl, qwen3_5, molmo2"):
        family_for("llava", "some/model")
