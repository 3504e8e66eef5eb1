"""Stored runs' configs in today's form: older flat keys moved into their sections, keys added since filled in."""
from __future__ import annotations

from gtn_core.config import SECTIONS, GTNConfig, config_from_dict, config_to_dict, flat_config


# Flat keys of runs stored before the config became nested (one source: the core's dataclasses), and where each
# one lives now. Keys those runs could not set had the core's defaults, which the upgrade fills in.
LEGACY_KEYS = {"noise_size": ("generator", "noise_size"), "teacher_hidden_size": ("generator", "hidden_size"),
               "teacher_base_channels": ("generator", "base_channels"), "teacher_upsampling": ("generator", "upsampling"),
               "learner_channels": ("learner", "channels")}
# Config keys added after runs were already stored, with the value those older runs behaved as: a run stored
# without the key still counts as having it (so adding a key with its old behaviour as default keeps resume).
IMPLICIT_IN_OLDER_RUNS = {"lr_schedule": "constant", "teacher": "gtn", "curriculum": "full", "meta_batch": 1,
                          "learner_sampling": "fixed", "gan_run_id": None, "gan_store": None,
                          "inner_schedule": "per_step", "snapshot_every": None, "source_step": None,
                          "move_schedule": False,
                          "learner_presets": list(GTNConfig.__dataclass_fields__["learner_presets"].default)}
# Experiment keys renamed since runs were stored: old name -> new name (the shuffle ablation's `runs_dir` became
# `source_store` when it could also name a MongoDB).
RENAMED_KEYS = {"runs_dir": "source_store"}
# They change how a run looks or where it starts, not what it computes: a run that differs only in them is the same.
IGNORED_KEYS = ("progress", "data_root", "checkpoint_every", "resume_from", "resume_store")


def upgrade_config(stored: dict) -> dict:
    """A stored run's config in today's nested form (older flat keys moved into their sections, renamed keys renamed)."""
    stored = {**stored}
    for old, new in RENAMED_KEYS.items():
        if old in stored and new not in stored:
            stored[new] = stored.pop(old)
    if "generator" in stored or not any(key in stored for key in LEGACY_KEYS):
        return {**IMPLICIT_IN_OLDER_RUNS, **stored, **_sections_filled(stored)}
    config = {key: value for key, value in stored.items() if key not in LEGACY_KEYS}
    sections = {name: {} for name in SECTIONS}
    for old, (section, key) in LEGACY_KEYS.items():
        if old in stored:
            sections[section][key] = stored[old]
    for name, cls in SECTIONS.items():
        config[name] = config_to_dict(config_from_dict(sections[name], cls))
    return {**IMPLICIT_IN_OLDER_RUNS, **config}


def _sections_filled(stored: dict) -> dict:
    """The stored sections (generator, gan, learner) with the keys added to them since filled in with their
    defaults (each added with its old behaviour as default); a training run stored before a section existed gets
    the whole section's defaults."""
    if "generator" not in stored:
        return {}  # not a training run's config
    return {name: {**config_to_dict(cls()), **stored.get(name, {})} for name, cls in SECTIONS.items()}


def config_differences(stored: dict, wanted: dict, ignore: tuple[str, ...] = ()) -> list[str]:
    """'key: stored -> wanted' for every (dotted) key of `wanted` outside `ignore` on which a stored run differs."""
    have, want = flat_config(upgrade_config(stored)), flat_config(wanted)
    return [f"{key}: {have.get(key, '(missing)')!r} -> {value!r}" for key, value in want.items()
            if key.split(".")[0] not in ignore and have.get(key, "(missing)") != value]


def same_config(stored: dict, wanted: dict, ignore: tuple[str, ...] = ()) -> bool:
    """Whether a stored config equals `wanted` on every key of `wanted` outside `ignore`."""
    return not config_differences(stored, wanted, ignore)
