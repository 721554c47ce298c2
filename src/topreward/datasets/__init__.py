"""Sources: users' data as a sequence of `Episode`s, behind one interface (`EpisodeSource`).

`open_source(spec)` picks the source from what `spec` is:

- a `.jsonl` file: `ManifestSource` (one episode per line, see `topreward.datasets.files`);
- a folder with `meta/info.json`: `LeRobotSource` (v3.0 or v2.x);
- any other folder: `VideoFolderSource` (every video in it, with a manifest or one instruction);
- a video file: a one-episode source (needs `instruction=`);
- "owner/name" that is not a local path: `LeRobotSource` downloaded from the Hugging Face Hub.

It imports only the basics (episode, video, worklog).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

from topreward.datasets.files import (
    VIDEO_SUFFIXES,
    ManifestSource,
    RowSource,
    VideoFolderSource,
    load_manifest,
    write_manifest,
)
from topreward.datasets.lerobot import EpisodeSelection, LeRobotSource, select_episodes
from topreward.episode import Episode

__all__ = [
    "EpisodeSource",
    "LeRobotSource",
    "ManifestSource",
    "RowSource",
    "VideoFolderSource",
    "load_manifest",
    "open_source",
    "select_episodes",
    "write_manifest",
]


@runtime_checkable
class EpisodeSource(Protocol):
    """What every source offers: a length, iteration over Episodes, ids, and lookup by id."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Episode]: ...

    def episode_ids(self) -> list[str]: ...

    def get(self, episode_id: str) -> Episode: ...


def _reject(options: dict[str, object], kind: str) -> None:
    given = [name for name, value in options.items() if value is not None]
    if given:
        names = " and ".join(f"{name}=" for name in given)
        raise ValueError(f"{names} {'does' if len(given) == 1 else 'do'} not apply to {kind}; drop it")


def open_source(
    spec: str | Path,
    *,
    camera: str | None = None,
    episodes: EpisodeSelection = None,
    manifest: str | Path | None = None,
    instruction: str | None = None,
) -> EpisodeSource:
    """Open `spec` as an episode source (see the module docstring for how it is picked).

    Args:
        spec: a manifest, a LeRobot dataset root or Hub repo id, a folder of videos, or one video file.
        camera: LeRobot only: the video key (default the first).
        episodes: LeRobot only: a subset, e.g. "0:50" or [0, 3].
        manifest: folder of videos only: the JSONL manifest describing them.
        instruction: videos only: the instruction of every episode (default for manifest rows without one).

    Raises:
        FileNotFoundError: `spec` does not exist and is not a Hub repo id.
        ValueError: `spec` is of an unsupported kind, or an option does not apply to it.
    """
    path = Path(spec).expanduser()
    lerobot_opts = {"camera": camera, "episodes": episodes}
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".jsonl":
            _reject({**lerobot_opts, "manifest": manifest}, "a manifest")
            return ManifestSource(path, instruction=instruction)
        if path.name == "info.json" and path.parent.name == "meta":
            return open_source(
                path.parent.parent,
                camera=camera,
                episodes=episodes,
                manifest=manifest,
                instruction=instruction,
            )
        if suffix in VIDEO_SUFFIXES:
            _reject({**lerobot_opts, "manifest": manifest}, "a single video")
            if instruction is None:
                raise ValueError(f"{path} is a single video: pass instruction= (the task it shows)")
            return RowSource([{"video": path.name}], base_dir=path.parent, instruction=instruction)
        raise ValueError(
            f"cannot open {path} as episodes: expected a .jsonl manifest, a video ({', '.join(VIDEO_SUFFIXES)}), "
            "a LeRobot dataset folder or a folder of videos"
        )
    if path.is_dir():
        if (path / "meta" / "info.json").is_file():
            _reject(
                {"manifest": manifest, "instruction": instruction},
                "a LeRobot dataset (tasks come from its metadata)",
            )
            return _lerobot(path, camera, episodes)
        if (path / "meta").is_dir() and ((path / "data").is_dir() or (path / "videos").is_dir()):
            raise FileNotFoundError(
                f"{path} looks like a LeRobot dataset (meta/, data/ or videos/) but {path / 'meta' / 'info.json'} "
                "is missing; restore it or download the dataset again"
            )
        _reject(lerobot_opts, "a folder of videos")
        return VideoFolderSource(path, manifest=manifest, instruction=instruction)
    if isinstance(spec, str) and spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        _reject(
            {"manifest": manifest, "instruction": instruction},
            "a LeRobot dataset (tasks come from its metadata)",
        )
        return _lerobot(spec, camera, episodes)
    raise FileNotFoundError(
        f"{spec} not found: pass an existing manifest, video, folder, or a Hub dataset id like 'lerobot/pusht'"
    )


def _lerobot(spec: str | Path, camera: str | None, episodes: EpisodeSelection):
    """One camera, or several side by side (`camera="top+wrist"`, `topreward.datasets.cameras`)."""
    if camera is None or "+" not in camera:
        return LeRobotSource(spec, camera=camera, episodes=episodes)
    from topreward.datasets.cameras import SideBySideSource

    return SideBySideSource([LeRobotSource(spec, camera=c, episodes=episodes) for c in camera.split("+")])
