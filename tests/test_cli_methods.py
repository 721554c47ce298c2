"""Every method-aware command (score, annotate, weights, rank, bench, tokens) with two methods; method flags."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from topreward.cli import main
from topreward.sim import fixture_dir

from .helpers_lerobot import write_lerobot_v3

METHODS = ["topreward", "ensemble"]


def small(model_dir) -> list[str]:
    return ["--model", str(model_dir), "--max-frames", "4", "--num-prefixes", "3"]


@pytest.mark.parametrize("method", METHODS)
def test_score_with_method(method, tiny_model_dirs, sample_video, tmp_path, capsys):
    out = tmp_path / "r.json"
    args = ["score", str(sample_video), "open the drawer", "--method", method, "--out", str(out)]
    assert main([*args, *small(tiny_model_dirs["qwen3_vl"]), "--plot", str(tmp_path / "c.png")]) == 0
    data = json.loads(out.read_text())
    assert data["method"] == method and len(data["progress"]) == 3 and "values" in data
    printed = capsys.readouterr().out
    assert f"method: {method}" in printed and "log P(True)" in printed


@pytest.mark.parametrize("method", METHODS)
def test_annotate_weights_rank_with_method(method, tiny_model_dirs, tmp_path, capsys):
    root = write_lerobot_v3(tmp_path / "ds", lengths=(6, 7))
    ann = tmp_path / "p.parquet"
    cmd = ["annotate", str(root), "--out", str(ann), "--method", method, "--quiet"]
    assert main([*cmd, *small(tiny_model_dirs["qwen3_vl"])]) == 0
    table = pq.read_table(ann)
    assert {"progress_sparse", "value", "dense_reward", "success_score", "log_p_true"} <= set(
        table.column_names
    )
    ends = table["prefix_end"].to_numpy()
    assert np.isfinite(table["value"].to_numpy()[ends]).all()
    meta = json.loads(pq.read_schema(ann).metadata[b"topreward"])
    assert meta["method"] == method and meta["config"]["num_prefixes"] == 3
    assert main(["weights", str(ann), "--out", str(tmp_path / "w.parquet")]) == 0
    assert np.isfinite(pq.read_table(tmp_path / "w.parquet")["weight"].to_numpy()).all()
    assert main(["rank", str(ann), "--top", "1", "--episodes-out", str(tmp_path / "keep.json")]) == 0
    assert len(json.loads((tmp_path / "keep.json").read_text())) == 1


def test_bench_with_second_method(tiny_model_dirs, tmp_path, capsys):
    manifest = fixture_dir() / "manifest.jsonl"
    cmd = ["bench", str(manifest), "--out", str(tmp_path), "--num-episodes", "4", "--method", "instruction"]
    assert (
        main([*cmd, *small(tiny_model_dirs["qwen2_5_vl"]), "--controls", "static,mismatch", "--quiet"]) == 0
    )
    records = [json.loads(x) for x in (tmp_path / "episodes.jsonl").read_text().splitlines()]
    assert len(records) == 4 and all(r["debiased_voc"] is not None or r["voc"] is None for r in records)
    assert (tmp_path / "mismatch.jsonl").exists()
    assert "# Bench report: instruction" in (tmp_path / "report.md").read_text()


def test_tokens_command(tiny_model_dirs, tmp_path, capsys):
    manifest = fixture_dir() / "manifest.jsonl"
    out = tmp_path / "tokens.json"
    cmd = ["tokens", str(manifest), "--max-episodes", "4", "--out", str(out), "--quiet"]
    assert main([*cmd, *small(tiny_model_dirs["qwen3_vl"])]) == 0
    data = json.loads(out.read_text())
    assert any(row["token"] == " True" for row in data["rows"])
    assert "AUC" in capsys.readouterr().out


def test_method_help_lists_its_own_flags(capsys):
    with pytest.raises(SystemExit) as e:
        main(["score", "--method", "ensemble", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "--prompts" in text and "--combine" in text and "--signal" not in text and "--model" in text


def test_list_prints_descriptions_and_capabilities(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "lrm-progress" in out and "needs: log_probs, multi_image" in out and "ensemble" in out


def test_unknown_method_and_foreign_option(capsys):
    assert main(["score", "v.mp4", "x", "--method", "gvl9"]) == 2
    assert "available: ensemble" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["score", "v.mp4", "x", "--method", "topreward", "--combine", "progress"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "not an option of method 'topreward'" in err and "--signal" in err


def test_every_method_builds_every_command_without_flag_clashes():
    from topreward.cli import build_parser
    from topreward.scorers.registry import list_scorers

    for method in list_scorers():  # method options become flags beside each command's own (--seed, ...)
        build_parser(method)
