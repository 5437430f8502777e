"""In-generation ACE vs the second pass (issue 17, part 2), and what prefill costs (part 3), side by side.

Scores the same visual-arith test rows with the reference model in both `ace_capture` modes and prints ms per
sample per stage (multimodal rollouts, text-only rollouts, ACE pass, rewards, other) and total, the max abs
difference of rap_ace_norm and the max relative difference of rap_ace between the modes, and then times the
prompt prefill (image encoding + prompt forward) of a multimodal rollout batch against its whole generate call.

    OMP_NUM_THREADS=1 python benchmarks/ace_in_generation.py [--rows 60] [--num-rollouts 5] [--max-new-tokens 48]
"""

from __future__ import annotations

import argparse
import json
import math
import time


def score(mode: str, data, args) -> tuple[dict, dict]:
    from cost import stage_seconds

    from rap_hf import RAPConfig, RAPDataFilter
    from rap_hf.demo.reference_model import reference_model_path

    config = RAPConfig(
        num_rollouts=args.num_rollouts,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        ace_capture=mode,
    )
    flt = RAPDataFilter(str(reference_model_path()), config=config)
    start = time.perf_counter()
    scored = flt.score(data, desc=f"ace_capture={mode}")
    total = time.perf_counter() - start
    stages = stage_seconds(flt.stats, total)
    ms = {name: 1000 * value / len(data) for name, value in stages.items()}
    return ms, {c: scored[c] for c in ("rap_ace", "rap_ace_norm", "rap_completions_mm", "rap_error")}


def prefill_vs_generate(data, args) -> dict:
    """One batch of `batch_size` rows x M multimodal rollouts: prefill alone (a forward over the repeated
    prompts, images included) vs the whole generate call, and the prefill of each prompt once."""
    import torch

    from rap_hf.demo.reference_model import reference_model_path
    from rap_hf.scoring.loading import load_model_and_processor
    from rap_hf.scoring.rollouts import (
        build_messages,
        completion_seed,
        generate_rollouts,
        processor_inputs,
        render_prompt,
    )

    model, processor = load_model_and_processor(str(reference_model_path()))
    rows = data.select(range(args.batch_size))
    prompts = [render_prompt(processor, build_messages(p, 1, with_images=True)) for p in rows["prompt"]]
    images = [[im] for im in rows["image"]]
    m = args.num_rollouts
    seeds = [[completion_seed(0, i, "mm", k) for k in range(m)] for i in range(len(prompts))]

    def timed(fn, repeats=3):
        best = math.inf
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start)
        return best

    flat = processor_inputs(
        processor, [p for p in prompts for _ in range(m)], [i for i in images for _ in range(m)]
    )
    once = processor_inputs(processor, prompts, images)
    with torch.inference_mode():
        prefill_repeated = timed(lambda: model(**flat, use_cache=True, logits_to_keep=1))
        prefill_once = timed(lambda: model(**once, use_cache=True, logits_to_keep=1))
        outputs = {}

        def generate_with(shared_prefill: bool) -> None:
            outputs[shared_prefill] = generate_rollouts(
                model,
                processor,
                prompts,
                images,
                seeds,
                max_new_tokens=args.max_new_tokens,
                temperature=1.0,
                top_p=1.0,
                shared_prefill=shared_prefill,
            )

        generate = timed(lambda: generate_with(False))
        generate_shared = timed(lambda: generate_with(True))
    return {
        "batch_rows": len(prompts),
        "sequences": len(prompts) * m,
        "prompt_tokens": int(flat["input_ids"].shape[1]),
        "generated_tokens": outputs[False].num_generated_tokens,
        "prefill_repeated_ms": 1000 * prefill_repeated,
        "prefill_once_per_row_ms": 1000 * prefill_once,
        "generate_ms": 1000 * generate,
        "generate_shared_prefill_ms": 1000 * generate_shared,
        "shared_prefill_same_completions": outputs[True].token_ids == outputs[False].token_ids,
        "prefill_share_of_generate": prefill_repeated / generate,
        "max_saving_share": (prefill_repeated - prefill_once) / generate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=60)
    parser.add_argument("--num-rollouts", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    from rap_hf.demo.visual_arith import visual_arith

    data = visual_arith("test", args.rows, seed=0).remove_columns(["reference_completion"])
    # Warm-up (imports, kernels, the reward function's first call), so neither mode pays it in the table.
    score("second_pass", data.select(range(min(8, args.rows))), args)
    results = {}
    columns = {}
    # Interleaved rounds (second_pass, generation, second_pass, ...); each stage's best round is reported, so
    # neither mode gains from running second.
    for _ in range(args.rounds):
        for mode in ("second_pass", "generation"):
            ms, columns[mode] = score(mode, data, args)
            best = results.setdefault(mode, ms)
            for name, value in ms.items():
                best[name] = min(best[name], value)
    ref, gen = columns["second_pass"], columns["generation"]
    assert ref["rap_completions_mm"] == gen["rap_completions_mm"], "the rollouts must not change"
    assert ref["rap_error"] == gen["rap_error"]
    norm_diff = max(
        (
            abs(a - b)
            for a, b in zip(gen["rap_ace_norm"], ref["rap_ace_norm"], strict=True)
            if not math.isnan(b)
        ),
        default=0.0,
    )
    rel_diff = max(
        (
            abs(a - b) / max(abs(b), 1e-30)
            for a, b in zip(gen["rap_ace"], ref["rap_ace"], strict=True)
            if not math.isnan(b)
        ),
        default=0.0,
    )
    stages = list(results["second_pass"])
    print(
        f"\n{args.rows} visual-arith test rows, M={args.num_rollouts}, max_new_tokens={args.max_new_tokens}"
    )
    print(f"{'ms/sample':<14}{'second_pass':>12}{'generation':>12}{'ratio':>8}")
    for name in stages:
        a, b = results["second_pass"][name], results["generation"][name]
        ratio = b / a if a else float("nan")
        print(f"{name:<14}{a:>12.2f}{b:>12.2f}{ratio:>8.2f}")
    print(f"max |d rap_ace_norm| = {norm_diff:.3e}; max relative d rap_ace = {rel_diff:.3e}")
    prefill = prefill_vs_generate(data, args)
    print("prefill vs generate (one multimodal batch):", json.dumps(prefill, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "ms_per_sample": results,
                    "max_abs_ace_norm": norm_diff,
                    "max_rel_ace": rel_diff,
                    "prefill": prefill,
                },
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
