"""Shared fixtures: tiny real-architecture Qwen-VL models saved to disk once per session, sample clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch._dynamo  # noqa: F401  first imported after Mesa's EGL has rendered (test_sim), it can segfault

from topreward.tiny import ARCHS, make_tiny_model
from topreward.video import write_video


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-models")
    return {arch: make_tiny_model(root / arch, arch) for arch in ARCHS}


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU and real weights from the Hub")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


_BACKENDS: dict[str, object] = {}


def load_backend(tiny_model_dirs: dict[str, Path], arch: str):
    """One float32 CPU backend per architecture for the whole session (loading is the slow part)."""
    from topreward.backends.hf import HFBackend

    if arch not in _BACKENDS:
        _BACKENDS[arch] = HFBackend(str(tiny_model_dirs[arch]), device="cpu", dtype="float32")
    return _BACKENDS[arch]


@pytest.fixture(scope="session", params=ARCHS)
def backend(request, tiny_model_dirs):
    return load_backend(tiny_model_dirs, request.param)


@pytest.fixture(scope="session")
def qwen3_backend(tiny_model_dirs):
    return load_backend(tiny_model_dirs, "qwen3_vl")


def colour_frames(n: int, h: int = 64, w: int = 96) -> np.ndarray:
    """Frames whose colour encodes their index (red channel = 6 * i), plus texture so vision features vary."""
    rng = np.random.default_rng(n)
    frames = rng.integers(0, 60, (n, h, w, 3), dtype=np.uint8)
    frames[..., 0] = (6 * np.arange(n) % 246)[:, None, None].astype(np.uint8)
    return frames


@pytest.fixture(scope="session")
def sample_video(tmp_path_factory) -> Path:
    """A 40-frame 10 fps mp4 (4 s)."""
    return write_video(tmp_path_factory.mktemp("videos") / "clip.mp4", colour_frames(40, 64, 96), fps=10)
