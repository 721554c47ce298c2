"""`robometer`: the released Robometer reward model, run by its authors' protocol.

Recipe (github robometer/robometer at c7f38e2: `scripts/example_inference_local.py`, the collator
`robometer/data/collators/rbm_heads.py`, the model `robometer/models/rbm.py`):
  1. Frames at `fps` (1 by default, their local example's): `n = int(round(total * fps / source_fps))`,
     clamped to [1, total] and to `max_frames` (512), indices `linspace(0, total - 1, n)` truncated to
     integers (every frame when n = total). A clip or frame folder given at 1 fps is scored frame by frame.
  2. Every frame is resized as qwen-vl-utils does before their processor call (`qwen_smart_size`: sides rounded
     to multiples of 32, half to even; PIL bicubic).
  3. One user turn: their progress prompt with the task, then each frame and a `<|prog_token|>`
     (`RobometerBackend.progress_text`); one forward; the last hidden state at each `<|prog_token|>` ->
     progress (softmax over the bins . linspace(0, 1, bins)) and success (sigmoid).
Because the prompt comes first and attention is causal, frame k's values are those of the k-frame
prefix: `path="fast"` reads every frame from one forward, `path="reference"` runs one forward per
evaluation point (the way per-prefix wrappers run it); a test holds them equal.

`frame_steps=K` runs the other protocol of their code, the eval server's "frame steps"
(`robometer/evals/eval_server.py`, K = 4 there), which LeRobot's `compute_rabc_weights` also runs on every
frame of a dataset: each evaluation point t gets a forward of its own over K frames,
`np.linspace(0, t - 1, K, dtype=int)` (truncated; LeRobot 0.6.1 rounds instead), and keeps the last frame's
values. It costs one K-frame forward per point, with nothing shared, and it streams the same way (one
forward per query).

Values are progress already in [0, 1] (no min-max); the success score is the success probability at the
last evaluation point; `signals["head_success"]` holds it per point. `prefer(a, b, task)` is the
preference head: P(trajectory a makes more progress than b).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from topreward.backends.base import REWARD_HEADS, ModelVideo
from topreward.config import option
from topreward.episode import Episode, as_episode, validate_frames
from topreward.sampling import SamplingConfig, qwen_smart_size, resize_frames
from topreward.scorers.base import MethodConfig, MethodOutput, Scorer
from topreward.scorers.registry import register
from topreward.task_text import check_instruction, reserved_tokens

#: streams whose KV caches a scorer keeps (the least recently queried goes first)
ONLINE_CACHES = 64
#: their qwen-vl-utils resize works on a 32-pixel grid (Qwen3-VL's 16-pixel patches, merged 2 x 2)
ROBOMETER_FACTOR = 32


def robometer_indices(num_frames: int, source_fps: float, fps: float, max_frames: int) -> np.ndarray:
    """Their `extract_frames` rule: round(total * fps / source_fps) frames, truncated linspace."""
    wanted = int(round(num_frames * fps / source_fps))
    wanted = min(max(1, wanted), num_frames, max_frames)
    if wanted == num_frames:
        return np.arange(num_frames, dtype=np.int64)
    return np.linspace(0, num_frames - 1, wanted).astype(np.int64)


@dataclass(frozen=True)
class RobometerPreparer:
    """Model-free and picklable: an episode -> Robometer's frames (its sampling, its resize)."""

    sampling: SamplingConfig

    def __call__(self, episode: Episode) -> ModelVideo:
        cfg = self.sampling
        if cfg.size is not None:
            raise ValueError(
                "robometer sizes frames as its authors' collator does (sides rounded to 32); drop size="
            )
        idx = robometer_indices(episode.num_frames, episode.fps, cfg.fps, cfg.max_frames)
        frames = validate_frames(episode.frames(idx), what=f"frames of {episode.source}")
        hw = qwen_smart_size(frames.shape[1], frames.shape[2], ROBOMETER_FACTOR, max_pixels=cfg.max_pixels)
        return ModelVideo(resize_frames(frames, hw), idx, episode.fps)


def frame_step_indices(point: int, steps: int) -> np.ndarray:
    """Their eval server's frame steps: `steps` indices spread over the first `point` frames, first and last
    included, by their expression `np.linspace(0, point - 1, steps, dtype=int)` (truncated toward zero;
    LeRobot 0.6.1's `_build_subsample_indices` rounds instead, so a few points see other frames)."""
    return np.linspace(0, point - 1, steps, dtype=int).astype(np.int64)


@dataclass
class RobometerConfig(MethodConfig):
    """Robometer's options beyond the common ones: which of its authors' protocols reads the frames."""

    frame_steps: int = option(
        0,
        "0: one forward reads every frame (their local example); K: each evaluation point t its own forward "
        "over K frames spread over [0, t], the last one's values (their eval server's frame steps, K=4 there)",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.frame_steps < 0 or self.frame_steps == 1:
            raise ValueError(
                f"frame_steps must be 0 (every frame in one forward) or at least 2 (their eval server uses "
                f"4; 1 would show only the first frame), got {self.frame_steps}"
            )


@register("robometer")
class RobometerScorer(Scorer):
    description = (
        "Robometer's trained heads: per-frame progress and success in one forward (robometer/Robometer-4B)"
    )
    requires = frozenset({REWARD_HEADS})
    value_name = "progress"
    Config = RobometerConfig
    #: their local example's sampling (every frame at 1 fps, up to 512) and qwen-vl-utils' pixel cap
    recommended: ClassVar[dict[str, Any]] = {
        "fps": 1.0,
        "max_frames": 512,
        "num_prefixes": None,
        "max_pixels": 16384 * 32 * 32,
    }

    def load_backend(self):
        from topreward.backends.robometer import RobometerBackend

        return RobometerBackend.from_config(self.backend_config)

    def setup(self) -> None:
        self._online: dict = {}  # streams' caches by (instruction, first frame) (`compute_online`)
        factor = getattr(self.backend, "patch_factor", ROBOMETER_FACTOR)
        if factor != ROBOMETER_FACTOR:
            raise ValueError(
                f"the base model's processor works on a {factor}-pixel grid; Robometer's resize assumes "
                f"{ROBOMETER_FACTOR} (Qwen3-VL)"
            )

    @property
    def preparer(self) -> RobometerPreparer:
        return RobometerPreparer(self.sampling)

    @classmethod
    def preparer_for(cls, backend_config, sampling, config) -> RobometerPreparer:
        return RobometerPreparer(sampling)

    def frame_size_for(self, height: int, width: int) -> tuple[int, int]:
        """A stream's frames are sized as `score` sizes them (qwen-vl-utils' rounding to 32)."""
        return qwen_smart_size(height, width, ROBOMETER_FACTOR, max_pixels=self.sampling.max_pixels)

    def compute_online(
        self, video: ModelVideo, instruction: str, point: int, previous: int | None
    ) -> MethodOutput:
        """A stream's query: the frames pushed since the last query run on top of the session's KV cache
        (`RobometerCache`, found again by the instruction and the first frame). A cache whose frames are no
        longer the session's (a stream thins its frames when over `max_frames`) is built anew."""
        from topreward.backends.robometer import RobometerCache

        if self.config.frame_steps:
            return self.compute(video, instruction, [point])
        frames = video.frames[:point]
        key = (instruction, hashlib.sha1(np.ascontiguousarray(frames[0]).tobytes()).hexdigest())
        cache = self._online.pop(key, None)
        held = 0 if cache is None else cache.num_frames
        if cache is None or held > point or not np.array_equal(cache.frames[-1], frames[held - 1]):
            cache, held = RobometerCache(self.backend, instruction), 0
        self._online[key] = cache  # most recently used last
        while len(self._online) > ONLINE_CACHES:
            self._online.pop(next(iter(self._online)))
        if point > held:
            cache.extend(frames[held:])
        progress, success = cache.progress[-1:], cache.success[-1:]
        return MethodOutput(
            progress, {"head_success": success}, progress=progress, success=float(success[-1])
        )

    def compute(self, video: ModelVideo, instruction: str, points: list[int]) -> MethodOutput:
        steps = self.config.frame_steps
        if steps or self.backend_config.path == "reference":  # one forward per point, its last frame read
            shown = [frame_step_indices(k, steps) if steps else np.arange(k) for k in points]
            reads = [self.backend.frame_values(video.frames[i], instruction) for i in shown]
            progress = np.array([r.progress[-1] for r in reads])
            success = np.array([r.success[-1] for r in reads])
        else:  # one forward: frame k's values are the k-frame prefix's
            read = self.backend.frame_values(video.frames[: points[-1]], instruction)
            at = np.asarray(points) - 1
            progress, success = read.progress[at], read.success[at]
        return MethodOutput(
            values=progress,
            progress=progress,
            success=float(success[-1]),
            signals={"head_success": success},
        )

    def prefer(self, video_a: Any, video_b: Any, instruction: str, *, fps: float | None = None) -> float:
        """P(trajectory `video_a` makes more progress on `instruction` than `video_b`): the preference
        head over their prompt (A, `<|split_token|>`, B, `<|pref_token|>`). Inputs as `score`'s."""
        a, b = as_episode(video_a, instruction, fps), as_episode(video_b, instruction, fps)
        text = check_instruction(a, instruction, reserved_tokens(self.backend))
        # each trajectory keeps its own frame size: their collator resizes every image on its own
        return self.backend.preference(self.prepare(a).frames, self.prepare(b).frames, text)
