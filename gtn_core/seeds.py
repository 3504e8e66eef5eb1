"""Independent, seeded random streams of a run."""
from __future__ import annotations

import torch

# The streams of one run; a stream's number never changes, so stored runs stay reproducible.
NOISE, TRAINING, EVALUATION, ABLATION, TRANSFER, ROBUSTNESS, NAS = 0, 1, 2, 3, 4, 5, 6


def learner_stream(member: int) -> int:
    """The training stream of learner `member` of a meta-batch: learner 0 keeps the single learner's stream."""
    return TRAINING if member == 0 else TRAINING + 10 * member  # clear of the other streams (0-3)


def sub_stream(stream: int, index: int) -> int:
    """Stream number `index` (>= 0) of an evaluation's stream (one per learner it trains), clear of every other."""
    return stream + 10_000 * (index + 1)


def seeded_generator(seed: int, stream: int) -> torch.Generator:
    """An independent CPU generator per random stream (noise, training, evaluation, ...) of a run."""
    return torch.Generator().manual_seed(seed * 1_000_003 + stream)
