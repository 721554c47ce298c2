"""The `Scorer` contract: what every scoring method shares, and `score()` written once.

A method is a `Scorer` subclass with
  * `Config`: a dataclass of its own options (subclass of `MethodConfig`, which holds the options every
    method has: how raw values become progress, success scores and dense rewards);
  * `description` (one line) and `requires` (backend capabilities, `topreward.backends.base`);
  * `compute(video, instruction, points) -> MethodOutput`: per evaluation point raw values (and, if the
    method has them, progress already in [0, 1]) plus method-specific `signals` — or `compute_many`, the
    same for several instructions at once, when they can share the video's work (one video cache).
`Scorer.score()` does the rest: `prepare` (sampling and resizing, model-free and picklable), the method's
computation, then the common result (progress, per-frame progress, success score, dense rewards).
A scorer also answers the stream (`topreward.stream.OnlineMethod`; `CacheScorer`: `CacheMethod`) and
describes itself for provenance (`describe()`). Where the model runs is `topreward.backends.config`; how
flat options become configs, `topreward.scorers.registry`; task-text rules, `topreward.task_text`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np

from topreward._version import __version__
from topreward.backends.base import LOG_PROBS, ModelVideo, require, scoring_mode
from topreward.backends.config import BackendConfig
from topreward.config import check_choices, check_types, option
from topreward.episode import Episode, as_episode
from topreward.provenance import describe_episode, provenance
from topreward.result import ScoreResult
from topreward.rewards import dense_rewards, frame_progress, minmax_progress, success_score
from topreward.sampling import FramePreparer, SamplingConfig, frame_size, prefix_lengths
from topreward.task_text import check_instruction, reserved_tokens

logger = logging.getLogger(__name__)


@dataclass
class MethodConfig:
    """Options every method has: from raw values to progress, success score and dense rewards."""

    eps: float = option(1e-6, "epsilon in the min-max normalisation (Eq.2)")
    success_window: int = option(3, "last evaluation points averaged into the success score (§5.2)")
    reward_scale: float = option(1.0, "alpha in the dense reward (Eq.3)")
    reward_max: float = option(1.0, "delta_max, the cap of the dense reward (Eq.3)")

    def __post_init__(self) -> None:
        check_types(self)  # every method's fields: the Python API passes values unconverted
        check_choices(self)  # every method's `choices=` fields, e.g. prompt_style
        if self.success_window < 1:
            raise ValueError(f"success_window must be >= 1, got {self.success_window}")
        for name in ("eps", "reward_scale", "reward_max"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if self.eps < 0:
            raise ValueError(f"eps must be >= 0, got {self.eps}")


@dataclass
class MethodOutput:
    """What a method computes for one episode at its evaluation points (prefix lengths).

    Attributes:
        values: raw value per evaluation point (higher = more progress); min-max normalised into progress
            unless `progress` is given.
        signals: method-specific arrays and values, saved beside the common result (e.g. `log_p_true`).
        progress: progress in [0, 1] when the method has it without normalisation (e.g. an absolute head).
        success: success score when it is not the mean of the last `success_window` values.
    """

    values: np.ndarray
    signals: dict[str, Any] = field(default_factory=dict)
    progress: np.ndarray | None = None
    success: float | None = None


class Scorer:
    """Base of every method: `scorer.score(video, instruction) -> ScoreResult`."""

    name: ClassVar[str] = "?"
    description: ClassVar[str] = ""
    requires: ClassVar[frozenset[str]] = frozenset({LOG_PROBS})
    value_name: ClassVar[str] = "value"
    Config: ClassVar[type] = MethodConfig
    #: what else to do with several cameras, said when an episode holds more than the method takes
    camera_hint: ClassVar[str] = ""
    #: options that replace the general defaults when not given (e.g. a trained model's own sampling)
    recommended: ClassVar[dict[str, Any]] = {}

    def __init__(
        self,
        config: MethodConfig,
        *,
        backend_config: BackendConfig | None = None,
        sampling: SamplingConfig | None = None,
        backend: Any = None,
    ) -> None:
        self.config = config
        self.backend_config = backend_config or BackendConfig()
        self.sampling = sampling or SamplingConfig()
        self.backend = backend if backend is not None else self.load_backend()
        require(self.backend, self.requires, self.name)
        self.setup()

    def load_backend(self):
        """The backend `backend_config` describes; a method whose model is not a causal VLM (a trained
        reward model's own architecture) loads its own."""
        return self.backend_config.load()

    def setup(self) -> None:
        """Per-method checks and precomputation once the backend is there (token ids, prompts)."""

    # ---- the pieces ---------------------------------------------------------------------------------
    @property
    def preparer(self) -> FramePreparer:
        """The model-free, picklable frame preparation of this scorer (sampling and resizing)."""
        return FramePreparer(self.sampling, int(self.backend.patch_factor))

    @classmethod
    def preparer_for(cls, backend_config: BackendConfig, sampling: SamplingConfig, config: MethodConfig):
        """The same preparation built from configs alone, without loading the model (e.g. on a Ray driver)."""
        return FramePreparer(sampling, backend_config.patch_factor())

    def prepare(self, episode: Episode) -> ModelVideo:
        return self.preparer(episode)

    def cameras(self) -> int:
        """How many cameras the method takes side by side in one frame (`topreward.datasets.cameras`)."""
        return 1

    def frame_size_for(self, height: int, width: int) -> tuple[int, int]:
        """The size frames of `height` x `width` are shown at (a stream's first frame decides it)."""
        cfg = self.sampling
        return frame_size(height, width, int(self.backend.patch_factor), cfg.max_pixels, cfg.size)

    def video_cache(self, video: ModelVideo, before: str):
        """The backend's cache over `video`, on the path and batch size of this scorer's options."""
        cfg = self.backend_config
        return self.backend.video_cache(video, before, path=cfg.path, batch_size=cfg.batch_size)

    def image_log_probs(self, prompt: str, images: list, requests: list, resize: bool = False):
        """The backend's image-prompt answers, on the path and batch size of this scorer's options (images
        as given, or with `resize` at the processor's own resizing)."""
        cfg = self.backend_config
        kwargs = {"resize": True} if resize else {}  # remote backends take images as given
        return self.backend.image_log_probs(
            prompt, images, requests, path=cfg.path, batch_size=cfg.batch_size, **kwargs
        )

    def evaluation_points(self, video: ModelVideo) -> list[int]:
        """Prefix lengths (in sampled frames) at which the method gives a value."""
        return prefix_lengths(video.num_frames, self.sampling.num_prefixes)

    def compute(self, video: ModelVideo, instruction: str, points: list[int]) -> MethodOutput:
        """The method's values at `points` for one instruction. A method overrides this or `compute_many`."""
        if type(self).compute_many is Scorer.compute_many:
            raise NotImplementedError(f"{type(self).__name__} must implement compute or compute_many")
        return self.compute_many(video, [instruction], points)[0]

    def compute_many(
        self, video: ModelVideo, instructions: list[str], points: list[int]
    ) -> list[MethodOutput]:
        """One output per instruction; methods that can share the video's work across them override this."""
        return [self.compute(video, text, points) for text in instructions]

    def stream(self, instruction: str, *, source_fps: float, every: int = 1, max_frames: int = 256):
        """An online session: push frames as they come, score the newest prefix (`topreward.stream`)."""
        from topreward.stream import StreamSession

        return StreamSession(self, instruction, source_fps=source_fps, every=every, max_frames=max_frames)

    def compute_online(
        self, video: ModelVideo, instruction: str, point: int, previous: int | None
    ) -> MethodOutput:
        """A stream's query for a method without a video cache: its value at `point` (the newest frame);
        `previous` is the prefix length of the previous query (None at the first)."""
        return self.compute(video, instruction, [point])

    def options(self) -> dict[str, Any]:
        """All options, flat (backend, sampling, method): the `config` of every result."""
        return {**asdict(self.backend_config), **asdict(self.sampling), **asdict(self.config)}

    def describe(self) -> dict[str, Any]:
        """What results are computed with (`topreward.provenance`): the method, every option, and the model
        as the backend describes it (with the Hub commit transformers loaded, when it says)."""
        model = dict(self.backend.describe())
        commit = getattr(getattr(getattr(self.backend, "model", None), "config", None), "_commit_hash", None)
        if isinstance(commit, str):
            model["commit"] = commit
        return {"method": self.name, "config": self.options(), "model": model}

    # ---- score() once for every method ----------------------------------------------------------
    def score(self, video: Any, instruction: str | None = None, *, fps: float | None = None) -> ScoreResult:
        """Score one episode.

        Args:
            video: an `Episode`, a video file, a folder of frames, or a uint8 (T, H, W, 3) array.
            instruction: the task text (default: the episode's own).
            fps: frame rate of an array or frame folder (files carry their own).
        """
        episode = as_episode(video, instruction, fps)
        check_instruction(episode, reserved=reserved_tokens(self.backend))
        t0 = time.perf_counter()
        mv = self.prepare(episode)
        return self.score_prepared(episode, mv, decode_s=time.perf_counter() - t0)

    def score_prepared(self, episode: Episode, mv: ModelVideo, decode_s: float = 0.0) -> ScoreResult:
        """Score frames already prepared by `prepare` (lets decoding run elsewhere, e.g. Ray CPU tasks)."""
        return self.score_instructions(episode, [episode.instruction], mv, decode_s)[0]

    def score_instructions(
        self, episode: Episode, instructions: list[str], mv: ModelVideo | None = None, decode_s: float = 0.0
    ) -> list[ScoreResult]:
        """The same video under several instructions (e.g. the mismatched-instruction control)."""
        if mv is None:
            t0 = time.perf_counter()
            mv = self.prepare(episode)
            decode_s = time.perf_counter() - t0
        cameras = episode.annotations.get("cameras") or []
        if len(cameras) > self.cameras():
            raise ValueError(
                f"episode {episode.episode_id or episode.source} holds {len(cameras)} cameras side by side "
                f"({', '.join(cameras)}), but method {self.name} takes {self.cameras()}; pass one camera "
                f"(--camera NAME){self.camera_hint}"
            )
        reserved = reserved_tokens(self.backend)
        texts = [check_instruction(episode, text, reserved) for text in instructions]
        points = self.evaluation_points(mv)
        t1 = time.perf_counter()
        with scoring_mode():
            outputs = self.compute_many(mv, texts, points)
        model_s = (time.perf_counter() - t1) / len(texts)
        return [
            self._result(episode, mv, points, text, out, decode_s, model_s)
            for text, out in zip(texts, outputs)
        ]

    def _result(
        self,
        episode: Episode,
        mv: ModelVideo,
        points: list[int],
        text: str,
        out: MethodOutput,
        decode_s: float,
        model_s: float,
    ) -> ScoreResult:
        cfg = self.config
        values = np.asarray(out.values, dtype=np.float64)
        ends = mv.source_indices[np.asarray(points) - 1]
        progress = (
            minmax_progress(values, cfg.eps) if out.progress is None else np.asarray(out.progress, float)
        )
        per_frame = frame_progress(ends, progress, episode.num_frames)
        success = success_score(values, cfg.success_window) if out.success is None else float(out.success)
        model = {**self.backend.describe(), "frame_size": list(mv.frames.shape[1:3])}
        return ScoreResult(
            method=self.name,
            instruction=text,
            num_frames=episode.num_frames,
            fps=episode.fps,
            sampled_frames=mv.source_indices,
            prefix_lengths=np.asarray(points),
            prefix_end_frames=ends,
            values=values,
            value_name=self.value_name,
            progress=progress,
            frame_progress=per_frame,
            success_score=success,
            dense_rewards=dense_rewards(per_frame, cfg.reward_scale, cfg.reward_max),
            config=self.options(),
            model=model,
            version=__version__,
            timings={"decode_s": decode_s, "model_s": model_s, "total_s": decode_s + model_s},
            source=episode.source,
            episode_id=episode.episode_id,
            signals=out.signals,
            provenance=provenance(self, describe_episode(episode)),
        )


class CacheScorer(Scorer):
    """A method whose work is requests on one video cache (`topreward.backends.video_cache`).

    It implements `text_before_video()`, `requests_for(instructions, points)` (the requests, grouped by
    instruction) and `outputs_from(answers, instructions, points)`; the cache then serves every
    instruction of a video at once (`compute_many`), can grow frame by frame, and several videos' caches
    can be asked in one packed forward (`topreward.stream`).
    """

    def text_before_video(self) -> str:
        """The text the video follows; it must not depend on the instruction."""
        raise NotImplementedError

    def requests_for(self, instructions: list[str], points: list[int]) -> list:
        raise NotImplementedError

    def outputs_from(self, answers: list, instructions: list[str], points: list[int]) -> list[MethodOutput]:
        raise NotImplementedError

    def compute_on_cache(self, cache, instructions: list[str], points: list[int]) -> list[MethodOutput]:
        return self.outputs_from(cache.score(self.requests_for(instructions, points)), instructions, points)

    def compute_many(
        self, video: ModelVideo, instructions: list[str], points: list[int]
    ) -> list[MethodOutput]:
        return self.compute_on_cache(self.video_cache(video, self.text_before_video()), instructions, points)
