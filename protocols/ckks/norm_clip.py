"""``ckks_norm_clip``: an L2 bound enforced on encrypted updates, then the (weighted) mean.

Round:
1. upload: clients encrypt their updates.
2. norms: the server computes ``E(||x_i||^2)`` (squares summed over chunks, one rotation-sum) and sends
   the ``n`` ciphertexts to the key holder.
3. factors: the key holder decrypts the squared norms only and returns *encrypted* factors
   ``c_i = w_i * (min(1, C / ||x_i||) + sigma z_i)`` (``w_i = 1/n`` unless weights are given;
   ``sigma z_i`` is the flooding noise of :meth:`CKKSKeyHolder.flood_factors`, ``sigma = 2^-20`` by
   default, so that the released aggregate carries no exact function of a decryption error).
4. aggregate: the server computes ``sum_i E(c_i) * E(x_i)`` (one ciphertext product per chunk).
5. decrypt: the key holder decrypts the aggregate only and releases it noise-flooded.

Result: ``sum_i w_i * x_i * min(1, C / ||x_i||)`` -- the mean of the clipped updates (Flower's
server-side fixed clipping / DP-FedAvg's clip, without the server seeing any update).

Byzantine clients (:mod:`protocols.ckks.checks`). A decrypted squared norm outside
``[-err(d B^2), d B^2 + err(d B^2)]`` names its client, who is excluded (the server is told who, in an
``EXCLUDED`` message, and drops the ciphertext; the weights are renormalized over the rest). Stated
plainly: **the per-client clip is not enforced against a Byzantine client.** Decryption is modulo
``q_0``, so a client can craft an update of norm about ``2^((bits(q_0) - s) / 2)`` (1,024 at the
default) whose squared norm decrypts to anything in range (e.g. 0.25: clip factor 1); no check on the
decrypted norm can tell. What is enforced is the released aggregate: the key holder refuses to release
it (:class:`ByzantineInputError`, no client named) when ``||agg||_2 > C + tol``
(:func:`protocols.ckks.checks.clip_norm_tolerance`), the bound every honest round meets. A crafted
client whose effect stays under that bound still moves the aggregate by up to ``2 C`` in L2 norm
(against ``2 C / n`` for a clipped one). A real per-client clip needs a range proof from the client.

Leakage:
    key_holder: every client's squared L2 norm ``||x_i||^2`` and the aggregate.
    server: the aggregate, and which clients were excluded (the factors reach it encrypted).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch

from fedcore import l2_clip_factors
from protocols.base import PROTOCOLS, Leakage, RoundResult
from protocols.ckks.checks import check_clip_norm, sq_norm_culprits
from protocols.ckks.driver import CKKSRound
from protocols.ckks.messages import Kind
from protocols.ckks.params import CKKSParameterError, CKKSParams
from protocols.ckks.parties import sq_norm

#: The guarantee, as the leakage record states it (see the module docstring).
CLIP_ENFORCED = (
    "on the released aggregate only (L2 norm <= C + tol, else ByzantineInputError); NOT per client "
    "against a Byzantine client: a crafted wrap of q_0 passes the squared-norm check"
)


def clip_factors(sq_norms: np.ndarray, clip: float) -> np.ndarray:
    """:func:`fedcore.l2_clip_factors` from squared norms (negative CKKS noise on a zero norm reads as 0)."""
    return l2_clip_factors(np.sqrt(np.maximum(sq_norms, 0.0)), clip)


@PROTOCOLS.register("ckks_norm_clip")
class CKKSNormClip(CKKSRound):
    """Encrypted clip to ``clip`` then the mean; clip not enforced per Byzantine client, only on the output.

    The first line above is what run reports quote as the secure-aggregation record
    (``fedsec.simulation.threat_model``); the module docstring gives the round and the details.

    Args:
        clip: the L2 bound ``C > 0``.
        params: a :class:`CKKSParams` (or dict); the default has the depth 1 this protocol needs.
    """

    name = "ckks_norm_clip"
    rotations = True
    depth = 1

    def __init__(self, clip: float, params: CKKSParams | dict[str, Any] | None = None) -> None:
        if not isinstance(clip, int | float) or not math.isfinite(clip) or clip <= 0:
            raise CKKSParameterError(f"got clip={clip!r}; want a finite number > 0")
        super().__init__(params)
        self.clip = float(clip)

    def max_magnitude(self, n: int, d: int) -> float:
        return max(float(n), float(d)) * self.params.value_range**2 + float(n) * self.params.value_range

    def run(
        self,
        stack: torch.Tensor | np.ndarray,
        *,
        weights: torch.Tensor | None = None,
        rng: np.random.Generator | None = None,
    ) -> RoundResult:
        x, kh, server, w = self._begin_weighted(stack, weights)
        n, d = x.shape
        w = np.full(n, 1.0 / n) if w is None else w
        updates = self._upload(server, x)
        with self.meter.time("server", "norms"):
            msg = server.seal(Kind.SQ_NORMS, [sq_norm(u) for u in updates])
        msg = self.send("server", "key_holder", "norms", msg)
        with self.meter.time("key_holder", "factors"):
            sq = kh.decrypt_scalars(msg, Kind.SQ_NORMS, n)
            culprits = sq_norm_culprits(sq, self.params, d)
        kept = self._exclude(kh, server, culprits, n, "factors") if culprits else list(range(n))
        with self.meter.time("key_holder", "factors"):
            wk = w[kept] / w[kept].sum()
            factors = kh.flood_factors(clip_factors(sq[kept], self.clip))  # noise flooding, flooding.py
            reply = kh.seal(Kind.FACTORS, kh.encrypt_replicated((factors * wk).tolist()))
        reply = self.send("key_holder", "server", "factors", reply)
        with self.meter.time("server", "aggregate"):
            enc_f = server.load_from_key_holder(reply, Kind.FACTORS, len(kept))
            ups = [updates[i] for i in kept]
            agg = server.encrypted_weighted_sum(ups, [[f] * len(ups[0]) for f in enc_f])
        check = functools.partial(check_clip_norm, params=self.params, clip=self.clip)
        out = torch.as_tensor(self._decrypt_aggregate(kh, server, agg, d, check), dtype=torch.float32)
        leak = Leakage(
            {
                "server": {"aggregate": out, "excluded": list(self.excluded)},
                "key_holder": {
                    "sq_norms": torch.as_tensor(sq),
                    "aggregate": out,
                    "clip_enforced": CLIP_ENFORCED,
                },
            }
        )
        return RoundResult(aggregate=out, accepted=kept, meter=self.meter, leakage=leak)
