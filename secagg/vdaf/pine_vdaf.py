"""The PINE VDAF for two aggregators: Prio3 with a second, earlier joint randomness for the wraparound
checks (draft-chen-cfrg-vdaf-pine, Section 5), on the draft-20 FLP.

Sharding: the client encodes x and its norm bits (the "first" part), splits them, derives the
wraparound seed from parts wr_j = XOF(wr_blind_j, usage 8, j || nonce || first share_j) (seed =
XOF(0^32, usage 9, wr_0 || wr_1)), expands z from it (usage 10), appends the wraparound bits, splits
the rest, and proves over the full measurement (its sent part plus the r dot products) with joint
randomness derived as Prio3's from the sent shares. The public share carries both pairs of parts.

Verification: each aggregator recomputes its own two parts, takes the other's from the public share,
derives z, appends its shares of the r dot products to its measurement share and queries; the
verifier message is (wraparound seed, joint-rand seed) from the aggregators' own parts, and each
aggregator checks both equal the ones it derived (a client that lied in the public share fails).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from secagg.vdaf.errors import VdafDecodeError, VdafParameterError, VdafVerifyError
from secagg.vdaf.field import Vec
from secagg.vdaf.flp import Flp
from secagg.vdaf.pine import PineNormValid, PineParams, PineValid, encode_fixed_point, signed_dot, wr_bytes
from secagg.vdaf.prio3 import (
    NONCE_SIZE,
    USAGE_MEAS_SHARE,
    USAGE_PROOF_SHARE,
    USAGE_PROVE_RANDOMNESS,
    USAGE_QUERY_RANDOMNESS,
    Prio3,
)
from secagg.vdaf.xof import SEED_SIZE, XofTurboShake128

USAGE_WR_JOINT_RAND_PART = 8
USAGE_WR_JOINT_RAND_SEED = 9
USAGE_WR_JOINT_RANDOMNESS = 10
PINE_ALGO_ID = 0xFFFF1000  # private-use range of draft-20's registry


@dataclass(frozen=True)
class PineLeaderShare:
    sent_share: Vec
    proofs_share: Vec
    blind: bytes
    wr_blind: bytes


@dataclass(frozen=True)
class PineHelperShare:
    seed: bytes
    blind: bytes
    wr_blind: bytes


PineInputShare = PineLeaderShare | PineHelperShare


@dataclass(frozen=True)
class PineState:
    """One report's verification state; ``sq_norm_share`` is this aggregator's share of the claimed
    squared norm v = sum x_i^2 (linear in the norm bits; proved by the norm FLP once accepted)."""

    out_share: Vec
    wr_seed: bytes
    jr_seed: bytes
    sq_norm_share: Vec


@dataclass(frozen=True)
class PineVerifierShare:
    verifiers: Vec
    jr_part: bytes
    wr_part: bytes


class Pine:
    """PINE for two aggregators (leader 0, helper 1): ``proofs`` proofs of ``PineValid`` (joint
    randomness) followed by one proof of ``PineNormValid`` (none), as one proof vector."""

    SHARES = 2
    RAND_SIZE = 6 * SEED_SIZE
    xof = XofTurboShake128

    def __init__(self, params: PineParams, proofs: int = 3) -> None:
        self.params = params
        self.valid = PineValid(params)
        self.prio3 = Prio3(self.valid, PINE_ALGO_ID, proofs, 2)
        self.flp, self.field, self.PROOFS = self.prio3.flp, params.field, proofs
        self.norm_valid = PineNormValid(params)
        self.flp_norm = Flp(self.norm_valid)
        self.first_len = params.dimension + 2 * params.norm_bits
        self.PROOF_LEN = self.flp.PROOF_LEN * proofs + self.flp_norm.PROOF_LEN
        self.VERIFIER_LEN = self.flp.VERIFIER_LEN * proofs + self.flp_norm.VERIFIER_LEN

    # -- derivations ---------------------------------------------------------------------------------------
    def helper_sent_share(self, ctx: bytes, seed: bytes) -> Vec:
        dst = self.prio3.dst(USAGE_MEAS_SHARE, ctx)
        return self.xof.expand_into_vec(self.field, seed, dst, bytes([1]), self.params.sent_len)

    def wr_part(self, ctx: bytes, agg_id: int, wr_blind: bytes, first_share: Vec, nonce: bytes) -> bytes:
        binder = bytes([agg_id]) + nonce + self.field.encode_vec(first_share)
        return self.xof.derive_seed(wr_blind, self.prio3.dst(USAGE_WR_JOINT_RAND_PART, ctx), binder)

    def wr_seed(self, ctx: bytes, parts: Sequence[bytes]) -> bytes:
        dst = self.prio3.dst(USAGE_WR_JOINT_RAND_SEED, ctx)
        return self.xof.derive_seed(bytes(SEED_SIZE), dst, b"".join(parts))

    def wr_matrix(self, ctx: bytes, seed: bytes) -> Vec:
        pp = self.params
        xof = self.xof(seed, self.prio3.dst(USAGE_WR_JOINT_RANDOMNESS, ctx), b"")
        return wr_bytes(xof.next(pp.num_wr_checks * (-(-pp.dimension // 4))), pp.num_wr_checks, pp.dimension)

    def _expand(self, ctx: bytes, usage: int, seed: bytes, binder: bytes, n: int) -> Vec:
        return self.xof.expand_into_vec(self.field, seed, self.prio3.dst(usage, ctx), binder, n)

    def helper_proofs_share(self, ctx: bytes, seed: bytes) -> Vec:
        return self._expand(ctx, USAGE_PROOF_SHARE, seed, bytes([self.PROOFS, 1]), self.PROOF_LEN)

    def _proofs(self, ctx: bytes, meas: Vec, prove_seed: bytes, jr_seed: bytes) -> Vec:
        pl, pn = self.flp.PROVE_RAND_LEN, self.flp_norm.PROVE_RAND_LEN
        n = pl * self.PROOFS + pn
        prove = self._expand(ctx, USAGE_PROVE_RANDOMNESS, prove_seed, bytes([self.PROOFS]), n)
        joint = self.prio3.joint_rands(ctx, jr_seed)
        main = self.flp.prove_many(meas, prove[: pl * self.PROOFS], joint, self.PROOFS)
        return np.concatenate([main, self.flp_norm.prove(meas, prove[n - pn :], self.field.zeros(0))])

    def _query(
        self, verify_key: bytes, ctx: bytes, nonce: bytes, meas: Vec, proofs: Vec, jr_seed: bytes
    ) -> Vec:
        pl, ql = self.flp.PROOF_LEN, self.flp.QUERY_RAND_LEN
        n = ql * self.PROOFS + self.flp_norm.QUERY_RAND_LEN
        query = self._expand(ctx, USAGE_QUERY_RANDOMNESS, verify_key, bytes([self.PROOFS]) + nonce, n)
        joint = self.prio3.joint_rands(ctx, jr_seed)
        out = [self.flp.query_many(meas, proofs, query, joint, self.SHARES, self.PROOFS)]
        off = pl * self.PROOFS
        out.append(self.flp_norm.query(meas, proofs[off:], query[ql * self.PROOFS :], self.field.zeros(0), 2))
        return np.concatenate(out)

    # -- client --------------------------------------------------------------------------------------------
    def shard(
        self, ctx: bytes, measurement: Sequence[float], nonce: bytes, rand: bytes
    ) -> tuple[list[bytes], list[PineInputShare]]:
        """(public share [wr_0, wr_1, jr_0, jr_1], [leader share, helper share]).

        Raises VdafMeasurementError when the rounded norm exceeds B, or (rarely, for an honest
        client) when fewer than r_pass wraparound checks pass: re-shard with fresh ``rand``.
        """
        first = self.valid.encode_norm(encode_fixed_point(self.params, measurement))
        return self.shard_encoded(ctx, first, nonce, rand)

    def shard_encoded(
        self,
        ctx: bytes,
        first: Vec,
        nonce: bytes,
        rand: bytes,
        encode_wr: Callable[[Vec, Vec], tuple[Vec, Vec]] | None = None,
    ) -> tuple[list[bytes], list[PineInputShare]]:
        """``shard`` from the encoded x and norm bits; a forging client passes its own claims here
        (``first`` and ``encode_wr``, e.g. :func:`secagg.vdaf.pine.forge_wr_claim`)."""
        if len(nonce) != NONCE_SIZE or len(rand) != self.RAND_SIZE:
            raise VdafParameterError(f"got nonce {len(nonce)} B, rand {len(rand)} B; want 16, 192")
        f, p3 = self.field, self.prio3
        seeds = [rand[i : i + SEED_SIZE] for i in range(0, self.RAND_SIZE, SEED_SIZE)]
        h_seed, h_blind, h_wr, l_blind, l_wr, prove_seed = seeds
        h_sent = self.helper_sent_share(ctx, h_seed)
        l_first = f.sub(first, h_sent[: self.first_len])
        wr_parts = [
            self.wr_part(ctx, 0, l_wr, l_first, nonce),
            self.wr_part(ctx, 1, h_wr, h_sent[: self.first_len], nonce),
        ]
        z = self.wr_matrix(ctx, self.wr_seed(ctx, wr_parts))
        wr_sent, dots = (encode_wr or self.valid.encode_wr)(first[: self.params.dimension], z)
        sent = np.concatenate([first, wr_sent])
        l_sent = f.sub(sent, h_sent)
        jr_parts = [
            p3.joint_rand_part(ctx, 0, l_blind, l_sent, nonce),
            p3.joint_rand_part(ctx, 1, h_blind, h_sent, nonce),
        ]
        proofs = self._proofs(
            ctx, np.concatenate([sent, dots]), prove_seed, p3.joint_rand_seed(ctx, jr_parts)
        )
        l_proofs = f.sub(proofs, self.helper_proofs_share(ctx, h_seed))
        shares: list[PineInputShare] = [
            PineLeaderShare(l_sent, l_proofs, l_blind, l_wr),
            PineHelperShare(h_seed, h_blind, h_wr),
        ]
        return [*wr_parts, *jr_parts], shares

    # -- aggregators -----------------------------------------------------------------------------------------
    def verify_init(
        self,
        verify_key: bytes,
        ctx: bytes,
        agg_id: int,
        nonce: bytes,
        public: Sequence[bytes],
        share: PineInputShare,
    ) -> tuple[PineState, PineVerifierShare]:
        """Expand, run the wraparound dot products on this share, and query every proof."""
        p3, f = self.prio3, self.field
        if len(public) != 4 or len(verify_key) != SEED_SIZE or len(nonce) != NONCE_SIZE:
            raise VdafVerifyError("verify_init", "got a malformed public share, key or nonce")
        if isinstance(share, PineLeaderShare) and agg_id == 0:
            sent, proofs = share.sent_share, share.proofs_share
        elif isinstance(share, PineHelperShare) and agg_id == 1:
            sent, proofs = self.helper_sent_share(ctx, share.seed), self.helper_proofs_share(ctx, share.seed)
        else:
            raise VdafVerifyError("verify_init", f"got a {type(share).__name__} for aggregator {agg_id}")
        wr_parts, jr_parts = list(public[:2]), list(public[2:])
        wr_parts[agg_id] = wr_own = self.wr_part(ctx, agg_id, share.wr_blind, sent[: self.first_len], nonce)
        jr_parts[agg_id] = jr_own = p3.joint_rand_part(ctx, agg_id, share.blind, sent, nonce)
        wr_seed, jr_seed = self.wr_seed(ctx, wr_parts), p3.joint_rand_seed(ctx, jr_parts)
        z = self.wr_matrix(ctx, wr_seed)
        meas = np.concatenate([sent, signed_dot(f, z, sent[: self.params.dimension])])
        verifiers = self._query(verify_key, ctx, nonce, meas, proofs, jr_seed)
        d, nb = self.params.dimension, self.params.norm_bits
        v_share = f.dot(sent[d : d + nb], self.valid.pow2[:nb])
        state = PineState(self.valid.truncate(meas), wr_seed, jr_seed, v_share)
        return state, PineVerifierShare(verifiers, jr_own, wr_own)

    def verifier_shares_to_message(self, ctx: bytes, shares: Sequence[PineVerifierShare]) -> bytes:
        """Decide every proof; the message is wr_seed || jr_seed from the aggregators' own parts."""
        f, vl = self.field, self.flp.VERIFIER_LEN
        if len(shares) != 2:
            raise VdafVerifyError("verifier_shares_to_message", f"got {len(shares)} shares; want 2")
        total = f.add(shares[0].verifiers, shares[1].verifiers)
        bad = self.flp.first_rejected(total, self.PROOFS)
        if bad is not None:
            raise VdafVerifyError(
                "verifier_shares_to_message", f"proof {bad} rejected; want every proof valid"
            )
        if not self.flp_norm.decide(total[vl * self.PROOFS :]):
            raise VdafVerifyError("verifier_shares_to_message", "norm proof rejected; want v = sum x_i^2")
        wr_seed = self.wr_seed(ctx, [s.wr_part for s in shares])
        return wr_seed + self.prio3.joint_rand_seed(ctx, [s.jr_part for s in shares])

    def verify_next(self, state: PineState, message: bytes) -> Vec:
        if message != state.wr_seed + state.jr_seed:
            raise VdafVerifyError("verify_next", "got seeds unlike the corrected ones; want both equal")
        return state.out_share

    def aggregate(self, out_shares: Sequence[Vec]) -> Vec:
        return self.prio3.aggregate(out_shares)

    def unshard(self, agg_shares: Sequence[Vec], num_measurements: int) -> list[float]:
        return self.valid.decode(self.prio3.aggregate(agg_shares), num_measurements)

    # -- wire format ---------------------------------------------------------------------------------
    def encode_input_share(self, share: PineInputShare) -> bytes:
        if isinstance(share, PineLeaderShare):
            f = self.field
            return (
                f.encode_vec(share.sent_share)
                + f.encode_vec(share.proofs_share)
                + share.blind
                + share.wr_blind
            )
        return share.seed + share.blind + share.wr_blind

    def decode_input_share(self, agg_id: int, data: bytes) -> PineInputShare:
        s = SEED_SIZE
        if agg_id == 1:
            if len(data) != 3 * s:
                raise VdafDecodeError(f"got a {len(data)}-byte helper share; want {3 * s}")
            return PineHelperShare(data[:s], data[s : 2 * s], data[2 * s :])
        es, n_sent = self.field.ENCODED_SIZE, self.params.sent_len
        n_proof = self.PROOF_LEN
        want = es * (n_sent + n_proof) + 2 * s
        if len(data) != want:
            raise VdafDecodeError(f"got a {len(data)}-byte leader share; want {want}")
        sent = self.field.decode_vec(data[: es * n_sent])
        proofs = self.field.decode_vec(data[es * n_sent : es * (n_sent + n_proof)])
        return PineLeaderShare(sent, proofs, data[-2 * s : -s], data[-s:])

    def encode_verifier_share(self, share: PineVerifierShare) -> bytes:
        return self.field.encode_vec(share.verifiers) + share.jr_part + share.wr_part

    def decode_verifier_share(self, data: bytes) -> PineVerifierShare:
        n = self.VERIFIER_LEN * self.field.ENCODED_SIZE
        if len(data) != n + 2 * SEED_SIZE:
            raise VdafDecodeError(f"got a {len(data)}-byte verifier share; want {n + 2 * SEED_SIZE}")
        return PineVerifierShare(
            self.field.decode_vec(data[:n]), data[n : n + SEED_SIZE], data[n + SEED_SIZE :]
        )

    def upload_bytes(self) -> int:
        """Bytes a client uploads: public share + both input shares."""
        es = self.field.ENCODED_SIZE
        return 4 * SEED_SIZE + es * (self.params.sent_len + self.PROOF_LEN) + 5 * SEED_SIZE
