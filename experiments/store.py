"""Reading finished runs back from the Sacred file store: what resume and the ablation need."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StoredRun:
    """One run folder of a file store."""

    run_id: str
    experiment: str
    status: str
    config: dict
    directory: Path
    result: object = None


def read_runs(runs_dir: str | Path) -> list[StoredRun]:
    """Every readable run of the store, oldest first; a missing store has no runs."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    runs = []
    for directory in sorted((p for p in runs_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)):
        try:
            run = json.loads((directory / "run.json").read_text())
            config = json.loads((directory / "config.json").read_text())
        except (OSError, json.JSONDecodeError):
            continue  # a run killed before Sacred wrote its files: not finished, so it is rerun
        runs.append(StoredRun(directory.name, run["experiment"]["name"], run["status"], config, directory,
                              run.get("result")))
    return runs


def find_run(runs_dir: str | Path, run_id: str | int) -> StoredRun:
    """The run `run_id` of the store; ValueError naming the store when it is not there."""
    for run in read_runs(runs_dir):
        if run.run_id == str(run_id):
            return run
    raise ValueError(f"run {run_id!r} not found in the file store {runs_dir}")


# Config keys added after runs were already stored, with the value those older runs behaved as: a run stored
# without the key still counts as having it (so adding a key with its old behaviour as default keeps resume).
IMPLICIT_IN_OLDER_RUNS = {"lr_schedule": "constant", "teacher_upsampling": "nearest"}


def same_config(stored: dict, wanted: dict, ignore: tuple[str, ...] = ()) -> bool:
    """Whether a stored config equals `wanted` on every key of `wanted` outside `ignore`."""
    return all(stored.get(key, IMPLICIT_IN_OLDER_RUNS.get(key)) == value
               for key, value in wanted.items() if key not in ignore)
