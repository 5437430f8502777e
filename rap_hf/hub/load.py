"""Load the configs of a dataset pushed with `rap_hf.hub.push_rap_dataset`: one-line wrappers over
`datasets.load_dataset`."""

from __future__ import annotations

from typing import Any

import datasets
from datasets import Dataset, DatasetDict

from rap_hf.hub.layout import SCORES_CONFIG, SELECTED_CONFIG


def load_selected(
    repo_id: str, split: str | None = "train", revision: str | None = None, **load_kwargs: Any
) -> Dataset | DatasetDict:
    """Load the RAP-selected subset of a dataset pushed with `push_rap_dataset`.

    A thin wrapper over ``datasets.load_dataset(repo_id, "selected", split=split, revision=revision)``;
    ``split=None`` returns every split as a `DatasetDict`. Extra keyword arguments (``cache_dir``,
    ``streaming``, ``token``, ...) go to `datasets.load_dataset`. ``repo_id`` may also be a local folder laid
    out like the repo.
    """
    return datasets.load_dataset(repo_id, SELECTED_CONFIG, split=split, revision=revision, **load_kwargs)


def load_scores(
    repo_id: str, split: str | None = "train", revision: str | None = None, **load_kwargs: Any
) -> Dataset | DatasetDict:
    """Load every scored row (config ``scores``) of a dataset pushed with `push_rap_dataset`, e.g. to
    re-select it with other thresholds: ``select_cognitive_samples(load_scores(repo), RAPConfig(...))``."""
    return datasets.load_dataset(repo_id, SCORES_CONFIG, split=split, revision=revision, **load_kwargs)
