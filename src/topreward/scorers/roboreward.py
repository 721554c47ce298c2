"""`roboreward`: RoboReward (`teetone/RoboReward-4B` / `-8B`), a Qwen3-VL fine-tune that grades the end
state of a video on a 1-5 rubric.

Its protocol as the inference code that ships with it runs it (roboreason 0.1.5.2, `roboreward.py` and
`core.generate`; the checkpoint's own chat template):
  1. Frames: `max_frames` (10) of the episode, `linspace(0, T - 1, n)` truncated to integers (every
     frame when the episode is shorter); every prefix of them is scored.
  2. Pixels (`roboreward_pixels`): each frame through JPEG at quality 85 and back; resized as
     qwen-vl-utils 0.0.14 resizes a list of frames: first each frame to sides that are multiples of 64
     (PIL bicubic), then the video to multiples of 32 with at least 128 x 32 x 32 pixels (torchvision
     bicubic with antialias, on uint8).
  3. The video is told to the model as consecutive frames at 1 fps (`ModelVideo.clock`); a prefix of odd
     length is padded with its last frame (so a one-frame prefix is that frame twice), and the padding
     counts as a frame in the timestamps, as qwen-vl-utils counts it.
  4. One user turn: the video, then `ROBOREWARD_PROMPT` with the task; the generation prompt.
  5. `readout="generate"` (the authors'): greedy, up to 128 new tokens, read by their parser
     (`parse_score`: `ANSWER: d`, else the last standalone digit 1-5, else 1). One generation per prefix.
     `readout="expected"` (ours): after a teacher-forced `ANSWER: `, the next-token probabilities of the
     digits 1..5, renormalised, give the expected score sum d P(d); exact log-probs on the shared video
     cache, one packed pass for every prefix. The two agree when the model puts its mass on one digit
     right after `ANSWER: ` (a model that writes its reasoning first reads differently); `expected` is
     smooth where `generate` is a step.
  6. progress = (score - 1) / 4 in [0, 1] (roboreason reports percent, x 100); the success score is the
     last point's progress.

Colours: roboreason converts the frames it is given with OpenCV's BGR-to-RGB, but they are already RGB,
so the model sees red and blue swapped. The model card feeds RGB; so do we (`swap_red_blue=True`
reproduces roboreason's input).
"""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from topreward.backends.base import GENERATION, LOG_PROBS, Generation, ModelVideo, Request
from topreward.config import option
from topreward.episode import Episode, validate_frames
from topreward.sampling import SamplingConfig, qwen_smart_size, spread_indices
from topreward.scorers.base import CacheScorer, MethodConfig, MethodOutput
from topreward.scorers.registry import register

logger = logging.getLogger(__name__)

ROBOREWARD_PROMPT = (
    "Given the task, assign a discrete progress score reward (1,2,3,4,5) for the robot in the video "
    "in the format: ANSWER: <score>\n"
    "Rubric for end-of-episode progress (judge only the final state without time limits):\n"
    "1 - No Success: Final state shows no goal-relevant change for the command.\n"
    "2 - Minimal Progress: Final state shows a small but insufficient change toward the goal.\n"
    "3 - Partial Completion: The final state shows good progress toward the goal but violates more than one "
    "requirement or a major requirement.\n"
    "4 - Near Completion: Final state is correct in region and intent but misses a single minor requirement.\n"
    "5 - Perfect Completion: Final state satisfies all requirements.\n\n"
    "Task: {instruction}"
)
ANSWER_CUE = "ANSWER: "
DIGITS: tuple[str, ...] = ("1", "2", "3", "4", "5")
#: qwen-vl-utils 0.0.14's limits for a video given as a list of frames
_VIDEO_MIN_PIXELS = 128 * 32 * 32
_VIDEO_MAX_PIXELS = 768 * 32 * 32
_VIDEO_TOTAL_PIXELS = 128000 * 32 * 32 * 0.9


def parse_score(text: str) -> tuple[float, str]:
    """Their parser: (score, how it was read): "answer" (`ANSWER: d`), "last digit" (the last standalone
    1-5), or "default" (nothing usable: 1, their failure value)."""
    match = re.search(r"ANSWER\s*:\s*([1-5])", text, re.IGNORECASE)
    if match:
        return float(match.group(1)), "answer"
    digits = re.findall(r"\b([1-5])\b", text)
    if digits:
        return float(digits[-1]), "last digit"
    return 1.0, "default"


def roboreward_pixels(frames: np.ndarray) -> np.ndarray:
    """Frames as RoboReward's pipeline hands them to the processor (uint8, one size for every prefix of
    up to 300 frames): JPEG quality 85 and back, then qwen-vl-utils' per-frame and per-video resizes."""
    import torch
    from PIL import Image
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.functional import resize

    images = []
    for frame in frames:
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, "JPEG", quality=85)
        image = Image.open(buffer).convert("RGB")
        # their frame factor is the image patch size passed where a patch size is expected: 2 x 32 = 64
        h, w = qwen_smart_size(image.height, image.width, 64, 4 * 64 * 64, 16384 * 64 * 64)
        images.append(np.asarray(image.resize((w, h))))
    video = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
    padded = len(images) + len(images) % 2
    budget = max(min(_VIDEO_MAX_PIXELS, _VIDEO_TOTAL_PIXELS / padded * 2), int(_VIDEO_MIN_PIXELS * 1.05))
    h, w = qwen_smart_size(video.shape[2], video.shape[3], 32, _VIDEO_MIN_PIXELS, budget)
    video = resize(video, [h, w], interpolation=InterpolationMode.BICUBIC, antialias=True)
    return video.permute(0, 2, 3, 1).contiguous().numpy()


@dataclass(frozen=True)
class RoboRewardPreparer:
    """Model-free and picklable: an episode -> RoboReward's frames (its sampling, its pixels, 1 fps)."""

    sampling: SamplingConfig
    swap_red_blue: bool = False

    def __call__(self, episode: Episode) -> ModelVideo:
        if self.sampling.size is not None:
            raise ValueError("roboreward sizes frames as qwen-vl-utils does for its pipeline; drop size=")
        if self.sampling.max_frames > 300:
            raise ValueError(
                f"max_frames={self.sampling.max_frames}: above 300 frames qwen-vl-utils shrinks frames with "
                "the count, so prefixes would differ in size; use at most 300 (the protocol uses 10)"
            )
        idx = spread_indices(episode.num_frames, self.sampling.max_frames)
        frames = validate_frames(episode.frames(idx), what=f"frames of {episode.source}")
        if self.swap_red_blue:
            frames = np.ascontiguousarray(frames[..., ::-1])
        return ModelVideo(roboreward_pixels(frames), idx, episode.fps, clock=1.0)


@dataclass
class RoboRewardConfig(MethodConfig):
    readout: str = option(
        "generate",
        "generate (greedy answer read by the authors' parser, one generation per prefix) or expected "
        "(sum d P(d) over 1..5 after a teacher-forced 'ANSWER: ', on the shared video cache)",
        choices=("generate", "expected"),
    )
    max_new_tokens: int = option(128, "readout generate: cap on generated tokens (theirs: 128)")
    swap_red_blue: bool = option(
        False, "swap red and blue before the model, as roboreason does by mistake (the model card feeds RGB)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")


@register("roboreward")
class RoboRewardScorer(CacheScorer):
    description = (
        "RoboReward: a 1-5 end-state rubric score per prefix, generated or expected (teetone/RoboReward)"
    )
    requires = frozenset({LOG_PROBS, GENERATION})
    value_name = "score (1-5)"
    Config = RoboRewardConfig
    #: the protocol's sampling: 10 frames, every prefix
    recommended: ClassVar[dict[str, Any]] = {"max_frames": 10, "num_prefixes": None}

    def setup(self) -> None:
        if getattr(self.backend, "name", "") != "transformers":
            raise ValueError(
                "roboreward gives the model a video on its own 1 fps timeline, which only backend 'transformers' "
                f"does (a served model gets frames as images); not {getattr(self.backend, 'name', '?')!r}"
            )
        self.digit_ids = tuple(self.backend.token_id(d) for d in DIGITS)
        tokenize = getattr(self.backend, "tokenize", None)
        if tokenize is not None and tokenize(ANSWER_CUE + "3") != tokenize(ANSWER_CUE) + [self.digit_ids[2]]:
            logger.warning(
                "model %s's tokenizer joins the space of %r to the digit after it; readout 'expected' reads "
                "the digit after the cue's own tokens (exact on Qwen's tokenizer, which splits digits)",
                getattr(self.backend, "model_id", "?"),
                ANSWER_CUE,
            )

    @property
    def preparer(self) -> RoboRewardPreparer:
        return RoboRewardPreparer(self.sampling, self.config.swap_red_blue)

    @classmethod
    def preparer_for(cls, backend_config, sampling, config) -> RoboRewardPreparer:
        return RoboRewardPreparer(sampling, config.swap_red_blue)

    def stream(self, instruction: str, **kwargs: Any):
        raise ValueError(
            "roboreward resizes and times frames as its own pipeline does, which a stream session does not "
            "yet; score prefixes with score() (readout 'expected' shares one video cache across them)"
        )

    # ---- readout "expected": requests on the shared video cache -------------------------------------
    def _turn(self, instruction: str) -> tuple[str, str]:
        content = [
            {"type": "video"},
            {"type": "text", "text": ROBOREWARD_PROMPT.format(instruction=instruction)},
        ]
        return self.backend.chat_split(content)

    def text_before_video(self) -> str:
        return self._turn("x")[0]

    def requests_for(self, instructions: list[str], points: list[int]) -> list[Request]:
        after = [self._turn(text)[1] + ANSWER_CUE for text in instructions]  # one chat template per text
        return [Request(k, text, self.digit_ids) for text in after for k in points]

    def outputs_from(self, answers, instructions: list[str], points: list[int]) -> list[MethodOutput]:
        outputs = []
        for i in range(len(instructions)):
            lp = np.stack([a.next for a in answers[i * len(points) : (i + 1) * len(points)]])
            mass = np.exp(lp).sum(axis=1)
            probs = np.exp(lp) / mass[:, None]
            score = probs @ np.arange(1, 6)
            signals = {"digit_log_probs": lp, "digit_probs": probs, "digit_mass": mass}
            outputs.append(self._output(score, signals))
        return outputs

    # ---- readout "generate": the authors' protocol, one greedy answer per prefix ---------------------------
    def compute_many(
        self, video: ModelVideo, instructions: list[str], points: list[int]
    ) -> list[MethodOutput]:
        if self.config.readout == "expected":
            return super().compute_many(video, instructions, points)
        generation = Generation(max_new_tokens=self.config.max_new_tokens)
        outputs = []
        for text in instructions:
            prompt = ROBOREWARD_PROMPT.format(instruction=text)
            answers = [self.backend.chat([_prefix(video, k), prompt], generation) for k in points]
            read = [parse_score(a) for a in answers]
            score = np.array([s for s, _ in read])
            outputs.append(self._output(score, {"answers": answers, "read_as": [how for _, how in read]}))
        return outputs

    def _output(self, score: np.ndarray, signals: dict[str, Any]) -> MethodOutput:
        progress = (score - 1.0) / 4.0
        return MethodOutput(values=score, signals=signals, progress=progress, success=float(progress[-1]))


def _prefix(video: ModelVideo, k: int) -> ModelVideo:
    return ModelVideo(video.frames[:k], video.source_indices[:k], video.source_fps, video.rate, video.clock)
