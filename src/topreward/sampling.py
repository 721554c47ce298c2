"""Which frames the model sees, at what size, and which prefixes are scored.

Everything here is decided once per episode, so that prefix k is exactly the first k sampled frames at
one resolution: a per-video pixel budget shared across frames (as transformers' Qwen video processors
apply by default) would make the resolution depend on the prefix length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from topreward.config import check_types, option

if TYPE_CHECKING:
    from topreward.episode import Episode


@dataclass
class SamplingConfig:
    """Which frames the model sees, at what size, and at which points the method is evaluated."""

    fps: float = option(2.0, "frames per second of video time shown to the model")
    max_frames: int = option(32, "cap on sampled frames (stride grows to cover the episode)")
    max_pixels: int = option(256 * 256, "per-frame pixel budget (aspect kept, rounded to the patch grid)")
    size: tuple[int, int] | None = option(None, "fixed frame size HxW instead of max_pixels")
    num_prefixes: int | None = option(
        15, "evaluation points: uniform prefix lengths from 1 to N; None = every sampled frame"
    )

    def __post_init__(self) -> None:
        check_types(self)
        if self.num_prefixes is not None and self.num_prefixes < 2:
            raise ValueError(f"num_prefixes must be >= 2 or None (every frame), got {self.num_prefixes}")
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"fps must be a positive number, got {self.fps}")
        if self.max_frames < 2:
            raise ValueError(
                f"max_frames must be at least 2 (a progress curve needs two frames), got {self.max_frames}"
            )
        if self.max_pixels <= 0:
            raise ValueError(f"max_pixels must be positive, got {self.max_pixels}")
        if self.size is not None:
            if len(self.size) != 2 or min(self.size) <= 0:
                raise ValueError(f"size must be (height, width) with positive sides, got {self.size}")
            self.size = (int(self.size[0]), int(self.size[1]))


@dataclass
class ModelVideo:
    """The frames a model sees for one episode: sampled once, resized once.

    Attributes:
        frames: uint8 RGB (N, h, w, 3) at model resolution.
        source_indices: index in the source video of each sampled frame.
        source_fps: frame rate of the source video.
        rate: the sampling rate, when it is known exactly (default: the average over `source_indices`).
        clock: when set, the model is told the frames are consecutive at `clock` frames per second
            (indices 0, 1, ... whatever their source indices), as qwen-vl-utils tells it for a list of
            frames (RoboReward); `source_indices` still place the values in the episode.
    """

    frames: np.ndarray
    source_indices: np.ndarray
    source_fps: float
    rate: float | None = None
    clock: float | None = None

    def __post_init__(self) -> None:
        self.frames = np.asarray(self.frames)
        self.source_indices = np.asarray(self.source_indices)

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def sampled_fps(self) -> float:
        """Rate of the sampled frames in frames per second of video time: `rate` when the sampler knows it
        (a stream knows its stride before it holds two frames), else the average over the frames."""
        if self.rate is not None:
            return self.rate
        span = (self.source_indices[-1] - self.source_indices[0]) / self.source_fps
        return (len(self.source_indices) - 1) / span if span > 0 else self.source_fps


def appended(video: ModelVideo, frames: np.ndarray, source_indices: np.ndarray | list[int]) -> ModelVideo:
    """`video` with `frames` appended; error unless they match its frame shape and come after its last frame."""
    frames = np.asarray(frames)
    idx = np.asarray(source_indices, dtype=np.int64)
    if frames.ndim != 4 or frames.shape[1:] != video.frames.shape[1:] or frames.dtype != video.frames.dtype:
        raise ValueError(
            f"new frames have shape {frames.shape} and dtype {frames.dtype}; they must be "
            f"(n, {', '.join(map(str, video.frames.shape[1:]))}) {video.frames.dtype} like the cached video's "
            "(prepare them with the same FramePreparer)"
        )
    if (
        len(idx) != len(frames)
        or (len(idx) and idx[0] <= video.source_indices[-1])
        or np.any(np.diff(idx) <= 0)
    ):
        raise ValueError(
            f"source_indices {idx.tolist()} must be increasing, one per new frame, after the last cached "
            f"frame {int(video.source_indices[-1])}"
        )
    return ModelVideo(
        np.concatenate([video.frames, frames]),
        np.concatenate([video.source_indices, idx]),
        video.source_fps,
        video.rate,
        video.clock,
    )


def sample_indices(num_frames: int, source_fps: float, fps: float, max_frames: int) -> np.ndarray:
    """Source-frame indices to show the model: uniform over the whole episode, first and last frame included.

    The count is the episode's duration times `fps` (plus one for the start), capped by `max_frames`.
    """
    if num_frames < 2:
        raise ValueError(
            f"the episode has {num_frames} frame(s); a progress curve needs at least 2 frames "
            "(score a longer clip, or duplicate the frame if you only want a single success probability)"
        )
    span_s = (num_frames - 1) / source_fps
    n = min(max_frames, num_frames, max(2, math.floor(span_s * fps + 1e-9) + 1))
    return np.unique(np.round(np.linspace(0, num_frames - 1, n)).astype(np.int64))


def spread_indices(num_frames: int, count: int) -> np.ndarray:
    """`np.linspace(0, T - 1, count, dtype=int)` (truncated) when the episode is longer, else every frame: how
    the inference code of trained reward models (RoboReward, SOLE-R1) picks its frames."""
    if num_frames > count:
        return np.linspace(0, num_frames - 1, count).astype(np.int64)
    return np.arange(num_frames, dtype=np.int64)


def frame_size(
    height: int, width: int, factor: int, max_pixels: int, size: tuple[int, int] | None = None
) -> tuple[int, int]:
    """One (height, width) for every frame of an episode, multiples of `factor` (the model's patch grid)."""
    if size is not None:
        h, w = size
    else:
        scale = min(1.0, math.sqrt(max_pixels / (height * width)))
        h, w = height * scale, width * scale
    h = max(factor, int(round(h / factor)) * factor)
    w = max(factor, int(round(w / factor)) * factor)
    if size is None:  # rounding up may cross the budget; step down to stay within it
        while h * w > max(max_pixels, factor * factor) and max(h, w) > factor:
            if h >= w:
                h -= factor
            else:
                w -= factor
    return h, w


def qwen_smart_size(
    height: int,
    width: int,
    factor: int = 32,
    min_pixels: int = 4 * 32 * 32,
    max_pixels: int = 16384 * 32 * 32,
) -> tuple[int, int]:
    """qwen-vl-utils 0.0.14's `smart_resize`, which trained reward models' own pipelines apply (Robometer,
    RoboReward): sides rounded to `factor` (Python's round, half to even), then scaled down (floor) or up
    (ceil) to the grid only when outside [min_pixels, max_pixels]."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"frame aspect ratio {max(height, width) / min(height, width):.0f} is over 200")
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


def resize_frames(frames: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Bicubic resize of uint8 RGB frames (T, H, W, 3) to `hw`."""
    from PIL import Image

    h, w = hw
    if frames.shape[1:3] == (h, w):
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BICUBIC)) for f in frames])


def prefix_lengths(num_sampled: int, num_prefixes: int | None) -> list[int]:
    """Prefix lengths (in sampled frames) to score: K uniform lengths from 1 to N, or every length if None."""
    if num_sampled < 1:
        raise ValueError("no sampled frames")
    if num_prefixes is None or num_prefixes >= num_sampled:
        return list(range(1, num_sampled + 1))
    if num_prefixes < 2:
        raise ValueError(f"num_prefixes must be at least 2 (or None for every frame), got {num_prefixes}")
    return sorted({int(k) for k in np.round(np.linspace(1, num_sampled, num_prefixes))})


@dataclass(frozen=True)
class FramePreparer:
    """Model-free and picklable: an episode -> the frames the model sees (`ModelVideo`).

    Built from the sampling options and the model's patch grid; runs anywhere (a Ray CPU task, a
    dataloader worker) without the model.
    """

    sampling: SamplingConfig
    patch_factor: int

    def __call__(self, episode: Episode) -> ModelVideo:
        from topreward.episode import validate_frames

        cfg = self.sampling
        idx = sample_indices(episode.num_frames, episode.fps, cfg.fps, cfg.max_frames)
        frames = validate_frames(episode.frames(idx), what=f"frames of {episode.source}")
        hw = frame_size(frames.shape[1], frames.shape[2], self.patch_factor, cfg.max_pixels, cfg.size)
        return ModelVideo(resize_frames(frames, hw), idx, episode.fps)
