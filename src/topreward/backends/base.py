"""What a scoring method may ask of a backend (where the model runs), and the request/answer types.

A backend declares its capabilities; a method declares the ones it needs (`Scorer.requires`), and
`require` turns a mismatch into an error naming the capability and a backend that has it.

Capabilities:
  * `log_probs`: next-token log-probs after (video prefix, text) requests, and teacher-forced log-probs
    of a span of that text (`Backend.video_cache(...).score(requests)`).
  * `prefix_sharing`: the video cache shares the vision encoder and the language model's KV cache across
    requests (a backend without it still answers through a per-request reference path).
  * `generation`: free text after a video (`Backend.generate`).
  * `multi_image`: several images in one prompt — in a generated chat turn (`Backend.chat`) and, with
    `log_probs`, for answer log-probs after an image prompt (`Backend.image_log_probs`).
  * `reward_heads`: a trained reward model's own heads read at its special tokens (Robometer,
    `topreward.backends.robometer`): per-frame progress and success, pairwise preference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

# the frames a model sees are made by sampling; every backend takes them
from topreward.sampling import ModelVideo, appended  # noqa: F401  (re-exported)

LOG_PROBS = "log_probs"
PREFIX_SHARING = "prefix_sharing"
GENERATION = "generation"
MULTI_IMAGE = "multi_image"
REWARD_HEADS = "reward_heads"
CAPABILITIES: tuple[str, ...] = (LOG_PROBS, PREFIX_SHARING, GENERATION, MULTI_IMAGE, REWARD_HEADS)


@dataclass(frozen=True)
class Request:
    """One question to the model about a video prefix.

    Attributes:
        prefix: how many of the video's frames come before `text` (1 .. N).
        text: the text after the video (the prompt, and for a span request the continuation to score).
        tokens: token ids whose next-token log-probs are read after the last token of `text`.
        span: (start, end) character range of `text` whose tokens are scored by teacher forcing: each
            token's log-prob given everything before it. Must start and end on token boundaries.
    """

    prefix: int
    text: str
    tokens: tuple[int, ...] = ()
    span: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.prefix < 1:
            raise ValueError(f"a request needs at least one frame before its text, got prefix={self.prefix}")
        if not self.tokens and self.span is None:
            raise ValueError("a request must ask for next-token ids (tokens=) or a span of its text (span=)")
        if self.span is not None and not (0 <= self.span[0] < self.span[1] <= len(self.text)):
            raise ValueError(f"span {self.span} is not a non-empty range of the {len(self.text)}-char text")


@dataclass
class Answer:
    """What the model says to one `Request`.

    Attributes:
        next: log-probs of the request's `tokens` after its text, float64 (len(tokens),).
        span: log-prob of each token of the request's span given what precedes it, float64 (n,).
        span_tokens: the ids of those tokens.
    """

    next: np.ndarray
    span: np.ndarray = field(default_factory=lambda: np.zeros(0))
    span_tokens: tuple[int, ...] = ()


@dataclass(frozen=True)
class Generation:
    """How a backend generates text (`Backend.chat`).

    Attributes:
        max_new_tokens: cap on generated tokens.
        stop: strings that end the answer; the answer is cut before the first one (not included).
        temperature: 0 = greedy (the default, deterministic); > 0 samples, seeded by `seed`.
        seed: the sampling seed (a given seed gives the same text on the same backend and model).
        top_p: when sampling, keep the smallest set of tokens with this much probability (1 = all).
        top_k: when sampling, keep the k most likely tokens (0 = all).
        system: a system turn before the user turn (None: none).
    """

    max_new_tokens: int = 512
    stop: tuple[str, ...] = ()
    temperature: float = 0.0
    seed: int = 0
    top_p: float = 1.0
    top_k: int = 0
    system: str | None = None

    def __post_init__(self) -> None:
        if (
            isinstance(self.max_new_tokens, bool)
            or not isinstance(self.max_new_tokens, int)
            or self.max_new_tokens < 1
        ):
            raise ValueError(f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}")
        if not (isinstance(self.temperature, (int, float)) and 0 <= self.temperature < float("inf")):
            raise ValueError(f"temperature must be a finite number >= 0, got {self.temperature!r}")
        if not (isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1):
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise ValueError(f"top_k must be an integer >= 0 (0 = all tokens), got {self.top_k!r}")
        if self.system is not None and not isinstance(self.system, str):
            raise TypeError(f"system must be text or None, got {type(self.system).__name__}")
        if isinstance(self.stop, str) or any(not isinstance(x, str) or not x for x in self.stop):
            raise ValueError(f"stop must be a tuple of non-empty strings, got {self.stop!r}")


def cut_at_stop(text: str, stop: tuple[str, ...]) -> str:
    """`text` up to (not including) the earliest stop string."""
    cuts = [i for i in (text.find(s) for s in stop) if i >= 0]
    return text[: min(cuts)] if cuts else text


#: A part of a chat prompt: text, one image (uint8 RGB (H, W, 3)), or a video (`ModelVideo`).
Part = Any


def check_parts(parts: list) -> None:
    """Parts are strings, uint8 (H, W, 3) images or `ModelVideo`s; at least one string."""
    if not parts or not any(isinstance(p, str) for p in parts):
        raise ValueError("a chat prompt needs at least one text part")
    for i, p in enumerate(parts):
        if isinstance(p, (str, ModelVideo)):
            continue
        if not (isinstance(p, np.ndarray) and p.dtype == np.uint8 and p.ndim == 3 and p.shape[2] == 3):
            raise TypeError(
                f"chat part {i} is {type(p).__name__} {getattr(p, 'shape', '')}; give text, a uint8 (H, W, 3) "
                "image or a ModelVideo"
            )


class VideoCacheLike(Protocol):
    """A video held by a backend, answering many requests: `score(requests)`, `extend(frames)`.

    `side_by_side`: whether `topreward.backends.side_by_side.score_on_caches` may pack this cache's requests
    beside other caches' in one forward.
    """

    video: ModelVideo
    side_by_side: bool

    def score(self, requests: list[Request]) -> list[Answer]: ...

    def extend(self, frames: np.ndarray, source_indices: np.ndarray) -> None: ...


@runtime_checkable
class Backend(Protocol):
    """The contract every backend implements; optional parts are announced in `capabilities`.

    Optional, by capability: `chat(parts, generation) -> str` (`generation`: one user turn of text,
    images and videos, the model's answer cut at the stop strings) and
    `image_log_probs(prompt, images, requests, *, path, batch_size) -> list[Answer]` (`multi_image`).
    """

    name: str
    capabilities: frozenset[str]
    model_id: str

    def token_id(self, word: str) -> int:
        """Id of `word` as one token (leading space matters); error if it is several tokens."""

    def tokenize(self, text: str) -> list[int]: ...

    @property
    def patch_factor(self) -> int:
        """Frame sides are rounded to multiples of this (the model's patch grid)."""

    def prompt_text(self, style: str, prompt: str) -> Any:
        """Where the video goes for a prompt style (raw, authors, chat): `.before` and `.after` the video."""

    def video_cache(
        self, video: ModelVideo, before: str, *, path: str | None = None, batch_size: int | None = None
    ) -> VideoCacheLike:
        """A cache over `video` with `before` in front; path "reference" answers with plain forwards."""

    def describe(self) -> dict[str, Any]:
        """Model id, revision, family, dtype, device: recorded in every result."""

    # A backend class is also built from options: `from_config(BackendConfig) -> backend` and
    # `config_patch_factor(BackendConfig) -> int` (classmethods; `topreward.backends.config`).


BACKENDS_WITH: dict[str, tuple[str, ...]] = {
    LOG_PROBS: ("transformers", "openai"),
    PREFIX_SHARING: ("transformers",),
    GENERATION: ("transformers", "openai", "gemini"),
    MULTI_IMAGE: ("transformers", "openai", "gemini"),
    REWARD_HEADS: ("transformers",),
}


def scoring_mode():
    """No autograd while scoring. The engine bakes none in, so that training can take gradients through
    the model; the scorer and the stream apply this around their model calls."""
    import torch

    return torch.inference_mode()


def require(backend: Any, needed: frozenset[str] | set[str], method: str) -> None:
    """Raise if `backend` lacks a capability `method` needs; the error names a backend that has it."""
    unknown = sorted(set(needed) - set(CAPABILITIES))
    if unknown:
        raise ValueError(f"method {method!r} asks for unknown capabilities {unknown}; known: {CAPABILITIES}")
    have = getattr(backend, "capabilities", frozenset())
    missing = sorted(set(needed) - set(have))
    if missing:
        cap = missing[0]
        raise ValueError(
            f"method {method!r} needs the backend capability {cap!r}, which backend "
            f"{getattr(backend, 'name', type(backend).__name__)!r} lacks (it has: {', '.join(sorted(have)) or 'none'}); "
            f"use backend={' or '.join(map(repr, BACKENDS_WITH.get(cap, ('transformers',))))}"
        )
