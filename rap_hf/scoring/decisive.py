"""Decision-aware scoring (``text_arm="decisive"``): how many text-only rollouts a row still needs before its
CDE decision at ``lambda_c`` is settled, and the scores of a row whose text-only arm stopped early.

With M rollouts per arm and rewards in [0, 1], after ``n`` text-only rollouts with reward sum ``s`` the final
``acc_text`` lies in ``[s / M, (s + M - n) / M]`` (the missing rollouts all 0, or all 1), so the final CDE lies in
``[acc_mm - (s + M - n) / M, acc_mm - s / M]``. Selection keeps a row when ``cde_at_least(cde, lambda_c)``,
which is monotone in ``cde``; every bound is computed exactly (`fractions.Fraction`) and rounded once, like
`rap_hf.estimators.cde.rollout_scores`, so:

- the row is **kept** for sure once the lower bound passes (``acc_mm - max_acc_text >= lambda_c``);
- it is **rejected** for sure once the upper bound fails (``acc_mm - min_acc_text < lambda_c``); a row with
  ``acc_mm < lambda_c`` is rejected before any text-only rollout.

Fractional rewards are treated conservatively: the bounds above hold whatever the missing rewards are.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from rap_hf.columns import CDE_EXACT, CDE_LOWER_BOUND, CDE_UPPER_BOUND
from rap_hf.estimators.cde import cde_at_least, rollout_scores

KEEP, REJECT = "kept", "rejected"


def _sum(rewards: Sequence[float]) -> Fraction:
    return sum((Fraction(float(r)) for r in rewards), Fraction(0))


def cde_interval(
    rewards_mm: Sequence[float], rewards_text: Sequence[float], num_rollouts: int
) -> tuple[Fraction, Fraction]:
    """Exact (lowest, highest) final CDE given the multimodal rewards (complete) and the text-only rewards so far."""
    acc_mm = _sum(rewards_mm) / len(rewards_mm)
    done = _sum(rewards_text)
    missing = num_rollouts - len(rewards_text)
    return acc_mm - (done + missing) / num_rollouts, acc_mm - done / num_rollouts


def settled_decision(
    rewards_mm: Sequence[float], rewards_text: Sequence[float], num_rollouts: int, lambda_c: float
) -> str | None:
    """`KEEP` or `REJECT` when the CDE decision at `lambda_c` no longer depends on the missing text-only rollouts,
    else None."""
    low, high = cde_interval(rewards_mm, rewards_text, num_rollouts)
    if bool(cde_at_least(float(low), lambda_c)):
        return KEEP
    if not bool(cde_at_least(float(high), lambda_c)):
        return REJECT
    return None


def next_wave_size(
    rewards_mm: Sequence[float], rewards_text: Sequence[float], num_rollouts: int, lambda_c: float
) -> int:
    """How many more text-only rollouts to run now: the fewest after which the decision can be settled (all of
    them failing settles "kept", all succeeding settles "rejected"); 0 when it already is."""
    if settled_decision(rewards_mm, rewards_text, num_rollouts, lambda_c) is not None:
        return 0
    remaining = num_rollouts - len(rewards_text)
    rewards_text = list(rewards_text)
    for j in range(1, remaining):
        for outcome in (0.0, 1.0):
            if settled_decision(rewards_mm, rewards_text + [outcome] * j, num_rollouts, lambda_c) is not None:
                return j
    return remaining


def wave_plan(decisive_waves: int) -> tuple[bool, ...]:
    """The text-only waves of decisive scoring, each flagged True when it is the last (`decisive_waves` 1 or 2)."""
    return (False, True) if decisive_waves == 2 else (True,)


def wave_size(
    rewards_mm: Sequence[float],
    rewards_text: Sequence[float],
    num_rollouts: int,
    lambda_c: float,
    last_wave: bool,
) -> int:
    """How many text-only rollouts a row gets in a wave: none once its decision is settled; else the rest of its
    M in the last wave, and the fewest that could settle it (`next_wave_size`) in an earlier one."""
    need = next_wave_size(rewards_mm, rewards_text, num_rollouts, lambda_c)
    return num_rollouts - len(rewards_text) if need and last_wave else need


def decisive_scores(
    rewards_mm: Sequence[float], rewards_text: Sequence[float], num_rollouts: int, lambda_c: float
) -> dict[str, Any]:
    """The reward-based score columns of a row in decisive mode.

    A complete row (all M text-only rollouts ran) gets exactly the full run's values. A partial row gets:
    `rap_acc_mm`/`rap_difficulty` exact; `rap_acc_text` the mean of the rollouts that ran (NaN when none ran);
    `rap_cde` the bound on the side of its decision (the lowest possible CDE of a kept row, flagged
    `rap_cde_bound = +1`; the highest possible CDE of a rejected row, flagged -1), so comparing `rap_cde` with
    `lambda_c` gives the settled decision; `rap_text_rollouts` the number that ran.
    """
    n = len(rewards_text)
    if n == num_rollouts:
        grid = rollout_scores(rewards_mm, rewards_text)
        acc_mm, acc_text, cde, difficulty, bound = (
            grid.acc_mm,
            grid.acc_text,
            grid.cde,
            grid.difficulty,
            CDE_EXACT,
        )
    else:
        decision = settled_decision(rewards_mm, rewards_text, num_rollouts, lambda_c)
        if decision is None:
            raise ValueError(f"decisive scoring stopped after {n} text rollouts with the decision unsettled")
        exact_mm = _sum(rewards_mm) / len(rewards_mm)
        low, high = cde_interval(rewards_mm, rewards_text, num_rollouts)
        acc_mm, difficulty = float(exact_mm), float(1 - exact_mm)
        acc_text = float(_sum(rewards_text) / n) if n else math.nan
        cde, bound = (float(low), CDE_LOWER_BOUND) if decision == KEEP else (float(high), CDE_UPPER_BOUND)
    return {
        "rap_acc_mm": acc_mm,
        "rap_acc_text": acc_text,
        "rap_cde": cde,
        "rap_difficulty": difficulty,
        "rap_text_rollouts": float(n),
        "rap_cde_bound": bound,
    }
