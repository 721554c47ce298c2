"""`topreward bench`: a scoring method over datasets, with ground truth and robustness controls.

Per dataset: N episodes drawn with a fixed seed; each is scored, and per episode we record
  * `voc`: Spearman of the predicted per-prefix progress vs time (the paper's VOC, `metrics.voc`);
  * `gt_spearman`, `gt_pearson`: against ground-truth progress at the prefix ends, where the episode has
    ground truth (`groundtruth.ground_truth_for`: per-frame progress, subtasks, or time for successes);
  * controls — `static_voc`: the same method on the first frame repeated to the same length (what VOC
    a model gets from video length alone; the authors found 0.99 for Qwen3-VL-8B); `reversed_voc`: on the
    video played backwards (should be negative); `debiased_voc`: VOC of the method's raw value (TOPReward:
    log P(True)) minus the static video's at the same prefix lengths — a length-debiased score;
  * `success_score` and the episode's success label, for a per-dataset ROC-AUC where both classes exist.
Mismatched instructions: each selected video is scored with each distinct instruction of its dataset (at
most `max_instructions`, seeded) — through `scorer.score_instructions`, so a method on the video cache
encodes the video once for all of them; the matrix of exp(success score) gives the column-normalised
diagonal share (`metrics.confusion_diagonal_share`; chance = 1/n) and the top-1 match rate.

Results go to `<out>/episodes.jsonl` and `<out>/mismatch.jsonl` as they are computed, so a run stopped
at any point and started again continues where it was; `<out>/report.md` and PNG plots are written at
the end.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from topreward import metrics
from topreward.episode import Episode
from topreward.groundtruth import ground_truth_for
from topreward.worklog import JsonlLog

logger = logging.getLogger(__name__)

CONTROLS = ("static", "reversed", "mismatch")


@dataclass
class BenchDataset:
    name: str
    spec: str
    paper_voc: float | None = None


@dataclass
class BenchConfig:
    episodes: int = 20
    seed: int = 0
    controls: tuple[str, ...] = CONTROLS
    max_instructions: int = 8
    plots: int = 3

    def __post_init__(self) -> None:
        bad = set(self.controls) - set(CONTROLS)
        if bad:
            raise ValueError(f"unknown control(s) {sorted(bad)}; choose from {CONTROLS}")
        if self.episodes < 1:
            raise ValueError(f"episodes per dataset must be >= 1, got {self.episodes}")


def static_episode(ep: Episode) -> Episode:
    """The first frame repeated for the episode's length (same fps, same instruction)."""
    return Episode(
        ep.num_frames,
        ep.fps,
        lambda idx: ep.frames(np.zeros(len(idx), np.int64)),
        ep.instruction,
        f"{ep.source} [static]",
        {},
        ep.episode_id,
    )


def reversed_episode(ep: Episode) -> Episode:
    last = ep.num_frames - 1
    return Episode(
        ep.num_frames,
        ep.fps,
        lambda idx: ep.frames(last - np.asarray(idx)),
        ep.instruction,
        f"{ep.source} [reversed]",
        {},
        ep.episode_id,
    )


def choose_episodes(ids: Sequence[str], n: int, seed: int) -> list[str]:
    if len(ids) <= n:
        return list(ids)
    pick = np.random.default_rng(seed).choice(len(ids), size=n, replace=False)
    return [ids[i] for i in sorted(pick)]


def _finite(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def episode_record(
    dataset: str, ep: Episode, gt: np.ndarray | None, result, controls: dict[str, Any]
) -> dict[str, Any]:
    ends = np.asarray(result.prefix_end_frames)
    rec: dict[str, Any] = {
        "dataset": dataset,
        "episode_id": str(ep.episode_id),
        "instruction": result.instruction,
        "num_frames": ep.num_frames,
        "fps": ep.fps,
        "success": ep.annotations.get("success"),
        "voc": _finite(metrics.voc(result.progress, ends)),
        "success_score": float(result.success_score),
        "prefix_end_frames": ends.tolist(),
        "progress": np.asarray(result.progress).tolist(),
        "values": np.asarray(result.values).tolist(),
        "gt": None,
        "gt_spearman": None,
        "gt_pearson": None,
    }
    if gt is not None:
        at_ends = np.asarray(gt)[ends]
        rec["gt"] = at_ends.tolist()
        rec["gt_spearman"] = _finite(metrics.voc(result.progress, at_ends))
        rec["gt_pearson"] = _finite(metrics.pearson(result.progress, at_ends))
    rec.update(controls)
    return rec


def _controls(scorer, ep: Episode, result, wanted: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "static" in wanted:
        static = scorer.score(static_episode(ep))
        out["static_voc"] = _finite(metrics.voc(static.progress, static.prefix_end_frames))
        debiased = np.asarray(result.values) - np.asarray(static.values)
        out["debiased_voc"] = _finite(metrics.voc(debiased, result.prefix_end_frames))
    if "reversed" in wanted:
        rev = scorer.score(reversed_episode(ep))
        out["reversed_voc"] = _finite(metrics.voc(rev.progress, rev.prefix_end_frames))
    return out


@dataclass
class DatasetSummary:
    name: str
    n: int
    values: dict[str, tuple[float, float] | None] = field(default_factory=dict)
    success_auc: float | None = None
    mismatch_diag: float | None = None
    mismatch_top1: float | None = None
    paper_voc: float | None = None


def _mean_std(xs: list) -> tuple[float, float] | None:
    v = np.array([x for x in xs if x is not None], dtype=float)
    return (float(v.mean()), float(v.std())) if len(v) else None


def summarize(dataset: BenchDataset, records: list[dict], mismatch: list[dict]) -> DatasetSummary:
    s = DatasetSummary(dataset.name, len(records), paper_voc=dataset.paper_voc)
    for key in ("voc", "gt_spearman", "static_voc", "reversed_voc", "debiased_voc"):
        s.values[key] = _mean_std([r.get(key) for r in records])
    labelled = [r for r in records if r["success"] is not None]
    labels = [bool(r["success"]) for r in labelled]
    if labelled and 0 < sum(labels) < len(labels):
        s.success_auc = metrics.roc_auc([r["success_score"] for r in labelled], labels)
    if mismatch:
        videos = sorted({m["episode_id"] for m in mismatch})
        texts = sorted({m["instruction"] for m in mismatch})
        own = {r["episode_id"]: r["instruction"] for r in records}
        # rows: instructions, columns: videos; each video's own instruction is on the "diagonal"
        cols = [v for v in videos if own.get(v) in texts]
        if len(texts) >= 2 and cols:
            lookup = {(m["episode_id"], m["instruction"]): m["success_score"] for m in mismatch}
            mat = np.array([[lookup.get((v, t), np.nan) for v in cols] for t in texts])
            if np.isfinite(mat).all():
                probs = np.exp(mat - mat.max(axis=0, keepdims=True))
                rows_of = [texts.index(own[v]) for v in cols]
                shares = probs / probs.sum(axis=0, keepdims=True)
                s.mismatch_diag = float(np.mean([shares[rows_of[j], j] for j in range(len(cols))]))
                s.mismatch_top1 = float(
                    np.mean([np.argmax(mat[:, j]) == rows_of[j] for j in range(len(cols))])
                )
    return s


def run_bench(
    datasets: Sequence[BenchDataset],
    scorer,
    out_dir: str | Path,
    config: BenchConfig | None = None,
    *,
    open_source=None,
    progress_bar: bool = True,
) -> list[DatasetSummary]:
    """Score, control, summarise and report; resumable through the JSONL logs in `out_dir`."""
    from tqdm.auto import tqdm

    from topreward.bench.report import write_report

    if open_source is None:
        from topreward.datasets import open_source
    config = config or BenchConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    episodes_log = JsonlLog(out / "episodes.jsonl", ("dataset", "episode_id"))
    mismatch_log = JsonlLog(out / "mismatch.jsonl", ("dataset", "episode_id", "instruction"))
    summaries = []
    for ds in datasets:
        source = open_source(ds.spec)
        chosen = choose_episodes(source.episode_ids(), config.episodes, config.seed)
        for eid in tqdm(chosen, desc=ds.name, unit="ep", disable=not progress_bar):
            if (ds.name, str(eid)) in episodes_log:
                continue
            ep = source.get(eid)
            # bad annotations are the user's to fix: an error naming the episode, never silently no target
            gt = ground_truth_for(ep.annotations, ep.num_frames, ep.fps, episode=f"{ds.name}/{eid}")
            try:
                result = scorer.score(ep)
                rec = episode_record(ds.name, ep, gt, result, _controls(scorer, ep, result, config.controls))
            except (ValueError, FileNotFoundError, OSError) as e:  # e.g. a corrupt video: skip, recorded
                logger.warning("%s/%s skipped: %s", ds.name, eid, e)
                rec = {"dataset": ds.name, "episode_id": str(eid), "skipped": str(e)}
            episodes_log.add(rec)
        records = [episodes_log.records[(ds.name, str(e))] for e in chosen]
        done = [r for r in records if "skipped" not in r]
        mismatch = []
        if "mismatch" in config.controls:
            texts = sorted({r["instruction"] for r in done})
            if len(texts) > config.max_instructions:
                pick = np.random.default_rng(config.seed).choice(
                    len(texts), config.max_instructions, replace=False
                )
                texts = [texts[i] for i in sorted(pick)]
            if len(texts) >= 2:
                for r in done:
                    keys = {text: (ds.name, r["episode_id"], text) for text in texts}
                    own = {r["instruction"]: r["success_score"]}
                    todo = [t for t in texts if keys[t] not in mismatch_log and t not in own]
                    if todo:
                        results = scorer.score_instructions(source.get(r["episode_id"]), todo)
                        own.update({t: res.success_score for t, res in zip(todo, results)})
                    for text in texts:
                        if keys[text] not in mismatch_log:
                            mismatch_log.add(
                                {
                                    "dataset": ds.name,
                                    "episode_id": r["episode_id"],
                                    "instruction": text,
                                    "success_score": float(own[text]),
                                }
                            )
                        mismatch.append(mismatch_log.records[keys[text]])
        summaries.append(summarize(ds, done, mismatch))
    write_report(
        out,
        summaries,
        [r for r in episodes_log.records.values() if "skipped" not in r],
        config.plots,
        method=getattr(scorer, "name", "?"),
    )
    return summaries
