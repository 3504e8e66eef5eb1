"""Stopping a long run cleanly and finding where it is recorded: what every resumable experiment shares.

A run inside `StopSignals` takes the first SIGTERM or SIGINT (Ctrl-C) as a request to stop after its current unit of
work (an outer step, an architecture), writes its progress and raises `Interrupted`, which Sacred records as
INTERRUPTED; a second signal stops at once. `file_store_of` names the file store a run is recorded in, where a
resumed run looks for its source by default.
"""
from __future__ import annotations

import signal
import threading
from pathlib import Path

from sacred.observers import FileStorageObserver
from sacred.utils import SacredInterrupt

from tracking.settings import default_runs_dir


class Interrupted(SacredInterrupt):
    """A stop signal ended the run after its progress was written; Sacred records the run as INTERRUPTED."""

    STATUS = "INTERRUPTED"


class StopSignals:
    """While active, SIGTERM and SIGINT only set `received` (the run stops after its unit of work); a second one
    stops now."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.received: str | None = None
        self.previous = {}

    def _handle(self, number, frame) -> None:
        if self.received is not None:
            raise KeyboardInterrupt(f"second {signal.Signals(number).name}")
        self.received = signal.Signals(number).name

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():  # Python only lets the main thread take signals
            self.previous = {number: signal.signal(number, self._handle) for number in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)


def file_store_of(run) -> Path:
    """The file store this run is recorded in (its first FileStorageObserver), else $GTN_RUNS_DIR / runs/."""
    stores = [Path(observer.basedir) for observer in run.observers if isinstance(observer, FileStorageObserver)]
    return stores[0] if stores else default_runs_dir()
