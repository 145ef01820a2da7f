"""The "secagg_ddp" protocol: distributed discrete Gaussian composed with the masked secure sum."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _dp_stats import assert_gaussian_std

import protocols
from dp.distributed import rdp_epsilon
from protocols.channel import frame_bytes
from protocols.secagg_ddp import SecAggDDP
from secagg import SecAggError


def stack(n: int, d: int, scale: float = 0.02, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)) * scale


def test_registered_and_mean_without_noise() -> None:
    assert isinstance(protocols.make("secagg_ddp", bits=24), SecAggDDP)
    proto = SecAggDDP(clip=1.0, noise_multiplier=0.0, bits=32)
    x = stack(5, 300)
    x[0] *= 1000  # clipped to norm 1
    res = proto.run(x)
    clipped = x.clone()
    clipped[0] *= 1.0 / float(x[0].norm())
    assert res.accepted == [0, 1, 2, 3, 4]
    assert torch.allclose(res.aggregate, clipped.mean(0), atol=1e-4)
    assert {"noisy_sum_of_survivors", "survivors", "dropped"} <= res.leakage.keys("server")
    # the secure sum's phases ran, and the rotation seed was sent to every client as bytes
    assert res.meter.total(phase="masked_input").bytes_sent > 0
    # the 32-byte seed in one frame per client (header and names counted: the channel meters real bytes)
    seed_frames = sum(frame_bytes("server", f"client[{c}]", "rotation_seed", 32) for c in range(5))
    assert res.meter.total("client", "rotation_seed").bytes_received == seed_frames


def test_noise_of_the_released_mean_has_the_central_std() -> None:
    n, d, z = 4, 2048, 0.7
    proto = SecAggDDP(clip=1.0, noise_multiplier=z, bits=24)
    x = stack(n, d, scale=0.001)
    res = proto.run(x)
    cfg = proto.config(n, d)
    g = cfg.gamma
    # mean = (sum + N) / n, N per coordinate with std z * gamma * Delta2 (rounding adds < 1e-3 of it)
    noise = (res.aggregate.double() - x.double().mean(0)) * n
    assert_gaussian_std(noise, z * g * cfg.delta2(g) * math.sqrt(1 + n / (4 * (z * cfg.delta2(g)) ** 2)))


def test_dropouts_reduce_noise_and_are_accounted() -> None:
    proto = SecAggDDP(clip=1.0, noise_multiplier=1.0, bits=24, dropout=0.4)
    x = stack(6, 64)
    res = proto.run(x, rng=np.random.default_rng(4))
    survivors = len(res.accepted)
    assert 4 <= survivors < 6
    s = proto.privacy_statement(1e-5)
    cfg = proto.config(6, 64)
    assert s["min_contributors"] == survivors
    assert s["epsilon"] == pytest.approx(rdp_epsilon(cfg.rdp(survivors), 1e-5))
    assert s["epsilon"] > rdp_epsilon(cfg.rdp(6), 1e-5)


def test_epsilon_composes_over_rounds() -> None:
    proto = SecAggDDP(clip=1.0, noise_multiplier=2.0, bits=20)
    assert proto.privacy_statement(1e-5)["epsilon"] == 0.0
    eps = []
    for _ in range(2):
        proto.run(stack(3, 16))
        eps.append(proto.privacy_statement(1e-5)["epsilon"])
    assert 0 < eps[0] < eps[1]
    assert eps[1] == pytest.approx(rdp_epsilon(2 * proto.config(3, 16).rdp(), 1e-5))
    proto.reset()
    assert proto.privacy_statement(1e-5)["rounds"] == 0


def test_weighted_mean() -> None:
    proto = SecAggDDP(clip=10.0, noise_multiplier=0.0, bits=32)
    x = stack(3, 32, scale=0.1)
    w = torch.tensor([1.0, 2.0, 1.0])
    res = proto.run(x, weights=w)
    assert torch.allclose(res.aggregate, (w[:, None] * x).sum(0) / w.sum(), atol=1e-4)


def test_bad_input() -> None:
    with pytest.raises(SecAggError, match="got shape"):
        SecAggDDP().run(torch.zeros(1, 4))
    with pytest.raises(SecAggError, match=r"dropout: got 1\.5"):
        SecAggDDP(dropout=1.5)
    with pytest.raises(SecAggError, match="weights"):
        SecAggDDP().run(torch.zeros(3, 4), weights=torch.tensor([0.0, 0.0, 0.0]))
