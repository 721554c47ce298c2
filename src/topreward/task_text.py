"""Task text is data, never control: the checks every method, stream and CLI command apply to instructions.

A `<|im_end|>` in an instruction would close the user's turn, a `<|video_pad|>` would claim video features
that do not exist; such text is refused here, once, for every method, path and backend, rather than
tokenised differently by each.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from topreward.episode import Episode

# the chat markup of Qwen-style tokenizers (<|im_start|>, <|im_end|>, <|video_pad|>, ...), whatever the backend
_CONTROL_TOKEN = re.compile(r"<\|[^<>|\s]{1,40}\|>")


def reserved_tokens(backend: Any) -> tuple[str, ...]:
    """The control tokens of a backend's tokenizer that task text may not contain (`backend.reserved_tokens`,
    e.g. the chat and vision markers of a transformers model; none for a backend that does not say)."""
    return tuple(getattr(backend, "reserved_tokens", ()) or ())


def check_task_text(text: str, reserved: tuple[str, ...] = (), where: str | None = None) -> str:
    """`text` if it can be task text: it has a letter or digit, and holds no control token (`reserved`: the
    backend's own, `reserved_tokens`; any `<|...|>` marker is refused too)."""
    at = f"{where}: " if where else ""
    if not any(ch.isalnum() for ch in text):
        raise ValueError(
            f"{at}instruction {text!r} has no letter or digit; pass the task text, e.g. 'put the pen into the cup'"
        )
    found = sorted({t for t in reserved if t in text} | set(_CONTROL_TOKEN.findall(text)))
    if found:
        raise ValueError(
            f"{at}instruction {text!r} contains {', '.join(found)}: control token(s) of the model's prompt "
            "format, which task text may not hold (it is data, never control); remove them"
        )
    return text


def check_instruction(episode: Episode, text: str | None = None, reserved: tuple[str, ...] = ()) -> str:
    """The instruction to score (`text`, else the episode's own); error if there is none or it cannot be
    task text (`check_task_text`; `reserved`: the backend's control tokens, `reserved_tokens`)."""
    text = episode.instruction if text is None else text
    if text is None or not " ".join(str(text).split()):
        raise ValueError(
            f"{episode.source}: no instruction; pass the task text, e.g. 'put the pen into the cup'"
        )
    if not isinstance(text, str):
        raise TypeError(f"{episode.source}: the instruction must be a string, got {type(text).__name__}")
    return check_task_text(text, reserved, where=episode.source)


def clean_instruction(instruction: str) -> str:
    """Whitespace folded and a trailing period dropped (prompts add their own); refused if it cannot be
    task text (`check_task_text`)."""
    text = " ".join(str(instruction).split())
    if not text:
        raise ValueError("the instruction is empty; pass the task text, e.g. 'put the pen into the cup'")
    return check_task_text(text).rstrip(".")
