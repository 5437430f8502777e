"""Load the configs of a dataset pushed with `rap_hf.hub.push_rap_dataset`: one-line wrappers over
`datasets.load_dataset`."""

from __future__ import annotations

from typing import Any

import datasets
from datasets import Dataset, DatasetDict

from rap_hf.hub.layout import SCORES_CONFIG, SELECTED_CONFIG


def _load(repo_id: str, config: str, split: str | None, revision: str | None, **load_kwargs: Any):
    loaded = datasets.load_dataset(repo_id, config, split=split, revision=revision, **load_kwargs)
    # One split comes back as that split: a repo pushed with only `test` loads without naming it.
    if split is None and isinstance(loaded, (DatasetDict, datasets.IterableDatasetDict)) and len(loaded) == 1:
        return next(iter(loaded.values()))
    return loaded


def load_selected(
    repo_id: str, split: str | None = None, revision: str | None = None, **load_kwargs: Any
) -> Dataset | DatasetDict:
    """Load the RAP-selected subset of a dataset pushed with `push_rap_dataset`.

    A thin wrapper over ``datasets.load_dataset(repo_id, "selected", split=split, revision=revision)``. With
    ``split=None`` (the default) a repo with one split returns that split as a `Dataset` and a repo with several
    returns a `DatasetDict`. Extra keyword arguments (``cache_dir``, ``streaming``, ``token``, ...) go to
    `datasets.load_dataset`. ``repo_id`` may also be a local folder laid out like the repo.
    """
    return _load(repo_id, SELECTED_CONFIG, split, revision, **load_kwargs)


def load_scores(
    repo_id: str, split: str | None = None, revision: str | None = None, **load_kwargs: Any
) -> Dataset | DatasetDict:
    """Load every scored row (config ``scores``) of a dataset pushed with `push_rap_dataset`, e.g. to
    re-select it with other thresholds: ``select_cognitive_samples(load_scores(repo), RAPSelectionConfig(...))``.
    ``split`` as in `load_selected`."""
    return _load(repo_id, SCORES_CONFIG, split, revision, **load_kwargs)
