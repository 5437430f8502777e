"""PNG figures of a RAP selection: score histograms and rows per stage.

Shared by the Hub dataset card (`rap_hf.hub`) and the demo report. Figures are drawn with matplotlib's
object-oriented API on an explicit Agg canvas, so importing or calling this module never changes the
global pyplot backend of the caller (a notebook, a Gradio app) and needs no display.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, DatasetDict
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rap_hf.config import RAPConfig
from rap_hf.selection import SELECTED_COLUMN, SELECTED_STAGES, STAGE_COLUMN, STAGES, stage_counts

HISTOGRAM_COLUMNS = ("rap_cde", "rap_ace", "rap_ace_norm", "rap_acc_mm", "rap_acc_text", "rap_difficulty")
_TITLES = {
    "rap_cde": "CDE: acc_mm - acc_text",
    "rap_ace": "ACE (paper), log10",
    "rap_ace_norm": "ACE (length-normalised)",
    "rap_acc_mm": "accuracy with image (acc_mm)",
    "rap_acc_text": "accuracy without image (acc_text)",
    "rap_difficulty": "difficulty (1 - acc_mm)",
}
# rap_ace is a product over up to L factors: it spans many orders of magnitude, so it is shown as log10.
_LOG10_COLUMNS = ("rap_ace",)
_COLOUR_ALL = "#9aa5b1"
_COLOUR_SELECTED = "#d9480f"
_DPI = 100


def _splits(annotated: Dataset | DatasetDict) -> list[Dataset]:
    if isinstance(annotated, DatasetDict):
        return list(annotated.values())
    if isinstance(annotated, Dataset):
        return [annotated]
    raise TypeError(f"expected a datasets.Dataset or DatasetDict, got {type(annotated)}")


def _arrow_column(ds: Dataset, column: str):
    # The arrow formatter honours an indices mapping (after select/filter), unlike `ds.data`.
    return ds.select_columns([column]).with_format("arrow")[:].column(column)


def _column_values(splits: list[Dataset], column: str) -> np.ndarray:
    """Float64 values of `column` over all splits, nulls as NaN."""
    parts = [pc.cast(_arrow_column(ds, column), pa.float64()).to_numpy() for ds in splits]
    return np.concatenate(parts) if parts else np.empty(0)


def _selected_mask(splits: list[Dataset]) -> np.ndarray | None:
    if not all(SELECTED_COLUMN in ds.column_names for ds in splits):
        return None
    parts = [pc.fill_null(_arrow_column(ds, SELECTED_COLUMN), False).to_numpy() for ds in splits]
    return np.concatenate(parts).astype(bool) if parts else np.empty(0, dtype=bool)


def _threshold(column: str, config: RAPConfig | None) -> tuple[float, str] | None:
    """The threshold line drawn on a histogram, in the plotted (possibly log10) scale."""
    if config is None:
        return None
    if column == "rap_cde":
        return config.lambda_c, f"lambda_c = {config.lambda_c:g}"
    if column == config.active_ace_column:
        if column in _LOG10_COLUMNS:
            if config.lambda_a <= 0:
                return None
            return math.log10(config.lambda_a), f"lambda_a = {config.lambda_a:g}"
        return config.lambda_a, f"lambda_a = {config.lambda_a:g}"
    return None


def _binned_values(
    splits: list[Dataset], column: str, bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(plotted values, finite mask, bin edges) of `column` (log10 for `_LOG10_COLUMNS`); None if no finite value."""
    values = _column_values(splits, column)
    if column in _LOG10_COLUMNS:
        with np.errstate(divide="ignore", invalid="ignore"):
            values = np.where(values > 0, np.log10(values), np.nan)
    finite = np.isfinite(values)
    if not finite.any():
        return None
    low, high = float(values[finite].min()), float(values[finite].max())
    if low == high:  # a single value still gets a visible bar
        low, high = low - 0.5, high + 0.5
    return values, finite, np.linspace(low, high, bins + 1)


def _save(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)  # attaches an Agg canvas: rendering never goes through pyplot
    # No "Software"/date metadata: the same data gives the same bytes, so a re-push uploads nothing new.
    figure.savefig(path, format="png", dpi=_DPI, metadata={"Software": None})
    return path


def plot_score_histograms(
    annotated: Dataset | DatasetDict,
    out_dir: str | Path,
    *,
    config: RAPConfig | None = None,
    columns: Sequence[str] = HISTOGRAM_COLUMNS,
    bins: int = 30,
) -> list[Path]:
    """Write one PNG histogram per score column: all scored rows, and the selected rows on top.

    Args:
        annotated: a scored dataset (output of `RAPDataFilter.score`) or an annotated one (output of
            `select_cognitive_samples`); a `DatasetDict` is plotted over all its splits together. The
            selected-rows overlay needs ``rap_selected``.
        out_dir: folder for the files, created if missing. Files are named ``hist_<column>.png``.
        config: when given, the selection thresholds (``lambda_c`` on ``rap_cde``, ``lambda_a`` on the active
            ACE column) are drawn as vertical lines.
        columns: score columns to plot, in order. Columns that are absent or have no finite value (e.g. ACE
            with ``compute_ace=False``) are skipped. ``rap_ace`` is plotted as log10 of its positive values.
        bins: number of histogram bins (shared by both overlays).

    Returns:
        The paths written, in the order of ``columns``.
    """
    splits = _splits(annotated)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    selected = _selected_mask(splits)
    written: list[Path] = []
    for column in columns:
        if not all(column in ds.column_names for ds in splits):
            continue
        binned = _binned_values(splits, column, bins)
        if binned is None:
            continue
        values, finite, edges = binned

        figure = Figure(figsize=(5.0, 3.2))
        figure.subplots_adjust(left=0.13, right=0.97, bottom=0.16, top=0.9)
        axes = figure.add_subplot()
        # "stepfilled" draws one polygon per histogram instead of one rectangle per bin: same picture, far
        # fewer artists, several times faster to render.
        axes.hist(
            values[finite],
            bins=edges,
            histtype="stepfilled",
            color=_COLOUR_ALL,
            label=f"scored ({int(finite.sum())})",
        )
        if selected is not None:
            chosen = finite & selected
            axes.hist(
                values[chosen],
                bins=edges,
                histtype="stepfilled",
                color=_COLOUR_SELECTED,
                alpha=0.85,
                label=f"selected ({int(chosen.sum())})",
            )
        threshold = _threshold(column, config)
        if threshold is not None:
            axes.axvline(threshold[0], color="black", linestyle="--", linewidth=1.2, label=threshold[1])
        axes.set_title(_TITLES.get(column, column), fontsize=10)
        axes.set_xlabel(f"log10 {column}" if column in _LOG10_COLUMNS else column)
        axes.set_ylabel("rows")
        axes.legend(fontsize=8)
        written.append(_save(figure, out_dir / f"hist_{column}.png"))
    return written


def plot_stage_counts(
    annotated_or_counts: Dataset | DatasetDict | Mapping[str, int],
    out_dir: str | Path,
    *,
    filename: str = "stage_counts.png",
) -> Path:
    """Write a bar chart of the rows per selection stage (all 8 stages; selected stages highlighted).

    Args:
        annotated_or_counts: an annotated dataset (``rap_stage`` column), a `DatasetDict` of them (counts are
            summed over splits), or a mapping ``stage -> rows`` such as `stage_counts` returns.
        out_dir: folder for the file, created if missing.
        filename: name of the PNG file.

    Returns:
        The path written.
    """
    if isinstance(annotated_or_counts, (Dataset, DatasetDict)):
        counts = stage_counts(annotated_or_counts)
        if isinstance(annotated_or_counts, DatasetDict):
            counts = {stage: sum(split[stage] for split in counts.values()) for stage in STAGES}
    elif isinstance(annotated_or_counts, Mapping):
        counts = dict(annotated_or_counts)
    else:
        raise TypeError(
            f"expected an annotated Dataset/DatasetDict or a stage -> count mapping, got {type(annotated_or_counts)}"
        )
    if any(not isinstance(counts.get(stage, 0), (int, np.integer)) for stage in STAGES):
        raise ValueError(f"counts must map stage names to integers, got {counts}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    stages = list(STAGES)
    heights = [int(counts.get(stage, 0)) for stage in stages]
    colours = [_COLOUR_SELECTED if stage in SELECTED_STAGES else _COLOUR_ALL for stage in stages]
    figure = Figure(figsize=(5.6, 3.2))
    figure.subplots_adjust(left=0.2, right=0.97, bottom=0.16, top=0.9)
    axes = figure.add_subplot()
    positions = np.arange(len(stages))
    axes.barh(positions, heights, color=colours)
    axes.set_yticks(positions, labels=stages)
    axes.invert_yaxis()  # pipeline order top to bottom
    for position, height in zip(positions, heights, strict=True):
        axes.annotate(
            str(height),
            (height, position),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    axes.set_xlabel("rows")
    total_selected = sum(int(counts.get(stage, 0)) for stage in SELECTED_STAGES)
    axes.set_title(f"rows per {STAGE_COLUMN} (selected: {total_selected})", fontsize=10)
    axes.set_xlim(0, max(heights + [1]) * 1.15)
    return _save(figure, out_dir / filename)


# One colour per stage, so a stacked histogram shows where each stage sits on a score's axis.
STAGE_COLOURS = {
    "kept": "#2b8a3e",
    "drm_in": "#d9480f",
    "budget_in": "#f59f00",
    "cde_rejected": "#9aa5b1",
    "ace_rejected": "#5c7cfa",
    "drm_out": "#e599f7",
    "budget_out": "#ced4da",
    "error": "#212529",
}


def plot_histograms_by_stage(
    annotated: Dataset | DatasetDict,
    out_dir: str | Path,
    *,
    config: RAPConfig | None = None,
    columns: Sequence[str] = ("rap_cde", "rap_ace", "rap_difficulty"),
    bins: int = 30,
) -> list[Path]:
    """One PNG per score column: a histogram stacked by `rap_stage` (files `hist_by_stage_<column>.png`).

    Needs an annotated dataset (`select_cognitive_samples` output). Stages with no finite value in a column
    are left out of its legend; threshold lines are drawn as in `plot_score_histograms`.
    """
    splits = _splits(annotated)
    if not all(STAGE_COLUMN in ds.column_names for ds in splits):
        raise ValueError(
            f"plot_histograms_by_stage needs the {STAGE_COLUMN!r} column: run select_cognitive_samples first"
        )
    stages = np.concatenate(
        [np.asarray(_arrow_column(ds, STAGE_COLUMN).to_pylist(), dtype=object) for ds in splits]
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for column in columns:
        if not all(column in ds.column_names for ds in splits):
            continue
        binned = _binned_values(splits, column, bins)
        if binned is None:
            continue
        values, finite, edges = binned
        groups = [(stage, values[finite & (stages == stage)]) for stage in STAGES]
        groups = [(stage, v) for stage, v in groups if v.size]
        figure = Figure(figsize=(5.0, 3.2))
        figure.subplots_adjust(left=0.13, right=0.97, bottom=0.16, top=0.9)
        axes = figure.add_subplot()
        axes.hist(
            [v for _, v in groups],
            bins=edges,
            stacked=True,
            color=[STAGE_COLOURS[s] for s, _ in groups],
            label=[f"{s} ({v.size})" for s, v in groups],
        )
        threshold = _threshold(column, config)
        if threshold is not None:
            axes.axvline(threshold[0], color="black", linestyle="--", linewidth=1.2, label=threshold[1])
        axes.set_title(_TITLES.get(column, column) + ", by stage", fontsize=10)
        axes.set_xlabel(f"log10 {column}" if column in _LOG10_COLUMNS else column)
        axes.set_ylabel("rows")
        axes.legend(fontsize=7)
        written.append(_save(figure, out_dir / f"hist_by_stage_{column}.png"))
    return written
