"""Selection of cognitive samples: a pure function of the `rap_*` score columns, no model needed.

`select_cognitive_samples` returns every row with two columns added, `rap_stage` (why the row is in or
out) and `rap_selected`; the subset is ``annotated.filter(lambda r: r["rap_selected"])``. The stages, in
the order they are decided (row order is the dataset's index order throughout):

1. ``error``: ``rap_error`` is not null, or ``rap_cde`` is NaN/null (the row was not scored). Never selected.
2. CDE: ``rap_cde < lambda_c`` -> ``cde_rejected`` (``rap_cde == lambda_c`` is kept; the comparison allows
   float noise of up to `rap_hf.estimators.cde.CDE_TOLERANCE`, so a CDE of exactly k/M is kept at
   ``lambda_c = k/M`` however it was stored).
3. ACE, on the rows CDE kept: active ACE column (``rap_ace`` in "paper" and "paper_exact" mode,
   ``rap_ace_norm`` in "normalized" mode) ``> lambda_a`` -> ``ace_rejected``. A NaN ACE score (e.g.
   ``compute_ace=False``) is not ``> lambda_a``, so such rows pass the ACE filter. Outside "paper_exact" mode, a
   row whose ACE response (``rap_ace_length``) is shorter than ``ace_min_length`` tokens is not judged by ACE
   either (`ace_not_judged`): the paper's product rejects short answers for being short.
4. The rest: ``kept``.
5. DRM (``use_drm``): see `rap_hf.estimators.drm.drm_replace`; trivial kept rows -> ``drm_out``, hardest
   rejected rows -> ``drm_in``.
6. Budget (``target_size``, or ``target_ratio`` -> ``round(target_ratio * #non-error rows)`` with Python's
   ``round``, i.e. ties to even; a ``target_size`` larger than #non-error rows is capped): rows are ranked by
   `budget_rank`. Too many selected -> the selected rows ranked past the budget become ``budget_out``; too
   few -> the best-ranked unselected non-error rows (``cde_rejected``, ``ace_rejected``, ``drm_out``) become
   ``budget_in``.

``rap_selected`` is true exactly for ``kept``, ``drm_in`` and ``budget_in``.
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, DatasetDict, Value

from rap_hf.columns import (  # noqa: F401 (the stage names are re-exported: callers import them from here)
    ACE_REJECTED,
    BUDGET_IN,
    BUDGET_OUT,
    CDE_REJECTED,
    DRM_IN,
    DRM_OUT,
    ERROR,
    KEPT,
    SELECTED_COLUMN,
    SELECTED_STAGES,
    STAGE_COLUMN,
    STAGES,
)
from rap_hf.config import RAPSelectionConfig
from rap_hf.errors import RAPUserError
from rap_hf.estimators.cde import cde_at_least
from rap_hf.estimators.drm import drm_replace

logger = logging.getLogger("rap_hf")

#: Tokens of the response ACE read (absent in data scored before the column existed: then every row is judged).
ACE_LENGTH_COLUMN = "rap_ace_length"
#: What rap_cde is: 0 exact, +1 a lower bound, -1 an upper bound (decisive scoring; absent: every row exact).
CDE_BOUND_COLUMN = "rap_cde_bound"


def check_partial_rows(
    cde: np.ndarray, cde_bound: np.ndarray | None, is_error: np.ndarray, config: RAPSelectionConfig
) -> None:
    """Refuse a selection that needs what decisive scoring did not compute (docs/selection.md#decisive-scores).

    A partial row (``rap_cde_bound`` +1: ``rap_cde`` is the lowest its CDE can be; -1: the highest) has a
    settled CDE decision at ``lambda_c`` only when the bound decides it: a lower bound that passes, or an upper
    bound that fails. Otherwise, and for any budget (which ranks by exact ``rap_cde``), raise `RAPUserError`.
    """
    if cde_bound is None:
        return
    bound = np.nan_to_num(np.asarray(cde_bound, dtype=np.float64), nan=0.0)
    partial = (bound != 0) & ~np.asarray(is_error, dtype=bool) & ~np.isnan(cde)
    if not partial.any():
        return
    how = (
        f"{int(partial.sum())} row(s) were scored with text_arm='decisive': their text-only rollouts stopped "
        "once the CDE decision at the scoring threshold was settled, so rap_cde is only a bound"
    )
    fix = "Re-score with text_arm='full' to get exact CDE for every row."
    if config.target_size is not None or config.target_ratio is not None:
        raise RAPUserError(
            f"select_cognitive_samples: a budget ranks rows by exact rap_cde, but {how}. {fix}"
        )
    passes = cde_at_least(cde, config.lambda_c)
    settled = np.where(bound > 0, passes, ~passes)
    unsettled = partial & ~settled
    if unsettled.any():
        lower, upper = cde[partial & (bound > 0)], cde[partial & (bound < 0)]
        valid = (
            f"{upper.max() if upper.size else -1.0:g} < lambda_c <= {lower.min() if lower.size else 1.0:g}"
        )
        raise RAPUserError(
            f"select_cognitive_samples: lambda_c={config.lambda_c!r} cannot be decided for "
            f"{int(unsettled.sum())} row(s): {how}. Thresholds these scores decide: {valid}. {fix}"
        )


def budget_rank(cde: np.ndarray, ace: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Return ``rows`` (positions) ordered best first for the budget: ``cde`` descending, then ``ace``
    ascending (a NaN ACE sorts last among rows with equal cde), then index ascending."""
    rows = np.asarray(rows, dtype=np.int64)
    cde_rows = np.asarray(cde, dtype=np.float64)[rows]
    ace_rows = np.asarray(ace, dtype=np.float64)[rows]
    # np.lexsort sorts NaN last and is stable; the last key is the primary one.
    return rows[np.lexsort((rows, ace_rows, -cde_rows))]


def budget_size(
    n_valid: int, *, target_size: int | None = None, target_ratio: float | None = None
) -> int | None:
    """The number of rows to select, or None when no budget is set. ``n_valid`` = #non-error rows."""
    if target_size is not None:
        return min(int(target_size), n_valid)
    if target_ratio is not None:
        return min(round(target_ratio * n_valid), n_valid)
    return None


def apply_budget(stages: np.ndarray, cde: np.ndarray, ace: np.ndarray, budget: int) -> np.ndarray:
    """Return new stages with exactly ``min(budget, #non-error rows)`` rows selected (see `budget_rank`)."""
    stages = np.asarray(stages, dtype=object).copy()
    selected = np.isin(stages, SELECTED_STAGES)
    n_selected = int(selected.sum())
    if n_selected > budget:
        ranked = budget_rank(cde, ace, np.flatnonzero(selected))
        stages[ranked[budget:]] = BUDGET_OUT
    elif n_selected < budget:
        ranked = budget_rank(cde, ace, np.flatnonzero(~selected & (stages != ERROR)))
        stages[ranked[: budget - n_selected]] = BUDGET_IN
    return stages


def ace_not_judged(ace_length: np.ndarray | None, config: RAPSelectionConfig) -> np.ndarray | None:
    """Rows whose ACE response is too short to judge (``rap_ace_length < ace_min_length``, not in
    "paper_exact" mode); None when the lengths are unknown (data scored before `rap_ace_length` existed)."""
    if ace_length is None:
        return None
    length = np.asarray(ace_length, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.isfinite(length) & (length < config.ace_length_guard)


def compute_stages(
    acc_mm: np.ndarray,
    cde: np.ndarray,
    ace: np.ndarray,
    is_error: np.ndarray,
    config: RAPSelectionConfig,
    ace_length: np.ndarray | None = None,
    cde_bound: np.ndarray | None = None,
) -> np.ndarray:
    """The stage of every row (object array of str) from the score arrays; pure numpy, no dataset.

    ``ace_length`` (``rap_ace_length``) lets ACE leave short responses unjudged (`ace_not_judged`).
    ``cde_bound`` (``rap_cde_bound``, decisive scoring) marks rows whose ``rap_cde`` is a bound: a selection
    those rows cannot decide raises `RAPUserError` (`check_partial_rows`).
    """
    acc_mm = np.asarray(acc_mm, dtype=np.float64)
    cde = np.asarray(cde, dtype=np.float64)
    ace = np.asarray(ace, dtype=np.float64)
    unjudged = ace_not_judged(ace_length, config)
    if unjudged is not None:
        ace = np.where(unjudged, np.nan, ace)  # a NaN ACE is never > lambda_a, and ranks last in budgets
    error = np.asarray(is_error, dtype=bool) | np.isnan(cde)
    check_partial_rows(cde, cde_bound, error, config)

    stages = np.full(len(cde), KEPT, dtype=object)
    with np.errstate(invalid="ignore"):
        # On the rollout grid: rap_cde == lambda_c is kept, also for scores stored with float noise (cde.py).
        cde_rejected = ~error & ~cde_at_least(cde, config.lambda_c)
        ace_rejected = ~error & ~cde_rejected & (ace > config.lambda_a)
    stages[cde_rejected] = CDE_REJECTED
    stages[ace_rejected] = ACE_REJECTED
    stages[error] = ERROR

    if config.use_drm:
        stages = drm_replace(stages, acc_mm, cde, drm_k=config.drm_k, drm_ratio=config.drm_ratio)

    budget = budget_size(
        int((~error).sum()), target_size=config.target_size, target_ratio=config.target_ratio
    )
    if budget is not None:
        stages = apply_budget(stages, cde, ace, budget)
    return stages


def _required_columns(config: RAPSelectionConfig) -> list[str]:
    return ["rap_acc_mm", "rap_cde", config.active_ace_column]


def _check_columns(dataset: Dataset, config: RAPSelectionConfig, split: str | None = None) -> None:
    missing = [c for c in _required_columns(config) if c not in dataset.column_names]
    if missing:
        where = f" in split {split!r}" if split is not None else ""
        raise RAPUserError(
            f"select_cognitive_samples: missing required score column(s) {missing}{where} "
            f"(ace_mode={config.ace_mode!r}); available columns: {dataset.column_names}. "
            "Score the dataset with RAPDataFilter.score first."
        )


def _read_columns(dataset: Dataset, columns: list[str]) -> pa.Table:
    # The arrow formatter honours an indices mapping (after select/filter/shuffle), unlike `dataset.data`.
    return dataset.select_columns(columns).with_format("arrow")[:]


def _to_float(column: pa.ChunkedArray) -> np.ndarray:
    """Arrow column -> float64 numpy array, nulls as NaN."""
    return pc.cast(column, pa.float64()).to_numpy()


def _empty_counts() -> dict[str, int]:
    return dict.fromkeys(STAGES, 0)


def _count(stages: np.ndarray) -> dict[str, int]:
    counts = _empty_counts()
    values, numbers = np.unique(np.asarray(stages, dtype=str), return_counts=True)
    for value, number in zip(values.tolist(), numbers.tolist(), strict=True):
        counts[value] = counts.get(value, 0) + number
    return counts


def _select_split(
    dataset: Dataset, config: RAPSelectionConfig, split: str | None
) -> tuple[Dataset, dict[str, int]]:
    _check_columns(dataset, config, split)
    columns = _required_columns(config)
    has_error = "rap_error" in dataset.column_names
    has_length = ACE_LENGTH_COLUMN in dataset.column_names
    has_bound = CDE_BOUND_COLUMN in dataset.column_names
    extra = (
        (["rap_error"] if has_error else [])
        + ([ACE_LENGTH_COLUMN] if has_length else [])
        + ([CDE_BOUND_COLUMN] if has_bound else [])
    )
    table = _read_columns(dataset, columns + extra)
    n = table.num_rows
    if has_error:
        is_error = ~pc.is_null(table.column("rap_error")).to_numpy()
    else:
        is_error = np.zeros(n, dtype=bool)
    stages = compute_stages(
        _to_float(table.column("rap_acc_mm")),
        _to_float(table.column("rap_cde")),
        _to_float(table.column(config.active_ace_column)),
        is_error,
        config,
        ace_length=_to_float(table.column(ACE_LENGTH_COLUMN)) if has_length else None,
        cde_bound=_to_float(table.column(CDE_BOUND_COLUMN)) if has_bound else None,
    )
    selected = np.isin(stages, SELECTED_STAGES)

    existing = [c for c in (STAGE_COLUMN, SELECTED_COLUMN) if c in dataset.column_names]
    if existing:  # re-selection of an annotated dataset: replace only our own two columns
        dataset = dataset.remove_columns(existing)
    dataset = dataset.add_column(
        STAGE_COLUMN, pa.array(stages.tolist(), type=pa.string()), feature=Value("string")
    )
    dataset = dataset.add_column(SELECTED_COLUMN, pa.array(selected, type=pa.bool_()), feature=Value("bool"))

    counts = _count(stages)
    logger.info(
        "RAP selection%s: %d/%d rows selected; per stage: %s",
        f" [{split}]" if split is not None else "",
        int(selected.sum()),
        n,
        ", ".join(f"{stage}={counts[stage]}" for stage in STAGES),
    )
    return dataset, counts


def select_cognitive_samples(
    scored: Dataset | DatasetDict,
    config: RAPSelectionConfig | None = None,
    *,
    return_counts: bool = False,
):
    """Annotate every row of a scored dataset with ``rap_stage`` and ``rap_selected`` (see module docstring).

    Args:
        scored: output of `RAPDataFilter.score` (needs ``rap_acc_mm``, ``rap_cde`` and the active ACE column;
            ``rap_error`` is optional, all rows count as scored without it), or a `DatasetDict` of them,
            processed split by split.
        config: selection fields are read from it (a `RAPConfig` or a `RAPSelectionConfig`; the paper's defaults when None); scoring fields are ignored.
        return_counts: also return the number of rows per stage (all 8 stages, zeros included); for a
            `DatasetDict`, a dict ``split -> counts``.

    Returns:
        The annotated dataset (same rows, same order, existing columns unchanged except that previous
        ``rap_stage``/``rap_selected`` columns are replaced), or ``(annotated, counts)``.

    Raises:
        ValueError: a required column is missing (the message lists the missing and the available columns).
    """
    config = config if config is not None else RAPSelectionConfig()
    config.validate()
    if isinstance(scored, DatasetDict):
        results = {split: _select_split(ds, config, split) for split, ds in scored.items()}
        annotated = DatasetDict({split: ds for split, (ds, _) in results.items()})
        if return_counts:
            return annotated, {split: counts for split, (_, counts) in results.items()}
        return annotated
    if not isinstance(scored, Dataset):
        raise TypeError(
            f"select_cognitive_samples expects a datasets.Dataset or DatasetDict, got {type(scored)}"
        )
    annotated, counts = _select_split(scored, config, None)
    return (annotated, counts) if return_counts else annotated


def stage_counts(annotated: Dataset | DatasetDict) -> dict:
    """Rows per stage (all 8 stages, zeros included) of an annotated dataset; ``split -> counts`` for a
    `DatasetDict`."""
    if isinstance(annotated, DatasetDict):
        return {split: stage_counts(ds) for split, ds in annotated.items()}
    if STAGE_COLUMN not in annotated.column_names:
        raise RAPUserError(
            f"stage_counts: no {STAGE_COLUMN!r} column (run select_cognitive_samples first); "
            f"available columns: {annotated.column_names}"
        )
    column = _read_columns(annotated, [STAGE_COLUMN]).column(STAGE_COLUMN)
    counts = _empty_counts()
    for entry in pc.value_counts(column).to_pylist():
        counts[entry["values"]] = counts.get(entry["values"], 0) + entry["counts"]
    return counts
