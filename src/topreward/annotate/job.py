"""Dataset-scale annotation: score every episode of a source and write the per-frame progress file
(`topreward.annotate.progress_file`).

Resumable: each finished episode is appended (one JSON line, flushed and fsynced) to `<out>.work.jsonl`
beside the output; a run killed at any point and started again with `resume=True` skips what is there,
scores the rest, and writes the same final file as an uninterrupted run (rows sorted by `index`, no
timings in the file; only the provenance's date differs). Every line carries the run's settings (resolved
source, camera, method, method and sampling options, model id and revision) and their fingerprint with the
episode id: a resumed run reuses only lines with its own fingerprint and refuses a work file (or a finished
output) computed with other settings, listing what differs. The final parquet is written to a temporary
name and renamed into place. The source dataset is only read.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from topreward._version import __version__
from topreward.annotate.progress_file import read_annotations, refuse_replacing_inputs, write_parquet
from topreward.provenance import check_settings, describe_source, fingerprint, provenance, settings
from topreward.result import ScoreResult
from topreward.worklog import JsonlLog, check_unlocked, locked

logger = logging.getLogger(__name__)

def work_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".work.jsonl")


def lock_path(out: str | Path) -> Path:
    """The lock a run holds while it writes `out` (`topreward.worklog.locked`): one run per output."""
    out = Path(out)
    return out.with_name(out.name + ".lock")


def _one_run_per_output(fn):
    """`annotate` holds the output's lock while it runs: a second run on the same output is refused
    with the first run's process id (a crashed run's lock goes with its process)."""

    @functools.wraps(fn)
    def run(source, scorer, out, **kwargs):
        out = Path(out)
        if kwargs.get("resume") and kwargs.get("overwrite"):
            check_output(out, scorer, {}, resume=True, overwrite=True)  # refused, before anything is made
        out.parent.mkdir(parents=True, exist_ok=True)
        with locked(lock_path(out), str(out)):
            return fn(source, scorer, out, **kwargs)

    return run


@dataclass
class EpisodeTask:
    """What the driver knows about one episode before scoring it."""

    episode_id: str
    episode_index: int
    dataset_from_index: int
    num_frames: int


@dataclass
class AnnotateSummary:
    out: Path
    scored: int = 0
    skipped: int = 0
    reused: int = 0
    frames: int = 0
    seconds: float = 0.0
    skipped_reasons: dict[str, str] = field(default_factory=dict)
    #: episodes scored whose method recorded a failure (e.g. GVL's unreadable answer): progress NaN
    failed_reasons: dict[str, str] = field(default_factory=dict)


def plan(source) -> tuple[list[EpisodeTask], dict[str, str]]:
    """Episode ids, indices and global frame offsets, in source order; episodes that cannot be opened."""
    tasks, broken, offset = [], {}, 0
    for pos, eid in enumerate(source.episode_ids()):
        try:
            ep = source.get(eid)
        except (ValueError, FileNotFoundError, OSError) as e:
            broken[eid] = str(e)
            tasks.append(EpisodeTask(eid, pos, offset, 0))
            continue
        index = int(ep.annotations.get("episode_index", pos))
        start = int(ep.annotations.get("dataset_from_index", offset))
        tasks.append(EpisodeTask(eid, index, start, ep.num_frames))
        offset = start + ep.num_frames
    return tasks, broken


def record_for(
    task: EpisodeTask,
    result: ScoreResult | None = None,
    reason: str | None = None,
    run: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One work-file line; `run` = the run's `provenance.settings`, stored with its fingerprint."""
    rec: dict[str, Any] = asdict(task)
    rec["status"] = "ok" if result is not None else "skipped"
    rec["reason"] = reason
    rec["result"] = None if result is None else result.to_dict()
    if run is not None:
        rec["settings"] = run
        rec["fingerprint"] = fingerprint(run, task.episode_id)
    return rec


def _scored_locally(
    scorer, source, todo: list[EpisodeTask]
) -> Iterator[tuple[EpisodeTask, ScoreResult | None, str | None]]:
    for task in todo:
        try:
            result = scorer.score(source.get(task.episode_id))
        except (ValueError, FileNotFoundError, OSError) as e:
            logger.warning("episode %s skipped: %s", task.episode_id, e)
            yield task, None, str(e)
            continue
        yield task, result, None


def check_output(
    out: str | Path,
    scorer,
    source_info: dict[str, Any],
    *,
    resume: bool = False,
    overwrite: bool = False,
    run: dict[str, Any] | None = None,
) -> str:
    """Every check of `out` and its work file that needs no model: run before one is loaded.

    `scorer` may be a `ScorerSpec` (the settings come from its options). Returns "new" (nothing there or
    `overwrite`), "resume" (a work file whose records match this run) or "complete" (with `resume`: a
    finished output computed with these settings). Raises FileExistsError for an output or work file that
    would be replaced without `--resume`/`--overwrite`, and ValueError (listing what differs) for one made
    with other settings.
    """
    out, work_file = Path(out), work_path(out)
    if resume and overwrite:
        raise ValueError(
            "--resume and --overwrite contradict each other (--resume keeps the finished episodes, "
            "--overwrite deletes them); pass one of them"
        )
    refuse_replacing_inputs(out, source_info)
    check_unlocked(lock_path(out), str(out))  # a run still writing it: not an interrupted one to resume
    if overwrite:
        return "new"
    if out.is_dir():
        raise FileExistsError(
            f"{out} is a folder; --out names the parquet file to write, e.g. {out}/progress.parquet"
        )
    if out.exists() and not resume:
        raise FileExistsError(
            f"{out} exists; pass --resume to continue an interrupted run or --overwrite to replace it"
        )
    if work_file.exists() and not resume:
        raise FileExistsError(
            f"{work_file} holds an interrupted run; pass --resume to continue it or --overwrite to start again"
        )
    if not resume:
        return "new"
    run = settings(provenance(scorer, source_info)) if run is None else run
    if out.exists() and not work_file.exists():
        done = read_annotations(out)[1].get("provenance")
        check_settings(out, None if done is None else settings(done), run)
        return "complete"
    if not work_file.exists():
        return "new"
    for rec in JsonlLog(work_file, ("episode_id",)).records.values():
        if rec.get("fingerprint") != fingerprint(run, rec["episode_id"]):
            check_settings(work_file, rec.get("settings"), run)
    return "resume"


@_one_run_per_output
def annotate(
    source,
    scorer,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    engine: str = "local",
    workers: int = 1,
    gpus_per_worker: float = 0.0,
    ray_address: str | None = None,
    source_factory=None,
    source_info: dict[str, Any] | None = None,
    progress_bar: bool = True,
    calibration=None,
) -> AnnotateSummary:
    """Score every episode of `source` with `scorer` and write the per-frame parquet `out`.

    Args:
        source: an episode source (`topreward.datasets.open_source`).
        scorer: a loaded scorer (`topreward.load_scorer`), or for engine "ray" a `ScorerSpec` (each worker
            loads its own scorer from it).
        out: output parquet path.
        resume: continue from `<out>.work.jsonl`.
        overwrite: start again from nothing.
        engine: "local" (this process) or "ray" (Ray Data: decoding in CPU tasks, scoring in an actor pool).
        workers: Ray actor-pool size.
        gpus_per_worker: GPUs per Ray actor.
        ray_address: an existing Ray cluster to join (e.g. "ray://head:10001" or "auto"); default the
            `RAY_ADDRESS` environment variable, else a local Ray started for this run.
        source_factory: for "ray", a picklable zero-argument callable that reopens `source` in a worker.
        source_info: where `source` comes from (`topreward.provenance.describe_source`, given the spec the
            user typed); default: described from the source itself. It is part of the settings a resumed
            run must match (with the method, its and the sampling's options, the model id and revision).
        calibration: a `topreward.calibration.Calibration`: adds per-episode `success_probability` and
            `success` (success score >= its threshold) columns; checked against each result's method and value.
    """
    out = Path(out)
    work_file = work_path(out)
    source_info = describe_source(source) if source_info is None else source_info
    run = settings(provenance(scorer, source_info))  # what every reused record must have been computed with
    if engine not in ("local", "ray"):
        raise ValueError(f"engine={engine!r}; choose 'local' or 'ray'")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a whole number >= 1 (scorer actors), got {workers!r}")
    if not (
        isinstance(gpus_per_worker, (int, float)) and math.isfinite(gpus_per_worker) and gpus_per_worker >= 0
    ):
        raise ValueError(f"gpus_per_worker must be a number >= 0, got {gpus_per_worker!r}")
    if check_output(out, scorer, source_info, resume=resume, overwrite=overwrite, run=run) == "complete":
        logger.info("%s is complete; nothing to resume", out)
        return AnnotateSummary(out)
    if overwrite:
        work_file.unlink(missing_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)

    tasks, broken = plan(source)
    work = JsonlLog(work_file, ("episode_id",))
    selected = {t.episode_id for t in tasks}
    others = sorted(str(key[0]) for key in work.records if key[0] not in selected)
    if others:  # the final file holds the selected episodes only: finished work would be deleted
        raise ValueError(
            f"{work_file} holds {len(others)} finished episode(s) this run does not select "
            f"({', '.join(others[:5])}{', ...' if len(others) > 5 else ''}); resume with the episode "
            "selection of the interrupted run (a wider one is fine), or --overwrite to discard them"
        )
    summary = AnnotateSummary(out, reused=len(work))
    for task in tasks:
        if task.episode_id in broken and (task.episode_id,) not in work:
            logger.warning("episode %s skipped: %s", task.episode_id, broken[task.episode_id])
            work.add(record_for(task, reason=broken[task.episode_id], run=run))
            summary.skipped += 1
    todo = [t for t in tasks if (t.episode_id,) not in work]

    if engine == "ray":
        from topreward.annotate.ray import score_with_ray

        stream = score_with_ray(
            scorer,
            todo,
            source_factory,
            workers=workers,
            gpus_per_worker=gpus_per_worker,
            address=ray_address,
            progress_bars=False,  # ours counts episodes; Ray Data's own bars would interleave with it
        )
    else:
        stream = _scored_locally(scorer, source, todo)

    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    bar = tqdm(
        total=len(tasks), initial=len(tasks) - len(todo), unit="ep", disable=not progress_bar, desc="annotate"
    )
    for task, result, reason in stream:
        work.add(record_for(task, result, reason, run))
        if result is None:
            summary.skipped += 1
        else:
            summary.scored += 1
            summary.frames += task.num_frames
        elapsed = time.perf_counter() - t0
        bar.set_postfix_str(f"{summary.frames / max(elapsed, 1e-9):.0f} frames/s")
        bar.update(1)
    bar.close()
    summary.seconds = time.perf_counter() - t0

    records = [work.records[(t.episode_id,)] for t in tasks]
    summary.skipped_reasons = {r["episode_id"]: r["reason"] for r in records if r["status"] != "ok"}
    summary.failed_reasons = {
        r["episode_id"]: r["result"]["failure"] for r in records if r["result"] and r["result"].get("failure")
    }
    # the model as the results describe it: the same for both engines (Ray loads it in the workers)
    scored = next((r["result"]["model"] for r in records if r["result"] is not None), None)
    prov = provenance(scorer, source_info, model=scored)
    metadata = {
        "method": scorer.name,
        "config": prov["config"],
        "model_id": prov["model"]["id"],  # a local folder as its absolute path
        "model_revision": prov["model"]["revision"],
        "topreward_version": __version__,
        "provenance": prov,
        "failed_episodes": summary.failed_reasons,
    }
    if calibration is not None:
        records = [
            {**r, **calibration.apply_dict(r["result"], where=f"episode {r['episode_id']}")} for r in records
        ]
        metadata["calibration"] = calibration.describe()
    write_parquet(records, out, metadata)
    work_file.unlink()
    return summary


