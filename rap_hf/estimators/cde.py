"""CDE, the Causal Discrepancy Estimator (docs/method.md §2), and the rollout grid its scores live on.

The image is the treatment: a sample whose answer the model finds as well without the image relies on
language priors and teaches no multimodal reasoning.

**The rollout grid.** With M rollouts per arm and 0/1 rewards, ``acc_mm = k_mm / M``, ``acc_text = k_text / M``
and ``cde = (k_mm - k_text) / M`` are fractions with denominator M: they lie on the grid ``{k / M}``. Computing
them as ``acc_mm - acc_text`` in floating point leaves noise (``0.6 - 0.4 == 0.19999999999999996``), so a
row whose true CDE is exactly the threshold is kept or rejected depending on which two accuracies produced it.
`rollout_scores` therefore computes every score from the rewards in exact rational arithmetic and rounds once:
each stored value is the float nearest to the exact fraction, so ``(3 - 2) / 5`` is stored as ``0.2``, the same
float as the literal ``0.2`` a user passes as ``lambda_c``.

**Fractional rewards** (a custom ``reward_fn`` returning values in [0, 1] other than 0 and 1): the scores are
still the float nearest to the exact mean of the rewards as returned, but they lie on the 1/M grid only when the
rewards of each arm sum to a whole number. Otherwise there is no grid, and two means that differ only by the
representation error of their rewards (``0.3 - 0.1``) are not exactly the decimal a person reads. Selection
therefore compares CDE with ``lambda_c`` up to `CDE_TOLERANCE` (`cde_at_least`): a difference below 1e-9, far
below any grid step 1/M, is float noise and never a real difference in CDE.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

CDE_TOLERANCE = 1e-9
"""Absolute tolerance of the CDE threshold comparison: ``cde >= lambda_c - CDE_TOLERANCE`` keeps a row. It
only absorbs float noise; it is far smaller than any rollout grid step 1/M."""
MAX_GRID = 64
"""The largest number of rollouts `infer_rollout_grid` tries when the grid is not recorded."""


def cde_score(acc_mm: float, acc_text: float) -> float:
    """Signed causal discrepancy D(x) = acc_mm(x) - acc_text(x), in [-1, 1].

    Prefer `rollout_scores`, which computes CDE from the rewards themselves: the difference of two already
    rounded accuracies is exact only up to float noise (``cde_score(0.6, 0.4) == 0.19999999999999996``).

    Args:
        acc_mm: mean reward of the rollouts *with* the image(s), in [0, 1].
        acc_text: mean reward of the rollouts *without* the image(s), in [0, 1].

    Raises:
        ValueError: if either accuracy is NaN or outside [0, 1] (a silently wrong score is worse than an error).
    """
    for name, value in (("acc_mm", acc_mm), ("acc_text", acc_text)):
        if value is None or math.isnan(value) or not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(acc_mm) - float(acc_text)


@dataclass(frozen=True)
class RolloutScores:
    """The reward-based scores of one row, each the float nearest to its exact value (see the module doc)."""

    acc_mm: float
    """Mean reward of the rollouts with the image."""
    acc_text: float
    """Mean reward of the rollouts without the image."""
    cde: float
    """``acc_mm - acc_text``, computed exactly, rounded once."""
    difficulty: float
    """``1 - acc_mm``, computed exactly, rounded once."""
    on_grid: bool
    """Whether both arms' rewards sum to a whole number, i.e. the scores lie on the 1/M grid."""


def _exact_mean(rewards: Sequence[float], arm: str) -> Fraction:
    if len(rewards) == 0:
        raise ValueError(f"no {arm} rewards: a mean needs at least one rollout")
    total = Fraction(0)
    for reward in rewards:
        value = float(reward)
        if math.isnan(value) or not 0.0 <= value <= 1.0:
            raise ValueError(f"{arm} rewards must be numbers in [0, 1], got {reward!r}")
        total += Fraction(value)  # a float is an exact binary fraction: no rounding here
    return total / len(rewards)


def rollout_scores(rewards_mm: Sequence[float], rewards_text: Sequence[float]) -> RolloutScores:
    """acc_mm, acc_text, CDE and difficulty of one row from its rollout rewards, without float noise.

    Every score is computed in exact rational arithmetic (`fractions.Fraction`) and rounded to float once. With
    0/1 rewards and M rollouts per arm this stores exactly the float nearest to ``k / M``: ``(k_mm - k_text) / M``
    for CDE, so a CDE of 1/5 is the float ``0.2``, equal to ``lambda_c=0.2``.

    Args:
        rewards_mm: the rewards of the rollouts with the image, each in [0, 1].
        rewards_text: the rewards of the rollouts without the image, each in [0, 1].

    Raises:
        ValueError: an arm has no rewards, or a reward is NaN or outside [0, 1].
    """
    acc_mm = _exact_mean(rewards_mm, "multimodal")
    acc_text = _exact_mean(rewards_text, "text-only")
    on_grid = all(
        (mean * len(rewards)).denominator == 1
        for mean, rewards in ((acc_mm, rewards_mm), (acc_text, rewards_text))
    )
    return RolloutScores(
        acc_mm=float(acc_mm),
        acc_text=float(acc_text),
        cde=float(acc_mm - acc_text),
        difficulty=float(1 - acc_mm),
        on_grid=on_grid,
    )


def cde_at_least(cde: np.ndarray | float, lambda_c: float) -> np.ndarray:
    """Whether each CDE passes the threshold, ``cde >= lambda_c``, up to `CDE_TOLERANCE` (float noise).

    Scores written by `rollout_scores` compare exactly; the tolerance makes scores stored with float noise
    (``0.19999999999999996`` for 1/5, e.g. by older versions or by hand) get the same decision as their exact
    value. NaN never passes.
    """
    values = np.asarray(cde, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return values >= float(lambda_c) - CDE_TOLERANCE


def infer_rollout_grid(values: np.ndarray | Sequence[float], max_rollouts: int = MAX_GRID) -> int | None:
    """The smallest M <= ``max_rollouts`` such that every finite value is a multiple of 1/M (up to
    `CDE_TOLERANCE`), or None when there is no such M (fractional rewards) or no finite value.

    For reading back scores whose number of rollouts was not recorded, e.g. to bin a histogram on the grid.
    The answer is a lower bound of the true M: scores of M = 10 that happen to be multiples of 1/5 give 5.
    """
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return None
    for m in range(1, max_rollouts + 1):
        scaled = finite * m
        if np.all(np.abs(scaled - np.round(scaled)) <= CDE_TOLERANCE * m):
            return m
    return None


def snap_to_grid(values: np.ndarray | Sequence[float], num_rollouts: int) -> np.ndarray:
    """Values moved to the nearest multiple of ``1 / num_rollouts`` when they are within float noise of it
    (`CDE_TOLERANCE`); values off the grid (fractional rewards) and NaN are returned unchanged."""
    values = np.asarray(values, dtype=np.float64)
    scaled = values * num_rollouts
    nearest = np.round(scaled)
    with np.errstate(invalid="ignore"):
        close = np.abs(scaled - nearest) <= CDE_TOLERANCE * num_rollouts
    # nearest / M (not nearest * (1/M)): one correctly rounded division, the same float rollout_scores stores.
    return np.where(close, nearest / num_rollouts, values)
