"""Print how far topreward's peer conventions are from the peers' own recorded values (tests/golden/).

    .venv/bin/python scripts/golden/compare.py [--model DIR]

Builds the tiny Qwen3-VL test model (seed 0) unless `--model` names one, scores the bundled clip with
each preset and prompt mode the golden files hold, and prints the largest |difference| of the values,
the progress and (authors) log P(" False"). `tests/test_conventions.py` asserts the same at 1e-4.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np

from topreward.backends.hf import HFBackend
from topreward.episode import Episode
from topreward.scorers.registry import load_scorer
from topreward.tiny import make_tiny_model

GOLDEN = Path(__file__).resolve().parents[2] / "tests" / "golden"


def cases():
    for file, conventions in [("authors_paper.json", "paper"), ("authors_head.json", "authors")]:
        for case in json.loads((GOLDEN / file).read_text())["episodes"]:
            style = "chat" if case["add_chat_template"] else "authors"
            yield (
                conventions,
                style,
                15,
                case["instruction"],
                {
                    "values": case["log_probs"],
                    "progress": case["progress"],
                    "log_p_false": case.get("prefix_false_rewards"),
                },
            )
    lerobot = json.loads((GOLDEN / "lerobot.json").read_text())["instructions"]
    for instruction, modes in lerobot.items():
        for mode, k in [("rabc_num_samples_15", 15), ("rabc_dense", None)]:
            gold = modes[mode]
            yield (
                "lerobot",
                "authors",
                k,
                instruction,
                {"values": gold["values"], "frame_progress": gold["progress_per_frame"]},
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="tiny model folder (default: build one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(make_tiny_model(Path(tmp) / "qwen3_vl", "qwen3_vl"))
        backend = HFBackend(model, device="cpu", dtype="float32")
        with resources.as_file(resources.files("topreward") / "assets" / "sample_pick_place.mp4") as clip:
            episode = Episode.from_video(clip)
        print(f"{'conventions':<12}{'style':<9}{'K':>4}  {'instruction':<26}largest |difference|")
        for conventions, style, k, instruction, gold in cases():
            scorer = load_scorer(
                "topreward", backend=backend, conventions=conventions, prompt_style=style, num_prefixes=k
            )
            res = scorer.score(episode, instruction)
            ours = {"values": res.values, "progress": res.progress, "frame_progress": res.frame_progress}
            ours["log_p_false"] = res.signals.get("log_p_false")
            diffs = [
                f"{name} {np.abs(np.asarray(ours[name]) - np.asarray(want)).max():.1e}"
                for name, want in gold.items()
                if want is not None
            ]
            print(f"{conventions:<12}{style:<9}{k or 'all':>4}  {instruction:<26}{', '.join(diffs)}")


if __name__ == "__main__":
    main()
