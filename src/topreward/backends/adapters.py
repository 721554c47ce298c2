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
