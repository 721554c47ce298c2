"""Instruction likelihood: TOPReward's alternative formulation (Chen, Harrison, Lee et al., 2026, App. A, Eq.6).

Instead of asking whether the video completes the task, read how likely the model finds the
instruction itself after the video:
  1. Sample the episode's frames once and pick K prefixes, as TOPReward does.
  2. After each prefix put " The above video shows a robot manipulation trajectory that completes the
     following task: {instruction}." (the paper's App. A prompt).
  3. Teacher-force the instruction: the log-prob of each of its tokens given the video and everything
     before it — every position of the instruction's span, read in the same packed pass on the video
     cache as the other requests (one request per prefix).
  4. Raw value = the mean token log-prob of the instruction (Eq.6 as the issue reads it; `reduce="sum"`
     gives the total); min-max normalised into progress (Eq.2).
The paper found this less effective than log P(True): the model gives high probability to objects named
in the instruction as soon as they appear in the video, whether or not the task is done. It is here to
reproduce that comparison. Signals: `instruction_log_prob` (mean or sum per prefix) and
`token_log_probs` (K x tokens).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from topreward.backends.base import Request
from topreward.config import option
from topreward.prompts import PROMPT_STYLES, PromptStyle
from topreward.scorers.base import CacheScorer, MethodConfig, MethodOutput
from topreward.scorers.registry import register
from topreward.task_text import clean_instruction

#: App. A's prompt; the instruction's span starts at the space before it (tokens carry leading spaces).
CONTEXT = " The above video shows a robot manipulation trajectory that completes the following task:"


@dataclass
class InstructionConfig(MethodConfig):
    """Options of the instruction-likelihood method."""

    prompt_style: PromptStyle = option(
        "raw", "raw (App. A: video then text) | authors | chat", choices=PROMPT_STYLES
    )
    reduce: Literal["mean", "sum"] = option(
        "mean", "mean or sum of the instruction's token log-probs", choices=("mean", "sum")
    )


@register("instruction")
class InstructionScorer(CacheScorer):
    """Mean log-prob of the instruction's tokens after each video prefix (TOPReward App. A)."""

    description = "instruction likelihood: mean log-prob of the instruction's tokens after each prefix (TOPReward App. A)"
    Config = InstructionConfig
    value_name = "mean log P(instruction)"

    def text_before_video(self) -> str:
        return self.backend.prompt_text(self.config.prompt_style, CONTEXT).before

    def requests_for(self, instructions: list[str], points: list[int]) -> list[Request]:
        requests = []
        for t in instructions:
            task = clean_instruction(t)
            text = f"{CONTEXT} {task}."
            after = self.backend.prompt_text(self.config.prompt_style, text).after
            start = after.index(text) + len(CONTEXT)  # the space before the instruction
            requests += [Request(k, after, span=(start, start + 1 + len(task))) for k in points]
        return requests

    def outputs_from(self, answers, instructions: list[str], points: list[int]) -> list[MethodOutput]:
        outputs = []
        for i in range(len(instructions)):
            per_token = np.stack([a.span for a in answers[i * len(points) : (i + 1) * len(points)]])
            values = per_token.mean(axis=1) if self.config.reduce == "mean" else per_token.sum(axis=1)
            outputs.append(
                MethodOutput(values, {"instruction_log_prob": values, "token_log_probs": per_token})
            )
        return outputs
