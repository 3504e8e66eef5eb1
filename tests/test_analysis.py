"""Analysis: the results loader on both stores and the notebook run headless on a smoke study.

One smoke study (Experiments B and C x learned/random, with their shuffle ablations, and a second seed of C learned
without one) is logged once per module to a temporary file store and, through --mongo, to SecantusDB on a free
127.0.0.1 port; every test reads it back. The smoke normalisation study (four learner normalisations at B's shape,
then transfer and robustness runs of its batch and weight_mean_only teachers) is logged once to a second file store
for `analysis.willis` and the report's sections 8-10.
"""
import io
import json
import math
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pandas as pd
import pytest
from PIL import Image

from analysis import goodai, make_report, results, willis
from experiments import board
from gtn_core.config import NORMALISATIONS
from gtn_core.data import default_data_root, prepare

REPO = Path(__file__).resolve().parents[1]
FIGURES = ("test_accuracy", "ablation_boxplots", "curriculum_learned", "curriculum_random")
EXPECTED_CELLS = {("B", "learned"), ("B", "random"), ("C", "learned"), ("C", "random")}
WILLIS_FIGURES = ("normalisation_accuracy", "normalisation_meta_loss", "transfer", "robustness")
EVALUATED = ["batch", "weight_mean_only"]  # the normalisation study's teachers with transfer and robustness runs


@pytest.fixture(scope="module")
def study(mongo_base, tmp_path_factory):
    """The smoke study of B and C x learned/random plus seed 1 of C learned, in a file store and in MongoDB."""
    prepare("mnist", default_data_root())  # a no-op when `make` prepared it
    runs_dir = tmp_path_factory.mktemp("runs")
    mongo_url = f"{mongo_base}/gtn_analysis"
    # Two single-threaded workers: on busy cores, two-thread torch processes lose far more time to contention.
    command = [sys.executable, "experiments/run_tasks.py", "--profile", "smoke", "--only", "b,c",
               "--variants", "learned,random", "--workers", "2", "--runs-dir", str(runs_dir), "--mongo", mongo_url]
    seeds = ["--only", "c", "--variants", "learned", "--seeds", "2", "--no-ablation"]  # seed 0 is resumed
    for extra in ([], seeds):
        result = subprocess.run([*command, *extra], cwd=REPO, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return SimpleNamespace(runs_dir=runs_dir, mongo_url=mongo_url,
                           files=results.open_store(runs_dir=runs_dir), mongo=results.open_store(mongo_url=mongo_url))


def cell_keys(frame: pd.DataFrame) -> set:
    return set(zip(frame.experiment, frame.variant))


# --- the loader -------------------------------------------------------------------------------------------------

def test_runs_frame_has_one_row_per_run_with_the_documented_columns(study):
    runs = results.load_runs(study.files)
    assert list(runs.columns) == results.RUN_COLUMNS
    assert len(runs) == 9 and set(runs.status) == {"COMPLETED"}
    assert runs.name.value_counts().to_dict() == {results.TRAINING: 5, results.ABLATION: 4}
    training = runs[runs.name == results.TRAINING]
    assert cell_keys(training) == EXPECTED_CELLS
    for run in training.itertuples():
        stored = json.loads((study.runs_dir / run.run_id / "run.json").read_text())
        assert run.final_accuracy == stored["result"]
        assert (run.batch_size, run.inner_steps) == {"B": (32, 10), "C": (16, 10)}[run.experiment]
        assert (run.dataset, run.outer_steps) == ("mnist", 6) and run.wall_seconds > 0
    assert sorted(training.seed) == [0, 0, 0, 0, 1]


def test_select_runs_filters_by_config_and_keeps_the_newest_run_of_each_cell_and_seed():
    start = datetime(2026, 1, 1)
    rows = [dict(run_id=str(i), name=results.TRAINING, status=status, experiment="C", teacher="gtn",
                 curriculum="full", variant="learned", normalisation="batch", dataset="mnist", seed=seed,
                 start_time=start + timedelta(minutes=i), final_accuracy=i / 10,
                 config={"dataset": "mnist", "outer_steps": steps})
            for i, (status, seed, steps) in enumerate([("COMPLETED", 0, 6), ("COMPLETED", 0, 6), ("FAILED", 0, 6),
                                                       ("COMPLETED", 1, 6), ("COMPLETED", 0, 1000)])]
    runs = pd.DataFrame(rows)
    assert list(results.select_runs(runs, outer_steps=6).run_id) == ["1", "3"]  # newest completed seed 0, and seed 1
    assert list(results.select_runs(runs, latest=False, outer_steps=6).run_id) == ["0", "1", "3"]
    assert list(results.select_runs(runs).run_id) == ["4", "3"]
    assert results.select_runs(runs, dataset="fashion_mnist").empty


def _record(run_id, config, name=results.TRAINING, result=0.9):
    start = datetime(2026, 1, 1, 0, int(run_id))
    return results.RunRecord(str(run_id), str(run_id), name, "COMPLETED", config, start,
                             start + timedelta(minutes=2), result)


def test_runs_know_their_teacher_and_the_study_tables_average_over_seeds():
    shape = {"batch_size": 32, "inner_steps": 10, "dataset": "mnist"}
    records = [_record(1, {**shape, "variant": "learned", "seed": 0}, result=0.96),  # stored before `teacher` existed
               _record(2, {**shape, "teacher": "gtn", "curriculum": "full", "variant": "learned", "seed": 1},
                       result=0.94),
               _record(3, {**shape, "teacher": "gtn", "curriculum": "none", "variant": "random", "seed": 0},
                       result=0.90),
               _record(4, {**shape, "teacher": "real_data", "curriculum": "full", "variant": "learned", "seed": 0},
                       result=0.93),
               _record(5, {**shape, "seed": 0}, name=results.TUNED_SGD, result=0.91)]
    runs = pd.DataFrame([results._run_row(record) for record in records])
    assert list(runs.teacher) == ["gtn", "gtn", "gtn", "real_data", "tuned_sgd"]
    assert list(runs.curriculum.fillna("-")) == ["full", "full", "none", "-", "-"]
    assert list(runs.variant.fillna("-")) == ["learned", "learned", "random", "-", "-"]
    selected = results.select_runs(runs, names=(results.TRAINING, results.TUNED_SGD), dataset="mnist")
    assert len(selected) == 5 and list(results.select_runs(runs, teacher="gtn", curriculum="full").run_id) == ["1", "2"]
    curricula = results.curricula_table(selected[selected.teacher == "gtn"])
    full = curricula[curricula.curriculum == "full"].iloc[0]
    assert (full.experiment, full.seeds, full.paper_accuracy) == ("B", 2, 0.985)
    assert full.accuracy_mean == pytest.approx(0.95) and full.accuracy_sd == pytest.approx(0.01414, abs=1e-4)
    assert full.wall_minutes == pytest.approx(2.0)
    assert list(curricula.curriculum) == ["full", "none"]
    baselines = results.baselines_table(selected)
    assert list(baselines.teacher) == ["gtn", "real_data", "tuned_sgd"]
    assert list(baselines.seeds) == [2, 1, 1]


def test_metrics_are_tidy_with_test_accuracy_at_every_evaluation(study):
    cells = results.select_runs(results.load_runs(study.files))
    metrics = results.load_metrics(study.files, cells.run_id)
    assert list(metrics.columns) == ["run_id", "name", "step", "value"]
    accuracy = metrics[metrics.name == "test_accuracy"]
    assert accuracy.groupby("run_id").step.apply(list).to_dict() == {run_id: [3, 6] for run_id in cells.run_id}
    assert len(cells) == 5 and len(metrics[metrics.name == "meta_loss"]) == 5 * 6


def test_ablation_rows_link_each_learner_to_its_teacher(study):
    runs = results.load_runs(study.files)
    ablation = results.load_ablation(study.files, runs)
    assert list(ablation.columns) == ["run_id", "source_run_id", "source_step", "move_schedule", "order", "repeat",
                                      "accuracy", *results.CELL_KEYS]
    assert ablation.source_step.isna().all() and not ablation.move_schedule.any()  # the final teachers, batches only
    assert len(ablation) == 4 * 2 * 3  # 4 teachers x (learned, shuffled) x 3 smoke repeats
    assert set(ablation.order) == {"learned", "shuffled"} and ablation.accuracy.between(0, 1).all()
    configs = runs.set_index("run_id").config
    for row in ablation.drop_duplicates("run_id").itertuples():
        assert configs[row.run_id]["source_run_id"] == row.source_run_id
    assert cell_keys(ablation) == EXPECTED_CELLS


def test_artifacts_are_listed_with_paths_and_read_as_bytes(study):
    cells = results.select_runs(results.load_runs(study.files))
    artifacts = results.load_artifacts(study.files, cells.run_id)
    assert len(artifacts) == 15 and set(artifacts.name) == {"teacher.pt", "curriculum.png", "training.pt"}
    assert all(Path(path).is_file() for path in artifacts.path)
    assert study.files.artifact(cells.run_id[0], "curriculum.png")[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(KeyError, match="has no artifact 'missing.png'"):
        study.files.artifact(cells.run_id[0], "missing.png")


def test_mongodb_gives_the_same_runs_and_resolves_file_store_ids(study):
    files, mongo = results.load_runs(study.files), results.load_runs(study.mongo)
    columns = ["file_store_id", "name", "status", "experiment", "variant", "seed", "final_accuracy"]
    # Parallel workers may insert into MongoDB in another order than they create run folders: compare by run.
    def by_run(frame):
        return frame[columns].sort_values("file_store_id", key=lambda ids: ids.astype(int)).reset_index(drop=True)
    pd.testing.assert_frame_equal(by_run(files), by_run(mongo))
    ablation = results.load_ablation(study.mongo, mongo)
    by_id = mongo.set_index("run_id")
    for row in ablation.drop_duplicates("run_id").itertuples():  # source_run_id is now the teacher's MongoDB id
        assert by_id.file_store_id[row.source_run_id] == by_id.config[row.run_id]["source_run_id"]
    cells = results.select_runs(mongo)
    run = cells.iloc[0]
    assert study.mongo.artifact(run.run_id, "teacher.pt") == (study.runs_dir / run.file_store_id / "teacher.pt").read_bytes()
    assert set(results.load_artifacts(study.mongo, cells.run_id).name) == {"teacher.pt", "curriculum.png", "training.pt"}


def test_an_empty_or_missing_file_store_is_an_error_naming_it(tmp_path):
    with pytest.raises(results.StoreError, match=f"file store {tmp_path} holds no runs"):
        results.load_runs(results.open_store(runs_dir=tmp_path))
    with pytest.raises(results.StoreError, match=f"file store {tmp_path / 'absent'} does not exist"):
        results.load_runs(results.open_store(runs_dir=tmp_path / "absent"))


def test_an_unreachable_or_empty_mongodb_is_an_error_naming_it(mongo_base):
    port = board.free_port()  # nothing listens there
    with pytest.raises(results.StoreError, match=rf"MongoDB mongodb://127.0.0.1:{port}/gtn_lab \(database gtn_lab\) "
                                                 "cannot be reached"):
        results.open_store(mongo_url=f"mongodb://127.0.0.1:{port}/gtn_lab")
    with pytest.raises(results.StoreError, match=r"\(database gtn_empty\) holds no runs"):
        results.load_runs(results.open_store(mongo_url=f"{mongo_base}/gtn_empty"))


def test_goodai_seed_table_pairs_each_teachers_learners_and_the_bench_script_prints_it(study, tmp_path):
    runs = results.load_runs(study.files)
    cells = results.select_runs(runs)
    ablation = results.load_ablation(study.files, runs)
    table = goodai.seed_table(cells, ablation).set_index(["experiment", "variant"])
    c_learned = table.loc[("C", "learned")]
    assert (c_learned.seeds, c_learned.ablated_seeds) == (2, 1)  # seed 1 was trained with --no-ablation
    seeds = cells[(cells.experiment == "C") & (cells.variant == "learned")]
    assert c_learned.final_mean == pytest.approx(seeds.final_accuracy.mean())
    mine = ablation[ablation.source_run_id.isin(seeds.run_id)]
    means = mine.groupby("order").accuracy.mean()
    assert c_learned.drop_mean == pytest.approx(means.learned - means.shuffled) and math.isnan(c_learned.drop_sd)
    assert c_learned.pairs == len(mine) // 2 and (c_learned.reference_accuracy, c_learned.dataset) == (0.952, "mnist")
    fashion = goodai.seed_table(cells.assign(dataset="fashion_mnist"), ablation.assign(dataset="fashion_mnist"))
    assert fashion.reference_accuracy.isna().all()  # GoodAI published MNIST only
    with pytest.raises(ValueError, match="no GoodAI-study training runs"):
        goodai.seed_table(cells.iloc[:0], ablation)

    written = tmp_path / "results.json"
    script = subprocess.run([sys.executable, "bench/goodai_study.py", "--runs-dir", str(study.runs_dir), "--csv-dir",
                             str(tmp_path), "--results", str(written)], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert script.returncode == 0, script.stderr
    assert "| C | learned | 2 |" in script.stdout and "mnist:" in script.stdout
    assert len(pd.read_csv(tmp_path / "goodai_study.csv")) == 4
    names = {item["name"] for item in json.loads(written.read_text())}
    assert "goodai_mnist_C_learned_shuffle_drop" in names


def test_summary_table_places_the_reference_values_beside_the_results(study):
    runs = results.load_runs(study.files)
    cells = results.select_runs(runs)
    table = results.summary_table(cells, results.load_ablation(study.files, runs))
    assert list(zip(table.experiment, table.variant)) == [("B", "learned"), ("B", "random"), ("C", "learned"),
                                                          ("C", "random")]
    assert list(table.reference_accuracy) == [0.960, 0.90, 0.952, 0.855]
    assert list(table.reference_shuffled_median) == [0.68, 0.90, 0.58, 0.85]
    assert (table.accuracy_difference == table.final_accuracy - table.reference_accuracy).all()
    assert table.shuffled_median.notna().all() and list(table.seeds) == [1, 1, 2, 1]
    seeds = cells[(cells.experiment == "C") & (cells.variant == "learned")].final_accuracy
    assert table.final_accuracy[2] == pytest.approx(seeds.mean())  # the mean over seeds


# --- the notebook -----------------------------------------------------------------------------------------------

def test_the_committed_notebook_has_no_outputs():
    notebook = nbformat.read(make_report.NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code), \
        "strip the notebook before committing: python analysis/make_report.py --strip"


def test_strip_clears_saved_outputs(tmp_path):
    notebook = nbformat.read(make_report.NOTEBOOK, as_version=4)
    notebook.cells[1].outputs = [nbformat.v4.new_output("stream", text="saved by Jupyter")]
    notebook.cells[1].execution_count = 3
    path = tmp_path / "saved.ipynb"
    nbformat.write(notebook, path)
    make_report.strip_outputs(path)
    assert nbformat.read(path, as_version=4) == nbformat.read(make_report.NOTEBOOK, as_version=4)


def report(tmp_path: Path, *store: str) -> SimpleNamespace:
    """Run make_report on a store; its figures folder and HTML page."""
    figures, page = tmp_path / "figures", tmp_path / "report.html"
    assert make_report.main([*store, "--figures-dir", str(figures), "--output", str(page)]) == 0
    return SimpleNamespace(figures=figures, page=page, summary=pd.read_csv(figures / "summary.csv"))


@pytest.fixture(scope="module")
def file_report(study, tmp_path_factory):
    """The notebook executed headless on the study's file store."""
    return report(tmp_path_factory.mktemp("report-files"), "--runs-dir", str(study.runs_dir))


def test_notebook_runs_headless_and_writes_every_figure_with_content(file_report):
    for name in FIGURES:
        with Image.open(file_report.figures / f"{name}.png") as image:
            assert image.width >= 300 and image.height >= 200, name
            assert len(image.convert("RGB").getcolors(1 << 24)) > 1, name
    page = file_report.page.read_text()
    assert page.count("<img src=\"data:image/png;base64,") == len(FIGURES)
    assert "Traceback" not in page and "reference_accuracy" in page
    assert len(file_report.summary) == 4


@pytest.mark.stack
def test_notebook_on_mongodb_gives_the_same_summary_table(study, file_report, tmp_path):
    from_mongo = report(tmp_path, "--mongo", study.mongo_url)
    pd.testing.assert_frame_equal(from_mongo.summary, file_report.summary)
    assert sorted(path.name for path in from_mongo.figures.glob("*.png")) == sorted(f"{n}.png" for n in FIGURES)


def test_report_select_takes_a_json_object_of_config_values():
    assert make_report.notebook_environment(make_report.build_parser().parse_args(
        ["--select", '{"outer_steps": 1000}']))["GTN_SELECT"] == '{"outer_steps": 1000}'
    with pytest.raises(SystemExit):
        make_report.build_parser().parse_args(["--select", "outer_steps=1000"])


def test_a_chain_of_resumed_runs_reads_as_one_curve_without_missing_or_repeated_steps(tmp_path):
    def write(run_id, status, steps, config):
        folder = tmp_path / str(run_id)
        folder.mkdir()
        start = datetime(2026, 1, 1, 0, run_id).isoformat()
        (folder / "run.json").write_text(json.dumps({"experiment": {"name": results.TRAINING}, "status": status,
                                                     "start_time": start}))
        (folder / "config.json").write_text(json.dumps({"batch_size": 16, "inner_steps": 10, **config}))
        (folder / "metrics.json").write_text(json.dumps(
            {"meta_loss": {"steps": steps, "values": [float(run_id * 100 + s) for s in steps]}}))

    write(1, "INTERRUPTED", [1, 2, 3, 4, 5], {})  # killed after step 5; its last checkpoint was at step 4
    write(2, "INTERRUPTED", [5, 6, 7], {"resume_from": 1})  # resumed from step 4, interrupted after 7 (checkpoint)
    write(3, "COMPLETED", [8, 9, 10], {"resume_from": 2})
    store = results.FileStore(tmp_path)
    assert [r.run_id for r in results.resume_chain(store.records(), "3")] == ["1", "2", "3"]
    curve = results.load_metrics(store, ["3"])
    assert list(curve.step) == list(range(1, 11))
    assert list(curve.value) == [101, 102, 103, 104, 205, 206, 207, 308, 309, 310]
    assert len(results.load_metrics(store, ["3"], stitch=False)) == 3


# --- the normalisation study (analysis.willis) ------------------------------------------------------------------

def _training(run_id, normalisation, seed=0, status="COMPLETED", outer_steps=200, result=0.9):
    """A runs-table row of a GTN at B's shape with the given learner normalisation (None: stored before the key)."""
    learner = {"channels": [8, 16]} if normalisation is None else {"channels": [8, 16], "normalisation": normalisation}
    config = {"batch_size": 32, "inner_steps": 10, "dataset": "mnist", "teacher": "gtn", "curriculum": "full",
              "variant": "learned", "seed": seed, "outer_steps": outer_steps, "learner": learner}
    start = datetime(2026, 1, 1, 0, int(run_id))
    return results._run_row(results.RunRecord(str(run_id), str(run_id), results.TRAINING, status, config, start,
                                              start + timedelta(minutes=3), result if status == "COMPLETED" else None))


def test_the_normalisation_study_counts_diverged_seeds_and_keeps_other_studies_apart():
    rows = [_training(1, None, outer_steps=1000, result=0.95),  # the GoodAI study's B (stored before the key): batch
            _training(2, "batch", result=0.90), _training(3, "batch", seed=1, result=0.80),
            _training(4, "weight", status="FAILED"), _training(5, "weight", result=0.70),  # seed 0 rerun: completed
            _training(6, "weight", seed=1, status="FAILED"), _training(7, "none", result=0.60)]
    runs = pd.DataFrame(rows)
    assert list(runs.normalisation) == ["batch"] * 3 + ["weight"] * 3 + ["none"]
    assert results._run_row(_record(8, {"source_run_id": "1"}, name=willis.TRANSFER))["normalisation"] is None
    teachers = willis.normalisation_runs(runs)
    assert list(teachers.run_id) == ["2", "3", "5", "6", "7"]  # 1000 outer steps: no other normalisation ran there
    metrics = pd.DataFrame([(run_id, "meta_loss", step, float(step % 2)) for run_id in teachers.run_id
                            for step in range(1, 81)] +
                           [(run_id, "test_accuracy", 40, 0.99) for run_id in teachers.run_id],
                           columns=["run_id", "name", "step", "value"])
    table = willis.normalisation_table(teachers, metrics).set_index("normalisation")
    assert list(table.index) == ["batch", "weight", "none"]
    assert table.loc["weight", ["seeds", "completed", "diverged"]].tolist() == [2, 1, 1]
    assert table.loc["batch", "accuracy_mean"] == pytest.approx(0.85)
    assert table.loc["batch", "accuracy_sd"] == pytest.approx(pd.Series([0.9, 0.8]).std())
    assert table.loc["weight", "accuracy_mean"] == pytest.approx(0.70)  # the diverged seed is only counted
    assert (table.best_accuracy_mean == 0.99).all() and (table.wall_minutes == 3).all()
    last = pd.Series([float(step % 2) for step in range(31, 81)])  # the last 50 outer steps
    assert table.meta_loss_spread.tolist() == pytest.approx([last.std()] * 3)
    assert results.select_runs(runs, latest=False, normalisation="batch").run_id.tolist() == ["1", "2", "3"]
    assert sorted(results.select_runs(runs).run_id) == ["2", "3", "5", "7"]  # the arms are cells of their own
    assert results.summary_table(results.select_runs(runs), pd.DataFrame(
        columns=["source_run_id", "experiment", "variant", "order", "accuracy"])).seeds.tolist() == [2]


def test_vanilla_learners_join_every_teacher_of_their_dataset_beside_willis():
    def rows(run_id, normalisation, mode, accuracies, preset="linear"):
        return [(str(run_id), "1", "mnist", normalisation, 5, preset, mode, i, value, 1.0)
                for i, value in enumerate(accuracies)]
    transfer = pd.DataFrame(rows(1, "batch", "gtn", [0.5, 0.7]) + rows(2, "batch", "vanilla", [0.9, 0.94]) +
                            rows(3, "weight_mean_only", "short_gtn", [0.2, 0.4]) +
                            rows(3, "weight_mean_only", "gtn", [0.6], preset="goodai"),
                            columns=willis.TRANSFER_COLUMNS)
    table = willis.transfer_table(transfer)
    assert list(zip(table.normalisation, table.preset)) == [("batch", "linear"), ("weight_mean_only", "goodai"),
                                                            ("weight_mean_only", "linear")]
    assert table.vanilla_mean.tolist()[::2] == pytest.approx([0.92, 0.92])  # the same learners for both teachers
    assert table.gtn_mean[0] == pytest.approx(0.6) and table.short_gtn_mean[2] == pytest.approx(0.3)
    assert table.willis_gtn.tolist()[::2] == [0.61, 0.61] and pd.isna(table.willis_gtn[1])  # goodai: not his
    assert willis.WILLIS_TRANSFER.set_index("preset").loc["base_larger3"].tolist() == [0.72, 0.97, 0.91]


@pytest.fixture(scope="module")
def normalisation_study(tmp_path_factory):
    """The smoke normalisation study (4 teachers, their transfer and robustness runs) in a file store."""
    prepare("mnist", default_data_root())
    runs_dir = tmp_path_factory.mktemp("normalisation-runs")
    env = {**os.environ, "GTN_RUNS_DIR": str(runs_dir), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "experiments/run_tasks.py", "--study", "normalisation", "--profile", "smoke",
               "--workers", "1", "--runs-dir", str(runs_dir)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    store = results.open_store(runs_dir=runs_dir)
    return SimpleNamespace(runs_dir=runs_dir, store=store, runs=results.load_runs(store))


def test_normalisation_table_has_one_row_per_normalisation(normalisation_study):
    teachers = willis.normalisation_runs(normalisation_study.runs)
    assert list(teachers.normalisation) == list(NORMALISATIONS) and set(teachers.status) == {"COMPLETED"}
    metrics = results.load_metrics(normalisation_study.store, teachers.run_id)
    table = willis.normalisation_table(teachers, metrics)
    assert list(table.normalisation) == list(NORMALISATIONS) and set(table.dataset) == {"mnist"}
    assert table[["seeds", "completed", "diverged"]].values.tolist() == [[1, 1, 0]] * 4
    assert table.accuracy_mean.tolist() == teachers.final_accuracy.tolist()
    assert (table.best_accuracy_mean >= table.accuracy_mean).all() and (table.meta_loss_spread > 0).all()
    # The other studies' sections read the batch-normalised teacher only.
    assert results.select_runs(normalisation_study.runs, normalisation="batch").run_id.tolist() == \
        teachers[teachers.normalisation == "batch"].run_id.tolist()


def test_transfer_rows_cover_every_preset_and_mode_of_both_evaluated_teachers(normalisation_study):
    runs, store = normalisation_study.runs, normalisation_study.store
    transfer = willis.load_transfer(store, runs)
    assert list(transfer.columns) == willis.TRANSFER_COLUMNS and transfer.accuracy.between(0, 1).all()
    teachers = runs[runs.name == results.TRAINING].set_index("run_id").normalisation
    assert (transfer.source_run_id.map(teachers) == transfer.normalisation).all()
    configs = [config for config in runs[runs.name == willis.TRANSFER].config]
    presets, learners = configs[0]["presets"], {tuple(c["modes"]): c["learners"] for c in configs}
    counts = transfer.groupby(["normalisation", "mode"]).size().to_dict()
    assert counts == {("batch", "gtn"): len(presets) * learners[("gtn", "short_gtn")],
                      ("batch", "short_gtn"): len(presets) * learners[("gtn", "short_gtn")],
                      ("batch", "vanilla"): len(presets) * learners[("vanilla",)],
                      ("weight_mean_only", "gtn"): len(presets) * learners[("gtn", "short_gtn")],
                      ("weight_mean_only", "short_gtn"): len(presets) * learners[("gtn", "short_gtn")]}
    table = willis.transfer_table(transfer)
    assert list(zip(table.normalisation, table.preset)) == [(n, p) for n in EVALUATED for p in presets]
    assert table[[f"{mode}_mean" for mode in ("gtn", "short_gtn", "vanilla")]].notna().all().all()
    vanilla = table.pivot(index="preset", columns="normalisation", values="vanilla_mean")
    assert (vanilla.batch == vanilla.weight_mean_only).all()  # one vanilla run, joined to both teachers
    willis_linear = willis.WILLIS_TRANSFER.set_index("preset").loc["linear"]
    assert (table[table.preset == "linear"].willis_gtn == willis_linear.willis_gtn).all()


def test_robustness_at_strength_zero_is_the_clean_accuracy_for_noise_and_blur(normalisation_study):
    robustness = willis.load_robustness(normalisation_study.store, normalisation_study.runs)
    assert list(robustness.columns) == willis.ROBUSTNESS_COLUMNS and "seconds" not in set(robustness.corruption)
    assert sorted(robustness.normalisation.unique()) == EVALUATED and (robustness.seconds > 0).all()
    clean = robustness[robustness.strength == 0].pivot_table(
        index=["run_id", "mode", "learner"], columns="corruption", values="accuracy")
    assert len(clean) > 0 and (clean.noise == clean.blur).all()
    table = willis.robustness_table(robustness)
    strengths = normalisation_study.runs[normalisation_study.runs.name == willis.ROBUSTNESS].config.iloc[0]["strengths"]
    keys = {(n, m, c, float(s)) for n in EVALUATED for m in ("gtn", "short_gtn", "vanilla")
            for c, values in strengths.items() for s in values}
    assert set(zip(table.normalisation, table["mode"], table.corruption, table.strength)) == keys
    assert table.accuracy_mean.between(0, 1).all() and (table.learners >= 1).all()


@pytest.fixture(scope="module")
def normalisation_report(normalisation_study, tmp_path_factory):
    """The notebook executed headless on the normalisation study's file store."""
    return report(tmp_path_factory.mktemp("report-normalisation"), "--runs-dir", str(normalisation_study.runs_dir))


def test_report_on_the_normalisation_study_writes_its_figures_and_tables(normalisation_report):
    for name in WILLIS_FIGURES:
        with Image.open(normalisation_report.figures / f"{name}.png") as image:
            assert image.width >= 300 and image.height >= 200, name
            assert len(image.convert("RGB").getcolors(1 << 24)) > 1, name
    assert len(pd.read_csv(normalisation_report.figures / "normalisation.csv")) == len(NORMALISATIONS)
    assert set(pd.read_csv(normalisation_report.figures / "transfer.csv").normalisation) == set(EVALUATED)
    corruptions = pd.read_csv(normalisation_report.figures / "robustness.csv").corruption
    assert set(corruptions) == set(willis.ORDERS["corruption"])
    assert "Traceback" not in normalisation_report.page.read_text()
    assert normalisation_report.summary[["experiment", "variant", "seeds"]].values.tolist() == [["B", "learned", 1]]


def test_report_without_the_normalisation_study_skips_its_sections(file_report):
    page = file_report.page.read_text()
    for missing in ("no normalisation-study runs in this store", "no transfer runs", "no robustness runs"):
        assert missing in page
    assert not any((file_report.figures / f"{name}.png").exists() for name in WILLIS_FIGURES)


def test_paired_tests_match_scipy_and_name_the_drop():
    from scipy import stats

    from analysis.paired import ablation_tests, paired_test

    learned = [0.90, 0.92, 0.95, 0.91, 0.93, 0.94, 0.96, 0.89]
    shuffled = [0.85, 0.90, 0.90, 0.92, 0.88, 0.90, 0.91, 0.86]
    result = paired_test(learned, shuffled)
    assert result["pairs"] == 8 and result["median_drop"] == pytest.approx(0.045)
    assert result["wilcoxon_p"] == pytest.approx(stats.wilcoxon(learned, shuffled, method="approx").pvalue)
    assert result["effect_size_r"] > 0.5  # most pairs drop
    assert math.isnan(paired_test([0.9, 0.9], [0.9, 0.9])["wilcoxon_p"])
    rows = pd.DataFrame([("r1", order, i, value, "C", "learned") for i, (a, b) in enumerate(zip(learned, shuffled))
                         for order, value in (("learned", a), ("shuffled", b))],
                        columns=["run_id", "order", "repeat", "accuracy", "experiment", "variant"])
    table = ablation_tests(rows, ["experiment", "variant"])
    assert table.iloc[0].pairs == 8 and table.iloc[0].wilcoxon_p == pytest.approx(result["wilcoxon_p"])


def test_the_report_also_writes_a_results_only_page_without_code(file_report):
    results_only = file_report.page.with_name("report_results.html").read_text()
    full = file_report.page.read_text()
    assert "results.open_store" in full and "results.open_store" not in results_only
    assert results_only.count("<img") == full.count("<img") > 0
    assert "<table" in results_only
