"""Teachers: everything that yields a curriculum for the inner loop, behind one interface (`base.Teacher`)."""
from __future__ import annotations

import torch

from gtn_core.config import GTNConfig
from gtn_core.teachers.base import Curriculum, Teacher
from gtn_core.teachers.distillation import DistilledImages
from gtn_core.teachers.gan import GANTeacher
from gtn_core.teachers.gtn import GTN
from gtn_core.teachers.real_data import RealDataTeacher

__all__ = ["Curriculum", "Teacher", "GTN", "RealDataTeacher", "DistilledImages", "GANTeacher", "build_teacher"]


def build_teacher(cfg: GTNConfig, train_images: torch.Tensor | None = None,
                  train_labels: torch.Tensor | None = None) -> Teacher:
    """The teacher `cfg.teacher` names; `real_data` needs the (normalised) training images and labels."""
    if cfg.teacher == "gtn":
        return GTN(cfg)
    if cfg.teacher == "distillation":
        return DistilledImages(cfg)
    if cfg.teacher == "gan":
        return GANTeacher(cfg)  # untrained: load a trained GAN's generator into `.generator`
    if train_images is None or train_labels is None:
        raise ValueError("teacher='real_data' needs the training images and labels it draws its batches from")
    return RealDataTeacher(cfg, train_images, train_labels)
