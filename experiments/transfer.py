"""Transfer across learners (after Willis 2021): does a teacher trained for one learner teach the others?

For a finished training run of `mnist_experiment.py`, `learners` fresh learners of every preset
(gtn_core.learners.presets) are trained on the teacher's whole curriculum (`gtn`, its K steps), on its first
`short_steps` steps (`short_gtn`, Willis's 10_gtn) and, as the reference, on real data for `vanilla_epochs` epochs
of Adam (`vanilla`, batch 128), then scored on the first `test_size` test images with the teacher's `bn_mode`.
Every accuracy is logged (`<mode>.<preset>`, step = learner) and kept in the run's info as rows.

    python experiments/transfer.py with source_run_id=3
    python experiments/transfer.py with source_run_id=3 presets=[base,base_fc,linear] learners=3
    python experiments/transfer.py with source_run_id=3 modes=[gtn,short_gtn]       # no real-data reference
    python experiments/transfer.py with smoke source_run_id=1
    python experiments/transfer.py with source_run_id=12 source_store=mongodb://127.0.0.1:27018/gtn_lab

The vanilla learners do not depend on the teacher (only on its dataset and `seed`), so a study runs them once per
dataset. Cost on 2 cores: one vanilla epoch of every preset ~15 min per learner, the GTN modes ~1 min per learner
of every preset at test_size 2,000 (the big presets score ~1 s per 1,000 images).
"""
from __future__ import annotations

import statistics
import time
import warnings

warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

from sacred import Experiment
from sacred.utils import apply_backspaces_and_linefeeds
from tqdm import tqdm

from experiments.observers import attach_observers
from experiments.source_teacher import load_source_teacher
from gtn_core.device import resolve_device
from gtn_core.evaluate import accuracy
from gtn_core.evaluations.training_modes import MODES, VanillaTraining, check_count, check_modes, train_learner
from gtn_core.learners.presets import PRESETS, preset
from gtn_core.seeds import TRANSFER, seeded_generator, sub_stream

ex = Experiment("gtn_transfer")
ex.captured_out_filter = apply_backspaces_and_linefeeds


@ex.config
def config():
    source_run_id = None  # id of a COMPLETED mnist_experiment run of source_store
    source_store = None  # where that run is: a file store's folder or a mongodb:// URL; None: $GTN_RUNS_DIR or runs/
    presets = list(PRESETS)  # learner presets to train (gtn_core.learners.presets)
    modes = list(MODES)  # gtn (K steps) | short_gtn (the first short_steps) | vanilla (real data, Adam)
    learners = 5  # fresh learners per preset and mode
    short_steps = 10  # steps of the short_gtn learners (Willis's 10_gtn)
    vanilla_epochs = 1.0  # epochs of real data for the vanilla learners
    vanilla_batch_size = 128
    vanilla_lr = 1e-3  # Adam
    test_size = 2000  # first N test images score each learner
    data_root = None  # None: $GTN_DATA_DIR or <repo>/data
    device = "auto"
    progress = True
    seed = 0


@ex.named_config
def smoke():
    # Two cheap presets, two learners, a sliver of an epoch: the pipeline in seconds.
    presets = ["goodai", "linear"]
    learners = 2
    short_steps = 2
    vanilla_epochs = 0.02
    test_size = 500


def check_presets(presets) -> list[str]:
    """`presets` as a list; ValueError naming an unknown or missing preset."""
    presets = list(presets)
    unknown = [name for name in presets if name not in PRESETS]
    if unknown or not presets:
        raise ValueError(f"presets={presets!r}: expected a non-empty list of {', '.join(PRESETS)}")
    return presets


@ex.main
def main(_run, source_run_id, source_store, presets, modes, learners, short_steps, vanilla_epochs,
         vanilla_batch_size, vanilla_lr, test_size, data_root, device, progress, seed):
    """Train `learners` learners per preset and mode, score each, log every accuracy; return the means."""
    presets, modes = check_presets(presets), check_modes(modes, short_steps)
    check_count("learners", learners)
    if learners > 999:
        raise ValueError(f"learners={learners}: expected at most 999 per preset and mode")
    check_count("test_size", test_size)
    vanilla = VanillaTraining(vanilla_epochs, vanilla_batch_size, vanilla_lr)
    teacher, cfg, data, dataset = load_source_teacher(source_run_id, source_store, data_root, resolve_device(device))
    check_modes(modes, short_steps, cfg.inner_steps)
    images, labels = data.test_images[:test_size], data.test_labels[:test_size]
    rows = []
    cells = [(name, mode) for name in presets for mode in modes]
    with tqdm(total=len(cells) * learners, desc=f"transfer of run {source_run_id}", disable=not progress) as bar:
        for name, mode in cells:
            learner_cfg = preset(name, cfg.learner)
            for index in range(learners):
                # One stream per (preset, learner): a mode's learners start where another mode's do.
                generator = seeded_generator(seed, stream=sub_stream(TRANSFER, 1000 * PRESETS_ORDER[name] + index))
                started = time.perf_counter()
                learner, state = train_learner(mode, teacher, cfg, learner_cfg, generator, data.train_images,
                                               data.train_labels, short_steps, vanilla)
                score = accuracy(learner, state, images, labels, cfg.bn_mode, cfg.eval_batch_size)
                rows.append({"preset": name, "mode": mode, "learner": index, "accuracy": score,
                             "seconds": time.perf_counter() - started})
                _run.log_scalar(f"{mode}.{name}", score, index)
                bar.update(1)
    means = {f"{mode}.{name}": statistics.fmean(r["accuracy"] for r in rows if (r["preset"], r["mode"]) == (name, mode))
             for name, mode in cells}
    _run.info.update(rows=rows, dataset=dataset, teacher=cfg.teacher, inner_steps=cfg.inner_steps,
                     batch_size=cfg.batch_size, teacher_learner=dict(normalisation=cfg.learner.normalisation),
                     bn_mode=cfg.bn_mode)
    return means


PRESETS_ORDER = {name: position for position, name in enumerate(PRESETS)}


if __name__ == "__main__":
    attach_observers(ex)
    ex.run_commandline()
