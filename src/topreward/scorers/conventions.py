"""Whose conventions turn an episode into TOPReward numbers: ours (default) or a peer's, reproduced exactly.

The model math is the same everywhere — log P(True) after a video and the TOPReward prompt — but the
pipelines around it differ: which frames a call sees, at what size, which frame rate the processor is
told, how the instruction is written into the prompt, which token is read, in which precision, how a
curve is normalised. Those move the numbers by whole nats, so comparing with a peer means running the
peer's pipeline. `conventions` picks one (docs/conventions.md has the full table):

* `topreward` (default, ours): frames sampled once per episode (2 fps of video time, at most 32, one
  size for all, aspect kept), prefix k = the first k sampled frames with their real timestamps, the
  instruction with one period, log-softmax in float32, min-max with ε; prefix-shared cache.
* `paper`: the authors' first public code (jcoleharrison/TOPReward ea66b29), what produced the paper's
  tables. Prefixes `linspace(1, N, 15, dtype=int)` over raw frames; every raw frame of the prefix resized
  to 244x244 (PIL bicubic, aspect ignored), then by qwen-vl-utils 0.0.14 to 224 (its 56-px grid) and
  336 (its minimum pixels), the list padded to an even length; no video metadata, so the transformers
  4.57 processor assumes 24 fps and keeps `max(4, int(T / 12))` of the T frames, timestamps at 24 fps;
  the processor's budget then resizes to its grid.
* `authors`: the authors' current code (bc61380): the same prefixes, 244x244 frames, but a prefix-stable
  2 fps schedule `round(arange(0, N, fps / 2))`, real fps and indices as metadata, a single frame doubled;
  also reads log P(" False") at the same position.
* `lerobot`: LeRobot's port (huggingface/lerobot 7427f31, `compute_rabc_weights`): every raw frame of the
  prefix, labelled 2 fps with indices from 0, one pixel budget shared by the call's frames (they shrink
  as the prefix grows), bicubic antialiased resize, prefixes `round(linspace(1, N, K))` (its
  `--num-samples`; `num_prefixes=None` is its default, one call per frame), log-softmax in float32.

The three peers write the instruction verbatim ("...task: {instruction} Decide whether..."; no period),
keep the chat template's user-turn header without its end of turn, append the answer and score the last
token (" True"; "True" without a space after the assistant header with `prompt_style='chat'`, which paper
and authors support), and normalise with min-max without ε (a constant curve is all ones). The authors'
code takes log-softmax in the model's dtype (bf16 for the real checkpoints); LeRobot upcasts to float32.

Every peer call is one plain forward (a call's frames are not a prefix of the next call's, and their
size changes with the frame count). The pipelines are checked against values recorded by running the
peers' own code on the tiny test model (`scripts/golden/`, `tests/golden/`, `tests/test_conventions.py`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from topreward.sampling import qwen_smart_size

if TYPE_CHECKING:
    from topreward.backends.hf import HFBackend

CONVENTIONS: tuple[str, ...] = ("topreward", "paper", "authors", "lerobot")

PEER_PREFIX = "The above video shows a robot manipulation trajectory that completes the following task: "
PEER_SUFFIX = "{instruction} Decide whether the above statement is True or not. The answer is:"

#: Our options that a peer pipeline decides itself: they must keep their defaults when a peer's is chosen.
FIXED_BY_PEERS = ("fps", "max_frames", "max_pixels", "size", "answer", "contrast", "signal", "eps")


@dataclass(frozen=True)
class Call:
    """One forward of a peer pipeline.

    Attributes:
        end: the raw frame the value belongs to (the prefix's last frame).
        frames: raw frame indices shown, in order (repeats included).
        hw: the size every frame of the call is resized to.
        fps: the frame rate written into the video metadata.
        indices: the frame indices written into the metadata (timestamps are `index / fps`).
        via: a size the frames pass through on the way to `hw` (the paper's qwen-vl-utils video size).
    """

    end: int
    frames: tuple[int, ...]
    hw: tuple[int, int]
    fps: float
    indices: tuple[int, ...]
    via: tuple[int, int] | None = None


# ---- the pieces the peers are made of ----------------------------------------------------------------
def video_budget_size(
    num_frames: int,
    height: int,
    width: int,
    *,
    factor: int,
    min_pixels: int,
    max_pixels: int,
    temporal: int = 2,
    frames_round_up: bool = True,
) -> tuple[int, int]:
    """transformers' Qwen video `smart_resize`: one pixel budget for all frames of a call.

    Sides round (half to even) to `factor`; the frame count rounds up to the temporal patch
    (`frames_round_up`, transformers 5.5) or to the nearest (half to even, 4.57); over `max_pixels` (frames
    x pixels) both sides shrink, floored to the grid; under `min_pixels` they grow, ceiled.
    """
    h_bar, w_bar = round(height / factor) * factor, round(width / factor) * factor
    t_bar = (math.ceil if frames_round_up else round)(num_frames / temporal) * temporal
    if t_bar * h_bar * w_bar > max_pixels:
        beta = math.sqrt(num_frames * height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif t_bar * h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (num_frames * height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def image_budget_size(
    height: int, width: int, factor: int, min_pixels: int, max_pixels: int
) -> tuple[int, int]:
    """qwen-vl-utils' per-image `smart_resize` (0.0.14): round to `factor`, then keep within the pixel bounds."""
    return qwen_smart_size(height, width, factor, min_pixels, max_pixels)


def resize_pil(frames: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """PIL's default resize for RGB images (bicubic), per frame, uint8 in and out; aspect is not kept."""
    from PIL import Image

    h, w = hw
    return np.stack([np.asarray(Image.fromarray(f, "RGB").resize((w, h))) for f in frames])


def resize_torchvision(frames: np.ndarray, hw: tuple[int, int], *, v1: bool = False) -> np.ndarray:
    """torchvision's bicubic resize with antialias: `transforms.v2` (transformers' video processors) or the
    v1 functional API (`v1`, qwen-vl-utils) — on uint8 they round differently.

    uint8 in: uint8 out (rounded, clamped); float in: float out, not clamped.
    """
    import torch

    if v1:
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as F
    else:
        from torchvision.transforms.v2 import InterpolationMode
        from torchvision.transforms.v2 import functional as F

    if frames.shape[1:3] == tuple(hw):
        return frames
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    y = F.resize(x, list(hw), interpolation=InterpolationMode.BICUBIC, antialias=True)
    return y.permute(0, 2, 3, 1).contiguous().numpy()


def truncated_prefix_lengths(num_frames: int, num_prefixes: int | None) -> list[int]:
    """The authors' prefixes: `sorted(set(linspace(1, N, min(K, N), dtype=int)))` (truncating), `[N]` for
    N <= 2; every length when K is None (their `num_samples <= 0`)."""
    if num_prefixes is None:
        return list(range(1, num_frames + 1))
    if num_frames <= 2:
        return [num_frames]
    k = min(num_prefixes, num_frames)
    return sorted({int(x) for x in np.linspace(1, num_frames, k, dtype=int)})


def uniform_prefix_lengths(num_frames: int, num_prefixes: int | None) -> list[int]:
    """LeRobot's prefixes: `unique(round(linspace(1, N, K)))` (half to even); every length when K is None or
    K >= N."""
    if num_prefixes is None or num_prefixes >= num_frames:
        return list(range(1, num_frames + 1))
    return [int(k) for k in np.unique(np.linspace(1, num_frames, num_prefixes).round().astype(np.int64))]


def minmax_no_eps(values: np.ndarray) -> np.ndarray:
    """Min-max over the episode without ε, in float64; a constant (or single) curve is all ones."""
    r = np.asarray(values, dtype=np.float64)
    span = r.max() - r.min()
    return np.ones_like(r) if span == 0 else (r - r.min()) / span


def _budget(backend: HFBackend) -> dict:
    vp = backend.processor.video_processor
    return {
        "factor": vp.patch_size * vp.merge_size,
        "min_pixels": vp.size["shortest_edge"],
        "max_pixels": vp.size["longest_edge"],
        "temporal": vp.temporal_patch_size,
    }


# ---- the pipelines -----------------------------------------------------------------------------------
class PeerPipeline:
    """A peer's whole pipeline around the model: calls, resizing, prompt, answer, precision, normalisation."""

    name: ClassVar[str] = "?"
    #: log-softmax in float32 (else in the logits' dtype)
    upcast: ClassVar[bool] = False
    #: prompt styles the peer's code has: "authors" (user-turn header, no end of turn) and maybe "chat"
    styles: ClassVar[tuple[str, ...]] = ("authors", "chat")
    #: tokens read beside the answer at the same position (signal name, word)
    extra: ClassVar[tuple[tuple[str, str], ...]] = ()

    def calls(
        self, backend: HFBackend, num_frames: int, fps: float, hw: tuple[int, int], num_prefixes
    ) -> list[Call]:
        raise NotImplementedError

    def base(self, frames: np.ndarray) -> np.ndarray:
        """What every raw frame becomes before a call picks it (done once per episode)."""
        return frames

    def final(self, frames: np.ndarray, call: Call) -> np.ndarray:
        """A call's frames (from `base`) at the call's size."""
        return resize_torchvision(frames, call.hw)

    def prompt(self, backend: HFBackend, instruction: str, style: str) -> tuple[str, str]:
        """(text before the video, text after it ending with the answer, whose last token is scored)."""
        question = PEER_PREFIX + PEER_SUFFIX.format(instruction=instruction)
        if style == "chat":  # the full template with its generation prompt, then the word (no space)
            before, after = backend.chat_split([{"type": "video"}, {"type": "text", "text": question}])
            return before, after + "True"
        before = backend.chat_split([{"type": "video"}, {"type": "text", "text": "x"}])[0]
        return before, question + " True"

    def normalise(self, values: np.ndarray) -> np.ndarray:
        return minmax_no_eps(values)


class PaperPipeline(PeerPipeline):
    """The authors' first public code, which produced the paper's numbers (module docstring)."""

    name = "paper"
    assumed_fps = 24.0  # transformers' default when a video comes without metadata

    # to_pil: 244x244; then qwen-vl-utils fetch_image rounds to a 56-px grid (a bug passes 28, the
    # merged patch, where it expects the patch size): 224x224
    small = image_budget_size(244, 244, 56, 4 * 56**2, 16384 * 56**2)

    def base(self, frames):
        return resize_pil(resize_pil(frames, (244, 244)), self.small)

    def _video_size(self, h: int, w: int, num_frames: int) -> tuple[int, int]:
        # qwen-vl-utils fetch_video on a frame list: its per-video pixel bounds for `num_frames` frames
        min_pixels = 128 * 28 * 28
        total = 128000 * 28 * 28 * 0.9
        max_pixels = max(min(768 * 28 * 28, total / num_frames * 2), int(min_pixels * 1.05))
        return image_budget_size(h, w, 28, min_pixels, max_pixels)

    def calls(self, backend, num_frames, fps, hw, num_prefixes):
        budget = _budget(backend)
        out = []
        for length in truncated_prefix_lengths(num_frames, num_prefixes):
            padded = list(range(length)) + ([length - 1] if length % 2 else [])
            t = len(padded)
            n = min(max(int(t / self.assumed_fps * 2), 4), 768, t)
            positions = np.linspace(0, t - 1, n).round().astype(int).tolist()
            video_hw = self._video_size(*self.small, t)
            size = video_budget_size(n, *video_hw, frames_round_up=False, **budget)
            frames = tuple(padded[p] for p in positions)
            out.append(Call(length - 1, frames, size, self.assumed_fps, tuple(positions), video_hw))
        return out

    def final(self, frames, call):
        # qwen-vl-utils' torchvision resize to its video size (uint8), as float; then the processor's
        # resize of that float tensor (not clamped)
        big = resize_torchvision(frames, call.via, v1=True).astype(np.float32)
        return resize_torchvision(big, call.hw)


class AuthorsPipeline(PeerPipeline):
    """The authors' current code (module docstring)."""

    name = "authors"
    sample_fps = 2.0
    extra = (("log_p_false", " False"),)

    def schedule(self, num_frames: int, fps: float) -> list[int]:
        """Their prefix-stable frame schedule over the whole episode (`_aligned_video_indices`)."""
        if num_frames == 1:
            return [0]
        step = max(fps / self.sample_fps, 1.0)
        idx = np.clip(np.round(np.arange(0.0, float(num_frames), step)).astype(int), 0, num_frames - 1)
        return list(dict.fromkeys(idx.tolist()))

    def base(self, frames):
        return resize_pil(frames, (244, 244))

    def calls(self, backend, num_frames, fps, hw, num_prefixes):
        budget, schedule = _budget(backend), self.schedule(num_frames, fps)
        out = []
        for length in truncated_prefix_lengths(num_frames, num_prefixes):
            raw = [i for i in schedule if i < length] or [0]
            raw = raw * 2 if len(raw) == 1 else raw
            size = video_budget_size(len(raw), 244, 244, frames_round_up=False, **budget)
            out.append(Call(length - 1, tuple(raw), size, float(fps), tuple(raw)))
        return out


class LeRobotPipeline(PeerPipeline):
    """LeRobot's port, as its episode labelling script runs it (module docstring)."""

    name = "lerobot"
    upcast = True
    styles = ("authors",)
    fps_label = 2.0

    def calls(self, backend, num_frames, fps, hw, num_prefixes):
        budget = _budget(backend)
        out = []
        for length in uniform_prefix_lengths(num_frames, num_prefixes):
            size = video_budget_size(length, *hw, **budget)
            out.append(Call(length - 1, tuple(range(length)), size, self.fps_label, tuple(range(length))))
        return out


PIPELINES: dict[str, type[PeerPipeline]] = {
    p.name: p for p in (PaperPipeline, AuthorsPipeline, LeRobotPipeline)
}


@dataclass(frozen=True)
class AllFrames:
    """Model-free and picklable: an episode -> every raw frame at its own size (peers choose per call)."""

    def __call__(self, episode):
        from topreward.backends.base import ModelVideo
        from topreward.episode import validate_frames

        frames = validate_frames(episode.frames(), what=f"frames of {episode.source}")
        return ModelVideo(frames, np.arange(episode.num_frames), episode.fps)


def peer_pipeline(name: str, options: dict, defaults: dict) -> PeerPipeline | None:
    """The pipeline called `name` (None for ours), after checking that `options` leave it whole."""
    if name == "topreward":
        return None
    if name not in PIPELINES:
        raise ValueError(f"unknown conventions {name!r}; choose one of {', '.join(CONVENTIONS)}")
    pipeline = PIPELINES[name]()
    changed = [k for k in FIXED_BY_PEERS if k in options and options[k] != defaults.get(k)]
    if changed:
        flags = " ".join("--" + k.replace("_", "-") for k in changed)
        raise ValueError(
            f"conventions={name!r} reproduces that pipeline whole, and it decides {', '.join(changed)} itself; "
            f"drop {flags} (or use conventions='topreward' to choose them)"
        )
    style = options.get("prompt_style", "authors")
    if style not in pipeline.styles:
        raise ValueError(
            f"conventions={name!r} has no prompt_style {style!r}; its code has {', '.join(pipeline.styles)}"
        )
    return pipeline
