"""`rap-hf` command line: TRL-style subcommands, every flag also settable from a YAML `--config` file.

rap-hf score  --model M --dataset D --output DIR [RAPConfig flags]
rap-hf select --scores DIR --output DIR2 [selection flags]
rap-hf demo   [--output DIR]
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from rap_hf.config import RAPConfig

logger = logging.getLogger("rap_hf")

SCORING_METADATA = "rap_scoring.json"


@dataclass
class ScoreArguments:
    """Arguments of `rap-hf score` (the RAPConfig fields are flags too)."""

    model: str = field(
        metadata={"help": "Hub id or local directory of the scoring VLM (the base model you will train)."}
    )
    dataset: str = field(
        metadata={
            "help": "Dataset: a save_to_disk folder, a parquet/json/csv file, a folder of data files, "
            "builtin:NAME, or a Hub id."
        }
    )
    output: str = field(metadata={"help": "Folder to write the scored dataset to (save_to_disk format)."})
    dataset_config: str | None = field(
        default=None, metadata={"help": "Dataset configuration name (Hub datasets)."}
    )
    split: str = field(default="train", metadata={"help": "Split to score."})
    max_rows: int | None = field(
        default=None, metadata={"help": "Score only the first N rows (for a quick look)."}
    )
    revision: str | None = field(default=None, metadata={"help": "Model revision (branch, tag or commit)."})
    torch_dtype: str = field(
        default="auto", metadata={"help": "Model dtype: auto, bfloat16, float16, float32."}
    )
    device: str | None = field(default=None, metadata={"help": "Device to score on, e.g. cuda:0 or cpu."})
    attn_implementation: str | None = field(
        default=None, metadata={"help": "sdpa, eager, flash_attention_2, ..."}
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow custom model code from the repo (off by default)."}
    )


@dataclass
class SelectArguments:
    """Arguments of `rap-hf select` (the selection fields of RAPConfig are flags too)."""

    scores: str = field(metadata={"help": "Folder written by `rap-hf score`."})
    output: str = field(metadata={"help": "Folder for annotated/, selected/, report.json and report.md."})


@dataclass
class DemoArguments:
    """Arguments of `rap-hf demo`: score and select a built-in dataset with an offline tiny model."""

    output: str = field(default="rap_outputs/demo", metadata={"help": "Folder for the demo's outputs."})
    rows: int = field(default=24, metadata={"help": "Rows of the built-in dataset to score."})
    num_rollouts: int = field(default=3, metadata={"help": "Rollouts per arm."})
    max_new_tokens: int = field(default=24, metadata={"help": "Maximum new tokens per rollout."})
    seed: int = field(default=0, metadata={"help": "Seed of the model, the data and the rollouts."})


def _parse(dataclass_types, argv: list[str], prog: str):
    from trl import TrlParser

    parser = TrlParser(dataclass_types, prog=prog)
    return parser.parse_args_and_config(argv)


def _dtype(name: str):
    import torch

    return name if name == "auto" else getattr(torch, name)


def score_main(args: ScoreArguments, config: RAPConfig) -> Path:
    """Score `args.dataset` and save it (plus `rap_scoring.json` metadata) to `args.output`."""
    from rap_hf.data import load_any_dataset
    from rap_hf.filter import RAPDataFilter

    flt = RAPDataFilter(
        args.model,
        config=config,
        trust_remote_code=args.trust_remote_code,
        torch_dtype=_dtype(args.torch_dtype),
        device=args.device,
        attn_implementation=args.attn_implementation,
        revision=args.revision,
    )
    dataset = load_any_dataset(args.dataset, config_name=args.dataset_config, split=args.split)
    flt.resolve_columns(dataset)  # fail fast on column errors, before any model work
    if args.max_rows is not None:
        dataset = dataset.select(range(min(args.max_rows, len(dataset))))
    start = time.perf_counter()
    scored = flt.score(dataset)
    seconds = time.perf_counter() - start
    output = Path(args.output)
    scored.save_to_disk(str(output))
    metadata = {
        "model": args.model,
        "revision": args.revision,
        "dataset": args.dataset,
        "dataset_config": args.dataset_config,
        "split": args.split,
        "rows": len(scored),
        "scoring_seconds": seconds,
        "generated_tokens": flt.stats.generated_tokens,
        "errors": flt.stats.errors,
        "error_reasons": flt.stats.error_reasons,
        "rap_config": config.to_dict(),
    }
    (output / SCORING_METADATA).write_text(json.dumps(metadata, indent=2))
    print(f"scored {len(scored)} rows in {seconds:.1f}s ({flt.stats.errors} errors) -> {output}")
    return output


def select_main(args: SelectArguments, config: RAPConfig) -> dict:
    """Select from a scored folder; write annotated/, selected/ and the report; return the report."""
    import datasets

    from rap_hf.report import build_report, write_report
    from rap_hf.selection import select_cognitive_samples

    scores = Path(args.scores)
    if not scores.exists():
        raise SystemExit(f"error: --scores {scores} does not exist")
    scored = datasets.load_from_disk(str(scores))
    annotated = select_cognitive_samples(scored, config)
    output = Path(args.output)
    annotated.save_to_disk(str(output / "annotated"))
    annotated.filter(lambda selected: selected, input_columns="rap_selected").save_to_disk(
        str(output / "selected")
    )
    extra = {}
    metadata_path = scores / SCORING_METADATA
    if metadata_path.exists():
        extra["scoring"] = json.loads(metadata_path.read_text())
    report = build_report(annotated, config, extra)
    json_path, md_path = write_report(report, output)
    print(
        f"selected {report['selected']} of {report['scored_rows']} scored rows "
        f"({100 * report['selection_ratio']:.1f}%) -> {output / 'selected'}\nreport: {md_path}"
    )
    return report


def demo_main(args: DemoArguments) -> dict:
    """Score and select a built-in dataset with an offline tiny model, end to end."""
    from rap_hf.data import tiny_synthetic
    from rap_hf.tiny_models import save_tiny_vlm

    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    model_dir = save_tiny_vlm(output / "model", seed=args.seed)
    data_dir = output / "data"
    tiny_synthetic(args.rows, seed=args.seed).save_to_disk(str(data_dir))
    config = RAPConfig(
        num_rollouts=args.num_rollouts, max_new_tokens=args.max_new_tokens, seed=args.seed, batch_size=8
    )
    score_main(
        ScoreArguments(model=str(model_dir), dataset=str(data_dir), output=str(output / "scores")), config
    )
    report = select_main(
        SelectArguments(scores=str(output / "scores"), output=str(output / "selection")), config
    )
    print(
        "demo outputs:\n"
        f"  model:    {model_dir}\n  scores:   {output / 'scores'}\n"
        f"  selected: {output / 'selection' / 'selected'}\n  report:   {output / 'selection' / 'report.md'}"
    )
    return report


# name -> (one-line help, argument dataclasses, runner taking the parsed dataclasses). A new subcommand is
# one entry here plus its runner.
COMMANDS = {
    "score": (
        "Score a dataset with RAP (rollouts, rewards, attention) and save the score columns.",
        (ScoreArguments, RAPConfig),
        score_main,
    ),
    "select": (
        "Select cognitive samples from a scored dataset (no model) and write a report.",
        (SelectArguments, RAPConfig),
        select_main,
    ),
    "demo": (
        "Run score + select end to end on built-in data with an offline tiny model.",
        (DemoArguments,),
        demo_main,
    ),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        lines = ["usage: rap-hf {" + ",".join(COMMANDS) + "} [--config FILE.yaml] [flags]", "", "commands:"]
        lines += [f"  {name:<8} {help_text}" for name, (help_text, _, _) in COMMANDS.items()]
        lines += ["", "Run `rap-hf COMMAND --help` for the flags of a command."]
        print("\n".join(lines))
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nerror: unknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    name, rest = argv[0], argv[1:]
    _, types, runner = COMMANDS[name]
    try:
        parsed = _parse(types, rest, prog=f"rap-hf {name}")
        runner(*parsed)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
