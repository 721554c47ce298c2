"""The per-frame progress file `topreward annotate` writes: its columns, metadata, reader, and where LeRobot
looks for it.

Columns: LeRobot's reward-aligned behaviour cloning (RA-BC) reads `index` (global frame index),
`episode_index`, `frame_index`, `progress_sparse`, `progress_dense` (float32; NaN = no value). Every method
has one progress head, so both progress columns carry the same per-frame progress. Our own columns follow,
the same for every method: `value` (the method's raw value on the frames where an evaluation point ends, NaN
elsewhere), `prefix_end`, `dense_reward`, `success_score` (per episode, repeated on its rows); then one column
per numeric per-point signal of the method, placed like `value` (TOPReward: `log_p_true`, `log_p_false`);
with a calibration, `success_probability` and `success` per episode. Schema metadata: `reward_model_path`
(as LeRobot's writer), and `topreward` (JSON: method, config, model id — a Hub id or an absolute path —
/revision, package version, skipped episodes with reasons, and `provenance`, `topreward.provenance`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from topreward.atomic import replacing

#: where LeRobot's RA-BC looks for a progress file by default: `<dataset root>/sarm_progress.parquet`
LEROBOT_PROGRESS_FILE = "sarm_progress.parquet"
RABC_COLUMNS = ("index", "episode_index", "frame_index", "progress_sparse", "progress_dense")


def lerobot_progress_path(dataset_root: str | Path) -> Path:
    """`<root>/sarm_progress.parquet`: where `lerobot-train --use_rabc=true --dataset.root=<root>` looks
    for a progress file when `--rabc_progress_path` is not given (`annotate --into-dataset`).

    Raises:
        ValueError: `dataset_root` is not a local LeRobot dataset root (a folder with meta/info.json).
    """
    root = Path(dataset_root).expanduser()
    if not (root / "meta" / "info.json").is_file():
        raise ValueError(
            f"--into-dataset writes {LEROBOT_PROGRESS_FILE} into a local LeRobot dataset root (the folder with "
            f"meta/info.json), and {dataset_root} is not one; for a Hub dataset or other sources write "
            "--out FILE and pass --rabc_progress_path=FILE to lerobot-train"
        )
    return root.resolve() / LEROBOT_PROGRESS_FILE


def point_signals(res: dict[str, Any]) -> list[str]:
    """Names of a result's signals that hold one number per evaluation point (they get a column each)."""
    k = len(res["prefix_end_frames"])
    names = res.get("signal_names", [n for n in ("log_p_true", "log_p_false") if n in res])
    return [
        n
        for n in names
        if isinstance(res.get(n), list)
        and len(res[n]) == k
        and all(isinstance(v, (int, float)) for v in res[n])
    ]


def episode_columns(rec: dict[str, Any], signals: list[str]) -> dict[str, np.ndarray]:
    """The per-frame rows of one work record; `signals` are the per-point signal columns of the file."""
    n = rec["num_frames"]
    frame = np.arange(n, dtype=np.int64)
    cols: dict[str, np.ndarray] = {
        "index": rec["dataset_from_index"] + frame,
        "episode_index": np.full(n, rec["episode_index"], np.int64),
        "frame_index": frame,
    }
    nan = np.full(n, np.nan, np.float32)
    res = rec["result"]
    names = [
        "progress_sparse",
        "progress_dense",
        "value",
        "prefix_end",
        "dense_reward",
        "success_score",
        *signals,
    ]
    # annotate(calibration=...): P(success) and the decision, per episode
    calibrated = "success_probability" in rec
    if calibrated:
        names += ["success_probability", "success"]
    if res is None:
        cols.update({name: nan.copy() for name in names})
        cols["prefix_end"] = np.zeros(n, bool)
        if calibrated:
            cols["success"] = np.full(n, None, object)  # a nullable bool column
        return cols
    progress = np.asarray(res["frame_progress"], np.float32)
    ends = np.asarray(res["prefix_end_frames"], np.int64)
    cols["progress_sparse"] = progress
    cols["progress_dense"] = progress.copy()
    per_point = {"value": res.get("values", res.get("log_p_true")), **{s: res.get(s) for s in signals}}
    for name, values in per_point.items():
        col = nan.copy()
        if values is not None and len(values) == len(ends):
            col[ends] = np.asarray(values, np.float32)
        cols[name] = col
    cols["prefix_end"] = np.isin(frame, ends)
    cols["dense_reward"] = np.asarray(res["dense_rewards"], np.float32)
    cols["success_score"] = np.full(n, res["success_score"], np.float32)
    if calibrated:
        cols["success_probability"] = np.full(n, rec["success_probability"], np.float32)
        cols["success"] = np.full(n, rec["success"], object)
    return {name: cols[name] for name in ["index", "episode_index", "frame_index", *names]}


def write_parquet(records: list[dict[str, Any]], out: Path, metadata: dict[str, Any]) -> Path:
    """All episodes' rows sorted by global index, written atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    signals = sorted({s for r in records if r["result"] is not None for s in point_signals(r["result"])})
    parts = [episode_columns(r, signals) for r in records]
    names = list(parts[0]) if parts else [*RABC_COLUMNS]
    cols = {k: np.concatenate([p[k] for p in parts]) if parts else np.zeros(0) for k in names}
    order = np.argsort(cols["index"], kind="stable")
    table = pa.table({k: v[order] for k, v in cols.items()})
    if len(np.unique(cols["index"])) != len(cols["index"]):
        raise ValueError(
            f"{out}: global frame indices overlap between episodes; is the dataset metadata consistent?"
        )
    skipped = [
        {"episode_id": r["episode_id"], "episode_index": r["episode_index"], "reason": r["reason"]}
        for r in sorted(records, key=lambda r: r["episode_index"])
        if r["status"] != "ok"
    ]
    meta = {**metadata, "skipped": skipped}
    table = table.replace_schema_metadata(
        {
            "reward_model_path": str(metadata.get("model_id", "")),
            "topreward": json.dumps(meta, sort_keys=True),
        }
    )
    with replacing(out) as tmp:
        pq.write_table(table, tmp)
    return out


def is_ours(path: Path) -> bool:
    """Whether `path` is a parquet that topreward wrote (annotations or weights)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return b"topreward" in (pq.read_schema(path).metadata or {})
    except (pa.ArrowException, OSError):  # not a parquet file at all
        return False


# files that are data, whatever folder they are in: an output never takes their place
_INPUT_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".jsonl")


def refuse_replacing_inputs(out: str | Path, source_info: dict[str, Any] | None = None) -> None:
    """An output never replaces an input: the source itself, a file of a source folder that topreward did
    not write, a video or a manifest; and never goes inside a local LeRobot source dataset — except
    LeRobot's default progress file at its root (`LEROBOT_PROGRESS_FILE`), which a user names on purpose.

    `source_info`: `topreward.provenance.describe_source` of the source (its `path` and `type`), if known.
    """
    out = Path(out).expanduser()
    target = out.resolve()
    fix = "choose another --out"
    if out.is_file() and out.suffix.lower() in _INPUT_SUFFIXES:
        raise FileExistsError(f"{out} is a {out.suffix} file, an input; an output never replaces it: {fix}")
    info = source_info or {}
    if not info.get("path"):
        return
    source = Path(info["path"]).resolve()
    if target == source:
        raise FileExistsError(f"{out} is the source this run reads; an output never replaces it: {fix}")
    if info.get("type") == "LeRobotSource":
        if target.is_relative_to(source) and target != source / LEROBOT_PROGRESS_FILE:
            raise ValueError(
                f"--out {out} is inside the source dataset {source}; outputs never go into a source dataset "
                f"(LeRobot's default progress file {source / LEROBOT_PROGRESS_FILE} aside): {fix} outside it"
            )
        return
    folder = source if source.is_dir() else source.parent  # a video folder; a manifest's folder
    if target.is_relative_to(folder) and out.is_file() and not is_ours(out):
        raise FileExistsError(
            f"{out} is a file of the source folder {folder} that topreward did not write; an output never "
            f"replaces it: {fix}"
        )


def read_annotations(path: str | Path, columns: tuple[str, ...] = ()):
    """(pyarrow table, metadata dict) of an annotation parquet; `columns`: those the caller needs (a file
    without them is an error naming them)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"annotation file {path} not found; pass the parquet written by `topreward annotate --out`"
        )
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise ValueError(
            f"{path} is not a readable parquet file ({e}); pass the parquet written by `topreward annotate`"
        ) from e
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ValueError(
            f"{path} has no column(s) {', '.join(missing)} (its columns: {', '.join(table.column_names[:8])}"
            f"{', ...' if len(table.column_names) > 8 else ''}): not a file written by `topreward annotate`; "
            "pass that file"
        )
    raw = (table.schema.metadata or {}).get(b"topreward")
    return table, (json.loads(raw) if raw else {})


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The `topreward` metadata of an annotation parquet (its schema only; the rows are not read)."""
    import pyarrow.parquet as pq

    raw = (pq.read_schema(path).metadata or {}).get(b"topreward")
    return json.loads(raw) if raw else {}


def lerobot_version() -> str | None:
    """The lerobot release installed in this environment, or None."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lerobot")
    except PackageNotFoundError:
        return None


def rabc_commands(progress: str | Path, dataset_root: str | Path | None = None) -> dict[str, str]:
    """The `lerobot-train` command that trains with RA-BC weights from `progress`, per LeRobot generation:
    "0.4" (`--use_rabc=true`, lerobot 0.4.x and 0.5.x) and "0.6" (`--sample_weighting.type=rabc`, lerobot 0.6+,
    `SampleWeightingConfig`). With `dataset_root` the file's default place (`<root>/sarm_progress.parquet`) needs
    no path flag. The policy is SmolVLA, one of those that take weights (pi0, pi05, smolvla; 0.6 also molmoact2,
    evo1, vla_jepa; never act or diffusion)."""
    progress = Path(progress).resolve()
    root = Path(dataset_root).expanduser().resolve() if dataset_root is not None else None
    default = root is not None and progress == root / LEROBOT_PROGRESS_FILE
    where = f"--dataset.root={root} " if root is not None else ""
    head = f"lerobot-train --dataset.repo_id=<owner/name> {where}--policy.path=lerobot/smolvla_base --output_dir=outputs/rabc"
    old = " --use_rabc=true --rabc_head_mode=sparse --rabc_kappa=0.01"
    new = " --sample_weighting.type=rabc --sample_weighting.head_mode=sparse --sample_weighting.kappa=0.01"
    if not default:
        old += f" --rabc_progress_path={progress}"
        new += f" --sample_weighting.progress_path={progress}"
    return {"0.4": head + old, "0.6": head + new}


def rabc_advice(
    progress: str | Path, dataset_root: str | Path | None = None, installed: str | None = None
) -> str:
    """What to run next: the command for the LeRobot installed here, or both generations' when none is."""
    commands = rabc_commands(progress, dataset_root)
    if installed is not None:
        major, minor = (int(p) for p in (installed.split(".") + ["0"])[:2])
        key = "0.6" if (major, minor) >= (0, 6) else "0.4"
        return f"train with these weights (lerobot {installed}, installed here):\n  {commands[key]}"
    return (
        "train with these weights (no lerobot installed here; the command depends on its release):\n"
        f"  lerobot 0.4-0.5: {commands['0.4']}\n  lerobot >= 0.6:  {commands['0.6']}"
    )
