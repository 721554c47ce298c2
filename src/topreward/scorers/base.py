"""What every scoring method shares: composed configs, the backend it runs on, and `score()` written once.

A method is a `Scorer` subclass with
  * `Config`: a dataclass of its own options (subclass of `MethodConfig`, which holds the options every
    method has: how raw values become progress, success scores and dense rewards);
  * `description` (one line) and `requires` (backend capabilities, `topreward.backends.base`);
  * `compute(video, instruction, points) -> MethodOutput`: per evaluation point raw values (and, if the
    method has them, progress already in [0, 1]) plus method-specific `signals` — or `compute_many`, the
    same for several instructions at once, when they can share the video's work (one video cache).
`Scorer.score()` does the rest: `prepare` (sampling and resizing, model-free and picklable), the method's
computation, then the common result (progress, per-frame progress, success score, dense rewards).
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Literal

import numpy as np

from topreward.backends.base import LOG_PROBS, ModelVideo, require
from topreward.episode import Episode, as_episode
from topreward.result import ScoreResult
from topreward.rewards import dense_rewards, frame_progress, minmax_progress, success_score
from topreward.sampling import (
    FramePreparer,
    SamplingConfig,
    check_choices,
    check_types,
    option,
    prefix_lengths,
)

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "Qwen/Qwen3-VL-8B-Instruct"
BACKENDS = ("transformers", "gemini", "openai")


@dataclass
class BackendConfig:
    """Where and how the model runs."""

    backend: str = option("transformers", "where the model runs", choices=BACKENDS)
    model: str = option(
        DEFAULT_MODEL,
        "transformers: Hub id or local folder (Qwen3-VL, Qwen2.5-VL, Qwen3.5, Molmo2); openai: the served "
        "model name; gemini: e.g. gemini-2.5-flash",
    )
    revision: str | None = option(None, "model revision (branch, tag or commit)")
    adapter: str | None = option(
        None, "transformers: a LoRA adapter folder (`topreward train`) merged into --model"
    )
    device: str | None = option(None, "cuda, cuda:1, cpu (default: cuda if available)")
    dtype: str | None = option(None, "bfloat16, float16 or float32 (default: bf16 on cuda, fp32 on cpu)")
    path: Literal["fast", "reference"] = option(
        "fast",
        "fast (shared video cache) or reference (one forward per request)",
        choices=("fast", "reference"),
    )
    batch_size: int = option(8, "requests per packed forward on the fast path (memory knob)")
    attn_implementation: str = option("sdpa", "sdpa or eager", choices=("sdpa", "eager"))
    # remote backends (README "Serving"); the API key comes from the environment, never from an option
    url: str | None = option(
        None,
        "base URL of the server: an OpenAI-compatible one (backend openai, e.g. http://localhost:8000) or "
        "another Gemini API endpoint (backend gemini); keep credentials out of it (it is recorded)",
    )
    server: Literal["vllm", "sglang"] = option(
        "vllm",
        "backend openai: log-prob request format, vllm (chat completions) or sglang (native /generate)",
        choices=("vllm", "sglang"),
    )
    timeout: float = option(120.0, "remote backends: seconds per HTTP request")
    retries: int = option(3, "remote backends: retries of a failed request (down, slow, 5xx), with back-off")
    concurrency: int = option(8, "remote backends: requests in flight at once")
    server_patch_factor: int = option(
        32, "backend openai: frame sides are rounded to multiples of this (Qwen3-VL 32, Qwen2.5-VL 28)"
    )

    def __post_init__(self) -> None:
        check_types(self)
        check_choices(self)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not (isinstance(self.timeout, (int, float)) and 0 < self.timeout < float("inf")):
            raise ValueError(f"timeout must be a positive number of seconds, got {self.timeout!r}")
        for name, low in (("retries", 0), ("concurrency", 1), ("server_patch_factor", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.adapter is not None:  # checked before any model is loaded
            from pathlib import Path

            if self.backend != "transformers":
                raise ValueError(f"adapter= applies to backend='transformers' only, not {self.backend!r}")
            if not (Path(str(self.adapter)).expanduser() / "adapter_config.json").is_file():
                raise FileNotFoundError(
                    f"adapter {self.adapter} is not a LoRA adapter folder (no adapter_config.json); pass the "
                    "`final` (or a checkpoint) folder written by `topreward train --lora yes`"
                )
        if self.backend == "openai" and not self.url:
            raise ValueError(
                "backend='openai' needs the server's base URL: url='http://localhost:8000' (--url); "
                "see the README's Serving section"
            )

    def load(self):
        if self.backend == "openai":
            from topreward.backends.openai_api import OpenAIServerBackend

            return OpenAIServerBackend(
                self.model,
                url=str(self.url),
                server=self.server,
                revision=self.revision,
                timeout=self.timeout,
                retries=self.retries,
                concurrency=self.concurrency,
                patch_factor=self.server_patch_factor,
            )
        if self.backend == "gemini":
            from topreward.backends.gemini import GeminiBackend

            return GeminiBackend(self.model, base_url=self.url, timeout=self.timeout, retries=self.retries)
        from topreward.backends.hf import HFBackend

        return HFBackend(
            self.model,
            revision=self.revision,
            device=self.device,
            dtype=self.dtype,
            attn_implementation=self.attn_implementation,
            path=self.path,
            batch_size=self.batch_size,
            adapter=self.adapter,
        )

    def patch_factor(self) -> int:
        if self.backend == "openai":
            return self.server_patch_factor  # no model files here: the documented default or the option
        if self.backend == "gemini":
            from topreward.backends.gemini import GeminiBackend

            return GeminiBackend.patch_factor
        from topreward.backends.hf import HFBackend

        return HFBackend.frame_patch_factor(self.model, self.revision)


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


CONFIG_PARTS: tuple[type, ...] = (BackendConfig, SamplingConfig)

#: A model folder's recommended scoring options (written by `topreward train` / the demo model's script).
SCORING_FILE = "topreward_scoring.json"


def recommended_options(options: dict[str, Any]) -> dict[str, Any]:
    """The options saved beside the local `model` and `adapter` of `options` (`SCORING_FILE`, e.g. the
    sampling it was trained with); the adapter's win."""
    import json
    from pathlib import Path

    saved: dict[str, Any] = {}
    for folder in (options.get("model"), options.get("adapter")):
        path = Path(str(folder)).expanduser() / SCORING_FILE if folder else None
        if path is None or not path.is_file():
            continue
        try:
            found = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON ({e}); fix or delete it") from e
        if not isinstance(found, dict):
            raise ValueError(f'{path} must hold a JSON object of scoring options, e.g. {{"fps": 4.0}}')
        if isinstance(found.get("size"), list):
            found["size"] = tuple(found["size"])
        saved.update(found)
    return saved


def option_names(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


def split_options(method: str, config_cls: type, options: dict[str, Any]) -> tuple[Any, ...]:
    """Flat options -> (BackendConfig, SamplingConfig, method config); unknown names list the valid ones."""
    parts = (*CONFIG_PARTS, config_cls)
    valid = [n for cls in parts for n in option_names(cls)]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise TypeError(f"{method}: unknown option(s) {unknown}; valid: {sorted(valid)}")
    return tuple(cls(**{k: v for k, v in options.items() if k in option_names(cls)}) for cls in parts)


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
        self.backend = backend if backend is not None else self.backend_config.load()
        require(self.backend, self.requires, self.name)
        self.setup()

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

    def video_cache(self, video: ModelVideo, before: str):
        """The backend's cache over `video`, on the path and batch size of this scorer's options."""
        cfg = self.backend_config
        return self.backend.video_cache(video, before, path=cfg.path, batch_size=cfg.batch_size)

    def image_log_probs(self, prompt: str, images: list, requests: list):
        """The backend's image-prompt answers, on the path and batch size of this scorer's options."""
        cfg = self.backend_config
        return self.backend.image_log_probs(
            prompt, images, requests, path=cfg.path, batch_size=cfg.batch_size
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
            version=_version(),
            timings={"decode_s": decode_s, "model_s": model_s, "total_s": decode_s + model_s},
            source=episode.source,
            episode_id=episode.episode_id,
            signals=out.signals,
            provenance=_provenance(self, episode),
        )


def _provenance(scorer: Scorer, episode: Episode) -> dict[str, Any]:
    from topreward.provenance import describe_episode, provenance

    return provenance(scorer, describe_episode(episode))


def _version() -> str:
    from topreward import __version__

    return __version__


# the chat markup of Qwen-style tokenizers (<|im_start|>, <|im_end|>, <|video_pad|>, ...), whatever the backend
_CONTROL_TOKEN = re.compile(r"<\|[^<>|\s]{1,40}\|>")


def reserved_tokens(backend: Any) -> tuple[str, ...]:
    """The control tokens of a backend's tokenizer that task text may not contain (`backend.reserved_tokens`,
    e.g. the chat and vision markers of a transformers model; none for a backend that does not say)."""
    return tuple(getattr(backend, "reserved_tokens", ()) or ())


def check_task_text(text: str, reserved: tuple[str, ...] = (), where: str | None = None) -> str:
    """`text` if it can be task text: it has a letter or digit, and holds no control token.

    Task text is data, never control: a `<|im_end|>` in it would close the user's turn, a `<|video_pad|>`
    would claim video features that do not exist. Such text is refused here, for every method, path and
    backend, rather than tokenised differently by each.
    """
    at = f"{where}: " if where else ""
    if not any(ch.isalnum() for ch in text):
        raise ValueError(
            f"{at}instruction {text!r} has no letter or digit; pass the task text, e.g. 'put the pen into the cup'"
        )
    found = sorted({t for t in reserved if t in text} | set(_CONTROL_TOKEN.findall(text)))
    if found:
        raise ValueError(
            f"{at}instruction {text!r} contains {', '.join(found)}: control token(s) of the model's prompt "
            "format, which task text may not hold (it is data, never control); remove them"
        )
    return text


def scoring_mode():
    """No autograd while scoring. The engine (`topreward.backends`) bakes none in, so that training can
    take gradients through the model; the scorer (and the stream) apply this around their model calls."""
    import torch

    return torch.inference_mode()


def check_instruction(episode: Episode, text: str | None = None, reserved: tuple[str, ...] = ()) -> str:
    """The instruction to score (`text`, else the episode's own); error if there is none or it cannot be
    task text (`check_task_text`; `reserved`: the backend's control tokens, `reserved_tokens`)."""
    text = episode.instruction if text is None else text
    if text is None or not " ".join(str(text).split()):
        raise ValueError(
            f"{episode.source}: no instruction; pass the task text, e.g. 'put the pen into the cup'"
        )
    if not isinstance(text, str):
        raise TypeError(f"{episode.source}: the instruction must be a string, got {type(text).__name__}")
    return check_task_text(text, reserved, where=episode.source)


def clean_instruction(instruction: str) -> str:
    """Whitespace folded and a trailing period dropped (prompts add their own); refused if it cannot be
    task text (`check_task_text`)."""
    text = " ".join(str(instruction).split())
    if not text:
        raise ValueError("the instruction is empty; pass the task text, e.g. 'put the pen into the cup'")
    return check_task_text(text).rstrip(".")


class CacheScorer(Scorer):
    """A method whose work is requests on one video cache (`topreward.backends.prefix_sharing`).

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
