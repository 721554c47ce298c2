"""The command line is quick and hard to misuse: `--help` never imports torch, every default is shown, one
meaning per flag name, and every input/output/resume check runs before a model is loaded."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import pytest

from topreward.cli import build_parser, main
from topreward.sim import fixture_dir

HEAVY = ("torch", "transformers")

# One fresh interpreter: run `main(argv)` (a --help exits) and report which heavy modules got imported.
PROBE = """
import json, sys
from topreward.cli import main
for argv in json.loads(sys.argv[1]):
    try:
        main(argv)
    except SystemExit:
        pass
print(json.dumps([m for m in {heavy!r} if m in sys.modules]), file=sys.stderr)
"""


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _probe(argvs: list[list[str]]) -> tuple[float, list[str]]:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), json.dumps(argvs)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    seconds = time.perf_counter() - start
    assert done.returncode == 0, done.stderr
    assert "usage: topreward" in done.stdout
    return seconds, json.loads(done.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("command", [None, *sorted(_subparsers())])
def test_help_imports_no_torch_and_is_quick(command):
    argv = ["--help"] if command is None else [command, "--help"]
    seconds, heavy = _probe([argv])
    print(f"topreward {' '.join(argv)}: {seconds:.2f} s in a fresh interpreter")
    assert heavy == [], f"`topreward {' '.join(argv)}` imported {heavy}"
    assert seconds < 5.0  # about 0.3 s on an idle 2-core machine; the bound leaves room for a loaded one


def test_help_of_every_method_imports_no_torch():
    from topreward.scorers.registry import list_scorers

    methods = list_scorers()
    seconds, heavy = _probe([["score", "--method", m, "--help"] for m in methods])
    print(f"score --method M --help for {len(methods)} methods: {seconds:.2f} s")
    assert heavy == [] and seconds < 10.0


def test_every_default_is_shown():
    for name, parser in _subparsers().items():
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.option_strings or any(
                action.default is x for x in (None, False, argparse.SUPPRESS)
            ):
                continue
            flag = action.option_strings[-1]
            assert action.help, f"{name} {flag}: no help"
            shown = formatter._expand_help(action)  # the option's text exactly as --help prints it
            assert "default" in shown, f"{name} {flag}: default not shown in {shown!r}"
    assert "(default: result.json)" in " ".join(_subparsers()["score"].format_help().split())


def test_a_methods_own_defaults_are_the_ones_shown(capsys):
    """Robometer samples at 1 fps, not the sampling default of 2: its help must say the value that applies."""
    with pytest.raises(SystemExit):
        main(["score", "--method", "robometer", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "shown to the model (default: 1.0)" in text and "(default: 512)" in text
    with pytest.raises(SystemExit):
        main(["score", "--help"])
    assert "shown to the model (default: 2.0)" in " ".join(capsys.readouterr().out.split())


def test_one_meaning_per_flag_name():
    parsers = _subparsers()
    # --episodes: a selection of episode indices wherever it exists
    for name in ("annotate", "bench"):
        (action,) = [a for a in parsers[name]._actions if "--episodes" in a.option_strings]
        assert action.type is None and "'0:50'" in action.help and "'1,4,7'" in action.help, name
    args = build_parser().parse_args(["bench", "d", "--out", "o", "--episodes", "0:4", "--num-episodes", "2"])
    assert (args.episodes, args.num_episodes) == ("0:4", 2)
    # the frame rate sim writes is not score's sampling rate
    sim_flags = {f for a in parsers["sim"]._actions for f in a.option_strings}
    assert "--fps" not in sim_flags and "--video-fps" in sim_flags
    # a LeRobot source is read: --camera; a progress bar or chatter: --quiet
    for name in ("annotate", "bench", "tokens"):
        assert any("--camera" in a.option_strings for a in parsers[name]._actions), name
    for name in ("score", "demo", "annotate", "bench", "tokens", "sim", "serve", "calibrate"):
        assert any("--quiet" in a.option_strings for a in parsers[name]._actions), name
    for name in ("annotate", "serve"):
        assert any("--ray-address" in a.option_strings for a in parsers[name]._actions), name


def test_num_episodes_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "d", "--out", "o", "--num-episodes", "0"])
    assert "--num-episodes: expected a whole number >= 1, got '0'" in capsys.readouterr().err


@pytest.fixture
def no_model(monkeypatch):
    """Any attempt to load a model fails the test: the command must have refused before."""
    import topreward.scorers.registry as registry

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the command's checks")

    monkeypatch.setattr(registry, "load_scorer", refuse)


def test_checks_run_before_the_model_is_loaded(no_model, tmp_path, capsys):
    manifest = str(fixture_dir() / "manifest.jsonl")
    video = str(next((fixture_dir() / "videos").glob("*.mp4")))
    out = tmp_path / "p.parquet"
    out.write_bytes(b"")
    folder = tmp_path / "a_folder"
    folder.mkdir()
    cases = [
        (["score", str(tmp_path / "missing.mp4"), "x"], "not found"),
        (["score", video, "x", "--out", str(folder)], "is a folder"),
        (["annotate", manifest, "--out", str(out)], "exists"),
        (
            ["annotate", manifest, "--out", str(tmp_path / "q.parquet"), "--ray-address", "auto"],
            "--engine ray",
        ),
        (["tokens", str(tmp_path / "missing")], "not found"),
        (["bench", manifest, "--out", str(out)], "is a file"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv


def test_resume_and_bench_rerun_with_other_settings_are_refused_before_loading(no_model, tmp_path, capsys):
    manifest = str(fixture_dir() / "manifest.jsonl")
    out = tmp_path / "p.parquet"
    earlier = {"episode_id": "push-v3_s0_expert", "settings": {"method": "gvl"}, "fingerprint": "0"}
    (tmp_path / "p.parquet.work.jsonl").write_text(json.dumps(earlier) + "\n")
    assert main(["annotate", manifest, "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "computed with other settings" in err and "method: 'gvl' before, 'topreward' now" in err

    bench_out = tmp_path / "bench"
    bench_out.mkdir()
    (bench_out / "episodes.jsonl").write_text(json.dumps({**earlier, "dataset": "sim_fixture"}) + "\n")
    assert main(["bench", manifest, "--out", str(bench_out), "--num-episodes", "1"]) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "method: 'gvl' before, 'topreward' now" in err


def test_init_ray_is_quiet_and_joins_the_named_cluster(monkeypatch):
    from topreward.ray_setup import init_ray

    class FakeRay:
        def __init__(self) -> None:
            self.calls: list[dict] = []

        def is_initialized(self) -> bool:
            return bool(self.calls)

        def init(self, **kwargs) -> None:
            self.calls.append(kwargs)

    ray = FakeRay()
    init_ray("ray://head:10001", ray=ray)
    init_ray("auto", ray=ray)  # already initialised: not again
    assert len(ray.calls) == 1
    call = ray.calls[0]
    assert call["address"] == "ray://head:10001" and call["log_to_driver"] is False
    assert call["logging_level"] >= 40  # ERROR: no banner, no warnings about Ray itself
    ray = FakeRay()
    init_ray(None, ray=ray)  # no address: Ray itself reads RAY_ADDRESS, else starts a local Ray
    assert ray.calls[0]["address"] is None


def test_the_demo_says_what_it_runs():
    """The demo scores a held-out episode with the bundled demo reward model (not a tiny random one)."""
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    (demo,) = [c for c in action._choices_actions if c.dest == "demo"]
    assert "demo reward model" in demo.help and "tiny" not in demo.help
