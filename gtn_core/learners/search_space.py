"""The architecture search space of the NAS proxy: learner families drawn as LearnerConfigs, one per seed."""
from __future__ import annotations

import dataclasses
import random

from gtn_core.config import NORMALISATIONS, LearnerConfig

# Every choice a sampled architecture makes; each conv layer draws its own width, kernel and pooling.
DEPTHS = (1, 2, 3, 4)
WIDTHS = (16, 32, 64, 128)
KERNELS = (1, 3, 5)
POOLINGS = ("max", "avg", "none")
HEADS = ("flatten", "global_avg")
HIDDEN = ((), (64,), (128,), (256,))
# Architectures costlier than this (multiply-adds per 28x28 image) are redrawn: one epoch of real data then stays
# under ~1 minute on 2 cores, so a 64-architecture study fits its budget.
MAX_MULTIPLY_ADDS = 20_000_000
MAX_FLATTENED = 8192  # features entering a flatten head's first linear layer


def multiply_adds(cfg: LearnerConfig) -> int:
    """Multiply-adds of one forward pass of one image through the learner's conv and linear layers."""
    total, side, channels = 0, cfg.image_size, cfg.image_channels
    layers = zip(cfg.channels, cfg.layer_values("kernels"), cfg.layer_values("strides"), cfg.layer_values("pooling"))
    for width, kernel, stride, pooling in layers:
        side = (side - 1) // stride + 1
        total += side * side * kernel * kernel * channels * width
        side, channels = (side // 2 if pooling != "none" else side), width
    features = channels if cfg.head == "global_avg" else channels * side * side
    for size in (*cfg.hidden, cfg.num_classes):
        total += features * size
        features = size
    return total


def _flattened(cfg: LearnerConfig) -> int:
    """Features a flatten head sees (0 for a global-average head)."""
    last = cfg.channels[-1] if cfg.channels else cfg.image_channels
    return 0 if cfg.head == "global_avg" else last * cfg.feature_side() ** 2


def _draw(rng: random.Random, like: LearnerConfig) -> LearnerConfig | None:
    """One draw of every choice; None when the draw is invalid (pools the image away) or over budget."""
    depth = rng.choice(DEPTHS)
    values = dict(channels=tuple(rng.choice(WIDTHS) for _ in range(depth)),
                  kernels=tuple(rng.choice(KERNELS) for _ in range(depth)),
                  pooling=tuple(rng.choice(POOLINGS) for _ in range(depth)),
                  head=rng.choice(HEADS), hidden=rng.choice(HIDDEN), normalisation=rng.choice(NORMALISATIONS),
                  logit_batch_norm=rng.random() < 0.5)
    try:
        cfg = dataclasses.replace(like, strides=1, **values)
    except ValueError:
        return None
    if multiply_adds(cfg) > MAX_MULTIPLY_ADDS or _flattened(cfg) > MAX_FLATTENED:
        return None
    return cfg


def sample_architecture(seed: int, like: LearnerConfig | None = None) -> LearnerConfig:
    """The architecture of `seed` (the same on every machine): depth, per-layer widths, kernels and pooling, head,
    hidden layers, normalisation and logit BatchNorm, for the image shape and classes of `like` (default MNIST's);
    invalid or over-budget draws are redrawn from the same seeded stream."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r}: expected a non-negative integer")
    rng = random.Random(seed)
    like = like or LearnerConfig()
    for _ in range(1000):
        cfg = _draw(rng, like)
        if cfg is not None:
            return cfg
    raise ValueError(f"no valid architecture in 1,000 draws for seed {seed} and image_size {like.image_size}")


def family_of(cfg: LearnerConfig) -> str:
    """A short family name for charts: conv depth, head and normalisation (e.g. '2 conv, flatten, batch')."""
    return f"{len(cfg.channels)} conv, {cfg.head}, {cfg.normalisation}"
