"""A row's stored rollouts, marked correct or wrong, and the one ACE reads.

`mark_rollouts` grades stored completions with RAP's default reward; `ace_rollout_index` picks the rollout the
ACE score was computed on (the sample view flags it, the attention view recomputes it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class RolloutMark:
    """One rollout with the answer extracted from it and whether it matches the ground truth."""

    text: str
    answer: str | None
    correct: bool


def mark_rollouts(completions: Sequence[str] | None, solution: Any) -> list[RolloutMark]:
    """Correct/incorrect marks by RAP's default reward (`accuracy_reward`: answer extraction + math-verify).

    A dataset scored with a custom `reward_fn` may disagree; the page says so.
    """
    from rap_hf.rewards import accuracy_reward, extract_answer

    completions = [str(c) for c in (completions or [])]
    if not completions:
        return []
    rewards = accuracy_reward(completions, [solution] * len(completions))
    return [
        RolloutMark(text, extract_answer(text), reward > 0)
        for text, reward in zip(completions, rewards, strict=True)
    ]


def ace_rollout_index(marks: Sequence[RolloutMark]) -> int | None:
    """The rollout ACE reads: the first correct multimodal one if any, else the first (docs/method.md §3)."""
    if not marks:
        return None
    return next((k for k, mark in enumerate(marks) if mark.correct), 0)
