"""Frozen configuration for the teacher, the learner and meta-training; validated on construction.

These dataclasses are the one source of every knob: each field carries its default and its one-line doc
(`doc_of`), the Sacred experiments derive their config from them, and `config_from_dict` rebuilds them from
the nested dict a run records.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

TEACHERS = ("gtn", "real_data", "distillation", "gan")
CURRICULA = ("full", "shuffled_batch", "all_shuffled", "none")
VARIANTS = ("learned", "random_fixed", "random")
NOISE_DISTRIBUTIONS = ("normal", "uniform", "uniform01")
INNER_SCHEDULES = ("per_step", "shared")
UNROLL_BACKENDS = ("func", "higher")
BN_MODES = ("train", "eval")
LR_SCHEDULES = ("constant", "cosine")
UPSAMPLINGS = ("nearest", "transposed")
POOLINGS = ("max", "avg", "none")
HEADS = ("flatten", "global_avg")
NORMALISATIONS = ("batch", "weight", "weight_mean_only", "none")
LEARNER_SAMPLINGS = ("fixed", "random_width", "random_preset")


def knob(default, doc: str):
    """A dataclass field with its default and its one-line documentation."""
    if isinstance(default, type):
        return field(default_factory=default, metadata={"doc": doc})
    return field(default=default, metadata={"doc": doc})


def doc_of(cls, name: str) -> str:
    """The documentation of field `name` of config dataclass `cls`."""
    return next(f.metadata.get("doc", "") for f in dataclasses.fields(cls) if f.name == name)


def _require_positive(owner: str, **values: float) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"{owner}.{name}={value!r}: expected a positive number")


def _require_int(owner: str, **values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{owner}.{name}={value!r}: expected a positive integer")


def _require_choice(owner: str, name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{owner}.{name}={value!r}: expected one of {', '.join(choices)}")


@dataclass(frozen=True)
class GeneratorConfig:
    """The GTN's generator: noise + one-hot label -> dense -> (channels, 7, 7) -> two x2 upsampling convs -> image."""

    noise_size: int = knob(64, "generator input size (plus a one-hot label)")
    num_classes: int = knob(10, "classes the generator labels")
    hidden_size: int = knob(1024, "width of the generator's dense layer")
    base_channels: int = knob(128, "channels at 7x7, halved after the first upsampling")
    image_channels: int = knob(1, "channels of a generated image")
    image_size: int = knob(28, "side of a generated image (a multiple of 4)")
    negative_slope: float = knob(0.1, "LeakyReLU slope")
    upsampling: str = knob("nearest", "each x2: nearest (+3x3 conv, GoodAI's) | transposed (4x4 stride-2 transposed "
                                      "conv: ~2.3x fewer multiply-adds, plateaus lower)")
    weight_norm: bool = knob(False, "weight normalisation on every linear and conv layer (the paper code's)")

    def __post_init__(self) -> None:
        _require_choice("GeneratorConfig", "upsampling", self.upsampling, UPSAMPLINGS)
        if not isinstance(self.weight_norm, bool):
            raise ValueError(f"GeneratorConfig.weight_norm={self.weight_norm!r}: expected True or False")
        if self.weight_norm and self.upsampling == "transposed":
            raise ValueError("GeneratorConfig.weight_norm=True with upsampling='transposed': weight norm covers the "
                             "linear and conv layers of upsampling='nearest' only")
        _require_int("GeneratorConfig", noise_size=self.noise_size, num_classes=self.num_classes,
                     hidden_size=self.hidden_size, base_channels=self.base_channels,
                     image_channels=self.image_channels, image_size=self.image_size)
        if self.image_size % 4:
            raise ValueError(f"GeneratorConfig.image_size={self.image_size}: expected a multiple of 4 "
                             "(two x2 upsamplings)")


@dataclass(frozen=True)
class GANConfig:
    """A conditional DCGAN's generator (noise + label -> dense -> 7x7 -> two stride-2 transposed convs -> tanh) and
    its discriminator (image + label planes -> two stride-2 convs -> logit); teacher='gan' uses its generator."""

    noise_size: int = knob(64, "generator input size (plus a one-hot label)")
    num_classes: int = knob(10, "classes the generator labels")
    base_channels: int = knob(128, "generator channels at 7x7 (halved at 14x14); the discriminator's widest layer")
    image_channels: int = knob(1, "channels of a generated image")
    image_size: int = knob(28, "side of a generated image (a multiple of 4)")
    meta_train: bool = knob(False, "teacher='gan': meta-train the generator's weights (a GTN initialised from the "
                                   "GAN) instead of keeping them frozen")

    def __post_init__(self) -> None:
        _require_int("GANConfig", noise_size=self.noise_size, num_classes=self.num_classes,
                     base_channels=self.base_channels, image_channels=self.image_channels, image_size=self.image_size)
        if self.image_size % 4:
            raise ValueError(f"GANConfig.image_size={self.image_size}: expected a multiple of 4 (two x2 upsamplings)")
        if not isinstance(self.meta_train, bool):
            raise ValueError(f"GANConfig.meta_train={self.meta_train!r}: expected True or False")


@dataclass(frozen=True)
class LearnerConfig:
    """A learner family as data: conv layers (width, kernel, stride, pooling), a head, a normalisation.

    Each conv layer is conv -> normalisation -> LeakyReLU -> pooling; the head flattens (or global-average-pools)
    the features, runs its hidden layers (linear -> normalisation -> LeakyReLU) and a linear classifier, then
    optionally BatchNorm on the logits. `kernels`, `strides` and `pooling` take one value for every conv layer or
    a tuple with one per layer. The defaults are GoodAI's learner (preset `goodai`); `gtn_core.learners.presets`
    names the paper code's learners.
    """

    channels: tuple[int, ...] = knob((32, 64), "output channels of each conv layer (() for an MLP)")
    kernels: int | tuple[int, ...] = knob(3, "odd kernel side of every conv layer, or one per layer (padding k // 2)")
    strides: int | tuple[int, ...] = knob(1, "stride of every conv layer, or one per layer")
    pooling: str | tuple[str, ...] = knob("max", "after every conv layer, or one per layer: max | avg (2x2) | none")
    head: str = knob("flatten", "flatten | global_avg (mean over each feature map) before the hidden layers")
    hidden: tuple[int, ...] = knob((), "widths of the head's hidden layers before the linear classifier")
    normalisation: str = knob("batch", "batch (BatchNorm) | weight (weight norm) | weight_mean_only (weight norm and "
                                       "the paper code's mean-only BatchNorm) | none")
    num_classes: int = knob(10, "classes of the learner's output")
    image_channels: int = knob(1, "channels of an input image")
    image_size: int = knob(28, "side of an input image")
    negative_slope: float = knob(0.1, "LeakyReLU slope")
    logit_batch_norm: bool = knob(True, "BatchNorm on the logits (GoodAI's; without it a 20-step learner barely trains)")

    def __post_init__(self) -> None:
        for name in ("channels", "kernels", "strides", "pooling", "hidden"):
            if isinstance(getattr(self, name), list):  # a config read back from a stored run or the command line
                object.__setattr__(self, name, tuple(getattr(self, name)))
        _require_widths("channels", self.channels)
        _require_widths("hidden", self.hidden)
        _require_choice("LearnerConfig", "head", self.head, HEADS)
        _require_choice("LearnerConfig", "normalisation", self.normalisation, NORMALISATIONS)
        _require_int("LearnerConfig", num_classes=self.num_classes, image_channels=self.image_channels,
                     image_size=self.image_size)
        for kernel in self.layer_values("kernels"):
            if isinstance(kernel, bool) or not isinstance(kernel, int) or kernel < 1 or kernel % 2 == 0:
                raise ValueError(f"LearnerConfig.kernels={self.kernels!r}: expected odd positive ints")
        for stride in self.layer_values("strides"):
            _require_int("LearnerConfig", strides=stride)
        for pooling in self.layer_values("pooling"):
            _require_choice("LearnerConfig", "pooling", pooling, POOLINGS)
        if self.head == "global_avg" and not self.channels:
            raise ValueError("LearnerConfig.head='global_avg' with channels=(): global pooling needs conv layers")
        if not isinstance(self.logit_batch_norm, bool):
            raise ValueError(f"LearnerConfig.logit_batch_norm={self.logit_batch_norm!r}: expected True or False")
        self.feature_side()  # raises when the layers shrink the image away

    def layer_values(self, name: str) -> tuple:
        """`kernels`, `strides` or `pooling` as one value per conv layer; ValueError when a tuple's length differs."""
        value = getattr(self, name)
        if not isinstance(value, tuple):
            return (value,) * len(self.channels)
        if len(value) != len(self.channels):
            raise ValueError(f"LearnerConfig.{name}={value!r}: expected one value or {len(self.channels)} (one per "
                             f"conv layer of channels={self.channels!r})")
        return value

    def feature_side(self) -> int:
        """Side of the last conv layer's feature maps (the image side for an MLP); ValueError when it reaches 0."""
        side = self.image_size
        layers = zip(self.layer_values("kernels"), self.layer_values("strides"), self.layer_values("pooling"))
        for index, (kernel, stride, pooling) in enumerate(layers):
            side = (side - 1) // stride + 1  # padding kernel // 2 keeps the side before the stride
            if pooling != "none":
                if side < 2:
                    raise ValueError(f"LearnerConfig: conv layer {index} pools a {side}x{side} map of an "
                                     f"image_size={self.image_size} input; expected at least 2x2 (fewer pooling "
                                     "layers or strides)")
                side //= 2
        return side


def _require_widths(name: str, widths) -> None:
    if not isinstance(widths, tuple) or any(isinstance(w, bool) or not isinstance(w, int) or w <= 0 for w in widths):
        raise ValueError(f"LearnerConfig.{name}={widths!r}: expected a tuple of positive ints")


@dataclass(frozen=True)
class GTNConfig:
    """Everything one meta-training run needs; built once from the CLI/Sacred config and never mutated."""

    teacher: str = knob("gtn", "what yields the curriculum: gtn (a generator) | real_data (fresh real batches) | "
                               "distillation (learned pixels, Wang et al. 2018) | gan (a trained conditional "
                               "DCGAN's generator on fresh noise)")
    curriculum: str = knob("full", "teacher=gtn only: full (K learned batches in order) | shuffled_batch (each step "
                                   "one of them, drawn at random) | all_shuffled (each step B of the K*B learned "
                                   "pairs) | none (fresh noise and random labels every step; variant=random)")
    variant: str = knob("learned", "teacher=gtn inputs: learned (optimised) | random_fixed (drawn once) | random "
                                   "(redrawn every outer step, fixed balanced labels)")
    batch_size: int = knob(32, "synthetic images per inner step (B)")
    inner_steps: int = knob(20, "unrolled learner SGD steps (K)")
    outer_steps: int = knob(400, "teacher (meta) updates")
    eval_every: int = knob(25, "outer steps between evaluations (a fresh learner scored on all 10k test images)")
    noise_distribution: str = knob("normal", "generator inputs: normal (N(0,1)) | uniform (U(-1,1)) | uniform01 "
                                             "(U(0,1), GoodAI's torch.rand)")
    generator: GeneratorConfig = knob(GeneratorConfig, "the GTN's generator network")
    gan: GANConfig = knob(GANConfig, "teacher='gan': the conditional DCGAN whose generator teaches")
    learner: LearnerConfig = knob(LearnerConfig, "the learner trained in the inner loop (and scored at evaluations)")
    learner_sampling: str = knob("fixed", "meta-training learners: fixed (`learner`) | random_width (its widths "
                                          "drawn in [w/2, 2w) per outer step, the paper's randomize_width) | "
                                          "random_preset (one of `learner_presets` per outer step)")
    learner_presets: tuple[str, ...] = knob(("base", "base_fc", "base_larger3", "linear"),
                                            "learner_sampling=random_preset: the presets drawn from")
    teacher_lr: float = knob(1e-3, "Adam lr of the generator's weights")
    inputs_lr: float = knob(1e-2, "Adam lr of the learned inputs (GTN noise or distilled pixels)")
    hyper_lr: float = knob(1e-2, "Adam lr of the per-step log inner lr and logit momentum")
    inner_schedule: str = knob("per_step", "learned inner lr/momentum: per_step (one pair per inner step) | shared "
                                           "(one pair for every step, GoodAI's)")
    inner_lr_init: float = knob(0.02, "initial inner SGD learning rate (every step)")
    inner_momentum_init: float = knob(0.5, "initial inner SGD momentum (every step)")
    real_batch_size: int = knob(512, "real images scoring the learner for the meta-loss")
    meta_batch: int = knob(1, "fresh learners per outer step (own initialisation, curriculum draws and real batch); "
                              "the teacher follows the mean of their meta-gradients")
    grad_clip: float = knob(100.0, "max global norm of the meta-gradient")
    lr_schedule: str = knob("cosine", "cosine (every Adam lr decays to 0 at outer_steps) | constant")
    unroll_backend: str = knob("func", "func (torch.func) | higher (its differentiable SGD)")
    checkpoint_unroll: bool = knob(False, "recompute each inner step in the meta-backward: ~K x less memory, "
                                          "~1 more forward (func only)")
    bn_mode: str = knob("train", "learner BatchNorm when scoring: train (batch stats) | eval (running stats)")
    eval_batch_size: int = knob(250, "test images per scoring chunk (= the BatchNorm batch in bn_mode=train)")
    train_eval_size: int = knob(2000, "fixed training subset for train_accuracy")
    seed: int = knob(0, "a seed reproduces a run exactly on the same machine")
    device: str = knob("auto", "auto | cpu | cuda[:N]")

    def __post_init__(self) -> None:
        _require_choice("GTNConfig", "teacher", self.teacher, TEACHERS)
        _require_choice("GTNConfig", "curriculum", self.curriculum, CURRICULA)
        _require_choice("GTNConfig", "variant", self.variant, VARIANTS)
        _require_choice("GTNConfig", "noise_distribution", self.noise_distribution, NOISE_DISTRIBUTIONS)
        _require_choice("GTNConfig", "unroll_backend", self.unroll_backend, UNROLL_BACKENDS)
        _require_choice("GTNConfig", "bn_mode", self.bn_mode, BN_MODES)
        _require_choice("GTNConfig", "lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _require_choice("GTNConfig", "learner_sampling", self.learner_sampling, LEARNER_SAMPLINGS)
        _require_choice("GTNConfig", "inner_schedule", self.inner_schedule, INNER_SCHEDULES)
        self._check_presets()
        _require_positive("GTNConfig", teacher_lr=self.teacher_lr, inputs_lr=self.inputs_lr, hyper_lr=self.hyper_lr,
                          inner_lr_init=self.inner_lr_init, grad_clip=self.grad_clip)
        _require_int("GTNConfig", batch_size=self.batch_size, inner_steps=self.inner_steps,
                     outer_steps=self.outer_steps, eval_every=self.eval_every, real_batch_size=self.real_batch_size,
                     meta_batch=self.meta_batch,
                     eval_batch_size=self.eval_batch_size, train_eval_size=self.train_eval_size)
        if not isinstance(self.checkpoint_unroll, bool):
            raise ValueError(f"GTNConfig.checkpoint_unroll={self.checkpoint_unroll!r}: expected True or False")
        if self.checkpoint_unroll and self.unroll_backend != "func":
            raise ValueError(f"GTNConfig.checkpoint_unroll=True with unroll_backend={self.unroll_backend!r}: "
                             "checkpointing needs unroll_backend='func'")
        if not 0.0 < self.inner_momentum_init < 1.0:
            raise ValueError(f"GTNConfig.inner_momentum_init={self.inner_momentum_init!r}: expected a value in (0, 1)")
        self._check_teacher()
        self._check_shapes()

    def _check_presets(self) -> None:
        from gtn_core.learners.presets import PRESETS  # the presets are LearnerConfigs, defined after this module

        if isinstance(self.learner_presets, list):
            object.__setattr__(self, "learner_presets", tuple(self.learner_presets))
        unknown = [name for name in self.learner_presets if name not in PRESETS]
        if unknown or not self.learner_presets:
            raise ValueError(f"GTNConfig.learner_presets={self.learner_presets!r}: expected names among "
                             f"{', '.join(PRESETS)}")

    def _check_teacher(self) -> None:
        if self.teacher != "gtn":
            for name, default in (("curriculum", "full"), ("variant", "learned")):
                if getattr(self, name) != default:
                    raise ValueError(f"GTNConfig.{name}={getattr(self, name)!r} with teacher={self.teacher!r}: "
                                     f"{name} applies to teacher='gtn' only (leave it at {default!r})")
        if self.curriculum == "none" and self.variant != "random":
            raise ValueError(f"GTNConfig.curriculum='none' with variant={self.variant!r}: no curriculum draws fresh "
                             "inputs every step, so it needs variant='random'")
        if self.curriculum in ("shuffled_batch", "all_shuffled") and self.variant == "random":
            raise ValueError(f"GTNConfig.curriculum={self.curriculum!r} with variant='random': fresh inputs have "
                             "no learned batches to shuffle (use curriculum='none' or variant='learned')")

    def _check_shapes(self) -> None:
        if self.teacher == "gan":
            made = (self.gan.num_classes, self.gan.image_channels, self.gan.image_size)
            wanted = (self.learner.num_classes, self.learner.image_channels, self.learner.image_size)
            if made != wanted:
                raise ValueError(f"gan (classes, channels, side) {made} != learner's {wanted}: the GAN must make "
                                 "the learner's images and classes")
        if self.generator.num_classes != self.learner.num_classes:
            raise ValueError(f"generator.num_classes={self.generator.num_classes} != learner.num_classes="
                             f"{self.learner.num_classes}: the teacher must label the learner's classes")
        generated = (self.generator.image_channels, self.generator.image_size)
        if generated != (self.learner.image_channels, self.learner.image_size):
            raise ValueError(f"generator and learner image shapes differ: {generated} vs "
                             f"{(self.learner.image_channels, self.learner.image_size)}")


SECTIONS = {"generator": GeneratorConfig, "gan": GANConfig, "learner": LearnerConfig}


def section_of(f: dataclasses.Field):
    """The config dataclass a field holds (a nested section such as `learner`), else None."""
    factory = f.default_factory
    return factory if factory is not dataclasses.MISSING and dataclasses.is_dataclass(factory) else None


def flat_config(config: dict, prefix: str = "") -> dict:
    """A nested config dict with dotted keys: {'generator': {'hidden_size': 8}} -> {'generator.hidden_size': 8}."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flat_config(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def config_to_dict(cfg) -> dict:
    """The nested plain dict of a config (tuples as lists), as a run records it."""
    def plain(value):
        if isinstance(value, dict):
            return {key: plain(item) for key, item in value.items()}
        return list(value) if isinstance(value, tuple) else value
    return plain(dataclasses.asdict(cfg))


def config_from_dict(values: dict, cls=GTNConfig):
    """Rebuild a config dataclass from a nested dict; an unknown key raises ValueError naming it."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown key(s) {', '.join(unknown)}; expected some of {', '.join(fields)}")
    kwargs = {}
    for name, value in values.items():
        section = section_of(fields[name])
        if section is not None and isinstance(value, dict):
            value = config_from_dict(value, section)
        elif isinstance(fields[name].default, tuple) and isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)
