"""The Generative Teaching Network: a generator, its inputs and the per-step inner lr/momentum, with a curriculum.

Curricula (the paper's names; Uber's code: CGTN, CGTNBatchShuffled, CGTNAllShuffled, GTN):
- `full`: the K learned batches in a fixed order;
- `shuffled_batch`: each inner step draws one of the K learned batches at random, with replacement (content, not
  order);
- `all_shuffled`: each inner step draws B of the K*B learned (input, label) pairs at random (data, not batches);
- `none`: fresh inputs and uniformly random labels at every step (no curriculum at all).
"""
from __future__ import annotations

import torch
from torch.func import functional_call

from gtn_core.config import GTNConfig
from gtn_core.inner_hparams import learned_hparams
from gtn_core.recompute import GeneratedImages
from gtn_core.seeds import NOISE, seeded_generator
from gtn_core.teachers.base import Curriculum, Teacher, index_on
from gtn_core.teachers.generator import Generator, TeacherInputs, curriculum_labels


class GTN(Teacher):
    """Generator + generator inputs + per-step inner lr/momentum; `curriculum()` yields the K synthetic batches."""

    def __init__(self, cfg: GTNConfig) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):  # seed the generator's init without touching the caller's RNG
            torch.manual_seed(cfg.seed)
            self.generator = Generator(cfg.generator)
        self.curriculum_kind = cfg.curriculum
        self.fixed_curriculum = cfg.curriculum == "full" and cfg.variant != "random"
        self.inputs = TeacherInputs(cfg.variant, cfg.inner_steps, cfg.batch_size, cfg.generator.noise_size,
                                    cfg.noise_distribution, seeded_generator(cfg.seed, stream=NOISE))
        self.hparams = learned_hparams(cfg)
        self.register_buffer("labels", curriculum_labels(cfg.inner_steps, cfg.batch_size, cfg.generator.num_classes))

    def curriculum(self, generator: torch.Generator) -> Curriculum:
        """Step t's images are generated when the unroll asks for them (BatchNorm statistics per step batch)."""
        # The inputs are drawn once per call: the `random` variant's fresh draw holds for the whole inner loop.
        noise, labels = self.inputs(generator), self.labels
        steps, batch = labels.shape
        if self.curriculum_kind == "shuffled_batch":
            choice = index_on(generator, steps, (steps,), self.device)  # one learned batch per step
            noise, labels = noise[choice], labels[choice]
        elif self.curriculum_kind == "all_shuffled":
            picks = torch.stack([torch.randperm(steps * batch, generator=generator)[:batch] for _ in range(steps)])
            picks = picks.to(self.device)  # (K, B) indices into the K*B learned pairs
            noise, labels = noise.flatten(0, 1)[picks], labels.flatten()[picks]
        elif self.curriculum_kind == "none":
            labels = index_on(generator, self.generator.cfg.num_classes, tuple(labels.shape), self.device)
        names = [name for name, _ in self.generator.named_parameters()]

        def generate(step: int, *tensors: torch.Tensor) -> torch.Tensor:
            weights, step_noise = dict(zip(names, tensors[:-1])), tensors[-1]
            return functional_call(self.generator, weights, (step_noise[step], labels[step]))

        # The generator's weights are explicit inputs so that a recomputing unroll can differentiate them.
        return Curriculum(GeneratedImages(generate, (*self.generator.parameters(), noise)), labels)

    def learned_groups(self, cfg: GTNConfig) -> list[dict]:
        """The generator's weights and, for the `learned` variant, its inputs."""
        return [{"params": list(self.generator.parameters()), "lr": cfg.teacher_lr, "name": "teacher"},
                {"params": list(self.inputs.parameters()), "lr": cfg.inputs_lr, "name": "inputs"}]
