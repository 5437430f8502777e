"""The sample browser: which rows a stage filter and a sort show (`sample_table`), and one row in full
(`sample_view`: image, question, answer, stage with its reason, scores, rollouts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from rap_hf.columns import NUMERIC_SCORE_COLUMNS
from rap_hf.explorer.data import (
    COMPLETION_COLUMNS,
    MAX_SHOWN_CHARS,
    MAX_SHOWN_ROLLOUTS,
    ExplorerData,
    ExplorerDataError,
    first_image,
    question_text,
)
from rap_hf.explorer.limits import shown_text
from rap_hf.explorer.render import explain_stage, format_value, inline_code, rollouts_markdown
from rap_hf.explorer.reselection import Selection
from rap_hf.explorer.rollouts import ace_rollout_index, mark_rollouts
from rap_hf.selection import SELECTED_STAGES, STAGES

# Columns the sample table can be sorted by ("row" = dataset order).
SORT_COLUMNS = ("row", *NUMERIC_SCORE_COLUMNS)
ALL_STAGES = "all"
SELECTED_FILTER = "selected"
STAGE_FILTERS = (ALL_STAGES, SELECTED_FILTER, *STAGES)
TABLE_LIMIT = 200
QUESTION_PREVIEW_CHARS = 90


def order_rows(rows: np.ndarray, values: np.ndarray | None, descending: bool = False) -> np.ndarray:
    """`rows` sorted by `values[rows]` (NaN last either way), ties by row; by row when `values` is None."""
    rows = np.asarray(rows, dtype=np.int64)
    if values is None:
        return rows[::-1] if descending else rows
    key = np.asarray(values, dtype=np.float64)[rows]
    # lexsort puts NaN last; negating keeps NaN (and so last) for the descending order.
    return rows[np.lexsort((rows, -key if descending else key))]


def filter_rows(selection: Selection, stage: str) -> np.ndarray:
    """Row positions in a stage (or all rows / the selected rows)."""
    if stage == ALL_STAGES:
        return np.arange(len(selection.stages))
    if stage == SELECTED_FILTER:
        return np.flatnonzero(selection.selected)
    if stage not in STAGES:
        raise ExplorerDataError(f"unknown stage filter {stage!r}; use one of {STAGE_FILTERS}")
    return np.flatnonzero(selection.stages == stage)


def sample_table(
    data: ExplorerData,
    selection: Selection,
    stage: str = ALL_STAGES,
    sort_by: str = "row",
    descending: bool = False,
    limit: int = TABLE_LIMIT,
) -> tuple[pd.DataFrame, str]:
    """The sample browser's table (at most `limit` rows) and a caption ("showing 200 of 1,234 rows ...").

    Questions are read only for the shown rows, so a 10k-row dataset costs no more than a small one.
    """
    if sort_by not in SORT_COLUMNS:
        raise ExplorerDataError(f"cannot sort by {sort_by!r}; use one of {SORT_COLUMNS}")
    rows = order_rows(
        filter_rows(selection, stage), data.values.get(sort_by) if sort_by != "row" else None, descending
    )
    shown = rows[:limit]
    frame: dict[str, list[Any]] = {
        "row": shown.tolist(),
        "stage": selection.stages[shown].tolist(),
        "selected": selection.selected[shown].tolist(),
    }
    for column in NUMERIC_SCORE_COLUMNS:
        if column in data.values:
            frame[column.removeprefix("rap_")] = [_round(v) for v in data.values[column][shown]]
    # Plain values (nothing decoded), for the shown rows only.
    if "kind" in data.dataset.column_names:
        frame["kind"] = [_preview(str(k)) for k in data.column(shown.tolist(), "kind")]
    if data.roles.prompt is not None:
        frame["question"] = [
            _preview(question_text(p)) for p in data.column(shown.tolist(), data.roles.prompt)
        ]
    caption = f"{len(rows)} row(s) in `{stage}`"
    if sort_by != "row":
        caption += f", sorted by {sort_by} {'descending' if descending else 'ascending'}"
    if len(rows) > limit:
        caption += f"; showing the first {limit} (filter or sort to see others, or type a row number)"
    return pd.DataFrame(frame), caption


def _round(value: float) -> float | None:
    if value is None or not np.isfinite(value):
        return None  # shown empty, not "nan"
    return float(f"{value:.4g}")


def _preview(text: str) -> str:
    text = " ".join(text[: 4 * QUESTION_PREVIEW_CHARS].split())
    return text if len(text) <= QUESTION_PREVIEW_CHARS else text[: QUESTION_PREVIEW_CHARS - 1] + "…"


@dataclass
class SampleView:
    """Everything the sample view shows for one row."""

    row: int
    image: Image.Image | None
    header: str  # question, answer, stage and its explanation (markdown)
    scores: str  # score table (markdown)
    rollouts_mm: str
    rollouts_text: str


def sample_view(data: ExplorerData, selection: Selection, row: int | float | None) -> SampleView:
    """The sample view of dataset row `row` (0-based, dataset order). Rows without images get None."""
    if len(data) == 0:
        raise ExplorerDataError("the dataset has no rows")
    if row is None or not float(row).is_integer() or not 0 <= int(row) < len(data):
        raise ExplorerDataError(f"row must be an integer in [0, {len(data) - 1}], got {row!r}")
    row = int(row)
    record = data.record(row)
    image, image_note = first_image(record, data.roles, allow_paths=data.trusted)
    stage = str(selection.stages[row])
    scores = {c: data.value(c, row) for c in NUMERIC_SCORE_COLUMNS}
    scores["rap_error"] = data.errors[row]
    question = question_text(record.get(data.roles.prompt)) if data.roles.prompt else ""
    answer = record.get(data.roles.answer) if data.roles.answer else None
    kind = f" · kind: `{inline_code(str(record['kind']))}`" if "kind" in record else ""
    header = (
        f"### Row {row} · stage **{stage}**{' (selected)' if stage in SELECTED_STAGES else ''}{kind}\n\n"
        f"{explain_stage(stage, scores, selection.config)}\n\n"
        f"**Question:**\n\n```text\n{shown_text(question, MAX_SHOWN_CHARS).replace('```', 'ʼʼʼ') or '(no question column)'}\n```\n\n"
        f"**Answer:** `{inline_code(None if answer is None else str(answer))}`"
        + (f"\n\n_{image_note}_" if image_note else "")
    )
    score_lines = ["| score | value |", "|---|---|"]
    for column in NUMERIC_SCORE_COLUMNS:
        score_lines.append(f"| {column} | {format_value(scores[column], 4)} |")
    if scores["rap_error"]:
        score_lines.append(f"| rap_error | {scores['rap_error']} |")
    # At most MAX_SHOWN_ROLLOUTS per arm: the marks run the reward on each, and each is shown.
    marks_mm = mark_rollouts((record.get(COMPLETION_COLUMNS["mm"]) or [])[:MAX_SHOWN_ROLLOUTS], answer)
    marks_text = mark_rollouts((record.get(COMPLETION_COLUMNS["text"]) or [])[:MAX_SHOWN_ROLLOUTS], answer)
    note = (
        ""
        if (marks_mm or marks_text)
        else "\n\n_No rollouts stored (scored with keep_completions=False, or not scored)._"
    )
    return SampleView(
        row,
        image,
        header,
        "\n".join(score_lines)
        + "\n\n<small>Marks: RAP's default reward (answer extraction + math-verify); a custom reward_fn may differ.</small>",
        rollouts_markdown(marks_mm, "With the image", ace_rollout_index(marks_mm)) + note,
        rollouts_markdown(marks_text, "Without the image"),
    )
