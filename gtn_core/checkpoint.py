"""Save and restore a trained teacher (learned tensors, inner hyper-parameters, random state) with its config."""
from __future__ import annotations

from pathlib import Path

import torch

from gtn_core.config import GTNConfig, config_from_dict, config_to_dict
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
