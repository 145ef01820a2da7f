"""``ckks_mean``: the encrypted (weighted) mean, as in NVIDIA FLARE's HE aggregation.

Round: clients encrypt (upload) -> the server adds the ciphertexts, each multiplied by its weight when
weights are given (aggregate) -> the key holder decrypts the sum only (decrypt) -> the server divides
by ``n`` (unweighted) and releases the mean.

Leakage:
    server: the aggregate (the released mean), noise-flooded by the key holder before release
        (``CKKSParams.flood_std``; :mod:`protocols.ckks.flooding`, against Li-Micciancio key recovery).
    key_holder: the aggregate (the unweighted sum, or the weighted mean).
Byzantine clients: the key holder decrypts nothing per client, so it cannot name one. It checks the
decrypted aggregate before release (:func:`protocols.ckks.checks.check_aggregate`: ``|sum| <= n B +
tol``, or ``|mean| <= B + tol`` weighted, in every slot) and otherwise aborts with
:class:`protocols.ckks.checks.ByzantineInputError` naming no client: an out-of-range input or a
ciphertext under a foreign key never yields a silently wrong mean. Within that range a Byzantine
client moves the mean as it likes (the mean is not a robust rule).

No party sees an individual update; the key holder receives exactly one ciphertext per chunk, that of
the aggregate.

Bytes per round (:func:`upload_bytes_bounds`): a client sends ``k = ceil(d / (N/2))`` fresh ciphertexts,
each two polynomials of ``N`` coefficients modulo the data primes ``q_0 .. q_L`` (the special prime is
not part of a ciphertext). SEAL stores each residue in a 64-bit word and compresses the serialization, so
a ciphertext lies between its information content ``2 N sum_i log2 q_i / 8`` and ``2 N (L + 1) 8``
bytes plus a small header: with the default N = 8192 and [60, 40, 60], 204,800 to 262,144 bytes per
4,096 values, an expansion of 12.5x to 16x over float32 at a full chunk (NVIDIA FLARE's README reports
time overheads only: encryption 2-3x, aggregation 5-10x). The key holder returns the aggregate as
float64: ``8 d`` bytes plus the frame. The context (public and, for the server, evaluation keys) is
sent once, at setup.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from protocols.base import PROTOCOLS, Leakage, RoundResult
from protocols.ckks.checks import check_aggregate
from protocols.ckks.driver import CKKSRound
from protocols.ckks.params import CKKSParams

#: Bytes per ciphertext beyond its residues: frame, length prefix, SEAL and TenSEAL headers (a bound).
CIPHERTEXT_HEADER_BOUND = 4096


def upload_bytes_bounds(params: CKKSParams, d: int) -> tuple[int, int]:
    """``(low, high)`` bytes of one client's upload of ``d`` values (see the module docstring)."""
    n_poly = params.poly_modulus_degree
    data_bits = params.coeff_mod_bit_sizes[:-1]
    chunks = -(-d // params.slots)
    low = chunks * 2 * n_poly * sum(data_bits) // 8
    high = chunks * (2 * n_poly * len(data_bits) * 8 + CIPHERTEXT_HEADER_BOUND)
    return low, high


@PROTOCOLS.register("ckks_mean")
class CKKSMean(CKKSRound):
    """Encrypted weighted mean ``sum_i w_i x_i`` (``w_i = 1/n`` by default). Depth 1 (0 unweighted).

    Args:
        params: a :class:`CKKSParams` (or a dict of its fields); default N = 8192, [60, 40, 60], 2^40.
    """

    name = "ckks_mean"
    rotations = False
    depth = 1

    def __init__(self, params: CKKSParams | dict[str, Any] | None = None) -> None:
        super().__init__(params)

    def run(
        self,
        stack: torch.Tensor | np.ndarray,
        *,
        weights: torch.Tensor | None = None,
        rng: np.random.Generator | None = None,
    ) -> RoundResult:
        x, kh, server, w = self._begin_weighted(stack, weights)
        n, d = x.shape
        updates = self._upload(server, x)
        with self.meter.time("server", "aggregate"):
            agg = server.weighted_sum(updates, None if w is None else w.tolist())
        # Honest sum: |v| <= n B; honest weighted mean: |v| <= B (weights sum to 1).
        bound = self.params.value_range * (n if w is None else 1.0)
        check = functools.partial(check_aggregate, params=self.params, bound=bound, what=self.name)
        out = self._decrypt_aggregate(kh, server, agg, d, check)
        if w is None:
            out = out / n
        mean = torch.as_tensor(out, dtype=torch.float32)
        leak = Leakage({"server": {"aggregate": mean}, "key_holder": {"aggregate": mean}})
        return RoundResult(aggregate=mean, accepted=list(range(n)), meter=self.meter, leakage=leak)
