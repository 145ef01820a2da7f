"""Datasets as in-memory tensors: the ``TensorData`` container, the ``DATASETS`` registry and loaders.

Every loader returns ``(train, test)`` as two ``TensorData`` whose features are float32 and
standardized with statistics computed on the *training* split only (so nothing about the test set
leaks into training). Image data has shape ``(N, C, H, W)``, vector data ``(N, D)``; labels are
int64 in ``[0, num_classes)``.

Bundled (no download): ``digits`` (scikit-learn's 8x8 handwritten digits), ``synthetic`` (a
seeded Gaussian mixture) and ``mnist1d`` (generated locally; :mod:`fedsec.data.mnist1d`). Read
from ``data_dir`` in their standard distribution formats:
``fmnist`` (IDX ``.gz``), ``svhn`` (MATLAB ``.mat``) and ``cifar10`` (python pickled batches); see
``fedsec.data.formats``.

Another dataset: register a loader taking ``(data_dir, seed, test_fraction, *, <options>)`` and
returning ``(train, test)``; ``load_dataset`` accepts exactly its keyword-only options::

    @DATASETS.register("my_data")
    def _load(data_dir, seed, test_fraction, *, scale=1.0): ...
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedsec.data import formats
from fedsec.errors import ConfigError, DataError
from robust._registry import Registry

__all__ = ["DATASETS", "TensorData", "default_data_dir", "load_dataset"]

#: Environment variable naming the default directory of downloaded datasets.
DATA_DIR_ENV = "FEDSEC_DATA_DIR"


@dataclass(frozen=True, eq=False)
class TensorData:
    """A labelled dataset held as two tensors (compared by identity: tensors have no single truth value).

    Attributes
    ----------
    x:
        float32 features, ``(N, C, H, W)`` for images or ``(N, D)`` for vectors, already normalized.
    y:
        int64 labels ``(N,)`` with values in ``[0, num_classes)``.
    num_classes:
        Number of classes of the task (a split may miss some of them).
    name:
        Dataset name, e.g. ``"digits"`` or ``"digits/test"``.
    """

    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    name: str

    def __post_init__(self) -> None:
        if not isinstance(self.x, torch.Tensor) or not isinstance(self.y, torch.Tensor):
            raise DataError(
                f"{self.name}: got x of type {type(self.x).__name__}, y of type {type(self.y).__name__}; "
                "want torch.Tensor for both"
            )
        if self.x.dtype != torch.float32:
            raise DataError(f"{self.name}: got x.dtype={self.x.dtype}; want torch.float32")
        if self.y.dtype != torch.int64:
            raise DataError(f"{self.name}: got y.dtype={self.y.dtype}; want torch.int64")
        if self.y.dim() != 1 or self.x.dim() < 2:
            raise DataError(
                f"{self.name}: got x.shape={tuple(self.x.shape)}, y.shape={tuple(self.y.shape)}; "
                "want x of shape (N, ...) with at least 2 dims and y of shape (N,)"
            )
        if len(self.x) != len(self.y):
            raise DataError(f"{self.name}: got len(x)={len(self.x)}, len(y)={len(self.y)}; want them equal")
        if (
            isinstance(self.num_classes, bool)
            or not isinstance(self.num_classes, int)
            or self.num_classes < 2
        ):
            raise DataError(f"{self.name}: got num_classes={self.num_classes!r}; want an int >= 2")
        if len(self.y) and (int(self.y.min()) < 0 or int(self.y.max()) >= self.num_classes):
            raise DataError(
                f"{self.name}: got labels in [{int(self.y.min())}, {int(self.y.max())}]; "
                f"want them in [0, {self.num_classes})"
            )

    def __len__(self) -> int:
        return len(self.y)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example, e.g. ``(1, 8, 8)``: what ``make_model`` takes."""
        return tuple(self.x.shape[1:])

    def subset(self, idx: np.ndarray | torch.Tensor) -> TensorData:
        """The examples at ``idx`` (integer indices, any order, repeats allowed), as a new ``TensorData``."""
        t = torch.as_tensor(np.asarray(idx) if not isinstance(idx, torch.Tensor) else idx)
        if t.dtype == torch.bool or t.dim() != 1 or (t.numel() and t.is_floating_point()):
            raise DataError(
                f"{self.name}: got index of dtype {t.dtype}, shape {tuple(t.shape)}; want 1-d integers"
            )
        t = t.to(torch.int64)
        if t.numel() and (int(t.min()) < -len(self) or int(t.max()) >= len(self)):
            raise DataError(
                f"{self.name}: got indices in [{int(t.min())}, {int(t.max())}]; want < {len(self)}"
            )
        return TensorData(self.x[t], self.y[t], self.num_classes, self.name)

    def to(self, device: torch.device | str) -> TensorData:
        """The same data on ``device``."""
        return TensorData(self.x.to(device), self.y.to(device), self.num_classes, self.name)


Loader = Callable[..., tuple[TensorData, TensorData]]

#: Registered dataset loaders: ``loader(data_dir, seed, test_fraction, **options) -> (train, test)``.
DATASETS: Registry[tuple[TensorData, TensorData]] = Registry("dataset")


def default_data_dir() -> Path:
    """``$FEDSEC_DATA_DIR`` if set, else ``./data``."""
    return Path(os.environ.get(DATA_DIR_ENV, "data"))


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    **options: Any,
) -> tuple[TensorData, TensorData]:
    """Load dataset ``name`` as ``(train, test)``.

    Parameters
    ----------
    name:
        One of ``DATASETS.names()``: ``digits``, ``synthetic``, ``fmnist``, ``svhn``, ``cifar10``.
    data_dir:
        Directory holding downloaded files (ignored by the bundled datasets); default
        ``default_data_dir()``.
    seed:
        Seed of the train/test split and of synthetic data. Data are not secrets, so numpy's PRNG
        is used here.
    test_fraction:
        Share of examples held out for testing, in (0, 1). Datasets distributed with a fixed
        test split (fmnist, svhn, cifar10) keep their own split and ignore it.
    options:
        Dataset-specific keyword options (e.g. ``n_samples`` for ``synthetic``, ``max_train`` for
        the file datasets). An option the dataset does not know raises ``ConfigError``.

    Raises
    ------
    ConfigError
        Unknown name or option, or out-of-range value.
    DataError
        A file is missing or malformed; the message names the expected path and how to get it.
    """
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; want one of: {', '.join(DATASETS.names())}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ConfigError(f"seed: got {seed!r}; want an int")
    if (
        isinstance(test_fraction, bool)
        or not isinstance(test_fraction, int | float)
        or not 0 < test_fraction < 1
    ):
        raise ConfigError(f"test_fraction: got {test_fraction!r}; want a number in (0, 1)")
    loader = DATASETS.get(name)
    allowed = [
        p.name
        for p in inspect.signature(loader).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"dataset {name!r}: got unknown option(s) {', '.join(unknown)}; "
            f"want some of: {', '.join(allowed) or '(none)'}"
        )
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    return loader(root, int(seed), float(test_fraction), **options)


# --------------------------------------------------------------------------------------------------
# helpers


def _standardize(train: np.ndarray, test: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardize with the training split's statistics.

    Images ``(N, C, H, W)`` and signals ``(N, C, L)``: one mean and std per channel,
    ``x' = (x - mu_c) / sigma_c``. Vectors ``(N, D)``: one mean and std per feature. A zero std is
    replaced by 1 (constant features stay 0).
    """
    axes: tuple[int, ...] = {4: (0, 2, 3), 3: (0, 2)}.get(train.ndim, (0,))
    tr = np.asarray(train, dtype=np.float32)
    te = np.asarray(test, dtype=np.float32)
    mu = tr.mean(axis=axes, keepdims=True, dtype=np.float64)
    sd = tr.std(axis=axes, keepdims=True, dtype=np.float64)
    sd[sd == 0] = 1.0
    out_tr = ((tr - mu.astype(np.float32)) / sd.astype(np.float32)).astype(np.float32, copy=False)
    out_te = ((te - mu.astype(np.float32)) / sd.astype(np.float32)).astype(np.float32, copy=False)
    return torch.from_numpy(np.ascontiguousarray(out_tr)), torch.from_numpy(np.ascontiguousarray(out_te))


def _split(
    y: np.ndarray, test_fraction: float, seed: int, stratify: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (stratified) train/test index split."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    tr, te = train_test_split(
        idx, test_size=test_fraction, random_state=seed, stratify=y if stratify else None
    )
    return np.sort(tr), np.sort(te)


def _pair(
    name: str, x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, y_te: np.ndarray, num_classes: int
) -> tuple[TensorData, TensorData]:
    xt, xe = _standardize(x_tr, x_te)
    return (
        TensorData(xt, torch.from_numpy(y_tr.astype(np.int64)), num_classes, name),
        TensorData(xe, torch.from_numpy(y_te.astype(np.int64)), num_classes, f"{name}/test"),
    )


def _check_int(name: str, key: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ConfigError(f"dataset {name!r} option {key}: got {value!r}; want an int >= {low}")
    return int(value)


def _limit(
    name: str, key: str, value: int | None, x: np.ndarray, y: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Keep a seeded random subset of ``value`` examples (all if ``value`` is None or larger)."""
    if value is None:
        return x, y
    k = _check_int(name, key, value, 1)
    if k >= len(y):
        return x, y
    keep = np.sort(np.random.default_rng(seed).permutation(len(y))[:k])
    return x[keep], y[keep]


def _limit_splits(
    name: str,
    max_train: int | None,
    max_test: int | None,
    x_tr: np.ndarray,
    y_tr: np.ndarray,
    x_te: np.ndarray,
    y_te: np.ndarray,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_limit` on a distributed train/test split (``max_train`` with ``seed``, ``max_test`` with
    ``seed + 1``)."""
    x_tr, y_tr = _limit(name, "max_train", max_train, x_tr, y_tr, seed)
    x_te, y_te = _limit(name, "max_test", max_test, x_te, y_te, seed + 1)
    return x_tr, y_tr, x_te, y_te


# --------------------------------------------------------------------------------------------------
# bundled datasets


@DATASETS.register("digits")
def _load_digits(data_dir: Path, seed: int, test_fraction: float) -> tuple[TensorData, TensorData]:
    """scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), shape ``(N, 1, 8, 8)``.

    Pixels (0..16) are divided by 16, then standardized with the training split's mean and std;
    the split is stratified by class and seeded.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (np.asarray(bunch.images, dtype=np.float64) / 16.0)[:, None, :, :]
    y = np.asarray(bunch.target, dtype=np.int64)
    tr, te = _split(y, test_fraction, seed)
    return _pair("digits", x[tr], y[tr], x[te], y[te], 10)


@DATASETS.register("synthetic")
def _load_synthetic(
    data_dir: Path,
    seed: int,
    test_fraction: float,
    *,
    n_samples: int = 2000,
    n_features: int = 20,
    n_classes: int = 4,
    class_sep: float = 1.0,
) -> tuple[TensorData, TensorData]:
    """A seeded Gaussian mixture, shape ``(N, D)``.

    Class centres ``mu_c ~ N(0, (class_sep * 2 / sqrt(D))^2 I_D)`` per coordinate; each example
    ``x = mu_y + eps``, ``eps ~ N(0, I_D)``, with balanced labels ``y = i mod C`` shuffled. The
    expected distance between two centres is about ``2 * sqrt(2) * class_sep``, so the default is
    learnable by a linear model but not separable. Same seed, same data.
    """
    n = _check_int("synthetic", "n_samples", n_samples, 2)
    d = _check_int("synthetic", "n_features", n_features, 1)
    c = _check_int("synthetic", "n_classes", n_classes, 2)
    if isinstance(class_sep, bool) or not isinstance(class_sep, int | float) or not class_sep > 0:
        raise ConfigError(f"dataset 'synthetic' option class_sep: got {class_sep!r}; want a number > 0")
    if n < 2 * c:
        raise ConfigError(
            f"dataset 'synthetic': got n_samples={n}, n_classes={c}; want n_samples >= 2*n_classes"
        )
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 2.0 * float(class_sep) / np.sqrt(d), size=(c, d))
    y = rng.permutation(np.arange(n) % c).astype(np.int64)
    x = centres[y] + rng.normal(size=(n, d))
    tr, te = _split(y, test_fraction, seed)
    return _pair("synthetic", x[tr], y[tr], x[te], y[te], c)


# --------------------------------------------------------------------------------------------------
# downloaded datasets


def _find(data_dir: Path, subdirs: Sequence[str], files: Sequence[str], dataset: str, how: str) -> Path:
    """The first ``data_dir / sub`` holding all ``files``; else DataError naming what is missing."""
    for sub in subdirs:
        d = data_dir / sub if sub else data_dir
        if all((d / f).is_file() for f in files):
            return d
    want = data_dir / subdirs[0] if subdirs[0] else data_dir
    missing = [str(want / f) for f in files if not (want / f).is_file()]
    raise DataError(
        f"dataset {dataset!r}: got no file at {', '.join(missing)}; want the files "
        f"{', '.join(files)} in {want} (or {data_dir} directly). {how}"
    )


FMNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
FMNIST_HOW = (
    "Get them from https://github.com/zalandoresearch/fashion-mnist (data/fashion) and keep them gzipped."
)


@DATASETS.register("fmnist")
def _load_fmnist(
    data_dir: Path,
    seed: int,
    test_fraction: float,
    *,
    max_train: int | None = None,
    max_test: int | None = None,
) -> tuple[TensorData, TensorData]:
    """Fashion-MNIST from its IDX ``.gz`` files, shape ``(N, 1, 28, 28)``, 10 classes.

    Looks in ``data_dir/fmnist``, ``data_dir/fashion-mnist``, ``data_dir/FashionMNIST/raw`` and
    ``data_dir``. Keeps the distributed 60k/10k split; ``max_train`` / ``max_test`` keep a seeded
    random subset. Pixels / 255, then per-channel standardization with training statistics.
    """
    d = _find(
        data_dir, ("fmnist", "fashion-mnist", "FashionMNIST/raw", ""), FMNIST_FILES, "fmnist", FMNIST_HOW
    )
    x_tr = formats.read_idx(d / FMNIST_FILES[0])
    y_tr = formats.read_idx(d / FMNIST_FILES[1])
    x_te = formats.read_idx(d / FMNIST_FILES[2])
    y_te = formats.read_idx(d / FMNIST_FILES[3])
    for xs, ys, f in ((x_tr, y_tr, FMNIST_FILES[0]), (x_te, y_te, FMNIST_FILES[2])):
        if xs.ndim != 3 or ys.ndim != 1 or len(xs) != len(ys):
            raise DataError(
                f"fmnist {d / f}: got images {xs.shape} and labels {ys.shape}; want (N, H, W) and (N,)"
            )
    x_tr, y_tr, x_te, y_te = _limit_splits("fmnist", max_train, max_test, x_tr, y_tr, x_te, y_te, seed)
    return _pair(
        "fmnist",
        x_tr[:, None].astype(np.float32) / 255.0,
        formats.check_labels(y_tr, 10, d / FMNIST_FILES[1]),
        x_te[:, None].astype(np.float32) / 255.0,
        formats.check_labels(y_te, 10, d / FMNIST_FILES[3]),
        10,
    )


SVHN_FILES = ("train_32x32.mat", "test_32x32.mat")
SVHN_HOW = "Get them from http://ufldl.stanford.edu/housenumbers/ (format 2, cropped digits)."


@DATASETS.register("svhn")
def _load_svhn(
    data_dir: Path,
    seed: int,
    test_fraction: float,
    *,
    max_train: int | None = None,
    max_test: int | None = None,
) -> tuple[TensorData, TensorData]:
    """SVHN cropped digits from ``train_32x32.mat`` / ``test_32x32.mat``, shape ``(N, 3, 32, 32)``.

    Looks in ``data_dir/svhn`` and ``data_dir``. Label 10 in the files means the digit 0. Keeps
    the distributed split; ``max_train`` / ``max_test`` keep a seeded random subset.
    """
    d = _find(data_dir, ("svhn", ""), SVHN_FILES, "svhn", SVHN_HOW)
    x_tr, y_tr = formats.read_svhn_mat(d / SVHN_FILES[0])
    x_te, y_te = formats.read_svhn_mat(d / SVHN_FILES[1])
    x_tr, y_tr, x_te, y_te = _limit_splits("svhn", max_train, max_test, x_tr, y_tr, x_te, y_te, seed)
    return _pair("svhn", x_tr.astype(np.float32) / 255.0, y_tr, x_te.astype(np.float32) / 255.0, y_te, 10)


CIFAR_FILES = (*tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
CIFAR_HOW = (
    "Get cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and extract it there."
)


@DATASETS.register("cifar10")
def _load_cifar10(
    data_dir: Path,
    seed: int,
    test_fraction: float,
    *,
    max_train: int | None = None,
    max_test: int | None = None,
) -> tuple[TensorData, TensorData]:
    """CIFAR-10 from the python batches in ``cifar-10-batches-py/``, shape ``(N, 3, 32, 32)``.

    Looks in ``data_dir/cifar-10-batches-py``, ``data_dir/cifar10`` and ``data_dir``. The batches
    are read with a restricted unpickler that only rebuilds numpy arrays, lists and dicts.
    """
    d = _find(data_dir, ("cifar-10-batches-py", "cifar10", ""), CIFAR_FILES, "cifar10", CIFAR_HOW)
    parts = [formats.read_cifar_batch(d / f) for f in CIFAR_FILES[:5]]
    x_tr = np.concatenate([p[0] for p in parts])
    y_tr = np.concatenate([p[1] for p in parts])
    x_te, y_te = formats.read_cifar_batch(d / CIFAR_FILES[5])
    x_tr, y_tr, x_te, y_te = _limit_splits("cifar10", max_train, max_test, x_tr, y_tr, x_te, y_te, seed)
    return _pair("cifar10", x_tr.astype(np.float32) / 255.0, y_tr, x_te.astype(np.float32) / 255.0, y_te, 10)
