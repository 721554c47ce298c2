"""`Episode`: one robot trajectory — frames (decoded lazily), frame rate, instruction, optional annotations."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from topreward.video import probe_video, seek_read_frames

FrameLoader = Callable[[np.ndarray], np.ndarray]
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def validate_frames(frames: Any, what: str = "frames") -> np.ndarray:
    """Check that `frames` is uint8 RGB of shape (T, H, W, 3) and return it as a numpy array."""
    if hasattr(frames, "detach") and hasattr(frames, "numpy"):  # a torch tensor
        frames = frames.detach().cpu().numpy()
    if not isinstance(frames, np.ndarray):
        raise TypeError(f"{what} must be a numpy array of shape (T, H, W, 3), got {type(frames).__name__}")
    if frames.ndim == 3:
        raise ValueError(
            f"{what} has shape {frames.shape}: grey frames (T, H, W)? Convert to RGB with "
            "np.repeat(frames[..., None], 3, axis=-1)"
        )
    if frames.ndim != 4:
        raise ValueError(f"{what} must have shape (T, H, W, 3), got {frames.shape}")
    if frames.shape[-1] == 4:
        raise ValueError(
            f"{what} has 4 channels (RGBA, shape {frames.shape}); drop alpha with frames[..., :3]"
        )
    if frames.shape[-1] != 3:
        if frames.shape[1] == 3:
            raise ValueError(
                f"{what} has shape {frames.shape}, channels first; transpose with frames.transpose(0, 2, 3, 1)"
            )
        raise ValueError(f"{what} must have 3 colour channels last (T, H, W, 3), got {frames.shape}")
    if frames.dtype != np.uint8:
        hint = (
            "scale floats in [0, 1] with (frames * 255).round().astype(np.uint8)"
            if np.issubdtype(frames.dtype, np.floating)
            else "convert with frames.astype(np.uint8) after checking the range is 0..255"
        )
        raise ValueError(f"{what} must be uint8 RGB, got dtype {frames.dtype}; {hint}")
    if frames.shape[0] == 0:
        raise ValueError(f"{what} has zero frames; an episode needs at least 2 frames to be scored")
    if min(frames.shape[1:3]) == 0:
        raise ValueError(f"{what} has shape {frames.shape}: frames of zero height or width; pass real images")
    return frames


@dataclass
class Episode:
    """One trajectory. Frames are read on demand through `frames(indices)`.

    Attributes:
        num_frames: number of source frames.
        fps: source frame rate (frames per second).
        instruction: the task text, if known.
        source: where the frames come from (file path or a description), used in messages.
        annotations: optional extras, e.g. ``{"subtasks": [...], "success": True}``.
        episode_id: optional identifier (dataset episode index, file stem).
    """

    num_frames: int
    fps: float
    loader: FrameLoader = field(repr=False)
    instruction: str | None = None
    source: str = "<array>"
    annotations: dict[str, Any] = field(default_factory=dict)
    episode_id: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.num_frames, bool) or not isinstance(self.num_frames, (int, np.integer)):
            raise TypeError(f"{self.source}: num_frames must be a whole number, got {self.num_frames!r}")
        if self.num_frames <= 0:
            raise ValueError(f"{self.source}: episode has zero frames; it cannot be scored")
        if (
            isinstance(self.fps, bool)
            or not isinstance(self.fps, (int, float, np.number))
            or not (math.isfinite(self.fps) and self.fps > 0)
        ):
            raise ValueError(
                f"{self.source}: fps (the recorded frame rate) must be a finite number > 0, got {self.fps!r}"
            )

    def frames(self, indices: list[int] | np.ndarray | None = None) -> np.ndarray:
        """Frames at `indices` (default: all), uint8 RGB (n, H, W, 3)."""
        idx = np.arange(self.num_frames) if indices is None else np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_frames):
            raise IndexError(
                f"{self.source}: frame indices must lie in [0, {self.num_frames}), got {idx.tolist()}"
            )
        frames = self.loader(idx)
        if len(frames) != len(idx):  # e.g. a video shorter than its metadata says
            shown = idx.tolist() if len(idx) <= 8 else [*idx[:4].tolist(), "...", *idx[-2:].tolist()]
            raise ValueError(
                f"{self.source}: asked for {len(idx)} frames (indices {shown}) of its {self.num_frames}, its "
                f"frame loader returned {len(frames)}: the episode's declared length and its frames disagree; "
                "fix the source (or the num_frames it declares)"
            )
        return frames

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    @classmethod
    def from_array(cls, frames: Any, fps: float, instruction: str | None = None, **kwargs: Any) -> Episode:
        arr = validate_frames(frames)
        return cls(
            num_frames=len(arr),
            fps=float(fps),
            loader=lambda idx: arr[idx],
            instruction=instruction,
            **kwargs,
        )

    @classmethod
    def from_video(
        cls, path: str | Path, instruction: str | None = None, fps: float | None = None, **kwargs: Any
    ) -> Episode:
        """An episode backed by a video file; only the frames the sampler picks are decoded."""
        path = Path(path)
        info = probe_video(path)
        kwargs.setdefault("episode_id", path.stem)
        return cls(
            num_frames=info.num_frames,
            fps=float(fps or info.fps),
            loader=lambda idx: seek_read_frames(path, idx),
            instruction=instruction,
            source=str(path),
            **kwargs,
        )

    @classmethod
    def from_frames_dir(
        cls, path: str | Path, fps: float, instruction: str | None = None, **kwargs: Any
    ) -> Episode:
        """An episode from a folder of image files, in name order."""
        from PIL import Image

        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"frame folder not found: {path}")
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"{path} has no image files ({', '.join(_IMAGE_SUFFIXES)})")

        def load(idx: np.ndarray) -> np.ndarray:
            frames = []
            for i in idx:
                try:
                    with Image.open(files[i]) as image:
                        frames.append(np.asarray(image.convert("RGB")))
                except OSError as e:  # PIL's UnidentifiedImageError, a truncated file
                    raise ValueError(
                        f"{files[i]}: not a readable image ({e}); replace or delete the file"
                    ) from e
                if frames[-1].shape != frames[0].shape:
                    first = files[idx[0]].name
                    raise ValueError(
                        f"{files[i]} is {frames[-1].shape[1]}x{frames[-1].shape[0]} pixels, {first} is "
                        f"{frames[0].shape[1]}x{frames[0].shape[0]}: the frames of one episode need one size; "
                        "resize them to one size first"
                    )
            return np.stack(frames)

        kwargs.setdefault("episode_id", path.name)
        return cls(
            num_frames=len(files),
            fps=float(fps),
            loader=load,
            instruction=instruction,
            source=str(path),
            **kwargs,
        )


def as_episode(video: Any, instruction: str | None = None, fps: float | None = None) -> Episode:
    """Turn what a user passes (Episode, path to a video or frame folder, array) into an Episode."""
    if isinstance(video, Episode):
        if instruction is not None:
            return Episode(**{**video.__dict__, "instruction": instruction})
        return video
    if isinstance(video, (str, Path)):
        path = Path(video)
        if path.is_dir():
            if fps is None:
                raise ValueError(
                    f"{path} is a frame folder: give the images' frame rate "
                    "(fps= in Python, --source-fps on the command line)"
                )
            return Episode.from_frames_dir(path, fps=fps, instruction=instruction)
        return Episode.from_video(path, instruction=instruction, fps=fps)
    if fps is None:
        raise ValueError("frames given as an array need fps= (the frame rate they were recorded at)")
    return Episode.from_array(video, fps=fps, instruction=instruction)


#: the control views of an episode: what a method should NOT call progress (docs/evaluation.md, "Bench and its controls")
CONTROL_VIEWS: tuple[str, ...] = ("static", "reversed")


def view_order(view: str, num_frames: int) -> np.ndarray:
    """Which of `num_frames` frames each frame of a control view shows: `static` the first one throughout
    (a prefix's length is all that changes), `reversed` the frames played backwards."""
    if view == "static":
        return np.zeros(num_frames, np.int64)
    if view == "reversed":
        return np.arange(num_frames, dtype=np.int64)[::-1].copy()
    raise ValueError(f"unknown control view {view!r}; choose one of {', '.join(CONTROL_VIEWS)}")


def control_view(ep: Episode, view: str) -> Episode:
    """`ep` seen through a control view (same length, fps and instruction; no annotations)."""
    order = view_order(view, ep.num_frames)
    return Episode(
        ep.num_frames,
        ep.fps,
        lambda idx: ep.frames(order[np.asarray(idx, np.int64)]),
        ep.instruction,
        f"{ep.source} [{view}]",
        {},
        ep.episode_id,
    )
