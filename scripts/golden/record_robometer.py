"""Record golden Robometer values by running the Robometer authors' own inference code on a tiny checkpoint.

Run with the peer venv's python, never with the project venv (``peer_common.py``, next to this script,
holds the helpers it shares with the other peer recorders and is imported from there)::

    python3.11 -m venv /tmp/peers/rbm-venv
    /tmp/peers/rbm-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 transformers==4.57.1 \
        tokenizers==0.22.1 accelerate==1.11.0 qwen-vl-utils==0.0.14 numpy==2.2.6 pillow==12.0.0 av==15.1.0 \
        safetensors==0.8.0 peft==0.21.2 loguru==0.7.3 pyyaml==6.0.4 opencv-python-headless==5.1.0.95 \
        pydantic==2.14.4 hydra-core==1.3.8 omegaconf==2.3.1 fastapi==0.165.0 uvicorn==0.55.0 einops==0.8.2 \
        codetiming==1.4.0 matplotlib==3.11.2 rich==15.0.0 wandb==0.31.0 tensorboard==2.21.0 \
        bitsandbytes==0.50.2 datasets==4.1.1 sentence-transformers==5.7.0
    # (everything after safetensors is only there because their modules import it at import time)
    git -C <bare mirror of github robometer/robometer> worktree add --no-checkout --detach \
        /tmp/peers/robometer c7f38e266e1c00ec1203f4f8dbfa64de36590a0c
    # the mirror lacks the blob of assets/robometer.jpg (a README picture), so check out everything else:
    git -C /tmp/peers/robometer checkout c7f38e266e1c00ec1203f4f8dbfa64de36590a0c -- robometer scripts setup.py \
        pyproject.toml train.py
    .venv/bin/topreward make-tiny-model --arch robometer --seed 0 /tmp/peers/tiny_robometer
    /tmp/peers/rbm-venv/bin/python scripts/golden/record_robometer.py /tmp/peers/robometer \
        /tmp/peers/tiny_robometer tests/golden/robometer.json

Version: robometer c7f38e266e1c00ec1203f4f8dbfa64de36590a0c ("Merge branch 'main' of
github.com:robometer/robometer", 2026-03-20), imported from the checkout via ``sys.path`` (not installed). Their
pyproject pins python 3.10 / torch 2.8.0 (cu128), not installable here: we run python 3.11, torch 2.14.1 (CPU),
torchvision 0.29.1. transformers 4.57.1 (the version the known Robometer-4B deployments pin) and
qwen-vl-utils 0.0.14 (their pin) match. Everything runs in float32 (the tiny ``config.yaml`` says
``torch_dtype: float32``) on CPU with sdpa attention (their loader picks sdpa when ``flash_attn`` is absent).

What is called (their functions, unchanged): ``robometer.utils.save.load_model_from_hf(<abs ckpt>, cpu)`` (reads
config.yaml, ``Qwen3VLModel.from_pretrained(base)``, ``AutoProcessor.from_pretrained(base)``, adds the five RBM
tokens one by one, ``resize_token_embeddings``, ``RBM.from_pretrained(ckpt)``), then
``robometer.utils.setup_utils.setup_batch_collator(..., is_eval=True)`` and
``robometer.evals.eval_server.compute_batch_outputs`` on ``ProgressSample`` / ``PreferenceSample`` built as their
``scripts/example_inference_local.py`` builds them (``Trajectory(frames=uint8 THWC array, frames_shape,
task, id="0", metadata={"subsequence_length": T})``) -- i.e. their ``.npy`` input path. Progress is decoded with
``is_discrete_mode=True, num_bins=10`` (from config.yaml's ``loss`` section, as their example does).

Frames: the clip is decoded with PyAV (rgb24, every frame), and frames are then picked with the index rule of their
``robometer.evals.eval_viz_utils.extract_frames`` (fps=1.0, max_frames=512, native fps = PyAV's average rate);
their function itself reads with decord, which is not used so that the decoder cannot differ.

Patches and stubs (none touches their math):
  1. The 5.x-saved tiny checkpoint is copied to a temp dir with JSON/YAML edits that transformers 4.57.1 needs:
     the base's tokenizer_config.json gets ``tokenizer_class: Qwen2TokenizerFast`` and loses 5.x's ``backend``
     and its list-valued ``extra_special_tokens`` (4.57 expects a dict); both config.json files (checkpoint and
     base) get ``text_config.rope_scaling = {rope_type: default, mrope_section, mrope_interleaved}`` and
     ``rope_theta`` copied from 5.x's ``rope_parameters``; the copy's config.yaml ``model.base_model_id`` is
     pointed at the copied base (the original points at the unconverted base). Weight files are byte copies; after
     loading, every tensor of the checkpoint is checked to equal the loaded parameter (``weights_loaded_exactly``).
  2. ``unsloth`` is stubbed (``sys.modules["unsloth"]`` with ``FastVisionModel = None``): their setup_utils imports
     it at module top and it needs a GPU; config.yaml has ``use_unsloth: false`` so it is never called.
     bitsandbytes (0.50.2) imports on CPU and is not stubbed; decord and flash_attn are not installed (decord is
     only imported by eval_viz_utils, which is not imported).
  3. ``HF_HUB_OFFLINE=1``; the checkpoint path is absolute so their ``resolve_checkpoint_path`` keeps it local.
  4. ``torch.set_num_threads(1)`` so that CPU reductions are bitwise repeatable.
Loader notes (their code, as observed): ``Qwen3VLModel.from_pretrained(base)`` loads none of the base's weights
(4.57.1's ``Qwen3VLModel.base_model_prefix`` is "" while a ``...ForConditionalGeneration`` checkpoint -- the tiny
base as well as ``Qwen/Qwen3-VL-4B-Instruct`` -- stores ``model.*`` keys), so the base starts random and
``resize_token_embeddings(528)`` mean-resizes it; ``RBM.from_pretrained(ckpt)`` then overwrites every parameter
(checked bit for bit above), so the values do not depend on the base's weights or on the RNG.

Read-only probes (record, then return the original result unchanged): ``eval_server.forward_model`` (keeps the
raw head logits of the very forward ``compute_batch_outputs`` decodes) and the processor's
``apply_chat_template`` (keeps the rendered prompt text).

Recorded: per task the per-frame progress / success of one forward over all T frames (and the raw T x 10 progress
logits and T success logits); the preference logit / probability (P(first trajectory better)) for
(frames, reversed frames) and the swap; and, for the first task, their progress path on every prefix of the frames
(last frame's progress and success of each prefix), compared with the one-forward values; and their eval server's
frame steps (``process_batch_helper(..., use_frame_steps=True)``) on the first task's frames: the frames of each
4-frame sub-sample and each one's last progress and success.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as md
import json
import os
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch
import yaml
from peer_common import CLIP, decode_clip, fix_config_json, fix_tokenizer_config, sha256

TASKS = ["put the pen into the cup", "fold the towel"]
FPS = 1.0
MAX_FRAMES = 512  # their example_inference_local.py default
NUM_BINS = 10
RBM_TOKENS = ["<|split_token|>", "<|reward_token|>", "<|pref_token|>", "<|sim_token|>", "<|prog_token|>"]
SHARDS = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]


def sha256_files(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()


def convert_checkpoint(src: Path, dst: Path) -> Path:
    """Copy the tiny checkpoint and make its JSON readable by transformers 4.57.1 (weights untouched)."""
    shutil.copytree(src, dst)
    cfg_yaml = yaml.safe_load((src / "config.yaml").read_text())
    base_src = Path(cfg_yaml["model"]["base_model_id"])
    assert base_src.resolve() == (src / base_src.name).resolve(), base_src
    base = dst / base_src.name
    fix_tokenizer_config(base / "tokenizer_config.json")
    fix_config_json(dst / "config.json")
    fix_config_json(base / "config.json")
    cfg_yaml["model"]["base_model_id"] = str(base.resolve())
    (dst / "config.yaml").write_text(yaml.safe_dump(cfg_yaml, default_flow_style=False, indent=2))
    for f in SHARDS:
        assert (dst / f).read_bytes() == (src / f).read_bytes()
    return dst


def extract_indices(
    total: int, native_fps: float, fps: float = FPS, max_frames: int = MAX_FRAMES
) -> list[int]:
    """The frame-index rule of their eval_viz_utils.extract_frames (decord replaced by PyAV)."""
    desired = int(round(total * (fps / native_fps))) if native_fps > 0 else total
    desired = max(1, min(desired, total))
    desired = min(desired, max_frames)
    if desired == total:
        return list(range(total))
    return np.linspace(0, total - 1, desired, dtype=int).tolist()


class Probes:
    def __init__(self, eval_server, processor):
        self.outputs: list = []
        self.texts: list[str] = []
        orig_forward = eval_server.forward_model

        def forward_model(*args, **kwargs):
            out = orig_forward(*args, **kwargs)
            self.outputs.append(out[0])
            return out

        eval_server.forward_model = forward_model
        orig_template = processor.apply_chat_template

        def apply_chat_template(*args, **kwargs):
            text = orig_template(*args, **kwargs)
            self.texts.append(text)
            return text

        processor.apply_chat_template = apply_chat_template

    def take(self):
        outputs, texts = self.outputs, self.texts
        self.outputs, self.texts = [], []
        assert len(outputs) == 1 and len(texts) == 1, (len(outputs), len(texts))
        return outputs[0], texts[0]


def floats(t: torch.Tensor) -> list:
    return t.detach().cpu().tolist()


def inputs_record(inp: dict, text: str) -> dict:
    pv = inp["pixel_values"].detach().cpu().contiguous()
    return {
        "text": text,
        "input_ids": inp["input_ids"][0].tolist(),
        "attention_mask_all_ones": bool(inp["attention_mask"].all()),
        "image_grid_thw": inp["image_grid_thw"].tolist(),
        "pixel_values_shape": list(pv.shape),
        "pixel_values_dtype": str(pv.dtype),
        "pixel_values_sha256": sha256(pv.numpy().tobytes()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkout", type=Path, help="their repo checkout (a git worktree at the wanted commit)")
    ap.add_argument(
        "model_dir", type=Path, help="tiny checkpoint from `topreward make-tiny-model --arch robometer`"
    )
    ap.add_argument("out", type=Path)
    args = ap.parse_args()

    torch.set_num_threads(1)
    os.environ["HF_HUB_OFFLINE"] = "1"
    checkout = args.checkout.resolve()
    sys.path.insert(0, str(checkout))
    stub = types.ModuleType("unsloth")
    stub.FastVisionModel = None
    sys.modules["unsloth"] = stub

    from robometer.data.dataset_types import PreferenceSample, ProgressSample, Trajectory
    from robometer.evals import eval_server
    from robometer.evals.eval_server import compute_batch_outputs
    from robometer.utils.save import load_model_from_hf
    from robometer.utils.setup_utils import setup_batch_collator
    from safetensors.torch import load_file

    for mod in (eval_server, sys.modules["robometer.utils.save"]):
        assert Path(mod.__file__).resolve().is_relative_to(checkout), mod.__file__

    model_dir = args.model_dir.resolve()
    all_frames, native_fps = decode_clip(CLIP)
    indices = extract_indices(len(all_frames), native_fps)
    frames = np.stack([all_frames[i] for i in indices]).astype(np.uint8)
    T = int(frames.shape[0])

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = convert_checkpoint(model_dir, Path(tmp) / "ckpt")
        exp_config, tokenizer, processor, model = load_model_from_hf(str(ckpt), torch.device("cpu"))
        checkpoint = {}
        for f in SHARDS:
            checkpoint.update(load_file(str(ckpt / f)))
    state = model.state_dict()
    weights_exact = sorted(checkpoint) == sorted(state) and all(
        torch.equal(checkpoint[k], state[k]) for k in checkpoint
    )
    assert weights_exact, (
        set(checkpoint) ^ set(state),
        [k for k in checkpoint if not torch.equal(checkpoint[k], state.get(k))],
    )
    assert model.model.dtype == torch.float32 and not model.training
    token_ids = {t: tokenizer.convert_tokens_to_ids(t) for t in RBM_TOKENS}
    vocab_rows = int(model.model.language_model.embed_tokens.weight.shape[0])
    assert list(token_ids.values()) == list(range(vocab_rows - 5, vocab_rows)), (token_ids, vocab_rows)

    loss_cfg = exp_config.loss
    assert loss_cfg.progress_loss_type.lower() == "discrete" and loss_cfg.progress_discrete_bins == NUM_BINS

    collator = setup_batch_collator(processor, tokenizer, exp_config, is_eval=True)
    probes = Probes(eval_server, processor)

    def trajectory(x: np.ndarray, task: str) -> Trajectory:
        x = np.ascontiguousarray(x)
        return Trajectory(
            frames=x,
            frames_shape=tuple(x.shape),
            task=task,
            id="0",
            metadata={"subsequence_length": int(x.shape[0])},
            video_embeddings=None,
        )

    def run_progress(x: np.ndarray, task: str) -> dict:
        batch = collator([ProgressSample(trajectory=trajectory(x, task), sample_type="progress")])
        inp = batch["progress_inputs"]
        res = compute_batch_outputs(
            model, tokenizer, inp, sample_type="progress", is_discrete_mode=True, num_bins=NUM_BINS
        )
        out, text = probes.take()
        success_probs = res["outputs_success"]["success_probs"][0]
        return {
            **inputs_record(inp, text),
            "progress": res["progress_pred"][0],
            "success": success_probs,
            "progress_logits": floats(out.progress_logits["A"][0]),
            "success_logits": floats(out.success_logits["A"][0]),
            "progress_logits_shape": list(out.progress_logits["A"].shape),
            "success_logits_shape": list(out.success_logits["A"].shape),
            "success_dtype": str(torch.sigmoid(out.success_logits["A"]).dtype),
        }

    def run_preference(a: np.ndarray, b: np.ndarray, task: str) -> dict:
        sample = PreferenceSample(
            chosen_trajectory=trajectory(a, task), rejected_trajectory=trajectory(b, task)
        )
        inp = collator([sample])["preference_inputs"]
        res = compute_batch_outputs(model, tokenizer, inp, sample_type="preference")
        out, text = probes.take()
        return {
            **inputs_record(inp, text),
            "preference_logit": floats(out.pref_logits.squeeze(-1))[0],
            "preference_prob": res["prediction_probs"][0],
            "prediction": res["predictions"][0],
            "preference_label": res["preference_labels"][0],
            "progress_logits_A": floats(out.progress_logits["A"][0]),
            "progress_logits_B": floats(out.progress_logits["B"][0]),
            "success_logits_A": floats(out.success_logits["A"][0]),
            "success_logits_B": floats(out.success_logits["B"][0]),
        }

    progress = [{"task": task, **run_progress(frames, task)} for task in TASKS]

    reversed_frames = frames[::-1].copy()
    task = TASKS[0]
    preference = {
        "task": task,
        "meaning": "preference_prob = sigmoid(logit) = P(first trajectory (A) better than second (B))",
        "A_forward_B_reversed": {
            "A": "selected frames",
            "B": "selected frames reversed in time",
            **run_preference(frames, reversed_frames, task),
        },
        "A_reversed_B_forward": {
            "A": "selected frames reversed in time",
            "B": "selected frames",
            **run_preference(reversed_frames, frames, task),
        },
    }

    prefixes = []
    for k in range(1, T + 1):
        r = run_progress(frames[:k], task)
        assert len(r["progress"]) == k and len(r["success"]) == k, (k, r["progress"], r["success"])
        prefixes.append(
            {
                "k": k,
                "num_input_tokens": len(r["input_ids"]),
                "progress_last": r["progress"][-1],
                "success_last": r["success"][-1],
                # k = 1: their per-token extraction returns [B, H] (one token), so the logits are [1, bins] / [1, 1]
                "progress_logits_last": r["progress_logits"][-1] if k > 1 else r["progress_logits"],
                "success_logits_last": r["success_logits"][-1],
                "progress_logits_shape": r["progress_logits_shape"],
                "success_logits_shape": r["success_logits_shape"],
            }
        )
    full = progress[0]
    diffs_p = [abs(p["progress_last"] - full["progress"][i]) for i, p in enumerate(prefixes)]
    diffs_s = [abs(p["success_last"] - full["success"][i]) for i, p in enumerate(prefixes)]
    per_prefix = {
        "task": task,
        "note": "k = 1..T: their progress path on frames[:k]; *_last = the prediction at frame k",
        "prefixes": prefixes,
        "progress_last": [p["progress_last"] for p in prefixes],
        "success_last": [p["success_last"] for p in prefixes],
        "abs_diff_progress_vs_one_forward": diffs_p,
        "abs_diff_success_vs_one_forward": diffs_s,
        "equal_to_one_forward_exactly": diffs_p == [0.0] * T and diffs_s == [0.0] * T,
        "max_abs_diff_progress_vs_one_forward": max(diffs_p),
        "max_abs_diff_success_vs_one_forward": max(diffs_s),
    }

    # Their eval server's other protocol, frame steps: `process_batch_helper(..., use_frame_steps=True)` expands
    # the trajectory into one 4-frame sub-sample per frame and keeps each one's last prediction. A read-only
    # wrapper around the collator records which frames each sub-sample holds (as indices into `frames`).
    seen: list = []

    def collate(samples):
        seen.extend(samples)
        return collator(samples)

    stepped = eval_server.process_batch_helper(
        exp_config.model.model_type,
        model,
        tokenizer,
        collate,
        torch.device("cpu"),
        [ProgressSample(trajectory=trajectory(frames, task), sample_type="progress")],
        job_id=0,
        is_discrete_mode=True,
        num_bins=NUM_BINS,
        use_frame_steps=True,
    )
    probes.outputs.clear()
    probes.texts.clear()

    def index_of(frame: np.ndarray) -> int:
        hits = [j for j in range(T) if np.array_equal(frames[j], frame)]
        assert len(hits) == 1, hits
        return hits[0]

    frame_steps = {
        "task": task,
        "note": "their process_batch_helper(use_frame_steps=True): per frame t, a sub-sample of 4 frames; "
        "progress/success = each sub-sample's last prediction; sub_sample_frames = indices into the selected "
        "frames, read back from the samples their collator received",
        "sub_sample_frames": [[index_of(f) for f in s.trajectory.frames] for s in seen],
        "progress": stepped["outputs_progress"]["progress_pred"][0],
        "success": stepped["outputs_success"]["success_probs"][0],
    }

    sha = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    files = [
        "robometer/models/rbm.py",
        "robometer/models/heads.py",
        "robometer/models/utils.py",
        "robometer/data/collators/rbm_heads.py",
        "robometer/data/collators/utils.py",
        "robometer/utils/save.py",
        "robometer/utils/setup_utils.py",
        "robometer/evals/eval_server.py",
        "robometer/evals/eval_viz_utils.py",
    ]
    packages = [
        "torch",
        "torchvision",
        "transformers",
        "tokenizers",
        "qwen-vl-utils",
        "pillow",
        "numpy",
        "av",
        "accelerate",
        "safetensors",
        "peft",
        "pydantic",
        "bitsandbytes",
        "huggingface-hub",
        "PyYAML",
    ]
    record = {
        "robometer_commit": sha,
        "robometer_files_sha256": {f: sha256((checkout / f).read_bytes()) for f in files},
        "versions": {"python": sys.version.split()[0], **{p: md.version(p) for p in packages}},
        "their_pins": {
            "python": "3.10.*",
            "torch": "2.8.0",
            "qwen-vl-utils": "0.0.14",
            "transformers": ">=4.57",
        },
        "device": "cpu",
        "attn_implementation": model.model.config._attn_implementation,
        "torch_threads": torch.get_num_threads(),
        "model_dtype": str(model.model.dtype),
        "model_sha256": sha256_files([model_dir / f for f in SHARDS]),
        "model_files_sha256": {f: sha256_files([model_dir / f]) for f in SHARDS},
        "base_model_sha256": sha256_files([model_dir / "Qwen3-VL-tiny-base" / "model.safetensors"]),
        "weights_loaded_exactly": weights_exact,
        "special_token_ids": token_ids,
        "tokenizer_len": len(tokenizer),
        "embedding_rows": vocab_rows,
        "progress_loss_type": loss_cfg.progress_loss_type,
        "num_bins": NUM_BINS,
        "clip": {
            "path": str(CLIP.relative_to(CLIP.parents[3])),
            "num_frames": len(all_frames),
            "hw": list(all_frames[0].shape[:2]),
            "decoder": "PyAV rgb24, all frames",
        },
        "clip_sha256": sha256(CLIP.read_bytes()),
        "fps": FPS,
        "max_frames": MAX_FRAMES,
        "native_fps": native_fps,
        "frame_indices": indices,
        "frames_shape": list(frames.shape),
        "frames_sha256": sha256(frames.tobytes()),
        "progress": progress,
        "preference": preference,
        "per_prefix": per_prefix,
        "frame_steps": frame_steps,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
