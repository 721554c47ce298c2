"""The released reward models, our way against the per-prefix way others run them, timed side by side.

Tiny random-weight instances in each release's layout (`topreward make-tiny-model`), the bundled clip at
`--frames` frames, CPU float32 by default:
    python benchmarks/models.py                 # 16 frames
    python benchmarks/models.py --frames 32 --device cuda
Per model it prints the language-model forwards and the model's seconds (frame decoding and preparation,
the same on both paths, left out; after one warm-up run, the median of `--repeats` runs) for one episode on
each path, their ratio, and
`max_abs_diff` between the paths' values (they compute the same numbers). The paths:
  * robometer: one forward for every frame (ours) vs one forward per prefix (how a per-prefix wrapper
    calls it);
  * roboreward: readout `expected` on the shared video cache vs the same readout one forward per prefix,
    and readout `generate` (the authors': one greedy generation per prefix) for scale;
  * lrm-released-progress: readout `expected`, the prompt's pass shared by the 11 candidates vs one forward
    per candidate, and `generate` for scale;
  * sole: one sampled generation per step (no other way to run it; printed for scale).
Generation is capped at `--tokens` new tokens (the protocols allow 128-512), so `generate` rows are a floor.
The last line is machine-readable.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from topreward import load_scorer
from topreward.episode import as_episode
from topreward.tiny import make_tiny_model

CLIP = Path(__file__).resolve().parents[1] / "src/topreward/assets/sample_pick_place.mp4"
TASK = "put the pen into the cup"


class Forwards:
    """Counts language-model forwards (a packed pass on a cache, a plain forward, a generation step each
    count one): hooks the language model inside the backbone."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.calls = 0
        module.register_forward_pre_hook(self._count)

    def _count(self, *args) -> None:
        self.calls += 1


def timed(scorer, episode, counter: Forwards, repeats: int) -> tuple[np.ndarray, float, int]:
    """One untimed warm-up run, then the median model seconds of `repeats` runs; the forwards of one run."""
    scorer.score(episode)
    seconds = []
    for _ in range(repeats):
        before = counter.calls
        result = scorer.score(episode)
        forwards = counter.calls - before
        seconds.append(result.timings["model_s"])
    return np.asarray(result.values, float), float(np.median(seconds)), forwards


def row(name: str, ours: tuple, theirs: tuple, what: tuple[str, str]) -> dict:
    values, seconds, forwards = ours
    other_values, other_seconds, other_forwards = theirs
    diff = float(np.max(np.abs(values - other_values))) if other_values is not None else float("nan")
    print(
        f"{name:<24} {what[0]}: {forwards:4d} forwards {seconds:7.3f} s | {what[1]}: {other_forwards:4d} forwards "
        f"{other_seconds:7.3f} s | ratio {other_seconds / seconds:5.1f}x  max_abs_diff={diff:.2e}"
    )
    return {"model": name, "ratio": other_seconds / seconds, "max_abs_diff": diff}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=16, help="frames of the clip each model sees")
    parser.add_argument("--tokens", type=int, default=16, help="new tokens per generation (generate rows)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per path (after a warm-up run)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    torch.manual_seed(0)
    episode = as_episode(str(CLIP), TASK)
    fps = args.frames * episode.fps / episode.num_frames  # the clip at --frames frames
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        common = {"device": args.device, "max_frames": args.frames}

        robometer = load_scorer(
            model=str(make_tiny_model(root / "robometer", "robometer")), fps=fps, **common
        )
        count = Forwards(robometer.backend.backbone.language_model)
        reference = load_scorer(
            model=robometer.backend_config.model,
            path="reference",
            backend=robometer.backend,
            fps=fps,
            max_frames=args.frames,
        )
        rows.append(
            row(
                "robometer",
                timed(robometer, episode, count, args.repeats),
                timed(reference, episode, count, args.repeats),
                ("one forward", "per prefix"),
            )
        )

        folder = make_tiny_model(root / "RoboReward-4B", "qwen3_vl")
        rr = load_scorer(model=str(folder), readout="expected", **common)
        count = Forwards(rr.backend.model.model.language_model)
        per_prefix = load_scorer(
            model=str(folder),
            readout="expected",
            path="reference",
            backend=rr.backend,
            max_frames=args.frames,
        )
        generate = load_scorer(
            model=str(folder),
            readout="generate",
            max_new_tokens=args.tokens,
            backend=rr.backend,
            max_frames=args.frames,
        )
        fast = timed(rr, episode, count, args.repeats)
        rows.append(
            row(
                "roboreward expected",
                fast,
                timed(per_prefix, episode, count, args.repeats),
                ("shared cache", "per prefix"),
            )
        )
        gen = timed(generate, episode, count, args.repeats)
        rows.append(row("roboreward generate", fast, (None, gen[1], gen[2]), ("expected, cache", "generate")))

        lrm = make_tiny_model(root / "lrm", "lrm")
        progress = load_scorer(model=str(lrm / "progress"), readout="expected", fps=fps, **common)
        count = Forwards(progress.backend.model.model.language_model)
        reference = load_scorer(
            model=str(lrm / "progress"),
            readout="expected",
            path="reference",
            backend=progress.backend,
            fps=fps,
            max_frames=args.frames,
        )
        generate = load_scorer(
            model=str(lrm / "progress"),
            max_new_tokens=args.tokens,
            backend=progress.backend,
            fps=fps,
            max_frames=args.frames,
        )
        fast = timed(progress, episode, count, args.repeats)
        rows.append(
            row(
                "lrm-released-progress",
                fast,
                timed(reference, episode, count, args.repeats),
                ("shared prompt", "per candidate"),
            )
        )
        gen = timed(generate, episode, count, args.repeats)
        rows.append(row("lrm-released-progress gen", fast, (None, gen[1], gen[2]), ("expected", "generate")))

        sole = load_scorer(
            model=str(make_tiny_model(root / "SOLE-R1-8B", "qwen3_vl")), max_new_tokens=args.tokens, **common
        )
        count = Forwards(sole.backend.model.model.language_model)
        values, seconds, forwards = timed(sole, episode, count, args.repeats)
        print(
            f"{'sole':<24} per step: {forwards:4d} forwards {seconds:7.3f} s (one generation per frame after the first)"
        )
    print(
        "models "
        + " ".join(f"{r['model'].replace(' ', '_')}_ratio={r['ratio']:.2f}" for r in rows)
        + " "
        + " ".join(
            f"{r['model'].replace(' ', '_')}_max_abs_diff={r['max_abs_diff']:.2e}"
            for r in rows
            if r["max_abs_diff"] == r["max_abs_diff"]
        )
    )


if __name__ == "__main__":
    main()
