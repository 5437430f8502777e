"""The one ``accelerate launch`` wrapper of the command line, used by ``rap-hf score`` and ``rap-hf train``.

The launching process parses and checks the arguments once (so a typo fails in a second, not after 8
processes have loaded a 7B model), writes them to a YAML file, and runs::

    accelerate launch [--config_file CONFIG] [--num_processes N] [...] -m MODULE [ARGS] --config FILE.yaml

Every launched process parses that file again, with its own number of processes. ``CONFIG`` is a shipped
accelerate config by short name (``single_gpu``, ``multi_gpu``, ``zero2``, ``zero3``; see
`rap_hf.accelerate_configs`) or a path, like TRL's ``--accelerate_config``.

Nothing heavy is imported at module level.
"""

from __future__ import annotations

import enum
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rap_hf.errors import RAPUserError


def yaml_safe(value: Any) -> Any:
    """A YAML-safe copy of a parsed argument value (enums by value, tuples as lists, paths as strings)."""
    if isinstance(value, enum.Enum):
        return yaml_safe(value.value)
    if isinstance(value, dict):
        return {str(k): yaml_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [yaml_safe(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def write_args_yaml(path: str | os.PathLike[str], values: Mapping[str, Any], header: str = "") -> Path:
    """Write ``values`` (argument name -> value) to ``path`` as a YAML ``--config`` file for `TrlParser`.

    Args:
        path: the file to write (its folder is created).
        values: the arguments; converted with `yaml_safe`.
        header: comment lines written first (each starting with ``#``).
    """
    import yaml

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plain = {str(name): yaml_safe(value) for name, value in values.items()}
    path.write_text(header + yaml.safe_dump(plain, sort_keys=True))
    return path


def resolve_config_file(accelerate_config: str | os.PathLike[str]) -> Path:
    """The accelerate config file of ``--accelerate_config``: a shipped name or an existing path.

    Raises:
        RAPUserError: neither (the message lists the shipped names).
    """
    from rap_hf.accelerate_configs import resolve_accelerate_config

    return resolve_accelerate_config(accelerate_config)


def accelerate_config_processes(config_file: str | os.PathLike[str]) -> int | None:
    """``num_processes`` of an accelerate config file (None when it does not say)."""
    import yaml

    values = yaml.safe_load(Path(config_file).read_text()) or {}
    number = values.get("num_processes")
    return int(number) if number is not None else None


def launch_process_count(accelerate_config: str | None, num_processes: int | None) -> int | None:
    """How many processes a launch will start: ``num_processes``, else the accelerate config's count.

    None when neither says (accelerate's own default config decides at launch time).
    """
    if num_processes is not None:
        return num_processes
    if accelerate_config:
        return accelerate_config_processes(resolve_config_file(accelerate_config))
    return None


def generation_geometry(training_args: Any, num_processes: int) -> tuple[int, int]:
    """``(generation_batch_size, distinct prompts per generation)`` of a GRPO run on ``num_processes`` processes.

    Re-does GRPOConfig's arithmetic for the real number of processes (the launching process has one), so a
    batch geometry that only fails with 8 processes fails before the launch.

    Args:
        training_args: a `RAPGRPOConfig` (it records which values were set, not derived).
        num_processes: the number of processes the launch starts.

    Raises:
        RAPUserError: the generation batch does not split into full prompt groups on that many processes.
    """
    from rap_hf.training.config import explicit_values

    explicit = explicit_values(training_args)
    per_device = training_args.per_device_train_batch_size
    num_generations = training_args.num_generations
    if explicit.get("generation_batch_size") is not None:
        generation_batch_size = explicit["generation_batch_size"]
        if generation_batch_size % (per_device * num_processes):
            raise RAPUserError(
                f"generation_batch_size={generation_batch_size} is not divisible by per_device_train_batch_size "
                f"({per_device}) x {num_processes} processes"
            )
    else:
        steps = explicit.get("steps_per_generation") or training_args.gradient_accumulation_steps
        generation_batch_size = per_device * num_processes * steps
    if generation_batch_size % num_generations:
        raise RAPUserError(
            f"with {num_processes} processes the generation batch is {generation_batch_size} completions, not "
            f"divisible by num_generations={num_generations}"
        )
    return generation_batch_size, generation_batch_size // num_generations


def build_launch_argv(
    module: str,
    config_path: str | os.PathLike[str],
    *,
    module_args: Sequence[str] = (),
    accelerate_config: str | None = None,
    num_processes: int | None = None,
    main_process_port: int | None = None,
    launch_args: str | None = None,
) -> list[str]:
    """The ``accelerate launch`` arguments (without the words ``accelerate launch``) that run
    ``python -m MODULE *module_args --config config_path`` in every process."""
    argv: list[str] = []
    if accelerate_config:
        argv += ["--config_file", str(resolve_config_file(accelerate_config))]
    if num_processes is not None:
        argv += ["--num_processes", str(num_processes)]
    if main_process_port is not None:
        argv += ["--main_process_port", str(main_process_port)]
    if launch_args:
        argv += shlex.split(launch_args)
    return [*argv, "-m", module, *module_args, "--config", str(config_path)]


def accelerate_launch(
    module: str,
    values: Mapping[str, Any],
    *,
    module_args: Sequence[str] = (),
    config_path: str | os.PathLike[str] | None = None,
    header: str = "",
    accelerate_config: str | None = None,
    num_processes: int | None = None,
    main_process_port: int | None = None,
    launch_args: str | None = None,
    dry_run: bool = False,
) -> list[str]:
    """Write ``values`` to a ``--config`` YAML and run ``accelerate launch ... -m MODULE [module_args] --config it``.

    Args:
        module: the module every process runs, e.g. ``rap_hf`` (with ``module_args=["score"]``) or
            ``rap_hf.training.script``.
        values: the arguments the launched processes parse (without the launch flags themselves).
        module_args: arguments between the module and ``--config``.
        config_path: where to write the YAML (kept: it doubles as the run's record); None writes a temporary
            file, removed when the launch returns (kept after a dry run, which prints its path).
        header: comment lines at the top of the YAML.
        accelerate_config: a shipped config name (see `rap_hf.accelerate_configs`) or a path; None uses
            accelerate's own default (``accelerate config``), or one process on this machine.
        num_processes: overrides the accelerate config's process count.
        main_process_port: rendezvous port (run two launches on one machine with different ports).
        launch_args: more ``accelerate launch`` flags, as one string (e.g. ``"--mixed_precision no"``).
        dry_run: print the command and stop (the YAML is still written).

    Returns:
        The full command, ``["accelerate", "launch", ...]``.

    Raises:
        RAPUserError: ``accelerate_config`` is neither a shipped name nor a file.
        SystemExit: with the launched processes' exit status when they fail.
    """
    temporary = config_path is None
    if temporary:
        with tempfile.NamedTemporaryFile("w", prefix="rap-launch-", suffix=".yaml", delete=False) as handle:
            config_path = handle.name
    try:
        path = write_args_yaml(config_path, values, header)
        argv = build_launch_argv(
            module,
            path,
            module_args=module_args,
            accelerate_config=accelerate_config,
            num_processes=num_processes,
            main_process_port=main_process_port,
            launch_args=launch_args,
        )
        command = ["accelerate", "launch", *argv]
        print("launching: " + shlex.join(command), flush=True)
        if dry_run:
            temporary = False  # the printed command names the file: keep it
            return command

        from accelerate.commands.launch import launch_command, launch_command_parser

        try:
            launch_command(launch_command_parser().parse_args(argv))
        except subprocess.CalledProcessError as exc:
            print(f"error: the launched processes failed with exit status {exc.returncode}", file=sys.stderr)
            raise SystemExit(exc.returncode or 1) from None
        return command
    finally:
        if temporary:
            Path(config_path).unlink(missing_ok=True)
