"""Push a scored or selected dataset to the Hub as configs ``selected`` and ``scores``, in one commit.

`push_rap_dataset` writes one dataset repo with two configs:

- ``selected`` (the repo's default config): the cognitive samples, ready to train on;
- ``scores``: every row with all ``rap_*`` score columns plus ``rap_stage``/``rap_selected``, so anyone can
  re-select with other thresholds (`select_cognitive_samples`) without running the scoring model again.

Everything a push writes (Parquet shards of both configs, ``README.md``, ``rap/report.json`` and the figure) goes
into **one** `HfApi.create_commit` whose ``parent_commit`` is the head the push started from: the repo is never
seen half-pushed, a concurrent commit makes the push fail instead of being overwritten, and pushing the same
data again makes no commit at all (huggingface_hub drops unchanged files, then the empty commit). The shards use
`datasets`' own layout (`rap_hf.hub.shards`), so ``load_dataset(repo, "selected")`` and the dataset viewer read
the repo as if `DatasetDict.push_to_hub` had written it.

Before any upload the push checks, in order: the arguments and the selection (locally), the card metadata
against the Hub's rules (locally, `rap_hf.hub.metadata.check_card_metadata`), the card against the Hub's own
validator (`RepoCard.validate`), and that no file it is about to upload contains a local path
(`rap_hf.hub.provenance`).

Remote calls, all through ``huggingface_hub`` (the token comes from ``token=`` or huggingface_hub's usual
sources: ``HF_TOKEN``, ``hf auth login``):

1. ``HfApi.repo_info`` (the head to build on), ``HfFileSystem.read_text`` of ``README.md`` at that head (to
   keep hand edits and metadata), ``HfApi.list_repo_files`` (what to delete);
2. the source dataset's card (``HfFileSystem.read_text``) and ``HfApi.model_info`` for the scoring model's
   commit when the run did not record it; both optional: a failure only leaves the value unknown;
3. ``POST /api/validate-yaml`` (`RepoCard.validate`);
4. ``HfApi.create_repo`` (new repo) or ``HfApi.create_branch`` (new ``revision``);
5. ``HfApi.create_commit`` (preupload + LFS/Xet upload of changed files, then the commit).

Faults: any Hub or network failure ends in a `HubPushError` (`rap_hf.hub.errors`) that names the cause and the
step. Nothing local is written or modified (shards and figures go to a temporary folder). A push that fails
leaves the repo as it was; with ``HF_HUB_OFFLINE=1`` it fails before touching the data.
"""

from __future__ import annotations

import json
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
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError
from huggingface_hub.utils import HFValidationError, validate_repo_id

from rap_hf import __version__
from rap_hf.config import RAPSelectionConfig
from rap_hf.errors import RAPUserError
from rap_hf.estimators.cde import infer_rollout_grid
from rap_hf.hub.card import build_dataset_card, build_hub_report, generated_part, hub_report_json
from rap_hf.hub.errors import HubPushError, explain_failures, raise_if_offline
from rap_hf.hub.layout import OWNED_PREFIXES, REPORT_PATH, SCORES_CONFIG, SELECTED_CONFIG, SELECTION_FIGURE
from rap_hf.hub.metadata import SourceInfo, card_metadata, check_card_metadata, read_source_card
from rap_hf.hub.provenance import (
    describe_model,
    describe_source,
    find_local_paths,
    local_path_candidates,
    public_scoring,
    redact_local_paths,
)
from rap_hf.hub.shards import data_files_config, set_configs, write_config_shards
from rap_hf.report.plots import SELECTION_GRID_CAPTIONS, grid_of, plot_selection_grid
from rap_hf.selection import SELECTED_COLUMN, STAGE_COLUMN, select_cognitive_samples

logger = logging.getLogger("rap_hf")

COMPLETION_COLUMNS = ("rap_completions_mm", "rap_completions_text")
"""The rollout texts that ``drop_completions`` leaves out of ``selected``."""
_GRID_COLUMNS = ("rap_acc_mm", "rap_acc_text", "rap_cde")


@dataclass
class PushResult:
    """What `push_rap_dataset` pushed."""

    repo_id: str
    revision: str
    url: str
    commit_sha: str | None
    """The branch head after the push (the new commit, or the unchanged head when nothing changed)."""
    committed: bool = True
    """False when the repo already held exactly these files: an identical re-push makes no commit."""
    rows: dict[str, dict[str, int]] = field(default_factory=dict)
    """``config -> split -> rows`` (no ``selected`` entry for a scores-only push)."""
    counts: dict[str, int] = field(default_factory=dict)
    """Rows per stage, all splits together."""
    files: list[str] = field(default_factory=list)
    """Every path the push wrote (shards, README.md, report, figure), changed or not."""
    deleted: list[str] = field(default_factory=list)
    """Paths the push removed: files of an earlier push it no longer writes."""


def push_rap_dataset(
    scored_or_annotated: Dataset | DatasetDict,
    repo_id: str,
    *,
    config: RAPSelectionConfig | None = None,
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    split: str = "train",
    drop_completions: bool = False,
    scoring: Mapping[str, Any] | None = None,
    card_metadata: Mapping[str, Any] | None = None,
    max_shard_size: int | str | None = None,
    allow_empty_selection: bool = False,
) -> PushResult:
    """Push a scored (or already selected) dataset to the Hub as configs ``selected`` and ``scores``.

    Args:
        scored_or_annotated: output of `RAPDataFilter.score` or of `select_cognitive_samples`; a `Dataset`
            (pushed as split ``split``) or a `DatasetDict` (splits kept).
        repo_id: ``namespace/name`` of the dataset repo; created if missing.
        config: selection settings (a `RAPSelectionConfig`; a `RAPConfig` works too, only its selection
            fields are read). When given, the rows are (re-)selected with it, so the card's configuration is
            exactly what produced ``rap_selected``. When None, an annotated dataset keeps its annotation (the
            card then says the selection configuration was not recorded) and a scored one is selected with
            `RAPSelectionConfig()`.
        private: visibility of a repo created by this push (None: the namespace's default). Ignored if the
            repo exists.
        token: a Hub token; by default huggingface_hub's usual sources (``HF_TOKEN``, ``hf auth login``).
            It is never printed or logged.
        revision: branch to push to (created from ``main`` if missing); default ``main``.
        commit_message: the commit's title.
        split: split name of a single `Dataset`.
        drop_completions: drop the rollout texts (``rap_completions_mm``/``rap_completions_text``) from
            ``selected`` to keep the training config lean; ``scores`` always keeps them.
        scoring: scoring metadata as written by `rap-hf score` (``rap_scoring.json``): model, revision,
            model_commit, dataset, scoring_seconds, generated_tokens, rap_config, num_processes and, if known,
            num_gpus/device/hardware. Only what `rap_hf.hub.provenance.public_scoring` allows is published:
            a local model or dataset path is never written.
        card_metadata: YAML metadata for the card (``license``, ``language``, ``pretty_name``,
            ``task_categories``, ``tags``, ...); overrides the defaults and the repo's current card, except
            ``tags``, which are merged. Checked locally against the Hub's rules before any network call.
        max_shard_size: Parquet shard size (default "500MB", as `datasets`).
        allow_empty_selection: when no row is selected, push the ``scores`` config alone (removing a
            ``selected`` config of an earlier push; the card says so) instead of raising.

    Returns:
        A `PushResult`.

    Raises:
        HubPushError: the Hub or the network failed (offline mode, network error, 401, 403, 404, 429, a
            concurrent commit, card metadata the Hub rejects, ...). The repo is unchanged; run the push again.
        RAPUserError: (a `ValueError`) bad arguments, a dataset without score columns, no selected row
            (without ``allow_empty_selection``) or card metadata the Hub would reject; raised before any upload.
    """
    raise_if_offline(repo_id)
    _check_repo_id(repo_id)
    if card_metadata:
        _raise_on_metadata_problems(check_card_metadata(card_metadata), "card_metadata")
    annotated, selection_config = _annotate(_as_dataset_dict(scored_or_annotated, split), config)
    selected = _selected_subset(annotated, drop_completions, allow_empty_selection)
    rows = {SCORES_CONFIG: {name: len(ds) for name, ds in annotated.items()}}
    if selected:
        rows[SELECTED_CONFIG] = {name: len(ds) for name, ds in selected.items()}
    grid = _grid_info(annotated, scoring)
    api = HfApi(token=token, library_name="rap-hf", library_version=__version__)
    revision_name = revision or "main"

    with explain_failures(repo_id, "reading the repo", token):
        head, repo_exists = _head(api, repo_id, revision)
        existing_text = _read_readme(repo_id, head, token) if head and repo_exists else None
        remote_files = (
            api.list_repo_files(repo_id, repo_type="dataset", revision=head) if head and repo_exists else []
        )
    source = describe_source(scoring)
    if source is not None and source.hub_id:
        source = read_source_card(source.hub_id, token=token)
    model = describe_model(scoring, resolve=lambda hub_id, rev: _model_commit(api, hub_id, rev))
    public = public_scoring(scoring, model, source)
    report = build_hub_report(
        annotated,
        selection_config,
        scoring=public,
        drop_completions=drop_completions,
        selected_splits=list(selected),
        source=source,
        grid=grid,
    )
    # Warnings may quote the data (an unreadable image's file name): keep the message, not the path.
    report = redact_local_paths(report, _local_paths(scoring, scored_or_annotated))
    configs = _configs_block(annotated, selected)
    card_data = _card_data(repo_id, report, existing_text, card_metadata, source, configs)
    card_args = {
        "report": report,
        "config": selection_config,
        "model": model,
        "source": source,
        "figure": SELECTION_FIGURE,
        "figure_captions": SELECTION_GRID_CAPTIONS,
        "drop_completions": drop_completions,
        "revision": revision,
        "endpoint": api.endpoint,
        "existing_text": existing_text,
    }
    # The Hub's own check, before any upload (the local one ran in _card_data).
    provisional = build_dataset_card(annotated, repo_id, card_data=card_data, **card_args)
    _refuse_local_paths(_generated_texts(provisional, report), scoring, scored_or_annotated)
    _validate_with_hub(provisional, repo_id, token)

    logger.info(
        "pushing RAP dataset to %s@%s: %d selected of %d rows",
        repo_id,
        revision_name,
        sum(rows.get(SELECTED_CONFIG, {}).values()),
        sum(rows[SCORES_CONFIG].values()),
    )
    with explain_failures(repo_id, "creating the repo" if not repo_exists else "creating the branch", token):
        head = _ensure_target(api, repo_id, revision, private, head, repo_exists)

    with tempfile.TemporaryDirectory(prefix="rap-hub-") as tmp:
        folder = Path(tmp)
        shards = {
            name: write_config_shards(name, dict(splits), folder, max_shard_size=max_shard_size)
            for name, splits in ((SELECTED_CONFIG, selected), (SCORES_CONFIG, annotated))
            if splits
        }
        set_configs(
            card_data,
            configs,
            {name: written.info() for name, written in shards.items()},
            owned=(SELECTED_CONFIG, SCORES_CONFIG),
        )
        card = build_dataset_card(annotated, repo_id, card_data=card_data, **card_args)
        _raise_on_metadata_problems(check_card_metadata(card.data.to_dict()), "the card")
        figure = plot_selection_grid(
            annotated, folder / SELECTION_FIGURE, config=selection_config, grid=grid["num_rollouts"]
        )
        _refuse_local_paths(_generated_texts(card, report), scoring, scored_or_annotated)  # with dataset_info
        texts = {"README.md": str(card), REPORT_PATH: hub_report_json(report)}
        additions: dict[str, bytes | Path] = {path: text.encode("utf-8") for path, text in texts.items()}
        additions[SELECTION_FIGURE] = figure
        for written in shards.values():
            additions.update(written.files)
        operations: list[CommitOperationAdd | CommitOperationDelete] = [
            CommitOperationAdd(
                path_in_repo=path, path_or_fileobj=content if isinstance(content, bytes) else str(content)
            )
            for path, content in additions.items()
        ]
        # Files of an earlier push this one does not write (fewer shards, a removed `selected`, an old figure)
        # would contradict the card.
        deleted = [p for p in remote_files if p.startswith(OWNED_PREFIXES) and p not in additions]
        operations += [CommitOperationDelete(path_in_repo=path) for path in deleted]
        message = commit_message or (
            "Upload RAP scores and selection" if selected else "Upload RAP scores (nothing selected)"
        )
        with explain_failures(repo_id, f"committing {len(additions)} files", token):
            commit = api.create_commit(
                repo_id,
                operations=operations,
                commit_message=message,
                repo_type="dataset",
                revision=revision,
                parent_commit=head,
            )
    commit_sha = getattr(commit, "oid", None)
    committed = commit_sha != head
    url = f"{api.endpoint}/datasets/{repo_id}" + (f"/tree/{revision}" if revision else "")
    logger.info("pushed %s (%s)", url, "new commit" if committed else "unchanged: no commit")
    return PushResult(
        repo_id=repo_id,
        revision=revision_name,
        url=url,
        commit_sha=commit_sha,
        committed=committed,
        rows=rows,
        counts=dict(report["counts"]),
        files=sorted(additions),
        deleted=sorted(deleted),
    )


# ------------------------------------------------------------------------------------------------ data


def _check_repo_id(repo_id: str) -> None:
    message = f"repo_id must be 'namespace/name' (a user or organization, then a name), got {repo_id!r}"
    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise RAPUserError(message)
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise RAPUserError(f"{message}: {exc}") from None


def _as_dataset_dict(dataset: Dataset | DatasetDict, split: str) -> DatasetDict:
    if isinstance(dataset, DatasetDict):
        if not dataset:
            raise ValueError("the DatasetDict has no splits")
        empty = [name for name, ds in dataset.items() if len(ds) == 0]
        if len(empty) == len(dataset):
            raise ValueError("every split of the dataset is empty: nothing to push")
        if empty:
            # datasets cannot load a split whose Parquet files hold no rows ("corresponds to no data").
            logger.warning("split(s) %s have no rows and are not pushed", empty)
            dataset = DatasetDict({name: ds for name, ds in dataset.items() if len(ds)})
        return dataset
    if isinstance(dataset, Dataset):
        if len(dataset) == 0:
            raise ValueError("the dataset is empty: nothing to push")
        return DatasetDict({split: dataset})
    raise TypeError(f"expected a datasets.Dataset or DatasetDict, got {type(dataset)}")


def _annotate(
    dataset: DatasetDict, config: RAPSelectionConfig | None
) -> tuple[DatasetDict, RAPSelectionConfig | None]:
    """Return the annotated dataset and the selection config that produced it (None when unknown)."""
    annotated_already = all(
        STAGE_COLUMN in ds.column_names and SELECTED_COLUMN in ds.column_names for ds in dataset.values()
    )
    if config is None and annotated_already:
        return dataset, None
    selection = RAPSelectionConfig.of(config) if config is not None else RAPSelectionConfig()
    return select_cognitive_samples(dataset, selection), selection


def _selected_subset(annotated: DatasetDict, drop_completions: bool, allow_empty: bool) -> DatasetDict:
    """The selected rows per split; splits without any are left out (an empty DatasetDict: none at all)."""
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
        if not allow_empty:
            raise RAPUserError(
                "no row is selected, so there is nothing to push as config 'selected'. Loosen the thresholds "
                "(lambda_c, lambda_a), select a fixed budget with target_ratio / target_size, or push the scores "
                "alone with allow_empty_selection=True (rap-hf push --allow_empty_selection)."
            )
        logger.warning("no row is selected: pushing config %r only", SCORES_CONFIG)
        return DatasetDict()
    if empty:
        # datasets cannot load a split whose Parquet files hold no rows, so an empty split is left out of
        # `selected` (it stays in `scores`); the card says so.
        logger.warning(
            "no row selected in split(s) %s: they are left out of config %r", empty, SELECTED_CONFIG
        )
        subset = DatasetDict({name: ds for name, ds in subset.items() if len(ds)})
    if drop_completions:
        present = [c for c in COMPLETION_COLUMNS if c in next(iter(subset.values())).column_names]
        if present:
            subset = subset.remove_columns(present)
    return subset


def _grid_info(annotated: DatasetDict, scoring: Mapping[str, Any] | None) -> dict[str, Any]:
    """The rollout grid of the scores: M (recorded by the run, else inferred from the values) and whether
    every accuracy and CDE is a multiple of 1/M."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    parts = [
        pc.cast(ds.select_columns([c]).with_format("arrow")[:].column(c), pa.float64()).to_numpy()
        for ds in annotated.values()
        for c in _GRID_COLUMNS
        if c in ds.column_names
    ]
    values = np.concatenate(parts) if parts else np.empty(0)
    recorded = ((scoring or {}).get("rap_config") or {}).get("num_rollouts")
    if isinstance(recorded, int) and recorded > 0:
        return {
            "num_rollouts": recorded,
            "source": "recorded",
            "on_grid": grid_of(values, recorded) == recorded,
        }
    inferred = infer_rollout_grid(values)
    return {"num_rollouts": inferred, "source": "inferred from the scores", "on_grid": inferred is not None}


def _configs_block(annotated: DatasetDict, selected: DatasetDict) -> dict[str, dict[str, Any]]:
    """The card's ``configs`` entries: ``selected`` is the default; without it, ``scores`` is."""
    block = {SCORES_CONFIG: data_files_config(SCORES_CONFIG, list(annotated), default=not selected)}
    if selected:
        block[SELECTED_CONFIG] = data_files_config(SELECTED_CONFIG, list(selected), default=True)
    return block


def _card_data(
    repo_id: str,
    report: Mapping[str, Any],
    existing_text: str | None,
    explicit: Mapping[str, Any] | None,
    source: SourceInfo | None,
    configs: Mapping[str, dict[str, Any]],
) -> DatasetCardData:
    """The card's YAML: metadata (defaults < current card < ``explicit``), rap-hf's ``configs`` entries and
    the current card's other configs; checked locally against the Hub's rules."""
    existing = DatasetCard(existing_text, ignore_metadata_errors=True).data.to_dict() if existing_text else {}
    metadata = card_metadata(
        num_rows=report["rows"],
        existing=existing,
        explicit=explicit,
        source=source,
        pretty_name=f"{repo_id.split('/')[-1]} (RAP selection)",
    )
    card_data = DatasetCardData(**metadata)
    for key in ("configs", "dataset_info"):  # hand-added configs survive; set_configs rewrites rap-hf's own
        if existing.get(key) is not None:
            card_data[key] = existing[key]
    set_configs(card_data, configs, {}, owned=(SELECTED_CONFIG, SCORES_CONFIG))
    where = "card_metadata and the repo's current card" if existing_text else "card_metadata"
    _raise_on_metadata_problems(check_card_metadata(card_data.to_dict()), where)
    return card_data


def _raise_on_metadata_problems(problems: list[str], where: str) -> None:
    if problems:
        raise RAPUserError(
            f"card metadata the Hub would reject (in {where}); nothing was uploaded: " + "; ".join(problems)
        )


def _local_paths(scoring: Mapping[str, Any] | None, dataset: Any) -> list[str]:
    """The local paths this push knows about: model, dataset, the folder of the scored data, the home folder."""
    scoring = scoring or {}
    cache_files = getattr(dataset, "cache_files", None)
    if isinstance(cache_files, Mapping):  # a DatasetDict: split -> files
        cache_files = [f for files in cache_files.values() for f in files]
    folders = [str(Path(f["filename"]).parent) for f in cache_files or [] if "filename" in f]
    return local_path_candidates(scoring.get("model"), scoring.get("dataset"), *folders)


def _generated_texts(card: DatasetCard, report: Mapping[str, Any]) -> dict[str, str]:
    """What rap-hf writes itself: the report, the card's YAML and its generated part (text a maintainer
    wrote outside the markers is theirs, and not checked)."""
    return {
        "README.md": card.data.to_yaml() + "\n" + (generated_part(card.text) or card.text),
        REPORT_PATH: hub_report_json(report),
    }


def _refuse_local_paths(texts: Mapping[str, str], scoring: Mapping[str, Any] | None, dataset: Any) -> None:
    """Raise before uploading a text file that contains a local path the push knows about: a guard behind
    `public_scoring`'s allow-list and the redaction of the report."""
    leaks = find_local_paths(texts, _local_paths(scoring, dataset))
    if leaks:
        raise RuntimeError(
            "refusing to push: "
            + "; ".join(f"{file} would contain the local path {path!r}" for file, path in leaks)
            + " (a bug in rap-hf: please report it)"
        )


# ------------------------------------------------------------------------------------------------ Hub


def _head(api: HfApi, repo_id: str, revision: str | None) -> tuple[str | None, bool]:
    """(head commit to build on, whether the repo exists). A missing branch starts from ``main``'s head;
    a missing repo has no head."""
    try:
        return api.repo_info(repo_id, repo_type="dataset", revision=revision).sha, True
    except RevisionNotFoundError:
        return api.repo_info(repo_id, repo_type="dataset").sha, True
    except RepositoryNotFoundError:
        return None, False


def _ensure_target(
    api: HfApi, repo_id: str, revision: str | None, private: bool | None, head: str | None, exists: bool
) -> str | None:
    """Create the repo and/or the branch when missing; return the head commit the push builds on."""
    if not exists:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    if revision:
        api.create_branch(repo_id, repo_type="dataset", branch=revision, exist_ok=True)
    if not exists or revision:
        return api.repo_info(repo_id, repo_type="dataset", revision=revision).sha
    return head


def _read_readme(repo_id: str, head: str, token: str | None) -> str | None:
    # Read at the head commit the push builds on (no disk cache), so what we keep matches what we replace.
    try:
        return HfFileSystem(token=token).read_text(f"datasets/{repo_id}@{head}/README.md", encoding="utf-8")
    except FileNotFoundError:
        return None


def _model_commit(api: HfApi, hub_id: str, revision: str | None) -> str | None:
    """The commit ``revision`` of a Hub model resolves to now; None when it cannot be read (private, gone,
    a network error): the card then says the commit was not resolved."""
    try:
        return api.model_info(hub_id, revision=revision).sha
    except (HfHubHTTPError, OSError, ValueError) as exc:
        logger.info("could not resolve the commit of model %r (%s)", hub_id, type(exc).__name__)
        return None


def _validate_with_hub(card: DatasetCard, repo_id: str, token: str | None) -> None:
    """The Hub's own metadata check (`RepoCard.validate`), before any upload."""
    with explain_failures(repo_id, "validating the dataset card with the Hub", token):
        try:
            card.validate(repo_type="dataset")
        except ValueError as exc:
            raise HubPushError(
                f"push to {repo_id!r} stopped before any upload: the Hub rejected the card metadata: "
                f"{_validation_errors(str(exc))}. Fix it (card_metadata, or the repo's current card) and push "
                "again.",
                cause="invalid_metadata",
                step="validating the dataset card with the Hub",
                status_code=400,
            ) from None


def _validation_errors(text: str) -> str:
    """The messages of a ``/api/validate-yaml`` refusal (``{"errors": [{"message": ...}]}``), else its text."""
    try:
        payload = json.loads(text)
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        return " ".join(text.split())[:500]
    messages = [
        e.get("message", str(e)) if isinstance(e, dict) else str(e) for e in payload.get("errors") or []
    ]
    if not messages and payload.get("error"):
        messages = [str(payload["error"])]
    return "; ".join(messages)[:500] or " ".join(text.split())[:500]
