"""Taking a selection out of the explorer: the dataset annotated with it, a parquet download, a Hub push.

`embed_external_files` puts image bytes inside a table before it is written, so a parquet the explorer writes
(a download, the shipped assets) is self-contained.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from datasets import Dataset

from rap_hf.explorer.data import ExplorerData, is_repo_id_syntax
from rap_hf.explorer.hub_source import image_columns
from rap_hf.explorer.render import inline_code
from rap_hf.explorer.reselection import Selection
from rap_hf.selection import SELECTED_COLUMN, STAGE_COLUMN


def embed_external_files(dataset: Dataset) -> Dataset:
    """Image bytes inside the table (images loaded from files are stored as paths until embedded)."""
    from datasets.table import embed_table_storage

    if not image_columns(dataset.features):
        return dataset
    embedded = dataset.with_format("arrow").map(
        embed_table_storage, batched=True, batch_size=500, keep_in_memory=True, desc="embedding images"
    )
    return embedded.with_format(None)


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
    # A visitor's dataset holds embedded images only (checked at load): nothing is read from a path. The
    # operator's own data may reference image files, which are embedded so that the download stands alone.
    (embed_external_files(subset) if data.trusted else subset).to_parquet(str(path))
    return path


def push_selection(
    data: ExplorerData,
    selection: Selection,
    repo_name: str,
    *,
    allow_push: bool,
    namespace: str | None = None,
    token: str | None = None,
) -> str:
    """Push the scores and the current selection with `rap_hf.hub.push_rap_dataset` to a new repo
    ``namespace/repo_name``; a message for the page.

    Needs `allow_push` (the app's --allow_push; off by default, because every visitor pushes with the server's
    token), a `namespace` the operator chose for visitors' pushes (--push_namespace), and a Hub token from the
    server's environment (HF_TOKEN or `hf auth login`): the page never asks for one. A visitor picks only the
    repo name (a ``namespace/`` prefix must be the configured one), and only a repo that does not exist yet:
    a push never replaces a repo's configs or card.
    """
    from huggingface_hub import HfApi, get_token

    from rap_hf.hub import HubPushError, push_rap_dataset

    if not allow_push:
        return "Pushing is off: start the app with `rap-hf explore --allow_push --push_namespace NS` (and a token in HF_TOKEN)."
    if not namespace:
        return "Pushing needs a namespace for visitors' repos: start the app with `--push_namespace NS`."
    name = (repo_name or "").strip()
    if "/" in name:
        prefix, _, name = name.partition("/")
        if prefix != namespace:
            return f"This page pushes only to `{inline_code(namespace)}/…`; give a repo name."
    repo_id = f"{namespace}/{name}"
    if not is_repo_id_syntax(repo_id) or ".." in name:
        return f"Repo name must be letters, digits, `-`, `_` or `.`, got `{inline_code(name)}`."
    token = token or get_token()
    if token is None:
        return "No Hub token in the server's environment: set HF_TOKEN (a write token) and restart the app."
    try:
        if HfApi(token=token).repo_exists(repo_id, repo_type="dataset"):
            return f"`{inline_code(repo_id)}` already exists: choose a new name (the page never overwrites a repo)."
        result = push_rap_dataset(data.dataset, repo_id, config=selection.config, token=token)
    except (HubPushError, ValueError) as exc:
        return f"Push failed: {exc}"
    except Exception as exc:  # network and Hub errors: a message, not a crash
        return f"Push failed: {type(exc).__name__}"
    return f"Pushed {selection.num_selected} selected of {len(data)} rows to {result.url}"
