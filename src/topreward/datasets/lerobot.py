"""Episodes from a LeRobot dataset (layouts v3.0 and v2.x), read from its documented files with pyarrow.

The `lerobot` package pins an older torch than ours, so this module reads the format itself:

1. `meta/info.json`: `codebase_version`, `fps`, `features` (the video keys are the features of dtype
   "video"), and the `data_path` / `video_path` templates.
2. Per-episode metadata: v3.0 `meta/episodes/chunk-XXX/file-XXX.parquet` (`episode_index`, `tasks`,
   `length`, `dataset_from_index`, `videos/<key>/{chunk_index,file_index,from_timestamp}`); v2.x
   `meta/episodes.jsonl` (`episode_index`, `tasks`, `length`).
3. Tasks: v3.0 `meta/tasks.parquet` (task text as the pandas index, `task_index`); v2.x `meta/tasks.jsonl`.
4. Frames: in v3.0 several episodes share one mp4 and frame i of an episode is the frame at
   `from_timestamp + i / fps` seconds of that file, i.e. frame `round(fps * t)`; in v2.x each episode has its
   own mp4. Only the requested frames are decoded (seek to the keyframe before the first one).

Nothing is ever written into the dataset folder.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from topreward.episode import Episode
from topreward.video import seek_read_frames
from topreward.worklog import read_jsonl

logger = logging.getLogger(__name__)

SUPPORTED_VERSIONS = ("v2.0", "v2.1", "v3.0")
_V3_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
_V3_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
_V2_DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
_V2_VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")

EpisodeSelection = Sequence[int] | str | slice | int | None


def _parquet():
    import pyarrow.parquet as pq  # a dependency of the package, imported when a dataset is read

    return pq


# ---------------------------------------------------------------------------------------------------------
# Decoding only the frames asked for


def _describe(available: Sequence[int]) -> str:
    if list(available) == list(range(len(available))):
        return f"0..{len(available) - 1} ({len(available)} episodes)"
    return f"{min(available)}..{max(available)} ({len(available)} episodes, not contiguous)"


def _parse_slice(text: str) -> slice:
    parts = text.split(":")
    if len(parts) > 3:
        raise ValueError
    bounds = [int(p) if p.strip() else None for p in parts] + [None] * (3 - len(parts))
    return slice(*bounds)


def select_episodes(available: Sequence[int], episodes: EpisodeSelection) -> list[int]:
    """The episode indices `episodes` picks out of `available` (sorted dataset episode indices).

    Args:
        available: the dataset's episode indices, ascending.
        episodes: None (all); a list of episode indices; one index; a slice or a string "a:b[:step]"
            (a Python slice of the sorted episode list); "3" or "1,4,7".

    Raises:
        ValueError: an index or slice bound outside the dataset, or an empty selection.
    """
    available = list(available)
    n = len(available)
    if episodes is None:
        return available
    if isinstance(episodes, str):
        text = episodes.strip()
        try:
            episodes = _parse_slice(text) if ":" in text else [int(p) for p in text.split(",") if p.strip()]
        except ValueError as e:
            raise ValueError(
                f"cannot parse episodes={text!r}; write a slice like '0:50', one index '3', or a list '1,4,7'"
            ) from e
    if isinstance(episodes, slice):
        if episodes.step == 0:
            raise ValueError(f"episodes={episodes}: the slice step cannot be zero")
        for name, bound, hi in (("start", episodes.start, n - 1), ("stop", episodes.stop, n)):
            if bound is not None and not -n <= bound <= hi:
                raise ValueError(
                    f"episodes slice {name} {bound} is out of range; the dataset has episodes {_describe(available)}"
                )
        chosen = available[episodes]
        if not chosen:
            raise ValueError(
                f"episodes={episodes} selects no episode; the dataset has episodes {_describe(available)}"
            )
        return chosen
    if isinstance(episodes, (int, np.integer)) and not isinstance(episodes, bool):
        episodes = [int(episodes)]
    chosen = []
    known = set(available)
    for e in episodes:
        if isinstance(e, bool) or not isinstance(e, (int, np.integer)):
            raise TypeError(f"episode indices must be integers, got {e!r} ({type(e).__name__})")
        if int(e) not in known:
            raise ValueError(
                f"episode {int(e)} is not in the dataset; valid episodes are {_describe(available)}"
            )
        if int(e) not in chosen:
            chosen.append(int(e))
    if not chosen:
        raise ValueError(f"episodes={episodes!r} selects no episode; pass None for all {n} episodes")
    return chosen


# ---------------------------------------------------------------------------------------------------------
# Reading the metadata


@dataclass(frozen=True)
class _EpisodeMeta:
    episode_index: int
    length: int
    dataset_from_index: int
    tasks: tuple[Any, ...]
    video_path: Path | None
    from_timestamp: float
    data_path: Path | None


def _fill(template: str, where: Path, **fields: Any) -> str:
    try:
        return template.format(**fields)
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(
            f"{where}: cannot fill the path template {template!r} ({e!r}); is meta/info.json intact?"
        ) from e


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found; a LeRobot v2.x dataset needs it (is the download complete?)"
        )
    return read_jsonl(path)


def _read_parquet_rows(path: Path, columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Rows of a parquet file as dicts; `stats/...` columns are skipped unless asked for."""
    pq = _parquet()
    try:
        names = pq.read_schema(path).names
        cols = (
            [c for c in names if not c.startswith("stats/")]
            if columns is None
            else [c for c in columns if c in names]
        )
        return pq.read_table(path, columns=cols).to_pylist()
    except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError, ArrowIOError an OSError
        raise ValueError(
            f"cannot read {path} as parquet ({e}); the file is damaged, re-download the dataset"
        ) from e


def _read_tasks_parquet(path: Path) -> dict[int, str]:
    """task_index -> text from v3.0 `meta/tasks.parquet`, where the text is the (pandas) index column."""
    pq = _parquet()
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as e:
        raise ValueError(
            f"cannot read {path} as parquet ({e}); the file is damaged, re-download the dataset"
        ) from e
    names = table.column_names
    candidates = [
        c for c in (table.schema.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)
    ]
    candidates += ["task", "__index_level_0__"]
    candidates += [f.name for f in table.schema if str(f.type) in ("string", "large_string")]
    text_col = next((c for c in candidates if c in names and c != "task_index"), None)
    if text_col is None or "task_index" not in names:
        raise ValueError(
            f"{path}: expected a task_index column and the task text (index or 'task'), got {names}"
        )
    return {
        int(i): t
        for i, t in zip(
            table.column("task_index").to_pylist(), table.column(text_col).to_pylist(), strict=True
        )
    }


def _load_info(root: Path) -> dict[str, Any]:
    path = root / "meta" / "info.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: {root} is not a LeRobot dataset root (the folder with meta/info.json)"
        )
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON ({e}); re-download the dataset") from e
    if not isinstance(info, dict) or not isinstance(info.get("features"), dict) or "fps" not in info:
        raise ValueError(f"{path}: expected an object with 'fps' and 'features'; is this a LeRobot dataset?")
    return info


def _video_keys(info: dict[str, Any]) -> list[str]:
    return [k for k, ft in info["features"].items() if isinstance(ft, dict) and ft.get("dtype") == "video"]


def _pick_camera(info: dict[str, Any], camera: str | None, root: Path | str) -> str:
    keys = _video_keys(info)
    if not keys:
        raise ValueError(
            f"{root}: no feature of dtype 'video' in meta/info.json; datasets that store frames as images in "
            "parquet are not supported (encode them to video with LeRobot first)"
        )
    if camera is None:
        return keys[0]
    if camera in keys:
        return camera
    short = [k for k in keys if k.endswith("." + camera)]
    if len(short) == 1:
        return short[0]
    raise ValueError(f"unknown camera {camera!r} in {root}; available video keys: {keys}")


def _layout(info: dict[str, Any], root: Path) -> str:
    version = str(info.get("codebase_version", ""))
    if version.startswith("v3."):
        return "v3"
    if version.startswith("v2."):
        return "v2"
    raise ValueError(
        f"{root}: codebase_version {version or '<missing>'!r} is not supported (supported: "
        f"{', '.join(SUPPORTED_VERSIONS)}); convert the dataset with LeRobot's conversion scripts"
    )


def _looks_like_repo_id(spec: str) -> bool:
    return _REPO_ID.fullmatch(spec) is not None


def _download(repo_id: str, camera: str | None) -> Path:
    """Snapshot the dataset's metadata and one camera's videos from the Hub; returns the local root."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:
        raise ValueError(
            f"{repo_id!r} is not a local folder and huggingface_hub is not installed to download it; "
            "pip install huggingface_hub, or pass a local dataset root"
        ) from e

    def fetch(patterns: list[str]) -> Path:
        try:
            return Path(snapshot_download(repo_id, repo_type="dataset", allow_patterns=patterns))
        # the Hub client raises many unrelated types (HTTP, offline mode, missing repo, OS errors)
        except Exception as e:
            raise ValueError(
                f"{repo_id!r} is not a local folder, and the Hugging Face Hub could not be reached or has no such "
                f"dataset ({type(e).__name__}: {e}); pass a local dataset root instead"
            ) from e

    root = fetch(["meta/*"])
    key = _pick_camera(_load_info(root), camera, repo_id)
    logger.info("downloading %s (camera %s) from the Hugging Face Hub", repo_id, key)
    return fetch(["meta/*", f"videos/{key}/*", f"videos/*/{key}/*"])


# ---------------------------------------------------------------------------------------------------------
# The source


class LeRobotSource:
    """Episodes of a LeRobot dataset (v3.0 or v2.x), one camera, frames decoded on demand.

    Args:
        root_or_repo_id: the dataset root (the folder with `meta/info.json`), or a Hub repo id such as
            "lerobot/svla_so100_pickplace" (downloaded with huggingface_hub: metadata and this camera only).
        camera: a video key of `meta/info.json` (or its last dotted part, e.g. "top"); default the first.
        episodes: a subset, see `select_episodes` (e.g. [0, 3] or "0:50").
        video_backend: only "pyav".

    Each Episode has `episode_id = str(episode_index)` and annotations "episode_index",
    "dataset_from_index" (global index of its first frame: global frame index = dataset_from_index +
    frame index), "tasks" (all task texts) and "camera".
    """

    def __init__(
        self,
        root_or_repo_id: str | Path,
        camera: str | None = None,
        episodes: EpisodeSelection = None,
        video_backend: str = "pyav",
    ) -> None:
        if video_backend != "pyav":
            raise ValueError(
                f"video_backend={video_backend!r} is not supported; use 'pyav' (torchcodec needs a system FFmpeg)"
            )
        self.root = self._resolve_root(root_or_repo_id, camera)
        self.info = _load_info(self.root)
        self.layout = _layout(self.info, self.root)
        self.version = str(self.info["codebase_version"])
        fps = self.info["fps"]
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not (math.isfinite(fps) and fps > 0):
            raise ValueError(
                f'{self.root}/meta/info.json: "fps" must be a finite number > 0 (the recorded frame rate), '
                f"got {fps!r}; fix the file or re-download the dataset"
            )
        self.fps = float(fps)
        self.video_keys = _video_keys(self.info)
        self.camera = _pick_camera(self.info, camera, self.root)
        if self.layout == "v3":
            metas, self.tasks = self._read_v3(), self._read_v3_tasks()
        else:
            metas, self.tasks = self._read_v2(), self._read_v2_tasks()
        self._meta = {m.episode_index: m for m in metas}
        total = self.info.get("total_episodes")
        if total is not None and total != len(self._meta):
            logger.warning(
                "%s: info.json says %s episodes, the metadata lists %d", self.root, total, len(self._meta)
            )
        self._selected = select_episodes(sorted(self._meta), episodes)
        logger.info(
            "LeRobot %s dataset %s: %d of %d episodes, camera %s, %.3g fps",
            self.version,
            self.root,
            len(self._selected),
            len(self._meta),
            self.camera,
            self.fps,
        )

    @staticmethod
    def _resolve_root(spec: str | Path, camera: str | None) -> Path:
        path = Path(spec).expanduser()
        if path.is_dir():
            return path
        if path.exists():
            raise ValueError(
                f"{path} is a file; pass the dataset root (the folder that contains meta/info.json)"
            )
        if isinstance(spec, str) and _looks_like_repo_id(spec):
            return _download(spec, camera)
        raise FileNotFoundError(
            f"LeRobot dataset not found: {spec} is neither a folder nor a Hub repo id ('owner/name')"
        )

    # -- metadata ------------------------------------------------------------------------------------------

    def _read_v3(self) -> list[_EpisodeMeta]:
        files = sorted((self.root / "meta" / "episodes").glob("*/*.parquet"))
        if not files:
            raise FileNotFoundError(
                f"{self.root}/meta/episodes/chunk-*/file-*.parquet not found; a v3.0 dataset needs its episode "
                "metadata (is the download complete?)"
            )
        key = self.camera
        cols = [f"videos/{key}/chunk_index", f"videos/{key}/file_index", f"videos/{key}/from_timestamp"]
        video_template = self.info.get("video_path") or _V3_VIDEO_PATH
        data_template = self.info.get("data_path") or _V3_DATA_PATH
        rows = []
        for path in files:
            file_rows = _read_parquet_rows(path)
            missing = [c for c in ["episode_index", *cols] if file_rows and c not in file_rows[0]]
            if missing:
                raise ValueError(
                    f"{path}: missing columns {missing}; is {key!r} stored as video in this dataset?"
                )
            rows.extend(file_rows)
        rows.sort(key=lambda r: int(r["episode_index"]))
        metas, running = [], 0
        for r in rows:
            ep = int(r["episode_index"])
            length = r.get("length")
            if length is None and r.get("dataset_to_index") is not None:
                length = r["dataset_to_index"] - r["dataset_from_index"]
            if length is None:
                raise ValueError(
                    f"{self.root}: episode {ep} has no 'length' in meta/episodes; re-download the dataset"
                )
            start = r.get("dataset_from_index")
            chunk, file, offset = (r[c] for c in cols)
            video = None
            if chunk is not None and file is not None:
                video = self.root / _fill(
                    video_template, self.root, video_key=key, chunk_index=chunk, file_index=file
                )
            data = None
            if r.get("data/chunk_index") is not None and r.get("data/file_index") is not None:
                data = self.root / _fill(
                    data_template,
                    self.root,
                    chunk_index=r["data/chunk_index"],
                    file_index=r["data/file_index"],
                )
            metas.append(
                _EpisodeMeta(
                    episode_index=ep,
                    length=int(length),
                    dataset_from_index=int(running if start is None else start),
                    tasks=_as_tuple(r.get("tasks")),
                    video_path=video,
                    from_timestamp=float(offset or 0.0),
                    data_path=data,
                )
            )
            running += int(length)
        return metas

    def _read_v3_tasks(self) -> dict[int, str]:
        path = self.root / "meta" / "tasks.parquet"
        return _read_tasks_parquet(path) if path.is_file() else {}

    def _read_v2(self) -> list[_EpisodeMeta]:
        rows = sorted(
            _read_jsonl(self.root / "meta" / "episodes.jsonl"), key=lambda r: int(r["episode_index"])
        )
        chunks_size = int(self.info.get("chunks_size") or 1000)
        video_template = self.info.get("video_path") or _V2_VIDEO_PATH
        data_template = self.info.get("data_path") or _V2_DATA_PATH
        metas, running = [], 0
        for r in rows:
            ep = int(r["episode_index"])
            if r.get("length") is None:
                raise ValueError(
                    f"{self.root}/meta/episodes.jsonl: episode {ep} has no 'length'; re-download the dataset"
                )
            fields = {"episode_chunk": ep // chunks_size, "episode_index": ep}
            metas.append(
                _EpisodeMeta(
                    episode_index=ep,
                    length=int(r["length"]),
                    dataset_from_index=running,
                    tasks=_as_tuple(r.get("tasks")),
                    video_path=self.root / _fill(video_template, self.root, video_key=self.camera, **fields),
                    from_timestamp=0.0,
                    data_path=self.root / _fill(data_template, self.root, **fields),
                )
            )
            running += int(r["length"])
        return metas

    def _read_v2_tasks(self) -> dict[int, str]:
        path = self.root / "meta" / "tasks.jsonl"
        return {int(r["task_index"]): r["task"] for r in _read_jsonl(path)} if path.is_file() else {}

    # -- episodes ------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._selected)

    def __iter__(self) -> Iterator[Episode]:
        for ep in self._selected:
            yield self._episode(self._meta[ep])

    def episode_ids(self) -> list[str]:
        """Selected episode indices as strings, ascending (or in the order given by `episodes`)."""
        return [str(ep) for ep in self._selected]

    def get(self, episode_id: str | int) -> Episode:
        """The episode with index `episode_id` (an id from `episode_ids()`)."""
        try:
            ep = int(episode_id)
        except (TypeError, ValueError) as e:
            raise ValueError(f"episode_id must be an episode index like '3', got {episode_id!r}") from e
        if ep not in self._meta:
            raise ValueError(
                f"episode {ep} is not in {self.root}; valid episodes are {_describe(sorted(self._meta))}"
            )
        if ep not in set(self._selected):
            raise ValueError(f"episode {ep} exists but is not selected (episodes=...); see episode_ids()")
        return self._episode(self._meta[ep])

    def video_of(self, episode_id: str | int) -> tuple[str | None, float]:
        """The video file of episode `episode_id` in this camera, and the second the episode starts at in it
        (v3.0 datasets hold several episodes per file); None when the file is missing."""
        meta = self._meta.get(int(episode_id))
        if meta is None or meta.video_path is None or not meta.video_path.is_file():
            return None, 0.0
        return str(meta.video_path), float(meta.from_timestamp)

    def _episode(self, meta: _EpisodeMeta) -> Episode:
        texts = self._task_texts(meta)
        if not texts:
            raise ValueError(
                f"{self.root}: episode {meta.episode_index} has no task text (its 'tasks' metadata is empty and "
                "no task_index of its frames resolves in the tasks table); add the task to the dataset's "
                "meta files, or pick other episodes with episodes="
            )
        return Episode(
            num_frames=meta.length,
            fps=self.fps,
            loader=partial(self._load_frames, meta),
            instruction=texts[0],
            source=f"{meta.video_path} (episode {meta.episode_index}, {self.camera})",
            annotations={
                "episode_index": meta.episode_index,
                "dataset_from_index": meta.dataset_from_index,
                "tasks": texts,
                "camera": self.camera,
            },
            episode_id=str(meta.episode_index),
        )

    def _task_texts(self, meta: _EpisodeMeta) -> list[str]:
        texts = []
        for t in meta.tasks:
            text = self.tasks.get(int(t)) if isinstance(t, (int, np.integer)) else t
            if isinstance(text, str) and text.strip():
                texts.append(text)
        if texts:
            return texts
        index = self._task_index_from_data(meta)
        text = self.tasks.get(index) if index is not None else None
        return [text] if isinstance(text, str) and text.strip() else []

    def _task_index_from_data(self, meta: _EpisodeMeta) -> int | None:
        """task_index of the episode's first frame in the data parquet (the fallback when 'tasks' is empty)."""
        if meta.data_path is None or not meta.data_path.is_file():
            return None
        try:
            rows = _read_parquet_rows(meta.data_path, columns=["episode_index", "task_index"])
        except ValueError:
            logger.warning(
                "%s: unreadable, cannot look up the task of episode %d", meta.data_path, meta.episode_index
            )
            return None
        for r in rows:
            if (
                r.get("episode_index", meta.episode_index) == meta.episode_index
                and r.get("task_index") is not None
            ):
                return int(r["task_index"])
        return None

    def _load_frames(self, meta: _EpisodeMeta, idx: np.ndarray) -> np.ndarray:
        where = f"LeRobot episode {meta.episode_index} (camera {self.camera})"
        if meta.video_path is None:
            raise ValueError(
                f"{where}: the metadata names no video file for this camera; try camera= {self.video_keys}"
            )
        if not meta.video_path.is_file():
            raise ValueError(
                f"{where}: video file not found: {meta.video_path}; re-download the dataset, or choose another "
                f"camera= {self.video_keys}"
            )
        # frame i of the episode is at from_timestamp + i / fps seconds of the (shared) file
        frame_numbers = np.floor((meta.from_timestamp + np.asarray(idx) / self.fps) * self.fps + 0.5).astype(
            np.int64
        )
        try:
            return seek_read_frames(meta.video_path, frame_numbers)
        except (ValueError, FileNotFoundError) as e:
            raise ValueError(f"{where}: {e}") from e

    def frame_column(self, column: str) -> dict[int, list[float]] | None:
        """A per-frame data column of every episode (e.g. a ground-truth `progress` a simulator wrote),
        by episode index in frame order; None when the dataset has no such column."""
        pq = _parquet()
        files = sorted((Path(self.root) / "data").rglob("*.parquet"))
        if not column or not files or column not in pq.read_schema(files[0]).names:
            return None
        by_episode: dict[int, list[tuple[int, float]]] = {}
        for f in files:
            table = pq.read_table(f, columns=["episode_index", "frame_index", column]).to_pydict()
            for e, i, v in zip(table["episode_index"], table["frame_index"], table[column]):
                by_episode.setdefault(int(e), []).append((int(i), float(v)))
        return {e: [v for _, v in sorted(rows)] for e, rows in by_episode.items()}

    def __repr__(self) -> str:
        return (
            f"LeRobotSource({str(self.root)!r}, {self.version}, camera={self.camera!r}, {len(self)} episodes)"
        )


def _as_tuple(tasks: Any) -> tuple[Any, ...]:
    if tasks is None:
        return ()
    if isinstance(tasks, (str, int)):
        return (tasks,)
    return tuple(tasks)
