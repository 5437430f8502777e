"""`RAPGRPOConfig`: TRL's `GRPOConfig` plus the ``rap_*`` fields of RAP training, each documented once, here."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from trl import GRPOConfig

from rap_hf.config import RAPConfig

TRAIN_ON_CHOICES = ("selected", "all", "as_is")

# The selection fields of RAPConfig mirrored here as rap_<name>, with RAPConfig's defaults (read from it, so the
# two cannot drift apart).
SELECTION_FIELDS = (
    "lambda_c",
    "lambda_a",
    "ace_mode",
    "use_drm",
    "drm_k",
    "drm_ratio",
    "target_ratio",
    "target_size",
)


def _rap_default(name: str) -> Any:
    return RAPConfig.__dataclass_fields__[name].default


def _rap_help(name: str) -> str:
    return "Selection (see RAPConfig." + name + "): " + RAPConfig.__dataclass_fields__[name].metadata["help"]


@dataclass
class RAPGRPOConfig(GRPOConfig):
    """Configuration of `RAPGRPOTrainer`: every `GRPOConfig` field, plus the ``rap_*`` fields below.

    Which rows are trained on (``rap_train_on``):

    * ``"selected"`` (default): the rows RAP selects. A dataset annotated by ``select_cognitive_samples``
      (``rap_selected`` column, e.g. ``annotated/`` written by ``rap-hf select``) is filtered on that column; a
      scored dataset without annotation (``rap_*`` score columns, no ``rap_stage``) is first selected with the
      ``rap_*`` selection fields below (they mirror `RAPConfig`'s selection fields and defaults).
    * ``"all"``: every row, whatever the annotation says (the full-data baseline RAP is compared with).
    * ``"as_is"``: every row, no column read (a dataset that is already the subset, e.g. the Hub config
      ``selected``).

    Online RAP (``rap_online=True``) keeps the GRPO groups' accuracy per sample while training, retires samples
    whose group was all-correct (or all-wrong) ``rap_retire_after`` visits in a row, and replaces them from a
    reserve: with ``"selected"``, the rows selection rejected whose ``rap_acc_mm`` is strictly between 0 and 1,
    hardest first (DRM's order); with ``"all"``/``"as_is"`` there is no reserve and retired samples simply
    leave. See `rap_hf.training.online.OnlineSelector`.
    """

    rap_train_on: Literal["selected", "all", "as_is"] = field(
        default="selected",
        metadata={
            "help": "Rows to train on: 'selected' (RAP-selected rows; runs selection when the dataset has score "
            "columns but no rap_stage), 'all' (every row: the full-data baseline), 'as_is' (every row, no column "
            "read: for an already selected dataset)."
        },
    )
    rap_lambda_c: float = field(default=_rap_default("lambda_c"), metadata={"help": _rap_help("lambda_c")})
    rap_lambda_a: float = field(default=_rap_default("lambda_a"), metadata={"help": _rap_help("lambda_a")})
    rap_ace_mode: Literal["paper", "normalized"] = field(
        default=_rap_default("ace_mode"), metadata={"help": _rap_help("ace_mode")}
    )
    rap_use_drm: bool = field(default=_rap_default("use_drm"), metadata={"help": _rap_help("use_drm")})
    rap_drm_k: int | None = field(default=_rap_default("drm_k"), metadata={"help": _rap_help("drm_k")})
    rap_drm_ratio: float | None = field(
        default=_rap_default("drm_ratio"), metadata={"help": _rap_help("drm_ratio")}
    )
    rap_target_ratio: float | None = field(
        default=_rap_default("target_ratio"), metadata={"help": _rap_help("target_ratio")}
    )
    rap_target_size: int | None = field(
        default=_rap_default("target_size"), metadata={"help": _rap_help("target_size")}
    )
    rap_online: bool = field(
        default=False,
        metadata={
            "help": "Online RAP: retire samples the policy has saturated (all-correct / all-wrong groups) and "
            "replace them from the reserve while training, through the train sampler."
        },
    )
    rap_retire_after: int = field(
        default=2,
        metadata={
            "help": "Online RAP: retire a sample after this many consecutive all-correct visits (>= 1)."
        },
    )
    rap_retire_all_wrong: bool = field(
        default=True,
        metadata={
            "help": "Online RAP: also retire samples that were all-wrong rap_retire_after visits in a row (they "
            "give GRPO zero advantage too)."
        },
    )
    rap_correct_threshold: float = field(
        default=1.0,
        metadata={
            "help": "Online RAP: a rollout counts as correct when its correctness reward is >= this value (1.0 "
            "for the 0/1 accuracy reward)."
        },
    )
    rap_correctness_reward: str | None = field(
        default=None,
        metadata={
            "help": "Online RAP: name of the reward function that says whether a rollout is correct (TRL's name: "
            "the function's __name__). Default: accuracy_reward when present, else the first reward function."
        },
    )
    rap_accuracy_reward: bool = field(
        default=True,
        metadata={
            "help": "Put rap_hf.rewards.accuracy_reward (reads the `solution` column, the reward RAP scored with) "
            "first in the reward functions, before any extra ones, unless it is already there. When "
            "reward_weights is set, it needs one weight per function, this one included."
        },
    )
    rap_drop_completion_columns: bool = field(
        default=True,
        metadata={
            "help": "Drop rap_completions_mm / rap_completions_text (the scoring rollouts) from the training data: "
            "training does not read them, and GRPO would carry them through every batch."
        },
    )

    def __post_init__(self) -> None:
        # What the caller set, before GRPOConfig derives values from it (generation_batch_size depends on the
        # number of processes). `rap-hf train` forwards exactly these to the processes it launches.
        self._rap_explicit_values = copy.deepcopy(explicit_values(self))
        super().__post_init__()
        if self.rap_train_on not in TRAIN_ON_CHOICES:
            raise ValueError(f"rap_train_on must be one of {TRAIN_ON_CHOICES}, got {self.rap_train_on!r}")
        if not isinstance(self.rap_retire_after, int) or self.rap_retire_after < 1:
            raise ValueError(f"rap_retire_after must be an integer >= 1, got {self.rap_retire_after!r}")
        self.rap_selection_config()  # validates the selection fields now, not after the model is loaded

    def rap_selection_config(self) -> RAPConfig:
        """The `RAPConfig` whose selection fields are this config's ``rap_*`` selection fields."""
        return RAPConfig(**{name: getattr(self, f"rap_{name}") for name in SELECTION_FIELDS})


def explicit_values(config: Any) -> dict[str, Any]:
    """The init fields of a dataclass instance whose value differs from the field's default.

    For `RAPGRPOConfig` this is what the caller set, recorded before ``__post_init__`` derives other values;
    for plain dataclasses it is computed now.
    """
    recorded = getattr(config, "_rap_explicit_values", None)
    if recorded is not None:
        return dict(recorded)
    values = {}
    for f in dataclasses.fields(config):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING  # required field: always explicit
        value = getattr(config, f.name)
        if default is dataclasses.MISSING or value != default:
            values[f.name] = value
    return values
