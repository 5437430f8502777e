"""RAPGRPOTrainer overrides private GRPOTrainer hooks: the installed TRL must still have them as written for."""

import pytest
from trl import GRPOTrainer

from rap_hf.training.trainer import RAPGRPOTrainer
from rap_hf.training.trl_hooks import OVERRIDDEN_HOOKS, check_trl_hooks, hook_mismatches


def test_installed_trl_has_every_overridden_hook():
    assert hook_mismatches(GRPOTrainer) == [], (
        "TRL's private hooks changed; RAPGRPOTrainer's overrides would silently break"
    )
    check_trl_hooks()


def test_the_contract_lists_every_private_override_of_the_trainer():
    overridden = {
        name
        for name, value in vars(RAPGRPOTrainer).items()
        if name.startswith("_")
        and not name.startswith("__")
        and callable(value)
        and hasattr(GRPOTrainer, name)
    }
    assert overridden == set(OVERRIDDEN_HOOKS)


def test_a_changed_hook_fails_loudly_with_its_name():
    class ChangedTRL(GRPOTrainer):
        def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list, extra):
            return None

    class RemovedHook:
        pass

    assert hook_mismatches(ChangedTRL) == [
        "_calculate_rewards('inputs', 'prompts', 'completions', 'completion_ids_list', 'extra') (written for "
        "_calculate_rewards('inputs', 'prompts', 'completions', 'completion_ids_list'))"
    ]
    with pytest.raises(RuntimeError, match="_calculate_rewards.*pins"):
        check_trl_hooks(ChangedTRL)
    assert len(hook_mismatches(RemovedHook)) == len(OVERRIDDEN_HOOKS)
