"""Analysis: the results loader on both stores and the notebook run headless on a smoke study.

One smoke study (Experiments B and C x learned/random, with their shuffle ablations, and a second seed of C learned
without one) is logged once per module to a temporary file store and, through --mongo, to SecantusDB on a free
127.0.0.1 port; every test reads it back.
"""
import io
import json
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pandas as pd
import pytest
from PIL import Image

from analysis import make_report, results
from experiments import board
from gtn_core.data import default_data_root, prepare

REPO = Path(__file__).resolve().parents[1]
FIGURES = ("test_accuracy", "ablation_boxplots", "curriculum_learned", "curriculum_random")
EXPECTED_CELLS = {("B", "learned"), ("B", "random"), ("C", "learned"), ("C", "random")}


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
                 curriculum="full", variant="learned", dataset="mnist", seed=seed, start_time=start + timedelta(minutes=i), final_accuracy=i / 10,
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
    assert list(ablation.columns) == ["run_id", "source_run_id", "order", "repeat", "accuracy", *results.CELL_KEYS]
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
