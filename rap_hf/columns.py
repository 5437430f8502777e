"""Every `rap_*` column RAP writes, with its Arrow type, and the stage names selection writes, in one place (no
torch import, so selection, the explorer and the Hub code can use them without loading a model stack)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import datasets

#: The float score columns, in the order they are written. `rap_ace_length` is the number of tokens of the
#: response ACE reads (selection leaves responses shorter than `ace_min_length` unjudged by ACE).
#: `rap_text_rollouts` is the number of text-only rollouts that ran (M, except in decisive scoring), and
#: `rap_cde_bound` says what `rap_cde` is: 0 exact, +1 a lower bound, -1 an upper bound (decisive scoring
#: stopped the text-only arm once the CDE decision was settled; see docs/scoring.md#decisive-scoring).
NUMERIC_SCORE_COLUMNS = (
    "rap_acc_mm",
    "rap_acc_text",
    "rap_cde",
    "rap_ace",
    "rap_ace_norm",
    "rap_difficulty",
    "rap_ace_length",
    "rap_text_rollouts",
    "rap_cde_bound",
)
#: Values of `rap_cde_bound`.
CDE_EXACT, CDE_LOWER_BOUND, CDE_UPPER_BOUND = 0.0, 1.0, -1.0
#: Every column scoring adds (the rollouts only with ``keep_completions``).
SCORE_COLUMNS = (*NUMERIC_SCORE_COLUMNS, "rap_completions_mm", "rap_completions_text", "rap_error")


#: Stage names, in the order selection decides them (see `rap_hf.selection`).
KEPT = "kept"
CDE_REJECTED = "cde_rejected"
ACE_REJECTED = "ace_rejected"
DRM_IN = "drm_in"
DRM_OUT = "drm_out"
BUDGET_IN = "budget_in"
BUDGET_OUT = "budget_out"
ERROR = "error"
STAGES = (KEPT, CDE_REJECTED, ACE_REJECTED, DRM_IN, DRM_OUT, BUDGET_IN, BUDGET_OUT, ERROR)
#: The stages whose rows are selected.
SELECTED_STAGES = (KEPT, DRM_IN, BUDGET_IN)
#: The two columns selection adds: the row's stage (str) and whether it is selected (bool).
STAGE_COLUMN = "rap_stage"
SELECTED_COLUMN = "rap_selected"


def score_features(keep_completions: bool = True) -> datasets.Features:
    """Arrow types of the score columns (explicit, so all-null or empty batches keep their types)."""
    import datasets  # here, not at the top: the names above are read by code that must stay light (estimators)

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
    import datasets

    part = {"type": datasets.Value("string"), "text": datasets.Value("string")}
    return [{"role": datasets.Value("string"), "content": [part]}]


def resolve_columns(dataset: datasets.Dataset, config: Any) -> dict[str, str]:
    """Map the roles prompt, image and answer to `dataset`'s column names, by `config`'s ``prompt_column``,
    ``image_column`` (or a list column ``images``) and ``answer_column``.

    Raises `RAPUserError` listing the available columns when one is absent. Needs only the config, so callers
    can fail fast before loading a model.
    """
    from rap_hf.errors import RAPUserError

    names = dataset.column_names
    image = config.image_column if config.image_column in names else ("images" if "images" in names else None)
    missing = []
    if config.prompt_column not in names:
        missing.append(f"prompt column {config.prompt_column!r}")
    if config.answer_column not in names:
        missing.append(f"answer column {config.answer_column!r}")
    if image is None:
        missing.append(f"image column {config.image_column!r} (or a list column 'images')")
    if missing:
        raise RAPUserError(
            f"dataset is missing {', '.join(missing)}; available columns: {names}. "
            "Set prompt_column / image_column / answer_column in RAPConfig."
        )
    return {"prompt": config.prompt_column, "image": image, "answer": config.answer_column}
