"""Scoring a model sharded with DeepSpeed ZeRO-3: preparation, parameter gathering, and lock-step model calls.

Under ZeRO-3 each GPU holds 1/N of every weight; a forward pass all-gathers each layer's weights from every
process as it runs. Two ways to score with it, chosen by `gather_params`:

* ``gather_params=True`` (TRL's default for generation, ``ds3_gather_for_generation``): gather the full
  weights once, up front, with TRL's own `unwrap_model_for_generation`, and score with no further
  communication. Fast, but the whole model must fit on one GPU next to the activations; then the plain
  ``multi_gpu`` config does the same with less machinery, so this mostly helps when the model only fits in
  host RAM when sharded (ZeRO-3 loads straight into shards).
* ``gather_params=False``: the model stays sharded, so a model larger than one GPU can be scored. Every
  forward pass is then a collective, so all processes must make *the same sequence of model calls*, though
  on different rows. `Lockstep` enforces that: it makes data-dependent branches collective decisions and pads
  with filler calls (a one-row generation, a one-row forward pass) whose results are dropped.

Lock-step assumes the vision tower runs once per forward pass whatever the number of images (true for the
Qwen2-VL, Qwen2.5-VL and Qwen3-VL families: their images are concatenated into one call). An exception
*inside* a model call cannot be recovered (the other processes are waiting in a collective): the run stops,
and the same command resumes it from the last checkpointed batch.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

from rap_hf.scoring.engine import error_reason
from rap_hf.scoring.rollouts import processor_inputs

if TYPE_CHECKING:
    from rap_hf.scoring.engine import ScoringEngine

logger = logging.getLogger("rap_hf")


def inference_deepspeed_config(
    config: dict[str, Any], *, num_processes: int, hidden_size: int | None, mixed_precision: str = "no"
) -> dict[str, Any]:
    """An inference-only copy of an accelerate/DeepSpeed config, with every ``"auto"`` value filled.

    Scoring has no optimizer, scheduler or dataloader to derive the "auto" values from (accelerate fills
    them in `Accelerator._prepare_deepspeed` from those), so: batch size 1 per GPU, no accumulation, the
    ZeRO-3 bucket sizes from the hidden size as accelerate and TRL set them, precision from the launch. The
    training-only blocks are dropped, as in TRL's `prepare_deepspeed`. Raises naming any "auto" left.
    """
    import copy

    config = copy.deepcopy(config)
    config.pop("optimizer", None)
    config.pop("scheduler", None)
    config.get("zero_optimization", {}).pop("offload_optimizer", None)
    values: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": 1,
        "train_batch_size": num_processes,
        "gradient_clipping": 1.0,
        "bf16.enabled": mixed_precision == "bf16",
        "fp16.enabled": mixed_precision == "fp16",
    }
    if hidden_size:
        values.update(
            {
                "zero_optimization.reduce_bucket_size": hidden_size * hidden_size,
                "zero_optimization.stage3_prefetch_bucket_size": int(0.9 * hidden_size * hidden_size),
                "zero_optimization.stage3_param_persistence_threshold": 10 * hidden_size,
            }
        )
    left = []

    def fill(node: dict[str, Any], prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                fill(value, f"{prefix}{key}.")
            elif value == "auto":
                if f"{prefix}{key}" in values:
                    node[key] = values[f"{prefix}{key}"]
                else:
                    left.append(f"{prefix}{key}")

    fill(config, "")
    if left:
        raise ValueError(f"cannot fill DeepSpeed config values {left} for scoring; set them to numbers")
    # Batch sizes must agree (DeepSpeed checks train = micro * accumulation * processes).
    config["train_batch_size"] = (
        config["train_micro_batch_size_per_gpu"] * config["gradient_accumulation_steps"] * num_processes
    )
    return config


def prepare_zero3_model(model: torch.nn.Module, accelerator: Any, num_processes: int) -> Any:
    """Wrap `model` (loaded under `zero.Init`, i.e. already sharded) in an inference-only DeepSpeed engine.

    `num_processes` is the process group's size (`ProcessContext.world_size`): DeepSpeed checks its batch
    sizes against that, not against the accelerator's count.
    """
    import deepspeed

    text_config = getattr(model.config, "text_config", model.config)
    config = inference_deepspeed_config(
        accelerator.state.deepspeed_plugin.deepspeed_config,
        num_processes=num_processes,
        hidden_size=getattr(text_config, "hidden_size", None) or getattr(model.config, "hidden_size", None),
        mixed_precision=str(accelerator.state.mixed_precision),
    )
    engine, *_ = deepspeed.initialize(model=model, config=config)
    engine.eval()
    return engine


@contextlib.contextmanager
def model_for_scoring(engine: Any, accelerator: Any, gather_params: bool) -> Iterator[torch.nn.Module]:
    """The model to call for scoring, as TRL gets it for generation (`unwrap_model_for_generation`).

    With `gather_params`, the full weights are gathered for the duration of the block and the ZeRO hooks
    removed (no communication inside); otherwise the sharded module, with its hooks, is yielded.
    """
    from trl.models.utils import unwrap_model_for_generation

    with unwrap_model_for_generation(engine, accelerator, gather_deepspeed3_params=gather_params) as model:
        yield model


def all_reduce_max(value: int, device: torch.device | str) -> int:
    """The largest `value` over all processes (the value itself when not distributed)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.long, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


class Lockstep:
    """Makes every process issue the same sequence of model calls for each scoring batch.

    Per batch and per arm: rows the processor rejects are marked first (no model call), then one batched
    generation with ``synced_gpus=True`` if any process has rows left, a one-row filler generation on a
    process that has none. Then as many attention forward passes on every process as the busiest one needs,
    fillers making up the difference. Idle batches (a process out of rows while others still score) go
    through the same path with no rows. `ScoringEngine` calls the hooks; `rap_hf.scoring.distributed` installs it.
    """

    def __init__(self, filler_image_size: int = 56) -> None:
        self.filler_image_size = filler_image_size
        self.forwards_done = 0
        self._forwards_expected = 0
        self.filler_generations = 0
        self.filler_forwards = 0

    # ---- generation ----

    def generate_arm(self, engine: ScoringEngine, rows: list, arm: str) -> None:
        ready = []
        for row in rows:
            error = self._processor_error(engine, row, arm)
            if error is None:
                ready.append(row)
            else:
                row.error = f"generation failed: {error}"
        if all_reduce_max(len(ready), engine.model.device) == 0:
            return
        if ready:
            try:
                engine.generate(ready, arm, synced_gpus=True)
            except Exception as exc:
                raise RuntimeError(
                    f"generation failed under ZeRO-3 lock-step ({error_reason(exc)}); the other processes cannot "
                    "continue. Fix the cause and run the same command again to resume."
                ) from exc
        else:
            self._filler_generation(engine, arm)

    @staticmethod
    def _processor_error(engine: ScoringEngine, row: Any, arm: str) -> str | None:
        """Why the processor rejects this row's prompt (and images), or None; runs no model."""
        from rap_hf.scoring.rollouts import ARM_MM

        try:
            if arm == ARM_MM:
                processor_inputs(engine.processor, [row.mm_prompt], [row.images])
            else:
                processor_inputs(engine.processor, [row.text_prompt])
        except Exception as exc:
            return error_reason(exc)
        return None

    def _filler_prompt(self, engine: ScoringEngine, with_image: bool) -> tuple[str, list | None]:
        from PIL import Image

        from rap_hf.scoring.rollouts import build_messages, render_prompt

        images = [Image.new("RGB", (self.filler_image_size,) * 2, (255, 255, 255))] if with_image else None
        messages = build_messages("0", 1 if with_image else 0, with_images=with_image)
        return render_prompt(engine.processor, messages), images

    def _filler_generation(self, engine: ScoringEngine, arm: str) -> None:
        from rap_hf.scoring.rollouts import ARM_MM, generate_rollouts

        cfg = engine.config
        prompt, images = self._filler_prompt(engine, arm == ARM_MM)
        generate_rollouts(
            engine.model,
            engine.processor,
            [prompt],
            [images] if images else None,
            [[0]],
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            synced_gpus=True,
        )
        self.filler_generations += 1

    # ---- attention passes ----

    def begin_attention_passes(self, engine: ScoringEngine, rows: list) -> None:
        needed = 0
        if engine.config.compute_ace:
            needed = sum(1 for r in rows if r.error is None and engine.ace_response(r))
        self.forwards_done = 0
        self._forwards_expected = all_reduce_max(needed, engine.model.device)

    @torch.inference_mode()
    def end_attention_passes(self, engine: ScoringEngine) -> None:
        missing = self._forwards_expected - self.forwards_done
        if missing <= 0:
            return
        prompt, images = self._filler_prompt(engine, with_image=True)
        inputs = processor_inputs(engine.processor, [prompt], [images]).to(engine.model.device)
        kwargs = engine.attention_forward_kwargs()
        for _ in range(missing):
            engine.model(**inputs, use_cache=False, **kwargs)
            self.filler_forwards += 1
        self.forwards_done = self._forwards_expected
