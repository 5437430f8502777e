"""`rap-hf train`: validate the training arguments here, then run `rap_hf.training.script` with ``accelerate launch``.

The arguments are parsed once in the launching process (so a typo fails in a second, not after 8 processes
have loaded a 7B model). What the user set (command line and ``--config`` YAML, not the values GRPOConfig
derives from the number of processes) is written to ``<output_dir>/rap_train_config.yaml``, and every launched
process parses that file again with its own number of processes. The file doubles as the run's record.

Nothing heavy is imported at module level: ``rap_hf.cli`` imports `TrainArgumentTypes` at start-up.
"""

from __future__ import annotations

import enum
import logging
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger("rap_hf")

LAUNCH_CONFIG_FILE = "rap_train_config.yaml"
SCRIPT_MODULE = "rap_hf.training.script"


class TrainArgumentTypes:
    """The dataclass types ``rap-hf train`` parses: ``*leading`` (its own launch arguments), then the training
    script's (`RAPScriptArguments`, `RAPGRPOConfig`, TRL's `ModelConfig`).

    An iterable rather than a tuple so TRL and transformers (seconds to import) load only when ``rap-hf
    train`` actually runs, not on every ``rap-hf`` command.
    """

    def __init__(self, *leading: type) -> None:
        self.leading = leading

    def __iter__(self) -> Iterator[type]:
        from trl import ModelConfig

        from rap_hf.training.config import RAPGRPOConfig
        from rap_hf.training.script import RAPScriptArguments

        return iter((*self.leading, RAPScriptArguments, RAPGRPOConfig, ModelConfig))


def _plain(value: Any) -> Any:
    """A YAML-safe copy of a parsed argument value (enums by value, tuples as lists, paths as strings)."""
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def write_launch_config(path: str | os.PathLike[str], *configs: Any) -> Path:
    """Write the explicitly set fields of ``configs`` (dataclass instances) to one YAML file for `TrlParser`."""
    import yaml

    from rap_hf.training.config import explicit_values

    merged: dict[str, Any] = {}
    for config in configs:
        for name, value in explicit_values(config).items():
            merged[name] = _plain(value)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "# Written by `rap-hf train`: the arguments every launched process parses (what was set explicitly).\n"
    path.write_text(header + yaml.safe_dump(merged, sort_keys=True))
    return path


def accelerate_config_processes(config_file: str | os.PathLike[str]) -> int | None:
    """``num_processes`` of an accelerate config file (None when it does not say)."""
    import yaml

    values = yaml.safe_load(Path(config_file).read_text()) or {}
    number = values.get("num_processes")
    return int(number) if number is not None else None


def generation_geometry(training_args: Any, num_processes: int) -> tuple[int, int]:
    """``(generation_batch_size, distinct prompts per generation)`` for ``num_processes`` processes.

    Re-does GRPOConfig's arithmetic for the real number of processes (the launching process has one), so a
    batch geometry that only fails with 8 processes fails here.

    Raises:
        ValueError: the generation batch does not split into full prompt groups on that many processes.
    """
    explicit = getattr(training_args, "_rap_explicit_values", {}) or {}
    per_device = training_args.per_device_train_batch_size
    num_generations = training_args.num_generations
    if explicit.get("generation_batch_size") is not None:
        generation_batch_size = explicit["generation_batch_size"]
        if generation_batch_size % (per_device * num_processes):
            raise ValueError(
                f"generation_batch_size={generation_batch_size} is not divisible by per_device_train_batch_size "
                f"({per_device}) x {num_processes} processes"
            )
    else:
        steps = explicit.get("steps_per_generation") or training_args.gradient_accumulation_steps
        generation_batch_size = per_device * num_processes * steps
    if generation_batch_size % num_generations:
        raise ValueError(
            f"with {num_processes} processes the generation batch is {generation_batch_size} completions, not "
            f"divisible by num_generations={num_generations}"
        )
    return generation_batch_size, generation_batch_size // num_generations


def build_launch_argv(
    config_path: str | os.PathLike[str],
    *,
    accelerate_config: str | None = None,
    num_processes: int | None = None,
    main_process_port: int | None = None,
    launch_args: str | None = None,
) -> list[str]:
    """The ``accelerate launch`` arguments (without the ``accelerate launch`` words) for a training run."""
    from rap_hf.accelerate_configs import resolve_accelerate_config

    argv: list[str] = []
    if accelerate_config:
        argv += ["--config_file", str(resolve_accelerate_config(accelerate_config))]
    if num_processes is not None:
        argv += ["--num_processes", str(num_processes)]
    if main_process_port is not None:
        argv += ["--main_process_port", str(main_process_port)]
    if launch_args:
        argv += shlex.split(launch_args)
    return argv + ["-m", SCRIPT_MODULE, "--config", str(config_path)]


def launch_training(
    script_args: Any,
    training_args: Any,
    model_args: Any,
    *,
    accelerate_config: str | None = None,
    num_processes: int | None = None,
    main_process_port: int | None = None,
    launch_args: str | None = None,
    dry_run: bool = False,
) -> list[str]:
    """Write the launch config and run ``accelerate launch -m rap_hf.training.script --config <it>``.

    Args:
        script_args, training_args, model_args: the parsed training arguments (already validated).
        accelerate_config: a shipped config name (see `rap_hf.accelerate_configs`) or a path; None uses
            accelerate's own default (``accelerate config``), or one process on this machine.
        num_processes: overrides the accelerate config's process count.
        main_process_port: rendezvous port (run two trainings on one machine with different ports).
        launch_args: more ``accelerate launch`` flags, as one string (e.g. ``"--mixed_precision no"``).
        dry_run: print the command and stop (the config file is still written).

    Returns:
        The full command, ``["accelerate", "launch", ...]``.

    Raises:
        SystemExit: with the training's exit status when it fails.
    """
    from rap_hf.accelerate_configs import resolve_accelerate_config

    processes = num_processes
    if processes is None and accelerate_config:
        processes = accelerate_config_processes(resolve_accelerate_config(accelerate_config))
    if processes is not None:
        generation_geometry(training_args, processes)

    config_path = write_launch_config(
        Path(training_args.output_dir) / LAUNCH_CONFIG_FILE, script_args, training_args, model_args
    )
    argv = build_launch_argv(
        config_path,
        accelerate_config=accelerate_config,
        num_processes=num_processes,
        main_process_port=main_process_port,
        launch_args=launch_args,
    )
    command = ["accelerate", "launch", *argv]
    print("launching: " + shlex.join(command), flush=True)
    if dry_run:
        return command

    from accelerate.commands.launch import launch_command, launch_command_parser

    try:
        launch_command(launch_command_parser().parse_args(argv))
    except subprocess.CalledProcessError as exc:
        print(f"error: training failed with exit status {exc.returncode}", file=sys.stderr)
        raise SystemExit(exc.returncode or 1) from None
    return command
