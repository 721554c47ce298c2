"""PNG of a progress curve with frame thumbnails (matplotlib, extra `[plot]`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from topreward.episode import Episode
from topreward.result import ScoreResult


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError("plots need matplotlib: pip install 'topreward[plot]'") from e
    return plt


def plot_result(
    result: ScoreResult,
    path: str | Path,
    episode: Episode | None = None,
    *,
    ground_truth: np.ndarray | None = None,
    thumbnails: int = 6,
) -> Path:
    """Save the progress curve (and the method's raw values) of `result`; thumbnails of `episode` along the top."""
    plt = _pyplot()
    path = Path(path)
    n_thumb = thumbnails if episode is not None else 0
    fig = plt.figure(figsize=(10, 5.5 if n_thumb else 4))
    grid = fig.add_gridspec(2 if n_thumb else 1, max(n_thumb, 1), height_ratios=[1, 2] if n_thumb else [1])
    if n_thumb:
        picks = np.unique(np.round(np.linspace(0, len(result.prefix_end_frames) - 1, n_thumb)).astype(int))
        frames = episode.frames(result.prefix_end_frames[picks])
        for j, (i, img) in enumerate(zip(picks, frames)):
            ax = fig.add_subplot(grid[0, j])
            ax.imshow(img)
            ax.set_title(
                f"t={result.prefix_end_frames[i] / result.fps:.1f}s  p={result.progress[i]:.2f}", fontsize=8
            )
            ax.axis("off")
    ax = fig.add_subplot(grid[-1, :])
    t_frames = np.arange(result.num_frames) / result.fps
    ax.plot(t_frames, result.frame_progress, color="tab:blue", lw=1, alpha=0.5, label="progress (per frame)")
    ax.plot(
        result.prefix_end_frames / result.fps,
        result.progress,
        "o-",
        color="tab:blue",
        label="progress (prefixes)",
    )
    if ground_truth is not None:
        ax.plot(t_frames[: len(ground_truth)], ground_truth, "--", color="black", label="ground truth")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("progress")
    ax.set_ylim(-0.05, 1.05)
    twin = ax.twinx()
    twin.plot(
        result.prefix_end_frames / result.fps, result.values, ":", color="tab:red", label=result.value_name
    )
    twin.set_ylabel(result.value_name, color="tab:red")
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="upper left", fontsize=8)
    ax.set_title(
        f"{result.method}: {result.instruction!r}  success score {result.success_score:.2f}", fontsize=10
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
