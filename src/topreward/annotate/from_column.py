"""An annotation file from a dataset's own per-frame column instead of a model: a simulator's ground-truth
progress (`topreward sim` writes `progress`), or labels people made.

The file has the same columns as one `annotate` writes with a model, so `weights`, `rank`, `view` and LeRobot's
RA-BC read it alike: an oracle to hold a reward model against (`benchmarks/policy_gain.py` does). Per episode:
`progress_sparse` = `progress_dense` = the column, `value` the column at every frame (each frame is a prefix
end), `dense_reward` its increments (Eq.3, `topreward.rewards.dense_rewards`), and `success_score` its mean over
the last `success_window` frames (the column's reading of §5.2: higher for episodes that end done).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from topreward._version import __version__
from topreward.annotate.job import AnnotateSummary, plan
from topreward.annotate.progress_file import refuse_replacing_inputs, write_parquet
from topreward.rewards import dense_rewards


def annotate_from_column(
    source,
    column: str,
    out: str | Path,
    *,
    source_info: dict[str, Any] | None = None,
    overwrite: bool = False,
    success_window: int = 3,
    reward_scale: float = 1.0,
    reward_max: float = 1.0,
) -> AnnotateSummary:
    """Write `out` from `column` of a LeRobot dataset source (`topreward.datasets.open_source`).

    Raises:
        ValueError: a source that is not a LeRobot dataset, a column it lacks, an episode whose column has
            another length than its frames or values outside [0, 1], or an `out` in the way.
    """
    from topreward.provenance import describe_source

    out = Path(out)
    if not hasattr(source, "frame_column"):
        raise ValueError(
            f"--from-column reads a per-frame column of a LeRobot dataset, and {source!r} is not one; "
            "annotate it with a model instead"
        )
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; choose another --out or add --overwrite to replace it")
    source_info = describe_source(source) if source_info is None else source_info
    refuse_replacing_inputs(out, source_info)
    values = source.frame_column(column)
    if values is None:
        raise ValueError(
            f"{source.root} has no per-frame column {column!r} in its data files; name one of its numeric "
            "columns (`topreward sim` writes `progress`)"
        )
    tasks, broken = plan(source)
    records = []
    for task in tasks:
        record = {**vars(task), "status": "ok", "reason": None, "result": None}
        column_values = values.get(task.episode_index)
        if task.episode_id in broken or column_values is None:
            record.update(status="skipped", reason=broken.get(task.episode_id, f"no {column!r} rows"))
            records.append(record)
            continue
        p = np.asarray(column_values, np.float64)
        if len(p) != task.num_frames:
            raise ValueError(
                f"{source.root}: episode {task.episode_id} has {task.num_frames} frames but {len(p)} {column!r} "
                "values; the dataset's data files disagree with its metadata"
            )
        if not (np.isfinite(p).all() and p.min() >= 0 and p.max() <= 1):
            raise ValueError(
                f"{source.root}: {column!r} of episode {task.episode_id} is not progress in [0, 1] "
                f"(min {np.nanmin(p):.3g}, max {np.nanmax(p):.3g}); name a progress column"
            )
        record["result"] = {
            "prefix_end_frames": list(range(task.num_frames)),
            "frame_progress": p.tolist(),
            "values": p.tolist(),
            "dense_rewards": dense_rewards(p, reward_scale, reward_max).tolist(),
            "success_score": float(p[-success_window:].mean()),
        }
        records.append(record)
    metadata = {
        "method": f"column:{column}",
        "config": {
            "column": column,
            "success_window": success_window,
            "reward_scale": reward_scale,
            "reward_max": reward_max,
        },
        "model_id": None,
        "model_revision": None,
        "topreward_version": __version__,
        "provenance": {"source": source_info, "column": column},
        "failed_episodes": {},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    write_parquet(records, out, metadata)
    summary = AnnotateSummary(out, scored=sum(r["status"] == "ok" for r in records))
    summary.skipped = len(records) - summary.scored
    summary.skipped_reasons = {r["episode_id"]: r["reason"] for r in records if r["status"] != "ok"}
    return summary
