"""LoRA adapters (`topreward train --lora yes`): load one and merge it into a transformers model (peft),
checked against the base model it was trained on."""

from __future__ import annotations

import json
from pathlib import Path

from topreward.extras import optional

#: what marks a folder as a LoRA adapter
ADAPTER_CONFIG = "adapter_config.json"


def peft():
    """The peft package, or an ImportError naming `pip install 'topreward[train]'`."""
    return optional("peft", "train", "LoRA adapters")


def model_key(name: str | Path) -> str:
    """How an adapter records its base model: a local folder as its absolute path, a Hub id as given."""
    p = Path(name).expanduser()
    return str(p.resolve()) if p.exists() else str(name)


def load_adapter(model, adapter: str | Path, base: str):
    """`model` with the LoRA adapter at `adapter` merged in; errors for another base model or zero weights."""
    from safetensors.torch import load_file

    path = Path(adapter)
    cfg_path = path / ADAPTER_CONFIG
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{path} is not a LoRA adapter folder (no {ADAPTER_CONFIG})")
    trained_on = json.loads(cfg_path.read_text()).get("base_model_name_or_path")
    if trained_on and model_key(trained_on) != model_key(base):
        raise ValueError(
            f"adapter {path} was trained on {trained_on!r}, not {base!r}: pass --model {trained_on} (an adapter "
            "only fits the model it was trained on)"
        )
    weights = load_file(str(path / "adapter_model.safetensors"))
    b = [t for name, t in weights.items() if "lora_B" in name]
    if not b or all(float(t.abs().max()) == 0.0 for t in b):
        raise ValueError(
            f"adapter {path}: every lora_B weight is zero, so it changes nothing (an untrained or broken "
            "adapter); train it, or point --adapter at a trained one"
        )
    return peft().PeftModel.from_pretrained(model, str(path)).merge_and_unload()


def merge_lora_by_hand(model, adapter: str | Path, base: str) -> int:
    """Merge a released peft LoRA adapter into `model` the way LRM's reward server does (its single-adapter
    path, `load_vlm_model` in physical-superintelligence-lab/Large-Reward-Models at 5845ab0), without peft:
    every `lora_A`/`lora_B` pair becomes `W + (B @ A) * lora_alpha / r` in the weight's dtype, and every
    other tensor (`modules_to_save`, e.g. the progress adapter's vision tower) replaces the model's own.
    `adapter_config.json`'s other fields are ignored, as there.

    Unlike their server, nothing is skipped silently: a tensor that names no weight of `model`, or a pair
    whose shape differs, means the adapter is for another base model, and the adapter's recorded base
    model must have the name of `base`. Returns the number of merged pairs.
    """
    import torch
    from safetensors.torch import load_file

    path = Path(adapter).expanduser()
    cfg_path = path / ADAPTER_CONFIG
    weights_path = path / "adapter_model.safetensors"
    if not cfg_path.is_file() or not weights_path.is_file():
        raise FileNotFoundError(
            f"{path} is not a LoRA adapter folder (it needs {ADAPTER_CONFIG} and adapter_model.safetensors)"
        )
    config = json.loads(cfg_path.read_text())
    trained_on = str(config.get("base_model_name_or_path") or "")
    if trained_on and Path(trained_on).name.casefold() != Path(str(base)).name.casefold():
        raise ValueError(
            f"adapter {path} was trained on {trained_on!r}, not {base!r}: pass --model {trained_on} (or a "
            "local copy of it; an adapter only fits the model it was trained on)"
        )
    scaling = float(config.get("lora_alpha", 128)) / float(config.get("r", 64))
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    whole: dict[str, torch.Tensor] = {}
    for key, value in load_file(str(weights_path)).items():
        for part in ("A", "B"):
            if f".lora_{part}." in key:
                stem = key.split(f".lora_{part}.")[0].replace("base_model.model.", "", 1)
                pairs.setdefault(stem, {})[part] = value
                break
        else:
            whole[key.replace("base_model.model.", "", 1)] = value
    state = model.state_dict()
    foreign = [k for k in whole if k not in state or state[k].shape != whole[k].shape]
    foreign += [f"{k}.weight" for k in pairs if f"{k}.weight" not in state or set(pairs[k]) != {"A", "B"}]
    if not foreign:
        foreign = [
            f"{k}.weight"
            for k, w in pairs.items()
            if state[f"{k}.weight"].shape != (w["B"].shape[0], w["A"].shape[1])
        ]
    if foreign:
        raise ValueError(
            f"adapter {path} does not fit model {base!r}: {len(foreign)} of its tensors name no weight of that "
            f"shape (e.g. {foreign[0]}); it is an adapter for another base model"
        )
    with torch.no_grad():
        for name, value in whole.items():
            state[name].copy_(value.to(state[name].dtype))
        for stem, w in pairs.items():
            weight = state[f"{stem}.weight"]
            a, b = w["A"].to(weight.device, weight.dtype), w["B"].to(weight.device, weight.dtype)
            weight.copy_(weight + (b @ a) * scaling)
    return len(pairs)
