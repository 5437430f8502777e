"""`rap-hf score`: score a dataset with RAP (rollouts, rewards, attention) and save it with the score columns.

    rap-hf score --model Qwen/Qwen2.5-VL-3B-Instruct --dataset builtin:visual-arith --output rap_outputs/scores
    rap-hf score --config score.yaml --accelerate_config multi_gpu --num_processes 4

Every `RAPConfig` field is a flag too. The output folder is resumable: the same command continues an
interrupted run, other settings are refused unless `--overwrite`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl import TrlParser

from rap_hf.config import RAPConfig


@dataclass
class ScoreArguments:
    """Arguments of `rap-hf score` (the RAPConfig fields are flags too)."""

    model: str = field(
        metadata={"help": "Hub id or local directory of the scoring VLM (the base model you will train)."}
    )
    dataset: str = field(
        metadata={
            "help": "Dataset: a save_to_disk folder, a parquet/json/csv file, a folder of data files, "
            "builtin:NAME, or a Hub id."
        }
    )
    output: str = field(metadata={"help": "Folder to write the scored dataset to (save_to_disk format)."})
    dataset_config: str | None = field(
        default=None, metadata={"help": "Dataset configuration name (Hub datasets)."}
    )
    split: str = field(default="train", metadata={"help": "Split to score."})
    max_rows: int | None = field(
        default=None, metadata={"help": "Score only the first N rows (for a quick look)."}
    )
    revision: str | None = field(default=None, metadata={"help": "Model revision (branch, tag or commit)."})
    torch_dtype: str = field(
        default="auto", metadata={"help": "Model dtype: auto, bfloat16, float16, float32."}
    )
    device: str | None = field(default=None, metadata={"help": "Device to score on, e.g. cuda:0 or cpu."})
    attn_implementation: str | None = field(
        default=None, metadata={"help": "sdpa, eager, flash_attention_2, ..."}
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow custom model code from the repo (off by default)."}
    )
    reward_fn: str | None = field(
        default=None,
        metadata={
            "help": "Reward function as an import path 'package.module:function' with TRL's signature "
            "fn(completions, solution, **kwargs) -> list[float]; default: rap_hf.rewards.accuracy_reward."
        },
    )
    overwrite: bool = field(
        default=False,
        metadata={
            "help": "Discard what --output holds (a finished or unfinished run with other settings) and start "
            "over. Without it, the same command resumes an interrupted run and other settings are refused."
        },
    )
    keep_checkpoints: bool = field(
        default=False, metadata={"help": "Keep OUTPUT/rap_checkpoint/ (the per-batch files) after the merge."}
    )
    num_proc: int | None = field(
        default=None,
        metadata={
            "help": "Single-process multi-GPU: N datasets.map workers, one model copy per GPU (cuda:rank). "
            "The alternative to `accelerate launch`."
        },
    )
    zero3_gather_params: bool = field(
        default=False,
        metadata={
            "help": "Under a ZeRO-3 accelerate config: gather the full weights for scoring (fast; the model must "
            "fit on one GPU) instead of scoring the sharded model in lock-step."
        },
    )
    wait_timeout: float = field(
        default=600.0,
        metadata={
            "help": "Seconds the main process waits for another process of the launch that stopped reporting "
            "(died, or its machine did) before it stops with an error. Finished batches are kept for a resume."
        },
    )
    accelerate_config: str | None = field(
        default=None,
        metadata={
            "help": "Launch the scoring with `accelerate launch` and this config: a shipped name (single_gpu, "
            "multi_gpu, zero2, zero3) or a YAML path. Default: run in this process (or in each process of an "
            "`accelerate launch`/`torchrun` you started)."
        },
    )
    num_processes: int | None = field(
        default=None,
        metadata={"help": "With --accelerate_config: processes to launch (overrides the config)."},
    )


# Flags of the launching process only: the launched processes score in place.
LAUNCH_FIELDS = ("accelerate_config", "num_processes")


def make_parser(prog: str | None = None) -> TrlParser:
    """The parser of `rap-hf score`: (`ScoreArguments`, `RAPConfig`), with `--config FILE.yaml`."""
    return TrlParser((ScoreArguments, RAPConfig), prog=prog)


def torch_dtype(name: str) -> Any:
    """``"auto"`` as is, else the `torch.dtype` called ``name`` (``bfloat16``, ``float32``, ...)."""
    import torch

    return name if name == "auto" else getattr(torch, name)


def launch(args: ScoreArguments, config: RAPConfig) -> list[str]:
    """Run this same scoring under ``accelerate launch --config_file <args.accelerate_config>``.

    The launched processes get every argument (less the launch flags) in a temporary ``--config`` YAML, so
    each parses exactly what this one did. Returns the command.
    """
    from rap_hf.cli.launcher import accelerate_launch

    values = {**dataclasses.asdict(args), **config.to_dict()}
    for name in LAUNCH_FIELDS:
        values.pop(name)
    return accelerate_launch(
        "rap_hf",
        values,
        module_args=["score"],
        accelerate_config=args.accelerate_config,
        num_processes=args.num_processes,
    )


def main(args: ScoreArguments, config: RAPConfig) -> Path:
    """Score `args.dataset` into `args.output` (+ `rap_scoring.json`), resumably, in one or many processes.

    Under `accelerate launch` / `torchrun` every process runs this; see `rap_hf.scoring.distributed`. With
    `args.accelerate_config` it launches those processes itself (see `launch`).

    Returns:
        The output folder.
    """
    if args.accelerate_config is not None:
        launch(args, config)
        return Path(args.output)

    from rap_hf.dataset_loading import load_any_dataset
    from rap_hf.scoring.distributed import ProcessContext, score_to_disk
    from rap_hf.scoring.filter import resolve_columns

    context = ProcessContext.from_environment()
    with context.main_process_first():  # one download/cache build, the others then read it
        dataset = load_any_dataset(args.dataset, config_name=args.dataset_config, split=args.split)
    resolve_columns(dataset, config)  # fail fast on column errors, before any model work
    if args.max_rows is not None:
        dataset = dataset.select(range(min(args.max_rows, len(dataset))))
    result = score_to_disk(
        args.model,
        dataset,
        args.output,
        config,
        reward_fn=args.reward_fn,
        trust_remote_code=args.trust_remote_code,
        torch_dtype=torch_dtype(args.torch_dtype),
        device=args.device,
        attn_implementation=args.attn_implementation,
        revision=args.revision,
        overwrite=args.overwrite,
        keep_checkpoints=args.keep_checkpoints,
        num_proc=args.num_proc,
        zero3_gather_params=args.zero3_gather_params,
        wait_timeout=args.wait_timeout,
        metadata={
            "model": args.model,
            "revision": args.revision,
            "dataset": args.dataset,
            "dataset_config": args.dataset_config,
            "split": args.split,
        },
        context=context,
    )
    if result.is_main:
        meta = result.metadata
        if result.already_complete:
            print(f"{result.output_dir} is already scored with these settings ({meta.get('rows')} rows)")
        else:
            resumed = f", {meta['resumed_rows']} resumed from checkpoints" if meta["resumed_rows"] else ""
            if "text_rollouts_added" in meta:
                resumed += (
                    f"; completed the decisive run: {meta['text_rollouts_added']} text-only rollouts added to "
                    f"{meta['rows_completed']} rows"
                )
            print(
                f"scored {meta['rows']} rows in {meta['scoring_seconds']:.1f}s on {meta['num_processes']} "
                f"process(es) ({meta['errors']} errors{resumed}) -> {result.output_dir}"
            )
        for warning in meta.get("warnings") or []:
            print(f"WARNING: {warning}")
    return Path(args.output)
