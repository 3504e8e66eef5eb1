"""Learners: one configurable network (`LearnerConfig`), its layers, and named presets."""
from __future__ import annotations

from gtn_core.learners.network import Learner, init_learner

__all__ = ["Learner", "init_learner"]
