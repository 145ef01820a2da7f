"""Readers for the standard distribution formats of image datasets.

- IDX (MNIST, Fashion-MNIST), optionally gzipped: a 4-byte magic ``0x00 0x00 <type> <ndim>``, then
  ``ndim`` big-endian uint32 sizes, then the values big-endian in row-major order
  (LeCun et al., "THE MNIST DATABASE" file-format description).
- SVHN "format 2" ``.mat`` (MATLAB v5, read by ``scipy.io.loadmat``): ``X`` of shape
  ``(32, 32, 3, N)`` uint8 and ``y`` of shape ``(N, 1)`` with labels 1..10, where 10 means digit 0
  (Netzer et al. 2011).
- CIFAR-10 python batches: a pickled dict with ``b"data"`` (``(N, 3072)`` uint8, channel-major
  red/green/blue planes of 32x32) and ``b"labels"`` (N ints in 0..9) (Krizhevsky 2009).

Every reader returns numpy arrays and raises ``DataError`` naming the file and what was wrong.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np

from fedsec.errors import DataError

__all__ = ["check_labels", "read_cifar_batch", "read_idx", "read_svhn_mat"]

#: IDX type byte -> big-endian numpy dtype.
IDX_TYPES: dict[int, str] = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"got no file at {path}; want an existing file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e})") from e
    if raw[:2] == b"\x1f\x8b":  # gzip magic
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise DataError(f"{path}: got a corrupt gzip stream ({e}); want a complete .gz file") from e
    return raw


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzipped or not) into a native-endian numpy array of its stored shape."""
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(
            f"{path}: got magic {raw[:4].hex() or '(empty)'}; want 0000<type><ndim> (an IDX file)"
        )
    kind, ndim = raw[2], raw[3]
    if kind not in IDX_TYPES:
        known = ", ".join(f"0x{k:02x}" for k in IDX_TYPES)
        raise DataError(f"{path}: got IDX type byte 0x{kind:02x}; want one of {known}")
    if ndim < 1 or len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path}: got ndim={ndim} and {len(raw)} bytes; want ndim >= 1 and a full header")
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    dtype = np.dtype(IDX_TYPES[kind])
    want = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    body = raw[4 + 4 * ndim :]
    if len(body) != want:
        raise DataError(f"{path}: got {len(body)} data bytes; want {want} for shape {shape} of {dtype}")
    return np.frombuffer(body, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def check_labels(y: np.ndarray, num_classes: int, path: str | Path) -> np.ndarray:
    """``y`` as int64 after checking every label is in ``[0, num_classes)``."""
    y = np.asarray(y)
    if y.ndim == 1 and y.size == 0:
        return y.astype(np.int64)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: got labels of shape {y.shape}, dtype {y.dtype}; want 1-d integers")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise DataError(f"{path}: got labels in [{y.min()}, {y.max()}]; want them in [0, {num_classes})")
    return y.astype(np.int64)


def read_svhn_mat(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an SVHN ``*_32x32.mat`` file into ``x`` uint8 ``(N, 3, 32, 32)`` and ``y`` int64 ``(N,)``.

    The file stores ``X`` as ``(H, W, C, N)`` and labels 1..10 with 10 standing for the digit 0;
    this returns labels 0..9 (``y mod 10``).
    """
    from scipy.io import loadmat

    path = Path(path)
    if not path.is_file():
        raise DataError(f"got no file at {path}; want an SVHN .mat file")
    try:
        mat = loadmat(str(path))
    except Exception as e:  # scipy raises ValueError, TypeError, MatReadError ... on bad files
        raise DataError(f"{path}: not a readable MATLAB v5 file ({e})") from e
    if "X" not in mat or "y" not in mat:
        keys = sorted(k for k in mat if not k.startswith("__"))
        raise DataError(f"{path}: got variables {keys}; want 'X' and 'y'")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1)
    if x.ndim != 4 or x.shape[2] != 3 or x.shape[3] != len(y):
        raise DataError(f"{path}: got X of shape {x.shape} and {len(y)} labels; want X of shape (H, W, 3, N)")
    if len(y) and (y.min() < 1 or y.max() > 10):
        raise DataError(f"{path}: got labels in [{y.min()}, {y.max()}]; want them in [1, 10] (10 = digit 0)")
    x = np.ascontiguousarray(np.transpose(x, (3, 2, 0, 1))).astype(np.uint8, copy=False)
    return x, (y.astype(np.int64) % 10)


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays, dicts, lists and bytes, and nothing else.

    ``pickle.load`` on an untrusted file can run arbitrary code; a CIFAR batch only needs these.
    """

    ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("numpy.core.numeric", "_frombuffer"),
            ("numpy._core.numeric", "_frombuffer"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return super().find_class(module, name)


def read_cifar_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 python batch into ``x`` uint8 ``(N, 3, 32, 32)`` and ``y`` int64 ``(N,)``."""
    path = Path(path)
    raw = _read_bytes(path)
    try:
        obj = _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as e:  # UnpicklingError, EOFError, ValueError ... on bad files
        raise DataError(f"{path}: not a CIFAR-10 python batch ({type(e).__name__}: {e})") from e
    if not isinstance(obj, dict) or b"data" not in obj or b"labels" not in obj:
        keys = sorted(map(repr, obj)) if isinstance(obj, dict) else type(obj).__name__
        raise DataError(f"{path}: got {keys}; want a dict with keys b'data' and b'labels'")
    data = np.asarray(obj[b"data"])
    labels = np.asarray(obj[b"labels"])
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise DataError(
            f"{path}: got data of shape {data.shape} and {len(labels)} labels; want (N, 3072) and N labels"
        )
    if data.dtype != np.uint8:
        raise DataError(f"{path}: got data dtype {data.dtype}; want uint8")
    return data.reshape(-1, 3, 32, 32).copy(), check_labels(labels.reshape(-1), 10, path)
