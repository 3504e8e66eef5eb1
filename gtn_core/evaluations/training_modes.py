"""The three ways Willis (2021) trains a learner to evaluate: on the teacher's whole curriculum (`gtn`), on its first
few steps (`short_gtn`, his 10_gtn), or on real data for a budget of Adam epochs (`vanilla`)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gtn_core.config import GTNConfig, LearnerConfig
from gtn_core.evaluate import meta_test
from gtn_core.learners import Learner, init_learner
from gtn_core.teachers import Teacher
from gtn_core.unroll import LearnerState, initial_state, set_buffers

MODES = ("gtn", "short_gtn", "vanilla")


@dataclass(frozen=True)
class VanillaTraining:
    """Real-data training of the `vanilla` learners: Adam over shuffled batches of the training set."""

    epochs: float = 1.0
    batch_size: int = 128
    lr: float = 1e-3

    def __post_init__(self) -> None:
        for name in ("epochs", "lr"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"VanillaTraining.{name}={value!r}: expected a positive number")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"VanillaTraining.batch_size={self.batch_size!r}: expected a positive integer")


def check_count(name: str, value) -> None:
    """ValueError unless `value` is a positive int."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r}: expected a positive integer")


def check_modes(modes, short_steps: int, inner_steps: int | None = None) -> tuple[str, ...]:
    """`modes` as a tuple, ValueError naming an unknown mode or a `short_steps` outside 1..inner_steps."""
    modes = tuple(modes)
    unknown = [mode for mode in modes if mode not in MODES]
    if unknown or not modes:
        raise ValueError(f"modes={list(modes)!r}: expected a non-empty subset of {', '.join(MODES)}")
    if isinstance(short_steps, bool) or not isinstance(short_steps, int) or short_steps < 1 or \
            (inner_steps is not None and "short_gtn" in modes and short_steps > inner_steps):
        raise ValueError(f"short_steps={short_steps!r}: expected an int in 1..{inner_steps or 'K'} (the teacher's "
                         "inner steps)")
    return modes


def train_on_real_data(learner_cfg: LearnerConfig, images: torch.Tensor, labels: torch.Tensor,
                       training: VanillaTraining, generator: torch.Generator) -> tuple[Learner, LearnerState]:
    """A fresh learner trained by Adam on shuffled real batches for `training.epochs` epochs (the last batch of an
    epoch may be short; a fractional epoch stops early)."""
    learner = init_learner(learner_cfg, generator, images.device)
    learner.train()
    optimizer = torch.optim.Adam(learner.parameters(), lr=training.lr)
    steps = max(1, round(training.epochs * -(-images.shape[0] // training.batch_size)))
    order = torch.empty(0, dtype=torch.long)
    for _ in range(steps):
        if order.numel() == 0:
            order = torch.randperm(images.shape[0], generator=generator)
        batch, order = order[:training.batch_size].to(images.device), order[training.batch_size:]
        loss = F.cross_entropy(learner(images[batch]), labels[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        # BatchNorm rebinds its running statistics as graph tensors (for the unroll); drop each step's graph.
        set_buffers(learner, {name: buffer.detach() for name, buffer in learner.named_buffers()})
    return learner, initial_state(learner)


def train_learner(mode: str, teacher: Teacher, cfg: GTNConfig, learner_cfg: LearnerConfig, generator: torch.Generator,
                  train_images: torch.Tensor, train_labels: torch.Tensor, short_steps: int,
                  vanilla: VanillaTraining) -> tuple[Learner, LearnerState]:
    """A fresh `learner_cfg` learner trained the `mode` way (its initialisation and draws from `generator`)."""
    check_modes((mode,), short_steps, cfg.inner_steps)
    if mode == "vanilla":
        return train_on_real_data(learner_cfg, train_images, train_labels, vanilla, generator)
    return meta_test(teacher, cfg, generator, learner_cfg=learner_cfg,
                     steps=short_steps if mode == "short_gtn" else None)
