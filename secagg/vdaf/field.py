"""NTT-friendly prime fields of draft-irtf-cfrg-vdaf-20 (Section 6.1), vectorized with numpy.

Field64:  p = 2^32 * 4294967295 + 1 = 2^64 - 2^32 + 1 (8 bytes), generator 7^4294967295 of order 2^32.
Field128: p = 2^66 * 4611686018427387897 + 1 (16 bytes), generator 7^4611686018427387897 of order 2^66.

A vector of field elements is a numpy array: ``uint64`` for Field64 (the product is split into 32-bit
halves and reduced with 2^64 = 2^32 - 1 and 2^96 = -1 mod p), ``object`` (Python ints) for Field128.
Every operation works on whole arrays and broadcasts; none loops over coordinates in Python.

Polynomials in the Lagrange basis of the draft (Section 6.1.3.2) are the n values v_i = P(W_n^i) at
the powers of the principal n-th root of unity W_n = gen^(GEN_ORDER / n); ``ntt`` and ``inv_ntt`` move
between coefficients and values (radix-2 Cooley-Tukey, log2 n vectorized butterfly stages).
Wire format: each element as ENCODED_SIZE little-endian bytes, decoding refuses values >= p.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, ClassVar

import numpy as np

from secagg.vdaf.errors import VdafDecodeError, VdafParameterError

Vec = np.ndarray[Any, Any]

_M32 = np.uint64(0xFFFFFFFF)
_EPS = np.uint64(0xFFFFFFFF)  # 2^64 mod p for Field64
_S32 = np.uint64(32)
_C33 = np.uint64(2**32)


def next_power_of_2(n: int) -> int:
    """The smallest power of two >= n (1 for n <= 1)."""
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def log2_exact(n: int) -> int:
    """log2 of a power of two; refuses anything else."""
    if n < 1 or n & (n - 1):
        raise VdafParameterError(f"got length {n}; want a power of two")
    return n.bit_length() - 1


class Field:
    """A prime field's vector arithmetic on numpy arrays (class methods only, no instances)."""

    MODULUS: ClassVar[int]
    ENCODED_SIZE: ClassVar[int]
    GEN_ORDER: ClassVar[int]
    GEN: ClassVar[int]
    NAME: ClassVar[str]

    # -- construction and conversion -------------------------------------------------------------
    @classmethod
    def arr(cls, values: Any) -> Vec:
        """Field elements from integers (negative integers are negations), at least one dimension."""
        raise NotImplementedError

    @classmethod
    def zeros(cls, n: int) -> Vec:
        return cls.arr([0] * n)

    @classmethod
    def to_ints(cls, a: Vec) -> list[int]:
        return [int(x) for x in np.asarray(a).reshape(-1)]

    # -- arithmetic --------------------------------------------------------------------------------
    @classmethod
    def add(cls, a: Vec, b: Vec) -> Vec:
        raise NotImplementedError

    @classmethod
    def sub(cls, a: Vec, b: Vec) -> Vec:
        raise NotImplementedError

    @classmethod
    def mul(cls, a: Vec, b: Vec) -> Vec:
        raise NotImplementedError

    @classmethod
    def sum(cls, a: Vec, axis: int = -1) -> Vec:
        """sum_i a_i along ``axis`` mod p."""
        raise NotImplementedError

    @classmethod
    def neg(cls, a: Vec) -> Vec:
        return cls.sub(cls.zeros(1), a)

    @classmethod
    def pow(cls, a: Vec, e: int) -> Vec:
        """a^e element-wise by square-and-multiply over the bits of the public exponent e >= 0."""
        result = np.broadcast_to(cls.arr([1]), np.asarray(a).shape).copy()
        base = np.asarray(a).copy()
        while e:
            if e & 1:
                result = cls.mul(result, base)
            e >>= 1
            if e:
                base = cls.mul(base, base)
        return result

    @classmethod
    def inv(cls, a: Vec) -> Vec:
        """a^(p-2) = a^-1 for a != 0 (Fermat); refuses a zero."""
        if np.any(np.asarray(a) == 0):
            raise VdafParameterError("got a zero element to invert; want non-zero")
        return cls.pow(a, cls.MODULUS - 2)

    @classmethod
    def dot(cls, a: Vec, b: Vec) -> Vec:
        """sum_i a_i b_i along the last axis."""
        return cls.sum(cls.mul(a, b), axis=-1)

    # -- wire format ---------------------------------------------------------------------------------
    @classmethod
    def encode_vec(cls, a: Vec) -> bytes:
        raise NotImplementedError

    @classmethod
    def decode_vec(cls, data: bytes) -> Vec:
        raise NotImplementedError

    # -- roots of unity and the NTT -------------------------------------------------------------------
    @classmethod
    def nth_root(cls, n: int) -> int:
        """W_n = gen^(GEN_ORDER / n), the draft's principal n-th root of unity."""
        log2_exact(n)
        if n > cls.GEN_ORDER:
            raise VdafParameterError(f"got n = {n}; want n <= GEN_ORDER = {cls.GEN_ORDER}")
        return pow(cls.GEN, cls.GEN_ORDER // n, cls.MODULUS)

    @classmethod
    def nth_root_powers(cls, n: int) -> Vec:
        """[W_n^0, ..., W_n^(n-1)] (cached; read-only)."""
        key = (cls.NAME, n)
        if key not in _ROOT_POWERS:
            _ROOT_POWERS[key] = _root_powers(cls, n)
        return _ROOT_POWERS[key]

    @classmethod
    def ntt(cls, coeffs: Vec, n: int, set_s: bool = False) -> Vec:
        """Values P(W_n^i) (or P(s W_n^i), s = W_2n, with ``set_s``) of coefficients along the last axis.

        Coefficients beyond n are refused, fewer are zero-padded.
        """
        c = np.asarray(coeffs)
        if c.shape[-1] > n:
            raise VdafParameterError(f"got {c.shape[-1]} coefficients; want <= n = {n}")
        if c.shape[-1] < n:
            pad = np.broadcast_to(cls.zeros(1), (*c.shape[:-1], n - c.shape[-1]))
            c = np.concatenate([c, pad], axis=-1)
        if set_s:
            c = cls.mul(c, cls.nth_root_powers(2 * n)[:n])
        return _fft(cls, c, n)

    @classmethod
    def inv_ntt(cls, values: Vec, n: int) -> Vec:
        """Coefficients from n values at the powers of W_n: c_j = n^-1 sum_i v_i W_n^(-ij)."""
        v = np.asarray(values)
        if v.shape[-1] != n:
            raise VdafParameterError(f"got {v.shape[-1]} values; want n = {n}")
        f = _fft(cls, v, n)
        idx = (-np.arange(n)) % n
        return cls.mul(f[..., idx], cls.arr([pow(n, cls.MODULUS - 2, cls.MODULUS)]))


class Field64(Field):
    """p = 2^64 - 2^32 + 1 on uint64 arrays."""

    MODULUS = 2**32 * 4294967295 + 1
    ENCODED_SIZE = 8
    GEN_ORDER = 2**32
    GEN = pow(7, 4294967295, 2**32 * 4294967295 + 1)
    NAME = "Field64"
    _P = np.uint64(2**32 * 4294967295 + 1)

    @classmethod
    def arr(cls, values: Any) -> Vec:
        if isinstance(values, np.ndarray) and values.dtype == np.uint64:
            if np.any(values >= cls._P):
                raise VdafParameterError("got a uint64 >= p; want canonical Field64 elements")
            return np.atleast_1d(values)
        if isinstance(values, np.ndarray) and values.dtype.kind in "iu":
            v64 = values.astype(np.int64)
            return np.atleast_1d(np.where(v64 < 0, cls._P - (-v64).astype(np.uint64), v64.astype(np.uint64)))
        flat = np.asarray(values, dtype=object)
        ints = [int(x) % cls.MODULUS for x in flat.reshape(-1)]
        return np.atleast_1d(np.array(ints, dtype=np.uint64).reshape(flat.shape))

    @classmethod
    def _canon(cls, x: Vec) -> Vec:
        return np.where(x >= cls._P, x - cls._P, x)

    @classmethod
    def add(cls, a: Vec, b: Vec) -> Vec:
        a, b = np.atleast_1d(a), np.atleast_1d(b)
        s = a + b
        s = s + (s < a).astype(np.uint64) * _EPS  # a wrapped sum lost 2^64 = 2^32 - 1 mod p
        return cls._canon(s)

    @classmethod
    def sub(cls, a: Vec, b: Vec) -> Vec:
        a, b = np.atleast_1d(a), np.atleast_1d(b)
        d = a - b
        return d - (a < b).astype(np.uint64) * _EPS  # a wrapped difference gained 2^64

    @classmethod
    def _reduce128(cls, hi: Vec, lo: Vec) -> Vec:
        """(hi 2^64 + lo) mod p with 2^64 = 2^32 - 1 and 2^96 = -1."""
        hh = hi >> _S32
        t0 = lo - hh
        t0 -= (lo < hh) * _EPS
        t1 = (hi & _M32) * _EPS
        t0 += t1
        t0 += (t0 < t1) * _EPS
        return cls._canon(t0)

    @classmethod
    def mul(cls, a: Vec, b: Vec) -> Vec:
        a, b = np.atleast_1d(a), np.atleast_1d(b)
        a0, a1 = a & _M32, a >> _S32
        b0, b1 = b & _M32, b >> _S32
        lo = a0 * b0
        hi = a1 * b1
        mid = a0 * b1
        hl = a1 * b0
        mid += hl
        hi += (mid < hl) * _C33  # the middle sum's carry is worth 2^96 = 2^32 in hi
        hi += mid >> _S32
        mid <<= _S32
        lo += mid
        hi += lo < mid
        return cls._reduce128(hi, lo)

    @classmethod
    def sum(cls, a: Vec, axis: int = -1) -> Vec:
        a = np.atleast_1d(a)
        if a.shape[axis] >= 2**31:
            raise VdafParameterError(f"got {a.shape[axis]} terms; want < 2^31")
        lo = np.atleast_1d((a & _M32).sum(axis=axis, dtype=np.uint64))
        hi = np.atleast_1d((a >> _S32).sum(axis=axis, dtype=np.uint64))
        return cls.add(cls.mul(cls._canon(hi), np.array([2**32], dtype=np.uint64)), cls._canon(lo))

    @classmethod
    def encode_vec(cls, a: Vec) -> bytes:
        return np.ascontiguousarray(np.asarray(a, dtype="<u8")).tobytes()

    @classmethod
    def decode_vec(cls, data: bytes) -> Vec:
        if len(data) % 8:
            raise VdafDecodeError(f"got {len(data)} bytes; want a multiple of 8")
        v = np.frombuffer(data, dtype="<u8").astype(np.uint64)
        if np.any(v >= cls._P):
            raise VdafDecodeError("got an element >= p; want canonical Field64 elements")
        return v


class Field128(Field):
    """p = 2^66 * 4611686018427387897 + 1 on object arrays of Python ints."""

    MODULUS = 2**66 * 4611686018427387897 + 1
    ENCODED_SIZE = 16
    GEN_ORDER = 2**66
    GEN = pow(7, 4611686018427387897, 2**66 * 4611686018427387897 + 1)
    NAME = "Field128"

    @classmethod
    def arr(cls, values: Any) -> Vec:
        flat = np.asarray(values, dtype=object)
        out = np.empty(flat.shape, dtype=object)
        out.reshape(-1)[:] = [int(x) % cls.MODULUS for x in flat.reshape(-1)]
        return np.atleast_1d(out)

    @classmethod
    def add(cls, a: Vec, b: Vec) -> Vec:
        return np.atleast_1d((np.asarray(a, dtype=object) + np.asarray(b, dtype=object)) % cls.MODULUS)

    @classmethod
    def sub(cls, a: Vec, b: Vec) -> Vec:
        return np.atleast_1d((np.asarray(a, dtype=object) - np.asarray(b, dtype=object)) % cls.MODULUS)

    @classmethod
    def mul(cls, a: Vec, b: Vec) -> Vec:
        return np.atleast_1d((np.asarray(a, dtype=object) * np.asarray(b, dtype=object)) % cls.MODULUS)

    @classmethod
    def sum(cls, a: Vec, axis: int = -1) -> Vec:
        return np.atleast_1d(np.asarray(a, dtype=object).sum(axis=axis) % cls.MODULUS)

    @classmethod
    def encode_vec(cls, a: Vec) -> bytes:
        return b"".join(int(x).to_bytes(16, "little") for x in np.asarray(a).reshape(-1))

    @classmethod
    def decode_vec(cls, data: bytes) -> Vec:
        if len(data) % 16:
            raise VdafDecodeError(f"got {len(data)} bytes; want a multiple of 16")
        ints = [int.from_bytes(data[i : i + 16], "little") for i in range(0, len(data), 16)]
        if any(x >= cls.MODULUS for x in ints):
            raise VdafDecodeError("got an element >= p; want canonical Field128 elements")
        return cls.arr(ints) if ints else np.empty(0, dtype=object)


_ROOT_POWERS: dict[tuple[str, int], Vec] = {}


def _root_powers(field: type[Field], n: int) -> Vec:
    w = field.nth_root(n)
    powers = field.arr([1])
    while powers.shape[0] < n:  # doubling: [w^0..w^(k-1)] then times w^k
        k = powers.shape[0]
        powers = np.concatenate([powers, field.mul(powers, field.arr([pow(w, k, field.MODULUS)]))])
    powers = powers[:n]
    powers.setflags(write=False)
    return powers


@lru_cache(maxsize=64)
def _bit_reverse(n: int) -> Vec:
    bits = log2_exact(n)
    idx = np.arange(n)
    rev = np.zeros(n, dtype=np.int64)
    for b in range(bits):
        rev |= ((idx >> b) & 1) << (bits - 1 - b)
    return rev


def _fft(field: type[Field], a: Vec, n: int) -> Vec:
    """v_i = sum_j a_j W_n^(ij) along the last axis: bit reversal, then log2 n butterfly stages."""
    if n == 1:
        return np.asarray(a).copy()
    x = np.asarray(a)[..., _bit_reverse(n)]
    lead = x.shape[:-1]
    m = 1
    while m < n:
        tw = field.nth_root_powers(2 * m)[:m]
        blocks = x.reshape(*lead, n // (2 * m), 2, m)
        u = blocks[..., 0, :]
        t = field.mul(blocks[..., 1, :], tw)
        x = np.stack([field.add(u, t), field.sub(u, t)], axis=-2).reshape(*lead, n)
        m *= 2
    return x
