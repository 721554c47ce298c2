"""What `topreward view` shows, read from the files other commands write.

A `ViewEpisode` is one episode: its video (a path and the second the episode starts at in it), frame rate,
instruction, outcome, ground truth when known, and one run per method or model (`Run`: the frames where it
was evaluated, its progress there, its VOC and success score, and the VOC of bench's controls).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from topreward.metrics import voc


@dataclass
class Run:
    """One method's curve on one episode."""

    frames: list[int]
    progress: list[float]
    voc: float | None = None
    success_score: float | None = None
    controls: dict[str, float] = field(default_factory=dict)  # bench's control VOCs (static, reversed, ...)


@dataclass
class ViewEpisode:
    """One episode of the page: where its video is, what it shows, and every run's curve."""

    key: str
    episode_id: str
    instruction: str
    fps: float
    num_frames: int
    video: str | None = None
    start: float = 0.0
    dataset: str = ""
    success: bool | None = None
    truth: list[float] | None = None
    runs: dict[str, Run] = field(default_factory=dict)
    camera: str = "observation.image"  # the video's key in a LeRobot dataset (Rerun's entity path)


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def from_results(
    paths: list[str | Path], labels: list[str] | None = None
) -> tuple[list[ViewEpisode], list[str]]:
    """`score` results (result.json files): one episode per video, one run per result on it."""
    episodes: dict[str, ViewEpisode] = {}
    names: list[str] = []
    for i, path in enumerate(paths):
        path = Path(path)
        try:
            result = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(
                f"{path} is not a readable topreward result JSON ({e}); pass what `score --out` wrote"
            ) from e
        if not isinstance(result, dict) or "prefix_end_frames" not in result or "progress" not in result:
            raise ValueError(
                f"{path} is not a topreward score result (no prefix_end_frames/progress); pass a result.json"
            )
        label = labels[i] if labels else _label(result.get("method"), result.get("model"), names)
        names.append(label)
        source = str(result.get("source") or "")
        key = f"{source}|{result.get('episode_id') or ''}"
        episode = episodes.setdefault(
            key,
            ViewEpisode(
                key=key,
                episode_id=str(result.get("episode_id") or Path(source).name or path.stem),
                instruction=str(result.get("instruction") or ""),
                fps=float(result["fps"]),
                num_frames=int(result["num_frames"]),
                video=source if source and Path(source).is_file() else None,
            ),
        )
        frames, progress = list(map(int, result["prefix_end_frames"])), list(map(float, result["progress"]))
        episode.runs[label] = Run(
            frames,
            progress,
            voc=_finite(voc(progress, frames)) if len(progress) > 1 else None,
            success_score=_finite(result.get("success_score")),
        )
    return list(episodes.values()), names


def from_bench(
    folders: list[str | Path], labels: list[str] | None = None
) -> tuple[list[ViewEpisode], list[str]]:
    """`bench` output folders (episodes.jsonl): their episodes, one run per folder."""
    from topreward.datasets import open_source

    episodes: dict[str, ViewEpisode] = {}
    names: list[str] = []
    sources: dict[str, Any] = {}
    for i, folder in enumerate(folders):
        log = Path(folder) / "episodes.jsonl"
        if not log.is_file():
            raise ValueError(f"{folder} has no episodes.jsonl: pass a folder `topreward bench --out` wrote")
        records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        if not records:
            raise ValueError(f"{log} holds no episodes yet")
        if any("prefix_end_frames" not in r or "progress" not in r for r in records):
            raise ValueError(
                f"{log} is not from this version of `topreward bench` (no prefix_end_frames/progress)"
            )
        label = labels[i] if labels else _label(records[0].get("method"), records[0].get("model"), names)
        names.append(label)
        for r in records:
            key = f"{r.get('dataset')}|{r.get('episode_id')}"
            if key not in episodes:
                video, start = _video_of(r, sources, open_source)
                truth = r.get("gt_frames")
                episodes[key] = ViewEpisode(
                    key=key,
                    episode_id=str(r.get("episode_id")),
                    instruction=str(r.get("instruction") or ""),
                    fps=float(r["fps"]),
                    num_frames=int(r["num_frames"]),
                    video=video,
                    start=start,
                    dataset=str(r.get("dataset") or ""),
                    success=r.get("success") if isinstance(r.get("success"), bool) else None,
                    truth=[float(v) for v in truth] if isinstance(truth, list) and truth else None,
                )
            controls = {
                name: value
                for name in ("static", "reversed")
                if (value := _finite(r.get(f"{name}_voc"))) is not None
            }
            episodes[key].runs[label] = Run(
                list(map(int, r["prefix_end_frames"])),
                [float(v) if v is not None else float("nan") for v in r["progress"]],
                voc=_finite(r.get("voc")),
                success_score=_finite(r.get("success_score")),
                controls=controls,
            )
    return list(episodes.values()), names


def _label(method: Any, model: Any, taken: list[str]) -> str:
    """"method (model)", the model by its folder or Hub name; a result's `model` is its provenance dict."""
    base = str(method or "run")
    if isinstance(model, dict):
        model = model.get("id")
    if model:
        base += f" ({Path(str(model)).name})"
    label, n = base, 2
    while label in taken:
        label, n = f"{base} #{n}", n + 1
    return label


def _video_of(record: dict, sources: dict, open_source) -> tuple[str | None, float]:
    """The episode's video file and the second it starts at, from the source bench read it from."""
    source = (record.get("provenance") or {}).get("source") or {}
    path = source.get("path")
    if not path:
        return None, 0.0
    try:
        if path not in sources:
            sources[path] = open_source(path)
        opened = sources[path]
        locate = getattr(opened, "video_of", None)
        if locate is not None:
            return locate(str(record.get("episode_id")))
        episode = opened.get(str(record.get("episode_id")))
    except (ValueError, OSError):
        return None, 0.0
    return (episode.source if Path(episode.source).is_file() else None), 0.0


def from_annotations(
    paths: list[str | Path], dataset: str | Path | None = None, labels: list[str] | None = None
) -> tuple[list[ViewEpisode], list[str]]:
    """Annotation parquets (`topreward annotate`) with the LeRobot dataset they annotate: its episodes' videos
    (and where each starts in its file), one run per parquet.

    The dataset is `dataset`, else the parquet's own folder when it is `<root>/sarm_progress.parquet`
    (`annotate --into-dataset`), else the source its metadata names."""
    from topreward.annotate.progress_file import read_annotations
    from topreward.datasets import open_source

    episodes: dict[str, ViewEpisode] = {}
    names: list[str] = []
    for i, path in enumerate(paths):
        path = Path(path)
        table, meta = read_annotations(
            path, ("episode_index", "frame_index", "progress_sparse", "prefix_end")
        )
        info = meta.get("topreward") if isinstance(meta.get("topreward"), dict) else {}
        root = dataset or _annotated_dataset(path, info)
        if root is None:
            raise ValueError(
                f"{path}: the dataset it annotates is unknown (not beside it, not named in its metadata); pass "
                "--dataset ROOT, the LeRobot dataset it was written for"
            )
        try:
            source = open_source(str(root))
        except (ValueError, FileNotFoundError) as e:
            raise ValueError(
                f"{path}: cannot open the dataset it annotates, {root} ({e}); pass --dataset ROOT"
            ) from e
        label = (
            labels[i] if labels else _label(info.get("method"), (info.get("model") or {}).get("id"), names)
        )
        names.append(label)
        cols = {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}
        for ep in np.unique(cols["episode_index"]):
            rows = cols["episode_index"] == ep
            ends = rows & cols["prefix_end"].astype(bool)
            key = f"{root}|{int(ep)}"
            if key not in episodes:
                try:
                    episode = source.get(str(int(ep)))
                except ValueError as e:
                    raise ValueError(
                        f"{path}: episode {int(ep)} is not in {root}; is it the dataset it annotates? ({e})"
                    ) from e
                locate = getattr(source, "video_of", None)
                video, start = locate(str(int(ep))) if locate is not None else (None, 0.0)
                episodes[key] = ViewEpisode(
                    key=key,
                    episode_id=str(int(ep)),
                    instruction=episode.instruction or "",
                    fps=float(episode.fps),
                    num_frames=int(rows.sum()),
                    video=video,
                    start=start,
                    dataset=Path(str(root)).name,
                    camera=str(getattr(source, "camera", "observation.image")),
                )
            frames = cols["frame_index"][ends].astype(int).tolist()
            progress = cols["progress_sparse"][ends].astype(float).tolist()
            score = cols["success_score"][rows][0] if "success_score" in cols else None
            episodes[key].runs[label] = Run(
                frames,
                progress,
                voc=_finite(voc(progress, frames))
                if len(frames) > 1 and np.all(np.isfinite(progress))
                else None,
                success_score=_finite(score),
            )
    return list(episodes.values()), names


def _annotated_dataset(path: Path, info: dict) -> str | None:
    if (path.parent / "meta" / "info.json").is_file():
        return str(path.parent)
    source = ((info.get("provenance") or {}).get("source") or {}).get("path")
    return str(source) if source and Path(str(source)).exists() else None
