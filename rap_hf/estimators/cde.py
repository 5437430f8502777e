"""CDE, the Causal Discrepancy Estimator (docs/method.md §2).

The image is the treatment: a sample whose answer the model finds as well without the image relies on
language priors and teaches no multimodal reasoning.
"""

from __future__ import annotations

import math


def cde_score(acc_mm: float, acc_text: float) -> float:
    """Signed causal discrepancy D(x) = acc_mm(x) - acc_text(x), in [-1, 1].

    Args:
        acc_mm: mean reward of the rollouts *with* the image(s), in [0, 1].
        acc_text: mean reward of the rollouts *without* the image(s), in [0, 1].

    Raises:
        ValueError: if either accuracy is NaN or outside [0, 1] (a silently wrong score is worse than an error).
    """
    for name, value in (("acc_mm", acc_mm), ("acc_text", acc_text)):
        if value is None or math.isnan(value) or not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(acc_mm) - float(acc_text)
