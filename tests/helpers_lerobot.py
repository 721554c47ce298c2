"""Write small LeRobot datasets file by file (layouts v3.0 and v2.1) for tests, without the lerobot package.

Every frame shows its *global* frame index (`index` in the data parquet) as black/white cells, and its
green background tells the cameras apart, so a test can check that exactly the right frames came back:
`frame_codes(frames)` returns the indices, `camera_tags(frames)` the green levels.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from topreward.video import write_video

CAMERAS = ("observation.images.top", "observation.images.wrist")
CAMERA_GREEN = {"observation.images.top": 40, "observation.images.wrist": 200}
TASKS = ("pick up the red cube", "place the cube in the bowl")
_BITS = 16  # the code is written as black/white cells in the top two rows of an 8x8 grid


def coded_frames(codes: Sequence[int], green: int = 0, size: int = 64) -> np.ndarray:
    """One frame per code (< 65536): its bits as black/white cells on a (0, green, 0) background."""
    cell = size // 8
    frames = np.zeros((len(codes), size, size, 3), np.uint8)
    frames[..., 1] = green
    for j, code in enumerate(codes):
        for bit in range(_BITS):
            r, c = divmod(bit, 8)
            frames[j, r * cell : (r + 1) * cell, c * cell : (c + 1) * cell] = 255 if code >> bit & 1 else 0
    return frames


def frame_codes(frames: np.ndarray) -> list[int]:
    """The codes `coded_frames` wrote, read back from decoded frames."""
    cell = frames.shape[1] // 8
    codes = []
    for frame in frames:
        grey = frame.astype(np.float32).mean(axis=-1)
        code = 0
        for bit in range(_BITS):
            r, c = divmod(bit, 8)
            if grey[r * cell : (r + 1) * cell, c * cell : (c + 1) * cell].mean() > 128:
                code |= 1 << bit
        codes.append(code)
    return codes


def camera_tags(frames: np.ndarray) -> list[int]:
    """Green level of each frame's background, rounded to tens (40: top camera, 200: wrist camera)."""
    background = frames[:, frames.shape[1] // 4 :, :, 1].reshape(len(frames), -1).mean(axis=1)
    return (np.round(background / 10) * 10).astype(int).tolist()


def write_mp4(path: Path, frames: np.ndarray, fps: float, gop: int | None = None) -> Path:
    """`write_video`, optionally with a keyframe every `gop` frames (to exercise seeking)."""
    return write_video(path, frames, fps, gop=gop)


def _features(video_keys: Sequence[str], fps: float, size: int) -> dict:
    video_info = {"video.fps": fps, "video.codec": "h264", "video.pix_fmt": "yuv420p", "has_audio": False}
    features = {
        "action": {"dtype": "float32", "shape": [2], "names": ["x", "y"]},
        "observation.state": {"dtype": "float32", "shape": [2], "names": ["x", "y"]},
    }
    for key in video_keys:
        features[key] = {
            "dtype": "video",
            "shape": [size, size, 3],
            "names": ["height", "width", "channels"],
            "info": {"video.height": size, "video.width": size, **video_info},
        }
    for name in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        dtype = "float32" if name == "timestamp" else "int64"
        features[name] = {"dtype": dtype, "shape": [1], "names": None}
    return features


def _episode_tasks(lengths: Sequence[int], episode_tasks: Sequence[str | None] | None) -> list[str | None]:
    if episode_tasks is None:
        return [TASKS[e % len(TASKS)] for e in range(len(lengths))]
    if len(episode_tasks) != len(lengths):
        raise ValueError("episode_tasks needs one entry per episode")
    return list(episode_tasks)


def _task_table(per_episode: list[str | None]) -> dict[str, int]:
    table: dict[str, int] = {}
    for t in per_episode:
        if t is not None and t not in table:
            table[t] = len(table)
    return table


def _frame_rows(lengths: Sequence[int], fps: float, task_index: list[int]) -> list[dict]:
    rows, index = [], 0
    for e, n in enumerate(lengths):
        for i in range(n):
            rows.append(
                {
                    "action": [float(index), 0.0],
                    "observation.state": [float(index), 1.0],
                    "timestamp": np.float32(i / fps).item(),
                    "frame_index": i,
                    "episode_index": e,
                    "index": index,
                    "task_index": task_index[e],
                }
            )
            index += 1
    return rows


def _write_rows(path: Path, rows: list[dict], schema: pa.Schema | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def _write_tasks_parquet(path: Path, table: dict[str, int], index_name: str | None) -> None:
    """Like pandas' `DataFrame({"task_index": ...}, index=tasks).to_parquet(path)`: the text is the index."""
    column = index_name or "__index_level_0__"
    pandas_meta = {
        "index_columns": [column],
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
                "name": index_name,
                "field_name": column,
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": None,
            },
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.0",
    }
    t = pa.table({"task_index": pa.array(list(table.values()), pa.int64()), column: list(table)})
    t = t.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(t, path)


def _info(
    version: str, lengths: Sequence[int], n_tasks: int, fps: float, video_keys, size: int, **paths
) -> dict:
    return {
        "codebase_version": version,
        "robot_type": "so100",
        "total_episodes": len(lengths),
        "total_frames": int(sum(lengths)),
        "total_tasks": n_tasks,
        "chunks_size": 1000,
        "fps": fps,
        "splits": {"train": f"0:{len(lengths)}"},
        **paths,
        "features": _features(video_keys, fps, size),
    }


def write_lerobot_v3(
    root: str | Path,
    lengths: Sequence[int] = (10, 12, 8),
    *,
    fps: float = 15,
    video_keys: Sequence[str] = CAMERAS,
    episode_tasks: Sequence[str | None] | None = None,
    episodes_per_video_file: int | None = None,
    tasks_column: bool = True,
    tasks_index_name: str | None = "task",
    gop: int | None = None,
    size: int = 64,
) -> Path:
    """A v3.0 dataset: episodes concatenated in shared mp4s (`from_timestamp` offsets), parquet metadata.

    Args:
        lengths: frames per episode.
        episode_tasks: task text per episode (None: an empty `tasks` list and task_index -1).
        episodes_per_video_file: episodes per mp4 (default all in one file).
        tasks_column: write the `tasks` column of the episodes parquet (without it, readers must go
            through the data parquet's task_index).
        tasks_index_name: name of the pandas index holding the task text in tasks.parquet (None: unnamed).
        gop: keyframe interval of the videos (default libx264's).
    """
    root = Path(root)
    per_episode = _episode_tasks(lengths, episode_tasks)
    table = _task_table(per_episode)
    task_index = [table.get(t, -1) if t is not None else -1 for t in per_episode]
    starts = np.concatenate([[0], np.cumsum(lengths)]).astype(int).tolist()
    per_file = episodes_per_video_file or len(lengths)

    _write_rows(root / "data/chunk-000/file-000.parquet", _frame_rows(lengths, fps, task_index))
    _write_tasks_parquet(root / "meta/tasks.parquet", table, tasks_index_name)

    episode_rows = []
    for e, n in enumerate(lengths):
        row: dict = {"episode_index": e}
        if tasks_column:
            row["tasks"] = [per_episode[e]] if per_episode[e] is not None else []
        row |= {
            "length": n,
            "data/chunk_index": 0,
            "data/file_index": 0,
            "dataset_from_index": starts[e],
            "dataset_to_index": starts[e + 1],
        }
        first_in_file = (e // per_file) * per_file
        offset = (starts[e] - starts[first_in_file]) / fps
        for key in video_keys:
            row |= {
                f"videos/{key}/chunk_index": 0,
                f"videos/{key}/file_index": e // per_file,
                f"videos/{key}/from_timestamp": offset,
                f"videos/{key}/to_timestamp": offset + n / fps,
            }
        row |= {
            "meta/episodes/chunk_index": 0,
            "meta/episodes/file_index": 0,
            "stats/observation.state/mean": [float(starts[e]), 1.0],
        }
        episode_rows.append(row)
    schema = None
    if tasks_column:  # an all-empty list column needs its type spelled out
        schema = pa.Table.from_pylist([{**episode_rows[0], "tasks": ["x"]}]).schema
    _write_rows(root / "meta/episodes/chunk-000/file-000.parquet", episode_rows, schema)

    for key in video_keys:
        for f, first in enumerate(range(0, len(lengths), per_file)):
            last = min(first + per_file, len(lengths))
            codes = list(range(starts[first], starts[last]))
            path = root / f"videos/{key}/chunk-000/file-{f:03d}.mp4"
            write_mp4(path, coded_frames(codes, CAMERA_GREEN.get(key, 0), size), fps, gop)

    info = _info(
        "v3.0",
        lengths,
        len(table),
        fps,
        video_keys,
        size,
        data_files_size_in_mb=100,
        video_files_size_in_mb=500,
        data_path="data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        video_path="videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
    )
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    return root


def write_lerobot_v21(
    root: str | Path,
    lengths: Sequence[int] = (10, 12, 8),
    *,
    fps: float = 15,
    video_keys: Sequence[str] = CAMERAS,
    episode_tasks: Sequence[str | None] | None = None,
    size: int = 64,
) -> Path:
    """A v2.1 dataset: one parquet and one mp4 per episode, JSONL metadata."""
    root = Path(root)
    per_episode = _episode_tasks(lengths, episode_tasks)
    table = _task_table(per_episode)
    task_index = [table.get(t, -1) if t is not None else -1 for t in per_episode]
    starts = np.concatenate([[0], np.cumsum(lengths)]).astype(int).tolist()
    rows = _frame_rows(lengths, fps, task_index)
    meta = root / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    with (meta / "episodes.jsonl").open("w") as f:
        for e, n in enumerate(lengths):
            tasks = [per_episode[e]] if per_episode[e] is not None else []
            f.write(json.dumps({"episode_index": e, "tasks": tasks, "length": n}) + "\n")
    with (meta / "tasks.jsonl").open("w") as f:
        for text, i in table.items():
            f.write(json.dumps({"task_index": i, "task": text}) + "\n")
    for e in range(len(lengths)):
        _write_rows(root / f"data/chunk-000/episode_{e:06d}.parquet", rows[starts[e] : starts[e + 1]])
        for key in video_keys:
            codes = list(range(starts[e], starts[e + 1]))
            write_mp4(
                root / f"videos/chunk-000/{key}/episode_{e:06d}.mp4",
                coded_frames(codes, CAMERA_GREEN.get(key, 0), size),
                fps,
            )
    info = _info(
        "v2.1",
        lengths,
        len(table),
        fps,
        video_keys,
        size,
        total_chunks=1,
        total_videos=len(lengths) * len(video_keys),
        data_path="data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        video_path="videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
    )
    (meta / "info.json").write_text(json.dumps(info, indent=4))
    return root


def tree_snapshot(root: str | Path) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime_ns) of everything under `root`, to check that reading wrote nothing."""
    root = Path(root)
    return sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*"))
