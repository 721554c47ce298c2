"""Helpers shared by the golden recorders that run in a peer's own venv.

``record_robometer.py``, ``record_roboreward.py``, ``record_sole.py`` and ``record_lrm.py`` run with a peer venv's
python, where ``topreward`` is not installed; they import this module from their own folder (``sys.path[0]``
when a script runs). It needs only what each of those venvs has: PyAV, numpy, torch, safetensors.
(``record_authors.py`` and ``record_lerobot.py`` keep their own copies: their venvs are gone.)
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import sys
import types
from pathlib import Path

import av
import numpy as np
import torch

CLIP = Path(__file__).resolve().parents[2] / "src/topreward/assets/sample_pick_place.mp4"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fix_tokenizer_config(path: Path) -> None:
    """A 5.x-saved tokenizer_config.json as transformers 4.57 reads it: ``tokenizer_class:
    Qwen2TokenizerFast``, without 5.x's ``backend`` and its list-valued ``extra_special_tokens``."""
    tok = json.loads(path.read_text())
    tok["tokenizer_class"] = "Qwen2TokenizerFast"
    tok.pop("backend", None)
    if isinstance(tok.get("extra_special_tokens"), list):
        tok.pop("extra_special_tokens")
    path.write_text(json.dumps(tok, indent=2))


def fix_config_json(path: Path) -> None:
    """A 5.x-saved Qwen3-VL config.json as transformers 4.57 reads it: text_config gets ``rope_scaling =
    {mrope_section, mrope_interleaved, rope_type}`` and ``rope_theta`` from 5.x's ``rope_parameters``."""
    cfg = json.loads(path.read_text())
    text = cfg["text_config"]
    rope = text.get("rope_parameters") or {}
    if text.get("rope_scaling") is None and "mrope_section" in rope:
        text["rope_scaling"] = {k: rope[k] for k in ("mrope_section", "mrope_interleaved") if k in rope}
        text["rope_scaling"]["rope_type"] = rope.get("rope_type", "default")
        text["rope_theta"] = rope["rope_theta"]
    path.write_text(json.dumps(cfg, indent=2))


def convert_model(src: Path, dst: Path) -> None:
    """Copy a 5.x-saved tiny model folder to `dst` with the two JSON edits above (weights are byte copies)."""
    shutil.copytree(src, dst)
    fix_tokenizer_config(dst / "tokenizer_config.json")
    fix_config_json(dst / "config.json")


def decode_clip(path: Path) -> tuple[list[np.ndarray], float]:
    """Every frame as rgb24 (PyAV), and the stream's average rate."""
    with av.open(str(path)) as container:
        native_fps = float(container.streams.video[0].average_rate)
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    return frames, native_fps


def clip_info(frames: list[np.ndarray], fps: float) -> dict:
    return {
        "path": str(CLIP.relative_to(CLIP.parents[3])),
        "sha256": sha256(CLIP.read_bytes()),
        "num_frames": len(frames),
        "fps": fps,
        "hw": list(frames[0].shape[:2]),
        "decoder": "PyAV rgb24",
    }


def load_their_module(root: Path, name: str) -> types.ModuleType:
    """Load roboreason.<name> from the unpacked wheel without running roboreason/__init__.py."""
    if "roboreason" not in sys.modules:
        pkg = types.ModuleType("roboreason")
        pkg.__path__ = [str(root / "roboreason")]
        sys.modules["roboreason"] = pkg
    spec = importlib.util.spec_from_file_location(f"roboreason.{name}", root / "roboreason" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class ForcedFromPretrained:
    """Answers ``cls.from_pretrained`` while their loader runs: their keyword arguments (kept, as strings, in
    ``kwargs_seen``) updated with `forced`, plus ``output_loading_info=True``; the loading info must be clean."""

    def __init__(self, cls, **forced):
        self.cls, self.forced, self.kwargs_seen = cls, forced, None
        assert "from_pretrained" not in cls.__dict__  # inherited, so `del` restores it

    def __enter__(self):
        original = self.cls.from_pretrained

        def from_pretrained(cls, name, **kwargs):
            self.kwargs_seen = {k: str(v) for k, v in kwargs.items()}
            kwargs.update(self.forced)
            model, info = original(name, output_loading_info=True, **kwargs)
            bad = {k: v for k, v in info.items() if v}
            assert not bad, f"loading info not clean: {bad}"
            return model

        self.cls.from_pretrained = classmethod(from_pretrained)
        return self

    def __exit__(self, *exc):
        del self.cls.from_pretrained


def weights_loaded_exactly(model, safetensors_file: Path) -> bool:
    """Every tensor of the file equals the model's parameter of that name."""
    from safetensors.torch import load_file

    state = load_file(str(safetensors_file))
    params = dict(model.state_dict())
    return all(name in params and torch.equal(params[name], t) for name, t in state.items())


def generation_config_info(model) -> dict:
    return {
        k: v
        for k, v in model.generation_config.to_dict().items()
        if k in ("eos_token_id", "pad_token_id", "bos_token_id", "do_sample", "max_new_tokens")
    }


class Probe:
    def __init__(self):
        self.calls: list[dict] = []

    def add(self, **entry):
        self.calls.append(entry)

    def take(self) -> list[dict]:
        calls, self.calls = self.calls, []
        return calls


def install_generate_probe(model, probe: Probe) -> None:
    """Record each ``model.generate`` call (kwargs, tensors as shapes; the output ids); ``del model.generate``
    removes the probe."""
    orig = model.generate

    def generate(*args, **kwargs):
        out = orig(*args, **kwargs)
        probe.add(
            kind="generate",
            kwargs={k: (list(v.shape) if torch.is_tensor(v) else v) for k, v in kwargs.items()},
            sequences=out.clone(),
        )
        return out

    model.generate = generate


def collapse(ids: list[int], tok, pad: str) -> str:
    """Decode ids with runs of the `pad` token (e.g. <|video_pad|>) written as <|video_pad|>*N."""
    pad_id = tok.convert_tokens_to_ids(pad)
    out, run, buf = [], 0, []
    for t in [*ids, None]:
        if t == pad_id:
            run += 1
            continue
        if run:
            out.append(tok.decode(buf) + f"{pad}*{run}")
            buf, run = [], 0
        if t is not None:
            buf.append(t)
    out.append(tok.decode(buf))
    return "".join(out)
