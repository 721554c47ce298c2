"""GVL and SCORE: parsing, unshuffling, retries, caching and recorded failures.

Scripted backends return well-formed (or malformed) answers to check the methods' logic exactly; the tiny
real model runs both end to end, where its random text exercises the failure path.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import topreward
from topreward.backends.base import GENERATION, MULTI_IMAGE, ModelVideo
from topreward.scorers.answers import AnswerError, parse_json, parse_percentages
from topreward.scorers.registry import load_scorer


# ---- reading answers ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, expected",
    [
        ("[10, 50, 100]", [10, 50, 100]),
        ('```json\n{"Frame 1": 10, "Frame 2": "50%", "Frame 3": 100}\n```', [10, 50, 100]),
        (
            '{"frames": [{"frame": 2, "percentage": 50}, {"frame": 1, "percentage": 10}, {"frame": 3, "percentage": 100}]}',
            [10, 50, 100],
        ),
        (
            "Frame 2: Task Completion Percentages: 50%\nFrame 1: Task Completion Percentages:10%\nFrame 3: 100%",
            [10, 50, 100],
        ),
        ("I think 10% then 50% and finally 100%.", [10, 50, 100]),
        ("Frame 1: 12.5%, Frame 2: 40.25%, Frame 3: 99.5%", [12.5, 40.25, 99.5]),  # as written, not rescaled
    ],
)
def test_percentages_json_first_then_fallbacks(text, expected):
    assert parse_percentages(text, 3) == expected


@pytest.mark.parametrize(
    "text, reason",
    [
        ("[10, 50]", "2 values for 3 frames"),
        ("Frame 1: 10%\nFrame 2: 20%", r"no value for frame\(s\) \[3\]"),
        ("[10, 50, 140]", "outside 0..100"),
        ("no numbers at all", "0 percentages found, 3 frames asked"),
    ],
)
def test_unreadable_percentages_say_why(text, reason):
    with pytest.raises(AnswerError, match=reason):
        parse_percentages(text, 3)


def test_parse_json_skips_broken_blocks():
    assert parse_json('first {broken: json} then {"a": [1, {"b": "}"}]} end') == {"a": [1, {"b": "}"}]}
    with pytest.raises(AnswerError, match="no JSON"):
        parse_json("nothing here")


# ---- scripted backends ----------------------------------------------------------------------------------
def _frames(n: int) -> np.ndarray:
    """Frame i is a flat image of grey level 10 * i: the scripted model reads the index back from it."""
    return np.stack([np.full((32, 32, 3), 10 * i, np.uint8) for i in range(n)])


class Scripted:
    """A backend whose `chat` answers from a function of the parts (no model)."""

    name = "scripted"
    capabilities = frozenset({GENERATION, MULTI_IMAGE})
    model_id = "scripted"
    patch_factor = 32

    def __init__(self, answer):
        self.answer, self.calls = answer, []

    def chat(self, parts, generation=None):
        self.calls.append((parts, generation))
        return self.answer(parts, len(self.calls))

    def describe(self):
        return {"id": self.model_id, "revision": None, "backend": self.name}


def _gvl_truth(parts, _call):
    """Correct OpenGVL-style lines for the shown frames: completion = frame index / 9 (a 10-frame clip)."""
    shown = [p for p in parts if isinstance(p, np.ndarray)][1:]  # the first image is the 0 % anchor
    return "\n".join(
        f"Frame {i}: Task Completion Percentages:{round(f[0, 0, 0] / 10 / 9 * 100, 2)}%"
        for i, f in enumerate(shown, 1)
    )


def test_gvl_unshuffles_the_answer_into_time_order():
    backend = Scripted(_gvl_truth)
    scorer = load_scorer("gvl", backend=backend, num_prefixes=None, max_frames=10, fps=10.0, size=(32, 32))
    res = scorer.score(_frames(10), "stack the blocks", fps=10.0)
    np.testing.assert_allclose(res.values, np.arange(10) / 9, atol=1e-4)
    np.testing.assert_allclose(res.progress, res.values)
    order = res.signals["shuffle_order"]
    assert sorted(order) == list(range(10)) and order != list(range(10))  # shuffled, a permutation
    parts = backend.calls[0][0]
    assert parts[0].startswith("You are an expert roboticist") and "stack the blocks" in parts[0]
    assert parts[1] == "Initial robot scene:" and parts[3].endswith("the task completion percentage is 0%.")
    assert res.signals["failure"] is None
    again = load_scorer(
        "gvl", backend=Scripted(_gvl_truth), num_prefixes=None, max_frames=10, fps=10.0, size=(32, 32)
    )
    assert again.score(_frames(10), "stack the blocks", fps=10.0).signals["shuffle_order"] == order  # seeded


def test_gvl_wrong_count_is_a_recorded_failure(tmp_path):
    scorer = load_scorer(
        "gvl",
        backend=Scripted(lambda p, c: "Frame 1: 10%"),
        num_prefixes=None,
        max_frames=4,
        fps=10.0,
        size=(32, 32),
    )
    res = scorer.score(_frames(4), "stack the blocks", fps=10.0)
    assert np.isnan(res.values).all() and "no value for frame" in res.signals["failure"]

    def no_constants(name):
        raise AssertionError(f"{name} in a result file: not strict JSON")

    saved = json.loads(res.save(tmp_path / "r.json").read_text(), parse_constant=no_constants)
    assert saved["failure"] and saved["answer"] == "Frame 1: 10%" and saved["values"] == [None] * 4


def _score_answers(parts, _call):
    text = next(p for p in parts if isinstance(p, str))
    if "List the task-relevant objects" in text:
        return 'Sure: {"objects": ["red block", "gripper"]}'
    if "Describe the state" in text:
        level = next(p for p in parts if isinstance(p, np.ndarray))[0, 0, 0] // 10
        return json.dumps({"description": f"the red block is {level} cm above the table"})
    heights = [int(h) for h in re.findall(r"Frame \d+: the red block is (\d+) cm", text)]
    return json.dumps({"completion_state": "the block is lifted", "progress": [h / 9 for h in heights]})


def test_score_stages_in_order_and_progress_from_the_last(tmp_path):
    backend = Scripted(_score_answers)
    opts = dict(num_prefixes=None, max_frames=10, fps=10.0, size=(32, 32), cache_dir=str(tmp_path))
    res = load_scorer("score", backend=backend, **opts).score(_frames(10), "lift the red block", fps=10.0)
    np.testing.assert_allclose(res.values, np.arange(10) / 9)
    assert res.signals["objects"] == ["red block", "gripper"] and res.signals["failure"] is None
    assert res.signals["completion_state"] == "the block is lifted" and len(res.signals["descriptions"]) == 10
    assert isinstance(backend.calls[0][0][0], ModelVideo)  # stage 1 sees the video
    assert len(backend.calls) == 12  # 1 + K + 1 generations
    cached = Scripted(_score_answers)  # a re-run: every stage answer comes from the cache
    again = load_scorer("score", backend=cached, **opts).score(_frames(10), "lift the red block", fps=10.0)
    np.testing.assert_allclose(again.values, res.values)
    assert cached.calls == []


def test_score_retries_a_malformed_answer_then_records_the_failure():
    flaky = Scripted(lambda parts, call: "not json" if call == 1 else _score_answers(parts, call))
    opts = dict(num_prefixes=None, max_frames=3, fps=10.0, size=(32, 32), cache_dir="off", answer_retries=1)
    res = load_scorer("score", backend=flaky, **opts).score(_frames(3), "lift the red block", fps=10.0)
    assert res.signals["failure"] is None and res.signals["attempts"]["objects"] == 2
    assert flaky.calls[1][1].temperature > 0 and flaky.calls[0][1].temperature == 0  # greedy, then sampled
    broken = Scripted(lambda parts, call: '{"objects": []}')
    res = load_scorer("score", backend=broken, **opts).score(_frames(3), "lift the red block", fps=10.0)
    assert np.isnan(res.values).all() and res.signals["failure"].startswith("objects: expected")
    assert len(broken.calls) == 2  # 1 + retries, then the episode is a recorded failure


def test_generative_methods_need_generation():
    class LogProbsOnly(Scripted):
        capabilities = frozenset({"log_probs"})

    with pytest.raises(ValueError, match="'generation'"):
        load_scorer("score", backend=LogProbsOnly(None))


# ---- the tiny real model: random text exercises the failure path ------------------------------------------
@pytest.mark.parametrize(
    "method, extra",
    [("gvl", []), ("score", ["--max-new-tokens", "16", "--answer-retries", "0", "--cache-dir", "off"])],
)
def test_tiny_model_end_to_end_records_failures(
    tiny_model_dirs, sample_video, tmp_path, capsys, method, extra
):
    from topreward.cli import main

    out = tmp_path / "r.json"
    args = [
        "score",
        str(sample_video),
        "open the drawer",
        "--method",
        method,
        "--model",
        str(tiny_model_dirs["qwen3_vl"]),
    ]
    assert main([*args, "--num-prefixes", "3", "--size", "32x32", "--out", str(out), *extra]) == 0
    data = json.loads(out.read_text())  # strict JSON: NaN written as null
    assert (
        data["method"] == method
        and data["failure"]
        and data["values"] == [None] * len(data["prefix_lengths"])
    )
    assert "FAILED" in capsys.readouterr().out


def test_bench_counts_a_failed_gvl_episode_as_voc_zero(tiny_model_dirs, tmp_path):
    from topreward.cli import main
    from topreward.worklog import read_jsonl

    src = str(Path(topreward.__file__).parent / "assets" / "sim_fixture")
    args = [
        "bench",
        src,
        "--method",
        "gvl",
        "--model",
        str(tiny_model_dirs["qwen3_vl"]),
        "--out",
        str(tmp_path / "b"),
    ]
    assert (
        main(
            [
                *args,
                "--num-episodes",
                "2",
                "--num-prefixes",
                "3",
                "--size",
                "32x32",
                "--controls",
                "none",
                "--quiet",
            ]
        )
        == 0
    )
    records = read_jsonl(tmp_path / "b" / "episodes.jsonl")
    assert len(records) == 2 and all(r["failure"] and r["voc"] == 0.0 for r in records)


def test_annotate_records_failed_episodes(tiny_model_dirs, tmp_path):
    from topreward.annotate import read_annotations
    from topreward.cli import main

    src = str(Path(topreward.__file__).parent / "assets" / "sim_fixture")
    out = tmp_path / "p.parquet"
    args = [
        "annotate",
        src,
        "--method",
        "gvl",
        "--model",
        str(tiny_model_dirs["qwen3_vl"]),
        "--out",
        str(out),
    ]
    assert main([*args, "--num-prefixes", "3", "--size", "32x32", "--quiet"]) == 0
    table, meta = read_annotations(out)
    assert len(meta["failed_episodes"]) == 16  # random text: every episode a recorded failure
    assert np.isnan(table.column("progress_sparse").to_numpy()).all()  # LeRobot reads NaN as "no value"
