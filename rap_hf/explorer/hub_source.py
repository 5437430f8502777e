"""Datasets a visitor names on the page: read from the Hub anonymously, checked before they are downloaded.

`fetch_visitor_dataset` is the only way text typed into the page reaches the Hub. It

1. asks the Hub about the repo with ``token=False`` (`HfApi.dataset_info`): the server's own token (a Space's
   ``HF_TOKEN`` secret) is never sent for a visitor's request, so private and gated datasets stay out of reach,
   and every failure reads the same whether the repo is private or does not exist;
2. picks the parquet files of one split of the ``scores`` config (or the default config) from the card's
   ``configs``, and refuses them when the Hub's file sizes add up to more than the cap;
3. reads each file's parquet footer through `HfFileSystem` (a ranged read of its last bytes) and refuses a
   file without the score columns, with a column type the explorer does not show (audio, video, ...), or
   with too many rows;
4. only then downloads those files (`hf_hub_download`, ``token=False``) into the visitor's own folder and
   decodes them to a memory-mapped Arrow file, counting decoded bytes, and refuses any image cell that holds
   a path instead of embedded bytes (a path would name a file on this server).

`DiskBudget` bounds the disk all visitors' datasets take together.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
import tempfile
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rap_hf.explorer.data import ExplorerData, ExplorerDataError, is_repo_id_syntax, missing_score_columns
from rap_hf.explorer.limits import ExplorerLimits

logger = logging.getLogger("rap_hf")

SCORES_CONFIG = "scores"  # the config `rap-hf push` writes every scored row to (rap_hf.hub.layout)
_SPLIT_RE = re.compile(r"^\w+(?:[.-]\w+)*$")
_MAX_FILES = 64
_BATCH_ROWS = 64  # decoded at a time, so one batch cannot blow past the decoded-size cap by much
# Where huggingface_hub's transport errors come from (connection refused, timeouts, TLS).
_NETWORK_MODULES = ("httpx", "httpx2", "httpcore", "h11", "ssl", "socket")


@dataclass
class Reservation:
    """Bytes of the visitor-data budget held by one loaded dataset; released when the dataset goes."""

    budget: DiskBudget
    nbytes: int = 0

    def release(self) -> None:
        self.budget._release(self)


class DiskBudget:
    """The disk all visitors' loaded datasets may take together (`ExplorerLimits.max_visitor_data_mb`).

    A load that would pass it is refused; nobody else's data is evicted to make room.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.used = 0
        self._lock = threading.Lock()

    def reserve(self, nbytes: int, reservation: Reservation | None = None) -> Reservation:
        """Hold `nbytes` more (for `reservation`, or a new one); `ExplorerDataError` when they do not fit."""
        reservation = reservation or Reservation(self)
        with self._lock:
            if self.used + nbytes > self.max_bytes:
                raise ExplorerDataError(
                    "The server holds as many visitors' datasets as it has room for; try again later."
                )
            self.used += nbytes
            reservation.nbytes += nbytes
        return reservation

    def _release(self, reservation: Reservation) -> None:
        with self._lock:
            self.used -= reservation.nbytes
            reservation.nbytes = 0


def not_public_message(repo_id: str) -> str:
    """The one message for a repo a visitor cannot load: private, gated, disabled or absent read the same."""
    return (
        f"cannot load {repo_id!r}: there is no public dataset with that id on the Hub (private and gated "
        "datasets cannot be loaded from this page)."
    )


def fetch_visitor_dataset(
    repo_id: str,
    split: str,
    *,
    limits: ExplorerLimits,
    folder: str | os.PathLike[str],
    budget: DiskBudget | None = None,
) -> ExplorerData:
    """Load split `split` of the Hub dataset `repo_id` for a visitor (see the module docstring for the checks).

    Args:
        repo_id: ``namespace/name``, as typed into the page.
        split: the split to load.
        limits: the caps (download size, rows, decoded size).
        folder: where this visitor's files go (a folder of the app's own temp folder); a subfolder is made
            and removed again when the returned data is garbage-collected.
        budget: the disk budget of all visitors (None: unbounded, for scripts and tests).

    Raises:
        ExplorerDataError: with a message for the page (never the server's token, paths or Hub internals).
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if not is_repo_id_syntax(repo_id) or ".." in repo_id:
        raise ExplorerDataError(f"{repo_id!r} is not a Hub dataset id (namespace/name).")
    if not _SPLIT_RE.match(split):
        raise ExplorerDataError(f"{split!r} is not a split name.")
    try:
        info = HfApi(token=False).dataset_info(repo_id, files_metadata=True, token=False)
        if info.private or info.gated or info.disabled or not info.sha:
            raise ExplorerDataError(not_public_message(repo_id))
        files = _split_files(repo_id, info, split)
        sizes = {s.rfilename: int(s.size or 0) for s in info.siblings or []}
        total = sum(sizes[f] for f in files)
        if total > limits.max_download_bytes:
            raise ExplorerDataError(
                f"{repo_id!r} split {split!r} is {total / 2**20:,.0f} MB; this page loads at most "
                f"{limits.max_download_mb:g} MB (`rap-hf explore --max_download_mb`)."
            )
        schema = _checked_schema(repo_id, info.sha, files, limits)
        reservation = budget.reserve(total) if budget is not None else None
        try:
            return _download_and_decode(repo_id, split, info.sha, files, schema, limits, folder, reservation)
        except BaseException:
            if reservation is not None:
                reservation.release()
            raise
    except ExplorerDataError:
        raise
    except (RepositoryNotFoundError, GatedRepoError, RevisionNotFoundError, EntryNotFoundError) as exc:
        logger.info("visitor load of %s refused: %s", repo_id, type(exc).__name__)
        raise ExplorerDataError(not_public_message(repo_id)) from None
    except (HfHubHTTPError, OfflineModeIsEnabled, OSError) as exc:
        logger.info("visitor load of %s failed: %s: %s", repo_id, type(exc).__name__, exc)
        if (
            isinstance(exc, HfHubHTTPError)
            and exc.response is not None
            and exc.response.status_code in (401, 403, 404)
        ):
            raise ExplorerDataError(not_public_message(repo_id)) from None
        raise ExplorerDataError(
            f"cannot load {repo_id!r}: the Hub cannot be reached from this server right now."
        ) from None
    except Exception as exc:  # a network error, or a malformed card or parquet: say what, not how
        logger.info("visitor load of %s failed: %s: %s", repo_id, type(exc).__name__, exc)
        if type(exc).__module__.split(".")[0] in _NETWORK_MODULES:
            raise ExplorerDataError(
                f"cannot load {repo_id!r}: the Hub cannot be reached from this server right now."
            ) from None
        raise ExplorerDataError(
            f"cannot load {repo_id!r}: its files cannot be read as a scored dataset."
        ) from None


def _split_files(repo_id: str, info: Any, split: str) -> list[str]:
    """The data files of `split` in the ``scores`` config (else the default or only config), from the card's
    ``configs`` (what `push_to_hub` and `rap-hf push` write); parquet only."""
    card = info.card_data.to_dict() if info.card_data is not None else {}
    configs = [c for c in card.get("configs") or [] if isinstance(c, dict)]
    by_name = {str(c.get("config_name", "default")): c for c in configs}
    config = (
        by_name.get(SCORES_CONFIG)
        or next((c for c in configs if c.get("default")), None)
        or by_name.get("default")
        or (configs[0] if len(configs) == 1 else None)
    )
    if config is None:
        raise ExplorerDataError(
            f"cannot load {repo_id!r}: the page loads datasets pushed with `rap-hf push` or `push_to_hub` "
            "(parquet files listed under `configs` in the dataset card), and this one has none."
        )
    patterns = _patterns(config.get("data_files"), split)
    if not patterns:
        raise ExplorerDataError(
            f"{repo_id!r} has no split {split!r} in config {config.get('config_name', 'default')!r}."
        )
    names = [s.rfilename for s in info.siblings or []]
    files = sorted({n for n in names for p in patterns if fnmatch.fnmatchcase(n, p)})
    if not files:
        raise ExplorerDataError(f"{repo_id!r} has no data files for split {split!r}.")
    if not all(f.endswith(".parquet") for f in files):
        raise ExplorerDataError(
            f"cannot load {repo_id!r}: only parquet data files can be loaded from this page."
        )
    if len(files) > _MAX_FILES:
        raise ExplorerDataError(
            f"cannot load {repo_id!r}: split {split!r} has {len(files)} files (at most {_MAX_FILES})."
        )
    return files


def _patterns(data_files: Any, split: str) -> list[str]:
    """The path patterns of `split` in a card's ``data_files`` (a string or list: one ``train`` split; or a
    list of ``{split, path}``)."""
    if isinstance(data_files, str):
        return [data_files] if split == "train" else []
    if isinstance(data_files, list) and all(isinstance(d, str) for d in data_files):
        return list(data_files) if split == "train" else []
    patterns: list[str] = []
    for entry in data_files or []:
        if isinstance(entry, dict) and entry.get("split") == split:
            path = entry.get("path")
            patterns += [path] if isinstance(path, str) else [p for p in path or [] if isinstance(p, str)]
    return patterns


def _checked_schema(repo_id: str, sha: str, files: list[str], limits: ExplorerLimits) -> pa.Schema:
    """Read the parquet footers (ranged reads, no download) and check columns, column types and rows."""
    from huggingface_hub import HfFileSystem

    fs = HfFileSystem(token=False, skip_instance_cache=True)
    schema, rows = None, 0
    for name in files:
        # Small blocks: reading the footer fetches the file's last bytes, not a default 5 MB block.
        with fs.open(f"datasets/{repo_id}@{sha}/{name}", "rb", block_size=2**16) as handle:
            metadata = pq.ParquetFile(handle).metadata
        rows += metadata.num_rows
        file_schema = metadata.schema.to_arrow_schema()
        if schema is None:
            schema = file_schema
        elif not file_schema.equals(schema, check_metadata=False):
            raise ExplorerDataError(f"cannot load {repo_id!r}: its data files do not share one schema.")
    assert schema is not None
    required, _ = missing_score_columns(schema.names)
    if required:
        raise ExplorerDataError(
            f"{repo_id!r} cannot be explored: missing score column(s) {', '.join(required)}. Score it with "
            "`rap-hf score` and push it with `rap-hf push`."
        )
    if rows > limits.max_rows:
        raise ExplorerDataError(
            f"{repo_id!r} has {rows:,} rows in this split; this page loads at most {limits.max_rows:,}."
        )
    _check_features(repo_id, datasets.Features.from_arrow_schema(schema))
    return schema


def image_columns(features: datasets.Features) -> list[str]:
    """Columns holding an `Image` or a list of them."""
    return [
        name
        for name, feature in features.items()
        if isinstance(feature, datasets.Image)
        or isinstance(getattr(feature, "feature", None), datasets.Image)
    ]


def _check_features(repo_id: str, features: datasets.Features) -> None:
    """Refuse a column type whose value `datasets` would read from a path or URL (audio, video, pdf, ...), or
    an image anywhere but a column of its own (or a list column): only those are checked for paths."""
    allowed = set(image_columns(features))

    def decodable(feature: Any) -> bool:
        if hasattr(feature, "decode_example"):
            return True
        if isinstance(feature, dict):
            return any(decodable(f) for f in feature.values())
        if isinstance(feature, (list, tuple)):
            return any(decodable(f) for f in feature)
        inner = getattr(feature, "feature", None)
        return inner is not None and decodable(inner)

    refused = [name for name, feature in features.items() if name not in allowed and decodable(feature)]
    if refused:
        raise ExplorerDataError(
            f"cannot load {repo_id!r}: column(s) {', '.join(refused)} hold audio, video or other files; the page "
            "shows scores, text and images only."
        )


def _download_and_decode(
    repo_id: str,
    split: str,
    sha: str,
    files: list[str],
    schema: pa.Schema,
    limits: ExplorerLimits,
    folder: str | os.PathLike[str],
    reservation: Reservation | None,
) -> ExplorerData:
    from huggingface_hub import hf_hub_download

    Path(folder).mkdir(parents=True, exist_ok=True)
    own = tempfile.TemporaryDirectory(prefix="visitor-data-", dir=folder)
    try:
        target = Path(own.name) / "data.arrow"
        features = datasets.Features.from_arrow_schema(schema)
        images = image_columns(features)
        decoded = 0
        with pa.OSFile(str(target), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
            for name in files:
                local = hf_hub_download(
                    repo_id,
                    name,
                    repo_type="dataset",
                    revision=sha,
                    token=False,
                    local_dir=Path(own.name) / "download",
                )
                for batch in pq.ParquetFile(local).iter_batches(batch_size=_BATCH_ROWS):
                    decoded += batch.nbytes
                    if decoded > limits.max_decoded_bytes:
                        raise ExplorerDataError(
                            f"{repo_id!r} is larger than {limits.max_decoded_mb:g} MB once decoded; this page "
                            "cannot hold it."
                        )
                    for column in images:
                        _refuse_image_paths(
                            repo_id, batch.column(batch.schema.get_field_index(column)), column
                        )
                    writer.write_batch(batch)
                Path(local).unlink()  # the decoded copy is what the page reads
        if reservation is not None:
            # Hold what the decoded file takes, not what was downloaded.
            reservation.budget.reserve(max(0, target.stat().st_size - reservation.nbytes), reservation)
        dataset = datasets.Dataset.from_file(str(target), info=datasets.DatasetInfo(features=features))
    except BaseException:
        own.cleanup()
        raise
    data = ExplorerData.from_dataset(dataset, f"{repo_id} [{split}]", trusted=False)
    # The folder (and the budget) go with the data: when the visitor's state is dropped, or evicted without a
    # callback, the files are removed.
    data.keepalive = own
    if reservation is not None:
        weakref.finalize(data, reservation.release)
    return data


def _refuse_image_paths(repo_id: str, column: pa.Array | pa.ChunkedArray, name: str) -> None:
    """Refuse image cells that hold a path but no bytes (the path would be opened on this server)."""
    values = column
    while pa.types.is_list(values.type) or pa.types.is_large_list(values.type):
        values = pc.list_flatten(values)
    if not pa.types.is_struct(values.type) or values.type.get_field_index("bytes") < 0:
        raise ExplorerDataError(
            f"cannot load {repo_id!r}: image column {name!r} does not hold embedded images."
        )
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    no_bytes = pc.is_null(values.field("bytes"))
    if values.type.get_field_index("path") >= 0:
        path_only = pc.and_(no_bytes, pc.is_valid(values.field("path")))
        path_only = pc.and_(path_only, pc.is_valid(values))
        if pc.any(path_only).as_py():
            raise ExplorerDataError(
                f"cannot load {repo_id!r}: column {name!r} has images given only as a file path. The page shows "
                "embedded images only (push with `rap-hf push`, which embeds them)."
            )
