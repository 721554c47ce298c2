"""Robometer: the released checkpoint layout, its prompt, one forward for every frame, and bad checkpoints.

The model is a tiny random-weight instance in the release's own layout (`make-tiny-model --arch robometer`),
found through the same model-table lookup a Hub id takes. Golden values from the authors' own code are
checked in `test_robometer_equals_the_authors_code`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from topreward import load_scorer
from topreward.cli import main
from topreward.scorers.pretrained import known_model, method_for
from topreward.tiny import make_tiny_model

from .lerobot_venv import LEROBOT_PYTHON, needs_lerobot

CLIP = Path(__file__).resolve().parents[1] / "src/topreward/assets/sample_pick_place.mp4"
TASK = "pick up the cube"


@pytest.fixture(scope="session")
def robometer_dir(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("robometer") / "ckpt", "robometer")


@pytest.fixture(scope="session")
def robometer(robometer_dir):
    return load_scorer(model=str(robometer_dir), device="cpu")  # no method: the table picks it


def frames(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (n, 64, 96, 3), dtype=np.uint8)


def test_the_model_table_picks_robometer_for_its_layout_and_its_names(robometer, robometer_dir, tmp_path):
    assert robometer.name == "robometer"
    assert (robometer.sampling.fps, robometer.sampling.max_frames, robometer.sampling.num_prefixes) == (
        1.0,
        512,
        None,
    )
    assert method_for("robometer/Robometer-4B") == "robometer"
    snapshot = tmp_path / "hub/models--robometer--Robometer-4B/snapshots/abc123"
    assert known_model(str(snapshot)).model == "robometer/Robometer-4B"
    assert method_for(str(tmp_path)) is None and method_for("Qwen/Qwen3-VL-8B-Instruct") is None
    # an explicit option still wins over the protocol's
    assert load_scorer(model=str(robometer_dir), device="cpu", fps=2.0).sampling.fps == 2.0


def test_prompt_is_their_collators(robometer):
    text = robometer.backend.progress_text("fold the towel", 2)
    frame = "<|vision_start|><|image_pad|><|vision_end|><|prog_token|>"
    assert text == (
        "<|im_start|>user\nThe task for the robot is 'fold the towel'. Given the trajectory video, predict the "
        "task progress at each frame, how far along the robot is towards completing the task, a float between 0 "
        "and 1, where 0 is the starting state and 1 is when the task is completed. If the robot is not "
        f"performing the same task, predict 0 progress.Picture 1: {frame}Picture 2: {frame}<|im_end|>\n"
    )
    ids = robometer.backend.token_ids
    assert [ids[t] for t in ids] == list(range(523, 528))  # added one by one after the base vocabulary


def test_one_forward_equals_one_forward_per_prefix(robometer, robometer_dir):
    reference = load_scorer(
        model=str(robometer_dir), device="cpu", path="reference", backend=robometer.backend
    )
    video = frames(7)
    fast, slow = (
        robometer.score(video, "fold the towel", fps=1.0),
        reference.score(video, "fold the towel", fps=1.0),
    )
    assert fast.prefix_lengths.tolist() == list(range(1, 8))  # every frame at 1 fps, in order
    np.testing.assert_allclose(fast.values, slow.values, atol=1e-4, rtol=0)
    np.testing.assert_allclose(fast.signals["head_success"], slow.signals["head_success"], atol=1e-4, rtol=0)
    # the backend's own per-prefix reference path agrees too, and the values are not all alike
    one, per_prefix = robometer.backend.frame_values(video, "t"), robometer.backend.prefix_values(video, "t")
    np.testing.assert_allclose(one.progress, per_prefix.progress, atol=1e-4, rtol=0)
    assert np.ptp(one.progress) > 1e-3 and np.all((one.progress >= 0) & (one.progress <= 1))
    # evaluation points at a subset of frames read the same forward
    sub = load_scorer(model=str(robometer_dir), num_prefixes=3, backend=robometer.backend)
    some = sub.score(video, "fold the towel", fps=1.0)
    np.testing.assert_allclose(some.values, fast.values[some.prefix_lengths - 1], atol=1e-6, rtol=0)


def test_frames_are_sampled_and_resized_as_their_local_example(robometer):
    mv = robometer.prepare(__import__("topreward").episode.as_episode(str(CLIP), "t"))
    # 60 frames at 10 fps -> int(round(60 * 1 / 10)) = 6 frames, linspace truncated to integers
    assert mv.source_indices.tolist() == np.linspace(0, 59, 6).astype(int).tolist()
    assert mv.frames.shape[1] % 32 == 0 and mv.frames.shape[2] % 32 == 0


def test_a_frame_folder_at_1_fps_is_scored_frame_by_frame_in_order(robometer, tmp_path):
    """Their local example's case: frames already at 1 fps give one value per frame, in the folder's order."""
    from PIL import Image

    from topreward.episode import as_episode

    clip = as_episode(str(CLIP), "t")
    frames = clip.frames(np.arange(0, clip.num_frames, 12))  # 5 frames, seconds apart
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(tmp_path / f"{i:03d}.png")
    result = robometer.score(str(tmp_path), "pick up the cube", fps=1.0)
    assert result.prefix_lengths.tolist() == [1, 2, 3, 4, 5] and len(result.values) == 5
    assert robometer.prepare(as_episode(str(tmp_path), "t", fps=1.0)).source_indices.tolist() == [
        0,
        1,
        2,
        3,
        4,
    ]
    same = robometer.score(frames, "pick up the cube", fps=1.0)  # the frames as an array: the same values
    np.testing.assert_allclose(result.values, same.values, atol=1e-6, rtol=0)
    reversed_ = robometer.score(frames[::-1].copy(), "pick up the cube", fps=1.0)
    assert not np.allclose(result.values, reversed_.values, atol=1e-4)  # order matters: the test can fail


def test_preference_head_reads_both_orders(robometer):
    a, b = frames(3, 1), frames(4, 2)
    p_ab = robometer.prefer(a, b, "fold the towel", fps=1.0)
    p_ba = robometer.prefer(b, a, "fold the towel", fps=1.0)
    assert 0 < p_ab < 1 and 0 < p_ba < 1 and abs(p_ab - p_ba) > 1e-6  # the order is read
    # trajectories of different frame sizes: each image keeps its own size, as their collator does
    small = np.random.default_rng(4).integers(0, 255, (2, 48, 64, 3), dtype=np.uint8)
    assert 0 < robometer.prefer(a, small, "fold the towel", fps=1.0) < 1
    text = robometer.backend.preference_text("fold the towel", 1, 1)
    assert (
        "This is Trajectory A. Picture 1: " in text
        and "<|split_token|>This is Trajectory B. Picture 2: " in text
    )
    assert text.endswith("Now predict the preference between the two trajectories.<|pref_token|><|im_end|>\n")


def test_score_cli_through_the_table(robometer_dir, tmp_path, capsys):
    out = tmp_path / "r.json"
    code = main(
        [
            "score",
            str(CLIP),
            "put the pen into the cup",
            "--model",
            str(robometer_dir),
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    result = json.loads(out.read_text())
    assert result["method"] == "robometer" and len(result["values"]) == 6
    assert result["model"]["family"] == "robometer"


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("Qwen3-VL-tiny-base"))
    return dst


def test_bad_checkpoints_are_refused_with_the_reason(robometer_dir, tmp_path):
    from topreward.backends.robometer import RobometerBackend

    # heads missing from the index
    no_heads = _copy(robometer_dir, tmp_path / "no_heads")
    index = json.loads((no_heads / "model.safetensors.index.json").read_text())
    index["weight_map"] = {k: v for k, v in index["weight_map"].items() if not k.startswith("success_head.")}
    (no_heads / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match=r"lacks the heads \['success_head'\]"):
        RobometerBackend(str(no_heads), device="cpu")
    # backbone tensors missing: refused, not run on random weights
    no_backbone = _copy(robometer_dir, tmp_path / "no_backbone")
    index = json.loads((no_backbone / "model.safetensors.index.json").read_text())
    index["weight_map"] = {k: v for k, v in index["weight_map"].items() if not k.startswith("model.visual.")}
    (no_backbone / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="backbone tensors"):
        RobometerBackend(str(no_backbone), device="cpu")
    # the embedding has no rows for the five added tokens
    no_tokens = _copy(robometer_dir, tmp_path / "no_tokens")
    config = json.loads((no_tokens / "config.json").read_text())
    config["text_config"]["vocab_size"] -= 5
    (no_tokens / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="lacks its special tokens"):
        RobometerBackend(str(no_tokens), device="cpu")
    # no config.yaml: not a Robometer checkpoint
    no_yaml = _copy(robometer_dir, tmp_path / "no_yaml")
    (no_yaml / "config.yaml").unlink()
    with pytest.raises(ValueError, match="no config.yaml"):
        RobometerBackend(str(no_yaml), device="cpu")
    # a shard named by the index is missing
    no_shard = _copy(robometer_dir, tmp_path / "no_shard")
    (no_shard / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(ValueError, match="names shards that are not in"):
        RobometerBackend(str(no_shard), device="cpu")


GOLDEN = Path(__file__).resolve().parent / "golden" / "robometer.json"


def test_robometer_equals_the_authors_code(robometer, robometer_dir):
    """`scripts/golden/record_robometer.py` ran the authors' loader, collator and `compute_batch_outputs`
    (and their eval server's frame steps) on this tiny checkpoint and the bundled clip; we must give the same
    text, ids and values."""
    import hashlib

    from topreward.episode import as_episode

    golden = json.loads(GOLDEN.read_text())
    weights = b"".join((robometer_dir / f).read_bytes() for f in sorted(golden["model_files_sha256"]))
    assert hashlib.sha256(weights).hexdigest() == golden["model_sha256"], (
        "the tiny checkpoint's bytes changed"
    )
    assert hashlib.sha256(CLIP.read_bytes()).hexdigest() == golden["clip_sha256"]
    backend = robometer.backend
    assert [backend.token_ids[t] for t in backend.token_ids] == list(golden["special_token_ids"].values())
    episode = as_episode(str(CLIP), "t")
    mv = robometer.prepare(episode)
    assert mv.source_indices.tolist() == golden["frame_indices"]
    for case in golden["progress"]:
        text = backend.progress_text(case["task"], len(mv.frames))
        assert text == case["text"]
        inputs = backend.processor(text=[text], images=list(mv.frames), do_resize=False, return_tensors="pt")
        assert inputs["input_ids"][0].tolist() == case["input_ids"]
        result = robometer.score(episode, case["task"])
        np.testing.assert_allclose(result.values, case["progress"], atol=1e-4, rtol=0)
        np.testing.assert_allclose(result.signals["head_success"], case["success"], atol=1e-4, rtol=0)
    frames = mv.frames
    for key, (a, b) in (
        ("A_forward_B_reversed", (frames, frames[::-1])),
        ("A_reversed_B_forward", (frames[::-1], frames)),
    ):
        case = golden["preference"][key]
        task = golden["preference"]["task"]
        assert backend.preference_text(task, len(a), len(b)) == case["text"]
        assert backend.preference(np.ascontiguousarray(a), np.ascontiguousarray(b), task) == pytest.approx(
            case["preference_prob"], abs=1e-4
        )
    per_prefix = golden["per_prefix"]
    read = backend.prefix_values(frames, per_prefix["task"])
    np.testing.assert_allclose(read.progress, per_prefix["progress_last"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(read.success, per_prefix["success_last"], atol=1e-4, rtol=0)
    # their eval server's frame steps (process_batch_helper, use_frame_steps=True): the same frames per point,
    # the same values
    from topreward.scorers.robometer import frame_step_indices

    steps = golden["frame_steps"]
    assert [frame_step_indices(t, 4).tolist() for t in range(1, len(frames) + 1)] == steps[
        "sub_sample_frames"
    ]
    stepped = load_scorer("robometer", backend=backend, frame_steps=4).score(episode, steps["task"])
    np.testing.assert_allclose(stepped.values, steps["progress"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(stepped.signals["head_success"], steps["success"], atol=1e-4, rtol=0)


@needs_lerobot
def test_robometer_equals_lerobots_port(robometer, robometer_dir, tmp_path):
    """LeRobot 0.6's own port (`lerobot.rewards.robometer`, run in its venv by
    scripts/lerobot_ci/robometer_port.py) fed the same seven frames: the same prompt ids and, for every frame,
    the same progress and success; its reward is the last frame's progress. Its dataset annotation (frame
    steps, K = 4, a forward per frame) reads the frames it picks as we do; it picks them by rounding, the
    authors' eval server (and `frame_steps=4`) by truncating."""
    import os
    import subprocess

    from topreward.episode import as_episode

    clip = as_episode(str(CLIP), "t")
    frames = clip.frames(np.arange(0, clip.num_frames, 9))
    np.save(tmp_path / "frames.npy", frames)
    script = Path(__file__).resolve().parents[1] / "scripts" / "lerobot_ci" / "robometer_port.py"
    run = subprocess.run(
        [LEROBOT_PYTHON, str(script), str(robometer_dir), str(tmp_path / "frames.npy"), TASK, str(tmp_path), "4"],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    theirs = json.loads(run.stdout.strip().splitlines()[-1])
    if "missing" in theirs:
        pytest.skip(f"this lerobot has no Robometer port ({theirs['missing']})")
    ours = robometer.score(frames, TASK, fps=1.0)
    backend = robometer.backend
    mv = robometer.prepare(as_episode(frames, TASK, fps=1.0))
    ids = backend.processor(
        text=[backend.progress_text(TASK, len(frames))], images=list(mv.frames), do_resize=False
    )["input_ids"][0]
    assert list(ids) == theirs["input_ids"]
    np.testing.assert_allclose(ours.values, theirs["progress"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(ours.signals["head_success"], theirs["success"], atol=1e-4, rtol=0)
    assert theirs["reward"] == pytest.approx(float(np.clip(ours.values[-1], 0, 1)), abs=1e-4)
    # its annotation's frame steps: the same forward on the frames it picks ...
    from topreward.scorers.robometer import frame_step_indices

    picked = [np.asarray(i) for i in theirs["frame_steps_indices"]]
    by_hand = [backend.frame_values(mv.frames[i], TASK).progress[-1] for i in picked]
    np.testing.assert_allclose(by_hand, theirs["frame_steps_rewards"], atol=1e-4, rtol=0)
    # ... but lerobot 0.6.1 rounds where the authors' eval server truncates: where the picks agree, so do
    # the values; where they do not (point 2: frames 0 0 1 1 against 0 0 0 1), they are other frames
    ours_picked = [frame_step_indices(t, 4) for t in range(1, len(frames) + 1)]
    assert all(np.array_equal(i, np.linspace(0, t, 4).round()) for t, i in enumerate(picked))
    same = [np.array_equal(a, b) for a, b in zip(picked, ours_picked)]
    assert same[0] and not same[1]
    stepped = load_scorer("robometer", backend=backend, frame_steps=4).score(frames, TASK, fps=1.0)
    np.testing.assert_allclose(
        stepped.values[same], np.asarray(theirs["frame_steps_rewards"])[same], atol=1e-4, rtol=0
    )


def test_frame_steps_read_each_point_from_its_own_frames(robometer):
    """Their eval server's frame steps: point t sees np.linspace(0, t - 1, K, dtype=int), so with K = 4 point 4
    sees frames 0-3 (the plain protocol's 4-frame prefix) and point 1 sees frame 0 four times; a stream gives
    the same values; K < 0 and K = 1 (the first frame only) are refused."""
    from topreward.scorers.robometer import frame_step_indices

    clip = __import__("topreward").episode.as_episode(str(CLIP), "t")
    frames = clip.frames(np.arange(0, clip.num_frames, 9))
    assert frame_step_indices(1, 4).tolist() == [0, 0, 0, 0]
    assert frame_step_indices(2, 4).tolist() == [0, 0, 0, 1]  # truncated, as their eval server
    assert frame_step_indices(6, 4).tolist() == [0, 1, 3, 5]  # 1.67 -> 1, 3.33 -> 3
    stepped_scorer = load_scorer("robometer", backend=robometer.backend, frame_steps=4)
    stepped = stepped_scorer.score(frames, TASK, fps=1.0)
    plain = robometer.score(frames, TASK, fps=1.0)
    assert len(stepped.values) == len(frames)
    assert stepped.values[3] == pytest.approx(plain.values[3], abs=1e-5)
    four_of_first = robometer.score(np.repeat(frames[:1], 4, axis=0), TASK, fps=1.0)
    assert stepped.values[0] == pytest.approx(four_of_first.values[-1], abs=1e-5)
    assert abs(stepped.values[-1] - plain.values[-1]) > 1e-3  # another protocol: the test can tell them apart
    session = stepped_scorer.stream(TASK, source_fps=1.0)
    online = []
    for frame in frames:
        session.push(frame)
        online.append(session.score().value)
    np.testing.assert_allclose(online, stepped.values, atol=1e-5, rtol=0)
    for bad in (-1, 1):
        with pytest.raises(ValueError, match="frame_steps must be 0 .* or at least 2"):
            load_scorer("robometer", backend=robometer.backend, frame_steps=bad)


def test_control_tokens_in_the_task_are_refused(robometer):
    for text, token in (
        ("open <|prog_token|> it", "<|prog_token|>"),
        ("open <|image_pad|> it", "<|image_pad|>"),
    ):
        with pytest.raises(ValueError, match="instruction") as e:
            robometer.score(frames(2), text, fps=1.0)
        assert token in str(e.value)


def test_streaming_appends_frames_to_the_cache(robometer):
    """A stream session: every query runs only the new frames on the kept KV cache (`RobometerCache`), and
    equals one forward over the frames so far; frames are sized as score() sizes them."""
    from topreward.backends.robometer import RobometerCache

    video = frames(7, 3)
    session = robometer.stream("fold the towel", source_fps=1.0, max_frames=16)
    got = []
    for chunk in (video[:1], video[1:3], video[3:4], video[4:]):
        session.push(chunk)
        got.append(session.score())
    held = session.video.frames
    assert held.shape[1:3] == (64, 96)  # qwen-vl-utils' rounding to 32 (no budget step-down)
    one = robometer.backend.frame_values(held, "fold the towel")
    np.testing.assert_allclose([s.value for s in got], one.progress[[0, 2, 3, 6]], atol=1e-4, rtol=0)
    np.testing.assert_allclose([s.signals["head_success"] for s in got], one.success[[0, 2, 3, 6]], atol=1e-4)
    assert [s.progress for s in got] == [s.value for s in got]  # Robometer's own progress, not a min-max
    cache = next(iter(robometer._online.values()))
    assert isinstance(cache, RobometerCache) and cache.num_frames == 7
    # the cache holds every frame's values; a stream that thins its frames starts a new cache
    np.testing.assert_allclose(cache.progress, one.progress, atol=1e-4, rtol=0)
    thin = robometer.stream("fold the towel", source_fps=1.0, max_frames=4)
    thin.push(video)
    last = thin.score()
    assert thin.video.num_frames == 4
    expected = robometer.backend.frame_values(thin.video.frames, "fold the towel").progress[-1]
    assert last.value == pytest.approx(expected, abs=1e-4)


def test_the_reward_server_streams_robometer(robometer):
    """`topreward serve --model robometer/...`: sessions on loopback get the same values as a local stream."""
    from topreward.client import RewardClient
    from topreward.serve import ServeLimits, serve

    srv, service = serve(robometer, "127.0.0.1", 0, ServeLimits(max_side=256, max_session_frames=12))
    try:
        session = RewardClient(f"http://127.0.0.1:{srv.server_address[1]}").start("fold the towel", fps=1)
        video = frames(4, 5)
        session.push(video[:2])
        first = session.score()
        session.push(video[2:])
        last = session.score()
        session.close()
    finally:
        srv.shutdown()
        service.close()
    local = robometer.backend.frame_values(video, "fold the towel")
    assert first["value"] == pytest.approx(local.progress[1], abs=1e-4)
    assert last["value"] == pytest.approx(local.progress[3], abs=1e-4)
    assert last["progress"] == pytest.approx(last["value"])


def test_score_against_a_second_video_reads_the_preference_head(robometer_dir, robometer, tmp_path, capsys):
    from topreward.video import write_video

    other = write_video(tmp_path / "other.mp4", frames(12, 9), fps=4)
    out = tmp_path / "r.json"
    argv = ["score", str(CLIP), "put the pen into the cup", "--model", str(robometer_dir), "--device", "cpu"]
    assert main([*argv, "--against", str(other), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    mine = robometer.prefer(str(CLIP), str(other), "put the pen into the cup")
    assert (
        result["preference"] == pytest.approx(mine, abs=1e-6)
        and "makes more progress than" in capsys.readouterr().out
    )
    assert main([*argv, "--method", "topreward", "--against", str(other)]) == 2
    assert "preference head" in capsys.readouterr().err
