"""Reading what a model wrote: JSON first, then tolerant fallbacks; a failure says what was wrong.

Generative methods (GVL, SCORE) ask for structured answers; models answer with JSON in code fences, JSON
with trailing text, `Frame 3: 40%` lines, or nothing usable. `parse_percentages` and `parse_json` turn an
answer into values or raise `AnswerError` with the reason, which the method records as the failure of
that episode (never a silent default).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any


class AnswerError(ValueError):
    """A model's answer that cannot be read as what was asked (the reason is the message)."""


def _json_candidates(text: str):
    """Every balanced {...} or [...] block of `text`, outermost first, in order."""
    for start, ch in enumerate(text):
        if ch not in "{[":
            continue
        close = "}" if ch == "{" else "]"
        depth, in_string, escaped = 0, False, False
        for end in range(start, len(text)):
            c = text[end]
            if in_string:
                if escaped:
                    escaped = False
                elif c == "\\":
                    escaped = True
                elif c == '"':
                    in_string = False
            elif c == '"':
                in_string = True
            elif c in "{[":
                depth += 1
            elif c in "}]":
                depth -= 1
                if depth == 0:
                    if c == close:
                        yield text[start : end + 1]
                    break


def parse_json(text: str) -> Any:
    """The first JSON object or list in `text` (code fences and surrounding prose allowed)."""
    for block in _json_candidates(text):
        try:
            return json.loads(block)
        except json.JSONDecodeError:
            continue
    raise AnswerError(f"no JSON object or list in the answer {_quote(text)}")


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool):
        raise AnswerError(f"{what} is {value!r}, not a number")
    if isinstance(value, str):
        value = value.strip().rstrip("%").strip()
    try:
        x = float(value)
    except (TypeError, ValueError) as e:
        raise AnswerError(f"{what} is {value!r}, not a number") from e
    if not math.isfinite(x):
        raise AnswerError(f"{what} is {value!r}, not a finite number")
    return x


_FRAME_LINE = re.compile(r"frame\s*(\d+)\s*[:\-]?[^\d\n%-]*(-?\d+(?:\.\d+)?)\s*%", re.IGNORECASE)
_PERCENT = re.compile(r"(-?\d+(?:\.\d+)?)\s*%")


def _from_json(data: Any, n: int, first: int) -> list[float] | None:
    """Percentages from a JSON answer: a list of numbers, a list of {frame, percentage} objects, or an
    object keyed by frame number ("Frame 3", "3") — or None when it has none of these shapes."""
    if isinstance(data, dict):
        for key in ("frames", "percentages", "completion", "progress", "predictions"):
            if key in data and isinstance(data[key], (list, dict)):
                return _from_json(data[key], n, first)
        by_frame = {}
        for key, value in data.items():
            m = re.search(r"(\d+)", str(key))
            if m is None:
                return None
            by_frame[int(m.group(1))] = _number(value, f"the value of {key!r}")
        return _ordered(by_frame, n, first)
    if isinstance(data, list):
        if all(isinstance(v, dict) for v in data):
            by_frame = {}
            for item in data:
                frame = next((item[k] for k in ("frame", "Frame", "index", "id") if k in item), None)
                value = next(
                    (item[k] for k in ("percentage", "completion", "progress", "value") if k in item), None
                )
                if frame is None or value is None:
                    return None
                m = re.search(r"(\d+)", str(frame))
                if m is None:
                    return None
                by_frame[int(m.group(1))] = _number(value, f"frame {frame}")
            return _ordered(by_frame, n, first)
        return [_number(v, f"item {i + 1}") for i, v in enumerate(data)]
    return None


def _ordered(by_frame: dict[int, float], n: int, first: int) -> list[float]:
    want = list(range(first, first + n))
    missing = [f for f in want if f not in by_frame]
    if missing:
        raise AnswerError(
            f"the answer has no value for frame(s) {missing} (frames {first}..{first + n - 1} asked)"
        )
    return [by_frame[f] for f in want]


def parse_percentages(text: str, n: int, *, first: int = 1) -> list[float]:
    """n completion percentages for frames numbered `first` .. `first + n - 1`, in frame order.

    Tried in turn: (1) JSON — a list of n numbers, or frames keyed by number; (2) lines "Frame i: ... p%"
    (OpenGVL's answer format), by frame number; (3) every "p%" of the answer in order of appearance, if
    there are exactly n. Values must lie in [0, 100]. `AnswerError` says why none worked.
    """
    reasons = []
    try:
        values = _from_json(parse_json(text), n, first)
        if values is not None:
            return _checked(values, n, "JSON")
        reasons.append("its JSON has no percentages")
    except AnswerError as e:
        reasons.append(str(e))
    lines = {int(m.group(1)): float(m.group(2)) for m in _FRAME_LINE.finditer(text)}
    if lines:
        try:
            return _checked(_ordered(lines, n, first), n, "Frame lines")
        except AnswerError as e:
            reasons.append(str(e))
    loose = [float(m.group(1)) for m in _PERCENT.finditer(text)]
    if len(loose) == n:
        return _checked(loose, n, "percentages in order")
    reasons.append(f"{len(loose)} percentages found, {n} frames asked")
    raise AnswerError("; ".join(reasons))


def _checked(values: list[float], n: int, how: str) -> list[float]:
    if len(values) != n:
        raise AnswerError(f"{how}: {len(values)} values for {n} frames")
    bad = [v for v in values if not 0.0 <= v <= 100.0]
    if bad:
        raise AnswerError(f"{how}: values {bad} outside 0..100")
    return values


def _quote(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[:limit] + "...")
