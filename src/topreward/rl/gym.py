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

from topreward.extras import optional

REWARDS: tuple[str, ...] = ("value_delta", "value", "progress", "progress_delta")
BETWEEN: tuple[str, ...] = ("hold", "zero", "env")


def _gymnasium():
    return optional("gymnasium", "rl", "the gym wrapper")


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

    # ---- one episode's rewards: what this wrapper and the vector wrapper's sub-envs both do ------------
    def begin(self, frame: np.ndarray) -> None:
        """A new episode: a new session holding its first frame."""
        if self.session is not None:
            self.session.close()
        self.session = self.scorer.stream(
            self.instruction, source_fps=self.source_fps, every=self.every, max_frames=self.max_frames
        )
        self.session.push(frame)
        self._steps, self._last, self._last_reward = 0, {}, 0.0

    def advance(self, frame: np.ndarray, ended: bool) -> bool:
        """Push the frame of a step; whether the VLM is due (every `interval` steps and at the end)."""
        self.session.push(frame)
        return self.stepped(ended)

    def stepped(self, ended: bool) -> bool:
        """Count a step whose frame is pushed; whether the VLM is due (every `interval` steps, at the end)."""
        self._steps += 1
        return self._steps % self.interval == 0 or bool(ended)

    def held(self, env_reward: float) -> float:
        """The VLM reward of a step without a query (the `between` rule)."""
        if self.between == "hold":
            return self._last_reward
        return 0.0 if self.between == "zero" else float(env_reward)

    @property
    def last(self) -> dict[str, Any]:
        """The last query's value, progress, frames and signals ({} before the first)."""
        return self._last

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.begin(self._frame(obs))
        self.apply(self.session.score())  # the first frame's value: the baseline of the first delta
        return obs, info

    def step(self, action):
        if self.session is None:
            raise ValueError("call reset() before step()")
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        queried = self.advance(self._frame(obs), terminated or truncated)
        vlm = self.apply(self.session.score()) if queried else self.held(env_reward)
        info = dict(info)
        info["env_reward"] = float(env_reward)
        info["topreward"] = {"queried": bool(queried), **self._last}
        return obs, (1.0 - self.mix) * vlm + self.mix * float(env_reward), terminated, truncated, info

    def apply(self, score) -> float:
        """This score's VLM reward under the `reward` rule; it becomes the last query."""
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


def _vector_wrapper_base():
    return _gymnasium().vector.VectorWrapper


class TopRewardVectorWrapper(_vector_wrapper_base()):
    """`TopRewardWrapper` for a gymnasium vector env: one session per sub-env, queried together.

    A step's new frames go into every sub-env's session in one round (`topreward.stream.push_many`: one
    vision call, one packed forward), and the sub-envs due for a query are scored in shared packed forwards
    (`topreward.stream.score_many`).
    Needs the vector env's default next-step autoreset: the step after a sub-env's episode ends resets it,
    so that step starts a new session for it (and pays a VLM reward of 0). `instructions` is one task text
    for every sub-env or one per sub-env; the keyword options are `TopRewardWrapper`'s.
    """

    def __init__(self, env, scorer, instructions: str | list[str], **options: Any) -> None:
        super().__init__(env)
        gymnasium = _gymnasium()
        mode = env.metadata.get("autoreset_mode", gymnasium.vector.AutoresetMode.NEXT_STEP)
        if mode != gymnasium.vector.AutoresetMode.NEXT_STEP:
            raise ValueError(
                f"the vector env's autoreset_mode is {mode}; the wrapper needs NEXT_STEP (the default)"
            )
        n = env.num_envs
        texts = [instructions] * n if isinstance(instructions, str) else list(instructions)
        if len(texts) != n:
            raise ValueError(f"{len(texts)} instructions for {n} sub-envs; give one, or one per sub-env")
        # one single-env wrapper per sub-env holds the options, their checks and the reward rules
        options.setdefault("source_fps", float(env.metadata.get("render_fps") or 30.0))
        source = _FrameSource(env, options.get("frame_key"))
        self.parts = [TopRewardWrapper(source, scorer, text, **options) for text in texts]
        self._restart = np.zeros(n, dtype=bool)

    def _frames(self, obs) -> list[np.ndarray]:
        key = self.parts[0].frame_key
        if key is None:
            return list(self.env.render())
        return [np.asarray(x) for x in obs[key]]

    def reset(self, **kwargs):
        from topreward.stream import score_many

        obs, info = self.env.reset(**kwargs)
        for i, frame in enumerate(self._frames(obs)):
            self.parts[i].begin(frame)
        self._record(list(range(self.num_envs)), score_many([p.session for p in self.parts]))
        self._restart[:] = False
        return obs, info

    def step(self, actions):
        from topreward.stream import push_many, score_many

        obs, env_rewards, terminated, truncated, info = self.env.step(actions)
        frames = self._frames(obs)
        vlm = np.zeros(self.num_envs)
        going = [i for i in range(self.num_envs) if not self._restart[i]]
        # one round: every sub-env's new frame in one vision call and one forward (`push_many`)
        for pushed in push_many([self.parts[i].session for i in going], [frames[i] for i in going]):
            if isinstance(pushed, Exception):
                raise pushed
        due, fresh = [], []
        for i, part in enumerate(self.parts):
            if self._restart[i]:  # this step reset sub-env i: a new episode, a new session
                part.begin(frames[i])
                fresh.append(i)
            elif part.stepped(terminated[i] or truncated[i]):
                due.append(i)
            else:
                vlm[i] = part.held(env_rewards[i])
        queried = due + fresh
        scores = score_many([self.parts[i].session for i in queried])
        rewards = self._record(queried, scores)
        for i in due:
            vlm[i] = rewards[i]
        self._restart = np.asarray(terminated) | np.asarray(truncated)
        info = dict(info)
        info["env_reward"] = np.asarray(env_rewards, dtype=np.float64)
        info["topreward_queried"] = np.isin(np.arange(self.num_envs), due)
        info["topreward_value"] = np.array([p.last.get("value", np.nan) for p in self.parts])
        mix = self.parts[0].mix
        return (
            obs,
            (1.0 - mix) * vlm + mix * np.asarray(env_rewards, dtype=np.float64),
            terminated,
            truncated,
            info,
        )

    def _record(self, indices: list[int], scores) -> dict[int, float]:
        """Apply each sub-env's reward rule to its new score (`TopRewardWrapper.apply`)."""
        return {i: self.parts[i].apply(score) for i, score in zip(indices, scores)}

    def close(self, **kwargs) -> None:
        for part in self.parts:
            if part.session is not None:
                part.session.close()
        super().close(**kwargs)


class _FrameSource(_gymnasium().Env):
    """What a sub-env's `TopRewardWrapper` needs to know of its env (render mode, spaces), nothing more:
    the vector wrapper steps the real env and feeds the frames itself."""

    def __init__(self, vector_env, frame_key: str | None) -> None:
        self._render_mode = (
            "rgb_array" if frame_key is None and vector_env.render_mode == "rgb_array" else None
        )
        self.metadata = dict(vector_env.metadata)
        self.observation_space = vector_env.single_observation_space
        self.action_space = vector_env.single_action_space

    @property
    def render_mode(self):
        return self._render_mode
