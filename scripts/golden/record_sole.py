"""Record golden SOLE-R1 values by running SOLE-R1's own inference code (roboreason's ``sole.py``).

Run with the peer venv's python, never with the project venv (``peer_common.py``, next to this script,
holds the helpers it shares with the other peer recorders and is imported from there)::

    python3 -m venv /tmp/peers/sole-venv
    /tmp/peers/sole-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 transformers==4.57.3 \
        tokenizers==0.22.2 accelerate==1.16.0 qwen-vl-utils==0.0.14 opencv-python-headless==5.1.0.95 \
        pillow==12.0.0 numpy==2.4.6 av==18.1.0 safetensors==0.8.0 huggingface_hub==0.36.2 \
        pyyaml==6.0.4 datasets==5.0.1 trl==1.16.0 imageio==2.38.2 tqdm==4.70.1
    /tmp/peers/sole-venv/bin/pip download roboreason==0.1.5.2 --no-deps -d /tmp/peers/rr-wheel
    unzip -o /tmp/peers/rr-wheel/roboreason-0.1.5.2-py3-none-any.whl -d /tmp/peers/roboreason
    .venv/bin/topreward make-tiny-model --arch qwen3_vl --seed 0 /tmp/peers/tiny_qwen3_vl_sole
    /tmp/peers/sole-venv/bin/python scripts/golden/record_sole.py /tmp/peers/roboreason \
        /tmp/peers/tiny_qwen3_vl_sole tests/golden/sole.json \
        --wheel /tmp/peers/rr-wheel/roboreason-0.1.5.2-py3-none-any.whl

Version: roboreason 0.1.5.2 from PyPI (wheel sha256 a22982464ff6850b9c60147043d4b3234cdfe032d147e112e08f1071772dacb6),
the newest published code. Their METADATA pins transformers 4.57.3 (used here), vllm 0.12.0 (replaced by a test
double, below) and torch 2.9.0 / torchvision 0.24.0 (not installable here: we run torch 2.14.1 / torchvision
0.29.1, CPU); qwen-vl-utils and trl are unpinned there and 0.0.14 / 1.16.0 are what resolve. ``sole.py``'s
module-level imports (pyyaml, accelerate, datasets, trl, imageio, cv2, qwen_vl_utils) are installed only so that the
module loads; trl's ``maybe_apply_chat_template`` and accelerate's ``gather_object`` do run (the first feeds an HF
processor call whose result their code never uses; the second returns its argument in a single process).
Only ``roboreason/sole.py`` (and, through its ``load_model``, ``roboreason/utils/model_utils.py``) is loaded, from
the unpacked wheel, under a bare ``roboreason`` package object: the real ``roboreason/__init__.py`` imports every
model.

Stubs and patches (none touches their math: composites, resizing, prompts, the previous-answer surgery, the parser
and the hold of the last valid value all run as published):
  1. ``vllm`` is a stub module: ``SamplingParams(**kw)`` keeps its keyword arguments; ``LLM`` is a test double whose
     ``generate(batch, sampling_params, use_tqdm)`` records each request ``{"prompt", "multi_modal_data":
     {"image": PIL}}`` and returns objects with ``.outputs[0].token_ids``. Their module globals are set so that
     their ``load_model`` loads nothing (it returns when ``llm`` is not None): ``processing_class`` and
     ``processor`` = ``AutoProcessor`` of the tiny copy (``processing_class`` stands in for
     Qwen/Qwen3-VL-8B-Instruct's, the chat-template source; the tiny template renders the same string as the
     Qwen3-VL-8B one for a system string + [image, text] user turn), ``sampling_params`` = their
     ``SamplingParams(temperature=1.0, top_p=0.9, top_k=50, max_tokens=200)``, ``llm`` = the double.
     ``trl`` is imported before the stub is installed: its import probes ``importlib.util.find_spec("vllm")``,
     which raises on a module object without a spec.
  2. The 5.x-saved tiny model is copied to a temp dir with two JSON edits that transformers 4.57.3 needs:
     tokenizer_config.json gets ``tokenizer_class: Qwen2TokenizerFast`` and loses 5.x's ``backend`` and its
     list-valued ``extra_special_tokens`` (4.57 expects a dict); config.json's text_config gets
     ``rope_scaling = {rope_type: default, mrope_section, mrope_interleaved}`` and ``rope_theta`` copied from
     5.x's ``rope_parameters``. Weights are byte copies; after loading, every tensor of model.safetensors is
     checked to equal the loaded parameter (``weights_loaded_exactly``).
  3. ``HF_HUB_OFFLINE=1``; ``model_path`` is the local copy, so their ``get_model_dir`` is not consulted.
  4. ``torch.set_num_threads(1)`` so that CPU reductions are bitwise repeatable.

Input: the clip is decoded with PyAV (rgb24, all 60 frames, 128 x 160) and 4 frames are picked with the rule of
their ``core.generate`` (num_reasoning_frames=4): ``np.linspace(0, len - 1, num=4, dtype=int)`` (checked to be the
text of their core.py). Their ``sole([frames], "put the pen into the cup", view_type_per_video=["external"],
model_path=<tiny copy>)`` then makes 3 requests (f0|f0|f1, f0|f1|f2, f0|f2|f3), one per step.

Runs of their ``sole()``:
  A. ``scripted``: the double returns, step by step, the token ids (tiny tokenizer, add_special_tokens=False) of
     "<think>a</think><answer>40%</answer>", "<think>b</think><answer>about 10</answer>",
     "<think>c</think><answer>250</answer>". This pins the previous answer fed back ("0", "40", "about 10"), the
     parser's "%" removal and clamp (250 -> "100") and the hold of the last valid value ("about 10" -> 40).
  B. ``greedy``: the double runs the tiny model in HF: ``processor(text=[prompt], images=[image],
     return_tensors="pt")`` with a third ``AutoProcessor`` of the tiny copy at its default settings (vLLM applies
     the checkpoint's HF processor to the request's image and prompt), then ``model.generate(**inputs,
     max_new_tokens=200, do_sample=False)`` and returns the new token ids (the eos token included when generated;
     their ``batch_decode(..., skip_special_tokens=True)`` drops it). Greedy replaces their temperature-1 sampling
     (top-p 0.9, top-k 50, unseeded), whose vLLM RNG cannot be reproduced; the model is float32 on CPU with sdpa.
     The processor needs nothing special: the prompt's one ``<|image_pad|>`` is expanded by it. transformers 4.57.3
     loads the tiny checkpoint's ``Qwen2VLImageProcessor`` as ``Qwen2VLImageProcessorFast`` (its new default;
     which one vLLM 0.12 would build is not checked here); with the tiny model's ``longest_edge`` 262144 pixels it
     shrinks the 392 x 1176 request image to 288 x 864 (grid 1 x 18 x 54, 243 image tokens; the 8B checkpoint's
     larger bound would keep 384 x 1184). The tiny random model writes junk without an ``<answer>`` tag, so every
     step parses to "" (fed back as "...previous timestep is %. ...") and the values are held at 0.

Recorded (``tests/golden/sole.json``): versions, file and weight hashes, the frame indices; their
``resize_with_padding`` of frame 0 and their ``create_composite_frame`` for "external" (f0, f0, f1) and "external
and wrist" (each frame ``np.concatenate((f, f[:, ::-1]), axis=1)``, split at half the width as their ``sole()``
splits it), with qwen-vl-utils' ``smart_resize(factor=28)`` + PIL resize that their ``sole_batch_decode`` applies
(shapes and sha256 of the uint8 bytes); their ``get_answer_from_completion`` on a list of strings; per run and step
the prompt string the double received, the image (mode, H x W x C, sha256 of the uint8 RGB bytes), the sampling
params, the completion token ids and their decoded text, and for the greedy run the processor outputs
(input_ids, image_grid_thw, pixel_values shape/sha256/first 8); and ``sole()``'s return values. Two single-threaded
runs give byte-identical JSON.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import sys
import tempfile
import types
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
from peer_common import (
    CLIP,
    clip_info,
    convert_model,
    decode_clip,
    generation_config_info,
    load_their_module,
    sha256,
    weights_loaded_exactly,
)
from PIL import Image

TASK = "put the pen into the cup"
NUM_REASONING_FRAMES = 4
MAX_NEW_TOKENS = 200  # their SamplingParams(max_tokens=200)
VIEW_TYPE = "external"
SCRIPTED = (
    "<think>a</think><answer>40%</answer>",
    "<think>b</think><answer>about 10</answer>",
    "<think>c</think><answer>250</answer>",
)
PARSER_CASES = (
    "<answer>40%</answer>",
    "<answer> 250 </answer>",
    "<answer>-300</answer>",
    "<answer>12.5</answer>",
    "<answer>7</answer",
    "no tag",
    "<answer>about 10</answer>",
)
LINSPACE_TEXT = "np.linspace(0, len(videos[video_idx])-1, num=num_reasoning_frames, dtype=int)"
VERSIONS = (
    "transformers",
    "tokenizers",
    "qwen-vl-utils",
    "torch",
    "torchvision",
    "pillow",
    "numpy",
    "av",
    "opencv-python-headless",
    "accelerate",
    "trl",
    "datasets",
    "huggingface_hub",
    "safetensors",
)


def array_info(a: np.ndarray) -> dict:
    a = np.ascontiguousarray(a)
    assert a.dtype == np.uint8, a.dtype
    return {"shape": list(a.shape), "sha256": sha256(a.tobytes())}


def image_info(img: Image.Image) -> dict:
    return {"mode": img.mode, **array_info(np.asarray(img))}


def install_vllm_stub() -> types.ModuleType:
    """Stub 1: a `vllm` module with `SamplingParams` (keeps its kwargs) and a placeholder `LLM`."""
    vllm = types.ModuleType("vllm")

    class SamplingParams:
        def __init__(self, **kwargs):
            self.kwargs = dict(kwargs)
            self.__dict__.update(kwargs)

    class LLM:  # their load_model would construct it; it never runs here (llm is set beforehand)
        def __init__(self, *args, **kwargs):
            raise AssertionError(f"vllm.LLM constructed: {args} {kwargs}")

    vllm.SamplingParams, vllm.LLM = SamplingParams, LLM
    sys.modules["vllm"] = vllm
    return vllm


class DoubleLLM:
    """The test double for vllm.LLM: records every request and answers with `respond(prompt, image)`."""

    def __init__(self, respond):
        self.respond = respond
        self.requests: list[dict] = []

    def generate(self, batch, sampling_params=None, use_tqdm=True):
        outputs = []
        for request in batch:
            assert sorted(request) == ["multi_modal_data", "prompt"], sorted(request)
            assert sorted(request["multi_modal_data"]) == ["image"]
            prompt, image = request["prompt"], request["multi_modal_data"]["image"]
            assert isinstance(image, Image.Image), type(image)
            token_ids, extra = self.respond(prompt, image)
            self.requests.append(
                {
                    "batch_size": len(batch),
                    "use_tqdm": use_tqdm,
                    "sampling_params": dict(sampling_params.kwargs),
                    "prompt": prompt,
                    "image": image_info(image),
                    **extra,
                    "token_ids": list(token_ids),
                }
            )
            completion = types.SimpleNamespace(token_ids=list(token_ids))
            outputs.append(types.SimpleNamespace(outputs=[completion]))
        return outputs


def run_sole(sole, llm: DoubleLLM, frames: list[np.ndarray], model_path: Path, tok) -> dict:
    sole.llm = llm
    rewards, traces = sole.sole([frames], TASK, view_type_per_video=[VIEW_TYPE], model_path=str(model_path))
    assert sole.llm is llm  # their load_model kept the double
    steps = llm.requests
    assert len(steps) == len(frames) - 1 and all(s["batch_size"] == 1 for s in steps)
    for step, text in zip(steps, traces[0][1:]):
        step["text"] = text
        step["text_reference_decode"] = tok.decode(step["token_ids"], skip_special_tokens=True)
        step["parsed"] = sole.get_answer_from_completion(text)
    return {
        "steps": steps,
        "valid_answer_list_list": rewards,
        "text_output_list_list": traces,
    }


def composites(sole, picked: list[np.ndarray]) -> dict:
    from qwen_vl_utils import smart_resize

    f0, f1 = picked[0], picked[1]

    def model_image(comp: np.ndarray) -> dict:
        image = Image.fromarray(comp.astype("uint8"))  # their load_image
        h, w = smart_resize(
            image.height, image.width, factor=28, min_pixels=sole.min_pixels, max_pixels=sole.max_pixels
        )
        return image_info(image.resize((w, h)))

    out = {"resize_with_padding_frame0": array_info(sole.resize_with_padding(f0))}
    ext = sole.create_composite_frame(None, f0, None, f0, None, f1, from_zero=False, view_type="external")
    out["external"] = {"frames": "f0, f0, f1", "composite": array_info(ext), "model_image": model_image(ext)}
    sbs = [np.concatenate((f, f[:, ::-1]), axis=1) for f in (f0, f0, f1)]
    halves = [(f[:, : f.shape[1] // 2, :], f[:, f.shape[1] // 2 :, :]) for f in sbs]  # as their sole() splits
    (e0, w0), (ep, wp), (ec, wc) = halves
    both = sole.create_composite_frame(
        w0, e0, wp, ep, wc, ec, from_zero=False, view_type="external and wrist"
    )
    out["external and wrist"] = {
        "frames": "f0, f0, f1, each np.concatenate((f, f[:, ::-1]), axis=1)",
        "side_by_side_frame0": array_info(sbs[0]),
        "composite": array_info(both),
        "model_image": model_image(both),
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "roboreason", type=Path, help="the unpacked roboreason 0.1.5.2 wheel (contains roboreason/)"
    )
    ap.add_argument("model_dir", type=Path, help="tiny Qwen3-VL from `topreward make-tiny-model`")
    ap.add_argument("out", type=Path)
    ap.add_argument("--wheel", type=Path, help="the wheel file itself, to record its sha256")
    args = ap.parse_args()
    root = args.roboreason.resolve()

    torch.set_num_threads(1)
    import transformers
    import trl.data_utils  # noqa: F401  before the stub: trl's import-time find_spec("vllm") fails on a stub
    from transformers import AutoProcessor, Qwen3VLForConditionalGeneration

    vllm = install_vllm_stub()
    sole = load_their_module(root, "sole")
    assert sole.LLM is vllm.LLM and sole.SamplingParams is vllm.SamplingParams
    core_text = (root / "roboreason/core.py").read_text()
    assert LINSPACE_TEXT in core_text, "core.generate's frame rule changed"

    frames, fps = decode_clip(CLIP)
    idx = np.linspace(0, len(frames) - 1, num=NUM_REASONING_FRAMES, dtype=int)  # core.generate, 4 < 60
    picked = [frames[i] for i in idx]

    with tempfile.TemporaryDirectory() as tmp:
        model_path = Path(tmp) / "model"
        convert_model(args.model_dir, model_path)
        sole.processing_class = AutoProcessor.from_pretrained(str(model_path))
        sole.processor = AutoProcessor.from_pretrained(str(model_path))
        sole.sampling_params = sole.SamplingParams(
            temperature=sole.temperature_, top_p=0.9, top_k=50, max_tokens=MAX_NEW_TOKENS
        )  # as their load_model
        vllm_processor = AutoProcessor.from_pretrained(str(model_path))  # what the double's "vLLM" applies
        model, info = Qwen3VLForConditionalGeneration.from_pretrained(
            str(model_path), dtype=torch.float32, attn_implementation="sdpa", output_loading_info=True
        )
        bad = {k: v for k, v in info.items() if v}
        assert not bad, f"loading info not clean: {bad}"
        model.eval()
        tok = sole.processor.tokenizer

        weights_exact = weights_loaded_exactly(model, args.model_dir / "model.safetensors")
        assert weights_exact, "loaded parameters differ from model.safetensors"

        # run A: scripted completions
        script = iter(SCRIPTED)

        def scripted(prompt, image):
            text = next(script)
            ids = tok(text, add_special_tokens=False)["input_ids"]
            return ids, {"scripted_completion": text}

        run_a = run_sole(sole, DoubleLLM(scripted), picked, model_path, tok)
        assert next(script, None) is None
        assert [s["text"] for s in run_a["steps"]] == list(SCRIPTED)

        # run B: the tiny model, greedy, on the processor's default resizing
        def greedy(prompt, image):
            inputs = vllm_processor(text=[prompt], images=[image], return_tensors="pt")
            with torch.no_grad():
                seq = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
            ids = inputs["input_ids"][0].tolist()
            assert seq[0, : len(ids)].tolist() == ids
            pv = inputs["pixel_values"].float().contiguous()
            return seq[0, len(ids) :].tolist(), {
                "input_ids": ids,
                "num_input_tokens": len(ids),
                "num_image_tokens": ids.count(model.config.image_token_id),
                "image_grid_thw": inputs["image_grid_thw"][0].tolist(),
                "pixel_values_shape": list(pv.shape),
                "pixel_values_sha256": sha256(pv.numpy().tobytes()),
                "pixel_values_first8": [float(x) for x in pv.flatten()[:8]],
            }

        run_b = run_sole(sole, DoubleLLM(greedy), picked, model_path, tok)
        for s in run_b["steps"]:
            s["num_generated"] = len(s["token_ids"])
        for a, b in zip(run_a["steps"], run_b["steps"][:1]):
            assert (
                a["prompt"] == b["prompt"] and a["image"] == b["image"]
            )  # step 0 does not depend on answers

        image_processor = vllm_processor.image_processor
        files = ["roboreason/sole.py", "roboreason/core.py", "roboreason/utils/model_utils.py"]
        record = {
            "env": {
                "roboreason": md.Distribution.at(next(root.glob("roboreason-*.dist-info"))).version,
                "roboreason_wheel_sha256": sha256(args.wheel.read_bytes()) if args.wheel else None,
                "their_files_sha256": {f: sha256((root / f).read_bytes()) for f in files},
                "python": sys.version.split()[0],
                **{p: md.version(p) for p in VERSIONS},
                "transformers_module": transformers.__version__,
                "their_metadata_torch": "2.9.0",
                "their_metadata_vllm": "0.12.0 (stubbed: test double)",
                "device": "cpu",
                "attn_implementation": model.config._attn_implementation,
                "torch_threads": torch.get_num_threads(),
                "model_dtype": str(model.dtype),
                "weights_loaded_exactly": weights_exact,
                "image_processor_class": type(image_processor).__name__,
                "image_processor_size": dict(image_processor.size),
                "image_processor_patch_merge": [image_processor.patch_size, image_processor.merge_size],
                "generation_config": generation_config_info(model),
            },
            "model_sha256": sha256((args.model_dir / "model.safetensors").read_bytes()),
            "clip": clip_info(frames, fps),
            "task": TASK,
            "view_type": VIEW_TYPE,
            "num_reasoning_frames": NUM_REASONING_FRAMES,
            "frame_indices": idx.tolist(),
            "frames": [array_info(f) for f in picked],
            "their_constants": {
                "min_pixels": sole.min_pixels,
                "max_pixels": sole.max_pixels,
                "system_prompt": sole.system_prompt_template,
                "question_external": sole.user_question_template_external_view,
                "question_external_and_wrist": sole.user_question_template,
                "question_wrist": sole.user_question_template_wrist_view,
            },
            "composites": composites(sole, picked),
            "parser": [{"text": t, "answer": sole.get_answer_from_completion(t)} for t in PARSER_CASES],
            "scripted": run_a,
            "greedy": run_b,
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
