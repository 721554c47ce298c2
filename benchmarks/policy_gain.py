"""Does it pay? Simulated data of mixed quality -> topreward annotation -> weighted behaviour cloning -> success
rate in Meta-World, against uniform BC, an oracle from the simulator's ground truth, and a shuffled control.

    .venv/bin/python benchmarks/policy_gain.py --work policy_work            # the whole run (about 30 min, 2 cores)
    .venv/bin/python benchmarks/policy_gain.py --work /tmp/pg --smoke        # the plumbing only (under a minute)

Stages, each resumable (a rerun skips what is done; `--stage` runs one):
  data      per task, `topreward sim --format lerobot` on seeds the demo reward model never saw (`SEEDS`), a mix of
            `MIX` episodes (experts, runs that freeze half-way, random actions), with the whole 39-D Meta-World
            observation (`observation.environment_state`) and the actions;
  annotate  `topreward annotate` with the bundled demo reward model, and `topreward annotate --from-column
            progress`: the simulator's ground truth in the same file format (the oracle);
  weights   from each file, by the package's CLI: `rank --top` (success filter), `weights` (advantage-weighted
            BC, Eq.5) and `weights --scheme rabc` (LeRobot's RA-BC);
  train     per task, weighting and training seed: an MLP (39 -> 256 -> 256 -> 4) trained `TRAIN_STEPS` steps on
            frames drawn in proportion to their weight (a weighted MSE in expectation), then `EVAL_ROLLOUTS`
            rollouts from fixed evaluation seeds, success if the env reports it within `EVAL_STEPS` steps;
            last, the shuffled control: the best topreward weighting's weights permuted across frames;
  report    the tables (success rate, pooled over training seeds, with a 95% Wilson interval), one
            machine-readable line per table and `policy_gain.png`.

Two tables: the demo model's own tasks (held-out seeds), and tasks it never saw, where a 1.3 M-parameter model
trained on four simulated tasks is not expected to help much. Everything is simulated and state-based: it says
whether the weights select useful frames here, not what they do for a real robot.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

TABLES = {
    "demo tasks, held-out seeds": ("drawer-open-v3", "button-press-topdown-v3"),
    "tasks the demo model never saw": ("door-open-v3", "reach-v3"),
}
SEEDS = "200:215"  # the demo model trained on seeds 0-9 and was benched on 100-103
MIX = "expert:10,freeze,random"  # 10 expert, 15 freeze, 15 random episodes per task
SIZE, MAX_STEPS, TRIM = 64, 100, 20  # as the demo model's training data (scripts/train_demo_model.py)
FILTER_TOP = 0.25  # rank --top: the best quarter of the episodes by success score
RABC_CHUNK = 10  # frames ahead for RA-BC's progress delta (LeRobot's policies use their action chunk)
TRAIN_SEEDS = (0, 1, 2)
TRAIN_STEPS, BATCH, LR, HIDDEN = 3000, 256, 1e-3, 256
EVAL_SEEDS = tuple(range(1000, 1050))  # 50 rollouts per task and training seed
EVAL_STEPS = 150
WORKERS = 2

SMOKE = {
    "tables": {"smoke": ("reach-v3",)},
    "seeds": "300:302",
    "mix": "expert:1,freeze,random",
    "max_steps": 20,
    "train_seeds": (0,),
    "train_steps": 30,
    "eval_seeds": (1000, 1001),
    "eval_steps": 20,
    "workers": 1,  # in this process: no worker start-up
}

SCORED = ("filtered", "awr", "rabc")  # topreward's weightings; "oracle_" + each from the ground truth
ARMS = ("uniform", *SCORED, *(f"oracle_{a}" for a in SCORED))


@dataclass
class Settings:
    tables: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(TABLES))
    seeds: str = SEEDS
    mix: str = MIX
    max_steps: int = MAX_STEPS
    train_seeds: tuple[int, ...] = TRAIN_SEEDS
    train_steps: int = TRAIN_STEPS
    eval_seeds: tuple[int, ...] = EVAL_SEEDS
    eval_steps: int = EVAL_STEPS
    workers: int = WORKERS


def topreward(*args: str, process: bool = False) -> str:
    """Run the package's CLI as a user would (`topreward ARGS`), in this process or, with `process`, in a
    process of its own; its output."""
    if process:
        run = subprocess.run([sys.executable, "-m", "topreward.cli", *args], capture_output=True, text=True)
        out, err, code = run.stdout, run.stderr, run.returncode
    else:
        from topreward.cli import main

        out_buf, err_buf = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out_buf), contextlib.redirect_stderr(err_buf):
            code = main(list(args))
        out, err = out_buf.getvalue(), err_buf.getvalue()
    if code:
        raise RuntimeError(f"topreward {' '.join(args)} failed:\n{out[-2000:]}{err[-3000:]}")
    return out


def demo_model() -> Path:
    from importlib import resources

    return Path(str(resources.files("topreward") / "assets" / "demo_model"))


# ----------------------------------------------------------------------------------------------------------
# data, annotate, weights


def stage_data(work: Path, s: Settings) -> None:
    tasks = [t for ts in s.tables.values() for t in ts]

    def one(task: str) -> None:
        topreward(
            "sim", "--format", "lerobot", "--out", str(work / task / "data"), "--tasks", task,
            "--seeds", s.seeds, "--kinds", s.mix, "--max-steps", str(s.max_steps), "--size", str(SIZE),
            "--trim-after-success", str(TRIM), "--quiet", process=True,
        )  # fmt: skip

    with ThreadPoolExecutor(WORKERS) as pool:  # a sim process per task (rendering is single-threaded)
        list(_bar(pool.map(one, tasks), len(tasks), "data (topreward sim)"))


def stage_annotate(work: Path, s: Settings) -> None:
    tasks = [t for ts in s.tables.values() for t in ts]
    for task in _bar(tasks, len(tasks), "annotate (demo model, ground truth)"):
        root = work / task / "data"
        ann, gt = work / task / "topreward.parquet", work / task / "oracle.parquet"
        if not ann.is_file():
            resume = ["--resume"] if Path(f"{ann}.work.jsonl").exists() else []
            topreward(
                "annotate", str(root), "--out", str(ann), "--model", str(demo_model()), "--quiet", *resume
            )
        if not gt.is_file():
            topreward("annotate", str(root), "--from-column", "progress", "--out", str(gt), "--quiet")


def stage_weights(work: Path, s: Settings) -> None:
    for task in [t for ts in s.tables.values() for t in ts]:
        for src in ("topreward", "oracle"):
            ann = work / task / f"{src}.parquet"
            episodes = len(json.loads(topreward("rank", str(ann), "--print-episodes")))  # every scored one
            keep = work / task / f"{src}_filtered.json"
            if not keep.is_file():
                top = max(1, round(FILTER_TOP * episodes))
                topreward("rank", str(ann), "--top", str(top), "--episodes-out", str(keep))
            if not (work / task / f"{src}_awr.parquet").is_file():
                topreward("weights", str(ann), "--out", str(work / task / f"{src}_awr.parquet"))
            if not (work / task / f"{src}_rabc.parquet").is_file():
                topreward(
                    "weights", str(ann), "--out", str(work / task / f"{src}_rabc.parquet"),
                    "--scheme", "rabc", "--chunk-size", str(RABC_CHUNK),
                )  # fmt: skip


def frames_of(root: Path) -> dict[str, np.ndarray]:
    """The dataset's per-frame `index`, `episode_index`, whole observation and action."""
    import pyarrow.parquet as pq

    files = sorted((root / "data").rglob("*.parquet"))
    cols = ["index", "episode_index", "observation.environment_state", "action"]
    tables = [pq.read_table(f, columns=cols).to_pydict() for f in files]
    out = {c: np.concatenate([np.asarray(t[c]) for t in tables]) for c in cols}
    order = np.argsort(out["index"])
    return {c: v[order] for c, v in out.items()}


def arm_weights(work: Path, task: str, arm: str, frames: dict[str, np.ndarray]) -> np.ndarray:
    """Per-frame weights of a weighting, read from the files the CLI wrote (NaN: no value -> 0)."""
    import pyarrow.parquet as pq

    if arm == "uniform":
        return np.ones(len(frames["index"]))
    src, kind = ("oracle", arm[len("oracle_") :]) if arm.startswith("oracle_") else ("topreward", arm)
    if kind == "filtered":
        keep = json.loads((work / task / f"{src}_filtered.json").read_text())
        return np.isin(frames["episode_index"], keep).astype(np.float64)
    table = pq.read_table(work / task / f"{src}_{kind}.parquet", columns=["index", "weight"]).to_pydict()
    by_index = dict(zip(table["index"], table["weight"]))
    w = np.array([by_index.get(int(i), np.nan) for i in frames["index"]], np.float64)
    return np.nan_to_num(w, nan=0.0)


# ----------------------------------------------------------------------------------------------------------
# train and evaluate


def train_and_eval(job: dict) -> dict:
    """One policy: train on the weighted frames, then roll it out; returns the job with `successes`."""
    import torch

    frames = {k: np.asarray(v) for k, v in job["frames"].items()}
    weights = np.asarray(job["weights"], np.float64)
    x = torch.tensor(frames["observation.environment_state"], dtype=torch.float32)
    y = torch.tensor(frames["action"], dtype=torch.float32)
    mean, std = x.mean(0), x.std(0).clamp_min(1e-3)  # the same for every weighting: all frames of the task
    torch.manual_seed(job["seed"])
    gen = torch.Generator().manual_seed(job["seed"])
    policy = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, HIDDEN), torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN, y.shape[1]),
    )  # fmt: skip
    optimizer = torch.optim.Adam(policy.parameters(), lr=LR)
    p = torch.tensor(weights / weights.sum(), dtype=torch.float64)
    draws = torch.multinomial(p, job["train_steps"] * BATCH, replacement=True, generator=gen)
    xn = (x - mean) / std
    for step in range(job["train_steps"]):
        batch = draws[step * BATCH : (step + 1) * BATCH]
        loss = torch.nn.functional.mse_loss(policy(xn[batch]), y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    policy.eval()

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            o = (torch.tensor(obs, dtype=torch.float32) - mean) / std
            return policy(o).clamp(-1, 1).numpy()

    successes = rollouts(job["task"], act, job["eval_seeds"], job["eval_steps"])
    return {k: v for k, v in job.items() if k not in ("frames", "weights")} | {
        "successes": successes,
        "final_loss": loss.item(),
    }


def rollouts(task: str, act, seeds, steps: int) -> list[bool]:
    """Success (the env's flag at any step within `steps`) from each evaluation seed's start."""
    import warnings

    from topreward.sim.env import import_sim

    sim = import_sim()
    out = []
    for seed in seeds:
        env = sim.envs[f"{task}-goal-observable"](seed=seed)
        obs, _ = env.reset(seed=seed)
        ok = False
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Constant.*may be too high", category=UserWarning)
            for _ in range(steps):
                obs, _, _, _, info = env.step(act(obs))
                if info["success"]:
                    ok = True
                    break
        env.close()
        out.append(ok)
    return out


def stage_train(work: Path, s: Settings) -> None:
    for table, tasks in s.tables.items():
        jobs = []
        for task in tasks:
            frames = frames_of(work / task / "data")
            plain = {k: v.tolist() for k, v in frames.items() if k != "index"}
            for arm in ARMS:
                weights = arm_weights(work, task, arm, frames)
                jobs += _jobs(work, s, task, arm, plain, weights)
        _run(jobs, f"train + eval: {table}", s.workers)
        # the control: the best topreward weighting's weights permuted across frames, per task
        best = max(SCORED, key=lambda a: _rate(_load(work, s, tasks, a))[0])
        shuffled = []
        for task in tasks:
            frames = frames_of(work / task / "data")
            w = arm_weights(work, task, best, frames)
            w = w[np.random.default_rng(0).permutation(len(w))]
            shuffled += _jobs(
                work, s, task, "shuffled", {k: v.tolist() for k, v in frames.items()}, w, of=best
            )
        _run(shuffled, f"shuffled control ({best}): {table}", s.workers)


def _jobs(work, s, task, arm, frames, weights, of=None) -> list[dict]:
    base = {"task": task, "arm": arm, "train_steps": s.train_steps, "eval_seeds": list(s.eval_seeds)}
    base |= {"eval_steps": s.eval_steps, "of": of}
    return [
        {
            **base,
            "seed": seed,
            "frames": frames,
            "weights": weights.tolist(),
            "out": str(_job_file(work, task, arm, seed)),
        }
        for seed in s.train_seeds
        if not _job_file(work, task, arm, seed).is_file()
    ]


def _job_file(work: Path, task: str, arm: str, seed: int) -> Path:
    return work / task / "policies" / f"{arm}_seed{seed}.json"


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)  # two worker processes on two cores


def _run(jobs: list[dict], desc: str, workers: int) -> None:
    """Train and evaluate `jobs` on `workers` processes (1: in this process), saving each result."""
    import multiprocessing

    if not jobs:
        return
    with contextlib.ExitStack() as stack:
        if workers > 1:
            context = multiprocessing.get_context("spawn")
            pool = stack.enter_context(
                ProcessPoolExecutor(workers, mp_context=context, initializer=_one_thread)
            )
            results = pool.map(train_and_eval, jobs)
        else:
            results = map(train_and_eval, jobs)
        for result in _bar(results, len(jobs), desc):
            path = Path(result["out"])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(result))


def _load(work: Path, s: Settings, tasks, arm: str) -> list[bool]:
    return [
        ok for task in tasks for seed in s.train_seeds
        for ok in json.loads(_job_file(work, task, arm, seed).read_text())["successes"]
    ]  # fmt: skip


# ----------------------------------------------------------------------------------------------------------
# report


def _rate(successes: list[bool]) -> tuple[float, float, float]:
    """Success rate and its 95% Wilson interval."""
    n, k, z = len(successes), sum(successes), 1.96
    if n == 0:
        return math.nan, math.nan, math.nan
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return p, max(0.0, centre - half), min(1.0, centre + half)


def stage_report(work: Path, s: Settings) -> dict:
    summary = {}
    lines = []
    for table, tasks in s.tables.items():
        shuffled_of = json.loads(_job_file(work, tasks[0], "shuffled", s.train_seeds[0]).read_text())["of"]
        rows = {arm: {t: _rate(_load(work, s, [t], arm)) for t in tasks} for arm in (*ARMS, "shuffled")}
        overall = {arm: _rate(_load(work, s, tasks, arm)) for arm in rows}
        n = len(s.train_seeds) * len(s.eval_seeds)
        lines += [
            f"### {table}: success rate over {len(s.train_seeds)} training seeds x {len(s.eval_seeds)} rollouts "
            f"= {n} per task [95% Wilson interval]",
            "",
            "| weighting | " + " | ".join(tasks) + " | all |",
            "|---" * (len(tasks) + 2) + "|",
        ]
        for arm in rows:
            name = f"shuffled ({shuffled_of})" if arm == "shuffled" else arm
            cells = [_cell(rows[arm][t]) for t in tasks] + [_cell(overall[arm])]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        best = max(SCORED, key=lambda a: overall[a][0])
        oracle = max((f"oracle_{a}" for a in SCORED), key=lambda a: overall[a][0])
        values = {
            "uniform": overall["uniform"][0],
            "filtered": overall["filtered"][0],
            "awr": overall["awr"][0],
            "rabc": overall["rabc"][0],
            "oracle": overall[oracle][0],
            "shuffled": overall["shuffled"][0],
            "best_gain_vs_uniform": overall[best][0] - overall["uniform"][0],
            "gap_to_oracle": overall[oracle][0] - overall[best][0],
        }
        machine = " ".join(f"{k}={v:.3f}" for k, v in values.items())
        apart = overall[best][1] > overall["uniform"][2]
        lines += [
            "",
            f"best topreward weighting: {best}; oracle: {oracle}; best vs uniform intervals "
            f"{'do not overlap' if apart else 'overlap'}",
            f"policy_gain[{table}]: {machine}",
            "",
        ]
        summary[table] = {
            "values": values,
            "best": best,
            "oracle": oracle,
            "intervals_apart": apart,
            "rates": {arm: {t: rows[arm][t] for t in tasks} | {"all": overall[arm]} for arm in rows},
        }
    text = "\n".join(lines)
    print(text)
    (work / "report.md").write_text(text + "\n")
    (work / "results.json").write_text(
        json.dumps({"settings": vars(s) | {"tables": s.tables}, "tables": summary}, indent=1)
    )
    _plot(summary, work / "policy_gain.png")
    print(f"wrote {work / 'report.md'}, {work / 'results.json'}, {work / 'policy_gain.png'}")
    return summary


def _cell(rate: tuple[float, float, float]) -> str:
    p, lo, hi = rate
    return f"{100 * p:.0f}% [{100 * lo:.0f}, {100 * hi:.0f}]"


def _plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(summary), figsize=(6 * len(summary), 3.6), squeeze=False)
    for ax, (table, info) in zip(axes[0], summary.items()):
        arms = list(info["rates"])
        p = np.array([info["rates"][a]["all"][0] for a in arms])
        lo = np.array([info["rates"][a]["all"][1] for a in arms])
        hi = np.array([info["rates"][a]["all"][2] for a in arms])
        colours = [
            "#888" if a in ("uniform", "shuffled") else "#2ca02c" if a.startswith("oracle") else "#1f77b4"
            for a in arms
        ]
        ax.bar(range(len(arms)), p, yerr=[p - lo, hi - p], color=colours, capsize=3)
        ax.set_xticks(range(len(arms)), arms, rotation=35, ha="right", fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_ylabel("success rate")
        ax.set_title(table, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _bar(iterable, total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, disable=os.environ.get("TOPREWARD_QUIET") == "1")


STAGES = {
    "data": stage_data,
    "annotate": stage_annotate,
    "weights": stage_weights,
    "train": stage_train,
    "report": stage_report,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", required=True, help="work folder (resumable)")
    parser.add_argument("--stage", choices=(*STAGES, "all"), default="all")
    parser.add_argument(
        "--smoke", action="store_true", help="one task, tiny counts: checks the plumbing only"
    )
    args = parser.parse_args(argv)
    settings = Settings(**SMOKE) if args.smoke else Settings()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    stamp = work / "settings.json"
    described = json.dumps(vars(settings) | {"tables": settings.tables}, sort_keys=True)
    if stamp.is_file() and stamp.read_text() != described:
        raise SystemExit(f"{work} was made with other settings ({stamp}); use another --work or delete it")
    stamp.write_text(described)
    for name, stage in STAGES.items():
        if args.stage in (name, "all"):
            stage(work, settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
