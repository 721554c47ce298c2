"""SCORE: describe the frames in terms of task-relevant objects, then reason about progress in language.

Memmel, Goyal, Fox, Gupta, Li, Ramos, "Closing The Performance Gap Between Zero-shot And Post-trained
Reward Models" (SCORE), §II. The paper gives the stages, not its prompts; the prompts here are ours and
ask for JSON at every stage, as the paper's pipeline does. For one episode with K evaluation points:

  1. Objects (Eq.1, O = f(V, L)): the sampled video and the instruction -> `{"objects": [...]}`, the
     entities the instruction mentions that are visible.
  2. Object states (Eq.2, d_t = f(v_t, O, L)): per point, its frame, the objects and the instruction ->
     `{"description": "..."}`, the state of each object in that frame.
  3. Progress (Eq.3, (P, s*) = f(D, L)): text only — all K descriptions in time order and the instruction ->
     `{"completion_state": "...", "progress": [p_1, ..., p_K]}`: the completion anchor s* (what the scene
     is at 100 %) and a progress in [0, 1] per frame, judged against it.

value = progress = p_t (absolute, no min-max); success score = the mean of the last 3 (as every method).
Every answer is validated (JSON with the keys and types asked; K numbers in [0, 1]); a malformed answer is
asked again up to `answer_retries` times (sampled at temperature 0.7 with seeds `retry_seed + 1`, `retry_seed + 2`, ...; the
first try is greedy), then the episode is a recorded failure: values NaN, the signal `failure` names the
stage and the reason. Stage answers are cached on disk per model, frame content and prompt
(`cache_dir`), so a re-run of an episode — another instruction excepted — costs no generation.

Cost per episode: K + 2 generations (1 video prompt, K one-image prompts, 1 text prompt).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from topreward.atomic import write_text
from topreward.backends.base import GENERATION, Generation, ModelVideo
from topreward.config import option
from topreward.scorers.answers import AnswerError, parse_json
from topreward.scorers.base import MethodConfig, MethodOutput, Scorer
from topreward.scorers.registry import register

__all__ = ["SCOREConfig", "SCOREScorer"]

PROMPT_VERSION = 1

OBJECTS = (
    "Task: {instruction}\nList the task-relevant objects: the objects the task mentions that are visible "
    "in the video (include the robot gripper if it handles them). Answer with JSON only, in the form "
    '{{"objects": ["object", ...]}}.'
)
STATES = (
    "Task: {instruction}\nTask-relevant objects: {objects}.\nDescribe the state of each of these objects in "
    "this image: where it is, what touches or holds it, whether it is open, closed, inside or on top of "
    'something. Answer with JSON only, in the form {{"description": "..."}}.'
)
PROGRESS = (
    "Task: {instruction}\nBelow are descriptions of {n} frames of a robot video, in time order.\n"
    "{descriptions}\n"
    "First write the completion state: what the scene looks like when the task is fully done. Then give "
    "the task progress of every frame as a number from 0 (not started) to 1 (done), judging each "
    "description against the completion state. Answer with JSON only, in the form "
    '{{"completion_state": "...", "progress": [{n} numbers]}}.'
)


@dataclass
class SCOREConfig(MethodConfig):
    """Options of the SCORE method."""

    answer_retries: int = option(
        2, "re-asks after a malformed answer, then the episode is a recorded failure"
    )
    retry_seed: int = option(0, "seed of the re-asks (the first answer is greedy)")
    max_new_tokens: int = option(512, "cap on each answer (the progress stage gets 16 per frame more)")
    cache_dir: str = option(
        "", "stage answers kept here per episode ('' = $XDG_CACHE_HOME/topreward/score; 'off' = none)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.answer_retries < 0:
            raise ValueError(f"answer_retries must be >= 0, got {self.answer_retries}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")


class StageFailure(Exception):
    def __init__(self, stage: str, reason: str, attempts: int) -> None:
        super().__init__(f"{stage}: {reason} ({attempts} attempts)")
        self.stage, self.reason, self.attempts = stage, reason, attempts


def _objects(answer: Any) -> list[str]:
    objects = answer.get("objects") if isinstance(answer, dict) else None
    if (
        not isinstance(objects, list)
        or not objects
        or not all(isinstance(o, str) and o.strip() for o in objects)
    ):
        raise AnswerError(f'expected {{"objects": [non-empty strings]}}, got {json.dumps(answer)[:120]}')
    return [o.strip() for o in objects]


def _description(answer: Any) -> str:
    text = answer.get("description") if isinstance(answer, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise AnswerError(f'expected {{"description": "..."}}, got {json.dumps(answer)[:120]}')
    return " ".join(text.split())


def _progress(n: int) -> Callable[[Any], dict]:
    def check(answer: Any) -> dict:
        if not isinstance(answer, dict):
            raise AnswerError(f"expected a JSON object, got {json.dumps(answer)[:120]}")
        state, values = answer.get("completion_state"), answer.get("progress")
        if not isinstance(state, str) or not state.strip():
            raise AnswerError("the answer has no completion_state text")
        if not isinstance(values, list) or len(values) != n:
            got = len(values) if isinstance(values, list) else type(values).__name__
            raise AnswerError(f"progress must be a list of {n} numbers, got {got}")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in values):
            raise AnswerError(f"progress values must be numbers in [0, 1], got {values}")
        return {"completion_state": state.strip(), "progress": [float(v) for v in values]}

    return check


@register("score")
class SCOREScorer(Scorer):
    """Objects, per-frame object states, then progress with a completion anchor — all in JSON."""

    description = "SCORE: objects, per-frame object states, then progress in language (Memmel et al.)"
    Config = SCOREConfig
    requires = frozenset({GENERATION})
    value_name = "progress (SCORE)"

    def setup(self) -> None:
        where = self.config.cache_dir
        if where == "off":
            self.cache = None
        else:
            base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
            self.cache = Path(where) if where else Path(base) / "topreward" / "score"
        described = self.backend.describe()
        self.model_key = f"{described.get('id')}@{described.get('revision')}"
        self.attempts: dict[str, int] = {}

    # ---- one validated answer, cached --------------------------------------------------------------
    def _key(self, parts: list) -> str:
        h = hashlib.sha256(f"{PROMPT_VERSION}|{self.model_key}|{self.config.max_new_tokens}".encode())
        for p in parts:
            if isinstance(p, str):
                h.update(b"t" + p.encode())
            elif isinstance(p, ModelVideo):
                h.update(b"v" + np.ascontiguousarray(p.frames).tobytes() + p.source_indices.tobytes())
            else:
                h.update(b"i" + np.ascontiguousarray(p).tobytes() + str(p.shape).encode())
        return h.hexdigest()

    def ask(self, stage: str, parts: list, check: Callable[[Any], Any], max_new_tokens: int) -> Any:
        """The first answer that `check` accepts (from the cache if there), else `StageFailure`."""
        key = self._key(parts)
        path = self.cache / key[:2] / f"{key}.json" if self.cache is not None else None
        if path is not None and path.exists():
            return check(json.loads(path.read_text())["answer"])
        reason = ""
        for attempt in range(self.config.answer_retries + 1):
            generation = (
                Generation(max_new_tokens=max_new_tokens)
                if attempt == 0
                else Generation(
                    max_new_tokens=max_new_tokens, temperature=0.7, seed=self.config.retry_seed + attempt
                )
            )
            text = self.backend.chat(parts, generation)
            self.attempts[stage] = self.attempts.get(stage, 0) + 1
            try:
                raw = parse_json(text)
                value = check(raw)
            except AnswerError as e:
                reason = str(e)
                continue
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                write_text(path, json.dumps({"stage": stage, "answer": raw}))
            return value
        raise StageFailure(stage, reason, self.config.answer_retries + 1)

    # ---- the three stages ----------------------------------------------------------------------------
    def compute(self, video: ModelVideo, instruction: str, points: list[int]) -> MethodOutput:
        n, cap = len(points), self.config.max_new_tokens
        self.attempts = {}
        signals: dict[str, Any] = {
            "objects": [],
            "descriptions": [],
            "completion_state": None,
            "failure": None,
        }
        values = np.full(n, np.nan)
        try:
            objects = self.ask("objects", [video, OBJECTS.format(instruction=instruction)], _objects, cap)
            signals["objects"] = objects
            for k in points:
                prompt = STATES.format(instruction=instruction, objects=", ".join(objects))
                signals["descriptions"].append(
                    self.ask("states", [video.frames[k - 1], prompt], _description, cap)
                )
            listing = "\n".join(f"Frame {i}: {d}" for i, d in enumerate(signals["descriptions"], start=1))
            prompt = PROGRESS.format(instruction=instruction, n=n, descriptions=listing)
            answer = self.ask("progress", [prompt], _progress(n), cap + 16 * n)
            signals["completion_state"] = answer["completion_state"]
            values = np.asarray(answer["progress"], dtype=np.float64)
        except StageFailure as e:
            signals["failure"] = str(e)
        signals["attempts"] = dict(self.attempts)
        return MethodOutput(values, {"progress_score": values, **signals}, progress=values)
