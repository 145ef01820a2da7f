"""CKKS parameter sets, validated for the multiplicative depth and value range a protocol needs.

A CKKS ciphertext modulus is a chain of primes ``q_0 * q_1 * ... * q_L * p`` (TenSEAL's
``coeff_mod_bit_sizes``: the first entry is ``q_0``, the last the special prime ``p`` used only for key
switching, the middle ones are consumed one per rescale). With scale ``Delta = 2^s``:

* depth: a protocol that multiplies ``k`` times in sequence needs ``L >= k`` middle primes;
* precision: every middle prime should be ``s`` bits so that rescaling keeps the scale at ``2^s``;
* range: after the last rescale only ``q_0`` is left, so a decrypted value ``v`` must satisfy
  ``|v| * 2^s < q_0 / 2``, i.e. ``|v| < 2^(bits(q_0) - s - 1)``;
* security: ``sum(coeff_mod_bit_sizes)`` may not exceed the 128-bit-security bound of the
  HomomorphicEncryption.org standard for ``N`` (SEAL's ``CoeffModulus.MaxBitCount``: 109, 218, 438,
  881 bits for N = 4096, 8192, 16384, 32768).

Reference: Cheon, Kim, Kim, Song, "Homomorphic Encryption for Arithmetic of Approximate Numbers",
ASIACRYPT 2017; Microsoft SEAL's CKKS examples; the NVIDIA FLARE setup (N = 8192, [60, 40, 40], 2^40).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from secagg.errors import EncodingError

#: 128-bit security bound on ``sum(coeff_mod_bit_sizes)`` per poly modulus degree (SEAL MaxBitCount).
MAX_MODULUS_BITS = {4096: 109, 8192: 218, 16384: 438, 32768: 881}


class CKKSParameterError(ValueError):
    """A CKKS parameter set is invalid or too weak for what a protocol needs ("got X; want Y")."""


@dataclass(frozen=True)
class CKKSParams:
    """A CKKS parameter set for TenSEAL.

    Attributes:
        poly_modulus_degree: ``N``; a ciphertext holds ``N / 2`` real slots.
        coeff_mod_bit_sizes: bit sizes of the modulus chain ``(q_0, q_1 .. q_L, p)``; depth is ``L``.
        global_scale_bits: ``s`` with scale ``2^s``; the middle primes must be ``s`` bits.
        value_range: every coordinate of an honest update satisfies ``|x| <= value_range``; clients
            refuse to encrypt anything larger (``secagg.EncodingError``).
        n_threads: TenSEAL worker threads of the context.
        sigma_flood: standard deviation of the Gaussian noise the key holder adds to every decrypted
            aggregate value before releasing it (:mod:`protocols.ckks.flooding`, against the key
            recovery of Li and Micciancio, EUROCRYPT 2021); ``None`` for the default
            ``2^-20 * value_range`` (:attr:`flood_std`). ``0`` disables flooding: for measurements only,
            it releases exact CKKS errors. The default is a heuristic margin (about 2^4 to 2^7 above the
            decryption error at N = 8192, 2^40), not a proven number of bits of security.

    The default (N = 8192, [60, 40, 60], 2^40) has depth 1, enough for every protocol here: each
    multiplies at most once before the key holder decrypts.

    >>> CKKSParams().depth, CKKSParams().slots
    (1, 4096)
    """

    poly_modulus_degree: int = 8192
    coeff_mod_bit_sizes: tuple[int, ...] = (60, 40, 60)
    global_scale_bits: int = 40
    value_range: float = 1.0
    n_threads: int = 2
    sigma_flood: float | None = None

    def __post_init__(self) -> None:
        n = self.poly_modulus_degree
        if not isinstance(n, int) or n not in MAX_MODULUS_BITS:
            raise CKKSParameterError(f"got poly_modulus_degree={n!r}; want one of {sorted(MAX_MODULUS_BITS)}")
        sizes = tuple(self.coeff_mod_bit_sizes)
        if not isinstance(self.coeff_mod_bit_sizes, tuple):
            object.__setattr__(self, "coeff_mod_bit_sizes", sizes)
        if len(sizes) < 3:
            raise CKKSParameterError(
                f"got coeff_mod_bit_sizes={list(sizes)}; want at least 3 primes (q_0, one level, special)"
            )
        if any(not isinstance(b, int) or not 20 <= b <= 60 for b in sizes):
            raise CKKSParameterError(f"got coeff_mod_bit_sizes={list(sizes)}; want integers in [20, 60]")
        total, bound = sum(sizes), MAX_MODULUS_BITS[n]
        if total > bound:
            raise CKKSParameterError(
                f"got sum(coeff_mod_bit_sizes)={total} for N={n}; want <= {bound} (128-bit security)"
            )
        s = self.global_scale_bits
        if not isinstance(s, int) or not 20 <= s <= 60:
            raise CKKSParameterError(f"got global_scale_bits={s!r}; want an integer in [20, 60]")
        if any(b != s for b in sizes[1:-1]):
            raise CKKSParameterError(
                f"got middle primes {list(sizes[1:-1])} with global_scale_bits={s}; want every middle "
                f"prime to have {s} bits so that rescaling keeps the scale"
            )
        if sizes[0] <= s + 1 or sizes[-1] < sizes[0]:
            raise CKKSParameterError(
                f"got q_0={sizes[0]} bits, special={sizes[-1]} bits, scale={s} bits; want "
                "q_0 > scale + 1 and special >= q_0"
            )
        v = self.value_range
        if not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
            raise CKKSParameterError(f"got value_range={v!r}; want a finite number > 0")
        if not isinstance(self.n_threads, int) or self.n_threads < 1:
            raise CKKSParameterError(f"got n_threads={self.n_threads!r}; want an integer >= 1")
        sf = self.sigma_flood
        if sf is not None and (
            isinstance(sf, bool) or not isinstance(sf, int | float) or not math.isfinite(sf) or sf < 0
        ):
            raise CKKSParameterError(f"got sigma_flood={sf!r}; want None or a finite number >= 0")
        if sf is not None and sf >= 2.0**-10 * v:
            raise CKKSParameterError(
                f"got sigma_flood={sf!r}; want < 2^-10 * value_range = {2.0**-10 * v:.4g} "
                "(larger noise would dominate the aggregate)"
            )

    @property
    def flood_std(self) -> float:
        """The flooding standard deviation in use: ``sigma_flood``, or ``2^-20 * value_range``."""
        return 2.0**-20 * self.value_range if self.sigma_flood is None else float(self.sigma_flood)

    @property
    def slots(self) -> int:
        """Real values per ciphertext, ``N / 2``."""
        return self.poly_modulus_degree // 2

    @property
    def depth(self) -> int:
        """Sequential multiplications available: the number of middle primes."""
        return len(self.coeff_mod_bit_sizes) - 2

    @property
    def max_decryptable(self) -> float:
        """Largest magnitude a decrypted value may have: ``2^(bits(q_0) - s - 1)``."""
        return 2.0 ** (self.coeff_mod_bit_sizes[0] - self.global_scale_bits - 1)

    def n_chunks(self, d: int) -> int:
        """Ciphertexts per update of dimension ``d``."""
        return -(-d // self.slots)

    def require(self, *, depth: int, max_magnitude: float, what: str) -> None:
        """Raise :class:`CKKSParameterError` unless this set has ``depth`` levels and can decrypt values
        up to ``max_magnitude`` (the largest value ``what`` may produce)."""
        if self.depth < depth:
            raise CKKSParameterError(
                f"{what}: got depth {self.depth} (coeff_mod_bit_sizes={list(self.coeff_mod_bit_sizes)}); "
                f"want depth >= {depth}"
            )
        if not max_magnitude < self.max_decryptable:
            raise CKKSParameterError(
                f"{what}: values up to {max_magnitude:.4g} can occur; want < {self.max_decryptable:.4g} "
                f"= 2^(q_0 bits - scale bits - 1); raise q_0, lower the scale or lower value_range"
            )

    def check_update(self, x: object, who: str) -> None:
        """Raise ``secagg.EncodingError`` if an update has a non-finite entry or leaves the range."""

        arr = np.asarray(x)
        if arr.size and not np.isfinite(arr).all():
            raise EncodingError(f"{who}: got a non-finite entry; want finite values")
        peak = float(np.abs(arr).max()) if arr.size else 0.0
        if peak > self.value_range:
            raise EncodingError(f"{who}: got max |x| = {peak:.6g}; want <= value_range = {self.value_range}")
