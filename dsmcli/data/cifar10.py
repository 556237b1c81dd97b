"""``cifar10``: the CIFAR-10 images from the local batch files — never downloaded.

``path`` is a directory holding either version that https://www.cs.toronto.edu/~kriz/cifar.html
distributes, extracted: the Python batches (``data_batch_1`` … ``data_batch_5``, ``test_batch``:
pickled dicts with ``b'data'``, uint8 (N, 3072), and ``b'labels'``) or the binary ones
(``data_batch_1.bin`` … ``test_batch.bin``: records of one label byte and 3072 pixel bytes).
The files are looked for in ``path`` itself and in its ``cifar-10-batches-py/`` or
``cifar-10-batches-bin/`` (what the archives extract to). Both store an image as three 32×32
planes (R, G, B: CHW); rows here are H, W, C (NHWC, ``image_shape`` (32, 32, 3)), scaled from
0…255 to [0, 1], labels 0–9 (airplane … truck), ``quantization`` 1/255. ``limit_train`` /
``limit_test`` keep the first N images of each split (later batches are then not read).

Only the six expected file names are unpickled, and with a restricted unpickler that resolves
nothing but what a NumPy array needs (a pickle naming any other global is refused as damaged).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, PositiveInt

from dsmcli.data.base import Dataset
from dsmcli.errors import UserError
from dsmcli.section import FilePath, Section

IMAGES = True  # rows are flattened images (the default networks of some objectives are convolutional)

TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
TEST = ["test_batch"]
SIDE, CHANNELS = 32, 3
PIXELS = SIDE * SIDE * CHANNELS  # 3072
RECORD = 1 + PIXELS  # one record of the binary version
LAYOUTS = [("", "py"), ("", "bin"), ("cifar-10-batches-py", "py"), ("cifar-10-batches-bin", "bin")]
HINT = ("extract cifar-10-python.tar.gz or cifar-10-binary.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html "
        "there (dsm never downloads)")


class Config(Section):
    kind: Literal["cifar10"] = "cifar10"
    path: FilePath
    limit_train: PositiveInt | None = None  # the first N of the 50000 training images
    limit_test: PositiveInt | None = None  # the first N of the 10000 test images
    holdout_class: int | None = Field(None, ge=0, le=9)  # removed from training (anomaly detection)
    labels_per_class: PositiveInt | None = None  # only this many training labels per class are used (semi-supervised)


def _names(version: str) -> list[str]:
    return [n + (".bin" if version == "bin" else "") for n in TRAIN + TEST]


def locate(path: str) -> tuple[str, list[Path]]:
    """(``"py"`` or ``"bin"``, the five training batches then the test batch)."""
    root = Path(path)
    if not root.is_dir():
        from dsmcli.fsio import regular_file_problem

        problem = regular_file_problem(root)
        raise UserError(f"data.path: '{path}' {problem or 'is a file, not a directory'}; data.kind cifar10 reads "
                        f"a directory of the CIFAR-10 batch files")
    best = None
    for sub, version in LAYOUTS:
        folder = root / sub if sub else root
        files = [folder / n for n in _names(version)]
        present = [f for f in files if f.is_file()]
        if len(present) == len(files):
            return version, files
        if present and (best is None or len(present) > len(best[1])):
            best = (files, present)
    if best is not None:
        missing = [f.name for f in best[0] if f not in best[1]]
        raise UserError(f"data.path: '{best[0][0].parent}' has {len(best[1])} of the 6 CIFAR-10 batch files but not "
                        f"{', '.join(missing)}; {HINT}")
    archives = sorted(p.name for p in root.glob("cifar-10-*.tar.gz"))
    fix = f"extract {archives[0]} there first (tar xzf {archives[0]})" if archives else HINT
    raise UserError(f"data.path: '{path}' has no CIFAR-10 batches (data_batch_1 … data_batch_5 and test_batch, or the "
                    f"same with .bin, in it or in cifar-10-batches-py/ or cifar-10-batches-bin/); {fix}")


def source_files(cfg: Config) -> list[Path]:
    """The files ``build`` reads (recorded in the run's meta.json)."""
    return locate(cfg.path)[1]


NBYTES_FIX = "use fewer images (data.limit_train, data.limit_test)"


def nbytes(cfg: Config) -> int | None:
    """The float32 rows of the kept images, plus two batches in flight (bytes and a transposed copy)."""
    try:
        files = source_files(cfg)
        sizes = [f.stat().st_size for f in files]
    except (UserError, OSError):
        return None  # build reports what is wrong with the files
    n_train = sum(s // RECORD for s in sizes[:5])
    n_test = sizes[5] // RECORD
    n_train, n_test = min(n_train, cfg.limit_train or n_train), min(n_test, cfg.limit_test or n_test)
    return 4 * PIXELS * (n_train + n_test) + 2 * max(sizes)


class _ArrayUnpickler(pickle.Unpickler):
    """Resolves only what pickled NumPy arrays (and Python 2 byte strings) refer to."""

    ARRAYS = {("multiarray", "_reconstruct"), ("numeric", "_frombuffer")}  # in numpy.core or numpy._core

    def find_class(self, module, name):
        package, _, sub = module.rpartition(".")
        if package in ("numpy.core", "numpy._core") and (sub, name) in self.ARRAYS:
            import importlib

            return getattr(importlib.import_module(f"numpy._core.{sub}"), name)  # numpy.core: a deprecated alias
        if (module, name) in (("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it refers to {module}.{name}, which a CIFAR-10 batch never does")


def _read_python_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            batch = _ArrayUnpickler(f, encoding="bytes").load()
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 — a damaged pickle can fail in many ways
        raise UserError(f"data.path: '{path}' is not a readable CIFAR-10 Python batch ({type(e).__name__}: "
                        f"{str(e)[:120]})") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        keys = sorted(map(repr, batch))[:6] if isinstance(batch, dict) else type(batch).__name__
        raise UserError(f"data.path: '{path}' is not a CIFAR-10 Python batch (a dict with b'data' and b'labels'; "
                        f"got {keys})")
    data, labels = batch[b"data"], batch[b"labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != PIXELS:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise UserError(f"data.path: b'data' in '{path}' must be uint8 (N, {PIXELS}); got {got}")
    try:
        labels = np.asarray(labels, np.int64).reshape(-1)
    except (TypeError, ValueError):
        raise UserError(f"data.path: b'labels' in '{path}' is not a list of integers") from None
    if len(labels) != len(data):
        raise UserError(f"data.path: '{path}' has {len(data)} images but {len(labels)} labels")
    return data, labels


def _read_binary_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        raw = np.fromfile(path, np.uint8)
    except (OSError, ValueError) as e:
        raise UserError(f"data.path: cannot read '{path}': {getattr(e, 'strerror', None) or e}") from None
    if raw.size == 0 or raw.size % RECORD:
        raise UserError(f"data.path: '{path}' holds {raw.size:,} bytes, not a whole number of {RECORD}-byte CIFAR-10 "
                        f"records (1 label byte + {PIXELS} pixels): the file is damaged or not a CIFAR-10 batch")
    records = raw.reshape(-1, RECORD)
    return records[:, 1:], records[:, 0].astype(np.int64)


def read_batch(path: Path, version: str) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 (N, 3072) CHW rows, labels (N,)) of one batch file, labels checked to be 0–9."""
    data, labels = (_read_python_batch if version == "py" else _read_binary_batch)(path)
    bad = (labels < 0) | (labels > 9)
    if bad.any():
        i = int(np.argmax(bad))
        raise UserError(f"data.path: '{path}' has label {labels[i]} at image {i}; CIFAR-10 labels are 0–9")
    return data, labels


def chw_to_hwc(data: np.ndarray) -> np.ndarray:
    """(N, 3·32·32) rows of R, G, B planes → (N, 32·32·3) rows in H, W, C order."""
    return data.reshape(-1, CHANNELS, SIDE, SIDE).transpose(0, 2, 3, 1).reshape(len(data), PIXELS)


def _split(files: list[Path], version: str, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The rows and labels of consecutive batches, stopping once ``limit`` images are read."""
    rows, labels, n = [], [], 0
    for f in files:
        data, y = read_batch(f, version)
        take = len(data) if limit is None else min(len(data), limit - n)
        rows.append(np.divide(chw_to_hwc(data[:take]), np.float32(255.0), dtype=np.float32))
        labels.append(y[:take].astype(np.int32))
        n += take
        if limit is not None and n >= limit:
            break
    return np.concatenate(rows), np.concatenate(labels)


def build(cfg: Config) -> Dataset:
    version, files = locate(cfg.path)
    x_train, y_train = _split(files[:5], version, cfg.limit_train)
    x_test, y_test = _split(files[5:], version, cfg.limit_test)
    if cfg.holdout_class is not None:
        keep = y_train != cfg.holdout_class
        x_train, y_train = x_train[keep], y_train[keep]
    return Dataset("cifar10", x_train, x_test, y_train, y_test, image_shape=(SIDE, SIDE, CHANNELS),
                   holdout_class=cfg.holdout_class, quantization=np.full(PIXELS, 1 / 255.0, np.float32))
