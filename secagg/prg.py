"""Mask expansion: a 32-byte seed -> a vector of ring elements, through libsodium's ChaCha20 stream.

    stream_seed = BLAKE2b-256(message=domain, key=seed, person="fedsec.prg.v1")
    bytes       = randombytes_deterministic(w * n, stream_seed)       (libsodium, ChaCha20-based)
    mask[i]     = little-endian word i of ``bytes`` mod 2^bits,        w = 4 if bits <= 32 else 8

The keyed hash separates domains: a pairwise mask and a self mask, or the same pair in two rounds,
use different ``domain`` strings (see :func:`domain`) and therefore independent streams even from the
same seed. Words are read straight from the byte string with ``np.frombuffer`` (no Python loop), and
since ``2^bits`` divides ``2^(8w)`` the reduction is a bit mask, so masks are exactly uniform.

Security assumption: ChaCha20 is a PRF/PRG (Bernstein 2008) and keyed BLAKE2b a PRF; this is the PRG of
Bonawitz et al. (CCS 2017, section 4), instantiated with a cryptographic generator rather than the
32-bit ``np.random`` seeding some peer code uses.
"""

from __future__ import annotations

import nacl.encoding
import nacl.hash
import nacl.utils
import numpy as np

from secagg.errors import SecAggError

SEED_BYTES = 32
_PERSON = b"fedsec.prg.v1"


def word_dtype(bits: int) -> type[np.unsignedinteger]:
    """The numpy dtype masks are computed in: uint32 for bits <= 32 (wraps mod 2^32), else uint64."""
    return np.uint32 if bits <= 32 else np.uint64


def domain(kind: bytes, session: bytes, *parties: int) -> bytes:
    """A domain string ``kind | len(session) | session | parties (u32 each)`` for :func:`expand`.

    ``kind`` is e.g. ``b"pair"`` or ``b"self"``; ``session`` names the round; ``parties`` the ids.
    """
    out = bytearray(kind)
    out += b"|" + len(session).to_bytes(2, "little") + session
    for p in parties:
        out += int(p).to_bytes(4, "little")
    return bytes(out)


def _stream_seed(seed: bytes, dom: bytes) -> bytes:
    if not isinstance(seed, bytes) or len(seed) != SEED_BYTES:
        got = len(seed) if isinstance(seed, bytes) else type(seed).__name__
        raise SecAggError(f"PRG seed: got {got}; want {SEED_BYTES} bytes")
    if not isinstance(dom, bytes):
        raise SecAggError(f"PRG domain: got {type(dom).__name__}; want bytes")
    return nacl.hash.blake2b(
        dom, digest_size=32, key=seed, person=_PERSON.ljust(16, b"\0"), encoder=nacl.encoding.RawEncoder
    )


def _check_bits(bits: int) -> None:
    if not isinstance(bits, int) or not 1 <= bits <= 64:
        raise SecAggError(f"PRG bits: got {bits!r}; want an int in [1, 64]")


def stream(seed: bytes, n: int, *, bits: int, domain: bytes) -> np.ndarray:
    """``n`` mask words in the working dtype (:func:`word_dtype`), reduced mod 2^bits."""
    _check_bits(bits)
    if n < 0:
        raise SecAggError(f"PRG length: got {n}; want >= 0")
    dt = word_dtype(bits)
    w = np.dtype(dt).itemsize
    raw = nacl.utils.randombytes_deterministic(w * n, _stream_seed(seed, domain))
    words = np.frombuffer(raw, dtype=np.dtype(dt).newbyteorder("<"))
    if bits not in (32, 64):
        words = words & dt((1 << bits) - 1)
    return words


def expand(seed: bytes, n: int, *, bits: int, domain: bytes) -> np.ndarray:
    """``n`` pseudorandom elements of Z_{2^bits} as uint64 (see the module docstring).

    >>> a = expand(bytes(32), 4, bits=32, domain=b"pair")
    >>> b = expand(bytes(32), 4, bits=32, domain=b"self")
    >>> a.dtype.name, bool((a != b).any())
    ('uint64', True)
    """
    return stream(seed, n, bits=bits, domain=domain).astype(np.uint64)


def add_mask(acc: np.ndarray, seed: bytes, *, bits: int, domain: bytes, sign: int = 1) -> None:
    """In place: ``acc += sign * expand(seed, len(acc))`` modulo the word size (2^32 or 2^64).

    ``acc`` must have dtype :func:`word_dtype(bits) <word_dtype>`; reduce it mod 2^bits at the end.
    """
    m = stream(seed, acc.shape[0], bits=bits, domain=domain)
    if sign >= 0:
        np.add(acc, m, out=acc)
    else:
        np.subtract(acc, m, out=acc)
