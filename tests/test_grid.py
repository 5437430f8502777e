"""Scores on the rollout grid: exact k/M values, the CDE threshold decision at every grid value, grid plots.

The documented decision (docs/hub.md, "Scores on the rollout grid"; `rap_hf.estimators.cde`): with M rollouts
per arm and 0/1 rewards, a row whose rollouts give k_mm correct answers with the image and k_text without it has
CDE (k_mm - k_text)/M, and at ``lambda_c = j/M`` it passes the CDE filter exactly when k_mm - k_text >= j,
whether its scores were written by the engine (exact) or by older code as ``acc_mm - acc_text`` (float noise).
"""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rap_hf.config import RAPScoringConfig, RAPSelectionConfig
from rap_hf.estimators.cde import (
    CDE_TOLERANCE,
    cde_at_least,
    infer_rollout_grid,
    rollout_scores,
    snap_to_grid,
)
from rap_hf.selection import compute_stages

GRIDS = (3, 4, 5, 8)


def _rewards(k: int, m: int) -> list[float]:
    return [1.0] * k + [0.0] * (m - k)


def _grid_rows(m: int) -> list[tuple[int, int]]:
    return list(itertools.product(range(m + 1), repeat=2))  # every (k_mm, k_text)


@pytest.mark.parametrize("m", GRIDS)
def test_rollout_scores_are_the_floats_nearest_to_k_over_m(m):
    for k_mm, k_text in _grid_rows(m):
        scores = rollout_scores(_rewards(k_mm, m), _rewards(k_text, m))
        assert scores.acc_mm == float(Fraction(k_mm, m)) == k_mm / m
        assert scores.acc_text == k_text / m
        assert scores.cde == (k_mm - k_text) / m  # one correctly rounded division, not a difference of floats
        assert scores.difficulty == (m - k_mm) / m
        assert scores.on_grid


def test_the_float_noise_of_the_old_formula_is_gone():
    # acc_mm - acc_text left 0.19999999999999996 / 0.6000000000000001 / 0.39999999999999997 on the card
    assert 0.6 - 0.4 != 0.2 and 0.8 - 0.2 != 0.6
    assert rollout_scores(_rewards(3, 5), _rewards(2, 5)).cde == 0.2
    assert rollout_scores(_rewards(4, 5), _rewards(1, 5)).cde == 0.6
    assert rollout_scores(_rewards(4, 5), _rewards(2, 5)).cde == 0.4


@pytest.mark.parametrize("m", GRIDS)
@pytest.mark.parametrize("stored", ["exact", "legacy float difference"])
def test_reselection_at_every_grid_threshold_gives_the_documented_decision(m, stored):
    rows = _grid_rows(m)
    acc_mm = np.array([k_mm / m for k_mm, _ in rows])
    if stored == "exact":
        cde = np.array([rollout_scores(_rewards(a, m), _rewards(b, m)).cde for a, b in rows])
    else:  # what scoring stored before: the difference of two rounded accuracies
        cde = np.array([a / m - b / m for a, b in rows])
    no_ace = np.zeros(len(rows))
    for j in range(-m, m + 1):
        for lambda_c in {j / m, float(Fraction(j, m))}:  # the threshold as a user writes it
            config = RAPSelectionConfig(lambda_c=lambda_c, lambda_a=1.0, use_drm=False)
            stages = compute_stages(acc_mm, cde, no_ace, np.zeros(len(rows), dtype=bool), config)
            kept = [stage == "kept" for stage in stages]
            assert kept == [k_mm - k_text >= j for k_mm, k_text in rows], (m, j, stored)


@pytest.mark.parametrize("m", GRIDS)
def test_decimal_thresholds_between_grid_values(m):
    """A λc between two grid values keeps exactly the rows above it (no tolerance effect)."""
    rows = _grid_rows(m)
    cde = np.array([(a - b) / m for a, b in rows])
    for j in range(-m, m):
        lambda_c = (j + 0.5) / m
        assert list(cde_at_least(cde, lambda_c)) == [a - b > j for a, b in rows]


def test_fractional_rewards_are_exact_means_off_the_grid():
    """Partial credit: the stored value is the exact mean, rounded once; it is on no 1/M grid, and the
    threshold allows float noise only (documented in rap_hf.estimators.cde)."""
    scores = rollout_scores([0.3] * 5, [0.1] * 5)
    assert scores.acc_mm == 0.3 and scores.acc_text == 0.1
    # 0.3 and 0.1 are not exact binary fractions: their exact difference is 0.19999999999999998
    assert scores.cde == float(Fraction(0.3) - Fraction(0.1)) and scores.cde != 0.2
    assert bool(cde_at_least(scores.cde, 0.2))  # kept at lambda_c = 0.2: the gap is float noise
    assert not bool(cde_at_least(0.2 - 10 * CDE_TOLERANCE, 0.2))  # a real difference is not absorbed
    assert not scores.on_grid
    # partial credit that sums to whole numbers is still on the grid
    assert rollout_scores([0.5, 0.5, 1.0, 0.0], [0.25, 0.75, 0.0, 0.0]).on_grid


def test_rollout_scores_reject_bad_rewards():
    with pytest.raises(ValueError, match="no multimodal rewards"):
        rollout_scores([], [1.0])
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        rollout_scores([1.5], [0.0])
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        rollout_scores([float("nan")], [0.0])


def test_engine_row_scores_use_the_grid():
    """The engine's score columns come from rollout_scores (the lines of ScoringEngine.row_scores)."""
    from rap_hf.scoring.engine import ScoringEngine, ScoringRow
    from rap_hf.scoring.rollouts import ARM_MM, ARM_TEXT

    engine = ScoringEngine(
        None, None, RAPScoringConfig(num_rollouts=5, compute_ace=False, max_image_pixels=64), reward_fn=None
    )
    row = ScoringRow(index=0, images=[], mm_prompt="", text_prompt="", solution="1")
    row.completions = {ARM_MM: ["a"] * 5, ARM_TEXT: ["b"] * 5}
    row.completion_ids = {ARM_MM: [[1, 2]] * 5, ARM_TEXT: [[3]] * 5}
    row.rewards = {ARM_MM: _rewards(3, 5), ARM_TEXT: _rewards(2, 5)}
    scores = engine.row_scores(row)
    assert (scores["rap_acc_mm"], scores["rap_acc_text"], scores["rap_cde"], scores["rap_difficulty"]) == (
        0.6,
        0.4,
        0.2,
        0.4,
    )


def test_infer_and_snap_grid():
    noisy = np.array([0.6 - 0.4, 0.8 - 0.2, 1.0, 0.0, -0.4, np.nan])
    assert infer_rollout_grid(noisy) == 5
    assert infer_rollout_grid([1 / 3, 2 / 3, 0.0]) == 3
    assert infer_rollout_grid([0.5, 0.25, 0.125]) == 8
    assert infer_rollout_grid([0.123456]) is None  # fractional rewards: no grid
    assert infer_rollout_grid([np.nan]) is None
    snapped = snap_to_grid(noisy, 5)
    assert list(snapped[:5]) == [0.2, 0.6, 1.0, 0.0, -0.4] and np.isnan(snapped[5])
    assert snap_to_grid([0.123456], 5)[0] == 0.123456  # off-grid values are left alone


@pytest.mark.parametrize("m", GRIDS)
def test_histograms_bin_on_grid_centres(m):
    from rap_hf.report.plots import grid_edges, grid_label, grid_of

    values = np.array([(k - 1) / m for k in range(m + 2)])  # -1/m .. 1
    edges = grid_edges(values, m)
    centres = (edges[:-1] + edges[1:]) / 2
    assert np.allclose(centres, values)  # one bin per grid value, centred on it
    counts, _ = np.histogram(snap_to_grid(values, m), bins=edges)
    assert list(counts) == [1] * len(values)  # no value sits on a bin edge
    assert grid_of(values, m) == m and grid_of(values + 0.01, m) is None
    assert grid_label(1, 3) == "1/3" and grid_label(1, 5) == "0.2" and grid_label(3, 8) == "0.375"


def test_count_axes_have_integer_ticks():
    from rap_hf.report.plots import _integer_counts

    figure = Figure()
    axes = figure.add_subplot()
    axes.hist(
        [0.2, 0.2, 0.4], bins=[0.1, 0.3, 0.5]
    )  # at most 2 rows per bar: matplotlib would tick 0.25 rows
    _integer_counts(axes)
    FigureCanvasAgg(figure).draw()
    assert all(float(tick).is_integer() for tick in axes.get_yticks())
