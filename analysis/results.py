"""Reading the study back as tidy pandas DataFrames, from the Sacred file store or from MongoDB.

    from analysis import results
    store = results.open_store()                       # $GTN_MONGO_URL if set, else $GTN_RUNS_DIR or runs/
    store = results.open_store(runs_dir="runs")        # a file store
    store = results.open_store(mongo_url="mongodb://127.0.0.1:27018/gtn_lab")
    runs = results.load_runs(store)                    # one row per run
    cells = results.select_runs(runs, dataset="mnist") # COMPLETED training runs, the newest per cell and seed
    curves = results.load_metrics(store, cells.run_id, names=["test_accuracy"])
    ablation = results.load_ablation(store)            # one row per ablation learner
    png = store.artifact(cells.run_id.iloc[0], "curriculum.png")

Run ids are the store's own: in MongoDB a run's id differs from its file-store id (`file_store_id` column), and
the shuffle ablation's `source_run_id` names the file-store id of its teacher; `load_ablation` resolves both.
Experiments are named from their shape: A = (batch 32, 20 inner steps), B = (32, 10), C = (16, 10).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
import pymongo
from pymongo.errors import PyMongoError

from experiments.observers import MONGO_URL_VARIABLE, default_runs_dir, mongo_settings, redact
from experiments.store import upgrade_config

TRAINING, ABLATION, TUNED_SGD = "gtn_mnist", "gtn_shuffle_ablation", "gtn_tuned_sgd"
# (batch_size, inner_steps) -> experiment; "paper" is Such et al.'s MNIST shape (Fig. 1c)
EXPERIMENT_SHAPES = {(32, 20): "A", (32, 10): "B", (16, 10): "C", (128, 32): "paper"}
VARIANT_ORDER = ("learned", "random_fixed", "random")
CURRICULUM_ORDER = ("full", "shuffled_batch", "all_shuffled", "none")
TEACHER_ORDER = ("gtn", "real_data", "tuned_sgd", "distillation")
CELL_KEYS = ("experiment", "teacher", "curriculum", "variant", "dataset", "seed")
RUN_COLUMNS = ["run_id", "file_store_id", "name", "status", "experiment", "teacher", "curriculum", "variant",
               "dataset", "seed", "batch_size", "inner_steps", "outer_steps", "start_time", "stop_time",
               "wall_seconds", "final_accuracy", "config"]
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


class StoreError(RuntimeError):
    """A store that cannot be read, or holds no runs; the message names the store."""


@dataclass(frozen=True)
class RunRecord:
    """What every store keeps of one Sacred run."""

    run_id: str
    file_store_id: str
    name: str
    status: str
    config: dict
    start_time: datetime | None
    stop_time: datetime | None
    result: object


def _time(value) -> datetime | None:
    """A Sacred timestamp (ISO text in the file store, datetime in MongoDB) as a naive datetime."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


class FileStore:
    """A Sacred file store: one folder per run, `runs/<id>/`."""

    def __init__(self, runs_dir: str | Path):
        self.runs_dir = Path(runs_dir)
        self.label = f"file store {self.runs_dir}"

    def records(self) -> list[RunRecord]:
        """Every readable run, oldest id first; StoreError when the folder is missing."""
        if not self.runs_dir.is_dir():
            raise StoreError(f"{self.label} does not exist: run the study first (python experiments/run_tasks.py)")
        records = []
        for folder in sorted((p for p in self.runs_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)):
            try:
                run = json.loads((folder / "run.json").read_text())
                config = json.loads((folder / "config.json").read_text())
            except (OSError, json.JSONDecodeError):
                continue  # a run killed before Sacred wrote its files
            records.append(RunRecord(folder.name, folder.name, run["experiment"]["name"], run["status"], config,
                                     _time(run.get("start_time")), _time(run.get("stop_time")), run.get("result")))
        return records

    def metric_series(self, run_id: str) -> dict[str, tuple[list, list]]:
        """{metric name: (steps, values)} of one run."""
        path = self.runs_dir / str(run_id) / "metrics.json"
        if not path.is_file():
            return {}
        return {name: (series["steps"], series["values"]) for name, series in json.loads(path.read_text()).items()}

    def artifact_path(self, run_id: str, name: str) -> Path | None:
        """Where an artifact lies on disk, or None when the run has none of that name."""
        path = self.runs_dir / str(run_id) / name
        return path if path.is_file() else None

    def artifact(self, run_id: str, name: str) -> bytes:
        """The bytes of one artifact; KeyError naming the run and the store when it is missing."""
        path = self.artifact_path(run_id, name)
        if path is None:
            raise KeyError(f"run {run_id} of the {self.label} has no artifact {name!r}")
        return path.read_bytes()

    def artifact_names(self, run_id: str) -> list[str]:
        """Names of the artifacts Sacred recorded for one run."""
        run = json.loads((self.runs_dir / str(run_id) / "run.json").read_text())
        return list(run.get("artifacts", []))


class MongoStore:
    """Sacred's MongoDB layout: `runs`, `metrics` and GridFS (`fs`) for artifacts."""

    def __init__(self, url: str):
        options, db_name = mongo_settings(url)
        self.label = f"MongoDB {redact(url)} (database {db_name})"
        self.client = pymongo.MongoClient(url, **options)
        self.db = self.client[db_name]
        try:
            self.client.admin.command("ping")
        except PyMongoError as error:
            self.client.close()
            raise StoreError(f"{self.label} cannot be reached: {type(error).__name__}: "
                             f"{str(error).split(' (configured timeouts')[0]}") from None

    def records(self) -> list[RunRecord]:
        """Every run, oldest id first."""
        fields = {"experiment.name": 1, "status": 1, "config": 1, "start_time": 1, "stop_time": 1, "result": 1,
                  "meta.file_store_id": 1}
        return [RunRecord(str(doc["_id"]), str(doc.get("meta", {}).get("file_store_id", doc["_id"])),
                          doc["experiment"]["name"], doc["status"], doc.get("config", {}), doc.get("start_time"),
                          doc.get("stop_time"), doc.get("result"))
                for doc in self.db.runs.find({}, fields).sort("_id", 1)]

    def _mongo_id(self, run_id: str):
        return int(run_id) if str(run_id).isdigit() else run_id

    def metric_series(self, run_id: str) -> dict[str, tuple[list, list]]:
        """{metric name: (steps, values)} of one run."""
        return {doc["name"]: (doc["steps"], doc["values"])
                for doc in self.db.metrics.find({"run_id": self._mongo_id(run_id)})}

    def _artifact_ids(self, run_id: str) -> dict:
        doc = self.db.runs.find_one({"_id": self._mongo_id(run_id)}, {"artifacts": 1}) or {}
        return {artifact["name"]: artifact["file_id"] for artifact in doc.get("artifacts", [])}

    def artifact_path(self, run_id: str, name: str) -> None:
        """MongoDB keeps artifacts in GridFS, never on disk: always None (use `artifact`)."""
        return None

    def artifact(self, run_id: str, name: str) -> bytes:
        """The bytes of one artifact from GridFS; KeyError naming the run and the store when it is missing."""
        import gridfs

        file_id = self._artifact_ids(run_id).get(name)
        if file_id is None:
            raise KeyError(f"run {run_id} of the {self.label} has no artifact {name!r}")
        return gridfs.GridFS(self.db).get(file_id).read()

    def artifact_names(self, run_id: str) -> list[str]:
        """Names of the artifacts Sacred recorded for one run."""
        return list(self._artifact_ids(run_id))


Store = FileStore | MongoStore


def open_store(runs_dir: str | Path | None = None, mongo_url: str | None = None) -> Store:
    """MongoDB at `mongo_url`, else the file store `runs_dir`; with neither, $GTN_MONGO_URL, else $GTN_RUNS_DIR/runs."""
    if mongo_url:
        return MongoStore(mongo_url)
    if runs_dir:
        return FileStore(runs_dir)
    url = os.environ.get(MONGO_URL_VARIABLE)
    return MongoStore(url) if url else FileStore(default_runs_dir())


def experiment_of(batch_size, inner_steps) -> str | None:
    """A, B or C from a run's shape; None for any other shape."""
    return EXPERIMENT_SHAPES.get((batch_size, inner_steps))


def _teacher_of(record: RunRecord) -> tuple[str | None, str | None, str | None]:
    """(teacher, curriculum, variant) of a run; runs stored before those keys existed were GTNs, full curriculum."""
    if record.name == TUNED_SGD:
        return "tuned_sgd", None, None
    if record.name != TRAINING:
        return None, None, None
    config = upgrade_config(record.config)  # the keys' values in runs stored before they existed
    teacher = config["teacher"]
    if teacher != "gtn":
        return teacher, None, None
    return teacher, config["curriculum"], config.get("variant")


def _run_row(record: RunRecord) -> dict:
    config = record.config
    wall = (record.stop_time - record.start_time).total_seconds() if record.start_time and record.stop_time else None
    scored = record.name in (TRAINING, TUNED_SGD) and isinstance(record.result, (int, float))
    final = record.result if scored else None
    teacher, curriculum, variant = _teacher_of(record)
    return {"run_id": record.run_id, "file_store_id": record.file_store_id, "name": record.name,
            "status": record.status, "experiment": experiment_of(config.get("batch_size"), config.get("inner_steps")),
            "teacher": teacher, "curriculum": curriculum,
            "variant": variant, "dataset": config.get("dataset"), "seed": config.get("seed"),
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


def select_runs(runs: pd.DataFrame, latest: bool = True, names: tuple[str, ...] = (TRAINING,),
                **config) -> pd.DataFrame:
    """COMPLETED runs of a named shape whose config has every given value (e.g. dataset="mnist", outer_steps=1000).

    `teacher` and `curriculum` select on the columns (runs stored before those keys existed count as a GTN with
    the full curriculum); any other key on the run's config. `names` are the Sacred experiments taken (the tuned-SGD
    baseline is `TUNED_SGD`). With `latest`, only the newest run of each cell (experiment, teacher, curriculum,
    variant, dataset, seed): several seeds stay, reruns of one seed do not. Rows are sorted by experiment, variant
    order and seed.
    """
    chosen = runs[runs.name.isin(names) & (runs.status == "COMPLETED") & runs.experiment.notna()]
    for key, value in config.items():
        if key in ("teacher", "curriculum"):
            chosen = chosen[chosen[key] == value]
        else:
            chosen = chosen[chosen.config.map(lambda stored: stored.get(key) == value)]
    if latest:
        chosen = chosen.sort_values("start_time", kind="stable").groupby(list(CELL_KEYS), dropna=False).tail(1)
    order = chosen.variant.map({variant: i for i, variant in enumerate(VARIANT_ORDER)})
    return chosen.assign(_order=order).sort_values(["experiment", "_order", "seed"]).drop(columns="_order") \
        .reset_index(drop=True)


def resume_chain(records: list[RunRecord], run_id: str) -> list[RunRecord]:
    """The run `run_id` and the runs it was resumed from (`resume_from`, a file-store id), oldest first."""
    by_id = {record.run_id: record for record in records}
    chain = [by_id[str(run_id)]]
    while chain[0].config.get("resume_from") is not None:
        source = str(chain[0].config["resume_from"])
        earlier = [record for record in records if record.file_store_id == source and record.name == chain[0].name
                   and (record.start_time is None or chain[0].start_time is None
                        or record.start_time <= chain[0].start_time)]
        if not earlier or earlier[-1] in chain:
            break  # the source run is not in this store: the curve starts at the resumed step
        chain.insert(0, earlier[-1])
    return chain


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
            return stitched_series(store, resume_chain(records, run_id))
        return store.metric_series(run_id)

    rows = [(run_id, name, step, value)
            for run_id in ids for name, (steps, values) in series(run_id).items()
            if names is None or name in names for step, value in zip(steps, values)]
    metrics = pd.DataFrame(rows, columns=["run_id", "name", "step", "value"])
    return metrics.astype({"step": "int64", "value": "float64"})


def _source_of(ablation: pd.Series, training: pd.DataFrame) -> str | None:
    """The store id of the teacher an ablation run used: its `source_run_id` is a file-store id, and in MongoDB
    several file stores may share a database, so the newest such teacher that started before the ablation wins."""
    source = str(ablation.config.get("source_run_id"))
    candidates = training[training.file_store_id == source]
    if pd.notna(ablation.start_time):
        candidates = candidates[candidates.start_time <= ablation.start_time]
    return candidates.run_id.iloc[-1] if len(candidates) else None


def load_ablation(store: Store, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per ablation learner of every COMPLETED ablation run: run_id, source_run_id (the teacher's store id),
    order (learned / shuffled), repeat, accuracy, and the teacher's experiment, variant, dataset and seed."""
    runs = load_runs(store) if runs is None else runs
    training = runs[runs.name == TRAINING].sort_values("start_time", kind="stable")
    ablations = runs[(runs.name == ABLATION) & (runs.status == "COMPLETED")]
    columns = ["run_id", "source_run_id", "order", "repeat", "accuracy", *CELL_KEYS]
    rows = []
    for ablation in ablations.itertuples():
        source_id = _source_of(ablation, training)
        teacher = training[training.run_id == source_id].iloc[0] if source_id is not None else None
        cell = [teacher[key] if teacher is not None else None for key in CELL_KEYS]
        for name, (steps, values) in store.metric_series(ablation.run_id).items():
            if name.startswith("accuracy_"):
                rows += [(ablation.run_id, source_id, name.removeprefix("accuracy_"), step, value, *cell)
                         for step, value in zip(steps, values)]
    return pd.DataFrame(rows, columns=columns).astype({"accuracy": "float64"})


def load_artifacts(store: Store, run_ids) -> pd.DataFrame:
    """One row per artifact of the given runs: run_id, name, path (file store) or None (MongoDB: `store.artifact`)."""
    rows = [(str(run_id), name, store.artifact_path(str(run_id), name))
            for run_id in run_ids for name in store.artifact_names(str(run_id))]
    return pd.DataFrame(rows, columns=["run_id", "name", "path"])


def summary_table(runs: pd.DataFrame, ablation: pd.DataFrame) -> pd.DataFrame:
    """Per (experiment, variant): mean final accuracy over the selected runs' seeds and the median of the learned and
    shuffled ablation accuracies of their teachers, beside GoodAI's reference values and the differences."""
    runs = runs[(runs.teacher == "gtn") & (runs.curriculum == "full")]
    final = runs.groupby(["experiment", "variant"]).agg(seeds=("seed", "nunique"),
                                                        final_accuracy=("final_accuracy", "mean"))
    mine = ablation[ablation.source_run_id.isin(runs.run_id)]
    medians = mine.pivot_table(index=["experiment", "variant"], columns="order", values="accuracy",
                               aggfunc="median").rename(columns=lambda order: f"{order}_median")
    table = final.join(medians).reset_index().merge(REFERENCE, on=["experiment", "variant"], how="left")
    for column in ("learned_median", "shuffled_median"):
        if column not in table:
            table[column] = float("nan")
    table["accuracy_difference"] = table.final_accuracy - table.reference_accuracy
    table["shuffled_difference"] = table.shuffled_median - table.reference_shuffled_median
    order = table.variant.map({variant: i for i, variant in enumerate(VARIANT_ORDER)})
    table = table.assign(_order=order).sort_values(["experiment", "_order"]).drop(columns="_order")
    return table[["experiment", "variant", "seeds", "final_accuracy", "reference_accuracy", "accuracy_difference",
                  "learned_median", "shuffled_median", "reference_shuffled_median", "shuffled_difference"]] \
        .reset_index(drop=True)


def arm_table(runs: pd.DataFrame, arm: str) -> pd.DataFrame:
    """Per (experiment, `arm` value: a curriculum or a teacher): seeds, final test accuracy mean and sd, wall time."""
    return runs.groupby(["experiment", arm]).agg(
        seeds=("seed", "nunique"), accuracy_mean=("final_accuracy", "mean"), accuracy_sd=("final_accuracy", "std"),
        wall_minutes=("wall_seconds", lambda seconds: seconds.mean() / 60)).reset_index()


def curricula_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The curricula study's arms among selected runs: GTNs at the shapes where a non-full curriculum ran, the full
    curriculum with learned inputs only (the goodai study's other variants share those shapes)."""
    gtn = runs[runs.teacher == "gtn"]
    shapes = set(gtn[gtn.curriculum != "full"].experiment)
    return gtn[gtn.experiment.isin(shapes) & ((gtn.curriculum != "full") | (gtn.variant == "learned"))]


def baselines_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The baselines study's arms among selected runs (training and tuned SGD): at the shapes where a baseline ran,
    every non-GTN teacher and the GTN with the full curriculum and learned inputs."""
    shapes = set(runs[runs.teacher != "gtn"].experiment)
    chosen = runs[runs.experiment.isin(shapes)]
    return chosen[(chosen.teacher != "gtn") | ((chosen.curriculum == "full") & (chosen.variant == "learned"))]


def curricula_table(runs: pd.DataFrame) -> pd.DataFrame:
    """`arm_table` by curriculum of `curricula_runs`, beside the paper's Fig. 1c values and the differences."""
    table = arm_table(curricula_runs(runs), "curriculum").merge(PAPER_CURRICULA, on="curriculum", how="left")
    table["difference"] = table.accuracy_mean - table.paper_accuracy
    order = table.curriculum.map({name: i for i, name in enumerate(CURRICULUM_ORDER)})
    return table.assign(_order=order).sort_values(["experiment", "_order"]).drop(columns="_order") \
        .reset_index(drop=True)


def baselines_table(runs: pd.DataFrame) -> pd.DataFrame:
    """`arm_table` by teacher of `baselines_runs`: the GTN (full, learned), real data, tuned SGD and distillation."""
    table = arm_table(baselines_runs(runs), "teacher")
    order = table.teacher.map({name: i for i, name in enumerate(TEACHER_ORDER)})
    return table.assign(_order=order).sort_values(["experiment", "_order"]).drop(columns="_order") \
        .reset_index(drop=True)
