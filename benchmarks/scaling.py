"""Data-parallel scoring on CPU: samples/s with 1 vs 2 processes, and the merge's share of the total time.

Runs `rap-hf score` under torchrun (what `accelerate launch` uses for several GPUs) with a tiny Qwen2.5-VL
built offline, one thread per process (so 2 processes use 2 cores, 1 process 1 core), and reads the
timings each run writes to rap_scoring.json. Also checks that both runs wrote the same scores.

    python benchmarks/scaling.py [--rows 2000] [--processes 1 2]

Columns: `wall` is the whole command (interpreter start, imports, model load, scoring, merge); `scoring` is
from the start of scoring to the merged dataset on disk, on the main process; samples/s = rows / scoring;
`merge` is reading and verifying the checkpointed batches, joining them to the input columns and
`save_to_disk` (a one-process run pays it too).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(processes: int, model_dir: Path, data_dir: Path, output: Path, args: argparse.Namespace) -> dict:
    """One `rap-hf score` launch with `processes` processes; its rap_scoring.json plus the wall time."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
        "PYTHONPATH": str(ROOT),
    }
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(processes),
        "-m",
        "rap_hf",
        "score",
        "--model",
        str(model_dir),
        "--dataset",
        str(data_dir),
        "--output",
        str(output),
        "--num_rollouts",
        str(args.num_rollouts),
        "--max_new_tokens",
        str(args.max_new_tokens),
        "--batch_size",
        str(args.batch_size),
        "--overwrite",
        "true",
    ]
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{processes}-process run failed:\n{result.stderr[-4000:]}")
    metadata = json.loads((output / "rap_scoring.json").read_text())
    return {**metadata, "wall": wall}


def same_scores(a: Path, b: Path) -> bool:
    import datasets

    left, right = datasets.load_from_disk(str(a)), datasets.load_from_disk(str(b))
    for column in (c for c in left.column_names if c.startswith("rap_")):
        for x, y in zip(left[column], right[column], strict=True):
            if not (x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y))):
                return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=512, help="rows to score (the issue's target is 2000)")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--num_rollouts", type=int, default=2)
    parser.add_argument("--max_new_tokens", type=int, default=8)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--workdir", type=Path, default=None, help="where to put model, data, outputs")
    args = parser.parse_args()

    from rap_hf.demo.data import tiny_synthetic
    from rap_hf.demo.tiny_models import save_tiny_vlm

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="rap-scaling-"))
    model_dir = save_tiny_vlm(workdir / "model", seed=0)
    data_dir = workdir / "data"
    tiny_synthetic(args.rows, seed=0).save_to_disk(str(data_dir))

    results = {}
    for processes in args.processes:
        results[processes] = run(processes, model_dir, data_dir, workdir / f"scores-{processes}p", args)

    base = results[args.processes[0]]
    print(
        f"\nrows={args.rows}, num_rollouts={args.num_rollouts}, max_new_tokens={args.max_new_tokens}, "
        f"batch_size={args.batch_size}, tiny Qwen2.5-VL, CPU, 1 thread per process\n"
    )
    print("| processes | wall (s) | scoring (s) | samples/s | speed-up | merge (s) | merge share |")
    print("|---|---|---|---|---|---|---|")
    for processes, r in results.items():
        rate = r["rows"] / r["scoring_seconds"]
        speedup = base["scoring_seconds"] / r["scoring_seconds"]
        print(
            f"| {processes} | {r['wall']:.1f} | {r['scoring_seconds']:.1f} | {rate:.2f} | {speedup:.2f}x "
            f"| {r['merge_seconds']:.2f} | {100 * r['merge_seconds'] / r['scoring_seconds']:.1f}% |"
        )
    if len(results) > 1:
        outputs = [workdir / f"scores-{p}p" for p in results]
        identical = all(same_scores(outputs[0], other) for other in outputs[1:])
        print(f"\nrap_* columns identical across process counts: {identical}")


if __name__ == "__main__":
    main()
