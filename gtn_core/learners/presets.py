"""Named learners (values of one LearnerConfig, after the paper code's classifiers) and per-step learner sampling."""
from __future__ import annotations

import dataclasses

import torch

from gtn_core.config import GTNConfig, LearnerConfig

# The paper code's classifiers (uber-research/GTN models.py) as configs: weight norm with mean-only BatchNorm and no
# logit BatchNorm, except `base_larger4` (full BatchNorm) and `goodai` (today's default learner, GoodAI's).
_PAPER = dict(normalisation="weight_mean_only", logit_batch_norm=False)
_LARGER3 = dict(channels=(64, 64, 128, 128, 256, 256), kernels=(3, 1, 3, 1, 3, 1), strides=(1, 1, 2, 1, 2, 1),
                pooling="none")
PRESETS: dict[str, LearnerConfig] = {
    "goodai": LearnerConfig(),
    "base": LearnerConfig(channels=(64, 128), head="global_avg", **_PAPER),
    "base_fc": LearnerConfig(channels=(64, 128), hidden=(256,), **_PAPER),
    "base_larger": LearnerConfig(channels=(64, 128), hidden=(256,), **_PAPER),
    "base_larger2": LearnerConfig(channels=(64, 128, 128, 256, 256), strides=(1, 2, 1, 2, 1), pooling="none",
                                  head="global_avg", **_PAPER),
    "base_larger3": LearnerConfig(**_LARGER3, hidden=(256,), **_PAPER),
    "base_larger3_global": LearnerConfig(**_LARGER3, head="global_avg", **_PAPER),
    "base_larger4": LearnerConfig(channels=(64, 64, 128, 128, 128, 256, 256, 256), kernels=(3, 1, 3, 1, 1, 3, 1, 1),
                                  strides=(1, 1, 2, 1, 1, 2, 1, 1), pooling="none", hidden=(256,),
                                  normalisation="batch", logit_batch_norm=False),
    "linear": LearnerConfig(channels=(), hidden=(256, 128), **_PAPER),
}


def preset(name: str, like: LearnerConfig | None = None) -> LearnerConfig:
    """Preset `name` for the image shape and classes of `like` (default MNIST's); ValueError naming unknown presets."""
    if name not in PRESETS:
        raise ValueError(f"learner preset {name!r}: expected one of {', '.join(PRESETS)}")
    like = like or LearnerConfig()
    return dataclasses.replace(PRESETS[name], num_classes=like.num_classes, image_channels=like.image_channels,
                               image_size=like.image_size)


def random_widths(cfg: LearnerConfig, generator: torch.Generator) -> LearnerConfig:
    """`cfg` with every conv and hidden width w redrawn uniformly in [ceil(w / 2), 2w) (the paper's randomize_width)."""
    def draw(widths: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(int(torch.randint(-(-w // 2), 2 * w, (1,), generator=generator)) for w in widths)
    return dataclasses.replace(cfg, channels=draw(cfg.channels), hidden=draw(cfg.hidden))


def training_learner(cfg: GTNConfig, generator: torch.Generator) -> LearnerConfig:
    """The learner of one meta-training inner loop: `cfg.learner`, or one drawn from `generator` per
    `cfg.learner_sampling` (draws only when sampling, so fixed-learner runs keep their random streams)."""
    if cfg.learner_sampling == "random_width":
        return random_widths(cfg.learner, generator)
    if cfg.learner_sampling == "random_preset":
        index = int(torch.randint(0, len(cfg.learner_presets), (1,), generator=generator))
        return preset(cfg.learner_presets[index], cfg.learner)
    return cfg.learner
