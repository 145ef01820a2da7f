"""Secure aggregation by double masking: ``"secagg"`` (Bonawitz et al., CCS 2017) and ``"secagg_plus"``
(Bell et al., CCS 2020), as aggregation protocols for the simulation (e.g. FedAvg with
``protocol = "secagg"``).

One round: each client clips its float32 update to ``[-clip, clip]``, encodes it in Z_{2^bits} with
:class:`secagg.FixedPoint` (stochastic rounding, wrap check for n summands), and the parties run
:func:`secagg.driver.run_round` over serialized bytes. The server decodes the ring sum and releases the
**mean over the survivors** (``sum / |U3|``, or with ``weights`` the weighted mean
``sum_u w_u x_u / sum_u w_u`` over survivors; weights are public, each client encodes ``(w_u / max w) x_u``).

Leakage (server): the sum of the survivors' (weighted) inputs, hence the released mean, the survivor set
and the set of dropped clients. Clients learn nothing beyond their own input.

Threat model: ``active=False`` -- an honest-but-curious server colluding with up to c clients
(t > c); ``active=True`` -- a malicious server (it may drop, forge, split and replay messages) colluding
with up to c clients among any client's share holders, which needs t > (m + c) / 2 for m holders
(:mod:`secagg.graph`). c is ``floor(corrupt m)`` for a given ``corrupt`` fraction (SecAgg+ with
``k=None`` bounds it with probability 1 - 2^-sigma instead). Either way no sum of fewer than
``min_survivors`` inputs is unmasked (default ``max(t, ceil(n / 2))``), and a configuration whose t
cannot withstand c is refused with :class:`secagg.SecAggError` before any key is made.

``rng`` only chooses the simulated dropouts; every key, mask and share comes from libsodium.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

import robust
from protocols import _secure_sum as ss
from protocols.base import PROTOCOLS, Leakage, RoundResult
from protocols.channel import Channel, Fault, open_channel
from secagg import EncodingError, FixedPoint, SecAggError
from secagg.driver import run_round
from secagg.graph import DegreeChoice, choose_degree, default_threshold
from secagg.messages import client_round_bytes


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
        corrupt: assumed fraction of clients colluding with the server (the threshold withstands it).
        min_survivors: survivor floor; ``None``: ``max(t, ceil(n / 2))``.
        faults: the channel's fault hooks (:func:`protocols.channel.drop` ...), applied every round to the
            masking round's frames (:mod:`secagg.driver`: kinds ``advertise`` ... ``unmask``).
    """

    name = "secagg"
    #: the channel each round opens: ``"inproc"`` or ``"tcp"`` (:class:`protocols.channel.TcpChannel`)
    transport: str = "inproc"
    #: ``None``: dropouts at uniformly chosen phases; a phase name: exactly ``ceil(dropout n)`` clients drop
    #: there (``fedsec audit`` sets ``"masked_input"``, its worst case: the server recovers their masks).
    drop_phase: str | None = None

    def __init__(
        self,
        t: int | None = None,
        clip: float = 1.0,
        bits: int = 32,
        active: bool = False,
        dropout: float = 0.0,
        frac_bits: int | None = None,
        corrupt: float = 0.2,
        min_survivors: int | None = None,
        faults: Sequence[Fault] = (),
    ) -> None:
        ss.check_threshold(t)
        ss.check_dropout(dropout)
        ss.check_corrupt(corrupt)
        ss.check_min_survivors(min_survivors)
        self.t = t
        self.encoding = FixedPoint(bits=bits, clip=float(clip), frac_bits=frac_bits)
        self.active = bool(active)
        self.dropout = float(dropout)
        self.corrupt = float(corrupt)
        self.min_survivors = min_survivors
        self.faults = list(faults)
        self.round_id = 0
        self.channel: Channel | None = None

    def round_params(self, n: int) -> dict[str, Any]:
        """The masking round's public parameters for ``n`` clients (threshold, degree, ring, variant,
        tolerated colluders, survivor floor): the keywords of :func:`secagg.driver.run_round` and of
        :class:`secagg.config.RoundConfig` alike."""
        plan = self.plan(n)
        return {
            "t": plan.t,
            "bits": self.encoding.bits,
            "k": None if plan.complete else plan.k,
            "active": self.active,
            "corrupt": plan.corrupt,
            "min_survivors": self.min_survivors,
        }

    def plan(self, n: int) -> DegreeChoice:
        """The graph degree k, threshold t and colluders c this protocol uses for n clients."""
        return ss.complete_plan(n, self.t, self.active, self.corrupt)

    def describe(self, n: int) -> dict[str, Any]:
        """The (k, t, c) this protocol uses for n clients."""
        p = self.plan(n)
        return {"k": p.k, "t": p.t, "corrupt": p.corrupt}

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
        drops = ss.simulated_dropouts(n, self.dropout, self.active, rng, self.drop_phase)
        self.round_id += 1
        ch = self.channel = open_channel(self.transport, faults=self.faults, round_id=self.round_id)
        out = run_round(enc, dropouts=drops, channel=ch, **self.round_params(n))
        total = self.encoding.decode_sum(out.sum, n)
        agg = ss.survivor_mean(total, w, out.survivors, xt.device)
        leak = Leakage(
            {
                "server": {"sum_of_survivors": total, "survivors": out.survivors, "dropped": out.dropped},
                "client": {},
            }
        )
        return RoundResult(aggregate=agg, accepted=list(out.survivors), meter=ch.meter, leakage=leak)


def plus_client_round_bytes(n: int, k: int, d: int, word_bytes: int, client: int = 0) -> tuple[int, int]:
    """Bytes SecAgg+ client ``client`` sends and receives in a passive round, no dropouts, degree ``k``.

    Keys, shares and unmasking shares are exchanged only within the client's neighbourhood of
    ``m = k + 1`` clients (Bell et al., CCS 2020), so every term of
    :func:`secagg.messages.client_round_bytes` in ``n`` becomes one in ``m``, except the server's
    unmasking request, which lists all ``n`` survivors (``4 n`` bytes)::

        sent     = client_round_bytes(m, d, w, client).sent
        received = client_round_bytes(m, d, w, client).received + 4 (n - m)

    Per client ``O(k + d)`` with ``k = O(log n)``, against ``O(n + d)`` for SecAgg; ``k = n - 1`` is
    the complete graph and gives SecAgg's figure. ``k`` is :meth:`SecAggPlusSum.plan`'s degree.

    >>> plus_client_round_bytes(n=12, k=4, d=16, word_bytes=4)
    (1437, 1612)
    """
    m = k + 1
    sent, received = client_round_bytes(m, d, word_bytes, client)
    return sent, received + 4 * (n - m)


@PROTOCOLS.register("secagg_plus")
class SecAggPlusSum(SecAggSum):
    """SecAgg+ (Bell et al., CCS 2020): masks and shares only among k neighbours of a random k-regular graph.

    Args (in addition to :class:`SecAggSum`'s):
        k: even degree; ``None`` chooses (k, t) with :func:`secagg.graph.choose_degree` from ``n``,
            ``dropout``, ``corrupt``, ``sigma`` and ``eta``. ``t`` is then the threshold within each
            neighbourhood of k + 1 clients.
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
        min_survivors: int | None = None,
        faults: Sequence[Fault] = (),
    ) -> None:
        super().__init__(
            t=t,
            clip=clip,
            bits=bits,
            active=active,
            dropout=dropout,
            frac_bits=frac_bits,
            corrupt=corrupt,
            min_survivors=min_survivors,
            faults=faults,
        )
        if k is not None and (not isinstance(k, int) or k < 2 or k % 2):
            raise SecAggError(f"k: got {k!r}; want None or an even int >= 2")
        self.k, self.sigma, self.eta = k, int(sigma), int(eta)

    def plan(self, n: int) -> DegreeChoice:
        if self.k is None:
            ch = choose_degree(
                n,
                dropout=self.dropout,
                corrupt=self.corrupt,
                sigma=self.sigma,
                eta=self.eta,
                active=self.active,
            )
            if self.t is None:
                return ch
            return DegreeChoice(ch.k, self.t, ch.complete, math.floor(self.corrupt * (ch.k + 1)))
        if self.k >= n - 1:
            return ss.complete_plan(n, self.t, self.active, self.corrupt)
        c = math.floor(self.corrupt * (self.k + 1))
        t = self.t if self.t is not None else default_threshold(self.k + 1, self.active, c)
        return DegreeChoice(self.k, t, False, c)
