"""DRM: the Difficulty-aware Replacement Module (docs/method.md, DRM), as a pure numpy function.

After CDE and ACE, the kept rows the model already solves every time (trivial: ``acc_mm == 1``) teach GRPO
nothing (zero advantage), so they are swapped for the hardest rows CDE/ACE rejected that the model solves at
least sometimes (``acc_mm > 0``; an all-wrong group gives zero advantage too). The subset size is unchanged.
"""

from __future__ import annotations

import math

import numpy as np

from rap_hf.columns import ACE_REJECTED, CDE_REJECTED, DRM_IN, DRM_OUT, KEPT


def difficulty(acc_mm: np.ndarray | float) -> np.ndarray:
    """Difficulty of a row: ``1 - acc_mm`` (one minus the multimodal group pass rate). NaN stays NaN."""
    return 1.0 - np.asarray(acc_mm, dtype=np.float64)


def drm_budget(n_trivial: int, n_candidates: int, n_kept: int, *, drm_k=None, drm_ratio=None) -> int:
    """Number of replacements k: ``min(n_trivial, n_candidates)``, capped by ``drm_k`` and/or
    ``floor(drm_ratio * n_kept)`` when set.

    The product is rounded to 9 decimals before the floor so that float artefacts such as
    ``0.29 * 100 == 28.999999999999996`` give 29, not 28.
    """
    k = min(n_trivial, n_candidates)
    if drm_k is not None:
        k = min(k, int(drm_k))
    if drm_ratio is not None:
        k = min(k, math.floor(round(drm_ratio * n_kept, 9)))
    return max(k, 0)


def drm_replace(
    stages: np.ndarray,
    acc_mm: np.ndarray,
    cde: np.ndarray,
    *,
    drm_k: int | None = None,
    drm_ratio: float | None = None,
) -> np.ndarray:
    """Apply the DRM replacement rule to per-row stages and return the new stages (input is not modified).

    Rule (rows are identified by their position, i.e. the dataset's index order):

    - trivial rows: stage ``kept`` and ``acc_mm == 1.0``, in index order;
    - candidate rows: stage ``cde_rejected`` or ``ace_rejected`` and ``0 < acc_mm < 1`` (a NaN acc_mm is
      neither trivial nor a candidate; an all-wrong group gives GRPO no advantage, and an all-correct one
      would swap a trivial row for another trivial row, which makes the subset no harder: our reading),
      ordered by ``acc_mm`` ascending (hardest first), then ``cde`` descending (most image-dependent
      first), then index ascending;
    - ``k = min(#trivial, #candidates)``, further capped by ``drm_k`` or by ``floor(drm_ratio * #kept)``
      (``#kept`` counted before replacement) when set;
    - the first k trivial rows become ``drm_out`` and the first k candidates become ``drm_in``.

    Every other row keeps its stage. The number of rows in ``{kept, drm_in}`` does not change.
    """
    stages = np.asarray(stages)
    acc_mm = np.asarray(acc_mm, dtype=np.float64)
    cde = np.asarray(cde, dtype=np.float64)
    if not (len(stages) == len(acc_mm) == len(cde)):
        raise ValueError(
            f"stages, acc_mm and cde must have the same length, got {len(stages)}, {len(acc_mm)}, {len(cde)}"
        )

    kept = stages == KEPT
    trivial = np.flatnonzero(kept & (acc_mm == 1.0))
    candidate_mask = ((stages == CDE_REJECTED) | (stages == ACE_REJECTED)) & (acc_mm > 0) & (acc_mm < 1)
    candidates = np.flatnonzero(candidate_mask)
    # np.lexsort: the last key is the primary one; it is a stable sort, so the index key makes ties explicit.
    order = np.lexsort((candidates, -cde[candidates], acc_mm[candidates]))
    candidates = candidates[order]

    k = drm_budget(len(trivial), len(candidates), int(kept.sum()), drm_k=drm_k, drm_ratio=drm_ratio)
    new_stages = stages.astype(object, copy=True)
    new_stages[trivial[:k]] = DRM_OUT
    new_stages[candidates[:k]] = DRM_IN
    return new_stages
