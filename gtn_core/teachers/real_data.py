"""The real-data baseline: K fresh real training batches of B images per inner loop, same learner and budget."""
from __future__ import annotations

import torch
from torch import nn

from gtn_core.config import GTNConfig
from gtn_core.inner_hparams import learned_hparams
from gtn_core.teachers.base import Curriculum, Teacher, tensor_images


class RealDataTeacher(Teacher):
    """Draws K*B distinct training images per inner loop; only the inner lr/momentum are learned (or fixed)."""

    fixed_curriculum = False

    def __init__(self, cfg: GTNConfig, images: torch.Tensor, labels: torch.Tensor,
                 hparams: nn.Module | None = None) -> None:
        super().__init__()
        needed = cfg.inner_steps * cfg.batch_size
        if images.dim() != 4 or images.shape[0] != labels.shape[0] or images.shape[0] < needed:
            raise ValueError(f"real images {tuple(images.shape)} and labels {tuple(labels.shape)}: expected "
                             f"(N, C, H, W) and (N,) with N >= inner_steps * batch_size = {needed}")
        self.steps, self.batch = cfg.inner_steps, cfg.batch_size
        # The training set is data, not state: it is not saved with the teacher (a checkpoint asks for it again).
        self.register_buffer("images", images, persistent=False)
        self.register_buffer("targets", labels, persistent=False)
        self.hparams = hparams if hparams is not None else \
            learned_hparams(cfg)

    def curriculum(self, generator: torch.Generator) -> Curriculum:
        """K batches of B training images drawn without replacement (one epoch-like pass over K*B images)."""
        picks = torch.randperm(self.images.shape[0], generator=generator)[:self.steps * self.batch]
        picks = picks.view(self.steps, self.batch).to(self.device)
        return Curriculum(tensor_images(self.images[picks]), self.targets[picks])

