"""Every `topreward` subcommand end to end (in process, through `main(argv)`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from topreward.cli import build_parser, main


def subcommands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)


@pytest.mark.parametrize("command", subcommands())
def test_help_of_every_subcommand(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    assert "usage: topreward " + command in capsys.readouterr().out


def test_score_writes_json_and_plot(tiny_model_dirs, sample_video, tmp_path, capsys):
    out, png = tmp_path / "r.json", tmp_path / "c.png"
    code = main(
        [
            "score",
            str(sample_video),
            "open the drawer",
            "--model",
            str(tiny_model_dirs["qwen2_5_vl"]),
            "--out",
            str(out),
            "--plot",
            str(png),
            "--num-prefixes",
            "all",
            "--size",
            "56x84",
            "--path",
            "reference",
        ]
    )
    assert code == 0
    data = json.loads(out.read_text())
    assert data["config"]["num_prefixes"] is None and data["config"]["size"] == [56, 84]
    assert data["config"]["path"] == "reference" and data["model"]["family"] == "qwen2_5_vl"
    assert len(data["log_p_true"]) == 8
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert "success score" in capsys.readouterr().out


def test_score_bad_input_exits_2_with_message(tiny_model_dirs, tmp_path, capsys):
    code = main(["score", str(tmp_path / "missing.mp4"), "open", "--model", str(tiny_model_dirs["qwen3_vl"])])
    assert code == 2
    assert "missing.mp4" in capsys.readouterr().err


def test_bad_size_flag(capsys):
    with pytest.raises(SystemExit):
        main(["score", "v.mp4", "x", "--size", "big"])
    assert "256x320" in capsys.readouterr().err


def test_make_tiny_model_and_list(tmp_path, capsys):
    assert main(["make-tiny-model", str(tmp_path / "m"), "--arch", "qwen2_5_vl"]) == 0
    assert json.loads((tmp_path / "m" / "config.json").read_text())["model_type"] == "qwen2_5_vl"
    assert main(["list"]) == 0
    assert "topreward" in capsys.readouterr().out


def test_demo_scores_a_held_out_episode_with_the_shipped_model(tmp_path, capsys):
    from importlib import resources

    from topreward import metrics

    assets = Path(str(resources.files("topreward") / "assets"))
    meta = json.loads((assets / "demo_heldout.json").read_text())
    assert main(["demo", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["instruction"] == meta["instruction"] and meta["success"]
    assert result["model"]["id"].endswith("demo_model")
    assert result["config"]["size"] == [64, 64]  # the model's recommended options, no flags
    # the trained model's curve rises on an episode it never saw
    assert metrics.voc(result["progress"], result["prefix_end_frames"]) >= 0.9
    assert (tmp_path / "curve.png").exists()
    out = capsys.readouterr().out
    assert str(tmp_path / "curve.png") in out and "knows only this simulator" in out
    shipped = sum(f.stat().st_size for f in (assets / "demo_model").iterdir())
    assert shipped <= 20 * 2**20


def test_demo_without_the_shipped_model_falls_back_to_a_tiny_one(tmp_path, monkeypatch, capsys):
    import topreward.cli.score as cli

    monkeypatch.setattr(cli, "DEMO_MODEL", "no_such_model")
    assert main(["demo", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert (
        result["instruction"] == "put the red block into the blue cup" and len(result["frame_progress"]) == 60
    )
    assert "not a trained model's judgement" in capsys.readouterr().out
