"""Fixed-point encoding: known answers, the wrap check, round trips, sums."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from secagg import EncodingError
from secagg.encoding import FixedPoint


def test_known_answers_bits8() -> None:
    fp = FixedPoint(bits=8, clip=1.0, frac_bits=4)
    x = np.array([-1.0, -0.5, 0.0, 0.25, 1.0, 7.0, -3.0])
    y = fp.encode(x, n_summands=1, stochastic=False)
    # -16 -> 240, -8 -> 248, 0, 4, 16, clipped 16, clipped -16 -> 240
    assert y.dtype == np.uint64
    assert y.tolist() == [240, 248, 0, 4, 16, 16, 240]
    assert fp.to_signed(np.array([240, 127, 128, 0], dtype=np.uint64)).tolist() == [-16, 127, -128, 0]
    assert fp.decode_sum(np.array([240], dtype=np.uint64), 1).tolist() == [-1.0]


def test_wrap_check_boundary() -> None:
    fp = FixedPoint(bits=8, clip=1.0, frac_bits=4)  # M = 16, 2^7 - 1 = 127
    fp.encode(np.zeros(3), n_summands=7)  # 7 * 16 = 112 <= 127
    with pytest.raises(EncodingError, match="got n \\* ceil"):
        fp.encode(np.zeros(3), n_summands=8)  # 128 > 127


def test_derived_scale_uses_the_ring() -> None:
    fp = FixedPoint(bits=32, clip=1.0)
    f = fp.scale_bits(100)
    assert 100 * fp.max_abs(f) <= 2**31 - 1 < 100 * fp.max_abs(f + 1)
    assert f == 24
    with pytest.raises(EncodingError, match="even at scale 1"):
        FixedPoint(bits=8, clip=100.0).scale_bits(2)


@pytest.mark.parametrize(
    "kwargs",
    [{"bits": 1}, {"bits": 63}, {"bits": 32.0}, {"clip": 0.0}, {"clip": float("inf")}, {"frac_bits": -1}],
)
def test_config_validation(kwargs: dict) -> None:
    with pytest.raises(EncodingError, match="got"):
        FixedPoint(**kwargs)


def test_rejects_nonfinite_and_bad_n() -> None:
    fp = FixedPoint()
    with pytest.raises(EncodingError, match="NaN"):
        fp.encode(np.array([np.nan]), n_summands=1)
    with pytest.raises(EncodingError, match="n_summands"):
        fp.encode(np.zeros(1), n_summands=0)


def test_stochastic_rounding_is_unbiased_and_not_fixed() -> None:
    fp = FixedPoint(bits=16, clip=1.0, frac_bits=2)
    x = np.full(20000, 0.1)  # 0.4 * 4 -> 0 or 1, mean 0.4
    y = fp.to_signed(fp.encode(x, n_summands=1))
    assert set(np.unique(y).tolist()) == {0, 1}
    assert abs(y.mean() - 0.4) < 0.02
    y2 = fp.to_signed(fp.encode(x, n_summands=1))
    assert (y != y2).any()  # libsodium coins, no fixed seed
    g1, g2 = np.random.default_rng(3), np.random.default_rng(3)
    assert (fp.encode(x, n_summands=1, rng=g1) == fp.encode(x, n_summands=1, rng=g2)).all()


@settings(max_examples=60, deadline=None)
@given(
    bits=st.integers(8, 62),
    n=st.integers(1, 20),
    data=st.data(),
)
def test_sum_round_trips(bits: int, n: int, data: st.DataObject) -> None:
    clip = data.draw(st.floats(0.01, 100.0))
    fp = FixedPoint(bits=bits, clip=clip)
    try:
        f = fp.scale_bits(n)
    except EncodingError:
        return
    xs = data.draw(arrays(np.float64, (n, 5), elements=st.floats(-2 * clip, 2 * clip)))
    enc = np.stack([fp.encode(row, n_summands=n) for row in xs])
    total = np.zeros(5, dtype=np.uint64)
    for row in enc:
        total = (total + row) & fp.mask
    got = fp.decode_sum(total, n)
    want = np.clip(xs, -clip, clip).sum(axis=0)
    # each stochastic rounding errs by < 1 unit of 2^-f
    assert np.all(np.abs(got - want) <= n / 2.0**f + 1e-9 * n * clip)
