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

With ``select`` ("krum", "multi_krum", "bulyan" -- its selection --, "fltrust") and ``pre="nnm"`` the
servers also run a robust rule on the accepted shares (:mod:`protocols.prio_rules`): each applies the
same public integer weights to its shares, computed by :mod:`robust.selection` / :mod:`robust.trust`
from statistics the servers open -- the Gram matrix from a dealer's square correlation (the dealer
colludes with neither server; the servers learn the accepted updates' squared distances, as the CKKS
key holder does) or, for FLTrust, each update's inner product with the public root update ``root``
and its proved squared norm. Coordinate-wise median and trimmed mean would need secure comparisons on
every coordinate and are refused.

A client whose update exceeds B either clips it to norm B first (``clip_to_bound=True``) or, as a
malicious client would, submits it anyway with a forged norm claim, which the servers reject. Masks,
seeds, nonces and the verify key come from libsodium; ``rng`` only simulates dropouts.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import nacl.utils
import numpy as np
import torch

import robust
from protocols import _secure_sum as ss
from protocols import prio_rules
from protocols.base import PROTOCOLS, Leakage, RoundResult
from protocols.channel import Channel, Fault, open_channel
from protocols.ckks.driver import Message
from protocols.prio_wire import PrioWire
from secagg.errors import ProtocolAbort, TooFewSurvivors
from secagg.vdaf.errors import VdafError, VdafMeasurementError
from secagg.vdaf.field import Vec
from secagg.vdaf.pine import PineParams, encode_fixed_point, forge_norm_claim, forge_wr_claim
from secagg.vdaf.pine_vdaf import Pine, PineInputShare, PineState, PineVerifierShare

NONCE = 16
PUBLIC = 4 * 32


@functools.lru_cache(maxsize=4)
def _pine(pp: PineParams, proofs: int) -> Pine:
    """PINE's circuits depend only on the public parameters: built once per (parameters, proofs)."""
    return Pine(pp, proofs)


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
                first = pine.valid.encode_norm(encode_fixed_point(pine.params, update))
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
        select: a rule on the shares (:mod:`protocols.prio_rules`): ``"krum"``, ``"multi_krum"``,
            ``"bulyan"`` (the mean of its selection) or ``"fltrust"`` (``run(..., root=g0)``).
        pre: ``"nnm"`` mixes the accepted shares before ``select`` (or before the mean).
        f: the Byzantine bound of the rule.

        faults: the channel's fault hooks (:func:`protocols.channel.drop` ...) on the uploads (kind
            ``report``, client -> leader and client -> helper): a report whose share to one server is lost
            or refused is rejected; one with both lost is absent.

    Attributes:
        intercept: transport hook, as :attr:`protocols.ckks.CKKSRound.intercept`: may rewrite a message
            in flight; leader-helper messages are authenticated (:mod:`protocols.prio_wire`).
        channel: the last round's :class:`protocols.channel.Channel` (meter, transcript).
    """

    name = "prio"
    #: the channel each round opens: ``"inproc"`` or ``"tcp"`` (:class:`protocols.channel.TcpChannel`)
    transport: str = "inproc"
    intercept: Callable[[Message], bytes] | None = None

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
        pre: str | None = None,
        faults: Sequence[Fault] = (),
    ) -> None:
        ss.check_dropout(dropout)
        prio_rules.check_rule(select, pre)
        self.select, self.pre, self.f = select, pre, int(f)
        if min_count < 1:
            raise VdafError(f"min_count: got {min_count}; want >= 1")
        self.bound, self.frac_bits, self.wr_checks, self.proofs = float(bound), frac_bits, wr_checks, proofs
        self.min_count, self.clip_to_bound, self.dropout = min_count, bool(clip_to_bound), float(dropout)
        self.faults = list(faults)
        self.round_id = 0
        self.channel: Channel | None = None
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
        root: torch.Tensor | np.ndarray | None = None,
    ) -> RoundResult:
        """One round; ``root`` is FLTrust's public root update (``select="fltrust"`` only)."""
        g0 = self._root(root)
        x = ss.check_stack(stack).detach().to("cpu", torch.float64).numpy()
        n, d = x.shape
        if g0 is not None and g0.shape != (d,):
            raise VdafError(f"root: got shape {g0.shape}; want ({d},)")
        bad = ~np.isfinite(x).all(axis=1)
        if bad.any():
            raise NonFiniteUpdate(
                f"stack: got NaN or Inf in rows {np.flatnonzero(bad)[:10].tolist()}; want finite"
            )
        w = ss.client_weights(weights, n)
        x = x * w[:, None]
        pine = _pine(PineParams(d, self.bound, self.frac_bits, self.wr_checks), self.proofs)
        ctx = b"fedsec/prio/" + nacl.utils.random(16)  # task and round binding
        # the leader-helper link key: shared out of band, as the identity keys of the HE protocols
        self.round_id += 1
        ch = self.channel = open_channel(
            self.transport, faults=self.faults, intercept=self.intercept, round_id=self.round_id
        )
        meter = PrioWire(ch, link_key=nacl.utils.random(32), ctx=ctx)
        with meter.time("leader", "setup"):
            key = nacl.utils.random(32)
        helper_key = meter.send("leader", "helper", "setup", key)
        leader, helper = PrioServer(0, pine, key, ctx), PrioServer(1, pine, helper_key, ctx)
        vshares, absent = self._upload(x, pine, ctx, leader, helper, meter, rng)
        accepted = self._decide(pine, ctx, leader, helper, vshares, meter)
        if len(accepted) < self.min_count:
            raise TooFewSurvivors(f"accepted reports: got {len(accepted)}; want >= {self.min_count}")
        seen: dict[str, Any] = {}
        v = np.ones(len(accepted), dtype=np.int64)
        if self.select is not None or self.pre is not None:
            v, opened = prio_rules.rule_release(self, pine, accepted, leader, helper, meter, g0)
            seen.update(opened)
        chosen = [i for i, k in zip(accepted, v, strict=True) if k]
        share = prio_rules.weighted_share if seen else lambda _, srv, acc, __: srv.agg_share(acc)
        with meter.time("helper", "aggregate"):
            h_share = pine.field.encode_vec(share(pine, helper, accepted, v))
        msg = meter.send("helper", "leader", "aggregate", struct.pack("<I", len(chosen)) + h_share)
        with meter.time("leader", "aggregate"):
            if struct.unpack("<I", msg[:4])[0] != len(chosen):
                raise ProtocolAbort("aggregate: the servers' accepted counts differ")
            l_share = share(pine, leader, accepted, v)
            total = np.asarray(pine.unshard([l_share, pine.field.decode_vec(msg[4:])], len(chosen)))
        if self.select == "fltrust":
            denom = 2.0**prio_rules.WEIGHT_BITS
        else:
            denom = float(np.dot(v, w[accepted])) if accepted else 1.0
        aggregate = torch.as_tensor(total / denom, dtype=torch.float32)
        seen.update(aggregate=aggregate, count=len(accepted), accepted=accepted, absent=sorted(absent))
        views = {srv.name: {**seen, "rejected": dict(srv.rejected)} for srv in (leader, helper)}
        return RoundResult(aggregate, chosen, ch.meter, Leakage(views))

    def _upload(
        self,
        x: np.ndarray,
        pine: Pine,
        ctx: bytes,
        leader: PrioServer,
        helper: PrioServer,
        meter: PrioWire,
        rng: np.random.Generator | None,
    ) -> tuple[dict[int, tuple[PineVerifierShare | None, PineVerifierShare | None]], set[int]]:
        """Every present client shards and uploads; each server parses and queries its report."""
        n = x.shape[0]
        g = rng if rng is not None else np.random.default_rng()
        absent = set(np.flatnonzero(g.random(n) < self.dropout).tolist()) if self.dropout else set()
        reports: list[tuple[str, str, bytes]] = []
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
            reports += [(name, "leader", to_leader), (name, "helper", to_helper)]
        index = {f"client[{i}]": i for i in range(n)}
        got = meter.channel.exchange("upload", "report", reports)
        arrived: dict[int, dict[str, bytes]] = {}
        for fr in got.frames:
            arrived.setdefault(index[fr.sender], {})[fr.receiver] = fr.payload
        absent |= {index[s] for s, _, _ in reports} - set(arrived)  # nothing arrived: absent
        vshares: dict[int, tuple[PineVerifierShare | None, PineVerifierShare | None]] = {}
        for i, shares in sorted(arrived.items()):
            v: list[PineVerifierShare | None] = [None, None]
            for k, srv in enumerate((leader, helper)):
                with meter.time(srv.name, "verify"):
                    if srv.name in shares:
                        v[k] = srv.receive(i, shares[srv.name])
                    else:
                        srv.rejected[i] = f"got no report from client[{i}]; want one (lost in transit)"
            vshares[i] = (v[0], v[1])
        return vshares, absent

    def _root(self, root: torch.Tensor | np.ndarray | None) -> np.ndarray | None:
        """FLTrust's root update as float64, required exactly when ``select="fltrust"``."""
        if (root is None) != (self.select != "fltrust"):
            got = type(root).__name__
            raise VdafError(f"root: got {got} with select={self.select!r}; want a root with fltrust only")
        if root is None:
            return None
        g0 = np.asarray(root.detach().cpu() if isinstance(root, torch.Tensor) else root, dtype=np.float64)
        if g0.ndim != 1 or not np.isfinite(g0).all():
            raise VdafError(f"root: got shape {g0.shape} (finite: {np.isfinite(g0).all()}); want finite (d,)")
        return g0

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
        meter: PrioWire,
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
