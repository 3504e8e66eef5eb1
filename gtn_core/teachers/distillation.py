"""Dataset distillation (Wang et al. 2018): the K*B training images themselves are learned pixels."""
from __future__ import annotations

import torch
from torch import nn

from gtn_core.config import GTNConfig
from gtn_core.inner_hparams import learned_hparams
from gtn_core.recompute import GeneratedImages
from gtn_core.seeds import NOISE, seeded_generator
from gtn_core.teachers.base import Curriculum, Teacher
from gtn_core.teachers.generator import curriculum_labels


class DistilledImages(Teacher):
    """Learned pixels (K, B, C, H, W) squashed by tanh into [-1, 1], fixed balanced labels, learned lr/momentum."""

    def __init__(self, cfg: GTNConfig) -> None:
        super().__init__()
        shape = (cfg.inner_steps, cfg.batch_size, cfg.learner.image_channels, cfg.learner.image_size,
                 cfg.learner.image_size)
        self.pixels = nn.Parameter(torch.randn(shape, generator=seeded_generator(cfg.seed, stream=NOISE)))
        self.hparams = learned_hparams(cfg)
        self.register_buffer("labels", curriculum_labels(cfg.inner_steps, cfg.batch_size, cfg.learner.num_classes))

    def curriculum(self, generator: torch.Generator) -> Curriculum:
        """The K learned batches in their fixed order."""
        return Curriculum(GeneratedImages(_squash, (self.pixels,)), self.labels)

    def learned_groups(self, cfg: GTNConfig) -> list[dict]:
        """The pixels, at the learned-inputs learning rate."""
        return [{"params": [self.pixels], "lr": cfg.inputs_lr, "name": "inputs"}]


def _squash(step: int, pixels: torch.Tensor) -> torch.Tensor:
    return torch.tanh(pixels[step])
