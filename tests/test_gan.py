"""The GAN-data teacher: the conditional DCGAN trains, its generator meta-tests and meta-trains through the one
teacher interface, a GAN run teaches a tracked mnist_experiment run, and the smoke GAN study reads back as five
teacher arms in the report."""
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from analysis import results
from conftest import report_on, tiny_config
from gtn_core.config import GANConfig, GTNConfig
from gtn_core.data import default_data_root, prepare
from gtn_core.evaluate import meta_test
from gtn_core.gan_training import GANTrainer, GANTraining
from gtn_core.meta import RealData, meta_loss, meta_train
from gtn_core.teachers import GANTeacher, build_teacher
from tracking.stores import FileStore

REPO = Path(__file__).resolve().parents[1]
TINY_GAN = GANConfig(noise_size=4, num_classes=3, base_channels=8, image_size=8)


def test_the_gan_trainer_moves_both_networks_and_samples_one_row_per_class():
    generator = torch.Generator().manual_seed(0)
    images, labels = torch.rand(40, 1, 8, 8, generator=generator) * 2 - 1, torch.randint(0, 3, (40,))
    trainer = GANTrainer(TINY_GAN, GANTraining(steps=3, batch_size=8), images, labels, generator)
    before = [p.detach().clone() for p in trainer.generator_net.parameters()]
    records = list(trainer.records())
    assert [r.step for r in records] == [1, 2, 3] and all(r.d_loss > 0 and 0 < r.d_real < 1 for r in records)
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.generator_net.parameters()))
    samples = trainer.samples(5, torch.Generator().manual_seed(1))
    assert samples.shape == (3, 5, 1, 8, 8) and samples.abs().max() <= 1
    with pytest.raises(ValueError, match=r"images \(40, 1, 8, 8\) and labels \(40,\): expected \(N, 1, 28, 28\)"):
        GANTrainer(GANConfig(), GANTraining(), images, labels, generator)
    with pytest.raises(ValueError, match="GANTraining.steps=0: expected a positive integer"):
        GANTraining(steps=0)


@pytest.mark.parametrize("generator_learns", (False, True))
def test_the_gan_teacher_meta_tests_and_meta_trains_through_the_teacher_interface(generator_learns, float64):
    cfg = tiny_config(teacher="gan", gan=GANConfig(**{**TINY_GAN.__dict__, "meta_train": generator_learns}))
    teacher = build_teacher(cfg)
    assert isinstance(teacher, GANTeacher) and not teacher.fixed_curriculum
    generator = torch.Generator().manual_seed(0)
    images, labels = torch.rand(9, 1, 8, 8, generator=generator) * 2 - 1, torch.randint(0, 3, (9,), generator=generator)
    meta_loss(teacher, cfg, images, labels, torch.Generator().manual_seed(2)).backward()
    assert teacher.hparams.log_lr.grad.abs().sum() > 0
    weights = list(teacher.generator.parameters())
    assert all((w.grad is not None and w.grad.abs().sum() > 0) == generator_learns for w in weights)
    groups = {group["name"] for group in teacher.param_groups(cfg)}
    assert groups == ({"teacher", "inner_hparams"} if generator_learns else {"inner_hparams"})
    first = teacher.curriculum(torch.Generator().manual_seed(3)).materialize()
    assert first.shape == (3, 6, 1, 8, 8)
    assert not torch.equal(first, teacher.curriculum(torch.Generator().manual_seed(4)).materialize())
    meta_test(teacher, cfg, torch.Generator().manual_seed(5))
    data = RealData(images, labels, images, labels)
    assert [r.step for r in meta_train(teacher, cfg, data)] == [1, 2]


def test_a_gan_config_must_make_the_learners_images_and_a_gan_run_is_required():
    with pytest.raises(ValueError, match=r"gan \(classes, channels, side\) \(10, 1, 28\) != learner's \(3, 1, 8\)"):
        tiny_config(teacher="gan", gan=GANConfig())
    assert GTNConfig(teacher="gan").gan == GANConfig()


def test_a_trained_gan_teaches_a_tracked_run(tmp_path, mnist_ready):
    env = {**os.environ, "GTN_RUNS_DIR": str(tmp_path), "OMP_NUM_THREADS": "1"}

    def run(script, *words):
        return subprocess.run([sys.executable, f"experiments/{script}", "with", "smoke", "progress=False", *words],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=600)

    gan = run("gan_experiment.py")
    assert gan.returncode == 0, gan.stderr[-2000:]
    store = FileStore(tmp_path)
    assert {"gan.pt", "samples.png", "samples_10.png"} <= set(store.artifact_names("1"))
    missing = run("mnist_experiment.py", "teacher=gan")
    assert missing.returncode != 0 and "teacher='gan' needs the id of a trained GAN run" in missing.stderr
    other = run("mnist_experiment.py", "teacher=gan", "gan_run_id=1", "gan.base_channels=32")
    assert other.returncode != 0 and "differs from this run's gan=" in other.stderr
    taught = run("mnist_experiment.py", "teacher=gan", "gan_run_id=1")  # smoke: the smoke GAN's networks
    assert taught.returncode == 0, taught.stderr[-2000:]
    record = [r for r in store.records() if r.name == "gtn_mnist" and r.status == "COMPLETED"][-1]
    assert record.config["teacher"] == "gan" and 0 <= record.result <= 1


@pytest.fixture(scope="module")
def gan_study(tmp_path_factory):
    """The smoke GAN study (the DCGAN, then its five teacher arms at C's shape) in a file store, and the words that
    ran it."""
    prepare("mnist", default_data_root())  # a no-op when `make` prepared it
    runs_dir = tmp_path_factory.mktemp("gan-runs")
    words = ["--study", "gan", "--profile", "smoke", "--only", "c", "--workers", "2", "--runs-dir", str(runs_dir)]
    env = {**os.environ, "GTN_RUNS_DIR": str(runs_dir)}
    first = subprocess.run([sys.executable, "experiments/run_tasks.py", *words], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    return SimpleNamespace(runs_dir=runs_dir, words=words, env=env)


def test_the_gan_study_trains_its_gan_first_then_every_teacher_arm(gan_study):
    runs = FileStore(gan_study.runs_dir).records()
    gan = [r for r in runs if r.name == "gtn_gan"]
    assert len(gan) == 1
    taught = [r for r in runs if r.name == "gtn_mnist" and r.config["teacher"] == "gan"]
    assert sorted(r.config["gan"]["meta_train"] for r in taught) == [False, True]
    assert all(r.config["gan_run_id"] == gan[0].run_id for r in taught)
    assert sorted(r.config["teacher"] for r in runs if r.name == "gtn_mnist") == \
        ["distillation", "gan", "gan", "gtn", "real_data"]
    second = subprocess.run([sys.executable, "experiments/run_tasks.py", *gan_study.words], cwd=REPO,
                            env=gan_study.env, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0 and "nothing to run" in second.stdout, second.stdout[-2000:]


def test_the_gan_arms_are_five_teachers_apart_from_the_baselines_study(gan_study):
    runs = results.load_runs(results.open_store(runs_dir=gan_study.runs_dir))
    arms = results.gan_runs(results.select_runs(runs, latest=False))
    assert sorted(arms.teacher) == sorted(["gtn", "real_data", "distillation", "gan", "gan_meta_trained"])
    table = results.baselines_table(arms, arms=results.gan_runs)
    assert table.teacher.tolist() == ["gtn", "real_data", "distillation", "gan", "gan_meta_trained"]
    assert (table.seeds == 1).all() and table.accuracy_mean.between(0, 1).all()
    assert "gan" not in set(results.baselines_runs(results.select_runs(runs, latest=False)).teacher)


def test_the_report_shows_the_gan_its_teachers_curves_and_pictures(gan_study, tmp_path):
    figures, page = report_on(gan_study.runs_dir, tmp_path, ("gan_training", "gan_accuracy", "gan_pictures"))
    assert pd.read_csv(figures / "gan.csv").teacher.tolist() == \
        ["gtn", "real_data", "distillation", "gan", "gan_meta_trained"]
    assert "no NAS-proxy runs in this store" in page
