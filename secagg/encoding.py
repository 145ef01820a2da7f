"""Fixed-point encoding of float vectors into the ring Z_{2^bits}.

A real value ``x`` is clipped to ``[-clip, clip]``, multiplied by the scale ``s = 2^frac_bits`` and
rounded to an integer ``q`` (stochastically by default: ``floor(x s) + Bernoulli(frac(x s))``, so that
``E[q] = x s``). ``q`` is stored in two's complement modulo ``R = 2^bits``. Summing ``n`` encodings in
the ring and lifting the result to the centered range ``[-R/2, R/2)`` gives the exact integer sum
provided

    n * M <= R/2 - 1,        M = ceil(clip * s)   (the largest magnitude an encoding can take),

which :meth:`FixedPoint.encode` checks before encoding (it raises :class:`secagg.EncodingError`
instead of letting the sum wrap). Dividing the lifted sum by ``s`` decodes it.

``frac_bits`` has one meaning: the number of fractional bits of the scale. When it is ``None`` the
scale is derived from ``n_summands``: the largest ``frac_bits`` for which the wrap check above holds,
so that ``n_summands`` clipped values use the whole ring (``encode`` and ``decode_sum`` receive the same
``n_summands`` and therefore agree on the scale).

Randomness of stochastic rounding is not secret (it only needs to be unbiased and not repeatable
across runs). It comes from libsodium (``nacl.utils.random``) unless the caller passes a numpy
``Generator`` as ``rng`` (useful for reproducible experiments); a fixed seed is never used by default.

Reference: the fixed-point and modular-clipping step of distributed DP with SecAgg (Kairouz et al.,
ICML 2021), and the ring encoding of Bonawitz et al. (CCS 2017).

>>> fp = FixedPoint(bits=32, clip=1.0, frac_bits=16)
>>> y = fp.encode(np.array([0.5, -0.25]), n_summands=2, stochastic=False)
>>> fp.decode_sum((y + y) & fp.mask, n_summands=2).tolist()
[1.0, -0.5]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import nacl.utils
import numpy as np

from fedcore.ring import centered_lift
from secagg.errors import EncodingError

MAX_BITS = 62


def _uniform01(size: int, rng: np.random.Generator | None) -> np.ndarray:
    """``size`` uniforms in [0, 1): from ``rng`` if given, else from libsodium's CSPRNG (53-bit)."""
    if rng is not None:
        return rng.random(size)
    raw = np.frombuffer(nacl.utils.random(8 * size), dtype=np.uint64) if size else np.zeros(0, np.uint64)
    return (raw >> np.uint64(11)).astype(np.float64) * (1.0 / 2.0**53)


@dataclass(frozen=True)
class FixedPoint:
    """Fixed-point encoding configuration (see the module docstring for the formulas).

    Attributes:
        bits: ring size exponent; values live in Z_{2^bits}, 2 <= bits <= 62 so that a sum of two ring
            elements never overflows uint64 arithmetic.
        clip: values are clipped to ``[-clip, clip]``; must be finite and > 0.
        frac_bits: fractional bits of the scale ``s = 2^frac_bits``; ``None`` derives the largest safe
            value from ``n_summands`` at encode/decode time.
    """

    bits: int = 32
    clip: float = 1.0
    frac_bits: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.bits, int) or isinstance(self.bits, bool) or not 2 <= self.bits <= MAX_BITS:
            raise EncodingError(f"FixedPoint.bits: got {self.bits!r}; want an int in [2, {MAX_BITS}]")
        if not isinstance(self.clip, int | float) or not math.isfinite(self.clip) or self.clip <= 0:
            raise EncodingError(f"FixedPoint.clip: got {self.clip!r}; want a finite float > 0")
        if self.frac_bits is not None and (
            not isinstance(self.frac_bits, int) or isinstance(self.frac_bits, bool) or not 0 <= self.frac_bits
        ):
            raise EncodingError(f"FixedPoint.frac_bits: got {self.frac_bits!r}; want None or an int >= 0")

    @property
    def modulus(self) -> int:
        """The ring size R = 2^bits."""
        return 1 << self.bits

    @property
    def mask(self) -> np.uint64:
        """``R - 1`` as uint64, for reducing uint64 arithmetic modulo R with ``&``."""
        return np.uint64((1 << self.bits) - 1)

    def max_abs(self, frac_bits: int) -> int:
        """M = ceil(clip * 2^frac_bits): the largest magnitude of one encoded value."""
        return math.ceil(self.clip * 2.0**frac_bits)

    def _check_n(self, n_summands: int) -> None:
        if not isinstance(n_summands, int | np.integer) or isinstance(n_summands, bool) or n_summands < 1:
            raise EncodingError(f"n_summands: got {n_summands!r}; want an int >= 1")

    def scale_bits(self, n_summands: int) -> int:
        """The fractional bits used for ``n_summands``: ``frac_bits`` if set, else the largest f with
        ``n_summands * ceil(clip 2^f) <= 2^(bits-1) - 1``. Raises EncodingError if none exists."""
        self._check_n(n_summands)
        half = (1 << (self.bits - 1)) - 1
        if self.frac_bits is not None:
            f = self.frac_bits
            if int(n_summands) * self.max_abs(f) > half:
                raise EncodingError(
                    f"sum of {n_summands} values could wrap the ring: got n * ceil(clip * 2^frac_bits) = "
                    f"{int(n_summands) * self.max_abs(f)}; want <= 2^(bits-1) - 1 = {half} "
                    "(lower frac_bits or clip, or raise bits)"
                )
            return f
        if int(n_summands) * self.max_abs(0) > half:
            raise EncodingError(
                f"sum of {n_summands} values could wrap the ring even at scale 1: got n * ceil(clip) = "
                f"{int(n_summands) * self.max_abs(0)}; want <= 2^(bits-1) - 1 = {half}"
            )
        f = 0
        while f < 1100 and int(n_summands) * self.max_abs(f + 1) <= half:
            f += 1
        return f

    def scale(self, n_summands: int) -> float:
        """The scale s = 2^scale_bits(n_summands)."""
        return 2.0 ** self.scale_bits(n_summands)

    def encode(
        self,
        x: np.ndarray,
        *,
        n_summands: int,
        stochastic: bool = True,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """Encode a float array into ring elements (uint64, two's complement modulo 2^bits).

        Args:
            x: finite floats; clipped to ``[-clip, clip]``.
            n_summands: how many encodings will be summed (for the wrap check and the derived scale).
            stochastic: unbiased stochastic rounding (default) or round-to-nearest.
            rng: optional numpy Generator for the rounding coins; default libsodium's CSPRNG.

        Raises:
            EncodingError: non-finite input, or ``n_summands`` values could wrap the ring.
        """
        f = self.scale_bits(n_summands)
        a = np.asarray(x, dtype=np.float64)
        if not np.all(np.isfinite(a)):
            raise EncodingError("encode: got a NaN or infinite value; want finite floats")
        s = 2.0**f
        v = np.clip(a, -self.clip, self.clip) * s
        if stochastic:
            lo = np.floor(v)
            q = lo + (_uniform01(v.size, rng).reshape(v.shape) < (v - lo))
        else:
            q = np.rint(v)
        m = self.max_abs(f)
        q = np.clip(q, -m, m).astype(np.int64)
        return q.astype(np.uint64) & self.mask

    def to_signed(self, y: np.ndarray) -> np.ndarray:
        """Centered lift of ring elements: values >= 2^(bits-1) map to value - 2^bits (int64;
        :func:`fedcore.ring.centered_lift`)."""
        return centered_lift(y, self.bits)

    def decode_sum(self, y: np.ndarray, n_summands: int) -> np.ndarray:
        """Decode a ring sum of ``n_summands`` encodings to float64: ``to_signed(y) / 2^f``."""
        f = self.scale_bits(n_summands)
        return self.to_signed(y).astype(np.float64) / 2.0**f
