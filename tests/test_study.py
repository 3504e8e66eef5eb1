"""The study runner and the shuffle ablation, end to end on real MNIST with smoke configs."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import mnist_experiment, run_tasks, shuffle_ablation, stopping
from tracking.stores import FileStore

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("mnist_ready")
GRID = ["--profile", "smoke", "--only", "c", "--variants", "learned,random"]


@pytest.fixture
def clean_observers():
    """Restore the experiments' observers after a test that runs them in this process."""
    saved = {ex: list(ex.observers) for ex in (mnist_experiment.ex, shuffle_ablation.ex)}
    yield
    for ex, observers in saved.items():
        ex.observers[:] = observers


def _runner(*args, store):
    env = {**os.environ, "GTN_RUNS_DIR": str(store)}
    return subprocess.run([sys.executable, "experiments/run_tasks.py", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def read_runs(folder):
    """Every run of the file store `folder` (none when it does not exist)."""
    return FileStore(folder).records(missing_ok=True)


def _completed(store, experiment):
    return [run for run in read_runs(store) if run.name == experiment and run.status == "COMPLETED"]


def test_grid_runs_once_resumes_and_reruns_exactly_a_deleted_cell(tmp_path):
    first = _runner(*GRID, "--workers", "2", store=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    trained = _completed(tmp_path, "gtn_mnist")
    assert sorted(run.config["variant"] for run in trained) == ["learned", "random"]
    assert len(_completed(tmp_path, "gtn_shuffle_ablation")) == 2
    assert "c learned s0" in first.stdout and "c random s0 shuffle" in first.stdout

    second = _runner(*GRID, "--workers", "2", store=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "nothing to run" in second.stdout
    assert len(read_runs(tmp_path)) == 4

    random_run = next(run for run in trained if run.config["variant"] == "random")
    shutil.rmtree(tmp_path / random_run.run_id)
    third = _runner(*GRID, "--workers", "2", store=tmp_path)
    assert third.returncode == 0, third.stderr
    assert "1 already done, 1 to run" in third.stdout
    new = [run for run in read_runs(tmp_path) if int(run.run_id) > 4]
    assert sorted((run.name, run.config.get("variant")) for run in new) == \
        [("gtn_mnist", "random"), ("gtn_shuffle_ablation", None)]


def test_each_teacher_is_evaluated_as_it_completes_and_a_missing_teacher_file_is_reported(tmp_path, clean_observers,
                                                                                            capsys):
    args = [*GRID, "--workers", "1", "--runs-dir", str(tmp_path)]
    assert run_tasks.main(args) == 0
    assert [run.name for run in read_runs(tmp_path)] == ["gtn_mnist", "gtn_shuffle_ablation"] * 2
    capsys.readouterr()

    (learned, learned_ablation, random_run, random_ablation) = read_runs(tmp_path)
    shutil.rmtree(tmp_path / random_ablation.run_id)
    (tmp_path / random_run.run_id / "teacher.pt").unlink()  # a store kept without its .pt files
    assert run_tasks.main(args) == 1
    out = capsys.readouterr().out
    assert "evaluations of teachers finished earlier: 2 runs (1 already done, 1 to run)" in out
    assert f"run {random_run.run_id} of the file store {tmp_path} has no file teacher.pt" in out
    assert len(read_runs(tmp_path)) == 3  # nothing ran, nothing was recorded


def test_dry_run_shows_the_plan_and_runs_nothing(tmp_path):
    result = _runner("--only", "a,b", "--seeds", "2", "--dry-run", store=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "12 training cells (0 already done, 12 to run)" in result.stdout
    assert "b random_fixed s1" in result.stdout
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_a_failing_cell_is_reported_and_the_others_finish(tmp_path, monkeypatch, clean_observers):
    real_build = mnist_experiment.build_config

    def build_or_fail(values):
        if values["variant"] == "random":
            raise RuntimeError("injected failure")
        return real_build(values)

    monkeypatch.setattr(mnist_experiment, "build_config", build_or_fail)
    code = run_tasks.main([*GRID, "--workers", "1", "--no-ablation", "--runs-dir", str(tmp_path)])
    assert code == 1
    statuses = {run.config["variant"]: run.status for run in read_runs(tmp_path)}
    assert statuses == {"learned": "COMPLETED", "random": "FAILED"}


def test_ablation_logs_each_order_for_a_smoke_teacher(tmp_path, clean_observers):
    from sacred.observers import FileStorageObserver

    for ex in (mnist_experiment.ex, shuffle_ablation.ex):
        ex.observers[:] = [FileStorageObserver(str(tmp_path))]
    source = mnist_experiment.ex.run(named_configs=["smoke"], config_updates={"progress": False})
    run = shuffle_ablation.ex.run(config_updates={"source_run_id": source._id, "source_store": str(tmp_path),
                                                  "repeats": 4, "test_size": 1000, "progress": False})
    metrics = json.loads((tmp_path / str(run._id) / "metrics.json").read_text())
    assert len(metrics["accuracy_learned"]["values"]) == 4
    assert len(metrics["accuracy_shuffled"]["values"]) == 4
    assert set(run.result) == {"median_learned", "median_shuffled"}
    assert json.loads((tmp_path / str(run._id) / "config.json").read_text())["source_run_id"] == source._id


def test_ablation_names_a_missing_source_run(tmp_path, clean_observers):
    shuffle_ablation.ex.observers[:] = []
    with pytest.raises(ValueError, match="run '99' not found in the file store"):
        shuffle_ablation.ex.run(config_updates={"source_run_id": "99", "source_store": str(tmp_path), "progress": False})


def test_ablation_refuses_a_move_schedule_that_is_not_a_bool_before_reading_its_teacher(tmp_path, clean_observers):
    shuffle_ablation.ex.observers[:] = []
    with pytest.raises(ValueError, match="move_schedule='yes': expected True or False"):  # run 99 does not exist
        shuffle_ablation.ex.run(config_updates={"source_run_id": "99", "source_store": str(tmp_path), "progress": False,
                                                "move_schedule": "yes"})


def test_ray_local_runs_a_smoke_grid(tmp_path):
    pytest.importorskip("ray")
    result = _runner(*GRID, "--ray", "local", "--no-ablation", store=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(_completed(tmp_path, "gtn_mnist")) == 2


def test_smoke_profile_keeps_each_experiment_shape():
    args = run_tasks.build_parser().parse_args(["--profile", "smoke", "--variants", "learned"])
    shapes = {task.label: (config["batch_size"], config["inner_steps"], config["generator"]["hidden_size"])
              for task in run_tasks.training_tasks(args) for config in [run_tasks.expected_config(task)]}
    assert shapes == {"a learned s0": (32, 20, 128), "b learned s0": (32, 10, 128), "c learned s0": (16, 10, 128)}


def _write_run(store, run_id, config, experiment="gtn_mnist", status="COMPLETED"):
    folder = store / str(run_id)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "run.json").write_text(json.dumps({"experiment": {"name": experiment}, "status": status}))


def test_a_run_stored_with_the_older_flat_keys_still_resumes_and_a_changed_one_is_explained(tmp_path):
    args = run_tasks.build_parser().parse_args(["--only", "c", "--variants", "learned", "--runs-dir", str(tmp_path)])
    (task,) = run_tasks.training_tasks(args)
    wanted = run_tasks.expected_config(task)
    flat = {key: value for key, value in wanted.items() if key not in ("generator", "learner", "teacher",
                                                                        "curriculum")}
    flat.update(noise_size=64, teacher_hidden_size=1024, teacher_base_channels=128, learner_channels=[32, 64],
                lr_schedule="cosine")  # as stored before the config became nested (no teacher_upsampling yet)
    _write_run(tmp_path, 1, flat)
    assert run_tasks.completed_run(task, read_runs(tmp_path)).run_id == "1"
    _write_run(tmp_path, 2, {**flat, "teacher_hidden_size": 512})
    (tmp_path / "1" / "run.json").write_text(json.dumps({"experiment": {"name": "gtn_mnist"}, "status": "FAILED"}))
    result = _runner("--only", "c", "--variants", "learned", "--dry-run", store=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "to run (stored run 2 differs: generator.hidden_size: 512 -> 1024)" in result.stdout


@pytest.mark.parametrize("study, arms", [("curricula", ["full", "shuffled_batch", "all_shuffled", "none"]),
                                         ("baselines", ["full", "real_data", "tuned_sgd", "distillation"])])
def test_smoke_studies_run_end_to_end_and_resume(tmp_path, study, arms):
    first = _runner("--study", study, "--profile", "smoke", "--workers", "2", store=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert all(f"b {arm} s0" in first.stdout for arm in arms)
    assert first.stdout.count("COMPLETED") == 4 and "shuffle ablation" not in first.stdout  # none in these studies
    runs = [run for run in read_runs(tmp_path) if run.status == "COMPLETED"]
    assert len(runs) == 4 and {run.config["batch_size"] for run in runs} == {32}
    second = _runner("--study", study, "--profile", "smoke", "--dry-run", store=tmp_path)
    assert "4 training cells (4 already done, 0 to run)" in second.stdout


def test_older_flat_keys_map_into_their_sections_with_their_values():
    from tracking.stored_config import upgrade_config

    upgraded = upgrade_config({"variant": "learned", "teacher_upsampling": "transposed", "learner_channels": [16, 32],
                               "teacher_hidden_size": 256, "noise_size": 32})
    assert upgraded["generator"]["upsampling"] == "transposed" and upgraded["generator"]["hidden_size"] == 256
    assert upgraded["generator"]["noise_size"] == 32 and upgraded["learner"]["channels"] == [16, 32]
    assert (upgraded["teacher"], upgraded["curriculum"], upgraded["lr_schedule"]) == ("gtn", "full", "constant")
    assert "teacher_hidden_size" not in upgraded


def test_an_interrupted_cell_is_resumed_from_its_checkpoint_not_rerun(tmp_path, monkeypatch, clean_observers, capsys):
    import signal

    from experiments.observers import attach_observers

    args = [*GRID[:-1], "learned", "--workers", "1", "--no-ablation", "--runs-dir", str(tmp_path)]
    (task,) = run_tasks.training_tasks(run_tasks.build_parser().parse_args(args))
    log_record = mnist_experiment.log_record

    def log_then_stop(run, record):
        log_record(run, record)
        if record.step == 4:
            signal.raise_signal(signal.SIGTERM)
    attach_observers(mnist_experiment.ex, tmp_path)
    with monkeypatch.context() as patch:
        patch.setattr(mnist_experiment, "log_record", log_then_stop)
        with pytest.raises(stopping.Interrupted):
            mnist_experiment.ex.run(named_configs=list(task.named_configs),
                                    config_updates={**task.updates, "progress": False})
    assert run_tasks.main([*args, "--dry-run"]) == 0
    assert "c learned s0" in capsys.readouterr().out.split("resume from run 1 (step 4)")[0]
    assert run_tasks.main(args) == 0
    (interrupted, resumed) = read_runs(tmp_path)
    assert (interrupted.status, resumed.status, resumed.config["resume_from"]) == ("INTERRUPTED", "COMPLETED", "1")
    assert FileStore(tmp_path).info(resumed.run_id)["resumed_from"] == {"run": "1", "step": 4}
    assert run_tasks.main([*args, "--dry-run"]) == 0
    assert "done (run 2)" in capsys.readouterr().out


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_to_the_study_interrupts_its_workers_which_resume_on_the_next_invocation(tmp_path, workers):
    import signal
    import time

    grid = [*GRID, "--outer-steps", "400", "--no-ablation", "--workers", str(workers)]
    expected = 2 if workers == 2 else 1  # one process: the running cell stops, the other never starts
    env = {**os.environ, "GTN_RUNS_DIR": str(tmp_path)}
    study = subprocess.Popen([sys.executable, "experiments/run_tasks.py", *grid], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while len(list(tmp_path.glob("*/training.pt"))) < expected and time.monotonic() < deadline \
            and study.poll() is None:
        time.sleep(0.5)
    assert len(list(tmp_path.glob("*/training.pt"))) == expected, "every running cell should have checkpointed"
    sent = time.monotonic()
    study.send_signal(signal.SIGTERM)
    out, err = study.communicate(timeout=60)
    assert time.monotonic() - sent < 30 and study.returncode == 1, out + err
    assert out.count("INTERRUPTED") == expected and "stopped by a signal" in out
    assert [run.status for run in read_runs(tmp_path)] == ["INTERRUPTED"] * expected
    dry = _runner(*grid, "--dry-run", store=tmp_path)
    assert dry.stdout.count("resume from run") == expected, dry.stdout


def test_a_study_whose_file_store_was_deleted_resumes_and_ablates_from_mongodb(tmp_path, mongo_base, clean_observers):
    import signal

    from analysis import results
    from experiments.observers import attach_observers
    from tracking.stores import MongoStore

    url, first, second = f"{mongo_base}/resume_from_mongo", tmp_path / "first", tmp_path / "second"
    grid = ["--profile", "smoke", "--only", "c", "--mongo", url]
    done = _runner(*grid, "--variants", "learned", "--no-ablation", "--workers", "1", store=first)
    assert done.returncode == 0, done.stdout + done.stderr
    args = run_tasks.build_parser().parse_args([*grid, "--variants", "random", "--runs-dir", str(first)])
    (task,) = run_tasks.training_tasks(args)
    log_record = mnist_experiment.log_record

    def log_then_stop(run, record):
        log_record(run, record)
        if record.step == 4:
            signal.raise_signal(signal.SIGTERM)
    attach_observers(mnist_experiment.ex, first, url)
    mnist_experiment.log_record = log_then_stop
    try:
        with pytest.raises(stopping.Interrupted):
            mnist_experiment.ex.run(named_configs=list(task.named_configs),
                                    config_updates={**task.updates, "progress": False})
    finally:
        mnist_experiment.log_record = log_record
    shutil.rmtree(first)  # from here on, only MongoDB knows the study

    whole = [*grid, "--variants", "learned,random,random_fixed", "--workers", "1"]
    dry = _runner(*whole, "--dry-run", store=second)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    lines = {line.split()[1]: line for line in dry.stdout.splitlines() if line.startswith("  c ")}
    assert "done (run 1)" in lines["learned"] and "resume from run 2 (step 4)" in lines["random"], dry.stdout
    assert "to run" in lines["random_fixed"]
    study = _runner(*whole, store=second)
    assert study.returncode == 0, study.stdout + study.stderr
    assert "1 already done, 2 to run" in study.stdout
    assert "evaluations of teachers finished earlier: 1 runs (0 already done, 1 to run)" in study.stdout

    mongo = MongoStore(url)
    records = {record.run_id: record for record in mongo.records()}
    training = [r for r in records.values() if r.name == "gtn_mnist"]
    assert [(r.config["variant"], r.status) for r in training] == [
        ("learned", "COMPLETED"), ("random", "INTERRUPTED"), ("random", "COMPLETED"), ("random_fixed", "COMPLETED")]
    resumed = training[2]
    assert (resumed.config["resume_from"], resumed.config["resume_store"]) == ("2", url)
    assert mongo.info(resumed.run_id)["resumed_from"] == {"run": "2", "step": 4}
    ablations = [r for r in records.values() if r.name == "gtn_shuffle_ablation"]
    references = sorted((r.config["source_run_id"], r.config["source_store"]) for r in ablations)
    # the learned teacher is only in MongoDB (GridFS); the two trained here are named in this machine's file store
    # the learned teacher's ablation ran first (file-store run 1); then each teacher trained here, ablated as it
    # completed: random (run 2, ablation 3), random_fixed (run 4, ablation 5)
    assert references == [("1", url), ("2", str(second)), ("4", str(second))]
    local = [r.config["variant"] for r in read_runs(second) if r.name == "gtn_mnist"]
    assert local == ["random", "random_fixed"]  # the learned teacher was ablated from GridFS: no copy of it here
    curve = results.load_metrics(mongo, [resumed.run_id], names=["meta_loss"])
    assert list(curve.step) == list(range(1, resumed.config["outer_steps"] + 1))  # stitched across the resume
    ablation = results.load_ablation(mongo)
    assert set(ablation.variant) == {"learned", "random", "random_fixed"}
    mongo.close()
    again = _runner(*whole, store=second)
    assert again.returncode == 0 and "nothing to run" in again.stdout, again.stdout + again.stderr


def test_a_pool_whose_worker_dies_outright_reports_it_and_starts_nothing_more(tmp_path):
    from collections import deque
    from types import SimpleNamespace

    from experiments import launch

    tasks = deque(launch.Task(f"dies {i}", "dying_worker", (), {}) for i in range(3))
    args = SimpleNamespace(workers=2, ray=None, mongo=None, ranks=1)
    outcomes = list(launch.run_all(tasks, args, tmp_path))
    assert [outcome.status for outcome in outcomes] == ["FAILED", "FAILED"]
    assert all("ended abruptly" in outcome.error for outcome in outcomes)
    assert [task.label for task in tasks] == ["dies 2"]  # left for the next invocation


def test_each_pool_cell_gets_the_cores_the_running_ones_leave():
    from experiments.launch import share_of_cores

    assert share_of_cores(2, [], workers=2, queued=5) == 1
    assert share_of_cores(2, [], workers=2, queued=1) == 2  # a single cell (the GAN) gets every core
    assert share_of_cores(16, [], workers=4, queued=2) == 8
    assert share_of_cores(16, [8], workers=4, queued=10) == 2  # 8 left for the 3 that can start
    assert share_of_cores(2, [2], workers=2, queued=3) == 1


def test_a_worker_killed_outright_is_an_outcome_not_a_traceback():
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    from experiments import launch

    task = launch.Task("c learned s0", "experiments.mnist_experiment", ("smoke",), {})
    broken = Future()
    broken.set_exception(BrokenProcessPool("A process in the process pool was terminated abruptly"))
    stop = launch.StudyStop()
    assert launch._outcome(broken, task, stop).status == "FAILED"
    stop.received = 15  # SIGTERM reached the study (and a worker still starting)
    outcome = launch._outcome(broken, task, stop)
    assert (outcome.status, outcome.task) == ("INTERRUPTED", task) and "ended abruptly" in outcome.error
