"""LRM heads: absolute progress, task completion and temporal contrast from a VLM's answer probabilities.

Wu, Yuan, Qi, Guizilini, Mao, Wang (2026), "Large Reward Models: Generalizable Online Robot Reward
Generation with Vision-Language Models", arXiv:2603.16065, §III-B (the tri-faceted reward). The paper
fine-tunes Qwen3-VL-8B-Instruct with LoRA and lets it reason before answering; here the three heads are
zero-shot (no LoRA, no reasoning) and the prompts are ours. Each head reads the answer's probabilities
instead of sampling it, so its value is a smooth expectation rather than a sampled label.

Recipes (`points` are prefix lengths; the frame of point k is the k-th sampled frame):

`lrm-progress` (absolute progress, Eq.3, r_prog in {0.0, 0.1, ..., 1.0}):
  1. For each point, one user turn: the episode's first frame as the anchor I_0 (`anchor=True`), the
     current frame I_t and the task; the question asks for completion as one of 0.0, 0.1, ..., 1.0.
  2. The assistant turn starts with the cue "Progress:"; each of the 11 candidates " 0.0" .. " 1.0" is
     scored as its continuation by teacher forcing: log P(candidate) = the sum of its tokens' log-probs.
  3. Softmax over the 11 -> value = the probability-weighted mean of 0.0 .. 1.0 (whatever the
     candidates' tokenisation); progress = value (already in [0, 1], no min-max).

`lrm-completion` (task completion, Eq.4, r_comp in {0, 1}):
  1. For each point, one user turn: the current frame and the task; the question asks whether the task
     is complete, to be answered yes or no.
  2. After the cue "Answer:", read the next-token log-probs of " yes" and " no".
  3. value = P(yes) / (P(yes) + P(no)); progress = value; success = the value at the last point.

`lrm-contrast` (temporal contrast, Eq.2, r_cont in {+1, -1, 0}):
  1. Cap the points at `max_points` (uniform, first and last kept): the cost is quadratic.
  2. For every ordered pair (a, b) of those frames, one user turn labels them "Image 1" (a) and
     "Image 2" (b) and asks which is closer to completing the task; after the cue "Answer: Image " read
     the next-token log-probs of "1" and "2", renormalised over the two.
  3. Both orders of a pair are asked and averaged, which cancels the model's preference for a position:
     P(a closer than b) = (P("1" | a, b) + P("2" | b, a)) / 2, so P(a > b) + P(b > a) = 1.
  4. value of a frame = its mean P(closer) against every other frame (a Borda count, in [0, 1]);
     progress = min-max of the values (Eq.2 of TOPReward, done by `Scorer`); success = the last point's
     value (the mean over the last points would be 0.5 whenever they are all the points).

Cost. The heads put images in a chat turn (two for progress and contrast, one for completion), not a
video prefix, so the video cache (`topreward.backends.video_cache`) does not serve them; they go to the
backend's image-prompt path, `HFBackend.image_log_probs`: on the fast path each prompt (its images
included) runs once and keeps its KV cache, and its answer requests are packed on top (the 11 progress
candidates share one prompt pass); on `path="reference"` every request is one plain forward. Nothing is
shared between prompts: the vision encoder runs again over every image of every prompt. With K points:
`lrm-progress` runs K two-image prompts (+ 11 K short candidate suffixes), `lrm-completion` K one-image
prompts, `lrm-contrast` K (K - 1) two-image prompts with K <= `max_points` (56 at the default 8).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from topreward.backends.base import LOG_PROBS, MULTI_IMAGE, ModelVideo, Request
from topreward.config import option
from topreward.scorers.base import MethodConfig, MethodOutput, Scorer
from topreward.scorers.registry import register
from topreward.task_text import clean_instruction

__all__ = [
    "PROGRESS_LEVELS",
    "LRMCompletionConfig",
    "LRMCompletionScorer",
    "LRMContrastConfig",
    "LRMContrastScorer",
    "LRMProgressConfig",
    "LRMProgressScorer",
    "completion_parts",
    "contrast_parts",
    "progress_parts",
    "subsample_points",
]

Part = str | np.ndarray

#: The paper's eleven completion stages (Eq.3) and how each is written after the progress cue.
PROGRESS_LEVELS: tuple[float, ...] = tuple(i / 10 for i in range(11))
PROGRESS_CANDIDATES: tuple[str, ...] = tuple(f" {v:.1f}" for v in PROGRESS_LEVELS)
# The candidates start with a space and the cue does not end in one: a span that starts at the space falls
# on a token boundary whether a tokenizer keeps the space alone (Qwen) or joins it to the digit.
PROGRESS_CUE = "Progress:"
PROGRESS_QUESTION = (
    "Task: {instruction}. How much of the task has been completed in the current state? Answer with one "
    "number from 0.0 (not started) to 1.0 (fully completed), in steps of 0.1."
)

COMPLETION_CUE = "Answer:"
COMPLETION_QUESTION = (
    "Task: {instruction}. Has the task been fully completed in this image? Answer {yes} or {no}."
)

CONTRAST_CUE = "Answer: Image"
CONTRAST_QUESTION = (
    "Both images come from the same robot manipulation episode. Task: {instruction}. Which image shows the "
    "state closer to completing the task? Answer {first} or {second}."
)


def _cue(stem: str, word: str) -> str:
    """The answer cue before `word`: its own leading space, or one added, separates them."""
    return stem if word.startswith(" ") else stem + " "


def progress_parts(instruction: str, current: np.ndarray, first: np.ndarray | None = None) -> list[Part]:
    """The `lrm-progress` user turn: [anchor I_0,] current frame, question."""
    question = "\n" + PROGRESS_QUESTION.format(instruction=clean_instruction(instruction))
    if first is None:
        return ["The current state of a robot manipulation episode:", current, question]
    return [
        "The initial state of a robot manipulation episode:",
        first,
        "\nThe current state:",
        current,
        question,
    ]


def completion_parts(instruction: str, current: np.ndarray, yes: str = " yes", no: str = " no") -> list[Part]:
    """The `lrm-completion` user turn: current frame, question."""
    question = COMPLETION_QUESTION.format(
        instruction=clean_instruction(instruction), yes=yes.strip(), no=no.strip()
    )
    return ["The current state of a robot manipulation episode:", current, "\n" + question]


def contrast_parts(
    instruction: str, image_1: np.ndarray, image_2: np.ndarray, first: str = "1", second: str = "2"
) -> list[Part]:
    """The `lrm-contrast` user turn: two labelled frames, question."""
    a, b = first.strip(), second.strip()
    question = CONTRAST_QUESTION.format(instruction=clean_instruction(instruction), first=a, second=b)
    return [f"Image {a}:", image_1, f"\nImage {b}:", image_2, "\n" + question]


@dataclass
class ImageQuery:
    """One question of an LRM head: its chat turn (text with the model's image markers), the images, and
    the requests whose answers are read after it (what `topreward train` trains, too)."""

    prompt: str
    images: list[np.ndarray]
    requests: list[Request]


def subsample_points(points: list[int], max_points: int) -> list[int]:
    """At most `max_points` of `points`, spread uniformly, the first and the last kept."""
    if len(points) <= max_points:
        return list(points)
    idx = np.unique(np.round(np.linspace(0, len(points) - 1, max_points)).astype(int))
    return [points[i] for i in idx]


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _pair_probability(log_probs: np.ndarray) -> np.ndarray:
    """P(first word) renormalised over the two words, from (..., 2) log-probs."""
    return np.exp(log_probs[..., 0] - np.logaddexp(log_probs[..., 0], log_probs[..., 1]))


def _answer_ids(backend, method: str, words: dict[str, str]) -> tuple[int, ...]:
    """The single-token id of each answer word; the error names the option to change."""
    ids = []
    for name, word in words.items():
        try:
            ids.append(backend.token_id(word))
        except ValueError as e:
            raise ValueError(f"{method}: option {name}={word!r} is not one token: {e}") from e
    return tuple(ids)


def _check_words(method: str, a_name: str, a: str, b_name: str, b: str) -> None:
    if not a.strip() or not b.strip():
        raise ValueError(f"{method}: {a_name} and {b_name} must be words, got {a!r} and {b!r}")
    if a == b:
        raise ValueError(f"{method}: {a_name} and {b_name} must differ, both are {a!r}")
    if a.startswith(" ") != b.startswith(" "):
        raise ValueError(
            f"{method}: {a_name}={a!r} and {b_name}={b!r} follow the same answer cue, so both or neither "
            "must start with a space"
        )


# ---- absolute progress ------------------------------------------------------------------------------
@dataclass
class LRMProgressConfig(MethodConfig):
    """Options of the `lrm-progress` head."""

    anchor: bool = option(True, "show the episode's first frame as the anchor I_0 beside the current frame")


@register("lrm-progress")
class LRMProgressScorer(Scorer):
    """Expected completion over 0.0 .. 1.0 from the teacher-forced probability of each stage."""

    description = (
        "LRM absolute progress: expected completion 0.0..1.0 beside the first frame (Wu et al. 2026)"
    )
    Config = LRMProgressConfig
    requires = frozenset({LOG_PROBS, MULTI_IMAGE})
    value_name = "expected progress"

    @staticmethod
    def requests(num_images: int) -> list[Request]:
        """One span request per candidate: the cue, then the candidate, whose tokens are scored."""
        n = len(PROGRESS_CUE)
        return [Request(num_images, PROGRESS_CUE + c, span=(n, n + len(c))) for c in PROGRESS_CANDIDATES]

    def query(self, video: ModelVideo, instruction: str, k: int) -> ImageQuery:
        """The question at point k: [anchor,] the k-th frame, and one span request per candidate."""
        first = video.frames[0] if self.config.anchor else None
        prompt, images = self.backend.image_chat(progress_parts(instruction, video.frames[k - 1], first))
        return ImageQuery(prompt, images, self.requests(len(images)))

    def compute(self, video: ModelVideo, instruction: str, points: list[int]) -> MethodOutput:
        log_probs = np.empty((len(points), len(PROGRESS_CANDIDATES)))
        for row, k in enumerate(points):
            q = self.query(video, instruction, k)
            log_probs[row] = [a.span.sum() for a in self.image_log_probs(q.prompt, q.images, q.requests)]
        expected = _softmax(log_probs) @ np.asarray(PROGRESS_LEVELS)
        signals = {"expected_progress": expected, "candidate_log_probs": log_probs.tolist()}
        return MethodOutput(expected, signals, progress=np.clip(expected, 0.0, 1.0))


# ---- task completion --------------------------------------------------------------------------------
@dataclass
class LRMCompletionConfig(MethodConfig):
    """Options of the `lrm-completion` head."""

    yes: str = option(" yes", "answer word for 'complete', one token (leading space matters)")
    no: str = option(" no", "answer word for 'not complete', one token (leading space matters)")

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_words("lrm-completion", "yes", self.yes, "no", self.no)


@register("lrm-completion")
class LRMCompletionScorer(Scorer):
    """P(yes) renormalised over yes/no: is the task complete in the current frame?"""

    description = "LRM task completion: P(yes) / (P(yes) + P(no)) for the current frame (Wu et al. 2026)"
    Config = LRMCompletionConfig
    requires = frozenset({LOG_PROBS, MULTI_IMAGE})
    value_name = "P(complete)"

    def setup(self) -> None:
        cfg = self.config
        self.token_ids = _answer_ids(self.backend, self.name, {"yes": cfg.yes, "no": cfg.no})
        self.cue = _cue(COMPLETION_CUE, cfg.yes)

    def query(self, video: ModelVideo, instruction: str, k: int) -> ImageQuery:
        """The question at point k: the k-th frame; the request reads the yes and no tokens after the cue."""
        cfg = self.config
        parts = completion_parts(instruction, video.frames[k - 1], cfg.yes, cfg.no)
        prompt, images = self.backend.image_chat(parts)
        return ImageQuery(prompt, images, [Request(1, self.cue, self.token_ids)])

    def compute(self, video: ModelVideo, instruction: str, points: list[int]) -> MethodOutput:
        log_probs = np.empty((len(points), 2))
        for row, k in enumerate(points):
            q = self.query(video, instruction, k)
            (answer,) = self.image_log_probs(q.prompt, q.images, q.requests)
            log_probs[row] = answer.next
        p_yes = _pair_probability(log_probs)
        signals = {"log_p_yes": log_probs[:, 0], "log_p_no": log_probs[:, 1]}
        return MethodOutput(p_yes, signals, progress=p_yes, success=float(p_yes[-1]))


# ---- temporal contrast ------------------------------------------------------------------------------
@dataclass
class LRMContrastConfig(MethodConfig):
    """Options of the `lrm-contrast` head."""

    first: str = option("1", "answer token naming the first image (it also labels the image in the prompt)")
    second: str = option("2", "answer token naming the second image")
    max_points: int = option(8, "cap on evaluation points (K (K - 1) forwards: the cost is quadratic)")

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_words("lrm-contrast", "first", self.first, "second", self.second)
        if self.max_points < 2:
            raise ValueError(
                f"max_points must be >= 2 (a comparison needs two frames), got {self.max_points}"
            )


@register("lrm-contrast")
class LRMContrastScorer(Scorer):
    """Borda score from every ordered pair of frames: which one is closer to completing the task?"""

    description = (
        "LRM temporal contrast: Borda score of pairwise 'which frame is closer to done' (Wu et al. 2026)"
    )
    Config = LRMContrastConfig
    requires = frozenset({LOG_PROBS, MULTI_IMAGE})
    value_name = "mean P(closer)"

    def setup(self) -> None:
        cfg = self.config
        self.token_ids = _answer_ids(self.backend, self.name, {"first": cfg.first, "second": cfg.second})
        self.cue = _cue(CONTRAST_CUE, cfg.first)

    def evaluation_points(self, video: ModelVideo) -> list[int]:
        return subsample_points(super().evaluation_points(video), self.config.max_points)

    def query(self, video: ModelVideo, instruction: str, k1: int, k2: int) -> ImageQuery:
        """The question about the frames of points k1 (image 1) and k2 (image 2): which is closer to done."""
        cfg = self.config
        parts = contrast_parts(instruction, video.frames[k1 - 1], video.frames[k2 - 1], cfg.first, cfg.second)
        prompt, images = self.backend.image_chat(parts)
        return ImageQuery(prompt, images, [Request(2, self.cue, self.token_ids)])

    def p_second(self, video: ModelVideo, instruction: str, k1: int, k2: int) -> float:
        """P(the second image is closer to completion) with the frames of points k1, k2 in that order."""
        q = self.query(video, instruction, k1, k2)
        (answer,) = self.image_log_probs(q.prompt, q.images, q.requests)
        return float(_pair_probability(answer.next[::-1]))

    def compute_online(
        self, video: ModelVideo, instruction: str, point: int, previous: int | None
    ) -> MethodOutput:
        """LRM's online r_cont: the newest frame against the previous query's, 2 P(newest closer) - 1 in
        [-1, 1] (both orders averaged); 0 at the first query, which has nothing to compare with."""
        if previous is None or previous == point:
            return MethodOutput(np.zeros(1), {"p_closer": np.full(1, 0.5)})
        p_newest = 0.5 * (
            self.p_second(video, instruction, previous, point)
            + 1.0
            - self.p_second(video, instruction, point, previous)
        )
        return MethodOutput(np.array([2.0 * p_newest - 1.0]), {"p_closer": np.array([p_newest])})

    def compute(self, video: ModelVideo, instruction: str, points: list[int]) -> MethodOutput:
        n = len(points)
        second = np.full((n, n), np.nan)  # second[i, j]: P(image 2 closer) with point i shown first, j second
        for i in range(n):
            for j in range(n):
                if i != j:
                    second[i, j] = self.p_second(video, instruction, points[i], points[j])
        # closer[i, j] = P(point i closer than point j), both orders averaged; the diagonal is a tie
        closer = np.full((n, n), 0.5)
        off = ~np.eye(n, dtype=bool)
        closer[off] = (0.5 * ((1.0 - second) + second.T))[off]
        values = (closer.sum(axis=1) - 0.5) / (n - 1) if n > 1 else np.full(n, 0.5)
        # mean P(image 1 closer) over all asks: 0.5 means the model has no preference for a position
        first_rate = float(np.mean(1.0 - second[off])) if n > 1 else 0.5
        signals = {"pairwise_closer": closer.tolist(), "first_image_rate": first_rate}
        return MethodOutput(values, signals, success=float(values[-1]))
