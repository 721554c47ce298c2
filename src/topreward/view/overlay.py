"""`topreward view --mp4`: each episode's frames with its progress curve drawn under them, for slides and papers.

As LeRobot's `examples/dataset/create_progress_videos.py` does for SARM progress, the curve grows with the
video: at frame i a run shows the values of the prefixes that end at or before i (what a scorer knew by then),
the rest of the curve faint, a playhead at i, and the legend gives each run's latest value and its VOC. Ground
truth, when known, is the dashed grey line. Small frames are scaled up by whole pixels (no smoothing), so the
top of every output frame is the source frame, pixel for pixel, before encoding.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from topreward.view.collect import ViewEpisode

#: the page's palette (page.py), one colour per run in the order of `methods`
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
PLAYHEAD = (40, 40, 40)
TRUTH = (150, 150, 150)
MIN_WIDTH = 384  # frames narrower than this are scaled up by a whole factor
MARGIN = {"left": 30, "right": 10, "top": 8, "bottom": 8}
LEGEND_LINE = 14


def rgb(color: str) -> tuple[int, int, int]:
    return tuple(int(color[i : i + 2], 16) for i in (1, 3, 5))


def faint(color: tuple[int, int, int], keep: float = 0.3) -> tuple[int, int, int]:
    return tuple(round(255 - (255 - c) * keep) for c in color)


class Panel:
    """The curve panel's geometry: frame index and progress to pixel coordinates."""

    def __init__(self, width: int, num_frames: int, runs: int):
        self.width = width
        self.legend = LEGEND_LINE * max(1, runs) + 4
        plot = max(96, round(width * 0.3))
        self.height = _even(self.legend + MARGIN["top"] + plot + MARGIN["bottom"])
        self.top = self.legend + MARGIN["top"]
        self.bottom = self.height - MARGIN["bottom"]
        self.left, self.right = MARGIN["left"], width - MARGIN["right"]
        self.num_frames = num_frames

    def x(self, frame: float) -> int:
        return round(self.left + frame / max(1, self.num_frames - 1) * (self.right - self.left))

    def y(self, value: float) -> int:
        return round(self.bottom - min(1.0, max(0.0, value)) * (self.bottom - self.top))


def _even(n: int) -> int:
    return n + n % 2


def _points(run, panel: Panel) -> list[tuple[int, float, tuple[int, int]]]:
    """A run's finite points as (frame, value, pixel), in frame order (NaN: no value at that prefix)."""
    pairs = sorted((int(f), float(v)) for f, v in zip(run.frames, run.progress) if v is not None and v == v)
    return [(f, v, (panel.x(f), panel.y(v))) for f, v in pairs]


def render_episode(episode: ViewEpisode, methods: list[str], frames: np.ndarray) -> np.ndarray:
    """The overlay frames (T, H + panel, W, 3) of one episode, given its source frames (T, H, W, 3)."""
    from PIL import Image, ImageDraw

    frames = np.asarray(frames)
    scale = max(1, math.ceil(MIN_WIDTH / frames.shape[2]))
    if scale > 1:
        frames = frames.repeat(scale, axis=1).repeat(scale, axis=2)
    pad = ((0, 0), (0, frames.shape[1] % 2), (0, frames.shape[2] % 2), (0, 0))  # H.264 needs even sizes
    frames = np.pad(frames, pad)
    runs = [(label, episode.runs[label]) for label in methods if label in episode.runs]
    panel = Panel(frames.shape[2], len(frames), len(runs))
    font = _font()

    static = Image.new("RGB", (panel.width, panel.height), "white")
    draw = ImageDraw.Draw(static)
    for level in (0.0, 0.5, 1.0):
        draw.line([(panel.left, panel.y(level)), (panel.right, panel.y(level))], fill=(225, 225, 225))
        draw.text((4, panel.y(level) - 6), f"{level:g}", fill=(110, 110, 110), font=font)
    if episode.truth is not None:
        truth = [(panel.x(i), panel.y(v)) for i, v in enumerate(episode.truth) if v is not None and v == v]
        for a, b in list(zip(truth, truth[1:]))[::2]:  # every other segment: dashed
            draw.line([a, b], fill=TRUTH, width=2)
    points = [_points(run, panel) for _, run in runs]
    colours = [rgb(COLORS[methods.index(label) % len(COLORS)]) for label, _ in runs]
    for pts, colour in zip(points, colours):
        if len(pts) > 1:
            draw.line([p for _, _, p in pts], fill=faint(colour), width=2)

    out = np.empty((len(frames), frames.shape[1] + panel.height, panel.width, 3), np.uint8)
    for i, frame in enumerate(frames):
        image = static.copy()
        draw = ImageDraw.Draw(image)
        x = panel.x(i)
        draw.line([(x, panel.top - 2), (x, panel.bottom + 2)], fill=PLAYHEAD, width=1)
        for k, ((label, run), pts, colour) in enumerate(zip(runs, points, colours)):
            known = [(v, p) for f, v, p in pts if f <= i]
            if len(known) > 1:
                draw.line([p for _, p in known], fill=colour, width=2)
            if known:
                cx, cy = known[-1][1]
                draw.ellipse([cx - 3, cy - 3, cx + 3, cy + 3], fill=colour)
            text = f"{label}  progress {f'{known[-1][0]:.2f}' if known else '-'}"
            if run.voc is not None:
                text += f"  VOC {run.voc:.2f}"
            row = 4 + k * LEGEND_LINE
            draw.rectangle([panel.left, row + 3, panel.left + 10, row + 10], fill=colour)
            draw.text((panel.left + 14, row), text, fill=(30, 30, 30), font=font)
        out[i, : frame.shape[0]] = frame
        out[i, frame.shape[0] :] = np.asarray(image)
    return out


def _font():
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=11)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def check_overlay(episodes: list[ViewEpisode], out: str | Path) -> None:
    """Refuse, before anything is written, episodes without a video and a `.mp4` file for several episodes."""
    missing = [e.episode_id for e in episodes if not e.video]
    if missing:
        raise ValueError(
            f"--mp4 draws the curve under the video's frames, and episodes {', '.join(missing[:5])} have no "
            "video; for a LeRobot parquet pass its dataset with --dataset"
        )
    if Path(out).suffix.lower() == ".mp4" and len(episodes) != 1:
        raise ValueError(
            f"--mp4 {out} names one video but the inputs hold {len(episodes)} episodes; give a folder "
            "(one episode_<id>.mp4 each)"
        )


def write_overlay(episodes: list[ViewEpisode], methods: list[str], out: str | Path) -> list[Path]:
    """Write one mp4 per episode, at the episode's frame rate: `out` ending in `.mp4` is the file of the one
    episode; otherwise it is a folder of `episode_<id>.mp4`. Returns the files written."""
    from topreward.video import seek_read_frames, write_video

    check_overlay(episodes, out)
    out = Path(out)
    one = out.suffix.lower() == ".mp4"
    if not one:
        out.mkdir(parents=True, exist_ok=True)
    sources = {Path(e.video).resolve() for e in episodes}
    written = []
    for episode in episodes:
        path = out if one else out / f"episode_{episode.episode_id}.mp4"
        if path.resolve() in sources:
            raise ValueError(f"--mp4 would write {path} over a source video; choose another path")
        numbers = np.floor((episode.start + np.arange(episode.num_frames) / episode.fps) * episode.fps + 0.5)
        frames = seek_read_frames(episode.video, numbers.astype(np.int64))
        written.append(write_video(path, render_episode(episode, methods, frames), episode.fps))
    return written
