"""Secure aggregation with client-side L2 norm-bound proofs: ``"secagg_normbound"``.

Secure aggregation hides every update, so the server cannot clip them. Here each client proves, in zero
knowledge, that the update it is about to mask is bounded, and the server checks after unmasking that the
aggregate is the sum of exactly the committed (hence proven) vectors. In the spirit of RoFL (Lycklama et
al., IEEE S&P 2023); the proof is :mod:`secagg.normbound`.

One round (every arrow is serialized bytes, metered per party and phase):

1. ``commit_prove`` (client i): encode the float update with :class:`secagg.FixedPoint` (scale
   ``s = 2^frac_bits``, per-coordinate clip ``clip``) into integers ``q_i`` with ``|q_ij| <= ceil(clip s)``,
   stochastic rounding redrawn (at most 4 times, then rounding toward zero, which never increases the
   norm) so that an update with ``||u|| <= bound`` always satisfies ``||q_i||^2 <= B = floor((bound s)^2)``;
   draw ``r_i`` uniform mod l; send ``C_i = <q_i, G> + r_i h`` and a proof that ``C_i`` opens to a vector
   with entries in ``b = bitlen(ceil(clip s)) + 1`` bits and ``||q_i||^2 <= B``, bound to
   (session, round, client). A client whose update exceeds the bound cannot make such a proof; the
   simulation lets it send what a cheater can compute (:func:`secagg.normbound.forge_proof`).
2. ``verify`` (server): decode (every point validated) and verify the proofs in one batched MSM
   (:func:`secagg.normbound.verify_batch`; a failing batch is re-checked proof by proof) -- all of them,
   or a random ``verify_fraction`` of the clients chosen with libsodium randomness after every
   commitment arrived (probabilistic checking; :func:`detection_probability` gives the chance to catch
   k cheaters). Clients
   whose proof fails are excluded before masking; the typed rejection is recorded in
   ``leakage.learns["server"]["rejected"]`` and in :attr:`SecAggNormBound.last_rejected`.
3. The accepted clients run the Bonawitz double-masking protocol (:func:`secagg.driver.run_round`) on the
   ring vector ``[q_i mod 2^bits ; limbs(r_i)]``: ``r_i < 2^253`` is split into ``ceil(253 / w)`` limbs
   of ``w = min(32, bits - 2 - bitlen(n))`` bits. Every limb sum is below ``n 2^w < 2^(bits-1)``, so the
   ring sums are exact integers and ``R = sum_k limbsum_k 2^(w k) = sum_i r_i`` exactly; the server
   reduces it mod l.
4. ``link_check`` (server): with survivors U, check ``sum_{i in U} C_i == <sum_i q_i, G> + R h``. By the
   binding of Pedersen commitments this holds only if the masked vectors sum to the committed ones, so a
   client that masks a different vector than it committed to makes it fail.
5. Identifiable abort (only when the link check failed; ``blame=True``): the steps ``blame_commit``,
   ``blame_prove`` (and ``blame_pairs`` if a client lied about its pads) of
   :mod:`protocols.normbound_blame` name the clients responsible, exclude them, and complete the round
   with the others in the same masking round: the output is the exact sum of the kept clients'
   committed vectors, checked against the sum of their commitments. An honest client is never named.
   Named clients are in :attr:`SecAggNormBound.last_blamed` and ``leakage.learns["server"]["blamed"]``.
   With ``blame=False`` the round aborts with :class:`secagg.normbound.LinkCheckFailed`.

Output: the mean over the survivors, ``sum_i q_i / (s |U|)`` (with ``weights``: each client scales its
update by ``w_i / max w`` before encoding -- this only shrinks the norm -- and the server divides by the
survivors' total weight).

Leakage (server): the sum of the survivors' updates (hence the mean), the survivors, the dropped
clients, which clients were rejected and why, and, for every verified client, the single bit that its
update is within the bound; commitments and proofs are hiding / zero-knowledge, and ``R`` is uniform mod l
given the inputs. With ``verify_fraction < 1`` the server also learns which clients went unverified, and
an unverified cheater's update can enter the aggregate (the link check still forces it to be the
committed one). A blame round adds what :mod:`protocols.normbound_blame` lists (the failed sum over all
survivors, hence the named clients' masked vectors; padded carries; each kept neighbour's pairwise seed
with a named client), recorded under ``leakage.learns["server"]["blame"]``; the inputs of kept honest
clients stay hidden beyond their sum, against an honest-but-curious server. Clients learn nothing
beyond their own input. Assumptions: discrete log in the Ed25519 prime-order group, SHA-512 as a
random oracle, an honest-but-curious server for confidentiality (the masking protocol's threat model);
soundness of the bound holds against any client.
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor

import nacl.utils
import numpy as np
import torch

from protocols import _secure_sum as ss
from protocols import normbound_blame as nb
from protocols.base import PROTOCOLS, Leakage, Meter, PhaseCost, RoundResult
from protocols.channel import Channel, Fault, frame_bytes, open_channel
from protocols.normbound_parties import (  # re-exported: the parties and helpers of this protocol
    BLIND_BITS,
    NormBoundClient,
    NormBoundConfig,
    NormBoundServer,
    _timed_commit,
    blinding_from_limb_sums,
    blinding_limbs,
    detection_probability,
    encode_within_bound,
    make_commit_message,
)
from secagg.driver import RoundOutput, run_round
from secagg.errors import TooFewSurvivors
from secagg.messages import client_round_bytes
from secagg.normbound import (
    LinkCheckFailed,
    ProofContext,
)
from secagg.normbound.generators import DEFAULT_LABEL

__all__ = [
    "BLIND_BITS",
    "NormBoundClient",
    "NormBoundConfig",
    "NormBoundServer",
    "SecAggNormBound",
    "blinding_from_limb_sums",
    "blinding_limbs",
    "detection_probability",
    "encode_within_bound",
    "make_commit_message",
]


def normbound_client_round_bytes(config: NormBoundConfig, n: int, d: int, client: int = 0) -> tuple[int, int]:
    """Bytes client ``client`` sends and receives in a round where every proof passes, no dropouts, no blame.

    The commitment (one 32-byte point) and the norm proof (:attr:`NormBoundParams.proof_size`:
    ``4 + 2 ceil(log2 n')`` points, 5 scalars and a version byte, ``n'`` the range-proven values), then
    the masked secure sum of ``d + L`` words, ``L = ceil(253 / w)`` limbs of the blinding factor with
    ``w`` = :meth:`NormBoundConfig.limb_bits`, of ``wb = 4`` bytes (``bits <= 32``, else 8)::

        sent     = frame_bytes(client, server, 32 + proof_size) + client_round_bytes(n, d + L, wb).sent
        received = client_round_bytes(n, d + L, wb).received

    (:func:`secagg.messages.client_round_bytes`.) The proof is ``O(log d)``; the ``L`` limbs are fixed.
    """
    limbs = math.ceil(253 / config.limb_bits(n))
    sent, received = client_round_bytes(n, d + limbs, 4 if config.bits <= 32 else 8, client)
    commit = frame_bytes(f"client[{client}]", "server", "commit_prove", 32 + config.params(d).proof_size)
    return commit + sent, received


@PROTOCOLS.register("secagg_normbound")
class SecAggNormBound:
    """Secure aggregation where every client proves ``||update||_2 <= bound`` (module docstring).

    Args: the fields of :class:`NormBoundConfig` (``bound`` is required), and ``faults``: the channel's
    fault hooks, applied every round to the ``commit_prove`` frames and the masking round's.
    """

    name = "secagg_normbound"
    #: the channel each round opens: ``"inproc"`` or ``"tcp"`` (:class:`protocols.channel.TcpChannel`)
    transport: str = "inproc"
    #: ``None``: dropouts at uniformly chosen phases; a phase name: exactly ``ceil(dropout n)`` clients drop
    #: there (``fedsec audit`` sets ``"masked_input"``, its worst case: the server recovers their masks).
    drop_phase: str | None = None

    def __init__(
        self,
        bound: float,
        clip: float | None = None,
        frac_bits: int = 8,
        bits: int = 48,
        t: int | None = None,
        active: bool = False,
        dropout: float = 0.0,
        verify_fraction: float = 1.0,
        label: str = DEFAULT_LABEL,
        blame: bool = True,
        workers: int | None = None,
        faults: Sequence[Fault] = (),
    ) -> None:
        self.config = NormBoundConfig(
            bound=bound,
            clip=clip,
            frac_bits=frac_bits,
            bits=bits,
            t=t,
            active=active,
            dropout=dropout,
            verify_fraction=verify_fraction,
            label=label,
            blame=blame,
            workers=workers,
        )
        self.rounds = 0
        self.last_rejected: dict[int, str] = {}
        self.last_blamed: dict[int, str] = {}
        self.faults = list(faults)
        self.channel: Channel | None = None

    def run(
        self,
        stack: torch.Tensor | np.ndarray,
        *,
        weights: torch.Tensor | None = None,
        rng: np.random.Generator | None = None,
    ) -> RoundResult:
        return self.run_round(stack, weights=weights, rng=rng)

    def run_round(
        self,
        stack: torch.Tensor | np.ndarray,
        *,
        weights: torch.Tensor | None = None,
        rng: np.random.Generator | None = None,
        mask_instead: Mapping[int, np.ndarray] | None = None,
        lie_pads: Collection[int] = (),
    ) -> RoundResult:
        """One round. Fault injection: ``mask_instead`` makes client i mask the integer vector given
        instead of the one it committed to; ``lie_pads`` makes client i commit to wrong pads in the blame
        steps (:meth:`NormBoundClient.wrong_pad_commitment`). Both fail the link check; the blame steps
        then name them (or, with ``blame=False``, the round aborts). Faults on the wire: the channel's
        hooks (``faults``) on the ``commit_prove`` frames and on the masking round's."""
        cfg = self.config
        xt = ss.check_stack(stack)
        x = np.nan_to_num(xt.detach().to("cpu", torch.float32).numpy().astype(np.float64), nan=0.0)
        n, d = x.shape
        w = ss.client_weights(weights, n)
        params = cfg.params(d)
        session = nacl.utils.random(16)
        rnd = self.rounds
        self.rounds += 1
        ch = self.channel = open_channel(self.transport, faults=self.faults, round_id=self.rounds)
        server = NormBoundServer(params, session, rnd)
        clients = [NormBoundClient(i, params, ProofContext(session, rnd, i)) for i in range(n)]
        checked, accepted = self._commit_phase(server, clients, [w[i] * x[i] for i in range(n)], ch)
        limb = cfg.limb_bits(n)
        inputs = np.stack(
            [clients[i].masked_input(cfg.encoding, limb, (mask_instead or {}).get(i)) for i in accepted]
        )
        m = len(accepted)
        plan = ss.complete_plan(m, None if cfg.t is None else min(cfg.t, m), cfg.active, ss.DEFAULT_CORRUPT)
        drops = ss.simulated_dropouts(m, cfg.dropout, cfg.active, rng, self.drop_phase)
        out = run_round(
            inputs,
            t=plan.t,
            corrupt=plan.corrupt,
            bits=cfg.bits,
            active=cfg.active,
            dropouts=drops,
            channel=ch,
            names=[f"client[{i}]" for i in accepted],
            session=session,
        )
        dropped = [accepted[j] for j in out.dropped]
        survivors, q_sum, blame = self._link_or_blame(out, server, clients, accepted, drops, lie_pads)
        total = q_sum.astype(np.float64) / cfg.scale
        agg = ss.survivor_mean(total, w, survivors, xt.device)
        leak = Leakage(
            {
                "server": {
                    "sum_of_survivors": total,
                    "survivors": survivors,
                    "dropped": dropped,
                    "rejected": dict(server.rejected),
                    "within_bound": sorted(i for i in checked if i not in server.rejected),
                    "unverified": sorted(set(range(n)) - checked),
                    "blamed": dict(self.last_blamed),
                    "blame": blame,
                },
                "client": {},
            }
        )
        return RoundResult(aggregate=agg, accepted=survivors, meter=ch.meter, leakage=leak)

    def _commit_phase(
        self, server: NormBoundServer, clients: list[NormBoundClient], updates: list[np.ndarray], ch: Channel
    ) -> tuple[set[int], list[int]]:
        """Every client's ``C || proof`` over the channel; the server verifies the sampled ones.

        Returns the sampled (checked) clients and the accepted ones (>= 2, else :class:`TooFewSurvivors`)."""
        n = len(clients)
        messages = self._commit_all(clients, updates, ch.meter)
        checked = self._audit_sample(n)
        names = {f"client[{i}]": i for i in range(n)}
        got = ch.exchange(
            "commit_prove", "commit_prove", [(c, "server", messages[i]) for c, i in names.items()]
        )
        for fr in got.frames:
            with ch.meter.time("server", "verify"):
                server.receive(names[fr.sender], fr.payload)
        with ch.meter.time("server", "verify"):
            accepted = server.verify(checked)
        self.last_rejected = dict(server.rejected)
        if len(accepted) < 2:
            raise TooFewSurvivors(
                f"accepted clients: got {len(accepted)} ({sorted(server.rejected)} rejected); "
                "want >= 2 to mask"
            )
        return checked, accepted

    def _link_or_blame(
        self,
        out: RoundOutput,
        server: NormBoundServer,
        clients: list[NormBoundClient],
        accepted: list[int],
        drops: Mapping[int, str],
        lie_pads: Collection[int],
    ) -> tuple[list[int], np.ndarray, dict[str, object]]:
        """The link check over the survivors; if it fails, the blame steps (:mod:`protocols.normbound_blame`)
        name the liars and the sum is recomputed without them. Returns (survivors, q_sum, blame record)."""
        cfg, params = self.config, server.params
        d, limb = params.d, cfg.limb_bits(len(clients))
        survivors = [accepted[j] for j in out.survivors]
        q_sum = cfg.encoding.to_signed(out.sum)[:d]
        self.last_blamed = {}
        assert out.channel is not None
        meter = out.channel.meter
        try:
            with meter.time("server", "link_check"):
                server.link_check(survivors, q_sum, out.sum[d:], limb)
            return survivors, q_sum, {}
        except LinkCheckFailed:
            gone = [accepted[j] for j in out.survivors if j in drops]
            if not cfg.blame or gone:  # a survivor gone after masking cannot be checked (normbound_blame)
                raise
        lies = {
            j: clients[accepted[j]].wrong_pad_commitment() for j in out.survivors if accepted[j] in lie_pads
        }
        res = nb.blame_round(
            out,
            nb.RingLayout(params.key, d, cfg.bits, limb, server.session),
            {j: server.commitments[accepted[j]] for j in out.survivors},
            {j: clients[accepted[j]].masked_integers(limb) for j in out.survivors},
            meter,
            lambda j: f"client[{accepted[j]}]",
            lies,
        )
        self.last_blamed = {accepted[j]: why for j, why in res.blamed.items()}
        blame: dict[str, object] = {
            "failed_sum_of_survivors": q_sum.astype(np.float64) / cfg.scale,
            "revealed_pair_seeds": [(accepted[u], accepted[v]) for u, v in res.revealed],
            "disputed_pairs": [(accepted[u], accepted[v]) for u, v in res.disputes],
            "padded_carries_from": list(survivors),
        }
        return [accepted[j] for j in res.kept], res.total, blame

    def _commit_all(
        self, clients: list[NormBoundClient], updates: list[np.ndarray], meter: Meter
    ) -> dict[int, bytes]:
        """Every client's ``C || proof``, in a process pool when ``workers`` allows (each client's
        ``commit_prove`` time is then its own proof's time in its worker)."""
        cfg, n = self.config, len(clients)
        d = clients[0].params.d if clients else 0
        workers = cfg.workers or ((os.cpu_count() or 1) if d >= 2_000 else 1)
        qs = []
        for i in range(n):
            with meter.time(f"client[{i}]", "commit_prove"):
                qs.append(encode_within_bound(cfg, updates[i], n))
        if min(workers, n) < 2:
            out: dict[int, bytes] = {}
            for i in range(n):
                with meter.time(f"client[{i}]", "commit_prove"):
                    out[i] = clients[i].commit_message(qs[i])
            return out
        clients[0].params.setup()  # the workers inherit the generators
        jobs = [(c.params, qs[i], c.context) for i, c in enumerate(clients)]
        with ProcessPoolExecutor(min(workers, n)) as pool:
            results = list(pool.map(_timed_commit, jobs))
        for i, (r, _, seconds) in enumerate(results):
            clients[i].adopt(qs[i], r)
            meter.costs.setdefault((f"client[{i}]", "commit_prove"), PhaseCost()).seconds += seconds
        return {i: msg for i, (_, msg, _) in enumerate(results)}

    def _audit_sample(self, n: int) -> set[int]:
        """Clients whose proofs are checked: all, or ceil(fraction n) drawn with libsodium randomness."""
        k = math.ceil(self.config.verify_fraction * n)
        if k >= n:
            return set(range(n))
        order = sorted(range(n), key=lambda _: nacl.utils.random(16))
        return set(order[:k])
