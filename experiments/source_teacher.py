"""The trained teacher an evaluation study reads: a COMPLETED mnist_experiment run of a file store or MongoDB."""
from __future__ import annotations

import contextlib

import torch

from gtn_core.checkpoint import load_checkpoint
from gtn_core.config import GTNConfig
from gtn_core.data import default_data_root, load_dataset
from gtn_core.meta import RealData, to_real_data
from gtn_core.teachers import Teacher
from tracking.settings import default_runs_dir
from tracking.stores import MongoStore, RunRecord, Store, find_run, open_location, resume_chain


def snapshot_name(step: int) -> str:
    """The artifact of a training run's teacher as it was after outer step `step` (`snapshot_every`)."""
    return f"teacher_{step}.pt"


def snapshot_artifact(store: Store, source: RunRecord, step: int) -> tuple[RunRecord, str]:
    """(the run holding the snapshot after outer step `step`, the artifact's name): run `source` or, back through
    its resume chain (`resume_chain`), a run it was resumed from that had kept it before the step its successor
    resumed from (later snapshots of that run were of a trajectory abandoned); ValueError naming the steps the
    chain kept otherwise."""
    name, chain = snapshot_name(step), resume_chain(store.records(), source.run_id, isinstance(store, MongoStore))
    kept, resumed_at = [], None  # resumed_at: the step the newer run resumed from, None for the source run
    for run in reversed(chain):
        info = store.info(run.run_id)
        steps = [s for s in info.get("snapshot_steps", []) if resumed_at is None or s <= resumed_at]
        if step in steps and name in store.artifact_names(run.run_id):
            return run, name
        kept += steps
        resumed_at = (info.get("resumed_from") or {}).get("step")
    raise ValueError(f"source_step={step!r}: run {source.run_id} of the {store.label} kept no teacher snapshot at "
                     f"that step (snapshot steps: {sorted(kept) or 'none; train with snapshot_every'})")


def load_source_teacher(source_run_id, source_store, data_root, device: torch.device, step: int | None = None
                        ) -> tuple[Teacher, GTNConfig, RealData, str]:
    """(teacher, its config, its dataset on `device`, dataset name) of run `source_run_id` of `source_store` (a file
    store's folder or a MongoDB URL; None: $GTN_RUNS_DIR or runs/): its final teacher, or with `step` its snapshot
    after that outer step (`snapshot_every`); ValueError naming the run when it is not a COMPLETED training run or
    kept no snapshot at `step`."""
    if source_run_id is None:
        raise ValueError("source_run_id=None: expected the id of a completed mnist_experiment run")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 1):
        raise ValueError(f"source_step={step!r}: expected None (the final teacher) or a positive outer step")
    with contextlib.closing(open_location(source_store or default_runs_dir())) as store:
        source = find_run(store, source_run_id)
        if source.name != "gtn_mnist" or source.status != "COMPLETED":
            raise ValueError(f"run {source_run_id} of the {store.label} is a {source.status} {source.name!r} run; "
                             "expected a COMPLETED 'gtn_mnist' run")
        holder, name = (source, "teacher.pt") if step is None else snapshot_artifact(store, source, step)
        dataset = source.config["dataset"]
        data = to_real_data(load_dataset(dataset, data_root or default_data_root()), device)
        with store.local_artifact(holder.run_id, name) as path:
            teacher, cfg = load_checkpoint(path, device, data.train_images, data.train_labels)
    return teacher, cfg, data, dataset
