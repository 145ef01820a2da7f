"""Shamir t-of-n secret sharing of 32-byte secrets over the prime field F_p, p = 2^256 + 297.

A secret s (a 32-byte string read as a little-endian integer, so s < 2^256 < p) is hidden as the constant
term of a random polynomial of degree t - 1,

    f(z) = s + a_1 z + ... + a_{t-1} z^{t-1}   (mod p),   a_j uniform in F_p (from libsodium),

and party x (1 <= x < p) receives the share (x, f(x)). Any t shares determine f, hence
``s = f(0) = sum_i y_i * prod_{j != i} x_j / (x_j - x_i)`` (Lagrange at 0); any t - 1 shares are
independent of s (Shamir, CACM 1979). p is the smallest prime above 2^256, so every 32-byte string is a
field element and nothing is lost by reduction.

Vectorization: :func:`share_many` shares several secrets with one Horner pass over the evaluation
points (Python integers are exact; numpy object arrays would only wrap the same integers), and
:func:`lagrange_at_zero` computes the coefficients once for a fixed set of share holders so that
:func:`reconstruct_many` costs one inner product per secret.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import nacl.utils

from secagg.errors import SecAggError

P = (1 << 256) + 297
SECRET_BYTES = 32
SHARE_BYTES = 33  # a field element, little-endian


class ShamirError(SecAggError, ValueError):
    """Invalid sharing parameters or too few / inconsistent shares."""


Share = tuple[int, int]


def _random_field_element() -> int:
    # 48 random bytes reduced mod p: statistical distance from uniform < 2^-127.
    return int.from_bytes(nacl.utils.random(48), "little") % P


def _check_tn(t: int, n: int) -> None:
    if not isinstance(t, int) or not isinstance(n, int) or not 1 <= t <= n:
        raise ShamirError(f"sharing parameters: got t={t!r}, n={n!r}; want 1 <= t <= n")


def secret_to_int(secret: bytes) -> int:
    if not isinstance(secret, bytes) or len(secret) != SECRET_BYTES:
        got = len(secret) if isinstance(secret, bytes) else type(secret).__name__
        raise ShamirError(f"secret: got {got}; want {SECRET_BYTES} bytes")
    return int.from_bytes(secret, "little")


def int_to_secret(v: int) -> bytes:
    if not 0 <= v < 1 << (8 * SECRET_BYTES):
        raise ShamirError(f"reconstructed value: got {v.bit_length()} bits; want a 32-byte secret")
    return v.to_bytes(SECRET_BYTES, "little")


def share_many(
    secrets: Sequence[bytes],
    t: int,
    xs: Sequence[int],
    *,
    coefficients: Sequence[Sequence[int]] | None = None,
) -> list[list[int]]:
    """Share each secret t-of-len(xs) at the evaluation points ``xs``; returns ``ys[k][i] = f_k(xs[i])``.

    ``coefficients`` (the a_1..a_{t-1} of each polynomial) is for known-answer tests only; by default
    they are drawn from libsodium.
    """
    _check_tn(t, len(xs))
    if len(set(xs)) != len(xs) or any(not (isinstance(x, int) and 0 < x < P) for x in xs):
        raise ShamirError(f"evaluation points: got {list(xs)[:8]}...; want distinct ints in [1, p)")
    out = []
    for k, sec in enumerate(secrets):
        if coefficients is None:
            coefs = [_random_field_element() for _ in range(t - 1)]
        else:
            coefs = [int(c) % P for c in coefficients[k]]
            if len(coefs) != t - 1:
                raise ShamirError(f"coefficients: got {len(coefs)}; want t - 1 = {t - 1}")
        poly = [secret_to_int(sec), *coefs]
        ys = []
        for x in xs:
            acc = 0
            for c in reversed(poly):
                acc = (acc * x + c) % P
            ys.append(acc)
        out.append(ys)
    return out


def share(secret: bytes, t: int, n: int) -> list[Share]:
    """Split a 32-byte secret into ``n`` shares ``(x, y)``, x = 1..n, any ``t`` of which reconstruct."""
    _check_tn(t, n)
    xs = list(range(1, n + 1))
    return list(zip(xs, share_many([secret], t, xs)[0]))


def lagrange_at_zero(xs: Sequence[int]) -> list[int]:
    """Coefficients l_i with f(0) = sum_i l_i f(x_i) for every polynomial of degree < len(xs).

    ``l_i = prod_{j != i} x_j / (x_j - x_i) = X / (x_i * D_i)`` with ``X = prod_j x_j`` and
    ``D_i = prod_{j != i} (x_j - x_i)``, computed over the integers (share points are small) and then
    inverted modulo p all at once (Montgomery's batch inversion: one exponentiation in total).
    """
    if len(set(xs)) != len(xs):
        raise ShamirError(f"share points: got duplicates in {sorted(xs)}; want distinct points")
    if any(x % P == 0 for x in xs):
        raise ShamirError("share points: got x = 0 mod p; want nonzero points")
    total = math.prod(xs)
    dens = []
    for i, xi in enumerate(xs):
        diffs = [xj - xi for xj in xs]  # diffs[i] = 0 is left out of the product
        dens.append(xi * math.prod(diffs[:i]) * math.prod(diffs[i + 1 :]) % P)
    # batch inversion of dens
    prefix = [1]
    for d in dens:
        prefix.append(prefix[-1] * d % P)
    inv = pow(prefix[-1], -1, P)
    out = [0] * len(dens)
    for i in range(len(dens) - 1, -1, -1):
        out[i] = inv * prefix[i] % P
        inv = inv * dens[i] % P
    total %= P
    return [total * o % P for o in out]


def _check_shares(shares: Sequence[Share], t: int) -> None:
    if not isinstance(t, int) or t < 1:
        raise ShamirError(f"threshold: got {t!r}; want an int >= 1")
    if len(shares) < t:
        raise ShamirError(f"too few shares: got {len(shares)}; want at least t={t}")
    for x, y in shares:
        if not (0 < x < P and 0 <= y < P):
            raise ShamirError(f"share ({x}, ...): got a value outside F_p; want 0 < x < p, 0 <= y < p")


def reconstruct(shares: Sequence[Share], t: int) -> bytes:
    """Recover the secret from at least ``t`` shares.

    Uses the first ``t`` shares; when more are given, every extra share must lie on the same polynomial
    (error detection: a wrong share among them raises instead of yielding a wrong secret).

    Raises:
        ShamirError: fewer than ``t`` shares, duplicate points, inconsistent extra shares, or a value that
            is not a 32-byte secret.
    """
    _check_shares(shares, t)
    base = list(shares[:t])
    xs = [x for x, _ in base]
    lam = lagrange_at_zero(xs)
    s = sum(li * y for li, (_, y) in zip(lam, base)) % P
    for x, y in shares[t:]:
        if _interpolate_at(base, x) != y:
            raise ShamirError(
                f"share at x={x} is inconsistent with the first t={t} shares; want all on one poly"
            )
    return int_to_secret(s)


def _interpolate_at(points: Sequence[Share], z: int) -> int:
    acc = 0
    for i, (xi, yi) in enumerate(points):
        num, den = 1, 1
        for j, (xj, _) in enumerate(points):
            if j != i:
                num = num * (z - xj) % P
                den = den * (xi - xj) % P
        acc = (acc + yi * num * pow(den, -1, P)) % P
    return acc


def reconstruct_many(xs: Sequence[int], ys: Sequence[Sequence[int]], t: int) -> list[bytes]:
    """Reconstruct several secrets shared at the same points: ``ys[k][i]`` is secret k's share at xs[i].

    Uses the first ``t`` points with one set of Lagrange coefficients for all secrets.
    """
    if len(xs) < t:
        raise ShamirError(f"too few shares: got {len(xs)}; want at least t={t}")
    lam = lagrange_at_zero(list(xs[:t]))
    return [int_to_secret(sum(li * y for li, y in zip(lam, row[:t])) % P) for row in ys]


def encode_share(y: int) -> bytes:
    """A share value as 33 little-endian bytes."""
    return int(y).to_bytes(SHARE_BYTES, "little")


def decode_share(b: bytes) -> int:
    """Inverse of :func:`encode_share`; rejects non-canonical values (>= p)."""
    if len(b) != SHARE_BYTES:
        raise ShamirError(f"share bytes: got {len(b)}; want {SHARE_BYTES}")
    y = int.from_bytes(b, "little")
    if y >= P:
        raise ShamirError("share value: got a value >= p; want a canonical field element")
    return y
