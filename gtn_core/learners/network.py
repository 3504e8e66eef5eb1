"""The learner: one configurable network (`LearnerConfig`) built fresh (Kaiming init) for every inner loop."""
from __future__ import annotations

import torch
from torch import nn

from gtn_core.config import LearnerConfig
from gtn_core.learners.layers import (AvgPool2x2, BatchNorm, GlobalAvgPool, MaxPool2x2, MeanOnlyBatchNorm,
                                      WeightNormConv2d, WeightNormLinear)

POOLS = {"max": MaxPool2x2, "avg": AvgPool2x2}


def _norm_layer(normalisation: str, features: int) -> list[nn.Module]:
    """The normalisation after a conv or hidden layer (none for plain weight norm or none)."""
    if normalisation == "batch":
        return [BatchNorm(features)]
    if normalisation == "weight_mean_only":
        return [MeanOnlyBatchNorm(features)]
    return []


def _conv(cfg: LearnerConfig, in_channels: int, out_channels: int, kernel: int, stride: int) -> nn.Module:
    # Mean-only BatchNorm's bias replaces the conv's (as in the paper's code); full BatchNorm keeps GoodAI's bias.
    weight_norm = cfg.normalisation in ("weight", "weight_mean_only")
    conv = WeightNormConv2d if weight_norm else nn.Conv2d
    return conv(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2,
                bias=cfg.normalisation != "weight_mean_only")


def _linear(cfg: LearnerConfig, in_features: int, out_features: int, hidden: bool) -> nn.Module:
    weight_norm = cfg.normalisation in ("weight", "weight_mean_only")
    linear = WeightNormLinear if weight_norm else nn.Linear
    return linear(in_features, out_features, bias=not (hidden and cfg.normalisation == "weight_mean_only"))


class Learner(nn.Module):
    """Conv layers (conv-norm-LeakyReLU-pool), a head (flatten or global pooling, hidden layers, linear), logit BN."""

    def __init__(self, cfg: LearnerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        blocks, channels = [], cfg.image_channels
        layers = zip(cfg.channels, cfg.layer_values("kernels"), cfg.layer_values("strides"),
                     cfg.layer_values("pooling"))
        for out_channels, kernel, stride, pooling in layers:
            blocks += [_conv(cfg, channels, out_channels, kernel, stride), *_norm_layer(cfg.normalisation, out_channels),
                       nn.LeakyReLU(cfg.negative_slope)]
            blocks += [POOLS[pooling]()] if pooling != "none" else []
            channels = out_channels
        self.features = nn.Sequential(*blocks)
        if cfg.head == "global_avg":
            self.pool, width = GlobalAvgPool(), channels
        else:
            self.pool, width = nn.Flatten(), channels * cfg.feature_side() ** 2
        hidden = []
        for size in cfg.hidden:
            hidden += [_linear(cfg, width, size, hidden=True), *_norm_layer(cfg.normalisation, size),
                       nn.LeakyReLU(cfg.negative_slope)]
            width = size
        self.hidden = nn.Sequential(*hidden)
        self.classifier = _linear(cfg, width, cfg.num_classes, hidden=False)
        # BN on the logits (as in GoodAI's learner) keeps their scale sane after a handful of
        # large-lr steps; without it the learner barely trains in 20 steps.
        self.logit_norm = BatchNorm(cfg.num_classes) if cfg.logit_batch_norm else nn.Identity()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W) -> logits (N, num_classes)."""
        features = self.pool(self.features(images))  # (N, C*h*w) or (N, C)
        return self.logit_norm(self.classifier(self.hidden(features)))


def init_learner(cfg: LearnerConfig, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> Learner:
    """A fresh learner with Kaiming-normal conv/linear weights and zero biases (weight norm starting at those)."""
    learner = Learner(cfg)
    for module in learner.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, a=cfg.negative_slope, nonlinearity="leaky_relu",
                                    generator=generator)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        if isinstance(module, (WeightNormConv2d, WeightNormLinear)):
            module.reset_scale()
    return learner.to(device)
