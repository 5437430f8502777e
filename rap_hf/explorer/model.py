"""The explorer's scoring model: loaded on first use for the attention view and for scoring a new sample.

`model_unavailable_reason` says, before anything is loaded, why a model cannot be used (the page shows it
instead of the model's tabs).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
from datasets import Dataset
from PIL import Image

from rap_hf.columns import conversation_feature
from rap_hf.config import RAPScoringConfig, RAPSelectionConfig
from rap_hf.explorer.assets import explorer_scoring_config
from rap_hf.explorer.attention_view import AttentionView, compute_attention_view
from rap_hf.explorer.data import (
    COMPLETION_COLUMNS,
    MAX_SHOWN_ROLLOUTS,
    ExplorerData,
    ExplorerDataError,
    question_text,
    row_images,
)
from rap_hf.explorer.rollouts import ace_rollout_index, mark_rollouts
from rap_hf.scoring.images import normalize_image

# The attention view's bounds: the question of a dataset row (a visitor's dataset can hold anything), and the
# response tokens shown (compute_attention_view keeps the first MAX_ATTENTION_TOKENS).
MAX_ATTENTION_PROMPT_CHARS = 4_000


def model_unavailable_reason(model: str | os.PathLike[str] | None) -> str | None:
    """None when `model` ("reference", or a local model folder) can be used; else why not, for the page."""
    from rap_hf.demo.reference_model import reference_model_available, reference_model_path

    if model is None:
        return "No model was given to the app (start it with `--model reference` or `--model DIR`)."
    if str(model) == "reference":
        if reference_model_available():
            return None
        return (
            f"The reference model rap-tiny-vl is not installed (expected in {reference_model_path()}). It ships "
            "with the package once trained (trainers/train_reference_model.py); start the app with "
            "`rap-hf explore --model DIR` to use another local model."
        )
    path = Path(model)
    if not (path / "config.json").exists():
        return f"No model at {path} (a folder saved with save_pretrained, with config.json, is needed)."
    return None


class ExplorerModel:
    """The scoring model, loaded on first use (attention view, scoring a new sample), then kept.

    One lock serialises model calls: Gradio runs events in threads, and one forward pass at a time is what
    a small Space can afford anyway.
    """

    def __init__(
        self, model: str | os.PathLike[str] | None = "reference", scoring: RAPScoringConfig | None = None
    ) -> None:
        """
        Args:
            model: "reference" (the shipped rap-tiny-vl), a local model folder, or None (no model: `reason`
                says so and every call raises `ExplorerDataError`).
            scoring: rollout and ACE settings (a `RAPConfig` is reduced to its scoring half); default
                `explorer_scoring_config()`, the settings of the shipped scores.
        """
        from rap_hf.demo.reference_model import reference_model_path

        self.reason = model_unavailable_reason(model)
        self.path = (
            None if self.reason else (str(reference_model_path()) if model == "reference" else str(model))
        )
        self.scoring = RAPScoringConfig.of(scoring) if scoring is not None else explorer_scoring_config()
        self._filter: Any = None
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        return self.reason is None

    def _loaded(self) -> Any:
        if self.reason is not None:
            raise ExplorerDataError(self.reason)
        if self._filter is None:
            from rap_hf.scoring.filter import RAPDataFilter

            self._filter = RAPDataFilter(self.path, config=self.scoring)
        return self._filter

    def attention_for_row(self, data: ExplorerData, row: int, config: RAPSelectionConfig) -> AttentionView:
        """Attention over the rollout of dataset row `row` that ACE reads (first correct, else first).

        `config.ace_mode` picks the column score shown (summed for paper ACE, averaged for normalized).
        """
        if not 0 <= int(row) < len(data):
            raise ExplorerDataError(f"row must be in [0, {len(data) - 1}], got {row}")
        record = data.record(int(row))
        images, note = row_images(record, data.roles, allow_paths=data.trusted)
        if not images:
            raise ExplorerDataError(
                f"No attention for row {row}: {note} ACE reads a rollout made with the image."
            )
        answer = record.get(data.roles.answer) if data.roles.answer else None
        marks = mark_rollouts((record.get(COMPLETION_COLUMNS["mm"]) or [])[:MAX_SHOWN_ROLLOUTS], answer)
        index = ace_rollout_index(marks)
        if index is None:
            raise ExplorerDataError(
                f"Row {row} has no stored multimodal rollouts (rap_completions_mm) to read."
            )
        prompt = record.get(data.roles.prompt) if data.roles.prompt else None
        if len(question_text(prompt)) > MAX_ATTENTION_PROMPT_CHARS:
            # The attention pass holds the model and grows with the square of the sequence.
            raise ExplorerDataError(
                f"Row {row}'s question is longer than {MAX_ATTENTION_PROMPT_CHARS:,} characters: no attention view."
            )
        view = self.attention(prompt, images, marks[index].text, config)
        view.rollout = index
        return view

    def attention(
        self, prompt: Any, images: Sequence[Image.Image], response: str, config: RAPSelectionConfig
    ) -> AttentionView:
        """The attention view of `response` to `prompt` with `images` (images scaled as the scorer scales
        them)."""
        with self._lock:
            flt = self._loaded()
            images = [normalize_image(image, flt.max_image_pixels) for image in images]
            return compute_attention_view(
                flt.model,
                flt.processor,
                prompt,
                images,
                response,
                sigma=self.scoring.sigma,
                min_span=self.scoring.ace_min_span,
                normalized=config.ace_mode == "normalized",
                system_prompt=self.scoring.system_prompt,
            )

    def score_sample(self, image: Image.Image | None, question: str, answer: str) -> Dataset:
        """Score one new sample (M rollouts per arm, rewards, ACE): a one-row scored dataset."""
        question, answer = (question or "").strip(), (answer or "").strip()
        missing = [
            name
            for name, ok in (("an image", image is not None), ("a question", question), ("an answer", answer))
            if not ok
        ]
        if missing:
            raise ExplorerDataError("To score a sample, give " + ", ".join(missing) + ".")
        row = Dataset.from_dict(
            {
                "prompt": [
                    [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
                ],
                # As the scorer reads images: 16-bit and float uploads scaled by their range, not clipped.
                "image": [normalize_image(image, None)],
                "solution": [answer],
            },
            features=datasets.Features(
                {
                    "prompt": conversation_feature(),
                    "image": datasets.Image(),
                    "solution": datasets.Value("string"),
                }
            ),
        )
        with self._lock:
            return self._loaded().score(row, desc="explorer: new sample")
