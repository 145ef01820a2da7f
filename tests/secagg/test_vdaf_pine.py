"""PINE on the draft-20 FLP: the parameter cases of PINE's reference, honest clients accepted (norm
exactly B included), and cheating clients, playing against the real aggregators, rejected: a squared
norm of B_enc^2 + 1, a vector whose squared norm wraps the field, a forged public share."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from secagg.vdaf.errors import VdafMeasurementError, VdafParameterError, VdafVerifyError
from secagg.vdaf.field import Field64, Field128, Vec
from secagg.vdaf.pine import (
    PineParams,
    decode_fixed_point,
    encode_fixed_point,
    forge_norm_claim,
    forge_wr_claim,
    signed_dot,
    wr_bytes,
    wr_vectors,
)
from secagg.vdaf.pine_vdaf import Pine

KEY, CTX = bytes(range(32)), b"fedsec pine test"


def _run(
    pine: Pine, measurement: Any, tamper: Callable[[list[bytes]], list[bytes]] | None = None
) -> list[Vec]:
    """Shard, send through the wire format, verify on both aggregators; raises on rejection."""
    nonce = os.urandom(16)
    public, shares = pine.shard(CTX, measurement, nonce, os.urandom(pine.RAND_SIZE))
    if tamper is not None:
        public = tamper(list(public))
    encoded = [pine.encode_input_share(s) for s in shares]
    inits = [
        pine.verify_init(KEY, CTX, j, nonce, public, pine.decode_input_share(j, e))
        for j, e in enumerate(encoded)
    ]
    wire = [pine.decode_verifier_share(pine.encode_verifier_share(vs)) for _, vs in inits]
    msg = pine.verifier_shares_to_message(CTX, wire)
    return [pine.verify_next(state, msg) for state, _ in inits]


def test_parameter_cases_of_the_reference() -> None:
    a = PineParams(dimension=10, l2_norm_bound=1.0, num_frac_bits=15)
    assert (a.bound_enc**2, a.norm_bits, a.wr_bound, a.wr_bits) == (2**30, 31, 524_288, 20)
    b = PineParams(dimension=10, l2_norm_bound=1337, num_frac_bits=0)
    assert (b.bound_enc**2, b.norm_bits, b.wr_bound, b.wr_bits) == (1_787_569, 21, 16_384, 15)
    with pytest.raises(VdafParameterError, match="3 B_enc"):
        PineParams(dimension=10, l2_norm_bound=1.0, num_frac_bits=32)
    PineParams(dimension=10, l2_norm_bound=1.0, num_frac_bits=24)
    PineParams(dimension=10, l2_norm_bound=1.0, num_frac_bits=32, field=Field128)
    x = encode_fixed_point(a, [0.1] + [0.0] * 9)
    assert decode_fixed_point(a, Field64.to_ints(Field64.arr(x)))[0] == 0.100006103515625
    assert (
        decode_fixed_point(a, Field64.to_ints(Field64.arr(encode_fixed_point(a, [-0.5] + [0.0] * 9))))[0]
        == -0.5
    )
    assert a.bit_checked_len == 2 * 31 + 21 * 100  # 2,162 as in the notes at d = 61,706
    with pytest.raises(VdafParameterError, match=">= 3 proofs"):
        Pine(a, proofs=2)


def test_wraparound_vectors_have_the_right_law() -> None:
    z = wr_vectors(os.urandom(100 * 250), 100, 1000)
    assert set(np.unique(z)) <= {-1.0, 0.0, 1.0}
    share = [np.mean(z == v) for v in (-1.0, 0.0, 1.0)]
    assert abs(share[0] - 0.25) < 0.01 and abs(share[1] - 0.5) < 0.01 and abs(share[2] - 0.25) < 0.01


@pytest.mark.parametrize("field", [Field64, Field128])
@pytest.mark.parametrize(("checks", "dim"), [(3, 1), (7, 13), (9, 401)])
def test_signed_dot_on_packed_bytes_equals_the_dot_with_z(
    field: Any, checks: int, dim: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("secagg.vdaf.pine._Z_BLOCK", 400)  # several row blocks (4 rows each at d = 401)
    raw = os.urandom(checks * -(-dim // 4))
    x = field.arr([int.from_bytes(os.urandom(16), "little") % field.MODULUS for _ in range(dim)])
    z = wr_vectors(raw, checks, dim)
    want = [sum(int(a) * v for a, v in zip(row, field.to_ints(x), strict=True)) % field.MODULUS for row in z]
    assert field.to_ints(signed_dot(field, wr_bytes(raw, checks, dim), x)) == want
    assert field.to_ints(signed_dot(field, z, x)) == want


@pytest.fixture(scope="module")
def pine() -> Pine:
    return Pine(PineParams(dimension=24, l2_norm_bound=1.0, num_frac_bits=15))


def test_honest_clients_are_accepted_and_summed(pine: Pine) -> None:
    rng = np.random.default_rng(3)
    vectors = []
    for scale in (0.2, 0.7, 0.999):
        v = rng.normal(size=24)
        vectors.append(v / np.linalg.norm(v) * scale)
    vectors.append(np.eye(24)[5])  # norm exactly B
    vectors.append(-np.eye(24)[7])
    outs = [_run(pine, list(v)) for v in vectors]
    aggs = [pine.aggregate([o[j] for o in outs]) for j in range(2)]
    got = np.array(pine.unshard(aggs, len(vectors)))
    want = np.sum([np.rint(v * 2**15) / 2**15 for v in vectors], axis=0)
    assert np.array_equal(got, want)


def test_the_client_refuses_to_prove_an_oversized_vector(pine: Pine) -> None:
    with pytest.raises(VdafMeasurementError, match="squared norm"):
        pine.shard(CTX, [1.0, 2.0**-15] + [0.0] * 22, bytes(16), bytes(192))


def _lying_norm(pine: Pine, claimed: int | None = None) -> Callable[[Vec], Vec]:
    """The attacker's encoder: claims ``claimed`` (default sum x_i^2 mod p) whatever the true norm."""
    return lambda x: forge_norm_claim(pine.valid, x, claimed)


def test_a_squared_norm_of_b_squared_plus_one_is_rejected(
    pine: Pine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pine.valid, "encode_norm", _lying_norm(pine))
    x = [1.0, 2.0**-15] + [0.0] * 22  # B_enc^2 + 1 exactly
    with pytest.raises(VdafVerifyError, match="proof 0 rejected") as err:  # the range check
        _run(pine, x)
    assert err.value.step == "verifier_shares_to_message"
    # lying about v instead (claiming B^2) breaks the norm equality
    monkeypatch.setattr(pine.valid, "encode_norm", _lying_norm(pine, claimed=pine.params.bound_enc**2))
    with pytest.raises(VdafVerifyError, match="norm proof rejected"):
        _run(pine, x)


def _wrapping_vector(p: int, target: int, dim: int) -> list[int]:
    """Integers with sum x_i^2 = p + target (greedy squares), padded with zeros."""
    rest, out = p + target, []
    while rest:
        a = math.isqrt(rest)
        out.append(a)
        rest -= a * a
    assert len(out) <= dim
    return out + [0] * (dim - len(out))


def test_a_vector_whose_squared_norm_wraps_the_field_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    pine = Pine(PineParams(dimension=16, l2_norm_bound=1337, num_frac_bits=0))
    p = pine.field.MODULUS
    x = _wrapping_vector(p, 5, 16)
    assert sum(a * a for a in x) % p == 5 <= pine.params.bound_enc**2  # the modular norm check is fooled
    monkeypatch.setattr(pine.valid, "encode_norm", _lying_norm(pine))
    real_encode_wr = pine.valid.encode_wr

    # claim every check passed (the bits of the ones that really failed set to zero): only the
    # wraparound checks can catch this client
    monkeypatch.setattr(pine.valid, "encode_wr", lambda x_field, z: forge_wr_claim(pine.valid, x_field, z))
    with pytest.raises(VdafVerifyError, match="proof 0 rejected"):
        _run(pine, [float(a) for a in x])
    # the honest encoder would have refused: too few wraparound checks pass
    with pytest.raises(VdafMeasurementError, match="wraparound"):
        real_encode_wr(pine.field.arr(x), wr_vectors(os.urandom(16 * 4), 16, 16))


def test_a_forged_wraparound_part_is_rejected(pine: Pine) -> None:
    def forge(public: list[bytes]) -> list[bytes]:
        public[1] = bytes(32)  # the helper's wraparound part, as the client claims it
        return public

    with pytest.raises(VdafVerifyError) as err:
        _run(pine, [0.1] * 24, tamper=forge)
    assert err.value.step in {"verifier_shares_to_message", "verify_next"}


def test_flipped_bits_in_the_leader_share_are_rejected(pine: Pine) -> None:
    nonce = os.urandom(16)
    public, shares = pine.shard(CTX, [0.1] * 24, nonce, os.urandom(192))
    leader = pine.encode_input_share(shares[0])
    rng = np.random.default_rng(0)
    for bit in rng.choice(8 * len(leader), size=8, replace=False):
        b = bytearray(leader)
        b[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises((VdafVerifyError, ValueError)):
            share = pine.decode_input_share(0, bytes(b))
            inits = [
                pine.verify_init(KEY, CTX, 0, nonce, public, share),
                pine.verify_init(KEY, CTX, 1, nonce, public, shares[1]),
            ]
            msg = pine.verifier_shares_to_message(CTX, [vs for _, vs in inits])
            pine.verify_next(inits[0][0], msg)


def test_field128_with_one_proof_round_trips() -> None:
    pine = Pine(PineParams(dimension=8, field=Field128, num_wr_checks=10), proofs=1)
    outs = _run(pine, [0.1] * 8)
    assert pine.unshard([pine.aggregate([o]) for o in outs], 1) == [0.100006103515625] * 8
