"""Secure aggregation by double masking: ``"secagg"`` (Bonawitz et al., CCS 2017) and ``"secagg_plus"``
(Bell et al., CCS 2020), as aggregation protocols for the simulation (e.g. FedAvg with
``protocol = "secagg"``).

One round: each client clips its float32 update to ``[-clip, clip]``, encodes it in Z_{2^bits} with
:class:`secagg.FixedPoint` (stochastic rounding, wrap check for n summands), and the parties run
:func:`secagg.driver.run_round` over serialized bytes. The server decodes the ring sum and releases the
**mean over the survivors** (``sum / |U3|``, or with ``weights`` the weighted mean
``sum_u w_u x_u / sum_u w_u`` over survivors; weights are public, each client encodes ``(w_u / max w) x_u``).

Leakage (server): the sum of the survivors' (weighted) inputs, hence the released mean, the survivor set
and the set of dropped clients. Clients learn nothing beyond their own input. ``rng`` only chooses the
simulated dropouts; every key, mask and share comes from libsodium.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

import robust
from protocols import _secure_sum as ss
from protocols._secure_sum import default_threshold
from protocols.base import PROTOCOLS, Leakage, Meter, RoundResult
from secagg import EncodingError, FixedPoint, SecAggError
from secagg.driver import run_round
from secagg.graph import choose_degree


class NonFiniteUpdate(EncodingError, robust.NonFiniteError):
    """A client update holds NaN or Inf: it has no fixed-point encoding (both an encoding error and the
    robust layer's non-finite error, so callers that stop diverged runs on the latter see it)."""


@PROTOCOLS.register("secagg")
class SecAggSum:
    """Bonawitz secure aggregation over the complete graph.

    Args:
        t: Shamir threshold and minimum number of survivors; ``None``: :func:`default_threshold`.
        clip: per-coordinate clip of client updates (and the encoding range).
        bits: ring Z_{2^bits} (<= 62).
        active: run the consistency check (signatures on the survivor list).
        dropout: probability that a client drops, each at a uniformly chosen phase (simulated with ``rng``).
        frac_bits: fixed-point fraction bits; ``None`` derives the largest safe scale for n clients.
    """

    name = "secagg"

    def __init__(
        self,
        t: int | None = None,
        clip: float = 1.0,
        bits: int = 32,
        active: bool = False,
        dropout: float = 0.0,
        frac_bits: int | None = None,
    ) -> None:
        ss.check_threshold(t)
        ss.check_dropout(dropout)
        self.t = t
        self.encoding = FixedPoint(bits=bits, clip=float(clip), frac_bits=frac_bits)
        self.active = bool(active)
        self.dropout = float(dropout)

    def _graph(self, n: int) -> tuple[int | None, int]:
        return None, self.t if self.t is not None else default_threshold(n, self.active)

    def run(
        self,
        stack: torch.Tensor | np.ndarray,
        *,
        weights: torch.Tensor | None = None,
        rng: np.random.Generator | None = None,
    ) -> RoundResult:
        xt = ss.check_stack(stack)
        x = xt.detach().to("cpu", torch.float32).numpy().astype(np.float64)
        n = x.shape[0]
        w = ss.client_weights(weights, n)
        bad = ~np.isfinite(x).all(axis=1)
        if bad.any():
            raise NonFiniteUpdate(
                f"stack: got NaN or infinite entries in rows {np.flatnonzero(bad)[:10].tolist()}; "
                "want finite updates (each client encodes its own update in fixed point)"
            )
        clipped = np.clip(x, -self.encoding.clip, self.encoding.clip)
        enc = np.stack([self.encoding.encode(w[i] * clipped[i], n_summands=n) for i in range(n)])
        k, t = self._graph(n)
        drops = ss.simulated_dropouts(n, self.dropout, self.active, rng)
        meter = Meter()
        out = run_round(
            enc, t=t, bits=self.encoding.bits, k=k, active=self.active, dropouts=drops, meter=meter
        )
        total = self.encoding.decode_sum(out.sum, n)
        agg = ss.survivor_mean(total, w, out.survivors, xt.device)
        leak = Leakage(
            {
                "server": {"sum_of_survivors": total, "survivors": out.survivors, "dropped": out.dropped},
                "client": {},
            }
        )
        return RoundResult(aggregate=agg, accepted=list(out.survivors), meter=meter, leakage=leak)


@PROTOCOLS.register("secagg_plus")
class SecAggPlusSum(SecAggSum):
    """SecAgg+ (Bell et al., CCS 2020): masks and shares only among k neighbours of a random k-regular graph.

    Args (in addition to :class:`SecAggSum`'s):
        k: even degree; ``None`` chooses (k, t) with :func:`secagg.graph.choose_degree` from ``n``,
            ``dropout``, ``corrupt``, ``sigma`` and ``eta``. ``t`` is then the threshold within each
            neighbourhood of k + 1 clients.
        corrupt: assumed fraction of corrupted clients for the choice of k.
        sigma, eta: statistical security and correctness parameters (failure probabilities 2^-sigma, 2^-eta).
    """

    name = "secagg_plus"

    def __init__(
        self,
        t: int | None = None,
        clip: float = 1.0,
        bits: int = 32,
        active: bool = False,
        dropout: float = 0.0,
        frac_bits: int | None = None,
        k: int | None = None,
        corrupt: float = 0.2,
        sigma: int = 40,
        eta: int = 30,
    ) -> None:
        super().__init__(t=t, clip=clip, bits=bits, active=active, dropout=dropout, frac_bits=frac_bits)
        if k is not None and (not isinstance(k, int) or k < 2 or k % 2):
            raise SecAggError(f"k: got {k!r}; want None or an even int >= 2")
        self.k, self.corrupt, self.sigma, self.eta = k, float(corrupt), int(sigma), int(eta)

    def _graph(self, n: int) -> tuple[int | None, int]:
        if self.k is None:
            ch = choose_degree(n, dropout=self.dropout, corrupt=self.corrupt, sigma=self.sigma, eta=self.eta)
            k = None if ch.complete else ch.k
            return k, self.t if self.t is not None else ch.t
        if self.k >= n - 1:
            return None, self.t if self.t is not None else default_threshold(n, self.active)
        return self.k, self.t if self.t is not None else default_threshold(self.k + 1, self.active)

    def describe(self, n: int) -> dict[str, Any]:
        """The (k, t) this protocol uses for n clients."""
        k, t = self._graph(n)
        return {"k": n - 1 if k is None else k, "t": t}
