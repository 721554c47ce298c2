"""The answer-token study (TOPReward App. B) on the shipped sim fixture with the tiny Qwen3-VL model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import topreward
from topreward.bench.tokens import DEFAULT_CANDIDATES, answer_token_study
from topreward.datasets import open_source, write_manifest
from topreward.scorers.topreward import format_prompt
from topreward.sim import fixture_dir
from topreward.video import write_video

from .conftest import colour_frames, load_backend

MANIFEST = fixture_dir() / "manifest.jsonl"
EPISODES = 4  # the fixture lists successes and failures apart; the cap alternates them: 2 + 2


@pytest.fixture(scope="module")
def scorer(tiny_model_dirs):
    backend = load_backend(tiny_model_dirs, "qwen3_vl")
    return topreward.load_scorer("topreward", model="x", backend=backend, max_frames=4, max_pixels=64 * 64)


@pytest.fixture(scope="module")
def study(scorer):
    return answer_token_study(
        open_source(MANIFEST), scorer, top_vocab=3, max_episodes=EPISODES, progress_bar=False
    )


def final_step_probs(scorer, episode_ids: list[str], token_ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(episodes, tokens) probabilities after the whole video, one plain forward each, and the labels."""
    source, backend = open_source(MANIFEST), scorer.backend
    probs, labels = [], []
    for eid in episode_ids:
        ep = source.get(eid)
        video = scorer.prepare(ep)
        prompt = backend.prompt_text(scorer.config.prompt_style, format_prompt(ep.instruction))
        lp = backend.reference_log_probs(video, [video.num_frames], prompt, token_ids)[0]
        probs.append(np.exp(lp))
        labels.append(bool(ep.annotations["success"]))
    return np.array(probs), np.array(labels)


def test_the_cap_keeps_both_classes(study):
    assert study.episodes == EPISODES and (study.n_success, study.n_failure) == (2, 2)
    assert study.skipped == {} and study.unlabelled == 0
    assert all(r.n_success == 2 and r.n_failure == 2 for r in study.rows)


def test_rows_ranked_by_separation_then_gap(study):
    keys = [(-r.separation, -abs(r.gap)) for r in study.rows]
    assert keys == sorted(keys)
    for r in study.rows:
        assert r.separation == pytest.approx(max(r.auc, 1 - r.auc))
        assert r.gap == pytest.approx(r.mean_success - r.mean_failure)


def test_auc_and_means_match_an_independent_reference_computation(study, scorer):
    words = [r for r in study.rows if r.origin == "candidate"]
    probs, y = final_step_probs(scorer, study.episode_ids, [r.token_id for r in words])
    for j, r in enumerate(words):
        assert r.auc == pytest.approx(roc_auc_score(y, probs[:, j]), abs=1e-9), r.token
        assert r.mean_success == pytest.approx(probs[y, j].mean(), abs=1e-4)
        assert r.mean_failure == pytest.approx(probs[~y, j].mean(), abs=1e-4)
    assert study.row(" True").token_id == scorer.backend.token_id(" True")


def test_top_vocab_adds_the_tokens_with_the_largest_gap(study, scorer):
    vocab = [r for r in study.rows if r.origin == "vocab"]
    assert len(vocab) == 3
    candidates = {r.token_id for r in study.rows if r.origin == "candidate"}
    size = len(scorer.backend.processor.tokenizer)
    probs, y = final_step_probs(scorer, study.episode_ids, list(range(size)))
    gap = np.abs(probs[y].mean(0) - probs[~y].mean(0))
    others = np.array([t for t in range(size) if t not in candidates | {r.token_id for r in vocab}])
    for r in vocab:
        assert r.token_id not in candidates
        assert abs(r.gap) == pytest.approx(gap[r.token_id], abs=1e-4)
        assert abs(r.gap) >= gap[others].max() - 1e-4
        assert r.token == scorer.backend.processor.tokenizer.decode([r.token_id])


def test_multi_token_words_are_dropped_with_the_reason(study, scorer):
    kept = {r.token for r in study.rows if r.origin == "candidate"}
    assert kept | set(study.dropped) == set(DEFAULT_CANDIDATES)
    for word, why in study.dropped.items():
        assert len(scorer.backend.tokenize(word)) > 1 and "tokens" in why
    assert " True" in kept and " Success" in study.dropped  # the tiny tokenizer splits " Success"


def test_outputs_are_json_ready_and_a_table(study):
    d = json.loads(json.dumps(study.to_dict()))
    assert d["episodes"] == EPISODES and len(d["rows"]) == len(study.rows)
    assert d["model"]["family"] and d["version"] == topreward.__version__
    text = study.table()
    lines = text.splitlines()
    assert "AUC" in lines[0] and "' True'" in text and "dropped:" in text
    assert len({len(line) for line in lines[: 2 + len(study.rows)]}) == 1  # aligned, no trailing blanks


def test_user_words_and_corrupt_videos(scorer, tmp_path):
    frames = colour_frames(12, 64, 64)
    write_video(tmp_path / "a.mp4", frames, fps=4)
    write_video(tmp_path / "b.mp4", frames[::-1].copy(), fps=4)
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    rows = [
        {"video": "a.mp4", "instruction": "open the drawer", "success": True, "episode_id": "a"},
        {"video": "bad.mp4", "instruction": "open the drawer", "success": True, "episode_id": "bad"},
        {"video": "b.mp4", "instruction": "open the drawer", "success": False, "episode_id": "b"},
        {"video": "a.mp4", "instruction": "open the drawer", "episode_id": "unlabelled"},
    ]
    source = open_source(write_manifest(tmp_path / "m.jsonl", rows))
    study = answer_token_study(
        source, scorer, candidates=[" True", " photosynthesis", " True"], progress_bar=False
    )
    assert [r.token for r in study.rows] == [" True"]
    assert "12 tokens" in study.dropped[" photosynthesis"]
    assert list(study.skipped) == ["bad"] and study.episodes == 2 and study.unlabelled == 1
    assert "skipped 1 episode" in study.table()


def labelled_manifest(tmp_path, success: list[bool | None]):
    write_video(tmp_path / "v.mp4", colour_frames(8, 64, 64), fps=4)
    rows = [
        {"video": "v.mp4", "instruction": "push the button", "episode_id": f"e{i}"}
        | ({} if s is None else {"success": s})
        for i, s in enumerate(success)
    ]
    return open_source(write_manifest(tmp_path / "m.jsonl", rows))


def test_a_source_without_labels_is_an_error(scorer, tmp_path):
    with pytest.raises(ValueError, match="success label.*sim fixture"):
        answer_token_study(labelled_manifest(tmp_path, [None, None]), scorer, progress_bar=False)


def test_a_single_class_is_an_error(scorer, tmp_path):
    with pytest.raises(ValueError, match="both successful and failed.*sim fixture has both"):
        answer_token_study(labelled_manifest(tmp_path, [True, True]), scorer, progress_bar=False)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"top_vocab": -1}, ValueError, "top_vocab must be >= 0"),
        ({"max_episodes": 1}, ValueError, "max_episodes must be >= 2"),
        ({"candidates": [" photosynthesis"]}, ValueError, "none of the candidate words is a single token"),
        ({"candidates": " True"}, TypeError, "list of words"),
    ],
)
def test_bad_options(scorer, kwargs, error, match):
    with pytest.raises(error, match=match):
        answer_token_study(open_source(MANIFEST), scorer, progress_bar=False, **kwargs)


def test_needs_a_topreward_scorer():
    with pytest.raises(TypeError, match="TOPReward scorer"):
        answer_token_study(open_source(MANIFEST), object(), progress_bar=False)
