"""protocols entries "secagg" and "secagg_plus": mean over survivors, meter, leakage, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import protocols
import robust
from secagg import EncodingError, SecAggError, TooFewSurvivors


@pytest.mark.parametrize(
    ("name", "kw"),
    [
        ("secagg", {}),
        ("secagg", {"active": True}),
        ("secagg_plus", {"k": 4}),
        ("secagg_plus", {}),
    ],
)
def test_mean_over_survivors_matches_plaintext(name: str, kw: dict) -> None:
    g = torch.Generator().manual_seed(0)
    stack = torch.randn(9, 40, generator=g) * 0.5
    proto = protocols.make(name, clip=1.0, **kw)
    res = proto.run(stack)
    assert res.accepted == list(range(9))
    want = stack.clamp(-1, 1).mean(0)
    # fixed point with 2^-f resolution, f derived from n = 9 and 32 bits
    assert torch.allclose(res.aggregate, want, atol=1e-6)
    assert res.aggregate.dtype == torch.float32 and res.aggregate.shape == (40,)
    assert res.leakage.keys("server") == {"sum_of_survivors", "survivors", "dropped"}


def test_dropouts_change_the_accepted_set_and_the_mean() -> None:
    stack = torch.arange(8 * 5, dtype=torch.float32).reshape(8, 5) / 100
    proto = protocols.make("secagg", clip=1.0, dropout=0.3)
    res = proto.run(stack, rng=np.random.default_rng(0))
    dropped = res.leakage.learns["server"]["dropped"]
    assert dropped, "with dropout 0.3 and this seed some client drops before masking"
    assert sorted(res.accepted + dropped) == list(range(8))
    assert torch.allclose(res.aggregate, stack[res.accepted].mean(0), atol=1e-6)


def test_weighted_mean() -> None:
    stack = torch.tensor([[0.5, -0.5], [0.1, 0.2], [-0.3, 0.9]])
    w = torch.tensor([1.0, 3.0, 0.0])
    res = protocols.make("secagg", clip=1.0).run(stack, weights=w)
    assert torch.allclose(res.aggregate, (w[:, None] * stack).sum(0) / w.sum(), atol=1e-6)


def test_meter_counts_every_message() -> None:
    n, d = 6, 1000
    res = protocols.make("secagg", clip=1.0).run(torch.zeros(n, d))
    meter = res.meter
    assert meter.phases() == ["advertise_keys", "share_keys", "masked_input", "unmasking"]
    sent = meter.total("client").bytes_sent
    assert sent == meter.total("server").bytes_received
    assert meter.total("server").bytes_sent == meter.total("client").bytes_received
    per_client = meter.total("client[0]").bytes_sent
    # the masked input dominates: 4 bytes per coordinate plus O(n) overhead
    assert 4 * d < per_client < 1.1 * 4 * d + 200 * n + 1000
    assert meter.total("server", "unmasking").seconds > 0
    assert meter.total("client[0]", "masked_input").seconds > 0


def test_too_few_survivors_raises_typed() -> None:
    proto = protocols.make("secagg", t=5, clip=1.0, dropout=0.9)
    with pytest.raises(TooFewSurvivors, match="want at least t=5"):
        proto.run(torch.zeros(5, 3), rng=np.random.default_rng(0))


def test_bad_arguments() -> None:
    with pytest.raises(SecAggError, match="want None or an int >= 1"):
        protocols.make("secagg", t=0)
    with pytest.raises(SecAggError, match="want a probability"):
        protocols.make("secagg", dropout=1.0)
    with pytest.raises(SecAggError, match="even int"):
        protocols.make("secagg_plus", k=3)
    with pytest.raises(EncodingError, match="could wrap"):
        protocols.make("secagg", clip=1.0, bits=8, frac_bits=7).run(torch.zeros(3, 2))
    with pytest.raises(EncodingError, match="rows \\[0\\]"):
        protocols.make("secagg").run(torch.tensor([[0.0, float("nan")], [1.0, 2.0]]))
    with pytest.raises(robust.NonFiniteError, match="rows \\[1\\]"):
        protocols.make("secagg").run(torch.tensor([[0.0, 1.0], [float("inf"), 2.0]]))
    with pytest.raises(KeyError):
        protocols.make("secagg_pluss")


def test_secagg_plus_degree_grows_slowly() -> None:
    proto = protocols.make("secagg_plus")
    ks = [proto.describe(n)["k"] for n in (100, 1000, 10_000)]
    assert ks == sorted(ks) and ks[-1] < 100 and ks[-1] - ks[0] <= 16
