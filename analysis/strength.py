"""The strength study (`run_tasks.py --study strength`): the shuffle drop of teacher snapshots over meta-training,
per configuration lever, as tidy pandas DataFrames.

    from analysis import results, strength
    store = results.open_store(runs_dir="runs")
    runs = results.load_runs(store)
    teachers = strength.strength_runs(runs)                      # training runs that kept snapshots, with their arm
    ablation = results.load_ablation(store, runs, snapshots=True)
    drops = strength.drop_over_training(teachers, ablation)      # per (teacher, snapshot step)
    strength.drop_table(teachers, ablation)                      # per (dataset, arm, step): over seeds, Wilcoxon
    strength.final_summary(teachers, ablation)                   # per (dataset, arm): last snapshot, accuracy cost

A teacher's arm is named by its levers (`ARMS`: the values of every key an arm of the study sets, lr_schedule,
inner_schedule, noise_distribution, inner_lr_init, teacher_lr), so runs trained outside the study with the same values
read as the same arm.
"""
from __future__ import annotations

import pandas as pd

from analysis import paired, results
from experiments.studies import STRENGTH_LEVERS
from gtn_core.config import GTNConfig, config_to_dict
from tracking.stored_config import upgrade_config

LEVERS = tuple(dict.fromkeys(lever for levers in STRENGTH_LEVERS.values() for lever in levers))
_DEFAULTS = config_to_dict(GTNConfig())
# The study's arms by their lever values (experiments.studies.STRENGTH_LEVERS over the core's defaults).
ARMS = {tuple({**_DEFAULTS, **levers}[lever] for lever in LEVERS): arm for arm, levers in STRENGTH_LEVERS.items()}
ARM_ORDER = tuple(STRENGTH_LEVERS)
# A teacher group: arms of different lengths stay apart (a snapshot at step 1,000 is the end of a 1,000-step cosine
# schedule but the middle of a 2,000-step one).
KEYS = ["dataset", "experiment", "outer_steps", "arm"]


def arm_of(config: dict) -> str:
    """The strength-study arm of a training config (its lever values joined by '/' outside `ARMS`)."""
    values = tuple(upgrade_config(config)[lever] for lever in LEVERS)
    return ARMS.get(values, "/".join(map(str, values)))


def strength_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """COMPLETED GTN training runs (full curriculum, learned inputs, batch-normalised learner) that kept teacher
    snapshots, with their arm."""
    chosen = results.select_runs(runs, latest=False, snapshots=True, teacher="gtn", curriculum="full",
                                 normalisation=results.DEFAULT_NORMALISATION)
    chosen = results.where_config(chosen[chosen.variant == "learned"],
                                  lambda config: config.get("snapshot_every") is not None)
    return chosen.assign(arm=[arm_of(config) for config in chosen.config]).reset_index(drop=True)


def _in_arm_order(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Rows sorted by `by`, the arm column in study order."""
    rank = {arm: i for i, arm in enumerate(ARM_ORDER)}
    return frame.sort_values(by, key=lambda c: c.map(lambda a: rank.get(a, len(rank))) if c.name == "arm" else c,
                             kind="stable").reset_index(drop=True)


def _snapshot_learners(teachers: pd.DataFrame, ablation: pd.DataFrame, moved: bool | None = False) -> pd.DataFrame:
    """The snapshot-ablation learners of `teachers`, with each teacher's arm and seed: those whose schedule stayed in
    time order (`moved` False), moved with the batches (True) or both (None)."""
    learners = ablation[ablation.source_step.notna() & ablation.source_run_id.isin(teachers.run_id)]
    if moved is not None:
        learners = learners[learners.move_schedule == moved]
    return learners.drop(columns=["experiment", "dataset", "seed"]).merge(
        teachers[["run_id", "arm", "experiment", "dataset", "outer_steps", "seed"]].rename(
            columns={"run_id": "source_run_id"}),
        on="source_run_id")


def drop_over_training(teachers: pd.DataFrame, ablation: pd.DataFrame) -> pd.DataFrame:
    """Per (teacher, snapshot step): mean accuracy of its learners in the learned and shuffled order, the drop
    (learned - shuffled means) and the Wilcoxon test of its paired learners (`paired.paired_test`)."""
    drops = paired.order_drops(_snapshot_learners(teachers, ablation), [*KEYS, "seed", "source_run_id", "source_step"])
    return _in_arm_order(drops, [*KEYS, "source_step", "seed"])


def drop_table(teachers: pd.DataFrame, ablation: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, experiment, arm, snapshot step): seeds, the drop's mean and sd over seeds, the learned-order
    accuracy's mean and sd, the shuffled mean, and the Wilcoxon test over every seed's paired learners together
    (p, effect size r)."""
    table = paired.drop_summary(_snapshot_learners(teachers, ablation), [*KEYS, "source_step"],
                                ["seed", "source_run_id"])
    return _in_arm_order(table, [*KEYS, "source_step"])


def last_snapshots(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of a `drop_table` at each group's (`KEYS`) last snapshot step."""
    return table[table.source_step == table.groupby(KEYS).source_step.transform("max")]


def final_summary(teachers: pd.DataFrame, ablation: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, experiment, outer_steps, arm): its last ablated snapshot's `drop_table` row beside the final
    full-test accuracy (mean, sd) and mean wall minutes of the teachers ablated there, and what the arm costs in
    accuracy against `cosine` of the same dataset, shape and length (`accuracy_cost`: cosine's mean minus the arm's;
    NaN without such a cosine)."""
    table = drop_table(teachers, ablation)
    last = last_snapshots(table)
    ablated = _snapshot_learners(teachers, ablation).merge(last[[*KEYS, "source_step"]], on=[*KEYS, "source_step"])
    chosen = teachers[teachers.run_id.isin(ablated.source_run_id)]
    accuracy = chosen.groupby(KEYS).agg(final_accuracy_mean=("final_accuracy", "mean"),
                                        final_accuracy_sd=("final_accuracy", "std"),
                                        wall_minutes=("wall_seconds", "mean")).reset_index()
    accuracy["wall_minutes"] /= 60
    summary = last.merge(accuracy, on=KEYS, how="left")
    shape = [key for key in KEYS if key != "arm"]
    cosine = summary[summary.arm == "cosine"][[*shape, "final_accuracy_mean"]]
    summary = summary.merge(cosine.rename(columns={"final_accuracy_mean": "cosine_accuracy"}), on=shape, how="left")
    summary["accuracy_cost"] = summary.pop("cosine_accuracy") - summary.final_accuracy_mean
    return _in_arm_order(summary, KEYS)


def goodai_reference(dataset: str, experiment: str) -> tuple[float, float] | None:
    """GoodAI's published (final accuracy, shuffle drop) of their `learned` teacher at `experiment`'s shape on
    `dataset`, None where they published none (MNIST A, B and C only); the drop is approximate: their final accuracy
    minus their shuffled median (`results.REFERENCE`)."""
    reference = results.REFERENCE
    row = reference[(reference.experiment == experiment) & (reference.variant == "learned")]
    if dataset != "mnist" or row.empty:
        return None
    accuracy, shuffled = row.iloc[0][["reference_accuracy", "reference_shuffled_median"]]
    return float(accuracy), float(accuracy - shuffled)


def closest_to_goodai(table: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, experiment) that GoodAI published: the arm whose drop at its last snapshot (a `drop_table`) is
    closest to GoodAI's, with GoodAI's drop and accuracy beside it."""
    final = last_snapshots(table)
    reference = [goodai_reference(dataset, experiment) for dataset, experiment in zip(final.dataset, final.experiment)]
    final = final[[r is not None for r in reference]]
    reference = [r for r in reference if r is not None]
    final = final.assign(goodai_accuracy=[r[0] for r in reference], goodai_drop=[r[1] for r in reference])
    final = final.assign(distance=(final.drop_mean - final.goodai_drop).abs())
    closest = final.loc[final.groupby(["dataset", "experiment"]).distance.idxmin()]
    return closest.drop(columns="distance").reset_index(drop=True)


def learned_schedules(store: results.Store, teachers: pd.DataFrame) -> pd.DataFrame:
    """What each teacher learned besides its data: one row per (teacher, inner step) with its final inner lr and
    momentum (the run's info, `final_inner_lrs` / `final_inner_momenta`) and the teacher's dataset, arm and seed."""
    rows = []
    for teacher in teachers.itertuples():
        info = store.info(teacher.run_id)
        for step, (lr, momentum) in enumerate(zip(info.get("final_inner_lrs", []),
                                                  info.get("final_inner_momenta", [])), start=1):
            rows.append((teacher.dataset, teacher.experiment, teacher.outer_steps, teacher.arm, teacher.seed,
                         teacher.run_id, step, lr, momentum))
    frame = pd.DataFrame(rows, columns=[*KEYS, "seed", "run_id", "inner_step", "lr", "momentum"])
    return _in_arm_order(frame, [*KEYS, "seed", "inner_step"])


def schedule_table(teachers: pd.DataFrame, ablation: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, experiment, arm, snapshot step) whose ablation also ran with each step's learned lr and
    momentum moving with its batch (`results.load_ablation(..., moved_schedule=True)`): the shuffle drop with the
    schedule kept in time order and with it moved, mean and sd over seeds, each with its pooled Wilcoxon test."""
    learners = _snapshot_learners(teachers, ablation, moved=None)
    moved = learners[learners.move_schedule]
    by, teacher = [*KEYS, "source_step"], ["seed", "source_run_id"]
    if moved.empty:
        return pd.DataFrame(columns=[*by, "seeds", "kept_drop_mean", "kept_drop_sd", "kept_wilcoxon_p",
                                     "moved_drop_mean", "moved_drop_sd", "moved_wilcoxon_p", "learned_mean"])
    snapshots = moved[["source_run_id", "source_step"]].drop_duplicates()
    kept = learners[~learners.move_schedule].merge(snapshots, on=["source_run_id", "source_step"])
    columns = ["seeds", "drop_mean", "drop_sd", "wilcoxon_p", "effect_size_r", "pairs"]
    both = paired.drop_summary(kept, by, teacher)[[*by, "learned_mean", *columns]].rename(
        columns={column: f"kept_{column}" for column in columns}).merge(
        paired.drop_summary(moved, by, teacher)[[*by, *columns]].rename(
            columns={column: f"moved_{column}" for column in columns}), on=by)
    both = both.rename(columns={"moved_seeds": "seeds"}).drop(columns="kept_seeds")
    return _in_arm_order(both, by)
