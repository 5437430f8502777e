"""The attention view: the final-layer attention ACE reads over one response, its per-column scores, and
its heatmap.

`compute_attention_view` gets the attention from the scorer's own pass
(`rap_hf.scoring.engine.final_layer_attention`) and adds what the page shows: the response tokens, the score
of every column and the column that drives ACE. `attention_heatmap` draws it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from rap_hf.explorer.data import ExplorerDataError

MAX_ATTENTION_TOKENS = 512


@dataclass
class AttentionView:
    """Final-layer attention over one response (rows attend to columns j <= i), head-averaged."""

    attention: np.ndarray  # (L, L) float
    tokens: list[str]
    column: int | None  # the column that drives the ACE score (ace_argmax_column)
    column_scores: np.ndarray  # per-column log score: sum (paper) or mean (normalized) of log(sigma*A)
    ace: float
    ace_norm: float
    normalized: bool
    rollout: int | None = None  # which stored rollout (0-based), when it came from the dataset


def compute_attention_view(
    model: Any,
    processor: Any,
    prompt: Any,
    images: Sequence[Image.Image],
    response: str,
    *,
    sigma: float = 2.0,
    min_span: int = 1,
    normalized: bool = False,
    system_prompt: str | None = None,
    max_tokens: int = MAX_ATTENTION_TOKENS,
) -> AttentionView:
    """The attention view of `response` to `prompt` with `images`, by the pass RAP's ACE makes.

    The multimodal prompt is rendered as the scorer renders it and the attention comes from
    `rap_hf.scoring.engine.final_layer_attention`, so only the response differs from scoring: it is
    re-tokenised from its stored text, and ACE recomputed here can differ slightly from the stored score when
    decoding is not exactly invertible. Only the first `max_tokens` response tokens are used.

    Raises:
        ExplorerDataError: the response is empty.
    """
    from rap_hf.estimators.ace import ace_argmax_column, ace_column_scores, ace_normalized, ace_paper
    from rap_hf.scoring.engine import final_layer_attention
    from rap_hf.scoring.rollouts import build_messages, render_prompt

    tokenizer = getattr(processor, "tokenizer", processor)
    # The view is L x L over the response: keep it to the first `max_tokens` tokens (a stored rollout can be
    # arbitrarily long, and the page shows a heatmap, not a matrix of millions of cells).
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"][:max_tokens]
    if not response_ids:
        raise ExplorerDataError("the response is empty: no attention to show")
    prompt_text = render_prompt(
        processor, build_messages(prompt, len(images), with_images=True, system_prompt=system_prompt)
    )
    attention = final_layer_attention(model, processor, prompt_text, list(images), list(response_ids))
    attention = attention.numpy().astype(np.float64)
    return AttentionView(
        attention=attention,
        tokens=[str(t) for t in tokenizer.convert_ids_to_tokens(response_ids)],
        column=ace_argmax_column(attention, sigma, min_span, normalized=normalized),
        column_scores=ace_column_scores(attention, sigma, min_span, normalized=normalized),
        ace=ace_paper(attention, sigma, min_span),
        ace_norm=ace_normalized(attention, sigma, min_span),
        normalized=normalized,
    )


def attention_heatmap(view: AttentionView, title: str = "") -> Image.Image:
    """Heatmap of the attention (log10, upper triangle blank) with the ACE-driving column outlined in red,
    and the per-column ACE log score underneath."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    length = view.attention.shape[0]
    with np.errstate(divide="ignore"):
        shown = np.log10(np.maximum(view.attention, 1e-12))
    shown = np.where(np.tril(np.ones((length, length), dtype=bool)), shown, np.nan)
    figure = Figure(figsize=(7.0, 7.4))
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(2, 2, height_ratios=(5, 1), width_ratios=(30, 1), hspace=0.6, wspace=0.05)
    axes = figure.add_subplot(grid[0, 0])
    picture = axes.imshow(shown, cmap="viridis", interpolation="nearest", aspect="auto")
    figure.colorbar(picture, cax=figure.add_subplot(grid[0, 1]), label="log10 attention")
    if view.column is not None:
        j = view.column
        axes.add_patch(Rectangle((j - 0.5, j - 0.5), 1, length - j, fill=False, edgecolor="red", linewidth=2))
    labels = [t.replace("Ġ", "").replace("▁", "") for t in view.tokens]
    if length <= 48:
        axes.set_xticks(range(length), labels=labels, rotation=90, fontsize=7)
        axes.set_yticks(range(length), labels=labels, fontsize=7)
    axes.set_xlabel("attended response token (column j)")
    axes.set_ylabel("response token (row i)")
    driver = f"column {view.column} ({labels[view.column]!r})" if view.column is not None else "no column"
    axes.set_title(
        (title + "\n" if title else "")
        + f"ACE {view.ace:.3g} · ACE_norm {view.ace_norm:.3g} · driven by {driver}",
        fontsize=9,
    )
    strip = figure.add_subplot(grid[1, 0], sharex=axes)
    colours = ["#d9480f" if j == view.column else "#9aa5b1" for j in range(length)]
    strip.bar(range(length), np.nan_to_num(view.column_scores, nan=0.0), color=colours, width=0.9)
    strip.tick_params(labelbottom=False)  # the tokens are already named under the heatmap
    strip.set_ylabel("mean log" if view.normalized else "sum log", fontsize=8)
    strip.set_title("per-column score: log(σ·A[i, j]) over rows i ≥ j (max = ACE)", fontsize=8)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")
