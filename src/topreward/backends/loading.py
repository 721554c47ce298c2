"""Loading a transformers model: which device and dtype, and what a local model folder must hold (each
missing piece an error that names it, before transformers' own messages)."""

from __future__ import annotations

from pathlib import Path

import torch


def pick_device(device: str | None) -> str:
    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(dtype: str | torch.dtype | None, device: str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    table = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
    }
    if dtype not in table:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(table)}")
    return table[dtype]


def check_local_model(model: str) -> None:
    """A model given as a path that does not exist is a missing folder, not a malformed Hub id."""
    path = Path(model).expanduser()
    looks_local = model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model
    if looks_local and not path.exists():
        raise ValueError(
            f"cannot load model {model!r}: the folder {path} does not exist; pass an existing local model "
            "folder or a Hub id such as Qwen/Qwen3-VL-8B-Instruct (`topreward make-tiny-model PATH` writes a "
            "tiny offline one)"
        )
    if path.is_dir() and not (path / "config.json").is_file():
        raise ValueError(
            f"cannot load model {model!r}: {path} has no config.json, so it is not a transformers model "
            "folder; pass the folder that holds config.json and the weights, or a Hub id"
        )


def missing_tokenizer_files(model: str) -> str | None:
    """What a local model folder lacks to build its tokenizer (a fast `tokenizer.json`, or the BPE
    `vocab.json` + `merges.txt` to convert), or None (not a local folder, or the files are there)."""
    folder = Path(model).expanduser()
    if not folder.is_dir() or (folder / "tokenizer.json").is_file():
        return None
    bpe = [f for f in ("vocab.json", "merges.txt") if not (folder / f).is_file()]
    return f"tokenizer.json (nor {' and '.join(bpe)})" if bpe else None


def hub_snapshot(repo: str, revision: str | None, allow_patterns: list[str], what: str) -> Path:
    """The local snapshot of Hub repo `repo` (the files matching `allow_patterns`, downloaded by
    huggingface_hub); an error that says to download `what` where the Hub is reachable otherwise."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo, revision=revision, allow_patterns=allow_patterns))
    except Exception as e:  # offline, unknown repo, no access: the same advice
        raise ValueError(
            f"cannot download {what} from {repo!r} ({type(e).__name__}: {e}); download it where the Hub is "
            "reachable and pass the local folder"
        ) from e
