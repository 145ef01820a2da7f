"""Prio3 (draft-irtf-cfrg-vdaf-20 Section 7): shard, verify, aggregate, unshard, and its wire format.

A client encodes x, splits it additively x = x_0 + x_1 + ... (helper shares expanded from 32-byte
seeds, the leader's share the remainder), proves validity ``PROOFS`` times with the FLP (joint
randomness, when the circuit needs it, derived Fiat-Shamir style from the parts
jr_part_j = XOF(blind_j, usage 7, j || nonce || x_j) and seed = XOF(0^32, usage 6, parts)) and splits
each proof the same way. Each aggregator queries its shares with query randomness derived from the
shared verify key and the nonce; the verifier shares are summed and decided; with joint randomness
the aggregators also check that the seed they recomputed equals the one the client used.

Errors: malformed bytes raise ``VdafDecodeError``; a report that fails raises ``VdafVerifyError``
with the draft's step ("verify_init", "verifier_shares_to_message", "verify_next").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from secagg.vdaf.circuits import Count, Sum, SumVec
from secagg.vdaf.errors import VdafDecodeError, VdafParameterError, VdafVerifyError
from secagg.vdaf.field import Field64, Field128, Vec
from secagg.vdaf.flp import Flp, Valid
from secagg.vdaf.xof import SEED_SIZE, XofTurboShake128, format_dst

USAGE_MEAS_SHARE = 1
USAGE_PROOF_SHARE = 2
USAGE_JOINT_RANDOMNESS = 3
USAGE_PROVE_RANDOMNESS = 4
USAGE_QUERY_RANDOMNESS = 5
USAGE_JOINT_RAND_SEED = 6
USAGE_JOINT_RAND_PART = 7
NONCE_SIZE = 16


@dataclass(frozen=True)
class LeaderShare:
    """Aggregator 0's input share: its measurement share, proof shares and (with joint rand) blind."""

    meas_share: Vec
    proofs_share: Vec
    blind: bytes | None


@dataclass(frozen=True)
class HelperShare:
    """Aggregator j > 0's input share: one seed expanding to its shares, and its blind."""

    seed: bytes
    blind: bytes | None


InputShare = LeaderShare | HelperShare


@dataclass(frozen=True)
class VerifyState:
    out_share: Vec
    joint_rand_seed: bytes | None


@dataclass(frozen=True)
class VerifierShare:
    verifiers: Vec
    joint_rand_part: bytes | None


class Prio3:
    """Prio3 over one validity circuit, with ``proofs`` proofs and ``shares`` aggregators."""

    xof = XofTurboShake128

    def __init__(self, valid: Valid, algo_id: int, proofs: int = 1, shares: int = 2) -> None:
        if not 1 <= proofs < 256 or not 2 <= shares < 256:
            raise VdafParameterError(f"got proofs {proofs}, shares {shares}; want [1, 256) and [2, 256)")
        self.flp = Flp(valid)
        self.field = valid.field
        self.ID, self.PROOFS, self.SHARES = algo_id, proofs, shares
        self.uses_jr = self.flp.JOINT_RAND_LEN > 0
        if self.uses_jr and self.field is Field64 and proofs < 3:
            raise VdafParameterError(
                f"got Field64 with {proofs} proofs and joint randomness; want >= 3 proofs or Field128"
            )
        self.RAND_SIZE = SEED_SIZE * shares * (2 if self.uses_jr else 1)

    # -- derivations (draft Section 7.2.6) -------------------------------------------------------------
    def dst(self, usage: int, ctx: bytes) -> bytes:
        return format_dst(0, self.ID, usage) + ctx

    def helper_meas_share(self, ctx: bytes, agg_id: int, seed: bytes) -> Vec:
        dst = self.dst(USAGE_MEAS_SHARE, ctx)
        return self.xof.expand_into_vec(self.field, seed, dst, bytes([agg_id]), self.flp.MEAS_LEN)

    def helper_proofs_share(self, ctx: bytes, agg_id: int, seed: bytes) -> Vec:
        dst, n = self.dst(USAGE_PROOF_SHARE, ctx), self.flp.PROOF_LEN * self.PROOFS
        return self.xof.expand_into_vec(self.field, seed, dst, bytes([self.PROOFS, agg_id]), n)

    def prove_rands(self, ctx: bytes, seed: bytes) -> Vec:
        dst, n = self.dst(USAGE_PROVE_RANDOMNESS, ctx), self.flp.PROVE_RAND_LEN * self.PROOFS
        return self.xof.expand_into_vec(self.field, seed, dst, bytes([self.PROOFS]), n)

    def query_rands(self, verify_key: bytes, ctx: bytes, nonce: bytes) -> Vec:
        dst, n = self.dst(USAGE_QUERY_RANDOMNESS, ctx), self.flp.QUERY_RAND_LEN * self.PROOFS
        return self.xof.expand_into_vec(self.field, verify_key, dst, bytes([self.PROOFS]) + nonce, n)

    def joint_rand_part(self, ctx: bytes, agg_id: int, blind: bytes, meas_share: Vec, nonce: bytes) -> bytes:
        binder = bytes([agg_id]) + nonce + self.field.encode_vec(meas_share)
        return self.xof.derive_seed(blind, self.dst(USAGE_JOINT_RAND_PART, ctx), binder)

    def joint_rand_seed(self, ctx: bytes, parts: Sequence[bytes]) -> bytes:
        return self.xof.derive_seed(bytes(SEED_SIZE), self.dst(USAGE_JOINT_RAND_SEED, ctx), b"".join(parts))

    def joint_rands(self, ctx: bytes, seed: bytes) -> Vec:
        dst, n = self.dst(USAGE_JOINT_RANDOMNESS, ctx), self.flp.JOINT_RAND_LEN * self.PROOFS
        return self.xof.expand_into_vec(self.field, seed, dst, bytes([self.PROOFS]), n)

    # -- sharding (draft Section 7.2.1) ------------------------------------------------------------------
    def shard(
        self, ctx: bytes, measurement: Any, nonce: bytes, rand: bytes
    ) -> tuple[list[bytes] | None, list[InputShare]]:
        """(public share = joint-rand parts or None, one input share per aggregator)."""
        if len(nonce) != NONCE_SIZE or len(rand) != self.RAND_SIZE:
            raise VdafParameterError(
                f"got nonce {len(nonce)} B, rand {len(rand)} B; want {NONCE_SIZE} B and {self.RAND_SIZE} B"
            )
        f, s = self.field, self.SHARES
        seeds = [rand[i : i + SEED_SIZE] for i in range(0, self.RAND_SIZE, SEED_SIZE)]
        meas = self.flp.valid.encode(measurement)
        helper_blinds: list[bytes | None] = [None] * (s - 1)
        leader_blind: bytes | None = None
        if self.uses_jr:
            helper_seeds, helper_blinds = seeds[0 : 2 * (s - 1) : 2], list(seeds[1 : 2 * (s - 1) : 2])
            leader_blind, prove_seed = seeds[2 * (s - 1)], seeds[2 * (s - 1) + 1]
        else:
            helper_seeds, prove_seed = seeds[: s - 1], seeds[s - 1]
        leader_meas = meas
        parts: list[bytes] = []
        for j, seed in enumerate(helper_seeds):
            helper_meas = self.helper_meas_share(ctx, j + 1, seed)
            leader_meas = f.sub(leader_meas, helper_meas)
            if self.uses_jr:
                parts.append(self.joint_rand_part(ctx, j + 1, helper_blinds[j] or b"", helper_meas, nonce))
        joint: Vec = f.zeros(0)
        if self.uses_jr:
            parts.insert(0, self.joint_rand_part(ctx, 0, leader_blind or b"", leader_meas, nonce))
            joint = self.joint_rands(ctx, self.joint_rand_seed(ctx, parts))
        prove_rands = self.prove_rands(ctx, prove_seed)
        leader_proofs = self.flp.prove_many(meas, prove_rands, joint, self.PROOFS)
        for j, seed in enumerate(helper_seeds):
            leader_proofs = f.sub(leader_proofs, self.helper_proofs_share(ctx, j + 1, seed))
        shares: list[InputShare] = [LeaderShare(leader_meas, leader_proofs, leader_blind)]
        shares += [HelperShare(seed, blind) for seed, blind in zip(helper_seeds, helper_blinds)]
        return (parts if self.uses_jr else None), shares

    # -- verification (draft Section 7.2.2) -------------------------------------------------------------
    def expand(self, ctx: bytes, agg_id: int, share: InputShare) -> tuple[Vec, Vec, bytes | None]:
        if isinstance(share, HelperShare) and agg_id > 0:
            return (
                self.helper_meas_share(ctx, agg_id, share.seed),
                self.helper_proofs_share(ctx, agg_id, share.seed),
                share.blind,
            )
        if isinstance(share, LeaderShare) and agg_id == 0:
            return share.meas_share, share.proofs_share, share.blind
        raise VdafVerifyError("verify_init", f"got a {type(share).__name__} for aggregator {agg_id}")

    def verify_init(
        self,
        verify_key: bytes,
        ctx: bytes,
        agg_id: int,
        nonce: bytes,
        public_share: list[bytes] | None,
        share: InputShare,
    ) -> tuple[VerifyState, VerifierShare]:
        """Query this aggregator's shares; with joint rand, recompute its part and the corrected seed."""
        if len(verify_key) != SEED_SIZE or len(nonce) != NONCE_SIZE:
            raise VdafVerifyError(
                "verify_init", f"got key {len(verify_key)} B, nonce {len(nonce)} B; want 32, 16"
            )
        meas, proofs, blind = self.expand(ctx, agg_id, share)
        out_share = self.flp.valid.truncate(meas)
        joint, part, corrected = self.field.zeros(0), None, None
        if self.uses_jr:
            if blind is None or public_share is None or len(public_share) != self.SHARES:
                raise VdafVerifyError("verify_init", "got no blind or joint-rand parts; want both")
            part = self.joint_rand_part(ctx, agg_id, blind, meas, nonce)
            parts = list(public_share)
            parts[agg_id] = part
            corrected = self.joint_rand_seed(ctx, parts)
            joint = self.joint_rands(ctx, corrected)
        qrands = self.query_rands(verify_key, ctx, nonce)
        verifiers = self.flp.query_many(meas, proofs, qrands, joint, self.SHARES, self.PROOFS)
        return VerifyState(out_share, corrected), VerifierShare(verifiers, part)

    def verifier_shares_to_message(self, ctx: bytes, shares: Sequence[VerifierShare]) -> bytes | None:
        """Sum the verifier shares and decide every proof; the message is the joint-rand seed (or None)."""
        f = self.field
        if len(shares) != self.SHARES:
            raise VdafVerifyError(
                "verifier_shares_to_message", f"got {len(shares)} shares; want {self.SHARES}"
            )
        total = shares[0].verifiers
        for sh in shares[1:]:
            total = f.add(total, sh.verifiers)
        bad = self.flp.first_rejected(total, self.PROOFS)
        if bad is not None:
            raise VdafVerifyError(
                "verifier_shares_to_message", f"proof {bad} rejected; want every proof valid"
            )
        if not self.uses_jr:
            return None
        return self.joint_rand_seed(ctx, [sh.joint_rand_part or b"" for sh in shares])

    def verify_next(self, state: VerifyState, message: bytes | None) -> Vec:
        """The output share, once the client's joint-rand seed matches the aggregators' one."""
        if message != state.joint_rand_seed:
            raise VdafVerifyError("verify_next", "got a joint-randomness seed unlike the corrected one")
        return state.out_share

    # -- aggregation and unsharding ------------------------------------------------------------------------
    def aggregate(self, out_shares: Sequence[Vec]) -> Vec:
        if not out_shares:
            return self.field.zeros(self.flp.OUTPUT_LEN)
        return self.field.sum(np.stack(list(out_shares)), axis=0)

    def unshard(self, agg_shares: Sequence[Vec], num_measurements: int) -> Any:
        return self.flp.valid.decode(self.aggregate(agg_shares), num_measurements)

    # -- wire format (draft Section 7.2.7) -------------------------------------------------------------------
    def encode_public_share(self, public_share: list[bytes] | None) -> bytes:
        return b"".join(public_share) if public_share else b""

    def decode_public_share(self, data: bytes) -> list[bytes] | None:
        want = SEED_SIZE * self.SHARES if self.uses_jr else 0
        if len(data) != want:
            raise VdafDecodeError(f"got a {len(data)}-byte public share; want {want}")
        return [data[i : i + SEED_SIZE] for i in range(0, want, SEED_SIZE)] if self.uses_jr else None

    def encode_input_share(self, share: InputShare) -> bytes:
        blind = share.blind or b""
        if isinstance(share, LeaderShare):
            return self.field.encode_vec(share.meas_share) + self.field.encode_vec(share.proofs_share) + blind
        return share.seed + blind

    def decode_input_share(self, agg_id: int, data: bytes) -> InputShare:
        blind_len = SEED_SIZE if self.uses_jr else 0
        if agg_id > 0:
            if len(data) != SEED_SIZE + blind_len:
                raise VdafDecodeError(f"got a {len(data)}-byte helper share; want {SEED_SIZE + blind_len}")
            return HelperShare(data[:SEED_SIZE], data[SEED_SIZE:] if blind_len else None)
        es = self.field.ENCODED_SIZE
        n_meas, n_proof = self.flp.MEAS_LEN, self.flp.PROOF_LEN * self.PROOFS
        want = es * (n_meas + n_proof) + blind_len
        if len(data) != want:
            raise VdafDecodeError(f"got a {len(data)}-byte leader share; want {want}")
        meas = self.field.decode_vec(data[: es * n_meas])
        proofs = self.field.decode_vec(data[es * n_meas : es * (n_meas + n_proof)])
        return LeaderShare(meas, proofs, data[es * (n_meas + n_proof) :] if blind_len else None)

    def encode_verifier_share(self, share: VerifierShare) -> bytes:
        return self.field.encode_vec(share.verifiers) + (share.joint_rand_part or b"")

    def decode_verifier_share(self, data: bytes) -> VerifierShare:
        n = self.flp.VERIFIER_LEN * self.PROOFS * self.field.ENCODED_SIZE
        want = n + (SEED_SIZE if self.uses_jr else 0)
        if len(data) != want:
            raise VdafDecodeError(f"got a {len(data)}-byte verifier share; want {want}")
        return VerifierShare(self.field.decode_vec(data[:n]), data[n:] if self.uses_jr else None)

    def encode_agg_share(self, agg_share: Vec) -> bytes:
        return self.field.encode_vec(agg_share)


def prio3_count(shares: int = 2) -> Prio3:
    """Prio3Count: Field64, 1 proof, ID 1."""
    return Prio3(Count(Field64), 0x00000001, 1, shares)


def prio3_sum(max_measurement: int, shares: int = 2) -> Prio3:
    """Prio3Sum: Field64, 1 proof, ID 2."""
    return Prio3(Sum(Field64, max_measurement), 0x00000002, 1, shares)


def prio3_sum_vec(length: int, max_measurement: int, chunk_length: int, shares: int = 2) -> Prio3:
    """Prio3SumVec: Field128, 1 proof, ID 3."""
    return Prio3(SumVec(Field128, length, max_measurement, chunk_length), 0x00000003, 1, shares)


def prio3_sum_vec_multiproof(
    length: int,
    max_measurement: int,
    chunk_length: int,
    proofs: int = 3,
    shares: int = 2,
    algo_id: int = 0xFFFFFFFF,
) -> Prio3:
    """SumVec on Field64 with ``proofs`` >= 3 proofs (the draft's test instance, a private-use ID)."""
    return Prio3(SumVec(Field64, length, max_measurement, chunk_length), algo_id, proofs, shares)
