"""Accelerate launch configs shipped with rap-hf, resolved by short name like TRL's (``zero3``).

=============  ===============================================================
``single_gpu``  one process, one GPU, bf16
``multi_gpu``   DDP on 8 GPUs of one machine, bf16
``zero2``       DeepSpeed ZeRO-2 on 8 GPUs, bf16
``zero3``       DeepSpeed ZeRO-3 on 8 GPUs, bf16 (full fine-tuning of a 7B VLM)
=============  ===============================================================

Change the process count with ``--num_processes`` at launch. The repository root also holds
``accelerate_config.yaml``, the default multi-GPU config (the same as ``multi_gpu``).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from rap_hf.errors import RAPUserError

__all__ = ["available_accelerate_configs", "resolve_accelerate_config"]


def available_accelerate_configs() -> list[str]:
    """Names of the shipped configs (file names without ``.yaml``), sorted."""
    return sorted(
        entry.name[: -len(".yaml")]
        for entry in resources.files(__name__).iterdir()
        if entry.name.endswith(".yaml")
    )


def resolve_accelerate_config(name_or_path: str | os.PathLike[str]) -> Path:
    """The path of an accelerate config: an existing file as given, else a shipped config by name.

    Args:
        name_or_path: a path to a YAML file, or a shipped name (``zero3`` or ``zero3.yaml``).

    Raises:
        ValueError: neither an existing file nor a shipped name (the message lists the names).
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    name = os.fspath(name_or_path)
    if name.endswith(".yaml"):
        name = name[: -len(".yaml")]
    if "/" not in name and os.sep not in name:
        candidate = resources.files(__name__).joinpath(f"{name}.yaml")
        if candidate.is_file():
            return Path(os.fspath(candidate))
    raise RAPUserError(
        f"accelerate config {os.fspath(name_or_path)!r} is neither an existing file nor a shipped config; "
        f"shipped: {available_accelerate_configs()}"
    )
