"""From prefix log-probabilities to progress, per-frame progress, success scores and dense rewards.

TOPReward §3.2 and §5.2. The paper's Eq.3 lost its symbols in the text we have; the text says α is "a
scaling factor" and δ_max "a maximum allowed reward". Our reading (also written in `dense_rewards`):
r_t = min(α · (p_t − p_{t−1}), δ_max) on per-frame progress p, with r_0 = 0.
"""

from __future__ import annotations

import numpy as np


def minmax_progress(values: np.ndarray | list[float], eps: float = 1e-6) -> np.ndarray:
    """Eq.2: per-episode min-max normalisation, (r − min r) / (max r − min r + ε), in [0, 1)."""
    r = np.asarray(values, dtype=np.float64)
    if r.size == 0:
        raise ValueError("no values to normalise")
    return (r - r.min()) / (r.max() - r.min() + eps)


def frame_progress(
    prefix_end_frames: np.ndarray | list[int], progress: np.ndarray | list[float], num_frames: int
) -> np.ndarray:
    """Progress at every source frame: linear between prefix end frames, held flat before the first one."""
    x = np.asarray(prefix_end_frames, dtype=np.float64)
    return np.interp(np.arange(num_frames, dtype=np.float64), x, np.asarray(progress, dtype=np.float64))


def success_score(log_p_true: np.ndarray | list[float], window: int = 3) -> float:
    """§5.2: mean log P(True) over the last `window` prefixes (higher = more likely a success)."""
    r = np.asarray(log_p_true, dtype=np.float64)
    if window < 1:
        raise ValueError(f"success window must be >= 1, got {window}")
    return float(r[-window:].mean())


def dense_rewards(
    progress: np.ndarray | list[float], scale: float = 1.0, max_reward: float = 1.0
) -> np.ndarray:
    """Eq.3 (our reading): r_t = min(scale · (p_t − p_{t−1}), max_reward), r_0 = 0.

    Args:
        progress: per-step progress (usually per source frame).
        scale: α, how strongly good and bad steps are told apart.
        max_reward: δ_max, a cap so a few steps with large jumps do not dominate.
    """
    p = np.asarray(progress, dtype=np.float64)
    inc = np.diff(p, prepend=p[:1])
    return np.minimum(scale * inc, max_reward)
