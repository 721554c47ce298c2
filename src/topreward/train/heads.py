"""The four trainable heads: how an episode becomes examples, and each example's loss (with gradients).

Every head trains the answer the matching zero-shot method reads, with the same prompt, so a trained
model is scored by that method unchanged:

* `topreward` -> method `topreward`: after each video prefix and the TOPReward prompt, the probability of
  " True" should equal the prefix's ground-truth progress p (soft target). Loss: binary cross-entropy
  between p and P(" True") — the full-vocabulary probability of the answer token, not renormalised —
  `-(p log P + (1 - p) log(1 - P))`, with log(1 - P) computed as log1p(-exp(log P)).
* `progress` -> `lrm-progress` (LRM Eq.3): the first frame as anchor, the current frame, the question;
  the target is the completion level nearest to the ground truth, written " 0.0" .. " 1.0" after the cue
  "Progress:". Loss: cross-entropy of that answer's tokens (SFT).
* `completion` -> `lrm-completion` (LRM Eq.4): the current frame; target " yes" when the frame shows the
  task done (ground truth >= `done_at`), " no" otherwise. Loss: cross-entropy of the answer token (SFT).
* `contrast` -> `lrm-contrast` (LRM Eq.2): two frames of one episode with different ground truth, in both
  orders; the preferred answer is the image closer to completion. Loss: the Bradley-Terry / reference-free
  DPO loss on the two answer tokens, -log softmax over {"1", "2"} of the preferred one. (trl's
  `DPOTrainer` would add a frozen reference model and sequence-level log-ratios; for a single answer token
  shown in both orders it reduces to this logistic loss, so we train it directly.)

Examples are built from the frames the scorer would see (`FramePreparer`: same sampling, same sizes), at
`num_points` evaluation points per episode, with the ground truth of `topreward.groundtruth` at each
point's source frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from topreward.backends.base import ModelVideo
from topreward.backends.video_cache import TextTokens
from topreward.train import HEADS, METHOD_OF

__all__ = ["HEADS", "METHOD_OF", "Example", "examples_for", "loss"]


@dataclass
class Example:
    """One training example: chat/video parts, the text after them, and what to learn there."""

    episode: str
    prompt: str  # the full text up to the answer (with the model's image/video markers)
    images: list[np.ndarray] = field(default_factory=list)
    video: ModelVideo | None = None
    answer: str = ""  # a continuation whose tokens are learned (SFT); or
    read: tuple[int, ...] = ()  # token ids read at the end (soft target or pair)
    target: float = 0.0  # soft target (topreward) or index of the preferred id (contrast)


def _forward_log_probs(backend, ex: Example) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-probs of the answer's tokens, log-probs of `read` ids after the answer), with gradients."""
    text = ex.prompt + ex.answer
    kwargs: dict[str, Any] = {}
    if ex.video is not None:
        kwargs.update(
            videos=[ex.video.frames],
            video_metadata=[backend.prefix_metadata(ex.video, ex.video.num_frames)],
            **backend.processor_kwargs(),
        )
    if ex.images:
        kwargs.update(images=list(ex.images), do_resize=False)
    inputs = backend.processor(text=[text], return_tensors="pt", **kwargs)
    ids = inputs["input_ids"][0]
    n = len(TextTokens.of(backend.processor.tokenizer, ex.answer).ids) if ex.answer else 0
    logits = backend.model(**backend._to_device(inputs), logits_to_keep=n + 1).logits[0].float()
    log_probs = torch.log_softmax(logits, dim=-1)  # row j predicts answer token j; the last row what follows
    device = log_probs.device
    answer_ids = ids[len(ids) - n :].to(device)
    span = log_probs[torch.arange(n, device=device), answer_ids] if n else log_probs.new_zeros(0)
    nxt = log_probs[n, list(ex.read)] if ex.read else log_probs.new_zeros(0)
    return span, nxt


def loss(head: str, backend, ex: Example) -> torch.Tensor:
    """The head's loss on one example (a scalar with gradients)."""
    span, nxt = _forward_log_probs(backend, ex)
    if head == "topreward":
        log_p = nxt[0].clamp(max=-1e-6)  # log P(" True") < 0 keeps log(1 - P) finite
        p = torch.tensor(ex.target, dtype=log_p.dtype, device=log_p.device)
        return -(p * log_p + (1 - p) * torch.log1p(-torch.exp(log_p)))
    if head in ("progress", "completion"):
        return -(span.sum() if head == "progress" else nxt[0])
    if head == "contrast":
        return -(nxt[int(ex.target)] - torch.logsumexp(nxt, dim=0))
    raise ValueError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")


def examples_for(
    head: str,
    backend,
    video: ModelVideo,
    truth: np.ndarray,
    instruction: str,
    points: list[int],
    episode: str,
    *,
    done_at: float = 0.95,
    max_pairs: int = 8,
    rng: np.random.Generator | None = None,
) -> list[Example]:
    """A head's examples for one episode: `truth` is the per-source-frame ground truth."""
    from topreward.scorers.lrm import (
        COMPLETION_CUE,
        CONTRAST_CUE,
        PROGRESS_CANDIDATES,
        PROGRESS_CUE,
        _cue,
        completion_parts,
        contrast_parts,
        progress_parts,
    )
    from topreward.scorers.topreward import format_prompt

    at = [float(truth[int(video.source_indices[k - 1])]) for k in points]
    out: list[Example] = []
    if head == "topreward":
        prompt = backend.prompt_text("authors", format_prompt(instruction))
        true_id = backend.token_id(" True")
        for k, p in zip(points, at):
            prefix = ModelVideo(video.frames[:k], video.source_indices[:k], video.source_fps, video.rate)
            text = prompt.before + backend.family.video_placeholder + prompt.after
            out.append(Example(episode, text, video=prefix, read=(true_id,), target=p))
    elif head == "progress":
        for k, p in zip(points, at):
            chat, images = backend.image_chat(
                progress_parts(instruction, video.frames[k - 1], video.frames[0])
            )
            level = PROGRESS_CANDIDATES[int(round(np.clip(p, 0, 1) * 10))]
            out.append(Example(episode, chat + PROGRESS_CUE, images, answer=level))
    elif head == "completion":
        yes, no = backend.token_id(" yes"), backend.token_id(" no")
        for k, p in zip(points, at):
            chat, images = backend.image_chat(completion_parts(instruction, video.frames[k - 1]))
            out.append(
                Example(
                    episode, chat + _cue(COMPLETION_CUE, " yes"), images, read=(yes if p >= done_at else no,)
                )
            )
    elif head == "contrast":
        ids = (backend.token_id("1"), backend.token_id("2"))
        pairs = [
            (i, j)
            for i in range(len(points))
            for j in range(len(points))
            if i != j and abs(at[i] - at[j]) > 1e-3
        ]
        rng = rng or np.random.default_rng(0)
        if len(pairs) > max_pairs:
            pairs = [pairs[t] for t in sorted(rng.choice(len(pairs), max_pairs, replace=False))]
        for i, j in pairs:
            a, b = video.frames[points[i] - 1], video.frames[points[j] - 1]
            chat, images = backend.image_chat(contrast_parts(instruction, a, b))
            out.append(
                Example(
                    episode,
                    chat + _cue(CONTRAST_CUE, "1"),
                    images,
                    read=ids,
                    target=0 if at[i] > at[j] else 1,
                )
            )
    else:
        raise ValueError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
    return out
