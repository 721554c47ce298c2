"""Record golden LRM values by running LRM's own reward server code (``vlm_reward/vlm_reward_server.py``).

Run with the peer venv's python, never with the project venv (``peer_common.py``, next to this script,
holds the helpers it shares with the other peer recorders and is imported from there)::

    python3 -m venv /tmp/peers/rr-venv        # the venv of record_roboreward.py, plus flask and peft
    /tmp/peers/rr-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 transformers==4.57.3 \
        tokenizers==0.22.2 accelerate==1.16.0 qwen-vl-utils==0.0.14 opencv-python-headless==5.1.0.95 \
        pillow==12.0.0 numpy==2.4.6 av==18.1.0 safetensors==0.8.0 huggingface_hub==0.36.2
    /tmp/peers/rr-venv/bin/pip install flask==3.1.3 peft==0.21.2
    git -C <bare mirror of github physical-superintelligence-lab/Large-Reward-Models> worktree add --detach \
        /tmp/peers/lrm 5845ab0f7c3c6a0bef8bd37bf7f07e9533f7ed2f
    .venv/bin/topreward make-tiny-model --arch lrm --seed 0 /tmp/peers/tiny_lrm
    /tmp/peers/rr-venv/bin/python scripts/golden/record_lrm.py /tmp/peers/lrm /tmp/peers/tiny_lrm \
        tests/golden/lrm.json

Version: 5845ab0f7c3c6a0bef8bd37bf7f07e9533f7ed2f ("Update README.md", HEAD of main). Their
``vlm_reward/requirements.txt`` asks for ``torch>=2.4.1,<2.6`` (not installable here: we run torch 2.14.1 CPU),
``transformers>=4.57,<5`` (4.57.3 here) and unpinned flask, numpy, Pillow, requests, qwen-vl-utils, peft,
safetensors. qwen-vl-utils and peft are never used on the path recorded here (peft is for their tri mode only,
imported inside ``load_vlm_multi_adapter``). Their module is imported from the checkout (``vlm_reward`` on
sys.path); importing it creates their Flask ``app`` but does not start it.

What is called (theirs, unchanged), once per head, with the single-adapter path of their README (path 1a):
``load_vlm_model(<adapter dir>, base_model_path=<tiny base copy>, gpu_id=0)``, which loads the base, loads the
adapter's non-LoRA tensors (the progress adapter's ``visual`` tower) with ``load_state_dict(strict=False)`` and
merges every lora_A/lora_B pair by hand as ``W + (B @ A) * lora_alpha / r``; then on the clip frames at indices
[0, 20, 39, 59] (what topreward's sampler picks with max_frames=4, fps=2 on the 60-frame 10 fps clip), as uint8
HxWx3 RGB arrays at their native 128x160 (as their client sends them; the server does no resizing):
  * progress: ``compute_vlm_reward(frame_k, task, "progress", initial_image=frame_0)`` for each k;
  * completion: ``compute_vlm_completion(frame_k, task)`` for each k;
  * contrastive: ``compute_vlm_comparison(frame_a, frame_b, task)`` for (0, 20), (20, 39), (39, 59).
Task: "put the pen into the cup". Clip decoded with PyAV (rgb24).

Patches (none touches their math):
  1. The 5.x-saved tiny base is copied to a temp dir (same folder name) with two JSON edits that transformers
     4.57.3 needs: tokenizer_config.json gets ``tokenizer_class: Qwen2TokenizerFast`` and loses 5.x's
     ``backend`` and its list-valued ``extra_special_tokens``; config.json's text_config gets ``rope_scaling =
     {rope_type: default, mrope_section, mrope_interleaved}`` and ``rope_theta`` copied from 5.x's
     ``rope_parameters``. Weights are byte copies; the adapters are read from their own folders, untouched.
  2. Their ``Qwen3VLForConditionalGeneration.from_pretrained(base, torch_dtype=torch.bfloat16,
     device_map=device, trust_remote_code=True)`` is answered with ``torch_dtype=torch.float32`` and
     ``attn_implementation="sdpa"`` (device_map stays theirs: "cpu", as their code picks without CUDA) while
     ``load_vlm_model`` runs; the loading info must be clean. Their merge then runs in float32 (it casts A and B
     to the weight's dtype), where on their GPU setup it runs in bfloat16.
  3. ``VLM_DEBUG`` is removed from the environment (their debug prints only).
  4. ``torch.set_num_threads(1)`` so that CPU reductions are bitwise repeatable.
Their ``compute_vlm_completion`` prints a debug block (captured here, not recorded) and tries to append it to
``/data/vlm_completion_debug.log`` (an exception they swallow when /data does not exist).

Read-only probes (record, then return the original result unchanged): their processor's ``apply_chat_template``
(the content items, and for completion's ``tokenize=True`` call one extra ``tokenize=False`` call to record the
rendered text) and ``__call__`` (text, input_ids, grid, pixel values), their model's ``generate`` (token ids),
and the stdout of ``load_vlm_model`` (their merge counts). After loading, every parameter of their model is
checked against base + adapter computed here (``weights_check``): merged weights equal ``W + (B @ A) * s``
exactly, the progress adapter's visual tensors replaced the base's, all else is the base's.

Second readout (ours, for ``readout="expected"``), progress and completion only: after each of their calls, one
forward of their model per sequence on their processor outputs with assistant-text tokens appended to input_ids
(attention_mask extended with ones): the tokens of the teacher-forced prefix alone (``{ "completion_progress":``
/ ``{ "task_completed": "``), then of prefix + candidate (" 0.0" .. " 1.0" / "yes", "no"), each as one string
``tokenizer(text, add_special_tokens=False)``. A candidate's tokens are those after the prefix's tokens
(``prefix_tokens_are_a_prefix`` records whether prefix+candidate starts with the prefix alone's tokens); its
log-prob is the sum of the log-softmax (whole vocabulary) of its tokens; ``prefix_log_prob`` is the same sum over
the prefix's own tokens. These forwards happen after their call returned and change nothing they compute.

Parser cases: their ``extract_progress_score`` and ``extract_comparison_result`` on scripted strings, and each
string also through their ``compute_vlm_reward`` / ``compute_vlm_comparison`` / ``compute_vlm_completion`` with
a stub model and processor whose decode returns the string (so their own post-decode code: the completion
reading, ``.strip()``, the +1 ImageB / -1 ImageA / 0 None mapping). Two single-threaded runs give
byte-identical JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata as md
import io
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.pop("VLM_DEBUG", None)  # patch 3

import numpy as np
import torch
from peer_common import (
    CLIP,
    ForcedFromPretrained,
    Probe,
    clip_info,
    collapse,
    convert_model,
    decode_clip,
    install_generate_probe,
    sha256,
)
from safetensors.torch import load_file

TASK = "put the pen into the cup"
FRAME_INDICES = [0, 20, 39, 59]  # topreward's sample_indices(60, 10.0, fps=2, max_frames=4)
HEADS = ("progress", "completion", "contrastive")
BASE_NAME = "Qwen3-VL-8B-Instruct-tiny"
# theirs, hard-coded in each compute function
MAX_NEW_TOKENS = {"progress": 128, "completion": 128, "contrastive": 512}
PROGRESS_PREFIX = '{ "completion_progress":'
PROGRESS_CANDIDATES = tuple(f" {i / 10:.1f}" for i in range(11))
COMPLETION_PREFIX = '{ "task_completed": "'
COMPLETION_CANDIDATES = ("yes", "no")
PARSER_CASES = [
    # the spec's measured table
    '{ "completion_progress": 0.7 }',
    '"NA"',
    "1.5",
    "The answer is 0.35 maybe",
    "Progress: 45",
    "step 3 of 10",
    "nothing",
    "ImageB is better than ImageA",
    "imageb",
    # asked for by the brief
    '{ "task_completed": "yes" }',
    "I know it is done",
    "yes",
    "yes, I know it is done",
    '{"more_complete_image": "ImageB"}',
    # more
    '{ "task_completed": "no" }',
    '{"task_completed": "YES"}',
    '"task_completed": "no" then "task_completed": "yes"',
    "no",
    "  yes  ",
    "Yes, the task is complete.",
    '{ "completion_progress": "NA" }',
    '{ "completion_progress": 1.0 }',
    '{ "completion_progress": 0.3 } { "completion_progress": 0.9 }',
    '{"completion_progress": 0.45, "note": "x"}',
    '"completion_progress": 0.6',
    '{ "more_complete_image": "ImageA" }',
    '{ "more_complete_image": "imageB" } but ImageA',
    'Analysis ... ImageA looks further. { "more_complete_image": "ImageB" }',
    "ImageA",
    "",
]
VERSIONS = (
    "torch",
    "torchvision",
    "transformers",
    "tokenizers",
    "accelerate",
    "safetensors",
    "peft",
    "flask",
    "qwen-vl-utils",
    "pillow",
    "numpy",
    "av",
    "huggingface_hub",
)


class Tee(io.TextIOBase):
    def __init__(self, *streams):
        self.streams = streams

    def write(self, s):
        for st in self.streams:
            st.write(s)
        return len(s)

    def flush(self):
        for st in self.streams:
            st.flush()


def describe_content(messages) -> list[dict]:
    items = []
    for item in messages[0]["content"]:
        if item["type"] == "text":
            items.append({"type": "text", "text": item["text"]})
        else:
            arr = np.asarray(item["image"])
            items.append({"type": item["type"], "hw": list(arr.shape[:2]), "sha256": sha256(arr.tobytes())})
    return items


class ProcessorProxy:
    def __init__(self, processor, probe: Probe):
        self._p, self._probe = processor, probe

    def __getattr__(self, name):
        return getattr(self._p, name)

    def apply_chat_template(self, messages, *args, **kwargs):
        out = self._p.apply_chat_template(messages, *args, **kwargs)
        if kwargs.get("tokenize"):
            text = self._p.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            outputs = {k: v.clone() for k, v in out.items() if torch.is_tensor(v)}
        else:
            text, outputs = out, None
        self._probe.add(
            kind="chat_template",
            kwargs={k: v for k, v in kwargs.items()},
            content=describe_content(messages),
            text=text,
            outputs=outputs,
        )
        return out

    def __call__(self, *args, **kwargs):
        given = {k: v for k, v in kwargs.items() if k not in ("text", "images")}
        out = self._p(*args, **kwargs)
        self._probe.add(
            kind="processor",
            text=kwargs["text"][0],
            images=[
                {"hw": [im.height, im.width], "sha256": sha256(np.asarray(im).tobytes())}
                for im in kwargs["images"]
            ],
            kwargs=given,
            outputs={k: v.clone() for k, v in out.items() if torch.is_tensor(v)},
        )
        return out


def forward_log_probs(model, inputs: dict, extra: list[int]) -> tuple[list[float], int]:
    """Their model on their inputs with `extra` ids appended: the log-prob of each extra token, and the argmax
    at the prompt's last position."""
    ids = inputs["input_ids"]
    ext = torch.tensor([extra], dtype=ids.dtype)
    batch = dict(inputs)
    batch["input_ids"] = torch.cat([ids, ext], dim=1)
    batch["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones_like(ext)], dim=1)
    with torch.no_grad():
        logits = model(**batch).logits[0].float()
    n = ids.shape[1]
    lp = torch.log_softmax(logits[n - 1 : n - 1 + len(extra)], dim=-1)
    return [float(lp[i, t]) for i, t in enumerate(extra)], int(logits[n - 1].argmax())


def forced_readout(
    model, inputs: dict, tok, prefix: str, candidates: tuple[str, ...], first_generated
) -> dict:
    allowed = {"input_ids", "attention_mask", "pixel_values", "image_grid_thw"}
    assert set(inputs) <= allowed, sorted(inputs)
    p_ids = tok(prefix, add_special_tokens=False)["input_ids"]
    p_lps, argmax = forward_log_probs(model, inputs, p_ids)
    out = {
        "prefix": prefix,
        "prefix_token_ids": p_ids,
        "prefix_token_log_probs": p_lps,
        "prefix_log_prob": sum(p_lps),
        "prompt_end_argmax_token_id": argmax,
        "prompt_end_argmax_matches_first_generated": argmax == first_generated,
        "candidates": [],
    }
    for cand in candidates:
        ids = tok(prefix + cand, add_special_tokens=False)["input_ids"]
        starts = ids[: len(p_ids)] == p_ids
        common = len(p_ids) if starts else next(i for i, (a, b) in enumerate(zip(ids, p_ids)) if a != b)
        lps, _ = forward_log_probs(model, inputs, ids)
        out["candidates"].append(
            {
                "text": cand,
                "token_ids": ids,
                "prefix_tokens_are_a_prefix": starts,
                "candidate_token_ids": ids[common:],
                "candidate_token_log_probs": lps[common:],
                "log_prob": sum(lps[common:]),
            }
        )
    out["log_probs"] = [c["log_prob"] for c in out["candidates"]]
    out["all_prefix_tokens_are_a_prefix"] = all(c["prefix_tokens_are_a_prefix"] for c in out["candidates"])
    return out


def weights_check(model, base_dir: Path, adapter_dir: Path) -> dict:
    """Their loaded parameters against base + adapter computed here (the formula of their merge)."""
    base = load_file(str(base_dir / "model.safetensors"))
    adapter = load_file(str(adapter_dir / "adapter_model.safetensors"))
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    scaling = cfg.get("lora_alpha", 128) / cfg.get("r", 64)
    pairs: dict[str, dict] = {}
    whole: dict[str, torch.Tensor] = {}
    for key, value in adapter.items():
        m = re.fullmatch(r"base_model\.model\.(.+)\.lora_([AB])\.weight", key)
        if m:
            pairs.setdefault(m.group(1) + ".weight", {})[m.group(2)] = value
        else:
            assert "lora" not in key.lower(), key
            whole[key.removeprefix("base_model.model.")] = value
    state = model.state_dict()
    expected = dict(base)
    expected.update(whole)
    for key, ab in pairs.items():
        expected[key] = base[key] + (ab["B"] @ ab["A"]) * scaling
    assert set(expected) == set(state), sorted(set(expected) ^ set(state))
    differ = sorted(k for k in state if not torch.equal(state[k], expected[k]))
    changed = sorted(k for k in state if not torch.equal(state[k], base[k]))
    return {
        "lora_alpha": cfg.get("lora_alpha"),
        "r": cfg.get("r"),
        "scaling": scaling,
        "adapter_lora_pairs": len(pairs),
        "adapter_lora_pairs_naming_a_model_weight": sum(k in state for k in pairs),
        "adapter_full_tensors": len(whole),
        "adapter_full_tensors_naming_a_model_weight": sum(k in state for k in whole),
        "adapter_full_tensor_prefixes": sorted({".".join(k.split(".")[:2]) for k in whole}),
        "model_visual_tensors": sum(k.startswith("model.visual.") for k in state),
        "params_differing_from_expected": differ,
        "params_changed_from_base": len(changed),
        "weights_as_expected": not differ,
    }


class StubTokenizer:
    def __init__(self, text):
        self.text = text

    def decode(self, ids, **kwargs):
        return self.text


class StubProcessor:
    """Answers their processor calls so that their decode yields a scripted string."""

    def __init__(self, text):
        from transformers.feature_extraction_utils import BatchFeature

        self._batch = BatchFeature({"input_ids": torch.zeros((1, 1), dtype=torch.long)})
        self.text, self.tokenizer = text, StubTokenizer(text)

    def apply_chat_template(self, messages, tokenize=False, **kwargs):
        return {"input_ids": torch.zeros((1, 1), dtype=torch.long)} if tokenize else ""

    def __call__(self, **kwargs):
        return self._batch

    def batch_decode(self, ids, **kwargs):
        return [self.text]


class StubModel:
    def generate(self, **kwargs):
        return torch.zeros((1, 2), dtype=torch.long)


def parser_cases(S, frame: np.ndarray) -> list[dict]:
    saved = (S.vlm_model, S.vlm_processor)
    cases = []
    try:
        S.vlm_model = StubModel()
        for text in PARSER_CASES:
            S.vlm_processor = StubProcessor(text)
            with contextlib.redirect_stdout(io.StringIO()):
                progress = S.compute_vlm_reward(frame, TASK, "progress", initial_image=frame)
                completion = S.compute_vlm_completion(frame, TASK)
                comparison = S.compute_vlm_comparison(frame, frame, TASK)
            direct_progress = S.extract_progress_score(text)
            direct_comparison = S.extract_comparison_result(text)
            assert progress["score"] == direct_progress and progress["response"] == text
            assert comparison["result"] == direct_comparison and comparison["response"] == text
            cases.append(
                {
                    "text": text,
                    "extract_progress_score": direct_progress,
                    "extract_comparison_result": direct_comparison,
                    "comparison_score": comparison["score"],
                    "completion_score": completion["score"],
                    "completion_completed": completion["completed"],
                    "completion_response_after_strip": completion["response"],
                    "completion_reasoning": completion["reasoning"],
                }
            )
    finally:
        S.vlm_model, S.vlm_processor = saved
    return cases


def summarize_call(head: str, args: dict, result: dict, calls: list[dict], tok, model) -> dict:
    def only(kind):
        found = [c for c in calls if c["kind"] == kind]
        assert len(found) == 1, f"{head}: expected one {kind} call, got {len(found)}"
        return found[0]

    chat, gen = only("chat_template"), only("generate")
    if head == "completion":
        assert not [c for c in calls if c["kind"] == "processor"]
        outputs, images, proc_kwargs = chat["outputs"], None, None
    else:
        proc = only("processor")
        assert proc["text"] == chat["text"]
        outputs, images, proc_kwargs = proc["outputs"], proc["images"], proc["kwargs"]
    ids = outputs["input_ids"][0].tolist()
    seq = gen["sequences"][0]
    assert seq[: len(ids)].tolist() == ids
    generated = seq[len(ids) :].tolist()
    decoded = collapse(ids, tok, "<|image_pad|>")
    assert re.sub(r"<\|image_pad\|>\*\d+", "<|image_pad|>", decoded) == chat["text"], (
        "input_ids != rendered prompt"
    )
    pv = outputs["pixel_values"].float().contiguous()
    rec = {
        **args,
        "content_items": chat["content"],
        "chat_template_kwargs": chat["kwargs"],
        "prompt_text": chat["text"],
        "processor_images": images,
        "processor_kwargs": proc_kwargs,
        "input_keys": sorted(outputs),
        "input_ids": ids,
        "num_input_tokens": len(ids),
        "input_ids_decoded": decoded,
        "image_grid_thw": outputs["image_grid_thw"].tolist(),
        "pixel_values_shape": list(pv.shape),
        "pixel_values_dtype": str(outputs["pixel_values"].dtype),
        "pixel_values_sha256": sha256(pv.numpy().tobytes()),
        "pixel_values_first8": [float(x) for x in pv.flatten()[:8]],
        "generate_kwargs": gen["kwargs"],
        "generated_ids": generated,
        "num_generated": len(generated),
        "response": result["response"],
        "result": {k: v for k, v in result.items() if k != "response"},
        "score": result["score"],
    }
    first = generated[0] if generated else None
    if head == "progress":
        rec["expected_readout"] = forced_readout(
            model, outputs, tok, PROGRESS_PREFIX, PROGRESS_CANDIDATES, first
        )
    elif head == "completion":
        rec["expected_readout"] = forced_readout(
            model, outputs, tok, COMPLETION_PREFIX, COMPLETION_CANDIDATES, first
        )
    return rec


def run_head(
    S, head: str, adapter_dir: Path, base: Path, base_src: Path, frames: dict[int, np.ndarray]
) -> dict:
    import transformers

    loader = ForcedFromPretrained(  # patch 2 (device_map stays theirs)
        transformers.Qwen3VLForConditionalGeneration, torch_dtype=torch.float32, attn_implementation="sdpa"
    )
    log = io.StringIO()
    with loader, contextlib.redirect_stdout(Tee(sys.stdout, log)):
        S.load_vlm_model(str(adapter_dir), base_model_path=str(base), gpu_id=0)
    model, processor = S.vlm_model, S.vlm_processor
    assert model.dtype == torch.float32 and model.device.type == "cpu", (model.dtype, model.device)
    assert S.device == "cpu" and not S.robometer_head_mode and not S.vlm_adapter_names
    text = log.getvalue()

    def count(pattern):
        m = re.search(pattern, text)
        return int(m.group(1)) if m else None

    weights = weights_check(model, base_src, adapter_dir)
    assert weights["weights_as_expected"], weights["params_differing_from_expected"]
    ip = processor.image_processor
    load = {
        "their_from_pretrained_kwargs": loader.kwargs_seen,
        "attn_implementation": model.config._attn_implementation,
        "model_dtype": str(model.dtype),
        "their_log_lines": [  # machine-specific paths replaced by placeholders
            ln.replace(str(base), "<base copy>").replace(str(adapter_dir), "<adapter dir>")
            for ln in text.splitlines()
            if ln.strip()
        ],
        "their_merging_count": count(r"Merging (\d+) LoRA adapters"),
        "their_merged_count": count(r"Successfully merged (\d+) LoRA adapters"),
        "their_full_module_count": count(r"Loading (\d+) full module parameters"),
        "weights_check": weights,
        "processor": {
            "class": type(processor).__name__,
            "image_processor_class": type(ip).__name__,
            "size": dict(ip.size) if getattr(ip, "size", None) is not None else None,
            "min_pixels": getattr(ip, "min_pixels", None),
            "max_pixels": getattr(ip, "max_pixels", None),
            "patch_size": ip.patch_size,
            "merge_size": ip.merge_size,
            "resample": int(ip.resample),
            "image_mean": list(ip.image_mean),
            "image_std": list(ip.image_std),
            "tokenizer_class": type(processor.tokenizer).__name__,
        },
    }
    tok = processor.tokenizer
    probe = Probe()
    S.vlm_processor = ProcessorProxy(processor, probe)
    install_generate_probe(model, probe)
    records = []
    try:
        if head == "progress":
            jobs = [
                (
                    {"index": k, "initial_index": FRAME_INDICES[0]},
                    lambda k=k: S.compute_vlm_reward(frames[k], TASK, "progress", initial_image=frames[0]),
                )
                for k in FRAME_INDICES
            ]
        elif head == "completion":
            jobs = [
                ({"index": k}, lambda k=k: S.compute_vlm_completion(frames[k], TASK)) for k in FRAME_INDICES
            ]
        else:
            jobs = [
                (
                    {"index_a": a, "index_b": b},
                    lambda a=a, b=b: S.compute_vlm_comparison(frames[a], frames[b], TASK),
                )
                for a, b in zip(FRAME_INDICES[:-1], FRAME_INDICES[1:])
            ]
        for args, job in jobs:
            probe.take()
            with contextlib.redirect_stdout(io.StringIO()):
                result = job()
            records.append(summarize_call(head, args, result, probe.take(), tok, model))
            if head == "progress":
                assert S.extract_progress_score(result["response"]) == result["score"]
            elif head == "contrastive":
                assert S.extract_comparison_result(result["response"]) == result["result"]
    finally:
        S.vlm_processor = processor
        del model.generate
    for r in records:
        assert r["generate_kwargs"]["max_new_tokens"] == MAX_NEW_TOKENS[head], r["generate_kwargs"]
    return {
        "adapter_dir": f"LRM-models/{head}",
        "adapter_model_sha256": sha256((adapter_dir / "adapter_model.safetensors").read_bytes()),
        "load": load,
        "max_new_tokens": MAX_NEW_TOKENS[head],
        "scores": [r["score"] for r in records],
        "calls": records,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkout", type=Path, help="their repo checkout (a git worktree at 5845ab0)")
    ap.add_argument("tiny", type=Path, help="output folder of `topreward make-tiny-model --arch lrm`")
    ap.add_argument("out", type=Path)
    args = ap.parse_args()
    checkout = args.checkout.resolve()

    torch.set_num_threads(1)
    sys.path.insert(0, str(checkout / "vlm_reward"))
    import vlm_reward_server as S

    assert Path(S.__file__).resolve().is_relative_to(checkout), S.__file__

    all_frames, fps = decode_clip(CLIP)
    frames = {k: np.ascontiguousarray(all_frames[k]) for k in FRAME_INDICES}
    for f in frames.values():
        assert f.dtype == np.uint8 and f.ndim == 3 and f.shape[2] == 3

    base_src = args.tiny / BASE_NAME
    heads = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / BASE_NAME
        convert_model(base_src, base)
        for head in HEADS:
            heads[head] = run_head(S, head, args.tiny / "LRM-models" / head, base, base_src, frames)
    cases = parser_cases(S, frames[0])

    sha = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    files = ["vlm_reward/vlm_reward_server.py", "vlm_reward/requirements.txt"]
    record = {
        "env": {
            "their_commit": sha,
            "their_files_sha256": {f: sha256((checkout / f).read_bytes()) for f in files},
            "their_requirements_torch": ">=2.4.1,<2.6",
            "python": sys.version.split()[0],
            **{p: md.version(p) for p in VERSIONS},
            "device": "cpu",
            "dtype": "float32 (theirs: bfloat16)",
            "torch_threads": torch.get_num_threads(),
            "loading_path": "1a: load_vlm_model, one adapter merged by hand",
        },
        "base_model_sha256": sha256((base_src / "model.safetensors").read_bytes()),
        "adapter_model_sha256": {h: heads[h]["adapter_model_sha256"] for h in HEADS},
        "clip": clip_info(all_frames, fps),
        "clip_sha256": sha256(CLIP.read_bytes()),
        "task": TASK,
        "frame_indices": FRAME_INDICES,
        "frame_sha256": {str(k): sha256(frames[k].tobytes()) for k in FRAME_INDICES},
        "progress_prefix": PROGRESS_PREFIX,
        "progress_candidates": list(PROGRESS_CANDIDATES),
        "completion_prefix": COMPLETION_PREFIX,
        "completion_candidates": list(COMPLETION_CANDIDATES),
        "scores": {h: heads[h]["scores"] for h in HEADS},
        "heads": heads,
        "parser_cases": cases,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
