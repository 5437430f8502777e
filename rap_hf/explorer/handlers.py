"""The explorer's event handlers: what each button, slider and table click of the page runs.

`ExplorerHandlers` holds what the events share (the store of loaded datasets, the model, the temp folder,
whether pushing is allowed); each method takes the event's inputs explicitly, with the selection controls
last in `CONTROL_NAMES` order, and turns an `ExplorerDataError` into a `gr.Error` the page shows. The work
itself is in the other `rap_hf.explorer` modules; `rap_hf.explorer.app` lays out the page and wires these
methods to it.
"""

from __future__ import annotations

import atexit
import inspect
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
from PIL import Image

from rap_hf.config import RAPSelectionConfig
from rap_hf.explorer.assets import default_explorer_data
from rap_hf.explorer.attention_view import attention_heatmap
from rap_hf.explorer.data import ExplorerData, ExplorerDataError, is_hub_repo_id, load_explorer_data
from rap_hf.explorer.export import push_selection, write_selection_parquet
from rap_hf.explorer.model import ExplorerModel
from rap_hf.explorer.overview import overview_images
from rap_hf.explorer.render import attention_caption, dataset_status, new_sample_report, selection_summary
from rap_hf.explorer.reselection import Selection, config_from_controls
from rap_hf.explorer.samples import sample_table, sample_view
from rap_hf.explorer.store import ExplorerStore

# The store key of the dataset the app opened on (pinned: never evicted).
DEFAULT_KEY = "default"
# The selection controls, in the order every event receives them (after its own inputs): the parameters of
# `config_from_controls`.
CONTROL_NAMES = tuple(inspect.signature(config_from_controls).parameters)


def _named_controls(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Give `fn(..., *controls)` a signature that names each control (`CONTROL_NAMES`).

    Gradio reads parameter names for its API page and gradio_client's keyword arguments; a bare `*controls`
    would show as param_1, param_2, ... (On a method, the bound method's signature drops `self` as usual.)
    """
    signature = inspect.signature(fn)
    leading = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    named = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in CONTROL_NAMES]
    fn.__signature__ = signature.replace(parameters=[*leading, *named])  # type: ignore[attr-defined]
    return fn


@contextmanager
def _shown_on_page() -> Iterator[None]:
    """An `ExplorerDataError` becomes a `gr.Error`: the page shows its message instead of a generic error."""
    try:
        yield
    except ExplorerDataError as exc:
        raise gr.Error(str(exc)) from None


@dataclass
class FirstPaint:
    """What the page shows before any event: computed once, so the first page paints complete without a
    round trip per visitor."""

    status: str
    selection: Selection
    summary: str
    frame: pd.DataFrame
    caption: str
    plots: list[Image.Image | None]


class ExplorerHandlers:
    """The event handlers of one app, sharing its store, model and temp folder."""

    def __init__(
        self,
        store: ExplorerStore,
        runner: ExplorerModel,
        *,
        work_dir: str | os.PathLike[str],
        allow_push: bool = False,
        given_source: str = "",
    ) -> None:
        """
        Args:
            store: holds the opening data under `DEFAULT_KEY` and whatever visitors load.
            runner: the model of the attention view and of scoring a new sample.
            work_dir: temp folder for downloads and plots.
            allow_push: enable pushing (the app's --allow_push).
            given_source: the Hub id the app was opened on ("" for a local or the shipped dataset): typing it
                again loads the opening data, not a second copy.
        """
        self.store = store
        self.runner = runner
        self.work_dir = Path(work_dir)
        self.allow_push = allow_push
        self.given_source = given_source

    @classmethod
    def start(
        cls,
        dataset: str | None = None,
        *,
        split: str = "train",
        model: str | None = "reference",
        allow_push: bool = False,
        work_dir: str | os.PathLike[str] | None = None,
        default_data: ExplorerData | None = None,
    ) -> ExplorerHandlers:
        """Load the opening data and set up the store, the model and the temp folder (arguments: `build_app`'s).

        Without `work_dir`, a new temp folder is made and removed at exit.
        """
        if work_dir is None:
            work_dir = tempfile.mkdtemp(prefix="rap-explorer-")
            atexit.register(shutil.rmtree, work_dir, ignore_errors=True)
        work_dir = Path(work_dir)
        store = ExplorerStore()
        if default_data is None:
            if dataset:
                default_data = load_explorer_data(dataset, split=split, allow_local=True)
            else:
                default_data = default_explorer_data(work_dir=work_dir)
        store.put(DEFAULT_KEY, default_data, pinned=True)
        # The given dataset stays the default key; the page shows only its name, never the server's path.
        given_source = dataset if dataset and is_hub_repo_id(dataset) else ""
        return cls(
            store, ExplorerModel(model), work_dir=work_dir, allow_push=allow_push, given_source=given_source
        )

    def first_paint(self, config: RAPSelectionConfig) -> FirstPaint:
        """The opening data selected with `config` (the controls' initial values), ready to show."""
        data = self.store.get(DEFAULT_KEY)
        selection = self.store.selection(DEFAULT_KEY, config)
        frame, caption = sample_table(data, selection)
        return FirstPaint(
            dataset_status(data),
            selection,
            selection_summary(selection),
            frame,
            caption,
            overview_images(selection, self.work_dir),
        )

    # ------------------------------------------------------------------------------------------- events

    def load(self, source: str, split_name: str) -> tuple[str, str]:
        """Load a Hub dataset typed into the page (empty: back to the opening data): (store key, status)."""
        source = (source or "").strip()
        if not source or source == self.given_source or source == DEFAULT_KEY:
            key = DEFAULT_KEY
        else:
            with _shown_on_page():
                data = load_explorer_data(source, split=split_name or "train", allow_local=False)
            key = self.store.put(f"hub:{source}:{split_name}", data)
        return key, dataset_status(self.store.get(key))

    @_named_controls
    def reselect(self, key: str, *controls: Any) -> tuple[str, dict[str, int], pd.DataFrame, str]:
        """Select again: (headline, counts per stage, the unfiltered table, its caption)."""
        selection = self._selection(key, controls)
        frame, caption = sample_table(self.store.get(key), selection)
        return selection_summary(selection), selection.counts, frame, caption

    @_named_controls
    def plots(self, key: str, *controls: Any) -> list[Image.Image | None]:
        """The four overview figures of the current selection."""
        return overview_images(self._selection(key, controls), self.work_dir)

    @_named_controls
    def table(
        self, key: str, stage: str, sort_by: str, descending: bool, *controls: Any
    ) -> tuple[pd.DataFrame, str]:
        """The sample table filtered to `stage` and sorted by `sort_by`, and its caption."""
        with _shown_on_page():
            return sample_table(
                self.store.get(key), self._selection(key, controls), stage, sort_by, descending
            )

    @_named_controls
    def show_sample(self, key: str, row: float | None, *controls: Any) -> tuple[Any, ...]:
        """One row in full: (image, header, scores, rollouts with / without the image, the row)."""
        with _shown_on_page():
            view = sample_view(self.store.get(key), self._selection(key, controls), row)
        return view.image, view.header, view.scores, view.rollouts_mm, view.rollouts_text, view.row

    @_named_controls
    def attention(self, key: str, row: float | None, *controls: Any) -> tuple[Image.Image, str]:
        """The attention heatmap of a dataset row's ACE rollout, and its caption."""
        if not self.runner.available:
            raise gr.Error(f"Attention view unavailable: {self.runner.reason}")
        row = int(row or 0)
        with _shown_on_page():
            config = config_from_controls(*controls)
            view = self.runner.attention_for_row(self.store.get(key), row, config)
        column = config.active_ace_column
        stored = self.store.get(key).value(column, row)
        return attention_heatmap(view, f"row {row}"), attention_caption(view, row, column, stored)

    @_named_controls
    def score_new(
        self, image: Image.Image | None, question: str, answer: str, *controls: Any
    ) -> tuple[str, Image.Image | None]:
        """Score an uploaded sample: (its report, the attention heatmap of its ACE rollout or None)."""
        if not self.runner.available:
            raise gr.Error(f"Scoring unavailable: {self.runner.reason}")
        with _shown_on_page():
            config = config_from_controls(*controls)
            scored = self.runner.score_sample(image, question, answer)
        report = new_sample_report(scored, config)
        heatmap = None
        record = scored[0]
        if not record.get("rap_error") and record.get("rap_completions_mm"):
            try:
                data = ExplorerData.from_dataset(scored, "new sample")
                view = self.runner.attention_for_row(data, 0, config)
                heatmap = attention_heatmap(view, "new sample")
            except ExplorerDataError as exc:
                report += f"\n\n_No attention view: {exc}_"
        return report, heatmap

    @_named_controls
    def download(self, key: str, *controls: Any) -> str:
        """Write the selected rows to a parquet in the temp folder; its path (Gradio serves it)."""
        selection = self._selection(key, controls)
        if selection.num_selected == 0:
            raise gr.Error("Nothing is selected: nothing to download.")
        folder = tempfile.mkdtemp(dir=self.work_dir, prefix="download-")
        return str(write_selection_parquet(self.store.get(key), selection, folder))

    @_named_controls
    def push(self, key: str, repo_id: str, *controls: Any) -> str:
        """Push the scores and the current selection to `repo_id`; the outcome as a message."""
        return push_selection(
            self.store.get(key), self._selection(key, controls), repo_id, allow_push=self.allow_push
        )

    def _selection(self, key: str, controls: tuple[Any, ...]) -> Selection:
        with _shown_on_page():
            return self.store.selection(key, config_from_controls(*controls))


def row_from_table(frame: pd.DataFrame, event: gr.SelectData) -> int:
    """The dataset row of a clicked table cell: the table's first column, whatever the sorting."""
    return int(frame.iloc[event.index[0], 0])


def toggle_ace(mode: str) -> tuple[Any, Any]:
    """Show the ACE threshold slider of `mode` (log10 for paper ACE, linear for normalized), hide the other."""
    return gr.update(visible=mode == "paper"), gr.update(visible=mode == "normalized")
