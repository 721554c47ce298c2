"""Simulated episodes as a LeRobot v3.0 dataset (``topreward sim --format lerobot``).

Recipe:

1. Generate the episodes as for the manifest format (`generate`, with ``arrays=True``) into the work folder
   ``<root>/.sim_episodes/`` (mp4 + ``manifest.jsonl`` + ``arrays/<id>.npz``): resumable, like the manifest
   format, and kept so a rerun with more seeds only renders the new episodes.
2. Write the LeRobot v3.0 files, as LeRobot 0.4.4 reads them (``LeRobotDataset(repo_id, root=...)``):
   ``meta/info.json`` (fps, features, path templates), ``meta/tasks.parquet`` (task text as the pandas
   index), ``meta/episodes/chunk-000/file-000.parquet``, ``meta/stats.json``,
   ``data/chunk-000/file-000.parquet`` and one mp4 per episode,
   ``videos/observation.image/chunk-CCC/file-FFF.mp4`` (a hard link to the work folder's H.264 file, a copy
   where links are impossible; ``from_timestamp`` 0).
3. Per frame, as LeRobot's own Meta-World env names them: ``observation.image`` (our ``corner`` camera,
   upright), ``observation.state`` (observation[:4]: hand xyz and gripper, what LeRobot's Meta-World env
   gives a policy as ``agent_pos``), ``observation.environment_state`` (the whole 39-D Meta-World
   observation, its parts named in the features: objects, previous frame, goal; what a state-based policy
   needs to learn a task) and ``action`` (4-D, the action taken from that frame's observation). Our ground truth rides along as extra columns: ``progress`` (the
   dense ground-truth progress of the manifest), ``success`` (the env's success flag at that frame) and
   ``next.reward`` (the env's shaped reward); per episode, the episodes parquet adds ``episode_id``,
   ``task_name``, ``kind``, ``seed`` and ``episode_success`` (success at the last frame).

Episodes are numbered in the order of the run's (task, seed, kind) list.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from topreward.atomic import replacing, write_text
from topreward.sim.env import OBSERVATION_NAMES

logger = logging.getLogger(__name__)

WORK_DIR = ".sim_episodes"
IMAGE_KEY = "observation.image"
ENV_STATE_KEY = "observation.environment_state"
CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000  # files per chunk folder, LeRobot's default
_DATA_FILE = "data/chunk-000/file-000.parquet"
_EPISODES_FILE = "meta/episodes/chunk-000/file-000.parquet"
_STATE_NAMES = ["hand_x", "hand_y", "hand_z", "gripper"]
_ACTION_NAMES = ["dx", "dy", "dz", "gripper"]


def _stats(values: np.ndarray) -> dict[str, list]:
    """LeRobot's per-feature stats over axis 0: min, max, mean, std, count."""
    v = np.asarray(values, dtype=np.float64)
    return {
        "min": v.min(axis=0).tolist(),
        "max": v.max(axis=0).tolist(),
        "mean": v.mean(axis=0).tolist(),
        "std": v.std(axis=0).tolist(),
        "count": [int(v.shape[0])],
    }


def _image_stats(samples: list[np.ndarray]) -> dict[str, list]:
    """Per-channel stats of uint8 frames scaled to [0, 1], shaped (3, 1, 1) as LeRobot stores them."""
    pixels = np.concatenate([s.reshape(-1, 3) for s in samples]).astype(np.float64) / 255.0
    stats = _stats(pixels)
    out: dict[str, list] = {k: [[[x]] for x in stats[k]] for k in ("min", "max", "mean", "std")}
    out["count"] = [int(sum(len(s) for s in samples))]
    return out


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with replacing(dst) as tmp:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def _write_table(path: Path, columns: dict[str, Any]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        pq.write_table(pa.table(columns), tmp)


def _write_tasks(path: Path, tasks: dict[str, int]) -> None:
    """`meta/tasks.parquet` as pandas writes ``DataFrame({"task_index": ...}, index=Index(tasks, name="task"))``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [],
        "columns": [
            {
                "name": "task_index",
                "field_name": "task_index",
                "pandas_type": "int64",
                "numpy_type": "int64",
                "metadata": None,
            },
            {
                "name": "task",
                "field_name": "task",
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": None,
            },
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.0",
    }
    table = pa.table({"task_index": pa.array(list(tasks.values()), pa.int64()), "task": list(tasks)})
    table = table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def _features(size: int, fps: float) -> dict[str, Any]:
    def scalar(dtype: str) -> dict[str, Any]:
        return {"dtype": dtype, "shape": [1], "names": None}

    return {
        IMAGE_KEY: {
            "dtype": "video",
            "shape": [size, size, 3],
            "names": ["height", "width", "channels"],
            "info": {
                "video.height": size,
                "video.width": size,
                "video.codec": "h264",
                "video.pix_fmt": "yuv420p",
                "video.is_depth_map": False,
                "video.fps": fps,
                "video.channels": 3,
                "has_audio": False,
            },
        },
        "observation.state": {"dtype": "float32", "shape": [4], "names": _STATE_NAMES},
        ENV_STATE_KEY: {"dtype": "float32", "shape": [len(OBSERVATION_NAMES)], "names": OBSERVATION_NAMES},
        "action": {"dtype": "float32", "shape": [4], "names": _ACTION_NAMES},
        "next.reward": scalar("float32"),
        "progress": scalar("float32"),
        "success": scalar("bool"),
        "timestamp": scalar("float32"),
        "frame_index": scalar("int64"),
        "episode_index": scalar("int64"),
        "index": scalar("int64"),
        "task_index": scalar("int64"),
    }


def write_lerobot(work_dir: str | Path, root: str | Path, episode_ids: Sequence[str] | None = None) -> Path:
    """Write the LeRobot v3.0 files of `root` from a work folder made by `generate(..., arrays=True)`.

    Args:
        work_dir: folder with ``manifest.jsonl``, ``videos/`` and ``arrays/``.
        root: the dataset root (created; its ``meta``, ``data`` and ``videos`` are replaced).
        episode_ids: the episodes, in order (default: every episode of the manifest, in its order).
    """
    from topreward.video import probe_video, read_frames

    work_dir, root = Path(work_dir), Path(root)
    records = {
        r["episode_id"]: r
        for r in (
            json.loads(line)
            for line in (work_dir / "manifest.jsonl").read_text().splitlines()
            if line.strip()
        )
    }
    ids = list(records) if episode_ids is None else list(episode_ids)
    missing = [e for e in ids if e not in records]
    if missing or not ids:
        raise ValueError(f"{work_dir}: no episodes to write, or not generated: {missing}")
    fps_values = {float(records[e]["fps"]) for e in ids}
    if len(fps_values) != 1:
        raise ValueError(f"{work_dir}: episodes with different frame rates {sorted(fps_values)}")
    fps = fps_values.pop()
    fps_out: float | int = int(fps) if fps.is_integer() else fps
    size = int(records[ids[0]]["generator"]["settings"]["size"])

    tasks: dict[str, int] = {}
    cols: dict[str, list] = {k: [] for k in _features(size, fps)}
    del cols[IMAGE_KEY]
    episodes: dict[str, list] = {
        k: []
        for k in (
            "episode_index", "tasks", "length", "data/chunk_index", "data/file_index", "dataset_from_index",
            "dataset_to_index", f"videos/{IMAGE_KEY}/chunk_index", f"videos/{IMAGE_KEY}/file_index",
            f"videos/{IMAGE_KEY}/from_timestamp", f"videos/{IMAGE_KEY}/to_timestamp",
            "meta/episodes/chunk_index", "meta/episodes/file_index",
            "episode_id", "task_name", "kind", "seed", "episode_success",
        )
    }  # fmt: skip
    image_samples: list[np.ndarray] = []
    start = 0
    for e, eid in enumerate(ids):
        rec = records[eid]
        video = work_dir / rec["video"]
        arrays_file = work_dir / "arrays" / f"{eid}.npz"
        if not arrays_file.is_file():
            raise FileNotFoundError(f"{arrays_file} is missing; generate the episodes with arrays=True")
        with np.load(arrays_file) as arrays:
            if "observation" not in arrays:
                raise ValueError(
                    f"{arrays_file} was written by an older topreward, without the whole observation; delete "
                    f"{work_dir / 'arrays'} and run `topreward sim --format lerobot` again (it re-renders only "
                    "those episodes)"
                )
            state, action = arrays["state"].astype(np.float32), arrays["action"].astype(np.float32)
            observation = arrays["observation"].astype(np.float32)
        n = int(rec["num_frames"])
        if not (
            len(state)
            == len(action)
            == len(observation)
            == len(rec["progress"])
            == n
            == probe_video(video).num_frames
        ):
            raise ValueError(f"{eid}: frames, states, actions and progress disagree in length; regenerate it")
        task_index = tasks.setdefault(rec["instruction"], len(tasks))
        cols["observation.state"] += state.tolist()
        cols[ENV_STATE_KEY] += observation.tolist()
        cols["action"] += action.tolist()
        cols["next.reward"] += [float(r) for r in rec["reward"]]
        cols["progress"] += [float(p) for p in rec["progress"]]
        success = np.zeros(n, bool)
        if rec["first_success_frame"] is not None:
            success[rec["first_success_frame"] :] = True  # first success on, per the env's flag ...
        # ... except frames where it was lost again (e.g. a door swinging back): `stages` marks them
        success &= np.array([s == "done" for s in rec["stages"]])
        cols["success"] += success.tolist()
        cols["timestamp"] += (np.arange(n, dtype=np.float32) / np.float32(fps)).tolist()
        cols["frame_index"] += list(range(n))
        cols["episode_index"] += [e] * n
        cols["index"] += list(range(start, start + n))
        cols["task_index"] += [task_index] * n
        chunk, file = divmod(e, CHUNKS_SIZE)
        _link_or_copy(video, root / f"videos/{IMAGE_KEY}/chunk-{chunk:03d}/file-{file:03d}.mp4")
        for k, v in (
            ("episode_index", e), ("tasks", [rec["instruction"]]), ("length", n), ("data/chunk_index", 0),
            ("data/file_index", 0), ("dataset_from_index", start), ("dataset_to_index", start + n),
            (f"videos/{IMAGE_KEY}/chunk_index", chunk), (f"videos/{IMAGE_KEY}/file_index", file),
            (f"videos/{IMAGE_KEY}/from_timestamp", 0.0), (f"videos/{IMAGE_KEY}/to_timestamp", n / fps),
            ("meta/episodes/chunk_index", 0), ("meta/episodes/file_index", 0), ("episode_id", eid),
            ("task_name", rec["task"]), ("kind", rec["kind"]), ("seed", int(rec["seed"])),
            ("episode_success", bool(rec["success"])),
        ):  # fmt: skip
            episodes[k].append(v)
        image_samples.append(read_frames(video, np.linspace(0, n - 1, min(n, 8)).astype(int))[:, ::8, ::8])
        start += n

    import pyarrow as pa

    vec = pa.list_(pa.float32(), 4)
    data = {
        "observation.state": pa.array(cols["observation.state"], vec),
        ENV_STATE_KEY: pa.array(cols[ENV_STATE_KEY], pa.list_(pa.float32(), len(OBSERVATION_NAMES))),
        "action": pa.array(cols["action"], vec),
        **{k: pa.array(cols[k], pa.float32()) for k in ("next.reward", "progress", "timestamp")},
        "success": pa.array(cols["success"], pa.bool_()),
        **{k: pa.array(cols[k], pa.int64()) for k in ("frame_index", "episode_index", "index", "task_index")},
    }
    _write_table(root / _DATA_FILE, data)
    _write_table(root / _EPISODES_FILE, episodes)
    _write_tasks(root / "meta/tasks.parquet", tasks)
    stats = {k: _stats(np.asarray(cols[k], np.float64).reshape(start, -1)) for k in cols}
    stats[IMAGE_KEY] = _image_stats(image_samples)
    (root / "meta/stats.json").write_text(json.dumps(stats, indent=1))
    info = {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": "sawyer",
        "total_episodes": len(ids),
        "total_frames": start,
        "total_tasks": len(tasks),
        "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 500,
        "fps": fps_out,
        "splits": {"train": f"0:{len(ids)}"},
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
        "features": _features(size, fps_out),
    }
    write_text(root / "meta/info.json", json.dumps(info, indent=4))  # last: a dataset with it is complete
    logger.info("wrote LeRobot dataset %s: %d episodes, %d frames", root, len(ids), start)
    return root


def generate_lerobot(
    root: str | Path,
    tasks: Sequence[str],
    seeds: Iterable[int],
    kinds: Sequence[str],
    counts: dict[str, int] | None = None,
    **options: Any,
) -> Path:
    """`generate` the episodes into ``<root>/.sim_episodes`` (with states and actions), then `write_lerobot`
    the requested ones, in (task, seed, kind) order, as a LeRobot v3.0 dataset at `root`; returns `root`.

    `counts` limits a kind to the first seeds (`generate`'s); `options` are `generate`'s (max_steps, fps,
    noise_std, size, crf, trim_after_success, progress).
    """
    from topreward.sim.metaworld_gen import _episode_id, episodes_of, generate

    root = Path(root)
    if root.exists() and not (root / WORK_DIR).is_dir() and any(root.iterdir()):
        raise FileExistsError(
            f"{root} exists and was not written by `topreward sim --format lerobot`; choose an empty or new --out"
        )
    seeds = list(seeds)
    generate(root / WORK_DIR, tasks, seeds, kinds, arrays=True, counts=counts, **options)
    ids = [_episode_id(t, s, k) for t, s, k in episodes_of(tasks, seeds, kinds, counts)]
    return write_lerobot(root / WORK_DIR, root, ids)
