"""The curriculum-order ablation: meta-test fresh learners on a teacher's batches in learned vs shuffled order."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from gtn_core.config import GTNConfig
from gtn_core.evaluate import accuracy, meta_test, shuffled_order
from gtn_core.teachers import Curriculum, Teacher
from gtn_core.teachers.base import tensor_images

ORDERS = ("learned", "shuffled")


@dataclass(frozen=True)
class AblationTrial:
    """One fresh learner's test accuracy under one step order."""

    repeat: int
    order: str
    accuracy: float


def shuffle_ablation(teacher: Teacher, cfg: GTNConfig, test_images: torch.Tensor, test_labels: torch.Tensor,
                     repeats: int, generator: torch.Generator, move_schedule: bool = False) -> Iterator[AblationTrial]:
    """For each repeat, one learner on the learned step order and one on a random permutation of it.

    Both learners of a repeat start from the same initialisation and see the same curriculum (drawn afresh per
    repeat when the teacher's curriculum is not fixed), so the order is the only difference. Teachers with a fixed
    curriculum generate it once. The learned lr/momentum schedule stays in time order, or with `move_schedule`
    each step's lr and momentum move with its batch (the whole step shuffled).
    """
    if repeats < 1:
        raise ValueError(f"repeats={repeats!r}: expected a positive number of learners per order")
    fixed = _materialized(teacher.curriculum(generator)) if teacher.fixed_curriculum else None
    for repeat in range(repeats):
        curriculum = fixed if fixed is not None else _materialized(teacher.curriculum(generator))
        init_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        orders = {"learned": None, "shuffled": shuffled_order(cfg.inner_steps, generator)}
        for name, order in orders.items():
            learner, state = meta_test(teacher, cfg, torch.Generator().manual_seed(init_seed), order, curriculum,
                                       move_schedule=move_schedule)
            score = accuracy(learner, state, test_images, test_labels, cfg.bn_mode, cfg.eval_batch_size)
            yield AblationTrial(repeat, name, score)


def _materialized(curriculum: Curriculum) -> Curriculum:
    """The same curriculum with its images generated once (no graph), for learners that reuse it."""
    with torch.no_grad():
        images = curriculum.materialize()
    return Curriculum(tensor_images(images), curriculum.labels)

