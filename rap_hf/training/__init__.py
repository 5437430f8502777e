"""GRPO training on RAP-selected data with TRL: `RAPGRPOConfig`, `RAPGRPOTrainer`, online RAP's sampler, and
the training script that ``rap-hf train`` and ``accelerate launch`` run.

Modules: ``config`` (RAPGRPOConfig), ``trainer`` (RAPGRPOTrainer, data preparation), ``sampler``
(OnlineRepeatSampler), ``online`` (`OnlineSelector`: the retire/replace rule), ``script`` (the training
script's ``main``), ``trl_hooks`` (the TRL hooks the trainer overrides, checked against the installed TRL).
``rap-hf train`` itself is `rap_hf.cli.train`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# Lazy, like rap_hf/__init__.py: importing the package must not import TRL.
_EXPORTS = {
    "RAPGRPOConfig": "rap_hf.training.config",
    "RAPGRPOTrainer": "rap_hf.training.trainer",
    "OnlineRepeatSampler": "rap_hf.training.sampler",
    "prepare_training_data": "rap_hf.training.trainer",
}

__all__ = ["OnlineRepeatSampler", "RAPGRPOConfig", "RAPGRPOTrainer", "prepare_training_data"]

if TYPE_CHECKING:
    from rap_hf.training.config import RAPGRPOConfig
    from rap_hf.training.sampler import OnlineRepeatSampler
    from rap_hf.training.trainer import RAPGRPOTrainer, prepare_training_data


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rap_hf.training' has no attribute {name!r}")
