"""The curriculum-order ablation: meta-test fresh learners on a teacher's batches in learned vs shuffled order."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from gtn_core.config import GTNConfig
from gtn_core.evaluate import accuracy, meta_test, shuffled_order
from gtn_core.gtn import GTN

ORDERS = ("learned", "shuffled")


@dataclass(frozen=True)
class AblationTrial:
    """One fresh learner's test accuracy under one step order."""

    repeat: int
    order: str
    accuracy: float


def shuffle_ablation(gtn: GTN, cfg: GTNConfig, test_images: torch.Tensor, test_labels: torch.Tensor,
                     repeats: int, generator: torch.Generator) -> Iterator[AblationTrial]:
    """For each repeat, one learner on the learned step order and one on a random permutation of it.

    Both learners of a repeat start from the same initialisation and, for the `random` variant, see the same
    freshly drawn curriculum, so the order is the only difference. Teachers with fixed inputs generate their
    curriculum once.
    """
    if repeats < 1:
        raise ValueError(f"repeats={repeats!r}: expected a positive number of learners per order")
    fixed = None
    if gtn.inputs.variant != "random":
        with torch.no_grad():
            fixed = gtn.curriculum()
    for repeat in range(repeats):
        with torch.no_grad():
            curriculum = fixed if fixed is not None else gtn.curriculum()
        init_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        orders = {"learned": None, "shuffled": shuffled_order(cfg.inner_steps, generator)}
        for name, order in orders.items():
            learner, state = meta_test(gtn, cfg, torch.Generator().manual_seed(init_seed), order, curriculum)
            score = accuracy(learner, state, test_images, test_labels, cfg.bn_mode, cfg.eval_batch_size)
            yield AblationTrial(repeat, name, score)
