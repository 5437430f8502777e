import pytest

from rap_hf import RAPConfig


def test_defaults_are_the_papers():
    cfg = RAPConfig()
    assert (cfg.num_rollouts, cfg.sigma, cfg.lambda_c, cfg.lambda_a, cfg.ace_mode) == (
        5,
        2.0,
        0.5,
        0.1,
        "paper",
    )
    assert cfg.active_ace_column == "rap_ace"
    assert RAPConfig(ace_mode="normalized").active_ace_column == "rap_ace_norm"


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"num_rollouts": -1}, "num_rollouts"),
        ({"num_rollouts": 0}, "num_rollouts"),
        ({"target_ratio": 0.0}, "target_ratio"),
        ({"target_ratio": 1.5}, "target_ratio"),
        ({"drm_ratio": 2.0}, "drm_ratio"),
        ({"drm_k": 3, "drm_ratio": 0.5}, "drm_k and drm_ratio"),
        ({"top_p": 0.0}, "top_p"),
        ({"ace_mode": "other"}, "ace_mode"),
        ({"sigma": 0.0}, "sigma"),
        ({"batch_size": 0}, "batch_size"),
        ({"prefill": "once"}, "prefill"),
    ],
)
def test_bad_values_raise_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        RAPConfig(**kwargs)


def test_from_dict_round_trip_and_unknown_keys():
    cfg = RAPConfig(num_rollouts=3, target_ratio=0.1)
    assert RAPConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="lambda_x"):
        RAPConfig.from_dict({"lambda_x": 1})
