"""Rollout throughput: batched vs one sample at a time, same tiny model, same data, same seed.

Both runs produce identical completions (sampling is seeded per completion), so the work is the same and
only the batching differs.

    python benchmarks/rollout_throughput.py [--rows 16] [--num-rollouts 5] [--max-new-tokens 32] [--batch-size 8]

Goal (issue 2): batched >= 3x samples/s of one-at-a-time.
"""

from __future__ import annotations

import argparse
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--num-rollouts", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    import datasets

    from rap_hf import RAPConfig, RAPDataFilter
    from rap_hf.demo.data import tiny_synthetic
    from rap_hf.demo.tiny_models import save_tiny_vlm

    datasets.disable_progress_bars()
    data = tiny_synthetic(args.rows, seed=0)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        save_tiny_vlm(tmp, seed=0)
        for label, batch_size in (("one at a time", 1), (f"batched ({args.batch_size})", args.batch_size)):
            config = RAPConfig(
                num_rollouts=args.num_rollouts,
                max_new_tokens=args.max_new_tokens,
                batch_size=batch_size,
                compute_ace=False,
            )
            flt = RAPDataFilter(tmp, config=config)
            flt.score(data.select(range(min(2, args.rows))))  # warm-up (first-call overheads)
            flt.stats.generated_tokens = 0
            start = time.perf_counter()
            scored = flt.score(data)
            seconds = time.perf_counter() - start
            results[label] = (seconds, flt.stats.generated_tokens, scored["rap_completions_mm"])
    (single_s, single_tok, single_c), (batched_s, batched_tok, batched_c) = results.values()
    print(
        f"{args.rows} samples x {args.num_rollouts} rollouts x 2 arms, max {args.max_new_tokens} new tokens, tiny Qwen2.5-VL, CPU"
    )
    print(f"{'mode':<16} {'seconds':>9} {'samples/s':>10} {'gen tokens/s':>13}")
    for label, (seconds, tokens, _) in results.items():
        print(f"{label:<16} {seconds:>9.2f} {args.rows / seconds:>10.2f} {tokens / seconds:>13.1f}")
    speedup = single_s / batched_s
    print(
        f"speed-up batched / one-at-a-time: {speedup:.2f}x (goal >= 3x: {'met' if speedup >= 3 else 'NOT met'}); "
        f"identical completions: {single_c == batched_c}"
    )


if __name__ == "__main__":
    main()
