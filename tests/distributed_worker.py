"""Run by `tests/test_distributed.py` under torchrun (2 processes, gloo): one launch, two checks.

1. `rap-hf score` exactly as a user runs it under `accelerate launch`/`torchrun` (the CLI entry point).
2. The ZeRO-3 lock-step call schedule, without DeepSpeed: a forward pre-hook on every module holding
   parameters all-gathers the module's id, as ZeRO-3 all-gathers its weights, and fails if the processes are
   not calling the same module. The data gives the processes unequal work (a row with no image on process 0,
   one batch more on process 1), so the schedule's fillers and idle batches are exercised.

Usage: torchrun --nproc_per_node 2 tests/distributed_worker.py MODEL_DIR DATA_DIR LOCKSTEP_DATA_DIR OUT_DIR
"""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

SCORING = ["--num_rollouts", "2", "--max_new_tokens", "8", "--batch_size", "2"]


def install_collective_check(model: torch.nn.Module) -> list[int]:
    """Make every parameterised module call a collective that fails unless all processes call the same module."""
    ids = {module: i for i, module in enumerate(model.modules())}
    calls = []

    def check(module, args):
        mine = torch.tensor([ids[module]])
        everyone = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
        dist.all_gather(everyone, mine)
        if len({int(t) for t in everyone}) != 1:
            raise RuntimeError(f"processes diverged: calls to modules {[int(t) for t in everyone]}")
        calls.append(ids[module])

    for module in model.modules():
        if next(module.parameters(recurse=False), None) is not None:
            module.register_forward_pre_hook(check)
    return calls


def main(model_dir: str, data_dir: str, lockstep_data_dir: str, out_dir: str) -> None:
    # A short timeout: a broken schedule must fail the test, not hang it for gloo's default 30 minutes.
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    from rap_hf.cli import main as cli_main

    out = Path(out_dir)
    code = cli_main(
        ["score", "--model", model_dir, "--dataset", data_dir, "--output", str(out / "cli"), *SCORING]
    )
    if code != 0:
        raise SystemExit(code)

    import datasets

    from rap_hf import RAPConfig
    from rap_hf.scoring.distributed import ProcessContext, score_to_disk
    from rap_hf.scoring.loading import load_model_and_processor

    model, processor = load_model_and_processor(model_dir)
    calls = install_collective_check(model)
    rank = dist.get_rank()
    context = ProcessContext(rank=rank, world_size=dist.get_world_size(), local_rank=rank)
    config = RAPConfig(num_rollouts=2, max_new_tokens=8, batch_size=2)
    result = score_to_disk(
        model,
        datasets.load_from_disk(lockstep_data_dir),
        out / "lockstep",
        config,
        processor=processor,
        lockstep=True,
        context=context,
    )
    stats = {"module_calls": len(calls), **result.process_stats}
    (out / f"lockstep-rank{rank}.json").write_text(json.dumps(stats))
    dist.destroy_process_group()


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main(*sys.argv[1:5])
