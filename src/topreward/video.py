"""Video files in and out with PyAV: probe, decode only the frames asked for, write mp4."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int
    fps: float
    width: int
    height: int


def _open(path: Path):
    import av

    if not path.exists():
        raise FileNotFoundError(f"video file not found: {path}")
    if path.is_dir():
        raise ValueError(
            f"{path} is a folder, not a video file; pass an .mp4 (or use Episode.from_frames_dir)"
        )
    try:
        return av.open(str(path))
    except av.error.FFmpegError as e:
        raise ValueError(
            f"cannot read video {path}: {e}. Is it a valid video file (mp4, mkv, webm, avi)?"
        ) from e


def probe_video(path: str | Path) -> VideoInfo:
    """Frame count, frame rate and size of the first video stream.

    The frame count is taken from the container when present and otherwise counted by demuxing (no decode).
    """
    import av

    path = Path(path)
    with _open(path) as container:
        if not container.streams.video:
            raise ValueError(f"{path} has no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        if not rate:
            raise ValueError(
                f"{path}: the video stream has no frame rate; give it (fps= in Python, --source-fps on the "
                "command line)"
            )
        n = stream.frames
        if not n:
            try:
                n = sum(1 for p in container.demux(stream) if p.size > 0)
            except av.error.FFmpegError as e:
                raise ValueError(f"{path}: the video is corrupt ({e})") from e
        if n <= 0:
            raise ValueError(f"{path} has zero frames; it cannot be scored")
        return VideoInfo(num_frames=int(n), fps=float(rate), width=stream.width, height=stream.height)


def read_frames(path: str | Path, indices: list[int] | np.ndarray | None = None) -> np.ndarray:
    """Decode frames `indices` (ascending or not; default all) as uint8 RGB, shape (n, H, W, 3).

    Decodes sequentially and keeps only the requested frames, so memory stays at the size of the output.
    """
    import av

    path = Path(path)
    wanted = None if indices is None else np.asarray(indices, dtype=np.int64)
    if wanted is not None and wanted.size and wanted.min() < 0:
        raise ValueError(f"{path}: negative frame index {int(wanted.min())}")
    targets = None if wanted is None else set(wanted.tolist())
    last = None if wanted is None else (int(wanted.max()) if wanted.size else -1)
    kept: dict[int, np.ndarray] = {}
    with _open(path) as container:
        if not container.streams.video:
            raise ValueError(f"{path} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for i, frame in enumerate(container.decode(stream)):
                if targets is None or i in targets:
                    kept[i] = frame.to_ndarray(format="rgb24")
                if last is not None and i >= last:
                    break
        except av.error.FFmpegError as e:
            raise ValueError(f"{path}: the video is corrupt or truncated ({e})") from e
    if wanted is None:
        if not kept:
            raise ValueError(f"{path} has zero decodable frames")
        return np.stack([kept[i] for i in sorted(kept)])
    missing = [int(i) for i in wanted if int(i) not in kept]
    if missing:
        raise ValueError(
            f"{path}: frames {missing[:5]} could not be decoded ({len(kept)} decoded); "
            "the file is truncated or its frame count is wrong"
        )
    return np.stack([kept[int(i)] for i in wanted]) if wanted.size else np.zeros((0, 0, 0, 3), np.uint8)


def seek_read_frames(path: str | Path, indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """Frames `indices` of a video (file order, any order or repeats), uint8 RGB (n, H, W, 3).

    Same result as `read_frames` (the reference path, which a test compares it with), but seeks to the keyframe before
    the first wanted frame instead of decoding from the start, so reading an episode at the end of a long
    concatenated v3.0 file costs about as much as one at its start. Frame numbers are recovered from the
    timestamps (constant frame rate assumed); when that fails, it falls back to `read_frames`.
    """
    import av

    path = Path(path)
    wanted = np.asarray(indices, dtype=np.int64).reshape(-1)
    if wanted.size == 0 or int(wanted.min()) <= 0:
        return read_frames(path, wanted)  # nothing to skip (read_frames also rejects negative indices)
    if not path.is_file():
        raise FileNotFoundError(f"video file not found: {path}")
    first, last = int(wanted.min()), int(wanted.max())
    targets = set(wanted.tolist())
    kept: dict[int, np.ndarray] = {}
    usable = True
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{path} has no video stream")
            stream = container.streams.video[0]
            rate, time_base = stream.average_rate or stream.guessed_rate, stream.time_base
            if not rate or not time_base:
                usable = False
            else:
                start = stream.start_time or 0
                stream.thread_type = "AUTO"
                container.seek(
                    start + int(first / (rate * time_base)), stream=stream, backward=True, any_frame=False
                )
                for frame in container.decode(stream):
                    if frame.pts is None:
                        usable = False
                        break
                    k = round((frame.pts - start) * time_base * rate)
                    if k in targets:
                        kept[k] = frame.to_ndarray(format="rgb24")
                    if k >= last:
                        break
    except av.error.FFmpegError as e:
        raise ValueError(f"{path}: cannot decode the video, it is corrupt or truncated ({e})") from e
    if not usable or len(kept) < len(targets):
        # no timestamps, or the file ends early: the sequential reference decides (and names missing frames)
        logger.debug(
            "%s: seek decode incomplete (%d/%d frames); decoding from the start",
            path,
            len(kept),
            len(targets),
        )
        return read_frames(path, wanted)
    return np.stack([kept[int(i)] for i in wanted])


# ---------------------------------------------------------------------------------------------------------
# Episode selection


def write_video(
    path: str | Path, frames: np.ndarray, fps: float, *, crf: int = 18, gop: int | None = None
) -> Path:
    """Write uint8 RGB frames (T, H, W, 3) as an H.264 mp4 (even sizes are required by yuv420p).

    One thread for the colour conversion and one for the encoder, so the same frames give the same bytes in
    a fresh process (tests/test_video_episode.py says where that was seen not to hold); `gop` sets a fixed
    keyframe interval.
    """
    import av

    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(
            f"write_video needs uint8 RGB frames (T, H, W, 3), got {frames.dtype} {frames.shape}"
        )
    h, w = frames.shape[1:3]
    if h % 2 or w % 2:
        raise ValueError(f"H.264 needs even frame sizes, got {h}x{w}; crop or resize first")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(crf), "threads": "1"}
        if gop is not None:
            stream.codec_context.gop_size = gop
            stream.options = {**stream.options, "sc_threshold": "0"}  # no extra keyframes at scene cuts
        for img in frames:
            # RGB -> YUV here, on one thread: swscale's default picks a thread count per machine and load
            yuv = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p", threads=1)
            for packet in stream.encode(yuv):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
