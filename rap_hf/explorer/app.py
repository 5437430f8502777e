"""The RAP Score Explorer's Gradio UI: layout and event wiring only; every event calls `rap_hf.explorer`.

`build_app` returns the `gr.Blocks`; `launch_kwargs` holds the launch settings that keep it safe (no extra
served paths, no analytics, no MCP server); `launch_explorer` is what `rap-hf explore` and the Space's
`app.py` run. Gradio is imported only here, so the library works without it (`pip install "rap-hf[space]"`).

File access: the app never hands Gradio a path a visitor chose. Plots are rendered in memory, downloads are
written to the app's own temp folder, `allowed_paths` stays empty, so Gradio's file route serves only its
upload and cache folders. Text typed into the page can only name a Hub dataset; local data is read only when
given on the command line.
"""

from __future__ import annotations

import atexit
import inspect
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from rap_hf.config import RAPConfig
from rap_hf.explorer import (
    DRM_LIMITS,
    SORT_COLUMNS,
    STAGE_FILTERS,
    TABLE_LIMIT,
    ExplorerData,
    ExplorerDataError,
    ExplorerModel,
    ExplorerStore,
    attention_heatmap,
    config_from_controls,
    default_explorer_data,
    is_hub_repo_id,
    load_explorer_data,
    new_sample_report,
    overview_images,
    push_selection,
    sample_table,
    sample_view,
    selection_summary,
    write_selection_parquet,
)

DEFAULT_KEY = "default"
# The selection controls, in the order every event receives them (after its own inputs).
CONTROL_NAMES = (
    "lambda_c",
    "ace_mode",
    "lambda_a_log10",
    "lambda_a_normalized",
    "use_drm",
    "drm_limit",
    "drm_k",
    "drm_ratio",
    "target_ratio",
)
TITLE = "RAP Score Explorer"
# System fonts: the default theme would fetch Google Fonts, i.e. tell a third party about every visitor.
_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]
_MONO_FONTS = ["ui-monospace", "monospace"]
# Long questions and rollouts wrap instead of scrolling sideways in their code blocks.
_CSS = (
    "#rap-summary {font-size: 1.05em} .rap-plot img {object-fit: contain} "
    ".rap-text pre, .rap-text code {white-space: pre-wrap !important; word-break: break-word}"
)

INTRO = """# RAP Score Explorer
Per-sample scores of **RAP** data selection ("Truth in the Few", [arXiv 2506.04755](https://arxiv.org/abs/2506.04755)):
**CDE** (`rap_cde` = accuracy with the image − without it) drops samples answered from language priors,
**ACE** (final-layer attention over the model's own reasoning) drops attention-biased ones, **DRM** swaps trivial
kept samples for the hardest solvable rejected ones. Move the thresholds: selection re-runs on the stored scores,
no model needed."""


def _disable_analytics() -> None:
    # Read by gradio when a Blocks is created and when it launches; the env var also covers code paths
    # that do not take the `analytics_enabled` argument.
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"


def launch_kwargs(
    server_name: str | None = None, server_port: int | None = None, **overrides: Any
) -> dict[str, Any]:
    """Keyword arguments for `Blocks.launch`: safe defaults for a local run and for a Space.

    `server_name`/`server_port` None let Gradio use GRADIO_SERVER_NAME/PORT (a Space sets them) or
    127.0.0.1:7860.
    """
    kwargs: dict[str, Any] = {
        "server_name": server_name,
        "server_port": server_port,
        "allowed_paths": [],  # nothing on disk beyond Gradio's own upload/cache folders is served
        "share": False,
        "mcp_server": False,
        "ssr_mode": False,  # server-side rendering needs Node; client-side rendering is all this app needs
        "show_error": True,
        "max_file_size": "20mb",  # the only upload is one image to score
        "theme": gr.themes.Default(font=_FONTS, font_mono=_MONO_FONTS),
        "css": _CSS,
    }
    kwargs.update(overrides)
    return kwargs


def build_app(
    dataset: str | None = None,
    *,
    split: str = "train",
    model: str | None = "reference",
    allow_push: bool = False,
    work_dir: str | os.PathLike[str] | None = None,
    default_data: ExplorerData | None = None,
) -> Any:
    """Build the explorer (`gr.Blocks`).

    Args:
        dataset: the dataset to open on: a local path (save_to_disk folder, parquet/json/csv) or a Hub id;
            None opens the shipped visual-arith scores (or the fallback of `default_explorer_data`).
        split: split of `dataset`.
        model: "reference" (the shipped rap-tiny-vl), a local model folder, or None: the model of the attention
            view and of scoring a new sample. Unavailable -> those tabs say why.
        allow_push: enable the push button (needs HF_TOKEN in the environment). Off by default: on a shared
            server every visitor would push with the server's token.
        work_dir: temp folder for downloads and the fallback model (default: a new one, removed at exit).
        default_data: already loaded data to open on (tests, timing); overrides `dataset`.
    """
    _disable_analytics()
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
    runner = ExplorerModel(model)
    defaults = RAPConfig()

    def _config(*controls: Any) -> RAPConfig:
        return config_from_controls(*controls)

    # ------------------------------------------------------------------ event functions (thin wrappers)

    def load(source: str, split_name: str) -> tuple[str, str]:
        source = (source or "").strip()
        if not source or source == given_source or source == DEFAULT_KEY:
            key = DEFAULT_KEY
        else:
            try:
                data = load_explorer_data(source, split=split_name or "train", allow_local=False)
            except ExplorerDataError as exc:
                raise gr.Error(str(exc)) from None
            key = store.put(f"hub:{source}:{split_name}", data)
        return key, _status(store.get(key))

    @_named_controls
    def reselect(key: str, *controls: Any) -> tuple[str, dict[str, int], Any, str]:
        selection = _selection(key, controls)
        data = store.get(key)
        frame, caption = sample_table(data, selection)
        return selection_summary(selection), selection.counts, frame, caption

    @_named_controls
    def plots(key: str, *controls: Any) -> list[Any]:
        return overview_images(_selection(key, controls), work_dir)

    @_named_controls
    def table(key: str, stage: str, sort_by: str, descending: bool, *controls: Any) -> tuple[Any, str]:
        try:
            return sample_table(store.get(key), _selection(key, controls), stage, sort_by, descending)
        except ExplorerDataError as exc:
            raise gr.Error(str(exc)) from None

    @_named_controls
    def show_sample(key: str, row: float | None, *controls: Any) -> tuple[Any, ...]:
        try:
            view = sample_view(store.get(key), _selection(key, controls), row)
        except ExplorerDataError as exc:
            raise gr.Error(str(exc)) from None
        return view.image, view.header, view.scores, view.rollouts_mm, view.rollouts_text, view.row

    def row_from_table(frame: Any, event: gr.SelectData) -> int:
        # The first column of the table is the dataset row, whatever the sorting.
        return int(frame.iloc[event.index[0], 0])

    @_named_controls
    def attention(key: str, row: float | None, *controls: Any) -> tuple[Any, str]:
        if not runner.available:
            raise gr.Error(f"Attention view unavailable: {runner.reason}")
        try:
            config = _config(*controls)
            view = runner.attention_for_row(store.get(key), int(row or 0), config)
        except ExplorerDataError as exc:
            raise gr.Error(str(exc)) from None
        data = store.get(key)
        stored = (
            f"stored {config.active_ace_column} = {data.value(config.active_ace_column, int(row or 0)):.4g}"
        )
        note = (
            f"Row {int(row or 0)}, multimodal rollout {view.rollout + 1} (the one ACE reads: first correct, else first); "
            f"{len(view.tokens)} response tokens. Recomputed ACE {view.ace:.4g} / ACE_norm {view.ace_norm:.4g} "
            f"({stored}; the response is re-tokenised from its text, so small differences are possible). The red "
            "outline is the column that drives the score: a token every later token keeps attending to."
        )
        return attention_heatmap(view, f"row {int(row or 0)}"), note

    @_named_controls
    def score_new(image: Any, question: str, answer: str, *controls: Any) -> tuple[str, Any]:
        if not runner.available:
            raise gr.Error(f"Scoring unavailable: {runner.reason}")
        try:
            config = _config(*controls)
            scored = runner.score_sample(image, question, answer)
        except ExplorerDataError as exc:
            raise gr.Error(str(exc)) from None
        report = new_sample_report(scored, config)
        heatmap = None
        record = scored[0]
        if not record.get("rap_error") and record.get("rap_completions_mm"):
            try:
                data = ExplorerData.from_dataset(scored, "new sample")
                view = runner.attention_for_row(data, 0, config)
                heatmap = attention_heatmap(view, "new sample")
            except ExplorerDataError as exc:
                report += f"\n\n_No attention view: {exc}_"
        return report, heatmap

    @_named_controls
    def download(key: str, *controls: Any) -> str:
        selection = _selection(key, controls)
        if selection.num_selected == 0:
            raise gr.Error("Nothing is selected: nothing to download.")
        return str(
            write_selection_parquet(
                store.get(key), selection, tempfile.mkdtemp(dir=work_dir, prefix="download-")
            )
        )

    @_named_controls
    def push(key: str, repo_id: str, *controls: Any) -> str:
        return push_selection(store.get(key), _selection(key, controls), repo_id, allow_push=allow_push)

    def _selection(key: str, controls: tuple) -> Any:
        try:
            return store.selection(key, _config(*controls))
        except ExplorerDataError as exc:
            raise gr.Error(str(exc)) from None

    def toggle_ace(mode: str) -> tuple[Any, Any]:
        return gr.update(visible=mode == "paper"), gr.update(visible=mode == "normalized")

    # ------------------------------------------------------------------------------------------- layout

    initial_config = defaults
    initial = store.selection(DEFAULT_KEY, initial_config)
    initial_frame, initial_caption = sample_table(default_data, initial)
    # Computed here, once, so the first page paints complete without a round trip per visitor.
    initial_plots = overview_images(initial, work_dir)

    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(1800, 3600)) as demo:
        data_key = gr.State(DEFAULT_KEY)
        gr.Markdown(INTRO)
        status = gr.Markdown(_status(default_data), elem_id="rap-status")
        with gr.Row():
            source = gr.Textbox(
                value=given_source,
                label="Scored dataset: a Hub dataset id (its `scores` config), or empty for the one the app opened on",
                placeholder="namespace/name",
                scale=4,
            )
            split_box = gr.Textbox(value=split, label="split", scale=1)
            load_button = gr.Button("Load", scale=1)

        with gr.Tabs():
            with gr.Tab("Overview & re-selection"):
                with gr.Row():
                    with gr.Column(scale=1, min_width=300):
                        lambda_c = gr.Slider(
                            -1,
                            1,
                            value=defaults.lambda_c,
                            step=0.05,
                            label="λc (CDE threshold): keep rap_cde ≥ λc",
                            elem_id="lambda-c",
                        )
                        ace_mode = gr.Radio(
                            ["paper", "normalized"], value=defaults.ace_mode, label="ACE mode"
                        )
                        lambda_a_log10 = gr.Slider(
                            -12,
                            4,
                            value=-1.0,
                            step=0.1,
                            label="log10 λa (paper ACE): reject rap_ace > λa",
                            elem_id="lambda-a-log10",
                        )
                        lambda_a_norm = gr.Slider(
                            -8,
                            1,
                            value=defaults.lambda_a,
                            step=0.05,
                            label="λa (normalized ACE): reject rap_ace_norm > λa",
                            visible=False,
                            elem_id="lambda-a-norm",
                        )
                        use_drm = gr.Checkbox(
                            value=defaults.use_drm, label="DRM: replace trivial kept samples"
                        )
                        drm_limit = gr.Radio(
                            list(DRM_LIMITS), value=DRM_LIMITS[0], label="DRM replaces at most"
                        )
                        drm_k = gr.Number(value=10, precision=0, minimum=0, label="DRM k (absolute)")
                        drm_ratio = gr.Slider(0.01, 1, value=0.5, step=0.01, label="DRM ratio (of kept)")
                        target_ratio = gr.Slider(
                            0,
                            1,
                            value=0,
                            step=0.01,
                            label="target ratio (budget; 0 = thresholds only)",
                            elem_id="target-ratio",
                        )
                    with gr.Column(scale=2):
                        summary = gr.Markdown(selection_summary(initial), elem_id="rap-summary")
                        with gr.Accordion("counts (JSON)", open=False):
                            counts = gr.JSON(initial.counts, label="rows per stage")
                        with gr.Row():
                            stage_plot = _plot("rows per stage", initial_plots[0])
                            cde_plot = _plot("rap_cde by stage", initial_plots[1])
                        with gr.Row():
                            ace_plot = _plot("ACE by stage", initial_plots[2])
                            difficulty_plot = _plot("rap_difficulty by stage", initial_plots[3])
                with gr.Row():
                    with gr.Column():
                        download_button = gr.Button("Download the current selection (parquet)")
                        download_file = gr.File(label="selection", interactive=False)
                    with gr.Column():
                        repo_box = gr.Textbox(
                            label="Push to Hub dataset repo (namespace/name)", placeholder="you/rap-selection"
                        )
                        push_button = gr.Button("Push scores + selection", interactive=allow_push)
                        push_note = gr.Markdown(
                            "Pushing uses `rap_hf.hub.push_rap_dataset` with a token from the **server's** environment "
                            "(HF_TOKEN); this page never asks for one. "
                            + (
                                "Enabled."
                                if allow_push
                                else "Off: start the app with `rap-hf explore --allow_push`."
                            )
                        )

            with gr.Tab("Samples"):
                with gr.Row():
                    stage_filter = gr.Dropdown(list(STAGE_FILTERS), value="all", label="stage")
                    sort_by = gr.Dropdown(list(SORT_COLUMNS), value="row", label="sort by")
                    descending = gr.Checkbox(value=False, label="descending")
                table_caption = gr.Markdown(initial_caption)
                sample_frame = gr.Dataframe(
                    initial_frame,
                    interactive=False,
                    max_height=360,
                    label=f"samples (first {TABLE_LIMIT})",
                    elem_id="rap-table",
                )
                with gr.Row():
                    row_number = gr.Number(
                        value=0, precision=0, minimum=0, label="row (click a table row, or type)"
                    )
                    show_button = gr.Button("Show sample")
                with gr.Row():
                    sample_image = gr.Image(
                        label="image",
                        type="pil",
                        format="png",
                        interactive=False,
                        height=240,
                        buttons=["download", "fullscreen"],
                    )
                    sample_header = gr.Markdown(elem_classes="rap-text")
                sample_scores = gr.Markdown(elem_classes="rap-text")
                with gr.Row():
                    rollouts_mm = gr.Markdown(elem_classes="rap-text")
                    rollouts_text = gr.Markdown(elem_classes="rap-text")

            with gr.Tab("Attention"):
                gr.Markdown(
                    "Final-layer self-attention of the scoring model over the rollout ACE reads, averaged over heads "
                    "(row i attends to column j ≤ i). Computed on demand with the model."
                    + ("" if runner.available else f"\n\n**Unavailable:** {runner.reason}")
                )
                with gr.Row():
                    attention_row = gr.Number(value=0, precision=0, minimum=0, label="row")
                    attention_button = gr.Button("Compute attention", interactive=runner.available)
                attention_image = _plot("attention")
                attention_note = gr.Markdown(elem_classes="rap-text")

            with gr.Tab("Score a new sample"):
                gr.Markdown(
                    "Upload an image, type a question and its answer: the model runs "
                    f"{runner.scoring.num_rollouts} rollouts with and without the image, checks them, and computes ACE."
                    + ("" if runner.available else f"\n\n**Unavailable:** {runner.reason}")
                )
                with gr.Row():
                    new_image = gr.Image(
                        label="image",
                        type="pil",
                        sources=["upload", "clipboard"],
                        height=240,
                        elem_id="rap-new-image",
                    )
                    with gr.Column():
                        new_question = gr.Textbox(label="question", lines=3)
                        new_answer = gr.Textbox(label="answer")
                        score_button = gr.Button("Score", interactive=runner.available)
                new_report = gr.Markdown(elem_classes="rap-text", elem_id="rap-new-report")
                new_attention = _plot("attention")

        # ------------------------------------------------------------------------------------------ events
        controls = [
            lambda_c,
            ace_mode,
            lambda_a_log10,
            lambda_a_norm,
            use_drm,
            drm_limit,
            drm_k,
            drm_ratio,
            target_ratio,
        ]
        select_inputs = [data_key, *controls]
        select_outputs = [summary, counts, sample_frame, table_caption]
        plot_outputs = [stage_plot, cde_plot, ace_plot, difficulty_plot]

        load_button.click(load, [source, split_box], [data_key, status], api_name="load").then(
            reselect, select_inputs, select_outputs, api_name=False
        ).then(plots, select_inputs, plot_outputs, api_name=False)
        # Counts first, plots after: the headline number changes at once, the figures follow.
        # One API endpoint per function (for gradio_client): named on λc's events, unnamed on the others.
        for control in controls:
            named = control is lambda_c
            control.change(
                reselect,
                select_inputs,
                select_outputs,
                api_name="reselect" if named else False,
                trigger_mode="always_last",
            ).then(
                plots,
                select_inputs,
                plot_outputs,
                api_name="plots" if named else False,
                trigger_mode="always_last",
            )
        ace_mode.change(toggle_ace, ace_mode, [lambda_a_log10, lambda_a_norm], api_name=False)

        table_inputs = [data_key, stage_filter, sort_by, descending, *controls]
        for control in (stage_filter, sort_by, descending):
            control.change(
                table,
                table_inputs,
                [sample_frame, table_caption],
                api_name="table" if control is stage_filter else False,
            )

        sample_outputs = [
            sample_image,
            sample_header,
            sample_scores,
            rollouts_mm,
            rollouts_text,
            attention_row,
        ]
        sample_frame.select(row_from_table, sample_frame, row_number, api_name=False).then(
            show_sample, [data_key, row_number, *controls], sample_outputs, api_name=False
        )
        show_button.click(show_sample, [data_key, row_number, *controls], sample_outputs, api_name="sample")
        row_number.submit(show_sample, [data_key, row_number, *controls], sample_outputs, api_name=False)
        attention_button.click(
            attention,
            [data_key, attention_row, *controls],
            [attention_image, attention_note],
            api_name="attention",
        )
        score_button.click(
            score_new,
            [new_image, new_question, new_answer, *controls],
            [new_report, new_attention],
            api_name="score",
        )
        download_button.click(download, select_inputs, download_file, api_name="download")
        push_button.click(push, [data_key, repo_box, *controls], push_note, api_name="push")
    return demo


def _named_controls(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Give `fn(..., *controls)` a signature that names each control (`CONTROL_NAMES`).

    Gradio reads parameter names for its API page and gradio_client's keyword arguments; a bare `*controls`
    would show as param_1, param_2, ...
    """
    signature = inspect.signature(fn)
    leading = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    named = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in CONTROL_NAMES]
    fn.__signature__ = signature.replace(parameters=[*leading, *named])  # type: ignore[attr-defined]
    return fn


def _plot(label: str, value: Any = None) -> Any:
    # The figures carry their own titles; Gradio's label badge would cover them (it still names the API output).
    return gr.Image(
        value,
        label=label,
        show_label=False,
        type="pil",
        format="png",
        interactive=False,
        elem_classes="rap-plot",
        buttons=["download", "fullscreen"],
    )


def _status(data: ExplorerData) -> str:
    lines = [f"**Dataset:** {data.source} · {len(data)} rows"]
    lines += [f"> {note}" for note in data.notes]
    return "\n\n".join(lines)


def launch_explorer(
    dataset: str | None = None,
    *,
    split: str = "train",
    model: str | None = "reference",
    host: str | None = None,
    port: int | None = None,
    allow_push: bool = False,
    **launch_overrides: Any,
) -> Any:
    """Build and launch the explorer (blocks until the server stops unless `prevent_thread_lock=True`)."""
    demo = build_app(dataset, split=split, model=model, allow_push=allow_push)
    demo.launch(**launch_kwargs(host, port, **launch_overrides))
    return demo
