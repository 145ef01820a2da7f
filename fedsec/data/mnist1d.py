"""MNIST-1D (Greydanus and Steinbach, "Scaling down deep learning with MNIST-1D", ICML 2024), generated
locally.

Each example is one of ten 1-D digit templates (12 points) put through the package's procedural
transforms -- padding to 36-60 points, random scaling, shear ``x <- x + s * t`` (``s`` up to 0.75),
circular translation by up to 48 points, correlated Gaussian noise (scale 0.25, smoothed) and i.i.d.
noise (scale 0.02) -- and resampled to ``length`` points. Linear models and MLPs stay far below a
small CNN on it, unlike on 8x8 digits, which is why the stress grid runs on it as well.

The data are *generated* with the package's ``make_dataset`` from ``generator_seed``; the
package's download path (``get_dataset``) is never called, so nothing leaves the machine. The result
is cached as ``<data_dir>/mnist1d/mnist1d_n<train>_t<test>_l<length>_s<seed>.npz`` and read back on
the next call. The package seeds numpy's and Python's global generators; their states are restored
afterwards, so generating the data does not change any other seeded stream.

The dependency is optional: ``pip install "fedsec[mnist1d]"``.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from fedsec.data.datasets import DATASETS, TensorData, _check_int, _pair
from fedsec.errors import ConfigError, DataError

__all__ = ["cache_path", "generate"]

#: The install command named by the error raised when the package is missing.
EXTRA = 'pip install "fedsec[mnist1d]"'


def cache_path(data_dir: Path, n_train: int, n_test: int, length: int, generator_seed: int) -> Path:
    """Where :func:`generate`'s output for these parameters is cached under ``data_dir``."""
    return Path(data_dir) / "mnist1d" / f"mnist1d_n{n_train}_t{n_test}_l{length}_s{generator_seed}.npz"


def _import() -> Any:
    try:
        import mnist1d.data as m1d
    except ImportError as e:
        raise DataError(
            f"dataset 'mnist1d': got no importable 'mnist1d' package ({e}); want the optional extra: {EXTRA}"
        ) from None
    return m1d


def generate(n_train: int, n_test: int, length: int, generator_seed: int) -> dict[str, np.ndarray]:
    """Generate MNIST-1D with the package's ``make_dataset``: ``{"x", "y", "x_test", "y_test"}``.

    ``n_train + n_test`` examples, ``(n_train + n_test) / 10`` per class, shuffled by the package
    and split in that order: the first ``n_train`` for training. ``x`` arrays are float32 of shape
    ``(N, length)``; ``y`` arrays int64 in ``[0, 10)``. Deterministic for a seed; no network.
    """
    m1d = _import()
    args = m1d.get_dataset_args()
    args.num_samples = n_train + n_test
    args.train_split = 1.0
    args.final_seq_length = length
    args.seed = generator_seed
    args.url = None  # never downloaded
    np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    try:
        raw = m1d.make_dataset(args)
    finally:
        np.random.set_state(np_state)  # noqa: NPY002
        random.setstate(py_state)
    x = np.asarray(raw["x"], dtype=np.float32)
    y = np.asarray(raw["y"], dtype=np.int64)
    if x.shape != (n_train + n_test, length) or y.shape != (n_train + n_test,):
        raise DataError(
            f"dataset 'mnist1d': got x {x.shape}, y {y.shape} from the package; "
            f"want ({n_train + n_test}, {length}) and ({n_train + n_test},)"
        )
    return {"x": x[:n_train], "y": y[:n_train], "x_test": x[n_train:], "y_test": y[n_train:]}


def _cached(path: Path, n_train: int, n_test: int, length: int, seed: int) -> dict[str, np.ndarray]:
    """Read the cache at ``path``, or generate and write it atomically (parallel sweeps may race)."""
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in ("x", "y", "x_test", "y_test")}
        if data["x"].shape == (n_train, length) and data["x_test"].shape == (n_test, length):
            return data
    data = generate(n_train, n_test, length, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, x=data["x"], y=data["y"], x_test=data["x_test"], y_test=data["y_test"])
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return data


@DATASETS.register("mnist1d")
def _load_mnist1d(
    data_dir: Path,
    seed: int,
    test_fraction: float,
    *,
    n_train: int = 4000,
    n_test: int = 1000,
    length: int = 40,
    generator_seed: int = 42,
) -> tuple[TensorData, TensorData]:
    """MNIST-1D, shape ``(N, 1, length)``, 10 classes; cached under ``data_dir/mnist1d``.

    ``generator_seed`` (default 42, the package's) fixes the data; the run's ``seed`` and
    ``test_fraction`` do not change it (the split is ``n_train`` / ``n_test``), so every seed of a
    grid trains on the same data and varies only the partition, the initialization and the batches.
    ``n_train + n_test`` must be a multiple of 10 (the package draws equally many per class).
    Standardized with the training split's mean and std (one channel).
    """
    n_tr = _check_int("mnist1d", "n_train", n_train, 10)
    n_te = _check_int("mnist1d", "n_test", n_test, 10)
    ln = _check_int("mnist1d", "length", length, 8)
    gs = _check_int("mnist1d", "generator_seed", generator_seed, 0)
    if (n_tr + n_te) % 10:
        raise ConfigError(
            f"dataset 'mnist1d': got n_train + n_test = {n_tr + n_te}; "
            "want a multiple of 10 (one tenth per class)"
        )
    d = _cached(cache_path(data_dir, n_tr, n_te, ln, gs), n_tr, n_te, ln, gs)
    return _pair("mnist1d", d["x"][:, None, :], d["y"], d["x_test"][:, None, :], d["y_test"], 10)
