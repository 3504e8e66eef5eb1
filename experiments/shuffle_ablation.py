"""Shuffle ablation: does a trained teacher's curriculum order matter?

For a finished training run of `mnist_experiment.py`, meta-test `repeats` fresh learners on the teacher's
batches in the learned step order and as many on a random permutation of the steps (batches intact, labels
moving with their batch, the learned lr/momentum schedule staying in time order, or with `move_schedule=True`
moving with the batches). Both accuracy lists are
logged (`accuracy_learned`, `accuracy_shuffled`, step = repeat) with their medians in the result.

    python experiments/shuffle_ablation.py with source_run_id=3
    python experiments/shuffle_ablation.py with source_run_id=3 repeats=20 test_size=10000
    python experiments/shuffle_ablation.py with smoke source_run_id=1
    python experiments/shuffle_ablation.py with source_run_id=3 source_step=400   # its teacher after outer step 400
    python experiments/shuffle_ablation.py with source_run_id=3 move_schedule=True  # lr/momentum move with the batches
    python experiments/shuffle_ablation.py with source_run_id=12 source_store=mongodb://127.0.0.1:27018/gtn_lab

The teacher is read from `source_store` (tracking.stores): a file store's folder (default: $GTN_RUNS_DIR or
runs/) or a MongoDB URL, whose run ids and GridFS artifacts are then used, so a study spread over several
machines can ablate teachers trained anywhere.

Learners are scored on the first `test_size` test images (default 2,000: 200 learners on the full 10k test
set would take ~15 min per teacher on 2 cores), with the source run's `bn_mode`.
"""
from __future__ import annotations

import statistics
import warnings

warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

from sacred import Experiment
from sacred.utils import apply_backspaces_and_linefeeds
from tqdm import tqdm

from experiments.observers import attach_observers
from gtn_core.ablation import ORDERS, shuffle_ablation
from experiments.source_teacher import load_source_teacher
from gtn_core.device import resolve_device
from gtn_core.seeds import ABLATION, seeded_generator

ex = Experiment("gtn_shuffle_ablation")
ex.captured_out_filter = apply_backspaces_and_linefeeds


@ex.config
def config():
    source_run_id = None  # id of a COMPLETED mnist_experiment run of source_store
    source_store = None  # where that run is: a file store's folder or a mongodb:// URL; None: $GTN_RUNS_DIR or runs/
    source_step = None  # an outer step the source run kept a snapshot of (snapshot_every); None: its final teacher
    move_schedule = False  # True: each step's learned lr and momentum move with its batch; False: they stay in time order
    repeats = 100  # learners per order
    test_size = 2000  # first N test images score each learner
    data_root = None  # None: $GTN_DATA_DIR or <repo>/data
    device = "auto"
    progress = True
    seed = 0


@ex.named_config
def smoke():
    # A handful of learners: the pipeline in seconds.
    repeats = 3
    test_size = 1000


@ex.main
def main(_run, source_run_id, source_store, source_step, move_schedule, repeats, test_size, data_root, device,
         progress, seed):
    """Load the source teacher, run the paired learners, log both accuracy lists and their medians."""
    if not isinstance(test_size, int) or test_size < 1:
        raise ValueError(f"test_size={test_size!r}: expected a positive number of test images")
    if not isinstance(move_schedule, bool):
        raise ValueError(f"move_schedule={move_schedule!r}: expected True or False")
    teacher, cfg, data, _ = load_source_teacher(source_run_id, source_store, data_root, resolve_device(device),
                                                source_step)
    images, labels = data.test_images[:test_size], data.test_labels[:test_size]
    accuracies = {order: [] for order in ORDERS}
    trials = shuffle_ablation(teacher, cfg, images, labels, repeats, seeded_generator(seed, stream=ABLATION),
                              move_schedule)
    for trial in tqdm(trials, total=2 * repeats, desc=f"ablation of run {source_run_id}", disable=not progress):
        accuracies[trial.order].append(trial.accuracy)
        _run.log_scalar(f"accuracy_{trial.order}", trial.accuracy, trial.repeat)
    medians = {f"median_{order}": statistics.median(values) for order, values in accuracies.items()}
    _run.info.update(teacher=cfg.teacher, curriculum=cfg.curriculum, variant=cfg.variant, batch_size=cfg.batch_size,
                     inner_steps=cfg.inner_steps, bn_mode=cfg.bn_mode, source_step=source_step, **medians)
    return medians


if __name__ == "__main__":
    attach_observers(ex)
    ex.run_commandline()
