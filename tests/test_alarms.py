"""Degenerate scores raise an alarm (API, `score_to_disk`, `rap-hf select`, the explorer) and the demo does not."""

from __future__ import annotations

import json
import logging
import warnings

import datasets
import pytest

from rap_hf.columns import NUMERIC_SCORE_COLUMNS
from rap_hf.config import RAPConfig
from rap_hf.scoring.alarms import (
    DegenerateScoresWarning,
    raise_score_alarms,
    score_warnings,
    zero_selection_reason,
)


def _scored(acc_mm, acc_text, errors=None, completions=None, solutions=None) -> datasets.Dataset:
    n = len(acc_mm)
    rows = {name: [0.0] * n for name in NUMERIC_SCORE_COLUMNS}
    rows["rap_acc_mm"], rows["rap_acc_text"] = list(acc_mm), list(acc_text)
    rows["rap_cde"] = [m - t for m, t in zip(acc_mm, acc_text, strict=True)]
    rows["rap_ace_length"] = [20.0] * n
    rows["rap_completions_mm"] = completions or [[f"the shape is circle {i}"] for i in range(n)]
    rows["rap_error"] = errors or [None] * n
    rows["solution"] = solutions or ["circle"] * n
    return datasets.Dataset.from_dict(rows)


def test_all_zero_rewards_raise_the_alarm_with_examples_and_advice():
    (message,) = score_warnings(_scored([0.0] * 10, [0.0] * 10))
    assert "10 of 10 scored rows (100%)" in message and "rap_acc_mm = rap_acc_text = 0" in message
    assert message.count("  row ") == 3 and "'the shape is circle 0'" in message and "'circle'" in message
    assert "reward_fn=" in message and "answer_column" in message and "\\boxed{}" in message


def test_nearly_all_zero_counts_and_a_few_solved_rows_do_not():
    assert score_warnings(_scored([0.0] * 19 + [1.0], [0.0] * 20))  # 95%
    assert not score_warnings(_scored([0.0] * 18 + [1.0, 0.6], [0.0] * 20))


def test_identical_rewards_raise_the_alarm():
    (message,) = score_warnings(_scored([1.0] * 6, [1.0] * 6))
    assert "every reward is 1" in message


def test_nearly_every_row_an_error_names_the_most_common_reason():
    errors = ["cannot decode image: UnidentifiedImageError: x"] * 9 + [None]
    (message,) = score_warnings(
        _scored([float("nan")] * 9 + [1.0], [float("nan")] * 9 + [0.0], errors=errors)
    )
    assert "9 of 10 rows" in message and "'cannot decode image'" in message


def test_healthy_scores_and_unscored_data_are_silent():
    assert score_warnings(_scored([1.0, 0.8, 0.2, 0.0], [0.0, 0.2, 0.2, 0.0])) == []
    assert score_warnings(_scored([0.0, 0.0], [0.0, 0.0])) == []  # too few rows to call it degenerate
    assert score_warnings(datasets.Dataset.from_dict({"solution": ["1"]})) == []


def test_raise_emits_a_warning_and_a_framed_log_block(caplog):
    with caplog.at_level(logging.WARNING, logger="rap_hf"), pytest.warns(DegenerateScoresWarning):
        messages = raise_score_alarms(_scored([0.0] * 5, [0.0] * 5))
    assert len(messages) == 1 and "!" * 100 in caplog.text


def test_zero_selection_reason_names_the_stage():
    counts = {"kept": 0, "cde_rejected": 118, "error": 2}
    reason = zero_selection_reason(counts, RAPConfig())
    assert (
        reason.startswith("0 rows selected: cde_rejected took 118 of 120 rows") and "lambda_c = 0.5" in reason
    )
    assert zero_selection_reason({"kept": 1, "cde_rejected": 5}, RAPConfig()) is None


def test_filter_warns_on_a_degenerate_scoring(tiny_filter_factory):
    from rap_hf.demo.data import tiny_synthetic

    flt = tiny_filter_factory(num_rollouts=1, max_new_tokens=4, compute_ace=False)
    with pytest.warns(DegenerateScoresWarning, match="rap_acc_mm = rap_acc_text = 0"):
        flt.score(tiny_synthetic(4, seed=1))  # a random tiny model never answers right


def test_score_to_disk_writes_the_warnings(tiny_model_dir, tmp_path):
    from rap_hf.demo.data import tiny_synthetic
    from rap_hf.scoring.checkpointing import SCORING_METADATA
    from rap_hf.scoring.distributed import score_to_disk

    config = RAPConfig(num_rollouts=1, max_new_tokens=4, batch_size=4, compute_ace=False)
    with pytest.warns(DegenerateScoresWarning):
        score_to_disk(str(tiny_model_dir), tiny_synthetic(4, seed=2), tmp_path / "out", config)
    metadata = json.loads((tmp_path / "out" / SCORING_METADATA).read_text())
    assert len(metadata["warnings"]) == 1 and "rap_acc_mm = rap_acc_text = 0" in metadata["warnings"][0]


def test_select_reports_the_warnings_and_why_nothing_was_selected(tmp_path, capsys):
    from rap_hf.cli.select import SelectArguments, main

    _scored([0.0] * 8, [0.0] * 8).save_to_disk(str(tmp_path / "scores"))
    report = main(SelectArguments(scores=str(tmp_path / "scores"), output=str(tmp_path / "sel")), RAPConfig())
    assert report["selected"] == 0 and len(report["warnings"]) == 2
    assert report["warnings"][-1].startswith("0 rows selected: cde_rejected took 8 of 8 rows")
    saved = json.loads((tmp_path / "sel" / "report.json").read_text())
    assert saved["warnings"] == report["warnings"]
    markdown = (tmp_path / "sel" / "report.md").read_text()
    assert markdown.index("## Warnings") < markdown.index("## Rows per stage")
    out = capsys.readouterr().out
    assert "WARNING: RAP scores look degenerate" in out and "WARNING: 0 rows selected" in out


def test_explorer_shows_a_banner():
    from rap_hf.explorer.data import ExplorerData
    from rap_hf.explorer.render import dataset_status

    status = dataset_status(ExplorerData.from_dataset(_scored([0.0] * 6, [0.0] * 6), "degenerate"))
    assert "⚠ Warning" in status and "```text" in status and "rap_acc_mm = rap_acc_text = 0" in status
    healthy = dataset_status(ExplorerData.from_dataset(_scored([1.0, 0.0, 1.0], [0.0, 0.0, 1.0]), "ok"))
    assert "Warning" not in healthy


def test_the_demo_scoring_is_silent():
    """The reference model on built-in data: real rewards, no alarm."""
    from rap_hf import RAPDataFilter
    from rap_hf.demo.reference_model import reference_model_available, reference_model_path
    from rap_hf.demo.visual_arith import visual_arith

    if not reference_model_available():
        pytest.skip("reference model not installed")
    config = RAPConfig(num_rollouts=2, max_new_tokens=48, batch_size=8, compute_ace=False)
    flt = RAPDataFilter(str(reference_model_path()), config=config, device="cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scored = flt.score(visual_arith("test").select(range(8)))
    assert not [w for w in caught if issubclass(w.category, DegenerateScoresWarning)]
    assert score_warnings(scored) == [] and max(scored["rap_acc_mm"]) > 0
