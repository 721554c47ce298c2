"""The gymnasium wrapper on real Meta-World envs with the tiny model, and the PPO example."""

from __future__ import annotations

import importlib.util
import runpy
from pathlib import Path

import numpy as np
import pytest

import topreward
from topreward.backends.base import ModelVideo

from .conftest import colour_frames

gymnasium = pytest.importorskip(
    "gymnasium", reason="the gym wrapper needs gymnasium: pip install 'topreward[rl]'"
)


def need_sim() -> None:
    if importlib.util.find_spec("metaworld") is None:
        pytest.skip("metaworld not installed: pip install 'topreward[sim]'")
    from topreward.sim import rendering_problem

    problem = rendering_problem()
    if problem:
        pytest.skip(f"Meta-World cannot render here: {problem}")


@pytest.fixture
def reach():
    need_sim()
    from topreward.sim import make_env

    env = make_env("reach-v3", 0, size=64, max_steps=12)
    yield env
    env.close()


def test_wrapper_queries_every_interval_and_holds(reach, qwen3_backend):
    from topreward.rl import TopRewardWrapper

    scorer = topreward.load_scorer("topreward", backend=qwen3_backend)
    env = TopRewardWrapper(reach, scorer, "reach the goal", interval=4)
    env.reset(seed=0)
    baseline = env._last["value"]
    rng = np.random.default_rng(0)
    rewards, queried, values = [], [], []
    done = False
    while not done:
        _, r, terminated, truncated, info = env.step(rng.uniform(-1, 1, 4).astype(np.float32))
        rewards.append(r)
        queried.append(info["topreward"]["queried"])
        values.append(info["topreward"]["value"])
        assert "env_reward" in info
        done = terminated or truncated
    assert [i + 1 for i, q in enumerate(queried) if q] == [4, 8, 12]  # every 4 steps; 12 is also the end
    assert rewards[4:7] == [rewards[3]] * 3  # held between queries
    # value deltas telescope: their sum over the queries is the last value minus the reset frame's
    np.testing.assert_allclose(
        sum(r for r, q in zip(rewards, queried) if q), values[-1] - baseline, atol=1e-9
    )
    # the value equals offline scoring of the frames the session holds (reset frame + 12 steps)
    held = env.session.video
    assert held.num_frames == 13
    offline = scorer.compute(
        ModelVideo(held.frames, held.source_indices, held.source_fps), "reach the goal", [13]
    )
    np.testing.assert_allclose(values[-1], offline.values[-1], atol=1e-4)
    env.close()


def test_wrapper_mix_and_between(reach, qwen3_backend):
    from topreward.rl import TopRewardWrapper

    scorer = topreward.load_scorer("topreward", backend=qwen3_backend)
    env = TopRewardWrapper(
        reach, scorer, "reach the goal", interval=3, between="env", mix=0.5, reward="progress"
    )
    env.reset(seed=0)
    _, r, _, _, info = env.step(np.zeros(4, np.float32))  # no query at step 1: the env's reward, mixed
    assert not info["topreward"]["queried"]
    assert r == pytest.approx(info["env_reward"])  # 0.5 * env + 0.5 * env
    env.step(np.zeros(4, np.float32))
    _, r, _, _, info = env.step(np.zeros(4, np.float32))
    assert info["topreward"]["queried"] and 0.0 <= info["topreward"]["progress"] <= 1.0
    assert r == pytest.approx(0.5 * info["topreward"]["progress"] + 0.5 * info["env_reward"])


class ImageObsEnv(gymnasium.Env):
    """Test helper: a dict observation holding a camera image, no rendering."""

    observation_space = gymnasium.spaces.Dict(
        {
            "image": gymnasium.spaces.Box(0, 255, (64, 96, 3), np.uint8),
            "state": gymnasium.spaces.Box(-1, 1, (2,)),
        }
    )
    action_space = gymnasium.spaces.Box(-1, 1, (2,))

    def __init__(self) -> None:
        self.frames, self.t = colour_frames(10, 64, 96), 0

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return {"image": self.frames[0], "state": np.zeros(2, np.float32)}, {}

    def step(self, action):
        self.t += 1
        obs = {"image": self.frames[self.t], "state": np.zeros(2, np.float32)}
        return obs, 1.0, self.t == 9, False, {}


def test_frames_from_an_observation_key(qwen3_backend):
    from topreward.rl import TopRewardWrapper

    scorer = topreward.load_scorer("topreward", backend=qwen3_backend)
    env = TopRewardWrapper(
        ImageObsEnv(), scorer, "open the drawer", interval=2, frame_key="image", source_fps=10
    )
    env.reset()
    for _ in range(4):
        env.step(np.zeros(2, np.float32))
    assert env.session.video.num_frames == 5
    bad = TopRewardWrapper(ImageObsEnv(), scorer, "open the drawer", frame_key="camera", source_fps=10)
    with pytest.raises(ValueError, match="frame_key='camera' is not in the observation.*image"):
        bad.reset()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"interval": 0}, "interval"),
        ({"reward": "success"}, "reward="),
        ({"between": "last"}, "between="),
        ({"mix": float("nan")}, "mix"),
        ({"mix": 1.5}, "mix"),
    ],
)
def test_wrapper_bad_options(qwen3_backend, kwargs, match):
    from topreward.rl import TopRewardWrapper

    scorer = topreward.load_scorer("topreward", backend=qwen3_backend)
    with pytest.raises(ValueError, match=match):
        TopRewardWrapper(ImageObsEnv(), scorer, "open the drawer", frame_key="image", source_fps=10, **kwargs)


def test_wrapper_needs_frames(qwen3_backend):
    from topreward.rl import TopRewardWrapper

    scorer = topreward.load_scorer("topreward", backend=qwen3_backend)
    with pytest.raises(ValueError, match="render_mode='rgb_array' or pass frame_key"):
        TopRewardWrapper(ImageObsEnv(), scorer, "open the drawer")
    with pytest.raises(ValueError, match="reset"):
        TopRewardWrapper(ImageObsEnv(), scorer, "open the drawer", frame_key="image", source_fps=10).step(
            np.zeros(2)
        )


def test_ppo_example_runs_two_iterations(tmp_path, capsys):
    need_sim()
    pytest.importorskip(
        "stable_baselines3", reason="the PPO example needs stable-baselines3: pip install 'topreward[rl]'"
    )
    example = Path(__file__).parents[1] / "examples" / "ppo_metaworld.py"
    main = runpy.run_path(str(example))["main"]
    args = ["--steps", "32", "--n-steps", "16", "--batch-size", "16", "--episode-steps", "16"]
    assert main([*args, "--interval", "4", "--size", "64", "--save", str(tmp_path / "ppo.zip")]) == 0
    assert (tmp_path / "ppo.zip").exists()
    assert "total_timesteps" in capsys.readouterr().out  # SB3's log of the two iterations


def test_vector_wrapper_scores_sub_envs_together_and_restarts(qwen3_backend):
    need_sim()
    from gymnasium.vector import SyncVectorEnv

    from topreward.rl import TopRewardVectorWrapper
    from topreward.sim import make_env

    scorer = topreward.load_scorer("topreward", backend=qwen3_backend)
    venv = SyncVectorEnv([lambda s=s: make_env("reach-v3", s, size=64, max_steps=4) for s in (0, 1)])
    env = TopRewardVectorWrapper(venv, scorer, ["reach the goal", "reach the target"], interval=2)
    env.reset(seed=0)
    calls: list[int] = []
    lm = qwen3_backend.model.model.language_model
    handle = lm.register_forward_pre_hook(lambda m, a, kw: calls.append(1), with_kwargs=True)
    try:
        queried, values, rewards = [], [], []
        for _ in range(6):  # episodes of 4 steps: step 5 resets both sub-envs (next-step autoreset)
            _, r, _, _, info = env.step(np.zeros((2, 4), np.float32))
            queried.append(info["topreward_queried"].tolist())
            values.append(info["topreward_value"])
            rewards.append(r)
    finally:
        handle.remove()
    assert [q[0] for q in queried] == [False, True, False, True, False, False]
    assert rewards[4].tolist() == [0.0, 0.0]  # the reset step pays nothing and starts new sessions
    assert [p.session.video.num_frames for p in env.parts] == [2, 2]
    # the last query of each sub-env was its new episode's first frame (the baseline, at the reset step)
    for i, part in enumerate(env.parts):
        held = part.session.video
        video = ModelVideo(held.frames, held.source_indices, held.source_fps)
        offline = scorer.compute(video, part.instruction, [1])
        np.testing.assert_allclose(values[-1][i], offline.values[0], atol=1e-4)
    assert values[-1][0] != values[-1][1]
    # the query steps (2, 4 and the reset step 5) scored both sub-envs in one packed forward each; the
    # sessions grew in one forward per step for both sub-envs (`push_many`: steps 1-4 and 6), and the
    # reset step built each new session's cache on its own (2)
    assert len(calls) == 3 + 5 + 2
    env.close()
