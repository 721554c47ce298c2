"""Record golden RoboReward values by running RoboReward's own inference code (roboreason's ``roboreward.py``).

Run with the peer venv's python, never with the project venv (``peer_common.py``, next to this script,
holds the helpers it shares with the other peer recorders and is imported from there)::

    python3 -m venv /tmp/peers/rr-venv
    /tmp/peers/rr-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 transformers==4.57.3 \
        tokenizers==0.22.2 accelerate==1.16.0 qwen-vl-utils==0.0.14 opencv-python-headless==5.1.0.95 \
        pillow==12.0.0 numpy==2.4.6 av==18.1.0 safetensors==0.8.0 huggingface_hub==0.36.2
    /tmp/peers/rr-venv/bin/pip download roboreason==0.1.5.2 --no-deps -d /tmp/peers/rr-wheel
    unzip -o /tmp/peers/rr-wheel/roboreason-0.1.5.2-py3-none-any.whl -d /tmp/peers/roboreason
    .venv/bin/topreward make-tiny-model --arch qwen3_vl --seed 0 /tmp/peers/tiny_qwen3_vl_rr
    /tmp/peers/rr-venv/bin/python scripts/golden/record_roboreward.py /tmp/peers/roboreason \
        /tmp/peers/tiny_qwen3_vl_rr tests/golden/roboreward.json \
        --wheel /tmp/peers/rr-wheel/roboreason-0.1.5.2-py3-none-any.whl

Version: roboreason 0.1.5.2 from PyPI (wheel sha256 a22982464ff6850b9c60147043d4b3234cdfe032d147e112e08f1071772dacb6),
the newest published code; its ``roboreward.py`` equals GitHub philipmit/roboreason 8385e70 but for the default
``verbose``. Their METADATA pins transformers 4.57.3 (used here) and torch 2.9.0 / torchvision 0.24.0 (not
installable here: we run torch 2.14.1 / torchvision 0.29.1, CPU); qwen-vl-utils is unpinned there and 0.0.14, the
newest, is what resolves. Only the modules ``roboreason/roboreward.py`` and ``roboreason/utils/model_utils.py`` are
loaded, from the unpacked wheel, under a bare ``roboreason`` package object: the real ``roboreason/__init__.py``
imports every model (vllm, trl, matplotlib, ...), none of which RoboReward uses.

What is called (theirs, unchanged): ``RoboRewardModel(model_name=<tiny copy>, max_new_tokens=128)`` and
``roboreward(frames, "put the pen into the cup", verbose=False, model=<it>)``, which calls
``score_frames(frames[:k], task)`` for k = 1..10 (their colour conversion, one-frame duplication, JPEG q85 files,
``qwen_vl_utils.process_vision_info(..., image_patch_size=16, ...)``, processor call with ``do_resize=False``,
greedy ``generate``, ``batch_decode``, ``_parse_score``) and returns the progress in percent.
Frames: the clip is decoded with PyAV (rgb24, all 60 frames) and 10 are picked with the rule of their
``core.generate`` (num_reasoning_frames=10): ``np.linspace(0, len - 1, num=10, dtype=int)`` (checked to be the
text of their core.py). Their ``core.load_video_frames`` would decode with OpenCV; PyAV is used so that the
decoder is the one our test uses. The frames handed over are RGB, so their ``cv2.COLOR_BGR2RGB`` swaps red and
blue, as it does in their pipeline (our ``swap_red_blue=True``).

Patches (none touches their math):
  1. The 5.x-saved tiny model is copied to a temp dir with two JSON edits that transformers 4.57.3 needs:
     tokenizer_config.json gets ``tokenizer_class: Qwen2TokenizerFast`` and loses 5.x's ``backend`` and its
     list-valued ``extra_special_tokens`` (4.57 expects a dict); config.json's text_config gets
     ``rope_scaling = {rope_type: default, mrope_section, mrope_interleaved}`` and ``rope_theta`` copied from
     5.x's ``rope_parameters``. Weights are byte copies; after loading, every tensor of model.safetensors is
     checked to equal the loaded parameter (``weights_loaded_exactly``).
  2. Their ``Qwen3VLForConditionalGeneration.from_pretrained(name, torch_dtype=torch.bfloat16, device_map="auto")``
     is answered with ``torch_dtype=torch.float32, device_map=None`` (CPU) and ``attn_implementation="sdpa"``
     (transformers' default on CPU) while their ``__init__`` runs; the class is restored afterwards.
  3. ``HF_HUB_OFFLINE=1``; the model path is local, so their ``get_model_dir`` is not consulted.
  4. ``torch.set_num_threads(1)`` so that CPU reductions are bitwise repeatable.
Read-only probes (record, then return the original result unchanged): qwen_vl_utils' ``fetch_image`` (the JPEG
bytes it opens, the frame it returns) and ``process_vision_info`` (the video tensor, metadata, kwargs), their
processor's ``__call__`` (text, input_ids, grid, pixel values), their model's ``generate`` (token ids) and their
``score_frames`` (score, text).

Second readout (ours, for ``readout="expected"``): after each ``score_frames`` call, one extra forward of their
model on their processor outputs with the tokens of "ANSWER: " (their tokenizer, add_special_tokens=False)
appended to input_ids (attention_mask extended with ones); the log-softmax over the whole vocabulary at the last
position is recorded for the token ids of "1".."5". This forward happens after their call returned and changes
nothing they compute.

Recorded (``tests/golden/roboreward.json``): versions, file and weight hashes, the 10 frame indices, and per prefix
the JPEG and per-frame hashes, the uint8 video qwen-vl-utils hands over (sha256 of T x H x W x C bytes), the
rendered prompt, input_ids, video_grid_thw, pixel_values_videos (sha256 of the float32 bytes, shape, first 8
values), the greedy token ids and text, their parsed score, and the digit log-probs after "ANSWER: ". The tiny
random model writes junk with no ``ANSWER:`` and no standalone 1-5, so every prefix parses to their failure value
1.0; the token ids and text are what pin the generate path. Two single-threaded runs give byte-identical JSON.
"""

from __future__ import annotations

import argparse
import copy
import importlib.metadata as md
import io
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

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
    generation_config_info,
    install_generate_probe,
    load_their_module,
    sha256,
    weights_loaded_exactly,
)
from PIL import Image

TASK = "put the pen into the cup"
NUM_REASONING_FRAMES = 10  # core.generate's default
MAX_NEW_TOKENS = 128  # RoboRewardModel's default
ANSWER_CUE = "ANSWER: "
DIGITS = ("1", "2", "3", "4", "5")
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
    "huggingface_hub",
    "safetensors",
)


def as_uint8(video: torch.Tensor) -> np.ndarray:
    """qwen-vl-utils' float video (T, C, H, W), integer-valued, as uint8 (T, H, W, C)."""
    assert video.dtype == torch.float32, video.dtype
    assert bool((video == video.round()).all()) and float(video.min()) >= 0 and float(video.max()) <= 255
    return video.to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


class ProcessorProxy:
    def __init__(self, processor, probe: Probe):
        self._p, self._probe = processor, probe

    def __getattr__(self, name):
        return getattr(self._p, name)

    def __call__(self, *args, **kwargs):
        metadata = copy.deepcopy(kwargs.get("video_metadata"))  # the processor may pad it in place
        given = {k: v for k, v in kwargs.items() if k not in ("text", "images", "videos", "video_metadata")}
        out = self._p(*args, **kwargs)
        self._probe.add(
            kind="processor",
            text=kwargs["text"][0],
            images=kwargs.get("images"),
            video=kwargs["videos"][0],
            video_metadata=metadata,
            kwargs=given,
            out={k: v.clone() for k, v in out.items()},
        )
        return out


def install_probes(their_model, probe: Probe) -> None:
    import qwen_vl_utils
    import qwen_vl_utils.vision_process as qvu

    their_model._processor = ProcessorProxy(their_model._processor, probe)

    orig_fetch_image = qvu.fetch_image

    def fetch_image(ele, *args, **kwargs):  # runs in their ThreadPoolExecutor; list.append is atomic
        path = ele["image"]
        data = Path(path.removeprefix("file://")).read_bytes()
        img = orig_fetch_image(ele, *args, **kwargs)
        with Image.open(io.BytesIO(data)) as src:
            src_size = [src.height, src.width]
        probe.add(
            kind="fetch_image",
            index=int(Path(path).stem.rsplit("_", 1)[1]),
            args=list(args),
            ele_keys=sorted(ele),
            jpeg_sha256=sha256(data),
            jpeg_bytes=len(data),
            jpeg_hw=src_size,
            out_hw=[img.height, img.width],
            out_sha256=sha256(np.ascontiguousarray(np.asarray(img)).tobytes()),
        )
        return img

    qvu.fetch_image = fetch_image

    # their score_frames runs `from qwen_vl_utils import process_vision_info` at call time: patch the package
    orig_pvi = qwen_vl_utils.process_vision_info

    def process_vision_info(*args, **kwargs):
        out = orig_pvi(*args, **kwargs)
        _, video_inputs, video_kwargs = out
        video, metadata = video_inputs[0]
        probe.add(
            kind="process_vision_info",
            kwargs=dict(kwargs),
            element={k: v for k, v in args[0][0][0]["content"][0].items() if k != "video"},
            video=video.clone(),
            metadata=copy.deepcopy(metadata),
            video_kwargs=copy.deepcopy(video_kwargs),
        )
        return out

    qwen_vl_utils.process_vision_info = process_vision_info

    install_generate_probe(their_model._model, probe)


def cue_readout(model, inputs: dict, cue_ids: list[int], digit_ids: list[int], gen_first: int | None) -> dict:
    """One forward of their model on their inputs + the 'ANSWER: ' tokens; log-softmax at the last position."""
    ids = inputs["input_ids"]
    cue = torch.tensor([cue_ids], dtype=ids.dtype)
    extended = dict(inputs)
    extended["input_ids"] = torch.cat([ids, cue], dim=1)
    extended["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones_like(cue)], dim=1)
    with torch.no_grad():
        logits = model(**extended).logits[0].float()
    n = ids.shape[1]
    last = torch.log_softmax(logits[-1], dim=-1)
    at_prompt_end = logits[n - 1]
    return {
        "cue_token_ids": cue_ids,
        "digit_token_ids": digit_ids,
        "digit_log_probs": [float(last[i]) for i in digit_ids],
        "argmax_token_id": int(last.argmax()),
        "prompt_end_argmax_token_id": int(at_prompt_end.argmax()),
        "prompt_end_argmax_matches_first_generated": int(at_prompt_end.argmax()) == gen_first,
    }


def summarize_prefix(
    k: int, source_indices: list[int], calls: list[dict], score: float, text: str, tok, readout: dict, parse
) -> dict:
    def only(kind):
        found = [c for c in calls if c["kind"] == kind]
        assert len(found) == 1, f"prefix {k}: expected one {kind} call, got {len(found)}"
        return found[0]

    proc, pvi, gen = only("processor"), only("process_vision_info"), only("generate")
    fetched = sorted((c for c in calls if c["kind"] == "fetch_image"), key=lambda c: c["index"])
    out = proc["out"]
    ids = out["input_ids"][0].tolist()
    generated = gen["sequences"][0, len(ids) :].tolist()
    assert gen["sequences"][0, : len(ids)].tolist() == ids
    pv = out["pixel_values_videos"].float().contiguous()
    video_u8 = as_uint8(pvi["video"])
    assert torch.equal(proc["video"], pvi["video"]), (
        "processor got a different video than process_vision_info made"
    )
    assert parse(text) == score
    return {
        "prefix_len": k,
        "source_frame_indices": source_indices[:k],
        "frames_written_as_jpeg": len(fetched),
        "jpeg": [{"sha256": c["jpeg_sha256"], "bytes": c["jpeg_bytes"], "hw": c["jpeg_hw"]} for c in fetched],
        "fetch_image_patch_size_arg": fetched[0]["args"],
        "fetch_image_element_keys": fetched[0]["ele_keys"],
        "fetch_image_hw": sorted({tuple(c["out_hw"]) for c in fetched}),
        "fetch_image_sha256": [c["out_sha256"] for c in fetched],
        "process_vision_info_kwargs": pvi["kwargs"],
        "video_element": pvi["element"],
        "video_shape_tchw": list(pvi["video"].shape),
        "video_dtype": str(pvi["video"].dtype),
        "video_hw": [int(pvi["video"].shape[-2]), int(pvi["video"].shape[-1])],
        "video_uint8_thwc_sha256": sha256(video_u8.tobytes()),
        "video_min_max": [int(video_u8.min()), int(video_u8.max())],
        "video_metadata": proc["video_metadata"][0],
        "video_kwargs": pvi["video_kwargs"],
        "processor_kwargs": proc["kwargs"],
        "processor_images": proc["images"],
        "prompt_text": proc["text"],
        "input_ids": ids,
        "num_input_tokens": len(ids),
        "input_ids_decoded": collapse(ids, tok, "<|video_pad|>"),
        "video_grid_thw": out["video_grid_thw"][0].tolist(),
        "pixel_values_videos_shape": list(pv.shape),
        "pixel_values_videos_dtype": str(out["pixel_values_videos"].dtype),
        "pixel_values_videos_sha256": sha256(pv.numpy().tobytes()),
        "pixel_values_videos_first8": [float(x) for x in pv.flatten()[:8]],
        "generate_kwargs": gen["kwargs"],
        "generated_ids": generated,
        "num_generated": len(generated),
        "text": text,
        "score": score,
        "cue_readout": readout,
    }


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

    rr = load_their_module(root, "roboreward")
    core_text = (root / "roboreason/core.py").read_text()
    assert LINSPACE_TEXT in core_text, "core.generate's frame rule changed"

    frames, fps = decode_clip(CLIP)
    idx = np.linspace(0, len(frames) - 1, num=NUM_REASONING_FRAMES, dtype=int)  # core.generate, 10 < 60
    picked = [frames[i] for i in idx]

    loader = ForcedFromPretrained(  # patch 2
        transformers.Qwen3VLForConditionalGeneration,
        torch_dtype=torch.float32,
        device_map=None,
        attn_implementation="sdpa",
    )
    with tempfile.TemporaryDirectory() as tmp:
        model_path = Path(tmp) / "model"
        convert_model(args.model_dir, model_path)
        with loader:
            their = rr.RoboRewardModel(model_name=str(model_path), max_new_tokens=MAX_NEW_TOKENS)
    model = their._model
    assert model.dtype == torch.float32 and model.device.type == "cpu", (model.dtype, model.device)
    weights_exact = weights_loaded_exactly(model, args.model_dir / "model.safetensors")
    assert weights_exact, "loaded parameters differ from model.safetensors"

    tok = their._processor.tokenizer
    cue_ids = tok(ANSWER_CUE, add_special_tokens=False)["input_ids"]
    digit_ids = []
    for d in DIGITS:
        enc = tok(d, add_special_tokens=False)["input_ids"]
        assert len(enc) == 1, (d, enc)
        digit_ids.append(enc[0])
    assert tok(ANSWER_CUE + "3", add_special_tokens=False)["input_ids"] == cue_ids + [digit_ids[2]]

    probe = Probe()
    install_probes(their, probe)
    prefixes: list[dict] = []
    orig_score_frames = their.score_frames

    def score_frames(frames_k, instruction):
        probe.take()
        score, text = orig_score_frames(frames_k, instruction)
        calls = probe.take()
        proc = [c for c in calls if c["kind"] == "processor"][0]
        gen = [c for c in calls if c["kind"] == "generate"][0]
        n = proc["out"]["input_ids"].shape[1]
        first = int(gen["sequences"][0, n]) if gen["sequences"].shape[1] > n else None
        readout = cue_readout(model, dict(proc["out"]), cue_ids, digit_ids, first)
        prefixes.append(
            summarize_prefix(len(frames_k), idx.tolist(), calls, score, text, tok, readout, rr._parse_score)
        )
        return score, text

    their.score_frames = score_frames
    progress = rr.roboreward(picked, TASK, verbose=False, model=their)
    del their.score_frames
    assert [p["prefix_len"] for p in prefixes] == list(range(1, len(picked) + 1))
    assert progress == [(p["score"] - 1) * 0.25 * 100 for p in prefixes]

    files = ["roboreason/roboreward.py", "roboreason/core.py", "roboreason/utils/model_utils.py"]
    record = {
        "env": {
            "roboreason": md.Distribution.at(next(root.glob("roboreason-*.dist-info"))).version,
            "roboreason_wheel_sha256": sha256(args.wheel.read_bytes()) if args.wheel else None,
            "their_files_sha256": {f: sha256((root / f).read_bytes()) for f in files},
            "python": sys.version.split()[0],
            **{p: md.version(p) for p in VERSIONS},
            "their_metadata_torch": "2.9.0",
            "device": "cpu",
            "attn_implementation": model.config._attn_implementation,
            "torch_threads": torch.get_num_threads(),
            "model_dtype": str(model.dtype),
            "their_from_pretrained_kwargs": loader.kwargs_seen,
            "weights_loaded_exactly": weights_exact,
            "generation_config": generation_config_info(model),
        },
        "model_sha256": sha256((args.model_dir / "model.safetensors").read_bytes()),
        "clip": clip_info(frames, fps),
        "clip_sha256": sha256(CLIP.read_bytes()),
        "task": TASK,
        "num_reasoning_frames": NUM_REASONING_FRAMES,
        "frame_indices": idx.tolist(),
        "their_frame_hw": {
            "clip": list(frames[0].shape[:2]),
            "after_fetch_image": sorted({tuple(hw) for p in prefixes for hw in p["fetch_image_hw"]}),
            "video": sorted({tuple(p["video_hw"]) for p in prefixes}),
        },
        "frames_given_are": "RGB (their cv2.COLOR_BGR2RGB then swaps red and blue: swap_red_blue=True)",
        "max_new_tokens": MAX_NEW_TOKENS,
        "answer_cue": ANSWER_CUE,
        "cue_token_ids": cue_ids,
        "digit_token_ids": dict(zip(DIGITS, digit_ids)),
        "scores": [p["score"] for p in prefixes],
        "progress_percent": progress,
        "digit_log_probs": [p["cue_readout"]["digit_log_probs"] for p in prefixes],
        "prefixes": prefixes,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
