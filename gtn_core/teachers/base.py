"""The one teacher interface: anything that yields a curriculum of K labelled batches plus what meta-training learns.

`meta_loss`, `meta_test`, the shuffle ablation and every later evaluation see only this interface, so they never
branch on the kind of teacher (a GTN with any curriculum, real data, distilled pixels).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from gtn_core.recompute import GeneratedImages, tensor_images  # noqa: F401 (tensor_images: part of the interface)


@dataclass(frozen=True)
class Curriculum:
    """One inner loop's data: step t's images `images(t)` (B, C, H, W) and all labels (K, B).

    The images are a pure function of explicit tensors (`GeneratedImages`), so a checkpointed unroll can
    regenerate any step in the meta-backward.
    """

    images: GeneratedImages
    labels: torch.Tensor

    @property
    def steps(self) -> int:
        """K, the number of inner steps."""
        return self.labels.shape[0]

    def materialize(self) -> torch.Tensor:
        """Every step's images as one tensor (K, B, C, H, W)."""
        return torch.stack([self.images(step) for step in range(self.steps)])


class Teacher(nn.Module):
    """Base of every teacher: `curriculum(generator)`, the inner hyper-parameters `hparams`, Adam `param_groups`."""

    #: True when every call of `curriculum` yields the same data (no fresh inputs or draws).
    fixed_curriculum: bool = True
    hparams: nn.Module

    def curriculum(self, generator: torch.Generator) -> Curriculum:
        """This inner loop's curriculum; every random draw (inputs, batches, pairs, labels) comes from `generator`."""
        raise NotImplementedError

    def learned_groups(self, cfg) -> list[dict]:
        """Adam groups of the teacher's own learned tensors (none by default)."""
        return []

    def param_groups(self, cfg) -> list[dict]:
        """Adam parameter groups: the teacher's learned tensors and the inner hyper-parameters."""
        groups = self.learned_groups(cfg)
        groups.append({"params": list(self.hparams.parameters()), "lr": cfg.hyper_lr, "name": "inner_hparams"})
        return [group for group in groups if group["params"]]

    def __init__(self) -> None:
        super().__init__()
        # Tracks the module's device for tensors drawn from CPU generators (reproducible on any device).
        self.register_buffer("device_anchor", torch.empty(0), persistent=False)

    @property
    def device(self) -> torch.device:
        """The device of the teacher's tensors."""
        return self.device_anchor.device


def index_on(generator: torch.Generator, high: int, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Uniform integer draws in [0, high) from a CPU generator, moved to `device`."""
    return torch.randint(0, high, shape, generator=generator).to(device)

