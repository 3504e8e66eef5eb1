"""The Sacred experiment and the study runner, end to end on real MNIST, as a user runs them."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import mnist_experiment
from gtn_core.checkpoint import load_checkpoint
from gtn_core.config import GTNConfig

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("mnist_ready")


def _command(*args, runs_dir):
    env = {**os.environ, "GTN_RUNS_DIR": str(runs_dir)}
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_smoke_run_records_config_metrics_and_both_artifacts(file_store):
    run = mnist_experiment.ex.run(named_configs=["smoke"], config_updates={"progress": False, "variant": "random_fixed"})
    assert run.status == "COMPLETED"
    record = file_store / str(run._id)
    config = json.loads((record / "config.json").read_text())
    assert (config["variant"], config["inner_steps"], config["outer_steps"], config["bn_mode"]) == \
        ("random_fixed", 5, 6, "train")
    metrics = json.loads((record / "metrics.json").read_text())
    assert len(metrics["meta_loss"]["values"]) == 6
    for name in ("test_accuracy", "train_accuracy", "inner_lr_mean", "inner_momentum_mean"):
        assert metrics[name]["steps"] == [3, 6], name
    assert 0.0 <= metrics["test_accuracy"]["values"][-1] <= 1.0
    assert run.result == metrics["test_accuracy"]["values"][-1]
    assert set(json.loads((record / "run.json").read_text())["artifacts"]) == {"teacher.pt", "curriculum.png", "training.pt"}
    assert (record / "curriculum.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    gtn, cfg = load_checkpoint(record / "teacher.pt")
    assert cfg.variant == "random_fixed" and gtn.inputs.noise.shape == (5, 16, 64)


def test_bad_config_fails_clearly_and_is_recorded(file_store):
    with pytest.raises(ValueError, match="variant='learnt'"):
        mnist_experiment.ex.run(named_configs=["smoke"], config_updates={"progress": False, "variant": "learnt"})
    (record,) = [p for p in file_store.iterdir() if p.name.isdigit()]
    run = json.loads((record / "run.json").read_text())
    assert run["status"] == "FAILED" and "variant='learnt'" in "".join(run["fail_trace"])


def test_docstring_command_runs_the_smoke_experiment(tmp_path):
    result = _command("experiments/mnist_experiment.py", "with", "smoke", "progress=False", runs_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Completed after" in result.stderr
    assert (tmp_path / "1" / "teacher.pt").exists()


def test_named_configs_set_the_study_shapes(tmp_path):
    shapes = {"experiment_a": (32, 20), "experiment_b": (32, 10), "experiment_c": (16, 10)}
    for name, (batch, steps) in shapes.items():
        result = _command("experiments/mnist_experiment.py", "print_config", "with", name, runs_dir=tmp_path)
        assert result.returncode == 0, result.stderr
        assert f"batch_size = {batch}" in result.stdout and f"inner_steps = {steps}" in result.stdout


def test_study_runner_smoke_grid_prints_a_summary(tmp_path):
    result = _command("experiments/run_tasks.py", "--profile", "smoke", "--only", "c", "--variants", "learned,random", "--no-ablation",
                      runs_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "c learned s0" in result.stdout and "c random s0" in result.stdout
    assert result.stdout.count("COMPLETED") == 2
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.isdigit()) == ["1", "2"]


def test_study_runner_rejects_bad_options(tmp_path):
    result = _command("experiments/run_tasks.py", "--variants", "learned,shiny", runs_dir=tmp_path)
    assert result.returncode == 2 and "'learned,shiny'" in result.stderr
    result = _command("experiments/run_tasks.py", "--outer-steps", "-5", runs_dir=tmp_path)
    assert result.returncode == 2 and "'-5': expected a positive integer" in result.stderr


def test_the_sacred_defaults_are_the_core_defaults():
    """The experiment's config and GTNConfig() must move together (a study run is the core's default run)."""
    from experiments.mnist_experiment import build_config, ex
    from gtn_core.config import GTNConfig

    assert build_config(dict(ex._create_run().config)) == GTNConfig()
    transposed = build_config(dict(ex._create_run(config_updates={"generator.upsampling": "transposed"}).config))
    assert transposed.generator.upsampling == "transposed"


def test_sacred_config_is_derived_from_the_dataclasses_and_print_config_explains_every_key(tmp_path):
    import dataclasses

    from experiments.dataclass_config import field_docs
    from gtn_core.config import config_to_dict

    config = dict(mnist_experiment.ex._create_run().config)
    core = config_to_dict(GTNConfig())
    assert {key: config[key] for key in core} == core
    assert set(config) - set(core) == {"dataset", "data_root", "progress", "checkpoint_every", "snapshot_every",
                                         "resume_from", "resume_store", "gan_run_id", "gan_store"}
    result = _command("experiments/mnist_experiment.py", "print_config", "with", "smoke", "generator.hidden_size=96",
                      runs_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    for key, doc in field_docs(GTNConfig).items():
        assert doc[:30] in result.stdout, key
    assert "hidden_size = 96" in result.stdout and "channels = [8, 16]" in result.stdout  # smoke only overrides
    assert "noise_size = 64" in result.stdout  # ... and the section's other keys keep their defaults
    assert {f.name for f in dataclasses.fields(GTNConfig)} <= set(config)


def test_every_teacher_records_teacher_and_curriculum(file_store):
    for updates in ({"teacher": "real_data"}, {"teacher": "distillation"},
                    {"curriculum": "shuffled_batch"}, {"curriculum": "none", "variant": "random"}):
        run = mnist_experiment.ex.run(named_configs=["smoke"], config_updates={"progress": False, "outer_steps": 2,
                                                                               "eval_every": 2, **updates})
        assert run.status == "COMPLETED"
        config = json.loads((file_store / str(run._id) / "config.json").read_text())
        assert (config["teacher"], config["curriculum"]) == (updates.get("teacher", "gtn"),
                                                             updates.get("curriculum", "full"))
        assert (file_store / str(run._id) / "curriculum.png").exists()


def test_tuned_sgd_docstring_command_runs_and_records_the_grid(tmp_path):
    result = _command("experiments/tuned_sgd.py", "with", "smoke", "progress=False", runs_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    run = json.loads((tmp_path / "1" / "run.json").read_text())
    info = json.loads((tmp_path / "1" / "info.json").read_text())
    assert run["status"] == "COMPLETED" and 0.0 < run["result"] <= 1.0
    assert [(p["lr"], p["momentum"]) for p in info["grid"]] == [(0.03, 0.0), (0.03, 0.9), (0.3, 0.0), (0.3, 0.9)]
    assert (info["best_lr"], info["best_momentum"]) in [(p["lr"], p["momentum"]) for p in info["grid"]]
    shown = _command("experiments/tuned_sgd.py", "print_config", runs_dir=tmp_path)
    assert "constant learning rates tried" in shown.stdout and "lrs = [0.01, 0.03, 0.1, 0.3, 1.0]" in shown.stdout
