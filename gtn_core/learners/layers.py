"""The learners' layers that work inside the functional unroll: BatchNorm whose running statistics stay in the graph,
the paper code's mean-only BatchNorm, weight-normalised conv and linear layers, and poolings."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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


class MeanOnlyBatchNorm(nn.Module):
    """The paper code's mean-only BatchNorm: subtract the per-channel batch mean (train) or running mean (eval), add a
    learned bias; the running mean is rebound, so it stays in the graph as BatchNorm's statistics do."""

    def __init__(self, num_features: int, momentum: float = 0.1) -> None:
        super().__init__()
        self.momentum = momentum
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, ...) -> (N, C, ...) with every channel's mean replaced by its bias."""
        shape = (1, -1) + (1,) * (x.dim() - 2)
        if not self.training:
            return x + (self.bias - self.running_mean).view(shape)
        mean = x.mean([0, *range(2, x.dim())])
        self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * mean
        return x + (self.bias - mean).view(shape)


def _weight_norm_scale(weight: torch.Tensor) -> torch.Tensor:
    """The L2 norm of each output unit's weights (dim 0), (out,)."""
    return weight.flatten(1).norm(dim=1)


class _WeightNorm:
    """Weight normalisation (Salimans & Kingma 2016) of a layer's `weight`: the layer uses `scale * weight / ||weight||`
    per output unit; both `weight` (the direction) and `scale` are parameters, so the functional unroll
    differentiates through them."""

    weight: nn.Parameter
    scale: nn.Parameter

    def reset_scale(self) -> None:
        """Set `scale` to the direction's norms, so the layer starts as its plain layer with `weight`."""
        with torch.no_grad():
            self.scale.copy_(_weight_norm_scale(self.weight))

    def normalised_weight(self) -> torch.Tensor:
        """`scale * weight / ||weight||`, each output unit's weights rescaled to norm `scale`."""
        factor = self.scale / _weight_norm_scale(self.weight)
        return self.weight * factor.view(-1, *([1] * (self.weight.dim() - 1)))


class WeightNormConv2d(_WeightNorm, nn.Conv2d):
    """Conv2d with a weight-normalised kernel (per output channel)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.scale = nn.Parameter(_weight_norm_scale(self.weight.detach()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, H, W) -> (N, C_out, H', W') with the normalised kernel."""
        return self._conv_forward(x, self.normalised_weight(), self.bias)


class WeightNormLinear(_WeightNorm, nn.Linear):
    """Linear with weight-normalised rows."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.scale = nn.Parameter(_weight_norm_scale(self.weight.detach()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in) -> (N, out) with the normalised rows."""
        return F.linear(x, self.normalised_weight(), self.bias)


class AvgPool2x2(nn.Module):
    """2x2 average pooling with stride 2."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, C, H // 2, W // 2)."""
        return F.avg_pool2d(x, 2)


class GlobalAvgPool(nn.Module):
    """The mean of each feature map: (N, C, H, W) -> (N, C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, C)."""
        return x.mean((2, 3))
