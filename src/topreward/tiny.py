"""Tiny random-weight video VLMs with a locally built tokenizer, for offline tests and demos.

The models are the real transformers classes (`Qwen3VLForConditionalGeneration`,
`Qwen2_5_VLForConditionalGeneration`, and, outside the default test matrix, `Qwen3_5ForConditionalGeneration`
and `Molmo2ForConditionalGeneration`) built from small configs; the tokenizer is a byte-level BPE trained
here on a small corpus so that it has the model's special tokens and a single-token `" True"`/`" False"`.
Everything is written with `save_pretrained`, so it loads through the same `from_pretrained` path a
Hub model id takes. Weights use a large `initializer_range` so log-probs are far from uniform and an
equality test between two computation paths can actually fail.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from topreward.prompts import ROBOMETER_TOKENS, TOPREWARD_TEMPLATE

Arch = Literal["qwen3_vl", "qwen2_5_vl", "qwen3_5", "molmo2", "robometer", "lrm"]
#: the architectures every parametrised test runs on
ARCHS: tuple[str, ...] = ("qwen3_vl", "qwen2_5_vl")
#: further architectures with focused tests of their own (`tests/test_more_families.py`)
EXTRA_ARCHS: tuple[str, ...] = ("qwen3_5", "molmo2")
#: tiny instances of released reward models, each in its release's own folder layout
RELEASED_ARCHS: tuple[str, ...] = ("robometer", "lrm")
ALL_ARCHS: tuple[str, ...] = ARCHS + EXTRA_ARCHS + RELEASED_ARCHS

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
# Molmo2's image and frame markers (its processor expands `<|video|>` into them).
MOLMO2_TOKENS = [
    "<|image|>",
    "<|video|>",
    "<im_patch>",
    "<im_col>",
    "<im_start>",
    "<low_res_im_start>",
    "<frame_start>",
    "<im_end>",
    "<frame_end>",
    "<im_low>",
]

# A Qwen-style chat template (user turns with text, image and video parts): the `chat` style and image prompts.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen3-VL's own chat template numbers images and videos ("Picture 1: ", "Video 1: ") when rendered with
# `add_vision_id=True`, as Robometer's collator does; rendered without it, it equals `CHAT_TEMPLATE`.
VISION_ID_CHAT_TEMPLATE = (
    "{% set images = namespace(n=0) %}{% set videos = namespace(n=0) %}"
    + CHAT_TEMPLATE.replace(
        "{% if part['type'] == 'video' %}",
        "{% if part['type'] == 'video' %}{% set videos.n = videos.n + 1 %}"
        "{% if add_vision_id %}Video {{ videos.n }}: {% endif %}",
    ).replace(
        "{% elif part['type'] == 'image' %}",
        "{% elif part['type'] == 'image' %}{% set images.n = images.n + 1 %}"
        "{% if add_vision_id %}Picture {{ images.n }}: {% endif %}",
    )
)

# Molmo2 marks an image or a video in a user turn with one `<|image|>` / `<|video|>` token.
MOLMO2_CHAT_TEMPLATE = CHAT_TEMPLATE.replace(
    "<|vision_start|><|video_pad|><|vision_end|>", "<|video|>"
).replace("<|vision_start|><|image_pad|><|vision_end|>", "<|image|>")

_CORPUS_TASKS = [
    "put the pen into the cup",
    "pick up the red cube and place it in the box",
    "open the drawer",
    "fold the towel",
    "stack the blocks",
    "push the button",
    "move the block to the goal",
]


def _corpus() -> list[str]:
    lines = [TOPREWARD_TEMPLATE.format(instruction=t) + " True" for t in _CORPUS_TASKS]
    lines += [TOPREWARD_TEMPLATE.format(instruction=t) + " False" for t in _CORPUS_TASKS]
    lines += [f"<{s / 10:.1f} seconds>" for s in range(0, 1000, 7)]
    lines += ["The answer is: True", "The answer is: False", "True False yes no", "0123456789 seconds"]
    return lines * 4


def build_tokenizer(vocab_size: int = 600, arch: Arch = "qwen3_vl"):
    """Train a small byte-level BPE tokenizer with the model's special tokens; returns a transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS + (MOLMO2_TOKENS if arch == "molmo2" else []),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    if arch == "molmo2":
        return PreTrainedTokenizerFast(
            tokenizer_object=tok,
            bos_token="<|endoftext|>",
            eos_token="<|im_end|>",
            pad_token="<|endoftext|>",
            chat_template=MOLMO2_CHAT_TEMPLATE,
            extra_special_tokens={"image_token": "<|image|>", "video_token": "<|video|>"},
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
        extra_special_tokens={
            "image_token": "<|image_pad|>",
            "video_token": "<|video_pad|>",
            "vision_start_token": "<|vision_start|>",
            "vision_end_token": "<|vision_end|>",
        },
    )


def _text_kwargs(tokenizer, hidden: int, layers: int, heads: int, kv_heads: int, head_dim: int) -> dict:
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "max_position_embeddings": 4096,
        "initializer_range": 0.2,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"),
    }


def _special_ids(tokenizer) -> dict:
    ids = tokenizer.convert_tokens_to_ids
    return {
        "image_token_id": ids("<|image_pad|>"),
        "video_token_id": ids("<|video_pad|>"),
        "vision_start_token_id": ids("<|vision_start|>"),
        "vision_end_token_id": ids("<|vision_end|>"),
    }


def qwen3_vl_config(
    tokenizer,
    *,
    hidden: int = 64,
    layers: int = 3,
    head_dim: int = 16,
    vision_hidden: int = 32,
    vision_depth: int = 3,
    init: float = 0.2,
):
    """A small Qwen3-VL config (the test models' defaults; `scripts/train_demo_model.py` sizes it up)."""
    from transformers import Qwen3VLConfig

    text = _text_kwargs(tokenizer, hidden=hidden, layers=layers, heads=4, kv_heads=2, head_dim=head_dim)
    text["initializer_range"] = init
    text["rope_parameters"] = {  # M-RoPE sections (time, height, width) over half the rotary dims
        "rope_type": "default",
        "rope_theta": 5_000_000.0,
        "mrope_section": [head_dim // 4, head_dim // 8, head_dim // 8],
        "mrope_interleaved": True,
    }
    vision = {
        "depth": vision_depth,
        "hidden_size": vision_hidden,
        "intermediate_size": 2 * vision_hidden,
        "num_heads": 2 if vision_hidden <= 32 else 4,
        "patch_size": 16,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "out_hidden_size": hidden,
        "num_position_embeddings": 64,
        "deepstack_visual_indexes": [0, 1] if vision_depth <= 3 else [1, 2],
        "initializer_range": init,
    }
    return Qwen3VLConfig(text_config=text, vision_config=vision, **_special_ids(tokenizer))


def _small_vision(**arch: object) -> dict:
    """A two-block Qwen-style vision tower of width 32 (merging 2x2 patches, 2 frames per group) into a
    64-wide language model; `arch`: the family's own keys (patch size, windows, ...)."""
    return {
        "depth": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 2,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "out_hidden_size": 64,
        "initializer_range": 0.2,
        **arch,
    }


def build_model(arch: Arch, tokenizer, *, seed: int = 0):
    """A random-weight model of the real architecture, sized to run in milliseconds on a CPU."""
    import torch

    torch.manual_seed(seed)
    if arch == "qwen3_vl":
        from transformers import Qwen3VLForConditionalGeneration

        model = Qwen3VLForConditionalGeneration(qwen3_vl_config(tokenizer))
    elif arch == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

        text = _text_kwargs(tokenizer, hidden=64, layers=2, heads=4, kv_heads=2, head_dim=16)
        text["rope_parameters"] = {
            "rope_type": "default",
            "rope_theta": 1_000_000.0,
            "mrope_section": [4, 2, 2],
        }
        vision = _small_vision(patch_size=14, tokens_per_second=2, window_size=56, fullatt_block_indexes=[1])
        model = Qwen2_5_VLForConditionalGeneration(
            Qwen2_5_VLConfig(text_config=text, vision_config=vision, **_special_ids(tokenizer))
        )
    elif arch == "qwen3_5":
        from transformers import Qwen3_5Config, Qwen3_5ForConditionalGeneration

        text = _text_kwargs(tokenizer, hidden=64, layers=3, heads=4, kv_heads=2, head_dim=16)
        text.update(
            # a recurrent (Gated DeltaNet) layer on each side of the full-attention one
            layer_types=["linear_attention", "full_attention", "linear_attention"],
            linear_conv_kernel_dim=4,
            linear_key_head_dim=16,
            linear_value_head_dim=16,
            linear_num_key_heads=2,
            linear_num_value_heads=4,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 10_000_000.0,
                "partial_rotary_factor": 0.5,
                "mrope_section": [2, 1, 1],
                "mrope_interleaved": True,
            },
        )
        vision = _small_vision(patch_size=16, num_position_embeddings=64)
        model = Qwen3_5ForConditionalGeneration(
            Qwen3_5Config(text_config=text, vision_config=vision, **_special_ids(tokenizer))
        )
    elif arch == "molmo2":
        from transformers import Molmo2Config, Molmo2ForConditionalGeneration

        text = _text_kwargs(tokenizer, hidden=64, layers=2, heads=4, kv_heads=2, head_dim=16)
        text.update(
            additional_vocab_size=0, rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0}
        )
        del text["pad_token_id"], text["bos_token_id"], text["eos_token_id"]
        # frames are resized to 56x56: 4x4 patches of 14 px, pooled 2x2 -> 4 tokens per frame
        vision = {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "image_size": [56, 56],
            "patch_size": 14,
            "initializer_range": 0.2,
        }
        adapter = {
            "vision_feature_layer": [-1, -2],
            "hidden_size": 32,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "intermediate_size": 64,
            "text_hidden_size": 64,
            "initializer_range": 0.2,
        }
        ids = tokenizer.convert_tokens_to_ids
        config = Molmo2Config(
            text_config=text,
            vision_config=vision,
            adapter_config=adapter,
            image_start_token_id=ids("<im_start>"),
            low_res_image_start_token_id=ids("<low_res_im_start>"),
            image_end_token_id=ids("<im_end>"),
            image_patch_id=ids("<im_patch>"),
            frame_start_token_id=ids("<frame_start>"),
            frame_end_token_id=ids("<frame_end>"),
            initializer_range=0.2,
        )
        model = Molmo2ForConditionalGeneration(config)
    else:
        raise ValueError(f"unknown arch {arch!r}; choose one of {ALL_ARCHS}")
    return model.eval()


def build_processor(arch: Arch, tokenizer):
    if arch in ("qwen3_vl", "qwen3_5"):  # Qwen3.5 checkpoints ship Qwen3-VL's processor
        from transformers import Qwen3VLProcessor
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
        from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

        size = {"shortest_edge": 32 * 32, "longest_edge": 256 * 32 * 32}
        half = [0.5, 0.5, 0.5]  # Qwen3-VL's own normalisation (its video processor's default too)
        return Qwen3VLProcessor(
            image_processor=Qwen2VLImageProcessor(
                patch_size=16, merge_size=2, size=size, image_mean=half, image_std=half
            ),
            tokenizer=tokenizer,
            video_processor=Qwen3VLVideoProcessor(size=size, cap_pixels_per_frame=False),
            chat_template=CHAT_TEMPLATE,
        )
    if arch == "qwen2_5_vl":
        from transformers import Qwen2_5_VLProcessor
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
        from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

        size = {"shortest_edge": 28 * 28, "longest_edge": 256 * 28 * 28}
        return Qwen2_5_VLProcessor(
            image_processor=Qwen2VLImageProcessor(patch_size=14, merge_size=2, size=size),
            tokenizer=tokenizer,
            video_processor=Qwen2VLVideoProcessor(size=size),
            chat_template=CHAT_TEMPLATE,
        )
    if arch == "molmo2":
        from transformers import Molmo2Processor
        from transformers.models.molmo2.image_processing_molmo2 import Molmo2ImageProcessor
        from transformers.models.molmo2.video_processing_molmo2 import Molmo2VideoProcessor

        return Molmo2Processor(
            image_processor=Molmo2ImageProcessor(
                size={"height": 56, "width": 56}, patch_size=14, pooling_size=[2, 2], max_crops=2
            ),
            video_processor=Molmo2VideoProcessor(
                size={"height": 56, "width": 56}, patch_size=14, pooling_size=[2, 2]
            ),
            tokenizer=tokenizer,
            chat_template=MOLMO2_CHAT_TEMPLATE,
        )
    raise ValueError(f"unknown arch {arch!r}; choose one of {ALL_ARCHS}")


def make_tiny_model(path: str | Path, arch: Arch = "qwen3_vl", *, seed: int = 0) -> Path:
    """Write a tiny random-weight model, its processor and tokenizer to `path`; returns the path."""
    if arch not in ALL_ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {ALL_ARCHS}")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if arch == "robometer":
        return make_tiny_robometer(path, seed=seed)
    if arch == "lrm":
        return make_tiny_lrm(path, seed=seed)
    tokenizer = build_tokenizer(arch=arch)
    build_model(arch, tokenizer, seed=seed).save_pretrained(path)
    build_processor(arch, tokenizer).save_pretrained(path)
    return path


#: the base model of a tiny Robometer checkpoint, a sub-folder named as their loader needs ("Qwen3" in it)
ROBOMETER_BASE = "Qwen3-VL-tiny-base"


def make_tiny_robometer(path: Path, *, seed: int = 0, bins: int = 10) -> Path:
    """A tiny random-weight checkpoint in the layout of `robometer/Robometer-4B`, with its base model.

    `path` gets what the release holds: `config.json` (the backbone's Qwen3-VL config, vocabulary grown by
    the five added tokens, `architectures: ["RFM"]`), `config.yaml` (the settings their loader reads;
    `model.base_model_id` is the absolute path of the base below) and the weights in two safetensors shards
    with their index: `model.*` (a `Qwen3VLModel`, no LM head), `progress_head.*` (Linear, LayerNorm, GELU,
    Dropout, Linear to `bins`), `success_head.*`, `preference_head.*` and `frame_pool_attn.weight`.
    `path/Qwen3-VL-tiny-base` is the base model (`Qwen/Qwen3-VL-4B-Instruct` for the release): the
    processor and tokenizer, without the added tokens, with Qwen3-VL's image numbering (`add_vision_id`).
    """
    import json

    import torch
    from safetensors.torch import save_file
    from transformers import Qwen3VLForConditionalGeneration, Qwen3VLModel

    base = path / ROBOMETER_BASE
    base.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    tokenizer.chat_template = VISION_ID_CHAT_TEMPLATE
    processor = build_processor("qwen3_vl", tokenizer)
    processor.chat_template = VISION_ID_CHAT_TEMPLATE
    torch.manual_seed(seed)
    Qwen3VLForConditionalGeneration(qwen3_vl_config(tokenizer)).save_pretrained(base)
    processor.save_pretrained(base)

    for token in ROBOMETER_TOKENS:  # one at a time, as their loader does
        tokenizer.add_special_tokens({"additional_special_tokens": [token]})
    config = qwen3_vl_config(tokenizer)
    config.architectures = ["RFM"]
    torch.manual_seed(seed + 1)
    backbone = Qwen3VLModel(config)
    hidden = config.text_config.hidden_size
    tensors = {f"model.{k}": v.contiguous() for k, v in backbone.state_dict().items()}
    for head, out in (("progress_head", bins), ("success_head", 1), ("preference_head", 1)):
        tensors[f"{head}.0.weight"] = torch.randn(hidden // 2, hidden) * hidden**-0.5
        tensors[f"{head}.0.bias"] = torch.randn(hidden // 2) * 0.1
        tensors[f"{head}.1.weight"] = 1.0 + 0.3 * torch.randn(hidden // 2)  # LayerNorm, not the identity
        tensors[f"{head}.1.bias"] = 0.3 * torch.randn(hidden // 2)
        tensors[f"{head}.4.weight"] = torch.randn(out, hidden // 2) * 2 * (hidden // 2) ** -0.5
        tensors[f"{head}.4.bias"] = torch.randn(out) * 0.5
    tensors["frame_pool_attn.weight"] = torch.randn(1, hidden) * hidden**-0.5

    names = sorted(tensors)
    half = len(names) // 2
    shards = {
        "model-00001-of-00002.safetensors": names[:half],
        "model-00002-of-00002.safetensors": names[half:],
    }
    for file, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, str(path / file), metadata={"format": "pt"})
    index = {
        "metadata": {"total_size": sum(t.numel() * t.element_size() for t in tensors.values())},
        "weight_map": {k: file for file, keys in shards.items() for k in keys},
    }
    (path / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    config.save_pretrained(path)
    (path / "config.yaml").write_text(_robometer_yaml(str(base.resolve()), bins))
    return path


def _robometer_yaml(base_model_id: str, bins: int) -> str:
    """The sections of Robometer's `config.yaml` that inference reads (their `ExperimentConfig`, abridged)."""
    return f"""data:
  max_frames: 8
  progress_discrete_bins: {bins}
  progress_loss_type: discrete
  resized_height: null
  resized_width: null
  use_multi_image: true
  use_per_frame_progress_token: true
loss:
  progress_discrete_bins: {bins}
  progress_loss_type: discrete
model:
  base_model_id: {base_model_id}
  frame_pooling: mean
  progress_discrete_bins: {bins}
  progress_loss_type: discrete
  torch_dtype: float32
  use_multi_image: true
  use_per_frame_progress_token: true
  use_peft: false
  use_unsloth: false
training:
  predict_pref_progress: true
"""


#: the three LoRA adapters of `USC-PSI-Lab/LRM-models`, each in a sub-folder of that name
LRM_HEADS: tuple[str, ...] = ("contrastive", "completion", "progress")
#: the language model's projections the tiny adapters adapt (the vision tower's are named otherwise)
_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def make_tiny_lrm(path: Path, *, seed: int = 0) -> Path:
    """Tiny random LoRA adapters in the layout of `USC-PSI-Lab/LRM-models`, with their base model.

    `path/Qwen3-VL-8B-Instruct-tiny` is the base (a tiny Qwen3-VL; `Qwen/Qwen3-VL-8B-Instruct` for the
    release); `path/LRM-models/{contrastive,completion,progress}` are peft adapters of it
    (`adapter_config.json` + `adapter_model.safetensors`, `base_model_name_or_path` = the base's absolute
    path) on the language model's projections, with random non-zero `lora_B`; the progress adapter also
    saves the whole vision tower (`modules_to_save=["visual"]`, perturbed so that it differs from the
    base's) and ships the processor files, as the release's does. Returns `path/LRM-models`.
    """
    import torch
    from peft import LoraConfig, get_peft_model

    base = path / "Qwen3-VL-8B-Instruct-tiny"
    tokenizer = build_tokenizer()
    processor = build_processor("qwen3_vl", tokenizer)
    build_model("qwen3_vl", tokenizer, seed=seed).save_pretrained(base)
    processor.save_pretrained(base)
    for i, head in enumerate(LRM_HEADS):
        model = build_model("qwen3_vl", tokenizer, seed=seed)
        config = LoraConfig(
            r=4,
            lora_alpha=8,
            target_modules=_LORA_TARGETS,
            modules_to_save=["visual"] if head == "progress" else None,
        )
        peft_model = get_peft_model(model, config)
        generator = torch.Generator().manual_seed(seed + 100 + i)
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if "lora_B" in name:
                    param.copy_(0.3 * torch.randn(param.shape, generator=generator))
                elif "modules_to_save" in name:
                    param.add_(0.05 * torch.randn(param.shape, generator=generator))
        peft_model.peft_config["default"].base_model_name_or_path = str(base.resolve())
        folder = path / "LRM-models" / head
        peft_model.save_pretrained(folder)
        if head == "progress":
            processor.save_pretrained(folder)
    return path / "LRM-models"
