"""`lrm-released-*`: LRM's released LoRA adapters (`USC-PSI-Lab/LRM-models`), run by the authors' server.

Wu et al. (2026), "Large Reward Models", fine-tuned three adapters on Qwen3-VL-8B-Instruct: progress,
completion and contrastive. Their protocol, read in their reward server
(physical-superintelligence-lab/Large-Reward-Models at 5845ab0, `vlm_reward/vlm_reward_server.py`):

* **Model**: the base with one adapter merged by hand (`merge_lora_by_hand`: W + (B @ A) * alpha / r,
  and the progress adapter's saved vision tower); the base's processor; frames at their own size, resized
  by the processor (no sampling or resizing of theirs); one user turn per question, no system message.
* **Prompts** (`progress_parts`, `completion_parts`, `contrast_parts`): theirs, verbatim, with the images
  where their `<image>` markers are (completion strips its text pieces, the others do not).
* **Decoding**: greedy; 128 new tokens for progress and completion, 512 for contrastive; their parsers
  (`parse_progress`, `parse_completion`, `parse_contrast`) and their failure values (0.0, 0.0, 0.0).
* **A video's curve** (ours to define: their server scores frames one call at a time): at every
  evaluation point k, `lrm-released-progress` asks about frame k beside the first frame (`initial_image`,
  as in their RL training; off = their offline evaluation's single image); `lrm-released-completion`
  about frame k; `lrm-released-contrastive` about frames (k_prev, k) as (Image A, Image B), +1 for B, -1
  for A, 0 at the first point (no previous frame, as theirs). Progress is the value itself for the first
  two; for contrastive it is the min-max of the running sum of the +-1 rewards.

`readout="expected"` (progress and completion): instead of generating, the answer's JSON prefix is
teacher-forced after the generation prompt (`{ "completion_progress":` / `{ "task_completed": "`,
the format their prompts ask for) and the candidates' log-probs are read exactly: sum v P(v) over 0.0 ..
1.0, or P(yes) / (P(yes) + P(no)). It differs from greedy where the model would write anything else
first (then greedy parses that text; `prefix_log_prob` in the signals says how likely the forced prefix
was), and it is smooth where greedy jumps between levels. Contrastive has no such readout: its prompt
asks for an analysis before the answer, and forcing the answer would skip it.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from topreward.backends.base import GENERATION, LOG_PROBS, MULTI_IMAGE, Generation, ModelVideo, Request
from topreward.config import option
from topreward.episode import Episode, validate_frames
from topreward.rewards import minmax_progress
from topreward.sampling import SamplingConfig, sample_indices
from topreward.scorers.base import MethodConfig, MethodOutput, Scorer
from topreward.scorers.registry import register

Part = str | np.ndarray

PROGRESS_QUESTION = (
    "\n\nQuestion: Based on the task description, estimate the completion progress as a value between 0.0 and "
    "1.0.\nSelect one value from the following list:\n[0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]\n\n"
    "Definitions:\n- 0.0: Task has just started.\n- 0.1 - 0.9: Intermediate progress steps (assess how close "
    "to completion).\n- 1.0: Task is Finished.\nOutput your answer in the following JSON format:\n"
    '{ "completion_progress": selected_value }'
)
COMPLETION_PROMPT = (
    "Task: Whether the task has been completed.\n\nThe task is: {task}\n\nYou are given:\n- Current observation: "
    "<image>\n\nHas the task been completed?\nOutput your answer in the following JSON format:\n"
    '{{ "task_completed": "yes" or "no" }}'
)
CONTRAST_QUESTION = (
    "\n\nQuestion: Which of Image A or Image B is closer to completing the task?\nSelect one value from the "
    'following list:\n["ImageA", "ImageB"]\n\nPlease provide a step-by-step visual analysis first, and then '
    'output your answer in the following JSON format:\n{ "more_complete_image": "selected_value" }'
)
PROGRESS_LEVELS: tuple[float, ...] = tuple(i / 10 for i in range(11))
PROGRESS_PREFIX = '{ "completion_progress":'
COMPLETION_PREFIX = '{ "task_completed": "'


def progress_parts(task: str, current: np.ndarray, initial: np.ndarray | None = None) -> list[Part]:
    """Their progress question: [initial frame,] current frame (the text pieces unstripped)."""
    head = f"Task: Estimate the completion progress.\nThe task is: {task}\nYou are given:\n"
    if initial is None:
        return [head + "- Current observation: ", current, PROGRESS_QUESTION]
    return [
        head + "- Initial observation: ",
        initial,
        "\n- Current observation: ",
        current,
        PROGRESS_QUESTION,
    ]


def completion_parts(task: str, current: np.ndarray) -> list[Part]:
    """Their completion question: split at `<image>`, each text piece stripped, as their server does."""
    before, after = COMPLETION_PROMPT.format(task=task).split("<image>")
    return [before.strip(), current, after.strip()]


def contrast_parts(task: str, image_a: np.ndarray, image_b: np.ndarray) -> list[Part]:
    """Their comparison question: Image A (the earlier frame), Image B (the later one)."""
    head = f"Task: Compare the completion progress.\n\nThe task is: {task}.\n\nYou are given:\n"
    return [
        head + "- Later observation (Image A): ",
        image_a,
        "\n- Later observation (Image B): ",
        image_b,
        CONTRAST_QUESTION,
    ]


def _clamp(value: float) -> float:
    return max(0.0, min(1.0, value))


_PROGRESS_FALLBACKS = (
    r"\b(0(\.[0-9]+)?|1(\.0)?)\b",
    r"Progress[:\s]*([0-9]*\.?[0-9]+)",
    r"progress[:\s]*([0-9]*\.?[0-9]+)",
    r"Score[:\s]*([0-9]*\.?[0-9]+)",
    r"score[:\s]*([0-9]*\.?[0-9]+)",
    r"([0-9]*\.?[0-9]+)\s*$",
    r"^([0-9]*\.?[0-9]+)",
)


def parse_progress(text: str) -> float:
    """Their `extract_progress_score`: the first {...} as JSON, then the key by regex, then a list of number
    patterns; clamped to [0, 1]; "NA" and nothing usable are 0.0."""
    try:
        block = re.search(r"\{[^}]+\}", text)
        if block:
            data = json.loads(block.group(0))
            if "completion_progress" in data:
                value = data["completion_progress"]
                return 0.0 if value in ("NA", "na") else _clamp(float(value))
    except (json.JSONDecodeError, ValueError, TypeError):
        pass
    try:
        match = re.search(r'"completion_progress"\s*:\s*"?(NA|([0-9.]+))"?', text, re.IGNORECASE)
        if match:
            return 0.0 if match.group(1).upper() == "NA" else _clamp(float(match.group(1)))
    except (ValueError, TypeError):
        pass
    for pattern in _PROGRESS_FALLBACKS:
        match = re.search(pattern, text)
        if match:
            try:
                return _clamp(float(match.group(1)))
            except ValueError:
                continue
    return 0.0


def parse_completion(text: str) -> float:
    """Their completion reading: the last `"task_completed": "yes|no"`, else "yes" present and "no" absent
    (substrings, as theirs); 1.0 or 0.0."""
    found = re.findall(r'"task_completed"\s*:\s*"(yes|no)"', text, re.IGNORECASE)
    if found:
        return 1.0 if found[-1].lower() == "yes" else 0.0
    low = text.lower()
    return 1.0 if "yes" in low and "no" not in low else 0.0


def parse_contrast(text: str) -> float:
    """Their `extract_comparison_result` as a reward: ImageB (the later frame) +1, ImageA -1, unreadable 0."""
    choice = None
    try:
        block = re.search(r"\{[^}]+\}", text)
        if block:
            data = json.loads(block.group(0))
            if data.get("more_complete_image") in ("ImageA", "ImageB"):
                choice = data["more_complete_image"]
    except (json.JSONDecodeError, ValueError, TypeError, AttributeError):
        pass
    if choice is None:
        match = re.search(r'"more_complete_image"\s*:\s*"(Image[AB])"', text)
        if match:
            choice = match.group(1)
    if choice is None:
        last_a, last_b = text.rfind("ImageA"), text.rfind("ImageB")
        choice = "ImageB" if last_b > last_a else "ImageA" if last_a > last_b else None
    return {"ImageB": 1.0, "ImageA": -1.0}.get(choice, 0.0)


@dataclass(frozen=True)
class NativeFrames:
    """Model-free and picklable: the sampled frames at their own size (the processor resizes them)."""

    sampling: SamplingConfig

    def __call__(self, episode: Episode) -> ModelVideo:
        cfg = self.sampling
        idx = sample_indices(episode.num_frames, episode.fps, cfg.fps, cfg.max_frames)
        return ModelVideo(
            validate_frames(episode.frames(idx), what=f"frames of {episode.source}"), idx, episode.fps
        )


@dataclass
class LRMReleasedConfig(MethodConfig):
    readout: str = option(
        "generate",
        "generate (greedy, their parser: the authors' protocol) or expected (exact log-probs of the answer "
        "after its teacher-forced JSON prefix; not for contrastive)",
        choices=("generate", "expected"),
    )
    max_new_tokens: int = option(0, "generated tokens at most (0: theirs, 128; 512 for contrastive)")
    initial_image: bool = option(
        True, "progress: show the first frame beside the current one (their RL setup)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0 (0 = the protocol's), got {self.max_new_tokens}")


class LRMReleasedScorer(Scorer):
    """One released LRM adapter merged into its base, asked with its own prompt (`head`)."""

    head: ClassVar[str] = "?"
    requires = frozenset({LOG_PROBS, GENERATION, MULTI_IMAGE})
    Config = LRMReleasedConfig
    recommended: ClassVar[dict[str, Any]] = {"num_prefixes": None}
    default_tokens: ClassVar[int] = 128

    def load_backend(self):
        from pathlib import Path

        from topreward.backends.adapters import merge_lora_by_hand

        cfg = self.backend_config
        if cfg.backend != "transformers":
            raise ValueError(f"{self.name} merges a LoRA adapter into the model: backend 'transformers' only")
        if not cfg.adapter:
            raise ValueError(
                f"{self.name} runs LRM's released {self.head} adapter: pass it as adapter= (--adapter DIR, the "
                f"{self.head} folder of USC-PSI-Lab/LRM-models), or the folder itself as model="
            )
        backend = dataclasses.replace(cfg, adapter=None).load()
        merge_lora_by_hand(backend.model, cfg.adapter, cfg.model)
        backend.adapter = str(Path(cfg.adapter).expanduser().resolve())
        return backend

    def setup(self) -> None:
        if self.config.readout == "expected" and self.head == "contrastive":
            raise ValueError(
                "lrm-released-contrastive has no 'expected' readout: its prompt asks for an analysis before the "
                "answer; use readout='generate'"
            )
        self.generation = Generation(max_new_tokens=self.config.max_new_tokens or self.default_tokens)

    @property
    def preparer(self) -> NativeFrames:
        return NativeFrames(self.sampling)

    @classmethod
    def preparer_for(cls, backend_config, sampling, config) -> NativeFrames:
        return NativeFrames(sampling)

    def stream(self, instruction: str, **kwargs: Any):
        raise ValueError(f"{self.name} asks one image question per point; score() the frames so far instead")

    def ask(self, parts: list[Part]) -> str:
        return self.backend.chat(parts, self.generation)

    def candidates(self, parts: list[Part], prefix: str, words: tuple[str, ...]) -> tuple[np.ndarray, float]:
        """Log-prob of each word after the teacher-forced `prefix` (the assistant's first text), and of the
        prefix itself."""
        prompt, images = self.backend.image_chat(parts)
        n = len(prefix)
        requests = [Request(1, prefix, span=(0, n))]
        requests += [Request(1, prefix + w, span=(n, n + len(w))) for w in words]
        answers = self.image_log_probs(prompt, images, requests, resize=True)
        return np.array([a.span.sum() for a in answers[1:]]), float(answers[0].span.sum())


@register("lrm-released-progress")
class LRMReleasedProgressScorer(LRMReleasedScorer):
    description = "LRM's released progress adapter, its prompt and parser: completion 0.0..1.0 per frame"
    head = "progress"
    value_name = "progress"

    def compute(self, video: ModelVideo, instruction: str, points: list[int]) -> MethodOutput:
        first = video.frames[0] if self.config.initial_image else None
        questions = [progress_parts(instruction, video.frames[k - 1], first) for k in points]
        if self.config.readout == "generate":
            answers = [self.ask(q) for q in questions]
            values = np.array([parse_progress(a) for a in answers])
            return MethodOutput(values, {"answers": answers}, progress=values)
        words = tuple(f" {v:.1f}" for v in PROGRESS_LEVELS)
        reads = [self.candidates(q, PROGRESS_PREFIX, words) for q in questions]
        log_probs = np.stack([r[0] for r in reads])
        probs = np.exp(log_probs - log_probs.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        values = probs @ np.asarray(PROGRESS_LEVELS)
        signals = {"level_log_probs": log_probs, "prefix_log_prob": np.array([r[1] for r in reads])}
        return MethodOutput(values, signals, progress=values)


@register("lrm-released-completion")
class LRMReleasedCompletionScorer(LRMReleasedScorer):
    description = "LRM's released completion adapter, its prompt and parser: task completed yes/no per frame"
    head = "completion"
    value_name = "completed"

    def compute(self, video: ModelVideo, instruction: str, points: list[int]) -> MethodOutput:
        questions = [completion_parts(instruction, video.frames[k - 1]) for k in points]
        if self.config.readout == "generate":
            answers = [self.ask(q).strip() for q in questions]
            values = np.array([parse_completion(a) for a in answers])
            return MethodOutput(values, {"answers": answers}, progress=values, success=float(values[-1]))
        reads = [self.candidates(q, COMPLETION_PREFIX, ("yes", "no")) for q in questions]
        log_probs = np.stack([r[0] for r in reads])
        values = np.exp(log_probs[:, 0] - np.logaddexp(log_probs[:, 0], log_probs[:, 1]))
        signals = {"log_p_yes": log_probs[:, 0], "log_p_no": log_probs[:, 1]}
        signals["prefix_log_prob"] = np.array([r[1] for r in reads])
        return MethodOutput(values, signals, progress=values, success=float(values[-1]))


@register("lrm-released-contrastive")
class LRMReleasedContrastiveScorer(LRMReleasedScorer):
    description = (
        "LRM's released contrastive adapter, its prompt and parser: +1/-1 for the later/earlier frame"
    )
    head = "contrastive"
    value_name = "reward (+1 later closer)"
    default_tokens = 512

    def compute(self, video: ModelVideo, instruction: str, points: list[int]) -> MethodOutput:
        answers = [""] + [
            self.ask(contrast_parts(instruction, video.frames[a - 1], video.frames[b - 1]))
            for a, b in zip(points[:-1], points[1:])
        ]
        rewards = np.array([0.0] + [parse_contrast(a) for a in answers[1:]])
        total = np.cumsum(rewards)
        return MethodOutput(
            rewards,
            {"answers": answers, "cumulative": total},
            progress=minmax_progress(total, self.config.eps),
        )
