"""The private `GRPOTrainer` hooks `RAPGRPOTrainer` overrides, and a check that the installed TRL still has them.

TRL does not promise these methods across versions. If one is renamed or its parameters change, the override
would silently stop being called, or be called with other arguments: online RAP would stop observing rewards,
or checkpoints would lose the selector state. `check_trl_hooks` turns that into one clear error, raised when a
trainer is built (and by the test suite on every supported TRL).

A signature can stay while the behaviour changes, so the guard has a second half: ``tests/test_trl_parity.py`` runs
TRL's own GRPOTrainer tests against `RAPGRPOTrainer` as a drop-in, next to `GRPOTrainer`. After a TRL bump, a RAP
case failing where its GRPOTrainer twin passes is reported with a note pointing here (and with this module's verdict
on the installed TRL); a changed signature fails every RAP case up front with `hook_mismatches`' lines.
"""

from __future__ import annotations

import inspect
from typing import Any

#: Hook name -> the parameters (after ``self``) that the override in `rap_hf.training.trainer` is written for.
OVERRIDDEN_HOOKS: dict[str, tuple[str, ...]] = {
    "_set_signature_columns_if_needed": (),
    "_get_train_sampler": ("dataset",),
    "_calculate_rewards": ("inputs", "prompts", "completions", "completion_ids_list"),
    "_save_checkpoint": ("model", "trial"),
    "_load_optimizer_and_scheduler": ("checkpoint",),
}


def hook_mismatches(base: type) -> list[str]:
    """What differs between `OVERRIDDEN_HOOKS` and `base`'s methods, one line per hook (empty: all match)."""
    problems = []
    for name, expected in OVERRIDDEN_HOOKS.items():
        method: Any = getattr(base, name, None)
        if method is None:
            problems.append(f"{name} no longer exists")
            continue
        found = tuple(p for p in inspect.signature(method).parameters if p != "self")
        if found != expected:
            problems.append(f"{name}{found} (written for {name}{expected})")
    return problems


def check_trl_hooks(base: type | None = None) -> None:
    """Raise `RuntimeError` naming each hook whose signature changed in the installed TRL's `GRPOTrainer`."""
    if base is None:
        from trl import GRPOTrainer as base
    problems = hook_mismatches(base)
    if problems:
        import trl

        raise RuntimeError(
            f"RAPGRPOTrainer overrides private GRPOTrainer hooks that changed in trl {trl.__version__}: "
            + "; ".join(problems)
            + ". Install the TRL version rap-hf pins (see pyproject.toml) or update rap_hf/training/trainer.py."
        )
