"""GVL: the VLM writes a completion percentage for every frame, shown shuffled (Ma et al., 2024).

"Vision Language Models are In-Context Value Learners" (Ma et al., ICLR 2025), zero-shot, with the
prompt and answer format of OpenGVL's public code (budzianowski/opengvl, `configs/prompts/default.yaml`,
`configs/prompt_phrases/default.yaml`, `opengvl/clients/base.py`), the baseline TOPReward is measured
against. Recipe, for one episode whose evaluation points are K sampled frames:

  1. Shuffle the K frames with a seed (`shuffle_seed`, mixed with a hash of the episode's first frame so each
     episode gets its own order, reproducibly).
  2. One user turn: OpenGVL's instruction ("You are an expert roboticist tasked to predict task
     completion percentages ... for the task of {instruction} ..."), then "Initial robot scene:" with the
     episode's first frame and "In the initial robot scene, the task completion percentage is 0%." (the
     0 % anchor), the request ("Now, for the task of {instruction}, output the task completion
     percentage for the following frames that are presented in random order. For each frame, format your
     response as follow: Frame {i}: Task Completion Percentages:{}%" and its two reminders), then
     "Frame 1:" .. "Frame K:" each with its image.
  3. Read the answer (`topreward.scorers.answers.parse_percentages`): JSON first, then OpenGVL's
     "Frame i: ...p%" lines by frame number, then exactly K percentages in order. Unshuffle: value of
     frame j = its percentage / 100; progress = that value (absolute, no min-max).
  4. A wrong count, a value outside 0..100 or an unreadable answer is a recorded failure of the episode:
     values and progress are NaN, the signal `failure` says why and `answer` keeps the text. Bench then
     counts its VOC as 0, OpenGVL's convention for an episode whose prediction failed
     (`opengvl/utils/inference.py`); a constant prediction also gets VOC 0 there, and here (`metrics.voc`).

Differences from OpenGVL, on purpose: the anchor is the episode's first frame (OpenGVL shows the first
*selected* frame, which excludes frame 0 when it subsamples); greedy decoding by default (its runs used
temperature 1; `temperature` sets it); fractional percentages are read as written (its regex mapper
rescales fractional answers to sum to 100, which would bend a progress curve).

Cost: one generation per episode with K + 1 images (about 24 answer tokens per frame).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from topreward.backends.base import GENERATION, MULTI_IMAGE, Generation, ModelVideo
from topreward.config import option
from topreward.scorers.answers import AnswerError, parse_percentages
from topreward.scorers.base import MethodConfig, MethodOutput, Scorer
from topreward.scorers.registry import register

__all__ = ["GVLConfig", "GVLScorer", "gvl_parts"]

INSTRUCTION = (
    "You are an expert roboticist tasked to predict task completion percentages for frames of a robot for "
    "the task of {instruction}. The task completion percentages are between 0 and 100, where 100 "
    "corresponds to full task completion. The frames may be in random order; reason about each frame "
    "independently when estimating completion.\n"
)
REQUEST = (
    "Now, for the task of {instruction}, output the task completion percentage for the following frames "
    "that are presented in random order. For each frame, format your response as follow: Frame {{i}}: Task "
    "Completion Percentages:{{}}%",
    "Be rigorous and precise; percentage reflects task completion.",
    "Remember: frames are in random order.",
)


@dataclass
class GVLConfig(MethodConfig):
    """Options of the GVL method."""

    shuffle_seed: int = option(
        0, "shuffle seed (mixed with the episode's first frame: each episode its own order)"
    )
    temperature: float = option(
        0.0, "0 = greedy, deterministic (OpenGVL's runs used 1.0; seeded by shuffle_seed)"
    )
    tokens_per_frame: int = option(24, "answer budget per frame (max new tokens = this x K + 64)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.tokens_per_frame < 1:
            raise ValueError(f"tokens_per_frame must be >= 1, got {self.tokens_per_frame}")
        if not (0 <= self.temperature < float("inf")):
            raise ValueError(f"temperature must be a finite number >= 0, got {self.temperature}")


def gvl_parts(instruction: str, anchor: np.ndarray, frames: list[np.ndarray]) -> list:
    """OpenGVL's zero-shot prompt as chat parts: text, the 0 % anchor image, then "Frame i:" + image."""
    parts: list = [
        INSTRUCTION.format(instruction=instruction),
        "Initial robot scene:",
        anchor,
        "In the initial robot scene, the task completion percentage is 0%.",
        *[line.format(instruction=instruction) for line in REQUEST],
    ]
    for i, frame in enumerate(frames, start=1):
        parts += [f"Frame {i}:", frame]
    return parts


def shuffle_order(video: ModelVideo, n: int, seed: int) -> np.ndarray:
    """The presentation order of n frames: seeded, and different per episode (its first frame's bytes)."""
    first = zlib.crc32(np.ascontiguousarray(video.frames[0]).tobytes())
    return np.random.default_rng([seed, first, n]).permutation(n)


@register("gvl")
class GVLScorer(Scorer):
    """Completion percentages written by the model for shuffled frames, unshuffled (OpenGVL protocol)."""

    description = "GVL: the VLM writes a completion % for each shuffled frame (Ma et al. 2024, OpenGVL)"
    Config = GVLConfig
    requires = frozenset({GENERATION, MULTI_IMAGE})
    value_name = "predicted completion"

    def compute(self, video: ModelVideo, instruction: str, points: list[int]) -> MethodOutput:
        cfg = self.config
        order = shuffle_order(video, len(points), cfg.shuffle_seed)
        shown = [video.frames[points[i] - 1] for i in order]
        generation = Generation(
            max_new_tokens=cfg.tokens_per_frame * len(points) + 64,
            temperature=cfg.temperature,
            seed=cfg.shuffle_seed,
        )
        answer = self.backend.chat(gvl_parts(instruction, video.frames[0], shown), generation)
        values = np.full(len(points), np.nan)
        failure = None
        try:
            percentages = parse_percentages(answer, len(points))
            values[order] = np.asarray(percentages) / 100.0  # frame shown j is point order[j]
        except AnswerError as e:
            failure = str(e)
        signals = {
            "completion": values,
            "shuffle_order": order.tolist(),
            "answer": answer,
            "failure": failure,
        }
        return MethodOutput(values, signals, progress=values)
