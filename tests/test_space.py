"""The RAP Score Explorer (spaces/rap_explorer): the pure functions behind its events, the app through
gradio_client on 127.0.0.1, and the page in headless Chromium."""

from __future__ import annotations

import math
import os
import re
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset
from PIL import Image

from rap_hf.config import RAPConfig, RAPScoringConfig, RAPSelectionConfig
from rap_hf.explorer.assets import (
    ASSET_FILENAME,
    ASSET_METADATA,
    build_explorer_assets,
    default_explorer_data,
    explorer_asset_path,
)
from rap_hf.explorer.attention_view import attention_heatmap
from rap_hf.explorer.data import (
    ExplorerData,
    ExplorerDataError,
    is_hub_repo_id,
    load_explorer_data,
    read_parquet_dataset,
)
from rap_hf.explorer.export import push_selection, write_selection_parquet
from rap_hf.explorer.model import ExplorerModel, model_unavailable_reason
from rap_hf.explorer.overview import overview_images
from rap_hf.explorer.render import explain_stage, new_sample_report, rollouts_markdown, selection_summary
from rap_hf.explorer.reselection import config_from_controls, run_selection
from rap_hf.explorer.rollouts import ace_rollout_index, mark_rollouts
from rap_hf.explorer.samples import STAGE_FILTERS, sample_table, sample_view
from rap_hf.explorer.store import ExplorerStore
from rap_hf.explorer.synthetic import synthetic_scored_dataset
from rap_hf.rewards import extract_answer
from rap_hf.selection import SELECTED_STAGES, STAGES, select_cognitive_samples

ROOT = Path(__file__).resolve().parents[1]
PAPER_CONTROLS = (0.5, "paper", -1.0, 0.1, True, "all trivial", 10, 0.5, 0)
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def scored() -> Dataset:
    return synthetic_scored_dataset(300, seed=1)


@pytest.fixture(scope="module")
def data(scored) -> ExplorerData:
    return ExplorerData.from_dataset(scored, "synthetic")


@pytest.fixture(scope="module")
def parquet_path(scored, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("explorer-data") / "scored.parquet"
    scored.to_parquet(str(path))
    return path


# ------------------------------------------------------------------------------------------ loading


def test_missing_required_columns_are_named():
    ds = Dataset.from_dict({"prompt": ["q"], "rap_acc_mm": [1.0]})
    with pytest.raises(ExplorerDataError) as info:
        ExplorerData.from_dataset(ds, "mine")
    message = str(info.value)
    assert "rap_cde" in message and "rap_ace or rap_ace_norm" in message
    assert "Available columns: prompt, rap_acc_mm" in message


def test_missing_optional_columns_are_noted_and_shown_as_na():
    ds = Dataset.from_dict(
        {"prompt": ["q1", "q2"], "rap_acc_mm": [1.0, 0.4], "rap_cde": [0.8, 0.0], "rap_ace": [0.01, 0.5]}
    )
    data = ExplorerData.from_dataset(ds, "partial")
    assert any("rap_acc_text" in note and "rap_completions_mm" in note for note in data.notes)
    selection = run_selection(data, RAPConfig())
    assert selection.counts["kept"] + selection.counts["drm_out"] == 1
    assert selection.counts["cde_rejected"] + selection.counts["drm_in"] == 1
    view = sample_view(data, selection, 1)
    assert "| rap_acc_text | n/a |" in view.scores
    assert view.image is None and "no image column" in view.header
    assert "none stored" in view.rollouts_mm


def test_normalized_only_dataset_needs_normalized_mode():
    ds = Dataset.from_dict({"rap_acc_mm": [0.6], "rap_cde": [0.6], "rap_ace_norm": [-1.0]})
    data = ExplorerData.from_dataset(ds, "norm-only")
    with pytest.raises(ExplorerDataError, match="switch ACE mode to 'normalized'"):
        run_selection(data, RAPConfig())
    assert run_selection(data, RAPConfig(ace_mode="normalized")).counts["kept"] == 1


def test_decisive_scores_refuse_undecided_thresholds_with_a_note():
    # Row 0 kept by a lower bound (rap_cde >= 0.6), row 1 rejected by an upper bound (rap_cde <= 0.2).
    ds = Dataset.from_dict(
        {
            "rap_acc_mm": [1.0, 0.2],
            "rap_cde": [0.6, 0.2],
            "rap_cde_bound": [1.0, -1.0],
            "rap_ace": [0.0, 0.0],
        }
    )
    data = ExplorerData.from_dataset(ds, "decisive")
    counts = run_selection(data, RAPConfig(use_drm=False)).counts
    assert (counts["kept"], counts["cde_rejected"]) == (1, 1)
    with pytest.raises(ExplorerDataError, match="move lambda_c back") as err:
        run_selection(data, RAPConfig(lambda_c=0.1))  # row 1's CDE may be above 0.1 or not
    assert "0.2 < lambda_c <= 0.6" in str(err.value)
    with pytest.raises(ExplorerDataError, match="clear the budget"):
        run_selection(data, RAPConfig(target_ratio=0.5))


def test_empty_dataset():
    data = ExplorerData.from_dataset(synthetic_scored_dataset(0), "empty")
    selection = run_selection(data, RAPConfig())
    assert sum(selection.counts.values()) == 0
    assert "no rows" in selection_summary(selection)
    frame, caption = sample_table(data, selection)
    assert len(frame) == 0 and caption.startswith("0 row(s)")
    images = overview_images(selection)
    assert isinstance(images[0], Image.Image) and images[1:] == [None, None, None]
    with pytest.raises(ExplorerDataError, match="no rows"):
        sample_view(data, selection, 0)


def test_hub_ids_and_local_paths(parquet_path, tmp_path, monkeypatch):
    assert is_hub_repo_id("org/name") and is_hub_repo_id("user/my.data-set_1")
    for bad in ("/etc/passwd", "../x/y", "a/b/c", "name", "org/../x", str(parquet_path)):
        assert not is_hub_repo_id(bad), bad
    # Text typed into the page never reads a local file...
    with pytest.raises(ExplorerDataError, match="Only Hub datasets"):
        load_explorer_data(str(parquet_path), allow_local=False)
    # ...even one that looks like a Hub id but exists on disk.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org").mkdir()
    shutil.copy(parquet_path, tmp_path / "org" / "data.parquet")
    with pytest.raises(ExplorerDataError, match="Only Hub datasets"):
        load_explorer_data("org/data.parquet", allow_local=False)
    # The dataset given on the command line is read.
    assert len(load_explorer_data(str(parquet_path), allow_local=True)) == 300
    # Offline Hub: a clear message, not a crash.
    with pytest.raises(ExplorerDataError, match="cannot load 'org/name'"):
        load_explorer_data("org/name")


def test_parquet_round_trip_keeps_image_feature(parquet_path):
    ds = read_parquet_dataset(parquet_path)
    assert type(ds.features["image"]).__name__ == "Image"
    row = next(r for r in ds if r["image"] is not None)
    assert isinstance(row["image"], Image.Image)


# ---------------------------------------------------------------------------------------- selection


def test_config_from_controls():
    config = config_from_controls(*PAPER_CONTROLS)
    assert type(config) is RAPSelectionConfig
    assert config.lambda_a == pytest.approx(0.1) and config.ace_mode == "paper"
    assert config.drm_k is None and config.drm_ratio is None and config.target_ratio is None
    config = config_from_controls(0.25, "normalized", -1.0, -0.5, True, "k", 3, 0.5, 0.2)
    assert (config.lambda_c, config.lambda_a, config.drm_k, config.drm_ratio, config.target_ratio) == (
        0.25,
        -0.5,
        3,
        None,
        0.2,
    )
    assert config_from_controls(0.5, "paper", -2, 0, False, "ratio", 3, 0.4, 0).drm_ratio == 0.4
    with pytest.raises(ExplorerDataError, match="target_ratio"):
        config_from_controls(0.5, "paper", -1, 0, True, "all trivial", 0, 0.5, 1.5)
    with pytest.raises(ExplorerDataError, match="ACE mode"):
        config_from_controls(0.5, "bogus", -1, 0, True, "all trivial", 0, 0.5, 0)


def test_run_selection_equals_the_library(scored, data):
    config = config_from_controls(*PAPER_CONTROLS)
    selection = run_selection(data, config)
    _, expected = select_cognitive_samples(scored, config, return_counts=True)
    assert selection.counts == expected
    assert selection.num_selected == sum(expected[s] for s in SELECTED_STAGES)
    summary = selection_summary(selection)
    assert f"Selected {selection.num_selected} of {selection.num_scored} scored rows" in summary
    assert f"{expected['error']} not scored" in summary


def test_moving_a_threshold_changes_the_counts(data):
    strict = run_selection(data, config_from_controls(*PAPER_CONTROLS))
    loose = run_selection(data, config_from_controls(-1.0, *PAPER_CONTROLS[1:]))
    assert loose.counts["cde_rejected"] == 0 < strict.counts["cde_rejected"]
    assert loose.num_selected > strict.num_selected
    budget = run_selection(data, config_from_controls(*PAPER_CONTROLS[:-1], 0.1))
    assert budget.num_selected == round(0.1 * budget.num_scored)


def test_overview_images(data):
    images = overview_images(run_selection(data, RAPConfig()))
    assert len(images) == 4 and all(isinstance(i, Image.Image) and i.width > 300 for i in images)


def test_store_memoises_selections_per_dataset(data, scored):
    store = ExplorerStore(data, max_selections=2)
    first = store.selection(data, RAPConfig())
    assert store.selection(data, RAPConfig()) is first
    assert store.selection(data, RAPConfig(lambda_c=0.1)) is not first
    other = ExplorerData.from_dataset(scored, "a visitor's")
    assert store.selection(other, RAPConfig()) is not first  # per dataset
    store.selection(data, RAPConfig(lambda_c=0.2))  # the oldest memo of `data` goes, not another dataset's
    assert store.selection(data, RAPConfig()) is not first


# ----------------------------------------------------------------------------------- sample browser


def test_sample_table_filters_and_sorts(data):
    selection = run_selection(data, RAPConfig())
    frame, caption = sample_table(data, selection, "all", "rap_cde", descending=True)
    assert len(frame) == 200 and "showing the first 200" in caption
    values = [v for v in frame["cde"] if v is not None]
    assert values == sorted(values, reverse=True)
    assert list(frame.columns[:3]) == ["row", "stage", "selected"] and "question" in frame and "kind" in frame
    for stage in STAGE_FILTERS:
        frame, _ = sample_table(data, selection, stage)
        if stage in STAGES:
            assert set(frame["stage"]) <= {stage}
    frame, _ = sample_table(data, selection, "selected", "rap_ace")
    assert set(frame["stage"]) <= set(SELECTED_STAGES)
    finite = [v for v in frame["ace"] if v is not None]
    assert finite == sorted(finite)
    with pytest.raises(ExplorerDataError):
        sample_table(data, selection, "nope")


def test_sample_view(data):
    selection = run_selection(data, RAPConfig())
    row = int(np.flatnonzero(selection.stages == "cde_rejected")[0])
    view = sample_view(data, selection, row)
    assert isinstance(view.image, Image.Image)
    assert f"Row {row} · stage **cde_rejected**" in view.header and "Rejected by CDE" in view.header
    assert "read by ACE" in view.rollouts_mm or "0/5 correct" in view.rollouts_mm
    assert "Without the image" in view.rollouts_text
    error_row = int(np.flatnonzero(selection.stages == "error")[0])
    view = sample_view(data, selection, error_row)
    assert view.image is None and "This row has no image" in view.header
    assert "Not scored: missing image" in view.header
    with pytest.raises(ExplorerDataError, match="row must be"):
        sample_view(data, selection, len(data))


def test_explain_stage_covers_every_stage():
    config = RAPConfig()
    scores = {"rap_acc_mm": 0.6, "rap_acc_text": 0.4, "rap_cde": 0.2, "rap_ace": 0.5, "rap_error": None}
    expected = {
        "cde_rejected": "Rejected by CDE",
        "ace_rejected": "Rejected by ACE",
        "kept": "Kept",
        "drm_out": "Replaced by DRM",
        "drm_in": "rejected by CDE",
        "budget_in": "Added by the budget",
        "budget_out": "Cut by the budget",
        "error": "Not scored",
    }
    for stage in STAGES:
        assert expected[stage] in explain_stage(stage, scores, config), stage
    assert "no ACE score" in explain_stage("kept", {**scores, "rap_ace": math.nan}, config)
    assert "could not" not in explain_stage("error", {"rap_error": "missing image"}, config)
    assert "missing image" in explain_stage("error", {"rap_error": "missing image"}, config)


def test_mark_rollouts():
    marks = mark_rollouts(["so \\boxed{4}", "it is \\boxed{5}", "nothing"], "5")
    assert [m.correct for m in marks] == [False, True, False]
    # The explorer reports what the public reward code extracts (whatever its rules for bare text).
    assert [m.answer for m in marks] == ["4", "5", extract_answer("nothing")]
    assert ace_rollout_index(marks) == 1
    assert ace_rollout_index(mark_rollouts(["\\boxed{1}"], "2")) == 0
    assert ace_rollout_index([]) is None
    text = rollouts_markdown(mark_rollouts(["```html\n<b>x</b>``` \\boxed{5}"], "5"), "With the image", 0)
    assert "1/1 correct" in text and text.count("```") == 2  # model output cannot close the code block


# --------------------------------------------------------------------------------------------- export


def test_download_parquet_holds_the_selection(data, tmp_path):
    selection = run_selection(data, RAPConfig())
    path = write_selection_parquet(data, selection, tmp_path)
    back = read_parquet_dataset(path)
    assert len(back) == selection.num_selected and all(back["rap_selected"])
    assert set(back["rap_stage"]) <= set(SELECTED_STAGES)
    assert isinstance(back[0]["image"], Image.Image)  # embedded, not a path


def test_push_is_guarded(data, monkeypatch):
    selection = run_selection(data, RAPConfig())
    assert "Pushing is off" in push_selection(data, selection, "x", allow_push=False, namespace="me")
    assert "--push_namespace" in push_selection(data, selection, "x", allow_push=True)
    assert "letters, digits" in push_selection(data, selection, "..", allow_push=True, namespace="me")
    monkeypatch.setenv("HF_TOKEN", "")
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    assert "No Hub token" in push_selection(data, selection, "x", allow_push=True, namespace="me")

    calls = {}

    def fake_push(dataset, repo_id, *, config, token):
        calls.update(rows=len(dataset), repo_id=repo_id, config=config)
        return type("Result", (), {"url": f"https://hub.example/{repo_id}"})()

    monkeypatch.setattr("rap_hf.hub.push_rap_dataset", fake_push)
    monkeypatch.setattr("huggingface_hub.HfApi.repo_exists", lambda self, repo_id, **kw: False)
    message = push_selection(data, selection, "me/x", allow_push=True, namespace="me", token="t")
    assert "Pushed" in message and calls["repo_id"] == "me/x" and calls["config"] is selection.config


# ----------------------------------------------------------------------------- assets, model, fallback


def test_model_unavailable_reasons(tmp_path):
    assert "No model was given" in model_unavailable_reason(None)
    assert "config.json" in model_unavailable_reason(tmp_path)
    runner = ExplorerModel(None)
    assert not runner.available
    with pytest.raises(ExplorerDataError, match="No model"):
        runner.score_sample(Image.new("RGB", (8, 8)), "q", "a")


@pytest.mark.slow
def test_build_assets_then_attention_and_new_sample(tiny_model_dir, tmp_path):
    scoring = RAPScoringConfig(num_rollouts=2, max_new_tokens=8, batch_size=4)
    path = build_explorer_assets(tmp_path, num_rows=3, model=tiny_model_dir, config=scoring)
    assert path.name == ASSET_FILENAME and (tmp_path / ASSET_METADATA).exists()
    opened = default_explorer_data(asset=path)
    assert "with 2 rollouts per arm" in opened.notes[0]
    assert len(opened) == 3 and "kind" in opened.dataset.column_names
    assert "reference_completion" not in opened.dataset.column_names
    assert isinstance(opened.dataset[0]["image"], Image.Image)

    runner = ExplorerModel(str(tiny_model_dir), scoring=scoring)
    assert runner.available
    # A row with a (random-model) rollout: attention over its response tokens, lower triangular.
    view = runner.attention_for_row(opened, 0, RAPSelectionConfig())
    length = len(view.tokens)
    assert view.attention.shape == (length, length) and length >= 1
    assert np.allclose(np.triu(view.attention, 1), 0, atol=1e-6)
    assert view.column == int(np.nanargmax(view.column_scores)) and view.rollout == 0
    assert isinstance(attention_heatmap(view, "row 0"), Image.Image)

    scored = runner.score_sample(Image.new("RGB", (56, 56), "white"), "How many dots?", "3")
    assert len(scored) == 1 and len(scored[0]["rap_completions_mm"]) == 2
    report = new_sample_report(scored, RAPConfig())
    assert "| rap_cde |" in report and "With the image" in report
    with pytest.raises(ExplorerDataError, match="an image, a question"):
        runner.score_sample(None, " ", "3")


@pytest.mark.slow
def test_fallback_when_assets_are_missing(tiny_model_dir, tmp_path):
    data = default_explorer_data(asset=tmp_path / "missing.parquet", fallback_model=tiny_model_dir)
    assert len(data) == 8 and "RANDOM tiny model" in data.notes[0]
    assert (
        run_selection(data, RAPConfig()).counts["cde_rejected"]
        + run_selection(data, RAPConfig()).counts["error"]
        == 8
    )


def test_attention_needs_an_image(data, tiny_model_dir):
    runner = ExplorerModel(str(tiny_model_dir))
    selection = run_selection(data, RAPConfig())
    error_row = int(np.flatnonzero(selection.stages == "error")[0])
    with pytest.raises(ExplorerDataError, match="has no image"):
        runner.attention_for_row(data, error_row, RAPConfig())


# --------------------------------------------------------------------------------- the app, served


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(parquet_path, tmp_path_factory):
    """The explorer served on 127.0.0.1 (the app opens on the shipped scores when they exist, else on
    synthetic ones) with no model: attention and scoring say why they are unavailable."""
    pytest.importorskip("gradio")
    from rap_hf.explorer.app import build_app, launch_kwargs

    dataset = None if explorer_asset_path().exists() else str(parquet_path)
    demo = build_app(dataset, model=None, work_dir=tmp_path_factory.mktemp("explorer-work"))
    port = _free_port()
    demo.launch(**launch_kwargs("127.0.0.1", port, prevent_thread_lock=True, quiet=True))
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        # Let events a test left running (plots after the last slider move) finish: a worker thread still
        # inside native code when the interpreter exits can abort the whole pytest process.
        deadline = time.monotonic() + 60
        while any(job is not None for job in demo._queue.active_jobs) and time.monotonic() < deadline:
            time.sleep(0.1)
        demo.close()


def test_client_load_reselect_counts(app_url):
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    status = client.predict("", "train", api_name="/load")
    assert "**Dataset:**" in status and "rows" in status
    summary, counts, _, _ = client.predict(*PAPER_CONTROLS, api_name="/reselect")
    loose_summary, loose_counts, table, _ = client.predict(-1.0, *PAPER_CONTROLS[1:], api_name="/reselect")
    assert sum(counts.values()) == sum(loose_counts.values()) > 0
    assert loose_counts["cde_rejected"] == 0 < counts["cde_rejected"]
    selected = sum(counts[s] for s in SELECTED_STAGES)
    assert f"Selected {selected} of" in summary and summary != loose_summary
    assert table["headers"][:3] == ["row", "stage", "selected"]
    # keyword arguments name the controls
    by_name = client.predict(lambda_c=-1.0, api_name="/reselect")
    assert by_name[1] == loose_counts


def test_client_sample_download_and_unavailable_model(app_url):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(app_url, verbose=False)
    image, header, scores, _, _, row = client.predict(0, *PAPER_CONTROLS, api_name="/sample")
    assert header.startswith("### Row 0") and "| rap_cde |" in scores and row == 0
    path = client.predict(*PAPER_CONTROLS, api_name="/download")
    assert len(read_parquet_dataset(path)) > 0
    with pytest.raises(AppError, match="unavailable"):
        client.predict(0, *PAPER_CONTROLS, api_name="/attention")
    with pytest.raises(AppError, match="Only Hub datasets"):
        client.predict("/etc", "train", api_name="/load")
    assert "Pushing is off" in client.predict("me/x", *PAPER_CONTROLS, api_name="/push")


def test_no_arbitrary_files_served(app_url, parquet_path):
    import httpx

    for path in (
        "/etc/passwd",
        str(ROOT / "README.md"),
        str(parquet_path),
        str(ROOT / "rap_hf" / "config.py"),
    ):
        response = httpx.get(f"{app_url}gradio_api/file={path}")
        assert response.status_code == 403, path


def test_browser_slider_changes_the_count(app_url, tmp_path):
    """Open the page in headless Chromium, move the λc slider, see the selected count change."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    playwright_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright (pip install playwright) missing"
    )

    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(app_url, wait_until="domcontentloaded")
            summary = page.locator("#rap-summary")
            summary.get_by_text("Selected").wait_for(timeout=60_000)
            before = summary.inner_text()
            plots_before = page.eval_on_selector_all(".rap-plot img", "els => els.map(e => e.src)")
            slider = page.locator("#lambda-c input[type=range]")
            slider.focus()
            for _ in range(10):  # 0.5 -> 0.0 in steps of 0.05
                slider.press("ArrowLeft")
            # Every key press re-selects; wait for the last one (λc 0) to be on the page.
            deadline = time.monotonic() + 60
            while not _settled(summary.inner_text(), "λc 0,") and time.monotonic() < deadline:
                page.wait_for_timeout(200)
            after = summary.inner_text()
            assert _settled(after, "λc 0,"), after
            assert _selected_count(after) > _selected_count(before), (before, after)
            # The plots follow the counts: wait until all four are new and no plot event is running, twice
            # in a row (one key press per step queues several events), before the picture.
            settled_in_a_row, deadline = 0, time.monotonic() + 60
            while settled_in_a_row < 2 and time.monotonic() < deadline:
                page.wait_for_timeout(500)
                settled_in_a_row = settled_in_a_row + 1 if page.evaluate(_PLOTS_SETTLED, plots_before) else 0
            shot = tmp_path / "explorer.png"
            page.screenshot(path=str(shot), full_page=False)
            assert shot.stat().st_size > 10_000
            target = os.environ.get("RAP_EXPLORER_SCREENSHOT")
            if target:  # how the README's screenshot is made
                shutil.copy(shot, target)
        finally:
            browser.close()


_PLOTS_SETTLED = """old => {
    const now = [...document.querySelectorAll('.rap-plot img')].map(e => e.src);
    const busy = [...document.querySelectorAll('.rap-plot [data-testid="status-tracker"]')]
        .some(t => !t.classList.contains('hide'));
    return now.length >= 4 && now.every((src, i) => src !== old[i]) && !busy;
}"""


def _settled(text: str, marker: str) -> bool:
    # While an event runs Gradio overlays a timer ("0.1s") on the output; done = marker shown, no timer.
    return marker in text and not re.match(r"^\s*[\d.]+s\b", text)


def _selected_count(text: str) -> int:
    match = re.search(r"Selected (\d+) of", text)
    assert match, text
    return int(match.group(1))


# ------------------------------------------------------------------------------------ CLI and the Space


def test_rap_hf_explore_command(monkeypatch):
    pytest.importorskip("gradio")
    from rap_hf.cli import run_command

    seen = {}
    monkeypatch.setattr(
        "rap_hf.explorer.app.launch_explorer",
        lambda dataset, **kwargs: seen.update(dataset=dataset, **kwargs),
    )
    run_command(
        "explore", ["--dataset", "scores/", "--model", "none", "--port", "7999", "--max_download_mb", "5"]
    )
    limits = seen.pop("limits")
    assert seen == {
        "dataset": "scores/",
        "split": "train",
        "model": None,
        "host": "127.0.0.1",
        "port": 7999,
        "allow_push": False,
        "push_namespace": None,
    }
    assert limits.max_download_mb == 5


def test_space_files_agree_with_the_installed_gradio():
    gradio = pytest.importorskip("gradio")
    space = ROOT / "spaces" / "rap_explorer"
    front_matter = (space / "README.md").read_text().split("---")[1]
    assert "sdk: gradio" in front_matter and "app_file: app.py" in front_matter
    pinned = re.search(r"^sdk_version: (\S+)$", front_matter, re.M).group(1)
    assert f"gradio=={pinned}" in (space / "requirements.txt").read_text()
    # What the tests run against is the Space's major version (pyproject's `space` extra: gradio 6.x).
    assert gradio.__version__.split(".")[0] == pinned.split(".")[0] == "6"
    source = (space / "app.py").read_text()
    assert 'os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"' in source and "launch_explorer" in source
