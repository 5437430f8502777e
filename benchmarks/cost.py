"""What RAP scoring costs, per stage, in each scoring mode side by side, and whether the cheaper modes change the
selection.

Scores `visual-arith` train rows with the reference model in each mode and prints ms per sample per stage
(multimodal rollouts, text-only rollouts, the ACE attention pass, rewards, and everything else: image decoding,
prompt rendering, datasets.map), the total, its ratio to the first mode, the rollouts and tokens generated, and
whether the selection at the default thresholds (`RAPConfig()`) is the same as the first mode's: the same
`rap_stage` and `rap_selected` on every row.

Modes (`--modes`, the first is the reference the ratios are taken against):

- ``today``: ``text_arm="full"``, ``ace_capture="second_pass"``, ``prefill="per_rollout"`` (the defaults);
- ``cheap``: ``text_arm="decisive"`` (two waves) + ``ace_capture="generation"``;
- ``cheap_prefill``: ``cheap`` + ``prefill="shared"`` (both arms);
- ``cheap_1wave``: ``cheap_prefill`` with ``decisive_waves=1`` (the text-only arm in one call per batch; the
  default wave count): the recommended cheap settings, which issue 17's goal (<= 0.6x of ``today``) is about.

The machine is noisy (2 shared cores), so the modes take turns on chunks of the rows (``--chunks``) and each
mode's stage times are summed over its chunks: a slow minute hits every mode alike.

    python benchmarks/cost.py [--rows 1000] [--batch-size 8] [--modes today cheap_1wave] [--chunks 4] [--json F]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from typing import Any

_DEFAULTS = {"text_arm": "full", "ace_capture": "second_pass", "prefill": "per_rollout"}
_DECISIVE = {"text_arm": "decisive", "ace_capture": "generation"}
MODES: dict[str, dict[str, Any]] = {
    "today": _DEFAULTS,
    "cheap": {**_DECISIVE, "prefill": "per_rollout", "decisive_waves": 2},
    "cheap_prefill": {**_DECISIVE, "prefill": "shared", "decisive_waves": 2},
    "cheap_1wave": {**_DECISIVE, "prefill": "shared", "decisive_waves": 1},
}
STAGES = ("mm_rollouts", "text_rollouts", "ace_pass", "rewards", "other")


def stage_seconds(stats: Any, total: float) -> dict[str, float]:
    """Seconds of each scoring stage (`STAGES`) and the total, from a filter's `ScoringStats` and its wall time;
    "other" is what the stages do not account for."""
    from rap_hf.scoring.rollouts import ARM_MM, ARM_TEXT

    seconds = {
        "mm_rollouts": stats.seconds_generation_by_arm.get(ARM_MM, 0.0),
        "text_rollouts": stats.seconds_generation_by_arm.get(ARM_TEXT, 0.0),
        "ace_pass": stats.seconds_attention,
        "rewards": stats.seconds_rewards,
    }
    seconds["other"] = max(total - sum(seconds.values()), 0.0)
    seconds["total"] = total
    return seconds


def score_chunk(data: Any, mode: str, index_offset: int, args: argparse.Namespace) -> tuple[Any, dict]:
    """Score one chunk in one mode; the chunk's rows keep their global seeds (``index_offset``)."""
    from rap_hf import RAPConfig, RAPDataFilter
    from rap_hf.demo.reference_model import reference_model_path
    from rap_hf.scoring.rollouts import ARM_MM, ARM_TEXT

    config = RAPConfig(
        num_rollouts=args.num_rollouts,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        **MODES[mode],
    )
    flt = RAPDataFilter(str(args.model or reference_model_path()), config=config)
    start = time.perf_counter()
    scored = flt.score(data, index_offset=index_offset, desc=f"{mode}: rows {index_offset}+")
    total = time.perf_counter() - start
    stats = flt.stats
    seconds = stage_seconds(stats, total)
    tokens = {f"tokens_{arm}": stats.generated_tokens_by_arm.get(arm, 0) for arm in (ARM_MM, ARM_TEXT)}
    return scored, {**seconds, **tokens, "errors": stats.errors}


def compare_selection(reference: Any, other: Any) -> dict[str, Any]:
    """Selection at the default thresholds on both scorings: rows whose stage or selection differs."""
    import numpy as np

    from rap_hf import RAPConfig, select_cognitive_samples

    a = select_cognitive_samples(reference, RAPConfig())
    b = select_cognitive_samples(other, RAPConfig())
    stage_diff = [i for i, (x, y) in enumerate(zip(a["rap_stage"], b["rap_stage"], strict=True)) if x != y]
    ace_a, ace_b = np.asarray(reference["rap_ace_norm"]), np.asarray(other["rap_ace_norm"])
    both = ~np.isnan(ace_a) & ~np.isnan(ace_b)
    return {
        "same_rap_stage": not stage_diff,
        "same_rap_selected": a["rap_selected"] == b["rap_selected"],
        "selected": int(sum(b["rap_selected"])),
        "stage_differences": [(i, a["rap_stage"][i], b["rap_stage"][i]) for i in stage_diff[:20]],
        "same_rap_acc_mm": reference["rap_acc_mm"] == other["rap_acc_mm"],
        "same_completions_mm": reference["rap_completions_mm"] == other["rap_completions_mm"],
        "max_abs_diff_rap_ace_norm": float(np.max(np.abs(ace_a[both] - ace_b[both]))) if both.any() else 0.0,
    }


def format_table(results: dict[str, Any]) -> str:
    """The printed table of a `main` result (also rebuilt from its JSON: ``format_table(json.load(f))``)."""
    args = results["args"]
    modes = results["modes"]
    reference = next(iter(modes))
    lines = [
        f"RAP scoring cost per sample, {args['rows']} visual-arith train rows, reference model, "
        f"{args['num_rollouts']} rollouts per arm, <= {args['max_new_tokens']} new tokens, batch "
        f"{args['batch_size']}, torch threads {results['torch_threads']}, modes interleaved over "
        f"{args['chunks']} chunks",
        f"{'mode':<14}"
        + "".join(f"{s + ' ms':>18}" for s in (*STAGES, "total"))
        + f"{'ratio':>8}{'text rollouts':>15}{'tokens mm':>11}{'tokens text':>13}  same selection",
    ]
    for mode, r in modes.items():
        per = r["ms_per_sample"]
        sel = r["selection_vs_" + reference]
        same = "yes" if sel["same_rap_stage"] and sel["same_rap_selected"] else "NO"
        lines.append(
            f"{mode:<14}"
            + "".join(f"{per[s]:>18.2f}" for s in (*STAGES, "total"))
            + f"{r['ratio_to_' + reference]:>8.3f}{r['text_rollouts']:>15}{r['generated_tokens_mm']:>11}"
            + f"{r['generated_tokens_text']:>13}  {same} ({sel['selected']} selected; max |d ace_norm| "
            + f"{sel['max_abs_diff_rap_ace_norm']:.1e})"
        )
    return "\n".join(lines)


def generate_call_cost(args: argparse.Namespace, repeats: int = 5) -> list[dict[str, float]]:
    """Fastest of `repeats` text-only `generate` calls for 8 prompts at 1..M sequences each: a call's fixed cost
    and its cost per sequence (why decisive waves save less time than tokens)."""
    import numpy as np

    from rap_hf import RAPConfig, RAPDataFilter
    from rap_hf.demo.reference_model import reference_model_path
    from rap_hf.demo.visual_arith import visual_arith
    from rap_hf.scoring.rollouts import build_messages, completion_seed, generate_rollouts, render_prompt

    flt = RAPDataFilter(str(args.model or reference_model_path()), config=RAPConfig())
    rows = visual_arith("train", 8, seed=args.seed + 1)
    prompts = [render_prompt(flt.processor, build_messages(r["prompt"], 0, with_images=False)) for r in rows]
    out = []
    for per_prompt in range(1, args.num_rollouts + 1):
        seeds = [[completion_seed(0, i, "text", k) for k in range(per_prompt)] for i in range(len(prompts))]
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            generate_rollouts(
                flt.model,
                flt.processor,
                prompts,
                None,
                seeds,
                max_new_tokens=args.max_new_tokens,
                temperature=1.0,
                top_p=1.0,
            )
            times.append(time.perf_counter() - start)
        out.append({"sequences": per_prompt * len(prompts), "ms": 1000 * min(times)})
    slope, intercept = np.polyfit([o["sequences"] for o in out], [o["ms"] for o in out], 1)
    print(
        "text-only generate call, 8 prompts: "
        + ", ".join(f"{o['sequences']} seq {o['ms']:.0f} ms" for o in out)
    )
    print(f"  fit: {intercept:.0f} ms per call + {slope:.1f} ms per sequence")
    return out


def simulate_waves(batch_size: int = 8, num_rollouts: int = 5, lambda_c: float = 0.5) -> dict[str, Any]:
    """Generate calls and text-only rollouts of four wave policies on the explorer's shipped scores (full
    scoring of 200 visual-arith test rows by the reference model, with every rollout's completion): a full run,
    decisive waves until settled, decisive in at most two waves and in one wave (`decisive_waves=2` and `1`
    in `ScoringEngine.generate_decisive`). Rollout k of a row is seeded alike in every mode, so the stored full
    completions tell what each policy would have generated."""
    import datasets

    from rap_hf.explorer.assets import explorer_asset_path
    from rap_hf.rewards import accuracy_reward
    from rap_hf.scoring.decisive import wave_plan, wave_size

    scored = datasets.Dataset.from_parquet(str(explorer_asset_path()))
    rows = []
    for row in scored.select_columns(["solution", "rap_completions_mm", "rap_completions_text"]):
        rewards = {}
        for arm in ("mm", "text"):
            completions = row[f"rap_completions_{arm}"]
            rewards[arm] = [
                float(r) for r in accuracy_reward(completions, [row["solution"]] * len(completions))
            ]
        rows.append(rewards)
    result = {
        "rows": len(rows),
        "full": {"calls": -(-len(rows) // batch_size), "rollouts": len(rows) * num_rollouts},
    }
    # The engine's own rule per wave (`wave_plan`, `wave_size`); "until settled" is a first wave, again and again.
    plans = {
        "until_settled": lambda: itertools.repeat(False),
        "two_waves": lambda: wave_plan(2),
        "one_wave": lambda: wave_plan(1),
    }
    for policy, plan in plans.items():
        calls = rollouts = 0
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            done = [0] * len(batch)
            for last_wave in plan():
                need = [
                    wave_size(r["mm"], r["text"][:d], num_rollouts, lambda_c, last_wave)
                    for r, d in zip(batch, done, strict=True)
                ]
                if not any(need):
                    break
                calls, rollouts = calls + 1, rollouts + sum(need)
                done = [d + n for d, n in zip(done, need, strict=True)]
        result[policy] = {"calls": calls, "rollouts": rollouts}
    print(
        f"text-only arm on {result['rows']} rows, batches of {batch_size}: "
        + ", ".join(
            f"{k} {v['rollouts']} rollouts in {v['calls']} calls" for k, v in result.items() if k != "rows"
        )
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--chunks", type=int, default=4, help="The modes take turns on this many chunks.")
    parser.add_argument("--num-rollouts", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0, help="Seed of the visual-arith rows.")
    parser.add_argument(
        "--model", default=None, help="Model to score with (default: the shipped rap-tiny-vl)."
    )
    parser.add_argument("--json", default=None, help="Also write the results to this JSON file.")
    parser.add_argument(
        "--call-cost",
        action="store_true",
        help="Only time text-only generate calls of 1..M sequences per prompt, and count the generate calls of "
        "decisive wave policies on the explorer's shipped scores.",
    )
    args = parser.parse_args()
    if args.call_cost:
        generate_call_cost(args)
        simulate_waves(args.batch_size, args.num_rollouts)
        return

    import datasets
    import torch

    from rap_hf.demo.visual_arith import visual_arith

    data = visual_arith("train", args.rows, seed=args.seed).remove_columns(["reference_completion"])
    # Warm-up (first-call costs: kernels, allocator), not timed.
    for mode in args.modes:
        score_chunk(data.select(range(min(8, args.rows))), mode, 0, args)
    bounds = [round(k * args.rows / args.chunks) for k in range(args.chunks + 1)]
    parts: dict[str, list] = {mode: [] for mode in args.modes}
    sums: dict[str, dict[str, float]] = {mode: {} for mode in args.modes}
    for k in range(args.chunks):
        chunk = data.select(range(bounds[k], bounds[k + 1]))
        # Rotate the order, so no mode always runs first (or last) in a chunk.
        for mode in args.modes[k % len(args.modes) :] + args.modes[: k % len(args.modes)]:
            scored, numbers = score_chunk(chunk, mode, bounds[k], args)
            parts[mode].append(scored)
            for key, value in numbers.items():
                sums[mode][key] = sums[mode].get(key, 0) + value
    scored = {mode: datasets.concatenate_datasets(parts[mode]) for mode in args.modes}
    reference = args.modes[0]
    results: dict[str, Any] = {"args": vars(args), "torch_threads": torch.get_num_threads(), "modes": {}}
    for mode in args.modes:
        s = sums[mode]
        results["modes"][mode] = {
            "settings": MODES[mode],
            "ms_per_sample": {name: 1000 * s[name] / args.rows for name in (*STAGES, "total")},
            "ratio_to_" + reference: s["total"] / sums[reference]["total"],
            "text_rollouts": int(sum(scored[mode]["rap_text_rollouts"])),
            "generated_tokens_mm": int(s["tokens_mm"]),
            "generated_tokens_text": int(s["tokens_text"]),
            "errors": int(s["errors"]),
            "selection_vs_" + reference: compare_selection(scored[reference], scored[mode]),
        }

    print(format_table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
