"""``"prio"``: two non-colluding servers aggregate secret-shared updates whose L2 norm is proved <= B.

Each client encodes its update in fixed point (f fractional bits), proves with PINE's circuit
(Rothblum, Omri, Chen, Talwar, arXiv 2311.10237) on the fully linear proof of Boneh et al. (CRYPTO
2019, as draft-irtf-cfrg-vdaf-20) that ||x||_2 <= B, and splits update and proof additively between a
leader and a helper (:mod:`secagg.vdaf.pine_vdaf`). For every report the helper sends its verifier
share to the leader, the leader decides and sends its verdict back (one exchange), and both keep the
report only if both accept. The servers sum the accepted output shares over the same list, refuse to
release fewer than ``min_count`` of them, and the leader combines the two aggregate shares into the
released **mean over the accepted clients** (with ``weights``: each client sends (w_i / max w) x_i and
the release divides by the accepted weight).

Leakage, to each server: the sum of the accepted inputs (hence the mean), which clients were
rejected and why (a typed reason), which clients sent nothing, and the count. Clients learn nothing.
Privacy holds against one malicious server (its share is uniformly random); robustness of the
verification assumes both servers follow the protocol. A dropout is an absent report: no recovery.

A client whose update exceeds B either clips it to norm B first (``clip_to_bound=True``) or, as a
malicious client would, submits it anyway with a forged norm claim, which the servers reject. Masks,
seeds, nonces and the verify key come from libsodium; ``rng`` only simulates dropouts.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import nacl.utils
import numpy as np
import torch

import robust
from protocols import _secure_sum as ss
from protocols.base import PROTOCOLS, Leakage, Meter, RoundResult
from secagg.errors import ProtocolAbort, TooFewSurvivors
from secagg.vdaf.errors import VdafError, VdafMeasurementError
from secagg.vdaf.field import Vec
from secagg.vdaf.pine import PineParams, encode_fixed_point, forge_norm_claim, forge_wr_claim
from secagg.vdaf.pine_vdaf import Pine, PineInputShare, PineState, PineVerifierShare

NONCE = 16
PUBLIC = 4 * 32


class NonFiniteUpdate(VdafMeasurementError, robust.NonFiniteError):
    """A client update holds NaN or Inf: it has no fixed-point encoding."""


class PrioClient:
    """Encodes, proves and shards its update; sends one report to each server."""

    def __init__(self, index: int, pine: Pine, ctx: bytes) -> None:
        self.index, self.pine, self.ctx = index, pine, ctx

    def reports(self, update: np.ndarray, forge: bool = False) -> tuple[bytes, bytes]:
        """(leader report, helper report) = nonce || public share || input share."""
        pine = self.pine
        for _ in range(4):  # an honest client re-shards if too few wraparound checks pass
            nonce, rand = nacl.utils.random(NONCE), nacl.utils.random(pine.RAND_SIZE)
            if forge:  # any integers: a forging client reduces them mod p itself
                big = np.array(
                    [int(v) for v in np.rint(np.ldexp(update, pine.params.num_frac_bits))], dtype=object
                )
                first = forge_norm_claim(pine.valid, big)
            else:
                first = pine.valid.encode_norm(encode_fixed_point(pine.params, update.tolist()))
            try:
                wr = partial(forge_wr_claim, pine.valid) if forge else None
                public, shares = pine.shard_encoded(self.ctx, first, nonce, rand, wr)
            except VdafMeasurementError as err:
                if "wraparound" not in str(err):
                    raise
                continue
            head = nonce + b"".join(public)
            return head + pine.encode_input_share(shares[0]), head + pine.encode_input_share(shares[1])
        raise VdafMeasurementError("got 4 failed wraparound draws in a row; want an update within the bound")


@dataclass
class PrioServer:
    """Leader (agg_id 0) or helper (1): verifies reports on its shares, sums the accepted ones."""

    agg_id: int
    pine: Pine
    verify_key: bytes
    ctx: bytes
    nonces: set[bytes] = field(default_factory=set)
    states: dict[int, PineState] = field(default_factory=dict)
    rejected: dict[int, str] = field(default_factory=dict)
    accepted: list[int] = field(default_factory=list)

    def receive(self, index: int, report: bytes) -> PineVerifierShare | None:
        """Parse and query one report; a bad one is recorded with a typed reason, never raised."""
        try:
            if len(report) < NONCE + PUBLIC:
                raise VdafError(f"got a {len(report)}-byte report; want > {NONCE + PUBLIC}")
            nonce, rest = report[:NONCE], report[NONCE:]
            if nonce in self.nonces:
                raise VdafError("got a repeated nonce; want a fresh one per report")
            self.nonces.add(nonce)
            public = [rest[i : i + 32] for i in range(0, PUBLIC, 32)]
            share: PineInputShare = self.pine.decode_input_share(self.agg_id, rest[PUBLIC:])
            state, vs = self.pine.verify_init(self.verify_key, self.ctx, self.agg_id, nonce, public, share)
        except VdafError as err:
            self.rejected[index] = f"{type(err).__name__}: {err}"
            return None
        self.states[index] = state
        return vs

    def finish(self, index: int, message: bytes | None, reason: str | None) -> bool:
        """Apply the verdict; keep the report only if this server's own seed check passes too."""
        if index not in self.states:
            return False
        if message is None:
            self.rejected[index] = reason or "rejected by the other server"
            return False
        try:
            self.pine.verify_next(self.states[index], message)
        except VdafError as err:
            self.rejected[index] = f"{type(err).__name__}: {err}"
            return False
        return True

    def agg_share(self, accepted: list[int]) -> Vec:
        return self.pine.aggregate([self.states[i].out_share for i in accepted])


@PROTOCOLS.register("prio")
class PrioPine:
    """Two-server aggregation with PINE-verified L2 norm bounds.

    Args:
        bound: the L2 norm bound B of each (weighted) update.
        frac_bits: fixed-point fraction bits f (Field64 needs 3 B^2 4^f + 2 < p).
        wr_checks: PINE's number of wraparound checks r (all must pass).
        proofs: FLP proofs per report (>= 3 in Field64, the draft's rule with joint randomness).
        min_count: fewest accepted reports the servers release an aggregate of.
        clip_to_bound: honest clients scale updates above B down to B instead of submitting them.
        dropout: probability that a client sends nothing (simulated with ``rng``).
    """

    name = "prio"

    def __init__(
        self,
        bound: float = 1.0,
        frac_bits: int = 15,
        wr_checks: int = 100,
        proofs: int = 3,
        min_count: int = 1,
        clip_to_bound: bool = False,
        dropout: float = 0.0,
    ) -> None:
        ss.check_dropout(dropout)
        if min_count < 1:
            raise VdafError(f"min_count: got {min_count}; want >= 1")
        self.bound, self.frac_bits, self.wr_checks, self.proofs = float(bound), frac_bits, wr_checks, proofs
        self.min_count, self.clip_to_bound, self.dropout = min_count, bool(clip_to_bound), float(dropout)
        PineParams(dimension=1, l2_norm_bound=self.bound, num_frac_bits=frac_bits, num_wr_checks=wr_checks)

    def describe(self, d: int) -> dict[str, Any]:
        """PINE's parameters at dimension d and the bytes one client uploads (both reports)."""
        pp = PineParams(d, self.bound, self.frac_bits, self.wr_checks)
        pine = Pine(pp, self.proofs)
        return {
            "B_enc": pp.bound_enc,
            "wr_bound": pp.wr_bound,
            "chunk_length": pine.valid.chunk_length,
            "upload_bytes": pine.upload_bytes() + 2 * NONCE + PUBLIC,  # the public share goes to both
        }

    def run(
        self,
        stack: torch.Tensor | np.ndarray,
        *,
        weights: torch.Tensor | None = None,
        rng: np.random.Generator | None = None,
    ) -> RoundResult:
        x = ss.check_stack(stack).detach().to("cpu", torch.float64).numpy()
        n, d = x.shape
        bad = ~np.isfinite(x).all(axis=1)
        if bad.any():
            raise NonFiniteUpdate(
                f"stack: got NaN or Inf in rows {np.flatnonzero(bad)[:10].tolist()}; want finite"
            )
        w = ss.client_weights(weights, n)
        x = x * w[:, None]
        pp = PineParams(d, self.bound, self.frac_bits, self.wr_checks)
        pine = Pine(pp, self.proofs)
        meter = Meter()
        ctx = b"fedsec/prio/" + nacl.utils.random(16)  # task and round binding
        with meter.time("leader", "setup"):
            key = nacl.utils.random(32)
        meter.send("leader", "helper", "setup", key)
        leader, helper = PrioServer(0, pine, key, ctx), PrioServer(1, pine, key, ctx)
        g = rng if rng is not None else np.random.default_rng()
        absent = set(np.flatnonzero(g.random(n) < self.dropout).tolist()) if self.dropout else set()
        vshares: dict[int, tuple[PineVerifierShare | None, PineVerifierShare | None]] = {}
        failed: dict[int, str] = {}
        for i in range(n):
            if i in absent:
                continue
            name = f"client[{i}]"
            with meter.time(name, "upload"):
                update, forge = self._prepare(x[i], pp)
                try:
                    to_leader, to_helper = PrioClient(i, pine, ctx).reports(update, forge)
                except VdafMeasurementError as err:  # no report: the client is absent
                    failed[i] = f"{type(err).__name__}: {err}"
                    continue
            with meter.time("leader", "verify"):
                v0 = leader.receive(i, meter.send(name, "leader", "upload", to_leader))
            with meter.time("helper", "verify"):
                v1 = helper.receive(i, meter.send(name, "helper", "upload", to_helper))
            vshares[i] = (v0, v1)
        accepted = self._decide(pine, ctx, leader, helper, vshares, meter)
        if len(accepted) < self.min_count:
            raise TooFewSurvivors(f"accepted reports: got {len(accepted)}; want >= {self.min_count}")
        with meter.time("helper", "aggregate"):
            h_share = pine.field.encode_vec(helper.agg_share(accepted))
        msg = meter.send("helper", "leader", "aggregate", struct.pack("<I", len(accepted)) + h_share)
        with meter.time("leader", "aggregate"):
            if struct.unpack("<I", msg[:4])[0] != len(accepted):
                raise ProtocolAbort("aggregate: the servers' accepted counts differ")
            total = pine.unshard([leader.agg_share(accepted), pine.field.decode_vec(msg[4:])], len(accepted))
        mean = np.asarray(total) / float(np.sum(w[accepted]))
        aggregate = torch.as_tensor(mean, dtype=torch.float32)
        rejected = {**helper.rejected, **leader.rejected}
        seen = {
            "aggregate": aggregate,
            "count": len(accepted),
            "accepted": accepted,
            "rejected": rejected,
            "absent": sorted(absent | set(failed)),
        }
        return RoundResult(aggregate, accepted, meter, Leakage({"leader": seen, "helper": dict(seen)}))

    def _prepare(self, row: np.ndarray, pp: PineParams) -> tuple[np.ndarray, bool]:
        """The update a client submits and whether it must forge its norm claim (it exceeds B)."""
        limit = pp.bound_enc / 2**pp.num_frac_bits
        rounded = np.rint(np.ldexp(row, pp.num_frac_bits))
        over = float(np.dot(rounded, rounded)) > float(pp.bound_enc) ** 2
        if over and self.clip_to_bound:
            scaled = row * (limit / np.linalg.norm(row))
            return np.floor(np.ldexp(np.abs(scaled), pp.num_frac_bits)) * np.sign(
                scaled
            ) / 2**pp.num_frac_bits, False
        return row, over

    def _decide(
        self,
        pine: Pine,
        ctx: bytes,
        leader: PrioServer,
        helper: PrioServer,
        vshares: dict[int, tuple[PineVerifierShare | None, PineVerifierShare | None]],
        meter: Meter,
    ) -> list[int]:
        """One exchange per report: helper -> leader verifier share, leader -> helper verdict."""
        accepted = []
        for i, (v0, v1) in vshares.items():
            body = pine.encode_verifier_share(v1) if v1 is not None else b""
            wire = meter.send("helper", "leader", "verify", struct.pack("<I", i) + body)
            message, reason = None, None
            with meter.time("leader", "verify"):
                if v0 is None or not wire[4:]:
                    reason = leader.rejected.get(i) or helper.rejected.get(i) or "no verifier share"
                else:
                    try:
                        message = pine.verifier_shares_to_message(
                            ctx, [v0, pine.decode_verifier_share(wire[4:])]
                        )
                    except VdafError as err:
                        reason = f"{type(err).__name__}: {err}"
                ok_leader = leader.finish(i, message, reason)
            verdict = struct.pack("<IB", i, ok_leader) + (message if ok_leader and message else b"")
            wire = meter.send("leader", "helper", "verify", verdict)
            with meter.time("helper", "verify"):
                if wire[4] == 1:
                    ok_helper = helper.finish(i, wire[5:], None)
                else:
                    ok_helper = helper.finish(i, None, helper.rejected.get(i, "rejected by the leader"))
            ok_back = meter.send("helper", "leader", "verify", bytes([ok_helper]))
            if ok_leader and ok_back == b"\x01":
                accepted.append(i)
            elif ok_leader:
                leader.rejected[i] = "rejected by the helper"
        return accepted
