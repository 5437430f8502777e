"""`rap-hf train`: GRPO (TRL) on RAP-selected data, through ``accelerate launch``.

    rap-hf train --config trainers/configs/cpu_smoke.yaml
    rap-hf train --config my_recipe.yaml --accelerate_config zero3 --num_processes 8 [--dry_run]

The training flags are those of `rap_hf.training.script` (`RAPScriptArguments`, `RAPGRPOConfig`, TRL's
`ModelConfig`), on the command line or in the ``--config`` YAML. They are parsed and checked here, once;
what the user set (not the values GRPOConfig derives from this process's count) is written to
``<output_dir>/rap_train_config.yaml``, the ``--config`` of every launched process and the run's record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl import ModelConfig, TrlParser

from rap_hf.cli.launcher import accelerate_launch, generation_geometry, launch_process_count
from rap_hf.training.config import RAPGRPOConfig, explicit_values
from rap_hf.training.script import RAPScriptArguments

LAUNCH_CONFIG_FILE = "rap_train_config.yaml"
SCRIPT_MODULE = "rap_hf.training.script"


@dataclass
class TrainArguments:
    """Arguments of `rap-hf train` itself. The training flags (RAPScriptArguments, RAPGRPOConfig, TRL's
    ModelConfig; see `rap_hf.training.script`) follow, on the command line or in the `--config` YAML."""

    accelerate_config: str | None = field(
        default=None,
        metadata={
            "help": "accelerate config: a shipped name (single_gpu, multi_gpu, zero2, zero3) or a YAML path. "
            "Default: accelerate's own default config, else one process."
        },
    )
    num_processes: int | None = field(
        default=None, metadata={"help": "Processes to launch (overrides the accelerate config)."}
    )
    main_process_port: int | None = field(
        default=None, metadata={"help": "Rendezvous port of the processes."}
    )
    launch_args: str | None = field(
        default=None,
        metadata={"help": "More `accelerate launch` flags, one string, e.g. '--mixed_precision no'."},
    )
    dry_run: bool = field(
        default=False,
        metadata={"help": "Validate, write the launch config, print the command; do not train."},
    )


def make_parser(prog: str | None = None) -> TrlParser:
    """The parser of `rap-hf train`: `TrainArguments`, then the training script's dataclasses."""
    return TrlParser((TrainArguments, RAPScriptArguments, RAPGRPOConfig, ModelConfig), prog=prog)


def main(
    args: TrainArguments,
    script_args: RAPScriptArguments,
    training_args: RAPGRPOConfig,
    model_args: ModelConfig,
) -> list[str]:
    """Check the batch geometry for the launch's process count, write the launch config, launch the training.

    Returns:
        The ``accelerate launch`` command.

    Raises:
        RAPUserError: the generation batch does not split into prompt groups on the launched processes, or
            the accelerate config is unknown.
        SystemExit: with the training's exit status when it fails.
    """
    processes = launch_process_count(args.accelerate_config, args.num_processes)
    if processes is not None:
        generation_geometry(training_args, processes)
    values: dict[str, Any] = {}
    for config in (script_args, training_args, model_args):
        values.update(explicit_values(config))
    return accelerate_launch(
        SCRIPT_MODULE,
        values,
        config_path=Path(training_args.output_dir) / LAUNCH_CONFIG_FILE,
        header="# Written by `rap-hf train`: the arguments every launched process parses (what was set "
        "explicitly).\n",
        accelerate_config=args.accelerate_config,
        num_processes=args.num_processes,
        main_process_port=args.main_process_port,
        launch_args=args.launch_args,
        dry_run=args.dry_run,
    )
