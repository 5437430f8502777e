"""What RAP scoring costs: seconds per sample and per stage, and how the total grows with the dataset size.

Scores `visual-arith` train rows with the reference model at each size (default 100, 1,000, 10,000) and
prints, per size: wall-clock, samples/s, and the seconds per sample of each stage (multimodal rollouts,
text-only rollouts, the ACE attention pass, rewards, and everything else: image decoding, prompt rendering,
datasets.map), plus generated tokens. Then the exponent of a log-log fit of total time against size (1.0 is
linear).

    python benchmarks/cost.py [--sizes 100 1000 10000] [--num-rollouts 5] [--max-new-tokens 40] [--json F]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def measure(size: int, args: argparse.Namespace) -> dict:
    from rap_hf import RAPConfig, RAPDataFilter
    from rap_hf.demo.reference_model import reference_model_path
    from rap_hf.demo.visual_arith import visual_arith
    from rap_hf.scoring.rollouts import ARM_MM, ARM_TEXT

    data = visual_arith("train", size, seed=args.seed).remove_columns(["reference_completion"])
    config = RAPConfig(
        num_rollouts=args.num_rollouts,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        keep_completions=False,
    )
    flt = RAPDataFilter(str(args.model or reference_model_path()), config=config)
    start = time.perf_counter()
    flt.score(data, desc=f"scoring {size} rows")
    total = time.perf_counter() - start
    stats = flt.stats
    stages = {
        "mm_rollouts": stats.seconds_generation_by_arm.get(ARM_MM, 0.0),
        "text_rollouts": stats.seconds_generation_by_arm.get(ARM_TEXT, 0.0),
        "attention": stats.seconds_attention,
        "rewards": stats.seconds_rewards,
    }
    stages["other"] = max(total - sum(stages.values()), 0.0)
    return {
        "size": size,
        "seconds": total,
        "samples_per_second": size / total,
        "seconds_per_sample": {name: value / size for name, value in stages.items()},
        "generated_tokens": dict(stats.generated_tokens_by_arm),
        "errors": stats.errors,
    }


def loglog_exponent(sizes: list[int], seconds: list[float]) -> float:
    """Slope of log(seconds) against log(size): 1.0 means linear growth."""
    if len(sizes) < 2:
        return float("nan")
    slope, _ = np.polyfit(np.log(sizes), np.log(seconds), 1)
    return float(slope)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--num-rollouts", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--model", default=None, help="Model to score with (default: the shipped rap-tiny-vl)."
    )
    parser.add_argument("--json", default=None, help="Also write the results to this JSON file.")
    args = parser.parse_args()

    import torch

    results = [measure(size, args) for size in args.sizes]
    exponent = loglog_exponent([r["size"] for r in results], [r["seconds"] for r in results])
    stages = list(results[0]["seconds_per_sample"])
    print(
        f"RAP scoring cost, {args.num_rollouts} rollouts x 2 arms, <= {args.max_new_tokens} new tokens, "
        f"torch threads {torch.get_num_threads()}"
    )
    header = f"{'rows':>7} {'total s':>9} {'rows/s':>7} " + " ".join(f"{s + ' ms':>16}" for s in stages)
    print(header + f" {'gen. tokens mm':>15} {'gen. tokens text':>17}")
    for r in results:
        per = r["seconds_per_sample"]
        tokens = r["generated_tokens"]
        print(
            f"{r['size']:>7} {r['seconds']:>9.1f} {r['samples_per_second']:>7.2f} "
            + " ".join(f"{1000 * per[s]:>16.2f}" for s in stages)
            + f" {tokens.get('mm', 0):>15} {tokens.get('text', 0):>17}"
        )
    print(f"log-log exponent of total time vs rows: {exponent:.3f} (1.0 = linear)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results, "loglog_exponent": exponent}, f, indent=2)


if __name__ == "__main__":
    main()
