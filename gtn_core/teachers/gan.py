"""A conditional DCGAN (generator and discriminator) and its generator as a teacher: fresh noise, balanced labels."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from gtn_core.config import GANConfig, GTNConfig
from gtn_core.inner_hparams import learned_hparams
from gtn_core.recompute import GeneratedImages
from gtn_core.teachers.base import Curriculum, Teacher
from gtn_core.teachers.generator import curriculum_labels


class GANGenerator(nn.Module):
    """Noise (N, Z) + labels (N,) -> images (N, C, H, W) in [-1, 1]; BatchNorm on batch statistics only, so the
    images of a batch are a pure function of the weights and the batch's inputs."""

    def __init__(self, cfg: GANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        side, channels = cfg.image_size // 4, cfg.base_channels
        self.dense = nn.Sequential(nn.Linear(cfg.noise_size + cfg.num_classes, channels * side * side),
                                   nn.BatchNorm1d(channels * side * side, track_running_stats=False), nn.ReLU())
        self.upsample = nn.Sequential(
            nn.ConvTranspose2d(channels, channels // 2, 4, stride=2, padding=1),
            nn.BatchNorm2d(channels // 2, track_running_stats=False), nn.ReLU(),
            nn.ConvTranspose2d(channels // 2, cfg.image_channels, 4, stride=2, padding=1))

    def forward(self, noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One image per (noise, label) row."""
        one_hot = F.one_hot(labels, self.cfg.num_classes).to(noise.dtype)
        side = self.cfg.image_size // 4
        hidden = self.dense(torch.cat([noise, one_hot], dim=1)).view(-1, self.cfg.base_channels, side, side)
        return torch.tanh(self.upsample(hidden))  # (N, C, H, W)


class GANDiscriminator(nn.Module):
    """Image (N, C, H, W) + labels (N,) -> real/fake logit (N,); the label enters as one constant plane per class."""

    def __init__(self, cfg: GANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        width = cfg.base_channels // 2
        self.features = nn.Sequential(
            nn.Conv2d(cfg.image_channels + cfg.num_classes, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.BatchNorm2d(2 * width), nn.LeakyReLU(0.2))
        self.logit = nn.Linear(2 * width * (cfg.image_size // 4) ** 2, 1)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Logit that each (image, label) pair is real."""
        planes = F.one_hot(labels, self.cfg.num_classes).to(images.dtype)[:, :, None, None]
        planes = planes.expand(-1, -1, *images.shape[2:])  # (N, classes, H, W)
        return self.logit(self.features(torch.cat([images, planes], dim=1)).flatten(1)).squeeze(1)


class GANTeacher(Teacher):
    """A trained GAN generator on fresh noise and balanced labels; the inner lr/momentum are meta-learned and the
    generator's weights too when `gan.meta_train` (a GTN initialised from the GAN)."""

    fixed_curriculum = False

    def __init__(self, cfg: GTNConfig) -> None:
        super().__init__()
        self.generator = GANGenerator(cfg.gan)
        self.generator.requires_grad_(cfg.gan.meta_train)
        self.meta_train = cfg.gan.meta_train
        self.shape = (cfg.inner_steps, cfg.batch_size, cfg.gan.noise_size)
        self.hparams = learned_hparams(cfg)
        self.register_buffer("labels", curriculum_labels(cfg.inner_steps, cfg.batch_size, cfg.gan.num_classes))

    def curriculum(self, generator: torch.Generator) -> Curriculum:
        """K batches of B generated images on noise drawn from `generator`, the labels cycling through the classes."""
        noise = torch.randn(self.shape, generator=generator).to(self.device)  # (K, B, Z)
        labels, names = self.labels, [name for name, _ in self.generator.named_parameters()]

        def generate(step: int, *tensors: torch.Tensor) -> torch.Tensor:
            return functional_call(self.generator, dict(zip(names, tensors[:-1])), (tensors[-1][step], labels[step]))

        return Curriculum(GeneratedImages(generate, (*self.generator.parameters(), noise)), labels)

    def learned_groups(self, cfg: GTNConfig) -> list[dict]:
        """The generator's weights when meta-trained (else none: only the inner hyper-parameters learn)."""
        return [{"params": list(self.generator.parameters()), "lr": cfg.teacher_lr, "name": "teacher"}] \
            if self.meta_train else []
