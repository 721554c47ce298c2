"""`benchmarks/policy_gain.py --smoke`: the whole pipeline (sim -> annotate with the demo model and from ground
truth -> rank/weights by the CLI -> train and roll out every weighting -> report) on one task with tiny counts.
It checks the plumbing, not the result: the numbers of the real run are in the README."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "policy_gain.py"


def test_the_policy_gain_pipeline_runs_end_to_end(tmp_path, capsys, monkeypatch):
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("LP_NUM_THREADS", "1")
    missing = [m for m in ("mujoco", "metaworld") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed: pip install 'topreward[sim]'")
    from topreward.sim import rendering_problem

    if problem := rendering_problem():
        pytest.skip(f"Meta-World episodes cannot be generated here: {problem}")
    monkeypatch.setenv("TOPREWARD_QUIET", "1")
    monkeypatch.syspath_prepend(str(BENCHMARK.parent))  # its training workers import it by name
    bench = importlib.import_module("policy_gain")

    work = tmp_path / "work"
    assert bench.main(["--work", str(work), "--smoke"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("policy_gain[smoke]: "))
    values = dict(kv.split("=") for kv in line.split(": ", 1)[1].split())
    want = ["uniform", "filtered", "awr", "rabc", "oracle", "shuffled", "best_gain_vs_uniform", "gap_to_oracle"]
    assert list(values) == want and all(-1 <= float(v) <= 1 for v in values.values())
    task = work / "reach-v3"
    kept = json.loads((task / "topreward_filtered.json").read_text())
    assert len(kept) == 1  # rank --top: a quarter of the 5 episodes (1 expert, 2 freeze, 2 random)
    for name in ("topreward.parquet", "oracle.parquet", "topreward_awr.parquet", "oracle_rabc.parquet"):
        assert (task / name).is_file(), name
    results = json.loads((work / "results.json").read_text())["tables"]["smoke"]
    arms = set(results["rates"])
    assert arms == {*bench.ARMS, "shuffled"} and (work / "policy_gain.png").stat().st_size > 0
    mtime = (task / "policies" / "uniform_seed0.json").stat().st_mtime_ns
    assert bench.main(["--work", str(work), "--smoke", "--stage", "train"]) == 0  # resumed: nothing retrained
    assert (task / "policies" / "uniform_seed0.json").stat().st_mtime_ns == mtime
