"""`bench`, `tokens` and `calibrate`: how good a method is, which answer word, what a score is worth.

Each command is its parser piece (`add_*`) beside its handler (`run_*`).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from topreward.cli.checks import (
    calibration_arg,
    check_out_file,
    refuse_input_as_output,
)
from topreward.cli.flags import (
    EPISODES_HELP,
    AddCommand,
    add_calibration,
    add_camera,
    add_config_flags,
    add_method_flags,
    add_quiet,
    given,
    hush_libraries,
    method_options,
    positive_int,
)


def add_bench(command: AddCommand, method: str) -> None:
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
    add_camera(p)
    p.add_argument("--episodes", default=None, help=EPISODES_HELP + "; the draw is made from these")
    p.add_argument(
        "--num-episodes",
        type=positive_int,
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
    p.add_argument(
        "--view",
        action="store_true",
        help="also write <out>/view.html: each episode's video beside its curve",
    )
    add_quiet(p, "no progress bars")
    add_calibration(p)
    add_method_flags(p, method)
    p.set_defaults(func=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    import functools

    from topreward.bench import BenchConfig, BenchDataset, run_bench
    from topreward.bench.presets import preset
    from topreward.bench.report import text_table
    from topreward.bench.runner import check_out, dataset_names
    from topreward.datasets import open_source
    from topreward.scorers.registry import ScorerSpec, load_scorer

    if args.quiet:
        hush_libraries()
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
    calibration = calibration_arg(args)
    options = method_options(args)
    wanted = args.preset and preset(args.preset).get("conventions")
    if wanted and "conventions" in options and not given(args, "--conventions"):
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
    if args.view:
        from topreward.view import from_bench, write_view

        print(
            f"wrote {write_view(*from_bench([args.out]), Path(args.out) / 'view.html', title=str(args.out))}"
        )
    return 0


def add_view(command: AddCommand, method: str) -> None:
    p = command("view", help="one HTML page: each episode's video beside its progress curves (opens offline)")
    p.add_argument(
        "inputs",
        nargs="+",
        help="`score` results (result.json), `bench` output folders, or `annotate` parquets; several compare "
        "their methods or models",
    )
    p.add_argument("--out", default="view.html", help="the page to write (default: view.html)")
    p.add_argument(
        "--dataset",
        default=None,
        help="parquets: the LeRobot dataset they annotate (default: the parquet's folder for "
        "<root>/sarm_progress.parquet, else the source its metadata names)",
    )
    p.add_argument("--label", action="append", default=None, help="a name per input for the legend (repeat)")
    p.add_argument(
        "--rerun",
        default=None,
        help="also write a Rerun recording (lerobot-dataset-viz conventions): one .rrd, or a folder of one per "
        "episode (pip install 'topreward[rerun]')",
    )
    p.add_argument(
        "--mp4",
        default=None,
        help="also write the frames with the progress curve drawn under them (slides, papers): a file.mp4 for "
        "one episode, or a folder of episode_<id>.mp4",
    )
    p.add_argument(
        "--reencode",
        action="store_true",
        help="write H.264 copies of videos browsers cannot play into <out>_videos/ and show those",
    )
    p.set_defaults(func=run_view)


def run_view(args: argparse.Namespace) -> int:
    from topreward.view import from_annotations, from_bench, from_results, write_view

    kinds = {
        "bench" if Path(i).is_dir() else "annotate" if i.endswith(".parquet") else "score"
        for i in args.inputs
    }
    if len(kinds) > 1:
        raise ValueError("give one kind of input: `score` results, `bench` folders or `annotate` parquets")
    if args.label is not None and len(args.label) != len(args.inputs):
        raise ValueError(
            f"--label given {len(args.label)} times for {len(args.inputs)} inputs; give one per input"
        )
    missing = [i for i in args.inputs if not Path(i).exists()]
    if missing:
        raise ValueError(f"not found: {', '.join(missing)}")
    check_out_file(args.out, "--out")
    for flag, path in (("--out", args.out), ("--rerun", args.rerun), ("--mp4", args.mp4)):
        refuse_input_as_output(flag, path, (*args.inputs, args.dataset))
    (kind,) = kinds
    if args.dataset is not None and kind != "annotate":
        raise ValueError("--dataset applies to annotation parquets only; drop it")
    if kind == "annotate":
        episodes, methods = from_annotations(args.inputs, args.dataset, args.label)
    else:
        episodes, methods = (from_bench if kind == "bench" else from_results)(args.inputs, args.label)
    if args.mp4:
        from topreward.view.overlay import check_overlay

        check_overlay(episodes, args.mp4)
    if args.reencode:
        from topreward.view.page import reencode

        folder = Path(args.out).with_name(Path(args.out).stem + "_videos")
        for video in reencode(episodes, folder):
            print(f"re-encoded {video} as H.264 into {folder}")
    print(f"wrote {write_view(episodes, methods, args.out, title=', '.join(args.inputs))}")
    if args.rerun:
        from topreward.view.rerun import write_rerun

        written = write_rerun(episodes, methods, args.rerun)
        print(f"wrote {written[0] if len(written) == 1 else f'{len(written)} recordings into {args.rerun}'}")
    if args.mp4:
        from topreward.view.overlay import write_overlay

        written = write_overlay(episodes, methods, args.mp4)
        print(
            f"wrote {', '.join(map(str, written)) if len(written) < 4 else f'{len(written)} videos into {args.mp4}'}"
        )
    return 0


def add_tokens(command: AddCommand, method: str) -> None:
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
    add_camera(p)
    p.add_argument("--max-episodes", type=int, default=None, help="score at most this many episodes")
    p.add_argument("--out", default=None, help="write the table as JSON here")
    add_quiet(p, "no progress bar")
    add_method_flags(p, method)
    p.set_defaults(func=run_tokens)


def run_tokens(args: argparse.Namespace) -> int:
    import json

    from topreward.bench.tokens import answer_token_study
    from topreward.datasets import open_source
    from topreward.scorers.registry import load_scorer

    if args.method != "topreward":
        raise ValueError("the answer-token study reads TOPReward's prompt; use --method topreward")
    if args.quiet:
        hush_libraries()
    source = open_source(args.source, camera=args.camera)  # before the model: a bad source fails fast
    if args.out:
        check_out_file(args.out, "--out")
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


def add_calibrate(command: AddCommand, method: str) -> None:
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
    add_quiet(p, "no notes; print the summary and the paths written")
    from topreward.calibration import CalibrationConfig

    add_config_flags(p.add_argument_group("calibration options"), CalibrationConfig)
    p.set_defaults(func=run_calibrate)


def run_calibrate(args: argparse.Namespace) -> int:
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
