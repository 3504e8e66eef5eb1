"""The studies `run_tasks.py` runs, as data: each study's arms (config updates per cell), shapes, outer steps and
the evaluation runs of its finished teachers, turned into the `Task`s of its grid.

    from experiments import run_tasks, studies
    args = run_tasks.build_parser().parse_args(["--study", "normalisation", "--seeds", "3"])
    args.gan_source = {}                        # the GAN study's DCGAN (run_tasks.gan_phase sets it)
    grid = studies.training_tasks(args)         # shape -> seed -> arm
"""
from __future__ import annotations

import argparse

from experiments.study_plan import (ABLATION, NAS_PROXY, ROBUSTNESS, TRAINING, TRANSFER, TUNED_SGD, Task,
                                    expected_config)
from gtn_core.config import NORMALISATIONS

EXPERIMENTS = {"a": "experiment_a", "b": "experiment_b", "c": "experiment_c", "paper": "paper"}
PROFILES = ("full", "smoke")
# The strength study's arms (the curriculum finding at full strength): today's defaults (cosine decay, one learned
# lr/momentum per inner step, N(0, 1) inputs), one of GoodAI's choices per arm, and GoodAI's first three together.
# kl_loss: GoodAI's inner loss, KL divergence to one-hot targets averaged over the B x 10 entries, is cross-entropy
# / 10, i.e. a 10x smaller inner lr; with the lr learned in log space that is exactly a 10x smaller initial lr
# (tests/test_unroll.py). generator_lr: GoodAI's one Adam lr, 0.01, also for the generator's weights (ours 1e-3).
STRENGTH_LEVERS = {"cosine": {}, "constant": {"lr_schedule": "constant"}, "shared": {"inner_schedule": "shared"},
                   "uniform01": {"noise_distribution": "uniform01"},
                   "kl_loss": {"inner_lr_init": 0.002}, "generator_lr": {"teacher_lr": 0.01},
                   "goodai": {"lr_schedule": "constant", "inner_schedule": "shared",
                              "noise_distribution": "uniform01"}}
# Each study's arms: (label, experiment module, config updates); goodai's arms are the --variants.
STUDY_ARMS = {
    "curricula": [("full", TRAINING, {"curriculum": "full", "variant": "learned"}),
                  ("shuffled_batch", TRAINING, {"curriculum": "shuffled_batch", "variant": "learned"}),
                  ("all_shuffled", TRAINING, {"curriculum": "all_shuffled", "variant": "learned"}),
                  ("none", TRAINING, {"curriculum": "none", "variant": "random"})],
    "normalisation": [(name, TRAINING, {"learner.normalisation": name}) for name in NORMALISATIONS],
    "nas": [("learned", TRAINING, {"curriculum": "full", "variant": "learned"})],
    "gan": [("gtn", TRAINING, {"curriculum": "full", "variant": "learned"}),
            ("real_data", TRAINING, {"teacher": "real_data"}),
            ("distillation", TRAINING, {"teacher": "distillation"}),
            ("gan", TRAINING, {"teacher": "gan"}),
            ("gan_meta_trained", TRAINING, {"teacher": "gan", "gan.meta_train": True})],
    "baselines": [("full", TRAINING, {"curriculum": "full", "variant": "learned"}),
                  ("real_data", TRAINING, {"teacher": "real_data"}),
                  ("tuned_sgd", TUNED_SGD, {}),
                  ("distillation", TRAINING, {"teacher": "distillation"})],
    "strength": [(arm, TRAINING, {"curriculum": "full", "variant": "learned", **levers})
                 for arm, levers in STRENGTH_LEVERS.items()],
}
STUDIES = ("goodai", *STUDY_ARMS)
DEFAULT_SHAPES = {"goodai": ["a", "b", "c"], "curricula": ["b"], "baselines": ["b"], "normalisation": ["b"],
                  "nas": ["a"], "gan": ["a"], "strength": ["c"]}
# Studies whose cells train for another number of outer steps than the experiment's default (--outer-steps
# overrides; the smoke profile keeps its own): the normalisation study's 4 arms x 3 seeds fit in about 45 minutes on
# 2 cores at 200; the strength study trains as long as GoodAI did before their ablation, or nearly.
STUDY_OUTER_STEPS = {"normalisation": 200, "gan": 200, "strength": 2000}
# The strength study keeps this many teacher snapshots per run, evenly spaced (the smoke profile: 2), and runs the
# shuffle ablation on each, so the drop can be followed over training.
STRENGTH_SNAPSHOTS, SMOKE_SNAPSHOTS = 10, 2
# The normalisation study's evaluations of its seed-0 batch and weight_mean_only teachers (B's shape: K = 10, so the
# short learners take the first 5 steps): transfer to every preset (5 learners each), robustness (5 per mode); the
# real-data learners of every preset do not depend on the teacher, so they run once, beside the batch teacher
# (2 per preset: one epoch of every preset costs ~15 min on 2 cores).
SHORT_STEPS = 5
NORMALISATION_EVALUATIONS = {
    "batch": [("transfer", TRANSFER, {"modes": ["gtn", "short_gtn"], "short_steps": SHORT_STEPS}),
              ("vanilla", TRANSFER, {"modes": ["vanilla"], "learners": 2}),
              ("robustness", ROBUSTNESS, {"short_steps": SHORT_STEPS})],
    "weight_mean_only": [("transfer", TRANSFER, {"modes": ["gtn", "short_gtn"], "short_steps": SHORT_STEPS}),
                         ("robustness", ROBUSTNESS, {"short_steps": SHORT_STEPS})]}


def study_arms(args: argparse.Namespace) -> list[tuple[str, str, dict]]:
    """The study's arms (label, experiment module, config updates), only those of --arms when given; SystemExit
    naming an arm the study does not have."""
    if args.study == "goodai":
        arms = [(variant, TRAINING, {"variant": variant}) for variant in args.variants]
    else:
        arms = STUDY_ARMS[args.study]
    if getattr(args, "arms", None) is None:
        return arms
    labels = [label for label, _, _ in arms]
    unknown = [arm for arm in args.arms if arm not in labels]
    if unknown:
        raise SystemExit(f"--arms {','.join(args.arms)}: the {args.study} study has no arm {', '.join(unknown)}; "
                         f"expected a subset of {', '.join(labels)}")
    return [arm for arm in arms if arm[0] in args.arms]


def snapshot_steps(training: Task) -> list[int]:
    """The outer steps at which a strength-study cell keeps a teacher snapshot (every `snapshot_every`, its config's)."""
    config = expected_config(training)
    return list(range(config["snapshot_every"], config["outer_steps"] + 1, config["snapshot_every"]))


def snapshot_every(task: Task, snapshots: int) -> int:
    """Outer steps between a strength-study cell's `snapshots` snapshots, the last at its last step; SystemExit
    naming the cell when its outer steps are not a multiple of `snapshots` (the final teacher would be skipped)."""
    outer_steps = expected_config(task)["outer_steps"]
    if outer_steps % snapshots:
        raise SystemExit(f"cell {task.label!r}: outer_steps={outer_steps}; the strength study keeps {snapshots} "
                         f"evenly spaced snapshots, so expected a multiple of {snapshots} (--outer-steps)")
    return outer_steps // snapshots


def training_tasks(args: argparse.Namespace) -> list[Task]:
    """One task per (shape, seed, arm) of the study's grid, shapes outermost, then seeds (every arm's seed 0 first)."""
    smoke = ("smoke",) if args.profile == "smoke" else ()
    tasks = []
    for experiment in args.only or DEFAULT_SHAPES[args.study]:
        for seed in range(args.seeds):
            for arm, module, arm_updates in study_arms(args):
                updates = {**arm_updates, "seed": seed, "dataset": args.dataset}
                outer_steps = args.outer_steps or (STUDY_OUTER_STEPS.get(args.study) if not smoke else None)
                if outer_steps is not None and module == TRAINING:
                    updates["outer_steps"] = outer_steps
                if args.meta_batch is not None and module == TRAINING:
                    updates["meta_batch"] = args.meta_batch
                if arm_updates.get("teacher") == "gan":
                    updates.update(args.gan_source)  # the GAN the study trained first (gan_phase)
                # smoke first: its tiny networks stay, the experiment's batch size and step count win
                task = Task(f"{experiment} {arm} s{seed}", module, (*smoke, EXPERIMENTS[experiment]), updates)
                if args.study == "strength":
                    every = snapshot_every(task, SMOKE_SNAPSHOTS if smoke else STRENGTH_SNAPSHOTS)
                    task = Task(task.label, module, task.named_configs, {**updates, "snapshot_every": every})
                tasks.append(task)
    return tasks


def evaluation_tasks(training: Task, reference: dict, args: argparse.Namespace) -> list[Task]:
    """The evaluation runs of the finished teacher of `training` that `reference` names: the goodai study's shuffle
    ablation of every teacher, the strength study's of every snapshot (and of the last one with the learned per-step
    lr/momentum moving with the batches), the NAS proxy of the nas study's seed-0 teacher, the normalisation study's
    transfer and robustness of its seed-0 teachers."""
    smoke = ("smoke",) if args.profile == "smoke" else ()
    if args.study == "goodai":
        return [Task(f"{training.label} shuffle", ABLATION, smoke, dict(reference))]
    if args.study == "strength":
        steps = snapshot_steps(training)
        tasks = [Task(f"{training.label} shuffle@{step}", ABLATION, smoke, {**reference, "source_step": step})
                 for step in steps]
        if expected_config(training)["inner_schedule"] == "per_step":  # with one shared lr, moving it changes nothing
            tasks.append(Task(f"{training.label} shuffle+schedule@{steps[-1]}", ABLATION, smoke,
                              {**reference, "source_step": steps[-1], "move_schedule": True}))
        return tasks
    if args.study == "nas" and training.updates["seed"] == 0:
        return [Task(f"{training.label} nas", NAS_PROXY, smoke, dict(reference))]
    if args.study == "normalisation" and training.updates["seed"] == 0:
        arm = NORMALISATION_EVALUATIONS.get(training.updates["learner.normalisation"], [])
        return [Task(f"{training.label} {suffix}", module, smoke, {**reference, **updates})
                for suffix, module, updates in arm]
    return []
