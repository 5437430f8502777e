"""Push a scored or selected dataset to the Hub as configs ``selected`` and ``scores``, with its card.

`push_rap_dataset` writes one dataset repo with two configs, through `datasets`' own `push_to_hub`:

- ``selected`` (the repo's default config): the cognitive samples, ready to train on;
- ``scores``: every row with all ``rap_*`` score columns plus ``rap_stage``/``rap_selected``, so anyone can
  re-select with other thresholds (`select_cognitive_samples`) without running the scoring model again.

Splits are kept, images are embedded in the Parquet files, and a final commit adds the dataset card
(``README.md``: method, scoring model, full `RAPConfig`, rows per stage, selection ratio, scoring cost,
loading code), ``rap/report.json`` and PNG figures under ``rap/figures/``.

Remote calls, all through ``huggingface_hub`` (the token comes from ``token=`` or huggingface_hub's usual
sources: ``HF_TOKEN``, ``hf auth login``):

1. per config, `datasets.DatasetDict.push_to_hub`: ``HfApi.repo_info``, ``HfApi.create_repo`` (first push),
   ``HfApi.create_branch`` (``revision`` given), ``HfApi.preupload_lfs_files`` (+ the LFS/Xet upload),
   ``HfFileSystem`` listing and reading of ``README.md`` at the parent commit, ``HfApi.create_commit``;
2. card commit: ``HfApi.repo_info``, ``HfFileSystem.read_text`` (the README that `datasets` wrote, to keep its
   ``configs``/``dataset_info`` metadata), ``HfApi.list_repo_files``, ``HfApi.create_commit`` (with
   ``parent_commit``, so a concurrent push is detected instead of overwritten; it validates the README YAML
   through the Hub first).

Faults: any Hub or network failure ends in a `HubPushError` (`rap_hf.hub.errors`) that names the cause and
the step. Nothing local is written or modified by a push, and every push writes the same paths
(``selected/``, ``scores/``, ``README.md``, ``rap/``), so running the same push again completes a half-pushed
repo without duplicating files or configs. With ``HF_HUB_OFFLINE=1`` the push fails before touching the data.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    DatasetCard,
    DatasetCardData,
    HfApi,
    HfFileSystem,
)

from rap_hf import __version__
from rap_hf.config import RAPConfig
from rap_hf.hub.card import build_dataset_card, build_hub_report, hub_report_json
from rap_hf.hub.errors import explain_failures, raise_if_offline
from rap_hf.hub.layout import FIGURES_DIR, RAP_DIR, REPORT_PATH, SCORES_CONFIG, SELECTED_CONFIG
from rap_hf.report.plots import plot_score_histograms, plot_stage_counts
from rap_hf.selection import SELECTED_COLUMN, STAGE_COLUMN, select_cognitive_samples

logger = logging.getLogger("rap_hf")

COMPLETION_COLUMNS = ("rap_completions_mm", "rap_completions_text")
"""The rollout texts that ``drop_completions`` leaves out of ``selected``."""


@dataclass
class PushResult:
    """What `push_rap_dataset` pushed."""

    repo_id: str
    revision: str
    url: str
    commit_sha: str | None
    """Head commit after the card commit (None if the Hub reported none)."""
    rows: dict[str, dict[str, int]] = field(default_factory=dict)
    """``config -> split -> rows``."""
    counts: dict[str, int] = field(default_factory=dict)
    """Rows per stage, all splits together."""
    files: list[str] = field(default_factory=list)
    """Paths written by the card commit (README.md, report, figures)."""


def push_rap_dataset(
    scored_or_annotated: Dataset | DatasetDict,
    repo_id: str,
    *,
    config: RAPConfig | None = None,
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    split: str = "train",
    drop_completions: bool = False,
    scoring: Mapping[str, Any] | None = None,
    card_metadata: Mapping[str, Any] | None = None,
    max_shard_size: int | str | None = None,
) -> PushResult:
    """Push a scored (or already selected) dataset to the Hub as configs ``selected`` and ``scores``.

    Args:
        scored_or_annotated: output of `RAPDataFilter.score` or of `select_cognitive_samples`; a `Dataset`
            (pushed as split ``split``) or a `DatasetDict` (splits kept).
        repo_id: ``namespace/name`` of the dataset repo; created if missing.
        config: selection settings. When given, the rows are (re-)selected with it, so the card's
            configuration is exactly what produced ``rap_selected``. When None, an annotated dataset keeps its
            annotation (the card then says the selection configuration was not recorded) and a scored one is
            selected with `RAPConfig()`.
        private: visibility of a repo created by this push (None: the namespace's default). Ignored if the
            repo exists.
        token: a Hub token; by default huggingface_hub's usual sources (``HF_TOKEN``, ``hf auth login``).
            It is never printed or logged.
        revision: branch to push to (created from ``main`` if missing); default ``main``.
        commit_message: prefix of the commit messages.
        split: split name of a single `Dataset`.
        drop_completions: drop the rollout texts (``rap_completions_mm``/``rap_completions_text``) from
            ``selected`` to keep the training config lean; ``scores`` always keeps them.
        scoring: scoring metadata as written by `rap-hf score` (``rap_scoring.json``): model, revision,
            scoring_seconds, generated_tokens, rap_config and, if known, num_gpus. Shown in the card.
        card_metadata: extra YAML metadata for the card (e.g. ``license``, ``task_categories``,
            ``pretty_name``); merged over the defaults.
        max_shard_size: Parquet shard size passed to `push_to_hub` (default "500MB").

    Returns:
        A `PushResult`.

    Raises:
        HubPushError: the Hub or the network failed (offline mode, network error, 401, 403, 404, 429, ...).
            Nothing local was changed; running the same push again completes the repo.
        ValueError: bad arguments or a dataset without score columns (raised before any network call).
    """
    raise_if_offline(repo_id)
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(
            f"repo_id must be 'namespace/name' (a user or organization, then a name), got {repo_id!r}"
        )
    annotated, selection_config = _annotate(_as_dataset_dict(scored_or_annotated, split), config)
    selected = _selected_subset(annotated, drop_completions)
    rows = {
        SELECTED_CONFIG: {name: len(ds) for name, ds in selected.items()},
        SCORES_CONFIG: {name: len(ds) for name, ds in annotated.items()},
    }
    report = build_hub_report(
        annotated,
        selection_config,
        scoring=scoring,
        drop_completions=drop_completions,
        selected_splits=list(selected),
    )
    message = commit_message or "Upload RAP scores and selection"
    revision_name = revision or "main"
    logger.info(
        "pushing RAP dataset to %s@%s: %d selected of %d rows",
        repo_id,
        revision_name,
        sum(rows[SELECTED_CONFIG].values()),
        sum(rows[SCORES_CONFIG].values()),
    )
    api = HfApi(token=token, library_name="rap-hf", library_version=__version__)
    # `selected` first: if a later step fails, the subset people train on is already usable.
    for name, dataset_dict in ((SELECTED_CONFIG, selected), (SCORES_CONFIG, annotated)):
        step = f"pushing config {name!r} ({sum(rows[name].values())} rows)"
        with explain_failures(repo_id, step, token):
            dataset_dict.push_to_hub(
                repo_id,
                config_name=name,
                private=private,
                token=token,
                revision=revision,
                commit_message=f"{message}: config {name!r}",
                max_shard_size=max_shard_size,
                embed_external_files=True,
            )
    with tempfile.TemporaryDirectory(prefix="rap-hub-") as tmp:
        # Drawn only now, so that an auth or network failure at the first request is reported at once.
        figures = plot_score_histograms(annotated, Path(tmp), config=selection_config)
        figures.append(plot_stage_counts(annotated, Path(tmp)))
        with explain_failures(repo_id, "committing the dataset card, report and figures", token):
            commit_sha, files = _commit_card_and_figures(
                api,
                repo_id,
                revision=revision,
                token=token,
                annotated=annotated,
                report=report,
                selection_config=selection_config,
                scoring=scoring,
                figures=figures,
                card_metadata=card_metadata,
                drop_completions=drop_completions,
                commit_message=f"{message}: dataset card and figures",
            )
    url = f"{api.endpoint}/datasets/{repo_id}" + (f"/tree/{revision}" if revision else "")
    logger.info("pushed %s (configs %r and %r)", url, SELECTED_CONFIG, SCORES_CONFIG)
    return PushResult(
        repo_id=repo_id,
        revision=revision_name,
        url=url,
        commit_sha=commit_sha,
        rows=rows,
        counts=dict(report["counts"]),
        files=files,
    )


def _as_dataset_dict(dataset: Dataset | DatasetDict, split: str) -> DatasetDict:
    if isinstance(dataset, DatasetDict):
        if not dataset:
            raise ValueError("the DatasetDict has no splits")
        return dataset
    if isinstance(dataset, Dataset):
        return DatasetDict({split: dataset})
    raise TypeError(f"expected a datasets.Dataset or DatasetDict, got {type(dataset)}")


def _annotate(dataset: DatasetDict, config: RAPConfig | None) -> tuple[DatasetDict, RAPConfig | None]:
    """Return the annotated dataset and the selection config that produced it (None when unknown)."""
    annotated_already = all(
        STAGE_COLUMN in ds.column_names and SELECTED_COLUMN in ds.column_names for ds in dataset.values()
    )
    if config is None and annotated_already:
        return dataset, None
    config = config if config is not None else RAPConfig()
    return select_cognitive_samples(dataset, config), config


def _selected_subset(annotated: DatasetDict, drop_completions: bool) -> DatasetDict:
    subset = DatasetDict(
        {
            # keep_in_memory: the subset is only an indices mapping, and a dataset loaded with
            # `load_from_disk` would otherwise get cache files written into the user's scored folder.
            name: ds.filter(
                lambda chosen: bool(chosen),
                input_columns=SELECTED_COLUMN,
                keep_in_memory=True,
                desc=f"RAP subset [{name}]",
            )
            for name, ds in annotated.items()
        }
    )
    empty = [name for name, ds in subset.items() if len(ds) == 0]
    if len(empty) == len(subset):
        raise ValueError(
            "no row is selected, so there is nothing to push as config 'selected'. Loosen the thresholds "
            "(lambda_c, lambda_a) or select a fixed budget with target_ratio / target_size."
        )
    if empty:
        # datasets cannot load a split whose Parquet files hold no rows ("corresponds to no data"), so an empty
        # split is left out of `selected` (it stays in `scores`); the card says so.
        logger.warning(
            "no row selected in split(s) %s: they are left out of config %r", empty, SELECTED_CONFIG
        )
        subset = DatasetDict({name: ds for name, ds in subset.items() if len(ds)})
    if drop_completions:
        present = [c for c in COMPLETION_COLUMNS if c in next(iter(subset.values())).column_names]
        if present:
            subset = subset.remove_columns(present)
    return subset


def _commit_card_and_figures(
    api: HfApi,
    repo_id: str,
    *,
    revision: str | None,
    token: str | None,
    annotated: DatasetDict,
    report: dict[str, Any],
    selection_config: RAPConfig | None,
    scoring: Mapping[str, Any] | None,
    figures: list[Path],
    card_metadata: Mapping[str, Any] | None,
    drop_completions: bool,
    commit_message: str,
) -> tuple[str | None, list[str]]:
    head = api.repo_info(repo_id, repo_type="dataset", revision=revision).sha
    # Read at the head commit, like `datasets` does, so the listing and README match what we build on.
    filesystem = HfFileSystem(token=token)
    try:
        existing = DatasetCard(
            filesystem.read_text(f"datasets/{repo_id}@{head}/README.md", encoding="utf-8")
        ).data
    except FileNotFoundError:
        existing = DatasetCardData()
    figure_paths = [f"{FIGURES_DIR}/{path.name}" for path in figures]
    card = build_dataset_card(
        annotated,
        repo_id,
        config=selection_config,
        scoring=scoring,
        report=report,
        figure_paths=figure_paths,
        existing_data=existing,
        card_metadata=card_metadata,
        drop_completions=drop_completions,
        revision=revision,
    )
    operations: list[CommitOperationAdd | CommitOperationDelete] = [
        CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=str(card).encode("utf-8")),
        CommitOperationAdd(path_in_repo=REPORT_PATH, path_or_fileobj=hub_report_json(report).encode()),
    ]
    operations += [
        CommitOperationAdd(path_in_repo=repo_path, path_or_fileobj=path.read_bytes())
        for repo_path, path in zip(figure_paths, figures, strict=True)
    ]
    written = [op.path_in_repo for op in operations]
    # Figures from an earlier push that this one does not produce (e.g. ACE now disabled) would otherwise
    # linger and contradict the card.
    remote = api.list_repo_files(repo_id, repo_type="dataset", revision=head)
    operations += [
        CommitOperationDelete(path_in_repo=path)
        for path in remote
        if path.startswith(f"{RAP_DIR}/") and path not in written
    ]
    commit = api.create_commit(
        repo_id,
        operations=operations,
        commit_message=commit_message,
        repo_type="dataset",
        revision=revision,
        parent_commit=head,
    )
    return getattr(commit, "oid", None), written
