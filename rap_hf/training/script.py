"""The RAP-GRPO training entry point, in TRL's script style: ``main(script_args, training_args, model_args)``.

Run it with ``accelerate launch`` (what ``rap-hf train`` does), as a module so it works from an installed
package::

    accelerate launch -m rap_hf.training.script --config trainers/configs/cpu_smoke.yaml

or through the thin script ``trainers/train_grpo.py`` of a source checkout (same arguments). Every flag of
`RAPScriptArguments`, `RAPGRPOConfig` and TRL's `ModelConfig` can be given on the command line or in the
``--config`` YAML.

Two shorthands for offline use:

* ``model_name_or_path: tiny:FAMILY`` (e.g. ``tiny:qwen2_5_vl``) builds a tiny random VLM with
  `rap_hf.demo.tiny_models.save_tiny_vlm` into ``<output_dir>/tiny_FAMILY`` (once per machine; the other processes
  wait) and trains it: a smoke test of the whole stack without any download.
* ``dataset_name: builtin:tiny-synthetic`` is the built-in synthetic VQA set (`rap_hf.data.tiny_synthetic`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl import ModelConfig, ScriptArguments, TrlParser

from rap_hf.dataset_loading import load_any_dataset
from rap_hf.errors import RAPUserError
from rap_hf.training.config import RAPGRPOConfig

logger = logging.getLogger("rap_hf")

TINY_MODEL_PREFIX = "tiny:"

# Short names accepted in `reward_funcs`, besides import paths ("package.module:function").
_TRL_REWARDS = ("think_format_reward", "reasoning_accuracy_reward")


@dataclass
class RAPScriptArguments(ScriptArguments):
    """Arguments of the RAP-GRPO training script (TRL's `ScriptArguments` plus extra reward functions).

    ``dataset_name`` may be: ``builtin:NAME``; a folder written by ``rap-hf select`` (its ``annotated/``
    subset is used, so ``rap_train_on`` and online RAP see every row); a ``save_to_disk`` folder (scored,
    annotated or already selected); a parquet/json/csv file; or a Hub dataset id with ``dataset_config``
    (e.g. ``selected`` or ``scores`` of a dataset pushed by rap-hf).
    """

    reward_funcs: list[str] | None = field(
        default=None,
        metadata={
            "help": "Extra reward functions, after rap_hf's accuracy_reward: 'think_format_reward', "
            "'reasoning_accuracy_reward' (TRL's), or import paths 'package.module:function'."
        },
    )


def load_training_dataset(spec: str, config_name: str | None = None, split: str | None = "train") -> Any:
    """Load a training dataset; a ``rap-hf select`` output folder means its ``annotated/`` subset."""
    path = Path(spec).expanduser()
    if path.is_dir() and (path / "annotated").is_dir():
        spec = str(path / "annotated")
    return load_any_dataset(spec, config_name=config_name, split=split)


def resolve_model(name_or_path: str, output_dir: str) -> str:
    """``tiny:FAMILY`` -> a tiny VLM built (once per machine) under ``output_dir``; anything else unchanged."""
    if not name_or_path.startswith(TINY_MODEL_PREFIX):
        return name_or_path
    from accelerate import PartialState
    from transformers.integrations import is_deepspeed_zero3_enabled

    from rap_hf.demo.tiny_models import save_tiny_vlm

    family = name_or_path[len(TINY_MODEL_PREFIX) :] or "qwen2_5_vl"
    target = Path(output_dir) / f"tiny_{family}"
    state = PartialState()
    # The local main process writes it; the others wait at the barrier and then only read it.
    with state.local_main_process_first():
        if state.is_local_main_process and not (target / "config.json").exists():
            if is_deepspeed_zero3_enabled():
                # Under ZeRO-3, transformers builds every model inside deepspeed.zero.Init, whose collectives
                # would wait for the other processes (they wait at the barrier above): build it apart.
                build_in_subprocess(target, family)
            else:
                save_tiny_vlm(target, family)
    return str(target)


def build_in_subprocess(target: Path, family: str) -> None:
    """`save_tiny_vlm(target, family)` in a fresh interpreter, outside this process's DeepSpeed setup."""
    import subprocess
    import sys

    code = "import sys; from rap_hf.demo.tiny_models import save_tiny_vlm; save_tiny_vlm(sys.argv[1], sys.argv[2])"
    subprocess.run([sys.executable, "-c", code, str(target), family], check=True)


def resolve_script_reward_funcs(names: Sequence[str] | None) -> list[Callable]:
    """Reward functions from names: rap_hf's ``accuracy_reward``, TRL's `_TRL_REWARDS`, or import paths."""
    from rap_hf.rewards import accuracy_reward, resolve_reward_fn

    funcs: list[Callable] = []
    for name in names or []:
        if name in ("accuracy", "accuracy_reward"):
            funcs.append(accuracy_reward)
        elif name in _TRL_REWARDS:
            import trl.rewards

            funcs.append(getattr(trl.rewards, name))
        else:
            funcs.append(resolve_reward_fn(name))
    return funcs


def make_parser(prog: str | None = None) -> TrlParser:
    """The parser of this script: (`RAPScriptArguments`, `RAPGRPOConfig`, `ModelConfig`), with ``--config``."""
    return TrlParser((RAPScriptArguments, RAPGRPOConfig, ModelConfig), prog=prog)


def main(script_args: RAPScriptArguments, training_args: RAPGRPOConfig, model_args: ModelConfig) -> Any:
    """Load the model and data, train with `RAPGRPOTrainer`, save the model (and the online pool state)."""
    from trl import get_peft_config, get_quantization_config

    from rap_hf.training.trainer import RAPGRPOTrainer

    if not script_args.dataset_name:
        raise RAPUserError("set dataset_name (a path, builtin:NAME, or a Hub id)")
    if not model_args.model_name_or_path:
        raise RAPUserError("set model_name_or_path (a Hub id, a local path, or tiny:FAMILY)")
    if script_args.dataset_streaming:
        raise RAPUserError("dataset_streaming is not supported: RAP selects among indexable rows")

    model_init_kwargs = {
        "revision": model_args.model_revision,
        "trust_remote_code": training_args.trust_remote_code,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
    }
    model_init_kwargs.update(training_args.model_init_kwargs or {})
    training_args.model_init_kwargs = model_init_kwargs

    model = resolve_model(model_args.model_name_or_path, training_args.output_dir)
    train_dataset = load_training_dataset(
        script_args.dataset_name, script_args.dataset_config, script_args.dataset_train_split
    )
    eval_dataset = None
    if training_args.eval_strategy != "no":
        eval_dataset = load_training_dataset(
            script_args.dataset_name, script_args.dataset_config, script_args.dataset_test_split
        )

    trainer = RAPGRPOTrainer(
        model=model,
        reward_funcs=resolve_script_reward_funcs(script_args.reward_funcs),
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        peft_config=get_peft_config(model_args),
        quantization_config=get_quantization_config(model_args),
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    state_path = trainer.save_online_state(training_args.output_dir)
    trainer.accelerator.print(
        f"RAP-GRPO training done; model saved to {training_args.output_dir}"
        + (f"; online pool state: {state_path}" if state_path else "")
    )
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.dataset_name)
    # Every process reaches the teardown together: a process that destroys its process group (and exits) while
    # another still saves under ZeRO-3 was seen to abort ("terminate called without an active exception", CI).
    trainer.accelerator.wait_for_everyone()
    if hasattr(trainer, "end"):  # transformers >= 5.18: finish trackers, destroy the process group
        trainer.end()
    return trainer


def run(argv: Sequence[str] | None = None) -> None:
    """Parse ``argv`` (default: the command line) and run `main`."""
    script_args, training_args, model_args = make_parser().parse_args_and_config(argv)
    main(script_args, training_args, model_args)


if __name__ == "__main__":
    run()
