"""The `topreward` command: one entry point, one subcommand per job. `main(argv) -> int` for tests."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

SAMPLE_VIDEO = "sample_pick_place.mp4"
SAMPLE_INSTRUCTION = "put the red block into the blue cup"
#: the demo reward model (scripts/train_demo_model.py) and its held-out episode
DEMO_MODEL = "demo_model"
DEMO_CLIP = "demo_heldout.mp4"
DEMO_CLIP_META = "demo_heldout.json"

# Building the parser (and so every `--help`) must not import torch, transformers or a method's model code:
# the option dataclasses and the registry table are plain Python (tests/test_cli_help.py checks this).

EPISODES_HELP = (
    "LeRobot episode selection, by episode index: a slice '0:50' (start:stop[:step], stop excluded), "
    "one index '3', or a list '1,4,7' (default: all)"
)


class _HelpFormatter(argparse.HelpFormatter):
    """Every option's default in its help: appended unless the help already states it (or there is none)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (
            "default" in text
            or not action.option_strings
            or any(action.default is nothing for nothing in (None, False, argparse.SUPPRESS))  # 0 is shown
            or isinstance(action, (argparse._HelpAction, argparse._VersionAction))
        ):
            return action.help
        return text + " (default: %(default)s)"


def _add_quiet(parser: argparse.ArgumentParser, what: str = "no progress bar") -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help=what)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _add_ray_address(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ray-address",
        default=None,
        help="ray: join this running Ray cluster, e.g. 'auto' or 'ray://head:10001' (default: the "
        "RAY_ADDRESS environment variable, else a local Ray for this run)",
    )


def _hush_libraries() -> None:
    """`--quiet`: no download / checkpoint-loading bars from huggingface_hub and transformers either."""
    import os

    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if "transformers" in sys.modules:  # already imported: its logging read the environment at import
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


# ---- dataclass configs <-> flags ------------------------------------------------------------------
def _parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(x) for x in text.lower().split("x"))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"size must look like 256x320 (height x width), got {text!r}") from e
    return h, w


def _none_or(parse):
    def convert(text: str):
        return None if text.lower() in ("none", "all") else parse(text)

    return convert


def _shown(default: Any) -> str:
    return repr(default) if isinstance(default, str) else str(default)  # ' True' keeps its space


def add_config_flags(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """One flag per dataclass field; help and choices come from the field's metadata."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        hint = hints[f.name]
        args = typing.get_args(hint)
        optional = type(None) in args
        base = (
            next((a for a in args if a is not type(None)), hint)
            if isinstance(hint, types.UnionType)
            else hint
        )
        kw: dict[str, Any] = {
            "default": f.default,
            "help": f.metadata.get("help", "") + f" (default: {_shown(f.default)})",
        }
        if typing.get_origin(base) is typing.Literal or "choices" in f.metadata:
            kw["choices"] = list(f.metadata.get("choices") or typing.get_args(base))
        elif base is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(base) is tuple and typing.get_args(base)[1:] == (Ellipsis,):
            kw["nargs"] = "+"  # a list of strings, e.g. prompt templates
            kw["help"] = f.metadata.get("help", "") + f" (default: {len(f.default)} built in)"
        elif typing.get_origin(base) is tuple:
            kw["type"] = _none_or(_parse_size) if optional else _parse_size
            kw["metavar"] = "HxW"
        elif base in (int, float):
            kw["type"] = _none_or(base) if optional else base
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, **kw)


def _option_classes(method: str) -> tuple[type, ...]:
    """The dataclasses whose fields are a method's options: backend, sampling, the method's own."""
    from topreward.backends.config import BackendConfig
    from topreward.sampling import SamplingConfig
    from topreward.scorers.registry import scorer_class

    return (BackendConfig, SamplingConfig, scorer_class(method).Config)


def add_method_flags(parser: argparse.ArgumentParser, method: str) -> None:
    """`--method` plus the flags of the backend, the sampling and the chosen method (from their dataclasses)."""
    from topreward.scorers.registry import scorer_class

    parser.add_argument(
        "--method",
        default="topreward",
        help="scoring method (see `topreward list`); put it first to see its flags",
    )
    titles = ("backend options", "sampling options", f"{method} options ({scorer_class(method).description})")
    for title, cls in zip(titles, _option_classes(method)):
        add_config_flags(parser.add_argument_group(title), cls)


def method_options(args: argparse.Namespace) -> dict[str, Any]:
    """The flat scorer options (backend, sampling, method) given on the command line.

    A local model folder's recommended options (`topreward_scoring.json`, e.g. the sampling a trained
    model expects) replace the defaults of the flags not written on the command line.
    """
    from topreward.scorers.registry import recommended_options

    options = {
        f.name: getattr(args, f.name) for cls in _option_classes(args.method) for f in dataclasses.fields(cls)
    }
    saved = recommended_options(options)
    for name, value in saved.items():
        if name in options and not _given(args, "--" + name.replace("_", "-")):
            options[name] = value
    return options


def valid_flags(method: str) -> list[str]:
    return [
        "--" + f.name.replace("_", "-") for cls in _option_classes(method) for f in dataclasses.fields(cls)
    ]


def _peek_method(argv: list[str]) -> str:
    for i, arg in enumerate(argv):
        if arg == "--method" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--method="):
            return arg.split("=", 1)[1]
    return "topreward"


# ---- subcommands ----------------------------------------------------------------------------------
def _cmd_score(args: argparse.Namespace) -> int:
    from topreward.episode import as_episode
    from topreward.scorers.registry import load_scorer
    from topreward.task_text import check_instruction

    if args.quiet:
        _hush_libraries()
    # inputs and outputs first: nothing is loaded for a run that cannot finish
    episode = as_episode(args.video, args.instruction, args.source_fps)
    truth = _ground_truth_arg(args.ground_truth, episode) if args.ground_truth else None
    calibration = _calibration_arg(args)
    _check_out_file(args.out, "--out")
    if args.plot:
        _check_out_file(args.plot, "--plot")
    inputs = (args.video, args.ground_truth, args.calibration)
    for flag, path in (("--out", args.out), ("--plot", args.plot)):
        _refuse_input_as_output(flag, path, inputs)
    check_instruction(episode)  # the model's own control tokens are checked again once it is loaded
    scorer = load_scorer(args.method, **method_options(args))
    _check_calibration(calibration, scorer)
    result = scorer.score(episode)
    if calibration is not None:
        result = calibration.apply(result)
    out = result.save(args.out)
    print(f"wrote {out}")
    if args.plot:
        from topreward.plot import plot_result

        print(f"wrote {plot_result(result, args.plot, episode, ground_truth=truth)}")
    if not args.quiet:
        _print_summary(result)
    return 0


def _check_out_file(path: str, flag: str) -> None:
    """An output file path that cannot be written is refused before any model is loaded."""
    import os

    target = Path(path).expanduser()
    if target.is_dir():
        raise ValueError(f"{flag} {path} is a folder; name a file, e.g. {target / 'result.json'}")
    parent = target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{flag} {path}: {parent} is a file, not a folder; choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path}: no permission to write in {parent}; choose another folder")


def _refuse_input_as_output(flag: str, out: str | None, inputs: tuple[str | None, ...]) -> None:
    """An output never replaces an input: not the same file, nor a file inside an input folder."""
    if not out:
        return
    target = Path(out).expanduser().resolve()
    for given in inputs:
        if not given or not Path(given).expanduser().exists():
            continue  # e.g. inline JSON
        source = Path(given).expanduser().resolve()
        if target == source or (source.is_dir() and target.exists() and target.is_relative_to(source)):
            raise ValueError(
                f"{flag} {out} would replace the input {given}; an output never replaces an input: "
                "choose another path"
            )


def _ray_only(args: argparse.Namespace) -> None:
    if args.ray_address and args.engine != "ray":
        raise ValueError("--ray-address applies to --engine ray only; add --engine ray or drop it")


def _ground_truth_arg(text: str, episode) -> np.ndarray:
    """Per-frame ground truth from `--ground-truth` (a JSON file or inline JSON with manifest keys)."""
    import json

    from topreward.groundtruth import ground_truth_for

    path = Path(text)
    try:
        raw = path.read_text() if not text.lstrip().startswith("{") and path.is_file() else text
        annotations = json.loads(raw)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(
            f"--ground-truth {text!r} is neither a readable JSON file nor inline JSON ({e}); give e.g. "
            "'{\"success\": true}' or a file with 'progress' / 'subtasks'"
        ) from e
    if not isinstance(annotations, dict):
        raise ValueError("--ground-truth must be a JSON object with 'progress', 'subtasks' or 'success'")
    truth = ground_truth_for(annotations, episode.num_frames, episode.fps, episode.source)
    if truth is None:
        raise ValueError(
            f"--ground-truth {text!r} gives no progress: it needs 'progress' (one value per frame), "
            "'subtasks', or 'success': true (time-based progress)"
        )
    return truth


def _print_summary(result) -> None:
    print(
        f"method: {result.method}  instruction: {result.instruction!r}  success score: {result.success_score:.3f}"
    )
    if result.signals.get("failure"):
        print(f"FAILED (recorded in the result as `failure`): {result.signals['failure']}")
    if result.success_probability is not None:
        print(
            f"success probability: {result.success_probability:.3f}  success: {result.success}  "
            f"(calibration {result.calibration['mapping']}, threshold {result.calibration['threshold']:.3f})"
        )
    k = len(result.prefix_lengths)
    # the method's per-point signals that are plain numbers get a column each (e.g. log P(True), log P(False))
    extra = {
        name: np.asarray(v, dtype=float)
        for name, v in result.signals.items()
        if isinstance(v, np.ndarray) and v.ndim == 1 and len(v) == k and not np.array_equal(v, result.values)
    }
    names = [result.value_name, *[n for n in extra if n != result.value_name]]
    columns = [np.asarray(result.values, float), *[extra[n] for n in names[1:]]]
    print(" prefix  end frame  " + "  ".join(f"{n:>12}" for n in names) + "  progress")
    for i in range(k):
        cells = "  ".join(f"{c[i]:12.3f}" for c in columns)
        print(
            f" {result.prefix_lengths[i]:6d}  {result.prefix_end_frames[i]:9d}  {cells}  {result.progress[i]:8.3f}"
        )
    print(f"model time {result.timings['model_s']:.2f}s, total {result.timings['total_s']:.2f}s")


def _cmd_make_tiny_model(args: argparse.Namespace) -> int:
    from topreward.tiny import make_tiny_model

    print(f"wrote tiny {args.arch} model to {make_tiny_model(args.path, args.arch, seed=args.seed)}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    import json

    from topreward.episode import Episode
    from topreward.plot import plot_result
    from topreward.scorers.registry import load_scorer

    if args.quiet:
        _hush_libraries()
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(
            f"--out {out} is a file; demo writes a folder (result.json, curve.png): name a folder"
        )
    with resources.as_file(resources.files("topreward") / "assets") as assets:
        trained = (assets / DEMO_MODEL / "config.json").is_file()
        if trained:  # the shipped demo reward model on a held-out simulated episode
            meta = json.loads((assets / DEMO_CLIP_META).read_text())
            episode = Episode.from_video(assets / DEMO_CLIP, meta["instruction"])
            scorer = load_scorer("topreward", model=str(assets / DEMO_MODEL))  # with its recommended options
            truth = np.asarray(meta["progress"], dtype=float)
        else:  # an installation without it: a tiny random-weight model shows the pipeline only
            from topreward.tiny import make_tiny_model

            model_dir = out / "tiny-qwen3_vl"
            if not (model_dir / "config.json").exists():
                make_tiny_model(model_dir, "qwen3_vl")
            episode = Episode.from_video(assets / SAMPLE_VIDEO, SAMPLE_INSTRUCTION)
            scorer, truth = load_scorer("topreward", model=str(model_dir), num_prefixes=None), None
        result = scorer.score(episode)
        json_path = result.save(out / "result.json")
        png_path = plot_result(result, out / "curve.png", episode, ground_truth=truth)
    if not args.quiet:
        if trained:
            print(
                "TOPReward demo: the bundled demo reward model, a small Qwen3-VL trained here on simulated "
                f"Meta-World episodes (scripts/train_demo_model.py), scores a held-out {meta['task']} episode "
                f"(seed {meta['seed']}, {meta['kind']}, success). It knows only this simulator: for real robots "
                "use a pretrained VLM, e.g. --model Qwen/Qwen3-VL-8B-Instruct."
            )
        else:
            print("TOPReward demo: a tiny random-weight Qwen3-VL (built locally) scores the bundled clip.")
            print("Its numbers show the pipeline, not a trained model's judgement.")
        _print_summary(result)
    print(f"result: {json_path}\nplot:   {png_path}")
    return 0


def _calibration_arg(args: argparse.Namespace):
    """The `--calibration FILE` of score/annotate/bench, loaded and checked against `--method` before any
    model is loaded (the value name is checked once the scorer is)."""
    if not getattr(args, "calibration", None):
        return None
    from topreward.calibration import Calibration

    calibration = Calibration.load(args.calibration)
    calibration.check_scores(args.method, where=f"the scores of method {args.method!r}")
    return calibration


def _check_calibration(calibration, scorer) -> None:
    if calibration is not None:
        calibration.check_scores(
            scorer.name,
            scorer.value_name,
            success_window=scorer.options().get("success_window"),
            where=f"the scores of method {scorer.name!r}",
        )


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from topreward.calibration import (
        CalibrationConfig,
        fit_calibration,
        held_out_probabilities,
        load_labelled,
        plot_reliability,
    )

    config = CalibrationConfig(
        **{f.name: getattr(args, f.name) for f in dataclasses.fields(CalibrationConfig)}
    )
    data = load_labelled(args.inputs)
    stated = {
        "method": ("--scores-method", args.scores_method),
        "value_name": ("--value-name", args.value_name),
        "model": ("--model-id", args.model_id),
    }
    for key, (flag, value) in stated.items():
        if value is None:
            continue
        if data.scored_with.get(key) not in (None, value):
            raise ValueError(
                f"{flag} {value!r} contradicts the records, whose {key} is {data.scored_with[key]!r}"
            )
        data.scored_with[key] = value
    if data.scored_with.get("value_name") is None and not args.quiet:
        print("note: the records do not say what their scores are; pass --scores-method and --value-name")
        print("      so that applying this calibration to other scores is refused")
    calibration = fit_calibration(
        data.scores,
        data.labels,
        config,
        groups=data.groups,
        ids=data.ids,
        scored_with=data.scored_with,
        sources=data.sources,
    )
    out = calibration.save(args.out)
    m, n = calibration.metrics, calibration.counts
    print(
        f"{len(data.scores)} labelled episodes ({data.unlabelled} unlabelled and {data.skipped} skipped left out); "
        f"fit: {n['fit']['success']} successes / {n['fit']['failure']} failures, "
        f"held out: {n['test']['success']} / {n['test']['failure']}"
    )
    ci = m["roc_auc_ci"]
    print(
        f"{calibration.mapping}, threshold {calibration.threshold:.4f} ({calibration.threshold_rule}); held-out: "
        f"ROC-AUC {m['roc_auc']:.3f}"
        + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
        + f", Brier {m['brier']:.4f}, ECE {m['ece']:.4f}, accuracy {m['accuracy']:.3f}"
    )
    for name, other in calibration.compared.items():
        if "error" not in other:
            print(f"  {name} on the same split: Brier {other['brier']:.4f}, ECE {other['ece']:.4f}")
    print(f"wrote {out}")
    if not args.no_plot:
        plot = Path(args.plot) if args.plot else out.with_name(out.stem + "_reliability.png")
        curves, labels = held_out_probabilities(data, config)
        try:
            title = f"held-out split, {len(labels)} episodes, {config.bins} equal-width bins"
            print(f"wrote {plot_reliability(curves, labels, plot, bins=config.bins, title=title)}")
        except ImportError as e:
            if args.plot:
                raise
            print(f"no reliability diagram: {e}")
    return 0


def _open_source_args(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "camera": args.camera,
        "episodes": args.episodes,
        "manifest": args.manifest,
        "instruction": args.instruction,
    }


def _cmd_annotate(args: argparse.Namespace) -> int:
    import functools

    from topreward.annotate import annotate, check_output
    from topreward.datasets import open_source
    from topreward.provenance import describe_source
    from topreward.scorers.registry import ScorerSpec, load_scorer

    _ray_only(args)
    if args.quiet:
        _hush_libraries()
    if args.into_dataset:  # asked for by name: LeRobot's default location inside the source dataset
        from topreward.annotate.progress_file import lerobot_progress_path

        args.out = str(lerobot_progress_path(args.source))
    calibration = _calibration_arg(args)
    spec = ScorerSpec(args.method, method_options(args))
    if not args.resume:  # an output in the way: refused before a dataset is opened (or downloaded)
        check_output(args.out, spec, {}, overwrite=args.overwrite)
    source_kwargs = _open_source_args(args)
    source = open_source(args.source, **source_kwargs)
    source_info = describe_source(source, args.source, episodes=args.episodes)
    # a resume made with other settings: refused before the model is loaded
    check_output(args.out, spec, source_info, resume=args.resume, overwrite=args.overwrite)
    if args.engine == "ray":
        scorer = spec  # each worker loads its own; value names: checked on the results
    else:
        scorer = load_scorer(args.method, **method_options(args))
        _check_calibration(calibration, scorer)
    summary = annotate(
        source,
        scorer,
        args.out,
        resume=args.resume,
        overwrite=args.overwrite,
        engine=args.engine,
        workers=args.workers,
        gpus_per_worker=args.gpus_per_worker,
        ray_address=args.ray_address,
        source_factory=functools.partial(open_source, args.source, **source_kwargs),
        source_info=source_info,
        progress_bar=not args.quiet,
        calibration=calibration,
    )
    print(
        f"wrote {summary.out}: {summary.scored} episodes scored, {summary.reused} reused from an earlier run, "
        f"{summary.skipped} skipped"
    )
    for eid, reason in summary.skipped_reasons.items():
        print(f"  skipped {eid}: {reason}")
    if summary.failed_reasons:
        print(f"{len(summary.failed_reasons)} episodes failed (progress NaN; reasons in the metadata):")
        for eid, reason in list(summary.failed_reasons.items())[:5]:
            print(f"  failed {eid}: {reason[:160]}")
    return 0


def _cmd_weights(args: argparse.Namespace) -> int:
    from topreward.annotate.weights import write_weights

    # `--beta` as typed: write_weights parses it and names it when it is neither 'auto' nor a number > 0
    print(f"wrote {write_weights(args.annotations, args.out, beta=args.beta, max_weight=args.max_weight)}")
    return 0


def _cmd_rank(args: argparse.Namespace) -> int:
    import json
    import math

    from topreward.annotate.weights import rank_episodes

    if args.top is not None and args.top < 1:
        raise ValueError(f"--top {args.top}: keep a whole number >= 1 of episodes (or leave --top out)")
    if args.min_score is not None and not math.isfinite(args.min_score):
        raise ValueError(f"--min-score {args.min_score}: give a finite number (success scores are finite)")
    rows = rank_episodes(args.annotations)
    keep = [
        r
        for r in rows
        if r["success_score"] is not None and (args.min_score is None or r["success_score"] >= args.min_score)
    ]
    if args.top is not None:
        keep = keep[: args.top]
    kept = sorted(r["episode_index"] for r in keep)
    episodes_json = json.dumps(kept, separators=(",", ":"))  # one shell word: --dataset.episodes=[0,3,7]
    meta = _annotation_metadata(args.annotations)
    source = (meta.get("provenance") or {}).get("source") or {}
    if source.get("type") not in (None, "LeRobotSource") and (args.episodes_out or args.print_episodes):
        print(
            f"note: {args.annotations} was scored from a {source['type']}: its episode indices are positions "
            "in that source, not LeRobot episode indices",
            file=sys.stderr,
        )
    if args.print_episodes:
        print(episodes_json)
    else:
        print(" rank  episode  success score  frames")
        for i, r in enumerate(rows, 1):
            score = "skipped" if r["success_score"] is None else f"{r['success_score']:.3f}"
            mark = "*" if r in keep else " "
            print(f"{mark}{i:4d}  {r['episode_index']:7d}  {score:>13}  {r['num_frames']:6d}")
    if args.episodes_out:
        _write_text(args.episodes_out, episodes_json + "\n")
        if not args.print_episodes:
            print(f"wrote {len(kept)} episode indices (marked *) to {args.episodes_out}")
    if args.out:
        from topreward._version import __version__

        record = {
            "episodes": kept,  # LeRobot's --dataset.episodes
            "selection": {
                "rule": "success score, best first; skipped and failed episodes never kept",
                "top": args.top,
                "min_score": args.min_score,
            },
            "annotations": str(Path(args.annotations).resolve()),
            "scored_with": {
                "method": meta.get("method"),
                "model_id": meta.get("model_id"),
                "model_revision": meta.get("model_revision"),
                "source": source or None,
                "topreward_version": meta.get("topreward_version"),
            },
            "ranking": [{"rank": i, **r, "kept": r in keep} for i, r in enumerate(rows, 1)],
            "topreward_version": __version__,
        }
        _write_text(args.out, json.dumps(record, indent=1, allow_nan=False) + "\n")
        if not args.print_episodes:
            print(f"wrote the ranking with its provenance to {args.out}")
    return 0


def _annotation_metadata(path: str) -> dict[str, Any]:
    """The `topreward` metadata of an annotation parquet (its schema only; the rows are not read)."""

    from topreward.annotate.progress_file import read_metadata

    return read_metadata(path)


def _write_text(path: str, text: str) -> None:
    """Write a small output file atomically (a temporary name, then a rename)."""
    from topreward.atomic import write_text

    write_text(path, text)


def _cmd_bench(args: argparse.Namespace) -> int:
    import functools

    from topreward.bench import BenchConfig, BenchDataset, run_bench
    from topreward.bench.presets import preset
    from topreward.bench.report import text_table
    from topreward.bench.runner import check_out, dataset_names
    from topreward.datasets import open_source
    from topreward.scorers.registry import ScorerSpec, load_scorer

    if args.quiet:
        _hush_libraries()
    episodes = args.num_episodes
    datasets = []
    if args.preset:
        p = preset(args.preset)
        datasets += [BenchDataset(d.name, d.spec, d.paper_voc) for d in p["datasets"]]
        episodes = episodes or p["episodes"]
    names = dataset_names(args.datasets, taken=[d.name for d in datasets])  # unique: folder or repo name
    datasets = [BenchDataset(n, spec) for n, spec in zip(names, args.datasets)] + datasets
    if not datasets:
        raise ValueError("name at least one dataset (manifest, folder, LeRobot root or Hub id) or --preset")
    controls = tuple(c for c in args.controls.split(",") if c) if args.controls != "none" else ()
    bench = BenchConfig(
        episodes=episodes or 20, seed=args.seed, controls=controls, max_instructions=args.max_instructions
    )
    calibration = _calibration_arg(args)
    options = method_options(args)
    wanted = args.preset and preset(args.preset).get("conventions")
    if wanted and "conventions" in options and not _given(args, "--conventions"):
        options["conventions"] = wanted
        print(f"note: --preset {args.preset} runs --conventions {wanted}, as its reference numbers were made")
    opener = functools.partial(open_source, camera=args.camera, episodes=args.episodes)
    # the datasets open and --out holds no results made otherwise: checked before the model is loaded
    check_out(
        datasets,
        ScorerSpec(args.method, options),
        args.out,
        bench,
        open_source=opener,
        overwrite=args.overwrite,
    )
    scorer = load_scorer(args.method, **options)
    summaries = run_bench(
        datasets,
        scorer,
        args.out,
        bench,
        open_source=opener,
        progress_bar=not args.quiet,
        calibration=calibration,
        overwrite=args.overwrite,
    )
    print(text_table(summaries))
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0


def _given(args: argparse.Namespace, flag: str) -> bool:
    """Whether `flag` was written on the command line (not just left at its default)."""
    return any(a == flag or a.startswith(flag + "=") for a in getattr(args, "argv", []))


def _cmd_sim(args: argparse.Namespace) -> int:
    from topreward.sim import generate, list_tasks

    if args.list_tasks:
        print("\n".join(list_tasks()))
        return 0
    options = {
        "max_steps": args.max_steps,
        "fps": args.video_fps,
        "noise_std": args.noise_std,
        "size": args.size,
        "trim_after_success": args.trim_after_success,
        "progress": not args.quiet,
    }
    tasks, kinds = args.tasks.split(","), tuple(args.kinds.split(","))
    if args.format == "lerobot":
        from topreward.sim.lerobot_format import generate_lerobot

        root = generate_lerobot(args.out, tasks, range(args.seeds), kinds, **options)
        print(f"wrote LeRobot dataset {root} (load: LeRobotDataset('local/sim', root={str(root)!r}))")
        return 0
    manifest = generate(args.out, tasks, range(args.seeds), kinds=kinds, **options)
    print(f"wrote {manifest}")
    return 0


def _cmd_tokens(args: argparse.Namespace) -> int:
    import json

    from topreward.bench.tokens import answer_token_study
    from topreward.datasets import open_source
    from topreward.scorers.registry import load_scorer

    if args.method != "topreward":
        raise ValueError("the answer-token study reads TOPReward's prompt; use --method topreward")
    if args.quiet:
        _hush_libraries()
    source = open_source(args.source, camera=args.camera)  # before the model: a bad source fails fast
    if args.out:
        _check_out_file(args.out, "--out")
    scorer = load_scorer(args.method, **method_options(args))
    candidates = [w for w in args.candidates.split(",")] if args.candidates else None
    study = answer_token_study(
        source,
        scorer,
        candidates=candidates,
        top_vocab=args.top_vocab,
        max_episodes=args.max_episodes,
        progress_bar=not args.quiet,
    )
    print(study.table())
    if args.out:
        Path(args.out).write_text(json.dumps(study.to_dict(), indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    import os
    import threading

    from topreward.scorers.registry import load_scorer
    from topreward.serve import ServeLimits, serve

    token = args.token or os.environ.get("TOPREWARD_TOKEN")
    from topreward.serve.server import check_port

    check_port(args.port)  # every option is checked before a model is loaded
    _ray_only(args)
    if args.quiet:
        _hush_libraries()
    limits = ServeLimits(
        max_request_bytes=args.max_request_mb * 2**20,
        max_side=args.max_side,
        max_session_frames=args.max_session_frames,
        max_sessions=args.max_sessions,
        idle_s=args.idle_s,
        token=token,
    )
    auth = "bearer token" if token else "none"
    if args.engine == "ray":
        from topreward.serve.ray import deploy

        url = deploy(
            args.method,
            method_options(args),
            replicas=args.replicas,
            gpus_per_replica=args.gpus_per_replica,
            host=args.host,
            port=args.port,
            limits=limits,
            address=args.ray_address,
        )
        print(
            f"topreward serve: {args.method} on {url}, {args.replicas} Ray Serve replica(s) (auth: {auth})",
            flush=True,
        )
        stop = None  # Ray Serve stops with this driver
    else:
        server, service = serve(
            load_scorer(args.method, **method_options(args)), args.host, args.port, limits
        )
        host, port = server.server_address[:2]
        print(f"topreward serve: {args.method} on http://{host}:{port} (auth: {auth})", flush=True)

        def stop() -> None:
            server.shutdown()
            service.close()

    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        print("stopping")
    finally:
        if stop is not None:
            stop()
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from topreward.train import TrainConfig, train

    sampling = {k: getattr(args, k) for k in ("fps", "max_frames", "max_pixels", "size")}
    config = TrainConfig(
        args.head,
        list(args.sources),
        args.model,
        args.out,
        steps=args.steps,
        lr=args.lr,
        batch_size=args.batch_size,
        lora=args.lora,
        lora_rank=args.lora_rank,
        val_fraction=args.val_fraction,
        seed=args.seed,
        num_points=args.num_points,
        done_at=args.done_at,
        demos_succeed=args.demos_succeed,
        augment=tuple(v for v in args.augment.split(",") if v),
        eval_every=args.eval_every,
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
        device=args.device,
        dtype=args.dtype,
        sampling={k: v for k, v in sampling.items() if v is not None},
    )
    result = train(config, progress_bar=not args.quiet)
    last = result.evaluations[-1] if result.evaluations else {}
    print(f"trained {config.head} for {result.steps} steps: {result.out / 'final'}  {last}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from topreward.scorers.registry import list_scorers, scorer_class

    width = max(len(n) for n in list_scorers())
    for name in list_scorers():
        cls = scorer_class(name)
        needs = ", ".join(sorted(cls.requires))
        print(f"{name:<{width}}  {cls.description}  [needs: {needs}]")
    print("options of a method: topreward score --method NAME --help")
    return 0


def build_parser(method: str = "topreward") -> argparse.ArgumentParser:
    """The whole command line; `method` decides which method's flags score/annotate/bench/tokens take."""
    from topreward._version import __version__
    from topreward.tiny import ALL_ARCHS

    parser = argparse.ArgumentParser(
        prog="topreward",
        description="Zero-shot rewards and progress from video VLMs.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"topreward {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level (Ray's logs too)")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="on an error, show the full traceback (default: one line naming the file and the fix)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, **kw: Any) -> argparse.ArgumentParser:
        return sub.add_parser(name, formatter_class=_HelpFormatter, **kw)

    p = command("score", help="score one video: progress curve, success score, dense rewards")
    p.add_argument("video", help="video file (mp4, ...) or folder of frames")
    p.add_argument("instruction", help="task text, e.g. 'put the pen into the cup'")
    p.add_argument("--out", default="result.json", help="result JSON path (default: result.json)")
    p.add_argument("--plot", default=None, help="also write a PNG plot here")
    p.add_argument(
        "--ground-truth",
        default=None,
        help="ground truth drawn on --plot: a JSON file or inline JSON with the manifest keys "
        "'progress' (per frame), 'subtasks' or 'success' (e.g. '{\"success\": true}')",
    )
    p.add_argument(
        "--source-fps",
        type=float,
        default=None,
        help="recorded frame rate of a frame folder (a video's own rate is read from the file); "
        "not --fps, the rate at which frames are sampled for the model",
    )
    p.add_argument(
        "--calibration",
        default=None,
        help="a `topreward calibrate` JSON: also report success_probability and success (score >= threshold)",
    )
    _add_quiet(p, "print only the paths written (no table, no model-loading bars)")
    add_method_flags(p, method)
    p.set_defaults(func=_cmd_score)

    p = command("make-tiny-model", help="write a tiny random-weight model + processor (offline tests)")
    p.add_argument("path", help="folder to write the model into")
    p.add_argument("--arch", choices=ALL_ARCHS, default="qwen3_vl", help="architecture of the tiny model")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    p.set_defaults(func=_cmd_make_tiny_model)

    p = command("demo", help="offline demo: tiny model scores the bundled sample clip")
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    _add_quiet(p, "print only the paths written")
    p.set_defaults(func=_cmd_demo)

    p = command("annotate", help="score a whole dataset; per-frame progress parquet (LeRobot RA-BC schema)")
    p.add_argument(
        "source", help="LeRobot dataset root or Hub id, folder of videos, manifest .jsonl, or a video"
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", default=None, help="output parquet (e.g. progress.parquet)")
    where.add_argument(
        "--into-dataset",
        action="store_true",
        help="write <dataset root>/sarm_progress.parquet, where lerobot-train --use_rabc=true finds it "
        "without --rabc_progress_path (a local LeRobot dataset root only; the only file written into it)",
    )
    p.add_argument("--camera", default=None, help="LeRobot video key (default: the first)")
    p.add_argument("--episodes", default=None, help=EPISODES_HELP)
    p.add_argument("--manifest", default=None, help="JSONL manifest for a folder of videos")
    p.add_argument("--instruction", default=None, help="instruction for videos without one")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument(
        "--overwrite", action="store_true", help="replace an existing output and work file (other settings)"
    )
    p.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local (one model in this process) or ray (Ray Data: decoding tasks, an actor pool of models)",
    )
    p.add_argument("--workers", type=int, default=1, help="ray: scorer actors (one model each)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="ray: GPUs per scorer actor")
    _add_ray_address(p)
    _add_quiet(p, "no progress bar")
    p.add_argument(
        "--calibration",
        default=None,
        help="a `topreward calibrate` JSON: also report success_probability and success (score >= threshold)",
    )
    add_method_flags(p, method)
    p.set_defaults(func=_cmd_annotate)

    p = command("weights", help="advantage-weighted BC weights from an annotation parquet (Eq.5)")
    p.add_argument("annotations", help="parquet written by `topreward annotate`")
    p.add_argument("--out", required=True, help="output parquet")
    p.add_argument(
        "--beta", default="auto", help="temperature beta, or auto = std of the advantages (default)"
    )
    p.add_argument("--max-weight", type=float, default=2.0, help="cap of the weights (default: 2)")
    p.set_defaults(func=_cmd_weights)

    p = command("rank", help="episodes by success score; optionally write a filtered episode list")
    p.add_argument("annotations", help="parquet written by `topreward annotate`")
    p.add_argument("--top", type=int, default=None, help="keep the N best episodes")
    p.add_argument("--min-score", type=float, default=None, help="keep episodes with success score >= this")
    p.add_argument(
        "--out",
        default=None,
        help="write the ranking as JSON with its provenance: the annotation file, the method, model and "
        "source it was scored with, the filters, every episode's score, and the kept `episodes`",
    )
    p.add_argument(
        "--episodes-out",
        default=None,
        help="write only the kept episode indices as a JSON list, e.g. [0,3,7]: what LeRobot's "
        "--dataset.episodes takes",
    )
    p.add_argument(
        "--print-episodes",
        action="store_true",
        help="print only the kept episode indices as one JSON list (no table), for "
        "--dataset.episodes=$(topreward rank ... --print-episodes)",
    )
    p.set_defaults(func=_cmd_rank)

    p = command("bench", help="evaluate a method on datasets: VOC, success AUC, controls, report")
    p.add_argument("datasets", nargs="*", help="manifests, video folders, LeRobot roots or Hub ids")
    p.add_argument("--preset", default=None, help="a named dataset list, e.g. oxe39 (the paper's Table 6)")
    p.add_argument(
        "--out",
        required=True,
        help="output folder (results, report.md, plots); reruns with the same settings resume",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="delete the results in --out first (e.g. other settings)"
    )
    p.add_argument("--camera", default=None, help="LeRobot datasets: the video key (default: the first)")
    p.add_argument("--episodes", default=None, help=EPISODES_HELP + "; the draw is made from these")
    p.add_argument(
        "--num-episodes",
        type=_positive_int,
        default=None,
        help="episodes drawn per dataset (seeded, without replacement; default: the preset's, else 20)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the episode draw")
    p.add_argument(
        "--controls",
        default="static,reversed,mismatch",
        help="comma list of static, reversed, mismatch, or none (default: all)",
    )
    p.add_argument(
        "--max-instructions", type=int, default=8, help="instructions per dataset in the mismatch control"
    )
    _add_quiet(p, "no progress bars")
    p.add_argument(
        "--calibration",
        default=None,
        help="a `topreward calibrate` JSON: also report success_probability and success (score >= threshold)",
    )
    add_method_flags(p, method)
    p.set_defaults(func=_cmd_bench)

    p = command(
        "tokens",
        help="answer-token study (TOPReward App. B): which answer word separates success from failure",
    )
    p.add_argument("source", help="a source with success labels (manifest, folder, LeRobot root)")
    p.add_argument(
        "--candidates", default=None, help="comma list of answer words, e.g. ' True, Yes' (default: built in)"
    )
    p.add_argument(
        "--top-vocab", type=int, default=0, help="also rank the N most separating vocabulary tokens"
    )
    p.add_argument("--camera", default=None, help="LeRobot datasets: the video key (default: the first)")
    p.add_argument("--max-episodes", type=int, default=None, help="score at most this many episodes")
    p.add_argument("--out", default=None, help="write the table as JSON here")
    _add_quiet(p, "no progress bar")
    add_method_flags(p, method)
    p.set_defaults(func=_cmd_tokens)

    p = command("sim", help="generate Meta-World episodes with ground truth (extra [sim])")
    p.add_argument(
        "--out",
        default="sim_out",
        help="output folder: videos/ + manifest.jsonl, or a LeRobot dataset root with --format lerobot; "
        "reruns resume (default: sim_out)",
    )
    p.add_argument(
        "--format",
        choices=("manifest", "lerobot"),
        default="manifest",
        help="manifest: mp4s + manifest.jsonl with ground truth; lerobot: a LeRobot v3.0 dataset with "
        "observation.image, observation.state, action, and ground-truth progress/success columns "
        "(default: manifest)",
    )
    p.add_argument(
        "--tasks",
        default="push-v3,pick-place-v3,drawer-open-v3,button-press-topdown-v3",
        help="comma list of Meta-World v3 tasks (see --list-tasks)",
    )
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per task (default 3)")
    p.add_argument("--kinds", default="expert,noisy,freeze,random", help="episode kinds (default: all four)")
    p.add_argument("--max-steps", type=int, default=150, help="env steps per episode, one frame each")
    p.add_argument(
        "--video-fps",
        type=float,
        default=30.0,
        help="frame rate of the episodes written (one env step per frame); not score's --fps, the rate "
        "frames are sampled for the model",
    )
    p.add_argument("--noise-std", type=float, default=0.5, help="action noise of 'noisy' episodes")
    p.add_argument("--size", type=int, default=224, help="square frame size in pixels")
    p.add_argument(
        "--trim-after-success",
        type=int,
        default=None,
        help="end episodes this many steps after the expert first succeeds",
    )
    p.add_argument("--list-tasks", action="store_true", help="print the supported tasks and exit")
    _add_quiet(p, "no progress bar")
    p.set_defaults(func=_cmd_sim)

    p = command("serve", help="reward server for RL workers: streaming sessions and one-shot scoring")
    p.add_argument(
        "--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1, this machine only)"
    )
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 = any free port)")
    p.add_argument(
        "--token", default=None, help="require 'Authorization: Bearer TOKEN' (or set TOPREWARD_TOKEN)"
    )
    p.add_argument("--max-request-mb", type=int, default=64, help="largest request body in MiB (default: 64)")
    p.add_argument("--max-side", type=int, default=2048, help="largest frame side in pixels (default: 2048)")
    p.add_argument(
        "--max-session-frames", type=int, default=4096, help="frames one session takes (default: 4096)"
    )
    p.add_argument("--max-sessions", type=int, default=64, help="open sessions at once (default: 64)")
    p.add_argument("--idle-s", type=float, default=600.0, help="close sessions idle this long (default: 600)")
    p.add_argument(
        "--engine", choices=("local", "ray"), default="local", help="local (one model) or ray (Ray Serve)"
    )
    p.add_argument("--replicas", type=int, default=1, help="ray: model replicas (default: 1)")
    p.add_argument("--gpus-per-replica", type=float, default=0.0, help="ray: GPUs per replica (default: 0)")
    _add_ray_address(p)
    _add_quiet(p, "no model-loading bars")
    add_method_flags(p, method)
    p.set_defaults(func=_cmd_serve)

    p = command(
        "calibrate",
        help="fit score -> success probability and a threshold on labelled episodes (bench output, JSONL, CSV)",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        help="`topreward bench --out` folders (their episodes.jsonl) or JSONL/CSV files of records with "
        "success_score and success",
    )
    p.add_argument("--out", default="calibration.json", help="calibration JSON (default: calibration.json)")
    p.add_argument("--plot", default=None, help="reliability diagram PNG (default: <out>_reliability.png)")
    p.add_argument("--no-plot", action="store_true", help="no reliability diagram")
    p.add_argument(
        "--scores-method", default=None, help="the scoring method of the scores, if the records do not say"
    )
    p.add_argument(
        "--value-name",
        default=None,
        help="what the scores are, e.g. 'log P(True)', if the records do not say",
    )
    p.add_argument("--model-id", default=None, help="the model that scored them, if the records do not say")
    _add_quiet(p, "no notes; print the summary and the paths written")
    from topreward.calibration import CalibrationConfig

    add_config_flags(p.add_argument_group("calibration options"), CalibrationConfig)
    p.set_defaults(func=_cmd_calibrate)

    from topreward.backends.config import DEFAULT_MODEL
    from topreward.sampling import SamplingConfig
    from topreward.train import HEADS, METHOD_OF

    p = command(
        "train",
        help="fine-tune a reward model on episodes with ground truth (LRM heads or a TOPReward head)",
        description="Heads and the method that scores with each: "
        + ", ".join(f"{h} -> {m}" for h, m in METHOD_OF.items())
        + ". A full model loads back with --model OUT/final, an adapter with --adapter OUT/final.",
    )
    p.add_argument("sources", nargs="+", help="manifests, LeRobot dataset roots or `topreward sim` output")
    p.add_argument("--head", choices=HEADS, default="topreward", help="what to train")
    p.add_argument("--model", default=DEFAULT_MODEL, help="Hub id or local folder of the base model")
    p.add_argument("--out", required=True, help="folder for checkpoints and the final model")
    p.add_argument("--steps", type=int, default=200, help="optimizer steps")
    p.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate")
    p.add_argument("--batch-size", type=int, default=4, help="examples per step")
    p.add_argument(
        "--lora", choices=("auto", "yes", "no"), default="auto", help="auto: LoRA above 100M parameters"
    )
    p.add_argument("--lora-rank", type=int, default=16, help="LoRA rank")
    p.add_argument("--val-fraction", type=float, default=0.2, help="episodes held out for validation")
    p.add_argument("--seed", type=int, default=0, help="split, example and batch seed")
    p.add_argument("--num-points", type=int, default=8, help="evaluation points (examples) per episode")
    p.add_argument(
        "--done-at", type=float, default=0.95, help="completion head: ground truth counted as done"
    )
    p.add_argument("--eval-every", type=int, default=50, help="validation every N steps")
    p.add_argument("--checkpoint-every", type=int, default=50, help="checkpoint every N steps")
    p.add_argument(
        "--demos-succeed",
        action="store_true",
        help="episodes without labels are successful demonstrations: time-based progress (e.g. LeRobot)",
    )
    p.add_argument(
        "--augment",
        default="",
        help="control views added to training, comma list: static (first frame repeated), reversed",
    )
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    p.add_argument("--device", default=None, help="cuda, cpu (default: cuda if available)")
    p.add_argument("--dtype", default=None, help="model dtype (default float32; bf16 autocast on CUDA)")
    add_config_flags(p.add_argument_group("sampling options"), SamplingConfig, skip=("num_prefixes",))
    _add_quiet(p, "no progress bar")
    p.set_defaults(func=_cmd_train)

    p = command("list", help="list scoring methods")
    p.set_defaults(func=_cmd_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug is global and accepted anywhere (before a `--` that ends the options)
    end = argv.index("--") if "--" in argv else len(argv)
    debug = "--debug" in argv[:end]
    argv = [a for i, a in enumerate(argv) if not (a == "--debug" and i < end)]
    method = _peek_method(argv)
    try:
        parser = build_parser(method)
    except ValueError as e:  # an unknown --method: the message lists the methods
        print(f"topreward: error: {e}", file=sys.stderr)
        return 2
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        if hasattr(args, "method"):
            parser.exit(
                2,
                f"topreward {args.command}: error: {' '.join(unknown)}: not an option of method {method!r}; "
                f"its options: {' '.join(valid_flags(method))}\n",
            )
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    args.argv = argv
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError, ImportError, RuntimeError) as e:
        if debug:
            raise
        print(f"topreward {args.command}: error: {_error_text(e)}", file=sys.stderr)
        return 2


# what to do about an operating-system error, by errno (permission, disk full, ...)
_OS_FIXES = {
    "EACCES": "no permission: check its permissions or choose another location",
    "EPERM": "not permitted: check its permissions or choose another location",
    "EROFS": "the file system is read-only: choose another location",
    "ENOSPC": "the disk is full: free space or choose another location, then run again (with --resume where "
    "the command has it: finished work is kept)",
    "EDQUOT": "the disk quota is used up: free space or choose another location, then run again (with "
    "--resume where the command has it: finished work is kept)",
    "EFBIG": "the file is larger than this system allows (ulimit -f, or the file system's limit): raise the "
    "limit or choose another location, then run again (with --resume where the command has it)",
    "ENOENT": "no such file or folder: check the path",
    "EISDIR": "it is a folder: name a file",
    "ENOTDIR": "a part of the path is a file, not a folder: check the path",
}


def _error_text(e: BaseException) -> str:
    """One line for an expected failure: our messages as they are; an OS error as its file and the fix."""
    import errno

    if isinstance(e, OSError) and e.errno is not None:
        fix = _OS_FIXES.get(errno.errorcode.get(e.errno, ""))
        where = e.filename if e.filename is not None else e.filename2
        if fix:
            return f"{where}: {fix}" if where is not None else f"{e.strerror}: {fix}"
    return str(e) or type(e).__name__


if __name__ == "__main__":
    sys.exit(main())
