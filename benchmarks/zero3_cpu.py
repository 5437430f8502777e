"""DeepSpeed ZeRO-3 scoring on the CPU against plain data parallel, on the same machine and data.

Three launches of `rap-hf score` with 2 processes (one thread each) over the same rows and tiny Qwen2.5-VL:
plain data parallel (`accelerate launch --multi_gpu`-style on CPU: gloo, full model per process), ZeRO-3 with
gathered weights (`--zero3_gather_params`: one all-gather up front), and ZeRO-3 sharded in lock-step (every
forward pass all-gathers each layer's weights). For each: scoring seconds and rows/s from rap_scoring.json,
and the bytes moved by all-gather/broadcast collectives, counted in every process by wrapping
`torch.distributed`'s collectives, per generated token. Also checks the three wrote the same scores.

    python benchmarks/zero3_cpu.py [--rows 48] [--num_rollouts 2] [--max_new_tokens 16]

Needs `pip install -e ".[deepspeed]"`. The sharded mode's gather traffic is what bounds it on GPUs too
(there over NVLink/InfiniBand instead of shared memory).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COUNTED = ("all_gather_into_tensor", "all_gather", "broadcast", "_all_gather_base")


def count_collective_bytes(out_file: Path) -> None:
    """In a launched worker: wrap torch.distributed's gather/broadcast collectives to add up the bytes they
    move, and write the total to `out_file` (one per rank) at exit."""
    import atexit

    import torch
    import torch.distributed as dist

    totals = {"bytes": 0, "calls": 0}

    def size(value) -> int:
        if isinstance(value, torch.Tensor):
            return value.numel() * value.element_size()
        if isinstance(value, (list, tuple)):
            return sum(size(v) for v in value)
        return 0

    def wrap(namespace, name: str) -> None:
        original = getattr(namespace, name, None)
        if original is None:
            return

        def counted(*args, **kwargs):
            totals["calls"] += 1
            # The first buffer (the output of a gather, the tensor of a broadcast): what arrives here.
            first = args[0] if args else next(iter(kwargs.values()), None)
            totals["bytes"] += size(first)
            return original(*args, **kwargs)

        setattr(namespace, name, counted)

    # DeepSpeed calls some collectives through torch.distributed and others through distributed_c10d.
    for namespace in (dist, dist.distributed_c10d):
        for name in COUNTED:
            wrap(namespace, name)
    atexit.register(lambda: out_file.write_text(json.dumps(totals)))


def worker(args: argparse.Namespace) -> None:
    rank = os.environ.get("RANK", "0")
    count_collective_bytes(Path(args.stats_dir) / f"collectives-{rank}.json")
    from rap_hf.cli import main

    raise SystemExit(main(args.rest))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(mode: str, model: Path, data: Path, work: Path, args: argparse.Namespace) -> dict:
    output, stats = work / mode / "scores", work / mode / "stats"
    stats.mkdir(parents=True)
    config = {
        "plain": str(ROOT / "rap_hf" / "accelerate_configs" / "multi_gpu.yaml"),
        "gathered": str(ROOT / "rap_hf" / "accelerate_configs" / "zero3.yaml"),
        "sharded": str(ROOT / "rap_hf" / "accelerate_configs" / "zero3.yaml"),
    }[mode]
    score = ["score", "--model", str(model), "--dataset", str(data), "--output", str(output)]
    score += ["--num_rollouts", str(args.num_rollouts), "--max_new_tokens", str(args.max_new_tokens)]
    score += ["--batch_size", str(args.batch_size)]
    if mode == "gathered":
        score.append("--zero3_gather_params")
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", config]
    command += ["--num_processes", "2", "--mixed_precision", "no", "--main_process_port", str(free_port())]
    if mode == "plain":
        command.append("--cpu")
    command += [__file__, "--worker", "--stats_dir", str(stats), "--", *score]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    env["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{result.stderr[-4000:]}")
    meta = json.loads((output / "rap_scoring.json").read_text())
    collectives = [json.loads(p.read_text()) for p in sorted(stats.glob("collectives-*.json"))]
    return {
        "mode": mode,
        "wall": time.perf_counter() - started,
        "scoring": meta["scoring_seconds"],
        "rows": meta["rows"],
        "processes": meta["num_processes"],
        "tokens": meta["generated_tokens"],
        "bytes": sum(c["bytes"] for c in collectives),
        "calls": sum(c["calls"] for c in collectives),
        "output": output,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=48)
    parser.add_argument("--num_rollouts", type=int, default=2)
    parser.add_argument("--max_new_tokens", type=int, default=16)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--stats_dir", help=argparse.SUPPRESS)
    parser.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    import datasets

    from rap_hf.demo.data import tiny_synthetic
    from rap_hf.demo.tiny_models import save_tiny_vlm

    with tempfile.TemporaryDirectory(prefix="rap-zero3-") as tmp:
        work = Path(tmp)
        model = save_tiny_vlm(work / "model", seed=0)
        data = work / "data"
        tiny_synthetic(args.rows, seed=1).save_to_disk(str(data))
        runs = [launch(mode, model, data, work, args) for mode in ("plain", "gathered", "sharded")]
        reference = datasets.load_from_disk(str(runs[0]["output"]))
        columns = [c for c in reference.column_names if c.startswith("rap_")]
        for run in runs[1:]:
            scored = datasets.load_from_disk(str(run["output"]))
            # Compared as text: NaN == NaN there.
            run["same"] = all(str(reference[c]) == str(scored[c]) for c in columns)
        runs[0]["same"] = True

    print(
        f"{args.rows} rows, 2 processes x 1 thread, {args.num_rollouts} rollouts x 2 arms, up to "
        f"{args.max_new_tokens} new tokens, batch {args.batch_size}; tiny Qwen2.5-VL"
    )
    print(
        "| mode | scoring s | rows/s | vs plain | collective calls | MB moved | bytes / generated token "
        "| same scores |"
    )
    print("|---|---|---|---|---|---|---|---|")
    plain = runs[0]["rows"] / runs[0]["scoring"]
    for run in runs:
        rate = run["rows"] / run["scoring"]
        print(
            f"| {run['mode']} | {run['scoring']:.1f} | {rate:.2f} | {rate / plain:.2f} | {run['calls']} "
            f"| {run['bytes'] / 1e6:.1f} | {run['bytes'] / max(run['tokens'], 1):,.0f} | {run['same']} |"
        )


if __name__ == "__main__":
    main()
