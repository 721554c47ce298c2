"""Where and how the model runs: `BackendConfig`, the options every method shares, and the one table that
turns `backend=` into the backend class that runs it."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from topreward.config import check_choices, check_types, option

DEFAULT_MODEL = "Qwen/Qwen3-VL-8B-Instruct"
#: backend name -> the class that runs it ("module:Class"); each class builds itself from a `BackendConfig`
#: (`from_config`) and says its patch factor without loading a model (`config_patch_factor`)
BACKEND_CLASSES: dict[str, str] = {
    "transformers": "topreward.backends.hf:HFBackend",
    "gemini": "topreward.backends.gemini:GeminiBackend",
    "openai": "topreward.backends.openai_api:OpenAIServerBackend",
}
BACKENDS: tuple[str, ...] = tuple(BACKEND_CLASSES)


@dataclass
class BackendConfig:
    """Where and how the model runs."""

    backend: str = option("transformers", "where the model runs", choices=BACKENDS)
    model: str = option(
        DEFAULT_MODEL,
        "transformers: Hub id or local folder (Qwen3-VL, Qwen2.5-VL, Qwen3.5, Molmo2); openai: the served "
        "model name; gemini: e.g. gemini-2.5-flash",
    )
    revision: str | None = option(None, "model revision (branch, tag or commit)")
    adapter: str | None = option(
        None, "transformers: a LoRA adapter folder (`topreward train`) merged into --model"
    )
    device: str | None = option(None, "cuda, cuda:1, cpu (default: cuda if available)")
    dtype: str | None = option(None, "bfloat16, float16 or float32 (default: bf16 on cuda, fp32 on cpu)")
    path: Literal["fast", "reference"] = option(
        "fast",
        "fast (shared video cache) or reference (one forward per request)",
        choices=("fast", "reference"),
    )
    batch_size: int = option(8, "requests per packed forward on the fast path (memory knob)")
    attn_implementation: str = option("sdpa", "sdpa or eager", choices=("sdpa", "eager"))
    # remote backends (docs/model-servers.md); the API key comes from the environment, never from an option
    url: str | None = option(
        None,
        "base URL of the server: an OpenAI-compatible one (backend openai, e.g. http://localhost:8000) or "
        "another Gemini API endpoint (backend gemini); keep credentials out of it (it is recorded)",
    )
    server: Literal["vllm", "sglang"] = option(
        "vllm",
        "backend openai: log-prob request format, vllm (chat completions) or sglang (native /generate)",
        choices=("vllm", "sglang"),
    )
    timeout: float = option(120.0, "remote backends: seconds per HTTP request")
    retries: int = option(3, "remote backends: retries of a failed request (down, slow, 5xx), with back-off")
    concurrency: int = option(8, "remote backends: requests in flight at once")
    server_patch_factor: int = option(
        32, "backend openai: frame sides are rounded to multiples of this (Qwen3-VL 32, Qwen2.5-VL 28)"
    )

    def __post_init__(self) -> None:
        check_types(self)
        check_choices(self)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not (isinstance(self.timeout, (int, float)) and 0 < self.timeout < float("inf")):
            raise ValueError(f"timeout must be a positive number of seconds, got {self.timeout!r}")
        for name, low in (("retries", 0), ("concurrency", 1), ("server_patch_factor", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.adapter is not None:  # checked before any model is loaded
            if self.backend != "transformers":
                raise ValueError(f"adapter= applies to backend='transformers' only, not {self.backend!r}")
            if not (Path(str(self.adapter)).expanduser() / "adapter_config.json").is_file():
                raise FileNotFoundError(
                    f"adapter {self.adapter} is not a LoRA adapter folder (no adapter_config.json); pass the "
                    "`final` (or a checkpoint) folder written by `topreward train --lora yes`"
                )
        if self.backend == "openai" and not self.url:
            raise ValueError(
                "backend='openai' needs the server's base URL: url='http://localhost:8000' (--url); "
                "see docs/model-servers.md"
            )

    def backend_class(self) -> type:
        """The class that runs `backend` (imported now: the table names it)."""
        module, name = BACKEND_CLASSES[self.backend].split(":")
        return getattr(importlib.import_module(module), name)

    def load(self):
        """The backend these options describe: the model loaded, or a client of the server."""
        return self.backend_class().from_config(self)

    def patch_factor(self) -> int:
        """Frame sides are rounded to multiples of this; known without loading the model."""
        return self.backend_class().config_patch_factor(self)
