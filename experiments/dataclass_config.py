"""A Sacred config derived from the core's frozen dataclasses: their defaults and their field docs.

The dataclasses stay the one source of every knob: `print_config` shows each key with its doc, nested sections
(`generator.hidden_size=512`) work on the command line, and named configs only override.
"""
from __future__ import annotations

import dataclasses

from sacred.config.config_dict import ConfigDict

from gtn_core.config import GTNConfig, config_from_dict, config_to_dict, section_of


def field_docs(cls, prefix: str = "") -> dict[str, str]:
    """Dotted key -> doc for every field of a config dataclass, nested sections included."""
    docs = {}
    for f in dataclasses.fields(cls):
        docs[prefix + f.name] = f.metadata.get("doc", "")
        if section_of(f) is not None:
            docs.update(field_docs(section_of(f), f"{prefix}{f.name}."))
    return docs


class DataclassConfig(ConfigDict):
    """Sacred's ConfigDict of a config instance, with every key documented from its dataclass fields."""

    def __init__(self, instance) -> None:
        super().__init__(config_to_dict(instance))
        self.docs = field_docs(type(instance))

    def __call__(self, fixed=None, preset=None, fallback=None):
        summary = super().__call__(fixed, preset, fallback)
        summary.docs.update(self.docs)
        return summary


def core_config(values: dict, cls=GTNConfig):
    """The core's config dataclass from a run's Sacred config (the experiment's own keys are left out)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return config_from_dict({key: value for key, value in values.items() if key in names}, cls)
