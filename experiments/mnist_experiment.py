"""Meta-train a Generative Teaching Network on MNIST (or Fashion-MNIST), tracked by Sacred.

Every run is recorded in the file store `runs/` (or $GTN_RUNS_DIR): config, metrics, the final teacher
checkpoint (`teacher.pt`: weights, inputs, inner hyper-parameters) and the curriculum picture
(`curriculum.png`: rows = inner steps, columns = batch positions). With `--mongo URL` (or $GTN_MONGO_URL) the run
is also logged to MongoDB for Omniboard (`make board` starts a local one and prints its URL).

    python experiments/mnist_experiment.py with smoke
    python experiments/mnist_experiment.py with experiment_a variant=learned
    python experiments/mnist_experiment.py with experiment_a variant=random
    python experiments/mnist_experiment.py with experiment_b variant=random_fixed seed=3 outer_steps=600
    python experiments/mnist_experiment.py with experiment_c dataset=fashion_mnist unroll_backend=higher
    python experiments/mnist_experiment.py print_config with experiment_a
    python experiments/mnist_experiment.py with smoke --mongo mongodb://127.0.0.1:27018/gtn_lab

Accuracies are measured with the learner's BatchNorm in `bn_mode` ("train": batch statistics over chunks of
`eval_batch_size` test images, as GoodAI measured; "eval": running statistics gathered during the unroll).
"""
from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

# Sacred 0.8.7 imports pkg_resources, which setuptools deprecates loudly; the pin keeps it working.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

from sacred import Experiment
from sacred.utils import apply_backspaces_and_linefeeds
from tqdm import tqdm

from experiments.observers import attach_observers, mongo_option
from gtn_core.checkpoint import save_checkpoint
from gtn_core.config import GTNConfig, LearnerConfig, TeacherConfig
from gtn_core.data import default_data_root, load_dataset
from gtn_core.device import resolve_device
from gtn_core.gtn import GTN
from gtn_core.meta import StepRecord, meta_train, to_real_data
from gtn_core.visualize import save_curriculum_png

ex = Experiment("gtn_mnist", additional_cli_options=[mongo_option])
ex.captured_out_filter = apply_backspaces_and_linefeeds  # keep progress-bar redraws out of the log


@ex.config
def config():
    dataset = "mnist"  # mnist | fashion_mnist
    data_root = None  # None: $GTN_DATA_DIR or <repo>/data
    variant = "learned"  # learned | random_fixed | random
    batch_size = 32  # synthetic images per inner step
    inner_steps = 20  # unrolled learner SGD steps
    outer_steps = 400  # teacher (meta) updates; with the cosine schedule A reaches 0.97 at ~275 (BENCHMARKS.md)
    eval_every = 25  # outer steps between evaluations (a fresh learner scored on all 10k test images: ~2 s on 2 cores)
    noise_size = 64  # teacher input size (plus a one-hot label)
    noise_distribution = "normal"  # normal (N(0,1)) | uniform (U(-1,1))
    teacher_hidden_size = 1024
    teacher_base_channels = 128  # channels at 7x7, halved after the first upsampling
    teacher_upsampling = "nearest"  # each x2: nearest + 3x3 conv (as GoodAI) | transposed (4x4 stride-2 transposed conv)
    learner_channels = [32, 64]  # one conv block per entry
    teacher_lr = 1e-3  # Adam, teacher weights
    inputs_lr = 1e-2  # Adam, learned inputs
    hyper_lr = 1e-2  # Adam, per-step log inner lr and logit momentum
    inner_lr_init = 0.02
    inner_momentum_init = 0.5
    real_batch_size = 512  # real images scoring the learner for the meta-loss (512 beat 128 and 256: BENCHMARKS.md)
    grad_clip = 100.0  # max global norm of the meta-gradient
    lr_schedule = "cosine"  # cosine (every Adam lr decays to 0 at outer_steps) | constant
    unroll_backend = "func"  # func (torch.func) | higher
    checkpoint_unroll = False  # recompute each inner step in the meta-backward: ~K x less memory, ~1 more forward (func only)
    bn_mode = "train"  # learner BatchNorm when scoring: train (batch stats) | eval (running stats)
    eval_batch_size = 250  # test images per scoring chunk (= BatchNorm batch in bn_mode=train); 250 is ~2x faster than 1000 on CPU
    train_eval_size = 2000  # fixed training subset for train_accuracy
    device = "auto"  # auto | cpu | cuda[:N]
    progress = True  # tqdm bar on stderr
    seed = 0


@ex.named_config
def experiment_a():
    # GoodAI Experiment A: batch 32, 20 inner steps. (Comments, not docstrings: Sacred records a docstring as config.)
    batch_size = 32
    inner_steps = 20


@ex.named_config
def experiment_b():
    # GoodAI Experiment B: batch 32, 10 inner steps.
    batch_size = 32
    inner_steps = 10


@ex.named_config
def experiment_c():
    # GoodAI Experiment C: batch 16, 10 inner steps.
    batch_size = 16
    inner_steps = 10


@ex.named_config
def smoke():
    # Tiny networks and a handful of steps on real data: the whole pipeline in well under a minute.
    batch_size = 16
    inner_steps = 5
    outer_steps = 6
    eval_every = 3
    teacher_hidden_size = 128
    teacher_base_channels = 32
    learner_channels = [8, 16]
    real_batch_size = 64


def build_config(values: dict) -> GTNConfig:
    """Turn the flat Sacred config into the core's frozen GTNConfig (validating it)."""
    num_classes = 10
    teacher = TeacherConfig(noise_size=values["noise_size"], num_classes=num_classes,
                            hidden_size=values["teacher_hidden_size"], base_channels=values["teacher_base_channels"],
                            upsampling=values["teacher_upsampling"])
    learner = LearnerConfig(channels=tuple(values["learner_channels"]), num_classes=num_classes)
    keys = ("variant", "batch_size", "inner_steps", "outer_steps", "eval_every", "noise_distribution",
            "teacher_lr", "inputs_lr", "hyper_lr", "inner_lr_init", "inner_momentum_init", "real_batch_size",
            "grad_clip", "lr_schedule", "unroll_backend", "checkpoint_unroll", "bn_mode", "eval_batch_size", "train_eval_size", "seed", "device")
    return GTNConfig(teacher=teacher, learner=learner, **{key: values[key] for key in keys})


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


def save_artifacts(run, gtn: GTN, cfg: GTNConfig) -> None:
    """Attach the teacher checkpoint and the curriculum picture to the run."""
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = save_checkpoint(gtn, cfg, Path(tmp) / "teacher.pt")
        images, _ = gtn.curriculum()
        picture = save_curriculum_png(images, Path(tmp) / "curriculum.png")
        run.add_artifact(str(checkpoint), "teacher.pt", content_type="application/octet-stream")
        run.add_artifact(str(picture), "curriculum.png", content_type="image/png")


@ex.main
def main(_run, _config, dataset, data_root, device, progress):
    """Meta-train, log every outer step, save the artifacts, return the final test accuracy."""
    cfg = build_config(_config)
    torch_device = resolve_device(device)
    data = to_real_data(load_dataset(dataset, data_root or default_data_root()), torch_device)
    gtn = GTN(cfg).to(torch_device)
    _run.info.update(device=str(torch_device), bn_mode=cfg.bn_mode,
                     teacher_parameters=sum(p.numel() for p in gtn.teacher.parameters()))
    last = None
    with tqdm(total=cfg.outer_steps, desc=f"{cfg.variant} K={cfg.inner_steps} B={cfg.batch_size}",
              unit="step", disable=not progress) as bar:
        for record in meta_train(gtn, cfg, data):
            log_record(_run, record)
            bar.update(1)
            if record.test_accuracy is not None:
                last = record
                bar.set_postfix(meta_loss=f"{record.meta_loss:.3f}",
                                **{f"test_acc[bn={cfg.bn_mode}]": f"{record.test_accuracy:.4f}"})
    _run.info.update(final_inner_lrs=list(last.inner_lrs), final_inner_momenta=list(last.inner_momenta))
    save_artifacts(_run, gtn, cfg)
    return last.test_accuracy


if __name__ == "__main__":
    attach_observers(ex)
    ex.run_commandline()
