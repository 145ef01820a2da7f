"""Mask expansion: a 32-byte seed -> a vector of ring elements, through libsodium's ChaCha20 stream.

    stream_seed = BLAKE2b-256(message=domain, key=seed, person="fedsec.prg.v1")   (hashlib)
    bytes       = randombytes_deterministic(w * n, stream_seed)       (libsodium, ChaCha20-based)
    mask[i]     = little-endian word i of ``bytes`` mod 2^bits,        w = 4 if bits <= 32 else 8

The keyed hash separates domains: a pairwise mask and a self mask, or the same pair in two rounds,
use different ``domain`` strings (see :func:`domain`) and therefore independent streams even from the
same seed. libsodium writes the stream straight into the numpy array that holds the words (through
PyNaCl's cffi binding; no intermediate byte string), and since ``2^bits`` divides ``2^(8w)`` the
reduction is a bit mask, so masks are exactly uniform. :func:`add_masks` adds many masks through one
scratch buffer.

Security assumption: ChaCha20 is a PRF/PRG (Bernstein 2008) and keyed BLAKE2b a PRF; this is the PRG of
Bonawitz et al. (CCS 2017, section 4), instantiated with a cryptographic generator rather than the
32-bit ``np.random`` seeding some peer code uses.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

import nacl.utils
import numpy as np

from secagg import keys
from secagg.errors import SecAggError

SEED_BYTES = 32
_PERSON = b"fedsec.prg.v1"

try:  # PyNaCl's cffi module: lets libsodium write into a numpy buffer (same function, no copy)
    from nacl._sodium import ffi as _FFI
    from nacl._sodium import lib as _LIB

    _FILL = _LIB.randombytes_buf_deterministic
except (ImportError, AttributeError):  # pragma: no cover - other PyNaCl builds: the public, copying call
    _FILL = None


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
    return keys.blake2b(dom, size=32, key=seed, person=_PERSON)


def _check_bits(bits: int) -> None:
    if not isinstance(bits, int) or not 1 <= bits <= 64:
        raise SecAggError(f"PRG bits: got {bits!r}; want an int in [1, 64]")


def fill(out: np.ndarray, stream_seed: bytes) -> None:
    """In place: the bytes of ``out`` (a C-contiguous, writable array of little-endian words) become
    ``randombytes_buf_deterministic(out.nbytes, stream_seed)`` -- the generator alone, with no mod."""
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise SecAggError(
            "PRG output: got a non-contiguous or read-only array; want a writable C-contiguous one"
        )
    if _FILL is not None:
        _FILL(_FFI.from_buffer("unsigned char[]", out, require_writable=True), out.nbytes, stream_seed)
    else:  # pragma: no cover
        raw = nacl.utils.randombytes_deterministic(out.nbytes, stream_seed)
        out.reshape(-1).view(np.uint8)[:] = np.frombuffer(raw, dtype=np.uint8)
    if sys.byteorder == "big":  # pragma: no cover - words are defined little-endian
        out.byteswap(inplace=True)


def _words(out: np.ndarray, seed: bytes, bits: int, domain: bytes) -> np.ndarray:
    fill(out, _stream_seed(seed, domain))
    if bits not in (32, 64):
        np.bitwise_and(out, out.dtype.type((1 << bits) - 1), out=out)
    return out


def stream(seed: bytes, n: int, *, bits: int, domain: bytes) -> np.ndarray:
    """``n`` mask words in the working dtype (:func:`word_dtype`), reduced mod 2^bits."""
    _check_bits(bits)
    if n < 0:
        raise SecAggError(f"PRG length: got {n}; want >= 0")
    return _words(np.empty(n, dtype=word_dtype(bits)), seed, bits, domain)


def expand(seed: bytes, n: int, *, bits: int, domain: bytes) -> np.ndarray:
    """``n`` pseudorandom elements of Z_{2^bits} as uint64 (see the module docstring).

    >>> a = expand(bytes(32), 4, bits=32, domain=b"pair")
    >>> b = expand(bytes(32), 4, bits=32, domain=b"self")
    >>> a.dtype.name, bool((a != b).any())
    ('uint64', True)
    """
    return stream(seed, n, bits=bits, domain=domain).astype(np.uint64)


def add_masks(acc: np.ndarray, masks: Iterable[tuple[bytes, bytes, int]], *, bits: int) -> None:
    """In place: ``acc += sign * expand(seed, len(acc), domain)`` for every ``(seed, domain, sign)``,
    modulo the word size (2^32 or 2^64), through one scratch buffer.

    ``acc`` must be a 1-D array of dtype :func:`word_dtype(bits) <word_dtype>`; reduce it mod 2^bits
    at the end. ``masks`` may be a generator (seeds are then derived one at a time).
    """
    _check_bits(bits)
    if acc.ndim != 1 or acc.dtype != word_dtype(bits):
        raise SecAggError(
            f"mask accumulator: got {acc.ndim}-D {acc.dtype}; want 1-D {np.dtype(word_dtype(bits))}"
        )
    scratch = np.empty_like(acc)
    for seed, dom, sign in masks:
        m = _words(scratch, seed, bits, dom)
        if sign >= 0:
            np.add(acc, m, out=acc)
        else:
            np.subtract(acc, m, out=acc)
