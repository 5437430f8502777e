"""Alarms on degenerate scores: a scoring run whose scores cannot select anything meaningful says so, loudly.

Three failure modes are common with real data and silent otherwise:

* **every reward 0**: nearly all scored rows have ``rap_acc_mm == rap_acc_text == 0``. The reward does not read
  the model's answers (another answer format, the wrong answer column), so every ``rap_cde`` is 0 and CDE
  rejects every row;
* **every reward the same**: ``rap_acc_mm == rap_acc_text`` is one constant on every row (e.g. a reward that
  always returns 1): CDE is 0 everywhere;
* **nearly every row an error**: ``rap_error`` on almost all rows (its most common reason is named).

`score_warnings(dataset)` returns the messages (read from the score columns only: usable on any scored
dataset, e.g. by the explorer); `raise_score_alarms` also emits a `DegenerateScoresWarning` and a framed
block in the log. Scoring (`RAPDataFilter.score`, `score_to_disk`) raises them and writes them to
``rap_scoring.json`` (``warnings``); `rap-hf select` puts them in its report. `zero_selection_reason` says which
stage took the rows of a selection of 0.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import datasets

logger = logging.getLogger("rap_hf")

#: "Nearly all": the share of scored rows at which an all-zero scoring raises the alarm.
NEARLY_ALL = 0.95
#: The share of rows with `rap_error` at which the error alarm fires.
ERROR_SHARE = 0.9
#: Fewer scored rows than this never raise the reward alarms (too few to call it degenerate).
MIN_ROWS = 3
#: Example completions shown next to their solutions.
NUM_EXAMPLES = 3
_ANSWER_COLUMNS = ("solution", "answer", "answers", "ground_truth", "label")
_ADVICE = (
    "What to do: check that the answer column holds the ground truth (`answer_column=` / --answer_column); "
    "pass a reward function that reads your answer format (`reward_fn=` in RAPDataFilter / score_to_disk, "
    "--reward_fn package.module:function in `rap-hf score`); or ask the model for a final answer it can be "
    "scored on, with a system prompt such as 'Put the final answer in \\boxed{}.' (`system_prompt=` / "
    "--system_prompt). docs/rewards.md lists the answer formats the default reward reads."
)


class DegenerateScoresWarning(UserWarning):
    """The scores of a run cannot select anything meaningful (all-zero or constant rewards, or mostly errors)."""


def _column(table: Any, name: str) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.cast(table.column(name), pa.float64()).to_numpy(zero_copy_only=False)


def _answer_column(names: Sequence[str], answer_column: str | None) -> str | None:
    """``answer_column`` when the dataset has it, else the first usual answer column it has."""
    if answer_column in names:
        return answer_column
    return next((c for c in _ANSWER_COLUMNS if c in names), None)


def _short(value: Any, limit: int = 160) -> str:
    text = " ".join(str(value).split())
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def _examples(dataset: datasets.Dataset, rows: np.ndarray, answer_column: str | None) -> list[str]:
    """Up to `NUM_EXAMPLES` lines "row i: first completion -> solution" (the completions when kept)."""
    columns = [c for c in ("rap_completions_mm", answer_column) if c and c in dataset.column_names]
    if not columns or not len(rows):
        return []
    picked = [int(i) for i in rows[:NUM_EXAMPLES]]
    values = dataset.select_columns(columns).with_format("arrow")[picked].to_pylist()
    lines = []
    for index, record in zip(picked, values, strict=True):
        completions = record.get("rap_completions_mm") or []
        completion = _short(completions[0]) if completions else "(rollouts not kept)"
        solution = _short(record[answer_column]) if answer_column in record else "(no answer column)"
        lines.append(f"  row {index}: completion {completion}  ->  solution {solution}")
    return lines


def _with_examples(headline: str, examples: list[str]) -> str:
    parts = [headline]
    if examples:
        parts.append("Examples (first multimodal completion -> solution):\n" + "\n".join(examples))
    parts.append(_ADVICE)
    return "\n".join(parts)


def score_warnings(dataset: datasets.Dataset, answer_column: str | None = None) -> list[str]:
    """The degenerate-score alarms of a scored dataset, as messages (empty when the scores look usable).

    Reads ``rap_acc_mm``, ``rap_acc_text`` and ``rap_error`` (and, for the examples, the first multimodal
    completion and ``answer_column``, by default the first of solution/answer/... present). A dataset without
    the score columns has no alarms.
    """
    names = dataset.column_names
    if "rap_acc_mm" not in names or "rap_acc_text" not in names or len(dataset) == 0:
        return []
    answer_column = _answer_column(names, answer_column)
    read = ["rap_acc_mm", "rap_acc_text"] + (["rap_error"] if "rap_error" in names else [])
    table = dataset.select_columns(read).with_format("arrow")[:]
    acc_mm, acc_text = _column(table, "rap_acc_mm"), _column(table, "rap_acc_text")
    errors = table.column("rap_error").to_pylist() if "rap_error" in names else [None] * len(dataset)
    has_error = np.array([e is not None for e in errors], dtype=bool)
    # A NaN rap_acc_text on a scored row: decisive scoring ran no text-only rollout (rap_acc_mm < lambda_c).
    no_text = np.isnan(acc_text)
    scored = ~has_error & np.isfinite(acc_mm)
    n_rows, n_scored = len(dataset), int(scored.sum())
    messages = []

    if has_error.sum() >= max(1, ERROR_SHARE * n_rows):
        reasons = Counter(str(e).split(":")[0] for e in errors if e is not None)
        reason, count = reasons.most_common(1)[0]
        messages.append(
            f"RAP scoring failed on {int(has_error.sum())} of {n_rows} rows (rap_error); the most common reason "
            f"({count} rows): {reason!r}. Fix the input (images, answer column, prompts) and score again."
        )
    if n_scored < MIN_ROWS:
        return messages
    zero = scored & (acc_mm == 0) & ((acc_text == 0) | no_text)
    constant = np.unique(np.concatenate([acc_mm[scored], acc_text[scored & ~no_text]]))
    if zero.sum() >= NEARLY_ALL * n_scored:
        share = zero.sum() / n_scored
        headline = (
            f"RAP scores look degenerate: {int(zero.sum())} of {n_scored} scored rows ({share:.0%}) have "
            "rap_acc_mm = rap_acc_text = 0 (every rollout got reward 0, with and without the image), so rap_cde "
            "is 0 and CDE rejects them all. The reward is probably not reading the model's answers."
        )
        messages.append(_with_examples(headline, _examples(dataset, np.flatnonzero(zero), answer_column)))
    elif len(constant) == 1:
        headline = (
            f"RAP scores look degenerate: every reward is {constant[0]:g} (rap_acc_mm = rap_acc_text = "
            f"{constant[0]:g} on all {n_scored} scored rows), so rap_cde is 0 everywhere and the scores cannot tell "
            "rows apart. The reward does not depend on the answers."
        )
        messages.append(_with_examples(headline, _examples(dataset, np.flatnonzero(scored), answer_column)))
    return messages


def raise_score_alarms(
    dataset: datasets.Dataset, answer_column: str | None = None, *, where: str = "RAP scoring"
) -> list[str]:
    """`score_warnings`, each also emitted as a `DegenerateScoresWarning` and as a framed log block."""
    messages = score_warnings(dataset, answer_column)
    for message in messages:
        frame = "!" * 100
        logger.warning("\n%s\n%s: WARNING\n%s\n%s", frame, where, message, frame)
        warnings.warn(message, DegenerateScoresWarning, stacklevel=2)
    return messages


def zero_selection_reason(counts: Mapping[str, int], config: Any) -> str | None:
    """Why a selection selected no row (which stage took them, with its threshold); None if it selected any."""
    from rap_hf.columns import SELECTED_STAGES

    if sum(counts.get(stage, 0) for stage in SELECTED_STAGES):
        return None
    total = sum(counts.values())
    if total == 0:
        return "0 rows selected: the dataset has no rows."
    taken = {stage: n for stage, n in counts.items() if n}
    stage, n = max(taken.items(), key=lambda item: item[1])
    why = {
        "error": "they could not be scored (rap_error; see the scoring warnings and rap_scoring.json)",
        "cde_rejected": f"rap_cde < lambda_c = {getattr(config, 'lambda_c', '?')}: the model does as well "
        "without the image, or (if every reward is 0) the reward does not read its answers",
        "ace_rejected": f"their ACE score is above lambda_a = {getattr(config, 'lambda_a', '?')} "
        f"(ace_mode={getattr(config, 'ace_mode', '?')!r})",
        "budget_out": "the budget (target_size / target_ratio) cut them",
        "drm_out": "DRM replaced them",
    }.get(stage, stage)
    detail = ", ".join(f"{s} {c}" for s, c in taken.items())
    return f"0 rows selected: {stage} took {n} of {total} rows ({detail}); {why}."
