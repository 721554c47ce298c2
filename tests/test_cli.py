"""Every `topreward` subcommand end to end (in process, through `main(argv)`)."""

from __future__ import annotations

import json

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


def test_demo(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["instruction"] == "put the red block into the blue cup"
    assert len(result["frame_progress"]) == 60
    assert (tmp_path / "curve.png").exists()
    assert str(tmp_path / "curve.png") in capsys.readouterr().out
