"""Transfer across learners and robustness (after Willis 2021): the training modes, the Sacred experiments on a
smoke teacher, their input checks, and the normalisation study end to end with its evaluations."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import tiny_config
from gtn_core.config import LearnerConfig
from gtn_core.evaluate import meta_test
from gtn_core.evaluations.training_modes import VanillaTraining, check_modes, train_learner, train_on_real_data
from gtn_core.teachers import GTN
from gtn_core.teachers.base import tensor_images
from gtn_core.teachers import Curriculum
from tracking.stores import FileStore

REPO = Path(__file__).resolve().parents[1]


def test_short_gtn_learners_take_the_first_steps_with_their_lrs(float64):
    cfg = tiny_config(inner_steps=4)
    gtn = GTN(cfg)
    with torch.no_grad():
        gtn.hparams.log_lr.copy_(torch.log(torch.tensor([0.1, 0.2, 0.3, 0.4])))
        curriculum = gtn.curriculum(torch.Generator().manual_seed(0))
        images = curriculum.materialize()
    short = train_learner("short_gtn", gtn, cfg, cfg.learner, torch.Generator().manual_seed(3), None, None, 2,
                          VanillaTraining())[1]
    two_steps = tiny_config(inner_steps=2)
    truncated = GTN(two_steps)
    with torch.no_grad():
        truncated.hparams.log_lr.copy_(gtn.hparams.log_lr[:2])
        truncated.hparams.logit_momentum.copy_(gtn.hparams.logit_momentum[:2])
    by_hand = meta_test(truncated, two_steps, torch.Generator().manual_seed(3),
                        curriculum=Curriculum(tensor_images(images[:2]), curriculum.labels[:2]))[1]
    for name, value in by_hand.params.items():
        torch.testing.assert_close(short.params[name], value)
    with pytest.raises(ValueError, match="short_steps=5: expected an int in 1..4"):
        train_learner("short_gtn", gtn, cfg, cfg.learner, torch.Generator(), None, None, 5, VanillaTraining())
    with pytest.raises(ValueError, match="modes=\\['gtn', 'adam'\\]: expected a non-empty subset of gtn, short_gtn"):
        check_modes(["gtn", "adam"], 10)


def test_vanilla_learners_train_on_real_data_without_keeping_a_graph():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(200, 1, 8, 8, generator=generator) * 2 - 1
    labels = (images.mean((1, 2, 3)) > 0).long()  # a learnable rule
    cfg = LearnerConfig(channels=(4,), num_classes=2, image_size=8)
    learner, state = train_on_real_data(cfg, images, labels, VanillaTraining(epochs=3, batch_size=20, lr=1e-2),
                                        torch.Generator().manual_seed(1))
    assert all(buffer.grad_fn is None for buffer in state.buffers.values())
    learner.train()
    with torch.no_grad():
        assert (learner(images).argmax(1) == labels).float().mean() > 0.8
    with pytest.raises(ValueError, match="VanillaTraining.epochs=0: expected a positive number"):
        VanillaTraining(epochs=0)


def _run(script, *words, store):
    env = {**os.environ, "GTN_RUNS_DIR": str(store), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, f"experiments/{script}", *words], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def smoke_teacher(tmp_path_factory, mnist_ready):
    """A file store holding one COMPLETED smoke teacher (run 1)."""
    store = tmp_path_factory.mktemp("teacher_store")
    done = _run("mnist_experiment.py", "with", "smoke", "progress=False", store=store)
    assert done.returncode == 0, done.stderr
    return store


def test_transfer_scores_every_preset_and_mode_and_keeps_the_rows(smoke_teacher):
    done = _run("transfer.py", "with", "smoke", "source_run_id=1", "progress=False", store=smoke_teacher)
    assert done.returncode == 0, done.stderr
    run = next(r for r in FileStore(smoke_teacher).records() if r.name == "gtn_transfer")
    rows = json.loads((smoke_teacher / run.run_id / "info.json").read_text())["rows"]
    assert {(r["preset"], r["mode"]) for r in rows} == {(p, m) for p in ("goodai", "linear")
                                                         for m in ("gtn", "short_gtn", "vanilla")}
    assert len(rows) == 12 and all(0 <= r["accuracy"] <= 1 for r in rows)
    vanilla = [r["accuracy"] for r in rows if r["mode"] == "vanilla" and r["preset"] == "goodai"]
    assert min(vanilla) > 0.5  # a fiftieth of an epoch of Adam already beats chance by far


def test_robustness_curves_start_at_the_clean_accuracy(smoke_teacher):
    done = _run("robustness.py", "with", "smoke", "source_run_id=1", "progress=False", store=smoke_teacher)
    assert done.returncode == 0, done.stderr
    run = next(r for r in FileStore(smoke_teacher).records() if r.name == "gtn_robustness")
    rows = [r for r in json.loads((smoke_teacher / run.run_id / "info.json").read_text())["rows"]
            if r["corruption"] != "seconds"]
    assert {r["corruption"] for r in rows} == {"noise", "blur", "fgsm", "lbfgs"}
    for mode in ("gtn", "short_gtn", "vanilla"):
        for learner in (0, 1):
            noise, blur = ([r["accuracy"] for r in rows if (r["mode"], r["learner"], r["corruption"]) ==
                            (mode, learner, corruption) and r["strength"] == 0] for corruption in ("noise", "blur"))
            assert noise == blur  # strength 0 is the clean accuracy on the same images
    fgsm = {r["strength"]: r["accuracy"] for r in rows if (r["mode"], r["learner"], r["corruption"]) ==
            ("vanilla", 0, "fgsm")}
    assert fgsm[0.01] < fgsm[0.0]


@pytest.mark.parametrize(("script", "words", "message"), [
    ("transfer.py", ["presets=['base','resnet']"], "presets=\\['base', 'resnet'\\]: expected a non-empty list"),
    ("transfer.py", ["modes=['gtn','adam']"], "modes=\\['gtn', 'adam'\\]: expected a non-empty subset"),
    ("transfer.py", ["short_steps=50"], "short_steps=50: expected an int in 1..5"),
    ("robustness.py", ["strengths={'rain': [0.1]}"], "unknown corruption\\(s\\) 'rain'"),
    ("robustness.py", ["strengths={'blur': [0, -1]}"], "strengths\\['blur'\\]=\\[0, -1\\]: expected"),
    ("robustness.py", ["learner='resnet'"], "learner preset 'resnet': expected one of"),
])
def test_bad_evaluation_input_fails_before_any_work_naming_the_value(script, words, message, smoke_teacher):
    before = len(FileStore(smoke_teacher).records())
    done = _run(script, "with", "smoke", "source_run_id=1", "progress=False", *words, store=smoke_teacher)
    assert done.returncode != 0
    assert any(__import__("re").search(message, line) for line in done.stderr.splitlines()), done.stderr[-2000:]
    failed = [r for r in FileStore(smoke_teacher).records()[before:]]
    assert all(r.status == "FAILED" for r in failed)


def test_the_normalisation_study_trains_evaluates_and_resumes(tmp_path, mnist_ready):
    words = ["--study", "normalisation", "--profile", "smoke", "--workers", "2", "--runs-dir", str(tmp_path)]
    env = {**os.environ, "GTN_RUNS_DIR": str(tmp_path)}
    first = subprocess.run([sys.executable, "experiments/run_tasks.py", *words], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    runs = FileStore(tmp_path).records()
    trained = [r for r in runs if r.name == "gtn_mnist" and r.status == "COMPLETED"]
    assert sorted(r.config["learner"]["normalisation"] for r in trained) == sorted(
        ["batch", "weight", "weight_mean_only", "none"])
    evaluations = sorted((r.name, r.config["source_run_id"]) for r in runs if r.name != "gtn_mnist")
    by_norm = {r.run_id: r.config["learner"]["normalisation"] for r in trained}
    assert sorted((name, by_norm[source]) for name, source in evaluations) == sorted(
        [("gtn_transfer", "batch"), ("gtn_transfer", "batch"), ("gtn_robustness", "batch"),
         ("gtn_transfer", "weight_mean_only"), ("gtn_robustness", "weight_mean_only")])
    second = subprocess.run([sys.executable, "experiments/run_tasks.py", *words], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=900)
    assert second.returncode == 0 and "nothing to run" in second.stdout, second.stdout[-2000:]
