"""RAP's estimators as pure functions: CDE (`cde_score`), ACE (`ace_paper`, `ace_normalized`), DRM."""

from rap_hf.estimators.ace import ace_argmax_column, ace_normalized, ace_paper
from rap_hf.estimators.cde import cde_score

__all__ = ["ace_argmax_column", "ace_normalized", "ace_paper", "cde_score"]
