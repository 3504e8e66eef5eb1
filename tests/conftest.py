"""Shared fixtures: tiny configurations so every core test runs on CPU in seconds; the report run on a store."""
from pathlib import Path

import pytest
import torch

from gtn_core.config import GTNConfig, LearnerConfig, GeneratorConfig


def tiny_config(**overrides) -> GTNConfig:
    """A GTN small enough for float64 finite differences: 3 classes, 8x8 images, 3 inner steps of 6."""
    values = dict(
        batch_size=6, inner_steps=3, outer_steps=2, eval_every=1, real_batch_size=9, eval_batch_size=16,
        train_eval_size=16,
        generator=GeneratorConfig(noise_size=4, num_classes=3, hidden_size=8, base_channels=4, image_size=8),
        learner=LearnerConfig(channels=(3,), num_classes=3, image_size=8),
    )
    values.update(overrides)
    return GTNConfig(**values)


def report_on(runs_dir: Path, out: Path, figures: tuple[str, ...], min_width: int = 300) -> tuple[Path, str]:
    """Run the report (analysis/make_report.py) on a file store into `out`; check that each named figure is a PNG
    of some size with more than one colour; (its figures folder, the page's text, which has no Traceback)."""
    from PIL import Image

    from analysis import make_report

    folder, page = out / "figures", out / "report.html"
    assert make_report.main(["--runs-dir", str(runs_dir), "--figures-dir", str(folder), "--output", str(page)]) == 0
    for name in figures:
        with Image.open(folder / f"{name}.png") as image:
            assert image.width >= min_width and len(image.convert("RGB").getcolors(1 << 24)) > 1, name
    text = page.read_text()
    assert "Traceback" not in text
    return folder, text


@pytest.fixture
def float64():
    """Run a test with float64 as the default dtype (finite differences need it)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture(scope="session")
def mnist_ready():
    """Real MNIST under the default data root (a no-op when `make` already prepared it)."""
    from gtn_core.data import default_data_root, prepare

    prepare("mnist", default_data_root())


@pytest.fixture(scope="module")
def mongo_base(tmp_path_factory):
    """SecantusDB on a free 127.0.0.1 port, storage on disk in a temp folder; its URL without a database."""
    from experiments import board

    root = tmp_path_factory.mktemp("secantusdb")
    port = board.free_port()
    server = board.start_database(port, root / "db", root / "secantusdb.log")
    yield f"mongodb://127.0.0.1:{port}"
    board.stop(server)


@pytest.fixture
def file_store(tmp_path):
    """The training experiment recorded in an atomic file store in tmp_path (as attach_observers does), one test."""
    from experiments import mnist_experiment
    from experiments.observers import AtomicFileStorageObserver

    observer = AtomicFileStorageObserver(str(tmp_path / "runs"))
    mnist_experiment.ex.observers.append(observer)
    yield tmp_path / "runs"
    mnist_experiment.ex.observers.remove(observer)
