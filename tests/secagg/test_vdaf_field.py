"""secagg.vdaf.field and .xof: field axioms (Hypothesis), the NTT against the definition, the wire
format, and the draft's XofTurboShake128 vector."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.vdaf.errors import VdafDecodeError, VdafParameterError
from secagg.vdaf.field import Field, Field64, Field128
from secagg.vdaf.xof import XofTurboShake128, format_dst

VECTORS = Path(__file__).parent / "vdaf_vectors"
FIELDS = [Field64, Field128]


def _elems(field: type[Field], n: int = 6) -> st.SearchStrategy[list[int]]:
    p = field.MODULUS
    edge = st.sampled_from([0, 1, 2, p - 1, p - 2, 2**32, 2**32 - 1, (p - 1) // 2])
    return st.lists(st.one_of(st.integers(0, p - 1), edge), min_size=n, max_size=n)


@pytest.mark.parametrize("field", FIELDS)
def test_moduli_are_the_drafts(field: type[Field]) -> None:
    want = {Field64: 2**32 * 4294967295 + 1, Field128: 2**66 * 4611686018427387897 + 1}[field]
    assert field.MODULUS == want
    assert pow(field.GEN, field.GEN_ORDER, field.MODULUS) == 1
    assert pow(field.GEN, field.GEN_ORDER // 2, field.MODULUS) == field.MODULUS - 1  # order exactly 2^k


@pytest.mark.parametrize("field", FIELDS)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_field_axioms(field: type[Field], data: st.DataObject) -> None:
    p = field.MODULUS
    xs, ys, zs = (data.draw(_elems(field)) for _ in range(3))
    a, b, c = field.arr(xs), field.arr(ys), field.arr(zs)
    assert field.to_ints(field.add(a, b)) == [(x + y) % p for x, y in zip(xs, ys)]
    assert field.to_ints(field.sub(a, b)) == [(x - y) % p for x, y in zip(xs, ys)]
    assert field.to_ints(field.mul(a, b)) == [x * y % p for x, y in zip(xs, ys)]
    lhs = field.mul(a, field.add(b, c))
    rhs = field.add(field.mul(a, b), field.mul(a, c))
    assert field.to_ints(lhs) == field.to_ints(rhs)
    assert field.to_ints(field.mul(field.mul(a, b), c)) == field.to_ints(field.mul(a, field.mul(b, c)))
    assert field.to_ints(field.add(a, field.neg(a))) == [0] * len(xs)
    assert field.to_ints(field.sum(a)) == [sum(xs) % p]
    nz = [x for x in xs if x]
    if nz:
        v = field.arr(nz)
        assert field.to_ints(field.mul(v, field.inv(v))) == [1] * len(nz)


@pytest.mark.parametrize("field", FIELDS)
def test_inverting_zero_is_refused(field: type[Field]) -> None:
    with pytest.raises(VdafParameterError, match="zero"):
        field.inv(field.arr([3, 0]))


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("n", [1, 2, 8, 32])
def test_ntt_matches_the_definition_and_inverts(field: type[Field], n: int) -> None:
    p = field.MODULUS
    coeffs = [(7**i + 3 * i) % p for i in range(n)]
    w = field.nth_root(n)
    want = [sum(c * pow(w, i * j, p) for j, c in enumerate(coeffs)) % p for i in range(n)]
    vals = field.ntt(field.arr(coeffs), n)
    assert field.to_ints(vals) == want
    assert field.to_ints(field.inv_ntt(vals, n)) == coeffs
    s = field.nth_root(2 * n)
    shifted = [sum(c * pow(s * pow(w, i, p), j, p) for j, c in enumerate(coeffs)) % p for i in range(n)]
    assert field.to_ints(field.ntt(field.arr(coeffs), n, set_s=True)) == shifted


def test_ntt_refuses_a_non_power_of_two() -> None:
    with pytest.raises(VdafParameterError, match="power of two"):
        Field64.nth_root(12)


@pytest.mark.parametrize("field", FIELDS)
def test_wire_format_round_trip_and_overflow(field: type[Field]) -> None:
    xs = [0, 1, field.MODULUS - 1, 12345]
    enc = field.encode_vec(field.arr(xs))
    assert len(enc) == 4 * field.ENCODED_SIZE
    assert enc[: field.ENCODED_SIZE] == bytes(field.ENCODED_SIZE)
    assert enc[field.ENCODED_SIZE] == 1  # little-endian
    assert field.to_ints(field.decode_vec(enc)) == xs
    with pytest.raises(VdafDecodeError, match=">= p"):
        field.decode_vec(field.MODULUS.to_bytes(field.ENCODED_SIZE, "little"))
    with pytest.raises(VdafDecodeError, match="multiple"):
        field.decode_vec(enc[:-1])


def test_xof_turboshake128_matches_the_drafts_vector() -> None:
    v = json.loads((VECTORS / "XofTurboShake128.json").read_text())
    seed, dst, binder = (bytes.fromhex(v[k]) for k in ("seed", "dst", "binder"))
    assert XofTurboShake128.derive_seed(seed, dst, binder).hex() == v["derived_seed"]
    vec = XofTurboShake128.expand_into_vec(Field128, seed, dst, binder, v["length"])
    assert Field128.encode_vec(vec).hex() == v["expanded_vec_field128"]
    other = XofTurboShake128.derive_seed(seed, dst + b"x", binder)
    assert other.hex() != v["derived_seed"]  # the tag separates domains


def test_xof_stream_continues_across_calls() -> None:
    a = XofTurboShake128(bytes(32), b"t", b"b")
    b = XofTurboShake128(bytes(32), b"t", b"b")
    assert a.next(5) + a.next(11) == b.next(16)
    v = XofTurboShake128(bytes(32), b"t", b"b").next_vec(Field64, 1000)
    assert v.dtype == np.uint64 and np.all(v < np.uint64(Field64.MODULUS))


def test_format_dst_is_big_endian_and_bounded() -> None:
    assert format_dst(0, 0x01020304, 0x0506) == bytes([18, 0, 1, 2, 3, 4, 5, 6])
    with pytest.raises(VdafParameterError):
        format_dst(0, 2**32, 1)
