"""Share RAP scores and selections on the Hugging Face Hub; load a pre-selected subset in one line.

Public API::

    from rap_hf.hub import push_rap_dataset, PushResult, HubPushError   # push configs `selected` + `scores`
    from rap_hf.hub import load_selected, load_scores                   # load them back
    from rap_hf.hub import SELECTED_CONFIG, SCORES_CONFIG               # the config names

Modules:

- `rap_hf.hub.push`: `push_rap_dataset` and `PushResult`, the push flow (one atomic commit);
- `rap_hf.hub.load`: `load_selected`, `load_scores`;
- `rap_hf.hub.errors`: `HubPushError` and the translation of huggingface_hub/HTTP/network faults into it;
- `rap_hf.hub.card`: the dataset card (`build_dataset_card`, rendered from ``templates/dataset_card.md``, the
  generated part between markers) and the numbers behind it (`build_hub_report`, pushed as ``rap/report.json``);
- `rap_hf.hub.metadata`: the card's YAML (defaults, the source's license, tag merging) and
  `check_card_metadata`, the local check against the Hub's rules;
- `rap_hf.hub.provenance`: the scoring model and source dataset as publishable ids, never local paths;
- `rap_hf.hub.shards`: Parquet shards and ``configs``/``dataset_info`` in `datasets`' layout;
- `rap_hf.hub.layout`: what the repo holds: config names, report and figure paths.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# Lazy exports: `from rap_hf.hub import load_selected` imports neither the push stack nor matplotlib.
_EXPORTS = {
    "push_rap_dataset": "rap_hf.hub.push",
    "PushResult": "rap_hf.hub.push",
    "COMPLETION_COLUMNS": "rap_hf.hub.push",
    "load_selected": "rap_hf.hub.load",
    "load_scores": "rap_hf.hub.load",
    "HubPushError": "rap_hf.hub.errors",
    "build_dataset_card": "rap_hf.hub.card",
    "build_hub_report": "rap_hf.hub.card",
    "CARD_TAGS": "rap_hf.hub.metadata",
    "check_card_metadata": "rap_hf.hub.metadata",
    "PAPER_TITLE": "rap_hf.hub.card",
    "PAPER_URL": "rap_hf.hub.card",
    "SELECTED_CONFIG": "rap_hf.hub.layout",
    "SCORES_CONFIG": "rap_hf.hub.layout",
    "RAP_DIR": "rap_hf.hub.layout",
    "REPORT_PATH": "rap_hf.hub.layout",
    "FIGURES_DIR": "rap_hf.hub.layout",
}

__all__ = [
    "CARD_TAGS",
    "COMPLETION_COLUMNS",
    "FIGURES_DIR",
    "HubPushError",
    "PAPER_TITLE",
    "PAPER_URL",
    "PushResult",
    "RAP_DIR",
    "REPORT_PATH",
    "SCORES_CONFIG",
    "SELECTED_CONFIG",
    "build_dataset_card",
    "build_hub_report",
    "check_card_metadata",
    "load_scores",
    "load_selected",
    "push_rap_dataset",
]

if TYPE_CHECKING:
    from rap_hf.hub.card import PAPER_TITLE, PAPER_URL, build_dataset_card, build_hub_report
    from rap_hf.hub.errors import HubPushError
    from rap_hf.hub.layout import FIGURES_DIR, RAP_DIR, REPORT_PATH, SCORES_CONFIG, SELECTED_CONFIG
    from rap_hf.hub.load import load_scores, load_selected
    from rap_hf.hub.metadata import CARD_TAGS, check_card_metadata
    from rap_hf.hub.push import COMPLETION_COLUMNS, PushResult, push_rap_dataset


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rap_hf.hub' has no attribute {name!r}")
