"""rap-hf: RAP ("Truth in the Few", arXiv 2506.04755) data selection for multimodal reasoning RL.

Public API::

    from rap_hf import RAPConfig, RAPDataFilter, select_cognitive_samples
    from rap_hf import RAPGRPOConfig, RAPGRPOTrainer   # GRPO (TRL) on the selected subset
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Lazy exports: `import rap_hf` stays cheap (no torch/transformers import) until a name is used.
_EXPORTS = {
    "RAPConfig": "rap_hf.config",
    "RAPDataFilter": "rap_hf.scoring.filter",
    "select_cognitive_samples": "rap_hf.selection",
    "RAPGRPOConfig": "rap_hf.training.config",
    "RAPGRPOTrainer": "rap_hf.training.trainer",
}

__all__ = [
    "RAPConfig",
    "RAPDataFilter",
    "RAPGRPOConfig",
    "RAPGRPOTrainer",
    "__version__",
    "select_cognitive_samples",
]

if TYPE_CHECKING:
    from rap_hf.config import RAPConfig
    from rap_hf.scoring.filter import RAPDataFilter
    from rap_hf.selection import select_cognitive_samples
    from rap_hf.training.config import RAPGRPOConfig
    from rap_hf.training.trainer import RAPGRPOTrainer


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rap_hf' has no attribute {name!r}")
