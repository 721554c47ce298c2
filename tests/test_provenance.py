"""Provenance: what every result records, the settings a resumed run must match, and their fingerprint."""

from __future__ import annotations

import json
import os

import pytest

import topreward
from topreward.provenance import check_settings, fingerprint, model_identity, provenance, settings

from .conftest import colour_frames, load_backend


@pytest.fixture(scope="module")
def scorer(tiny_model_dirs):
    return topreward.load_scorer(
        "topreward",
        model=str(tiny_model_dirs["qwen3_vl"]),
        max_frames=4,
        num_prefixes=2,
        backend=load_backend(tiny_model_dirs, "qwen3_vl"),
    )


def test_score_result_json_records_its_provenance(scorer, sample_video, tmp_path, tiny_model_dirs):
    result = scorer.score(os.path.relpath(sample_video), "open the drawer")
    saved = json.loads(result.save(tmp_path / "r.json").read_text())
    prov = saved["provenance"]
    assert prov["source"] == {"path": str(sample_video.resolve())}  # absolute, whatever was typed
    assert prov["model"]["id"] == str(tiny_model_dirs["qwen3_vl"].resolve())
    assert (prov["method"], prov["device"], prov["dtype"]) == ("topreward", "cpu", "float32")
    assert prov["config"] == json.loads(json.dumps(scorer.options()))
    assert prov["topreward_version"] == topreward.__version__ and "date" in prov
    assert topreward.ScoreResult.load(tmp_path / "r.json").provenance == prov
    from_array = scorer.score(colour_frames(6), "open the drawer", fps=2).provenance
    assert from_array["source"] == {"description": "<array>"}


def test_settings_keep_what_decides_the_numbers(scorer):
    prov = provenance(scorer, {"type": "ManifestSource", "path": "/data/m.jsonl", "episodes": "0:5"})
    run = settings(prov)
    assert run["source.path"] == "/data/m.jsonl" and run["num_prefixes"] == 2 and run["method"] == "topreward"
    assert "source.episodes" not in run  # another selection reuses the episodes both share
    for runtime in ("device", "dtype", "batch_size", "path", "date"):
        assert runtime not in run
    assert fingerprint(run, "ep0") == fingerprint(dict(run), "ep0") != fingerprint(run, "ep1")
    check_settings("w.jsonl", run, dict(run))  # the same settings: no error
    with pytest.raises(
        ValueError, match=r"w\.jsonl was computed with other settings: max_frames: 4 before, 8 now"
    ):
        check_settings("w.jsonl", run, {**run, "max_frames": 8})
    with pytest.raises(ValueError, match="without its settings.*--overwrite"):
        check_settings("w.jsonl", None, run)


def test_model_identity(tiny_model_dirs):
    local = model_identity(os.path.relpath(tiny_model_dirs["qwen3_vl"]))
    assert local == {"id": str(tiny_model_dirs["qwen3_vl"].resolve()), "revision": None, "commit": None}
    commit = "0123456789abcdef0123456789abcdef01234567"
    hub = model_identity("someone/not-downloaded", commit)
    assert hub == {"id": "someone/not-downloaded", "revision": commit, "commit": commit}
    assert model_identity("someone/not-downloaded", "main")["commit"] is None  # unknown offline
