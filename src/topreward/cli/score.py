"""`score`, `demo`, `make-tiny-model` and `list`: one video, the offline demo, a test model, the methods.

Each command is its parser piece (`add_*`) beside its handler (`run_*`).
"""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path

import numpy as np

from topreward.cli.checks import (
    calibration_arg,
    check_calibration,
    check_out_file,
    ground_truth_arg,
    refuse_input_as_output,
)
from topreward.cli.flags import (
    AddCommand,
    add_calibration,
    add_method_flags,
    add_quiet,
    hush_libraries,
    method_options,
)

SAMPLE_VIDEO = "sample_pick_place.mp4"
SAMPLE_INSTRUCTION = "put the red block into the blue cup"
#: the demo reward model (scripts/train_demo_model.py) and its held-out episode
DEMO_MODEL = "demo_model"
DEMO_CLIP = "demo_heldout.mp4"
DEMO_CLIP_META = "demo_heldout.json"


def add_score(command: AddCommand, method: str) -> None:
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
    p.add_argument("--view", default=None, help="also write this HTML page: the video beside its curve")
    p.add_argument(
        "--against",
        default=None,
        help="a second video of the same task: with a preference head (robometer), also the probability that "
        "VIDEO makes more progress than this one (signal 'preference')",
    )
    add_calibration(p)
    add_quiet(p, "print only the paths written (no table, no model-loading bars)")
    add_method_flags(p, method)
    p.set_defaults(func=run_score)


# ---- subcommands ----------------------------------------------------------------------------------
def run_score(args: argparse.Namespace) -> int:
    from topreward.episode import as_episode
    from topreward.scorers.registry import load_scorer
    from topreward.task_text import check_instruction

    if args.quiet:
        hush_libraries()
    # inputs and outputs first: nothing is loaded for a run that cannot finish
    episode = as_episode(args.video, args.instruction, args.source_fps)
    truth = ground_truth_arg(args.ground_truth, episode) if args.ground_truth else None
    calibration = calibration_arg(args)
    check_out_file(args.out, "--out")
    for flag, path in (("--plot", args.plot), ("--view", args.view)):
        if path:
            check_out_file(path, flag)
    inputs = (args.video, args.ground_truth, args.calibration, args.against)
    for flag, path in (("--out", args.out), ("--plot", args.plot), ("--view", args.view)):
        refuse_input_as_output(flag, path, inputs)
    check_instruction(episode)  # the model's own control tokens are checked again once it is loaded
    other = as_episode(args.against, args.instruction, args.source_fps) if args.against else None
    from topreward.scorers.registry import scorer_class

    if other is not None and not hasattr(scorer_class(args.method), "prefer"):
        raise ValueError(f"--against needs a method with a preference head (robometer), not {args.method}")
    scorer = load_scorer(args.method, **method_options(args))
    check_calibration(calibration, scorer)
    result = scorer.score(episode)
    if other is not None:
        result.signals["preference"] = scorer.prefer(episode, other, result.instruction)
        result.signals["preferred_over"] = str(args.against)
    if calibration is not None:
        result = calibration.apply(result)
    out = result.save(args.out)
    print(f"wrote {out}")
    if args.plot:
        from topreward.plot import plot_result

        print(f"wrote {plot_result(result, args.plot, episode, ground_truth=truth)}")
    if args.view:
        from topreward.view import from_results, write_view

        print(f"wrote {write_view(*from_results([out]), args.view, title=str(args.video))}")
    if not args.quiet:
        print_summary(result)
        if other is not None:
            print(
                f"P({args.video} makes more progress than {args.against}) = {result.signals['preference']:.3f}"
            )
    return 0


def print_summary(result) -> None:
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
    tail = result.value_name != "progress"  # a method whose values are its progress gets one column
    print(" prefix  end frame  " + "  ".join(f"{n:>12}" for n in names) + ("  progress" if tail else ""))
    for i in range(k):
        cells = "  ".join(f"{c[i]:12.3f}" for c in columns)
        end = f"  {result.progress[i]:8.3f}" if tail else ""
        print(f" {result.prefix_lengths[i]:6d}  {result.prefix_end_frames[i]:9d}  {cells}{end}")
    print(f"model time {result.timings['model_s']:.2f}s, total {result.timings['total_s']:.2f}s")


def add_make_tiny_model(command: AddCommand, method: str) -> None:
    from topreward.tiny import ALL_ARCHS

    p = command("make-tiny-model", help="write a tiny random-weight model + processor (offline tests)")
    p.add_argument("path", help="folder to write the model into")
    p.add_argument("--arch", choices=ALL_ARCHS, default="qwen3_vl", help="architecture of the tiny model")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    p.set_defaults(func=run_make_tiny_model)


def run_make_tiny_model(args: argparse.Namespace) -> int:
    from topreward.tiny import make_tiny_model

    print(f"wrote tiny {args.arch} model to {make_tiny_model(args.path, args.arch, seed=args.seed)}")
    return 0


def add_demo(command: AddCommand, method: str) -> None:
    p = command(
        "demo",
        help="offline demo: the bundled demo reward model scores a held-out simulated clip (no download)",
    )
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    add_quiet(p, "print only the paths written")
    p.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    import json

    from topreward.episode import Episode
    from topreward.plot import plot_result
    from topreward.scorers.registry import load_scorer

    if args.quiet:
        hush_libraries()
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
        print_summary(result)
    print(f"result: {json_path}\nplot:   {png_path}")
    return 0


def add_list(command: AddCommand, method: str) -> None:
    p = command("list", help="list scoring methods and the released reward models they run")
    p.set_defaults(func=run_list)


def run_list(args: argparse.Namespace) -> int:
    from topreward.scorers.pretrained import KNOWN_MODELS
    from topreward.scorers.registry import list_scorers, scorer_class

    print("methods:")
    width = max(len(n) for n in list_scorers())
    for name in list_scorers():
        cls = scorer_class(name)
        needs = ", ".join(sorted(cls.requires))
        print(f"  {name:<{width}}  {cls.description}  [needs: {needs}]")
    print("released models (--model NAME picks the method; a local download works the same):")
    width = max(len(m.model) for m in KNOWN_MODELS)
    for entry in KNOWN_MODELS:
        print(f"  {entry.model:<{width}}  method {entry.method}: {entry.summary}")
    print("options of a method: topreward score --method NAME --help")
    return 0
