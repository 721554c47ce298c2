"""One prompt vs a 10-prompt ensemble over the same video, timed side by side.

Random weights of the Qwen3-VL config of `benchmarks/prefix_sharing.py` (2B width, 2 text + 2 vision
layers by default, CPU); default sampling: 32 frames of 256x256, 15 prefixes.
    python benchmarks/ensemble.py
    python benchmarks/ensemble.py --preset 8b --text-layers 0 --vision-layers 0 --device cuda --dtype bfloat16
Prints
  measured_ratio  time of the 10-prompt ensemble / time of one prompt (both on one video cache);
  token_ratio     language-model tokens of the 10-prompt pass / the 1-prompt pass (video once + suffixes);
  naive_ratio     time of 10 independent one-prompt scorings / one (what N separate runs cost);
  max_abs_diff    largest |log P(True)| difference of the ensemble's per-prompt values vs per-prompt
                  reference runs (one plain forward per prompt and prefix).
The issue's target: measured_ratio <= 1.15 x token_ratio, far below the naive 10x. The last line is
machine-readable.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

import topreward
from prefix_sharing import add_model_args, build
from topreward.backends.base import ModelVideo, Request
from topreward.backends.hf import HFBackend
from topreward.sampling import prefix_lengths
from topreward.scorers.ensemble import PROMPTS
from topreward.scorers.topreward import format_prompt

INSTRUCTION = "put the pen into the cup"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_args(ap)
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--prefixes", type=int, default=15)
    ap.add_argument("--size", type=int, default=256, help="square frame side in pixels (multiple of 32)")
    ap.add_argument("--batch-size", type=int, default=8, help="requests per packed forward")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs of each configuration (best kept)")
    ap.add_argument("--no-reference", action="store_true", help="skip the per-prompt reference runs")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        build(args.preset, args.text_layers or None, args.vision_layers or None, tmp)
        backend = HFBackend(tmp, device=args.device, dtype=args.dtype, batch_size=args.batch_size)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (args.frames, args.size, args.size, 3), dtype=np.uint8)
    video = ModelVideo(frames, np.arange(args.frames) * 15, 30.0)
    ks = prefix_lengths(args.frames, args.prefixes)
    one = topreward.load_scorer("ensemble", backend=backend, prompts=PROMPTS[:1], batch_size=args.batch_size)
    ten = topreward.load_scorer("ensemble", backend=backend, prompts=PROMPTS, batch_size=args.batch_size)

    def timed(fn):
        best, out = float("inf"), None
        for _ in range(args.repeats):
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            t = time.perf_counter()
            out = fn()
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t)
        return out, best

    def lm_tokens(scorer) -> int:
        """Language-model tokens one ensemble scoring runs: the video once, then every request's suffix."""
        prompts = [
            backend.prompt_text("authors", p.format(instruction=INSTRUCTION)) for p in scorer.config.prompts
        ]
        cache = backend.video_cache(video, prompts[0].before, path="fast")
        cache.score([Request(k, p.after, (backend.token_id(" True"),)) for p in prompts for k in ks])
        return cache.lm_tokens

    one.compute(video, INSTRUCTION, ks[:2])  # warm-up
    _, t_one = timed(lambda: one.compute(video, INSTRUCTION, ks))
    out_ten, t_ten = timed(lambda: ten.compute(video, INSTRUCTION, ks))
    singles = [
        topreward.load_scorer("ensemble", backend=backend, prompts=(p,), batch_size=args.batch_size)
        for p in PROMPTS
    ]
    _, t_naive = timed(lambda: [s.compute(video, INSTRUCTION, ks) for s in singles])
    tok_one, tok_ten = lm_tokens(one), lm_tokens(ten)

    diff = float("nan")
    if not args.no_reference:
        answer = (backend.token_id(" True"),)
        ref = []
        for template in PROMPTS:
            prompt = backend.prompt_text("authors", template.format(instruction=INSTRUCTION))
            cache = backend.video_cache(video, prompt.before, path="reference")
            ref.append([a.next[0] for a in cache.score([Request(k, prompt.after, answer) for k in ks])])
        diff = float(np.abs(np.asarray(out_ten.signals["prompt_log_p_true"]) - np.asarray(ref)).max())
        assert format_prompt(INSTRUCTION) == PROMPTS[0].format(instruction=INSTRUCTION)

    cfg = backend.model.config
    print(
        f"model: Qwen3-VL {args.preset} width, {cfg.text_config.num_hidden_layers} text / {cfg.vision_config.depth} "
        f"vision layers, {args.dtype} on {args.device}; {args.frames} frames {args.size}x{args.size}, "
        f"{len(ks)} prefixes, batch {args.batch_size}"
    )
    print(f"language-model tokens: 1 prompt {tok_one}, 10 prompts {tok_ten}")
    print(f"1 prompt: {t_one:.2f} s   10 prompts: {t_ten:.2f} s   10 separate scorings: {t_naive:.2f} s")
    print(
        f"measured_ratio={t_ten / t_one:.2f} token_ratio={tok_ten / tok_one:.2f} "
        f"naive_ratio={t_naive / t_one:.2f} max_abs_diff={diff:.2e}"
    )


if __name__ == "__main__":
    import torch

    with torch.inference_mode():  # the engine keeps autograd available; a benchmark measures scoring
        main()
