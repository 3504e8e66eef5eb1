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
from gtn_core.distributed import World, broadcast_object, current_world, gather_objects, sum_gradients
from gtn_core.evaluate import accuracy, meta_test
from gtn_core.seeds import EVALUATION, learner_stream, seeded_generator
from gtn_core.teachers import Teacher
from gtn_core.learners import init_learner
from gtn_core.learners.presets import training_learner
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
    learner = init_learner(training_learner(cfg, generator), generator, real_images.device)
    # Each step's images are made inside the step, so checkpointing can regenerate them in the backward pass.
    curriculum = teacher.curriculum(generator)
    final = unroll(learner, initial_state(learner), curriculum.images, curriculum.labels, teacher.hparams.lrs(),
                   teacher.hparams.momenta(), create_graph=True, backend=cfg.unroll_backend,
                   checkpoint=cfg.checkpoint_unroll)
    return F.cross_entropy(learner_logits(learner, final, real_images, cfg.bn_mode), real_labels)


def meta_gradient(teacher: Teacher, cfg: GTNConfig, data: RealData, generators: Sequence[torch.Generator],
                  learners: int | None = None) -> float:
    """Set the teacher's .grad to the gradient of the summed meta-losses of one fresh learner per generator divided
    by `learners` (default: their number, so the mean); returns that quantity's value.

    Each learner draws its initialisation, its curriculum and its real batch from its own generator; the backward
    passes run one learner at a time (memory of one unroll) and accumulate. A rank of a distributed run passes
    the meta-batch's size as `learners`, so the ranks' results sum to the mean.
    """
    for param in teacher.parameters():
        param.grad = None
    learners = len(generators) if learners is None else learners
    total = 0.0
    for generator in generators:
        index = torch.randint(0, data.train_images.shape[0], (cfg.real_batch_size,), generator=generator)
        index = index.to(data.train_images.device)
        loss = meta_loss(teacher, cfg, data.train_images[index], data.train_labels[index], generator)
        (loss if learners == 1 else loss / learners).backward()
        total += loss.item()
    return total / learners


def check_finite(loss: float, cfg: GTNConfig) -> None:
    """FloatingPointError naming the lrs to lower when the meta-loss is not finite."""
    if not math.isfinite(loss):
        raise FloatingPointError(f"meta-loss is {loss}; lower teacher_lr/hyper_lr or inner_lr_init "
                                 f"(now {cfg.teacher_lr}/{cfg.hyper_lr}/{cfg.inner_lr_init})")


def meta_step(teacher: Teacher, optimizer: torch.optim.Optimizer, cfg: GTNConfig, data: RealData,
              generators: Sequence[torch.Generator], world: World = World()) -> float:
    """One outer step: the mean meta-gradient of the meta-batch (this rank's learners, one per generator, summed
    over the ranks), clipped, then Adam; the mean meta-loss (the same on every rank)."""
    params = list(teacher.parameters())
    loss = meta_gradient(teacher, cfg, data, generators, learners=cfg.meta_batch if world.size > 1 else None)
    loss = sum_gradients(params, loss, world)
    check_finite(loss, cfg)
    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
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


def is_evaluation_step(step: int, cfg: GTNConfig) -> bool:
    """Whether outer step `step` (1-based) is evaluated: every `eval_every` steps and the last."""
    return step % cfg.eval_every == 0 or step == cfg.outer_steps


class MetaTrainer:
    """The meta-training loop and all of its state (teacher, Adam, lr schedule, random streams, step): resumable.

    `state_dict()` after any outer step and `load_state_dict()` into a fresh trainer of the same config continue
    the run exactly: on the same machine the resumed records equal the uninterrupted run's, bit for bit.

    In a distributed `world` each rank runs its share of the meta-batch's learners (`World.members`) and only
    rank 0 evaluates; `synchronize()`, `state_dict()` and every outer step are collective (all ranks call them).
    """

    def __init__(self, teacher: Teacher, cfg: GTNConfig, data: RealData, world: World | None = None) -> None:
        self.teacher, self.cfg, self.data = teacher, cfg, data
        self.world = current_world() if world is None else world
        self.members = self.world.members(cfg.meta_batch)
        self.optimizer = torch.optim.Adam(teacher.param_groups(cfg))
        self.schedule = lr_scheduler(self.optimizer, cfg)
        # One training stream per learner of the meta-batch; learner 0's is the single learner's of meta_batch=1.
        self.train_generators = [seeded_generator(cfg.seed, stream=learner_stream(m)) for m in self.members]
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
            loss = meta_step(self.teacher, self.optimizer, cfg, self.data, self.train_generators, self.world)
            self.schedule.step()
            self.step += 1
            step_seconds = time.perf_counter() - started
            lrs = tuple(self.teacher.hparams.lrs().tolist())
            momenta = tuple(self.teacher.hparams.momenta().tolist())
            if not (is_evaluation_step(self.step, cfg) and self.world.is_main):
                yield StepRecord(self.step, loss, lrs, momenta, step_seconds)
                continue
            started = time.perf_counter()
            test, train = evaluate(self.teacher, cfg, self.data, self.train_subset, self.eval_generator)
            yield StepRecord(self.step, loss, lrs, momenta, step_seconds, test, train, time.perf_counter() - started)

    def synchronize(self) -> None:
        """Every rank takes rank 0's teacher, inputs and inner hyper-parameters (a no-op in one process)."""
        self.teacher.load_state_dict(broadcast_object(self.teacher.state_dict(), self.world))

    def state_dict(self) -> dict:
        """Everything the next outer step depends on, as tensors and plain values; in a distributed world the
        training streams of every rank's learners (gathered), so the state is the one-process run's."""
        streams = [state for rank in gather_objects([g.get_state() for g in self.train_generators], self.world)
                   for state in rank]
        return {"step": self.step, "teacher": self.teacher.state_dict(), "optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict(), "train_generator": streams[0],
                "meta_batch_generators": streams[1:], "eval_generator": self.eval_generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        """Continue from `state_dict()` of a trainer with the same config (or lower Adam lrs: they are rescaled)."""
        if not 0 <= state["step"] <= self.cfg.outer_steps:
            raise ValueError(f"training state at step {state['step']}: expected a step in 0..{self.cfg.outer_steps}")
        base_lrs = list(self.schedule.base_lrs)  # this config's Adam lrs, before the state's replace them
        self.teacher.load_state_dict(state["teacher"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self._rescale_lrs(base_lrs)
        streams = [state["train_generator"], *state.get("meta_batch_generators", [])]
        for generator, member in zip(self.train_generators, self.members):
            generator.set_state(streams[member])
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
