"""A study's plan: which cells are done in the store, which resume from a checkpoint, which run (and why).

A cell counts as done when the store holds a COMPLETED run of its experiment with the same config (keys in
IGNORED_KEYS aside); an INTERRUPTED or FAILED newest same-config run that left progress to continue from (a
training run's training.pt, a NAS proxy run's nas_rows.json) is continued (`resume_from`, and `resume_store` when the
store is a MongoDB). Stored configs are compared in today's form (tracking.stored_config).
"""
from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from experiments.nas_proxy import rows_done
from experiments.source_teacher import snapshot_artifact
from gtn_core.checkpoint import training_state_step
from tracking.settings import is_mongo_url
from tracking.stored_config import IGNORED_KEYS, config_differences, same_config, upgrade_config
from tracking.stores import FileStore, MongoStore, RunRecord, Store, find_run, referenced_run

TRAINING, ABLATION = "experiments.mnist_experiment", "experiments.shuffle_ablation"
TUNED_SGD, TRANSFER, ROBUSTNESS = "experiments.tuned_sgd", "experiments.transfer", "experiments.robustness"
NAS_PROXY, GAN = "experiments.nas_proxy", "experiments.gan_experiment"
EXPERIMENT_NAMES = {TRAINING: "gtn_mnist", ABLATION: "gtn_shuffle_ablation", TUNED_SGD: "gtn_tuned_sgd",
                    TRANSFER: "gtn_transfer", ROBUSTNESS: "gtn_robustness", NAS_PROXY: "gtn_nas_proxy",
                    GAN: "gtn_gan"}
RESUMABLE_STATUSES = ("INTERRUPTED", "FAILED")


@dataclass(frozen=True)
class Task:
    """One Sacred run to make: which experiment module, with which named configs and updates."""

    label: str
    module: str
    named_configs: tuple[str, ...]
    updates: dict = field(hash=False)


def expected_config(task: Task) -> dict:
    """The full Sacred config `task` would run with (built without running anything; once per task)."""
    return dict(_resolved_config(task))


@functools.lru_cache(maxsize=None)
def _resolved_config(task: Task) -> dict:
    ex = importlib.import_module(task.module).ex
    # Sacred has no public "resolve the config" call; _create_run builds the run without starting it.
    return dict(ex._create_run(config_updates=dict(task.updates), named_configs=list(task.named_configs)).config)


def completed_run(task: Task, runs: Iterable[RunRecord]) -> RunRecord | None:
    """The newest COMPLETED run of the store with the task's experiment and config."""
    wanted = expected_config(task)
    matches = [run for run in runs if run.name == EXPERIMENT_NAMES[task.module] and run.status == "COMPLETED"
               and same_config(run.config, wanted, IGNORED_KEYS)]
    return matches[-1] if matches else None


@dataclass(frozen=True)
class Progress:
    """What a resumable experiment leaves to continue from: an artifact, how far it got (read from the file) and
    the config key of where it ends."""

    artifact: str
    read: Callable[[Path], int]
    end_key: str
    unit: str


PROGRESS = {TRAINING: Progress("training.pt", training_state_step, "outer_steps", "step"),
            NAS_PROXY: Progress("nas_rows.json", rows_done, "architectures", "architectures done:")}


def progress_of(store: Store, run: RunRecord, module: str) -> int | None:
    """How far the run got by its progress artifact (from GridFS in MongoDB); None when the experiment does not
    resume or the run left no usable artifact."""
    progress = PROGRESS.get(module)
    if progress is None:
        return None
    try:
        with store.local_artifact(run.run_id, progress.artifact) as path:
            return progress.read(path)
    except (KeyError, ValueError):
        return None  # nothing written yet, or a truncated file: the cell is run again


def resumable_run(task: Task, runs: Iterable[RunRecord], store: Store) -> tuple[RunRecord, int] | None:
    """(run, progress) when the task's newest same-config run is INTERRUPTED/FAILED with usable progress."""
    wanted = expected_config(task)
    matches = [run for run in runs if run.name == EXPERIMENT_NAMES[task.module]
               and same_config(run.config, wanted, IGNORED_KEYS)]
    if task.module not in PROGRESS or not matches or matches[-1].status not in RESUMABLE_STATUSES:
        return None
    done = progress_of(store, matches[-1], task.module)
    if done is None or not 0 < done < wanted[PROGRESS[task.module].end_key]:
        return None
    return matches[-1], done


IDENTITY_KEYS = ("batch_size", "inner_steps", "seed", "dataset")  # what names a cell, with the task's own updates


def why_not(task: Task, runs: list[RunRecord]) -> str:
    """Why the newest COMPLETED stored run of the same cell (shape, seed, arm) does not count: every differing key."""
    wanted = expected_config(task)
    identity = (*IDENTITY_KEYS, *task.updates)
    cell = [run for run in runs if run.name == EXPERIMENT_NAMES[task.module] and run.status == "COMPLETED"
            and not config_differences(run.config, {key: wanted[key] for key in identity if key in wanted})]
    if not cell:
        return ""
    run = cell[-1]
    return f" (stored run {run.run_id} differs: {'; '.join(config_differences(run.config, wanted, IGNORED_KEYS))})"


@dataclass
class Plan:
    """What a study invocation finds in its store: cells done (with their run), cells to run, and of those the
    ones continued from a checkpoint (label -> (run id, progress))."""

    done: list[tuple[Task, RunRecord]]
    todo: list[Task]
    resumes: dict[str, tuple[str, int]]


def plan(tasks: list[Task], runs: list[RunRecord], store: Store) -> Plan:
    """Split tasks into done and to do, the latter with `resume_from` (and, in MongoDB, `resume_store`) where a
    checkpoint or other progress is left."""
    result = Plan([], [], {})
    for task in tasks:
        run = completed_run(task, runs)
        if run is not None:
            result.done.append((task, run))
            continue
        resumable = resumable_run(task, runs, store)
        if resumable is None:
            result.todo.append(task)
            continue
        source, step = resumable
        where = {"resume_store": store.location} if isinstance(store, MongoStore) else {}
        result.todo.append(Task(task.label, task.module, task.named_configs,
                                {**task.updates, "resume_from": source.run_id, **where}))
        result.resumes[task.label] = (source.run_id, step)
    return result


def dry_run_line(task: Task, study: Plan, runs: list[RunRecord]) -> str:
    """One --dry-run line: done (run N), resume from run N (step S), or to run (and why a stored run differs)."""
    done = {t.label: run for t, run in study.done}
    if task.label in done:
        return f"done (run {done[task.label].run_id})"
    if task.label in study.resumes:
        source, done = study.resumes[task.label]
        return f"resume from run {source} ({PROGRESS[task.module].unit} {done})"
    return "to run" + why_not(task, runs)


REFERENCE_KEYS = ("source_run_id", "source_store")  # how an evaluation names its teacher: compared by what they name


def teacher_reference(teacher: RunRecord, store: Store, local: FileStore, local_runs: list[RunRecord]) -> dict:
    """The ablation config naming `teacher` of `store`: by its file-store id when this study's file store `local`
    (whose records are `local_runs`) holds the same run with its teacher.pt (MongoDB planning on the machine that
    trained it), else by `store`'s own id."""
    if isinstance(store, MongoStore):
        for record in local_runs:
            if (record.run_id, record.name, record.status, record.config) == \
                    (teacher.file_store_id, teacher.name, "COMPLETED", teacher.config) \
                    and local.artifact_path(record.run_id, "teacher.pt") is not None:
                return {"source_run_id": record.run_id, "source_store": local.location}
    return {"source_run_id": teacher.run_id, "source_store": store.location}


def completed_evaluation(task: Task, teacher: RunRecord, runs: list[RunRecord], store: Store) -> RunRecord | None:
    """The newest COMPLETED evaluation (ablation, transfer, robustness) in `runs` of the same config whose reference
    names `teacher`, however it names it (a file-store id or `store`'s own)."""
    wanted = expected_config(task)
    in_mongo = isinstance(store, MongoStore)
    for run in reversed(runs):
        if run.name != EXPERIMENT_NAMES[task.module] or run.status != "COMPLETED" \
                or not same_config(run.config, wanted, IGNORED_KEYS + REFERENCE_KEYS):
            continue
        config = upgrade_config(run.config)
        named = referenced_run(runs, config.get("source_run_id"), config.get("source_store"), in_mongo,
                               teacher.name, before=run.start_time)
        if named is not None and named.run_id == teacher.run_id:
            return run
    return None


def teacher_missing(evaluation: Task) -> str | None:
    """Why the teacher file an evaluation reads is not on disk, or None when it is (or lies in GridFS): a file store
    copied or committed without its .pt artifacts still lists the teacher, whose evaluations cannot run."""
    location, run_id = evaluation.updates.get("source_store"), evaluation.updates.get("source_run_id")
    if location is None or run_id is None or is_mongo_url(str(location)):
        return None
    store = FileStore(location)
    step = evaluation.updates.get("source_step")
    try:
        source = find_run(store, run_id)
        holder, name = (source, "teacher.pt") if step is None else snapshot_artifact(store, source, step)
    except ValueError as error:
        return str(error)
    if store.artifact_path(holder.run_id, name) is None:
        return (f"run {holder.run_id} of the {store.label} has no file {name} (a store kept without its .pt "
                f"artifacts): put the file back, or remove the run ({store.runs_dir / holder.run_id}) so that the "
                "study trains its cell again")
    return None
