"""Where this process stands in a launch: rank, world size, device, and the few collectives scoring uses.

`ProcessContext.from_environment` is the one place that reads it, right under every launcher scoring
supports: ``accelerate launch`` (plain data parallel, or DeepSpeed ZeRO-3, on GPUs or on the CPU with
DeepSpeed's CPU accelerator), ``torchrun``, and a single process.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from rap_hf.errors import RAPUserError

logger = logging.getLogger("rap_hf")


def launched_world_size() -> int:
    """The number of processes the launcher started (``WORLD_SIZE``, set by accelerate and torchrun; 1 when
    absent)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def zero3_requested() -> bool:
    """True when this process was launched with a DeepSpeed ZeRO stage-3 accelerate config."""
    return (
        os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
        and os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", "") == "3"
    )


@dataclass
class ProcessContext:
    """This process's place in the launch: rank, world size, device, and the few collectives scoring uses."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device | None = None
    accelerator: Any = None  # set under ZeRO-3 only (DeepSpeed needs an Accelerator, not just a state)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls) -> ProcessContext:
        """This process's place in the launch: ``accelerate launch`` (with or without DeepSpeed, on CPU or GPU),
        ``torchrun``, or a single process.

        One source of truth: once a process group exists, rank and world size are `torch.distributed`'s,
        whatever the launcher's own bookkeeping says. (On a machine without GPUs, accelerate starts DeepSpeed's
        process group without a backend name and then reports one process; DeepSpeed's world holds them all.)
        A single process does not touch accelerate's global state, so it stays usable inside a notebook or a
        test.
        """
        if zero3_requested():
            from accelerate import Accelerator
            from accelerate.utils import InitProcessGroupKwargs

            # Without GPUs accelerate names no backend, so it would count one process: name gloo, which
            # DeepSpeed's CPU accelerator also uses, and the two agree.
            handlers = [] if torch.cuda.is_available() else [InitProcessGroupKwargs(backend="gloo")]
            accelerator = Accelerator(kwargs_handlers=handlers)  # sets the DeepSpeed config zero.Init reads
            return cls.from_state(
                accelerator.process_index,
                accelerator.num_processes,
                accelerator.local_process_index,
                accelerator.device,
                accelerator,
            )
        if launched_world_size() <= 1:
            return cls()
        from accelerate import PartialState

        cpu = not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() in (
            "1",
            "true",
        )
        state = PartialState(cpu=cpu)
        return cls.from_state(
            state.process_index, state.num_processes, state.local_process_index, state.device
        )

    @classmethod
    def from_state(
        cls, rank: int, world_size: int, local_rank: int, device: Any, accelerator: Any = None
    ) -> ProcessContext:
        """The context of a launcher's state (rank, world size, local rank, device), with rank and world size
        taken from `torch.distributed` when a process group exists.

        Raises:
            RuntimeError: the world size differs from the number of processes the launcher started
                (``WORLD_SIZE``): every process would believe it is alone and score every row.
        """
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            group_rank, group_size = dist.get_rank(), dist.get_world_size()
            if (group_rank, group_size) != (rank, world_size):
                logger.info(
                    "process group says rank %d of %d, the launcher's state %d of %d: using the process group",
                    group_rank,
                    group_size,
                    rank,
                    world_size,
                )
            rank, world_size = group_rank, group_size
        launched = launched_world_size()
        if world_size != launched:
            raise RuntimeError(
                f"the launch started {launched} processes (WORLD_SIZE) but the process group has {world_size}: "
                "every process would score every row. Check the launcher and accelerate configuration."
            )
        return cls(rank, world_size, local_rank, device, accelerator)

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    @contextlib.contextmanager
    def main_process_first(self) -> Iterator[None]:
        """The main process runs the block first (e.g. a dataset download), then the others."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()

    def broadcast(self, value: Any) -> Any:
        """The main process's `value`, on every process."""
        if self.world_size == 1:
            return value
        import torch.distributed as dist

        holder = [value]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def on_main(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the main process and hand its result, or its error, to every process.

        Without this, an error on the main process (e.g. a refused output directory) would leave the other
        processes waiting for it in a collective until the launcher's timeout.
        """
        result, error = None, None
        if self.is_main:
            try:
                result = fn()
            except Exception as exc:
                error = exc
        failure = None
        if error is not None:
            failure = (type(error).__name__, str(error), isinstance(error, RAPUserError))
        shared = self.broadcast((result, failure))
        if error is not None:
            raise error
        if shared[1] is not None:
            name, message, user_error = shared[1]
            # A mistake the user can fix (a refused or locked output directory) reads the same on every process.
            if user_error:
                raise RAPUserError(message)
            raise RuntimeError(f"main process failed: {name}: {message}")
        return shared[0]
