"""Save and restore a trained teacher (learned tensors, inner hyper-parameters, random state) with its config."""
from __future__ import annotations

from pathlib import Path

import torch

from gtn_core.config import GTNConfig, config_from_dict, config_to_dict, flat_config
from gtn_core.teachers import Teacher, build_teacher

FORMAT_VERSION = 2


def save_checkpoint(teacher: Teacher, cfg: GTNConfig, path: str | Path) -> Path:
    """Write the teacher's state (learned or fixed inputs included) and its config to `path`.

    Teachers own no random stream (every draw comes from the caller's generator), so this is all there is.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format_version": FORMAT_VERSION, "config": config_to_dict(cfg), "state_dict": teacher.state_dict()},
               path)
    return path


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu", train_images: torch.Tensor | None = None,
                    train_labels: torch.Tensor | None = None) -> tuple[Teacher, GTNConfig]:
    """Rebuild the teacher saved at `path` (a real-data teacher needs the training images again).

    Raises ValueError for a file that is not a gtn-lab checkpoint.
    """
    try:
        payload = torch.load(Path(path), map_location=device, weights_only=False)
    except Exception as error:  # torch raises many types for corrupt files; name the file either way
        raise ValueError(f"{path}: not a readable checkpoint ({error})") from error
    if not isinstance(payload, dict) or payload.get("format_version") not in (1, FORMAT_VERSION):
        raise ValueError(f"{path}: expected a gtn-lab checkpoint with format_version={FORMAT_VERSION}")
    if payload["format_version"] == 1:
        payload = _upgrade_v1(payload)
    cfg = config_from_dict(payload["config"])
    teacher = build_teacher(cfg, train_images, train_labels).to(device)
    teacher.load_state_dict(payload["state_dict"])
    return teacher, cfg


def _upgrade_v1(payload: dict) -> dict:
    """Format 1 (GTNs only): the generator's config and weights were called `teacher`."""
    config = dict(payload["config"])
    config["generator"] = config.pop("teacher")
    state = {("generator." + key[len("teacher."):] if key.startswith("teacher.") else key): value
             for key, value in payload["state_dict"].items()}
    return {**payload, "config": config, "state_dict": state}


# --- training state: resume an interrupted meta-training run -------------------------------------------------------

TRAINING_FORMAT_VERSION = 1
# Adam learning rates a resumed run may lower (the way out of a diverged run); every other key must be equal.
LOWERABLE_ON_RESUME = ("teacher_lr", "inputs_lr", "hyper_lr")


def save_training_state(state: dict, cfg: GTNConfig, path: str | Path) -> Path:
    """Write a MetaTrainer.state_dict() and its config to `path` (see load_training_state)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format_version": TRAINING_FORMAT_VERSION, "kind": "training_state", "step": state["step"],
                "config": config_to_dict(cfg), "state": state}, path)
    return path


def _read_training_payload(path: str | Path, mmap: bool = False, name: str | None = None) -> dict:
    name = name or str(path)  # what messages call the file
    try:
        payload = torch.load(Path(path), map_location="cpu", weights_only=False, mmap=mmap)
    except Exception as error:  # torch raises many types for truncated or corrupt files; name the file either way
        raise ValueError(f"{name}: not a readable training state ({type(error).__name__}: {error})") from error
    if not isinstance(payload, dict) or payload.get("kind") != "training_state" \
            or payload.get("format_version") != TRAINING_FORMAT_VERSION:
        raise ValueError(f"{name}: expected a gtn-lab training state with format_version={TRAINING_FORMAT_VERSION}")
    return payload


def training_state_step(path: str | Path) -> int:
    """The outer step a training state was saved at (memory-mapped: cheap even for a large file)."""
    return _read_training_payload(path, mmap=True)["step"]


def resume_differences(stored: GTNConfig, cfg: GTNConfig) -> list[str]:
    """'key: stored -> now' for every key on which `cfg` may not resume a run of `stored` (only lrs may be lowered)."""
    have, want = flat_config(config_to_dict(stored)), flat_config(config_to_dict(cfg))
    problems = []
    for key in sorted(set(have) | set(want)):
        old, new = have.get(key, "(missing)"), want.get(key, "(missing)")
        if old == new or (key in LOWERABLE_ON_RESUME and new < old):
            continue
        allowed = " (may only be lowered)" if key in LOWERABLE_ON_RESUME else ""
        problems.append(f"{key}: {old!r} -> {new!r}{allowed}")
    return problems


def load_training_state(path: str | Path, cfg: GTNConfig, name: str | None = None) -> dict:
    """The MetaTrainer state saved at `path`, checked against `cfg`: ValueError naming the file (or `name`, e.g. for
    a downloaded copy) and what differs.

    `cfg` must equal the saved config except `LOWERABLE_ON_RESUME`, which may be lower (MetaTrainer.load_state_dict
    then rescales Adam's learning rates to `cfg`'s).
    """
    name = name or str(path)
    payload = _read_training_payload(path, name=name)
    try:
        stored = config_from_dict(payload["config"])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{name}: its config does not build ({error})") from error
    differences = resume_differences(stored, cfg)
    if differences:
        raise ValueError(f"{name}: saved with another config, cannot resume: {'; '.join(differences)}")
    return payload["state"]
