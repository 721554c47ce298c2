"""Provenance: what a result was computed from, and the fingerprint that keys resumable work.

Every writer (a `ScoreResult`'s JSON, the annotate parquet's metadata, bench's records and report) records
the same dict, built by `provenance()`:

    source              where the episodes came from: {"type", "path"} (absolute) or {"type", "repo",
                        "revision"} (a Hugging Face Hub dataset; revision = the snapshot's commit), plus
                        "camera" (the resolved LeRobot video key), "manifest", "episodes" (the selection)
    method, config      the scoring method and every option, flat (backend, sampling, method)
    model               {"id": Hub id or ABSOLUTE path of a local folder, "revision": as asked, "commit":
                        the resolved Hub commit when known}
    device, dtype       where the model ran
    topreward_version, date (UTC, ISO 8601)

`settings(prov)` keeps the part that decides the numbers (source, camera, method, the method's and the
sampling's options, model id and revision; not device, dtype, batch size or date) as one flat dict;
`fingerprint(settings, episode_id)` hashes it. Resumable jobs store both with every record, reuse a record
only when its fingerprint is the one they would compute now, and refuse a work file computed otherwise with
`check_settings`, which lists every field that differs (as `topreward sim` refuses an output folder made
with other settings).
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
import re
from dataclasses import fields
from pathlib import Path
from typing import Any, Protocol

from topreward._version import __version__
from topreward.backends.config import BackendConfig

_COMMIT = re.compile(r"[0-9a-f]{40}")


def _plain(value: Any) -> Any:
    """JSON's view of a value (tuples become lists), so settings compare equal after a round trip."""
    return json.loads(json.dumps(value, default=str))


@functools.lru_cache(maxsize=64)
def _cached_commit(model_id: str, revision: str | None) -> str | None:
    """The commit of a Hub model in the local Hugging Face cache, without any network access."""
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(model_id, "config.json", revision=revision)
    except (ImportError, ValueError, OSError):  # not installed, or not a valid repo id
        return None
    if isinstance(hit, str) and Path(hit).parent.parent.name == "snapshots":
        return Path(hit).parent.name
    return None


def model_identity(model_id: str, revision: str | None = None, commit: str | None = None) -> dict[str, Any]:
    """{"id", "revision", "commit"}: a local folder as its absolute path, a Hub id as given plus its commit."""
    local = Path(str(model_id)).expanduser()
    if local.is_dir():
        return {"id": str(local.resolve()), "revision": revision, "commit": commit}
    if commit is None and revision is not None and _COMMIT.fullmatch(revision):
        commit = revision
    return {
        "id": str(model_id),
        "revision": revision,
        "commit": commit or _cached_commit(str(model_id), revision),
    }


def _hub_dataset(root: Path) -> tuple[str, str] | None:
    """(repo id, commit) of a dataset snapshot in the Hugging Face cache (…/datasets--o--n/snapshots/<commit>)."""
    if root.parent.name == "snapshots" and root.parent.parent.name.startswith("datasets--"):
        return root.parent.parent.name.removeprefix("datasets--").replace("--", "/"), root.name
    return None


def describe_source(source: Any, spec: str | Path | None = None, *, episodes: Any = None) -> dict[str, Any]:
    """Where `source`'s episodes come from, resolved: an absolute path, or a Hub repo and its commit.

    Args:
        source: an episode source (`topreward.datasets.open_source`).
        spec: what the user passed to open it (used for sources that do not keep their path).
        episodes: the episode selection as given (e.g. "0:50"), recorded as is.
    """
    from topreward.datasets import LeRobotSource, ManifestSource, VideoFolderSource

    out: dict[str, Any] = {"type": type(source).__name__}
    if isinstance(source, LeRobotSource):
        hub = _hub_dataset(Path(source.root).resolve())
        if hub is not None:
            out.update(repo=hub[0], revision=hub[1])
        else:
            out["path"] = str(Path(source.root).resolve())
        out["camera"] = source.camera
    elif isinstance(source, ManifestSource):
        out["path"] = str(source.path.resolve())
    elif isinstance(source, VideoFolderSource):
        out["path"] = str(source.folder.resolve())
        out["manifest"] = None if source.manifest is None else str(Path(source.manifest).resolve())
    elif spec is not None:
        local = Path(spec).expanduser()
        out["path"] = str(local.resolve()) if local.exists() else str(spec)
    else:
        out["path"] = None  # rows in memory: only their episode ids tell them apart
    if episodes is not None:
        out["episodes"] = _plain(episodes)
    return out


def describe_episode(episode: Any) -> dict[str, Any]:
    """The source of one episode scored on its own (a video file, a frame folder, an array)."""
    local = Path(str(episode.source)).expanduser()
    out: dict[str, Any] = (
        {"path": str(local.resolve())} if local.exists() else {"description": str(episode.source)}
    )
    camera = (episode.annotations or {}).get("camera")
    if camera is not None:
        out["camera"] = camera
    return out


class Described(Protocol):
    """What provenance asks of a scorer (a loaded `Scorer` or a `ScorerSpec`): a plain description."""

    def describe(self) -> dict[str, Any]:
        """{"method": name, "config": every option, flat, "model": the backend's description (id, revision,
        device, dtype, and "commit" when known; {} when no model is loaded here)}."""


def provenance(
    scorer: Described, source: dict[str, Any] | None = None, *, model: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The provenance dict (see the module docstring) of results of `scorer` on `source`.

    Args:
        scorer: a loaded scorer or a `topreward.scorers.registry.ScorerSpec` (`describe()`); a stand-in
            scorer of your own without `describe()` is recorded by its `name` alone.
        source: `describe_source(...)` or `describe_episode(...)`.
        model: the model description of a result (`ScoreResult.model`), for a scorer whose model was loaded
            elsewhere (Ray workers); by default the scorer's own.
    """
    describe = getattr(scorer, "describe", None)
    run = describe() if callable(describe) else {"method": getattr(scorer, "name", "?")}
    options = dict(run.get("config") or {})
    described = {**(run.get("model") or {}), **(model or {})}
    model_id = described.get("id", options.get("model"))
    commit = described.get("commit")
    return {
        "source": source or {},
        "method": run.get("method", "?"),
        "config": _plain(options),
        "model": model_identity(
            model_id,
            described.get("revision", options.get("revision")),
            commit if isinstance(commit, str) and _COMMIT.fullmatch(commit) else None,
        )
        if model_id is not None
        else {"id": None, "revision": None, "commit": None},
        "device": described.get("device", options.get("device")),
        "dtype": described.get("dtype", options.get("dtype")),
        "topreward_version": __version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def settings(prov: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The fields of `prov` that decide what was computed, flat: what a resumed run must match.

    `extra`: job settings that change the records too (bench: the per-episode controls).
    """
    source = {f"source.{k}": v for k, v in prov.get("source", {}).items() if k != "episodes"}
    backend = _backend_options()
    method_options = {k: v for k, v in prov.get("config", {}).items() if k not in backend}
    model = prov.get("model", {})
    return _plain(
        {
            **source,
            "method": prov.get("method"),
            "model": model.get("id"),
            "model_revision": model.get("revision"),
            **method_options,
            **extra,
        }
    )


def fingerprint(run_settings: dict[str, Any], episode_id: Any) -> str:
    """A short stable hash of (settings, episode id): equal exactly when the record would be the same."""
    text = json.dumps({"settings": run_settings, "episode_id": str(episode_id)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def differences(old: dict[str, Any], new: dict[str, Any], keys=None) -> list[str]:
    """'name: OLD before, NEW now' for every field (of `keys`, default all) that differs."""
    names = sorted(set(old) | set(new)) if keys is None else sorted(keys)
    missing = "<not set>"
    return [
        f"{name}: {old.get(name, missing)!r} before, {new.get(name, missing)!r} now"
        for name in names
        if old.get(name, missing) != new.get(name, missing)
    ]


def check_settings(where: str | Path, old: dict[str, Any] | None, new: dict[str, Any], *, keys=None) -> None:
    """Refuse to reuse results computed with other settings (ValueError listing what differs and the fix)."""
    fix = "pass --overwrite to start again, or use another --out"
    if old is None:
        raise ValueError(
            f"{where} was written without its settings (an older topreward), so its results cannot be "
            f"matched to this run; {fix}"
        )
    diff = differences(old, new, keys)
    if diff:
        raise ValueError(f"{where} was computed with other settings: {'; '.join(diff)}; {fix}")


def _backend_options() -> frozenset[str]:
    """Options of where and how the model runs (`BackendConfig`): not part of what a result is; the model
    id and revision enter the settings through `model`."""
    return frozenset(f.name for f in fields(BackendConfig))
