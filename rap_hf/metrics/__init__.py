"""Evaluation metrics shipped with rap-hf, in `evaluate`'s module format (loaded by local path, no Hub).

``evaluate.load(PASS_AT_1_PATH)``: pass@1 under rap-hf's verifiable reward (see
``rap_pass_at_1/rap_pass_at_1.py``). `load_pass_at_1` does the same.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

#: Local path of the `rap_pass_at_1` metric module (a folder holding ``rap_pass_at_1.py``).
PASS_AT_1_PATH = str(resources.files("rap_hf") / "metrics" / "rap_pass_at_1")


def load_pass_at_1(**kwargs: Any) -> Any:
    """``evaluate.load`` of the shipped `rap_pass_at_1` metric (keyword arguments go to ``evaluate.load``)."""
    import evaluate

    return evaluate.load(PASS_AT_1_PATH, **kwargs)
