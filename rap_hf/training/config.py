"""`RAPGRPOConfig`: TRL's `GRPOConfig` plus the ``rap_*`` fields of RAP training, each documented once, here."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from trl import GRPOConfig

from rap_hf.config import RAPSelectionConfig

TRAIN_ON_CHOICES = ("selected", "all", "as_is")

#: The ``rap_*`` values that make `RAPGRPOTrainer` a drop-in `GRPOTrainer`: every row as given, TRL's reward
#: functions only, no online re-selection, no column dropped. A plain `GRPOConfig` is read with these.
GRPO_DROP_IN_FIELDS: dict[str, Any] = {
    "rap_train_on": "as_is",
    "rap_accuracy_reward": False,
    "rap_online": False,
    "rap_drop_completion_columns": False,
}


def _selection_mirror() -> type:
    """A dataclass with one ``rap_<name>`` field per `RAPSelectionConfig` field: same type, default and help
    (read from it, so the two cannot drift apart, and no field list is written out here)."""
    mirrored = []
    for f in dataclasses.fields(RAPSelectionConfig):
        help_text = f"Selection (see RAPSelectionConfig.{f.name}): {f.metadata['help']}"
        mirrored.append((f"rap_{f.name}", f.type, field(default=f.default, metadata={"help": help_text})))
    mirror = dataclasses.make_dataclass("RAPSelectionFields", mirrored)
    # The field types are strings (postponed annotations of rap_hf.config): resolve them in that module, as
    # HfArgumentParser does through typing.get_type_hints.
    mirror.__module__ = RAPSelectionConfig.__module__
    return mirror


RAPSelectionFields = _selection_mirror()


@dataclass
class RAPGRPOConfig(GRPOConfig, RAPSelectionFields):
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
        if self.ddp_backend is None and deepspeed_launch_without_gpus():
            # accelerate names no process-group backend without GPUs, then counts one process while DeepSpeed's
            # world holds them all, and DeepSpeed rejects the batch sizes: name the CPU backend they share.
            self.ddp_backend = "gloo"
        super().__post_init__()
        self._validate_rap_fields()

    def _validate_rap_fields(self) -> None:
        if self.rap_train_on not in TRAIN_ON_CHOICES:
            raise ValueError(f"rap_train_on must be one of {TRAIN_ON_CHOICES}, got {self.rap_train_on!r}")
        if not isinstance(self.rap_retire_after, int) or self.rap_retire_after < 1:
            raise ValueError(f"rap_retire_after must be an integer >= 1, got {self.rap_retire_after!r}")
        self.rap_selection_config()  # validates the selection fields now, not after the model is loaded

    @classmethod
    def from_grpo_config(cls, args: GRPOConfig, **rap_fields: Any) -> RAPGRPOConfig:
        """A `RAPGRPOConfig` with every value of the plain `GRPOConfig` ``args``, RAP features off.

        The ``rap_*`` fields are their defaults, then `GRPO_DROP_IN_FIELDS` (train on every row as given, no
        accuracy reward, no online RAP, data untouched), then ``rap_fields``: the trainer then behaves as
        TRL's `GRPOTrainer` would with ``args``. The TRL values are copied as ``args`` holds them, after its
        ``__post_init__`` (not re-derived: building a new config from them would run that derivation twice, and
        ``generation_batch_size`` / ``steps_per_generation`` are refused when both are set).
        """
        if not isinstance(args, GRPOConfig):
            raise TypeError(f"expected a GRPOConfig, got {type(args).__name__}")
        config = cls.__new__(cls)
        config.__dict__.update(vars(args))
        # A RAPGRPOConfig's record of what its caller set describes that config, not this drop-in copy.
        config.__dict__.pop("_rap_explicit_values", None)
        grpo_fields = {f.name for f in dataclasses.fields(GRPOConfig)}
        for f in dataclasses.fields(cls):
            if f.name not in grpo_fields:
                has_factory = f.default_factory is not dataclasses.MISSING
                setattr(config, f.name, f.default_factory() if has_factory else f.default)
        for name, value in {**GRPO_DROP_IN_FIELDS, **rap_fields}.items():
            if name not in cls.__dataclass_fields__ or name in grpo_fields:
                raise TypeError(f"{name!r} is not a rap_* field of {cls.__name__}")
            setattr(config, name, value)
        config._validate_rap_fields()
        return config

    def rap_features(self) -> list[str]:
        """The RAP features this config turns on, as ``field=value`` strings (empty: a drop-in `GRPOConfig`)."""
        features = []
        if self.rap_train_on != "as_is":
            features.append(f"rap_train_on={self.rap_train_on!r}")
        if self.rap_accuracy_reward:
            features.append("rap_accuracy_reward=True")
        if self.rap_online:
            features.append("rap_online=True")
        return features

    def rap_selection_config(self) -> RAPSelectionConfig:
        """The `RAPSelectionConfig` made of this config's ``rap_*`` selection fields."""
        return RAPSelectionConfig(
            **{name: getattr(self, f"rap_{name}") for name in RAPSelectionConfig.field_names()}
        )


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


def deepspeed_launch_without_gpus() -> bool:
    """True in a process that ``accelerate launch`` started with a DeepSpeed config on a machine without GPUs
    (DeepSpeed's CPU accelerator)."""
    import os

    import torch

    return (
        os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
        and not torch.cuda.is_available()
    )
