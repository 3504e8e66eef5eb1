"""Bad configuration fails early with a message that names the value and what was expected."""
import pytest

from gtn_core.config import GTNConfig, LearnerConfig, GeneratorConfig
from gtn_core.device import resolve_device


@pytest.mark.parametrize("overrides, message", [
    ({"variant": "learnt"}, r"variant='learnt'.*learned, random_fixed, random"),
    ({"inner_steps": 0}, r"inner_steps=0: expected a positive"),
    ({"inner_steps": -3}, r"inner_steps=-3"),
    ({"batch_size": 0}, r"batch_size=0"),
    ({"outer_steps": 2.5}, r"outer_steps=2.5: expected a positive integer"),
    ({"unroll_backend": "jax"}, r"unroll_backend='jax'.*func, higher"),
    ({"bn_mode": "frozen"}, r"bn_mode='frozen'.*train, eval"),
    ({"noise_distribution": "cauchy"}, r"noise_distribution='cauchy'"),
    ({"inner_momentum_init": 1.0}, r"inner_momentum_init=1.0.*\(0, 1\)"),
    ({"teacher_lr": -1e-3}, r"teacher_lr=-0.001"),
    ({"learner": LearnerConfig(num_classes=5)}, r"num_classes"),
    ({"checkpoint_unroll": True, "unroll_backend": "higher"}, r"checkpoint_unroll=True with unroll_backend='higher'"),
    ({"checkpoint_unroll": "yes"}, r"checkpoint_unroll='yes': expected True or False"),
])
def test_bad_config_is_rejected_with_a_clear_message(overrides, message):
    with pytest.raises(ValueError, match=message):
        GTNConfig(**overrides)


def test_bad_network_shapes_are_rejected():
    with pytest.raises(ValueError, match="image_size=30: expected a multiple of 4"):
        GeneratorConfig(image_size=30)
    with pytest.raises(ValueError, match=r"channels=\(0,\): expected a tuple of positive ints"):
        LearnerConfig(channels=(0,))
    with pytest.raises(ValueError, match="global pooling needs conv layers"):
        LearnerConfig(channels=(), head="global_avg")
    with pytest.raises(ValueError, match=r"kernels=\(3, 1, 3\): expected one value or 2"):
        LearnerConfig(kernels=(3, 1, 3))
    with pytest.raises(ValueError, match="kernels=2: expected odd positive ints"):
        LearnerConfig(kernels=2)
    with pytest.raises(ValueError, match="pooling='mean': expected one of max, avg, none"):
        LearnerConfig(pooling="mean")
    with pytest.raises(ValueError, match="normalisation='layer': expected one of"):
        LearnerConfig(normalisation="layer")
    with pytest.raises(ValueError, match="conv layer 3 pools a 1x1 map"):
        LearnerConfig(channels=(4, 4, 4, 4), image_size=8)


def test_device_auto_resolves_and_unknown_devices_are_rejected():
    assert resolve_device("auto").type in ("cpu", "cuda")
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="'tpu'"):
        resolve_device("tpu")


def test_a_config_round_trips_through_its_recorded_dict_and_unknown_keys_are_named():
    from gtn_core.config import config_from_dict, config_to_dict

    cfg = GTNConfig(curriculum="all_shuffled", generator=GeneratorConfig(hidden_size=64),
                    learner=LearnerConfig(channels=(4, 8)))
    assert config_from_dict(config_to_dict(cfg)) == cfg
    with pytest.raises(ValueError, match="unknown key\\(s\\) hiden_size"):
        config_from_dict({"generator": {"hiden_size": 3}})
    with pytest.raises(ValueError, match="unknown key\\(s\\) teacher_hidden_size"):
        config_from_dict({"teacher_hidden_size": 3})


def test_every_field_is_documented():
    import dataclasses

    from gtn_core.sgd_grid import SGDGridConfig

    for cls in (GTNConfig, GeneratorConfig, LearnerConfig, SGDGridConfig):
        for f in dataclasses.fields(cls):
            assert f.metadata.get("doc"), f"{cls.__name__}.{f.name} has no doc"
