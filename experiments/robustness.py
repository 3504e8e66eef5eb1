"""Robustness of GTN-trained learners (after Willis 2021): accuracy under noise, blur, iterated FGSM and an
L-BFGS-style attack, for learners trained on the teacher's whole curriculum (`gtn`), on its first `short_steps`
steps (`short_gtn`, Willis's 10_gtn) and on real data (`vanilla`: Adam, `vanilla_epochs` epochs of batch 128).

For a finished training run of `mnist_experiment.py`, `learners` learners per mode (the teacher's own learner, or
the preset `learner`) are scored at every strength of every corruption (gtn_core.evaluations.robustness):
Gaussian noise clip(x + beta z) and Gaussian blur of std beta pixels on the first `test_size` test images (10k),
iterated FGSM (30 steps of beta, foolbox) and the L-BFGS-style attack (30 steps of
x <- clip(x + step (grad CE - grad ||x - x0|| / beta))) on the first `attack_size` (each attacked image costs 30
forward-backward passes per strength). Strength 0 is the clean accuracy. One row per (mode, learner, corruption,
strength) in the run's info; the curves are logged as `<corruption>.<mode>.<learner>` (step = strength index).

    python experiments/robustness.py with source_run_id=3
    python experiments/robustness.py with source_run_id=3 learner=base_fc learners=3
    python experiments/robustness.py with source_run_id=3 'strengths={"blur": [0, 1, 2]}'
    python experiments/robustness.py with smoke source_run_id=1
"""
from __future__ import annotations

import time
import warnings

warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

from sacred import Experiment
from sacred.utils import apply_backspaces_and_linefeeds
from tqdm import tqdm

from experiments.observers import attach_observers
from experiments.source_teacher import load_source_teacher
from gtn_core.device import resolve_device
from gtn_core.evaluations.robustness import CORRUPTIONS, corrupted_accuracy
from gtn_core.evaluations.training_modes import MODES, VanillaTraining, check_count, check_modes, train_learner
from gtn_core.learners.presets import preset
from gtn_core.seeds import ROBUSTNESS, seeded_generator, sub_stream
from gtn_core.unroll import LearnerState, learner_logits

ex = Experiment("gtn_robustness")
ex.captured_out_filter = apply_backspaces_and_linefeeds

ATTACKS = ("fgsm", "lbfgs")  # scored on the first attack_size test images


@ex.config
def config():
    source_run_id = None  # id of a COMPLETED mnist_experiment run of source_store
    source_store = None  # where that run is: a file store's folder or a mongodb:// URL; None: $GTN_RUNS_DIR or runs/
    learner = None  # None: the teacher's own learner; else a preset name (gtn_core.learners.presets)
    modes = list(MODES)  # gtn | short_gtn | vanilla
    learners = 5  # learners per mode
    short_steps = 10  # steps of the short_gtn learners (Willis's 10_gtn)
    vanilla_epochs = 1.0
    vanilla_batch_size = 128
    vanilla_lr = 1e-3
    strengths = {"noise": [0.0, 0.2, 0.4, 0.6, 0.8, 1.0],  # std of the added noise (images in [-1, 1])
                 "blur": [0.0, 0.5, 1.0, 1.5, 2.0, 3.0],  # std of the blur, pixels
                 "fgsm": [0.0, 0.001, 0.002, 0.004, 0.007, 0.01],  # step; 30 steps, L-inf radius 30 x beta
                 "lbfgs": [0.0, 0.25, 0.5, 1.0, 2.0, 4.0]}  # inverse weight of the distance penalty (< step: overshoots)
    lbfgs_step_size = 1.0  # the L-BFGS-style attack's step (0.01 moves a pixel by ~3e-3 in 30 steps: no attack)
    test_size = 10000  # first N test images for noise and blur
    attack_size = 200  # first N test images for the attacks (~6 s per 200 images and strength on one core)
    data_root = None
    device = "auto"
    progress = True
    seed = 0


@ex.named_config
def smoke():
    learners = 2
    short_steps = 2
    vanilla_epochs = 0.02
    strengths = {"noise": [0.0, 0.5], "blur": [0.0, 1.0], "fgsm": [0.0, 0.01], "lbfgs": [0.0, 2.0]}
    test_size = 500
    attack_size = 100


def check_strengths(strengths) -> dict[str, list[float]]:
    """{corruption: strengths}; ValueError naming an unknown corruption or a bad strength, before any work."""
    if not isinstance(strengths, dict) or not strengths:
        raise ValueError(f"strengths={strengths!r}: expected a dict of corruption -> list of strengths")
    unknown = [name for name in strengths if name not in CORRUPTIONS]
    if unknown:
        raise ValueError(f"strengths: unknown corruption(s) {', '.join(map(repr, unknown))}; expected some of "
                         f"{', '.join(CORRUPTIONS)}")
    for name, values in strengths.items():
        if not isinstance(values, (list, tuple)) or not values or any(
                isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0 for v in values):
            raise ValueError(f"strengths[{name!r}]={values!r}: expected a non-empty list of numbers >= 0")
    return {name: [float(v) for v in values] for name, values in strengths.items()}


@ex.main
def main(_run, source_run_id, source_store, learner, modes, learners, short_steps, vanilla_epochs,
         vanilla_batch_size, vanilla_lr, strengths, lbfgs_step_size, test_size, attack_size, data_root, device,
         progress, seed):
    """Train the learners of every mode, score each under every corruption and strength; return the mean curves."""
    modes, strengths = check_modes(modes, short_steps), check_strengths(strengths)
    for name, value in (("learners", learners), ("test_size", test_size), ("attack_size", attack_size)):
        check_count(name, value)
    if isinstance(lbfgs_step_size, bool) or not isinstance(lbfgs_step_size, (int, float)) or not lbfgs_step_size > 0:
        raise ValueError(f"lbfgs_step_size={lbfgs_step_size!r}: expected a positive number")
    learner_cfg = None if learner is None else preset(learner)  # an unknown preset fails before any work
    vanilla = VanillaTraining(vanilla_epochs, vanilla_batch_size, vanilla_lr)
    teacher, cfg, data, dataset = load_source_teacher(source_run_id, source_store, data_root, resolve_device(device))
    check_modes(modes, short_steps, cfg.inner_steps)
    learner_cfg = cfg.learner if learner is None else preset(learner, cfg.learner)
    rows = []
    with tqdm(total=len(modes) * learners, desc=f"robustness of run {source_run_id}", disable=not progress) as bar:
        for mode in modes:
            for index in range(learners):
                generator = seeded_generator(seed, stream=sub_stream(ROBUSTNESS, index))  # paired across modes
                started = time.perf_counter()
                network, state = train_learner(mode, teacher, cfg, learner_cfg, generator, data.train_images,
                                               data.train_labels, short_steps, vanilla)
                frozen = LearnerState({k: v.detach() for k, v in state.params.items()}, state.buffers)
                classifier = lambda x, network=network, frozen=frozen: learner_logits(network, frozen, x, cfg.bn_mode)
                for corruption, values in strengths.items():
                    size = attack_size if corruption in ATTACKS else test_size
                    scores = corrupted_accuracy(classifier, data.test_images[:size], data.test_labels[:size],
                                                corruption, values, generator, cfg.eval_batch_size,
                                                lbfgs_step_size)
                    for position, (beta, score) in enumerate(zip(values, scores)):
                        rows.append({"mode": mode, "learner": index, "corruption": corruption, "strength": beta,
                                     "accuracy": score})
                        _run.log_scalar(f"{corruption}.{mode}.{index}", score, position)
                rows.append({"mode": mode, "learner": index, "corruption": "seconds", "strength": 0.0,
                             "accuracy": time.perf_counter() - started})
                bar.update(1)
    _run.info.update(rows=rows, dataset=dataset, learner=learner or "teacher's", inner_steps=cfg.inner_steps,
                     normalisation=learner_cfg.normalisation, bn_mode=cfg.bn_mode)
    return {f"{c}.{m}": [sum(r["accuracy"] for r in rows if (r["mode"], r["corruption"], r["strength"]) == (m, c, b))
                         / learners for b in strengths[c]] for m in modes for c in strengths}


if __name__ == "__main__":
    attach_observers(ex)
    ex.run_commandline()
