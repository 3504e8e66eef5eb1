"""Reading the study back as tidy pandas DataFrames, from the Sacred file store or from MongoDB.

    from analysis import results
    store = results.open_store()                       # $GTN_MONGO_URL if set, else $GTN_RUNS_DIR or runs/
    store = results.open_store(runs_dir="runs")        # a file store
    store = results.open_store(mongo_url="mongodb://127.0.0.1:27018/gtn_lab")
    runs = results.load_runs(store)                    # one row per run
    cells = results.select_runs(runs, dataset="mnist") # COMPLETED training runs, the newest per cell and seed
    cells = results.select_runs(runs, normalisation="batch")  # the learner's normalisation (a column, like teacher)
    curves = results.load_metrics(store, cells.run_id, names=["test_accuracy"])
    ablation = results.load_ablation(store)            # one row per ablation learner
    png = store.artifact(cells.run_id.iloc[0], "curriculum.png")

The stores are read by `tracking.stores` (the same reader resume and the ablation use). Run ids are the store's
own: in MongoDB a run's id differs from its file-store id (`file_store_id` column); the shuffle ablation's
`source_run_id` (and a resumed run's `resume_from`) is an id of the store named beside it, and `load_ablation`
(and `load_metrics`' stitching) resolve both kinds.
Experiments are named from their shape: A = (batch 32, 20 inner steps), B = (32, 10), C = (16, 10).
A training run's `normalisation` is its learner's (batch unless the normalisation study changed it; None for other
runs); the GoodAI, curricula and baselines studies read only batch-normalised learners (`default_learner`).
"""
from __future__ import annotations

import pandas as pd

from analysis import paired

from gtn_core.config import LearnerConfig
from tracking.stored_config import upgrade_config
from tracking.stores import (FileStore, MongoStore, RunRecord, Store, StoreError, open_store,  # noqa: F401
                             referenced_run, resume_chain)

TRAINING, ABLATION, TUNED_SGD = "gtn_mnist", "gtn_shuffle_ablation", "gtn_tuned_sgd"
# (batch_size, inner_steps) -> experiment; "paper" is Such et al.'s MNIST shape (Fig. 1c)
EXPERIMENT_SHAPES = {(32, 20): "A", (32, 10): "B", (16, 10): "C", (128, 32): "paper"}
VARIANT_ORDER = ("learned", "random_fixed", "random")
CURRICULUM_ORDER = ("full", "shuffled_batch", "all_shuffled", "none")
# A meta-trained GAN teacher (`gan.meta_train`) is its own arm: teacher "gan_meta_trained".
TEACHER_ORDER = ("gtn", "real_data", "tuned_sgd", "distillation", "gan", "gan_meta_trained")
GAN_TEACHERS = ("gan", "gan_meta_trained")
# The learner's normalisation of every study but the normalisation study (the core's default).
DEFAULT_NORMALISATION = LearnerConfig().normalisation
CELL_KEYS = ("experiment", "teacher", "curriculum", "variant", "normalisation", "dataset", "seed")
COLUMN_KEYS = ("teacher", "curriculum", "normalisation")  # select_runs selects these on the runs' columns
RUN_COLUMNS = ["run_id", "file_store_id", "name", "status", "experiment", "teacher", "curriculum", "variant",
               "normalisation", "dataset", "seed", "batch_size", "inner_steps", "outer_steps", "start_time",
               "stop_time", "wall_seconds", "final_accuracy", "config"]
# Such et al. (2019), Fig. 1c, MNIST (batch 128, 32 inner steps, 2,000 outer steps): final test accuracy per
# curriculum, read from the figure.
PAPER_CURRICULA = pd.DataFrame([("full", 0.985), ("shuffled_batch", 0.974), ("all_shuffled", 0.968), ("none", 0.957)],
                               columns=["curriculum", "paper_accuracy"])
# GoodAI's published MNIST results (approx.): final test accuracy and shuffled-order median per cell.
REFERENCE = pd.DataFrame(
    [("A", "learned", 0.972, 0.77), ("A", "random_fixed", 0.973, 0.70), ("A", "random", 0.929, 0.925),
     ("B", "learned", 0.960, 0.68), ("B", "random_fixed", 0.961, 0.67), ("B", "random", 0.90, 0.90),
     ("C", "learned", 0.952, 0.58), ("C", "random_fixed", 0.952, 0.63), ("C", "random", 0.855, 0.85)],
    columns=["experiment", "variant", "reference_accuracy", "reference_shuffled_median"])


def experiment_of(batch_size, inner_steps) -> str | None:
    """A, B or C from a run's shape; None for any other shape."""
    return EXPERIMENT_SHAPES.get((batch_size, inner_steps))


def _teacher_of(record: RunRecord) -> tuple[str | None, str | None, str | None]:
    """(teacher, curriculum, variant) of a run; runs stored before those keys existed were GTNs, full curriculum; a
    GAN teacher whose generator is meta-trained is teacher "gan_meta_trained"."""
    if record.name == TUNED_SGD:
        return "tuned_sgd", None, None
    if record.name != TRAINING:
        return None, None, None
    config = upgrade_config(record.config)  # the keys' values in runs stored before they existed
    teacher = config["teacher"]
    if teacher == "gan" and config["gan"]["meta_train"]:
        return "gan_meta_trained", None, None
    if teacher != "gtn":
        return teacher, None, None
    return teacher, config["curriculum"], config.get("variant")


def _normalisation_of(record: RunRecord) -> str | None:
    """The learner's normalisation of a training run (runs stored before the key existed: batch); None for others."""
    if record.name != TRAINING:
        return None
    learner = upgrade_config(record.config).get("learner", {})  # the section's keys added since filled in
    return learner.get("normalisation", DEFAULT_NORMALISATION)


def _run_row(record: RunRecord) -> dict:
    config = record.config
    wall = (record.stop_time - record.start_time).total_seconds() if record.start_time and record.stop_time else None
    scored = record.name in (TRAINING, TUNED_SGD) and isinstance(record.result, (int, float))
    final = record.result if scored else None
    teacher, curriculum, variant = _teacher_of(record)
    return {"run_id": record.run_id, "file_store_id": record.file_store_id, "name": record.name,
            "status": record.status, "experiment": experiment_of(config.get("batch_size"), config.get("inner_steps")),
            "teacher": teacher, "curriculum": curriculum,
            "variant": variant, "normalisation": _normalisation_of(record), "dataset": config.get("dataset"),
            "seed": config.get("seed"),
            "batch_size": config.get("batch_size"), "inner_steps": config.get("inner_steps"),
            "outer_steps": config.get("outer_steps"), "start_time": record.start_time, "stop_time": record.stop_time,
            "wall_seconds": wall, "final_accuracy": final, "config": config}


def load_runs(store: Store) -> pd.DataFrame:
    """One row per run of the store (training and ablation), oldest first; StoreError when it holds none."""
    rows = [_run_row(record) for record in store.records()]
    if not rows:
        raise StoreError(f"{store.label} holds no runs: run the study first (python experiments/run_tasks.py)")
    runs = pd.DataFrame(rows, columns=RUN_COLUMNS)
    for column in ("seed", "batch_size", "inner_steps", "outer_steps"):
        runs[column] = runs[column].astype("Int64")
    runs["final_accuracy"] = runs["final_accuracy"].astype(float)
    runs["wall_seconds"] = runs["wall_seconds"].astype(float)
    return runs


def chain_wall_seconds(store: Store, runs: pd.DataFrame) -> pd.Series:
    """Each run's start-to-stop seconds plus those of the runs it was resumed from (`resume_chain`): the time its
    result cost, however often it was stopped; NaN while it runs."""
    records, in_mongo = list(store.records()), isinstance(store, MongoStore)
    wall = dict(zip(runs.run_id, runs.wall_seconds))
    return pd.Series([sum(wall.get(run.run_id, float("nan")) for run in resume_chain(records, run_id, in_mongo))
                      for run_id in runs.run_id], index=runs.index, dtype=float)


def where_config(frame: pd.DataFrame, test) -> pd.DataFrame:
    """The rows of a runs frame whose config passes `test` (a boolean mask even when the frame is empty, where a
    bare mapped Series would select columns)."""
    return frame[pd.Series([bool(test(config)) for config in frame.config], index=frame.index, dtype=bool)]


def newest_per_cell(runs: pd.DataFrame) -> pd.DataFrame:
    """The newest run of each cell (`CELL_KEYS`), sorted by experiment, variant order and seed."""
    chosen = runs.sort_values("start_time", kind="stable").groupby(list(CELL_KEYS), dropna=False).tail(1)
    order = chosen.variant.map({variant: i for i, variant in enumerate(VARIANT_ORDER)})
    return chosen.assign(_order=order).sort_values(["experiment", "_order", "seed"]).drop(columns="_order") \
        .reset_index(drop=True)


def select_runs(runs: pd.DataFrame, latest: bool = True, names: tuple[str, ...] = (TRAINING,),
                statuses: tuple[str, ...] = ("COMPLETED",), snapshots: bool = False, **config) -> pd.DataFrame:
    """COMPLETED runs of a named shape whose config has every given value (e.g. dataset="mnist", outer_steps=1000).

    `teacher`, `curriculum` and `normalisation` select on the columns (runs stored before those keys existed count
    as a GTN with the full curriculum and a batch-normalised learner); any other key on the run's config. `names`
    are the Sacred experiments taken (the tuned-SGD baseline is `TUNED_SGD`), `statuses` the run statuses (the
    normalisation study also counts FAILED runs). Runs that kept teacher snapshots (`snapshot_every`: the strength
    study's, whose levers the cell does not name) only with `snapshots`. With `latest`, only the newest run of each
    cell (experiment, teacher, curriculum, variant, normalisation, dataset, seed): several seeds stay, reruns of one
    seed do not. Rows are sorted by experiment, variant order and seed.
    """
    chosen = runs[runs.name.isin(names) & runs.status.isin(statuses) & runs.experiment.notna()]
    if not snapshots:
        chosen = where_config(chosen, lambda stored: stored.get("snapshot_every") is None)
    for key, value in config.items():
        if key in COLUMN_KEYS:
            chosen = chosen[chosen[key] == value]
        else:
            chosen = where_config(chosen, lambda stored: stored.get(key) == value)
    if latest:
        return newest_per_cell(chosen)
    order = chosen.variant.map({variant: i for i, variant in enumerate(VARIANT_ORDER)})
    return chosen.assign(_order=order).sort_values(["experiment", "_order", "seed"]).drop(columns="_order") \
        .reset_index(drop=True)


def stitched_series(store: Store, chain: list[RunRecord]) -> dict[str, tuple[list, list]]:
    """One run's metrics over its whole resume chain: each earlier run up to the step its successor resumed from.

    A resumed run logs only the steps after its checkpoint, so no step is missing; an earlier run may have logged
    steps past the checkpoint it was resumed from (killed between checkpoints), and those are dropped, so no step
    is repeated.
    """
    series: dict[str, tuple[list, list]] = {}
    cutoff = float("inf")  # the first step the next newer run logged: this run counts only the steps before it
    for record in reversed(chain):
        own = store.metric_series(record.run_id)
        for name, (steps, values) in own.items():
            kept = [(step, value) for step, value in zip(steps, values) if step < cutoff]
            later_steps, later_values = series.get(name, ([], []))
            series[name] = ([step for step, _ in kept] + later_steps, [value for _, value in kept] + later_values)
        cutoff = min([cutoff] + [steps[0] for steps, _ in own.values() if steps])
    return series


def load_metrics(store: Store, run_ids=None, names=None, stitch: bool = True) -> pd.DataFrame:
    """Tidy metrics: one row per (run_id, name, step, value); all runs and names unless narrowed.

    With `stitch`, a resumed run's metrics include those of the runs it was resumed from (`resume_chain`), so its
    curve is whole: one row per step, under the resumed run's id.
    """
    records = store.records()
    ids = [str(run_id) for run_id in (run_ids if run_ids is not None else [record.run_id for record in records])]

    def series(run_id):
        if stitch and any(r.run_id == run_id for r in records):
            return stitched_series(store, resume_chain(records, run_id, isinstance(store, MongoStore)))
        return store.metric_series(run_id)

    rows = [(run_id, name, step, value)
            for run_id in ids for name, (steps, values) in series(run_id).items()
            if names is None or name in names for step, value in zip(steps, values)]
    metrics = pd.DataFrame(rows, columns=["run_id", "name", "step", "value"])
    return metrics.astype({"step": "int64", "value": "float64"})


def source_of(evaluation, training: list, in_mongo: bool) -> str | None:
    """The store id of the teacher an evaluation run (shuffle ablation, transfer, robustness) used (`source_run_id`
    in `source_store`: `referenced_run`) among the training runs' rows; None when the store does not hold it."""
    config = upgrade_config(evaluation.config)  # `runs_dir` in older ablation runs
    start = evaluation.start_time if pd.notna(evaluation.start_time) else None
    teacher = referenced_run(training, config.get("source_run_id"), config.get("source_store"),
                             in_mongo, TRAINING, before=start)
    return None if teacher is None else teacher.run_id


def load_ablation(store: Store, runs: pd.DataFrame | None = None, snapshots: bool = False,
                  moved_schedule: bool = False) -> pd.DataFrame:
    """One row per ablation learner of every COMPLETED ablation run of a final teacher: run_id, source_run_id (the
    teacher's store id), source_step (None: the final teacher), move_schedule, order (learned / shuffled), repeat,
    accuracy, and the teacher's cell (experiment, variant, dataset, seed, ...). With `snapshots`, also the ablations
    of the teacher snapshots kept during training (`source_step`: the outer step); with `moved_schedule`, also those
    whose shuffled steps took their learned lr and momentum along (`move_schedule`: True)."""
    runs = load_runs(store) if runs is None else runs
    training = runs[runs.name == TRAINING].sort_values("start_time", kind="stable")
    ablations = runs[(runs.name == ABLATION) & (runs.status == "COMPLETED")]
    if not snapshots:
        ablations = where_config(ablations, lambda config: config.get("source_step") is None)
    if not moved_schedule:
        ablations = where_config(ablations, lambda config: not config.get("move_schedule", False))
    columns = ["run_id", "source_run_id", "source_step", "move_schedule", "order", "repeat", "accuracy", *CELL_KEYS]
    rows, teachers = [], list(training.itertuples())
    for ablation in ablations.itertuples():
        source_id = source_of(ablation, teachers, isinstance(store, MongoStore))
        teacher = training[training.run_id == source_id].iloc[0] if source_id is not None else None
        cell = [teacher[key] if teacher is not None else None for key in CELL_KEYS]
        for name, (steps, values) in store.metric_series(ablation.run_id).items():
            if name.startswith("accuracy_"):
                rows += [(ablation.run_id, source_id, ablation.config.get("source_step"),
                          bool(ablation.config.get("move_schedule", False)), name.removeprefix("accuracy_"), step,
                          value, *cell) for step, value in zip(steps, values)]
    return pd.DataFrame(rows, columns=columns).astype({"accuracy": "float64", "source_step": "Int64",
                                                       "move_schedule": bool})


def load_artifacts(store: Store, run_ids) -> pd.DataFrame:
    """One row per artifact of the given runs: run_id, name, path (file store) or None (MongoDB: `store.artifact`)."""
    rows = [(str(run_id), name, store.artifact_path(str(run_id), name))
            for run_id in run_ids for name in store.artifact_names(str(run_id))]
    return pd.DataFrame(rows, columns=["run_id", "name", "path"])


def summary_table(runs: pd.DataFrame, ablation: pd.DataFrame) -> pd.DataFrame:
    """Per (experiment, variant): mean final accuracy over the selected runs' seeds and the median of the learned and
    shuffled ablation accuracies of their teachers, beside GoodAI's reference values and the differences, with the
    Wilcoxon signed-rank test of the paired learners (p-value, effect size r; `paired.paired_test`)."""
    runs = default_learner(runs[(runs.teacher == "gtn") & (runs.curriculum == "full")])
    final = runs.groupby(["experiment", "variant"]).agg(seeds=("seed", "nunique"),
                                                        final_accuracy=("final_accuracy", "mean"))
    mine = ablation[ablation.source_run_id.isin(runs.run_id)]
    medians = mine.pivot_table(index=["experiment", "variant"], columns="order", values="accuracy",
                               aggfunc="median").rename(columns=lambda order: f"{order}_median")
    tests = paired.ablation_tests(mine, ["experiment", "variant"]).set_index(["experiment", "variant"])
    table = final.join(medians).join(tests[["pairs", "wilcoxon_p", "effect_size_r"]]).reset_index() \
        .merge(REFERENCE, on=["experiment", "variant"], how="left")
    for column in ("learned_median", "shuffled_median"):
        if column not in table:
            table[column] = float("nan")
    table["accuracy_difference"] = table.final_accuracy - table.reference_accuracy
    table["shuffled_difference"] = table.shuffled_median - table.reference_shuffled_median
    order = table.variant.map({variant: i for i, variant in enumerate(VARIANT_ORDER)})
    table = table.assign(_order=order).sort_values(["experiment", "_order"]).drop(columns="_order")
    return table[["experiment", "variant", "seeds", "final_accuracy", "reference_accuracy", "accuracy_difference",
                  "learned_median", "shuffled_median", "reference_shuffled_median", "shuffled_difference", "pairs",
                  "wilcoxon_p", "effect_size_r"]].reset_index(drop=True)


def arm_table(runs: pd.DataFrame, arm: str) -> pd.DataFrame:
    """Per (experiment, `arm` value: a curriculum or a teacher): seeds, final test accuracy mean and sd, wall time."""
    return runs.groupby(["experiment", arm]).agg(
        seeds=("seed", "nunique"), accuracy_mean=("final_accuracy", "mean"), accuracy_sd=("final_accuracy", "std"),
        wall_minutes=("wall_seconds", lambda seconds: seconds.mean() / 60)).reset_index()


def default_learner(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs whose learner has the default (batch) normalisation, and the runs without one (tuned SGD: None):
    every study but the normalisation study."""
    return runs[runs.normalisation.isna() | (runs.normalisation == DEFAULT_NORMALISATION)]


def curricula_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The curricula study's arms among selected runs: GTNs with a batch-normalised learner at the shapes where a
    non-full curriculum ran, the full curriculum with learned inputs only (the goodai study's other variants share
    those shapes)."""
    gtn = default_learner(runs[runs.teacher == "gtn"])
    shapes = set(gtn[gtn.curriculum != "full"].experiment)
    return gtn[gtn.experiment.isin(shapes) & ((gtn.curriculum != "full") | (gtn.variant == "learned"))]


def _teacher_arms(runs: pd.DataFrame, markers: tuple[str, ...], teachers: tuple[str, ...]) -> pd.DataFrame:
    """A study's arms: at the shapes where a teacher of `markers` (the study's own) ran, and at the outer-step
    budgets those runs trained for (markers without outer steps, as tuned SGD: the budgets of `teachers` there), the
    runs of `teachers` and the GTN with the full curriculum and learned inputs, batch-normalised learners only, the
    newest of each cell (a GTN of another study at the same shape but another budget stays out)."""
    runs = default_learner(runs)
    marked = runs[runs.teacher.isin(markers)]
    shapes = set(marked.experiment)
    givers = marked if marked.outer_steps.notna().any() else \
        runs[runs.teacher.isin(teachers) & runs.experiment.isin(shapes)]
    budgets = {(shape, int(steps)) for shape, steps in zip(givers.experiment, givers.outer_steps) if pd.notna(steps)}
    at_budget = [shape in shapes and (pd.isna(steps) or (shape, int(steps)) in budgets)
                 for shape, steps in zip(runs.experiment, runs.outer_steps)]
    chosen = runs[pd.Series(at_budget, index=runs.index, dtype=bool)]
    gtn = (chosen.teacher == "gtn") & (chosen.curriculum == "full") & (chosen.variant == "learned")
    return newest_per_cell(chosen[chosen.teacher.isin(teachers) | gtn])


def baselines_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The baselines study's arms among selected runs (training and tuned SGD; pass every run, `latest=False`: the
    newest per cell is taken at the study's budgets): where tuned SGD ran (the study's own arm), the GTN with the
    full curriculum and learned inputs, real data, tuned SGD and distillation, batch-normalised learners only."""
    return _teacher_arms(runs, ("tuned_sgd",), ("real_data", "tuned_sgd", "distillation"))


def gan_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The GAN study's arms among selected runs (pass every run, `latest=False`): at the budgets where a GAN teacher
    trained, the GAN frozen and meta-trained, real data, distillation and the GTN (full curriculum, learned
    inputs)."""
    return _teacher_arms(runs, GAN_TEACHERS, ("real_data", "distillation", *GAN_TEACHERS))


def curricula_table(runs: pd.DataFrame) -> pd.DataFrame:
    """`arm_table` by curriculum of `curricula_runs`, beside the paper's Fig. 1c values and the differences."""
    table = arm_table(curricula_runs(runs), "curriculum").merge(PAPER_CURRICULA, on="curriculum", how="left")
    table["difference"] = table.accuracy_mean - table.paper_accuracy
    order = table.curriculum.map({name: i for i, name in enumerate(CURRICULUM_ORDER)})
    return table.assign(_order=order).sort_values(["experiment", "_order"]).drop(columns="_order") \
        .reset_index(drop=True)


def baselines_table(runs: pd.DataFrame, arms=baselines_runs) -> pd.DataFrame:
    """`arm_table` by teacher of `arms(runs)`: by default `baselines_runs` (the GTN, real data, tuned SGD and
    distillation); `gan_runs` for the GAN study."""
    table = arm_table(arms(runs), "teacher")
    order = table.teacher.map({name: i for i, name in enumerate(TEACHER_ORDER)})
    return table.assign(_order=order).sort_values(["experiment", "_order"]).drop(columns="_order") \
        .reset_index(drop=True)
