"""Reference (one forward per prefix) vs fast (prefix-shared) TOPReward scoring, timed side by side.

Random weights of a Qwen3-VL config at real width; depth reduced by default so it runs on a CPU:
    python benchmarks/prefix_sharing.py                      # 2B width, 2 text + 2 vision layers, CPU
    python benchmarks/prefix_sharing.py --preset 8b --device cuda --dtype bfloat16   # full Qwen3-VL-8B shape
Prints both times, the measured ratio, the ideal ratio from token counts, sum_k(L_k + S) / (L_T + K*S), and
the largest |log-prob difference| between the paths; the last line is machine-readable.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from topreward.backends.hf import HFBackend, ModelVideo
from topreward.backends.video_cache import build_layouts
from topreward.prompts import TOPREWARD_TEMPLATE
from topreward.sampling import prefix_lengths
from topreward.tiny import _special_ids, build_processor, build_tokenizer

PRESETS = {
    # Qwen3-VL-2B widths (text 28 layers, vision 24 in the real model)
    "2b": {
        "text": {
            "hidden_size": 2048,
            "intermediate_size": 6144,
            "num_attention_heads": 16,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "num_hidden_layers": 28,
        },
        "vision": {
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_heads": 16,
            "depth": 24,
            "deepstack_visual_indexes": [5, 11, 17],
        },
    },
    # Qwen3-VL-8B
    "8b": {
        "text": {
            "hidden_size": 4096,
            "intermediate_size": 12288,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "num_hidden_layers": 36,
        },
        "vision": {
            "hidden_size": 1152,
            "intermediate_size": 4304,
            "num_heads": 16,
            "depth": 27,
            "deepstack_visual_indexes": [8, 16, 24],
        },
    },
}


def build(preset: str, text_layers: int | None, vision_layers: int | None, path: str) -> None:
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    tok = build_tokenizer()
    spec = PRESETS[preset]
    text = {
        **spec["text"],
        "vocab_size": len(tok),
        "max_position_embeddings": 262144,
        "initializer_range": 0.02,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 5_000_000.0,
            "mrope_section": [24, 20, 20],
            "mrope_interleaved": True,
        },
    }
    vision = {
        **spec["vision"],
        "patch_size": 16,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "out_hidden_size": spec["text"]["hidden_size"],
        "num_position_embeddings": 2304,
    }
    if text_layers:
        text["num_hidden_layers"] = text_layers
    if vision_layers:
        vision["depth"] = vision_layers
        vision["deepstack_visual_indexes"] = list(range(min(vision_layers, text["num_hidden_layers"], 3)))
    torch.manual_seed(0)
    model = Qwen3VLForConditionalGeneration(
        Qwen3VLConfig(text_config=text, vision_config=vision, **_special_ids(tok))
    )
    model.save_pretrained(path)
    build_processor("qwen3_vl", tok).save_pretrained(path)


def add_model_args(ap: argparse.ArgumentParser) -> None:
    """The model flags both benchmarks share (shape preset, depth, device, dtype)."""
    ap.add_argument("--preset", choices=sorted(PRESETS), default="2b")
    ap.add_argument("--text-layers", type=int, default=2, help="0 = the preset's full depth")
    ap.add_argument("--vision-layers", type=int, default=2, help="0 = the preset's full depth")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_args(ap)
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--prefixes", type=int, default=32)
    ap.add_argument("--size", type=int, default=96, help="square frame side in pixels (multiple of 32)")
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())

    with tempfile.TemporaryDirectory() as tmp:
        build(args.preset, args.text_layers or None, args.vision_layers or None, tmp)
        backend = HFBackend(tmp, device=args.device, dtype=args.dtype)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (args.frames, args.size, args.size, 3), dtype=np.uint8)
    video = ModelVideo(frames, np.arange(args.frames) * 15, 30.0)
    ks = prefix_lengths(args.frames, args.prefixes)
    prompt = backend.prompt_text("authors", TOPREWARD_TEMPLATE.format(instruction="put the pen into the cup"))
    ids = [backend.token_id(" True"), backend.token_id(" False")]

    layouts = build_layouts(backend, video, [*ks, args.frames], prompt.before)
    full = layouts[args.frames]
    # the prompt suffix: the video's closing tokens after its last vision token, then the prompt text
    suffix = len(full) - (int(full.video_positions[-1]) + 1) + len(backend.tokenize(prompt.after))
    reference_tokens = sum(len(layouts[k]) for k in ks) + len(ks) * len(backend.tokenize(prompt.after))
    ideal = reference_tokens / (len(full) + len(backend.tokenize(prompt.after)) - suffix + len(ks) * suffix)

    def timed(fn):
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = fn()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return out, time.perf_counter() - t

    backend.fast_log_probs(video, ks[:2], prompt, ids)  # warm-up
    fast, t_fast = timed(lambda: backend.fast_log_probs(video, ks, prompt, ids, batch_size=args.batch_size))
    ref, t_ref = timed(lambda: backend.reference_log_probs(video, ks, prompt, ids))
    diff = float(np.abs(fast - ref).max())
    n_layers = backend.model.config.text_config.num_hidden_layers
    print(
        f"model: Qwen3-VL {args.preset} width, {n_layers} text / {backend.model.config.vision_config.depth} vision "
        f"layers, {args.dtype} on {args.device}; {args.frames} frames {args.size}x{args.size}, {len(ks)} prefixes"
    )
    print(
        f"tokens: full sequence {len(full) + len(backend.tokenize(prompt.after))}, prompt suffix {suffix}, "
        f"reference total {reference_tokens}"
    )
    print(f"reference: {t_ref:.2f} s   fast: {t_fast:.2f} s")
    print(f"measured_ratio={t_ref / t_fast:.2f} ideal_ratio={ideal:.2f} max_abs_diff={diff:.2e}")


if __name__ == "__main__":
    import torch

    with torch.inference_mode():  # the engine keeps autograd available; a benchmark measures scoring
        main()
