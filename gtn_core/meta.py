"""Meta-training: unroll a fresh learner on the teacher's curriculum, score it on real data, update the teacher by Adam."""
from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gtn_core.config import GTNConfig
from gtn_core.data import Dataset, normalize
from gtn_core.evaluate import accuracy, meta_test
from gtn_core.seeds import EVALUATION, learner_stream, seeded_generator
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


def meta_gradient(teacher: Teacher, cfg: GTNConfig, data: RealData, generators: Sequence[torch.Generator]) -> float:
    """Set the teacher's .grad to the gradient of the mean meta-loss of one fresh learner per generator.

    Each learner draws its initialisation, its curriculum and its real batch from its own generator; the backward
    passes run one learner at a time (memory of one unroll) and accumulate. Returns the mean meta-loss.
    """
    for param in teacher.parameters():
        param.grad = None
    total = 0.0
    for generator in generators:
        index = torch.randint(0, data.train_images.shape[0], (cfg.real_batch_size,), generator=generator)
        index = index.to(data.train_images.device)
        loss = meta_loss(teacher, cfg, data.train_images[index], data.train_labels[index], generator)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"meta-loss is {loss.item()}; lower teacher_lr/hyper_lr or inner_lr_init "
                                     f"(now {cfg.teacher_lr}/{cfg.hyper_lr}/{cfg.inner_lr_init})")
        (loss if len(generators) == 1 else loss / len(generators)).backward()
        total += loss.item()
    return total / len(generators)


def meta_step(teacher: Teacher, optimizer: torch.optim.Optimizer, cfg: GTNConfig, data: RealData,
              generators: Sequence[torch.Generator]) -> float:
    """One outer step: the mean meta-gradient of one learner per generator, clipped, then Adam; the mean meta-loss."""
    loss = meta_gradient(teacher, cfg, data, generators)
    torch.nn.utils.clip_grad_norm_(teacher.parameters(), cfg.grad_clip)
    optimizer.step()
    return loss


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


class MetaTrainer:
    """The meta-training loop and all of its state (teacher, Adam, lr schedule, random streams, step): resumable.

    `state_dict()` after any outer step and `load_state_dict()` into a fresh trainer of the same config continue
    the run exactly: on the same machine the resumed records equal the uninterrupted run's, bit for bit.
    """

    def __init__(self, teacher: Teacher, cfg: GTNConfig, data: RealData) -> None:
        self.teacher, self.cfg, self.data = teacher, cfg, data
        self.optimizer = torch.optim.Adam(teacher.param_groups(cfg))
        self.schedule = lr_scheduler(self.optimizer, cfg)
        # One training stream per learner of the meta-batch; learner 0's is the single learner's of meta_batch=1.
        self.train_generators = [seeded_generator(cfg.seed, stream=learner_stream(m)) for m in range(cfg.meta_batch)]
        self.eval_generator = seeded_generator(cfg.seed, stream=EVALUATION)
        subset_size = min(cfg.train_eval_size, data.train_images.shape[0])
        subset = torch.randperm(data.train_images.shape[0], generator=self.eval_generator)[:subset_size]
        self.train_subset = subset.to(data.train_images.device)
        self.step = 0  # outer steps done

    def records(self) -> Iterator[StepRecord]:
        """Run the remaining outer steps, yielding a StepRecord after each; evaluates every `eval_every`."""
        cfg = self.cfg
        while self.step < cfg.outer_steps:
            started = time.perf_counter()
            loss = meta_step(self.teacher, self.optimizer, cfg, self.data, self.train_generators)
            self.schedule.step()
            self.step += 1
            step_seconds = time.perf_counter() - started
            lrs = tuple(self.teacher.hparams.lrs().tolist())
            momenta = tuple(self.teacher.hparams.momenta().tolist())
            if self.step % cfg.eval_every and self.step != cfg.outer_steps:
                yield StepRecord(self.step, loss, lrs, momenta, step_seconds)
                continue
            started = time.perf_counter()
            test, train = evaluate(self.teacher, cfg, self.data, self.train_subset, self.eval_generator)
            yield StepRecord(self.step, loss, lrs, momenta, step_seconds, test, train, time.perf_counter() - started)

    def state_dict(self) -> dict:
        """Everything the next outer step depends on, as tensors and plain values."""
        return {"step": self.step, "teacher": self.teacher.state_dict(), "optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict(), "train_generator": self.train_generators[0].get_state(),
                "meta_batch_generators": [generator.get_state() for generator in self.train_generators[1:]],
                "eval_generator": self.eval_generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        """Continue from `state_dict()` of a trainer with the same config (or lower Adam lrs: they are rescaled)."""
        if not 0 <= state["step"] <= self.cfg.outer_steps:
            raise ValueError(f"training state at step {state['step']}: expected a step in 0..{self.cfg.outer_steps}")
        base_lrs = list(self.schedule.base_lrs)  # this config's Adam lrs, before the state's replace them
        self.teacher.load_state_dict(state["teacher"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self._rescale_lrs(base_lrs)
        for generator, saved in zip(self.train_generators,
                                    [state["train_generator"], *state.get("meta_batch_generators", [])]):
            generator.set_state(saved)
        self.eval_generator.set_state(state["eval_generator"])
        self.step = state["step"]

    def _rescale_lrs(self, base_lrs: list[float]) -> None:
        # Both schedules are multiplicative in the base lr, so scaling every group's lr keeps the schedule's shape.
        for index, (group, base) in enumerate(zip(self.optimizer.param_groups, base_lrs)):
            saved = self.schedule.base_lrs[index]
            if saved != base:
                group["lr"] *= base / saved
                group["initial_lr"] = base
                self.schedule.base_lrs[index] = base
        self.schedule._last_lr = [group["lr"] for group in self.optimizer.param_groups]


def meta_train(teacher: Teacher, cfg: GTNConfig, data: RealData) -> Iterator[StepRecord]:
    """Run `cfg.outer_steps` outer steps, yielding a StepRecord after each; evaluates every `eval_every`."""
    yield from MetaTrainer(teacher, cfg, data).records()
