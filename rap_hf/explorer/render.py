"""The explorer's markdown: the selection headline, why a row has its stage, rollout lists, a new sample's
report, the dataset status line and the attention caption, plus the value formatting they share.

Text a model or a dataset wrote (questions, rollouts, answers) is put in code blocks or inline code, so it is
shown, never rendered as markdown or HTML.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from datasets import Dataset

from rap_hf.columns import NUMERIC_SCORE_COLUMNS
from rap_hf.config import RAPSelectionConfig
from rap_hf.estimators.drm import ACE_REJECTED, CDE_REJECTED, DRM_IN, DRM_OUT, KEPT
from rap_hf.explorer.attention_view import AttentionView
from rap_hf.explorer.data import MAX_SHOWN_CHARS, ExplorerData
from rap_hf.explorer.limits import shown_text
from rap_hf.explorer.reselection import Selection
from rap_hf.explorer.rollouts import RolloutMark, ace_rollout_index, mark_rollouts
from rap_hf.selection import BUDGET_IN, BUDGET_OUT, ERROR, SELECTED_STAGES, STAGES, compute_stages


def format_value(value: Any, digits: int = 3) -> str:
    """A score for a table cell or a sentence: `digits` significant digits, "n/a" for None/NaN, ±∞."""
    if value is None:
        return "n/a"
    if isinstance(value, float) and not math.isfinite(value):
        return "n/a" if math.isnan(value) else ("∞" if value > 0 else "-∞")
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def inline_code(text: str | None) -> str:
    """`text` made safe inside inline code (backticks replaced, at most 60 characters); "none" for None."""
    return "none" if text is None else text.replace("`", "ʼ")[:60]


def dataset_status(data: ExplorerData) -> str:
    """The status line above the tabs: the dataset's label and size, then its notes as quotes."""
    from rap_hf.scoring.alarms import score_warnings  # light: reads score columns only

    lines = [f"**Dataset:** {data.source} · {len(data)} rows"]
    lines += [f"> {note}" for note in data.notes]
    # Degenerate scores (every reward 0 or identical, mostly errors) as a banner: nothing meaningful can be
    # selected from them. The text quotes rollouts, so it goes in a code block.
    lines += [
        "**⚠ Warning:**\n```text\n" + w.replace("```", "ʼʼʼ") + "\n```" for w in score_warnings(data.dataset)
    ]
    return "\n\n".join(lines)


def selection_summary(selection: Selection) -> str:
    """Markdown: selected of scored rows and the ratio, then rows per stage (the headline the page shows)."""
    counts = selection.counts
    total = len(selection.stages)
    if total == 0:
        return "**The dataset has no rows.** Nothing to select."
    head = (
        f"**Selected {selection.num_selected} of {selection.num_scored} scored rows "
        f"({100 * selection.ratio:.1f}%)**"
    )
    if counts[ERROR]:
        head += f" · {counts[ERROR]} not scored (error)"
    selected = " · ".join(f"{s} {counts[s]}" for s in SELECTED_STAGES)
    rejected = " · ".join(f"{s} {counts[s]}" for s in STAGES if s not in SELECTED_STAGES and s != ERROR)
    cfg = selection.config
    budget = f", target_ratio {cfg.target_ratio:g}" if cfg.target_ratio else ""
    drm = (
        "off"
        if not cfg.use_drm
        else (
            f"k={cfg.drm_k}"
            if cfg.drm_k is not None
            else (f"ratio={cfg.drm_ratio:g}" if cfg.drm_ratio else "all trivial")
        )
    )
    return (
        f"{head}\n\nin: {selected}  \nout: {rejected}\n\n"
        f"<small>λc {cfg.lambda_c:g}, λa {cfg.lambda_a:.3g} on {cfg.active_ace_column}, DRM {drm}{budget}</small>"
    )


def explain_stage(stage: str, scores: Mapping[str, Any], config: RAPSelectionConfig) -> str:
    """One line on why a row has its stage under `config` (scores: the row's `rap_*` values)."""
    cde, acc_mm, acc_text = scores.get("rap_cde"), scores.get("rap_acc_mm"), scores.get("rap_acc_text")
    ace_column = config.active_ace_column
    ace = scores.get(ace_column)
    ace_name = "ACE" if config.ace_mode == "paper" else "ACE (normalized)"
    lc, la = f"{config.lambda_c:g}", f"{config.lambda_a:.3g}"
    fmt = format_value
    if stage == ERROR:
        error = scores.get("rap_error")
        return (
            f"Not scored: {error}." if error else "Not scored: the row has no CDE score (rap_cde is missing)."
        )
    if stage == CDE_REJECTED:
        return (
            f"Rejected by CDE: rap_cde = {fmt(acc_mm, 2)} − {fmt(acc_text, 2)} = {fmt(cde, 2)} < λc = {lc}: "
            "the model does about as well without the image (a language-prior sample)."
        )
    if stage == ACE_REJECTED:
        return (
            f"Rejected by ACE: needs the image (rap_cde {fmt(cde, 2)} ≥ λc {lc}) but {ace_name} = {fmt(ace)} > "
            f"λa = {la}: its reasoning over-relies on a few tokens."
        )
    if stage == KEPT:
        length = scores.get("rap_ace_length")
        ace_part = (
            f"no {ace_name} score, so ACE cannot reject it"
            if ace is None or (isinstance(ace, float) and math.isnan(ace))
            else f"{ace_name} {fmt(ace)} ≤ λa {la}: attention not over-confident"
        )
        if isinstance(length, float) and length < config.ace_length_guard:  # ACE leaves short answers alone
            ace_part = (
                f"its response ({length:.0f} tokens) is too short for ACE to judge "
                f"(ace_min_length {config.ace_min_length})"
            )
        trivial = (
            " It is trivial (acc_mm = 1) but DRM had no candidate or cap left to replace it."
            if acc_mm == 1 and config.use_drm
            else ""
        )
        return f"Kept: needs the image (rap_cde {fmt(cde, 2)} ≥ λc {lc}); {ace_part}.{trivial}"
    if stage == DRM_OUT:
        return (
            "Replaced by DRM: passed CDE and ACE but is trivial (acc_mm = 1: every multimodal rollout correct, "
            "zero GRPO advantage), so a harder rejected sample took its place."
        )
    if stage == DRM_IN:
        reason = "CDE" if cde is not None and cde < config.lambda_c else "ACE"
        return (
            f"Brought in by DRM: rejected by {reason}, but one of the hardest still-solvable samples "
            f"(acc_mm = {fmt(acc_mm, 2)}); it replaces a trivial kept one."
        )
    if stage == BUDGET_IN:
        return "Added by the budget: not selected by the thresholds, but ranks within the target size (rap_cde desc, then ACE asc)."
    if stage == BUDGET_OUT:
        return "Cut by the budget: selected by the thresholds, but ranks past the target size (rap_cde desc, then ACE asc)."
    return f"Stage {stage!r}."


def rollouts_markdown(marks: Sequence[RolloutMark], title: str, ace_index: int | None = None) -> str:
    """A rollout list with ✓/✗ marks; rollout texts in code blocks so model output is never rendered."""
    if not marks:
        return f"**{title}:** none stored."
    correct = sum(m.correct for m in marks)
    lines = [f"**{title}: {correct}/{len(marks)} correct**"]
    for k, mark in enumerate(marks):
        # Text marks, not emoji: they render with any font (headless browsers often lack an emoji font).
        flag = "**✓ correct**" if mark.correct else "✗ wrong"
        ace = " · read by ACE" if k == ace_index else ""
        lines.append(f"{flag} · rollout {k + 1} (answer: `{inline_code(mark.answer)}`){ace}")
        lines.append("```text\n" + shown_text(mark.text, MAX_SHOWN_CHARS).replace("```", "ʼʼʼ") + "\n```")
    return "\n\n".join(lines)


def new_sample_report(scored: Dataset, config: RAPSelectionConfig) -> str:
    """Markdown for a freshly scored sample: scores, the CDE/ACE verdict under `config`, rollouts.

    `config` may be a `RAPConfig`; only its selection fields are read.
    """
    record = scored[0]
    if record.get("rap_error"):
        return f"**Not scored:** {record['rap_error']}"
    # The thresholds alone, by the library's own rule (DRM and a budget need the rest of a dataset).
    thresholds_only = dataclasses.replace(
        RAPSelectionConfig.of(config), use_drm=False, target_ratio=None, target_size=None
    )
    stage = compute_stages(
        np.array([record["rap_acc_mm"]], dtype=float),
        np.array([record["rap_cde"]], dtype=float),
        np.array([record[config.active_ace_column]], dtype=float),
        np.array([False]),
        thresholds_only,
    )[0]
    verdict = f"would be **{stage}** by the thresholds (DRM and a budget depend on the rest of a dataset)"
    lines = [
        f"This sample {verdict} under λc {config.lambda_c:g}, λa {config.lambda_a:.3g} ({config.active_ace_column}).",
        "",
        "| score | value |",
        "|---|---|",
        *[f"| {c} | {format_value(record.get(c), 4)} |" for c in NUMERIC_SCORE_COLUMNS],
    ]
    marks_mm = mark_rollouts(record.get("rap_completions_mm"), record["solution"])
    marks_text = mark_rollouts(record.get("rap_completions_text"), record["solution"])
    return (
        "\n".join(lines)
        + "\n\n"
        + rollouts_markdown(marks_mm, "With the image", ace_rollout_index(marks_mm))
        + "\n\n"
        + rollouts_markdown(marks_text, "Without the image")
    )


def attention_caption(view: AttentionView, row: int, ace_column: str, stored_ace: float) -> str:
    """The note under a dataset row's attention heatmap: which rollout, recomputed vs stored ACE, how to read
    the red outline."""
    return (
        f"Row {row}, multimodal rollout {(view.rollout or 0) + 1} (the one ACE reads: first correct, else first); "
        f"{len(view.tokens)} response tokens. Recomputed ACE {view.ace:.4g} / ACE_norm {view.ace_norm:.4g} "
        f"(stored {ace_column} = {stored_ace:.4g}; the response is re-tokenised from its text, so small "
        "differences are possible). The red outline is the column that drives the score: a token every later "
        "token keeps attending to."
    )
