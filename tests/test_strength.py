"""The strength study: teacher snapshots during training (kept across a resume), the shuffle ablation of a
snapshot, the study's grid and its resume, analysis.strength's tables and the report's drop-over-training chart."""
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from analysis import results, strength
from conftest import report_on
from experiments import mnist_experiment, run_tasks, stopping, studies
from experiments.source_teacher import load_source_teacher
from gtn_core.data import default_data_root, prepare

REPO = Path(__file__).resolve().parents[1]


def _run(**updates):
    return mnist_experiment.ex.run(named_configs=["smoke"], config_updates={"progress": False, **updates})


def _state(path: Path) -> dict:
    return torch.load(path, weights_only=False)["state_dict"]


def test_snapshots_follow_snapshot_every_and_reach_back_through_a_resume(file_store, monkeypatch, mnist_ready):
    log_record = mnist_experiment.log_record

    def stop_after_four(run, record):
        log_record(run, record)
        if record.step == 4:
            signal.raise_signal(signal.SIGTERM)
    with monkeypatch.context() as patch:
        patch.setattr(mnist_experiment, "log_record", stop_after_four)
        with pytest.raises(stopping.Interrupted):
            _run(snapshot_every=2)
    resumed = _run(snapshot_every=2, resume_from="1")
    first = json.loads((file_store / "1" / "run.json").read_text())
    assert sorted(a for a in first["artifacts"] if a.startswith("teacher_")) == ["teacher_2.pt", "teacher_4.pt"]
    assert resumed.info["snapshot_steps"] == [6]
    final, last = _state(file_store / "2" / "teacher.pt"), _state(file_store / "2" / "teacher_6.pt")
    assert all(torch.equal(final[key], last[key]) for key in final)  # the snapshot at the last step is the teacher
    assert not torch.equal(_state(file_store / "1" / "teacher_2.pt")["inputs.noise"], final["inputs.noise"])
    teacher, cfg, _, _ = load_source_teacher("2", str(file_store), None, torch.device("cpu"), step=2)
    early = _state(file_store / "1" / "teacher_2.pt")
    assert all(torch.equal(teacher.state_dict()[key], early[key]) for key in early)
    with pytest.raises(ValueError, match=r"source_step=3: run 2 .* kept no teacher snapshot .*\[2, 4, 6\]"):
        load_source_teacher("2", str(file_store), None, torch.device("cpu"), step=3)
    with pytest.raises(ValueError, match="source_step=0: expected None"):
        load_source_teacher("2", str(file_store), None, torch.device("cpu"), step=0)
    with pytest.raises(ValueError, match="snapshot_every=0: expected None"):
        _run(snapshot_every=0)


def test_the_strength_grid_snapshots_every_cell_and_ablates_every_snapshot():
    args = run_tasks.build_parser().parse_args(["--study", "strength", "--seeds", "3"])
    args.gan_source = {}
    grid = studies.training_tasks(args)
    arms = len(strength.ARM_ORDER)
    assert [task.label for task in grid[:arms]] == [f"c {arm} s0" for arm in strength.ARM_ORDER]
    assert {task.updates["outer_steps"] for task in grid} == {2000}
    assert {task.updates["snapshot_every"] for task in grid} == {200}
    levers = {task.label.split()[1]: tuple(run_tasks.expected_config(task)[key] for key in strength.LEVERS)
              for task in grid[:arms]}
    assert {strength.ARMS[values] for values in levers.values()} == set(levers)  # every arm reads back as itself
    ablations = studies.evaluation_tasks(grid[0], {"source_run_id": "7"}, args)
    assert [(task.updates["source_step"], task.updates.get("move_schedule", False)) for task in ablations] == \
        [(step, False) for step in range(200, 2001, 200)] + [(2000, True)]  # and the last with the schedule moving
    shared = next(task for task in grid if task.label == "c shared s0")
    assert len(studies.evaluation_tasks(shared, {"source_run_id": "8"}, args)) == 10  # one lr: nothing to move
    args.arms = ["constant", "nope"]
    with pytest.raises(SystemExit, match="the strength study has no arm nope; expected a subset of cosine"):
        studies.training_tasks(args)


@pytest.fixture(scope="module")
def strength_study(tmp_path_factory):
    """The smoke strength study of two arms (two snapshots each, each ablated) in a file store, run twice."""
    prepare("mnist", default_data_root())  # a no-op when `make` prepared it
    runs_dir = tmp_path_factory.mktemp("strength-runs")
    words = [sys.executable, "experiments/run_tasks.py", "--study", "strength", "--profile", "smoke", "--arms",
             "cosine,constant", "--workers", "1", "--runs-dir", str(runs_dir)]
    env = {**os.environ, "GTN_RUNS_DIR": str(runs_dir), "OMP_NUM_THREADS": "1"}
    first, second = (subprocess.run(words, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
                     for _ in range(2))
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    store = results.open_store(runs_dir=runs_dir)
    return SimpleNamespace(runs_dir=runs_dir, second=second, store=store, runs=results.load_runs(store))


def test_the_smoke_study_ablates_both_snapshots_of_both_arms_and_resumes(strength_study):
    assert strength_study.second.returncode == 0 and "nothing to run" in strength_study.second.stdout
    teachers = strength.strength_runs(strength_study.runs)
    assert sorted(teachers.arm) == ["constant", "cosine"]
    snapshots = results.load_ablation(strength_study.store, strength_study.runs, snapshots=True)
    assert set(zip(snapshots.source_run_id, snapshots.source_step)) == {
        (run_id, step) for run_id in teachers.run_id for step in (3, 6)}
    assert results.load_ablation(strength_study.store, strength_study.runs).empty  # no final-teacher ablation
    both = results.load_ablation(strength_study.store, strength_study.runs, snapshots=True, moved_schedule=True)
    moved = both[both.move_schedule]
    assert set(zip(moved.source_run_id, moved.source_step)) == {(run_id, 6) for run_id in teachers.run_id}


def test_the_drop_tables_pair_learners_per_snapshot(strength_study):
    teachers = strength.strength_runs(strength_study.runs)
    ablation = results.load_ablation(strength_study.store, strength_study.runs, snapshots=True)
    drops = strength.drop_over_training(teachers, ablation)
    assert list(drops.arm) == ["cosine", "cosine", "constant", "constant"] and drops.source_step.tolist() == [3, 6] * 2
    assert (drops["drop"] == drops.learned_accuracy - drops.shuffled_accuracy).all() and (drops.pairs == 3).all()
    table = strength.drop_table(teachers, ablation)
    assert table.seeds.tolist() == [1] * 4 and table.drop_mean.tolist() == pytest.approx(drops["drop"].tolist())
    assert table.wilcoxon_p.dropna().between(0, 1).all() and table.pairs.tolist() == [3] * 4


def test_the_final_summary_sets_each_arms_last_snapshot_beside_its_accuracy_and_cost(strength_study):
    teachers = strength.strength_runs(strength_study.runs)
    ablation = results.load_ablation(strength_study.store, strength_study.runs, snapshots=True, moved_schedule=True)
    summary = strength.final_summary(teachers, ablation).set_index("arm")
    last = strength.drop_table(teachers, ablation).query("source_step == 6").set_index("arm")
    assert list(summary.index) == ["cosine", "constant"] and (summary.source_step == 6).all()
    assert summary.drop_mean.to_dict() == pytest.approx(last.drop_mean.to_dict())
    accuracy = teachers.set_index("arm").final_accuracy
    assert summary.final_accuracy_mean.to_dict() == pytest.approx(accuracy.to_dict())
    assert summary.accuracy_cost["cosine"] == 0
    assert summary.accuracy_cost["constant"] == pytest.approx(accuracy["cosine"] - accuracy["constant"])
    assert (summary.wall_minutes * 60).to_dict() == pytest.approx(teachers.set_index("arm").wall_seconds.to_dict())


def test_teachers_of_another_length_form_their_own_group(strength_study):
    teachers = strength.strength_runs(strength_study.runs)
    ablation = results.load_ablation(strength_study.store, strength_study.runs, snapshots=True, moved_schedule=True)
    longer = teachers.assign(outer_steps=teachers.outer_steps.where(teachers.arm == "cosine", 12))
    summary = strength.final_summary(longer, ablation).set_index("arm")
    assert summary.outer_steps.to_dict() == {"cosine": 6, "constant": 12}
    assert summary.accuracy_cost["cosine"] == 0 and pd.isna(summary.accuracy_cost["constant"])  # no cosine of 12
    both = longer.assign(arm="cosine")  # the same arm at two lengths: two groups, never one mean over them
    assert strength.drop_table(both, ablation).groupby("outer_steps").seeds.max().to_dict() == {6: 1, 12: 1}


def test_the_schedule_table_sets_the_drop_with_the_schedule_moved_beside_the_kept_one(strength_study):
    teachers = strength.strength_runs(strength_study.runs)
    both = results.load_ablation(strength_study.store, strength_study.runs, snapshots=True, moved_schedule=True)
    table = strength.schedule_table(teachers, both)
    assert list(table.arm) == ["cosine", "constant"] and (table.source_step == 6).all() and (table.seeds == 1).all()
    kept = strength.drop_table(teachers, both)
    kept = kept[kept.source_step == 6].set_index("arm").drop_mean
    assert table.set_index("arm").kept_drop_mean.to_dict() == pytest.approx(kept.to_dict())
    moved = both[both.move_schedule & both.source_run_id.isin(teachers.run_id)]
    cosine = moved[moved.source_run_id == teachers.set_index("arm").run_id["cosine"]].groupby("order").accuracy.mean()
    assert table.moved_drop_mean.iloc[0] == pytest.approx(cosine.learned - cosine.shuffled)
    assert strength.schedule_table(teachers, both[~both.move_schedule]).empty


def test_goodai_reference_and_the_arm_closest_to_it(strength_study):
    assert strength.goodai_reference("mnist", "C") == pytest.approx((0.952, 0.952 - 0.58))
    assert strength.goodai_reference("mnist", "paper") is None and strength.goodai_reference("fashion_mnist", "C") is None
    table = strength.drop_table(strength.strength_runs(strength_study.runs),
                                results.load_ablation(strength_study.store, strength_study.runs, snapshots=True))
    closest = strength.closest_to_goodai(table)
    assert len(closest) == 1 and closest.goodai_drop.iloc[0] == pytest.approx(0.372)
    final = table[table.source_step == table.source_step.max()]
    distance = (final.drop_mean - 0.372).abs()
    assert closest.arm.iloc[0] == final.arm[distance.idxmin()]
    assert strength.closest_to_goodai(table.assign(dataset="fashion_mnist")).empty  # GoodAI published MNIST only


def test_the_report_charts_the_drop_over_training(strength_study, tmp_path):
    figures, page = report_on(strength_study.runs_dir, tmp_path, ("strength_drop",), min_width=600)
    assert set(pd.read_csv(figures / "strength.csv").arm) == {"cosine", "constant"}
    section = page[page.index("Every arm at its last snapshot"):]
    cells = re.findall(r'class="data row\d+ col\d+" >([^<]*)<', section)
    assert cells and not [cell for cell in cells if re.fullmatch(r"-?\d+\.\d{5,}", cell)]  # shown rounded


def test_the_headline_figures_are_published_from_the_first_store_that_makes_them(strength_study, tmp_path):
    from analysis import publish_figures

    with pytest.raises(SystemExit, match="no such store: .*missing"):
        publish_figures.publish([strength_study.runs_dir, tmp_path / "missing"], tmp_path / "docs")
    sources = publish_figures.publish([strength_study.runs_dir], tmp_path / "docs")
    assert "strength_drop" in sources and set(sources) <= set(publish_figures.HEADLINE)
    assert "test_accuracy" not in sources  # snapshot-keeping runs stay out of GoodAI's sections
    assert sorted(path.stem for path in (tmp_path / "docs").iterdir()) == sorted(sources)
    # another dataset: only the per-dataset figures, suffixed; this store has no Fashion-MNIST runs, so none
    assert publish_figures.publish([strength_study.runs_dir], tmp_path / "fashion", "fashion_mnist") == {}


def test_the_learned_schedules_are_read_from_each_teachers_info(strength_study):
    teachers = strength.strength_runs(strength_study.runs)
    schedules = strength.learned_schedules(strength_study.store, teachers)
    steps = teachers.iloc[0].config["inner_steps"]
    assert len(schedules) == len(teachers) * steps
    first = teachers.iloc[0]
    info = strength_study.store.info(first.run_id)
    mine = schedules[schedules.run_id == first.run_id]
    assert mine.lr.tolist() == info["final_inner_lrs"] and mine.momentum.tolist() == info["final_inner_momenta"]
    assert mine.inner_step.tolist() == list(range(1, steps + 1)) and set(schedules.arm) == {"cosine", "constant"}


def test_the_bench_script_prints_every_table_and_writes_its_csv_and_results(strength_study, tmp_path):
    results_json = tmp_path / "results.json"
    results_json.write_text("[]")
    done = subprocess.run([sys.executable, "bench/strength_study.py", "--runs-dir", str(strength_study.runs_dir),
                           "--csv-dir", str(tmp_path), "--results", str(results_json)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    for heading in ("every arm at its last snapshot", "1. meta-training length and outer-lr schedule (mnist, ", "largest final drop",
                    "kept in time order and moved with the batches", "learned inner lr / momentum per step"):
        assert heading in done.stdout
    assert len(pd.read_csv(tmp_path / "strength.csv")) == 4  # two arms x two snapshots
    names = {entry["name"] for entry in json.loads(results_json.read_text())}
    # the smoke teachers' 6 outer steps are not the study's 2,000: their entries say so
    assert names == {"strength_mnist_cosine_6steps_final_drop", "strength_mnist_constant_6steps_final_drop"}
