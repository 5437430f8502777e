"""The explorer's event handlers: what each button, slider and table click of the page runs.

`ExplorerHandlers` holds what the events share (the opening data and its memoised selections, the model,
the temp folder, the limits, whether and where pushing is allowed); what is one visitor's (the dataset they
loaded, their download) travels in their `VisitorSession` (`gr.State`). Each method takes the event's inputs
explicitly, with the selection controls last in `CONTROL_NAMES` order, checks every text against its cap, and
turns an `ExplorerDataError` into a `gr.Error` the page shows. The work itself is in the other
`rap_hf.explorer` modules; `rap_hf.explorer.app` lays out the page and wires these methods to it.
"""

from __future__ import annotations

import atexit
import inspect
import logging
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
from rap_hf.explorer.hub_source import DiskBudget
from rap_hf.explorer.limits import ExplorerLimits, capped_text
from rap_hf.explorer.model import ExplorerModel
from rap_hf.explorer.overview import overview_images
from rap_hf.explorer.render import attention_caption, dataset_status, new_sample_report, selection_summary
from rap_hf.explorer.reselection import Selection, config_from_controls
from rap_hf.explorer.samples import sample_table, sample_view
from rap_hf.explorer.store import ExplorerStore
from rap_hf.explorer.visitors import VisitorSession

logger = logging.getLogger("rap_hf")

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
    """The event handlers of one app, sharing its opening data, model, temp folder and limits."""

    def __init__(
        self,
        store: ExplorerStore,
        runner: ExplorerModel,
        *,
        work_dir: str | os.PathLike[str],
        limits: ExplorerLimits | None = None,
        allow_push: bool = False,
        push_namespace: str | None = None,
        given_source: str = "",
    ) -> None:
        """
        Args:
            store: the opening data and memoised selections.
            runner: the model of the attention view and of scoring a new sample.
            work_dir: temp folder for plots and the visitors' folders (datasets, downloads).
            limits: the resource caps (default `ExplorerLimits()`).
            allow_push: enable pushing (the app's --allow_push).
            push_namespace: the only namespace visitors may push to (needed with `allow_push`).
            given_source: the Hub id the app was opened on ("" for a local or the shipped dataset): typing it
                again shows the opening data, not a second copy.
        """
        self.store = store
        self.runner = runner
        self.work_dir = Path(work_dir)
        self.limits = limits or ExplorerLimits()
        self.budget = DiskBudget(self.limits.max_visitor_data_bytes)
        self.allow_push = allow_push
        self.push_namespace = push_namespace
        self.given_source = given_source

    @classmethod
    def start(
        cls,
        dataset: str | None = None,
        *,
        split: str = "train",
        model: str | None = "reference",
        allow_push: bool = False,
        push_namespace: str | None = None,
        work_dir: str | os.PathLike[str] | None = None,
        default_data: ExplorerData | None = None,
        limits: ExplorerLimits | None = None,
        runner: ExplorerModel | None = None,
    ) -> ExplorerHandlers:
        """Load the opening data and set up the store, the model and the temp folder (arguments: `build_app`'s).

        Without `work_dir`, a new temp folder is made and removed at exit.
        """
        if work_dir is None:
            work_dir = tempfile.mkdtemp(prefix="rap-explorer-")
            atexit.register(shutil.rmtree, work_dir, ignore_errors=True)
        work_dir = Path(work_dir)
        work_dir.mkdir(parents=True, exist_ok=True)
        if default_data is None:
            if dataset:
                default_data = load_explorer_data(dataset, split=split, allow_local=True)
            else:
                default_data = default_explorer_data(work_dir=work_dir)
        # The given dataset is the opening data; the page shows only its name, never the server's path.
        given_source = dataset if dataset and is_hub_repo_id(dataset) else ""
        return cls(
            ExplorerStore(default_data),
            runner if runner is not None else ExplorerModel(model),
            work_dir=work_dir,
            limits=limits,
            allow_push=allow_push,
            push_namespace=push_namespace,
            given_source=given_source,
        )

    def first_paint(self, config: RAPSelectionConfig) -> FirstPaint:
        """The opening data selected with `config` (the controls' initial values), ready to show."""
        data = self.store.default
        selection = self.store.selection(data, config)
        frame, caption = sample_table(data, selection)
        return FirstPaint(
            dataset_status(data),
            selection,
            selection_summary(selection),
            frame,
            caption,
            overview_images(selection, self.work_dir),
        )

    def session(self, session: VisitorSession | None) -> VisitorSession:
        """The visitor's session, made on first use (a new page holds None)."""
        return session if session is not None else VisitorSession(self.work_dir / "visitors")

    def data(self, session: VisitorSession | None) -> ExplorerData:
        """The dataset this visitor sees: the one they loaded, else the opening data."""
        return session.data if session is not None and session.data is not None else self.store.default

    # ------------------------------------------------------------------------------------------- events

    def load(
        self, session: VisitorSession | None, source: str, split_name: str
    ) -> tuple[VisitorSession, str]:
        """Load a Hub dataset typed into the page into the visitor's session (empty: back to the opening data):
        (the session, the status line)."""
        session = self.session(session)
        with _shown_on_page():
            source = capped_text(source, self.limits.max_source_chars, "The dataset id")
            split_name = capped_text(split_name, self.limits.max_split_chars, "The split") or "train"
            if not source or source == self.given_source:
                session.data = None
            else:
                session.data = load_explorer_data(
                    source,
                    split=split_name,
                    allow_local=False,
                    limits=self.limits,
                    folder=session.folder,
                    budget=self.budget,
                )
        return session, dataset_status(self.data(session))

    @_named_controls
    def reselect(
        self, session: VisitorSession | None, *controls: Any
    ) -> tuple[str, dict[str, int], pd.DataFrame, str]:
        """Select again: (headline, counts per stage, the unfiltered table, its caption)."""
        selection = self._selection(session, controls)
        frame, caption = sample_table(self.data(session), selection)
        return selection_summary(selection), selection.counts, frame, caption

    @_named_controls
    def plots(self, session: VisitorSession | None, *controls: Any) -> list[Image.Image | None]:
        """The four overview figures of the current selection."""
        return overview_images(self._selection(session, controls), self.work_dir)

    @_named_controls
    def table(
        self, session: VisitorSession | None, stage: str, sort_by: str, descending: bool, *controls: Any
    ) -> tuple[pd.DataFrame, str]:
        """The sample table filtered to `stage` and sorted by `sort_by`, and its caption."""
        with _shown_on_page():
            return sample_table(
                self.data(session), self._selection(session, controls), stage, sort_by, bool(descending)
            )

    @_named_controls
    def show_sample(
        self, session: VisitorSession | None, row: float | None, *controls: Any
    ) -> tuple[Any, ...]:
        """One row in full: (image, header, scores, rollouts with / without the image, the row)."""
        with _shown_on_page():
            view = sample_view(self.data(session), self._selection(session, controls), row)
        return view.image, view.header, view.scores, view.rollouts_mm, view.rollouts_text, view.row

    @_named_controls
    def attention(
        self, session: VisitorSession | None, row: float | None, *controls: Any
    ) -> tuple[Image.Image, str]:
        """The attention heatmap of a dataset row's ACE rollout, and its caption."""
        if not self.runner.available:
            raise gr.Error(f"Attention view unavailable: {self.runner.reason}")
        data = self.data(session)
        with _shown_on_page():
            row = _row_number(row, len(data))
            config = config_from_controls(*controls)
            view = self.runner.attention_for_row(data, row, config)
        column = config.active_ace_column
        return attention_heatmap(view, f"row {row}"), attention_caption(
            view, row, column, data.value(column, row)
        )

    @_named_controls
    def score_new(
        self, image: str | None, question: str, answer: str, *controls: Any
    ) -> tuple[str, Image.Image | None]:
        """Score an uploaded sample: (its report, the attention heatmap of its ACE rollout or None).

        `image` is the path of the upload in Gradio's upload folder (the component hands over the path and
        never decodes): it is decoded here only if its header says it has at most `max_image_pixels` pixels.
        The question is cut to `max_question_chars` (a longer prompt holds the model for longer).
        """
        if not self.runner.available:
            raise gr.Error(f"Scoring unavailable: {self.runner.reason}")
        with _shown_on_page():
            config = config_from_controls(*controls)
            answer = capped_text(answer, self.limits.max_answer_chars, "The answer")
            question = "" if question is None else str(question)
            truncated = len(question) > self.limits.max_question_chars
            question = question[: self.limits.max_question_chars]
            picture = self._uploaded_image(image)
            scored = self.runner.score_sample(picture, question, answer)
        report = new_sample_report(scored, config)
        if truncated:
            report = (
                f"_The question was cut to its first {self.limits.max_question_chars:,} characters._\n\n"
                + report
            )
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

    def _uploaded_image(self, path: str | None) -> Image.Image | None:
        """The uploaded image, decoded only after its size (file and pixels) passed the caps."""
        from rap_hf.scoring.images import decode_image

        if not path:
            return None
        upload = Path(path)
        if upload.stat().st_size > self.limits.max_upload_bytes:
            raise ExplorerDataError(f"The image file is larger than {self.limits.max_upload_mb:g} MB.")
        try:
            return decode_image(upload.read_bytes(), max_pixels=self.limits.max_image_pixels)
        except ValueError as exc:  # ImageError: too many pixels, or not an image
            raise ExplorerDataError(f"The image cannot be used: {exc}") from None

    @_named_controls
    def download(self, session: VisitorSession | None, *controls: Any) -> tuple[VisitorSession, str]:
        """Write the selected rows to a parquet in the visitor's folder (replacing their previous download):
        (the session, the path Gradio serves)."""
        session = self.session(session)
        selection = self._selection(session, controls)
        if selection.num_selected == 0:
            raise gr.Error("Nothing is selected: nothing to download.")
        path = write_selection_parquet(self.data(session), selection, session.download_folder())
        return session, str(path)

    @_named_controls
    def push(self, session: VisitorSession | None, repo_name: str, *controls: Any) -> str:
        """Push the scores and the current selection to a new repo in the push namespace; the outcome."""
        with _shown_on_page():
            repo_name = capped_text(repo_name, self.limits.max_repo_chars, "The repo name")
        return push_selection(
            self.data(session),
            self._selection(session, controls),
            repo_name,
            allow_push=self.allow_push,
            namespace=self.push_namespace,
        )

    def _selection(self, session: VisitorSession | None, controls: tuple[Any, ...]) -> Selection:
        with _shown_on_page():
            return self.store.selection(self.data(session), config_from_controls(*controls))


def _row_number(row: Any, rows: int) -> int:
    """`row` as a row index of a dataset with `rows` rows; `ExplorerDataError` otherwise."""
    try:
        number = float(row if row is not None else 0)
    except (TypeError, ValueError):
        raise ExplorerDataError(f"row must be a number, got {row!r:.40}") from None
    if not number.is_integer() or not 0 <= number < rows:
        raise ExplorerDataError(f"row must be an integer in [0, {rows - 1}], got {row!r:.40}")
    return int(number)


def row_from_table(frame: pd.DataFrame, event: gr.SelectData) -> int:
    """The dataset row of a clicked table cell: the table's first column, whatever the sorting."""
    try:
        return int(frame.iloc[event.index[0], 0])
    except (IndexError, KeyError, TypeError, ValueError):  # the frame is whatever the request sent
        raise gr.Error("That table cell is not a row.") from None


def toggle_ace(mode: str) -> tuple[Any, Any]:
    """Show the ACE threshold slider of `mode` (log10 for paper ACE, linear for normalized), hide the other."""
    return gr.update(visible=mode == "paper"), gr.update(visible=mode == "normalized")
