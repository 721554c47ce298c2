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


def _value_axis(result: ScoreResult):
    """(to_value, to_progress) when progress is an affine map of the raw values (e.g. min-max), else None.

    Then the raw values are the same curve as progress, so they get a second y scale, not a second line.
    """
    v, p = np.asarray(result.values, float), np.asarray(result.progress, float)
    if len(v) < 2 or np.ptp(p) <= 0 or not np.all(np.isfinite(v)):
        return None
    slope, offset = np.polyfit(p, v, 1)
    if slope <= 0 or not np.allclose(slope * p + offset, v, rtol=1e-4, atol=1e-6 * max(1.0, np.abs(v).max())):
        return None
    return (lambda x: slope * x + offset), (lambda y: (y - offset) / slope)


def plot_result(
    result: ScoreResult,
    path: str | Path,
    episode: Episode | None = None,
    *,
    ground_truth: np.ndarray | None = None,
    thumbnails: int = 6,
) -> Path:
    """Save the progress curve of `result` (thumbnails of `episode` along the top).

    One curve: progress at the evaluation points, joined by the per-frame interpolation the result uses.
    When progress is an affine map of the method's raw values (TOPReward's min-max), the raw value is a
    second y scale on the right, not a second line; otherwise the raw values are drawn as their own line.
    `ground_truth` (per-frame progress in [0, 1]) is overlaid dashed. The title names the method, the
    instruction and the model that scored it.
    """
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
    t_points = result.prefix_end_frames / result.fps
    ax.plot(t_points, result.progress, "o-", color="tab:blue", label=f"progress ({result.method})")
    if ground_truth is not None:
        t_frames = np.arange(len(ground_truth)) / result.fps
        ax.plot(t_frames, ground_truth, "--", color="black", label="ground truth")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("progress")
    ax.set_ylim(-0.05, 1.05)
    scale = _value_axis(result)
    if scale is not None:
        ax.secondary_yaxis("right", functions=scale).set_ylabel(result.value_name)
    else:
        twin = ax.twinx()
        twin.plot(t_points, result.values, ":", color="tab:red", label=result.value_name)
        twin.set_ylabel(result.value_name, color="tab:red")
        twin.legend(loc="lower right", fontsize=8)
    ax.legend(loc="upper left", fontsize=8)
    model = result.model.get("id") or "?"
    ax.set_title(
        f"{result.method}: {result.instruction!r}  success score {result.success_score:.2f}\nscored by {model}",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
