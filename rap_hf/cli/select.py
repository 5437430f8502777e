"""`rap-hf select`: select cognitive samples from a `rap-hf score` folder (no model) and write a report.

    rap-hf select --scores rap_outputs/scores --output rap_outputs/selection [--lambda_c 0.5 ...]

Writes OUTPUT/annotated/ (every row, with the selection columns), OUTPUT/selected/ (the kept rows),
report.json, report.md and its figures. The selection fields of `RAPConfig` are flags too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl import TrlParser

from rap_hf.config import RAPConfig
from rap_hf.errors import RAPUserError
from rap_hf.scoring.checkpointing import SCORING_METADATA


@dataclass
class SelectArguments:
    """Arguments of `rap-hf select` (the selection fields of RAPConfig are flags too)."""

    scores: str = field(metadata={"help": "Folder written by `rap-hf score`."})
    output: str = field(metadata={"help": "Folder for annotated/, selected/, report.json and report.md."})


def make_parser(prog: str | None = None) -> TrlParser:
    """The parser of `rap-hf select`: (`SelectArguments`, `RAPConfig`), with `--config FILE.yaml`."""
    return TrlParser((SelectArguments, RAPConfig), prog=prog)


def scores_folder(path: str | Path) -> Path:
    """``--scores`` as a `Path`.

    Raises:
        RAPUserError: it does not exist.
    """
    folder = Path(path)
    if not folder.exists():
        raise RAPUserError(f"--scores {folder} does not exist")
    return folder


def read_scoring_metadata(folder: Path) -> dict[str, Any] | None:
    """The ``rap_scoring.json`` of a `rap-hf score` folder (None when there is none)."""
    path = folder / SCORING_METADATA
    return json.loads(path.read_text()) if path.exists() else None


def main(args: SelectArguments, config: RAPConfig) -> dict[str, Any]:
    """Select from a scored folder; write annotated/, selected/ and the report; return the report."""
    import datasets

    from rap_hf.report.plots import plot_histograms_by_stage, plot_stage_counts
    from rap_hf.report.summary import build_report, write_report
    from rap_hf.selection import select_cognitive_samples

    scores = scores_folder(args.scores)
    annotated = select_cognitive_samples(datasets.load_from_disk(str(scores)), config)
    output = Path(args.output)
    annotated.save_to_disk(str(output / "annotated"))
    annotated.filter(lambda selected: selected, input_columns="rap_selected").save_to_disk(
        str(output / "selected")
    )
    extra: dict[str, Any] = {}
    scoring = read_scoring_metadata(scores)
    if scoring is not None:
        extra["scoring"] = scoring
    figures = [
        plot_stage_counts(annotated, output),
        *plot_histograms_by_stage(annotated, output, config=config),
    ]
    extra["figures"] = [figure.name for figure in figures]
    report = build_report(annotated, config, extra)
    _, md_path = write_report(report, output)
    print(
        f"selected {report['selected']} of {report['scored_rows']} scored rows "
        f"({100 * report['selection_ratio']:.1f}%) -> {output / 'selected'}\nreport: {md_path}"
    )
    for warning in report["warnings"]:  # degenerate scores, and why nothing was selected when nothing was
        print(f"WARNING: {warning}")
    return report
