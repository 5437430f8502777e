"""`visual-arith`: a built-in visual-reasoning dataset whose ground truth about "needs the image" is known.

Images are canvases of real handwritten digits (scikit-learn's bundled `load_digits`, 8x8 scans of 1,797
digits, offline). Each row is in TRL's VLM format (`prompt`, `image`, `solution`) plus a `kind` column that
RAP never reads:

- `visual`: the sum of the two digits shown; the answer needs the image.
- `text_leak`: the same question, but the text says which digits are shown; a language-prior sample.
- `hard`: the product of the three digits shown; several steps, rarely solved by a small model.
- `distractor`: a `visual` question padded with irrelevant text that contains numbers.

Train and test use disjoint digit scans (split by scan, not by row, the same split for every seed, so train rows
of any seed never show a test scan), and everything is deterministic by seed.
"""

from __future__ import annotations

import random
from functools import lru_cache

import datasets
import numpy as np
from PIL import Image

from rap_hf.columns import conversation_feature
from rap_hf.errors import RAPUserError

KINDS = ("visual", "text_leak", "hard", "distractor")
DEFAULT_KIND_WEIGHTS = {"visual": 0.4, "text_leak": 0.25, "hard": 0.15, "distractor": 0.2}
DEFAULT_SIZES = {"train": 4000, "test": 400}

# Canvas geometry: a grid of 28x28-pixel cells, 2 rows x 4 columns. 28 px = one merged 2x2 block of 14-px
# patches in Qwen2.5-VL, so each digit becomes exactly one image token.
CELL = 28
ROWS, COLS = 2, 4
TEST_SCAN_FRACTION = 0.25

VISUAL_QUESTIONS = (
    "What is the sum of the digits in the image?",
    "Add up the digits shown in the picture. What is the total?",
    "The image shows two handwritten digits. What do they add up to?",
)
HARD_QUESTIONS = (
    "What is the product of the three digits in the image?",
    "Multiply the three handwritten digits shown. What is the result?",
)
DISTRACTORS = (
    "My bus number is {n1} and I have {n2} cousins, but that does not matter here.",
    "Yesterday {n1} birds sat on {n2} wires; ignore this sentence.",
    "The room has {n1} chairs and {n2} lamps, which is irrelevant.",
    "A shop sold {n1} apples for {n2} coins each. Forget about that.",
)
ANSWER_INSTRUCTION = "Give the final answer in \\boxed{}."


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits  # the 8x8 handwritten digits ship inside scikit-learn
    except ImportError as exc:
        raise RAPUserError(
            'the visual-arith demo data needs scikit-learn: pip install "rap-hf[demo]"'
        ) from exc

    bunch = load_digits()
    return bunch.images.astype(np.float32), bunch.target.astype(np.int64)


# The scan split is fixed, whatever the row seed: with one split per seed, train rows drawn with seed 1 used 339
# of the 450 scans of the seed-0 test split (the GRPO pool of benchmarks/reproduction.py did). Seed 0's split.
_SCAN_SPLIT_SEED = 0


def _scan_split(split: str) -> list[int]:
    """Indices of the digit scans a split may use: a fixed 75/25 split of the 1,797 scans."""
    images, _ = _digits()
    order = list(range(len(images)))
    random.Random(f"visual-arith-scans-{_SCAN_SPLIT_SEED}").shuffle(order)
    cut = int(len(order) * (1 - TEST_SCAN_FRACTION))
    return sorted(order[:cut] if split == "train" else order[cut:])


def render_digits(scans: list[np.ndarray], rng: random.Random) -> Image.Image:
    """Draw digit scans left to right in consecutive cells of one row of a white 56x112 canvas, dark ink.

    The row is random, the columns start at the left edge: a fixed reading order a few-million-parameter
    model can learn in minutes on CPU (with digits scattered over all cells it barely learned to read them).
    """
    canvas = np.full((ROWS * CELL, COLS * CELL), 255, dtype=np.uint8)
    row = rng.randrange(ROWS)
    cells = [row * COLS + col for col in range(len(scans))]
    for scan, cell in zip(scans, cells, strict=True):
        digit = Image.fromarray((255 - scan * (255 / 16)).astype(np.uint8)).resize(
            (CELL - 4, CELL - 4), Image.Resampling.BILINEAR
        )
        row, col = divmod(cell, COLS)
        y, x = row * CELL + 2, col * CELL + 2
        canvas[y : y + CELL - 4, x : x + CELL - 4] = np.asarray(digit)
    return Image.fromarray(canvas).convert("RGB")


def _digit_words(values: list[int]) -> str:
    return ", ".join(str(v) for v in values[:-1]) + f" and {values[-1]}"


def reasoning(values: list[int], kind: str) -> tuple[str, str]:
    """The reference solution text (short reasoning ending in \\boxed{}) and the answer, for `values`."""
    if kind == "hard":
        product = int(np.prod(values))
        return (
            f"The digits are {_digit_words(values)}. {' * '.join(map(str, values))} = {product}. \\boxed{{{product}}}",
            str(product),
        )
    total = sum(values)
    return (
        f"The digits are {_digit_words(values)}. {' + '.join(map(str, values))} = {total}. \\boxed{{{total}}}",
        str(total),
    )


def make_row(kind: str, values: list[int], scans: list[np.ndarray], rng: random.Random) -> dict:
    """One dataset row of `kind` showing `values` (their scans given) with a question drawn from `rng`."""
    if kind == "hard":
        question = rng.choice(HARD_QUESTIONS)
    else:
        question = rng.choice(VISUAL_QUESTIONS)
    if kind == "text_leak":
        question = f"The image shows the digits {_digit_words(values)}. {question}"
    elif kind == "distractor":
        filler = rng.choice(DISTRACTORS).format(n1=rng.randint(2, 99), n2=rng.randint(2, 9))
        question = f"{filler} {question}"
    text = f"{question} {ANSWER_INSTRUCTION}"
    answer_text, answer = reasoning(values, kind)
    return {
        "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}],
        "image": render_digits(scans, rng),
        "solution": answer,
        "kind": kind,
        "digits": values,
        "reference_completion": answer_text,
    }


def visual_arith(
    split: str = "train",
    num_rows: int | None = None,
    seed: int = 0,
    kind_weights: dict[str, float] | None = None,
) -> datasets.Dataset:
    """Build the `visual-arith` split (`train` or `test`), deterministic in (`split`, `num_rows`, `seed`).

    Columns: `prompt` (conversational, one image placeholder), `image`, `solution` (string), `kind`,
    `digits` (the digits shown, in reading order) and `reference_completion` (a correct worked answer, used
    to train the reference model; RAP reads neither these nor `kind`).
    """
    if split not in DEFAULT_SIZES:
        raise RAPUserError(f"visual-arith has splits {sorted(DEFAULT_SIZES)}, not {split!r}")
    num_rows = DEFAULT_SIZES[split] if num_rows is None else num_rows
    weights = kind_weights or DEFAULT_KIND_WEIGHTS
    unknown = set(weights) - set(KINDS)
    if unknown:
        raise RAPUserError(f"unknown kinds {sorted(unknown)}; kinds are {KINDS}")
    images, targets = _digits()
    pool = _scan_split(split)
    rng = random.Random(f"visual-arith-{split}-{seed}")
    kinds = rng.choices(list(weights), weights=list(weights.values()), k=num_rows)
    rows = []
    for kind in kinds:
        count = 3 if kind == "hard" else 2
        picks = [rng.choice(pool) for _ in range(count)]
        rows.append(make_row(kind, [int(targets[i]) for i in picks], [images[i] for i in picks], rng))
    features = datasets.Features(
        {
            "prompt": conversation_feature(),
            "image": datasets.Image(),
            "solution": datasets.Value("string"),
            "kind": datasets.Value("string"),
            "digits": datasets.List(datasets.Value("int64")),
            "reference_completion": datasets.Value("string"),
        }
    )
    return datasets.Dataset.from_list(rows, features=features)


def scan_ids(split: str) -> list[int]:
    """The digit-scan indices a split draws from, the same for every row seed (train and test are disjoint)."""
    return _scan_split(split)
