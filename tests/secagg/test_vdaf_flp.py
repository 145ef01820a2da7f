"""secagg.vdaf.flp: Lagrange-basis helpers against direct evaluation, gadget polynomials, and the FLP's
completeness and soundness on shares (2 and 3 shares: constants scaled by 1/S)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.vdaf.circuits import Count, Sum, SumVec
from secagg.vdaf.field import Field, Field64, Field128
from secagg.vdaf.flp import (
    Flp,
    Mul,
    ParallelSum,
    PolyEval,
    extend_to_power_of_2,
    lagrange_eval,
    powers_of,
)


def _poly_at(field: type[Field], coeffs: list[int], x: int) -> int:
    return sum(c * pow(x, i, field.MODULUS) for i, c in enumerate(coeffs)) % field.MODULUS


@pytest.mark.parametrize("field", [Field64, Field128])
@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32), log_n=st.integers(0, 5))
def test_lagrange_evaluation_matches_the_polynomial(field: type[Field], seed: int, log_n: int) -> None:
    rng = random.Random(seed)
    n, p = 1 << log_n, field.MODULUS
    coeffs = [rng.randrange(p) for _ in range(n)]
    values = field.ntt(field.arr(coeffs), n)
    t = rng.randrange(p)
    assert field.to_ints(lagrange_eval(field, values[None, :], t)) == [_poly_at(field, coeffs, t)]
    node = field.to_ints(field.nth_root_powers(n))[n - 1]  # at a node: the node's value
    assert field.to_ints(lagrange_eval(field, values[None, :], node)) == [field.to_ints(values)[n - 1]]


@pytest.mark.parametrize("field", [Field64, Field128])
def test_extension_recovers_the_missing_value(field: type[Field]) -> None:
    rng = random.Random(1)
    coeffs = [rng.randrange(field.MODULUS) for _ in range(15)]  # degree 14 < 15 = 16 - 1
    values = field.ntt(field.arr(coeffs), 16)
    assert field.to_ints(extend_to_power_of_2(field, values[:15])) == field.to_ints(values)


def test_powers_of_rows() -> None:
    got = Field64.to_ints(powers_of(Field64, Field64.arr([3, 5]), 5).reshape(-1))
    assert got == [1, 3, 9, 27, 81, 1, 5, 25, 125, 625]


@pytest.mark.parametrize(
    "gadget",
    [Mul(), PolyEval([3, 0, -1, 2]), ParallelSum(Mul(), 3), ParallelSum(PolyEval([0, 0, 1]), 2)],
    ids=["mul", "polyeval3", "psum_mul", "psum_square"],
)
def test_gadget_polynomial_is_the_gadget_on_the_wire_polynomials(gadget: object) -> None:
    from secagg.vdaf.flp import Gadget, gadget_poly_len, next_power_of_2

    assert isinstance(gadget, Gadget)
    f, rng, p = Field64, random.Random(2), 8
    wires = f.arr([[rng.randrange(f.MODULUS) for _ in range(p)] for _ in range(gadget.ARITY)])
    g = gadget.eval_poly(f, wires)
    n = next_power_of_2(gadget_poly_len(gadget.DEGREE, p))
    assert g.shape == (n,)
    t = rng.randrange(f.MODULUS)
    at_t = np.concatenate([lagrange_eval(f, wires[j : j + 1], t) for j in range(gadget.ARITY)])
    assert f.to_ints(lagrange_eval(f, g[None, :], t)) == f.to_ints(gadget.eval(f, at_t[:, None]))


def _shares(field: type[Field], v: np.ndarray, s: int, rng: random.Random) -> list[np.ndarray]:
    parts = [field.arr([rng.randrange(field.MODULUS) for _ in range(v.shape[0])]) for _ in range(s - 1)]
    last = v
    for part in parts:
        last = field.sub(last, part)
    return [last, *parts]


def _run_flp(flp: Flp, meas: np.ndarray, shares: int, seed: int) -> bool:
    f, rng = flp.field, random.Random(seed)
    rand = [
        f.arr([rng.randrange(f.MODULUS) for _ in range(k)]) for k in (flp.JOINT_RAND_LEN, flp.PROVE_RAND_LEN)
    ]
    joint, prove = rand
    query = f.arr([rng.randrange(f.MODULUS) for _ in range(flp.QUERY_RAND_LEN)])
    proof = flp.prove(meas, prove, joint)
    assert proof.shape == (flp.PROOF_LEN,)
    total = f.zeros(flp.VERIFIER_LEN)
    for m, pr in zip(_shares(f, meas, shares, rng), _shares(f, proof, shares, rng)):
        total = f.add(total, flp.query(m, pr, query, joint, shares))
    return flp.decide(total)


@pytest.mark.parametrize("shares", [2, 3])
def test_flp_is_complete_and_sound_on_shares(shares: int) -> None:
    cases = [
        (Flp(Count(Field64)), Field64.arr([1]), Field64.arr([2])),
        (Flp(Sum(Field64, 100)), Sum(Field64, 100).encode(77), Field64.arr([1, 1, 1, 0, 0, 0, 3])),
    ]
    vec = SumVec(Field128, 4, 5, 3)
    bad = Field128.add(vec.encode([1, 2, 3, 4]), Field128.arr([1] + [0] * 11))  # a 'bit' equal to 2
    cases.append((Flp(vec), vec.encode([1, 2, 3, 4]), bad))
    for seed, (flp, good, wrong) in enumerate(cases):
        assert _run_flp(flp, good, shares, seed)
        assert not _run_flp(flp, wrong, shares, seed)


def test_a_proof_for_other_wires_fails_the_gadget_test() -> None:
    """A proof made for one measurement does not verify another valid one: the wire polynomials the
    verifier rebuilds disagree with the gadget polynomial at the random point."""
    flp, f, rng = Flp(Count(Field64)), Field64, random.Random(5)
    proof = flp.prove(f.arr([1]), f.arr([rng.randrange(f.MODULUS) for _ in range(2)]), f.zeros(0))
    query = f.arr([rng.randrange(f.MODULUS)])
    verifier = flp.query(f.arr([0]), proof, query, f.zeros(0), 1)
    assert not flp.decide(verifier)
