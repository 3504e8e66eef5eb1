"""Save and restore a trained GTN (weights, inputs, inner hyper-parameters) together with its config."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from gtn_core.config import GTNConfig, LearnerConfig, TeacherConfig
from gtn_core.gtn import GTN

FORMAT_VERSION = 1


def config_from_dict(values: dict) -> GTNConfig:
    """Rebuild a GTNConfig (with its nested configs) from `dataclasses.asdict` output."""
    values = dict(values)
    teacher = TeacherConfig(**values.pop("teacher"))
    learner_values = dict(values.pop("learner"))
    learner_values["channels"] = tuple(learner_values["channels"])
    return GTNConfig(teacher=teacher, learner=LearnerConfig(**learner_values), **values)


def save_checkpoint(gtn: GTN, cfg: GTNConfig, path: str | Path) -> Path:
    """Write the GTN's state (learned or fixed inputs included) and its config to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format_version": FORMAT_VERSION, "config": asdict(cfg), "state_dict": gtn.state_dict(),
                "noise_generator_state": gtn.inputs.generator.get_state()}, path)
    return path


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> tuple[GTN, GTNConfig]:
    """Rebuild the GTN saved at `path`; raises ValueError for a file that is not a gtn-lab checkpoint."""
    try:
        payload = torch.load(Path(path), map_location=device, weights_only=False)
    except Exception as error:  # torch raises many types for corrupt files; name the file either way
        raise ValueError(f"{path}: not a readable checkpoint ({error})") from error
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: expected a gtn-lab checkpoint with format_version={FORMAT_VERSION}")
    cfg = config_from_dict(payload["config"])
    gtn = GTN(cfg).to(device)
    gtn.load_state_dict(payload["state_dict"])
    gtn.inputs.generator.set_state(payload["noise_generator_state"])
    return gtn, cfg
