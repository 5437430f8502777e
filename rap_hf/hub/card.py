"""The dataset card of a RAP dataset repo and the numbers behind it (pushed as ``rap/report.json``).

The card's YAML is a `DatasetCardData` built by `rap_hf.hub.metadata` (and `rap_hf.hub.shards` for
``configs``/``dataset_info``); its body is the Jinja template ``templates/dataset_card.md``, rendered by
huggingface_hub's `DatasetCard.from_template`. This module computes the values the template shows (formatted
lines, tables, citations); the wording and layout live in the template.

The generated body sits between `MARKER_START` and `MARKER_END`. `splice_card` puts a new generated body into
the repo's current card, so that text a maintainer added above or below the markers survives a re-push.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import datasets
from datasets import DatasetDict
from huggingface_hub import DatasetCard, DatasetCardData

from rap_hf import __version__
from rap_hf.columns import SCORE_COLUMNS
from rap_hf.config import RAPSelectionConfig
from rap_hf.hub.layout import SCORES_CONFIG, SELECTED_CONFIG
from rap_hf.hub.metadata import CARD_TAGS, SourceInfo
from rap_hf.hub.provenance import ScoringModel
from rap_hf.report.summary import SUMMARY_COLUMNS, build_report
from rap_hf.selection import SELECTED_COLUMN, SELECTED_STAGES, STAGE_COLUMN, STAGES, stage_counts

__all__ = [
    "CARD_TAGS",
    "DATASET_CARD_TEMPLATE",
    "MARKER_END",
    "MARKER_START",
    "PAPER_TITLE",
    "PAPER_URL",
    "build_dataset_card",
    "build_hub_report",
    "generated_part",
    "hub_report_json",
    "splice_card",
]

DATASET_CARD_TEMPLATE = Path(__file__).parent / "templates" / "dataset_card.md"
"""The Jinja template of the card (YAML block and body); `build_dataset_card` fills its variables."""
PAPER_TITLE = "Truth in the Few: High-Value Data Selection for Efficient Multi-Modal Reasoning"
PAPER_URL = "https://arxiv.org/abs/2506.04755"
MARKER_START = "<!-- rap-hf:generated:start (rap-hf rewrites everything up to the end marker on each push; edit above or below) -->"
MARKER_END = "<!-- rap-hf:generated:end -->"
PAPER_CITATION = f"""@misc{{rap2025truthinthefew,
  title         = {{{PAPER_TITLE}}},
  author        = {{Li, Shenshen and others}},
  year          = {{2025}},
  eprint        = {{2506.04755}},
  archivePrefix = {{arXiv}},
  url           = {{{PAPER_URL}}}
}}"""
_SOURCE_COLUMN_MEANINGS = {
    "prompt": "the question (TRL conversational format: a list of messages)",
    "image": "the image",
    "images": "the images",
    "solution": "the ground-truth answer",
}
# Score columns the template's column table documents; any other rap_* column gets a generic line.
_DOCUMENTED_SCORE_COLUMNS = (*SCORE_COLUMNS, STAGE_COLUMN, SELECTED_COLUMN)
_FIGURE_ALT = (
    "Four panels: (a) rows per selection stage; (b) CDE by stage with the lambda_c threshold; "
    "(c) accuracy with the image against accuracy without it; (d) the ACE score with the lambda_a threshold"
)


# ------------------------------------------------------------------------------------------------ report


def build_hub_report(
    annotated: DatasetDict,
    config: RAPSelectionConfig | None,
    *,
    scoring: Mapping[str, Any] | None = None,
    drop_completions: bool = False,
    selected_splits: list[str] | None = None,
    source: SourceInfo | None = None,
    grid: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The numbers behind the card (also pushed as ``rap/report.json``): `build_report` over all splits,
    rows/selected/counts per split, the splits of each config (``selected`` absent when nothing is selected),
    the selection config (None when unknown), the publishable scoring metadata
    (`rap_hf.hub.provenance.public_scoring`), the source dataset and the rollout grid.
    ``selected_splits`` defaults to the splits with at least one selected row."""
    columns = [
        c for c in (*SUMMARY_COLUMNS, STAGE_COLUMN, SELECTED_COLUMN) if c in _common_columns(annotated)
    ]
    combined = datasets.concatenate_datasets([ds.select_columns(columns) for ds in annotated.values()])
    # build_report adds the degenerate-score warnings of the data and of the run (extra["scoring"]).
    extra = {"scoring": dict(scoring)} if scoring is not None else None
    report = build_report(combined, config if config is not None else RAPSelectionConfig(), extra)
    report["config"] = RAPSelectionConfig.of(config).to_dict() if config is not None else None
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
    report["configs"] = {SCORES_CONFIG: {"splits": list(annotated)}}
    if selected_splits:
        report["configs"][SELECTED_CONFIG] = {
            "splits": list(selected_splits),
            "drop_completions": drop_completions,
        }
    report["scoring"] = dict(scoring) if scoring is not None else None
    report["source"] = (
        {key: getattr(source, key) for key in ("name", "hub_id", "license", "language", "citation")}
        if source is not None
        else None
    )
    report["grid"] = dict(grid) if grid is not None else None
    report["rap_hf_version"] = __version__
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
    card_data: DatasetCardData,
    report: Mapping[str, Any],
    config: RAPSelectionConfig | None,
    model: ScoringModel | None = None,
    source: SourceInfo | None = None,
    figure: str | None = None,
    figure_captions: tuple[str, ...] = (),
    drop_completions: bool = False,
    revision: str | None = None,
    endpoint: str = "https://huggingface.co",
    existing_text: str | None = None,
) -> DatasetCard:
    """The dataset card of a RAP dataset repo.

    Args:
        annotated: the annotated dataset (every split).
        repo_id: the dataset repo.
        card_data: the YAML metadata (`rap_hf.hub.metadata.card_metadata` plus ``configs``/``dataset_info``).
        report: `build_hub_report`'s numbers.
        config: the selection config (None: not recorded).
        model: the scoring model (`rap_hf.hub.provenance.describe_model`); None: not recorded.
        source: the source dataset; None: not recorded.
        figure: path in the repo of the figure grid, and ``figure_captions`` its panel captions.
        drop_completions: whether ``selected`` lacks the rollout texts.
        revision: the branch pushed to (shown in the loading code).
        endpoint: the Hub's URL, for links to the model and the source.
        existing_text: the repo's current README; text outside its rap-hf markers is kept (`splice_card`).
    """
    model = model or ScoringModel(kind="unknown")
    values = _template_values(
        annotated,
        repo_id,
        report,
        config=config,
        model=model,
        source=source,
        figure=figure,
        figure_captions=figure_captions,
        drop_completions=drop_completions,
        revision=revision,
        endpoint=endpoint,
        pretty_name=card_data.get("pretty_name") or repo_id.split("/")[-1],
        card_license=card_data.get("license"),
    )
    rendered = DatasetCard.from_template(card_data, template_path=str(DATASET_CARD_TEMPLATE), **values)
    return splice_card(rendered, existing_text)


def splice_card(rendered: DatasetCard, existing_text: str | None) -> DatasetCard:
    """``rendered``'s YAML and generated body, with the text of ``existing_text`` outside its markers.

    - existing card with both markers: what is above and below them is kept, the part between is replaced;
    - existing card without markers (written by hand, or by an older rap-hf whose card started with the same
      title): a hand-written body is kept below the generated part, an older rap-hf body is replaced;
    - no existing card: the rendered card as is.
    """
    if not existing_text:
        return rendered
    body = DatasetCard(existing_text, ignore_metadata_errors=True).text
    generated = generated_part(rendered.text)
    if generated is None:  # a template without markers: nothing to splice into
        return rendered
    if MARKER_START in body and MARKER_END in body:
        before, rest = body.split(MARKER_START, 1)
        _, after = rest.split(MARKER_END, 1)
        text = before + generated + after
    elif not body.strip() or "RAP scores and selected subset" in body:
        text = rendered.text
    else:
        text = rendered.text.rstrip("\n") + "\n\n" + body.lstrip("\n")
    return DatasetCard(f"---\n{rendered.data.to_yaml()}\n---\n{text}")


def generated_part(text: str) -> str | None:
    """The part of a card's text between the rap-hf markers (markers included), None without them."""
    start, end = text.find(MARKER_START), text.find(MARKER_END)
    if start < 0 or end < start:
        return None
    return text[start : end + len(MARKER_END)]


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


def _number(value: float) -> str:
    """A threshold as Python writes it (0.5, -1.0 -> -1, 1e-05)."""
    return f"{value:g}"


def selection_line(config: RAPSelectionConfig | None) -> str:
    """The selection settings in one line: λc, λa and the ACE column, DRM, budget."""
    if config is None:
        return "not recorded (the dataset was pushed already annotated, without its selection config)"
    guard = getattr(config, "ace_length_guard", 0)  # responses shorter than this are not judged by ACE
    ace_rule = f"ACE mode `{config.ace_mode}`; reject above" + (
        f"; responses under {guard} tokens not judged" if guard else ""
    )
    parts = [
        f"λc = {_number(config.lambda_c)} (keep `rap_cde` ≥ λc)",
        f"λa = {_number(config.lambda_a)} on `{config.active_ace_column}` ({ace_rule})",
    ]
    if not config.use_drm:
        parts.append("DRM off")
    elif config.drm_k is not None:
        parts.append(f"DRM on, at most {config.drm_k} swaps")
    elif config.drm_ratio is not None:
        parts.append(f"DRM on, at most ⌊{_number(config.drm_ratio)} × kept⌋ swaps")
    else:
        parts.append("DRM on, no cap")
    if config.target_size is not None:
        parts.append(f"budget: {config.target_size} rows")
    elif config.target_ratio is not None:
        parts.append(f"budget: {_number(100 * config.target_ratio)}% of scored rows")
    else:
        parts.append("no budget")
    return "; ".join(parts)


def scoring_line(rap_config: Mapping[str, Any] | None) -> str:
    """The scoring settings of the actual run (its recorded ``rap_config``) in one line."""
    if not rap_config:
        return "settings not recorded"
    get = rap_config.get
    parts = []
    if get("num_rollouts") is not None:
        parts.append(f"M = {get('num_rollouts')} rollouts per arm (with and without the image)")
    for key in ("max_new_tokens", "temperature", "top_p", "seed"):
        if get(key) is not None:
            parts.append(f"{key} = {_fmt(get(key))}")
    if get("compute_ace") is False:
        parts.append("ACE not computed")
    elif get("sigma") is not None:
        parts.append(f"ACE σ = {_fmt(get('sigma'))}, min span {get('ace_min_span')}")
    if get("system_prompt"):
        parts.append("with a system prompt (in the scoring configuration below)")
    if get("batch_size") is not None:
        parts.append(f"batch_size = {get('batch_size')} (does not change scores)")
    return ", ".join(parts)


def grid_line(grid: Mapping[str, Any] | None) -> str:
    """What "on the rollout grid" means for these scores."""
    m = (grid or {}).get("num_rollouts")
    if not m:
        return "the number of rollouts was not recorded"
    if (grid or {}).get("on_grid"):
        inferred = (
            f" (M = {m} inferred from the scores: the run did not record it)"
            if (grid or {}).get("source") != "recorded"
            else ""
        )
        return (
            f"accuracies and `rap_cde` are exact multiples of 1/{m}{inferred}, each stored as the float nearest "
            f"to k/{m}, so a threshold at a multiple of 1/{m} compares exactly: `rap_cde == λc` is kept"
        )
    return (
        f"M = {m}, but some rewards were fractional (a custom reward function), so some scores are not "
        "multiples of 1/M; selection compares `rap_cde` with λc up to 1e-9 (float noise)"
    )


def _reselect_lambda(config: RAPSelectionConfig | None, m: int | None) -> str:
    """The example λc of the card's re-selection snippet: one grid step above the current one, written so
    that Python evaluates it to the very float the scores hold (``0.6``, or ``2 / 3`` on a grid of 3)."""
    from rap_hf.report.plots import grid_label

    current = config.lambda_c if config is not None else 0.5
    if not m:
        return _number(min(1.0, current + 0.1))
    k = min(m, math.floor(current * m + 1e-9) + 1)
    label = grid_label(k, m)
    return label.replace("/", " / ") if "/" in label else label


def _model_md(model: ScoringModel, endpoint: str) -> str:
    if model.kind == "hub":
        text = f"[`{model.hub_id}`]({endpoint}/{model.hub_id})"
        if model.commit:
            text += f" at commit [`{model.commit[:12]}`]({endpoint}/{model.hub_id}/commit/{model.commit})"
            if model.commit_source == "resolved at push time":
                text += f" (revision `{model.revision or 'main'}` resolved when pushing; it may have moved since scoring)"
        elif model.revision:
            text += f", revision `{model.revision}` (commit not resolved)"
        else:
            text += " (commit not recorded)"
        return text
    if model.kind == "local":
        name = f" `{model.local_name}`" if model.local_name else ""
        return f"a local checkpoint{name} (not on the Hub)"
    return "not recorded"


def _snippet_comment(model: ScoringModel) -> str:
    if model.kind == "hub":
        return "the model that scored the data; rap_hf's accuracy_reward is the default reward"
    if model.kind == "local":
        name = f" ({model.local_name})" if model.local_name else ""
        return f"replace: the data was scored with a local checkpoint{name}, not on the Hub"
    return "replace: the scoring model was not recorded, and RAP scores are specific to it"


def _source_md(source: SourceInfo | None, endpoint: str, scoring: Mapping[str, Any] | None) -> str:
    if source is None:
        return "not recorded"
    text = f"[`{source.hub_id}`]({endpoint}/datasets/{source.hub_id})" if source.hub_id else source.name
    if scoring and scoring.get("dataset_config"):
        text += f", config `{scoring['dataset_config']}`"
    if scoring and scoring.get("split"):
        text += f", split `{scoring['split']}`"
    return text


def _source_license_md(source: SourceInfo | None, card_license: Any) -> str:
    declared = ""
    if card_license and (source is None or card_license != source.license):
        declared = f"; this dataset's card declares `{card_license}`"
    if source is None or not source.hub_id:
        return (
            "not recorded (the source is not a Hub dataset): state it with `license:` in the card" + declared
        )
    if source.license:
        return f"`{source.license}` (from the source dataset's card){declared}"
    if source.card_found:
        return "the source dataset's card declares none: check its terms before reuse" + declared
    return "the source dataset's card could not be read: check its terms before reuse" + declared


def _citation_key(repo_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", repo_id).strip("_").lower()


def _dataset_citation(
    repo_id: str, title: str, model: ScoringModel, source: SourceInfo | None, endpoint: str
) -> str:
    scored_with = model.hub_id or (
        f"a local checkpoint ({model.local_name})" if model.local_name else "a VLM"
    )
    note = f"RAP selection (arXiv 2506.04755) scored with {scored_with}"
    if source is not None and source.hub_id:
        note += f"; source: {source.hub_id}"
    return (
        f"@misc{{{_citation_key(repo_id)},\n"
        f"  title        = {{{title}}},\n"
        f"  howpublished = {{\\url{{{endpoint}/datasets/{repo_id}}}}},\n"
        f"  note         = {{{note}}}\n"
        "}"
    )


def _feature_kind(feature: Any) -> str:
    if isinstance(feature, datasets.Value):
        return feature.dtype
    name = type(feature).__name__
    return name if name not in ("list", "dict") else name


def _source_columns(annotated: DatasetDict) -> list[tuple[str, str, str]]:
    features = next(iter(annotated.values())).features
    rows = []
    for column, feature in features.items():
        if column.startswith("rap_"):
            continue
        meaning = _SOURCE_COLUMN_MEANINGS.get(column, "from the source dataset")
        rows.append((column, _feature_kind(feature), meaning))
    return rows


def _template_values(
    annotated: DatasetDict,
    repo_id: str,
    report: Mapping[str, Any],
    *,
    config: RAPSelectionConfig | None,
    model: ScoringModel,
    source: SourceInfo | None,
    figure: str | None,
    figure_captions: tuple[str, ...],
    drop_completions: bool,
    revision: str | None,
    endpoint: str,
    pretty_name: str,
    card_license: Any = None,
) -> dict[str, Any]:
    """The variables of `DATASET_CARD_TEMPLATE`. Everything arrives formatted, because
    `DatasetCard.from_template` renders with a plain Jinja environment (no custom filters)."""
    splits = list(report["splits"])
    selected_cfg = report["configs"].get(SELECTED_CONFIG)
    selected_splits = selected_cfg["splits"] if selected_cfg else []
    scoring = report.get("scoring") or None
    grid = report.get("grid") or {}
    m = grid.get("num_rollouts")
    source_name = source.hub_id or source.name if source is not None else None
    title = pretty_name
    named = f"`{source_name}`" if source and source.hub_id else (source_name or "the source dataset")
    summary = (
        f"RAP data-selection scores for every row of {named}, and the subset RAP selects "
        f"({report['selected']} of {report['scored_rows']} scored rows), for GRPO training of multimodal "
        "reasoning."
    )
    return {
        "marker_start": MARKER_START,
        "marker_end": MARKER_END,
        "title": title,
        "summary": summary,
        "repo_id": repo_id,
        "paper_title": PAPER_TITLE,
        "paper_url": PAPER_URL,
        "rap_hf_version": __version__,
        "selected_config": SELECTED_CONFIG,
        "scores_config": SCORES_CONFIG,
        "stage_column": STAGE_COLUMN,
        "selected_column": SELECTED_COLUMN,
        "stages": list(STAGES),
        "selected_stages": list(SELECTED_STAGES),
        "has_selected": bool(selected_cfg),
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
        "selection_line": selection_line(config),
        "scoring_line": scoring_line((scoring or {}).get("rap_config")),
        "grid_line": grid_line(grid),
        "snippet_model": model.snippet_name,
        "snippet_model_comment": _snippet_comment(model),
        "reselect_lambda_c": _reselect_lambda(config, m),
        "reselect_lambda_a": _number(config.lambda_a) if config is not None else "0.1",
        "stage_rows": [
            (
                stage,
                [report["splits"][name]["counts"][stage] for name in splits],
                report["counts"][stage],
            )
            for stage in STAGES
        ],
        "figure": figure,
        "figure_alt": _FIGURE_ALT,
        "figure_captions": list(figure_captions),
        "score_rows": [
            (
                column,
                [_fmt(cell) for cell in _score_cells(summary_, report["scores_selected"].get(column, {}))],
            )
            for column, summary_ in report["scores"].items()
        ],
        "scoring_rows": _scoring_rows(scoring, report, model, source, endpoint),
        "selection_json": json.dumps(report["config"], indent=2, sort_keys=True)
        if report["config"]
        else None,
        "scoring_json": json.dumps(scoring["rap_config"], indent=2, sort_keys=True)
        if scoring and scoring.get("rap_config")
        else None,
        "model_md": _model_md(model, endpoint),
        "source_md": _source_md(source, endpoint, scoring),
        "source_license_md": _source_license_md(source, card_license),
        "source_citation": source.citation if source is not None else None,
        "source_citation_note": (
            f"The source dataset's card has no BibTeX entry: see [its card]({endpoint}/datasets/{source.hub_id}) "
            "for how to cite it."
            if source is not None and source.hub_id
            else "Cite the source dataset as its authors ask."
        ),
        "source_columns": _source_columns(annotated),
        "extra_score_columns": [
            column
            for column in next(iter(annotated.values())).column_names
            if column.startswith("rap_") and column not in _DOCUMENTED_SCORE_COLUMNS
        ],
        "has_ace_length": "rap_ace_length" in next(iter(annotated.values())).column_names,
        "warnings": list(report.get("warnings") or []),
        "rollouts_text": f"M = {m}" if m else "a few",
        "dataset_citation": _dataset_citation(repo_id, title, model, source, endpoint),
        "paper_citation": PAPER_CITATION,
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


def _scoring_rows(
    scoring: Mapping[str, Any] | None,
    report: Mapping[str, Any],
    model: ScoringModel,
    source: SourceInfo | None,
    endpoint: str,
) -> list[tuple[str, str]] | None:
    """The (label, value) rows of the card's scoring table; None when nothing was recorded."""
    if not scoring:
        return None
    seconds = scoring.get("scoring_seconds")
    hardware = scoring.get("hardware")
    gpus = scoring.get("num_gpus")
    rows: list[tuple[str, str]] = [
        ("scoring model", _model_md(model, endpoint)),
        ("source dataset", _source_md(source, endpoint, scoring)),
        ("rows scored", f"{report['rows']} ({report['counts']['error']} not scored: stage `error`)"),
        ("hardware", hardware or "not recorded"),
    ]
    if scoring.get("num_processes") is not None:
        rows.append(("processes", f"{scoring['num_processes']}"))
    rows.append(("scoring wall-clock", _duration(float(seconds)) if seconds is not None else "not recorded"))
    if seconds is not None and isinstance(gpus, int) and gpus > 0:
        rows.append(
            ("GPU-hours", f"{float(seconds) * gpus / 3600:.2f} ({gpus} GPU{'s' if gpus > 1 else ''})")
        )
    if scoring.get("generated_tokens") is not None:
        rows.append(("generated tokens", f"{scoring['generated_tokens']}"))
    return rows
