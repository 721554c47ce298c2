"""TOPReward: token probabilities as zero-shot progress (Chen, Harrison, Lee et al., 2026, §3).

Recipe:
  1. Sample the episode's frames once (default 2 fps, at most `max_frames`, one resolution for all).
  2. For K prefix lengths (default 15, uniform from 1 to N frames, as the paper's experiments; or every
     frame), put the first k frames before the prompt "The above video shows a robot manipulation
     trajectory that completes the following task: {instruction}. Decide whether the above statement is
     True or not. The answer is:".
  3. Read log P(" True") (and log P(" False")) of the next token — log-softmax in float32 at the last
     position (Eq.1).
  4. Min-max normalise over the episode's prefixes (Eq.2) -> progress in [0, 1]; interpolate to every
     source frame; success score = mean log P(True) of the last 3 prefixes (§5.2); dense rewards from
     progress increments (Eq.3, our reading in `topreward.rewards`).

Default prompt style: `authors` — the user-turn header kept, no end of turn, no assistant turn — the
layout of the authors' code (with our instruction formatting: one period after it); `raw` (the paper's
text read literally: video tokens then the prompt) and `chat` (the full template with its generation
prompt, then " True") are options. For the authors' or LeRobot's exact pipelines (verbatim instruction,
their frames and sizes, "True" after the chat template's assistant header) use `conventions`
(`topreward.scorers.conventions`).

`signal="contrast"` uses log P(True) − log P(False) as the raw value instead (the "Cheap (and Good)
Rewards" blog tried it and found it worse: mean VOC 0.520 vs 0.766 on its 7 videos with Qwen3-VL-2B); both
log-probs come from the same forward, so it costs nothing extra.

Cost: one vision pass over the sampled frames, one language-model pass over their tokens, then K short
prompt suffixes packed on top of the cache (`topreward.backends.video_cache`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from topreward.backends.base import Request
from topreward.backends.config import DEFAULT_MODEL, BackendConfig
from topreward.config import option
from topreward.prompts import PROMPT_STYLES, TOPREWARD_TEMPLATE, PromptStyle
from topreward.sampling import SamplingConfig
from topreward.scorers.base import CacheScorer, MethodConfig, MethodOutput
from topreward.scorers.conventions import CONVENTIONS, AllFrames, peer_pipeline
from topreward.scorers.registry import register
from topreward.task_text import clean_instruction

__all__ = ["DEFAULT_MODEL", "TOPRewardConfig", "TOPRewardScorer", "format_prompt"]


@dataclass
class TOPRewardConfig(MethodConfig):
    """Options of the TOPReward method."""

    prompt_style: PromptStyle = option(
        "authors", "authors | raw | chat (docs/methods.md)", choices=PROMPT_STYLES
    )
    answer: str = option(" True", "answer token whose log-prob is the reward (leading space matters)")
    contrast: str = option(" False", "second token recorded beside it")
    signal: Literal["true", "contrast"] = option(
        "true",
        "raw value: log P(answer) (true) or log P(answer) - log P(contrast) (contrast)",
        choices=("true", "contrast"),
    )
    conventions: str = option(
        "topreward",
        "whose pipeline: topreward (ours) | paper | authors | lerobot (a peer's, reproduced exactly; docs/conventions.md)",
        choices=CONVENTIONS,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.answer.strip():
            raise ValueError("answer must be a word such as ' True'")


def format_prompt(instruction: str) -> str:
    """The TOPReward prompt for one instruction (a trailing period is dropped: the template adds one)."""
    return TOPREWARD_TEMPLATE.format(instruction=clean_instruction(instruction))


@register("topreward")
class TOPRewardScorer(CacheScorer):
    """log P(" True") after each video prefix (Eq.1), min-max normalised into progress (Eq.2)."""

    description = "TOPReward: log P(' True') after each video prefix, min-max normalised (Chen et al. 2026)"
    Config = TOPRewardConfig
    value_name = "log P(True)"

    def setup(self) -> None:
        cfg = self.config
        self.pipeline = peer_pipeline(cfg.conventions, self.options(), self.default_options())
        family = getattr(getattr(self.backend, "family", None), "name", None)
        if self.pipeline is not None and getattr(self.backend, "name", "") != "transformers":
            raise ValueError(
                f"conventions={cfg.conventions!r} rebuilds that code's model inputs pixel by pixel, which only "
                f"the in-process backend can do; backend {self.backend.name!r} runs conventions='topreward'"
            )
        if self.pipeline is not None and family != "qwen3_vl":
            raise ValueError(
                f"conventions={cfg.conventions!r} reproduces code that runs Qwen3-VL models only; model "
                f"{self.backend.model_id} is {family} (use conventions='topreward')"
            )
        self.token_ids = (self.backend.token_id(cfg.answer), self.backend.token_id(cfg.contrast))
        if cfg.signal == "contrast":
            self.value_name = "log P(True) - log P(False)"

    def text_before_video(self) -> str:
        if self.pipeline is not None:
            raise ValueError(
                f"conventions={self.config.conventions!r} scores each prefix from scratch, as that code does; "
                "streaming and the shared video cache need conventions='topreward'"
            )
        return self.backend.prompt_text(self.config.prompt_style, format_prompt("x")).before

    def requests_for(self, instructions: list[str], points: list[int]) -> list[Request]:
        style = self.config.prompt_style
        prompts = [self.backend.prompt_text(style, format_prompt(t)) for t in instructions]
        return [Request(k, p.after, self.token_ids) for p in prompts for k in points]

    def outputs_from(self, answers, instructions: list[str], points: list[int]) -> list[MethodOutput]:
        outputs = []
        for i in range(len(instructions)):
            lp = np.stack([a.next for a in answers[i * len(points) : (i + 1) * len(points)]])
            true, false = lp[:, 0], lp[:, 1]
            values = true - false if self.config.signal == "contrast" else true
            outputs.append(MethodOutput(values, {"log_p_true": true, "log_p_false": false}))
        return outputs

    # ---- a peer's conventions (`topreward.scorers.conventions`): its calls, one plain forward each ----------
    @classmethod
    def default_options(cls) -> dict:
        from dataclasses import asdict

        return {**asdict(BackendConfig()), **asdict(SamplingConfig()), **asdict(cls.Config())}

    @property
    def preparer(self):
        return super().preparer if self.pipeline is None else AllFrames()

    @classmethod
    def preparer_for(cls, backend_config, sampling, config):
        if config.conventions == "topreward":
            return super().preparer_for(backend_config, sampling, config)
        return AllFrames()

    def _calls(self, video):
        hw = tuple(video.frames.shape[1:3])
        return self.pipeline.calls(
            self.backend, video.num_frames, video.source_fps, hw, self.sampling.num_prefixes
        )

    def evaluation_points(self, video) -> list[int]:
        if self.pipeline is None:
            return super().evaluation_points(video)
        return [c.end + 1 for c in self._calls(video)]

    def compute_many(self, video, instructions: list[str], points: list[int]) -> list[MethodOutput]:
        if self.pipeline is None:
            return super().compute_many(video, instructions, points)
        peer, calls, b = self.pipeline, self._calls(video), self.backend
        base = peer.base(video.frames)
        extra = tuple(b.token_id(word) for _, word in peer.extra)
        outputs = []
        for text in instructions:
            before, after = peer.prompt(b, text, self.config.prompt_style)
            lp = np.stack(
                [
                    b.last_token_log_probs(
                        peer.final(base[list(c.frames)], c),
                        c.fps,
                        list(c.indices),
                        before,
                        after,
                        extra,
                        upcast=peer.upcast,
                    )
                    for c in calls
                ]
            )
            signals = {
                "log_p_true": lp[:, 0],
                **{name: lp[:, 1 + j] for j, (name, _) in enumerate(peer.extra)},
            }
            outputs.append(MethodOutput(lp[:, 0], signals, progress=peer.normalise(lp[:, 0])))
        return outputs
