"""Selection rules on hand-made scored datasets (no model). Every expected stage is computed by hand."""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import pytest
from datasets import Dataset, DatasetDict

from rap_hf.config import RAPConfig
from rap_hf.estimators.drm import difficulty, drm_replace
from rap_hf.selection import STAGES, budget_rank, select_cognitive_samples, stage_counts

NAN = float("nan")


def scored(rows, *, with_error=True, extra=True):
    """rows: dicts with acc (rap_acc_mm), cde, ace (rap_ace), optional ace_norm and error."""
    data = {
        "rap_acc_mm": [r["acc"] for r in rows],
        "rap_cde": [r["cde"] for r in rows],
        "rap_ace": [r.get("ace", 0.0) for r in rows],
        "rap_ace_norm": [r.get("ace_norm", -5.0) for r in rows],
    }
    if with_error:
        data["rap_error"] = [r.get("error") for r in rows]
    if extra:
        data = {
            "id": list(range(len(rows))),
            "prompt": [[{"role": "user", "content": f"question {i}"}] for i in range(len(rows))],
            "solution": [str(i) for i in range(len(rows))],
            **data,
            "rap_completions_mm": [[f"a{i}", f"b{i}"] for i in range(len(rows))],
        }
    return Dataset.from_dict(data)


def stages_of(ds):
    return ds["rap_stage"]


# ---------------------------------------------------------------------------------------------------------
# error, CDE, ACE
# ---------------------------------------------------------------------------------------------------------

FILTER_ROWS = [
    {"acc": 0.8, "cde": 0.8, "ace": 0.05},  # 0 kept
    {"acc": 0.8, "cde": 0.9, "ace": 0.0, "error": "boom"},  # 1 error (scores ignored)
    {"acc": 0.6, "cde": 0.5, "ace": 0.1},  # 2 kept: cde == lambda_c and ace == lambda_a
    {"acc": 0.6, "cde": 0.49, "ace": 0.0},  # 3 cde_rejected
    {"acc": 0.6, "cde": 0.6, "ace": 0.1000001},  # 4 ace_rejected
    {"acc": 0.6, "cde": NAN, "ace": 0.0},  # 5 error: not scored (NaN cde)
    {"acc": 0.8, "cde": 0.7, "ace": NAN},  # 6 kept: NaN ACE is not > lambda_a
    {"acc": 0.4, "cde": 0.3, "ace": 0.9},  # 7 cde_rejected (CDE decides first)
]
FILTER_EXPECTED = ["kept", "error", "kept", "cde_rejected", "ace_rejected", "error", "kept", "cde_rejected"]


def test_error_cde_ace_stages():
    out = select_cognitive_samples(scored(FILTER_ROWS), RAPConfig(use_drm=False))
    assert stages_of(out) == FILTER_EXPECTED
    assert out["rap_selected"] == [True, False, True, False, False, False, True, False]


def test_without_rap_error_column_all_rows_are_scored():
    rows = [dict(r) for r in FILTER_ROWS]
    rows[1].pop("error")
    out = select_cognitive_samples(scored(rows, with_error=False), RAPConfig(use_drm=False))
    assert stages_of(out)[1] == "kept"
    assert stages_of(out)[5] == "error"  # NaN cde is still "not scored"


def test_all_null_rap_error_column():
    rows = [{"acc": 0.6, "cde": 0.6}, {"acc": 0.6, "cde": 0.1}]
    out = select_cognitive_samples(scored(rows), RAPConfig(use_drm=False))
    assert stages_of(out) == ["kept", "cde_rejected"]


def test_thresholds_follow_config():
    rows = [{"acc": 0.6, "cde": 0.3, "ace": 0.05}, {"acc": 0.6, "cde": 0.2, "ace": 0.3}]
    out = select_cognitive_samples(scored(rows), RAPConfig(lambda_c=0.3, lambda_a=0.05, use_drm=False))
    assert stages_of(out) == ["kept", "cde_rejected"]


def test_normalized_mode_reads_rap_ace_norm():
    rows = [
        {"acc": 0.6, "cde": 0.6, "ace": 5.0, "ace_norm": -0.5},  # 0 == lambda_a -> kept
        {"acc": 0.6, "cde": 0.6, "ace": 0.0, "ace_norm": -0.49},  # 1 > lambda_a -> rejected
        {"acc": 0.6, "cde": 0.6, "ace": 5.0, "ace_norm": -2.0},  # 2 kept
        {"acc": 0.6, "cde": 0.6, "ace": 0.0, "ace_norm": NAN},  # 3 NaN -> kept
    ]
    normalized = RAPConfig(ace_mode="normalized", lambda_a=-0.5, use_drm=False)
    assert stages_of(select_cognitive_samples(scored(rows), normalized)) == [
        "kept",
        "ace_rejected",
        "kept",
        "kept",
    ]
    paper = RAPConfig(ace_mode="paper", lambda_a=0.1, use_drm=False)
    assert stages_of(select_cognitive_samples(scored(rows), paper)) == [
        "ace_rejected",
        "kept",
        "ace_rejected",
        "kept",
    ]


# ---------------------------------------------------------------------------------------------------------
# DRM
# ---------------------------------------------------------------------------------------------------------

DRM_ROWS = [
    {"acc": 1.0, "cde": 0.6},  # 0 kept, trivial
    {"acc": 0.8, "cde": 0.6},  # 1 kept, not trivial
    {"acc": 1.0, "cde": 1.0},  # 2 kept, trivial
    {"acc": 0.4, "cde": 0.2},  # 3 cde_rejected, candidate
    {"acc": 0.4, "cde": 0.6, "ace": 0.5},  # 4 ace_rejected, candidate
    {"acc": 0.2, "cde": -0.2},  # 5 cde_rejected, candidate (hardest)
    {"acc": 0.0, "cde": 0.0},  # 6 cde_rejected, NOT a candidate (acc_mm == 0)
    {"acc": 0.4, "cde": 0.2},  # 7 cde_rejected, candidate (ties row 3 on acc and cde)
    {"acc": 1.0, "cde": 0.8},  # 8 kept, trivial
]
# trivial in index order: 0, 2, 8; candidates ordered (acc asc, cde desc, index): 5, 4, 3, 7; #kept = 4
BEFORE_DRM = [
    "kept",
    "kept",
    "kept",
    "cde_rejected",
    "ace_rejected",
    "cde_rejected",
    "cde_rejected",
    "cde_rejected",
    "kept",
]


def test_drm_default_replaces_all_trivial_in_order():
    out = select_cognitive_samples(scored(DRM_ROWS), RAPConfig())
    assert stages_of(out) == [
        "drm_out",
        "kept",
        "drm_out",
        "drm_in",  # 3 beats 7 on index
        "drm_in",  # 4 beats 3 on cde
        "drm_in",  # 5 first: lowest acc_mm
        "cde_rejected",
        "cde_rejected",
        "drm_out",
    ]
    assert out["rap_selected"] == [False, True, False, True, True, True, False, False, False]


def test_use_drm_false():
    out = select_cognitive_samples(scored(DRM_ROWS), RAPConfig(use_drm=False, drm_k=1))
    assert stages_of(out) == BEFORE_DRM


def test_drm_k_caps():
    out = select_cognitive_samples(scored(DRM_ROWS), RAPConfig(drm_k=1))
    expected = list(BEFORE_DRM)
    expected[0] = "drm_out"
    expected[5] = "drm_in"
    assert stages_of(out) == expected
    assert stages_of(select_cognitive_samples(scored(DRM_ROWS), RAPConfig(drm_k=0))) == BEFORE_DRM


def test_drm_ratio_floors():
    # floor(0.7 * 4 kept) = floor(2.8) = 2
    out = select_cognitive_samples(scored(DRM_ROWS), RAPConfig(drm_ratio=0.7))
    expected = list(BEFORE_DRM)
    expected[0] = expected[2] = "drm_out"
    expected[5] = expected[4] = "drm_in"
    assert stages_of(out) == expected
    # floor(0.2 * 4) = 0: nothing replaced
    assert stages_of(select_cognitive_samples(scored(DRM_ROWS), RAPConfig(drm_ratio=0.2))) == BEFORE_DRM


def test_drm_k_capped_by_candidates():
    rows = [
        {"acc": 1.0, "cde": 0.6},  # 0 trivial
        {"acc": 1.0, "cde": 0.9},  # 1 trivial
        {"acc": 0.0, "cde": 0.0},  # 2 rejected, acc 0: not a candidate
        {"acc": 0.6, "cde": 0.1},  # 3 the only candidate
        {"acc": 1.0, "cde": 0.7},  # 4 trivial
    ]
    out = select_cognitive_samples(scored(rows), RAPConfig(drm_k=10))
    assert stages_of(out) == ["drm_out", "kept", "cde_rejected", "drm_in", "kept"]


def test_drm_candidates_exclude_all_wrong_rows():
    rows = [
        {"acc": 1.0, "cde": 0.6},
        {"acc": 0.0, "cde": -0.4},
        {"acc": 0.0, "cde": 0.0, "ace": 0.9},
    ]
    out = select_cognitive_samples(scored(rows), RAPConfig())
    assert stages_of(out) == ["kept", "cde_rejected", "cde_rejected"]


def test_drm_never_touches_error_rows():
    rows = [
        {"acc": 1.0, "cde": 0.6},  # 0 trivial
        {"acc": 0.2, "cde": 0.0, "error": "timeout"},  # 1 error: not a candidate
        {"acc": 0.6, "cde": 0.0},  # 2 candidate
    ]
    out = select_cognitive_samples(scored(rows), RAPConfig())
    assert stages_of(out) == ["drm_out", "error", "drm_in"]


def test_drm_replace_pure_numpy():
    stages = np.array(["kept", "ace_rejected", "kept", "cde_rejected", "error", "kept"], dtype=object)
    acc = np.array([1.0, 0.6, 1.0, 0.6, 0.2, 0.4])
    cde = np.array([0.5, 0.7, 0.9, 0.7, 0.0, 0.6])
    new = drm_replace(stages, acc, cde)
    # candidates: 1 and 3 tie on acc and cde -> index order; error row 4 is not a candidate
    assert new.tolist() == ["drm_out", "drm_in", "drm_out", "drm_in", "error", "kept"]
    assert stages.tolist() == ["kept", "ace_rejected", "kept", "cde_rejected", "error", "kept"]  # unchanged
    assert drm_replace(stages, acc, cde, drm_k=1).tolist() == [
        "drm_out",
        "drm_in",
        "kept",
        "cde_rejected",
        "error",
        "kept",
    ]
    # floor(0.5 * 3 kept) = 1
    assert drm_replace(stages, acc, cde, drm_ratio=0.5).tolist()[:4] == [
        "drm_out",
        "drm_in",
        "kept",
        "cde_rejected",
    ]


def test_difficulty():
    assert difficulty(np.array([1.0, 0.2, 0.0])).tolist() == pytest.approx([0.0, 0.8, 1.0])
    assert math.isnan(difficulty(np.array([NAN]))[0])


# ---------------------------------------------------------------------------------------------------------
# budget
# ---------------------------------------------------------------------------------------------------------

BUDGET_ROWS = [
    {"acc": 0.6, "cde": 0.6, "ace": 0.05},  # 0 kept
    {"acc": 0.6, "cde": 0.9, "ace": 0.08},  # 1 kept
    {"acc": 0.6, "cde": 0.6, "ace": 0.01},  # 2 kept
    {"acc": 0.6, "cde": 0.6, "ace": 0.01},  # 3 kept (ties row 2)
    {"acc": 0.6, "cde": 0.2, "ace": 0.0},  # 4 cde_rejected
    {"acc": 0.6, "cde": 0.4, "ace": 0.0},  # 5 cde_rejected
    {"acc": 0.6, "cde": 0.8, "ace": 0.5},  # 6 ace_rejected
    {"acc": 0.6, "cde": 0.9, "ace": 0.0, "error": "bad image"},  # 7 error
    {"acc": 0.6, "cde": 0.4, "ace": 0.0},  # 8 cde_rejected (ties row 5)
    {"acc": 0.6, "cde": 0.6, "ace": NAN},  # 9 kept (NaN ACE)
]
# 9 non-error rows. Selected ranking: 1, 2, 3, 0, 9.  Unselected ranking: 6, 5, 8, 4.
BEFORE_BUDGET = [
    "kept",
    "kept",
    "kept",
    "kept",
    "cde_rejected",
    "cde_rejected",
    "ace_rejected",
    "error",
    "cde_rejected",
    "kept",
]


def with_changes(changes):
    stages = list(BEFORE_BUDGET)
    for index, stage in changes.items():
        stages[index] = stage
    return stages


def test_budget_out_ranking():
    # keeps 1 (highest cde) and 2; 2 beats its exact tie 3 on index
    out = select_cognitive_samples(scored(BUDGET_ROWS), RAPConfig(target_size=2))
    assert stages_of(out) == with_changes({3: "budget_out", 0: "budget_out", 9: "budget_out"})
    assert sum(out["rap_selected"]) == 2


def test_budget_out_nan_ace_ranks_last():
    out = select_cognitive_samples(scored(BUDGET_ROWS), RAPConfig(target_size=4))
    assert stages_of(out) == with_changes({9: "budget_out"})


def test_budget_out_ace_ascending():
    # cde ties at 0.6: 2 and 3 (ace 0.01) beat 0 (ace 0.05), which beats 9 (NaN)
    out = select_cognitive_samples(scored(BUDGET_ROWS), RAPConfig(target_size=3))
    assert stages_of(out) == with_changes({0: "budget_out", 9: "budget_out"})


def test_budget_in_ranking_with_index_ties():
    out = select_cognitive_samples(scored(BUDGET_ROWS), RAPConfig(target_size=7))
    assert stages_of(out) == with_changes({6: "budget_in", 5: "budget_in"})  # 5 beats its tie 8 on index


def test_budget_equal_to_selected_changes_nothing():
    out = select_cognitive_samples(scored(BUDGET_ROWS), RAPConfig(target_size=5))
    assert stages_of(out) == BEFORE_BUDGET


def test_target_size_larger_than_rows_is_capped():
    out = select_cognitive_samples(scored(BUDGET_ROWS), RAPConfig(target_size=100))
    expected = with_changes({4: "budget_in", 5: "budget_in", 6: "budget_in", 8: "budget_in"})
    assert stages_of(out) == expected
    assert out["rap_selected"] == [True] * 7 + [False] + [True] * 2


def test_target_size_zero():
    out = select_cognitive_samples(scored(BUDGET_ROWS), RAPConfig(target_size=0))
    assert stages_of(out) == with_changes({i: "budget_out" for i in (0, 1, 2, 3, 9)})


@pytest.mark.parametrize(
    ("ratio", "changes"),
    [
        (0.2, {3: "budget_out", 0: "budget_out", 9: "budget_out"}),  # 1.8 -> 2
        (0.3, {0: "budget_out", 9: "budget_out"}),  # 2.7 -> 3
        (0.5, {9: "budget_out"}),  # 4.5 -> 4 (Python round: ties to even)
        (0.7, {6: "budget_in"}),  # 6.3 -> 6
        (0.75, {6: "budget_in", 5: "budget_in"}),  # 6.75 -> 7
        (1.0, {4: "budget_in", 5: "budget_in", 6: "budget_in", 8: "budget_in"}),  # 9
    ],
)
def test_target_ratio_rounding(ratio, changes):
    out = select_cognitive_samples(scored(BUDGET_ROWS), RAPConfig(target_ratio=ratio))
    assert stages_of(out) == with_changes(changes)


def test_budget_after_drm_can_bring_back_drm_out_rows():
    # after DRM: selected 1, 3, 4, 5 (4 rows); 9 non-error. unselected ranking by cde: 2 (1.0), 8 (0.8), 0 (0.6), 7 (0.2), 6 (0.0)
    out = select_cognitive_samples(scored(DRM_ROWS), RAPConfig(target_size=5))
    assert stages_of(out) == [
        "drm_out",
        "kept",
        "budget_in",
        "drm_in",
        "drm_in",
        "drm_in",
        "cde_rejected",
        "cde_rejected",
        "drm_out",
    ]


def test_budget_rank_function():
    cde = np.array([0.5, 0.9, 0.5, 0.5, 0.5])
    ace = np.array([0.2, 0.9, NAN, 0.1, 0.2])
    assert budget_rank(cde, ace, np.array([4, 3, 2, 1, 0])).tolist() == [1, 3, 0, 4, 2]
    assert budget_rank(cde, ace, np.array([0, 2])).tolist() == [0, 2]


# ---------------------------------------------------------------------------------------------------------
# dataset plumbing
# ---------------------------------------------------------------------------------------------------------


def _same(a, b):
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def test_existing_columns_unchanged():
    ds = scored(FILTER_ROWS + DRM_ROWS)
    out = select_cognitive_samples(ds, RAPConfig(target_size=6))
    assert out.column_names == ds.column_names + ["rap_stage", "rap_selected"]
    assert len(out) == len(ds)
    for column in ds.column_names:
        assert out.features[column] == ds.features[column], column
        before, after = ds[column], out[column]
        assert all(_same(a, b) for a, b in zip(before, after, strict=True)), column


def test_reselection_replaces_stage_columns():
    first = select_cognitive_samples(scored(DRM_ROWS), RAPConfig())
    second = select_cognitive_samples(first, RAPConfig(use_drm=False))
    assert second.column_names == first.column_names
    assert stages_of(second) == BEFORE_DRM
    assert second["rap_selected"] == [s == "kept" for s in BEFORE_DRM]
    assert second["rap_cde"] == first["rap_cde"]


def test_index_order_of_a_view():
    # a selected/reordered view is annotated in its own (view) order
    view = scored(FILTER_ROWS).select([3, 0, 5])
    out = select_cognitive_samples(view, RAPConfig(use_drm=False))
    assert out["id"] == [3, 0, 5]
    assert stages_of(out) == ["cde_rejected", "kept", "error"]


def test_dataset_dict_split_by_split():
    dd = DatasetDict({"train": scored(DRM_ROWS), "test": scored(FILTER_ROWS)})
    out, counts = select_cognitive_samples(dd, RAPConfig(), return_counts=True)
    assert isinstance(out, DatasetDict)
    assert stages_of(out["train"])[:3] == ["drm_out", "kept", "drm_out"]
    # test split: no trivial kept rows (acc 0.8, 0.6, 0.8) -> DRM changes nothing
    assert stages_of(out["test"]) == FILTER_EXPECTED
    assert counts["test"]["kept"] == 3 and counts["test"]["error"] == 2
    assert counts["train"]["drm_in"] == 3
    assert stage_counts(out) == counts


def test_missing_columns_error_message():
    ds = scored(FILTER_ROWS).remove_columns(["rap_ace", "rap_cde"])
    with pytest.raises(ValueError) as info:
        select_cognitive_samples(ds, RAPConfig())
    message = str(info.value)
    assert "rap_ace'" in message and "rap_cde" in message
    assert "available columns" in message and "rap_acc_mm" in message and "rap_ace_norm" in message


def test_missing_normalized_ace_column():
    ds = scored(FILTER_ROWS).remove_columns(["rap_ace_norm"])
    select_cognitive_samples(ds, RAPConfig())  # paper mode does not need it
    with pytest.raises(ValueError, match=r"missing .*\['rap_ace_norm'\]"):
        select_cognitive_samples(ds, RAPConfig(ace_mode="normalized"))


def test_counts_and_logging(caplog):
    with caplog.at_level(logging.INFO, logger="rap_hf"):
        out, counts = select_cognitive_samples(scored(DRM_ROWS), RAPConfig(), return_counts=True)
    assert counts == {
        "kept": 1,
        "cde_rejected": 2,
        "ace_rejected": 0,
        "drm_in": 3,
        "drm_out": 3,
        "budget_in": 0,
        "budget_out": 0,
        "error": 0,
    }
    assert list(counts) == list(STAGES)
    assert stage_counts(out) == counts
    assert "drm_in=3" in caplog.text and "4/9" in caplog.text


def test_stage_counts_requires_annotation():
    with pytest.raises(ValueError, match="rap_stage"):
        stage_counts(scored(DRM_ROWS))


def test_subset_via_filter():
    out = select_cognitive_samples(scored(DRM_ROWS), RAPConfig())
    subset = out.filter(lambda r: r["rap_selected"])
    assert subset["id"] == [1, 3, 4, 5]
    assert set(subset["rap_stage"]) == {"kept", "drm_in"}


def test_empty_dataset():
    out, counts = select_cognitive_samples(scored(DRM_ROWS).select([]), RAPConfig(), return_counts=True)
    assert len(out) == 0 and "rap_stage" in out.column_names
    assert counts == dict.fromkeys(STAGES, 0)


def test_100k_rows_is_fast():
    n = 100_000
    rng = np.random.default_rng(0)
    acc = rng.integers(0, 6, n) / 5
    ds = Dataset.from_dict(
        {
            "id": np.arange(n),
            "rap_acc_mm": acc,
            "rap_cde": acc - rng.integers(0, 6, n) / 5,
            "rap_ace": rng.random(n) * 0.2,
            "rap_error": [None if i % 97 else "failed" for i in range(n)],
        }
    )
    start = time.perf_counter()
    out, counts = select_cognitive_samples(ds, RAPConfig(target_ratio=0.1), return_counts=True)
    elapsed = time.perf_counter() - start
    assert elapsed < 10, f"selection of {n} rows took {elapsed:.1f} s"
    assert len(out) == n and sum(counts.values()) == n
    assert counts["error"] == len(range(0, n, 97))
    assert sum(counts[s] for s in ("kept", "drm_in", "budget_in")) == round(0.1 * (n - counts["error"]))


def test_drm_candidates_exclude_all_correct_rows():
    # Swapping a trivial kept row for a rejected row that every rollout also solves makes nothing harder.
    rows = [
        {"acc": 1.0, "cde": 0.6},  # 0 trivial
        {"acc": 1.0, "cde": 0.0},  # 1 rejected, all correct (a language-prior row): not a candidate
        {"acc": 0.8, "cde": 0.1},  # 2 rejected, candidate
        {"acc": 1.0, "cde": 0.8},  # 3 trivial
    ]
    out = select_cognitive_samples(scored(rows), RAPConfig())
    assert stages_of(out) == ["drm_out", "cde_rejected", "drm_in", "kept"]
