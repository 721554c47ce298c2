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

import functools
import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from topreward import metrics
from topreward.episode import Episode, control_view
from topreward.groundtruth import ground_truth_for
from topreward.provenance import check_settings, describe_source, fingerprint, provenance, settings
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
    plots: int = 8  # representative curves per dataset: one per (kind, outcome) group, at most this many

    def __post_init__(self) -> None:
        bad = set(self.controls) - set(CONTROLS)
        if bad:
            raise ValueError(f"unknown control(s) {sorted(bad)}; choose from {CONTROLS}")
        for name, low in (("episodes", 1), ("seed", 0), ("max_instructions", 2), ("plots", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                why = " (the mismatch control compares instructions)" if name == "max_instructions" else ""
                raise ValueError(f"{name} must be a whole number >= {low}{why}, got {value!r}")


#: the episode-level controls bench scores beside each episode (`topreward.episode.control_view`)
static_episode = functools.partial(control_view, view="static")
reversed_episode = functools.partial(control_view, view="reversed")


def choose_episodes(ids: Sequence[str], n: int, seed: int) -> list[str]:
    if len(ids) <= n:
        return list(ids)
    pick = np.random.default_rng(seed).choice(len(ids), size=n, replace=False)
    return [ids[i] for i in sorted(pick)]


def _name_parts(spec: str | Path) -> tuple[str, ...]:
    """The resolved path (or Hub id) as parts, last = the dataset's own name: a folder or repo name, a
    manifest's folder for the generic `manifest.jsonl`, else a file's stem."""
    local = Path(spec).expanduser()
    text = str(spec)
    if not local.exists() and text.count("/") == 1 and not text.startswith((".", "/", "~")):
        return tuple(text.split("/"))  # a Hub id, as `open_source` reads it
    local = local.resolve()
    parts = tuple(p for p in local.parent.parts if p != local.anchor)
    if local.is_dir():
        return (*parts, local.name)
    return parts if local.name == "manifest.jsonl" else (*parts, local.stem)


def dataset_names(specs: Sequence[str | Path], taken: Sequence[str] = ()) -> list[str]:
    """A unique short name per dataset (its folder or Hub repo name); when two would be equal, their parent
    folders are prepended ("a/manifest.jsonl", "b/manifest.jsonl" -> "a", "b"; "x/data", "y/data" -> "x-data",
    "y-data"). `taken`: names already in use (a preset's). The same dataset listed twice is an error."""
    parts = [_name_parts(s) for s in specs]
    seen: dict[tuple[str, ...], str] = {}
    for spec, p in zip(specs, parts):
        if p in seen:
            raise ValueError(f"dataset {spec} is listed twice (as {seen[p]} too); list each dataset once")
        seen[p] = str(spec)
    depth = [1] * len(parts)
    while True:
        names = ["-".join(p[-d:]) for p, d in zip(parts, depth)]
        counts = Counter([*names, *taken])
        clash = [i for i, n in enumerate(names) if counts[n] > 1 and depth[i] < len(parts[i])]
        if not clash:
            break
        for i in clash:
            depth[i] += 1
    used = set(taken)
    for i, name in enumerate(names):  # still equal with no parent left (e.g. a preset's name): number it
        k, unique = 2, name
        while unique in used:
            unique, k = f"{name}-{k}", k + 1
        names[i] = unique
        used.add(unique)
    return names


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
        "method": result.method,
        "value_name": result.value_name,
        "model": (result.model or {}).get("id"),
        "kind": ep.annotations.get("kind"),
        "voc": _finite(metrics.voc(result.progress, ends)),
        "failure": result.signals.get("failure"),
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
        rec["gt_frames"] = np.round(np.asarray(gt, float), 4).tolist()  # the whole episode, for plots
        rec["gt_spearman"] = _finite(metrics.voc(result.progress, at_ends))
        rec["gt_pearson"] = _finite(metrics.pearson(result.progress, at_ends))
    if rec["failure"]:  # a generative method's unreadable answer: VOC 0, OpenGVL's convention
        rec["voc"] = 0.0
    rec.update(controls)
    return rec


def _calibrated(rec: dict[str, Any], calibration) -> dict[str, Any]:
    """`rec` with the calibration's `success_probability` and `predicted_success` (label stays `success`)."""
    if calibration is None or "skipped" in rec or "success_probability" in rec:
        return rec
    score = rec["success_score"]
    return {
        **rec,
        "success_probability": float(calibration.probability(score)),
        "predicted_success": bool(calibration.predict(score)),
    }


def _controls(scorer, ep: Episode, result, wanted: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "static" in wanted:
        static = scorer.score(control_view(ep, "static"))
        out["static_voc"] = _finite(metrics.voc(static.progress, static.prefix_end_frames))
        debiased = np.asarray(result.values) - np.asarray(static.values)
        out["debiased_voc"] = _finite(metrics.voc(debiased, result.prefix_end_frames))
    if "reversed" in wanted:
        rev = scorer.score(control_view(ep, "reversed"))
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
    calibration=None,
    overwrite: bool = False,
) -> list[DatasetSummary]:
    """Score, control, summarise and report; resumable through the JSONL logs in `out_dir`.

    With a `topreward.calibration.Calibration`, each record also gets `success_probability` and
    `predicted_success` (`success` stays the episode's label).

    Every record carries its `provenance` and the run's `settings` with their `fingerprint` (resolved
    source, episode id, method, method and sampling options, per-episode controls, model id and revision;
    `topreward.provenance`). A rerun reuses only records with its own fingerprint and refuses an `out_dir`
    computed with other settings, listing what differs; `overwrite=True` deletes the earlier results.
    """
    from tqdm.auto import tqdm

    from topreward.bench.report import write_report

    if open_source is None:
        from topreward.datasets import open_source
    config = config or BenchConfig()
    if calibration is not None:
        options = scorer.options() if hasattr(scorer, "options") else {}
        calibration.check_scores(
            scorer.name,
            getattr(scorer, "value_name", None),
            success_window=options.get("success_window"),
            where=f"the scores of method {scorer.name!r}",
        )
    out = Path(out_dir)
    sources, provs, runs = _setup(datasets, scorer, out, config, open_source)
    out.mkdir(parents=True, exist_ok=True)
    if overwrite:
        for name in ("episodes.jsonl", "mismatch.jsonl", "provenance.json"):
            (out / name).unlink(missing_ok=True)
    episodes_log = JsonlLog(out / "episodes.jsonl", ("dataset", "episode_id"))
    mismatch_log = JsonlLog(out / "mismatch.jsonl", ("dataset", "episode_id", "instruction"))
    for which, log in enumerate((episodes_log, mismatch_log)):
        _check_log(log, {name: run[which] for name, run in runs.items()})
    summaries = []
    for ds in datasets:
        source = sources[ds.name]
        episode_run, mismatch_run = runs[ds.name]
        chosen = choose_episodes(source.episode_ids(), config.episodes, config.seed)
        for eid in tqdm(chosen, desc=ds.name, unit="ep", disable=not progress_bar):
            if (ds.name, str(eid)) in episodes_log:
                continue
            try:
                ep = source.get(eid)
            except (ValueError, FileNotFoundError, OSError) as e:  # e.g. a corrupt video: skip, recorded
                logger.warning("%s/%s skipped: %s", ds.name, eid, e)
                rec = {"dataset": ds.name, "episode_id": str(eid), "skipped": str(e)}
                episodes_log.add(_stamped(rec, episode_run, provs[ds.name]))
                continue
            # bad annotations are the user's to fix: an error naming the episode, never silently no target
            gt = ground_truth_for(ep.annotations, ep.num_frames, ep.fps, episode=f"{ds.name}/{eid}")
            try:
                result = scorer.score(ep)
                rec = episode_record(ds.name, ep, gt, result, _controls(scorer, ep, result, config.controls))
                rec = _calibrated(rec, calibration)
            except (ValueError, FileNotFoundError, OSError) as e:  # e.g. a corrupt video: skip, recorded
                logger.warning("%s/%s skipped: %s", ds.name, eid, e)
                rec = {"dataset": ds.name, "episode_id": str(eid), "skipped": str(e)}
            episodes_log.add(_stamped(rec, episode_run, provs[ds.name]))
        for e in chosen:  # records of an earlier run without the calibration get it in memory (report)
            key = (ds.name, str(e))
            episodes_log.records[key] = _calibrated(episodes_log.records[key], calibration)
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
                desc = f"{ds.name} mismatched instructions"
                for r in tqdm(done, desc=desc, unit="ep", disable=not progress_bar):
                    keys = {text: (ds.name, r["episode_id"], text) for text in texts}
                    own = {r["instruction"]: r["success_score"]}
                    todo = [t for t in texts if keys[t] not in mismatch_log and t not in own]
                    if todo:
                        results = scorer.score_instructions(source.get(r["episode_id"]), todo)
                        own.update({t: res.success_score for t, res in zip(todo, results)})
                    for text in texts:
                        if keys[text] not in mismatch_log:
                            mismatch_log.add(
                                _stamped(
                                    {
                                        "dataset": ds.name,
                                        "episode_id": r["episode_id"],
                                        "instruction": text,
                                        "success_score": float(own[text]),
                                    },
                                    mismatch_run,
                                )
                            )
                        mismatch.append(mismatch_log.records[keys[text]])
        summaries.append(summarize(ds, done, mismatch))
    write_report(
        out,
        summaries,
        [r for r in episodes_log.records.values() if "skipped" not in r],
        config.plots,
        method=getattr(scorer, "name", "?"),
        provenance=report_header(provs, config),
        conventions=getattr(getattr(scorer, "config", None), "conventions", None),
    )
    _write_provenance(out, provs)
    return summaries


def _setup(datasets, scorer, out: Path, config: BenchConfig, open_source):
    """Sources, provenance and record settings per dataset: (sources, provs, runs)."""
    twice = sorted(name for name, n in Counter(ds.name for ds in datasets).items() if n > 1)
    if twice:
        raise ValueError(
            f"dataset name(s) {twice} used for more than one dataset; give each its own name "
            "(topreward.bench.runner.dataset_names picks unique ones)"
        )
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} is a file; --out names the folder for the results, report and plots")
    sources = {ds.name: open_source(ds.spec) for ds in datasets}
    provs, runs = {}, {}  # per dataset: provenance; settings of its episode and mismatch records
    for ds in datasets:
        selection = {"per_dataset": config.episodes, "seed": config.seed}
        provs[ds.name] = provenance(scorer, describe_source(sources[ds.name], ds.spec, episodes=selection))
        per_episode = sorted(set(config.controls) - {"mismatch"})
        runs[ds.name] = (settings(provs[ds.name], controls=per_episode), settings(provs[ds.name]))
    return sources, provs, runs


def check_out(
    datasets: Sequence[BenchDataset],
    scorer,
    out_dir: str | Path,
    config: BenchConfig | None = None,
    *,
    open_source=None,
    overwrite: bool = False,
) -> None:
    """`run_bench`'s checks that need no model, run before one is loaded: the datasets open, and the
    results already in `out_dir` were computed with these settings (`scorer` may be a
    `topreward.annotate.ScorerSpec`). Writes nothing."""
    if open_source is None:
        from topreward.datasets import open_source
    out = Path(out_dir)
    _, _, runs = _setup(datasets, scorer, out, config or BenchConfig(), open_source)
    if overwrite:
        return
    for which, name in enumerate(("episodes.jsonl", "mismatch.jsonl")):
        if (out / name).exists():
            key = ("dataset", "episode_id") if which == 0 else ("dataset", "episode_id", "instruction")
            _check_log(JsonlLog(out / name, key), {ds: run[which] for ds, run in runs.items()})


def report_header(provs: dict[str, dict[str, Any]], config: BenchConfig) -> dict[str, Any]:
    """What the report's header says about the run: method, conventions, model, machine, sources."""
    if not provs:
        return {}
    first = next(iter(provs.values()))
    model, options = first["model"], first["config"]
    head = {
        "method": first["method"],
        "conventions": options.get("conventions"),
        "model": f"{model['id']} (revision {model['revision']}, commit {model['commit']})",
        "device, dtype": f"{first['device']}, {first['dtype']}",
        "episodes per dataset, seed": f"{config.episodes}, {config.seed}",
        "controls": ", ".join(config.controls) or "none",
        "topreward, date": f"{first['topreward_version']}, {first['date']}",
    }
    for name, prov in provs.items():
        src = prov["source"]
        where = src.get("path") or f"{src.get('repo')}@{src.get('revision')}"
        head[f"source {name}"] = where + (f" (camera {src['camera']})" if src.get("camera") else "")
    head["every option"] = "provenance.json"
    return {k: v for k, v in head.items() if v is not None}


def _stamped(rec: dict[str, Any], run: dict[str, Any], prov: dict[str, Any] | None = None) -> dict[str, Any]:
    """`rec` with the run's settings and their fingerprint (and the provenance, for episode records)."""
    rec = {**rec, "settings": run, "fingerprint": fingerprint(run, rec["episode_id"])}
    if prov is not None:
        rec["provenance"] = prov
    return rec


def _check_log(log: JsonlLog, runs: dict[str, dict[str, Any]]) -> None:
    """Refuse a log with records computed otherwise than this run would (`provenance.check_settings`).

    A record of a dataset in this run must have this run's fingerprint; a record of another dataset (an
    earlier run into the same folder) must share everything but the source, so one report never mixes
    methods, options or models.
    """
    if not runs:
        return
    shared = [k for k in next(iter(runs.values())) if not k.startswith("source.")]
    for rec in log.records.values():
        where = f"{log.path} (dataset {rec['dataset']!r}, episode {rec['episode_id']!r})"
        run = runs.get(rec["dataset"])
        if run is None:
            old = rec.get("settings")
            check_settings(where, old, next(iter(runs.values())), keys=shared)
        elif rec.get("fingerprint") != fingerprint(run, rec["episode_id"]):
            check_settings(where, rec.get("settings"), run)


def _write_provenance(out: Path, provs: dict[str, dict[str, Any]]) -> None:
    """`<out>/provenance.json`: per dataset, earlier runs' datasets kept (the report's header sums it up)."""
    path = out / "provenance.json"
    earlier = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**earlier, **provs}, indent=1, sort_keys=True) + "\n")
