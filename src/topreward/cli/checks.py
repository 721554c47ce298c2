"""Checks a command runs before it loads a model: outputs that can be written and never replace an input,
options that belong together, and the small inputs (ground truth, calibration) read up front."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np


def check_out_file(path: str, flag: str) -> None:
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


def refuse_input_as_output(flag: str, out: str | None, inputs: tuple[str | None, ...]) -> None:
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


def ray_only(args: argparse.Namespace) -> None:
    if args.ray_address and args.engine != "ray":
        raise ValueError("--ray-address applies to --engine ray only; add --engine ray or drop it")


def ground_truth_arg(text: str, episode) -> np.ndarray:
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


def calibration_arg(args: argparse.Namespace):
    """The `--calibration FILE` of score/annotate/bench, loaded and checked against `--method` before any
    model is loaded (the value name is checked once the scorer is)."""
    if not getattr(args, "calibration", None):
        return None
    from topreward.calibration import Calibration

    calibration = Calibration.load(args.calibration)
    calibration.check_scores(args.method, where=f"the scores of method {args.method!r}")
    return calibration


def check_calibration(calibration, scorer) -> None:
    if calibration is not None:
        calibration.check_scores(
            scorer.name,
            scorer.value_name,
            success_window=scorer.options().get("success_window"),
            where=f"the scores of method {scorer.name!r}",
        )


def open_source_args(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "camera": args.camera,
        "episodes": args.episodes,
        "manifest": args.manifest,
        "instruction": args.instruction,
    }
