"""The logic of the RAP Score Explorer (the Gradio Space in `spaces/rap_explorer/`), as plain functions.

Every event of the app (`rap_hf.explorer.app`) is a thin call into this module, so each one is unit-tested
without a browser or a server:

- loading: `ExplorerData` (a scored dataset plus the score arrays the views read), `load_explorer_data`,
  `default_explorer_data` (the shipped precomputed scores, else a clearly labelled fallback);
- live re-selection: `config_from_controls` -> `run_selection` -> `selection_summary`, `overview_images`;
- the sample browser: `sample_table`, `sample_view`, `explain_stage`, `mark_rollouts`;
- the attention view and scoring a new sample: `ExplorerModel` (loads the model once, on first use),
  `final_layer_attention`, `attention_heatmap`;
- export: `write_selection_parquet`, `push_selection`;
- assets: `build_explorer_assets` scores visual-arith's test split with the reference model once and ships
  the result as parquet under `rap_hf/explorer/assets/`, so the Space opens without running a model.

Nothing here imports gradio: the library and its tests do not need it.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import json
import logging
import math
import os
import re
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datasets import Dataset, DatasetDict
from PIL import Image

from rap_hf.columns import NUMERIC_SCORE_COLUMNS, SCORE_COLUMNS, conversation_feature, score_features
from rap_hf.config import ACE_MODES, RAPConfig
from rap_hf.estimators.drm import ACE_REJECTED, CDE_REJECTED, DRM_IN, DRM_OUT, KEPT
from rap_hf.selection import (
    BUDGET_IN,
    BUDGET_OUT,
    ERROR,
    SELECTED_COLUMN,
    SELECTED_STAGES,
    STAGE_COLUMN,
    STAGES,
    compute_stages,
    select_cognitive_samples,
)

logger = logging.getLogger("rap_hf")

ASSET_FILENAME = "visual_arith_test_scored.parquet"
ASSET_METADATA = "visual_arith_test_scored.json"
ASSET_ROWS = 200
# Scoring settings of the shipped scores and of "score a new sample" (the demo's: 5 rollouts per arm).
EXPLORER_SCORING = {"num_rollouts": 5, "max_new_tokens": 48, "batch_size": 24, "seed": 0}

REQUIRED_SCORE_COLUMNS = ("rap_acc_mm", "rap_cde")
ACE_COLUMNS = ("rap_ace", "rap_ace_norm")
OPTIONAL_SCORE_COLUMNS = tuple(c for c in SCORE_COLUMNS if c not in REQUIRED_SCORE_COLUMNS)
COMPLETION_COLUMNS = {"mm": "rap_completions_mm", "text": "rap_completions_text"}
# Columns the sample table can be sorted by ("row" = dataset order).
SORT_COLUMNS = ("row", *NUMERIC_SCORE_COLUMNS)
ALL_STAGES = "all"
SELECTED_FILTER = "selected"
STAGE_FILTERS = (ALL_STAGES, SELECTED_FILTER, *STAGES)
DRM_LIMITS = ("all trivial", "k", "ratio")
TABLE_LIMIT = 200
QUESTION_PREVIEW_CHARS = 90
# Hub dataset ids: "namespace/name" (no path separators beyond the one, no "..").
_REPO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_PROMPT_COLUMNS = ("prompt", "question", "problem", "query")
_ANSWER_COLUMNS = ("solution", "answer", "answers")


class ExplorerDataError(ValueError):
    """A dataset the explorer cannot show, or a control value it cannot use; the message says why."""


# ------------------------------------------------------------------------------------------------ assets


def explorer_assets_dir() -> Path:
    """Folder of the explorer's shipped assets (inside the installed package)."""
    return Path(str(resources.files("rap_hf.explorer") / "assets"))


def explorer_asset_path() -> Path:
    """The shipped scored dataset the app opens on (exists once `build_explorer_assets` has been run)."""
    return explorer_assets_dir() / ASSET_FILENAME


def explorer_scoring_config(**overrides: Any) -> RAPConfig:
    """The `RAPConfig` the shipped scores were (and new samples are) scored with; selection fields default."""
    return RAPConfig(**{**EXPLORER_SCORING, **overrides})


def build_explorer_assets(
    out_dir: str | os.PathLike[str] | None = None,
    *,
    num_rows: int = ASSET_ROWS,
    model: str | os.PathLike[str] | None = None,
    config: RAPConfig | None = None,
    seed: int = 0,
) -> Path:
    """Score visual-arith's test split with the reference model and save it as the explorer's opening data.

    Writes ``<out_dir>/visual_arith_test_scored.parquet`` (images embedded, every score column, the
    rollouts; `kind`/`digits` kept as ground truth for visitors, `reference_completion` dropped) and
    ``visual_arith_test_scored.json`` (model, config, rows, seconds). Run it once after the reference model
    is trained; the app reads the parquet and never runs a model to open.

    Args:
        out_dir: target folder; default `explorer_assets_dir()` (inside the package, so it ships).
        num_rows: rows of the test split to score (the split has 400).
        model: scoring model; default the shipped reference model (`rap_hf.demo.reference_model`).
        config: scoring settings; default `explorer_scoring_config()`.
        seed: seed of the visual-arith split.

    Returns:
        The parquet path.

    Raises:
        FileNotFoundError: no ``model`` given and the reference model is not shipped yet.
    """
    from rap_hf.demo.reference_model import reference_model_available, reference_model_path
    from rap_hf.demo.visual_arith import visual_arith
    from rap_hf.scoring.filter import RAPDataFilter

    if model is None:
        if not reference_model_available():
            raise FileNotFoundError(
                f"the reference model is not in {reference_model_path()}; train it first "
                "(trainers/train_reference_model.py) or pass model="
            )
        model = reference_model_path()
    config = config or explorer_scoring_config()
    out = Path(out_dir) if out_dir is not None else explorer_assets_dir()
    out.mkdir(parents=True, exist_ok=True)
    dataset = visual_arith("test", num_rows, seed=seed).remove_columns(["reference_completion"])
    start = time.perf_counter()
    scored = RAPDataFilter(str(model), config=config).score(dataset, desc="explorer assets")
    seconds = time.perf_counter() - start
    path = out / ASSET_FILENAME
    _embed_external_files(scored).to_parquet(str(path))
    metadata = {
        "model": Path(model).name if Path(str(model)).exists() else str(model),
        "dataset": "builtin:visual-arith",
        "split": "test",
        "rows": len(scored),
        "seed": seed,
        "scoring_seconds": round(seconds, 1),
        "rap_config": config.to_dict(),
    }
    (out / ASSET_METADATA).write_text(json.dumps(metadata, indent=2) + "\n")
    return path


def _embed_external_files(dataset: Dataset) -> Dataset:
    """Image bytes inside the table (images loaded from files are stored as paths until embedded)."""
    from datasets.table import embed_table_storage

    if not any(
        isinstance(f, datasets.Image) or isinstance(getattr(f, "feature", None), datasets.Image)
        for f in dataset.features.values()
    ):
        return dataset
    embedded = dataset.with_format("arrow").map(
        embed_table_storage, batched=True, batch_size=500, keep_in_memory=True, desc="embedding images"
    )
    return embedded.with_format(None)


def read_parquet_dataset(path: str | os.PathLike[str]) -> Dataset:
    """A parquet file as an in-memory `Dataset` with its `datasets` features (Image columns included).

    Read with pyarrow directly: `load_dataset("parquet")` would write a cache copy, and the app must not
    write outside its own temp folder.
    """
    table = pq.read_table(str(path))
    return Dataset(table)


def synthetic_scored_dataset(
    num_rows: int,
    *,
    seed: int = 0,
    num_rollouts: int = 5,
    with_images: bool = True,
    error_fraction: float = 0.02,
) -> Dataset:
    """A hand-made dataset with plausible `rap_*` columns, for UI tests and timing. NOT real scores.

    Rows imitate visual-arith's kinds: `visual` (needs the image: high acc_mm, low acc_text), `text_leak`
    (answered without the image), `hard` (rarely solved); ACE is log-normal. Completions agree with the
    accuracies (correct ones box the solution). A fraction of rows has no image and an `rap_error`.
    """
    rng = np.random.default_rng(seed)
    kinds = rng.choice(["visual", "text_leak", "hard"], size=num_rows, p=[0.5, 0.3, 0.2])
    p_mm = {"visual": 0.7, "text_leak": 0.9, "hard": 0.15}
    p_text = {"visual": 0.1, "text_leak": 0.85, "hard": 0.05}
    images = _synthetic_images(16, seed) if with_images else []
    columns: dict[str, list[Any]] = {
        name: []
        for name in (
            "prompt",
            "image",
            "solution",
            "kind",
            *NUMERIC_SCORE_COLUMNS,
            "rap_completions_mm",
            "rap_completions_text",
            "rap_error",
        )
    }
    for i, kind in enumerate(kinds):
        a, b = int(rng.integers(0, 10)), int(rng.integers(0, 10))
        solution = str(a + b)
        error = rng.random() < error_fraction
        columns["prompt"].append(
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "text": None},
                        {"type": "text", "text": f"Row {i}: what is the sum of the digits? \\boxed{{}}"},
                    ],
                }
            ]
        )
        columns["image"].append(None if error or not images else images[i % len(images)])
        columns["solution"].append(solution)
        columns["kind"].append(str(kind))
        if error:
            for name in NUMERIC_SCORE_COLUMNS:
                columns[name].append(math.nan)
            columns["rap_completions_mm"].append([])
            columns["rap_completions_text"].append([])
            columns["rap_error"].append("missing image")
            continue
        correct_mm = int(rng.binomial(num_rollouts, p_mm[str(kind)]))
        correct_text = int(rng.binomial(num_rollouts, p_text[str(kind)]))
        acc_mm, acc_text = correct_mm / num_rollouts, correct_text / num_rollouts
        columns["rap_acc_mm"].append(acc_mm)
        columns["rap_acc_text"].append(acc_text)
        columns["rap_cde"].append(acc_mm - acc_text)
        columns["rap_ace"].append(float(10 ** rng.normal(-1.8, 1.2)))
        columns["rap_ace_norm"].append(float(rng.normal(-0.4, 0.35)))
        columns["rap_difficulty"].append(1.0 - acc_mm)
        columns["rap_completions_mm"].append(_fake_completions(a, b, correct_mm, num_rollouts))
        columns["rap_completions_text"].append(_fake_completions(a, b, correct_text, num_rollouts))
        columns["rap_error"].append(None)
    features = datasets.Features(
        {
            "prompt": conversation_feature(),
            "image": datasets.Image(),
            "solution": datasets.Value("string"),
            "kind": datasets.Value("string"),
            **score_features(keep_completions=True),
        }
    )
    return Dataset.from_dict(columns, features=features)


def _synthetic_images(count: int, seed: int) -> list[dict[str, Any]]:
    """A few small PNGs (as encoded image dicts, so 10k rows cost no per-row encoding)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        pixels = (255 - rng.integers(0, 2, size=(14, 28)) * 200).astype(np.uint8)
        image = Image.fromarray(pixels).resize((112, 56), Image.Resampling.NEAREST).convert("RGB")
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        out.append({"bytes": buffer.getvalue(), "path": None})
    return out


def _fake_completions(a: int, b: int, correct: int, total: int) -> list[str]:
    right = f"The digits are {a} and {b}. {a} + {b} = {a + b}. \\boxed{{{a + b}}}"
    wrong = f"The digits are {a} and {b + 1}. {a} + {b + 1} = {a + b + 1}. \\boxed{{{a + b + 1}}}"
    return [right] * correct + [wrong] * (total - correct)


# -------------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class ColumnRoles:
    """Which input columns hold the question, the image(s) and the ground-truth answer (None: absent)."""

    prompt: str | None
    image: str | None
    answer: str | None

    @classmethod
    def resolve(cls, column_names: Sequence[str]) -> ColumnRoles:
        """TRL's VLM names first (`prompt`, `image`/`images`, `solution`), then common alternatives."""
        names = set(column_names)
        prompt = next((c for c in _PROMPT_COLUMNS if c in names), None)
        image = "image" if "image" in names else ("images" if "images" in names else None)
        answer = next((c for c in _ANSWER_COLUMNS if c in names), None)
        return cls(prompt, image, answer)


def missing_score_columns(column_names: Sequence[str]) -> tuple[list[str], list[str]]:
    """(required score columns that are missing, optional ones that are missing).

    The explorer needs `rap_acc_mm`, `rap_cde` and at least one ACE column; the rest only enrich the views.
    """
    names = set(column_names)
    required = [c for c in REQUIRED_SCORE_COLUMNS if c not in names]
    if not any(c in names for c in ACE_COLUMNS):
        required.append("rap_ace or rap_ace_norm")
    optional = [c for c in OPTIONAL_SCORE_COLUMNS if c not in names]
    if not any(c in names for c in ACE_COLUMNS):
        optional = [c for c in optional if c not in ACE_COLUMNS]
    return required, optional


@dataclass
class ExplorerData:
    """A scored dataset as the explorer shows it.

    `dataset` keeps every row and column (for the sample view, download and push); `scores` holds only the
    columns selection reads, so a re-selection never touches images or rollouts; `values` are the numeric
    score columns as float arrays (NaN for missing values), read once for sorting and explanations.
    """

    dataset: Dataset
    source: str
    scores: Dataset
    values: dict[str, np.ndarray]
    errors: np.ndarray
    roles: ColumnRoles
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.dataset)

    @classmethod
    def from_dataset(
        cls, dataset: Dataset | DatasetDict, source: str, notes: Sequence[str] = ()
    ) -> ExplorerData:
        """Check the score columns and read the arrays; `ExplorerDataError` names what is missing."""
        if isinstance(dataset, DatasetDict):
            raise ExplorerDataError(
                f"{source} has several splits ({', '.join(dataset)}); choose one (split field / --split)"
            )
        if not isinstance(dataset, Dataset):
            raise ExplorerDataError(f"expected a datasets.Dataset, got {type(dataset).__name__}")
        required, optional = missing_score_columns(dataset.column_names)
        if required:
            raise ExplorerDataError(
                f"{source} cannot be explored: missing score column(s) {', '.join(required)}. "
                f"Available columns: {', '.join(dataset.column_names) or '(none)'}. "
                "Score it with `rap-hf score` (RAPDataFilter.score) first."
            )
        score_columns = [c for c in (*NUMERIC_SCORE_COLUMNS, "rap_error") if c in dataset.column_names]
        scores = dataset.select_columns(score_columns)
        table = scores.with_format("arrow")[:]  # honours an indices mapping, unlike `dataset.data`
        values = {
            c: pc.cast(table.column(c), pa.float64()).to_numpy()
            for c in NUMERIC_SCORE_COLUMNS
            if c in score_columns
        }
        if "rap_error" in score_columns:
            errors = np.asarray(table.column("rap_error").to_pylist(), dtype=object)
        else:
            errors = np.full(len(dataset), None, dtype=object)
        all_notes = list(notes)
        if optional:
            all_notes.append(f"Not in this dataset (shown as n/a): {', '.join(optional)}.")
        roles = ColumnRoles.resolve(dataset.column_names)
        return cls(dataset, source, scores, values, errors, roles, optional, all_notes)

    def value(self, column: str, row: int) -> float:
        """A score of one row; NaN when the column is missing."""
        array = self.values.get(column)
        return float(array[row]) if array is not None else math.nan


def is_hub_repo_id(text: str) -> bool:
    """Whether `text` looks like a Hub dataset id (namespace/name) and is not a local path."""
    return bool(_REPO_ID_RE.match(text)) and ".." not in text and not Path(text).exists()


def load_explorer_data(
    source: str | None,
    *,
    split: str | None = "train",
    allow_local: bool = False,
) -> ExplorerData:
    """Load a scored dataset for the explorer.

    Args:
        source: a Hub dataset id pushed by `rap-hf push` (its `scores` config is read; a repo without one is
            read as-is), or, with `allow_local`, anything `rap_hf.dataset_loading.load_any_dataset` loads (a
            `save_to_disk` folder, a parquet/json/csv file, a folder of data files).
        split: the split to show.
        allow_local: read local paths. The app passes False for text typed into the page, so a visitor can
            only make the server read Hub datasets, never its files; the dataset given on the command line
            is loaded with True.

    Raises:
        ExplorerDataError: unreadable source, several splits, or missing score columns (named).
    """
    source = (source or "").strip()
    if not source:
        raise ExplorerDataError("no dataset given")
    try:
        if allow_local and not is_hub_repo_id(source):
            path = Path(source).expanduser()
            if path.is_file() and path.suffix.lower() == ".parquet":
                dataset = read_parquet_dataset(path)
            else:
                from rap_hf.dataset_loading import load_any_dataset

                dataset = load_any_dataset(source, split=split)
        elif is_hub_repo_id(source):
            dataset = _load_hub_scores(source, split)
        else:
            raise ExplorerDataError(
                f"{source!r} is not a Hub dataset id (namespace/name). Only Hub datasets can be loaded from "
                "the page; start the app with `rap-hf explore PATH` to explore a local dataset."
            )
    except ExplorerDataError:
        raise
    except Exception as exc:  # datasets/hub raise many types; the page shows the reason instead of a crash
        raise ExplorerDataError(f"cannot load {source!r}: {type(exc).__name__}: {exc}") from exc
    # A local dataset is named by its file or folder name: the page need not show the server's paths.
    label = f"{source} [{split}]" if is_hub_repo_id(source) else f"{Path(source).name} (local)"
    return ExplorerData.from_dataset(dataset, label)


def _load_hub_scores(repo_id: str, split: str | None) -> Dataset | DatasetDict:
    from rap_hf.hub import SCORES_CONFIG, load_scores

    try:
        return load_scores(repo_id, split=split)
    except ValueError as exc:
        # A scored dataset pushed another way has no `scores` config: read its default config instead.
        if SCORES_CONFIG not in str(exc):
            raise
        return datasets.load_dataset(repo_id, split=split)


def default_explorer_data(
    *,
    asset: str | os.PathLike[str] | None = None,
    fallback_model: str | os.PathLike[str] | None = None,
    work_dir: str | os.PathLike[str] | None = None,
) -> ExplorerData:
    """The data the app opens on: the shipped precomputed scores, else a small, clearly labelled fallback.

    Fallback (the assets are built once the reference model exists): score 16 visual-arith test rows with the
    reference model when it is installed; otherwise 8 `tiny-synthetic` rows with a random tiny model built
    offline (checks the pipeline; such a model answers nothing, so every row is `cde_rejected`).

    Args:
        asset: parquet to open; default `explorer_asset_path()`.
        fallback_model: model folder for the fallback scoring (default: reference model, else a tiny one).
        work_dir: where a tiny fallback model is saved (default: a new temp folder).
    """
    path = Path(asset) if asset is not None else explorer_asset_path()
    if path.exists():
        notes = []
        metadata = path.with_suffix(".json")
        if metadata.exists():  # written next to the parquet by build_explorer_assets
            meta = json.loads(metadata.read_text())
            config = meta.get("rap_config", {})
            notes.append(
                f"Scored by {meta.get('model')} with {config.get('num_rollouts')} rollouts per arm "
                f"(max {config.get('max_new_tokens')} new tokens, seed {config.get('seed')}) in "
                f"{meta.get('scoring_seconds')} s."
            )
        return ExplorerData.from_dataset(
            read_parquet_dataset(path), "visual-arith test (shipped scores)", notes
        )
    from rap_hf.demo.data import tiny_synthetic
    from rap_hf.demo.reference_model import reference_model_available, reference_model_path
    from rap_hf.demo.visual_arith import visual_arith
    from rap_hf.scoring.filter import RAPDataFilter

    missing = f"The precomputed scores ({path.name}) are not shipped in this install"
    if fallback_model is None and reference_model_available():
        model, dataset = (
            str(reference_model_path()),
            visual_arith("test", 16).remove_columns(["reference_completion"]),
        )
        config = explorer_scoring_config()
        note = f"{missing}: showing 16 visual-arith rows scored live with the reference model."
        label = "visual-arith test (reference model, scored at start-up)"
    else:
        if fallback_model is None:
            from rap_hf.demo.tiny_models import save_tiny_vlm

            folder = (
                Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="rap-explorer-"))
            )
            fallback_model = save_tiny_vlm(folder / "tiny-model", seed=0)
        model, dataset = str(fallback_model), tiny_synthetic(8)
        config = RAPConfig(num_rollouts=2, max_new_tokens=12, batch_size=8)
        note = (
            f"{missing}, and the reference model is not installed: showing 8 tiny-synthetic rows scored by a "
            "RANDOM tiny model (a pipeline check, not meaningful scores: every row lands in cde_rejected). "
            "Load a scored dataset above, or build the assets with rap_hf.explorer.build_explorer_assets()."
        )
        label = "tiny-synthetic (random tiny model: placeholder)"
    scored = RAPDataFilter(model, config=config).score(dataset, desc="explorer fallback")
    return ExplorerData.from_dataset(scored, label, notes=[note])


# --------------------------------------------------------------------------------------------- selection


def config_from_controls(
    lambda_c: float,
    ace_mode: str,
    lambda_a_log10: float,
    lambda_a_normalized: float,
    use_drm: bool = True,
    drm_limit: str = DRM_LIMITS[0],
    drm_k: float | None = None,
    drm_ratio: float | None = None,
    target_ratio: float | None = None,
) -> RAPConfig:
    """The selection `RAPConfig` for the app's controls.

    The paper-mode ACE threshold is set on a log10 slider (`lambda_a = 10 ** lambda_a_log10`) because the
    paper's score is a product over the response and spans many orders of magnitude; the normalized score is
    a mean log, set directly. `target_ratio` 0 or None means no budget (thresholds only).

    Raises:
        ExplorerDataError: a value `RAPConfig` rejects (the message names it).
    """
    if ace_mode not in ACE_MODES:
        raise ExplorerDataError(f"ACE mode must be one of {ACE_MODES}, got {ace_mode!r}")
    if drm_limit not in DRM_LIMITS:
        raise ExplorerDataError(f"DRM limit must be one of {DRM_LIMITS}, got {drm_limit!r}")
    lambda_a = 10.0 ** float(lambda_a_log10) if ace_mode == "paper" else float(lambda_a_normalized)
    try:
        return RAPConfig(
            lambda_c=float(lambda_c),
            lambda_a=lambda_a,
            ace_mode=ace_mode,
            use_drm=bool(use_drm),
            drm_k=int(drm_k) if drm_limit == "k" and drm_k is not None else None,
            drm_ratio=float(drm_ratio) if drm_limit == "ratio" and drm_ratio else None,
            target_ratio=float(target_ratio) if target_ratio else None,
        )
    except (TypeError, ValueError) as exc:
        raise ExplorerDataError(str(exc)) from exc


def selection_key(config: RAPConfig) -> tuple:
    """The selection fields of a config (what a selection result depends on), hashable."""
    return (
        config.lambda_c,
        config.lambda_a,
        config.ace_mode,
        config.use_drm,
        config.drm_k,
        config.drm_ratio,
        config.target_ratio,
        config.target_size,
    )


@dataclass
class Selection:
    """The result of one selection: the stage of every row, counts per stage, and the config used."""

    config: RAPConfig
    annotated: Dataset  # `ExplorerData.scores` + rap_stage/rap_selected (input of the plots)
    stages: np.ndarray  # object array of stage names, dataset order
    counts: dict[str, int]

    @property
    def selected(self) -> np.ndarray:
        return np.isin(self.stages, SELECTED_STAGES)

    @property
    def num_selected(self) -> int:
        return int(sum(self.counts[s] for s in SELECTED_STAGES))

    @property
    def num_scored(self) -> int:
        return int(len(self.stages) - self.counts[ERROR])

    @property
    def ratio(self) -> float:
        """Selected / scored (non-error) rows, as in `rap_hf.report.summary`."""
        return self.num_selected / self.num_scored if self.num_scored else 0.0


def run_selection(data: ExplorerData, config: RAPConfig) -> Selection:
    """`select_cognitive_samples` on the score columns (no model, no images touched)."""
    active = config.active_ace_column
    if active not in data.scores.column_names:
        other = "normalized" if config.ace_mode == "paper" else "paper"
        raise ExplorerDataError(
            f"ACE mode {config.ace_mode!r} needs the column {active}, which this dataset lacks; "
            f"switch ACE mode to {other!r}."
        )
    annotated, counts = select_cognitive_samples(data.scores, config, return_counts=True)
    column = annotated.select_columns([STAGE_COLUMN]).with_format("arrow")[:].column(STAGE_COLUMN)
    stages = np.asarray(column.to_pylist(), dtype=object)
    return Selection(config, annotated, stages, counts)


def selection_summary(selection: Selection) -> str:
    """Markdown: selected of scored rows and the ratio, then rows per stage (the headline the page shows)."""
    counts = selection.counts
    total = len(selection.stages)
    if total == 0:
        return "**The dataset has no rows.** Nothing to select."
    head = (
        f"**Selected {selection.num_selected} of {selection.num_scored} scored rows "
        f"({100 * selection.ratio:.1f}%)**"
    )
    if counts[ERROR]:
        head += f" · {counts[ERROR]} not scored (error)"
    selected = " · ".join(f"{s} {counts[s]}" for s in SELECTED_STAGES)
    rejected = " · ".join(f"{s} {counts[s]}" for s in STAGES if s not in SELECTED_STAGES and s != ERROR)
    cfg = selection.config
    budget = f", target_ratio {cfg.target_ratio:g}" if cfg.target_ratio else ""
    drm = (
        "off"
        if not cfg.use_drm
        else (
            f"k={cfg.drm_k}"
            if cfg.drm_k is not None
            else (f"ratio={cfg.drm_ratio:g}" if cfg.drm_ratio else "all trivial")
        )
    )
    return (
        f"{head}\n\nin: {selected}  \nout: {rejected}\n\n"
        f"<small>λc {cfg.lambda_c:g}, λa {cfg.lambda_a:.3g} on {cfg.active_ace_column}, DRM {drm}{budget}</small>"
    )


def overview_images(
    selection: Selection, work_dir: str | os.PathLike[str] | None = None
) -> list[Image.Image | None]:
    """[rows per stage, and histograms by stage of rap_cde, the active ACE column, rap_difficulty].

    Drawn by `rap_hf.report.plots` (the figures of the reports and the Hub card) into a temporary folder, then read
    back into memory and the folder removed: the app serves images it holds, never a path on disk. A column
    the dataset lacks (or with no finite value) gives None.
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


# ----------------------------------------------------------------------------------------- sample browser


def question_text(prompt: Any) -> str:
    """The question of a row: a plain string, or the text parts of the non-system messages of a chat."""
    if prompt is None:
        return ""
    if isinstance(prompt, str):
        return prompt
    texts: list[str] = []
    for message in prompt if isinstance(prompt, list) else []:
        if not isinstance(message, dict) or message.get("role") == "system":
            continue
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
            continue
        for part in content or []:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and part.get("type") == "text" and part.get("text"):
                texts.append(str(part["text"]))
    return "\n".join(texts)


def order_rows(rows: np.ndarray, values: np.ndarray | None, descending: bool = False) -> np.ndarray:
    """`rows` sorted by `values[rows]` (NaN last either way), ties by row; by row when `values` is None."""
    rows = np.asarray(rows, dtype=np.int64)
    if values is None:
        return rows[::-1] if descending else rows
    key = np.asarray(values, dtype=np.float64)[rows]
    # lexsort puts NaN last; negating keeps NaN (and so last) for the descending order.
    return rows[np.lexsort((rows, -key if descending else key))]


def filter_rows(selection: Selection, stage: str) -> np.ndarray:
    """Row positions in a stage (or all rows / the selected rows)."""
    if stage == ALL_STAGES:
        return np.arange(len(selection.stages))
    if stage == SELECTED_FILTER:
        return np.flatnonzero(selection.selected)
    if stage not in STAGES:
        raise ExplorerDataError(f"unknown stage filter {stage!r}; use one of {STAGE_FILTERS}")
    return np.flatnonzero(selection.stages == stage)


def sample_table(
    data: ExplorerData,
    selection: Selection,
    stage: str = ALL_STAGES,
    sort_by: str = "row",
    descending: bool = False,
    limit: int = TABLE_LIMIT,
) -> tuple[pd.DataFrame, str]:
    """The sample browser's table (at most `limit` rows) and a caption ("showing 200 of 1,234 rows ...").

    Questions are read only for the shown rows, so a 10k-row dataset costs no more than a small one.
    """
    if sort_by not in SORT_COLUMNS:
        raise ExplorerDataError(f"cannot sort by {sort_by!r}; use one of {SORT_COLUMNS}")
    rows = order_rows(
        filter_rows(selection, stage), data.values.get(sort_by) if sort_by != "row" else None, descending
    )
    shown = rows[:limit]
    frame: dict[str, list[Any]] = {
        "row": shown.tolist(),
        "stage": selection.stages[shown].tolist(),
        "selected": selection.selected[shown].tolist(),
    }
    for column in NUMERIC_SCORE_COLUMNS:
        if column in data.values:
            frame[column.removeprefix("rap_")] = [_round(v) for v in data.values[column][shown]]
    subset = data.dataset.select(shown.tolist()) if len(shown) else None
    if "kind" in data.dataset.column_names:
        frame["kind"] = subset["kind"] if subset is not None else []
    if data.roles.prompt is not None:
        prompts = subset[data.roles.prompt] if subset is not None else []
        frame["question"] = [_preview(question_text(p)) for p in prompts]
    caption = f"{len(rows)} row(s) in `{stage}`"
    if sort_by != "row":
        caption += f", sorted by {sort_by} {'descending' if descending else 'ascending'}"
    if len(rows) > limit:
        caption += f"; showing the first {limit} (filter or sort to see others, or type a row number)"
    return pd.DataFrame(frame), caption


def _round(value: float) -> float | None:
    if value is None or not np.isfinite(value):
        return None  # shown empty, not "nan"
    return float(f"{value:.4g}")


def _preview(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= QUESTION_PREVIEW_CHARS else text[: QUESTION_PREVIEW_CHARS - 1] + "…"


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and not math.isfinite(value):
        return "n/a" if math.isnan(value) else ("∞" if value > 0 else "-∞")
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def explain_stage(stage: str, scores: Mapping[str, Any], config: RAPConfig) -> str:
    """One line on why a row has its stage under `config` (scores: the row's `rap_*` values)."""
    cde, acc_mm, acc_text = scores.get("rap_cde"), scores.get("rap_acc_mm"), scores.get("rap_acc_text")
    ace_column = config.active_ace_column
    ace = scores.get(ace_column)
    ace_name = "ACE" if config.ace_mode == "paper" else "ACE (normalized)"
    lc, la = f"{config.lambda_c:g}", f"{config.lambda_a:.3g}"
    if stage == ERROR:
        error = scores.get("rap_error")
        return (
            f"Not scored: {error}." if error else "Not scored: the row has no CDE score (rap_cde is missing)."
        )
    if stage == CDE_REJECTED:
        return (
            f"Rejected by CDE: rap_cde = {_fmt(acc_mm, 2)} − {_fmt(acc_text, 2)} = {_fmt(cde, 2)} < λc = {lc}: "
            "the model does about as well without the image (a language-prior sample)."
        )
    if stage == ACE_REJECTED:
        return (
            f"Rejected by ACE: needs the image (rap_cde {_fmt(cde, 2)} ≥ λc {lc}) but {ace_name} = {_fmt(ace)} > "
            f"λa = {la}: its reasoning over-relies on a few tokens."
        )
    if stage == KEPT:
        ace_part = (
            f"no {ace_name} score, so ACE cannot reject it"
            if ace is None or (isinstance(ace, float) and math.isnan(ace))
            else f"{ace_name} {_fmt(ace)} ≤ λa {la}: attention not over-confident"
        )
        trivial = (
            " It is trivial (acc_mm = 1) but DRM had no candidate or cap left to replace it."
            if acc_mm == 1 and config.use_drm
            else ""
        )
        return f"Kept: needs the image (rap_cde {_fmt(cde, 2)} ≥ λc {lc}); {ace_part}.{trivial}"
    if stage == DRM_OUT:
        return (
            "Replaced by DRM: passed CDE and ACE but is trivial (acc_mm = 1: every multimodal rollout correct, "
            "zero GRPO advantage), so a harder rejected sample took its place."
        )
    if stage == DRM_IN:
        reason = "CDE" if cde is not None and cde < config.lambda_c else "ACE"
        return (
            f"Brought in by DRM: rejected by {reason}, but one of the hardest still-solvable samples "
            f"(acc_mm = {_fmt(acc_mm, 2)}); it replaces a trivial kept one."
        )
    if stage == BUDGET_IN:
        return "Added by the budget: not selected by the thresholds, but ranks within the target size (rap_cde desc, then ACE asc)."
    if stage == BUDGET_OUT:
        return "Cut by the budget: selected by the thresholds, but ranks past the target size (rap_cde desc, then ACE asc)."
    return f"Stage {stage!r}."


@dataclass
class RolloutMark:
    """One rollout with the answer extracted from it and whether it matches the ground truth."""

    text: str
    answer: str | None
    correct: bool


def mark_rollouts(completions: Sequence[str] | None, solution: Any) -> list[RolloutMark]:
    """Correct/incorrect marks by RAP's default reward (`accuracy_reward`: answer extraction + math-verify).

    A dataset scored with a custom `reward_fn` may disagree; the page says so.
    """
    from rap_hf.rewards import accuracy_reward, extract_answer

    completions = [str(c) for c in (completions or [])]
    if not completions:
        return []
    rewards = accuracy_reward(completions, [solution] * len(completions))
    return [
        RolloutMark(text, extract_answer(text), reward > 0)
        for text, reward in zip(completions, rewards, strict=True)
    ]


def ace_rollout_index(marks: Sequence[RolloutMark]) -> int | None:
    """The rollout ACE reads: the first correct multimodal one if any, else the first (METHOD.md §3)."""
    if not marks:
        return None
    return next((k for k, mark in enumerate(marks) if mark.correct), 0)


def rollouts_markdown(marks: Sequence[RolloutMark], title: str, ace_index: int | None = None) -> str:
    """A rollout list with ✓/✗ marks; rollout texts in code blocks so model output is never rendered."""
    if not marks:
        return f"**{title}:** none stored."
    correct = sum(m.correct for m in marks)
    lines = [f"**{title}: {correct}/{len(marks)} correct**"]
    for k, mark in enumerate(marks):
        # Text marks, not emoji: they render with any font (headless browsers often lack an emoji font).
        flag = "**✓ correct**" if mark.correct else "✗ wrong"
        ace = " · read by ACE" if k == ace_index else ""
        lines.append(f"{flag} · rollout {k + 1} (answer: `{_inline(mark.answer)}`){ace}")
        lines.append("```text\n" + mark.text.replace("```", "ʼʼʼ") + "\n```")
    return "\n\n".join(lines)


def _inline(text: str | None) -> str:
    return "none" if text is None else text.replace("`", "ʼ")[:60]


@dataclass
class SampleView:
    """Everything the sample view shows for one row."""

    row: int
    image: Image.Image | None
    header: str  # question, answer, stage and its explanation (markdown)
    scores: str  # score table (markdown)
    rollouts_mm: str
    rollouts_text: str


def sample_view(data: ExplorerData, selection: Selection, row: int | float | None) -> SampleView:
    """The sample view of dataset row `row` (0-based, dataset order). Rows without images get None."""
    if len(data) == 0:
        raise ExplorerDataError("the dataset has no rows")
    if row is None or not float(row).is_integer() or not 0 <= int(row) < len(data):
        raise ExplorerDataError(f"row must be an integer in [0, {len(data) - 1}], got {row!r}")
    row = int(row)
    record = data.dataset[row]
    image, image_note = first_image(record, data.roles)
    stage = str(selection.stages[row])
    scores = {c: data.value(c, row) for c in NUMERIC_SCORE_COLUMNS}
    scores["rap_error"] = data.errors[row]
    question = question_text(record.get(data.roles.prompt)) if data.roles.prompt else ""
    answer = record.get(data.roles.answer) if data.roles.answer else None
    kind = f" · kind: `{record['kind']}`" if "kind" in record else ""
    header = (
        f"### Row {row} · stage **{stage}**{' (selected)' if stage in SELECTED_STAGES else ''}{kind}\n\n"
        f"{explain_stage(stage, scores, selection.config)}\n\n"
        f"**Question:**\n\n```text\n{question or '(no question column)'}\n```\n\n"
        f"**Answer:** `{_inline(None if answer is None else str(answer))}`"
        + (f"\n\n_{image_note}_" if image_note else "")
    )
    score_lines = ["| score | value |", "|---|---|"]
    for column in NUMERIC_SCORE_COLUMNS:
        score_lines.append(f"| {column} | {_fmt(scores[column], 4)} |")
    if scores["rap_error"]:
        score_lines.append(f"| rap_error | {scores['rap_error']} |")
    marks_mm = mark_rollouts(record.get(COMPLETION_COLUMNS["mm"]), answer)
    marks_text = mark_rollouts(record.get(COMPLETION_COLUMNS["text"]), answer)
    note = (
        ""
        if (marks_mm or marks_text)
        else "\n\n_No rollouts stored (scored with keep_completions=False, or not scored)._"
    )
    return SampleView(
        row,
        image,
        header,
        "\n".join(score_lines)
        + "\n\n<small>Marks: RAP's default reward (answer extraction + math-verify); a custom reward_fn may differ.</small>",
        rollouts_markdown(marks_mm, "With the image", ace_rollout_index(marks_mm)) + note,
        rollouts_markdown(marks_text, "Without the image"),
    )


def row_images(record: Mapping[str, Any], roles: ColumnRoles) -> tuple[list[Image.Image], str]:
    """All images of a row as RGB (an `image` value or an `images` list), and a note when there are none or
    one cannot be decoded (then no image is returned: the scorer also refuses such a row)."""
    from rap_hf.scoring.images import decode_image

    if roles.image is None:
        return [], "This dataset has no image column."
    value = record.get(roles.image)
    values = [v for v in (value if isinstance(value, (list, tuple)) else [value]) if v is not None]
    if not values:
        return [], "This row has no image."
    try:
        return [decode_image(v).convert("RGB") for v in values], ""
    except Exception as exc:  # a corrupt image is shown as a note, like the scorer records it
        return [], f"The image cannot be decoded: {exc}"


def first_image(record: Mapping[str, Any], roles: ColumnRoles) -> tuple[Image.Image | None, str]:
    """The row's first image (what the sample view shows) and a note (none, several, undecodable)."""
    images, note = row_images(record, roles)
    if not images:
        return None, note
    return images[0], (f"First of {len(images)} images." if len(images) > 1 else "")


# ------------------------------------------------------------------------------------------------ export


def annotated_dataset(data: ExplorerData, selection: Selection) -> Dataset:
    """Every row of `data` with the current `rap_stage`/`rap_selected` (replacing stored ones)."""
    dataset = data.dataset
    stale = [c for c in (STAGE_COLUMN, SELECTED_COLUMN) if c in dataset.column_names]
    if stale:
        dataset = dataset.remove_columns(stale)
    dataset = dataset.add_column(STAGE_COLUMN, selection.stages.tolist())
    return dataset.add_column(SELECTED_COLUMN, selection.selected.tolist())


def write_selection_parquet(
    data: ExplorerData, selection: Selection, out_dir: str | os.PathLike[str]
) -> Path:
    """Write the selected rows (all columns, images embedded, with rap_stage/rap_selected) as one parquet."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    subset = annotated_dataset(data, selection).select(np.flatnonzero(selection.selected).tolist())
    path = out / f"rap_selection_{len(subset)}_of_{len(data)}.parquet"
    _embed_external_files(subset).to_parquet(str(path))
    return path


def push_selection(
    data: ExplorerData, selection: Selection, repo_id: str, *, allow_push: bool, token: str | None = None
) -> str:
    """Push the scores and the current selection with `rap_hf.hub.push_rap_dataset`; a message for the page.

    Needs `allow_push` (the app's --allow_push; off by default, because on a shared server every visitor
    would push with the server's token) and a Hub token from the server's environment (HF_TOKEN or
    `hf auth login`): the page never asks for one.
    """
    from huggingface_hub import get_token

    from rap_hf.hub import HubPushError, push_rap_dataset

    if not allow_push:
        return "Pushing is off: start the app with `rap-hf explore --allow_push` (and a token in HF_TOKEN)."
    repo_id = (repo_id or "").strip()
    if not _REPO_ID_RE.match(repo_id):
        return f"Repo id must be `namespace/name`, got `{_inline(repo_id)}`."
    if (token or get_token()) is None:
        return "No Hub token in the server's environment: set HF_TOKEN (a write token) and restart the app."
    try:
        result = push_rap_dataset(data.dataset, repo_id, config=selection.config, token=token)
    except (HubPushError, ValueError) as exc:
        return f"Push failed: {exc}"
    return f"Pushed {selection.num_selected} selected of {len(data)} rows to {result.url}"


# ------------------------------------------------------------------------------- model: attention, scoring


def model_unavailable_reason(model: str | os.PathLike[str] | None) -> str | None:
    """None when `model` ("reference", or a local model folder) can be used; else why not, for the page."""
    from rap_hf.demo.reference_model import reference_model_available, reference_model_path

    if model is None:
        return "No model was given to the app (start it with `--model reference` or `--model DIR`)."
    if str(model) == "reference":
        if reference_model_available():
            return None
        return (
            f"The reference model rap-tiny-vl is not installed (expected in {reference_model_path()}). It ships "
            "with the package once trained (trainers/train_reference_model.py); start the app with "
            "`rap-hf explore --model DIR` to use another local model."
        )
    path = Path(model)
    if not (path / "config.json").exists():
        return f"No model at {path} (a folder saved with save_pretrained, with config.json, is needed)."
    return None


@dataclass
class AttentionView:
    """Final-layer attention over one response (rows attend to columns j <= i), head-averaged."""

    attention: np.ndarray  # (L, L) float
    tokens: list[str]
    column: int | None  # the column that drives the ACE score (ace_argmax_column)
    column_scores: np.ndarray  # per-column log score: sum (paper) or mean (normalized) of log(sigma*A)
    ace: float
    ace_norm: float
    normalized: bool
    rollout: int | None = None  # which stored rollout (0-based), when it came from the dataset


def final_layer_attention(
    model: Any,
    processor: Any,
    prompt: Any,
    images: Sequence[Image.Image],
    response: str,
    *,
    sigma: float = 2.0,
    min_span: int = 1,
    normalized: bool = False,
    system_prompt: str | None = None,
) -> AttentionView:
    """Run one forward pass over prompt + `response` and capture the final decoder layer's attention.

    The same pass RAP's ACE makes (`RAPDataFilter._ace_scores`): the multimodal prompt, the response appended,
    `capture_final_layer_attention` (final layer only, response rows only). The response is re-tokenised from
    its stored text, so ACE recomputed here can differ slightly from the stored score when decoding is not
    exactly invertible.
    """
    import torch

    from rap_hf.estimators.ace import ATTENTION_FLOOR, ace_argmax_column, ace_normalized, ace_paper
    from rap_hf.scoring.attention import capture_final_layer_attention
    from rap_hf.scoring.rollouts import build_messages, render_prompt

    tokenizer = getattr(processor, "tokenizer", processor)
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    if not response_ids:
        raise ExplorerDataError("the response is empty: no attention to show")
    text = render_prompt(
        processor, build_messages(prompt, len(images), with_images=True, system_prompt=system_prompt)
    )
    with torch.inference_mode():
        inputs = processor(text=[text], images=list(images) or None, return_tensors="pt").to(model.device)
        prompt_length = inputs["input_ids"].shape[1]
        ids = torch.tensor([response_ids], dtype=inputs["input_ids"].dtype, device=model.device)
        for key, value in list(inputs.items()):
            if key == "input_ids":
                inputs[key] = torch.cat([value, ids], dim=1)
            elif isinstance(value, torch.Tensor) and value.ndim == 2 and value.shape[1] == prompt_length:
                # per-token side inputs (attention_mask, mm_token_type_ids): response tokens are attended text
                fill = 1 if key == "attention_mask" else 0
                inputs[key] = torch.cat([value, torch.full_like(ids, fill, dtype=value.dtype)], dim=1)
        # Logits of one position are enough (the pass is for attention); not every family accepts the flag.
        kwargs = (
            {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
        )
        with capture_final_layer_attention(model, num_rows=len(response_ids)) as recorder:
            model(**inputs, use_cache=False, **kwargs)
    if recorder.result is None:
        raise RuntimeError("the final attention layer was not called")
    attention = recorder.result.numpy().astype(np.float64)
    length = attention.shape[0]
    logs = np.tril(np.log(sigma * np.maximum(attention, ATTENTION_FLOOR)))
    spans = length - np.arange(length)
    column_scores = logs.sum(axis=0) / (spans if normalized else 1)
    return AttentionView(
        attention=attention,
        tokens=[str(t) for t in tokenizer.convert_ids_to_tokens(response_ids)],
        column=ace_argmax_column(attention, sigma, min_span, normalized=normalized),
        column_scores=np.where(spans >= min_span, column_scores, np.nan),
        ace=ace_paper(attention, sigma, min_span),
        ace_norm=ace_normalized(attention, sigma, min_span),
        normalized=normalized,
    )


def attention_heatmap(view: AttentionView, title: str = "") -> Image.Image:
    """Heatmap of the attention (log10, upper triangle blank) with the ACE-driving column outlined in red,
    and the per-column ACE log score underneath."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    length = view.attention.shape[0]
    with np.errstate(divide="ignore"):
        shown = np.log10(np.maximum(view.attention, 1e-12))
    shown = np.where(np.tril(np.ones((length, length), dtype=bool)), shown, np.nan)
    figure = Figure(figsize=(7.0, 7.4))
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(2, 2, height_ratios=(5, 1), width_ratios=(30, 1), hspace=0.6, wspace=0.05)
    axes = figure.add_subplot(grid[0, 0])
    picture = axes.imshow(shown, cmap="viridis", interpolation="nearest", aspect="auto")
    figure.colorbar(picture, cax=figure.add_subplot(grid[0, 1]), label="log10 attention")
    if view.column is not None:
        j = view.column
        axes.add_patch(Rectangle((j - 0.5, j - 0.5), 1, length - j, fill=False, edgecolor="red", linewidth=2))
    labels = [t.replace("Ġ", "").replace("▁", "") for t in view.tokens]
    if length <= 48:
        axes.set_xticks(range(length), labels=labels, rotation=90, fontsize=7)
        axes.set_yticks(range(length), labels=labels, fontsize=7)
    axes.set_xlabel("attended response token (column j)")
    axes.set_ylabel("response token (row i)")
    driver = f"column {view.column} ({labels[view.column]!r})" if view.column is not None else "no column"
    axes.set_title(
        (title + "\n" if title else "")
        + f"ACE {view.ace:.3g} · ACE_norm {view.ace_norm:.3g} · driven by {driver}",
        fontsize=9,
    )
    strip = figure.add_subplot(grid[1, 0], sharex=axes)
    colours = ["#d9480f" if j == view.column else "#9aa5b1" for j in range(length)]
    strip.bar(range(length), np.nan_to_num(view.column_scores, nan=0.0), color=colours, width=0.9)
    strip.tick_params(labelbottom=False)  # the tokens are already named under the heatmap
    strip.set_ylabel("mean log" if view.normalized else "sum log", fontsize=8)
    strip.set_title("per-column score: log(σ·A[i, j]) over rows i ≥ j (max = ACE)", fontsize=8)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


class ExplorerModel:
    """The scoring model, loaded on first use (attention view, scoring a new sample), then kept.

    One lock serialises model calls: Gradio runs events in threads, and one forward pass at a time is what
    a small Space can afford anyway.
    """

    def __init__(
        self, model: str | os.PathLike[str] | None = "reference", scoring: RAPConfig | None = None
    ) -> None:
        from rap_hf.demo.reference_model import reference_model_path

        self.reason = model_unavailable_reason(model)
        self.path = (
            None if self.reason else (str(reference_model_path()) if model == "reference" else str(model))
        )
        self.scoring = scoring or explorer_scoring_config()
        self._filter: Any = None
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        return self.reason is None

    def _loaded(self) -> Any:
        if self.reason is not None:
            raise ExplorerDataError(self.reason)
        if self._filter is None:
            from rap_hf.scoring.filter import RAPDataFilter

            self._filter = RAPDataFilter(self.path, config=self.scoring)
        return self._filter

    def attention_for_row(self, data: ExplorerData, row: int, config: RAPConfig) -> AttentionView:
        """Attention over the rollout of dataset row `row` that ACE reads (first correct, else first)."""
        if not 0 <= int(row) < len(data):
            raise ExplorerDataError(f"row must be in [0, {len(data) - 1}], got {row}")
        record = data.dataset[int(row)]
        images, note = row_images(record, data.roles)
        if not images:
            raise ExplorerDataError(
                f"No attention for row {row}: {note} ACE reads a rollout made with the image."
            )
        answer = record.get(data.roles.answer) if data.roles.answer else None
        marks = mark_rollouts(record.get(COMPLETION_COLUMNS["mm"]), answer)
        index = ace_rollout_index(marks)
        if index is None:
            raise ExplorerDataError(
                f"Row {row} has no stored multimodal rollouts (rap_completions_mm) to read."
            )
        prompt = record.get(data.roles.prompt) if data.roles.prompt else None
        view = self.attention(prompt, images, marks[index].text, config)
        view.rollout = index
        return view

    def attention(
        self, prompt: Any, images: Sequence[Image.Image], response: str, config: RAPConfig
    ) -> AttentionView:
        with self._lock:
            flt = self._loaded()
            from rap_hf.scoring.images import normalize_image

            images = [normalize_image(image, flt.max_image_pixels) for image in images]
            return final_layer_attention(
                flt.model,
                flt.processor,
                prompt,
                images,
                response,
                sigma=self.scoring.sigma,
                min_span=self.scoring.ace_min_span,
                normalized=config.ace_mode == "normalized",
                system_prompt=self.scoring.system_prompt,
            )

    def score_sample(self, image: Image.Image | None, question: str, answer: str) -> Dataset:
        """Score one new sample (M rollouts per arm, rewards, ACE): a one-row scored dataset."""
        question, answer = (question or "").strip(), (answer or "").strip()
        missing = [
            name
            for name, ok in (("an image", image is not None), ("a question", question), ("an answer", answer))
            if not ok
        ]
        if missing:
            raise ExplorerDataError("To score a sample, give " + ", ".join(missing) + ".")
        row = Dataset.from_dict(
            {
                "prompt": [
                    [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
                ],
                "image": [image.convert("RGB")],
                "solution": [answer],
            },
            features=datasets.Features(
                {
                    "prompt": conversation_feature(),
                    "image": datasets.Image(),
                    "solution": datasets.Value("string"),
                }
            ),
        )
        with self._lock:
            return self._loaded().score(row, desc="explorer: new sample")


def new_sample_report(scored: Dataset, config: RAPConfig) -> str:
    """Markdown for a freshly scored sample: scores, the CDE/ACE verdict under `config`, rollouts."""
    record = scored[0]
    if record.get("rap_error"):
        return f"**Not scored:** {record['rap_error']}"
    # The thresholds alone, by the library's own rule (DRM and a budget need the rest of a dataset).
    thresholds_only = dataclasses.replace(config, use_drm=False, target_ratio=None, target_size=None)
    stage = compute_stages(
        np.array([record["rap_acc_mm"]], dtype=float),
        np.array([record["rap_cde"]], dtype=float),
        np.array([record[config.active_ace_column]], dtype=float),
        np.array([False]),
        thresholds_only,
    )[0]
    verdict = f"would be **{stage}** by the thresholds (DRM and a budget depend on the rest of a dataset)"
    lines = [
        f"This sample {verdict} under λc {config.lambda_c:g}, λa {config.lambda_a:.3g} ({config.active_ace_column}).",
        "",
        "| score | value |",
        "|---|---|",
        *[f"| {c} | {_fmt(record.get(c), 4)} |" for c in NUMERIC_SCORE_COLUMNS],
    ]
    marks_mm = mark_rollouts(record.get("rap_completions_mm"), record["solution"])
    marks_text = mark_rollouts(record.get("rap_completions_text"), record["solution"])
    return (
        "\n".join(lines)
        + "\n\n"
        + rollouts_markdown(marks_mm, "With the image", ace_rollout_index(marks_mm))
        + "\n\n"
        + rollouts_markdown(marks_text, "Without the image")
    )


# ------------------------------------------------------------------------------------------------- store


class ExplorerStore:
    """The datasets an app has loaded (by key) and recent selections, shared by all sessions.

    Sessions keep only a key in their state: Gradio deep-copies state values, and a dataset with images
    should be loaded once, not copied per visitor. Selections are memoised per (dataset, selection fields),
    so the table, the sample view and a download after a slider move do not select again.
    """

    def __init__(self, max_datasets: int = 4, max_selections: int = 32) -> None:
        self._data: OrderedDict[str, ExplorerData] = OrderedDict()
        self._pinned: set[str] = set()
        self._selections: OrderedDict[tuple, Selection] = OrderedDict()
        self._max_datasets = max_datasets
        self._max_selections = max_selections
        self._lock = threading.Lock()

    def put(self, key: str, data: ExplorerData, *, pinned: bool = False) -> str:
        with self._lock:
            self._data[key] = data
            self._data.move_to_end(key)
            if pinned:
                self._pinned.add(key)
            while len(self._data) > self._max_datasets:
                oldest = next((k for k in self._data if k not in self._pinned), None)
                if oldest is None:
                    break
                del self._data[oldest]
                for selection_key_ in [k for k in self._selections if k[0] == oldest]:
                    del self._selections[selection_key_]
        return key

    def get(self, key: str | None) -> ExplorerData:
        with self._lock:
            if key is None or key not in self._data:
                raise ExplorerDataError("No dataset loaded (it may have been unloaded): load one again.")
            self._data.move_to_end(key)
            return self._data[key]

    def selection(self, key: str, config: RAPConfig) -> Selection:
        data = self.get(key)
        memo = (key, *selection_key(config))
        with self._lock:
            cached = self._selections.get(memo)
        if cached is not None:
            return cached
        result = run_selection(data, config)
        with self._lock:
            self._selections[memo] = result
            while len(self._selections) > self._max_selections:
                self._selections.popitem(last=False)
        return result
