"""Meta-testing: train a fresh learner on a teacher's curriculum (no graph) and score it on real data."""
from __future__ import annotations

import torch

from gtn_core.config import GTNConfig, LearnerConfig
from gtn_core.learners import Learner, init_learner
from gtn_core.teachers import Curriculum, Teacher
from gtn_core.unroll import LearnerState, initial_state, learner_logits, unroll


def meta_test(teacher: Teacher, cfg: GTNConfig, generator: torch.Generator, order: torch.Tensor | None = None,
              curriculum: Curriculum | None = None, learner_cfg: LearnerConfig | None = None,
              steps: int | None = None, move_schedule: bool = False) -> tuple[Learner, LearnerState]:
    """Train a fresh learner (`cfg.learner`, or `learner_cfg`) on the curriculum (drawn from `generator`, or given),
    steps optionally permuted by `order` (with `move_schedule`, each step's lr and momentum move with its batch),
    or only its first `steps` steps (with their lrs and momenta)."""
    with torch.no_grad():
        curriculum = curriculum if curriculum is not None else teacher.curriculum(generator)
        images, labels = curriculum.materialize(), curriculum.labels
        lrs, momenta = teacher.hparams.lrs(), teacher.hparams.momenta()
    if order is not None:
        _check_order(order, labels.shape[0])
        # Batches move intact with their labels; the lr/momentum schedule stays in time order unless it moves too.
        images, labels = images[order], labels[order]
        if move_schedule:
            lrs, momenta = lrs[order], momenta[order]
    if steps is not None:
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= labels.shape[0]:
            raise ValueError(f"steps={steps!r}: expected an int in 1..{labels.shape[0]} (the curriculum's steps)")
        images, labels, lrs, momenta = images[:steps], labels[:steps], lrs[:steps], momenta[:steps]
    learner = init_learner(learner_cfg or cfg.learner, generator, teacher.device)
    state = unroll(learner, initial_state(learner), images, labels, lrs, momenta,
                   create_graph=False, backend=cfg.unroll_backend)
    return learner, state


def shuffled_order(inner_steps: int, generator: torch.Generator) -> torch.Tensor:
    """A random permutation of the inner steps, for the curriculum-order ablation."""
    return torch.randperm(inner_steps, generator=generator)


def accuracy(learner: Learner, state: LearnerState, images: torch.Tensor, labels: torch.Tensor,
             bn_mode: str, batch_size: int) -> float:
    """Fraction of `images` (N, C, H, W) classified correctly, scored in chunks of `batch_size`."""
    if images.shape[0] != labels.shape[0] or images.shape[0] == 0:
        raise ValueError(f"images {tuple(images.shape)} and labels {tuple(labels.shape)}: expected the same non-zero N")
    correct = 0
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            logits = learner_logits(learner, state, images[start:start + batch_size], bn_mode)
            correct += (logits.argmax(dim=1) == labels[start:start + batch_size]).sum().item()
    return correct / images.shape[0]


def _check_order(order: torch.Tensor, inner_steps: int) -> None:
    if sorted(order.tolist()) != list(range(inner_steps)):
        raise ValueError(f"order={order.tolist()}: expected a permutation of range({inner_steps})")
