"""The score columns RAP writes: names and Arrow types, in one place (no torch import, so the explorer and
selection code can use them without loading a model stack)."""

from __future__ import annotations

import datasets

#: The float score columns, in the order they are written.
NUMERIC_SCORE_COLUMNS = ("rap_acc_mm", "rap_acc_text", "rap_cde", "rap_ace", "rap_ace_norm", "rap_difficulty")
#: Every column scoring adds (the rollouts only with ``keep_completions``).
SCORE_COLUMNS = (*NUMERIC_SCORE_COLUMNS, "rap_completions_mm", "rap_completions_text", "rap_error")


def score_features(keep_completions: bool = True) -> datasets.Features:
    """Arrow types of the score columns (explicit, so all-null or empty batches keep their types)."""
    features: dict[str, datasets.features.FeatureType] = {
        name: datasets.Value("float64") for name in NUMERIC_SCORE_COLUMNS
    }
    if keep_completions:
        features["rap_completions_mm"] = datasets.List(datasets.Value("string"))
        features["rap_completions_text"] = datasets.List(datasets.Value("string"))
    features["rap_error"] = datasets.Value("string")
    return datasets.Features(features)


def conversation_feature() -> list:
    """Arrow type of a TRL conversational `prompt` column whose content parts are {"type", "text"} structs."""
    part = {"type": datasets.Value("string"), "text": datasets.Value("string")}
    return [{"role": datasets.Value("string"), "content": [part]}]
