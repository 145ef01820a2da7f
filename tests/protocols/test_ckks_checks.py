"""The key holder's range checks (protocols/ckks/checks.py): who is named, and honest values pass."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.ckks import ByzantineInputError, CKKSParams
from protocols.ckks.checks import (
    blinded_culprits,
    check_aggregate,
    check_clip_norm,
    decryption_error_bound,
    pair_culprits,
    sq_norm_culprits,
)
from protocols.paillier_mean import PaillierParams, check_packed_sums, check_ring_sums, pack

P = CKKSParams()


@st.composite
def byzantine_pairs(draw: st.DrawFn) -> tuple[np.ndarray, set[int], int]:
    """A bad-pair matrix in which every bad pair holds a Byzantine client (at most f of them)."""
    n = draw(st.integers(3, 12))
    f = draw(st.integers(0, (n - 1) // 2))
    byz = set(draw(st.lists(st.integers(0, n - 1), max_size=f, unique=True)))
    bad = np.zeros((n, n), dtype=bool)
    for i in byz:
        for j in range(n):
            if j != i and draw(st.booleans()):
                bad[i, j] = bad[j, i] = True
    return bad, byz, f


@given(byzantine_pairs())
def test_pair_culprits_names_only_byzantine_clients_and_accounts_for_every_bad_pair(case: tuple) -> None:
    bad, byz, f = case
    culprits, ambiguous = pair_culprits(bad, f)
    assert set(culprits) <= byz  # sound: never an honest client
    left = bad.copy()
    left[culprits, :] = False
    left[:, culprits] = False
    assert set(np.flatnonzero(left.any(axis=1)).tolist()) == set(ambiguous)  # the rest is reported


@given(st.integers(4, 12), st.data())
def test_pair_culprits_names_every_client_whose_pairs_with_the_honest_are_all_bad(
    n: int, data: st.DataObject
) -> None:
    f = data.draw(st.integers(0, (n - 1) // 2))  # honest clients (>= n - f) outnumber f
    byz = set(data.draw(st.lists(st.integers(0, n - 1), max_size=f, unique=True)))
    bad = np.zeros((n, n), dtype=bool)
    for i in byz:
        bad[i, :] = bad[:, i] = True  # e.g. a ciphertext under a foreign key
    assert pair_culprits(bad, f) == (sorted(byz), [])


def test_a_single_bad_pair_cannot_be_attributed() -> None:
    bad = np.zeros((5, 5), dtype=bool)
    bad[1, 3] = bad[3, 1] = True
    assert pair_culprits(bad, 1) == ([], [1, 3])


def test_sq_norm_window_at_its_edges() -> None:
    d = 100
    top = d * P.value_range**2
    tol = decryption_error_bound(P, top)
    sq = np.array([0.0, -tol * 0.9, top + tol * 0.9, -tol * 1.1, top + tol * 1.1, np.nan])
    assert sq_norm_culprits(sq, P, d) == [3, 4, 5]


def test_blinded_window_checks_every_slot() -> None:
    y = np.zeros((3, 2 * P.slots))
    y[1, -1] = 600.0  # a padding slot: honest padding blinds to |b_j| <= 256 B
    y[2, 5] = -511.0
    assert blinded_culprits(y, P) == [1]


def test_aggregate_and_clip_norm_checks() -> None:
    flat = np.full(P.slots, 0.5)
    check_aggregate(flat, P, 0.5, "t")
    with pytest.raises(ByzantineInputError, match=r"slot 3 is 0\.6") as e:
        check_aggregate(np.r_[flat[:3], 0.6, flat[4:]], P, 0.5, "t")
    assert e.value.culprits == ()
    v = np.zeros(P.slots)
    v[:4] = 0.5  # norm exactly 1
    check_clip_norm(v, P, 1.0)
    v[0] = 0.6
    with pytest.raises(ByzantineInputError, match="L2 norm"):
        check_clip_norm(v, P, 1.0)


def test_paillier_sum_checks_accept_the_honest_extremes_and_refuse_beyond() -> None:
    p, n, d = PaillierParams(), 5, 40
    w, s = p.slot_bits(n), p.per_plaintext(n)
    top = n * ((1 << p.ring_bits) - 1)
    check_packed_sums(pack(np.full(d, top, dtype=object), w, s), p, n, d)
    with pytest.raises(ByzantineInputError, match="slot above"):
        check_packed_sums(pack(np.full(d, top + 1, dtype=object), w, s), p, n, d)
    with pytest.raises(ByzantineInputError, match="bits above"):
        check_packed_sums([1 << (w * d)], p, n, d)
    enc = p.encoding()
    bound = n * enc.max_abs(enc.scale_bits(n))
    ring = np.array([bound, (1 << p.ring_bits) - bound], dtype=np.uint64)  # +bound and -bound
    check_ring_sums(ring, p, n)
    with pytest.raises(ByzantineInputError, match="coordinate 0"):
        check_ring_sums(ring + np.uint64(1) * np.array([1, 0], dtype=np.uint64), p, n)
