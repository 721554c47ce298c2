"""Streaming sessions: the newest prefix's value equals offline scoring of the same frames; thinning; bad input."""

from __future__ import annotations

import numpy as np
import pytest

import topreward
from topreward.backends.base import ModelVideo
from topreward.scorers.ensemble import PROMPTS
from topreward.stream import score_many

from .conftest import colour_frames

RAW = colour_frames(9, 64, 96)


def offline_values(scorer, video: ModelVideo, instruction: str) -> np.ndarray:
    """Every prefix of the session's frames, scored the offline way (one cache over the whole video)."""
    plain = ModelVideo(video.frames, video.source_indices, video.source_fps)  # rate from the indices
    return scorer.compute(plain, instruction, list(range(1, plain.num_frames + 1))).values


@pytest.mark.parametrize(("method", "every"), [("topreward", 1), ("topreward", 2), ("instruction", 1)])
def test_stream_equals_offline(backend, method, every):
    scorer = topreward.load_scorer(method, backend=backend)
    session = scorer.stream("open the drawer", source_fps=10, every=every)
    values = []
    for i in range(len(RAW)):  # one frame per step, a query after each kept frame
        if session.push(RAW[i]):
            values.append(session.score().value)
    held = session.video
    assert held.num_frames == len(range(0, len(RAW), every)) and held.source_indices.tolist() == list(
        range(0, 9, every)
    )
    np.testing.assert_allclose(values, offline_values(scorer, held, "open the drawer"), atol=1e-4, rtol=0)
    assert np.ptp(values) > 0.01  # the comparison can fail


def test_stream_signals_progress_and_chunks(qwen3_backend):
    scorer = topreward.load_scorer("topreward", backend=qwen3_backend)
    session = scorer.stream("open the drawer", source_fps=10)
    assert session.push(RAW[:3]) == 3
    first = session.score()
    assert first.progress == 0.0 and first.num_frames == 3 and first.end_frame == 2
    assert first.value == first.signals["log_p_true"] and "log_p_false" in first.signals
    session.push(RAW[3:])
    last = session.score()
    assert last.num_frames == 9 and 0.0 <= last.progress <= 1.0
    assert [end for end, _ in session.history] == [2, 8]


def test_stream_thins_when_full(qwen3_backend):
    scorer = topreward.load_scorer("topreward", backend=qwen3_backend)
    session = scorer.stream("open the drawer", source_fps=10, max_frames=4)
    session.push(RAW)  # 9 frames > 4: every second, then every fourth frame is kept
    s = session.score()
    assert s.every == 4 and session.video.source_indices.tolist() == [0, 4, 8]
    session.push(colour_frames(4, 64, 96))  # pushed frames 9..12: only 12 is kept
    assert session.video.source_indices.tolist() == [0, 4, 8, 12]
    np.testing.assert_allclose(
        session.score().value, offline_values(scorer, session.video, "open the drawer")[-1], atol=1e-4
    )


def test_stream_bad_input(qwen3_backend):
    scorer = topreward.load_scorer("topreward", backend=qwen3_backend)
    with pytest.raises(ValueError, match="source_fps"):
        scorer.stream("open the drawer", source_fps=float("nan"))
    with pytest.raises(ValueError, match="every"):
        scorer.stream("open the drawer", source_fps=10, every=0)
    with pytest.raises(ValueError, match="every"):
        scorer.stream("open the drawer", source_fps=10, every=True)
    with pytest.raises(ValueError, match="max_frames"):
        scorer.stream("open the drawer", source_fps=10, max_frames=1)
    with pytest.raises(ValueError, match="instruction is empty"):
        scorer.stream("  ", source_fps=10)
    session = scorer.stream("open the drawer", source_fps=10)
    with pytest.raises(ValueError, match="push at least one frame"):
        session.score()
    session.push(RAW[0])
    with pytest.raises(ValueError, match="one camera at one resolution"):
        session.push(colour_frames(1, 32, 32))
    with pytest.raises(ValueError, match="uint8"):
        session.push(RAW[:1].astype(np.float32))
    assert session.pushed == 1 and session.video.num_frames == 1  # failed pushes changed nothing
    session.close()
    with pytest.raises(ValueError, match="closed"):
        session.push(RAW[1])


def test_score_many_equals_one_by_one(backend):
    scorer = topreward.load_scorer("topreward", backend=backend)
    ens = topreward.load_scorer("ensemble", backend=backend, prompts=PROMPTS[:3])
    sessions = [
        scorer.stream("open the drawer", source_fps=10),
        scorer.stream("fold the towel", source_fps=10, every=2),
        ens.stream("stack the blocks", source_fps=10),
    ]
    for s, n in zip(sessions, (3, 8, 5)):  # odd and even lengths: padded groups re-encoded per session
        s.push(colour_frames(n, 64, 96) if n != 8 else RAW[:8])
    calls: list[int] = []
    lm = backend.model.model.language_model
    handle = lm.register_forward_pre_hook(
        lambda m, a, kw: calls.append(kw["inputs_embeds"].shape[1]), with_kwargs=True
    )
    try:
        together = score_many(sessions)  # 1 + 1 + 3 requests: one packed forward
    finally:
        handle.remove()
    assert len(calls) == 1
    alone = [s.score() for s in sessions]
    for a, b in zip(together, alone):
        assert a.num_frames == b.num_frames
        np.testing.assert_allclose(a.value, b.value, atol=1e-4, rtol=0)
    assert len({round(a.value, 3) for a in together}) == 3  # different sessions, different answers


def test_lrm_heads_stream_the_newest_frame(qwen3_backend):
    completion = topreward.load_scorer("lrm-completion", backend=qwen3_backend)
    session = completion.stream("open the drawer", source_fps=10)
    values = []
    for i in range(3):
        session.push(RAW[i])
        values.append(session.score().value)
    offline = [completion.compute(session.video, "open the drawer", [k]).values[0] for k in (1, 2, 3)]
    np.testing.assert_allclose(values, offline, atol=1e-9)
    assert all(0.0 <= v <= 1.0 for v in values)

    contrast = topreward.load_scorer("lrm-contrast", backend=qwen3_backend)
    session = contrast.stream("open the drawer", source_fps=10, every=2)
    session.push(RAW[:3])  # frames 0 and 2 kept
    assert session.score().value == 0.0  # nothing to compare with yet
    session.push(RAW[3:5])  # frame 4 kept
    s = session.score()
    v = session.video
    p = 0.5 * (
        contrast.p_second(v, "open the drawer", 2, 3) + 1 - contrast.p_second(v, "open the drawer", 3, 2)
    )
    assert s.value == pytest.approx(2 * p - 1) and s.signals["p_closer"] == pytest.approx(p)
    # score_many mixes cache sessions (batched) and frame sessions (one by one), in order
    sessions = [completion.stream("open the drawer", source_fps=10), topreward.load_scorer("topreward", backend=qwen3_backend).stream("open the drawer", source_fps=10)]  # fmt: skip
    for one in sessions:
        one.push(RAW[:2])
    together = score_many(sessions)
    np.testing.assert_allclose(
        [t.value for t in together], [one.score().value for one in sessions], atol=1e-4
    )


def test_push_many_grows_every_session_in_one_round(backend):
    """A round of 8 sessions pushing and querying (the server's, a vector env's): one vision-encoder call and
    two language-model forwards (the caches grow in one, the queries are answered in one), whatever the number
    of sessions, on the families whose caches stand side by side; the same values as pushing one by one."""
    from topreward.stream import push_many

    scorer = topreward.load_scorer("topreward", backend=backend)
    texts = ["open the drawer", "fold the towel", "stack the blocks", "press the button"] * 2

    def start() -> list:
        sessions = [scorer.stream(t, source_fps=10, every=2 if i == 5 else 1) for i, t in enumerate(texts)]
        for i, s in enumerate(sessions):  # odd and even lengths: some last groups are padded
            s.push(colour_frames(8 + i)[i : i + 1 + i % 4])
        return sessions

    batched, alone = start(), start()
    visual, lm = backend.model.model.visual, backend.model.model.language_model
    calls = {"vision": 0, "language": 0}
    hooks = [
        visual.register_forward_hook(lambda *a: calls.__setitem__("vision", calls["vision"] + 1)),
        lm.register_forward_hook(lambda *a: calls.__setitem__("language", calls["language"] + 1)),
    ]
    packed = backend.family.fast_path == "packed"
    try:
        for step in range(2):
            new = [colour_frames(12)[step * 3 : step * 3 + 1 + (i + step) % 3] for i in range(len(texts))]
            calls.update(vision=0, language=0)
            kept = push_many(batched, new)
            together = score_many(batched)
            if packed:
                assert calls == {"vision": 1, "language": 2}, calls
            calls.update(vision=0, language=0)
            one_by_one = [s.push(f) for s, f in zip(alone, new)]
            singles = [s.score() for s in alone]
            # one by one: a forward per query, and per push that keeps a frame
            assert calls["language"] >= len(texts) + 7 or not packed
            assert kept == one_by_one
            for a, b in zip(together, singles):
                assert (a.num_frames, a.end_frame) == (b.num_frames, b.end_frame)
                np.testing.assert_allclose(a.value, b.value, atol=1e-4, rtol=0)
    finally:
        for h in hooks:
            h.remove()
    assert len({round(s.value, 3) for s in together}) > 1  # the comparison can fail


def test_push_many_fails_one_push_alone(qwen3_backend):
    from topreward.stream import push_many

    scorer = topreward.load_scorer("topreward", backend=qwen3_backend)
    sessions = [scorer.stream("open the drawer", source_fps=10) for _ in range(3)]
    for s in sessions:
        s.push(RAW[:2])
    bad = colour_frames(1, 32, 32)  # another resolution than the session's frames
    got = push_many(sessions, [RAW[2:4], bad, RAW[2:3]])
    assert got[0] == 2 and got[2] == 1 and isinstance(got[1], ValueError) and "resolution" in str(got[1])
    assert [s.video.num_frames for s in sessions] == [4, 2, 3]  # the failed push changed nothing
    twice = push_many([sessions[0], sessions[0]], [RAW[4:5], RAW[5:7]])  # one session twice: in order
    assert twice == [1, 2] and sessions[0].video.source_indices.tolist() == list(range(7))
    with pytest.raises(ValueError, match="one per session"):
        push_many(sessions, [RAW[:1]])
