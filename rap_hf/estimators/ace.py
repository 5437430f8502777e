"""ACE, the Attention Confidence Estimator (docs/method.md §3), as pure functions of an attention block.

`attn` is the head-averaged final-layer self-attention restricted to the response: an L x L lower-triangular
matrix whose row i holds how much response token i attends to response token j (j <= i).

A column whose attention stays high for every later token marks a token the reasoning over-relies on (the
"over-trust" column score of OPERA). The paper's score is a product over the column, so it shrinks or explodes
with the response length; `ace_normalized` is the length-independent geometric-mean version.
"""

from __future__ import annotations

import math

import numpy as np
import torch

# Floor for attention probabilities before taking logs: exact zeros (masked or underflowed entries) would
# otherwise give -inf and make every column containing one equally "unconfident".
ATTENTION_FLOOR = 1e-12


def _column_log_terms(attn: np.ndarray | torch.Tensor, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-column sum of log(sigma * A[i, j]) over rows i >= j, and the number of such rows."""
    a = (
        attn.detach().to(torch.float64).cpu().numpy()
        if isinstance(attn, torch.Tensor)
        else np.asarray(attn, np.float64)
    )
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"attn must be a square L x L matrix, got shape {a.shape}")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    length = a.shape[0]
    logs = np.log(sigma * np.maximum(a, ATTENTION_FLOOR))
    # Only the lower triangle (i >= j) is attention of a later token to an earlier one.
    logs = np.tril(logs)
    sums = logs.sum(axis=0)
    spans = length - np.arange(length)  # rows j..L-1 for column j
    return sums, spans


def ace_paper(attn: np.ndarray | torch.Tensor, sigma: float = 2.0, min_span: int = 1) -> float:
    """The paper's ACE: max_j prod_{i=j..L} sigma * A[i, j], over columns with at least `min_span` rows.

    Computed in log space (exact up to float64 rounding) and exponentiated at the end, so a long response
    gives 0.0 or inf instead of an overflow warning. Returns NaN when no column qualifies (empty response or
    a response shorter than `min_span`).
    """
    sums, spans = _column_log_terms(attn, sigma)
    valid = spans >= min_span
    if not valid.any():
        return math.nan
    with np.errstate(over="ignore"):
        return float(np.exp(sums[valid].max()))


def ace_normalized(attn: np.ndarray | torch.Tensor, sigma: float = 2.0, min_span: int = 1) -> float:
    """Length-normalised ACE: max_j mean_{i=j..L} log(sigma * max(A[i, j], 1e-12)).

    The log of a geometric mean, so it does not drift with the response length. Returns NaN when no column
    has at least `min_span` rows.
    """
    sums, spans = _column_log_terms(attn, sigma)
    valid = spans >= min_span
    if not valid.any():
        return math.nan
    return float((sums[valid] / spans[valid]).max())


def ace_column_scores(
    attn: np.ndarray | torch.Tensor, sigma: float = 2.0, min_span: int = 1, *, normalized: bool = False
) -> np.ndarray:
    """Every column's ACE log score: the sum (paper) or mean (normalized) of log(sigma * A[i, j]) over rows
    i >= j; NaN for columns with fewer than `min_span` rows. ACE is the max of these (exponentiated in paper
    mode)."""
    sums, spans = _column_log_terms(attn, sigma)
    scores = sums / spans if normalized else sums
    return np.where(spans >= min_span, scores, np.nan)


def ace_argmax_column(
    attn: np.ndarray | torch.Tensor, sigma: float = 2.0, min_span: int = 1, *, normalized: bool = False
) -> int | None:
    """Index j of the column that drives the ACE score (for explanations and attention views); None if none."""
    sums, spans = _column_log_terms(attn, sigma)
    valid = spans >= min_span
    if not valid.any():
        return None
    scores = sums / spans if normalized else sums
    scores = np.where(valid, scores, -np.inf)
    return int(np.argmax(scores))
