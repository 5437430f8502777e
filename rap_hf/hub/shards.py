"""Parquet shards and the card's ``configs``/``dataset_info`` blocks, laid out as `datasets` lays them out.

`DatasetDict.push_to_hub` commits once per config, and each of its commits rewrites the card's ``configs``
(dropping ``default: true`` of the other config), so a two-config push through it is two or more commits with
a broken repo in between. rap-hf therefore writes the shards itself and commits them together with the card,
report and figures in one `HfApi.create_commit`. It keeps `datasets`' layout, so that ``load_dataset(repo,
config)`` and the dataset viewer read the repo exactly as if `push_to_hub` had written it:

- shards ``<config>/<split>-<index:05d>-of-<count:05d>.parquet``, at most ``max_shard_size`` of Arrow data each,
  external image/audio files embedded (`datasets.table.embed_table_storage`, as `push_to_hub` does), written by
  `Dataset.to_parquet` (so with `datasets`' row-group size, page index and content-defined chunking);
- ``configs: [{config_name, data_files: [{split, path: <config>/<split>-*}], default}]`` and ``dataset_info``
  per config, written through `datasets`' own `MetadataConfigs` and `DatasetInfosDict`.

Written by hand (no public `datasets` API returns shards without committing them): the loop below that cuts a
split into shards by their embedded size.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from datasets import Dataset, DatasetInfo, SplitInfo
from datasets.features.features import require_decoding
from datasets.table import embed_table_storage
from huggingface_hub import DatasetCardData

DEFAULT_MAX_SHARD_SIZE = "500MB"
"""`datasets`' own default shard size for `push_to_hub`."""


@dataclass
class ConfigShards:
    """The shards of one config, written locally: what to upload and what the card says about them."""

    name: str
    features: Any
    files: dict[str, Path] = field(default_factory=dict)
    """path in repo -> local file."""
    splits: list[SplitInfo] = field(default_factory=list)
    download_size: int = 0

    def info(self) -> DatasetInfo:
        """`datasets`' description of the config (the card's ``dataset_info`` entry)."""
        info = DatasetInfo(config_name=self.name, features=self.features, download_size=0, dataset_size=0)
        from datasets.splits import SplitDict

        info.splits = SplitDict()
        for split in self.splits:
            info.splits.add(split)
        info.download_size = self.download_size
        info.dataset_size = sum(split.num_bytes for split in self.splits)
        info.size_in_bytes = info.download_size + info.dataset_size
        return info


def _chunk_rows(dataset: Dataset) -> int:
    """Rows embedded and measured at a time: the unit shards are cut in. `datasets`' row-group size when its
    config sets one for the features (image/audio/video datasets), else 100 rows, small enough to cut shards
    close to ``max_shard_size`` and cheap to concatenate."""
    from datasets.arrow_writer import get_writer_batch_size_from_features

    return get_writer_batch_size_from_features(dataset.features) or 100


def write_config_shards(
    config_name: str,
    splits: Mapping[str, Dataset],
    out_dir: Path,
    *,
    max_shard_size: int | str | None = None,
) -> ConfigShards:
    """Write every split of one config as Parquet shards under ``out_dir/<config_name>/``.

    A split is read in contiguous chunks of `datasets`' writer batch size; each chunk's external files are
    embedded in memory (nothing is written next to the user's data) and chunks are gathered until they hold
    ``max_shard_size`` bytes of Arrow data, so no more than about one shard is in memory at a time.

    Raises:
        ValueError: the splits do not share one set of features (one config is one schema).
    """
    from datasets.utils.py_utils import convert_file_size_to_int

    limit = convert_file_size_to_int(max_shard_size or DEFAULT_MAX_SHARD_SIZE)
    first = next(iter(splits.values()))
    features = first.features
    for split, dataset in splits.items():
        if dataset.features != features:
            raise ValueError(
                f"config {config_name!r}: split {split!r} has other features than the first split; "
                "one config needs one schema"
            )
    result = ConfigShards(name=config_name, features=features)
    folder = out_dir / config_name
    folder.mkdir(parents=True, exist_ok=True)
    for split, dataset in splits.items():
        batch = _chunk_rows(dataset)
        embed = any(require_decoding(f, ignore_decode_attribute=True) for f in features.values())
        shards: list[list[pa.Table]] = [[]]
        sizes = [0]
        for start in range(0, len(dataset), batch):
            table = dataset.select(range(start, min(start + batch, len(dataset)))).with_format("arrow")[:]
            if embed:
                table = embed_table_storage(table)
            if sizes[-1] and sizes[-1] + table.nbytes > limit:
                shards.append([])
                sizes.append(0)
            shards[-1].append(table)
            sizes[-1] += table.nbytes
        count = len(shards)
        for index, tables in enumerate(shards):
            repo_path = f"{config_name}/{split}-{index:05d}-of-{count:05d}.parquet"
            local = out_dir / repo_path
            shard = Dataset(pa.concat_tables(tables), info=DatasetInfo(features=features))
            shard.to_parquet(str(local))  # datasets picks the row-group size, as in push_to_hub
            result.files[repo_path] = local
            result.download_size += local.stat().st_size
        result.splits.append(SplitInfo(name=split, num_bytes=sum(sizes), num_examples=len(dataset)))
    return result


def data_files_config(config_name: str, splits: list[str], *, default: bool) -> dict[str, Any]:
    """The ``configs`` entry of a config: one ``<config>/<split>-*`` pattern per split, as `push_to_hub`
    writes it."""
    entry: dict[str, Any] = {
        "data_files": [{"split": split, "path": f"{config_name}/{split}-*"} for split in splits]
    }
    if default:
        entry["default"] = True
    return entry


def set_configs(
    card_data: DatasetCardData,
    configs: Mapping[str, dict[str, Any]],
    infos: Mapping[str, DatasetInfo],
    *,
    owned: tuple[str, ...],
) -> None:
    """Rewrite the card's ``configs`` and ``dataset_info`` for the configs in ``owned``: those in ``configs``
    are (re)written, owned ones absent from it are removed, others (added by hand) are kept without their
    ``default`` flag when an owned config is the default."""
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs

    current = MetadataConfigs.from_dataset_card_data(card_data)
    has_default = any(entry.get("default") for entry in configs.values())
    kept = {}
    for name, entry in current.items():
        if name in owned:
            continue
        entry = dict(entry)
        if has_default:
            entry.pop("default", None)
        kept[name] = entry
    card_data.pop("configs", None)
    MetadataConfigs({**kept, **configs}).to_dataset_card_data(card_data)

    existing_info = card_data.get("dataset_info")
    if isinstance(existing_info, dict):
        existing_info = [existing_info]
    foreign = [
        entry
        for entry in existing_info or []
        if isinstance(entry, Mapping) and entry.get("config_name", "default") not in owned
    ]
    card_data.pop("dataset_info", None)
    if foreign:
        card_data["dataset_info"] = foreign
    DatasetInfosDict(dict(infos)).to_dataset_card_data(card_data)
