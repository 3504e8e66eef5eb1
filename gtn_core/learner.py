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


class BatchMoments(torch.autograd.Function):
    """Per-channel mean and unbiased variance (n / (n - 1), as nn.BatchNorm's running_var) of x (N, C, ...).

    torch.var_mean gives these, but its one-pass (Welford) CPU kernel is ~15x slower than these two passes: measured,
    it took 8% of an experiment-B outer step in bn_mode="train" (mostly on the meta-loss's 512-image batch), these 1.4%.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (N, C, ...) -> mean (C,), variance (C,)."""
        dims = [0, *range(2, x.dim())]
        mean = x.mean(dims, keepdim=True)
        # Centred 16 samples at a time: one temporary the size of x (51 MB for the meta-loss's batch) raised peak RSS
        # by ~40 MB (checkpointed experiment B); small slices cost no measurable time.
        var = sum((part - mean).square_().sum(dims) for part in x.split(16)) / (x.numel() // x.shape[1] - 1)
        ctx.save_for_backward(x)
        return mean.flatten(), var

    @staticmethod
    def backward(ctx, grad_mean: torch.Tensor, grad_var: torch.Tensor) -> torch.Tensor:
        """d/dx of <grad_mean, mean> + <grad_var, var>."""
        x, = ctx.saved_tensors
        n, shape = x.numel() // x.shape[1], (1, -1) + (1,) * (x.dim() - 2)
        # The mean is recomputed from x (not saved from forward), so second derivatives are right too.
        centred = x - x.mean([0, *range(2, x.dim())], keepdim=True)
        return grad_mean.view(shape) / n + grad_var.view(shape) * (2 / (n - 1)) * centred


class BatchNorm(nn.Module):
    """BatchNorm over every dim but the channel dim 1 (as nn.BatchNorm1d/2d) whose running statistics stay in the graph.

    nn.BatchNorm updates its running statistics in place, outside autograd, so a meta-loss that scores the trained
    learner with them (bn_mode="eval") would miss their dependence on the unroll. Here train mode computes the new
    statistics as differentiable tensors and rebinds the buffers to them, and eval mode normalises with a
    differentiable formula (F.batch_norm in eval mode does not differentiate through the running statistics).
    """

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, ...) -> (N, C, ...), normalised per channel by batch (train) or running (eval) statistics."""
        if not self.training:
            # One fused multiply-add over x: the per-channel scale and shift are (C,) vectors.
            scale = self.weight * torch.rsqrt(self.running_var + self.eps)
            shape = (1, -1) + (1,) * (x.dim() - 2)
            return torch.addcmul((self.bias - self.running_mean * scale).view(shape), x, scale.view(shape))
        # F.batch_norm without running statistics: the same train-mode output as nn.BatchNorm, bit for bit (and the
        # same error for a single value per channel).
        normalised = F.batch_norm(x, None, None, self.weight, self.bias, training=True, eps=self.eps)
        mean, var = BatchMoments.apply(x)
        # Rebound, not updated in place: functional_call hands the new tensors back to the caller's dict.
        self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * mean
        self.running_var = (1 - self.momentum) * self.running_var + self.momentum * var
        return normalised


class Learner(nn.Module):
    """(conv3x3-BN-LeakyReLU-maxpool) blocks, a linear classifier, and BatchNorm on the logits."""

    def __init__(self, cfg: LearnerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        blocks, in_channels = [], cfg.image_channels
        for out_channels in cfg.channels:
            blocks += [nn.Conv2d(in_channels, out_channels, 3, padding=1), BatchNorm(out_channels),
                       nn.LeakyReLU(cfg.negative_slope), MaxPool2x2()]
            in_channels = out_channels
        self.features = nn.Sequential(*blocks)
        side = cfg.image_size // 2 ** len(cfg.channels)
        self.classifier = nn.Linear(in_channels * side * side, cfg.num_classes)
        # BN on the logits (as in GoodAI's learner) keeps their scale sane after a handful of
        # large-lr steps; without it the learner barely trains in 20 steps.
        self.logit_norm = BatchNorm(cfg.num_classes) if cfg.logit_batch_norm else nn.Identity()

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
