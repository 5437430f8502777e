"""Share RAP scores and selections on the Hugging Face Hub; load a pre-selected subset in one line.

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

Faults: any Hub or network failure ends in a `HubPushError` that names the cause and the step. Nothing local
is written or modified by a push, and every push writes the same paths (``selected/``, ``scores/``,
``README.md``, ``rap/``), so running the same push again completes a half-pushed repo without duplicating
files or configs. With ``HF_HUB_OFFLINE=1`` the push fails before touching the data.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import re
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import huggingface_hub
from datasets import Dataset, DatasetDict
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    DatasetCard,
    DatasetCardData,
    HfApi,
    HfFileSystem,
)
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

from rap_hf import __version__
from rap_hf.config import RAPConfig
from rap_hf.report.plots import plot_score_histograms, plot_stage_counts
from rap_hf.report.summary import SUMMARY_COLUMNS, build_report
from rap_hf.selection import (
    SELECTED_COLUMN,
    SELECTED_STAGES,
    STAGE_COLUMN,
    STAGES,
    select_cognitive_samples,
    stage_counts,
)

logger = logging.getLogger("rap_hf")

SCORES_CONFIG = "scores"
SELECTED_CONFIG = "selected"
COMPLETION_COLUMNS = ("rap_completions_mm", "rap_completions_text")
RAP_DIR = "rap"
REPORT_PATH = f"{RAP_DIR}/report.json"
FIGURES_DIR = f"{RAP_DIR}/figures"
CARD_TAGS = ("rap", "rap-hf", "data-selection", "multimodal-reasoning", "reinforcement-learning")
PAPER_TITLE = "Truth in the Few: High-Value Data Selection for Efficient Multi-Modal Reasoning"
PAPER_URL = "https://arxiv.org/abs/2506.04755"
_DEFAULT_MODEL_HINT = "Qwen/Qwen2.5-VL-7B-Instruct"
# Keys of the `rap-hf score` metadata (rap_scoring.json) that may hold the number of GPUs used.
_GPU_COUNT_KEYS = ("num_gpus", "gpu_count", "num_processes", "world_size")


class HubPushError(RuntimeError):
    """A push to the Hub failed; the message names the cause and the step, never the token.

    Attributes:
        cause: one of ``offline``, ``network``, ``unauthorized``, ``forbidden``, ``not_found``,
            ``rate_limited``, ``conflict``, ``server_error``, ``http_error``.
        status_code: the HTTP status when the Hub answered, else None.
        step: what the push was doing when it failed.
    """

    def __init__(self, message: str, *, cause: str, step: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.cause = cause
        self.step = step
        self.status_code = status_code


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


# ------------------------------------------------------------------------------------------------ loading


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


# ------------------------------------------------------------------------------------------------ pushing


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
    _fail_fast_if_offline(repo_id)
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
        with _explain_failures(repo_id, step, token):
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
        with _explain_failures(repo_id, "committing the dataset card, report and figures", token):
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


def _fail_fast_if_offline(repo_id: str) -> None:
    # Checked before any work: in offline mode huggingface_hub refuses every request, and finding out only
    # after embedding all images into Parquet shards wastes minutes on a large dataset.
    if huggingface_hub.constants.is_offline_mode():
        raise HubPushError(
            f"cannot push to {repo_id!r}: Hugging Face Hub offline mode is on (HF_HUB_OFFLINE=1), so no network "
            "call is allowed. Unset HF_HUB_OFFLINE (or set it to 0) and run the push again. Nothing was changed.",
            cause="offline",
            step="checking offline mode",
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
        CommitOperationAdd(
            path_in_repo=REPORT_PATH,
            path_or_fileobj=(json.dumps(_jsonable(report), indent=2, sort_keys=True) + "\n").encode(),
        ),
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


# ------------------------------------------------------------------------------------------------ faults


_STATUS_CAUSES = {401: "unauthorized", 403: "forbidden", 404: "not_found", 409: "conflict", 412: "conflict"}
_TOKEN_PATTERN = re.compile(r"hf_[A-Za-z0-9]{6,}")


@contextmanager
def _explain_failures(repo_id: str, step: str, token: str | None) -> Iterator[None]:
    """Turn Hub and network failures raised inside the block into a `HubPushError` naming cause and step."""
    try:
        yield
    except HubPushError:
        raise
    except Exception as exc:
        error = _explain(exc, repo_id, step, token)
        if error is None:
            raise
        raise error from None  # the chained traceback adds nothing the message lacks


def _root_failure(exc: BaseException) -> BaseException | None:
    """The Hub/network error behind `exc` (libraries wrap them, e.g. LFS upload in RuntimeError)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (OfflineModeIsEnabled, HfHubHTTPError)) or _is_network_error(current):
            return current
        current = current.__cause__ or current.__context__
    return None


def _network_error_types() -> tuple[type[BaseException], ...]:
    # huggingface_hub's HTTP client changed over releases (requests, httpx, httpx2): accept the transport
    # errors of whichever is installed.
    types: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module_name, names in (
        ("httpx2", ("TransportError",)),
        ("httpx", ("TransportError",)),
        ("requests", ("ConnectionError", "Timeout")),
    ):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        types += [getattr(module, name) for name in names if isinstance(getattr(module, name, None), type)]
    return tuple(types)


def _is_network_error(exc: BaseException) -> bool:
    return isinstance(exc, _network_error_types())


def _explain(exc: BaseException, repo_id: str, step: str, token: str | None) -> HubPushError | None:
    root = _root_failure(exc)
    if root is None:
        return None
    namespace = repo_id.split("/")[0]
    status: int | None = None
    if isinstance(root, OfflineModeIsEnabled):
        cause, reason = "offline", "Hugging Face Hub offline mode is on (HF_HUB_OFFLINE=1); unset it to push"
    elif isinstance(root, HfHubHTTPError):
        response = getattr(root, "response", None)
        status = getattr(response, "status_code", None)
        server = _server_message(root)
        if status == 401:
            cause = "unauthorized"
            if token is None and _ambient_token() is None:
                reason = "authentication required (HTTP 401): no Hugging Face token found; run `hf auth login` or set HF_TOKEN"
            else:
                reason = (
                    "authentication failed (HTTP 401): the Hub rejected the token (invalid, expired or revoked); "
                    "create one at https://huggingface.co/settings/tokens and log in again"
                )
        elif status == 403:
            cause = "forbidden"
            reason = (
                f"permission denied (HTTP 403): the token cannot write to {namespace!r}; use a token with write "
                "access to that user or organization (fine-grained tokens need write permission on it)"
            )
        elif status == 404:
            cause = "not_found"
            reason = (
                f"not found (HTTP 404): the namespace {namespace!r} (user or organization) or the repository "
                f"{repo_id!r} does not exist or is not visible to this token; check the spelling of the organization"
            )
        elif status == 429:
            cause = "rate_limited"
            retry_after = _retry_after(response)
            reason = "rate limited by the Hub (HTTP 429)" + (
                f"; retry after {retry_after} s" if retry_after is not None else "; wait a few minutes"
            )
        elif status in (409, 412):
            cause = "conflict"
            reason = f"conflict (HTTP {status}): another commit reached the repo during this push"
        elif status is not None and status >= 500:
            cause = "server_error"
            reason = f"Hub server error (HTTP {status}); try again later"
        else:
            cause = _STATUS_CAUSES.get(status or 0, "http_error")
            reason = f"the Hub answered HTTP {status}"
        if server:
            reason += f" [Hub: {server}]"
    else:
        cause = "network"
        text = str(root).strip().splitlines()[0] if str(root).strip() else ""
        reason = f"network error ({type(root).__name__}{': ' + text if text else ''}); check the connection or proxy"
    message = (
        f"push to {repo_id!r} failed while {step}: {reason}. Local data is unchanged. Fix the cause and run the "
        "same push again: it rewrites the same files and configs, so the repo ends up complete with nothing "
        "duplicated."
    )
    return HubPushError(_redact(message, token), cause=cause, step=step, status_code=status)


def _server_message(error: HfHubHTTPError) -> str:
    message = getattr(error, "server_message", None) or ""
    response = getattr(error, "response", None)
    if not message and response is not None:
        message = response.headers.get("X-Error-Message", "")
    return " ".join(str(message).split())[:200]


def _retry_after(response: Any) -> int | None:
    if response is None:
        return None
    value = response.headers.get("Retry-After")
    if value is not None and value.strip().isdigit():
        return int(value)
    # IETF RateLimit header, as the Hub sends it: 'limit=..., remaining=0, reset=SECONDS'
    match = re.search(r"\breset=(\d+)", response.headers.get("RateLimit", ""))
    return int(match.group(1)) if match else None


def _ambient_token() -> str | None:
    """The token huggingface_hub would use (env, login file), or None; never raises."""
    try:
        return huggingface_hub.get_token()
    except Exception:  # e.g. a failing OIDC exchange: then there is no usable token either
        return None


def _redact(text: str, token: str | None) -> str:
    """Remove any token from a message (belt and braces: Hub messages do not echo tokens)."""
    secrets = [s for s in (token, _ambient_token()) if s]
    for secret in secrets:
        text = text.replace(secret, "***")
    return _TOKEN_PATTERN.sub("hf_***", text)


# ------------------------------------------------------------------------------------------------ card


def build_hub_report(
    annotated: DatasetDict,
    config: RAPConfig | None,
    *,
    scoring: Mapping[str, Any] | None = None,
    drop_completions: bool = False,
    selected_splits: list[str] | None = None,
) -> dict[str, Any]:
    """The numbers behind the card (also pushed as ``rap/report.json``): `build_report` over all splits,
    rows/selected/counts per split, the splits of each config, the selection config (None when unknown) and
    the scoring metadata. ``selected_splits`` defaults to the splits with at least one selected row."""
    columns = [
        c for c in (*SUMMARY_COLUMNS, STAGE_COLUMN, SELECTED_COLUMN) if c in _common_columns(annotated)
    ]
    combined = datasets.concatenate_datasets([ds.select_columns(columns) for ds in annotated.values()])
    report = build_report(combined, config if config is not None else RAPConfig())
    report["config"] = config.to_dict() if config is not None else None
    report["splits"] = {}
    for name, ds in annotated.items():
        counts = stage_counts(ds)
        report["splits"][name] = {
            "rows": len(ds),
            "selected": sum(counts[stage] for stage in SELECTED_STAGES),
            "counts": counts,
        }
    if selected_splits is None:
        selected_splits = [name for name, split in report["splits"].items() if split["selected"]]
    report["configs"] = {
        SELECTED_CONFIG: {"splits": list(selected_splits), "drop_completions": drop_completions},
        SCORES_CONFIG: {"splits": list(annotated)},
    }
    report["scoring"] = dict(scoring) if scoring is not None else None
    return report


def _common_columns(annotated: DatasetDict) -> set[str]:
    names = [set(ds.column_names) for ds in annotated.values()]
    return set.intersection(*names) if names else set()


def build_dataset_card(
    annotated: DatasetDict,
    repo_id: str,
    *,
    config: RAPConfig | None,
    scoring: Mapping[str, Any] | None = None,
    report: dict[str, Any] | None = None,
    figure_paths: list[str] | None = None,
    existing_data: DatasetCardData | None = None,
    card_metadata: Mapping[str, Any] | None = None,
    drop_completions: bool = False,
    revision: str | None = None,
) -> DatasetCard:
    """Build the dataset card of a RAP dataset repo.

    The YAML keeps what `datasets` wrote (``configs``, ``dataset_info``), marks ``selected`` as the default
    config, adds the RAP tags and ``card_metadata``. The body documents RAP (with the paper), the scoring
    model and cost, the full `RAPConfig`, rows per stage, the selection ratio, the figures and the loading
    code for both configs and for `RAPGRPOTrainer`.
    """
    report = report if report is not None else build_hub_report(annotated, config, scoring=scoring)
    data = existing_data.to_dict() if existing_data is not None else {}
    tags = list(data.get("tags") or [])
    data["tags"] = tags + [tag for tag in CARD_TAGS if tag not in tags]
    data.setdefault("pretty_name", f"{repo_id.split('/')[-1]} (RAP selection)")
    configs = [dict(entry) for entry in data.get("configs") or []]
    for entry in configs:
        # `datasets` drops the flag when it re-pushes a config; setting it here keeps re-pushes idempotent.
        if entry.get("config_name") == SELECTED_CONFIG:
            entry["default"] = True
        else:
            entry.pop("default", None)
    if configs:
        data["configs"] = configs
    data.update(card_metadata or {})
    card_data = DatasetCardData(**data)
    body = _card_body(repo_id, report, scoring, figure_paths or [], drop_completions, revision)
    return DatasetCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return "inf" if math.isinf(value) else f"{value:.4g}"
    return str(value)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s ({seconds / 3600:.2f} h)"


def _card_body(
    repo_id: str,
    report: dict[str, Any],
    scoring: Mapping[str, Any] | None,
    figure_paths: list[str],
    drop_completions: bool,
    revision: str | None,
) -> str:
    splits = list(report["splits"])
    selected_splits = report["configs"][SELECTED_CONFIG]["splits"]
    first_split = selected_splits[0] if selected_splits else splits[0]
    left_out = [name for name in splits if name not in selected_splits]
    revision_arg = f', revision="{revision}"' if revision else ""
    model = (scoring or {}).get("model") or _DEFAULT_MODEL_HINT
    lines = [
        f"# {repo_id.split('/')[-1]}: RAP scores and selected subset",
        "",
        f"This dataset was scored and selected with rap-hf (RAP, *{PAPER_TITLE}*, "
        f"[arXiv 2506.04755]({PAPER_URL})). RAP keeps the **cognitive samples**: the rows whose answer needs the "
        "image (Causal Discrepancy Estimator, CDE), whose reasoning does not over-rely on a few tokens "
        "(Attention Confidence Estimator, ACE), with trivial rows replaced by harder ones (Difficulty-aware "
        "Replacement Module, DRM). Training GRPO on that subset is meant to match training on everything, at a "
        "fraction of the cost.",
        "",
        "## Configs",
        "",
        "| config | rows | content |",
        "|---|---|---|",
        f"| `{SELECTED_CONFIG}` (default) | {report['selected']} | the selected rows, ready for training"
        + (" (rollout texts dropped)" if drop_completions else "")
        + " |",
        f"| `{SCORES_CONFIG}` | {report['rows']} | every row with all `rap_*` scores, `{STAGE_COLUMN}` and "
        f"`{SELECTED_COLUMN}` |",
        "",
        f"Splits: {', '.join(f'`{name}`' for name in splits)}."
        + (
            f" No row of {', '.join(f'`{name}`' for name in left_out)} is selected, so `{SELECTED_CONFIG}` "
            "has no such split."
            if left_out
            else ""
        ),
        "",
        "## Load",
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        f'selected = load_dataset("{repo_id}", "{SELECTED_CONFIG}", split="{first_split}"{revision_arg})',
        f'scores = load_dataset("{repo_id}", "{SCORES_CONFIG}", split="{first_split}"{revision_arg})',
        "",
        "# or, with rap-hf installed",
        "from rap_hf.hub import load_selected",
        "",
        f'selected = load_selected("{repo_id}", split="{first_split}"{revision_arg})',
        "```",
        "",
        "Train on it with GRPO:",
        "",
        "```python",
        "from rap_hf import RAPGRPOConfig, RAPGRPOTrainer",
        "",
        "trainer = RAPGRPOTrainer(",
        f'    model="{model}",  # rap_hf\'s accuracy_reward is the default reward',
        '    args=RAPGRPOConfig(output_dir="rap-grpo", rap_train_on="as_is"),  # already the subset',
        "    train_dataset=selected,",
        ")",
        "trainer.train()",
        "```",
        "",
        "For online RAP (retiring solved samples and replacing them from the rejected rows while training), "
        "train on `scores` instead, with `RAPGRPOConfig(..., rap_online=True)`.",
        "",
        "Re-select with other thresholds, no model needed:",
        "",
        "```python",
        "from rap_hf import RAPConfig, select_cognitive_samples",
        "",
        "annotated = select_cognitive_samples(scores, RAPConfig(lambda_c=0.4, lambda_a=0.2))",
        f'subset = annotated.filter(lambda row: row["{SELECTED_COLUMN}"])',
        "```",
        "",
        "## Selection",
        "",
        f"- scored rows: {report['scored_rows']} of {report['rows']} (errors: {report['counts']['error']})",
        f"- selected: {report['selected']} ({100 * report['selection_ratio']:.2f}% of scored rows; "
        f"selection ratio {report['selection_ratio']:.4f})",
        "",
        "Rows per stage:",
        "",
        "| stage | " + " | ".join(splits) + " | total |",
        "|---|" + "---|" * (len(splits) + 1),
    ]
    for stage in STAGES:
        per_split = [str(report["splits"][name]["counts"][stage]) for name in splits]
        lines.append(f"| {stage} | " + " | ".join(per_split) + f" | {report['counts'][stage]} |")
    lines += [
        "",
        f"Selected rows are the stages {', '.join(f'`{s}`' for s in SELECTED_STAGES)}.",
        "",
        "## Score distributions",
        "",
    ]
    if figure_paths:
        lines += [f"![{Path(path).stem}]({path})" for path in figure_paths]
        lines.append("")
    lines += [
        "| column | rows | mean | p10 | p50 | p90 | mean (selected) |",
        "|---|---|---|---|---|---|---|",
    ]
    for column, summary in report["scores"].items():
        selected_summary = report["scores_selected"].get(column, {})
        cells = [summary["count"], summary["mean"], summary["p10"], summary["p50"], summary["p90"]]
        cells.append(selected_summary.get("mean"))
        lines.append(f"| {column} | " + " | ".join(_fmt(c) for c in cells) + " |")
    lines += ["", "## Scoring", ""]
    lines += _scoring_lines(scoring)
    lines += ["", "## Configuration", ""]
    if report["config"] is None:
        lines.append(
            "The selection configuration was not recorded (the dataset was pushed already annotated, without a "
            "`RAPConfig`)."
        )
    else:
        lines += [
            "The `RAPConfig` given to `select_cognitive_samples` to produce `rap_selected`. Selection reads only "
            "its selection fields (lambda_c, lambda_a, ace_mode, DRM and budget fields); the scoring fields in "
            "effect are those of the scoring run, below when recorded.",
            "",
            "```json",
            json.dumps(report["config"], indent=2, sort_keys=True),
            "```",
        ]
    scoring_config = (scoring or {}).get("rap_config")
    if scoring_config:
        lines += [
            "",
            "`RAPConfig` of the scoring run:",
            "",
            "```json",
            json.dumps(scoring_config, indent=2, sort_keys=True),
            "```",
        ]
    lines += [
        "",
        "## Columns",
        "",
        "| column | meaning |",
        "|---|---|",
        "| rap_acc_mm | mean reward of the rollouts with the image |",
        "| rap_acc_text | mean reward of the rollouts without the image |",
        "| rap_cde | rap_acc_mm - rap_acc_text (CDE) |",
        "| rap_ace | ACE, paper form (max column product of final-layer attention) |",
        "| rap_ace_norm | ACE, length-normalised (mean log) |",
        "| rap_difficulty | 1 - rap_acc_mm |",
        "| rap_completions_mm / rap_completions_text | the rollouts (auditable) |",
        "| rap_error | why the row could not be scored (null when scored) |",
        f"| {STAGE_COLUMN} | why the row is in or out: {', '.join(STAGES)} |",
        f"| {SELECTED_COLUMN} | whether the row is in `{SELECTED_CONFIG}` |",
        "",
        "## Citation",
        "",
        "```bibtex",
        "@misc{rap2025truthinthefew,",
        f"  title         = {{{PAPER_TITLE}}},",
        "  author        = {Li, Shenshen and others},",
        "  year          = {2025},",
        "  eprint        = {2506.04755},",
        "  archivePrefix = {arXiv},",
        f"  url           = {{{PAPER_URL}}}",
        "}",
        "```",
        "",
    ]
    return "\n".join(lines)


def _scoring_lines(scoring: Mapping[str, Any] | None) -> list[str]:
    if not scoring:
        return ["Scoring metadata was not recorded (model, revision, cost unknown)."]
    seconds = scoring.get("scoring_seconds")
    gpus = next((scoring[key] for key in _GPU_COUNT_KEYS if scoring.get(key) is not None), None)
    lines = [
        "| | |",
        "|---|---|",
        f"| scoring model | {_code(scoring.get('model'))} |",
        f"| model revision | {_code(scoring.get('revision'))} |",
        f"| source dataset | {_code(scoring.get('dataset'))}"
        + (f" (config `{scoring['dataset_config']}`)" if scoring.get("dataset_config") else "")
        + (f", split `{scoring['split']}`" if scoring.get("split") else "")
        + " |",
        f"| rows scored | {_fmt(scoring.get('rows'))} |",
        f"| rows with errors | {_fmt(scoring.get('errors'))} |",
        f"| scoring wall-clock | {_duration(float(seconds)) if seconds is not None else 'not recorded'} |",
        f"| GPUs | {gpus if gpus is not None else 'not recorded'} |",
    ]
    if seconds is not None and gpus is not None:
        lines.append(f"| GPU-hours | {float(seconds) * float(gpus) / 3600:.2f} |")
    if scoring.get("generated_tokens") is not None:
        lines.append(f"| generated tokens | {scoring['generated_tokens']} |")
    lines += [
        "",
        "Scoring cost counts against the training time RAP saves; compare it with the training time of the full "
        "dataset before concluding.",
    ]
    return lines


def _code(value: Any) -> str:
    return f"`{value}`" if value else "not recorded"


def _jsonable(value: Any) -> Any:
    """Strict JSON: NaN/inf become null (Python's json would write the invalid token NaN)."""
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
