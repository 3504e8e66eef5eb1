"""The GTN's generator of labelled synthetic images, and the inputs it is fed (learned or random)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gtn_core.config import NOISE_DISTRIBUTIONS, VARIANTS, GeneratorConfig
from gtn_core.learners.layers import WeightNormConv2d, WeightNormLinear


class Generator(nn.Module):
    """Noise (N, Z) + labels (N,) -> images (N, C, H, W) in [-1, 1]."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        side = cfg.image_size // 4
        mid_channels = cfg.base_channels // 2
        linear = WeightNormLinear if cfg.weight_norm else nn.Linear
        self.dense = nn.Sequential(
            linear(cfg.noise_size + cfg.num_classes, cfg.hidden_size),
            nn.BatchNorm1d(cfg.hidden_size, track_running_stats=False),
            nn.LeakyReLU(cfg.negative_slope),
            linear(cfg.hidden_size, cfg.base_channels * side * side),
            nn.BatchNorm1d(cfg.base_channels * side * side, track_running_stats=False),
            nn.LeakyReLU(cfg.negative_slope),
        )
        self.upsample = nn.Sequential(
            *_upsample_x2(cfg, cfg.base_channels, mid_channels),
            nn.BatchNorm2d(mid_channels, track_running_stats=False),
            nn.LeakyReLU(cfg.negative_slope),
            *_upsample_x2(cfg, mid_channels, cfg.image_channels),
        )
        # BatchNorm always uses batch statistics (no running state), so a curriculum is a pure
        # function of the teacher's weights and inputs, in training and at meta-test alike. Statistics
        # are per inner-step batch: a step's images never depend on the other steps' inputs.

    def forward(self, noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Generate one image per (noise, label) row."""
        one_hot = F.one_hot(labels, self.cfg.num_classes).to(noise.dtype)
        hidden = self.dense(torch.cat([noise, one_hot], dim=1))  # (N, C*s*s)
        side = self.cfg.image_size // 4
        hidden = hidden.view(-1, self.cfg.base_channels, side, side)  # (N, C, s, s)
        return torch.tanh(self.upsample(hidden))  # (N, image_channels, H, W)


def _upsample_x2(cfg: GeneratorConfig, in_channels: int, out_channels: int) -> list[nn.Module]:
    """Layers that double the side of (N, in_channels, s, s) into (N, out_channels, 2s, 2s)."""
    if cfg.upsampling == "transposed":
        return [nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1)]
    conv = WeightNormConv2d if cfg.weight_norm else nn.Conv2d
    return [nn.Upsample(scale_factor=2, mode="nearest"), conv(in_channels, out_channels, 3, padding=1)]


def curriculum_labels(inner_steps: int, batch_size: int, num_classes: int) -> torch.Tensor:
    """Fixed labels (K, B): classes cycle through every step in turn, so they are as even as possible overall."""
    positions = torch.arange(inner_steps * batch_size)
    return (positions % num_classes).view(inner_steps, batch_size)


def sample_noise(shape: tuple[int, ...], distribution: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw teacher inputs from N(0, 1), U(-1, 1) or U(0, 1) (GoodAI's torch.rand)."""
    if distribution == "normal":
        return torch.randn(shape, generator=generator)
    if distribution == "uniform":
        return torch.rand(shape, generator=generator) * 2 - 1
    if distribution == "uniform01":
        return torch.rand(shape, generator=generator)
    raise ValueError(f"noise distribution {distribution!r}: expected one of {', '.join(NOISE_DISTRIBUTIONS)}")


class TeacherInputs(nn.Module):
    """The (K, B, Z) noise fed to the teacher: a parameter (learned), a saved buffer (random_fixed) or fresh draws."""

    def __init__(self, variant: str, inner_steps: int, batch_size: int, noise_size: int, distribution: str,
                 init_generator: torch.Generator) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"teacher input variant {variant!r}: expected one of {', '.join(VARIANTS)}")
        self.variant = variant
        self.distribution = distribution
        self.shape = (inner_steps, batch_size, noise_size)
        initial = sample_noise(self.shape, distribution, init_generator)
        if variant == "learned":
            self.noise = nn.Parameter(initial)
        elif variant == "random_fixed":
            self.register_buffer("noise", initial)
        else:
            self.register_buffer("noise", None)
        # Tracks the module's device for fresh draws, which come from a CPU generator for reproducibility.
        self.register_buffer("device_anchor", torch.empty(0), persistent=False)

    def forward(self, generator: torch.Generator) -> torch.Tensor:
        """This inner loop's inputs (K, B, Z); the `random` variant draws new ones from `generator` on every call."""
        if self.variant == "random":
            return sample_noise(self.shape, self.distribution, generator).to(self.device_anchor.device)
        return self.noise
