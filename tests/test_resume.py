"""Training checkpoints, resume, interruption by signal and non-finite losses: smoke runs on real MNIST."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from analysis import results
from experiments import mnist_experiment, stopping
from gtn_core import meta
from gtn_core.checkpoint import load_training_state, save_training_state, training_state_step
from gtn_core.config import GTNConfig
from tracking.stores import FileStore

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("mnist_ready")
TIMINGS = ("step_seconds", "eval_seconds")  # wall-clock series: never equal between two runs


def _run(**updates):
    return mnist_experiment.ex.run(named_configs=["smoke"], config_updates={"progress": False, **updates})


def _metrics(store, run_id) -> dict:
    metrics = json.loads((store / str(run_id) / "metrics.json").read_text())
    return {name: dict(zip(series["steps"], series["values"])) for name, series in metrics.items()
            if name not in TIMINGS}


def _run_json(store, run_id) -> dict:
    return json.loads((store / str(run_id) / "run.json").read_text())


def _teacher_state(store, run_id) -> dict:
    return torch.load(store / str(run_id) / "teacher.pt", weights_only=False)["state_dict"]


def _stop_after(monkeypatch, step: int, signal_number=signal.SIGTERM):
    """Send this process `signal_number` right after outer step `step` is logged."""
    log_record = mnist_experiment.log_record

    def log_then_signal(run, record):
        log_record(run, record)
        if record.step == step:
            signal.raise_signal(signal_number)
    monkeypatch.setattr(mnist_experiment, "log_record", log_then_signal)


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupted_run_resumed_ends_like_the_uninterrupted_run(file_store, monkeypatch, signal_number):
    whole = _run()
    with monkeypatch.context() as patch:
        _stop_after(patch, 4, signal_number)
        with pytest.raises(stopping.Interrupted, match="after outer step 4"):
            _run()
    interrupted = "2"
    assert _run_json(file_store, interrupted)["status"] == "INTERRUPTED"
    assert training_state_step(file_store / interrupted / "training.pt") == 4
    resumed = _run(resume_from=interrupted)
    assert resumed.status == "COMPLETED" and resumed.result == whole.result
    assert resumed.info["resumed_from"] == {"run": interrupted, "step": 4}
    assert json.loads((file_store / "3" / "config.json").read_text())["resume_from"] == interrupted
    first, second, reference = (_metrics(file_store, run_id) for run_id in (interrupted, "3", "1"))
    assert all(step > 4 for series in second.values() for step in series)  # only the steps after the checkpoint
    assert {name: {**first.get(name, {}), **second.get(name, {})} for name in reference} == reference
    for key, value in _teacher_state(file_store, "1").items():
        assert torch.equal(_teacher_state(file_store, "3")[key], value), key
    runs = results.load_runs(FileStore(file_store)).set_index("run_id", drop=False)
    chained = results.chain_wall_seconds(FileStore(file_store), runs)
    assert chained["3"] == pytest.approx(runs.wall_seconds["2"] + runs.wall_seconds["3"])  # the resumed run's cost
    assert chained["1"] == runs.wall_seconds["1"]


def test_checkpoints_follow_checkpoint_every_and_are_listed_once(file_store):
    run = _run(checkpoint_every=2)
    record = _run_json(file_store, run._id)
    assert sorted(record["artifacts"]) == ["curriculum.png", "teacher.pt", "training.pt"]
    assert training_state_step(file_store / str(run._id) / "training.pt") == 6
    assert not [p for p in (file_store / str(run._id)).iterdir() if p.name.startswith(".")]  # no temp file left
    with pytest.raises(ValueError, match="checkpoint_every=0: expected None"):
        _run(checkpoint_every=0)


def test_a_training_state_of_another_config_or_a_truncated_file_is_refused(tmp_path):
    cfg = GTNConfig(outer_steps=5)
    path = save_training_state({"step": 2}, cfg, tmp_path / "training.pt")
    assert load_training_state(path, cfg) == {"step": 2}
    assert load_training_state(path, GTNConfig(outer_steps=5, teacher_lr=1e-4)) == {"step": 2}  # lowered: fine
    with pytest.raises(ValueError, match=r"training.pt: saved with another config.*batch_size: 32 -> 16"):
        load_training_state(path, GTNConfig(outer_steps=5, batch_size=16))
    with pytest.raises(ValueError, match=r"teacher_lr: 0.001 -> 0.01 \(may only be lowered\)"):
        load_training_state(path, GTNConfig(outer_steps=5, teacher_lr=1e-2))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:50])
    with pytest.raises(ValueError, match="truncated.pt: not a readable training state"):
        load_training_state(truncated, cfg)


def test_resume_names_a_run_without_checkpoint_or_with_another_config(file_store):
    first = _run(checkpoint_every=100, outer_steps=2, eval_every=2)  # a checkpoint at the last step only
    with pytest.raises(ValueError, match="at the last step 2; nothing left"):
        _run(outer_steps=2, eval_every=2, resume_from=first._id)
    with pytest.raises(ValueError, match=r"saved with another config.*batch_size: 16 -> 8"):
        _run(outer_steps=2, eval_every=2, batch_size=8, resume_from=first._id)
    with pytest.raises(ValueError, match="run '99' not found"):
        _run(resume_from="99")


def test_a_non_finite_meta_loss_fails_naming_the_step_and_the_checkpoint_and_resumes_with_a_lower_lr(
        file_store, monkeypatch):
    calls = {"n": 0}
    meta_loss = meta.meta_loss

    def nan_at_step_5(*args):
        calls["n"] += 1
        loss = meta_loss(*args)
        return loss * float("nan") if calls["n"] == 5 else loss
    with monkeypatch.context() as patch:
        patch.setattr(meta, "meta_loss", nan_at_step_5)
        with pytest.raises(FloatingPointError, match=r"outer step 5: meta-loss is nan.*run 1's training.pt \(step 3\)"):
            _run()
    assert _run_json(file_store, "1")["status"] == "FAILED"
    resumed = _run(resume_from="1", teacher_lr=5e-4, hyper_lr=5e-3)
    assert resumed.status == "COMPLETED" and resumed.info["resumed_from"] == {"run": "1", "step": 3}
    assert sorted(_metrics(file_store, resumed._id)["meta_loss"]) == [4, 5, 6]


def _command(*args, runs_dir):
    env = {**os.environ, "GTN_RUNS_DIR": str(runs_dir)}
    return subprocess.Popen([sys.executable, *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_sigterm_checkpoints_records_interrupted_exits_non_zero_and_resumes(tmp_path):
    script = ("experiments/mnist_experiment.py", "with", "smoke", "progress=False", "outer_steps=30",
              "checkpoint_every=1")
    process = _command(*script, runs_dir=tmp_path)
    checkpoint = tmp_path / "1" / "training.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert checkpoint.exists(), process.communicate()[1]
    process.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    _, stderr = process.communicate(timeout=30)
    assert process.returncode != 0 and time.monotonic() - sent < 30, stderr  # seconds: one step, one checkpoint
    assert json.loads((tmp_path / "1" / "run.json").read_text())["status"] == "INTERRUPTED"
    step = training_state_step(checkpoint)
    assert 1 <= step < 30
    resumed = _command(*script, "resume_from=1", runs_dir=tmp_path)
    _, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    assert json.loads((tmp_path / "2" / "info.json").read_text())["resumed_from"] == {"run": "1", "step": step}
