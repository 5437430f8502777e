"""ACE does not reject a row only because its response is short; the paper's rule stays as "paper_exact"."""

from __future__ import annotations

import math

import datasets
import numpy as np
import pytest

from rap_hf.columns import NUMERIC_SCORE_COLUMNS
from rap_hf.config import RAPConfig, RAPSelectionConfig
from rap_hf.errors import RAPUserError
from rap_hf.report.ace_length import ace_rejections_by_length
from rap_hf.report.summary import build_report, report_markdown
from rap_hf.selection import compute_stages, select_cognitive_samples

# Four rows that all pass CDE: short/long responses, high/low paper ACE.
ACC_MM = np.array([1.0, 1.0, 0.8, 0.8])
CDE = np.array([1.0, 1.0, 0.8, 0.8])
ACE = np.array([0.9, 0.01, 0.9, 0.01])
LENGTH = np.array([2.0, 2.0, 40.0, 40.0])
NO_ERROR = np.zeros(4, dtype=bool)


def _stages(config, length=LENGTH):
    return list(compute_stages(ACC_MM, CDE, ACE, NO_ERROR, config, ace_length=length))


def test_short_responses_are_not_judged_by_default():
    config = RAPSelectionConfig(use_drm=False)
    assert config.ace_mode == "paper" and config.ace_min_length == 16
    assert _stages(config) == ["kept", "kept", "ace_rejected", "kept"]


def test_paper_exact_judges_every_response():
    assert _stages(RAPSelectionConfig(use_drm=False, ace_mode="paper_exact")) == [
        "ace_rejected",
        "kept",
        "ace_rejected",
        "kept",
    ]
    assert _stages(RAPSelectionConfig(use_drm=False, ace_min_length=0)) == _stages(
        RAPSelectionConfig(use_drm=False, ace_mode="paper_exact")
    )


def test_unknown_lengths_are_judged_as_before():
    config = RAPSelectionConfig(use_drm=False)
    assert _stages(config, length=None) == ["ace_rejected", "kept", "ace_rejected", "kept"]
    assert _stages(config, length=np.array([math.nan, 2.0, 40.0, 40.0]))[0] == "ace_rejected"


def test_normalized_mode_has_the_guard_too():
    config = RAPSelectionConfig(use_drm=False, ace_mode="normalized", lambda_a=0.5)
    assert config.active_ace_column == "rap_ace_norm"
    assert _stages(config) == ["kept", "kept", "ace_rejected", "kept"]
    assert RAPSelectionConfig(ace_mode="paper_exact").active_ace_column == "rap_ace"


@pytest.mark.parametrize("value", [-1, 2.5])
def test_ace_min_length_is_validated(value):
    with pytest.raises(RAPUserError, match="ace_min_length"):
        RAPSelectionConfig(ace_min_length=value)


def _scored(with_length: bool = True) -> datasets.Dataset:
    rows = {name: [0.0] * 4 for name in NUMERIC_SCORE_COLUMNS}
    rows.update(rap_acc_mm=list(ACC_MM), rap_acc_text=[0.0] * 4, rap_cde=list(CDE), rap_ace=list(ACE))
    rows["rap_ace_length"] = list(LENGTH)
    rows["rap_error"] = [None] * 4
    if not with_length:
        del rows["rap_ace_length"]
    return datasets.Dataset.from_dict(rows)


def test_selection_reads_the_length_column():
    config = RAPConfig(use_drm=False)
    _, counts = select_cognitive_samples(_scored(), config, return_counts=True)
    assert counts["ace_rejected"] == 1 and counts["kept"] == 3
    _, old = select_cognitive_samples(_scored(with_length=False), config, return_counts=True)
    assert old["ace_rejected"] == 2  # scored before rap_ace_length existed: every row judged


def test_report_has_ace_rejections_by_length():
    config = RAPConfig(use_drm=False)
    report = build_report(select_cognitive_samples(_scored(), config), config)
    by_tokens = {row["tokens"]: row for row in report["ace_by_length"]}
    assert by_tokens["0-3"] == {
        "tokens": "0-3",
        "rows": 2,
        "reached_ace": 2,
        "judged": 0,
        "not_judged": 2,
        "ace_rejected": 0,
        "rejected_share": 0.0,
        "rejected_if_all_judged": 1,
    }
    assert by_tokens["32-63"]["ace_rejected"] == 1 and by_tokens["32-63"]["judged"] == 2
    markdown = report_markdown(report)
    assert "## ACE by response length" in markdown and "| 0-3 | 2 | 2 | 0 | 2 | 0 | 0% | 1 |" in markdown


def test_rejections_by_length_counts_only_rows_that_passed_cde():
    rows = ace_rejections_by_length(
        np.array([1.0, 0.0]),
        np.array([1.0, 0.0]),
        np.array([0.9, 0.9]),
        np.zeros(2, dtype=bool),
        np.array([40.0, 40.0]),
        RAPSelectionConfig(),
    )
    (bucket,) = [r for r in rows if r["rows"]]
    assert bucket["rows"] == 2 and bucket["reached_ace"] == 1 and bucket["ace_rejected"] == 1


def test_scoring_writes_the_response_length(tiny_filter_factory):
    from rap_hf.demo.data import tiny_synthetic

    flt = tiny_filter_factory(num_rollouts=2, max_new_tokens=6)
    scored = flt.score(tiny_synthetic(2, seed=3))
    lengths = scored["rap_ace_length"]
    assert all(0 <= n <= 6 and float(n).is_integer() for n in lengths)
    no_ace = tiny_filter_factory(num_rollouts=2, max_new_tokens=6, compute_ace=False).score(
        tiny_synthetic(2, seed=3)
    )
    assert no_ace["rap_ace_length"] == lengths and all(math.isnan(v) for v in no_ace["rap_ace"])
