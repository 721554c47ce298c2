"""`sole`: SOLE-R1 (`Philip-MIT/SOLE-R1-8B`), a Qwen3-VL that reasons over a first | previous | current
composite image and writes the current progress in percent.

Its protocol as the inference code that ships with it runs it (roboreason 0.1.5.2, `sole.py` and
`core.generate`):
  1. Frames: `max_frames` (10) of the episode, `linspace(0, T - 1, n)` truncated to integers.
  2. At every frame after the first, one composite (`composite`): each view letterboxed into 384 x 384
     on black (`letterbox`: the longer side scaled to 384 with OpenCV's area interpolation, centred),
     laid out first | previous | current with 5-pixel black gaps (384 x 1162); with a wrist camera a
     second row below, after a 5-pixel gap (773 x 1162). Then resized to sides that are multiples of 28
     (qwen-vl-utils' `smart_resize`, PIL bicubic); the model's processor resizes it again, as vLLM's does.
  3. A system turn (`SYSTEM_PROMPT`), then one user turn: the image, then the question for the views
     given, with the task and the previous step's answer as written ("0" at the first step; empty when
     it could not be read, as theirs feeds back).
  4. Sampled as theirs (temperature 1, top-p 0.9, top-k 50, 200 new tokens), seeded here (theirs is not:
     `sample_seed` + the step's index).
  5. `<answer>N</answer>` read by their parser (`parse_answer`: the `%` dropped, clamped to -100..100);
     an answer that is not a whole number keeps the last value read (0 before any). Frame 0 is 0.
  Values are percent (their scale); progress = value / 100, clipped to [0, 1]; the success score is the
  last point's progress. Steps run one after another: each prompt holds the previous answer.

Two cameras come as roboreason takes them: each frame is the external view and the wrist view side by
side (`views="external+wrist"`), split at half the width. Differences from the 0.1.5.2 wheel: wrist-only
input crashes there (it reads the external row's width); here it is the wrist row alone, the layout
their code intends.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from topreward.backends.base import GENERATION, MULTI_IMAGE, Generation, ModelVideo
from topreward.config import option
from topreward.episode import Episode, validate_frames
from topreward.extras import optional
from topreward.sampling import SamplingConfig, qwen_smart_size, spread_indices
from topreward.scorers.base import MethodConfig, MethodOutput, Scorer
from topreward.scorers.registry import register

SYSTEM_PROMPT = (
    "You are an expert roboticist with the goal of predicting task progress percentages given frames from a "
    "video of a robot attempting to complete a task. You first think, in the form of an internal monologue, "
    "before providing your final answer. Your reasoning process MUST BE enclosed within <think> </think> tags "
    "and should include detailed reasoning. Your final answer MUST BE enclosed within <answer> </answer> tags "
    "and should be a integer (positive or negative) representing current task progress percentage. Example "
    "output format: <think>[detailed reasoning process]</think><answer>[current task progress]%</answer>"
)
_OPENING = "Here is an image containing multiple camera views of a robot attempting to complete a task. "
_LAYOUT = (
    "The views from the very first timestep are shown to the left. The views from the previous timestep are "
    "shown in the middle. The views from the current timestep are shown to the right. "
)
_ASK = (
    "The task description is: {task}. The task progress for the very first timestep is 0%. The task progress "
    "for the previous timestep is {previous}%. Predict the task progress for the current timestep."
)
QUESTIONS: dict[str, str] = {
    "external+wrist": _OPENING
    + "The views on the top are from an external camera. The views on the bottom are from the robot's wrist "
    "camera. " + _LAYOUT + _ASK,
    "external": _OPENING + _LAYOUT + _ASK,
    "wrist": _OPENING + "The views are from the robot's wrist camera. " + _LAYOUT + _ASK,
}
SIZE, GAP = 384, 5


def letterbox(image: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Their `resize_with_padding`: the longer side to `size` (OpenCV area interpolation, sides truncated
    to integers), centred on a black square."""
    cv2 = optional("cv2", "sole", "SOLE-R1's composite images")
    h, w = image.shape[:2]
    scale = size / max(h, w)
    new_w, new_h = int(w * scale), int(h * scale)
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
    out = np.zeros((size, size, 3), dtype=np.uint8)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    out[top : top + new_h, left : left + new_w] = resized
    return out


def composite(
    first: np.ndarray, previous: np.ndarray, current: np.ndarray, views: str = "external"
) -> np.ndarray:
    """Their composite of three frames: one row (first | previous | current), or with `views`
    "external+wrist" (each frame [external | wrist] side by side) the external row over the wrist row."""
    if views not in QUESTIONS:
        raise ValueError(f"views must be one of {sorted(QUESTIONS)}, got {views!r}")

    def row(frames: list[np.ndarray]) -> np.ndarray:
        gap = np.zeros((SIZE, GAP, 3), np.uint8)
        a, b, c = (letterbox(f) for f in frames)
        return np.hstack([a, gap, b, gap, c])

    frames = [first, previous, current]
    if views != "external+wrist":
        return row(frames)
    half = first.shape[1] // 2
    top, bottom = row([f[:, :half] for f in frames]), row([f[:, half:] for f in frames])
    return np.vstack([top, np.zeros((GAP, top.shape[1], 3), np.uint8), bottom])


def model_image(image: np.ndarray) -> np.ndarray:
    """The composite as their vLLM request carries it: sides to multiples of 28 (qwen-vl-utils' bounds)."""
    from PIL import Image

    h, w = qwen_smart_size(image.shape[0], image.shape[1], 28, 56 * 56, 16384 * 28 * 28)
    return np.array(Image.fromarray(image).resize((w, h)))


def parse_answer(text: str) -> str:
    """Their `get_answer_from_completion`: the text in `<answer>...</answer>` (or an unclosed `</answer`),
    stripped, `%` removed, clamped to -100..100 when it is a whole number; "" when there is no tag."""
    match = re.search(r"<answer>(.*?)</answer>", text, re.DOTALL) or re.search(
        r"<answer>(.*?)</answer", text, re.DOTALL
    )
    if not match:
        return ""
    answer = match.group(1).strip().replace("%", "")
    try:
        value = int(answer)
    except ValueError:
        return answer
    return "-100" if value < -100 else "100" if value > 100 else answer


@dataclass(frozen=True)
class SoleFrames:
    """Model-free and picklable: an episode -> the frames SOLE-R1's pipeline picks (at their own size)."""

    sampling: SamplingConfig

    def __call__(self, episode: Episode) -> ModelVideo:
        idx = spread_indices(episode.num_frames, self.sampling.max_frames)
        return ModelVideo(
            validate_frames(episode.frames(idx), what=f"frames of {episode.source}"), idx, episode.fps
        )


@dataclass
class SoleConfig(MethodConfig):
    views: str = option(
        "external",
        "external, wrist, or external+wrist (each frame the external and wrist views side by side)",
        choices=tuple(QUESTIONS),
    )
    temperature: float = option(1.0, "sampling temperature (theirs: 1.0; 0 = greedy)")
    top_p: float = option(0.9, "nucleus sampling (theirs: 0.9)")
    top_k: int = option(50, "top-k sampling (theirs: 50)")
    max_new_tokens: int = option(200, "generated tokens at most (theirs: 200)")
    sample_seed: int = option(0, "sampling seed of the first step (step i uses it + i; theirs is unseeded)")

    def __post_init__(self) -> None:
        super().__post_init__()
        # the sampling options are a `Generation`'s: its checks name the bad value
        Generation(self.max_new_tokens, temperature=self.temperature, top_p=self.top_p, top_k=self.top_k)


@register("sole")
class SoleScorer(Scorer):
    description = (
        "SOLE-R1: reasons over first | previous | current and writes progress % (Philip-MIT/SOLE-R1-8B)"
    )
    requires = frozenset({GENERATION, MULTI_IMAGE})
    value_name = "progress %"
    Config = SoleConfig
    #: the protocol's sampling: 10 frames, every one scored in turn
    recommended: ClassVar[dict[str, Any]] = {"max_frames": 10, "num_prefixes": None}
    camera_hint = ", or views='external+wrist' (--views external+wrist) for an external and a wrist camera"

    def setup(self) -> None:
        optional("cv2", "sole", "SOLE-R1's composite images")

    @property
    def preparer(self) -> SoleFrames:
        return SoleFrames(self.sampling)

    @classmethod
    def preparer_for(cls, backend_config, sampling, config) -> SoleFrames:
        return SoleFrames(sampling)

    def stream(self, instruction: str, **kwargs: Any):
        raise ValueError(
            "sole asks one question per frame after the previous answer; score() the frames so far"
        )

    def cameras(self) -> int:
        return 2 if self.config.views == "external+wrist" else 1

    def generation(self, step: int) -> Generation:
        cfg = self.config
        return Generation(
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            top_k=cfg.top_k,
            seed=cfg.sample_seed + step,
            system=SYSTEM_PROMPT,
        )

    def question(self, instruction: str, previous: str) -> str:
        return QUESTIONS[self.config.views].format(task=instruction, previous=previous)

    def compute(self, video: ModelVideo, instruction: str, points: list[int]) -> MethodOutput:
        frames, views = video.frames, self.config.views
        if views == "external+wrist" and frames.shape[2] % 2:
            raise ValueError(
                f"views='external+wrist' reads each frame as [external | wrist] side by side, but the frames are "
                f"{frames.shape[2]} pixels wide (odd); give the two views at equal widths"
            )
        answers, read, previous = [""], ["0"], "0"
        for step, (a, b) in enumerate(zip(points[:-1], points[1:])):
            image = model_image(composite(frames[0], frames[a - 1], frames[b - 1], views))
            answer = self.backend.chat([image, self.question(instruction, previous)], self.generation(step))
            previous = parse_answer(answer)
            answers.append(answer)
            read.append(previous)
        values, last = [], 0.0
        for text in read:  # a step whose answer is not a whole number keeps the last value read
            with contextlib.suppress(ValueError):
                last = float(int(text))
            values.append(last)
        values = np.asarray(values)
        progress = np.clip(values / 100.0, 0.0, 1.0)
        signals = {"answers": answers, "read": read}
        return MethodOutput(values, signals, progress=progress, success=float(progress[-1]))
