"""Where Sacred runs are recorded: one helper used by every experiment script."""
from __future__ import annotations

import os
from pathlib import Path

from sacred import Experiment
from sacred.observers import FileStorageObserver

REPO_ROOT = Path(__file__).resolve().parents[1]


def default_runs_dir() -> Path:
    """The file store: $GTN_RUNS_DIR if set, else <repo>/runs."""
    return Path(os.environ.get("GTN_RUNS_DIR", REPO_ROOT / "runs"))


def attach_observers(ex: Experiment, runs_dir: str | Path | None = None) -> None:
    """Record `ex` in the file store (always); further observers (MongoDB) join here."""
    if not any(isinstance(observer, FileStorageObserver) for observer in ex.observers):
        ex.observers.append(FileStorageObserver(str(runs_dir or default_runs_dir())))
