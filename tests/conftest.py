import os

import pytest

# Tests never touch the network: the Hub is unreachable here, and loading must work offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny Qwen2.5-VL saved to disk, loaded back by the code under test through from_pretrained."""
    from rap_hf.demo.tiny_models import save_tiny_vlm

    return save_tiny_vlm(tmp_path_factory.mktemp("tiny-qwen2_5_vl"), seed=0)


@pytest.fixture(scope="session")
def tiny_filter_factory(tiny_model_dir):
    """Build RAPDataFilters over the same saved tiny model (each loads it from disk)."""
    from rap_hf import RAPConfig, RAPDataFilter

    def make(reward_fn=None, **config_kwargs):
        defaults = {"num_rollouts": 2, "max_new_tokens": 8, "batch_size": 4}
        defaults.update(config_kwargs)
        return RAPDataFilter(str(tiny_model_dir), config=RAPConfig(**defaults), reward_fn=reward_fn)

    return make
