"""Record golden TOPReward values by running the TOPReward authors' own scoring code.

Run with the peer venv's python, never with the project venv (their package is also called ``topreward``)::

    python3 -m venv /tmp/peers/authors-venv
    /tmp/peers/authors-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 transformers==4.57.1 \
        tokenizers==0.22.1 accelerate==1.11.0 qwen-vl-utils==0.0.14 loguru==0.7.3 numpy==2.2.6 \
        pillow==12.0.0 av==15.1.0 omegaconf scipy opencv-python-headless openai google-genai molmo_utils
    git -C <bare mirror of github jcoleharrison/TOPReward> worktree add --detach /tmp/peers/authors-paper ea66b29
    git -C <same mirror> worktree add --detach /tmp/peers/authors-head bc61380
    .venv/bin/topreward make-tiny-model --arch qwen3_vl --seed 0 /tmp/peers/tiny_qwen3_vl
    /tmp/peers/authors-venv/bin/python scripts/golden/record_authors.py /tmp/peers/authors-paper paper \
        /tmp/peers/tiny_qwen3_vl tests/golden/authors_paper.json
    /tmp/peers/authors-venv/bin/python scripts/golden/record_authors.py /tmp/peers/authors-head authors \
        /tmp/peers/tiny_qwen3_vl tests/golden/authors_head.json

Versions: ``paper`` = ea66b296573df2fb10415fc374f1164a7f39c42a ("init", 2026-03-03, the first commit with the
scoring code; its scoring path is identical to the release merge 4877a0ee), ``authors`` =
bc6138030483260b54941d983613d7a4ec28bf44 (main HEAD, 2026-04-21). Their uv.lock pins torch 2.8.0 /
torchvision 0.23.0, not installable here: we run torch 2.14.1 / torchvision 0.29.1. transformers 4.57.1,
qwen-vl-utils 0.0.14, pillow 12.0.0, numpy 2.2.6 match their lock.

Patches (none touches their math):
  1. The 5.x-saved tiny model is copied to a temp dir with two JSON edits that transformers 4.57.1 needs:
     tokenizer_config.json gets ``tokenizer_class: Qwen2TokenizerFast`` and loses 5.x's ``backend`` and its
     list-valued ``extra_special_tokens`` (4.57 expects a dict); config.json's text_config gets
     ``rope_scaling = {rope_type: default, mrope_section, mrope_interleaved}`` and ``rope_theta`` copied from
     5.x's ``rope_parameters`` (4.57 reads ``config.rope_scaling["mrope_section"]``). Weights are untouched.
  2. ``from_pretrained`` in their qwen module loads with ``device_map=None`` (CPU) and ``attn_implementation``
     = ``--attn`` (default "sdpa") instead of "auto" / "flash_attention_2"; ``torch_dtype="auto"`` is kept
     (the checkpoint is float32).
  3. ``torch.Tensor.to`` maps the device string "cuda" to "cpu" (their code hard-codes ``.to("cuda")``).
  4. ``torch.set_num_threads(1)`` so that CPU reductions are bitwise repeatable.
Read-only probes (record, then return the original result unchanged): the processor call, the video processor's
``sample_frames``, their ``to_pil``, qwen_vl_utils' ``fetch_image`` / ``process_vision_info``, and their
per-prefix ``compute_instruction_reward``.

What is called: ``QwenClient.compute_instruction_rewards_for_prefixes`` on all 60 clip frames with the keyword
arguments their ``utils/inference.py`` passes (num_samples=15, reduction="mean", fps=clip fps), without and with
the chat template. scipy/opencv/openai/google-genai/molmo_utils are only needed because the paper commit's
``topreward/clients/__init__.py`` imports every client. At HEAD the non-chat prefix-cache path fails on the tiny
model (its frame size depends on the frame count) and their own fallback recomputes every prefix uncached; the
recorded values are those (``prefix_cache_fell_back``).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import importlib.metadata as md
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import av
import numpy as np
import torch
from loguru import logger

CLIP = Path(__file__).resolve().parents[2] / "src/topreward/assets/sample_pick_place.mp4"
INSTRUCTIONS = ["put the pen into the cup", "Pick up the red cube."]
PATCH = 16  # Qwen3-VL vision patch size


def convert_model(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst)
    tok = json.loads((dst / "tokenizer_config.json").read_text())
    tok["tokenizer_class"] = "Qwen2TokenizerFast"
    tok.pop("backend", None)
    if isinstance(tok.get("extra_special_tokens"), list):
        tok.pop("extra_special_tokens")
    (dst / "tokenizer_config.json").write_text(json.dumps(tok, indent=2))
    cfg = json.loads((dst / "config.json").read_text())
    text = cfg["text_config"]
    rope = text.get("rope_parameters") or {}
    if text.get("rope_scaling") is None and "mrope_section" in rope:
        text["rope_scaling"] = {k: rope[k] for k in ("mrope_section", "mrope_interleaved") if k in rope}
        text["rope_scaling"]["rope_type"] = rope.get("rope_type", "default")
        text["rope_theta"] = rope["rope_theta"]
    (dst / "config.json").write_text(json.dumps(cfg, indent=2))


def decode_clip(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def patch_cuda_to_cpu() -> None:
    original = torch.Tensor.to

    def cpu(x):
        return "cpu" if isinstance(x, str) and x.startswith("cuda") else x

    def to(self, *args, **kwargs):
        if "device" in kwargs:
            kwargs["device"] = cpu(kwargs["device"])
        return original(self, *(cpu(a) for a in args), **kwargs)

    torch.Tensor.to = to


class LoadOnCpu:
    def __init__(self, cls, attn: str):
        self.cls, self.attn = cls, attn

    def from_pretrained(self, name, **kwargs):
        kwargs.update(device_map=None, attn_implementation=self.attn)
        return self.cls.from_pretrained(name, **kwargs)


class Probe:
    """Collects what their code hands to the processor, grouped per scored prefix."""

    def __init__(self):
        self.calls: list[dict] = []

    def add(self, **entry):
        self.calls.append(entry)

    def take(self) -> list[dict]:
        calls, self.calls = self.calls, []
        return calls


class ProcessorProxy:
    def __init__(self, processor, probe: Probe):
        self._p, self._probe = processor, probe

    def __getattr__(self, name):
        return getattr(self._p, name)

    def __call__(self, *args, **kwargs):
        metadata = copy.deepcopy(kwargs.get("video_metadata", [None])[0])  # the processor pads it in place
        out = self._p(*args, **kwargs)
        video = kwargs["videos"][0]
        ids = out["input_ids"][0].tolist()
        tok = self._p.tokenizer
        self._probe.add(
            kind="processor",
            text=kwargs["text"][0],
            video_frames=int(len(video)),
            video_hw=[int(video.shape[-2]), int(video.shape[-1])],
            video_dtype=str(video.dtype),
            video_metadata=metadata,
            do_sample_frames=kwargs.get("do_sample_frames"),
            video_grid_thw=out["video_grid_thw"][0].tolist(),
            processed_hw=[int(out["video_grid_thw"][0][1]) * PATCH, int(out["video_grid_thw"][0][2]) * PATCH],
            pixel_values_videos_shape=list(out["pixel_values_videos"].shape),
            num_input_tokens=len(ids),
            input_text_collapsed=collapse(tok.convert_ids_to_tokens(ids), tok),
            answer_token_id=ids[-1],
            answer_token=tok.convert_ids_to_tokens(ids[-1]),
            answer_token_decoded=tok.decode([ids[-1]]),
        )
        return out


def collapse(tokens: list[str], tok) -> str:
    """Decode ids with runs of <|video_pad|> written as <|video_pad|>*N."""
    pad, out, run, buf = "<|video_pad|>", [], 0, []
    for t in [*tokens, None]:
        if t == pad:
            run += 1
            continue
        if run:
            out.append(tok.convert_tokens_to_string(buf) + f"{pad}*{run}")
            buf, run = [], 0
        if t is not None:
            buf.append(t)
    out.append(tok.convert_tokens_to_string(buf))
    return "".join(out)


def install_probes(qwen_mod, client, probe: Probe) -> None:
    import qwen_vl_utils.vision_process as qvu

    client.processor = ProcessorProxy(client.processor, probe)
    vp = client.processor.video_processor
    orig_sample = vp.sample_frames

    def sample_frames(metadata, **kwargs):
        idx = orig_sample(metadata=metadata, **kwargs)
        probe.add(
            kind="sample_frames",
            total_num_frames=int(metadata.total_num_frames),
            fps_used=metadata.fps,
            indices=[int(i) for i in idx],
        )
        return idx

    vp.sample_frames = sample_frames

    orig_to_pil = qwen_mod.to_pil

    def to_pil(image):
        pil = orig_to_pil(image)
        probe.add(kind="to_pil", in_hw=list(np.asarray(image).shape[:2]), out_hw=[pil.height, pil.width])
        return pil

    qwen_mod.to_pil = to_pil

    orig_fetch_image = qvu.fetch_image

    def fetch_image(ele, *args, **kwargs):
        img = orig_fetch_image(ele, *args, **kwargs)
        probe.add(kind="qwen_vl_utils.fetch_image", out_hw=[img.height, img.width], args=list(args))
        return img

    qvu.fetch_image = fetch_image

    orig_pvi = qwen_mod.process_vision_info

    def process_vision_info(*args, **kwargs):
        images, videos = orig_pvi(*args, **kwargs)
        v = videos[0]
        probe.add(
            kind="qwen_vl_utils.process_vision_info",
            frames=len(v),
            hw=[int(v.shape[-2]), int(v.shape[-1])],
            dtype=str(v.dtype),
            min=float(v.min()),
            max=float(v.max()),
        )
        return images, videos

    qwen_mod.process_vision_info = process_vision_info


def summarize_prefix(length: int, calls: list[dict], result) -> dict:
    proc = [c for c in calls if c["kind"] == "processor"]
    assert len(proc) == 1, f"expected one processor call per prefix, got {len(proc)}"
    p = proc[0]
    sampled = [c for c in calls if c["kind"] == "sample_frames"]
    fetched = [c for c in calls if c["kind"] == "qwen_vl_utils.fetch_image"]
    pvi = [c for c in calls if c["kind"] == "qwen_vl_utils.process_vision_info"]
    to_pil = [c for c in calls if c["kind"] == "to_pil"]
    meta = p["video_metadata"]
    if meta is not None:  # authors: explicit raw indices travel as metadata
        given = list(meta["frames_indices"])
    else:  # paper: frames[:length], qwen_vl_utils repeats the last one up to an even count
        given = list(range(length)) + [length - 1] * (p["video_frames"] - length)
    assert len(given) == p["video_frames"]
    seen = [given[i] for i in sampled[0]["indices"]] if sampled else given
    vision_block = "<|vision_start|><|video_pad|><|vision_end|>"
    before, after = p["text"].split(vision_block)
    return {
        "prefix_len": length,
        "frames_given_to_processor_raw_indices": given,
        "video_metadata_given": meta,
        "do_sample_frames_kwarg": p["do_sample_frames"],
        "processor_sampled_positions": sampled[0]["indices"] if sampled else None,
        "processor_assumed_fps": sampled[0]["fps_used"] if sampled else None,
        "raw_frame_indices_seen_by_model": seen,
        "their_resize_hw": sorted({tuple(c["out_hw"]) for c in to_pil})[0] if to_pil else None,
        "qwen_vl_utils_fetch_image_hw": sorted({tuple(c["out_hw"]) for c in fetched})[0] if fetched else None,
        "qwen_vl_utils_fetch_image_patch_size_arg": fetched[0]["args"] if fetched else None,
        "qwen_vl_utils_video": pvi[0] if pvi else None,
        "processor_input_hw": p["video_hw"],
        "processor_input_dtype": p["video_dtype"],
        "processed_hw": p["processed_hw"],
        "video_grid_thw": p["video_grid_thw"],
        "pixel_values_videos_shape": p["pixel_values_videos_shape"],
        "text_before_video": before,
        "text_after_video": after,
        "num_input_tokens": p["num_input_tokens"],
        "input_ids_decoded": p["input_text_collapsed"],
        "answer_token_id": p["answer_token_id"],
        "answer_token": p["answer_token"],
        "answer_token_decoded": p["answer_token_decoded"],
        "scored_token_ids": result.token_ids,
        "per_token_log_probs": result.per_token_log_probs,
        "log_prob": result.reward,
        "false_log_prob": getattr(result, "false_reward", None),
    }


def score_episode(client, probe: Probe, frames, instruction: str, fps: float, chat: bool) -> dict:
    per_prefix: list[dict] = []
    orig = client.compute_instruction_reward
    log: list[str] = []
    sink = logger.add(
        lambda m: log.append(m.record["message"]),
        level="INFO",
        filter=lambda r: "cache=" in r["message"] or "cache reuse failed" in r["message"],
    )

    def compute_instruction_reward(frames, *args, **kwargs):
        probe.take()
        result = orig(frames, *args, **kwargs)
        per_prefix.append(summarize_prefix(len(frames), probe.take(), result))
        return result

    client.compute_instruction_reward = compute_instruction_reward
    # the keyword arguments their inference.py passes
    kwargs = {
        "frames": frames,
        "instruction": instruction,
        "num_samples": 15,
        "reduction": "mean",
        "fps": fps,
        "use_video_description": False,
        "add_chat_template": chat,
    }
    try:
        result = client.compute_instruction_rewards_for_prefixes(**kwargs)
    finally:
        del client.compute_instruction_reward
        logger.remove(sink)
    n = len(result.prefix_lengths)
    assert [p["prefix_len"] for p in per_prefix[-n:]] == result.prefix_lengths, "prefix path not uncached"
    assert [p["log_prob"] for p in per_prefix[-n:]] == result.prefix_rewards
    out = {
        "instruction": instruction,
        "add_chat_template": chat,
        "fps_arg": fps,
        "prefix_lengths": result.prefix_lengths,
        "log_probs": result.prefix_rewards,
        "progress": result.normalized_prefix_rewards,
        "reward": result.reward,
        "token_count": result.token_count,
        "values_from": "compute_instruction_reward (uncached), one call per prefix",
        "prefix_cache_fell_back": any("cache reuse failed" in m for m in log),
        "uncached_calls": len(per_prefix),
        "their_cache_log": log,
        "prefixes": per_prefix[-n:],
    }
    for extra in ("false_reward", "prefix_false_rewards"):
        if hasattr(result, extra):
            out[extra] = getattr(result, extra)
    if hasattr(result, "false_reward"):
        # their false token is tokenizer.encode(" False", add_special_tokens=False)[0]
        tok = client.processor.tokenizer
        ids = tok.encode(" False", add_special_tokens=False)
        out["false_token"] = {
            "encode_ids": ids,
            "id_used": ids[0],
            "token": tok.convert_ids_to_tokens(ids[0]),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkout", type=Path, help="their repo checkout (a git worktree at the wanted commit)")
    ap.add_argument("version", choices=["paper", "authors"])
    ap.add_argument("model_dir", type=Path, help="tiny Qwen3-VL from `topreward make-tiny-model`")
    ap.add_argument("out", type=Path)
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    args = ap.parse_args()

    torch.set_num_threads(1)
    sys.path.insert(0, str(args.checkout.resolve()))
    import qwen_vl_utils  # noqa: F401  (imported before their module so the probes can wrap it)

    patch_cuda_to_cpu()
    qwen_mod = __import__("topreward.clients.qwen", fromlist=["QwenClient"])
    assert Path(qwen_mod.__file__).resolve().is_relative_to(args.checkout.resolve()), qwen_mod.__file__
    qwen_mod.Qwen3VLForConditionalGeneration = LoadOnCpu(qwen_mod.Qwen3VLForConditionalGeneration, args.attn)

    frames = decode_clip(CLIP)
    with av.open(str(CLIP)) as c:
        fps = float(c.streams.video[0].average_rate)
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model"
        convert_model(args.model_dir, model)
        client = qwen_mod.QwenClient(model_name=str(model))
    assert client.model.dtype == torch.float32
    probe = Probe()
    install_probes(qwen_mod, client, probe)

    episodes = [
        score_episode(client, probe, frames, ins, fps, chat) for chat in (False, True) for ins in INSTRUCTIONS
    ]

    sha = subprocess.run(
        ["git", "-C", str(args.checkout), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    files = ["topreward/clients/qwen.py", "topreward/utils/images.py", "topreward/utils/constants.py"]
    record = {
        "version": args.version,
        "env": {
            "their_commit": sha,
            "their_files_sha256": {
                f: hashlib.sha256((args.checkout / f).read_bytes()).hexdigest() for f in files
            },
            "python": sys.version.split()[0],
            **{
                p: md.version(p)
                for p in (
                    "torch",
                    "torchvision",
                    "transformers",
                    "tokenizers",
                    "qwen-vl-utils",
                    "pillow",
                    "numpy",
                    "av",
                )
            },
            "their_lock_torch": "2.8.0",
            "device": "cpu",
            "attn_implementation": args.attn,
            "torch_threads": torch.get_num_threads(),
            "model_dtype": str(client.model.dtype),
            "model_weights_sha256": hashlib.sha256(
                (args.model_dir / "model.safetensors").read_bytes()
            ).hexdigest(),
            "prefix_cache_enabled": getattr(client, "prefix_cache_enabled", None),
        },
        "clip": {
            "path": str(CLIP.relative_to(CLIP.parents[3])),
            "num_frames": len(frames),
            "fps": fps,
            "hw": list(frames[0].shape[:2]),
            "decoder": "PyAV rgb24",
        },
        "episodes": episodes,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
