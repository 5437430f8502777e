"""Load a dataset by name: `builtin:NAME`, a `save_to_disk` folder, a data file, a folder of data files, or a
Hub id. What `rap-hf score --dataset` accepts; a spec that cannot name a dataset raises `RAPUserError`."""

from __future__ import annotations

import os
from pathlib import Path

import datasets

from rap_hf.errors import RAPUserError

BUILTIN_PREFIX = "builtin:"

_DATA_FILE_BUILDERS = {
    ".parquet": "parquet",
    ".json": "json",
    ".jsonl": "json",
    ".csv": "csv",
    ".arrow": "arrow",
}


def load_any_dataset(
    spec: str, *, config_name: str | None = None, split: str | None = "train"
) -> datasets.Dataset:
    """Load a dataset from `builtin:NAME`, a `save_to_disk` folder, data files, a folder of data files, or the Hub.

    Args:
        spec: what to load (see the module docstring).
        config_name: the dataset configuration (Hub datasets and folders of data files).
        split: the split to return; a `DatasetDict` without it is refused.

    Raises:
        RAPUserError: an unknown data file type, a path that does not exist, or a missing split.
    """
    if spec.startswith(BUILTIN_PREFIX):
        from rap_hf.demo.data import load_builtin

        return load_builtin(spec[len(BUILTIN_PREFIX) :], split=split or "train")
    path = Path(spec).expanduser()
    if path.is_dir() and ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()):
        loaded = datasets.load_from_disk(str(path))
        return _pick_split(loaded, split, spec)
    if path.is_file():
        builder = _DATA_FILE_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise RAPUserError(
                f"cannot load {spec!r}: unknown data file type {path.suffix!r}; use {sorted(_DATA_FILE_BUILDERS)}"
            )
        return datasets.load_dataset(builder, data_files=str(path), split="train")
    if path.is_dir():
        return _pick_split(datasets.load_dataset(str(path), config_name), split, spec)
    if spec.startswith((".", "/", "~")) or os.sep in spec and spec.count("/") > 1:
        raise RAPUserError(f"dataset path {spec!r} does not exist")
    return datasets.load_dataset(spec, config_name, split=split)


def _pick_split(
    loaded: datasets.Dataset | datasets.DatasetDict, split: str | None, spec: str
) -> datasets.Dataset:
    if isinstance(loaded, datasets.DatasetDict):
        if split is None or split not in loaded:
            raise RAPUserError(f"{spec!r} has splits {list(loaded)}; choose one with --split")
        return loaded[split]
    return loaded
