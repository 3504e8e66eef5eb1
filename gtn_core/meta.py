"""Meta-training: unroll a fresh learner on the teacher's curriculum, score it on real data, update the teacher by Adam."""
from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gtn_core.config import GTNConfig
from gtn_core.data import Dataset, normalize
from gtn_core.evaluate import accuracy, meta_test
from gtn_core.seeds import EVALUATION, TRAINING, seeded_generator
from gtn_core.teachers import Teacher
from gtn_core.learner import init_learner
from gtn_core.unroll import initial_state, learner_logits, unroll


@dataclass(frozen=True)
class RealData:
    """Normalised real images (N, C, H, W) and labels (N,), already on the training device."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor


def to_real_data(dataset: Dataset, device: torch.device) -> RealData:
    """Normalise a uint8 Dataset to [-1, 1] (the teacher's output range) and move it to `device`."""
    return RealData(normalize(dataset.train_images).to(device), dataset.train_labels.to(device),
                    normalize(dataset.test_images).to(device), dataset.test_labels.to(device))


@dataclass(frozen=True)
class StepRecord:
    """What one outer step produced; accuracies only on evaluation steps."""

    step: int
    meta_loss: float
    inner_lrs: tuple[float, ...]
    inner_momenta: tuple[float, ...]
    step_seconds: float
    test_accuracy: float | None = None
    train_accuracy: float | None = None
    eval_seconds: float = 0.0


def meta_loss(teacher: Teacher, cfg: GTNConfig, real_images: torch.Tensor, real_labels: torch.Tensor,
              generator: torch.Generator) -> torch.Tensor:
    """Cross-entropy on a real batch of a fresh learner trained on the teacher's curriculum (graph kept)."""
    learner = init_learner(cfg.learner, generator, real_images.device)
    # Each step's images are made inside the step, so checkpointing can regenerate them in the backward pass.
    curriculum = teacher.curriculum(generator)
    final = unroll(learner, initial_state(learner), curriculum.images, curriculum.labels, teacher.hparams.lrs(),
                   teacher.hparams.momenta(), create_graph=True, backend=cfg.unroll_backend,
                   checkpoint=cfg.checkpoint_unroll)
    return F.cross_entropy(learner_logits(learner, final, real_images, cfg.bn_mode), real_labels)


def meta_step(teacher: Teacher, optimizer: torch.optim.Optimizer, cfg: GTNConfig, data: RealData,
              generator: torch.Generator) -> float:
    """One outer step: meta-loss on a random real batch, backward through the unroll, clip, Adam."""
    index = torch.randint(0, data.train_images.shape[0], (cfg.real_batch_size,), generator=generator)
    index = index.to(data.train_images.device)
    optimizer.zero_grad(set_to_none=True)
    loss = meta_loss(teacher, cfg, data.train_images[index], data.train_labels[index], generator)
    if not math.isfinite(loss.item()):
        raise FloatingPointError(f"meta-loss is {loss.item()}; lower teacher_lr/hyper_lr or inner_lr_init "
                                 f"(now {cfg.teacher_lr}/{cfg.hyper_lr}/{cfg.inner_lr_init})")
    loss.backward()
    torch.nn.utils.clip_grad_norm_(teacher.parameters(), cfg.grad_clip)
    optimizer.step()
    return loss.item()


def evaluate(teacher: Teacher, cfg: GTNConfig, data: RealData, train_subset: torch.Tensor,
             generator: torch.Generator) -> tuple[float, float]:
    """(test accuracy on the full test set, accuracy on a fixed training subset) of a fresh meta-tested learner."""
    learner, state = meta_test(teacher, cfg, generator)
    test = accuracy(learner, state, data.test_images, data.test_labels, cfg.bn_mode, cfg.eval_batch_size)
    train = accuracy(learner, state, data.train_images[train_subset], data.train_labels[train_subset],
                     cfg.bn_mode, cfg.eval_batch_size)
    return test, train


def lr_scheduler(optimizer: torch.optim.Optimizer, cfg: GTNConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-outer-step learning-rate schedule for every Adam group: constant, or cosine decay to 0 at `outer_steps`."""
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.outer_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def meta_train(teacher: Teacher, cfg: GTNConfig, data: RealData) -> Iterator[StepRecord]:
    """Run `cfg.outer_steps` outer steps, yielding a StepRecord after each; evaluates every `eval_every`."""
    optimizer = torch.optim.Adam(teacher.param_groups(cfg))
    schedule = lr_scheduler(optimizer, cfg)
    train_generator = seeded_generator(cfg.seed, stream=TRAINING)
    eval_generator = seeded_generator(cfg.seed, stream=EVALUATION)
    subset_size = min(cfg.train_eval_size, data.train_images.shape[0])
    train_subset = torch.randperm(data.train_images.shape[0], generator=eval_generator)[:subset_size]
    train_subset = train_subset.to(data.train_images.device)
    for step in range(1, cfg.outer_steps + 1):
        started = time.perf_counter()
        loss = meta_step(teacher, optimizer, cfg, data, train_generator)
        schedule.step()
        step_seconds = time.perf_counter() - started
        lrs = tuple(teacher.hparams.lrs().tolist())
        momenta = tuple(teacher.hparams.momenta().tolist())
        if step % cfg.eval_every and step != cfg.outer_steps:
            yield StepRecord(step, loss, lrs, momenta, step_seconds)
            continue
        started = time.perf_counter()
        test, train = evaluate(teacher, cfg, data, train_subset, eval_generator)
        yield StepRecord(step, loss, lrs, momenta, step_seconds, test, train, time.perf_counter() - started)
