"""Per-query cost of a streaming session at episode length 8 vs 64 frames, and vs re-scoring the prefix.

Random weights of the Qwen3-VL config of `benchmarks/prefix_sharing.py` (2B width, 2 text + 2 vision
layers by default, CPU), frames of 256x256, TOPReward:
    python benchmarks/streaming.py
Prints
  step_ratio_64_vs_8  cost of one streaming step (push one new frame pair + score the newest prefix) when
                      the session holds 64 frames / when it holds 8;
  rescore_ratio       cost of scoring the 64-frame prefix from scratch (a new cache over all frames, one
                      request) / one streaming step at 64;
  max_abs_diff        largest |value| difference between the streamed values and offline scoring of the
                      same frames at every queried prefix.
Target (online-RL issue): the 64-frame step costs <= 1.5x the 8-frame one.
Then one round of 8 sessions each pushing two frames and querying (`push_many` + `score_many`, what a server
round or a vector env's step runs), its model forwards counted (vision-encoder calls + language-model
forwards), batched and one by one:
  forwards_per_round_8=  (batched)   unbatched_forwards_per_round_8=
Then the reward server (`topreward serve`, on loopback): steps per second (push two frames + score) with 1,
8 and 32 concurrent clients, with batched pushes (`push_many`) and with each push in a forward of its own
(`batch_pushes=False`), side by side in this run, the share of queries that shared a forward, the time split
of the model work at 8 clients, and the process's peak resident memory:
  server_steps_per_s_1=  server_steps_per_s_8=  server_steps_per_s_32=  (batched)
  unbatched_steps_per_s_1=  unbatched_steps_per_s_8=  unbatched_steps_per_s_32=
  batched_vs_unbatched_8=  batched_share_8=  peak_rss_mb=
The lines with `=` are machine-readable. Figures from a CPU are CPU figures: with 2 cores a packed forward
costs about its tokens, so batching saves the per-call overhead only; on a GPU (`benchmarks/gpu.sh`) one
forward of 8 sessions' tokens costs little more than one of one session's.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

import numpy as np

import topreward
from prefix_sharing import add_model_args, build
from topreward.backends.base import ModelVideo
from topreward.backends.hf import HFBackend

INSTRUCTION = "put the pen into the cup"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_args(ap)
    ap.add_argument("--size", type=int, default=256, help="square frame side in pixels (multiple of 32)")
    ap.add_argument("--short", type=int, default=8, help="episode length of the first measurement")
    ap.add_argument("--long", type=int, default=64, help="episode length of the second measurement")
    ap.add_argument("--steps", type=int, default=3, help="timed steps at each length (median kept)")
    ap.add_argument("--server-steps", type=int, default=6, help="steps per client in the server measurement")
    ap.add_argument(
        "--clients", default="1,8,32", help="concurrent clients of the server measurements, comma list"
    )
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        build(args.preset, args.text_layers or None, args.vision_layers or None, tmp)
        backend = HFBackend(tmp, device=args.device, dtype=args.dtype)
    scorer = topreward.load_scorer("topreward", backend=backend, size=(args.size, args.size))
    total = args.long + 2 * args.steps
    frames = np.random.default_rng(0).integers(0, 255, (total, args.size, args.size, 3), dtype=np.uint8)
    session = scorer.stream(INSTRUCTION, source_fps=2.0, max_frames=total)

    def step_times(upto: int) -> list[float]:
        """Fill the session to `upto` frames, then time steps of 2 new frames (one temporal group) + a query."""
        session.push(frames[session.pushed : upto])
        session.score()
        times = []
        for _ in range(args.steps):
            t = time.perf_counter()
            session.push(frames[session.pushed : session.pushed + 2])
            session.score()
            times.append(time.perf_counter() - t)
        return times

    short = float(np.median(step_times(args.short)))
    long = float(np.median(step_times(args.long)))
    held = session.video

    n = args.long + 2  # the prefix the first step at the long length scored

    def rescore() -> float:
        t = time.perf_counter()
        scorer.compute(ModelVideo(held.frames[:n], held.source_indices[:n], 2.0), INSTRUCTION, [n])
        return time.perf_counter() - t

    full = float(np.median([rescore() for _ in range(args.steps)]))
    # every streamed value against offline scoring of the same frames at the same prefix length
    position = {int(end): n for n, end in enumerate(held.source_indices, start=1)}
    queried = [position[end] for end, _ in session.history]
    offline = scorer.compute(ModelVideo(held.frames, held.source_indices, 2.0), INSTRUCTION, queried).values
    diff = float(np.abs(np.array([v for _, v in session.history]) - offline).max())
    cfg = backend.model.config
    print(
        f"model: Qwen3-VL {args.preset} width, {cfg.text_config.num_hidden_layers} text / {cfg.vision_config.depth} "
        f"vision layers, {args.dtype} on {args.device}; frames {args.size}x{args.size}"
    )
    print(
        f"streaming step at {args.short} frames: {short:.3f} s   at {args.long} frames: {long:.3f} s   "
        f"re-scoring {n} frames: {full:.3f} s   ({len(queried)} streamed values checked)"
    )
    print(f"step_ratio_64_vs_8={long / short:.2f} rescore_ratio={full / long:.2f} max_abs_diff={diff:.2e}")
    forwards = {b: round_forwards(scorer, frames, 8, batched=b) for b in (True, False)}
    print(
        f"forwards_per_round_8={sum(forwards[True].values())} unbatched_forwards_per_round_8="
        f"{sum(forwards[False].values())}   (batched: {forwards[True]}, one by one: {forwards[False]})"
    )
    counts = [int(c) for c in args.clients.split(",")]
    rates, shares, splits = {}, {}, {}
    for clients in counts:
        for batched in (True, False):
            rates[clients, batched], shares[clients, batched], splits[clients, batched] = server_throughput(
                scorer, frames, clients, args.server_steps, batched
            )
    print("  ".join(f"server_steps_per_s_{c}={rates[c, True]:.2f}" for c in counts))
    print("  ".join(f"unbatched_steps_per_s_{c}={rates[c, False]:.2f}" for c in counts))
    mid = 8 if 8 in counts else counts[-1]
    for batched in (True, False):
        split = splits[mid, batched]
        print(
            f"time split at {mid} clients ({'batched' if batched else 'one by one'}): "
            + ", ".join(f"{k} {v:.2f} s" for k, v in split.items())
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes
    print(
        f"batched_vs_unbatched_{mid}={rates[mid, True] / rates[mid, False]:.2f} "
        f"batched_share_{mid}={shares[mid, True]:.2f} peak_rss_mb={peak:.0f}"
    )


def round_forwards(scorer, frames: np.ndarray, sessions: int, batched: bool) -> dict[str, int]:
    """Vision-encoder calls and language-model forwards of one round: each session pushes two frames and
    queries, together (`push_many` + `score_many`) or one by one."""
    from topreward.stream import push_many, score_many

    streams = [scorer.stream(f"{INSTRUCTION} {i}", source_fps=2.0) for i in range(sessions)]
    for s in streams:
        s.push(frames[:8])
    model = scorer.backend.model.model
    calls = {"vision": 0, "language": 0}

    def count(key: str):
        return lambda *a: calls.__setitem__(key, calls[key] + 1)

    hooks = [model.visual.register_forward_hook(count("vision"))]
    hooks.append(model.language_model.register_forward_hook(count("language")))
    try:
        new = [frames[8:10]] * sessions
        if batched:
            push_many(streams, new)
            score_many(streams)
        else:
            for s, f in zip(streams, new):
                s.push(f)
                s.score()
    finally:
        for h in hooks:
            h.remove()
    return calls


def server_throughput(
    scorer, frames: np.ndarray, clients: int, steps: int, batched: bool
) -> tuple[float, float, dict[str, float]]:
    """(steps per second over all clients, share of queries batched with another, seconds in the vision
    encoder / the language model / elsewhere on the worker) on a loopback server."""
    import threading

    from topreward.client import RewardClient
    from topreward.serve import ServeLimits, serve

    server, service = serve(
        scorer, "127.0.0.1", 0, ServeLimits(max_sessions=max(64, clients)), batch_pushes=batched
    )
    url = f"http://127.0.0.1:{server.server_address[1]}"
    model = scorer.backend.model.model
    spent = {"vision": 0.0, "language": 0.0}
    started: dict[str, float] = {}

    def timer(key: str):
        def pre(*a, **k):
            started[key] = time.perf_counter()

        def post(*a, **k):
            spent[key] += time.perf_counter() - started[key]

        return pre, post

    hooks = []
    for module, key in ((model.visual, "vision"), (model.language_model, "language")):
        pre, post = timer(key)
        hooks += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    try:
        sessions = [RewardClient(url).start(f"{INSTRUCTION} {i}", fps=2.0) for i in range(clients)]
        for s in sessions:
            s.push(frames[:8])
        start_batches = len(service.batches)
        spent.update(vision=0.0, language=0.0)
        barrier = threading.Barrier(clients)

        def run(session) -> None:
            barrier.wait()
            for k in range(steps):
                session.push(frames[8 + 2 * k : 10 + 2 * k])
                session.score()

        threads = [threading.Thread(target=run, args=(s,)) for s in sessions]
        t = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        elapsed = time.perf_counter() - t
        sizes = service.batches[start_batches:]
        split = {**spent, "rest": elapsed - spent["vision"] - spent["language"]}
        return clients * steps / elapsed, sum(n for n in sizes if n > 1) / max(sum(sizes), 1), split
    finally:
        for h in hooks:
            h.remove()
        server.shutdown()
        service.close()


if __name__ == "__main__":
    import torch

    with torch.inference_mode():  # the engine keeps autograd available; a benchmark measures scoring
        main()
