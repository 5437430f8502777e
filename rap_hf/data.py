"""Built-in data and dataset loading by name (local folder, data files, `builtin:NAME`, or a Hub id)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import datasets
from PIL import Image, ImageDraw

BUILTIN_PREFIX = "builtin:"


def conversation_feature() -> list:
    """Arrow type of a TRL conversational `prompt` column whose content parts are {"type", "text"} structs."""
    part = {"type": datasets.Value("string"), "text": datasets.Value("string")}
    return [{"role": datasets.Value("string"), "content": [part]}]


_DATA_FILE_BUILDERS = {
    ".parquet": "parquet",
    ".json": "json",
    ".jsonl": "json",
    ".csv": "csv",
    ".arrow": "arrow",
}

_COLOURS = {"red": (220, 40, 40), "blue": (40, 80, 220), "green": (40, 170, 60)}


def _dots_image(count: int, colour: str, rng: random.Random, size: int = 112) -> Image.Image:
    image = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    cells = rng.sample(range(16), count)  # a 4x4 grid keeps dots apart
    for cell in cells:
        x, y = (cell % 4) * size // 4 + 6, (cell // 4) * size // 4 + 6
        draw.ellipse([x, y, x + size // 4 - 12, y + size // 4 - 12], fill=_COLOURS[colour])
    return image


def tiny_synthetic(num_rows: int = 32, seed: int = 0) -> datasets.Dataset:
    """A small synthetic VQA set in TRL's VLM format (`prompt`, `image`, `solution`) for demos and smoke tests.

    Half the rows ask to count the dots in the image (the image is needed), half ask an arithmetic question
    whose answer is in the text (the image is not needed). The ground-truth column `kind` says which.
    """
    rng = random.Random(seed)
    rows = {"prompt": [], "image": [], "solution": [], "kind": []}
    for i in range(num_rows):
        count = rng.randint(1, 6)
        colour = rng.choice(sorted(_COLOURS))
        if i % 2 == 0:
            question = f"How many {colour} dots are in the image? Put the final answer in \\boxed{{}}."
            answer, kind = str(count), "visual"
        else:
            a, b = rng.randint(1, 9), rng.randint(1, 9)
            question = f"What is {a} + {b}? Put the final answer in \\boxed{{}}."
            answer, kind = str(a + b), "text_leak"
        rows["prompt"].append(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        )
        rows["image"].append(_dots_image(count, colour, rng))
        rows["solution"].append(answer)
        rows["kind"].append(kind)
    return datasets.Dataset.from_dict(rows)


def _visual_arith(split: str = "train", **kwargs) -> datasets.Dataset:
    from rap_hf.visual_arith import visual_arith

    return visual_arith(split, **kwargs)


def _tiny_synthetic(split: str = "train", **kwargs) -> datasets.Dataset:
    return tiny_synthetic(**kwargs)


BUILTINS = {"visual-arith": _visual_arith, "tiny-synthetic": _tiny_synthetic}


def load_builtin(name: str, split: str = "train", **kwargs) -> datasets.Dataset:
    """A built-in dataset by name: `visual-arith` (splits train/test) or `tiny-synthetic`.

    Extra keyword arguments go to the builder (e.g. `num_rows=`, `seed=`).
    """
    if name not in BUILTINS:
        raise ValueError(f"unknown built-in dataset {name!r}; available: {sorted(BUILTINS)}")
    return BUILTINS[name](split, **kwargs)


def load_any_dataset(
    spec: str, *, config_name: str | None = None, split: str | None = "train"
) -> datasets.Dataset:
    """Load a dataset from `builtin:NAME`, a `save_to_disk` folder, data files, a folder of data files, or the Hub."""
    if spec.startswith(BUILTIN_PREFIX):
        return load_builtin(spec[len(BUILTIN_PREFIX) :], split=split or "train")
    path = Path(spec).expanduser()
    if path.is_dir() and ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()):
        loaded = datasets.load_from_disk(str(path))
        return _pick_split(loaded, split, spec)
    if path.is_file():
        builder = _DATA_FILE_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise ValueError(
                f"cannot load {spec!r}: unknown data file type {path.suffix!r}; use {sorted(_DATA_FILE_BUILDERS)}"
            )
        return datasets.load_dataset(builder, data_files=str(path), split="train")
    if path.is_dir():
        return _pick_split(datasets.load_dataset(str(path), config_name), split, spec)
    if spec.startswith((".", "/", "~")) or os.sep in spec and spec.count("/") > 1:
        raise ValueError(f"dataset path {spec!r} does not exist")
    return datasets.load_dataset(spec, config_name, split=split)


def _pick_split(loaded, split: str | None, spec: str) -> datasets.Dataset:
    if isinstance(loaded, datasets.DatasetDict):
        if split is None or split not in loaded:
            raise ValueError(f"{spec!r} has splits {list(loaded)}; choose one with --split")
        return loaded[split]
    return loaded
