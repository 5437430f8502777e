"""Selection reports: counts per stage and score distributions, as JSON and Markdown."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from rap_hf.columns import NUMERIC_SCORE_COLUMNS, STAGES
from rap_hf.config import RAPConfig, RAPSelectionConfig
from rap_hf.report.ace_length import ace_length_markdown, ace_length_table

#: The numeric score columns whose distributions a report summarises.
SUMMARY_COLUMNS = NUMERIC_SCORE_COLUMNS


def _summary(values: np.ndarray) -> dict[str, float | int | None]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return {
            "count": 0,
            "mean": None,
            "std": None,
            "min": None,
            "p10": None,
            "p50": None,
            "p90": None,
            "max": None,
        }
    q = np.quantile(finite, [0.1, 0.5, 0.9])
    return {
        "count": int(finite.size),
        "mean": float(finite.mean()),
        "std": float(finite.std()),
        "min": float(finite.min()),
        "p10": float(q[0]),
        "p50": float(q[1]),
        "p90": float(q[2]),
        "max": float(finite.max()),
    }


def build_report(
    annotated: datasets.Dataset, config: RAPConfig, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Counts per stage, selection ratio, score summaries (overall and over the selected rows), ACE rejections
    by response length (`rap_hf.report.ace_length`) and ``warnings``: the degenerate-score alarms of the data
    (`rap_hf.scoring.alarms`) and of its ``rap_scoring.json`` (``extra["scoring"]``), and why nothing was
    selected when nothing was."""
    from rap_hf.scoring.alarms import score_warnings, zero_selection_reason

    stages = (
        np.asarray(annotated["rap_stage"], dtype=object) if len(annotated) else np.asarray([], dtype=object)
    )
    selected = (
        np.asarray(annotated["rap_selected"], dtype=bool) if len(annotated) else np.asarray([], dtype=bool)
    )
    counts = {stage: int((stages == stage).sum()) for stage in STAGES}
    scored_rows = len(annotated) - counts["error"]
    report: dict[str, Any] = {
        "rows": len(annotated),
        "scored_rows": scored_rows,
        "selected": int(selected.sum()),
        "selection_ratio": (float(selected.sum()) / scored_rows) if scored_rows else 0.0,
        "counts": counts,
        "config": config.to_dict(),
        "scores": {},
        "scores_selected": {},
    }
    for column in SUMMARY_COLUMNS:
        if column in annotated.column_names:
            values = np.asarray(annotated[column], dtype=float)
            report["scores"][column] = _summary(values)
            report["scores_selected"][column] = _summary(values[selected])
    selection_config = RAPSelectionConfig.of(config)
    report["ace_by_length"] = ace_length_table(annotated, selection_config)
    scoring = (extra or {}).get("scoring") or {}
    if "warnings" in scoring:  # computed when the scores were written, with the answer column they used
        warnings = list(scoring["warnings"])
    else:  # scored through the API, or before scoring wrote warnings
        warnings = score_warnings(annotated, getattr(config, "answer_column", None))
    zero = zero_selection_reason(counts, selection_config) if len(annotated) else None
    report["warnings"] = warnings + ([zero] if zero else [])
    if extra:
        report.update(extra)
    return report


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.4g}"
    return str(value)


def report_markdown(report: dict[str, Any]) -> str:
    lines = [
        "# RAP selection report",
        "",
        f"- rows: {report['rows']} (scored: {report['scored_rows']}, errors: {report['counts']['error']})",
        f"- selected: {report['selected']} ({100 * report['selection_ratio']:.1f}% of scored rows)",
        "",
        "## Rows per stage",
        "",
        "| stage | rows |",
        "|---|---|",
    ]
    if report.get("warnings"):  # first, where nobody can miss them: scores that cannot select anything
        warning_lines = ["## Warnings", ""]
        for warning in report["warnings"]:
            warning_lines += ["```text", warning, "```", ""]
        lines[5:5] = warning_lines
    lines += [f"| {stage} | {count} |" for stage, count in report["counts"].items()]
    if report.get("figures"):
        lines += ["", "## Figures", ""]
        lines += [f"![{name}]({name})" for name in report["figures"]]
    for key, title in (("scores", "all scored rows"), ("scores_selected", "selected rows")):
        lines += [
            "",
            f"## Scores, {title}",
            "",
            "| column | n | mean | std | min | p10 | p50 | p90 | max |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for column, s in report[key].items():
            cells = [s["count"], s["mean"], s["std"], s["min"], s["p10"], s["p50"], s["p90"], s["max"]]
            lines.append(f"| {column} | " + " | ".join(_fmt(c) for c in cells) + " |")
    if report.get("ace_by_length"):
        lines += [
            "",
            "## ACE by response length",
            "",
            "Rows that passed CDE, by the length of the response ACE read (rap_ace_length). Responses shorter "
            "than ace_min_length are not judged, so ACE never rejects a row only for being short; the last "
            "column is what the paper's rule as written (ace_mode='paper_exact') would reject.",
            "",
            *ace_length_markdown(report["ace_by_length"]),
        ]
    lines += ["", "## Configuration", "", "```json", json.dumps(report["config"], indent=2), "```", ""]
    return "\n".join(lines)


def write_report(report: dict[str, Any], directory: str | Path) -> tuple[Path, Path]:
    """Write `report.json` and `report.md` into `directory`; return their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / "report.json", directory / "report.md"
    json_path.write_text(json.dumps(report, indent=2, default=str))
    md_path.write_text(report_markdown(report))
    return json_path, md_path
