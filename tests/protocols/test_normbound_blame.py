"""Identifiable abort in "secagg_normbound": cheating clients are named, excluded, and the round completes
with the exact sum of the honest clients' encoded updates; honest clients are never named."""

from __future__ import annotations

from typing import Any

import nacl.utils
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import normbound_blame as nb
from protocols.base import RoundResult
from protocols.secagg_normbound import SecAggNormBound
from secagg import masking, prg
from secagg.errors import TooFewSurvivors
from secagg.normbound import CommitmentKey, LinkCheckFailed
from secagg.normbound.group import add

FRAC = 6
SCALE = 2**FRAC


def _updates(n: int, d: int, seed: int) -> np.ndarray:
    """Integer updates k (|k_ij| <= 20, so ||k / 2^6|| <= 1): their encoding is exactly k."""
    return np.random.default_rng(seed).integers(-20, 21, size=(n, d)).astype(np.int64)


def _run(k: np.ndarray, **faults: Any) -> tuple[SecAggNormBound, RoundResult]:
    proto = SecAggNormBound(bound=1.0, frac_bits=FRAC)
    res = proto.run_round(torch.tensor(k / SCALE, dtype=torch.float32), **faults)
    return proto, res


def _exact_sum(res: RoundResult) -> np.ndarray:
    total = res.leakage.learns["server"]["sum_of_survivors"]
    return np.asarray(total * SCALE, dtype=np.float64)


def test_a_client_masking_another_vector_is_named_excluded_and_the_round_completes() -> None:
    k = _updates(5, 8, seed=1)
    proto, res = _run(k, mask_instead={2: k[2] + np.eye(1, 8, 0, dtype=np.int64)[0] * 3})
    assert res.accepted == [0, 1, 3, 4]
    assert sorted(proto.last_blamed) == [2]
    assert proto.last_blamed[2].startswith("per-client check")
    server = res.leakage.learns["server"]
    assert server["blamed"] == proto.last_blamed
    np.testing.assert_array_equal(_exact_sum(res), k[[0, 1, 3, 4]].sum(0))
    # only the honest clients' seeds with the cheater were revealed; no dispute, no pair commitments
    assert server["blame"]["revealed_pair_seeds"] == [(0, 2), (1, 2), (3, 2), (4, 2)]
    assert server["blame"]["disputed_pairs"] == []
    meter = res.meter
    assert meter.total("client", "blame_commit").bytes_sent == 5 * (8 * (8 + 8) + 32)  # D = 8 + 8 limbs
    assert meter.total("client", "blame_prove").bytes_sent == 4 * 32
    assert "blame_pairs" not in meter.phases()


def test_a_client_that_commits_to_a_wrong_mask_is_named_through_the_dispute() -> None:
    """The cheater masks another vector and shifts its pad commitment so that its own per-client check
    passes; the final link fails, the pair commitments do not cancel with one honest partner, both
    reveal the pair seed, and the seed convicts the cheater -- not the partner."""
    k = _updates(5, 8, seed=2)
    proto, res = _run(k, mask_instead={3: k[3] - 5}, lie_pads={3})
    assert res.accepted == [0, 1, 2, 4]
    assert list(proto.last_blamed) == [3]
    assert proto.last_blamed[3].startswith("dispute with client 0")
    blame = res.leakage.learns["server"]["blame"]
    assert blame["disputed_pairs"] == [(0, 3)]
    np.testing.assert_array_equal(_exact_sum(res), k[[0, 1, 2, 4]].sum(0))
    assert res.meter.total("client", "blame_pairs").bytes_sent == 5 * 4 * 32


def test_two_cheaters_of_both_kinds_are_named_and_no_honest_client() -> None:
    k = _updates(5, 8, seed=3)
    # client 0 masks another vector and hides it behind false pads; client 4 masks honestly but lies
    # about its pads once the blame steps run
    proto, res = _run(k, mask_instead={0: 2 * k[0]}, lie_pads={0, 4})
    assert sorted(proto.last_blamed) == [0, 4]
    assert proto.last_blamed[4].startswith("per-client check")
    assert res.accepted == [1, 2, 3]
    np.testing.assert_array_equal(_exact_sum(res), k[[1, 2, 3]].sum(0))


def test_two_cheaters_masking_other_vectors() -> None:
    k = _updates(5, 8, seed=4)
    proto, res = _run(k, mask_instead={1: k[1] + 1, 3: -k[3]})
    assert sorted(proto.last_blamed) == [1, 3]
    np.testing.assert_array_equal(_exact_sum(res), k[[0, 2, 4]].sum(0))


def test_an_honest_round_costs_nothing_extra() -> None:
    k = _updates(5, 8, seed=5)
    proto, res = _run(k, lie_pads={1})  # a would-be liar: the link check passes, no blame step runs
    assert res.accepted == [0, 1, 2, 3, 4]
    assert proto.last_blamed == {}
    assert not [p for p in res.meter.phases() if p.startswith("blame")]
    assert res.leakage.learns["server"]["blame"] == {}
    np.testing.assert_array_equal(_exact_sum(res), k.sum(0))


def test_without_blame_the_round_aborts() -> None:
    k = _updates(5, 8, seed=6)
    proto = SecAggNormBound(bound=1.0, frac_bits=FRAC, blame=False)
    with pytest.raises(LinkCheckFailed):
        proto.run_round(torch.tensor(k / SCALE, dtype=torch.float32), mask_instead={0: k[0] + 1})


def test_too_many_cheaters_refuse_before_any_seed_is_revealed() -> None:
    """Three of five named leaves two, below the survivor floor (3): nothing is revealed."""
    k = _updates(5, 8, seed=7)
    proto = SecAggNormBound(bound=1.0, frac_bits=FRAC)
    with pytest.raises(TooFewSurvivors, match="min_survivors=3"):
        proto.run_round(
            torch.tensor(k / SCALE, dtype=torch.float32), mask_instead={i: k[i] + 1 for i in (0, 1, 2)}
        )


def test_a_dispute_over_different_seeds_names_nobody(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cheater that also lies about the pair seed cannot be told from its partner: the round aborts
    with the pair named as disputed, and no client is blamed."""
    honest_reveal = nb.BlameClient.reveal

    def lying_reveal(self: nb.BlameClient, partners: list[int]) -> bytes:
        out = honest_reveal(self, partners)
        return nacl.utils.random(len(out)) if self.lie is not None else out

    monkeypatch.setattr(nb.BlameClient, "reveal", lying_reveal)
    k = _updates(5, 8, seed=8)
    proto = SecAggNormBound(bound=1.0, frac_bits=FRAC)
    with pytest.raises(nb.BlameUnresolved) as e:
        proto.run_round(
            torch.tensor(k / SCALE, dtype=torch.float32), mask_instead={2: k[2] + 1}, lie_pads={2}
        )
    assert e.value.pairs == [(0, 2)]
    assert "named so far: []" in str(e.value)


def test_a_cheater_with_a_partner_that_dropped_before_masking() -> None:
    """Client 3 drops before sending its masked input (rng seed 4): the survivors' pads with it come
    from its reconstructed mask key, in the per-client checks and in the exact sum."""
    k = _updates(6, 8, seed=9)
    proto = SecAggNormBound(bound=1.0, frac_bits=FRAC, dropout=0.2)
    res = proto.run_round(
        torch.tensor(k / SCALE, dtype=torch.float32),
        rng=np.random.default_rng(4),
        mask_instead={1: k[1] * 3},
    )
    assert res.leakage.learns["server"]["dropped"] == [3]
    assert list(proto.last_blamed) == [1]
    assert res.accepted == [0, 2, 4, 5]
    np.testing.assert_array_equal(_exact_sum(res), k[[0, 2, 4, 5]].sum(0))


@settings(max_examples=25, deadline=None)
@given(
    bits=st.integers(16, 62),
    x=st.lists(st.integers(-(2**10), 2**10), min_size=2, max_size=2),
    r=st.integers(0, 2**252),
    u=st.integers(0, 3),
    data=st.data(),
)
def test_an_honest_clients_blame_message_satisfies_its_check(
    bits: int, x: list[int], r: int, u: int, data: st.DataObject
) -> None:
    """P(y_u - p_u + 2^bits e_u) = C_u + Q_u for any ring, input, seeds and neighbours, and a false pad
    commitment breaks it."""
    d, w = 2, min(32, bits - 5)
    key = CommitmentKey(d=d)
    lay = nb.RingLayout(key, d, bits, w, session=bytes(16))
    limbs = [(r >> (w * j)) & ((1 << w) - 1) for j in range(-(-253 // w))]
    vec = np.array([*x, *limbs], dtype=object)
    nbrs = data.draw(st.lists(st.integers(0, 3).filter(lambda v: v != u), unique=True, max_size=3))
    seeds = {v: nacl.utils.random(32) for v in nbrs}
    b = nacl.utils.random(32)
    client = nb.BlameClient(lay, u, vec, b, seeds)
    # the masked input, as secagg.client computes it
    acc = masking.to_words(np.array([int(t) % 2**bits for t in vec], dtype=np.uint64), bits)
    pads = [(s, masking.pair_domain(lay.session, u, v), masking.pair_sign(u, v)) for v, s in seeds.items()]
    prg.add_masks(acc, [(b, masking.self_domain(lay.session, u), 1), *pads], bits=bits)
    y = masking.reduce(acc, bits).astype(object)
    msg = client.commit_message()
    D = len(vec)
    e = np.frombuffer(msg[: 8 * D], dtype="<i8").astype(object)
    assert max(abs(int(t)) for t in e) < (len(nbrs) + 2) * 2**nb.LAMBDA
    C = key.commit(np.array(x, dtype=np.int64), r)
    lhs = lay.commit(y - lay.self_pad(b, u, D) + e * 2**bits)
    assert lhs == add(C, msg[8 * D :])
    liar = nb.BlameClient(lay, u, vec, b, seeds, lie=key.commit(np.array([1, 0]), 0))
    assert lhs != add(C, liar.commit_message()[8 * D :])


def test_the_active_variant_names_the_cheater_too() -> None:
    k = _updates(5, 8, seed=10)
    proto = SecAggNormBound(bound=1.0, frac_bits=FRAC, active=True)
    res = proto.run_round(torch.tensor(k / SCALE, dtype=torch.float32), mask_instead={4: k[4] + 7})
    assert list(proto.last_blamed) == [4]
    assert res.accepted == [0, 1, 2, 3]
    np.testing.assert_array_equal(_exact_sum(res), k[:4].sum(0))
