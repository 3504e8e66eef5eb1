"""Frozen configuration for the teacher, the learner and meta-training; validated on construction."""
from __future__ import annotations

from dataclasses import dataclass, field

VARIANTS = ("learned", "random_fixed", "random")
NOISE_DISTRIBUTIONS = ("normal", "uniform")
UNROLL_BACKENDS = ("func", "higher")
BN_MODES = ("train", "eval")
LR_SCHEDULES = ("constant", "cosine")
UPSAMPLINGS = ("nearest", "transposed")


def _require_positive(owner: str, **values: float) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"{owner}.{name}={value!r}: expected a positive number")


def _require_choice(owner: str, name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{owner}.{name}={value!r}: expected one of {', '.join(choices)}")


@dataclass(frozen=True)
class TeacherConfig:
    """Generator: noise + one-hot label -> dense -> (channels, 7, 7) -> two x2 upsampling convs -> image.

    `upsampling`: "nearest" (nearest-neighbour x2, then a 3x3 convolution, as GoodAI's teacher) or "transposed"
    (one 4x4 stride-2 transposed convolution per x2: ~2.3x fewer multiply-adds in the upsampling path).
    """

    noise_size: int = 64
    num_classes: int = 10
    hidden_size: int = 1024
    base_channels: int = 128
    image_channels: int = 1
    image_size: int = 28
    negative_slope: float = 0.1
    upsampling: str = "nearest"

    def __post_init__(self) -> None:
        _require_choice("TeacherConfig", "upsampling", self.upsampling, UPSAMPLINGS)
        _require_positive("TeacherConfig", noise_size=self.noise_size, num_classes=self.num_classes,
                          hidden_size=self.hidden_size, base_channels=self.base_channels,
                          image_channels=self.image_channels, image_size=self.image_size)
        if self.image_size % 4:
            raise ValueError(f"TeacherConfig.image_size={self.image_size}: expected a multiple of 4 (two x2 upsamplings)")


@dataclass(frozen=True)
class LearnerConfig:
    """Small CNN: (conv3x3-BN-LeakyReLU-maxpool) per entry of `channels`, then a linear layer (+BN on logits)."""

    channels: tuple[int, ...] = (32, 64)
    num_classes: int = 10
    image_channels: int = 1
    image_size: int = 28
    negative_slope: float = 0.1
    logit_batch_norm: bool = True

    def __post_init__(self) -> None:
        if not self.channels or any(not isinstance(c, int) or c <= 0 for c in self.channels):
            raise ValueError(f"LearnerConfig.channels={self.channels!r}: expected a non-empty tuple of positive ints")
        _require_positive("LearnerConfig", num_classes=self.num_classes, image_channels=self.image_channels,
                          image_size=self.image_size)
        if self.image_size % (2 ** len(self.channels)):
            raise ValueError(f"LearnerConfig.image_size={self.image_size}: expected divisibility by "
                             f"2**{len(self.channels)} (one max-pool per conv block)")


@dataclass(frozen=True)
class GTNConfig:
    """Everything one meta-training run needs; built once from the CLI/Sacred config and never mutated."""

    variant: str = "learned"
    batch_size: int = 32
    inner_steps: int = 20
    outer_steps: int = 400
    eval_every: int = 25
    noise_distribution: str = "normal"
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    teacher_lr: float = 1e-3
    inputs_lr: float = 1e-2
    hyper_lr: float = 1e-2
    inner_lr_init: float = 0.02
    inner_momentum_init: float = 0.5
    real_batch_size: int = 512
    grad_clip: float = 100.0
    lr_schedule: str = "cosine"
    unroll_backend: str = "func"
    checkpoint_unroll: bool = False
    bn_mode: str = "train"
    eval_batch_size: int = 250
    train_eval_size: int = 2000
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        _require_choice("GTNConfig", "variant", self.variant, VARIANTS)
        _require_choice("GTNConfig", "noise_distribution", self.noise_distribution, NOISE_DISTRIBUTIONS)
        _require_choice("GTNConfig", "unroll_backend", self.unroll_backend, UNROLL_BACKENDS)
        _require_choice("GTNConfig", "bn_mode", self.bn_mode, BN_MODES)
        _require_choice("GTNConfig", "lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _require_positive("GTNConfig", batch_size=self.batch_size, inner_steps=self.inner_steps,
                          outer_steps=self.outer_steps, eval_every=self.eval_every, teacher_lr=self.teacher_lr,
                          inputs_lr=self.inputs_lr, hyper_lr=self.hyper_lr, inner_lr_init=self.inner_lr_init,
                          real_batch_size=self.real_batch_size, grad_clip=self.grad_clip,
                          eval_batch_size=self.eval_batch_size, train_eval_size=self.train_eval_size)
        for name in ("batch_size", "inner_steps", "outer_steps", "eval_every", "real_batch_size"):
            if not isinstance(getattr(self, name), int):
                raise ValueError(f"GTNConfig.{name}={getattr(self, name)!r}: expected a positive integer")
        if not isinstance(self.checkpoint_unroll, bool):
            raise ValueError(f"GTNConfig.checkpoint_unroll={self.checkpoint_unroll!r}: expected True or False")
        if self.checkpoint_unroll and self.unroll_backend != "func":
            raise ValueError(f"GTNConfig.checkpoint_unroll=True with unroll_backend={self.unroll_backend!r}: "
                             "checkpointing needs unroll_backend='func'")
        if not 0.0 < self.inner_momentum_init < 1.0:
            raise ValueError(f"GTNConfig.inner_momentum_init={self.inner_momentum_init!r}: expected a value in (0, 1)")
        if self.teacher.num_classes != self.learner.num_classes:
            raise ValueError(f"teacher.num_classes={self.teacher.num_classes} != learner.num_classes="
                             f"{self.learner.num_classes}: the teacher must label the learner's classes")
        if (self.teacher.image_channels, self.teacher.image_size) != (self.learner.image_channels, self.learner.image_size):
            raise ValueError("teacher and learner image shapes differ: "
                             f"{(self.teacher.image_channels, self.teacher.image_size)} vs "
                             f"{(self.learner.image_channels, self.learner.image_size)}")
