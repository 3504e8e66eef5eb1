"""The learner: a small CNN built fresh (Kaiming init) for every inner loop."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gtn_core.config import LearnerConfig


class MaxPool2x2(nn.Module):
    """2x2 max pooling with stride 2 (as nn.MaxPool2d(2)); without autograd, two strided maxima instead."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, C, H // 2, W // 2), the maximum of each 2x2 window."""
        if torch.is_grad_enabled() and x.requires_grad:
            # Training keeps max_pool2d: its gradient goes to one element of a tied window (ties are common in
            # flat image regions), which pairwise maxima would split.
            return F.max_pool2d(x, 2)
        # Scoring: the same values (a maximum is exact), ~10x faster than CPU max_pool2d, which also builds the
        # argmax indices; it was 40% of the time spent scoring the test set.
        x = x[:, :, : x.shape[2] // 2 * 2, : x.shape[3] // 2 * 2]
        rows = torch.maximum(x[:, :, 0::2], x[:, :, 1::2])
        return torch.maximum(rows[..., 0::2], rows[..., 1::2])


class Learner(nn.Module):
    """(conv3x3-BN-LeakyReLU-maxpool) blocks, a linear classifier, and BatchNorm on the logits."""

    def __init__(self, cfg: LearnerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        blocks, in_channels = [], cfg.image_channels
        for out_channels in cfg.channels:
            blocks += [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels),
                       nn.LeakyReLU(cfg.negative_slope), MaxPool2x2()]
            in_channels = out_channels
        self.features = nn.Sequential(*blocks)
        side = cfg.image_size // 2 ** len(cfg.channels)
        self.classifier = nn.Linear(in_channels * side * side, cfg.num_classes)
        # BN on the logits (as in GoodAI's learner) keeps their scale sane after a handful of
        # large-lr steps; without it the learner barely trains in 20 steps.
        self.logit_norm = nn.BatchNorm1d(cfg.num_classes) if cfg.logit_batch_norm else nn.Identity()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W) -> logits (N, num_classes)."""
        features = self.features(images).flatten(1)  # (N, C*h*w)
        return self.logit_norm(self.classifier(features))


def init_learner(cfg: LearnerConfig, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> Learner:
    """A fresh learner with Kaiming-normal conv/linear weights and zero biases."""
    learner = Learner(cfg)
    for module in learner.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, a=cfg.negative_slope, nonlinearity="leaky_relu",
                                    generator=generator)
            nn.init.zeros_(module.bias)
    return learner.to(device)
