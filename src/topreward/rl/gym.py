"""`TopRewardWrapper`: a gymnasium env whose reward comes from a VLM scoring the episode's video online.

Recipe, per episode:
  1. `reset()` starts a new streaming session (`scorer.stream(instruction, ...)`), pushes the first
     frame — `env.render()` (the env must have `render_mode="rgb_array"`) or `obs[frame_key]` — and
     queries it once: the baseline of the first delta.
  2. Every `step()` pushes the new frame; every `interval` steps, and at the episode's last step
     (terminated or truncated), the session is queried (the interval-hold scheme of Large Reward Models
     §III-D: query every K steps, hold in between). A query costs the prompt suffix on the growing video
     cache, not a re-run of the episode.
  3. The VLM reward at a query (`reward`):
       - `value_delta` (default): the raw value's change since the previous query (TOPReward: the change of
         log P(" True")), the first against the reset frame's. Summed over an episode's queries it
         telescopes to last - first.
       - `value`: the raw value itself (TOPReward: log P(" True"), a negative number).
       - `progress`: the session's running min-max progress in [0, 1] (`topreward.stream`).
       - `progress_delta`: its change since the previous query.
  4. Between queries (`between`): `hold` repeats the last query's reward, `zero` gives 0 (the reward is
     paid only at queries), `env` gives the env's own reward.
  5. The reward returned is `(1 - mix) * vlm + mix * env_reward` (`mix=0`: the VLM's alone).
`info["topreward"]` holds the raw numbers: whether this step queried, the value, progress and signals of
the last query, the frames the session holds; `info["env_reward"]` the env's own reward.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

REWARDS: tuple[str, ...] = ("value_delta", "value", "progress", "progress_delta")
BETWEEN: tuple[str, ...] = ("hold", "zero", "env")


def _gymnasium():
    try:
        import gymnasium
    except ImportError as e:
        raise ImportError("the gym wrapper needs gymnasium: pip install 'topreward[rl]'") from e
    return gymnasium


def _wrapper_base():
    return _gymnasium().Wrapper


class TopRewardWrapper(_wrapper_base()):
    """Replace (or mix) a gymnasium env's reward with a VLM's online score of the episode's video.

    Args:
        env: a gymnasium env; with `frame_key=None` it must render RGB frames (`render_mode="rgb_array"`).
        scorer: a method on the video cache (`topreward.load_scorer("topreward", ...)`, `ensemble`, ...).
        instruction: the task text.
        interval: query the VLM every this many steps (and at the episode's end).
        reward: value_delta | value | progress | progress_delta (see the module docstring).
        between: hold | zero | env — the reward on steps without a query.
        mix: weight of the env's own reward, in [0, 1].
        frame_key: read frames from `obs[frame_key]` instead of `env.render()`.
        every: keep every n-th frame in the session (frames per second seen = env fps / every).
        max_frames: cap on frames held per episode (`topreward.stream` thins beyond it).
    """

    def __init__(
        self,
        env,
        scorer,
        instruction: str,
        *,
        interval: int = 10,
        reward: Literal["value_delta", "value", "progress", "progress_delta"] = "value_delta",
        between: Literal["hold", "zero", "env"] = "hold",
        mix: float = 0.0,
        frame_key: str | None = None,
        every: int = 1,
        max_frames: int = 256,
        source_fps: float | None = None,
    ) -> None:
        super().__init__(env)
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f"interval must be a whole number of steps >= 1, got {interval!r}")
        if reward not in REWARDS:
            raise ValueError(f"reward={reward!r}; choose one of {', '.join(REWARDS)}")
        if between not in BETWEEN:
            raise ValueError(f"between={between!r}; choose one of {', '.join(BETWEEN)}")
        if not (isinstance(mix, (int, float)) and math.isfinite(mix) and 0.0 <= mix <= 1.0):
            raise ValueError(f"mix must be a number in [0, 1] (the env reward's weight), got {mix!r}")
        if frame_key is None and getattr(env, "render_mode", None) != "rgb_array":
            raise ValueError(
                f"the env renders with render_mode={getattr(env, 'render_mode', None)!r}; make it with "
                "render_mode='rgb_array' or pass frame_key= (an observation key holding the camera image)"
            )
        if not hasattr(scorer, "stream"):
            raise ValueError(f"method {scorer.name!r} cannot stream; use topreward, ensemble or instruction")
        fps = source_fps or float(env.metadata.get("render_fps") or 30.0)
        self.scorer, self.instruction = scorer, instruction
        self.interval, self.reward_kind, self.between, self.mix = interval, reward, between, float(mix)
        self.frame_key, self.every, self.max_frames, self.source_fps = frame_key, every, max_frames, fps
        scorer.stream(instruction, source_fps=fps, every=every, max_frames=max_frames).close()  # checks now
        self.session = None
        self._steps = 0
        self._last: dict[str, Any] = {}
        self._last_reward = 0.0

    def _frame(self, obs) -> np.ndarray:
        if self.frame_key is None:
            return self.env.render()
        if not isinstance(obs, dict) or self.frame_key not in obs:
            keys = sorted(obs) if isinstance(obs, dict) else type(obs).__name__
            raise ValueError(f"frame_key={self.frame_key!r} is not in the observation (it has: {keys})")
        return np.asarray(obs[self.frame_key])

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        if self.session is not None:
            self.session.close()
        self.session = self.scorer.stream(
            self.instruction, source_fps=self.source_fps, every=self.every, max_frames=self.max_frames
        )
        self.session.push(self._frame(obs))
        self._steps, self._last, self._last_reward = 0, {}, 0.0
        self._query()  # the first frame's value: the baseline of the first delta
        return obs, info

    def step(self, action):
        if self.session is None:
            raise ValueError("call reset() before step()")
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        self.session.push(self._frame(obs))
        self._steps += 1
        queried = self._steps % self.interval == 0 or terminated or truncated
        if queried:
            vlm = self._query()
        elif self.between == "hold":
            vlm = self._last_reward
        elif self.between == "zero":
            vlm = 0.0
        else:
            vlm = float(env_reward)
        info = dict(info)
        info["env_reward"] = float(env_reward)
        info["topreward"] = {"queried": bool(queried), **self._last}
        return obs, (1.0 - self.mix) * vlm + self.mix * float(env_reward), terminated, truncated, info

    def _query(self) -> float:
        score = self.session.score()
        previous = self._last
        current = {
            "value": score.value,
            "progress": score.progress,
            "num_frames": score.num_frames,
            "signals": score.signals,
        }
        if self.reward_kind == "value":
            reward = score.value
        elif self.reward_kind == "progress":
            reward = score.progress
        else:
            key = "value" if self.reward_kind == "value_delta" else "progress"
            reward = current[key] - previous[key] if previous else 0.0
        self._last, self._last_reward = current, float(reward)
        return float(reward)

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
        super().close()
