"""The overview figures of a selection: rows per stage, and score histograms by stage.

Drawn by `rap_hf.report.plots` (the figures of the reports and the Hub card), so the page and a report
never disagree on what a stage or a threshold looks like.
"""

from __future__ import annotations

import io
import os
import tempfile
from typing import Any

from PIL import Image

from rap_hf.explorer.reselection import Selection


def overview_images(
    selection: Selection, work_dir: str | os.PathLike[str] | None = None
) -> list[Image.Image | None]:
    """[rows per stage, and histograms by stage of rap_cde, the active ACE column, rap_difficulty].

    Drawn into a temporary folder, then read back into memory and the folder removed: the app serves images
    it holds, never a path on disk. A column the dataset lacks (or with no finite value) gives None.
    """
    from rap_hf.report.plots import plot_histograms_by_stage, plot_stage_counts

    columns = ("rap_cde", selection.config.active_ace_column, "rap_difficulty")
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="plots-") as folder:
        images: list[Image.Image | None] = [_as_image(plot_stage_counts(selection.counts, folder))]
        for column in columns:
            drawn = plot_histograms_by_stage(
                selection.annotated, folder, config=selection.config, columns=(column,)
            )
            images.append(_as_image(drawn[0]) if drawn else None)
    return images


def _as_image(figure_or_path: Any) -> Image.Image:
    """A PIL image of a plot, whether `rap_hf.report.plots` handed back a PNG path or a matplotlib Figure."""
    if isinstance(figure_or_path, (str, os.PathLike)):
        with Image.open(figure_or_path) as image:
            return image.convert("RGB")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure_or_path)
    buffer = io.BytesIO()
    figure_or_path.savefig(buffer, format="png", dpi=100)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")
