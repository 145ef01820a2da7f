"""Noise flooding of what the key holder releases (Li-Micciancio IND-CPA-D countermeasure)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tenseal as ts
from scipy import stats

import protocols
from protocols.ckks import CKKSParameterError, CKKSParams
from protocols.ckks import flooding as fl
from protocols.ckks.messages import Kind, decode_frame, parse_array, unsigned_frame
from protocols.ckks.norm_clip import clip_factors

TAIL = 7.0  # P(|z| > 7) = 2.6e-12 per value


def _stack(n: int = 4, d: int = 300, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.5, 0.5, size=(n, d))


def _payload(msg: bytes) -> tuple[Kind, list[bytes]]:
    frame = unsigned_frame(msg)
    kind = Kind(frame[5])
    return kind, decode_frame(frame, kind)


# ------------------------------------------------------------------------------------------ sampler
def test_gaussian_is_standard_normal() -> None:
    z = fl.gaussian(200_001)
    assert z.shape == (200_001,) and z.dtype == np.float64
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1.0) < 0.01
    assert stats.kstest(z, "norm").pvalue > 1e-4


def test_gaussian_draws_from_libsodium(monkeypatch: pytest.MonkeyPatch) -> None:
    # All-zero bytes give u1 = u2 = 0, hence r = 0: the sampler's only randomness is libsodium's.
    monkeypatch.setattr(fl.nacl.utils, "random", lambda size: bytes(size))
    np.testing.assert_array_equal(fl.gaussian(5), np.zeros(5))
    # u1 just below 1 (all ones) gives the largest radius, still finite.
    monkeypatch.setattr(fl.nacl.utils, "random", lambda size: b"\xff" * size)
    z = fl.gaussian(2)
    assert np.isfinite(z).all() and abs(z[0]) == pytest.approx(math.sqrt(2 * 53 * math.log(2)), rel=1e-6)


def test_flood_adds_fresh_noise_and_refuses_bad_sigma() -> None:
    v = np.linspace(-1, 1, 1000)
    a, b = fl.flood(v, 1e-3), fl.flood(v, 1e-3)
    assert (a != b).all() and np.abs(a - v).max() < TAIL * 1e-3
    assert np.std(a - v) == pytest.approx(1e-3, rel=0.15)
    np.testing.assert_array_equal(fl.flood(v, 0.0), v)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="want a finite number >= 0"):
            fl.flood(v, bad)


def test_sigma_flood_parameter() -> None:
    assert CKKSParams().flood_std == 2.0**-20
    assert CKKSParams(value_range=4.0).flood_std == 2.0**-18
    assert CKKSParams(sigma_flood=1e-5).flood_std == 1e-5
    assert CKKSParams(sigma_flood=0).flood_std == 0.0
    for bad in (-1e-6, float("nan"), True, "1e-6"):
        with pytest.raises(CKKSParameterError, match=r"got sigma_flood=.*; want None or a finite number"):
            CKKSParams(sigma_flood=bad)  # type: ignore[arg-type]
    with pytest.raises(CKKSParameterError, match="want < 2\\^-10 \\* value_range"):
        CKKSParams(sigma_flood=0.01)


# ------------------------------------------------------------------------------------------ protocol
def test_two_releases_of_the_same_aggregate_differ_and_stay_accurate() -> None:
    x = _stack()
    proto = protocols.make("ckks_mean")
    res = proto.run(x)
    kh, n, d = proto.key_holder, *x.shape
    sigma = proto.params.flood_std
    agg_msg = next(m.payload for m in proto.transcript if m.receiver == "key_holder" and m.phase == "decrypt")
    _, parts = _payload(agg_msg)
    levels = len(proto.params.coeff_mod_bit_sizes) - 1
    r1, r2 = (
        parse_array(_payload(kh.release_aggregate(agg_msg, len(parts), levels, d))[1][0], "float64", d, "a")
        for _ in range(2)
    )
    exact = x.sum(0)
    raw = np.concatenate([ts.ckks_vector_from(kh._ctx, p).decrypt() for p in parts])[:d]
    assert (r1 != r2).all()  # fresh noise per release
    assert np.std(r1 - r2) == pytest.approx(math.sqrt(2) * sigma, rel=0.2)
    # flooding is far above the CKKS error and far below the accuracy the rules need
    assert np.abs(raw - exact).max() < sigma / 8
    for r in (r1, r2):
        assert np.abs(r - raw).max() < TAIL * sigma
        assert np.abs(r - exact).max() <= 1e-4 * np.abs(exact).max()
    # the round itself released a flooded value, not the decryption
    released = next(m.payload for m in proto.transcript if m.receiver == "server" and m.phase == "decrypt")
    sent = parse_array(_payload(released)[1][0], "float64", d, "aggregate")
    assert (sent != raw).all() and np.abs(sent - raw).max() < TAIL * sigma
    np.testing.assert_allclose(res.aggregate.numpy(), sent / n, atol=1e-7)


def test_disabled_flooding_releases_the_decryption() -> None:
    x = _stack()
    proto = protocols.make("ckks_mean", params=CKKSParams(sigma_flood=0.0))
    proto.run(x)
    agg_msg = next(m.payload for m in proto.transcript if m.receiver == "key_holder" and m.phase == "decrypt")
    raw = np.concatenate(
        [ts.ckks_vector_from(proto.key_holder._ctx, p).decrypt() for p in _payload(agg_msg)[1]]
    )
    released = next(m.payload for m in proto.transcript if m.receiver == "server" and m.phase == "decrypt")
    sent = parse_array(_payload(released)[1][0], "float64", x.shape[1], "aggregate")
    np.testing.assert_array_equal(sent, raw[: x.shape[1]])  # the control: without flooding, exact


def test_clip_factors_are_flooded_before_encryption() -> None:
    x = _stack(n=4, d=300)
    x[3] *= 20.0 / 0.5  # one update above the clip bound
    x = np.clip(x, -1, 1)
    proto = protocols.make("ckks_norm_clip", clip=5.0)
    res = proto.run(x)
    kh, n = proto.key_holder, x.shape[0]
    sq = res.leakage.learns["key_holder"]["sq_norms"].numpy()
    exact = clip_factors(sq, 5.0) / n
    assert exact[3] < 1.0 / n  # the case clips
    fmsg = next(m.payload for m in proto.transcript if m.receiver == "server" and m.phase == "factors")
    got = np.array([ts.ckks_vector_from(kh._ctx, p).decrypt()[0] for p in _payload(fmsg)[1]])
    sigma = proto.params.flood_std / proto.params.value_range / n
    # Noise present: a fresh encryption alone errs by < 2^-27 ~ 7e-9; flooding has sigma ~ 2.4e-7 here,
    # so all four factors within 2e-8 of exact happens with probability ~ (0.066)^4 ~ 2e-5.
    assert np.abs(got - exact).max() > 2e-8
    assert np.abs(got - exact).max() < TAIL * sigma + 1e-9
