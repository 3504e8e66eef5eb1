"""The tuned-SGD baseline: plain SGD on K real batches of B, the best constant lr and momentum of a small grid.

Grid points are ranked on a validation split held out of the training set (never the test set); the chosen point
is then scored on the test set with fresh learners. Learners and batches go through the same teacher interface and
`meta_test` as every other teacher, with `ConstantHyperParams` in place of learned ones.
"""
from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from gtn_core.config import GeneratorConfig, GTNConfig, LearnerConfig, knob
from gtn_core.evaluate import accuracy, meta_test
from gtn_core.inner_hparams import ConstantHyperParams
from gtn_core.meta import RealData
from gtn_core.seeds import EVALUATION, TRAINING, seeded_generator
from gtn_core.teachers import RealDataTeacher


@dataclass(frozen=True)
class SGDGridConfig:
    """The tuned-SGD baseline's knobs; shape, learner and scoring defaults are the training run's."""

    batch_size: int = knob(GTNConfig.batch_size, "real images per inner step (B)")
    inner_steps: int = knob(GTNConfig.inner_steps, "plain SGD steps (K)")
    learner: LearnerConfig = knob(LearnerConfig, "the learner trained by SGD")
    lrs: tuple[float, ...] = knob((0.01, 0.03, 0.1, 0.3, 1.0), "constant learning rates tried")
    momenta: tuple[float, ...] = knob((0.0, 0.5, 0.9), "constant momenta tried")
    repeats: int = knob(5, "learners per grid point, scored on the validation split")
    test_repeats: int = knob(10, "learners of the chosen point, scored on the test set")
    validation_size: int = knob(5000, "training images held out for choosing the grid point (the last N)")
    bn_mode: str = knob(GTNConfig.bn_mode, "learner BatchNorm when scoring: train | eval")
    eval_batch_size: int = knob(GTNConfig.eval_batch_size, "images per scoring chunk")
    seed: int = knob(0, "seeds the batches and the learners")
    device: str = knob("auto", "auto | cpu | cuda[:N]")

    def __post_init__(self) -> None:
        for name in ("lrs", "momenta"):
            values = getattr(self, name)
            if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                raise ValueError(f"SGDGridConfig.{name}={values!r}: expected a non-empty list of numbers")
        if any(v <= 0 for v in self.lrs) or any(not 0 <= v < 1 for v in self.momenta):
            raise ValueError(f"SGDGridConfig lrs={self.lrs!r}, momenta={self.momenta!r}: expected lrs > 0 and "
                             "momenta in [0, 1)")
        for name in ("repeats", "test_repeats", "validation_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SGDGridConfig.{name}={value!r}: expected a positive integer")
        self.training_config()  # the shape, learner and scoring knobs are validated as a training run's

    def training_config(self) -> GTNConfig:
        """The same shape, learner and scoring as a training run (what meta_test and the teacher read)."""
        # No generator is built for real data; its section only has to agree with the learner's shapes.
        generator = GeneratorConfig(num_classes=self.learner.num_classes, image_channels=self.learner.image_channels,
                                    image_size=self.learner.image_size)
        return GTNConfig(teacher="real_data", batch_size=self.batch_size, inner_steps=self.inner_steps,
                         generator=generator, learner=self.learner, bn_mode=self.bn_mode,
                         eval_batch_size=self.eval_batch_size, seed=self.seed, device=self.device)


@dataclass(frozen=True)
class GridPoint:
    """One (lr, momentum) of the grid and the accuracies of its learners."""

    lr: float
    momentum: float
    accuracies: tuple[float, ...]

    @property
    def mean(self) -> float:
        """Mean accuracy of the point's learners."""
        return statistics.fmean(self.accuracies)


def sgd_learners(cfg: GTNConfig, images: torch.Tensor, labels: torch.Tensor, lr: float, momentum: float,
                 score_images: torch.Tensor, score_labels: torch.Tensor, repeats: int,
                 generator: torch.Generator) -> tuple[float, ...]:
    """Accuracies on the scoring set of `repeats` fresh learners, each on its own K real batches by plain SGD."""
    teacher = RealDataTeacher(cfg, images, labels, ConstantHyperParams(cfg.inner_steps, lr, momentum))
    teacher = teacher.to(images.device)
    scores = []
    for _ in range(repeats):
        learner, state = meta_test(teacher, cfg, generator)
        scores.append(accuracy(learner, state, score_images, score_labels, cfg.bn_mode, cfg.eval_batch_size))
    return tuple(scores)


def search_grid(grid: SGDGridConfig, data: RealData) -> Iterator[GridPoint]:
    """Every grid point, scored on the validation split (learners train on the rest of the training set)."""
    cfg = grid.training_config()
    split = data.train_images.shape[0] - grid.validation_size
    if split < cfg.inner_steps * cfg.batch_size:
        raise ValueError(f"validation_size={grid.validation_size}: leaves {split} training images, fewer than "
                         f"inner_steps * batch_size = {cfg.inner_steps * cfg.batch_size}")
    train = (data.train_images[:split], data.train_labels[:split])
    validation = (data.train_images[split:], data.train_labels[split:])
    for lr in grid.lrs:
        for momentum in grid.momenta:
            # Every point sees the same batches and initialisations: the comparison is paired, and adding a point
            # changes no other point's draws.
            generator = seeded_generator(grid.seed, stream=TRAINING)
            yield GridPoint(lr, momentum, sgd_learners(cfg, *train, lr, momentum, *validation, grid.repeats,
                                                       generator))


def score_on_test(grid: SGDGridConfig, data: RealData, best: GridPoint) -> GridPoint:
    """The chosen point's test accuracies: fresh learners on batches of the whole training set."""
    cfg = grid.training_config()
    generator = seeded_generator(grid.seed, stream=EVALUATION)
    scores = sgd_learners(cfg, data.train_images, data.train_labels, best.lr, best.momentum, data.test_images,
                          data.test_labels, grid.test_repeats, generator)
    return dataclasses.replace(best, accuracies=scores)
