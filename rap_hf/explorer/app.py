"""The RAP Score Explorer's Gradio page: layout and event wiring only; the events run
`rap_hf.explorer.handlers.ExplorerHandlers`.

`build_app` returns the `gr.Blocks`; `launch_kwargs` holds the launch settings that keep it safe (no extra
served paths, no analytics, no MCP server); `launch_explorer` is what `rap-hf explore` and the Space's
`app.py` run. Gradio is imported only here and in `handlers`, so the library works without it
(`pip install "rap-hf[space]"`).

File access: the app never hands Gradio a path a visitor chose. Plots are rendered in memory, downloads are
written to the visitor's own folder of the app's temp folder, `allowed_paths` stays empty, so Gradio's file
route serves only its upload and cache folders. Text typed into the page can only name a Hub dataset, read
anonymously and checked before download; local data is read only when given on the command line.

Resources: every bound is an `ExplorerLimits` field; here they become Gradio's queue size and concurrency
(the model-bound events share one slot), its upload cap, and a cap on every request body (`RequestLimits`,
which also refuses a base64 `data:` URL in an event's payload: Gradio would decode it in place of an upload,
past both caps). SECURITY.md lists the promises and their tests.
"""

from __future__ import annotations

import os
from typing import Any

import gradio as gr
from starlette.middleware import Middleware

from rap_hf.config import RAPSelectionConfig
from rap_hf.errors import RAPUserError
from rap_hf.explorer.data import ExplorerData
from rap_hf.explorer.handlers import ExplorerHandlers, row_from_table, toggle_ace
from rap_hf.explorer.limits import ExplorerLimits, RequestLimits
from rap_hf.explorer.model import ExplorerModel
from rap_hf.explorer.reselection import DRM_LIMITS, LAMBDA_A_LOG10_RANGE, LAMBDA_A_NORM_RANGE
from rap_hf.explorer.samples import SORT_COLUMNS, STAGE_FILTERS, TABLE_LIMIT
from rap_hf.explorer.visitors import close_session

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
    server_name: str | None = None,
    server_port: int | None = None,
    limits: ExplorerLimits | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Keyword arguments for `Blocks.launch`: safe defaults for a local run and for a Space.

    `server_name`/`server_port` None let Gradio use GRADIO_SERVER_NAME/PORT (a Space sets them) or
    127.0.0.1:7860. `limits` sets the upload cap and the request-body cap (`RequestLimits`).
    """
    limits = limits or ExplorerLimits()
    size_limit = Middleware(
        RequestLimits,  # type: ignore[arg-type]
        upload_bytes=limits.max_upload_bytes + 64 * 1024,  # the file plus its multipart framing
        other_bytes=limits.max_request_bytes,
    )
    kwargs: dict[str, Any] = {
        "server_name": server_name,
        "server_port": server_port,
        "allowed_paths": [],  # nothing on disk beyond Gradio's own upload/cache folders is served
        "share": False,
        "mcp_server": False,
        "ssr_mode": False,  # server-side rendering needs Node; client-side rendering is all this app needs
        "show_error": True,
        "max_file_size": limits.max_upload_bytes,  # the only upload is one image to score
        "app_kwargs": {"middleware": [size_limit]},
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
    push_namespace: str | None = None,
    work_dir: str | os.PathLike[str] | None = None,
    default_data: ExplorerData | None = None,
    limits: ExplorerLimits | None = None,
    runner: ExplorerModel | None = None,
) -> gr.Blocks:
    """Build the explorer (`gr.Blocks`), with its queue set up (size and concurrency from `limits`).

    Args:
        dataset: the dataset to open on: a local path (save_to_disk folder, parquet/json/csv) or a Hub id;
            None opens the shipped visual-arith scores (or the fallback of `default_explorer_data`).
        split: split of `dataset`.
        model: "reference" (the shipped rap-tiny-vl), a local model folder, or None: the model of the attention
            view and of scoring a new sample. Unavailable -> those tabs say why.
        allow_push: enable the push button (needs HF_TOKEN in the environment, and `push_namespace`). Off
            by default: every visitor pushes with the server's token.
        push_namespace: the namespace (a user or organisation the token writes to) visitors push to: they
            choose only a repo name in it, and only a repo that does not exist yet.
        work_dir: temp folder for plots, the visitors' datasets and downloads, and the fallback model
            (default: a new one, removed at exit).
        default_data: already loaded data to open on (tests, timing); overrides `dataset`.
        limits: the resource caps (`ExplorerLimits`; default its defaults).
        runner: the model object to use instead of loading `model` (tests, timing).

    Raises:
        RAPUserError: `allow_push` without `push_namespace`.
    """
    if allow_push and not push_namespace:
        raise RAPUserError(
            "--allow_push needs --push_namespace NAMESPACE: visitors may push only to new repos in a namespace "
            "you chose for them, never to any repo the token can write"
        )
    _disable_analytics()
    limits = limits or ExplorerLimits()
    handlers = ExplorerHandlers.start(
        dataset,
        split=split,
        model=model,
        allow_push=allow_push,
        push_namespace=push_namespace,
        work_dir=work_dir,
        default_data=default_data,
        limits=limits,
        runner=runner,
    )
    runner = handlers.runner
    defaults = RAPSelectionConfig()
    first = handlers.first_paint(defaults)

    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(1800, 3600)) as demo:
        # The visitor's own dataset and download (a VisitorSession; None until they load or download).
        session = gr.State(None, time_to_live=limits.session_ttl_s, delete_callback=close_session)
        gr.Markdown(INTRO)
        status = gr.Markdown(first.status, elem_id="rap-status")
        with gr.Row():
            source = gr.Textbox(
                value=handlers.given_source,
                label="Scored dataset: a public Hub dataset id (its `scores` config), or empty for the one the app "
                f"opened on (at most {limits.max_download_mb:g} MB)",
                placeholder="namespace/name",
                max_length=limits.max_source_chars,
                scale=4,
            )
            split_box = gr.Textbox(value=split, label="split", max_length=limits.max_split_chars, scale=1)
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
                            *LAMBDA_A_LOG10_RANGE,
                            value=-1.0,
                            step=0.1,
                            label="log10 λa (paper ACE): reject rap_ace > λa",
                            elem_id="lambda-a-log10",
                        )
                        lambda_a_norm = gr.Slider(
                            *LAMBDA_A_NORM_RANGE,
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
                        summary = gr.Markdown(first.summary, elem_id="rap-summary")
                        with gr.Accordion("counts (JSON)", open=False):
                            counts = gr.JSON(first.selection.counts, label="rows per stage")
                        with gr.Row():
                            stage_plot = _plot("rows per stage", first.plots[0])
                            cde_plot = _plot("rap_cde by stage", first.plots[1])
                        with gr.Row():
                            ace_plot = _plot("ACE by stage", first.plots[2])
                            difficulty_plot = _plot("rap_difficulty by stage", first.plots[3])
                with gr.Row():
                    with gr.Column():
                        download_button = gr.Button("Download the current selection (parquet)")
                        download_file = gr.File(label="selection", interactive=False)
                    with gr.Column():
                        repo_box = gr.Textbox(
                            label=f"Push to a new Hub dataset repo in `{push_namespace}` (its name)"
                            if push_namespace
                            else "Push to a new Hub dataset repo (its name)",
                            placeholder="my-rap-selection",
                            max_length=limits.max_repo_chars,
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
                table_caption = gr.Markdown(first.caption)
                sample_frame = gr.Dataframe(
                    first.frame,
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
                    # type="filepath" with image_mode=None: Gradio hands over the upload's path after reading
                    # its header only; the handler decodes it once its pixel count passed the cap.
                    new_image = gr.Image(
                        label=f"image (at most {limits.max_upload_mb:g} MB, {limits.max_image_pixels:,} pixels)",
                        type="filepath",
                        image_mode=None,
                        sources=["upload", "clipboard"],
                        height=240,
                        elem_id="rap-new-image",
                    )
                    with gr.Column():
                        new_question = gr.Textbox(
                            label=f"question (the first {limits.max_question_chars:,} characters are used)",
                            lines=3,
                        )
                        new_answer = gr.Textbox(label="answer", max_length=limits.max_answer_chars)
                        score_button = gr.Button("Score", interactive=runner.available)
                new_report = gr.Markdown(elem_classes="rap-text", elem_id="rap-new-report")
                new_attention = _plot("attention")

        # ------------------------------------------------------------------------------------------ events
        # In `CONTROL_NAMES` order: every handler receives them last.
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
        select_inputs = [session, *controls]
        select_outputs = [summary, counts, sample_frame, table_caption]
        plot_outputs = [stage_plot, cde_plot, ace_plot, difficulty_plot]
        # Every event belongs to a named group with a fixed number of slots, so the total stays bounded
        # (Gradio would otherwise give each function its own slots): quick views, figures (matplotlib holds
        # the GIL: more threads would not draw faster), Hub downloads, exports, and the model (below).
        view = {"concurrency_id": "view", "concurrency_limit": limits.concurrency}
        drawing = {"concurrency_id": "plots", "concurrency_limit": 1}

        # A Hub download: at most two at a time, whoever asks.
        load_button.click(
            handlers.load,
            [session, source, split_box],
            [session, status],
            api_name="load",
            concurrency_id="hub",
            concurrency_limit=2,
        ).then(handlers.reselect, select_inputs, select_outputs, api_name=False, **view).then(
            handlers.plots, select_inputs, plot_outputs, api_name=False, **drawing
        )
        # Counts first, plots after: the headline number changes at once, the figures follow.
        # One API endpoint per function (for gradio_client): named on λc's events, unnamed on the others.
        for control in controls:
            named = control is lambda_c
            control.change(
                handlers.reselect,
                select_inputs,
                select_outputs,
                api_name="reselect" if named else False,
                trigger_mode="always_last",
                **view,
            ).then(
                handlers.plots,
                select_inputs,
                plot_outputs,
                api_name="plots" if named else False,
                trigger_mode="always_last",
                **drawing,
            )
        ace_mode.change(toggle_ace, ace_mode, [lambda_a_log10, lambda_a_norm], api_name=False, **view)

        table_inputs = [session, stage_filter, sort_by, descending, *controls]
        for control in (stage_filter, sort_by, descending):
            control.change(
                handlers.table,
                table_inputs,
                [sample_frame, table_caption],
                api_name="table" if control is stage_filter else False,
                **view,
            )

        sample_inputs = [session, row_number, *controls]
        sample_outputs = [
            sample_image,
            sample_header,
            sample_scores,
            rollouts_mm,
            rollouts_text,
            attention_row,
        ]
        sample_frame.select(row_from_table, sample_frame, row_number, api_name=False, **view).then(
            handlers.show_sample, sample_inputs, sample_outputs, api_name=False, **view
        )
        show_button.click(handlers.show_sample, sample_inputs, sample_outputs, api_name="sample", **view)
        row_number.submit(handlers.show_sample, sample_inputs, sample_outputs, api_name=False, **view)
        # The model-bound events share one slot: one forward pass at a time, however many visitors ask.
        attention_button.click(
            handlers.attention,
            [session, attention_row, *controls],
            [attention_image, attention_note],
            api_name="attention",
            concurrency_id="model",
            concurrency_limit=1,
        )
        score_button.click(
            handlers.score_new,
            [new_image, new_question, new_answer, *controls],
            [new_report, new_attention],
            api_name="score",
            concurrency_id="model",
            concurrency_limit=1,
        )
        download_button.click(
            handlers.download,
            select_inputs,
            [session, download_file],
            api_name="download",
            concurrency_id="export",
            concurrency_limit=1,
        )
        push_button.click(
            handlers.push,
            [session, repo_box, *controls],
            push_note,
            api_name="push",
            concurrency_id="export",
            concurrency_limit=1,
        )
    # Bounded: a flood of calls is refused once `queue_size` wait, instead of queueing for hours.
    demo.queue(max_size=limits.queue_size, default_concurrency_limit=limits.concurrency)
    return demo


def _plot(label: str, value: Any = None) -> gr.Image:
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


def launch_explorer(
    dataset: str | None = None,
    *,
    split: str = "train",
    model: str | None = "reference",
    host: str | None = None,
    port: int | None = None,
    allow_push: bool = False,
    push_namespace: str | None = None,
    limits: ExplorerLimits | None = None,
    **launch_overrides: Any,
) -> gr.Blocks:
    """Build and launch the explorer (blocks until the server stops unless `prevent_thread_lock=True`)."""
    limits = limits or ExplorerLimits()
    demo = build_app(
        dataset, split=split, model=model, allow_push=allow_push, push_namespace=push_namespace, limits=limits
    )
    demo.launch(**launch_kwargs(host, port, limits, **launch_overrides))
    return demo
