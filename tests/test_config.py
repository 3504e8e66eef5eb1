"""Bad configuration fails early with a message that names the value and what was expected."""
import pytest

from gtn_core.config import GTNConfig, LearnerConfig, TeacherConfig
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
        TeacherConfig(image_size=30)
    with pytest.raises(ValueError, match="channels=\\(\\)"):
        LearnerConfig(channels=())


def test_device_auto_resolves_and_unknown_devices_are_rejected():
    assert resolve_device("auto").type in ("cpu", "cuda")
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="'tpu'"):
        resolve_device("tpu")
