"""Live re-selection: the app's controls -> a `RAPSelectionConfig` -> a `Selection` of the stored scores.

`run_selection` is `rap_hf.selection.select_cognitive_samples` on the score columns only: no model, no images,
so moving a slider costs one pass over a few float columns. `selection_key` is what a selection result
depends on (the store memoises by it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
from datasets import Dataset

from rap_hf.config import ACE_MODES, RAPSelectionConfig
from rap_hf.errors import RAPUserError
from rap_hf.explorer.data import ExplorerData, ExplorerDataError
from rap_hf.selection import CDE_BOUND_COLUMN, ERROR, SELECTED_STAGES, STAGE_COLUMN, select_cognitive_samples

# How many trivial kept rows DRM may replace: every one, at most `drm_k`, or at most `drm_ratio` of the kept.
DRM_LIMITS = ("all trivial", "k", "ratio")
# The ranges of the page's threshold sliders (app.py lays them out with these).
LAMBDA_A_LOG10_RANGE = (-12.0, 4.0)
LAMBDA_A_NORM_RANGE = (-8.0, 1.0)
MAX_DRM_K = 10**9


def _number(name: str, value: Any, low: float, high: float) -> float:
    """`value` as a float in [low, high]; `ExplorerDataError` otherwise (NaN, text, out of range)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ExplorerDataError(f"{name} must be a number, got {value!r:.40}") from None
    if not low <= number <= high:  # also false for NaN
        raise ExplorerDataError(f"{name} must be in [{low:g}, {high:g}], got {number:g}")
    return number


def config_from_controls(
    lambda_c: float,
    ace_mode: str,
    lambda_a_log10: float,
    lambda_a_normalized: float,
    use_drm: bool = True,
    drm_limit: str = DRM_LIMITS[0],
    drm_k: float | None = None,
    drm_ratio: float | None = None,
    target_ratio: float | None = None,
) -> RAPSelectionConfig:
    """The `RAPSelectionConfig` for the app's controls.

    The paper-mode ACE threshold is set on a log10 slider (`lambda_a = 10 ** lambda_a_log10`) because the
    paper's score is a product over the response and spans many orders of magnitude; the normalized score is
    a mean log, set directly. `target_ratio` 0 or None means no budget (thresholds only).

    Raises:
        ExplorerDataError: a value `RAPSelectionConfig` rejects (the message names it).
    """
    if ace_mode not in ACE_MODES:
        raise ExplorerDataError(f"ACE mode must be one of {ACE_MODES}, got {ace_mode!r}")
    if drm_limit not in DRM_LIMITS:
        raise ExplorerDataError(f"DRM limit must be one of {DRM_LIMITS}, got {drm_limit!r}")
    # The sliders' own ranges, checked again here: an API call can send anything (10 ** 1e6 overflows).
    lambda_a = (
        10.0 ** _number("log10 lambda_a", lambda_a_log10, *LAMBDA_A_LOG10_RANGE)
        if ace_mode == "paper"
        else _number("lambda_a", lambda_a_normalized, *LAMBDA_A_NORM_RANGE)
    )
    try:
        return RAPSelectionConfig(
            lambda_c=_number("lambda_c", lambda_c, -1.0, 1.0),
            lambda_a=lambda_a,
            ace_mode=ace_mode,
            use_drm=bool(use_drm),
            drm_k=int(_number("drm_k", drm_k, 0, MAX_DRM_K))
            if drm_limit == "k" and drm_k is not None
            else None,
            drm_ratio=_number("drm_ratio", drm_ratio, 0.0, 1.0)
            if drm_limit == "ratio" and drm_ratio
            else None,
            target_ratio=_number("target_ratio", target_ratio, 0.0, 1.0) if target_ratio else None,
        )
    except (TypeError, ValueError) as exc:
        raise ExplorerDataError(str(exc)) from exc


def selection_key(config: RAPSelectionConfig) -> tuple:
    """The selection fields of a config (a `RAPConfig` or a `RAPSelectionConfig`): what a selection result
    depends on, hashable."""
    return dataclasses.astuple(RAPSelectionConfig.of(config))


@dataclass
class Selection:
    """The result of one selection: the stage of every row, counts per stage, and the config used."""

    config: RAPSelectionConfig
    annotated: Dataset  # `ExplorerData.scores` + rap_stage/rap_selected (input of the plots)
    stages: np.ndarray  # object array of stage names, dataset order
    counts: dict[str, int]

    @property
    def selected(self) -> np.ndarray:
        return np.isin(self.stages, SELECTED_STAGES)

    @property
    def num_selected(self) -> int:
        return int(sum(self.counts[s] for s in SELECTED_STAGES))

    @property
    def num_scored(self) -> int:
        return int(len(self.stages) - self.counts[ERROR])

    @property
    def ratio(self) -> float:
        """Selected / scored (non-error) rows, as in `rap_hf.report.summary`."""
        return self.num_selected / self.num_scored if self.num_scored else 0.0


def run_selection(data: ExplorerData, config: RAPSelectionConfig) -> Selection:
    """`select_cognitive_samples` on the score columns (no model, no images touched).

    `config` may be a `RAPConfig`; only its selection half is used and kept in the result.
    """
    config = RAPSelectionConfig.of(config)
    active = config.active_ace_column
    if active not in data.scores.column_names:
        other = "normalized" if config.ace_mode == "paper" else "paper"
        raise ExplorerDataError(
            f"ACE mode {config.ace_mode!r} needs the column {active}, which this dataset lacks; "
            f"switch ACE mode to {other!r}."
        )
    try:
        annotated, counts = select_cognitive_samples(data.scores, config, return_counts=True)
    except RAPUserError as exc:
        if CDE_BOUND_COLUMN not in data.scores.column_names:
            raise ExplorerDataError(str(exc)) from None
        # Decisive scores (rap_cde a bound on some rows) cannot decide every threshold: say what to move.
        raise ExplorerDataError(
            f"This selection needs exact CDE scores that this dataset does not have. {exc} In the explorer: "
            "move lambda_c back into that range and clear the budget."
        ) from None
    column = annotated.select_columns([STAGE_COLUMN]).with_format("arrow")[:].column(STAGE_COLUMN)
    stages = np.asarray(column.to_pylist(), dtype=object)
    return Selection(config, annotated, stages, counts)
