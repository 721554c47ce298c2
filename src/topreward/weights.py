"""Training weights from an annotation file: advantage-weighted BC (TOPReward §5.3, Eq.5) and episode ranking.

Eq.5 lost its symbols in our copy of the paper; its text: values come from TOPReward, "advantages by
subtracting the dataset mean", and a maximum weight so a few actions do not dominate. Our reading:

    A_t = r_t − mean(r)          r_t = the per-frame dense reward of the annotation (Eq.3), mean over the dataset
    w_t = min(exp(A_t / β), w_max)

β (`beta`) defaults to the standard deviation of A over the dataset ("auto"), so weights spread like
exp(±1) whatever the reward scale; w_max defaults to 2 (the δ_max the one public AWR implementation of
TOPReward uses). Frames without a value (NaN reward: skipped episodes) get weight NaN, which LeRobot's
RA-BC also reads as "no value".
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from topreward.annotate import _pyarrow, read_annotations


def awr_weights(
    rewards: np.ndarray, beta: float | str = "auto", max_weight: float = 2.0
) -> tuple[np.ndarray, np.ndarray, float]:
    """(weights, advantages, beta used) for per-frame rewards; NaN rewards give NaN."""
    r = np.asarray(rewards, dtype=np.float64)
    finite = np.isfinite(r)
    if not finite.any():
        raise ValueError("no finite rewards: every episode was skipped; nothing to weight")
    adv = r - r[finite].mean()
    if beta == "auto":
        beta = float(adv[finite].std()) or 1.0
    beta = float(beta)
    if beta <= 0:
        raise ValueError(f"beta must be positive or 'auto', got {beta}")
    if max_weight <= 0:
        raise ValueError(f"max_weight must be positive, got {max_weight}")
    w = np.minimum(np.exp(np.where(finite, adv, 0.0) / beta), max_weight)
    w[~finite] = np.nan
    return w, adv, beta


def write_weights(
    annotations: str | Path, out: str | Path, beta: float | str = "auto", max_weight: float = 2.0
) -> Path:
    """Read an annotation parquet, write `out` with `weight` and `advantage` beside the RA-BC columns."""
    pa, pq = _pyarrow()
    table, meta = read_annotations(annotations)
    w, adv, used_beta = awr_weights(table["dense_reward"].to_numpy(zero_copy_only=False), beta, max_weight)
    keep = ["index", "episode_index", "frame_index", "progress_sparse", "progress_dense", "dense_reward"]
    cols = {k: table[k] for k in keep}
    cols["advantage"] = pa.array(adv.astype(np.float32))
    cols["weight"] = pa.array(w.astype(np.float32))
    info = {
        **meta,
        "weights": {
            "formula": "min(exp((r - mean r) / beta), max_weight)",
            "beta": used_beta,
            "max_weight": max_weight,
            "annotations": str(annotations),
        },
    }
    out_t = pa.table(cols).replace_schema_metadata(
        {"reward_model_path": str(meta.get("model_id", "")), "topreward": json.dumps(info, sort_keys=True)}
    )
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    pq.write_table(out_t, tmp)
    tmp.replace(out)
    return out


def rank_episodes(annotations: str | Path) -> list[dict]:
    """Episodes sorted by success score, best first (skipped episodes last, score None)."""
    table, meta = read_annotations(annotations)
    ep = table["episode_index"].to_numpy()
    score = table["success_score"].to_numpy(zero_copy_only=False)
    rows = []
    for e in np.unique(ep):
        s = score[ep == e]
        rows.append(
            {
                "episode_index": int(e),
                "success_score": None if np.isnan(s[0]) else float(s[0]),
                "num_frames": int((ep == e).sum()),
            }
        )
    present = {r["episode_index"] for r in rows}
    for skipped in meta.get("skipped", []):  # episodes that could not even be opened have no rows
        if skipped["episode_index"] not in present:
            rows.append(
                {"episode_index": int(skipped["episode_index"]), "success_score": None, "num_frames": 0}
            )
    return sorted(
        rows, key=lambda r: (r["success_score"] is None, -(r["success_score"] or 0.0), r["episode_index"])
    )
