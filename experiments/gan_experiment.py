"""Train a conditional DCGAN on MNIST or Fashion-MNIST, whose generator then teaches as `teacher=gan`.

Logs both losses and the discriminator's mean outputs on real and fake batches every step, and attaches the
networks (`gan.pt`: the GAN config and both state dicts) and sample grids (`samples_<step>.png`: one row per class)
every `sample_every` steps and at the end (`samples.png`). The default budget (3,000 steps of batch 64, about
3 epochs) takes a few minutes on 2 cores.

    python experiments/gan_experiment.py
    python experiments/gan_experiment.py with steps=6000 gan.base_channels=64 dataset=fashion_mnist
    python experiments/gan_experiment.py with smoke
    python experiments/mnist_experiment.py with experiment_a teacher=gan gan_run_id=5   # the GAN as a teacher
"""
from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

import torch
from sacred import Experiment
from sacred.utils import apply_backspaces_and_linefeeds
from tqdm import tqdm

from experiments.observers import attach_observers
from gtn_core.config import GANConfig, config_from_dict, config_to_dict
from gtn_core.data import default_data_root, load_dataset
from gtn_core.device import resolve_device
from gtn_core.gan_training import GANTrainer, GANTraining
from gtn_core.meta import to_real_data
from gtn_core.seeds import EVALUATION, TRAINING, seeded_generator
from gtn_core.visualize import save_curriculum_png

ex = Experiment("gtn_gan")
ex.captured_out_filter = apply_backspaces_and_linefeeds


@ex.config
def config():
    gan = config_to_dict(GANConfig())  # the networks (gtn_core.config.GANConfig); meta_train is the teacher's
    steps = 3000  # training steps (batch_size real and as many fake images each)
    batch_size = 64
    lr = 2e-4  # Adam, both networks
    beta1 = 0.5
    sample_every = 500  # steps between sample grids
    dataset = "mnist"  # mnist | fashion_mnist
    data_root = None
    device = "auto"
    progress = True
    seed = 0


@ex.named_config
def smoke():
    gan = {"base_channels": 16, "noise_size": 8}
    steps = 20
    batch_size = 16
    sample_every = 10


def save_samples(run, trainer: GANTrainer, folder: Path, name: str, seed: int) -> None:
    """Attach one sample grid (10 per class, the same noise every time) as artifact `name`."""
    images = trainer.samples(10, seeded_generator(seed, stream=EVALUATION))
    run.add_artifact(str(save_curriculum_png(images, folder / name)), name, content_type="image/png")


@ex.main
def main(_run, gan, steps, batch_size, lr, beta1, sample_every, dataset, data_root, device, progress, seed):
    """Train the GAN, log every step, attach gan.pt and the sample grids; return the last losses."""
    cfg = config_from_dict(gan, GANConfig)
    training = GANTraining(steps, batch_size, lr, beta1)
    if isinstance(sample_every, bool) or not isinstance(sample_every, int) or sample_every < 1:
        raise ValueError(f"sample_every={sample_every!r}: expected a positive integer")
    data = to_real_data(load_dataset(dataset, data_root or default_data_root()), resolve_device(device))
    trainer = GANTrainer(cfg, training, data.train_images, data.train_labels, seeded_generator(seed, stream=TRAINING))
    record = None
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for record in tqdm(trainer.records(), total=steps, desc="GAN", disable=not progress):
            for name in ("d_loss", "g_loss", "d_real", "d_fake"):
                _run.log_scalar(name, getattr(record, name), record.step)
            if record.step % sample_every == 0:
                save_samples(_run, trainer, folder, f"samples_{record.step}.png", seed)
        save_samples(_run, trainer, folder, "samples.png", seed)
        torch.save({"config": config_to_dict(cfg), "generator": trainer.generator_net.state_dict(),
                    "discriminator": trainer.discriminator.state_dict()}, folder / "gan.pt")
        _run.add_artifact(str(folder / "gan.pt"), "gan.pt", content_type="application/octet-stream")
    _run.info.update(dataset=dataset, generator_parameters=sum(p.numel() for p in trainer.generator_net.parameters()))
    return {"d_loss": record.d_loss, "g_loss": record.g_loss, "d_real": record.d_real, "d_fake": record.d_fake}


if __name__ == "__main__":
    attach_observers(ex)
    ex.run_commandline()
