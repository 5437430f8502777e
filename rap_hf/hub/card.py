"""The dataset card of a RAP dataset repo and the numbers behind it (pushed as ``rap/report.json``).

The card's YAML keeps what `datasets` wrote and adds RAP's; its Markdown body is the Jinja template
``templates/dataset_card.md``, rendered by huggingface_hub's `DatasetCard.from_template`. This module
computes the values the template shows (counts, formatted scores, JSON of the configs); the wording and
layout live in the template.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import datasets
from datasets import DatasetDict
from huggingface_hub import DatasetCard, DatasetCardData

from rap_hf.config import RAPConfig
from rap_hf.hub.layout import SCORES_CONFIG, SELECTED_CONFIG
from rap_hf.report.summary import SUMMARY_COLUMNS, build_report
from rap_hf.selection import SELECTED_COLUMN, SELECTED_STAGES, STAGE_COLUMN, STAGES, stage_counts

DATASET_CARD_TEMPLATE = Path(__file__).parent / "templates" / "dataset_card.md"
"""The Jinja template of the card (YAML block and body); `build_dataset_card` fills its variables."""
CARD_TAGS = ("rap", "rap-hf", "data-selection", "multimodal-reasoning", "reinforcement-learning")
PAPER_TITLE = "Truth in the Few: High-Value Data Selection for Efficient Multi-Modal Reasoning"
PAPER_URL = "https://arxiv.org/abs/2506.04755"
_DEFAULT_MODEL_HINT = "Qwen/Qwen2.5-VL-7B-Instruct"
# Keys of the `rap-hf score` metadata (rap_scoring.json) that may hold the number of GPUs used.
_GPU_COUNT_KEYS = ("num_gpus", "gpu_count", "num_processes", "world_size")


# ------------------------------------------------------------------------------------------------ report


def build_hub_report(
    annotated: DatasetDict,
    config: RAPConfig | None,
    *,
    scoring: Mapping[str, Any] | None = None,
    drop_completions: bool = False,
    selected_splits: list[str] | None = None,
) -> dict[str, Any]:
    """The numbers behind the card (also pushed as ``rap/report.json``): `build_report` over all splits,
    rows/selected/counts per split, the splits of each config, the selection config (None when unknown) and
    the scoring metadata. ``selected_splits`` defaults to the splits with at least one selected row."""
    columns = [
        c for c in (*SUMMARY_COLUMNS, STAGE_COLUMN, SELECTED_COLUMN) if c in _common_columns(annotated)
    ]
    combined = datasets.concatenate_datasets([ds.select_columns(columns) for ds in annotated.values()])
    report = build_report(combined, config if config is not None else RAPConfig())
    report["config"] = config.to_dict() if config is not None else None
    report["splits"] = {}
    for name, ds in annotated.items():
        counts = stage_counts(ds)
        report["splits"][name] = {
            "rows": len(ds),
            "selected": sum(counts[stage] for stage in SELECTED_STAGES),
            "counts": counts,
        }
    if selected_splits is None:
        selected_splits = [name for name, split in report["splits"].items() if split["selected"]]
    report["configs"] = {
        SELECTED_CONFIG: {"splits": list(selected_splits), "drop_completions": drop_completions},
        SCORES_CONFIG: {"splits": list(annotated)},
    }
    report["scoring"] = dict(scoring) if scoring is not None else None
    return report


def hub_report_json(report: Mapping[str, Any]) -> str:
    """The text of ``rap/report.json``: strict JSON (NaN/inf become null), sorted keys, final newline, so that
    the same numbers give the same bytes and a re-push changes nothing."""
    return json.dumps(_jsonable(report), indent=2, sort_keys=True) + "\n"


def _common_columns(annotated: DatasetDict) -> set[str]:
    names = [set(ds.column_names) for ds in annotated.values()]
    return set.intersection(*names) if names else set()


def _jsonable(value: Any) -> Any:
    """Strict JSON: NaN/inf become null (Python's json would write the invalid token NaN)."""
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


# ------------------------------------------------------------------------------------------------ card


def build_dataset_card(
    annotated: DatasetDict,
    repo_id: str,
    *,
    config: RAPConfig | None,
    scoring: Mapping[str, Any] | None = None,
    report: dict[str, Any] | None = None,
    figure_paths: list[str] | None = None,
    existing_data: DatasetCardData | None = None,
    card_metadata: Mapping[str, Any] | None = None,
    drop_completions: bool = False,
    revision: str | None = None,
) -> DatasetCard:
    """Build the dataset card of a RAP dataset repo.

    The YAML keeps what `datasets` wrote (``configs``, ``dataset_info``), marks ``selected`` as the default
    config, adds the RAP tags and ``card_metadata``. The body (`DATASET_CARD_TEMPLATE`) documents RAP (with
    the paper), the scoring model and cost, the full `RAPConfig`, rows per stage, the selection ratio, the
    figures and the loading code for both configs and for `RAPGRPOTrainer`.
    """
    report = report if report is not None else build_hub_report(annotated, config, scoring=scoring)
    data = existing_data.to_dict() if existing_data is not None else {}
    tags = list(data.get("tags") or [])
    data["tags"] = tags + [tag for tag in CARD_TAGS if tag not in tags]
    data.setdefault("pretty_name", f"{repo_id.split('/')[-1]} (RAP selection)")
    configs = [dict(entry) for entry in data.get("configs") or []]
    for entry in configs:
        # `datasets` drops the flag when it re-pushes a config; setting it here keeps re-pushes idempotent.
        if entry.get("config_name") == SELECTED_CONFIG:
            entry["default"] = True
        else:
            entry.pop("default", None)
    if configs:
        data["configs"] = configs
    data.update(card_metadata or {})
    values = _template_values(
        repo_id,
        report,
        scoring=scoring,
        figure_paths=figure_paths or [],
        drop_completions=drop_completions,
        revision=revision,
    )
    return DatasetCard.from_template(
        DatasetCardData(**data), template_path=str(DATASET_CARD_TEMPLATE), **values
    )


def _template_values(
    repo_id: str,
    report: Mapping[str, Any],
    *,
    scoring: Mapping[str, Any] | None = None,
    figure_paths: list[str] | None = None,
    drop_completions: bool = False,
    revision: str | None = None,
) -> dict[str, Any]:
    """The variables of `DATASET_CARD_TEMPLATE`, from a `build_hub_report` report.

    Score cells, the scoring table and the JSON configs arrive as formatted strings, because
    `DatasetCard.from_template` renders with a plain Jinja environment: the template has no custom filters.
    Table rows are tuples.
    """
    splits = list(report["splits"])
    selected_splits = report["configs"][SELECTED_CONFIG]["splits"]
    scoring_config = (scoring or {}).get("rap_config")
    return {
        "repo_id": repo_id,
        "name": repo_id.split("/")[-1],
        "paper_title": PAPER_TITLE,
        "paper_url": PAPER_URL,
        "selected_config": SELECTED_CONFIG,
        "scores_config": SCORES_CONFIG,
        "stage_column": STAGE_COLUMN,
        "selected_column": SELECTED_COLUMN,
        "stages": list(STAGES),
        "selected_stages": list(SELECTED_STAGES),
        "n_rows": report["rows"],
        "n_scored": report["scored_rows"],
        "n_selected": report["selected"],
        "n_errors": report["counts"]["error"],
        "selection_ratio": report["selection_ratio"],
        "drop_completions": drop_completions,
        "splits": splits,
        # datasets cannot load an empty split, so a split without selected rows is missing from `selected`.
        "left_out": [name for name in splits if name not in selected_splits],
        "first_split": selected_splits[0] if selected_splits else splits[0],
        "revision_arg": f', revision="{revision}"' if revision else "",
        "model": (scoring or {}).get("model") or _DEFAULT_MODEL_HINT,
        "stage_rows": [
            (
                stage,
                [report["splits"][name]["counts"][stage] for name in splits],
                report["counts"][stage],
            )
            for stage in STAGES
        ],
        "figures": [(Path(path).stem, path) for path in figure_paths or []],
        "score_rows": [
            (
                column,
                [_fmt(cell) for cell in _score_cells(summary, report["scores_selected"].get(column, {}))],
            )
            for column, summary in report["scores"].items()
        ],
        "scoring_rows": _scoring_rows(scoring),
        "config_json": (
            json.dumps(report["config"], indent=2, sort_keys=True) if report["config"] is not None else None
        ),
        "scoring_config_json": json.dumps(scoring_config, indent=2, sort_keys=True)
        if scoring_config
        else None,
    }


def _score_cells(summary: Mapping[str, Any], selected_summary: Mapping[str, Any]) -> list[Any]:
    return [
        summary["count"],
        summary["mean"],
        summary["p10"],
        summary["p50"],
        summary["p90"],
        selected_summary.get("mean"),
    ]


def _scoring_rows(scoring: Mapping[str, Any] | None) -> list[tuple[str, str]] | None:
    """The (label, value) rows of the card's scoring table; None when nothing was recorded."""
    if not scoring:
        return None
    seconds = scoring.get("scoring_seconds")
    gpus = next((scoring[key] for key in _GPU_COUNT_KEYS if scoring.get(key) is not None), None)
    source = (
        _code(scoring.get("dataset"))
        + (f" (config `{scoring['dataset_config']}`)" if scoring.get("dataset_config") else "")
        + (f", split `{scoring['split']}`" if scoring.get("split") else "")
    )
    rows: list[tuple[str, str]] = [
        ("scoring model", _code(scoring.get("model"))),
        ("model revision", _code(scoring.get("revision"))),
        ("source dataset", source),
        ("rows scored", _fmt(scoring.get("rows"))),
        ("rows with errors", _fmt(scoring.get("errors"))),
        ("scoring wall-clock", _duration(float(seconds)) if seconds is not None else "not recorded"),
        ("GPUs", f"{gpus}" if gpus is not None else "not recorded"),
    ]
    if seconds is not None and gpus is not None:
        rows.append(("GPU-hours", f"{float(seconds) * float(gpus) / 3600:.2f}"))
    if scoring.get("generated_tokens") is not None:
        rows.append(("generated tokens", f"{scoring['generated_tokens']}"))
    return rows


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return "inf" if math.isinf(value) else f"{value:.4g}"
    return str(value)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s ({seconds / 3600:.2f} h)"


def _code(value: Any) -> str:
    return f"`{value}`" if value else "not recorded"
