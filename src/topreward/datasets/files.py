"""Episodes from plain video files: a JSONL manifest, a folder of videos, or rows built in memory.

Manifest format (one JSON object per line; blank lines are skipped)::

    {"video": "clips/ep0.mp4", "instruction": "put the cup in the sink",
     "fps": 30.0, "episode_id": "ep0",
     "subtasks": [{"name": "reach", "start": 0.0, "end": 1.5}], "success": true}

Only "video" and "instruction" are required. Relative video paths resolve against the manifest's folder;
"fps" defaults to the file's frame rate, "episode_id" to the video's stem; "subtasks" (seconds) and
"success" go into `Episode.annotations`, as do any other keys, verbatim.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from topreward.episode import Episode

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov")
DEFAULT_MANIFEST_NAME = "manifest.jsonl"
_KNOWN_KEYS = {"video", "instruction", "fps", "episode_id", "subtasks", "success"}
_EXAMPLE_ROW = '{"video": "ep0.mp4", "instruction": "pick up the cube"}'
_MAX_ERRORS_SHOWN = 10


@dataclass(frozen=True)
class _Row:
    episode_id: str
    video: Path
    instruction: str
    fps: float | None
    annotations: dict[str, Any] = field(default_factory=dict)
    where: str = ""


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _row_problems(
    row: Any, base_dir: Path, default_instruction: str | None, check_files: bool
) -> tuple[list[str], Path | None]:
    """What is wrong with one manifest row (empty when valid), and its resolved video path."""
    if not isinstance(row, Mapping):
        return [f"expected a JSON object like {_EXAMPLE_ROW}, got {type(row).__name__}"], None
    problems: list[str] = []
    found = ", ".join(map(repr, row)) or "none"
    video_path = None
    video = row.get("video")
    if "video" not in row:
        problems.append(f'missing key "video" (keys found: {found}); add "video": "path/to/episode.mp4"')
    elif not isinstance(video, (str, Path)) or not str(video):
        problems.append(f'"video" must be a non-empty path string, got {video!r}')
    else:
        video_path = Path(video).expanduser()
        if not video_path.is_absolute():
            video_path = base_dir / video_path
        if check_files and not video_path.is_file():
            problems.append(
                f"video file not found: {video_path} (relative paths resolve against {base_dir}); "
                "fix the path or move the file there"
            )
    if "instruction" not in row:
        if default_instruction is None:
            problems.append(
                f'missing key "instruction" (keys found: {found}); add "instruction": "<task text>", '
                "or pass instruction= to use one instruction for every row"
            )
    elif not isinstance(row["instruction"], str) or not row["instruction"].strip():
        problems.append(f'"instruction" must be a non-empty string, got {row["instruction"]!r}')
    if "fps" in row and row["fps"] is not None and (not _is_number(row["fps"]) or row["fps"] <= 0):
        problems.append(
            f'"fps" must be a positive number, got {row["fps"]!r}; remove it to use the frame rate of the file'
        )
    episode_id = row.get("episode_id", "<unset>")
    if episode_id == "" or isinstance(episode_id, bool) or not isinstance(episode_id, (str, int)):
        problems.append(f'"episode_id" must be a non-empty string, got {row["episode_id"]!r}')
    if "success" in row and not isinstance(row["success"], bool):
        problems.append(f'"success" must be true or false, got {row["success"]!r}')
    if "subtasks" in row:
        problems.extend(_subtask_problems(row["subtasks"]))
    return problems, video_path


def _subtask_problems(subtasks: Any) -> list[str]:
    example = '[{"name": "reach", "start": 0.0, "end": 1.5}]'
    if not isinstance(subtasks, list):
        return [f'"subtasks" must be a list like {example} (seconds), got {type(subtasks).__name__}']
    problems = []
    for j, st in enumerate(subtasks):
        if not isinstance(st, Mapping) or not {"name", "start", "end"} <= set(st):
            problems.append(
                f'subtasks[{j}] must be an object with "name", "start" and "end" (seconds), got {st!r}'
            )
        elif not isinstance(st["name"], str) or not _is_number(st["start"]) or not _is_number(st["end"]):
            problems.append(f"subtasks[{j}] needs a string name and numeric start/end in seconds, got {st!r}")
        elif not 0 <= st["start"] <= st["end"]:
            problems.append(
                f"subtasks[{j}] needs 0 <= start <= end (seconds), got start={st['start']}, end={st['end']}"
            )
    return problems


def _validate_rows(
    numbered: list[tuple[str, Any]],
    base_dir: Path,
    *,
    default_instruction: str | None = None,
    check_files: bool = True,
) -> list[_Row]:
    """Check every row, then raise one ValueError that lists all problems (location: message)."""
    errors: list[str] = []
    rows: list[_Row] = []
    first_seen: dict[str, str] = {}
    for where, raw in numbered:
        problems, video_path = _row_problems(raw, base_dir, default_instruction, check_files)
        if problems:
            errors.extend(f"{where}: {p}" for p in problems)
            continue
        episode_id = str(raw.get("episode_id", video_path.stem))
        if episode_id in first_seen:
            errors.append(
                f"{where}: duplicate episode_id {episode_id!r} (first at {first_seen[episode_id]}); "
                'give each row a unique "episode_id"'
            )
            continue
        first_seen[episode_id] = where
        annotations = {k: v for k, v in raw.items() if k not in _KNOWN_KEYS}
        for key in ("subtasks", "success"):
            if key in raw:
                annotations[key] = raw[key]
        fps = raw.get("fps")
        rows.append(
            _Row(
                episode_id=episode_id,
                video=video_path,
                instruction=raw.get("instruction", default_instruction),
                fps=None if fps is None else float(fps),
                annotations=annotations,
                where=where,
            )
        )
    if errors:
        shown = errors[:_MAX_ERRORS_SHOWN]
        more = f"\n  ... and {len(errors) - len(shown)} more" if len(errors) > len(shown) else ""
        raise ValueError("invalid episode manifest:\n  " + "\n  ".join(shown) + more)
    if not rows:
        raise ValueError(
            f"no episodes: the manifest is empty; add one JSON object per line, e.g. {_EXAMPLE_ROW}"
        )
    return rows


def _read_jsonl(path: Path) -> list[tuple[str, Any]]:
    """(location "file:line", parsed object) per non-blank line; one ValueError listing every bad line."""
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    numbered: list[tuple[str, Any]] = []
    errors: list[str] = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                numbered.append((f"{path}:{lineno}", json.loads(line)))
            except json.JSONDecodeError as e:
                errors.append(
                    f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno}); "
                    f"each line must be one JSON object, e.g. {_EXAMPLE_ROW}"
                )
    if errors:
        raise ValueError("invalid episode manifest:\n  " + "\n  ".join(errors[:_MAX_ERRORS_SHOWN]))
    return numbered


def load_manifest(path: str | Path, *, check_videos: bool = True) -> list[dict[str, Any]]:
    """Read and validate a JSONL manifest.

    Args:
        path: the .jsonl file.
        check_videos: also check that every video file exists.

    Returns:
        The rows as written (video paths not resolved).

    Raises:
        ValueError: naming file:line and the fix, for every invalid line.
    """
    path = Path(path)
    numbered = _read_jsonl(path)
    _validate_rows(numbered, path.parent, check_files=check_videos)
    return [dict(row) for _, row in numbered]


def write_manifest(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write rows as a JSONL manifest (paths as given; relative ones resolve against the manifest's folder).

    Raises:
        ValueError: a row lacks "video" or "instruction", or has an invalid field.
    """
    path = Path(path)
    plain = [{k: str(v) if isinstance(v, Path) else v for k, v in row.items()} for row in rows]
    _validate_rows([(f"row {i}", r) for i, r in enumerate(plain)], path.parent, check_files=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in plain:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


class RowSource:
    """Episodes described by manifest-style rows (dicts) held in memory.

    Args:
        rows: dicts with the manifest keys ("video", "instruction", optional "fps", "episode_id", ...).
        base_dir: folder that relative video paths resolve against.
        instruction: default instruction for rows without one.
    """

    def __init__(
        self, rows: Iterable[Mapping[str, Any]], base_dir: str | Path = ".", *, instruction: str | None = None
    ) -> None:
        self._set_rows(
            _validate_rows(
                [(f"row {i}", r) for i, r in enumerate(rows)], Path(base_dir), default_instruction=instruction
            )
        )

    def _set_rows(self, rows: list[_Row]) -> None:
        self._rows = {r.episode_id: r for r in rows}

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[Episode]:
        for episode_id in self._rows:
            yield self.get(episode_id)

    def episode_ids(self) -> list[str]:
        """Episode ids in manifest order."""
        return list(self._rows)

    def get(self, episode_id: str) -> Episode:
        """The episode `episode_id`; the video is probed now, frames are decoded on demand."""
        row = self._rows.get(str(episode_id))
        if row is None:
            known = ", ".join(repr(k) for k in list(self._rows)[:5])
            raise ValueError(
                f"unknown episode_id {episode_id!r}; known ids include {known} (see episode_ids())"
            )
        return Episode.from_video(
            row.video,
            instruction=row.instruction,
            fps=row.fps,
            episode_id=row.episode_id,
            annotations=dict(row.annotations),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} episodes)"


class ManifestSource(RowSource):
    """Episodes listed in a JSONL manifest (see the module docstring for the format).

    The whole manifest is validated on construction; videos are opened only when an episode is read.

    Args:
        path: the .jsonl file.
        instruction: default instruction for rows without one.
    """

    def __init__(self, path: str | Path, *, instruction: str | None = None) -> None:
        self.path = Path(path)
        self._set_rows(
            _validate_rows(_read_jsonl(self.path), self.path.parent, default_instruction=instruction)
        )
        logger.info("manifest %s: %d episodes", self.path, len(self))

    def __repr__(self) -> str:
        return f"ManifestSource({str(self.path)!r}, {len(self)} episodes)"


class VideoFolderSource(RowSource):
    """Every video in a folder (not recursive), with a manifest or one instruction for all.

    Args:
        folder: the folder with video files.
        manifest: a JSONL manifest (absolute, or relative to the working directory or to `folder`);
            default `folder/manifest.jsonl` when present.
        instruction: the instruction of every episode when there is no manifest; with a manifest, the
            default for rows without one.
    """

    def __init__(
        self, folder: str | Path, manifest: str | Path | None = None, instruction: str | None = None
    ) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"video folder not found: {self.folder}")
        self.manifest = self._find_manifest(manifest)
        if self.manifest is not None:
            numbered = _read_jsonl(self.manifest)
            base_dir = self.manifest.parent
        else:
            if instruction is None:
                raise ValueError(
                    f"{self.folder} has no {DEFAULT_MANIFEST_NAME}: pass instruction= (one task text for every "
                    "video) or a manifest with one instruction per video"
                )
            videos = sorted(
                p for p in self.folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES
            )
            if not videos:
                raise ValueError(
                    f"{self.folder} has no video files ({', '.join(VIDEO_SUFFIXES)}); subfolders are not searched"
                )
            numbered = [(str(p), {"video": p.name}) for p in videos]
            base_dir = self.folder
        self._set_rows(_validate_rows(numbered, base_dir, default_instruction=instruction))
        logger.info("video folder %s: %d episodes", self.folder, len(self))

    def _find_manifest(self, manifest: str | Path | None) -> Path | None:
        if manifest is None:
            default = self.folder / DEFAULT_MANIFEST_NAME
            return default if default.is_file() else None
        path = Path(manifest)
        if not path.is_file() and not path.is_absolute() and (self.folder / path).is_file():
            path = self.folder / path
        if not path.is_file():
            raise FileNotFoundError(
                f"manifest not found: {manifest} (looked in the working directory and {self.folder})"
            )
        return path

    def __repr__(self) -> str:
        return f"VideoFolderSource({str(self.folder)!r}, {len(self)} episodes)"
