"""Distributed DP under secure aggregation: ``"secagg_ddp"`` (Kairouz, Liu, Steinke, ICML 2021).

One round over a stack of n client updates:

1. the server draws a fresh public 32-byte rotation seed (libsodium) and sends it to every client;
2. each client (:class:`dp.DDGClient`) clips its update to L2 norm ``clip``, rotates it with the
   randomized Hadamard transform of that seed, scales it to the integer grid, rounds it conditionally and
   adds its share N_Z(0, sigma^2), sigma = z Delta2 / sqrt(n), of the discrete Gaussian noise, then maps
   it into the ring Z_{2^bits} (refusing values that would wrap on their own);
3. the parties run the masked secure sum of :mod:`secagg` (Bonawitz et al. double masking,
   :func:`secagg.driver.run_round`) over serialized bytes, with simulated dropouts;
4. the server (:class:`dp.DDGServer`) lifts the ring sum, rotates it back and releases the **mean over
   the survivors** (with ``weights``: the weighted mean, each client scaling its clipped update by
   ``w_u / max w`` before encoding, as the ``"secagg"`` protocol does).

Privacy: the server sees only the noisy sum; its privacy statement composes, round by round, the RDP of
the sum of the survivors' discrete Gaussians (fewer survivors, less noise, a larger epsilon) and
converts it to (epsilon, delta) -- see :mod:`dp.distributed` for the bound and its assumptions (every
contributor adds its noise share; no amplification by sampling).

Leakage (server): the noisy sum of the survivors' clipped, rotated, rounded updates (DP), the released
mean, the survivor and dropped sets, and the public rotation seed. Clients learn nothing beyond their own
input and the seed. ``rng`` only chooses simulated dropouts; keys, masks, shares, rounding coins and noise
come from libsodium.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import nacl.utils
import numpy as np
import torch

from dp.accounting import check_delta, statement
from dp.distributed import RDP_ORDERS, DDGClient, DDGConfig, DDGServer, clip_l2, padded_dim, rdp_epsilon
from protocols import _secure_sum as ss
from protocols.base import PROTOCOLS, Leakage, RoundResult
from protocols.channel import Channel, Fault, frame_bytes, open_channel
from secagg.driver import run_round
from secagg.messages import client_round_bytes


def ddp_client_round_bytes(n: int, d: int, bits: int, client: int = 0) -> tuple[int, int]:
    """Bytes client ``client`` sends and receives in a round, no dropouts.

    The masked secure sum runs on the rotated vector of ``D = 2^ceil(log2 d)`` ring words
    (:func:`dp.distributed.padded_dim`) of ``w = 4`` bytes (``bits <= 32``, else 8), and the client
    also receives the 32-byte rotation seed in a channel frame (:func:`protocols.channel.frame_bytes`)::

        sent     = client_round_bytes(n, D, w, client).sent
        received = client_round_bytes(n, D, w, client).received + frame_bytes(server, client, 32)

    (:func:`secagg.messages.client_round_bytes`.) The padding costs at most a factor 2 in the masked
    input; the DP noise costs no bytes (it lives in the same ring words).

    >>> ddp_client_round_bytes(n=6, d=20, bits=20)
    (1657, 1916)
    """
    sent, received = client_round_bytes(n, padded_dim(d), 4 if bits <= 32 else 8, client)
    return sent, received + frame_bytes("server", f"client[{client}]", "rotation_seed", 32)


@PROTOCOLS.register("secagg_ddp")
class SecAggDDP:
    """Masked secure aggregation carrying a distributed discrete Gaussian.

    Args:
        clip: L2 clip of each client update.
        noise_multiplier: z, central-equivalent noise relative to the (integer) sensitivity.
        bits: ring Z_{2^bits} of the secure sum (<= 62); about 16-20 for LeNet-sized updates.
        t: Shamir threshold; ``None``: n//2 + 1 (passive) or 2n//3 + 1 (active).
        active: run the consistency check of the active variant.
        dropout: probability that a client drops at a uniformly chosen phase (simulated with ``rng``).
        beta: conditional-rounding parameter (:class:`dp.DDGConfig`).
        wrap_prob: per-round bound on the chance that the sum wraps the ring.
        faults: the channel's fault hooks, applied every round to the rotation seed's frames (kind
            ``rotation_seed``; a client without the seed cannot encode and drops) and to the masking
            round's (:mod:`secagg.driver`).
    """

    name = "secagg_ddp"
    #: the channel each round opens: ``"inproc"`` or ``"tcp"`` (:class:`protocols.channel.TcpChannel`)
    transport: str = "inproc"
    #: ``None``: dropouts at uniformly chosen phases; a phase name: exactly ``ceil(dropout n)`` clients drop
    #: there (``fedsec audit`` sets ``"masked_input"``, its worst case: the server recovers their masks).
    drop_phase: str | None = None

    def __init__(
        self,
        clip: float = 1.0,
        noise_multiplier: float = 1.0,
        bits: int = 20,
        t: int | None = None,
        active: bool = False,
        dropout: float = 0.0,
        beta: float = math.exp(-0.5),
        wrap_prob: float = 1e-6,
        faults: Sequence[Fault] = (),
    ) -> None:
        ss.check_threshold(t)
        ss.check_dropout(dropout, refuse_bool=True)
        # Validate the DP parameters once with a placeholder shape.
        DDGConfig(dim=1, n_clients=1, clip=clip, noise_multiplier=noise_multiplier, bits=bits, beta=beta)
        self.clip, self.noise_multiplier, self.bits = float(clip), float(noise_multiplier), int(bits)
        self.beta, self.wrap_prob = float(beta), float(wrap_prob)
        self.t, self.active, self.dropout = t, bool(active), float(dropout)
        self._servers: dict[tuple[int, int], DDGServer] = {}
        self.faults = list(faults)
        self.round_id = 0
        self.channel: Channel | None = None

    def config(self, n: int, d: int) -> DDGConfig:
        """The public DDG parameters for n clients and updates of length d."""
        return DDGConfig(
            dim=d,
            n_clients=n,
            clip=self.clip,
            noise_multiplier=self.noise_multiplier,
            bits=self.bits,
            beta=self.beta,
            wrap_prob=self.wrap_prob,
        )

    def _server(self, n: int, d: int) -> DDGServer:
        key = (n, d)
        if key not in self._servers:
            self._servers[key] = DDGServer(self.config(n, d))
        return self._servers[key]

    def run(
        self,
        stack: torch.Tensor | np.ndarray,
        *,
        weights: torch.Tensor | None = None,
        rng: np.random.Generator | None = None,
    ) -> RoundResult:
        xt = ss.check_stack(stack)
        x = xt.detach().to("cpu", torch.float64).numpy()
        n, d = x.shape
        w = ss.client_weights(weights, n)
        server = self._server(n, d)
        cfg = server.config
        self.round_id += 1
        ch = self.channel = open_channel(self.transport, faults=self.faults, round_id=self.round_id)
        meter = ch.meter
        with meter.time("server", "rotation_seed"):
            seed = nacl.utils.random(32)
        names = [f"client[{i}]" for i in range(n)]
        got = ch.exchange("rotation_seed", "rotation_seed", [("server", c, seed) for c in names])
        seeds = {fr.receiver: fr.payload for fr in got.frames}
        enc = np.zeros((n, cfg.padded_dim), dtype=np.uint64)
        for i, name in enumerate(names):
            if name not in seeds:
                continue
            with meter.time(name, "dp_encode"):
                row = np.nan_to_num(x[i], nan=0.0, posinf=0.0, neginf=0.0)
                row = clip_l2(row, self.clip) * w[i]
                enc[i] = DDGClient(cfg).encode(row, seeds[name])
        plan = ss.complete_plan(n, self.t, self.active, ss.DEFAULT_CORRUPT)
        drops = ss.simulated_dropouts(n, self.dropout, self.active, rng, self.drop_phase)
        drops |= {i: "advertise_keys" for i, name in enumerate(names) if name not in seeds}
        out = run_round(
            enc,
            t=plan.t,
            bits=self.bits,
            active=self.active,
            dropouts=drops,
            channel=ch,
            corrupt=plan.corrupt,
        )
        with meter.time("server", "dp_decode"):
            total = server.decode(out.sum, seed, len(out.survivors))
        agg = ss.survivor_mean(total, w, out.survivors, xt.device)
        leak = Leakage(
            {
                "server": {
                    "noisy_sum_of_survivors": total,
                    "survivors": out.survivors,
                    "dropped": out.dropped,
                    "rotation_seed": "public",
                },
                "client": {"rotation_seed": "public"},
            }
        )
        return RoundResult(aggregate=agg, accepted=list(out.survivors), meter=meter, leakage=leak)

    def reset(self) -> None:
        """Forget the accounting of past rounds."""
        self._servers.clear()

    def privacy_statement(self, delta: float) -> dict[str, Any]:
        """Per-user (epsilon, delta) over every round run so far (RDP composed across rounds)."""
        delta = check_delta(delta)
        rdp = sum((s.rdp_total for s in self._servers.values()), np.zeros(len(RDP_ORDERS)))
        rounds = sum(s.rounds for s in self._servers.values())
        mins = [s.min_contributors for s in self._servers.values() if s.min_contributors is not None]
        if not self._servers:
            detail: dict[str, Any] = {}
        else:
            last = next(reversed(self._servers.values())).config
            g = last.gamma
            detail = {
                "granularity": g,
                "sensitivity_int": last.delta2(g),
                "sigma_client_int": last.sigma_client(g),
            }
        eps = rdp_epsilon(rdp, delta)
        return statement(
            epsilon=eps,
            delta=delta,
            accountant="rdp (Kairouz et al. 2021, Prop. 14; Opacus conversion)",
            mechanism=(
                f"distributed discrete Gaussian under masked secure aggregation (clip {self.clip}, "
                f"{self.bits}-bit ring, noise split over the round's clients)"
            ),
            sampling="none claimed (q=1); every contributor adds its noise share honestly",
            level="user",
            guarantee="proven under the stated assumptions",
            noise_multiplier=self.noise_multiplier,
            rounds=rounds,
            min_contributors=min(mins) if mins else None,
            **detail,
        )
