"""The log-prob methods on the engine (contrast, ensemble, instruction likelihood) and the method-general result."""

from __future__ import annotations

import json

import numpy as np
import pytest

import topreward
from topreward.scorers.ensemble import PROMPTS, EnsembleConfig

from .conftest import colour_frames

FRAMES = colour_frames(12, 64, 96)
SMALL = {"num_prefixes": 4, "max_frames": 6}

OLD_TOPREWARD_KEYS = {
    "method", "instruction", "num_frames", "fps", "sampled_frames", "prefix_lengths", "prefix_end_frames",
    "log_p_true", "log_p_false", "progress", "frame_progress", "success_score", "dense_rewards", "config",
    "model", "version", "timings", "source", "episode_id",
}  # fmt: skip


def both_paths(backend, method: str, **options):
    fast = topreward.load_scorer(method, backend=backend, **SMALL, **options)
    ref = topreward.load_scorer(method, backend=backend, **SMALL, path="reference", **options)
    return fast.score(FRAMES, "open the drawer", fps=4), ref.score(FRAMES, "open the drawer", fps=4)


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("topreward", {"signal": "contrast"}),
        ("ensemble", {}),
        ("instruction", {}),
        ("instruction", {"reduce": "sum"}),
    ],
)
def test_fast_equals_reference(backend, method, options):
    fast, ref = both_paths(backend, method, **options)
    np.testing.assert_allclose(fast.values, ref.values, atol=1e-4, rtol=0)
    assert np.ptp(ref.values) > 0.01  # the comparison can fail
    for name, value in fast.signals.items():
        np.testing.assert_allclose(value, ref.signals[name], atol=1e-4, rtol=0)


def test_contrast_signal_is_true_minus_false(qwen3_backend):
    fast, _ = both_paths(qwen3_backend, "topreward", signal="contrast")
    np.testing.assert_allclose(fast.values, fast.log_p_true - fast.log_p_false)
    assert fast.value_name == "log P(True) - log P(False)"


def test_ensemble_averages_its_prompts_and_shares_one_video_pass(qwen3_backend):
    backend = qwen3_backend
    lm, visual = backend.model.model.language_model, backend.model.model.visual
    lm_calls: list[int] = []
    vis_calls: list[int] = []
    h1 = lm.register_forward_pre_hook(
        lambda m, a, kw: lm_calls.append(kw["inputs_embeds"].shape[1]), with_kwargs=True
    )
    h2 = visual.register_forward_pre_hook(lambda m, a: vis_calls.append(a[0].shape[0]))
    try:
        ens = topreward.load_scorer("ensemble", backend=backend, batch_size=64, **SMALL)
        r = ens.score(FRAMES, "open the drawer", fps=4)
    finally:
        h1.remove()
        h2.remove()
    per_prompt = r.prompt_log_p_true
    assert per_prompt.shape == (len(PROMPTS), len(r.prefix_lengths)) == (10, 4)
    np.testing.assert_allclose(r.values, per_prompt.mean(axis=0))
    # 10 prompts: the video's tokens go through the language model once, the encoder runs at most twice
    # (the whole video's pairs, then the padded pair of an odd prefix), then one packed pass of suffixes
    assert len(vis_calls) <= 2 and len(lm_calls) == 2
    single = topreward.load_scorer("topreward", backend=backend, **SMALL).score(
        FRAMES, "open the drawer", fps=4
    )
    np.testing.assert_allclose(per_prompt[0], single.log_p_true, atol=1e-4)  # prompt 0 is TOPReward's own


def test_ensemble_combine_progress(qwen3_backend):
    r = topreward.load_scorer("ensemble", backend=qwen3_backend, combine="progress", **SMALL).score(
        FRAMES, "open the drawer", fps=4
    )
    rows = r.prompt_log_p_true
    expect = np.mean([(x - x.min()) / (x.max() - x.min() + 1e-6) for x in rows], axis=0)
    np.testing.assert_allclose(r.progress, expect)


@pytest.mark.parametrize(
    ("prompts", "match"),
    [
        ((), "empty"),
        (("Did the robot {instruction}?",), "answer cue"),
        (("The robot did it. The answer is:",), "instruction"),
        ("The {instruction}. The answer is:", "not one string"),
    ],
)
def test_bad_prompt_sets(prompts, match):
    with pytest.raises((ValueError, TypeError), match=match):
        EnsembleConfig(prompts=prompts)


def test_instruction_likelihood_reads_every_instruction_token(qwen3_backend):
    r = topreward.load_scorer("instruction", backend=qwen3_backend, **SMALL).score(
        FRAMES, "open the drawer", fps=4
    )
    tokens = r.token_log_probs
    assert tokens.shape == (4, len(qwen3_backend.tokenize(" open the drawer")))
    np.testing.assert_allclose(r.values, tokens.mean(axis=1))


def test_score_instructions_equals_separate_scores(qwen3_backend):
    scorer = topreward.load_scorer("topreward", backend=qwen3_backend, **SMALL)
    ep = topreward.Episode.from_array(FRAMES, 4, "open the drawer")
    many = scorer.score_instructions(ep, ["open the drawer", "fold the towel"])
    for result, text in zip(many, ["open the drawer", "fold the towel"]):
        alone = scorer.score(FRAMES, text, fps=4)
        np.testing.assert_allclose(result.values, alone.values, atol=1e-5)
        assert result.instruction == text


def test_topreward_json_keys_unchanged_and_signals_round_trip(qwen3_backend, tmp_path):
    r = topreward.load_scorer("topreward", backend=qwen3_backend, **SMALL).score(
        FRAMES, "open the drawer", fps=4
    )
    data = json.loads(r.save(tmp_path / "t.json").read_text())
    assert set(data) >= OLD_TOPREWARD_KEYS
    assert data["log_p_true"] == r.values.tolist() and data["method"] == "topreward"
    e = topreward.load_scorer("ensemble", backend=qwen3_backend, **SMALL).score(
        FRAMES, "open the drawer", fps=4
    )
    back = topreward.ScoreResult.load(e.save(tmp_path / "e.json"))
    np.testing.assert_allclose(np.asarray(back.prompt_log_p_true), e.prompt_log_p_true)
    assert back.signals.keys() == e.signals.keys() and back.value_name == "mean log P(True)"
    with pytest.raises(AttributeError, match="no attribute or signal 'nope'"):
        _ = back.nope


def test_options_of_the_wrong_method_and_unknown_method(qwen3_backend):
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['combine'\].*valid:.*'signal'"):
        topreward.load_scorer("topreward", backend=qwen3_backend, combine="progress")
    with pytest.raises(
        ValueError, match="unknown scoring method 'vlac'; available: ensemble, gvl, instruction"
    ):
        topreward.load_scorer("vlac")


def test_prepare_is_model_free_and_picklable(qwen3_backend, tiny_model_dirs):
    import pickle

    from topreward.annotate import ScorerSpec

    scorer = topreward.load_scorer("ensemble", backend=qwen3_backend, **SMALL)
    preparer = pickle.loads(pickle.dumps(scorer.preparer))
    ep = topreward.Episode.from_array(FRAMES, 4, "open the drawer")
    np.testing.assert_array_equal(preparer(ep).frames, scorer.prepare(ep).frames)
    # what the Ray driver builds: options only, the patch grid read from the video processor config
    spec = ScorerSpec("ensemble", {**SMALL, "model": str(tiny_model_dirs["qwen3_vl"])})
    assert spec.preparer() == scorer.preparer
