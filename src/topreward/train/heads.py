"""The four trainable heads: how an episode becomes examples, and each example's loss (with gradients).

A head trains the answer the matching zero-shot method reads, and it asks the method itself for the
question: the prompt, the images or video prefix, and the request whose answer is read come from the
scorer (`TOPRewardScorer.requests_for`, `LRM*Scorer.query`), and the forward is the backend's own
(`HFBackend.answer_tensors`, the reference path's forward with autograd left on). So a trained model is
scored by that method unchanged, and a prompt style or answer cue cannot differ between the two.

* `topreward` -> method `topreward`: after each video prefix and the TOPReward prompt, the probability of
  " True" should equal the prefix's ground-truth progress p (soft target). Loss: binary cross-entropy
  between p and P(" True") — the full-vocabulary probability of the answer token, not renormalised —
  `-(p log P + (1 - p) log(1 - P))`, with log(1 - P) computed as log1p(-exp(log P)).
* `progress` -> `lrm-progress` (LRM Eq.3): the first frame as anchor, the current frame, the question;
  the target is the completion level nearest to the ground truth, " 0.0" .. " 1.0" after the cue
  "Progress:". Loss: cross-entropy of that candidate's tokens (SFT).
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

import numpy as np
import torch

from topreward.backends.base import ModelVideo, Request
from topreward.train import HEADS, METHOD_OF

__all__ = ["HEADS", "METHOD_OF", "Example", "answer_log_probs", "examples_for", "head_scorer", "loss"]


@dataclass
class Example:
    """One training example: the method's request, what precedes it, and what to learn there.

    Attributes:
        request: the scorer's request (its text follows the video prefix or the image prompt).
        video, before: a video whose first `request.prefix` frames follow the text `before`; or
        prompt, images: an image prompt (the model's chat turn with its image markers) and its images.
        target: the soft target (topreward) or the index of the answer token to learn (completion,
            contrast); the progress head learns the request's span.
    """

    episode: str
    request: Request
    video: ModelVideo | None = None
    before: str = ""
    prompt: str = ""
    images: list[np.ndarray] = field(default_factory=list)
    target: float = 0.0


def head_scorer(head: str, backend, **sampling):
    """The method that scores with `head`'s answer (`METHOD_OF`), on `backend`'s reference path."""
    from topreward.scorers.registry import load_scorer

    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
    return load_scorer(METHOD_OF[head], backend=backend, path="reference", **sampling)


def answer_log_probs(backend, ex: Example) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-probs of the request's next tokens, log-probs of its span's tokens), with gradients."""
    r = ex.request
    if ex.video is not None:
        inputs = backend.video_inputs(ex.video, r.prefix, ex.before, r.text)
    else:
        inputs = backend.image_inputs(ex.prompt, ex.images, r.text)
    return backend.answer_tensors(inputs, r.text, r)


def loss(head: str, backend, ex: Example) -> torch.Tensor:
    """The head's loss on one example (a scalar with gradients)."""
    nxt, span = answer_log_probs(backend, ex)
    if head == "topreward":
        log_p = nxt[0].clamp(max=-1e-6)  # log P(" True") < 0 keeps log(1 - P) finite
        p = torch.tensor(ex.target, dtype=log_p.dtype, device=log_p.device)
        return -(p * log_p + (1 - p) * torch.log1p(-torch.exp(log_p)))
    if head == "progress":
        return -span.sum()
    if head == "completion":
        return -nxt[int(ex.target)]
    if head == "contrast":
        return -(nxt[int(ex.target)] - torch.logsumexp(nxt, dim=0))
    raise ValueError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")


def examples_for(
    head: str,
    scorer,
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
    """A head's examples for one episode, asked of its method `scorer` (`head_scorer`); `truth` is the
    per-source-frame ground truth."""
    at = [float(truth[int(video.source_indices[k - 1])]) for k in points]
    out: list[Example] = []
    if head == "topreward":
        before = scorer.text_before_video()
        for r, p in zip(scorer.requests_for([instruction], points), at):
            out.append(Example(episode, r, video=video, before=before, target=p))
    elif head == "progress":
        for k, p in zip(points, at):
            query = scorer.query(video, instruction, k)
            level = int(round(np.clip(p, 0, 1) * 10))  # the candidate " 0.0" .. " 1.0" nearest the truth
            out.append(Example(episode, query.requests[level], prompt=query.prompt, images=query.images))
    elif head == "completion":
        for k, p in zip(points, at):
            query = scorer.query(video, instruction, k)
            out.append(
                Example(
                    episode,
                    query.requests[0],
                    prompt=query.prompt,
                    images=query.images,
                    target=0 if p >= done_at else 1,  # the answer token: yes (done) or no
                )
            )
    elif head == "contrast":
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
            query = scorer.query(video, instruction, points[i], points[j])
            target = 0 if at[i] > at[j] else 1  # the answer naming the image closer to completion
            out.append(
                Example(episode, query.requests[0], prompt=query.prompt, images=query.images, target=target)
            )
    else:
        raise ValueError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
    return out
