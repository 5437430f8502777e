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
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from rap_hf.config import RAPSelectionConfig
from rap_hf.estimators.cde import infer_rollout_grid, snap_to_grid
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
# Mean rewards over M rollouts and their differences: multiples of 1/M (rap_hf.estimators.cde), so their
# histograms get one bar per grid value, centred on it, instead of bins whose edges split equal values.
GRID_COLUMNS = ("rap_cde", "rap_acc_mm", "rap_acc_text", "rap_difficulty")
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


def _threshold(column: str, config: RAPSelectionConfig | None) -> tuple[float, str] | None:
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
    splits: list[Dataset], column: str, bins: int, grid: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(plotted values, finite mask, bin edges) of `column` (log10 for `_LOG10_COLUMNS`); None if no finite value.

    A `GRID_COLUMNS` column on the 1/M rollout grid (``grid`` = M, inferred from the values when None) gets one
    bin per grid value, centred on it; otherwise ``bins`` equal bins over the range.
    """
    values = _column_values(splits, column)
    if column in _LOG10_COLUMNS:
        with np.errstate(divide="ignore", invalid="ignore"):
            values = np.where(values > 0, np.log10(values), np.nan)
    finite = np.isfinite(values)
    if not finite.any():
        return None
    if column in GRID_COLUMNS:
        m = grid_of(values, grid)
        if m is not None:
            return snap_to_grid(values, m), finite, grid_edges(values[finite], m)
    low, high = float(values[finite].min()), float(values[finite].max())
    if low == high:  # a single value still gets a visible bar
        low, high = low - 0.5, high + 0.5
    return values, finite, np.linspace(low, high, bins + 1)


def grid_of(values: np.ndarray, grid: int | None = None) -> int | None:
    """The rollout grid M of score values: ``grid`` when the values lie on it, else the smallest M the values
    lie on (`infer_rollout_grid`); None for off-grid values (fractional rewards)."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if grid is not None and infer_rollout_grid(finite * grid, max_rollouts=1) == 1:
        return grid  # M * value is a whole number for every value
    return infer_rollout_grid(finite)


def grid_edges(values: np.ndarray, grid: int) -> np.ndarray:
    """Bin edges half a step either side of every grid value k/M between the smallest and largest value."""
    low = int(np.floor(np.nanmin(values) * grid + 0.5))
    high = int(np.ceil(np.nanmax(values) * grid - 0.5))
    return (np.arange(low, high + 2) - 0.5) / grid


def grid_label(k: int, grid: int) -> str:
    """Tick label of the grid value k/M: a short decimal when it terminates (M = 2, 4, 5, 8, 10, ...), else
    the reduced fraction (1/3, 2/3)."""
    from fractions import Fraction

    value = Fraction(k, grid)
    rest = value.denominator
    for prime in (2, 5):
        while rest % prime == 0:
            rest //= prime
    if rest == 1:
        return f"{float(value):g}"
    return f"{value.numerator}/{value.denominator}"


def _grid_ticks(axes: Axes, edges: np.ndarray, grid: int, axis: str = "x") -> None:
    """Ticks on the grid values (every other one past 10 values), labelled by `grid_label`."""
    ks = np.arange(int(round(edges[0] * grid + 0.5)), int(round(edges[-1] * grid - 0.5)) + 1)
    step = 1 if len(ks) <= 11 else int(np.ceil(len(ks) / 11))
    ks = ks[::step]
    setter = axes.set_xticks if axis == "x" else axes.set_yticks
    setter(ks / grid, labels=[grid_label(int(k), grid) for k in ks], fontsize=7)


def _integer_counts(axes: Axes, axis: str = "y") -> None:
    """Row counts are whole numbers: no "2.5 rows" tick."""
    (axes.yaxis if axis == "y" else axes.xaxis).set_major_locator(MaxNLocator(integer=True))


def _label_grid(axes: Axes, column: str, values: np.ndarray, edges: np.ndarray, grid: int | None) -> None:
    """Grid-value ticks on a `GRID_COLUMNS` histogram whose bins are the grid (see `_binned_values`)."""
    if column not in GRID_COLUMNS:
        return
    m = grid_of(values, grid)
    if m is not None:
        _grid_ticks(axes, edges, m)


def _save(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)  # attaches an Agg canvas: rendering never goes through pyplot
    # No "Software"/date metadata: the same data gives the same bytes, so a re-push uploads nothing new.
    figure.savefig(path, format="png", dpi=_DPI, metadata={"Software": None})
    return path


def plot_score_histograms(
    annotated: Dataset | DatasetDict,
    out_dir: str | Path,
    *,
    config: RAPSelectionConfig | None = None,
    columns: Sequence[str] = HISTOGRAM_COLUMNS,
    bins: int = 30,
    grid: int | None = None,
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
        bins: number of histogram bins (shared by both overlays) of a column off the rollout grid.
        grid: the number of rollouts M; a `GRID_COLUMNS` column on the 1/M grid gets one bar per grid value,
            centred on it. None: inferred from the values.

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
        binned = _binned_values(splits, column, bins, grid)
        if binned is None:
            continue
        values, finite, edges = binned

        figure = Figure(figsize=(5.0, 3.2))
        figure.subplots_adjust(left=0.13, right=0.97, bottom=0.16, top=0.9)
        axes = figure.add_subplot()
        _scored_and_selected_histogram(axes, column, values, finite, edges, selected, config)
        axes.set_title(_TITLES.get(column, column), fontsize=10)
        _label_grid(axes, column, values, edges, grid)
        axes.legend(fontsize=8)
        written.append(_save(figure, out_dir / f"hist_{column}.png"))
    return written


def _scored_and_selected_histogram(
    axes: Axes,
    column: str,
    values: np.ndarray,
    finite: np.ndarray,
    edges: np.ndarray,
    selected: np.ndarray | None,
    config: RAPSelectionConfig | None,
    *,
    greek: bool = False,
) -> None:
    """All scored rows and, over them, the selected ones, with the column's threshold as a dashed line."""
    # "stepfilled" draws one polygon per histogram instead of one rectangle per bin: same picture, far fewer
    # artists, several times faster to render.
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
        label = threshold[1].replace("lambda_a", "λa") if greek else threshold[1]
        axes.axvline(threshold[0], color="black", linestyle="--", linewidth=1.2, label=label)
    axes.set_xlabel(f"log10 {column}" if column in _LOG10_COLUMNS else column)
    axes.set_ylabel("rows")
    _integer_counts(axes)


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

    figure = Figure(figsize=(5.6, 3.2))
    figure.subplots_adjust(left=0.2, right=0.97, bottom=0.16, top=0.9)
    axes = figure.add_subplot()
    _stage_bars(axes, counts)
    total_selected = sum(int(counts.get(stage, 0)) for stage in SELECTED_STAGES)
    axes.set_title(f"rows per {STAGE_COLUMN} (selected: {total_selected})", fontsize=10)
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
    config: RAPSelectionConfig | None = None,
    columns: Sequence[str] = ("rap_cde", "rap_ace", "rap_difficulty"),
    bins: int = 30,
    grid: int | None = None,
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
        binned = _binned_values(splits, column, bins, grid)
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
        _integer_counts(axes)
        _label_grid(axes, column, values, edges, grid)
        axes.legend(fontsize=7)
        written.append(_save(figure, out_dir / f"hist_by_stage_{column}.png"))
    return written


# ------------------------------------------------------------------------------------------ selection grid

# How each stage got where it is, for the legend of the CDE panel: DRM and budget rows may sit left of lambda_c.
STAGE_NOTES = {
    "kept": "passed CDE and ACE",
    "drm_in": "hard row swapped in by DRM",
    "budget_in": "budget fill",
    "cde_rejected": "CDE < λc",
    "ace_rejected": "ACE > λa",
    "drm_out": "trivial row swapped out by DRM",
    "budget_out": "past the budget",
    "error": "not scored",
}
SELECTION_GRID_CAPTIONS = (
    "(a) Rows per stage; the selected stages (kept, drm_in, budget_in) in orange.",
    "(b) CDE = acc_mm - acc_text by stage, one bar per value of the 1/M rollout grid; the dashed line is λc. "
    "drm_in bars left of λc are rows DRM swapped in for trivial kept rows (acc_mm = 1): they failed CDE or "
    "ACE but are hard (0 < acc_mm < 1).",
    "(c) Accuracy with the image (acc_mm) against without it (acc_text), one cell per pair of grid values; "
    "each cell shows its rows and, in brackets, how many are selected. Above the dashed line acc_mm - "
    "acc_text >= λc.",
    "(d) The ACE score selection reads (ace_mode), all scored rows and the selected ones; the dashed line is "
    "λa (rows above it are rejected).",
)
"""Captions of the four panels of `plot_selection_grid`, in order (the Hub card prints them under the figure)."""


def plot_selection_grid(
    annotated: Dataset | DatasetDict,
    path: str | Path,
    *,
    config: RAPSelectionConfig | None = None,
    grid: int | None = None,
) -> Path:
    """One compact PNG (about 1100 x 760 px) with the four views of a selection, panels (a)-(d) of
    `SELECTION_GRID_CAPTIONS`: rows per stage, CDE by stage, acc_mm against acc_text, and the active ACE score.

    Args:
        annotated: an annotated dataset (`select_cognitive_samples` output) or a `DatasetDict` of them (all splits
            together).
        path: the PNG file to write (its folder is created).
        config: the selection config, for the λc/λa lines and the ACE column (default: `RAPSelectionConfig()`'s
            ``rap_ace``, without lines).
        grid: the number of rollouts M (inferred from the scores when None); off-grid scores (fractional
            rewards) get 20 equal bins instead.

    Returns:
        The path written. The same data gives the same bytes.
    """
    splits = _splits(annotated)
    if not all(STAGE_COLUMN in ds.column_names for ds in splits):
        raise ValueError(
            f"plot_selection_grid needs the {STAGE_COLUMN!r} column: run select_cognitive_samples first"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stages = np.concatenate(
        [np.asarray(_arrow_column(ds, STAGE_COLUMN).to_pylist(), dtype=object) for ds in splits]
    )
    selected = np.isin(stages, SELECTED_STAGES)
    counts = {stage: int((stages == stage).sum()) for stage in STAGES}

    figure = Figure(figsize=(11.0, 7.6))
    figure.subplots_adjust(left=0.09, right=0.98, bottom=0.08, top=0.9, wspace=0.28, hspace=0.42)
    axes = figure.subplots(2, 2)
    scored = int((stages != "error").sum())
    m = grid_of(_column_values(splits, "rap_cde"), grid) if _has(splits, "rap_cde") else None
    figure.suptitle(
        f"RAP selection: {int(selected.sum())} of {scored} scored rows selected"
        + (f" (M = {m} rollouts per arm)" if m is not None else ""),
        fontsize=12,
    )
    _panel_stages(axes[0, 0], counts)
    _panel_cde(axes[0, 1], splits, stages, config, m)
    _panel_accuracies(axes[1, 0], splits, selected, config, m)
    _panel_ace(axes[1, 1], splits, selected, config)
    return _save(figure, path)


def _has(splits: list[Dataset], column: str) -> bool:
    return all(column in ds.column_names for ds in splits)


def _legend_headroom(axes: Axes, entries: int) -> None:
    """Raise the y limit so that a legend of ``entries`` lines sits above the bars instead of on them."""
    low, high = axes.get_ylim()
    axes.set_ylim(low, high * (1.15 + 0.09 * entries))


def _empty_panel(axes: Axes, title: str, message: str) -> None:
    axes.set_title(title, fontsize=10, loc="left")
    axes.text(0.5, 0.5, message, ha="center", va="center", fontsize=9, transform=axes.transAxes)
    axes.set_xticks([])
    axes.set_yticks([])


def _panel_stages(axes: Axes, counts: Mapping[str, int]) -> None:
    _stage_bars(axes, counts, tick_fontsize=8)
    axes.set_title("(a) rows per stage", fontsize=10, loc="left")


def _stage_bars(axes: Axes, counts: Mapping[str, int], tick_fontsize: float | None = None) -> None:
    """Rows per stage as horizontal bars in pipeline order, the selected stages highlighted, counts at the ends."""
    stages = list(STAGES)
    heights = [int(counts.get(stage, 0)) for stage in stages]
    positions = np.arange(len(stages))
    axes.barh(
        positions,
        heights,
        color=[_COLOUR_SELECTED if stage in SELECTED_STAGES else _COLOUR_ALL for stage in stages],
    )
    label_style = {} if tick_fontsize is None else {"fontsize": tick_fontsize}
    axes.set_yticks(positions, labels=stages, **label_style)
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
    axes.set_xlim(0, max(heights + [1]) * 1.15)
    axes.set_xlabel("rows")
    _integer_counts(axes, "x")


def _panel_cde(
    axes: Axes, splits: list[Dataset], stages: np.ndarray, config: RAPSelectionConfig | None, m: int | None
) -> None:
    title = "(b) CDE by stage"
    if not _has(splits, "rap_cde"):
        _empty_panel(axes, title, "no rap_cde column")
        return
    binned = _binned_values(splits, "rap_cde", 20, m)
    if binned is None:
        _empty_panel(axes, title, "no scored row")
        return
    values, finite, edges = binned
    groups = [(stage, values[finite & (stages == stage)]) for stage in STAGES if stage != "error"]
    groups = [(stage, v) for stage, v in groups if v.size]
    axes.hist(
        [v for _, v in groups],
        bins=edges,
        stacked=True,
        color=[STAGE_COLOURS[s] for s, _ in groups],
        label=[f"{s} ({v.size}): {STAGE_NOTES[s]}" for s, v in groups],
    )
    if config is not None:
        axes.axvline(
            config.lambda_c, color="black", linestyle="--", linewidth=1.2, label=f"λc = {config.lambda_c:g}"
        )
    if m is not None:
        _grid_ticks(axes, edges, m)
    axes.set_xlabel("rap_cde = acc_mm - acc_text")
    axes.set_ylabel("rows")
    _integer_counts(axes)
    _legend_headroom(axes, len(groups) + 1)
    axes.legend(fontsize=6, loc="upper left")
    axes.set_title(title, fontsize=10, loc="left")


def _panel_accuracies(
    axes: Axes, splits: list[Dataset], selected: np.ndarray, config: RAPSelectionConfig | None, m: int | None
) -> None:
    title = "(c) accuracy with vs without the image"
    if not (_has(splits, "rap_acc_mm") and _has(splits, "rap_acc_text")):
        _empty_panel(axes, title, "no rap_acc_mm / rap_acc_text columns")
        return
    acc_mm = _column_values(splits, "rap_acc_mm")
    acc_text = _column_values(splits, "rap_acc_text")
    finite = np.isfinite(acc_mm) & np.isfinite(acc_text)
    if not finite.any():
        _empty_panel(axes, title, "no scored row")
        return
    both = np.concatenate([acc_mm[finite], acc_text[finite]])
    m = m if m is not None and grid_of(both, m) == m else grid_of(both)
    if m is not None:
        edges = (np.arange(m + 2) - 0.5) / m  # every grid value 0 .. 1, centred
        x, y = snap_to_grid(acc_text, m), snap_to_grid(acc_mm, m)
    else:
        edges = np.linspace(0.0, 1.0, 11)
        x, y = acc_text, acc_mm
    counts, _, _ = np.histogram2d(x[finite], y[finite], bins=[edges, edges])
    chosen, _, _ = np.histogram2d(x[finite & selected], y[finite & selected], bins=[edges, edges])
    image = np.ma.masked_equal(counts.T, 0)  # empty cells stay white
    axes.pcolormesh(edges, edges, image, cmap="Blues", vmin=0, vmax=max(float(counts.max()), 1.0) * 1.25)
    if len(edges) <= 12:  # up to M = 10: every cell is large enough for its numbers
        centres = (edges[:-1] + edges[1:]) / 2
        for i, xc in enumerate(centres):
            for j, yc in enumerate(centres):
                if counts[i, j]:
                    axes.text(
                        xc,
                        yc,
                        f"{int(counts[i, j])}\n({int(chosen[i, j])})",
                        ha="center",
                        va="center",
                        fontsize=6,
                    )
    if config is not None:
        line = np.array([edges[0], edges[-1]])
        axes.plot(
            line,
            line + config.lambda_c,
            color="black",
            linestyle="--",
            linewidth=1.2,
            label=f"acc_mm - acc_text = λc = {config.lambda_c:g}",
        )
        axes.legend(fontsize=6, loc="lower right")
    axes.set_xlim(edges[0], edges[-1])
    axes.set_ylim(edges[0], edges[-1])
    if m is not None:
        _grid_ticks(axes, edges, m, "x")
        _grid_ticks(axes, edges, m, "y")
    axes.set_xlabel("acc_text (without the image)")
    axes.set_ylabel("acc_mm (with the image)")
    axes.set_title(title + ": rows (selected)", fontsize=10, loc="left")


def _panel_ace(
    axes: Axes, splits: list[Dataset], selected: np.ndarray, config: RAPSelectionConfig | None
) -> None:
    column = (config or RAPSelectionConfig()).active_ace_column
    title = f"(d) {_TITLES.get(column, column)}"
    binned = _binned_values(splits, column, 30) if _has(splits, column) else None
    if binned is None:
        _empty_panel(axes, title, f"{column} not computed (compute_ace=False)")
        return
    values, finite, edges = binned
    _scored_and_selected_histogram(axes, column, values, finite, edges, selected, config, greek=True)
    _legend_headroom(axes, 3)
    axes.legend(fontsize=7, loc="upper right")
    axes.set_title(title, fontsize=10, loc="left")
