"""A scored dataset as the explorer reads it: loading (Hub or local), the score arrays, and one row's parts.

`load_explorer_data` loads a source into an `ExplorerData` (the dataset plus the score columns selection and
sorting read, as arrays): the operator's dataset (command line) from anywhere, a visitor's only from the Hub,
anonymously and checked (`rap_hf.explorer.hub_source`). `ExplorerData.record` reads one row without decoding
anything; `row_images`, `first_image` and `question_text` read its image(s) (pixel-capped, and for a
visitor's data from embedded bytes only) and its question. `ExplorerDataError` is the error every explorer
module raises for a dataset or a control value it cannot use: its message is shown on the page as is.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datasets import Dataset, DatasetDict
from PIL import Image

from rap_hf.columns import NUMERIC_SCORE_COLUMNS, SCORE_COLUMNS

REQUIRED_SCORE_COLUMNS = ("rap_acc_mm", "rap_cde")
ACE_COLUMNS = ("rap_ace", "rap_ace_norm")
OPTIONAL_SCORE_COLUMNS = tuple(c for c in SCORE_COLUMNS if c not in REQUIRED_SCORE_COLUMNS)
COMPLETION_COLUMNS = {"mm": "rap_completions_mm", "text": "rap_completions_text"}
# Hub dataset ids: "namespace/name" (no path separators beyond the one, no "..").
_REPO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_PROMPT_COLUMNS = ("prompt", "question", "problem", "query")
# Images with more pixels are refused before decoding (a 13000x13000 PNG compresses to a few hundred KB and
# decodes to gigabytes). Far above any image a VLM is trained on.
MAX_SHOWN_PIXELS = 25_000_000
# The sample view shows at most this many rollouts per arm, each cut to this many characters (a visitor's
# dataset can hold anything).
MAX_SHOWN_ROLLOUTS = 32
MAX_SHOWN_CHARS = 4_000
_ANSWER_COLUMNS = ("solution", "answer", "answers")


class ExplorerDataError(ValueError):
    """A dataset the explorer cannot show, or a control value it cannot use; the message says why."""


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


@dataclass(eq=False)  # compared and hashed by identity: selections are memoised per loaded dataset
class ExplorerData:
    """A scored dataset as the explorer shows it.

    `dataset` keeps every row and column (for the sample view, download and push); `scores` holds only the
    columns selection reads, so a re-selection never touches images or rollouts; `values` are the numeric
    score columns as float arrays (NaN for missing values), read once for sorting and explanations.
    `trusted` is False for a dataset a visitor chose: its images are then read from embedded bytes only.
    `keepalive` holds what must live as long as the data (a visitor's folder, removed with it).
    """

    dataset: Dataset
    source: str
    scores: Dataset
    values: dict[str, np.ndarray]
    errors: np.ndarray
    roles: ColumnRoles
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    trusted: bool = True
    keepalive: Any = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.dataset)

    def record(self, row: int) -> dict[str, Any]:
        """Row `row` as plain values, nothing decoded: an image is its stored ``{"bytes", "path"}``. (Letting
        `datasets` decode would open image, audio or video paths, and images of any size.)"""
        return self.dataset.with_format("arrow")[int(row)].to_pylist()[0]

    def column(self, rows: Sequence[int], name: str) -> list[Any]:
        """Column `name` at `rows` as plain values, nothing decoded."""
        if not len(rows):
            return []
        return self.dataset.with_format("arrow").select_columns([name])[list(rows)].column(name).to_pylist()

    @classmethod
    def from_dataset(
        cls,
        dataset: Dataset | DatasetDict,
        source: str,
        notes: Sequence[str] = (),
        *,
        trusted: bool = True,
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
        return cls(dataset, source, scores, values, errors, roles, optional, all_notes, trusted)

    def value(self, column: str, row: int) -> float:
        """A score of one row; NaN when the column is missing."""
        array = self.values.get(column)
        return float(array[row]) if array is not None else math.nan


# ------------------------------------------------------------------------------------------------ loading


def is_repo_id_syntax(text: str) -> bool:
    """Whether `text` has the form of a Hub repo id (namespace/name); the filesystem is not consulted."""
    return bool(_REPO_ID_RE.match(text))


def is_hub_repo_id(text: str) -> bool:
    """Whether `text` looks like a Hub dataset id (namespace/name) and is not a local path."""
    return is_repo_id_syntax(text) and ".." not in text and not Path(text).exists()


def read_parquet_dataset(path: str | os.PathLike[str]) -> Dataset:
    """A parquet file as an in-memory `Dataset` with its `datasets` features (Image columns included).

    Read with pyarrow directly: `load_dataset("parquet")` would write a cache copy, and the app must not
    write outside its own temp folder.
    """
    table = pq.read_table(str(path))
    return Dataset(table)


def load_explorer_data(
    source: str | None,
    *,
    split: str | None = "train",
    allow_local: bool = False,
    limits: Any = None,
    folder: str | os.PathLike[str] | None = None,
    budget: Any = None,
) -> ExplorerData:
    """Load a scored dataset for the explorer.

    Args:
        source: a Hub dataset id pushed by `rap-hf push` (its `scores` config is read; a repo without one is
            read by its default config), or, with `allow_local`, anything
            `rap_hf.dataset_loading.load_any_dataset` loads (a `save_to_disk` folder, a parquet/json/csv file,
            a folder of data files).
        split: the split to show.
        allow_local: the operator's dataset (the command line): local paths are read, and a Hub id is loaded
            with the machine's credentials. False for text typed into the page: only the Hub, anonymously,
            size- and schema-checked before any download (`rap_hf.explorer.hub_source.fetch_visitor_dataset`).
        limits: the `ExplorerLimits` of a visitor load (default: the defaults).
        folder: where a visitor load writes (default: a new temp folder, removed with the returned data).
        budget: the `DiskBudget` shared by all visitors' loads (default: none).

    Raises:
        ExplorerDataError: unreadable source, several splits, or missing score columns (named).
    """
    source = (source or "").strip()
    if not source:
        raise ExplorerDataError("no dataset given")
    if not allow_local:
        if not is_hub_repo_id(source):
            raise ExplorerDataError(
                f"{source!r} is not a Hub dataset id (namespace/name). Only Hub datasets can be loaded from "
                "the page; start the app with `rap-hf explore PATH` to explore a local dataset."
            )
        from rap_hf.explorer.hub_source import fetch_visitor_dataset
        from rap_hf.explorer.limits import ExplorerLimits

        own = None
        if folder is None:
            own = tempfile.TemporaryDirectory(prefix="rap-explorer-visitor-")
            folder = own.name
        data = fetch_visitor_dataset(
            source, split or "train", limits=limits or ExplorerLimits(), folder=folder, budget=budget
        )
        if own is not None:
            data.keepalive = (data.keepalive, own)
        return data
    try:
        if not is_hub_repo_id(source):
            path = Path(source).expanduser()
            if path.is_file() and path.suffix.lower() == ".parquet":
                dataset = read_parquet_dataset(path)
            else:
                from rap_hf.dataset_loading import load_any_dataset

                dataset = load_any_dataset(source, split=split)
        else:
            dataset = _load_hub_scores(source, split)
    except ExplorerDataError:
        raise
    except Exception as exc:  # datasets/hub raise many types; the operator sees the reason instead of a crash
        raise ExplorerDataError(f"cannot load {source!r}: {type(exc).__name__}: {exc}") from exc
    # A local dataset is named by its file or folder name: the page need not show the server's paths.
    label = f"{source} [{split}]" if is_hub_repo_id(source) else f"{Path(source).name} (local)"
    return ExplorerData.from_dataset(dataset, label)


def _load_hub_scores(repo_id: str, split: str | None) -> Dataset | DatasetDict:
    """The operator's Hub dataset (given on the command line, so read with the machine's credentials)."""
    from rap_hf.hub import SCORES_CONFIG, load_scores

    try:
        return load_scores(repo_id, split=split)
    except ValueError as exc:
        # A scored dataset pushed another way has no `scores` config: read its default config instead.
        if SCORES_CONFIG not in str(exc):
            raise
        return datasets.load_dataset(repo_id, split=split)


# ------------------------------------------------------------------------------------------- one row's parts


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


def row_images(
    record: Mapping[str, Any],
    roles: ColumnRoles,
    *,
    allow_paths: bool = True,
    max_pixels: int | None = MAX_SHOWN_PIXELS,
) -> tuple[list[Image.Image], str]:
    """All images of a row (`ExplorerData.record`) as RGB (an `image` value or an `images` list), and a note
    when there are none or one cannot be used (then no image is returned: the scorer also refuses such a row).

    Args:
        allow_paths: False for a visitor's dataset: an image given as a path (or a bare string) is refused,
            never opened, because it names a file on this server.
        max_pixels: images with more pixels are refused before decoding (`decode_image` reads the size from
            the lazily opened image).
    """
    from rap_hf.scoring.images import decode_image, normalize_image

    if roles.image is None:
        return [], "This dataset has no image column."
    value = record.get(roles.image)
    values = [v for v in (value if isinstance(value, (list, tuple)) else [value]) if v is not None]
    if not values:
        return [], "This row has no image."
    try:
        decoded = [decode_image(v, max_pixels=max_pixels, allow_paths=allow_paths) for v in values]
        # normalize_image, not convert("RGB"): 16-bit and float images are scaled by their range, not clipped.
        return [normalize_image(image, None) for image in decoded], ""
    except Exception as exc:  # a corrupt or oversized image is shown as a note, like the scorer records it
        return [], f"The image cannot be shown: {exc}"


def first_image(
    record: Mapping[str, Any], roles: ColumnRoles, *, allow_paths: bool = True
) -> tuple[Image.Image | None, str]:
    """The row's first image (what the sample view shows) and a note (none, several, refused, undecodable)."""
    images, note = row_images(record, roles, allow_paths=allow_paths)
    if not images:
        return None, note
    return images[0], (f"First of {len(images)} images." if len(images) > 1 else "")
