"""The TOPReward prompt (paper §3.1) and how it is wrapped around the video for each prompt style."""

from __future__ import annotations

from typing import Literal

#: The method's definition, verbatim (TOPReward §3.1); the video comes before it.
TOPREWARD_TEMPLATE = (
    "The above video shows a robot manipulation trajectory that completes the following task: "
    "{instruction}. Decide whether the above statement is True or not. The answer is:"
)

PromptStyle = Literal["raw", "authors", "chat"]
PROMPT_STYLES: tuple[str, ...] = ("raw", "authors", "chat")


#: Robometer's added special tokens, in the order its loader adds them (robometer/utils/setup_utils.py);
#: their ids follow the base vocabulary (`topreward.backends.robometer`, `topreward.tiny`)
ROBOMETER_TOKENS: tuple[str, ...] = (
    "<|split_token|>",
    "<|reward_token|>",
    "<|pref_token|>",
    "<|sim_token|>",
    "<|prog_token|>",
)
