"""LRM heads on tiny models: results, exactness of the image path against a plain forward, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import topreward
from topreward.backends.base import LOG_PROBS, ModelVideo
from topreward.scorers.lrm import (
    COMPLETION_CUE,
    PROGRESS_CANDIDATES,
    PROGRESS_CUE,
    LRMContrastConfig,
    LRMProgressScorer,
    completion_parts,
    progress_parts,
    subsample_points,
)
from topreward.tiny import ARCHS

from .conftest import colour_frames, load_backend

METHODS = {
    "lrm-progress": {"expected_progress", "candidate_log_probs"},
    "lrm-completion": {"log_p_yes", "log_p_no"},
    "lrm-contrast": {"pairwise_closer", "first_image_rate"},
}


def _frames(backend, n: int) -> np.ndarray:
    """Frames whose sides are multiples of the backend's patch grid (what the scorer's `prepare` ensures)."""
    f = backend.patch_factor
    return colour_frames(n, 2 * f, 3 * f)


def _forward_log_probs(
    backend, prompt: str, images: list[np.ndarray], text: str
) -> tuple[torch.Tensor, list[int]]:
    """Log-softmax of one plain forward over prompt + text, and its input ids: the independent reference."""
    inputs = backend.processor(text=[prompt + text], images=images, return_tensors="pt", do_resize=False)
    with torch.no_grad():
        logits = backend.model(**inputs).logits[0].float()
    return torch.log_softmax(logits, dim=-1), inputs["input_ids"][0].tolist()


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", sorted(METHODS))
def test_score(tiny_model_dirs, arch, method):
    backend = load_backend(tiny_model_dirs, arch)
    scorer = topreward.load_scorer(method, model="x", backend=backend, num_prefixes=3, max_frames=4)
    r = scorer.score(colour_frames(8, 64, 96), "open the drawer", fps=4)
    k = len(r.prefix_lengths)
    assert r.method == method and k == 3 and r.prefix_lengths[-1] == 4
    assert r.values.shape == r.progress.shape == (k,)
    assert np.all(r.progress >= 0) and np.all(r.progress <= 1)
    assert set(r.signals) == METHODS[method]
    assert np.all(np.isfinite(r.values)) and 0 <= r.success_score <= 1
    if method == "lrm-progress":
        assert np.asarray(r.candidate_log_probs).shape == (k, 11)
        np.testing.assert_allclose(r.progress, r.values)  # absolute head: no min-max
    if method == "lrm-completion":
        p_yes = np.exp(r.log_p_yes) / (np.exp(r.log_p_yes) + np.exp(r.log_p_no))
        np.testing.assert_allclose(r.values, p_yes, rtol=1e-9)
        assert r.success_score == pytest.approx(r.values[-1])
    if method == "lrm-contrast":
        closer = np.asarray(r.pairwise_closer)
        np.testing.assert_allclose(closer + closer.T, 1.0, atol=1e-12)  # both orders averaged
        assert r.values.mean() == pytest.approx(0.5)  # Borda scores of a round robin
        assert r.progress.min() == 0 and r.progress.max() == pytest.approx(1, abs=1e-4)


@pytest.mark.parametrize("path", ["fast", "reference"])
@pytest.mark.parametrize("arch", ARCHS)
def test_progress_span_matches_plain_forward(tiny_model_dirs, arch, path):
    backend = load_backend(tiny_model_dirs, arch)
    frames = _frames(backend, 3)
    prompt, images = backend.image_chat(progress_parts("open the drawer", frames[2], frames[0]))
    requests = LRMProgressScorer.requests(len(images))
    answers = backend.image_log_probs(prompt, images, [requests[3], requests[10]], path=path)
    for answer, candidate in zip(answers, [PROGRESS_CANDIDATES[3], PROGRESS_CANDIDATES[10]]):
        cand_ids = backend.tokenize(candidate)
        assert backend.tokenize(PROGRESS_CUE + candidate)[-len(cand_ids) :] == cand_ids
        log_probs, ids = _forward_log_probs(backend, prompt, images, PROGRESS_CUE + candidate)
        m, n = len(cand_ids), len(ids)
        assert ids[n - m :] == cand_ids
        expected = sum(float(log_probs[n - m - 1 + t, ids[n - m + t]]) for t in range(m))
        assert list(answer.span_tokens) == cand_ids
        assert answer.span.sum() == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("arch", ARCHS)
def test_completion_matches_plain_forward(tiny_model_dirs, arch):
    backend = load_backend(tiny_model_dirs, arch)
    scorer = topreward.load_scorer("lrm-completion", model="x", backend=backend)
    frames = _frames(backend, 2)
    video = ModelVideo(frames, np.arange(2), 2.0)
    out = scorer.compute(video, "open the drawer", [2])
    prompt, images = backend.image_chat(completion_parts("open the drawer", frames[1]))
    log_probs, _ = _forward_log_probs(backend, prompt, images, COMPLETION_CUE)
    yes, no = backend.token_id(" yes"), backend.token_id(" no")
    assert out.signals["log_p_yes"][0] == pytest.approx(float(log_probs[-1, yes]), abs=1e-4)
    assert out.signals["log_p_no"][0] == pytest.approx(float(log_probs[-1, no]), abs=1e-4)


def test_contrast_asks_every_ordered_pair_of_capped_points(qwen3_backend, monkeypatch):
    calls = []
    real = qwen3_backend.image_log_probs
    monkeypatch.setattr(
        qwen3_backend,
        "image_log_probs",
        lambda p, imgs, reqs, **kw: calls.append(len(imgs)) or real(p, imgs, reqs, **kw),
    )
    scorer = topreward.load_scorer(
        "lrm-contrast", model="x", backend=qwen3_backend, num_prefixes=None, max_frames=8, max_points=3
    )
    r = scorer.score(colour_frames(8, 64, 96), "stack the blocks", fps=2)
    assert r.prefix_lengths.tolist() == [1, 5, 8]  # 8 prefixes capped at 3, first and last kept
    assert calls == [2] * 6  # K (K - 1) forwards of two images
    assert subsample_points(list(range(1, 9)), 8) == list(range(1, 9))


def test_bad_inputs(qwen3_backend):
    with pytest.raises(ValueError, match="option yes=' Yes'"):  # " Yes" is three tokens in the tiny tokenizer
        topreward.load_scorer("lrm-completion", model="x", backend=qwen3_backend, yes=" Yes", no=" no")
    with pytest.raises(ValueError, match="must differ"):
        topreward.load_scorer("lrm-completion", model="x", backend=qwen3_backend, yes=" no")
    with pytest.raises(ValueError, match="max_points"):
        LRMContrastConfig(max_points=1)
    with pytest.raises(ValueError, match="space"):
        LRMContrastConfig(first="1", second=" 2")
    scorer = topreward.load_scorer("lrm-progress", model="x", backend=qwen3_backend)
    with pytest.raises(ValueError, match="no instruction"):
        scorer.score(colour_frames(4, 64, 96), "  ", fps=2)

    class TextOnly:
        name, capabilities = "text-only", frozenset({LOG_PROBS})

    with pytest.raises(ValueError, match="multi_image"):
        topreward.load_scorer("lrm-contrast", model="x", backend=TextOnly())


@pytest.mark.parametrize("method", ["lrm-progress", "lrm-completion"])
def test_shared_prompt_path_equals_reference(tiny_model_dirs, method):
    backend = load_backend(tiny_model_dirs, "qwen2_5_vl")
    small = {"num_prefixes": 3, "max_frames": 4}
    frames = colour_frames(8, 64, 96)
    fast = topreward.load_scorer(method, backend=backend, **small).score(frames, "open the drawer", fps=4)
    ref = topreward.load_scorer(method, backend=backend, path="reference", **small).score(
        frames, "open the drawer", fps=4
    )
    np.testing.assert_allclose(fast.values, ref.values, atol=1e-4, rtol=0)
    if method == "lrm-progress":
        np.testing.assert_allclose(fast.candidate_log_probs, ref.candidate_log_probs, atol=1e-4, rtol=0)
