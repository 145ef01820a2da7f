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
