"""Shared fixtures: tiny configurations so every core test runs on CPU in seconds."""
import pytest
import torch

from gtn_core.config import GTNConfig, LearnerConfig, TeacherConfig


def tiny_config(**overrides) -> GTNConfig:
    """A GTN small enough for float64 finite differences: 3 classes, 8x8 images, 3 inner steps of 6."""
    values = dict(
        batch_size=6, inner_steps=3, outer_steps=2, eval_every=1, real_batch_size=9, eval_batch_size=16,
        train_eval_size=16,
        teacher=TeacherConfig(noise_size=4, num_classes=3, hidden_size=8, base_channels=4, image_size=8),
        learner=LearnerConfig(channels=(3,), num_classes=3, image_size=8),
    )
    values.update(overrides)
    return GTNConfig(**values)


@pytest.fixture
def float64():
    """Run a test with float64 as the default dtype (finite differences need it)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)
