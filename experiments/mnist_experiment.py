"""Meta-train a teacher (a GTN with any curriculum, real data, or distilled pixels) on MNIST or Fashion-MNIST.

Every run is recorded in the file store `runs/` (or $GTN_RUNS_DIR): config, metrics, the final teacher
checkpoint (`teacher.pt`: weights, inputs, inner hyper-parameters) and the curriculum picture
(`curriculum.png`: rows = inner steps, columns = batch positions). With `--mongo URL` (or $GTN_MONGO_URL) the run
is also logged to MongoDB for Omniboard (`make board` starts a local one and prints its URL).

    python experiments/mnist_experiment.py with smoke
    python experiments/mnist_experiment.py with experiment_a variant=learned
    python experiments/mnist_experiment.py with experiment_a variant=random
    python experiments/mnist_experiment.py with experiment_b variant=random_fixed seed=3 outer_steps=600
    python experiments/mnist_experiment.py with experiment_c dataset=fashion_mnist unroll_backend=higher
    python experiments/mnist_experiment.py with experiment_b curriculum=shuffled_batch
    python experiments/mnist_experiment.py with experiment_b curriculum=none variant=random
    python experiments/mnist_experiment.py with experiment_b teacher=real_data
    python experiments/mnist_experiment.py with experiment_b teacher=distillation
    python experiments/mnist_experiment.py with paper checkpoint_unroll=True generator.hidden_size=512
    python experiments/mnist_experiment.py print_config with experiment_a
    python experiments/mnist_experiment.py with smoke --mongo mongodb://127.0.0.1:27018/gtn_lab

Accuracies are measured with the learner's BatchNorm in `bn_mode` ("train": batch statistics over chunks of
`eval_batch_size` test images, as GoodAI measured; "eval": running statistics gathered during the unroll).
"""
from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import torch

# Sacred 0.8.7 imports pkg_resources, which setuptools deprecates loudly; the pin keeps it working.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

from sacred import Experiment
from sacred.utils import apply_backspaces_and_linefeeds
from tqdm import tqdm

from experiments.observers import attach_observers, mongo_option
from experiments.dataclass_config import DataclassConfig, core_config
from experiments.shapes import add_shape_configs
from gtn_core.checkpoint import save_checkpoint
from gtn_core.config import GTNConfig
from gtn_core.data import default_data_root, load_dataset
from gtn_core.device import resolve_device
from gtn_core.meta import StepRecord, meta_train, to_real_data
from gtn_core.seeds import EVALUATION, seeded_generator
from gtn_core.teachers import Teacher, build_teacher
from gtn_core.visualize import save_curriculum_png

ex = Experiment("gtn_mnist", additional_cli_options=[mongo_option])
ex.captured_out_filter = apply_backspaces_and_linefeeds  # keep progress-bar redraws out of the log


ex.configurations.append(DataclassConfig(GTNConfig()))  # every training knob, from the core's dataclasses
add_shape_configs(ex)


@ex.config
def config():
    dataset = "mnist"  # mnist | fashion_mnist
    data_root = None  # None: $GTN_DATA_DIR or <repo>/data
    progress = True  # tqdm bar on stderr


def build_config(values: dict) -> GTNConfig:
    """The core's frozen GTNConfig from the run's Sacred config (validating it)."""
    return core_config(values, GTNConfig)


def log_record(run, record: StepRecord) -> None:
    """Send one outer step's numbers to Sacred: meta-loss always, accuracies and schedules on evaluations."""
    run.log_scalar("meta_loss", record.meta_loss, record.step)
    run.log_scalar("step_seconds", record.step_seconds, record.step)
    if record.test_accuracy is None:
        return
    run.log_scalar("test_accuracy", record.test_accuracy, record.step)
    run.log_scalar("train_accuracy", record.train_accuracy, record.step)
    run.log_scalar("eval_seconds", record.eval_seconds, record.step)
    for name, values in (("inner_lr", record.inner_lrs), ("inner_momentum", record.inner_momenta)):
        run.log_scalar(f"{name}_mean", sum(values) / len(values), record.step)
        run.log_scalar(f"{name}_min", min(values), record.step)
        run.log_scalar(f"{name}_max", max(values), record.step)


def save_artifacts(run, teacher: Teacher, cfg: GTNConfig) -> None:
    """Attach the teacher checkpoint and the curriculum picture (one inner loop's batches) to the run."""
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = save_checkpoint(teacher, cfg, Path(tmp) / "teacher.pt")
        with torch.no_grad():
            images = teacher.curriculum(seeded_generator(cfg.seed, stream=EVALUATION)).materialize()
        picture = save_curriculum_png(images, Path(tmp) / "curriculum.png")
        run.add_artifact(str(checkpoint), "teacher.pt", content_type="application/octet-stream")
        run.add_artifact(str(picture), "curriculum.png", content_type="image/png")


def describe(cfg: GTNConfig) -> str:
    """A short name of the run's teacher: 'gtn learned full', 'real_data', ..."""
    return f"gtn {cfg.variant} {cfg.curriculum}" if cfg.teacher == "gtn" else cfg.teacher


@ex.main
def main(_run, _config, dataset, data_root, device, progress):
    """Meta-train, log every outer step, save the artifacts, return the final test accuracy."""
    cfg = build_config(_config)
    torch_device = resolve_device(device)
    data = to_real_data(load_dataset(dataset, data_root or default_data_root()), torch_device)
    teacher = build_teacher(cfg, data.train_images, data.train_labels).to(torch_device)
    _run.info.update(device=str(torch_device), bn_mode=cfg.bn_mode, teacher=cfg.teacher, curriculum=cfg.curriculum,
                     teacher_parameters=sum(p.numel() for p in teacher.parameters()))
    last = None
    with tqdm(total=cfg.outer_steps, desc=f"{describe(cfg)} K={cfg.inner_steps} B={cfg.batch_size}",
              unit="step", disable=not progress) as bar:
        for record in meta_train(teacher, cfg, data):
            log_record(_run, record)
            bar.update(1)
            if record.test_accuracy is not None:
                last = record
                bar.set_postfix(meta_loss=f"{record.meta_loss:.3f}",
                                **{f"test_acc[bn={cfg.bn_mode}]": f"{record.test_accuracy:.4f}"})
    _run.info.update(final_inner_lrs=list(last.inner_lrs), final_inner_momenta=list(last.inner_momenta))
    save_artifacts(_run, teacher, cfg)
    return last.test_accuracy


if __name__ == "__main__":
    attach_observers(ex)
    ex.run_commandline()
