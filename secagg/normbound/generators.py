"""Independent generators of the Ed25519 prime-order group, derived by hashing to the curve.

Generator ``i`` of the family ``name`` under the setup label ``label`` is

    P = from_uniform(SHA-512(u64le(len(D)) || D || u64le(len(label)) || label
                             || u64le(len(name)) || name || u64le(i))[:32]),

with ``D = "fedsec/normbound/generators/v1"`` and ``from_uniform`` libsodium's
``crypto_core_ed25519_from_uniform`` (Elligator 2 followed by cofactor clearing, so P is in the
prime-order subgroup: no further validity check is needed, only the identity is excluded). Nobody knows
a discrete-log relation between two such points (random-oracle assumption on SHA-512 and the
hash-to-curve map), which is what binding of the Pedersen commitments and soundness of the proofs need.
Distinct (label, name, index) triples never share an input because every field is length-framed.

Cost: one SHA-512 and one ``from_uniform`` per point. Families are cached per process and, from
:data:`DISK_MIN` points on, on disk: one file per (label, name, count) under :func:`cache_dir` (the
environment variable ``FEDSEC_NORMBOUND_CACHE``, ``off`` to disable, else ``$XDG_CACHE_HOME/fedsec/
normbound`` or ``~/.cache/fedsec/normbound``). A file holds a SHA-256 of the key and the points, checked
on load, and :data:`SPOT_CHECKS` indices drawn with libsodium randomness are re-derived and compared: a
corrupted file is rebuilt; a file in which a fraction f of the points was replaced is caught with
probability ``1 - (1 - f)^SPOT_CHECKS`` (the cache directory must not be writable by an adversary).
Large families are derived in a process pool (:data:`PARALLEL_MIN` points and more, several cores).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nacl.bindings as nb
import nacl.utils

from secagg.normbound.errors import ParameterError
from secagg.normbound.group import IDENTITY

DOMAIN = b"fedsec/normbound/generators/v1"
DEFAULT_LABEL = "fedsec-normbound-v1"
DISK_MIN = 4096
"""Families of at least this many points are cached on disk."""
PARALLEL_MIN = 20_000
"""Families of at least this many new points are derived in a process pool."""
SPOT_CHECKS = 16
"""Points re-derived and compared when a family is loaded from disk."""
_MAGIC = b"fedsec-gens-v1\n"

_cache: dict[tuple[str, str], list[bytes]] = {}
_lock = threading.Lock()


def _frame(data: bytes) -> bytes:
    return len(data).to_bytes(8, "little") + data


def hash_input(label: str, name: str, index: int) -> bytes:
    """The 32 uniform bytes that are mapped to generator ``index`` of ``name`` under ``label``."""
    msg = _frame(DOMAIN) + _frame(label.encode()) + _frame(name.encode()) + index.to_bytes(8, "little")
    return hashlib.sha512(msg).digest()[:32]


def generator(label: str, name: str, index: int) -> bytes:
    """One generator (see the module docstring for the derivation)."""
    if index < 0:
        raise ParameterError(f"generator index: got {index}; want >= 0")
    p = bytes(nb.crypto_core_ed25519_from_uniform(hash_input(label, name, index)))
    if p == IDENTITY:  # pragma: no cover - probability ~2^-250
        raise ParameterError(f"generator {label}/{name}/{index} hashed to the identity")
    return p


def _derive_range(args: tuple[str, str, int, int]) -> bytes:
    label, name, start, stop = args
    return b"".join(generator(label, name, i) for i in range(start, stop))


def derive(label: str, name: str, start: int, stop: int, workers: int | None = None) -> list[bytes]:
    """Generators ``start..stop-1``, in a process pool of ``workers`` (default: the CPU count) when
    there are at least :data:`PARALLEL_MIN` of them."""
    count = stop - start
    workers = workers or os.cpu_count() or 1
    if count < PARALLEL_MIN or workers < 2:
        blob = _derive_range((label, name, start, stop))
    else:
        step = -(-count // (4 * workers))
        jobs = [(label, name, a, min(a + step, stop)) for a in range(start, stop, step)]
        with ProcessPoolExecutor(workers) as pool:
            blob = b"".join(pool.map(_derive_range, jobs))
    return [blob[32 * i : 32 * i + 32] for i in range(count)]


def cache_dir() -> Path | None:
    """Directory of the on-disk cache, or ``None`` when ``FEDSEC_NORMBOUND_CACHE=off``."""
    env = os.environ.get("FEDSEC_NORMBOUND_CACHE")
    if env == "off":
        return None
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fedsec" / "normbound"


def _key(label: str, name: str, count: int) -> bytes:
    return _frame(DOMAIN) + _frame(label.encode()) + _frame(name.encode()) + count.to_bytes(8, "little")


def _path(root: Path, label: str, name: str, count: int) -> Path:
    return root / (hashlib.sha256(_key(label, name, count)).hexdigest()[:40] + ".bin")


def _load(root: Path, label: str, name: str, count: int) -> list[bytes] | None:
    """The cached family, or ``None`` if absent, corrupted or failing a spot check."""
    try:
        data = _path(root, label, name, count).read_bytes()
    except OSError:
        return None
    body = data[len(_MAGIC) + 32 :]
    if data[: len(_MAGIC)] != _MAGIC or len(body) != 32 * count:
        return None
    if hashlib.sha256(_key(label, name, count) + body).digest() != data[len(_MAGIC) : len(_MAGIC) + 32]:
        return None
    pts = [body[32 * i : 32 * i + 32] for i in range(count)]
    picks = nacl.utils.random(8 * SPOT_CHECKS)
    for j in range(SPOT_CHECKS):
        i = int.from_bytes(picks[8 * j : 8 * j + 8], "little") % count
        if pts[i] != generator(label, name, i):
            return None
    return pts


def _store(root: Path, label: str, name: str, count: int, pts: list[bytes]) -> None:
    """Write atomically (temporary file, then rename); a failure to write only loses the cache."""
    body = b"".join(pts)
    data = _MAGIC + hashlib.sha256(_key(label, name, count) + body).digest() + body
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=root, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, _path(root, label, name, count))
    except OSError:  # pragma: no cover - read-only or full disk
        pass


def generators(label: str, name: str, count: int) -> list[bytes]:
    """The first ``count`` generators of family ``name`` (a fresh list; the points are cached)."""
    if count < 0:
        raise ParameterError(f"generator count: got {count}; want >= 0")
    key = (label, name)
    with _lock:
        have = _cache.setdefault(key, [])
        if len(have) < count:
            root = cache_dir() if count >= DISK_MIN else None
            loaded = _load(root, label, name, count) if root is not None else None
            if loaded is not None:
                have[:] = loaded
            else:
                have.extend(derive(label, name, len(have), count))
                if root is not None:
                    _store(root, label, name, count, have[:count])
        return have[:count]


def clear_memory_cache() -> None:
    """Forget the per-process families (the disk cache stays)."""
    with _lock:
        _cache.clear()
