"""Prompt ensemble of TOPReward ("Cheap (and Good) Rewards from a VLM", J. Lu, 2026).

The blog finds that the phrasing of the completion question moves VOC more than model size does, and
that averaging N diverse phrasings reduces the variance (a 3-prompt ensemble on Qwen3-VL-2B closed 62% of
the 2B -> 8B gap in its 7 videos). Its implementation reuses the vision encoder's output across prompts
and still costs about N + 1 times one prompt, because the language model reruns over the whole video for
every prompt.

Recipe:
  1. Sample the episode's frames once and pick K prefixes, as TOPReward does.
  2. Build N prompts from templates that each state that the video completes the task and end in an
     answer cue, so that the next token is the answer word (default: our own 10 phrasings, `PROMPTS`;
     none is the blog's).
  3. Read log P(" True") after every (prompt, prefix): N x K requests on ONE video cache — the vision
     encoder runs once per frame pair and the language model once over the video, whatever N is; only
     the N x K short prompt suffixes are extra.
  4. Average over prompts (`combine`): `log_prob` (default) averages the raw log P(True) curves, i.e. the
     log of the geometric mean probability, then min-max normalises as Eq.2; `progress` min-max
     normalises each prompt's curve first and averages those (each prompt weighs the same whatever its
     range). The blog says only that results are averaged; both readings are offered.
  5. Success score: mean of the combined values over the last prefixes (§5.2), as TOPReward.
Signals: `log_p_true` (the ensemble mean of log P(True), so TOPReward's tools read it too) and
`prompt_log_p_true` (N x K, per prompt).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from topreward.backends.base import Request
from topreward.config import option
from topreward.prompts import PROMPT_STYLES, PromptStyle
from topreward.rewards import minmax_progress
from topreward.scorers.base import CacheScorer, MethodConfig, MethodOutput
from topreward.scorers.registry import register
from topreward.task_text import clean_instruction

#: Our own phrasings (not the blog's). Each states completion of {instruction} and ends in an answer cue.
PROMPTS: tuple[str, ...] = (
    "The above video shows a robot manipulation trajectory that completes the following task: "
    "{instruction}. Decide whether the above statement is True or not. The answer is:",
    "In the video above, the robot has finished the task '{instruction}'. Is this True or False? The answer is:",
    "Task: {instruction}. By the last frame of the video above, the task is done. True or False? The answer is:",
    "Watch the robot above. Claim: it successfully completed '{instruction}'. The claim is True or False. "
    "The answer is:",
    "The goal was to {instruction}. At the end of this clip the goal state has been reached. "
    "True or False? The answer is:",
    "Statement: the manipulation shown above achieves the instruction '{instruction}'. "
    "Is the statement True or False? The answer is:",
    "Looking at the final frames above, the object arrangement matches what '{instruction}' asks for. "
    "True or False? The answer is:",
    "A robot was told: {instruction}. The video above shows the job fully carried out. "
    "Answer True or False. The answer is:",
    "The trajectory above ends with the task '{instruction}' accomplished and nothing left to do. "
    "True or False? The answer is:",
    "Judge the robot video above. It is a successful execution of: {instruction}. "
    "Reply True or False. The answer is:",
)

#: An answer cue is the text a prompt must end with so the next token is the answer word.
ANSWER_CUES: tuple[str, ...] = ("The answer is:", "Answer:")


@dataclass
class EnsembleConfig(MethodConfig):
    """Options of the prompt ensemble."""

    prompts: tuple[str, ...] = option(
        PROMPTS, "prompt templates with {instruction}, each ending in an answer cue"
    )
    prompt_style: PromptStyle = option(
        "authors", "authors | raw | chat (docs/methods.md)", choices=PROMPT_STYLES
    )
    answer: str = option(" True", "answer token read after every prompt (leading space matters)")
    combine: Literal["log_prob", "progress"] = option(
        "log_prob",
        "average raw log P(True) curves, or per-prompt normalised progress",
        choices=("log_prob", "progress"),
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.prompts, str):
            raise TypeError("prompts must be a list of templates, not one string")
        self.prompts = tuple(self.prompts)
        if not self.prompts:
            raise ValueError("prompts is empty; give at least one template with {instruction}")
        for p in self.prompts:
            if "{instruction}" not in p:
                raise ValueError(
                    f"prompt {p!r} has no {{instruction}} placeholder; add it where the task goes"
                )
            if not p.rstrip().endswith(ANSWER_CUES):
                raise ValueError(
                    f"prompt {p!r} does not end in an answer cue ({' or '.join(map(repr, ANSWER_CUES))}); "
                    "end it so that the next token is the answer word"
                )


@register("ensemble")
class EnsembleScorer(CacheScorer):
    """N prompt phrasings over one video cache, averaged."""

    description = "prompt ensemble: N TOPReward phrasings on one video cache, averaged (Lu 2026 blog)"
    Config = EnsembleConfig
    value_name = "mean log P(True)"

    def setup(self) -> None:
        self.answer_id = self.backend.token_id(self.config.answer)

    def text_before_video(self) -> str:
        cfg = self.config
        befores = {
            self.backend.prompt_text(cfg.prompt_style, p.format(instruction="x")).before for p in cfg.prompts
        }
        if len(befores) != 1:
            raise ValueError(
                "the prompts put different text before the video; use prompt_style 'raw' or 'authors'"
            )
        return befores.pop()

    def requests_for(self, instructions: list[str], points: list[int]) -> list[Request]:
        cfg = self.config
        afters = [
            self.backend.prompt_text(cfg.prompt_style, p.format(instruction=clean_instruction(t))).after
            for t in instructions
            for p in cfg.prompts
        ]
        return [Request(k, after, (self.answer_id,)) for after in afters for k in points]

    def outputs_from(self, answers, instructions: list[str], points: list[int]) -> list[MethodOutput]:
        cfg = self.config
        lp = np.array([a.next[0] for a in answers]).reshape(len(instructions), len(cfg.prompts), -1)
        outputs = []
        for per_prompt in lp:
            mean = per_prompt.mean(axis=0)
            progress = None
            if cfg.combine == "progress":
                progress = np.mean([minmax_progress(row, cfg.eps) for row in per_prompt], axis=0)
            outputs.append(
                MethodOutput(mean, {"log_p_true": mean, "prompt_log_p_true": per_prompt}, progress=progress)
            )
        return outputs
