"""TOPReward: token probabilities as zero-shot progress (Chen, Harrison, Lee et al., 2026, §3).

Recipe:
  1. Sample the episode's frames once (default 2 fps, at most `max_frames`, one resolution for all).
  2. For K prefix lengths (default 15, uniform from 1 to N frames, as the paper's experiments; or every
     frame), put the first k frames before the prompt "The above video shows a robot manipulation
     trajectory that completes the following task: {instruction}. Decide whether the above statement is
     True or not. The answer is:".
  3. Read log P(" True") (and log P(" False")) of the next token — log-softmax in float32 at the last
     position (Eq.1).
  4. Min-max normalise over the episode's prefixes (Eq.2) -> progress in [0, 1]; interpolate to every
     source frame; success score = mean log P(True) of the last 3 prefixes (§5.2); dense rewards from
     progress increments (Eq.3, our reading in `topreward.rewards`).

Default prompt style: `authors` — the user-turn header kept, no end of turn, no assistant turn — because
that is what the authors' released code feeds the model and so what produced the published numbers; `raw`
(the paper's text read literally: video tokens then the prompt) and `chat` (full template, the paper's
§5.4 ablation, which it reports as much worse) are options.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from topreward import __version__
from topreward.backends.hf import HFBackend, ModelVideo
from topreward.episode import Episode, as_episode, validate_frames
from topreward.prompts import PROMPT_STYLES, TOPREWARD_TEMPLATE, PromptStyle
from topreward.result import ScoreResult
from topreward.rewards import dense_rewards, frame_progress, minmax_progress, success_score
from topreward.sampling import SamplingConfig, frame_size, prefix_lengths, resize_frames, sample_indices
from topreward.scorers.registry import register

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "Qwen/Qwen3-VL-8B-Instruct"


def _opt(default: Any, help: str, **kw: Any) -> Any:
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TOPRewardConfig:
    """Options of the TOPReward scorer; the same fields are the `topreward score` flags."""

    model: str = _opt(DEFAULT_MODEL, "Hub id or local folder of a Qwen3-VL / Qwen2.5-VL model")
    revision: str | None = _opt(None, "model revision (branch, tag or commit)")
    device: str | None = _opt(None, "cuda, cuda:1, cpu (default: cuda if available)")
    dtype: str | None = _opt(None, "bfloat16, float16 or float32 (default: bf16 on cuda, fp32 on cpu)")
    prompt_style: PromptStyle = _opt("authors", "authors | raw | chat (see README)", choices=PROMPT_STYLES)
    answer: str = _opt(" True", "answer token whose log-prob is the reward (leading space matters)")
    contrast: str = _opt(" False", "second token recorded beside it")
    num_prefixes: int | None = _opt(15, "number of uniform prefixes; None = every sampled frame")
    fps: float = _opt(2.0, "frames per second of video time shown to the model")
    max_frames: int = _opt(32, "cap on sampled frames (stride grows to cover the episode)")
    max_pixels: int = _opt(256 * 256, "per-frame pixel budget (aspect kept, rounded to the patch grid)")
    size: tuple[int, int] | None = _opt(None, "fixed frame size HxW instead of max_pixels")
    path: Literal["fast", "reference"] = _opt(
        "fast", "fast (prefix-shared) or reference (one forward per prefix)", choices=("fast", "reference")
    )
    batch_size: int = _opt(8, "prefixes per packed forward on the fast path (memory knob)")
    eps: float = _opt(1e-6, "epsilon in the min-max normalisation (Eq.2)")
    success_window: int = _opt(3, "last prefixes averaged into the success score (§5.2)")
    reward_scale: float = _opt(1.0, "alpha in the dense reward (Eq.3)")
    reward_max: float = _opt(1.0, "delta_max, the cap of the dense reward (Eq.3)")
    attn_implementation: str = _opt("sdpa", "sdpa or eager", choices=("sdpa", "eager"))

    def __post_init__(self) -> None:
        if self.prompt_style not in PROMPT_STYLES:
            raise ValueError(f"prompt_style={self.prompt_style!r}; choose one of {PROMPT_STYLES}")
        if self.path not in ("fast", "reference"):
            raise ValueError(f"path={self.path!r}; choose 'fast' or 'reference'")
        if self.num_prefixes is not None and self.num_prefixes < 2:
            raise ValueError(f"num_prefixes must be >= 2 or None (every frame), got {self.num_prefixes}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.success_window < 1:
            raise ValueError(f"success_window must be >= 1, got {self.success_window}")
        if not self.answer.strip():
            raise ValueError("answer must be a word such as ' True'")
        _ = self.sampling  # builds a SamplingConfig, which validates fps, max_frames, max_pixels and size

    @property
    def sampling(self) -> SamplingConfig:
        return SamplingConfig(
            fps=self.fps, max_frames=self.max_frames, max_pixels=self.max_pixels, size=self.size
        )


def format_prompt(instruction: str) -> str:
    """The TOPReward prompt for one instruction (a trailing period is dropped: the template adds one)."""
    text = " ".join(str(instruction).split())
    if not text:
        raise ValueError("the instruction is empty; pass the task text, e.g. 'put the pen into the cup'")
    return TOPREWARD_TEMPLATE.format(instruction=text.rstrip("."))


@register("topreward", TOPRewardConfig)
class TOPRewardScorer:
    """`scorer.score(video, instruction) -> ScoreResult` with TOPReward on a transformers backend."""

    name = "topreward"

    def __init__(self, config: TOPRewardConfig, backend: HFBackend | None = None) -> None:
        self.config = config
        self.backend = backend or HFBackend(
            config.model,
            revision=config.revision,
            device=config.device,
            dtype=config.dtype,
            attn_implementation=config.attn_implementation,
        )
        self.token_ids = [self.backend.token_id(config.answer), self.backend.token_id(config.contrast)]

    def prepare(self, episode: Episode) -> ModelVideo:
        """Sample and resize the frames the model sees (once per episode)."""
        cfg = self.config.sampling
        idx = sample_indices(episode.num_frames, episode.fps, cfg.fps, cfg.max_frames)
        frames = validate_frames(episode.frames(idx), what=f"frames of {episode.source}")
        hw = frame_size(frames.shape[1], frames.shape[2], self.backend.patch_factor, cfg.max_pixels, cfg.size)
        return ModelVideo(resize_frames(frames, hw), idx, episode.fps)

    def log_probs(self, video: ModelVideo, prefixes: list[int], instruction: str) -> np.ndarray:
        """(K, 2) log-probs of the answer and contrast tokens after each prefix."""
        prompt = self.backend.prompt_text(self.config.prompt_style, format_prompt(instruction))
        if self.config.path == "reference":
            return self.backend.reference_log_probs(video, prefixes, prompt, self.token_ids)
        return self.backend.fast_log_probs(
            video, prefixes, prompt, self.token_ids, batch_size=self.config.batch_size
        )

    def score(self, video: Any, instruction: str | None = None, *, fps: float | None = None) -> ScoreResult:
        """Score one episode.

        Args:
            video: an `Episode`, a video file, a folder of frames, or a uint8 (T, H, W, 3) array.
            instruction: the task text (default: the episode's own).
            fps: frame rate of an array or frame folder (files carry their own).
        """
        episode = as_episode(video, instruction, fps)
        self.check_instruction(episode)
        t0 = time.perf_counter()
        mv = self.prepare(episode)
        return self.score_prepared(episode, mv, decode_s=time.perf_counter() - t0)

    @staticmethod
    def check_instruction(episode: Episode) -> str:
        text = episode.instruction
        if text is None or not str(text).strip():
            raise ValueError(
                f"{episode.source}: no instruction; pass the task text, e.g. 'put the pen into the cup'"
            )
        format_prompt(text)
        return str(text)

    def score_prepared(self, episode: Episode, mv: ModelVideo, decode_s: float = 0.0) -> ScoreResult:
        """Score frames already sampled by `prepare` (lets decoding run elsewhere, e.g. Ray CPU tasks)."""
        cfg = self.config
        text = self.check_instruction(episode)
        t1 = time.perf_counter()
        ks = prefix_lengths(mv.num_frames, cfg.num_prefixes)
        lp = self.log_probs(mv, ks, text)
        t2 = time.perf_counter()
        ends = mv.source_indices[np.asarray(ks) - 1]
        progress = minmax_progress(lp[:, 0], cfg.eps)
        per_frame = frame_progress(ends, progress, episode.num_frames)
        return ScoreResult(
            method=self.name,
            instruction=str(text),
            num_frames=episode.num_frames,
            fps=episode.fps,
            sampled_frames=mv.source_indices,
            prefix_lengths=np.asarray(ks),
            prefix_end_frames=ends,
            log_p_true=lp[:, 0],
            log_p_false=lp[:, 1],
            progress=progress,
            frame_progress=per_frame,
            success_score=success_score(lp[:, 0], cfg.success_window),
            dense_rewards=dense_rewards(per_frame, cfg.reward_scale, cfg.reward_max),
            config=asdict(cfg),
            model={
                "id": self.backend.model_id,
                "revision": self.backend.revision,
                "family": self.backend.family.name,
                "dtype": str(self.backend.dtype).removeprefix("torch."),
                "device": self.backend.device,
                "frame_size": list(mv.frames.shape[1:3]),
            },
            version=__version__,
            timings={"decode_s": decode_s, "model_s": t2 - t1, "total_s": decode_s + t2 - t1},
            source=episode.source,
            episode_id=episode.episode_id,
        )
