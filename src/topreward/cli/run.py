"""`serve` and `train`: the reward server for RL workers, and fine-tuning a reward model.

Each command is its parser piece (`add_*`) beside its handler (`run_*`).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading

from topreward.cli.checks import (
    ray_only,
)
from topreward.cli.flags import (
    AddCommand,
    add_config_flags,
    add_method_flags,
    add_quiet,
    add_ray_address,
    hush_libraries,
    method_options,
)


def add_serve(command: AddCommand, method: str) -> None:
    p = command("serve", help="reward server for RL workers: streaming sessions and one-shot scoring")
    p.add_argument(
        "--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1, this machine only)"
    )
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 = any free port)")
    p.add_argument(
        "--token", default=None, help="require 'Authorization: Bearer TOKEN' (or set TOPREWARD_TOKEN)"
    )
    p.add_argument("--max-request-mb", type=int, default=64, help="largest request body in MiB (default: 64)")
    p.add_argument("--max-side", type=int, default=2048, help="largest frame side in pixels (default: 2048)")
    p.add_argument(
        "--max-session-frames", type=int, default=4096, help="frames one session takes (default: 4096)"
    )
    p.add_argument("--max-sessions", type=int, default=64, help="open sessions at once (default: 64)")
    p.add_argument("--idle-s", type=float, default=600.0, help="close sessions idle this long (default: 600)")
    p.add_argument(
        "--request-timeout",
        type=float,
        default=60.0,
        help="seconds a request may wait for the model, then 503 (default: 60)",
    )
    p.add_argument(
        "--max-queue", type=int, default=256, help="jobs waiting for the model, then 429 (default: 256)"
    )
    p.add_argument(
        "--read-timeout",
        type=float,
        default=30.0,
        help="seconds a client may stall mid-request or idle on a connection, then cut off (default: 30)",
    )
    p.add_argument(
        "--max-kept-frames",
        type=int,
        default=256,
        help="frames a session keeps; past it, every second one is dropped (default: 256)",
    )
    p.add_argument(
        "--engine", choices=("local", "ray"), default="local", help="local (one model) or ray (Ray Serve)"
    )
    p.add_argument("--replicas", type=int, default=1, help="ray: model replicas (default: 1)")
    p.add_argument("--gpus-per-replica", type=float, default=0.0, help="ray: GPUs per replica (default: 0)")
    add_ray_address(p)
    add_quiet(p, "no model-loading bars")
    add_method_flags(p, method)
    p.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    import os

    from topreward.scorers.registry import load_scorer
    from topreward.serve import ServeLimits, serve

    token = args.token or os.environ.get("TOPREWARD_TOKEN")
    from topreward.serve.server import check_port

    check_port(args.port)  # every option is checked before a model is loaded
    ray_only(args)
    if args.quiet:
        hush_libraries()
    limits = ServeLimits(
        max_request_bytes=args.max_request_mb * 2**20,
        max_side=args.max_side,
        max_session_frames=args.max_session_frames,
        max_sessions=args.max_sessions,
        idle_s=args.idle_s,
        token=token,
        request_timeout=args.request_timeout,
        max_queue=args.max_queue,
        read_timeout=args.read_timeout,
        max_kept_frames=args.max_kept_frames,
    )
    auth = "bearer token" if token else "none"
    if args.engine == "ray":
        from topreward.serve.ray import deploy

        url = deploy(
            args.method,
            method_options(args),
            replicas=args.replicas,
            gpus_per_replica=args.gpus_per_replica,
            host=args.host,
            port=args.port,
            limits=limits,
            address=args.ray_address,
        )
        announce = f"{args.method} on {url}, {args.replicas} Ray Serve replica(s) (auth: {auth})"
        stop = None  # Ray Serve stops with this driver
    else:
        server, service = serve(
            load_scorer(args.method, **method_options(args)), args.host, args.port, limits
        )
        host, port = server.server_address[:2]
        announce = f"{args.method} on http://{host}:{port} (auth: {auth})"

        def stop() -> None:
            server.shutdown()
            server.server_close()
            service.close()

    with _until_signalled() as stopping:
        print(f"topreward serve: {announce}", flush=True)
        try:
            stopping.wait()
        finally:
            print("stopping", flush=True)
            if stop is not None:
                stop()
    return 0


@contextlib.contextmanager
def _until_signalled():
    """An event that SIGINT (Ctrl-C) or SIGTERM sets, for the block's duration (handlers restored after).

    The server runs until then. Installed before the server announces itself, so a signal can never land
    outside the wait (e.g. between the announcement and it), and the shutdown after it is always the same.
    """
    stopping = threading.Event()
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield stopping
        return
    previous = {sig: signal.signal(sig, lambda *_: stopping.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stopping
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def add_train(command: AddCommand, method: str) -> None:
    from topreward.backends.config import DEFAULT_MODEL
    from topreward.sampling import SamplingConfig
    from topreward.train import HEADS, METHOD_OF

    p = command(
        "train",
        help="fine-tune a reward model on episodes with ground truth (LRM heads or a TOPReward head)",
        description="Heads and the method that scores with each: "
        + ", ".join(f"{h} -> {m}" for h, m in METHOD_OF.items())
        + ". A full model loads back with --model OUT/final, an adapter with --adapter OUT/final.",
    )
    p.add_argument("sources", nargs="+", help="manifests, LeRobot dataset roots or `topreward sim` output")
    p.add_argument("--head", choices=HEADS, default="topreward", help="what to train")
    p.add_argument("--model", default=DEFAULT_MODEL, help="Hub id or local folder of the base model")
    p.add_argument("--out", required=True, help="folder for checkpoints and the final model")
    p.add_argument("--steps", type=int, default=200, help="optimizer steps")
    p.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate")
    p.add_argument("--batch-size", type=int, default=4, help="examples per step")
    p.add_argument(
        "--lora", choices=("auto", "yes", "no"), default="auto", help="auto: LoRA above 100M parameters"
    )
    p.add_argument("--lora-rank", type=int, default=16, help="LoRA rank")
    p.add_argument("--val-fraction", type=float, default=0.2, help="episodes held out for validation")
    p.add_argument("--seed", type=int, default=0, help="split, example and batch seed")
    p.add_argument("--num-points", type=int, default=8, help="evaluation points (examples) per episode")
    p.add_argument(
        "--done-at", type=float, default=0.95, help="completion head: ground truth counted as done"
    )
    p.add_argument("--eval-every", type=int, default=50, help="validation every N steps")
    p.add_argument("--checkpoint-every", type=int, default=50, help="checkpoint every N steps")
    p.add_argument(
        "--demos-succeed",
        action="store_true",
        help="episodes without labels are successful demonstrations: time-based progress (e.g. LeRobot)",
    )
    p.add_argument(
        "--augment",
        default="",
        help="control views added to training, comma list: static (first frame repeated), reversed",
    )
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    p.add_argument("--device", default=None, help="cuda, cpu (default: cuda if available)")
    p.add_argument("--dtype", default=None, help="model dtype (default float32; bf16 autocast on CUDA)")
    add_config_flags(p.add_argument_group("sampling options"), SamplingConfig, skip=("num_prefixes",))
    add_quiet(p, "no progress bar")
    p.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    from topreward.train import TrainConfig, train

    sampling = {k: getattr(args, k) for k in ("fps", "max_frames", "max_pixels", "size")}
    config = TrainConfig(
        args.head,
        list(args.sources),
        args.model,
        args.out,
        steps=args.steps,
        lr=args.lr,
        batch_size=args.batch_size,
        lora=args.lora,
        lora_rank=args.lora_rank,
        val_fraction=args.val_fraction,
        seed=args.seed,
        num_points=args.num_points,
        done_at=args.done_at,
        demos_succeed=args.demos_succeed,
        augment=tuple(v for v in args.augment.split(",") if v),
        eval_every=args.eval_every,
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
        device=args.device,
        dtype=args.dtype,
        sampling={k: v for k, v in sampling.items() if v is not None},
    )
    result = train(config, progress_bar=not args.quiet)
    last = result.evaluations[-1] if result.evaluations else {}
    print(f"trained {config.head} for {result.steps} steps: {result.out / 'final'}  {last}")
    return 0
