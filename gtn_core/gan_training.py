"""Training a conditional DCGAN on real images: the non-saturating GAN loss with Adam (Radford et al. 2016)."""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gtn_core.config import GANConfig
from gtn_core.teachers.gan import GANDiscriminator, GANGenerator


@dataclass(frozen=True)
class GANTraining:
    """The GAN's training budget and Adam settings (DCGAN's lr 2e-4 and beta1 0.5)."""

    steps: int = 3000
    batch_size: int = 64
    lr: float = 2e-4
    beta1: float = 0.5

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"GANTraining.{name}={value!r}: expected a positive integer")
        if not self.lr > 0 or not 0 <= self.beta1 < 1:
            raise ValueError(f"GANTraining lr={self.lr!r}, beta1={self.beta1!r}: expected lr > 0 and beta1 in [0, 1)")


@dataclass(frozen=True)
class GANRecord:
    """One training step: both losses, the discriminator's mean belief in real and fake images, its seconds."""

    step: int
    d_loss: float
    g_loss: float
    d_real: float
    d_fake: float
    seconds: float


class GANTrainer:
    """A generator and a discriminator trained in turns on batches of real (image, label) pairs."""

    def __init__(self, cfg: GANConfig, training: GANTraining, images: torch.Tensor, labels: torch.Tensor,
                 generator: torch.Generator) -> None:
        if images.dim() != 4 or images.shape[1:] != (cfg.image_channels, cfg.image_size, cfg.image_size) or \
                labels.shape != images.shape[:1]:
            raise ValueError(f"images {tuple(images.shape)} and labels {tuple(labels.shape)}: expected (N, "
                             f"{cfg.image_channels}, {cfg.image_size}, {cfg.image_size}) and (N,)")
        self.cfg, self.training, self.images, self.labels, self.random = cfg, training, images, labels, generator
        with torch.random.fork_rng(devices=[]):  # both networks' init from the run's seed, not the global RNG
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
            self.generator_net = GANGenerator(cfg).to(images.device)
            self.discriminator = GANDiscriminator(cfg).to(images.device)
        betas = (training.beta1, 0.999)
        self.g_optimizer = torch.optim.Adam(self.generator_net.parameters(), lr=training.lr, betas=betas)
        self.d_optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=training.lr, betas=betas)
        self.step = 0

    def _fakes(self, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        noise = torch.randn(count, self.cfg.noise_size, generator=self.random).to(self.images.device)
        labels = torch.randint(0, self.cfg.num_classes, (count,), generator=self.random).to(self.images.device)
        return self.generator_net(noise, labels), labels

    def train_step(self) -> GANRecord:
        """One discriminator step on a real and a fake batch, then one non-saturating generator step."""
        started = time.perf_counter()
        batch = torch.randint(0, self.images.shape[0], (self.training.batch_size,), generator=self.random)
        real, real_labels = self.images[batch.to(self.images.device)], self.labels[batch.to(self.images.device)]
        fake, fake_labels = self._fakes(self.training.batch_size)
        real_logits = self.discriminator(real, real_labels)
        fake_logits = self.discriminator(fake.detach(), fake_labels)
        d_loss = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits)) + \
            F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
        self.d_optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        self.d_optimizer.step()
        # Non-saturating: the generator maximises log D(G(z)) rather than minimising log(1 - D(G(z))).
        fooled = self.discriminator(fake, fake_labels)
        g_loss = F.binary_cross_entropy_with_logits(fooled, torch.ones_like(fooled))
        self.g_optimizer.zero_grad(set_to_none=True)
        g_loss.backward()
        self.g_optimizer.step()
        self.step += 1
        return GANRecord(self.step, d_loss.item(), g_loss.item(), torch.sigmoid(real_logits).mean().item(),
                         torch.sigmoid(fake_logits).mean().item(), time.perf_counter() - started)

    def records(self) -> Iterator[GANRecord]:
        """The remaining training steps, one record each."""
        while self.step < self.training.steps:
            yield self.train_step()

    def samples(self, per_class: int, generator: torch.Generator) -> torch.Tensor:
        """A grid of generated images (classes, per_class, C, H, W), one row per class."""
        noise = torch.randn(self.cfg.num_classes * per_class, self.cfg.noise_size, generator=generator)
        labels = torch.arange(self.cfg.num_classes).repeat_interleave(per_class)
        with torch.no_grad():
            images = self.generator_net(noise.to(self.images.device), labels.to(self.images.device))
        return images.view(self.cfg.num_classes, per_class, *images.shape[1:])
