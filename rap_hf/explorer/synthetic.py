"""A hand-made scored dataset for the explorer's UI tests and timing (`synthetic_scored_dataset`).

The `rap_*` columns are plausible, not real scores: no model runs. Use it to exercise the views at any size
(`benchmarks/explorer_timing.py` opens 10k rows), never to judge RAP.
"""

from __future__ import annotations

import io
import math
from typing import Any

import datasets
import numpy as np
from datasets import Dataset
from PIL import Image

from rap_hf.columns import NUMERIC_SCORE_COLUMNS, conversation_feature, score_features


def synthetic_scored_dataset(
    num_rows: int,
    *,
    seed: int = 0,
    num_rollouts: int = 5,
    with_images: bool = True,
    error_fraction: float = 0.02,
) -> Dataset:
    """A hand-made dataset with plausible `rap_*` columns, for UI tests and timing. NOT real scores.

    Rows imitate visual-arith's kinds: `visual` (needs the image: high acc_mm, low acc_text), `text_leak`
    (answered without the image), `hard` (rarely solved); ACE is log-normal. Completions agree with the
    accuracies (correct ones box the solution). A fraction of rows has no image and an `rap_error`.
    """
    rng = np.random.default_rng(seed)
    kinds = rng.choice(["visual", "text_leak", "hard"], size=num_rows, p=[0.5, 0.3, 0.2])
    p_mm = {"visual": 0.7, "text_leak": 0.9, "hard": 0.15}
    p_text = {"visual": 0.1, "text_leak": 0.85, "hard": 0.05}
    images = _synthetic_images(16, seed) if with_images else []
    columns: dict[str, list[Any]] = {
        name: []
        for name in (
            "prompt",
            "image",
            "solution",
            "kind",
            *NUMERIC_SCORE_COLUMNS,
            "rap_completions_mm",
            "rap_completions_text",
            "rap_error",
        )
    }
    for i, kind in enumerate(kinds):
        a, b = int(rng.integers(0, 10)), int(rng.integers(0, 10))
        solution = str(a + b)
        error = rng.random() < error_fraction
        columns["prompt"].append(
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "text": None},
                        {"type": "text", "text": f"Row {i}: what is the sum of the digits? \\boxed{{}}"},
                    ],
                }
            ]
        )
        columns["image"].append(None if error or not images else images[i % len(images)])
        columns["solution"].append(solution)
        columns["kind"].append(str(kind))
        if error:
            for name in NUMERIC_SCORE_COLUMNS:
                columns[name].append(math.nan)
            columns["rap_completions_mm"].append([])
            columns["rap_completions_text"].append([])
            columns["rap_error"].append("missing image")
            continue
        correct_mm = int(rng.binomial(num_rollouts, p_mm[str(kind)]))
        correct_text = int(rng.binomial(num_rollouts, p_text[str(kind)]))
        acc_mm, acc_text = correct_mm / num_rollouts, correct_text / num_rollouts
        columns["rap_acc_mm"].append(acc_mm)
        columns["rap_acc_text"].append(acc_text)
        columns["rap_cde"].append(acc_mm - acc_text)
        columns["rap_ace"].append(float(10 ** rng.normal(-1.8, 1.2)))
        columns["rap_ace_norm"].append(float(rng.normal(-0.4, 0.35)))
        columns["rap_difficulty"].append(1.0 - acc_mm)
        columns["rap_completions_mm"].append(_fake_completions(a, b, correct_mm, num_rollouts))
        columns["rap_completions_text"].append(_fake_completions(a, b, correct_text, num_rollouts))
        if "rap_ace_length" in columns:  # the length of the response ACE reads (here: its words)
            columns["rap_ace_length"].append(float(len(columns["rap_completions_mm"][-1][0].split())))
        # A full (not decisive) scoring run: every text rollout ran and rap_cde is exact.
        if "rap_text_rollouts" in columns:
            columns["rap_text_rollouts"].append(float(num_rollouts))
        if "rap_cde_bound" in columns:
            columns["rap_cde_bound"].append(0.0)
        columns["rap_error"].append(None)
    features = datasets.Features(
        {
            "prompt": conversation_feature(),
            "image": datasets.Image(),
            "solution": datasets.Value("string"),
            "kind": datasets.Value("string"),
            **score_features(keep_completions=True),
        }
    )
    return Dataset.from_dict(columns, features=features)


def _synthetic_images(count: int, seed: int) -> list[dict[str, Any]]:
    """A few small PNGs (as encoded image dicts, so 10k rows cost no per-row encoding)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        pixels = (255 - rng.integers(0, 2, size=(14, 28)) * 200).astype(np.uint8)
        image = Image.fromarray(pixels).resize((112, 56), Image.Resampling.NEAREST).convert("RGB")
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        out.append({"bytes": buffer.getvalue(), "path": None})
    return out


def _fake_completions(a: int, b: int, correct: int, total: int) -> list[str]:
    right = f"The digits are {a} and {b}. {a} + {b} = {a + b}. \\boxed{{{a + b}}}"
    wrong = f"The digits are {a} and {b + 1}. {a} + {b + 1} = {a + b + 1}. \\boxed{{{a + b + 1}}}"
    return [right] * correct + [wrong] * (total - correct)
