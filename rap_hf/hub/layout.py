"""What a RAP dataset repo holds: the names of its two configs and where the report and figures go.

Shared by the writer (`rap_hf.hub.push`), the reader (`rap_hf.hub.load`) and the dataset card, so that the
three agree on one layout.
"""

from __future__ import annotations

SELECTED_CONFIG = "selected"
"""Config of the selected rows, ready to train on; the repo's default config."""
SCORES_CONFIG = "scores"
"""Config of every row with all ``rap_*`` scores plus ``rap_stage``/``rap_selected``."""
RAP_DIR = "rap"
"""Folder of the files rap-hf owns besides the data and README.md; a push replaces its whole content."""
REPORT_PATH = f"{RAP_DIR}/report.json"
FIGURES_DIR = f"{RAP_DIR}/figures"
SELECTION_FIGURE = f"{FIGURES_DIR}/selection.png"
"""The one figure of the card: the selection grid (`rap_hf.report.plots.plot_selection_grid`)."""
OWNED_PREFIXES = (f"{SELECTED_CONFIG}/", f"{SCORES_CONFIG}/", f"{RAP_DIR}/")
"""Folders whose whole content a push rewrites: files there that a push does not write are deleted."""
