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
rejected (with its own typed reason, or "rejected by the leader / helper"), which clients sent
nothing, and the count. Clients learn nothing.
Privacy holds against one malicious server (its share is uniformly random); robustness of the
verification assumes both servers follow the protocol. A dropout is an absent report: no recovery.

With ``select`` ("krum", "multi_krum") the servers also run the distance-based selection on the
accepted shares: a dealer (a third party that colludes with neither server) deals one square
correlation (A, A A^T) (:mod:`secagg.vdaf.gram`), the servers open E = X - A and then the Gram
matrix, so they additionally learn the accepted updates' squared distances (as the CKKS key holder
does), and the release is the mean of the selected clients. Coordinate-wise median and trimmed mean
would need secure comparisons on every coordinate and are refused.

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
import robust.selection
from protocols import _secure_sum as ss
from protocols.base import PROTOCOLS, Leakage, Meter, RoundResult
from secagg.errors import ProtocolAbort, TooFewSurvivors
from secagg.vdaf.errors import VdafError, VdafMeasurementError
from secagg.vdaf.field import Vec
from secagg.vdaf.gram import deal_square, expand_helper, gram_share, masked_share, signed
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

    @property
    def name(self) -> str:
        return "leader" if self.agg_id == 0 else "helper"

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
        select: ``"krum"`` or ``"multi_krum"`` on the shares (:meth:`_select`): the release is the
            mean of the selected accepted clients, and the servers also learn the squared distances.
        f: the Byzantine bound of the selection.
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
        select: str | None = None,
        f: int = 0,
    ) -> None:
        ss.check_dropout(dropout)
        if select not in (None, "krum", "multi_krum"):
            raise VdafError(
                f"select: got {select!r}; want None, 'krum' or 'multi_krum' (coordinate-wise median and "
                "trimmed mean need secure comparisons over d entries: not offered on shares)"
            )
        self.select, self.f = select, int(f)
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
        vshares, absent = self._upload(x, pine, ctx, leader, helper, meter, rng)
        accepted = self._decide(pine, ctx, leader, helper, vshares, meter)
        if len(accepted) < self.min_count:
            raise TooFewSurvivors(f"accepted reports: got {len(accepted)}; want >= {self.min_count}")
        seen: dict[str, Any] = {}
        chosen = accepted
        if self.select is not None:
            chosen, seen["sq_distances"] = self._select(pine, accepted, leader, helper, meter)
        with meter.time("helper", "aggregate"):
            h_share = pine.field.encode_vec(helper.agg_share(chosen))
        msg = meter.send("helper", "leader", "aggregate", struct.pack("<I", len(chosen)) + h_share)
        with meter.time("leader", "aggregate"):
            if struct.unpack("<I", msg[:4])[0] != len(chosen):
                raise ProtocolAbort("aggregate: the servers' accepted counts differ")
            total = pine.unshard([leader.agg_share(chosen), pine.field.decode_vec(msg[4:])], len(chosen))
        aggregate = torch.as_tensor(np.asarray(total) / float(np.sum(w[chosen])), dtype=torch.float32)
        seen.update(aggregate=aggregate, count=len(accepted), accepted=accepted, absent=sorted(absent))
        views = {srv.name: {**seen, "rejected": dict(srv.rejected)} for srv in (leader, helper)}
        return RoundResult(aggregate, chosen, meter, Leakage(views))

    def _upload(
        self,
        x: np.ndarray,
        pine: Pine,
        ctx: bytes,
        leader: PrioServer,
        helper: PrioServer,
        meter: Meter,
        rng: np.random.Generator | None,
    ) -> tuple[dict[int, tuple[PineVerifierShare | None, PineVerifierShare | None]], set[int]]:
        """Every present client shards and uploads; each server parses and queries its report."""
        n = x.shape[0]
        g = rng if rng is not None else np.random.default_rng()
        absent = set(np.flatnonzero(g.random(n) < self.dropout).tolist()) if self.dropout else set()
        vshares: dict[int, tuple[PineVerifierShare | None, PineVerifierShare | None]] = {}
        for i in range(n):
            if i in absent:
                continue
            name = f"client[{i}]"
            with meter.time(name, "upload"):
                update, forge = self._prepare(x[i], pine.params)
                try:
                    to_leader, to_helper = PrioClient(i, pine, ctx).reports(update, forge)
                except VdafMeasurementError:  # no report: the client is absent
                    absent.add(i)
                    continue
            with meter.time("leader", "verify"):
                v0 = leader.receive(i, meter.send(name, "leader", "upload", to_leader))
            with meter.time("helper", "verify"):
                v1 = helper.receive(i, meter.send(name, "helper", "upload", to_helper))
            vshares[i] = (v0, v1)
        return vshares, absent

    def _select(
        self, pine: Pine, accepted: list[int], leader: PrioServer, helper: PrioServer, meter: Meter
    ) -> tuple[list[int], torch.Tensor]:
        """Krum / Multi-Krum on shares: a dealer's square correlation, E opened, the Gram opened
        (:mod:`secagg.vdaf.gram`); the servers learn the squared distances of the accepted updates."""
        f, m, d = pine.field, len(accepted), pine.params.dimension
        with meter.time("dealer", "select"):
            corr0, seed = deal_square(f, m, d)
        meter.send("dealer", "leader", "select", f.encode_vec(corr0.a) + f.encode_vec(corr0.c))
        meter.send("dealer", "helper", "select", seed)
        shares = []
        for srv, corr in ((leader, corr0), (helper, None)):
            with meter.time(srv.name, "select"):
                corr = corr or expand_helper(f, seed, m, d)
                xs = np.stack([srv.states[i].out_share for i in accepted])
                shares.append((corr, masked_share(f, xs, corr)))
        e0 = meter.send("leader", "helper", "select", f.encode_vec(shares[0][1]))
        e1 = meter.send("helper", "leader", "select", f.encode_vec(shares[1][1]))
        e = f.add(f.decode_vec(e0), f.decode_vec(e1)).reshape(m, d)
        g0 = gram_share(f, 0, e, shares[0][0])
        g1 = f.decode_vec(
            meter.send("helper", "leader", "select", f.encode_vec(gram_share(f, 1, e, shares[1][0])))
        )
        meter.send("leader", "helper", "select", f.encode_vec(g0))
        gram = torch.as_tensor(signed(f, f.add(g0, g1.reshape(m, m))) / 4.0**pine.params.num_frac_bits)
        dist = robust.selection.sq_distances_from_gram(gram)
        keep = 1 if self.select == "krum" else m - self.f
        sel = robust.selection.krum_select(dist, self.f, keep)
        return sorted(accepted[int(k)] for k in sel), dist

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
                    reason = leader.rejected.get(i) or "the helper sent no verifier share"
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
