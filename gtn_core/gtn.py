"""Everything meta-training optimises, in one module: the teacher, its inputs and the inner hyper-parameters."""
from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from gtn_core.config import GTNConfig
from gtn_core.inner_hparams import InnerHyperParams
from gtn_core.recompute import GeneratedImages
from gtn_core.teacher import Teacher, TeacherInputs, curriculum_labels


def seeded_generator(seed: int, stream: int) -> torch.Generator:
    """An independent CPU generator per random stream (noise, training, evaluation) of a run."""
    return torch.Generator().manual_seed(seed * 1_000_003 + stream)


class GTN(nn.Module):
    """Teacher + teacher inputs + per-step inner lr/momentum; `curriculum()` yields the K synthetic batches."""

    def __init__(self, cfg: GTNConfig) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):  # seed the teacher's init without touching the caller's RNG
            torch.manual_seed(cfg.seed)
            self.teacher = Teacher(cfg.teacher)
        self.inputs = TeacherInputs(cfg.variant, cfg.inner_steps, cfg.batch_size, cfg.teacher.noise_size,
                                    cfg.noise_distribution, seeded_generator(cfg.seed, stream=0))
        self.hparams = InnerHyperParams(cfg.inner_steps, cfg.inner_lr_init, cfg.inner_momentum_init)
        self.register_buffer("labels", curriculum_labels(cfg.inner_steps, cfg.batch_size, cfg.teacher.num_classes))

    def curriculum(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Synthetic images (K, B, C, H, W) and their labels (K, B) for one inner loop."""
        return self.teacher.curriculum(self.inputs(), self.labels), self.labels

    def lazy_curriculum(self) -> tuple[GeneratedImages, torch.Tensor]:
        """Like `curriculum()`, but step t's images (B, C, H, W) are generated only when the unroll asks for them."""
        names = [name for name, _ in self.teacher.named_parameters()]

        def generate(step: int, *tensors: torch.Tensor) -> torch.Tensor:
            weights, noise = dict(zip(names, tensors[:-1])), tensors[-1]
            return functional_call(self.teacher, weights, (noise[step], self.labels[step]))

        # The inputs are drawn once: the `random` variant's fresh draw holds for the whole inner loop. The teacher's
        # weights are explicit inputs so that a recomputing unroll can differentiate with respect to them.
        inputs = (*self.teacher.parameters(), self.inputs())
        return GeneratedImages(generate, inputs), self.labels

    def param_groups(self, cfg: GTNConfig) -> list[dict]:
        """Adam parameter groups: teacher weights, learned inputs (if any) and inner hyper-parameters."""
        groups = [{"params": list(self.teacher.parameters()), "lr": cfg.teacher_lr, "name": "teacher"},
                  {"params": list(self.hparams.parameters()), "lr": cfg.hyper_lr, "name": "inner_hparams"}]
        inputs = list(self.inputs.parameters())
        if inputs:
            groups.append({"params": inputs, "lr": cfg.inputs_lr, "name": "inputs"})
        return groups
