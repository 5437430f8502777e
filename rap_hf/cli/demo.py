"""`rap-hf demo`: score and select built-in data end to end, offline, and write the report.

    rap-hf demo                                   # the shipped reference model rap-tiny-vl, 120 rows
    rap-hf demo --model tiny --rows 8 --output /tmp/demo   # a random tiny VLM: checks the pipeline only

Runs `rap-hf score` then `rap-hf select` into OUTPUT/scores and OUTPUT/selection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl import TrlParser

from rap_hf.cli import score, select
from rap_hf.config import RAPConfig
from rap_hf.errors import RAPUserError


@dataclass
class DemoArguments:
    """Arguments of `rap-hf demo`: score and select built-in data with the shipped reference model, offline."""

    output: str = field(default="rap_outputs/demo", metadata={"help": "Folder for the demo's outputs."})
    model: str = field(
        default="reference",
        metadata={
            "help": "'reference' (the shipped rap-tiny-vl), 'tiny' (a random tiny Qwen2.5-VL built offline: "
            "checks the pipeline only), or a model folder / Hub id."
        },
    )
    dataset: str = field(
        default="builtin:visual-arith", metadata={"help": "Dataset to score (see `rap-hf score`)."}
    )
    split: str = field(default="test", metadata={"help": "Split of the dataset."})
    rows: int = field(default=120, metadata={"help": "Rows to score."})
    num_rollouts: int = field(default=5, metadata={"help": "Rollouts per arm."})
    max_new_tokens: int = field(default=48, metadata={"help": "Maximum new tokens per rollout."})
    batch_size: int = field(default=24, metadata={"help": "Samples per scoring batch."})
    seed: int = field(default=0, metadata={"help": "Seed of the rollouts (and of the tiny model)."})


def make_parser(prog: str | None = None) -> TrlParser:
    """The parser of `rap-hf demo`: (`DemoArguments`,), with `--config FILE.yaml`."""
    return TrlParser((DemoArguments,), prog=prog)


def resolve_demo_model(model: str, output: Path, seed: int = 0) -> str:
    """The model folder or Hub id behind ``--model``: ``reference``, ``tiny`` (built into OUTPUT/model) or as is.

    Raises:
        RAPUserError: ``reference`` was asked for and the shipped reference model is not installed.
    """
    from rap_hf.demo.reference_model import reference_model_available, reference_model_path

    if model == "reference":
        if not reference_model_available():
            raise RAPUserError(
                f"the reference model is not in {reference_model_path()}; train it with `python "
                "trainers/train_reference_model.py --output_dir rap_hf/demo/assets/rap-tiny-vl` or use --model tiny"
            )
        return str(reference_model_path())
    if model == "tiny":
        from rap_hf.demo.tiny_models import save_tiny_vlm

        return str(save_tiny_vlm(output / "model", seed=seed))
    return model


def main(args: DemoArguments) -> dict[str, Any]:
    """Score and select built-in data end to end (reference model by default); return the selection report."""
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    model = resolve_demo_model(args.model, output, seed=args.seed)
    config = RAPConfig(
        num_rollouts=args.num_rollouts,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        batch_size=args.batch_size,
    )
    score_args = score.ScoreArguments(
        model=model,
        dataset=args.dataset,
        split=args.split,
        max_rows=args.rows,
        output=str(output / "scores"),
        overwrite=True,  # a demo always scores afresh (other --rows would otherwise be refused)
    )
    score.main(score_args, config)
    report = select.main(
        select.SelectArguments(scores=str(output / "scores"), output=str(output / "selection")), config
    )
    print(
        "demo outputs:\n"
        f"  model:    {model}\n  scores:   {output / 'scores'}\n"
        f"  selected: {output / 'selection' / 'selected'}\n  report:   {output / 'selection' / 'report.md'}"
    )
    return report
