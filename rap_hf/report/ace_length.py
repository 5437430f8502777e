"""ACE rejections by response length: does ACE reject rows for being short?

The paper's ACE is a product over a run of response tokens, so its value depends on how long the response is;
rap-hf leaves responses shorter than ``ace_min_length`` tokens unjudged (docs/method.md §3). This table shows,
per bucket of ``rap_ace_length``, how many rows reached ACE (passed CDE), how many ACE judged and rejected, and
how many the paper's rule as written (every response judged) would reject. It is part of every selection
report, and `benchmarks/ace_length.py` prints it for built-in data.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from rap_hf.columns import ACE_REJECTED, KEPT
from rap_hf.config import RAPSelectionConfig

#: Bucket edges in response tokens: [0, 4), [4, 8), ..., [256, inf).
LENGTH_EDGES = (0, 4, 8, 16, 32, 64, 128, 256)


def _bucket_names() -> list[str]:
    names = [f"{lo}-{hi - 1}" for lo, hi in zip(LENGTH_EDGES[:-1], LENGTH_EDGES[1:], strict=True)]
    return [*names, f"{LENGTH_EDGES[-1]}+"]


def ace_rejections_by_length(
    acc_mm: np.ndarray,
    cde: np.ndarray,
    ace: np.ndarray,
    is_error: np.ndarray,
    ace_length: np.ndarray | None,
    config: RAPSelectionConfig,
) -> list[dict[str, Any]]:
    """One row per length bucket (plus "unknown" when lengths are missing) with the counts described in the
    module docstring. ``ace`` is the active ACE column; DRM and budgets are left out (they do not judge)."""
    from rap_hf.selection import ace_not_judged, compute_stages

    thresholds_only = dataclasses.replace(
        RAPSelectionConfig.of(config), use_drm=False, target_size=None, target_ratio=None
    )
    stages = compute_stages(acc_mm, cde, ace, is_error, thresholds_only, ace_length=ace_length)
    reached = np.isin(stages, (KEPT, ACE_REJECTED))
    ace = np.asarray(ace, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        exact_rejected = reached & (ace > config.lambda_a)
    unjudged = ace_not_judged(ace_length, thresholds_only)
    not_judged = reached & (np.isnan(ace) | (unjudged if unjudged is not None else False))
    n = len(stages)
    length = np.full(n, np.nan) if ace_length is None else np.asarray(ace_length, dtype=np.float64)
    index = np.where(
        np.isfinite(length), np.searchsorted(LENGTH_EDGES, np.nan_to_num(length), "right") - 1, -1
    )
    rows = []
    for b, name in [*enumerate(_bucket_names()), (-1, "unknown")]:
        in_bucket = index == b
        if b == -1 and not in_bucket.any():
            continue
        count = int((reached & in_bucket).sum())
        rejected = int((stages[in_bucket] == ACE_REJECTED).sum())
        rows.append(
            {
                "tokens": name,
                "rows": int(in_bucket.sum()),
                "reached_ace": count,
                "judged": count - int((not_judged & in_bucket).sum()),
                "not_judged": int((not_judged & in_bucket).sum()),
                "ace_rejected": rejected,
                "rejected_share": rejected / count if count else None,
                "rejected_if_all_judged": int((exact_rejected & in_bucket).sum()),
            }
        )
    return rows


def ace_length_table(annotated: Any, config: RAPSelectionConfig) -> list[dict[str, Any]]:
    """`ace_rejections_by_length` of a scored (or annotated) dataset, read from its score columns."""
    import pyarrow as pa
    import pyarrow.compute as pc

    names = annotated.column_names
    active = config.active_ace_column
    needed = ["rap_acc_mm", "rap_cde", active]
    if any(c not in names for c in needed) or len(annotated) == 0:
        return []
    extra = [c for c in ("rap_error", "rap_ace_length") if c in names]
    table = annotated.select_columns(needed + extra).with_format("arrow")[:]

    def floats(name: str) -> np.ndarray:
        return pc.cast(table.column(name), pa.float64()).to_numpy(zero_copy_only=False)

    is_error = (
        ~pc.is_null(table.column("rap_error")).to_numpy(zero_copy_only=False)
        if "rap_error" in extra
        else np.zeros(len(annotated), dtype=bool)
    )
    length = floats("rap_ace_length") if "rap_ace_length" in extra else None
    return ace_rejections_by_length(
        floats("rap_acc_mm"), floats("rap_cde"), floats(active), is_error, length, config
    )


def ace_length_markdown(rows: list[dict[str, Any]]) -> list[str]:
    """The table as Markdown lines (buckets without rows left out)."""
    lines = [
        "| response tokens | rows | reached ACE | judged | not judged | ACE-rejected | rejected share | "
        "rejected if every response were judged |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if not r["rows"]:
            continue  # empty buckets stay in the JSON only
        share = "-" if r["rejected_share"] is None else f"{100 * r['rejected_share']:.0f}%"
        lines.append(
            f"| {r['tokens']} | {r['rows']} | {r['reached_ace']} | {r['judged']} | {r['not_judged']} | "
            f"{r['ace_rejected']} | {share} | {r['rejected_if_all_judged']} |"
        )
    return lines
