"""Train the demo reward model shipped in `topreward/assets/demo_model` (the default of `topreward demo`).

    .venv/bin/python scripts/train_demo_model.py --work demo_work [--stage data|train|bench|ship|all]

A small Qwen3-VL-architecture model, trained from random weights with `topreward train --head topreward`
on simulated Meta-World episodes (`topreward sim`) so that P(" True") after a video prefix tracks that
prefix's ground-truth progress. It knows only this simulator: real robots need a pretrained VLM.

Stages (each resumes; `all` runs them in order):
  data   episodes into <work>/train, <work>/heldout (same tasks, seeds never trained on) and
         <work>/unseen (tasks never trained on), `SIZE` px, `MAX_STEPS` steps at 30 fps, trimmed
         `TRIM` steps after the expert's first success, every kind (expert, noisy, freeze, random).
  train  `TRAIN_STEPS` steps of full fine-tuning (the model is small) into <work>/run; the sampling
         options it trains with are saved beside the model as its recommended scoring options.
  bench  `topreward bench` on heldout and unseen with the static-frame and reversed-video controls.
  ship   the model and one held-out successful episode into src/topreward/assets (the demo's clip).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

TRAIN_TASKS = ("push-v3", "pick-place-v3", "drawer-open-v3", "button-press-topdown-v3")
TRAIN_SEEDS = tuple(range(10))
HELDOUT_SEEDS = (100, 101, 102, 103)
UNSEEN_TASKS = ("door-open-v3", "reach-v3")
UNSEEN_SEEDS = (0, 1, 2, 3)
SIZE = 64
MAX_STEPS = 100
TRIM = 20
TRAIN_STEPS = 2000
SAMPLING = {"fps": 4.0, "max_frames": 16, "size": [SIZE, SIZE]}
SCORING = {**SAMPLING, "num_prefixes": 8}
SEED = 0

ASSETS = Path(__file__).resolve().parents[1] / "src" / "topreward" / "assets"


def build_initial_model(path: Path) -> Path:
    """The architecture: Qwen3-VL, 4 text layers of width 128, a 4-layer vision tower of width 64."""
    import torch
    from transformers import Qwen3VLForConditionalGeneration

    from topreward import tiny

    if (path / "config.json").exists():
        return path
    tokenizer = tiny.build_tokenizer()
    torch.manual_seed(SEED)
    config = tiny.qwen3_vl_config(
        tokenizer, hidden=128, layers=4, head_dim=32, vision_hidden=64, vision_depth=4, init=0.02
    )
    Qwen3VLForConditionalGeneration(config).save_pretrained(path)
    tiny.build_processor("qwen3_vl", tokenizer).save_pretrained(path)
    return path


def stage_data(work: Path) -> None:
    from topreward.sim import generate

    sets = {
        "train": (TRAIN_TASKS, TRAIN_SEEDS),
        "heldout": (TRAIN_TASKS, HELDOUT_SEEDS),
        "unseen": (UNSEEN_TASKS, UNSEEN_SEEDS),
    }
    for name, (tasks, seeds) in sets.items():
        print(f"data: {name}: {len(tasks)} tasks x {len(seeds)} seeds x 4 kinds")
        generate(work / name, tasks, seeds, max_steps=MAX_STEPS, size=SIZE, trim_after_success=TRIM)


def stage_train(work: Path, steps: int) -> Path:
    from topreward.train import TrainConfig, train

    model = build_initial_model(work / "init")
    config = TrainConfig(
        "topreward",
        [str(work / "train" / "manifest.jsonl")],
        str(model),
        str(work / "run"),
        steps=steps,
        lr=3e-4,
        batch_size=8,
        lora="no",
        num_points=8,
        eval_every=200,
        checkpoint_every=200,
        val_fraction=0.1,
        seed=SEED,
        resume=(work / "run").exists(),
        sampling=SAMPLING,
        augment=("static", "reversed"),  # or the model learns "a longer prefix is more progress"
    )
    train(config)
    final = work / "run" / "final"
    (final / "topreward_scoring.json").write_text(json.dumps(SCORING, indent=1) + "\n")
    return final


def stage_bench(work: Path, model: Path) -> None:
    from topreward.cli import main

    for name in ("heldout", "unseen"):
        out = work / f"bench_{name}"
        args = ["bench", str(work / name / "manifest.jsonl"), "--model", str(model), "--out", str(out)]
        main([*args, "--controls", "static,reversed", "--num-episodes", "100", "--quiet"])
        print(targets(out / "episodes.jsonl", name))


def targets(episodes: Path, name: str) -> str:
    """The targets (docs/training.md) from a bench log: VOC on successes, success AUC, the two controls."""
    import numpy as np

    from topreward import metrics
    from topreward.worklog import read_jsonl

    recs = [r for r in read_jsonl(episodes) if "skipped" not in r]
    ok = [r["voc"] for r in recs if r["success"] and r["voc"] is not None]
    labelled = [r for r in recs if r["success"] is not None]
    auc = metrics.roc_auc([r["success_score"] for r in labelled], [bool(r["success"]) for r in labelled])

    def mean(key: str) -> str:
        v = [r[key] for r in recs if r.get(key) is not None]
        return f"{np.mean(v):.3f} ± {np.std(v):.3f}"

    return (
        f"{name}: {len(recs)} episodes ({len(ok)} successful); VOC on successes {np.mean(ok):.3f} ± "
        f"{np.std(ok):.3f}; success ROC-AUC {auc:.3f}; static-frame VOC {mean('static_voc')}; "
        f"reversed VOC {mean('reversed_voc')}"
    )


def stage_ship(work: Path, model: Path) -> None:
    target = ASSETS / "demo_model"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for item in model.iterdir():  # the model, its processor and scoring options; not the trainer's state
        if item.is_file() and item.name not in ("trainer_state.json", "optimizer.pt"):
            shutil.copy2(item, target / item.name)
    rows = [
        json.loads(line)
        for line in (work / "heldout" / "manifest.jsonl").read_text().splitlines()
        if line.strip()
    ]
    pick = next(r for r in rows if r["kind"] == "expert" and r["success"] and r["task"] == "drawer-open-v3")
    shutil.copy2(work / "heldout" / pick["video"], ASSETS / "demo_heldout.mp4")
    (ASSETS / "demo_heldout.json").write_text(
        json.dumps(
            {k: pick[k] for k in ("instruction", "task", "seed", "kind", "success", "fps", "progress")}
        )
        + "\n"
    )
    print(f"shipped {target} and {ASSETS / 'demo_heldout.mp4'} ({pick['episode_id']})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="demo_work", help="working folder (data, runs, bench)")
    parser.add_argument("--stage", default="all", choices=("data", "train", "bench", "ship", "all"))
    parser.add_argument("--steps", type=int, default=TRAIN_STEPS)
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.stage in ("data", "all"):
        stage_data(work)
    model = work / "run" / "final"
    if args.stage in ("train", "all"):
        model = stage_train(work, args.steps)
    if args.stage in ("bench", "all"):
        stage_bench(work, model)
    if args.stage in ("ship", "all"):
        stage_ship(work, model)


if __name__ == "__main__":
    main()
