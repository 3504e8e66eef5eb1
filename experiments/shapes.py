"""The study shapes (synthetic batch B, inner steps K), named as GoodAI's experiments, and the smoke profile."""
from __future__ import annotations

SHAPES = {"experiment_a": {"batch_size": 32, "inner_steps": 20},   # GoodAI Experiment A
          "experiment_b": {"batch_size": 32, "inner_steps": 10},   # GoodAI Experiment B
          "experiment_c": {"batch_size": 16, "inner_steps": 10},   # GoodAI Experiment C
          "paper": {"batch_size": 128, "inner_steps": 32}}         # Such et al. 2019, Fig. 1c (MNIST)

# Tiny networks and a handful of steps on real data: the whole pipeline in well under a minute.
SMOKE = {"batch_size": 16, "inner_steps": 5, "outer_steps": 6, "eval_every": 3, "real_batch_size": 64,
         "generator": {"hidden_size": 128, "base_channels": 32}, "learner": {"channels": [8, 16]},
         "gan": {"base_channels": 16, "noise_size": 8}}  # the GAN of gan_experiment.py's smoke config


def add_shape_configs(ex, smoke: dict = SMOKE) -> None:
    """Register the named configs experiment_a/b/c, paper and smoke on a Sacred experiment."""
    for name, values in SHAPES.items():
        ex.add_named_config(name, **values)
    ex.add_named_config("smoke", **smoke)
