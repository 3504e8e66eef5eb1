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
from tracking.stores import find_run, open_location


def load_source_teacher(source_run_id, source_store, data_root, device: torch.device
                        ) -> tuple[Teacher, GTNConfig, RealData, str]:
    """(teacher, its config, its dataset on `device`, dataset name) of run `source_run_id` of `source_store` (a file
    store's folder or a MongoDB URL; None: $GTN_RUNS_DIR or runs/); ValueError naming the run when it is not a
    COMPLETED training run."""
    if source_run_id is None:
        raise ValueError("source_run_id=None: expected the id of a completed mnist_experiment run")
    with contextlib.closing(open_location(source_store or default_runs_dir())) as store:
        source = find_run(store, source_run_id)
        if source.name != "gtn_mnist" or source.status != "COMPLETED":
            raise ValueError(f"run {source_run_id} of the {store.label} is a {source.status} {source.name!r} run; "
                             "expected a COMPLETED 'gtn_mnist' run")
        dataset = source.config["dataset"]
        data = to_real_data(load_dataset(dataset, data_root or default_data_root()), device)
        with store.local_artifact(source.run_id, "teacher.pt") as path:
            teacher, cfg = load_checkpoint(path, device, data.train_images, data.train_labels)
    return teacher, cfg, data, dataset
