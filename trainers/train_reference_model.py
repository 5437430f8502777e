"""Train the reference model `rap-tiny-vl` on the built-in visual-arith data with TRL's SFTTrainer.

Reproduces the model shipped in `rap_hf/demo/assets/rap-tiny-vl` (CPU, about 12 minutes on 2 cores: vision
pre-training, then SFT):

    python trainers/train_reference_model.py --output_dir rap_hf/demo/assets/rap-tiny-vl

A smoke run: `--max_steps 5 --train_rows 64 --output_dir /tmp/ref`. Every `ReferenceRecipe` field is a flag.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from rap_hf.demo.reference_model import ReferenceRecipe, greedy_accuracy, train_reference_model


@dataclass
class ScriptArguments:
    output_dir: str = field(metadata={"help": "Where to save the trained model and processor."})
    eval_rows: int = field(
        default=400, metadata={"help": "Test rows for the greedy accuracy report (0: skip)."}
    )


def main(script_args: ScriptArguments, recipe: ReferenceRecipe) -> None:
    path = train_reference_model(script_args.output_dir, recipe)
    print(f"saved {path}")
    if script_args.eval_rows:
        from rap_hf.demo.visual_arith import visual_arith

        accuracy = greedy_accuracy(path, visual_arith("test", script_args.eval_rows, seed=recipe.seed))
        (path / "greedy_accuracy.json").write_text(json.dumps(accuracy, indent=2))
        print(f"{'kind':<12} {'n':>5} {'with image':>11} {'without':>9}")
        for kind, row in accuracy.items():
            print(f"{kind:<12} {row['n']:>5} {row['with_image']:>11.3f} {row['without_image']:>9.3f}")


if __name__ == "__main__":
    from trl import TrlParser

    main(*TrlParser((ScriptArguments, ReferenceRecipe)).parse_args_and_config())
