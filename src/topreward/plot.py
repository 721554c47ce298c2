"""PNG of a progress curve with frame thumbnails (matplotlib, extra `[plot]`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from topreward.episode import Episode
from topreward.extras import optional
from topreward.result import ScoreResult


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend, or an ImportError naming the `plot` extra."""
    optional("matplotlib", "plot", "plots").use("Agg")
    return optional("matplotlib.pyplot", "plot", "plots")


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
    plt = pyplot()
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


def plot_reliability(
    probabilities: ArrayLike | dict[str, ArrayLike],
    labels: ArrayLike,
    path: str | Path | None = None,
    *,
    bins: int = 10,
    ax=None,
    title: str | None = None,
):
    """Reliability diagram: success rate vs mean predicted probability per equal-width bin.

    Args:
        probabilities: predicted P(success) per episode, or a dict `{name: probabilities}` for several
            curves (e.g. platt and isotonic) on the same episodes.
        labels: success label per episode.
        path: PNG to write (a new figure with a histogram of the probabilities below); or
        ax: a matplotlib Axes to draw the curves into instead (e.g. one panel of a bench report).
        bins: equal-width bins over [0, 1], as the ECE.

    Returns:
        The PNG path, or `ax` when drawing into one.
    """
    from topreward.metrics import expected_calibration_error, reliability_bins

    if path is None and ax is None:
        raise ValueError("pass path= (write a PNG) or ax= (draw into an existing matplotlib Axes)")
    plt = pyplot()
    curves = probabilities if isinstance(probabilities, dict) else {"calibrated": probabilities}
    fig = hist_ax = None
    if ax is None:
        fig, (ax, hist_ax) = plt.subplots(
            2, 1, figsize=(4.5, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
        )
    ax.plot([0, 1], [0, 1], ":", color="gray", label="perfect")
    for name, p in curves.items():
        mean_p, rate, count = reliability_bins(p, labels, bins)
        used = count > 0
        ece = expected_calibration_error(p, labels, bins)
        ax.plot(mean_p[used], rate[used], "o-", label=f"{name} (ECE {ece:.3f})")
        if hist_ax is not None:
            hist_ax.hist(np.asarray(p, float), bins=bins, range=(0, 1), histtype="step", label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("observed success rate")
    ax.set_title(title or f"reliability ({bins} equal-width bins)", fontsize=9)
    ax.legend(fontsize=7)
    if fig is None:
        return ax
    hist_ax.set_xlabel("predicted success probability")
    hist_ax.set_ylabel("episodes")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
