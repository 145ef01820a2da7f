"""Independent generators of the Ed25519 prime-order group, derived by hashing to the curve.

Generator ``i`` of the family ``name`` under the setup label ``label`` is

    P = from_uniform(SHA-512(u64le(len(D)) || D || u64le(len(label)) || label
                             || u64le(len(name)) || name || u64le(i))[:32]),

with ``D = "fedsec/normbound/generators/v1"`` and ``from_uniform`` libsodium's
``crypto_core_ed25519_from_uniform`` (Elligator 2 followed by cofactor clearing, so P has order l).
Nobody knows a discrete-log relation between two such points (random-oracle assumption on SHA-512 and
the hash-to-curve map), which is what binding of the Pedersen commitments and soundness of the proofs
need. Distinct (label, name, index) triples never share an input because every field is length-framed.

Generation costs one SHA-512 and one ``from_uniform`` per point (tens of microseconds); the families are
cached per process and extended on demand, so a d = 61,706 key is derived once.
"""

from __future__ import annotations

import hashlib
import threading

import nacl.bindings as nb

from secagg.normbound.errors import ParameterError
from secagg.normbound.group import IDENTITY

DOMAIN = b"fedsec/normbound/generators/v1"
DEFAULT_LABEL = "fedsec-normbound-v1"

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
    if p == IDENTITY or not nb.crypto_core_ed25519_is_valid_point(p):  # pragma: no cover - negligible
        raise ParameterError(f"generator {label}/{name}/{index} hashed to an invalid point")
    return p


def generators(label: str, name: str, count: int) -> list[bytes]:
    """The first ``count`` generators of family ``name`` (a fresh list; the points are cached)."""
    if count < 0:
        raise ParameterError(f"generator count: got {count}; want >= 0")
    key = (label, name)
    with _lock:
        have = _cache.setdefault(key, [])
        if len(have) < count:
            have.extend(generator(label, name, i) for i in range(len(have), count))
        return have[:count]
