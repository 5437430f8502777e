"""Decision-aware scoring (text_arm="decisive") against full scoring on the reference model: text-only rollouts
run, wall time of each mode, and whether the selection at the default thresholds is the same.

    python benchmarks/decisive.py [--rows 120] [--num_rollouts 5] [--max_new_tokens 48] [--batch_size 8]

Prints one JSON object. CPU is fine (the reference model is ~10M parameters).
"""

from __future__ import annotations

import argparse
import json
import time

from rap_hf import RAPConfig, RAPDataFilter, select_cognitive_samples
from rap_hf.demo.reference_model import reference_model_path
from rap_hf.demo.visual_arith import visual_arith


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=120)
    parser.add_argument("--num_rollouts", type=int, default=5)
    parser.add_argument("--max_new_tokens", type=int, default=48)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="Runs per mode, alternating; the fastest wall time is reported.",
    )
    args = parser.parse_args()

    data = visual_arith("test", num_rows=args.rows)
    result: dict = {
        "rows": args.rows,
        "num_rollouts": args.num_rollouts,
        "max_new_tokens": args.max_new_tokens,
    }
    scored = {}
    # Warm-up (first-call costs), not timed.
    RAPDataFilter(str(reference_model_path()), config=RAPConfig(num_rollouts=2, max_new_tokens=8)).score(
        visual_arith("test", num_rows=8)
    )
    walls: dict[str, list[float]] = {"full": [], "decisive": []}
    for mode in ("full", "decisive") * args.repeats:
        config = RAPConfig(
            num_rollouts=args.num_rollouts,
            max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size,
            text_arm=mode,
        )
        flt = RAPDataFilter(str(reference_model_path()), config=config)
        start = time.perf_counter()
        scored[mode] = flt.score(data)
        walls[mode].append(round(time.perf_counter() - start, 2))
        stats = flt.stats
        result[mode] = {
            "wall_s": min(walls[mode]),
            "wall_s_runs": walls[mode],
            "text_rollouts": int(sum(scored[mode]["rap_text_rollouts"])),
            "seconds_generation_by_arm": {k: round(v, 2) for k, v in stats.seconds_generation_by_arm.items()},
            "generated_tokens_by_arm": dict(stats.generated_tokens_by_arm),
            "seconds_attention": round(stats.seconds_attention, 2),
        }
    full, dec = result["full"], result["decisive"]
    result["text_rollouts_saved"] = 1 - dec["text_rollouts"] / full["text_rollouts"]
    result["wall_ratio"] = dec["wall_s"] / full["wall_s"]
    a = select_cognitive_samples(scored["full"], RAPConfig())
    b = select_cognitive_samples(scored["decisive"], RAPConfig())
    result["same_stage"] = a["rap_stage"] == b["rap_stage"]
    result["same_selected"] = a["rap_selected"] == b["rap_selected"]
    result["stage_differences"] = [
        (i, x, y) for i, (x, y) in enumerate(zip(a["rap_stage"], b["rap_stage"], strict=True)) if x != y
    ]
    bounds = scored["decisive"]["rap_cde_bound"]
    result["decisive_rows"] = {
        "exact": sum(1 for v in bounds if v == 0),
        "lower_bound": sum(1 for v in bounds if v > 0),
        "upper_bound": sum(1 for v in bounds if v < 0),
        "no_text_rollout": sum(1 for v in scored["decisive"]["rap_text_rollouts"] if v == 0),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
