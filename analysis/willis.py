"""The normalisation study and its evaluations (after K. Willis 2021, "Evaluating the Robustness of GTNs") as tidy
pandas DataFrames, read from `analysis.results.load_runs` output and the store.

    from analysis import results, willis
    store = results.open_store(runs_dir="runs")
    runs = results.load_runs(store)
    teachers = willis.normalisation_runs(runs)              # B's shape, every normalisation, COMPLETED and FAILED
    metrics = results.load_metrics(store, teachers.run_id, names=["test_accuracy", "meta_loss", "step_seconds"])
    table = willis.normalisation_table(teachers, metrics)    # per (dataset, normalisation)
    transfer = willis.load_transfer(store, runs)             # one row per transfer learner
    willis.transfer_table(transfer)                          # per (dataset, teacher normalisation, preset)
    robustness = willis.load_robustness(store, runs)         # one row per (learner, corruption, strength)
    willis.robustness_table(robustness)

Transfer and robustness runs name their teacher as the shuffle ablation does (`source_run_id` in `source_store`),
resolved by `results.source_of`; each row carries the teacher's dataset and normalisation.
"""
from __future__ import annotations

import pandas as pd

from analysis import results
from gtn_core.config import NORMALISATIONS
from gtn_core.evaluations.robustness import CORRUPTIONS
from gtn_core.evaluations.training_modes import MODES
from gtn_core.learners.presets import PRESETS

TRANSFER, ROBUSTNESS = "gtn_transfer", "gtn_robustness"
STUDY_EXPERIMENT = "B"  # the normalisation study's shape: batch 32, 10 inner steps
META_LOSS_WINDOW = 50  # outer steps at the end of a run over which the meta-loss spread is taken
# Each column's study order, for sorting rows and ordering hues.
ORDERS = {"normalisation": NORMALISATIONS, "preset": tuple(PRESETS), "mode": MODES, "corruption": CORRUPTIONS}
TRANSFER_COLUMNS = ["run_id", "source_run_id", "dataset", "normalisation", "short_steps", "preset", "mode", "learner",
                    "accuracy", "seconds"]
ROBUSTNESS_COLUMNS = ["run_id", "source_run_id", "dataset", "normalisation", "short_steps", "mode", "learner",
                      "corruption", "strength", "accuracy", "seconds"]
# Willis (2021), transfer table: test accuracy of learners of each preset trained on his GTN (trained for
# base_larger, 64 inner steps) for its first 10 steps (10_gtn), on real data (vanilla) and on the whole curriculum.
WILLIS_TRANSFER = pd.DataFrame(
    [("base", 0.16, 0.95, 0.22), ("base_fc", 0.97, 0.98, 0.98), ("base_larger", 0.97, 0.98, 0.98),
     ("base_larger2", 0.12, 0.96, 0.16), ("base_larger3", 0.72, 0.97, 0.91), ("base_larger3_global", 0.11, 0.96, 0.12),
     ("base_larger4", 0.09, 0.11, 0.09), ("linear", 0.62, 0.96, 0.61)],
    columns=["preset", "willis_short_gtn", "willis_vanilla", "willis_gtn"])


def in_study_order(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Rows sorted by the columns `by`, each in its study order (`ORDERS`) or else by value."""
    def rank(column: pd.Series) -> pd.Series:
        order = ORDERS.get(column.name)
        return column if order is None else column.map({value: i for i, value in enumerate(order)})
    return frame.sort_values(by, key=rank, kind="stable").reset_index(drop=True)


def normalisation_runs(runs: pd.DataFrame, **config) -> pd.DataFrame:
    """The normalisation study's teachers: GTNs at B's shape (full curriculum, learned inputs) of every learner
    normalisation, at each (dataset, outer_steps) where a non-batch learner trained (so the GoodAI study's longer B
    runs stay out); the newest COMPLETED or FAILED (diverged) run per (dataset, normalisation, seed). `config` narrows
    as in `results.select_runs` (e.g. outer_steps=200)."""
    chosen = results.select_runs(runs, latest=False, statuses=("COMPLETED", "FAILED"), teacher="gtn",
                                 curriculum="full", **config)
    chosen = chosen[(chosen.experiment == STUDY_EXPERIMENT) & (chosen.variant == "learned")]
    others = chosen[chosen.normalisation != results.DEFAULT_NORMALISATION]
    budgets = set(zip(others.dataset, others.outer_steps))
    in_budget = [budget in budgets for budget in zip(chosen.dataset, chosen.outer_steps)]
    chosen = chosen[pd.Series(in_budget, index=chosen.index, dtype=bool)]  # a bare empty list would select columns
    newest = chosen.sort_values("start_time", kind="stable").groupby(["dataset", "normalisation", "seed"]).tail(1)
    return in_study_order(newest, ["dataset", "normalisation", "seed"])


def run_statistics(metrics: pd.DataFrame, window: int = META_LOSS_WINDOW) -> pd.DataFrame:
    """Per run_id of tidy metrics: best test accuracy, the meta-loss sd over its last `window` outer steps
    (meta_loss_spread) and the mean seconds per outer step."""
    accuracy = metrics[metrics.name == "test_accuracy"].groupby("run_id").value.max().rename("best_accuracy")
    loss = metrics[metrics.name == "meta_loss"]
    last = loss[loss.step > loss.groupby("run_id").step.transform("max") - window]
    spread = last.groupby("run_id").value.std().rename("meta_loss_spread")
    seconds = metrics[metrics.name == "step_seconds"].groupby("run_id").value.mean().rename("step_seconds")
    return pd.concat([accuracy, spread, seconds], axis=1).rename_axis("run_id").reset_index()


def normalisation_table(runs: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, normalisation) of `normalisation_runs`: seeds, completed and diverged (FAILED) runs, and over
    the completed ones the final test accuracy mean and sd, the best accuracy mean, the meta-loss spread (sd over the
    last `META_LOSS_WINDOW` outer steps, mean over seeds), seconds per outer step and wall minutes."""
    keys = ["dataset", "normalisation"]
    stats = runs.merge(run_statistics(metrics), on="run_id", how="left").assign(
        completed=lambda frame: frame.status == "COMPLETED", diverged=lambda frame: frame.status == "FAILED")
    counts = stats.groupby(keys).agg(seeds=("seed", "nunique"), completed=("completed", "sum"),
                                     diverged=("diverged", "sum"))
    finished = stats[stats.completed].groupby(keys).agg(
        accuracy_mean=("final_accuracy", "mean"), accuracy_sd=("final_accuracy", "std"),
        best_accuracy_mean=("best_accuracy", "mean"), meta_loss_spread=("meta_loss_spread", "mean"),
        step_seconds=("step_seconds", "mean"), wall_minutes=("wall_seconds", lambda seconds: seconds.mean() / 60))
    return in_study_order(counts.join(finished).reset_index(), keys)


def _evaluation_rows(store: results.Store, runs: pd.DataFrame, name: str) -> pd.DataFrame:
    """The info rows of every COMPLETED run of evaluation experiment `name`, each with the run's id and
    short_steps and its teacher's id, dataset and normalisation (None when the store does not hold the teacher)."""
    training = runs[runs.name == results.TRAINING].sort_values("start_time", kind="stable")
    teachers, by_id = list(training.itertuples()), training.set_index("run_id")
    in_mongo = isinstance(store, results.MongoStore)
    frames = []
    for run in runs[(runs.name == name) & (runs.status == "COMPLETED")].itertuples():
        rows = store.info(run.run_id).get("rows")
        if not rows:
            raise ValueError(f"{name} run {run.run_id} of the {store.label} is COMPLETED but its info has no rows")
        source_id = results.source_of(run, teachers, in_mongo)
        frames.append(pd.DataFrame(rows).assign(
            run_id=run.run_id, source_run_id=source_id, short_steps=run.config.get("short_steps"),
            dataset=by_id.dataset.get(source_id), normalisation=by_id.normalisation.get(source_id)))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def load_transfer(store: results.Store, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per learner of every COMPLETED transfer run: its preset, mode (gtn, short_gtn, vanilla), accuracy
    and seconds, with the run's short_steps and its teacher's id (source_run_id), dataset and normalisation."""
    rows = _evaluation_rows(store, runs, TRANSFER)
    if rows.empty:
        return pd.DataFrame(columns=TRANSFER_COLUMNS).astype({"accuracy": "float64", "seconds": "float64"})
    return rows[TRANSFER_COLUMNS].astype({"accuracy": "float64", "seconds": "float64", "short_steps": "Int64"})


def with_vanilla(transfer: pd.DataFrame) -> pd.DataFrame:
    """Transfer rows with the vanilla learners (real data: one run per dataset, beside one teacher, independent of
    it) joined to every teacher normalisation of their dataset."""
    teachers = transfer[["dataset", "normalisation"]].drop_duplicates()
    vanilla = transfer[transfer["mode"] == "vanilla"].drop(columns="normalisation")
    joined = teachers.merge(vanilla, on="dataset")[transfer.columns]
    return pd.concat([transfer[transfer["mode"] != "vanilla"], joined], ignore_index=True)


def transfer_table(transfer: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, teacher normalisation, preset): learner accuracy mean and sd per mode (`with_vanilla`), beside
    Willis's values (`WILLIS_TRANSFER`; NaN for presets outside his table)."""
    keys = ["dataset", "normalisation", "preset"]
    stats = with_vanilla(transfer).groupby([*keys, "mode"]).accuracy.agg(mean="mean", sd="std").unstack("mode")
    stats.columns = [f"{mode}_{stat}" for stat, mode in stats.columns]
    columns = [f"{mode}_{stat}" for mode in MODES for stat in ("mean", "sd")]
    table = stats.reindex(columns=columns).reset_index().merge(WILLIS_TRANSFER, on="preset", how="left")
    return in_study_order(table, keys)


def load_robustness(store: results.Store, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (learner, corruption, strength) of every COMPLETED robustness run, with the learner's wall
    seconds (the runs' "seconds" rows, as a column), the run's short_steps and its teacher's id, dataset and
    normalisation."""
    rows = _evaluation_rows(store, runs, ROBUSTNESS)
    if rows.empty:
        return pd.DataFrame(columns=ROBUSTNESS_COLUMNS).astype({"accuracy": "float64", "strength": "float64"})
    timed = rows.corruption == "seconds"
    seconds = rows[timed][["run_id", "mode", "learner", "accuracy"]].rename(columns={"accuracy": "seconds"})
    curves = rows[~timed].merge(seconds, on=["run_id", "mode", "learner"], how="left")
    return curves[ROBUSTNESS_COLUMNS].astype({"accuracy": "float64", "strength": "float64", "short_steps": "Int64"})


def robustness_table(robustness: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, teacher normalisation, mode, corruption, strength): learners, accuracy mean and sd."""
    keys = ["dataset", "normalisation", "mode", "corruption", "strength"]
    table = robustness.groupby(keys).accuracy.agg(learners="count", accuracy_mean="mean", accuracy_sd="std")
    return in_study_order(table.reset_index(), keys)
