"""`annotate`, `weights`, `rank` and `sim`: whole datasets, their training weights and rankings, simulated data.

Each command is its parser piece (`add_*`) beside its handler (`run_*`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from topreward.cli.checks import (
    calibration_arg,
    check_calibration,
    check_out_file,
    open_source_args,
    ray_only,
    refuse_input_as_output,
)
from topreward.cli.flags import (
    EPISODES_HELP,
    AddCommand,
    add_calibration,
    add_camera,
    add_method_flags,
    add_quiet,
    add_ray_address,
    hush_libraries,
    method_options,
)


def add_annotate(command: AddCommand, method: str) -> None:
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
    add_camera(p)
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
    add_ray_address(p)
    p.add_argument(
        "--view",
        default=None,
        help="LeRobot datasets: also write this HTML page, each episode's video beside its curve",
    )
    p.add_argument(
        "--from-column",
        default=None,
        metavar="COLUMN",
        help="no model: the file from the dataset's own per-frame progress column, e.g. the simulator's "
        "ground truth `progress` (an oracle for `weights` and `rank`)",
    )
    add_quiet(p, "no progress bar")
    add_calibration(p)
    add_method_flags(p, method)
    p.set_defaults(func=run_annotate)


def run_annotate(args: argparse.Namespace) -> int:
    import functools

    from topreward.annotate import annotate, check_output
    from topreward.datasets import open_source
    from topreward.provenance import describe_source
    from topreward.scorers.registry import ScorerSpec, load_scorer

    ray_only(args)
    if args.quiet:
        hush_libraries()
    if args.into_dataset:  # asked for by name: LeRobot's default location inside the source dataset
        from topreward.annotate.progress_file import lerobot_progress_path

        args.out = str(lerobot_progress_path(args.source))
    if args.from_column:
        return run_from_column(args)
    calibration = calibration_arg(args)
    spec = ScorerSpec(args.method, method_options(args))
    if not args.resume:  # an output in the way: refused before a dataset is opened (or downloaded)
        check_output(args.out, spec, {}, overwrite=args.overwrite)
    source_kwargs = open_source_args(args)
    source = open_source(args.source, **source_kwargs)
    source_info = describe_source(source, args.source, episodes=args.episodes)
    check_view(args, source)
    # a resume made with other settings: refused before the model is loaded
    check_output(args.out, spec, source_info, resume=args.resume, overwrite=args.overwrite)
    if args.engine == "ray":
        scorer = spec  # each worker loads its own; value names: checked on the results
    else:
        scorer = load_scorer(args.method, **method_options(args))
        check_calibration(calibration, scorer)
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
    return next_steps(args, source, summary.out)


def check_view(args: argparse.Namespace, source) -> None:
    """`--view`: a LeRobot source, and a page path that can be written and is no input."""
    if not args.view:
        return
    if not hasattr(source, "video_of"):
        raise ValueError(
            "annotate --view shows a LeRobot dataset's episodes beside their videos; for videos or a manifest "
            "use `bench --view` or `score --view`"
        )
    check_out_file(args.view, "--view")
    refuse_input_as_output("--view", args.view, (args.source, args.out))


def next_steps(args: argparse.Namespace, source, out) -> int:
    """After an annotation file is written: LeRobot's training command for it, and the `--view` page."""
    if str(out).endswith(".parquet") and hasattr(source, "video_of") and not args.quiet:
        from topreward.annotate.progress_file import lerobot_version, rabc_advice

        root = args.source if Path(args.source).expanduser().is_dir() else None
        print(rabc_advice(out, root, lerobot_version()))
    if args.view:
        from topreward.view import from_annotations, write_view

        print(f"wrote {write_view(*from_annotations([out], args.source), args.view, title=str(args.source))}")
    return 0


def run_from_column(args: argparse.Namespace) -> int:
    """`annotate --from-column`: the annotation file of a dataset column; no model is loaded."""
    from topreward.annotate.from_column import annotate_from_column
    from topreward.datasets import open_source
    from topreward.provenance import describe_source

    given = [f for f, on in (("--engine ray", args.engine == "ray"), ("--resume", args.resume)) if on]
    given += ["--calibration"] if getattr(args, "calibration", None) else []
    if given:
        raise ValueError(f"--from-column loads no model: drop {', '.join(given)}")
    check_out_file(args.out, "--out")
    source = open_source(args.source, **open_source_args(args))
    check_view(args, source)
    info = describe_source(source, args.source, episodes=args.episodes)
    summary = annotate_from_column(
        source, args.from_column, args.out, source_info=info, overwrite=args.overwrite
    )
    print(
        f"wrote {summary.out}: {summary.scored} episodes from the column {args.from_column!r}, {summary.skipped} skipped"
    )
    return next_steps(args, source, summary.out)


def add_weights(command: AddCommand, method: str) -> None:
    p = command(
        "weights",
        help="per-frame training weights from an annotation parquet: advantage-weighted BC (Eq.5) or LeRobot's "
        "RA-BC",
    )
    p.add_argument("annotations", help="parquet written by `topreward annotate`")
    p.add_argument("--out", required=True, help="output parquet")
    p.add_argument(
        "--scheme",
        choices=("awr", "rabc"),
        default="awr",
        help="awr: min(exp(advantage / beta), max weight) of the dense rewards (TOPReward Eq.5); rabc: the "
        "weights LeRobot's RA-BC gives each frame, from progress deltas over --chunk-size (default: awr)",
    )
    p.add_argument(
        "--beta",
        default="auto",
        help="awr: temperature beta, or auto = std of the advantages (default: auto)",
    )
    p.add_argument("--max-weight", type=float, default=2.0, help="awr: cap of the weights (default: 2)")
    p.add_argument(
        "--chunk-size", type=int, default=50, help="rabc: frames ahead of the progress delta (default: 50)"
    )
    p.add_argument(
        "--kappa", type=float, default=0.01, help="rabc: delta above which a frame weighs 1 (default: 0.01)"
    )
    p.add_argument(
        "--head-mode",
        choices=("sparse", "dense"),
        default="sparse",
        help="rabc: the progress column (default: sparse)",
    )
    p.set_defaults(func=run_weights)


def run_weights(args: argparse.Namespace) -> int:
    from topreward.annotate.weights import write_weights

    # `--beta` as typed: write_weights parses it and names it when it is neither 'auto' nor a number > 0
    out = write_weights(
        args.annotations,
        args.out,
        beta=args.beta,
        max_weight=args.max_weight,
        scheme=args.scheme,
        chunk_size=args.chunk_size,
        kappa=args.kappa,
        head_mode=args.head_mode,
    )
    print(f"wrote {out}")
    return 0


def add_rank(command: AddCommand, method: str) -> None:
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
    p.set_defaults(func=run_rank)


def run_rank(args: argparse.Namespace) -> int:
    import json

    from topreward.annotate.weights import rank
    from topreward.atomic import write_text

    ranking = rank(args.annotations, top=args.top, min_score=args.min_score)
    episodes_json = json.dumps(
        ranking.kept, separators=(",", ":")
    )  # one shell word: --dataset.episodes=[0,3,7]
    kind = ranking.source.get("type")
    if kind not in (None, "LeRobotSource") and (args.episodes_out or args.print_episodes):
        print(
            f"note: {args.annotations} was scored from a {kind}: its episode indices are positions "
            "in that source, not LeRobot episode indices",
            file=sys.stderr,
        )
    if args.print_episodes:
        print(episodes_json)
    else:
        print(" rank  episode  success score  frames")
        for r in ranking.rows:
            score = r["status"] if r["success_score"] is None else f"{r['success_score']:.3f}"
            place = "-" if r["rank"] is None else str(r["rank"])
            mark = "*" if r["kept"] else " "
            print(f"{mark}{place:>4}  {r['episode_index']:7d}  {score:>13}  {r['num_frames']:6d}")
    if args.episodes_out:
        write_text(args.episodes_out, episodes_json + "\n")
        if not args.print_episodes:
            print(f"wrote {len(ranking.kept)} episode indices (marked *) to {args.episodes_out}")
    if args.out:
        write_text(args.out, json.dumps(ranking.record(), indent=1, allow_nan=False) + "\n")
        if not args.print_episodes:
            print(f"wrote the ranking with its provenance to {args.out}")
    return 0


def add_sim(command: AddCommand, method: str) -> None:
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
    p.add_argument(
        "--seeds",
        default="3",
        help="env seeds per task: N for 0..N-1, or a slice start:stop, e.g. 200:215 (stop excluded) (default: 3)",
    )
    p.add_argument(
        "--kinds",
        default="expert,noisy,freeze,random",
        help="episode kinds, comma list; kind:N gives that kind the first N seeds only, e.g. "
        "expert:10,freeze,random (default: all four)",
    )
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
    add_quiet(p, "no progress bar")
    p.set_defaults(func=run_sim)


def seed_range(text: str) -> range:
    """`--seeds`: N (seeds 0..N-1) or start:stop."""
    try:
        parts = [int(p) for p in text.split(":")]
    except ValueError:
        parts = []
    if len(parts) == 1 and parts[0] >= 1:
        return range(parts[0])
    if len(parts) == 2 and 0 <= parts[0] < parts[1]:
        return range(*parts)
    raise ValueError(
        f"--seeds {text}: give a count N >= 1 (seeds 0..N-1) or a slice start:stop, e.g. 200:215"
    )


def kind_counts(text: str) -> tuple[tuple[str, ...], dict[str, int]]:
    """`--kinds`: a comma list of kinds, each optionally kind:N."""
    kinds, counts = [], {}
    for item in text.split(","):
        kind, _, n = item.partition(":")
        kinds.append(kind)
        if n:
            if not n.isdigit() or int(n) < 1:
                raise ValueError(f"--kinds {text}: {item} needs a whole number >= 1 after the colon")
            counts[kind] = int(n)
    return tuple(kinds), counts


def run_sim(args: argparse.Namespace) -> int:
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
    tasks, seeds = args.tasks.split(","), seed_range(args.seeds)
    kinds, counts = kind_counts(args.kinds)
    if args.format == "lerobot":
        from topreward.sim.lerobot_format import generate_lerobot

        root = generate_lerobot(args.out, tasks, seeds, kinds, counts, **options)
        print(f"wrote LeRobot dataset {root} (load: LeRobotDataset('local/sim', root={str(root)!r}))")
        return 0
    manifest = generate(args.out, tasks, seeds, kinds=kinds, counts=counts, **options)
    print(f"wrote {manifest}")
    return 0
