"""Noise flooding of CKKS decryptions before the key holder releases them.

Why. A CKKS decryption is approximate: ``Dec(ct) = m + e`` where the error ``e`` is a function of the
secret key and of the ciphertext's noise. Li and Micciancio ("On the Security of Homomorphic Encryption
on Approximate Numbers", EUROCRYPT 2021) show that a party holding a ciphertext it computed itself and
the exact approximate decryption ``m + e`` can solve a linear system for the secret key (IND-CPA-D
attack), even when it follows the protocol (passive). Here the server computes the aggregate ciphertext
and receives its decryption, so the key holder must not release ``m + e`` as is.

What. Before release the key holder adds, per value, independent Gaussian noise

    release(v) = v + sigma * z,     z ~ N(0, 1) from libsodium (Box-Muller on 53-bit uniforms)

with ``sigma = CKKSParams.flood_std`` (default ``2^-20 * value_range``) for the aggregate, and
``flood_std / value_range`` for the dimensionless clip factors of ``ckks_norm_clip`` (the factors reach
the server encrypted, but they scale the released aggregate).

How much. Measured at the default parameters (N = 8192, [60, 40, 60], 2^40; max over 4096 slots): a
fresh ciphertext decrypts with ``max |e| ~ 2^-27``, a sum of 25 with ``~2^-24.7``, a sum of 25
ciphertext products with ``~2^-23.8`` (this one includes TenSEAL's public scale-rounding term
``q_1 / 2^s - 1``). The default ``sigma = 2^-20`` (value_range 1) is therefore ``2^4`` to ``2^7``
above the error, and ``max |sigma z|`` over 61,706 coordinates (``~4.5 sigma ~ 4.3e-6``) stays
well below the ``1e-4`` relative accuracy the tests hold the aggregates to.

Security, stated plainly: this is a *heuristic* countermeasure. For one value, the statistical distance
between ``N(m + e, sigma^2)`` and ``N(m + e', sigma^2)`` is about ``|e - e'| / (sigma sqrt(2 pi))``,
i.e. roughly ``log2(sigma / E)`` ~ 4 to 7 bits for an error bound ``E`` at the default; over ``q``
released values the KL divergences add, so the proven bound (Pinsker) is ``sqrt(q) E / sigma``, which
is vacuous at ``q = 61,706``. A proven ``kappa``-bit guarantee would need
``sigma >= 2^kappa sqrt(q) E`` by this bound (Li, Micciancio, Schultz and Sorrell, "Securing
Approximate Homomorphic Encryption Using Differential Privacy", CRYPTO 2022, analyse flooding with
sharper tools and also need noise exponential in the security level), incompatible with ``1e-4``
accuracy at a 2^40 scale. The default removes the exact error the published attack needs; it
is not a proof. Raising ``global_scale_bits`` shrinks ``E`` (as ``2^-s``) and widens the margin.

Not flooded: the key holder's discrete outputs (the Krum selection, the rank weights of the order
statistics) are functions of its decryptions; they reveal the error only through which side of a
comparison a near-tie falls (at most one bit per near-tie within the CKKS error), and the
``pairwise_sq_distances`` / ``sq_norms`` / blinded values the key holder decrypts never leave it.
"""

from __future__ import annotations

import nacl.utils
import numpy as np


def uniform01(size: int) -> np.ndarray:
    """``size`` uniforms in [0, 1) from libsodium's CSPRNG (53-bit resolution)."""
    raw = np.frombuffer(nacl.utils.random(8 * size), dtype=np.uint64)
    return (raw >> np.uint64(11)).astype(np.float64) * (1.0 / 2.0**53)


def gaussian(size: int) -> np.ndarray:
    """``size`` standard normal samples (float64) from libsodium randomness via Box-Muller.

    ``z_1 = r cos(2 pi u_2)``, ``z_2 = r sin(2 pi u_2)`` with ``r = sqrt(-2 ln(1 - u_1))``, ``u_1, u_2``
    uniform in [0, 1) (so ``1 - u_1`` is in (0, 1] and the logarithm is finite).
    """
    if size < 0:
        raise ValueError(f"got size={size}; want >= 0")
    half = -(-size // 2)
    u1, u2 = uniform01(half), uniform01(half)
    r = np.sqrt(-2.0 * np.log1p(-u1))
    z = np.concatenate([r * np.cos(2.0 * np.pi * u2), r * np.sin(2.0 * np.pi * u2)])
    return z[:size]


def flood(values: np.ndarray, sigma: float) -> np.ndarray:
    """``values + sigma * z`` with fresh ``z ~ N(0, I)`` (a new array; ``sigma = 0`` copies)."""
    v = np.asarray(values, dtype=np.float64)
    if not np.isfinite(sigma) or sigma < 0:
        raise ValueError(f"got sigma={sigma!r}; want a finite number >= 0")
    if sigma == 0:
        return v.copy()
    return v + sigma * gaussian(v.size).reshape(v.shape)
