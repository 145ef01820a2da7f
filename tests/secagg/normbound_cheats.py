"""Shared by the norm-bound proof tests: a prover that skips its own checks, and vectors built to
fool the modular norm equation."""

from __future__ import annotations

import numpy as np

from secagg.normbound import NormBoundParams, ProofContext, normproof
from secagg.normbound import group as g


def sqrt_mod_l(a: int) -> int | None:
    """Square root modulo l (l = 5 mod 8, Atkin's formula), None for a non-residue."""
    a %= g.L
    v = pow(2 * a, (g.L - 5) // 8, g.L)
    i = 2 * a * v * v % g.L
    root = a * v * (i - 1) % g.L
    return root if root * root % g.L == a else None


def wrapping_vector(seed: int) -> list[int]:
    """``[x0, x1, 0, 0]`` with entries of about 2^240 and ``x0^2 + x1^2 = 9 (mod l)``: the norm
    equation modulo l accepts it, the integer norm is astronomically larger."""
    rng = np.random.default_rng(seed)
    while True:
        x0 = int(rng.integers(1, 2**62)) * 2**180 + 12345
        x1 = sqrt_mod_l(9 - x0 * x0)
        if x1 is not None:
            return [x0, x1, 0, 0]


def cheat(
    params: NormBoundParams, context: ProofContext, x: list[int], projections: np.ndarray | None = None
) -> tuple[bytes, normproof.NormProof]:
    """A commitment to ``x`` and the proof a prover computes for it without checking the statement
    (``projections``: the prover's own choice instead of the transcript's)."""
    r = g.random_scalar()
    v = np.array(x, dtype=object)
    C = params.key.commit(v, r)
    return C, normproof._prove_unchecked(params, v, r, C, context, projections=projections)
