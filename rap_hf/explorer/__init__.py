"""The RAP Score Explorer (the Gradio Space in `spaces/rap_explorer/`): browse a scored dataset, move the
selection thresholds, see why each row is kept or dropped.

One concept per module; only `app` and `handlers` import gradio, so the rest (and its tests) run without it:

- `data`: `ExplorerData` (a scored dataset plus the score arrays the views read), `load_explorer_data`
  (Hub, or local when given on the command line), one row's image(s) and question, `ExplorerDataError`;
- `hub_source`: a dataset a visitor names, read from the Hub anonymously, size- and schema-checked before
  download, images embedded only (`fetch_visitor_dataset`), and the disk budget of all visitors' data;
- `limits`: `ExplorerLimits`, every resource bound of the app, and the request-size middleware;
- `visitors`: `VisitorSession`, what one visitor's page holds (their dataset, their download);
- `assets`: the shipped precomputed scores the app opens on (`build_explorer_assets`,
  `default_explorer_data`) and the scoring settings they were made with;
- `synthetic`: `synthetic_scored_dataset`, plausible fake scores for UI tests and timing;
- `reselection`: the controls -> `RAPSelectionConfig` (`config_from_controls`) -> `Selection` (`run_selection`);
- `overview`: the figures of a selection (`overview_images`);
- `samples`: the sample browser (`sample_table`, `sample_view`);
- `rollouts`: stored rollouts marked correct/wrong, and the one ACE reads;
- `render`: the markdown the page shows (`selection_summary`, `explain_stage`, `new_sample_report`, ...);
- `export`: the selection as a parquet download or a Hub push;
- `attention_view`: the final-layer attention over one response and its heatmap;
- `model`: `ExplorerModel`, the scoring model, loaded on first use (attention view, scoring a new sample);
- `store`: `ExplorerStore`, the opening data and memoised selections;
- `handlers`: `ExplorerHandlers`, the page's event handlers;
- `app`: the page's layout and event wiring (`build_app`), `launch_explorer`.

`build_explorer_assets`, `build_app` and `launch_explorer` can also be imported from here (loaded on first
use, so importing this package stays cheap).
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "build_explorer_assets": "rap_hf.explorer.assets",
    "build_app": "rap_hf.explorer.app",
    "launch_explorer": "rap_hf.explorer.app",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)
