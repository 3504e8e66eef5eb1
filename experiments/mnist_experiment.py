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
    python experiments/mnist_experiment.py with experiment_a teacher=gan gan_run_id=5    # a trained GAN's generator
    python experiments/mnist_experiment.py with experiment_a teacher=gan gan_run_id=5 gan.meta_train=True
    python experiments/mnist_experiment.py with paper checkpoint_unroll=True generator.hidden_size=512
    python experiments/mnist_experiment.py print_config with experiment_a
    python experiments/mnist_experiment.py with smoke --mongo mongodb://127.0.0.1:27018/gtn_lab
    python experiments/mnist_experiment.py with smoke checkpoint_every=2
    python experiments/mnist_experiment.py with experiment_c outer_steps=2000 snapshot_every=200
    python experiments/mnist_experiment.py with smoke resume_from=7     # continue run 7 from its training.pt
    python experiments/mnist_experiment.py with smoke resume_from=7 teacher_lr=0.0003   # after a non-finite loss
    python experiments/mnist_experiment.py with smoke resume_from=12 resume_store=mongodb://127.0.0.1:27018/gtn_lab

Accuracies are measured with the learner's BatchNorm in `bn_mode` ("train": batch statistics over chunks of
`eval_batch_size` test images, as GoodAI measured; "eval": running statistics gathered during the unroll).

Training checkpoints: `training.pt` (gtn_core.checkpoint.save_training_state: the whole MetaTrainer state and the
config) is written every `checkpoint_every` outer steps (None: at every evaluation and the last step), replacing
the previous one. SIGTERM or SIGINT (Ctrl-C) stops the run after the current outer step with a checkpoint: Sacred
records INTERRUPTED and the process exits non-zero (a second signal stops at once). A non-finite meta-loss fails
the run, naming the step and the last good checkpoint. `resume_from=<run id>` (a run of this file store, or of
`resume_store`: another file store's folder or a MongoDB URL, whose GridFS holds the checkpoint) continues
from that run's training.pt as a new run, which logs only the steps after the checkpoint and records
`resumed_from` (run and step) in its info; its config must equal the checkpoint's except teacher_lr, inputs_lr and
hyper_lr, which may be lowered.

Teacher snapshots: with `snapshot_every=N` the teacher after every N-th outer step is kept as the artifact
`teacher_<step>.pt` (the format of teacher.pt; ~26 MB each at the default generator) and its step listed in the
info's `snapshot_steps`, so the shuffle ablation can read the teacher as it was then (`source_step`).
"""
from __future__ import annotations

import contextlib
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
from experiments.source_teacher import snapshot_name
from experiments.stopping import Interrupted, StopSignals, file_store_of
from gtn_core.checkpoint import load_training_state, save_checkpoint, save_training_state
from gtn_core.config import GTNConfig, config_to_dict
from gtn_core.data import default_data_root, load_dataset
from gtn_core.device import resolve_device
from gtn_core.distributed import (any_rank, broadcast_object, current_world, init_from_environment, leave_world,
                                  rank_device)
from gtn_core.meta import MetaTrainer, StepRecord, is_evaluation_step, to_real_data
from gtn_core.seeds import EVALUATION, seeded_generator
from gtn_core.teachers import Teacher, build_teacher
from gtn_core.visualize import save_curriculum_png
from tracking.stores import RunRecord, Store, find_run, open_location

ex = Experiment("gtn_mnist", additional_cli_options=[mongo_option])
ex.captured_out_filter = apply_backspaces_and_linefeeds  # keep progress-bar redraws out of the log


ex.configurations.append(DataclassConfig(GTNConfig()))  # every training knob, from the core's dataclasses
add_shape_configs(ex)


@ex.config
def config():
    dataset = "mnist"  # mnist | fashion_mnist
    data_root = None  # None: $GTN_DATA_DIR or <repo>/data
    progress = True  # tqdm bar on stderr
    checkpoint_every = None  # outer steps between training checkpoints (training.pt); None: at every evaluation
    snapshot_every = None  # outer steps between teacher snapshots kept as artifacts (teacher_<step>.pt); None: none
    resume_from = None  # id of a run of resume_store: continue from its training.pt as a new run
    resume_store = None  # where that run is: a file store's folder or a mongodb:// URL; None: this run's file store
    gan_run_id = None  # teacher=gan: id of a COMPLETED gan_experiment run of gan_store, whose generator teaches
    gan_store = None  # where that run is: a file store's folder or a mongodb:// URL; None: this run's file store


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


def save_snapshot(run, teacher: Teacher, cfg: GTNConfig, step: int, folder: str) -> None:
    """Attach the teacher after outer step `step` as artifact teacher_<step>.pt (kept: one file per snapshot)."""
    path = save_checkpoint(teacher, cfg, Path(folder) / snapshot_name(step))
    run.add_artifact(str(path), path.name, content_type="application/octet-stream")
    path.unlink()  # the observers hold their copies; one temporary file at a time
    run.info.setdefault("snapshot_steps", []).append(step)


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


def checkpoint_due(record: StepRecord, cfg: GTNConfig, every: int | None) -> bool:
    """Whether to write training.pt after `record`: every `every` steps and at the last, or at each evaluation."""
    if every is None:
        return is_evaluation_step(record.step, cfg)  # the same on every rank (only rank 0 evaluates)
    return record.step % every == 0 or record.step == cfg.outer_steps


def save_training(run, trainer: MetaTrainer, cfg: GTNConfig, folder: str) -> None:
    """Attach the trainer's whole state as the artifact training.pt (replacing the previous one); collective in a
    distributed run (every rank's streams are gathered), written by rank 0."""
    state = trainer.state_dict()
    if not trainer.world.is_main:
        return
    path = save_training_state(state, cfg, Path(folder) / "training.pt")
    run.add_artifact(str(path), "training.pt", content_type="application/octet-stream")
    run.info["checkpoint_step"] = trainer.step


def load_checkpoint_of(cfg: GTNConfig, store: Store, source: RunRecord) -> dict:
    """`source`'s training state (its training.pt, from GridFS in MongoDB), checked against `cfg`; ValueError naming
    the run when the file is missing, unreadable or of another config."""
    try:
        on_disk = store.artifact_path(source.run_id, "training.pt")  # None in GridFS: name the run, not the copy
        with store.local_artifact(source.run_id, "training.pt") as path:
            return load_training_state(path, cfg, name=str(on_disk) if on_disk else
                                       f"training.pt of run {source.run_id} of the {store.label}")
    except KeyError:
        raise ValueError(f"run {source.run_id} of the {store.label} has no training.pt (expected a run that wrote "
                         "a training checkpoint)") from None


def resume_state(run, run_id, resume_store, dataset: str, cfg: GTNConfig) -> dict:
    """Run `run_id`'s training state (a run of `resume_store`, else of this run's file store); ValueError naming the
    run when it cannot be continued."""
    with contextlib.closing(open_location(resume_store or file_store_of(run))) as store:
        source = find_run(store, run_id)
        if source.name != ex.path or source.config.get("dataset") != dataset:
            raise ValueError(f"resume_from={run_id!r}: run {source.run_id} of the {store.label} is experiment "
                             f"{source.name} on {source.config.get('dataset')!r}; expected {ex.path} on {dataset!r}")
        try:
            return load_checkpoint_of(cfg, store, source)
        except ValueError as error:
            raise ValueError(f"resume_from={run_id!r}: {error}") from error


def resume(trainer: MetaTrainer, run, run_id, resume_store, dataset: str) -> None:
    """Load run `run_id`'s training state into `trainer` (rank 0 reads it and sends it to every rank); ValueError
    naming the run, on every rank, when it cannot be continued."""
    state, problem = None, None
    if trainer.world.is_main:
        try:
            state = resume_state(run, run_id, resume_store, dataset, trainer.cfg)
        except ValueError as error:
            problem = str(error)
    state, problem = broadcast_object((state, problem), trainer.world)
    if problem is not None:
        raise ValueError(problem)
    trainer.load_state_dict(state)
    if trainer.step == trainer.cfg.outer_steps:
        raise ValueError(f"resume_from={run_id!r}: its training.pt is at the last step {trainer.step}; nothing "
                         "left to train")
    run.info["resumed_from"] = {"run": str(run_id), "step": trainer.step}


def load_gan_generator(teacher: Teacher, cfg: GTNConfig, run, gan_run_id, gan_store, dataset: str) -> None:
    """Load the generator of GAN run `gan_run_id` into a GAN teacher; ValueError naming the run when it is not a
    COMPLETED gtn_gan run on `dataset` with the teacher's GAN config (meta_train aside)."""
    with contextlib.closing(open_location(gan_store or file_store_of(run))) as store:
        source = find_run(store, gan_run_id)
        if source.name != "gtn_gan" or source.status != "COMPLETED" or source.config.get("dataset") != dataset:
            raise ValueError(f"gan_run_id={gan_run_id!r}: run {source.run_id} of the {store.label} is a {source.status}"
                             f" {source.name!r} run on {source.config.get('dataset')!r}; expected a COMPLETED "
                             f"'gtn_gan' run on {dataset!r}")
        with store.local_artifact(source.run_id, "gan.pt") as path:
            payload = torch.load(path, map_location=teacher.device, weights_only=True)
    trained = {**payload["config"], "meta_train": cfg.gan.meta_train}
    if trained != config_to_dict(cfg.gan):
        raise ValueError(f"gan_run_id={gan_run_id!r}: its GAN config {payload['config']} differs from this run's "
                         f"gan={config_to_dict(cfg.gan)} (set gan.* to the GAN run's values)")
    teacher.generator.load_state_dict(payload["generator"])


def check_gan_source(cfg: GTNConfig, gan_run_id) -> None:
    """ValueError unless a GAN run is named exactly when teacher='gan'."""
    if (cfg.teacher == "gan") != (gan_run_id is not None):
        raise ValueError(f"teacher={cfg.teacher!r} with gan_run_id={gan_run_id!r}: teacher='gan' needs the id of a "
                         "trained GAN run (experiments/gan_experiment.py), and only it takes one")


def check_every(name: str, value, none_means: str) -> None:
    """ValueError naming `name` unless `value` is None or a positive integer."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name}={value!r}: expected None ({none_means}) or a positive integer")


@ex.main
def main(_run, _config, dataset, data_root, device, progress, checkpoint_every, snapshot_every, resume_from,
         resume_store, gan_run_id, gan_store):
    """Meta-train (or resume), log every outer step, checkpoint, save the artifacts, return the final test accuracy."""
    cfg = build_config(_config)
    check_every("checkpoint_every", checkpoint_every, "at every evaluation")
    check_every("snapshot_every", snapshot_every, "no snapshots")
    check_gan_source(cfg, gan_run_id)
    world = current_world()
    world.members(cfg.meta_batch)  # the ranks must divide the meta-batch: checked before any work
    torch_device = rank_device(resolve_device(device), world)
    data = to_real_data(load_dataset(dataset, data_root or default_data_root()), torch_device)
    teacher = build_teacher(cfg, data.train_images, data.train_labels).to(torch_device)
    if cfg.teacher == "gan" and world.is_main:  # other ranks take rank 0's teacher in synchronize()
        load_gan_generator(teacher, cfg, _run, gan_run_id, gan_store, dataset)
    trainer = MetaTrainer(teacher, cfg, data, world)
    _run.info.update(device=str(torch_device), bn_mode=cfg.bn_mode, teacher=cfg.teacher, curriculum=cfg.curriculum,
                     teacher_parameters=sum(p.numel() for p in teacher.parameters()), ranks=world.size)
    last_good = "none (no training.pt written yet)"
    if resume_from is not None:
        resume(trainer, _run, resume_from, resume_store, dataset)
        last_good = f"run {resume_from}'s training.pt (step {trainer.step})"
    else:
        trainer.synchronize()  # every rank starts from rank 0's teacher
    last = None
    with tempfile.TemporaryDirectory() as folder, StopSignals() as signals, \
            tqdm(total=cfg.outer_steps, initial=trainer.step, desc=f"{describe(cfg)} K={cfg.inner_steps} "
                 f"B={cfg.batch_size}", unit="step", disable=not (progress and world.is_main)) as bar:
        try:
            for record in trainer.records():
                log_record(_run, record)
                bar.update(1)
                if record.test_accuracy is not None:
                    last = record
                    bar.set_postfix(meta_loss=f"{record.meta_loss:.3f}",
                                    **{f"test_acc[bn={cfg.bn_mode}]": f"{record.test_accuracy:.4f}"})
                if snapshot_every and record.step % snapshot_every == 0 and world.is_main:
                    save_snapshot(_run, teacher, cfg, record.step, folder)
                stop = any_rank(signals.received is not None, world)  # one rank's signal stops them all
                if checkpoint_due(record, cfg, checkpoint_every) or stop:
                    save_training(_run, trainer, cfg, folder)
                    last_good = f"run {_run._id}'s training.pt (step {trainer.step})"
                if stop and trainer.step < cfg.outer_steps:
                    raise Interrupted(f"{signals.received or 'a stop signal to another rank'} after outer "
                                              f"step {trainer.step}: checkpoint written; continue with "
                                              f"resume_from={_run._id}")
        except FloatingPointError as error:
            raise FloatingPointError(f"outer step {trainer.step + 1}: {error}; last good checkpoint: {last_good} "
                                     "(resume from it with lower teacher_lr/inputs_lr/hyper_lr)") from error
    if not world.is_main:
        return None  # rank 0 evaluates and records the run
    _run.info.update(final_inner_lrs=list(last.inner_lrs), final_inner_momenta=list(last.inner_momenta))
    save_artifacts(_run, teacher, cfg)
    return last.test_accuracy


if __name__ == "__main__":
    if init_from_environment().is_main:  # under torchrun: join the ranks; only rank 0 records the run
        attach_observers(ex)
    finished = False
    try:
        finished = getattr(ex.run_commandline(), "status", None) == "COMPLETED"  # Sacred exits on a failed run
    finally:
        leave_world(finished)
