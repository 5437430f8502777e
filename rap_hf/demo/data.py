"""Built-in demo data: `tiny-synthetic` (dots and sums) and `visual-arith`, by name (`builtin:NAME`)."""

from __future__ import annotations

import random

import datasets
from PIL import Image, ImageDraw

from rap_hf.errors import RAPUserError

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
    from rap_hf.demo.visual_arith import visual_arith

    return visual_arith(split, **kwargs)


def _tiny_synthetic(split: str = "train", **kwargs) -> datasets.Dataset:
    return tiny_synthetic(**kwargs)


BUILTINS = {"visual-arith": _visual_arith, "tiny-synthetic": _tiny_synthetic}


def load_builtin(name: str, split: str = "train", **kwargs) -> datasets.Dataset:
    """A built-in dataset by name: `visual-arith` (splits train/test) or `tiny-synthetic`.

    Extra keyword arguments go to the builder (e.g. `num_rows=`, `seed=`).
    """
    if name not in BUILTINS:
        raise RAPUserError(f"unknown built-in dataset {name!r}; available: {sorted(BUILTINS)}")
    return BUILTINS[name](split, **kwargs)
